//! A random scenario generator (proptest) shared by the protocol's and the store's property
//! tests: a few offers of two sellers with random policies, a referral forest, receipts (with
//! equivocating order ids), refunds, settlements, memberships and purchase claims.

use super::*;
use passalong_protocol::{Attestation, Policy, Rule};
use proptest::prelude::*;

pub const SELLERS: [u8; 2] = [1, 2];
pub const CONNECTOR: u8 = 30;

pub fn rule_of(sel: u8) -> Rule {
    match sel % 5 {
        0 => Rule::Direct,
        1 => Rule::Equal,
        2 => Rule::Geometric { r_bps: 5000 },
        3 => Rule::Geometric { r_bps: 3000 },
        _ => Rule::SplitProof,
    }
}

#[derive(Debug, Clone)]
pub struct OfferSpec {
    pub seller: usize,
    pub rule: u8,
    pub pool_bps: u16,
    pub connector_bps: u16,
    pub max_depth: u8,
    pub window_days: u8,
    pub require_purchase: bool,
    /// The offer names a checkout URL (a version-2 envelope).
    pub checkout: bool,
}

#[derive(Debug, Clone)]
pub struct RefSpec {
    pub referrer: u8,
    pub offer: usize,
    pub parent: Option<usize>,
    pub community: bool,
    pub t_min: u32,
}

#[derive(Debug, Clone)]
pub struct ReceiptSpec {
    pub offer: usize,
    pub order: u8,
    pub amount: u64,
    pub buyer: u8,
    pub via: Option<usize>,
    pub t_min: u32,
}

#[derive(Debug, Clone)]
pub struct Script {
    pub offers: Vec<OfferSpec>,
    pub refs: Vec<RefSpec>,
    pub receipts: Vec<ReceiptSpec>,
    pub refunds: Vec<usize>,
    pub settlements: Vec<(usize, u8, u64)>,
    pub members: Vec<(u8, u32, Option<u32>)>,
    pub claims: Vec<(u8, usize, u8, Option<usize>)>,
}

pub fn offer_spec() -> impl Strategy<Value = OfferSpec> {
    (
        0..2usize,
        0..5u8,
        0..=5000u16,
        0..=1000u16,
        1..=16u8,
        1..=30u8,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                seller,
                rule,
                pool_bps,
                connector_bps,
                max_depth,
                window_days,
                require_purchase,
                checkout,
            )| {
                OfferSpec {
                    seller,
                    rule,
                    pool_bps,
                    connector_bps,
                    max_depth,
                    window_days,
                    require_purchase,
                    checkout,
                }
            },
        )
}

pub fn script() -> impl Strategy<Value = Script> {
    (
        prop::collection::vec(offer_spec(), 1..4),
        prop::collection::vec(
            (
                10..20u8,
                0..4usize,
                prop::option::weighted(0.8, 0..40usize),
                any::<bool>(),
                0..20_000u32,
            ),
            0..30,
        ),
        prop::collection::vec(
            (
                0..4usize,
                0..8u8,
                1..1_000_000u64,
                10..24u8,
                prop::option::weighted(0.8, 0..40usize),
                0..20_000u32,
            ),
            0..20,
        ),
        prop::collection::vec(0..20usize, 0..4),
        prop::collection::vec((0..2usize, 10..24u8, 1..5_000u64), 0..4),
        prop::collection::vec(
            (10..20u8, 0..10_000u32, prop::option::of(0..20_000u32)),
            0..5,
        ),
        prop::collection::vec(
            (10..24u8, 0..4usize, 0..8u8, prop::option::of(0..40usize)),
            0..4,
        ),
    )
        .prop_map(
            |(offers, refs, receipts, refunds, settlements, members, claims)| Script {
                refs: refs
                    .into_iter()
                    .map(|(referrer, offer, parent, community, t_min)| RefSpec {
                        referrer,
                        offer,
                        parent,
                        community,
                        t_min,
                    })
                    .collect(),
                receipts: receipts
                    .into_iter()
                    .map(|(offer, order, amount, buyer, via, t_min)| ReceiptSpec {
                        offer,
                        order,
                        amount,
                        buyer,
                        via,
                        t_min,
                    })
                    .collect(),
                offers,
                refunds,
                settlements,
                members,
                claims,
            },
        )
}

pub const MIN: u64 = 60_000;

/// The attestations of a script. Some are invalid or stay pending on purpose (a parent of
/// another offer, a receipt by the wrong seller is not generated, but cross-offer parents are).
pub fn build(s: &Script) -> Vec<Attestation> {
    let mut out = Vec::new();
    let offers: Vec<Attestation> = s
        .offers
        .iter()
        .map(|o| {
            let seller = key(SELLERS[o.seller]);
            let p = Policy {
                pool_bps: o.pool_bps,
                connector_bps: o.connector_bps,
                rule: rule_of(o.rule),
                max_depth: o.max_depth,
                window_ms: u64::from(o.window_days) * DAY_MS,
                require_purchase: o.require_purchase,
            };
            let url = o.checkout.then_some("https://shop.example/checkout?item=1");
            offer_at(&seller, p, T0, url)
        })
        .collect();
    out.extend(offers.iter().cloned());
    let conn = key(CONNECTOR);
    let comm = community(&conn, T0);
    out.push(comm.clone());
    for (m, start, end) in &s.members {
        let ms = membership(&conn, &comm, &key(*m), T0 + u64::from(*start) * MIN);
        if let Some(e) = end {
            out.push(membership_end(&conn, &ms, T0 + u64::from(*e) * MIN));
        }
        out.push(ms);
    }
    let mut refs: Vec<(Attestation, usize)> = Vec::new();
    for r in &s.refs {
        let oi = r.offer % offers.len();
        let parent = r
            .parent
            .filter(|_| !refs.is_empty())
            .map(|p| refs[p % refs.len()].0.id);
        let a = refer_full(
            &key(r.referrer),
            offers[oi].id,
            parent,
            None,
            r.community.then_some(comm.id),
            T0 + u64::from(r.t_min) * MIN,
        );
        refs.push((a, oi));
    }
    out.extend(refs.iter().map(|(a, _)| a.clone()));
    let mut receipts = Vec::new();
    for r in &s.receipts {
        let oi = r.offer % offers.len();
        let seller = key(SELLERS[s.offers[oi].seller]);
        // Prefer a referral of the same offer, so that most receipts are valid.
        let via = r.via.and_then(|v| {
            let same: Vec<&Attestation> = refs
                .iter()
                .filter(|(_, o)| *o == oi)
                .map(|(a, _)| a)
                .collect();
            (!same.is_empty()).then(|| same[v % same.len()].clone())
        });
        let a = receipt(
            &seller,
            &offers[oi],
            &format!("order-{}", r.order),
            r.amount,
            key(r.buyer).public(),
            via.as_ref(),
            T0 + u64::from(r.t_min) * MIN,
        );
        receipts.push((a, s.offers[oi].seller));
    }
    out.extend(receipts.iter().map(|(a, _)| a.clone()));
    for &i in &s.refunds {
        if !receipts.is_empty() {
            let (r, seller) = &receipts[i % receipts.len()];
            out.push(refund(&key(SELLERS[*seller]), r, T0 + 30 * DAY_MS));
        }
    }
    for (seller, who, amount) in &s.settlements {
        out.push(settle(
            &key(SELLERS[*seller]),
            key(*who).public(),
            *amount,
            T0 + 31 * DAY_MS,
        ));
    }
    for (buyer, oi, order, via) in &s.claims {
        let oi = oi % offers.len();
        let via = via
            .filter(|_| !refs.is_empty())
            .map(|v| refs[v % refs.len()].0.id);
        out.push(claim(
            &key(*buyer),
            &offers[oi],
            &format!("order-{order}"),
            via,
            T0 + 32 * DAY_MS,
        ));
    }
    out
}
