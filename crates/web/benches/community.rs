//! A community node hosting 10,000 members, 100 of them active at once (issue 16; figures in
//! `docs/benchmarks.md`, "Community node"). `cargo bench -p passalong-web --bench community`
//! prints the cost of one argon2id derivation for each candidate preset of `member_kdf`, then,
//! for each preset measured, the members' sign-in and page latencies (p50, p99, max) while
//! they sign in and browse, and the process's peak memory.
//!
//! **The node.** The node's identity is the connector of a community with N hosted members
//! (default 10,000), each with her key file under `community/members/` and her Membership
//! (her key consents, the node's signs) in the store, as a join through an invite leaves
//! them. Twenty sellers outside the node have three offers each with a connector share; every
//! member passed two of them along through the community (her referral's parent another
//! member's, most of the time), and about half of the referrals were bought through: some
//! 50,000 attestations in all, so that every member's home, ledger and the connector's page
//! have lines to show. Members sealed at the cheapest parameters a key file may have
//! (`KdfParams::MINIMUM`: sealing 10,000 at the default would take long); the active ones are
//! sealed again at the preset measured before the node starts, with `member_kdf` set to it, so
//! their sign-ins cost what they would on a node using that preset (and re-seal nothing).
//!
//! **The data dir is built once and kept** under `target/bench-community/members-<N>` (a marker
//! file says it is complete; delete the directory to rebuild, ~4 min for 10,000 members on two
//! busy cores); later runs open it and go straight to the measurements.
//!
//! **The load.** The server is the node's real router (`passalong_web::app` over a real
//! `AppState` on that data dir) on a loopback TCP listener, on a tokio runtime of two workers
//! (argon2 runs in its blocking pool behind the sign-in gate's permits, one per core, as in
//! the node), in a child process (this binary again), so that its memory is the node's alone;
//! it runs with two malloc arenas, as `passalong run` sets. A of the members (default 100, spread over the registry) are active: half of
//! them sign in at once when the load starts (a burst: after a restart everyone is signed
//! out), the other half arrive one by one at random (Poisson) over half the run, counted from
//! when the burst's last sign-in is answered (so that none of them queues behind the burst).
//! Each signs in as a browser does (`GET /signin` for the double-submit cookie, then `POST
//! /signin` with her login and password, timed from the POST to the session cookie, retries
//! after a 503 "busy" included) and then browses her pages (home, offers, pass along, ledgers,
//! one ledger, contacts, account) in turn, with a think time drawn at random (exponential,
//! mean 1 s) between two pages, until the run ends (default 60 s). Each request opens its own
//! HTTP/1.1 connection, timed from connect to the last byte. The clients are threads of the
//! bench's process, on the same two cores as the node: their work is in the latencies, not in
//! the node's memory (its `VmRSS` when the load starts and ends, and its peak, `VmHWM`, reset
//! when the load starts). After the load the operator opens the connector's page, which lists
//! every member, ten times.
//!
//! Knobs (environment): `PASSALONG_BENCH_MEMBERS` (default 10,000), `PASSALONG_BENCH_ACTIVE`
//! (100), `PASSALONG_BENCH_BURST` (members signing in at once, default half the active ones),
//! `PASSALONG_BENCH_SECS` (the run per preset, 60), `PASSALONG_BENCH_THINK_MS` (mean think
//! time, 1,000), `PASSALONG_BENCH_PRESETS` (the presets loaded, in order, from `a`, `b`, `c`;
//! default `b`, the default `member_kdf`), `PASSALONG_BENCH_KDF_RUNS` (derivations timed per
//! preset, 5), `PASSALONG_BENCH_DIR` (instead of `target/bench-community`).
//!
//! The candidate presets (`docs/community-nodes-plan.md` §3.2): A = 19 MiB and two passes
//! (OWASP's minimum), B = 46 MiB and one pass (`KdfParams::MEMBER`, the default), C = 64 MiB
//! and three passes (RFC 9106's second recommendation, one lane).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use passalong_accounts::members::{self, Status};
use passalong_accounts::{kdf, KdfParams, Login, Member, Members};
use passalong_api::contacts::Contacts;
use passalong_api::{AppState, Identities, Writer};
use passalong_protocol::attestation::{Community, Membership};
use passalong_protocol::{
    Attestation, Body, Currency, Id, Keypair, Offer, Policy, PublicKey, Receipt, Referral, Rule,
};
use passalong_store::{Status as Stored, Store};
use passalong_web::PublicUrl;
use rand_core::OsRng;

const DAY_MS: u64 = 86_400_000;
/// 2026-01-01T00:00:00Z, as in the other benches.
const T0: u64 = 1_767_225_600_000;
/// The local time of every ingest: after everything, so nothing is held.
const NOW: u64 = T0 + 30 * DAY_MS;
const SELLERS: usize = 20;
const OFFERS_PER_SELLER: usize = 3;
const REFERRALS_PER_MEMBER: usize = 2;
/// A referral's parent is another member's referral of the same offer this often (in 100).
const CHAINED_PCT: u64 = 70;
/// Contacts each active member has named.
const CONTACTS: usize = 5;
const TOKEN: &str = "bench-token-0123456789abcdef";
const COMMUNITY_NAME: &str = "Rue des Lilas";
/// What the generator writes; a kept data dir built by another version is rebuilt.
const GENERATOR: &str = "community-v1";
/// The goal for a sign-in while members arrive one by one (`docs/community-nodes-plan.md`
/// §3.2): under a second at the 99th percentile, on two cores.
const SIGNIN_GOAL_MS: f64 = 1_000.0;

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

    /// An exponentially distributed wait of mean `mean_ms`, at most five times it.
    fn exp_ms(&mut self, mean_ms: f64) -> f64 {
        let u = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        (-u.ln() * mean_ms).min(5.0 * mean_ms)
    }
}

fn seeded(tag: &str, i: usize) -> Keypair {
    let mut seed = blake3::Hasher::new();
    seed.update(tag.as_bytes());
    seed.update(&(i as u64).to_be_bytes());
    Keypair::from_seed(*seed.finalize().as_bytes())
}

fn login_of(i: usize) -> String {
    format!("m{i:05}")
}

fn password_of(i: usize) -> String {
    format!("lilas-{i:05}-pw")
}

/// The candidate presets, by letter.
fn preset(letter: &str) -> Option<(&'static str, KdfParams)> {
    match letter.trim().to_ascii_lowercase().as_str() {
        "a" => Some((
            "A",
            KdfParams {
                m_kib: 19 * 1024,
                t: 2,
                p: 1,
            },
        )),
        "b" => Some(("B", KdfParams::MEMBER)),
        "c" => Some((
            "C",
            KdfParams {
                m_kib: 64 * 1024,
                t: 3,
                p: 1,
            },
        )),
        _ => None,
    }
}

fn describe(p: &KdfParams) -> String {
    format!("{} MiB, t={}, p={}", p.m_kib / 1024, p.t, p.p)
}

// ---------------------------------------------------------------------------------------------
// The data dir: the community, its members, their referrals and the sales through them.

/// The connector (the node's identity), the sellers and their offers, the community.
struct World {
    connector: Keypair,
    sellers: Vec<Keypair>,
    offers: Vec<Attestation>,
    community: Attestation,
}

impl World {
    fn new() -> World {
        let connector = seeded("connector", 0);
        let sellers: Vec<Keypair> = (0..SELLERS).map(|i| seeded("seller", i)).collect();
        let rules = [
            Rule::Geometric { r_bps: 5000 },
            Rule::Equal,
            Rule::Direct,
            Rule::SplitProof,
        ];
        let offers = sellers
            .iter()
            .enumerate()
            .flat_map(|(s, k)| {
                (0..OFFERS_PER_SELLER).map(move |i| {
                    Attestation::sign(
                        Body::Offer(Offer {
                            seller: k.public(),
                            title: format!("Basket {i} of the market stall {s}"),
                            content_hash: None,
                            price_minor: 2_500,
                            currency: Currency(*b"EUR"),
                            policy: Policy {
                                pool_bps: 1_000,
                                connector_bps: 200,
                                rule: rules[(s + i) % 4],
                                max_depth: 16,
                                window_ms: 365 * DAY_MS,
                                require_purchase: false,
                            },
                            valid_from_ms: T0,
                            valid_until_ms: None,
                            created_at_ms: T0 + i as u64,
                            checkout_url: Some(format!("https://stall{s}.example/buy/{i}")),
                        }),
                        k,
                    )
                })
            })
            .collect();
        let community = Attestation::sign(
            Body::Community(Community {
                connector: connector.public(),
                name: COMMUNITY_NAME.into(),
                created_at_ms: T0 + 100,
            }),
            &connector,
        );
        World {
            connector,
            sellers,
            offers,
            community,
        }
    }

    fn seller_of(&self, offer: usize) -> &Keypair {
        &self.sellers[offer / OFFERS_PER_SELLER]
    }
}

/// When member `i` joined.
fn joined_ms(i: usize) -> u64 {
    T0 + DAY_MS + i as u64 * 10
}

/// The members' Memberships, then their referrals (a parent always before its child) and the
/// receipts through about half of them.
fn activity(w: &World, n: usize) -> (Vec<Attestation>, Vec<Attestation>) {
    let connector = w.connector.public();
    let memberships = (0..n)
        .map(|i| {
            Attestation::sign(
                Body::Membership(Membership::admit(
                    connector,
                    w.community.id,
                    &seeded("member", i),
                    joined_ms(i),
                )),
                &w.connector,
            )
        })
        .collect();
    let mut rng = Rng(16);
    let mut by_offer: Vec<Vec<Id>> = vec![Vec::new(); w.offers.len()];
    let mut rest = Vec::with_capacity(n * REFERRALS_PER_MEMBER * 2);
    let t = T0 + 5 * DAY_MS;
    for i in 0..n {
        let member = seeded("member", i);
        for r in 0..REFERRALS_PER_MEMBER {
            // Her first referral is of the offer her number names, so that member i's ledger
            // page (the bench's) shows seller i mod SELLERS.
            let offer = if r == 0 {
                (i % SELLERS) * OFFERS_PER_SELLER + rng.below(OFFERS_PER_SELLER)
            } else {
                rng.below(w.offers.len())
            };
            let earlier = &by_offer[offer];
            let parent = (!earlier.is_empty() && rng.next() % 100 < CHAINED_PCT)
                .then(|| earlier[earlier.len() - 1 - rng.below(earlier.len().min(200))]);
            let created = t + (i * REFERRALS_PER_MEMBER + r) as u64 * 10;
            let referral = Attestation::sign(
                Body::Referral(Referral {
                    referrer: member.public(),
                    offer: w.offers[offer].id,
                    parent,
                    recipient: None,
                    community: Some(w.community.id),
                    created_at_ms: created,
                }),
                &member,
            );
            by_offer[offer].push(referral.id);
            let bought = rng.next().is_multiple_of(2);
            let via = referral.id;
            rest.push(referral);
            if bought {
                let seller = w.seller_of(offer);
                let order = (i * REFERRALS_PER_MEMBER + r) as u64;
                rest.push(Attestation::sign(
                    Body::Receipt(Receipt {
                        seller: seller.public(),
                        offer: w.offers[offer].id,
                        order: format!("o{order}"),
                        amount_minor: 1_000 + order % 4_000,
                        buyer: PublicKey(*blake3::hash(&order.to_be_bytes()).as_bytes()),
                        via: Some(via),
                        created_at_ms: created + 5,
                    }),
                    seller,
                ));
            }
        }
    }
    (memberships, rest)
}

fn ingest_all(store: &Store, atts: &[Attestation]) {
    for chunk in atts.chunks(1_000) {
        let envs: Vec<&[u8]> = chunk.iter().map(|a| a.bytes.as_slice()).collect();
        for a in store.ingest(&envs, NOW).expect("ingest") {
            assert_eq!(a.status, Stored::Valid, "the build must be valid");
        }
    }
}

/// Builds the data dir: the store, `community/community.json` and every member's file, her
/// key sealed at [`KdfParams::MINIMUM`] on two threads while this thread writes the files.
fn build(dir: &Path, w: &World, n: usize) {
    let start = Instant::now();
    let store = Store::open(dir.join("store")).expect("open the store");
    let mut first: Vec<Attestation> = w.offers.clone();
    first.push(w.community.clone());
    ingest_all(&store, &first);
    let (memberships, rest) = activity(w, n);
    ingest_all(&store, &memberships);
    ingest_all(&store, &rest);
    println!(
        "  {} attestations stored in {:.0} s; sealing {n} members' keys …",
        first.len() + memberships.len() + rest.len(),
        start.elapsed().as_secs_f64()
    );
    store.close().expect("close the store");
    passalong_accounts::community::create(
        dir,
        &passalong_accounts::Community {
            id: w.community.id,
            name: COMMUNITY_NAME.into(),
            created_at_ms: T0 + 100,
        },
    )
    .expect("community.json");
    let mut registry = Members::open(dir).expect("the members' registry");
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel(64);
        for _ in 0..2 {
            let (tx, next) = (tx.clone(), &next);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let key = members::seal_new(
                    &seeded("member", i),
                    password_of(i).as_bytes(),
                    KdfParams::MINIMUM,
                    &mut OsRng,
                )
                .expect("seal");
                if tx.send((i, key)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut reported = Instant::now();
        for (done, (i, key)) in rx.into_iter().enumerate() {
            registry
                .add(Member {
                    login: Login::parse(&login_of(i)).expect("login"),
                    public_key: seeded("member", i).public(),
                    created_ms: joined_ms(i),
                    membership: memberships[i].id,
                    status: Status::Active,
                    last_signin_ms: None,
                    referrals: REFERRALS_PER_MEMBER as u64,
                    key,
                })
                .expect("add a member");
            if reported.elapsed() > Duration::from_secs(30) {
                reported = Instant::now();
                eprintln!(
                    "  … {} members in {:.0} s",
                    done + 1,
                    start.elapsed().as_secs_f64()
                );
            }
        }
    });
    println!(
        "  built: {n} members in {:.0} s",
        start.elapsed().as_secs_f64()
    );
}

/// `target/bench-community` (the bench binary is `target/release/deps/community-…`).
fn bench_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PASSALONG_BENCH_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("own path");
    exe.ancestors()
        .nth(3)
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
        .join("bench-community")
}

/// The active members: `active` of `n`, spread evenly over them.
fn active_members(n: usize, active: usize) -> Vec<usize> {
    let active = active.min(n).max(1);
    (0..active).map(|k| k * n / active).collect()
}

/// Seals the active members' keys at `params` (those sealed otherwise), on two threads, and
/// gives each her contacts.
fn prepare(dir: &Path, active: &[usize], params: KdfParams) -> usize {
    let mut registry = Members::open(dir).expect("the members' registry");
    let todo: Vec<usize> = active
        .iter()
        .copied()
        .filter(|&i| {
            let m = registry
                .get(&seeded("member", i).public())
                .expect("an active member is in the registry");
            (m.key.kdf.m_kib, m.key.kdf.t, m.key.kdf.p) != (params.m_kib, params.t, params.p)
        })
        .collect();
    let next = AtomicUsize::new(0);
    let sealed = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = todo.get(k) else { return };
                let key = members::seal_new(
                    &seeded("member", i),
                    password_of(i).as_bytes(),
                    params,
                    &mut OsRng,
                )
                .expect("seal");
                sealed.lock().expect("the keys sealed").push((i, key));
            });
        }
    });
    for (i, key) in sealed.into_inner().expect("the keys sealed") {
        registry
            .set_key(&seeded("member", i).public(), key)
            .expect("re-seal");
    }
    let contacts = Contacts::new(dir.join("contacts"));
    for &i in active {
        let me = seeded("member", i).public();
        for c in 0..CONTACTS {
            let other = seeded("member", (i + 1 + c * 7) % registry.len().max(1)).public();
            contacts
                .set(&me, other, &format!("Neighbour {c} of {}", login_of(i)))
                .expect("a contact");
        }
    }
    todo.len()
}

// ---------------------------------------------------------------------------------------------
// The client: one HTTP/1.1 request per connection, as the page bench does.

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body_len: usize,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next()?.split_once('='))
            .find(|(k, v)| *k == name && !v.is_empty())
            .map(|(_, v)| v.to_string())
    }
}

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
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body_len: buf.len() - split - 4,
    }
}

/// What one sign-in took.
struct SignIn {
    cookie: String,
    ms: f64,
    busy: usize,
}

/// Signs member `i` in as a browser does: the form (for its double-submit cookie), then the
/// POST, timed from the POST to the session cookie, 503 "busy" answers retried after their
/// `Retry-After` (1 s when none).
fn sign_in(addr: SocketAddr, i: usize) -> SignIn {
    let page = request(addr, "GET", "/signin", "", b"");
    assert_eq!(page.status, 200, "GET /signin");
    let csrf = page.cookie("pl_signin").expect("the sign-in cookie");
    let form = format!(
        "login={}&password={}&csrf={csrf}",
        login_of(i),
        password_of(i)
    );
    let headers = format!(
        "Cookie: pl_signin={csrf}\r\nOrigin: http://{addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    );
    let started = Instant::now();
    let mut busy = 0;
    loop {
        let r = request(addr, "POST", "/signin", &headers, form.as_bytes());
        match r.status {
            302 | 303 => {
                let session = r.cookie("pl_session").expect("a session cookie");
                return SignIn {
                    cookie: format!("Cookie: pl_session={session}\r\n"),
                    ms: started.elapsed().as_secs_f64() * 1e3,
                    busy,
                };
            }
            503 => {
                busy += 1;
                let secs = r
                    .header("retry-after")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1);
                std::thread::sleep(Duration::from_secs(secs.max(1)));
            }
            other => panic!("POST /signin as {}: {other}", login_of(i)),
        }
    }
}

/// The pages a member browses, in turn: (name, path).
fn member_pages(w: &World, i: usize) -> Vec<(&'static str, String)> {
    let seller = w.sellers[i % SELLERS].public().to_hex();
    vec![
        ("home", "/".into()),
        ("offers", "/offers".into()),
        ("pass along", "/pass".into()),
        ("ledgers index", "/ledger".into()),
        ("ledger (a market)", format!("/ledger/{seller}")),
        ("contacts", "/contacts".into()),
        ("account", "/account".into()),
    ]
}

/// What the clients measured.
#[derive(Default)]
struct Measured {
    burst_signins: Vec<f64>,
    steady_signins: Vec<f64>,
    busy: usize,
    pages: BTreeMap<&'static str, Vec<f64>>,
    bytes: BTreeMap<&'static str, usize>,
    errors: Vec<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `p50 p99 max` of `v` (sorted in place), and how many.
fn summary(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "{:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        v.len(),
        percentile(v, 0.5),
        percentile(v, 0.9),
        percentile(v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    )
}

fn proc_status(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The result of one preset's run.
struct Run {
    name: &'static str,
    params: KdfParams,
    steady_p99: f64,
    burst_p99: f64,
    page_p99: f64,
}

struct Load {
    active: Vec<usize>,
    burst: usize,
    secs: u64,
    think_ms: f64,
}

/// The node, served by a child process of this bench (the same binary, with
/// `PASSALONG_BENCH_SERVE` set), so that its memory is the node's alone: the clients' threads
/// and the bench's own key derivations are not in it.
struct Node {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    addr: SocketAddr,
}

impl Node {
    fn start(dir: &Path, params: KdfParams) -> Node {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut node = Command::new(std::env::current_exe().expect("own path"));
        if std::env::var_os(REEXEC).is_some() {
            // The threshold is this bench's, not the node's.
            node.env_remove(MMAP_THRESHOLD);
        }
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // As `passalong run` sets with mallopt (node/src/main.rs).
            node.env("MALLOC_ARENA_MAX", "2");
        }
        let mut child = node
            .env("PASSALONG_BENCH_SERVE", dir)
            .env(
                "PASSALONG_BENCH_SERVE_KDF",
                format!("{},{},{}", params.m_kib, params.t, params.p),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the node");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the node's address");
        let addr = line
            .trim()
            .strip_prefix("addr ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("the node said {line:?}"));
        Node {
            child,
            stdin,
            stdout,
            addr,
        }
    }

    /// Sends `command`; the node's answer: `key value` pairs.
    fn ask(&mut self, command: &str) -> BTreeMap<String, u64> {
        use std::io::BufRead;
        writeln!(self.stdin, "{command}").expect("to the node");
        self.stdin.flush().expect("to the node");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("from the node");
        let words: Vec<&str> = line.split_whitespace().collect();
        words
            .chunks(2)
            .filter_map(|kv| Some((kv[0].to_string(), kv.get(1)?.parse().ok()?)))
            .collect()
    }

    fn stop(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// The child's side of [`Node`]: serves the data dir `dir` with `member_kdf` from the
/// environment and answers the bench on stdin: `reset` (VmHWM, Linux 4.0 and later: writing 5
/// to `clear_refs`), `stats` (RSS, peak RSS in KiB, argon2 runs); stops at the end of stdin.
fn serve(dir: PathBuf) {
    use std::io::BufRead;
    let kdf: Vec<u32> = std::env::var("PASSALONG_BENCH_SERVE_KDF")
        .expect("PASSALONG_BENCH_SERVE_KDF")
        .split(',')
        .map(|v| v.parse().expect("a number"))
        .collect();
    let params = KdfParams {
        m_kib: kdf[0],
        t: kdf[1],
        p: kdf[2],
    };
    let store = Arc::new(Store::open(dir.join("store")).expect("open the store"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (addr, stop, state) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut state = AppState::new(
            store.clone(),
            Writer::spawn(store.clone()),
            Identities::single(seeded("connector", 0)),
            TOKEN.into(),
            format!("http://{addr}"),
            dir.clone(),
        )
        .expect("state");
        state.member_kdf = params;
        let app = passalong_web::app(state.clone(), &PublicUrl::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(passalong_web::serve(listener, app, async {
            let _ = rx.await;
        }));
        (addr, tx, state)
    });
    assert_eq!(
        state.community.member_count(),
        members_on_disk(&dir),
        "every member's file opened"
    );
    println!("addr {addr}");
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_default();
        match line.trim() {
            "reset" => {
                let ok = std::fs::write("/proc/self/clear_refs", "5").is_ok();
                println!(
                    "reset {} rss {}",
                    u64::from(ok),
                    proc_status("VmRSS:").unwrap_or(0)
                );
            }
            "stats" => println!(
                "rss {} hwm {} checks {}",
                proc_status("VmRSS:").unwrap_or(0),
                proc_status("VmHWM:").unwrap_or(0),
                state.signin.password_checks()
            ),
            _ => println!("unknown"),
        }
    }
    let _ = stop.send(());
    drop(state);
    rt.shutdown_timeout(Duration::from_secs(5));
}

/// Runs the node on `dir` with `member_kdf` = `params` and the load on it.
fn run(dir: &Path, w: &World, load: &Load, (name, params): (&'static str, KdfParams)) -> Run {
    let t = Instant::now();
    let resealed = prepare(dir, &load.active, params);
    println!(
        "\npreset {name} ({}): {} active members' keys sealed at it in {:.1} s",
        describe(&params),
        resealed,
        t.elapsed().as_secs_f64()
    );
    let mut node = Node::start(dir, params);
    let addr = node.addr;
    let before = node.ask("reset");
    let load_before = loadavg();

    let measured = Mutex::new(Measured::default());
    let started = Instant::now();
    let end = started + Duration::from_secs(load.secs);
    let steady = load.active.len().saturating_sub(load.burst);
    // The late arrivals come one by one over half the run, from when the burst's last
    // sign-in is answered (so that none of them waits behind the burst).
    let burst_done = std::sync::OnceLock::<Instant>::new();
    let burst_left = AtomicUsize::new(load.burst);
    if load.burst == 0 {
        let _ = burst_done.set(started);
    }
    let mean_gap_ms = (load.secs as f64 * 500.0) / steady.max(1) as f64;
    let mut arrivals = Vec::with_capacity(load.active.len());
    let mut rng = Rng(7);
    let mut at_ms = 0.0;
    for k in 0..load.active.len() {
        if k >= load.burst {
            at_ms += rng.exp_ms(mean_gap_ms);
        }
        arrivals.push(at_ms);
    }
    std::thread::scope(|s| {
        for (k, &i) in load.active.iter().enumerate() {
            let (measured, arrive) = (&measured, arrivals[k]);
            let (burst_done, burst_left) = (&burst_done, &burst_left);
            let pages = member_pages(w, i);
            let think_ms = load.think_ms;
            let burst = k < load.burst;
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || {
                    let mut rng = Rng(1_000 + i as u64);
                    if !burst {
                        let base = loop {
                            if let Some(t) = burst_done.get() {
                                break *t;
                            }
                            if Instant::now() >= end {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        };
                        let at = base + Duration::from_secs_f64(arrive / 1e3);
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    }
                    if Instant::now() >= end {
                        return;
                    }
                    let si = sign_in(addr, i);
                    if burst && burst_left.fetch_sub(1, Ordering::SeqCst) == 1 {
                        let _ = burst_done.set(Instant::now());
                    }
                    {
                        let mut m = measured.lock().expect("the figures");
                        m.busy += si.busy;
                        if burst {
                            m.burst_signins.push(si.ms);
                        } else {
                            m.steady_signins.push(si.ms);
                        }
                    }
                    let mut next = rng.below(pages.len());
                    while Instant::now() < end {
                        let (page, path) = &pages[next % pages.len()];
                        next += 1;
                        let t = Instant::now();
                        let r = request(addr, "GET", path, &si.cookie, b"");
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        {
                            let mut m = measured.lock().expect("the figures");
                            if r.status == 200 {
                                m.pages.entry(page).or_default().push(ms);
                                let b = m.bytes.entry(page).or_default();
                                *b = (*b).max(r.body_len);
                            } else {
                                m.errors.push(format!("{path}: {}", r.status));
                            }
                        }
                        let think = Duration::from_secs_f64(rng.exp_ms(think_ms) / 1e3);
                        let left = end.saturating_duration_since(Instant::now());
                        std::thread::sleep(think.min(left));
                    }
                })
                .expect("a client thread");
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let after = node.ask("stats");
    let load_after = loadavg();

    // The connector's page, with every member on the roster (after the load, alone).
    let operator = operator_cookie(addr);
    let mut community_ms: Vec<f64> = (0..10)
        .map(|_| {
            let t = Instant::now();
            let r = request(addr, "GET", "/community", &operator, b"");
            assert_eq!(r.status, 200, "GET /community");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    node.stop();

    let mut m = measured.into_inner().expect("the figures");
    let mut all: Vec<f64> = m.pages.values().flatten().copied().collect();
    println!(
        "  {} active of {} members for {elapsed:.0} s: {} signed in at once, then {} one by one over {} s from the burst's last sign-in; think time {:.0} ms mean; machine load (1, 5, 15 min) {load_before} before, {load_after} after",
        load.active.len(),
        members_on_disk(dir),
        load.burst.min(load.active.len()),
        steady,
        load.secs / 2,
        load.think_ms,
    );
    println!(
        "\n  {:<28} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "ms", "n", "p50", "p90", "p99", "max", "bytes"
    );
    let burst_p99 = {
        let line = summary(&mut m.burst_signins);
        println!("  {:<28} {line}", "sign-in, the burst");
        percentile(&m.burst_signins, 0.99)
    };
    let steady_p99 = {
        let line = summary(&mut m.steady_signins);
        println!("  {:<28} {line}", "sign-in, one by one");
        percentile(&m.steady_signins, 0.99)
    };
    let line = summary(&mut all);
    let page_p99 = percentile(&all, 0.99);
    println!(
        "  {:<28} {line}   ({:.1} pages/s)",
        "pages, all",
        all.len() as f64 / elapsed
    );
    for (page, v) in m.pages.iter_mut() {
        let line = summary(v);
        println!("  {:<28} {line} {:>9}", format!("  {page}"), m.bytes[page]);
    }
    println!(
        "  {:<28} {}   (the operator's, alone, after the load)",
        "connector page /community",
        summary(&mut community_ms)
    );
    println!(
        "  503 busy answers retried: {}; argon2 runs in the node: {}; errors: {}",
        m.busy,
        after.get("checks").copied().unwrap_or(0),
        m.errors.len()
    );
    for e in m.errors.iter().take(5) {
        println!("    {e}");
    }
    let mib =
        |k: &str, from: &BTreeMap<String, u64>| from.get(k).copied().unwrap_or(0) as f64 / 1024.0;
    println!(
        "  the node's memory: RSS {:.0} MiB when the load began, {:.0} MiB at its end; peak RSS (VmHWM) {:.0} MiB {}",
        mib("rss", &before),
        mib("rss", &after),
        mib("hwm", &after),
        if before.get("reset") == Some(&1) {
            "during the load"
        } else {
            "since the node started (VmHWM could not be reset)"
        }
    );
    Run {
        name,
        params,
        steady_p99,
        burst_p99,
        page_p99,
    }
}

fn members_on_disk(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("community").join(members::DIR)).map_or(0, |d| d.count())
}

/// The operator signs in with the API token; returns the session cookie header.
fn operator_cookie(addr: SocketAddr) -> String {
    let page = request(addr, "GET", "/signin/operator", "", b"");
    assert_eq!(page.status, 200, "GET /signin/operator");
    let csrf = page.cookie("pl_signin").expect("the sign-in cookie");
    let r = request(
        addr,
        "POST",
        "/signin/operator",
        &format!(
            "Cookie: pl_signin={csrf}\r\nOrigin: http://{addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        ),
        format!("token={TOKEN}&csrf={csrf}").as_bytes(),
    );
    assert!(
        matches!(r.status, 302 | 303),
        "operator sign-in: {}",
        r.status
    );
    format!(
        "Cookie: pl_session={}\r\n",
        r.cookie("pl_session").expect("a session cookie")
    )
}

/// One argon2id derivation at `params`: the median and fastest of `runs` alone, and the
/// median wall time of two at once (two cores).
fn kdf_cost(params: &KdfParams, runs: usize) -> (f64, f64, f64) {
    let once = || {
        let t = Instant::now();
        kdf::derive(b"correct horse battery", &[7; 16], params).expect("derive");
        t.elapsed().as_secs_f64() * 1e3
    };
    once(); // the first run also maps its memory in
    let mut alone: Vec<f64> = (0..runs).map(|_| once()).collect();
    alone.sort_by(f64::total_cmp);
    let mut pairs: Vec<f64> = (0..runs.div_ceil(2))
        .map(|_| {
            let t = Instant::now();
            std::thread::scope(|s| {
                s.spawn(once);
                s.spawn(once);
            });
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    pairs.sort_by(f64::total_cmp);
    (percentile(&alone, 0.5), alone[0], percentile(&pairs, 0.5))
}

/// Set in the bench's own process once it runs with glibc's mmap threshold fixed.
const REEXEC: &str = "PASSALONG_BENCH_REEXEC";
/// glibc's tunable: a fixed threshold above which allocations are mapped (and unmapped when
/// freed), instead of the dynamic one.
const MMAP_THRESHOLD: &str = "MALLOC_MMAP_THRESHOLD_";

/// Runs this bench again with glibc's mmap threshold fixed at 1 MiB, unless it is already,
/// and returns its exit status. glibc raises its threshold to the size of a mapped block freed
/// (up to 32 MiB), so after the first 19 MiB argon2 buffer, later ones come from the heap,
/// and the heap kept nearly all of them: sealing 10,000 key files at 19 MiB on two threads
/// took over 20 GB until the threads ended. The node (the child, [`Node`]) runs with glibc's
/// defaults and two arenas, as `passalong run` does.
fn reexec() -> Option<std::process::ExitStatus> {
    if std::env::var_os(REEXEC).is_some() || std::env::var_os(MMAP_THRESHOLD).is_some() {
        return None;
    }
    Some(
        std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(std::env::args_os().skip(1))
            .env(REEXEC, "1")
            .env(MMAP_THRESHOLD, "1048576")
            .status()
            .expect("run the bench again"),
    )
}

fn main() {
    if let Some(dir) = std::env::var_os("PASSALONG_BENCH_SERVE") {
        return serve(PathBuf::from(dir));
    }
    if let Some(status) = reexec() {
        std::process::exit(status.code().unwrap_or(1));
    }
    let n = env_usize("PASSALONG_BENCH_MEMBERS", 10_000).max(1);
    let active = active_members(n, env_usize("PASSALONG_BENCH_ACTIVE", 100));
    let load = Load {
        burst: env_usize("PASSALONG_BENCH_BURST", active.len() / 2).min(active.len()),
        secs: env_usize("PASSALONG_BENCH_SECS", 60).max(1) as u64,
        think_ms: env_usize("PASSALONG_BENCH_THINK_MS", 1_000) as f64,
        active,
    };
    let runs = env_usize("PASSALONG_BENCH_KDF_RUNS", 5).max(1);
    let presets: Vec<(&'static str, KdfParams)> = std::env::var("PASSALONG_BENCH_PRESETS")
        .unwrap_or_else(|_| "b".into())
        .split(',')
        .map(|p| {
            preset(p).unwrap_or_else(|| panic!("PASSALONG_BENCH_PRESETS: {p:?} is not a, b or c"))
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{cores} cores; machine load (1, 5, 15 min) {} at the start",
        loadavg()
    );

    let w = World::new();
    let dir = bench_dir().join(format!("members-{n}"));
    let marker = dir.join("complete");
    let expected = format!("{GENERATOR} {n}\n");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(expected.as_str()) {
        println!(
            "building a community of {n} members in {} (kept for later runs) …",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench dir");
        build(&dir, &w, n);
        std::fs::write(&marker, &expected).expect("marker");
    } else {
        println!(
            "reusing the data dir {} (delete it to rebuild)",
            dir.display()
        );
    }

    println!("\nargon2id, one derivation (ms): the median and fastest of {runs} alone, and the median of two at once on two threads");
    println!(
        "{:<34} {:>8} {:>8} {:>12}",
        "preset", "median", "fastest", "two at once"
    );
    let mut candidates = vec![("minimum (tests)", KdfParams::MINIMUM)];
    candidates.extend(["a", "b", "c"].iter().filter_map(|p| preset(p)));
    for (name, params) in &candidates {
        let (median, fastest, pair) = kdf_cost(params, runs);
        println!(
            "{:<34} {median:>8.1} {fastest:>8.1} {pair:>12.1}",
            format!("{name} ({})", describe(params))
        );
    }
    println!("machine load {} after", loadavg());

    let opened = Instant::now();
    let store = Store::open(dir.join("store")).expect("open the store");
    println!(
        "\nstore: {} valid attestations, opened in {:.0} ms; the node runs in a child process",
        store.valid_count().expect("count"),
        opened.elapsed().as_secs_f64() * 1e3
    );
    store.close().expect("close the store");
    let results: Vec<Run> = presets.iter().map(|&p| run(&dir, &w, &load, p)).collect();

    println!(
        "\ngoal: a sign-in while members arrive one by one under {SIGNIN_GOAL_MS:.0} ms at the 99th percentile"
    );
    for r in &results {
        println!(
            "  preset {} ({}): one by one p99 {:.0} ms {}; the burst's p99 {:.0} ms; pages p99 {:.1} ms",
            r.name,
            describe(&r.params),
            r.steady_p99,
            if r.steady_p99 < SIGNIN_GOAL_MS { "met" } else { "NOT met" },
            r.burst_p99,
            r.page_p99
        );
    }
}
