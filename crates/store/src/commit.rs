//! Where shipments meet the disk: the one seam between the store's write path and sled's tree,
//! so that tests can make the disk fail at a chosen shipment without any test-only branch in
//! the production path (see the crate's durability contract for what a shipment guarantees).

use std::collections::BTreeMap;

use passalong_protocol::Id;

use crate::book::{LineKey, Sums};
use crate::journal::Journal;
use crate::orders::OrderKey;
use crate::redo;
use crate::StoreError;

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
        parts: Parts<'_>,
        _n: u64,
    ) -> Result<(), StoreError> {
        journal.append(parts.lines, parts.orders, parts.writes)?;
        redo::write(tree, parts.writes)
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
        parts: Parts<'_>,
        n: u64,
    ) -> Result<(), StoreError> {
        if n >= self.from() {
            return Err(sled::Error::Unsupported("test: the disk failed".into()).into());
        }
        Sled.apply(tree, journal, parts, n)
    }

    fn merges_tail(&self) -> bool {
        self.from() == u64::MAX
    }
}
