//! Passalong's peer-to-peer layer.
//!
//! One libp2p [`Swarm`](libp2p::Swarm) with one composed behaviour ([`behaviour::Behaviour`]):
//! TCP and QUIC with noise and yamux, identify, ping, Kademlia, mDNS, relay v2 (client, and
//! server on community nodes), DCUtR, AutoNAT, connection limits (global and per IP) and a
//! block list; gossipsub on a fixed set of shard topics that markets map to ([`market`]); and
//! `/passalong/sync/2`, a request-response protocol for anti-entropy (digests, set
//! reconciliation with `passalong-reconcile`, then batched body fetches).
//!
//! As in rust-libp2p's examples, a single task owns the swarm (`event_loop`); the node talks
//! to it through the cloneable [`Network`] handle. What to do — admit, penalise, ban, reconcile
//! with whom, publish or defer — is decided by a pure state machine ([`policy`]) that the loop
//! only feeds and obeys. Storage is behind the [`Backend`] trait, so this crate depends only on
//! the protocol: gossip is validated by the node's store (the protocol crate's checks) before
//! gossipsub forwards it.
//!
//! `docs/network.md` describes the protocols, limits and scoring for operators and other
//! implementations; `docs/limits.md` lists every limit.

pub mod backend;
pub mod behaviour;
pub mod config;
mod event_loop;
pub mod ip_limits;
pub mod market;
pub mod policy;
pub mod rate;
pub mod relay;
pub mod scoring;
pub mod sync;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{identity, Multiaddr};
use passalong_protocol::PublicKey;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use backend::{Backend, Verdict};
pub use config::NetConfig;
pub use libp2p::metrics::Registry;
pub use libp2p::{multiaddr, Multiaddr as Addr, PeerId};
pub use policy::PolicyConfig;
pub use relay::{RelayConfig, RelayLimits, RelayMembers};
pub use wire::Digest;

use event_loop::{Command, EventLoop};

/// What can go wrong in the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A setting is invalid.
    #[error("invalid network setting: {0}")]
    Config(String),
    /// A transport could not be set up.
    #[error("cannot set up the transport: {0}")]
    Transport(String),
    /// Listening on an address failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A request to a peer failed (unreachable, timed out, refused the protocol).
    #[error("request failed: {0}")]
    Request(String),
    /// A peer broke the sync protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The storage behind the network failed.
    #[error("storage: {0}")]
    Backend(String),
    /// The network task has stopped.
    #[error("the network has stopped")]
    Stopped,
}

/// Counters since start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NetStats {
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
    /// Own attestations left to anti-entropy: over this node's publishing pace.
    pub deferred: u64,
    /// Attestations anti-entropy brought and this node relayed on gossip (news: made within
    /// the last 10 minutes).
    pub relayed: u64,
    /// Valid gossip not forwarded: its author over the per-author budget.
    pub author_budget_dropped: u64,
    /// Peers banned since start.
    pub banned_total: u64,
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
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Its gossipsub score, as this node sees it.
    pub score: Option<f64>,
    /// How many shard topics it subscribes to (markets map to a fixed set of them).
    pub markets: usize,
    /// The address of a connection to it (a direct one when there is one).
    pub addr: String,
    /// True when every connection to it runs through a relay.
    pub relayed: bool,
}

/// The network's state, for `passalong peers` and `status`.
#[derive(Clone, Debug, Serialize)]
pub struct NetInfo {
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
    pub peers: Vec<PeerInfo>,
    /// Markets followed (hex keys).
    pub markets: Vec<String>,
    /// Peers refused now (banned or blocked by an operator).
    pub banned: Vec<String>,
    /// Counters.
    pub stats: NetStats,
}

/// The libp2p identity of a node key: the same ed25519 key signs attestations and noise.
pub fn identity_of(seed: [u8; 32]) -> Result<identity::Keypair, NetError> {
    let mut s = seed;
    identity::Keypair::ed25519_from_bytes(&mut s).map_err(|e| NetError::Config(e.to_string()))
}

/// The peer id of a node key.
pub fn peer_id_of(seed: [u8; 32]) -> Result<PeerId, NetError> {
    Ok(identity_of(seed)?.public().to_peer_id())
}

/// The peer id of the node whose key is `key` (a member's own node, for the relay), if `key`
/// is a valid ed25519 point.
pub fn peer_of(key: &PublicKey) -> Option<PeerId> {
    let k = identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(identity::PublicKey::from(k).to_peer_id())
}

/// The node key of `peer` (the key it signs attestations with), if its peer id embeds an
/// ed25519 key, as passalong nodes' do.
pub fn key_of(peer: &PeerId) -> Option<PublicKey> {
    let public = identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    Some(PublicKey(public.try_into_ed25519().ok()?.to_bytes()))
}

/// A handle to the running network.
#[derive(Clone)]
pub struct Network {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    relay_members: RelayMembers,
}

impl Network {
    /// Builds the swarm, starts listening, and spawns the event loop on the current runtime.
    /// Returns once the listeners have reported their addresses (or after 2 s). libp2p's own
    /// metrics go to a registry of their own that nobody reads: see
    /// [`Network::start_with_metrics`].
    pub async fn start(
        seed: [u8; 32],
        config: NetConfig,
        backend: Arc<dyn Backend>,
    ) -> Result<Network, NetError> {
        Self::start_with_metrics(seed, config, backend, &mut Registry::default()).await
    }

    /// [`Network::start`], registering libp2p's own metrics in `registry` under the prefix
    /// `libp2p`: the transport's bytes per protocol stack, and what the event loop records of
    /// the swarm's and the protocols' events (connections, dials and listeners; gossipsub
    /// messages; identify; Kademlia queries and routing; ping round trips; the relay server;
    /// hole punching). Encoding the registry reads them at any time.
    pub async fn start_with_metrics(
        seed: [u8; 32],
        config: NetConfig,
        backend: Arc<dyn Backend>,
        registry: &mut Registry,
    ) -> Result<Network, NetError> {
        let key = identity_of(seed)?;
        let peer_id = key.public().to_peer_id();
        let traffic = Arc::new(wire::Traffic::default());
        let relay_members = RelayMembers::default();
        let mut swarm = behaviour::build(key, &config, &relay_members, traffic.clone(), registry)?;
        let metrics = libp2p::metrics::Metrics::new(registry);
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        for addr in &config.external {
            swarm.add_external_address(addr.clone());
        }
        // Wait for the first address of each listener so that callers can publish them.
        let mut listen_addrs = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while listen_addrs.len() < config.listen.len() {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some()).await;
            if let Ok(e) = &event {
                libp2p::metrics::Recorder::record(&metrics, e);
            }
            match event {
                Ok(SwarmEvent::NewListenAddr { address, .. }) => listen_addrs.push(address),
                Ok(SwarmEvent::ListenerError { error, .. }) => {
                    return Err(NetError::Transport(error.to_string()))
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let (tx, rx) = mpsc::channel(1024);
        let requester = sync::Requester { tx: tx.clone() };
        let event_loop = EventLoop::new(
            swarm,
            rx,
            requester,
            backend,
            config,
            traffic,
            listen_addrs,
            metrics,
        );
        tokio::spawn(event_loop.run());
        Ok(Network {
            tx,
            peer_id,
            relay_members,
        })
    }

    /// The peers a members-only relay admits from now on (a community node's admitted
    /// members). The relay reads the set at each reservation, so this writes it directly
    /// rather than through the event loop.
    pub fn set_relay_members(&self, peers: impl IntoIterator<Item = PeerId>) {
        self.relay_members.set(peers);
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn send(&self, c: Command) -> Result<(), NetError> {
        self.tx.send(c).await.map_err(|_| NetError::Stopped)
    }

    /// Subscribes to a market's topic and reconciles it with peers from now on.
    pub async fn follow(&self, market: PublicKey) -> Result<(), NetError> {
        self.send(Command::Follow(market)).await
    }

    /// Gossips a (locally stored, valid) attestation to its market.
    pub async fn publish(&self, market: PublicKey, envelope: Vec<u8>) -> Result<(), NetError> {
        self.send(Command::Publish { market, envelope }).await
    }

    /// Dials an address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.send(Command::Dial(addr)).await
    }

    /// Drops and refuses a peer until [`Network::unblock`].
    pub async fn block(&self, peer: PeerId) -> Result<(), NetError> {
        self.send(Command::Block(peer)).await
    }

    /// Accepts a peer again (also lifts a ban).
    pub async fn unblock(&self, peer: PeerId) -> Result<(), NetError> {
        self.send(Command::Unblock(peer)).await
    }

    /// Starts an anti-entropy session with a connected peer now.
    pub async fn sync_with(&self, peer: PeerId) -> Result<(), NetError> {
        self.send(Command::Sync(peer)).await
    }

    /// Relays to reserve a slot on before any other when this node is behind NAT, in this
    /// order (a community member's community node), each address ending with its relay's
    /// `/p2p/<peer id>` (several may name one relay; one without is left out, and logged);
    /// replaces the earlier list. The network dials them now, and again while it is
    /// connected to none of them (`policy::Output::RedialPreferred`).
    pub async fn prefer_relays(&self, relays: Vec<Multiaddr>) -> Result<(), NetError> {
        self.send(Command::PreferRelays(relays)).await
    }

    /// The network's state.
    pub async fn info(&self) -> Result<NetInfo, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Info(reply)).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Stops the event loop (connections close).
    pub async fn shutdown(&self) {
        let _ = self.send(Command::Shutdown).await;
    }
}
