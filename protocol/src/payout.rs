//! The payout rules of one counted receipt, as pure integer functions.
//!
//! The chain walk (which hops are kept, which are eligible, see [`crate::state`]) produces a
//! list of hops nearest the buyer first; this module turns the sale amount and that list into
//! shares. Everything is integer arithmetic with u128 intermediates and floor division; what
//! is not paid out stays with the seller. The formulas, worked examples and the papers behind
//! them are in `docs/payout-rules.md`.

use crate::keys::{Id, PublicKey};
use crate::limits::{BPS_ONE, MAX_CHAIN_HOPS, MAX_POLICY_DEPTH};
use crate::policy::{Policy, Rule};

/// `floor(amount * bps / 10000)`, the pool or the connector share of a sale.
pub fn bps_of(amount_minor: u64, bps: u16) -> u64 {
    if bps <= BPS_ONE {
        // The same floor in u64, without a u128 division per share: with a = q·10000 + r,
        // floor(a·bps/10000) = q·bps + floor(r·bps/10000), and q·bps <= a.
        let (q, r) = (amount_minor / 10_000, amount_minor % 10_000);
        q * u64::from(bps) + r * u64::from(bps) / 10_000
    } else {
        // amount < 2^64 so the product fits in u128 (the quotient is cut to u64, as always).
        (u128::from(amount_minor) * u128::from(bps) / u128::from(BPS_ONE)) as u64
    }
}

/// Shares of the kept hops, nearest the buyer first. `eligible[i]` says whether hop i may
/// earn; an ineligible hop keeps its position and its share stays with the seller.
/// `chain_hops` is the length of the whole counted chain (before `max_depth` cuts it), which
/// only [`Rule::SplitProof`] uses. At most [`MAX_POLICY_DEPTH`] hops are paid.
///
/// Returns one amount per hop in `eligible` (0 for ineligible hops).
pub fn split(rule: Rule, pool: u64, eligible: &[bool], chain_hops: u32) -> Shares {
    let mut out = Shares::default();
    split_into(rule, pool, eligible, chain_hops, &mut out);
    out
}

/// [`split`] into `out`, which a caller splitting millions of pools reuses (a [`Shares`]
/// returned by value is copied).
fn split_into(rule: Rule, pool: u64, eligible: &[bool], chain_hops: u32, out: &mut Shares) {
    let n = eligible.len().min(usize::from(MAX_POLICY_DEPTH));
    out.len = n;
    if n == 0 {
        return;
    }
    match rule {
        Rule::Direct => {
            out.amounts[..n].fill(0);
            out.amounts[0] = pool;
        }
        Rule::Equal => {
            let each = pool / n as u64;
            out.amounts[..n].fill(each);
        }
        Rule::Geometric { r_bps } => {
            let keep = BPS_ONE.saturating_sub(r_bps);
            let mut remaining = pool;
            for a in &mut out.amounts[..n] {
                let share = bps_of(remaining, keep);
                remaining -= share;
                *a = share;
            }
        }
        Rule::SplitProof => {
            let each = split_proof_share(pool, chain_hops.max(n as u32));
            out.amounts[..n].fill(each);
        }
    }
    for (a, ok) in out.amounts[..n].iter_mut().zip(eligible) {
        if !ok {
            *a = 0;
        }
    }
}

/// `floor(pool / 2^(L-1))`: what each kept hop of a chain of L hops earns under split_proof.
///
/// Why halving: k identities of one participant in a chain of L+k-1 hops earn
/// `k * pool / 2^(L+k-2)`, which is at most `pool / 2^(L-1)` exactly when `k <= 2^(k-1)`,
/// true for every k >= 1. Halving per extra hop is the slowest decay with this property
/// (k = 2 forces it), so it is the most generous split-proof rule that pays hops equally.
pub fn split_proof_share(pool: u64, chain_hops: u32) -> u64 {
    pool.checked_shr(chain_hops.saturating_sub(1)).unwrap_or(0)
}

/// The shares of up to 16 hops, without allocating (the ledger computes millions of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shares {
    amounts: [u64; MAX_POLICY_DEPTH as usize],
    len: usize,
}

impl Shares {
    /// One amount per hop, nearest the buyer first.
    pub fn as_slice(&self) -> &[u64] {
        &self.amounts[..self.len]
    }
    /// Their sum (never more than the pool).
    pub fn total(&self) -> u128 {
        self.as_slice().iter().map(|&a| u128::from(a)).sum()
    }
}

/// One referral of a chain, as the payout needs it. `N` is the view's handle for referrals.
#[derive(Clone, Copy, Debug)]
pub struct Hop<N> {
    /// Who referred.
    pub referrer: PublicKey,
    /// When.
    pub created_at_ms: u64,
    /// The community it names, if any.
    pub community: Option<Id>,
    /// The referral it was received through.
    pub parent: Option<N>,
}

/// What a receipt's payout depends on besides the receipt: its chain, earlier purchases and
/// memberships. The in-memory [`crate::State`] and a disk store both implement it, so the
/// rules are written once.
pub trait ChainView {
    /// A handle to a valid referral (an arena index, an id, …).
    type Node: Copy;
    /// A handle to a valid offer.
    type Offer: Copy;
    /// The referral behind a handle (`None` ends the walk: a store that lost a record pays
    /// less, never panics).
    fn hop(&self, node: Self::Node) -> Option<Hop<Self::Node>>;
    /// The referral behind a handle met past the first hop of a walk, whose `community` is
    /// never read (only the hop nearest the buyer can pay a connector): a view may answer it
    /// from what it keeps of a descendant, with `community: None`. [`ChainView::hop`] unless
    /// a view does better.
    fn hop_above(&self, node: Self::Node) -> Option<Hop<Self::Node>> {
        self.hop(node)
    }
    /// The earliest `created_at_ms` of a counted, unrefunded receipt of `offer` bought by `buyer`.
    fn first_purchase_ms(&self, offer: Self::Offer, buyer: &PublicKey) -> Option<u64>;
    /// The connector of a valid community.
    fn connector(&self, community: &Id) -> Option<PublicKey>;
    /// Whether `member` had a valid membership of `community` at `at_ms` (started at or
    /// before it, not ended at or before it).
    fn admitted(&self, community: &Id, member: &PublicKey, at_ms: u64) -> bool;
}

/// A counted receipt with its offer's terms.
#[derive(Clone, Copy, Debug)]
pub struct Sale<N, O> {
    /// The offer.
    pub offer: O,
    /// The offer's seller.
    pub seller: PublicKey,
    /// The offer's policy.
    pub policy: Policy,
    /// Amount paid.
    pub amount_minor: u64,
    /// The buyer.
    pub buyer: PublicKey,
    /// The referral it came through.
    pub via: Option<N>,
    /// When the receipt was created.
    pub created_at_ms: u64,
}

/// Who earns what from one receipt: the hops (nearest the buyer first, zero shares included)
/// and the connector share, if paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payout {
    hops: [(PublicKey, u64); MAX_POLICY_DEPTH as usize],
    len: usize,
    /// The connector and its share, when one is paid.
    pub connector: Option<(PublicKey, u64)>,
}

impl Payout {
    /// Each kept hop's referrer and share, nearest the buyer first.
    pub fn hops(&self) -> &[(PublicKey, u64)] {
        &self.hops[..self.len]
    }
    /// Every (participant, amount > 0) of this receipt, hops first, then the connector.
    pub fn credits(&self) -> impl Iterator<Item = (PublicKey, u64)> + '_ {
        self.hops()
            .iter()
            .copied()
            .chain(self.connector)
            .filter(|(_, a)| *a > 0)
    }
}

/// One referral of a [`Chain`], with what its eligibility owes to anything but the buyer.
#[derive(Clone, Copy, Debug)]
struct Link<N> {
    node: N,
    referrer: PublicKey,
    created_at_ms: u64,
    /// Not the seller, not met nearer the buyer, and (require_purchase) bought before
    /// referring: eligible unless it is the buyer.
    eligible: bool,
}

/// A receipt's referral chain walked once (step 1 without the window cut, step 2 but for the
/// buyer, step 4's membership test), so that every receipt through the same referral pays
/// for one walk instead of one each: the ledger groups receipts by referral.
#[derive(Clone, Debug)]
pub struct Chain<N> {
    links: Vec<Link<N>>,
    policy: Policy,
    /// Hop 1's connector, admitted and not the seller.
    connector: Option<PublicKey>,
}

impl<N: Copy> Default for Chain<N> {
    fn default() -> Self {
        Chain::new()
    }
}

impl<N: Copy> Chain<N> {
    /// An empty chain, to be filled by [`Chain::walk`] (its buffer is reused).
    pub fn new() -> Chain<N> {
        Chain {
            links: Vec::new(),
            policy: Policy {
                pool_bps: 0,
                connector_bps: 0,
                rule: Rule::Direct,
                max_depth: 0,
                window_ms: 0,
                require_purchase: false,
            },
            connector: None,
        }
    }

    /// Walks `sale`'s chain for every receipt of the same offer and referral created between
    /// `earliest_ms` and `latest_ms`: it stops at the first referral outside the window of all
    /// of them (for one receipt, `earliest_ms = latest_ms = sale.created_at_ms`, it stops where
    /// step 1 does). Only the offer, seller, policy and referral of `sale` are read.
    pub fn walk<V: ChainView<Node = N>>(
        &mut self,
        view: &V,
        sale: &Sale<V::Node, V::Offer>,
        earliest_ms: u64,
        latest_ms: u64,
    ) {
        let p = sale.policy;
        self.policy = p;
        self.links.clear();
        self.connector = None;
        let max_depth = usize::from(p.max_depth).min(usize::from(MAX_POLICY_DEPTH));
        // Only split_proof needs the chain beyond the kept hops (its length).
        let limit = if p.rule == Rule::SplitProof {
            MAX_CHAIN_HOPS as usize
        } else {
            max_depth
        };
        let mut node = sale.via;
        while let Some(n) = node {
            if self.links.len() >= limit {
                break;
            }
            let h = if self.links.is_empty() {
                view.hop(n)
            } else {
                view.hop_above(n)
            };
            let Some(h) = h else {
                break;
            };
            if h.created_at_ms > latest_ms
                || earliest_ms.saturating_sub(h.created_at_ms) > p.window_ms
            {
                break;
            }
            let i = self.links.len();
            let eligible = i < max_depth
                && h.referrer != sale.seller
                && !self.links.iter().any(|l| l.referrer == h.referrer)
                && (!p.require_purchase
                    || view
                        .first_purchase_ms(sale.offer, &h.referrer)
                        .is_some_and(|t| t < h.created_at_ms));
            if i == 0 && p.connector_bps > 0 {
                if let Some(c) = h.community {
                    self.connector = view.connector(&c).filter(|&connector| {
                        connector != sale.seller && view.admitted(&c, &h.referrer, h.created_at_ms)
                    });
                }
            }
            self.links.push(Link {
                node: n,
                referrer: h.referrer,
                created_at_ms: h.created_at_ms,
                eligible,
            });
            node = h.parent;
        }
    }

    /// The referrer of hop `i` (0 = nearest the buyer).
    pub fn referrer(&self, i: usize) -> &PublicKey {
        &self.links[i].referrer
    }

    /// The referral of hop `i`.
    pub fn node(&self, i: usize) -> N {
        self.links[i].node
    }

    /// Hop 1's connector, if one may be paid (the receipt decides whether it is).
    pub fn connector(&self) -> Option<PublicKey> {
        self.connector
    }

    /// Steps 1–4 for one receipt through this chain: puts the shares of its kept hops
    /// (nearest the buyer first) in `shares` and returns the connector share (0 when none is
    /// paid). `is_buyer` tells the receipt's buyer (a caller holding a prefix of it can answer
    /// most keys from that).
    pub fn shares(
        &self,
        amount_minor: u64,
        created_at_ms: u64,
        is_buyer: impl Fn(&PublicKey) -> bool,
        shares: &mut Shares,
    ) -> u64 {
        let p = &self.policy;
        // 1. The chain ends at the first referral created after the receipt or more than
        //    `window_ms` before it.
        let chain_hops = self
            .links
            .iter()
            .take_while(|l| {
                l.created_at_ms <= created_at_ms && created_at_ms - l.created_at_ms <= p.window_ms
            })
            .count();
        let n = chain_hops.min(usize::from(p.max_depth).min(usize::from(MAX_POLICY_DEPTH)));
        // 2. Eligibility: what the walk found, and not the buyer.
        let mut eligible = [false; MAX_POLICY_DEPTH as usize];
        for (e, l) in eligible.iter_mut().zip(&self.links[..n]) {
            *e = l.eligible && !is_buyer(&l.referrer);
        }
        // 3. Split the pool.
        let pool = bps_of(amount_minor, p.pool_bps);
        split_into(p.rule, pool, &eligible[..n], chain_hops as u32, shares);
        // 4. The connector of hop 1's community.
        match self.connector {
            Some(c) if n > 0 && !is_buyer(&c) => bps_of(amount_minor, p.connector_bps),
            _ => 0,
        }
    }
}

/// The payout of one counted receipt: steps 1–4 of `docs/payout-rules.md`.
pub fn payout<V: ChainView>(view: &V, sale: &Sale<V::Node, V::Offer>) -> Payout {
    let mut chain = Chain::new();
    chain.walk(view, sale, sale.created_at_ms, sale.created_at_ms);
    let mut shares = Shares::default();
    let connector = chain.shares(
        sale.amount_minor,
        sale.created_at_ms,
        |k| *k == sale.buyer,
        &mut shares,
    );
    let mut out = Payout {
        hops: [(PublicKey([0; 32]), 0); MAX_POLICY_DEPTH as usize],
        len: shares.len,
        connector: None,
    };
    for ((h, l), &a) in out.hops.iter_mut().zip(&chain.links).zip(shares.as_slice()) {
        *h = (l.referrer, a);
    }
    if connector > 0 {
        out.connector = chain.connector.map(|c| (c, connector));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(rule: Rule, pool: u64, n: usize, len: u32) -> Vec<u64> {
        split(rule, pool, &vec![true; n], len).as_slice().to_vec()
    }

    #[test]
    fn worked_examples() {
        assert_eq!(bps_of(10_000, 1_000), 1_000);
        assert_eq!(bps_of(999, 1), 0);
        assert_eq!(s(Rule::Direct, 1000, 3, 3), vec![1000, 0, 0]);
        assert_eq!(s(Rule::Equal, 1000, 3, 3), vec![333, 333, 333]);
        assert_eq!(
            s(Rule::Geometric { r_bps: 5000 }, 1000, 4, 4),
            vec![500, 250, 125, 62]
        );
        assert_eq!(s(Rule::SplitProof, 1000, 3, 3), vec![250, 250, 250]);
        assert_eq!(s(Rule::SplitProof, 1000, 2, 5), vec![62, 62]);
        assert_eq!(s(Rule::SplitProof, u64::MAX, 1, 64), vec![1]);
        assert_eq!(split_proof_share(u64::MAX, 65), 0);
    }

    proptest! {
        /// The u64 floor equals the u128 one for every amount and every bps.
        #[test]
        fn bps_of_is_the_u128_floor(amount in prop_oneof![any::<u64>(), 0..20_000u64, (u64::MAX - 20_000)..=u64::MAX], bps in prop_oneof![0..=10_000u16, any::<u16>()]) {
            let want = (u128::from(amount) * u128::from(bps) / 10_000) as u64;
            prop_assert_eq!(bps_of(amount, bps), want);
        }
    }

    #[test]
    fn ineligible_hops_keep_their_position() {
        let sh = split(Rule::Geometric { r_bps: 5000 }, 1000, &[false, true], 2);
        assert_eq!(sh.as_slice(), &[0, 250]);
        let sh = split(Rule::Direct, 1000, &[false, true], 2);
        assert_eq!(sh.as_slice(), &[0, 0]);
    }

    #[test]
    fn empty_chain_pays_nothing() {
        assert_eq!(split(Rule::Equal, 1000, &[], 0).total(), 0);
    }

    /// The receipt-by-receipt walk as it was before [`Chain`]: the reference the walk-once
    /// path is checked against.
    fn reference<V: ChainView>(view: &V, sale: &Sale<V::Node, V::Offer>) -> Payout {
        let p = &sale.policy;
        let mut out = Payout {
            hops: [(PublicKey([0; 32]), 0); MAX_POLICY_DEPTH as usize],
            len: 0,
            connector: None,
        };
        // 1. Walk the chain, nearest the buyer first; it ends at the first referral created after
        //    the receipt or more than `window_ms` before it.
        let max_depth = usize::from(p.max_depth).min(usize::from(MAX_POLICY_DEPTH));
        let mut kept: [Option<Hop<V::Node>>; MAX_POLICY_DEPTH as usize] =
            [None; MAX_POLICY_DEPTH as usize];
        let mut chain_hops = 0u32;
        let mut node = sale.via;
        while let Some(n) = node {
            if chain_hops >= MAX_CHAIN_HOPS {
                break;
            }
            let Some(h) = view.hop(n) else {
                break;
            };
            if h.created_at_ms > sale.created_at_ms
                || sale.created_at_ms - h.created_at_ms > p.window_ms
            {
                break;
            }
            chain_hops += 1;
            if out.len < max_depth {
                kept[out.len] = Some(h);
                out.hops[out.len].0 = h.referrer;
                out.len += 1;
            } else if p.rule != Rule::SplitProof {
                break; // only split_proof needs the chain's full length
            }
            node = h.parent;
        }
        // 2. Eligibility: not the buyer, not the seller, not a key already met nearer the buyer,
        //    and with require_purchase, a purchase of the offer before referring.
        let mut eligible = [false; MAX_POLICY_DEPTH as usize];
        for i in 0..out.len {
            let key = out.hops[i].0;
            let created = kept[i].map_or(0, |h| h.created_at_ms);
            eligible[i] = key != sale.buyer
                && key != sale.seller
                && !out.hops[..i].iter().any(|(k, _)| *k == key)
                && (!p.require_purchase
                    || view
                        .first_purchase_ms(sale.offer, &key)
                        .is_some_and(|t| t < created));
        }
        // 3. Split the pool.
        let pool = bps_of(sale.amount_minor, p.pool_bps);
        let shares = split(p.rule, pool, &eligible[..out.len], chain_hops);
        for (h, &a) in out.hops[..out.len].iter_mut().zip(shares.as_slice()) {
            h.1 = a;
        }
        // 4. The connector of hop 1's community, if hop 1's referrer was a member when referring.
        if p.connector_bps > 0 {
            if let Some(h1) = kept[0] {
                if let Some(c) = h1.community {
                    if let Some(connector) = view.connector(&c) {
                        let share = bps_of(sale.amount_minor, p.connector_bps);
                        if share > 0
                            && connector != sale.seller
                            && connector != sale.buyer
                            && view.admitted(&c, &h1.referrer, h1.created_at_ms)
                        {
                            out.connector = Some((connector, share));
                        }
                    }
                }
            }
        }
        out
    }

    /// A random market: referrals over keys 0..6 (the seller is 0) with parents earlier in
    /// the list, a few purchases, two communities, memberships.
    #[derive(Debug)]
    struct TestView {
        /// (referrer, created_at_ms, parent, community)
        hops: Vec<(u8, u64, Option<u32>, Option<u8>)>,
        bought: Vec<(u8, u64)>,
        /// community → connector
        connectors: [Option<u8>; 2],
        /// (community, member, start, end)
        members: Vec<(u8, u8, u64, u64)>,
    }

    fn k(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    fn cid(n: u8) -> Id {
        Id([n; 32])
    }

    impl ChainView for TestView {
        type Node = u32;
        type Offer = ();
        fn hop(&self, node: u32) -> Option<Hop<u32>> {
            let &(r, t, parent, community) = self.hops.get(node as usize)?;
            Some(Hop {
                referrer: k(r),
                created_at_ms: t,
                community: community.map(cid),
                parent,
            })
        }
        /// As a view that keeps hops past the first without their community may answer: the
        /// walk must pay what the reference, which reads every hop whole, pays.
        fn hop_above(&self, node: u32) -> Option<Hop<u32>> {
            self.hop(node).map(|h| Hop {
                community: None,
                ..h
            })
        }
        fn first_purchase_ms(&self, _: (), buyer: &PublicKey) -> Option<u64> {
            self.bought
                .iter()
                .filter(|(b, _)| k(*b) == *buyer)
                .map(|&(_, t)| t)
                .min()
        }
        fn connector(&self, community: &Id) -> Option<PublicKey> {
            (0..2u8)
                .find(|&c| cid(c) == *community)
                .and_then(|c| self.connectors[usize::from(c)].map(k))
        }
        fn admitted(&self, community: &Id, member: &PublicKey, at_ms: u64) -> bool {
            self.members.iter().any(|&(c, m, start, end)| {
                cid(c) == *community && k(m) == *member && start <= at_ms && at_ms < end
            })
        }
    }

    fn view() -> impl Strategy<Value = TestView> {
        (
            prop::collection::vec(
                (
                    0..6u8,
                    0..200u64,
                    any::<prop::sample::Index>(),
                    any::<bool>(),
                    prop::option::of(0..3u8),
                    prop::bool::weighted(0.1),
                ),
                1..80,
            ),
            prop::collection::vec((0..6u8, 0..200u64), 0..6),
            [prop::option::of(0..6u8), prop::option::of(0..6u8)],
            prop::collection::vec((0..3u8, 0..6u8, 0..100u64, 0..300u64), 0..8),
        )
            .prop_map(|(raw, bought, connectors, members)| {
                let mut hops: Vec<(u8, u64, Option<u32>, Option<u8>)> = Vec::new();
                for (r, dt, parent, root, community, older) in raw {
                    // Parents come first and children are never older, as in a valid state;
                    // now and then one is, which the walk must not rely on either.
                    let parent = (!root && !hops.is_empty()).then(|| parent.index(hops.len()));
                    let t = if older {
                        dt
                    } else {
                        parent.map_or(0, |p| hops[p].1) + dt
                    };
                    hops.push((r, t, parent.map(|p| p as u32), community));
                }
                TestView {
                    hops,
                    bought,
                    connectors,
                    members,
                }
            })
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (
            0..=10_000u16,
            0..=10_000u16,
            (0..4u8, 0..10_000u16),
            0..=16u8,
            1..400u64,
            any::<bool>(),
        )
            .prop_map(
                |(pool_bps, connector_bps, (rule, r_bps), max_depth, window_ms, rp)| Policy {
                    pool_bps,
                    connector_bps: connector_bps.min(10_000 - pool_bps),
                    rule: match rule {
                        0 => Rule::Direct,
                        1 => Rule::Equal,
                        2 => Rule::Geometric { r_bps },
                        _ => Rule::SplitProof,
                    },
                    max_depth,
                    window_ms,
                    require_purchase: rp,
                },
            )
    }

    proptest! {
        /// One walk shared by receipts of a time range pays each exactly what the walk of its
        /// own would, and that is what the receipt-by-receipt rules pay.
        #[test]
        fn a_shared_walk_pays_as_the_walk_per_receipt(
            v in view(),
            p in policy(),
            via in any::<prop::sample::Index>(),
            receipts in prop::collection::vec((0..6u8, 0..400u64, 0..u64::MAX), 1..8),
        ) {
            let via = via.index(v.hops.len()) as u32;
            let sale = |&(buyer, t, amount): &(u8, u64, u64)| Sale {
                offer: (),
                seller: k(0),
                policy: p,
                amount_minor: amount,
                buyer: k(buyer),
                via: Some(via),
                created_at_ms: t,
            };
            let earliest = receipts.iter().map(|r| r.1).min().unwrap();
            let latest = receipts.iter().map(|r| r.1).max().unwrap();
            let mut chain = Chain::new();
            chain.walk(&v, &sale(&receipts[0]), earliest, latest);
            for r in &receipts {
                let s = sale(r);
                let want = reference(&v, &s);
                prop_assert_eq!(payout(&v, &s), want);
                let mut shares = Shares::default();
                let connector =
                    chain.shares(s.amount_minor, s.created_at_ms, |k| *k == s.buyer, &mut shares);
                let hops: Vec<(PublicKey, u64)> = shares
                    .as_slice()
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| (*chain.referrer(i), a))
                    .collect();
                prop_assert_eq!(&hops[..], want.hops());
                let connector = chain.connector().filter(|_| connector > 0).map(|c| (c, connector));
                prop_assert_eq!(connector, want.connector);
            }
        }
    }
}
