//! The community this node runs as its connector (issue 16): founding it, and its one-time
//! invites.
//!
//! The signed Community attestation is the truth (the node's own key signs it, and the store
//! keeps it like any other); `<data-dir>/community/community.json` says which community this
//! node runs, so that it survives a restart, and `community/invites.json` keeps the invites —
//! the hashes of their tokens, never the tokens (`passalong_accounts::{community, invites}`).
//! A node runs one community: a second is refused.
//!
//! Invites are changed on a copy that is written (atomically, synced) before it replaces the
//! one in memory, so an answer with a token means the token works after a crash too.
//!
//! A neighbour joins with an invite as a hosted member ([`join_hosted`]): the node makes her
//! a key, seals it under her password (`community/members/<key>.json`), and admits her with
//! the Membership attestation the protocol defines (her key signs the request, the node's the
//! envelope). Her key then lives only in the session her sign-in starts, never among the
//! node's [`Identities`](crate::Identities).
//!
//! The connector sees the members ([`member_list`]: from the store's Membership and
//! MembershipEnd attestations, kept as a [`Roster`] until the connector's market changes, and
//! what a hosted member's file adds), the community's activity and its own earnings per
//! market. It removes a member with a MembershipEnd its key signs ([`remove_member`]); a
//! member leaves with one hers signs ([`leave`]). Either way her sessions end at once, and a
//! hosted member who signs in again gets a read-only session (her pages and earnings, no
//! signing) for as long as her key file is kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use passalong_accounts::community::{self as files, Community};
use passalong_accounts::invites::{self, Invite, InviteError, InviteId, Invites, State as Stage};
use passalong_accounts::members::{self, Status};
use passalong_accounts::{
    CommunityError, InvitesFileError, KdfParams, Member, MemberKey, Members, MembersError,
};
use passalong_protocol::attestation::{self, Body, Membership, MembershipEnd};
use passalong_protocol::{Id, Keypair, Kind, LedgerEntry, PublicKey};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ApiError, AppJson, AppQuery};
use crate::roster::Roster;
use crate::state::{AppState, WriteAuth};
use crate::writer::now_ms;

/// The longest an invite may stay valid: a year.
pub const MAX_INVITE_TTL_MS: u64 = 365 * 86_400_000;
/// The longest note on an invite, in characters.
pub const MAX_NOTE_CHARS: usize = 200;

/// Why the community's files could not be opened when the node started.
#[derive(Debug, thiserror::Error)]
pub enum CommunityNodeError {
    /// `community.json`.
    #[error(transparent)]
    Community(#[from] CommunityError),
    /// `invites.json`.
    #[error(transparent)]
    Invites(#[from] InvitesFileError),
    /// The hosted members' files.
    #[error(transparent)]
    Members(#[from] MembersError),
}

/// The community this node runs and its invites, shared by the handlers.
pub struct CommunityNode {
    data_dir: PathBuf,
    current: Mutex<Current>,
    /// Held while a community is founded: two requests at once must not both sign one.
    founding: tokio::sync::Mutex<()>,
    /// Held while a neighbour joins: one key derivation at a time, and a login checked free
    /// stays free until her file is written.
    joining: tokio::sync::Mutex<()>,
    /// Held while a membership is ended (a removal, a member leaving): one End per membership.
    ending: tokio::sync::Mutex<()>,
    /// The members as the store says, kept until the connector's market changes
    /// ([`crate::roster`]); `None` until first asked, and after this node's own writes.
    roster: Mutex<Option<Arc<Roster>>>,
}

struct Current {
    community: Option<Community>,
    invites: Invites,
    /// The hosted members (opened with the community: opening makes its directories).
    members: Option<Members>,
}

impl CommunityNode {
    /// Reads the community of the node in `data_dir` and its invites, if it runs one.
    pub fn open(data_dir: &Path) -> Result<CommunityNode, CommunityNodeError> {
        let community = files::load(data_dir)?;
        let (invites, members) = match community {
            Some(_) => (Invites::load(data_dir)?, Some(open_members(data_dir)?)),
            None => (Invites::default(), None),
        };
        Ok(CommunityNode {
            data_dir: data_dir.to_path_buf(),
            current: Mutex::new(Current {
                community,
                invites,
                members,
            }),
            founding: tokio::sync::Mutex::new(()),
            joining: tokio::sync::Mutex::new(()),
            ending: tokio::sync::Mutex::new(()),
            roster: Mutex::new(None),
        })
    }

    /// How many hosted members the node has.
    pub fn member_count(&self) -> usize {
        self.lock().members.as_ref().map_or(0, Members::len)
    }

    /// The community a hosted member's referrals name: hers while she is an active member.
    pub fn community_of(&self, member: &PublicKey) -> Option<(Id, String)> {
        let current = self.lock();
        let c = current.community.as_ref()?;
        let m = current.members.as_ref()?.get(member)?;
        (m.status == Status::Active).then(|| (c.id, c.name.clone()))
    }

    /// What a sign-in as `login` checks the password against: the member's key and where she
    /// stands, and her key file (a copy: the check runs without the lock). `None` for a login
    /// no member has, and on a node that runs no community.
    pub fn sign_in_record(
        &self,
        login: &str,
    ) -> Option<(PublicKey, Status, passalong_accounts::KeyFile)> {
        let current = self.lock();
        let m = current.members.as_ref()?.by_login(login)?;
        Some((m.public_key, m.status, m.key.clone()))
    }

    /// A hosted member's login, where she stands and her key file (a copy), by her key: what
    /// her password is checked against when she exports her key. `None`: no member hosted here.
    pub fn key_record(
        &self,
        member: &PublicKey,
    ) -> Option<(String, Status, passalong_accounts::KeyFile)> {
        let current = self.lock();
        let m = current.members.as_ref()?.get(member)?;
        Some((m.login.to_string(), m.status, m.key.clone()))
    }

    /// Replaces `member`'s key file by `file` (the same key, sealed anew), durably. Blocking
    /// (it syncs a file).
    pub fn reseal(
        &self,
        member: &PublicKey,
        file: passalong_accounts::KeyFile,
    ) -> Result<(), MembersError> {
        let mut current = self.lock();
        match current.members.as_mut() {
            Some(members) => members.set_key(member, file),
            None => Err(MembersError::Unknown(*member)),
        }
    }

    /// Whether `token` may be used to join now: the community's name if so. (On a node that
    /// runs no community every invite is unknown: the answer is for the invitee.)
    pub fn check_invite(&self, token: &str) -> Result<String, ApiError> {
        let current = self.lock();
        let c = current
            .community
            .as_ref()
            .ok_or_else(|| join_error(InviteError::Unknown))?;
        current.invites.check(token, now_ms()).map_err(join_error)?;
        Ok(c.name.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The community this node runs, if any.
    pub fn current(&self) -> Option<Community> {
        self.lock().community.clone()
    }

    /// The invites kept, oldest first.
    pub fn invites(&self) -> Vec<Invite> {
        self.lock().invites.all().to_vec()
    }

    /// Applies `change` to a copy of the invites, writes the copy, then keeps it: the change
    /// is durable once this returns. Blocking (it syncs a file).
    pub fn change_invites<T>(
        &self,
        change: impl FnOnce(&mut Invites, u64) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut current = self.lock();
        if current.community.is_none() {
            return Err(no_community());
        }
        let now = now_ms();
        let mut invites = current.invites.clone();
        let out = change(&mut invites, now)?;
        invites.prune(now);
        invites.save(&self.data_dir).map_err(ApiError::internal)?;
        current.invites = invites;
        Ok(out)
    }
}

/// The most relay addresses handed to a member (an export, an own-node join).
pub const MAX_RELAY_ADDRS: usize = 8;

/// Where members' nodes reach this node's relay: [`relay_addrs_of`] its network's addresses;
/// none when it runs without the network.
pub async fn relay_addrs(s: &AppState) -> Vec<String> {
    let Ok(net) = s.net() else {
        return Vec::new();
    };
    match net.info().await {
        Ok(i) => relay_addrs_of(&i.peer_id, &i.external, &i.listen),
        Err(e) => {
            tracing::warn!(error = %e, "the network's addresses are unknown: no relay addresses given");
            Vec::new()
        }
    }
}

/// The addresses members' nodes are given for the node `peer_id`: its external addresses
/// (confirmed or configured) first, then those it listens on, without relay circuits,
/// unspecified addresses or (when it has others) loopback ones, each ending with
/// `/p2p/<peer_id>`, at most [`MAX_RELAY_ADDRS`].
pub fn relay_addrs_of(peer_id: &str, external: &[String], listen: &[String]) -> Vec<String> {
    let suffix = format!("/p2p/{peer_id}");
    let loopback = |a: &str| a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1/");
    let usable: Vec<&String> = external
        .iter()
        .chain(listen)
        .filter(|a| {
            !a.contains("/p2p-circuit")
                && !a.starts_with("/ip4/0.0.0.0/")
                && !a.starts_with("/ip6/::/")
        })
        .collect();
    let only_loopback = usable.iter().all(|a| loopback(a));
    let mut out: Vec<String> = Vec::new();
    for a in usable {
        if loopback(a) && !only_loopback {
            continue;
        }
        let full = if a.ends_with(&suffix) {
            a.clone()
        } else {
            format!("{a}{suffix}")
        };
        if !out.contains(&full) {
            out.push(full);
        }
    }
    out.truncate(MAX_RELAY_ADDRS);
    out
}

/// Opens the hosted members' registry, logging the member files it could not read (each
/// costs only its own member).
fn open_members(data_dir: &Path) -> Result<Members, MembersError> {
    let members = Members::open(data_dir)?;
    for e in members.damaged() {
        tracing::error!(error = %e, "a hosted member's file is damaged");
    }
    Ok(members)
}

fn no_community() -> ApiError {
    ApiError::not_found(
        "this node runs no community: found one with `passalong community create --name NAME` (POST /v1/community)",
    )
}

/// `POST /v1/community` body.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NewCommunity {
    /// Its name: 1 to 64 bytes, as members and share pages show it.
    pub name: String,
}

/// The community a node runs (`GET /v1/community`, and `POST`'s answer).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CommunityInfo {
    /// The id of its Community attestation, hex: what referrals name.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The connector: this node's key, hex (the community's market).
    pub connector: String,
    /// When it was founded.
    pub created_at_ms: u64,
    /// Invites that may still be used.
    pub open_invites: usize,
    /// Hosted members (of every status).
    pub members: usize,
}

fn info_of(s: &AppState, c: &Community) -> CommunityInfo {
    let now = now_ms();
    let (open_invites, members) = {
        let current = s.community.lock();
        let open = current
            .invites
            .all()
            .iter()
            .filter(|i| open_at(i, now))
            .count();
        (open, current.members.as_ref().map_or(0, Members::len))
    };
    CommunityInfo {
        id: c.id.to_hex(),
        name: c.name.clone(),
        connector: s.identities.default_key().to_hex(),
        created_at_ms: c.created_at_ms,
        open_invites,
        members,
    }
}

fn open_at(i: &Invite, now_ms: u64) -> bool {
    now_ms < i.expires_ms && matches!(i.state, Stage::Open | Stage::Reserved { .. })
}

/// Founds the community `name`: the node's own key signs the Community attestation, the
/// store keeps it, and `community.json` records it. Refused (409) if the node runs one.
pub async fn found(s: &AppState, name: &str) -> Result<CommunityInfo, ApiError> {
    let name = name.trim();
    files::check_name(name).map_err(|e| ApiError::bad_request(format!("name: {e}")))?;
    let _founding = s.community.founding.lock().await;
    if let Some(c) = s.community.current() {
        return Err(exists(&c));
    }
    let keys = s.identities.signer(None)?;
    let created_at_ms = now_ms();
    let att = s
        .sign_and_store(
            Body::Community(attestation::Community {
                connector: keys.public(),
                name: name.to_string(),
                created_at_ms,
            }),
            keys,
        )
        .await?;
    let community = Community {
        id: att.id,
        name: name.to_string(),
        created_at_ms,
    };
    let (node, record) = (s.community.clone(), community.clone());
    let members = tokio::task::spawn_blocking(move || {
        files::create(&node.data_dir, &record).map_err(|e| match e {
            CommunityError::Exists(id) => ApiError::conflict(format!(
                "this node runs community {id} already (one community per node)"
            )),
            e => ApiError::internal(e),
        })?;
        open_members(&node.data_dir).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)??;
    {
        let mut current = s.community.lock();
        current.community = Some(community.clone());
        current.members = Some(members);
    }
    tracing::info!(community = %community.id, name = %community.name, "community founded");
    Ok(info_of(s, &community))
}

fn exists(c: &Community) -> ApiError {
    ApiError::conflict(format!(
        "this node runs community {:?} ({}) already: a node runs one community",
        c.name, c.id
    ))
}

/// `POST /v1/community`
pub async fn create(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppJson(req): AppJson<NewCommunity>,
) -> Result<(StatusCode, AppJson<CommunityInfo>), ApiError> {
    Ok((StatusCode::CREATED, AppJson(found(&s, &req.name).await?)))
}

/// `GET /v1/community`
pub async fn show(State(s): State<AppState>) -> Result<AppJson<CommunityInfo>, ApiError> {
    let c = s.community.current().ok_or_else(no_community)?;
    Ok(AppJson(info_of(&s, &c)))
}

/// `POST /v1/community/invites` body.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// How long it stays valid, ms (default 7 days, at most a year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
    /// Whom it is for (the connector's own note, never shown to the invitee).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A new invite (`POST /v1/community/invites`' answer): the only time its token is shown.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InviteCreated {
    /// Its short id (8 hex digits), to revoke it by.
    pub id: String,
    /// The token (`inv1.` and 32 hex digits): whoever holds it can join once.
    pub token: String,
    /// The join page's URL with the token: the link (and QR code) to hand over.
    pub url: String,
    /// When it stops working.
    pub expires_ms: u64,
    /// The note.
    pub note: String,
}

/// One invite of `GET /v1/community/invites` (no token: it is not kept).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InviteInfo {
    /// Its short id.
    pub id: String,
    /// `open`, `used`, `revoked` or `expired`.
    pub state: String,
    /// When it was made.
    pub created_ms: u64,
    /// When it stops (or stopped) working.
    pub expires_ms: u64,
    /// The connector's note.
    pub note: String,
    /// Who joined with it (`used`), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// When it was used or revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_ms: Option<u64>,
}

/// `GET /v1/community/invites` answer, oldest first.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InviteList {
    /// Every invite kept (closed ones for 30 days).
    pub invites: Vec<InviteInfo>,
}

/// `POST /v1/community/invites/<id>/revoke` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The invite.
    pub id: String,
    /// Always true.
    pub revoked: bool,
}

impl InviteInfo {
    /// How `i` stands at `now_ms`.
    pub fn of(i: &Invite, now_ms: u64) -> InviteInfo {
        let (state, member, closed_ms) = match &i.state {
            Stage::Used { member, at_ms } => ("used", Some(member.to_hex()), Some(*at_ms)),
            Stage::Revoked { at_ms } => ("revoked", None, Some(*at_ms)),
            _ if now_ms >= i.expires_ms => ("expired", None, None),
            _ => ("open", None, None),
        };
        InviteInfo {
            id: i.id().to_string(),
            state: state.into(),
            created_ms: i.created_ms,
            expires_ms: i.expires_ms,
            note: i.note.clone(),
            member,
            closed_ms,
        }
    }
}

fn invite_error(e: InviteError, id: &str) -> ApiError {
    match e {
        InviteError::Unknown => ApiError::not_found(format!(
            "no invite {id} on this node (see GET /v1/community/invites)"
        )),
        InviteError::Used => ApiError::conflict(format!(
            "invite {id} was used already: the member joined (remove her from the community instead)"
        )),
        e => ApiError::conflict(e.to_string()),
    }
}

/// Makes an invite; its token is in the answer and nowhere else.
pub async fn invite(s: &AppState, req: &NewInvite) -> Result<InviteCreated, ApiError> {
    let ttl_ms = req.expires_in_ms.unwrap_or(invites::DEFAULT_TTL_MS);
    if ttl_ms == 0 || ttl_ms > MAX_INVITE_TTL_MS {
        return Err(ApiError::bad_request(format!(
            "expires_in_ms: expected 1 to {MAX_INVITE_TTL_MS} (a year), got {ttl_ms}"
        )));
    }
    let note = req.note.as_deref().unwrap_or("").trim().to_string();
    if note.chars().count() > MAX_NOTE_CHARS || note.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "note: at most {MAX_NOTE_CHARS} characters, no control characters"
        )));
    }
    let node = s.community.clone();
    let (token, id, expires_ms) = tokio::task::spawn_blocking(move || {
        node.change_invites(|inv, now| {
            let (token, id) = inv
                .create(now, ttl_ms, &note, &mut OsRng)
                .map_err(|e| invite_error(e, ""))?;
            Ok((token, id, now.saturating_add(ttl_ms)))
        })
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(invite = %id, expires_ms, "invite created");
    Ok(InviteCreated {
        id: id.to_string(),
        url: format!("{}/join/{token}", s.base_url),
        token,
        expires_ms,
        note: req.note.as_deref().unwrap_or("").trim().to_string(),
    })
}

/// Every invite kept, as it stands now.
pub fn invite_list(s: &AppState) -> Result<InviteList, ApiError> {
    if s.community.current().is_none() {
        return Err(no_community());
    }
    let now = now_ms();
    Ok(InviteList {
        invites: s
            .community
            .invites()
            .iter()
            .map(|i| InviteInfo::of(i, now))
            .collect(),
    })
}

/// Revokes the invite `id` (8 hex digits); revoking twice is harmless, a used one is 409.
pub async fn revoke_invite(s: &AppState, id: &str) -> Result<Revoked, ApiError> {
    let id = id.trim().to_ascii_lowercase();
    let mut raw = [0u8; 4];
    hex::decode_to_slice(&id, &mut raw).map_err(|_| {
        ApiError::bad_request(format!(
            "invite id {id:?}: expected the 8 hex digits `community invites` lists"
        ))
    })?;
    let node = s.community.clone();
    let shown = id.clone();
    tokio::task::spawn_blocking(move || {
        node.change_invites(|inv, now| {
            inv.revoke(InviteId(raw), now)
                .map_err(|e| invite_error(e, &shown))
        })
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(invite = %id, "invite revoked");
    Ok(Revoked { id, revoked: true })
}

/// `POST /v1/community/invites`
pub async fn create_invite(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppJson(req): AppJson<NewInvite>,
) -> Result<(StatusCode, AppJson<InviteCreated>), ApiError> {
    Ok((StatusCode::CREATED, AppJson(invite(&s, &req).await?)))
}

/// `GET /v1/community/invites`: needs the token, unlike other reads, because a community node
/// is reached from outside (`public_url`) and the notes say whom each invite is for.
pub async fn list_invites(
    State(s): State<AppState>,
    _auth: WriteAuth,
) -> Result<AppJson<InviteList>, ApiError> {
    Ok(AppJson(invite_list(&s)?))
}

/// `POST /v1/community/invites/<id>/revoke`
pub async fn revoke(
    State(s): State<AppState>,
    _auth: WriteAuth,
    UrlPath(id): UrlPath<String>,
) -> Result<AppJson<Revoked>, ApiError> {
    Ok(AppJson(revoke_invite(&s, &id).await?))
}

/// Why an invite cannot be used to join, as the join page says it.
fn join_error(e: InviteError) -> ApiError {
    let gone = |message: &str| ApiError {
        status: StatusCode::GONE,
        code: "gone",
        message: format!("{message}: ask the person who invited you for a new one"),
        reason: None,
    };
    match e {
        InviteError::Unknown => ApiError::not_found(
            "this invite is not known here: check that the whole link was copied, or ask for a new one",
        ),
        InviteError::Expired => gone("this invite has expired"),
        InviteError::Used => gone("this invite was used already"),
        InviteError::Revoked => gone("this invite was revoked"),
        e => ApiError::conflict(e.to_string()),
    }
}

fn member_error(e: MembersError) -> ApiError {
    match e {
        MembersError::BadLogin { .. } | MembersError::BadPassword { .. } => {
            ApiError::bad_request(e.to_string())
        }
        MembersError::LoginTaken(_) => ApiError::conflict(format!("{e}: choose another")),
        e => ApiError::internal(e),
    }
}

/// A hosted member who just joined.
#[derive(Debug)]
pub struct Joined {
    /// Her key, for the session her join starts.
    pub key: MemberKey,
    /// Her login, folded.
    pub login: String,
    /// The id of her Membership attestation.
    pub membership: Id,
}

/// A neighbour joins with the invite `token` as a hosted member who signs in as `login` with
/// `password`: the node makes her key, seals it under her password at `params`, and its own
/// key admits her (a Membership her key consents to). The invite works once: it is spent
/// before the Membership is signed and her file written, so that a failure or a crash in
/// between costs her the invite, never lets it work twice.
pub async fn join_hosted(
    s: &AppState,
    token: &str,
    login: &str,
    password: &[u8],
) -> Result<Joined, ApiError> {
    members::check_password(password).map_err(member_error)?;
    let _joining = s.community.joining.lock().await;
    let (community, login, lease) = {
        let mut current = s.community.lock();
        let community = current
            .community
            .clone()
            .ok_or_else(|| join_error(InviteError::Unknown))?;
        let members = current
            .members
            .as_ref()
            .ok_or_else(|| ApiError::internal("a community without its members' registry"))?;
        let login = members.login_free(login).map_err(member_error)?;
        let lease = current
            .invites
            .reserve(token, now_ms())
            .map_err(join_error)?;
        (community, login, lease)
    };
    let joined = admit(s, &community, login, password, &lease).await;
    if joined.is_err() {
        s.community.lock().invites.release(&lease);
    }
    joined
}

/// The part of [`join_hosted`] that holds the invite's lease.
async fn admit(
    s: &AppState,
    community: &Community,
    login: members::Login,
    password: &[u8],
    lease: &invites::Lease,
) -> Result<Joined, ApiError> {
    let keypair = Keypair::generate(&mut OsRng);
    let member = keypair.public();
    let (sealing, secret) = (keypair.clone(), Zeroizing::new(password.to_vec()));
    let params: KdfParams = s.member_kdf;
    let key_file = tokio::task::spawn_blocking(move || {
        members::seal_new(&sealing, &secret, params, &mut OsRng)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(member_error)?;
    // Spend the invite first: from here on a failure costs her the invite, never lets it work
    // twice, and an invite revoked meanwhile admits no one.
    let (node, spent) = (s.community.clone(), lease.clone());
    tokio::task::spawn_blocking(move || {
        node.change_invites(|inv, now| inv.redeem(&spent, member, now).map_err(join_error))
    })
    .await
    .map_err(ApiError::internal)??;
    let connector = s.identities.signer(None)?;
    let created_ms = now_ms();
    let membership = s
        .sign_and_store(
            Body::Membership(Membership::admit(
                connector.public(),
                community.id,
                &keypair,
                created_ms,
            )),
            connector,
        )
        .await?;
    s.community.forget_roster();
    let (node, record) = (
        s.community.clone(),
        Member {
            login: login.clone(),
            public_key: member,
            created_ms,
            membership: membership.id,
            status: Status::Active,
            last_signin_ms: Some(created_ms),
            referrals: 0,
            key: key_file,
        },
    );
    tokio::task::spawn_blocking(move || {
        let mut current = node.lock();
        let members = current
            .members
            .as_mut()
            .ok_or_else(|| ApiError::internal("a community without its members' registry"))?;
        members.add(record).map_err(member_error)
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(%member, login = %login, membership = %membership.id, "a hosted member joined");
    Ok(Joined {
        key: MemberKey::new(keypair),
        login: login.to_string(),
        membership: membership.id,
    })
}

// ---------------------------------------------------------------------------------------------
// The connector's view: the members, their activity, the connector's earnings; removing a
// member, and a member leaving.

/// What the connector sees of a hosted member's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosted {
    /// Her login.
    pub login: String,
    /// Where her file says she stands.
    pub status: Status,
    /// When she joined.
    pub created_ms: u64,
    /// Her Membership attestation.
    pub membership: Id,
    /// When she last signed in, if ever.
    pub last_signin_ms: Option<u64>,
    /// The referrals her key signed here.
    pub referrals: u64,
}

impl CommunityNode {
    /// Forgets the roster kept: this node just wrote to the connector's market.
    fn forget_roster(&self) {
        *self.roster.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Where the hosted member `member` stands, by her file (`None`: no hosted member).
    pub fn hosted_status(&self, member: &PublicKey) -> Option<Status> {
        Some(self.lock().members.as_ref()?.get(member)?.status)
    }

    /// Every hosted member's file, in short, by key.
    pub fn hosted(&self) -> std::collections::BTreeMap<PublicKey, Hosted> {
        let current = self.lock();
        current
            .members
            .iter()
            .flat_map(|ms| ms.iter())
            .map(|m| {
                (
                    m.public_key,
                    Hosted {
                        login: m.login.to_string(),
                        status: m.status,
                        created_ms: m.created_ms,
                        membership: m.membership,
                        last_signin_ms: m.last_signin_ms,
                        referrals: m.referrals,
                    },
                )
            })
            .collect()
    }

    /// Changes a hosted member's file durably. Blocking (it syncs a file).
    fn change_member(
        &self,
        member: &PublicKey,
        change: impl FnOnce(&mut Members, &PublicKey) -> Result<(), MembersError>,
    ) -> Result<(), MembersError> {
        let mut current = self.lock();
        match current.members.as_mut() {
            Some(members) => change(members, member),
            None => Err(MembersError::Unknown(*member)),
        }
    }

    /// Records that the hosted member `member` signed in at `at_ms`. Blocking.
    pub fn note_signin(&self, member: &PublicKey, at_ms: u64) -> Result<(), MembersError> {
        self.change_member(member, |ms, k| ms.set_last_signin(k, at_ms))
    }

    /// Counts a referral the hosted member `member` signed. Blocking.
    pub fn note_referral(&self, member: &PublicKey) -> Result<(), MembersError> {
        self.change_member(member, |ms, k| ms.count_referral(k))
    }

    /// Records where the hosted member `member` stands now. Blocking.
    fn set_status(&self, member: &PublicKey, status: Status) -> Result<(), MembersError> {
        self.change_member(member, |ms, k| ms.set_status(k, status))
    }
}

/// Runs a blocking change of a member's file in the blocking pool.
async fn member_file(
    s: &AppState,
    change: impl FnOnce(&CommunityNode) -> Result<(), MembersError> + Send + 'static,
) -> Result<(), ApiError> {
    let node = s.community.clone();
    tokio::task::spawn_blocking(move || change(&node))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// The community and its members as the store says, read again only when the connector's
/// market changed since the roster kept was read (its [`passalong_store::SetSummary`], which
/// the store keeps in memory until a write touches the market).
pub async fn roster(s: &AppState) -> Result<(Community, Arc<Roster>), ApiError> {
    let c = s.community.current().ok_or_else(no_community)?;
    let connector = s.identities.default_key();
    let summary = s.with_store(move |st| st.set_summary(&connector)).await?;
    let kept = s
        .community
        .roster
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(r) = kept.filter(|r| r.summary == summary) {
        return Ok((c, r));
    }
    let id = c.id;
    // The summary was taken first: a write landing meanwhile makes the next ask read again.
    let roster = s
        .with_store(move |st| {
            let memberships = st.market_of_kind(&connector, Kind::Membership)?;
            let ends = st.market_of_kind(&connector, Kind::MembershipEnd)?;
            Ok::<_, passalong_store::StoreError>(Roster::build(id, &memberships, &ends, summary))
        })
        .await?;
    let roster = Arc::new(roster);
    tracing::debug!(
        members = roster.len(),
        "community roster read from the store"
    );
    *s.community.roster.lock().unwrap_or_else(|p| p.into_inner()) = Some(roster.clone());
    Ok((c, roster))
}

/// An amount in one currency (minor units).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Earned {
    /// Currency code.
    pub currency: String,
    /// Earned from counted sales (refunded ones included, as in a ledger line).
    pub earned_minor: u128,
    /// Still owed by the sellers.
    pub owed_minor: i128,
}

/// Sums ledger lines per currency.
fn per_currency<'a>(lines: impl IntoIterator<Item = &'a LedgerEntry>) -> Vec<Earned> {
    let mut sums: std::collections::BTreeMap<String, (u128, i128)> = Default::default();
    for l in lines {
        let e = sums.entry(l.currency.as_str().to_string()).or_default();
        e.0 = e.0.saturating_add(l.earned);
        e.1 = e.1.saturating_add(l.owed);
    }
    sums.into_iter()
        .map(|(currency, (earned_minor, owed_minor))| Earned {
            currency,
            earned_minor,
            owed_minor,
        })
        .collect()
}

/// One member of the community (`GET /v1/community/members`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Her key, hex.
    pub key: String,
    /// Her login, for a member hosted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// Hosted here (her key sealed on this node), or with her own node.
    pub hosted: bool,
    /// When her membership started.
    pub since_ms: u64,
    /// Her Membership attestation, hex.
    pub membership: String,
    /// `admitted`, `removed` (by the connector), `left` (of her own accord) or `moved` (to a
    /// node of her own).
    pub status: String,
    /// When her membership ended, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// When she last signed in (hosted members).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_signin_ms: Option<u64>,
    /// The referrals her key signed on this node (hosted members; an own-node member's are
    /// signed on her node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrals: Option<u64>,
    /// What her referrals earned her as a hop, summed per currency over every market.
    pub earnings: Vec<Earned>,
}

impl MemberInfo {
    /// Whether she is admitted now.
    pub fn admitted(&self) -> bool {
        self.status == "admitted"
    }
}

/// `GET /v1/community/members` answer: newest members first.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberList {
    /// Members of every status.
    pub total: usize,
    /// Of them, admitted now.
    pub admitted: usize,
    /// The first listed, from 0.
    pub offset: usize,
    /// This page of them.
    pub members: Vec<MemberInfo>,
}

/// `?offset=N&limit=N` of `GET /v1/community/members`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    /// Skip this many (default 0).
    pub offset: Option<usize>,
    /// At most this many (default and most: [`MAX_MEMBERS_PAGE`]).
    pub limit: Option<usize>,
}

/// The most members one answer lists.
pub const MAX_MEMBERS_PAGE: usize = 1000;

/// Where a member stands, in the words of [`MemberInfo::status`].
fn status_of(adm: Option<&crate::roster::Admission>, file: Option<Status>, now: u64) -> String {
    if file == Some(Status::Moved) {
        return "moved".into();
    }
    match adm.and_then(|a| a.end) {
        Some(e) if e.ends_at_ms <= now => if e.by_member { "left" } else { "removed" }.into(),
        _ if adm.is_some() => "admitted".into(),
        // A file whose Membership the store does not hold (yet): the file's word.
        _ => match file {
            Some(Status::Active) | None => "admitted".into(),
            Some(other) => other.as_str().into(),
        },
    }
}

/// The members, newest first, `offset` and at most `limit` of them, with their earnings.
pub async fn member_list(
    s: &AppState,
    offset: usize,
    limit: usize,
) -> Result<MemberList, ApiError> {
    let (_, roster) = roster(s).await?;
    let hosted = s.community.hosted();
    let now = now_ms();
    let mut rows: Vec<MemberInfo> = Vec::with_capacity(roster.len());
    for adm in roster.members(now) {
        let h = hosted.get(&adm.member);
        rows.push(MemberInfo {
            key: adm.member.to_hex(),
            login: h.map(|h| h.login.clone()),
            hosted: h.is_some(),
            since_ms: adm.since_ms,
            membership: adm.membership.to_hex(),
            status: status_of(Some(adm), h.map(|h| h.status), now),
            ended_ms: adm.end.map(|e| e.ends_at_ms).filter(|&t| t <= now),
            last_signin_ms: h.and_then(|h| h.last_signin_ms),
            referrals: h.map(|h| h.referrals),
            earnings: Vec::new(),
        });
    }
    for (k, h) in &hosted {
        if roster.current(k, now).is_none() {
            rows.push(MemberInfo {
                key: k.to_hex(),
                login: Some(h.login.clone()),
                hosted: true,
                since_ms: h.created_ms,
                membership: h.membership.to_hex(),
                status: status_of(None, Some(h.status), now),
                ended_ms: None,
                last_signin_ms: h.last_signin_ms,
                referrals: Some(h.referrals),
                earnings: Vec::new(),
            });
        }
    }
    rows.sort_by(|a, b| b.since_ms.cmp(&a.since_ms).then(a.key.cmp(&b.key)));
    let total = rows.len();
    let admitted = rows.iter().filter(|m| m.admitted()).count();
    let offset = offset.min(total);
    let mut page: Vec<MemberInfo> = rows
        .into_iter()
        .skip(offset)
        .take(limit.min(MAX_MEMBERS_PAGE))
        .collect();
    let keys: Vec<PublicKey> = page
        .iter()
        .filter_map(|m| PublicKey::from_hex(&m.key).ok())
        .collect();
    let earnings = s
        .with_store(move |st| {
            keys.iter()
                .map(|k| {
                    let lines = st.lines_of(k)?;
                    Ok(per_currency(
                        lines
                            .iter()
                            .filter(|(seller, _)| seller != k)
                            .map(|(_, l)| l),
                    ))
                })
                .collect::<Result<Vec<_>, passalong_store::StoreError>>()
        })
        .await?;
    for (m, e) in page.iter_mut().zip(earnings) {
        m.earnings = e;
    }
    Ok(MemberList {
        total,
        admitted,
        offset,
        members: page,
    })
}

/// `GET /v1/community/members`: the operator's (the list names the members' logins).
pub async fn list_members(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppQuery(q): AppQuery<MembersQuery>,
) -> Result<AppJson<MemberList>, ApiError> {
    let limit = q.limit.unwrap_or(MAX_MEMBERS_PAGE);
    if limit == 0 || limit > MAX_MEMBERS_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit: expected 1 to {MAX_MEMBERS_PAGE}, got {limit}"
        )));
    }
    Ok(AppJson(
        member_list(&s, q.offset.unwrap_or(0), limit).await?,
    ))
}

/// The connector's line in one seller's ledger (`GET /v1/community/earnings`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MarketEarning {
    /// The seller (the market), hex.
    pub seller: String,
    /// Currency code.
    pub currency: String,
    /// Earned from counted sales.
    pub earned: u128,
    /// Taken back by refunds.
    pub refunded: u128,
    /// Paid by the seller's settlements.
    pub settled: u128,
    /// Still owed.
    pub owed: i128,
}

/// `GET /v1/community/earnings` answer: what the connector's key earned, per market.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConnectorEarnings {
    /// The connector (this node's key), hex.
    pub connector: String,
    /// Its ledger lines, by seller then currency.
    pub markets: Vec<MarketEarning>,
    /// Summed per currency.
    pub totals: Vec<Earned>,
}

/// What the connector's key earned, per market: its ledger lines in every seller's ledger
/// (the connector share of its members' sales; and, should the node's own key pass offers
/// along too, its hop shares, which the ledger does not tell apart).
pub async fn connector_earnings(s: &AppState) -> Result<ConnectorEarnings, ApiError> {
    if s.community.current().is_none() {
        return Err(no_community());
    }
    let connector = s.identities.default_key();
    let lines = s.with_store(move |st| st.lines_of(&connector)).await?;
    Ok(ConnectorEarnings {
        connector: connector.to_hex(),
        totals: per_currency(lines.iter().map(|(_, l)| l)),
        markets: lines
            .iter()
            .map(|(seller, l)| MarketEarning {
                seller: seller.to_hex(),
                currency: l.currency.as_str().to_string(),
                earned: l.earned,
                refunded: l.refunded,
                settled: l.settled,
                owed: l.owed,
            })
            .collect(),
    })
}

/// `GET /v1/community/earnings`
pub async fn earnings(
    State(s): State<AppState>,
    _auth: WriteAuth,
) -> Result<AppJson<ConnectorEarnings>, ApiError> {
    Ok(AppJson(connector_earnings(&s).await?))
}

/// One event of the community (`GET /v1/community/activity`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ActivityItem {
    /// When.
    pub at_ms: u64,
    /// `joined`, `removed`, `left`, or `sale` (a sale through a member paid the connector).
    pub kind: String,
    /// The member, hex (for a sale: hop 1's referrer, the member it came through).
    pub member: String,
    /// Her login, for a hosted member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// A sale's receipt, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// A sale's offer title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A sale's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// What a sale paid the connector, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_minor: Option<u64>,
}

/// `GET /v1/community/activity` answer, newest first.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The events.
    pub items: Vec<ActivityItem>,
}

/// `?limit=N` of `GET /v1/community/activity`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct ActivityQuery {
    /// At most this many (default 20, at most [`MAX_ACTIVITY`]).
    pub limit: Option<usize>,
}

/// The most events one answer lists.
pub const MAX_ACTIVITY: usize = 200;
/// How many of each market's newest receipts are read for the sales that paid the connector.
const ACTIVITY_SCAN: usize = 500;

/// The community's latest events, newest first, at most `limit`: joins and ends from the
/// roster, and the sales that paid the connector (among each market's newest receipts).
pub async fn activity(s: &AppState, limit: usize) -> Result<Activity, ApiError> {
    let (_, roster) = roster(s).await?;
    let hosted = s.community.hosted();
    let login = |k: &PublicKey| hosted.get(k).map(|h| h.login.clone());
    let now = now_ms();
    let event = |at_ms: u64, kind: &str, member: &PublicKey| ActivityItem {
        at_ms,
        kind: kind.into(),
        member: member.to_hex(),
        login: login(member),
        receipt: None,
        title: None,
        currency: None,
        share_minor: None,
    };
    let mut items = Vec::new();
    for a in roster.all() {
        items.push(event(a.since_ms, "joined", &a.member));
        if let Some(e) = a.end.filter(|e| e.ends_at_ms <= now) {
            let kind = if e.by_member { "left" } else { "removed" };
            items.push(event(e.ends_at_ms, kind, &a.member));
        }
    }
    let connector = s.identities.default_key();
    let sales = s
        .with_store(move |st| crate::earnings::paid_to(st, &connector, None, limit, ACTIVITY_SCAN))
        .await?;
    for sale in sales.iter().filter(|sale| sale.hop(&connector).is_none()) {
        let Some(member) = sale.chain.last() else {
            continue;
        };
        items.push(ActivityItem {
            receipt: Some(sale.id.to_hex()),
            title: Some(sale.title.clone()),
            currency: Some(sale.currency.as_str().to_string()),
            share_minor: Some(sale.paid(&connector)),
            ..event(sale.receipt.created_at_ms, "sale", member)
        });
    }
    items.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(a.kind.cmp(&b.kind)));
    items.truncate(limit);
    Ok(Activity { items })
}

/// `GET /v1/community/activity`
pub async fn list_activity(
    State(s): State<AppState>,
    _auth: WriteAuth,
    AppQuery(q): AppQuery<ActivityQuery>,
) -> Result<AppJson<Activity>, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_ACTIVITY {
        return Err(ApiError::bad_request(format!(
            "limit: expected 1 to {MAX_ACTIVITY}, got {limit}"
        )));
    }
    Ok(AppJson(activity(&s, limit).await?))
}

/// A membership ended (`POST /v1/community/members/<key>/remove`' answer).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberEnded {
    /// The member, hex.
    pub member: String,
    /// `removed` or `left`.
    pub status: String,
    /// From when her referrals pay no connector share.
    pub ends_at_ms: u64,
    /// The MembershipEnd attestations signed, hex (one per membership that admitted her;
    /// none when an earlier removal's End was stored but her file not yet changed).
    pub ends: Vec<String>,
    /// Her sessions ended (her key left memory with them).
    pub sessions_ended: usize,
}

/// Signs a MembershipEnd by `signer` (the connector or the member) of each membership that
/// admits `member` now; the ids signed and the time.
async fn end_memberships(
    s: &AppState,
    member: &PublicKey,
    signer: crate::signer::Signer<'_>,
) -> Result<(Vec<Id>, u64), ApiError> {
    let (_, roster) = roster(s).await?;
    let now = now_ms();
    let open: Vec<Id> = roster
        .admitting(member, now)
        .iter()
        .map(|a| a.membership)
        .collect();
    let mut ends = Vec::with_capacity(open.len());
    for membership in open {
        let att = s
            .sign_and_store(
                Body::MembershipEnd(MembershipEnd {
                    author: signer.public(),
                    membership,
                    ends_at_ms: now,
                    created_at_ms: now,
                }),
                signer,
            )
            .await;
        // Forget the roster whatever came of it: a first End may be stored already.
        s.community.forget_roster();
        ends.push(att?.id);
    }
    Ok((ends, now))
}

/// The connector removes `member`: its key signs a MembershipEnd from now of each membership
/// that admits her (her referrals from now on pay no connector share), her file says
/// `removed` (a hosted member), and every session of hers ends, so that her key leaves memory
/// at once. She may sign in again read-only. A member no longer admitted is 409; unknown, 404.
pub async fn remove_member(s: &AppState, member: PublicKey) -> Result<MemberEnded, ApiError> {
    let _ending = s.community.ending.lock().await;
    let (_, roster) = roster(s).await?;
    let file = s.community.hosted_status(&member);
    let now = now_ms();
    let Some(adm) = roster.current(&member, now).cloned() else {
        if file.is_none() {
            return Err(ApiError::not_found(format!(
                "no member {member} in this community (see GET /v1/community/members)"
            )));
        }
        return Err(ApiError::conflict(format!(
            "member {member}'s membership is not in this node's store: nothing to end"
        )));
    };
    let connector = s.identities.signer(None)?;
    let (ends, at) = end_memberships(s, &member, connector.into()).await?;
    if ends.is_empty() && file != Some(Status::Active) {
        let when = adm
            .end
            .map_or(String::new(), |e| format!(" since {}", e.ends_at_ms));
        return Err(ApiError::conflict(format!(
            "member {member} is no longer admitted{when}: nothing to remove"
        )));
    }
    // Her file next, then her sessions: a sign-in between the End and the file's change
    // started a session that ends here too.
    if file == Some(Status::Active) {
        member_file(s, move |n| n.set_status(&member, Status::Removed)).await?;
    }
    let sessions_ended = s
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .end_all(&member);
    tracing::info!(%member, ends = ends.len(), sessions_ended, "a member removed from the community");
    Ok(MemberEnded {
        member: member.to_hex(),
        status: "removed".into(),
        ends_at_ms: adm
            .end
            .filter(|_| ends.is_empty())
            .map_or(at, |e| e.ends_at_ms),
        ends: ends.iter().map(Id::to_hex).collect(),
        sessions_ended,
    })
}

/// `POST /v1/community/members/<key>/remove`
pub async fn remove(
    State(s): State<AppState>,
    _auth: WriteAuth,
    UrlPath(key): UrlPath<String>,
) -> Result<AppJson<MemberEnded>, ApiError> {
    let member = crate::identity::parse_key(&key, "member")?;
    Ok(AppJson(remove_member(&s, member).await?))
}

/// A hosted member leaves the community of her own accord: her key (from her session) signs
/// a MembershipEnd from now of each membership that admits her, her file says `left`, and
/// every session of hers ends (the page that asked starts her a read-only one).
pub async fn leave(s: &AppState, key: &MemberKey) -> Result<MemberEnded, ApiError> {
    let member = key.public();
    let _ending = s.community.ending.lock().await;
    if s.community.hosted_status(&member) != Some(Status::Active) {
        return Err(ApiError::conflict(
            "you are no longer a member of this community: there is nothing to leave",
        ));
    }
    let (ends, at) = end_memberships(s, &member, key.into()).await?;
    member_file(s, move |n| n.set_status(&member, Status::Left)).await?;
    let sessions_ended = s
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .end_all(&member);
    tracing::info!(%member, ends = ends.len(), sessions_ended, "a member left the community");
    Ok(MemberEnded {
        member: member.to_hex(),
        status: "left".into(),
        ends_at_ms: at,
        ends: ends.iter().map(Id::to_hex).collect(),
        sessions_ended,
    })
}

// ---------------------------------------------------------------------------------------------
// A person with her own node joins with her own key (the invite link's second way).

/// How far the time a member's node signed its request may be from this node's clock.
pub const MAX_REQUEST_SKEW_MS: u64 = 10 * 60_000;

/// An own-node member admitted: her Membership, and what her node needs with it.
#[derive(Debug)]
pub struct JoinedOwn {
    /// The community.
    pub community: Community,
    /// The Membership attestation the connector signed.
    pub membership: passalong_protocol::Attestation,
    /// The Community attestation it depends on, for her node to import with it.
    pub community_attestation: Option<passalong_protocol::Attestation>,
    /// Whether this join admitted her (false: she was admitted already, and this is the
    /// Membership that admits her).
    pub new: bool,
}

/// A person with her own node joins with the invite `token`: her node signed the membership
/// request of `member` at `created_at_ms` (`Membership::request_message`) with her key, and
/// this node checks that signature (strict ed25519) and that the time is at most
/// [`MAX_REQUEST_SKEW_MS`] before its clock (and no later than the protocol's future skew,
/// two minutes, after it: a later Membership would be held), spends the invite as a hosted join does (once, before
/// anything is signed), and its key admits her: the Membership it returns is stored here and
/// gossiped in the connector's market. A member admitted already (her node retrying a join it
/// could not finish, with the invite she used or another) is answered with the Membership
/// that admits her, and the invite is left as it was: a join can be retried safely.
pub async fn join_own(
    s: &AppState,
    token: &str,
    member: PublicKey,
    created_at_ms: u64,
    signature: [u8; 64],
) -> Result<JoinedOwn, ApiError> {
    let now = now_ms();
    // Ahead of the clock, only as far as the protocol takes an attestation at once: a
    // Membership dated later would be held, after the invite was spent.
    let ahead = passalong_protocol::limits::MAX_FUTURE_SKEW_MS.min(MAX_REQUEST_SKEW_MS);
    if now.saturating_sub(created_at_ms) > MAX_REQUEST_SKEW_MS
        || created_at_ms.saturating_sub(now) > ahead
    {
        return Err(ApiError::bad_request(format!(
            "created_at_ms {created_at_ms} is too far from this node's clock ({now}; at most 10 minutes before it, {} s after): check your computer's clock and ask again",
            ahead / 1000
        )));
    }
    let _joining = s.community.joining.lock().await;
    let community = s
        .community
        .current()
        .ok_or_else(|| join_error(InviteError::Unknown))?;
    // The invite before anything else: a wrong link is told as such. One she used herself
    // may be a retry (answered below, once her signature is checked).
    let used_by_her = {
        let node = s.community.lock();
        match node.invites.check(token, now) {
            Ok(_) => false,
            Err(InviteError::Used) if node.invites.used_by(token) == Some(member) => true,
            Err(e) => return Err(join_error(e)),
        }
    };
    let connector = s.identities.signer(None)?;
    if member == connector.public() {
        return Err(ApiError::bad_request(
            "this is the community node's own key: it runs the community, it does not join it",
        ));
    }
    let message = Membership::request_message(&community.id, &member, created_at_ms);
    passalong_protocol::signature::verify_strict(&member, &message, &signature).map_err(|e| {
        ApiError::bad_request(format!(
            "the membership request's signature is not the member's ({e}): sign Membership::request_message of this community with her key"
        ))
    })?;
    let (_, roster) = roster(s).await?;
    if let Some(admitted) = roster.current(&member, now).filter(|a| a.admits_at(now)) {
        let (id, community_id) = (admitted.membership, community.id);
        let (membership, community_attestation) = s
            .with_store(move |st| {
                Ok::<_, passalong_store::StoreError>((
                    st.attestation(&id)?,
                    st.attestation(&community_id)?,
                ))
            })
            .await?;
        let membership = membership
            .ok_or_else(|| ApiError::internal(format!("membership {id} is not stored")))?;
        tracing::info!(%member, membership = %membership.id, "an admitted member joined again");
        return Ok(JoinedOwn {
            community,
            membership,
            community_attestation,
            new: false,
        });
    }
    if used_by_her {
        // She used it and is no longer admitted: the invite is spent.
        return Err(join_error(InviteError::Used));
    }
    let lease = s
        .community
        .lock()
        .invites
        .reserve(token, now_ms())
        .map_err(join_error)?;
    // Spend the invite first, as a hosted join does: from here a failure costs the invite,
    // never lets it work twice.
    let (node, spent) = (s.community.clone(), lease.clone());
    let spent = tokio::task::spawn_blocking(move || {
        node.change_invites(|inv, now| inv.redeem(&spent, member, now).map_err(join_error))
    })
    .await
    .map_err(ApiError::internal)
    .and_then(|r| r);
    if let Err(e) = spent {
        s.community.lock().invites.release(&lease);
        return Err(e);
    }
    let membership = s
        .sign_and_store(
            Body::Membership(Membership {
                connector: connector.public(),
                community: community.id,
                member,
                member_signature: passalong_protocol::attestation::Sig64(signature),
                created_at_ms,
            }),
            connector,
        )
        .await?;
    s.community.forget_roster();
    let id = community.id;
    let community_attestation = s.with_store(move |st| st.attestation(&id)).await?;
    tracing::info!(%member, membership = %membership.id, "an own-node member joined");
    Ok(JoinedOwn {
        community,
        membership,
        community_attestation,
        new: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_given_the_addresses_they_can_dial() {
        let p = "12D3KooWPeer";
        let ext = vec!["/dns4/k.example/tcp/7424".to_string()];
        let listen = vec![
            "/ip4/127.0.0.1/tcp/7424".to_string(),
            "/ip4/192.0.2.7/tcp/7424".to_string(),
            "/ip4/0.0.0.0/tcp/7424".to_string(),
            "/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWRelay/p2p-circuit".to_string(),
            "/dns4/k.example/tcp/7424/p2p/12D3KooWPeer".to_string(),
        ];
        assert_eq!(
            relay_addrs_of(p, &ext, &listen),
            vec![
                "/dns4/k.example/tcp/7424/p2p/12D3KooWPeer".to_string(),
                "/ip4/192.0.2.7/tcp/7424/p2p/12D3KooWPeer".to_string(),
            ],
            "external first, no loopback beside others, no circuit, no duplicate"
        );
        // A node on loopback only (a test, a demo) gives its loopback addresses.
        assert_eq!(
            relay_addrs_of(p, &[], &listen[..1]),
            vec!["/ip4/127.0.0.1/tcp/7424/p2p/12D3KooWPeer".to_string()]
        );
        let many: Vec<String> = (0..20).map(|i| format!("/ip4/192.0.2.{i}/tcp/1")).collect();
        assert_eq!(relay_addrs_of(p, &[], &many).len(), MAX_RELAY_ADDRS);
        assert!(relay_addrs_of(p, &[], &[]).is_empty());
    }
}
