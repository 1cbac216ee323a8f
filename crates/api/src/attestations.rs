//! Raw attestations in and out: import, look up, export a market as a bundle.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use passalong_protocol::{bundle, Kind};
use passalong_store::{Ack, Status};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, AppJson, AppQuery};
use crate::identity::{parse_id, parse_key};
use crate::state::{AppState, WriteAuth};

/// The JSON form of an ack.
pub fn ack_json(a: &Ack) -> Value {
    let mut v = json!({"id": a.id.to_hex(), "status": a.status.name(), "duplicate": a.duplicate});
    match &a.status {
        Status::Valid => {}
        Status::Pending { missing } => {
            v["missing"] = missing
                .iter()
                .map(|m| m.to_hex())
                .collect::<Vec<_>>()
                .into();
        }
        Status::Held { until_ms } => v["until_ms"] = (*until_ms).into(),
        Status::Invalid { code, message } => {
            v["reason"] = code.clone().into();
            v["message"] = message.clone().into();
        }
    }
    v
}

/// `POST /v1/attestations` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Import {
    envelopes: Vec<String>,
}

/// `POST /v1/attestations`
pub async fn import(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppJson(req): AppJson<Import>,
) -> Result<AppJson<Value>, ApiError> {
    let envelopes = req
        .envelopes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            hex::decode(h.trim())
                .map_err(|e| ApiError::bad_request(format!("envelopes[{i}]: not hex: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let acks = s.ingest(envelopes).await?;
    Ok(AppJson(
        json!({"acks": acks.iter().map(ack_json).collect::<Vec<_>>()}),
    ))
}

/// `GET /v1/attestations/<id>`
pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<AppJson<Value>, ApiError> {
    let id = parse_id(&id, "id")?;
    let (status, envelope) = s
        .with_store(move |store| {
            Ok::<_, passalong_store::StoreError>((store.status(&id)?, store.envelope(&id)?))
        })
        .await?;
    let status =
        status.ok_or_else(|| ApiError::not_found(format!("no attestation {id} on this node")))?;
    let mut v = ack_json(&Ack {
        id,
        status,
        duplicate: false,
    });
    v.as_object_mut().map(|o| o.remove("duplicate"));
    v["kind"] = envelope
        .as_ref()
        .and_then(|e| e.get(1).and_then(|&k| Kind::from_byte(k)))
        .map(Kind::name)
        .into();
    v["envelope"] = envelope.map(hex::encode).into();
    Ok(AppJson(v))
}

/// `?seller=HEX&format=json|binary`
#[derive(Deserialize)]
pub struct ExportQuery {
    seller: String,
    format: Option<String>,
}

/// `GET /v1/export`: the seller's market and every community attestation the node holds
/// (the connector share depends on them), oldest first.
pub async fn export(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let seller = parse_key(&q.seller, "seller")?;
    let binary = match q.format.as_deref() {
        None | Some("json") => false,
        Some("binary") => true,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "format {f:?}: expected json or binary"
            )))
        }
    };
    let store = s.store.clone();
    let envelopes = tokio::task::spawn_blocking(
        move || -> Result<Vec<Vec<u8>>, passalong_store::StoreError> {
            let mut ids: Vec<(u64, passalong_protocol::Id)> = store
                .market(&seller)?
                .into_iter()
                .map(|(t, id, _)| (t, id))
                .collect();
            for m in store.markets()? {
                if m == seller {
                    continue;
                }
                for (t, id, k) in store.market(&m)? {
                    if k == Kind::Community as u8
                        || k == Kind::Membership as u8
                        || k == Kind::MembershipEnd as u8
                    {
                        ids.push((t, id));
                    }
                }
            }
            ids.sort();
            let mut out = Vec::with_capacity(ids.len());
            for (_, id) in ids {
                if let Some(e) = store.envelope(&id)? {
                    out.push(e);
                }
            }
            Ok(out)
        },
    )
    .await
    .map_err(ApiError::internal)??;
    Ok(if binary {
        (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bundle::to_binary(&envelopes),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            bundle::to_json(&envelopes, Some(&seller)),
        )
            .into_response()
    })
}
