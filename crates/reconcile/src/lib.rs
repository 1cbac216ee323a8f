//! Hybrid set reconciliation for Passalong's per-market attestation-id sets.
//!
//! Two nodes each hold a set of items `(created_at_ms, id)` sorted by `(time, id)`. The
//! *initiator* learns `have` (ids it holds that the peer lacks) and `need` (ids the peer
//! holds that it lacks); as in the `negentropy` crate, only the initiator collects results
//! and then pushes/pulls the items itself. The crate is pure: it turns byte messages into
//! byte messages and the caller carries them (e.g. over libp2p request-response).
//!
//! # Design
//!
//! Two known techniques are complementary:
//!
//! * **Range-based set reconciliation** (RBSR; A. Meyer, "Range-Based Set Reconciliation",
//!   SRDS 2023, as in the `negentropy` protocol): split the `(time, id)` order into ranges,
//!   compare 16-byte fingerprints, recurse into the differing ones. It is nearly free when
//!   differences are *clustered* (e.g. one side lacks the newest items: the empty tail is
//!   found in a few levels and nothing but bounds is sent), but costs many fingerprints and
//!   id lists per difference when differences are *spread uniformly*.
//! * **Rateless IBLT** (L. Yang, Y. Gilad, M. Alizadeh, "Practical Rateless Set
//!   Reconciliation", SIGCOMM 2024): an infinite stream of coded symbols (XOR of ids, XOR of
//!   64-bit checksums, count) from which any prefix of about `1.35 d` symbols decodes a
//!   difference of size `d` by peeling. Cost is proportional to `d` regardless of where the
//!   differences are, but it cannot exploit clustering (it pays for the newest items too).
//!
//! This crate runs RBSR at the top and switches a range to a rateless IBLT once it knows the
//! difference inside it is *spread* (two-sided) rather than *clustered* (one-sided):
//!
//! 1. The initiator sends fingerprints (count + 16-byte hash of the 256-bit sum of ids and
//!    the count) of `fanout` (default 16) ranges.
//! 2. The responder answers each range: equal → `Skip`; it holds ≤ 32 items or the peer
//!    holds none → its `IdList`; otherwise it splits the range into `fanout` children. When
//!    both counts are within `max(n/64, 2√n)` (so any large difference must be two-sided)
//!    and at least half (and two) of the fingerprints in the incoming message differ (a
//!    *spread* difference; a clustered one needs no estimate), each child of ≥ 32 items
//!    carries a *sample*: the low byte of the sample hash of its items whose hash has its
//!    top `shift` bits zero (≈16 values per child).
//!
//!    Every split (by either side) also sends the *gaps* between the range's bounds and the
//!    sender's first and last items, when there is time between them, as ranges of their
//!    own with an empty `IdList` ("I have nothing here"). The peer's items in a gap are thus
//!    settled in the same round trip: when one side lacks the newest (or oldest) items, the
//!    first split already isolates them, and the reconciliation ends after one round trip.
//! 3. The initiator estimates, from the samples, the *two-sided* difference rate (sampled
//!    mismatches × `2^shift`, minus the count difference), pooled over the whole message,
//!    with a Poisson estimate from the fraction of differing ranges as a floor. For each
//!    differing range: if the difference is mostly one-sided and at least 8 items (count
//!    difference ≥ 2 × two-sided estimate) it keeps splitting (clustered insertions such
//!    as "the newest items" → RBSR finds empty subranges for the price of a few bounds),
//!    ending with its own `IdList` at ≤ 16 items; otherwise it asks for IBLT symbols.
//!    Adjacent IBLT ranges (also across equal ranges between them, which cancel out in the
//!    XOR) are merged into one IBLT, so the uniform case becomes one large IBLT with the
//!    paper's ≈1.35 overhead (gaps between them that hold at most 4 of the initiator's
//!    items are merged too). The first batch is `1.35 × (1 + standard error) × estimate`.
//!    A difference whose first batch would exceed [`Config::iblt_run_symbols`] (65,536) is
//!    merged into several runs of equal estimated size instead: each side encodes one run's
//!    symbols within a core's cache, and a run that does not peel asks for a quarter more
//!    of its own symbols only. Measured over seeds 0–7 at 10 %, the bytes are the same
//!    (±0.01 %) and so are the round trips, at less than half the CPU.
//! 4. The responder streams the requested symbols; the initiator subtracts its own symbols
//!    and peels. If peeling fails it asks for 25 % more (100 % when the estimate came only
//!    from the fraction of differing ranges), and nothing already sent is wasted. A range
//!    whose IBLT would exceed `min(3 × (both counts) + 64, 4 n + 4096)` symbols is capped
//!    there, and if that does not peel it falls back to splitting.
//!
//! Small ranges end with id lists: the responder's `IdList` answer lets the initiator compute
//! `have`/`need` directly; an initiator's `IdList` is answered by a bitmap of which listed
//! ids the responder has plus the responder's unlisted ids (so only the ids the initiator
//! needs travel, never the ones it already sent).
//!
//! On the wire, bounds are delta-coded times plus the shortest distinguishing id prefix (as
//! in negentropy), and a fingerprint's count is folded into its mode byte as a small
//! difference from the previous fingerprint's count (the children of a split have equal
//! counts), so counts cost about nothing beyond the first.
//!
//! Ids are assumed to be cryptographic digests (uniform); the IBLT checksums and mapping use
//! fast seeded mixing of them. Decoded ids are checked against the local range (a "have"
//! must be local, a "need" must not be), and malformed input yields an [`Error`], never a
//! panic.
//!
//! The encoder advances sixteen items' index recurrences side by side, in a build for
//! AVX-512 or AVX2 where the CPU has one (same symbols as the portable build: the same IEEE
//! operations, tested against each other).
//!
//! # Measured (`cargo bench -p passalong-reconcile`, 1,000,000 items per side)
//!
//! Bytes are both directions, as a share of sending one side's every item (40 B each);
//! rounds are round trips.
//!
//! | difference                    | this crate                      | `negentropy` 0.5.3              |
//! |-------------------------------|---------------------------------|---------------------------------|
//! | uniform 0.01 % each side      | 0.077 % (0.077–0.093), 2 rounds | 0.773 %, 3 rounds               |
//! | uniform 1 % each side         | 3.09 % (3.09–3.79), 2 rounds    | 46.4 %, 3 rounds                |
//! | uniform 10 % each side        | 28.6 % (28.1–29.2), 2 rounds    | 157.5 %, 3 rounds               |
//! | responder lacks newest 0.01 % | 705 B, 1 round                  | 1,784 B, 3 rounds               |
//! | responder lacks newest 1 %    | 714 B, 1 round                  | 1,822 B, 3 rounds               |
//! | responder lacks newest 10 %   | 723 B, 1 round                  | 3,155 B, 4 rounds               |
//! | initiator lacks newest 0.01 % | 3,577 B, 1 round                | 4,929 B, 3 rounds               |
//! | initiator lacks newest 1 %    | 320,370 B (0.801 %), 1 round    | 321,901 B (0.805 %), 3 rounds   |
//! | initiator lacks newest 10 %   | 3,200,371 B (8.001 %), 1 round  | 3,202,471 B (8.006 %), 4 rounds |
//!
//! On "newest" cases the gaps settle the missing tail in the first round trip: besides the
//! missing ids, only the initiator's first split and (when the responder lacks items) the
//! responder's split of one range travel. Ranges in the parenthesis are over four random
//! seeds (`RECON_SEED` 0–3). With `RECON_LIMIT=4194304` (the transport's 4 MiB) every
//! figure is the same except uniform 10 %, which takes 4 round trips (same bytes within
//! 0.001 %: its ≈ 11 MB of IBLT symbols arrive in three chunks).
//!
//! CPU for both sides of a whole reconciliation, as a multiple of `negentropy`'s in the same
//! run (best of five; AMD EPYC with AVX-512): uniform 0.01 % 1.3×, 1 % 0.72×, 10 % 0.69×
//! (AVX2 alone: 0.86–0.90× and 0.76–0.84× at 1 % and 10 %).
//!
//! # Limits
//!
//! Neither side ever emits a message larger than `Config::max_message_size` (values below
//! [`MIN_MESSAGE_SIZE`], 4 KiB, are raised to it), and each accepts messages up to that
//! size, so both sides should use the same value (e.g. the smaller of the transport's
//! request and response limits). Output is built entry by entry against that budget, as
//! negentropy does with its frame size limit: when the next entry does not fit, the sender
//! stops and ends the message with one fingerprint (count + hash) of its items from there
//! to the end, so the remaining ranges continue in the next round trip. A responder whose
//! id list does not fit sends as many of its ids as fit, up to a bound inside the range,
//! then that fingerprint. The IBLT symbols one message requests are limited to
//! `(max_message_size - min(max_message_size / 2, 4096)) / 41` in total; larger IBLTs take
//! further rounds (the code is rateless, so nothing is lost), and a request over the
//! budget is deferred to a later round. A range cut off by a truncated message may be
//! resolved twice; the initiator ignores ids it already reported, so `have` and `need`
//! stay exact. Round trips grow with the difference only once it no longer fits: e.g.
//! 300,000 ids against an empty set take 3 round trips at 4 MiB, and 50,000 take about
//! 400 at 4 KiB. The responder produces at most `4 n + 4096` symbols for a range where it
//! holds `n` items and rejects a request whose symbols alone would not fit its limit.
//!
//! # Example
//!
//! ```
//! use passalong_reconcile::{Config, Reconciler, StorageBuilder};
//! let mut a = StorageBuilder::new();
//! let mut b = StorageBuilder::new();
//! for i in 0u8..100 {
//!     a.insert(u64::from(i), [i; 32]);
//!     if i % 10 != 0 { b.insert(u64::from(i), [i; 32]); }
//! }
//! let (a, b) = (a.seal(), b.seal());
//! let mut init = Reconciler::new(&a, Config::default());
//! let mut resp = Reconciler::new(&b, Config::default());
//! let mut msg = init.initiate().expect("fresh reconciler");
//! loop {
//!     let reply = resp.reconcile(&msg).expect("valid").expect("responder always answers");
//!     match init.reconcile(&reply).expect("valid") {
//!         Some(next) => msg = next,
//!         None => break,
//!     }
//! }
//! assert_eq!(init.have().len(), 10);
//! assert!(init.need().is_empty());
//! ```

#![deny(missing_docs)]

mod iblt;
mod idset;
mod wire;

use iblt::{Symbol, SYMBOL_BYTES};
use idset::{IdMap, IdSet};
use std::collections::HashMap;
use wire::{Bound, Entry, Sample};

/// A 32-byte attestation id.
pub type Id = [u8; 32];

/// One element of a set: ordered by `(created_at, id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Item {
    /// Creation time in milliseconds.
    pub created_at: u64,
    /// The id.
    pub id: Id,
}

/// Errors for malformed or unexpected messages and misuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The incoming message exceeds the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Size of the message.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The message is empty or has no entries.
    #[error("empty message")]
    Empty,
    /// Unknown protocol version byte.
    #[error("unsupported protocol version {0:#x}")]
    UnsupportedVersion(u8),
    /// The message ended in the middle of a field.
    #[error("message truncated")]
    Truncated,
    /// A varint does not fit its type.
    #[error("varint overflow")]
    VarintOverflow,
    /// A bound's time overflowed 64 bits.
    #[error("bound time overflow")]
    TimeOverflow,
    /// A bound prefix longer than 32 bytes.
    #[error("invalid bound prefix length {0}")]
    BadPrefixLength(u8),
    /// A sample shift above 63.
    #[error("invalid sample shift {0}")]
    BadSampleShift(u8),
    /// An unknown range mode.
    #[error("unknown range mode {0}")]
    UnknownMode(u64),
    /// Range bounds are not strictly increasing.
    #[error("range bounds are not strictly increasing")]
    BoundsNotIncreasing,
    /// The last range does not end at the infinite bound.
    #[error("message does not end with the infinite bound")]
    MissingFinalBound,
    /// Bytes after the infinite bound.
    #[error("data after the final range")]
    TrailingData,
    /// A mode that this side never receives.
    #[error("{0} is not valid in this direction")]
    UnexpectedMode(&'static str),
    /// IBLT symbols for a range that was not requested, or at the wrong offset.
    #[error("unrequested IBLT symbols")]
    UnexpectedIblt,
    /// An id-list answer whose bitmap does not match the list that was sent.
    #[error("id-list bitmap covers {got} ids, expected {expected}")]
    BitmapLength {
        /// Bits received.
        got: usize,
        /// Ids in the local range.
        expected: usize,
    },
    /// A requested IBLT range was not answered.
    #[error("requested IBLT symbols are missing")]
    MissingIblt,
    /// A request for more IBLT symbols than this side will produce.
    #[error("IBLT request for {0} symbols exceeds the limits")]
    IbltRequestTooLarge(u64),
    /// The peer's symbols decoded to ids inconsistent with the local set.
    #[error("decoded difference is inconsistent with the local set")]
    InconsistentDecode,
    /// `initiate` was called on a reconciler that already started.
    #[error("reconciler already started")]
    AlreadyStarted,
}

/// Collects items; [`StorageBuilder::seal`] sorts and deduplicates them.
#[derive(Clone, Debug, Default)]
pub struct StorageBuilder {
    items: Vec<Item>,
}

impl StorageBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an item.
    pub fn insert(&mut self, created_at: u64, id: Id) {
        self.items.push(Item { created_at, id });
    }

    /// Sorts by `(created_at, id)`, removes duplicates and freezes the set.
    pub fn seal(mut self) -> Storage {
        self.items.sort_unstable();
        self.items.dedup();
        Storage { items: self.items }
    }
}

/// A sealed, sorted, duplicate-free set of items.
#[derive(Clone, Debug, Default)]
pub struct Storage {
    items: Vec<Item>,
}

impl Storage {
    /// Builds a sealed storage from any items.
    pub fn from_items(items: impl IntoIterator<Item = Item>) -> Self {
        StorageBuilder {
            items: items.into_iter().collect(),
        }
        .seal()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The sorted items.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    fn range(&self, lower: &Bound, upper: &Bound) -> &[Item] {
        let a = self.items.partition_point(|it| lower.above(it));
        let b = self.items.partition_point(|it| upper.above(it));
        self.items.get(a..b).unwrap_or(&[])
    }
}

/// Tuning knobs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest message this side accepts and emits (at least [`MIN_MESSAGE_SIZE`]; smaller
    /// values are raised to it). Both sides should use the same value. Larger differences
    /// than fit take more round trips; see the crate's "Limits" section.
    pub max_message_size: usize,
    /// Number of children when a range is split (≥ 2).
    pub fanout: usize,
    /// IBLT symbols the initiator asks for in one run of merged ranges at first (≥ 1,024):
    /// a larger difference is split into runs of equal estimated size. Each side then
    /// encodes a run's symbols within a core's cache (65,536 symbols: 3 MiB), where one
    /// IBLT over a large difference spends most of its time waiting on memory.
    pub iblt_run_symbols: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: 64 << 20,
            fanout: 16,
            iblt_run_symbols: 1 << 16,
        }
    }
}

/// The responder answers a differing range with its ids when it holds at most this many.
const ID_LIST_MAX: usize = 32;
/// The initiator ends a one-sided range with its id list at most this long.
const INIT_ID_LIST_MAX: usize = 16;
const SAMPLE_MIN: usize = 32;
const SAMPLE_TARGET: usize = 16;
const ONE_SIDED_SPLIT: u64 = 8;
/// Symbols per difference item needed by the rateless IBLT (Yang et al.).
const IBLT_OVERHEAD: f64 = 1.35;
const MAX_SYMBOLS: u64 = 1 << 26;
/// Bytes kept free for the entry that closes a truncated message: the infinite bound (1),
/// the mode (1), a count (at most 10) and a fingerprint (16).
const COVER_RESERVE: usize = 32;
/// Most own items in a range the responder reported empty for which an IBLT range around
/// it takes the range over (the IBLT then decodes them) instead of being cut in two.
const ABSORB_MAX: usize = 4;

/// Smallest effective [`Config::iblt_run_symbols`]; smaller values are raised to it.
const MIN_IBLT_RUN: usize = 1024;

/// Smallest effective [`Config::max_message_size`]; smaller values are raised to it.
pub const MIN_MESSAGE_SIZE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Fresh,
    Initiator,
    Responder,
}

/// What the initiator decided for one incoming range.
enum Act {
    /// Fingerprints equal: may be absorbed into an adjacent IBLT range.
    Equal,
    /// Resolved (findings already recorded). With `true` an adjacent IBLT range may absorb
    /// it (the IBLT then decodes the same findings again).
    Done(bool),
    /// Emit this entry; for an IBLT request, the state awaiting its answer.
    Emit(Entry, Option<Pending>),
    /// Split into children fingerprints.
    Split,
    /// Ask for IBLT symbols, with this difference estimate and the peer's item count.
    Iblt(f64, u64),
}

/// An IBLT range awaiting symbols: what arrived so far and the peer's item count in it.
struct Pending {
    symbols: Vec<Symbol>,
    their_count: u64,
    requested: u64,
    /// Symbols the estimate called for: requests continue up to it before growing.
    target: u64,
    /// Relative growth of the next batch when peeling fails (large for rough estimates).
    growth: f64,
}

/// Most symbols the responder produces for a range where it holds `n` items. The initiator
/// uses the same cap and falls back to splitting when peeling needs more.
fn symbol_cap(n: u64) -> u64 {
    n.saturating_mul(4).saturating_add(4096).min(MAX_SYMBOLS)
}

/// IBLT symbols one message may request in total, so that the answer fits the limit.
fn symbol_budget(max_message_size: usize) -> u64 {
    ((max_message_size - (max_message_size / 2).min(4096)) / SYMBOL_BYTES) as u64
}

/// The responder rejects a request whose symbols alone would leave less than this headroom.
const IBLT_HEADROOM: usize = 256;

/// One side of a reconciliation.
pub struct Reconciler<'a> {
    storage: &'a Storage,
    config: Config,
    role: Role,
    pending: HashMap<(Bound, Bound), Pending>,
    have: Vec<Id>,
    need: Vec<Id>,
    /// Everything in `have` and `need`: a range covered again after a truncated message
    /// may be resolved twice.
    found: IdSet<Id>,
}

fn fingerprint(items: &[Item]) -> [u8; 16] {
    let mut acc = [0u64; 4];
    for it in items {
        let l = iblt::limbs(&it.id);
        let mut carry = false;
        for (a, x) in acc.iter_mut().zip(l) {
            let (s1, o1) = a.overflowing_add(x);
            let (s2, o2) = s1.overflowing_add(u64::from(carry));
            *a = s2;
            carry = o1 || o2;
        }
    }
    let mut h = blake3::Hasher::new();
    for x in acc {
        h.update(&x.to_le_bytes());
    }
    h.update(&(items.len() as u64).to_le_bytes());
    let mut fp = [0u8; 16];
    fp.copy_from_slice(&h.finalize().as_bytes()[..16]);
    fp
}

fn take_sample(items: &[Item], shift: u8) -> Vec<u8> {
    let mut v: Vec<u8> = items
        .iter()
        .filter_map(|it| {
            let h = iblt::hash_limbs(&iblt::limbs(&it.id), iblt::SEED_SAMPLE);
            (shift == 0 || h >> (64 - u32::from(shift)) == 0).then_some(h as u8)
        })
        .collect();
    v.sort_unstable();
    v
}

/// Size of the multiset symmetric difference of two sorted lists.
fn sorted_mismatches(a: &[u8], b: &[u8]) -> u64 {
    let (mut i, mut j, mut n) = (0, 0, 0u64);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                n += 1;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                n += 1;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    n + (a.len() - i + b.len() - j) as u64
}

/// Output message under construction within the size limit: consecutive skips are merged,
/// and [`Out::push`] refuses an entry that would leave no room for [`Out::cover`].
struct Out {
    enc: wire::Encoder,
    /// A trailing skip not encoded yet (a following skip extends it).
    skip: Option<Bound>,
    /// Upper bound of the last entry.
    last: Bound,
    limit: usize,
    only_skips: bool,
}

impl Out {
    fn new(max_message_size: usize) -> Self {
        Out {
            enc: wire::Encoder::new(),
            skip: None,
            last: Bound::MIN,
            limit: max_message_size - COVER_RESERVE,
            only_skips: true,
        }
    }

    fn size(&self) -> usize {
        self.enc.len() + self.skip.map_or(0, |b| self.enc.skip_len(&b))
    }

    fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.size())
    }

    /// Appends an entry for the range from the last bound to `b`; `false` (and nothing
    /// changed) when it does not fit.
    #[must_use]
    fn push(&mut self, b: Bound, e: &Entry) -> bool {
        if let Entry::Skip = e {
            let old = self.skip.replace(b);
            if self.size() > self.limit {
                self.skip = old;
                return false;
            }
        } else {
            let mark = self.enc.mark();
            if let Some(s) = &self.skip {
                self.enc.push(s, &Entry::Skip);
            }
            self.enc.push(&b, e);
            if self.enc.len() > self.limit {
                self.enc.rollback(mark);
                return false;
            }
            self.skip = None;
            self.only_skips = false;
        }
        self.last = b;
        true
    }

    /// Ends a message that ran out of room: a fingerprint of the sender's `items` from the
    /// last bound on hands all remaining ranges to the next round.
    fn cover(&mut self, items: &[Item]) {
        if let Some(s) = self.skip.take() {
            self.enc.push(&s, &Entry::Skip);
        }
        let fp = Entry::Fingerprint {
            count: items.len() as u64,
            fp: fingerprint(items),
            sample: None,
        };
        self.enc.push(&Bound::INF, &fp);
        self.last = Bound::INF;
        self.only_skips = false;
    }

    fn finish(mut self) -> Vec<u8> {
        if let Some(s) = self.skip.take() {
            self.enc.push(&s, &Entry::Skip);
        }
        self.enc.finish()
    }
}

fn id_list(items: &[Item]) -> Entry {
    Entry::IdList(items.iter().map(|it| it.id).collect())
}

/// Pushes the sender's ids of a range ending at `upper`; when they do not all fit, as many
/// as fit, up to a bound inside the range. Returns whether the whole range was answered.
fn push_ids(out: &mut Out, upper: Bound, items: &[Item]) -> bool {
    if items.len().saturating_mul(32) < out.remaining() && out.push(upper, &id_list(items)) {
        return true;
    }
    // Besides the ids: a bound (at most 44 bytes), the mode and the length.
    let mut j = (out.remaining().saturating_sub(64) / 32).min(items.len().saturating_sub(1));
    while j > 0 {
        if out.push(
            Bound::between(&items[j - 1], &items[j]),
            &id_list(&items[..j]),
        ) {
            break;
        }
        j = j * 7 / 8;
    }
    false
}

/// Checks decoded ids against the local range: a "have" must be local, a "need" must not,
/// and none may repeat. Hashes only the decoded ids (far fewer than the range's) and scans
/// the range once.
fn check_diff(mine: &[Item], local: &[Id], remote: &[Id]) -> Result<(), Error> {
    let mut decoded: IdMap<&Id, bool> =
        IdMap::with_capacity_and_hasher(local.len() + remote.len(), Default::default());
    for (id, is_local) in local
        .iter()
        .map(|id| (id, true))
        .chain(remote.iter().map(|id| (id, false)))
    {
        if decoded.insert(id, is_local).is_some() {
            return Err(Error::InconsistentDecode);
        }
    }
    if decoded.is_empty() {
        return Ok(());
    }
    let mut met = 0;
    for it in mine {
        match decoded.get(&it.id) {
            Some(true) => met += 1,
            Some(false) => return Err(Error::InconsistentDecode),
            None => {}
        }
    }
    if met == local.len() {
        Ok(())
    } else {
        Err(Error::InconsistentDecode)
    }
}

/// Mutable state of [`Reconciler::assemble`].
struct Assembly {
    out: Out,
    /// IBLT symbols still available in this message.
    budget: u64,
    /// Open IBLT run: lower, upper, difference estimate, peer's count.
    run: Option<(Bound, Bound, f64, u64)>,
    /// Upper bounds of the ranges after the run's last IBLT range (equal, or resolved but
    /// absorbable).
    held: Vec<Bound>,
    factor: f64,
    growth: f64,
    /// Estimated difference of the IBLT ranges so far, and where the next run begins in it.
    seen: f64,
    cut: f64,
    step: f64,
}

impl<'a> Reconciler<'a> {
    /// A reconciler over `storage`. Call [`Reconciler::initiate`] to be the initiator, or
    /// just [`Reconciler::reconcile`] incoming messages to be the responder.
    pub fn new(storage: &'a Storage, config: Config) -> Self {
        let config = Config {
            fanout: config.fanout.max(2),
            max_message_size: config.max_message_size.max(MIN_MESSAGE_SIZE),
            iblt_run_symbols: config.iblt_run_symbols.max(MIN_IBLT_RUN),
        };
        Reconciler {
            storage,
            config,
            role: Role::Fresh,
            pending: HashMap::new(),
            have: Vec::new(),
            need: Vec::new(),
            found: IdSet::default(),
        }
    }

    /// Ids this (initiating) side has and the peer lacks, found so far.
    pub fn have(&self) -> &[Id] {
        &self.have
    }

    /// Ids the peer has and this (initiating) side lacks, found so far.
    pub fn need(&self) -> &[Id] {
        &self.need
    }

    /// Starts a reconciliation as the initiator; returns the first message.
    pub fn initiate(&mut self) -> Result<Vec<u8>, Error> {
        if self.role != Role::Fresh {
            return Err(Error::AlreadyStarted);
        }
        self.role = Role::Initiator;
        let mut out = Out::new(self.config.max_message_size);
        let items = self.storage.items();
        let complete = if items.len() <= ID_LIST_MAX {
            out.push(Bound::INF, &id_list(items))
        } else {
            self.split(&mut out, &Bound::MIN, &Bound::INF, items, false)
        };
        Ok(self.finish(out, complete))
    }

    /// Processes a peer message. The responder always returns `Some(reply)`; the initiator
    /// returns `None` once reconciliation is complete ([`Reconciler::have`] and
    /// [`Reconciler::need`] then hold the exact difference).
    pub fn reconcile(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if msg.len() > self.config.max_message_size {
            return Err(Error::MessageTooLarge {
                size: msg.len(),
                limit: self.config.max_message_size,
            });
        }
        if self.role == Role::Fresh {
            self.role = Role::Responder;
        }
        let entries = wire::decode(msg)?;
        match self.role {
            Role::Initiator => self.initiator_step(entries),
            _ => self.responder_step(entries).map(Some),
        }
    }

    /// Encodes `out`, first closing it with a cover when it is not `complete`.
    fn finish(&self, mut out: Out, complete: bool) -> Vec<u8> {
        if !complete {
            let items = self.storage.range(&out.last, &Bound::INF);
            out.cover(items);
        }
        out.finish()
    }

    /// Splits `items` (this side's items in `[lower, upper)`) into `fanout` children
    /// fingerprints. When there is time between a bound and the nearest item, the gap
    /// becomes its own range with an empty id list: the peer's items there (typically "the
    /// newest items") are then settled at once. Returns whether everything fit.
    fn split(
        &self,
        out: &mut Out,
        lower: &Bound,
        upper: &Bound,
        items: &[Item],
        with_samples: bool,
    ) -> bool {
        let (Some(first), Some(last)) = (items.first(), items.last()) else {
            return out.push(*upper, &Entry::IdList(Vec::new()));
        };
        if first.created_at > lower.time {
            if let Some(b) = Bound::leading(lower, first) {
                if !out.push(b, &Entry::IdList(Vec::new())) {
                    return false;
                }
            }
        }
        let trail = if upper.inf || upper.time > last.created_at {
            Bound::trailing(last, upper)
        } else {
            None
        };
        let n = items.len();
        let k = self.config.fanout.min(n);
        let mut start = 0;
        for i in 1..=k {
            let end = n * i / k;
            let b = if i == k {
                trail.unwrap_or(*upper)
            } else {
                Bound::between(&items[end - 1], &items[end])
            };
            let child = &items[start..end];
            let sample = (with_samples && child.len() >= SAMPLE_MIN).then(|| {
                let shift = (child.len() / SAMPLE_TARGET).ilog2().min(63) as u8;
                Sample {
                    shift,
                    values: take_sample(child, shift),
                }
            });
            let fp = Entry::Fingerprint {
                count: child.len() as u64,
                fp: fingerprint(child),
                sample,
            };
            if !out.push(b, &fp) {
                return false;
            }
            start = end;
        }
        trail.is_none() || out.push(*upper, &Entry::IdList(Vec::new()))
    }

    fn responder_step(&mut self, entries: Vec<(Bound, Entry)>) -> Result<Vec<u8>, Error> {
        // Which fingerprints differ. Samples are attached only when many do: a difference
        // clustered in a few ranges (such as the newest items) needs no size estimate.
        let mut equal = Vec::with_capacity(entries.len());
        let (mut fps, mut differing) = (0usize, 0usize);
        let mut lower = Bound::MIN;
        for (upper, entry) in &entries {
            let eq = match entry {
                Entry::Fingerprint { count, fp, .. } => {
                    let items = self.storage.range(&lower, upper);
                    let eq = *count == items.len() as u64 && fingerprint(items) == *fp;
                    fps += 1;
                    differing += usize::from(!eq);
                    eq
                }
                _ => false,
            };
            equal.push(eq);
            lower = *upper;
        }
        let spread = differing >= 2 && 2 * differing >= fps;
        let max = self.config.max_message_size;
        let mut out = Out::new(max);
        let mut lower = Bound::MIN;
        for ((upper, entry), eq) in entries.into_iter().zip(equal) {
            let items = self.storage.range(&lower, &upper);
            let complete = match entry {
                Entry::Skip => out.push(upper, &Entry::Skip),
                Entry::Fingerprint { count, .. } => {
                    if eq {
                        out.push(upper, &Entry::Skip)
                    } else if count == 0 || items.len() <= ID_LIST_MAX {
                        push_ids(&mut out, upper, items)
                    } else {
                        // Samples only help to size a two-sided difference; when the counts
                        // already differ a lot the initiator will keep splitting anyway.
                        let n = items.len() as u64;
                        let close = count.abs_diff(n) <= (n / 64).max(2 * n.isqrt());
                        self.split(&mut out, &lower, &upper, items, spread && close)
                    }
                }
                Entry::IdList(theirs) => {
                    let mine: IdSet<&Id> = items.iter().map(|it| &it.id).collect();
                    let listed: IdSet<&Id> = theirs.iter().collect();
                    let mut bitmap = vec![0u8; theirs.len().div_ceil(8)];
                    let mut all = true;
                    for (i, id) in theirs.iter().enumerate() {
                        if mine.contains(id) {
                            bitmap[i / 8] |= 1 << (i % 8);
                        } else {
                            all = false;
                        }
                    }
                    let extras: Vec<Id> = items
                        .iter()
                        .map(|it| it.id)
                        .filter(|id| !listed.contains(id))
                        .collect();
                    if all && extras.is_empty() {
                        out.push(upper, &Entry::Skip)
                    } else if extras.len().saturating_mul(32) >= out.remaining() {
                        push_ids(&mut out, upper, items)
                    } else {
                        let diff = Entry::IdListDiff {
                            bits: theirs.len(),
                            bitmap,
                            extras,
                        };
                        // Too large: this side's ids, as many as fit.
                        out.push(upper, &diff) || push_ids(&mut out, upper, items)
                    }
                }
                Entry::IbltRequest { start, count } => {
                    let total = start.saturating_add(count);
                    let cap = symbol_cap(items.len() as u64);
                    let too_big = usize::try_from(count)
                        .ok()
                        .and_then(|c| c.checked_mul(SYMBOL_BYTES))
                        .is_none_or(|b| b > max - IBLT_HEADROOM);
                    if total > cap || too_big {
                        return Err(Error::IbltRequestTooLarge(total));
                    }
                    // `total <= MAX_SYMBOLS`, so these conversions are lossless.
                    let ids = items.iter().map(|it| &it.id);
                    let symbols = iblt::encode(ids, start as usize, total as usize);
                    out.push(upper, &Entry::Iblt { start, symbols })
                }
                Entry::IdListDiff { .. } => return Err(Error::UnexpectedMode("IdListDiff")),
                Entry::Iblt { .. } => return Err(Error::UnexpectedMode("Iblt")),
            };
            if !complete {
                return Ok(self.finish(out, false));
            }
            lower = upper;
        }
        Ok(out.finish())
    }

    /// Pooled rate (per item) of two-sided differences. Two estimators, the larger wins:
    /// the samples (mismatches × 2^shift minus the count difference), and the fraction `f`
    /// of differing fingerprints in the message (Poisson: `λ = -ln(1 - f)` per range).
    /// Also returns the estimate's relative standard error, and for each entry whether it
    /// is a fingerprint equal to this side's (so that each is computed once).
    fn two_sided_rate(&self, entries: &[(Bound, Entry)]) -> (f64, f64, Vec<bool>) {
        let mut equal = Vec::with_capacity(entries.len());
        let (mut num, mut den, mut raw) = (0f64, 0f64, 0u64);
        let (mut fps, mut differing, mut size) = (0u64, 0u64, 0f64);
        let mut lower = Bound::MIN;
        for (upper, entry) in entries {
            let mut eq = false;
            if let Entry::Fingerprint { count, fp, sample } = entry {
                let mine = self.storage.range(&lower, upper);
                let one = count.abs_diff(mine.len() as u64);
                fps += 1;
                size += (*count).max(mine.len() as u64) as f64;
                eq = one == 0 && fingerprint(mine) == *fp;
                differing += u64::from(!eq);
                if let Some(s) = sample {
                    let own = take_sample(mine, s.shift);
                    // Values are 8 bits: a mismatch hides only behind a mismatch of the
                    // other side with the same value, a negligible downward bias here.
                    let found = sorted_mismatches(&s.values, &own);
                    raw += found;
                    let mismatches = found as f64;
                    let est = mismatches * (1u64 << s.shift) as f64;
                    // Unclipped: per-range estimates are noisy and clipping at zero biases
                    // the pooled rate upwards.
                    num += est - one as f64;
                    den += (*count).max(mine.len() as u64) as f64;
                }
            }
            equal.push(eq);
            lower = *upper;
        }
        let by_sample = if den > 0.0 { (num / den).max(0.0) } else { 0.0 };
        let by_fraction = if fps >= 4 && size > 0.0 {
            let lambda = if differing == fps {
                // Saturated: only a lower bound. Without samples to refine it, be
                // pessimistic (a quarter of each range) to avoid many growth rounds.
                let floor = (fps as f64).ln() + 1.0;
                if den == 0.0 {
                    floor.max(0.25 * size / fps as f64)
                } else {
                    floor
                }
            } else {
                -(1.0 - differing as f64 / fps as f64).ln()
            };
            lambda * fps as f64 / size
        } else {
            0.0
        };
        if den == 0.0 && fps < 4 {
            // No information: assume a sizeable difference and grow fast.
            (0.25, 0.5, equal)
        } else if by_sample >= by_fraction {
            (
                by_sample,
                (1.0 / (raw.max(1) as f64).sqrt()).clamp(0.03, 0.5),
                equal,
            )
        } else {
            (by_fraction, 0.3, equal)
        }
    }

    /// Records findings (a range may be resolved twice when a truncated message covered it
    /// again, so known ids are skipped).
    fn record(&mut self, have: impl IntoIterator<Item = Id>, need: impl IntoIterator<Item = Id>) {
        for id in have {
            if self.found.insert(id) {
                self.have.push(id);
            }
        }
        for id in need {
            if self.found.insert(id) {
                self.need.push(id);
            }
        }
    }

    fn decide_fingerprint(&mut self, mine: &[Item], count: u64, equal: bool, rate: f64) -> Act {
        let m = mine.len() as u64;
        if equal {
            return Act::Equal;
        }
        if m == 0 {
            return Act::Emit(Entry::IdList(Vec::new()), None);
        }
        if count == 0 {
            self.record(mine.iter().map(|it| it.id), []);
            return Act::Done(false);
        }
        let one = m.abs_diff(count);
        let two = rate * m.max(count) as f64;
        if one >= ONE_SIDED_SPLIT && one as f64 >= 2.0 * two {
            if mine.len() <= INIT_ID_LIST_MAX {
                Act::Emit(id_list(mine), None)
            } else if count <= ID_LIST_MAX as u64 {
                // The responder answers its own id list to an unsplit fingerprint.
                let fp = Entry::Fingerprint {
                    count: m,
                    fp: fingerprint(mine),
                    sample: None,
                };
                Act::Emit(fp, None)
            } else {
                Act::Split
            }
        } else {
            Act::Iblt((one as f64 + two).max(1.0), count)
        }
    }

    fn initiator_step(&mut self, entries: Vec<(Bound, Entry)>) -> Result<Option<Vec<u8>>, Error> {
        let (rate, rel_err, equal) = self.two_sided_rate(&entries);
        // Every range that had IBLT symbols requested must be answered in this message,
        // unless the responder ran out of room and covered it with a fingerprint.
        let mut expected = std::mem::take(&mut self.pending);
        let mut fingerprinted = Vec::new();
        let mut acts = Vec::with_capacity(entries.len());
        let mut lower = Bound::MIN;
        for ((upper, entry), equal) in entries.into_iter().zip(equal) {
            let mine = self.storage.range(&lower, &upper);
            let act = match entry {
                Entry::Skip => Act::Done(false),
                Entry::Fingerprint { count, .. } => {
                    fingerprinted.push((lower, upper));
                    self.decide_fingerprint(mine, count, equal, rate)
                }
                Entry::IdList(theirs) => {
                    let listed: IdSet<&Id> = theirs.iter().collect();
                    let set: IdSet<&Id> = mine.iter().map(|it| &it.id).collect();
                    let mut uniq = IdSet::default();
                    let need: Vec<Id> = theirs
                        .iter()
                        .filter(|id| !set.contains(id) && uniq.insert(**id))
                        .copied()
                        .collect();
                    let have: Vec<Id> = mine
                        .iter()
                        .map(|it| it.id)
                        .filter(|id| !listed.contains(id))
                        .collect();
                    self.record(have, need);
                    Act::Done(theirs.is_empty() && mine.len() <= ABSORB_MAX)
                }
                Entry::IdListDiff {
                    bits,
                    bitmap,
                    extras,
                } => {
                    if bits != mine.len() {
                        return Err(Error::BitmapLength {
                            got: bits,
                            expected: mine.len(),
                        });
                    }
                    let local: Vec<Id> = mine
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) == 0))
                        .map(|(_, it)| it.id)
                        .collect();
                    check_diff(mine, &local, &extras)?;
                    self.record(local, extras);
                    Act::Done(false)
                }
                Entry::Iblt { start, symbols } => {
                    let mut p = expected
                        .remove(&(lower, upper))
                        .ok_or(Error::UnexpectedIblt)?;
                    if start != p.symbols.len() as u64 || symbols.len() as u64 > p.requested {
                        return Err(Error::UnexpectedIblt);
                    }
                    p.symbols.extend(symbols);
                    let m = p.symbols.len();
                    let decoded = if m == 0 {
                        // A request deferred for lack of room in the previous message.
                        None
                    } else {
                        // The peer's symbols minus this side's, subtracted in place.
                        let mut diff = p.symbols.clone();
                        iblt::add(&mut diff, mine.iter().map(|it| &it.id), 0, u8::MAX);
                        iblt::peel(&mut diff)
                    };
                    if let Some((local, remote)) = decoded {
                        check_diff(mine, &local, &remote)?;
                        self.record(local, remote);
                        Act::Done(false)
                    } else {
                        let m = m as u64;
                        let more = if m < p.target {
                            p.target - m
                        } else {
                            ((m as f64 * p.growth) as u64).max(4)
                        };
                        let limit = symbol_cap(p.their_count)
                            .min(3 * (mine.len() as u64 + p.their_count) + 64);
                        if m >= limit {
                            // Peeling is not converging within sane bounds: fall back to
                            // range splitting (the responder splits or lists its ids).
                            let fp = Entry::Fingerprint {
                                count: mine.len() as u64,
                                fp: fingerprint(mine),
                                sample: None,
                            };
                            Act::Emit(fp, None)
                        } else {
                            Act::Emit(
                                Entry::IbltRequest {
                                    start: m,
                                    count: more.min(limit - m),
                                },
                                Some(p),
                            )
                        }
                    }
                }
                Entry::IbltRequest { .. } => return Err(Error::UnexpectedMode("IbltRequest")),
            };
            acts.push((lower, upper, act));
            lower = upper;
        }
        let covered = |(lo, hi): &(Bound, Bound)| {
            fingerprinted
                .iter()
                .any(|(a, b): &(Bound, Bound)| a <= lo && hi <= b)
        };
        if !expected.keys().all(covered) {
            return Err(Error::MissingIblt);
        }
        // First IBLT batch: the paper's ~1.35 symbols per difference, padded by one standard
        // error of the estimate; shortfalls are cheap to fix because the code is rateless.
        let growth = if rel_err >= 0.3 { 1.0 } else { 0.25 };
        Ok(self.assemble(acts, IBLT_OVERHEAD * (1.0 + rel_err), growth))
    }

    /// Turns decisions into the outgoing message, merging runs of IBLT ranges. `None` when
    /// there is nothing left to do.
    fn assemble(
        &mut self,
        acts: Vec<(Bound, Bound, Act)>,
        factor: f64,
        growth: f64,
    ) -> Option<Vec<u8>> {
        let total: f64 = acts
            .iter()
            .map(|(_, _, act)| match act {
                Act::Iblt(d, _) => *d,
                _ => 0.0,
            })
            .sum();
        // Runs of equal estimated difference, each within `iblt_run_symbols` (the last one
        // of a large difference is not left small: a small IBLT needs more symbols per item).
        let runs = (factor * total / self.config.iblt_run_symbols as f64).ceil();
        let step = if runs > 1.0 {
            total / runs
        } else {
            f64::INFINITY
        };
        let mut a = Assembly {
            out: Out::new(self.config.max_message_size),
            budget: symbol_budget(self.config.max_message_size),
            run: None,
            held: Vec::new(),
            factor,
            growth,
            seen: 0.0,
            cut: step,
            step,
        };
        let mut complete = true;
        for (lower, upper, act) in acts {
            let ok = match act {
                Act::Iblt(d, t) => {
                    let full = a.run.is_some() && a.seen + d / 2.0 > a.cut;
                    a.seen += d;
                    if full {
                        a.cut += a.step;
                    }
                    if full && !self.flush_run(&mut a) {
                        false
                    } else {
                        // Ranges held since the run's last IBLT range join it.
                        a.held.clear();
                        a.run = Some(match a.run {
                            Some((lo, _, d0, t0)) => (lo, upper, d0 + d, t0.saturating_add(t)),
                            None => (lower, upper, d, t),
                        });
                        true
                    }
                }
                Act::Equal | Act::Done(true) if a.run.is_some() => {
                    a.held.push(upper);
                    true
                }
                other => self.flush_run(&mut a) && self.emit(&mut a, lower, upper, other),
            };
            if !ok {
                complete = false;
                break;
            }
        }
        complete = complete && self.flush_run(&mut a);
        if complete && a.out.only_skips && self.pending.is_empty() {
            return None;
        }
        Some(self.finish(a.out, complete))
    }

    /// Emits a non-IBLT decision; `false` when it did not fit.
    fn emit(&mut self, a: &mut Assembly, lower: Bound, upper: Bound, act: Act) -> bool {
        match act {
            Act::Equal | Act::Done(_) | Act::Iblt(..) => a.out.push(upper, &Entry::Skip),
            Act::Emit(Entry::IbltRequest { start, count }, Some(mut p)) => {
                let count = count.min(a.budget);
                if !a.out.push(upper, &Entry::IbltRequest { start, count }) {
                    return false;
                }
                a.budget -= count;
                p.requested = count;
                self.pending.insert((lower, upper), p);
                true
            }
            Act::Emit(e, _) => a.out.push(upper, &e),
            Act::Split => {
                let mine = self.storage.range(&lower, &upper);
                self.split(&mut a.out, &lower, &upper, mine, false)
            }
        }
    }

    /// Emits the open IBLT run, if any, and the ranges held after it.
    fn flush_run(&mut self, a: &mut Assembly) -> bool {
        if let Some((lo, hi, d, their_count)) = a.run.take() {
            let target = ((a.factor * d).ceil() as u64)
                .saturating_add(4)
                .min(symbol_cap(their_count));
            let count = target.min(a.budget);
            if !a.out.push(hi, &Entry::IbltRequest { start: 0, count }) {
                return false;
            }
            a.budget -= count;
            self.pending.insert(
                (lo, hi),
                Pending {
                    symbols: Vec::new(),
                    their_count,
                    requested: count,
                    target,
                    growth: a.growth,
                },
            );
        }
        std::mem::take(&mut a.held)
            .into_iter()
            .all(|b| a.out.push(b, &Entry::Skip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: u8) -> Item {
        Item {
            created_at: u64::from(i),
            id: [i; 32],
        }
    }

    /// The IBLT requests of the initiator's second message (after the responder's split).
    fn first_requests(a: &Storage, b: &Storage, config: &Config) -> Vec<u64> {
        let mut init = Reconciler::new(a, config.clone());
        let mut resp = Reconciler::new(b, config.clone());
        let msg = init.initiate().expect("fresh");
        let reply = resp.reconcile(&msg).expect("valid").expect("a reply");
        let next = init.reconcile(&reply).expect("valid").expect("more to do");
        wire::decode(&next)
            .expect("valid")
            .into_iter()
            .filter_map(|(_, e)| match e {
                Entry::IbltRequest { count, .. } => Some(count),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_large_difference_is_asked_for_in_runs_of_equal_size() {
        let all: Vec<Item> = (0..40_000u32)
            .map(|i| Item {
                created_at: u64::from(i / 4),
                id: *blake3::hash(&i.to_le_bytes()).as_bytes(),
            })
            .collect();
        let a = Storage::from_items(all.iter().copied().filter(|it| it.id[0] % 10 != 0));
        let b = Storage::from_items(all.iter().copied().filter(|it| it.id[0] % 10 != 1));
        // About 8,000 differences: one IBLT by default.
        let whole = first_requests(&a, &b, &Config::default());
        assert_eq!(whole.len(), 1, "{whole:?}");
        let run = 2048;
        let config = Config {
            iblt_run_symbols: run,
            ..Config::default()
        };
        let runs = first_requests(&a, &b, &config);
        let (min, max) = (runs.iter().min(), runs.iter().max());
        let (Some(&min), Some(&max)) = (min, max) else {
            panic!("no IBLT requested");
        };
        assert!(runs.len() >= 4, "{runs:?}");
        // Equal runs within the bound (each estimate is a whole number of ranges).
        assert!(max <= run as u64 * 9 / 8 && min >= max * 3 / 4, "{runs:?}");
        let total: u64 = runs.iter().sum();
        assert!(
            total.abs_diff(whole[0]) <= 4 * runs.len() as u64 + 8,
            "{total} vs {whole:?}"
        );
    }

    #[test]
    fn check_diff_accepts_only_consistent_decodes() {
        let mine: Vec<Item> = (0..50).map(item).collect();
        let ok = check_diff(&mine, &[[3; 32], [40; 32]], &[[200; 32]]);
        assert_eq!(ok, Ok(()));
        assert_eq!(check_diff(&mine, &[], &[]), Ok(()));
        assert_eq!(check_diff(&[], &[], &[[1; 32]]), Ok(()));
        for (local, remote) in [
            // A "have" this side does not hold.
            (vec![[60u8; 32]], vec![]),
            // A "need" this side already holds.
            (vec![], vec![[7u8; 32]]),
            // Repeats, within and across the two lists.
            (vec![[3; 32], [3; 32]], vec![]),
            (vec![], vec![[90; 32], [90; 32]]),
            (vec![[3; 32]], vec![[3; 32]]),
        ] {
            assert_eq!(
                check_diff(&mine, &local, &remote),
                Err(Error::InconsistentDecode),
                "{local:?} {remote:?}"
            );
        }
    }
}
