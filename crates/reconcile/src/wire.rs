//! Message encoding. A message is `VERSION` followed by range entries `(upper bound, mode,
//! payload)`; the ranges are contiguous, start at the minimum bound and the last one ends at
//! the infinite bound.

use crate::iblt::{Symbol, SYMBOL_BYTES};
use crate::{Error, Id, Item};
use std::cmp::Ordering;

/// Protocol version byte.
pub(crate) const VERSION: u8 = 0x51;

const MODE_SKIP: u64 = 0;
const MODE_FINGERPRINT: u64 = 1;
const MODE_SAMPLED: u64 = 2;
const MODE_ID_LIST: u64 = 3;
const MODE_ID_LIST_DIFF: u64 = 4;
const MODE_IBLT_REQUEST: u64 = 5;
const MODE_IBLT: u64 = 6;

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

/// Encodes entries (bounds must be strictly increasing and end with [`Bound::INF`]).
pub(crate) fn encode(entries: &[(Bound, Entry)]) -> Vec<u8> {
    let mut buf = vec![VERSION];
    let mut prev_time = 0u64;
    for (b, e) in entries {
        if b.inf {
            put_varint(&mut buf, 0);
        } else {
            put_varint(&mut buf, u128::from(b.time.saturating_sub(prev_time)) + 1);
            prev_time = b.time;
            buf.push(b.len);
            buf.extend_from_slice(&b.prefix[..usize::from(b.len.min(32))]);
        }
        match e {
            Entry::Skip => put_varint(&mut buf, MODE_SKIP.into()),
            Entry::Fingerprint { count, fp, sample } => {
                let mode = if sample.is_some() {
                    MODE_SAMPLED
                } else {
                    MODE_FINGERPRINT
                };
                put_varint(&mut buf, mode.into());
                put_varint(&mut buf, (*count).into());
                buf.extend_from_slice(fp);
                if let Some(s) = sample {
                    buf.push(s.shift);
                    put_varint(&mut buf, s.values.len() as u128);
                    buf.extend_from_slice(&s.values);
                }
            }
            Entry::IdList(ids) => {
                put_varint(&mut buf, MODE_ID_LIST.into());
                put_ids(&mut buf, ids);
            }
            Entry::IdListDiff {
                bits,
                bitmap,
                extras,
            } => {
                put_varint(&mut buf, MODE_ID_LIST_DIFF.into());
                put_varint(&mut buf, *bits as u128);
                buf.extend_from_slice(bitmap);
                put_ids(&mut buf, extras);
            }
            Entry::IbltRequest { start, count } => {
                put_varint(&mut buf, MODE_IBLT_REQUEST.into());
                put_varint(&mut buf, (*start).into());
                put_varint(&mut buf, (*count).into());
            }
            Entry::Iblt { start, symbols } => {
                put_varint(&mut buf, MODE_IBLT.into());
                put_varint(&mut buf, (*start).into());
                put_varint(&mut buf, symbols.len() as u128);
                for s in symbols {
                    s.write(&mut buf);
                }
            }
        }
    }
    buf
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
    while r.remaining() > 0 {
        if last.inf {
            return Err(Error::TrailingData);
        }
        let b = r.bound(&mut prev_time)?;
        if b <= last {
            return Err(Error::BoundsNotIncreasing);
        }
        let entry = match r.varint64()? {
            MODE_SKIP => Entry::Skip,
            m @ (MODE_FINGERPRINT | MODE_SAMPLED) => {
                let count = r.varint64()?;
                let mut fp = [0u8; 16];
                fp.copy_from_slice(r.bytes(16)?);
                let sample = if m == MODE_SAMPLED {
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
