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
//! A shipment's records are among its writes under the HOP prefix, journaled like any other
//! (a dropped referral's as a removal), but never written to the tree (`redo::write` skips
//! them): the store keeps them in memory until the next checkpoint writes them as a run, and
//! opening replays them from the journal. A store of format 12 or before has its records read
//! from the tree when it opens and written as a run at once. A store of format 9 has no record
//! for the referrals it held before; those are read from their entries, as before (see
//! [`crate::FORMAT_VERSION`]).

use std::path::Path;

use passalong_protocol::attestation::Referral;
use passalong_protocol::payout::Hop;
use passalong_protocol::validation::Fact;
use passalong_protocol::{Id, PublicKey};

use crate::commit::redo::Write;
use crate::keyspace::{id_at, u64_at, HOP};
use crate::runs::{Found, Key, Layers, Written};
use crate::StoreError;

/// What the store needs of a valid referral besides its envelope: the hop a chain walk reads,
/// and the fact that validating its children and receipts reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rec {
    pub hop: Hop<Id>,
    pub offer: Id,
    pub recipient: Option<PublicKey>,
    /// Hops from the offer down to it, inclusive.
    pub depth: u32,
}

impl Rec {
    /// The record of a referral found valid with `fact`; `None` if the fact is not a
    /// referral's.
    pub fn of(r: &Referral, fact: &Fact) -> Option<Rec> {
        match fact {
            Fact::Referral { hops, .. } => Some(Rec {
                hop: hop_of(r),
                offer: r.offer,
                recipient: r.recipient,
                depth: *hops,
            }),
            _ => None,
        }
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
/// Bytes before the optional parts.
const FIXED: usize = 32 + 8 + 32 + 4 + 1;

/// referrer (32) ‖ created_at_ms (BE) ‖ offer (32) ‖ depth (u32 BE) ‖ flags (1) ‖ parent,
/// community, recipient (32 each, those present).
pub(crate) fn encode(r: &Rec) -> Vec<u8> {
    let h = &r.hop;
    let mut v = Vec::with_capacity(FIXED + 96);
    v.extend_from_slice(&h.referrer.0);
    v.extend_from_slice(&h.created_at_ms.to_be_bytes());
    v.extend_from_slice(&r.offer.0);
    v.extend_from_slice(&r.depth.to_be_bytes());
    let flag = |present: bool, f: u8| if present { f } else { 0 };
    v.push(
        flag(h.parent.is_some(), HAS_PARENT)
            | flag(h.community.is_some(), HAS_COMMUNITY)
            | flag(r.recipient.is_some(), HAS_RECIPIENT),
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
    v
}

/// The record made by [`encode`]; `None` if it is damaged.
pub(crate) fn decode(v: &[u8]) -> Option<Rec> {
    let flags = *v.get(FIXED - 1)?;
    let all = HAS_PARENT | HAS_COMMUNITY | HAS_RECIPIENT;
    if flags & !all != 0 || v.len() != FIXED + 32 * flags.count_ones() as usize {
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
    Some(Rec {
        hop: Hop {
            referrer: PublicKey(id_at(v, 0)),
            created_at_ms: u64_at(v, 32),
            community,
            parent,
        },
        offer: Id(id_at(v, 40)),
        recipient,
        depth: u32::from_be_bytes(depth),
    })
}

/// Bytes of a record in a run: its length (0: the referral was dropped), then the record,
/// zero-padded to the longest.
const SLOT: usize = 1 + FIXED + 96;

/// The set of runs's name: its directory in the store's, and its list's key.
const RUNS: &str = "hops";

/// The run key of referral `id`.
fn key_of(id: &Id) -> Key {
    id.0[..16].try_into().expect("16 of 32 bytes")
}

fn slot_of(rec: Option<&Rec>) -> [u8; SLOT] {
    let mut slot = [0u8; SLOT];
    if let Some(r) = rec {
        let v = encode(r);
        slot[0] = v.len() as u8;
        slot[1..1 + v.len()].copy_from_slice(&v);
    }
    slot
}

/// What a run's slot holds: `Some(None)` for a dropped referral, `None` if damaged.
fn of_slot(slot: &[u8; SLOT]) -> Option<Option<Rec>> {
    match slot[0] as usize {
        0 => Some(None),
        n if n < SLOT => decode(&slot[1..1 + n]).map(Some),
        _ => None,
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

/// Every valid referral's record, by id (see the module docs): the changes since the last
/// checkpoint (`None`: dropped), over the runs (and a store's records from before format 13).
pub(crate) struct Hops(Layers<Option<Rec>, SLOT>);

impl Hops {
    /// The runs the tree lists, and the HOP keys of a store before format 13. The journal's
    /// records come next (see [`Hops::commit`]).
    pub fn load(tree: &sled::Tree, store: &Path) -> Result<Hops, StoreError> {
        let mut legacy = Vec::new();
        for kv in tree.scan_prefix([HOP]) {
            let (k, v) = kv?;
            let Some(r) = decode(&v).filter(|_| k.len() == 33) else {
                return Err(StoreError::Record {
                    prefix: char::from(HOP),
                    detail: format!("the record under {} is damaged", hex::encode(&k)),
                });
            };
            legacy.push((key_of(&Id(id_at(&k, 1))), slot_of(Some(&r))));
        }
        // Keys in the tree are sorted, and so are their first 16 bytes after the prefix.
        Ok(Hops(Layers::load(tree, store, RUNS, legacy)?))
    }

    /// The record of the valid referral `id`, if one is kept (`None` too for one dropped).
    pub fn get(&self, id: &Id) -> Result<Option<Rec>, StoreError> {
        match self.0.get(&key_of(id))? {
            None => Ok(None),
            Some(Found::Recent(r)) => Ok(*r),
            Some(Found::Stored(slot)) => of_slot(&slot).ok_or_else(|| StoreError::Record {
                prefix: char::from(HOP),
                detail: format!("the record of referral {} is damaged", id.to_hex()),
            }),
        }
    }

    /// Records a shipment wrote (or a journal record replays), in order.
    pub fn commit(&mut self, changes: Vec<(Id, Option<Rec>)>) {
        for (id, r) in changes {
            self.0.set(key_of(&id), r);
        }
    }

    /// Writes the changes since the last checkpoint (and the records of a store before
    /// format 13, as the oldest run) as runs, with the new run list, into `batch` (a
    /// checkpoint's, which also drops the tree's HOP keys). [`Hops::written`] once the batch
    /// is on disk.
    pub fn write(
        &self,
        tree: &sled::Tree,
        batch: &mut sled::Batch,
    ) -> Result<Written<SLOT>, StoreError> {
        let written = self.0.write(|r| slot_of(r.as_ref()), batch)?;
        if self.0.in_tree() {
            for kv in tree.scan_prefix([HOP]) {
                batch.remove(kv?.0);
            }
        }
        Ok(written)
    }

    /// The batch of [`Hops::write`] is on disk: the changes it holds leave memory.
    pub fn written(&mut self, w: Written<SLOT>) {
        self.0.written(w);
    }

    /// Whether the store predates format 13 and its records are still in the tree.
    pub fn in_tree(&self) -> bool {
        self.0.in_tree()
    }

    /// Bytes of hop state in memory.
    pub fn memory(&self) -> usize {
        self.0.memory()
    }
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
        bad[FIXED - 1] = 8;
        assert!(decode(&bad).is_none(), "unknown flag");
    }
}
