//! Passalong's durable store: every attestation a node holds, the indexes the protocol's rules
//! need, and each seller's ledger kept up to date as attestations arrive.
//!
//! Everything lives in one sled tree (see [`keyspace`]), with a journal file beside it, and
//! five sets of files the tree names: the receipts' orders, the referrals' hop records, the
//! valid attestations' entries and the markets' index of them in sorted runs (`runs`,
//! `valid`, `market`), and the valid attestations' envelopes in an append-only log
//! (`envelopes`). An
//! [`Store::ingest`] call checks its envelopes (batch signature verification, on helper
//! threads), runs the protocol's rules against the store, buffers every write, and applies
//! them in **atomic shipments** before it returns: each is appended to the journal and synced
//! before its keys go to the tree (`journal`), so what the call acknowledged survives kill -9
//! and power loss although sled's own writes are not durable until it flushes (sled issue
//! 654), and the tree is flushed only at checkpoints. A call is one shipment up to 4,096 fresh
//! attestations (one synced journal record); a larger one hands a shipment to a writer thread
//! every 4,096, in order, so what reaches the disk is always the effect of a prefix of the
//! call (when stage 2 ends, the caller and the writer write what is left together: `writer`).
//! A shipment is made atomic by its journal record, not by a sled batch (`redo`). All of it
//! (the tree, the journal and what it replays, the writer lock and thread, checkpoints,
//! reopening after an I/O error) lives in `commit`; the rest of the crate reads the tree and
//! hands `commit` shipments.
//!
//! # Durability contract
//!
//! - **Acknowledged is durable.** When a write call ([`Store::ingest`], [`Store::tick`], …)
//!   returns `Ok`, everything it acknowledged, and every index and ledger change it made, is
//!   in a synced journal record: it survives kill -9 and power loss.
//! - **The shipment is the atomic unit.** A call's writes reach the tree in shipments: the
//!   whole call up to 4,096 fresh attestations, every 4,096 in a larger one (a tail the
//!   writer had not started is merged into one). Each shipment is whole or absent
//!   after a crash: its record (its keys, and what it changed of the state kept in memory:
//!   ledger lines, receipts' orders) is appended to the journal file and synced before its
//!   keys go to the tree, its journal number last. Opening writes again the keys of every
//!   record past the tree's number, and replays the lines and orders of every record since the
//!   last checkpoint (`journal`). A shipment whose record was synced may so be completed at
//!   open although its call failed; one whose record was not is absent.
//! - **A large call is not atomic as a whole.** After a crash during one, the disk holds its
//!   first shipments, in order, never a later one without an earlier one. The store is
//!   consistent at every shipment boundary, nothing of it was acknowledged, and sending it
//!   again ingests what is missing (ingest is idempotent).
//! - **Readers may see a shipment half applied**, and a large call's first shipments before
//!   it returns. After an I/O error the call fails, acknowledges nothing, and the store reopens
//!   its tree before the next write, as a restart would.
//! - **Envelopes** of valid attestations are appended to their log when a shipment's keys go
//!   to the tree, unsynced (the journal record holds them), and the entry gets a reference.
//!   Each shipment writes the log's end just before its journal number. Opening checks the
//!   log's records between the last checkpoint and that end: whole, the log is cut back to the
//!   end; not (a power loss lost bytes the tree points to), it is cut back to the checkpoint
//!   and every record since is written again from the journal (`envelopes`).
//! - **Valid entries** leave the tree as their shipment is written: the record (fact, payout
//!   kind, envelope reference) is kept in memory first, then the tree's key is removed, so a
//!   reader finds the entry in one place or the other. Until the next checkpoint the journal
//!   holds them; opening replays them from it (`valid`). A shipment's market index runs go
//!   to memory likewise, after its entries (`market`).
//! - **Checkpoints** write the receipts' orders, the referrals' hop records, the valid
//!   entries and the market index records added since the last one as run files (synced, see `runs`) and sync the
//!   envelope log, then write the
//!   ledger lines, the run lists and the log's end in one sled batch with the journal's next
//!   record number, flush, empty the journal file and reopen the tree; the data dir stays
//!   locked throughout (`lock`). A run the batch did not name is deleted at open.
//!
//! Ledger lines are kept in memory (`book`): an ingest journals the lines it changed, and
//! checkpoints write them (sled's cost is per key written, and a receipt changes ~5 lines).
//!
//! The payout rules are the protocol crate's own (`payout::payout` over the store as a
//! `ChainView`); this crate only decides which receipts to recompute when something they depend
//! on changes. [`Store::recompute_ledger`] recomputes from scratch with the protocol's in-memory
//! `State`, and a property test checks the two agree.
//!
//! What does not count (held, pending, invalid) is kept within bounds and expires (see
//! `expiry`, [`ExpiryLimits`]): the caps apply as attestations come in, the times at
//! [`Store::tick`] from the `now` the caller passes. The data dir is locked for the store's
//! whole life (`lock`), across checkpoints.
//!
//! sled 0.34 writes its page-table snapshot only while opening, and every open replays the log
//! written since that snapshot (about 10 s after a million writes). So the store reopens its
//! database every [`CHECKPOINT_EVERY`] attestations written ([`Store::checkpoint`], about 0.3 s
//! at a million, calls waiting meanwhile) and once more at shutdown ([`Store::close`]): the
//! start after a crash replays at most one checkpoint interval.
#![deny(missing_docs)]

mod book;
mod cache;
mod commit;
use commit::{redo, writer, Commit};
pub use commit::{CHECKPOINT_EVERY, JOURNAL_MAX_BYTES};
mod counters;
mod dependency;
mod envelopes;
mod error;
mod expiry;
mod hops;
mod index;
mod ingest;
pub mod keyspace;
mod ledger;
mod lock;
mod lookups;
mod loose;
mod market;
mod newest;
mod orders;
mod runs;
mod stage1;
mod summary;
mod txn;
mod valid;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use passalong_protocol::attestation::Body;
use passalong_protocol::state::{Dispute, Equivocation, Report};
use passalong_protocol::validation::{self, Outcome, Rejection};
use passalong_protocol::{Attestation, Id, Kind, Ledger, LedgerEntry, PublicKey, State};

pub use counters::IngestCounters;
pub use error::StoreError;
pub use expiry::{
    ExpiryLimits, NotKept, Unsettled, HELD_HORIZON_MS, INVALID_TTL_MS, MAX_HELD, MAX_INVALID,
    MAX_PENDING, PENDING_TTL_MS,
};
use keyspace::*;
pub use lock::LOCK_FILE;
pub use lookups::MAX_IDEMPOTENCY_KEY;
pub use loose::{DECLINE_MS, MAX_LOOSE_PER_AUTHOR, MAX_LOOSE_PER_MARKET};
pub use newest::Newest;
pub use summary::SetSummary;
use txn::Txn;

/// What an ingest call found for its envelopes, in order.
#[derive(Default)]
struct Decided {
    /// Each envelope's status if it was stored before (None: this call decides it).
    known: Vec<Option<Status>>,
    /// Each envelope is new and not a repeat of an earlier one in the call.
    first_in_call: Vec<bool>,
    seen: std::collections::HashSet<Id>,
    reports: Vec<Report>,
    /// Answered but not kept (see `expiry`, `loose`).
    not_kept: Vec<(Id, NotKept)>,
}

impl Decided {
    /// Notes the next envelope (`stored`: it was stored before); true if this call must
    /// ingest it.
    fn first(&mut self, t: &Txn<'_>, id: Id, stored: bool) -> bool {
        let s = if stored { ingest::status(t, &id) } else { None };
        let first = s.is_none() && self.seen.insert(id);
        self.known.push(s);
        self.first_in_call.push(first);
        first
    }
}

/// Fresh attestations of a call per shipment: a call up to this size is one shipment (one
/// journal record, one fsync, its keys written by the caller and the writer thread together
/// once stage 2 ends); a larger one has the writer apply one every this many, so that what is
/// buffered stays bounded (~2 KB per attestation). See `writer` for what shipping every 16
/// cost.
const SHIPMENT: usize = 4096;

/// Fresh attestations of a call between two handovers to its writer thread, which reads ahead
/// the keys they write (see `writer`).
const READ_AHEAD: usize = 16;

/// sled's page cache, in MiB, unless the node's `store_cache_mib` says otherwise. On a store
/// of a million attestations, 192 MiB made ingest ~25 % faster than 64 (issue 15's bench),
/// at that much more resident memory once the store is that large. The smallest cache
/// [`auto_cache_bytes`] gives.
pub const DEFAULT_CACHE_MIB: u64 = 64;

/// The largest cache [`auto_cache_bytes`] gives, in MiB.
pub const MAX_AUTO_CACHE_MIB: u64 = 512;

/// sled's page cache for the store at `path` when none is set: a 25th of the tree's file,
/// between [`DEFAULT_CACHE_MIB`] and [`MAX_AUTO_CACHE_MIB`]. The regions every ingest reads
/// (referral records, market indexes) grow with the store, and once they outgrow the cache
/// each read decodes a leaf again: on a 10M store (13 GB) ingest took ~35 % less time with
/// 512 MiB than with 64 (docs/benchmarks.md). The cache fills only as pages are read, so a
/// restart's memory does not grow with it.
pub fn auto_cache_bytes(path: &Path) -> u64 {
    let tree = std::fs::metadata(path.join("db")).map_or(0, |m| m.len());
    (tree / 25).clamp(DEFAULT_CACHE_MIB << 20, MAX_AUTO_CACHE_MIB << 20)
}

/// The store format this build reads and writes. Version 17 keeps each referral's nearest
/// ancestors in its hop record (see `hops`), in a set of runs of its own (`chains`): an
/// older build would not find the records. Version 16 keeps the market index in run
/// files beside the tree (see `market`), and one key per market in the tree: an older build
/// would list no attestation of any market. Version 15 keeps the entries of valid
/// attestations in run files beside the tree (see `valid`): an older build would not find
/// them. Version 14 keeps the envelopes of valid
/// attestations in a log beside the tree (see `envelopes`), their entries a reference: an
/// older build would read the reference as the envelope. Version 13 keeps the referrals' hop records
/// in run files beside the tree (see `hops`), not under HOP keys. Version 12 keeps the
/// receipts' orders in run files beside the tree (see `orders`), not in packs in the tree. Version 11 journals shipments, with the
/// ledger lines and receipts' orders they changed, in a file beside the tree (see `journal`),
/// not in a redo record and keys written and then deleted; version 10 keeps a compact hop record per valid referral (see `hops`); version 9 keeps loose attestations within budgets (see
/// `loose`). Version 8 indexes under each market what its
/// ledger depends on outside it (see `dependency`), and follows only the markets in `FOLLOW`:
/// a version 7 store has the index built and every market it holds something of followed
/// when it opens (what it followed before), then is marked 8.
/// Version 7 indexes what does not count
/// (pending by when it became pending, invalid ids by when they were found) and counts it, so
/// that it expires (see `expiry`); waiter keys hold the time: an older build would leave the
/// index stale. Older stores have the index built when they open (`expiry::index_existing`),
/// their entries dated 0, so that the first expiry drops them.
/// Version 6 keeps each offer's totals (sales,
/// revenue, shares paid) as book lines beside the ledger lines (see `ledger::offer_line`),
/// updated by every receipt that starts or stops counting: an older build would leave them
/// stale. A version 5 store has them computed once when it opens (every counted receipt of
/// every market: ~26 s for a million on two cores), then is marked 6.
/// Version 5 writes shipments key by key after
/// a redo record (see `redo`): an older build would not complete a shipment cut short; and it
/// logs receipts' orders in runs (see `orders`), keeping ORDER keys for equivocations only
/// (`log_orders` converts older stores).
/// Version 4 indexes markets in runs (one key per market per batch, see `market`); version 3
/// journals ledger lines between checkpoints (`book`) and keeps one ORDER key per order. Older
/// stores are upgraded when opened and marked 5 (then 6, as above), so that an older build refuses them: each
/// has its orders logged (market keys of version 3 are runs of one, and none has a redo
/// record); a version 2 store first has its ORDER keys regrouped (see `upgrade_orders`; its
/// lines are a checkpoint with an empty journal).
pub const FORMAT_VERSION: u32 = 17;

/// The format whose stores index every valid attestation in its market's runs: opened by
/// this build as they are (all of them anchored, see `loose`), then marked current, so that an
/// older build, which would not see loose attestations, refuses them.
const WITHOUT_LOOSE: u32 = 8;

/// The format whose stores keep no hop records (see `hops`): opened as they are (a walk reads
/// the entries of the referrals held before), then marked current, so that an older build,
/// which would leave the hop of a referral it drops, refuses them.
const WITHOUT_HOPS: u32 = 9;

/// The format whose stores journal in the tree: opened as they are (their journal keys and
/// order runs are read, and the next checkpoint moves them into the lines and packs), then
/// marked current, so that an older build, which would not read the journal file, refuses
/// them.
const WITHOUT_JOURNAL_FILE: u32 = 10;

/// The format whose stores pack the receipts' orders in the tree: opened as they are (the
/// packs are read and written as a run at once, see `orders`), then marked current, so that
/// an older build, which would not read the runs, refuses them.
const WITHOUT_ORDER_RUNS: u32 = 11;

/// The format whose stores keep hop records under HOP keys in the tree: opened as they are
/// (the records are read and written as a run at once, see `hops`), then marked current, so
/// that an older build, which would not read the runs, refuses them.
const WITHOUT_HOP_RUNS: u32 = 12;

/// The format whose stores keep every envelope in the tree: opened by marking the store
/// current (new valid entries go to the log; older ones stay in the tree, and both are read).
const WITHOUT_ENVELOPE_LOG: u32 = 13;

/// The format whose stores keep valid entries in the tree: opened by marking the store
/// current (new valid entries go to runs; older ones stay in the tree, and both are read).
const WITHOUT_VALID_RUNS: u32 = 14;

/// The format whose stores keep the market index in the tree: opened by marking the store
/// current; the index moves to runs as the store opens (see `market`).
const WITHOUT_MARKET_RUNS: u32 = 15;

/// The format whose hop records carry no ancestors, in the `hops` runs: opened by marking
/// the store current; the records move to the `chains` runs as the store opens (see `hops`).
const WITHOUT_CHAINS: u32 = 16;

/// Older formats this build upgrades in place when it opens them.
const UPGRADES_FROM: [u32; 8] = [2, 3, 4, 5, 6, 7, 8, 9];

/// The format whose stores lack only the dependency index (and explicit follows).
const WITHOUT_DEPENDENCIES: u32 = 7;

/// The format whose stores lack the offers' totals (and the expiry index).
const WITHOUT_OFFER_TOTALS: u32 = 5;

/// The format whose stores lack only the expiry index.
const WITHOUT_EXPIRY_INDEX: u32 = 6;

/// Where an attestation stands, as the store reports it: the protocol's outcome, with the
/// invalid reason as kept (its code and text).
pub type Status = Outcome<Rejection>;

/// The store's answer for one attestation of an ingest (or one it unblocked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The attestation.
    pub id: Id,
    /// Where it stands now.
    pub status: Status,
    /// It was already stored; nothing changed.
    pub duplicate: bool,
    /// Set when the store answered it without keeping it (a storage bound, not validity: it
    /// may be offered again; see [`ExpiryLimits`]).
    pub not_kept: Option<NotKept>,
    /// For an attestation that became valid in this ingest call, its market (as
    /// [`Store::market_of`] would answer, without reading it back); `None` otherwise.
    pub market: Option<PublicKey>,
}

impl From<&Report> for Ack {
    fn from(r: &Report) -> Ack {
        Ack {
            id: r.id,
            status: Status::from(&r.outcome),
            duplicate: r.duplicate,
            not_kept: None,
            market: None,
        }
    }
}

/// A cached ledger summary: the book's version of the seller when computed, lines, root.
type Summary = (u64, usize, [u8; 32]);

/// An offer's totals over its counted receipts (a refunded receipt still counts here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfferTotals {
    /// Counted receipts.
    pub sales: u64,
    /// Their amounts, minor units.
    pub revenue_minor: u128,
    /// What they paid the chains and connectors, minor units.
    pub shares_minor: u128,
}

/// The durable store (see the crate docs). Cheap to share behind an `Arc`; ingests are
/// serialised, reads run concurrently.
pub struct Store {
    /// The tree, the journal and what it replays, the writer lock, checkpoints (see
    /// `commit`).
    commit: Commit,
    valid: cache::ValidCache,
    /// Ledger summaries by seller.
    summaries: Mutex<rustc_hash::FxHashMap<PublicKey, Summary>>,
    /// Markets' reconciled sets in short (see `summary`).
    sets: summary::Summaries,
    invalid: cache::InvalidIds,
    /// Signers' keys decompressed by earlier calls (a seller signs every receipt).
    keys: passalong_protocol::signature::KeyCache,
    /// What ingest calls have seen (the node's metrics).
    counters: counters::Counters,
    /// Loose attestations sent and dropped over budget lately (see `loose::Declined`).
    declined: loose::Declined,
    /// See `loose::Hints`.
    hints: loose::Hints,
    /// The store may hold WAITER keys: set when one is written, read again at each open.
    waiters: std::sync::atomic::AtomicBool,
    /// [`SHIPMENT`] (tests set less, to make a call of a few hundred several shipments).
    shipment: usize,
    /// The bounds on what does not count (see `expiry`).
    limits: Mutex<ExpiryLimits>,
    /// An expiry pass is due whatever the index says: set at open (the clock may have moved,
    /// and a store written before format 7 may hold held attestations beyond the horizon).
    expire_due: std::sync::atomic::AtomicBool,
}

pub(crate) fn open_error(path: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(ref io)
            if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") =>
        {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        sled::Error::Corruption { .. } => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        e => StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

impl Store {
    /// Opens (or creates) the store in directory `path`, with a page cache sized by the
    /// store ([`auto_cache_bytes`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        Store::open_with_cache(path, auto_cache_bytes(path))
    }

    /// Opens with a page cache of `cache_bytes` (sled's default is 1 GiB; we bound memory).
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: u64) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let lock = lock::DirLock::take(path)?;
        let (db, due) = open_db_upgrading(path, cache_bytes)?;
        let invalid = cache::InvalidIds::load(&db)?;
        let waiters = has_waiters(&db)?;
        let hints = loose::Hints::load(&db)?;
        let store = Store {
            commit: Commit::open(path, cache_bytes, lock, db)?,
            valid: cache::ValidCache::new(),
            summaries: Default::default(),
            sets: Default::default(),
            invalid,
            keys: Default::default(),
            counters: Default::default(),
            declined: Default::default(),
            hints,
            waiters: std::sync::atomic::AtomicBool::new(waiters),
            shipment: SHIPMENT,
            limits: Mutex::new(ExpiryLimits::default()),
            expire_due: std::sync::atomic::AtomicBool::new(true),
        };
        if due.totals {
            store.upgrade_offer_totals().map_err(corrupt_at(path))?;
        }
        if due.dependencies {
            store.upgrade_dependencies().map_err(corrupt_at(path))?;
        }
        Ok(store)
    }

    /// Format 5 → 6: every offer's totals, from every counted receipt of every market, written
    /// with the ledger lines (a checkpoint), then the format. Cut short, it starts again at the
    /// next open (the totals are set, not added to).
    fn upgrade_offer_totals(&self) -> Result<(), StoreError> {
        let _w = self.commit.lock_writes();
        let db = self.db()?;
        let mut totals: rustc_hash::FxHashMap<Id, [u128; 3]> = Default::default();
        {
            let t = self.txn(&db);
            for m in self.markets()? {
                for (_, id, kind) in self.market(&m)? {
                    if kind != Kind::Receipt as u8 {
                        continue;
                    }
                    if let Some((offer, d)) = ledger::totals_of(&t, &id) {
                        let s = totals.entry(offer).or_default();
                        for (x, d) in s.iter_mut().zip(d) {
                            *x += d;
                        }
                    }
                }
            }
            if let Some(e) = t.take_error() {
                return Err(e);
            }
        }
        {
            let mut book = self
                .commit
                .book()
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for (offer, s) in totals {
                book.put(ledger::offer_line(&offer), s);
            }
        }
        self.commit.write_book(&db)?;
        db.insert(key(META, &[b"format"]), &WITHOUT_DEPENDENCIES.to_be_bytes())?;
        db.flush()?;
        Ok(())
    }

    /// Format 7 → 8: the dependency index (see `dependency`), and every market the store
    /// holds something of followed explicitly (format 7 followed them all), then the format.
    /// Cut short, it starts again at the next open (it only sets keys).
    fn upgrade_dependencies(&self) -> Result<(), StoreError> {
        let _w = self.commit.lock_writes();
        let db = self.db()?;
        let markets = self.markets()?;
        let mut ends = Vec::new();
        for m in &markets {
            for (_, id, kind) in self.market(m)? {
                if kind == Kind::MembershipEnd as u8 {
                    ends.push(id);
                }
            }
        }
        let mut t = self.txn(&db);
        dependency::index_existing(&mut t, &ends);
        for m in &markets {
            t.put(key(FOLLOW, &[&m.0]), vec![]);
        }
        self.commit(&db, t)?;
        db.insert(key(META, &[b"format"]), &FORMAT_VERSION.to_be_bytes())?;
        db.flush()?;
        Ok(())
    }

    /// Sets how many attestations written trigger a checkpoint (0: never).
    pub fn set_checkpoint_every(&self, n: u64) {
        self.commit.set_checkpoint_every(n);
    }

    /// Checkpoints taken since the store was opened.
    pub fn checkpoints(&self) -> u64 {
        self.commit.checkpoints()
    }

    /// Makes the next start after a crash fast (see `Commit::checkpoint_locked`): ingest
    /// calls it every [`CHECKPOINT_EVERY`] attestations; calls wait while it runs. Like a
    /// write, it reopens the store first if a write failed on an I/O error, and a failure of
    /// its own on one makes the next write reopen it.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let _w = self.write_lock()?;
        self.commit
            .note_failure(self.commit.checkpoint_locked(|db| self.reopened(db)))
    }

    /// What is kept of the tree, read again after it was reopened at a checkpoint.
    fn reopened(&self, db: &sled::Db) -> Result<(), StoreError> {
        self.waiters.store(has_waiters(db)?, Ordering::Relaxed);
        Ok(())
    }

    /// What is kept in memory of the tree, read again after a write failed on an I/O error
    /// and the tree was reopened (caches are dropped).
    fn reload(&self, db: &sled::Db) -> Result<(), StoreError> {
        self.invalid.reload(db)?;
        self.hints.reset(db)?;
        self.valid.clear();
        self.sets.clear();
        self.summaries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.reopened(db)
    }

    /// The writer lock, with the store reopened first if a write failed on an I/O error.
    fn write_lock(&self) -> Result<std::sync::MutexGuard<'_, ()>, StoreError> {
        self.commit.write_lock(|db| self.reload(db))
    }

    /// Journals a transaction's writes (so far) and applies them to the tree, then their
    /// effects in memory.
    fn apply(&self, db: &sled::Db, mut shipment: txn::Shipment) -> Result<(), StoreError> {
        let parts = commit::Parts {
            lines: &shipment.lines,
            orders: &shipment.orders,
            writes: &mut shipment.writes,
        };
        self.commit.apply(db, parts)?;
        self.applied(shipment);
        Ok(())
    }

    /// Applies `shipments` as one: one journal record with the latest write of each key, then
    /// their effects in memory, in order.
    fn apply_together(
        &self,
        db: &sled::Db,
        mut shipments: Vec<txn::Shipment>,
    ) -> Result<(), StoreError> {
        if shipments.len() == 1 {
            return self.apply(db, shipments.remove(0));
        }
        let mut merged = writer::merge_all(&mut shipments);
        let parts = commit::Parts {
            lines: &merged.lines,
            orders: &merged.orders,
            writes: &mut merged.writes,
        };
        self.commit.apply(db, parts)?;
        for s in shipments {
            self.applied(s);
        }
        Ok(())
    }

    /// A shipment's effects in memory, once its writes are in.
    fn applied(&self, shipment: txn::Shipment) {
        self.sets.shipped(&shipment);
        self.invalid.forget(&shipment.forgotten);
        self.valid.shipped_referrals(&shipment.referrals);
        for id in &shipment.dropped {
            self.valid.remove(id);
        }
        self.commit
            .applied(shipment.lines, shipment.counted, shipment.hops);
    }

    /// The store with its shipments applied by `disk` (tests make the disk fail).
    #[cfg(test)]
    fn with_disk(mut self, disk: std::sync::Arc<dyn commit::Disk>) -> Store {
        self.commit = self.commit.with_disk(disk);
        self
    }

    /// The store with a large call's shipments of `n` fresh attestations.
    #[cfg(test)]
    fn with_shipment(mut self, n: usize) -> Store {
        self.shipment = n;
        self
    }

    /// Applies a transaction as one shipment (durable once applied: its journal record is
    /// synced first).
    fn commit(&self, db: &sled::Db, mut t: Txn<'_>) -> Result<(), StoreError> {
        if let Some(shipment) = t.take_batch()? {
            self.apply(db, shipment)?;
        }
        Ok(())
    }

    /// Counts `n` attestations written; checkpoints when due (the caller holds the writer
    /// lock and no database guard).
    fn written(&self, n: u64) -> Result<(), StoreError> {
        self.commit.written(n, |db| self.reopened(db))
    }
}

pub(crate) fn open_db(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let (db, due) = open_db_upgrading(path, cache_bytes)?;
    if due.totals || due.dependencies {
        // Only `Store::open_with_cache` completes those upgrades.
        return Err(StoreError::WrongVersion {
            path: path.to_path_buf(),
            found: WITHOUT_DEPENDENCIES.to_string(),
            expected: FORMAT_VERSION,
        });
    }
    Ok(db)
}

/// What an upgrade leaves to do once the store is open.
#[derive(Default)]
struct Due {
    /// The offers' totals (see [`Store::upgrade_offer_totals`]).
    totals: bool,
    /// The dependency index and explicit follows (see [`Store::upgrade_dependencies`]).
    dependencies: bool,
}

/// Opens the database, upgrading an older format as far as the tree alone allows, and says
/// what is left to do.
fn open_db_upgrading(path: &Path, cache_bytes: u64) -> Result<(sled::Db, Due), StoreError> {
    remove_partial_snapshots(path)?;
    {
        // sled releases its file lock from background threads shortly after the last handle
        // is dropped: a store reopened at once (a restart in the same process) waits briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            match sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                // The journal makes what is acknowledged durable, and checkpoints flush the
                // tree; sled's own flusher thread would only compete for the cores and the
                // disk (after a power loss, opening writes again from the journal what sled
                // had not flushed).
                .flush_every_ms(None)
                .open()
                .map_err(|e| open_error(path, e))
            {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let vk = key(META, &[b"format"]);
        let mut due = Due::default();
        match db.get(&vk).map_err(|e| open_error(path, e))? {
            Some(v) if v.as_ref() == FORMAT_VERSION.to_be_bytes() => {
                redo::recover(&db).map_err(|e| match e {
                    StoreError::Io(e) => open_error(path, e),
                    e => corrupt_at(path)(e),
                })?;
            }
            Some(v)
                if v.as_ref() == WITHOUT_LOOSE.to_be_bytes()
                    || v.as_ref() == WITHOUT_HOPS.to_be_bytes()
                    || v.as_ref() == WITHOUT_JOURNAL_FILE.to_be_bytes()
                    || v.as_ref() == WITHOUT_ORDER_RUNS.to_be_bytes()
                    || v.as_ref() == WITHOUT_HOP_RUNS.to_be_bytes()
                    || v.as_ref() == WITHOUT_ENVELOPE_LOG.to_be_bytes()
                    || v.as_ref() == WITHOUT_VALID_RUNS.to_be_bytes()
                    || v.as_ref() == WITHOUT_MARKET_RUNS.to_be_bytes()
                    || v.as_ref() == WITHOUT_CHAINS.to_be_bytes() =>
            {
                redo::recover(&db).map_err(|e| match e {
                    StoreError::Io(e) => open_error(path, e),
                    e => corrupt_at(path)(e),
                })?;
                db.insert(&vk, &FORMAT_VERSION.to_be_bytes())
                    .map_err(|e| open_error(path, e))?;
                db.flush().map_err(|e| open_error(path, e))?;
            }
            Some(v) if v.as_ref() == WITHOUT_DEPENDENCIES.to_be_bytes() => {
                redo::recover(&db).map_err(|e| match e {
                    StoreError::Io(e) => open_error(path, e),
                    e => corrupt_at(path)(e),
                })?;
                due.dependencies = true;
            }
            Some(v) if v.as_ref() == WITHOUT_EXPIRY_INDEX.to_be_bytes() => {
                redo::recover(&db).map_err(|e| match e {
                    StoreError::Io(e) => open_error(path, e),
                    e => corrupt_at(path)(e),
                })?;
                expiry::index_existing(&db).map_err(|e| open_error(path, e))?;
                db.insert(&vk, &WITHOUT_DEPENDENCIES.to_be_bytes())
                    .map_err(|e| open_error(path, e))?;
                db.flush().map_err(|e| open_error(path, e))?;
                due.dependencies = true;
            }
            Some(v) if v.as_ref() == WITHOUT_OFFER_TOTALS.to_be_bytes() => {
                redo::recover(&db).map_err(|e| match e {
                    StoreError::Io(e) => open_error(path, e),
                    e => corrupt_at(path)(e),
                })?;
                // Built again at each open until the totals are done (it is idempotent).
                expiry::index_existing(&db).map_err(|e| open_error(path, e))?;
                due.totals = true;
                due.dependencies = true;
            }
            Some(v) if UPGRADES_FROM.iter().any(|o| v.as_ref() == o.to_be_bytes()) => {
                if v.as_ref() == 2u32.to_be_bytes() {
                    upgrade_orders(&db).map_err(|e| open_error(path, e))?;
                }
                log_orders(&db).map_err(|e| open_error(path, e))?;
                expiry::index_existing(&db).map_err(|e| open_error(path, e))?;
                db.insert(&vk, &WITHOUT_OFFER_TOTALS.to_be_bytes())
                    .map_err(|e| open_error(path, e))?;
                db.flush().map_err(|e| open_error(path, e))?;
                due.totals = true;
                due.dependencies = true;
            }
            Some(v) => {
                return Err(StoreError::WrongVersion {
                    path: path.to_path_buf(),
                    found: format!("{v:?}"),
                    expected: FORMAT_VERSION,
                })
            }
            None if db.is_empty() => {
                db.insert(&vk, &FORMAT_VERSION.to_be_bytes())
                    .map_err(|e| open_error(path, e))?;
                db.flush().map_err(|e| open_error(path, e))?;
            }
            None => {
                return Err(StoreError::WrongVersion {
                    path: path.to_path_buf(),
                    found: "none (not a passalong store?)".into(),
                    expected: FORMAT_VERSION,
                })
            }
        }
        Ok((db, due))
    }
}

/// Removes snapshots that sled began and never finished. sled 0.34 writes its snapshot while
/// it opens, to `snap.<lsn>.generating`, then renames it to `snap.<lsn>`; but when it opens it
/// reads the snapshot file that sorts last, skipping only `.in___motion` files, so a
/// `.generating` file left by a process killed in the middle (a kill -9 during a start or a
/// checkpoint) is read as the newest snapshot and fails its checksum: "Read corrupted data",
/// and the store never opens again. Nothing is lost by removing it: the open that wrote it
/// died before it wrote anything else, and the last finished snapshot and the log after it
/// hold everything. The caller holds the directory's lock, so no other process is writing one.
fn remove_partial_snapshots(path: &Path) -> Result<(), StoreError> {
    let failed = |e: std::io::Error| StoreError::Open {
        path: path.to_path_buf(),
        source: sled::Error::Io(e),
    };
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    for entry in entries {
        let entry = entry.map_err(failed)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// A stored record that does not decode at open is damage like any other: the error says
/// where and what to do.
pub(crate) fn corrupt_at(path: &Path) -> impl Fn(StoreError) -> StoreError + '_ {
    move |e| match e {
        StoreError::Record { .. } => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        e => e,
    }
}

/// Whether any attestation waits for another.
fn has_waiters(db: &sled::Db) -> Result<bool, StoreError> {
    Ok(db.scan_prefix([WAITER]).next().transpose()?.is_some())
}

/// Format 2 kept one ORDER key per receipt (seller ‖ order ‖ receipt → ()); format 3 keeps one
/// per order, its receipt ids as the value. Regroups them in batches of whole orders, each
/// atomic, so that an upgrade cut short resumes where it stopped at the next open.
fn upgrade_orders(db: &sled::Db) -> sled::Result<()> {
    const OLD_LEN: usize = 1 + 32 + 32 + 32;
    const NEW_LEN: usize = 1 + 32 + 32;
    let mut from = vec![ORDER];
    loop {
        let mut batch = sled::Batch::default();
        let mut group: Option<(Vec<u8>, Vec<u8>)> = None;
        let mut seen = 0usize;
        let mut last = None;
        let mut done = true;
        for kv in db.range(from.clone()..) {
            let (k, _) = kv?;
            if k.first() != Some(&ORDER) {
                break;
            }
            if k.len() != OLD_LEN {
                continue;
            }
            let (order, id) = (&k[..NEW_LEN], Id(id_at(&k, NEW_LEN)));
            if group.as_ref().is_some_and(|(g, _)| g.as_slice() != order) {
                // A whole order is gathered: stop here if the batch is big enough.
                if seen >= 10_000 {
                    done = false;
                    break;
                }
                if let Some((g, ids)) = group.take() {
                    write_group(db, &mut batch, g, ids)?;
                }
            }
            let (_, ids) = group.get_or_insert_with(|| (order.to_vec(), Vec::new()));
            index::insert_id(ids, &id);
            batch.remove(k.clone());
            last = Some(k);
            seen += 1;
        }
        if let Some((g, ids)) = group.take() {
            write_group(db, &mut batch, g, ids)?;
        }
        db.apply_batch(batch)?;
        match (done, last) {
            (false, Some(k)) => from = k.to_vec(),
            _ => return db.flush().map(|_| ()),
        }
    }
}

/// Before format 5 every order had its ORDER key; format 5 logs receipts' orders in runs (see
/// `orders`) and keeps ORDER keys only for orders with more than one receipt. Converts 10,000
/// orders per atomic batch (their records packed, and their keys dropped if single): an upgrade cut short
/// resumes at the next open (orders logged twice load the same).
fn log_orders(db: &sled::Db) -> sled::Result<()> {
    let mut from = vec![ORDER];
    loop {
        let mut batch = sled::Batch::default();
        let mut records = Vec::new();
        let mut last = None;
        for kv in db.range(from.clone()..).take(10_000) {
            let (k, ids) = kv?;
            if k.first() != Some(&ORDER) {
                break;
            }
            let order = orders::order_key(&PublicKey(id_at(&k, 1)), &id_at(&k, 33));
            records.extend(ids.chunks_exact(32).map(|id| (order, Id(id_at(id, 0)))));
            if ids.len() <= 32 {
                batch.remove(k.clone());
            }
            last = Some(k);
        }
        if let Some((k, v)) = orders::pack_of(&records) {
            batch.insert(k, v);
        }
        db.apply_batch(batch)?;
        match last {
            Some(k) => from = [k.as_ref(), &[0]].concat(),
            None => return db.flush().map(|_| ()),
        }
    }
}

/// Adds a regrouped order to `batch`, merged with what an earlier batch wrote for it.
fn write_group(
    db: &sled::Db,
    batch: &mut sled::Batch,
    order: Vec<u8>,
    mut ids: Vec<u8>,
) -> sled::Result<()> {
    if let Some(earlier) = db.get(&order)? {
        for id in earlier.chunks_exact(32) {
            index::insert_id(&mut ids, &Id(id_at(id, 0)));
        }
    }
    batch.insert(order, ids);
    Ok(())
}

impl Store {
    /// The store's directory.
    pub fn path(&self) -> &Path {
        self.commit.path()
    }

    fn db(&self) -> Result<commit::DbGuard<'_>, StoreError> {
        self.commit.db()
    }

    fn txn<'a>(&'a self, db: &'a sled::Db) -> Txn<'a> {
        Txn::new(
            db,
            &self.valid,
            &self.commit,
            &self.invalid,
            &self.waiters,
            &self.hints,
        )
    }

    /// Checks and stores envelopes; returns one ack per envelope, in order, then one per
    /// attestation they unblocked. Returns only once everything is flushed to disk.
    pub fn ingest(&self, envelopes: &[&[u8]], now_ms: u64) -> Result<Vec<Ack>, StoreError> {
        self.ingest_from(envelopes, now_ms, false)
    }

    /// [`Store::ingest`] for what the node's own API stores (its own acts, the links its user
    /// opens, its imports): anchored, with the chains above, never dropped as loose (see
    /// `loose`).
    pub fn ingest_own(&self, envelopes: &[&[u8]], now_ms: u64) -> Result<Vec<Ack>, StoreError> {
        self.ingest_from(envelopes, now_ms, true)
    }

    fn ingest_from(
        &self,
        envelopes: &[&[u8]],
        now_ms: u64,
        own: bool,
    ) -> Result<Vec<Ack>, StoreError> {
        let started = std::time::Instant::now();
        let acks = if envelopes.len() < stage1::PRECHECK_MIN {
            self.ingest_checked(envelopes, now_ms, own, None)?
        } else {
            // Helpers start stage 1 before the writer lock is taken, so that one call verifies
            // while another writes.
            let work = stage1::Stage1::new(self, envelopes);
            work.run(|results| self.ingest_checked(envelopes, now_ms, own, Some(results)))?
        };
        self.counters.add(&acks, started.elapsed());
        Ok(acks)
    }

    /// Whether `id` was sent lately (within [`loose::DECLINE_MS`] of `now_ms`) and dropped at
    /// once over its budget: fetching it again would only drop it again. A hint kept in
    /// memory, so that anti-entropy with a peer that keeps more of an author (its own
    /// referrals) does not fetch the same ones at every session.
    pub fn declined(&self, id: &Id, now_ms: u64) -> bool {
        self.declined.holds(id, now_ms)
    }

    /// What ingest calls have seen since the store was opened.
    pub fn ingest_counters(&self) -> IngestCounters {
        self.counters.get()
    }

    /// Transactions committed so far.
    fn commits(&self) -> u64 {
        self.commit.commits()
    }

    /// Whether `id` is stored (as of the last commit; false if the store is closed).
    fn is_stored(&self, id: &Id) -> bool {
        let Ok(db) = self.db() else { return false };
        self.txn(&db).is_stored(id)
    }

    /// Stage 2 and the write, under the writer lock; stage 1 comes from `pre` when the caller
    /// started it, or runs here on the envelopes not stored yet.
    fn ingest_checked(
        &self,
        envelopes: &[&[u8]],
        now_ms: u64,
        own: bool,
        pre: Option<&mut stage1::Results<'_, '_>>,
    ) -> Result<Vec<Ack>, StoreError> {
        let _w = self.write_lock()?;
        let acks = self
            .commit
            .note_failure(self.ingest_locked(envelopes, now_ms, own, pre))?;
        self.commit
            .note_failure(self.written(acks.iter().filter(|a| !a.duplicate).count() as u64))?;
        Ok(acks)
    }

    /// [`Store::ingest_checked`] under the writer lock.
    fn ingest_locked(
        &self,
        envelopes: &[&[u8]],
        now_ms: u64,
        own: bool,
        pre: Option<&mut stage1::Results<'_, '_>>,
    ) -> Result<Vec<Ack>, StoreError> {
        let ids: Vec<Id> = envelopes.iter().map(|e| Id::of_envelope(e)).collect();
        let limits = self.expiry_limits();
        let db = self.db()?;
        let mut t = self.txn(&db);
        t.own = own;
        let mut d = Decided::default();
        let markets = match pre {
            Some(pre) => {
                // Envelope by envelope, as stage 1 delivers them; every READ_AHEAD fresh ones,
                // what they wrote goes to the call's writer thread, which reads its keys ahead
                // while stage 2 goes on, and applies what it holds every SHIPMENT.
                let writer = writer::Writer::new(self, &db);
                std::thread::scope(|s| -> Result<(), StoreError> {
                    let w = &writer;
                    let thread = s.spawn(move || w.run());
                    // If stage 2 panics, the writer still stops (the scope joins it).
                    let _close = writer::CloseOnDrop(w);
                    let mut shipped = Ok(true);
                    let mut since_ship = 0;
                    let mut since_apply = 0;
                    let commits = self.commits();
                    for (i, id) in ids.iter().enumerate() {
                        let item = pre.take(i);
                        // Being stored never ends; not being stored holds if nothing committed
                        // since the helper looked.
                        let unchanged = item.commits == commits;
                        let stored = item.stored || (!unchanged && t.is_stored(id));
                        if !d.first(&t, *id, stored) {
                            continue;
                        }
                        let checked = item
                            .checked
                            .unwrap_or_else(|| validation::check(envelopes[i]));
                        ingest::ingest(
                            &mut t,
                            [(*id, checked)],
                            now_ms,
                            &limits,
                            &mut d.reports,
                            &mut d.not_kept,
                        );
                        since_ship += 1;
                        since_apply += 1;
                        let apply = since_apply == self.shipment;
                        if since_ship == READ_AHEAD || apply {
                            since_ship = 0;
                            if apply {
                                since_apply = 0;
                            }
                            // false: the writer stopped (its error comes with the join).
                            shipped = t.take_batch().map(|s| s.is_none_or(|s| w.ship(s, apply)));
                            if !matches!(shipped, Ok(true)) {
                                break;
                            }
                        }
                    }
                    if own {
                        loose::anchor_known(&mut t, &ids, &d.known);
                    }
                    self.counters.ledger(t.ledger_updates.0, t.ledger_updates.1);
                    let finished = match shipped {
                        Ok(true) => t
                            .take_batch()
                            .and_then(|last| w.finish(last, self.commit.merges_tail())),
                        Ok(false) => w.finish(None, false),
                        Err(e) => w.finish(None, false).and(Err(e)),
                    };
                    thread
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
                    finished?;
                    w.seal()
                })?;
                writer.settle();
                std::mem::take(&mut t.markets)
            }
            None => {
                let fresh: Vec<usize> = (0..ids.len())
                    .filter(|&i| d.first(&t, ids[i], t.is_stored(&ids[i])))
                    .collect();
                let fresh_envs: Vec<&[u8]> = fresh.iter().map(|&i| envelopes[i]).collect();
                let checked = fresh
                    .iter()
                    .map(|&i| ids[i])
                    .zip(stage1::check_parallel(&fresh_envs, &self.keys));
                ingest::ingest(
                    &mut t,
                    checked,
                    now_ms,
                    &limits,
                    &mut d.reports,
                    &mut d.not_kept,
                );
                if own {
                    loose::anchor_known(&mut t, &ids, &d.known);
                }
                self.counters.ledger(t.ledger_updates.0, t.ledger_updates.1);
                let markets = std::mem::take(&mut t.markets);
                self.commit(&db, t)?;
                markets
            }
        };
        let Decided {
            known,
            first_in_call,
            reports,
            not_kept,
            ..
        } = d;
        let not_kept: std::collections::HashMap<Id, NotKept> = not_kept.into_iter().collect();
        self.declined.note(
            not_kept
                .iter()
                .filter(|(_, n)| **n == NotKept::OverBudget)
                .map(|(id, _)| id),
            now_ms,
        );
        // One ack per envelope in input order (its latest status), then the ones they unblocked.
        let mut latest: std::collections::HashMap<Id, Status> = std::collections::HashMap::new();
        for r in &reports {
            latest.insert(r.id, Status::from(&r.outcome));
        }
        let inputs: std::collections::HashSet<Id> = ids.iter().copied().collect();
        let mut out: Vec<Ack> = ids
            .iter()
            .zip(known)
            .zip(first_in_call)
            .map(|((id, known), first)| Ack {
                id: *id,
                // What this call decided wins over what was stored before it (a stored pending
                // attestation may have become valid with this call's envelopes).
                status: latest
                    .get(id)
                    .cloned()
                    .or(known)
                    .unwrap_or(Status::Pending { missing: vec![] }),
                duplicate: !first,
                not_kept: not_kept.get(id).copied(),
                market: markets.get(id).copied(),
            })
            .collect();
        let mut unblocked: Vec<Id> = Vec::new();
        for r in &reports {
            if !inputs.contains(&r.id) && !unblocked.contains(&r.id) {
                unblocked.push(r.id);
            }
        }
        out.extend(unblocked.into_iter().filter_map(|id| {
            latest.remove(&id).map(|status| Ack {
                id,
                status,
                duplicate: false,
                not_kept: None,
                market: markets.get(&id).copied(),
            })
        }));
        Ok(out)
    }

    /// Releases held attestations whose time has come, then expires what is due (see
    /// [`Store::expire`]); call it at [`Store::next_release_ms`]. Returns the released ones'
    /// acks (and those they unblocked).
    pub fn tick(&self, now_ms: u64) -> Result<Vec<Ack>, StoreError> {
        let _w = self.write_lock()?;
        self.commit.note_failure(self.tick_locked(now_ms))
    }

    fn tick_locked(&self, now_ms: u64) -> Result<Vec<Ack>, StoreError> {
        let limits = self.expiry_limits();
        let mut reports = Vec::new();
        loop {
            let db = self.db()?;
            let mut t = self.txn(&db);
            let mut released = Vec::new();
            let more = ingest::tick(&mut t, now_ms, &limits, expiry::EXPIRE_BATCH, &mut released);
            if released.is_empty() {
                t.take_error().map_or(Ok(()), Err)?;
                break;
            }
            self.commit(&db, t)?;
            reports.append(&mut released);
            if !more {
                break;
            }
        }
        self.expire_locked(now_ms)?;
        Ok(reports.iter().map(Ack::from).collect())
    }

    /// Drops what does not count and whose time has passed at `now_ms`: pending attestations
    /// past [`PENDING_TTL_MS`], invalid ids past [`INVALID_TTL_MS`], held ones beyond the
    /// horizon (see [`ExpiryLimits`]), with their index and waiter keys. Returns how many of
    /// each it dropped. The caller passes the time: the store reads no clock for this.
    pub fn expire(&self, now_ms: u64) -> Result<Unsettled, StoreError> {
        let _w = self.write_lock()?;
        self.commit.note_failure(self.expire_locked(now_ms))
    }

    /// [`Store::expire`] under the writer lock, one transaction per `EXPIRE_BATCH` removals.
    fn expire_locked(&self, now_ms: u64) -> Result<Unsettled, StoreError> {
        let limits = self.expiry_limits();
        let mut dropped = Unsettled::default();
        loop {
            let db = self.db()?;
            let mut t = self.txn(&db);
            let before = dropped;
            let more =
                expiry::expire_some(&mut t, &limits, now_ms, expiry::EXPIRE_BATCH, &mut dropped);
            if dropped != before {
                self.commit(&db, t)?;
            } else if let Some(e) = t.take_error() {
                return Err(e);
            }
            if !more {
                break;
            }
        }
        self.expire_due.store(false, Ordering::Relaxed);
        Ok(dropped)
    }

    /// When [`Store::tick`] has work next: a held attestation's release or an expiry (at
    /// once after opening: see `expire_due`).
    pub fn next_release_ms(&self) -> Result<Option<u64>, StoreError> {
        if self.expire_due.load(Ordering::Relaxed) {
            return Ok(Some(0));
        }
        let db = self.db()?;
        let held = db
            .scan_prefix([HELD])
            .next()
            .transpose()?
            .map(|(k, _)| u64_at(&k, 1));
        let expiry = expiry::next_due_ms(&db, &self.expiry_limits())?;
        Ok(match (held, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Sets the bounds on what does not count (the defaults are [`ExpiryLimits::default`]).
    pub fn set_expiry_limits(&self, limits: ExpiryLimits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    /// The bounds on what does not count.
    pub fn expiry_limits(&self) -> ExpiryLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many pending and held attestations and invalid ids the store holds.
    pub fn unsettled(&self) -> Result<Unsettled, StoreError> {
        let db = self.db()?;
        let t = self.txn(&db);
        let u = expiry::unsettled(&t);
        t.take_error().map_or(Ok(u), Err)
    }

    /// Bytes the receipts' orders keep in memory (see `orders`).
    pub fn orders_in_memory(&self) -> usize {
        self.commit
            .orders()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .memory()
    }

    /// Bytes the referrals' hop records keep in memory (see `hops`).
    pub fn hops_in_memory(&self) -> usize {
        self.commit
            .hops()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .memory()
    }

    /// Bytes the valid entries' records keep in memory (see `valid`).
    pub fn valid_in_memory(&self) -> usize {
        self.commit
            .valid()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .memory()
    }

    /// Invalid ids' prefixes held in memory (8 bytes each; bounded with `max_invalid`).
    pub fn invalid_ids_in_memory(&self) -> usize {
        self.invalid.len()
    }

    /// Whether the store keeps a hop record for `id` (see `hops`): every valid referral
    /// stored since format 10 has one, a dropped one none. For tests and diagnostics.
    pub fn has_hop_record(&self, id: &Id) -> Result<bool, StoreError> {
        let _open = self.db()?;
        Ok(self
            .commit
            .hops()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)?
            .is_some())
    }

    /// Where `id` stands, if the store has seen it.
    pub fn status(&self, id: &Id) -> Result<Option<Status>, StoreError> {
        let db = self.db()?;
        let t = self.txn(&db);
        let s = ingest::status(&t, id);
        t.take_error().map_or(Ok(s), Err)
    }

    /// The envelope of a stored (valid, pending or held) attestation.
    pub fn envelope(&self, id: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db()?;
        let t = self.txn(&db);
        let e = t.entry(id, |e| e.envelope.0.to_vec());
        t.take_error().map_or(Ok(e), Err)
    }

    /// The market a valid attestation belongs to: its offer's seller, or for community kinds
    /// the connector. `None` if it is not stored or its market is not known yet.
    pub fn market_of(&self, id: &Id) -> Result<Option<PublicKey>, StoreError> {
        let db = self.db()?;
        let t = self.txn(&db);
        let m = t
            .entry(id, |e| e.body())
            .flatten()
            .and_then(|b| index::market_of(&t, &b));
        t.take_error().map_or(Ok(m), Err)
    }

    /// The followed markets whose ledgers depend on the valid attestation `id` (a community,
    /// a membership or its end: the markets where the community is named in a referral, by
    /// the member for a membership): what it goes out under in gossip besides its own market.
    /// Empty for other kinds.
    pub fn dependents(&self, id: &Id) -> Result<Vec<PublicKey>, StoreError> {
        let db = self.db()?;
        let t = self.txn(&db);
        let mut out = t
            .body(id)
            .map(|b| dependency::dependents(&t, id, &b))
            .unwrap_or_default();
        out.retain(|m| t.contains(&key(FOLLOW, &[&m.0])));
        t.take_error().map_or(Ok(out), Err)
    }

    /// Whether `market`'s ledger depends on `att` (a community, membership or end, held or
    /// not): what a node takes under that market's name in gossip.
    pub fn is_dependency_of(
        &self,
        market: &PublicKey,
        att: &Attestation,
    ) -> Result<bool, StoreError> {
        let db = self.db()?;
        let t = self.txn(&db);
        let yes = dependency::dependents(&t, &att.id, &att.body).contains(market);
        t.take_error().map_or(Ok(yes), Err)
    }

    /// Follows a market (durably): the node gossips and reconciles it from now on.
    pub fn follow(&self, market: &PublicKey) -> Result<(), StoreError> {
        let db = self.db()?;
        db.insert(key(FOLLOW, &[&market.0]), vec![])?;
        db.flush()?;
        Ok(())
    }

    /// Follows the markets the stored attestations `ids` belong to (those it can tell); the
    /// markets newly followed. For what the node's own API stores: its own acts and imports.
    pub fn follow_markets_of(&self, ids: &[Id]) -> Result<Vec<PublicKey>, StoreError> {
        let mut markets = Vec::new();
        for id in ids {
            if let Some(m) = self.market_of(id)? {
                markets.push(m);
            }
        }
        markets.sort_unstable();
        markets.dedup();
        let db = self.db()?;
        let mut new = Vec::new();
        for m in markets {
            let k = key(FOLLOW, &[&m.0]);
            if !db.contains_key(&k)? {
                db.insert(k, vec![])?;
                new.push(m);
            }
        }
        if !new.is_empty() {
            db.flush()?;
        }
        Ok(new)
    }

    /// Whether `market` is followed.
    pub fn is_followed(&self, market: &PublicKey) -> Result<bool, StoreError> {
        Ok(self.db()?.contains_key(key(FOLLOW, &[&market.0]))?)
    }

    /// The markets followed: on request, or because the node's own attestations or imports
    /// belong to them (see [`Store::follow`]). A market that only what peers sent belongs to
    /// is not followed: peers cannot grow the set.
    pub fn followed(&self) -> Result<Vec<PublicKey>, StoreError> {
        let mut out = Vec::new();
        for kv in self.db()?.scan_prefix([FOLLOW]) {
            let (k, _) = kv?;
            if k.len() == 33 {
                out.push(PublicKey(id_at(&k, 1)));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The stored attestation `id`, decoded.
    pub fn attestation(&self, id: &Id) -> Result<Option<Attestation>, StoreError> {
        Ok(self
            .envelope(id)?
            .and_then(|b| Attestation::decode(&b).ok()))
    }

    /// A seller's ledger as kept incrementally.
    pub fn ledger(&self, seller: &PublicKey) -> Result<Ledger, StoreError> {
        let _open = self.db()?;
        let book = self.commit.book().read().unwrap_or_else(|p| p.into_inner());
        Ok(ledger::read(&book, seller))
    }

    /// A seller's ledger in short: how many lines it has and its root. Kept until one of its
    /// lines changes, so that a list of ledgers does not recompute every root each time.
    pub fn ledger_summary(&self, seller: &PublicKey) -> Result<(usize, [u8; 32]), StoreError> {
        let _open = self.db()?;
        let book = self.commit.book().read().unwrap_or_else(|p| p.into_inner());
        let version = book.version(&seller.0);
        let mut cache = self.summaries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&(v, lines, root)) = cache.get(seller) {
            if v == version {
                return Ok((lines, root));
            }
        }
        let l = ledger::read(&book, seller);
        let summary = (l.entries.len(), l.root());
        cache.insert(*seller, (version, summary.0, summary.1));
        Ok(summary)
    }

    /// Every ledger line of `participant`, by seller (then currency): the markets it takes
    /// part in, from an in-memory index (it does not read the sellers' ledgers).
    pub fn lines_of(
        &self,
        participant: &PublicKey,
    ) -> Result<Vec<(PublicKey, LedgerEntry)>, StoreError> {
        let _open = self.db()?;
        let book = self.commit.book().read().unwrap_or_else(|p| p.into_inner());
        Ok(book
            .participant(&participant.0)
            .into_iter()
            .map(|(k, [e, r, s])| {
                let mut c = [0u8; 3];
                c.copy_from_slice(&k[32..35]);
                (
                    PublicKey(keyspace::id_at(&k, 0)),
                    LedgerEntry::new(passalong_protocol::Currency(c), *participant, e, r, s),
                )
            })
            .collect())
    }

    /// An offer's totals over its counted receipts, kept as receipts come in.
    pub fn offer_totals(&self, offer: &Id) -> Result<OfferTotals, StoreError> {
        let _open = self.db()?;
        let book = self.commit.book().read().unwrap_or_else(|p| p.into_inner());
        let [sales, revenue_minor, shares_minor] = ledger::offer_totals(&book, offer);
        Ok(OfferTotals {
            sales: u64::try_from(sales).unwrap_or(u64::MAX),
            revenue_minor,
            shares_minor,
        })
    }

    /// What a counted receipt credited, per participant, as the ledger holds it; `None` if
    /// the receipt is not stored or does not count (the dashboard's "sales that paid me").
    pub fn credits(&self, receipt: &Id) -> Result<Option<Vec<(PublicKey, u64)>>, StoreError> {
        let db = self.db()?;
        let t = self.txn(&db);
        let c = ledger::credits(&t, receipt);
        t.take_error().map_or(Ok(c), Err)
    }

    /// A seller's ledger recomputed from scratch from every stored attestation, with the
    /// protocol's in-memory engine (for checks and `verify`; slow on big stores).
    pub fn recompute_ledger(&self, seller: &PublicKey, now_ms: u64) -> Result<Ledger, StoreError> {
        let mut st = State::new();
        let log = self.commit.envelopes();
        self.commit
            .valid()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .for_each(|r| {
                if let Ok(a) = Attestation::decode(&log.read(r.envelope)?) {
                    st.insert_checked(a, now_ms);
                }
                Ok(())
            })?;
        for kv in self.db()?.scan_prefix([ENTRY]) {
            let (_, v) = kv?;
            let Ok(entry) = postcard::from_bytes::<txn::Entry<'_>>(&v) else {
                continue;
            };
            let envelope = match envelopes::Ref::of(entry.envelope.0) {
                Some(r) => std::borrow::Cow::Owned(log.read(r)?),
                None => std::borrow::Cow::Borrowed(entry.envelope.0),
            };
            if let Ok(a) = Attestation::decode(&envelope) {
                st.insert_checked(a, now_ms);
            }
        }
        Ok(st.ledger(seller))
    }

    /// Ids of a market's valid attestations, oldest first, as (created_at_ms, id, kind).
    pub fn market(&self, market: &PublicKey) -> Result<Vec<(u64, Id, u8)>, StoreError> {
        // A kind at a time, in pages: the index is held for one page at a time.
        const PAGE: usize = 1 << 16;
        let mut all = Vec::new();
        for kind in Kind::ALL {
            let mut from = market::From::After(None);
            loop {
                let page = self.with_markets(|ix| ix.page(market, kind as u8, from, PAGE))?;
                all.extend_from_slice(&page);
                match page.last() {
                    Some(last) if page.len() == PAGE => {
                        from = market::From::After(Some(market::rec(market, last)))
                    }
                    _ => break,
                }
            }
        }
        // Loose ones too (see `loose`): the network reconciles them, within their budgets.
        loose::entries(&*self.db()?, market, &mut all)?;
        // Runs of different batches overlap in time.
        all.sort_unstable();
        Ok(all
            .into_iter()
            .map(|e| (e.created_at_ms, e.id, e.kind))
            .collect())
    }

    /// What a market's ledger depends on outside it (see `dependency`): the communities its
    /// referrals name, their referrers' memberships and those memberships' ends, as
    /// (created_at_ms, id, kind), oldest first.
    pub fn dependencies(&self, market: &PublicKey) -> Result<Vec<(u64, Id, u8)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.db()?.scan_prefix(key(DEPENDENCY, &[&market.0])) {
            let (k, v) = kv?;
            if k.len() != 65 || v.len() != 9 {
                return Err(StoreError::Record {
                    prefix: char::from(DEPENDENCY),
                    detail: format!("a key of {} bytes, a value of {}", k.len(), v.len()),
                });
            }
            out.push((u64_at(&v, 0), Id(id_at(&k, 33)), v[8]));
        }
        out.sort_unstable();
        Ok(out)
    }

    /// A market's valid attestations and its dependencies, oldest first: what the network
    /// reconciles for it and what an export of it holds, so that whoever has it computes the
    /// same ledger.
    pub fn market_with_dependencies(
        &self,
        market: &PublicKey,
    ) -> Result<Vec<(u64, Id, u8)>, StoreError> {
        let mut all = self.market(market)?;
        all.extend(self.dependencies(market)?);
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }

    /// The ids of [`Store::market_with_dependencies`] in short (their number and XOR), kept
    /// in memory until a write touches the market: what anti-entropy's digests are made of.
    pub fn set_summary(&self, market: &PublicKey) -> Result<SetSummary, StoreError> {
        let (kept, generation) = self.sets.get(market);
        if let Some(s) = kept {
            return Ok(s);
        }
        let ids = self.market_with_dependencies(market)?;
        let s = SetSummary::of(ids.iter().map(|(_, id, _)| id));
        self.sets.keep(*market, s, generation);
        Ok(s)
    }

    /// A market's valid attestations of one kind, oldest first.
    pub fn market_of_kind(
        &self,
        market: &PublicKey,
        kind: Kind,
    ) -> Result<Vec<Attestation>, StoreError> {
        let mut out = Vec::new();
        for (_, id, k) in self.market(market)? {
            if k == kind as u8 {
                if let Some(a) = self.attestation(&id)? {
                    out.push(a);
                }
            }
        }
        Ok(out)
    }

    /// Every seller (market key) with something stored, sorted.
    pub fn markets(&self) -> Result<Vec<PublicKey>, StoreError> {
        Ok(self.with_markets(market::MarketIndex::markets))
    }

    /// `f` of the market index, held for reading (writers wait: hold it briefly).
    pub(crate) fn with_markets<R>(&self, f: impl FnOnce(&market::MarketIndex) -> R) -> R {
        f(self
            .commit
            .valid()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .markets())
    }

    /// Receipts of one order beyond the one that counts: evidence of equivocation.
    pub fn equivocations(&self, seller: &PublicKey) -> Result<Vec<Equivocation>, StoreError> {
        let mut out = Vec::new();
        for kv in self.db()?.scan_prefix(key(ORDER, &[&seller.0])) {
            let (_, ids) = kv?;
            let Some(counted) = index::first_id(&ids) else {
                continue;
            };
            for other in ids.chunks_exact(32).skip(1) {
                out.push(Equivocation {
                    counted,
                    other: Id(id_at(other, 0)),
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// PurchaseClaims that contradict the counted receipt of their order.
    pub fn disputes(&self, seller: &PublicKey) -> Result<Vec<Dispute>, StoreError> {
        let db = self.db()?;
        let t = self.txn(&db);
        let mut out = Vec::new();
        for (k, v) in t.scan(&key(CLAIM, &[&seller.0])) {
            let Ok(c) = postcard::from_bytes::<passalong_protocol::PurchaseClaim>(&v) else {
                continue;
            };
            let claim = Id(id_at(&k, 65));
            let Some(rid) = t.counted(&orders::order_key(seller, &id_at(&k, 33))) else {
                continue;
            };
            let Some(r) = t.receipt(&rid) else { continue };
            let buyer_matches = r.buyer == c.buyer;
            if r.offer == c.offer && (!buyer_matches || r.via != c.via) {
                out.push(Dispute {
                    claim,
                    receipt: rid,
                    buyer_matches,
                    claimed_via: c.via,
                    recorded_via: r.via,
                });
            }
        }
        if let Some(e) = t.take_error() {
            return Err(e);
        }
        out.sort();
        Ok(out)
    }

    /// Number of valid attestations (a counter kept by every ingest).
    pub fn valid_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .db()?
            .get(key(META, &[b"valid"]))?
            .map_or(0, |v| u64_at(&v, 0)))
    }

    /// The offer of a referral's chain and every referral from the root down to `referral`,
    /// root first: what a share link carries.
    pub fn chain(&self, referral: &Id) -> Result<Vec<Attestation>, StoreError> {
        let mut out = Vec::new();
        let mut node = Some(*referral);
        while let Some(id) = node {
            let Some(a) = self.attestation(&id)? else {
                break;
            };
            node = match &a.body {
                Body::Referral(r) => r.parent.or(Some(r.offer)),
                _ => None,
            };
            out.push(a);
            if out.len() > 70 {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Flushes the tree to disk (what a write call acknowledged is durable already, through
    /// the journal).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db()?.flush()?;
        Ok(())
    }

    /// Closes the store so that the next open is fast. sled 0.34 writes its snapshot of the
    /// page table only while opening (it replays its log since the last snapshot, which takes
    /// seconds after millions of writes); reopening here once moves that work from the next
    /// start to this shutdown, as does writing the ledger lines (see `book`). A crash skips
    /// it and the next start pays instead.
    pub fn close(self) -> Result<(), StoreError> {
        self.commit.close()
    }
}

#[cfg(test)]
#[path = "../../../protocol/tests/common/mod.rs"]
mod common;

#[cfg(test)]
mod tests {
    use super::common::*;
    use super::{stage1, Ack, Status, Store};
    use passalong_protocol::{Attestation, Id, Rule, State};

    /// A key the tree never held, written and deleted before its shipment, costs the tree no
    /// write (a loose referral its sale anchors in the same batch); once a write of it was
    /// shipped, its deletion is shipped too, and dropped only when the shipments are merged.
    /// A key not known to be new always is.
    #[test]
    fn keys_born_and_gone_before_their_shipment_are_not_shipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let db = store.db().unwrap();
        let mut t = store.txn(&db);
        let k = |n: u8| crate::keyspace::key(crate::keyspace::LOOSE_COUNT, &[&[n; 64]]);
        let shipped = |t: &mut super::Txn<'_>| -> Vec<(Vec<u8>, bool)> {
            let s = t.take_batch().unwrap().unwrap();
            s.writes
                .iter()
                .map(|(k, v)| (k.clone(), v.is_some()))
                .collect()
        };
        t.put_new(k(1), vec![1]);
        t.put_new(k(1), vec![2]);
        t.del(k(1));
        t.put(k(2), vec![2]);
        t.del(k(2));
        t.put_new(k(3), vec![3]);
        assert_eq!(shipped(&mut t), vec![(k(2), false), (k(3), true)]);
        assert_eq!(t.get(&k(1)), None, "read as gone");
        t.del(k(3));
        assert_eq!(shipped(&mut t), vec![(k(3), false)], "the tree may hold it");
        t.put_new(k(4), vec![4]);
        t.del(k(4));
        t.put(k(5), vec![5]);
        assert_eq!(shipped(&mut t), vec![(k(5), true)]);
        // Born in one shipment, deleted in the next: merged (neither applied), not written.
        t.put_new(k(6), vec![6]);
        t.put(k(7), vec![7]);
        let first = t.take_batch().unwrap().unwrap();
        assert_eq!(first.born, vec![k(6)]);
        t.del(k(6));
        t.del(k(7));
        let second = t.take_batch().unwrap().unwrap();
        let merged = crate::commit::writer::merge_all(&mut [first, second]);
        let merged: Vec<_> = merged
            .writes
            .iter()
            .map(|(k, v)| (k.clone(), v.is_some()))
            .collect();
        assert_eq!(merged, vec![(k(7), false)]);
    }

    /// The cache grows with the tree's file, between its bounds.
    #[test]
    fn the_cache_is_sized_by_the_store() {
        use super::{auto_cache_bytes, DEFAULT_CACHE_MIB, MAX_AUTO_CACHE_MIB};
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            auto_cache_bytes(dir.path()),
            DEFAULT_CACHE_MIB << 20,
            "no tree yet"
        );
        let tree = std::fs::File::create(dir.path().join("db")).unwrap();
        for (len, mib) in [
            (1u64 << 30, DEFAULT_CACHE_MIB),
            (5 << 30, 204),
            (13 << 30, MAX_AUTO_CACHE_MIB),
            (1 << 40, MAX_AUTO_CACHE_MIB),
        ] {
            tree.set_len(len).unwrap();
            assert_eq!(
                auto_cache_bytes(dir.path()) >> 20,
                mib,
                "a tree of {len} bytes"
            );
        }
    }

    const NOW: u64 = T0 + 400 * DAY_MS;

    /// An offer, a chain of three referrals and `n` receipts through it.
    fn traffic(n: usize) -> Vec<Attestation> {
        let (s, b, c, d) = (key(1), key(2), key(3), key(4));
        let o = offer(&s, policy(Rule::Geometric { r_bps: 5000 }, 1_000), T0);
        let rb = refer(&b, &o, None, T0 + 1);
        let rc = refer(&c, &o, Some(&rb), T0 + 2);
        let rd = refer(&d, &o, Some(&rc), T0 + 3);
        let mut out = vec![o.clone(), rb, rc, rd.clone()];
        for i in 0..n {
            let buyer = key(10 + (i % 50) as u8).public();
            let t = T0 + 10 + i as u64;
            out.push(receipt(
                &s,
                &o,
                &format!("order-{i}"),
                1_000 + i as u64,
                buyer,
                Some(&rd),
                t,
            ));
        }
        out
    }

    fn envs(atts: &[Attestation]) -> Vec<&[u8]> {
        atts.iter().map(|a| a.bytes.as_slice()).collect()
    }

    /// A store of format 16 (its hop records in the `hops` runs, without ancestors) opens as
    /// format 17: its records move to the `chains` runs with their ancestors, it pays receipts
    /// through its old chains and new ones below them as the reference does, and the old
    /// runs are gone.
    #[test]
    fn a_format_16_store_opens_with_its_chains() {
        use crate::keyspace::{key as skey, META};
        let dir = tempfile::tempdir().unwrap();
        let (s, o) = (key(1), offer(&key(1), policy(Rule::Equal, 3_000), T0));
        let mut refs: Vec<Attestation> = Vec::new();
        for k in 0..7u8 {
            let parent = refs.last().cloned();
            refs.push(refer(
                &key(20 + k),
                &o,
                parent.as_ref(),
                T0 + 1 + u64::from(k),
            ));
        }
        let buy = |tag: &str, k: usize| {
            let buyer = key(60 + k as u8).public();
            let t = T0 + 100 + k as u64;
            receipt(
                &s,
                &o,
                &format!("{tag}-{k}"),
                10_000,
                buyer,
                Some(&refs[k]),
                t,
            )
        };
        let mut all = vec![o.clone()];
        all.extend(refs.iter().cloned());
        all.extend((0..7).map(|k| buy("before", k)));
        {
            let st = Store::open(dir.path()).unwrap();
            st.ingest(&envs(&all), NOW).unwrap();
            st.close().unwrap();
        }
        {
            let db = crate::open_db(dir.path(), 1 << 20).unwrap();
            crate::hops::as_format_16(&db, dir.path());
            db.insert(skey(META, &[b"format"]), &16u32.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        assert!(!dir.path().join("chains").exists());
        let st = Store::open(dir.path()).unwrap();
        let seller = s.public();
        let want = |atts: &[Attestation]| State::from_envelopes(envs(atts), NOW).ledger(&seller);
        assert_eq!(st.ledger(&seller).unwrap(), want(&all));
        let deeper = refer(&key(40), &o, refs.last(), T0 + 50);
        let more: Vec<Attestation> = std::iter::once(deeper.clone())
            .chain((0..7).map(|k| buy("after", k)))
            .chain(std::iter::once(receipt(
                &s,
                &o,
                "deepest",
                10_000,
                key(59).public(),
                Some(&deeper),
                T0 + 200,
            )))
            .collect();
        st.ingest(&envs(&more), NOW).unwrap();
        all.extend(more);
        assert_eq!(st.ledger(&seller).unwrap(), want(&all));
        assert_eq!(st.recompute_ledger(&seller, NOW).unwrap(), want(&all));
        drop(st);
        assert!(dir.path().join("chains").exists());
        assert!(!dir.path().join("hops").exists());
        let st = Store::open(dir.path()).unwrap();
        assert_eq!(st.ledger(&seller).unwrap(), want(&all));
        let hops = st.commit.hops().read().unwrap();
        let r = hops.get(&refs[6].id).unwrap().expect("a record");
        assert_eq!(r.above().count(), 4, "its ancestors found as it opened");
    }

    /// A large call lands in several batches; if applying one fails, the store holds exactly
    /// the effect of the attestations before it (a prefix), its ledger equals a recompute,
    /// before and after reopening, and sending everything again completes it.
    #[test]
    fn a_call_that_fails_midway_leaves_a_consistent_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let atts = traffic(150);
        let seller = key(1).public();
        let disk = crate::commit::FailingFrom::never();
        let st = Store::open(dir.path())
            .unwrap()
            .with_disk(disk.clone())
            .with_shipment(16);
        st.ingest(&envs(&atts[..4]), NOW).unwrap();
        // The next call's first two batches land, the third fails.
        disk.fail_from(st.commits() + 2);
        assert!(st.ingest(&envs(&atts[4..]), NOW).is_err());
        let stored: Vec<bool> = atts[4..]
            .iter()
            .map(|a| st.status(&a.id).unwrap().is_some())
            .collect();
        let n = stored.iter().take_while(|s| **s).count();
        assert_eq!(n, 2 * 16, "two batches of the call landed");
        assert!(stored[n..].iter().all(|s| !s), "what landed is a prefix");
        let recomputed = st.recompute_ledger(&seller, NOW).unwrap();
        assert_eq!(st.ledger(&seller).unwrap(), recomputed);
        assert_eq!(
            recomputed,
            State::from_envelopes(envs(&atts[..4 + n]), NOW).ledger(&seller)
        );
        drop(st);
        let st = Store::open(dir.path()).unwrap();
        assert_eq!(st.ledger(&seller).unwrap(), recomputed);
        let acks = st.ingest(&envs(&atts[4..]), NOW).unwrap();
        assert!(acks.iter().all(|a| a.status == Status::Valid));
        assert_eq!(acks.iter().filter(|a| a.duplicate).count(), n);
        let expected = State::from_envelopes(envs(&atts), NOW).ledger(&seller);
        assert_eq!(st.ledger(&seller).unwrap(), expected);
        assert_eq!(st.recompute_ledger(&seller, NOW).unwrap(), expected);
    }

    /// In a large call: stored envelopes, repeats within the call, an invalid one and a
    /// pending one that the call unblocks are each acknowledged as in a small call.
    #[test]
    fn a_large_call_acks_like_small_calls() {
        let atts = traffic(100);
        let mut bad = atts[50].bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1; // signature no longer verifies
                        // Receipts first, then the chain they need; some already stored, some twice, one bad.
        let mut call: Vec<&[u8]> = envs(&atts[30..]);
        call.push(&bad);
        call.extend(envs(&atts[..30]));
        call.extend(envs(&atts[40..45]));
        let (big, small) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (
            Store::open(big.path()).unwrap(),
            Store::open(small.path()).unwrap(),
        );
        for st in [&a, &b] {
            st.ingest(&envs(&atts[10..20]), NOW).unwrap();
        }
        assert!(call.len() >= stage1::PRECHECK_MIN);
        let big_acks = a.ingest(&call, NOW).unwrap();
        let small_acks: Vec<Ack> = call
            .chunks(stage1::PRECHECK_MIN - 1)
            .flat_map(|c| b.ingest(c, NOW).unwrap())
            .collect();
        // Every input is acknowledged, in order, and ends where the small calls end.
        assert_eq!(big_acks.len(), call.len());
        for (ack, env) in big_acks.iter().zip(&call) {
            assert_eq!(ack.id, Id::of_envelope(env));
        }
        assert_eq!(
            a.status(&Id::of_envelope(&bad)).unwrap().unwrap().name(),
            "invalid"
        );
        for att in &atts {
            assert_eq!(a.status(&att.id).unwrap(), Some(Status::Valid));
        }
        let dups = big_acks.iter().filter(|k| k.duplicate).count();
        assert_eq!(dups, 10 + 5, "stored before, and repeated in the call");
        let seller = key(1).public();
        assert_eq!(a.ledger(&seller).unwrap(), b.ledger(&seller).unwrap());
        assert_eq!(
            a.ledger(&seller).unwrap(),
            State::from_envelopes(envs(&atts), NOW).ledger(&seller)
        );
        // Both end with the same duplicates counted.
        let small_dups = small_acks.iter().filter(|k| k.duplicate).count();
        assert_eq!(small_dups, dups);
    }

    /// Valid attestations' entries hold references to the envelope log, pending ones their
    /// envelopes; a log that lost what it appended since the last checkpoint while the tree
    /// kept pointing to it (a power loss) is written again from the journal when the store
    /// opens, with every envelope and the ledger as before.
    #[test]
    fn envelopes_live_in_the_log_and_survive_losing_its_unsynced_tail() {
        use crate::envelopes;
        use crate::keyspace::{key as k, ENTRY};
        let dir = tempfile::tempdir().unwrap();
        let atts = traffic(120);
        let seller = key(1).public();
        let st = Store::open(dir.path()).unwrap();
        st.set_checkpoint_every(0);
        st.ingest(&envs(&atts[..60]), NOW).unwrap();
        st.checkpoint().unwrap();
        st.ingest(&envs(&atts[60..]), NOW).unwrap();
        // A receipt whose offer is not here: pending, its envelope in the tree.
        let other = offer(&key(7), policy(Rule::Geometric { r_bps: 5000 }, 1_000), T0);
        let pending = receipt(&key(7), &other, "order-x", 5, key(8).public(), None, T0 + 5);
        st.ingest(&envs(std::slice::from_ref(&pending)), NOW)
            .unwrap();
        let expected = st.ledger(&seller).unwrap();
        let checkpointed = {
            let db = st.db().unwrap();
            let v = db.get(envelopes::checkpoint_key()).unwrap().unwrap();
            u64::from_be_bytes(v[4..12].try_into().unwrap())
        };
        let field = |st: &Store, id: &Id| {
            let v = st.db().unwrap().get(k(ENTRY, &[&id.0])).unwrap()?;
            let e: crate::txn::Entry<'_> = postcard::from_bytes(&v).unwrap();
            Some(e.envelope.0.to_vec())
        };
        for a in &atts {
            assert_eq!(field(&st, &a.id), None, "valid: not in the tree");
            let set = st.commit.valid().read().unwrap();
            let r = set
                .get(&a.id)
                .unwrap()
                .flatten()
                .expect("valid: in the set");
            assert_eq!(st.commit.envelopes().read(r.envelope).unwrap(), a.bytes);
        }
        assert_eq!(
            field(&st, &pending.id),
            Some(pending.bytes.clone()),
            "pending: in the tree"
        );
        drop(st);
        // The power loss: the log keeps only part of what came after the checkpoint.
        let log = dir.path().join(envelopes::DIR).join("00000000.log");
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(checkpointed + 100).unwrap();
        drop(f);
        let st = Store::open(dir.path()).unwrap();
        for a in atts.iter().chain([&pending]) {
            assert_eq!(st.envelope(&a.id).unwrap().as_ref(), Some(&a.bytes));
        }
        assert_eq!(st.ledger(&seller).unwrap(), expected);
        assert_eq!(st.recompute_ledger(&seller, NOW).unwrap(), expected);
        // A damaged record from before the checkpoint is an error, not a wrong envelope.
        drop(st);
        let mut bytes = std::fs::read(&log).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&log, &bytes).unwrap();
        let st = Store::open(dir.path()).unwrap();
        let damaged: Vec<_> = atts
            .iter()
            .filter(|a| st.envelope(&a.id).is_err())
            .collect();
        assert_eq!(damaged.len(), 1, "the damaged record is reported");
    }

    /// A format-10 store journaled in the tree (ledger lines under JOURNAL keys, orders in
    /// ORDER_LOG runs): this build opens it with the same ledger and orders, and its first
    /// checkpoint moves them out of those keys.
    #[test]
    fn a_store_that_journaled_in_the_tree_opens_the_same() {
        use crate::keyspace::{key as k, ENTRY, JOURNAL, META, ORDER_LOG};
        let dir = tempfile::tempdir().unwrap();
        let atts = traffic(150);
        let seller = key(1).public();
        let st = Store::open(dir.path()).unwrap();
        st.set_checkpoint_every(0);
        st.ingest(&envs(&atts[..100]), NOW).unwrap();
        st.ingest(&envs(&atts[100..]), NOW).unwrap();
        let before = st.ledger(&seller).unwrap();
        drop(st);
        {
            // sled lets go of its file lock shortly after the last handle is dropped.
            let db = (0..150)
                .find_map(|_| {
                    let db = sled::open(dir.path()).ok();
                    if db.is_none() {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    db
                })
                .expect("sled opens once the store is dropped");
            let mut records = Vec::new();
            let (log, logged) = crate::envelopes::Envelopes::open(dir.path(), &db).unwrap();
            let valid =
                std::sync::RwLock::new(crate::valid::ValidSet::load(&db, dir.path()).unwrap());
            crate::commit::journal::Journal::open(
                dir.path(),
                &db,
                &log,
                logged.as_ref(),
                &valid,
                |r| records.push(r),
            )
            .unwrap();
            assert!(records.len() > 1, "the calls journaled");
            for (i, r) in records.iter().enumerate() {
                let mut v = Vec::new();
                crate::book::encode_lines(r.lines.iter().map(|(k, s)| (k, s)), &mut v);
                let seq = (i as u64).to_be_bytes();
                db.insert(k(JOURNAL, &[&seq, &0u32.to_be_bytes()]), v)
                    .unwrap();
                if let Some((_, v)) = crate::orders::pack_of(&r.orders) {
                    db.insert(k(ORDER_LOG, &[&r.orders[0].1 .0]), v).unwrap();
                }
                // Such a store kept every entry in the tree, with its envelope.
                for (key, v) in r.writes.iter().filter(|(key, _)| key[0] == ENTRY) {
                    match v {
                        Some(v) => db.insert(key, v.clone()).unwrap(),
                        None => db.remove(key).unwrap(),
                    };
                }
            }
            for m in [k(META, &[b"journal"]), k(META, &[b"checkpoint"])] {
                db.remove(m).unwrap();
            }
            db.remove(crate::commit::redo::KEY).unwrap();
            db.insert(k(META, &[b"format"]), &10u32.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
            std::fs::remove_file(dir.path().join(crate::commit::journal::FILE)).unwrap();
        }
        let st = Store::open(dir.path()).unwrap();
        assert_eq!(st.ledger(&seller).unwrap(), before);
        // An order paid twice: the smallest receipt id counts, as in a recompute (with its
        // order forgotten, both would count).
        let (s, o) = (key(1), &atts[0]);
        let twice = receipt(&s, o, "order-0", 7, key(99).public(), None, T0 + 500);
        st.ingest(&[twice.bytes.as_slice()], NOW).unwrap();
        let mut all = envs(&atts);
        all.push(&twice.bytes);
        let after = State::from_envelopes(all, NOW).ledger(&seller);
        assert_eq!(st.ledger(&seller).unwrap(), after);
        st.checkpoint().unwrap();
        let db = st.db().unwrap();
        assert_eq!(db.scan_prefix([JOURNAL]).count(), 0);
        assert_eq!(db.scan_prefix([ORDER_LOG]).count(), 0);
        assert_eq!(
            db.get(k(META, &[b"format"])).unwrap().unwrap().as_ref(),
            super::FORMAT_VERSION.to_be_bytes()
        );
        drop(db);
        drop(st);
        let st = Store::open(dir.path()).unwrap();
        assert_eq!(st.ledger(&seller).unwrap(), after);
        assert_eq!(st.recompute_ledger(&seller, NOW).unwrap(), after);
    }

    /// However rarely the store is set to checkpoint, its journal stays bounded: it
    /// checkpoints when the journal reaches its bound, and the journal is then empty.
    #[test]
    fn the_journal_is_bounded_without_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let atts = traffic(300);
        let st = Store::open(dir.path()).unwrap();
        st.set_checkpoint_every(0);
        st.commit.set_journal_max(64 << 10);
        let journal = || {
            std::fs::metadata(dir.path().join(crate::commit::journal::FILE))
                .unwrap()
                .len()
        };
        let mut most = 0;
        for call in atts.chunks(10) {
            st.ingest(&envs(call), NOW).unwrap();
            most = most.max(journal());
        }
        assert!(st.checkpoints() >= 1, "the bound made it checkpoint");
        assert!(
            most < (64 << 10) + (32 << 10),
            "{most} bytes: one call past the bound at most"
        );
        let seller = key(1).public();
        let before = st.ledger(&seller).unwrap();
        drop(st);
        let st = Store::open(dir.path()).unwrap();
        assert_eq!(st.ledger(&seller).unwrap(), before);
        assert_eq!(
            before,
            State::from_envelopes(envs(&atts), NOW).ledger(&seller)
        );
    }
}
