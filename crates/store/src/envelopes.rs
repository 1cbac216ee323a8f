//! The envelopes of valid attestations, in an append-only log beside the tree (from format
//! 14), so that the tree holds only a 16-byte reference per attestation.
//!
//! Envelopes were ~70 % of the tree's bytes (2.5 of 3.5 GB at 10M attestations), and sled
//! keeps ~3.3 bytes on disk and a page-table share in memory for each byte it holds
//! (docs/benchmarks.md). A valid attestation never changes, so its envelope is written once
//! here and never moved. Pending and held ones stay in the tree: most never become valid.
//!
//! The log is files `<seq as 8 hex digits>.log` in `<store>/envelopes/`, each up to
//! [`FILE_MAX`] bytes, then the next. A record: the envelope's length (u32 LE), the first 8
//! bytes of blake3 of the envelope, the envelope; a [`Ref`] names the file, the record's offset
//! and the envelope's length, and every read checks the record.
//!
//! Durability follows the journal's (see `commit`). An entry's envelope is appended when its
//! shipment's keys are written to the tree (`redo::write`), not synced: the journal holds the
//! envelope until the next checkpoint, which syncs the log before the tree's batch names its
//! end ([`CHECKPOINT`]). Each shipment also writes the log's end ([`END`]) just before its
//! journal number. Opening checks the records between the two: if they are whole, the log is
//! cut back to the tree's end (what later shipments appended, they append again when the
//! journal writes them again, in key order rather than the call's, so a place a journal record
//! names can since hold another envelope: the valid set's place is the one to read, see
//! `ValidSet::place`); if not (a power loss lost unsynced bytes that the tree already
//! points to), the log is cut back to the checkpoint and every shipment since is written again
//! from the journal. The check hashes each record, so it also says where each envelope since the
//! checkpoint is, by id: the valid entries of those shipments are kept in memory until the next
//! checkpoint (see `valid`), and opening finds their references there.
//!
//! A removed entry leaves its record behind: the log is not compacted yet (valid attestations
//! are rarely removed: loose ones past their budget, see `loose`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use passalong_protocol::Id;

use crate::keyspace::*;
use crate::StoreError;

/// The log's directory in the store's.
pub(crate) const DIR: &str = "envelopes";

/// A log file is not appended to past this size.
pub(crate) const FILE_MAX: u64 = 1 << 30;

/// Bytes before each envelope: its length and check.
const HEADER: usize = 12;

/// The tree's key of the log's end at the last checkpoint (synced).
pub(crate) fn checkpoint_key() -> Vec<u8> {
    key(META, &[b"envelopes"])
}

/// The tree's key of the log's end after the last shipment it has.
pub(crate) fn end_key() -> Vec<u8> {
    key(META, &[b"envelopes-end"])
}

/// Where an envelope is: stored in its entry's envelope field, told apart from an envelope by
/// its length (no envelope is shorter than its 64-byte signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ref {
    pub file: u32,
    pub at: u64,
    pub len: u32,
}

/// A reference's length in an entry.
pub(crate) const REF_LEN: usize = 16;

impl Ref {
    /// The reference an entry's envelope field holds, if it holds one.
    pub fn of(field: &[u8]) -> Option<Ref> {
        (field.len() == REF_LEN).then(|| Ref {
            file: u32::from_be_bytes(field[..4].try_into().expect("4 bytes")),
            at: u64::from_be_bytes(field[4..12].try_into().expect("8 bytes")),
            len: u32::from_be_bytes(field[12..].try_into().expect("4 bytes")),
        })
    }

    pub fn encode(&self) -> [u8; REF_LEN] {
        let mut out = [0u8; REF_LEN];
        out[..4].copy_from_slice(&self.file.to_be_bytes());
        out[4..12].copy_from_slice(&self.at.to_be_bytes());
        out[12..].copy_from_slice(&self.len.to_be_bytes());
        out
    }
}

/// A place in the log: a file and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub file: u32,
    pub at: u64,
}

impl Pos {
    pub fn encode(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..4].copy_from_slice(&self.file.to_be_bytes());
        out[4..].copy_from_slice(&self.at.to_be_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<Pos> {
        (b.len() == 12).then(|| Pos {
            file: u32::from_be_bytes(b[..4].try_into().expect("4 bytes")),
            at: u64::from_be_bytes(b[4..].try_into().expect("8 bytes")),
        })
    }
}

fn file_name(file: u32) -> String {
    format!("{file:08x}.log")
}

fn file_of(name: &str) -> Option<u32> {
    let hex = name.strip_suffix(".log")?;
    (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok())?
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(sled::Error::Io(e))
}

fn damaged(detail: impl Into<String>) -> StoreError {
    StoreError::Record {
        prefix: char::from(ENTRY),
        detail: detail.into(),
    }
}

fn check(envelope: &[u8]) -> [u8; 8] {
    blake3::hash(envelope).as_bytes()[..8]
        .try_into()
        .expect("8 bytes")
}

/// Where the log's records since the last checkpoint are, by id (see [`Envelopes::open`]).
pub(crate) type Logged = std::collections::HashMap<Id, Ref>;

/// The open log (see the module docs).
pub(crate) struct Envelopes {
    dir: PathBuf,
    files: RwLock<BTreeMap<u32, Arc<File>>>,
    tail: Mutex<Tail>,
}

/// Where the next record goes, and the files written since the last sync.
struct Tail {
    end: Pos,
    unsynced: Vec<u32>,
}

impl Envelopes {
    /// Opens the log of the store at `store` whose tree is `tree` and checks it against the
    /// tree (see the module docs). With it, where the records since the last checkpoint are,
    /// by id (see `valid::replay`), or `None` if every shipment since the checkpoint must be
    /// written again (the log lost records the tree points to).
    pub fn open(
        store: &Path,
        tree: &sled::Tree,
    ) -> Result<(Envelopes, Option<Logged>), StoreError> {
        let dir = store.join(DIR);
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(io)?;
            File::open(store).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let pos = |k: Vec<u8>| -> Result<Option<Pos>, StoreError> {
            match tree.get(&k)? {
                None => Ok(None),
                Some(v) => Pos::decode(&v)
                    .map(Some)
                    .ok_or_else(|| damaged(format!("the log's end is {} bytes long", v.len()))),
            }
        };
        let checkpoint = pos(checkpoint_key())?.unwrap_or_default();
        let end = pos(end_key())?.unwrap_or(checkpoint).max(checkpoint);
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let Some(n) = file_of(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(entry.path())
                .map_err(io)?;
            files.insert(n, Arc::new(f));
        }
        let log = Envelopes {
            dir,
            files: RwLock::new(files),
            tail: Mutex::new(Tail {
                end: checkpoint,
                unsynced: Vec::new(),
            }),
        };
        for n in 0..=checkpoint.file {
            if !log.files().contains_key(&n) && (n < checkpoint.file || checkpoint.at > 0) {
                return Err(damaged(format!(
                    "the log file {} is missing",
                    log.dir.join(file_name(n)).display()
                )));
            }
        }
        let logged = log.records_between(checkpoint, end)?;
        let keep = if logged.is_some() { end } else { checkpoint };
        log.cut_back(keep)?;
        Ok((log, logged))
    }

    fn files(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, Arc<File>>> {
        self.files.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the records from `from` to `to` are, by id, if they are all there and whole.
    fn records_between(&self, from: Pos, to: Pos) -> Result<Option<Logged>, StoreError> {
        let mut logged = Logged::default();
        let mut at = from;
        let mut header = [0u8; HEADER];
        let mut body = Vec::new();
        while at < to {
            let Some(f) = self.files().get(&at.file).cloned() else {
                return Ok(None);
            };
            let len = f.metadata().map_err(io)?.len();
            if at.at >= len && at.file < to.file {
                at = Pos {
                    file: at.file + 1,
                    at: 0,
                };
                continue;
            }
            if f.read_exact_at(&mut header, at.at).is_err() {
                return Ok(None);
            }
            let n = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            body.resize(n, 0);
            if n < 64 || f.read_exact_at(&mut body, at.at + HEADER as u64).is_err() {
                return Ok(None);
            }
            let id = Id::of_envelope(&body);
            if id.0[..8] != header[4..] {
                return Ok(None);
            }
            logged.insert(
                id,
                Ref {
                    file: at.file,
                    at: at.at,
                    len: n as u32,
                },
            );
            at.at += (HEADER + n) as u64;
        }
        Ok((at == to).then_some(logged))
    }

    /// Cuts the log back to `end`: the files after its file are deleted, its file cut there.
    fn cut_back(&self, end: Pos) -> Result<(), StoreError> {
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        let later: Vec<u32> = files.range(end.file + 1..).map(|(n, _)| *n).collect();
        for n in later {
            files.remove(&n);
            std::fs::remove_file(self.dir.join(file_name(n))).map_err(io)?;
        }
        let f = match files.get(&end.file) {
            Some(f) => f.clone(),
            None => {
                let f = Arc::new(self.create(end.file)?);
                files.insert(end.file, f.clone());
                f
            }
        };
        if f.metadata().map_err(io)?.len() != end.at {
            f.set_len(end.at).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        drop(files);
        self.lock_tail().end = end;
        Ok(())
    }

    /// A new log file, its name synced.
    fn create(&self, n: u32) -> Result<File, StoreError> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(file_name(n)))
            .map_err(io)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(f)
    }

    /// Appends `envelopes`, each with its id (blake3 of the envelope: its first 8 bytes are
    /// the record's check, not hashed again), not synced, and says where each went.
    pub fn append(&self, envelopes: &[(&Id, &[u8])]) -> Result<Vec<Ref>, StoreError> {
        let mut tail = self.lock_tail();
        if tail.end.at >= FILE_MAX {
            let next = tail.end.file + 1;
            let f = Arc::new(self.create(next)?);
            self.files
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(next, f);
            tail.end = Pos { file: next, at: 0 };
        }
        let file = tail.end.file;
        let f = self
            .files()
            .get(&file)
            .cloned()
            .ok_or_else(|| damaged(format!("the log file {} is not open", file_name(file))))?;
        let size: usize = envelopes.iter().map(|(_, e)| HEADER + e.len()).sum();
        let mut buf = Vec::with_capacity(size);
        let mut refs = Vec::with_capacity(envelopes.len());
        for (id, e) in envelopes {
            refs.push(Ref {
                file,
                at: tail.end.at + buf.len() as u64,
                len: e.len() as u32,
            });
            buf.extend_from_slice(&(e.len() as u32).to_le_bytes());
            buf.extend_from_slice(&id.0[..8]);
            buf.extend_from_slice(e);
        }
        f.write_all_at(&buf, tail.end.at).map_err(io)?;
        tail.end.at += buf.len() as u64;
        if !tail.unsynced.contains(&file) {
            tail.unsynced.push(file);
        }
        Ok(refs)
    }

    /// Where the next record goes.
    pub fn end(&self) -> Pos {
        self.lock_tail().end
    }

    /// Syncs what was appended since the last sync, and says where the log ends (a
    /// checkpoint's batch names it, see the module docs).
    pub fn sync(&self) -> Result<Pos, StoreError> {
        let mut tail = self.lock_tail();
        for n in std::mem::take(&mut tail.unsynced) {
            if let Some(f) = self.files().get(&n) {
                f.sync_data().map_err(io)?;
            }
        }
        Ok(tail.end)
    }

    /// The envelope `r` names, checked.
    pub fn read(&self, r: Ref) -> Result<Vec<u8>, StoreError> {
        let f = self.files().get(&r.file).cloned().ok_or_else(|| {
            damaged(format!(
                "an entry names the log file {}, which is missing",
                self.dir.join(file_name(r.file)).display()
            ))
        })?;
        let mut buf = vec![0u8; HEADER + r.len as usize];
        f.read_exact_at(&mut buf, r.at).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.damaged_at(r, "past the file's end")
            } else {
                io(e)
            }
        })?;
        let env = buf.split_off(HEADER);
        if buf[..4] != r.len.to_le_bytes() || buf[4..] != check(&env) {
            return Err(self.damaged_at(r, "damaged"));
        }
        Ok(env)
    }

    fn damaged_at(&self, r: Ref, what: &str) -> StoreError {
        damaged(format!(
            "the envelope at {} in {} is {what}",
            r.at,
            self.dir.join(file_name(r.file)).display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(i: u8) -> Vec<u8> {
        vec![i; 100 + i as usize]
    }

    /// Appends envelopes with their ids, as the store does.
    fn append(log: &Envelopes, envelopes: &[&[u8]]) -> Vec<Ref> {
        let ids: Vec<Id> = envelopes.iter().map(|e| Id::of_envelope(e)).collect();
        let items: Vec<(&Id, &[u8])> = ids.iter().zip(envelopes.iter().copied()).collect();
        log.append(&items).unwrap()
    }

    /// The log, and whether every shipment since the checkpoint must be written again.
    fn open(dir: &Path, tree: &sled::Tree) -> (Envelopes, bool) {
        let (log, logged) = Envelopes::open(dir, tree).unwrap();
        (log, logged.is_none())
    }

    #[test]
    fn references_round_trip_and_are_told_apart_from_envelopes() {
        let r = Ref {
            file: 3,
            at: 1 << 33,
            len: 230,
        };
        assert_eq!(Ref::of(&r.encode()), Some(r));
        assert_eq!(Ref::of(&env(1)), None);
        assert_eq!(Ref::of(&[0; 64]), None);
    }

    #[test]
    fn appended_envelopes_read_back_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let (log, replay) = open(dir.path(), &db);
        assert!(!replay);
        let (a, b) = (env(1), env(2));
        let refs = append(&log, &[&a, &b]);
        let more = append(&log, &[&env(3)]);
        assert_eq!(log.read(refs[0]).unwrap(), a);
        assert_eq!(log.read(refs[1]).unwrap(), b);
        assert_eq!(log.read(more[0]).unwrap(), env(3));
        let f = OpenOptions::new()
            .write(true)
            .open(dir.path().join(DIR).join(file_name(0)))
            .unwrap();
        f.write_all_at(&[9], refs[1].at + HEADER as u64 + 5)
            .unwrap();
        assert!(matches!(log.read(refs[1]), Err(StoreError::Record { .. })));
        let past = Ref {
            at: 1 << 20,
            ..refs[0]
        };
        assert!(matches!(log.read(past), Err(StoreError::Record { .. })));
    }

    #[test]
    fn opening_keeps_what_the_tree_points_to_and_cuts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let (log, _) = open(dir.path(), &db);
        let kept = append(&log, &[&env(1)]);
        let at_checkpoint = log.sync().unwrap();
        db.insert(checkpoint_key(), &at_checkpoint.encode())
            .unwrap();
        let shipped = append(&log, &[&env(2)]);
        db.insert(end_key(), &log.end().encode()).unwrap();
        let shipped_end = log.end();
        // A shipment the tree does not have yet: cut off, its journal writes it again.
        append(&log, &[&env(3)]);
        drop(log);
        let (log, replay) = open(dir.path(), &db);
        assert!(!replay);
        assert_eq!(log.end(), shipped_end);
        assert_eq!(log.read(kept[0]).unwrap(), env(1));
        assert_eq!(log.read(shipped[0]).unwrap(), env(2));
        // The tree points past what the file kept (a power loss): back to the checkpoint,
        // and every shipment since is written again.
        let f = OpenOptions::new()
            .write(true)
            .open(dir.path().join(DIR).join(file_name(0)))
            .unwrap();
        f.set_len(shipped_end.at - 3).unwrap();
        drop(log);
        let (log, replay) = open(dir.path(), &db);
        assert!(replay);
        assert_eq!(log.end(), at_checkpoint);
        assert_eq!(log.read(kept[0]).unwrap(), env(1));
    }

    #[test]
    fn a_full_file_is_followed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let (log, _) = open(dir.path(), &db);
        log.lock_tail().end.at = FILE_MAX;
        let r = append(&log, &[&env(4)]);
        assert_eq!(r[0].file, 1);
        assert_eq!(r[0].at, 0);
        assert_eq!(log.read(r[0]).unwrap(), env(4));
        assert_eq!(log.end().file, 1);
    }
}
