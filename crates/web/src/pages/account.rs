//! A hosted member's account page, `/account`: where she stands in the community, and leaving
//! it — a MembershipEnd her own key signs (`passalong_api::community::leave`), after a
//! confirmation. Her sessions end with it (her key leaves memory), and she goes on in a
//! read-only session: her pages and earnings, nothing signed. And exporting her key: her
//! password again (and, if she likes, another one for the file) downloads
//! `passalong-<login>.key`, the file `passalong init --import-key` starts a node of her own
//! with (`passalong_api::account::export_key`). A read-only member may export too.
//!
//! Members only: the operator has no membership to leave, and sees the community on
//! `/community`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use passalong_accounts::members::Status;
use passalong_api::account::ExportError;
use passalong_api::signin::{Peer, SignInError};
use rand_core::OsRng;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::names;
use crate::auth::{signed_in_to, SignedIn};
use crate::layout::{self, PageError};
use crate::session::Role;
use crate::WebState;

/// Refuses anyone but a hosted member.
fn member_only(me: &SignedIn) -> Result<(), PageError> {
    if me.session.role == Role::Member {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This page is a hosted member's own: the node's operator sees the community on its Community page.",
        ))
    }
}

async fn render(s: &WebState, me: &SignedIn, shown: Markup) -> Result<Markup, PageError> {
    let names = names(s, me.me()).await?;
    let hosted = s.api.community.hosted();
    let mine = hosted.get(&me.me());
    let community = s.api.community.current();
    let name = community
        .as_ref()
        .map_or("the community", |c| c.name.as_str());
    let active = mine.is_some_and(|m| m.status == Status::Active) && !me.read_only();
    let body = html! {
        h1 { "Account" }
        (shown)
        section.card #standing {
            h2 { "Membership" }
            @if let Some(m) = mine {
                p { "Login " strong { (m.login) } ", member of " strong { (name) } " since " (layout::time(m.created_ms)) "." }
                p #status data-status=(m.status.as_str()) { @match m.status {
                    Status::Active => "You are a member: referrals you make through the community can pay its connector the share an offer allows.",
                    Status::Removed => "The connector removed you from the community. Your account here is read-only.",
                    Status::Left => "You left the community. Your account here is read-only.",
                    Status::Moved => "You moved to a node of your own.",
                } }
            }
        }
        @if mine.is_some_and(|m| m.status != Status::Moved) {
            section.card #export {
                h2 { "Export my key" }
                p { "Your key is what your referrals and earnings are signed with. Export it to run a node of your own "
                    "(" code { "passalong init --import-key FILE" } "): your history and later earnings follow the key. "
                    "The file is sealed under your password, or under another one you choose for it; keep it safe, "
                    "whoever opens it can sign as you." }
                form method="post" action="/account/export-key" {
                    (layout::csrf(me))
                    label { "Your password " input type="password" name="password" required autocomplete="current-password"; }
                    label { "A password for the file (leave empty to use yours) "
                        input type="password" name="export_password" autocomplete="new-password"; }
                    button #export-key type="submit" { "Export my key" }
                }
            }
        }
        @if active {
            section.card #leave {
                h2 { "Leave " (name) }
                p { "Leaving signs, with your own key, the end of your membership from now on: referrals you make after it "
                    "pay the connector nothing. Your earnings stay yours. You are then signed in read-only: you can see your "
                    "pages and earnings here, but sign nothing." }
                form method="post" action="/account/leave" {
                    (layout::csrf(me))
                    button.link #leave-start type="submit" { "Leave the community…" }
                }
            }
        }
    };
    Ok(layout::page(me, &names, "/account", "Account", body))
}

/// `GET /account`
pub async fn page(State(s): State<WebState>, me: SignedIn) -> Result<Markup, PageError> {
    member_only(&me)?;
    render(&s, &me, html! {}).await
}

/// The leave button's form, and its confirmation's.
#[derive(Deserialize)]
pub struct LeaveForm {
    #[serde(default)]
    csrf: String,
    /// `yes` once confirmed.
    #[serde(default)]
    confirm: String,
}

/// `POST /account/leave`: first asks to confirm, then her key signs the end of her
/// membership, her sessions end, and a read-only one of hers goes on to this page.
pub async fn leave(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<LeaveForm>,
) -> Result<Response, PageError> {
    member_only(&me)?;
    me.check_csrf(&f.csrf)?;
    let key = match me.signer(&s)? {
        passalong_api::Signer::Member(k) => k,
        passalong_api::Signer::Node(_) => {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "Only a hosted member can leave the community.",
            ))
        }
    };
    if f.confirm != "yes" {
        let shown = html! {
            section.card #confirm-leave {
                p { strong { "Leave the community for good?" } " This cannot be undone: to come back you need a new invite." }
                form method="post" action="/account/leave" {
                    (layout::csrf(&me))
                    input type="hidden" name="confirm" value="yes";
                    button #confirm type="submit" { "Leave" }
                    " " a href="/account" { "Cancel" }
                }
            }
        };
        return Ok(render(&s, &me, shown).await?.into_response());
    }
    let left = passalong_api::community::leave(&s.api, key).await?;
    let (id, _) = s
        .api
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .start_read_only(me.me(), passalong_api::now_ms(), &mut OsRng);
    tracing::info!(member = %left.member, "a member left the community on the dashboard");
    Ok(signed_in_to(&s, id, Role::Member, "/account"))
}

/// The export form.
#[derive(Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    /// Empty: the file is sealed under her password.
    #[serde(default)]
    export_password: String,
}

/// `POST /account/export-key`: her password again, then her key file as a download,
/// `passalong-<login>.key`; a wrong password shows the page again with why.
pub async fn export_key(
    State(s): State<WebState>,
    me: SignedIn,
    headers: HeaderMap,
    peer: Peer,
    Form(f): Form<ExportForm>,
) -> Result<Response, PageError> {
    member_only(&me)?;
    me.check_csrf(&f.csrf)?;
    let ip = s.api.signin.client_ip(&headers, peer.0);
    let password = Zeroizing::new(f.password);
    let export_password = Zeroizing::new(f.export_password);
    let sealing = (!export_password.is_empty()).then_some(export_password.as_bytes());
    match passalong_api::account::export_key(&s.api, me.me(), password.as_bytes(), sealing, ip)
        .await
    {
        Ok(out) => {
            let name = format!("passalong-{}.key", out.login);
            let mut res = (StatusCode::OK, out.file.to_json()).into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // A login is [a-z0-9._-]: nothing to quote or escape.
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            tracing::info!(member = %me.me(), "a member downloaded her key file");
            Ok(res)
        }
        Err(e) => {
            let (status, message) = match &e {
                ExportError::Password(SignInError::Wrong) => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong password: your key was not exported.".to_string(),
                ),
                ExportError::Password(SignInError::Wait { retry_after_ms }) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many wrong passwords: try again in {}.",
                        layout::duration(*retry_after_ms)
                    ),
                ),
                ExportError::Password(p) => (p.status(), p.to_string()),
                ExportError::Api(a) => (a.status, a.message.clone()),
            };
            let shown = html! { p.error #export-error role="alert" { (message) } };
            let mut res = (status, render(&s, &me, shown).await?).into_response();
            // A refusal that says when to retry says it as the API's does, in seconds.
            if let ExportError::Password(p) = &e {
                if let Some(secs) = p.retry_after_s() {
                    res.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
            }
            Ok(res)
        }
    }
}
