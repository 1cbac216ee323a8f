//! The ledger lines, kept in memory and written to the tree only at checkpoints.
//!
//! A receipt credits about five participants, and sled 0.34 costs about 5 µs per key written:
//! writing every changed line with every ingest made the ledger most of an ingest's cost.
//! Instead, each ingest that changes lines appends their new values to a journal (one key per
//! [`LINES_PER_CHUNK`] lines, in the same atomic batch as everything else), and a checkpoint
//! writes the lines changed since the last one under [`LEDGER`] and drops the journal, in one
//! batch. Opening reads the lines, then replays the journal in order. Journal values are the
//! lines' new sums, not deltas, so replaying is idempotent.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use crate::error::StoreError;
use crate::keyspace::*;
use crate::redo;

/// seller ‖ currency ‖ participant: a ledger line's key without the prefix byte.
pub(crate) type LineKey = [u8; LINE_KEY];
/// earned, refunded, settled.
pub(crate) type Sums = [u128; 3];

pub(crate) const LINE_KEY: usize = 32 + 3 + 32;

/// Lines per journal key: values stay a few KiB, well under sled's blob threshold even when a
/// leaf holds 16 of them.
const LINES_PER_CHUNK: usize = 32;

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
    /// Lines changed since they were last written under [`LEDGER`].
    dirty: BTreeSet<LineKey>,
    /// Per seller, how many times one of its lines changed since the store was opened (what
    /// a cached summary of its ledger was computed at, see `Store::ledger_summary`).
    versions: FxHashMap<[u8; 32], u64>,
    /// The sequence number of the next journal entry.
    next_seq: u64,
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

/// One journal value: (line key, earned, refunded, settled) per line.
fn encode_chunk(lines: &[(&LineKey, &Sums)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() * (LINE_KEY + 12));
    for (k, s) in lines {
        out.extend_from_slice(&k[..]);
        for x in s.iter() {
            put_varint(&mut out, *x);
        }
    }
    out
}

fn decode_chunk(mut v: &[u8], into: &mut Vec<(LineKey, Sums)>) -> Result<(), StoreError> {
    while !v.is_empty() {
        let (k, rest) = v
            .split_first_chunk::<LINE_KEY>()
            .ok_or_else(|| record_error("journal entry ends inside a key"))?;
        v = rest;
        let mut s = [0u128; 3];
        for x in s.iter_mut() {
            *x = take_varint(&mut v)?;
        }
        into.push((*k, s));
    }
    Ok(())
}

impl Book {
    /// The lines as of the last checkpoint, then every journal entry since, in order.
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
            let (k, v) = kv?;
            changes.clear();
            decode_chunk(&v, &mut changes)?;
            for (lk, s) in changes.drain(..) {
                book.set(lk, s);
            }
            book.next_seq = u64_at(&k, 1) + 1;
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

    /// The sequence number of the next journal entry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Adds journal entry `seq` for `changes` (new sums per line) to a shipment's `writes`;
    /// [`Book::commit`] applies them once the shipment is in the tree. Entries are numbered
    /// from [`Book::next_seq`] on, one per shipment that changes lines.
    pub fn journal(seq: u64, changes: &BTreeMap<LineKey, Sums>, writes: &mut Vec<redo::Write>) {
        let lines: Vec<(&LineKey, &Sums)> = changes.iter().collect();
        for (i, chunk) in lines.chunks(LINES_PER_CHUNK).enumerate() {
            writes.push((
                key(JOURNAL, &[&seq.to_be_bytes(), &(i as u32).to_be_bytes()]),
                Some(encode_chunk(chunk).into()),
            ));
        }
    }

    /// Journal entry `seq` (written by [`Book::journal`]) is in the tree: its lines take
    /// effect.
    pub fn commit(&mut self, seq: u64, changes: BTreeMap<LineKey, Sums>) {
        if changes.is_empty() {
            return;
        }
        for (k, s) in changes {
            self.set(k, s);
        }
        self.next_seq = seq + 1;
    }

    /// Lines changed since the last checkpoint written under [`LEDGER`], and the journal
    /// dropped (with the redo record, which may hold journal entries), as one batch;
    /// [`Book::checkpointed`] once it is on disk.
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

    #[test]
    fn chunks_round_trip_and_damage_is_an_error() {
        let a = line_key(&[1; 32], b"EUR", &[2; 32]);
        let b = line_key(&[1; 32], b"EUR", &[3; 32]);
        let sa = [u128::MAX, 0, 1 << 70];
        let sb = [127, 128, 300];
        let enc = encode_chunk(&[(&a, &sa), (&b, &sb)]);
        let mut back = Vec::new();
        decode_chunk(&enc, &mut back).unwrap();
        assert_eq!(back, vec![(a, sa), (b, sb)]);
        // sled checksums its values; this is for files changed behind its back. A cut at the
        // end of a line leaves a shorter valid value.
        let boundary = encode_chunk(&[(&a, &sa)]).len();
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
    fn journal_replays_over_the_checkpointed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let a = line_key(&[1; 32], b"EUR", &[2; 32]);
        let b = line_key(&[1; 32], b"EUR", &[3; 32]);
        let other = line_key(&[9; 32], b"EUR", &[2; 32]);
        let mut book = Book::default();
        let step = |book: &mut Book, lines: &[(LineKey, Sums)]| {
            let changes: BTreeMap<_, _> = lines.iter().copied().collect();
            let mut writes = Vec::new();
            let seq = book.next_seq();
            Book::journal(seq, &changes, &mut writes);
            redo::apply(&db, &writes).unwrap();
            book.commit(seq, changes);
        };
        step(&mut book, &[(a, [10, 0, 0]), (b, [5, 0, 0])]);
        db.apply_batch(book.checkpoint_batch(&db).unwrap()).unwrap();
        book.checkpointed();
        step(&mut book, &[(a, [10, 10, 0]), (other, [1, 0, 0])]);
        step(&mut book, &[(b, [0, 0, 0])]);
        let back = Book::load(&db).unwrap();
        assert_eq!(back.lines, book.lines);
        assert_eq!(back.next_seq, book.next_seq);
        assert_eq!(back.seller(&[1; 32]), vec![(a, [10, 10, 0])]);
        // By participant: [2; 32] has lines with two sellers, [3; 32] none any more.
        assert_eq!(
            back.participant(&[2; 32]),
            vec![(a, [10, 10, 0]), (other, [1, 0, 0])]
        );
        assert_eq!(back.participant(&[2; 32]), book.participant(&[2; 32]));
        assert!(back.participant(&[3; 32]).is_empty());
        assert_eq!(back.get(&b), [0; 3]);
        // A checkpoint leaves no journal and the same lines.
        db.apply_batch(back.checkpoint_batch(&db).unwrap()).unwrap();
        assert_eq!(db.scan_prefix([JOURNAL]).count(), 0);
        assert_eq!(Book::load(&db).unwrap().lines, book.lines);
    }
}
