//! What both test modules build the same way.

use passalong_protocol::attestation::{Body, Offer};
use passalong_protocol::{Attestation, Currency, Keypair, Policy, Rule};

/// When the lamp was offered.
pub const OFFERED_AT_MS: u64 = 1_767_225_600_000;

/// The seller of [`lamp_offer`] (not the node's key).
pub fn seller() -> Keypair {
    Keypair::from_seed([5; 32])
}

/// The seller's lamp, 40.00 EUR, paying a 10 % pool directly and a 3 % connector share.
pub fn lamp_offer() -> Attestation {
    let k = seller();
    Attestation::sign(
        Body::Offer(Offer {
            seller: k.public(),
            title: "A lamp".into(),
            content_hash: None,
            price_minor: 4000,
            currency: Currency::parse("EUR").expect("EUR"),
            policy: Policy {
                pool_bps: 1000,
                connector_bps: 300,
                rule: Rule::Direct,
                max_depth: 16,
                window_ms: 30 * 86_400_000,
                require_purchase: false,
            },
            valid_from_ms: 0,
            valid_until_ms: None,
            created_at_ms: OFFERED_AT_MS,
            checkout_url: None,
        }),
        &k,
    )
}
