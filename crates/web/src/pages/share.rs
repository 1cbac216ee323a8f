//! The public share page `/l/<token>`: what a friend sees when they open a link, without
//! signing in. It shows only what the link carries (the offer and the chain; for a short link,
//! the chain it names), nothing else of the node that serves it.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use maud::{html, Markup};
use passalong_api::contacts::Names;
use passalong_api::referrals::full_link;
use passalong_api::text::printable;
use passalong_protocol::attestation::Body;

use crate::auth::SignedIn;
use crate::layout::{self, PageError};
use crate::WebState;

/// The checkout URL with the link's token added as `passalong=<token>`.
pub fn buy_url(checkout: &str, token: &str) -> String {
    let (base, fragment) = match checkout.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (checkout, None),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    // The token is base64url with a `pl1.` prefix: nothing in it needs escaping in a query.
    let mut url = format!("{base}{sep}passalong={token}");
    if let Some(f) = fragment {
        url.push('#');
        url.push_str(f);
    }
    url
}

/// The names of a signed-in viewer (a stranger sees hex).
fn viewer_names(s: &WebState, headers: &HeaderMap) -> Names {
    SignedIn::from_headers(s, headers)
        .and_then(|me| s.api.contacts.of(&me.me()).ok())
        .map(|n| (*n).clone())
        .unwrap_or_default()
}

/// `GET /l/<token>`
pub async fn page(
    State(s): State<WebState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Markup, PageError> {
    // A short link opens where its chain is held (the node that issued it); a full one
    // anywhere.
    let link = full_link(&s.api, &token, "link").await.map_err(|e| {
        PageError::new(
            e.status,
            format!("This share link cannot be opened here: {}", e.message),
        )
    })?;
    let Body::Offer(o) = &link.attestations[0].body else {
        return Err(PageError::bad("This link does not start with an offer."));
    };
    let names = viewer_names(&s, &headers);
    let token = link.token();
    let hops = link.attestations.len() - 1;
    Ok(layout::bare(
        &printable(&o.title),
        html! {
            article.card {
                h1 { (printable(&o.title)) }
                p.price { (layout::money(o.currency, i128::from(o.price_minor))) }
                p { "Sold by " (layout::key(&names, &o.seller)) }
                p.muted {
                    @if hops == 0 { "Straight from the seller." }
                    @else { "Passed along by " (hops) " " (if hops == 1 { "person" } else { "people" }) " before reaching you." }
                }
                @if let Some(checkout) = &o.checkout_url {
                    a.button #buy href=(buy_url(checkout, &token)) rel="noopener noreferrer" { "Buy from the seller" }
                } @else {
                    p { "The seller has not given a checkout page: ask the person who sent you this link where to buy." }
                }
            }
            section.card {
                h2 { "Pass it along" }
                p { "When a friend buys through your own link, you earn a share of the sale, and so do the people before you. "
                    "To get your link:" }
                ol {
                    li { "Run a Passalong node (" code { "passalong run" } ") and open its dashboard, or join a community node near you." }
                    li { "On " strong { "Pass along" } ", paste this link and sign your referral." }
                }
                a.button.secondary href={ "/pass?link=" (token) } { "Pass along from this node" }
                details { summary { "This link as text" } p.link-box { (token) } (layout::copy_button(&token)) }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buy_url_carries_the_token() {
        assert_eq!(
            buy_url("https://shop.example/buy", "pl1.x"),
            "https://shop.example/buy?passalong=pl1.x"
        );
        assert_eq!(
            buy_url("https://shop.example/buy?item=7#top", "pl1.x"),
            "https://shop.example/buy?item=7&passalong=pl1.x#top"
        );
    }
}
