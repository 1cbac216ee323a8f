//! Signing in and out, and the extractor that gives a page its signed-in identity.
//!
//! On a personal node the API token signs in (the token from `<data-dir>/api-token`, typed or
//! pasted into a form: it is posted in the body, never put in a URL, and never logged). The
//! session cookie is `HttpOnly; SameSite=Strict` (and `Secure` behind https). The sign-in
//! form itself is protected by a double-submit token: a random value in a short-lived cookie
//! that the form must repeat.

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
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
                _ => Err(PageError::new(
                    StatusCode::FORBIDDEN,
                    "This session holds no key to sign with. Sign out and in again.",
                )),
            },
        }
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

fn signin_form(csrf: &str, error: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            h1 { "Sign in to your node" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/signin" {
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

/// `GET /signin`
pub async fn signin_page(State(s): State<WebState>) -> Response {
    let csrf = random_hex();
    (
        [(
            header::SET_COOKIE,
            set_cookie(SIGNIN_COOKIE, &csrf, 3600, s.secure_cookies),
        )],
        signin_form(&csrf, None),
    )
        .into_response()
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct SigninForm {
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /signin`: the API token starts a session of the node's own identity.
pub async fn signin(
    State(s): State<WebState>,
    headers: HeaderMap,
    Form(f): Form<SigninForm>,
) -> Response {
    let expected = cookie(&headers, SIGNIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), f.csrf.as_bytes()) {
        return PageError::new(
            StatusCode::FORBIDDEN,
            "This sign-in form is out of date. Reload the page and try again.",
        )
        .into_response();
    }
    if !constant_time_eq(f.token.trim().as_bytes(), s.api.token.as_bytes()) {
        // Slow down guessing; the token is 256 bits, this is for the logs' sake and for
        // shorter secrets a community node will have.
        tokio::time::sleep(Duration::from_millis(400)).await;
        tracing::warn!("dashboard sign-in with a wrong token");
        let csrf = random_hex();
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::SET_COOKIE,
                set_cookie(SIGNIN_COOKIE, &csrf, 3600, s.secure_cookies),
            )],
            signin_form(&csrf, Some("That is not this node's API token.")),
        )
            .into_response();
    }
    let identity = s.api.identities.default_key();
    let (id, _) = {
        let mut sessions = s.api.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.start(identity, now_ms(), &mut OsRng)
    };
    tracing::info!(identity = %identity, "dashboard sign-in");
    let mut res = Redirect::to("/").into_response();
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &id.to_hex(), 7 * 86_400, s.secure_cookies),
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
