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

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use thiserror::Error;

use crate::attestation::Body;
use crate::encoding::{Attestation, DecodeError};
use crate::keys::Id;
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
}
