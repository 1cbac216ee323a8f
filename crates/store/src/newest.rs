//! A market's attestations newest first, without reading the whole market.
//!
//! The market index (see `market`) keeps runs keyed by their *oldest* entry, and the runs of
//! different shipments overlap in time (an import or a sync brings old attestations), so
//! reading the index backwards does not give the newest entries first. This module keeps, in
//! memory, each market's runs ordered by their *newest* entry, with the kinds they hold
//! (~70 bytes per run; a run holds the ~16 attestations of a shipment): built the first time a
//! market is asked for (one pass over its runs, ~20 ms for 250,000 entries), then kept up to
//! date by every shipment ([`RunInfo`]s in `txn::Shipment`). Nothing new is written to disk.
//!
//! Walking the runs from the newest end down, an entry read is certain to be the next newest
//! once every run not read yet ends before it ([`Newest`]): a page of the 20 newest receipts
//! reads the few runs that hold them, however large the market.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Mutex;

use passalong_protocol::{Id, Kind, PublicKey};

use crate::error::StoreError;
use crate::keyspace::{id_at, key, MARKET};
use crate::market::{self, Indexed};
use crate::Store;

/// One run of a market's index: its newest entry's time first, so that runs sort by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RunRef {
    end: u64,
    /// The run's key: its oldest entry.
    start: u64,
    first: Id,
}

/// What a shipment's run adds to its market.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    market: PublicKey,
    run: RunRef,
    /// Bit `k` set: holds an attestation of kind `k`.
    kinds: u16,
    /// Entries per kind (index: the kind's byte).
    counts: [u32; 16],
}

impl RunInfo {
    /// The market the run indexes.
    pub fn market(&self) -> PublicKey {
        self.market
    }
}

fn bit(kind: u8) -> u16 {
    1u16 << (kind & 15)
}

/// The run stored under `k`, `v` (a key and value of the market index).
pub(crate) fn info(k: &[u8], v: &[u8]) -> Result<RunInfo, StoreError> {
    let mut entries = Vec::new();
    market::decode(k, v, &mut entries)?;
    let mut i = RunInfo {
        market: PublicKey(id_at(k, 1)),
        run: RunRef {
            end: 0,
            start: crate::keyspace::u64_at(k, 33),
            first: Id(id_at(k, 41)),
        },
        kinds: 0,
        counts: [0; 16],
    };
    for e in entries {
        i.run.end = i.run.end.max(e.created_at_ms);
        i.kinds |= bit(e.kind);
        i.counts[usize::from(e.kind & 15)] += 1;
    }
    Ok(i)
}

/// A market's runs in memory.
#[derive(Default)]
struct Table {
    runs: BTreeMap<RunRef, u16>,
    counts: [u64; 16],
}

impl Table {
    fn add(&mut self, i: &RunInfo) {
        // A run already known (read by the first pass and then shipped) counts once.
        if self.runs.insert(i.run, i.kinds).is_none() {
            for (c, n) in self.counts.iter_mut().zip(i.counts) {
                *c += u64::from(n);
            }
        }
    }
}

/// Every market's runs, for the markets asked for since the store was opened.
#[derive(Default)]
pub(crate) struct Runs(Mutex<HashMap<PublicKey, Table>>);

impl Runs {
    /// Forgets every market's runs (read again when next asked for).
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A shipment's runs are in the tree: markets already in memory learn of them. (The lock
    /// is the one the first pass holds: a run is either seen by that pass or added here.)
    pub fn shipped(&self, runs: &[RunInfo]) {
        if runs.is_empty() {
            return;
        }
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for i in runs {
            if let Some(t) = g.get_mut(&i.market) {
                t.add(i);
            }
        }
    }

    /// `f` of `market`'s table, read from the tree the first time.
    fn with<R>(
        &self,
        store: &Store,
        market: &PublicKey,
        f: impl FnOnce(&Table) -> R,
    ) -> Result<R, StoreError> {
        // The database first, then the tables: the order in which a shipment takes them.
        let db = store.db()?;
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !g.contains_key(market) {
            let mut t = Table::default();
            for kv in db.scan_prefix(key(MARKET, &[&market.0])) {
                let (k, v) = kv?;
                t.add(&info(&k, &v)?);
            }
            g.insert(*market, t);
        }
        Ok(f(&g[market]))
    }
}

impl Store {
    /// A market's valid attestations (of `kind` only, if given), newest first, as
    /// (created_at_ms, id, kind): read a few runs at a time, so that taking the first few costs
    /// the same in a market of any size; its loose attestations (see `loose`, a bounded
    /// number) are read at once when their kinds are asked for. (Attestations indexed while
    /// it runs may be missed.)
    pub fn newest(&self, market: &PublicKey, kind: Option<Kind>) -> Newest<'_> {
        Newest {
            store: self,
            market: *market,
            mask: kind.map_or(u16::MAX, |k| bit(k as u8)),
            below: None,
            heap: BinaryHeap::new(),
            loose_read: false,
            done: false,
        }
    }

    /// How many valid attestations of `kind` a market holds (loose ones too, see `loose`).
    pub fn market_count(&self, market: &PublicKey, kind: Kind) -> Result<u64, StoreError> {
        let anchored = self
            .runs
            .with(self, market, |t| t.counts[usize::from(kind as u8 & 15)])?;
        let loose = crate::loose::market_count(&*self.db()?, market, kind)?;
        Ok(anchored + loose)
    }
}

/// The iterator of [`Store::newest`].
pub struct Newest<'a> {
    store: &'a Store,
    market: PublicKey,
    mask: u16,
    /// Runs from this one down are not read yet (`None`: none read).
    below: Option<RunRef>,
    /// Entries read and not yet returned.
    heap: BinaryHeap<Indexed>,
    /// The market's loose attestations were read into `heap` (all at once: at most
    /// `MAX_LOOSE_PER_MARKET`, and only when a loose kind is asked for).
    loose_read: bool,
    done: bool,
}

impl Newest<'_> {
    /// The next run holding a kind asked for, below the ones read.
    fn next_run(&self) -> Result<Option<RunRef>, StoreError> {
        let (mask, below) = (self.mask, self.below);
        self.store.runs.with(self.store, &self.market, |t| {
            let range = match below {
                Some(b) => t.runs.range(..b),
                None => t.runs.range(..),
            };
            range
                .rev()
                .find(|(_, kinds)| *kinds & mask != 0)
                .map(|(r, _)| *r)
        })
    }

    fn step(&mut self) -> Result<Option<(u64, Id, u8)>, StoreError> {
        if !self.loose_read {
            self.loose_read = true;
            if self.mask & (bit(Kind::Referral as u8) | bit(Kind::PurchaseClaim as u8)) != 0 {
                let mut entries = Vec::new();
                crate::loose::entries(&*self.store.db()?, &self.market, &mut entries)?;
                self.heap
                    .extend(entries.into_iter().filter(|e| bit(e.kind) & self.mask != 0));
            }
        }
        loop {
            let next = self.next_run()?;
            // Every run not read yet ends at or before `next`'s end.
            if let Some(top) = self.heap.peek() {
                if next.is_none_or(|n| top.created_at_ms > n.end) {
                    let e = self.heap.pop().expect("peeked");
                    return Ok(Some((e.created_at_ms, e.id, e.kind)));
                }
            }
            let Some(run) = next else {
                return Ok(None);
            };
            self.below = Some(run);
            let k = key(
                MARKET,
                &[&self.market.0, &run.start.to_be_bytes(), &run.first.0],
            );
            if let Some(v) = self.store.db()?.get(&k)? {
                let mut entries = Vec::new();
                market::decode(&k, &v, &mut entries)?;
                self.heap
                    .extend(entries.into_iter().filter(|e| bit(e.kind) & self.mask != 0));
            }
        }
    }
}

impl Iterator for Newest<'_> {
    type Item = Result<(u64, Id, u8), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.step().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use crate::common::*;
    use crate::Store;
    use passalong_protocol::{Attestation, Kind, Rule};

    const NOW: u64 = T0 + 400 * DAY_MS;

    fn envs(atts: &[Attestation]) -> Vec<&[u8]> {
        atts.iter().map(|a| a.bytes.as_slice()).collect()
    }

    /// Calls whose receipts interleave in time write runs that overlap: read newest first,
    /// they come out merged in time order, the same whether the market's runs were read
    /// before the calls (then kept up to date by each shipment) or after reopening.
    #[test]
    fn overlapping_runs_come_out_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (s, b, e) = (key(1), key(2), key(5));
        let seller = s.public();
        let o = offer(&s, policy(Rule::Direct, 1_000), T0);
        let r = refer(&b, &o, None, T0 + 1);
        let sale = |i: u64, t: u64| receipt(&s, &o, &format!("o{i}"), 100, e.public(), Some(&r), t);
        // Odd and even times in separate calls, then an old receipt last.
        let odd: Vec<_> = (0..40).map(|i| sale(i, T0 + 11 + 2 * i)).collect();
        let even: Vec<_> = (0..40).map(|i| sale(100 + i, T0 + 10 + 2 * i)).collect();
        let old = sale(999, T0 + 2);
        let st = Store::open(dir.path()).unwrap();
        st.ingest(&envs(&[o.clone(), r.clone()]), NOW).unwrap();
        assert_eq!(st.market_count(&seller, Kind::Receipt).unwrap(), 0);
        for part in odd.chunks(20).chain(even.chunks(20)) {
            st.ingest(&envs(part), NOW).unwrap();
        }
        st.ingest(&envs(&[old]), NOW).unwrap();
        let check = |st: &Store| {
            let mut all = st.market(&seller).unwrap();
            all.reverse();
            let newest: Vec<_> = st.newest(&seller, None).map(Result::unwrap).collect();
            assert_eq!(newest, all);
            let five: Vec<u64> = st
                .newest(&seller, Some(Kind::Receipt))
                .take(5)
                .map(|e| e.unwrap().0)
                .collect();
            assert_eq!(five, (0..5).map(|i| T0 + 89 - i).collect::<Vec<_>>());
            let offers: Vec<_> = st
                .newest(&seller, Some(Kind::Offer))
                .map(|e| e.unwrap().1)
                .collect();
            assert_eq!(offers, vec![o.id]);
            assert_eq!(st.market_count(&seller, Kind::Receipt).unwrap(), 81);
            assert_eq!(st.market_count(&seller, Kind::Referral).unwrap(), 1);
        };
        check(&st);
        drop(st);
        check(&Store::open(dir.path()).unwrap());
    }
}
