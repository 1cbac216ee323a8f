//! Passing an offer along: import the chain a link carries, sign a referral, hand out a link.

use axum::extract::State;
use axum::http::StatusCode;
use passalong_protocol::attestation::{Body, Referral};
use passalong_protocol::link::{AnyLink, ShareLink, ShortLink};
use passalong_protocol::Id;
use serde::{Deserialize, Serialize};

use crate::auth::Actor;
use crate::error::{ApiError, AppJson};
use crate::identity::{parse_id, parse_key};
use crate::offers::Published;
use crate::signer::Signer;
use crate::state::AppState;
use crate::writer::now_ms;

/// The full link a pasted link stands for: a full link as it is; a short one (`pl1s.`) from
/// the chain this node holds. A short link whose chain this node does not hold yet makes the
/// node follow its market (anti-entropy then fetches it from peers) and answers 404 saying so.
pub async fn full_link(s: &AppState, text: &str, field: &str) -> Result<ShareLink, ApiError> {
    let bad =
        |e: passalong_protocol::link::LinkError| ApiError::bad_request(format!("{field}: {e}"));
    let short = match AnyLink::parse(text).map_err(bad)? {
        AnyLink::Full(link) => return Ok(link),
        AnyLink::Short(short) => short,
    };
    let store = s.store.clone();
    let id = short.id;
    let held = tokio::task::spawn_blocking(move || store.chain(&id))
        .await
        .map_err(ApiError::internal)??;
    if held.last().map(|a| a.id) == Some(short.id) {
        let link = ShareLink::new(held).map_err(bad)?;
        if ShortLink::of(&link).market != short.market {
            return Err(ApiError::bad_request(format!(
                "{field}: the short link names market {} but its chain is of another seller",
                short.market
            )));
        }
        return Ok(link);
    }
    let (store, market) = (s.store.clone(), short.market);
    tokio::task::spawn_blocking(move || store.follow(&market))
        .await
        .map_err(ApiError::internal)??;
    if let Some(net) = &s.net {
        net.follow(market).await.map_err(ApiError::internal)?;
    }
    Err(ApiError::not_found(format!(
        "{field}: this node does not hold {} yet; it now follows the seller's market and fetches it from its peers: try again in a minute, or use the full link (pl1.…)",
        short.id
    )))
}

/// Where a referral or a sale starts from: a share link (full or short), or the id of a stored
/// offer or referral. Returns (offer, parent referral, envelopes newly imported).
pub async fn resolve(
    s: &AppState,
    from: &str,
    field: &str,
) -> Result<(Id, Option<Id>, usize), ApiError> {
    let from = from.trim();
    // Ids are hex digits, so "pl" only occurs in links (or in garbage the link parser names).
    if from.contains("pl") {
        let link = full_link(s, from, field).await?;
        let imported = s.import_link(&link).await?;
        return Ok((link.offer(), link.referral(), imported));
    }
    let id = parse_id(from, field).map_err(|_| {
        ApiError::bad_request(format!(
            "{field}: expected a share link (pl1.…) or an offer or referral id"
        ))
    })?;
    let a = s.attestation(&id, "offer or referral").await?;
    match &a.body {
        Body::Offer(_) => Ok((id, None, 0)),
        Body::Referral(r) => Ok((r.offer, Some(id), 0)),
        _ => Err(ApiError::bad_request(format!(
            "{field}: {id} is a {}, not an offer or a referral",
            a.kind().name()
        ))),
    }
}

/// `POST /v1/referrals` body; also what the dashboard's pass-along form fills in and what
/// `passalong refer` sends.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NewReferral {
    /// A share link, or the id of a stored offer or referral.
    pub from: String,
    /// Addressed to one friend's key (hex), or open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The community id (hex) whose connector may earn the connector share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    /// Sign as this identity (hex) instead of the default.
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_: Option<String>,
}

/// A signed referral with its link, and how many of the link's attestations were new here
/// (`POST /v1/referrals`' answer).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Referred {
    /// The referral and its link.
    #[serde(flatten)]
    pub published: Published,
    /// Attestations the given link carried that this node did not hold.
    pub imported: usize,
}

/// Signs `keys`' referral of what `req.from` names (importing a link's chain first). A
/// referral that names no community names `default_community` (a hosted member's own).
pub async fn refer_as(
    s: &AppState,
    keys: impl Into<Signer<'_>>,
    req: &NewReferral,
    default_community: Option<Id>,
) -> Result<Referred, ApiError> {
    let keys = keys.into();
    let recipient = req.to.as_deref().map(|h| parse_key(h, "to")).transpose()?;
    let community = req
        .community
        .as_deref()
        .map(|h| parse_id(h, "community"))
        .transpose()?
        .or(default_community);
    let (offer, parent, imported) = resolve(s, &req.from, "from").await?;
    // Never date a referral before its parent (a skewed clock would make it invalid).
    let parent_time = match parent {
        Some(p) => s.attestation(&p, "referral").await?.body.created_at_ms(),
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
    if let Signer::Member(k) = keys {
        // The connector's page counts a hosted member's referrals; a failure to count one
        // does not undo it.
        let (node, member) = (s.community.clone(), k.public());
        match tokio::task::spawn_blocking(move || node.note_referral(&member)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(%member, error = %e, "counting a member's referral failed")
            }
            Err(e) => tracing::warn!(%member, error = %e, "counting a member's referral failed"),
        }
    }
    Ok(Referred {
        published: s.published(&att.id).await?,
        imported,
    })
}

/// `POST /v1/referrals`
pub async fn refer(
    State(s): State<AppState>,
    actor: Actor,
    AppJson(req): AppJson<NewReferral>,
) -> Result<(StatusCode, AppJson<Referred>), ApiError> {
    let keys = actor.signer(&s, req.as_.as_deref())?;
    // A member's referrals name her community, as on her pages.
    let community = match &actor {
        Actor::Member { session, .. } => s
            .community
            .community_of(&session.identity)
            .map(|(id, _)| id),
        Actor::Operator => None,
    };
    Ok((
        StatusCode::CREATED,
        AppJson(refer_as(&s, keys, &req, community).await?),
    ))
}
