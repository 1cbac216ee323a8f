//! Loose attestations: what any key may sign in a market with no sale behind it, kept within
//! a budget per author and per market.
//!
//! Everything the seller signs is the market: following it is a choice to store it. But any
//! key may refer any offer, and any buyer key may claim a purchase, so without a bound a key
//! signing a million valid referrals of a followed market would cost every follower ~250 MB.
//! A referral is **anchored** once a receipt's chain goes through it or through a referral
//! below it; a purchase claim once its order has a receipt; and whatever the node's own API
//! stored (its own acts, the links a user opened, its imports) is anchored with the chain
//! above it. The rest is **loose**: valid, indexed as usual, listed with the market (so that
//! the network reconciles it), but kept within [`MAX_LOOSE_PER_AUTHOR`] per author and
//! [`MAX_LOOSE_PER_MARKET`] per market; beyond, the oldest (by time, then id) is dropped with
//! the loose referrals below it. Ledgers read only receipts and their chains, so dropping a
//! loose attestation changes no ledger; a sale through one brings its chain back as the
//! receipt's missing parents, and anchors it.
//!
//! The choice of what to drop is a function of what is held, not of the order it came in:
//! for one author, a node keeps the newest [`MAX_LOOSE_PER_AUTHOR`] of all it was sent, so two
//! nodes that reconcile end with the same ones (the cap per market, under a flood of fresh
//! keys, only approximately so).
//!
//! Anchored attestations are indexed in the market's runs (`market`); loose ones under
//! `LOOSE` (by author) and `LOOSE_AT` (by time), and move to the runs when anchored.

use passalong_protocol::attestation::Body;
use passalong_protocol::payout::ChainView;
use passalong_protocol::{Id, Kind, PublicKey};

use crate::dependency;
use crate::expiry::ExpiryLimits;
use crate::index::{self, order_hash};
use crate::keyspace::*;
use crate::market::Indexed;
use crate::orders;
use crate::txn::Txn;

/// Loose attestations kept per author per market: a person passing several offers of one
/// seller along to many friends stays within it; ~64 KiB of envelopes at most.
pub const MAX_LOOSE_PER_AUTHOR: u64 = 256;

/// Loose attestations kept per market, whatever the number of authors: ~2.5 MB of envelopes.
pub const MAX_LOOSE_PER_MARKET: u64 = 10_000;

/// How long an id dropped over budget as it came is declined (see [`crate::Store::declined`]):
/// 10 minutes, so that a peer keeping more of an author costs one fetch of them per 10
/// minutes, not one per sync session, and an id that would fit again (a sale anchored one of
/// its author's) is fetched again within that time.
pub const DECLINE_MS: u64 = 600_000;

/// Declined ids remembered at most (by their first 8 bytes: 16 bytes each with the time).
const MAX_DECLINED: usize = 100_000;

/// Ids dropped over budget as they came, with when (see [`crate::Store::declined`]).
#[derive(Default)]
pub(crate) struct Declined(std::sync::Mutex<std::collections::HashMap<u64, u64>>);

impl Declined {
    pub fn note<'a>(&self, ids: impl Iterator<Item = &'a Id>, now_ms: u64) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if g.len() >= MAX_DECLINED {
                g.retain(|_, at| at.saturating_add(DECLINE_MS) > now_ms);
                if g.len() >= MAX_DECLINED {
                    g.clear();
                }
            }
            g.insert(crate::cache::id_prefix(id), now_ms);
        }
    }

    pub fn holds(&self, id: &Id, now_ms: u64) -> bool {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.get(&crate::cache::id_prefix(id))
            .is_some_and(|at| at.saturating_add(DECLINE_MS) > now_ms)
    }
}

/// What the store knows in memory about loose attestations, to spare receipts reads: the
/// referrals read anchored (an anchored referral never becomes loose again, so this never goes
/// stale; only what the tree held committed is noted, never a transaction's own moves), and
/// whether any purchase claim may be held (most stores hold none).
#[derive(Default)]
pub(crate) struct Hints {
    anchored: std::sync::Mutex<[std::collections::HashSet<Id>; 2]>,
    claims: std::sync::atomic::AtomicBool,
}

/// Anchored referrals noted per generation (32 bytes each, two generations).
const ANCHORED_GEN: usize = 32_768;

impl Hints {
    /// Hints for the store `db` as opened.
    pub fn load(db: &sled::Db) -> sled::Result<Hints> {
        let h = Hints::default();
        let any = db.scan_prefix([CLAIM]).next().transpose()?.is_some();
        h.claims.store(any, std::sync::atomic::Ordering::Relaxed);
        Ok(h)
    }

    /// The store was reopened: what was noted may not be on disk.
    pub fn reset(&self, db: &sled::Db) -> sled::Result<()> {
        let fresh = Hints::load(db)?;
        *self.anchored.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
        self.claims.store(
            fresh.claims.load(std::sync::atomic::Ordering::Relaxed),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(())
    }

    fn is_anchored(&self, id: &Id) -> bool {
        let g = self.anchored.lock().unwrap_or_else(|p| p.into_inner());
        g[0].contains(id) || g[1].contains(id)
    }

    fn note_anchored(&self, id: Id) {
        let mut g = self.anchored.lock().unwrap_or_else(|p| p.into_inner());
        if g[0].len() >= ANCHORED_GEN {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(id);
    }

    fn may_have_claims(&self) -> bool {
        self.claims.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A claim is about to be stored.
    pub fn claim_stored(&self) {
        self.claims
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A loose-capable attestation's place: market, author, time, kind.
struct Place {
    market: PublicKey,
    author: PublicKey,
    created_at_ms: u64,
    kind: Kind,
}

impl Place {
    fn loose_key(&self, id: &Id) -> Vec<u8> {
        key(
            LOOSE,
            &[
                &self.market.0,
                &self.author.0,
                &self.created_at_ms.to_be_bytes(),
                &id.0,
            ],
        )
    }

    fn at_key(&self, id: &Id) -> Vec<u8> {
        key(
            LOOSE_AT,
            &[&self.market.0, &self.created_at_ms.to_be_bytes(), &id.0],
        )
    }
}

/// The place of a referral or purchase claim whose market is known; `None` for other kinds.
fn place(t: &Txn<'_>, body: &Body) -> Option<Place> {
    match body {
        Body::Referral(r) => referral_place(t, &r.offer, r.referrer, r.created_at_ms),
        Body::PurchaseClaim(c) => Some(Place {
            market: index::market_of(t, body)?,
            author: c.buyer,
            created_at_ms: c.created_at_ms,
            kind: Kind::PurchaseClaim,
        }),
        _ => None,
    }
}

/// A referral's place: its offer's market, its referrer.
fn referral_place(
    t: &Txn<'_>,
    offer: &Id,
    referrer: PublicKey,
    created_at_ms: u64,
) -> Option<Place> {
    Some(Place {
        market: t.offer(offer)?.seller,
        author: referrer,
        created_at_ms,
        kind: Kind::Referral,
    })
}

fn author_count_key(p: &Place) -> Vec<u8> {
    key(LOOSE_COUNT, &[&p.market.0, &p.author.0])
}

fn market_count_key(market: &PublicKey, kind: Kind) -> Vec<u8> {
    key(META, &[b"loose", &market.0, &[kind as u8]])
}

fn read_count(t: &Txn<'_>, k: &[u8]) -> u64 {
    t.get(k).map_or(0, |v| u64_at(&v, 0))
}

fn add_count(t: &mut Txn<'_>, k: Vec<u8>, up: bool) {
    let n = read_count(t, &k);
    // The tree has no count for the key: a first loose attestation of an author, most often
    // anchored in the same shipment.
    let new = n == 0 && t.committed(&k);
    let n = if up { n + 1 } else { n.saturating_sub(1) };
    if n == 0 {
        t.del(k);
    } else if new {
        t.put_new(k, n.to_be_bytes().to_vec());
    } else {
        t.put(k, n.to_be_bytes().to_vec());
    }
}

/// How many loose attestations of `kind` a market holds (read from the tree; none of the
/// kinds that are never loose, without a read).
pub(crate) fn market_count(db: &sled::Db, market: &PublicKey, kind: Kind) -> sled::Result<u64> {
    if !matches!(kind, Kind::Referral | Kind::PurchaseClaim) {
        return Ok(0);
    }
    Ok(db
        .get(market_count_key(market, kind))?
        .map_or(0, |v| u64_at(&v, 0)))
}

/// A market's loose attestations as index entries (read from the tree).
pub(crate) fn entries(
    db: &sled::Db,
    market: &PublicKey,
    out: &mut Vec<Indexed>,
) -> sled::Result<()> {
    for kv in db.scan_prefix(key(LOOSE, &[&market.0])) {
        let (k, v) = kv?;
        if k.len() == 1 + 32 + 32 + 8 + 32 {
            out.push(Indexed {
                created_at_ms: u64_at(&k, 65),
                id: Id(id_at(&k, 73)),
                kind: v.first().copied().unwrap_or(0),
            });
        }
    }
    Ok(())
}

/// Whether the valid `body` is anchored as it becomes valid: a claim whose order has a
/// receipt, or anything this transaction's caller (the node's own API) stored.
fn anchored_at_birth(t: &Txn<'_>, body: &Body) -> bool {
    if t.own {
        return true;
    }
    match body {
        Body::PurchaseClaim(c) => t.offer(&c.offer).is_some_and(|o| {
            t.counted(&orders::order_key(&o.seller, &order_hash(&c.order)))
                .is_some()
        }),
        _ => false,
    }
}

/// Indexes a valid attestation `id` of `market`: in the market's runs, or as loose. Anything
/// the node's own API stores anchors the chain above it.
pub(crate) fn index(t: &mut Txn<'_>, market: PublicKey, id: Id, body: &Body) {
    let entry = Indexed {
        created_at_ms: body.created_at_ms(),
        id,
        kind: body.kind() as u8,
    };
    let Some(p) = place(t, body).filter(|_| !anchored_at_birth(t, body)) else {
        t.index_market(market, entry);
        if let Some(above) = above(body) {
            anchor_chain(t, above);
        }
        return;
    };
    // `id` becomes valid here, so the tree holds no key of it as loose.
    t.put_new(p.loose_key(&id), vec![p.kind as u8]);
    t.put_new(p.at_key(&id), p.author.0.to_vec());
    if let Some(parent) = referral_parent(body) {
        t.put_new(child_key(&parent, &id), vec![]);
    }
    add_count(t, author_count_key(&p), true);
    add_count(t, market_count_key(&p.market, p.kind), true);
    t.loose_touched.push((p.market, p.author));
}

/// The key that finds a loose referral from its parent (what dropping the parent takes).
fn child_key(parent: &Id, id: &Id) -> Vec<u8> {
    key(CHILD, &[&parent.0, &id.0])
}

/// A referral's parent (`None` for a root or another kind).
fn referral_parent(body: &Body) -> Option<Id> {
    match body {
        Body::Referral(r) => r.parent,
        _ => None,
    }
}

/// Anchors `id` if it is loose (moves it to its market's runs); whether it was.
fn anchor(t: &mut Txn<'_>, id: Id) -> bool {
    if t.hints.is_anchored(&id) {
        return false;
    }
    // A referral committed before: its place from its record (see `hops`), not its entry.
    let (p, body, parent) = match t.referral_rec(&id) {
        Some(r) => {
            let Some(p) = referral_place(t, &r.offer, r.hop.referrer, r.hop.created_at_ms) else {
                return false;
            };
            (p, None, r.hop.parent)
        }
        None => {
            let Some(body) = t.body(&id) else {
                return false;
            };
            let Some(p) = place(t, &body) else {
                return false;
            };
            let parent = referral_parent(&body);
            (p, Some(body), parent)
        }
    };
    let k = p.loose_key(&id);
    if !t.contains(&k) {
        // Noted only when both the entry and the absence of a LOOSE key come from the tree:
        // a transaction that fails leaves nothing noted.
        if t.committed(&k) && t.committed(&key(ENTRY, &[&id.0])) {
            t.hints.note_anchored(id);
        }
        return false;
    }
    t.del(k);
    t.del(p.at_key(&id));
    if let Some(parent) = parent {
        // Anchored, it is never dropped: its CHILD key is not needed. Not written yet, it
        // is not written at all; written, it stays (a delete would cost what the key does).
        t.retract(child_key(&parent, &id));
    }
    add_count(t, author_count_key(&p), false);
    add_count(t, market_count_key(&p.market, p.kind), false);
    t.index_market(
        p.market,
        Indexed {
            created_at_ms: p.created_at_ms,
            id,
            kind: p.kind as u8,
        },
    );
    if let Some(body @ Body::PurchaseClaim(_)) = &body {
        if let Some(via) = above(body) {
            anchor_chain(t, via);
        }
    }
    true
}

/// The referral an anchored attestation anchors with it: a referral's parent, a claim's
/// referral.
fn above(body: &Body) -> Option<Id> {
    match body {
        Body::Referral(r) => r.parent,
        Body::PurchaseClaim(c) => c.via,
        _ => None,
    }
}

/// Anchors the referral `from` and the loose ones above it. An anchored referral's chain is
/// anchored already, so the walk stops at the first one that is not loose.
pub(crate) fn anchor_chain(t: &mut Txn<'_>, from: Id) {
    let mut next = Some(from);
    while let Some(id) = next {
        // The parent from the hop: on a cold cache, a dense record rather than the entry.
        let Some(parent) = t.hop(id).map(|h| h.parent) else {
            break;
        };
        if !anchor(t, id) {
            break;
        }
        next = parent;
    }
}

/// The node's own API stored again what it held valid already (a link opened after its
/// referrals came by gossip): it is anchored now, with its chain.
pub(crate) fn anchor_known(t: &mut Txn<'_>, ids: &[Id], known: &[Option<crate::Status>]) {
    for (id, k) in ids.iter().zip(known) {
        if k == &Some(crate::Status::Valid) && anchor(t, *id) {
            if let Some(above) = t.body(id).as_ref().and_then(above) {
                anchor_chain(t, above);
            }
        }
    }
}

/// A valid receipt anchors its chain and the purchase claims of its order.
pub(crate) fn anchor_receipt(
    t: &mut Txn<'_>,
    referral: Option<Id>,
    seller: &PublicKey,
    order: &str,
) {
    if let Some(r) = referral {
        anchor_chain(t, r);
    }
    if !t.hints.may_have_claims() {
        return;
    }
    let claims = key(CLAIM, &[&seller.0, &order_hash(order)]);
    // Most orders have no claim: a point read, not a sled iterator, finds that.
    if t.first(&claims).is_none() {
        return;
    }
    for (k, _) in t.scan(&claims) {
        anchor(t, Id(id_at(&k, 65)));
    }
}

/// Brings the authors and markets this transaction added loose attestations to within their
/// budgets, dropping the oldest; the ids dropped go to `evicted`.
pub(crate) fn enforce(t: &mut Txn<'_>, limits: &ExpiryLimits, evicted: &mut Vec<Id>) {
    let mut touched = std::mem::take(&mut t.loose_touched);
    if touched.is_empty() {
        return;
    }
    touched.sort_unstable();
    touched.dedup();
    for (market, author) in &touched {
        let count = key(LOOSE_COUNT, &[&market.0, &author.0]);
        let prefix = key(LOOSE, &[&market.0, &author.0]);
        drop_oldest(t, &prefix, 73, evicted, |t| {
            read_count(t, &count) > limits.max_loose_per_author
        });
    }
    let mut markets: Vec<PublicKey> = touched.iter().map(|(m, _)| *m).collect();
    markets.dedup();
    for market in markets {
        let prefix = key(LOOSE_AT, &[&market.0]);
        let total = |t: &Txn<'_>| {
            read_count(t, &market_count_key(&market, Kind::Referral))
                + read_count(t, &market_count_key(&market, Kind::PurchaseClaim))
        };
        drop_oldest(t, &prefix, 41, evicted, |t| {
            total(t) > limits.max_loose_per_market
        });
    }
    t.loose_touched.clear();
}

/// Drops the loose attestations under `prefix` (in key order: oldest first), each with its
/// subtree, while `over` holds; each key holds its attestation's id from byte `at`.
fn drop_oldest(
    t: &mut Txn<'_>,
    prefix: &[u8],
    at: usize,
    evicted: &mut Vec<Id>,
    over: impl Fn(&Txn<'_>) -> bool,
) {
    // From the last key dropped, not the prefix: the tree still holds the keys this
    // transaction deleted, and each search from the start read them all again.
    let mut cursor = prefix.to_vec();
    while over(t) {
        let Some(k) = t.key_after(prefix, &cursor) else {
            break;
        };
        drop_subtree(t, Id(id_at(&k, at)), evicted);
        if t.contains(&k) {
            // Not droppable (its entry is gone): a damaged store; stop, do not spin.
            break;
        }
        cursor = k;
    }
}

/// Drops the loose attestation `id` and the loose referrals below it. A referral with an
/// anchored one below it would break the rule that an anchored referral's chain is anchored:
/// it is anchored instead (only a store damaged by hand could hold one).
fn drop_subtree(t: &mut Txn<'_>, id: Id, evicted: &mut Vec<Id>) {
    let mut order = vec![id];
    let mut i = 0;
    while let Some(&at) = order.get(i) {
        for (k, _) in t.scan(&key(CHILD, &[&at.0])) {
            let child = Id(id_at(&k, 33));
            if !is_loose(t, &child) {
                anchor_chain(t, at);
                return;
            }
            order.push(child);
        }
        i += 1;
    }
    for id in order.into_iter().rev() {
        drop_one(t, id);
        evicted.push(id);
    }
}

fn is_loose(t: &Txn<'_>, id: &Id) -> bool {
    t.body(id)
        .and_then(|b| place(t, &b))
        .is_some_and(|p| t.contains(&p.loose_key(id)))
}

/// Deletes a loose attestation and everything that indexes it.
fn drop_one(t: &mut Txn<'_>, id: Id) {
    let Some(body) = t.body(&id) else { return };
    let Some(p) = place(t, &body) else { return };
    t.del(p.loose_key(&id));
    t.del(p.at_key(&id));
    add_count(t, author_count_key(&p), false);
    add_count(t, market_count_key(&p.market, p.kind), false);
    match &body {
        Body::Referral(r) => {
            if let Some(parent) = r.parent {
                t.del(child_key(&parent, &id));
            }
            // Indexed by referrer only for offers that require a purchase (see `index`). A
            // key an older store wrote for another offer stays: its one reader finds no sale
            // through a dropped referral.
            if t.offer(&r.offer).is_some_and(|o| o.policy.require_purchase) {
                t.del(key(BY_REFERRER, &[&r.offer.0, &r.referrer.0, &id.0]));
            }
            if let Some(c) = r.community {
                t.del(key(NAMING, &[&c.0, &r.referrer.0, &id.0]));
                dependency::referral_gone(t, p.market, r);
            }
        }
        Body::PurchaseClaim(c) => {
            t.del(key(CLAIM, &[&p.market.0, &order_hash(&c.order), &id.0]));
        }
        _ => {}
    }
    let counter = key(META, &[b"valid"]);
    let n = read_count(t, &counter);
    t.put(counter, n.saturating_sub(1).to_be_bytes().to_vec());
    t.drop_valid(&id);
}
