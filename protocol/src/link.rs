//! Share links: a plain-text token that carries an offer and every referral of a chain, so a
//! friend whose node has never seen them can import them (`refer LINK`), and a seller's
//! checkout can pass it to `receipt --via LINK`.
//!
//! ```text
//! token   = "pl1." base64url-without-padding(payload)
//! payload = count (1 byte, 1..=65) ‖ count × (length (2 bytes BE) ‖ envelope) ‖ check (4 bytes)
//! check   = first 4 bytes of blake3(everything before it)
//! ```
//!
//! Envelopes come root first: the offer, then each referral down to the one being shared.
//! The same token may be embedded in a URL (`http://host/l/<token>`); [`ShareLink::parse`]
//! accepts both. A damaged or truncated link fails its check and says so.
//!
//! A full link grows by ~250 characters per hop, too dense for a QR code after a few hops. A
//! [`ShortLink`] names only the market and the newest attestation of the chain, so its size
//! does not depend on the chain; a node that holds the chain (the one that issued it, or any
//! node following the market) resolves it:
//!
//! ```text
//! short   = "pl1s." base64url-without-padding(market (32) ‖ id (32) ‖ check (4))
//! check   = first 4 bytes of blake3(market ‖ id)
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use thiserror::Error;

use crate::attestation::Body;
use crate::encoding::{Attestation, DecodeError};
use crate::keys::{Id, PublicKey};
use crate::limits::{MAX_CHAIN_HOPS, MAX_ENVELOPE_BYTES};

/// The token prefix: format version 1.
pub const PREFIX: &str = "pl1.";
/// Most envelopes in a link: the offer and a full 64-hop chain.
pub const MAX_ENVELOPES: usize = 1 + MAX_CHAIN_HOPS as usize;
/// Longest token accepted, in characters (65 full envelopes, base64).
pub const MAX_TOKEN_CHARS: usize =
    PREFIX.len() + (MAX_ENVELOPES * (MAX_ENVELOPE_BYTES + 2) + 5) * 4 / 3 + 4;

/// Why a share link cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    /// No `pl1.` token in the text.
    #[error("not a passalong share link (expected a token starting with \"pl1.\" or a URL containing one)")]
    NotALink,
    /// A token of another version.
    #[error("share link version {0:?} is not supported by this node (it reads pl1)")]
    UnsupportedVersion(String),
    /// Longer than [`MAX_TOKEN_CHARS`].
    #[error("share link too long: {len} characters, at most {max}")]
    TooLong {
        /// Characters given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not base64url, or the check bytes do not match: truncated or altered when copied.
    #[error("share link is damaged or truncated: copy the whole link again")]
    Damaged,
    /// The payload's framing is wrong.
    #[error("share link is malformed: {0}")]
    Malformed(&'static str),
    /// An envelope inside does not decode.
    #[error("share link carries a malformed attestation: {0}")]
    Envelope(DecodeError),
    /// The envelopes are not an offer followed by a chain of its referrals.
    #[error("share link does not carry an offer and its referral chain: {0}")]
    NotAChain(&'static str),
}

/// A decoded share link: the offer, then the chain root first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLink {
    /// Offer first, then referrals from the root down.
    pub attestations: Vec<Attestation>,
}

impl ShareLink {
    /// A link for `attestations` (offer first, then the chain root first).
    pub fn new(attestations: Vec<Attestation>) -> Result<ShareLink, LinkError> {
        let l = ShareLink { attestations };
        l.check_chain()?;
        Ok(l)
    }

    /// The offer's id.
    pub fn offer(&self) -> Id {
        self.attestations[0].id
    }

    /// The referral being shared (the last one), or `None` for a bare offer link.
    pub fn referral(&self) -> Option<Id> {
        (self.attestations.len() > 1).then(|| self.attestations[self.attestations.len() - 1].id)
    }

    /// The text token.
    pub fn token(&self) -> String {
        let mut payload = vec![self.attestations.len() as u8];
        for a in &self.attestations {
            payload.extend_from_slice(&(a.bytes.len() as u16).to_be_bytes());
            payload.extend_from_slice(&a.bytes);
        }
        let check = blake3::hash(&payload);
        payload.extend_from_slice(&check.as_bytes()[..4]);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(payload))
    }

    /// The token inside a URL of a node's dashboard.
    pub fn url(&self, base: &str) -> String {
        format!("{}/l/{}", base.trim_end_matches('/'), self.token())
    }

    /// Reads a token, or a URL or text containing one.
    pub fn parse(text: &str) -> Result<ShareLink, LinkError> {
        let text = text.trim();
        let token_at = |start: usize| -> &str {
            text[start..]
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
                .next()
                .unwrap_or("")
        };
        let Some(start) = text.find(PREFIX) else {
            // Another version ("pl2.…") is named as such; anything else is not a link.
            let other = text
                .match_indices("pl")
                .map(|(i, _)| token_at(i))
                .find(|t| {
                    let v = t.split('.').next().unwrap_or("");
                    t.contains('.') && v.len() > 2 && v[2..].bytes().all(|b| b.is_ascii_digit())
                });
            return Err(match other {
                Some(t) => LinkError::UnsupportedVersion(t.split('.').next().unwrap_or("").into()),
                None => LinkError::NotALink,
            });
        };
        let token = token_at(start);
        let body = &token[PREFIX.len()..];
        if token.len() > MAX_TOKEN_CHARS {
            return Err(LinkError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_CHARS,
            });
        }
        let payload = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| LinkError::Damaged)?;
        if payload.len() < 5 {
            return Err(LinkError::Damaged);
        }
        let (data, check) = payload.split_at(payload.len() - 4);
        if &blake3::hash(data).as_bytes()[..4] != check {
            return Err(LinkError::Damaged);
        }
        let count = usize::from(data[0]);
        if count == 0 || count > MAX_ENVELOPES {
            return Err(LinkError::Malformed("envelope count out of range"));
        }
        let mut rest = &data[1..];
        let mut attestations = Vec::with_capacity(count);
        for _ in 0..count {
            if rest.len() < 2 {
                return Err(LinkError::Malformed("ends inside a length"));
            }
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            rest = &rest[2..];
            if rest.len() < len {
                return Err(LinkError::Malformed("ends inside an envelope"));
            }
            attestations.push(Attestation::decode(&rest[..len]).map_err(LinkError::Envelope)?);
            rest = &rest[len..];
        }
        if !rest.is_empty() {
            return Err(LinkError::Malformed("bytes after the last envelope"));
        }
        ShareLink::new(attestations)
    }

    /// The envelopes must be an offer, then referrals of it, each the parent of the next.
    fn check_chain(&self) -> Result<(), LinkError> {
        let Some(first) = self.attestations.first() else {
            return Err(LinkError::NotAChain("empty"));
        };
        if self.attestations.len() > MAX_ENVELOPES {
            return Err(LinkError::NotAChain("longer than 64 hops"));
        }
        if !matches!(first.body, Body::Offer(_)) {
            return Err(LinkError::NotAChain(
                "the first attestation is not an offer",
            ));
        }
        let mut parent: Option<Id> = None;
        for a in &self.attestations[1..] {
            let Body::Referral(r) = &a.body else {
                return Err(LinkError::NotAChain(
                    "an attestation after the offer is not a referral",
                ));
            };
            if r.offer != first.id || r.parent != parent {
                return Err(LinkError::NotAChain(
                    "the referrals do not form one chain from the offer",
                ));
            }
            parent = Some(a.id);
        }
        Ok(())
    }
}

/// The short token prefix.
pub const SHORT_PREFIX: &str = "pl1s.";

/// A link by reference: the market (the offer's seller) and the id of the chain's newest
/// attestation (the referral being shared, or the offer itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortLink {
    /// The seller whose market holds the chain.
    pub market: PublicKey,
    /// The referral being shared, or the offer for a bare offer link.
    pub id: Id,
}

impl ShortLink {
    /// The short form of a full link.
    pub fn of(link: &ShareLink) -> ShortLink {
        let market = match &link.attestations[0].body {
            Body::Offer(o) => o.seller,
            // `ShareLink::new` only makes links that start with an offer.
            _ => PublicKey([0; 32]),
        };
        ShortLink {
            market,
            id: link.referral().unwrap_or_else(|| link.offer()),
        }
    }

    fn check(market: &PublicKey, id: &Id) -> [u8; 4] {
        let mut h = blake3::Hasher::new();
        h.update(&market.0);
        h.update(&id.0);
        let mut c = [0u8; 4];
        c.copy_from_slice(&h.finalize().as_bytes()[..4]);
        c
    }

    /// The text token.
    pub fn token(&self) -> String {
        let mut payload = Vec::with_capacity(68);
        payload.extend_from_slice(&self.market.0);
        payload.extend_from_slice(&self.id.0);
        payload.extend_from_slice(&Self::check(&self.market, &self.id));
        format!("{SHORT_PREFIX}{}", URL_SAFE_NO_PAD.encode(payload))
    }

    /// The token inside a URL of a node's dashboard.
    pub fn url(&self, base: &str) -> String {
        format!("{}/l/{}", base.trim_end_matches('/'), self.token())
    }

    /// Reads a short token, or a URL or text containing one.
    pub fn parse(text: &str) -> Result<ShortLink, LinkError> {
        let start = text.find(SHORT_PREFIX).ok_or(LinkError::NotALink)?;
        let token: &str = text[start + SHORT_PREFIX.len()..]
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .next()
            .unwrap_or("");
        let payload = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| LinkError::Damaged)?;
        if payload.len() != 68 {
            return Err(LinkError::Damaged);
        }
        let mut market = [0u8; 32];
        let mut id = [0u8; 32];
        market.copy_from_slice(&payload[..32]);
        id.copy_from_slice(&payload[32..64]);
        let (market, id) = (PublicKey(market), Id(id));
        if payload[64..] != Self::check(&market, &id) {
            return Err(LinkError::Damaged);
        }
        Ok(ShortLink { market, id })
    }
}

/// A link of either form, as a user pastes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyLink {
    /// It carries its chain.
    Full(ShareLink),
    /// It names the chain's newest attestation.
    Short(ShortLink),
}

impl AnyLink {
    /// Reads a full or a short link (or a URL containing one).
    pub fn parse(text: &str) -> Result<AnyLink, LinkError> {
        if text.contains(SHORT_PREFIX) {
            return ShortLink::parse(text).map(AnyLink::Short);
        }
        ShareLink::parse(text).map(AnyLink::Full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::{Currency, Offer, Referral};
    use crate::keys::Keypair;
    use crate::policy::{Policy, Rule};

    fn chain() -> Vec<Attestation> {
        let s = Keypair::from_seed([1; 32]);
        let o = Attestation::sign(
            Body::Offer(Offer {
                seller: s.public(),
                title: "t".into(),
                content_hash: None,
                price_minor: 1,
                currency: Currency(*b"EUR"),
                policy: Policy {
                    pool_bps: 100,
                    connector_bps: 0,
                    rule: Rule::Direct,
                    max_depth: 3,
                    window_ms: 1,
                    require_purchase: false,
                },
                valid_from_ms: 0,
                valid_until_ms: None,
                created_at_ms: 1,
                checkout_url: None,
            }),
            &s,
        );
        let mut out = vec![o.clone()];
        let mut parent = None;
        for i in 2..5u8 {
            let k = Keypair::from_seed([i; 32]);
            let r = Attestation::sign(
                Body::Referral(Referral {
                    referrer: k.public(),
                    offer: o.id,
                    parent,
                    recipient: None,
                    community: None,
                    created_at_ms: u64::from(i),
                }),
                &k,
            );
            parent = Some(r.id);
            out.push(r);
        }
        out
    }

    #[test]
    fn round_trips_as_token_and_url() {
        let l = ShareLink::new(chain()).unwrap();
        assert_eq!(ShareLink::parse(&l.token()).unwrap(), l);
        assert_eq!(
            ShareLink::parse(&l.url("http://127.0.0.1:7423/")).unwrap(),
            l
        );
        assert_eq!(
            ShareLink::parse(&format!("  see {} !", l.token())).unwrap(),
            l
        );
        assert_eq!(l.referral(), Some(l.attestations[3].id));
    }

    #[test]
    fn damaged_links_say_so() {
        let t = ShareLink::new(chain()).unwrap().token();
        assert_eq!(
            ShareLink::parse(&t[..t.len() - 10]),
            Err(LinkError::Damaged)
        );
        let mut flipped = t.clone().into_bytes();
        flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            ShareLink::parse(&String::from_utf8(flipped).unwrap()),
            Err(LinkError::Damaged)
        );
        assert_eq!(ShareLink::parse("hello"), Err(LinkError::NotALink));
        assert!(matches!(
            ShareLink::parse("pl2.AAAA"),
            Err(LinkError::UnsupportedVersion(_))
        ));
        assert_eq!(ShareLink::parse("pl1.%%%"), Err(LinkError::Damaged));
        assert_eq!(ShareLink::parse("pl1.!!!!"), Err(LinkError::Damaged));
        let long = format!("pl1.{}", "A".repeat(MAX_TOKEN_CHARS));
        assert!(matches!(
            ShareLink::parse(&long),
            Err(LinkError::TooLong { .. })
        ));
    }

    #[test]
    fn a_broken_chain_is_refused() {
        let mut c = chain();
        c.remove(2);
        assert!(matches!(ShareLink::new(c), Err(LinkError::NotAChain(_))));
        let mut c = chain();
        c.swap(0, 1);
        assert!(matches!(ShareLink::new(c), Err(LinkError::NotAChain(_))));
    }

    #[test]
    fn short_links_round_trip_and_catch_damage() {
        let link = ShareLink::new(chain()).unwrap();
        let short = ShortLink::of(&link);
        assert_eq!(short.id, link.referral().unwrap());
        let Body::Offer(o) = &link.attestations[0].body else {
            panic!("offer first")
        };
        assert_eq!(short.market, o.seller);
        let t = short.token();
        assert!(t.starts_with(SHORT_PREFIX));
        assert_eq!(t.len(), SHORT_PREFIX.len() + 91, "constant size: {t}");
        assert_eq!(ShortLink::parse(&t), Ok(short));
        assert_eq!(ShortLink::parse(&short.url("http://h:1/")), Ok(short));
        assert_eq!(AnyLink::parse(&t), Ok(AnyLink::Short(short)));
        assert_eq!(
            AnyLink::parse(&link.token()),
            Ok(AnyLink::Full(link.clone()))
        );
        // One character changed, or cut short: damaged, never another link.
        let mut bad = t.clone().into_bytes();
        let last = bad.len() - 3;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            ShortLink::parse(std::str::from_utf8(&bad).unwrap()),
            Err(LinkError::Damaged)
        );
        assert_eq!(ShortLink::parse(&t[..t.len() - 2]), Err(LinkError::Damaged));
        assert_eq!(ShortLink::parse("pl1s."), Err(LinkError::Damaged));
        assert_eq!(ShortLink::parse("nothing"), Err(LinkError::NotALink));
        // A bare offer link names the offer.
        let offer_only = ShareLink::new(chain()[..1].to_vec()).unwrap();
        assert_eq!(ShortLink::of(&offer_only).id, offer_only.offer());
    }
}
