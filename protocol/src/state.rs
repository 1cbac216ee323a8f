//! A sans-IO node state: feed it attestations in any order with the current time, get the
//! outcome of each and, per seller, the ledger.
//!
//! Like iroh-gossip's `proto`, it never reads a clock or touches a disk: the caller passes
//! `now_ms` and drives the timer with [`State::tick`] at [`State::next_release_ms`]. The store
//! and network crates wrap it; the offline verifier and the testnet use it as it is.
//!
//! What is kept is what the rules need, in compact records, so that a ledger over a million
//! receipts is computed in about a tenth of a second: referrals are an arena indexed by `u32`,
//! receipts are grouped by referral so that each chain is walked once for all the receipts
//! through it, and the grouped pass reads memory in order.

use std::collections::{BTreeMap, HashMap};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::attestation::{Body, Currency};
use crate::encoding::Attestation;
use crate::keys::{Id, PublicKey};
use crate::ledger::{Ledger, LedgerEntry};
use crate::lifecycle::{self, Lifecycle, Queued};
use crate::limits::MAX_POLICY_DEPTH;
use crate::payout;
use crate::policy::Policy;
use crate::validation::{self, Fact, InvalidReason, Known, Lookup, Outcome};

pub use crate::lifecycle::Report;

/// Two receipts of one seller for one order: `counted` has the smaller id and is the one that
/// counts; the pair is evidence that the seller equivocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Equivocation {
    /// The receipt that counts (smaller id).
    pub counted: Id,
    /// The other receipt.
    pub other: Id,
}

/// A PurchaseClaim that contradicts the counted Receipt of its order: it names another
/// referral, or its author is not the buyer the seller recorded. Anyone can sign a claim, so
/// `buyer_matches` tells a claim by the recorded buyer (a referral dispute) from one by another
/// key (the seller may have recorded a wrong buyer — or the claimant is not the buyer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dispute {
    /// The buyer's claim.
    pub claim: Id,
    /// The seller's counted receipt.
    pub receipt: Id,
    /// The claim's author is the receipt's buyer.
    pub buyer_matches: bool,
    /// The referral the buyer names.
    pub claimed_via: Option<Id>,
    /// The referral the seller recorded.
    pub recorded_via: Option<Id>,
}

const NONE: u32 = u32::MAX;

struct OfferRec {
    id: Id,
    seller: PublicKey,
    currency: Currency,
    policy: Policy,
}

struct ReferralRec {
    id: Id,
    referrer: PublicKey,
    /// Arena index of the parent, or NONE.
    parent: u32,
    created_at_ms: u64,
    community: Option<Id>,
}

struct ReceiptRec {
    id: Id,
    offer: u32,
    amount_minor: u64,
    buyer: PublicKey,
    /// Arena index of the referral, or NONE.
    via: u32,
    created_at_ms: u64,
    /// The receipt with the smallest id of its order (kept in step with `Market::orders`, so
    /// that a ledger walks `receipts` in memory order instead of the orders map's hash order).
    counted: bool,
}

/// Receipts of one (seller, order): the counted one (smallest id) and the rest.
struct OrderSlot {
    counted: u32,
    others: Vec<u32>,
}

struct ClaimRec {
    id: Id,
    buyer: PublicKey,
    offer: Id,
    order: String,
    via: Option<Id>,
}

struct SettlementRec {
    participant: PublicKey,
    currency: Currency,
    amount_minor: u64,
}

/// The payout rules' view of one market: the state's arenas plus each (offer, buyer)'s
/// earliest counted, unrefunded purchase, computed once per ledger.
struct MarketView<'a> {
    state: &'a State,
    bought: FxHashMap<(u32, PublicKey), u64>,
}

impl<'a> MarketView<'a> {
    fn new(state: &'a State, m: &'a Market) -> Self {
        let mut bought = FxHashMap::default();
        for r in state.counted(m) {
            note_purchase(state, m, r, &mut bought);
        }
        MarketView { state, bought }
    }
}

/// Records a counted receipt in `bought` if its offer requires purchases (only those ask) and
/// it is not refunded.
fn note_purchase(
    state: &State,
    m: &Market,
    r: &ReceiptRec,
    bought: &mut FxHashMap<(u32, PublicKey), u64>,
) {
    if state.offers[r.offer as usize].policy.require_purchase && !m.refunded.contains(&r.id) {
        let t = bought.entry((r.offer, r.buyer)).or_insert(u64::MAX);
        *t = (*t).min(r.created_at_ms);
    }
}

impl payout::ChainView for MarketView<'_> {
    type Node = u32;
    type Offer = u32;

    fn hop(&self, node: u32) -> Option<payout::Hop<u32>> {
        let h = self.state.referrals.get(node as usize)?;
        Some(payout::Hop {
            referrer: h.referrer,
            created_at_ms: h.created_at_ms,
            community: h.community,
            parent: (h.parent != NONE).then_some(h.parent),
        })
    }

    fn first_purchase_ms(&self, offer: u32, buyer: &PublicKey) -> Option<u64> {
        self.bought.get(&(offer, *buyer)).copied()
    }

    fn connector(&self, community: &Id) -> Option<PublicKey> {
        self.state.communities.get(community).copied()
    }

    fn admitted(&self, community: &Id, member: &PublicKey, at_ms: u64) -> bool {
        self.state
            .memberships
            .get(&(*community, *member))
            .is_some_and(|ms| {
                ms.iter().any(|(mid, start)| {
                    *start <= at_ms
                        && self
                            .state
                            .membership_ends
                            .get(mid)
                            .is_none_or(|&end| at_ms < end)
                })
            })
    }
}

/// Everything of one seller.
#[derive(Default)]
struct Market {
    receipts: Vec<ReceiptRec>,
    /// Per receipt, its referral if it counts and has one, else NONE: kept beside `receipts`
    /// so that grouping a million receipts by referral reads 4 bytes of each, not 96.
    counted_via: Vec<u32>,
    /// Keyed by the seller's order id. Order ids are chosen by sellers, so this map keeps
    /// std's DoS-resistant hasher.
    orders: HashMap<String, OrderSlot>,
    refunded: FxHashSet<Id>,
    settlements: Vec<SettlementRec>,
    claims: Vec<ClaimRec>,
}

impl Market {
    /// Marks a receipt counted or not, in both places that say so.
    fn set_counted(&mut self, idx: u32, counted: bool) {
        let r = &mut self.receipts[idx as usize];
        r.counted = counted;
        self.counted_via[idx as usize] = if counted { r.via } else { NONE };
    }
}

/// What the ledger reads of a counted receipt, copied out of [`ReceiptRec`] into its
/// referral's group so that the grouped pass reads memory in order.
#[derive(Clone, Copy)]
#[repr(align(32))]
struct Sold {
    amount_minor: u64,
    created_at_ms: u64,
    /// The buyer's first 4 bytes: whether a referrer is the buyer is nearly always settled
    /// by them; `receipt` gives the whole key when they match. (32 bytes, aligned: a record
    /// written at random dirties one cache line.)
    buyer_prefix: [u8; 4],
    receipt: u32,
    offer: u32,
    refunded: bool,
}

impl Sold {
    fn is_buyer(&self, m: &Market, key: &PublicKey) -> bool {
        key.0[..4] == self.buyer_prefix && m.receipts[self.receipt as usize].buyer == *key
    }
}

/// The counted receipts of a market that came through a referral, grouped by it.
struct Groups {
    /// The referrals, in arena order.
    vias: Vec<u32>,
    /// Where each referral's group ends in `sold`.
    ends: Vec<u32>,
    /// The receipts, group after group, in receipt order within a group.
    sold: Vec<Sold>,
}

/// Groups the counted receipts of `m` by referral (a counting sort), and fills `bought` on the
/// way: one pass over the receipt records.
fn by_via(state: &State, m: &Market, bought: &mut FxHashMap<(u32, PublicKey), u64>) -> Groups {
    // Per referral: receipts counted, then where its group is filled next. Zeroed pages are
    // only touched for the referrals used.
    let mut next = vec![0u32; state.referrals.len()];
    let mut vias = Vec::new();
    let mut total = 0usize;
    for &via in m.counted_via.iter().filter(|&&v| v != NONE) {
        let n = &mut next[via as usize];
        if *n == 0 {
            vias.push(via);
        }
        *n += 1;
        total += 1;
    }
    // In arena order: chains of neighbouring referrals share memory (and often ancestors).
    vias.sort_unstable();
    let mut ends = Vec::with_capacity(vias.len());
    let mut at = 0u32;
    for &v in &vias {
        let n = next[v as usize];
        next[v as usize] = at;
        at += n;
        ends.push(at);
    }
    let mut sold = vec![
        Sold {
            amount_minor: 0,
            created_at_ms: 0,
            buyer_prefix: [0; 4],
            receipt: 0,
            offer: 0,
            refunded: false,
        };
        total
    ];
    let any_refund = !m.refunded.is_empty();
    for (i, r) in m.receipts.iter().enumerate().filter(|(_, r)| r.counted) {
        note_purchase(state, m, r, bought);
        if r.via == NONE {
            continue;
        }
        let n = &mut next[r.via as usize];
        let mut buyer_prefix = [0; 4];
        buyer_prefix.copy_from_slice(&r.buyer.0[..4]);
        sold[*n as usize] = Sold {
            amount_minor: r.amount_minor,
            created_at_ms: r.created_at_ms,
            buyer_prefix,
            receipt: i as u32,
            offer: r.offer,
            refunded: any_refund && m.refunded.contains(&r.id),
        };
        *n += 1;
    }
    Groups { vias, ends, sold }
}

/// Ledger lines being summed, (currency, participant) interned to a dense index.
#[derive(Default)]
struct Lines {
    index: FxHashMap<(Currency, PublicKey), u32>,
    keys: Vec<(Currency, PublicKey)>,
    /// earned, refunded, settled
    sums: Vec<[u128; 3]>,
}

impl Lines {
    fn line(&mut self, currency: Currency, who: PublicKey) -> usize {
        let n = self.keys.len() as u32;
        let i = *self.index.entry((currency, who)).or_insert(n);
        if i == n {
            self.keys.push((currency, who));
            self.sums.push([0; 3]);
        }
        i as usize
    }

    fn credit(&mut self, line: usize, earned: u128, refunded: u128) {
        let s = &mut self.sums[line];
        s[0] += earned;
        s[1] += refunded;
    }

    /// Adds the settlements and sorts the lines.
    fn into_ledger(mut self, seller: &PublicKey, m: &Market) -> Ledger {
        for s in &m.settlements {
            let line = self.line(s.currency, s.participant);
            self.sums[line][2] += u128::from(s.amount_minor);
        }
        let entries = self
            .keys
            .into_iter()
            .zip(self.sums)
            .map(|((c, k), [e, r, s])| LedgerEntry::new(c, k, e, r, s))
            .collect();
        Ledger::from_entries(*seller, entries)
    }
}

struct Waiting {
    att: Attestation,
}

/// The in-memory state of one node (see the module docs).
#[derive(Default)]
pub struct State {
    facts: FxHashMap<Id, Fact>,
    invalid: FxHashMap<Id, InvalidReason>,
    pending: FxHashMap<Id, Waiting>,
    /// Missing id → pending ids waiting for it.
    waiters: FxHashMap<Id, Vec<Id>>,
    held: BTreeMap<(u64, Id), Attestation>,
    held_ids: FxHashMap<Id, u64>,

    offers: Vec<OfferRec>,
    offer_index: FxHashMap<Id, u32>,
    referrals: Vec<ReferralRec>,
    referral_index: FxHashMap<Id, u32>,
    markets: FxHashMap<PublicKey, Market>,
    communities: FxHashMap<Id, PublicKey>,
    /// (community, member) → (membership id, start).
    memberships: FxHashMap<(Id, PublicKey), Vec<(Id, u64)>>,
    /// Membership → earliest end.
    membership_ends: FxHashMap<Id, u64>,
}

impl Known for State {
    fn lookup(&self, id: &Id) -> Lookup {
        if let Some(f) = self.facts.get(id) {
            Lookup::Valid(*f)
        } else if self.invalid.contains_key(id) {
            Lookup::Invalid
        } else {
            Lookup::Unknown
        }
    }
}

impl Lifecycle for State {
    fn hold(&mut self, att: Attestation, until_ms: u64, _now_ms: u64) {
        self.held_ids.insert(att.id, until_ms);
        self.held.insert((until_ms, att.id), att);
    }

    fn wait(&mut self, att: Attestation, missing: &[Id], _since: Option<u64>, _now_ms: u64) {
        for m in missing {
            self.waiters.entry(*m).or_default().push(att.id);
        }
        self.pending.insert(att.id, Waiting { att });
    }

    fn count(&mut self, att: &Attestation, fact: Option<Fact>, _since: Option<u64>) {
        if let Some(f) = fact {
            self.facts.insert(att.id, f);
        }
        self.apply(att);
    }

    fn reject(
        &mut self,
        id: &Id,
        _att: Option<&Attestation>,
        reason: &InvalidReason,
        _since: Option<u64>,
        _now_ms: u64,
    ) {
        self.invalid.insert(*id, reason.clone());
    }

    fn released(&mut self, id: &Id, queue: &mut Vec<Queued>) {
        for w in self.waiters.remove(id).unwrap_or_default() {
            if let Some(p) = self.pending.remove(&w) {
                // It is evaluated again (and registers again if still pending): drop its other
                // registrations, so nothing waits in the name of a resolved attestation.
                for d in p.att.body.dependencies() {
                    if let Some(list) = self.waiters.get_mut(&d) {
                        list.retain(|x| *x != w);
                        if list.is_empty() {
                            self.waiters.remove(&d);
                        }
                    }
                }
                queue.push((p.att, None));
            }
        }
    }
}

impl State {
    /// An empty state.
    pub fn new() -> State {
        State::default()
    }

    /// A state holding every envelope of `envelopes`, all checked, as seen at `now_ms`.
    pub fn from_envelopes<'a>(envelopes: impl IntoIterator<Item = &'a [u8]>, now_ms: u64) -> State {
        let mut s = State::new();
        for e in envelopes {
            s.insert(e, now_ms);
        }
        s
    }

    /// Checks and inserts one envelope. The first report is this envelope's; any others are
    /// attestations it unblocked.
    pub fn insert(&mut self, envelope: &[u8], now_ms: u64) -> Vec<Report> {
        let id = Id::of_envelope(envelope);
        if let Some(r) = self.duplicate(&id) {
            return vec![r];
        }
        let checked = validation::check(envelope);
        let mut reports = Vec::new();
        self.insert_checked_into(id, checked, now_ms, &mut reports);
        reports
    }

    /// Checks and inserts many envelopes, verifying their signatures as one batch. Gives the
    /// same reports as inserting them one by one in this order.
    pub fn insert_batch(&mut self, envelopes: &[&[u8]], now_ms: u64) -> Vec<Report> {
        let ids: Vec<Id> = envelopes.iter().map(|e| Id::of_envelope(e)).collect();
        let mut seen = FxHashSet::default();
        let fresh: Vec<usize> = (0..envelopes.len())
            .filter(|&i| self.duplicate(&ids[i]).is_none() && seen.insert(ids[i]))
            .collect();
        let fresh_envelopes: Vec<&[u8]> = fresh.iter().map(|&i| envelopes[i]).collect();
        let mut checked = validation::check_batch(&fresh_envelopes).into_iter();
        let mut reports = Vec::new();
        let mut next_fresh = fresh.iter().peekable();
        for (i, id) in ids.iter().enumerate() {
            if next_fresh.peek() == Some(&&i) {
                next_fresh.next();
                if let Some(c) = checked.next() {
                    self.insert_checked_into(*id, c, now_ms, &mut reports);
                }
            } else if let Some(r) = self.duplicate(id) {
                reports.push(r);
            }
        }
        reports
    }

    /// Inserts an attestation that already passed [`validation::check`] (a store reloading
    /// what it verified before).
    pub fn insert_checked(&mut self, att: Attestation, now_ms: u64) -> Vec<Report> {
        if let Some(r) = self.duplicate(&att.id) {
            return vec![r];
        }
        let mut reports = Vec::new();
        self.insert_checked_into(att.id, Ok(att), now_ms, &mut reports);
        reports
    }

    fn duplicate(&self, id: &Id) -> Option<Report> {
        self.outcome(id).map(|outcome| Report {
            id: *id,
            outcome,
            duplicate: true,
        })
    }

    fn insert_checked_into(
        &mut self,
        id: Id,
        checked: Result<Attestation, InvalidReason>,
        now_ms: u64,
        reports: &mut Vec<Report>,
    ) {
        lifecycle::take(self, id, checked, now_ms, reports);
    }

    /// Releases the held attestations whose time has come.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Report> {
        let mut reports = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let att = entry.remove();
            self.held_ids.remove(&att.id);
            lifecycle::release(self, att, now_ms, &mut reports);
        }
        reports
    }

    /// When [`State::tick`] next has something to release.
    pub fn next_release_ms(&self) -> Option<u64> {
        self.held.keys().next().map(|(t, _)| *t)
    }

    /// The current outcome of an id, if it was ever inserted.
    pub fn outcome(&self, id: &Id) -> Option<Outcome> {
        if self.facts.contains_key(id) {
            Some(Outcome::Valid)
        } else if let Some(r) = self.invalid.get(id) {
            Some(Outcome::Invalid(r.clone()))
        } else if let Some(w) = self.pending.get(id) {
            let mut missing: Vec<Id> = w
                .att
                .body
                .dependencies()
                .into_iter()
                .filter(|d| !self.facts.contains_key(d))
                .collect();
            missing.sort();
            missing.dedup();
            Some(Outcome::Pending { missing })
        } else {
            self.held_ids
                .get(id)
                .map(|&until_ms| Outcome::Held { until_ms })
        }
    }

    /// Number of valid attestations.
    pub fn valid_count(&self) -> usize {
        self.facts.len()
    }

    /// Ids the pending attestations are waiting for (to fetch from peers), sorted. Computed
    /// from the pending set itself, so a dependency nobody waits for any more (its waiter
    /// became invalid through another dependency) is never asked for.
    pub fn missing(&self) -> Vec<Id> {
        let mut v: Vec<Id> = self
            .pending
            .values()
            .flat_map(|w| w.att.body.dependencies())
            .filter(|id| !self.facts.contains_key(id) && !self.invalid.contains_key(id))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Records a valid attestation in the payout indexes.
    fn apply(&mut self, att: &Attestation) {
        let id = att.id;
        match &att.body {
            Body::Offer(o) => {
                self.offer_index.insert(id, self.offers.len() as u32);
                self.offers.push(OfferRec {
                    id,
                    seller: o.seller,
                    currency: o.currency,
                    policy: o.policy,
                });
                self.markets.entry(o.seller).or_default();
            }
            Body::Referral(r) => {
                let parent = r
                    .parent
                    .and_then(|p| self.referral_index.get(&p).copied())
                    .unwrap_or(NONE);
                self.referral_index.insert(id, self.referrals.len() as u32);
                self.referrals.push(ReferralRec {
                    id,
                    referrer: r.referrer,
                    parent,
                    created_at_ms: r.created_at_ms,
                    community: r.community,
                });
            }
            Body::Receipt(r) => {
                let offer = self.offer_index.get(&r.offer).copied().unwrap_or(NONE);
                let via = r
                    .via
                    .and_then(|v| self.referral_index.get(&v).copied())
                    .unwrap_or(NONE);
                let m = self.markets.entry(r.seller).or_default();
                let idx = m.receipts.len() as u32;
                m.receipts.push(ReceiptRec {
                    id,
                    offer,
                    amount_minor: r.amount_minor,
                    buyer: r.buyer,
                    via,
                    created_at_ms: r.created_at_ms,
                    counted: false,
                });
                m.counted_via.push(NONE);
                match m.orders.get_mut(&r.order) {
                    None => {
                        m.set_counted(idx, true);
                        m.orders.insert(
                            r.order.clone(),
                            OrderSlot {
                                counted: idx,
                                others: Vec::new(),
                            },
                        );
                    }
                    Some(slot) => {
                        if id < m.receipts[slot.counted as usize].id {
                            let (old, new) = (slot.counted, idx);
                            slot.others.push(old);
                            slot.counted = new;
                            m.set_counted(old, false);
                            m.set_counted(new, true);
                        } else {
                            slot.others.push(idx);
                        }
                    }
                }
            }
            Body::PurchaseClaim(c) => {
                if let Some(&o) = self.offer_index.get(&c.offer) {
                    let seller = self.offers[o as usize].seller;
                    self.markets
                        .entry(seller)
                        .or_default()
                        .claims
                        .push(ClaimRec {
                            id,
                            buyer: c.buyer,
                            offer: c.offer,
                            order: c.order.clone(),
                            via: c.via,
                        });
                }
            }
            Body::Refund(r) => {
                self.markets
                    .entry(r.seller)
                    .or_default()
                    .refunded
                    .insert(r.receipt);
            }
            Body::Settlement(s) => {
                self.markets
                    .entry(s.seller)
                    .or_default()
                    .settlements
                    .push(SettlementRec {
                        participant: s.participant,
                        currency: s.currency,
                        amount_minor: s.amount_minor,
                    });
            }
            Body::Community(c) => {
                self.communities.insert(id, c.connector);
            }
            Body::Membership(m) => {
                self.memberships
                    .entry((m.community, m.member))
                    .or_default()
                    .push((id, m.created_at_ms));
            }
            Body::MembershipEnd(e) => {
                let end = self.membership_ends.entry(e.membership).or_insert(u64::MAX);
                *end = (*end).min(e.ends_at_ms);
            }
        }
    }

    /// Every seller this state holds something of, sorted.
    pub fn sellers(&self) -> Vec<PublicKey> {
        let mut v: Vec<PublicKey> = self.markets.keys().copied().collect();
        v.sort();
        v
    }

    /// Receipts that count: per order, the one with the smallest id.
    fn counted<'a>(&'a self, m: &'a Market) -> impl Iterator<Item = &'a ReceiptRec> + 'a {
        m.receipts.iter().filter(|r| r.counted)
    }

    /// The ledger of `seller`, computed from scratch from the valid attestations.
    ///
    /// Receipts are taken grouped by referral: every receipt through one referral shares its
    /// chain, so the chain is walked once per referral ([`payout::Chain`]) and each receipt
    /// only applies the window, its buyer and its amount. Sums are exact integers, so the
    /// order changes nothing.
    pub fn ledger(&self, seller: &PublicKey) -> Ledger {
        let Some(m) = self.markets.get(seller) else {
            return Ledger::from_entries(*seller, Vec::new());
        };
        let mut bought = FxHashMap::default();
        let groups = by_via(self, m, &mut bought);
        let view = MarketView {
            state: self,
            bought,
        };
        let mut lines = Lines::default();
        // Per referral, 1 + its line when last credited (0: none yet); lines are keyed by
        // the referral's currency and referrer, checked on use.
        let mut line_of = vec![0u32; self.referrals.len()];
        let mut chain = payout::Chain::new();
        let mut shares = payout::Shares::default();
        let mut start = 0usize;
        for (&via, &end) in groups.vias.iter().zip(&groups.ends) {
            let group = &groups.sold[start..end as usize];
            start = end as usize;
            let offer = group[0].offer;
            let (earliest, latest) = group.iter().fold((u64::MAX, 0), |(lo, hi), r| {
                (lo.min(r.created_at_ms), hi.max(r.created_at_ms))
            });
            // The walk reads the offer, seller, policy and referral of the sale, not its buyer
            // (which would cost a receipt record read at random).
            let terms = payout::Sale {
                offer,
                seller: *seller,
                policy: self.offers[offer as usize].policy,
                amount_minor: 0,
                buyer: *seller,
                via: Some(via),
                created_at_ms: latest,
            };
            chain.walk(&view, &terms, earliest, latest);
            // Per hop position (and the connector last): earned, refunded.
            let mut acc = [[0u128; 2]; MAX_POLICY_DEPTH as usize + 1];
            for r in group {
                if r.offer != offer {
                    // A referral of another offer: never in a valid state, so done the slow way.
                    let sale = self.sale(m, seller, via, r);
                    self.credit(&view, &sale, r.refunded, &mut lines);
                    continue;
                }
                let connector = chain.shares(
                    r.amount_minor,
                    r.created_at_ms,
                    |k| r.is_buyer(m, k),
                    &mut shares,
                );
                let amounts = shares.as_slice().iter().copied().enumerate();
                for (i, a) in amounts.chain([(MAX_POLICY_DEPTH as usize, connector)]) {
                    acc[i][0] += u128::from(a);
                    if r.refunded {
                        acc[i][1] += u128::from(a);
                    }
                }
            }
            let currency = self.offers[offer as usize].currency;
            for (i, &[earned, refunded]) in acc.iter().enumerate() {
                if earned == 0 {
                    continue;
                }
                let line = if i == MAX_POLICY_DEPTH as usize {
                    match chain.connector() {
                        Some(c) => lines.line(currency, c),
                        None => continue,
                    }
                } else {
                    let (node, who) = (chain.node(i) as usize, *chain.referrer(i));
                    match line_of[node].checked_sub(1) {
                        Some(l) if lines.keys[l as usize] == (currency, who) => l as usize,
                        _ => {
                            let l = lines.line(currency, who);
                            line_of[node] = l as u32 + 1;
                            l
                        }
                    }
                };
                lines.credit(line, earned, refunded);
            }
        }
        lines.into_ledger(seller, m)
    }

    /// [`State::ledger`] computed receipt by receipt, each walking its own chain: the
    /// reference the grouped computation is tested and benchmarked against.
    #[doc(hidden)]
    pub fn ledger_per_receipt(&self, seller: &PublicKey) -> Ledger {
        let Some(m) = self.markets.get(seller) else {
            return Ledger::from_entries(*seller, Vec::new());
        };
        let view = MarketView::new(self, m);
        let mut lines = Lines::default();
        for r in self.counted(m) {
            let sale = payout::Sale {
                offer: r.offer,
                seller: *seller,
                policy: self.offers[r.offer as usize].policy,
                amount_minor: r.amount_minor,
                buyer: r.buyer,
                via: (r.via != NONE).then_some(r.via),
                created_at_ms: r.created_at_ms,
            };
            self.credit(&view, &sale, m.refunded.contains(&r.id), &mut lines);
        }
        lines.into_ledger(seller, m)
    }

    /// The payout terms of a grouped receipt.
    fn sale(&self, m: &Market, seller: &PublicKey, via: u32, r: &Sold) -> payout::Sale<u32, u32> {
        payout::Sale {
            offer: r.offer,
            seller: *seller,
            policy: self.offers[r.offer as usize].policy,
            amount_minor: r.amount_minor,
            buyer: m.receipts[r.receipt as usize].buyer,
            via: Some(via),
            created_at_ms: r.created_at_ms,
        }
    }

    /// Adds one counted receipt's credits.
    fn credit(
        &self,
        view: &MarketView<'_>,
        sale: &payout::Sale<u32, u32>,
        refunded: bool,
        lines: &mut Lines,
    ) {
        let currency = self.offers[sale.offer as usize].currency;
        for (who, amount) in payout::payout(view, sale).credits() {
            let line = lines.line(currency, who);
            let a = u128::from(amount);
            lines.credit(line, a, if refunded { a } else { 0 });
        }
    }

    /// Pairs of receipts of one seller for one order (the first counts), sorted.
    pub fn equivocations(&self, seller: &PublicKey) -> Vec<Equivocation> {
        let Some(m) = self.markets.get(seller) else {
            return Vec::new();
        };
        let mut v: Vec<Equivocation> = m
            .orders
            .values()
            .flat_map(|slot| {
                slot.others.iter().map(move |&o| Equivocation {
                    counted: m.receipts[slot.counted as usize].id,
                    other: m.receipts[o as usize].id,
                })
            })
            .collect();
        v.sort();
        v
    }

    /// PurchaseClaims that contradict the counted receipt of their order, sorted.
    pub fn disputes(&self, seller: &PublicKey) -> Vec<Dispute> {
        let Some(m) = self.markets.get(seller) else {
            return Vec::new();
        };
        let via_id = |idx: u32| (idx != NONE).then(|| self.referrals[idx as usize].id);
        let mut v: Vec<Dispute> = m
            .claims
            .iter()
            .filter_map(|c| {
                let slot = m.orders.get(&c.order)?;
                let r = &m.receipts[slot.counted as usize];
                let offer_id = self.offers[r.offer as usize].id;
                let recorded = via_id(r.via);
                let buyer_matches = r.buyer == c.buyer;
                (offer_id == c.offer && (!buyer_matches || recorded != c.via)).then_some(Dispute {
                    claim: c.id,
                    receipt: r.id,
                    buyer_matches,
                    claimed_via: c.via,
                    recorded_via: recorded,
                })
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grouped_receipt_is_half_a_cache_line() {
        // The grouping pass writes one record per receipt at random: within one cache line.
        assert_eq!(std::mem::size_of::<Sold>(), 32);
        assert_eq!(std::mem::align_of::<Sold>(), 32);
    }
}
