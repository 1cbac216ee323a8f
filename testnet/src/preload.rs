//! A large market signed here and imported into one node, for the late joiner to catch up:
//! a synthetic seller's offer, `n` referrals by 1,000 keys, and a sale through every 1,000th.

use anyhow::Result;
use passalong_protocol::attestation::{Body, Offer, Receipt, Referral};
use passalong_protocol::{Attestation, Currency, Keypair, Policy, PublicKey, Rule};
use serde_json::json;

use crate::node::Node;

/// Envelopes imported per API call (well under the 16 MiB import limit).
const CHUNK: usize = 4_000;

/// Signs the market and imports it into `node`; returns its seller and envelopes.
pub fn preload(node: &Node, n: usize, now_ms: u64) -> Result<(PublicKey, Vec<Vec<u8>>)> {
    let seller = Keypair::from_seed([0xEE; 32]);
    let start = now_ms.saturating_sub(n as u64 + 1_000);
    let offer = Attestation::sign(
        Body::Offer(Offer {
            seller: seller.public(),
            title: "preloaded".into(),
            content_hash: None,
            price_minor: 1_000,
            currency: Currency(*b"EUR"),
            policy: Policy {
                pool_bps: 1_000,
                connector_bps: 0,
                rule: Rule::Equal,
                max_depth: 16,
                window_ms: 30 * 86_400_000,
                require_purchase: false,
            },
            valid_from_ms: 0,
            valid_until_ms: None,
            created_at_ms: start,
            checkout_url: None,
        }),
        &seller,
    );
    let keys: Vec<Keypair> = (0..1_000u32)
        .map(|i| {
            let mut seed = [0x11; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    let mut envelopes = vec![offer.bytes.clone()];
    let mut referrals = Vec::new();
    for i in 0..n {
        let r = Attestation::sign(
            Body::Referral(Referral {
                referrer: keys[i % keys.len()].public(),
                offer: offer.id,
                parent: None,
                recipient: None,
                community: None,
                created_at_ms: start + 1 + i as u64,
            }),
            &keys[i % keys.len()],
        );
        referrals.push(r.id);
        envelopes.push(r.bytes);
    }
    // Sales through some of them, so that the market's ledger (and root) is not empty.
    for (k, via) in referrals.iter().step_by(1_000).enumerate() {
        let r = Attestation::sign(
            Body::Receipt(Receipt {
                seller: seller.public(),
                offer: offer.id,
                order: format!("pre-{k}"),
                amount_minor: 1_000,
                buyer: keys[k % keys.len()].public(),
                via: Some(*via),
                created_at_ms: start + n as u64 + 1 + k as u64,
            }),
            &seller,
        );
        envelopes.push(r.bytes);
    }
    for chunk in envelopes.chunks(CHUNK) {
        let hexes: Vec<String> = chunk.iter().map(hex::encode).collect();
        node.post("/v1/attestations", &json!({ "envelopes": hexes }))?;
    }
    Ok((seller.public(), envelopes))
}
