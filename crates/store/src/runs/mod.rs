//! Sorted runs on disk for what the store must look up on every ingest but cannot keep whole
//! in memory nor afford as sled keys (each sled read of a cold region decodes a leaf, and a
//! 10M-attestation tree is far larger than its cache): the receipts' orders (`orders`), the
//! referrals' hop records (`hops`), the valid entries (`valid`); and, as a set of records
//! rather than a map, the market index (`market`, see [`Runs::load_records`]).
//!
//! A set keeps (16-byte key, `V`-byte value) records in [`Run`] files under `<store>/<name>/`,
//! each sorted and never changed, with a filter and a block index in memory (~1.4 bytes per
//! key): a key no run holds costs no read, one that a run may hold a 4 KiB read. The owner
//! keeps the changes since the last checkpoint in memory (journaled with their shipments).
//! Each checkpoint writes them as a new run, synced before the checkpoint's batch names it in
//! the set's list ([`META`] `<name>`); once the batch is on disk, runs that were merged are
//! deleted, and opening deletes any file the list does not name (a checkpoint cut short).
//!
//! The newest run holding a key wins. Runs merge size-tiered: when the [`FAN_IN`] newest runs
//! are of one size class, they become one run of the next, so a set holds a few runs per class
//! and each record is rewritten about once per class. Only the newest runs merge, so the list
//! stays in age order.

mod filter;
mod run;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};

use crate::cache::IdHasher;
use crate::keyspace::*;
use crate::StoreError;
pub(crate) use run::{Run, BLOCK};

/// A record's key: 16 bytes of a blake3 hash (collisions among a billion keys: ~2^-68).
pub(crate) type Key = [u8; 16];

/// Runs merged into one when the newest of one size class are this many.
const FAN_IN: usize = 4;

/// Keys of the smallest size class's largest run (a checkpoint's worth, about).
const SMALLEST: u64 = 1 << 16;

/// The size class of a run of `len` records.
fn class(len: u64) -> u32 {
    let (mut c, mut cap) = (0, SMALLEST);
    while len > cap {
        c += 1;
        cap = cap.saturating_mul(FAN_IN as u64);
    }
    c
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(sled::Error::Io(e))
}

/// One set of runs.
pub(crate) struct Runs<const V: usize> {
    /// The set's name: its directory and its list's key.
    name: &'static str,
    dir: PathBuf,
    /// Oldest first.
    runs: Vec<Run<V>>,
    /// The number of the next run.
    next: u64,
    /// Records are sorted by key and value, and a key may have several (see
    /// [`Runs::load_records`]); otherwise by key, one per key.
    whole: bool,
}

/// What a checkpoint wrote of a set (see [`Runs::write`]).
pub(crate) struct Written<const V: usize> {
    /// Runs written, synced, and named in the checkpoint's batch, oldest first.
    added: Vec<Run<V>>,
    /// Numbers of the runs they replace.
    merged: Vec<u64>,
    next: u64,
}

impl<const V: usize> Runs<V> {
    /// The list's key in the tree: the next run number, then (number, records) per run, oldest
    /// first, u64 BE each.
    fn list_key(&self) -> Vec<u8> {
        key(META, &[self.name.as_bytes()])
    }

    /// The runs of set `name` the tree lists, opened (files it does not list are deleted: a
    /// checkpoint cut short wrote them).
    pub fn load(
        tree: &sled::Tree,
        store: &Path,
        name: &'static str,
    ) -> Result<Runs<V>, StoreError> {
        let dir = store.join(name);
        let mut set = Runs {
            name,
            dir,
            runs: Vec::new(),
            next: 0,
            whole: false,
        };
        let listed = match tree.get(set.list_key())? {
            None => Vec::new(),
            Some(v) => {
                if v.len() < 8 || (v.len() - 8) % 16 != 0 {
                    return Err(StoreError::Record {
                        prefix: char::from(META),
                        detail: format!("the list of {name} runs is {} bytes long", v.len()),
                    });
                }
                set.next = u64_at(&v, 0);
                v[8..]
                    .chunks_exact(16)
                    .map(|r| (u64_at(r, 0), u64_at(r, 8)))
                    .collect::<Vec<_>>()
            }
        };
        remove_unlisted(&set.dir, &listed)?;
        for (seq, len) in listed {
            let path = set.dir.join(run::file_name(seq));
            let run = match Run::open(&set.dir, seq) {
                Err(StoreError::Io(sled::Error::Io(e)))
                    if e.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Err(StoreError::Record {
                        prefix: char::from(META),
                        detail: format!("run {} is missing", path.display()),
                    })
                }
                r => r?,
            };
            if run.len != len {
                return Err(StoreError::Record {
                    prefix: char::from(META),
                    detail: format!(
                        "run {} holds {} records, the store's list says {len}",
                        path.display(),
                        run.len
                    ),
                });
            }
            set.runs.push(run);
        }
        Ok(set)
    }

    /// The runs of set `name` whose records are sorted whole (key, then value): a set of
    /// records rather than a map, where a key may have several values and merging keeps each
    /// distinct record once. Read by position ([`Run::position`]), not by key.
    pub fn load_records(
        tree: &sled::Tree,
        store: &Path,
        name: &'static str,
    ) -> Result<Runs<V>, StoreError> {
        Ok(Runs {
            whole: true,
            ..Runs::load(tree, store, name)?
        })
    }

    /// The keys a run of `records` sizes its filter for: none for a set read by position.
    fn filter_keys(&self, records: usize) -> usize {
        if self.whole {
            0
        } else {
            records
        }
    }

    /// The runs, oldest first.
    pub fn runs(&self) -> &[Run<V>] {
        &self.runs
    }

    /// The value of `k` in the newest run that holds it.
    pub fn get(&self, k: &Key) -> Result<Option<[u8; V]>, StoreError> {
        for run in self.runs.iter().rev() {
            if let Some(v) = run.get(k)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Writes `fresh` (sorted by key, one record per key; each a run, oldest first) as runs,
    /// merges the newest runs while they fill a size class, and adds the new list to `batch`
    /// (a checkpoint's). The runs are synced; [`Runs::written`] once the batch is on disk. On
    /// an error, what it wrote is removed.
    pub fn write(
        &self,
        fresh: &[&[(Key, [u8; V])]],
        batch: &mut sled::Batch,
    ) -> Result<Written<V>, StoreError> {
        let mut w = Written {
            added: Vec::new(),
            merged: Vec::new(),
            next: self.next,
        };
        if let Err(e) = self.write_into(fresh, batch, &mut w) {
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
        fresh: &[&[(Key, [u8; V])]],
        batch: &mut sled::Batch,
        w: &mut Written<V>,
    ) -> Result<(), StoreError> {
        let fresh: Vec<_> = fresh.iter().filter(|f| !f.is_empty()).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        for records in fresh {
            let run = Run::write(
                &self.dir,
                w.next,
                self.filter_keys(records.len()),
                records.iter().copied().map(Ok),
            )?;
            w.next += 1;
            w.added.push(run);
        }
        loop {
            let live: Vec<&Run<V>> = self
                .runs
                .iter()
                .chain(&w.added)
                .filter(|r| !w.merged.contains(&r.seq))
                .collect();
            let Some(newest) = live.last() else { break };
            let c = class(newest.len);
            let tail = live.iter().rev().take_while(|r| class(r.len) == c).count();
            if tail < FAN_IN {
                break;
            }
            let full = &live[live.len() - FAN_IN..];
            let expected = self.filter_keys(full.iter().map(|r| r.len as usize).sum());
            let seqs: Vec<u64> = full.iter().map(|r| r.seq).collect();
            // Newest first: the first source holding a key wins.
            let sources = full
                .iter()
                .rev()
                .map(|r| r.records())
                .collect::<Result<Vec<_>, _>>()?;
            let run = Run::write(&self.dir, w.next, expected, Merge::new(sources, self.whole))?;
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
            list.extend_from_slice(&r.len.to_be_bytes());
        }
        batch.insert(self.list_key(), list);
        Ok(())
    }

    /// The batch of [`Runs::write`] is on disk: its runs replace those they merged, whose
    /// files go.
    pub fn written(&mut self, w: Written<V>) {
        if w.next == self.next {
            return;
        }
        let (merged, kept): (Vec<Run<V>>, Vec<Run<V>>) = std::mem::take(&mut self.runs)
            .into_iter()
            .chain(w.added)
            .partition(|r| w.merged.contains(&r.seq));
        self.runs = kept;
        for r in merged {
            r.remove();
        }
        self.next = w.next;
    }

    /// Every key's newest record, in key order (reads every run).
    pub fn records(&self) -> impl Iterator<Item = Result<(Key, [u8; V]), StoreError>> + '_ {
        // Newest first: the first source holding a key wins.
        let sources: Result<Vec<_>, _> = self.runs.iter().rev().map(Run::records).collect();
        let (sources, failed) = match sources {
            Ok(s) => (s, None),
            Err(e) => (Vec::new(), Some(Err(e))),
        };
        failed.into_iter().chain(Merge::new(sources, self.whole))
    }

    /// Deletes every run's file (the set is no longer named by a checkpoint).
    pub fn remove(self) {
        for run in self.runs {
            run.remove();
        }
    }

    /// Bytes the runs keep in memory (filters and block indexes).
    pub fn memory(&self) -> usize {
        self.runs.iter().map(Run::memory).sum()
    }

    /// Runs on disk.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.runs.len()
    }
}

/// A set of runs with what lies above it: the changes since the last checkpoint in memory
/// (journaled with their shipments; they win over the runs), and an older store's records read
/// from its tree, until the first checkpoint writes them as the oldest run. The owner says
/// what a change is (`T`) and how it is stored (`V` bytes).
pub(crate) struct Layers<T, const V: usize> {
    runs: Runs<V>,
    recent: HashMap<Key, T, BuildHasherDefault<IdHasher>>,
    /// Sorted by key, one record per key.
    legacy: Vec<(Key, [u8; V])>,
}

/// Where a key's value was found.
pub(crate) enum Found<'a, T, const V: usize> {
    /// A change since the last checkpoint.
    Recent(&'a T),
    /// A run's record, or an older store's.
    Stored([u8; V]),
}

impl<T, const V: usize> Layers<T, V> {
    /// The runs of set `name` the tree lists, over an older store's records `legacy` (sorted
    /// by key, one per key; empty for a current store).
    pub fn load(
        tree: &sled::Tree,
        store: &Path,
        name: &'static str,
        legacy: Vec<(Key, [u8; V])>,
    ) -> Result<Layers<T, V>, StoreError> {
        Ok(Layers {
            runs: Runs::load(tree, store, name)?,
            recent: HashMap::default(),
            legacy,
        })
    }

    /// The newest value of `k`.
    pub fn get(&self, k: &Key) -> Result<Option<Found<'_, T, V>>, StoreError> {
        if let Some(t) = self.recent.get(k) {
            return Ok(Some(Found::Recent(t)));
        }
        if let Some(v) = self.runs.get(k)? {
            return Ok(Some(Found::Stored(v)));
        }
        Ok(self
            .legacy
            .binary_search_by(|(x, _)| x.cmp(k))
            .ok()
            .map(|i| Found::Stored(self.legacy[i].1)))
    }

    /// A change of `k` since the last checkpoint.
    pub fn set(&mut self, k: Key, t: T) {
        self.recent.insert(k, t);
    }

    /// Writes the changes since the last checkpoint, each stored as `encode` says (and an
    /// older store's records, as the oldest run), with the new run list, into `batch` (a
    /// checkpoint's; the owner drops an older store's keys from the tree in it). The runs are
    /// synced; [`Layers::written`] once the batch is on disk.
    pub fn write(
        &self,
        mut encode: impl FnMut(&T) -> [u8; V],
        batch: &mut sled::Batch,
    ) -> Result<Written<V>, StoreError> {
        let mut recent: Vec<(Key, [u8; V])> =
            self.recent.iter().map(|(k, t)| (*k, encode(t))).collect();
        recent.sort_unstable_by_key(|r| r.0);
        self.runs.write(&[&self.legacy, &recent], batch)
    }

    /// The batch of [`Layers::write`] is on disk: the changes it holds leave memory.
    pub fn written(&mut self, w: Written<V>) {
        self.runs.written(w);
        self.recent = HashMap::default();
        self.legacy = Vec::new();
    }

    /// `f` of the newest value of every key (a full scan: reads every run), in no set order.
    pub fn for_each(
        &self,
        mut f: impl FnMut(Found<'_, T, V>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        type Source<'r, const V: usize> =
            Box<dyn Iterator<Item = Result<(Key, [u8; V]), StoreError>> + 'r>;
        // The runs' first: the first source holding a key wins.
        let sources: Vec<Source<'_, V>> = vec![
            Box::new(self.runs.records()),
            Box::new(self.legacy.iter().copied().map(Ok)),
        ];
        for r in Merge::new(sources, false) {
            let (k, v) = r?;
            if !self.recent.contains_key(&k) {
                f(Found::Stored(v))?;
            }
        }
        self.recent.values().try_for_each(|t| f(Found::Recent(t)))
    }

    /// Whether an older store's records are still in its tree.
    pub fn in_tree(&self) -> bool {
        !self.legacy.is_empty()
    }

    /// Bytes in memory: the runs' filters and indexes, the changes, an older store's records.
    pub fn memory(&self) -> usize {
        self.runs.memory()
            + self.recent.capacity() * (16 + std::mem::size_of::<T>() + 8)
            + self.legacy.capacity() * (16 + V)
    }

    /// Runs on disk.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.runs.count()
    }
}

/// The files of set `name` in `store`, sorted (for tests).
#[cfg(test)]
pub(crate) fn files_of(store: &Path, name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.join(name))
        .map(|d| {
            d.map(|e| {
                e.expect("a directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Deletes what `dir` holds besides the runs `listed` (a temporary file or a run written by
/// a checkpoint that did not complete, or merged by one that did).
fn remove_unlisted(dir: &Path, listed: &[(u64, u64)]) -> Result<(), StoreError> {
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

/// Sorted runs merged into one sorted stream; of records with one key, the first source's
/// (the newest run's) wins; or, `whole`, sorted by key and value, each distinct record once.
struct Merge<I, const V: usize> {
    sources: Vec<I>,
    heads: Vec<Option<(Key, [u8; V])>>,
    whole: bool,
    started: bool,
    failed: bool,
}

impl<I: Iterator<Item = Result<(Key, [u8; V]), StoreError>>, const V: usize> Merge<I, V> {
    fn new(sources: Vec<I>, whole: bool) -> Merge<I, V> {
        let heads = vec![None; sources.len()];
        Merge {
            sources,
            heads,
            whole,
            started: false,
            failed: false,
        }
    }

    fn advance(&mut self, i: usize) -> Result<(), StoreError> {
        self.heads[i] = self.sources[i].next().transpose()?;
        Ok(())
    }
}

impl<I: Iterator<Item = Result<(Key, [u8; V]), StoreError>>, const V: usize> Iterator
    for Merge<I, V>
{
    type Item = Result<(Key, [u8; V]), StoreError>;

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
        let (k, least) = if self.whole {
            let (k, v) = self.heads.iter().flatten().min()?;
            (*k, Some(*v))
        } else {
            (self.heads.iter().flatten().map(|(k, _)| *k).min()?, None)
        };
        let mut first: Option<[u8; V]> = None;
        for i in 0..self.heads.len() {
            if let Some((hk, v)) = self.heads[i] {
                if hk == k && least.is_none_or(|l| l == v) {
                    first.get_or_insert(v);
                    if let Err(e) = self.advance(i) {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }
        first.map(|v| Ok((k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn k(i: u16) -> Key {
        let mut k = [0u8; 16];
        k.copy_from_slice(&blake3::hash(&i.to_le_bytes()).as_bytes()[..16]);
        k
    }

    /// A checkpoint, as far as the set goes.
    fn checkpoint(s: &mut Runs<8>, db: &sled::Db, fresh: Vec<Vec<(Key, [u8; 8])>>) {
        let mut batch = sled::Batch::default();
        let fresh: Vec<&[(Key, [u8; 8])]> = fresh.iter().map(Vec::as_slice).collect();
        let w = s.write(&fresh, &mut batch).unwrap();
        db.apply_batch(batch).unwrap();
        s.written(w);
    }

    fn sorted(m: &BTreeMap<Key, [u8; 8]>) -> Vec<(Key, [u8; 8])> {
        m.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn files(dir: &Path) -> Vec<String> {
        files_of(dir, "set")
    }

    /// Many checkpoints of random changes: whatever merged, each key reads its latest value,
    /// in memory and after reopening, and the runs stay few.
    #[test]
    fn the_newest_value_wins_across_merges_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let mut s: Runs<8> = Runs::load(&db, dir.path(), "set").unwrap();
        let mut want: BTreeMap<Key, [u8; 8]> = BTreeMap::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..40u16 {
            let mut changes = BTreeMap::new();
            for _ in 0..(1 + round * 7) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                changes.insert(k((x % 600) as u16), x.to_le_bytes());
            }
            want.extend(changes.clone());
            checkpoint(&mut s, &db, vec![sorted(&changes)]);
            assert!(s.count() < FAN_IN, "round {round}: {} runs", s.count());
            assert_eq!(files(dir.path()).len(), s.count(), "round {round}");
        }
        let back: Runs<8> = Runs::load(&db, dir.path(), "set").unwrap();
        for i in 0..600 {
            assert_eq!(s.get(&k(i)).unwrap(), want.get(&k(i)).copied(), "key {i}");
            assert_eq!(
                back.get(&k(i)).unwrap(),
                want.get(&k(i)).copied(),
                "key {i}"
            );
        }
        // A checkpoint with nothing new writes nothing.
        let before = files(dir.path());
        let mut again: Runs<8> = Runs::load(&db, dir.path(), "set").unwrap();
        checkpoint(&mut again, &db, vec![Vec::new()]);
        assert_eq!(files(dir.path()), before);
    }

    #[test]
    fn files_a_checkpoint_did_not_name_are_removed_and_a_missing_run_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let mut s: Runs<8> = Runs::load(&db, dir.path(), "set").unwrap();
        checkpoint(&mut s, &db, vec![vec![(k(1), [1; 8])]]);
        // A checkpoint cut short: its run written, its batch never applied.
        let mut batch = sled::Batch::default();
        let _lost = s.write(&[&[(k(2), [2; 8])]], &mut batch).unwrap();
        std::fs::write(dir.path().join("set").join("x.run.tmp"), b"partial").unwrap();
        assert_eq!(files(dir.path()).len(), 3);
        let back: Runs<8> = Runs::load(&db, dir.path(), "set").unwrap();
        assert_eq!(files(dir.path()), vec![run::file_name(0)]);
        assert_eq!(back.get(&k(1)).unwrap(), Some([1; 8]));
        assert_eq!(back.get(&k(2)).unwrap(), None);
        drop(back);
        std::fs::remove_file(dir.path().join("set").join(run::file_name(0))).unwrap();
        match Runs::<8>::load(&db, dir.path(), "set") {
            Err(StoreError::Record { detail, .. }) => {
                assert!(detail.contains("missing"), "{detail}")
            }
            other => panic!("{:?}", other.err()),
        }
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
    fn merging_keeps_the_first_sources_value() {
        let mut a = vec![(k(1), [5; 8]), (k(2), [2; 8])];
        a.sort_unstable();
        let mut b = vec![(k(1), [3; 8]), (k(3), [9; 8])];
        b.sort_unstable();
        let merged: Vec<_> = Merge::new(vec![a.into_iter().map(Ok), b.into_iter().map(Ok)], false)
            .map(Result::unwrap)
            .collect();
        let mut want = vec![(k(1), [5; 8]), (k(2), [2; 8]), (k(3), [9; 8])];
        want.sort_unstable();
        assert_eq!(merged, want);
    }
}
