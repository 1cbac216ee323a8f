//! A market's index: its anchored valid attestations by kind and time, out of the tree
//! (from format 16), in sorted runs beside it like the valid entries (`valid`, `runs`).
//!
//! A shipment still writes what it indexes in a market under one key, a run: `MARKET ‖ market
//! ‖ created_at_ms (BE) ‖ id` of its first (smallest) entry, and as value its entries,
//! `created_at_ms (BE) ‖ id ‖ kind` each (41 bytes); a run of one is the kind byte alone (the
//! entry is the key). The journal keeps it so. Writing the shipment ([`MarketIndex::apply`],
//! from `valid::apply`) puts its entries here instead of in the tree: the records since the
//! last checkpoint in memory, and each checkpoint writes them as a run. Before format 16 the
//! tree kept those keys, one per market per shipment: three quarters of a 10M tree's bytes,
//! each written at sled's cost per key; opening such a store reads them into the first run.
//!
//! A record is [`REC`] bytes sorted whole: `market[..7] ‖ kind ‖ created_at_ms (BE) ‖
//! market[7..] ‖ id`. So a market's records of one kind are contiguous and in time order
//! (two markets whose keys share 7 bytes interleave, and reads keep only the one asked for),
//! and the runs' block index (the first 16 bytes) finds where any (market, kind, time) starts
//! with one read per run. Nothing is ever removed: only anchored attestations are indexed
//! (loose ones are indexed apart, see `loose`), and they stay valid. The tree keeps one key per
//! market, `MARKET ‖ market` (empty value): the list of markets.

use std::collections::BTreeSet;
use std::path::Path;

use passalong_protocol::{Id, PublicKey};

use crate::error::StoreError;
use crate::keyspace::{id_at, key, u64_at, MARKET};
use crate::runs::{Key, Run, Runs, Written};

/// One indexed attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Indexed {
    pub created_at_ms: u64,
    pub id: Id,
    pub kind: u8,
}

/// Bytes of an entry in a run's value.
const ENTRY_LEN: usize = 8 + 32 + 1;

/// The keys and values that index `entries` (in any order, with their markets): one run per
/// market.
pub(crate) fn runs(mut entries: Vec<(PublicKey, Indexed)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    entries.sort_unstable();
    entries.dedup();
    let mut out = Vec::new();
    for run in entries.chunk_by(|a, b| a.0 == b.0) {
        let (market, first) = run[0];
        let k = key(
            MARKET,
            &[&market.0, &first.created_at_ms.to_be_bytes(), &first.id.0],
        );
        let v = if run.len() == 1 {
            vec![first.kind]
        } else {
            let mut v = Vec::with_capacity(run.len() * ENTRY_LEN);
            for (_, e) in run {
                v.extend_from_slice(&e.created_at_ms.to_be_bytes());
                v.extend_from_slice(&e.id.0);
                v.push(e.kind);
            }
            v
        };
        out.push((k, v));
    }
    out
}

/// Appends the entries of one stored run (`k`, `v`) to `out`.
pub(crate) fn decode(k: &[u8], v: &[u8], out: &mut Vec<Indexed>) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Record {
        prefix: char::from(MARKET),
        detail,
    };
    if k.len() != 1 + 32 + 8 + 32 {
        return Err(corrupt(format!("a key of {} bytes", k.len())));
    }
    match v {
        [kind] => out.push(Indexed {
            created_at_ms: u64_at(k, 33),
            id: Id(id_at(k, 41)),
            kind: *kind,
        }),
        _ if !v.is_empty() && v.len().is_multiple_of(ENTRY_LEN) => {
            out.extend(v.chunks_exact(ENTRY_LEN).map(|e| Indexed {
                created_at_ms: u64_at(e, 0),
                id: Id(id_at(e, 8)),
                kind: e[40],
            }))
        }
        _ => return Err(corrupt(format!("a run of {} bytes", v.len()))),
    }
    Ok(())
}

/// Bytes of a record: `market[..7] ‖ kind ‖ created_at_ms (BE) ‖ market[7..] ‖ id`.
pub(crate) const REC: usize = 7 + 1 + 8 + 25 + 32;

/// A record's bytes after the runs' 16-byte key.
pub(crate) const VALUE: usize = REC - 16;

/// One record of the index.
pub(crate) type Rec = [u8; REC];

/// The set's name: its directory in the store's, and its list's key.
const RUNS: &str = "markets";

/// The record of `e` in `market`.
pub(crate) fn rec(market: &PublicKey, e: &Indexed) -> Rec {
    let mut r = [0u8; REC];
    r[..7].copy_from_slice(&market.0[..7]);
    r[7] = e.kind;
    r[8..16].copy_from_slice(&e.created_at_ms.to_be_bytes());
    r[16..41].copy_from_slice(&market.0[7..]);
    r[41..].copy_from_slice(&e.id.0);
    r
}

/// The market of a record, and its entry.
fn unrec(r: &[u8]) -> (PublicKey, Indexed) {
    let mut m = [0u8; 32];
    m[..7].copy_from_slice(&r[..7]);
    m[7..].copy_from_slice(&r[16..41]);
    (
        PublicKey(m),
        Indexed {
            created_at_ms: u64_at(r, 8),
            id: Id(id_at(r, 41)),
            kind: r[7],
        },
    )
}

fn split(r: &Rec) -> (Key, [u8; VALUE]) {
    (
        r[..16].try_into().expect("16 bytes"),
        r[16..].try_into().expect("the rest"),
    )
}

/// The records of one market and kind: `[lo, hi)`, the market's tail to check.
struct Range {
    lo: [u8; 8],
    /// `None`: to the end (the largest prefix).
    hi: Option<[u8; 8]>,
    rest: [u8; 25],
}

impl Range {
    fn of(market: &PublicKey, kind: u8) -> Range {
        let mut lo = [0u8; 8];
        lo[..7].copy_from_slice(&market.0[..7]);
        lo[7] = kind;
        let hi = u64::from_be_bytes(lo).checked_add(1).map(u64::to_be_bytes);
        Range {
            lo,
            hi,
            rest: market.0[7..].try_into().expect("25 bytes"),
        }
    }

    fn holds(&self, r: &[u8]) -> bool {
        r[..8] == self.lo && r[16..41] == self.rest
    }
}

/// Where to start a page, and which way.
#[derive(Debug, Clone, Copy)]
pub(crate) enum From {
    /// The oldest first, after this record (`None`: from the start).
    After(Option<Rec>),
    /// The newest first, before this record (`None`: from the end).
    Before(Option<Rec>),
}

/// Every market's anchored valid attestations (see the module docs).
pub(crate) struct MarketIndex {
    runs: Runs<VALUE>,
    /// Records since the last checkpoint.
    recent: BTreeSet<Rec>,
    /// A store before format 16: the records of its tree's runs, sorted (as key and value),
    /// until the checkpoint that opening it takes (`Commit::open`) writes them as the oldest
    /// run and drops the tree's keys. Nothing reads the index before that.
    legacy: Vec<(Key, [u8; VALUE])>,
    /// Markets with a record: the tree's `MARKET ‖ market` keys.
    known: BTreeSet<PublicKey>,
}

impl MarketIndex {
    /// The runs the tree lists, and its markets (with the records of its runs, for a store
    /// before format 16). The journal's records come next ([`MarketIndex::apply`],
    /// [`MarketIndex::replay`]).
    pub fn load(tree: &sled::Tree, store: &Path) -> Result<MarketIndex, StoreError> {
        let runs = Runs::load_records(tree, store, RUNS)?;
        // Once a store's runs are listed, runs left in its tree were moved already (see
        // [`MarketIndex::remove_moved`]).
        let moved = !runs.runs().is_empty();
        let mut known = BTreeSet::new();
        let mut legacy = Vec::new();
        let mut entries = Vec::new();
        for kv in tree.scan_prefix([MARKET]) {
            let (k, v) = kv?;
            let market = PublicKey(id_at(&k, 1));
            if k.len() != 33 && !moved {
                entries.clear();
                decode(&k, &v, &mut entries)?;
                legacy.extend(entries.iter().map(|e| split(&rec(&market, e))));
            }
            known.insert(market);
        }
        legacy.sort_unstable();
        legacy.dedup();
        Ok(MarketIndex {
            runs,
            recent: BTreeSet::new(),
            legacy,
            known,
        })
    }

    /// Adds what a shipment indexes (its `MARKET` runs among `writes`) and writes the key of
    /// each market new to the tree; returns the positions of those writes (done: the tree
    /// does not keep them).
    pub fn apply(
        &mut self,
        tree: &sled::Tree,
        writes: &[crate::commit::redo::Write],
    ) -> Result<Vec<usize>, StoreError> {
        self.add(writes, |market| {
            tree.insert(key(MARKET, &[&market.0]), &[])?;
            Ok(())
        })
    }

    /// A shipment the tree already has, replayed at open: what it indexed (its markets'
    /// keys are in the tree).
    pub fn replay(&mut self, writes: &[crate::commit::redo::Write]) -> Result<(), StoreError> {
        self.add(writes, |_| Ok(())).map(drop)
    }

    /// Adds the entries of the `MARKET` runs among `writes`, `new` called first for each
    /// market not known yet; returns those writes' positions.
    fn add(
        &mut self,
        writes: &[crate::commit::redo::Write],
        mut new: impl FnMut(&PublicKey) -> Result<(), StoreError>,
    ) -> Result<Vec<usize>, StoreError> {
        let mut done = Vec::new();
        let mut entries = Vec::new();
        for (at, (k, v)) in writes.iter().enumerate() {
            let (Some(v), Some(&MARKET)) = (v, k.first()) else {
                continue;
            };
            if k.len() == 33 {
                continue;
            }
            entries.clear();
            decode(k, v, &mut entries)?;
            let market = PublicKey(id_at(k, 1));
            if !self.known.contains(&market) {
                new(&market)?;
                self.known.insert(market);
            }
            self.recent.extend(entries.iter().map(|e| rec(&market, e)));
            done.push(at);
        }
        Ok(done)
    }

    /// Every market with an indexed attestation, sorted.
    pub fn markets(&self) -> Vec<PublicKey> {
        self.known.iter().copied().collect()
    }

    /// Whether another market's key shares `market`'s first 7 bytes (their records
    /// interleave).
    fn shared(&self, market: &PublicKey) -> bool {
        let mut lo = [0u8; 32];
        lo[..7].copy_from_slice(&market.0[..7]);
        let mut hi = [0xffu8; 32];
        hi[..7].copy_from_slice(&market.0[..7]);
        self.known
            .range(PublicKey(lo)..=PublicKey(hi))
            .nth(1)
            .is_some()
    }

    /// How many attestations of `kind` the market has indexed: from the runs' positions
    /// alone, without reading their records (unless another market shares its prefix).
    pub fn count(&self, market: &PublicKey, kind: u8) -> Result<u64, StoreError> {
        let range = Range::of(market, kind);
        if self.shared(market) {
            let all = self.page(market, kind, From::After(None), usize::MAX)?;
            return Ok(all.len() as u64);
        }
        let mut n = self.recent_range(&range).count() as u64;
        for run in self.runs.runs() {
            let (lo, hi) = positions(run, &range)?;
            n += hi - lo;
        }
        Ok(n)
    }

    fn recent_range<'a>(&'a self, range: &Range) -> impl DoubleEndedIterator<Item = &'a Rec> + 'a {
        let mut lo = [0u8; REC];
        lo[..8].copy_from_slice(&range.lo);
        let rest = range.rest;
        let iter = match range.hi {
            Some(h) => {
                let mut hi = [0u8; REC];
                hi[..8].copy_from_slice(&h);
                self.recent.range(lo..hi)
            }
            None => self.recent.range(lo..),
        };
        iter.filter(move |r| r[16..41] == rest)
    }

    /// Up to `n` attestations of `kind` in `market`, from where `from` says, in its order.
    pub fn page(
        &self,
        market: &PublicKey,
        kind: u8,
        from: From,
        n: usize,
    ) -> Result<Vec<Indexed>, StoreError> {
        let range = Range::of(market, kind);
        let (bound, descending) = match from {
            From::After(a) => (a, false),
            From::Before(b) => (b, true),
        };
        // Past the bound, in the page's direction.
        let ok = |r: &&Rec| bound.is_none_or(|b| if descending { **r < b } else { **r > b });
        let mut found: Vec<Rec> = Vec::new();
        if descending {
            found.extend(self.recent_range(&range).rev().filter(ok).take(n));
        } else {
            found.extend(self.recent_range(&range).filter(ok).take(n));
        }
        let bound = bound.as_ref().map(|b| &b[..]);
        for run in self.runs.runs() {
            read(run, &range, bound, n, descending, &mut found)?;
        }
        if descending {
            found.sort_unstable_by(|a, b| b.cmp(a));
        } else {
            found.sort_unstable();
        }
        found.dedup();
        found.truncate(n);
        Ok(found.iter().map(|r| unrec(r).1).collect())
    }

    /// Writes the records since the last checkpoint (and a store's before format 16, as the
    /// oldest run, with its markets' keys) as runs, with the new run list, into `batch` (a
    /// checkpoint's; [`MarketIndex::remove_moved`] then drops the tree's runs of such a
    /// store). [`MarketIndex::written`] once the batch is on disk.
    pub fn write(&self, batch: &mut sled::Batch) -> Result<Written<VALUE>, StoreError> {
        // A journal record replayed at the open that moves an older store's index may hold
        // what its tree held too: written once, so that counts stay right.
        let recent: Vec<_> = self
            .recent
            .iter()
            .map(split)
            .filter(|r| self.legacy.binary_search(r).is_err())
            .collect();
        let w = self.runs.write(&[&self.legacy, &recent], batch)?;
        if !self.legacy.is_empty() {
            for m in &self.known {
                batch.insert(key(MARKET, &[&m.0]), &[]);
            }
        }
        Ok(w)
    }

    /// Removes the runs a store before format 16 kept in its tree, once they are in a run
    /// file: a key at a time (a batch of a million removals held sled for most of a minute
    /// and 8 GB of memory at 10M), from the open that moved them or, cut short, the next.
    /// Nothing to do (a scan of the markets' keys) in a store of format 16.
    pub fn remove_moved(&self, tree: &sled::Tree) -> Result<(), StoreError> {
        if self.runs.runs().is_empty() || !self.legacy.is_empty() {
            return Ok(());
        }
        let mut removed = false;
        for kv in tree.scan_prefix([MARKET]) {
            let (k, _) = kv?;
            if k.len() != 33 {
                tree.remove(k)?;
                removed = true;
            }
        }
        if removed {
            tree.flush()?;
        }
        Ok(())
    }

    /// The batch of [`MarketIndex::write`] is on disk: the records it holds leave memory.
    pub fn written(&mut self, w: Written<VALUE>) {
        self.runs.written(w);
        self.recent = BTreeSet::new();
        self.legacy = Vec::new();
    }

    /// Whether a store before format 16 still has its runs in the tree.
    pub fn in_tree(&self) -> bool {
        !self.legacy.is_empty()
    }

    /// Bytes in memory: the runs' indexes and filters, the records since the checkpoint.
    pub fn memory(&self) -> usize {
        self.runs.memory() + (self.recent.len() + self.legacy.capacity()) * (REC + 8)
    }

    /// Runs on disk.
    #[cfg(test)]
    pub fn run_count(&self) -> usize {
        self.runs.runs().len()
    }
}

/// Where `range`'s prefix starts and ends in `run`.
fn positions(run: &Run<VALUE>, range: &Range) -> Result<(u64, u64), StoreError> {
    let lo = run.position(&range.lo)?;
    let hi = match range.hi {
        Some(h) => run.position(&h)?,
        None => run.len,
    };
    Ok((lo, hi.max(lo)))
}

/// Appends to `out` up to `n` of `run`'s records in `range`: after `bound` going up, or
/// before it going down (`descending`).
fn read(
    run: &Run<VALUE>,
    range: &Range,
    bound: Option<&[u8]>,
    n: usize,
    descending: bool,
    out: &mut Vec<Rec>,
) -> Result<(), StoreError> {
    let (mut lo, mut hi) = positions(run, range)?;
    if let Some(b) = bound {
        let at = run.position(b)?.clamp(lo, hi);
        if descending {
            hi = at;
        } else {
            lo = at;
        }
    }
    let per = Run::<VALUE>::PER_BLOCK as u64;
    let mut block: Option<(u64, Box<[u8; crate::runs::BLOCK]>)> = None;
    let mut taken = 0;
    let mut at = |p: u64| -> Result<Option<Rec>, StoreError> {
        let b = p / per;
        if block.as_ref().is_none_or(|(x, _)| *x != b) {
            block = Some((b, run.block(b as usize)?.0));
        }
        let (_, bytes) = block.as_ref().expect("just read");
        let r: Rec = Run::<VALUE>::record(&bytes[..], (p % per) as usize)
            .try_into()
            .expect("a record");
        Ok((range.holds(&r) && bound.is_none_or(|b| r[..] != *b)).then_some(r))
    };
    if descending {
        let mut p = hi;
        while p > lo && taken < n {
            p -= 1;
            if let Some(r) = at(p)? {
                out.push(r);
                taken += 1;
            }
        }
    } else {
        let mut p = lo;
        while p < hi && taken < n {
            if let Some(r) = at(p)? {
                out.push(r);
                taken += 1;
            }
            p += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: u64, id: u8, kind: u8) -> Indexed {
        Indexed {
            created_at_ms: t,
            id: Id([id; 32]),
            kind,
        }
    }

    #[test]
    fn runs_decode_to_their_entries_one_run_per_market() {
        let (m1, m2) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let entries = vec![
            (m2, e(5, 9, 3)),
            (m1, e(7, 1, 2)),
            (m1, e(3, 4, 3)),
            (m1, e(3, 2, 3)),
        ];
        let runs = runs(entries);
        assert_eq!(runs.len(), 2);
        // A run of one is the kind byte under the entry's own key (format 3's layout).
        let (k2, v2) = &runs[1];
        assert_eq!(v2, &vec![3]);
        assert_eq!(k2[1..33], m2.0);
        // The first run's key is its smallest entry.
        let (k1, v1) = &runs[0];
        assert_eq!(u64_at(k1, 33), 3);
        assert_eq!(id_at(k1, 41), [2; 32]);
        let mut out = Vec::new();
        decode(k1, v1, &mut out).unwrap();
        assert_eq!(out, vec![e(3, 2, 3), e(3, 4, 3), e(7, 1, 2)]);
        decode(k2, v2, &mut out).unwrap();
        assert_eq!(out.last(), Some(&e(5, 9, 3)));
    }

    #[test]
    fn a_damaged_run_is_an_error() {
        let k = key(MARKET, &[&[1; 32], &7u64.to_be_bytes(), &[2; 32]]);
        let mut out = Vec::new();
        for v in [&[][..], &[0u8; 40][..], &[0u8; 42][..]] {
            let err = decode(&k, v, &mut out).unwrap_err();
            assert!(err.to_string().contains("run of"), "{err}");
        }
        assert!(decode(&k[..40], &[1], &mut out).is_err());
        assert!(out.is_empty());
    }

    /// Three markets, two of which share their first 7 bytes (their records interleave).
    fn markets() -> [PublicKey; 3] {
        let mut b = [9u8; 32];
        b[20] = 1;
        [PublicKey([9; 32]), PublicKey(b), PublicKey([3; 32])]
    }

    /// A shipment's writes indexing `entries`, as `txn` makes them.
    fn shipment(entries: Vec<(PublicKey, Indexed)>) -> Vec<crate::commit::redo::Write> {
        runs(entries)
            .into_iter()
            .map(|(k, v)| (k, Some(sled::IVec::from(v))))
            .collect()
    }

    fn checkpoint(ix: &mut MarketIndex, db: &sled::Db) {
        let mut batch = sled::Batch::default();
        let w = ix.write(&mut batch).unwrap();
        db.apply_batch(batch).unwrap();
        ix.written(w);
    }

    /// Every page read of `ix` agrees with `want` (per market and kind, in time order):
    /// whole, in small pages up and down, and counted.
    fn check(ix: &MarketIndex, want: &BTreeSet<(PublicKey, Indexed)>) {
        for m in markets() {
            for kind in 1..=3u8 {
                let expected: Vec<Indexed> = want
                    .iter()
                    .filter(|(wm, e)| *wm == m && e.kind == kind)
                    .map(|(_, e)| *e)
                    .collect();
                let all = ix.page(&m, kind, From::After(None), usize::MAX).unwrap();
                assert_eq!(all, expected, "market {:?} kind {kind}", m.0[20]);
                assert_eq!(ix.count(&m, kind).unwrap(), expected.len() as u64);
                let (mut up, mut from) = (Vec::new(), From::After(None));
                loop {
                    let page = ix.page(&m, kind, from, 7).unwrap();
                    up.extend_from_slice(&page);
                    match page.last() {
                        Some(l) if page.len() == 7 => from = From::After(Some(rec(&m, l))),
                        _ => break,
                    }
                }
                assert_eq!(up, expected);
                let (mut down, mut from) = (Vec::new(), From::Before(None));
                loop {
                    let page = ix.page(&m, kind, from, 11).unwrap();
                    down.extend_from_slice(&page);
                    match page.last() {
                        Some(l) if page.len() == 11 => from = From::Before(Some(rec(&m, l))),
                        _ => break,
                    }
                }
                down.reverse();
                assert_eq!(down, expected);
            }
        }
        let mut listed = ix.markets();
        listed.sort();
        let mut known: Vec<PublicKey> = want.iter().map(|(m, _)| *m).collect();
        known.dedup();
        known.sort();
        assert_eq!(listed, known);
    }

    /// Shipments of random times, kinds and markets, across checkpoints that merge runs of
    /// many blocks: every read agrees with what was indexed, in memory and after reopening;
    /// and a shipment replayed changes nothing.
    #[test]
    fn pages_and_counts_agree_across_runs_checkpoints_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let mut ix = MarketIndex::load(&db, dir.path()).unwrap();
        let mut want = BTreeSet::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut last = Vec::new();
        for round in 0..12u64 {
            for _ in 0..(3 + round % 4) {
                let mut entries = Vec::new();
                for _ in 0..(1 + next() % 200) {
                    let m = markets()[(next() % 3) as usize];
                    let mut id = [0u8; 32];
                    id[..8].copy_from_slice(&next().to_le_bytes());
                    // Few distinct times: many records share one.
                    let e = Indexed {
                        created_at_ms: 1_000 + next() % 50,
                        id: Id(id),
                        kind: 1 + (next() % 3) as u8,
                    };
                    entries.push((m, e));
                    want.insert((m, e));
                }
                last = shipment(entries);
                let done = ix.apply(&db, &last).unwrap();
                assert_eq!(done, (0..last.len()).collect::<Vec<_>>());
            }
            // Replayed at open (a journal record the tree has) while still in memory.
            ix.replay(&last).unwrap();
            check(&ix, &want);
            checkpoint(&mut ix, &db);
            assert!(ix.run_count() < 8, "{} runs", ix.run_count());
        }
        let back = MarketIndex::load(&db, dir.path()).unwrap();
        check(&back, &want);
        // The tree keeps one key per market.
        assert_eq!(db.scan_prefix([MARKET]).count(), 3);
    }

    /// A store before format 16 kept the index in its tree: opening reads it, and the
    /// checkpoint it then takes writes it as a run and drops the tree's keys but the markets'.
    #[test]
    fn a_tree_index_moves_to_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let [a, b, c] = markets();
        let old = vec![
            (a, e(5, 1, 1)),
            (a, e(3, 2, 3)),
            (b, e(4, 3, 3)),
            (c, e(9, 4, 2)),
        ];
        for (k, v) in runs(old.clone())
            .into_iter()
            .chain(runs(vec![(a, e(1, 5, 3))]))
        {
            db.insert(k, v).unwrap();
        }
        let mut want: BTreeSet<_> = old.into_iter().collect();
        want.insert((a, e(1, 5, 3)));
        let mut ix = MarketIndex::load(&db, dir.path()).unwrap();
        assert!(ix.in_tree());
        // The journal's last record, replayed at that open, indexed what the tree holds.
        ix.replay(&shipment(vec![(c, e(9, 4, 2))])).unwrap();
        checkpoint(&mut ix, &db);
        check(&ix, &want);
        assert!(!ix.in_tree());
        // Cut short before its runs left the tree: the next load does not read them again.
        let back = MarketIndex::load(&db, dir.path()).unwrap();
        assert!(!back.in_tree());
        check(&back, &want);
        back.remove_moved(&db).unwrap();
        let keys: Vec<_> = db.scan_prefix([MARKET]).map(|kv| kv.unwrap().0).collect();
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|k| k.len() == 33));
        let back = MarketIndex::load(&db, dir.path()).unwrap();
        assert!(!back.in_tree());
        check(&back, &want);
    }
}
