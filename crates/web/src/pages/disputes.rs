//! Disputes and equivocations of the markets I take part in, each with both attestations as
//! evidence.

use axum::extract::State;
use maud::{html, Markup};
use passalong_protocol::{Attestation, Id};
use passalong_store::Store;

use super::{blocking, my_markets, names};
use crate::auth::SignedIn;
use crate::layout::{self, PageError};
use crate::WebState;

/// Two attestations that contradict each other.
struct Case {
    what: &'static str,
    explain: String,
    left: (String, Option<Attestation>),
    right: (String, Option<Attestation>),
}

fn evidence(store: &Store, id: &Id) -> Result<Option<Attestation>, PageError> {
    Ok(store.attestation(id)?)
}

/// Cases shown (each carries both envelopes).
const SHOWN: usize = 20;

/// The first [`SHOWN`] cases of the markets I take part in, and how many there are.
fn cases(
    store: &Store,
    me: &passalong_protocol::PublicKey,
) -> Result<(Vec<Case>, usize), PageError> {
    let mut out = Vec::new();
    let mut total = 0;
    for m in my_markets(store, me)? {
        let equivocations = store.equivocations(&m)?;
        let disputes = store.disputes(&m)?;
        total += equivocations.len() + disputes.len();
        for e in equivocations {
            if out.len() >= SHOWN {
                break;
            }
            out.push(Case {
                what: "Equivocation",
                explain: "The seller signed two receipts for one order. The one with the smaller id counts; both are kept as evidence.".into(),
                left: ("Counted receipt".into(), evidence(store, &e.counted)?),
                right: ("Other receipt".into(), evidence(store, &e.other)?),
            });
        }
        for d in disputes {
            if out.len() >= SHOWN {
                break;
            }
            out.push(Case {
                what: "Dispute",
                explain: if d.buyer_matches {
                    "The buyer says they bought through another referral than the seller recorded.".into()
                } else {
                    "Someone claims this order as their purchase, but the seller recorded another buyer.".into()
                },
                left: ("Buyer's claim".into(), evidence(store, &d.claim)?),
                right: ("Seller's receipt".into(), evidence(store, &d.receipt)?),
            });
        }
    }
    Ok((out, total))
}

fn attestation(label: &str, a: &Option<Attestation>) -> Markup {
    html! {
        div {
            h3 { (label) }
            @match a {
                Some(a) => {
                    p { "Id " code { (a.id.to_hex()) } }
                    pre.link-box { (format!("{:#?}", a.body)) }
                    details { summary { "Signed envelope (hex)" } p.link-box { (hex::encode(&a.bytes)) } }
                }
                None => p.muted { "Not held by this node." },
            }
        }
    }
}

/// `GET /disputes`
pub async fn page(State(s): State<WebState>, me: SignedIn) -> Result<Markup, PageError> {
    let who = me.me();
    let names = names(&s, who).await?;
    let store = s.api.store.clone();
    let (cases, total) = blocking(move || cases(&store, &who)).await?;
    Ok(layout::page(
        &me,
        &names,
        "/disputes",
        "Disputes",
        html! {
            h1 { "Disputes and equivocations" }
            @if cases.is_empty() { p.muted { "None in the markets you take part in." } }
            @if total > cases.len() { p.muted { "The first " (cases.len()) " of " (total) " (" a href="/v1/equivocations" { "equivocations" } " and " a href="/v1/disputes" { "disputes" } " of my market in JSON)." } }
            @for c in &cases {
                section.card {
                    h2 { (c.what) }
                    p { (c.explain) }
                    div.grid { (attestation(&c.left.0, &c.left.1)) (attestation(&c.right.0, &c.right.1)) }
                }
            }
        },
    ))
}
