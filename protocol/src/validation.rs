//! Validation in two stages.
//!
//! 1. [`check`]: stateless — decode strictly, check every limit, verify the signature(s).
//!    Its answer depends on the bytes alone.
//! 2. [`contextual`]: against what a node already holds ([`Known`]) — the chain rule, who may
//!    sign what, references of the right kind. Its answer depends on the bytes and the
//!    attestations they reference, which are themselves fixed by their ids.
//!
//! Together they give one of four [`Outcome`]s. Neither stage reads a clock: the caller passes
//! `now_ms`, and it only decides *when* something counts ([`Outcome::Held`]), never *whether*.

use thiserror::Error;

use crate::attestation::{Body, Kind};
use crate::encoding::{Attestation, DecodeError};
use crate::keys::{Id, PublicKey};
use crate::limits::*;
use crate::signature::{self, SignatureError};

/// What a node makes of an attestation: the one outcome type of every crate. `R` says why an
/// invalid one never counts: the [`InvalidReason`] itself when it was just checked, or a
/// [`Rejection`] (its code and text) as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<R = InvalidReason> {
    /// It counts.
    Valid,
    /// It references attestations this node does not hold yet (fetch them from the peer).
    Pending {
        /// The ids it waits for, sorted.
        missing: Vec<Id>,
    },
    /// Signed "in the future" by more than the allowed skew: it counts from `until_ms` on.
    Held {
        /// Local time from which it is checked again.
        until_ms: u64,
    },
    /// It never counts.
    Invalid(R),
}

impl<R> Outcome<R> {
    /// `valid`, `pending`, `held` or `invalid`, as the API and the CLI print it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::Pending { .. } => "pending",
            Outcome::Held { .. } => "held",
            Outcome::Invalid(_) => "invalid",
        }
    }
}

/// Why an attestation is invalid, as kept: the reason's stable code
/// ([`InvalidReason::code`]) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable reason code.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

impl From<&InvalidReason> for Rejection {
    fn from(r: &InvalidReason) -> Rejection {
        Rejection {
            code: r.code().to_string(),
            message: r.to_string(),
        }
    }
}

impl From<&Outcome> for Outcome<Rejection> {
    fn from(o: &Outcome) -> Outcome<Rejection> {
        match o {
            Outcome::Valid => Outcome::Valid,
            Outcome::Pending { missing } => Outcome::Pending {
                missing: missing.clone(),
            },
            Outcome::Held { until_ms } => Outcome::Held {
                until_ms: *until_ms,
            },
            Outcome::Invalid(r) => Outcome::Invalid(r.into()),
        }
    }
}

/// Why an attestation is invalid, for good.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidReason {
    /// Not a well-formed envelope.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// The author's signature fails.
    #[error("author signature: {0}")]
    Signature(SignatureError),
    /// The member's signature in a Membership fails.
    #[error("member signature: {0}")]
    MemberSignature(SignatureError),
    /// A text field is longer than its limit.
    #[error("{field} is {len} bytes, at most {max} allowed")]
    TooLong {
        /// Field name.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field is out of its allowed range.
    #[error("{field} out of range: {detail}")]
    OutOfRange {
        /// Field name.
        field: &'static str,
        /// What the range is.
        detail: &'static str,
    },
    /// A reference names an attestation of another kind.
    #[error("{field} must reference a {expected}, not a {found}")]
    WrongKind {
        /// Field name.
        field: &'static str,
        /// The kind it must be.
        expected: &'static str,
        /// The kind it is.
        found: &'static str,
    },
    /// A reference names an attestation that is itself invalid.
    #[error("depends on invalid attestation {0}")]
    DependsOnInvalid(Id),
    /// A referral's parent (or a receipt's referral) belongs to another offer.
    #[error("{field} belongs to another offer")]
    OtherOffer {
        /// Field name.
        field: &'static str,
    },
    /// The parent referral was addressed to someone else.
    #[error("the parent referral is addressed to another recipient")]
    NotRecipient,
    /// A referral dated before its parent: chains only grow forward in time.
    #[error("referral created before its parent")]
    BeforeParent,
    /// The referral chain would be longer than 64 hops.
    #[error("referral chain longer than {MAX_CHAIN_HOPS} hops")]
    ChainTooLong,
    /// The author is not allowed to sign this (a receipt not by the offer's seller, …).
    #[error("author is not the {role}")]
    WrongAuthor {
        /// Who must sign it.
        role: &'static str,
    },
    /// A receipt dated outside the offer's validity.
    #[error("receipt created outside the offer's validity period")]
    OutsideValidity,
    /// An Offer's `checkout_url` is not an acceptable URL (see [`check_checkout_url`]; one
    /// that is only too long is [`InvalidReason::TooLong`]).
    #[error("checkout_url: {detail}")]
    BadCheckoutUrl {
        /// What is wrong with it.
        detail: &'static str,
    },
}

impl InvalidReason {
    /// A short stable code for scripts, test vectors and API clients.
    pub fn code(&self) -> &'static str {
        match self {
            InvalidReason::Decode(d) => match d {
                DecodeError::TooShort { .. } => "decode.too_short",
                DecodeError::TooLarge { .. } => "decode.too_large",
                DecodeError::UnsupportedVersion(_) => "decode.version",
                DecodeError::UnknownKind(_) => "decode.kind",
                DecodeError::Malformed { .. } => "decode.malformed",
                DecodeError::TrailingBytes(_) => "decode.trailing_bytes",
                DecodeError::NonCanonical => "decode.non_canonical",
            },
            InvalidReason::Signature(_) => "signature",
            InvalidReason::MemberSignature(_) => "member_signature",
            InvalidReason::TooLong { .. } => "too_long",
            InvalidReason::OutOfRange { .. } => "out_of_range",
            InvalidReason::WrongKind { .. } => "wrong_kind",
            InvalidReason::DependsOnInvalid(_) => "depends_on_invalid",
            InvalidReason::OtherOffer { .. } => "other_offer",
            InvalidReason::NotRecipient => "not_recipient",
            InvalidReason::ChainTooLong => "chain_too_long",
            InvalidReason::BeforeParent => "before_parent",
            InvalidReason::WrongAuthor { .. } => "wrong_author",
            InvalidReason::OutsideValidity => "outside_validity",
            InvalidReason::BadCheckoutUrl { .. } => "bad_checkout_url",
        }
    }
}

/// Stage 1: decode, limits, signatures. Depends on the bytes only.
pub fn check(bytes: &[u8]) -> Result<Attestation, InvalidReason> {
    let att = Attestation::decode(bytes)?;
    check_limits(&att.body)?;
    signature::verify_strict(&att.body.author(), &att.signed_message(), &att.signature)
        .map_err(InvalidReason::Signature)?;
    Ok(att)
}

/// Stage 1 for many envelopes at once. Gives exactly what [`check`] gives for each.
///
/// Decoding and limits (with a Membership's member signature, checked singly) go envelope by
/// envelope; the author signatures of the envelopes that pass are verified as one batch
/// ([`signature::verify_batch`]), which answers for each what the single check answers.
pub fn check_batch(envelopes: &[&[u8]]) -> Vec<Result<Attestation, InvalidReason>> {
    check_batch_keys(envelopes, None)
}

/// [`check_batch`], with the signers' keys decompressed once across calls (see
/// [`signature::KeyCache`]).
pub fn check_batch_cached(
    envelopes: &[&[u8]],
    keys: &signature::KeyCache,
) -> Vec<Result<Attestation, InvalidReason>> {
    check_batch_keys(envelopes, Some(keys))
}

fn check_batch_keys(
    envelopes: &[&[u8]],
    keys: Option<&signature::KeyCache>,
) -> Vec<Result<Attestation, InvalidReason>> {
    let stateless: Vec<Result<Attestation, InvalidReason>> = envelopes
        .iter()
        .map(|e| {
            let att = Attestation::decode(e)?;
            check_limits(&att.body)?;
            Ok(att)
        })
        .collect();
    let signed: Vec<(PublicKey, Vec<u8>)> = stateless
        .iter()
        .flatten()
        .map(|att| (att.body.author(), att.signed_message()))
        .collect();
    let items: Vec<signature::BatchItem<'_>> = stateless
        .iter()
        .flatten()
        .zip(&signed)
        .map(|(att, (key, message))| signature::BatchItem {
            key,
            message,
            signature: &att.signature,
        })
        .collect();
    let mut verdicts = match keys {
        Some(keys) => signature::verify_batch_cached(&items, keys),
        None => signature::verify_batch(&items),
    }
    .into_iter();
    stateless
        .into_iter()
        .map(|r| {
            let att = r?;
            match verdicts.next() {
                Some(Ok(())) => Ok(att),
                Some(Err(e)) => Err(InvalidReason::Signature(e)),
                // Not reached: one verdict per envelope that passed. Check it singly anyway.
                None => check(&att.bytes),
            }
        })
        .collect()
}

fn text(field: &'static str, s: &str, max: usize) -> Result<(), InvalidReason> {
    if s.is_empty() {
        return Err(InvalidReason::OutOfRange {
            field,
            detail: "must not be empty",
        });
    }
    if s.len() > max {
        return Err(InvalidReason::TooLong {
            field,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn amount(field: &'static str, a: u64) -> Result<(), InvalidReason> {
    if a == 0 || a > MAX_AMOUNT_MINOR {
        return Err(InvalidReason::OutOfRange {
            field,
            detail: "must be 1..=10^15 minor units",
        });
    }
    Ok(())
}

fn range(ok: bool, field: &'static str, detail: &'static str) -> Result<(), InvalidReason> {
    if ok {
        Ok(())
    } else {
        Err(InvalidReason::OutOfRange { field, detail })
    }
}

fn time(field: &'static str, t: u64) -> Result<(), InvalidReason> {
    range(t <= MAX_TIME_MS, field, "after year 9999")
}

/// The bytes a checkout URL may contain: those RFC 3986 allows in a URI (unreserved, reserved
/// and `%`). That is printable ASCII without space, `"`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`
/// and `}`; no control character and nothing beyond ASCII (a domain name in another script is
/// written in punycode, `xn--…`; anything else is percent-encoded).
fn is_url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// The rule for an Offer's `checkout_url`, where a friend buys. In this order:
///
/// 1. at most [`MAX_CHECKOUT_URL_BYTES`] bytes, else [`InvalidReason::TooLong`];
/// 2. every byte allowed by RFC 3986 (see below), else [`InvalidReason::BadCheckoutUrl`],
///    as for every rule after this one;
/// 3. it starts with `http://` or `https://`, in lower case;
/// 4. the authority (up to the first `/`, `?` or `#`, or the end) holds no user information
///    (`@`);
/// 5. its host is not empty and is either letters, digits, `-` and `.` (a domain name, or an
///    IPv4 address), or an IPv6 literal in brackets (hex digits, `:` and `.`);
/// 6. a port, if any, is `:` followed by 1 to 5 digits of value at most 65535.
///
/// Path, query and fragment (`#…` is allowed) are not checked beyond the bytes, nor are
/// percent escapes. Allowed bytes: ASCII letters and digits and `-._~:/?#[]@!$&'()*+,;=%`.
pub fn check_checkout_url(url: &str) -> Result<(), InvalidReason> {
    let bad = |detail| Err(InvalidReason::BadCheckoutUrl { detail });
    if url.len() > MAX_CHECKOUT_URL_BYTES {
        return Err(InvalidReason::TooLong {
            field: "checkout_url",
            len: url.len(),
            max: MAX_CHECKOUT_URL_BYTES,
        });
    }
    if !url.bytes().all(is_url_byte) {
        return bad("only ASCII letters, digits and -._~:/?#[]@!$&'()*+,;=% are allowed (no space, no control or non-ASCII character: percent-encode them, or punycode a domain)");
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return bad("must start with http:// or https:// (lower case)");
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return bad("must not contain user information (user@host)");
    }
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let Some((host, after)) = v6.split_once(']') else {
                return bad("IPv6 literal without its closing ]");
            };
            let ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (ok, after)
        }
        None => {
            let end = authority.find(':').unwrap_or(authority.len());
            let host = &authority[..end];
            let ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            (ok, &authority[end..])
        }
    };
    if !host_ok {
        return bad("the host must be a non-empty domain name, IPv4 address or [IPv6] literal");
    }
    if !port.is_empty() {
        let digits = port.strip_prefix(':').unwrap_or("x");
        let ok = (1..=5).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.parse::<u32>().is_ok_and(|p| p <= 65_535);
        if !ok {
            return bad("the port must be 1 to 5 digits, at most 65535");
        }
    }
    Ok(())
}

/// Every limit and range of a body (and the member's signature of a Membership).
pub fn check_limits(body: &Body) -> Result<(), InvalidReason> {
    time("created_at_ms", body.created_at_ms())?;
    match body {
        Body::Offer(o) => {
            text("title", &o.title, MAX_TITLE_BYTES)?;
            amount("price_minor", o.price_minor)?;
            range(
                o.currency.is_valid(),
                "currency",
                "three upper-case letters",
            )?;
            let p = &o.policy;
            range(
                u32::from(p.pool_bps) + u32::from(p.connector_bps) <= u32::from(BPS_ONE),
                "pool_bps + connector_bps",
                "at most 10000",
            )?;
            range(
                (1..=MAX_POLICY_DEPTH).contains(&p.max_depth),
                "max_depth",
                "1..=16",
            )?;
            range(p.window_ms > 0, "window_ms", "must be > 0")?;
            if let crate::policy::Rule::Geometric { r_bps } = p.rule {
                range(r_bps < BPS_ONE, "r_bps", "0..=9999")?;
            }
            time("valid_from_ms", o.valid_from_ms)?;
            if let Some(until) = o.valid_until_ms {
                time("valid_until_ms", until)?;
                range(
                    until > o.valid_from_ms,
                    "valid_until_ms",
                    "after valid_from_ms",
                )?;
            }
            if let Some(url) = &o.checkout_url {
                check_checkout_url(url)?;
            }
        }
        Body::Referral(_) | Body::Refund(_) => {}
        Body::Receipt(r) => {
            text("order", &r.order, MAX_ORDER_BYTES)?;
            amount("amount_minor", r.amount_minor)?;
        }
        Body::PurchaseClaim(c) => text("order", &c.order, MAX_ORDER_BYTES)?,
        Body::Settlement(s) => {
            amount("amount_minor", s.amount_minor)?;
            range(
                s.currency.is_valid(),
                "currency",
                "three upper-case letters",
            )?;
            range(
                s.participant != s.seller,
                "participant",
                "must not be the seller",
            )?;
            time("period_end_ms", s.period_end_ms)?;
            range(
                s.period_end_ms >= s.period_start_ms,
                "period_end_ms",
                "not before period_start_ms",
            )?;
            text("reference", &s.reference, MAX_REFERENCE_BYTES)?;
        }
        Body::Community(c) => text("name", &c.name, MAX_COMMUNITY_NAME_BYTES)?,
        Body::Membership(m) => {
            range(
                m.member != m.connector,
                "member",
                "must not be the connector",
            )?;
            let msg = crate::attestation::Membership::request_message(
                &m.community,
                &m.member,
                m.created_at_ms,
            );
            signature::verify_strict(&m.member, &msg, &m.member_signature.0)
                .map_err(InvalidReason::MemberSignature)?;
        }
        Body::MembershipEnd(e) => time("ends_at_ms", e.ends_at_ms)?,
    }
    Ok(())
}

/// When an attestation dated `created_at_ms` may count, seen at `now_ms`: `None` if now.
pub fn held_until(created_at_ms: u64, now_ms: u64) -> Option<u64> {
    let until = created_at_ms.saturating_sub(MAX_FUTURE_SKEW_MS);
    (until > now_ms).then_some(until)
}

/// The facts about a valid attestation that other attestations' validity depends on. A node
/// (or a disk store) keeps these small records instead of whole bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Fact {
    /// A valid Offer.
    Offer {
        /// Its seller.
        seller: PublicKey,
        /// Receipts before this are invalid.
        valid_from_ms: u64,
        /// Receipts at or after this are invalid.
        valid_until_ms: Option<u64>,
    },
    /// A valid Referral.
    Referral {
        /// Its offer.
        offer: Id,
        /// Its recipient, if addressed.
        recipient: Option<PublicKey>,
        /// Hops from the offer down to it, inclusive (a root referral has 1).
        hops: u32,
        /// When it was created: a child may not be dated before it.
        created_at_ms: u64,
    },
    /// A valid Receipt.
    Receipt {
        /// Its seller.
        seller: PublicKey,
    },
    /// A valid Community.
    Community {
        /// Its connector.
        connector: PublicKey,
    },
    /// A valid Membership.
    Membership {
        /// The community's connector.
        connector: PublicKey,
        /// The member.
        member: PublicKey,
    },
    /// Any other valid attestation (nothing depends on its content).
    Other(Kind),
}

impl Fact {
    /// The kind of the attestation.
    pub fn kind(&self) -> Kind {
        match self {
            Fact::Offer { .. } => Kind::Offer,
            Fact::Referral { .. } => Kind::Referral,
            Fact::Receipt { .. } => Kind::Receipt,
            Fact::Community { .. } => Kind::Community,
            Fact::Membership { .. } => Kind::Membership,
            Fact::Other(k) => *k,
        }
    }

    /// The fact recorded for a body found valid; `hops` is the referral's chain length
    /// (ignored for other kinds).
    pub fn of(body: &Body, hops: u32) -> Fact {
        match body {
            Body::Offer(o) => Fact::Offer {
                seller: o.seller,
                valid_from_ms: o.valid_from_ms,
                valid_until_ms: o.valid_until_ms,
            },
            Body::Referral(r) => Fact::Referral {
                offer: r.offer,
                recipient: r.recipient,
                hops,
                created_at_ms: r.created_at_ms,
            },
            Body::Receipt(r) => Fact::Receipt { seller: r.seller },
            Body::Community(c) => Fact::Community {
                connector: c.connector,
            },
            Body::Membership(m) => Fact::Membership {
                connector: m.connector,
                member: m.member,
            },
            other => Fact::Other(other.kind()),
        }
    }
}

/// What a node knows about a referenced id.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// Never seen, or not yet valid (pending or held).
    Unknown,
    /// Seen and invalid.
    Invalid,
    /// Valid.
    Valid(Fact),
}

/// The view of a node's attestations that stage 2 needs. The in-memory [`crate::State`]
/// implements it; so can a disk store.
pub trait Known {
    /// What is known of `id`.
    fn lookup(&self, id: &Id) -> Lookup;
}

fn wrong_kind(field: &'static str, expected: Kind, found: &Fact) -> InvalidReason {
    InvalidReason::WrongKind {
        field,
        expected: expected.name(),
        found: found.kind().name(),
    }
}

/// Stage 2: the rules that need the referenced attestations. `body` has passed [`check`].
/// On [`Outcome::Valid`] the second value is the fact to record for it.
pub fn contextual(body: &Body, known: &impl Known) -> (Outcome, Option<Fact>) {
    let deps = body.dependencies();
    let mut missing = Vec::new();
    let mut facts = Vec::with_capacity(deps.len());
    for d in &deps {
        match known.lookup(d) {
            Lookup::Unknown => missing.push(*d),
            Lookup::Invalid => {
                return (Outcome::Invalid(InvalidReason::DependsOnInvalid(*d)), None)
            }
            Lookup::Valid(f) => facts.push(f),
        }
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return (Outcome::Pending { missing }, None);
    }
    match contextual_rules(body, &facts) {
        Ok(hops) => (Outcome::Valid, Some(Fact::of(body, hops))),
        Err(r) => (Outcome::Invalid(r), None),
    }
}

/// The rules, given the dependencies' facts in [`Body::dependencies`] order. Returns the
/// chain hops of a referral (0 for other kinds).
fn contextual_rules(body: &Body, deps: &[Fact]) -> Result<u32, InvalidReason> {
    match body {
        Body::Referral(r) => {
            if !matches!(deps[0], Fact::Offer { .. }) {
                return Err(wrong_kind("offer", Kind::Offer, &deps[0]));
            }
            let Some(parent) = deps.get(1) else {
                return Ok(1);
            };
            let Fact::Referral {
                offer,
                recipient,
                hops,
                created_at_ms,
            } = *parent
            else {
                return Err(wrong_kind("parent", Kind::Referral, parent));
            };
            if offer != r.offer {
                return Err(InvalidReason::OtherOffer { field: "parent" });
            }
            if recipient.is_some_and(|to| to != r.referrer) {
                return Err(InvalidReason::NotRecipient);
            }
            if hops >= MAX_CHAIN_HOPS {
                return Err(InvalidReason::ChainTooLong);
            }
            if r.created_at_ms < created_at_ms {
                return Err(InvalidReason::BeforeParent);
            }
            Ok(hops + 1)
        }
        Body::Receipt(r) => {
            let Fact::Offer {
                seller,
                valid_from_ms,
                valid_until_ms,
            } = deps[0]
            else {
                return Err(wrong_kind("offer", Kind::Offer, &deps[0]));
            };
            if seller != r.seller {
                return Err(InvalidReason::WrongAuthor {
                    role: "offer's seller",
                });
            }
            if r.created_at_ms < valid_from_ms
                || valid_until_ms.is_some_and(|u| r.created_at_ms >= u)
            {
                return Err(InvalidReason::OutsideValidity);
            }
            if let Some(via) = deps.get(1) {
                let Fact::Referral { offer, .. } = *via else {
                    return Err(wrong_kind("via", Kind::Referral, via));
                };
                if offer != r.offer {
                    return Err(InvalidReason::OtherOffer { field: "via" });
                }
            }
            Ok(0)
        }
        Body::PurchaseClaim(_) => match deps[0] {
            Fact::Offer { .. } => Ok(0),
            ref f => Err(wrong_kind("offer", Kind::Offer, f)),
        },
        Body::Refund(r) => match deps[0] {
            Fact::Receipt { seller } if seller == r.seller => Ok(0),
            Fact::Receipt { .. } => Err(InvalidReason::WrongAuthor {
                role: "receipt's seller",
            }),
            ref f => Err(wrong_kind("receipt", Kind::Receipt, f)),
        },
        Body::Membership(m) => match deps[0] {
            Fact::Community { connector } if connector == m.connector => Ok(0),
            Fact::Community { .. } => Err(InvalidReason::WrongAuthor {
                role: "community's connector",
            }),
            ref f => Err(wrong_kind("community", Kind::Community, f)),
        },
        Body::MembershipEnd(e) => match deps[0] {
            Fact::Membership { connector, member }
                if e.author == connector || e.author == member =>
            {
                Ok(0)
            }
            Fact::Membership { .. } => Err(InvalidReason::WrongAuthor {
                role: "membership's connector or member",
            }),
            ref f => Err(wrong_kind("membership", Kind::Membership, f)),
        },
        Body::Offer(_) | Body::Settlement(_) | Body::Community(_) => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest legal Offer (every field at its longest) fits in an envelope.
    #[test]
    fn the_largest_offer_fits() {
        use crate::attestation::{Currency, Offer};
        use crate::keys::Keypair;
        use crate::policy::{Policy, Rule};
        let k = Keypair::from_seed([1; 32]);
        let body = Body::Offer(Offer {
            seller: k.public(),
            title: "x".repeat(MAX_TITLE_BYTES),
            content_hash: Some([0xff; 32]),
            price_minor: MAX_AMOUNT_MINOR,
            currency: Currency(*b"EUR"),
            policy: Policy {
                pool_bps: 5_000,
                connector_bps: 5_000,
                rule: Rule::Geometric { r_bps: 9_999 },
                max_depth: MAX_POLICY_DEPTH,
                window_ms: u64::MAX,
                require_purchase: true,
            },
            valid_from_ms: MAX_TIME_MS - 1,
            valid_until_ms: Some(MAX_TIME_MS),
            created_at_ms: MAX_TIME_MS,
            checkout_url: Some(format!(
                "https://{}",
                "a".repeat(MAX_CHECKOUT_URL_BYTES - 8)
            )),
        });
        assert_eq!(check_limits(&body), Ok(()));
        let a = Attestation::sign(body, &k);
        assert_eq!(a.bytes.len(), 890 + 66);
        assert!(a.bytes.len() <= MAX_ENVELOPE_BYTES);
        assert_eq!(check(&a.bytes), Ok(a));
    }

    fn code(url: &str) -> &'static str {
        check_checkout_url(url).map_or_else(|e| e.code(), |()| "ok")
    }

    #[test]
    fn checkout_urls() {
        for ok in [
            "http://a",
            "https://shop.example",
            "https://shop.example/",
            "https://xn--bcher-kva.example/b%C3%BCcher?id=1&x=y#buy",
            "https://shop.example:8443/p",
            "http://127.0.0.1:80",
            "https://[2001:db8::1]/checkout",
            "https://[::ffff:192.0.2.1]:65535",
            "https://shop.example?ref=x",
            "https://shop.example#top",
        ] {
            assert_eq!(code(ok), "ok", "{ok}");
        }
        let long = format!("https://shop.example/{}", "a".repeat(512 - 21));
        assert_eq!(long.len(), MAX_CHECKOUT_URL_BYTES);
        assert_eq!(code(&long), "ok");
        assert_eq!(code(&(long + "a")), "too_long");
        for bad in [
            "",
            "ftp://shop.example",
            "HTTPS://shop.example",
            "https:shop.example",
            "//shop.example",
            "javascript:alert(1)",
            "https://",
            "https:///path",
            "https://?q",
            "https://shop example",
            "https://shop.example/a b",
            "https://shop.example/\t",
            "https://shop.example/\u{7f}",
            "https://bücher.example",
            "https://shop.example/\"<script>",
            "https://user@shop.example",
            "https://user:pw@shop.example/",
            "https://shop.example:",
            "https://shop.example:65536",
            "https://shop.example:123456",
            "https://shop.example:8a",
            "https://shop_example",
            "https://[]/",
            "https://[::1/",
            "https://[::1]x",
            "https://[zz::1]",
        ] {
            assert_eq!(code(bad), "bad_checkout_url", "{bad:?}");
        }
    }
}
