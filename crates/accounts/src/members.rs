//! The hosted members of a community node: one file each,
//! `<data-dir>/community/members/<public-key-hex>.json`, holding the member's login, status
//! and key file ([`KeyFile`], sealed under her password), and an index by login built when
//! the registry opens.
//!
//! ```json
//! {"version":1,"login":"anna","public_key":HEX32,"created_ms":1764892800000,
//!  "membership":HEX32,"status":"active","last_signin_ms":1764896400000,"referrals":3,
//!  "key":{"format":"passalong-key",…}}
//! ```
//!
//! `last_signin_ms` and `referrals` (the referrals her key signed on this node, the only
//! place it signs while she is hosted) are what the connector's page shows of her activity;
//! a file without them (written before they existed) reads as never signed in, none made.
//!
//! - Logins are `[a-z0-9._-]{3,32}`, folded to lower case (`Anna` signs in as `anna`), and
//!   unique for good: a removed or moved member keeps hers, so that no one else can take a
//!   name her neighbours know.
//! - Passwords are 10 to 256 bytes, with no rules on what they contain (NIST SP 800-63B).
//! - Every write is atomic and synced before it is acknowledged ([`crate::files`]); the
//!   directories are 0700 and the files 0600, and opening refuses anything looser.
//! - One damaged member file never costs the others: opening reports it
//!   ([`Members::damaged`]) and goes on. Its login is then unknown, so it is not held back
//!   from a new member; its key is (the file stays where it is until restored from a backup).
//!
//! Every member's record stays in memory (under 1 KiB each, so 10,000 members take about
//! 10 MB): a sign-in reads no file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use passalong_protocol::{Id, Keypair, PublicKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::files::{self, FilesError};
use crate::kdf::KdfParams;
use crate::vault::{self, KeyFile, VaultError};

/// The directory under `<data-dir>/community/`.
pub const DIR: &str = "members";
/// The `version` this build writes and reads.
pub const VERSION: u32 = 1;
/// Logins are at least this long, in bytes.
pub const LOGIN_MIN_BYTES: usize = 3;
/// Logins are at most this long, in bytes.
pub const LOGIN_MAX_BYTES: usize = 32;
/// Passwords are at least this long, in bytes.
pub const PASSWORD_MIN_BYTES: usize = 10;
/// Passwords are at most this long, in bytes (argon2 hashes any length; this bounds the
/// work a request can ask for).
pub const PASSWORD_MAX_BYTES: usize = 256;
/// No member file is longer (one is under 1 KiB).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A login, folded to lower case and checked against the rule (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Login(String);

impl Login {
    /// Folds `login` to lower case and checks it.
    pub fn parse(login: &str) -> Result<Login, MembersError> {
        let bad = |why| {
            Err(MembersError::BadLogin {
                login: login.chars().take(LOGIN_MAX_BYTES + 8).collect(),
                why,
            })
        };
        if !(LOGIN_MIN_BYTES..=LOGIN_MAX_BYTES).contains(&login.len()) {
            return bad("a login is 3 to 32 characters");
        }
        let folded = login.to_ascii_lowercase();
        if !folded
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return bad("a login has only letters a-z, digits and . _ -");
        }
        Ok(Login(folded))
    }

    /// The folded login.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Refuses a password shorter than [`PASSWORD_MIN_BYTES`] or longer than
/// [`PASSWORD_MAX_BYTES`].
pub fn check_password(password: &[u8]) -> Result<(), MembersError> {
    if (PASSWORD_MIN_BYTES..=PASSWORD_MAX_BYTES).contains(&password.len()) {
        Ok(())
    } else {
        Err(MembersError::BadPassword {
            len: password.len(),
        })
    }
}

/// Seals a new member's key under her password at `params`, once the password passes
/// [`check_password`]. Slow (one argon2 run): call it outside any lock.
pub fn seal_new(
    keypair: &Keypair,
    password: &[u8],
    params: KdfParams,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<KeyFile, MembersError> {
    check_password(password)?;
    Ok(vault::seal(keypair, &[], password, params, rng)?)
}

/// Where a hosted member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Signs in and acts.
    Active,
    /// The connector ended her membership. She may still sign in to read her pages and
    /// earnings (and, later, export her key), but signs nothing.
    Removed,
    /// She ended her membership herself; read-only like [`Status::Removed`].
    Left,
    /// She runs her own node now.
    Moved,
}

impl Status {
    /// How the pages and the API name it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Removed => "removed",
            Status::Left => "left",
            Status::Moved => "moved",
        }
    }
}

/// One hosted member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// What she signs in with.
    pub login: Login,
    /// Her key's public half (the file's name).
    pub public_key: PublicKey,
    /// When she joined.
    pub created_ms: u64,
    /// The id of her Membership attestation.
    pub membership: Id,
    /// Where she stands.
    pub status: Status,
    /// When she last signed in, if ever.
    pub last_signin_ms: Option<u64>,
    /// How many referrals her key signed on this node.
    pub referrals: u64,
    /// Her key, sealed under her password.
    pub key: KeyFile,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    login: String,
    public_key: String,
    created_ms: u64,
    membership: String,
    status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_signin_ms: Option<u64>,
    #[serde(default)]
    referrals: u64,
    key: KeyFile,
}

/// Why a member could not be added, found or read.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    /// A directory or file is unusable (permissions, IO).
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The login breaks the rule.
    #[error("login {login:?}: {why}")]
    BadLogin {
        /// The login as given (cut short).
        login: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// Another member has this login.
    #[error("the login {0} is taken")]
    LoginTaken(Login),
    /// The password is too short or too long.
    #[error("a password is {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes; this one is {len}")]
    BadPassword {
        /// Its length, bytes.
        len: usize,
    },
    /// A member with this key exists already (or its file does, damaged).
    #[error("a member with key {0} exists already")]
    KeyTaken(PublicKey),
    /// No member has this key.
    #[error("no member has key {0}")]
    Unknown(PublicKey),
    /// The key file is not the member's key.
    #[error("the key file is for {file}, not for member {member}")]
    WrongKeyFile {
        /// The member.
        member: PublicKey,
        /// Whom the key file is for.
        file: String,
    },
    /// A member file is not one this build wrote; nothing else is affected.
    #[error("{} is damaged: {why}; that member cannot sign in until it is restored from a backup of the data dir (the other members are unaffected)", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Sealing a key failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// The hosted members (see the module docs).
#[derive(Debug)]
pub struct Members {
    dir: PathBuf,
    by_key: BTreeMap<PublicKey, Member>,
    by_login: HashMap<Login, PublicKey>,
    damaged: Vec<MembersError>,
}

impl Members {
    /// Opens `<data-dir>/community/members/`, creating the directories (0700) if missing:
    /// removes what a crash left half-written, loads every member file and indexes the
    /// logins. Refused if a directory or a member file is not private; a damaged file is only
    /// reported ([`Members::damaged`]).
    pub fn open(data_dir: &Path) -> Result<Members, MembersError> {
        let dir = crate::community::dir(data_dir)?.join(DIR);
        files::private_dir(&dir)?;
        files::remove_leftovers(&dir)?;
        let mut members = Members {
            dir: dir.clone(),
            by_key: BTreeMap::new(),
            by_login: HashMap::new(),
            damaged: Vec::new(),
        };
        // Sorted, so that which of two files claiming one login is reported is always the same.
        let paths = files::list(&dir)?;
        for path in paths {
            match read_member(&path) {
                Ok(None) => {}
                Ok(Some(m)) => {
                    if let Some(first) = members.by_login.get(&m.login) {
                        members.damaged.push(MembersError::Damaged {
                            why: format!(
                                "its login {} is also member {first}'s, whose file was read first",
                                m.login
                            ),
                            path,
                        });
                        continue;
                    }
                    members.by_login.insert(m.login.clone(), m.public_key);
                    members.by_key.insert(m.public_key, m);
                }
                Err(e @ MembersError::Damaged { .. }) => members.damaged.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok(members)
    }

    /// The member files that could not be read when the registry opened, each naming its
    /// file (for the log and the connector's page).
    pub fn damaged(&self) -> &[MembersError] {
        &self.damaged
    }

    /// How many members are loaded.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// No member is loaded.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every member, by public key.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.by_key.values()
    }

    /// The member with this key.
    pub fn get(&self, key: &PublicKey) -> Option<&Member> {
        self.by_key.get(key)
    }

    /// The member who signs in as `login` (folded first; a login breaking the rule is no one).
    pub fn by_login(&self, login: &str) -> Option<&Member> {
        let login = Login::parse(login).ok()?;
        self.by_key.get(self.by_login.get(&login)?)
    }

    /// Checks a new member's login before her key is made and sealed (both cost): folded, by
    /// the rule, and not taken.
    pub fn login_free(&self, login: &str) -> Result<Login, MembersError> {
        let login = Login::parse(login)?;
        if self.by_login.contains_key(&login) {
            return Err(MembersError::LoginTaken(login));
        }
        Ok(login)
    }

    /// Adds a member, durably: refused if her login or key is taken, or if her key file is
    /// another key's.
    pub fn add(&mut self, member: Member) -> Result<(), MembersError> {
        if self.by_login.contains_key(&member.login) {
            return Err(MembersError::LoginTaken(member.login));
        }
        if self.by_key.contains_key(&member.public_key) {
            return Err(MembersError::KeyTaken(member.public_key));
        }
        check_key_file(&member.public_key, &member.key)?;
        if !files::write_atomic(&self.path_of(&member.public_key), &to_json(&member), true)? {
            return Err(MembersError::KeyTaken(member.public_key));
        }
        self.by_login
            .insert(member.login.clone(), member.public_key);
        self.by_key.insert(member.public_key, member);
        Ok(())
    }

    /// Records where a member stands now.
    pub fn set_status(&mut self, key: &PublicKey, status: Status) -> Result<(), MembersError> {
        self.update(key, |m| m.status = status)
    }

    /// Records that a member signed in at `at_ms`.
    pub fn set_last_signin(&mut self, key: &PublicKey, at_ms: u64) -> Result<(), MembersError> {
        self.update(key, |m| m.last_signin_ms = Some(at_ms))
    }

    /// Counts one more referral signed by a member's key.
    pub fn count_referral(&mut self, key: &PublicKey) -> Result<(), MembersError> {
        self.update(key, |m| m.referrals = m.referrals.saturating_add(1))
    }

    /// Replaces a member's key file (a new password, or stronger parameters); it must seal
    /// the same key.
    pub fn set_key(&mut self, key: &PublicKey, file: KeyFile) -> Result<(), MembersError> {
        check_key_file(key, &file)?;
        self.update(key, |m| m.key = file)
    }

    /// Changes a member's record on disk first, then in memory.
    fn update(
        &mut self,
        key: &PublicKey,
        change: impl FnOnce(&mut Member),
    ) -> Result<(), MembersError> {
        let mut member = self
            .by_key
            .get(key)
            .cloned()
            .ok_or(MembersError::Unknown(*key))?;
        change(&mut member);
        files::write_atomic(&self.path_of(key), &to_json(&member), false)?;
        self.by_key.insert(*key, member);
        Ok(())
    }

    fn path_of(&self, key: &PublicKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.to_hex()))
    }
}

fn check_key_file(member: &PublicKey, file: &KeyFile) -> Result<(), MembersError> {
    if file.public_key().ok() != Some(*member) {
        return Err(MembersError::WrongKeyFile {
            member: *member,
            file: file.public_key.chars().take(64).collect(),
        });
    }
    Ok(())
}

fn to_json(m: &Member) -> Vec<u8> {
    let disk = OnDisk {
        version: VERSION,
        login: m.login.0.clone(),
        public_key: m.public_key.to_hex(),
        created_ms: m.created_ms,
        membership: m.membership.to_hex(),
        status: m.status,
        last_signin_ms: m.last_signin_ms,
        referrals: m.referrals,
        key: m.key.clone(),
    };
    serde_json::to_vec_pretty(&disk).expect("a member file always serialises")
}

/// Reads one entry of the members directory: `None` if it is not a member file (another
/// name, a directory); a damaged file is [`MembersError::Damaged`], a file others may read or
/// write is [`MembersError::Files`].
fn read_member(path: &Path) -> Result<Option<Member>, MembersError> {
    let damaged = |why: String| MembersError::Damaged {
        path: path.to_path_buf(),
        why,
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let Some(stem) = name.strip_suffix(".json") else {
        return Ok(None);
    };
    let named = PublicKey::from_hex(stem)
        .map_err(|_| damaged("its name is not <public key of 64 hex digits>.json".into()))?;
    let Some(bytes) = files::read(path, MAX_FILE_BYTES)? else {
        return Ok(None);
    };
    let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    if disk.version != VERSION {
        return Err(damaged(format!(
            "version {} (this build reads {VERSION})",
            disk.version
        )));
    }
    let public_key = PublicKey::from_hex(&disk.public_key)
        .map_err(|_| damaged("public_key is not 64 hex digits".into()))?;
    if public_key != named {
        return Err(damaged(format!(
            "it holds member {public_key}, not the one its name says"
        )));
    }
    check_key_file(&public_key, &disk.key).map_err(|e| damaged(e.to_string()))?;
    let login = Login::parse(&disk.login).map_err(|e| damaged(e.to_string()))?;
    if login.0 != disk.login {
        return Err(damaged(format!("login {:?} is not folded", disk.login)));
    }
    let membership = Id::from_hex(&disk.membership)
        .map_err(|_| damaged("membership is not an id of 64 hex digits".into()))?;
    Ok(Some(Member {
        login,
        public_key,
        created_ms: disk.created_ms,
        membership,
        status: disk.status,
        last_signin_ms: disk.last_signin_ms,
        referrals: disk.referrals,
        key: disk.key,
    }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rand_core::{OsRng, SeedableRng};

    use super::*;

    const PASSWORD: &[u8] = b"correct horse battery";

    /// A member with a key from `seed`, sealed with the test preset (fast).
    fn member(seed: u8, login: &str) -> (Keypair, Member) {
        let k = Keypair::from_seed([seed; 32]);
        let key = seal_new(&k, PASSWORD, KdfParams::MINIMUM, &mut OsRng).unwrap();
        let m = Member {
            login: Login::parse(login).unwrap(),
            public_key: k.public(),
            created_ms: 1_000 + u64::from(seed),
            membership: Id([seed.wrapping_add(100); 32]),
            status: Status::Active,
            last_signin_ms: None,
            referrals: 0,
            key,
        };
        (k, m)
    }

    fn members_dir(data: &Path) -> PathBuf {
        data.join(crate::community::DIR).join(DIR)
    }

    fn file_of(data: &Path, k: &Keypair) -> PathBuf {
        members_dir(data).join(format!("{}.json", k.public().to_hex()))
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn members_round_trip_through_their_files() {
        let data = tempfile::tempdir().unwrap();
        let mut ms = Members::open(data.path()).unwrap();
        assert!(ms.is_empty());
        assert_eq!(mode(&data.path().join(crate::community::DIR)), 0o700);
        assert_eq!(mode(&members_dir(data.path())), 0o700);
        let (ka, a) = member(1, "Anna");
        let (kb, b) = member(2, "ben.k-9_");
        ms.add(a.clone()).unwrap();
        ms.add(b.clone()).unwrap();
        assert_eq!(a.login.as_str(), "anna");
        assert_eq!(mode(&file_of(data.path(), &ka)), 0o600);
        let text = std::fs::read_to_string(file_of(data.path(), &ka)).unwrap();
        for field in [
            "\"version\": 1",
            "\"login\": \"anna\"",
            "\"status\": \"active\"",
            "\"format\": \"passalong-key\"",
        ] {
            assert!(text.contains(field), "{field} in {text}");
        }
        assert!(!text.contains(&hex::encode(ka.seed())), "no seed at rest");

        let ms = Members::open(data.path()).unwrap();
        assert!(ms.damaged().is_empty());
        assert_eq!(ms.len(), 2);
        assert_eq!(ms.get(&ka.public()), Some(&a));
        assert_eq!(ms.by_login("ANNA"), Some(&a), "logins fold");
        assert_eq!(ms.by_login("ben.k-9_"), Some(&b));
        assert_eq!(ms.by_login("nobody"), None);
        assert_eq!(ms.by_login("no"), None);
        let keys: Vec<_> = ms.iter().map(|m| m.public_key).collect();
        let mut sorted = vec![ka.public(), kb.public()];
        sorted.sort();
        assert_eq!(keys, sorted);
        // The sealed key opens with her password, and is her key.
        let opened = vault::open(&ms.by_login("anna").unwrap().key, PASSWORD).unwrap();
        assert_eq!(opened.keypair.public(), ka.public());
    }

    #[test]
    fn status_sign_ins_and_referrals_are_kept_and_older_files_read() {
        let data = tempfile::tempdir().unwrap();
        let mut ms = Members::open(data.path()).unwrap();
        let (ka, a) = member(1, "anna");
        ms.add(a.clone()).unwrap();
        // A file written before the activity fields existed reads as none.
        let text = std::fs::read_to_string(file_of(data.path(), &ka)).unwrap();
        assert!(!text.contains("last_signin_ms"), "{text}");
        let older = text.replace(",\n  \"referrals\": 0", "");
        assert!(!older.contains("referrals"), "{older}");
        std::fs::write(file_of(data.path(), &ka), &older).unwrap();
        let mut ms = Members::open(data.path()).unwrap();
        assert_eq!(ms.get(&ka.public()), Some(&a));

        ms.set_last_signin(&ka.public(), 5_000).unwrap();
        ms.count_referral(&ka.public()).unwrap();
        ms.count_referral(&ka.public()).unwrap();
        ms.set_status(&ka.public(), Status::Left).unwrap();
        let unknown = PublicKey([9; 32]);
        assert!(matches!(
            ms.count_referral(&unknown),
            Err(MembersError::Unknown(_))
        ));
        let ms = Members::open(data.path()).unwrap();
        let m = ms.get(&ka.public()).unwrap();
        assert_eq!(
            (m.last_signin_ms, m.referrals, m.status),
            (Some(5_000), 2, Status::Left)
        );
        assert_eq!(m.status.as_str(), "left");
        let text = std::fs::read_to_string(file_of(data.path(), &ka)).unwrap();
        assert!(text.contains("\"status\": \"left\""), "{text}");
    }

    #[test]
    fn a_taken_login_or_key_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let mut ms = Members::open(data.path()).unwrap();
        let (_, a) = member(1, "anna");
        ms.add(a.clone()).unwrap();
        let (_, same_login) = member(2, "ANNA");
        assert!(matches!(
            ms.login_free("Anna"),
            Err(MembersError::LoginTaken(l)) if l.as_str() == "anna"
        ));
        let e = ms.add(same_login).unwrap_err();
        assert!(matches!(e, MembersError::LoginTaken(_)), "{e}");
        assert_eq!(e.to_string(), "the login anna is taken");
        let same_key = Member {
            login: Login::parse("anna2").unwrap(),
            ..a.clone()
        };
        assert!(matches!(ms.add(same_key), Err(MembersError::KeyTaken(_))));
        // A key file sealing another key.
        let (_, c) = member(3, "carla");
        let wrong = Member {
            key: a.key.clone(),
            ..c
        };
        assert!(matches!(
            ms.add(wrong),
            Err(MembersError::WrongKeyFile { .. })
        ));
        assert_eq!(ms.login_free("carla").unwrap().as_str(), "carla");
        // Nothing of the refused ones reached the disk.
        assert_eq!(
            std::fs::read_dir(members_dir(data.path())).unwrap().count(),
            1
        );
        let ms = Members::open(data.path()).unwrap();
        assert_eq!((ms.len(), ms.damaged().len()), (1, 0));
    }

    #[test]
    fn login_and_password_rules() {
        for ok in ["abc", "ANNA", "a.b_c-d", "0123", &"x".repeat(32)] {
            assert_eq!(Login::parse(ok).unwrap().as_str(), ok.to_ascii_lowercase());
        }
        for bad in [
            "",
            "ab",
            &"x".repeat(33),
            "anna k",
            "anna@home",
            "änna",
            "anna/..",
            " anna",
            "ann\u{0}",
        ] {
            assert!(
                matches!(Login::parse(bad), Err(MembersError::BadLogin { .. })),
                "{bad:?}"
            );
        }
        for ok in [10, 11, 255, 256] {
            check_password(&vec![b'p'; ok]).unwrap();
        }
        for bad in [0, 9, 257, 10_000] {
            assert!(matches!(
                check_password(&vec![b'p'; bad]),
                Err(MembersError::BadPassword { len }) if len == bad
            ));
        }
        let k = Keypair::from_seed([1; 32]);
        assert!(matches!(
            seal_new(&k, b"short", KdfParams::MINIMUM, &mut OsRng),
            Err(MembersError::BadPassword { len: 5 })
        ));
    }

    #[test]
    fn status_and_key_changes_persist() {
        let data = tempfile::tempdir().unwrap();
        let mut ms = Members::open(data.path()).unwrap();
        let (ka, a) = member(1, "anna");
        ms.add(a).unwrap();
        ms.set_status(&ka.public(), Status::Removed).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let resealed = seal_new(&ka, b"a new long password", KdfParams::MINIMUM, &mut rng).unwrap();
        ms.set_key(&ka.public(), resealed.clone()).unwrap();
        let other = Keypair::from_seed([9; 32]);
        assert!(matches!(
            ms.set_key(
                &ka.public(),
                seal_new(&other, PASSWORD, KdfParams::MINIMUM, &mut rng).unwrap()
            ),
            Err(MembersError::WrongKeyFile { .. })
        ));
        assert!(matches!(
            ms.set_status(&other.public(), Status::Moved),
            Err(MembersError::Unknown(_))
        ));
        let ms = Members::open(data.path()).unwrap();
        let a = ms.get(&ka.public()).unwrap();
        assert_eq!((a.status, &a.key), (Status::Removed, &resealed));
        assert_eq!(ms.by_login("anna").map(|m| m.public_key), Some(ka.public()));
        assert!(vault::open(&a.key, b"a new long password").is_ok());
    }

    /// A crash mid-write leaves `<file>.tmp` beside the old file, or alone for a new member:
    /// never acknowledged, it is removed on reopening and the rest is as it was.
    #[test]
    fn reopening_after_a_crash_ignores_half_written_files() {
        let data = tempfile::tempdir().unwrap();
        let mut ms = Members::open(data.path()).unwrap();
        let (ka, a) = member(1, "anna");
        ms.add(a.clone()).unwrap();
        drop(ms);
        let dir = members_dir(data.path());
        // An update of anna cut short, and a new member whose file never got renamed.
        let a_path = file_of(data.path(), &ka);
        let half = std::fs::read(&a_path).unwrap();
        std::fs::write(
            dir.join(format!("{}.json.tmp", ka.public().to_hex())),
            &half[..half.len() / 2],
        )
        .unwrap();
        let (kb, b) = member(2, "ben");
        std::fs::write(
            dir.join(format!("{}.json.tmp", kb.public().to_hex())),
            to_json(&b),
        )
        .unwrap();

        let mut ms = Members::open(data.path()).unwrap();
        assert!(ms.damaged().is_empty(), "{:?}", ms.damaged());
        assert_eq!(ms.len(), 1);
        assert_eq!(ms.get(&ka.public()), Some(&a));
        assert_eq!(ms.by_login("ben"), None, "never acknowledged");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "the tmp files are gone");
        // Ben joins again, fine.
        ms.add(b.clone()).unwrap();
        assert_eq!(
            Members::open(data.path()).unwrap().by_login("ben"),
            Some(&b)
        );
    }

    #[test]
    fn files_others_may_read_are_refused() {
        let data = tempfile::tempdir().unwrap();
        let mut ms = Members::open(data.path()).unwrap();
        let (ka, a) = member(1, "anna");
        ms.add(a).unwrap();
        let file = file_of(data.path(), &ka);
        chmod(&file, 0o644);
        let e = Members::open(data.path()).unwrap_err();
        assert!(
            matches!(&e, MembersError::Files(FilesError::Mode { path, .. }) if *path == file),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        chmod(&file, 0o600);
        for dir in [
            members_dir(data.path()),
            data.path().join(crate::community::DIR),
        ] {
            chmod(&dir, 0o755);
            let e = Members::open(data.path()).unwrap_err();
            assert!(
                matches!(&e, MembersError::Files(FilesError::Mode { path, .. }) if *path == dir),
                "{e}"
            );
            chmod(&dir, 0o700);
        }
        // A member file that is a link to somewhere else.
        let elsewhere = data.path().join("planted.json");
        std::fs::copy(&file, &elsewhere).unwrap();
        let (kb, _) = member(2, "ben");
        std::os::unix::fs::symlink(&elsewhere, file_of(data.path(), &kb)).unwrap();
        assert!(matches!(
            Members::open(data.path()),
            Err(MembersError::Files(FilesError::Symlink { .. }))
        ));
    }

    #[test]
    fn a_damaged_file_is_reported_by_name_and_costs_nothing_else() {
        let data = tempfile::tempdir().unwrap();
        let mut ms = Members::open(data.path()).unwrap();
        let (ka, a) = member(1, "anna");
        let (kb, b) = member(2, "ben");
        let (kc, c) = member(3, "carla");
        let (kd, d) = member(4, "dora");
        let (ke, e) = member(5, "emil");
        for m in [a.clone(), b, c.clone(), d, e.clone()] {
            ms.add(m).unwrap();
        }
        drop(ms);
        let dir = members_dir(data.path());
        // ben's file cut in half; dora's swapped for carla's (another key); emil's login
        // changed by hand to anna's.
        let b_path = file_of(data.path(), &kb);
        let text = std::fs::read(&b_path).unwrap();
        std::fs::write(&b_path, &text[..text.len() / 2]).unwrap();
        let d_path = file_of(data.path(), &kd);
        std::fs::copy(file_of(data.path(), &kc), &d_path).unwrap();
        let e_path = file_of(data.path(), &ke);
        let e_as_anna = Member {
            login: a.login.clone(),
            ..e.clone()
        };
        std::fs::write(&e_path, to_json(&e_as_anna)).unwrap();
        // A stray file named like a member, and one that is not a member file at all.
        let stray = dir.join("not-a-key.json");
        std::fs::write(&stray, b"{}").unwrap();
        std::fs::write(dir.join("notes.txt"), b"hello").unwrap();

        let mut ms = Members::open(data.path()).unwrap();
        // Of two files claiming one login, the first by name keeps it.
        let a_path = file_of(data.path(), &ka);
        let (kept, lost, lost_path) = if a_path < e_path {
            (&a, &e_as_anna, &e_path)
        } else {
            (&e_as_anna, &a, &a_path)
        };
        assert_eq!(ms.len(), 2);
        assert_eq!(ms.get(&kc.public()), Some(&c));
        assert_eq!(ms.by_login("anna"), Some(kept));
        assert_eq!(ms.get(&lost.public_key), None);
        let reported: Vec<String> = ms.damaged().iter().map(|e| e.to_string()).collect();
        assert_eq!(reported.len(), 4, "{reported:#?}");
        for path in [&b_path, &d_path, &stray, lost_path] {
            assert!(
                reported
                    .iter()
                    .any(|r| r.contains(&path.display().to_string())),
                "{path:?} in {reported:#?}"
            );
        }
        assert!(ms
            .damaged()
            .iter()
            .all(|e| matches!(e, MembersError::Damaged { .. })));
        // ben's key stays held by his damaged file; his login is free to take.
        let (_, again) = member(2, "ben2");
        assert!(matches!(ms.add(again), Err(MembersError::KeyTaken(_))));
        assert!(ms.login_free("ben").is_ok());
        // Nothing was deleted or rewritten.
        assert_eq!(std::fs::read(&b_path).unwrap(), &text[..text.len() / 2]);
        assert_eq!(std::fs::read(&e_path).unwrap(), to_json(&e_as_anna));
        assert!(a_path.exists() && d_path.exists() && stray.exists());
    }
}
