//! Who may act as whom on a community node (issue 16; see `docs/community-nodes-plan.md`).
//!
//! A community node hosts neighbours who run no node of their own: each has an ed25519 key of
//! their own, kept on the node encrypted under a key derived from their password, and usable
//! only while they are signed in. The policies are pure state machines (no IO, no async; time
//! and randomness are passed in): the key-file format ([`vault`]) and its key derivation
//! ([`kdf`]), sign-in slowing ([`throttle`]), key exports per account ([`quota`]), one-time
//! invites ([`invites`]) and sign-in sessions, which hold a member's key while she is signed
//! in ([`session`]). The key file a member takes away to her own node carries her markets,
//! community and contacts ([`export`]). The files of a community node are here too, with plain
//! blocking IO: the community it runs ([`community`]) and its hosted members ([`members`]),
//! under private directories with atomic writes ([`files`]).
#![deny(missing_docs)]

pub mod community;
pub mod export;
pub mod files;
pub mod invites;
pub mod kdf;
pub mod members;
pub mod quota;
pub mod session;
pub mod throttle;
pub mod vault;

pub use community::{Community, CommunityError};
pub use export::Carried;
pub use files::FilesError;
pub use invites::{InviteError, InviteId, Invites, InvitesFileError};
pub use kdf::{KdfError, KdfParams};
pub use members::{Login, Member, Members, MembersError};
pub use session::{MemberKey, Role, Session, SessionId, Sessions};
pub use vault::{KeyFile, Opened, VaultError};
