//! Message encoding. A message is `VERSION` followed by range entries `(upper bound, mode,
//! payload)`; the ranges are contiguous, start at the minimum bound and the last one ends at
//! the infinite bound.

use crate::iblt::{Symbol, SYMBOL_BYTES};
use crate::{Error, Id, Item};
use std::cmp::Ordering;

/// Protocol version byte.
pub(crate) const VERSION: u8 = 0x52;

const MODE_SKIP: u64 = 0;
const MODE_FINGERPRINT: u64 = 1;
const MODE_SAMPLED: u64 = 2;
const MODE_ID_LIST: u64 = 3;
const MODE_ID_LIST_DIFF: u64 = 4;
const MODE_IBLT_REQUEST: u64 = 5;
const MODE_IBLT: u64 = 6;
/// Modes from here on are fingerprints whose count is the previous fingerprint's count plus
/// a zigzag-coded difference: `MODE_FOLDED + 2 * zigzag(difference) + sampled`.
const MODE_FOLDED: u128 = 8;

/// A range boundary: items `< bound` are below it. Non-infinite bounds compare an item's
/// `(created_at, id)` with `(time, prefix padded with zeros)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Bound {
    pub inf: bool,
    pub time: u64,
    pub prefix: Id,
    pub len: u8,
}

impl Bound {
    pub const MIN: Bound = Bound {
        inf: false,
        time: 0,
        prefix: [0; 32],
        len: 0,
    };
    pub const INF: Bound = Bound {
        inf: true,
        time: 0,
        prefix: [0; 32],
        len: 0,
    };

    fn key(&self) -> (bool, u64, &Id) {
        (self.inf, self.time, &self.prefix)
    }

    /// Whether `item` lies strictly below this bound.
    pub fn above(&self, item: &Item) -> bool {
        self.inf || (item.created_at, &item.id) < (self.time, &self.prefix)
    }

    /// The shortest bound `b` with `prev < b <= next` (requires `prev < next`).
    pub fn between(prev: &Item, next: &Item) -> Bound {
        if prev.created_at != next.created_at {
            return Bound {
                inf: false,
                time: next.created_at,
                prefix: [0; 32],
                len: 0,
            };
        }
        let common = prev
            .id
            .iter()
            .zip(&next.id)
            .take_while(|(a, b)| a == b)
            .count();
        let len = (common + 1).min(32);
        let mut prefix = [0u8; 32];
        prefix[..len].copy_from_slice(&next.id[..len]);
        Bound {
            inf: false,
            time: next.created_at,
            prefix,
            len: len as u8,
        }
    }
}

impl Bound {
    /// The shortest bound `b` with `lower < b <= first` (a range below the first item), if
    /// any.
    pub fn leading(lower: &Bound, first: &Item) -> Option<Bound> {
        (0..=32usize).find_map(|len| {
            let mut prefix = [0u8; 32];
            prefix[..len].copy_from_slice(&first.id[..len]);
            let b = Bound {
                inf: false,
                time: first.created_at,
                prefix,
                len: len as u8,
            };
            (b > *lower).then_some(b)
        })
    }

    /// A short bound `b` with `last < b < upper` (a range above the last item), if any: the
    /// same time with the successor of the id's two-byte prefix, else the next millisecond.
    pub fn trailing(last: &Item, upper: &Bound) -> Option<Bound> {
        let v = u16::from_be_bytes([last.id[0], last.id[1]]);
        let mut prefix = [0u8; 32];
        let b = if let Some(next) = v.checked_add(1) {
            prefix[..2].copy_from_slice(&next.to_be_bytes());
            Bound {
                inf: false,
                time: last.created_at,
                prefix,
                len: 2,
            }
        } else {
            Bound {
                inf: false,
                time: last.created_at.checked_add(1)?,
                prefix,
                len: 0,
            }
        };
        (b < *upper).then_some(b)
    }
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// A bottom-rate sample of item hashes used to estimate the size of a difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    /// An item is sampled when the top `shift` bits of its sample hash are zero.
    pub shift: u8,
    /// Low 8 bits of the sampled hashes, sorted (chance matches bias the estimate ~3 % low).
    pub values: Vec<u8>,
}

/// One range entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Skip,
    Fingerprint {
        count: u64,
        fp: [u8; 16],
        sample: Option<Sample>,
    },
    IdList(Vec<Id>),
    /// Answer to an `IdList`: bit i set = the answerer has the i-th listed id; `extras` are
    /// the answerer's ids that were not listed.
    IdListDiff {
        bits: usize,
        bitmap: Vec<u8>,
        extras: Vec<Id>,
    },
    IbltRequest {
        start: u64,
        count: u64,
    },
    Iblt {
        start: u64,
        symbols: Vec<Symbol>,
    },
}

fn put_varint(buf: &mut Vec<u8>, mut v: u128) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf.push(b);
            return;
        }
        buf.push(b | 0x80);
    }
}

fn put_ids(buf: &mut Vec<u8>, ids: &[Id]) {
    put_varint(buf, ids.len() as u128);
    for id in ids {
        buf.extend_from_slice(id);
    }
}

fn varint_len(mut v: u128) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn zigzag(d: i128) -> u128 {
    ((d << 1) ^ (d >> 127)) as u128
}

fn unzigzag(z: u128) -> i128 {
    ((z >> 1) as i128) ^ -((z & 1) as i128)
}

/// Incremental message encoder; [`Encoder::mark`] / [`Encoder::rollback`] let the caller
/// try an entry and take it back when it does not fit its size budget.
pub(crate) struct Encoder {
    buf: Vec<u8>,
    prev_time: u64,
    prev_count: u64,
}

/// A saved encoder state.
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    len: usize,
    prev_time: u64,
    prev_count: u64,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder {
            buf: vec![VERSION],
            prev_time: 0,
            prev_count: 0,
        }
    }

    /// Bytes encoded so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn mark(&self) -> Mark {
        Mark {
            len: self.buf.len(),
            prev_time: self.prev_time,
            prev_count: self.prev_count,
        }
    }

    pub fn rollback(&mut self, m: Mark) {
        self.buf.truncate(m.len);
        self.prev_time = m.prev_time;
        self.prev_count = m.prev_count;
    }

    /// Encoded size of `b` followed by the `Skip` mode, after what was pushed so far.
    pub fn skip_len(&self, b: &Bound) -> usize {
        if b.inf {
            2
        } else {
            varint_len(u128::from(b.time.saturating_sub(self.prev_time)) + 1)
                + 1
                + usize::from(b.len.min(32))
                + 1
        }
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// Appends one entry (bounds must be strictly increasing and end with [`Bound::INF`]).
    pub fn push(&mut self, b: &Bound, e: &Entry) {
        let buf = &mut self.buf;
        if b.inf {
            put_varint(buf, 0);
        } else {
            put_varint(buf, u128::from(b.time.saturating_sub(self.prev_time)) + 1);
            self.prev_time = b.time;
            buf.push(b.len);
            buf.extend_from_slice(&b.prefix[..usize::from(b.len.min(32))]);
        }
        match e {
            Entry::Skip => put_varint(buf, MODE_SKIP.into()),
            Entry::Fingerprint { count, fp, sample } => {
                // The count is folded into the mode as a small difference from the previous
                // fingerprint's count when possible (children of a split have equal counts).
                let sampled = u128::from(sample.is_some());
                let z = zigzag(i128::from(*count) - i128::from(self.prev_count));
                if z < 60 {
                    put_varint(buf, MODE_FOLDED + 2 * z + sampled);
                } else {
                    put_varint(buf, (MODE_FINGERPRINT + sampled as u64).into());
                    put_varint(buf, (*count).into());
                }
                self.prev_count = *count;
                buf.extend_from_slice(fp);
                if let Some(s) = sample {
                    buf.push(s.shift);
                    put_varint(buf, s.values.len() as u128);
                    buf.extend_from_slice(&s.values);
                }
            }
            Entry::IdList(ids) => {
                put_varint(buf, MODE_ID_LIST.into());
                put_ids(buf, ids);
            }
            Entry::IdListDiff {
                bits,
                bitmap,
                extras,
            } => {
                put_varint(buf, MODE_ID_LIST_DIFF.into());
                put_varint(buf, *bits as u128);
                buf.extend_from_slice(bitmap);
                put_ids(buf, extras);
            }
            Entry::IbltRequest { start, count } => {
                put_varint(buf, MODE_IBLT_REQUEST.into());
                put_varint(buf, (*start).into());
                put_varint(buf, (*count).into());
            }
            Entry::Iblt { start, symbols } => {
                put_varint(buf, MODE_IBLT.into());
                put_varint(buf, (*start).into());
                put_varint(buf, symbols.len() as u128);
                for s in symbols {
                    s.write(buf);
                }
            }
        }
    }
}

/// Encodes entries (bounds must be strictly increasing and end with [`Bound::INF`]).
#[cfg(test)]
pub(crate) fn encode(entries: &[(Bound, Entry)]) -> Vec<u8> {
    let mut e = Encoder::new();
    for (b, x) in entries {
        e.push(b, x);
    }
    e.finish()
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(Error::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, Error> {
        Ok(self.bytes(1)?[0])
    }

    fn varint(&mut self) -> Result<u128, Error> {
        let mut v = 0u128;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            let part = u128::from(b & 0x7f);
            if shift >= 128 || (shift > 121 && part >> (128 - shift) != 0) {
                return Err(Error::VarintOverflow);
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    fn varint64(&mut self) -> Result<u64, Error> {
        u64::try_from(self.varint()?).map_err(|_| Error::VarintOverflow)
    }

    /// A length prefix for `unit`-byte elements, checked against the remaining bytes.
    fn len(&mut self, unit: usize) -> Result<usize, Error> {
        let n = self.varint64()?;
        match usize::try_from(n) {
            Ok(n) if n.checked_mul(unit).is_some_and(|b| b <= self.remaining()) => Ok(n),
            _ => Err(Error::Truncated),
        }
    }

    fn ids(&mut self) -> Result<Vec<Id>, Error> {
        let n = self.len(32)?;
        let raw = self.bytes(n * 32)?;
        Ok(raw
            .chunks_exact(32)
            .map(|c| {
                let mut id = [0u8; 32];
                id.copy_from_slice(c);
                id
            })
            .collect())
    }

    fn bound(&mut self, prev_time: &mut u64) -> Result<Bound, Error> {
        let t = self.varint()?;
        if t == 0 {
            return Ok(Bound::INF);
        }
        let time =
            u64::try_from(u128::from(*prev_time) + (t - 1)).map_err(|_| Error::TimeOverflow)?;
        *prev_time = time;
        let len = self.byte()?;
        if len > 32 {
            return Err(Error::BadPrefixLength(len));
        }
        let mut prefix = [0u8; 32];
        prefix[..usize::from(len)].copy_from_slice(self.bytes(usize::from(len))?);
        Ok(Bound {
            inf: false,
            time,
            prefix,
            len,
        })
    }
}

/// Decodes and validates a message.
pub(crate) fn decode(msg: &[u8]) -> Result<Vec<(Bound, Entry)>, Error> {
    let mut r = Reader { buf: msg, pos: 0 };
    let version = r.byte().map_err(|_| Error::Empty)?;
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let mut out = Vec::new();
    let mut last = Bound::MIN;
    let mut prev_time = 0u64;
    let mut prev_count = 0u64;
    while r.remaining() > 0 {
        if last.inf {
            return Err(Error::TrailingData);
        }
        let b = r.bound(&mut prev_time)?;
        if b <= last {
            return Err(Error::BoundsNotIncreasing);
        }
        let mode = r.varint()?;
        let entry = match u64::try_from(mode).unwrap_or(u64::MAX) {
            MODE_SKIP => Entry::Skip,
            m @ (MODE_FINGERPRINT | MODE_SAMPLED | 8..) => {
                let (count, sampled) = if m >= 8 {
                    let z = mode - MODE_FOLDED;
                    let count = i128::from(prev_count) + unzigzag(z >> 1);
                    let count = u64::try_from(count).map_err(|_| Error::VarintOverflow)?;
                    (count, z & 1 == 1)
                } else {
                    (r.varint64()?, m == MODE_SAMPLED)
                };
                prev_count = count;
                let mut fp = [0u8; 16];
                fp.copy_from_slice(r.bytes(16)?);
                let sample = if sampled {
                    let shift = r.byte()?;
                    if shift > 63 {
                        return Err(Error::BadSampleShift(shift));
                    }
                    let n = r.len(1)?;
                    let values = r.bytes(n)?.to_vec();
                    Some(Sample { shift, values })
                } else {
                    None
                };
                Entry::Fingerprint { count, fp, sample }
            }
            MODE_ID_LIST => Entry::IdList(r.ids()?),
            MODE_ID_LIST_DIFF => {
                let bits = usize::try_from(r.varint64()?).map_err(|_| Error::Truncated)?;
                let bitmap = r.bytes(bits.div_ceil(8))?.to_vec();
                let extras = r.ids()?;
                Entry::IdListDiff {
                    bits,
                    bitmap,
                    extras,
                }
            }
            MODE_IBLT_REQUEST => Entry::IbltRequest {
                start: r.varint64()?,
                count: r.varint64()?,
            },
            MODE_IBLT => {
                let start = r.varint64()?;
                let n = r.len(SYMBOL_BYTES)?;
                let raw = r.bytes(n * SYMBOL_BYTES)?;
                let symbols = raw
                    .chunks_exact(SYMBOL_BYTES)
                    .map(|c| {
                        let mut b = [0u8; SYMBOL_BYTES];
                        b.copy_from_slice(c);
                        Symbol::read(&b)
                    })
                    .collect();
                Entry::Iblt { start, symbols }
            }
            other => return Err(Error::UnknownMode(other)),
        };
        out.push((b, entry));
        last = b;
    }
    if out.is_empty() {
        return Err(Error::Empty);
    }
    if !last.inf {
        return Err(Error::MissingFinalBound);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(time: u64, p: u8) -> Bound {
        let mut prefix = [0u8; 32];
        prefix[0] = p;
        Bound {
            inf: false,
            time,
            prefix,
            len: u8::from(p != 0),
        }
    }

    fn fp(count: u64, sample: Option<Sample>) -> Entry {
        Entry::Fingerprint {
            count,
            fp: [count as u8; 16],
            sample,
        }
    }

    #[test]
    fn entries_roundtrip_with_folded_counts() {
        let entries = vec![
            (bound(5, 0), Entry::Skip),
            (bound(5, 9), fp(62_500, None)),
            (bound(90, 0), fp(62_500, None)),
            (bound(91, 3), fp(62_501, None)),
            (
                bound(1 << 40, 0),
                fp(
                    62_470,
                    Some(Sample {
                        shift: 3,
                        values: vec![1, 2, 200],
                    }),
                ),
            ),
            (bound(1 << 41, 0), fp(0, None)),
            (bound(1 << 42, 0), fp(u64::MAX, None)),
            (bound(1 << 43, 0), fp(u64::MAX - 29, None)),
            (bound(1 << 44, 0), Entry::IdList(vec![[7; 32]])),
            (bound(1 << 45, 0), Entry::IbltRequest { start: 3, count: 0 }),
            (Bound::INF, fp(1, None)),
        ];
        let msg = encode(&entries);
        assert_eq!(decode(&msg), Ok(entries.clone()));
        // Equal counts cost nothing beyond the mode byte.
        let plain = encode(&entries[1..3]);
        let mut e = Encoder::new();
        e.push(&entries[1].0, &entries[1].1);
        let after_first = e.len();
        e.push(&entries[2].0, &entries[2].1);
        assert_eq!(e.len() - after_first, 1 + 1 + 1 + 16);
        assert_eq!(e.finish(), plain);
    }

    #[test]
    fn rollback_restores_state() {
        let mut e = Encoder::new();
        e.push(&bound(10, 0), &fp(100, None));
        let mark = e.mark();
        e.push(&bound(1 << 50, 0), &fp(7, None));
        e.rollback(mark);
        e.push(&Bound::INF, &fp(100, None));
        assert_eq!(
            decode(&e.finish()),
            Ok(vec![
                (bound(10, 0), fp(100, None)),
                (Bound::INF, fp(100, None))
            ])
        );
    }

    #[test]
    fn gap_bounds() {
        let item = |t, b0, b1| Item {
            created_at: t,
            id: {
                let mut id = [0x55; 32];
                id[0] = b0;
                id[1] = b1;
                id
            },
        };
        let it = item(100, 4, 7);
        let lead = Bound::leading(&Bound::MIN, &it).expect("room below");
        assert_eq!((lead.time, lead.len), (100, 0));
        assert!(!lead.above(&it));
        let tight = Bound::between(&item(100, 4, 6), &it);
        assert_eq!(Bound::leading(&tight, &it).map(|b| b > tight), Some(true));
        let trail = Bound::trailing(&it, &Bound::INF).expect("room above");
        assert!(trail.above(&it) && !trail.above(&item(100, 4, 8)));
        let last = item(100, 0xff, 0xff);
        let trail = Bound::trailing(&last, &Bound::INF).expect("next millisecond");
        assert_eq!((trail.time, trail.len), (101, 0));
        let upper = Bound::between(&it, &item(100, 4, 8));
        assert_eq!(Bound::trailing(&it, &upper), None);
        assert_eq!(
            Bound::trailing(&item(u64::MAX, 0xff, 0xff), &Bound::INF),
            None
        );
    }
}
