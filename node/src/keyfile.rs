//! A member's key file, both ways (issue 16, "leaving with everything"):
//!
//! - `passalong member export-key` signs in to her community node as she does on its
//!   dashboard (`POST /v1/signin`), asks it for her key file (`POST /v1/account/export-key`,
//!   her password again) and writes it (0600, never over another file);
//! - `passalong init --import-key FILE` opens such a file and starts a data dir with her key
//!   as the node's: her contacts, `membership.json` (her community and its node's relays, which
//!   the node then prefers) and `imported.json`, the markets her history is in, which `run`
//!   follows on its first start and then renames to `imported.json.done` so that it is done
//!   once. Anti-entropy then brings her history; later earnings are the same key's.
//!
//! ```json
//! imported.json: {"version":1,"markets":[HEX32,…]}
//! ```

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use passalong_accounts::export;
use passalong_accounts::{KeyFile, VaultError};
use passalong_api::account::ExportKey;
use passalong_api::auth::{SignInRequest, SignedIn};
use passalong_protocol::PublicKey;
use passalong_store::Store;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::commands::Out;
use crate::datadir::DataDir;
use crate::network::membership;
use crate::remote;

/// The markets to follow on the first start, in the data dir.
pub const FOLLOW_FILE: &str = "imported.json";
/// What it is renamed to once followed.
pub const FOLLOWED_FILE: &str = "imported.json.done";
/// No key file is longer (a key, and at most 20,000 markets and contacts each).
const MAX_KEY_FILE_BYTES: u64 = 8 << 20;

#[derive(Serialize, Deserialize)]
struct FollowFile {
    version: u32,
    markets: Vec<String>,
}

/// What `init --import-key` did.
#[derive(Serialize)]
pub struct Imported {
    /// The data dir.
    pub data_dir: String,
    /// The key, hex: the node's identity from now on.
    pub public_key: String,
    /// Whether anything was created (false: the dir had this key already).
    pub created: bool,
    /// Markets `run` follows on its first start.
    pub markets: usize,
    /// Contacts written.
    pub contacts: usize,
    /// Her community, hex.
    pub community: Option<String>,
    /// The community node's relays, in `membership.json`.
    pub relays: usize,
}

/// `passalong init --import-key FILE`: the data dir starts with the key the file holds.
pub fn import(dir: &DataDir, file: &Path, password_file: Option<&Path>) -> Result<Imported> {
    let key = read_key_file(file)?;
    let public = key
        .public_key()
        .map_err(|e| anyhow!("{} is damaged: {e}", file.display()))?;
    // Before the password: a dir with another key is refused without costing an argon2 run.
    if dir.key_file().exists() {
        let have = dir.keypair()?.public();
        if have != public {
            bail!(
                "the data dir {} has another identity already ({have}), not the key file's {public}: import the key into a new data dir (--data-dir DIR)",
                dir.root().display()
            );
        }
    }
    let password = crate::password::read(
        &format!("Password of the key file {}: ", file.display()),
        password_file,
    )?;
    eprintln!(
        "opening the key file ({} MiB of argon2id, a few seconds)…",
        key.kdf.m_kib / 1024
    );
    let (keypair, carried) = export::open(&key, password.as_bytes()).map_err(|e| match e {
        VaultError::WrongPassword => anyhow!(
            "wrong password for the key file {}: give the password it was exported under",
            file.display()
        ),
        e => anyhow!("{}: {e}", file.display()),
    })?;
    let seed = zeroize::Zeroizing::new(keypair.seed());
    let created = dir.init_with(Some(&seed))?;
    let contacts = passalong_api::contacts::Contacts::new(dir.root().join("contacts"));
    let mut written = 0;
    for (k, name) in &carried.contacts {
        match contacts.set(&public, *k, name) {
            Ok(()) => written += 1,
            Err(e) => eprintln!("warning: contact {k} not kept: {e}"),
        }
    }
    if let Some(c) = &carried.community {
        membership::write(dir.root(), c, &carried.relays)?;
    }
    if !carried.markets.is_empty() {
        write_follow_file(dir.root(), &carried.markets)?;
    }
    Ok(Imported {
        data_dir: dir.root().display().to_string(),
        public_key: public.to_hex(),
        created,
        markets: carried.markets.len(),
        contacts: written,
        community: carried.community.map(|c| c.to_hex()),
        relays: carried.relays.len(),
    })
}

fn read_key_file(file: &Path) -> Result<KeyFile> {
    let len = std::fs::metadata(file)
        .with_context(|| format!("cannot read the key file {}", file.display()))?
        .len();
    if len > MAX_KEY_FILE_BYTES {
        bail!(
            "{} is {len} bytes: not a key file (at most {MAX_KEY_FILE_BYTES})",
            file.display()
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the key file {}", file.display()))?;
    KeyFile::from_json(&text).map_err(|e| {
        anyhow!(
            "{} is not a passalong key file (from `passalong member export-key`): {e}",
            file.display()
        )
    })
}

fn write_follow_file(root: &Path, markets: &[PublicKey]) -> Result<()> {
    let path = root.join(FOLLOW_FILE);
    let text = serde_json::to_string_pretty(&FollowFile {
        version: 1,
        markets: markets.iter().map(PublicKey::to_hex).collect(),
    })?;
    let tmp = root.join(format!("{FOLLOW_FILE}.tmp"));
    (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })()
    .with_context(|| format!("cannot write {}", path.display()))
}

/// On `run`'s start: follows the markets of `imported.json`, if there is one, then renames it
/// to `imported.json.done` (before the network starts, which then follows what the store does).
/// A damaged file is logged and left for the operator.
pub fn follow_imported(root: &Path, store: &Store) -> Result<()> {
    let path = root.join(FOLLOW_FILE);
    let text = match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        r => r.with_context(|| format!("cannot read {}", path.display()))?,
    };
    let file: FollowFile = match serde_json::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "the markets to follow are not readable: left as they are");
            return Ok(());
        }
    };
    let mut followed = 0usize;
    for m in &file.markets {
        match PublicKey::from_hex(m) {
            Ok(k) => {
                store.follow(&k)?;
                followed += 1;
            }
            Err(_) => warn!(market = %m, "not a market key: skipped"),
        }
    }
    std::fs::rename(&path, root.join(FOLLOWED_FILE))
        .with_context(|| format!("cannot rename {}", path.display()))?;
    info!(
        markets = followed,
        "following the markets of the imported key"
    );
    Ok(())
}

/// `passalong member export-key`.
pub fn export_key(
    dir: &DataDir,
    out: Out,
    login: &str,
    to: &Path,
    node: Option<&str>,
    password_file: Option<&Path>,
    export_password_file: Option<&Path>,
) -> Result<()> {
    if to.exists() {
        bail!(
            "{} exists: choose another --out (a key file is never written over)",
            to.display()
        );
    }
    let base = match node {
        Some(url) => remote::remote_base(url)?,
        None => format!("http://{}", dir.api_addr()?),
    };
    // Before the password: a bad SSL_CERT_FILE is said before anything is typed.
    let agent = remote::agent(&base, Duration::from_secs(300))?;
    let password =
        crate::password::read(&format!("Password of {login} at {base}: "), password_file)?;
    let export_password = export_password_file
        .map(|f| crate::password::read("", Some(f)))
        .transpose()?;
    let signed: SignedIn = remote::call(
        agent
            .post(&format!("{base}/v1/signin"))
            .send_json(&SignInRequest {
                login: login.to_string(),
                password: password.to_string(),
            }),
        &base,
    )
    .context("signing in")?;
    let bearer = format!("Bearer {}", signed.session);
    eprintln!("exporting the key (the node seals it with argon2id, a few seconds)…");
    let file: Result<KeyFile> = remote::call(
        agent
            .post(&format!("{base}/v1/account/export-key"))
            .set("Authorization", &bearer)
            .send_json(&ExportKey {
                password: password.to_string(),
                export_password: export_password.as_ref().map(|p| p.to_string()),
            }),
        &base,
    )
    .context("exporting the key");
    // Sign out whatever came of it: the session holds her key on the node.
    if let Err(e) = agent
        .post(&format!("{base}/v1/signout"))
        .set("Authorization", &bearer)
        .call()
    {
        eprintln!("warning: signing out failed ({e}); the session ends on its own");
    }
    let file = file?;
    write_new(to, &file.to_json())?;
    /// What `member export-key` did.
    #[derive(Serialize)]
    struct Exported {
        out: PathBuf,
        public_key: String,
        login: String,
    }
    out.print(
        &Exported {
            out: to.to_path_buf(),
            public_key: file.public_key.clone(),
            login: login.to_string(),
        },
        |v| {
            format!(
                "wrote {} (key {}); start your own node with it: passalong init --import-key {}",
                v.out.display(),
                v.public_key,
                v.out.display()
            )
        },
    );
    Ok(())
}

/// Writes a new file only its owner can read (never over another).
fn write_new(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markets_to_follow_are_followed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        follow_imported(dir.path(), &store).unwrap();
        assert!(store.followed().unwrap().is_empty(), "no file, nothing");
        let m = passalong_protocol::Keypair::from_seed([3; 32]).public();
        write_follow_file(dir.path(), &[m]).unwrap();
        follow_imported(dir.path(), &store).unwrap();
        assert_eq!(store.followed().unwrap(), vec![m]);
        assert!(!dir.path().join(FOLLOW_FILE).exists());
        assert!(dir.path().join(FOLLOWED_FILE).exists());
    }
}
