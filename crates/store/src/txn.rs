//! A write overlay over the sled tree: an ingest reads its own writes, and everything it wrote
//! goes to disk as one atomic batch (or not at all).
//!
//! The protocol's traits (`Known`, `ChainView`) are infallible, so a read error is remembered
//! here and fails the whole ingest when it is committed: nothing half-done reaches the disk.

use std::cell::RefCell;
use std::collections::BTreeMap;

use passalong_protocol::attestation::{Body, Offer, Receipt, Referral};
use passalong_protocol::payout::{ChainView, Hop};
use passalong_protocol::validation::{Fact, Known, Lookup};
use passalong_protocol::{Attestation, Id, PublicKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::keyspace::*;

/// Reads (and, when writing, buffered writes) over the store's tree.
pub(crate) struct Txn<'a> {
    tree: &'a sled::Tree,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    error: RefCell<Option<StoreError>>,
}

type Kv = (Vec<u8>, Vec<u8>);

/// Where a stored attestation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EntryState {
    Valid,
    Pending,
    Held { until_ms: u64 },
}

/// Everything the store keeps of one attestation, under one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub state: EntryState,
    /// Set once valid: what other attestations' validity depends on.
    pub fact: Option<Fact>,
    /// For a counted receipt: what it credited (`ledger::PayoutRec`, postcard).
    pub payout: Option<Vec<u8>>,
    /// The envelope.
    pub envelope: Vec<u8>,
}

impl Entry {
    /// A new entry for an envelope.
    pub fn new(state: EntryState, envelope: Vec<u8>) -> Entry {
        Entry {
            state,
            fact: None,
            payout: None,
            envelope,
        }
    }

    /// The envelope decoded (it was checked when it came in).
    pub fn attestation(&self) -> Option<Attestation> {
        Attestation::decode(&self.envelope).ok()
    }
}

impl<'a> Txn<'a> {
    pub fn new(tree: &'a sled::Tree) -> Self {
        Txn {
            tree,
            writes: BTreeMap::new(),
            error: RefCell::new(None),
        }
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

    pub fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = self.writes.get(k) {
            return v.clone();
        }
        match self.tree.get(k) {
            Ok(v) => v.map(|v| v.to_vec()),
            Err(e) => {
                self.remember(e.into());
                None
            }
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        self.get(k).is_some()
    }

    pub fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.writes.insert(k, Some(v));
    }

    pub fn del(&mut self, k: Vec<u8>) {
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
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        merged.into_iter().collect()
    }

    /// The first (key, value) under `prefix`, with this transaction's writes applied.
    pub fn first(&self, prefix: &[u8]) -> Option<Kv> {
        // The first live key of the tree may have been deleted here: walk until one survives.
        let mut from_tree = None;
        for kv in self.tree.scan_prefix(prefix) {
            match kv {
                Ok((k, v)) => {
                    if !matches!(self.writes.get(k.as_ref()), Some(None)) {
                        from_tree = Some((k.to_vec(), v.to_vec()));
                        break;
                    }
                }
                Err(e) => {
                    self.remember(e.into());
                    break;
                }
            }
        }
        let from_writes = self
            .writes
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .find_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())));
        match (from_tree, from_writes) {
            (Some(a), Some(b)) => Some(if b.0 <= a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// A postcard record.
    pub fn record<T: DeserializeOwned>(&self, k: &[u8]) -> Option<T> {
        let v = self.get(k)?;
        match postcard::from_bytes(&v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.remember(StoreError::Record {
                    prefix: char::from(k[0]),
                    detail: e.to_string(),
                });
                None
            }
        }
    }

    /// The entry of a stored attestation.
    pub fn entry(&self, id: &Id) -> Option<Entry> {
        self.record(&key(ENTRY, &[&id.0]))
    }

    /// Writes the entry of an attestation.
    pub fn put_entry(&mut self, id: &Id, e: &Entry) {
        match postcard::to_allocvec(e) {
            Ok(bytes) => self.put(key(ENTRY, &[&id.0]), bytes),
            Err(err) => self.remember(StoreError::Record {
                prefix: char::from(ENTRY),
                detail: err.to_string(),
            }),
        }
    }

    /// The body of a valid attestation.
    fn valid_body(&self, id: &Id) -> Option<Body> {
        let e = self.entry(id)?;
        if e.state != EntryState::Valid {
            return None;
        }
        e.attestation().map(|a| a.body)
    }

    pub fn offer(&self, id: &Id) -> Option<Offer> {
        match self.valid_body(id)? {
            Body::Offer(o) => Some(o),
            _ => None,
        }
    }

    pub fn referral(&self, id: &Id) -> Option<Referral> {
        match self.valid_body(id)? {
            Body::Referral(r) => Some(r),
            _ => None,
        }
    }

    pub fn receipt(&self, id: &Id) -> Option<Receipt> {
        match self.valid_body(id)? {
            Body::Receipt(r) => Some(r),
            _ => None,
        }
    }

    /// Everything written, as one sled batch.
    pub fn into_batch(self) -> Result<sled::Batch, StoreError> {
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        let mut b = sled::Batch::default();
        for (k, v) in self.writes {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        Ok(b)
    }
}

impl Known for Txn<'_> {
    fn lookup(&self, id: &Id) -> Lookup {
        if let Some(f) = self.entry(id).and_then(|e| e.fact) {
            Lookup::Valid(f)
        } else if self.contains(&key(INVALID, &[&id.0])) {
            Lookup::Invalid
        } else {
            Lookup::Unknown
        }
    }
}

impl ChainView for Txn<'_> {
    type Node = Id;
    type Offer = Id;

    fn hop(&self, node: Id) -> Option<Hop<Id>> {
        let r = self.referral(&node)?;
        Some(Hop {
            referrer: r.referrer,
            created_at_ms: r.created_at_ms,
            community: r.community,
            parent: r.parent,
        })
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
