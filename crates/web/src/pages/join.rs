//! The join page `/join/<token>`: a neighbour opens the invite a connector gave her, chooses a
//! login and a password, and becomes a hosted member of the community this node runs — her
//! own key, made here and sealed under her password — signed in at once. A person with a node
//! of her own is shown the command that joins with its key instead (`passalong community
//! join URL`, through `/v1/join/<token>`).
//!
//! Public (no session yet); the form is protected like the sign-in's, by a double-submit
//! token in a short-lived cookie. Every refusal of the invite itself (unknown, used, expired,
//! revoked) is a page that says so, before any key is derived.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use passalong_accounts::members::{LOGIN_MAX_BYTES, PASSWORD_MAX_BYTES, PASSWORD_MIN_BYTES};
use passalong_api::community::join_hosted;
use passalong_api::{constant_time_eq, now_ms};
use rand_core::OsRng;
use serde::Deserialize;

use crate::auth::{cookie, random_hex, set_cookie, signed_in};
use crate::layout::{self, PageError};
use crate::session::Role;
use crate::WebState;

/// The join form's double-submit cookie.
pub const JOIN_COOKIE: &str = "pl_join";

fn form(
    base: &str,
    token: &str,
    community: &str,
    csrf: &str,
    login: &str,
    error: Option<&str>,
) -> Markup {
    layout::bare(
        "Join",
        html! {
            h1 { "Join " (community) }
            p { "You were invited to " strong { (community) } ", a community node run by a neighbour: "
                "pass things along to friends from here, without a node of your own." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.card method="post" action={ "/join/" (token) } {
                input type="hidden" name="csrf" value=(csrf);
                label for="login" { "Choose a login" }
                input #login name="login" value=(login) required minlength="3" maxlength=(LOGIN_MAX_BYTES)
                    autocomplete="username" autocapitalize="none" autofocus;
                p.hint { "3 to 32 characters: letters a-z, digits and . _ -" }
                label for="password" { "Choose a password" }
                input #password type="password" name="password" required minlength=(PASSWORD_MIN_BYTES)
                    maxlength=(PASSWORD_MAX_BYTES) autocomplete="new-password";
                label for="password2" { "The password again" }
                input #password2 type="password" name="password2" required autocomplete="new-password";
                p.hint { "At least " (PASSWORD_MIN_BYTES) " characters. This node makes your own key and keeps it "
                    "encrypted under your password: it signs only while you are signed in. "
                    strong { "No one can recover a forgotten password" } ", not even the connector who runs this node." }
                button #join type="submit" { "Join" }
            }
            section.card #own-node {
                h2 { "I run my own node" }
                p { "Join with your own node's key instead (it then names the community in your referrals "
                    "and prefers this node's relay): run" }
                pre { code { "passalong community join " (base) "/join/" (token) } }
            }
        },
    )
}

/// The form with a fresh double-submit token.
fn fresh_form(
    s: &WebState,
    status: StatusCode,
    token: &str,
    community: &str,
    login: &str,
    error: Option<&str>,
) -> Response {
    let csrf = random_hex();
    (
        status,
        [(
            header::SET_COOKIE,
            set_cookie(JOIN_COOKIE, &csrf, 3600, s.secure_cookies),
        )],
        form(&s.api.base_url, token, community, &csrf, login, error),
    )
        .into_response()
}

/// The invite's community, or the page saying why it cannot be used.
fn usable(s: &WebState, token: &str) -> Result<String, PageError> {
    s.api
        .community
        .check_invite(token)
        .map_err(|e| PageError::new(e.status, e.message))
}

/// `GET /join/<token>`
pub async fn page(
    State(s): State<WebState>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let community = usable(&s, &token)?;
    Ok(fresh_form(&s, StatusCode::OK, &token, &community, "", None))
}

/// The join form as posted.
#[derive(Deserialize)]
pub struct JoinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

/// `POST /join/<token>`: makes her a hosted member and signs her in.
pub async fn join(
    State(s): State<WebState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<JoinForm>,
) -> Result<Response, PageError> {
    let expected = cookie(&headers, JOIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), f.csrf.as_bytes()) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This join form is out of date. Open the invite link again.",
        ));
    }
    let community = usable(&s, &token)?;
    let login = f.login.trim();
    if f.password != f.password2 {
        return Ok(fresh_form(
            &s,
            StatusCode::BAD_REQUEST,
            &token,
            &community,
            login,
            Some("The two passwords differ: type the same one twice."),
        ));
    }
    let joined = match join_hosted(&s.api, &token, login, f.password.as_bytes()).await {
        Ok(j) => j,
        // The invite itself cannot be used (any more): a page that says so.
        Err(e) if matches!(e.status, StatusCode::NOT_FOUND | StatusCode::GONE) => {
            return Err(PageError::new(e.status, e.message))
        }
        Err(e) => {
            return Ok(fresh_form(
                &s,
                e.status,
                &token,
                &community,
                login,
                Some(&e.message),
            ))
        }
    };
    let (id, _) = s
        .api
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .start_member(joined.key, now_ms(), &mut OsRng);
    tracing::info!(login = %joined.login, membership = %joined.membership, "a hosted member signed in after joining");
    let mut res = signed_in(&s, id, Role::Member);
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(JOIN_COOKIE, "", 0, s.secure_cookies),
    );
    Ok(res)
}
