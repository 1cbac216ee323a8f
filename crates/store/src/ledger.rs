//! The ledger kept up to date one receipt at a time.
//!
//! Each counted receipt's payout is computed by the protocol's rules over the store
//! ([`passalong_protocol::payout::payout`] with the store as `ChainView`) and remembered, so
//! that it can be taken back exactly: when an equivocating receipt with a smaller id takes
//! over, when a refund claws it back, or when something it depends on changes (a purchase that
//! makes a `require_purchase` hop eligible, a membership that pays the connector). The sums per
//! (seller, currency, participant) then always equal a full recompute — a property test checks it.

use passalong_protocol::attestation::Currency;
use passalong_protocol::payout::{self, ChainView};
use passalong_protocol::{Id, Ledger, LedgerEntry, PublicKey};
use serde::{Deserialize, Serialize};

use crate::book::{line_key, Book, LineKey, Sums};
use crate::keyspace::*;
use crate::txn::{Bytes, Txn};

/// What a counted receipt credited, to take it back later.
#[derive(Serialize, Deserialize)]
struct PayoutRec {
    seller: PublicKey,
    currency: Currency,
    offer: Id,
    buyer: PublicKey,
    created_at_ms: u64,
    credits: Vec<(PublicKey, u64)>,
    /// Referral ids of the kept hops, nearest the buyer first, when something can change this
    /// receipt's payout later (require_purchase or a connector share); empty otherwise, so
    /// that a plain receipt writes few keys.
    hops: Vec<Id>,
    /// The offer has require_purchase: this purchase is indexed for it.
    indexes_purchase: bool,
}

/// Adds (`plus`) or subtracts `delta` = (earned, refunded, settled) to one ledger line. A line
/// that comes back to zero is removed: lines exist only for nonzero shares and settlements.
pub(crate) fn add(
    t: &mut Txn<'_>,
    seller: &PublicKey,
    currency: Currency,
    who: &PublicKey,
    delta: [u128; 3],
    plus: bool,
) {
    apply(t, line_key(&seller.0, &currency.0, &who.0), delta, plus);
}

/// Adds (`plus`) or subtracts `delta` to the book line `k` (a ledger line or an offer's
/// totals). Subtraction only takes back what was added, so it cannot go below zero.
fn apply(t: &mut Txn<'_>, k: LineKey, delta: [u128; 3], plus: bool) {
    let mut s = t.line(&k);
    for (x, d) in s.iter_mut().zip(delta) {
        *x = if plus {
            x.saturating_add(d)
        } else {
            x.saturating_sub(d)
        };
    }
    t.set_line(k, s);
}

/// The book line that keeps an offer's totals (see `book`): `offer ‖ 000 ‖ 0…0`. No ledger
/// line has that currency, and an offer's id is no seller's key.
pub(crate) fn offer_line(offer: &Id) -> LineKey {
    line_key(&offer.0, &OFFER_CURRENCY, &[0; 32])
}

/// The currency bytes of offer lines.
pub(crate) const OFFER_CURRENCY: [u8; 3] = [0; 3];

/// What a counted receipt adds to its offer's totals: one sale, its amount, its shares.
fn sale_totals(t: &Txn<'_>, receipt: &Id, rec: &PayoutRec) -> [u128; 3] {
    let amount = t.receipt(receipt).map_or(0, |r| r.amount_minor);
    [1, u128::from(amount), shares(rec)]
}

fn shares(rec: &PayoutRec) -> u128 {
    rec.credits.iter().map(|(_, a)| u128::from(*a)).sum()
}

/// Adds (`plus`) or subtracts `delta` = (sales, revenue, shares) to an offer's totals.
fn add_to_offer(t: &mut Txn<'_>, offer: &Id, delta: [u128; 3], plus: bool) {
    apply(t, offer_line(offer), delta, plus);
}

/// An offer's totals over its counted receipts (refunded ones included): sales, revenue and
/// the shares they paid.
pub(crate) fn offer_totals(book: &Book, offer: &Id) -> Sums {
    book.get(&offer_line(offer))
}

/// What the counted receipt `receipt` adds to which offer's totals (`None`: it does not count).
pub(crate) fn totals_of(t: &Txn<'_>, receipt: &Id) -> Option<(Id, [u128; 3])> {
    let rec = payout_of(t, receipt)?;
    Some((rec.offer, sale_totals(t, receipt, &rec)))
}

fn purchase_key(rec: &PayoutRec, receipt: &Id) -> Vec<u8> {
    key(
        PURCHASE,
        &[
            &rec.offer.0,
            &rec.buyer.0,
            &rec.created_at_ms.to_be_bytes(),
            &receipt.0,
        ],
    )
}

fn credit(t: &mut Txn<'_>, rec: &PayoutRec, refunded: bool, plus: bool) {
    for (who, amount) in &rec.credits {
        let a = u128::from(*amount);
        add(
            t,
            &rec.seller,
            rec.currency,
            who,
            [a, if refunded { a } else { 0 }, 0],
            plus,
        );
    }
}

/// Computes a receipt's payout with the current indexes, and whether it can change later.
fn compute(t: &Txn<'_>, receipt: &Id) -> Option<(PayoutRec, bool)> {
    let r = t.receipt(receipt)?;
    let o = t.offer(&r.offer)?;
    let sale = payout::Sale {
        offer: r.offer,
        seller: r.seller,
        policy: o.policy,
        amount_minor: r.amount_minor,
        buyer: r.buyer,
        via: r.via,
        created_at_ms: r.created_at_ms,
    };
    let p = payout::payout(t, &sale);
    let may_change = o.policy.require_purchase || o.policy.connector_bps > 0;
    let mut hops = Vec::new();
    let mut node = r.via;
    while may_change && hops.len() < p.hops().len() {
        let Some(n) = node else { break };
        hops.push(n);
        node = t.hop_above(n).and_then(|h| h.parent);
    }
    let rec = PayoutRec {
        seller: r.seller,
        currency: o.currency,
        offer: r.offer,
        buyer: r.buyer,
        created_at_ms: r.created_at_ms,
        credits: p.credits().collect(),
        hops,
        indexes_purchase: o.policy.require_purchase,
    };
    Some((rec, may_change))
}

/// What a counted receipt credited (`None`: it does not count). Kept in its entry; an empty
/// record means "what `compute` gives": a payout that cannot change (no require_purchase, no
/// connector share) depends only on immutable things (the receipt, the offer, the chain), so
/// it is not stored — most of a receipt's entry and of its encoding cost.
fn payout_of(t: &Txn<'_>, receipt: &Id) -> Option<PayoutRec> {
    let stored: Vec<u8> = t.entry(receipt, |e| e.payout.map(|p| p.0.to_vec()))??;
    if stored.is_empty() {
        return compute(t, receipt).map(|(rec, _)| rec);
    }
    postcard::from_bytes(&stored).ok()
}

/// What a counted receipt credited, per participant.
pub(crate) fn credits(t: &Txn<'_>, receipt: &Id) -> Option<Vec<(PublicKey, u64)>> {
    payout_of(t, receipt).map(|r| r.credits)
}

/// Records (or, with `None`, forgets) what a receipt credited.
fn set_payout(t: &mut Txn<'_>, receipt: &Id, rec: Option<(&PayoutRec, bool)>) {
    let Some(v) = t.get(&key(ENTRY, &[&receipt.0])) else {
        return;
    };
    let payout = rec.and_then(|(r, may_change)| {
        if may_change {
            postcard::to_allocvec(r).ok()
        } else {
            Some(Vec::new())
        }
    });
    let Some(mut e) = t.decode_entry(&v) else {
        return;
    };
    e.payout = payout.as_deref().map(Bytes);
    t.put_entry(receipt, &e);
}

fn refunded(t: &Txn<'_>, receipt: &Id) -> bool {
    t.contains(&key(REFUNDED, &[&receipt.0]))
}

/// A receipt that just became valid starts to count. It is not refunded: a refund is valid
/// only once its receipt is, so none can be stored yet.
pub(crate) fn count(t: &mut Txn<'_>, receipt: Id) {
    let Some((rec, may_change)) = compute(t, &receipt) else {
        return;
    };
    credit(t, &rec, false, true);
    let totals = sale_totals(t, &receipt, &rec);
    add_to_offer(t, &rec.offer, totals, true);
    for (pos, h) in rec.hops.iter().enumerate() {
        t.put(key(THROUGH, &[&h.0, &receipt.0]), vec![pos as u8]);
    }
    let first = rec
        .indexes_purchase
        .then(|| t.first_purchase_ms(rec.offer, &rec.buyer));
    if rec.indexes_purchase {
        t.put(purchase_key(&rec, &receipt), vec![]);
    }
    let (offer, buyer) = (rec.offer, rec.buyer);
    set_payout(t, &receipt, Some((&rec, may_change)));
    if let Some(first) = first {
        purchase_changed(t, &offer, &buyer, first);
    }
}

/// A receipt stops counting (an equivocating receipt with a smaller id arrived).
pub(crate) fn uncount(t: &mut Txn<'_>, receipt: Id) {
    let Some(rec) = payout_of(t, &receipt) else {
        return;
    };
    let is_refunded = refunded(t, &receipt);
    credit(t, &rec, is_refunded, false);
    let totals = sale_totals(t, &receipt, &rec);
    add_to_offer(t, &rec.offer, totals, false);
    for h in &rec.hops {
        t.del(key(THROUGH, &[&h.0, &receipt.0]));
    }
    set_payout(t, &receipt, None);
    if !is_refunded && rec.indexes_purchase {
        let first = t.first_purchase_ms(rec.offer, &rec.buyer);
        t.del(purchase_key(&rec, &receipt));
        purchase_changed(t, &rec.offer, &rec.buyer, first);
    }
}

/// Something a counted receipt's payout depends on changed: take back the old credits, give
/// the new ones. (Its chain cannot change: referrals are immutable and were all valid.)
pub(crate) fn recompute(t: &mut Txn<'_>, receipt: Id) {
    let Some(old) = payout_of(t, &receipt) else {
        return;
    };
    let Some((new, may_change)) = compute(t, &receipt) else {
        return;
    };
    if old.credits == new.credits {
        return;
    }
    let is_refunded = refunded(t, &receipt);
    credit(t, &old, is_refunded, false);
    credit(t, &new, is_refunded, true);
    add_to_offer(t, &old.offer, [0, 0, shares(&old)], false);
    add_to_offer(t, &new.offer, [0, 0, shares(&new)], true);
    set_payout(t, &receipt, Some((&new, may_change)));
}

/// A receipt was refunded (once is enough).
pub(crate) fn refund(t: &mut Txn<'_>, receipt: Id) {
    let rk = key(REFUNDED, &[&receipt.0]);
    if t.contains(&rk) {
        return;
    }
    t.put(rk, vec![]);
    let Some(rec) = payout_of(t, &receipt) else {
        return; // not counted: nothing was credited
    };
    for (who, amount) in &rec.credits {
        add(
            t,
            &rec.seller,
            rec.currency,
            who,
            [0, u128::from(*amount), 0],
            true,
        );
    }
    if rec.indexes_purchase {
        let first = t.first_purchase_ms(rec.offer, &rec.buyer);
        t.del(purchase_key(&rec, &receipt));
        purchase_changed(t, &rec.offer, &rec.buyer, first);
    }
}

/// A purchase of `offer` by `buyer` started or stopped counting; their earliest was at
/// `before`. If the earliest changed, with `require_purchase` the buyer's referrals of that
/// offer may have become (in)eligible hops: the sales through them are computed again. (Not
/// when it did not: a buyer's later purchases would each recompute every sale through their
/// referrals, quadratic in a busy referrer's sales.)
fn purchase_changed(t: &mut Txn<'_>, offer: &Id, buyer: &PublicKey, before: Option<u64>) {
    if !t.offer(offer).is_some_and(|o| o.policy.require_purchase) {
        return;
    }
    if t.first_purchase_ms(*offer, buyer) == before {
        return;
    }
    let mut receipts = Vec::new();
    for (k, _) in t.scan(&key(BY_REFERRER, &[&offer.0, &buyer.0])) {
        let referral = id_at(&k, 65);
        for (tk, _) in t.scan(&key(THROUGH, &[&referral])) {
            receipts.push(Id(id_at(&tk, 33)));
        }
    }
    receipts.sort();
    receipts.dedup();
    for r in receipts {
        recompute(t, r);
    }
}

/// A seller's ledger as kept.
pub(crate) fn read(book: &Book, seller: &PublicKey) -> Ledger {
    let entries = book
        .seller(&seller.0)
        .into_iter()
        .map(|(k, [e, r, s])| {
            let mut c = [0u8; 3];
            c.copy_from_slice(&k[32..35]);
            LedgerEntry::new(Currency(c), PublicKey(id_at(&k, 35)), e, r, s)
        })
        .collect();
    Ledger::from_entries(*seller, entries)
}
