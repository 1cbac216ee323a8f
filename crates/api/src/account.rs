//! A hosted member's own account through the API: `POST /v1/account/export-key` gives her key
//! as a password-protected file to take to a node of her own (issue 16, "leaving with
//! everything").
//!
//! The file is a [`KeyFile`] sealed at the export cost ([`AppState::export_kdf`],
//! `KdfParams::EXPORT` unless a test lowers it) under the export password she gives, or her
//! password, and it carries what her new node needs to go on where she was
//! ([`passalong_accounts::Carried`]): the markets she has ledger lines in (and the
//! community's, where her Membership is), her community and the community node's relay
//! addresses while she is a member, and her contacts. Her password is asked again and checked
//! as a sign-in is (throttled, one argon2 permit), so a session alone does not give her key
//! away. A read-only member (removed, or gone of her own accord) may export too: that is what
//! the read-only mode is for.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use passalong_accounts::export::{self, Carried};
use passalong_accounts::members::{self, Status};
use passalong_accounts::KeyFile;
use passalong_protocol::PublicKey;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::Actor;
use crate::error::{ApiError, AppJson};
use crate::signin::{with_password, Peer, SignInError};
use crate::state::AppState;

/// `POST /v1/account/export-key` body.
#[derive(Serialize, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ExportKey {
    /// Her password, asked again.
    pub password: String,
    /// The password the file is sealed under (10 to 256 bytes); default: her password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_password: Option<String>,
}

impl std::fmt::Debug for ExportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportKey { .. }")
    }
}

/// A member's exported key.
#[derive(Debug)]
pub struct Exported {
    /// Her login (the file's name: `passalong-<login>.key`).
    pub login: String,
    /// The file.
    pub file: KeyFile,
}

/// Why an export was refused: a password check's refusal (with its status and `Retry-After`)
/// or the API's.
#[derive(Debug)]
pub enum ExportError {
    /// The password check refused.
    Password(SignInError),
    /// Anything else.
    Api(ApiError),
}

impl From<ApiError> for ExportError {
    fn from(e: ApiError) -> Self {
        ExportError::Api(e)
    }
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Password(SignInError::Wrong) => f.write_str("wrong password"),
            ExportError::Password(e) => write!(f, "{e}"),
            ExportError::Api(e) => f.write_str(&e.message),
        }
    }
}

impl IntoResponse for ExportError {
    fn into_response(self) -> Response {
        match self {
            ExportError::Password(e) => e.into_response(),
            ExportError::Api(e) => e.into_response(),
        }
    }
}

/// What `member`'s file carries: her markets, her community and its relays while she is a
/// member here, her contacts.
async fn carried(s: &AppState, member: PublicKey) -> Result<Carried, ApiError> {
    let connector = s.identities.default_key();
    let active = s.community.hosted_status(&member) == Some(Status::Active);
    let community = s.community.current().filter(|_| active).map(|c| c.id);
    let lines = s.with_store(move |st| st.lines_of(&member)).await?;
    let mut markets: Vec<PublicKey> = lines.into_iter().map(|(seller, _)| seller).collect();
    if s.community.current().is_some() {
        markets.push(connector);
    }
    markets.sort();
    markets.dedup();
    let relays = if community.is_some() {
        crate::community::relay_addrs(s).await
    } else {
        Vec::new()
    };
    let contacts = s.contacts.clone();
    let contacts = tokio::task::spawn_blocking(move || contacts.of(&member))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Carried {
        markets,
        community,
        relays,
        contacts: contacts.iter().map(|(k, n)| (*k, n.clone())).collect(),
    })
}

/// Exports the hosted member `member`'s key, checking `password` (hers) first, for a request
/// from `ip`: sealed under `export_password`, or her password, at the node's export cost.
pub async fn export_key(
    s: &AppState,
    member: PublicKey,
    password: &[u8],
    export_password: Option<&[u8]>,
    ip: IpAddr,
) -> Result<Exported, ExportError> {
    let sealing = Zeroizing::new(export_password.unwrap_or(password).to_vec());
    if export_password.is_some() {
        members::check_password(&sealing)
            .map_err(|e| ApiError::bad_request(format!("export_password: {e}")))?;
    }
    let carried = carried(s, member).await?;
    let (markets, contacts) = (carried.markets.len(), carried.contacts.len());
    let params = s.export_kdf;
    let (login, file) = with_password(s, &member, password, ip, move |keypair| {
        export::seal(&keypair, &carried, &sealing, params, &mut OsRng)
    })
    .await
    .map_err(ExportError::Password)?;
    tracing::info!(%member, login = %login, markets, contacts, m_kib = params.m_kib, "a member exported her key");
    Ok(Exported { login, file })
}

/// `POST /v1/account/export-key`: a hosted member's key file (her session, her password
/// again). The operator's token has no account: the node's key is its `identity.key`.
pub async fn export_key_route(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Peer(peer): Peer,
    AppJson(req): AppJson<ExportKey>,
) -> Result<AppJson<KeyFile>, ExportError> {
    let Actor::Member { session, .. } = actor else {
        return Err(ApiError::bad_request(
            "the operator has no account to export: the node's own key is its data dir's identity.key; this is for a hosted member's session (POST /v1/signin)",
        )
        .into());
    };
    let ip = s.signin.client_ip(&headers, peer);
    let password = Zeroizing::new(req.password);
    let export_password = req.export_password.map(Zeroizing::new);
    let out = export_key(
        &s,
        session.identity,
        password.as_bytes(),
        export_password.as_ref().map(|p| p.as_bytes()),
        ip,
    )
    .await?;
    Ok(AppJson(out.file))
}
