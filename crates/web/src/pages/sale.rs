//! A sale as the pages show it: the receipt, its offer, the chain it came through and what
//! each participant earned from it, drawn as a row of people from the seller to the buyer.

use maud::{html, Markup};
use passalong_api::contacts::Names;
use passalong_protocol::attestation::{Body, Receipt};
use passalong_protocol::{Attestation, Currency, Id, Kind, PublicKey};
use passalong_store::Store;

use crate::layout::{self, PageError};

/// One receipt with what it paid.
pub struct Sale {
    /// The receipt's id.
    pub id: Id,
    /// The receipt.
    pub receipt: Receipt,
    /// The offer's title.
    pub title: String,
    /// The offer's currency.
    pub currency: Currency,
    /// The referrers of its chain, nearest the seller first (hop n … hop 1).
    pub chain: Vec<PublicKey>,
    /// What it credited, per participant.
    pub credits: Vec<(PublicKey, u64)>,
    /// It counts (the counted receipt of its order, with a valid chain).
    pub counted: bool,
}

impl Sale {
    /// What `who` earned from it.
    pub fn paid(&self, who: &PublicKey) -> u64 {
        self.credits
            .iter()
            .filter(|(k, _)| k == who)
            .map(|(_, a)| *a)
            .sum()
    }

    /// Every share it paid.
    pub fn shares(&self) -> u64 {
        self.credits.iter().map(|(_, a)| *a).sum()
    }
}

/// The receipts of `seller`'s market, newest first, at most `limit` (of `offer` only, if
/// given).
pub fn receipts(
    store: &Store,
    seller: &PublicKey,
    offer: Option<Id>,
    limit: usize,
) -> Result<Vec<Sale>, PageError> {
    let mut out = Vec::new();
    for (_, id, kind) in store.market(seller)?.into_iter().rev() {
        if out.len() >= limit {
            break;
        }
        if kind != Kind::Receipt as u8 {
            continue;
        }
        if let Some(a) = store.attestation(&id)? {
            if let Some(s) = load(store, a)? {
                if offer.is_none_or(|o| s.receipt.offer == o) {
                    out.push(s);
                }
            }
        }
    }
    Ok(out)
}

/// The sale behind a stored receipt.
pub fn load(store: &Store, a: Attestation) -> Result<Option<Sale>, PageError> {
    let Body::Receipt(receipt) = a.body else {
        return Ok(None);
    };
    let (title, currency) = match store.attestation(&receipt.offer)?.map(|o| o.body) {
        Some(Body::Offer(o)) => (o.title, o.currency),
        _ => return Ok(None),
    };
    let chain = match receipt.via {
        None => Vec::new(),
        Some(via) => store
            .chain(&via)?
            .into_iter()
            .filter_map(|a| match a.body {
                Body::Referral(r) => Some(r.referrer),
                _ => None,
            })
            .collect(),
    };
    let credits = store.credits(&a.id)?;
    Ok(Some(Sale {
        id: a.id,
        receipt,
        title,
        currency,
        chain,
        counted: credits.is_some(),
        credits: credits.unwrap_or_default(),
    }))
}

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
