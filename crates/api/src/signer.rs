//! Who signs a write: a key the node holds ([`Identities`](crate::Identities): its own), or a
//! hosted member's key, which only her signed-in session holds
//! ([`MemberKey`]). Handlers sign through this, so that a member's key is used where her
//! session is, and never needs to be put where the node's token could reach it.

use passalong_accounts::MemberKey;
use passalong_protocol::attestation::Body;
use passalong_protocol::{Attestation, Keypair, PublicKey};

/// The key a write is signed with, borrowed for the request.
#[derive(Clone, Copy, Debug)]
pub enum Signer<'a> {
    /// A key of the node's own identities.
    Node(&'a Keypair),
    /// A hosted member's key, from her session.
    Member(&'a MemberKey),
}

impl Signer<'_> {
    /// Whose key it is: the author of what it signs.
    pub fn public(&self) -> PublicKey {
        match self {
            Signer::Node(k) => k.public(),
            Signer::Member(k) => k.public(),
        }
    }

    /// Signs `body` (the caller checks that the body's author is [`Signer::public`]).
    pub fn sign(&self, body: Body) -> Attestation {
        match self {
            Signer::Node(k) => Attestation::sign(body, k),
            Signer::Member(k) => k.sign_attestation(body),
        }
    }
}

impl<'a> From<&'a Keypair> for Signer<'a> {
    fn from(k: &'a Keypair) -> Self {
        Signer::Node(k)
    }
}

impl<'a> From<&'a MemberKey> for Signer<'a> {
    fn from(k: &'a MemberKey) -> Self {
        Signer::Member(k)
    }
}
