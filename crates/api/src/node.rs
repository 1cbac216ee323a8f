//! Who the node is and how it is doing.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, AppJson};
use crate::network::NetStatus;
use crate::state::AppState;

/// `GET /v1/id` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct IdInfo {
    /// The node's default identity, hex.
    pub public_key: String,
    /// Its libp2p peer id (`null` when the network is off).
    pub peer_id: Option<String>,
    /// Every identity the node holds, hex.
    pub identities: Vec<String>,
}

/// `GET /v1/status` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The node's release.
    pub version: String,
    /// The node's default identity, hex.
    pub public_key: String,
    /// Valid attestations in the store.
    pub valid_attestations: u64,
    /// Store checkpoints since start.
    pub store_checkpoints: u64,
    /// Markets the store holds.
    pub markets: usize,
    /// The data directory.
    pub data_dir: String,
    /// The API's address (`127.0.0.1:PORT`).
    pub api: String,
    /// The network (`null` when it is off).
    pub network: Option<NetSummary>,
}

/// The network in `GET /v1/status`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NetSummary {
    /// This node's peer id.
    pub peer_id: String,
    /// Addresses it listens on.
    pub listen: Vec<String>,
    /// `unknown`, `public` or `private`.
    pub reachability: String,
    /// Addresses confirmed reachable from outside.
    pub external: Vec<String>,
    /// Relays holding a reservation for it.
    pub relays: Vec<String>,
    /// Connected peers.
    pub peers: usize,
    /// Markets followed.
    pub markets_followed: usize,
    /// Anti-entropy.
    pub sync: SyncSummary,
    /// Gossip.
    pub gossip: GossipSummary,
}

/// Anti-entropy in `GET /v1/status`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SyncSummary {
    /// Sessions running now.
    pub running: usize,
    /// Finished sessions.
    pub sessions: u64,
    /// Failed sessions.
    pub failed: u64,
    /// Attestations fetched.
    pub fetched: u64,
    /// When the last session ended (`null`: never).
    pub last_ms: Option<u64>,
}

/// Gossip in `GET /v1/status`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GossipSummary {
    /// Messages received.
    pub received: u64,
    /// Received, valid and new.
    pub accepted: u64,
    /// Received and invalid.
    pub rejected: u64,
    /// Published by this node.
    pub published: u64,
}

impl NetSummary {
    /// The summary of `i`.
    pub fn of(i: &NetStatus) -> NetSummary {
        NetSummary {
            peer_id: i.peer_id.clone(),
            listen: i.listen.clone(),
            reachability: i.reachability.clone(),
            external: i.external.clone(),
            relays: i.relays.clone(),
            peers: i.peers.len(),
            markets_followed: i.markets.len(),
            sync: SyncSummary {
                running: i.stats.syncing,
                sessions: i.stats.syncs_done,
                failed: i.stats.syncs_failed,
                fetched: i.stats.sync_fetched,
                last_ms: (i.stats.last_sync_ms > 0).then_some(i.stats.last_sync_ms),
            },
            gossip: GossipSummary {
                received: i.stats.gossip_received,
                accepted: i.stats.gossip_accepted,
                rejected: i.stats.gossip_rejected,
                published: i.stats.published,
            },
        }
    }
}

/// `GET /v1/id`
pub async fn id(State(s): State<AppState>) -> AppJson<IdInfo> {
    AppJson(IdInfo {
        public_key: s.identities.default_key().to_hex(),
        peer_id: s.net.as_ref().map(|n| n.peer_id()),
        identities: s.identities.all().iter().map(|k| k.to_hex()).collect(),
    })
}

/// `GET /v1/status`
pub async fn status(State(s): State<AppState>) -> Result<AppJson<Status>, ApiError> {
    let (valid, markets, checkpoints) = s.store_counts().await?;
    let network = match &s.net {
        None => None,
        Some(net) => Some(NetSummary::of(
            &net.info().await.map_err(ApiError::internal)?,
        )),
    };
    Ok(AppJson(Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        public_key: s.identities.default_key().to_hex(),
        valid_attestations: valid,
        store_checkpoints: checkpoints,
        markets,
        data_dir: s.data_dir.display().to_string(),
        api: s.base_url.trim_start_matches("http://").to_string(),
        network,
    }))
}
