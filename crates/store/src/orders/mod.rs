//! Which receipt of each (seller, order) counts: the smallest id. Stage 2 asks for every
//! receipt, so the answer must cost no tree read: as a sled key per order it cost a read and
//! a write per receipt (~20 % of a 64-attestation call in the ingest bench), and kept whole in
//! memory it cost 48 bytes per order and a read of every one at each open (~700 MB and 1.5 s
//! for a 10M-attestation store).
//!
//! So the counted receipts live in a set of sorted runs (`runs`, under `<store>/orders/`),
//! with the changes since the last checkpoint in memory (`recent`, journaled with their
//! shipments, see `journal`): each checkpoint writes them as a run. A newer run's receipt of
//! an order is never larger than an older one's (a change only ever lowers it), so the newest
//! run holding an order has the one that counts. Orders with more than one receipt
//! (equivocation) also keep their [`ORDER`] key, the evidence `Store::equivocations` lists.
//!
//! Before format 12, checkpoints packed the orders into [`ORDER_PACK`] values in the tree
//! (and before 11, each shipment wrote an [`ORDER_LOG`] run): such a store's records are read
//! into memory at open (`legacy`) and written as a run by the first checkpoint, which drops
//! them from the tree.

use std::path::Path;

use passalong_protocol::{Id, PublicKey};

use crate::keyspace::*;
use crate::runs::{Found, Key, Layers, Written};
use crate::StoreError;

/// An order's key: the first 16 bytes of blake3(seller ‖ blake3(order)) (collisions among a
/// billion orders: ~2^-68).
pub(crate) type OrderKey = Key;

/// One record of a pack or run before format 12: order key, receipt id.
const RECORD: usize = 16 + 32;

/// The set of runs's name: its directory in the store's, and its list's key.
const RUNS: &str = "orders";

/// The key of the order `order_hash` (blake3 of the order id) of `seller`.
pub(crate) fn order_key(seller: &PublicKey, order_hash: &[u8; 32]) -> OrderKey {
    let mut h = blake3::Hasher::new();
    h.update(&seller.0);
    h.update(order_hash);
    let mut k = [0u8; 16];
    k.copy_from_slice(&h.finalize().as_bytes()[..16]);
    k
}

/// `records` as one [`ORDER_PACK`] value under the first one's receipt id (empty: none), as
/// stores before format 12 wrote them (upgrades of older stores still do, and the first
/// checkpoint moves them into a run).
pub(crate) fn pack_of(records: &[(OrderKey, Id)]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, first) = records.first()?;
    let mut v = Vec::with_capacity(records.len() * RECORD);
    for (k, id) in records {
        v.extend_from_slice(k);
        v.extend_from_slice(&id.0);
    }
    Some((key(ORDER_PACK, &[&first.0]), v))
}

/// Counted receipts by order: the changes since the last checkpoint, over the runs (and a
/// store's records from before format 12).
pub(crate) struct Orders(Layers<Id, 32>);

impl Orders {
    /// The runs the tree names, opened, and the records of a store before format 12. The
    /// journal's records come next (see [`Orders::replay`]).
    pub fn load(tree: &sled::Tree, store: &Path) -> Result<Orders, StoreError> {
        let legacy = load_legacy(tree)?
            .into_iter()
            .map(|(k, id)| (k, id.0))
            .collect();
        Ok(Orders(Layers::load(tree, store, RUNS, legacy)?))
    }

    /// Receipts' records from the journal, as opening replays it: the smallest id of an
    /// order counts, whichever came first (a record may hold several receipts of one order).
    pub fn replay(&mut self, records: Vec<(OrderKey, Id)>) -> Result<(), StoreError> {
        for (k, id) in records {
            if self.counted(&k)?.is_none_or(|c| id < c) {
                self.0.set(k, id);
            }
        }
        Ok(())
    }

    /// The receipt of order `k` that counts.
    pub fn counted(&self, k: &OrderKey) -> Result<Option<Id>, StoreError> {
        Ok(self.0.get(k)?.map(|f| match f {
            Found::Recent(id) => *id,
            Found::Stored(id) => Id(id),
        }))
    }

    /// Committed changes: order `k`'s counted receipt is now `id` (smaller than before).
    pub fn commit(&mut self, changes: impl IntoIterator<Item = (OrderKey, Id)>) {
        for (k, id) in changes {
            self.0.set(k, id);
        }
    }

    /// Writes the changes since the last checkpoint (and a store's records from before
    /// format 12, as the oldest run) as runs, with the new run list, into `batch` (a
    /// checkpoint's, which also drops the records of before format 12). The runs are synced;
    /// [`Orders::written`] once the batch is on disk.
    pub fn write(
        &self,
        tree: &sled::Tree,
        batch: &mut sled::Batch,
    ) -> Result<Written<32>, StoreError> {
        let written = self.0.write(|id| id.0, batch)?;
        if self.0.in_tree() {
            for kv in tree
                .scan_prefix([ORDER_PACK])
                .chain(tree.scan_prefix([ORDER_LOG]))
            {
                batch.remove(kv?.0);
            }
            batch.remove(key(META, &[b"packs"]));
        }
        Ok(written)
    }

    /// The batch of [`Orders::write`] is on disk: the changes it holds leave memory.
    pub fn written(&mut self, w: Written<32>) {
        self.0.written(w);
    }

    /// Whether the store predates format 12 and its orders are still in the tree.
    pub fn in_tree(&self) -> bool {
        self.0.in_tree()
    }

    /// Bytes of order state in memory.
    pub fn memory(&self) -> usize {
        self.0.memory()
    }

    /// Runs on disk.
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.0.count()
    }
}

/// The orders a store before format 12 keeps in its tree (packs, and runs before format
/// 11): the smallest id of each.
fn load_legacy(tree: &sled::Tree) -> Result<Vec<(OrderKey, Id)>, StoreError> {
    let mut all: Vec<(OrderKey, Id)> = Vec::new();
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
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn k(i: u16) -> OrderKey {
        let mut k = [0u8; 16];
        k.copy_from_slice(&blake3::hash(&i.to_le_bytes()).as_bytes()[..16]);
        k
    }

    fn id(i: u8) -> Id {
        Id([i; 32])
    }

    /// A checkpoint, as far as the orders go.
    fn checkpoint(o: &mut Orders, db: &sled::Db) {
        let mut batch = sled::Batch::default();
        let w = o.write(db, &mut batch).unwrap();
        db.apply_batch(batch).unwrap();
        o.written(w);
    }

    fn files(dir: &Path) -> Vec<String> {
        crate::runs::files_of(dir, RUNS)
    }

    #[test]
    fn the_smallest_id_counts_across_checkpoints_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let mut o = Orders::load(&db, dir.path()).unwrap();
        o.commit([(k(3), id(30)), (k(1), id(10))]);
        checkpoint(&mut o, &db);
        assert_eq!(o.runs(), 1);
        o.commit([(k(3), id(2)), (k(2), id(20))]);
        assert_eq!(o.counted(&k(3)).unwrap(), Some(id(2)));
        checkpoint(&mut o, &db);
        assert_eq!(o.runs(), 2);
        for o in [&o, &Orders::load(&db, dir.path()).unwrap()] {
            assert_eq!(o.counted(&k(3)).unwrap(), Some(id(2)));
            assert_eq!(o.counted(&k(2)).unwrap(), Some(id(20)));
            assert_eq!(o.counted(&k(1)).unwrap(), Some(id(10)));
            assert_eq!(o.counted(&k(4)).unwrap(), None);
        }
        // The journal replays over the runs: only a smaller id changes an order.
        let mut o = Orders::load(&db, dir.path()).unwrap();
        o.replay(vec![(k(1), id(11)), (k(4), id(5)), (k(4), id(4))])
            .unwrap();
        assert_eq!(o.counted(&k(1)).unwrap(), Some(id(10)));
        assert_eq!(o.counted(&k(4)).unwrap(), Some(id(4)));
        // A checkpoint with nothing new writes nothing.
        let before = files(dir.path());
        let mut o2 = Orders::load(&db, dir.path()).unwrap();
        checkpoint(&mut o2, &db);
        assert_eq!(files(dir.path()), before);
    }

    /// Many checkpoints of random changes: whatever merges happened, every order's counted
    /// receipt is the smallest committed, in memory and after reopening, and the runs stay few
    /// (fewer than the fan-in, all of one size class here).
    #[test]
    fn merged_runs_agree_with_a_map() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let mut o = Orders::load(&db, dir.path()).unwrap();
        let mut want: BTreeMap<OrderKey, Id> = BTreeMap::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..40u16 {
            let mut changes = Vec::new();
            for _ in 0..(1 + round * 7) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = k((x % 600) as u16);
                let new = Id([(x >> 20) as u8; 32]);
                if want.get(&key).is_none_or(|c| new < *c) {
                    want.insert(key, new);
                    changes.push((key, new));
                }
            }
            o.commit(changes);
            checkpoint(&mut o, &db);
            assert!(o.runs() < 4, "round {round}: {} runs", o.runs());
            assert_eq!(files(dir.path()).len(), o.runs(), "round {round}");
        }
        let back = Orders::load(&db, dir.path()).unwrap();
        for i in 0..600 {
            assert_eq!(o.counted(&k(i)).unwrap(), want.get(&k(i)).copied());
            assert_eq!(back.counted(&k(i)).unwrap(), want.get(&k(i)).copied());
        }
    }

    /// A run as a store before format 11 wrote it into the tree.
    fn tree_run(records: &[(OrderKey, Id)]) -> (Vec<u8>, Vec<u8>) {
        let (_, v) = pack_of(records).unwrap();
        (key(ORDER_LOG, &[&records[0].1 .0]), v)
    }

    #[test]
    fn orders_in_the_tree_move_to_a_run_at_the_first_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        for records in [vec![(k(1), id(9)), (k(2), id(5))], vec![(k(1), id(4))]] {
            let (rk, rv) = tree_run(&records);
            db.insert(rk, rv).unwrap();
        }
        let (pk, pv) = pack_of(&[(k(5), id(50))]).unwrap();
        db.insert(key(ORDER_PACK, &[&0u64.to_be_bytes()]), pv)
            .unwrap();
        drop(pk);
        db.insert(key(META, &[b"packs"]), &1u64.to_be_bytes())
            .unwrap();
        let mut o = Orders::load(&db, dir.path()).unwrap();
        assert!(o.in_tree());
        o.replay(vec![(k(1), id(7)), (k(3), id(1)), (k(3), id(2))])
            .unwrap();
        let check = |o: &Orders| {
            assert_eq!(o.counted(&k(1)).unwrap(), Some(id(4)));
            assert_eq!(o.counted(&k(2)).unwrap(), Some(id(5)));
            assert_eq!(o.counted(&k(3)).unwrap(), Some(id(1)));
            assert_eq!(o.counted(&k(5)).unwrap(), Some(id(50)));
        };
        check(&o);
        checkpoint(&mut o, &db);
        assert!(!o.in_tree());
        check(&o);
        assert_eq!(db.scan_prefix([ORDER_LOG]).count(), 0);
        assert_eq!(db.scan_prefix([ORDER_PACK]).count(), 0);
        assert_eq!(db.get(key(META, &[b"packs"])).unwrap(), None);
        let back = Orders::load(&db, dir.path()).unwrap();
        assert!(!back.in_tree());
        check(&back);
        // Damaged records in the tree are an error.
        let (rk, rv) = tree_run(&[(k(8), id(8))]);
        db.insert(rk, &rv[..RECORD - 1]).unwrap();
        assert!(matches!(
            Orders::load(&db, dir.path()),
            Err(StoreError::Record { prefix: 'Q', .. })
        ));
    }

    #[test]
    fn order_keys_differ_by_seller_and_order() {
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        assert_ne!(order_key(&a, &[0; 32]), order_key(&b, &[0; 32]));
        assert_ne!(order_key(&a, &[0; 32]), order_key(&a, &[1; 32]));
        assert_eq!(order_key(&a, &[3; 32]), order_key(&a, &[3; 32]));
    }
}
