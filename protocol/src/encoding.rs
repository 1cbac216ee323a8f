//! The canonical envelope and ids.
//!
//! ```text
//! envelope  = version (1 byte, 1 or 2) ‖ kind (1 byte, 1..=9) ‖ body ‖ signature (64 bytes)
//! body      = postcard encoding of the kind's struct (fields in declaration order)
//! signed    = tag(version, kind) ‖ body   tag = "passalong/v1/<kind name>" ‖ 0x00,
//!                                         or "passalong/v2/offer" ‖ 0x00 for a v2 Offer
//! id        = blake3(envelope)
//! ```
//!
//! Every body has one version ([`version_of`]): an Offer with a `checkout_url` is written as
//! version 2 (the version-1 Offer body followed by the URL as a postcard `Option<String>`);
//! everything else, an Offer without a URL included, as version 1, byte for byte as before
//! version 2 existed. An envelope whose version is not its body's is non-canonical.
//!
//! Decoding is strict: the body must decode to exactly its bytes and re-encode to the same
//! bytes (postcard accepts some over-long varints; we do not), so one fact has one id.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

use crate::attestation::{Body, Currency, Kind, Offer};
use crate::keys::{Id, Keypair, PublicKey};
use crate::limits::MAX_ENVELOPE_BYTES;
use crate::policy::Policy;

/// Envelope version 1: every kind, and an Offer without a `checkout_url`.
pub const VERSION: u8 = 1;
/// Envelope version 2: an Offer with a `checkout_url`, and nothing else.
pub const VERSION_2: u8 = 2;
/// The newest envelope version this crate reads and writes.
pub const LATEST_VERSION: u8 = VERSION_2;
/// Envelope bytes besides the body: version, kind, signature.
pub const ENVELOPE_OVERHEAD: usize = 2 + 64;
/// The tag the member signs in a Membership request.
pub const MEMBERSHIP_REQUEST_TAG: &[u8] = b"passalong/v1/membership-request\0";

/// The domain-separation tag of a version-2 Offer. A version-1 Offer's signature never passes
/// as a version-2 one, nor the other way round.
pub const OFFER_V2_TAG: &[u8] = b"passalong/v2/offer\0";

/// The version a body is written in: 2 for an Offer with a `checkout_url`, else 1. Only this
/// version is canonical, so a fact has one envelope and one id.
pub fn version_of(body: &Body) -> u8 {
    match body {
        Body::Offer(o) if o.checkout_url.is_some() => VERSION_2,
        _ => VERSION,
    }
}

/// The domain-separation tag of a kind in envelope version `version`: the version-1 tag of the
/// kind, except [`OFFER_V2_TAG`] for a version-2 Offer.
pub fn versioned_tag(version: u8, kind: Kind) -> &'static [u8] {
    if version == VERSION_2 && kind == Kind::Offer {
        OFFER_V2_TAG
    } else {
        tag(kind)
    }
}

/// The version-1 domain-separation tag of a kind: a signature for one kind can never pass as
/// another's.
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
    #[error("unsupported envelope version {0} (this node reads versions 1 and 2)")]
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
    /// The body decodes but re-encodes to other bytes (over-long varint and the like), or the
    /// envelope's version is not the body's ([`version_of`]).
    #[error("non-canonical encoding: the body does not re-encode to the same bytes and version")]
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

/// An Offer as version 1 writes it: every field but `checkout_url` (borrowed, for encoding).
#[derive(Serialize)]
struct OfferV1Ref<'a> {
    seller: &'a PublicKey,
    title: &'a str,
    content_hash: &'a Option<[u8; 32]>,
    price_minor: u64,
    currency: &'a Currency,
    policy: &'a Policy,
    valid_from_ms: u64,
    valid_until_ms: Option<u64>,
    created_at_ms: u64,
}

/// An Offer as version 1 reads it.
#[derive(Deserialize)]
struct OfferV1 {
    seller: PublicKey,
    title: String,
    content_hash: Option<[u8; 32]>,
    price_minor: u64,
    currency: Currency,
    policy: Policy,
    valid_from_ms: u64,
    valid_until_ms: Option<u64>,
    created_at_ms: u64,
}

impl From<OfferV1> for Offer {
    fn from(o: OfferV1) -> Offer {
        Offer {
            seller: o.seller,
            title: o.title,
            content_hash: o.content_hash,
            price_minor: o.price_minor,
            currency: o.currency,
            policy: o.policy,
            valid_from_ms: o.valid_from_ms,
            valid_until_ms: o.valid_until_ms,
            created_at_ms: o.created_at_ms,
            checkout_url: None,
        }
    }
}

fn offer_v1_bytes(o: &Offer) -> Vec<u8> {
    to_postcard(&OfferV1Ref {
        seller: &o.seller,
        title: &o.title,
        content_hash: &o.content_hash,
        price_minor: o.price_minor,
        currency: &o.currency,
        policy: &o.policy,
        valid_from_ms: o.valid_from_ms,
        valid_until_ms: o.valid_until_ms,
        created_at_ms: o.created_at_ms,
    })
}

/// The canonical body bytes (postcard of the kind's struct, no kind byte), in the body's
/// version ([`version_of`]): a version-2 Offer is the postcard of the whole [`Offer`], a
/// version-1 Offer that of every field but `checkout_url`.
pub fn encode_body(body: &Body) -> Vec<u8> {
    match body {
        Body::Offer(b) if b.checkout_url.is_some() => to_postcard(b),
        Body::Offer(b) => offer_v1_bytes(b),
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

fn decode_body(version: u8, kind: Kind, bytes: &[u8]) -> Result<Body, DecodeError> {
    Ok(match kind {
        Kind::Offer if version == VERSION_2 => Body::Offer(decode_exact(kind, bytes)?),
        Kind::Offer => Body::Offer(decode_exact::<OfferV1>(kind, bytes)?.into()),
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

/// The body of an envelope that already passed [`Attestation::decode`] (a store reading back
/// what it accepted): the body is parsed in the envelope's version, without the canonical
/// re-encoding. `None` if the bytes are not an envelope of a known version and kind.
pub fn body_of_checked(envelope: &[u8]) -> Option<Body> {
    fn d<T: DeserializeOwned>(b: &[u8]) -> Option<T> {
        postcard::from_bytes(b).ok()
    }
    if envelope.len() <= ENVELOPE_OVERHEAD {
        return None;
    }
    let b = &envelope[2..envelope.len() - 64];
    Some(match Kind::from_byte(envelope[1])? {
        Kind::Offer => match envelope[0] {
            VERSION => Body::Offer(d::<OfferV1>(b)?.into()),
            VERSION_2 => Body::Offer(d(b)?),
            _ => return None,
        },
        Kind::Referral => Body::Referral(d(b)?),
        Kind::Receipt => Body::Receipt(d(b)?),
        Kind::PurchaseClaim => Body::PurchaseClaim(d(b)?),
        Kind::Refund => Body::Refund(d(b)?),
        Kind::Settlement => Body::Settlement(d(b)?),
        Kind::Community => Body::Community(d(b)?),
        Kind::Membership => Body::Membership(d(b)?),
        Kind::MembershipEnd => Body::MembershipEnd(d(b)?),
    })
}

/// The message the author signs: the tag of the version and kind ([`versioned_tag`]) ‖ body.
pub fn signed_message(version: u8, kind: Kind, body_bytes: &[u8]) -> Vec<u8> {
    let t = versioned_tag(version, kind);
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
        let version = bytes[0];
        if version != VERSION && version != VERSION_2 {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = Kind::from_byte(bytes[1]).ok_or(DecodeError::UnknownKind(bytes[1]))?;
        let (body_bytes, sig) = bytes[2..].split_at(bytes.len() - ENVELOPE_OVERHEAD);
        let body = decode_body(version, kind, body_bytes)?;
        if version_of(&body) != version || encode_body(&body) != body_bytes {
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
        bytes.push(version_of(&body));
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
        let signature = keys.sign(&signed_message(
            version_of(&body),
            body.kind(),
            &encode_body(&body),
        ));
        Attestation::assemble(body, signature)
    }

    /// The bytes the signature covers: the tag of the envelope's version and kind, then the
    /// body bytes.
    pub fn signed_message(&self) -> Vec<u8> {
        let body = &self.bytes[2..self.bytes.len() - 64];
        signed_message(self.bytes[0], self.body.kind(), body)
    }

    /// The envelope's version (1, or 2 for an Offer with a `checkout_url`).
    pub fn version(&self) -> u8 {
        self.bytes[0]
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
    use crate::policy::Rule;

    fn offer(checkout_url: Option<&str>) -> Attestation {
        let k = Keypair::from_seed([1; 32]);
        Attestation::sign(
            Body::Offer(Offer {
                seller: k.public(),
                title: "A record".into(),
                content_hash: None,
                price_minor: 2_000,
                currency: Currency(*b"EUR"),
                policy: Policy {
                    pool_bps: 1_000,
                    connector_bps: 0,
                    rule: Rule::Geometric { r_bps: 5_000 },
                    max_depth: 16,
                    window_ms: 2_592_000_000,
                    require_purchase: false,
                },
                valid_from_ms: 0,
                valid_until_ms: None,
                created_at_ms: 1_767_225_600_000,
                checkout_url: checkout_url.map(String::from),
            }),
            &k,
        )
    }

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

    /// An Offer without a URL is the version-1 envelope of docs/protocol.md's worked example,
    /// byte for byte; with one it is version 2: the same body, then the URL.
    #[test]
    fn offer_versions() {
        let v1 = offer(None);
        assert_eq!(v1.version(), VERSION);
        assert_eq!(v1.bytes.len(), 134);
        assert_eq!(
            v1.id.to_hex(),
            "6c322ad7a58a8d0f3761a88c117fa8fe846810a652b2248dcc9ce43943e836ca"
        );
        assert!(v1.signed_message().starts_with(b"passalong/v1/offer\0"));
        assert_eq!(Attestation::decode(&v1.bytes).as_ref(), Ok(&v1));

        let url = "https://shop.example/a-record";
        let v2 = offer(Some(url));
        assert_eq!(v2.version(), VERSION_2);
        let (b1, b2) = (encode_body(&v1.body), encode_body(&v2.body));
        assert_eq!(&b2[..b1.len()], &b1[..]);
        assert_eq!(b2[b1.len()], 1, "Some");
        assert_eq!(usize::from(b2[b1.len() + 1]), url.len());
        assert_eq!(&b2[b1.len() + 2..], url.as_bytes());
        assert_eq!(&v2.bytes[..2], &[2, 1]);
        assert!(v2.signed_message().starts_with(OFFER_V2_TAG));
        assert_eq!(Attestation::decode(&v2.bytes).as_ref(), Ok(&v2));
        assert_eq!(body_of_checked(&v2.bytes), Some(v2.body.clone()));
        assert_eq!(body_of_checked(&v1.bytes), Some(v1.body.clone()));
    }

    #[test]
    fn offer_in_the_wrong_version_is_rejected() {
        // A v1 offer relabelled v2: the body ends where v2 expects the URL's option tag.
        let mut b = offer(None).bytes;
        b[0] = VERSION_2;
        assert!(matches!(
            Attestation::decode(&b),
            Err(DecodeError::Malformed { .. })
        ));
        // A v2 body with checkout_url None: decodes, but None is written as version 1.
        let mut b = offer(None).bytes;
        b[0] = VERSION_2;
        b.insert(b.len() - 64, 0);
        assert_eq!(Attestation::decode(&b), Err(DecodeError::NonCanonical));
        // A v2 offer relabelled v1: the URL is left over.
        let mut b = offer(Some("http://a")).bytes;
        b[0] = VERSION;
        assert!(matches!(
            Attestation::decode(&b),
            Err(DecodeError::TrailingBytes(_))
        ));
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
        b[0] = 3;
        assert_eq!(
            Attestation::decode(&b),
            Err(DecodeError::UnsupportedVersion(3))
        );
        b[0] = 0;
        assert_eq!(
            Attestation::decode(&b),
            Err(DecodeError::UnsupportedVersion(0))
        );
        // Version 2 is only for Offers with a checkout URL.
        b[0] = VERSION_2;
        assert_eq!(Attestation::decode(&b), Err(DecodeError::NonCanonical));
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
