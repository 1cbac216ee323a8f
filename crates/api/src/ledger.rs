//! Ledgers, equivocations and disputes of a seller.

use axum::extract::State;
use passalong_protocol::Ledger;
use serde_json::{json, Value};

use crate::error::{ApiError, AppJson, AppQuery};
use crate::offers::SellerQuery;
use crate::state::AppState;

/// The JSON form of a ledger (also what `ledger --json` prints).
pub fn ledger_json(l: &Ledger) -> Value {
    json!({
        "seller": l.seller.map(|s| s.to_hex()),
        "root": hex::encode(l.root()),
        "entries": l.entries.iter().map(|e| json!({
            "currency": e.currency.as_str(), "participant": e.participant.to_hex(),
            "earned": e.earned, "refunded": e.refunded, "settled": e.settled, "owed": e.owed,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /v1/ledger`
pub async fn ledger(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<SellerQuery>,
) -> Result<AppJson<Value>, ApiError> {
    let seller = q.seller(&s)?;
    let store = s.store.clone();
    let l = tokio::task::spawn_blocking(move || store.ledger(&seller))
        .await
        .map_err(ApiError::internal)??;
    Ok(AppJson(ledger_json(&l)))
}

/// `GET /v1/equivocations`
pub async fn equivocations(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<SellerQuery>,
) -> Result<AppJson<Value>, ApiError> {
    let seller = q.seller(&s)?;
    let v = s.store.equivocations(&seller)?;
    Ok(AppJson(json!({"equivocations": v.iter().map(|e| json!({
        "counted": e.counted.to_hex(), "other": e.other.to_hex(),
    })).collect::<Vec<_>>()})))
}

/// `GET /v1/disputes`
pub async fn disputes(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<SellerQuery>,
) -> Result<AppJson<Value>, ApiError> {
    let seller = q.seller(&s)?;
    let v = s.store.disputes(&seller)?;
    Ok(AppJson(json!({"disputes": v.iter().map(|d| json!({
        "claim": d.claim.to_hex(), "receipt": d.receipt.to_hex(), "buyer_matches": d.buyer_matches,
        "claimed_via": d.claimed_via.map(|i| i.to_hex()), "recorded_via": d.recorded_via.map(|i| i.to_hex()),
    })).collect::<Vec<_>>()})))
}
