//! What the store's benches share: keys, an offer and a root referral, signed for real.

use passalong_protocol::{Attestation, Body, Currency, Keypair, Offer, Policy, Referral, Rule};

/// Key `i` of a bench (`tag` keeps the benches' keys apart).
pub fn key(i: u64, tag: u8) -> Keypair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    seed[8] = tag;
    Keypair::from_seed(seed)
}

/// An offer of `seller`'s, made at `t`.
pub fn offer(seller: &Keypair, t: u64) -> Attestation {
    Attestation::sign(
        Body::Offer(Offer {
            seller: seller.public(),
            title: "A record".into(),
            content_hash: None,
            price_minor: 1_000,
            currency: Currency::parse("EUR").expect("a currency"),
            policy: Policy {
                pool_bps: 1_000,
                rule: Rule::Equal,
                connector_bps: 0,
                max_depth: 8,
                window_ms: 30 * 86_400_000,
                require_purchase: false,
            },
            valid_from_ms: t,
            valid_until_ms: None,
            checkout_url: None,
            created_at_ms: t,
        }),
        seller,
    )
}

/// A root referral of `o` by `k`, made at `t`.
pub fn refer(k: &Keypair, o: &Attestation, t: u64) -> Attestation {
    Attestation::sign(
        Body::Referral(Referral {
            referrer: k.public(),
            offer: o.id,
            parent: None,
            recipient: None,
            community: None,
            created_at_ms: t,
        }),
        k,
    )
}
