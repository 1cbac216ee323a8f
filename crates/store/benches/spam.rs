//! What valid spam costs a follower of the spammed market (`docs/benchmarks.md`).
//!
//! `cargo bench -p passalong-store --bench spam` signs 100,000 valid referrals of one offer
//! (`PASSALONG_BENCH_SPAM` to change) and ingests them in calls of 64, as a sync session's
//! fetches do, into three stores:
//!
//! - one key: every referral by the same key (kept: `MAX_LOOSE_PER_AUTHOR`);
//! - fresh keys: one referral per key (kept: `MAX_LOOSE_PER_MARKET`);
//! - no budget: the fresh keys' referrals stored as the node's own (`Store::ingest_own`),
//!   which are never dropped: what every follower stored before the budgets.
//!
//! It prints, for each, the referrals held, the data dir's size after closing, and the median
//! time per referral over the calls, with ratios to the unbudgeted store, in one run.

use std::time::{Duration, Instant};

mod support;

use passalong_protocol::{Attestation, Keypair, Kind, PublicKey};
use passalong_store::Store;
use support::{offer, refer};

fn key(i: u64) -> Keypair {
    support::key(i, 0x59)
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

struct Run {
    held: u64,
    bytes: u64,
    per_att: Duration,
}

fn run(o: &Attestation, seller: &PublicKey, spam: &[Attestation], own: bool, now: u64) -> Run {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let st = Store::open(dir.path()).expect("open the store");
    st.ingest_own(&[&o.bytes], now).expect("the offer");
    let mut times = Vec::new();
    for chunk in spam.chunks(64) {
        let envs: Vec<&[u8]> = chunk.iter().map(|a| a.bytes.as_slice()).collect();
        let t = Instant::now();
        if own {
            st.ingest_own(&envs, now).expect("ingest");
        } else {
            st.ingest(&envs, now).expect("ingest");
        }
        times.push(t.elapsed() / chunk.len() as u32);
    }
    let held = st.market_count(seller, Kind::Referral).expect("a count");
    st.close().expect("close");
    times.sort();
    Run {
        held,
        bytes: dir_bytes(dir.path()),
        per_att: times[times.len() / 2],
    }
}

fn main() {
    let n: u64 = std::env::var("PASSALONG_BENCH_SPAM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let t0 = 1_700_000_000_000u64;
    let now = t0 + 86_400_000;
    let seller = key(u64::MAX);
    let o = offer(&seller, t0);
    let started = Instant::now();
    let spammer = key(0);
    let one_key: Vec<Attestation> = (0..n).map(|i| refer(&spammer, &o, t0 + 1 + i)).collect();
    let fresh: Vec<Attestation> = (0..n).map(|i| refer(&key(1 + i), &o, t0 + 1 + i)).collect();
    let envelope_bytes: usize = fresh.iter().map(|a| a.bytes.len()).sum();
    println!(
        "{n} referrals signed in {:.1} s ({:.0} bytes of envelopes each)",
        started.elapsed().as_secs_f64(),
        envelope_bytes as f64 / n as f64
    );
    let pk = seller.public();
    let unbudgeted = run(&o, &pk, &fresh, true, now);
    let runs = [
        ("one key", run(&o, &pk, &one_key, false, now)),
        ("fresh keys", run(&o, &pk, &fresh, false, now)),
        ("no budget", unbudgeted),
    ];
    let base = &runs[2].1;
    println!("{n} valid referrals of one followed market, in calls of 64:");
    println!("  store        held      data dir   per referral (median)");
    for (name, r) in &runs {
        println!(
            "  {name:<11} {:>6} {:>9.1} MB ({:>5.3}x)   {:>7.1} µs ({:.2}x)",
            r.held,
            r.bytes as f64 / 1e6,
            r.bytes as f64 / base.bytes as f64,
            r.per_att.as_secs_f64() * 1e6,
            r.per_att.as_secs_f64() / base.per_att.as_secs_f64()
        );
    }
}
