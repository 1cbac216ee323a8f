//! The connector's page, `/community` (the node's operator only): found the community this
//! node runs, then invite neighbours — a one-time link with a copy button and a QR code,
//! shown once — and revoke the invites still open.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use passalong_api::community::{self, InviteCreated, InviteInfo, NewInvite};
use serde::Deserialize;

use super::names;
use crate::auth::SignedIn;
use crate::layout::{self, PageError};
use crate::qr::qr;
use crate::WebState;

/// How long a new invite works, as the form offers it: (days, label).
const TTL_CHOICES: [(u64, &str); 4] = [
    (1, "1 day"),
    (7, "7 days"),
    (30, "30 days"),
    (90, "90 days"),
];

/// The link of a new invite, shown once: copy button and QR code.
fn invite_card(i: &InviteCreated) -> Markup {
    html! {
        section.card.share #new-invite {
            h2 { "Invite " (i.id) }
            p { "Give this link to the person you invite (or let them scan the code). It works once, until "
                (layout::time(i.expires_ms)) ". " strong { "It is shown only now" } ": only its fingerprint is kept." }
            p.link-box #invite-link { (i.url) }
            (layout::copy_button(&i.url))
            @match qr(&i.url) {
                Ok(q) => div.qr data-version=(q.version) { (layout::trusted(q.svg)) },
                Err(e) => p.muted { "No QR code (" (e.to_string()) "); copy the link instead." },
            }
        }
    }
}

async fn render(
    s: &WebState,
    me: &SignedIn,
    shown: Markup,
    status: StatusCode,
) -> Result<Response, PageError> {
    let names = names(s, me.me()).await?;
    let body = match s.api.community.current() {
        None => html! {
            h1 { "Community" }
            (shown)
            section.card {
                p { "This node runs no community yet. As its connector you host neighbours who run no node of their own: "
                    "they join with an invite, and referrals they make through the community can pay you the connector "
                    "share that offers allow." }
                form method="post" action="/community" {
                    (layout::csrf(me))
                    label for="name" { "The community's name" }
                    input #name name="name" required maxlength="64" placeholder="Riverside";
                    p.hint { "Signed by this node's key and public: every member and every node that sees a referral through it can read it." }
                    button #found type="submit" { "Found the community" }
                }
            }
        },
        Some(c) => {
            let all: Vec<InviteInfo> = community::invite_list(&s.api)?.invites;
            let (open, closed): (Vec<_>, Vec<_>) = all.into_iter().partition(|i| i.state == "open");
            html! {
                h1 { "Community " (c.name) }
                p.muted { "Id " code.hex { (c.id.to_hex()) } " · founded " (layout::time(c.created_at_ms)) }
                (shown)
                form.card method="post" action="/community/invites" {
                    h2 { "Invite a neighbour" }
                    (layout::csrf(me))
                    label for="note" { "Whom it is for (a note for you; they never see it)" }
                    input #note name="note" maxlength="200" placeholder="Anna from number 12";
                    label for="days" { "Works for" }
                    select #days name="days" {
                        @for (days, label) in TTL_CHOICES {
                            option value=(days) selected[days == 7] { (label) }
                        }
                    }
                    button #invite type="submit" { "Make an invite link" }
                }
                section.card #open-invites {
                    h2 { "Open invites" }
                    @if open.is_empty() { p.muted { "No open invite." } }
                    @else { div.scroll { table {
                        thead { tr { th { "Invite" } th { "Note" } th { "Made" } th { "Expires" } th {} } }
                        tbody { @for i in &open { tr {
                            td { code { (i.id) } }
                            td { (i.note) }
                            td { (layout::time(i.created_ms)) }
                            td { (layout::time(i.expires_ms)) }
                            td { form method="post" action="/community/invites/revoke" {
                                (layout::csrf(me))
                                input type="hidden" name="id" value=(i.id);
                                button.link type="submit" { "Revoke" }
                            } }
                        } } }
                    } } }
                }
                @if !closed.is_empty() {
                    details.card {
                        summary { "Closed invites (" (closed.len()) ")" }
                        div.scroll { table {
                            thead { tr { th { "Invite" } th { "Note" } th { "State" } th { "When" } } }
                            tbody { @for i in &closed { tr {
                                td { code { (i.id) } }
                                td { (i.note) }
                                td { (i.state) }
                                td { (layout::time(i.closed_ms.unwrap_or(i.expires_ms))) }
                            } } }
                        } }
                    }
                }
            }
        }
    };
    let page = layout::page(me, &names, "/community", "Community", body);
    Ok((status, page).into_response())
}

/// `GET /community`
pub async fn page(State(s): State<WebState>, me: SignedIn) -> Result<Response, PageError> {
    me.operator()?;
    render(&s, &me, html! {}, StatusCode::OK).await
}

/// The form that founds the community.
#[derive(Deserialize)]
pub struct FoundForm {
    #[serde(default)]
    csrf: String,
    name: String,
}

/// `POST /community`: founds the community this node runs.
pub async fn found(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<FoundForm>,
) -> Result<Response, PageError> {
    me.operator()?;
    me.check_csrf(&f.csrf)?;
    match community::found(&s.api, &f.name).await {
        Ok(_) => Ok(Redirect::to("/community").into_response()),
        Err(e) => {
            render(
                &s,
                &me,
                html! { p.error role="alert" { (e.message) } },
                e.status,
            )
            .await
        }
    }
}

/// The invite form.
#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    days: String,
}

/// `POST /community/invites`: makes an invite and shows its link, this once.
pub async fn invite(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<InviteForm>,
) -> Result<Response, PageError> {
    me.operator()?;
    me.check_csrf(&f.csrf)?;
    let days: u64 = f
        .days
        .trim()
        .parse()
        .ok()
        .filter(|d| TTL_CHOICES.iter().any(|(c, _)| c == d))
        .ok_or_else(|| PageError::bad("Works for: choose one of the durations offered"))?;
    let req = NewInvite {
        expires_in_ms: Some(days * 86_400_000),
        note: Some(f.note),
    };
    match community::invite(&s.api, &req).await {
        Ok(created) => {
            tracing::info!(invite = %created.id, "invite made on the dashboard");
            render(&s, &me, invite_card(&created), StatusCode::OK).await
        }
        Err(e) => {
            render(
                &s,
                &me,
                html! { p.error role="alert" { (e.message) } },
                e.status,
            )
            .await
        }
    }
}

/// The revoke button's form.
#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    id: String,
}

/// `POST /community/invites/revoke`
pub async fn revoke(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<RevokeForm>,
) -> Result<Response, PageError> {
    me.operator()?;
    me.check_csrf(&f.csrf)?;
    community::revoke_invite(&s.api, &f.id).await?;
    Ok(Redirect::to("/community").into_response())
}
