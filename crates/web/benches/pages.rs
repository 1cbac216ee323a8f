//! The dashboard's pages on a store of 1,000,000 attestations (`docs/benchmarks.md`, "Dashboard
//! pages"). `cargo bench -p passalong-web --bench pages` prints, per page, the median, p99 and
//! largest latency of N requests and the page's size in bytes, against the goals (p99 under
//! 50 ms, every page under 100 KB, nothing loaded from another origin).
//!
//! The store is built the way `crates/store/benches/ingest.rs` builds its 1M store (groups of a
//! referral chain and the receipts through it, signed on two threads while this thread ingests
//! them 1,000 at a time), with the node's own identity both a seller and a referrer:
//!
//! - four sellers: the node's identity with 24 offers (every rule), three others with 2 each;
//! - 10,000 referrer keys; chains of 6 referrals, 44 receipts through each chain's end;
//! - every fourth chain is of one of the node's offers; in half of the other sellers' chains the
//!   node's identity is one of the six referrers (at a random place), so that it is paid by
//!   about 1 in 8 of the store's receipts, in three markets besides its own;
//! - a few equivocating receipts in the node's market and settlements both ways.
//!
//! **The store is built once and kept** under `target/bench-pages/store-<N>` (a marker file
//! says it is complete; delete the directory to rebuild, ~3 min for 1M on 2 cores); later runs
//! open it and go straight to the measurements. Knobs (environment): `PASSALONG_BENCH_N`
//! (attestations, default 1,000,000), `PASSALONG_BENCH_REQUESTS` (per page, default 200),
//! `PASSALONG_BENCH_PAGE_SECS` (a page stops after this many seconds of requests, with at least
//! five, default 60: the row then says how many it made), `PASSALONG_BENCH_DIR` (instead of
//! `target/bench-pages`).
//!
//! The server is the node's real router (`passalong_web::app`) on a loopback TCP listener, on a
//! tokio runtime of two workers; the client signs in as a browser does (`GET /signin` for the
//! double-submit cookie, `POST /signin` with the API token) and then requests each page
//! sequentially, one HTTP/1.1 connection per request, timed from connect to the last byte.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use passalong_api::{AppState, Identities, Writer};
use passalong_protocol::attestation::Settlement;
use passalong_protocol::{
    Attestation, Body, Currency, Keypair, Offer, Policy, PublicKey, Receipt, Referral, Rule,
};
use passalong_store::{Status, Store};
use passalong_web::PublicUrl;

const DAY_MS: u64 = 86_400_000;
/// 2026-01-01T00:00:00Z, as in the store's bench.
const T0: u64 = 1_767_225_600_000;
/// The local time of every ingest: after everything, so nothing is held.
const NOW: u64 = T0 + 3 * DAY_MS;
const CHAIN: usize = 6;
const RECEIPTS_PER_CHAIN: usize = 44;
const GROUP: usize = CHAIN + RECEIPTS_PER_CHAIN;
/// Groups per ingest call: 1,000 attestations.
const GROUPS_PER_CHUNK: usize = 20;
const MY_OFFERS: usize = 24;
const THEIR_OFFERS: usize = 2;
const OTHER_SELLERS: usize = 3;
const REFERRERS: usize = 10_000;
const TOKEN: &str = "bench-token-0123456789abcdef";
/// What the generator writes; a kept store built by another version is rebuilt.
const GENERATOR: &str = "pages-v1";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// splitmix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The node's identity, the other sellers, the offers and the referrers' keys.
struct World {
    me: Keypair,
    /// The sellers: the node's identity first.
    sellers: Vec<Keypair>,
    /// Each seller's offers.
    offers: Vec<Vec<Attestation>>,
    referrers: Vec<Keypair>,
}

fn seeded(tag: &str, i: usize) -> Keypair {
    let mut seed = blake3::Hasher::new();
    seed.update(tag.as_bytes());
    seed.update(&(i as u64).to_be_bytes());
    Keypair::from_seed(*seed.finalize().as_bytes())
}

impl World {
    fn new() -> World {
        let me = seeded("me", 0);
        let mut sellers = vec![seeded("me", 0)];
        sellers.extend((0..OTHER_SELLERS).map(|i| seeded("seller", i)));
        let rules = [
            Rule::Geometric { r_bps: 5000 },
            Rule::Equal,
            Rule::Direct,
            Rule::SplitProof,
        ];
        let offers = sellers
            .iter()
            .enumerate()
            .map(|(s, k)| {
                let n = if s == 0 { MY_OFFERS } else { THEIR_OFFERS };
                (0..n)
                    .map(|i| {
                        Attestation::sign(
                            Body::Offer(Offer {
                                seller: k.public(),
                                title: format!("Record {i} of seller {s}"),
                                content_hash: None,
                                price_minor: 2_000,
                                currency: Currency(*b"EUR"),
                                policy: Policy {
                                    pool_bps: 1_000,
                                    connector_bps: 0,
                                    // The others' offers pay every hop.
                                    rule: if s == 0 { rules[i % 4] } else { rules[i % 2] },
                                    max_depth: 16,
                                    window_ms: 30 * DAY_MS,
                                    require_purchase: false,
                                },
                                valid_from_ms: T0,
                                valid_until_ms: None,
                                created_at_ms: T0 + i as u64,
                                checkout_url: Some(format!("https://shop{s}.example/buy/{i}")),
                            }),
                            k,
                        )
                    })
                    .collect()
            })
            .collect();
        World {
            me,
            sellers,
            offers,
            referrers: (0..REFERRERS).map(|i| seeded("referrer", i)).collect(),
        }
    }
}

/// Group `g`: a chain of six referrals of one offer, then 44 receipts through its end.
fn group(w: &World, g: usize) -> Vec<Attestation> {
    let mut rng = Rng(g as u64);
    let seller = g % w.sellers.len();
    let offer = w.offers[seller][rng.below(w.offers[seller].len())].id;
    // In half of the other sellers' chains, the node's identity is one of the referrers.
    let me_at = (seller != 0 && g % 8 >= 4).then(|| rng.below(CHAIN));
    let tb = T0 + 1_000 + (g * GROUP) as u64;
    let mut out = Vec::with_capacity(GROUP);
    let mut parent = None;
    for d in 0..CHAIN {
        let k = if me_at == Some(d) {
            &w.me
        } else {
            &w.referrers[rng.below(REFERRERS)]
        };
        let r = Attestation::sign(
            Body::Referral(Referral {
                referrer: k.public(),
                offer,
                parent,
                recipient: None,
                community: None,
                created_at_ms: tb + d as u64,
            }),
            k,
        );
        parent = Some(r.id);
        out.push(r);
    }
    let s = &w.sellers[seller];
    for j in 0..RECEIPTS_PER_CHAIN {
        let n = (g * GROUP + j) as u64;
        out.push(Attestation::sign(
            Body::Receipt(Receipt {
                seller: s.public(),
                offer,
                order: format!("b{g}-{j}"),
                amount_minor: 1_000 + n % 9_000,
                buyer: PublicKey(*blake3::hash(&n.to_be_bytes()).as_bytes()),
                via: parent,
                created_at_ms: tb + (CHAIN + j) as u64,
            }),
            s,
        ));
    }
    out
}

/// Equivocating receipts in the node's market and settlements both ways, dated after the
/// build's traffic.
fn extras(w: &World, groups: usize) -> Vec<Attestation> {
    let t = T0 + 1_000 + (groups * GROUP) as u64 + 1_000;
    let mut out = Vec::new();
    let me = w.me.public();
    for e in 0..6 {
        let g = (e * 4 * 97) % groups.max(1);
        let g = g - g % w.sellers.len();
        let offer = w.offers[0][0].id;
        out.push(Attestation::sign(
            Body::Receipt(Receipt {
                seller: me,
                offer,
                order: format!("b{g}-0"),
                amount_minor: 5,
                buyer: PublicKey([7; 32]),
                via: None,
                created_at_ms: t + e as u64,
            }),
            &w.me,
        ));
    }
    let settle = |by: &Keypair, to: PublicKey, amount: u64, i: usize| {
        Attestation::sign(
            Body::Settlement(Settlement {
                seller: by.public(),
                participant: to,
                amount_minor: amount,
                currency: Currency(*b"EUR"),
                period_start_ms: T0,
                period_end_ms: t,
                reference: format!("SEPA-{i:04}"),
                ledger_root: [0; 32],
                created_at_ms: t + 100 + i as u64,
            }),
            by,
        )
    };
    for (i, s) in w.sellers.iter().enumerate().skip(1) {
        out.push(settle(s, me, 10_000, i));
    }
    for i in 0..20 {
        out.push(settle(&w.me, w.referrers[i * 7].public(), 100, 100 + i));
    }
    out
}

/// Builds the store: offers, then the groups signed on two threads while this thread ingests
/// them, then the extras. Returns the attestations stored.
fn build(store: &Store, w: &World, n: usize) -> usize {
    let start = Instant::now();
    let offers: Vec<&[u8]> = w
        .offers
        .iter()
        .flatten()
        .map(|o| o.bytes.as_slice())
        .collect();
    store.ingest(&offers, NOW).expect("ingest offers");
    let mut stored = offers.len();
    let groups = n.saturating_sub(stored + 30).div_ceil(GROUP).max(1);
    let chunks = groups.div_ceil(GROUPS_PER_CHUNK);
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Vec<Attestation>>(4);
        for _ in 0..2 {
            let (tx, next) = (tx.clone(), &next);
            s.spawn(move || loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    return;
                }
                let atts: Vec<Attestation> = (c * GROUPS_PER_CHUNK
                    ..((c + 1) * GROUPS_PER_CHUNK).min(groups))
                    .flat_map(|g| group(w, g))
                    .collect();
                if tx.send(atts).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut reported = Instant::now();
        for atts in rx {
            let envs: Vec<&[u8]> = atts.iter().map(|a| a.bytes.as_slice()).collect();
            let acks = store.ingest(&envs, NOW).expect("ingest a build batch");
            assert!(
                acks.iter().all(|a| a.status == Status::Valid),
                "the build must be valid"
            );
            stored += atts.len();
            if reported.elapsed() > Duration::from_secs(30) {
                reported = Instant::now();
                eprintln!(
                    "  … {stored} stored in {:.0} s",
                    start.elapsed().as_secs_f64()
                );
            }
        }
    });
    let extra = extras(w, groups);
    let envs: Vec<&[u8]> = extra.iter().map(|a| a.bytes.as_slice()).collect();
    for a in store.ingest(&envs, NOW).expect("ingest the extras") {
        assert_eq!(a.status, Status::Valid, "extras must be valid");
    }
    stored + extra.len()
}

/// `target/bench-pages` (the bench binary is `target/release/deps/pages-…`).
fn bench_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PASSALONG_BENCH_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("own path");
    exe.ancestors()
        .nth(3)
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
        .join("bench-pages")
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() {
                    dir_size(&path)
                } else {
                    e.metadata().map_or(0, |m| m.len())
                }
            })
            .sum()
    })
}

/// An HTTP response: status, headers, body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next()?.split_once('='))
            .find(|(k, v)| *k == name && !v.is_empty())
            .map(|(_, v)| v.to_string())
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        b = &b[eol + 2..];
        if size == 0 || b.len() < size {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
}

/// One request on a new connection, read to its end.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let raw = &buf[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    Resp {
        status,
        headers,
        body: if chunked { dechunk(raw) } else { raw.to_vec() },
    }
}

/// Signs in as a browser does; returns the session cookie header.
fn sign_in(addr: SocketAddr) -> String {
    let page = request(addr, "GET", "/signin", "", b"");
    assert_eq!(page.status, 200, "GET /signin");
    let csrf = page.cookie("pl_signin").expect("the sign-in cookie");
    let form = format!("token={TOKEN}&csrf={csrf}");
    let r = request(
        addr,
        "POST",
        "/signin",
        &format!(
            "Cookie: pl_signin={csrf}\r\nOrigin: http://{addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        ),
        form.as_bytes(),
    );
    assert!(
        r.status == 303 || r.status == 302,
        "POST /signin: {}",
        r.status
    );
    let session = r.cookie("pl_session").expect("a session cookie");
    format!("Cookie: pl_session={session}\r\n")
}

/// References in a page to anything not served by the node itself (`src`, `href` of
/// stylesheets and scripts, `action`), which a browser would load or post to.
fn external_loads(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "action=\"", "<link "] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let value = if attr == "<link " {
                rest.split('>')
                    .next()
                    .and_then(|t| t.split("href=\"").nth(1))
                    .and_then(|v| v.split('"').next())
                    .unwrap_or("/")
            } else {
                rest.split('"').next().unwrap_or("")
            };
            if !(value.starts_with('/') || value.starts_with("data:")) || value.starts_with("//") {
                out.push(value.to_string());
            }
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let n = env_usize("PASSALONG_BENCH_N", 1_000_000);
    let requests = env_usize("PASSALONG_BENCH_REQUESTS", 200).max(1);
    let budget = Duration::from_secs(env_usize("PASSALONG_BENCH_PAGE_SECS", 60) as u64);
    let w = World::new();
    let dir = bench_dir().join(format!("store-{n}"));
    let marker = dir.join("complete");
    let expected = format!("{GENERATOR} {n}\n");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(expected.as_str()) {
        println!(
            "building a store of {n} attestations in {} (kept for later runs) …",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench dir");
        let t = Instant::now();
        let store = Store::open(dir.join("store")).expect("open the store");
        let stored = build(&store, &w, n);
        store.close().expect("close the store");
        std::fs::write(&marker, &expected).expect("marker");
        println!(
            "  built: {stored} attestations in {:.0} s",
            t.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "reusing the store in {} (delete it to rebuild)",
            dir.display()
        );
    }

    let opened = Instant::now();
    let store = Arc::new(Store::open(dir.join("store")).expect("open the store"));
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;
    let valid = store.valid_count().expect("count");
    let me = w.me.public();
    println!(
        "store: {valid} valid attestations, {:.0} MB on disk, opened in {open_ms:.0} ms; \
         the node's identity {} sells {MY_OFFERS} offers and refers in {} other markets",
        dir_size(&dir.join("store")) as f64 / 1e6,
        &me.to_hex()[..16],
        OTHER_SELLERS
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let contacts = tempfile::tempdir().expect("contacts dir");
    let (addr, _stop) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut state = AppState::new(
            store.clone(),
            Writer::spawn(store.clone()),
            Identities::single(seeded("me", 0)),
            TOKEN.into(),
            format!("http://{addr}"),
            dir.clone(),
        )
        .expect("state");
        // The store's dir may be kept between runs: contacts go elsewhere.
        state.contacts = Arc::new(passalong_api::contacts::Contacts::new(
            contacts.path().join("contacts"),
        ));
        let app = passalong_web::app(state, &PublicUrl::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(passalong_web::serve(listener, app, async {
            let _ = rx.await;
        }));
        (addr, tx)
    });

    let cookie = sign_in(addr);
    let other = w.sellers[1].public().to_hex();
    let pages: Vec<(&str, String)> = vec![
        ("home", "/".into()),
        ("offers list", "/offers".into()),
        (
            "offer page",
            format!("/offers/{}", w.offers[0][0].id.to_hex()),
        ),
        ("ledgers index", "/ledger".into()),
        ("ledger (mine)", format!("/ledger/{}", me.to_hex())),
        ("ledger (another seller)", format!("/ledger/{other}")),
        ("disputes", "/disputes".into()),
        ("pass along", "/pass".into()),
        ("network", "/network".into()),
        ("GET /v1/earnings?limit=20", "/v1/earnings?limit=20".into()),
    ];
    println!("\n{requests} requests per page, one after another (first request timed apart)\n");
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>8}",
        "page", "first ms", "median", "p99", "max", "bytes", "external", "goal"
    );
    let mut all_met = true;
    for (name, path) in &pages {
        let t = Instant::now();
        let first = request(addr, "GET", path, &cookie, b"");
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(
            first.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&first.body)
        );
        let mut times = Vec::with_capacity(requests);
        let mut size = 0;
        let started = Instant::now();
        for _ in 0..requests {
            if times.len() >= 5 && started.elapsed() > budget {
                break;
            }
            let t = Instant::now();
            let r = request(addr, "GET", path, &cookie, b"");
            times.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(r.status, 200, "{path}");
            size = size.max(r.body.len());
        }
        times.sort_by(f64::total_cmp);
        let external = external_loads(&String::from_utf8_lossy(&first.body));
        let p99 = percentile(&times, 0.99);
        let met = p99 < 50.0 && size < 100_000 && external.is_empty();
        all_met &= met;
        let name = if times.len() < requests {
            format!("{name} ({} req)", times.len())
        } else {
            name.to_string()
        };
        println!(
            "{:<28} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>10} {:>9} {:>8}",
            name,
            first_ms,
            percentile(&times, 0.5),
            p99,
            times.last().copied().unwrap_or(f64::NAN),
            size,
            external.len(),
            if met { "met" } else { "NOT met" }
        );
        if !external.is_empty() {
            println!("    loads from elsewhere: {external:?}");
        }
    }
    println!(
        "\ngoals (p99 < 50 ms, < 100,000 bytes, no external load): {}",
        if all_met { "all met" } else { "NOT all met" }
    );
}
