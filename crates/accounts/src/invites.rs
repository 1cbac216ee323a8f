//! One-time invites to a community: a connector creates one (a link and a QR code), a
//! neighbour opens it and joins once. A pure state machine over `now` and an injected RNG;
//! the node keeps it in `<data-dir>/community/invites.json` ([`Invites::load`],
//! [`Invites::save`]: private, atomic and synced, see [`crate::files`]).
//!
//! The token is 16 random bytes (`inv1.` and 32 hex digits); only its blake3 hash is kept,
//! so the file does not let anyone join. An invite is open until it expires, is used, or is
//! revoked; joining first reserves it for [`LEASE_MS`] (so that two joins at once cannot both
//! spend a key derivation on it), then redeems the lease.

use std::path::{Path, PathBuf};

use passalong_protocol::PublicKey;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::files::{self, FilesError};

/// How an invite's token starts.
pub const TOKEN_PREFIX: &str = "inv1.";
/// How long an invite is valid unless the connector says otherwise: 7 days.
pub const DEFAULT_TTL_MS: u64 = 7 * 24 * 60 * 60_000;
/// Open invites at most.
pub const MAX_OPEN: usize = 1_000;
/// How long a join holds an invite it is using.
pub const LEASE_MS: u64 = 30_000;
/// How long used, revoked and expired invites stay listed before [`Invites::prune`] drops them.
pub const KEEP_CLOSED_MS: u64 = 30 * 24 * 60 * 60_000;
/// The invites' file under `<data-dir>/community/`.
pub const FILE: &str = "invites.json";
/// The file's `version` this build writes and reads.
pub const FILE_VERSION: u32 = 1;
/// No invites file is longer: an invite takes under 300 bytes, and closed ones are pruned.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The short id a connector sees and revokes by: the first 4 bytes of the token's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InviteId(pub [u8; 4]);

impl std::fmt::Display for InviteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Where an invite is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// It may be used.
    Open,
    /// A join is using it until then.
    Reserved {
        /// When the lease ends.
        until_ms: u64,
    },
    /// Someone joined with it.
    Used {
        /// Who.
        member: PublicKey,
        /// When.
        at_ms: u64,
    },
    /// The connector revoked it.
    Revoked {
        /// When.
        at_ms: u64,
    },
}

/// One invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// blake3 of the token.
    pub hash: [u8; 32],
    /// When it was created.
    pub created_ms: u64,
    /// When it stops being valid.
    pub expires_ms: u64,
    /// The connector's note (whom it is for).
    pub note: String,
    /// Where it is in its life.
    pub state: State,
}

impl Invite {
    /// Its short id.
    pub fn id(&self) -> InviteId {
        InviteId([self.hash[0], self.hash[1], self.hash[2], self.hash[3]])
    }

    /// Whether it may still be used at `now_ms` (open, or reserved by a lease that ended).
    pub fn usable(&self, now_ms: u64) -> bool {
        now_ms < self.expires_ms
            && match self.state {
                State::Open => true,
                State::Reserved { until_ms } => now_ms >= until_ms,
                _ => false,
            }
    }
}

/// Why an invite cannot be used, created or revoked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// No invite has this token (or it is not a token).
    #[error("this invite is not known")]
    Unknown,
    /// Its time is over.
    #[error("this invite has expired")]
    Expired,
    /// Someone joined with it already.
    #[error("this invite was used already")]
    Used,
    /// The connector revoked it.
    #[error("this invite was revoked")]
    Revoked,
    /// Another join is using it right now.
    #[error("this invite is being used; try again in a minute")]
    Busy,
    /// The lease ended and someone else took the invite meanwhile.
    #[error("the join took too long; open the invite again")]
    LeaseLost,
    /// Too many invites are open.
    #[error("{MAX_OPEN} invites are open already: revoke some first")]
    TooMany,
}

/// Why the invites file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum InvitesFileError {
    /// The directory or the file is unusable (permissions, IO).
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The file is not one this build wrote.
    #[error("{} is damaged: {why}; restore it from a backup of the data dir, or delete it (the invites it held then no longer work)", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

#[derive(Serialize)]
struct OnDiskRef<'a> {
    version: u32,
    invites: &'a [Invite],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    invites: Vec<Invite>,
}

/// A join's hold on an invite (see [`Invites::reserve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    hash: [u8; 32],
    until_ms: u64,
}

/// A community's invites.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invites {
    invites: Vec<Invite>,
}

fn hash_of(token: &str) -> Option<[u8; 32]> {
    let hex_part = token.trim().strip_prefix(TOKEN_PREFIX)?;
    let mut raw = [0u8; 16];
    hex::decode_to_slice(hex_part, &mut raw).ok()?;
    Some(*blake3::hash(&raw).as_bytes())
}

impl Invites {
    /// A new invite valid for `ttl_ms`: its token (shown once, never stored) and its id.
    pub fn create(
        &mut self,
        now_ms: u64,
        ttl_ms: u64,
        note: &str,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<(String, InviteId), InviteError> {
        if self.open(now_ms).count() >= MAX_OPEN {
            return Err(InviteError::TooMany);
        }
        let mut raw = [0u8; 16];
        rng.fill_bytes(&mut raw);
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(raw));
        let invite = Invite {
            hash: *blake3::hash(&raw).as_bytes(),
            created_ms: now_ms,
            expires_ms: now_ms.saturating_add(ttl_ms),
            note: note.chars().take(200).collect(),
            state: State::Open,
        };
        let id = invite.id();
        self.invites.push(invite);
        Ok((token, id))
    }

    fn find(&self, token: &str) -> Result<usize, InviteError> {
        let hash = hash_of(token).ok_or(InviteError::Unknown)?;
        // blake3's Hash compares in constant time.
        let wanted = blake3::Hash::from(hash);
        self.invites
            .iter()
            .position(|i| blake3::Hash::from(i.hash) == wanted)
            .ok_or(InviteError::Unknown)
    }

    fn why_not(invite: &Invite, now_ms: u64) -> InviteError {
        match invite.state {
            State::Used { .. } => InviteError::Used,
            State::Revoked { .. } => InviteError::Revoked,
            _ if now_ms >= invite.expires_ms => InviteError::Expired,
            _ => InviteError::Busy,
        }
    }

    /// Whether `token` may be used now (to show the join page).
    pub fn check(&self, token: &str, now_ms: u64) -> Result<&Invite, InviteError> {
        let i = &self.invites[self.find(token)?];
        if i.usable(now_ms) {
            Ok(i)
        } else {
            Err(Self::why_not(i, now_ms))
        }
    }

    /// Who joined with `token`'s invite, if it was used (a retry of her join is told apart
    /// from someone else's use of the same link).
    pub fn used_by(&self, token: &str) -> Option<PublicKey> {
        match self.invites[self.find(token).ok()?].state {
            State::Used { member, .. } => Some(member),
            _ => None,
        }
    }

    /// Holds `token`'s invite for a join, for [`LEASE_MS`].
    pub fn reserve(&mut self, token: &str, now_ms: u64) -> Result<Lease, InviteError> {
        let at = self.find(token)?;
        let i = &mut self.invites[at];
        if !i.usable(now_ms) {
            return Err(Self::why_not(i, now_ms));
        }
        let until_ms = now_ms.saturating_add(LEASE_MS);
        i.state = State::Reserved { until_ms };
        Ok(Lease {
            hash: i.hash,
            until_ms,
        })
    }

    /// The join holding `lease` succeeded: `member` joined.
    pub fn redeem(
        &mut self,
        lease: &Lease,
        member: PublicKey,
        now_ms: u64,
    ) -> Result<InviteId, InviteError> {
        let i = self
            .invites
            .iter_mut()
            .find(|i| i.hash == lease.hash)
            .ok_or(InviteError::Unknown)?;
        match i.state {
            State::Reserved { until_ms } if until_ms == lease.until_ms => {
                i.state = State::Used {
                    member,
                    at_ms: now_ms,
                };
                Ok(i.id())
            }
            State::Used { .. } => Err(InviteError::Used),
            State::Revoked { .. } => Err(InviteError::Revoked),
            _ => Err(InviteError::LeaseLost),
        }
    }

    /// The join holding `lease` failed: the invite is open again.
    pub fn release(&mut self, lease: &Lease) {
        if let Some(i) = self.invites.iter_mut().find(|i| i.hash == lease.hash) {
            if i.state
                == (State::Reserved {
                    until_ms: lease.until_ms,
                })
            {
                i.state = State::Open;
            }
        }
    }

    /// Revokes the invite `id` (if still open or reserved).
    pub fn revoke(&mut self, id: InviteId, now_ms: u64) -> Result<(), InviteError> {
        let i = self
            .invites
            .iter_mut()
            .find(|i| i.id() == id)
            .ok_or(InviteError::Unknown)?;
        match i.state {
            State::Used { .. } => Err(InviteError::Used),
            State::Revoked { .. } => Ok(()),
            _ => {
                i.state = State::Revoked { at_ms: now_ms };
                Ok(())
            }
        }
    }

    /// Invites that may still be used, oldest first.
    pub fn open(&self, now_ms: u64) -> impl Iterator<Item = &Invite> {
        self.invites.iter().filter(move |i| {
            now_ms < i.expires_ms && matches!(i.state, State::Open | State::Reserved { .. })
        })
    }

    /// Every invite kept, oldest first.
    pub fn all(&self) -> &[Invite] {
        &self.invites
    }

    /// The invites of the community in `data_dir`, as last saved; none if there is no file.
    /// A join under way when the node stopped held a lease that ended with it: its invite is
    /// open again.
    pub fn load(data_dir: &Path) -> Result<Invites, InvitesFileError> {
        let dir = data_dir.join(crate::community::DIR);
        if matches!(std::fs::symlink_metadata(&dir), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        {
            return Ok(Invites::default());
        }
        files::check(&dir, true)?;
        let path = dir.join(FILE);
        let Some(bytes) = files::read(&path, MAX_FILE_BYTES)? else {
            return Ok(Invites::default());
        };
        let damaged = |why: String| InvitesFileError::Damaged {
            path: path.clone(),
            why,
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        if disk.version != FILE_VERSION {
            return Err(damaged(format!(
                "version {} (this build reads {FILE_VERSION})",
                disk.version
            )));
        }
        let mut invites = disk.invites;
        for i in &mut invites {
            if matches!(i.state, State::Reserved { .. }) {
                i.state = State::Open;
            }
        }
        Ok(Invites { invites })
    }

    /// Writes the invites of the community in `data_dir`, durably: a new invite's token works
    /// only once this returns.
    pub fn save(&self, data_dir: &Path) -> Result<(), InvitesFileError> {
        let dir = crate::community::dir(data_dir)?;
        let disk = OnDiskRef {
            version: FILE_VERSION,
            invites: &self.invites,
        };
        let text = serde_json::to_vec(&disk).expect("invites always serialise");
        files::write_atomic(&dir.join(FILE), &text, false)?;
        Ok(())
    }

    /// Drops invites closed (used, revoked or expired) more than [`KEEP_CLOSED_MS`] ago.
    pub fn prune(&mut self, now_ms: u64) {
        self.invites.retain(|i| {
            let closed_at = match i.state {
                State::Used { at_ms, .. } | State::Revoked { at_ms } => at_ms,
                _ => i.expires_ms,
            };
            let closed = now_ms >= i.expires_ms
                || matches!(i.state, State::Used { .. } | State::Revoked { .. });
            !closed || now_ms.saturating_sub(closed_at) < KEEP_CLOSED_MS
        });
    }
}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;

    use super::*;

    const DAY: u64 = 24 * 60 * 60_000;

    fn member(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    #[test]
    fn an_invite_works_once() {
        let mut inv = Invites::default();
        let (token, id) = inv
            .create(0, DEFAULT_TTL_MS, "for Anna", &mut OsRng)
            .unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 37);
        assert_eq!(inv.check(&token, 1).unwrap().id(), id);
        assert_eq!(inv.used_by(&token), None);
        let lease = inv.reserve(&token, 2).unwrap();
        assert_eq!(
            inv.reserve(&token, 3),
            Err(InviteError::Busy),
            "a second join at once"
        );
        assert_eq!(inv.redeem(&lease, member(1), 4), Ok(id));
        assert_eq!(inv.check(&token, 5).err(), Some(InviteError::Used));
        assert_eq!(inv.reserve(&token, 5), Err(InviteError::Used));
        assert_eq!(inv.redeem(&lease, member(2), 6), Err(InviteError::Used));
        assert_eq!(
            inv.used_by(&token),
            Some(member(1)),
            "who used it, for her retry"
        );
        assert_eq!(inv.used_by("inv1.unknown"), None);
        assert_eq!(inv.open(6).count(), 0);
        // What is stored does not hold the token, only its hash.
        let text = serde_json::to_string(&inv).unwrap();
        assert!(!text.contains(&token[TOKEN_PREFIX.len()..]));
        let back: Invites = serde_json::from_str(&text).unwrap();
        assert_eq!(back, inv);
    }

    #[test]
    fn a_lease_that_ran_out_can_be_taken_by_another_join() {
        let mut inv = Invites::default();
        let (token, _) = inv.create(0, DAY, "", &mut OsRng).unwrap();
        let slow = inv.reserve(&token, 10).unwrap();
        let fast = inv.reserve(&token, 10 + LEASE_MS).unwrap();
        assert_eq!(
            inv.redeem(&slow, member(1), 10 + LEASE_MS + 1),
            Err(InviteError::LeaseLost)
        );
        assert!(inv.redeem(&fast, member(2), 10 + LEASE_MS + 2).is_ok());
        // A failed join gives the invite back.
        let (token, _) = inv.create(0, DAY, "", &mut OsRng).unwrap();
        let lease = inv.reserve(&token, 1).unwrap();
        inv.release(&lease);
        assert!(inv.check(&token, 2).is_ok());
    }

    #[test]
    fn expired_revoked_unknown_and_malformed_invites_are_refused() {
        let mut inv = Invites::default();
        let (token, id) = inv.create(0, DAY, "", &mut OsRng).unwrap();
        assert_eq!(inv.check(&token, DAY).err(), Some(InviteError::Expired));
        assert_eq!(inv.reserve(&token, DAY), Err(InviteError::Expired));
        let (token2, id2) = inv.create(0, DAY, "", &mut OsRng).unwrap();
        inv.revoke(id2, 5).unwrap();
        assert_eq!(inv.check(&token2, 6).err(), Some(InviteError::Revoked));
        assert_eq!(inv.revoke(id2, 7), Ok(()), "revoking twice is harmless");
        let unknown = (0..=2u8)
            .map(|b| InviteId([b; 4]))
            .find(|x| *x != id && *x != id2)
            .unwrap();
        assert_eq!(inv.revoke(unknown, 6), Err(InviteError::Unknown));
        for bad in [
            "",
            "inv1.",
            "inv1.zz",
            "inv2.00000000000000000000000000000000",
            &token[..20],
        ] {
            assert_eq!(
                inv.check(bad, 1).err(),
                Some(InviteError::Unknown),
                "{bad:?}"
            );
        }
        let other = format!("{TOKEN_PREFIX}{}", "00".repeat(16));
        assert_eq!(inv.check(&other, 1).err(), Some(InviteError::Unknown));
    }

    #[test]
    fn invites_survive_a_restart_in_a_private_file_without_their_tokens() {
        use std::os::unix::fs::PermissionsExt;
        let data = tempfile::tempdir().unwrap();
        assert_eq!(Invites::load(data.path()).unwrap(), Invites::default());
        assert!(!data.path().join(crate::community::DIR).exists());
        let mut inv = Invites::default();
        let (used, _) = inv.create(0, DAY, "for Anna", &mut OsRng).unwrap();
        let (busy, _) = inv.create(0, DAY, "", &mut OsRng).unwrap();
        let (gone, gone_id) = inv.create(0, DAY, "", &mut OsRng).unwrap();
        let lease = inv.reserve(&used, 1).unwrap();
        inv.redeem(&lease, member(1), 2).unwrap();
        inv.reserve(&busy, 3).unwrap();
        inv.revoke(gone_id, 4).unwrap();
        inv.save(data.path()).unwrap();

        let file = data.path().join(crate::community::DIR).join(FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&file).unwrap();
        for token in [&used, &busy, &gone] {
            assert!(!text.contains(&token[TOKEN_PREFIX.len()..]), "{text}");
        }
        let back = Invites::load(data.path()).unwrap();
        assert_eq!(back.check(&used, 5).err(), Some(InviteError::Used));
        assert_eq!(back.check(&gone, 5).err(), Some(InviteError::Revoked));
        assert!(back.check(&busy, 5).is_ok(), "a lease ends with the node");
        assert_eq!(back.all()[0].note, "for Anna");

        for bad in ["{\"version\":1,\"inv", "{\"version\":2,\"invites\":[]}"] {
            std::fs::write(&file, bad).unwrap();
            let e = Invites::load(data.path()).unwrap_err();
            assert!(matches!(e, InvitesFileError::Damaged { .. }), "{e}");
            assert!(e.to_string().contains(&file.display().to_string()), "{e}");
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Invites::load(data.path()),
            Err(InvitesFileError::Files(FilesError::Mode { .. }))
        ));
    }

    #[test]
    fn open_invites_are_bounded_and_old_closed_ones_pruned() {
        let mut inv = Invites::default();
        for _ in 0..MAX_OPEN {
            inv.create(0, DAY, "", &mut OsRng).unwrap();
        }
        assert_eq!(
            inv.create(0, DAY, "", &mut OsRng),
            Err(InviteError::TooMany)
        );
        // Once they expire, new ones may be made; the expired ones go a month later.
        assert!(inv.create(DAY, DAY, "", &mut OsRng).is_ok());
        inv.prune(DAY + KEEP_CLOSED_MS - 1);
        assert_eq!(inv.all().len(), MAX_OPEN + 1);
        inv.prune(DAY + KEEP_CLOSED_MS);
        assert_eq!(inv.all().len(), 1, "the later one, a month after it closed");
    }
}
