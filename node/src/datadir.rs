//! The data directory: the identity key and the API token (0600), config.toml, the store,
//! and the address of the running daemon.
//!
//! Nothing in it is used before it is checked, as ssh checks a key: the directory and
//! config.toml must be owned by the user running passalong and writable by no one else (or
//! another local user could plant a token, a key or an `api.addr` that sends our token to
//! their listener), and the key and token must be owned by us and readable by no one else
//! (mode 0600). What fails the check is refused, not repaired: the message names the file and
//! the `chmod` to run, since a file someone else could read may already have leaked, and a
//! silent repair would hide that.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use passalong_protocol::Keypair;
use rand_core::{OsRng, RngCore};

use crate::config;

/// A node's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// `--data-dir`, `PASSALONG_DATA_DIR`, or the platform's data dir (`~/.local/share/passalong`).
    pub fn resolve(given: Option<PathBuf>) -> Result<DataDir> {
        let root = match given {
            Some(p) => p,
            None => dirs::data_dir()
                .ok_or_else(|| anyhow!("no platform data directory: pass --data-dir DIR"))?
                .join("passalong"),
        };
        Ok(DataDir { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The identity key (hex seed).
    pub fn key_file(&self) -> PathBuf {
        self.root.join("identity.key")
    }
    /// The API write token.
    pub fn token_file(&self) -> PathBuf {
        self.root.join("api-token")
    }
    /// config.toml.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// The sled store.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }
    /// Where the daemon writes the address it listens on.
    pub fn addr_file(&self) -> PathBuf {
        self.root.join("api.addr")
    }

    /// Creates whatever is missing; returns whether anything was created.
    pub fn init(&self) -> Result<bool> {
        self.init_with(None)
    }

    /// [`DataDir::init`], with `seed` as the identity key when the dir has none yet (an
    /// imported key). A dir whose key is another is refused: its history is that key's.
    pub fn init_with(&self, seed: Option<&[u8; 32]>) -> Result<bool> {
        let mut created = false;
        if !self.root.exists() {
            std::fs::create_dir_all(&self.root)
                .with_context(|| format!("cannot create the data dir {}", self.root.display()))?;
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict {}", self.root.display()))?;
            created = true;
        }
        self.check_dir()?;
        if !self.key_file().exists() {
            let mut fresh = zeroize::Zeroizing::new([0u8; 32]);
            match seed {
                Some(s) => fresh.copy_from_slice(s),
                None => OsRng.fill_bytes(fresh.as_mut()),
            }
            write_secret(
                &self.key_file(),
                &zeroize::Zeroizing::new(format!("{}\n", hex::encode(*fresh))),
            )?;
            created = true;
        } else if let Some(s) = seed {
            let have = self.keypair()?.public();
            let given = Keypair::from_seed(*s).public();
            if have != given {
                bail!(
                    "the data dir {} has another identity already ({have}), not {given}: import the key into a new data dir (--data-dir DIR)",
                    self.root.display()
                );
            }
        }
        if !self.token_file().exists() {
            let mut t = [0u8; 32];
            OsRng.fill_bytes(&mut t);
            write_secret(&self.token_file(), &format!("{}\n", hex::encode(t)))?;
            created = true;
        }
        if !self.config_file().exists() {
            std::fs::write(self.config_file(), config::default_file())
                .with_context(|| format!("cannot write {}", self.config_file().display()))?;
            created = true;
        }
        check_file(&self.config_file(), Private::NotWritable)?;
        Ok(created)
    }

    /// Refuses a data dir that another user owns or can write to.
    pub fn check_dir(&self) -> Result<()> {
        check_file(&self.root, Private::NotWritable)
    }

    /// The node's key pair.
    pub fn keypair(&self) -> Result<Keypair> {
        let path = self.key_file();
        self.check_secret(&path)?;
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read the identity key {} (run `passalong init`)",
                path.display()
            )
        })?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| {
            anyhow!(
                "the identity key {} is damaged: expected 64 hex digits",
                path.display()
            )
        })?;
        Ok(Keypair::from_seed(seed))
    }

    /// The API write token.
    pub fn token(&self) -> Result<String> {
        let path = self.token_file();
        self.check_secret(&path)?;
        let t = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read the API token {} (run `passalong init`)",
                path.display()
            )
        })?;
        Ok(t.trim().to_string())
    }

    /// Refuses a secret (and its directory) that another user owns, can read or can write.
    /// A missing file is left to the caller's own message.
    fn check_secret(&self, path: &Path) -> Result<()> {
        if !self.root.exists() {
            return Ok(());
        }
        self.check_dir()?;
        if path.exists() {
            check_file(path, Private::Secret)?;
        }
        Ok(())
    }

    /// The running daemon's API address.
    pub fn api_addr(&self) -> Result<SocketAddr> {
        let path = self.addr_file();
        let text = std::fs::read_to_string(&path).map_err(|_| {
            anyhow!(
                "no running daemon for {}: start one with `passalong run --data-dir {}`",
                self.root.display(),
                self.root.display()
            )
        })?;
        text.trim()
            .parse()
            .map_err(|_| anyhow!("{} is damaged: restart the daemon", path.display()))
    }

    /// Records the address the daemon listens on (atomically: write, then rename).
    pub fn write_addr(&self, addr: SocketAddr) -> Result<()> {
        let tmp = self.root.join("api.addr.tmp");
        std::fs::write(&tmp, format!("{addr}\n"))
            .and_then(|()| std::fs::rename(&tmp, self.addr_file()))
            .with_context(|| format!("cannot write {}", self.addr_file().display()))
    }
}

/// What [`check_file`] demands beyond being ours.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Private {
    /// No one else may write it (the data dir, config.toml): mode `go-w`.
    NotWritable,
    /// No one else may read or write it (the key, the token): mode 0600 or stricter.
    Secret,
}

/// Refuses `path` if the user running passalong does not own it, or if others may write it
/// (or, for a secret, read it); the message says what to do.
fn check_file(path: &Path, private: Private) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read the permissions of {}", path.display()))?;
    if meta.file_type().is_symlink() {
        // The data dir itself may be a link; what it holds may not (a link could point at
        // another user's file).
        if private == Private::Secret {
            bail!(
                "{} is a symbolic link: passalong reads its key and token only from files of the data dir",
                path.display()
            );
        }
        return check_file(&std::fs::canonicalize(path)?, private);
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "{} is owned by user {}, not by you (user {me}): another user could have planted what it holds; use a data dir of your own (e.g. under $HOME)",
            path.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    let (others, fix) = match private {
        Private::NotWritable => (mode & 0o022, "go-w"),
        Private::Secret => (mode & 0o077, "600"),
    };
    if others != 0 {
        let what = if private == Private::Secret {
            "other users can read or change it"
        } else {
            "other users can change what it holds"
        };
        bail!(
            "{} has mode {mode:o}: {what}; run `chmod {fix} {}`{}",
            path.display(),
            path.display(),
            if private == Private::Secret {
                " (if others could read it, treat it as leaked)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Writes a file only the owner can read.
fn write_secret(path: &Path, contents: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode != 0o600 {
        bail!("{} has mode {mode:o}, expected 600", path.display());
    }
    Ok(())
}
