//! The writer of a call: a thread that works beside stage 2, and shares the call's last
//! writes with the caller when stage 2 ends.
//!
//! Every 16 fresh attestations, stage 2 hands over what they wrote. The writer reads the keys
//! ahead ([`prefetch`]) and holds the shipment: on a large store most of a write's cost is
//! paging in the sled leaf it lands on, and the reads page them in while stage 2 goes on (a
//! tree that fits in the cache is not read ahead: its leaves stay in memory). A
//! call of more than `SHIPMENT` fresh attestations also has the writer apply what it holds
//! every that many, as one shipment (journaled and synced first, see `journal`), so that what
//! is buffered stays bounded. When stage 2 ends, what the writer holds and has not started (for
//! most calls, the whole call) is merged into one shipment (the latest write of each key
//! wins), made atomic by one journal record (one fsync per call), and its keys are written by
//! the caller and the writer together, from both ends of the key order. Its journal number
//! goes last, once both are done ([`Writer::seal`]). What reaches the disk is still the effect
//! of a prefix of the call.
//!
//! Applying each handover as its own shipment overlapped the writes with stage 2 but synced a
//! journal record each: on the small store that cost a fifth of a 64-attestation call; as one
//! shipment without reading ahead, the 1M store's call took 2.3× a bare verify against 1.8×.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use passalong_protocol::Id;

use super::redo::{self, Write};
use crate::book::{LineKey, Sums};
use crate::envelopes::Envelopes;
use crate::orders::OrderKey;
use crate::txn::Shipment;
use crate::valid::ValidSet;
use crate::{Store, StoreError};

/// Writes a thread claims at a time from the merged shipment.
const CLAIM: usize = 8;

/// The shared state of one call's writer (see the module docs).
pub(crate) struct Writer<'a> {
    store: &'a Store,
    db: &'a sled::Db,
    /// Where valid entries' envelopes go (see `envelopes`).
    log: Arc<Envelopes>,
    state: Mutex<State>,
    wake: Condvar,
    tail: OnceLock<Tail>,
    /// Whether to read shipments' keys ahead: not when the tree fits in the cache.
    read_ahead: bool,
}

#[derive(Default)]
struct State {
    /// Shipments handed over and not taken yet, each with whether to apply it (with the held
    /// ones before it) or only read its keys ahead and hold it.
    queue: VecDeque<(Shipment, bool)>,
    /// Shipments read ahead and not applied yet, in order: the next one applied, or the
    /// merged tail, takes them in.
    held: Vec<Shipment>,
    /// The writer is applying a shipment it took.
    applying: bool,
    /// The caller is merging the rest: take nothing, flush nothing, wait for the tail.
    merging: bool,
    /// Nothing more comes: the writer helps with the tail, if there is one, and stops.
    closed: bool,
    /// The writer thread is gone: done, or stopped by an error (returned when it is joined)
    /// or a panic.
    stopped: bool,
}

/// The merged shipment: its writes, sorted by key, and the unclaimed ones between two ends.
struct Tail {
    writes: Vec<Write>,
    ends: Mutex<(usize, usize)>,
    /// The journal number, written once every other write is in.
    seal: Write,
    /// What each merged shipment changes in memory once every write is in, in order.
    shipments: Vec<Shipment>,
}

impl<'a> Writer<'a> {
    pub fn new(store: &'a Store, db: &'a sled::Db) -> Self {
        Writer {
            store,
            db,
            log: store.commit.envelopes(),
            state: Mutex::default(),
            wake: Condvar::new(),
            tail: OnceLock::new(),
            read_ahead: !store.commit.tree_fits_cache(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'g>(&self, g: MutexGuard<'g, State>) -> MutexGuard<'g, State> {
        self.wake.wait(g).unwrap_or_else(|p| p.into_inner())
    }

    /// The writer thread's body.
    pub fn run(&self) -> Result<(), StoreError> {
        // However the thread ends (an error, a panic), the caller must not wait for it.
        struct Stopped<'w, 'a>(&'w Writer<'a>);
        impl Drop for Stopped<'_, '_> {
            fn drop(&mut self) {
                let mut st = self.0.lock();
                st.stopped = true;
                st.applying = false;
                self.0.wake.notify_all();
            }
        }
        let _stopped = Stopped(self);
        self.work()
    }

    fn work(&self) -> Result<(), StoreError> {
        loop {
            let mut st = self.lock();
            let (shipment, apply) = loop {
                if !st.merging {
                    if let Some(s) = st.queue.pop_front() {
                        st.applying = true;
                        break s;
                    }
                }
                if st.closed {
                    let held = std::mem::take(&mut st.held);
                    drop(st);
                    return match self.tail.get() {
                        Some(tail) => {
                            tail.write(self.db, &self.log, self.store.commit.valid(), true)
                        }
                        // Not merged: what is held is applied in order.
                        None => held
                            .into_iter()
                            .try_for_each(|s| self.store.apply(self.db, s)),
                    };
                }
                st = self.wait(st);
            };
            drop(st);
            if apply {
                let mut group = std::mem::take(&mut self.lock().held);
                group.push(shipment);
                self.store.apply_together(self.db, group)?;
            } else {
                if self.read_ahead {
                    prefetch(self.db, &shipment.writes);
                }
                self.lock().held.push(shipment);
            }
            self.lock().applying = false;
            self.wake.notify_all();
        }
    }

    /// Hands a shipment to the writer, to apply (with what it holds) or to read ahead and
    /// hold; false if the writer stopped on an error.
    pub fn ship(&self, shipment: Shipment, apply: bool) -> bool {
        let mut st = self.lock();
        if st.stopped {
            return false;
        }
        if !apply && !self.read_ahead && st.queue.is_empty() && !st.applying {
            // Nothing to read ahead: held as it comes, without waking the writer (a wake
            // every 16 attestations cost context switches). Behind queued or applying
            // shipments it waits its turn, so that what is held stays in order.
            st.held.push(shipment);
            return true;
        }
        st.queue.push_back((shipment, apply));
        self.wake.notify_all();
        true
    }

    /// Ends the call's shipments with `last`. With `merge`, what the writer holds and has not
    /// started is merged and written here and by the writer together; otherwise the writer
    /// applies it in order. Then join the writer and call [`Writer::settle`].
    pub fn finish(&self, last: Option<Shipment>, merge: bool) -> Result<(), StoreError> {
        let mut st = self.lock();
        st.queue.extend(last.map(|s| (s, true)));
        if !merge || st.stopped || (st.queue.is_empty() && st.held.is_empty()) {
            st.closed = true;
            self.wake.notify_all();
            return Ok(());
        }
        st.merging = true;
        while st.applying {
            st = self.wait(st);
        }
        if st.stopped {
            return Ok(()); // the join reports the writer's error
        }
        let mut shipments = std::mem::take(&mut st.held);
        shipments.extend(st.queue.drain(..).map(|(s, _)| s));
        drop(st);
        let Merged {
            mut writes,
            lines,
            orders,
        } = merge_all(&mut shipments);
        // Nothing of the call is half written now: the journal record follows the writer's
        // last. No key is written unless the record is in.
        let started = self.store.commit.journal(&lines, &orders, &mut writes);
        if started.is_ok() {
            let seal = writes.pop().expect("the journal adds its number");
            let n = writes.len();
            let _ = self.tail.set(Tail {
                writes,
                ends: Mutex::new((0, n)),
                seal,
                shipments,
            });
        }
        let mut st = self.lock();
        st.closed = true;
        self.wake.notify_all();
        drop(st);
        started?;
        match self.tail.get() {
            Some(tail) => tail.write(self.db, &self.log, self.store.commit.valid(), false),
            None => Ok(()),
        }
    }

    /// Once the writer is joined and every write of the merged tail is in: its journal
    /// number, so that opening the store after a crash does not write it again.
    pub fn seal(&self) -> Result<(), StoreError> {
        match self.tail.get() {
            Some(tail) => redo::write(
                self.db,
                &self.log,
                self.store.commit.valid(),
                std::slice::from_ref(&tail.seal),
            ),
            None => Ok(()),
        }
    }

    /// Once the writer is joined: the merged shipments' effects in memory, in order.
    pub fn settle(self) {
        if let Some(tail) = self.tail.into_inner() {
            for s in tail.shipments {
                self.store.applied(s);
            }
        }
    }
}

/// Closes the writer when dropped: a caller that unwinds must not leave it waiting for
/// shipments (the scope that spawned it would wait for it forever).
pub(crate) struct CloseOnDrop<'w, 'a>(pub &'w Writer<'a>);

impl Drop for CloseOnDrop<'_, '_> {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.wake.notify_all();
    }
}

/// Shipments as one: the latest write of each key, each ledger line's last sums, every
/// receipt's order.
pub(crate) struct Merged {
    pub writes: Vec<Write>,
    pub lines: BTreeMap<LineKey, Sums>,
    pub orders: Vec<(OrderKey, Id)>,
}

/// `shipments` as one (their writes are taken out), none of them applied yet: a key one of
/// them wrote first that the tree did not hold, and the last deleted, is not written.
pub(crate) fn merge_all(shipments: &mut [Shipment]) -> Merged {
    let mut writes = redo::merge(shipments.iter_mut().map(|s| std::mem::take(&mut s.writes)));
    let born: rustc_hash::FxHashSet<&[u8]> = shipments
        .iter()
        .flat_map(|s| s.born.iter().map(Vec::as_slice))
        .collect();
    if !born.is_empty() {
        writes.retain(|(k, v)| v.is_some() || !born.contains(k.as_slice()));
    }
    let mut lines = BTreeMap::new();
    let mut orders = Vec::new();
    for s in shipments.iter() {
        lines.extend(s.lines.iter().map(|(k, v)| (*k, *v)));
        orders.extend_from_slice(&s.orders);
    }
    Merged {
        writes,
        lines,
        orders,
    }
}

/// Reads each key `writes` will write, so that the sled leaves they land on are in its cache
/// when they are written (errors are the write's to report).
fn prefetch(db: &sled::Db, writes: &[Write]) {
    for (k, _) in writes {
        let _ = db.get(k);
    }
}

impl Tail {
    /// Writes claimed runs of the merged shipment until none is left: the caller from the
    /// front, the writer from the back.
    fn write(
        &self,
        db: &sled::Db,
        log: &Envelopes,
        valid: &std::sync::RwLock<ValidSet>,
        from_back: bool,
    ) -> Result<(), StoreError> {
        loop {
            let run = {
                let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
                let (front, back) = *ends;
                if front >= back {
                    return Ok(());
                }
                if from_back {
                    let start = back.saturating_sub(CLAIM).max(front);
                    ends.1 = start;
                    start..back
                } else {
                    let end = (front + CLAIM).min(back);
                    ends.0 = end;
                    front..end
                }
            };
            redo::write(db, log, valid, &self.writes[run])?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sled::IVec;

    use super::*;
    use crate::keyspace::{key, META};

    fn k(name: &str) -> Vec<u8> {
        key(META, &[b"writer-test-", name.as_bytes()])
    }

    fn put(name: &str, v: &str) -> Write {
        (k(name), Some(IVec::from(v.as_bytes())))
    }

    fn shipment(writes: Vec<Write>) -> Shipment {
        Shipment {
            writes,
            lines: BTreeMap::new(),
            orders: Vec::new(),
            counted: Vec::new(),
            forgotten: Vec::new(),
            dropped: Vec::new(),
            referrals: Vec::new(),
            hops: Vec::new(),
            touched: Vec::new(),
            born: Vec::new(),
        }
    }

    /// Three shipments that write the same keys: whatever order they are applied in, one by
    /// one or merged, the tree must end with the last write of each key.
    fn shipments() -> Vec<Shipment> {
        vec![
            shipment(vec![put("a", "1"), put("b", "1"), put("c", "1")]),
            shipment(vec![put("a", "2"), (k("b"), None), put("d", "2")]),
            shipment(vec![put("a", "3"), put("e", "3")]),
        ]
    }

    fn read(db: &sled::Db, name: &str) -> Option<String> {
        db.get(k(name))
            .unwrap()
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    fn assert_last_writes_won(db: &sled::Db) {
        assert_eq!(read(db, "a").as_deref(), Some("3"));
        assert_eq!(read(db, "b"), None);
        assert_eq!(read(db, "c").as_deref(), Some("1"));
        assert_eq!(read(db, "d").as_deref(), Some("2"));
        assert_eq!(read(db, "e").as_deref(), Some("3"));
    }

    #[test]
    fn merging_keeps_each_keys_latest_write() {
        let merged = redo::merge(shipments().into_iter().map(|s| s.writes));
        let keys: Vec<&[u8]> = merged.iter().map(|(k, _)| k.as_slice()).collect();
        let want = ["a", "b", "c", "d", "e"].map(k);
        assert_eq!(keys, want.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(merged[0].1.as_deref(), Some(&b"3"[..]));
        assert_eq!(merged[1].1, None);
    }

    /// Shipments the writer has not started are merged: one journal record holds them all (a
    /// crash mid-tail is completed at open), its number written last, and the last write of
    /// each key wins.
    #[test]
    fn the_tail_is_merged_under_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let db = store.db().unwrap();
        db.insert(k("b"), &b"old"[..]).unwrap();
        let journaled = || {
            std::fs::metadata(dir.path().join(crate::commit::journal::FILE))
                .unwrap()
                .len()
        };
        let before = journaled();
        let w = Writer::new(&store, &db);
        // No writer thread yet: every shipment is still queued when the call ends.
        let mut all = shipments();
        let last = all.pop();
        for s in all {
            assert!(w.ship(s, true));
        }
        w.finish(last, true).unwrap();
        let number = key(META, &[b"journal"]);
        assert_eq!(
            db.get(&number).unwrap(),
            None,
            "sealed once every write is in"
        );
        w.seal().unwrap();
        w.settle();
        assert_last_writes_won(&db);
        assert!(db.get(&number).unwrap().is_some());
        // One record: the merged writes and the number (a record's framing is 12 bytes, its
        // number, line and order counts 16).
        let merged = redo::merge(shipments().into_iter().map(|s| s.writes));
        let mut with_number = merged.clone();
        with_number.push((number, Some(0u64.to_be_bytes().to_vec().into())));
        assert_eq!(
            journaled() - before,
            12 + 16 + redo::size(&with_number) as u64
        );
        drop(db);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_last_writes_won(&store.db().unwrap());
    }

    /// A caller that panics mid-call does not leave the writer waiting (the scope would hang),
    /// and a writer that fails does not leave the caller waiting for its shipment.
    #[test]
    fn neither_side_waits_for_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let disk = crate::commit::FailingFrom::never();
        let store = Store::open(dir.path()).unwrap().with_disk(disk.clone());
        let db = store.db().unwrap();
        let w = Writer::new(&store, &db);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                s.spawn(|| w.run());
                let _close = CloseOnDrop(&w);
                assert!(w.ship(shipments().remove(0), true));
                panic!("stage 2 failed");
            })
        }));
        assert!(unwound.is_err());
        // What was shipped before the panic was still applied, in order.
        assert_eq!(read(&db, "a").as_deref(), Some("1"));

        disk.fail_from(store.commits());
        let w = Writer::new(&store, &db);
        std::thread::scope(|s| {
            let thread = s.spawn(|| w.run());
            let mut all = shipments().into_iter();
            assert!(w.ship(all.next().unwrap(), true));
            // The writer fails on it and stops: later shipments are refused, and finishing
            // neither waits for it nor writes.
            while !w.lock().stopped {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert!(!w.ship(all.next().unwrap(), true));
            w.finish(all.next(), true).unwrap();
            assert!(thread.join().unwrap().is_err());
        });
        assert!(w.tail.get().is_none());
        assert_eq!(read(&db, "a").as_deref(), Some("1"));
    }

    /// With the writer thread running, merged or not, applying each handover or holding it
    /// (read ahead or not, behind an applied one or not), the tree ends the same.
    #[test]
    fn the_writer_and_the_caller_end_with_the_same_tree() {
        for merge in [true, false] {
            for apply in [[true, true], [false, false], [true, false], [false, true]] {
                for read_ahead in [true, false] {
                    let dir = tempfile::tempdir().unwrap();
                    let store = Store::open(dir.path()).unwrap();
                    let db = store.db().unwrap();
                    let mut w = Writer::new(&store, &db);
                    assert!(!w.read_ahead, "a new store's tree fits in the cache");
                    w.read_ahead = read_ahead;
                    std::thread::scope(|s| {
                        let thread = s.spawn(|| w.run());
                        let mut all = shipments();
                        let last = all.pop();
                        for (s, apply) in all.into_iter().zip(apply) {
                            assert!(w.ship(s, apply));
                        }
                        w.finish(last, merge).unwrap();
                        thread.join().unwrap().unwrap();
                    });
                    w.seal().unwrap();
                    w.settle();
                    assert_last_writes_won(&db);
                    let case = format!("merge {merge}, apply {apply:?}, read ahead {read_ahead}");
                    assert_eq!(store.commits(), 3, "{case}");
                }
            }
        }
    }
}
