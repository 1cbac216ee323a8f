//! A split-block Bloom filter over a run's keys, so that a lookup of a key no run holds (a
//! fresh receipt's order, nearly every lookup) reads no file. Keys are blake3 output, so their
//! own bytes serve as the hashes: the first 8 pick a 64-byte block (one cache line), the next
//! 8 one bit in each of its eight words. At [`BITS_PER_KEY`] about 0.8 % of absent keys pass.

use super::Key;

/// Filter bits per key.
pub(crate) const BITS_PER_KEY: usize = 10;

/// Words per block: one bit is set in each.
const WORDS: usize = 8;

/// Odd multipliers that spread the key's second half over each word's 64 bits (as in
/// Parquet's split-block filter).
const SALT: [u64; WORDS] = [
    0x47b6_137b_4497_4d91,
    0x8824_ad5b_a2b7_289d,
    0x7054_95c7_2df1_424b,
    0x9efc_4947_5c6b_fb31,
    0x5a9c_3e1f_0b2d_c8e7,
    0xd3a1_7c55_93e6_2f0b,
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
];

/// The filter of one run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Filter {
    words: Vec<u64>,
}

impl Filter {
    /// An empty filter sized for `keys` keys.
    pub fn for_keys(keys: usize) -> Filter {
        let blocks = (keys * BITS_PER_KEY).div_ceil(WORDS * 64).max(1);
        Filter {
            words: vec![0; blocks * WORDS],
        }
    }

    /// The filter stored as `blocks` blocks of little-endian words (`bytes` is
    /// [`Filter::byte_len`] of them long).
    pub fn from_bytes(bytes: &[u8]) -> Filter {
        Filter {
            words: bytes
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().expect("chunks of 8")))
                .collect(),
        }
    }

    /// Its blocks.
    pub fn blocks(&self) -> usize {
        self.words.len() / WORDS
    }

    /// The stored length of a filter of `blocks` blocks.
    pub fn byte_len(blocks: usize) -> usize {
        blocks * WORDS * 8
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    pub fn insert(&mut self, k: &Key) {
        let (block, g) = self.place(k);
        for (i, salt) in SALT.iter().enumerate() {
            self.words[block + i] |= 1 << (g.wrapping_mul(*salt) >> 58);
        }
    }

    /// False only if `k` was never inserted.
    pub fn may_contain(&self, k: &Key) -> bool {
        let (block, g) = self.place(k);
        SALT.iter()
            .enumerate()
            .all(|(i, salt)| self.words[block + i] & (1 << (g.wrapping_mul(*salt) >> 58)) != 0)
    }

    /// The first word of `k`'s block, and the half of `k` that picks its bits.
    fn place(&self, k: &Key) -> (usize, u64) {
        let h = u64::from_le_bytes(k[..8].try_into().expect("16-byte key"));
        let g = u64::from_le_bytes(k[8..].try_into().expect("16-byte key"));
        let block = ((h as u128 * self.blocks() as u128) >> 64) as usize;
        (block * WORDS, g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Key {
        let mut k = [0u8; 16];
        k.copy_from_slice(&blake3::hash(&i.to_le_bytes()).as_bytes()[..16]);
        k
    }

    #[test]
    fn holds_every_key_and_passes_few_others() {
        let n = 100_000;
        let mut f = Filter::for_keys(n);
        for i in 0..n as u64 {
            f.insert(&key(i));
        }
        assert!((0..n as u64).all(|i| f.may_contain(&key(i))));
        let passed = (n as u64..2 * n as u64)
            .filter(|i| f.may_contain(&key(*i)))
            .count();
        // ~0.8 % expected; 1.5 % leaves room for the sample.
        assert!(passed < n * 15 / 1000, "{passed} of {n} absent keys passed");
        assert_eq!(Filter::from_bytes(&f.to_bytes()), f);
        assert_eq!(f.to_bytes().len(), Filter::byte_len(f.blocks()));
    }

    #[test]
    fn an_empty_filter_passes_nothing() {
        let f = Filter::for_keys(0);
        assert_eq!(f.blocks(), 1);
        assert!(!(0..1000).any(|i| f.may_contain(&key(i))));
    }
}
