//! Passing an offer along: import the chain a link carries, sign a referral, hand out a link.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use passalong_protocol::attestation::{Body, Referral};
use passalong_protocol::link::ShareLink;
use passalong_protocol::Id;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, AppJson};
use crate::identity::{parse_id, parse_key};
use crate::state::{AppState, WriteAuth};
use crate::writer::now_ms;

/// Where a referral or a sale starts from: a share link, or the id of a stored offer or
/// referral. Returns (offer, parent referral, envelopes newly imported).
pub async fn resolve(
    s: &AppState,
    from: &str,
    field: &str,
) -> Result<(Id, Option<Id>, usize), ApiError> {
    let from = from.trim();
    // Ids are hex digits, so "pl" only occurs in links (or in garbage the link parser names).
    if from.contains("pl") {
        let link =
            ShareLink::parse(from).map_err(|e| ApiError::bad_request(format!("{field}: {e}")))?;
        let imported = s.import_link(&link).await?;
        return Ok((link.offer(), link.referral(), imported));
    }
    let id = parse_id(from, field).map_err(|_| {
        ApiError::bad_request(format!(
            "{field}: expected a share link (pl1.…) or an offer or referral id"
        ))
    })?;
    let a = s.attestation(&id, "offer or referral")?;
    match &a.body {
        Body::Offer(_) => Ok((id, None, 0)),
        Body::Referral(r) => Ok((r.offer, Some(id), 0)),
        _ => Err(ApiError::bad_request(format!(
            "{field}: {id} is a {}, not an offer or a referral",
            a.kind().name()
        ))),
    }
}

/// `POST /v1/referrals` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReferral {
    from: String,
    to: Option<String>,
    community: Option<String>,
    #[serde(rename = "as")]
    as_: Option<String>,
}

/// `POST /v1/referrals`
pub async fn refer(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppJson(req): AppJson<NewReferral>,
) -> Result<(StatusCode, AppJson<Value>), ApiError> {
    let keys = s.identities.signer(req.as_.as_deref())?;
    let recipient = req.to.as_deref().map(|h| parse_key(h, "to")).transpose()?;
    let community = req
        .community
        .as_deref()
        .map(|h| parse_id(h, "community"))
        .transpose()?;
    let (offer, parent, imported) = resolve(&s, &req.from, "from").await?;
    // Never date a referral before its parent (a skewed clock would make it invalid).
    let parent_time = match parent {
        Some(p) => s.attestation(&p, "referral")?.body.created_at_ms(),
        None => 0,
    };
    let att = s
        .sign_and_store(
            Body::Referral(Referral {
                referrer: keys.public(),
                offer,
                parent,
                recipient,
                community,
                created_at_ms: now_ms().max(parent_time),
            }),
            keys,
        )
        .await?;
    let link = s.link_of(&att.id)?;
    Ok((
        StatusCode::CREATED,
        AppJson(json!({
            "id": att.id.to_hex(), "link": link.token(), "url": link.url(&s.base_url),
            "imported": imported,
        })),
    ))
}

/// `GET /l/<token>`: what a share link carries (the dashboard will render it).
pub async fn show_link(Path(token): Path<String>) -> Result<AppJson<Value>, ApiError> {
    let link = ShareLink::parse(&token).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Body::Offer(o) = &link.attestations[0].body else {
        return Err(ApiError::bad_request(
            "the link does not start with an offer",
        ));
    };
    Ok(AppJson(json!({
        "offer": link.offer().to_hex(),
        "referral": link.referral().map(|r| r.to_hex()),
        "hops": link.attestations.len() - 1,
        "title": o.title,
        "seller": o.seller.to_hex(),
    })))
}
