//! A deterministic simulator of many Passalong nodes, in one process, from a seed.
//!
//! Each simulated node runs the real network policy (`passalong_net::policy`: rates, author
//! budgets, bans, sync scheduling, shard subscriptions), the protocol's stateless checks on
//! every attestation it receives (`passalong_protocol::validation`, each distinct envelope
//! verified once for the whole simulation: validity does not depend on who checks), and real
//! set reconciliation (`passalong_reconcile`) for anti-entropy. What is simulated is the IO:
//! links with latency and loss, a partition, churn, and a gossip mesh per shard topic that
//! forwards what a node accepted to a few of its peers subscribed to that shard, as gossipsub
//! does. Hostile nodes spam valid attestations from many keys, send garbage, withhold (forward
//! nothing, answer every digest with "no difference") and try to eclipse one victim.
//!
//! Everything random comes from one ChaCha RNG seeded by [`Config::seed`], and events are
//! ordered by (time, sequence number): the same config gives the same [`Report`], bit for bit.

mod link;
mod node;
mod workload;
mod world;

pub use world::run;

use serde::Serialize;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Config {
    /// Nodes, honest and hostile.
    pub nodes: usize,
    /// Markets (each has one honest seller node).
    pub markets: usize,
    /// Markets each honest node follows, drawn uniformly in this range.
    pub follow: (usize, usize),
    /// Percentage of nodes that are hostile.
    pub hostile_pct: u32,
    /// Honest attestations per market after its offer (referrals by honest keys).
    pub referrals_per_market: usize,
    /// Valid spam attestations each hostile node publishes (referrals of honest offers by
    /// fresh keys).
    pub spam_per_hostile: usize,
    /// Garbage messages each hostile node sends.
    pub garbage_per_hostile: usize,
    /// Peers each node dials at start.
    pub degree: usize,
    /// Most connections one node accepts.
    pub max_connections: usize,
    /// One-way link latency range, milliseconds.
    pub latency_ms: (u64, u64),
    /// Probability that a message is lost.
    pub loss: f64,
    /// Percentage of honest nodes that go offline once for 10–40 s.
    pub churn_pct: u32,
    /// The network splits in two halves during this interval (ms).
    pub partition: Option<(u64, u64)>,
    /// Attestations are published during the first this many milliseconds.
    pub publish_ms: u64,
    /// Simulated time in all, milliseconds.
    pub duration_ms: u64,
    /// Anti-entropy with one random peer this often.
    pub sync_interval_ms: u64,
    /// The seed of everything random.
    pub seed: u64,
}

impl Config {
    /// A size that runs in a second or two, for `cargo test`.
    pub fn small(seed: u64) -> Config {
        Config {
            nodes: 200,
            markets: 40,
            follow: (1, 20),
            hostile_pct: 20,
            referrals_per_market: 3,
            spam_per_hostile: 40,
            garbage_per_hostile: 20,
            degree: 8,
            max_connections: 64,
            latency_ms: (5, 80),
            loss: 0.01,
            churn_pct: 10,
            partition: Some((20_000, 40_000)),
            publish_ms: 60_000,
            duration_ms: 300_000,
            sync_interval_ms: 30_000,
            seed,
        }
    }

    /// The size: 10,000 nodes, 2,000 markets, 1 to 500 markets each, 20 % hostile.
    pub fn full(seed: u64) -> Config {
        Config {
            nodes: 10_000,
            markets: 2_000,
            follow: (1, 500),
            // Each spam message reaches nearly every node (most follow enough markets to hold
            // every shard): 2 per hostile node is 4,000 messages, as many as the honest ones.
            spam_per_hostile: 2,
            garbage_per_hostile: 5,
            referrals_per_market: 2,
            ..Config::small(seed)
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Honest nodes.
    pub honest_nodes: usize,
    /// Hostile nodes.
    pub hostile_nodes: usize,
    /// Honest attestations published.
    pub honest_attestations: usize,
    /// (honest node, honest attestation of a market it follows) pairs that must be delivered.
    pub expected_deliveries: u64,
    /// Of those, delivered by the end.
    pub delivered: u64,
    /// Delivered by gossip (the rest by anti-entropy).
    pub by_gossip: u64,
    /// Attestations honest nodes relayed on gossip after anti-entropy brought them (while
    /// news, within their publishing pace).
    pub relayed: u64,
    /// Delivery time after publication, median and 99th percentile, milliseconds.
    pub p50_ms: u64,
    /// See `p50_ms`.
    pub p99_ms: u64,
    /// The slowest delivery, milliseconds after publication.
    pub max_ms: u64,
    /// The eclipse victim got every honest attestation of the markets it follows.
    pub victim_complete: bool,
    /// Bytes in and out per honest node (gossip and sync), median and maximum.
    pub bytes_per_node_p50: u64,
    /// See `bytes_per_node_p50`.
    pub bytes_per_node_max: u64,
    /// Spam attestations stored per honest node, maximum (valid, so stored by followers).
    pub spam_stored_max: u64,
    /// Hostile nodes banned by at least one honest node for garbage.
    pub garbage_senders_banned: usize,
    /// Largest policy footprint (peers, scores, bans, authors) of an honest node.
    pub policy_entries_max: usize,
    /// Largest estimated state of an honest node: stored envelopes, seen ids, policy.
    pub state_bytes_max: u64,
    /// Events processed.
    pub events: u64,
    /// The deliveries missing at the end, by their node's situation.
    pub undelivered: Undelivered,
}

/// Missing deliveries by the situation of the node that misses them at the end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Undelivered {
    /// The eclipse victim's.
    pub victim: u64,
    /// The node is offline.
    pub offline: u64,
    /// No connected peer of the node is honest.
    pub no_honest_peer: u64,
    /// A connected honest peer holds the attestation (the next session with it brings it).
    pub a_peer_holds_it: u64,
    /// No connected honest peer holds it.
    pub no_peer_holds_it: u64,
}
