//! The store's write-ahead log: every shipment, with what it changed of the state kept in
//! memory (ledger lines, receipts' orders), in a file beside the tree until the next
//! checkpoint.
//!
//! Each shipment appends one record and syncs it *before* its keys go to the tree, one by one
//! (sled makes a batch atomic only at a high price: see `redo`); the last key it writes is its
//! record's number (`META journal`). So the journal is what makes a shipment durable: the tree
//! is flushed only at checkpoints. sled recovers a prefix of its log after a crash, so the
//! tree then holds every shipment up to the number it has, and none or the beginning of those
//! after (the last ones after kill -9, those since its last flush after a power loss): opening
//! writes the keys of every later record again (idempotent) and replays the lines and orders
//! of all records since the last checkpoint. A checkpoint writes the lines
//! and orders into the tree with the number the next interval starts at (`META
//! checkpoint`), then empties the file. Lines are their new sums, not deltas, so a replay is
//! idempotent too.
//!
//! Before format 11 the tree held all of this: a redo record per shipment (a key overwritten
//! each time), journal keys and order runs (written, then deleted at the next checkpoint).
//! sled keeps values over 128 KiB (a large call's record) in files of their own and reclaims
//! a log segment only once half of it is dead, so those bytes stayed on disk: a third of a
//! million-attestation store was such files (docs/benchmarks.md).
//!
//! A record: body length (u32 BE), body, the first 8 bytes of blake3(body). Body: number (u64
//! BE), line count (u32 BE) and lines (see `book::encode_lines`), order count (u32 BE) and
//! (order key ‖ receipt id) per receipt, then the shipment's writes (see `redo::encode`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::sync::RwLock;

use passalong_protocol::Id;

use super::redo;
use crate::book::{self, LineKey, Sums};
use crate::envelopes::{Envelopes, Logged};
use crate::keyspace::*;
use crate::orders::OrderKey;
use crate::valid::ValidSet;
use crate::StoreError;

/// The journal's file name in the store's directory.
pub(crate) const FILE: &str = "journal";

/// The tree's number of the last record its shipments wrote.
pub(crate) fn last_key() -> Vec<u8> {
    key(META, &[b"journal"])
}

/// The tree's number of the first record after its last checkpoint.
fn base_key() -> Vec<u8> {
    key(META, &[b"checkpoint"])
}

fn damaged(detail: impl Into<String>) -> StoreError {
    StoreError::Record {
        prefix: char::from(JOURNAL),
        detail: detail.into(),
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(sled::Error::Io(e))
}

fn number(tree: &sled::Tree, k: &[u8]) -> Result<Option<u64>, StoreError> {
    match tree.get(k)? {
        None => Ok(None),
        Some(v) => match <[u8; 8]>::try_from(v.as_ref()) {
            Ok(b) => Ok(Some(u64::from_be_bytes(b))),
            Err(_) => Err(damaged(format!(
                "{} is {} bytes long",
                hex::encode(k),
                v.len()
            ))),
        },
    }
}

/// One shipment.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Record {
    /// New sums of the ledger lines it changed.
    pub lines: Vec<(LineKey, Sums)>,
    /// Its receipts' orders.
    pub orders: Vec<(OrderKey, Id)>,
    /// Its keys, its number's last.
    pub writes: Vec<redo::Write>,
}

/// The open journal file.
pub(crate) struct Journal {
    file: File,
    /// The file's length: where the next record starts.
    len: u64,
    /// The number of the next record.
    next: u64,
}

impl Journal {
    /// Opens the journal of `tree` in `dir`: writes again the keys of the records after the
    /// tree's last (of every record since the last checkpoint if `logged` is `None`: the
    /// envelope log lost records the tree points to), replays the valid entries of the others
    /// into `valid` (their envelopes where `logged` says, see `valid::replay`), then hands
    /// every record since the tree's last checkpoint to `replay`, in order. A record cut short (by a crash while it was appended)
    /// is cut off. Fails if the file lacks a record the tree has (it was changed behind our
    /// back).
    pub fn open(
        dir: &Path,
        tree: &sled::Tree,
        log: &Envelopes,
        logged: Option<&Logged>,
        valid: &RwLock<ValidSet>,
        mut replay: impl FnMut(Record),
    ) -> Result<Journal, StoreError> {
        let rewrite = logged.is_none();
        let base = number(tree, &base_key())?.unwrap_or(0);
        let last = number(tree, &last_key())?.filter(|l| *l >= base);
        let path = dir.join(FILE);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        if created {
            // The file's name must survive a power loss as well as its contents.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let mut input = BufReader::new(&mut file);
        let (mut keep, mut next, mut completed) = (0u64, base, false);
        let mut body = Vec::new();
        while let Some((seq, len)) = read_record(&mut input, &mut body).map_err(io)? {
            if seq < base {
                // Written before the checkpoint that did not get to empty the file.
                keep += len;
                continue;
            }
            if seq != next {
                break;
            }
            // Journaled, then cut short or not begun: complete it.
            let complete = rewrite || last.is_none_or(|l| seq > l);
            let record = decode_body(&body)?;
            if complete {
                redo::write(tree, log, valid, &record.writes)?;
                completed = true;
            } else if let Some(logged) = logged {
                let mut set = valid.write().unwrap_or_else(|p| p.into_inner());
                crate::valid::replay(&mut set, logged, &record.writes)?;
            }
            replay(record);
            keep += len;
            next = seq + 1;
        }
        drop(input);
        if let Some(l) = last {
            if next <= l {
                return Err(damaged(format!(
                    "the journal file holds records up to {} but the tree has them up to {l}",
                    next as i128 - 1
                )));
            }
        }
        if completed {
            tree.flush()?;
        }
        if file.metadata().map_err(io)?.len() != keep {
            file.set_len(keep).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(Journal {
            file,
            len: keep,
            next,
        })
    }

    /// Appends and syncs the record of a shipment of `writes` that changed `lines` and counts
    /// receipts of `orders`; adds the record's number to `writes`, last.
    pub fn append(
        &mut self,
        lines: &BTreeMap<LineKey, Sums>,
        orders: &[(OrderKey, Id)],
        writes: &mut Vec<redo::Write>,
    ) -> Result<(), StoreError> {
        let seq = self.next;
        writes.push((last_key(), Some(seq.to_be_bytes().to_vec().into())));
        // The record in one buffer: its length is filled in once the body is written.
        let mut rec = Vec::with_capacity(
            28 + lines.len() * (book::LINE_KEY + 12) + orders.len() * 48 + redo::size(writes),
        );
        rec.extend_from_slice(&[0; 4]);
        rec.extend_from_slice(&seq.to_be_bytes());
        rec.extend_from_slice(&(lines.len() as u32).to_be_bytes());
        book::encode_lines(lines.iter(), &mut rec);
        rec.extend_from_slice(&(orders.len() as u32).to_be_bytes());
        for (k, id) in orders {
            rec.extend_from_slice(k);
            rec.extend_from_slice(&id.0);
        }
        redo::encode_into(writes, &mut rec);
        let body_len = (rec.len() - 4) as u32;
        rec[..4].copy_from_slice(&body_len.to_be_bytes());
        let sum = blake3::hash(&rec[4..]);
        rec.extend_from_slice(&sum.as_bytes()[..8]);
        if let Err(e) = self
            .file
            .write_all(&rec)
            .and_then(|()| self.file.sync_data())
        {
            // A record cut short would hide the ones after it: cut it off (or opening will).
            let _ = self.file.set_len(self.len);
            writes.pop();
            return Err(io(e));
        }
        self.len += rec.len() as u64;
        self.next = seq + 1;
        Ok(())
    }

    /// The file's length: what opening would read.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Adds to a checkpoint's `batch` where the next interval's records start.
    pub fn checkpoint(&self, batch: &mut sled::Batch) {
        batch.insert(base_key(), &self.next.to_be_bytes());
    }

    /// The checkpoint's batch is on disk: its records are no longer needed.
    pub fn checkpointed(&mut self) -> Result<(), StoreError> {
        self.file.set_len(0).map_err(io)?;
        self.len = 0;
        self.file.sync_data().map_err(io)
    }
}

/// Reads the next whole, intact record into `body`: its number and length in the file. `None`
/// at the end, or at a record cut short or damaged (a crash while it was appended).
fn read_record(input: &mut impl Read, body: &mut Vec<u8>) -> std::io::Result<Option<(u64, u64)>> {
    let mut len = [0u8; 4];
    if !read_all(input, &mut len)? {
        return Ok(None);
    }
    let n = u32::from_be_bytes(len) as usize;
    if n < 16 {
        return Ok(None);
    }
    body.clear();
    body.resize(n, 0);
    let mut sum = [0u8; 8];
    if !read_all(input, body)? || !read_all(input, &mut sum)? {
        return Ok(None);
    }
    if blake3::hash(body).as_bytes()[..8] != sum {
        return Ok(None);
    }
    let seq = u64::from_be_bytes(body[..8].try_into().unwrap_or_default());
    Ok(Some((seq, (n + 12) as u64)))
}

/// Fills `buf`; false if the input ends first.
fn read_all(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    match input.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// A record's body; its writes only `with_writes` (opening needs those of the shipments the
/// tree lacks, and the lines and orders of all).
fn decode_body(body: &[u8]) -> Result<Record, StoreError> {
    fn count(b: &mut &[u8]) -> Result<usize, StoreError> {
        let (n, rest) = b
            .split_first_chunk::<4>()
            .ok_or_else(|| damaged("a journal record ends inside a count"))?;
        *b = rest;
        Ok(u32::from_be_bytes(*n) as usize)
    }
    let mut b = body.get(8..).unwrap_or_default();
    let n = count(&mut b)?;
    let mut rec = Record::default();
    book::decode_lines(&mut b, n, &mut rec.lines)?;
    let n = count(&mut b)?;
    let orders = b
        .get(..n * 48)
        .ok_or_else(|| damaged("a journal record ends inside its orders"))?;
    rec.orders = orders
        .chunks_exact(48)
        .map(|r| {
            let mut k = [0u8; 16];
            k.copy_from_slice(&r[..16]);
            (k, Id(id_at(r, 16)))
        })
        .collect();
    rec.writes = redo::decode(&b[n * 48..])?;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(i: u8) -> BTreeMap<LineKey, Sums> {
        [(
            book::line_key(&[i; 32], b"EUR", &[2; 32]),
            [u128::from(i), 0, 7],
        )]
        .into()
    }

    fn orders(i: u8) -> Vec<(OrderKey, Id)> {
        vec![([i; 16], Id([i; 32]))]
    }

    fn writes(i: u8) -> Vec<redo::Write> {
        vec![(vec![b'k', i], Some(vec![i; 3].into()))]
    }

    /// Appends shipment `i` as the store does, then writes its first `applied` keys (its
    /// journal number is the last of its two).
    fn ship(
        j: &mut Journal,
        dir: &Path,
        tree: &sled::Tree,
        i: u8,
        applied: usize,
    ) -> Vec<redo::Write> {
        let mut w = writes(i);
        j.append(&lines(i), &orders(i), &mut w).unwrap();
        assert_eq!(w.len(), 2);
        let (log, _) = Envelopes::open(dir, tree).unwrap();
        let valid = RwLock::new(ValidSet::load(tree, dir).unwrap());
        redo::write(tree, &log, &valid, &w[..applied]).unwrap();
        w
    }

    fn reopen(dir: &Path, tree: &sled::Tree) -> Result<(Journal, Vec<Record>), StoreError> {
        let mut got = Vec::new();
        let (log, logged) = Envelopes::open(dir, tree)?;
        let valid = RwLock::new(ValidSet::load(tree, dir)?);
        let j = Journal::open(dir, tree, &log, logged.as_ref(), &valid, |r| got.push(r))?;
        Ok((j, got))
    }

    fn record(w: Vec<redo::Write>, i: u8) -> Record {
        Record {
            lines: lines(i).into_iter().collect(),
            orders: orders(i),
            writes: w,
        }
    }

    fn has(tree: &sled::Tree, i: u8) -> bool {
        tree.get([b'k', i]).unwrap().is_some()
    }

    #[test]
    fn replays_every_record_and_completes_what_the_tree_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let (mut j, got) = reopen(dir.path(), &db).unwrap();
        assert!(got.is_empty());
        let w1 = ship(&mut j, dir.path(), &db, 1, 2);
        let w2 = ship(&mut j, dir.path(), &db, 2, 2);
        // Journaled, then the crash: none of its keys, or only some, reached the tree.
        let w3 = ship(&mut j, dir.path(), &db, 3, 0);
        drop(j);
        let (mut j, got) = reopen(dir.path(), &db).unwrap();
        assert!(has(&db, 3), "completed from the journal");
        assert_eq!(got, vec![record(w1, 1), record(w2, 2), record(w3, 3)]);
        let w4 = ship(&mut j, dir.path(), &db, 4, 1);
        drop(j);
        let (j, got) = reopen(dir.path(), &db).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], record(w4, 4));
        // A checkpoint: its records are not replayed again, whether the file was emptied or
        // the crash came first.
        let mut batch = sled::Batch::default();
        j.checkpoint(&mut batch);
        db.apply_batch(batch).unwrap();
        drop(j);
        let (mut j, got) = reopen(dir.path(), &db).unwrap();
        assert!(got.is_empty());
        let w5 = ship(&mut j, dir.path(), &db, 5, 2);
        drop(j);
        let (mut j, got) = reopen(dir.path(), &db).unwrap();
        assert_eq!(got, vec![record(w5, 5)]);
        j.checkpointed().unwrap();
        assert_eq!(std::fs::metadata(dir.path().join(FILE)).unwrap().len(), 0);
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_missing_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let (mut j, _) = reopen(dir.path(), &db).unwrap();
        let w1 = ship(&mut j, dir.path(), &db, 1, 2);
        ship(&mut j, dir.path(), &db, 2, 0);
        drop(j);
        let path = dir.path().join(FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        // Record 2 cut short, as by a crash while it was appended: cut off at open, and its
        // keys are not written.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut j, got) = reopen(dir.path(), &db).unwrap();
        assert_eq!(got, vec![record(w1, 1)]);
        assert!(!has(&db, 2));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len / 2);
        // The next record takes its number.
        let w7 = ship(&mut j, dir.path(), &db, 7, 2);
        drop(j);
        let (j, got) = reopen(dir.path(), &db).unwrap();
        assert_eq!(got[1], record(w7, 7));
        drop(j);
        // A byte of record 1 changed: the tree has it, the file no longer does.
        let mut bad = std::fs::read(&path).unwrap();
        bad[10] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            reopen(dir.path(), &db),
            Err(StoreError::Record { prefix: 'j', .. })
        ));
        // The file gone altogether: the same.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            reopen(dir.path(), &db),
            Err(StoreError::Record { prefix: 'j', .. })
        ));
    }
}
