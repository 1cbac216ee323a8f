//! The canonical envelope and ids.
//!
//! ```text
//! envelope  = version (1 byte, = 1) ‖ kind (1 byte, 1..=9) ‖ body ‖ signature (64 bytes)
//! body      = postcard encoding of the kind's struct (fields in declaration order)
//! signed    = tag(kind) ‖ body        tag = "passalong/v1/<kind name>" ‖ 0x00
//! id        = blake3(envelope)
//! ```
//!
//! Decoding is strict: the body must decode to exactly its bytes and re-encode to the same
//! bytes (postcard accepts some over-long varints; we do not), so one fact has one id.

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

use crate::attestation::{Body, Kind};
use crate::keys::{Id, Keypair};
use crate::limits::MAX_ENVELOPE_BYTES;

/// The only envelope version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Envelope bytes besides the body: version, kind, signature.
pub const ENVELOPE_OVERHEAD: usize = 2 + 64;
/// The tag the member signs in a Membership request.
pub const MEMBERSHIP_REQUEST_TAG: &[u8] = b"passalong/v1/membership-request\0";

/// The domain-separation tag of a kind: a signature for one kind can never pass as another's.
pub fn tag(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::Offer => b"passalong/v1/offer\0",
        Kind::Referral => b"passalong/v1/referral\0",
        Kind::Receipt => b"passalong/v1/receipt\0",
        Kind::PurchaseClaim => b"passalong/v1/purchase-claim\0",
        Kind::Refund => b"passalong/v1/refund\0",
        Kind::Settlement => b"passalong/v1/settlement\0",
        Kind::Community => b"passalong/v1/community\0",
        Kind::Membership => b"passalong/v1/membership\0",
        Kind::MembershipEnd => b"passalong/v1/membership-end\0",
    }
}

/// Why bytes are not a well-formed envelope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Shorter than the fixed parts.
    #[error("envelope too short: {len} bytes, at least {min} needed")]
    TooShort {
        /// Bytes given.
        len: usize,
        /// Smallest possible envelope.
        min: usize,
    },
    /// Longer than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope too large: {len} bytes, at most {max} allowed")]
    TooLarge {
        /// Bytes given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A version this implementation does not know.
    #[error("unsupported envelope version {0} (this node reads version 1)")]
    UnsupportedVersion(u8),
    /// A kind byte outside 1..=9.
    #[error("unknown attestation kind {0}")]
    UnknownKind(u8),
    /// The body does not decode as the kind's struct.
    #[error("malformed {kind} body: {reason}")]
    Malformed {
        /// The kind named by the envelope.
        kind: &'static str,
        /// What postcard reported.
        reason: String,
    },
    /// The body decodes but leaves bytes unread.
    #[error("{0} trailing bytes after the body")]
    TrailingBytes(usize),
    /// The body decodes but re-encodes to other bytes (over-long varint and the like).
    #[error("non-canonical encoding: the body does not re-encode to the same bytes")]
    NonCanonical,
}

/// A decoded attestation with its envelope bytes and id. Decoding does not check the
/// signature or the limits: [`crate::validation::check`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// blake3 of `bytes`.
    pub id: Id,
    /// The body.
    pub body: Body,
    /// The envelope's signature.
    pub signature: [u8; 64],
    /// The whole envelope.
    pub bytes: Vec<u8>,
}

fn to_postcard<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising into a Vec only fails on types postcard cannot express (maps of unknown
    // length and the like); our bodies have none, so this is a programming error.
    postcard::to_allocvec(v).expect("postcard can encode every body type")
}

/// The canonical body bytes (postcard of the kind's struct, no kind byte).
pub fn encode_body(body: &Body) -> Vec<u8> {
    match body {
        Body::Offer(b) => to_postcard(b),
        Body::Referral(b) => to_postcard(b),
        Body::Receipt(b) => to_postcard(b),
        Body::PurchaseClaim(b) => to_postcard(b),
        Body::Refund(b) => to_postcard(b),
        Body::Settlement(b) => to_postcard(b),
        Body::Community(b) => to_postcard(b),
        Body::Membership(b) => to_postcard(b),
        Body::MembershipEnd(b) => to_postcard(b),
    }
}

fn decode_exact<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, DecodeError> {
    let (v, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| DecodeError::Malformed {
        kind: kind.name(),
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(v)
}

fn decode_body(kind: Kind, bytes: &[u8]) -> Result<Body, DecodeError> {
    Ok(match kind {
        Kind::Offer => Body::Offer(decode_exact(kind, bytes)?),
        Kind::Referral => Body::Referral(decode_exact(kind, bytes)?),
        Kind::Receipt => Body::Receipt(decode_exact(kind, bytes)?),
        Kind::PurchaseClaim => Body::PurchaseClaim(decode_exact(kind, bytes)?),
        Kind::Refund => Body::Refund(decode_exact(kind, bytes)?),
        Kind::Settlement => Body::Settlement(decode_exact(kind, bytes)?),
        Kind::Community => Body::Community(decode_exact(kind, bytes)?),
        Kind::Membership => Body::Membership(decode_exact(kind, bytes)?),
        Kind::MembershipEnd => Body::MembershipEnd(decode_exact(kind, bytes)?),
    })
}

/// The message the author signs: tag ‖ body.
pub fn signed_message(kind: Kind, body_bytes: &[u8]) -> Vec<u8> {
    let t = tag(kind);
    let mut m = Vec::with_capacity(t.len() + body_bytes.len());
    m.extend_from_slice(t);
    m.extend_from_slice(body_bytes);
    m
}

impl Attestation {
    /// Decodes an envelope strictly (see the module docs). Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Attestation, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        if bytes.len() < ENVELOPE_OVERHEAD + 1 {
            return Err(DecodeError::TooShort {
                len: bytes.len(),
                min: ENVELOPE_OVERHEAD + 1,
            });
        }
        if bytes[0] != VERSION {
            return Err(DecodeError::UnsupportedVersion(bytes[0]));
        }
        let kind = Kind::from_byte(bytes[1]).ok_or(DecodeError::UnknownKind(bytes[1]))?;
        let (body_bytes, sig) = bytes[2..].split_at(bytes.len() - ENVELOPE_OVERHEAD);
        let body = decode_body(kind, body_bytes)?;
        if encode_body(&body) != body_bytes {
            return Err(DecodeError::NonCanonical);
        }
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig);
        Ok(Attestation {
            id: Id::of_envelope(bytes),
            body,
            signature,
            bytes: bytes.to_vec(),
        })
    }

    /// Builds the envelope for `body` with a given signature (valid or not: test vectors and
    /// the fuzzer need both).
    pub fn assemble(body: Body, signature: [u8; 64]) -> Attestation {
        let body_bytes = encode_body(&body);
        let mut bytes = Vec::with_capacity(body_bytes.len() + ENVELOPE_OVERHEAD);
        bytes.push(VERSION);
        bytes.push(body.kind() as u8);
        bytes.extend_from_slice(&body_bytes);
        bytes.extend_from_slice(&signature);
        Attestation {
            id: Id::of_envelope(&bytes),
            body,
            signature,
            bytes,
        }
    }

    /// Signs `body` with `keys`. It is the caller's job that `keys` is the body's author and
    /// the body within limits; [`crate::validation::check`] tells.
    pub fn sign(body: Body, keys: &Keypair) -> Attestation {
        let signature = keys.sign(&signed_message(body.kind(), &encode_body(&body)));
        Attestation::assemble(body, signature)
    }

    /// The bytes the signature covers.
    pub fn signed_message(&self) -> Vec<u8> {
        let body = &self.bytes[2..self.bytes.len() - 64];
        signed_message(self.body.kind(), body)
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::Refund;
    use crate::keys::PublicKey;

    fn refund() -> Attestation {
        let k = Keypair::from_seed([7; 32]);
        Attestation::sign(
            Body::Refund(Refund {
                seller: k.public(),
                receipt: Id([1; 32]),
                created_at_ms: 300,
            }),
            &k,
        )
    }

    #[test]
    fn round_trips_and_id_is_blake3_of_envelope() {
        let a = refund();
        let d = Attestation::decode(&a.bytes).unwrap();
        assert_eq!(d, a);
        assert_eq!(d.id.0, *blake3::hash(&a.bytes).as_bytes());
    }

    #[test]
    fn rejects_overlong_varint() {
        let a = refund();
        // created_at_ms = 300 is the varint ac 02; write it as ac 82 00 instead.
        let mut b = a.bytes.clone();
        let pos = b.len() - 64 - 2;
        assert_eq!(&b[pos..pos + 2], &[0xac, 0x02]);
        b.splice(pos..pos + 2, [0xac, 0x82, 0x00]);
        assert!(matches!(
            Attestation::decode(&b),
            Err(DecodeError::NonCanonical) | Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn rejects_bad_framing() {
        let a = refund();
        assert!(matches!(
            Attestation::decode(&[]),
            Err(DecodeError::TooShort { .. })
        ));
        let mut b = a.bytes.clone();
        b[0] = 2;
        assert_eq!(
            Attestation::decode(&b),
            Err(DecodeError::UnsupportedVersion(2))
        );
        let mut b = a.bytes.clone();
        b[1] = 42;
        assert_eq!(Attestation::decode(&b), Err(DecodeError::UnknownKind(42)));
        let mut b = a.bytes.clone();
        b.insert(40, 0);
        assert!(Attestation::decode(&b).is_err());
        assert!(matches!(
            Attestation::decode(&vec![1u8; MAX_ENVELOPE_BYTES + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
        let _ = PublicKey([0; 32]);
    }
}
