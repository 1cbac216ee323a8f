//! Who the node is and how it is doing.

use axum::extract::State;
use serde_json::{json, Value};

use crate::error::{ApiError, AppJson};
use crate::state::AppState;

/// `GET /v1/id`
pub async fn id(State(s): State<AppState>) -> AppJson<Value> {
    AppJson(json!({
        "public_key": s.identities.default_key().to_hex(),
        "identities": s.identities.all().iter().map(|k| k.to_hex()).collect::<Vec<_>>(),
    }))
}

/// `GET /v1/status`
pub async fn status(State(s): State<AppState>) -> Result<AppJson<Value>, ApiError> {
    let store = s.store.clone();
    let (valid, markets) = tokio::task::spawn_blocking(move || {
        Ok::<_, passalong_store::StoreError>((store.valid_count()?, store.markets()?.len()))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(AppJson(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "public_key": s.identities.default_key().to_hex(),
        "valid_attestations": valid,
        "markets": markets,
        "data_dir": s.data_dir.display().to_string(),
        "api": s.base_url.trim_start_matches("http://"),
    })))
}
