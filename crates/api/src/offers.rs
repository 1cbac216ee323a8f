//! Publishing and listing offers.

use axum::extract::State;
use axum::http::StatusCode;
use passalong_protocol::attestation::{Body, Offer};
use passalong_protocol::{Kind, Policy, Rule};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, AppJson, AppQuery};
use crate::identity::{parse_currency, parse_key};
use crate::state::{AppState, WriteAuth};
use crate::writer::now_ms;

/// Thirty days, the default referral window.
pub const DEFAULT_WINDOW_MS: u64 = 30 * 86_400_000;

/// `POST /v1/offers` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOffer {
    title: String,
    price_minor: u64,
    currency: String,
    pool_bps: u16,
    rule: String,
    #[serde(default)]
    connector_bps: u16,
    max_depth: Option<u8>,
    window_ms: Option<u64>,
    #[serde(default)]
    require_purchase: bool,
    #[serde(default)]
    valid_from_ms: u64,
    valid_until_ms: Option<u64>,
    content_hash: Option<String>,
    #[serde(rename = "as")]
    as_: Option<String>,
}

/// `POST /v1/offers`
pub async fn publish(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppJson(req): AppJson<NewOffer>,
) -> Result<(StatusCode, AppJson<Value>), ApiError> {
    let keys = s.identities.signer(req.as_.as_deref())?;
    let rule = Rule::parse(&req.rule).ok_or_else(|| {
        ApiError::bad_request(format!(
            "rule {:?}: expected direct, equal, geometric:R_BPS (0..=9999) or split-proof",
            req.rule
        ))
    })?;
    let currency = parse_currency(&req.currency)?;
    let content_hash = match &req.content_hash {
        None => None,
        Some(h) => Some(
            passalong_protocol::Id::from_hex(h)
                .map_err(|_| ApiError::bad_request("content_hash: expected 64 hex digits"))?
                .0,
        ),
    };
    let body = Body::Offer(Offer {
        seller: keys.public(),
        title: req.title,
        content_hash,
        price_minor: req.price_minor,
        currency,
        policy: Policy {
            pool_bps: req.pool_bps,
            connector_bps: req.connector_bps,
            rule,
            max_depth: req.max_depth.unwrap_or(16),
            window_ms: req.window_ms.unwrap_or(DEFAULT_WINDOW_MS),
            require_purchase: req.require_purchase,
        },
        valid_from_ms: req.valid_from_ms,
        valid_until_ms: req.valid_until_ms,
        created_at_ms: now_ms(),
        checkout_url: None,
    });
    let att = s.sign_and_store(body, keys).await?;
    let link = s.link_of(&att.id)?;
    Ok((
        StatusCode::CREATED,
        AppJson(json!({"id": att.id.to_hex(), "link": link.token(), "url": link.url(&s.base_url)})),
    ))
}

/// `?seller=HEX`
#[derive(Deserialize)]
pub struct SellerQuery {
    seller: Option<String>,
}

impl SellerQuery {
    /// The seller asked for, or the node's identity.
    pub fn seller(&self, s: &AppState) -> Result<passalong_protocol::PublicKey, ApiError> {
        match &self.seller {
            Some(h) => parse_key(h, "seller"),
            None => Ok(s.identities.default_key()),
        }
    }
}

/// `GET /v1/offers`
pub async fn list(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<SellerQuery>,
) -> Result<AppJson<Value>, ApiError> {
    let seller = q.seller(&s)?;
    let offers = s.store.market_of_kind(&seller, Kind::Offer)?;
    let mut out = Vec::new();
    for a in offers {
        let Body::Offer(o) = &a.body else { continue };
        let link = s.link_of(&a.id)?;
        out.push(json!({
            "id": a.id.to_hex(), "seller": o.seller.to_hex(), "title": o.title,
            "price_minor": o.price_minor, "currency": o.currency.as_str(),
            "rule": o.policy.rule.to_string(), "pool_bps": o.policy.pool_bps,
            "connector_bps": o.policy.connector_bps, "max_depth": o.policy.max_depth,
            "window_ms": o.policy.window_ms, "require_purchase": o.policy.require_purchase,
            "valid_from_ms": o.valid_from_ms, "valid_until_ms": o.valid_until_ms,
            "created_at_ms": o.created_at_ms, "link": link.token(),
        }));
    }
    Ok(AppJson(json!({ "offers": out })))
}
