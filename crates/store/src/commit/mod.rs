//! The store's one home for durability: the sled tree and the journal beside it, the state
//! the journal replays (ledger lines, receipts' orders), the writer lock, shipments, the
//! call's writer thread (`writer`), checkpoints, and reopening after an I/O error, behind
//! [`Commit`]. The crate docs' durability contract says what each guarantees.
//!
//! [`Disk`] is the one seam between the write path and sled's tree, so that tests can make
//! the disk fail at a chosen shipment without any test-only branch in the production path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use passalong_protocol::Id;

use crate::book::{Book, LineKey, Sums};
use crate::envelopes::{self, Envelopes};
use crate::hops::{self, Hops};
use crate::lock::DirLock;
use crate::orders::{OrderKey, Orders};
use crate::valid::ValidSet;
use crate::StoreError;
use journal::Journal;

pub(crate) mod journal;
pub(crate) mod redo;
pub(crate) mod writer;

/// After this many attestations written, the store checkpoints (see `Commit::checkpoint_locked`).
pub const CHECKPOINT_EVERY: u64 = 50_000;

/// The store checkpoints when its journal (every shipment since the last checkpoint, ~2 KB per
/// attestation, read at each open) reaches this size, however rarely it is set to checkpoint
/// otherwise (see `journal`).
pub const JOURNAL_MAX_BYTES: u64 = 256 << 20;

/// The durable core of a store (see the module docs).
pub(crate) struct Commit {
    /// `None` only if reopening at a checkpoint failed: every call then says so.
    db: RwLock<Option<sled::Db>>,
    path: PathBuf,
    cache_bytes: u64,
    /// Held by every write (ingest calls, ticks, checkpoints): one at a time.
    writer: Mutex<()>,
    /// The ledger lines (written to the tree at checkpoints, journaled in between).
    book: RwLock<Book>,
    /// Counted receipts by order (in runs at checkpoints, journaled in between).
    orders: RwLock<Orders>,
    /// Valid referrals' hop records (in runs at checkpoints, journaled in between).
    hops: RwLock<Hops>,
    /// Valid attestations' envelopes (synced at checkpoints, journaled in between).
    envelopes: RwLock<Arc<Envelopes>>,
    /// Valid attestations' entries (in runs at checkpoints, journaled in between).
    valid: RwLock<ValidSet>,
    /// Every shipment since the last checkpoint (see `journal`).
    journal: Mutex<Journal>,
    /// Where shipments are applied.
    disk: Arc<dyn Disk>,
    /// Attestations written since the store was opened or last checkpointed.
    since_checkpoint: AtomicU64,
    /// Shipments applied (see `stage1::Item::commits`).
    commits: AtomicU64,
    checkpoint_every: AtomicU64,
    /// [`JOURNAL_MAX_BYTES`] (a test sets less).
    journal_max: AtomicU64,
    checkpoints: AtomicU64,
    /// A write failed on an I/O error (a full disk): sled refuses every write after one, so
    /// the next write reopens the store first (see [`Commit::write_lock`]).
    damaged: AtomicBool,
    /// The directory's lock, held from before sled opens until the store is dropped, across
    /// every checkpoint's reopening (see `lock`).
    lock: DirLock,
}

/// The open sled database, borrowed for one call.
pub(crate) struct DbGuard<'a>(RwLockReadGuard<'a, Option<sled::Db>>);

impl std::ops::Deref for DbGuard<'_> {
    type Target = sled::Db;
    fn deref(&self) -> &sled::Db {
        // `Commit::db` hands out a guard only when the database is open.
        self.0.as_ref().expect("checked by Commit::db")
    }
}

impl Commit {
    /// Whether the tree's file fits in sled's page cache: its pages, once read, stay in
    /// memory, so reading a shipment's keys ahead of its writes only doubles their lookups
    /// (7 % of a late joiner's CPU as it caught up 100,000 attestations).
    pub fn tree_fits_cache(&self) -> bool {
        std::fs::metadata(self.path.join("db")).is_ok_and(|m| m.len() <= self.cache_bytes)
    }

    /// The durable core over the tree `db` of the store at `path` (whose lock is `lock`):
    /// reads the ledger lines and orders as of the last checkpoint and replays the journal.
    pub fn open(
        path: &Path,
        cache_bytes: u64,
        lock: DirLock,
        db: sled::Db,
    ) -> Result<Commit, StoreError> {
        let (book, orders, hops, envelopes, valid, journal) = load_journaled(path, &db)?;
        let commit = Commit {
            db: RwLock::new(Some(db)),
            path: path.to_path_buf(),
            cache_bytes,
            writer: Mutex::new(()),
            book: RwLock::new(book),
            orders: RwLock::new(orders),
            hops: RwLock::new(hops),
            envelopes: RwLock::new(Arc::new(envelopes)),
            valid: RwLock::new(valid),
            journal: Mutex::new(journal),
            disk: Arc::new(Sled),
            since_checkpoint: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            checkpoint_every: AtomicU64::new(CHECKPOINT_EVERY),
            journal_max: AtomicU64::new(JOURNAL_MAX_BYTES),
            checkpoints: AtomicU64::new(0),
            damaged: AtomicBool::new(false),
            lock,
        };
        let in_tree = commit
            .orders
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .in_tree()
            || commit
                .hops
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .in_tree()
            || commit
                .valid
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .in_tree();
        if in_tree {
            // An older store: its orders, hop records and market index move to runs now, not
            // at the next checkpoint, so that the next open does not read them all again.
            commit.write_book(&*commit.db()?)?;
        }
        commit
            .valid
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .markets()
            .remove_moved(&*commit.db()?)?;
        Ok(commit)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open database, or [`StoreError::Closed`].
    pub fn db(&self) -> Result<DbGuard<'_>, StoreError> {
        let g = self.db.read().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            return Err(StoreError::Closed {
                path: self.path.clone(),
            });
        }
        Ok(DbGuard(g))
    }

    pub fn book(&self) -> &RwLock<Book> {
        &self.book
    }

    pub fn orders(&self) -> &RwLock<Orders> {
        &self.orders
    }

    pub fn hops(&self) -> &RwLock<Hops> {
        &self.hops
    }

    pub fn valid(&self) -> &RwLock<ValidSet> {
        &self.valid
    }

    /// The envelope log (replaced when the store reopens after an I/O error).
    pub fn envelopes(&self) -> Arc<Envelopes> {
        self.envelopes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Shipments applied so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    pub fn set_checkpoint_every(&self, n: u64) {
        self.checkpoint_every.store(n, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub fn set_journal_max(&self, bytes: u64) {
        self.journal_max.store(bytes, Ordering::Relaxed);
    }

    /// Shipments applied by `disk` from now on (tests make the disk fail).
    #[cfg(test)]
    pub fn with_disk(mut self, disk: Arc<dyn Disk>) -> Commit {
        self.disk = disk;
        self
    }

    /// Whether a large call's writer may merge what it has not started (see [`Disk`]).
    pub fn merges_tail(&self) -> bool {
        self.disk.merges_tail()
    }

    /// The writer lock, without the reopening [`Commit::write_lock`] does (upgrades at open).
    pub fn lock_writes(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer lock, with the store reopened first if a write failed on an I/O error:
    /// sled reopened as a restart would (the journal completes a shipment cut short), the
    /// ledger lines and orders read again, then `reload` for what the caller keeps of the
    /// tree (what the failed write changed in memory may not be on disk). Fails while the
    /// disk still refuses (sled writes as it opens); the next write tries again.
    pub fn write_lock(
        &self,
        reload: impl FnOnce(&sled::Db) -> Result<(), StoreError>,
    ) -> Result<MutexGuard<'_, ()>, StoreError> {
        let w = self.lock_writes();
        if self.damaged.load(Ordering::Relaxed) {
            let mut g = self.db.write().unwrap_or_else(|p| p.into_inner());
            drop(g.take());
            let db = crate::open_db(&self.path, self.cache_bytes)?;
            let (book, orders, hops, envelopes, valid, journal) = load_journaled(&self.path, &db)?;
            *self.book.write().unwrap_or_else(|p| p.into_inner()) = book;
            *self.valid.write().unwrap_or_else(|p| p.into_inner()) = valid;
            *self.envelopes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(envelopes);
            *self.orders.write().unwrap_or_else(|p| p.into_inner()) = orders;
            *self.hops.write().unwrap_or_else(|p| p.into_inner()) = hops;
            *self.journal.lock().unwrap_or_else(|p| p.into_inner()) = journal;
            reload(&db)?;
            *g = Some(db);
            self.damaged.store(false, Ordering::Relaxed);
        }
        Ok(w)
    }

    /// Marks the store for reopening (see [`Commit::write_lock`]) if `r` failed on an I/O
    /// error.
    pub fn note_failure<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Io(sled::Error::Io(_))) = &r {
            self.damaged.store(true, Ordering::Relaxed);
        }
        r
    }

    /// Journals a shipment's `parts` (synced) and writes its keys to the tree, its journal
    /// number last. The caller then applies its effects in memory and calls
    /// [`Commit::applied`].
    pub fn apply(&self, db: &sled::Db, parts: Parts<'_>) -> Result<(), StoreError> {
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        self.disk.apply(
            db,
            &mut journal,
            &self.envelopes(),
            &self.valid,
            parts,
            self.commits(),
        )
    }

    /// Appends the journal record of a shipment (synced) before its `writes` go to the tree
    /// (the caller writes them); its number is the last write.
    pub fn journal(
        &self,
        lines: &BTreeMap<LineKey, Sums>,
        orders: &[(OrderKey, Id)],
        writes: &mut Vec<redo::Write>,
    ) -> Result<(), StoreError> {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(lines, orders, writes)
    }

    /// A shipment's ledger lines, counted receipts and hop records in memory, once its writes
    /// are in.
    pub fn applied(
        &self,
        lines: BTreeMap<LineKey, Sums>,
        counted: Vec<(OrderKey, Id)>,
        referrals: Vec<(Id, Option<hops::Rec>)>,
    ) {
        self.orders
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .commit(counted);
        self.hops
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .commit(referrals);
        self.commits.fetch_add(1, Ordering::Release);
        self.book
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replay(lines);
    }

    /// Counts `n` attestations written; checkpoints when due (the caller holds the writer
    /// lock and no database guard; `reopened` as for [`Commit::checkpoint_locked`]).
    pub fn written(
        &self,
        n: u64,
        reopened: impl FnOnce(&sled::Db) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let every = self.checkpoint_every.load(Ordering::Relaxed);
        let total = self.since_checkpoint.fetch_add(n, Ordering::Relaxed) + n;
        let journal = self.journal.lock().unwrap_or_else(|p| p.into_inner()).len();
        if (every > 0 && total >= every) || journal >= self.journal_max.load(Ordering::Relaxed) {
            self.checkpoint_locked(reopened)?;
        }
        Ok(())
    }

    /// Makes the next start after a crash fast. sled 0.34 writes its snapshot of the page
    /// table only while opening and replays its log since that snapshot at every open (about
    /// 10 s after a million writes); closing and reopening the database here bounds that
    /// replay to what was written since. Writes the orders' run, the ledger lines and the
    /// journal's next number first, and empties the journal; `reopened` is called with the
    /// reopened tree. The caller holds the writer lock.
    pub fn checkpoint_locked(
        &self,
        reopened: impl FnOnce(&sled::Db) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut g = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = g.as_ref() {
            self.write_book(db)?;
        }
        drop(g.take());
        let db = crate::open_db(&self.path, self.cache_bytes)?;
        reopened(&db)?;
        *g = Some(db);
        self.since_checkpoint.store(0, Ordering::Relaxed);
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes the ledger lines changed since the last checkpoint, and the receipts' orders
    /// as a run (synced first, see `orders`) named with the journal's next number in one
    /// batch; flushes; then empties the journal (the caller holds the writer lock). Readers
    /// of the orders wait only for the swap, not for the runs to be written.
    pub fn write_book(&self, db: &sled::Db) -> Result<(), StoreError> {
        let mut book = self.book.write().unwrap_or_else(|p| p.into_inner());
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = book.checkpoint_batch(db)?;
        let order_runs = self
            .orders
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .write(db, &mut batch)?;
        let hop_runs = self
            .hops
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .write(db, &mut batch)?;
        let valid_runs = self
            .valid
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .write(&mut batch)?;
        // The log's records are synced before the tree names its end.
        let end = self.envelopes().sync()?.encode();
        batch.insert(envelopes::checkpoint_key(), &end);
        batch.insert(envelopes::end_key(), &end);
        journal.checkpoint(&mut batch);
        db.apply_batch(batch)?;
        db.flush()?;
        book.checkpointed();
        self.orders
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .written(order_runs);
        self.hops
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .written(hop_runs);
        self.valid
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .written(valid_runs);
        journal.checkpointed()
    }

    /// Writes the ledger lines and closes the tree, then reopens it once and closes it again
    /// (see `Store::close`), the directory locked until then.
    pub fn close(self) -> Result<(), StoreError> {
        {
            let _w = self.lock_writes();
            self.write_book(&*self.db()?)?;
        }
        let Commit {
            db,
            path,
            cache_bytes,
            lock,
            ..
        } = self;
        drop(db);
        crate::open_db(&path, cache_bytes)?.flush()?;
        drop(lock);
        Ok(())
    }
}

/// What `load_journaled` reads: the state the journal replays, and the journal.
type Journaled = (Book, Orders, Hops, Envelopes, ValidSet, Journal);

/// The ledger lines, counted receipts and hop records as the tree has them at its last
/// checkpoint, with the journal's records since replayed over them; the envelope log checked
/// against the tree (see `envelopes`).
fn load_journaled(path: &Path, db: &sled::Db) -> Result<Journaled, StoreError> {
    let corrupt = crate::corrupt_at(path);
    let mut book = Book::load(db).map_err(&corrupt)?;
    let mut orders = Orders::load(db, path).map_err(|e| match e {
        StoreError::Io(e) => crate::open_error(path, e),
        e => corrupt(e),
    })?;
    let mut hop_records = Hops::load(db, path).map_err(|e| match e {
        StoreError::Io(e) => crate::open_error(path, e),
        e => corrupt(e),
    })?;
    let (log, logged) = Envelopes::open(path, db).map_err(|e| match e {
        StoreError::Io(e) => crate::open_error(path, e),
        e => corrupt(e),
    })?;
    let valid = RwLock::new(ValidSet::load(db, path).map_err(|e| match e {
        StoreError::Io(e) => crate::open_error(path, e),
        e => corrupt(e),
    })?);
    let mut replayed = Ok(());
    let journal = Journal::open(path, db, &log, logged.as_ref(), &valid, |r| {
        book.replay(r.lines);
        if replayed.is_ok() {
            replayed = orders.replay(r.orders);
        }
        match hops::changes(&r.writes) {
            Some(changes) => hop_records.commit(changes),
            None if replayed.is_ok() => {
                replayed = Err(StoreError::Record {
                    prefix: char::from(crate::keyspace::HOP),
                    detail: "a journal record holds a damaged hop record".into(),
                })
            }
            None => {}
        }
    })
    .and_then(|j| replayed.map(|()| j))
    .map_err(|e| match e {
        StoreError::Io(e) => crate::open_error(path, e),
        e => corrupt(e),
    })?;
    let valid = valid.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok((book, orders, hop_records, log, valid, journal))
}

/// What a shipment writes: its keys, and what it changed of the state kept in memory.
pub(crate) struct Parts<'a> {
    pub lines: &'a BTreeMap<LineKey, Sums>,
    pub orders: &'a [(OrderKey, Id)],
    pub writes: &'a mut Vec<redo::Write>,
}

/// Applies shipments to the tree.
pub(crate) trait Disk: Send + Sync {
    /// Applies shipment `n` (numbered from the store's opening): its journal record (synced),
    /// then its keys, the record's number last. The keys are not durable until the tree is
    /// flushed.
    fn apply(
        &self,
        tree: &sled::Tree,
        journal: &mut Journal,
        log: &Envelopes,
        valid: &RwLock<ValidSet>,
        parts: Parts<'_>,
        n: u64,
    ) -> Result<(), StoreError>;

    /// Whether a large call may merge the shipments its writer has not started into one (a
    /// disk that fails a given shipment needs them applied one by one).
    fn merges_tail(&self) -> bool {
        true
    }
}

/// The disk as it is.
pub(crate) struct Sled;

impl Disk for Sled {
    fn apply(
        &self,
        tree: &sled::Tree,
        journal: &mut Journal,
        log: &Envelopes,
        valid: &RwLock<ValidSet>,
        parts: Parts<'_>,
        _n: u64,
    ) -> Result<(), StoreError> {
        journal.append(parts.lines, parts.orders, parts.writes)?;
        redo::write(tree, log, valid, parts.writes)
    }
}

/// A disk that fails every shipment from a given one on (a disk failing mid-call).
#[cfg(test)]
pub(crate) struct FailingFrom(std::sync::atomic::AtomicU64);

#[cfg(test)]
impl FailingFrom {
    /// A disk that does not fail until [`FailingFrom::fail_from`] is called.
    pub fn never() -> std::sync::Arc<FailingFrom> {
        std::sync::Arc::new(FailingFrom(std::sync::atomic::AtomicU64::new(u64::MAX)))
    }

    /// Fails shipment `n` and every later one.
    pub fn fail_from(&self, n: u64) {
        self.0.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn from(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
impl Disk for FailingFrom {
    fn apply(
        &self,
        tree: &sled::Tree,
        journal: &mut Journal,
        log: &Envelopes,
        valid: &RwLock<ValidSet>,
        parts: Parts<'_>,
        n: u64,
    ) -> Result<(), StoreError> {
        if n >= self.from() {
            return Err(sled::Error::Unsupported("test: the disk failed".into()).into());
        }
        Sled.apply(tree, journal, log, valid, parts, n)
    }

    fn merges_tail(&self) -> bool {
        self.from() == u64::MAX
    }
}
