//! A blake3 Merkle tree over a list of leaves, shaped as RFC 6962/9162's (Certificate
//! Transparency): leaf hash = H(0x00 ‖ leaf), node hash = H(0x01 ‖ left ‖ right), the list
//! split at the largest power of two smaller than its length, the empty list hashing to H("").
//! Two nodes compare one hash; one participant is given an [`InclusionProof`].

use serde::{Deserialize, Serialize};

/// A 32-byte Merkle root.
pub type MerkleRoot = [u8; 32];

/// The hash of one leaf.
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[0]);
    h.update(leaf);
    *h.finalize().as_bytes()
}

fn node_hash(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(l);
    buf[33..].copy_from_slice(r);
    *blake3::hash(&buf).as_bytes()
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split_point(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn root_of_hashes(h: &[[u8; 32]]) -> [u8; 32] {
    match h.len() {
        0 => *blake3::hash(b"").as_bytes(),
        1 => h[0],
        n => {
            let k = split_point(n);
            node_hash(&root_of_hashes(&h[..k]), &root_of_hashes(&h[k..]))
        }
    }
}

/// The root over already-hashed leaves (see [`leaf_hash`]).
pub fn root(leaf_hashes: &[[u8; 32]]) -> MerkleRoot {
    root_of_hashes(leaf_hashes)
}

/// Proof that one leaf is at `index` of a list of `size` leaves with a given root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Position of the leaf, from 0.
    pub index: u64,
    /// Number of leaves.
    pub size: u64,
    /// Sibling hashes from the leaf up to the root.
    pub path: Vec<[u8; 32]>,
}

/// The inclusion proof of leaf `index` (RFC 9162 §2.1.3.1), or `None` if out of range.
pub fn prove(leaf_hashes: &[[u8; 32]], index: usize) -> Option<InclusionProof> {
    if index >= leaf_hashes.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut i) = (0usize, leaf_hashes.len(), index);
    // Walk down from the root, collecting the sibling subtree at each level; reverse at the end.
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if i < k {
            path.push(root_of_hashes(&leaf_hashes[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(root_of_hashes(&leaf_hashes[lo..lo + k]));
            lo += k;
            i -= k;
        }
    }
    path.reverse();
    Some(InclusionProof {
        index: index as u64,
        size: leaf_hashes.len() as u64,
        path,
    })
}

/// Checks that `leaf` (unhashed) is at the proof's position under `root` (RFC 9162 §2.1.3.2).
pub fn verify(root: &MerkleRoot, leaf: &[u8], proof: &InclusionProof) -> bool {
    if proof.index >= proof.size {
        return false;
    }
    let (mut fn_, mut sn) = (proof.index, proof.size - 1);
    let mut r = leaf_hash(leaf);
    for p in &proof.path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_of_every_size_proves() {
        for n in 0..40usize {
            let leaves: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 3]).collect();
            let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l)).collect();
            let r = root(&hashes);
            #[allow(clippy::needless_range_loop)]
            for i in 0..n {
                let p = prove(&hashes, i).unwrap();
                assert!(verify(&r, &leaves[i], &p), "n={n} i={i}");
                assert!(!verify(&r, b"other", &p));
                let mut bad = p.clone();
                bad.index = (bad.index + 1) % n as u64;
                if n > 1 {
                    assert!(!verify(&r, &leaves[i], &bad), "n={n} i={i} moved");
                }
            }
            assert!(prove(&hashes, n).is_none());
        }
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(root(&[]), *blake3::hash(b"").as_bytes());
        let h = leaf_hash(b"x");
        assert_eq!(root(&[h]), h);
    }
}
