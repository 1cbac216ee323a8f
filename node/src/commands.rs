//! One short function per client command: ask the daemon, print for people or (`--json`) for
//! scripts.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cli::{Format, OfferCommand};
use crate::client::{q, Client};
use crate::datadir::DataDir;

/// How to print.
#[derive(Clone, Copy)]
pub struct Out {
    /// One JSON document on stdout.
    pub json: bool,
}

impl Out {
    /// Prints `v` as JSON, or `text(v)` for people.
    pub fn print(&self, v: &Value, text: impl FnOnce(&Value) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            println!("{}", text(v));
        }
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `passalong id` (from the key file: works without a daemon).
pub fn id(dir: &DataDir, out: Out) -> Result<()> {
    let pk = dir.keypair()?.public();
    out.print(&json!({"public_key": pk.to_hex()}), |v| {
        s(&v["public_key"]).to_string()
    });
    Ok(())
}

/// `passalong status`
pub fn status(dir: &DataDir, out: Out) -> Result<()> {
    let v = Client::connect(dir)?.get("/v1/status")?;
    out.print(&v, |v| {
        format!(
            "passalong {}\npublic key   {}\napi          {}\ndata dir     {}\nattestations {} valid\nmarkets      {}",
            s(&v["version"]), s(&v["public_key"]), s(&v["api"]), s(&v["data_dir"]),
            v["valid_attestations"], v["markets"]
        )
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
        } => {
            let mut body = json!({
                "title": title, "price_minor": price, "currency": currency, "pool_bps": pool_bps,
                "rule": rule.to_string(), "connector_bps": connector_bps, "max_depth": max_depth,
                "require_purchase": require_purchase,
            });
            if let Some(w) = window {
                body["window_ms"] = w.into();
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
            e["earned"],
            e["refunded"],
            e["settled"],
            e["owed"]
        ));
    }
    t
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
    }
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
