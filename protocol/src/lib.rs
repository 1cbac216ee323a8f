//! Passalong's protocol core: everything two nodes must agree on, and nothing else.
//!
//! This crate is pure — no IO, no clock, no threads, no randomness of its own — so that every
//! node, the offline verifier and another implementation compute the same thing from the same
//! bytes. It holds:
//!
//! - [`attestation`]: the nine kinds of signed facts and their bodies;
//! - [`encoding`]: the canonical envelope (version, kind, postcard body, signature), domain tags
//!   and ids (blake3 of the envelope);
//! - [`signature`]: strict ed25519 (cofactored equation) and a batch path that accepts exactly
//!   what the single check accepts;
//! - [`validation`]: stateless checks (decode, limits, signature) and the four outcomes;
//! - [`lifecycle`]: held, pending, valid or invalid, and what settles with each, once for
//!   every storage;
//! - [`state`]: a sans-IO in-memory state that takes attestations in any order and the time,
//!   and answers with outcomes and, per seller, the ledger;
//! - [`payout`]: the payout rules of one receipt (`direct`, `equal`, `geometric`, `split_proof`);
//! - [`ledger`] and [`merkle`]: a seller's ledger, its root and inclusion proofs;
//! - [`money`]: minor units shown in major units (ISO 4217 minor digits).
//!
//! The rules are written down for humans in `docs/protocol.md` and `docs/payout-rules.md`;
//! `protocol/tests/vectors/` holds test vectors another implementation can check itself against.
#![deny(missing_docs)]

pub mod attestation;
pub mod bundle;
pub mod encoding;
pub mod keys;
pub mod ledger;
pub mod lifecycle;
pub mod limits;
pub mod link;
pub mod merkle;
pub mod money;
pub mod payout;
pub mod policy;
pub mod signature;
pub mod state;
pub mod validation;

pub use attestation::{
    Body, Community, Currency, Kind, Membership, MembershipEnd, Offer, PurchaseClaim, Receipt,
    Referral, Refund, Settlement,
};
pub use encoding::{Attestation, DecodeError};
pub use keys::{Id, Keypair, PublicKey};
pub use ledger::{Ledger, LedgerEntry};
pub use merkle::{InclusionProof, MerkleRoot};
pub use policy::{Policy, Rule};
pub use state::State;
pub use validation::{InvalidReason, Outcome, Rejection};
