//! Every size and range limit of the protocol, in one place, so `docs/protocol.md` can quote
//! them and a reviewer can check them. Violating any of them makes an attestation invalid.

/// Largest signed envelope, in bytes. The biggest legal body (an Offer with a full title and
/// a full checkout URL, 890 bytes) is below this; the cap bounds what a peer can make us decode.
pub const MAX_ENVELOPE_BYTES: usize = 1024;
/// Offer title, bytes of UTF-8.
pub const MAX_TITLE_BYTES: usize = 256;
/// Offer checkout URL, bytes (printable ASCII, so also characters).
pub const MAX_CHECKOUT_URL_BYTES: usize = 512;
/// A seller's order id (Receipt, PurchaseClaim), bytes of UTF-8.
pub const MAX_ORDER_BYTES: usize = 64;
/// Settlement payment reference, bytes of UTF-8.
pub const MAX_REFERENCE_BYTES: usize = 128;
/// Community name, bytes of UTF-8.
pub const MAX_COMMUNITY_NAME_BYTES: usize = 64;
/// Largest amount in one attestation (price, receipt amount, settlement), in minor units:
/// 10^15, i.e. ten trillion of a two-decimal currency. Sums use u128, so no ledger can overflow.
pub const MAX_AMOUNT_MINOR: u64 = 1_000_000_000_000_000;
/// Basis points in one whole.
pub const BPS_ONE: u16 = 10_000;
/// Largest `max_depth` of a policy.
pub const MAX_POLICY_DEPTH: u8 = 16;
/// Longest referral chain (hops from the offer down to a referral, inclusive).
pub const MAX_CHAIN_HOPS: u32 = 64;
/// How far in the future a `created_at_ms` may be before the attestation is held back
/// (two minutes of clock skew between honest nodes).
pub const MAX_FUTURE_SKEW_MS: u64 = 120_000;
/// Latest representable time: year 9999. Beyond it a timestamp is a mistake, not a future.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;
