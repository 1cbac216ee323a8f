//! Who a request of the JSON API acts as ([`Actor`]), and the member's sign-in and sign-out
//! that give her a bearer session (`POST /v1/signin`, `POST /v1/signout`).
//!
//! - `Authorization: Bearer <api-token>` is the operator: the node's own identities, by
//!   [`Identities`](crate::Identities)' rules (`"as"` names one it holds).
//! - `Authorization: Bearer pls.<hex>` is a hosted member's session, as `/v1/signin` started
//!   it: she acts as herself only (an `"as"` naming anyone else is 403), and signs with the key
//!   her session holds. Only members' sessions are accepted so: the operator has the token.
//!
//! The API never reads the dashboard's cookie: a bearer is never sent by a browser on its
//! own, so the API needs no CSRF token.

use axum::extract::{FromRequestParts, OptionalFromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use passalong_accounts::{Role, Session, SessionId};
use passalong_protocol::PublicKey;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, AppJson};
use crate::identity::parse_key;
use crate::signer::Signer;
use crate::signin::{sign_in_member, Peer, SignInError};
use crate::state::{constant_time_eq, AppState};
use crate::writer::now_ms;

/// Why a read-only session (a member removed from the community, or gone of her own
/// accord) cannot sign.
pub const READ_ONLY: &str = "your membership of this community has ended: your account here is read-only (you can see your pages and earnings, but sign nothing; export your key to go on from a node of your own)";

/// The prefix of a member's bearer session.
pub const SESSION_PREFIX: &str = "pls.";

/// Who a request acts as.
#[derive(Debug, Clone)]
pub enum Actor {
    /// The node's operator (the API token).
    Operator,
    /// A hosted member, signed in through `/v1/signin`.
    Member {
        /// Her session's id.
        id: SessionId,
        /// Her session (holding her key).
        session: Session,
    },
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        message: message.into(),
        reason: None,
    }
}

impl Actor {
    /// The identity the request acts as, given its `as`: the operator's by the node's
    /// identities; a member's is herself, and naming anyone else is 403.
    pub fn identity(&self, s: &AppState, as_: Option<&str>) -> Result<PublicKey, ApiError> {
        match self {
            Actor::Operator => Ok(s.identities.signer(as_)?.public()),
            Actor::Member { session, .. } => {
                if let Some(h) = as_ {
                    if parse_key(h, "as")? != session.identity {
                        return Err(forbidden(
                            "a member acts as herself only: leave out \"as\", or name your own key",
                        ));
                    }
                }
                Ok(session.identity)
            }
        }
    }

    /// The key the request signs with, given its `as` (the same rules as
    /// [`Actor::identity`]): a member's is the one her session holds.
    pub fn signer<'a>(
        &'a self,
        s: &'a AppState,
        as_: Option<&str>,
    ) -> Result<Signer<'a>, ApiError> {
        match self {
            Actor::Operator => Ok(Signer::Node(s.identities.signer(as_)?)),
            Actor::Member { session, .. } => {
                self.identity(s, as_)?;
                match session.key.as_deref() {
                    Some(k) if k.public() == session.identity => Ok(Signer::Member(k)),
                    None => Err(forbidden(READ_ONLY)),
                    Some(_) => Err(forbidden("this session holds no key: sign in again")),
                }
            }
        }
    }

    /// Refuses anyone but the operator (the node's own settings, peers, the community).
    pub fn operator(&self) -> Result<(), ApiError> {
        match self {
            Actor::Operator => Ok(()),
            Actor::Member { .. } => Err(forbidden(
                "only the node's operator (the API token) may do this",
            )),
        }
    }

    /// The actor an `Authorization` header names, `None` without one.
    fn of(s: &AppState, headers: &HeaderMap) -> Result<Option<Actor>, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        if let Some(hex) = given.strip_prefix(SESSION_PREFIX) {
            let id = SessionId::from_hex(hex).ok_or_else(expired)?;
            let session = s
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .touch(&id, now_ms())
                .filter(|session| session.role == Role::Member)
                .ok_or_else(expired)?;
            return Ok(Some(Actor::Member { id, session }));
        }
        // Compare in constant time: the token guards the node's keys.
        if constant_time_eq(given.as_bytes(), s.token.as_bytes()) {
            return Ok(Some(Actor::Operator));
        }
        Err(ApiError::unauthorized())
    }
}

fn expired() -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message:
            "this session has ended (signed out, or expired): sign in again with POST /v1/signin"
                .into(),
        reason: None,
    }
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        Actor::of(s, &parts.headers)?.ok_or_else(ApiError::unauthorized)
    }
}

impl OptionalFromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Option<Self>, ApiError> {
        Actor::of(s, &parts.headers)
    }
}

/// Whose private data a read without credentials may see: on a node reached only on
/// loopback, the node's own identities (as before members existed); on a node reached from
/// outside (it runs a community, or has a `public_url`), no one's.
pub fn reader(
    s: &AppState,
    actor: Option<&Actor>,
    as_: Option<&str>,
) -> Result<PublicKey, ApiError> {
    match actor {
        Some(a) => a.identity(s, as_),
        None if s.exposed() => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "this node is reachable from outside: a private read needs `Authorization: Bearer <token>` (the operator) or a member's session (POST /v1/signin)".into(),
            reason: None,
        }),
        None => Ok(s.identities.signer(as_)?.public()),
    }
}

/// `POST /v1/signin` body.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// Her login.
    pub login: String,
    /// Her password.
    pub password: String,
}

/// `POST /v1/signin` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The bearer to send: `Authorization: Bearer pls.<hex>`.
    pub session: String,
    /// The session's CSRF token (the dashboard's forms; the API does not need it).
    pub csrf: String,
    /// When the session ends at the latest (it ends sooner when unused for two hours).
    pub expires_ms: u64,
    /// Whom it acts as, hex.
    pub identity: String,
}

impl IntoResponse for SignInError {
    fn into_response(self) -> Response {
        let retry = self.retry_after_s();
        let code = match &self {
            SignInError::Wrong => "unauthorized",
            SignInError::Wait { .. }
            | SignInError::InProgress { .. }
            | SignInError::TooManyExports { .. } => "too_many_requests",
            SignInError::Busy => "unavailable",
            SignInError::NotActive(_) => "forbidden",
            SignInError::TooLong => "bad_request",
            SignInError::Internal => "internal",
        };
        let mut res = ApiError {
            status: self.status(),
            code,
            message: self.to_string(),
            reason: None,
        }
        .into_response();
        if let Some(secs) = retry {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// `POST /v1/signin`: a hosted member's login and password start a session she sends as a
/// bearer.
pub async fn signin(
    State(s): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    AppJson(req): AppJson<SignInRequest>,
) -> Result<AppJson<SignedIn>, SignInError> {
    let ip = s.signin.client_ip(&headers, peer);
    let m = sign_in_member(&s, &req.login, req.password.as_bytes(), ip).await?;
    let max_age_ms = s
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .max_age_ms(Role::Member);
    Ok(AppJson(SignedIn {
        session: format!("{SESSION_PREFIX}{}", m.id.to_hex()),
        csrf: m.session.csrf_hex(),
        expires_ms: m.session.started_ms.saturating_add(max_age_ms),
        identity: m.session.identity.to_hex(),
    }))
}

/// `POST /v1/signout` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SignedOut {
    /// Always true.
    pub signed_out: bool,
}

/// `POST /v1/signout`: ends the member's own session (her key leaves memory with it).
pub async fn signout(
    State(s): State<AppState>,
    actor: Actor,
) -> Result<AppJson<SignedOut>, ApiError> {
    match actor {
        Actor::Member { id, .. } => {
            s.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .end(&id);
            Ok(AppJson(SignedOut { signed_out: true }))
        }
        Actor::Operator => Err(ApiError::bad_request(
            "the API token has no session to end: sign-out is for a member's session",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use crate::account::tests::PASSWORD;
    use crate::signin::{SignInError, SignInGate};

    /// `POST /v1/signin` as `login`, from a blocking thread: its status and `Retry-After`.
    async fn sign_in(addr: SocketAddr, login: &'static str) -> (u16, Option<String>) {
        tokio::task::spawn_blocking(move || {
            let r = ureq::post(&format!("http://{addr}/v1/signin"))
                .send_json(serde_json::json!({ "login": login, "password": PASSWORD }));
            let r = match r {
                Ok(r) => r,
                Err(ureq::Error::Status(_, r)) => r,
                Err(e) => panic!("transport: {e}"),
            };
            (r.status(), r.header("retry-after").map(str::to_string))
        })
        .await
        .expect("request")
    }

    /// Sign-ins of one account check her password one at a time: while one runs (here: waits
    /// for the only argon2 permit), another of the same login, even with the right password,
    /// is answered 429 with `Retry-After: 1` at once, not queued for a second permit, and so is
    /// her export's password check; another member's sign-in still queues and proceeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_password_check_at_a_time_per_account() {
        let node = crate::account::tests::hosted(
            SignInGate::new(1, 8, Default::default(), None),
            &["anna", "ben"],
        )
        .await;
        let s = node.s.clone();
        let keys: Vec<_> = node.members.iter().map(|(key, _)| *key).collect();
        let anna = keys[0];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(crate::serve(listener, s.clone(), std::future::pending()));

        let held = s.signin.hold_permit().await;
        let first = tokio::spawn(sign_in(addr, "anna"));
        while s.signin.waiting_now() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let checks = s.signin.password_checks();
        let second = tokio::time::timeout(Duration::from_secs(5), sign_in(addr, "Anna"))
            .await
            .expect("answered at once, not queued for a permit");
        assert_eq!(second, (429, Some("1".to_string())), "hers is under way");
        assert_eq!(s.signin.waiting_now(), 1, "the second never queued");
        // Her export's password check is a check of her account's too.
        let export = tokio::time::timeout(
            Duration::from_secs(5),
            crate::account::export_key(&s, anna, PASSWORD.as_bytes(), None, [192, 0, 2, 7].into()),
        )
        .await
        .expect("answered at once");
        assert!(
            matches!(
                export,
                Err(crate::account::ExportError::Password(
                    SignInError::InProgress { .. }
                ))
            ),
            "{:?}",
            export.err()
        );
        assert_eq!(s.signin.waiting_now(), 1, "nor did the export's check");
        let bens = tokio::spawn(sign_in(addr, "ben"));
        while s.signin.waiting_now() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(held);
        assert_eq!(first.await.expect("task"), (200, None));
        assert_eq!(bens.await.expect("task"), (200, None), "Ben's is his");
        assert_eq!(
            s.signin.password_checks(),
            checks + 2,
            "the refused one ran no argon2"
        );
        assert_eq!(
            sign_in(addr, "anna").await,
            (200, None),
            "hers ended: she may sign in again"
        );
        server.abort();
    }
}
