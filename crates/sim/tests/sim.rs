//! The simulator at a size `cargo test` runs in seconds: 200 nodes, 40 markets, 20 % hostile
//! (valid spam from many keys, garbage, withholding, an eclipse attempt), a partition, churn
//! and loss. Every honest node following a market gets every honest attestation of it.

use passalong_net::policy::{MAX_AUTHORS, MAX_BANS, MAX_REMEMBERED_SCORES};
use passalong_sim::{run, Config};

#[test]
fn every_honest_follower_gets_every_honest_attestation_despite_hostile_nodes() {
    // Seeds 7, 10 and 15 missed 1 to 4 deliveries before what anti-entropy brings was
    // relayed on gossip.
    for seed in [1, 2, 7, 10, 15] {
        let r = run(Config::small(seed));
        assert!(r.hostile_nodes >= 20, "{r:?}");
        assert!(r.expected_deliveries > 1_000, "{r:?}");
        assert_eq!(r.delivered, r.expected_deliveries, "seed {seed}: {r:?}");
        assert!(
            r.victim_complete,
            "the eclipse victim missed something: {r:?}"
        );
        assert!(r.by_gossip * 2 > r.delivered, "most by gossip: {r:?}");
        assert!(r.relayed > 0, "news anti-entropy brought is relayed: {r:?}");
        assert_eq!(
            r.garbage_senders_banned, r.hostile_nodes,
            "every garbage sender is banned by someone: {r:?}"
        );
        assert!(
            r.policy_entries_max <= MAX_REMEMBERED_SCORES + MAX_AUTHORS + MAX_BANS,
            "{r:?}"
        );
        // Gossip reaches the followers within a few hops' latency when nothing is cut.
        assert!(r.p50_ms < 1_000, "{r:?}");
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = run(Config {
        nodes: 80,
        markets: 12,
        ..Config::small(9)
    });
    let b = run(Config {
        nodes: 80,
        markets: 12,
        ..Config::small(9)
    });
    assert_eq!(a, b);
    let c = run(Config {
        nodes: 80,
        markets: 12,
        ..Config::small(10)
    });
    assert_ne!(a, c, "another seed, another run");
}
