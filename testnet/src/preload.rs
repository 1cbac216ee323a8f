//! A large market signed here and imported into one node, for the late joiner to catch up:
//! a synthetic seller's offer and about `n` attestations by 1,000 keys, in chains of four
//! referrals with six sales through each.

use anyhow::Result;
use passalong_protocol::attestation::{Body, Offer, Receipt, Referral};
use passalong_protocol::{Attestation, Currency, Keypair, Policy, PublicKey, Rule};
use serde_json::json;

use crate::node::Node;

/// Envelopes imported per API call (well under the 16 MiB import limit).
const CHUNK: usize = 4_000;
/// Attestations per group: a chain of `CHAIN` referrals, then sales through its end.
const GROUP: usize = 10;
const CHAIN: usize = 4;

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
    // Groups of ten: a chain of four referrals by different keys, then six sales through its
    // end. Every referral is anchored by a sale, as in a market that sells: a node keeps
    // only a budget of referrals no sale went through (see the store's `loose`), so a market
    // of unsold referrals would not be caught up whole.
    let mut envelopes = vec![offer.bytes.clone()];
    let groups = n.div_ceil(GROUP);
    let mut k = 0usize;
    for g in 0..groups {
        let t = start + 1 + (g * GROUP) as u64;
        let mut parent = None;
        for d in 0..CHAIN {
            let key = &keys[(g * CHAIN + d) % keys.len()];
            let r = Attestation::sign(
                Body::Referral(Referral {
                    referrer: key.public(),
                    offer: offer.id,
                    parent,
                    recipient: None,
                    community: None,
                    created_at_ms: t + d as u64,
                }),
                key,
            );
            parent = Some(r.id);
            envelopes.push(r.bytes);
        }
        for j in 0..GROUP - CHAIN {
            let r = Attestation::sign(
                Body::Receipt(Receipt {
                    seller: seller.public(),
                    offer: offer.id,
                    order: format!("pre-{k}"),
                    amount_minor: 1_000 + (k % 9_000) as u64,
                    buyer: keys[k % keys.len()].public(),
                    via: parent,
                    created_at_ms: t + (CHAIN + j) as u64,
                }),
                &seller,
            );
            k += 1;
            envelopes.push(r.bytes);
        }
    }
    for chunk in envelopes.chunks(CHUNK) {
        let hexes: Vec<String> = chunk.iter().map(hex::encode).collect();
        node.post("/v1/attestations", &json!({ "envelopes": hexes }))?;
    }
    Ok((seller.public(), envelopes))
}
