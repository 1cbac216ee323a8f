//! Rateless invertible Bloom lookup table (Yang, Gilad, Alizadeh, SIGCOMM 2024).
//!
//! Coded symbol `j` holds the XOR of the ids, the XOR of their 64-bit checksums and the
//! count (mod 256) of the items mapped to it. Item `x` always maps to symbol 0 and then to
//! a deterministic pseudo-random sequence of indices whose density at index `j` is about
//! `1 / (1 + j/2)` (the paper's mapping, same recurrence as its reference implementation),
//! so any prefix of the infinite symbol stream is a valid IBLT and the sender can keep
//! streaming symbols until the receiver peels.

use crate::Id;

const SEED_SUM: u64 = 0x6a09_e667_f3bc_c908;
const SEED_MAP: u64 = 0xbb67_ae85_84ca_a73b;
/// Seed of the hash used for difference-estimation samples.
pub(crate) const SEED_SAMPLE: u64 = 0x3c6e_f372_fe94_f82b;

/// Bytes of one coded symbol on the wire: 32 (id XOR) + 8 (checksum XOR) + 1 (count mod 256).
pub(crate) const SYMBOL_BYTES: usize = 41;

pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The id as four little-endian 64-bit limbs.
pub(crate) fn limbs(id: &Id) -> [u64; 4] {
    let mut l = [0u64; 4];
    for (i, limb) in l.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&id[i * 8..i * 8 + 8]);
        *limb = u64::from_le_bytes(b);
    }
    l
}

/// Inverse of [`limbs`].
pub(crate) fn from_limbs(l: &[u64; 4]) -> Id {
    let mut id = [0u8; 32];
    for (i, limb) in l.iter().enumerate() {
        id[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
    }
    id
}

/// Seeded 64-bit hash of an id (ids are assumed to be cryptographic digests already).
pub(crate) fn hash_limbs(l: &[u64; 4], seed: u64) -> u64 {
    let mut h = seed;
    for x in l {
        h = mix64(h ^ x);
    }
    h
}

/// One coded symbol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub sum: [u64; 4],
    pub hash: u64,
    pub count: u8,
}

impl Symbol {
    fn apply(&mut self, l: &[u64; 4], h: u64, delta: u8) {
        for (s, x) in self.sum.iter_mut().zip(l) {
            *s ^= x;
        }
        self.hash ^= h;
        self.count = self.count.wrapping_add(delta);
    }

    fn is_zero(&self) -> bool {
        self.count == 0 && self.hash == 0 && self.sum == [0; 4]
    }

    fn is_pure(&self) -> bool {
        (self.count == 1 || self.count == 255) && hash_limbs(&self.sum, SEED_SUM) == self.hash
    }

    /// `self - other`, the symbol of the symmetric difference.
    pub fn sub(&self, other: &Symbol) -> Symbol {
        let mut s = *self;
        s.apply(&other.sum, other.hash, other.count.wrapping_neg());
        s
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        for x in &self.sum {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&self.hash.to_le_bytes());
        out.push(self.count);
    }

    /// Parses exactly [`SYMBOL_BYTES`] bytes.
    pub fn read(b: &[u8; SYMBOL_BYTES]) -> Symbol {
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        let mut h = [0u8; 8];
        h.copy_from_slice(&b[32..40]);
        Symbol {
            sum: limbs(&id),
            hash: u64::from_le_bytes(h),
            count: b[40],
        }
    }
}

/// The paper's index generator: next index `j' = j + ceil((j + 1.5) * (2^32 / sqrt(r + 1) - 1))`.
struct Mapping {
    prng: u64,
    last: u64,
}

impl Mapping {
    fn new(l: &[u64; 4]) -> Self {
        Mapping {
            prng: hash_limbs(l, SEED_MAP) | 1,
            last: 0,
        }
    }

    fn next_index(&mut self) -> u64 {
        let r = self.prng.wrapping_mul(0xda94_2042_e4dd_58b5);
        self.prng = r;
        let gap =
            ((self.last as f64 + 1.5) * (4_294_967_296.0 / ((r as f64) + 1.0).sqrt() - 1.0)).ceil();
        // `as` saturates; a zero gap would cancel the item out of a symbol, so force >= 1.
        let gap = if gap >= 1.0 { gap as u64 } else { 1 };
        self.last = self.last.saturating_add(gap);
        self.last
    }
}

/// Coded symbols `start..end` of `ids` (memory is proportional to `end - start`).
pub(crate) fn encode<'a>(
    ids: impl Iterator<Item = &'a Id>,
    start: usize,
    end: usize,
) -> Vec<Symbol> {
    let mut out = vec![Symbol::default(); end.saturating_sub(start)];
    if out.is_empty() {
        return out;
    }
    let (start, end) = (start as u64, end as u64);
    for id in ids {
        let l = limbs(id);
        let h = hash_limbs(&l, SEED_SUM);
        let mut map = Mapping::new(&l);
        let mut j = 0u64;
        while j < end {
            if j >= start {
                out[(j - start) as usize].apply(&l, h, 1);
            }
            j = map.next_index();
        }
    }
    out
}

/// Peels a difference stream (`remote - local`). On success returns `(local_only, remote_only)`.
pub(crate) fn peel(diff: &mut [Symbol]) -> Option<(Vec<Id>, Vec<Id>)> {
    let m = diff.len();
    let mut queue: Vec<usize> = (0..m).filter(|&j| diff[j].is_pure()).collect();
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let max_items = 2 * m + 16;
    while let Some(j) = queue.pop() {
        let s = diff[j];
        if !s.is_pure() {
            continue;
        }
        if local.len() + remote.len() >= max_items {
            return None;
        }
        if s.count == 1 {
            remote.push(from_limbs(&s.sum));
        } else {
            local.push(from_limbs(&s.sum));
        }
        let mut map = Mapping::new(&s.sum);
        let mut k = 0u64;
        while k < m as u64 {
            let sym = &mut diff[k as usize];
            sym.apply(&s.sum, s.hash, s.count.wrapping_neg());
            if sym.is_pure() {
                queue.push(k as usize);
            }
            k = map.next_index();
        }
    }
    if diff.iter().all(Symbol::is_zero) {
        Some((local, remote))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> Id {
        from_limbs(&[mix64(i), mix64(i + 1_000_000), i, 7])
    }

    #[test]
    fn peels_symmetric_difference() {
        let common: Vec<Id> = (0..500).map(id).collect();
        let a_only: Vec<Id> = (1000..1030).map(id).collect();
        let b_only: Vec<Id> = (2000..2020).map(id).collect();
        let m = 120;
        let a = encode(common.iter().chain(&a_only), 0, m);
        let b = encode(common.iter().chain(&b_only), 0, m);
        let tail = encode(common.iter().chain(&b_only), 50, m);
        assert_eq!(&b[50..], &tail[..]);
        let mut diff: Vec<Symbol> = b.iter().zip(&a).map(|(x, y)| x.sub(y)).collect();
        let (mut local, mut remote) =
            peel(&mut diff).expect("120 symbols suffice for 50 differences");
        local.sort();
        remote.sort();
        let (mut ea, mut eb) = (a_only.clone(), b_only.clone());
        ea.sort();
        eb.sort();
        assert_eq!(local, ea);
        assert_eq!(remote, eb);
    }

    #[test]
    fn density_decreases() {
        let ids: Vec<Id> = (0..20_000).map(id).collect();
        let s = encode(ids.iter(), 0, 64);
        assert_eq!(s[0].count as usize, 20_000 % 256);
        let mut map = Mapping::new(&limbs(&ids[0]));
        let idx: Vec<u64> = (0..5).map(|_| map.next_index()).collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn symbol_roundtrip() {
        let s = Symbol {
            sum: [1, 2, 3, 4],
            hash: 99,
            count: 250,
        };
        let mut v = Vec::new();
        s.write(&mut v);
        let arr: [u8; SYMBOL_BYTES] = v.as_slice().try_into().expect("41 bytes");
        assert_eq!(Symbol::read(&arr), s);
    }
}
