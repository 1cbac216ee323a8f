//! What anti-entropy's digests cost a node following many markets (`docs/benchmarks.md`).
//!
//! `cargo bench -p passalong-store --bench digests` builds a store of 10,000 markets of 20
//! attestations each (an offer and 19 referrals; `PASSALONG_BENCH_MARKETS` to change), then
//! times passes over every market, as one sync session's digests do:
//!
//! - read: each market's set read from the tree and summarised (what every session did);
//! - kept: `Store::set_summary`, kept in memory until a write touches the market;
//! - kept, 1 % changed: the same after a write to one market in a hundred.
//!
//! It prints each pass's median over 5 passes and the ratios, measured in one run.

use std::time::{Duration, Instant};

mod support;

use passalong_protocol::{Attestation, Keypair};
use passalong_store::{SetSummary, Store};
use support::{offer, refer};

fn key(i: u64) -> Keypair {
    support::key(i, 0x5e)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let markets: u64 = std::env::var("PASSALONG_BENCH_MARKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let t0 = 1_700_000_000_000u64;
    let now = t0 + 86_400_000;
    let dir = tempfile::tempdir().expect("a temporary dir");
    let st = Store::open(dir.path()).expect("open the store");
    let referrers: Vec<Keypair> = (0..19).map(|i| key(1_000_000 + i)).collect();
    let mut sellers = Vec::new();
    let started = Instant::now();
    for m in 0..markets {
        let s = key(m);
        let o = offer(&s, t0);
        let mut atts = vec![o.clone()];
        atts.extend(
            referrers
                .iter()
                .enumerate()
                .map(|(i, r)| refer(r, &o, t0 + 1 + i as u64)),
        );
        let envs: Vec<&[u8]> = atts.iter().map(|a| a.bytes.as_slice()).collect();
        st.ingest(&envs, now).expect("ingest");
        sellers.push((s.public(), o));
    }
    println!(
        "store: {markets} markets of 20 attestations, built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let pass = |f: &dyn Fn(&passalong_protocol::PublicKey) -> SetSummary| {
        let t = Instant::now();
        let mut x = 0u64;
        for (m, _) in &sellers {
            x = x.wrapping_add(f(m).count);
        }
        assert!(x >= markets * 20, "{x} ids");
        t.elapsed()
    };
    let read = |m: &passalong_protocol::PublicKey| {
        let set = st.market_with_dependencies(m).expect("a read");
        SetSummary::of(set.iter().map(|(_, id, _)| id))
    };
    let kept = |m: &passalong_protocol::PublicKey| st.set_summary(m).expect("a read");
    let mut reads = Vec::new();
    let mut keeps = Vec::new();
    let mut changed = Vec::new();
    pass(&kept); // the first pass computes and keeps them
    for round in 0..5u64 {
        reads.push(pass(&read));
        keeps.push(pass(&kept));
        // A new referral in one market in a hundred.
        let k = key(2_000_000 + round);
        let news: Vec<Attestation> = sellers
            .iter()
            .step_by(100)
            .map(|(_, o)| refer(&k, o, t0 + 100))
            .collect();
        let envs: Vec<&[u8]> = news.iter().map(|a| a.bytes.as_slice()).collect();
        st.ingest(&envs, now).expect("ingest");
        let t = Instant::now();
        for (m, _) in &sellers {
            std::hint::black_box(st.set_summary(m).expect("a read"));
        }
        changed.push(t.elapsed());
    }
    let (r, k, c) = (median(reads), median(keeps), median(changed));
    println!("digests of {markets} markets, median of 5 passes:");
    println!("  read from the tree  {:>10.1} ms", r.as_secs_f64() * 1e3);
    println!(
        "  kept                {:>10.1} ms  ({:.0}x faster)",
        k.as_secs_f64() * 1e3,
        r.as_secs_f64() / k.as_secs_f64()
    );
    println!(
        "  kept, 1 % changed   {:>10.1} ms  ({:.0}x faster)",
        c.as_secs_f64() * 1e3,
        r.as_secs_f64() / c.as_secs_f64()
    );
}
