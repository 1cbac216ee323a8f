//! End-to-end correctness tests.

use passalong_reconcile::{Config, Error, Id, Item, Reconciler, Storage, MIN_MESSAGE_SIZE};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// The protocol version byte that starts every message.
const VERSION: u8 = 0x52;

fn id_of(n: u64) -> Id {
    *blake3::hash(&n.to_le_bytes()).as_bytes()
}

/// Runs a full reconciliation; returns (have, need, round trips).
fn run(a: &Storage, b: &Storage, config: Config) -> (BTreeSet<Id>, BTreeSet<Id>, usize) {
    let mut init = Reconciler::new(a, config.clone());
    let mut resp = Reconciler::new(b, config);
    let mut msg = init.initiate().expect("fresh");
    let mut rounds = 1;
    loop {
        let reply = resp
            .reconcile(&msg)
            .expect("responder accepts")
            .expect("responder replies");
        match init.reconcile(&reply).expect("initiator accepts") {
            Some(next) => {
                msg = next;
                rounds += 1;
                assert!(rounds < 30, "does not terminate");
            }
            None => break,
        }
    }
    let have: BTreeSet<Id> = init.have().iter().copied().collect();
    let need: BTreeSet<Id> = init.need().iter().copied().collect();
    assert_eq!(have.len(), init.have().len(), "duplicate have");
    assert_eq!(need.len(), init.need().len(), "duplicate need");
    (have, need, rounds)
}

fn check(a: &[Item], b: &[Item], config: Config) -> usize {
    let sa = Storage::from_items(a.iter().copied());
    let sb = Storage::from_items(b.iter().copied());
    let ia: BTreeSet<Id> = sa.items().iter().map(|i| i.id).collect();
    let ib: BTreeSet<Id> = sb.items().iter().map(|i| i.id).collect();
    let (have, need, rounds) = run(&sa, &sb, config);
    assert_eq!(have, ia.difference(&ib).copied().collect::<BTreeSet<_>>());
    assert_eq!(need, ib.difference(&ia).copied().collect::<BTreeSet<_>>());
    rounds
}

fn items(range: std::ops::Range<u64>, time: impl Fn(u64) -> u64) -> Vec<Item> {
    range
        .map(|n| Item {
            created_at: time(n),
            id: id_of(n),
        })
        .collect()
}

#[test]
fn empty_and_identical() {
    check(&[], &[], Config::default());
    let a = items(0..5000, |n| n);
    check(&a, &a, Config::default());
    check(&a, &[], Config::default());
    check(&[], &a, Config::default());
}

#[test]
fn newest_items_missing_either_side() {
    let a = items(0..20_000, |n| n * 3);
    let b = items(0..19_000, |n| n * 3);
    assert!(check(&a, &b, Config::default()) <= 6);
    assert!(check(&b, &a, Config::default()) <= 6);
}

#[test]
fn uniform_differences() {
    let all = items(0..30_000, |n| n / 4);
    let a: Vec<Item> = all.iter().copied().filter(|i| i.id[0] % 10 != 0).collect();
    let b: Vec<Item> = all.iter().copied().filter(|i| i.id[0] % 10 != 1).collect();
    assert!(check(&a, &b, Config::default()) <= 6);
}

/// A uniform difference split into many small IBLT runs (the smallest run allowed) still
/// reconciles exactly.
#[test]
fn uniform_differences_in_small_runs() {
    let all = items(0..30_000, |n| n / 4);
    let a: Vec<Item> = all.iter().copied().filter(|i| i.id[0] % 10 != 0).collect();
    let b: Vec<Item> = all.iter().copied().filter(|i| i.id[0] % 10 != 1).collect();
    let config = Config {
        iblt_run_symbols: 0,
        ..Config::default()
    };
    assert!(check(&a, &b, config.clone()) <= 6);
    assert!(check(&b, &a, config) <= 6);
}

#[test]
fn equal_times_need_prefix_bounds() {
    let a = items(0..3000, |_| 42);
    let b: Vec<Item> = a.iter().copied().filter(|i| i.id[1] % 7 != 0).collect();
    check(&a, &b, Config::default());
    check(&b, &a, Config::default());
}

#[test]
fn small_fanout_and_extreme_times() {
    let a = items(0..2000, |n| if n % 2 == 0 { u64::MAX } else { n });
    let b = items(100..2100, |n| if n % 2 == 0 { u64::MAX } else { n });
    check(
        &a,
        &b,
        Config {
            fanout: 2,
            ..Config::default()
        },
    );
}

#[test]
fn malformed_messages_are_errors() {
    let s = Storage::from_items(items(0..100, |n| n));
    let mut r = Reconciler::new(&s, Config::default());
    assert_eq!(r.reconcile(&[]), Err(Error::Empty));
    assert_eq!(r.reconcile(&[0x00]), Err(Error::UnsupportedVersion(0)));
    assert_eq!(r.reconcile(&[0x51]), Err(Error::UnsupportedVersion(0x51)));
    assert_eq!(r.reconcile(&[VERSION]), Err(Error::Empty));
    assert_eq!(
        r.reconcile(&[VERSION, 0x05, 0x00, 0x00]),
        Err(Error::MissingFinalBound)
    );
    assert_eq!(
        r.reconcile(&[VERSION, 0x00, 0x07]),
        Err(Error::UnknownMode(0x07))
    );
    // Limits below the minimum are raised to it.
    let small = Config {
        max_message_size: 10,
        ..Config::default()
    };
    let mut r = Reconciler::new(&s, small);
    assert!(matches!(
        r.reconcile(&[VERSION; MIN_MESSAGE_SIZE + 1]),
        Err(Error::MessageTooLarge { .. })
    ));
    assert!(!matches!(
        r.reconcile(&[VERSION; 11]),
        Err(Error::MessageTooLarge { .. })
    ));
    let mut i = Reconciler::new(&s, Config::default());
    i.initiate().expect("fresh");
    assert_eq!(i.initiate(), Err(Error::AlreadyStarted));
}

/// Two random subsets of `n` items (each item kept with probability ~`pa`/`pb` %), with
/// `time_spread` items per millisecond.
fn overlapping(seed: u64, n: u64, pa: u8, pb: u8, time_spread: u64) -> (Vec<Item>, Vec<Item>) {
    let all = items(seed..seed + n, |k| k / time_spread);
    let a = all.iter().copied().filter(|i| i.id[2] % 101 < pa).collect();
    let b = all.iter().copied().filter(|i| i.id[3] % 101 < pb).collect();
    (a, b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn exact_difference(
        n in 0u64..3000,
        pa in 0u8..=100,
        pb in 0u8..=100,
        time_spread in 1u64..50,
        fanout in 2usize..20,
        seed in any::<u64>(),
    ) {
        let (a, b) = overlapping(seed, n, pa, pb, time_spread);
        let rounds = check(&a, &b, Config { fanout, ..Config::default() });
        prop_assert!(rounds <= 6 || fanout < 8, "{} round trips", rounds);
    }

    #[test]
    fn mutated_messages_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
        truncate in any::<bool>(),
    ) {
        let all = items(0..4000, |n| n / 2);
        let a = Storage::from_items(all.iter().copied().filter(|i| i.id[0] % 9 != 0));
        let b = Storage::from_items(all.iter().copied().filter(|i| i.id[0] % 9 != 1));
        let mut init = Reconciler::new(&a, Config::default());
        let mut resp = Reconciler::new(&b, Config::default());
        let mut msg = init.initiate().expect("fresh");
        for _ in 0..4 {
            let reply = resp.reconcile(&msg).expect("valid").expect("reply");
            for target in [&msg, &reply] {
                let mut bad = target.clone();
                for (pos, x) in &flips {
                    let i = pos % bad.len();
                    bad[i] ^= x;
                }
                if truncate {
                    bad.truncate(cut % (bad.len() + 1));
                }
                let _ = Reconciler::new(&b, Config::default()).reconcile(&bad);
                let mut fresh_init = Reconciler::new(&a, Config::default());
                fresh_init.initiate().expect("fresh");
                let _ = fresh_init.reconcile(&bad);
            }
            match init.reconcile(&reply).expect("valid") {
                Some(next) => msg = next,
                None => break,
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), prefix in any::<bool>()) {
        let s = Storage::from_items(items(0..300, |n| n));
        let mut msg = bytes;
        if prefix { msg.insert(0, VERSION); }
        let _ = Reconciler::new(&s, Config::default()).reconcile(&msg);
        let mut init = Reconciler::new(&s, Config::default());
        init.initiate().expect("fresh");
        let _ = init.reconcile(&msg);
    }
}

#[test]
fn disjoint_and_lopsided_sets() {
    let a = items(0..5000, |n| n);
    let b = items(5000..10_000, |n| n - 5000);
    assert!(check(&a, &b, Config::default()) <= 8);
    let c = items(0..40_000, |n| n / 3);
    let d: Vec<Item> = c.iter().copied().filter(|i| i.id[0] < 20).collect();
    check(&c, &d, Config::default());
    check(&d, &c, Config::default());
}

#[test]
fn small_message_limit_still_converges() {
    let all = items(0..20_000, |n| n);
    let a: Vec<Item> = all.iter().copied().filter(|i| i.id[0] % 4 != 0).collect();
    let b: Vec<Item> = all.iter().copied().filter(|i| i.id[0] % 4 != 1).collect();
    check(
        &a,
        &b,
        Config {
            max_message_size: 256 << 10,
            ..Config::default()
        },
    );
}

/// Runs a full reconciliation where the initiator's messages (requests) must stay within
/// `request_limit` and the responder's (responses) within `response_limit`; both sides use
/// `config`. Returns (have, need, round trips).
fn run_bounded(
    a: &Storage,
    b: &Storage,
    config: &Config,
    request_limit: usize,
    response_limit: usize,
    max_rounds: usize,
) -> (BTreeSet<Id>, BTreeSet<Id>, usize) {
    let mut init = Reconciler::new(a, config.clone());
    let mut resp = Reconciler::new(b, config.clone());
    let mut msg = init.initiate().expect("fresh");
    let mut rounds = 1;
    loop {
        assert!(
            msg.len() <= request_limit,
            "request of {} bytes in round {rounds}",
            msg.len()
        );
        let reply = resp
            .reconcile(&msg)
            .expect("responder accepts")
            .expect("responder replies");
        assert!(
            reply.len() <= response_limit,
            "response of {} bytes in round {rounds}",
            reply.len()
        );
        match init.reconcile(&reply).expect("initiator accepts") {
            Some(next) => {
                msg = next;
                rounds += 1;
                assert!(rounds <= max_rounds, "does not terminate");
            }
            None => break,
        }
    }
    let have: BTreeSet<Id> = init.have().iter().copied().collect();
    let need: BTreeSet<Id> = init.need().iter().copied().collect();
    assert_eq!(have.len(), init.have().len(), "duplicate have");
    assert_eq!(need.len(), init.need().len(), "duplicate need");
    (have, need, rounds)
}

/// Exact difference with every message of either side within `limit`; returns round trips.
fn check_bounded(a: &[Item], b: &[Item], limit: usize, fanout: usize) -> usize {
    check_bounded_runs(a, b, limit, fanout, Config::default().iblt_run_symbols)
}

/// [`check_bounded`] with IBLT runs of at most `run` symbols.
fn check_bounded_runs(a: &[Item], b: &[Item], limit: usize, fanout: usize, run: usize) -> usize {
    let sa = Storage::from_items(a.iter().copied());
    let sb = Storage::from_items(b.iter().copied());
    let ia: BTreeSet<Id> = sa.items().iter().map(|i| i.id).collect();
    let ib: BTreeSet<Id> = sb.items().iter().map(|i| i.id).collect();
    let config = Config {
        max_message_size: limit,
        fanout,
        iblt_run_symbols: run,
    };
    let bound = limit.max(MIN_MESSAGE_SIZE);
    let (have, need, rounds) = run_bounded(&sa, &sb, &config, bound, bound, 5000);
    assert_eq!(have, ia.difference(&ib).copied().collect::<BTreeSet<_>>());
    assert_eq!(need, ib.difference(&ia).copied().collect::<BTreeSet<_>>());
    rounds
}

#[test]
fn chunked_empty_versus_many() {
    let a = items(0..50_000, |n| n / 3);
    for limit in [4 << 10, 16 << 10] {
        let r = check_bounded(&a, &[], limit, 16);
        assert!(r <= 2, "{r} round trips to report everything as have");
        let r = check_bounded(&[], &a, limit, 16);
        // 1.6 MB of ids through `limit`-byte responses.
        assert!(r <= 50_000 * 32 / (limit - 1024) + 2, "{r} round trips");
    }
    // Below the minimum: raised to it.
    check_bounded(&[], &a[..5000], 100, 16);
}

#[test]
fn chunked_subset_and_disjoint() {
    let a = items(0..50_000, |n| n / 3);
    let b: Vec<Item> = a.iter().copied().filter(|i| i.id[5] % 2 == 0).collect();
    check_bounded(&a, &b, 8 << 10, 16);
    check_bounded(&b, &a, 8 << 10, 16);
    let c = items(100_000..110_000, |n| n % 7_000);
    check_bounded(&a[..10_000], &c, 8 << 10, 16);
    // Unlimited: the IBLT over the overlapping part grows up to its cap instead of falling
    // back to splitting (which merged the children into the same IBLT again).
    assert!(check(&a[..10_000], &c, Config::default()) <= 6);
}

#[test]
fn chunked_uniform_and_newest() {
    let all = items(0..20_000, |n| n / 2);
    let a: Vec<Item> = all.iter().copied().filter(|i| i.id[0] % 10 != 0).collect();
    let b: Vec<Item> = all.iter().copied().filter(|i| i.id[0] % 10 != 1).collect();
    for limit in [4 << 10, 16 << 10] {
        check_bounded(&a, &b, limit, 16);
    }
    let old = &all[..12_000];
    check_bounded(&all, old, 4 << 10, 16);
    check_bounded(old, &all, 4 << 10, 16);
    check_bounded(&all[5_000..], &all[..15_000], 4 << 10, 4);
}

/// The transport's limits (requests 4 MiB, responses 8 MiB, one `max_message_size` of the
/// smaller for both sides): 300,000 items against none, both ways.
#[test]
fn transport_limits_with_300k_items() {
    const REQUEST: usize = 4 << 20;
    const RESPONSE: usize = 8 << 20;
    let config = Config {
        max_message_size: REQUEST.min(RESPONSE),
        ..Config::default()
    };
    let many = Storage::from_items(items(0..300_000, |n| 1_700_000_000_000 + n / 3));
    let none = Storage::default();
    let all: BTreeSet<Id> = many.items().iter().map(|i| i.id).collect();
    let (have, need, rounds) = run_bounded(&none, &many, &config, REQUEST, RESPONSE, 16);
    assert!(have.is_empty());
    assert_eq!(need, all);
    assert!(rounds <= 4, "{rounds} round trips");
    let (have, need, rounds) = run_bounded(&many, &none, &config, REQUEST, RESPONSE, 16);
    assert_eq!(have, all);
    assert!(need.is_empty());
    assert!(rounds <= 2, "{rounds} round trips");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn bounded_messages_exact_difference(
        n in 0u64..12_000,
        pa in 0u8..=100,
        pb in 0u8..=100,
        time_spread in 1u64..50,
        fanout in 2usize..20,
        limit in 4096usize..16_384,
        small_runs in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (a, b) = overlapping(seed, n, pa, pb, time_spread);
        let run = if small_runs { 0 } else { Config::default().iblt_run_symbols };
        check_bounded_runs(&a, &b, limit, fanout, run);
    }

    #[test]
    fn bounded_messages_subset_and_newest(
        n in 1u64..15_000,
        keep in 0u8..=100,
        newest in any::<bool>(),
        swap in any::<bool>(),
        limit in 4096usize..16_384,
        seed in any::<u64>(),
    ) {
        let all = items(seed..seed + n, |k| k / 3);
        let part: Vec<Item> = if newest {
            all[..(n * u64::from(keep) / 100) as usize].to_vec()
        } else {
            all.iter().copied().filter(|i| i.id[4] % 101 < keep).collect()
        };
        let (a, b) = if swap { (&part, &all) } else { (&all, &part) };
        check_bounded(a, b, limit, 16);
    }
}
