//! A person with her own node joins a community with her own key, through the same invite
//! link as a hosted member (issue 16, §3.6 of the community plan):
//!
//! - on the community node, `GET /v1/join/<token>` tells her node what it joins (the
//!   community, its connector, the node's relay addresses), and `POST /v1/join/<token>
//!   {member, created_at_ms, signature}` admits her ([`crate::community::join_own`]): the
//!   answer carries the Membership the connector signed, with the Community it depends on;
//! - on her own node, `POST /v1/membership-requests {community}` (the operator's token) has
//!   the node's key sign the membership request for that community now, and nothing else:
//!   the message is the protocol's domain-separated `Membership::request_message`.
//!
//! `passalong community join URL` runs the three in turn (`node/src/community.rs`).

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::community::{join_own, relay_addrs};
use crate::error::{ApiError, AppJson};
use crate::identity::{parse_id, parse_key};
use crate::state::{AppState, WriteAuth};
use crate::writer::now_ms;

/// `GET /v1/join/<token>` answer: what the invite joins.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct JoinInfo {
    /// The community's id, hex.
    pub community: String,
    /// Its name.
    pub name: String,
    /// Its connector (the community node's key; its market), hex.
    pub connector: String,
    /// The community node's relay addresses (`<multiaddr>/p2p/<peer id>`).
    pub relays: Vec<String>,
}

/// `POST /v1/join/<token>` body: her node's signed membership request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// Her key, hex.
    pub member: String,
    /// When her node signed the request (ms); her membership starts then.
    pub created_at_ms: u64,
    /// Her key's signature over `Membership::request_message(community, member,
    /// created_at_ms)`, hex (64 bytes).
    pub signature: String,
}

/// `POST /v1/join/<token>` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The Membership attestation's id, hex.
    pub membership: String,
    /// What her node imports: the Community attestation, then the Membership (envelopes, hex).
    pub envelopes: Vec<String>,
    /// What she joined (the relays as `GET` gives them).
    #[serde(flatten)]
    pub info: JoinInfo,
}

async fn info(s: &AppState, token: &str) -> Result<JoinInfo, ApiError> {
    s.community.check_invite(token)?;
    let c = s
        .community
        .current()
        .ok_or_else(|| ApiError::not_found("this invite is not known here: ask for a new one"))?;
    Ok(JoinInfo {
        community: c.id.to_hex(),
        name: c.name,
        connector: s.identities.default_key().to_hex(),
        relays: relay_addrs(s).await,
    })
}

/// `GET /v1/join/<token>`: anyone holding the invite.
pub async fn show(
    State(s): State<AppState>,
    UrlPath(token): UrlPath<String>,
) -> Result<AppJson<JoinInfo>, ApiError> {
    Ok(AppJson(info(&s, &token).await?))
}

/// `POST /v1/join/<token>`: anyone holding the invite, with her own key's request: 201 when
/// it admits her, 200 when she was admitted already (a retry).
pub async fn join(
    State(s): State<AppState>,
    UrlPath(token): UrlPath<String>,
    AppJson(req): AppJson<JoinRequest>,
) -> Result<(StatusCode, AppJson<Joined>), ApiError> {
    let member = parse_key(&req.member, "member")?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(req.signature.trim(), &mut signature)
        .map_err(|_| ApiError::bad_request("signature: expected 128 hex digits"))?;
    let joined = join_own(&s, &token, member, req.created_at_ms, signature).await?;
    let envelopes = joined
        .community_attestation
        .iter()
        .chain([&joined.membership])
        .map(|a| hex::encode(&a.bytes))
        .collect();
    Ok((
        if joined.new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        AppJson(Joined {
            membership: joined.membership.id.to_hex(),
            envelopes,
            info: JoinInfo {
                community: joined.community.id.to_hex(),
                name: joined.community.name,
                connector: s.identities.default_key().to_hex(),
                relays: relay_addrs(&s).await,
            },
        }),
    ))
}

/// `POST /v1/membership-requests` body.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewMembershipRequest {
    /// The community to join, hex.
    pub community: String,
}

/// `POST /v1/membership-requests` answer: the request, as `POST /v1/join/<token>` takes it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MembershipRequest {
    /// The node's key, hex.
    pub member: String,
    /// Now, by this node's clock.
    pub created_at_ms: u64,
    /// The node key's signature of the request, hex.
    pub signature: String,
}

/// `POST /v1/membership-requests` (the operator's token): the node's own key signs the request
/// to join `community` now.
pub async fn request(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppJson(req): AppJson<NewMembershipRequest>,
) -> Result<AppJson<MembershipRequest>, ApiError> {
    let community = parse_id(&req.community, "community")?;
    let keys = s.identities.signer(None)?;
    let member = keys.public();
    let created_at_ms = now_ms();
    let signature = keys.sign(
        &passalong_protocol::attestation::Membership::request_message(
            &community,
            &member,
            created_at_ms,
        ),
    );
    tracing::info!(%community, "signed a request to join a community");
    Ok(AppJson(MembershipRequest {
        member: member.to_hex(),
        created_at_ms,
        signature: hex::encode(signature),
    }))
}
