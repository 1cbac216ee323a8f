//! What is published during a run: real signed attestations, honest and hostile.

use std::collections::HashMap;
use std::sync::Arc;

use passalong_protocol::attestation::{Body, Offer, Referral};
use passalong_protocol::{validation, Attestation, Id, Keypair, Policy, PublicKey, Rule};
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

/// One attestation to publish.
#[derive(Clone, Debug)]
pub struct Publication {
    /// When.
    pub at: u64,
    /// By which node.
    pub node: u32,
    /// Its market's number.
    pub market: u16,
    /// The attestation's id.
    pub id: Id,
    /// Its envelope.
    pub envelope: Arc<Vec<u8>>,
    /// Published by an honest node.
    pub honest: bool,
}

/// The market keys and everything published.
pub struct Workload {
    /// Market `i`'s key.
    pub markets: Vec<PublicKey>,
    /// Market by key.
    pub market_of: HashMap<PublicKey, u16>,
    /// In publication order.
    pub publications: Vec<Publication>,
}

/// The time of the simulation's epoch (2026-01-01) in ms; attestations are dated after it.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

fn seed(rng: &mut ChaCha8Rng) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

fn offer(seller: &Keypair, t: u64) -> Attestation {
    Attestation::sign(
        Body::Offer(Offer {
            seller: seller.public(),
            title: "A record".into(),
            content_hash: None,
            price_minor: 2_000,
            currency: passalong_protocol::attestation::Currency(*b"EUR"),
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
            created_at_ms: t,
            checkout_url: None,
        }),
        seller,
    )
}

fn referral(k: &Keypair, offer: Id, t: u64) -> Attestation {
    Attestation::sign(
        Body::Referral(Referral {
            referrer: k.public(),
            offer,
            parent: None,
            recipient: None,
            community: None,
            created_at_ms: t,
        }),
        k,
    )
}

/// Builds the workload: market `i`'s seller is node `sellers[i]` (honest), which publishes its
/// offer, then honest referrers' referrals; each hostile node publishes valid spam referrals
/// of random honest offers, each by a fresh key.
pub fn build(
    rng: &mut ChaCha8Rng,
    sellers: &[u32],
    hostile: &[u32],
    referrals_per_market: usize,
    spam_per_hostile: usize,
    publish_ms: u64,
) -> Workload {
    let referrers: Vec<Keypair> = (0..64).map(|_| Keypair::from_seed(seed(rng))).collect();
    let mut markets = Vec::new();
    let mut publications = Vec::new();
    let mut offers = Vec::new();
    for (i, node) in sellers.iter().enumerate() {
        let k = Keypair::from_seed(seed(rng));
        markets.push(k.public());
        let at = rng.next_u64() % (publish_ms / 4).max(1);
        let o = offer(&k, EPOCH_MS + at);
        offers.push((i as u16, o.id));
        publications.push(Publication {
            at,
            node: *node,
            market: i as u16,
            id: o.id,
            envelope: Arc::new(o.bytes),
            honest: true,
        });
        for _ in 0..referrals_per_market {
            let at = publish_ms / 4 + rng.next_u64() % (publish_ms - publish_ms / 4).max(1);
            let r = &referrers[(rng.next_u64() % referrers.len() as u64) as usize];
            let a = referral(r, o.id, EPOCH_MS + at);
            publications.push(Publication {
                at,
                node: *node,
                market: i as u16,
                id: a.id,
                envelope: Arc::new(a.bytes),
                honest: true,
            });
        }
    }
    for h in hostile {
        for _ in 0..spam_per_hostile {
            let (market, offer) = offers[(rng.next_u64() % offers.len() as u64) as usize];
            let at = rng.next_u64() % publish_ms.max(1);
            let a = referral(&Keypair::from_seed(seed(rng)), offer, EPOCH_MS + at);
            publications.push(Publication {
                at,
                node: *h,
                market,
                id: a.id,
                envelope: Arc::new(a.bytes),
                honest: false,
            });
        }
    }
    publications.sort_by_key(|p| (p.at, p.node, p.id));
    let market_of = markets
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, i as u16))
        .collect();
    Workload {
        markets,
        market_of,
        publications,
    }
}

/// What the protocol's stateless checks say of an envelope.
#[derive(Clone, Copy, Debug)]
pub enum Checked {
    /// Valid: its author, and the market its body names (if it names one).
    Valid {
        /// Signer.
        author: PublicKey,
        /// Named market.
        market: Option<PublicKey>,
    },
    /// Not an attestation.
    Invalid,
}

/// Each distinct envelope is checked once for the whole run (validity does not depend on who
/// checks it).
#[derive(Default)]
pub struct Checks(HashMap<Id, Checked>);

impl Checks {
    /// The protocol's verdict on `envelope`.
    pub fn check(&mut self, id: Id, envelope: &[u8]) -> Checked {
        *self
            .0
            .entry(id)
            .or_insert_with(|| match validation::check(envelope) {
                Ok(a) => Checked::Valid {
                    author: a.body.author(),
                    market: a.body.market(),
                },
                Err(_) => Checked::Invalid,
            })
    }
}
