//! Builders shared by the integration tests: fixed-seed keys and one function per kind.
#![allow(dead_code)]

pub mod script;

use passalong_protocol::attestation::*;
use passalong_protocol::{Attestation, Id, Keypair, Policy, PublicKey, Rule};

pub const DAY_MS: u64 = 86_400_000;
/// 2026-01-01T00:00:00Z, the scenarios' epoch.
pub const T0: u64 = 1_767_225_600_000;

/// The key pair whose seed is 32 bytes of `n`.
pub fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

pub fn eur() -> Currency {
    Currency(*b"EUR")
}

pub fn policy(rule: Rule, pool_bps: u16) -> Policy {
    Policy {
        pool_bps,
        connector_bps: 0,
        rule,
        max_depth: 16,
        window_ms: 30 * DAY_MS,
        require_purchase: false,
    }
}

pub fn offer(seller: &Keypair, policy: Policy, t: u64) -> Attestation {
    offer_at(seller, policy, t, None)
}

/// [`offer`] with a checkout URL (a version-2 envelope) when `checkout_url` is set.
pub fn offer_at(
    seller: &Keypair,
    policy: Policy,
    t: u64,
    checkout_url: Option<&str>,
) -> Attestation {
    Attestation::sign(
        Body::Offer(Offer {
            seller: seller.public(),
            title: "A record".into(),
            content_hash: None,
            price_minor: 2_000,
            currency: eur(),
            policy,
            valid_from_ms: 0,
            valid_until_ms: None,
            created_at_ms: t,
            checkout_url: checkout_url.map(String::from),
        }),
        seller,
    )
}

pub fn refer(
    k: &Keypair,
    offer: &Attestation,
    parent: Option<&Attestation>,
    t: u64,
) -> Attestation {
    refer_full(k, offer.id, parent.map(|p| p.id), None, None, t)
}

pub fn refer_full(
    k: &Keypair,
    offer: Id,
    parent: Option<Id>,
    recipient: Option<PublicKey>,
    community: Option<Id>,
    t: u64,
) -> Attestation {
    Attestation::sign(
        Body::Referral(Referral {
            referrer: k.public(),
            offer,
            parent,
            recipient,
            community,
            created_at_ms: t,
        }),
        k,
    )
}

pub fn receipt(
    seller: &Keypair,
    offer: &Attestation,
    order: &str,
    amount_minor: u64,
    buyer: PublicKey,
    via: Option<&Attestation>,
    t: u64,
) -> Attestation {
    Attestation::sign(
        Body::Receipt(Receipt {
            seller: seller.public(),
            offer: offer.id,
            order: order.into(),
            amount_minor,
            buyer,
            via: via.map(|v| v.id),
            created_at_ms: t,
        }),
        seller,
    )
}

pub fn claim(
    buyer: &Keypair,
    offer: &Attestation,
    order: &str,
    via: Option<Id>,
    t: u64,
) -> Attestation {
    Attestation::sign(
        Body::PurchaseClaim(PurchaseClaim {
            buyer: buyer.public(),
            offer: offer.id,
            order: order.into(),
            via,
            created_at_ms: t,
        }),
        buyer,
    )
}

pub fn refund(seller: &Keypair, receipt: &Attestation, t: u64) -> Attestation {
    Attestation::sign(
        Body::Refund(Refund {
            seller: seller.public(),
            receipt: receipt.id,
            created_at_ms: t,
        }),
        seller,
    )
}

pub fn settle(seller: &Keypair, participant: PublicKey, amount_minor: u64, t: u64) -> Attestation {
    Attestation::sign(
        Body::Settlement(Settlement {
            seller: seller.public(),
            participant,
            amount_minor,
            currency: eur(),
            period_start_ms: T0,
            period_end_ms: t,
            reference: "SEPA-0001".into(),
            ledger_root: [0; 32],
            created_at_ms: t,
        }),
        seller,
    )
}

pub fn community(connector: &Keypair, t: u64) -> Attestation {
    Attestation::sign(
        Body::Community(Community {
            connector: connector.public(),
            name: "Neighbours".into(),
            created_at_ms: t,
        }),
        connector,
    )
}

pub fn membership(
    connector: &Keypair,
    community: &Attestation,
    member: &Keypair,
    t: u64,
) -> Attestation {
    Attestation::sign(
        Body::Membership(Membership::admit(
            connector.public(),
            community.id,
            member,
            t,
        )),
        connector,
    )
}

pub fn membership_end(author: &Keypair, membership: &Attestation, ends_at_ms: u64) -> Attestation {
    Attestation::sign(
        Body::MembershipEnd(MembershipEnd {
            author: author.public(),
            membership: membership.id,
            ends_at_ms,
            created_at_ms: ends_at_ms,
        }),
        author,
    )
}

/// A state holding `atts`, inserted in order, at a time after all of them.
pub fn state_of(atts: &[&Attestation]) -> passalong_protocol::State {
    passalong_protocol::State::from_envelopes(
        atts.iter().map(|a| a.bytes.as_slice()),
        T0 + 365 * DAY_MS,
    )
}

/// (earned, refunded, settled, owed) of `who` in EUR, or None without a line.
pub fn line(l: &passalong_protocol::Ledger, who: &Keypair) -> Option<(u128, u128, u128, i128)> {
    l.entry(eur(), &who.public())
        .map(|e| (e.earned, e.refunded, e.settled, e.owed))
}
