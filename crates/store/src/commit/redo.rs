//! Shipments written key by key, made atomic by the journal.
//!
//! sled makes a `Batch` atomic by writing a manifest around it: it rolls its log buffer twice
//! (two buffer writes, each synced) and takes a global lock that waits for every reader. In
//! the ingest bench that was ~40 % of a 32-attestation shipment's wall time. Instead the
//! shipment's writes go to the journal first (`journal`, synced), then to the tree one by one,
//! its journal number last. sled recovers a prefix of its log after a crash (it stops at the
//! first gap: spacejam/sled#867), so every shipment up to the number the tree has is whole and
//! only the next can be cut short: opening writes it again from the journal, which is
//! idempotent. Readers may see a shipment half written, as they may see a large call's first
//! shipments before it returns. Before format 11 the record was a key of the tree ([`KEY`]):
//! opening such a store completes it too ([`recover`]).

use std::sync::RwLock;

use sled::IVec;

use crate::envelopes::{self, Envelopes};
use crate::keyspace::{HOP, REDO};
use crate::valid::ValidSet;
use crate::StoreError;

/// One write of a shipment: a value, or `None` to remove the key.
pub(crate) type Write = (Vec<u8>, Option<IVec>);

/// The key of the redo record of a store before format 11.
pub(crate) const KEY: [u8; 1] = [REDO];

/// The bytes [`encode_into`] adds for `writes`.
pub(crate) fn size(writes: &[Write]) -> usize {
    writes
        .iter()
        .map(|(k, v)| 5 + k.len() + v.as_ref().map_or(0, |v| 4 + v.len()))
        .sum()
}

/// The record of `writes`, added to `out`: per write, key length (u32 BE), key, 0 (remove) or
/// 1 then value length (u32 BE) and value.
pub(crate) fn encode_into(writes: &[Write], out: &mut Vec<u8>) {
    for (k, v) in writes {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        match v {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
}

fn damaged(detail: &str) -> StoreError {
    StoreError::Record {
        prefix: REDO as char,
        detail: detail.to_string(),
    }
}

/// The writes of a record made by [`encode_into`].
pub(crate) fn decode(mut b: &[u8]) -> Result<Vec<Write>, StoreError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
        if b.len() < n {
            return Err(damaged("truncated"));
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn len(b: &mut &[u8]) -> Result<usize, StoreError> {
        let mut four = [0u8; 4];
        four.copy_from_slice(take(b, 4)?);
        Ok(u32::from_be_bytes(four) as usize)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = len(&mut b)?;
        let k = take(&mut b, n)?.to_vec();
        let v = match take(&mut b, 1)? {
            [0] => None,
            [1] => {
                let n = len(&mut b)?;
                Some(IVec::from(take(&mut b, n)?))
            }
            _ => return Err(damaged("bad write tag")),
        };
        out.push((k, v));
    }
    Ok(out)
}

/// Writes (part of) a recorded shipment into the tree, in any order: its keys are distinct.
/// Its hop records are not written: they are kept in runs (see `hops`). Its valid entries go
/// to `valid` (their envelopes to `log` first, see `valid::apply`); the log's end goes in just
/// before the journal number (see `envelopes`).
pub(crate) fn write(
    tree: &sled::Tree,
    log: &Envelopes,
    valid: &RwLock<ValidSet>,
    writes: &[Write],
) -> Result<(), StoreError> {
    let mut done = crate::valid::apply(tree, log, valid, writes)?
        .into_iter()
        .peekable();
    let number = super::journal::last_key();
    for (i, (k, v)) in writes.iter().enumerate() {
        if done.next_if_eq(&i).is_some() || k.first() == Some(&HOP) {
            // Written by `valid::apply`; or journaled, but kept in runs (see `hops`).
            continue;
        }
        if *k == number {
            tree.insert(envelopes::end_key(), &log.end().encode())?;
        }
        match v {
            Some(v) => tree.insert(k.as_slice(), v.clone())?,
            None => tree.remove(k.as_slice())?,
        };
    }
    Ok(())
}

/// Shipments in order as one: each key once, with its latest write, sorted by key.
pub(crate) fn merge(shipments: impl IntoIterator<Item = Vec<Write>>) -> Vec<Write> {
    let mut all: Vec<Write> = shipments.into_iter().flatten().collect();
    // Latest first, so that the stable sort keeps it first among its key's writes.
    all.reverse();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.dedup_by(|later, kept| later.0 == kept.0);
    all
}

/// Completes the shipment a crash may have cut short in a store before format 11 (at open,
/// before anything reads); true if there was a record.
pub(crate) fn recover(tree: &sled::Tree) -> Result<bool, StoreError> {
    let Some(record) = tree.get(KEY)? else {
        return Ok(false);
    };
    for (k, v) in decode(&record)? {
        match v {
            Some(v) => tree.insert(k, v)?,
            None => tree.remove(k)?,
        };
    }
    tree.flush()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(writes: &[Write]) -> Vec<u8> {
        let mut out = Vec::with_capacity(size(writes));
        encode_into(writes, &mut out);
        assert_eq!(out.len(), size(writes));
        out
    }

    fn writes() -> Vec<Write> {
        vec![
            (b"a1".to_vec(), Some(IVec::from(&b"one"[..]))),
            (b"a2".to_vec(), None),
            (b"a0".to_vec(), Some(IVec::from(&[][..]))),
            (b"a3".to_vec(), Some(IVec::from(vec![7u8; 300]))),
        ]
    }

    #[test]
    fn records_round_trip_and_damage_is_an_error() {
        let w = writes();
        let e = encode(&w);
        assert_eq!(decode(&e).unwrap(), w);
        assert_eq!(decode(&[]).unwrap(), vec![]);
        for cut in 1..e.len() {
            // A cut at a write boundary is a shorter valid record; anywhere else, an error.
            if let Ok(d) = decode(&e[..cut]) {
                assert!(d.len() < w.len() && w.starts_with(&d), "cut {cut}");
            }
        }
        let mut bad = e.clone();
        bad[6] = 9; // the first write's tag
        assert!(matches!(decode(&bad), Err(StoreError::Record { .. })));
    }

    #[test]
    fn recovery_completes_a_shipment_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        db.insert(b"a2", &b"old"[..]).unwrap();
        // The record and only the first write reached the tree before the crash.
        db.insert(KEY, encode(&writes())).unwrap();
        db.insert(b"a1", &b"one"[..]).unwrap();
        assert!(recover(&db).unwrap());
        assert_eq!(db.get(b"a1").unwrap().unwrap(), &b"one"[..]);
        assert_eq!(db.get(b"a2").unwrap(), None);
        assert_eq!(db.get(b"a3").unwrap().unwrap(), &[7u8; 300][..]);
        // Writing it again changes nothing.
        assert!(recover(&db).unwrap());
        assert_eq!(db.get(b"a3").unwrap().unwrap(), &[7u8; 300][..]);
        db.remove(KEY).unwrap();
        assert!(!recover(&db).unwrap());
    }
}
