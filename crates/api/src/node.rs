//! Who the node is and how it is doing.

use axum::extract::State;
use serde_json::{json, Value};

use crate::error::{ApiError, AppJson};
use crate::state::AppState;

/// `GET /v1/id`
pub async fn id(State(s): State<AppState>) -> AppJson<Value> {
    AppJson(json!({
        "public_key": s.identities.default_key().to_hex(),
        "peer_id": s.net.as_ref().map(|n| n.peer_id()),
        "identities": s.identities.all().iter().map(|k| k.to_hex()).collect::<Vec<_>>(),
    }))
}

/// `GET /v1/status`
pub async fn status(State(s): State<AppState>) -> Result<AppJson<Value>, ApiError> {
    let (valid, markets, checkpoints) = s.store_counts().await?;
    let network = match &s.net {
        None => Value::Null,
        Some(net) => {
            let i = net.info().await.map_err(ApiError::internal)?;
            json!({
                "peer_id": i.peer_id,
                "listen": i.listen,
                "reachability": i.reachability,
                "external": i.external,
                "relays": i.relays,
                "peers": i.peers.len(),
                "markets_followed": i.markets.len(),
                "sync": {
                    "running": i.stats.syncing,
                    "sessions": i.stats.syncs_done,
                    "failed": i.stats.syncs_failed,
                    "fetched": i.stats.sync_fetched,
                    "last_ms": (i.stats.last_sync_ms > 0).then_some(i.stats.last_sync_ms),
                },
                "gossip": {
                    "received": i.stats.gossip_received,
                    "accepted": i.stats.gossip_accepted,
                    "rejected": i.stats.gossip_rejected,
                    "published": i.stats.published,
                },
            })
        }
    };
    Ok(AppJson(json!({
        "network": network,
        "version": env!("CARGO_PKG_VERSION"),
        "public_key": s.identities.default_key().to_hex(),
        "valid_attestations": valid,
        "store_checkpoints": checkpoints,
        "markets": markets,
        "data_dir": s.data_dir.display().to_string(),
        "api": s.base_url.trim_start_matches("http://"),
    })))
}
