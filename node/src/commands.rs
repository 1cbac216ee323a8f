//! One short function per client command: ask the daemon, print for people or (`--json`) for
//! scripts.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cli::{Format, MarketCommand, OfferCommand, PeersCommand};
use crate::client::{q, Client};
use crate::datadir::DataDir;

/// How to print.
#[derive(Clone, Copy)]
pub struct Out {
    /// One JSON document on stdout.
    pub json: bool,
}

impl Out {
    /// Prints `v` as JSON, or `text(v)` for people, on stdout (see [`emit`]).
    pub fn print(&self, v: &Value, text: impl FnOnce(&Value) -> String) {
        let doc = if self.json {
            serde_json::to_string_pretty(v).unwrap_or_default()
        } else {
            text(v)
        };
        emit(&mut std::io::stdout().lock(), &doc);
    }
}

/// A write to stdout failed for another reason than a closed pipe (the command exits 1).
static OUTPUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Whether some output could not be written (the error was said on stderr).
pub fn output_failed() -> bool {
    OUTPUT_FAILED.load(Ordering::Relaxed)
}

/// Writes one document and a newline to `w`, and flushes. Write errors are returned by the
/// writer, not panicked on as `println!` does: a reader that closes the pipe early (`| head`)
/// is not an error, so the rest is dropped quietly and the command ends as it would have (as
/// ripgrep does); any other error is said on stderr and makes the command exit 1.
pub fn emit(w: &mut impl Write, doc: &str) {
    let written = w
        .write_all(doc.as_bytes())
        .and_then(|()| w.write_all(b"\n"))
        .and_then(|()| w.flush());
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            OUTPUT_FAILED.store(true, Ordering::Relaxed);
            let _ = writeln!(io::stderr(), "error: cannot write the output: {e}");
        }
        _ => {}
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `passalong id` (from the key file: works without a daemon).
pub fn id(dir: &DataDir, out: Out) -> Result<()> {
    let keys = dir.keypair()?;
    let peer_id = passalong_net::peer_id_of(keys.seed())?;
    out.print(
        &json!({"public_key": keys.public().to_hex(), "peer_id": peer_id.to_string()}),
        |v| format!("{}\npeer id {}", s(&v["public_key"]), s(&v["peer_id"])),
    );
    Ok(())
}

/// `passalong peers [block|unblock PEER]`
pub fn peers(dir: &DataDir, out: Out, action: Option<PeersCommand>) -> Result<()> {
    let client = Client::connect(dir)?;
    let v = match action {
        None => client.get("/v1/peers")?,
        Some(PeersCommand::Block { peer }) => {
            client.post("/v1/peers/block", &json!({"peer": peer}))?
        }
        Some(PeersCommand::Unblock { peer }) => {
            client.post("/v1/peers/unblock", &json!({"peer": peer}))?
        }
    };
    out.print(&v, |v| {
        if v.get("peers").is_none() {
            return v.to_string();
        }
        let mut t = format!("peer id {}\n", s(&v["peer_id"]));
        for a in v["listen"].as_array().into_iter().flatten() {
            // Circuit addresses already end with the peer id.
            let a = s(a);
            if a.contains("/p2p-circuit") {
                t.push_str(&format!("listening on {a}\n"));
            } else {
                t.push_str(&format!("listening on {a}/p2p/{}\n", s(&v["peer_id"])));
            }
        }
        t.push_str(&format!("reachability {}\n", s(&v["reachability"])));
        for r in v["relays"].as_array().into_iter().flatten() {
            t.push_str(&format!("relayed by {}\n", s(r)));
        }
        let peers = v["peers"].as_array().cloned().unwrap_or_default();
        t.push_str(&format!("{} connected peer(s)\n", peers.len()));
        for p in peers {
            t.push_str(&format!(
                "  {}  score {}  markets {}  {}{}\n",
                s(&p["peer_id"]),
                p["score"]
                    .as_f64()
                    .map_or("-".into(), |x| format!("{x:.1}")),
                p["markets"],
                s(&p["addr"]),
                if p["relayed"] == true {
                    " (relayed)"
                } else {
                    ""
                }
            ));
        }
        t.trim_end().to_string()
    });
    Ok(())
}

/// `passalong market follow|list`
pub fn market(dir: &DataDir, out: Out, cmd: MarketCommand) -> Result<()> {
    let client = Client::connect(dir)?;
    match cmd {
        MarketCommand::Follow { market } => {
            let v = client.post("/v1/markets/follow", &json!({"market": market}))?;
            out.print(&v, |v| format!("following {}", s(&v["market"])));
        }
        MarketCommand::List => {
            let v = client.get("/v1/markets")?;
            out.print(&v, |v| {
                let mut t = format!("{:<64}  {:>12}  root\n", "market", "attestations");
                for m in v["markets"].as_array().into_iter().flatten() {
                    t.push_str(&format!(
                        "{:<64}  {:>12}  {}\n",
                        s(&m["market"]),
                        m["attestations"],
                        s(&m["root"])
                    ));
                }
                t.trim_end().to_string()
            });
        }
    }
    Ok(())
}

/// `passalong status`
pub fn status(dir: &DataDir, out: Out) -> Result<()> {
    let v = Client::connect(dir)?.get("/v1/status")?;
    out.print(&v, |v| {
        let mut t = format!(
            "passalong {}\npublic key   {}\napi          {}\ndata dir     {}\nattestations {} valid\nmarkets      {}",
            s(&v["version"]), s(&v["public_key"]), s(&v["api"]), s(&v["data_dir"]),
            v["valid_attestations"], v["markets"]
        );
        let n = &v["network"];
        if n.is_null() {
            t.push_str("\nnetwork      offline");
        } else {
            let sync = &n["sync"];
            t.push_str(&format!(
                "\npeer id      {}\nreachable    {}\npeers        {}\nsync         {} session(s), {} fetched, {} running, last {}",
                s(&n["peer_id"]), s(&n["reachability"]), n["peers"], sync["sessions"], sync["fetched"], sync["running"],
                sync["last_ms"].as_u64().map_or("never".to_string(), |ms| {
                    let ago = passalong_api::now_ms().saturating_sub(ms) / 1000;
                    format!("{ago} s ago")
                })
            ));
        }
        t
    });
    Ok(())
}

/// `passalong offer …`
pub fn offer(dir: &DataDir, out: Out, cmd: OfferCommand) -> Result<()> {
    let c = Client::connect(dir)?;
    match cmd {
        OfferCommand::Publish {
            title,
            price,
            currency,
            pool_bps,
            rule,
            connector_bps,
            max_depth,
            window,
            require_purchase,
            checkout_url,
        } => {
            let mut body = json!({
                "title": title, "price_minor": price, "currency": currency, "pool_bps": pool_bps,
                "rule": rule.to_string(), "connector_bps": connector_bps, "max_depth": max_depth,
                "require_purchase": require_purchase,
            });
            if let Some(w) = window {
                body["window_ms"] = w.into();
            }
            if let Some(u) = checkout_url {
                body["checkout_url"] = u.into();
            }
            let v = c.post("/v1/offers", &body)?;
            out.print(&v, |v| format!("{}\n{}", s(&v["id"]), s(&v["link"])));
        }
        OfferCommand::List { seller } => {
            let path = match seller {
                Some(k) => format!("/v1/offers?seller={}", q(&k)),
                None => "/v1/offers".into(),
            };
            let v = c.get(&path)?;
            out.print(&v, |v| {
                let mut t = String::from("id                                                                title                          price       rule           pool_bps");
                for o in v["offers"].as_array().into_iter().flatten() {
                    t.push_str(&format!(
                        "\n{}  {:<30} {:>8} {} {:<14} {}",
                        s(&o["id"]), s(&o["title"]), o["price_minor"], s(&o["currency"]), s(&o["rule"]), o["pool_bps"]
                    ));
                }
                t
            });
        }
    }
    Ok(())
}

/// `passalong refer`
pub fn refer(
    dir: &DataDir,
    out: Out,
    from: String,
    to: Option<String>,
    community: Option<String>,
) -> Result<()> {
    let v = Client::connect(dir)?.post(
        "/v1/referrals",
        &json!({"from": from, "to": to, "community": community}),
    )?;
    out.print(&v, |v| format!("{}\n{}", s(&v["id"]), s(&v["link"])));
    Ok(())
}

/// `passalong receipt`
pub fn receipt(
    dir: &DataDir,
    out: Out,
    offer: String,
    order: String,
    amount: u64,
    buyer: String,
    via: Option<String>,
) -> Result<()> {
    let v = Client::connect(dir)?.post(
        "/v1/receipts",
        &json!({"offer": offer, "order": order, "amount_minor": amount, "buyer": buyer, "via": via}),
    )?;
    out.print(&v, |v| s(&v["id"]).to_string());
    Ok(())
}

/// `passalong refund`
pub fn refund(dir: &DataDir, out: Out, receipt: String) -> Result<()> {
    let v = Client::connect(dir)?.post("/v1/refunds", &json!({"receipt": receipt}))?;
    out.print(&v, |v| s(&v["id"]).to_string());
    Ok(())
}

/// `passalong settle`
pub fn settle(
    dir: &DataDir,
    out: Out,
    participant: String,
    amount: u64,
    currency: String,
    reference: String,
) -> Result<()> {
    let v = Client::connect(dir)?.post(
        "/v1/settlements",
        &json!({"participant": participant, "amount_minor": amount, "currency": currency, "reference": reference}),
    )?;
    out.print(&v, |v| s(&v["id"]).to_string());
    Ok(())
}

/// The ledger as a table.
pub fn ledger_table(v: &Value) -> String {
    let mut t = format!(
        "{:<8} {:<64} {:>12} {:>12} {:>12} {:>12}",
        "currency", "participant", "earned", "refunded", "settled", "owed"
    );
    for e in v["entries"].as_array().into_iter().flatten() {
        t.push_str(&format!(
            "\n{:<8} {:<64} {:>12} {:>12} {:>12} {:>12}",
            s(&e["currency"]),
            s(&e["participant"]),
            plain(&e["earned"]),
            plain(&e["refunded"]),
            plain(&e["settled"]),
            plain(&e["owed"])
        ));
    }
    t
}

/// A JSON number or string as plain text (so that widths apply: `Value`'s Display ignores them).
fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// `passalong ledger`
pub fn ledger(dir: &DataDir, out: Out, seller: Option<String>) -> Result<()> {
    let path = match seller {
        Some(k) => format!("/v1/ledger?seller={}", q(&k)),
        None => "/v1/ledger".into(),
    };
    let v = Client::connect(dir)?.get(&path)?;
    out.print(&v, ledger_table);
    Ok(())
}

/// `passalong export`
pub fn export(
    dir: &DataDir,
    out: Out,
    seller: String,
    file: &std::path::Path,
    format: Format,
) -> Result<()> {
    let f = match format {
        Format::Json => "json",
        Format::Binary => "binary",
    };
    let bytes =
        Client::connect(dir)?.get_bytes(&format!("/v1/export?seller={}&format={f}", q(&seller)))?;
    let n = passalong_protocol::bundle::decode(&bytes)
        .context("the daemon's export does not decode")?
        .len();
    std::fs::write(file, &bytes).with_context(|| format!("cannot write {}", file.display()))?;
    out.print(
        &json!({"file": file.display().to_string(), "attestations": n, "format": f}),
        |v| {
            format!(
                "wrote {} attestations to {}",
                v["attestations"],
                s(&v["file"])
            )
        },
    );
    Ok(())
}

/// `passalong import`
pub fn import(dir: &DataDir, out: Out, file: &std::path::Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let envelopes = passalong_protocol::bundle::decode(&bytes)
        .with_context(|| format!("{}", file.display()))?;
    if envelopes.is_empty() {
        bail!("{} holds no attestations", file.display());
    }
    let c = Client::connect(dir)?;
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut new = 0u64;
    let mut progress = crate::progress::Progress::new("importing", envelopes.len() as u64);
    // Chunks keep each request far below the API's body limit.
    for chunk in envelopes.chunks(2_000) {
        let v = c.post(
            "/v1/attestations",
            &json!({"envelopes": chunk.iter().map(hex::encode).collect::<Vec<_>>()}),
        )?;
        for a in v["acks"].as_array().into_iter().flatten().take(chunk.len()) {
            *counts.entry(s(&a["status"]).to_string()).or_default() += 1;
            if a["duplicate"] == false {
                new += 1;
            }
        }
        progress.add(chunk.len() as u64);
    }
    drop(progress);
    let v = json!({"file": file.display().to_string(), "attestations": envelopes.len(), "new": new, "statuses": counts});
    out.print(&v, |v| {
        format!(
            "imported {} attestations from {} ({} new): {}",
            v["attestations"],
            s(&v["file"]),
            v["new"],
            v["statuses"]
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails with `kind` after taking `room` bytes.
    struct Failing {
        room: usize,
        kind: io::ErrorKind,
    }

    impl Write for Failing {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(self.kind.into());
            }
            let n = b.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_ends_the_output_quietly_and_other_write_errors_count() {
        let mut out = Vec::new();
        emit(&mut out, "line");
        assert_eq!(out, b"line\n");
        for room in [0, 3] {
            emit(
                &mut Failing {
                    room,
                    kind: io::ErrorKind::BrokenPipe,
                },
                "a document",
            );
        }
        assert!(!output_failed(), "a reader that left is not an error");
        emit(
            &mut Failing {
                room: 3,
                kind: io::ErrorKind::StorageFull,
            },
            "a document",
        );
        assert!(output_failed());
    }

    #[test]
    fn the_ledger_table_lines_up() {
        let v = json!({"entries": [
            {"currency": "EUR", "participant": "ab".repeat(32), "earned": "100", "refunded": 0,
             "settled": "0", "owed": "100"},
        ]});
        let t = ledger_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0].len(), lines[1].len(), "{t}");
        assert!(lines[1].ends_with("         100"), "{t}");
    }
}
