//! Bounded keeping of what does not count: held, pending and invalid attestations.
//!
//! The protocol keeps a held attestation until its time comes, a pending one until its
//! dependencies arrive and an invalid id for good; a node that stores all of them on those terms
//! can be filled by anyone, at no cost to the sender (90,000 never-valid attestations made a
//! 65 MB store with nothing valid in it). So the store keeps them within bounds. This is a
//! node storage policy, not a validity rule: what is valid is decided as before, and what the
//! store drops here it simply no longer holds. Sent again, it is checked again and comes out as
//! it would have (a pending one that finds its dependencies becomes valid; an invalid one is
//! invalid again). The valid set, and so every ledger, is never touched. Where the protocol's
//! `State` (which keeps everything) and a store differ: an attestation dropped here that is
//! never offered again does not become valid when its dependency arrives later, and an
//! attestation whose dependency's invalid id expired waits as pending (and expires) instead of
//! being invalid at once.
//!
//! - **held** (dated ahead): kept only if its release time is within [`HELD_HORIZON_MS`] of
//!   the caller's `now`; beyond it the ingest answers held but does not keep it (`NotKept`).
//!   At most [`MAX_HELD`] are kept: beyond, the ones released last are dropped.
//! - **pending** (a dependency missing): dropped [`PENDING_TTL_MS`] after it became pending
//!   (when received, or released from hold); at most [`MAX_PENDING`], oldest dropped first.
//!   Its waiter keys go with it.
//! - **invalid**: its id (and reason) is dropped [`INVALID_TTL_MS`] after it was found
//!   invalid; at most [`MAX_INVALID`], oldest first. The set of invalid ids kept in memory
//!   (8 bytes each) is bounded with it.
//!
//! The caps are applied as part of the ingest that passes them (no clock needed); the times are
//! applied by [`crate::Store::expire`] (and `tick`) at the `now` the caller passes. The
//! decisions ([`ExpiryLimits`]) are pure: the store never reads the clock for them.

use passalong_protocol::Id;

use crate::keyspace::*;
use crate::txn::{EntryState, Txn};

/// An hour, in milliseconds.
const HOUR_MS: u64 = 3_600_000;

/// How far ahead a held attestation's release may be for the store to keep it: a day. The
/// protocol holds anything dated more than 2 minutes ahead (clock skew); honest clocks are
/// not a day off, and an attestation dated further may be offered again when its time nears.
pub const HELD_HORIZON_MS: u64 = 24 * HOUR_MS;

/// Held attestations kept at most. Each is its envelope (≤ 1 KiB, ~200 bytes typically) and
/// ~100 bytes of keys; sled's files take several times the bytes of keys and values (~6× in
/// the flood test). Honest nodes hold few (only clocks off by more than 2 minutes make them).
pub const MAX_HELD: u64 = 10_000;

/// How long a pending attestation waits for its dependencies: a day. Sync fetches a missing
/// dependency from the peer that sent the attestation within seconds; a day also covers
/// peers that are online only part of the day. What expires comes back with the next sync
/// from a peer that holds it valid.
pub const PENDING_TTL_MS: u64 = 24 * HOUR_MS;

/// Pending attestations kept at most. Each is its envelope (≤ 1 KiB, ~200 bytes typically)
/// and ~250 bytes of keys (entry, index, waiters); 30,000 pending, 10,000 held and 30,000
/// invalid ids were 15.6 MB of keys and values, 97 MB of sled files. Honest pending are few
/// and brief (a dependency is fetched from the peer that sent the attestation).
pub const MAX_PENDING: u64 = 50_000;

/// How long an invalid id is remembered: a day. Remembering it answers a repeat without a
/// signature check and makes what depends on it invalid at once; forgotten, a repeat is
/// checked again and found invalid again.
pub const INVALID_TTL_MS: u64 = 24 * HOUR_MS;

/// Invalid ids kept at most: ~150 bytes of keys and values each (id, reason, index) and 8
/// bytes each in memory (≤ ~1 MB for the set at the cap, with the hash table's slack).
pub const MAX_INVALID: u64 = 50_000;

/// Removals (or releases) per transaction: each is a few keys, ≤ ~230 bytes of redo record
/// (see `redo`). sled writes a tree node larger than a quarter segment (128 KiB) as a
/// separate blob file, again at every change to it: a 10,000-removal record (~1 MB) in the
/// REDO key's node made 360 MB of blobs while 70,000 entries expired.
pub(crate) const EXPIRE_BATCH: usize = 256;

/// The bounds a store applies (defaults: the constants of this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryLimits {
    /// See [`HELD_HORIZON_MS`].
    pub held_horizon_ms: u64,
    /// See [`MAX_HELD`].
    pub max_held: u64,
    /// See [`PENDING_TTL_MS`].
    pub pending_ttl_ms: u64,
    /// See [`MAX_PENDING`].
    pub max_pending: u64,
    /// See [`INVALID_TTL_MS`].
    pub invalid_ttl_ms: u64,
    /// See [`MAX_INVALID`].
    pub max_invalid: u64,
    /// See [`crate::MAX_LOOSE_PER_AUTHOR`].
    pub max_loose_per_author: u64,
    /// See [`crate::MAX_LOOSE_PER_MARKET`].
    pub max_loose_per_market: u64,
}

impl Default for ExpiryLimits {
    fn default() -> Self {
        ExpiryLimits {
            held_horizon_ms: HELD_HORIZON_MS,
            max_held: MAX_HELD,
            pending_ttl_ms: PENDING_TTL_MS,
            max_pending: MAX_PENDING,
            invalid_ttl_ms: INVALID_TTL_MS,
            max_invalid: MAX_INVALID,
            max_loose_per_author: crate::MAX_LOOSE_PER_AUTHOR,
            max_loose_per_market: crate::MAX_LOOSE_PER_MARKET,
        }
    }
}

impl ExpiryLimits {
    /// Whether a held attestation released at `until_ms` is kept, seen at `now_ms`.
    pub fn keeps_held(&self, until_ms: u64, now_ms: u64) -> bool {
        until_ms <= now_ms.saturating_add(self.held_horizon_ms)
    }

    /// When an attestation pending since `since_ms` expires.
    pub fn pending_expires_ms(&self, since_ms: u64) -> u64 {
        since_ms.saturating_add(self.pending_ttl_ms)
    }

    /// When an id found invalid at `at_ms` is forgotten.
    pub fn invalid_expires_ms(&self, at_ms: u64) -> u64 {
        at_ms.saturating_add(self.invalid_ttl_ms)
    }

    /// How many to drop to bring `count` within `cap`.
    pub fn excess(count: u64, cap: u64) -> u64 {
        count.saturating_sub(cap)
    }
}

/// Why the store answered an attestation without keeping it (a storage policy, not validity:
/// it may be offered again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotKept {
    /// Held, with a release time beyond [`HELD_HORIZON_MS`] from now.
    TooFarAhead,
    /// Valid but loose (no sale anchors it), and beyond its author's or its market's budget
    /// (see [`crate::MAX_LOOSE_PER_AUTHOR`]): dropped, oldest first, in the same call.
    OverBudget,
}

/// What the store holds that does not count, or what an expiry dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unsettled {
    /// Pending attestations.
    pub pending: u64,
    /// Held attestations.
    pub held: u64,
    /// Invalid ids.
    pub invalid: u64,
}

/// The META counter of each kind.
const PENDING_COUNT: &[u8] = b"pending";
const HELD_COUNT: &[u8] = b"held";
const INVALID_COUNT: &[u8] = b"invalid";

fn count(t: &Txn<'_>, name: &[u8]) -> u64 {
    t.get(&key(META, &[name])).map_or(0, |v| u64_at(&v, 0))
}

fn add_count(t: &mut Txn<'_>, name: &[u8], up: bool) {
    let n = count(t, name);
    let n = if up { n + 1 } else { n.saturating_sub(1) };
    t.put(key(META, &[name]), n.to_be_bytes().to_vec());
}

/// The counts as the transaction sees them.
pub(crate) fn unsettled(t: &Txn<'_>) -> Unsettled {
    Unsettled {
        pending: count(t, PENDING_COUNT),
        held: count(t, HELD_COUNT),
        invalid: count(t, INVALID_COUNT),
    }
}

/// `id` became pending at `since_ms`.
pub(crate) fn pending_added(t: &mut Txn<'_>, id: &Id, since_ms: u64) {
    t.put(key(PENDING, &[&since_ms.to_be_bytes(), &id.0]), vec![]);
    add_count(t, PENDING_COUNT, true);
}

/// `id`, pending since `since_ms`, is pending no more (valid or invalid).
pub(crate) fn pending_settled(t: &mut Txn<'_>, id: &Id, since_ms: u64) {
    let k = key(PENDING, &[&since_ms.to_be_bytes(), &id.0]);
    // Stores older than format 7 wrote waiter keys without a time: their index keys are at
    // 0 (see `index_existing`), so `since_ms` finds them too.
    if t.contains(&k) {
        t.del(k);
        add_count(t, PENDING_COUNT, false);
    }
}

/// A held attestation was stored (`up`) or released.
pub(crate) fn held_counted(t: &mut Txn<'_>, up: bool) {
    add_count(t, HELD_COUNT, up);
}

/// `id` is about to be stored as invalid, found at `now_ms`.
pub(crate) fn invalid_added(t: &mut Txn<'_>, id: &Id, now_ms: u64) {
    if t.invalid_reason(id).is_none() {
        t.put(key(INVALID_AT, &[&now_ms.to_be_bytes(), &id.0]), vec![]);
        add_count(t, INVALID_COUNT, true);
    }
}

/// Deletes the waiter keys of `id` (one per dependency it may wait for).
pub(crate) fn drop_waiters(t: &mut Txn<'_>, id: &Id, deps: &[Id]) {
    for d in deps {
        let k = key(WAITER, &[&d.0, &id.0]);
        if t.contains(&k) {
            t.del(k);
        }
    }
}

/// Drops the pending attestation of index key `k`: its entry, its waiter keys, the key.
fn drop_pending(t: &mut Txn<'_>, k: &[u8]) {
    let id = Id(id_at(k, 9));
    let pending = t.entry(&id, |e| (e.state == EntryState::Pending).then(|| e.body()));
    if let Some(Some(body)) = pending {
        t.del(key(ENTRY, &[&id.0]));
        if let Some(body) = body {
            drop_waiters(t, &id, &body.dependencies());
        }
    }
    t.del(k.to_vec());
    add_count(t, PENDING_COUNT, false);
}

/// Drops the held attestation of HELD key `k`.
fn drop_held(t: &mut Txn<'_>, k: &[u8]) {
    let id = Id(id_at(k, 9));
    if t.entry(&id, |e| matches!(e.state, EntryState::Held { .. })) == Some(true) {
        t.del(key(ENTRY, &[&id.0]));
    }
    t.del(k.to_vec());
    add_count(t, HELD_COUNT, false);
}

/// Forgets the invalid id of INVALID_AT key `k`.
fn drop_invalid(t: &mut Txn<'_>, k: &[u8]) {
    t.forget_invalid(&Id(id_at(k, 9)));
    t.del(k.to_vec());
    add_count(t, INVALID_COUNT, false);
}

/// Brings each kind within its cap: the oldest pending and invalid, the held released last.
/// Returns what it dropped.
pub(crate) fn enforce_caps(t: &mut Txn<'_>, limits: &ExpiryLimits) -> Unsettled {
    let now = unsettled(t);
    let mut dropped = Unsettled::default();
    let mut cursor = vec![PENDING];
    for _ in 0..ExpiryLimits::excess(now.pending, limits.max_pending) {
        let Some(k) = t.key_after(&[PENDING], &cursor) else {
            break;
        };
        drop_pending(t, &k);
        dropped.pending += 1;
        cursor = k;
    }
    let mut cursor = vec![INVALID_AT];
    for _ in 0..ExpiryLimits::excess(now.invalid, limits.max_invalid) {
        let Some(k) = t.key_after(&[INVALID_AT], &cursor) else {
            break;
        };
        drop_invalid(t, &k);
        dropped.invalid += 1;
        cursor = k;
    }
    let mut cursor: Option<Vec<u8>> = None;
    for _ in 0..ExpiryLimits::excess(now.held, limits.max_held) {
        let Some(k) = t.key_before(HELD, cursor.as_deref()) else {
            break;
        };
        drop_held(t, &k);
        dropped.held += 1;
        cursor = Some(k);
    }
    dropped
}

/// Drops up to `budget` entries whose time has passed at `now_ms`: pending past their TTL,
/// invalid ids past theirs, held beyond the horizon (only stores written before the horizon
/// have them). Adds what it dropped to `dropped`; true if it stopped at the budget.
pub(crate) fn expire_some(
    t: &mut Txn<'_>,
    limits: &ExpiryLimits,
    now_ms: u64,
    mut budget: usize,
    dropped: &mut Unsettled,
) -> bool {
    let mut cursor = vec![PENDING];
    while let Some(k) = t.key_after(&[PENDING], &cursor) {
        if limits.pending_expires_ms(u64_at(&k, 1)) > now_ms {
            break;
        }
        if budget == 0 {
            return true;
        }
        drop_pending(t, &k);
        dropped.pending += 1;
        budget -= 1;
        cursor = k;
    }
    let mut cursor = vec![INVALID_AT];
    while let Some(k) = t.key_after(&[INVALID_AT], &cursor) {
        if limits.invalid_expires_ms(u64_at(&k, 1)) > now_ms {
            break;
        }
        if budget == 0 {
            return true;
        }
        drop_invalid(t, &k);
        dropped.invalid += 1;
        budget -= 1;
        cursor = k;
    }
    let mut cursor: Option<Vec<u8>> = None;
    while let Some(k) = t.key_before(HELD, cursor.as_deref()) {
        if limits.keeps_held(u64_at(&k, 1), now_ms) {
            break;
        }
        if budget == 0 {
            return true;
        }
        drop_held(t, &k);
        dropped.held += 1;
        budget -= 1;
        cursor = Some(k);
    }
    false
}

/// When an expiry is next due: the oldest pending's or invalid id's expiry.
pub(crate) fn next_due_ms(db: &sled::Db, limits: &ExpiryLimits) -> sled::Result<Option<u64>> {
    let first = |p: u8| -> sled::Result<Option<u64>> {
        Ok(db
            .scan_prefix([p])
            .next()
            .transpose()?
            .map(|(k, _)| u64_at(&k, 1)))
    };
    let pending = first(PENDING)?.map(|s| limits.pending_expires_ms(s));
    let invalid = first(INVALID_AT)?.map(|s| limits.invalid_expires_ms(s));
    Ok(match (pending, invalid) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Format 7: indexes what a store written before it holds that does not count, as received
/// at time 0 (when is not known), so that the first expiry pass drops it; counts each kind.
/// Idempotent: cut short, it runs again at the next open (the counts are set, not added to).
pub(crate) fn index_existing(db: &sled::Db) -> sled::Result<()> {
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    let flush_batch = |batch: &mut sled::Batch, n: &mut usize, force: bool| {
        if *n >= EXPIRE_BATCH || (force && *n > 0) {
            db.apply_batch(std::mem::take(batch))?;
            *n = 0;
        }
        sled::Result::Ok(())
    };
    let mut pending = std::collections::BTreeSet::new();
    for kv in db.scan_prefix([WAITER]) {
        let (k, _) = kv?;
        let id = Id(id_at(&k, 33));
        if pending.contains(&id) {
            continue;
        }
        let is_pending = db.get(key(ENTRY, &[&id.0]))?.is_some_and(|v| {
            postcard::from_bytes::<crate::txn::Entry<'_>>(&v)
                .is_ok_and(|e| e.state == EntryState::Pending)
        });
        if is_pending {
            pending.insert(id);
            batch.insert(key(PENDING, &[&0u64.to_be_bytes(), &id.0]), vec![]);
            in_batch += 1;
            flush_batch(&mut batch, &mut in_batch, false)?;
        }
    }
    let mut invalid = 0u64;
    for kv in db.scan_prefix([INVALID]) {
        let (k, _) = kv?;
        batch.insert(key(INVALID_AT, &[&0u64.to_be_bytes(), &k[1..]]), vec![]);
        invalid += 1;
        in_batch += 1;
        flush_batch(&mut batch, &mut in_batch, false)?;
    }
    let held = db.scan_prefix([HELD]).count() as u64;
    for (name, n) in [
        (PENDING_COUNT, pending.len() as u64),
        (HELD_COUNT, held),
        (INVALID_COUNT, invalid),
    ] {
        batch.insert(key(META, &[name]), n.to_be_bytes().to_vec());
    }
    in_batch += 1;
    flush_batch(&mut batch, &mut in_batch, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_600_000;

    #[test]
    fn held_is_kept_within_the_horizon_only() {
        let l = ExpiryLimits::default();
        assert!(l.keeps_held(NOW, NOW));
        assert!(l.keeps_held(NOW + HELD_HORIZON_MS, NOW));
        assert!(!l.keeps_held(NOW + HELD_HORIZON_MS + 1, NOW));
        // What is too far ahead today is kept once its time nears.
        assert!(l.keeps_held(NOW + HELD_HORIZON_MS + 1, NOW + 1));
        assert!(l.keeps_held(u64::MAX, u64::MAX - 1));
    }

    #[test]
    fn pending_and_invalid_expire_after_their_ttl() {
        let l = ExpiryLimits::default();
        assert_eq!(l.pending_expires_ms(NOW), NOW + PENDING_TTL_MS);
        assert_eq!(l.invalid_expires_ms(NOW), NOW + INVALID_TTL_MS);
        assert_eq!(l.pending_expires_ms(u64::MAX), u64::MAX);
        assert_eq!(ExpiryLimits::excess(10, 4), 6);
        assert_eq!(ExpiryLimits::excess(3, 4), 0);
    }
}
