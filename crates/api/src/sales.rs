//! The seller's side: receipts, refunds, settlements.

use axum::extract::State;
use axum::http::StatusCode;
use passalong_protocol::attestation::{Body, Receipt, Refund, Settlement};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, AppJson};
use crate::identity::{parse_currency, parse_id, parse_key};
use crate::referrals::resolve;
use crate::state::{AppState, WriteAuth};
use crate::writer::now_ms;

/// `POST /v1/receipts` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReceipt {
    offer: String,
    order: String,
    amount_minor: u64,
    buyer: String,
    via: Option<String>,
    #[serde(rename = "as")]
    as_: Option<String>,
}

/// `POST /v1/receipts`
pub async fn receipt(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppJson(req): AppJson<NewReceipt>,
) -> Result<(StatusCode, AppJson<Value>), ApiError> {
    let keys = s.identities.signer(req.as_.as_deref())?;
    let offer = parse_id(&req.offer, "offer")?;
    let buyer = parse_key(&req.buyer, "buyer")?;
    let (via, imported) = match &req.via {
        None => (None, 0),
        Some(v) => {
            let (via_offer, referral, imported) = resolve(&s, v, "via").await?;
            if via_offer != offer {
                return Err(ApiError::bad_request(format!(
                    "via: the link is for offer {via_offer}, not {offer}"
                )));
            }
            (referral, imported)
        }
    };
    if !matches!(s.attestation(&offer, "offer")?.body, Body::Offer(_)) {
        return Err(ApiError::bad_request(format!(
            "offer: {offer} is not an offer"
        )));
    }
    let att = s
        .sign_and_store(
            Body::Receipt(Receipt {
                seller: keys.public(),
                offer,
                order: req.order,
                amount_minor: req.amount_minor,
                buyer,
                via,
                created_at_ms: now_ms(),
            }),
            keys,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(json!({"id": att.id.to_hex(), "status": "valid", "imported": imported})),
    ))
}

/// `POST /v1/refunds` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    receipt: String,
    #[serde(rename = "as")]
    as_: Option<String>,
}

/// `POST /v1/refunds`
pub async fn refund(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppJson(req): AppJson<NewRefund>,
) -> Result<(StatusCode, AppJson<Value>), ApiError> {
    let keys = s.identities.signer(req.as_.as_deref())?;
    let receipt = parse_id(&req.receipt, "receipt")?;
    s.attestation(&receipt, "receipt")?;
    let att = s
        .sign_and_store(
            Body::Refund(Refund {
                seller: keys.public(),
                receipt,
                created_at_ms: now_ms(),
            }),
            keys,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(json!({"id": att.id.to_hex(), "status": "valid"})),
    ))
}

/// `POST /v1/settlements` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSettlement {
    participant: String,
    amount_minor: u64,
    currency: String,
    reference: String,
    #[serde(default)]
    period_start_ms: u64,
    period_end_ms: Option<u64>,
    #[serde(rename = "as")]
    as_: Option<String>,
}

/// `POST /v1/settlements`
pub async fn settle(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppJson(req): AppJson<NewSettlement>,
) -> Result<(StatusCode, AppJson<Value>), ApiError> {
    let keys = s.identities.signer(req.as_.as_deref())?;
    let participant = parse_key(&req.participant, "participant")?;
    let currency = parse_currency(&req.currency)?;
    let store = s.store.clone();
    let seller = keys.public();
    let root = tokio::task::spawn_blocking(move || store.ledger(&seller))
        .await
        .map_err(ApiError::internal)??
        .root();
    let now = now_ms();
    let att = s
        .sign_and_store(
            Body::Settlement(Settlement {
                seller: keys.public(),
                participant,
                amount_minor: req.amount_minor,
                currency,
                period_start_ms: req.period_start_ms,
                period_end_ms: req.period_end_ms.unwrap_or(now),
                reference: req.reference,
                ledger_root: root,
                created_at_ms: now,
            }),
            keys,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(
            json!({"id": att.id.to_hex(), "status": "valid", "ledger_root": hex::encode(root)}),
        ),
    ))
}
