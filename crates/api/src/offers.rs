//! Publishing and listing offers.

use axum::extract::State;
use axum::http::StatusCode;
use passalong_protocol::attestation::{Body, Offer};
use passalong_protocol::link::ShareLink;
use passalong_protocol::{Kind, Policy, PublicKey, Rule};
use serde::{Deserialize, Serialize};

use crate::auth::Actor;
use crate::error::{ApiError, AppJson, AppQuery};
use crate::identity::{parse_currency, parse_key};
use crate::signer::Signer;
use crate::state::AppState;
use crate::writer::now_ms;

/// Thirty days, the default referral window.
pub const DEFAULT_WINDOW_MS: u64 = 30 * 86_400_000;

/// `POST /v1/offers` body; also what the dashboard's publish form fills in and what
/// `passalong offer publish` sends.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NewOffer {
    /// What is sold.
    pub title: String,
    /// Price, minor units.
    pub price_minor: u64,
    /// Currency code.
    pub currency: String,
    /// Share of each sale for the referral chain, basis points.
    pub pool_bps: u16,
    /// `direct`, `equal`, `geometric:R_BPS` or `split-proof`.
    pub rule: String,
    /// Share for the connector of hop 1's community, basis points.
    #[serde(default)]
    pub connector_bps: u16,
    /// Hops paid (default 16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u8>,
    /// How long a referral counts before a sale (default 30 days).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    /// Only referrers who bought it earn.
    #[serde(default)]
    pub require_purchase: bool,
    /// Receipts before this time are invalid.
    #[serde(default)]
    pub valid_from_ms: u64,
    /// Receipts from this time on are invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until_ms: Option<u64>,
    /// Hash of the item's content, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// Where a friend buys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout_url: Option<String>,
    /// Sign as this identity (hex) instead of the default.
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_: Option<String>,
}

/// A signed and stored offer (or referral) with its share link (`POST /v1/offers`' answer).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Its id.
    pub id: String,
    /// Its share link (text token).
    pub link: String,
    /// The link inside a URL of this node.
    pub url: String,
    /// The short link (`pl1s.`: market and id, constant size, for QR codes).
    pub short: String,
    /// The short link inside a URL of this node.
    pub short_url: String,
}

impl NewOffer {
    /// The offer `seller` would sign at `now_ms`, defaults filled in. The protocol's checks
    /// (limits, URL) run when it is signed and stored.
    pub fn offer(&self, seller: PublicKey, now_ms: u64) -> Result<Offer, ApiError> {
        let rule = Rule::parse(&self.rule).ok_or_else(|| {
            ApiError::bad_request(format!(
                "rule {:?}: expected direct, equal, geometric:R_BPS (0..=9999) or split-proof",
                self.rule
            ))
        })?;
        let currency = parse_currency(&self.currency)?;
        let content_hash = match &self.content_hash {
            None => None,
            Some(h) => Some(
                passalong_protocol::Id::from_hex(h)
                    .map_err(|_| ApiError::bad_request("content_hash: expected 64 hex digits"))?
                    .0,
            ),
        };
        Ok(Offer {
            seller,
            title: self.title.clone(),
            content_hash,
            price_minor: self.price_minor,
            currency,
            policy: Policy {
                pool_bps: self.pool_bps,
                connector_bps: self.connector_bps,
                rule,
                max_depth: self.max_depth.unwrap_or(16),
                window_ms: self.window_ms.unwrap_or(DEFAULT_WINDOW_MS),
                require_purchase: self.require_purchase,
            },
            valid_from_ms: self.valid_from_ms,
            valid_until_ms: self.valid_until_ms,
            created_at_ms: now_ms,
            checkout_url: self.checkout_url.clone().filter(|u| !u.trim().is_empty()),
        })
    }
}

/// Signs and stores an offer as `keys`.
pub async fn publish_offer(
    s: &AppState,
    keys: impl Into<Signer<'_>>,
    req: &NewOffer,
) -> Result<Published, ApiError> {
    let keys = keys.into();
    let body = Body::Offer(req.offer(keys.public(), now_ms())?);
    let att = s.sign_and_store(body, keys).await?;
    s.published(&att.id).await
}

/// `POST /v1/offers`
pub async fn publish(
    State(s): State<AppState>,
    actor: Actor,
    AppJson(req): AppJson<NewOffer>,
) -> Result<(StatusCode, AppJson<Published>), ApiError> {
    let keys = actor.signer(&s, req.as_.as_deref())?;
    Ok((
        StatusCode::CREATED,
        AppJson(publish_offer(&s, keys, &req).await?),
    ))
}

/// `?seller=HEX`
#[derive(Deserialize)]
pub struct SellerQuery {
    seller: Option<String>,
}

/// One offer of `GET /v1/offers`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OfferInfo {
    /// Its id, hex.
    pub id: String,
    /// The seller's key, hex.
    pub seller: String,
    /// What is sold.
    pub title: String,
    /// Price, minor units.
    pub price_minor: u64,
    /// Currency code.
    pub currency: String,
    /// The payout rule (`direct`, `equal`, `geometric:R_BPS`, `split-proof`).
    pub rule: String,
    /// Share of each sale for the referral chain, basis points.
    pub pool_bps: u16,
    /// Share for the connector of hop 1's community, basis points.
    pub connector_bps: u16,
    /// Hops paid.
    pub max_depth: u8,
    /// How long a referral counts before a sale.
    pub window_ms: u64,
    /// Only referrers who bought it earn.
    pub require_purchase: bool,
    /// Receipts before this time are invalid.
    pub valid_from_ms: u64,
    /// Receipts from this time on are invalid (`null`: no end).
    pub valid_until_ms: Option<u64>,
    /// When it was signed.
    pub created_at_ms: u64,
    /// Where a friend buys (`null`: nowhere given).
    pub checkout_url: Option<String>,
    /// Its share link (text token).
    pub link: String,
}

impl OfferInfo {
    /// The offer `id` with its share link.
    pub fn of(id: &passalong_protocol::Id, o: &Offer, link: &ShareLink) -> OfferInfo {
        OfferInfo {
            id: id.to_hex(),
            seller: o.seller.to_hex(),
            title: o.title.clone(),
            price_minor: o.price_minor,
            currency: o.currency.as_str().to_string(),
            rule: o.policy.rule.to_string(),
            pool_bps: o.policy.pool_bps,
            connector_bps: o.policy.connector_bps,
            max_depth: o.policy.max_depth,
            window_ms: o.policy.window_ms,
            require_purchase: o.policy.require_purchase,
            valid_from_ms: o.valid_from_ms,
            valid_until_ms: o.valid_until_ms,
            created_at_ms: o.created_at_ms,
            checkout_url: o.checkout_url.clone(),
            link: link.token(),
        }
    }
}

/// `GET /v1/offers` answer: a seller's offers, oldest first.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct OfferList {
    /// The offers.
    pub offers: Vec<OfferInfo>,
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
) -> Result<AppJson<OfferList>, ApiError> {
    let seller = q.seller(&s)?;
    let offers = s
        .with_store(move |store| {
            store
                .market_of_kind(&seller, Kind::Offer)?
                .into_iter()
                .map(|a| Ok((store.chain(&a.id)?, a)))
                .collect::<Result<Vec<_>, passalong_store::StoreError>>()
        })
        .await?;
    let mut out = Vec::new();
    for (chain, a) in offers {
        let Body::Offer(o) = &a.body else { continue };
        let link = ShareLink::new(chain).map_err(ApiError::internal)?;
        out.push(OfferInfo::of(&a.id, o, &link));
    }
    Ok(AppJson(OfferList { offers: out }))
}
