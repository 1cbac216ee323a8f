//! Who may act as whom on a community node (issue 16; see `docs/community-nodes-plan.md`).
//!
//! A community node hosts neighbours who run no node of their own: each has an ed25519 key of
//! their own, kept on the node encrypted under a key derived from their password, and usable
//! only while they are signed in. This crate is pure (no IO, no async): the key-file format
//! ([`vault`]) and its key derivation ([`kdf`]), sign-in slowing ([`throttle`]), one-time
//! invites ([`invites`]) and sign-in sessions, which hold a member's key while she is signed
//! in ([`session`]); the member registry comes next. Time and randomness are passed in.
#![deny(missing_docs)]

pub mod invites;
pub mod kdf;
pub mod session;
pub mod throttle;
pub mod vault;

pub use kdf::{KdfError, KdfParams};
pub use session::{MemberKey, Role, Session, SessionId, Sessions};
pub use vault::{KeyFile, Opened, VaultError};
