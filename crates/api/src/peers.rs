//! The network as the API shows it: peers, followed markets, and an operator's block list.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, AppJson};
use crate::identity::parse_key;
use crate::network::{NetStatus, NetworkError};
use crate::state::{AppState, WriteAuth};

/// `GET /v1/peers`: this node's peer id, addresses, connected peers and sync counters.
pub async fn list(State(s): State<AppState>) -> Result<AppJson<NetStatus>, ApiError> {
    Ok(AppJson(s.net()?.info().await.map_err(ApiError::internal)?))
}

/// A peer to block or unblock.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PeerBody {
    /// Its libp2p peer id.
    pub peer: String,
}

/// `POST /v1/peers/block` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The peer blocked.
    pub blocked: String,
}

/// `POST /v1/peers/unblock` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Unblocked {
    /// The peer accepted again.
    pub unblocked: String,
}

/// `POST /v1/markets/follow` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Following {
    /// The market, hex.
    pub market: String,
    /// Always true.
    pub following: bool,
}

/// A followed market of `GET /v1/markets`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MarketInfo {
    /// The market (its seller's or connector's key), hex.
    pub market: String,
    /// Its valid attestations.
    pub attestations: usize,
    /// Its ledger root, hex.
    pub root: String,
}

/// `GET /v1/markets` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MarketList {
    /// The markets followed.
    pub markets: Vec<MarketInfo>,
}

/// `POST /v1/peers/block`: drop a peer and refuse it until unblocked.
pub async fn block(
    _: WriteAuth,
    State(s): State<AppState>,
    AppJson(b): AppJson<PeerBody>,
) -> Result<AppJson<Blocked>, ApiError> {
    set_blocked(&s, &b.peer, true).await?;
    Ok(AppJson(Blocked { blocked: b.peer }))
}

/// `POST /v1/peers/unblock`: accept a blocked (or banned) peer again.
pub async fn unblock(
    _: WriteAuth,
    State(s): State<AppState>,
    AppJson(b): AppJson<PeerBody>,
) -> Result<AppJson<Unblocked>, ApiError> {
    set_blocked(&s, &b.peer, false).await?;
    Ok(AppJson(Unblocked { unblocked: b.peer }))
}

async fn set_blocked(s: &AppState, peer: &str, block: bool) -> Result<(), ApiError> {
    let net = s.net()?;
    let done = if block {
        net.block(peer).await
    } else {
        net.unblock(peer).await
    };
    done.map_err(|e| match e {
        NetworkError::BadPeer(_) => ApiError::bad_request(format!("peer: {e}")),
        NetworkError::Failed(_) => ApiError::internal(e),
    })
}

/// A market to follow.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FollowBody {
    /// The seller's (or connector's) public key, hex.
    pub market: String,
}

/// `POST /v1/markets/follow`: gossip and reconcile a market from now on (kept across
/// restarts).
pub async fn follow(
    _: WriteAuth,
    State(s): State<AppState>,
    AppJson(b): AppJson<FollowBody>,
) -> Result<AppJson<Following>, ApiError> {
    let market = parse_key(&b.market, "market")?;
    s.with_store(move |store| store.follow(&market)).await?;
    if let Some(net) = &s.net {
        net.follow(market).await.map_err(ApiError::internal)?;
    }
    Ok(AppJson(Following {
        market: market.to_hex(),
        following: true,
    }))
}

/// `GET /v1/markets`: the markets this node follows, with each one's attestation count and
/// ledger root.
pub async fn markets(State(s): State<AppState>) -> Result<AppJson<MarketList>, ApiError> {
    let list = s
        .with_store(|store| {
            let mut out = Vec::new();
            for m in store.followed()? {
                // Counts and the cached summary: nothing here reads a whole market.
                let mut n = 0u64;
                for k in passalong_protocol::attestation::Kind::ALL {
                    n += store.market_count(&m, k)?;
                }
                let (_, root) = store.ledger_summary(&m)?;
                out.push(MarketInfo {
                    market: m.to_hex(),
                    attestations: n as usize,
                    root: hex::encode(root),
                });
            }
            Ok::<_, passalong_store::StoreError>(out)
        })
        .await?;
    Ok(AppJson(MarketList { markets: list }))
}
