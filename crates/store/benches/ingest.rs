//! The store's ingest cost and restart figures (`docs/benchmarks.md` records them).
//!
//! One run of `cargo bench -p passalong-store --bench ingest` prints:
//!
//! 1. batch ingest: `Store::ingest` of 64 envelopes at a time (one batch signature check, one
//!    atomic write, one flush), per attestation, against a bare `ed25519_dalek`
//!    `VerifyingKey::verify_strict` of the same messages, on a store where the seller's offer
//!    and referral chains already exist; the traffic is 7/8 receipts through referrals of
//!    depth 5 and 1/8 referrals that extend those chains. The bare verify of each call's 64
//!    messages runs just before the call, so that both are measured in the same stretch of
//!    the machine's time: on a shared VM its speed drifts by ±25 % between passes seconds
//!    apart. The goal ratio divides the calls' median by those bare verifies' median; also
//!    printed, the median of each call's own ratio and the ratio against two separate bare
//!    passes (before and after the calls);
//! 2. the same one envelope per call (one flush each);
//! 3. a store of N attestations (default 1,000,000; `PASSALONG_BENCH_N`, 0 skips; several
//!    sizes, comma-separated, are measured one after the other in the same run): the build
//!    throughput, batch ingest on it, its size on disk, and a fresh process (this binary run
//!    with `--serve`) that opens it and answers a first `ledger` and `status`: the time to
//!    serving and the resident memory.
//!
//! Knobs (environment): `PASSALONG_BENCH_N`, `PASSALONG_BENCH_BATCHES` (default 200),
//! `PASSALONG_BENCH_SINGLES` (default 1000), `PASSALONG_BENCH_SETUP_GROUPS` (chains of the
//! small store, default 200), `PASSALONG_BENCH_BUILD_SECS` (build budget, default 360: past
//! it the build stops and the figures are for the N reached), `PASSALONG_BENCH_DIR` (where the
//! stores go, default the system temp dir), `PASSALONG_BENCH_KEEP` (set: keep the big store),
//! `PASSALONG_BENCH_STORE` (a directory for the big store, or one per size, comma-separated:
//! built there the first time, with a file of its chains beside it, and reused by later runs,
//! each with traffic new to it),
//! `PASSALONG_BENCH_QUICK` (set: stop after the batch ingest on the big store),
//! `PASSALONG_BENCH_COLD` (set: a reused big store is not read into the OS cache before it
//! opens, and starts as the last run's cold opens left it),
//! `PASSALONG_BENCH_BIG_COLD` (calls measured first on the big store, just opened: default
//! 12), `PASSALONG_BENCH_BIG_BATCHES` (steady-state calls on the big store, default the
//! batches), `PASSALONG_BENCH_BIG_WARM` (calls between the two, after one timed checkpoint,
//! not measured: default 1,500, about two checkpoints' worth),
//! `PASSALONG_BENCH_CACHE_MIB` (sled's cache for the big store; default the store's own),
//! `PASSALONG_BENCH_CHECKPOINT_EVERY` (attestations between the big store's checkpoints;
//! default the store's own).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use passalong_protocol::{
    validation, Attestation, Body, Currency, Id, Keypair, Offer, Policy, PublicKey, Receipt,
    Referral, Rule,
};
use passalong_store::{Status, Store, CHECKPOINT_EVERY};

const DAY_MS: u64 = 86_400_000;
/// 2026-01-01T00:00:00Z, as in the integration tests.
const T0: u64 = 1_767_225_600_000;
/// Build traffic is dated from T0 + 1 s, one millisecond apart; measured traffic from T0 + 1 day.
const TRAFFIC_T0: u64 = T0 + DAY_MS;
/// The local time of every ingest: after everything, so nothing is held.
const NOW: u64 = T0 + 3 * DAY_MS;
/// Referrals per chain: receipts go through the last one, at depth 5.
const CHAIN: usize = 5;
/// Receipts per chain in the build (so 10% of the build is referrals).
const RECEIPTS_PER_CHAIN: usize = 45;
const GROUP: usize = CHAIN + RECEIPTS_PER_CHAIN;
/// Groups per build batch: 1,000 attestations per ingest.
const GROUPS_PER_CHUNK: usize = 20;
const SELLERS: usize = 4;
const REFERRERS: usize = 10_000;
const BATCH: usize = 64;

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

/// The sellers, their offers and the referrers' keys.
struct World {
    sellers: Vec<Keypair>,
    offers: Vec<Attestation>,
    referrers: Vec<Keypair>,
}

impl World {
    fn new() -> World {
        let sellers: Vec<Keypair> = (0..SELLERS)
            .map(|i| Keypair::from_seed([100 + i as u8; 32]))
            .collect();
        let offers = sellers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Attestation::sign(
                    Body::Offer(Offer {
                        seller: s.public(),
                        title: format!("A record, edition {i}"),
                        content_hash: Some([0x5a; 32]),
                        price_minor: 2_000,
                        currency: Currency(*b"EUR"),
                        policy: Policy {
                            pool_bps: 1_000,
                            connector_bps: 0,
                            rule: Rule::Geometric { r_bps: 5000 },
                            max_depth: 16,
                            window_ms: 30 * DAY_MS,
                            require_purchase: false,
                        },
                        valid_from_ms: T0,
                        valid_until_ms: None,
                        created_at_ms: T0,
                        checkout_url: None,
                    }),
                    s,
                )
            })
            .collect();
        let referrers = (0..REFERRERS)
            .map(|i| {
                let mut seed = blake3::Hasher::new();
                seed.update(b"referrer");
                seed.update(&(i as u64).to_be_bytes());
                Keypair::from_seed(*seed.finalize().as_bytes())
            })
            .collect();
        World {
            sellers,
            offers,
            referrers,
        }
    }

    fn referral(&self, who: usize, offer: usize, parent: Option<Id>, t: u64) -> Attestation {
        let k = &self.referrers[who];
        Attestation::sign(
            Body::Referral(Referral {
                referrer: k.public(),
                offer: self.offers[offer].id,
                parent,
                recipient: None,
                community: None,
                created_at_ms: t,
            }),
            k,
        )
    }

    fn receipt(&self, offer: usize, order: String, n: u64, via: Id, t: u64) -> Attestation {
        let s = &self.sellers[offer];
        Attestation::sign(
            Body::Receipt(Receipt {
                seller: s.public(),
                offer: self.offers[offer].id,
                order,
                amount_minor: 1_000 + n % 9_000,
                buyer: PublicKey(*blake3::hash(&n.to_be_bytes()).as_bytes()),
                via: Some(via),
                created_at_ms: t,
            }),
            s,
        )
    }
}

/// The end of a stored chain: receipts go through `r5`, new referrals hang off `r4`.
#[derive(Clone, Copy)]
struct Tail {
    offer: usize,
    r4: Id,
    r5: Id,
}

/// Build group `g`: a chain of five referrals, then 45 receipts through its end.
fn group(w: &World, g: usize) -> (Vec<Attestation>, Tail) {
    let mut rng = Rng(g as u64);
    let offer = g % SELLERS;
    let tb = T0 + 1_000 + (g * GROUP) as u64;
    let mut out = Vec::with_capacity(GROUP);
    let mut parent = None;
    let mut r4 = None;
    for d in 0..CHAIN {
        let r = w.referral(rng.below(REFERRERS), offer, parent, tb + d as u64);
        r4 = parent;
        parent = Some(r.id);
        out.push(r);
    }
    let r5 = parent.expect("a chain has referrals");
    let r4 = r4.expect("a chain has at least two referrals");
    for j in 0..RECEIPTS_PER_CHAIN {
        let n = (g * GROUP + j) as u64;
        let t = tb + (CHAIN + j) as u64;
        out.push(w.receipt(offer, format!("b{g}-{j}"), n, r5, t));
    }
    (out, Tail { offer, r4, r5 })
}

/// Measured traffic: `count` attestations over existing chains, every eighth a referral that
/// extends a chain, the rest receipts through a chain's depth-5 referral. `tag` keeps order
/// ids apart between calls.
fn traffic(w: &World, tails: &[Tail], count: usize, tag: u64) -> Vec<Attestation> {
    let mut rng = Rng(tag.wrapping_mul(0x1234_5678_9abc_def1));
    (0..count)
        .map(|i| {
            let tail = tails[rng.below(tails.len())];
            let t = TRAFFIC_T0 + tag * 1_000_000 + i as u64;
            if i % 8 == 0 {
                w.referral(rng.below(REFERRERS), tail.offer, Some(tail.r4), t)
            } else {
                let n = (1u64 << 40) + tag * 1_000_000 + i as u64;
                w.receipt(tail.offer, format!("t{tag}-{i}"), n, tail.r5, t)
            }
        })
        .collect()
}

/// Signs `groups` groups on two threads (signing dominates) while this thread ingests them
/// 1,000 at a time. Stops starting new groups after `budget`.
struct Built {
    tails: Vec<Tail>,
    attestations: usize,
    not_valid: usize,
    ingest: Duration,
    wall: Duration,
    stopped_early: bool,
    last: Option<Id>,
    /// Ingest rate over the last 10% of the build (attestations per second of ingest).
    tail_rate: f64,
    /// Opened as built by an earlier run (`PASSALONG_BENCH_STORE`): no build figures.
    reused: bool,
}

/// Where the big store lives: a temporary directory, or `PASSALONG_BENCH_STORE` (kept, and
/// reused by later runs).
struct BigDir {
    path: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

impl BigDir {
    fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps a temporary directory; returns where it is.
    fn keep(self) -> PathBuf {
        match self.tmp {
            Some(t) => t.keep(),
            None => self.path,
        }
    }
}

/// The file beside a kept store that lets a later run reuse it: the attestation count, the
/// last id, then each chain's tail (offer ‖ r4 ‖ r5).
const TAILS_FILE: &str = "bench-tails";
/// How many runs measured traffic on a kept store (each run's traffic is new to it).
const RUNS_FILE: &str = "bench-runs";

fn save_tails(dir: &Path, b: &Built) {
    let mut out = Vec::with_capacity(40 + b.tails.len() * 65);
    out.extend_from_slice(&(b.attestations as u64).to_be_bytes());
    out.extend_from_slice(&b.last.expect("something was stored").0);
    for t in &b.tails {
        out.push(t.offer as u8);
        out.extend_from_slice(&t.r4.0);
        out.extend_from_slice(&t.r5.0);
    }
    std::fs::write(dir.join(TAILS_FILE), out).expect("write the tails file");
}

fn load_tails(dir: &Path) -> Option<Built> {
    let b = std::fs::read(dir.join(TAILS_FILE)).ok()?;
    let id = |s: &[u8]| Id(s.try_into().expect("32 bytes"));
    let (head, rest) = b.split_at_checked(40)?;
    let tails = rest
        .chunks_exact(65)
        .map(|c| Tail {
            offer: usize::from(c[0]),
            r4: id(&c[1..33]),
            r5: id(&c[33..65]),
        })
        .collect();
    Some(Built {
        tails,
        attestations: u64::from_be_bytes(head[..8].try_into().ok()?) as usize,
        not_valid: 0,
        ingest: Duration::ZERO,
        wall: Duration::ZERO,
        stopped_early: false,
        last: Some(id(&head[8..40])),
        tail_rate: f64::NAN,
        reused: true,
    })
}

/// The big store of about `n` attestations, built now or reused, and the traffic tag of this
/// run (new to the store).
fn big_store(
    w: &World,
    n: usize,
    kept: Option<PathBuf>,
    budget: Duration,
) -> (BigDir, Store, Built, u64) {
    let dir = match kept {
        Some(path) => {
            std::fs::create_dir_all(&path).expect("create PASSALONG_BENCH_STORE");
            BigDir { path, tmp: None }
        }
        None => {
            let tmp = tempfile::tempdir_in(bench_dir()).expect("temp dir");
            BigDir {
                path: tmp.path().to_path_buf(),
                tmp: Some(tmp),
            }
        }
    };
    // A reused store's files left the OS cache at the end of the run before (the cold opens
    // below evict them), unlike a node's running for a while, or a store just built: read
    // them back first, so that every run measures the same warm state.
    let warmed = (dir.path().join(TAILS_FILE).exists()
        && std::env::var_os("PASSALONG_BENCH_COLD").is_none())
    .then(|| {
        let start = Instant::now();
        (warm(dir.path()), start.elapsed())
    });
    let store = match std::env::var("PASSALONG_BENCH_CACHE_MIB") {
        Ok(mib) => {
            let mib: u64 = mib.parse().expect("PASSALONG_BENCH_CACHE_MIB: a number");
            Store::open_with_cache(dir.path(), mib << 20).expect("open")
        }
        Err(_) => Store::open(dir.path()).expect("open"),
    };
    store.set_checkpoint_every(checkpoint_every());
    let runs_file = dir.path().join(RUNS_FILE);
    let runs: u64 = std::fs::read_to_string(&runs_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    std::fs::write(&runs_file, (runs + 1).to_string()).expect("write the runs file");
    let built = match load_tails(dir.path()) {
        Some(b) => {
            println!(
                "\n3. reusing the store of {} attestations at {} (run {})",
                b.attestations,
                dir.path().display(),
                runs + 1
            );
            match warmed {
                Some((bytes, took)) => println!(
                    "   its {} MB read into the OS cache first, as a node running for a while \
                     holds them ({:.1} s; PASSALONG_BENCH_COLD=1: from where the last run left it)",
                    bytes >> 20,
                    took.as_secs_f64()
                ),
                None => println!("   its files left in the OS cache as the last run left them"),
            }
            b
        }
        None => {
            println!("\n3. building a store of {n} attestations (budget {budget:?}) …");
            let groups = n.saturating_sub(SELLERS).div_ceil(GROUP).max(1);
            let b = build(&store, w, groups, budget);
            if dir.tmp.is_none() {
                save_tails(dir.path(), &b);
            }
            b
        }
    };
    (dir, store, built, 3 + runs)
}

fn build(store: &Store, w: &World, groups: usize, budget: Duration) -> Built {
    let start = Instant::now();
    let offers: Vec<&[u8]> = w.offers.iter().map(|o| o.bytes.as_slice()).collect();
    store.ingest(&offers, NOW).expect("ingest offers");
    let chunks = groups.div_ceil(GROUPS_PER_CHUNK);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut b = Built {
        tails: Vec::with_capacity(groups),
        attestations: w.offers.len(),
        not_valid: 0,
        ingest: Duration::ZERO,
        wall: Duration::ZERO,
        stopped_early: false,
        last: None,
        tail_rate: f64::NAN,
        reused: false,
    };
    // (attestations, ingest time) after each call, for the rate at the end of the build.
    let mut progress: Vec<(usize, Duration)> = Vec::new();
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<(Vec<Attestation>, Vec<Tail>)>(4);
        for _ in 0..2 {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            s.spawn(move || loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    return;
                }
                let mut atts = Vec::with_capacity(GROUPS_PER_CHUNK * GROUP);
                let mut tails = Vec::with_capacity(GROUPS_PER_CHUNK);
                for g in c * GROUPS_PER_CHUNK..((c + 1) * GROUPS_PER_CHUNK).min(groups) {
                    let (a, t) = group(w, g);
                    atts.extend(a);
                    tails.push(t);
                }
                if tx.send((atts, tails)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut reported = Instant::now();
        for (atts, tails) in rx {
            let envs: Vec<&[u8]> = atts.iter().map(|a| a.bytes.as_slice()).collect();
            let t = Instant::now();
            let acks = store.ingest(&envs, NOW).expect("ingest a build batch");
            b.ingest += t.elapsed();
            b.not_valid += acks.iter().filter(|a| a.status != Status::Valid).count();
            b.attestations += atts.len();
            b.tails.extend(tails);
            b.last = atts.last().map(|a| a.id);
            progress.push((b.attestations, b.ingest));
            if start.elapsed() > budget && !stop.swap(true, Ordering::Relaxed) {
                b.stopped_early = true;
            }
            if reported.elapsed() > Duration::from_secs(30) {
                reported = Instant::now();
                eprintln!(
                    "  … {} stored in {:.0} s ({:.0}/s ingest-only)",
                    b.attestations,
                    start.elapsed().as_secs_f64(),
                    b.attestations as f64 / b.ingest.as_secs_f64()
                );
            }
        }
    });
    b.wall = start.elapsed();
    if let (Some(&(n1, t1)), Some(&(n0, t0))) = (
        progress.last(),
        progress.get(progress.len() - progress.len().div_ceil(10)),
    ) {
        b.tail_rate = (n1 - n0) as f64 / (t1 - t0).as_secs_f64();
    }
    b
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A message ready for a bare `verify_strict` (the key decompressed beforehand).
type Prepared = (VerifyingKey, Vec<u8>, Signature);

fn prepare(atts: &[Attestation]) -> Vec<Prepared> {
    atts.iter()
        .map(|a| {
            (
                VerifyingKey::from_bytes(&a.body.author().0).expect("a valid key"),
                a.signed_message(),
                Signature::from_bytes(&a.signature),
            )
        })
        .collect()
}

/// Bare strict verification of `msgs`, per signature (µs).
fn verify_timed(msgs: &[Prepared]) -> f64 {
    let t = Instant::now();
    for (vk, m, s) in msgs {
        vk.verify_strict(black_box(m), black_box(s))
            .expect("a good signature");
    }
    t.elapsed().as_secs_f64() * 1e6 / msgs.len().max(1) as f64
}

/// Bare strict verification, per signature, one figure per group of 64 (µs).
fn bare_verify(atts: &[Attestation]) -> Vec<f64> {
    prepare(atts).chunks(BATCH).map(verify_timed).collect()
}

/// Stage 1 alone (`validation::check_batch`: decode, limits, batch verification), per
/// attestation, one figure per batch (µs).
fn stage1(atts: &[Attestation]) -> Vec<f64> {
    atts.chunks(BATCH)
        .map(|c| {
            let envs: Vec<&[u8]> = c.iter().map(|a| a.bytes.as_slice()).collect();
            let t = Instant::now();
            let r = black_box(validation::check_batch(black_box(&envs)));
            let us = t.elapsed().as_secs_f64() * 1e6 / c.len() as f64;
            assert!(r.iter().all(|x| x.is_ok()));
            us
        })
        .collect()
}

/// A CPU-time clock's reading, in µs; 0 if unavailable.
fn cpu_clock_us(clock: nix::time::ClockId) -> f64 {
    nix::time::clock_gettime(clock).map_or(0.0, |ts| {
        ts.tv_sec() as f64 * 1e6 + ts.tv_nsec() as f64 / 1e3
    })
}

/// This thread's CPU time so far, in µs. (Not `/proc/thread-self/schedstat`: for a running
/// thread it lags by up to a scheduler tick, longer than a call.)
fn thread_cpu_us() -> f64 {
    cpu_clock_us(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
}

/// The process's CPU time so far, every thread's (those gone included), in µs. (Not
/// `/proc/self/stat`: clock ticks, rescaled at each read.)
fn process_cpu_us() -> f64 {
    cpu_clock_us(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

/// Incremental ledger updates between two readings of the store's counters: (count, mean
/// µs each).
fn ledger_update_us(
    a: &passalong_store::IngestCounters,
    b: &passalong_store::IngestCounters,
) -> (u64, f64) {
    let n = b.ledger_updates - a.ledger_updates;
    (
        n,
        (b.ledger_nanos - a.ledger_nanos) as f64 / 1e3 / n.max(1) as f64,
    )
}

fn ledger_row(what: &str, (n, us): (u64, f64)) {
    println!(
        "   incremental ledger update per receipt {what}: {us:.1} µs (mean of {n}; goal ≤ 20: {})",
        verdict(us <= 20.0)
    );
}

/// A measured call (past the warm-up), in a function of its own so that a profiler can
/// count it alone (e.g. callgrind's `--toggle-collect=ingest::measured`).
#[inline(never)]
fn measured(store: &Store, envs: &[&[u8]]) -> Vec<passalong_store::Ack> {
    store.ingest(envs, NOW).expect("ingest")
}

/// Per-attestation wall and CPU µs of each call, and how many acks were not fresh and Valid.
struct Timed {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    /// Every thread's CPU per attestation over the calls (helpers and sled's included): the
    /// process's CPU across all of them, less what this thread did between calls (the other
    /// threads' work then, such as sled's flushes, counts).
    process_cpu: f64,
    /// Per call, its wall time ÷ a bare `verify_strict` of the same messages just before it
    /// (when paired): a slow spell of the machine moves both.
    paired: Vec<f64>,
    /// The bare verifications of the pairs (µs per signature).
    bare: Vec<f64>,
    /// Bytes the process read from the disk (page cache misses) per attestation over the calls.
    disk_read: f64,
    bad: usize,
}

/// Ingests `atts` `per_call` at a time; with `paired`, each call's messages are also verified
/// bare just before it.
fn ingest_timed(
    store: &Store,
    atts: &[Attestation],
    per_call: usize,
    skip: usize,
    paired: bool,
) -> Timed {
    let mut out = Timed {
        wall: Vec::new(),
        cpu: Vec::new(),
        process_cpu: 0.0,
        paired: Vec::new(),
        bare: Vec::new(),
        disk_read: 0.0,
        bad: 0,
    };
    let disk_start = disk_read_bytes();
    let (process_start, thread_start) = (process_cpu_us(), thread_cpu_us());
    let mut in_calls = 0.0;
    for (i, c) in atts.chunks(per_call).enumerate() {
        let envs: Vec<&[u8]> = c.iter().map(|a| a.bytes.as_slice()).collect();
        let bare = paired.then(|| verify_timed(&prepare(c)));
        let cpu = thread_cpu_us();
        let t = Instant::now();
        let acks = if i >= skip {
            measured(store, &envs)
        } else {
            store.ingest(&envs, NOW).expect("ingest")
        };
        let wall = t.elapsed().as_secs_f64() * 1e6 / c.len() as f64;
        let cpu_us = thread_cpu_us() - cpu;
        in_calls += cpu_us;
        let cpu = cpu_us / c.len() as f64;
        out.bad += acks
            .iter()
            .filter(|a| a.status != Status::Valid || a.duplicate)
            .count();
        if i >= skip {
            out.wall.push(wall);
            out.cpu.push(cpu);
            if let Some(b) = bare {
                out.paired.push(wall / b);
                out.bare.push(b);
            }
        }
    }
    let between_calls = thread_cpu_us() - thread_start - in_calls;
    out.process_cpu =
        (process_cpu_us() - process_start - between_calls).max(0.0) / atts.len().max(1) as f64;
    out.disk_read = disk_read_bytes().saturating_sub(disk_start) as f64 / atts.len().max(1) as f64;
    out
}

/// Bytes this process has read from the disk so far, page cache misses only (`read_bytes` of
/// `/proc/self/io`): a store's files evicted from the cache make its reads wait on the disk.
fn disk_read_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("read_bytes:")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes of the files under `p`, apparent and allocated, and their number.
fn dir_size(p: &Path) -> (u64, u64, usize) {
    use std::os::unix::fs::MetadataExt;
    let files = files_under(p);
    let (len, alloc) = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .fold((0, 0), |(l, a), m| (l + m.len(), a + m.blocks() * 512));
    (len, alloc, files.len())
}

/// Every file under `p`, its subdirectories' too.
fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Asks the kernel to drop the store's files from its page cache (`dd iflag=nocache`), so
/// that the next open reads from the disk. Returns whether every file was handled.
fn evict(p: &Path) -> bool {
    // Every file is tried, whatever happened to the ones before.
    files_under(p)
        .iter()
        .map(|path| {
            Command::new("dd")
                .arg(format!("if={}", path.display()))
                .args(["iflag=nocache", "count=0", "status=none"])
                .status()
                .is_ok_and(|s| s.success())
        })
        .fold(true, |all, ok| all & ok)
}

/// Reads every file of the store into the OS cache; the bytes read.
fn warm(p: &Path) -> u64 {
    files_under(p)
        .iter()
        .filter_map(|path| std::fs::File::open(path).ok())
        .map(|mut f| std::io::copy(&mut f, &mut std::io::sink()).unwrap_or(0))
        .sum()
}

fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The child process: open, first ledger, first status; prints one `SERVE` line.
fn serve(dir: &str, seller: &str, id: &str) {
    let seller = PublicKey::from_hex(seller).expect("seller hex");
    let id = Id::from_hex(id).expect("id hex");
    let start = Instant::now();
    let store = Store::open(dir).expect("open the store");
    let open = start.elapsed();
    let ledger = store.ledger(&seller).expect("ledger");
    let after_ledger = start.elapsed();
    let status = store.status(&id).expect("status");
    let after_status = start.elapsed();
    println!(
        "SERVE open_ms={:.1} ledger_ms={:.1} status_ms={:.2} total_ms={:.1} lines={} rss_kb={} hwm_kb={} orders_kb={} hops_kb={} entries_kb={} valid={}",
        open.as_secs_f64() * 1e3,
        (after_ledger - open).as_secs_f64() * 1e3,
        (after_status - after_ledger).as_secs_f64() * 1e3,
        after_status.as_secs_f64() * 1e3,
        ledger.entries.len(),
        proc_status_kb("VmRSS:"),
        proc_status_kb("VmHWM:"),
        store.orders_in_memory() / 1024,
        store.hops_in_memory() / 1024,
        store.valid_in_memory() / 1024,
        u8::from(status == Some(Status::Valid)),
    );
}

/// Runs this binary with `--serve` on `dir` and parses its line.
fn spawn_serve(dir: &Path, seller: &PublicKey, id: &Id) -> Vec<(String, f64)> {
    let exe = std::env::current_exe().expect("own path");
    let t = Instant::now();
    let out = Command::new(exe)
        .arg("--serve")
        .arg(dir)
        .arg(seller.to_hex())
        .arg(id.to_hex())
        .output()
        .expect("run the serving child");
    let wall = t.elapsed().as_secs_f64() * 1e3;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("SERVE"))
        .unwrap_or_else(|| {
            panic!(
                "child failed: {}\n{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut v: Vec<(String, f64)> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    v.push(("process_wall_ms".into(), wall));
    assert_eq!(
        get(&v, "valid"),
        1.0,
        "the child must find the attestation valid"
    );
    v
}

fn get(v: &[(String, f64)], k: &str) -> f64 {
    v.iter().find(|(n, _)| n == k).map_or(f64::NAN, |(_, x)| *x)
}

/// Attestations between two checkpoints of the big store: the store's own, or
/// `PASSALONG_BENCH_CHECKPOINT_EVERY`.
fn checkpoint_every() -> u64 {
    env_usize(
        "PASSALONG_BENCH_CHECKPOINT_EVERY",
        CHECKPOINT_EVERY as usize,
    ) as u64
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn bench_dir() -> PathBuf {
    std::env::var_os("PASSALONG_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let [dir, seller, id] = [1, 2, 3].map(|k| args.get(i + k).expect("--serve DIR SELLER ID"));
        serve(dir, seller, id);
        return;
    }
    let batches = env_usize("PASSALONG_BENCH_BATCHES", 200).max(1);
    let singles = env_usize("PASSALONG_BENCH_SINGLES", 1_000).max(1);
    let setup_groups = env_usize("PASSALONG_BENCH_SETUP_GROUPS", 200).max(1);
    let budget = Duration::from_secs(env_usize("PASSALONG_BENCH_BUILD_SECS", 360) as u64);
    let run_start = Instant::now();

    let w = World::new();
    println!(
        "passalong-store ingest bench: {SELLERS} sellers, {REFERRERS} referrer keys, chains of \
         {CHAIN}; measured traffic 7/8 receipts via depth-5 referrals + 1/8 referrals"
    );

    // ---- 1 and 2: a store where the offers and chains exist already.
    let dir = tempfile::tempdir_in(bench_dir()).expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let setup = build(&store, &w, setup_groups, Duration::MAX);
    assert_eq!(setup.not_valid, 0, "the setup must be valid");
    println!(
        "setup: {} attestations stored ({} chains) in {:.1} s",
        setup.attestations,
        setup.tails.len(),
        setup.wall.as_secs_f64()
    );
    let warm = 10;
    let batch_atts = traffic(&w, &setup.tails, (batches + warm) * BATCH, 1);
    let single_atts = traffic(&w, &setup.tails, singles, 2);

    let mut verify_us = bare_verify(&batch_atts);
    let mut stage1_us = stage1(&batch_atts[warm * BATCH..]);
    ingest_timed(&store, &batch_atts[..warm * BATCH], BATCH, warm, false);
    let before = store.ingest_counters();
    let mut batch = ingest_timed(&store, &batch_atts[warm * BATCH..], BATCH, 0, true);
    let small_ledger = ledger_update_us(&before, &store.ingest_counters());
    verify_us.extend(bare_verify(&batch_atts));
    let mut single = ingest_timed(&store, &single_atts, 1, 0, false);
    let passes = median(&mut verify_us);
    let v1 = median(&mut stage1_us);
    // The goal's denominator: the bare verifies interleaved with the calls.
    let verify = median(&mut batch.bare);
    drop(store);
    drop(dir);

    println!();
    println!(
        "{:<52} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}",
        "per attestation (µs)", "median", "p90", "CPU med", "all CPU", "ratio", "goal"
    );
    // Only 64 per call has a goal: one per call pays a flush each.
    let row = |name: String, t: &mut Timed, goal: bool| {
        let m = median(&mut t.wall);
        println!(
            "{:<52} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7.2} {:>8}",
            name,
            m,
            percentile(&mut t.wall, 0.9),
            median(&mut t.cpu),
            t.process_cpu,
            m / verify,
            if goal { verdict(m / verify <= 1.3) } else { "" }
        );
    };
    println!(
        "{:<52} {:>9.1} {:>9} {:>9} {:>9} {:>7} {:>8}",
        format!("bare verify_strict, each call's messages ({batches})"),
        verify,
        "",
        "",
        "",
        "1.00",
        ""
    );
    println!(
        "{:<52} {:>9.1} {:>9} {:>9} {:>9} {:>7.2} {:>8}",
        format!("  the same, two passes ({} msgs)", batch_atts.len()),
        passes,
        "",
        "",
        "",
        passes / verify,
        ""
    );
    println!(
        "{:<52} {:>9.1} {:>9} {:>9} {:>7.2} {:>8}",
        "  validation::check_batch alone (stage 1, by 64)",
        v1,
        "",
        "",
        v1 / passes,
        ""
    );
    let batch_median = median(&mut batch.wall);
    row(
        format!("1. Store::ingest, 64 per call ({batches} calls)"),
        &mut batch,
        true,
    );
    let paired = median(&mut batch.paired);
    for (what, r) in [
        ("   median of each call ÷ its own bare verify", paired),
        (
            "   ÷ the two separate passes (drift: see above)",
            batch_median / passes,
        ),
    ] {
        println!(
            "{:<52} {:>9} {:>9} {:>9} {:>9} {:>7.2} {:>8}",
            what, "", "", "", "", r, ""
        );
    }
    row(
        format!("2. Store::ingest, 1 per call ({singles} calls)"),
        &mut single,
        false,
    );
    println!(
        "   goal: ratio ≤ 1.3. Acks not fresh+Valid: batch {}, single {}. CPU = this \
         thread's CPU time; all CPU = every thread's (helpers, writer, sled's), per attestation.\n   \
         ratio = median ÷ the median of the bare verifies run just before each batch call (of \
         its own 64 messages; check_batch: ÷ the two passes, run beside it).",
        batch.bad, single.bad
    );
    ledger_row("(calls of 64)", small_ledger);

    // ---- 3: big stores, one after the other.
    let sizes: Vec<usize> = std::env::var("PASSALONG_BENCH_N")
        .unwrap_or_else(|_| "1000000".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("PASSALONG_BENCH_N: numbers, comma-separated")
        })
        .filter(|&n| n > 0)
        .collect();
    if sizes.is_empty() {
        println!("\n3. skipped (PASSALONG_BENCH_N=0)");
    }
    let kept: Vec<Option<PathBuf>> = match std::env::var("PASSALONG_BENCH_STORE") {
        Ok(dirs) => dirs.split(',').map(|d| Some(PathBuf::from(d))).collect(),
        Err(_) => vec![None; sizes.len()],
    };
    assert_eq!(
        kept.len(),
        sizes.len(),
        "PASSALONG_BENCH_STORE: one directory per size in PASSALONG_BENCH_N"
    );
    for (n, kept) in sizes.into_iter().zip(kept) {
        on_big_store(&w, n, kept, budget, batches, warm, batch_median / verify);
    }
    println!("total run {:.0} s", run_start.elapsed().as_secs_f64());
}

/// Section 3 on one big store of about `n_big` attestations (kept in `kept`, or temporary).
fn on_big_store(
    w: &World,
    n_big: usize,
    kept: Option<PathBuf>,
    budget: Duration,
    batches: usize,
    warm: usize,
    small_ratio: f64,
) {
    let (dir, store, big, tag) = big_store(w, n_big, kept, budget);
    let rate_ingest = big.attestations as f64 / big.ingest.as_secs_f64();
    let rate_wall = big.attestations as f64 / big.wall.as_secs_f64();
    // Three phases on the big store: the first calls after opening it (sled's cache empty,
    // the OS's maybe too: the case of a node just restarted), one checkpoint timed alone
    // (it reopens the tree, which empties sled's cache again), then the steady state: the
    // calls after `big_warm` more, checkpoints every CHECKPOINT_EVERY included.
    let big_batches = env_usize("PASSALONG_BENCH_BIG_BATCHES", batches.max(10)).max(1);
    let big_cold = env_usize("PASSALONG_BENCH_BIG_COLD", 12).max(1);
    let big_warm = env_usize("PASSALONG_BENCH_BIG_WARM", warm.max(1500));
    let big_atts = traffic(
        w,
        &big.tails,
        (big_cold + big_warm + big_batches) * BATCH,
        tag,
    );
    let (cold_atts, rest) = big_atts.split_at(big_cold * BATCH);
    let (warm_atts, steady_atts) = rest.split_at(big_warm * BATCH);
    let mut cold = ingest_timed(&store, cold_atts, BATCH, 0, true);
    let checkpoint_start = Instant::now();
    store.checkpoint().expect("checkpoint");
    let checkpoint_ms = checkpoint_start.elapsed().as_secs_f64() * 1e3;
    ingest_timed(&store, warm_atts, BATCH, big_warm, false);
    let checkpoints_before = store.checkpoints();
    let before = store.ingest_counters();
    let mut on_big = ingest_timed(&store, steady_atts, BATCH, 0, true);
    let big_ledger = ledger_update_us(&before, &store.ingest_counters());
    let checkpoints_during = store.checkpoints() - checkpoints_before;
    let mut all_bare: Vec<f64> = on_big.bare.iter().chain(&cold.bare).copied().collect();
    let big_verify = median(&mut all_bare);
    let big_row = |t: &mut Timed, cold: &mut Timed| {
        let m = median(&mut t.wall);
        let mc = median(&mut cold.wall);
        println!(
            "{:<52} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}",
            "", "median", "p90", "CPU med", "all CPU", "ratio", "goal"
        );
        println!(
            "{:<52} {:>9.1} {:>9} {:>9} {:>9} {:>7} {:>8}",
            "bare verify_strict, each call's messages", big_verify, "", "", "", "1.00", ""
        );
        println!(
            "{:<52} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7.2} {:>8}",
            format!("first {big_cold} calls of 64 after opening"),
            mc,
            percentile(&mut cold.wall, 0.9),
            median(&mut cold.cpu),
            cold.process_cpu,
            mc / big_verify,
            ""
        );
        println!(
            "   one checkpoint then (ledger lines, runs, the tree reopened): {checkpoint_ms:.0} ms \
             = {:.1} µs per attestation over the {} between two",
            checkpoint_ms * 1e3 / checkpoint_every() as f64,
            checkpoint_every()
        );
        println!(
            "{:<52} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7.2} {:>8}",
            format!(
                "batch-64 ingest on {} ({big_batches} calls)",
                big.attestations
            ),
            m,
            percentile(&mut t.wall, 0.9),
            median(&mut t.cpu),
            t.process_cpu,
            m / big_verify,
            // The goals: ≤ 1.5 on 1M, ≤ 2 on 10M.
            verdict(
                m / big_verify
                    <= if big.attestations > 5_000_000 {
                        2.0
                    } else {
                        1.5
                    }
            )
        );
        println!(
            "   … after {big_warm} calls of 64 ({checkpoints_during} checkpoints among the measured)"
        );
        println!(
            "   … read from the disk, not the page cache: {:.0} B per attestation (the first \
             calls: {:.0})",
            t.disk_read, cold.disk_read
        );
        println!(
            "{:<52} {:>9} {:>9} {:>9} {:>9} {:>7.2} {:>8}",
            "   median of each call ÷ its own bare verify",
            "",
            "",
            "",
            "",
            median(&mut t.paired),
            ""
        );
        println!(
            "   the small store's ratio in the same run: {:.2}; goal ≤ 1.5 at 1M, ≤ 2 at 10M",
            small_ratio
        );
        ledger_row(&format!("on {}", big.attestations), big_ledger);
    };
    if std::env::var_os("PASSALONG_BENCH_QUICK").is_some() {
        big_row(&mut on_big, &mut cold);
        return;
    }
    let seller = w.sellers[0].public();
    let query = big.last.expect("something was stored");
    // A crash first: dropped without `close`, so the next open replays sled's log since the
    // last checkpoint (ingest checkpoints every CHECKPOINT_EVERY attestations), as after a
    // SIGKILL (every acknowledged write was flushed).
    let checkpoints = store.checkpoints();
    drop(store);
    let evicted_crash = evict(dir.path());
    let crashed = spawn_serve(dir.path(), &seller, &query);
    // Then a clean shutdown: `close` reopens once, so that sled snapshots now, not at the
    // next start.
    let store = Store::open(dir.path()).expect("reopen");
    let closing = Instant::now();
    store.close().expect("close the store");
    let close_time = closing.elapsed();
    println!(
        "   Store::close (flush, reopen once): {:.0} ms",
        close_time.as_secs_f64() * 1e3
    );
    let (len, alloc, files) = dir_size(dir.path());
    // First the worst case: the first open after the writer (sled replays its log) with the
    // OS page cache emptied of the store's files; then a second open, files cached.
    let evicted = evict(dir.path());
    let first = spawn_serve(dir.path(), &seller, &query);
    let second = spawn_serve(dir.path(), &seller, &query);
    let evicted_again = evict(dir.path());
    let third = spawn_serve(dir.path(), &seller, &query);

    if !big.reused {
        println!(
            "   stored {} attestations{} ({} not valid) in {:.1} s wall ({:.0}/s; signing on 2 \
         threads overlaps), ingest-only {:.0}/s = {:.0} µs each (calls of 1,000)",
            big.attestations,
            if big.stopped_early {
                " — STOPPED at the time budget"
            } else {
                ""
            },
            big.not_valid,
            big.wall.as_secs_f64(),
            rate_wall,
            rate_ingest,
            1e6 / rate_ingest
        );
        println!(
            "   ingest rate over the last 10% of the build: {:.0}/s ({:.0} µs each)",
            big.tail_rate,
            1e6 / big.tail_rate
        );
        if big.stopped_early {
            println!(
                "   EXTRAPOLATED, not measured: {n_big} attestations ≈ {:.0} s of ingest at least \
             ({:.0} s so far + the rest at the last rate, which keeps falling); DB ≈ {:.0} MB",
                big.ingest.as_secs_f64()
                    + n_big.saturating_sub(big.attestations) as f64 / big.tail_rate,
                big.ingest.as_secs_f64(),
                dir_size(dir.path()).0 as f64 / big.attestations as f64 * n_big as f64 / 1e6
            );
        }
    }
    println!();
    big_row(&mut on_big, &mut cold);
    println!();
    println!("{:<60} {:>12} {:>8}", "store of N", "value", "goal");
    println!(
        "{:<60} {:>12} {:>8}",
        "N (attestations stored)", big.attestations, ""
    );
    println!(
        "{:<60} {:>9.0} MB {:>8}",
        format!("DB size on disk ({files} files; apparent)"),
        len as f64 / 1e6,
        ""
    );
    println!(
        "{:<60} {:>9.0} MB {:>8}",
        "DB size on disk (allocated blocks)",
        alloc as f64 / 1e6,
        ""
    );
    println!("   checkpoints taken during the build: {checkpoints}");
    for (name, v) in [
        (
            if evicted_crash {
                "after a crash (no close), fresh process, OS cache evicted"
            } else {
                "after a crash (no close) (OS cache eviction FAILED)"
            },
            &crashed,
        ),
        (
            if evicted {
                "fresh process, 1st open, OS cache evicted"
            } else {
                "fresh process, 1st open (OS cache eviction FAILED)"
            },
            &first,
        ),
        ("fresh process, 2nd open, OS cache warm", &second),
        (
            if evicted_again {
                "fresh process, 3rd open, OS cache evicted again"
            } else {
                "fresh process, 3rd open (OS cache eviction FAILED)"
            },
            &third,
        ),
    ] {
        let total = get(v, "total_ms");
        let hwm = get(v, "hwm_kb") / 1024.0;
        println!("{name}:");
        println!(
            "{:<60} {:>9.0} ms {:>8}",
            format!(
                "  open {:.0} + ledger {:.0} ({} lines) + status {:.2} ms",
                get(v, "open_ms"),
                get(v, "ledger_ms"),
                get(v, "lines"),
                get(v, "status_ms")
            ),
            total,
            verdict(total < 2000.0)
        );
        println!(
            "{:<60} {:>9.0} ms {:>8}",
            "  child process wall (spawn → exit)",
            get(v, "process_wall_ms"),
            ""
        );
        println!(
            "{:<60} {:>9.0} MB {:>8}",
            format!(
                "  VmRSS after serving (VmHWM {hwm:.0} MB; orders {:.1}, hops {:.1}, entries {:.1} MB)",
                get(v, "orders_kb") / 1024.0,
                get(v, "hops_kb") / 1024.0,
                get(v, "entries_kb") / 1024.0
            ),
            get(v, "rss_kb") / 1024.0,
            verdict(hwm < 300.0)
        );
    }
    if std::env::var_os("PASSALONG_BENCH_KEEP").is_some() {
        println!(
            "kept the store; serve it again with: {} --serve {} {} {}",
            std::env::current_exe().expect("own path").display(),
            dir.keep().display(),
            seller.to_hex(),
            query.to_hex()
        );
    }
}
