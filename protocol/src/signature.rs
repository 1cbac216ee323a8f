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

/// Decompresses and checks that the point has no torsion component.
fn torsion_free_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let p = CompressedEdwardsY(*bytes).decompress()?;
    p.is_torsion_free().then_some(p)
}

/// Verifies many signatures at once. The answer for each item equals [`verify_strict`]'s
/// (up to the 2^-128 soundness error of any batch check, which only ever errs toward a
/// fallback, see the module docs).
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<Result<(), SignatureError>> {
    let mut out = vec![Ok(()); items.len()];
    // Items that qualify for the combined equation, by index.
    let mut batch: Vec<usize> = Vec::with_capacity(items.len());
    let mut keys: Vec<VerifyingKey> = Vec::with_capacity(items.len());
    // Keys repeat a lot (one seller signs every receipt): check each key's torsion once.
    let mut key_torsion_free: Vec<(PublicKey, bool)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let vk = match parse_key(it.key) {
            Ok(vk) => vk,
            Err(e) => {
                out[i] = Err(e);
                continue;
            }
        };
        let key_ok = match key_torsion_free.iter().find(|(k, _)| k == it.key) {
            Some(&(_, ok)) => ok,
            None => {
                let ok = vk.to_edwards().is_torsion_free();
                key_torsion_free.push((*it.key, ok));
                ok
            }
        };
        if !key_ok {
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
