//! A sale drawn as a row of people from the seller to the buyer, each with what they earned
//! from it. The sales themselves come from the API's `earnings` module.

use maud::{html, Markup};
use passalong_api::contacts::Names;
pub use passalong_api::earnings::Sale;
use passalong_protocol::PublicKey;

use crate::layout;

/// The chain drawn: seller → referrers → buyer, each with what they earned; `me` highlighted.
pub fn chain(names: &Names, me: &PublicKey, sale: &Sale) -> Markup {
    let person = |k: &PublicKey, role: &str| {
        let paid = sale.paid(k);
        html! {
            li.me[k == me] {
                (layout::key(names, k))
                " " span.muted { (role) }
                @if paid > 0 { " " (layout::money(sale.currency, i128::from(paid))) }
            }
        }
    };
    let n = sale.chain.len();
    html! {
        ol.chain aria-label="referral chain" {
            (person(&sale.receipt.seller, "seller"))
            @for (i, k) in sale.chain.iter().enumerate() {
                (person(k, &format!("hop {}", n - i)))
            }
            (person(&sale.receipt.buyer, "buyer"))
        }
    }
}
