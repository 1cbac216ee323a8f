//! The ledger lines, kept in memory and written to the tree only at checkpoints.
//!
//! A receipt credits about five participants, and sled 0.34 costs about 5 µs per key written:
//! writing every changed line with every ingest made the ledger most of an ingest's cost.
//! Instead, each shipment that changes lines appends their new values to the journal (see
//! `journal`), and a checkpoint writes the lines changed since the last one under [`LEDGER`].
//! Opening reads the lines, then the journal replays what changed since. Stores before format
//! 11 journaled in the tree, under [`JOURNAL`]: opening reads those keys too, and the next
//! checkpoint removes them.

use std::collections::BTreeSet;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::commit::redo;
use crate::error::StoreError;
use crate::keyspace::*;

/// seller ‖ currency ‖ participant: a ledger line's key without the prefix byte.
pub(crate) type LineKey = [u8; LINE_KEY];
/// earned, refunded, settled.
pub(crate) type Sums = [u128; 3];

pub(crate) const LINE_KEY: usize = 32 + 3 + 32;

/// The ledger lines of every seller: hashed, since an ingest reads and writes ~5 lines per
/// receipt (a B-tree of 67-byte keys cost ~16 % of stage 2), with the keys also in order for
/// reading a seller's ledger.
#[derive(Default)]
pub(crate) struct Book {
    lines: FxHashMap<LineKey, Sums>,
    ordered: BTreeSet<LineKey>,
    /// The ledger lines' keys participant first ([`by_participant`]): the markets a
    /// participant has lines in. (Offer totals, see `ledger::offer_line`, are left out.)
    participants: BTreeSet<LineKey>,
    /// Lines changed since they were last written under [`LEDGER`] (a hash set: every
    /// receipt marks a line per hop, and a sled batch sorts its keys itself).
    dirty: FxHashSet<LineKey>,
    /// Per seller, how many times one of its lines changed since the store was opened (what
    /// a cached summary of its ledger was computed at, see `Store::ledger_summary`).
    versions: FxHashMap<[u8; 32], u64>,
}

fn record_error(detail: impl Into<String>) -> StoreError {
    StoreError::Record {
        prefix: char::from(JOURNAL),
        detail: detail.into(),
    }
}

fn sums_of(v: &[u8]) -> Sums {
    let mut s = [0u128; 3];
    for (i, x) in s.iter_mut().enumerate() {
        let mut b = [0u8; 16];
        if let Some(src) = v.get(i * 16..i * 16 + 16) {
            b.copy_from_slice(src);
        }
        *x = u128::from_be_bytes(b);
    }
    s
}

fn put_varint(out: &mut Vec<u8>, mut x: u128) {
    loop {
        let b = (x & 0x7f) as u8;
        x >>= 7;
        if x == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn take_varint(input: &mut &[u8]) -> Result<u128, StoreError> {
    let mut x = 0u128;
    for shift in (0..128).step_by(7) {
        let (&b, rest) = input
            .split_first()
            .ok_or_else(|| record_error("journal entry ends inside a number"))?;
        *input = rest;
        x |= u128::from(b & 0x7f)
            .checked_shl(shift)
            .filter(|v| v >> shift == u128::from(b & 0x7f))
            .ok_or_else(|| record_error("journal number overflows"))?;
        if b & 0x80 == 0 {
            return Ok(x);
        }
    }
    Err(record_error("journal number too long"))
}

/// Lines as a journal holds them: line key, then earned, refunded, settled as varints.
pub(crate) fn encode_lines<'a>(
    lines: impl Iterator<Item = (&'a LineKey, &'a Sums)>,
    out: &mut Vec<u8>,
) {
    for (k, s) in lines {
        out.extend_from_slice(&k[..]);
        for x in s.iter() {
            put_varint(out, *x);
        }
    }
}

/// `n` lines written by [`encode_lines`], from the front of `v`.
pub(crate) fn decode_lines(
    v: &mut &[u8],
    n: usize,
    into: &mut Vec<(LineKey, Sums)>,
) -> Result<(), StoreError> {
    for _ in 0..n {
        let (k, rest) = v
            .split_first_chunk::<LINE_KEY>()
            .ok_or_else(|| record_error("journal entry ends inside a key"))?;
        *v = rest;
        let mut s = [0u128; 3];
        for x in s.iter_mut() {
            *x = take_varint(v)?;
        }
        into.push((*k, s));
    }
    Ok(())
}

/// A journal key's value before format 11: lines until it ends.
fn decode_chunk(mut v: &[u8], into: &mut Vec<(LineKey, Sums)>) -> Result<(), StoreError> {
    while !v.is_empty() {
        decode_lines(&mut v, 1, into)?;
    }
    Ok(())
}

impl Book {
    /// The lines as of the last checkpoint, then the journal keys of a store before format 11
    /// (the journal file's records come next, see [`Book::replay`]).
    pub fn load(tree: &sled::Tree) -> Result<Book, StoreError> {
        let mut book = Book::default();
        for kv in tree.scan_prefix([LEDGER]) {
            let (k, v) = kv?;
            if let Some(lk) = k.get(1..).and_then(|s| LineKey::try_from(s).ok()) {
                book.lines.insert(lk, sums_of(&v));
                book.ordered.insert(lk);
                book.index(&lk, true);
            }
        }
        let mut changes = Vec::new();
        for kv in tree.scan_prefix([JOURNAL]) {
            let (_, v) = kv?;
            changes.clear();
            decode_chunk(&v, &mut changes)?;
            for (lk, s) in changes.drain(..) {
                book.set(lk, s);
            }
        }
        Ok(book)
    }

    fn set(&mut self, k: LineKey, s: Sums) {
        if s == [0; 3] {
            if self.lines.remove(&k).is_some() {
                self.ordered.remove(&k);
                self.index(&k, false);
            }
        } else if self.lines.insert(k, s).is_none() {
            self.ordered.insert(k);
            self.index(&k, true);
        }
        self.dirty.insert(k);
        *self.versions.entry(id_at(&k, 0)).or_default() += 1;
    }

    /// How many times a line of `seller` changed since the store was opened.
    pub fn version(&self, seller: &[u8; 32]) -> u64 {
        self.versions.get(seller).copied().unwrap_or(0)
    }

    /// Adds (or removes) a line to the participant index (only when a line appears or goes:
    /// an ingest mostly changes lines that exist).
    fn index(&mut self, k: &LineKey, add: bool) {
        if k[32..35] == crate::ledger::OFFER_CURRENCY {
            return;
        }
        let p = by_participant(k);
        if add {
            self.participants.insert(p);
        } else {
            self.participants.remove(&p);
        }
    }

    /// Every ledger line of `who`, in every seller's ledger (by seller, then currency).
    pub fn participant(&self, who: &[u8; 32]) -> Vec<(LineKey, Sums)> {
        let mut from = [0u8; LINE_KEY];
        from[..32].copy_from_slice(who);
        self.participants
            .range(from..)
            .take_while(|p| p[..32] == who[..])
            .map(|p| {
                let k = line_key(&id_at(p, 32), &[p[64], p[65], p[66]], who);
                (k, self.get(&k))
            })
            .collect()
    }

    /// Sets a line outside of a journal entry (an upgrade's, written by the next checkpoint).
    pub fn put(&mut self, k: LineKey, s: Sums) {
        self.set(k, s);
    }

    /// A line's sums (zero if it has none).
    pub fn get(&self, k: &LineKey) -> Sums {
        self.lines.get(k).copied().unwrap_or([0; 3])
    }

    /// A seller's lines, in key order (currency, then participant).
    pub fn seller(&self, seller: &[u8; 32]) -> Vec<(LineKey, Sums)> {
        let mut from = [0u8; LINE_KEY];
        from[..32].copy_from_slice(seller);
        self.ordered
            .range(from..)
            .take_while(|k| k[..32] == seller[..])
            .map(|k| (*k, self.get(k)))
            .collect()
    }

    /// A shipment's lines (their new sums) take effect: once it is in the tree, or as the
    /// journal replays it at open.
    pub fn replay(&mut self, lines: impl IntoIterator<Item = (LineKey, Sums)>) {
        for (k, s) in lines {
            self.set(k, s);
        }
    }

    /// Lines changed since the last checkpoint written under [`LEDGER`], and the journal keys
    /// of a store before format 11 dropped (with the redo record, which may hold some), as one
    /// batch; [`Book::checkpointed`] once it is on disk.
    pub fn checkpoint_batch(&self, tree: &sled::Tree) -> Result<sled::Batch, StoreError> {
        let mut b = sled::Batch::default();
        for k in &self.dirty {
            let tk = key(LEDGER, &[&k[..]]);
            match self.lines.get(k) {
                Some(s) => b.insert(
                    tk,
                    s.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<_>>(),
                ),
                None => b.remove(tk),
            }
        }
        for kv in tree.scan_prefix([JOURNAL]) {
            b.remove(kv?.0);
        }
        b.remove(&redo::KEY);
        Ok(b)
    }

    /// The batch of [`Book::checkpoint_batch`] is on disk.
    pub fn checkpointed(&mut self) {
        self.dirty.clear();
    }
}

/// A line's key reordered: participant ‖ seller ‖ currency.
fn by_participant(k: &LineKey) -> LineKey {
    let mut p = [0u8; LINE_KEY];
    p[..32].copy_from_slice(&k[35..]);
    p[32..64].copy_from_slice(&k[..32]);
    p[64..].copy_from_slice(&k[32..35]);
    p
}

/// A line's key.
pub(crate) fn line_key(seller: &[u8; 32], currency: &[u8; 3], who: &[u8; 32]) -> LineKey {
    let mut k = [0u8; LINE_KEY];
    k[..32].copy_from_slice(seller);
    k[32..35].copy_from_slice(currency);
    k[35..].copy_from_slice(who);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(lines: &[(&LineKey, &Sums)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_lines(lines.iter().copied(), &mut out);
        out
    }

    #[test]
    fn lines_round_trip_and_damage_is_an_error() {
        let a = line_key(&[1; 32], b"EUR", &[2; 32]);
        let b = line_key(&[1; 32], b"EUR", &[3; 32]);
        let sa = [u128::MAX, 0, 1 << 70];
        let sb = [127, 128, 300];
        let enc = encoded(&[(&a, &sa), (&b, &sb)]);
        let mut back = Vec::new();
        decode_chunk(&enc, &mut back).unwrap();
        assert_eq!(back, vec![(a, sa), (b, sb)]);
        let (mut v, mut counted) = (&enc[..], Vec::new());
        decode_lines(&mut v, 2, &mut counted).unwrap();
        assert_eq!((counted, v.len()), (back, 0));
        // A cut at the end of a line leaves a shorter valid value.
        let boundary = encoded(&[(&a, &sa)]).len();
        for cut in (1..enc.len()).filter(|&c| c != boundary) {
            let mut out = Vec::new();
            assert!(
                decode_chunk(&enc[..cut], &mut out).is_err(),
                "a journal value cut at {cut} bytes must not decode"
            );
        }
        let mut long = a.to_vec();
        long.extend([0xff; 20]);
        assert!(decode_chunk(&long, &mut Vec::new()).is_err());
    }

    #[test]
    fn replays_over_the_checkpointed_lines_and_old_journal_keys_load_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let a = line_key(&[1; 32], b"EUR", &[2; 32]);
        let b = line_key(&[1; 32], b"EUR", &[3; 32]);
        let other = line_key(&[9; 32], b"EUR", &[2; 32]);
        let mut book = Book::default();
        book.replay([(a, [10, 0, 0]), (b, [5, 0, 0])]);
        db.apply_batch(book.checkpoint_batch(&db).unwrap()).unwrap();
        book.checkpointed();
        let since = [(a, [10, 10, 0]), (other, [1, 0, 0]), (b, [0, 0, 0])];
        book.replay(since);
        let mut back = Book::load(&db).unwrap();
        back.replay(since);
        assert_eq!(back.lines, book.lines);
        assert_eq!(back.seller(&[1; 32]), vec![(a, [10, 10, 0])]);
        // By participant: [2; 32] has lines with two sellers, [3; 32] none any more.
        assert_eq!(
            back.participant(&[2; 32]),
            vec![(a, [10, 10, 0]), (other, [1, 0, 0])]
        );
        assert_eq!(back.participant(&[2; 32]), book.participant(&[2; 32]));
        assert!(back.participant(&[3; 32]).is_empty());
        assert_eq!(back.get(&b), [0; 3]);
        // A journal key of a store before format 11 loads after the lines, in order, and the
        // next checkpoint writes its lines and removes it.
        db.apply_batch(back.checkpoint_batch(&db).unwrap()).unwrap();
        let old = [(&a, &[1, 2, 3]), (&other, &[0, 0, 0])];
        db.insert(
            key(JOURNAL, &[&7u64.to_be_bytes(), &0u32.to_be_bytes()]),
            encoded(&old),
        )
        .unwrap();
        let loaded = Book::load(&db).unwrap();
        assert_eq!(loaded.get(&a), [1, 2, 3]);
        assert_eq!(loaded.get(&other), [0; 3]);
        db.apply_batch(loaded.checkpoint_batch(&db).unwrap())
            .unwrap();
        assert_eq!(db.scan_prefix([JOURNAL]).count(), 0);
        assert_eq!(Book::load(&db).unwrap().lines, loaded.lines);
    }
}
