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
    // Hops beyond the nearest few are folded (a chain may be 64 long), except mine.
    let shown = |i: usize, k: &PublicKey| n - i <= SHOWN_HOPS || k == me;
    html! {
        ol.chain aria-label="referral chain" {
            (person(&sale.receipt.seller, "seller"))
            @for (i, k) in sale.chain.iter().enumerate() {
                @if shown(i, k) {
                    (person(k, &format!("hop {}", n - i)))
                } @else if i == 0 || shown(i - 1, &sale.chain[i - 1]) {
                    li.muted { "… " (folded(sale, me, i)) " more" }
                }
            }
            (person(&sale.receipt.buyer, "buyer"))
        }
    }
}

/// Hops drawn nearest the buyer; the others are counted, so that a page of sales stays small
/// however long their chains are.
const SHOWN_HOPS: usize = 6;

/// How many hops are folded from index `i` of the chain on.
fn folded(sale: &Sale, me: &PublicKey, i: usize) -> usize {
    let n = sale.chain.len();
    sale.chain[i..]
        .iter()
        .enumerate()
        .take_while(|(j, k)| n - (i + j) > SHOWN_HOPS && *k != me)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use passalong_protocol::attestation::Receipt;
    use passalong_protocol::{Currency, Id};

    /// A long chain is drawn with its six hops nearest the buyer and mine; the rest are
    /// counted.
    #[test]
    fn long_chains_are_folded_around_me() {
        let k = |i: u8| PublicKey([i; 32]);
        let me = k(200);
        let mut chain: Vec<PublicKey> = (0..40).map(k).collect();
        chain[3] = me;
        let sale = Sale {
            id: Id([9; 32]),
            receipt: Receipt {
                seller: k(250),
                offer: Id([8; 32]),
                order: "o".into(),
                amount_minor: 100,
                buyer: k(251),
                via: None,
                created_at_ms: 0,
            },
            title: "t".into(),
            currency: Currency(*b"EUR"),
            max_depth: 64,
            chain,
            credits: vec![(me, 7)],
            counted: true,
        };
        let html = super::chain(&Names::new(), &me, &sale).into_string();
        for part in [
            "hop 37",
            "… 3 more",
            "… 30 more",
            "hop 6",
            "hop 1",
            "seller",
            "buyer",
        ] {
            assert!(html.contains(part), "{part} in {html}");
        }
        assert!(!html.contains("hop 7<"), "{html}");
        assert_eq!(html.matches("<li").count(), 1 + 1 + 1 + 1 + 6 + 1);
    }
}
