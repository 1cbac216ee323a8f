//! Pass along: paste (or open) a link, see the offer, the chain so far and what each hop
//! would earn, sign my referral with one button, and get my own link with a copy button and a
//! QR code, optionally addressed to one friend.

use axum::extract::{Query, State};
use axum::Form;
use maud::{html, Markup};
use passalong_api::offers::Published;
use passalong_api::referrals::{full_link, refer_as, NewReferral};
use passalong_api::text::printable;
use passalong_protocol::attestation::Body;
use passalong_protocol::link::ShareLink;
use passalong_protocol::{Id, PublicKey};
use serde::Deserialize;

use super::{names, offers};
use crate::auth::SignedIn;
use crate::layout::{self, PageError};
use crate::qr::qr;
use crate::session::Role;
use crate::WebState;

/// `?link=…`
#[derive(Deserialize, Default)]
pub struct LinkQuery {
    #[serde(default)]
    link: String,
}

/// The pass-along form as posted.
#[derive(Deserialize)]
pub struct PassForm {
    #[serde(default)]
    csrf: String,
    link: String,
    #[serde(default)]
    to: String,
}

/// A share link ready to hand out: the full URL with a copy button (it carries the chain and
/// works anywhere), and a QR code of the short link (constant size, scannable at any depth).
pub fn link_card(p: &Published, title: &str) -> Markup {
    let code = qr(&p.short_url);
    html! {
        section.card.share {
            h2 { (title) }
            p.link-box #my-link { (p.url) }
            (layout::copy_button(&p.url))
            @match code {
                Ok(q) => {
                    div.qr data-version=(q.version) { (layout::trusted(q.svg)) }
                    p.muted { "Scan: " span #my-short-link { (p.short_url) } " (QR version " (q.version) ")" }
                }
                Err(e) => p.muted { "No QR code (" (e.to_string()) "); copy the link instead." },
            }
            details { summary { "Text token (for " code { "passalong refer" } ")" } p.link-box { (p.link) } (layout::copy_button(&p.link)) }
        }
    }
}

/// What a link shows before passing it along: the offer, the chain, what each hop would earn.
fn summary(names: &passalong_api::contacts::Names, me: &PublicKey, link: &ShareLink) -> Markup {
    let Body::Offer(o) = &link.attestations[0].body else {
        return html! { p.error { "This link does not start with an offer." } };
    };
    let referrers: Vec<PublicKey> = link.attestations[1..]
        .iter()
        .filter_map(|a| match &a.body {
            Body::Referral(r) => Some(r.referrer),
            _ => None,
        })
        .collect();
    // If a friend buys through my link, I am hop 1 and the chain so far follows.
    let hops = referrers.len() + 1;
    let (shares, _, _) = offers::sample(o, hops);
    let c = o.currency;
    html! {
        section.card {
            h2 { (printable(&o.title)) }
            p.price { (layout::money(c, i128::from(o.price_minor))) }
            p { "Seller: " (layout::key(names, &o.seller)) }
            p { (offers::explain(o)) }
            h3 { "If a friend buys through your link" }
            table { tbody {
                @for (i, a) in shares.iter().enumerate() {
                    @let who = if i == 0 { Some(me) } else { referrers.get(referrers.len() - i) };
                    tr.me[i == 0] {
                        td { "Hop " (i + 1) }
                        td { @if i == 0 { "you" } @else if let Some(k) = who { (layout::key(names, k)) } }
                        td.num { (layout::money(c, i128::from(*a))) }
                    }
                }
            } }
        }
    }
}

/// The community a member's referrals name (hers while she is an active member), with its
/// name for the page; none for the operator.
fn community_of(s: &WebState, me: &SignedIn) -> Option<(Id, String)> {
    match me.session.role {
        Role::Member => s.api.community.community_of(&me.me()),
        Role::Operator => None,
    }
}

fn page(
    me: &SignedIn,
    names: &passalong_api::contacts::Names,
    community: Option<&str>,
    link_text: &str,
    body: Markup,
) -> Markup {
    layout::page(
        me,
        names,
        "/pass",
        "Pass along",
        html! {
            h1 { "Pass along" }
            (body)
            form.card method="post" action="/pass" {
                @if let Some(name) = community {
                    p #through { "Through " strong { (name) } ": your referrals name your community, so its connector earns "
                        "the connector share an offer allows when a friend buys through your link." }
                }
                (layout::csrf(me))
                label for="link" { "A share link you received" }
                textarea #link name="link" required placeholder="pl1.… or a link to a share page" { (link_text) }
                label for="to" { "Only for one friend (optional): their key or contact name" }
                input #to name="to" placeholder="leave empty for anyone";
                button #refer type="submit" { "Sign my referral and get my link" }
            }
        },
    )
}

/// `GET /pass` (`?link=` shows what a link carries before signing).
pub async fn page_handler(s: &WebState, me: &SignedIn, q: LinkQuery) -> Result<Markup, PageError> {
    let names = names(s, me.me()).await?;
    let shown = if q.link.trim().is_empty() {
        html! {}
    } else {
        match full_link(&s.api, &q.link, "link").await {
            Ok(l) => summary(&names, &me.me(), &l),
            Err(e) => html! { p.error role="alert" { (e.message) } },
        }
    };
    let community = community_of(s, me);
    Ok(page(
        me,
        &names,
        community.as_ref().map(|c| c.1.as_str()),
        q.link.trim(),
        shown,
    ))
}

/// `GET /pass`
pub async fn page_get(
    State(s): State<WebState>,
    me: SignedIn,
    Query(q): Query<LinkQuery>,
) -> Result<Markup, PageError> {
    page_handler(&s, &me, q).await
}

/// The friend a referral is addressed to: a key, or a contact's name.
fn recipient(
    names: &passalong_api::contacts::Names,
    to: &str,
) -> Result<Option<String>, PageError> {
    let to = to.trim();
    if to.is_empty() {
        return Ok(None);
    }
    if let Ok(k) = PublicKey::from_hex(to) {
        return Ok(Some(k.to_hex()));
    }
    names
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(to))
        .map(|(k, _)| Some(k.to_hex()))
        .ok_or_else(|| {
            PageError::bad(format!(
                "{to:?} is neither a key of 64 hex digits nor one of your contacts"
            ))
        })
}

/// `POST /pass`: signs my referral and shows my link.
pub async fn refer(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<PassForm>,
) -> Result<Markup, PageError> {
    me.check_csrf(&f.csrf)?;
    let names = names(&s, me.me()).await?;
    let keys = me.signer(&s)?;
    let community = community_of(&s, &me);
    let req = NewReferral {
        from: f.link.clone(),
        to: recipient(&names, &f.to)?,
        ..Default::default()
    };
    let done = refer_as(&s.api, keys, &req, community.as_ref().map(|c| c.0)).await;
    let body = match done {
        Ok(r) => html! {
            p.ok role="status" { "Your referral is signed. Send your link to friends:" }
            (link_card(&r.published, "My link"))
        },
        Err(e) => html! { p.error role="alert" { (e.message) } },
    };
    Ok(page(
        &me,
        &names,
        community.as_ref().map(|c| c.1.as_str()),
        "",
        body,
    ))
}
