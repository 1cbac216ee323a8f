//! The keys a node signs with: the node's own. A community node's hosted members' keys are
//! never held here — each is unsealed into her own sign-in session and signs only through it
//! (`crates/accounts`). Writes act as the default identity unless the request names another
//! one this holds.

use std::collections::BTreeMap;

use passalong_protocol::{Keypair, PublicKey};

use crate::error::ApiError;

/// The node's identities.
#[derive(Debug, Clone)]
pub struct Identities {
    default: PublicKey,
    keys: BTreeMap<PublicKey, Keypair>,
}

impl Identities {
    /// A node with one identity.
    pub fn single(k: Keypair) -> Self {
        let default = k.public();
        Identities {
            default,
            keys: BTreeMap::from([(default, k)]),
        }
    }

    /// Adds another identity (a community member's key).
    pub fn add(&mut self, k: Keypair) {
        self.keys.insert(k.public(), k);
    }

    /// The default identity's public key.
    pub fn default_key(&self) -> PublicKey {
        self.default
    }

    /// Every identity held, sorted.
    pub fn all(&self) -> Vec<PublicKey> {
        self.keys.keys().copied().collect()
    }

    /// The key pair of `identity`, if the node holds it (a session's identity signs with it).
    pub fn keypair(&self, identity: &PublicKey) -> Result<&Keypair, ApiError> {
        self.keys
            .get(identity)
            .ok_or_else(|| ApiError::bad_request(format!("this node holds no identity {identity}")))
    }

    /// The key pair to sign with: `as_` if given (it must be held), else the default.
    pub fn signer(&self, as_: Option<&str>) -> Result<&Keypair, ApiError> {
        let pk = match as_ {
            None => self.default,
            Some(h) => parse_key(h, "as")?,
        };
        self.keys.get(&pk).ok_or_else(|| {
            ApiError::bad_request(format!("this node holds no identity {pk} (see GET /v1/id)"))
        })
    }
}

/// Parses a 64-hex-digit key, naming the field on error.
pub fn parse_key(h: &str, field: &str) -> Result<PublicKey, ApiError> {
    PublicKey::from_hex(h.trim()).map_err(|_| {
        ApiError::bad_request(format!(
            "{field}: expected a public key of 64 hex digits, got {h:?}"
        ))
    })
}

/// Parses a 64-hex-digit id, naming the field on error.
pub fn parse_id(h: &str, field: &str) -> Result<passalong_protocol::Id, ApiError> {
    passalong_protocol::Id::from_hex(h.trim()).map_err(|_| {
        ApiError::bad_request(format!(
            "{field}: expected an id of 64 hex digits, got {h:?}"
        ))
    })
}

/// Parses a currency code, naming the field on error.
pub fn parse_currency(c: &str) -> Result<passalong_protocol::Currency, ApiError> {
    passalong_protocol::Currency::parse(c).ok_or_else(|| {
        ApiError::bad_request(format!(
            "currency {c:?}: expected three upper-case letters like EUR"
        ))
    })
}
