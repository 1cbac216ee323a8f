//! The store's errors. Opening failures name the path and what to do.

use std::path::PathBuf;

use thiserror::Error;

/// What went wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process holds the store.
    #[error("the store at {path} is locked by another process: is a passalong daemon already running with this data dir? Stop it, or use another --data-dir")]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// Reopening the database at a checkpoint failed; nothing acknowledged is lost.
    #[error("the store at {path} could not be reopened after a checkpoint: restart the node")]
    Closed {
        /// The store's directory.
        path: PathBuf,
    },
    /// sled found the files damaged.
    #[error("the store at {path} is corrupt ({detail}): move it aside and restart to resync from peers, or restore it from a backup or an export")]
    Corrupt {
        /// The store's directory.
        path: PathBuf,
        /// What sled reported.
        detail: String,
    },
    /// The files were written by another version of the store format.
    #[error("the store at {path} has format version {found}, this passalong reads version {expected}: use a matching passalong, or export with the old one and import into a new data dir")]
    WrongVersion {
        /// The store's directory.
        path: PathBuf,
        /// Version found.
        found: String,
        /// Version this build reads.
        expected: u32,
    },
    /// Any other failure to open.
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// The store's directory.
        path: PathBuf,
        /// The underlying error.
        source: sled::Error,
    },
    /// A read or write failed after opening.
    #[error("store i/o: {0}")]
    Io(#[from] sled::Error),
    /// A stored record does not decode (the files were changed behind our back).
    #[error("stored record under prefix {prefix:?} does not decode: {detail}")]
    Record {
        /// The record's prefix byte.
        prefix: char,
        /// What failed.
        detail: String,
    },
}
