//! Which receipt of each (seller, order) counts: the smallest id. Stage 2 asks for every
//! receipt, so the answer is kept in memory: as a sled key per order it cost a read and a
//! write per receipt (~20 % of a 64-attestation call in the ingest bench).
//!
//! On disk, each shipment's journal record (see `journal`) holds (order key ‖ receipt id) per
//! receipt, and checkpoints pack those of their interval into numbered [`ORDER_PACK`] values
//! of 4 KiB ([`Orders::pack`]): opening a store of a million receipts reads ~12,000 values in
//! key order, then the journal, keeping the smallest id per order. (Before format 11, each shipment wrote an
//! [`ORDER_LOG`] run into the tree: opening reads them too, and the next checkpoint packs them.) Orders with more than one receipt (equivocation) also keep their
//! [`ORDER`] key, the evidence `Store::equivocations` lists. In memory: 48 bytes per order,
//! in a sorted vector, with the latest changes in a hash map merged into it now and then.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use passalong_protocol::{Id, PublicKey};

use crate::cache::IdHasher;
use crate::keyspace::*;
use crate::StoreError;

/// An order's key: the first 16 bytes of blake3(seller ‖ blake3(order)) (collisions among a
/// billion orders: ~2^-68).
pub(crate) type OrderKey = [u8; 16];

/// One record of a run: order key, receipt id.
const RECORD: usize = 16 + 32;

/// The key of the order `order_hash` (blake3 of the order id) of `seller`.
pub(crate) fn order_key(seller: &PublicKey, order_hash: &[u8; 32]) -> OrderKey {
    let mut h = blake3::Hasher::new();
    h.update(&seller.0);
    h.update(order_hash);
    let mut k = [0u8; 16];
    k.copy_from_slice(&h.finalize().as_bytes()[..16]);
    k
}

/// `records` as one [`ORDER_PACK`] value under the first one's receipt id (empty: none).
pub(crate) fn pack_of(records: &[(OrderKey, Id)]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, first) = records.first()?;
    let mut v = Vec::with_capacity(records.len() * RECORD);
    for (k, id) in records {
        v.extend_from_slice(k);
        v.extend_from_slice(&id.0);
    }
    Some((key(ORDER_PACK, &[&first.0]), v))
}

/// Counted receipts by order.
#[derive(Default)]
pub(crate) struct Orders {
    /// Sorted by key, one entry per order.
    sorted: Vec<(OrderKey, Id)>,
    /// Changes since the last merge; they win over `sorted`.
    recent: HashMap<OrderKey, Id, BuildHasherDefault<IdHasher>>,
    /// Every receipt's record since the last checkpoint, for it to pack.
    unpacked: Vec<(OrderKey, Id)>,
}

/// `recent` is merged into `sorted` when it holds this many orders, or an eighth of
/// `sorted` if more (a merge costs a pass over `sorted`).
const MERGE_AT: usize = 1 << 16;

impl Orders {
    /// Reads every pack (and run, before format 11); the journal's records come next (see
    /// [`Orders::replay`]).
    pub fn load(tree: &sled::Tree) -> Result<Orders, StoreError> {
        // Sized once from the packs' count (each holds up to PACK records).
        let packs = match tree.get(next_pack_key())? {
            Some(v) => u64_at(&v, 0) as usize,
            None => 0,
        };
        let mut all: Vec<(OrderKey, Id)> = Vec::with_capacity(packs.saturating_mul(PACK));
        for kv in tree
            .scan_prefix([ORDER_PACK])
            .chain(tree.scan_prefix([ORDER_LOG]))
        {
            let (k, v) = kv?;
            if v.len() % RECORD != 0 {
                return Err(StoreError::Record {
                    prefix: ORDER_LOG as char,
                    detail: format!("run {} is {} bytes long", hex::encode(&k), v.len()),
                });
            }
            all.extend(v.chunks_exact(RECORD).map(|r| {
                let mut k = [0u8; 16];
                k.copy_from_slice(&r[..16]);
                (k, Id(id_at(r, 16)))
            }));
        }
        // The smallest id of each order comes first.
        all.sort_unstable();
        all.dedup_by_key(|(k, _)| *k);
        all.shrink_to_fit();
        Ok(Orders {
            sorted: all,
            recent: HashMap::default(),
            unpacked: Vec::new(),
        })
    }

    /// Receipts' records from the journal, as opening replays it: the smallest id of an
    /// order counts, whichever came first (a record may hold several receipts of one order).
    pub fn replay(&mut self, records: Vec<(OrderKey, Id)>) {
        for (k, id) in &records {
            if self.counted(k).is_none_or(|c| *id < c) {
                self.recent.insert(*k, *id);
            }
        }
        if self.recent.len() >= MERGE_AT.max(self.sorted.len() / 8) {
            self.merge();
        }
        self.logged(records);
    }

    /// Receipts' records a shipment journaled, to pack at the next checkpoint.
    pub fn logged(&mut self, records: Vec<(OrderKey, Id)>) {
        if self.unpacked.is_empty() {
            self.unpacked = records;
        } else {
            self.unpacked.extend(records);
        }
    }

    /// The receipt of order `k` that counts.
    pub fn counted(&self, k: &OrderKey) -> Option<Id> {
        if let Some(id) = self.recent.get(k) {
            return Some(*id);
        }
        let i = self.sorted.binary_search_by(|(x, _)| x.cmp(k)).ok()?;
        Some(self.sorted[i].1)
    }

    /// Committed changes: order `k`'s counted receipt is now `id`.
    pub fn commit(&mut self, changes: impl IntoIterator<Item = (OrderKey, Id)>) {
        self.recent.extend(changes);
        if self.recent.len() >= MERGE_AT.max(self.sorted.len() / 8) {
            self.merge();
        }
    }

    /// Orders known.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sorted.len()
            + self
                .recent
                .keys()
                .filter(|k| self.sorted.binary_search_by(|(x, _)| x.cmp(k)).is_err())
                .count()
    }

    /// Moves `recent` into `sorted`, in place: an order `sorted` has takes its new receipt
    /// where it is, and new orders are merged in from the back, so that no second vector of
    /// every order is allocated and copied at each merge (48 bytes per order: ~430 MB for the
    /// 9M orders of a 10M store).
    fn merge(&mut self) {
        let mut new: Vec<(OrderKey, Id)> = Vec::with_capacity(self.recent.len());
        for (k, id) in self.recent.drain() {
            match self.sorted.binary_search_by(|(x, _)| x.cmp(&k)) {
                Ok(i) => self.sorted[i].1 = id,
                Err(_) => new.push((k, id)),
            }
        }
        if new.is_empty() {
            return;
        }
        new.sort_unstable();
        let old_len = self.sorted.len();
        self.sorted
            .resize(old_len + new.len(), ([0; 16], Id([0; 32])));
        // Fill from the back: the larger of the two tails goes last.
        let (mut a, mut b, mut out) = (old_len, new.len(), old_len + new.len());
        while b > 0 {
            out -= 1;
            if a > 0 && self.sorted[a - 1].0 > new[b - 1].0 {
                a -= 1;
                self.sorted[out] = self.sorted[a];
            } else {
                b -= 1;
                self.sorted[out] = new[b];
            }
        }
    }
}

/// Records per pack: 4 KiB values. sled writes a page over 128 KiB (a leaf holds up to 17
/// values) to a file of its own, and such files of superseded pages stayed on disk: 1 MiB
/// packs left ~600 MB of them in a million-attestation store.
const PACK: usize = 85;

/// The number of the next pack.
fn next_pack_key() -> Vec<u8> {
    key(META, &[b"packs"])
}

impl Orders {
    /// Packs the records since the last checkpoint (and any run of a store before format 11)
    /// into [`ORDER_PACK`] values of [`PACK`] records, numbered in order, in `batch` (a
    /// checkpoint's); [`Orders::packed`] once it is on disk.
    pub fn pack(&self, tree: &sled::Tree, batch: &mut sled::Batch) -> Result<(), StoreError> {
        let mut next = match tree.get(next_pack_key())? {
            Some(v) => u64_at(&v, 0),
            None => 0,
        };
        let mut put = |records: &[u8], batch: &mut sled::Batch| {
            batch.insert(key(ORDER_PACK, &[&next.to_be_bytes()]), records);
            next += 1;
        };
        let mut buf: Vec<u8> = Vec::with_capacity(PACK * RECORD);
        for kv in tree.scan_prefix([ORDER_LOG]) {
            let (k, v) = kv?;
            batch.remove(k);
            buf.extend_from_slice(&v);
        }
        for chunk in buf.chunks(PACK * RECORD) {
            put(chunk, batch);
        }
        let mut pack = Vec::with_capacity(PACK * RECORD);
        for records in self.unpacked.chunks(PACK) {
            pack.clear();
            for (k, id) in records {
                pack.extend_from_slice(k);
                pack.extend_from_slice(&id.0);
            }
            put(&pack, batch);
        }
        batch.insert(next_pack_key(), &next.to_be_bytes());
        Ok(())
    }

    /// The batch of [`Orders::pack`] is on disk.
    pub fn packed(&mut self) {
        self.unpacked = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u8) -> OrderKey {
        [i; 16]
    }

    #[test]
    fn recent_changes_win_and_survive_merges() {
        let mut o = Orders::default();
        o.commit([(k(3), Id([30; 32])), (k(1), Id([10; 32]))]);
        o.merge();
        assert_eq!(o.sorted, vec![(k(1), Id([10; 32])), (k(3), Id([30; 32]))]);
        o.commit([(k(3), Id([2; 32])), (k(2), Id([20; 32]))]);
        assert_eq!(o.counted(&k(3)), Some(Id([2; 32])));
        assert_eq!(o.len(), 3);
        o.merge();
        assert!(o.recent.is_empty());
        assert_eq!(o.counted(&k(3)), Some(Id([2; 32])));
        assert_eq!(o.counted(&k(2)), Some(Id([20; 32])));
        assert_eq!(o.counted(&k(1)), Some(Id([10; 32])));
        assert_eq!(o.counted(&k(4)), None);
        assert!(o.sorted.windows(2).all(|w| w[0].0 < w[1].0));
    }

    /// A run as a store before format 11 wrote it.
    fn run(records: &[(OrderKey, Id)]) -> (Vec<u8>, Vec<u8>) {
        let mut v = Vec::new();
        for (k, id) in records {
            v.extend_from_slice(k);
            v.extend_from_slice(&id.0);
        }
        (key(ORDER_LOG, &[&records[0].1 .0]), v)
    }

    #[test]
    fn records_load_back_to_the_smallest_id_per_order_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        for records in [
            vec![(k(1), Id([9; 32])), (k(2), Id([5; 32]))],
            vec![(k(1), Id([4; 32]))],
        ] {
            let (rk, rv) = run(&records);
            db.insert(rk, rv).unwrap();
        }
        let mut o = Orders::load(&db).unwrap();
        // The journal's records replay over the runs; within one record too, the smallest id
        // of an order counts, whichever comes first.
        o.replay(vec![
            (k(1), Id([7; 32])),
            (k(3), Id([1; 32])),
            (k(3), Id([2; 32])),
        ]);
        assert_eq!(o.counted(&k(1)), Some(Id([4; 32])));
        assert_eq!(o.counted(&k(2)), Some(Id([5; 32])));
        assert_eq!(o.counted(&k(3)), Some(Id([1; 32])));
        assert_eq!(o.len(), 3);
        // Packed, they load the same, and what is journaled next adds to the packs.
        let mut batch = sled::Batch::default();
        o.pack(&db, &mut batch).unwrap();
        db.apply_batch(batch).unwrap();
        o.packed();
        assert_eq!(db.scan_prefix([ORDER_LOG]).count(), 0);
        assert_eq!(
            db.scan_prefix([ORDER_PACK]).count(),
            2,
            "the runs, then the journal's"
        );
        let mut back = Orders::load(&db).unwrap();
        assert_eq!(back.counted(&k(1)), Some(Id([4; 32])));
        assert_eq!(back.counted(&k(3)), Some(Id([1; 32])));
        back.replay(vec![(k(3), Id([0; 32])), (k(6), Id([6; 32]))]);
        assert_eq!(back.counted(&k(3)), Some(Id([0; 32])));
        assert_eq!(back.counted(&k(6)), Some(Id([6; 32])));
        assert_eq!(back.len(), 4);
        let (rk, rv) = run(&[(k(5), Id([8; 32]))]);
        db.insert(rk, &rv[..RECORD - 1]).unwrap();
        assert!(matches!(
            Orders::load(&db),
            Err(StoreError::Record { prefix: 'Q', .. })
        ));
    }

    /// Merging in place agrees with a map of the same changes, whatever the mix of new and
    /// known orders.
    #[test]
    fn merging_in_place_agrees_with_a_map() {
        let mut o = Orders::default();
        let mut want = std::collections::BTreeMap::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..40u8 {
            let mut changes = Vec::new();
            for _ in 0..(1 + round as usize * 7) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut k = [0u8; 16];
                k[..2].copy_from_slice(&((x % 600) as u16).to_be_bytes());
                let id = Id([(x >> 20) as u8; 32]);
                changes.push((k, id));
                want.insert(k, id);
            }
            o.commit(changes);
            o.merge();
            assert!(o.recent.is_empty());
            assert!(
                o.sorted.windows(2).all(|w| w[0].0 < w[1].0),
                "round {round}"
            );
            assert_eq!(
                o.sorted,
                want.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn order_keys_differ_by_seller_and_order() {
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        assert_ne!(order_key(&a, &[0; 32]), order_key(&b, &[0; 32]));
        assert_ne!(order_key(&a, &[0; 32]), order_key(&a, &[1; 32]));
        assert_eq!(order_key(&a, &[3; 32]), order_key(&a, &[3; 32]));
    }
}
