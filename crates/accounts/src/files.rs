//! Private files of a community node: the directories and files under
//! `<data-dir>/community/`, which hold members' encrypted keys.
//!
//! The rule is the data dir's own (`node/src/datadir.rs`, `check_file` with
//! `Private::Secret`, which this crate cannot call: it lives in the binary and speaks
//! `anyhow`): what we read must be ours (the effective user), no one else may read or write it
//! (directories 0700, files 0600), and it must not be a symbolic link (a link could point at
//! another user's file). What breaks the rule is refused with the `chmod` that fixes it.
//!
//! A write is acknowledged only once it survives a crash: the bytes go to `<name>.tmp`
//! (created 0600), are synced, renamed over `<name>`, and the directory is synced so that the
//! rename itself is on disk. A crash leaves either the old file or the new one, and perhaps a
//! `.tmp` that [`remove_leftovers`] deletes (it was never acknowledged).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The suffix of a write in progress.
pub const TMP_SUFFIX: &str = ".tmp";

/// Why a private file or directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The operating system refused.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create", …).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another user owns it: they could have planted what it holds.
    #[error("{} is owned by user {owner}, not by you (user {me}): another user could have planted what it holds; use a data dir of your own", path.display())]
    NotOwned {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user running passalong.
        me: u32,
    },
    /// Others may read or write it.
    #[error("{} has mode {mode:o}: other users can read or change members' keys; run `chmod {fix} {}` (if others could read it, treat the keys as exposed to offline guessing)", path.display(), path.display())]
    Mode {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode to set: 700 or 600.
        fix: &'static str,
    },
    /// A symbolic link where a file or directory of our own was expected.
    #[error("{} is a symbolic link: passalong keeps members' keys only in files of the data dir", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A file where a directory was expected, or the other way round.
    #[error("{} is not a {expected}", path.display())]
    WrongType {
        /// The path.
        path: PathBuf,
        /// "directory" or "regular file".
        expected: &'static str,
    },
    /// Bigger than any file of this kind can be: not read.
    #[error("{} is over {max_bytes} bytes: not a file passalong wrote", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most this kind of file may hold.
        max_bytes: u64,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FilesError + 'a {
    move |source| FilesError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `path` is ours, private and of the expected type (see the module docs).
pub fn check(path: &Path, dir: bool) -> Result<(), FilesError> {
    let meta = std::fs::symlink_metadata(path).map_err(io("read the permissions of", path))?;
    let ty = meta.file_type();
    if ty.is_symlink() {
        return Err(FilesError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if (dir && !ty.is_dir()) || (!dir && !ty.is_file()) {
        return Err(FilesError::WrongType {
            path: path.to_path_buf(),
            expected: if dir { "directory" } else { "regular file" },
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(FilesError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FilesError::Mode {
            path: path.to_path_buf(),
            mode,
            fix: if dir { "700" } else { "600" },
        });
    }
    Ok(())
}

/// The private directory `path`, created (0700) if missing, checked if not.
pub fn private_dir(path: &Path) -> Result<(), FilesError> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {
            // The new entry must survive a crash like the files that go in it.
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("create", path)(e)),
    }
    check(path, true)
}

/// Reads the private file `path` (checked first), refusing anything over `max_bytes`; `None`
/// if there is no such file.
pub fn read(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, FilesError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", path)(e)),
        Ok(_) => check(path, false)?,
    }
    let file = File::open(path).map_err(io("open", path))?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    if bytes.len() as u64 > max_bytes {
        return Err(FilesError::TooLarge {
            path: path.to_path_buf(),
            max_bytes,
        });
    }
    Ok(Some(bytes))
}

/// Replaces (or creates) the private file `path` with `bytes`, durably (see the module docs).
/// With `new_only`, an existing `path` is left alone and the answer is `Ok(false)`.
pub fn write_atomic(path: &Path, bytes: &[u8], new_only: bool) -> Result<bool, FilesError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tmp_of(path);
    // A leftover of a crash: never acknowledged, and it must be created afresh to get 0600.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove", &tmp)(e)),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io("write", &tmp))?;
    drop(f);
    if new_only {
        // A hard link fails if `path` exists, where a rename would replace it.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io("create", path)(e)),
            Ok(()) => {}
        }
    } else {
        std::fs::rename(&tmp, path).map_err(io("replace", path))?;
    }
    sync_dir(dir)?;
    Ok(true)
}

/// Deletes the `.tmp` files a crash left in `dir` (writes never acknowledged); how many.
pub fn remove_leftovers(dir: &Path) -> Result<usize, FilesError> {
    let mut removed = 0;
    for path in list(dir)? {
        let is_tmp = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(TMP_SUFFIX));
        if is_tmp {
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// What `dir` holds, sorted by name.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, FilesError> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        paths.push(entry.map_err(io("list", dir))?.path());
    }
    paths.sort();
    Ok(paths)
}

/// `<path>.tmp`.
fn tmp_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// Syncs a directory, so that the names created, renamed or removed in it are on disk.
fn sync_dir(dir: &Path) -> Result<(), FilesError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_dirs_and_files_are_created_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("community");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        private_dir(&dir).unwrap(); // again: checked, not recreated
        let f = dir.join("a.json");
        assert_eq!(read(&f, 10).unwrap(), None);
        assert!(write_atomic(&f, b"one", false).unwrap());
        assert_eq!(mode(&f), 0o600);
        assert_eq!(read(&f, 10).unwrap().as_deref(), Some(&b"one"[..]));
        assert!(write_atomic(&f, b"two", false).unwrap());
        assert_eq!(read(&f, 10).unwrap().as_deref(), Some(&b"two"[..]));
        assert!(!write_atomic(&f, b"three", true).unwrap(), "new_only");
        assert_eq!(read(&f, 10).unwrap().as_deref(), Some(&b"two"[..]));
        assert!(matches!(read(&f, 2), Err(FilesError::TooLarge { .. })));
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "no tmp file stays behind");
    }

    #[test]
    fn what_others_may_read_or_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("community");
        private_dir(&dir).unwrap();
        let f = dir.join("a.json");
        write_atomic(&f, b"x", false).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read(&f, 10).unwrap_err();
        assert!(matches!(e, FilesError::Mode { mode: 0o640, .. }), "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = private_dir(&dir).unwrap_err();
        assert!(e.to_string().contains("chmod 700"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        let link = dir.join("b.json");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(matches!(read(&link, 10), Err(FilesError::Symlink { .. })));
        assert!(matches!(check(&f, true), Err(FilesError::WrongType { .. })));
    }

    #[test]
    fn leftovers_of_a_crash_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let f = root.path().join("a.json");
        std::fs::write(root.path().join("a.json.tmp"), b"half").unwrap();
        std::fs::write(root.path().join("b.json.tmp"), b"half").unwrap();
        // A write over a leftover still gives a private file.
        std::fs::set_permissions(
            root.path().join("a.json.tmp"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        write_atomic(&f, b"whole", false).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(remove_leftovers(root.path()).unwrap(), 1);
        assert_eq!(remove_leftovers(root.path()).unwrap(), 0);
        assert!(f.exists());
    }
}
