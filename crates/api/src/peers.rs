//! The network as the API shows it: peers, followed markets, and an operator's block list.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, AppJson};
use crate::identity::parse_key;
use crate::network::{NetStatus, NetworkError};
use crate::state::{AppState, WriteAuth};

/// `GET /v1/peers`: this node's peer id, addresses, connected peers and sync counters.
pub async fn list(State(s): State<AppState>) -> Result<AppJson<NetStatus>, ApiError> {
    Ok(AppJson(s.net()?.info().await.map_err(ApiError::internal)?))
}

/// A peer to block or unblock.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerBody {
    /// Its libp2p peer id.
    pub peer: String,
}

/// `POST /v1/peers/block`: drop a peer and refuse it until unblocked.
pub async fn block(
    _: WriteAuth,
    State(s): State<AppState>,
    AppJson(b): AppJson<PeerBody>,
) -> Result<AppJson<Value>, ApiError> {
    set_blocked(&s, &b.peer, true).await
}

/// `POST /v1/peers/unblock`: accept a blocked (or banned) peer again.
pub async fn unblock(
    _: WriteAuth,
    State(s): State<AppState>,
    AppJson(b): AppJson<PeerBody>,
) -> Result<AppJson<Value>, ApiError> {
    set_blocked(&s, &b.peer, false).await
}

async fn set_blocked(s: &AppState, peer: &str, block: bool) -> Result<AppJson<Value>, ApiError> {
    let net = s.net()?;
    let done = if block {
        net.block(peer).await
    } else {
        net.unblock(peer).await
    };
    done.map_err(|e| match e {
        NetworkError::BadPeer(_) => ApiError::bad_request(format!("peer: {e}")),
        NetworkError::Failed(_) => ApiError::internal(e),
    })?;
    let key = if block { "blocked" } else { "unblocked" };
    Ok(AppJson(json!({ key: peer })))
}

/// A market to follow.
#[derive(Deserialize)]
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
) -> Result<AppJson<Value>, ApiError> {
    let market = parse_key(&b.market, "market")?;
    s.with_store(move |store| store.follow(&market)).await?;
    if let Some(net) = &s.net {
        net.follow(market).await.map_err(ApiError::internal)?;
    }
    Ok(AppJson(
        json!({ "market": market.to_hex(), "following": true }),
    ))
}

/// `GET /v1/markets`: the markets this node follows, with each one's attestation count and
/// ledger root.
pub async fn markets(State(s): State<AppState>) -> Result<AppJson<Value>, ApiError> {
    let list = s
        .with_store(|store| {
            let mut out = Vec::new();
            for m in store.followed()? {
                let n = store.market(&m)?.len();
                let root = store.ledger(&m)?.root();
                out.push(json!({
                    "market": m.to_hex(),
                    "attestations": n,
                    "root": hex::encode(root),
                }));
            }
            Ok::<_, passalong_store::StoreError>(out)
        })
        .await?;
    Ok(AppJson(json!({ "markets": list })))
}
