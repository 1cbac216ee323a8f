//! A hosted member signs in with her login and password (issue 16): the password opens her
//! key file, and her key goes into a session of hers ([`Sessions::start_member`]), nowhere
//! else. A member whose membership ended (removed by the connector, or left) still signs in,
//! read-only ([`Sessions::start_read_only`]: her pages and earnings, no key, nothing signed),
//! for as long as her key file is kept; one who moved to her own node is refused.
//!
//! Opening a key file costs one argon2id run (tens of MiB for a fraction of a second), so a
//! flood of sign-ins must not take the node's memory or every core:
//! - [`passalong_accounts::throttle`] is asked first, and a try that must wait is answered 429
//!   with no argon2 run at all (a right password during the wait too: the answer cannot
//!   depend on the password, or the wait would not slow guessing);
//! - then an account's password is checked one at a time ([`passalong_accounts::quota`]'s
//!   [`CheckLimits`], under the folded login, known or not): while one check of hers runs or
//!   waits for a permit, another sign-in of the same login (or an export's password check) is
//!   answered 429 with `Retry-After: 1` before it queues for a permit, so that many
//!   connections signing one account in at once hold one permit, not all of them. The check
//!   counts as running until its argon2 work ends, even if the client went away meanwhile
//!   (`CheckTicket`, moved into the blocking task as the export's ticket is);
//! - the runs go to the blocking pool behind a semaphore of [`SignInGate::concurrency`]
//!   permits (the node's cores by default), with at most [`DEFAULT_MAX_WAITING`] sign-ins
//!   waiting for one; past that the answer is 503 "busy, retry", so memory stays under
//!   `argon2 memory × concurrency`.
//!
//! A member's key export checks her password the same way (`with_password`), and then
//! seals her key at the export cost under the same permit; so that exports, which a right
//! password does not slow, cannot hold the permits from others' sign-ins, each account may run
//! one export at a time and seal a few an hour ([`passalong_accounts::quota`]): past that the
//! answer is 429 with a `Retry-After`, before any password check.
//!
//! A login no member has takes the same path: it is throttled and counted the same, and its
//! password is checked against a decoy file ([`KeyFile::decoy`]) at the node's cost, so the
//! answer's timing does not tell which logins exist. A wrong password is answered no sooner
//! than [`WRONG_ANSWER_FLOOR_MS`] after the request came.
//!
//! Failures are counted by the client's address ([`SignInGate::client_ip`]): the TCP peer's,
//! or behind a reverse proxy on the same machine the rightmost entry of the header the
//! operator names (`client_ip_header`, e.g. `X-Forwarded-For`). The header is believed only
//! from a loopback peer: anyone else could write any address in it.
//!
//! [`Sessions::start_member`]: passalong_accounts::Sessions::start_member
//! [`Sessions::start_read_only`]: passalong_accounts::Sessions::start_read_only

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use passalong_accounts::members::{Status, PASSWORD_MAX_BYTES};
use passalong_accounts::quota::{CheckLimits, ExportLimits, Exports, Running};
use passalong_accounts::throttle::{self, Throttle, Verdict};
use passalong_accounts::{vault, KdfParams, KeyFile, Login, MemberKey, Session, SessionId};
use passalong_protocol::PublicKey;
use rand_core::OsRng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

/// The name of the header a proxy puts the client's address in (re-exported for the node's
/// configuration).
pub use axum::http::HeaderName;

use crate::state::AppState;
use crate::writer::now_ms;

/// Sign-ins that may wait for an argon2 permit; one more is told the node is busy.
pub const DEFAULT_MAX_WAITING: usize = 64;
/// A wrong password is answered no sooner than this after the request came, whatever the
/// argon2 cost (a known login or not, a fast machine or not).
pub const WRONG_ANSWER_FLOOR_MS: u64 = 400;

/// Why a sign-in did not start a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// The login is no member's, or the password is not hers (the answer does not say which).
    #[error("wrong login or password")]
    Wrong,
    /// Too many failures from this address (or on this account from it): tried again too soon.
    #[error("too many failed sign-ins: try again in {} s", retry_after_s(*retry_after_ms))]
    Wait {
        /// Milliseconds until a try is allowed.
        retry_after_ms: u64,
    },
    /// A password check of this account is under way (a sign-in's, or an export's): one at a
    /// time per account, refused before it waits for an argon2 permit.
    #[error("this account's password is being checked already (one check at a time): try again in {} s", retry_after_s(*retry_after_ms))]
    InProgress {
        /// Milliseconds until a try is likely to be let through.
        retry_after_ms: u64,
    },
    /// Every argon2 permit is taken and the queue is full.
    #[error("the node is busy signing others in: retry in a moment")]
    Busy,
    /// An export of her key was refused before any password check: one of hers is running,
    /// or she has exported as often as an hour allows ([`passalong_accounts::quota`]).
    #[error("{}", too_many_exports(*running, *retry_after_ms))]
    TooManyExports {
        /// Milliseconds until an export is allowed.
        retry_after_ms: u64,
        /// An export of hers is running (else: the hour's exports are spent).
        running: bool,
    },
    /// The right password, but the member no longer acts here.
    #[error("{0}")]
    NotActive(&'static str),
    /// The password is longer than any member's can be.
    #[error("a password is at most {PASSWORD_MAX_BYTES} bytes")]
    TooLong,
    /// The node failed (logged).
    #[error("the node failed to sign you in; see its log")]
    Internal,
}

fn retry_after_s(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

fn too_many_exports(running: bool, retry_after_ms: u64) -> String {
    let s = retry_after_s(retry_after_ms);
    if running {
        format!("an export of your key is running: one at a time (try again in {s} s)")
    } else {
        format!(
            "your key was exported as often as an hour allows: try again in {s} s (each export is sealed at a high cost, which every member's sign-in shares)"
        )
    }
}

impl SignInError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            SignInError::Wrong => StatusCode::UNAUTHORIZED,
            SignInError::Wait { .. }
            | SignInError::InProgress { .. }
            | SignInError::TooManyExports { .. } => StatusCode::TOO_MANY_REQUESTS,
            SignInError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            SignInError::NotActive(_) => StatusCode::FORBIDDEN,
            SignInError::TooLong => StatusCode::BAD_REQUEST,
            SignInError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `Retry-After` it is answered with, seconds (a wait, or busy).
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            SignInError::Wait { retry_after_ms }
            | SignInError::InProgress { retry_after_ms }
            | SignInError::TooManyExports { retry_after_ms, .. } => {
                Some(retry_after_s(*retry_after_ms))
            }
            SignInError::Busy => Some(1),
            _ => None,
        }
    }
}

/// What every sign-in passes through (see the module docs).
#[derive(Debug)]
pub struct SignInGate {
    permits: Arc<Semaphore>,
    concurrency: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    throttle: Mutex<Throttle>,
    client_ip_header: Option<HeaderName>,
    checks: AtomicU64,
    checking: Arc<Mutex<Running<String>>>,
    exports: Arc<Mutex<Exports>>,
}

impl Default for SignInGate {
    /// One argon2 run per core, [`DEFAULT_MAX_WAITING`] waiting, the throttle's default
    /// limits, and no proxy header believed.
    fn default() -> Self {
        SignInGate::new(
            default_concurrency(),
            DEFAULT_MAX_WAITING,
            throttle::Limits::default(),
            None,
        )
    }
}

/// The machine's cores (one argon2 run each at once).
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl SignInGate {
    /// `concurrency` argon2 runs at once (at least one), `max_waiting` more waiting,
    /// failures slowed by `limits`, and the client's address read from `client_ip_header`
    /// when a loopback peer (a reverse proxy) sends it.
    pub fn new(
        concurrency: usize,
        max_waiting: usize,
        limits: throttle::Limits,
        client_ip_header: Option<HeaderName>,
    ) -> SignInGate {
        let concurrency = concurrency.max(1);
        SignInGate {
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            waiting: AtomicUsize::new(0),
            max_waiting,
            throttle: Mutex::new(Throttle::new(limits)),
            client_ip_header,
            checks: AtomicU64::new(0),
            checking: Arc::new(Mutex::new(CheckLimits::default().running())),
            exports: Arc::new(Mutex::new(Exports::new(ExportLimits::default()))),
        }
    }

    /// The same gate with key exports held to `limits` (the default: one at a time per
    /// account, [`ExportLimits::default`]'s number an hour).
    pub fn with_export_limits(self, limits: ExportLimits) -> SignInGate {
        SignInGate {
            exports: Arc::new(Mutex::new(Exports::new(limits))),
            ..self
        }
    }

    /// How key exports are held per account.
    pub fn export_limits(&self) -> ExportLimits {
        lock(&self.exports).limits()
    }

    /// Starts an export of `member`'s key, or refuses it (429) when one of hers is running or
    /// her exports for the hour are spent: asked before her password is checked, so that a
    /// refused export waits for no argon2 permit. The export counts as running until the
    /// ticket is dropped, and in the hour if it was marked [`ExportTicket::sealed`] by then.
    pub(crate) fn begin_export(&self, member: PublicKey) -> Result<ExportTicket, SignInError> {
        let mut exports = lock(&self.exports);
        match exports.begin(&member, now_ms()) {
            Verdict::Go => Ok(ExportTicket {
                exports: self.exports.clone(),
                member,
                sealed: false,
            }),
            Verdict::Wait { retry_after_ms } => {
                let running = exports.running_for(&member);
                Err(SignInError::TooManyExports {
                    retry_after_ms,
                    running,
                })
            }
        }
    }

    /// Starts a check of `account`'s password (its folded login), or refuses it (429) while
    /// another check of the account runs or waits for a permit: asked before the permit, so
    /// that one account's sign-ins hold one permit at most. The check counts as running until
    /// the ticket is dropped.
    pub(crate) fn begin_check(&self, account: &str) -> Result<CheckTicket, SignInError> {
        let account = account.to_string();
        match lock(&self.checking).begin(&account) {
            Verdict::Go => Ok(CheckTicket {
                checking: self.checking.clone(),
                account,
            }),
            Verdict::Wait { retry_after_ms } => Err(SignInError::InProgress { retry_after_ms }),
        }
    }

    /// argon2 runs allowed at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Passwords checked since the node started (an argon2 run each), known logins or not.
    pub fn password_checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// The address a request came from: the TCP peer's, or, when the peer is loopback (a
    /// reverse proxy on this machine) and the node names a header, that header's rightmost
    /// entry (the address the proxy itself saw; entries to its left are the client's word).
    /// A peer unknown (the router served without [`crate::serve_app`]) counts as 0.0.0.0.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
        let Some(peer) = peer.map(|p| p.ip()) else {
            return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        };
        let loopback = match peer {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
            IpAddr::V4(v4) => v4.is_loopback(),
        };
        if !loopback {
            return peer;
        }
        self.client_ip_header
            .as_ref()
            .and_then(|name| forwarded(headers, name))
            .unwrap_or(peer)
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        lock(&self.throttle)
    }

    /// A permit for one argon2 run: at once if one is free, after a wait if fewer than
    /// `max_waiting` are waiting, else [`SignInError::Busy`].
    async fn permit(&self) -> Result<OwnedSemaphorePermit, SignInError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        let _waiting = Waiting::enter(&self.waiting, self.max_waiting).ok_or(SignInError::Busy)?;
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SignInError::Busy)
    }
}

#[cfg(test)]
impl SignInGate {
    /// Takes one argon2 permit and keeps it, as a long export would.
    pub(crate) async fn hold_permit(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Sign-ins and exports waiting for a permit now.
    pub(crate) fn waiting_now(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An export of a member's key that [`SignInGate::begin_export`] let start: it runs until
/// dropped. Moved into the blocking task that checks the password and seals the file, so that
/// an export whose client went away still counts until its argon2 work ends.
#[derive(Debug)]
pub(crate) struct ExportTicket {
    exports: Arc<Mutex<Exports>>,
    member: PublicKey,
    sealed: bool,
}

impl ExportTicket {
    /// The file was sealed: the export counts in her hour.
    pub(crate) fn sealed(&mut self) {
        self.sealed = true;
    }
}

impl Drop for ExportTicket {
    fn drop(&mut self) {
        lock(&self.exports).end(&self.member, now_ms(), self.sealed);
    }
}

/// A check of an account's password that [`SignInGate::begin_check`] let start: it runs until
/// dropped. Moved into the blocking task that runs argon2, with the permit, so that a check
/// whose client went away still counts until its argon2 work ends (and one whose client went
/// away while it waited for a permit ends then, having run nothing).
#[derive(Debug)]
pub(crate) struct CheckTicket {
    checking: Arc<Mutex<Running<String>>>,
    account: String,
}

impl Drop for CheckTicket {
    fn drop(&mut self) {
        lock(&self.checking).end(&self.account);
    }
}

/// A place in the queue, given back when dropped (a client that goes away while waiting
/// leaves it too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize, max: usize) -> Option<Waiting<'a>> {
        let before = count.fetch_add(1, Ordering::SeqCst);
        if before >= max {
            count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The rightmost address in the last `name` header (`203.0.113.7`, `[2001:db8::1]:4711`).
fn forwarded(headers: &HeaderMap, name: &HeaderName) -> Option<IpAddr> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The TCP peer of a request, as [`crate::serve_app`] records it (`None` when the router is
/// served otherwise).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// A member's new session.
#[derive(Debug)]
pub struct MemberSession {
    /// Its id (the cookie or bearer value).
    pub id: SessionId,
    /// The session, holding her key.
    pub session: Session,
    /// Her login, folded.
    pub login: String,
}

/// What the throttle counts a sign-in as: the folded login, known or not (a login that
/// breaks the rule is cut short, so that a long one costs no memory).
fn account_of(login: &str) -> String {
    match Login::parse(login.trim()) {
        Ok(l) => l.to_string(),
        Err(_) => login
            .trim()
            .chars()
            .take(40)
            .collect::<String>()
            .to_lowercase(),
    }
}

/// Signs a hosted member in as `login` with `password`, for a request from `ip` (see the
/// module docs for the order of the checks).
pub async fn sign_in_member(
    s: &AppState,
    login: &str,
    password: &[u8],
    ip: IpAddr,
) -> Result<MemberSession, SignInError> {
    let came = Instant::now();
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(SignInError::TooLong);
    }
    let account = account_of(login);
    let gate = s.signin.clone();
    if let Verdict::Wait { retry_after_ms } = gate.throttle().check(&account, ip, now_ms()) {
        tracing::info!(%ip, account = %account, retry_after_ms, "sign-in refused: slowed after failures");
        return Err(SignInError::Wait { retry_after_ms });
    }
    let check = gate.begin_check(&account).inspect_err(|_| {
        tracing::info!(%ip, account = %account, "sign-in refused: a check of the account's password is under way");
    })?;
    let permit = gate.permit().await.inspect_err(|_| {
        tracing::warn!(%ip, "sign-in refused: every argon2 permit taken and the queue full");
    })?;
    let record = s.community.sign_in_record(&account);
    let target = s.member_kdf;
    let file = match &record {
        Some((_, _, file)) => file.clone(),
        None => KeyFile::decoy(target, &mut OsRng),
    };
    let secret = Zeroizing::new(password.to_vec());
    gate.checks.fetch_add(1, Ordering::Relaxed);
    let opened = tokio::task::spawn_blocking(move || {
        let _check = check;
        open_and_reseal(&file, &secret, target, permit)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "a sign-in's password check failed");
        SignInError::Internal
    })?;
    let (member, status, (keypair, resealed)) = match (record, opened) {
        (Some((member, status, _)), Ok(ok)) => (member, status, ok),
        (record, Err(vault::VaultError::WrongPassword)) | (record @ None, Err(_)) => {
            gate.throttle().failed(&account, ip, now_ms());
            tracing::info!(%ip, account = %account, known = record.is_some(), "sign-in with a wrong login or password");
            let floor = Duration::from_millis(WRONG_ANSWER_FLOOR_MS);
            tokio::time::sleep(floor.saturating_sub(came.elapsed())).await;
            return Err(SignInError::Wrong);
        }
        (Some((member, _, _)), Err(e)) => {
            tracing::error!(%member, error = %e, "a hosted member's key file cannot be opened: restore it from a backup of the data dir");
            return Err(SignInError::Internal);
        }
        (None, Ok(_)) => {
            // A decoy opened: impossible (its check is 32 random bytes).
            tracing::error!("a sign-in's decoy key file opened");
            return Err(SignInError::Internal);
        }
    };
    gate.throttle().succeeded(&account, ip, now_ms());
    if status == Status::Moved {
        return Err(SignInError::NotActive(
            "this account moved to its owner's own node: sign in there",
        ));
    }
    if let Some(file) = resealed {
        reseal(s, member, file).await;
    }
    note_signin(s, member).await;
    let now = now_ms();
    let (id, session) = {
        let mut sessions = s.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if status == Status::Active {
            sessions.start_member(MemberKey::new(keypair), now, &mut OsRng)
        } else {
            // Removed, or gone of her own accord: her pages and earnings, read-only. Her
            // key is dropped here, never kept in a session.
            drop(keypair);
            sessions.start_read_only(member, now, &mut OsRng)
        }
    };
    tracing::info!(%member, login = %account, %ip, read_only = session.read_only(), "a hosted member signed in");
    Ok(MemberSession {
        id,
        session,
        login: account,
    })
}

/// Checks a signed-in member's password again, before something that needs it (exporting
/// her key), and runs `then` with her key under the same argon2 permit: the same throttle,
/// permits and wrong-answer floor as a sign-in, counted on her login, so that a session in
/// someone else's hands is no faster a way to guess her password. A member whose file says she
/// moved to her own node is refused; a removed or departed one is not (exporting is her way on).
pub(crate) async fn with_password<T: Send + 'static>(
    s: &AppState,
    member: &PublicKey,
    password: &[u8],
    ip: IpAddr,
    then: impl FnOnce(passalong_protocol::Keypair) -> Result<T, vault::VaultError> + Send + 'static,
) -> Result<(String, T), SignInError> {
    let came = Instant::now();
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(SignInError::TooLong);
    }
    let Some((login, status, file)) = s.community.key_record(member) else {
        return Err(SignInError::NotActive(
            "no hosted member's key file on this node is yours: only a member hosted here can export her key",
        ));
    };
    if status == Status::Moved {
        return Err(SignInError::NotActive(
            "this account moved to its owner's own node: its key is there",
        ));
    }
    let gate = s.signin.clone();
    if let Verdict::Wait { retry_after_ms } = gate.throttle().check(&login, ip, now_ms()) {
        tracing::info!(%ip, account = %login, retry_after_ms, "password check refused: slowed after failures");
        return Err(SignInError::Wait { retry_after_ms });
    }
    let check = gate.begin_check(&login).inspect_err(|_| {
        tracing::info!(%ip, account = %login, "password check refused: another check of the account's is under way");
    })?;
    let permit = gate.permit().await?;
    let secret = Zeroizing::new(password.to_vec());
    gate.checks.fetch_add(1, Ordering::Relaxed);
    let done = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let opened = vault::open(&file, &secret);
        // The password is checked: what follows (an export's sealing) is not a check.
        drop(check);
        then(opened?.keypair)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "a password check failed");
        SignInError::Internal
    })?;
    match done {
        Ok(out) => {
            gate.throttle().succeeded(&login, ip, now_ms());
            Ok((login, out))
        }
        Err(vault::VaultError::WrongPassword) => {
            gate.throttle().failed(&login, ip, now_ms());
            tracing::info!(%ip, account = %login, "a member's password, asked again, was wrong");
            let floor = Duration::from_millis(WRONG_ANSWER_FLOOR_MS);
            tokio::time::sleep(floor.saturating_sub(came.elapsed())).await;
            Err(SignInError::Wrong)
        }
        Err(e) => {
            tracing::error!(%member, error = %e, "a hosted member's key file cannot be opened or sealed");
            Err(SignInError::Internal)
        }
    }
}

type Opened = (passalong_protocol::Keypair, Option<KeyFile>);

/// Opens `file` with `password`, and seals it anew at `target` when it was sealed at less
/// (the node's cost was raised since): both argon2 runs under the one permit.
fn open_and_reseal(
    file: &KeyFile,
    password: &[u8],
    target: KdfParams,
    _permit: OwnedSemaphorePermit,
) -> Result<Opened, vault::VaultError> {
    let opened = vault::open(file, password)?;
    let resealed = if opened.params.weaker_than(&target) {
        match vault::seal(&opened.keypair, &opened.extra, password, target, &mut OsRng) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(error = %e, "re-sealing a key file at the node's cost failed");
                None
            }
        }
    } else {
        None
    };
    Ok((opened.keypair, resealed))
}

/// Records a member's sign-in in her file (the connector's page shows it); a failure is
/// logged, and the sign-in goes on.
async fn note_signin(s: &AppState, member: PublicKey) {
    let node = s.community.clone();
    let at = now_ms();
    match tokio::task::spawn_blocking(move || node.note_signin(&member, at)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(%member, error = %e, "recording a member's sign-in failed"),
        Err(e) => tracing::warn!(%member, error = %e, "recording a member's sign-in failed"),
    }
}

/// Replaces a member's key file by the one sealed at the node's cost; a failure leaves the
/// old one, which still opens (logged, and tried again at her next sign-in).
async fn reseal(s: &AppState, member: PublicKey, file: KeyFile) {
    let (m_kib, t) = (file.kdf.m_kib, file.kdf.t);
    let node = s.community.clone();
    match tokio::task::spawn_blocking(move || node.reseal(&member, file)).await {
        Ok(Ok(())) => {
            tracing::info!(%member, m_kib, t, "a member's key file re-sealed at the node's cost")
        }
        Ok(Err(e)) => tracing::warn!(%member, error = %e, "re-sealing a member's key file failed"),
        Err(e) => tracing::warn!(%member, error = %e, "re-sealing a member's key file failed"),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn gate(header: Option<&'static str>) -> SignInGate {
        SignInGate::new(
            1,
            1,
            throttle::Limits::default(),
            header.map(HeaderName::from_static),
        )
    }

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_header_is_believed_from_a_loopback_proxy_only() {
        let g = gate(Some("x-forwarded-for"));
        let proxy: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let outside: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let h = xff(&["10.0.0.1, 203.0.113.9"]);
        assert_eq!(
            g.client_ip(&h, Some(proxy)),
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "the rightmost: what the proxy saw"
        );
        assert_eq!(
            g.client_ip(&h, Some(outside)),
            outside.ip(),
            "anyone else could forge it"
        );
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
        assert_eq!(
            g.client_ip(&h, Some(mapped)),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // The last header of several; an address with a port; nonsense falls back to the peer.
        let two = xff(&["192.0.2.1", "[2001:db8::1]:4711"]);
        assert_eq!(
            g.client_ip(&two, Some(proxy)),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(g.client_ip(&xff(&["unknown"]), Some(proxy)), proxy.ip());
        assert_eq!(g.client_ip(&HeaderMap::new(), Some(proxy)), proxy.ip());
        // No header named: the peer, proxy or not.
        assert_eq!(gate(None).client_ip(&h, Some(proxy)), proxy.ip());
        assert_eq!(
            gate(None).client_ip(&h, None),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
    }

    #[tokio::test]
    async fn past_the_permits_and_the_queue_a_sign_in_is_told_to_retry() {
        let g = Arc::new(gate(None));
        let running = g.permit().await.expect("a free permit");
        let waiter = {
            let g = g.clone();
            tokio::spawn(async move { g.permit().await.map(drop) })
        };
        while g.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            g.permit().await.err(),
            Some(SignInError::Busy),
            "one waiting is the queue's bound"
        );
        drop(running);
        assert_eq!(waiter.await.unwrap(), Ok(()), "the waiter got the permit");
        assert_eq!(g.waiting.load(Ordering::SeqCst), 0);
        // A waiter that goes away gives its place back.
        let running = g.permit().await.unwrap();
        let gone = {
            let g = g.clone();
            tokio::spawn(async move { g.permit().await.map(drop) })
        };
        while g.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        assert_eq!(g.waiting.load(Ordering::SeqCst), 0);
        drop(running);
    }

    #[test]
    fn errors_say_when_to_retry() {
        let w = SignInError::Wait {
            retry_after_ms: 1_001,
        };
        assert_eq!(
            (w.status(), w.retry_after_s()),
            (StatusCode::TOO_MANY_REQUESTS, Some(2))
        );
        assert!(w.to_string().contains("2 s"), "{w}");
        assert_eq!(
            SignInError::Wait { retry_after_ms: 1 }.retry_after_s(),
            Some(1)
        );
        assert_eq!(SignInError::Busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        let e = SignInError::InProgress {
            retry_after_ms: 1_000,
        };
        assert_eq!(
            (e.status(), e.retry_after_s()),
            (StatusCode::TOO_MANY_REQUESTS, Some(1))
        );
        assert!(e.to_string().contains("try again in 1 s"), "{e}");
        for running in [true, false] {
            let e = SignInError::TooManyExports {
                retry_after_ms: 2_000,
                running,
            };
            assert_eq!(
                (e.status(), e.retry_after_s()),
                (StatusCode::TOO_MANY_REQUESTS, Some(2))
            );
            assert!(e.to_string().contains("2 s"), "{e}");
            assert_eq!(e.to_string().contains("one at a time"), running, "{e}");
        }
        assert_eq!(SignInError::Wrong.retry_after_s(), None);
    }

    #[test]
    fn the_throttle_counts_logins_folded_and_nonsense_cut_short() {
        assert_eq!(account_of(" Anna "), "anna");
        assert_eq!(account_of(&"X".repeat(1000)).len(), 40);
        assert_eq!(account_of("An Na"), "an na");
    }
}
