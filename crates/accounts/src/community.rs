//! The community this node runs, as its connector: `<data-dir>/community/community.json`.
//!
//! ```json
//! {"version":1,"community":HEX32,"name":"Riverside","created_at_ms":1764892800000}
//! ```
//!
//! `community` is the id of the signed Community attestation, which stays the truth (the
//! store holds it); the file says which of the attestations the node signed is the one it
//! runs, so that it survives a restart. A node runs one community: a second is refused. The
//! directory is private (0700, see [`crate::files`]) because the members' key files live in
//! it too.

use std::path::{Path, PathBuf};

use passalong_protocol::limits::MAX_COMMUNITY_NAME_BYTES;
use passalong_protocol::Id;
use serde::{Deserialize, Serialize};

use crate::files::{self, FilesError};

/// The directory under the data dir.
pub const DIR: &str = "community";
/// The file in it.
pub const FILE: &str = "community.json";
/// The `version` this build writes and reads.
pub const VERSION: u32 = 1;
/// No community file is longer (a 64-byte name, escaped, and an id).
const MAX_FILE_BYTES: u64 = 4 * 1024;

/// The community a node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Community {
    /// The id of its Community attestation.
    pub id: Id,
    /// Its name, as signed.
    pub name: String,
    /// When it was signed.
    pub created_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    community: String,
    name: String,
    created_at_ms: u64,
}

/// Why the community file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CommunityError {
    /// The directory or the file is unusable (permissions, IO).
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The file is not one this build wrote.
    #[error("{} is damaged: {why}; restore it from a backup of the data dir", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The node runs a community already.
    #[error("this node runs community {0} already (one community per node)")]
    Exists(Id),
    /// The name would not make a valid Community attestation.
    #[error("a community's name is 1 to {MAX_COMMUNITY_NAME_BYTES} bytes; this one is {0}")]
    BadName(usize),
}

/// `<data-dir>/community`, created (0700) if missing, checked if not: where the community's
/// files and its members' key files live.
pub fn dir(data_dir: &Path) -> Result<PathBuf, FilesError> {
    let dir = data_dir.join(DIR);
    files::private_dir(&dir)?;
    Ok(dir)
}

/// Refuses a name the protocol would refuse in the Community attestation.
pub fn check_name(name: &str) -> Result<(), CommunityError> {
    if name.is_empty() || name.len() > MAX_COMMUNITY_NAME_BYTES {
        return Err(CommunityError::BadName(name.len()));
    }
    Ok(())
}

/// The community this node runs, if any. A node without one gets `None`, and no directory is
/// created.
pub fn load(data_dir: &Path) -> Result<Option<Community>, CommunityError> {
    let dir = data_dir.join(DIR);
    if matches!(std::fs::symlink_metadata(&dir), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    {
        return Ok(None);
    }
    files::check(&dir, true)?;
    let path = dir.join(FILE);
    let Some(bytes) = files::read(&path, MAX_FILE_BYTES)? else {
        return Ok(None);
    };
    let damaged = |why: String| CommunityError::Damaged {
        path: path.clone(),
        why,
    };
    let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
    if disk.version != VERSION {
        return Err(damaged(format!(
            "version {} (this build reads {VERSION})",
            disk.version
        )));
    }
    let id = Id::from_hex(&disk.community)
        .map_err(|_| damaged("community is not an id of 64 hex digits".into()))?;
    check_name(&disk.name).map_err(|e| damaged(e.to_string()))?;
    Ok(Some(Community {
        id,
        name: disk.name,
        created_at_ms: disk.created_at_ms,
    }))
}

/// Records the community this node now runs, durably; refused if it runs one already.
pub fn create(data_dir: &Path, community: &Community) -> Result<(), CommunityError> {
    check_name(&community.name)?;
    if let Some(existing) = load(data_dir)? {
        return Err(CommunityError::Exists(existing.id));
    }
    let dir = dir(data_dir)?;
    let disk = OnDisk {
        version: VERSION,
        community: community.id.to_hex(),
        name: community.name.clone(),
        created_at_ms: community.created_at_ms,
    };
    let text = serde_json::to_vec_pretty(&disk).expect("a community file always serialises");
    if files::write_atomic(&dir.join(FILE), &text, true)? {
        Ok(())
    } else {
        // Written between the load and now: this node's daemon holds the data dir's lock, so
        // only a file put there by hand gets here.
        Err(CommunityError::Exists(community.id))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn riverside() -> Community {
        Community {
            id: Id([7; 32]),
            name: "Riverside".into(),
            created_at_ms: 1_764_892_800_000,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_community_is_recorded_once_and_read_back() {
        let data = tempfile::tempdir().unwrap();
        assert_eq!(load(data.path()).unwrap(), None);
        assert!(
            !data.path().join(DIR).exists(),
            "a personal node gets no dir"
        );
        create(data.path(), &riverside()).unwrap();
        assert_eq!(load(data.path()).unwrap(), Some(riverside()));
        assert_eq!(mode(&data.path().join(DIR)), 0o700);
        let file = data.path().join(DIR).join(FILE);
        assert_eq!(mode(&file), 0o600);
        let text = std::fs::read_to_string(&file).unwrap();
        for field in [
            "\"version\": 1",
            "\"community\": \"0707",
            "\"name\": \"Riverside\"",
        ] {
            assert!(text.contains(field), "{text}");
        }
        let second = Community {
            id: Id([8; 32]),
            ..riverside()
        };
        assert!(matches!(
            create(data.path(), &second),
            Err(CommunityError::Exists(id)) if id == Id([7; 32])
        ));
        assert_eq!(load(data.path()).unwrap(), Some(riverside()));
    }

    #[test]
    fn names_follow_the_protocols_rule() {
        let data = tempfile::tempdir().unwrap();
        for bad in [String::new(), "x".repeat(MAX_COMMUNITY_NAME_BYTES + 1)] {
            let c = Community {
                name: bad,
                ..riverside()
            };
            assert!(matches!(
                create(data.path(), &c),
                Err(CommunityError::BadName(_))
            ));
        }
        assert_eq!(load(data.path()).unwrap(), None);
        let c = Community {
            name: "é".repeat(MAX_COMMUNITY_NAME_BYTES / 2),
            ..riverside()
        };
        create(data.path(), &c).unwrap();
        assert_eq!(load(data.path()).unwrap(), Some(c));
    }

    #[test]
    fn a_damaged_or_exposed_file_is_refused_with_its_name() {
        let data = tempfile::tempdir().unwrap();
        create(data.path(), &riverside()).unwrap();
        let file = data.path().join(DIR).join(FILE);
        for bad in [
            "{\"version\":1,\"commu",
            "{\"version\":2,\"community\":\"00\",\"name\":\"x\",\"created_at_ms\":1}",
            "{\"version\":1,\"community\":\"00\",\"name\":\"x\",\"created_at_ms\":1}",
            "{\"version\":1,\"community\":\"0707070707070707070707070707070707070707070707070707070707070707\",\"name\":\"\",\"created_at_ms\":1}",
        ] {
            std::fs::write(&file, bad).unwrap();
            let e = load(data.path()).unwrap_err();
            assert!(matches!(e, CommunityError::Damaged { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(&file.display().to_string()), "{e}");
        }
        create(data.path(), &riverside()).unwrap_err();

        std::fs::remove_file(&file).unwrap();
        create(data.path(), &riverside()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load(data.path()),
            Err(CommunityError::Files(FilesError::Mode { .. }))
        ));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dir = data.path().join(DIR);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(matches!(
            load(data.path()),
            Err(CommunityError::Files(FilesError::Mode { .. }))
        ));
    }
}
