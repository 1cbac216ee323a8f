//! The network as the API sees it: a small trait the node implements over its peer-to-peer
//! layer (as the node's store backs the network in the other direction), with plain types
//! owned here. The API never names the network crate's types: dependencies point toward the
//! protocol, and the node wires the two together.

use std::future::Future;
use std::pin::Pin;

use passalong_protocol::PublicKey;
use serde::{Deserialize, Serialize};

/// What the network answers, some time later.
pub type NetFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, NetworkError>> + Send + 'a>>;

/// The peer-to-peer network, as the API's handlers and the dashboard use it.
pub trait Network: Send + Sync + 'static {
    /// This node's peer id.
    fn peer_id(&self) -> String;
    /// The network's state now.
    fn info(&self) -> NetFuture<'_, NetStatus>;
    /// Gossips and reconciles a market from now on (the store remembers it; see `follow`).
    fn follow(&self, market: PublicKey) -> NetFuture<'_, ()>;
    /// Drops a peer (a libp2p peer id, as text) and refuses it until unblocked.
    fn block<'a>(&'a self, peer: &'a str) -> NetFuture<'a, ()>;
    /// Accepts a blocked or banned peer again.
    fn unblock<'a>(&'a self, peer: &'a str) -> NetFuture<'a, ()>;
}

/// What can go wrong when the API asks the network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The text is not a peer id.
    #[error("{0:?} is not a libp2p peer id")]
    BadPeer(String),
    /// The network failed, or has stopped.
    #[error("{0}")]
    Failed(String),
}

/// Counters since the network started (`GET /v1/peers`' `stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCounters {
    /// Gossip messages received.
    pub gossip_received: u64,
    /// Received gossip that was valid and new (forwarded).
    pub gossip_accepted: u64,
    /// Received gossip that was invalid or on the wrong topic.
    pub gossip_rejected: u64,
    /// Received gossip already held, pending a parent, future-dated, or dropped by a limit.
    pub gossip_ignored: u64,
    /// Attestations this node published.
    pub published: u64,
    /// Finished anti-entropy sessions.
    pub syncs_done: u64,
    /// Failed anti-entropy sessions.
    pub syncs_failed: u64,
    /// Round trips of anti-entropy sessions.
    pub sync_rounds: u64,
    /// Attestations fetched by anti-entropy and parent fetches.
    pub sync_fetched: u64,
    /// When the last session ended (ms since the epoch; 0: never).
    pub last_sync_ms: u64,
    /// Sessions running now.
    pub syncing: usize,
    /// Gossip messages waiting for validation.
    pub queued: usize,
    /// Peers banned since start.
    pub banned_total: u64,
    /// Own attestations left to anti-entropy: over the node's publishing pace.
    #[serde(default)]
    pub deferred: u64,
    /// Attestations anti-entropy brought and the node relayed on gossip while news.
    #[serde(default)]
    pub relayed: u64,
    /// Valid gossip not forwarded: its author over the per-author budget.
    #[serde(default)]
    pub author_budget_dropped: u64,
    /// Payload bytes received (gossip messages and sync streams).
    pub bytes_in: u64,
    /// Payload bytes sent (published messages and sync streams).
    pub bytes_out: u64,
    /// Relayed connections upgraded to direct ones by hole punching (DCUtR).
    pub hole_punches: u64,
    /// Hole punching attempts that failed (the relayed connection stays).
    pub hole_punch_failures: u64,
    /// Connections closed because a ping went unanswered (the peer vanished).
    pub dead_connections: u64,
}

/// A connected peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its peer id.
    pub peer_id: String,
    /// Its gossipsub score, as this node sees it.
    pub score: Option<f64>,
    /// How many market topics it subscribes to.
    pub markets: usize,
    /// The address of a connection to it (a direct one when there is one).
    pub addr: String,
    /// True when every connection to it runs through a relay.
    pub relayed: bool,
}

/// The network's state (`GET /v1/peers`, `status`, `/metrics`, the dashboard).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetStatus {
    /// This node's peer id.
    pub peer_id: String,
    /// Addresses it listens on (relay circuits included).
    pub listen: Vec<String>,
    /// Whether peers can dial it, as AutoNAT found: `unknown`, `public` or `private`.
    pub reachability: String,
    /// Addresses confirmed reachable from outside.
    pub external: Vec<String>,
    /// Relays holding a reservation for it (peer ids), used when it is private.
    pub relays: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerStatus>,
    /// Markets followed (hex keys).
    pub markets: Vec<String>,
    /// Peers refused now (banned or blocked by an operator).
    pub banned: Vec<String>,
    /// Counters.
    pub stats: NetCounters,
}
