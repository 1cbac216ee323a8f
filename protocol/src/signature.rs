//! Strict ed25519, and a batch path that accepts exactly what the strict check accepts.
//!
//! The strict check is ed25519-dalek's `verify_strict` (cofactorless equation, canonical S,
//! R re-encoded and compared byte for byte, small-order A and R rejected) plus one more rule:
//! the key's y coordinate must be canonical (< p), so one key has one encoding.
//!
//! Batch verification (a random linear combination of the equations) is only equivalent to the
//! strict check when no point carries a torsion component: a small-order part can cancel
//! between signatures or vanish under a random coefficient. So the batch path first checks
//! each key and each R for torsion and sends any item that fails — never an honest one —
//! down the single strict path. See `docs/protocol.md` ("Signatures").

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::{Signature, VerifyingKey};
use thiserror::Error;

use crate::keys::PublicKey;

/// Why a signature or key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// The key bytes are not a point of the curve, or not its canonical encoding.
    #[error("public key is not a canonical curve point")]
    MalformedKey,
    /// The key has small order: anything verifies under it.
    #[error("public key has small order")]
    WeakKey,
    /// The signature does not verify under the strict rules.
    #[error("signature does not verify (strict ed25519)")]
    Invalid,
}

/// Whether 32 bytes encode y < p (the sign bit aside). Only 19 values of y fail.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    // p = 2^255 - 19: y >= p iff the top 31 bytes are all ones (sign bit aside)
    // and the lowest byte is >= 0xed.
    let top_all_ones = bytes[1..31].iter().all(|&b| b == 0xff) && bytes[31] & 0x7f == 0x7f;
    !(top_all_ones && bytes[0] >= 0xed)
}

/// Parses a key the strict way: a canonical encoding of a point that is not of small order.
pub fn parse_key(key: &PublicKey) -> Result<VerifyingKey, SignatureError> {
    if !canonical_y(&key.0) {
        return Err(SignatureError::MalformedKey);
    }
    let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| SignatureError::MalformedKey)?;
    if vk.is_weak() {
        return Err(SignatureError::WeakKey);
    }
    Ok(vk)
}

/// The strict single check.
pub fn verify_strict(
    key: &PublicKey,
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let vk = parse_key(key)?;
    vk.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| SignatureError::Invalid)
}

/// One item of a batch.
#[derive(Clone, Copy, Debug)]
pub struct BatchItem<'a> {
    /// The claimed signer.
    pub key: &'a PublicKey,
    /// The signed message.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a [u8; 64],
}

/// Decompresses and checks that the point has no torsion component: `[ℓ]P = 0`.
///
/// `[ℓ]P` is computed as `[ℓ-1]P + P` with the variable-time double-base multiplication (R and
/// keys are public, so constant time buys nothing), about half the cost of dalek's
/// constant-time `is_torsion_free`.
fn torsion_free_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    use curve25519_dalek::Scalar;
    let p = CompressedEdwardsY(*bytes).decompress()?;
    let l_minus_one = -Scalar::ONE;
    let q = EdwardsPoint::vartime_double_scalar_mul_basepoint(&l_minus_one, &p, &Scalar::ZERO);
    (q + p).is_identity().then_some(p)
}

/// Verifies many signatures at once. The answer for each item equals [`verify_strict`]'s
/// (up to the 2^-128 soundness error of any batch check, which only ever errs toward a
/// fallback, see the module docs).
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<Result<(), SignatureError>> {
    let mut out = vec![Ok(()); items.len()];
    // Items that qualify for the combined equation, by index.
    let mut batch: Vec<usize> = Vec::with_capacity(items.len());
    let mut keys: Vec<VerifyingKey> = Vec::with_capacity(items.len());
    // Keys repeat a lot (one seller signs every receipt): parse and check each key once.
    let mut seen: Vec<(PublicKey, Result<VerifyingKey, SignatureError>, bool)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let (vk, key_torsion_free) = match seen.iter().find(|(k, _, _)| k == it.key) {
            Some((_, vk, ok)) => (*vk, *ok),
            None => {
                let vk = parse_key(it.key);
                let ok = vk.is_ok() && torsion_free_point(&it.key.0).is_some();
                seen.push((*it.key, vk, ok));
                (vk, ok)
            }
        };
        let vk = match vk {
            Ok(vk) => vk,
            Err(e) => {
                out[i] = Err(e);
                continue;
            }
        };
        if !key_torsion_free {
            // A key with a torsion part (no honest key has one): the strict equation alone
            // decides, so take the single path.
            out[i] = verify_strict(it.key, it.message, it.signature);
            continue;
        }
        let r: [u8; 32] = it.signature[..32].try_into().unwrap_or([0; 32]);
        // With a torsion-free key, the strict check accepts only a torsion-free, canonically
        // encoded R; checking this here makes the combined equation exact.
        if !canonical_y(&r) || torsion_free_point(&r).is_none_or(|p| p.is_small_order()) {
            out[i] = Err(SignatureError::Invalid);
            continue;
        }
        batch.push(i);
        keys.push(vk);
    }
    if batch.is_empty() {
        return out;
    }
    let messages: Vec<&[u8]> = batch.iter().map(|&i| items[i].message).collect();
    let sigs: Vec<Signature> = batch
        .iter()
        .map(|&i| Signature::from_bytes(items[i].signature))
        .collect();
    if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_err() {
        // At least one is bad: find out which, one by one.
        for &i in &batch {
            out[i] = verify_strict(items[i].key, items[i].message, items[i].signature);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn strict_accepts_good_and_rejects_tampered() {
        let k = Keypair::from_seed([3; 32]);
        let sig = k.sign(b"hello");
        assert_eq!(verify_strict(&k.public(), b"hello", &sig), Ok(()));
        assert_eq!(
            verify_strict(&k.public(), b"hellO", &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn identity_key_is_weak_and_non_canonical_key_is_malformed() {
        let mut id = [0u8; 32];
        id[0] = 1; // y = 1: the identity, small order
        assert_eq!(
            verify_strict(&PublicKey(id), b"", &[0; 64]),
            Err(SignatureError::WeakKey)
        );
        let mut big = [0xffu8; 32];
        big[0] = 0xee;
        big[31] = 0x7f; // y = p + 1
        assert_eq!(
            verify_strict(&PublicKey(big), b"", &[0; 64]),
            Err(SignatureError::MalformedKey)
        );
    }

    /// A signature whose R carries an order-2 component: the cofactored equation holds, the
    /// strict one does not. A plain random-coefficient batch accepts it half the time (an even
    /// coefficient kills the torsion part); ours must reject it every time.
    #[test]
    fn batch_rejects_mixed_order_r_like_strict() {
        use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
        use curve25519_dalek::Scalar;
        use sha2::{Digest, Sha512};
        let seed = [9u8; 32];
        let k = Keypair::from_seed(seed);
        let h = Sha512::digest(seed);
        let mut a = [0u8; 32];
        a.copy_from_slice(&h[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        let a = Scalar::from_bytes_mod_order(a);
        assert_eq!((B * a).compress().0, k.public().0);
        let mut t = [0xffu8; 32]; // (0, -1): the point of order 2
        t[0] = 0xec;
        t[31] = 0x7f;
        let t = CompressedEdwardsY(t).decompress().unwrap();
        let pk = k.public();
        let mut sigs = Vec::new();
        let msgs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 8]).collect();
        for (i, m) in msgs.iter().enumerate() {
            let r = Scalar::from(1000u64 + i as u64);
            let big_r = (B * r + t).compress();
            let kk = Scalar::from_bytes_mod_order_wide(
                &Sha512::new()
                    .chain_update(big_r.as_bytes())
                    .chain_update(pk.0)
                    .chain_update(m)
                    .finalize()
                    .into(),
            );
            let s = r + kk * a;
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(big_r.as_bytes());
            sig[32..].copy_from_slice(s.as_bytes());
            assert!(verify_strict(&pk, m, &sig).is_err(), "strict rejects");
            sigs.push(sig);
        }
        let items: Vec<BatchItem> = (0..msgs.len())
            .map(|i| BatchItem {
                key: &pk,
                message: &msgs[i],
                signature: &sigs[i],
            })
            .collect();
        assert!(verify_batch(&items).iter().all(|r| r.is_err()));
        for it in &items {
            assert!(verify_batch(std::slice::from_ref(it))[0].is_err());
        }
    }

    #[test]
    fn batch_agrees_with_single() {
        let keys: Vec<Keypair> = (0..5u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<[u8; 64]> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % 5].sign(m))
            .collect();
        sigs[3][40] ^= 1;
        sigs[7][5] ^= 1;
        let pks: Vec<PublicKey> = (0..10).map(|i| keys[i % 5].public()).collect();
        let items: Vec<BatchItem> = (0..10)
            .map(|i| BatchItem {
                key: &pks[i],
                message: &msgs[i],
                signature: &sigs[i],
            })
            .collect();
        let got = verify_batch(&items);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(*r, verify_strict(&pks[i], &msgs[i], &sigs[i]), "item {i}");
        }
        assert!(got[3].is_err() && got[7].is_err() && got[0].is_ok());
    }
}
