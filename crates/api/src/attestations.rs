//! Raw attestations in and out: import, look up, export a market as a bundle.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use passalong_protocol::{bundle, Kind};
use passalong_store::{Ack, Status};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, AppJson, AppQuery};
use crate::identity::{parse_id, parse_key};
use crate::state::{AppState, WriteAuth};

/// What a store says of an attestation beyond its status: the parents it waits for, when it
/// counts, or why it is invalid (each field only for its status).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusDetail {
    /// `pending`: the ids it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
    /// `held`: when it counts (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// `invalid`: the protocol's reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `invalid`: what is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StatusDetail {
    /// The status's name and its detail.
    pub fn of(status: &Status) -> (String, StatusDetail) {
        let mut d = StatusDetail::default();
        match status {
            Status::Valid => {}
            Status::Pending { missing } => {
                d.missing = Some(missing.iter().map(|m| m.to_hex()).collect());
            }
            Status::Held { until_ms } => d.until_ms = Some(*until_ms),
            Status::Invalid { code, message } => {
                d.reason = Some(code.clone());
                d.message = Some(message.clone());
            }
        }
        (status.name().to_string(), d)
    }
}

/// What the store answered for one envelope: `{"id", "status", "duplicate", …detail}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AckInfo {
    /// The attestation's id, hex.
    pub id: String,
    /// `valid`, `pending`, `held` or `invalid`.
    pub status: String,
    /// It was already held.
    pub duplicate: bool,
    /// What the status says beyond its name.
    #[serde(flatten)]
    pub detail: StatusDetail,
}

impl AckInfo {
    /// The JSON form of an ack.
    pub fn of(a: &Ack) -> AckInfo {
        let (status, detail) = StatusDetail::of(&a.status);
        AckInfo {
            id: a.id.to_hex(),
            status,
            duplicate: a.duplicate,
            detail,
        }
    }
}

/// `POST /v1/attestations` answer: one ack per envelope in order, then the unblocked ones.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Acks {
    /// The acks.
    pub acks: Vec<AckInfo>,
}

/// `GET /v1/attestations/<id>` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AttestationInfo {
    /// Its id, hex.
    pub id: String,
    /// Its kind (`offer`, `referral`, …; `null` if its envelope is not held).
    pub kind: Option<String>,
    /// `valid`, `pending`, `held` or `invalid`.
    pub status: String,
    /// What the status says beyond its name.
    #[serde(flatten)]
    pub detail: StatusDetail,
    /// Its signed envelope, hex (`null` if not held).
    pub envelope: Option<String>,
}

/// `POST /v1/attestations` body (what `passalong import` sends).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Import {
    /// Signed envelopes, hex.
    pub envelopes: Vec<String>,
}

/// `POST /v1/attestations`
pub async fn import(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppJson(req): AppJson<Import>,
) -> Result<AppJson<Acks>, ApiError> {
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
    Ok(AppJson(Acks {
        acks: acks.iter().map(AckInfo::of).collect(),
    }))
}

/// `GET /v1/attestations/<id>`
pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<AppJson<AttestationInfo>, ApiError> {
    let id = parse_id(&id, "id")?;
    let (status, envelope) = s
        .with_store(move |store| {
            Ok::<_, passalong_store::StoreError>((store.status(&id)?, store.envelope(&id)?))
        })
        .await?;
    let status =
        status.ok_or_else(|| ApiError::not_found(format!("no attestation {id} on this node")))?;
    let (status, detail) = StatusDetail::of(&status);
    Ok(AppJson(AttestationInfo {
        id: id.to_hex(),
        kind: envelope
            .as_ref()
            .and_then(|e| e.get(1).and_then(|&k| Kind::from_byte(k)))
            .map(|k| k.name().to_string()),
        status,
        detail,
        envelope: envelope.map(hex::encode),
    }))
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
