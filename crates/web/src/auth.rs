//! Signing in and out, and the extractor that gives a page its signed-in identity.
//!
//! The operator signs in with the API token (from `<data-dir>/api-token`, typed or pasted into
//! the form at `/signin/operator`: it is posted in the body, never put in a URL, and never
//! logged). On a community node `/signin` is the hosted members' form (login and password,
//! `passalong_api::signin`), with the operator's linked below it; a personal node has no
//! members, so its `/signin` is the token form. The session cookie is
//! `HttpOnly; SameSite=Strict` (and `Secure` behind https), and lasts as long as a session of
//! its role may. The sign-in forms are protected by a double-submit token: a random value in
//! a short-lived cookie that the form must repeat.

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use passalong_accounts::members::{LOGIN_MAX_BYTES, PASSWORD_MAX_BYTES};
use passalong_api::signin::{sign_in_member, Peer, SignInError};
use passalong_api::{constant_time_eq, now_ms, Signer};
use passalong_protocol::PublicKey;
use rand_core::{OsRng, RngCore};
use serde::Deserialize;

use crate::layout::{self, PageError};
use crate::session::{Role, Session, SessionId};
use crate::WebState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "pl_session";
/// The sign-in form's double-submit cookie.
pub const SIGNIN_COOKIE: &str = "pl_signin";

/// Why a read-only session (a member whose membership ended) cannot sign, as the pages say.
pub const READ_ONLY: &str = "Your membership of this community has ended, so your account here is read-only: you can see your pages and earnings, but not sign anything (no offers, referrals or settlements).";

/// A request from a signed-in browser: the session and the identity it acts as.
pub struct SignedIn {
    /// The cookie's session id.
    pub id: SessionId,
    /// The session.
    pub session: Session,
}

impl SignedIn {
    /// The identity every action of this request is taken as.
    pub fn me(&self) -> PublicKey {
        self.session.identity
    }

    /// The key this request signs with: the operator's is the node's own identity (which
    /// `Identities` holds); a member's is the one her sign-in opened into her session — never
    /// looked up anywhere else, so no other session can reach it.
    pub fn signer<'a>(&'a self, s: &'a WebState) -> Result<Signer<'a>, PageError> {
        match self.session.role {
            Role::Operator => Ok(Signer::Node(s.api.identities.keypair(&self.me())?)),
            Role::Member => match self.session.key.as_deref() {
                Some(k) if k.public() == self.me() => Ok(Signer::Member(k)),
                None => Err(PageError::new(StatusCode::FORBIDDEN, READ_ONLY)),
                Some(_) => Err(PageError::new(
                    StatusCode::FORBIDDEN,
                    "This session holds no key to sign with. Sign out and in again.",
                )),
            },
        }
    }

    /// A member whose membership ended: she reads, and signs nothing.
    pub fn read_only(&self) -> bool {
        self.session.read_only()
    }

    /// Refuses anyone but the node's operator (a hosted member acts only as herself).
    pub fn operator(&self) -> Result<(), PageError> {
        if self.session.role == Role::Operator {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "Only the node's operator can open this page.",
            ))
        }
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, given: &str) -> Result<(), PageError> {
        if self.session.csrf_matches(given) {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "This form is out of date or did not come from this node's pages. Reload the page and try again.",
            ))
        }
    }
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl SignedIn {
    /// The live session a request's cookie names, if any (marked as used now).
    pub fn from_headers(state: &WebState, headers: &HeaderMap) -> Option<SignedIn> {
        let id = cookie(headers, SESSION_COOKIE).and_then(SessionId::from_hex)?;
        let mut s = state.api.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.touch(&id, now_ms())
            .map(|session| SignedIn { id, session })
    }
}

impl FromRequestParts<WebState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Response> {
        SignedIn::from_headers(state, &parts.headers)
            .ok_or_else(|| Redirect::to("/signin").into_response())
    }
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Strict`, `Secure` behind https.
pub(crate) fn set_cookie(name: &str, value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// 32 random bytes, hex (a form's double-submit token).
pub(crate) fn random_hex() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn operator_form(csrf: &str, error: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            h1 { "Sign in to your node" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action=(OPERATOR_PATH) {
                input type="hidden" name="csrf" value=(csrf);
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                p.hint { "The token is in the file " code { "api-token" } " of your node's data directory "
                    "(" code { "passalong id" } " prints where that is)." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

fn member_form(community: &str, csrf: &str, login: &str, error: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            h1 { "Sign in to " (community) }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/signin" {
                input type="hidden" name="csrf" value=(csrf);
                label for="login" { "Login" }
                input #login name="login" value=(login) required maxlength=(LOGIN_MAX_BYTES)
                    autocomplete="username" autocapitalize="none" autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" required maxlength=(PASSWORD_MAX_BYTES)
                    autocomplete="current-password";
                button type="submit" { "Sign in" }
            }
            p.hint { "Not a member yet? Ask the neighbour who runs this node for an invite." }
            p { a #operator href=(OPERATOR_PATH) { "I run this node: sign in with its API token" } }
        },
    )
}

/// The operator's sign-in form.
pub const OPERATOR_PATH: &str = "/signin/operator";

/// The sign-in page's form with a fresh double-submit token: the member form on a node that
/// runs a community, the operator's token form on others (a personal node has no members).
fn fresh_form(
    s: &WebState,
    status: StatusCode,
    operator: bool,
    login: &str,
    error: Option<&str>,
) -> Response {
    let csrf = random_hex();
    let page = match s.api.community.current() {
        Some(c) if !operator => member_form(&c.name, &csrf, login, error),
        _ => operator_form(&csrf, error),
    };
    (
        status,
        [(
            header::SET_COOKIE,
            set_cookie(SIGNIN_COOKIE, &csrf, 3600, s.secure_cookies),
        )],
        page,
    )
        .into_response()
}

/// `GET /signin`: a member's login and password (the operator's form is linked below it).
pub async fn signin_page(State(s): State<WebState>) -> Response {
    fresh_form(&s, StatusCode::OK, false, "", None)
}

/// `GET /signin/operator`: the API token.
pub async fn operator_page(State(s): State<WebState>) -> Response {
    fresh_form(&s, StatusCode::OK, true, "", None)
}

/// The sign-in forms as posted: a member's login and password, or the operator's token.
#[derive(Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// Refuses a sign-in form whose double-submit token is not its cookie's.
fn check_form(headers: &HeaderMap, f: &SigninForm) -> Result<(), PageError> {
    let expected = cookie(headers, SIGNIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), f.csrf.as_bytes()) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This sign-in form is out of date. Reload the page and try again.",
        ));
    }
    Ok(())
}

/// `POST /signin`: a member's login and password start a session holding her key. A form
/// with a `token` is the operator's (scripts that posted the token here before the member
/// form came keep working).
pub async fn signin(
    State(s): State<WebState>,
    headers: HeaderMap,
    peer: Peer,
    Form(f): Form<SigninForm>,
) -> Response {
    if let Err(refused) = check_form(&headers, &f) {
        return refused.into_response();
    }
    if f.token.is_some() {
        return operator_signin(&s, &f).await;
    }
    let ip = s.api.signin.client_ip(&headers, peer.0);
    let login = f.login.trim();
    match sign_in_member(&s.api, login, f.password.as_bytes(), ip).await {
        Ok(m) => signed_in(&s, m.id, Role::Member),
        Err(e) => {
            let message = match &e {
                SignInError::Wrong => "Wrong login or password.".to_string(),
                SignInError::Wait { retry_after_ms } => format!(
                    "Too many failed sign-ins: try again in {}.",
                    layout::duration(*retry_after_ms)
                ),
                e => format!("{}.", capitalised(&e.to_string())),
            };
            let mut res = fresh_form(&s, e.status(), false, login, Some(&message));
            if let Some(secs) = e.retry_after_s() {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            res
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `POST /signin/operator`: the API token starts a session of the node's own identity.
pub async fn signin_operator(
    State(s): State<WebState>,
    headers: HeaderMap,
    Form(f): Form<SigninForm>,
) -> Response {
    if let Err(refused) = check_form(&headers, &f) {
        return refused.into_response();
    }
    operator_signin(&s, &f).await
}

async fn operator_signin(s: &WebState, f: &SigninForm) -> Response {
    let token = f.token.as_deref().unwrap_or("").trim();
    if !constant_time_eq(token.as_bytes(), s.api.token.as_bytes()) {
        // Slow down guessing; the token is 256 bits, this is for the logs' sake.
        tokio::time::sleep(Duration::from_millis(400)).await;
        tracing::warn!("dashboard sign-in with a wrong token");
        return fresh_form(
            s,
            StatusCode::UNAUTHORIZED,
            true,
            "",
            Some("That is not this node's API token."),
        );
    }
    let identity = s.api.identities.default_key();
    let (id, _) = {
        let mut sessions = s.api.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.start(identity, now_ms(), &mut OsRng)
    };
    tracing::info!(identity = %identity, "dashboard sign-in");
    signed_in(s, id, Role::Operator)
}

/// The answer to a sign-in that started session `id`: home, with the session's cookie,
/// which lasts as long as a session of `role` may.
pub(crate) fn signed_in(s: &WebState, id: SessionId, role: Role) -> Response {
    signed_in_to(s, id, role, "/")
}

/// [`signed_in`], going on to `location`.
pub(crate) fn signed_in_to(s: &WebState, id: SessionId, role: Role, location: &str) -> Response {
    let max_age_s = s
        .api
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .max_age_ms(role)
        / 1000;
    let mut res = Redirect::to(location).into_response();
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &id.to_hex(), max_age_s, s.secure_cookies),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(SIGNIN_COOKIE, "", 0, s.secure_cookies),
    );
    res
}

/// A form that carries only its CSRF token.
#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /signout`
pub async fn signout(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    me.check_csrf(&f.csrf)?;
    s.api
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .end(&me.id);
    let mut res = Redirect::to("/signin").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, s.secure_cookies),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; pl_session=abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("pl_signin=xyz"));
        assert_eq!(cookie(&h, "pl_session"), Some("abc"));
        assert_eq!(cookie(&h, "pl_signin"), Some("xyz"));
        assert_eq!(cookie(&h, "pl"), None);
    }

    #[test]
    fn session_cookies_are_httponly_and_strict() {
        let c = set_cookie(SESSION_COOKIE, "v", 10, true);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "v", 10, false)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }
}
