//! What the store needs of a valid referral besides its envelope, kept compactly: the hop a
//! chain walk reads, and the fact that validating a receipt or a child referral reads.
//!
//! Every receipt checks its referral, and once counted walks its chain, up to the offer's
//! depth, to be paid. Read from the referrals' entries, each of those reads on a cold cache
//! pages in a leaf of the entries' region, which on a large store is far larger than sled's
//! cache. Records are ~110 bytes and only referrals have one (a tenth of a store in the ingest
//! bench). Under their own prefix in the tree ([`crate::keyspace::HOP`], formats 10 to 12) they
//! still cost a leaf decoded per miss once the region outgrew the cache: on a 10M store, 87 %
//! of a receipt's ledger update was reading them (docs/benchmarks.md). So they live in a set of
//! sorted runs ([`Hops`], `runs`), read with one 4 KiB block per lookup; the decoded records of
//! the hot chains are also kept in memory (`cache::ValidCache`).
//!
//! A chain walk read one record per hop, each a block from anywhere in the runs: on a 10M
//! store that was five lookups and ~54 % of a receipt's ledger update. So each record also
//! carries its nearest [`UP`] ancestors as a walk past the first hop reads them ([`Above`]:
//! referrer, time, parent; see `ChainView::hop_above`), copied from its parent's record when
//! it becomes valid: a chain of up to `UP + 1` referrals costs one lookup. A referral's
//! ancestors never change (a dropped one takes its subtree with it), so the copies stay true.
//!
//! A shipment's records are among its writes under the HOP prefix, journaled like any other
//! (a dropped referral's as a removal), but never written to the tree (`redo::write` skips
//! them): the store keeps them in memory until the next checkpoint writes them as a run, and
//! opening replays them from the journal. A store of format 12 or before has its records read
//! from the tree when it opens and written as a run at once, and so are the runs of formats 13
//! to 16 (the `hops` set, records without ancestors, which a walk then looks up as before).
//! A store of format 9 has no record for the referrals it held before; those are read from
//! their entries, as before (see [`crate::FORMAT_VERSION`]).

use std::path::{Path, PathBuf};

use passalong_protocol::attestation::Referral;
use passalong_protocol::payout::Hop;
use passalong_protocol::validation::Fact;
use passalong_protocol::{Id, PublicKey};

use crate::commit::redo::Write;
use crate::keyspace::{id_at, key, u64_at, HOP, META};
use crate::runs::{Found, Key, Layers, Runs, Written};
use crate::StoreError;

/// Ancestors a record carries (a chain of up to `UP + 1` referrals is read in one lookup).
pub(crate) const UP: usize = 4;

/// An ancestor of a referral as a walk past the first hop reads it: no community (only the
/// hop nearest the buyer pays a connector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Above {
    pub referrer: PublicKey,
    pub created_at_ms: u64,
    /// Its parent: `None` at the top of the chain.
    pub parent: Option<Id>,
}

/// A record's ancestors, nearest first: up to [`UP`], fewer when the chain is shorter or
/// when they were not at hand (a record from before format 17, or whose parent's was not):
/// a walk looks up the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ups {
    len: u8,
    above: [Above; UP],
}

impl Ups {
    pub const NONE: Ups = Ups {
        len: 0,
        above: [Above {
            referrer: PublicKey([0; 32]),
            created_at_ms: 0,
            parent: None,
        }; UP],
    };

    /// A child's ancestors: its parent (`hop`), then the parent's own (`ups`), `UP` at most.
    pub fn child_of(hop: &Hop<Id>, ups: &Ups) -> Ups {
        let mut out = Ups::NONE;
        out.above[0] = Above {
            referrer: hop.referrer,
            created_at_ms: hop.created_at_ms,
            parent: hop.parent,
        };
        let n = ups.as_slice().len().min(UP - 1);
        out.above[1..1 + n].copy_from_slice(&ups.as_slice()[..n]);
        out.len = 1 + n as u8;
        out
    }

    pub fn as_slice(&self) -> &[Above] {
        &self.above[..usize::from(self.len)]
    }
}

/// What the store needs of a valid referral besides its envelope: the hop a chain walk reads,
/// and the fact that validating its children and receipts reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rec {
    pub hop: Hop<Id>,
    pub offer: Id,
    pub recipient: Option<PublicKey>,
    /// Hops from the offer down to it, inclusive.
    pub depth: u32,
    /// Its nearest ancestors, as a walk past the first hop reads them.
    pub ups: Ups,
}

impl Rec {
    /// The record of a referral found valid with `fact`, with its ancestors `ups` (see
    /// [`Ups::child_of`]); `None` if the fact is not a referral's.
    pub fn of(r: &Referral, fact: &Fact, ups: Ups) -> Option<Rec> {
        match fact {
            Fact::Referral { hops, .. } => Some(Rec {
                hop: hop_of(r),
                offer: r.offer,
                recipient: r.recipient,
                depth: *hops,
                ups: if r.parent.is_some() { ups } else { Ups::NONE },
            }),
            _ => None,
        }
    }

    /// Its ancestors as a walk past the first hop reads them (see `ChainView::hop_above`):
    /// (referral, hop with no community), nearest first.
    pub fn above(&self) -> impl Iterator<Item = (Id, Hop<Id>)> + '_ {
        let mut node = self.hop.parent;
        self.ups.as_slice().iter().map_while(move |a| {
            let id = node?;
            node = a.parent;
            Some((
                id,
                Hop {
                    referrer: a.referrer,
                    created_at_ms: a.created_at_ms,
                    community: None,
                    parent: a.parent,
                },
            ))
        })
    }

    /// Its validation fact.
    pub fn fact(&self) -> Fact {
        Fact::Referral {
            offer: self.offer,
            recipient: self.recipient,
            hops: self.depth,
            created_at_ms: self.hop.created_at_ms,
        }
    }
}

/// What a chain walk needs of a referral.
pub(crate) fn hop_of(r: &Referral) -> Hop<Id> {
    Hop {
        referrer: r.referrer,
        created_at_ms: r.created_at_ms,
        community: r.community,
        parent: r.parent,
    }
}

const HAS_PARENT: u8 = 1;
const HAS_COMMUNITY: u8 = 2;
const HAS_RECIPIENT: u8 = 4;
/// Ancestors follow (format 17).
const HAS_UPS: u8 = 8;
/// Bytes before the optional parts.
const FIXED: usize = 32 + 8 + 32 + 4 + 1;
/// Bytes of an ancestor: referrer, created_at_ms (BE), parent (zeros at the top).
const ABOVE: usize = 32 + 8 + 32;
/// Bytes of the longest record.
const LONGEST: usize = FIXED + 96 + 1 + ABOVE * UP;

/// referrer (32) ‖ created_at_ms (BE) ‖ offer (32) ‖ depth (u32 BE) ‖ flags (1) ‖ parent,
/// community, recipient (32 each, those present) ‖ with [`HAS_UPS`], the number of
/// ancestors (1) and each [`ABOVE`] bytes, nearest first. An ancestor's depth is one less than
/// its child's, so whether it has a parent is known without a flag.
pub(crate) fn encode(r: &Rec) -> Vec<u8> {
    let h = &r.hop;
    let mut v = Vec::with_capacity(LONGEST);
    v.extend_from_slice(&h.referrer.0);
    v.extend_from_slice(&h.created_at_ms.to_be_bytes());
    v.extend_from_slice(&r.offer.0);
    v.extend_from_slice(&r.depth.to_be_bytes());
    let flag = |present: bool, f: u8| if present { f } else { 0 };
    v.push(
        flag(h.parent.is_some(), HAS_PARENT)
            | flag(h.community.is_some(), HAS_COMMUNITY)
            | flag(r.recipient.is_some(), HAS_RECIPIENT)
            | flag(!r.ups.as_slice().is_empty(), HAS_UPS),
    );
    for part in [
        h.parent.map(|p| p.0),
        h.community.map(|c| c.0),
        r.recipient.map(|k| k.0),
    ]
    .into_iter()
    .flatten()
    {
        v.extend_from_slice(&part);
    }
    let ups = r.ups.as_slice();
    if !ups.is_empty() {
        v.push(ups.len() as u8);
        for a in ups {
            v.extend_from_slice(&a.referrer.0);
            v.extend_from_slice(&a.created_at_ms.to_be_bytes());
            v.extend_from_slice(&a.parent.map_or([0; 32], |p| p.0));
        }
    }
    v
}

/// The record made by [`encode`]; `None` if it is damaged.
pub(crate) fn decode(v: &[u8]) -> Option<Rec> {
    let flags = *v.get(FIXED - 1)?;
    let all = HAS_PARENT | HAS_COMMUNITY | HAS_RECIPIENT | HAS_UPS;
    let optional = FIXED + 32 * (flags & !HAS_UPS).count_ones() as usize;
    let ups_len = if flags & HAS_UPS != 0 {
        usize::from(*v.get(optional)?)
    } else {
        0
    };
    let len = optional + if ups_len > 0 { 1 + ABOVE * ups_len } else { 0 };
    let has_ups = flags & HAS_UPS != 0;
    if flags & !all != 0
        || v.len() != len
        || ups_len > UP
        || (has_ups && (ups_len == 0 || flags & HAS_PARENT == 0))
    {
        return None;
    }
    let mut at = FIXED;
    let mut next = |f: u8| {
        (flags & f != 0).then(|| {
            at += 32;
            id_at(v, at - 32)
        })
    };
    let parent = next(HAS_PARENT).map(Id);
    let community = next(HAS_COMMUNITY).map(Id);
    let recipient = next(HAS_RECIPIENT).map(PublicKey);
    let mut depth = [0u8; 4];
    depth.copy_from_slice(&v[72..76]);
    let depth = u32::from_be_bytes(depth);
    // The ancestors of a referral at `depth`: `depth - 1` of them, the top one parentless.
    if ups_len as u64 >= u64::from(depth) {
        return None;
    }
    let mut ups = Ups::NONE;
    for (i, a) in ups.above[..ups_len].iter_mut().enumerate() {
        let at = optional + 1 + i * ABOVE;
        let has_parent = u64::from(depth) - 1 - i as u64 > 1;
        *a = Above {
            referrer: PublicKey(id_at(v, at)),
            created_at_ms: u64_at(v, at + 32),
            parent: has_parent.then(|| Id(id_at(v, at + 40))),
        };
    }
    ups.len = ups_len as u8;
    Some(Rec {
        hop: Hop {
            referrer: PublicKey(id_at(v, 0)),
            created_at_ms: u64_at(v, 32),
            community,
            parent,
        },
        offer: Id(id_at(v, 40)),
        recipient,
        depth,
        ups,
    })
}

/// Bytes of a record in a run: its length (u16 LE; 0: the referral was dropped), then the
/// record, zero-padded to the longest.
const SLOT: usize = 2 + LONGEST;

/// The set of runs's name: its directory in the store's, and its list's key.
const RUNS: &str = "chains";

/// The runs of formats 13 to 16: a length byte, then a record without ancestors.
const OLD_RUNS: &str = "hops";
const OLD_SLOT: usize = 1 + FIXED + 96;

/// The run key of referral `id`.
fn key_of(id: &Id) -> Key {
    id.0[..16].try_into().expect("16 of 32 bytes")
}

fn slot_of(rec: Option<&Rec>) -> [u8; SLOT] {
    let mut slot = [0u8; SLOT];
    if let Some(r) = rec {
        let v = encode(r);
        slot[..2].copy_from_slice(&(v.len() as u16).to_le_bytes());
        slot[2..2 + v.len()].copy_from_slice(&v);
    }
    slot
}

/// What a run's slot holds: `Some(None)` for a dropped referral, `None` if damaged.
fn of_slot(slot: &[u8; SLOT]) -> Option<Option<Rec>> {
    match usize::from(u16::from_le_bytes([slot[0], slot[1]])) {
        0 => Some(None),
        n if n <= LONGEST => decode(&slot[2..2 + n]).map(Some),
        _ => None,
    }
}

/// The slot of a run of formats 13 to 16, as a current one; `None` if damaged.
fn of_old_slot(slot: &[u8; OLD_SLOT]) -> Option<[u8; SLOT]> {
    match slot[0] as usize {
        0 => Some(slot_of(None)),
        n if n < OLD_SLOT => decode(&slot[1..1 + n]).map(|r| slot_of(Some(&r))),
        _ => None,
    }
}

/// Removes the directory of the runs of formats 13 to 16 once they are gone (not empty, or
/// already removed: nothing to do).
fn remove_old_dir(store: &Path) {
    let _ = std::fs::remove_dir(store.join(OLD_RUNS));
}

fn damaged(detail: String) -> StoreError {
    StoreError::Record {
        prefix: char::from(HOP),
        detail,
    }
}

/// The hop records a shipment's `writes` change: `None` for a referral dropped. `None` if
/// one is damaged (the journal's record is checked, so only a bug writes one).
pub(crate) fn changes(writes: &[Write]) -> Option<Vec<(Id, Option<Rec>)>> {
    writes
        .iter()
        .filter(|(k, _)| k.first() == Some(&HOP) && k.len() == 33)
        .map(|(k, v)| {
            let id = Id(id_at(k, 1));
            match v {
                None => Some((id, None)),
                Some(v) => decode(v).map(|r| (id, Some(r))),
            }
        })
        .collect()
}

/// Gives an older store's records (sorted by key, one per key, all of its referrals') their
/// ancestors, read from one another: a lookup in memory per ancestor, once, as it opens.
fn with_ancestors(records: &mut [(Key, [u8; SLOT])]) -> Result<(), StoreError> {
    let hop = |records: &[(Key, [u8; SLOT])], id: &Id| -> Option<Hop<Id>> {
        let i = records.binary_search_by(|(k, _)| k.cmp(&key_of(id))).ok()?;
        of_slot(&records[i].1).flatten().map(|r| r.hop)
    };
    for i in 0..records.len() {
        let Some(mut rec) = of_slot(&records[i].1).ok_or_else(|| {
            damaged(format!(
                "the record of {} is damaged",
                hex::encode(records[i].0)
            ))
        })?
        else {
            continue;
        };
        let mut ups = Ups::NONE;
        let mut next = rec.hop.parent;
        // A referral at depth d has d - 1 ancestors.
        let most = UP.min(rec.depth.saturating_sub(1) as usize);
        while let Some(parent) = next.filter(|_| usize::from(ups.len) < most) {
            let Some(h) = hop(records, &parent) else {
                break;
            };
            ups.above[usize::from(ups.len)] = Above {
                referrer: h.referrer,
                created_at_ms: h.created_at_ms,
                parent: h.parent,
            };
            ups.len += 1;
            next = h.parent;
        }
        if ups.len > 0 {
            rec.ups = ups;
            records[i].1 = slot_of(Some(&rec));
        }
    }
    Ok(())
}

/// Every valid referral's record, by id (see the module docs): the changes since the last
/// checkpoint (`None`: dropped), over the runs (and a store's records from before format 17).
pub(crate) struct Hops {
    /// The store's directory.
    store: PathBuf,
    layers: Layers<Option<Rec>, SLOT>,
    /// The runs of a store of formats 13 to 16, read into `layers` as an older store's
    /// records: deleted once the checkpoint that writes those is on disk.
    old: Option<Runs<OLD_SLOT>>,
}

impl Hops {
    /// The runs the tree lists, and the HOP keys of a store before format 13 or the runs of
    /// one of formats 13 to 16. The journal's records come next (see [`Hops::commit`]).
    pub fn load(tree: &sled::Tree, store: &Path) -> Result<Hops, StoreError> {
        let mut legacy = Vec::new();
        for kv in tree.scan_prefix([HOP]) {
            let (k, v) = kv?;
            let Some(r) = decode(&v).filter(|_| k.len() == 33) else {
                return Err(damaged(format!(
                    "the record under {} is damaged",
                    hex::encode(&k)
                )));
            };
            legacy.push((key_of(&Id(id_at(&k, 1))), slot_of(Some(&r))));
        }
        // Keys in the tree are sorted, and so are their first 16 bytes after the prefix.
        // Files of the old set that its list no longer names (the checkpoint that moved them
        // was on disk) are deleted as it loads.
        let old = Runs::<OLD_SLOT>::load(tree, store, OLD_RUNS)?;
        let listed = tree.contains_key(key(META, &[OLD_RUNS.as_bytes()]))?;
        let old = if listed {
            for r in old.records() {
                let (k, slot) = r?;
                let slot = of_old_slot(&slot).ok_or_else(|| {
                    damaged(format!("an old record of {} is damaged", hex::encode(k)))
                })?;
                legacy.push((k, slot));
            }
            Some(old)
        } else {
            remove_old_dir(store);
            None
        };
        with_ancestors(&mut legacy)?;
        Ok(Hops {
            store: store.to_path_buf(),
            layers: Layers::load(tree, store, RUNS, legacy)?,
            old,
        })
    }

    /// The record of the valid referral `id`, if one is kept (`None` too for one dropped).
    pub fn get(&self, id: &Id) -> Result<Option<Rec>, StoreError> {
        match self.layers.get(&key_of(id))? {
            None => Ok(None),
            Some(Found::Recent(r)) => Ok(*r),
            Some(Found::Stored(slot)) => of_slot(&slot).ok_or_else(|| {
                damaged(format!("the record of referral {} is damaged", id.to_hex()))
            }),
        }
    }

    /// Records a shipment wrote (or a journal record replays), in order.
    pub fn commit(&mut self, changes: Vec<(Id, Option<Rec>)>) {
        for (id, r) in changes {
            self.layers.set(key_of(&id), r);
        }
    }

    /// Writes the changes since the last checkpoint (and an older store's records, as the
    /// oldest run) as runs, with the new run list, into `batch` (a checkpoint's, which also
    /// drops the tree's HOP keys and the old set's list). [`Hops::written`] once the batch is
    /// on disk.
    pub fn write(
        &self,
        tree: &sled::Tree,
        batch: &mut sled::Batch,
    ) -> Result<Written<SLOT>, StoreError> {
        let written = self.layers.write(|r| slot_of(r.as_ref()), batch)?;
        if self.layers.in_tree() {
            for kv in tree.scan_prefix([HOP]) {
                batch.remove(kv?.0);
            }
        }
        if self.old.is_some() {
            batch.remove(key(META, &[OLD_RUNS.as_bytes()]));
        }
        Ok(written)
    }

    /// The batch of [`Hops::write`] is on disk: the changes it holds leave memory, and the
    /// old set's runs the disk.
    pub fn written(&mut self, w: Written<SLOT>) {
        self.layers.written(w);
        if let Some(old) = self.old.take() {
            old.remove();
            remove_old_dir(&self.store);
        }
    }

    /// Whether an older store's records are still in its tree or its old runs.
    pub fn in_tree(&self) -> bool {
        self.layers.in_tree()
    }

    /// Bytes of hop state in memory.
    pub fn memory(&self) -> usize {
        self.layers.memory()
    }
}

/// Makes the closed store at `store` (its tree `tree`) hold its records as format 16 did:
/// in the `hops` runs, without ancestors (for the upgrade's tests).
#[cfg(test)]
pub(crate) fn as_format_16(tree: &sled::Tree, store: &Path) {
    let set = Runs::<SLOT>::load(tree, store, RUNS).expect("the chains runs");
    let old: Vec<(Key, [u8; OLD_SLOT])> = set
        .records()
        .map(|r| {
            let (k, slot) = r.expect("a record");
            let mut o = [0u8; OLD_SLOT];
            if let Some(mut rec) = of_slot(&slot).expect("not damaged") {
                rec.ups = Ups::NONE;
                let v = encode(&rec);
                o[0] = v.len() as u8;
                o[1..1 + v.len()].copy_from_slice(&v);
            }
            (k, o)
        })
        .collect();
    let mut batch = sled::Batch::default();
    let runs = Runs::<OLD_SLOT>::load(tree, store, OLD_RUNS).expect("no hops runs");
    let w = runs.write(&[&old], &mut batch).expect("written");
    batch.remove(key(META, &[RUNS.as_bytes()]));
    tree.apply_batch(batch).expect("applied");
    tree.flush().expect("flushed");
    let mut runs = runs;
    runs.written(w);
    set.remove();
    std::fs::remove_dir(store.join(RUNS)).expect("the chains directory, empty");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(parent: Option<Id>, community: Option<Id>, recipient: Option<PublicKey>) -> Rec {
        Rec {
            hop: Hop {
                referrer: PublicKey([7; 32]),
                created_at_ms: 1_767_225_600_123,
                community,
                parent,
            },
            offer: Id([3; 32]),
            recipient,
            depth: 4,
            ups: Ups::NONE,
        }
    }

    fn checkpoint(h: &mut Hops, db: &sled::Db) {
        let mut batch = sled::Batch::default();
        let w = h.write(db, &mut batch).unwrap();
        db.apply_batch(batch).unwrap();
        h.written(w);
    }

    /// Records kept, dropped and kept again read back the latest, across checkpoints and
    /// reopening; a store's HOP keys move to a run at its first checkpoint.
    #[test]
    fn records_are_kept_in_runs_and_the_latest_counts() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let (a, b, c) = (Id([1; 32]), Id([2; 32]), Id([3; 32]));
        let (ra, rb) = (
            rec(None, None, None),
            rec(Some(a), Some(c), Some(PublicKey([9; 32]))),
        );
        // An older store's record, under its HOP key.
        db.insert(crate::keyspace::key(HOP, &[&c.0]), encode(&ra))
            .unwrap();
        let mut h = Hops::load(&db, dir.path()).unwrap();
        assert!(h.in_tree());
        assert_eq!(h.get(&c).unwrap().map(|r| r.depth), Some(ra.depth));
        h.commit(vec![(a, Some(ra)), (b, Some(rb))]);
        checkpoint(&mut h, &db);
        assert!(!h.in_tree());
        assert_eq!(db.scan_prefix([HOP]).count(), 0, "moved out of the tree");
        h.commit(vec![(a, None)]);
        let same = |r: Option<Rec>| r.map(|r| (r.hop.parent, r.hop.community, r.recipient));
        let check = |h: &Hops| {
            assert_eq!(h.get(&a).unwrap().map(|r| r.depth), None, "dropped");
            assert_eq!(same(h.get(&b).unwrap()), same(Some(rb)));
            assert!(h.get(&c).unwrap().is_some(), "the older store's");
            assert!(h.get(&Id([4; 32])).unwrap().is_none());
        };
        check(&h);
        checkpoint(&mut h, &db);
        check(&h);
        check(&Hops::load(&db, dir.path()).unwrap());
        // Kept again after it was dropped.
        let mut h = Hops::load(&db, dir.path()).unwrap();
        h.commit(vec![(a, Some(rb))]);
        checkpoint(&mut h, &db);
        let back = Hops::load(&db, dir.path()).unwrap();
        assert_eq!(same(back.get(&a).unwrap()), same(Some(rb)));
    }

    #[test]
    fn a_shipments_writes_give_its_changes_and_slots_round_trip() {
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        let r = rec(Some(b), None, Some(PublicKey([5; 32])));
        let writes: Vec<Write> = vec![
            (crate::keyspace::key(HOP, &[&a.0]), Some(encode(&r).into())),
            (crate::keyspace::key(HOP, &[&b.0]), None),
            (crate::keyspace::key(crate::keyspace::ENTRY, &[&a.0]), None),
        ];
        let got = changes(&writes).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].0, got[0].1.map(|r| r.hop.parent)),
            (a, Some(Some(b)))
        );
        assert_eq!((got[1].0, got[1].1.is_none()), (b, true));
        let bad: Vec<Write> = vec![(crate::keyspace::key(HOP, &[&a.0]), Some(vec![1, 2].into()))];
        assert!(changes(&bad).is_none());
        for r in [rec(None, None, None), r] {
            let slot = slot_of(Some(&r));
            assert_eq!(of_slot(&slot).unwrap().unwrap().fact(), r.fact());
        }
        assert_eq!(of_slot(&slot_of(None)).map(|r| r.is_none()), Some(true));
        let mut damaged = slot_of(Some(&rec(None, None, None)));
        damaged[0] = 200;
        assert!(of_slot(&damaged).is_none());
    }

    /// A chain of `n` referrals, ids `[1]`…`[n]`, each the parent of the next, with the
    /// ancestors each carries (those of a store of format 16 carry none).
    fn chain_of(n: u8, ups: bool) -> Vec<(Id, Rec)> {
        let mut out: Vec<(Id, Rec)> = Vec::new();
        for d in 1..=n {
            let parent = out.last().copied();
            let hop = Hop {
                referrer: PublicKey([100 + d; 32]),
                created_at_ms: u64::from(d),
                community: (d % 2 == 0).then_some(Id([200; 32])),
                parent: parent.map(|p| p.0),
            };
            let above = match parent {
                Some((_, p)) if ups => Ups::child_of(&p.hop, &p.ups),
                _ => Ups::NONE,
            };
            let r = Rec {
                hop,
                offer: Id([3; 32]),
                recipient: None,
                depth: u32::from(d),
                ups: above,
            };
            out.push((Id([d; 32]), r));
        }
        out
    }

    /// What a walk past the first hop reads of each ancestor, nearest first.
    fn walked(r: &Rec) -> Vec<(Id, PublicKey, Option<Id>)> {
        r.above()
            .map(|(id, h)| (id, h.referrer, h.parent))
            .collect()
    }

    /// A record carries up to `UP` ancestors, each what the walk would have read of it.
    #[test]
    fn a_record_carries_its_nearest_ancestors() {
        let chain = chain_of(7, true);
        for (i, (_, r)) in chain.iter().enumerate() {
            let want: Vec<_> = chain[..i]
                .iter()
                .rev()
                .take(UP)
                .map(|(id, a)| (*id, a.hop.referrer, a.hop.parent))
                .collect();
            assert_eq!(walked(r), want, "depth {}", r.depth);
            let back = decode(&encode(r)).expect("decodes");
            assert_eq!(walked(&back), want);
            assert_eq!(of_slot(&slot_of(Some(r))).unwrap().unwrap().ups, r.ups);
        }
        assert!(walked(&chain[6].1).iter().all(|(_, _, p)| p.is_some()));
        assert_eq!(walked(&chain[3].1).last().unwrap().2, None, "the top");
        // More ancestors than the depth allows, or ancestors without a parent: damaged.
        let mut v = encode(&chain[2].1);
        v[FIXED + 32] = 3;
        v.extend_from_slice(&[0; ABOVE]);
        assert!(decode(&v).is_none());
        let mut r = chain[2].1;
        r.hop.parent = None;
        assert!(decode(&encode(&r)).is_none());
    }

    /// A store of format 16 has its records in the `hops` runs, without ancestors: they move to
    /// the `chains` runs with their ancestors found, and the old runs go with the checkpoint.
    #[test]
    fn old_runs_move_with_their_ancestors_found() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let chain = chain_of(7, false);
        let dropped = Id([50; 32]);
        let mut old: Vec<(Key, [u8; OLD_SLOT])> = chain
            .iter()
            .map(|(id, r)| {
                let v = encode(r);
                let mut slot = [0u8; OLD_SLOT];
                slot[0] = v.len() as u8;
                slot[1..1 + v.len()].copy_from_slice(&v);
                (key_of(id), slot)
            })
            .collect();
        old.push((key_of(&dropped), [0u8; OLD_SLOT]));
        old.sort_by_key(|r| r.0);
        let runs = Runs::<OLD_SLOT>::load(&db, dir.path(), OLD_RUNS).unwrap();
        let mut batch = sled::Batch::default();
        let w = runs.write(&[&old], &mut batch).unwrap();
        db.apply_batch(batch).unwrap();
        let mut runs = runs;
        runs.written(w);
        assert_eq!(crate::runs::files_of(dir.path(), OLD_RUNS).len(), 1);

        let want = chain_of(7, true);
        let check = |h: &Hops| {
            for (id, r) in &want {
                let got = h.get(id).unwrap().expect("kept");
                assert_eq!((got.fact(), walked(&got)), (r.fact(), walked(r)));
            }
            assert!(h.get(&dropped).unwrap().is_none());
        };
        let mut h = Hops::load(&db, dir.path()).unwrap();
        assert!(h.in_tree(), "written at the first checkpoint");
        check(&h);
        checkpoint(&mut h, &db);
        assert!(!h.in_tree());
        assert!(!dir.path().join(OLD_RUNS).exists());
        assert!(!db.contains_key(key(META, &[OLD_RUNS.as_bytes()])).unwrap());
        check(&h);
        let h = Hops::load(&db, dir.path()).unwrap();
        assert!(!h.in_tree());
        check(&h);
    }

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let (p, c, k) = (Id([1; 32]), Id([2; 32]), PublicKey([5; 32]));
        for r in [
            rec(None, None, None),
            rec(Some(p), None, None),
            rec(None, Some(c), None),
            rec(None, None, Some(k)),
            rec(Some(p), Some(c), Some(k)),
        ] {
            let v = encode(&r);
            let back = decode(&v).expect("decodes");
            let h = (back.hop.referrer, back.hop.created_at_ms, back.hop.parent);
            assert_eq!(h, (r.hop.referrer, r.hop.created_at_ms, r.hop.parent));
            assert_eq!(back.hop.community, r.hop.community);
            assert_eq!(back.fact(), r.fact());
            assert!(decode(&v[..v.len() - 1]).is_none(), "truncated");
            let mut longer = v.clone();
            longer.push(0);
            assert!(decode(&longer).is_none(), "trailing bytes");
        }
        let mut bad = encode(&rec(None, None, None));
        bad[FIXED - 1] = 16;
        assert!(decode(&bad).is_none(), "unknown flag");
    }
}
