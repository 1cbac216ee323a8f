//! What a valid attestation adds to the indexes, kind by kind, and which receipts' payouts it
//! can change (those are recomputed by [`crate::ledger`]).

use passalong_protocol::attestation::Body;
use passalong_protocol::payout::ChainView;
use passalong_protocol::{Attestation, Id, PublicKey};

use crate::dependency;
use crate::keyspace::*;
use crate::ledger;
use crate::loose;
use crate::orders;
use crate::txn::Txn;

/// Order ids are chosen by sellers and up to 64 bytes: keys use their blake3.
pub(crate) fn order_hash(order: &str) -> [u8; 32] {
    *blake3::hash(order.as_bytes()).as_bytes()
}

fn postcard_of<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

/// The market an attestation belongs to: the seller of its offer, or for community kinds the
/// community's connector.
pub(crate) fn market_of(t: &Txn<'_>, body: &Body) -> Option<PublicKey> {
    Some(match body {
        Body::Offer(o) => o.seller,
        Body::Referral(r) => t.offer(&r.offer)?.seller,
        Body::Receipt(r) => r.seller,
        Body::PurchaseClaim(c) => t.offer(&c.offer)?.seller,
        Body::Refund(r) => r.seller,
        Body::Settlement(s) => s.seller,
        Body::Community(c) => c.connector,
        Body::Membership(m) => m.connector,
        Body::MembershipEnd(e) => {
            let m = t.get(&key(MEMBERSHIP, &[&e.membership.0]))?;
            t.connector(&Id(id_at(&m, 0)))?
        }
    })
}

/// The first (smallest) id of an ORDER value: the receipt that counts.
pub(crate) fn first_id(ids: &[u8]) -> Option<Id> {
    ids.get(..32).map(|_| Id(id_at(ids, 0)))
}

/// Adds `id` to an ORDER value, keeping it sorted and without repeats.
pub(crate) fn insert_id(ids: &mut Vec<u8>, id: &Id) {
    let mut at = ids.len() / 32;
    for (i, c) in ids.chunks_exact(32).enumerate() {
        if c == id.0 {
            return;
        }
        if c > &id.0[..] {
            at = i;
            break;
        }
    }
    ids.splice(at * 32..at * 32, id.0);
}

/// Records a valid attestation.
pub(crate) fn apply(t: &mut Txn<'_>, att: &Attestation) {
    let id = att.id;
    // A referral's offer, read once: its seller is the market, its policy says whether the
    // referral is indexed by referrer.
    let offer = match &att.body {
        Body::Referral(r) => t.offer(&r.offer),
        _ => None,
    };
    let market = match &offer {
        Some(o) => Some(o.seller),
        None => market_of(t, &att.body),
    };
    if let Some(market) = market {
        t.markets.insert(id, market);
        loose::index(t, market, id, &att.body);
    }
    match &att.body {
        Body::Offer(_) => {}
        Body::Referral(r) => {
            // Read only when a buyer's first purchase of an offer that requires one makes
            // their referrals eligible hops (see `ledger`): of other offers, not kept.
            if offer.is_some_and(|o| o.policy.require_purchase) {
                t.put(
                    key(BY_REFERRER, &[&r.offer.0, &r.referrer.0, &id.0]),
                    vec![],
                );
            }
            if let Some(c) = r.community {
                t.put(key(NAMING, &[&c.0, &r.referrer.0, &id.0]), vec![]);
                if let Some(market) = market {
                    dependency::referral(t, market, r);
                }
            }
        }
        Body::Receipt(r) => {
            loose::anchor_receipt(t, r.via, &r.seller, &r.order);
            let hash = order_hash(&r.order);
            let order = orders::order_key(&r.seller, &hash);
            let counted_before = t.counted(&order);
            t.add_to_order(order, id, counted_before);
            if let Some(prev) = counted_before {
                // Equivocation: the ORDER key lists every receipt of the order.
                let k = key(ORDER, &[&r.seller.0, &hash]);
                let mut ids = t.get(&k).map_or_else(|| prev.0.to_vec(), |v| v.to_vec());
                insert_id(&mut ids, &id);
                t.put(k, ids);
            }
            let started = std::time::Instant::now();
            match counted_before {
                None => ledger::count(t, id),
                Some(prev) if id < prev => {
                    ledger::uncount(t, prev);
                    ledger::count(t, id);
                }
                Some(_) => return, // equivocation: the smaller id already counts
            }
            t.ledger_updates.0 += 1;
            t.ledger_updates.1 += started.elapsed();
        }
        Body::PurchaseClaim(c) => {
            t.hints.claim_stored();
            if let Some(o) = t.offer(&c.offer) {
                t.put(
                    key(CLAIM, &[&o.seller.0, &order_hash(&c.order), &id.0]),
                    postcard_of(c),
                );
            }
        }
        Body::Refund(r) => ledger::refund(t, r.receipt),
        Body::Settlement(s) => ledger::add(
            t,
            &s.seller,
            s.currency,
            &s.participant,
            [0, 0, u128::from(s.amount_minor)],
            true,
        ),
        Body::Community(c) => {
            t.put(key(COMMUNITY, &[&id.0]), c.connector.0.to_vec());
            dependency::community(t, id, c.created_at_ms);
            connector_changed(t, &id, None);
        }
        Body::Membership(m) => {
            t.put(
                key(MEMBER, &[&m.community.0, &m.member.0, &id.0]),
                m.created_at_ms.to_be_bytes().to_vec(),
            );
            t.put(
                key(MEMBERSHIP, &[&id.0]),
                [m.community.0, m.member.0].concat(),
            );
            dependency::membership(t, id, m);
            connector_changed(t, &m.community, Some(&m.member));
        }
        Body::MembershipEnd(e) => {
            dependency::end(t, id, e);
            let k = key(MEMBERSHIP_END, &[&e.membership.0]);
            let end = t.get(&k).map_or(u64::MAX, |v| u64_at(&v, 0));
            if e.ends_at_ms < end {
                t.put(k, e.ends_at_ms.to_be_bytes().to_vec());
                if let Some(m) = t.get(&key(MEMBERSHIP, &[&e.membership.0])) {
                    let member = PublicKey(id_at(&m, 32));
                    connector_changed(t, &Id(id_at(&m, 0)), Some(&member));
                }
            }
        }
    }
}

/// A community's connector or a member's membership changed: recompute the counted receipts
/// whose hop 1 is a referral (by that member, or anyone) naming the community.
fn connector_changed(t: &mut Txn<'_>, community: &Id, member: Option<&PublicKey>) {
    let prefix = match member {
        Some(m) => key(NAMING, &[&community.0, &m.0]),
        None => key(NAMING, &[&community.0]),
    };
    let mut receipts = Vec::new();
    for (k, _) in t.scan(&prefix) {
        let referral = id_at(&k, 65);
        for (tk, pos) in t.scan(&key(THROUGH, &[&referral])) {
            if pos.first() == Some(&0) {
                receipts.push(Id(id_at(&tk, 33)));
            }
        }
    }
    receipts.sort();
    receipts.dedup();
    for r in receipts {
        ledger::recompute(t, r);
    }
}
