//! The layout of the one sled tree that holds everything (the journal file beside it holds
//! what shipments changed since the last checkpoint, see `journal`). One tree, so that the
//! journal's number of a shipment says which writes the tree has; each kind of record has a
//! one-byte prefix, and multi-part keys are fixed-width, so prefix scans are exact. Times in keys are big-endian, so they sort.

/// id → `Entry` (postcard): state (valid, pending, held), fact, payout record and envelope of
/// every attestation that passed the stateless check and is not invalid. One key per
/// attestation: sled's cost is per key written. From format 14 a valid attestation's
/// envelope is in the envelope log and its entry holds a 16-byte reference (see `envelopes`);
/// from format 15 valid entries are written here only in shipments (the journal keeps them)
/// and kept in runs (see `valid`): the tree holds pending and held ones, and the valid ones
/// of a store of format 14.
pub const ENTRY: u8 = b'a';
/// receipt → its payout record (`ledger::PayoutRec`, postcard), for a counted receipt whose
/// payout may change, from format 15 (before, in its entry; see `valid`).
pub const PAYOUT: u8 = b'b';
/// id → reason (UTF-8 "code: message"): the attestation is invalid.
pub const INVALID: u8 = b'x';
/// missing id ‖ waiting id → since_ms (BE; empty before format 7): who waits for what, and
/// the waiting one's `PENDING` time.
pub const WAITER: u8 = b'w';
/// until_ms (BE) ‖ id → (): held attestations, in release order.
pub const HELD: u8 = b'h';
/// since_ms (BE) ‖ id → (): pending attestations, by when they became pending (received, or
/// released from hold), oldest first: what expires or is dropped first (see `expiry`).
/// WAITER values hold the same time, so that a release finds the key.
pub const PENDING: u8 = b'p';
/// at_ms (BE) ‖ id → (): invalid attestations by when they were found invalid (see `expiry`).
pub const INVALID_AT: u8 = b'X';
/// market key → (): every market with an anchored valid attestation, from format 16. The
/// market index itself is in runs (see `market`); shipments and the journal still carry it
/// as `MARKET ‖ market ‖ created_at_ms (BE) ‖ id` → a run of a market's valid attestations,
/// keyed by its first, which the tree held before format 16 (one key per market per batch).
pub const MARKET: u8 = b'm';
/// referral → what a chain walk needs of it (see `hops`): valid referrals. In the tree from
/// format 10 to 12; since 13 only in journal records (kept in runs, see `hops`), and read
/// from the tree once when an older store opens.
pub const HOP: u8 = b'H';
/// parent referral ‖ child referral → (): loose referrals by parent (what dropping a loose
/// referral takes with it, see `loose`). Written as a referral becomes valid loose; anchored
/// before its key is shipped, it leaves none; anchored later, the key stays, never read (an
/// anchored referral is never dropped). Stores written before this rule hold one for every
/// referral with a parent.
pub const CHILD: u8 = b'c';
/// seller ‖ blake3(order) → receipt ids (32 bytes each, ascending): the receipts of an order
/// that has more than one (equivocation evidence); the first counts.
pub const ORDER: u8 = b'q';
/// first receipt id → a run of (order key ‖ receipt id) records, one run per shipment: before
/// format 11, the receipts' orders since the last checkpoint (now in the journal file, see
/// `journal`); read at open and written as a run file at once (see `orders`).
pub const ORDER_LOG: u8 = b'Q';
/// pack number → 4 KiB of (order key ‖ receipt id) records: before format 12, every valid
/// receipt's order, packed at checkpoints (now in run files, see `orders`); read at open and
/// written as a run file at once.
pub const ORDER_PACK: u8 = b'P';
/// receipt → (): refunded receipts.
pub const REFUNDED: u8 = b'e';
/// referral ‖ receipt → hop position (1 byte): counted receipts whose kept hops include it.
pub const THROUGH: u8 = b't';
/// offer ‖ buyer ‖ created_at_ms (BE) ‖ receipt → (): counted, unrefunded purchases.
pub const PURCHASE: u8 = b'u';
/// offer ‖ referrer ‖ referral → (): referrals by who made them, of offers that require a
/// purchase (what a buyer's first purchase makes eligible hops). Stores written before this
/// rule keep the keys of every referral; the others are never read.
pub const BY_REFERRER: u8 = b'y';
/// community → connector key.
pub const COMMUNITY: u8 = b'k';
/// community ‖ referrer ‖ referral → (): referrals that name a community.
pub const NAMING: u8 = b'g';
/// community ‖ member ‖ membership → start (BE).
pub const MEMBER: u8 = b'n';
/// membership → community ‖ member.
pub const MEMBERSHIP: u8 = b'M';
/// membership → earliest ends_at_ms (BE).
pub const MEMBERSHIP_END: u8 = b'z';
/// market ‖ id → created_at_ms (BE) ‖ kind: what the market's ledger depends on outside the
/// market (the communities its referrals name, the memberships and their ends; see
/// `dependency`).
pub const DEPENDENCY: u8 = b'o';
/// membership ‖ end → created_at_ms (BE): the ends of a membership.
pub const ENDED_BY: u8 = b'E';
/// market ‖ author ‖ created_at_ms (BE) ‖ id → kind: loose attestations (referrals and
/// purchase claims no sale anchors yet), by author, oldest first (see `loose`).
pub const LOOSE: u8 = b'L';
/// market ‖ created_at_ms (BE) ‖ id → author: loose attestations by time, oldest first.
pub const LOOSE_AT: u8 = b'T';
/// market ‖ author → count (BE): how many loose attestations an author has in a market.
pub const LOOSE_COUNT: u8 = b'N';
/// seller ‖ blake3(order) ‖ claim → PurchaseClaim body.
pub const CLAIM: u8 = b'd';
/// seller ‖ currency ‖ participant → earned, refunded, settled (u128 BE each), as of the last
/// checkpoint (see `book`).
pub const LEDGER: u8 = b'l';
/// seq (BE) ‖ chunk (BE u32) → ledger lines an ingest changed since the last checkpoint, with
/// their new sums: before format 11 (now in the journal file, see `journal`); read at open,
/// removed by the next checkpoint. Journal records' damage is reported under this prefix.
pub const JOURNAL: u8 = b'j';
/// market key → (): the markets followed: on request (`passalong market follow`), and those
/// the node's own attestations and imports belong to. Not those that only something received
/// belongs to, so that a peer cannot make the node follow markets.
pub const FOLLOW: u8 = b'f';
/// (no parts) → the last shipment written, until the next one or a checkpoint: before format
/// 11 (now in the journal file); completed at open, removed by the next checkpoint (see
/// `redo`).
pub const REDO: u8 = b'r';
/// blake3(idempotency key) → receipt id: a checkout's `Idempotency-Key` (see `lookups`).
pub const IDEMPOTENCY: u8 = b'i';
/// name → value: store metadata (`format` version; `valid`, `pending`, `held` and `invalid`
/// counts; `loose` ‖ market ‖ kind: a market's loose attestations of a kind; `journal` and
/// `checkpoint`: the journal records the tree has, see `journal`).
pub const META: u8 = b'v';

/// A key: the prefix byte, then the parts.
pub fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// The 32 bytes at `at` of a key (callers only pass keys they built).
pub fn id_at(k: &[u8], at: usize) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Some(s) = k.get(at..at + 32) {
        out.copy_from_slice(s);
    }
    out
}

/// The big-endian u64 at `at` of a key or value.
pub fn u64_at(k: &[u8], at: usize) -> u64 {
    let mut out = [0u8; 8];
    if let Some(s) = k.get(at..at + 8) {
        out.copy_from_slice(s);
    }
    u64::from_be_bytes(out)
}
