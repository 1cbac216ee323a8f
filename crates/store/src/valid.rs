//! The entries of valid attestations, out of the tree (from format 15): a fixed-size record
//! per attestation in sorted runs beside it, like the hop records (`hops`, `runs`).
//!
//! Valid entries were ~10M of a 10M-attestation tree's ~13M keys, and sled's costs grow with
//! its keys: its page table in memory (~500 MB at 10M), its open, and so each checkpoint,
//! which reopens it (2 s at 10M, half of the ingest's CPU: docs/benchmarks.md). A valid entry
//! never changes but for a receipt's payout record, so it fits a run: the fact (postcard), the
//! envelope's [`Ref`] in the log (see `envelopes`) and what the payout is. A payout record that
//! may change (see `ledger::payout_of`) stays in the tree under [`PAYOUT`]; most receipts have
//! none ("what `compute` gives").
//!
//! Shipments still write a valid attestation's entry under its `ENTRY` key, with its envelope,
//! and the journal keeps it so. Writing a shipment ([`apply`], from `redo::write`) appends the
//! envelope to the log, writes a kept payout record, sets the record here, *then* removes the
//! tree's key (where it was pending or held, or valid in a store of format 14), so that a
//! reader finds it in one place or the other throughout, and what the record names. The records since the last checkpoint are in memory, and each
//! checkpoint writes them as a run. Opening replays them from the journal: a shipment the tree
//! has already finds its envelopes' places in the log's records since the checkpoint (which
//! opening reads, see `Envelopes::open`); a later one is written again. A removed entry (a loose
//! attestation over budget) is a removal here. Pending and held entries stay in the tree: most
//! never become valid. So do the valid entries of a store of format 14 (no migration): reads
//! look here first, then in the tree.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use passalong_protocol::validation::Fact;
use passalong_protocol::Id;
use sled::IVec;

use crate::envelopes::{Envelopes, Ref, REF_LEN};
use crate::keyspace::{id_at, key, ENTRY, PAYOUT};
use crate::market::MarketIndex;
use crate::runs::{Found, Key, Layers, Written};
use crate::txn::{Bytes, Entry, EntryState};
use crate::StoreError;

/// What a valid entry's payout field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payout {
    /// Not a counted receipt.
    None,
    /// A counted receipt whose payout is "what `compute` gives" (an empty field).
    Computed,
    /// A counted receipt whose payout record is in the tree, under [`PAYOUT`].
    Kept,
}

/// A valid attestation's entry, but for a kept payout record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rec {
    pub fact: Option<Fact>,
    pub payout: Payout,
    pub envelope: Ref,
}

impl Rec {
    /// The entry's bytes as the tree held them (see `txn::Entry`), with the payout record
    /// `kept` (read from the tree when the record says it is there).
    pub fn entry(&self, kept: Option<&[u8]>) -> Result<Vec<u8>, StoreError> {
        let r = self.envelope.encode();
        let payout = match self.payout {
            Payout::None => None,
            Payout::Computed => Some(Bytes(&[])),
            Payout::Kept => Some(Bytes(kept.ok_or_else(|| {
                damaged("a receipt's payout record is missing from the tree")
            })?)),
        };
        let e = Entry {
            state: EntryState::Valid,
            fact: self.fact,
            payout,
            envelope: Bytes(&r),
        };
        postcard::to_allocvec(&e).map_err(|e| damaged(e.to_string()))
    }
}

fn damaged(detail: impl Into<String>) -> StoreError {
    StoreError::Record {
        prefix: char::from(ENTRY),
        detail: detail.into(),
    }
}

/// The longest fact's postcard (a referral's: 1 + 32 + 33 + 5 + 10 bytes), rounded up.
const FACT_MAX: usize = 88;

/// A record in a run: 1 (0: removed), flags (payout kind, 4: has a fact), the fact's length,
/// the fact (zero-padded), the envelope's reference.
const SLOT: usize = 3 + FACT_MAX + REF_LEN;

const HAS_FACT: u8 = 4;

fn slot_of(rec: Option<&Rec>) -> Result<[u8; SLOT], StoreError> {
    let mut slot = [0u8; SLOT];
    let Some(r) = rec else { return Ok(slot) };
    slot[0] = 1;
    slot[1] = match r.payout {
        Payout::None => 0,
        Payout::Computed => 1,
        Payout::Kept => 2,
    };
    if let Some(f) = &r.fact {
        let used = postcard::to_slice(f, &mut slot[3..3 + FACT_MAX])
            .map_err(|e| damaged(format!("a fact does not fit its record: {e}")))?
            .len();
        slot[1] |= HAS_FACT;
        slot[2] = used as u8;
    }
    slot[3 + FACT_MAX..].copy_from_slice(&r.envelope.encode());
    Ok(slot)
}

/// What a run's slot holds: `Some(None)` for a removed entry, `None` if damaged.
fn of_slot(slot: &[u8; SLOT]) -> Option<Option<Rec>> {
    match slot[0] {
        0 => return Some(None),
        1 => {}
        _ => return None,
    }
    let payout = match slot[1] & !HAS_FACT {
        0 => Payout::None,
        1 => Payout::Computed,
        2 => Payout::Kept,
        _ => return None,
    };
    let fact = if slot[1] & HAS_FACT != 0 {
        let n = slot[2] as usize;
        Some(postcard::from_bytes(slot.get(3..3 + n.min(FACT_MAX))?).ok()?)
    } else {
        None
    };
    Some(Some(Rec {
        fact,
        payout,
        envelope: Ref::of(&slot[3 + FACT_MAX..])?,
    }))
}

/// The set's name: its directory in the store's, and its list's key (not "valid": that is the
/// count of valid attestations).
const RUNS: &str = "entries";

fn key_of(id: &Id) -> Key {
    id.0[..16].try_into().expect("16 of 32 bytes")
}

/// Every valid attestation's record, by id (see the module docs), and the anchored ones by
/// market (see `market`).
pub(crate) struct ValidSet {
    entries: Layers<Option<Rec>, SLOT>,
    markets: MarketIndex,
}

/// What a checkpoint wrote of the set (see [`ValidSet::write`]).
pub(crate) struct WrittenSet {
    entries: Written<SLOT>,
    markets: Written<{ crate::market::VALUE }>,
}

impl ValidSet {
    /// The runs the tree lists. The journal's records come next (see [`apply`] and
    /// [`replay`]).
    pub fn load(tree: &sled::Tree, store: &Path) -> Result<ValidSet, StoreError> {
        Ok(ValidSet {
            entries: Layers::load(tree, store, RUNS, Vec::new())?,
            markets: MarketIndex::load(tree, store)?,
        })
    }

    /// The market index.
    pub fn markets(&self) -> &MarketIndex {
        &self.markets
    }

    /// The record of `id`: `Some(None)` if it was removed (a later entry may be in the tree),
    /// `None` if the set never held it.
    pub fn get(&self, id: &Id) -> Result<Option<Option<Rec>>, StoreError> {
        match self.entries.get(&key_of(id))? {
            None => Ok(None),
            Some(Found::Recent(r)) => Ok(Some(*r)),
            Some(Found::Stored(slot)) => of_slot(&slot)
                .map(Some)
                .ok_or_else(|| damaged(format!("the valid record of {} is damaged", id.to_hex()))),
        }
    }

    /// Where the set says the envelope of `id` is, if it holds it valid. An entry written
    /// again with its envelope's place (a receipt's payout recomputed) names where the envelope
    /// was when the write was journaled: the same place, except after a crash. Opening cuts
    /// the log back to the tree's end and the journal records past it append their envelopes
    /// again, in key order, where the call had appended them from two threads at once; so a
    /// place journaled before the crash can name another envelope, whether its record is
    /// completed at that open ([`apply`]) or replayed at a later one ([`replay`]), once the
    /// tree has it. The set has the place the log holds.
    fn place(&self, id: &Id) -> Result<Option<Ref>, StoreError> {
        Ok(self.get(id)?.flatten().map(|r| r.envelope))
    }

    /// The entry of `id` if the set holds it valid (`Ok(None)`: look in the tree), as the
    /// tree would hold it; `kept` reads a kept payout record.
    pub fn entry(
        &self,
        id: &Id,
        kept: impl FnOnce(&[u8]) -> Result<Option<IVec>, StoreError>,
    ) -> Result<Option<IVec>, StoreError> {
        let Some(Some(r)) = self.get(id)? else {
            return Ok(None);
        };
        let payout = match r.payout {
            Payout::Kept => kept(&key(PAYOUT, &[&id.0]))?,
            _ => None,
        };
        r.entry(payout.as_deref()).map(|v| Some(v.into()))
    }

    /// Sets the record of `id` (`None`: removed) and returns the valid record it replaces. A
    /// removal of what the set does not hold valid writes nothing (most removed entries were
    /// pending).
    fn replace(&mut self, id: &Id, r: Option<Rec>) -> Result<Option<Rec>, StoreError> {
        let old = self.get(id)?.flatten();
        if r.is_some() || old.is_some() {
            self.entries.set(key_of(id), r);
        }
        Ok(old)
    }

    /// Writes the records since the last checkpoint as runs (entries and market index), with
    /// the new run lists, into `batch` (a checkpoint's); [`ValidSet::written`] once the batch
    /// is on disk.
    pub fn write(&self, batch: &mut sled::Batch) -> Result<WrittenSet, StoreError> {
        let mut bad = None;
        let entries = self.entries.write(
            |r| {
                slot_of(r.as_ref()).unwrap_or_else(|e| {
                    bad.get_or_insert(e);
                    [0; SLOT]
                })
            },
            batch,
        )?;
        if let Some(e) = bad {
            return Err(e);
        }
        Ok(WrittenSet {
            entries,
            markets: self.markets.write(batch)?,
        })
    }

    /// The batch of [`ValidSet::write`] is on disk: the records it holds leave memory.
    pub fn written(&mut self, w: WrittenSet) {
        self.entries.written(w.entries);
        self.markets.written(w.markets);
    }

    /// Whether a store before format 16 still has its market index in the tree.
    pub fn in_tree(&self) -> bool {
        self.markets.in_tree()
    }

    /// Every record (the newest of each id), for a full scan.
    pub fn for_each(
        &self,
        mut f: impl FnMut(Rec) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.entries.for_each(|found| {
            let r = match found {
                Found::Recent(r) => *r,
                Found::Stored(slot) => {
                    of_slot(&slot).ok_or_else(|| damaged("a valid record is damaged"))?
                }
            };
            r.map_or(Ok(()), &mut f)
        })
    }

    /// Bytes in memory: the runs' filters and indexes, the records since the checkpoint.
    pub fn memory(&self) -> usize {
        self.entries.memory() + self.markets.memory()
    }
}

/// A write of a valid entry, or of an entry's removal, among a shipment's writes.
struct Change<'w> {
    /// Its place in the writes.
    at: usize,
    id: Id,
    /// The entry (`None`: removed).
    entry: Option<Entry<'w>>,
}

fn changes(writes: &[crate::commit::redo::Write]) -> Vec<Change<'_>> {
    let mut out = Vec::new();
    for (at, (k, v)) in writes.iter().enumerate() {
        if k.len() != 33 || k[0] != ENTRY {
            continue;
        }
        let id = Id(id_at(k, 1));
        match v {
            None => out.push(Change {
                at,
                id,
                entry: None,
            }),
            Some(v) => {
                // A value that does not decode stays in the tree: a read reports it.
                if let Ok(e) = postcard::from_bytes::<Entry<'_>>(v) {
                    if e.state == EntryState::Valid {
                        out.push(Change {
                            at,
                            id,
                            entry: Some(e),
                        });
                    }
                }
            }
        }
    }
    out
}

/// The record of a valid entry whose envelope is at `envelope`.
fn rec_of(e: &Entry<'_>, envelope: Ref) -> Rec {
    Rec {
        fact: e.fact,
        payout: match &e.payout {
            None => Payout::None,
            Some(p) if p.0.is_empty() => Payout::Computed,
            Some(_) => Payout::Kept,
        },
        envelope,
    }
}

/// What [`apply`] did with a shipment's writes: the positions it wrote itself (the tree
/// write is done), so that `redo::write` skips them.
pub(crate) type Done = Vec<usize>;

/// Writes a shipment's valid entries (see the module docs): their envelopes to `log`, their
/// kept payout records to the tree, their records to `set`, then removes the tree's keys they
/// replace (the entry; a payout record no longer kept). Removed entries are removed from `set`
/// too.
pub(crate) fn apply(
    tree: &sled::Tree,
    log: &Envelopes,
    set: &RwLock<ValidSet>,
    writes: &[crate::commit::redo::Write],
) -> Result<Done, StoreError> {
    let found = changes(writes);
    if found.is_empty() {
        return index(tree, set, writes);
    }
    let fresh: Vec<(&Id, &[u8])> = found
        .iter()
        .filter_map(|c| match &c.entry {
            Some(e) if Ref::of(e.envelope.0).is_none() => Some((&c.id, e.envelope.0)),
            _ => None,
        })
        .collect();
    let appended = if fresh.is_empty() {
        Vec::new()
    } else {
        log.append(&fresh)?
    };
    let mut appended = appended.into_iter();
    let mut recs = Vec::with_capacity(found.len());
    for c in &found {
        recs.push(match &c.entry {
            None => None,
            Some(e) => {
                let r = match Ref::of(e.envelope.0) {
                    Some(r) => {
                        let s = set.read().unwrap_or_else(|p| p.into_inner());
                        s.place(&c.id)?.unwrap_or(r)
                    }
                    None => appended
                        .next()
                        .ok_or_else(|| damaged("an envelope was not logged"))?,
                };
                Some(rec_of(e, r))
            }
        });
    }
    // A reader finds a record and then what it names: kept payout records go in first, the
    // records next, and the tree's keys they replace last.
    for (c, r) in found.iter().zip(&recs) {
        if let (Some(r), Some(e)) = (r, &c.entry) {
            if let (Payout::Kept, Some(p)) = (r.payout, &e.payout) {
                tree.insert(key(PAYOUT, &[&c.id.0]), p.0)?;
            }
        }
    }
    // Whether each had a kept payout record before (only those have a PAYOUT key to remove).
    let mut kept_before = Vec::with_capacity(found.len());
    {
        let mut s = set.write().unwrap_or_else(|p| p.into_inner());
        for (c, r) in found.iter().zip(&recs) {
            let old = s.replace(&c.id, *r)?;
            kept_before.push(old.is_some_and(|o| o.payout == Payout::Kept));
        }
    }
    let mut done = Vec::with_capacity(found.len());
    for ((c, r), was_kept) in found.iter().zip(&recs).zip(kept_before) {
        if r.is_some() {
            tree.remove(&writes[c.at].0)?;
            done.push(c.at);
        }
        // A removal's tree key goes as any other's (`redo::write`).
        if was_kept && r.is_none_or(|r| r.payout != Payout::Kept) {
            tree.remove(key(PAYOUT, &[&c.id.0]))?;
        }
    }
    // What a market lists, a reader finds: the index comes after the entries.
    done.extend(index(tree, set, writes)?);
    done.sort_unstable();
    Ok(done)
}

/// The market index's part of [`apply`].
fn index(
    tree: &sled::Tree,
    set: &RwLock<ValidSet>,
    writes: &[crate::commit::redo::Write],
) -> Result<Done, StoreError> {
    set.write()
        .unwrap_or_else(|p| p.into_inner())
        .markets
        .apply(tree, writes)
}

/// A shipment the tree already has, replayed at open: its valid entries' records, their
/// envelopes found where the log's records since the checkpoint put them (`logged`). An entry
/// whose envelope is not there was written by a build before format 15: the tree holds it.
pub(crate) fn replay(
    set: &mut ValidSet,
    logged: &HashMap<Id, Ref>,
    writes: &[crate::commit::redo::Write],
) -> Result<(), StoreError> {
    set.markets.replay(writes)?;
    for c in changes(writes) {
        match c.entry {
            None => {
                set.replace(&c.id, None)?;
            }
            Some(e) => {
                let r = match Ref::of(e.envelope.0) {
                    Some(r) => Some(set.place(&c.id)?.unwrap_or(r)),
                    None => logged.get(&c.id).copied(),
                };
                if let Some(r) = r {
                    set.replace(&c.id, Some(rec_of(&e, r)))?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use passalong_protocol::PublicKey;

    fn referral_fact() -> Fact {
        Fact::Referral {
            offer: Id([0xff; 32]),
            recipient: Some(PublicKey([0xfe; 32])),
            hops: u32::MAX,
            created_at_ms: u64::MAX,
        }
    }

    #[test]
    fn records_round_trip_in_slots_and_damage_is_refused() {
        let envelope = Ref {
            file: 7,
            at: 1 << 35,
            len: 230,
        };
        for (fact, payout) in [
            (Some(referral_fact()), Payout::None),
            (
                Some(Fact::Receipt {
                    seller: PublicKey([1; 32]),
                }),
                Payout::Kept,
            ),
            (
                Some(Fact::Membership {
                    connector: PublicKey([2; 32]),
                    member: PublicKey([3; 32]),
                }),
                Payout::Computed,
            ),
            (None, Payout::None),
        ] {
            let r = Rec {
                fact,
                payout,
                envelope,
            };
            let slot = slot_of(Some(&r)).unwrap();
            assert_eq!(of_slot(&slot), Some(Some(r)));
        }
        assert_eq!(of_slot(&slot_of(None).unwrap()), Some(None));
        let mut bad = slot_of(Some(&Rec {
            fact: None,
            payout: Payout::None,
            envelope,
        }))
        .unwrap();
        bad[1] = 3;
        assert_eq!(of_slot(&bad), None);
        bad[0] = 9;
        assert_eq!(of_slot(&bad), None);
    }

    fn entry_write(id: Id, e: &Entry<'_>) -> crate::commit::redo::Write {
        (
            key(ENTRY, &[&id.0]),
            Some(postcard::to_allocvec(e).unwrap().into()),
        )
    }

    /// A tree, an envelope log and a valid set in `dir`, as a store opens them.
    fn open_set(dir: &std::path::Path) -> (sled::Db, Envelopes, RwLock<ValidSet>) {
        let db = sled::open(dir.join("db")).unwrap();
        let (log, _) = Envelopes::open(dir, &db).unwrap();
        let set = RwLock::new(ValidSet::load(&db, dir).unwrap());
        (db, log, set)
    }

    /// A valid entry leaves the tree for the set, its envelope for the log, its kept payout
    /// record for its own key; it reads back whole, across a checkpoint and a reload; a
    /// removal removes all three.
    #[test]
    fn valid_entries_move_out_of_the_tree_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (db, log, set) = open_set(dir.path());
        let (envelope, other) = (vec![5u8; 200], vec![6u8; 200]);
        // Ids as the log checks them: blake3 of the envelope.
        let (a, b, pending) = (
            Id::of_envelope(&envelope),
            Id::of_envelope(&other),
            Id([3; 32]),
        );
        let receipt = Fact::Receipt {
            seller: PublicKey([9; 32]),
        };
        let mut ea = Entry::new(EntryState::Valid, &envelope);
        ea.fact = Some(receipt);
        ea.payout = Some(Bytes(b"payout record"));
        let mut eb = Entry::new(EntryState::Valid, &other);
        eb.fact = Some(referral_fact());
        let ep = Entry::new(EntryState::Pending, &envelope);
        // `b` was pending: its tree key goes.
        db.insert(key(ENTRY, &[&b.0]), postcard::to_allocvec(&ep).unwrap())
            .unwrap();
        let writes = vec![
            entry_write(a, &ea),
            entry_write(b, &eb),
            entry_write(pending, &ep),
        ];
        let done = apply(&db, &log, &set, &writes).unwrap();
        assert_eq!(done, vec![0, 1]);
        assert!(db.get(key(ENTRY, &[&a.0])).unwrap().is_none());
        assert!(db.get(key(ENTRY, &[&b.0])).unwrap().is_none());
        assert_eq!(
            db.get(key(PAYOUT, &[&a.0])).unwrap().as_deref(),
            Some(&b"payout record"[..])
        );
        let read = |s: &ValidSet, id: &Id| {
            s.entry(id, |k| Ok(db.get(k)?)).unwrap().map(|v| {
                let e: Entry<'_> = postcard::from_bytes(&v).unwrap();
                let env = log.read(Ref::of(e.envelope.0).unwrap()).unwrap();
                (e.fact, e.payout.map(|p| p.0.to_vec()), env)
            })
        };
        let check = |s: &ValidSet| {
            assert_eq!(
                read(s, &a),
                Some((
                    Some(receipt),
                    Some(b"payout record".to_vec()),
                    envelope.clone()
                ))
            );
            assert_eq!(read(s, &b).map(|r| r.0), Some(Some(referral_fact())));
            assert_eq!(read(s, &pending), None);
        };
        check(&set.read().unwrap());
        let mut batch = sled::Batch::default();
        let w = set.read().unwrap().write(&mut batch).unwrap();
        db.apply_batch(batch).unwrap();
        set.write().unwrap().written(w);
        check(&set.read().unwrap());
        check(&ValidSet::load(&db, dir.path()).unwrap());
        // Removed (a loose one over budget).
        apply(&db, &log, &set, &[(key(ENTRY, &[&a.0]), None)]).unwrap();
        assert_eq!(set.read().unwrap().get(&a).unwrap(), Some(None));
        assert!(db.get(key(PAYOUT, &[&a.0])).unwrap().is_none());
        // Replayed from a journal: the envelope's place comes from the log's records.
        let mut again = ValidSet::load(&db, dir.path()).unwrap();
        let logged = HashMap::from([(
            a,
            Ref {
                file: 0,
                at: 0,
                len: 200,
            },
        )]);
        replay(
            &mut again,
            &logged,
            &[entry_write(a, &ea), entry_write(pending, &ep)],
        )
        .unwrap();
        assert_eq!(
            again
                .get(&a)
                .unwrap()
                .map(|r| r.map(|r| (r.payout, r.envelope.at))),
            Some(Some((Payout::Kept, 0)))
        );
        assert_eq!(again.get(&pending).unwrap(), None);
        let mut all = 0;
        again
            .for_each(|_| {
                all += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(all, 2, "a (replayed) and b (in its run)");
    }

    /// An entry written again with a place its envelope no longer has (a journal record
    /// completed at open, after the envelopes it named were appended again in another order,
    /// or replayed at a later open) keeps the place the set has: its envelope reads back, not
    /// another's.
    #[test]
    fn an_entry_written_again_keeps_its_envelopes_current_place() {
        let dir = tempfile::tempdir().unwrap();
        let (db, log, set) = open_set(dir.path());
        let (envelope, other) = (vec![5u8; 200], vec![6u8; 200]);
        let (a, b) = (Id::of_envelope(&envelope), Id::of_envelope(&other));
        let receipt = Fact::Receipt {
            seller: PublicKey([9; 32]),
        };
        let mut ea = Entry::new(EntryState::Valid, &envelope);
        ea.fact = Some(receipt);
        let mut eb = Entry::new(EntryState::Valid, &other);
        eb.fact = Some(receipt);
        // Appended `b` first, then `a`, where the original call had `a` first.
        apply(&db, &log, &set, &[entry_write(b, &eb)]).unwrap();
        apply(&db, &log, &set, &[entry_write(a, &ea)]).unwrap();
        let place = |id: &Id| set.read().unwrap().place(id).unwrap().unwrap();
        let (at_a, at_b) = (place(&a), place(&b));
        // A later record rewrites `a`'s entry with the place `a` had in the original call:
        // where `b` is now.
        let stale = at_b.encode();
        let mut rewritten = Entry::new(EntryState::Valid, &stale);
        rewritten.fact = Some(receipt);
        rewritten.payout = Some(Bytes(b"recomputed"));
        apply(&db, &log, &set, &[entry_write(a, &rewritten)]).unwrap();
        assert_eq!(place(&a), at_a);
        assert_eq!(log.read(place(&a)).unwrap(), envelope);
        // The same records replayed at a later open, once the tree has them: `a` keeps the
        // place the log's records since the checkpoint give it, not the journaled one.
        let logged = HashMap::from([(a, at_a), (b, at_b)]);
        let mut again = ValidSet::load(&db, dir.path()).unwrap();
        let records = [
            entry_write(b, &eb),
            entry_write(a, &ea),
            entry_write(a, &rewritten),
        ];
        replay(&mut again, &logged, &records).unwrap();
        assert_eq!(again.place(&a).unwrap(), Some(at_a));
        assert_eq!(again.place(&b).unwrap(), Some(at_b));
    }
}
