//! The nine kinds of attestation and their bodies. Each body names its author's key as its
//! first field; the envelope's signature is checked against it.
//!
//! Bodies hold no maps and no floats, so their postcard encoding is canonical. Times are
//! milliseconds since the Unix epoch (`_ms`), money is integer minor units (`_minor`).

use serde::{Deserialize, Serialize};

use crate::keys::{Id, PublicKey};
use crate::policy::Policy;

/// An ISO-4217-style currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Currency(pub [u8; 3]);

impl Currency {
    /// Parses `"EUR"`; anything but three upper-case ASCII letters is `None`.
    pub fn parse(s: &str) -> Option<Currency> {
        let b: [u8; 3] = s.as_bytes().try_into().ok()?;
        Currency(b).is_valid().then_some(Currency(b))
    }
    /// Three upper-case ASCII letters.
    pub fn is_valid(&self) -> bool {
        self.0.iter().all(u8::is_ascii_uppercase)
    }
    /// The code as text (`"???"` if the bytes are not a valid code).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl std::fmt::Debug for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 64-byte ed25519 signature carried inside a body (the member's consent in a Membership).
/// Encoded as 64 raw bytes, like the envelope's own signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sig64(pub [u8; 64]);

impl Serialize for Sig64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(64)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Sig64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Sig64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Sig64, A::Error> {
                let mut out = [0u8; 64];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Sig64(out))
            }
        }
        d.deserialize_tuple(64, V)
    }
}

impl std::fmt::Debug for Sig64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sig64({}…)", hex::encode(&self.0[..6]))
    }
}

/// A seller offers an item at a price, with a referral policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The seller (author).
    pub seller: PublicKey,
    /// What is sold.
    pub title: String,
    /// Optional hash of the item's content (a file, a description), for buyers to check.
    pub content_hash: Option<[u8; 32]>,
    /// Price in minor units, > 0.
    pub price_minor: u64,
    /// Currency of the price and of every receipt of this offer.
    pub currency: Currency,
    /// How referrers are paid.
    pub policy: Policy,
    /// Receipts before this time are invalid.
    pub valid_from_ms: u64,
    /// Receipts at or after this time are invalid; `None` means open-ended.
    pub valid_until_ms: Option<u64>,
    /// When the seller signed it.
    pub created_at_ms: u64,
    /// Where a friend buys: an `http://` or `https://` URL of at most
    /// [`crate::limits::MAX_CHECKOUT_URL_BYTES`] bytes (see
    /// [`crate::validation::check_checkout_url`]). An Offer with one is written as envelope
    /// version 2, one without as version 1 ([`crate::encoding::version_of`]).
    pub checkout_url: Option<String>,
}

/// "I pass offer O along", from the offer itself or from a parent referral.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    /// Who passes it along (author).
    pub referrer: PublicKey,
    /// The offer.
    pub offer: Id,
    /// The referral this one was received through; `None` when received from the offer itself.
    pub parent: Option<Id>,
    /// Addressed to one friend (only that key may refer onwards from this referral), or open.
    pub recipient: Option<PublicKey>,
    /// The community whose connector may earn the connector share.
    pub community: Option<Id>,
    /// When it was signed.
    pub created_at_ms: u64,
}

/// The seller confirms a paid order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The seller (author); must be the offer's seller.
    pub seller: PublicKey,
    /// The offer sold.
    pub offer: Id,
    /// The seller's order id: (seller, order) is a key.
    pub order: String,
    /// Amount paid, minor units of the offer's currency, > 0.
    pub amount_minor: u64,
    /// The buyer.
    pub buyer: PublicKey,
    /// The referral the sale came through, if any.
    pub via: Option<Id>,
    /// When the sale was confirmed.
    pub created_at_ms: u64,
}

/// A buyer's own statement of which referral an order came through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseClaim {
    /// The buyer (author).
    pub buyer: PublicKey,
    /// The offer bought.
    pub offer: Id,
    /// The seller's order id.
    pub order: String,
    /// The referral the buyer bought through, if any.
    pub via: Option<Id>,
    /// When it was signed.
    pub created_at_ms: u64,
}

/// The seller refunded a receipt: its shares are clawed back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The seller (author); must be the receipt's seller.
    pub seller: PublicKey,
    /// The refunded receipt.
    pub receipt: Id,
    /// When it was signed.
    pub created_at_ms: u64,
}

/// The seller paid a participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The seller (author).
    pub seller: PublicKey,
    /// Who was paid; never the seller.
    pub participant: PublicKey,
    /// Amount paid, minor units, > 0.
    pub amount_minor: u64,
    /// Currency paid.
    pub currency: Currency,
    /// Start of the period settled.
    pub period_start_ms: u64,
    /// End of the period settled; ≥ start.
    pub period_end_ms: u64,
    /// The seller's payment reference (bank transfer id, …).
    pub reference: String,
    /// The root of the seller's ledger this payment was computed against.
    pub ledger_root: [u8; 32],
    /// When it was signed.
    pub created_at_ms: u64,
}

/// A connector founds a community.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Community {
    /// The connector (author).
    pub connector: PublicKey,
    /// Display name.
    pub name: String,
    /// When it was signed.
    pub created_at_ms: u64,
}

/// A connector admits a member who asked to join: two signatures in one attestation.
/// The member signs [`Membership::request_message`]; the connector signs the envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The connector (author); must be the community's connector.
    pub connector: PublicKey,
    /// The community.
    pub community: Id,
    /// The member.
    pub member: PublicKey,
    /// The member's signature over the request message (strict ed25519).
    pub member_signature: Sig64,
    /// When the member asked; also the membership's start.
    pub created_at_ms: u64,
}

/// Ends a membership: referrals created at or after `ends_at_ms` pay no connector share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipEnd {
    /// The connector or the member (author).
    pub author: PublicKey,
    /// The membership ended.
    pub membership: Id,
    /// From when it no longer counts.
    pub ends_at_ms: u64,
    /// When it was signed.
    pub created_at_ms: u64,
}

/// The kind of an attestation: its byte on the wire and its domain-separation tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    /// [`Offer`]
    Offer = 1,
    /// [`Referral`]
    Referral = 2,
    /// [`Receipt`]
    Receipt = 3,
    /// [`PurchaseClaim`]
    PurchaseClaim = 4,
    /// [`Refund`]
    Refund = 5,
    /// [`Settlement`]
    Settlement = 6,
    /// [`Community`]
    Community = 7,
    /// [`Membership`]
    Membership = 8,
    /// [`MembershipEnd`]
    MembershipEnd = 9,
}

impl Kind {
    /// Every kind, in wire order.
    pub const ALL: [Kind; 9] = [
        Kind::Offer,
        Kind::Referral,
        Kind::Receipt,
        Kind::PurchaseClaim,
        Kind::Refund,
        Kind::Settlement,
        Kind::Community,
        Kind::Membership,
        Kind::MembershipEnd,
    ];

    /// The kind with wire byte `b`.
    pub fn from_byte(b: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(b).checked_sub(1)?).copied()
    }

    /// Lower-case name, as in tags, JSON and docs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Offer => "offer",
            Kind::Referral => "referral",
            Kind::Receipt => "receipt",
            Kind::PurchaseClaim => "purchase-claim",
            Kind::Refund => "refund",
            Kind::Settlement => "settlement",
            Kind::Community => "community",
            Kind::Membership => "membership",
            Kind::MembershipEnd => "membership-end",
        }
    }
}

/// The body of an attestation, one variant per kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// See [`Offer`].
    Offer(Offer),
    /// See [`Referral`].
    Referral(Referral),
    /// See [`Receipt`].
    Receipt(Receipt),
    /// See [`PurchaseClaim`].
    PurchaseClaim(PurchaseClaim),
    /// See [`Refund`].
    Refund(Refund),
    /// See [`Settlement`].
    Settlement(Settlement),
    /// See [`Community`].
    Community(Community),
    /// See [`Membership`].
    Membership(Membership),
    /// See [`MembershipEnd`].
    MembershipEnd(MembershipEnd),
}

impl Body {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Offer(_) => Kind::Offer,
            Body::Referral(_) => Kind::Referral,
            Body::Receipt(_) => Kind::Receipt,
            Body::PurchaseClaim(_) => Kind::PurchaseClaim,
            Body::Refund(_) => Kind::Refund,
            Body::Settlement(_) => Kind::Settlement,
            Body::Community(_) => Kind::Community,
            Body::Membership(_) => Kind::Membership,
            Body::MembershipEnd(_) => Kind::MembershipEnd,
        }
    }

    /// The key that must have signed the envelope.
    pub fn author(&self) -> PublicKey {
        match self {
            Body::Offer(b) => b.seller,
            Body::Referral(b) => b.referrer,
            Body::Receipt(b) => b.seller,
            Body::PurchaseClaim(b) => b.buyer,
            Body::Refund(b) => b.seller,
            Body::Settlement(b) => b.seller,
            Body::Community(b) => b.connector,
            Body::Membership(b) => b.connector,
            Body::MembershipEnd(b) => b.author,
        }
    }

    /// The market the body names itself: the seller of an offer, receipt, refund or
    /// settlement, the connector of a community or membership. A referral, a purchase claim
    /// and a membership's end name theirs only through the attestation they point to
    /// (`None`).
    pub fn market(&self) -> Option<PublicKey> {
        match self {
            Body::Offer(b) => Some(b.seller),
            Body::Receipt(b) => Some(b.seller),
            Body::Refund(b) => Some(b.seller),
            Body::Settlement(b) => Some(b.seller),
            Body::Community(b) => Some(b.connector),
            Body::Membership(b) => Some(b.connector),
            Body::Referral(_) | Body::PurchaseClaim(_) | Body::MembershipEnd(_) => None,
        }
    }

    /// When it was signed, by the author's clock.
    pub fn created_at_ms(&self) -> u64 {
        match self {
            Body::Offer(b) => b.created_at_ms,
            Body::Referral(b) => b.created_at_ms,
            Body::Receipt(b) => b.created_at_ms,
            Body::PurchaseClaim(b) => b.created_at_ms,
            Body::Refund(b) => b.created_at_ms,
            Body::Settlement(b) => b.created_at_ms,
            Body::Community(b) => b.created_at_ms,
            Body::Membership(b) => b.created_at_ms,
            Body::MembershipEnd(b) => b.created_at_ms,
        }
    }

    /// The attestations this one's validity depends on: until all are known and valid, it is
    /// pending. (A PurchaseClaim's `via` and a Referral's `community` are claims, not dependencies.)
    pub fn dependencies(&self) -> Vec<Id> {
        match self {
            Body::Offer(_) | Body::Settlement(_) | Body::Community(_) => vec![],
            Body::Referral(r) => std::iter::once(r.offer).chain(r.parent).collect(),
            Body::Receipt(r) => std::iter::once(r.offer).chain(r.via).collect(),
            Body::PurchaseClaim(c) => vec![c.offer],
            Body::Refund(r) => vec![r.receipt],
            Body::Membership(m) => vec![m.community],
            Body::MembershipEnd(e) => vec![e.membership],
        }
    }
}

impl Membership {
    /// A membership of `member` in `community`, with the member's signature over the request;
    /// the connector then signs the envelope.
    pub fn admit(
        connector: PublicKey,
        community: Id,
        member: &crate::keys::Keypair,
        created_at_ms: u64,
    ) -> Membership {
        let m = member.public();
        let sig = member.sign(&Membership::request_message(&community, &m, created_at_ms));
        Membership {
            connector,
            community,
            member: m,
            member_signature: Sig64(sig),
            created_at_ms,
        }
    }

    /// What the member signs to ask to join: the tag `passalong/v1/membership-request\0`, then
    /// the community id (32 bytes), the member key (32 bytes) and `created_at_ms` (8 bytes,
    /// big-endian).
    pub fn request_message(community: &Id, member: &PublicKey, created_at_ms: u64) -> Vec<u8> {
        let mut m = Vec::with_capacity(crate::encoding::MEMBERSHIP_REQUEST_TAG.len() + 72);
        m.extend_from_slice(crate::encoding::MEMBERSHIP_REQUEST_TAG);
        m.extend_from_slice(&community.0);
        m.extend_from_slice(&member.0);
        m.extend_from_slice(&created_at_ms.to_be_bytes());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_bytes_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_byte(k as u8), Some(k));
        }
        assert_eq!(Kind::from_byte(0), None);
        assert_eq!(Kind::from_byte(10), None);
    }

    #[test]
    fn currency_codes() {
        assert!(Currency::parse("EUR").is_some());
        assert!(Currency::parse("eur").is_none());
        assert!(Currency::parse("EURO").is_none());
        assert!(Currency::parse("E1R").is_none());
    }
}
