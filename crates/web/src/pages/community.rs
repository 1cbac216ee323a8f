//! The connector's page, `/community` (the node's operator only): found the community this
//! node runs, then invite neighbours — a one-time link with a copy button and a QR code,
//! shown once — and revoke the invites still open; see the members (hosted or with their own
//! node, since when, where they stand, their last sign-in, referrals and hop earnings), the
//! community's latest activity and what the connector earned per market; and remove a member,
//! after a confirmation (`passalong_api::community::remove_member`).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use passalong_api::community::{
    self, Activity, ConnectorEarnings, Earned, InviteCreated, InviteInfo, MemberList, NewInvite,
};
use passalong_api::contacts::Names;
use passalong_protocol::{Currency, PublicKey};
use serde::Deserialize;

use super::{names, pager, PageQuery};
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

/// Members shown per page.
const MEMBERS_PER_PAGE: usize = 100;
/// Events of the activity shown.
const ACTIVITY: usize = 20;

/// An amount in a currency the API names by its code.
fn money(currency: &str, minor: i128) -> Markup {
    match Currency::parse(currency) {
        Some(c) => layout::money(c, minor),
        None => html! { (minor) " " (currency) },
    }
}

/// Amounts per currency, one a line.
fn amounts(list: &[Earned]) -> Markup {
    html! {
        @if list.is_empty() { span.muted { "—" } }
        @for (i, e) in list.iter().enumerate() {
            @if i > 0 { br; }
            (money(&e.currency, i128::try_from(e.earned_minor).unwrap_or(i128::MAX)))
        }
    }
}

/// A member as the tables show her: her login, or her key.
fn who(names: &Names, key: &str, login: Option<&str>) -> Markup {
    match (login, PublicKey::from_hex(key)) {
        (Some(l), _) => html! { strong { (l) } },
        (None, Ok(k)) => layout::key(names, &k),
        (None, Err(_)) => html! { code { (key) } },
    }
}

fn members_card(me: &SignedIn, names: &Names, list: &MemberList, page: usize) -> Markup {
    html! {
        section.card #members {
            h2 { "Members" }
            p.muted { (list.total) " member" @if list.total != 1 { "s" } ", " (list.admitted) " admitted now. "
                "Referrals an admitted member makes through the community pay you the connector share an offer allows." }
            @if list.members.is_empty() { p.muted { "No member yet: invite a neighbour above." } }
            @else { div.scroll { table {
                thead { tr {
                    th { "Member" } th { "Node" } th { "Since" } th { "Status" } th { "Last sign-in" }
                    th.num { "Referrals" } th.num { "Hop earnings" } th {}
                } }
                tbody { @for m in &list.members { tr data-key=(m.key) data-status=(m.status) {
                    td { (who(names, &m.key, m.login.as_deref())) }
                    td { @if m.hosted { "hosted here" } @else { "own node" } }
                    td { (layout::time(m.since_ms)) }
                    td.status { (m.status) @if let Some(t) = m.ended_ms { br; span.muted { (layout::time(t)) } } }
                    td { @match (m.hosted, m.last_signin_ms) {
                        (true, Some(t)) => (layout::time(t)),
                        (true, None) => span.muted { "never" },
                        (false, _) => span.muted { "—" },
                    } }
                    td.num { @match m.referrals { Some(n) => (n), None => span.muted { "—" } } }
                    td.num { (amounts(&m.earnings)) }
                    td { @if m.admitted() {
                        form method="post" action="/community/members/remove" {
                            (layout::csrf(me))
                            input type="hidden" name="key" value=(m.key);
                            button.link.remove type="submit" { "Remove…" }
                        }
                    } }
                } } }
            } } }
            (pager("/community", page, MEMBERS_PER_PAGE, list.total))
        }
    }
}

fn earnings_card(names: &Names, e: &ConnectorEarnings) -> Markup {
    html! {
        section.card #earnings {
            h2 { "What you earned as connector" }
            @if e.markets.is_empty() {
                p.muted { "Nothing yet: when a friend buys through an admitted member's referral, an offer with a connector share pays you here." }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th { "Seller" } th { "Currency" } th.num { "Earned" } th.num { "Refunded" }
                        th.num { "Paid to you" } th.num { "Owed to you" }
                    } }
                    tbody { @for m in &e.markets { tr data-seller=(m.seller) {
                        td { @match PublicKey::from_hex(&m.seller) {
                            Ok(k) => (layout::key(names, &k)),
                            Err(_) => code { (m.seller) },
                        } }
                        td { (m.currency) }
                        td.num { (money(&m.currency, i128::try_from(m.earned).unwrap_or(i128::MAX))) }
                        td.num { (money(&m.currency, i128::try_from(m.refunded).unwrap_or(i128::MAX))) }
                        td.num { (money(&m.currency, i128::try_from(m.settled).unwrap_or(i128::MAX))) }
                        td.num { strong { (money(&m.currency, m.owed)) } }
                    } } }
                } }
                p #earned-total { "In all: " @for (i, t) in e.totals.iter().enumerate() {
                    @if i > 0 { ", " }
                    (money(&t.currency, i128::try_from(t.earned_minor).unwrap_or(i128::MAX))) " earned, "
                    (money(&t.currency, t.owed_minor)) " owed"
                } "." }
            }
        }
    }
}

fn activity_card(names: &Names, a: &Activity) -> Markup {
    html! {
        section.card #activity {
            h2 { "Latest activity" }
            @if a.items.is_empty() { p.muted { "Nothing yet." } }
            @else { ul { @for i in &a.items { li data-kind=(i.kind) {
                span.muted { (layout::time(i.at_ms)) } " · "
                (who(names, &i.member, i.login.as_deref())) " "
                @match i.kind.as_str() {
                    "joined" => "joined",
                    "removed" => "was removed",
                    "left" => "left the community",
                    _ => {
                        "passed along " (i.title.as_deref().unwrap_or("an item")) ": a sale paid you "
                        (money(i.currency.as_deref().unwrap_or(""), i128::from(i.share_minor.unwrap_or(0))))
                    },
                }
            } } } }
        }
    }
}

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
    render_page(s, me, shown, status, 0).await
}

async fn render_page(
    s: &WebState,
    me: &SignedIn,
    shown: Markup,
    status: StatusCode,
    page: usize,
) -> Result<Response, PageError> {
    let names = names(s, me.me()).await?;
    let connector_view = match s.api.community.current() {
        None => None,
        Some(_) => Some((
            community::member_list(
                &s.api,
                page.saturating_mul(MEMBERS_PER_PAGE),
                MEMBERS_PER_PAGE,
            )
            .await?,
            community::connector_earnings(&s.api).await?,
            community::activity(&s.api, ACTIVITY).await?,
        )),
    };
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
                @if let Some((members, earnings, activity)) = &connector_view {
                    (members_card(me, &names, members, page))
                    (earnings_card(&names, earnings))
                    (activity_card(&names, activity))
                }
            }
        }
    };
    let page = layout::page(me, &names, "/community", "Community", body);
    Ok((status, page).into_response())
}

/// `GET /community` (`?page=N` pages the members)
pub async fn page(
    State(s): State<WebState>,
    me: SignedIn,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    me.operator()?;
    render_page(&s, &me, html! {}, StatusCode::OK, q.page).await
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

/// The remove button's form, and its confirmation's.
#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    key: String,
    /// `yes` once confirmed.
    #[serde(default)]
    confirm: String,
}

/// `POST /community/members/remove`: first asks to confirm (what removal does, and that it
/// cannot be undone), then ends her membership with a MembershipEnd the node's key signs,
/// signs her out everywhere and marks her removed.
pub async fn remove(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<RemoveForm>,
) -> Result<Response, PageError> {
    me.operator()?;
    me.check_csrf(&f.csrf)?;
    let member = PublicKey::from_hex(f.key.trim())
        .map_err(|_| PageError::bad("expected a member's key of 64 hex digits"))?;
    let hosted = s.api.community.hosted();
    let login = hosted.get(&member).map(|h| h.login.clone());
    let names = names(&s, me.me()).await?;
    let shown = match &login {
        Some(l) => html! { strong { (l) } },
        None => layout::key(&names, &member),
    };
    if f.confirm != "yes" {
        let body = html! {
            h1 { "Remove a member" }
            section.card #confirm-remove {
                p { "Remove " (shown) " from the community?" }
                ul {
                    li { "Her referrals from now on pay you no connector share; those she made before still do." }
                    @if login.is_some() {
                        li { "She is signed out at once, and her key leaves this node's memory. She can still sign in to see "
                            "her pages and earnings, read-only: she can sign nothing here any more." }
                    }
                    li { "This cannot be undone: to have her back, invite her again." }
                }
                form method="post" action="/community/members/remove" {
                    (layout::csrf(&me))
                    input type="hidden" name="key" value=(member.to_hex());
                    input type="hidden" name="confirm" value="yes";
                    button #confirm type="submit" { "Remove her" }
                    " " a href="/community" { "Cancel" }
                }
            }
        };
        return Ok(
            layout::page(&me, &names, "/community", "Remove a member", body).into_response(),
        );
    }
    let done = community::remove_member(&s.api, member).await?;
    tracing::info!(%member, sessions_ended = done.sessions_ended, "member removed on the dashboard");
    render(
        &s,
        &me,
        html! { p.ok #removed role="status" { (shown) " was removed from the community." } },
        StatusCode::OK,
    )
    .await
}
