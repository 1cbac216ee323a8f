//! The store's own lock on its directory, held for the store's whole life.
//!
//! sled locks its files too, but only while a handle is open, and the store drops and reopens
//! its handle at every checkpoint (see [`crate::Store::checkpoint`]) and once more when it
//! closes: a second process started in that gap took the store, and the first then failed
//! every call. This lock is an advisory `flock` on a `LOCK` file beside sled's, taken before
//! sled opens and released when the store is dropped (or the process dies: the kernel drops
//! it with the file descriptor, so a crash never leaves a stale lock).

use std::fs::{File, OpenOptions};
use std::path::Path;

use fs2::FileExt;

use crate::error::StoreError;

/// The lock file's name in the store's directory.
pub const LOCK_FILE: &str = "LOCK";

/// The held lock (released on drop).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir` (created if missing), or says who has it: `Locked` if another
    /// open store holds it, in this process or another.
    pub fn take(dir: &Path) -> Result<DirLock, StoreError> {
        let failed = |e: std::io::Error| StoreError::Open {
            path: dir.to_path_buf(),
            source: sled::Error::Io(e),
        };
        std::fs::create_dir_all(dir).map_err(failed)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(failed)?;
        // flock: each open file description is its own lock, so a second open in this same
        // process conflicts too (fcntl locks would not).
        match file.try_lock_exclusive() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.raw_os_error() == fs2::lock_contended_error().raw_os_error() =>
            {
                Err(StoreError::Locked {
                    path: dir.to_path_buf(),
                })
            }
            Err(e) => Err(failed(e)),
        }
    }
}
