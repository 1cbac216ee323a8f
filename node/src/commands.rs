//! One short function per client command: ask the daemon, print for people or (`--json`) for
//! scripts.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use passalong_api::attestations::{Import, ImportError};
use passalong_api::contacts::{ContactList, NewContact, OldContact};
use passalong_api::earnings::Earnings;
use passalong_api::ledger::{LedgerInfo, Payouts};
use passalong_api::network::NetStatus;
use passalong_api::node::Status;
use passalong_api::offers::{NewOffer, OfferList, Published};
use passalong_api::peers::{Blocked, FollowBody, Following, MarketList, PeerBody, Unblocked};
use passalong_api::referrals::{NewReferral, Referred};
use passalong_api::sales::{NewReceipt, NewRefund, NewSettlement, SaleAnswer};
use serde::Serialize;

use crate::cli::{ContactsCommand, Format, MarketCommand, OfferCommand, PeersCommand};
use crate::client::{q, Client};
use crate::datadir::DataDir;
use crate::display::{money, Align, Names, Table};

/// How to print.
#[derive(Clone, Copy)]
pub struct Out {
    /// One JSON document on stdout.
    pub json: bool,
}

impl Out {
    /// Prints `v` as JSON, or `text(v)` for people, on stdout (see [`emit`]). What people read
    /// is made [printable](passalong_api::text::printable) line by line: titles, names, orders
    /// and references come from others and may hold escape sequences or reordering
    /// characters. JSON keeps them as signed.
    pub fn print<T: Serialize>(&self, v: &T, text: impl FnOnce(&T) -> String) {
        let doc = if self.json {
            serde_json::to_string_pretty(v).unwrap_or_default()
        } else {
            passalong_api::text::printable_lines(&text(v)).into_owned()
        };
        emit(&mut std::io::stdout().lock(), &doc);
    }
}

/// Prints a CSV document as the API made it (its fields are already printable), without a
/// line break added.
fn print_csv(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    emit(
        &mut std::io::stdout().lock(),
        text.strip_suffix('\n').unwrap_or(&text),
    );
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

/// What `passalong id` prints: the key file's identity, without asking the daemon.
#[derive(Serialize)]
struct KeyId {
    public_key: String,
    peer_id: String,
}

/// `passalong id` (from the key file: works without a daemon).
pub fn id(dir: &DataDir, out: Out) -> Result<()> {
    let keys = dir.keypair()?;
    let peer_id = passalong_net::peer_id_of(keys.seed())?;
    let v = KeyId {
        public_key: keys.public().to_hex(),
        peer_id: peer_id.to_string(),
    };
    out.print(&v, |v| format!("{}\npeer id {}", v.public_key, v.peer_id));
    Ok(())
}

/// `passalong peers [block|unblock PEER]`
pub fn peers(dir: &DataDir, out: Out, action: Option<PeersCommand>) -> Result<()> {
    let client = Client::connect(dir)?;
    match action {
        None => out.print(&client.get::<NetStatus>("/v1/peers")?, peers_text),
        Some(PeersCommand::Block { peer }) => {
            let v: Blocked = client.post("/v1/peers/block", &PeerBody { peer })?;
            out.print(&v, |v| format!("blocked {}", v.blocked));
        }
        Some(PeersCommand::Unblock { peer }) => {
            let v: Unblocked = client.post("/v1/peers/unblock", &PeerBody { peer })?;
            out.print(&v, |v| format!("unblocked {}", v.unblocked));
        }
    }
    Ok(())
}

/// The network as people read it. Addresses come from peers: each is made printable on its
/// own, so that a line break in one cannot forge a line.
fn peers_text(v: &NetStatus) -> String {
    use passalong_api::text::printable;
    let mut t = format!("peer id {}\n", v.peer_id);
    for a in &v.listen {
        // Circuit addresses already end with the peer id.
        if a.contains("/p2p-circuit") {
            t.push_str(&format!("listening on {}\n", printable(a)));
        } else {
            t.push_str(&format!(
                "listening on {}/p2p/{}\n",
                printable(a),
                v.peer_id
            ));
        }
    }
    t.push_str(&format!("reachability {}\n", v.reachability));
    for r in &v.relays {
        t.push_str(&format!("relayed by {}\n", printable(r)));
    }
    t.push_str(&format!("{} connected peer(s)\n", v.peers.len()));
    for p in &v.peers {
        t.push_str(&format!(
            "  {}  score {}  markets {}  {}{}\n",
            p.peer_id,
            p.score.map_or("-".into(), |x| format!("{x:.1}")),
            p.markets,
            printable(&p.addr),
            if p.relayed { " (relayed)" } else { "" }
        ));
    }
    t.trim_end().to_string()
}

/// `passalong market follow|list`
pub fn market(dir: &DataDir, out: Out, cmd: MarketCommand) -> Result<()> {
    let client = Client::connect(dir)?;
    match cmd {
        MarketCommand::Follow { market } => {
            let v: Following = client.post("/v1/markets/follow", &FollowBody { market })?;
            out.print(&v, |v| format!("following {}", v.market));
        }
        MarketCommand::List => {
            let v: MarketList = client.get("/v1/markets")?;
            let names = names_for(&client, out)?;
            out.print(&v, |v| {
                let mut t = Table::new(&[
                    ("market", Align::Left),
                    ("attestations", Align::Right),
                    ("root", Align::Left),
                    ("name", Align::Left),
                ]);
                for m in &v.markets {
                    t.row([
                        m.market.as_str(),
                        &m.attestations.to_string(),
                        &m.root,
                        names.name(&m.market),
                    ]);
                }
                t.render()
            });
        }
    }
    Ok(())
}

/// `passalong status`
pub fn status(dir: &DataDir, out: Out) -> Result<()> {
    let v: Status = Client::connect(dir)?.get("/v1/status")?;
    out.print(&v, |v| {
        let mut t = format!(
            "passalong {}\npublic key   {}\napi          {}\ndata dir     {}\nattestations {} valid\nmarkets      {}",
            v.version, v.public_key, v.api, v.data_dir, v.valid_attestations, v.markets
        );
        match &v.network {
            None => t.push_str("\nnetwork      offline"),
            Some(n) => {
                let sync = &n.sync;
                t.push_str(&format!(
                    "\npeer id      {}\nreachable    {}\npeers        {}\nsync         {} session(s), {} fetched, {} running, last {}",
                    n.peer_id, n.reachability, n.peers, sync.sessions, sync.fetched, sync.running,
                    sync.last_ms.map_or("never".to_string(), |ms| {
                        let ago = passalong_api::now_ms().saturating_sub(ms) / 1000;
                        format!("{ago} s ago")
                    })
                ));
            }
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
            let body = NewOffer {
                title,
                price_minor: price,
                currency,
                pool_bps,
                rule: rule.to_string(),
                connector_bps,
                max_depth: Some(max_depth),
                window_ms: window,
                require_purchase,
                checkout_url,
                ..NewOffer::default()
            };
            let v: Published = c.post("/v1/offers", &body)?;
            out.print(&v, |v| format!("{}\n{}", v.id, v.link));
        }
        OfferCommand::List { seller } => {
            let path = match seller {
                Some(k) => format!("/v1/offers?seller={}", q(&k)),
                None => "/v1/offers".into(),
            };
            let v: OfferList = c.get(&path)?;
            out.print(&v, |v| {
                let mut t = Table::new(&[
                    ("id", Align::Left),
                    ("title", Align::Left),
                    ("price", Align::Right),
                    ("rule", Align::Left),
                    ("pool_bps", Align::Right),
                ]);
                for o in &v.offers {
                    t.row([
                        o.id.clone(),
                        o.title.clone(),
                        money(o.price_minor, &o.currency),
                        o.rule.clone(),
                        o.pool_bps.to_string(),
                    ]);
                }
                t.render()
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
    // A member's own node names her community unless told otherwise (`none`).
    let community = match community.as_deref().map(str::trim) {
        Some(c) if c.eq_ignore_ascii_case("none") => None,
        Some(c) => Some(c.to_string()),
        None => crate::network::membership::community(dir.root())?.map(|c| c.to_hex()),
    };
    let v: Referred = Client::connect(dir)?.post(
        "/v1/referrals",
        &NewReferral {
            from,
            to,
            community,
            as_: None,
        },
    )?;
    out.print(&v, |v| format!("{}\n{}", v.published.id, v.published.link));
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
    let v: SaleAnswer = Client::connect(dir)?.post(
        "/v1/receipts",
        &NewReceipt {
            offer,
            order,
            amount_minor: amount,
            buyer,
            via,
            as_: None,
        },
    )?;
    out.print(&v, |v| v.id.clone());
    Ok(())
}

/// `passalong refund`
pub fn refund(dir: &DataDir, out: Out, receipt: String) -> Result<()> {
    let v: SaleAnswer =
        Client::connect(dir)?.post("/v1/refunds", &NewRefund { receipt, as_: None })?;
    out.print(&v, |v| v.id.clone());
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
    let v: SaleAnswer = Client::connect(dir)?.post(
        "/v1/settlements",
        &NewSettlement {
            participant,
            amount_minor: amount,
            currency,
            reference,
            ..NewSettlement::default()
        },
    )?;
    out.print(&v, |v| v.id.clone());
    Ok(())
}

/// The ledger as a table, amounts in major units; with `names`, a column of contact names.
pub fn ledger_table(v: &LedgerInfo, names: Option<&Names>) -> String {
    let mut columns = vec![("currency", Align::Left), ("participant", Align::Left)];
    if names.is_some() {
        columns.push(("name", Align::Left));
    }
    columns.extend([
        ("earned", Align::Right),
        ("refunded", Align::Right),
        ("settled", Align::Right),
        ("owed", Align::Right),
    ]);
    let mut t = Table::new(&columns);
    for e in &v.entries {
        let c = e.currency.as_str();
        let mut row = vec![c.to_string(), e.participant.clone()];
        if let Some(n) = names {
            row.push(n.name(&e.participant).to_string());
        }
        row.extend([
            money(e.earned, c),
            money(e.refunded, c),
            money(e.settled, c),
            money(e.owed, c),
        ]);
        t.row(row);
    }
    t.render()
}

/// The contact names a table shows (none are needed for `--json`).
fn names_for(c: &Client, out: Out) -> Result<Names> {
    if out.json {
        Ok(Names::default())
    } else {
        Names::fetch(c)
    }
}

/// `?seller=…&format=…` of the ledger routes.
fn ledger_query(seller: Option<&str>, csv: bool) -> String {
    let mut q = Vec::new();
    if let Some(k) = seller {
        q.push(format!("seller={}", crate::client::q(k)));
    }
    if csv {
        q.push("format=csv".to_string());
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// `passalong ledger [--seller PUBKEY] [--csv]`
pub fn ledger(dir: &DataDir, out: Out, seller: Option<String>, csv: bool) -> Result<()> {
    let c = Client::connect(dir)?;
    let query = ledger_query(seller.as_deref(), csv);
    if csv {
        print_csv(&c.get_bytes(&format!("/v1/ledger{query}"))?);
        return Ok(());
    }
    let v: LedgerInfo = c.get(&format!("/v1/ledger{query}"))?;
    let names = names_for(&c, out)?;
    out.print(&v, |v| ledger_table(v, Some(&names)));
    Ok(())
}

/// `passalong payouts [--seller PUBKEY] [--csv]`: what the seller owes.
pub fn payouts(dir: &DataDir, out: Out, seller: Option<String>, csv: bool) -> Result<()> {
    let c = Client::connect(dir)?;
    let query = ledger_query(seller.as_deref(), csv);
    if csv {
        print_csv(&c.get_bytes(&format!("/v1/payouts{query}"))?);
        return Ok(());
    }
    let v: Payouts = c.get(&format!("/v1/payouts{query}"))?;
    let names = names_for(&c, out)?;
    out.print(&v, |v| {
        let mut t = Table::new(&[
            ("participant", Align::Left),
            ("name", Align::Left),
            ("currency", Align::Left),
            ("amount", Align::Right),
        ]);
        for p in &v.payouts {
            t.row([
                p.participant.clone(),
                names.name(&p.participant).to_string(),
                p.currency.clone(),
                money(p.amount_minor, &p.currency),
            ]);
        }
        t.render()
    });
    Ok(())
}

/// `passalong earnings [--seller PUBKEY] [--csv] [--limit N]`: the sales that paid me,
/// newest first.
pub fn earnings(
    dir: &DataDir,
    out: Out,
    seller: Option<String>,
    csv: bool,
    limit: Option<u32>,
) -> Result<()> {
    let c = Client::connect(dir)?;
    let mut query = Vec::new();
    if let Some(k) = &seller {
        query.push(format!("seller={}", q(k)));
    }
    if let Some(n) = limit {
        query.push(format!("limit={n}"));
    }
    let path = format!("/v1/earnings?{}", query.join("&"));
    let path = path.trim_end_matches('?');
    let list: Earnings = c.get(path)?;
    if csv {
        let names = Names::fetch(&c)?;
        let text = passalong_api::ledger::earnings_csv(&list.earnings, names.by_key());
        print_csv(text.as_bytes());
        return Ok(());
    }
    let names = names_for(&c, out)?;
    out.print(&list, |list| {
        let mut t = Table::new(&[
            ("receipt", Align::Left),
            ("order", Align::Left),
            ("offer", Align::Left),
            ("seller", Align::Left),
            ("hop", Align::Right),
            ("amount", Align::Right),
        ]);
        for e in &list.earnings {
            let seller = match names.name(&e.seller) {
                "" => e.seller.get(..16).unwrap_or(&e.seller).to_string(),
                name => name.to_string(),
            };
            t.row([
                e.receipt.clone(),
                e.order.clone(),
                e.title.clone(),
                seller,
                e.hop
                    .map_or_else(|| "connector".to_string(), |h| h.to_string()),
                money(e.share_minor, &e.currency),
            ]);
        }
        t.render()
    });
    Ok(())
}

/// `passalong contacts add|list|remove`
pub fn contacts(dir: &DataDir, out: Out, cmd: ContactsCommand) -> Result<()> {
    let c = Client::connect(dir)?;
    let (v, said): (ContactList, _) = match cmd {
        ContactsCommand::List => (c.get("/v1/contacts")?, None),
        ContactsCommand::Add { key, name } => {
            let said = format!("{} is {}", key.trim(), name.trim());
            let body = NewContact {
                key,
                name,
                as_: None,
            };
            (c.post("/v1/contacts", &body)?, Some(said))
        }
        ContactsCommand::Remove { key } => {
            let said = format!("forgot the name of {}", key.trim());
            (
                c.post("/v1/contacts/remove", &OldContact { key, as_: None })?,
                Some(said),
            )
        }
    };
    out.print(&v, |v| {
        if let Some(line) = said {
            return line;
        }
        let mut t = Table::new(&[("key", Align::Left), ("name", Align::Left)]);
        for c in &v.contacts {
            t.row([&c.key, &c.name]);
        }
        t.render()
    });
    Ok(())
}

/// What `passalong export` wrote.
#[derive(Serialize)]
struct Exported {
    file: String,
    attestations: usize,
    format: &'static str,
}

/// What `passalong import` sent, and how the daemon took it.
#[derive(Serialize)]
struct Imported {
    file: String,
    attestations: usize,
    new: u64,
    /// Envelopes per status (`valid`, `pending`, `held`, `invalid`).
    statuses: std::collections::BTreeMap<String, u64>,
    /// Pending attestations the import made valid.
    unblocked: u64,
    /// The first invalid envelopes (`index`: position in the file, from 0).
    errors: Vec<ImportError>,
    /// Whether `errors` left some out.
    truncated: bool,
}

/// Invalid envelopes `import` names on a terminal; `--json` has the first 100.
const ERRORS_SHOWN: usize = 5;

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
    let bytes = Client::connect(dir)?.download(
        &format!("/v1/export?seller={}&format={f}", q(&seller)),
        "exporting",
    )?;
    let n = passalong_protocol::bundle::decode(&bytes)
        .context("the daemon's export does not decode")?
        .len();
    std::fs::write(file, &bytes).with_context(|| format!("cannot write {}", file.display()))?;
    let v = Exported {
        file: file.display().to_string(),
        attestations: n,
        format: f,
    };
    out.print(&v, |v| {
        format!("wrote {} attestations to {}", v.attestations, v.file)
    });
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
    let mut total = passalong_api::attestations::Imported::default();
    let progress = crate::progress::Progress::new("importing", envelopes.len() as u64);
    // Chunks keep each request far below the API's body limit.
    let mut offset = 0u64;
    for chunk in envelopes.chunks(2_000) {
        let part: passalong_api::attestations::Imported = c.post(
            "/v1/attestations",
            &Import {
                envelopes: chunk.iter().map(hex::encode).collect(),
            },
        )?;
        total.merge(offset, part);
        offset += chunk.len() as u64;
        progress.add(chunk.len() as u64);
    }
    drop(progress);
    let invalid = total.statuses.get("invalid").copied().unwrap_or(0);
    let v = Imported {
        file: file.display().to_string(),
        attestations: envelopes.len(),
        new: total.new,
        statuses: total.statuses,
        unblocked: total.unblocked,
        truncated: invalid > total.errors.len() as u64,
        errors: total.errors,
    };
    out.print(&v, |v| {
        let mut t = format!(
            "imported {} attestations from {} ({} new): {}",
            v.attestations,
            v.file,
            v.new,
            serde_json::to_string(&v.statuses).unwrap_or_default()
        );
        for e in v.errors.iter().take(ERRORS_SHOWN) {
            t.push_str(&format!(
                "\ninvalid: attestation {} (#{} in the file) {}: {}",
                e.id,
                e.index,
                passalong_api::text::printable(&e.reason),
                passalong_api::text::printable(&e.message)
            ));
        }
        let invalid = v.statuses.get("invalid").copied().unwrap_or(0);
        let shown = v.errors.len().min(ERRORS_SHOWN) as u64;
        if invalid > shown {
            t.push_str(&format!("\n… and {} more invalid", invalid - shown));
        }
        t
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
    fn the_ledger_table_lines_up_in_major_units() {
        use passalong_api::contacts::Contact;
        use passalong_api::ledger::LedgerLine;
        let anna = "ab".repeat(32);
        let line = |currency: &str, participant: &str, amount: u128| LedgerLine {
            currency: currency.into(),
            participant: participant.into(),
            earned: amount,
            refunded: 0,
            settled: 0,
            owed: amount as i128,
        };
        let v = LedgerInfo {
            seller: None,
            root: String::new(),
            entries: vec![line("EUR", &anna, 100), line("JPY", &"cd".repeat(32), 1200)],
        };
        let names = Names::of(&ContactList {
            contacts: vec![Contact {
                key: anna.clone(),
                name: "Anna".into(),
            }],
        });
        let t = ledger_table(&v, Some(&names));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0].len(), lines[1].len(), "{t}");
        assert!(lines[1].contains(" Anna "), "{t}");
        assert!(lines[1].ends_with("  1.00 EUR"), "{t}");
        assert!(lines[2].ends_with("  1200 JPY"), "{t}");
        assert!(!ledger_table(&v, None).contains("name"));
    }
}
