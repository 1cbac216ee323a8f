//! A long, deterministic stream of valid attestations for the tests at scale: three sellers
//! with six offers (every payout rule, connector shares, `require_purchase`, a short window),
//! a community with members, then blocks of referral chains and the sales through them,
//! refunds, settlements, purchase claims, equivocating receipts and retroactive membership
//! ends.
//!
//! Item `i` depends only on the base and on the items of its own block (and on order names
//! and keys, never on the ids of other blocks), so any range can be built without the items
//! before it: a process killed mid-stream and started again rebuilds from where it stopped,
//! and agrees byte for byte with a process that built it all. Every item's dependencies come
//! before it, and every referral is below a sale of its block (anchored: never dropped as
//! loose once its block is in).

use std::sync::OnceLock;

use crate::common::*;
use passalong_protocol::{Attestation, Keypair, Policy, PublicKey, Rule};

/// When the tests look at the stream: after every item's time.
pub const NOW: u64 = T0 + 400 * DAY_MS;

/// Items per block.
pub const BLOCK: usize = 48;

/// The longest stream any test uses.
pub const MAX_ITEMS: usize = 120_000;

/// The community's connector: `common::key(CONNECTOR_KEY)`.
const CONNECTOR_KEY: u8 = 30;

/// People (referrers and buyers). Not too few: with `require_purchase`, each sale of a buyer
/// has the store recompute every sale through the buyer's referrals of that offer, so a
/// few people buying and referring all day make ingest quadratic.
const PEOPLE: usize = 1_000;
/// The first `MEMBERS` people are members of the community (and sign the referrals that name
/// it).
const MEMBERS: usize = 24;
/// Root referrals per offer in the base.
const ROOTS: usize = 4;

/// Item `i`'s time: one second apart, so that the stream spans about a day and a half (the
/// window of 6 hours of offer 4 ends many chains early).
pub fn time_of(i: usize) -> u64 {
    T0 + 1_000 + i as u64 * 1_000
}

/// Person `n`'s key (seeds apart from `common::key`'s).
fn person_key(n: u32) -> Keypair {
    let mut seed = [0xC3; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    Keypair::from_seed(seed)
}

/// A small deterministic generator (splitmix64).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The fixed part: keys, offers, the community and its memberships, root referrals.
pub struct Base {
    pub sellers: [Keypair; 3],
    pub connector: Keypair,
    pub people: Vec<Keypair>,
    /// (offer, index of its seller in `sellers`).
    pub offers: Vec<(Attestation, usize)>,
    pub community: Attestation,
    /// Membership of `people[k]`, k < MEMBERS.
    pub memberships: Vec<Attestation>,
    /// Root referrals (no parent) of each offer.
    pub roots: Vec<Vec<Attestation>>,
    /// All of the above, in stream order.
    pub items: Vec<Attestation>,
}

/// Offer `k`'s policy: every rule, connector shares, `require_purchase`, depths, a window of 6
/// hours.
fn policy_of(k: usize) -> Policy {
    let (rule, pool_bps, connector_bps, max_depth, window_ms, require_purchase) = match k {
        0 => (
            Rule::Geometric { r_bps: 5000 },
            1_000,
            200,
            16,
            30 * DAY_MS,
            false,
        ),
        1 => (Rule::Equal, 800, 0, 4, 30 * DAY_MS, false),
        2 => (Rule::SplitProof, 1_500, 100, 8, 30 * DAY_MS, false),
        3 => (Rule::Direct, 500, 300, 16, 30 * DAY_MS, true),
        4 => (
            Rule::Geometric { r_bps: 3000 },
            1_200,
            0,
            16,
            DAY_MS / 4,
            false,
        ),
        _ => (Rule::Equal, 2_000, 150, 16, 30 * DAY_MS, true),
    };
    Policy {
        pool_bps,
        connector_bps,
        rule,
        max_depth,
        window_ms,
        require_purchase,
    }
}

impl Base {
    pub fn new() -> Base {
        let sellers = [key(1), key(2), key(3)];
        let connector = key(CONNECTOR_KEY);
        let people: Vec<Keypair> = (0..PEOPLE as u32).map(person_key).collect();
        let mut items = Vec::new();
        let at = |items: &Vec<Attestation>| time_of(items.len());
        let mut offers = Vec::new();
        for k in 0..6 {
            let seller = k % 3;
            let o = offer_at(&sellers[seller], policy_of(k), T0, None);
            items.push(o.clone());
            offers.push((o, seller));
        }
        let community = community(&connector, at(&items));
        items.push(community.clone());
        let mut memberships = Vec::new();
        for p in &people[..MEMBERS] {
            let m = membership(&connector, &community, p, at(&items));
            items.push(m.clone());
            memberships.push(m);
        }
        let mut roots = Vec::new();
        for (k, (o, _)) in offers.iter().enumerate() {
            let mut of_offer = Vec::new();
            for r in 0..ROOTS {
                let who = &people[(k * ROOTS + r) % PEOPLE];
                let c = (r % 2 == 0).then_some(community.id);
                let a = refer_full(who, o.id, None, None, c, at(&items));
                items.push(a.clone());
                of_offer.push(a);
            }
            roots.push(of_offer);
        }
        Base {
            sellers,
            connector,
            people,
            offers,
            community,
            memberships,
            roots,
            items,
        }
    }

    /// Items in the stream before the first block.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The seller keys, as the markets the ledgers are kept for.
    pub fn seller_keys(&self) -> Vec<PublicKey> {
        self.sellers.iter().map(|k| k.public()).collect()
    }

    /// Every market the stream writes to: the sellers' and the connector's.
    pub fn markets(&self) -> Vec<PublicKey> {
        let mut m = self.seller_keys();
        m.push(self.connector.public());
        m
    }

    /// Block `b`: `BLOCK` items, from a generator seeded by `b` alone.
    pub fn block(&self, b: usize) -> Vec<Attestation> {
        let first = self.len() + b * BLOCK;
        let mut rng = Rng::new(0xB10C_0000 ^ b as u64);
        let k = b % self.offers.len();
        let (offer, s) = &self.offers[k];
        let seller = &self.sellers[*s];
        let person = |rng: &mut Rng| &self.people[rng.below(PEOPLE as u64) as usize];
        let pick_buyer = |rng: &mut Rng| rng.below(PEOPLE as u64) as usize;
        let mut out: Vec<Attestation> = Vec::with_capacity(BLOCK);
        // This block's referrals (of its offer) and receipts.
        let mut refs: Vec<Attestation> = Vec::new();
        // (receipt, its buyer in `people`, its order).
        let mut sales: Vec<(Attestation, usize, String)> = Vec::new();
        // The 12 blocks of a group share an order (four of them, with one seller, at most one
        // sale each): receipts of one order, an equivocation that a later one may win.
        let shared = format!("shared-{}", b / 12);
        let mut shared_done = false;
        let mut n = 0u32;
        while out.len() < BLOCK {
            let left = BLOCK - out.len();
            let t = time_of(first + out.len());
            let roll = rng.below(100);
            if left >= 2 && roll < 62 {
                // A chain of 1-4 referrals below a root or a referral of this block, and a
                // sale through its tip (which anchors it).
                let depth = rng.range(1, 5).min(left as u64 - 1) as usize;
                let mut parent = if !refs.is_empty() && rng.chance(40) {
                    refs[rng.below(refs.len() as u64) as usize].id
                } else {
                    self.roots[k][rng.below(ROOTS as u64) as usize].id
                };
                for d in 0..depth {
                    let c = rng.chance(30).then_some(self.community.id);
                    let referrer = match c {
                        Some(_) => &self.people[rng.below(MEMBERS as u64) as usize],
                        None => person(&mut rng),
                    };
                    let r = refer_full(referrer, offer.id, Some(parent), None, c, t + d as u64);
                    parent = r.id;
                    refs.push(r.clone());
                    out.push(r);
                }
                let order = if !shared_done && rng.chance(25) {
                    shared_done = true;
                    shared.clone()
                } else {
                    n += 1;
                    format!("b{b}-{n}")
                };
                let buyer = pick_buyer(&mut rng);
                let via = refs.last().cloned();
                let r = receipt(
                    seller,
                    offer,
                    &order,
                    rng.range(100, 100_000),
                    self.people[buyer].public(),
                    via.as_ref(),
                    t + depth as u64,
                );
                sales.push((r.clone(), buyer, order));
                out.push(r);
            } else if roll < 74 {
                // A sale through a root or an earlier referral of the block, or direct.
                let via = match rng.below(3) {
                    0 => None,
                    1 if !refs.is_empty() => {
                        Some(refs[rng.below(refs.len() as u64) as usize].clone())
                    }
                    _ => Some(self.roots[k][rng.below(ROOTS as u64) as usize].clone()),
                };
                n += 1;
                let order = format!("b{b}-{n}");
                let buyer = pick_buyer(&mut rng);
                let r = receipt(
                    seller,
                    offer,
                    &order,
                    rng.range(100, 100_000),
                    self.people[buyer].public(),
                    via.as_ref(),
                    t,
                );
                sales.push((r.clone(), buyer, order));
                out.push(r);
            } else if roll < 82 && !sales.is_empty() {
                let (r, _, _) = &sales[rng.below(sales.len() as u64) as usize];
                out.push(refund(seller, r, t));
            } else if roll < 90 {
                let who = person(&mut rng).public();
                out.push(settle(seller, who, rng.range(1, 500), t));
            } else if roll < 95 && !sales.is_empty() {
                // The buyer's claim, through the sale's referral or another (a dispute).
                let (r, buyer, order) = &sales[rng.below(sales.len() as u64) as usize];
                let via = if rng.chance(50) || refs.is_empty() {
                    match &r.body {
                        passalong_protocol::Body::Receipt(rc) => rc.via,
                        _ => None,
                    }
                } else {
                    Some(refs[rng.below(refs.len() as u64) as usize].id)
                };
                out.push(claim(&self.people[*buyer], offer, order, via, t));
            } else if b % 40 == 7 && roll < 97 {
                // A membership ended 3 hours in the past: shares of sales already counted
                // through its member's referrals move back to the seller.
                let m = (b / 40) % MEMBERS;
                out.push(membership_end(
                    &self.connector,
                    &self.memberships[m],
                    t - 3 * 3_600_000,
                ));
            } else {
                let who = person(&mut rng).public();
                out.push(settle(seller, who, rng.range(1, 50), t));
            }
        }
        out.truncate(BLOCK);
        out
    }

    /// Items `from..to` of the stream.
    pub fn range(&self, from: usize, to: usize) -> Vec<Attestation> {
        let mut out = Vec::with_capacity(to.saturating_sub(from));
        let mut i = from;
        while i < to {
            if i < self.len() {
                let end = to.min(self.len());
                out.extend_from_slice(&self.items[i..end]);
                i = end;
            } else {
                let b = (i - self.len()) / BLOCK;
                let start = self.len() + b * BLOCK;
                let block = self.block(b);
                let end = to.min(start + BLOCK);
                out.extend_from_slice(&block[i - start..end - start]);
                i = end;
            }
        }
        out
    }
}

/// The base, built once per process.
pub fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(Base::new)
}

/// The first `n` items, built once per process (on two threads) and shared by the tests.
pub fn items(n: usize) -> &'static [Attestation] {
    static ITEMS: OnceLock<Vec<Attestation>> = OnceLock::new();
    let all = ITEMS.get_or_init(|| {
        let base = base();
        let blocks = (MAX_ITEMS - base.len()).div_ceil(BLOCK);
        let halves: Vec<Vec<Attestation>> = std::thread::scope(|sc| {
            let parts: Vec<_> = [0..blocks / 2, blocks / 2..blocks]
                .into_iter()
                .map(|r| sc.spawn(move || r.flat_map(|b| base.block(b)).collect::<Vec<_>>()))
                .collect();
            parts
                .into_iter()
                .map(|p| p.join().expect("a generator thread"))
                .collect()
        });
        let mut all = base.items.clone();
        for h in halves {
            all.extend(h);
        }
        all.truncate(MAX_ITEMS);
        all
    });
    &all[..n]
}

/// The envelopes of `atts`.
pub fn envs(atts: &[Attestation]) -> Vec<&[u8]> {
    atts.iter().map(|a| a.bytes.as_slice()).collect()
}
