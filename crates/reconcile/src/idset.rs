//! Hash sets and maps keyed by ids, with a cheap keyed hash: ids are digests, so a
//! multiply-xor chain under a per-process random key spreads them as well as SipHash for a
//! fraction of its cost (a peer cannot aim ids at buckets without knowing the key).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};

/// Builds [`IdHasher`]s sharing one random key.
#[derive(Clone, Debug)]
pub(crate) struct IdHash {
    key: u64,
}

impl Default for IdHash {
    fn default() -> Self {
        IdHash {
            key: RandomState::new().hash_one(0x7265_636f_6e63_696cu64),
        }
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher { state: self.key }
    }
}

/// Keyed multiply-xor hasher over 8-byte words.
pub(crate) struct IdHasher {
    state: u64,
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.state = (self.state ^ u64::from_le_bytes(w))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(31);
        }
    }

    fn finish(&self) -> u64 {
        crate::iblt::mix64(self.state)
    }
}

pub(crate) type IdSet<T> = HashSet<T, IdHash>;
pub(crate) type IdMap<K, V> = HashMap<K, V, IdHash>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differing_anywhere_hash_apart() {
        let b = IdHash::default();
        let base = [7u8; 32];
        let h = b.hash_one(base);
        for i in 0..32 {
            let mut id = base;
            id[i] ^= 1;
            assert_ne!(b.hash_one(id), h, "byte {i}");
        }
        let set: IdSet<[u8; 32]> = (0..1000u32)
            .map(|i| {
                let mut id = [0u8; 32];
                id[28..].copy_from_slice(&i.to_le_bytes());
                id
            })
            .collect();
        assert_eq!(set.len(), 1000);
    }
}
