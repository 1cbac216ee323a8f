//! A write overlay over the sled tree: an ingest reads its own writes, and hands what it wrote
//! out in shipments ([`Txn::take_batch`]), each of which reaches the disk whole or not at all
//! (see the crate's durability contract).
//!
//! The protocol's traits (`Known`, `ChainView`) are infallible, so a read error is remembered
//! here and fails the shipment being taken, and with it the call: no shipment built on a failed
//! read reaches the disk.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use passalong_protocol::attestation::{Body, Offer, Receipt, Referral};
use passalong_protocol::payout::{ChainView, Hop};
use passalong_protocol::validation::{Fact, Known, Lookup};
use passalong_protocol::{Attestation, Id, PublicKey};
use serde::{Deserialize, Serialize};
use sled::IVec;

use crate::book::{Book, LineKey, Sums};
use crate::cache::{IdHasher, InvalidIds, Valid, ValidCache};
use crate::commit::redo;
use crate::envelopes::{Envelopes, Ref};
use crate::error::StoreError;
use crate::hops::Ups;
use crate::keyspace::*;
use crate::market::Indexed;
use crate::orders::{OrderKey, Orders};

/// Reads (and, when writing, buffered writes) over the store's tree.
pub(crate) struct Txn<'a> {
    tree: &'a sled::Tree,
    writes: BTreeMap<Vec<u8>, Option<IVec>>,
    valid: &'a ValidCache,
    /// The ledger lines as committed; `lines` holds this transaction's new sums.
    book: &'a RwLock<Book>,
    lines: rustc_hash::FxHashMap<LineKey, Sums>,
    /// Keys and lines written since the last [`Txn::take_batch`] (with repeats).
    unshipped: Vec<Vec<u8>>,
    /// Keys the tree did not hold when this transaction began, written by it and not shipped
    /// yet (see [`Txn::put_new`]): if they are deleted before their shipment, neither write
    /// is shipped (a loose referral anchored by a sale of the same batch).
    born: rustc_hash::FxHashSet<Vec<u8>>,
    unshipped_lines: Vec<LineKey>,
    /// Market index entries since the last [`Txn::take_batch`] (written as runs, see
    /// `market`; nothing reads them back within a transaction).
    unshipped_market: Vec<(PublicKey, Indexed)>,
    /// The store may hold WAITER keys (false: none, so nothing to release).
    waiters: &'a AtomicBool,
    /// Fact and body of what this transaction made valid (decoded already; not cached in
    /// `valid` since it may not commit).
    fresh: HashMap<Id, Valid, BuildHasherDefault<IdHasher>>,
    /// The ids whose entry this transaction wrote: most lookups are of others, and a hash
    /// probe rules them out without searching `writes` (byte-compared keys) for them.
    written_entries: HashSet<Id, BuildHasherDefault<IdHasher>>,
    /// Counted receipts by order as committed; `counted` holds this transaction's changes.
    orders: &'a RwLock<Orders>,
    /// Committed referrals' hop records (see `hops`).
    hops: &'a RwLock<crate::hops::Hops>,
    /// Where valid entries' envelopes are (see `envelopes`).
    envelopes: Arc<Envelopes>,
    /// Committed valid entries (see `valid`): read before the tree's.
    valid_set: &'a RwLock<crate::valid::ValidSet>,
    invalid: &'a InvalidIds,
    counted: HashMap<OrderKey, Id, BuildHasherDefault<IdHasher>>,
    /// Receipts' orders since the last [`Txn::take_batch`] (for the journal), and the
    /// counted receipts they changed.
    unshipped_orders: Vec<(OrderKey, Id)>,
    unshipped_counted: Vec<(OrderKey, Id)>,
    /// Invalid ids forgotten (expired) since the last [`Txn::take_batch`]: they leave the
    /// in-memory set once their deletion is applied.
    unshipped_forgotten: Vec<Id>,
    /// Valid attestations dropped (loose ones over budget) since the last
    /// [`Txn::take_batch`]: they leave the valid cache once their deletion is applied.
    unshipped_dropped: Vec<Id>,
    /// Referrals made valid since the last [`Txn::take_batch`]: their records enter the cache
    /// once their shipment is applied.
    unshipped_referrals: Vec<(Id, crate::hops::Rec)>,
    /// The records of the referrals this transaction made valid (their children's ancestors
    /// are copied from them).
    fresh_recs: HashMap<Id, crate::hops::Rec, BuildHasherDefault<IdHasher>>,
    /// The ancestors of the last referral whose hop a walk read (see
    /// `ChainView::hop_above`): the walk goes on from them without a lookup each.
    above: RefCell<Vec<(Id, Hop<Id>)>>,
    /// What this transaction stores comes through the node's own API: it is anchored (see
    /// `loose`).
    pub own: bool,
    /// (market, author) of the loose attestations added and not yet brought within budget.
    pub loose_touched: Vec<(PublicKey, PublicKey)>,
    /// What the store knows in memory of loose attestations (see `loose::Hints`).
    pub hints: &'a crate::loose::Hints,
    /// Receipts that started to count here, and the time their ledger updates took.
    pub ledger_updates: (u64, std::time::Duration),
    /// The market of each attestation that became valid here, as its indexing found it: the
    /// acks carry it, so that the caller does not read the attestation back to learn it.
    pub markets: HashMap<Id, PublicKey, BuildHasherDefault<IdHasher>>,
    error: RefCell<Option<StoreError>>,
}

/// Writes of a transaction, ready for the tree (built by the thread that made them, so that
/// the writer thread only applies them).
pub(crate) struct Shipment {
    /// The keys written (see `redo`).
    pub writes: Vec<redo::Write>,
    /// New sums of the ledger lines changed (journaled, see `journal`).
    pub lines: BTreeMap<LineKey, Sums>,
    /// Its receipts' orders (journaled).
    pub orders: Vec<(OrderKey, Id)>,
    /// Orders whose counted receipt changed, applied in order once the writes are in.
    pub counted: Vec<(OrderKey, Id)>,
    /// Invalid ids deleted (see [`InvalidIds::forget`]).
    pub forgotten: Vec<Id>,
    /// Valid attestations deleted (loose ones over budget).
    pub dropped: Vec<Id>,
    /// The records of the referrals it made valid (see [`ValidCache`]).
    pub referrals: Vec<(Id, crate::hops::Rec)>,
    /// Its hop records' changes (`None`: a referral dropped), the latest of each, as
    /// journaled (see `hops`).
    pub hops: Vec<(Id, Option<crate::hops::Rec>)>,
    /// Markets whose reconciled set this shipment changes (its runs, loose attestations or
    /// dependencies), for their summaries.
    pub touched: Vec<PublicKey>,
    /// Keys it writes first, that the tree did not hold (see [`Txn::put_new`]): merged with
    /// later shipments of its call, none applied yet, a deletion of one is not written.
    pub born: Vec<Vec<u8>>,
}

type Kv = (Vec<u8>, Vec<u8>);

/// Where a stored attestation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EntryState {
    Valid,
    Pending,
    Held { until_ms: u64 },
}

/// Bytes that postcard writes and reads as one length-prefixed run: the same encoding as a
/// `Vec<u8>` (length, then one byte per element), without a call per byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bytes<'a>(pub &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(d).map(Bytes)
    }
}

/// Everything the store keeps of one attestation, under one key, as stored (borrowing the
/// stored bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry<'a> {
    pub state: EntryState,
    /// Set once valid: what other attestations' validity depends on.
    pub fact: Option<Fact>,
    /// For a counted receipt: what it credited (`ledger::PayoutRec`, postcard), or empty when
    /// that cannot change (it is then recomputed when needed, see `ledger::payout_of`).
    #[serde(borrow)]
    pub payout: Option<Bytes<'a>>,
    /// The envelope.
    #[serde(borrow)]
    pub envelope: Bytes<'a>,
}

impl<'a> Entry<'a> {
    /// A new entry for an envelope.
    pub fn new(state: EntryState, envelope: &'a [u8]) -> Entry<'a> {
        Entry {
            state,
            fact: None,
            payout: None,
            envelope: Bytes(envelope),
        }
    }

    /// The envelope's body. Stored envelopes passed the strict decode when they came in, so
    /// this only parses the body (no canonical re-encoding, no hash).
    pub fn body(&self) -> Option<Body> {
        body_of(self.envelope.0)
    }

    /// The envelope as an attestation with id `id` (its own: callers read it under `id`).
    pub fn attestation(&self, id: Id) -> Option<Attestation> {
        let env = self.envelope.0;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(env.get(env.len().checked_sub(64)?..)?);
        Some(Attestation {
            id,
            body: self.body()?,
            signature,
            bytes: env.to_vec(),
        })
    }
}

/// The body of an envelope that was checked when it came in (in the envelope's version: an
/// Offer with a checkout URL is a version-2 envelope).
pub(crate) fn body_of(env: &[u8]) -> Option<Body> {
    passalong_protocol::encoding::body_of_checked(env)
}

impl<'a> Txn<'a> {
    pub fn new(
        tree: &'a sled::Tree,
        valid: &'a ValidCache,
        journaled: &'a crate::commit::Commit,
        invalid: &'a InvalidIds,
        waiters: &'a AtomicBool,
        hints: &'a crate::loose::Hints,
    ) -> Self {
        Txn {
            tree,
            writes: BTreeMap::new(),
            valid,
            book: journaled.book(),
            lines: Default::default(),
            unshipped: Vec::new(),
            born: Default::default(),
            unshipped_lines: Vec::new(),
            unshipped_market: Vec::new(),
            waiters,
            fresh: HashMap::default(),
            written_entries: HashSet::default(),
            orders: journaled.orders(),
            hops: journaled.hops(),
            envelopes: journaled.envelopes(),
            valid_set: journaled.valid(),
            invalid,
            counted: HashMap::default(),
            unshipped_orders: Vec::new(),
            unshipped_counted: Vec::new(),
            unshipped_forgotten: Vec::new(),
            unshipped_dropped: Vec::new(),
            unshipped_referrals: Vec::new(),
            fresh_recs: HashMap::default(),
            above: RefCell::new(Vec::new()),
            own: false,
            loose_touched: Vec::new(),
            hints,
            ledger_updates: (0, std::time::Duration::ZERO),
            markets: HashMap::default(),
            error: RefCell::new(None),
        }
    }

    /// Whether any attestation may be waiting for another (if not, none needs releasing).
    pub fn may_have_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Records that `waiter`, pending since `since_ms`, waits for `missing` (the time is the
    /// key of its `PENDING` index entry, found again when it is released).
    pub fn add_waiter(&mut self, missing: &Id, waiter: &Id, since_ms: u64) {
        self.waiters.store(true, Ordering::Relaxed);
        self.put(
            key(WAITER, &[&missing.0, &waiter.0]),
            since_ms.to_be_bytes().to_vec(),
        );
    }

    /// A ledger line's sums, with this transaction's changes.
    pub fn line(&self, k: &LineKey) -> Sums {
        match self.lines.get(k) {
            Some(s) => *s,
            None => self.book.read().unwrap_or_else(|p| p.into_inner()).get(k),
        }
    }

    /// Sets a ledger line's sums (all zero: the line goes away).
    pub fn set_line(&mut self, k: LineKey, s: Sums) {
        self.lines.insert(k, s);
        self.unshipped_lines.push(k);
    }

    fn remember(&self, e: StoreError) {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// The first read error, if any happened.
    pub fn take_error(&self) -> Option<StoreError> {
        self.error.borrow_mut().take()
    }

    /// The receipt of order `k` that counts, with this transaction's receipts.
    pub fn counted(&self, k: &OrderKey) -> Option<Id> {
        if let Some(id) = self.counted.get(k) {
            return Some(*id);
        }
        let counted = self
            .orders
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .counted(k);
        counted.unwrap_or_else(|e| {
            self.remember(e);
            None
        })
    }

    /// Records receipt `id` of order `k`, whose counted receipt was `counted` (its run
    /// record, and whether it now counts).
    pub fn add_to_order(&mut self, k: OrderKey, id: Id, counted: Option<Id>) {
        self.unshipped_orders.push((k, id));
        if counted.is_none_or(|c| id < c) {
            self.counted.insert(k, id);
            self.unshipped_counted.push((k, id));
        }
    }

    pub fn get(&self, k: &[u8]) -> Option<IVec> {
        if let Some(v) = self.writes.get(k) {
            return v.clone();
        }
        self.stored(k)
    }

    /// The value of `k` in the tree, without this transaction's writes (an entry: in the
    /// valid set first, see `valid`).
    fn stored(&self, k: &[u8]) -> Option<IVec> {
        if let (33, Some(&ENTRY)) = (k.len(), k.first()) {
            let set = self.valid_set.read().unwrap_or_else(|p| p.into_inner());
            match set.entry(&Id(id_at(k, 1)), |pk| Ok(self.tree.get(pk)?)) {
                Ok(Some(v)) => return Some(v),
                Ok(None) => {}
                Err(e) => {
                    self.remember(e);
                    return None;
                }
            }
        }
        match self.tree.get(k) {
            Ok(v) => v,
            Err(e) => {
                self.remember(e.into());
                None
            }
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        self.get(k).is_some()
    }

    /// Whether what [`Txn::get`] says of `k` comes from the tree, not from this transaction's
    /// own writes.
    pub fn committed(&self, k: &[u8]) -> bool {
        !self.writes.contains_key(k)
    }

    /// Whether `id` is stored: valid, pending, held or invalid (one point read, two for the
    /// few ids that may be invalid).
    pub fn is_stored(&self, id: &Id) -> bool {
        self.entry_bytes(id).is_some() || self.invalid_reason(id).is_some()
    }

    /// Why `id` is invalid ("code: message"), if it is stored as invalid.
    pub fn invalid_reason(&self, id: &Id) -> Option<IVec> {
        if !self.invalid.may_hold(id) {
            return None;
        }
        self.get(&key(INVALID, &[&id.0]))
    }

    /// Stores `id` as invalid, for `reason` ("code: message").
    pub fn put_invalid(&mut self, id: &Id, reason: String) {
        // Before the write lands: the set may hold more than the tree, never less.
        self.invalid.add(id);
        self.put(key(INVALID, &[&id.0]), reason.into_bytes());
    }

    /// Deletes `id`'s INVALID key (expiry).
    pub fn forget_invalid(&mut self, id: &Id) {
        self.del(key(INVALID, &[&id.0]));
        self.unshipped_forgotten.push(*id);
    }

    /// Deletes a valid attestation's entry (a loose one over budget, see `loose`).
    pub fn drop_valid(&mut self, id: &Id) {
        self.del(key(ENTRY, &[&id.0]));
        self.del(key(HOP, &[&id.0]));
        self.fresh.remove(id);
        self.fresh_recs.remove(id);
        self.above.borrow_mut().clear();
        self.valid.remove(id);
        self.unshipped_dropped.push(*id);
    }

    pub fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.note_entry(&k);
        self.unshipped.push(k.clone());
        self.writes.insert(k, Some(IVec::from(v)));
    }

    /// [`Txn::put`] of a key the caller knows the tree did not hold when this transaction
    /// began (it names an attestation that becomes valid here, or the tree's read said so).
    pub fn put_new(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.born.insert(k.clone());
        self.put(k, v);
    }

    /// Takes back a [`Txn::put_new`] of `k` not shipped yet: as if it had been deleted. A
    /// key shipped already (or not born here) is left as it is.
    pub fn retract(&mut self, k: Vec<u8>) {
        if self.born.contains(&k) {
            self.del(k);
        }
    }

    /// Notes the id of an entry key written (see `written_entries`).
    fn note_entry(&mut self, k: &[u8]) {
        if let Some((&ENTRY, id)) = k.split_first() {
            if let Ok(id) = <[u8; 32]>::try_from(id) {
                self.written_entries.insert(Id(id));
            }
        }
    }

    /// Whether this transaction wrote (or removed) the entry of `id`.
    fn wrote_entry(&self, id: &Id) -> bool {
        self.written_entries.contains(id)
    }

    /// The entry of `id` as stored, with this transaction's writes.
    fn entry_bytes(&self, id: &Id) -> Option<IVec> {
        let k = key(ENTRY, &[&id.0]);
        if self.wrote_entry(id) {
            return self.writes.get(&k)?.clone();
        }
        self.stored(&k)
    }

    /// Indexes a valid attestation in its market.
    pub fn index_market(&mut self, market: PublicKey, e: Indexed) {
        self.unshipped_market.push((market, e));
    }

    pub fn del(&mut self, k: Vec<u8>) {
        self.note_entry(&k);
        self.unshipped.push(k.clone());
        self.writes.insert(k, None);
    }

    /// Every (key, value) under `prefix`, in key order, with this transaction's writes applied.
    pub fn scan(&self, prefix: &[u8]) -> Vec<Kv> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for kv in self.tree.scan_prefix(prefix) {
            match kv {
                Ok((k, v)) => {
                    merged.insert(k.to_vec(), v.to_vec());
                }
                Err(e) => {
                    self.remember(e.into());
                    break;
                }
            }
        }
        for (k, v) in self
            .writes
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match v {
                Some(v) => merged.insert(k.clone(), v.to_vec()),
                None => merged.remove(k),
            };
        }
        merged.into_iter().collect()
    }

    /// The first (key, value) under `prefix`, with this transaction's writes applied.
    pub fn first(&self, prefix: &[u8]) -> Option<Kv> {
        // The first live key of the tree may have been deleted here: walk until one survives.
        // Point reads (`get_gt`), not an iterator: most calls find nothing (a fresh order),
        // and a sled iterator costs several reads to set up.
        let mut from_tree = None;
        let mut after = prefix.to_vec();
        loop {
            match self.tree.get_gt(&after) {
                Ok(Some((k, v))) if k.starts_with(prefix) => {
                    if matches!(self.writes.get(k.as_ref()), Some(None)) {
                        after = k.to_vec();
                        continue;
                    }
                    from_tree = Some((k.to_vec(), v.to_vec()));
                }
                Ok(_) => {}
                Err(e) => self.remember(e.into()),
            }
            break;
        }
        let from_writes = self
            .writes
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .find_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.to_vec())));
        match (from_tree, from_writes) {
            (Some(a), Some(b)) => Some(if b.0 <= a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The first live key under `prefix` after `after` (pass `prefix` itself to start), with
    /// this transaction's writes applied. Walking a prefix in order while deleting what it
    /// found, a caller passes the last key found: the deleted keys are not read again.
    pub fn key_after(&self, prefix: &[u8], after: &[u8]) -> Option<Vec<u8>> {
        let mut from = after.to_vec();
        let from_tree = loop {
            match self.tree.get_gt(&from) {
                Ok(Some((k, _))) if k.starts_with(prefix) => {
                    if matches!(self.writes.get(k.as_ref()), Some(None)) {
                        from = k.to_vec();
                        continue;
                    }
                    break Some(k.to_vec());
                }
                Ok(_) => break None,
                Err(e) => {
                    self.remember(e.into());
                    break None;
                }
            }
        };
        let from_writes = self
            .writes
            .range::<[u8], _>((Bound::Excluded(after), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone());
        match (from_tree, from_writes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The last live key under the one-byte `prefix` before `before` (`None`: from the end),
    /// with this transaction's writes applied: [`Txn::key_after`] backwards.
    pub fn key_before(&self, prefix: u8, before: Option<&[u8]>) -> Option<Vec<u8>> {
        // Every key under `prefix` sorts before `[prefix + 1]` (prefixes are below 0xff).
        let end = [prefix.saturating_add(1)];
        let mut from = before.unwrap_or(&end).to_vec();
        let from_tree = loop {
            match self.tree.get_lt(&from) {
                Ok(Some((k, _))) if k.first() == Some(&prefix) => {
                    if matches!(self.writes.get(k.as_ref()), Some(None)) {
                        from = k.to_vec();
                        continue;
                    }
                    break Some(k.to_vec());
                }
                Ok(_) => break None,
                Err(e) => {
                    self.remember(e.into());
                    break None;
                }
            }
        };
        let upper = before.unwrap_or(&end);
        let from_writes = self
            .writes
            .range::<[u8], _>((Bound::Included(&[prefix][..]), Bound::Excluded(upper)))
            .rev()
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone());
        match (from_tree, from_writes) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// `f` of the entry of a stored attestation, its envelope read from the log if the entry
    /// holds a reference (see `envelopes`).
    pub fn entry<R>(&self, id: &Id, f: impl FnOnce(Entry<'_>) -> R) -> Option<R> {
        let v = self.entry_bytes(id)?;
        let e = self.decode_entry(&v)?;
        match Ref::of(e.envelope.0) {
            None => Some(f(e)),
            Some(r) => {
                let envelope = self.read_envelope(r)?;
                Some(f(Entry {
                    envelope: Bytes(&envelope),
                    ..e
                }))
            }
        }
    }

    /// The envelope `r` names (a failure fails the transaction).
    fn read_envelope(&self, r: Ref) -> Option<Vec<u8>> {
        self.envelopes.read(r).map_err(|e| self.remember(e)).ok()
    }

    /// An entry as stored (a failure to decode fails the transaction).
    pub fn decode_entry<'v>(&self, v: &'v [u8]) -> Option<Entry<'v>> {
        match postcard::from_bytes(v) {
            Ok(e) => Some(e),
            Err(e) => {
                self.remember(StoreError::Record {
                    prefix: char::from(ENTRY),
                    detail: e.to_string(),
                });
                None
            }
        }
    }

    /// Writes the entry of an attestation.
    pub fn put_entry(&mut self, id: &Id, e: &Entry<'_>) {
        // Sized once: growing the vector as postcard writes cost ~half of the encoding.
        let size = e.envelope.0.len() + e.payout.as_ref().map_or(0, |p| p.0.len()) + 160;
        match postcard::to_extend(e, Vec::with_capacity(size)) {
            Ok(bytes) => self.put(key(ENTRY, &[&id.0]), bytes),
            Err(err) => self.remember(StoreError::Record {
                prefix: char::from(ENTRY),
                detail: err.to_string(),
            }),
        }
    }

    /// Writes the entry of an attestation that became valid here, and keeps its fact and body
    /// at hand for the rest of the transaction (a receipt's payout reads them at once).
    pub fn put_valid(&mut self, att: &Attestation, fact: Option<Fact>) {
        let mut e = Entry::new(EntryState::Valid, &att.bytes);
        e.fact = fact;
        self.put_entry(&att.id, &e);
        if let Some(f) = fact {
            self.fresh.insert(att.id, Arc::new((f, att.body.clone())));
        }
        if let (Body::Referral(r), Some(f)) = (&att.body, &fact) {
            let ups = r.parent.map_or(Ups::NONE, |p| self.ups_of_child(&p));
            if let Some(rec) = crate::hops::Rec::of(r, f, ups) {
                self.put(key(HOP, &[&att.id.0]), crate::hops::encode(&rec));
                self.unshipped_referrals.push((att.id, rec));
                self.fresh_recs.insert(att.id, rec);
            }
        }
    }

    /// The ancestors a child of the valid referral `parent` carries: the parent's hop, then
    /// its own ancestors when its record is at hand.
    fn ups_of_child(&self, parent: &Id) -> Ups {
        match self.chain_rec(parent) {
            Some(r) => Ups::child_of(&r.hop, &r.ups),
            None => self
                .hop(*parent)
                .map_or(Ups::NONE, |h| Ups::child_of(&h, &Ups::NONE)),
        }
    }

    /// The record of a valid referral, this transaction's or committed (`None`: not one, or
    /// one stored before format 10: read its entry).
    fn chain_rec(&self, id: &Id) -> Option<crate::hops::Rec> {
        self.fresh_recs
            .get(id)
            .copied()
            .or_else(|| self.referral_rec(id))
    }

    /// Fact and body of a valid attestation.
    fn valid(&self, id: &Id) -> Option<Valid> {
        if !self.wrote_entry(id) {
            if let Some(v) = self.valid.get(id) {
                return Some(v);
            }
        }
        let k = key(ENTRY, &[&id.0]);
        let decode = |v: &[u8]| {
            let e = self.decode_entry(v)?;
            match (e.state, e.fact, Ref::of(e.envelope.0)) {
                (EntryState::Valid, Some(f), None) => Some(Arc::new((f, e.body()?))),
                (EntryState::Valid, Some(f), Some(r)) => {
                    Some(Arc::new((f, body_of(&self.read_envelope(r)?)?)))
                }
                _ => None,
            }
        };
        // This transaction's own writes are not cached: they may not be committed.
        if self.wrote_entry(id) {
            let w = self.writes.get(&k)?.as_ref()?;
            if let Some(v) = self.fresh.get(id) {
                return Some(v.clone());
            }
            return decode(w);
        }
        let v = decode(&self.stored(&k)?)?;
        self.valid.insert(*id, v.clone());
        Some(v)
    }

    /// The body of a valid attestation.
    pub fn body(&self, id: &Id) -> Option<Body> {
        Some(self.valid(id)?.1.clone())
    }

    pub fn offer(&self, id: &Id) -> Option<Offer> {
        match &self.valid(id)?.1 {
            Body::Offer(o) => Some(o.clone()),
            _ => None,
        }
    }

    pub fn referral(&self, id: &Id) -> Option<Referral> {
        match &self.valid(id)?.1 {
            Body::Referral(r) => Some(r.clone()),
            _ => None,
        }
    }

    pub fn receipt(&self, id: &Id) -> Option<Receipt> {
        match &self.valid(id)?.1 {
            Body::Receipt(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// What was written since the last call (`None` if nothing was), for one atomic shipment
    /// (see `journal` for its ledger lines and orders). The writes stay
    /// readable here: batches may land in the tree while this transaction goes on, in order,
    /// each atomic, so that what reaches the disk is always the effect of a prefix of it.
    pub fn take_batch(&mut self) -> Result<Option<Shipment>, StoreError> {
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        if self.unshipped.is_empty()
            && self.unshipped_forgotten.is_empty()
            && self.unshipped_dropped.is_empty()
            && self.unshipped_lines.is_empty()
            && self.unshipped_market.is_empty()
            && self.unshipped_orders.is_empty()
        {
            return Ok(None);
        }
        let mut keys = std::mem::take(&mut self.unshipped);
        keys.sort_unstable();
        keys.dedup();
        let born = &mut self.born;
        let mut shipped_born = Vec::new();
        let mut writes: Vec<redo::Write> = keys
            .into_iter()
            .filter_map(|k| {
                let v = self.writes.get(&k).cloned().flatten();
                // A key born and gone since the last shipment: the tree never holds it.
                // Shipped, it may reach the tree; the shipment names it, so that merged with
                // a later deletion, neither applied, it is not written (`merge_all`).
                if born.remove(&k) {
                    match v {
                        None => return None,
                        Some(_) => shipped_born.push(k.clone()),
                    }
                }
                Some((k, v))
            })
            .collect();
        let mut touched: Vec<PublicKey> = writes
            .iter()
            .filter(|(k, _)| matches!(k.first(), Some(&DEPENDENCY) | Some(&LOOSE)) && k.len() >= 33)
            .map(|(k, _)| PublicKey(id_at(k, 1)))
            .collect();
        let hops = crate::hops::changes(&writes).ok_or_else(|| StoreError::Record {
            prefix: char::from(HOP),
            detail: "a hop record written does not decode".into(),
        })?;
        for (k, v) in crate::market::runs(std::mem::take(&mut self.unshipped_market)) {
            touched.push(PublicKey(id_at(&k, 1)));
            writes.push((k, Some(v.into())));
        }
        let lines: BTreeMap<LineKey, Sums> = std::mem::take(&mut self.unshipped_lines)
            .into_iter()
            .map(|k| (k, self.lines.get(&k).copied().unwrap_or([0; 3])))
            .collect();
        Ok(Some(Shipment {
            writes,
            lines,
            orders: std::mem::take(&mut self.unshipped_orders),
            counted: std::mem::take(&mut self.unshipped_counted),
            touched: {
                touched.sort_unstable();
                touched.dedup();
                touched
            },
            forgotten: std::mem::take(&mut self.unshipped_forgotten),
            dropped: std::mem::take(&mut self.unshipped_dropped),
            referrals: std::mem::take(&mut self.unshipped_referrals),
            hops,
            born: shipped_born,
        }))
    }
}

impl Known for Txn<'_> {
    fn lookup(&self, id: &Id) -> Lookup {
        let fact = if !self.committed(&key(ENTRY, &[&id.0])) {
            self.valid(id).map(|v| v.0)
        } else if let Some(v) = self.valid.get(id) {
            Some(v.0)
        } else if let Some(r) = self.referral_rec(id) {
            Some(r.fact())
        } else {
            self.valid(id).map(|v| v.0)
        };
        if let Some(f) = fact {
            Lookup::Valid(f)
        } else if self.invalid_reason(id).is_some() {
            Lookup::Invalid
        } else {
            Lookup::Unknown
        }
    }
}

impl Txn<'_> {
    /// The record of a valid referral committed before this transaction (`None`: not one, or
    /// one of this transaction, or one stored before format 10: read its entry).
    pub fn referral_rec(&self, id: &Id) -> Option<crate::hops::Rec> {
        if self.wrote_entry(id) {
            return None;
        }
        if let Some(r) = self.valid.referral(id) {
            return Some(r);
        }
        let found = self.hops.read().unwrap_or_else(|p| p.into_inner()).get(id);
        let r = found.unwrap_or_else(|e| {
            self.remember(e);
            None
        })?;
        self.valid.put_referral(*id, r);
        Some(r)
    }
}

impl ChainView for Txn<'_> {
    type Node = Id;
    type Offer = Id;

    fn hop(&self, node: Id) -> Option<Hop<Id>> {
        if let Some(r) = self.chain_rec(&node) {
            let mut above = self.above.borrow_mut();
            above.clear();
            above.extend(r.above());
            return Some(r.hop);
        }
        // Stored before format 10.
        self.referral(&node).map(|r| crate::hops::hop_of(&r))
    }

    fn hop_above(&self, node: Id) -> Option<Hop<Id>> {
        let known = self
            .above
            .borrow()
            .iter()
            .find(|(id, _)| *id == node)
            .map(|a| a.1);
        known.or_else(|| self.hop(node))
    }

    fn first_purchase_ms(&self, offer: Id, buyer: &PublicKey) -> Option<u64> {
        self.first(&key(PURCHASE, &[&offer.0, &buyer.0]))
            .map(|(k, _)| u64_at(&k, 1 + 64))
    }

    fn connector(&self, community: &Id) -> Option<PublicKey> {
        self.get(&key(COMMUNITY, &[&community.0]))
            .map(|v| PublicKey(id_at(&v, 0)))
    }

    fn admitted(&self, community: &Id, member: &PublicKey, at_ms: u64) -> bool {
        self.scan(&key(MEMBER, &[&community.0, &member.0]))
            .iter()
            .any(|(k, v)| {
                let membership = id_at(k, 1 + 64);
                let end = self
                    .get(&key(MEMBERSHIP_END, &[&membership]))
                    .map_or(u64::MAX, |e| u64_at(&e, 0));
                u64_at(v, 0) <= at_ms && at_ms < end
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry as format 2 was first written (`Vec<u8>` fields, one serde element per byte).
    #[derive(Serialize, Deserialize)]
    struct EntryV2 {
        state: EntryState,
        fact: Option<Fact>,
        payout: Option<Vec<u8>>,
        envelope: Vec<u8>,
    }

    #[test]
    fn entries_keep_the_stored_format() {
        let envelope: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let payout = vec![7u8; 130];
        let old = EntryV2 {
            state: EntryState::Held { until_ms: 1 << 40 },
            fact: Some(Fact::Receipt {
                seller: PublicKey([3; 32]),
            }),
            payout: Some(payout.clone()),
            envelope: envelope.clone(),
        };
        let new = Entry {
            state: old.state,
            fact: old.fact,
            payout: Some(Bytes(&payout)),
            envelope: Bytes(&envelope),
        };
        let old_bytes = postcard::to_allocvec(&old).unwrap();
        assert_eq!(postcard::to_allocvec(&new).unwrap(), old_bytes);
        let back: Entry<'_> = postcard::from_bytes(&old_bytes).unwrap();
        assert_eq!(back.envelope.0, envelope.as_slice());
        assert_eq!(back.payout.map(|p| p.0), Some(payout.as_slice()));
        let back: EntryV2 = postcard::from_bytes(&postcard::to_allocvec(&new).unwrap()).unwrap();
        assert_eq!(back.envelope, envelope);
    }
}
