//! Reconciles two 1,000,000-item sets with various differences and prints bytes and round
//! trips, with the `negentropy` crate side by side. Run with
//! `cargo bench -p passalong-reconcile`. Environment knobs: `RECON_PCT` (one difference
//! percentage), `RECON_SEED` (vary the random sets), `RECON_DEBUG` (per-round sizes),
//! `RECON_LIMIT` (this crate's `max_message_size`, e.g. 4194304 as over the transport; the
//! largest message of either side is then checked against it), `RECON_N` (items per side,
//! default 1,000,000: smaller sets for instruction-level profiling), `RECON_UNIFORM_ONLY`
//! (skip the "newest" cases), `RECON_REPEAT` (runs of each uniform case, alternating with
//! negentropy; the best time of each is reported). The "secs" of this crate's cases include nothing but the
//! reconciliation; negentropy's also include building its storage from the sealed sets.

use passalong_reconcile::{Config, Id, Item, Reconciler, Storage};
use std::collections::HashSet;
use std::time::Instant;

/// Items per side (`RECON_N`).
fn n() -> usize {
    std::env::var("RECON_N")
        .ok()
        .map_or(1_000_000, |s| s.parse().expect("RECON_N is an item count"))
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn id(&mut self) -> Id {
        let mut id = [0u8; 32];
        for c in id.chunks_exact_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        id
    }
}

/// Items at ~3 per ms starting at a fixed epoch.
fn universe(n: usize, rng: &mut SplitMix) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            created_at: 1_700_000_000_000 + (i as u64) / 3,
            id: rng.id(),
        })
        .collect()
}

/// The same reconciliation with the `negentropy` crate (unlimited frame size).
fn negentropy_run(
    a: &Storage,
    b: &Storage,
    expect_have: &HashSet<Id>,
    expect_need: &HashSet<Id>,
) -> Outcome {
    use negentropy::{Negentropy, NegentropyStorageVector};
    let store = |s: &Storage| {
        let mut v = NegentropyStorageVector::with_capacity(s.len());
        for it in s.items() {
            v.insert(it.created_at, negentropy::Id::from_byte_array(it.id))
                .expect("unsealed");
        }
        v.seal().expect("first seal");
        v
    };
    let (sa, sb) = (store(a), store(b));
    let mut init = Negentropy::borrowed(&sa, 0).expect("limit 0 is valid");
    let mut resp = Negentropy::borrowed(&sb, 0).expect("limit 0 is valid");
    let mut msg = init.initiate().expect("fresh");
    let (mut rounds, mut bytes) = (1, msg.len());
    let (mut have, mut need) = (Vec::new(), Vec::new());
    loop {
        let reply = resp.reconcile(&msg).expect("valid");
        if std::env::var_os("RECON_DEBUG").is_some() {
            eprintln!("neg msg {} reply {}", msg.len(), reply.len());
        }
        bytes += reply.len();
        match init
            .reconcile_with_ids(&reply, &mut have, &mut need)
            .expect("valid")
        {
            Some(next) => {
                bytes += next.len();
                rounds += 1;
                msg = next;
            }
            None => break,
        }
    }
    let have: HashSet<Id> = have.iter().map(|id| *id.as_bytes()).collect();
    let need: HashSet<Id> = need.iter().map(|id| *id.as_bytes()).collect();
    Outcome {
        rounds,
        bytes,
        ok: &have == expect_have && &need == expect_need,
    }
}

struct Outcome {
    rounds: usize,
    bytes: usize,
    ok: bool,
}

fn reconcile(
    a: &Storage,
    b: &Storage,
    expect_have: &HashSet<Id>,
    expect_need: &HashSet<Id>,
) -> Outcome {
    let config = Config {
        max_message_size: std::env::var("RECON_LIMIT")
            .ok()
            .map_or(Config::default().max_message_size, |s| {
                s.parse().expect("RECON_LIMIT is a byte count")
            }),
        ..Config::default()
    };
    let limit = config.max_message_size;
    let mut init = Reconciler::new(a, config.clone());
    let mut resp = Reconciler::new(b, config);
    let mut msg = init.initiate().expect("fresh");
    let (mut rounds, mut bytes) = (1, msg.len());
    loop {
        assert!(msg.len() <= limit, "request over the limit");
        let reply = resp.reconcile(&msg).expect("valid").expect("reply");
        assert!(reply.len() <= limit, "response over the limit");
        if std::env::var_os("RECON_DEBUG").is_some() {
            eprintln!("msg {} reply {}", msg.len(), reply.len());
        }
        bytes += reply.len();
        match init.reconcile(&reply).expect("valid") {
            Some(next) => {
                bytes += next.len();
                rounds += 1;
                msg = next;
            }
            None => break,
        }
    }
    let have: HashSet<Id> = init.have().iter().copied().collect();
    let need: HashSet<Id> = init.need().iter().copied().collect();
    Outcome {
        rounds,
        bytes,
        ok: &have == expect_have && &need == expect_need,
    }
}

fn main() {
    let n = n();
    let baseline = (n * 40) as f64;
    println!("baseline = {n} items x 40 B (32 B id + 8 B time) = {baseline} B");
    println!(
        "{:<28} {:>9} {:>7} {:>12} {:>9} {:>8} {:>6}",
        "case", "diff", "rounds", "bytes", "% base", "secs", "exact"
    );
    for &pct in &bench_pcts() {
        let k = (n as f64 * pct / 100.0) as usize;
        let seed = std::env::var("RECON_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0u64);
        let mut rng = SplitMix(pct.to_bits() ^ seed);
        // Uniform: each side has N items, k of them unique to it, spread uniformly.
        let all = universe(n + k, &mut rng);
        let mut a_only = HashSet::new();
        let mut b_only = HashSet::new();
        while a_only.len() + b_only.len() < 2 * k {
            let i = (rng.next() % (n + k) as u64) as usize;
            if a_only.contains(&i) || b_only.contains(&i) {
                continue;
            }
            if a_only.len() < k {
                a_only.insert(i);
            } else {
                b_only.insert(i);
            }
        }
        let a = Storage::from_items(
            all.iter()
                .enumerate()
                .filter(|(i, _)| !b_only.contains(i))
                .map(|(_, x)| *x),
        );
        let b = Storage::from_items(
            all.iter()
                .enumerate()
                .filter(|(i, _)| !a_only.contains(i))
                .map(|(_, x)| *x),
        );
        let have: HashSet<Id> = a_only.iter().map(|&i| all[i].id).collect();
        let need: HashSet<Id> = b_only.iter().map(|&i| all[i].id).collect();
        // Alternating runs, best of each: the machine may be shared.
        let (mut ours, mut theirs) = (f64::MAX, f64::MAX);
        let (mut o, mut on) = (None, None);
        for _ in 0..repeat() {
            let t = Instant::now();
            o = Some(reconcile(&a, &b, &have, &need));
            ours = ours.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            on = Some(negentropy_run(&a, &b, &have, &need));
            theirs = theirs.min(t.elapsed().as_secs_f64());
        }
        let (o, on) = (o.expect("one run"), on.expect("one run"));
        report(
            &format!("uniform {pct}% each side"),
            2 * k,
            &o,
            ours,
            baseline,
        );
        report("  negentropy", 2 * k, &on, theirs, baseline);
        println!(
            "  cpu ratio (this crate / negentropy): {:.2}",
            ours / theirs
        );
        if std::env::var_os("RECON_UNIFORM_ONLY").is_some() {
            continue;
        }

        // Newest: A has N items, B lacks the newest k.
        let all = universe(n, &mut rng);
        let a = Storage::from_items(all.iter().copied());
        let b = Storage::from_items(all[..n - k].iter().copied());
        let tail: HashSet<Id> = all[n - k..].iter().map(|x| x.id).collect();
        let t = Instant::now();
        let o = reconcile(&a, &b, &tail, &HashSet::new());
        report(
            &format!("newest {pct}%, responder lacks"),
            k,
            &o,
            t.elapsed().as_secs_f64(),
            baseline,
        );
        let t = Instant::now();
        let o = negentropy_run(&a, &b, &tail, &HashSet::new());
        report("  negentropy", k, &o, t.elapsed().as_secs_f64(), baseline);
        let t = Instant::now();
        let o = reconcile(&b, &a, &HashSet::new(), &tail);
        report(
            &format!("newest {pct}%, initiator lacks"),
            k,
            &o,
            t.elapsed().as_secs_f64(),
            baseline,
        );
        let t = Instant::now();
        let o = negentropy_run(&b, &a, &HashSet::new(), &tail);
        report("  negentropy", k, &o, t.elapsed().as_secs_f64(), baseline);
    }
}

fn report(case: &str, diff: usize, o: &Outcome, secs: f64, baseline: f64) {
    println!(
        "{:<28} {:>9} {:>7} {:>12} {:>8.3}% {:>8.2} {:>6}",
        case,
        diff,
        o.rounds,
        o.bytes,
        100.0 * o.bytes as f64 / baseline,
        secs,
        o.ok
    );
}

/// Runs of each uniform case (`RECON_REPEAT`, default 1); the best time is reported.
fn repeat() -> usize {
    std::env::var("RECON_REPEAT")
        .ok()
        .map_or(1, |s| s.parse().expect("RECON_REPEAT is a count"))
        .max(1)
}

fn bench_pcts() -> Vec<f64> {
    match std::env::var("RECON_PCT") {
        Ok(p) => vec![p.parse().expect("RECON_PCT is a number")],
        Err(_) => vec![0.01, 1.0, 10.0],
    }
}
