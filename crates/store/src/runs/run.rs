//! One run: (16-byte key, `V`-byte value) records sorted by key, one per key, in a file of its
//! own, never changed once written. In memory a run keeps only the first key of each block and
//! a [`Filter`] (~1.4 bytes per key), so a lookup costs nothing when the filter rules the key
//! out and one 4 KiB read when it does not.
//!
//! The file: blocks of [`BLOCK`] bytes from offset 0, each up to `(BLOCK - 16) / (16 + V)`
//! records (key ‖ value), zero padding, the block's record count (u32 LE), four zero bytes and
//! the first 8 bytes of blake3 of all before them; then the first key of every block; then the
//! filter; then a trailer: [`MAGIC`], the version (u32 LE), four zero bytes, the records,
//! blocks and filter blocks (u64 LE each), and the first 8 bytes of blake3 of the index, the
//! filter and the trailer before them. The value size is the run set's (each set has a
//! directory of its own, see `runs`).
//!
//! A block is checked the first time a lookup reads it, as a database checks a block when it
//! loads it into its cache: the file never changes, so later reads of the block (from the OS's
//! cache) skip the hash, which cost a 1M store's ingest ~4 % of its calling thread (a lookup
//! is one 4 KiB read and, checked, one 4 KiB blake3). Reading the whole run (`records`, for a
//! merge) checks every block again.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::filter::Filter;
use super::Key;
use crate::keyspace::*;
use crate::StoreError;

/// Bytes per block: a page.
pub(crate) const BLOCK: usize = 4096;

/// Bytes of a block's count and check.
const BLOCK_TAIL: usize = 16;

/// The trailer's first bytes.
const MAGIC: &[u8; 8] = b"PLORDRUN";

const VERSION: u32 = 1;

const TRAILER: usize = 8 + 4 + 4 + 8 * 3 + 8;

/// An open run of `V`-byte values.
pub(crate) struct Run<const V: usize> {
    /// Its number: its file is `<seq as 16 hex digits>.run`.
    pub seq: u64,
    /// Records (keys) it holds.
    pub len: u64,
    path: PathBuf,
    file: File,
    /// The first key of each block, as a big-endian number (compared without `memcmp`).
    index: Vec<u128>,
    filter: Filter,
    /// One bit per block: checked by a lookup already.
    checked: Box<[AtomicU64]>,
}

/// The file name of run `seq`.
pub(crate) fn file_name(seq: u64) -> String {
    format!("{seq:016x}.run")
}

/// The run number a file name stands for, if it is a run's.
pub(crate) fn seq_of(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".run")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(sled::Error::Io(e))
}

fn damaged(path: &Path, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Record {
        prefix: char::from(META),
        detail: format!("run {}: {detail}", path.display()),
    }
}

fn check(bytes: &[u8]) -> [u8; 8] {
    let mut c = [0u8; 8];
    c.copy_from_slice(&blake3::hash(bytes).as_bytes()[..8]);
    c
}

fn u64_le(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

impl<const V: usize> Run<V> {
    /// One record: key, value.
    const RECORD: usize = 16 + V;
    /// Records per block.
    pub const PER_BLOCK: usize = (BLOCK - BLOCK_TAIL) / Self::RECORD;

    /// Writes `records` (sorted by key, one per key, or sorted whole; its filter sized for
    /// `expected` keys: 0 for a set read by position, which has no use for one) as run `seq`
    /// in `dir`: to a temporary file, synced, renamed, and the directory synced, so that the
    /// run is whole on disk before a checkpoint names it.
    pub fn write(
        dir: &Path,
        seq: u64,
        expected: usize,
        records: impl Iterator<Item = Result<(Key, [u8; V]), StoreError>>,
    ) -> Result<Run<V>, StoreError> {
        let path = dir.join(file_name(seq));
        let tmp = dir.join(format!("{}.tmp", file_name(seq)));
        let written = Self::write_to(&tmp, expected, records).and_then(|len| {
            std::fs::rename(&tmp, &path).map_err(io)?;
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            Ok(len)
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Run::open(dir, seq)
    }

    fn write_to(
        tmp: &Path,
        expected: usize,
        records: impl Iterator<Item = Result<(Key, [u8; V]), StoreError>>,
    ) -> Result<u64, StoreError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)
            .map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut filter = Filter::for_keys(expected);
        let mut index: Vec<u8> = Vec::new();
        let mut block = vec![0u8; BLOCK];
        let (mut n, mut len) = (0usize, 0u64);
        let mut last: Option<Key> = None;
        let flush = |block: &mut Vec<u8>, n: usize, out: &mut BufWriter<File>| {
            block[BLOCK - 16..BLOCK - 12].copy_from_slice(&(n as u32).to_le_bytes());
            let c = check(&block[..BLOCK - 8]);
            block[BLOCK - 8..].copy_from_slice(&c);
            let r = out.write_all(block);
            block.fill(0);
            r
        };
        let record = Self::RECORD;
        for r in records {
            let (k, v) = r?;
            debug_assert!(last.is_none_or(|l| l <= k), "a run's records are sorted");
            last = Some(k);
            if n == Self::PER_BLOCK {
                flush(&mut block, n, &mut out).map_err(io)?;
                n = 0;
            }
            if n == 0 {
                index.extend_from_slice(&k);
            }
            block[n * record..n * record + 16].copy_from_slice(&k);
            block[n * record + 16..(n + 1) * record].copy_from_slice(&v);
            filter.insert(&k);
            n += 1;
            len += 1;
        }
        if n > 0 {
            flush(&mut block, n, &mut out).map_err(io)?;
        }
        let blocks = index.len() / 16;
        let filter = filter.to_bytes();
        let mut trailer = Vec::with_capacity(TRAILER);
        trailer.extend_from_slice(MAGIC);
        trailer.extend_from_slice(&VERSION.to_le_bytes());
        trailer.extend_from_slice(&[0; 4]);
        trailer.extend_from_slice(&len.to_le_bytes());
        trailer.extend_from_slice(&(blocks as u64).to_le_bytes());
        trailer.extend_from_slice(&((filter.len() / Filter::byte_len(1)) as u64).to_le_bytes());
        let mut h = blake3::Hasher::new();
        h.update(&index);
        h.update(&filter);
        h.update(&trailer);
        trailer.extend_from_slice(&h.finalize().as_bytes()[..8]);
        out.write_all(&index).map_err(io)?;
        out.write_all(&filter).map_err(io)?;
        out.write_all(&trailer).map_err(io)?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok(len)
    }

    /// Opens run `seq` in `dir`: reads and checks its trailer, index and filter.
    pub fn open(dir: &Path, seq: u64) -> Result<Run<V>, StoreError> {
        let path = dir.join(file_name(seq));
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < TRAILER as u64 {
            return Err(damaged(
                &path,
                format!("{len} bytes, shorter than its trailer"),
            ));
        }
        let mut trailer = [0u8; TRAILER];
        file.read_exact_at(&mut trailer, len - TRAILER as u64)
            .map_err(io)?;
        if &trailer[..8] != MAGIC {
            return Err(damaged(&path, "no trailer at its end (cut short?)"));
        }
        let version = u32::from_le_bytes(trailer[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(damaged(
                &path,
                format!("version {version}, expected {VERSION}"),
            ));
        }
        let (len_records, blocks, filter_blocks) = (
            u64_le(&trailer[16..]),
            u64_le(&trailer[24..]),
            u64_le(&trailer[32..]),
        );
        let tail = blocks
            .checked_mul(16)
            .zip(filter_blocks.checked_mul(Filter::byte_len(1) as u64))
            .and_then(|(i, f)| i.checked_add(f));
        let expected = blocks
            .checked_mul(BLOCK as u64)
            .zip(tail)
            .and_then(|(b, t)| b.checked_add(t)?.checked_add(TRAILER as u64));
        let (Some(tail), Some(expected)) = (tail, expected) else {
            return Err(damaged(&path, "its trailer's sizes overflow"));
        };
        if expected != len || len_records > blocks * Self::PER_BLOCK as u64 || filter_blocks == 0 {
            return Err(damaged(
                &path,
                format!(
                    "{len} bytes, its trailer says {expected} ({blocks} blocks, {len_records} records)"
                ),
            ));
        }
        let mut rest = vec![0u8; tail as usize];
        file.read_exact_at(&mut rest, blocks * BLOCK as u64)
            .map_err(io)?;
        let mut h = blake3::Hasher::new();
        h.update(&rest);
        h.update(&trailer[..TRAILER - 8]);
        if h.finalize().as_bytes()[..8] != trailer[TRAILER - 8..] {
            return Err(damaged(&path, "its index or filter is damaged"));
        }
        let (index, filter) = rest.split_at(blocks as usize * 16);
        Ok(Run {
            seq,
            len: len_records,
            index: index.chunks_exact(16).map(number).collect(),
            filter: Filter::from_bytes(filter),
            path,
            file,
            checked: (0..(blocks as usize).div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        })
    }

    /// The value this run holds for `k`.
    pub fn get(&self, k: &Key) -> Result<Option<[u8; V]>, StoreError> {
        if !self.filter.may_contain(k) {
            return Ok(None);
        }
        let want = number(k);
        let b = match self.index.binary_search(&want) {
            Ok(b) => b,
            Err(0) => return Ok(None),
            Err(b) => b - 1,
        };
        let mut block = [0u8; BLOCK];
        self.file
            .read_exact_at(&mut block, (b * BLOCK) as u64)
            .map_err(io)?;
        let n = self.checked_once(&block, b)?;
        let record = |i: usize| &block[i * Self::RECORD..(i + 1) * Self::RECORD];
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match number(record(mid)).cmp(&want) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(value(record(mid)))),
            }
        }
        Ok(None)
    }

    /// Block `b`, read and checked, with the number of records it holds.
    pub fn block(&self, b: usize) -> Result<(Box<[u8; BLOCK]>, usize), StoreError> {
        let mut block = Box::new([0u8; BLOCK]);
        self.file
            .read_exact_at(&mut block[..], (b * BLOCK) as u64)
            .map_err(io)?;
        let n = self.checked_once(&block[..], b)?;
        Ok((block, n))
    }

    /// Record `i` of a block (key ‖ value).
    pub fn record(block: &[u8], i: usize) -> &[u8] {
        &block[i * Self::RECORD..(i + 1) * Self::RECORD]
    }

    /// For a run sorted by whole record (see `Runs::load_records`): how many of its records
    /// are smaller than `t` (key ‖ value, or a prefix of one), which is also where `t` would
    /// go. Every block but the last is full, so a position is a block and a place in it. The
    /// index narrows it to the blocks that start with `t`'s key; those are read.
    pub fn position(&self, t: &[u8]) -> Result<u64, StoreError> {
        // A shorter `t` as a key: zero-padded (records that start with it are larger).
        let mut padded = [0u8; 16];
        let n = t.len().min(16);
        padded[..n].copy_from_slice(&t[..n]);
        let tk = number(&padded);
        // The last block starting below `t`'s key holds smaller records; blocks from `hi`
        // on start above it.
        let mut lo = self.index.partition_point(|&f| f < tk).saturating_sub(1);
        let mut hi = self.index.partition_point(|&f| f <= tk);
        if hi == 0 {
            return Ok(0);
        }
        // The last block whose first record is below `t`: blocks [lo, hi) are read.
        let mut last: Option<(usize, Box<[u8; BLOCK]>, usize)> = None;
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (block, n) = self.block(mid)?;
            if Self::record(&block[..], 0) < t {
                last = Some((mid, block, n));
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let Some((b, block, n)) = last else {
            return Ok(0);
        };
        let (mut a, mut z) = (0, n);
        while a < z {
            let mid = (a + z) / 2;
            if Self::record(&block[..], mid) < t {
                a = mid + 1;
            } else {
                z = mid;
            }
        }
        Ok((b * Self::PER_BLOCK + a) as u64)
    }

    /// The number of records in block `b`, read as `block` by a lookup: checked, its hash
    /// only the first time (see the module docs).
    fn checked_once(&self, block: &[u8], b: usize) -> Result<usize, StoreError> {
        let (word, bit) = (b / 64, 1u64 << (b % 64));
        let seen = self
            .checked
            .get(word)
            .is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0);
        let n = self.checked(block, b, !seen)?;
        if let (false, Some(w)) = (seen, self.checked.get(word)) {
            w.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(n)
    }

    /// The number of records in block `b`, read as `block`, once checked (its hash too with
    /// `hash`).
    fn checked(&self, block: &[u8], b: usize, hash: bool) -> Result<usize, StoreError> {
        let n =
            u32::from_le_bytes(block[BLOCK - 16..BLOCK - 12].try_into().expect("4 bytes")) as usize;
        if n == 0
            || n > Self::PER_BLOCK
            || (hash && check(&block[..BLOCK - 8]) != block[BLOCK - 8..])
        {
            return Err(damaged(&self.path, format!("block {b} is damaged")));
        }
        Ok(n)
    }

    /// Every record, in key order (each block checked as it is read).
    pub fn records(&self) -> Result<Records<'_, V>, StoreError> {
        let file = File::open(&self.path).map_err(io)?;
        Ok(Records {
            run: self,
            input: BufReader::with_capacity(1 << 20, file),
            block: vec![0u8; BLOCK],
            b: 0,
            at: 0,
            n: 0,
        })
    }

    /// Deletes the run's file (it is no longer named by a checkpoint).
    pub fn remove(self) {
        let Run { path, file, .. } = self;
        drop(file);
        // A file left behind is removed at the next open.
        let _ = std::fs::remove_file(path);
    }

    /// Bytes it keeps in memory.
    pub fn memory(&self) -> usize {
        self.index.len() * 16 + Filter::byte_len(self.filter.blocks()) + self.checked.len() * 8
    }
}

/// A key (the first 16 bytes of `bytes`) as a big-endian number: its order is the bytes'.
fn number(bytes: &[u8]) -> u128 {
    u128::from_be_bytes(bytes[..16].try_into().expect("a 16-byte key"))
}

/// The value of a record (key ‖ value).
fn value<const V: usize>(record: &[u8]) -> [u8; V] {
    record[16..16 + V]
        .try_into()
        .expect("a record holds its value")
}

/// A run's records in key order.
pub(crate) struct Records<'a, const V: usize> {
    run: &'a Run<V>,
    input: BufReader<File>,
    block: Vec<u8>,
    /// The block read last.
    b: usize,
    /// The next record in it, and how many it holds.
    at: usize,
    n: usize,
}

impl<const V: usize> Iterator for Records<'_, V> {
    type Item = Result<(Key, [u8; V]), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == self.n {
            if self.b == self.run.index.len() {
                return None;
            }
            if let Err(e) = self.input.read_exact(&mut self.block) {
                self.b = self.run.index.len();
                return Some(Err(io(e)));
            }
            match self.run.checked(&self.block, self.b, true) {
                Ok(n) => self.n = n,
                Err(e) => {
                    self.b = self.run.index.len();
                    return Some(Err(e));
                }
            }
            self.b += 1;
            self.at = 0;
        }
        let record = Run::<V>::RECORD;
        let r = &self.block[self.at * record..(self.at + 1) * record];
        self.at += 1;
        Some(Ok((r[..16].try_into().expect("16 bytes"), value(r))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records<const V: usize>(n: u64) -> Vec<(Key, [u8; V])> {
        let mut v: Vec<(Key, [u8; V])> = (0..n)
            .map(|i| {
                let h = blake3::hash(&i.to_le_bytes());
                let mut value = [0u8; V];
                blake3::Hasher::new()
                    .update(h.as_bytes())
                    .finalize_xof()
                    .fill(&mut value);
                (h.as_bytes()[..16].try_into().unwrap(), value)
            })
            .collect();
        v.sort_unstable();
        v
    }

    type Orders = Run<32>;

    #[test]
    fn a_run_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0u64, 1, 85, 86, 1000] {
            let want = records::<32>(n);
            let run =
                Orders::write(dir.path(), n, want.len(), want.iter().cloned().map(Ok)).unwrap();
            assert_eq!(run.len, n);
            for (k, id) in &want {
                assert_eq!(run.get(k).unwrap(), Some(*id));
            }
            assert_eq!(run.get(&[0xff; 16]).unwrap(), None);
            assert_eq!(run.get(&[0; 16]).unwrap(), None);
            let back: Vec<_> = run.records().unwrap().map(Result::unwrap).collect();
            assert_eq!(back, want);
            let again = Orders::open(dir.path(), n).unwrap();
            assert_eq!(again.len, n);
            assert_eq!(again.index, run.index);
        }
        // No temporary file is left.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| seq_of(n).is_some()), "{names:?}");
    }

    #[test]
    fn a_damaged_or_cut_run_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let want = records::<32>(500);
        Orders::write(dir.path(), 7, want.len(), want.iter().cloned().map(Ok)).unwrap();
        let path = dir.path().join(file_name(7));
        let bytes = std::fs::read(&path).unwrap();
        let is_damage = |e: StoreError| match e {
            StoreError::Record { detail, .. } => {
                assert!(detail.contains(&file_name(7)), "{detail}");
                true
            }
            _ => false,
        };
        // Cut short anywhere: refused at open.
        for cut in [0, 1, 100, BLOCK, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(
                is_damage(Orders::open(dir.path(), 7).err().unwrap()),
                "cut at {cut}"
            );
        }
        // A flipped bit in the index or filter: refused at open.
        let mut b = bytes.clone();
        b[bytes.len() - TRAILER - 3] ^= 1;
        std::fs::write(&path, &b).unwrap();
        assert!(is_damage(Orders::open(dir.path(), 7).err().unwrap()));
        // A flipped bit in a block: found when the block is read.
        let mut b = bytes.clone();
        b[BLOCK + 5] ^= 1;
        std::fs::write(&path, &b).unwrap();
        let run = Orders::open(dir.path(), 7).unwrap();
        let in_block_1 = want[Orders::PER_BLOCK + 1].0;
        assert!(is_damage(run.get(&in_block_1).err().unwrap()));
        assert!(is_damage(run.get(&in_block_1).err().unwrap()), "every time");
        assert!(run.get(&want[0].0).unwrap().is_some());
        assert!(run.records().unwrap().any(|r| r.is_err()));
        // A block is hashed the first time a lookup reads it, not again: damage after that
        // is found by reading the run whole, and by the next open's lookups.
        std::fs::write(&path, &bytes).unwrap();
        let run = Orders::open(dir.path(), 7).unwrap();
        assert!(run.get(&in_block_1).unwrap().is_some());
        std::fs::write(&path, &b).unwrap();
        assert!(
            run.get(&in_block_1).is_ok(),
            "checked once, not hashed again"
        );
        assert!(run.records().unwrap().any(|r| r.is_err()));
        let reopened = Orders::open(dir.path(), 7).unwrap();
        assert!(is_damage(reopened.get(&in_block_1).err().unwrap()));
    }

    /// Records sorted whole, many sharing a key: the position of any record or prefix is
    /// the number of records below it.
    #[test]
    fn positions_count_the_records_below() {
        let dir = tempfile::tempdir().unwrap();
        let mut recs: Vec<(Key, [u8; 32])> = records::<32>(2000)
            .into_iter()
            .map(|(k, v)| {
                // Few distinct keys: a key's records span blocks.
                let mut key = [0u8; 16];
                key[..2].copy_from_slice(&k[..2]);
                key[15] = k[15] % 3;
                (key, v)
            })
            .collect();
        recs.sort_unstable();
        let run = Orders::write(dir.path(), 1, 0, recs.iter().cloned().map(Ok)).unwrap();
        let whole = |r: &(Key, [u8; 32])| [&r.0[..], &r.1[..]].concat();
        let all: Vec<Vec<u8>> = recs.iter().map(whole).collect();
        for t in all
            .iter()
            .step_by(7)
            .chain([vec![0u8; 48], vec![0xff; 48]].iter())
        {
            for len in [1, 2, 16, 20, 48] {
                let want = all.partition_point(|r| r[..] < t[..len]) as u64;
                assert_eq!(run.position(&t[..len]).unwrap(), want, "length {len}");
            }
        }
    }

    #[test]
    fn run_names() {
        assert_eq!(seq_of(&file_name(0x1f)), Some(0x1f));
        assert_eq!(seq_of("000000000000001f.run.tmp"), None);
        assert_eq!(seq_of("1f.run"), None);
        assert_eq!(seq_of("journal"), None);
    }
}
