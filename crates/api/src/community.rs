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

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use passalong_accounts::community::{self as files, Community};
use passalong_accounts::invites::{self, Invite, InviteError, InviteId, Invites, State as Stage};
use passalong_accounts::members::{self, Status};
use passalong_accounts::{
    CommunityError, InvitesFileError, KdfParams, Member, MemberKey, Members, MembersError,
};
use passalong_protocol::attestation::{self, Body, Membership};
use passalong_protocol::{Id, Keypair, PublicKey};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ApiError, AppJson};
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
    let (node, record) = (
        s.community.clone(),
        Member {
            login: login.clone(),
            public_key: member,
            created_ms,
            membership: membership.id,
            status: Status::Active,
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
