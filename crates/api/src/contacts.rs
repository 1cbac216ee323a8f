//! Contacts: local names for keys ("Anna"), kept on this node only and never gossiped. Each
//! identity the node holds has its own list (a community node's members do not share one), in
//! `<data-dir>/contacts/<identity>.json`, written whole and renamed into place so a crash
//! leaves the old list or the new one.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use passalong_protocol::PublicKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::auth::{reader, Actor};
use crate::error::{ApiError, AppJson, AppQuery};
use crate::identity::parse_key;
use crate::state::AppState;

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Most contacts one identity keeps.
pub const MAX_CONTACTS: usize = 10_000;

/// One identity's names, by key.
pub type Names = BTreeMap<PublicKey, String>;

/// Why a contact could not be kept.
#[derive(Debug, Error)]
pub enum ContactsError {
    /// The name is empty, too long or holds control characters.
    #[error("name {0:?}: expected 1 to 64 characters, no control characters")]
    BadName(String),
    /// The list is full.
    #[error("at most {MAX_CONTACTS} contacts per identity")]
    Full,
    /// Reading or writing the file failed.
    #[error("contacts file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not a contacts list.
    #[error("contacts file {path} is damaged: {detail} (move it away to start a new list)")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Every identity's contacts, read once and kept in memory.
#[derive(Debug)]
pub struct Contacts {
    dir: PathBuf,
    loaded: RwLock<HashMap<PublicKey, Arc<Names>>>,
}

/// A name as stored: trimmed, checked.
pub fn clean_name(name: &str) -> Result<String, ContactsError> {
    let n = name.trim();
    let chars = n.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(ContactsError::BadName(name.to_string()));
    }
    Ok(n.to_string())
}

impl Contacts {
    /// Contacts kept under `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Contacts {
        Contacts {
            dir: dir.into(),
            loaded: RwLock::new(HashMap::new()),
        }
    }

    fn file(&self, owner: &PublicKey) -> PathBuf {
        self.dir.join(format!("{}.json", owner.to_hex()))
    }

    /// `owner`'s names (empty if it has none).
    pub fn of(&self, owner: &PublicKey) -> Result<Arc<Names>, ContactsError> {
        if let Some(n) = self.read_lock().get(owner) {
            return Ok(n.clone());
        }
        let names = Arc::new(self.load(owner)?);
        let mut w = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        Ok(w.entry(*owner).or_insert(names).clone())
    }

    /// Names `key` for `owner` (replacing an earlier name).
    pub fn set(&self, owner: &PublicKey, key: PublicKey, name: &str) -> Result<(), ContactsError> {
        let name = clean_name(name)?;
        self.change(owner, |names| {
            if names.len() >= MAX_CONTACTS && !names.contains_key(&key) {
                return Err(ContactsError::Full);
            }
            names.insert(key, name);
            Ok(true)
        })
        .map(drop)
    }

    /// Forgets `key`'s name; whether there was one.
    pub fn remove(&self, owner: &PublicKey, key: &PublicKey) -> Result<bool, ContactsError> {
        self.change(owner, |names| Ok(names.remove(key).is_some()))
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PublicKey, Arc<Names>>> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    fn change(
        &self,
        owner: &PublicKey,
        f: impl FnOnce(&mut Names) -> Result<bool, ContactsError>,
    ) -> Result<bool, ContactsError> {
        let current = self.of(owner)?;
        // One writer at a time: hold the map's write lock across the file write.
        let mut w = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        let mut names = (*w.get(owner).unwrap_or(&current).clone()).clone();
        let changed = f(&mut names)?;
        if changed {
            self.save(owner, &names)?;
            w.insert(*owner, Arc::new(names));
        }
        Ok(changed)
    }

    fn load(&self, owner: &PublicKey) -> Result<Names, ContactsError> {
        let path = self.file(owner);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Names::new()),
            Err(source) => return Err(ContactsError::Io { path, source }),
        };
        let raw: BTreeMap<String, String> =
            serde_json::from_str(&text).map_err(|e| ContactsError::Damaged {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        raw.into_iter()
            .map(|(k, v)| {
                let key = PublicKey::from_hex(&k).map_err(|_| ContactsError::Damaged {
                    path: path.clone(),
                    detail: format!("{k:?} is not a public key"),
                })?;
                Ok((key, clean_name(&v)?))
            })
            .collect()
    }

    fn save(&self, owner: &PublicKey, names: &Names) -> Result<(), ContactsError> {
        let path = self.file(owner);
        let io = |source| ContactsError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let raw: BTreeMap<String, &String> = names.iter().map(|(k, v)| (k.to_hex(), v)).collect();
        let text = serde_json::to_string_pretty(&raw).unwrap_or_default();
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

/// `POST /v1/contacts` body.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    /// The key named, hex.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Whose contact (an identity's key, hex; default the node's).
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_: Option<String>,
}

/// `POST /v1/contacts/remove` body.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct OldContact {
    /// The key whose name is forgotten, hex.
    pub key: String,
    /// Whose contact (an identity's key, hex; default the node's).
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_: Option<String>,
}

/// One contact: a key and its local name.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The key, hex.
    pub key: String,
    /// Its name.
    pub name: String,
}

/// A contacts list, sorted by key (`GET /v1/contacts`' answer, and the writes').
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactList {
    /// The contacts.
    pub contacts: Vec<Contact>,
}

impl ContactList {
    /// The list of `names`.
    pub fn of(names: &Names) -> ContactList {
        ContactList {
            contacts: names
                .iter()
                .map(|(k, n)| Contact {
                    key: k.to_hex(),
                    name: n.clone(),
                })
                .collect(),
        }
    }

    /// The names by key (a contact whose key is not one is left out).
    pub fn names(&self) -> Names {
        self.contacts
            .iter()
            .filter_map(|c| Some((PublicKey::from_hex(&c.key).ok()?, c.name.clone())))
            .collect()
    }
}

/// `?as=HEX`: whose contacts.
#[derive(Deserialize)]
pub struct OwnerQuery {
    #[serde(rename = "as")]
    as_: Option<String>,
}

impl From<ContactsError> for ApiError {
    fn from(e: ContactsError) -> Self {
        match e {
            ContactsError::BadName(_) | ContactsError::Full => ApiError::bad_request(e.to_string()),
            e => ApiError::internal(e),
        }
    }
}

/// `GET /v1/contacts`: a private read (see [`crate::auth::reader`]).
pub async fn list(
    State(s): State<AppState>,
    actor: Option<Actor>,
    AppQuery(q): AppQuery<OwnerQuery>,
) -> Result<AppJson<ContactList>, ApiError> {
    let owner = reader(&s, actor.as_ref(), q.as_.as_deref())?;
    let c = s.contacts.clone();
    let names = tokio::task::spawn_blocking(move || c.of(&owner))
        .await
        .map_err(ApiError::internal)??;
    Ok(AppJson(ContactList::of(&names)))
}

/// `POST /v1/contacts`: names a key (or renames it).
pub async fn add(
    State(s): State<AppState>,
    actor: Actor,
    AppJson(req): AppJson<NewContact>,
) -> Result<AppJson<ContactList>, ApiError> {
    let owner = actor.identity(&s, req.as_.as_deref())?;
    let key = parse_key(&req.key, "key")?;
    let c = s.contacts.clone();
    let name = req.name;
    tokio::task::spawn_blocking(move || c.set(&owner, key, &name))
        .await
        .map_err(ApiError::internal)??;
    let names = s.contacts.of(&owner)?;
    Ok(AppJson(ContactList::of(&names)))
}

/// `POST /v1/contacts/remove`
pub async fn remove(
    State(s): State<AppState>,
    actor: Actor,
    AppJson(req): AppJson<OldContact>,
) -> Result<AppJson<ContactList>, ApiError> {
    let owner = actor.identity(&s, req.as_.as_deref())?;
    let key = parse_key(&req.key, "key")?;
    let c = s.contacts.clone();
    let removed = tokio::task::spawn_blocking(move || c.remove(&owner, &key))
        .await
        .map_err(ApiError::internal)??;
    if !removed {
        return Err(ApiError::not_found(format!("no contact {key}")));
    }
    let names = s.contacts.of(&owner)?;
    Ok(AppJson(ContactList::of(&names)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: PublicKey = PublicKey([1; 32]);
    const OTHER_ME: PublicKey = PublicKey([2; 32]);
    const ANNA: PublicKey = PublicKey([3; 32]);

    #[test]
    fn names_persist_per_identity() {
        let dir = tempfile::tempdir().unwrap();
        let c = Contacts::new(dir.path().join("contacts"));
        assert!(c.of(&ME).unwrap().is_empty());
        c.set(&ME, ANNA, "  Anna ").unwrap();
        assert_eq!(
            c.of(&ME).unwrap().get(&ANNA).map(String::as_str),
            Some("Anna")
        );
        assert!(
            c.of(&OTHER_ME).unwrap().is_empty(),
            "lists are per identity"
        );
        // A new instance (a restart) reads the file.
        let again = Contacts::new(dir.path().join("contacts"));
        assert_eq!(
            again.of(&ME).unwrap().get(&ANNA).map(String::as_str),
            Some("Anna")
        );
        assert!(again.remove(&ME, &ANNA).unwrap());
        assert!(!again.remove(&ME, &ANNA).unwrap());
        assert!(Contacts::new(dir.path().join("contacts"))
            .of(&ME)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_names_and_damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = Contacts::new(dir.path());
        for bad in ["", "   ", "a\u{1b}[31m", "tab\tname", &"x".repeat(65)] {
            assert!(
                matches!(c.set(&ME, ANNA, bad), Err(ContactsError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(c.set(&ME, ANNA, &"é".repeat(64)).is_ok());
        std::fs::write(
            dir.path().join(format!("{}.json", OTHER_ME.to_hex())),
            "{nope",
        )
        .unwrap();
        assert!(matches!(
            c.of(&OTHER_ME),
            Err(ContactsError::Damaged { .. })
        ));
    }
}
