//! What the store keeps in memory of its tree, shared by every transaction: valid
//! attestations decoded and referrals' records (`ValidCache`), the ids found invalid
//! (`InvalidIds`), and the hashing that suits ids (blake3 hashes already).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use passalong_protocol::attestation::Body;
use passalong_protocol::validation::Fact;
use passalong_protocol::Id;

use crate::error::StoreError;
use crate::keyspace::*;

/// Fact and body of valid attestations read from the tree, shared by every transaction of a
/// store. A valid attestation stays valid with the same body (nothing un-validates it), so an
/// entry goes stale only when the store drops it (a loose one over budget, see `loose`), and
/// it is removed then, and again once the deletion is applied; only committed reads are
/// cached, never a transaction's own writes.
///
/// Referrals' records (see `hops`) are kept apart, compact (~500 bytes each, not a decoded
/// envelope), and many more of them: every receipt checks its referral and walks its chain to
/// be paid, and on a store larger than sled's cache each read from the tree pages in a leaf
/// (on a 1M store that walk was ~40 % of ingest's instructions). They enter as they are read
/// and as the shipments that made them valid are applied.
pub(crate) struct ValidCache {
    bodies: Mutex<Generations<Valid>>,
    referrals: Mutex<Generations<crate::hops::Rec>>,
}

pub(crate) type Valid = Arc<(Fact, Body)>;

/// Two generations bound a cache: when the young one holds `young_max`, the old one is
/// dropped and the young one takes its place; a hit in the old one moves to the young one.
struct Generations<V> {
    gens: [HashMap<Id, V, BuildHasherDefault<IdHasher>>; 2],
    young_max: usize,
}

impl<V: Clone> Generations<V> {
    fn new(young_max: usize) -> Self {
        Generations {
            gens: Default::default(),
            young_max,
        }
    }

    pub fn get(&mut self, id: &Id) -> Option<V> {
        if let Some(v) = self.gens[0].get(id) {
            return Some(v.clone());
        }
        let v = self.gens[1].remove(id)?;
        self.put(*id, v.clone());
        Some(v)
    }

    fn put(&mut self, id: Id, v: V) {
        if self.gens[0].len() >= self.young_max {
            self.gens[1] = std::mem::take(&mut self.gens[0]);
        }
        self.gens[0].insert(id, v);
    }

    fn remove(&mut self, id: &Id) {
        self.gens[0].remove(id);
        self.gens[1].remove(id);
    }

    fn clear(&mut self) {
        self.gens = Default::default();
    }
}

/// The first 8 bytes of the ids stored as invalid (read at open, added to as they are
/// written, removed as they expire): most ids checked are not, and for them
/// [`Txn::is_stored`] skips the INVALID read. 8 bytes per invalid attestation, and at most
/// `ExpiryLimits::max_invalid` of them are stored (see `expiry`).
#[derive(Default)]
pub(crate) struct InvalidIds(RwLock<HashSet<u64, BuildHasherDefault<IdHasher>>>);

impl InvalidIds {
    fn prefix(id: &Id) -> u64 {
        id_prefix(id)
    }

    /// Reads the INVALID keys.
    pub fn load(tree: &sled::Tree) -> Result<InvalidIds, StoreError> {
        let mut set = HashSet::default();
        for kv in tree.scan_prefix([INVALID]) {
            set.insert(Self::prefix(&Id(id_at(&kv?.0, 1))));
        }
        Ok(InvalidIds(RwLock::new(set)))
    }

    /// Reads the INVALID keys again, in place of what was known.
    pub fn reload(&self, tree: &sled::Tree) -> Result<(), StoreError> {
        let fresh = InvalidIds::load(tree)?;
        let set = fresh.0.into_inner().unwrap_or_else(|p| p.into_inner());
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = set;
        Ok(())
    }

    pub fn may_hold(&self, id: &Id) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&Self::prefix(id))
    }

    pub fn add(&self, id: &Id) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Self::prefix(id));
    }

    /// Drops ids whose INVALID keys were deleted (two ids sharing a prefix, one in 2^64 per
    /// pair, would only cost the other a second signature check if it is sent again).
    pub fn forget(&self, ids: &[Id]) {
        if ids.is_empty() {
            return;
        }
        let mut set = self.0.write().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            set.remove(&Self::prefix(id));
        }
    }

    /// How many prefixes are held (the memory bound's subject).
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// An id's first 8 bytes: ids are blake3 hashes, so this is already a good hash, and what the
/// in-memory id sets keep (8 bytes per id instead of 32).
pub(crate) fn id_prefix(id: &Id) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(b)
}

/// Ids are blake3 hashes: their first bytes are already a good hash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8).take(1) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(b);
        }
    }
}

/// Valid attestations kept decoded per generation (the hot set: offers, communities).
const CACHE_GEN: usize = 16_384;
/// Referral records per generation: 7/8 of a power of two, a hash table's largest load before
/// it doubles; at most ~2 × 32,768 slots of ~550 bytes (36 MB) when both are full. A record
/// carries its chain's nearest hops (see `hops`), so a walk needs one record, not one per hop:
/// half as many records as before format 17, in the same memory, serve it.
const REFERRALS_GEN: usize = 28_672;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ValidCache {
    pub fn new() -> ValidCache {
        ValidCache {
            bodies: Mutex::new(Generations::new(CACHE_GEN)),
            referrals: Mutex::new(Generations::new(REFERRALS_GEN)),
        }
    }

    /// Forgets everything (the store was reopened: what it held may not be on disk).
    pub fn clear(&self) {
        lock(&self.bodies).clear();
        lock(&self.referrals).clear();
    }

    pub fn get(&self, id: &Id) -> Option<Valid> {
        lock(&self.bodies).get(id)
    }

    /// Forgets `id` (its entry was deleted).
    pub fn remove(&self, id: &Id) {
        lock(&self.bodies).remove(id);
        lock(&self.referrals).remove(id);
    }

    pub fn insert(&self, id: Id, v: Valid) {
        lock(&self.bodies).put(id, v);
    }

    pub fn referral(&self, id: &Id) -> Option<crate::hops::Rec> {
        lock(&self.referrals).get(id)
    }

    /// Keeps the record of a referral read from the tree.
    pub fn put_referral(&self, id: Id, r: crate::hops::Rec) {
        lock(&self.referrals).put(id, r);
    }

    /// Adds the records of referrals whose shipment was applied.
    pub fn shipped_referrals(&self, recs: &[(Id, crate::hops::Rec)]) {
        if recs.is_empty() {
            return;
        }
        let mut g = lock(&self.referrals);
        for (id, r) in recs {
            g.put(*id, *r);
        }
    }
}

#[cfg(test)]
mod tests {
    use passalong_protocol::payout::Hop;
    use passalong_protocol::PublicKey;

    use super::*;

    fn id(n: u32) -> Id {
        Id(*blake3::hash(&n.to_be_bytes()).as_bytes())
    }

    /// A bounded cache: what was used lately stays, the rest goes a generation later.
    #[test]
    fn generations_keep_what_is_used_and_stay_bounded() {
        let mut g = Generations::new(4);
        for n in 0..4 {
            g.put(id(n), n);
        }
        // The young generation is full: the next one moves it to the old one.
        g.put(id(4), 4);
        assert_eq!(
            g.get(&id(0)),
            Some(0),
            "a hit in the old generation comes back"
        );
        for n in 5..8 {
            g.put(id(n), n);
        }
        assert_eq!(g.get(&id(1)), None, "unused for two generations: gone");
        assert_eq!(g.get(&id(0)), Some(0), "used lately: kept");
        assert!(g.gens[0].len() + g.gens[1].len() <= 8);
        g.remove(&id(0));
        assert_eq!(g.get(&id(0)), None);
    }

    /// A referral's record is cached once its shipment is applied and forgotten when it is
    /// dropped, so that neither a chain walk nor a validation finds a dropped referral.
    #[test]
    fn referrals_enter_when_shipped_and_leave_when_removed() {
        let cache = ValidCache::new();
        let r = crate::hops::Rec {
            hop: Hop {
                referrer: PublicKey([9; 32]),
                created_at_ms: 7,
                community: None,
                parent: Some(id(1)),
            },
            offer: id(0),
            recipient: None,
            depth: 2,
            ups: crate::hops::Ups::NONE,
        };
        let fact = |id: &Id| cache.referral(id).map(|r| r.fact());
        assert_eq!(fact(&id(2)), None);
        cache.shipped_referrals(&[(id(2), r)]);
        assert_eq!(fact(&id(2)), Some(r.fact()));
        cache.remove(&id(2));
        assert_eq!(fact(&id(2)), None);
        cache.shipped_referrals(&[(id(2), r)]);
        cache.clear();
        assert_eq!(fact(&id(2)), None);
    }
}
