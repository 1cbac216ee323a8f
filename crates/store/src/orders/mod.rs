//! Which receipt of each (seller, order) counts: the smallest id. Stage 2 asks for every
//! receipt, so the answer must cost no tree read: as a sled key per order it cost a read and
//! a write per receipt (~20 % of a 64-attestation call in the ingest bench), and kept whole in
//! memory it cost 48 bytes per order and a read of every one at each open (~700 MB and 1.5 s
//! for a 10M-attestation store).
//!
//! So the counted receipts live in [`Run`] files under `<store>/orders/`, each sorted, with
//! a filter and a block index in memory (~1.4 bytes per order): a fresh receipt's order is
//! ruled out without reading a file, a known one costs a 4 KiB read per run that may hold it.
//! The changes since the last checkpoint are in memory (`recent`, journaled with their
//! shipments, see `journal`). Each checkpoint writes them as a new run, synced before the
//! checkpoint's batch names it in the run list ([`MANIFEST`]); once the batch is on disk, runs
//! that were merged are deleted, and opening deletes any file the list does not name (a
//! checkpoint cut short). Runs are merged size-tiered: [`FAN_IN`] runs of one size class make
//! one of the next, so a store holds a few runs per size class and each order is rewritten
//! about once per class.
//!
//! A lookup takes the smallest id any run holds for the order (runs are a set, not a stack,
//! so merges may pick any of them). Orders with more than one receipt (equivocation) also
//! keep their [`ORDER`] key, the evidence `Store::equivocations` lists.
//!
//! Before format 12, checkpoints packed the orders into [`ORDER_PACK`] values in the tree
//! (and before 11, each shipment wrote an [`ORDER_LOG`] run): such a store's records are read
//! into memory at open (`legacy`) and written as a run by the first checkpoint, which drops
//! them from the tree.

mod filter;
mod run;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};

use passalong_protocol::{Id, PublicKey};

use crate::cache::IdHasher;
use crate::keyspace::*;
use crate::StoreError;
use run::Run;

/// An order's key: the first 16 bytes of blake3(seller ‖ blake3(order)) (collisions among a
/// billion orders: ~2^-68).
pub(crate) type OrderKey = [u8; 16];

/// One record of a pack or run before format 12: order key, receipt id.
const RECORD: usize = 16 + 32;

/// The runs' directory in the store's.
pub(crate) const DIR: &str = "orders";

/// Runs merged into one when a size class holds this many.
const FAN_IN: usize = 4;

/// Orders of the smallest size class's largest run (a checkpoint's worth, about).
const SMALLEST: u64 = 1 << 16;

/// The tree's list of runs: the next run number, then (number, orders) per run, u64 BE each.
pub(crate) const MANIFEST: &[u8] = b"orders";

fn manifest_key() -> Vec<u8> {
    key(META, &[MANIFEST])
}

/// The size class of a run of `orders` orders.
fn class(orders: u64) -> u32 {
    let (mut c, mut cap) = (0, SMALLEST);
    while orders > cap {
        c += 1;
        cap = cap.saturating_mul(FAN_IN as u64);
    }
    c
}

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

/// Counted receipts by order.
pub(crate) struct Orders {
    dir: PathBuf,
    runs: Vec<Run>,
    /// The number of the next run.
    next: u64,
    /// Changes since the last checkpoint; they win over the runs.
    recent: HashMap<OrderKey, Id, BuildHasherDefault<IdHasher>>,
    /// A store before format 12: its records from the tree, sorted, one per order, until the
    /// next checkpoint writes them as a run.
    legacy: Vec<(OrderKey, Id)>,
}

/// What a checkpoint wrote of the orders (see [`Orders::write`]).
pub(crate) struct Written {
    /// Runs written, synced, and named in the checkpoint's batch.
    added: Vec<Run>,
    /// Numbers of the runs they replace.
    merged: Vec<u64>,
    next: u64,
}

impl Orders {
    /// The runs the tree names, opened (files it does not name are deleted: a checkpoint cut
    /// short wrote them), and the records of a store before format 12. The journal's records
    /// come next (see [`Orders::replay`]).
    pub fn load(tree: &sled::Tree, store: &Path) -> Result<Orders, StoreError> {
        let dir = store.join(DIR);
        let (next, listed) = match tree.get(manifest_key())? {
            None => (0, Vec::new()),
            Some(v) => {
                if v.len() < 8 || (v.len() - 8) % 16 != 0 {
                    return Err(StoreError::Record {
                        prefix: char::from(META),
                        detail: format!("the order run list is {} bytes long", v.len()),
                    });
                }
                let runs = v[8..]
                    .chunks_exact(16)
                    .map(|r| (u64_at(r, 0), u64_at(r, 8)))
                    .collect::<Vec<_>>();
                (u64_at(&v, 0), runs)
            }
        };
        remove_unlisted(&dir, &listed)?;
        let mut runs = Vec::with_capacity(listed.len());
        for (seq, orders) in listed {
            let run = match Run::open(&dir, seq) {
                Err(StoreError::Io(sled::Error::Io(e)))
                    if e.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Err(StoreError::Record {
                        prefix: char::from(ORDER_PACK),
                        detail: format!(
                            "order run {} is missing",
                            dir.join(run::file_name(seq)).display()
                        ),
                    })
                }
                r => r?,
            };
            if run.orders != orders {
                return Err(StoreError::Record {
                    prefix: char::from(ORDER_PACK),
                    detail: format!(
                        "order run {} holds {} orders, the store's list says {orders}",
                        dir.join(run::file_name(seq)).display(),
                        run.orders
                    ),
                });
            }
            runs.push(run);
        }
        Ok(Orders {
            dir,
            runs,
            next,
            recent: HashMap::default(),
            legacy: load_legacy(tree)?,
        })
    }

    /// Receipts' records from the journal, as opening replays it: the smallest id of an
    /// order counts, whichever came first (a record may hold several receipts of one order).
    pub fn replay(&mut self, records: Vec<(OrderKey, Id)>) -> Result<(), StoreError> {
        for (k, id) in records {
            if self.counted(&k)?.is_none_or(|c| id < c) {
                self.recent.insert(k, id);
            }
        }
        Ok(())
    }

    /// The receipt of order `k` that counts.
    pub fn counted(&self, k: &OrderKey) -> Result<Option<Id>, StoreError> {
        if let Some(id) = self.recent.get(k) {
            return Ok(Some(*id));
        }
        let mut min = self
            .legacy
            .binary_search_by(|(x, _)| x.cmp(k))
            .ok()
            .map(|i| self.legacy[i].1);
        for run in &self.runs {
            if let Some(id) = run.get(k)? {
                min = Some(min.map_or(id, |m| m.min(id)));
            }
        }
        Ok(min)
    }

    /// Committed changes: order `k`'s counted receipt is now `id` (smaller than before).
    pub fn commit(&mut self, changes: impl IntoIterator<Item = (OrderKey, Id)>) {
        self.recent.extend(changes);
    }

    /// Writes the changes since the last checkpoint (and a store's records from before
    /// format 12) as runs, merges runs where a size class is full, and adds the new run list
    /// to `batch` (a checkpoint's, which also drops the records of before format 12). The
    /// runs are synced; [`Orders::written`] once the batch is on disk.
    pub fn write(&self, tree: &sled::Tree, batch: &mut sled::Batch) -> Result<Written, StoreError> {
        let mut w = Written {
            added: Vec::new(),
            merged: Vec::new(),
            next: self.next,
        };
        if let Err(e) = self.write_into(tree, batch, &mut w) {
            // Not named by any checkpoint: removed now rather than at the next open.
            for run in w.added {
                run.remove();
            }
            return Err(e);
        }
        Ok(w)
    }

    fn write_into(
        &self,
        tree: &sled::Tree,
        batch: &mut sled::Batch,
        w: &mut Written,
    ) -> Result<(), StoreError> {
        if self.recent.is_empty() && self.legacy.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| StoreError::Io(sled::Error::Io(e)))?;
        if !self.legacy.is_empty() {
            let run = Run::write(
                &self.dir,
                w.next,
                self.legacy.len(),
                self.legacy.iter().map(|r| Ok(*r)),
            )?;
            w.next += 1;
            w.added.push(run);
            for kv in tree
                .scan_prefix([ORDER_PACK])
                .chain(tree.scan_prefix([ORDER_LOG]))
            {
                batch.remove(kv?.0);
            }
            batch.remove(key(META, &[b"packs"]));
        }
        if !self.recent.is_empty() {
            let mut recent: Vec<(OrderKey, Id)> =
                self.recent.iter().map(|(k, id)| (*k, *id)).collect();
            recent.sort_unstable();
            let run = Run::write(&self.dir, w.next, recent.len(), recent.into_iter().map(Ok))?;
            w.next += 1;
            w.added.push(run);
        }
        // Merge while a size class is full (a merge may fill the next one).
        loop {
            let live: Vec<&Run> = self
                .runs
                .iter()
                .filter(|r| !w.merged.contains(&r.seq))
                .chain(w.added.iter().filter(|r| !w.merged.contains(&r.seq)))
                .collect();
            let mut by_class: std::collections::BTreeMap<u32, Vec<&Run>> = Default::default();
            for r in live {
                by_class.entry(class(r.orders)).or_default().push(r);
            }
            let Some((_, full)) = by_class.into_iter().find(|(_, rs)| rs.len() >= FAN_IN) else {
                break;
            };
            let expected = full.iter().map(|r| r.orders as usize).sum();
            let seqs: Vec<u64> = full.iter().map(|r| r.seq).collect();
            let sources = full
                .iter()
                .map(|r| r.records())
                .collect::<Result<Vec<_>, _>>()?;
            let run = Run::write(&self.dir, w.next, expected, Merge::new(sources))?;
            w.next += 1;
            w.merged.extend(seqs);
            w.added.push(run);
        }
        let mut list = w.next.to_be_bytes().to_vec();
        for r in self
            .runs
            .iter()
            .chain(&w.added)
            .filter(|r| !w.merged.contains(&r.seq))
        {
            list.extend_from_slice(&r.seq.to_be_bytes());
            list.extend_from_slice(&r.orders.to_be_bytes());
        }
        batch.insert(manifest_key(), list);
        Ok(())
    }

    /// The batch of [`Orders::write`] is on disk: its runs replace those they merged, whose
    /// files go, and the changes they hold leave memory.
    pub fn written(&mut self, w: Written) {
        if w.next == self.next {
            return;
        }
        let (merged, kept): (Vec<Run>, Vec<Run>) = std::mem::take(&mut self.runs)
            .into_iter()
            .chain(w.added)
            .partition(|r| w.merged.contains(&r.seq));
        self.runs = kept;
        for r in merged {
            r.remove();
        }
        self.next = w.next;
        self.recent = HashMap::default();
        self.legacy = Vec::new();
    }

    /// Whether the store predates format 12 and its orders are still in the tree.
    pub fn in_tree(&self) -> bool {
        !self.legacy.is_empty()
    }

    /// Bytes of order state in memory (runs' filters and indexes, recent changes, and the
    /// records of a store before format 12).
    pub fn memory(&self) -> usize {
        self.runs.iter().map(Run::memory).sum::<usize>()
            + self.recent.capacity() * (16 + 32 + 8)
            + self.legacy.capacity() * RECORD
    }

    /// Runs on disk.
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

/// Deletes what `dir` holds besides the runs `listed` (a temporary file or a run written by
/// a checkpoint that did not complete, or merged by one that did).
fn remove_unlisted(dir: &Path, listed: &[(u64, u64)]) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Io(sled::Error::Io(e));
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let keep = run::seq_of(&name.to_string_lossy())
            .is_some_and(|seq| listed.iter().any(|(s, _)| *s == seq));
        if !keep {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
        }
    }
    Ok(())
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

/// Sorted runs merged into one sorted stream, the smallest id of each order.
struct Merge<I> {
    sources: Vec<I>,
    heads: Vec<Option<(OrderKey, Id)>>,
    started: bool,
    failed: bool,
}

impl<I: Iterator<Item = Result<(OrderKey, Id), StoreError>>> Merge<I> {
    fn new(sources: Vec<I>) -> Merge<I> {
        let heads = vec![None; sources.len()];
        Merge {
            sources,
            heads,
            started: false,
            failed: false,
        }
    }

    fn advance(&mut self, i: usize) -> Result<(), StoreError> {
        self.heads[i] = self.sources[i].next().transpose()?;
        Ok(())
    }
}

impl<I: Iterator<Item = Result<(OrderKey, Id), StoreError>>> Iterator for Merge<I> {
    type Item = Result<(OrderKey, Id), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if !self.started {
            self.started = true;
            for i in 0..self.sources.len() {
                if let Err(e) = self.advance(i) {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        let k = self.heads.iter().flatten().map(|(k, _)| *k).min()?;
        let mut best: Option<Id> = None;
        for i in 0..self.heads.len() {
            if let Some((hk, id)) = self.heads[i] {
                if hk == k {
                    best = Some(best.map_or(id, |b| b.min(id)));
                    if let Err(e) = self.advance(i) {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }
        best.map(|id| Ok((k, id)))
    }
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
        let mut v: Vec<String> = std::fs::read_dir(dir.join(DIR))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
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

    #[test]
    fn files_a_checkpoint_did_not_name_are_removed_and_a_missing_run_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let mut o = Orders::load(&db, dir.path()).unwrap();
        o.commit([(k(1), id(1))]);
        checkpoint(&mut o, &db);
        // A checkpoint cut short: its run written, its batch never applied.
        o.commit([(k(2), id(2))]);
        let mut batch = sled::Batch::default();
        let _lost = o.write(&db, &mut batch).unwrap();
        std::fs::write(dir.path().join(DIR).join("x.run.tmp"), b"partial").unwrap();
        assert_eq!(files(dir.path()).len(), 3);
        let back = Orders::load(&db, dir.path()).unwrap();
        assert_eq!(files(dir.path()), vec![run::file_name(0)]);
        assert_eq!(back.counted(&k(1)).unwrap(), Some(id(1)));
        assert_eq!(
            back.counted(&k(2)).unwrap(),
            None,
            "journaled, not in a run"
        );
        drop(back);
        std::fs::remove_file(dir.path().join(DIR).join(run::file_name(0))).unwrap();
        match Orders::load(&db, dir.path()) {
            Err(StoreError::Record { detail, .. }) => {
                assert!(detail.contains("missing"), "{detail}")
            }
            other => panic!("{:?}", other.err()),
        }
    }

    /// Many checkpoints of random changes: whatever merges happened, every order's counted
    /// receipt is the smallest committed, in memory and after reopening, and the runs stay few.
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
            assert!(o.runs() < FAN_IN, "round {round}: {} runs", o.runs());
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
    fn size_classes_grow_by_the_fan_in() {
        assert_eq!(class(0), 0);
        assert_eq!(class(SMALLEST), 0);
        assert_eq!(class(SMALLEST + 1), 1);
        assert_eq!(class(SMALLEST * FAN_IN as u64), 1);
        assert_eq!(class(SMALLEST * FAN_IN as u64 + 1), 2);
        assert_eq!(class(u64::MAX), class(u64::MAX - 1));
    }

    #[test]
    fn merging_takes_the_smallest_id_of_each_order() {
        let a = vec![(k(1), id(5)), (k(2), id(2))];
        let b = vec![(k(1), id(3)), (k(3), id(9))];
        let mut a: Vec<_> = a;
        a.sort_unstable();
        let mut b: Vec<_> = b;
        b.sort_unstable();
        let merged: Vec<_> = Merge::new(vec![a.into_iter().map(Ok), b.into_iter().map(Ok)])
            .map(Result::unwrap)
            .collect();
        let mut want = vec![(k(1), id(3)), (k(2), id(2)), (k(3), id(9))];
        want.sort_unstable();
        assert_eq!(merged, want);
    }

    #[test]
    fn order_keys_differ_by_seller_and_order() {
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        assert_ne!(order_key(&a, &[0; 32]), order_key(&b, &[0; 32]));
        assert_ne!(order_key(&a, &[0; 32]), order_key(&a, &[1; 32]));
        assert_eq!(order_key(&a, &[3; 32]), order_key(&a, &[3; 32]));
    }
}
