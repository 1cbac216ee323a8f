//! Strict ed25519 with the **cofactored** equation, and a batch path that accepts exactly what
//! the single check accepts.
//!
//! Strict means: canonical encodings only (key and R with y < p, S < ℓ), no small-order key or
//! R, and `[8]([S]B − [k]A − R) = 0` with `k = SHA-512(R ‖ A ‖ M) mod ℓ`. The factor 8 kills
//! every torsion part, so a random linear combination of many equations (the batch) holds
//! exactly when each one does, up to a 2^-128 error. The cofactorless equation (ed25519-dalek's
//! `verify_strict`) has no cheap batch: torsion parts cancel or vanish in a combination, so each
//! R would need its own torsion check, which costs as much as a verification. Every signature
//! valid under the cofactorless rule is valid here; only signer-made signatures with torsion
//! components change verdict. Third parties still cannot malleate a signature (Chalkias,
//! Garillot, Nikolaenko, "Taming the many EdDSAs", 2020; ZIP-215). See `docs/protocol.md` §8.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha512};
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

/// Decompresses a canonical encoding of a point that is not of small order.
///
/// The other non-canonical encodings, x = 0 with the sign bit set, only exist for y = ±1,
/// which are both of small order.
fn strict_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !canonical_y(bytes) {
        return None;
    }
    CompressedEdwardsY(*bytes)
        .decompress()
        .filter(|p| !p.is_small_order())
}

/// Parses a key the strict way: a canonical encoding of a point that is not of small order.
/// Returns the decompressed point, so that callers decompress it once.
pub fn parse_key(key: &PublicKey) -> Result<EdwardsPoint, SignatureError> {
    if !canonical_y(&key.0) {
        return Err(SignatureError::MalformedKey);
    }
    let point = CompressedEdwardsY(key.0)
        .decompress()
        .ok_or(SignatureError::MalformedKey)?;
    if point.is_small_order() {
        return Err(SignatureError::WeakKey);
    }
    Ok(point)
}

/// A signature whose encodings passed, with what the equation needs.
#[derive(Clone, Copy)]
struct Parsed {
    /// The 32 R bytes as given (they are canonical).
    r_bytes: [u8; 32],
    /// −R: the equations add it.
    neg_r: EdwardsPoint,
    /// S, canonical: its bytes are the signature's.
    s: Scalar,
    /// k = SHA-512(R ‖ A ‖ M) mod ℓ.
    k: Scalar,
}

/// The encoding checks of a signature (canonical S, canonical R not of small order) and k.
fn parse_signature(
    key: &PublicKey,
    message: &[u8],
    signature: &[u8; 64],
) -> Result<Parsed, SignatureError> {
    let mut r_bytes = [0u8; 32];
    let mut s_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    s_bytes.copy_from_slice(&signature[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or(SignatureError::Invalid)?;
    let r = strict_point(&r_bytes).ok_or(SignatureError::Invalid)?;
    let hash = Sha512::new()
        .chain_update(r_bytes)
        .chain_update(key.0)
        .chain_update(message)
        .finalize();
    let k = Scalar::from_bytes_mod_order_wide(&hash.into());
    Ok(Parsed {
        r_bytes,
        neg_r: -r,
        s,
        k,
    })
}

/// The cofactored equation of one signature: `[8]([S]B − [k]A − R) = 0`.
fn equation_holds(neg_a: &EdwardsPoint, sig: &Parsed) -> bool {
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&sig.k, neg_a, &sig.s);
    (sb_minus_ka + sig.neg_r).mul_by_cofactor().is_identity()
}

/// The strict single check: canonical key, S and R, no small-order key or R, and the
/// cofactored equation.
pub fn verify_strict(
    key: &PublicKey,
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let neg_a = -parse_key(key)?;
    let sig = parse_signature(key, message, signature)?;
    if equation_holds(&neg_a, &sig) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
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

/// A distinct key of a batch.
struct Key {
    bytes: PublicKey,
    neg_a: EdwardsPoint,
}

/// An item whose encodings passed, waiting for the equation.
struct Pending {
    /// Its index in the caller's items.
    item: usize,
    /// Its key's index in the batch's distinct keys.
    key: usize,
    sig: Parsed,
}

/// The blake3 derive-key context of the batch coefficients.
const COEFFICIENT_CONTEXT: &str = "passalong 2026-11-23 ed25519 cofactored batch coefficients";

/// 128-bit coefficients, one per item, from a hash of everything the equations contain: nobody
/// can choose them without changing the batch, and the crate needs no randomness.
fn coefficients(batch: &[Pending], keys: &[Key]) -> Vec<Scalar> {
    let mut h = blake3::Hasher::new_derive_key(COEFFICIENT_CONTEXT);
    h.update(&(batch.len() as u64).to_le_bytes());
    for p in batch {
        let a = keys.get(p.key).map_or([0; 32], |k| k.bytes.0);
        h.update(&p.sig.r_bytes);
        h.update(&a);
        h.update(p.sig.s.as_bytes());
        h.update(p.sig.k.as_bytes());
    }
    let mut xof = h.finalize_xof();
    batch
        .iter()
        .map(|_| {
            let mut z = [0u8; 16];
            xof.fill(&mut z);
            Scalar::from(u128::from_le_bytes(z))
        })
        .collect()
}

/// Whether `[8]([Σ z_i S_i]B − Σ_A [Σ z_i k_i]A − Σ z_i R_i) = 0`: the items' equations combined,
/// with the A terms of each distinct key gathered into one.
fn combined_holds(batch: &[Pending], keys: &[Key]) -> bool {
    #[cfg(test)]
    COMBINED_CHECKS.with(|c| c.set(c.get() + 1));
    let z = coefficients(batch, keys);
    let mut b_coefficient = Scalar::ZERO;
    // Σ z_i k_i per key, and the order in which keys first appear.
    let mut key_coefficients: Vec<Option<Scalar>> = vec![None; keys.len()];
    let mut key_order: Vec<usize> = Vec::new();
    for (p, z) in batch.iter().zip(&z) {
        b_coefficient += z * p.sig.s;
        if let Some(slot) = key_coefficients.get_mut(p.key) {
            match slot {
                Some(c) => *c += z * p.sig.k,
                None => {
                    *slot = Some(z * p.sig.k);
                    key_order.push(p.key);
                }
            }
        }
    }
    let n = 1 + key_order.len() + batch.len();
    let mut scalars = Vec::with_capacity(n);
    let mut points = Vec::with_capacity(n);
    scalars.push(b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    for &k in &key_order {
        if let (Some(Some(c)), Some(key)) = (key_coefficients.get(k), keys.get(k)) {
            scalars.push(*c);
            points.push(key.neg_a);
        }
    }
    // The 128-bit z_i multiply −R_i (not −z_i with R_i): short scalars cost fewer additions.
    scalars.extend(z);
    points.extend(batch.iter().map(|p| p.sig.neg_r));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// Marks the bad items of `batch` in `out`, and says whether there were none. If the combined
/// equation fails, the halves are checked in turn; a single item gets the single equation.
/// `fails`: the caller knows the combination fails (its other half passed), so skip checking.
fn settle(
    batch: &[Pending],
    keys: &[Key],
    fails: bool,
    out: &mut [Result<(), SignatureError>],
) -> bool {
    if let [one] = batch {
        let ok = keys
            .get(one.key)
            .is_some_and(|k| equation_holds(&k.neg_a, &one.sig));
        if !ok {
            if let Some(o) = out.get_mut(one.item) {
                *o = Err(SignatureError::Invalid);
            }
        }
        return ok;
    }
    if batch.is_empty() || (!fails && combined_holds(batch, keys)) {
        return true;
    }
    let (left, right) = batch.split_at(batch.len() / 2);
    let left_clean = settle(left, keys, false, out);
    // The whole fails and the left half is clean: the right half fails.
    let right_clean = settle(right, keys, left_clean, out);
    left_clean && right_clean
}

/// Public keys decompressed by earlier batches. A seller signs every receipt of its market,
/// and decompressing a key is a square root (about a fifth of a bare verification): a store
/// that checks batch after batch keeps them here. Bounded: emptied when full.
#[derive(Default)]
pub struct KeyCache {
    keys: Mutex<FxHashMap<PublicKey, EdwardsPoint>>,
}

impl KeyCache {
    /// Keys kept at most.
    pub const CAPACITY: usize = 4096;

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<PublicKey, EdwardsPoint>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`parse_key`], remembered for keys that pass.
    pub fn parse(&self, key: &PublicKey) -> Result<EdwardsPoint, SignatureError> {
        if let Some(point) = self.lock().get(key) {
            return Ok(*point);
        }
        let point = parse_key(key)?;
        let mut keys = self.lock();
        if keys.len() >= Self::CAPACITY {
            keys.clear();
        }
        keys.insert(*key, point);
        Ok(point)
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Verifies many signatures at once. The answer for each item equals [`verify_strict`]'s, up
/// to the 2^-128 soundness error of the combined equation. Encoding failures are found per
/// item; the equations of the rest are checked as one, and, if that fails, by halves.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<Result<(), SignatureError>> {
    verify_batch_parsing(items, parse_key)
}

/// [`verify_batch`], taking decompressed keys from (and adding them to) `keys`.
pub fn verify_batch_cached(
    items: &[BatchItem<'_>],
    keys: &KeyCache,
) -> Vec<Result<(), SignatureError>> {
    verify_batch_parsing(items, |k| keys.parse(k))
}

fn verify_batch_parsing(
    items: &[BatchItem<'_>],
    parse_key: impl Fn(&PublicKey) -> Result<EdwardsPoint, SignatureError>,
) -> Vec<Result<(), SignatureError>> {
    let mut out = vec![Ok(()); items.len()];
    let mut keys: Vec<Key> = Vec::new();
    // Keys repeat (one seller signs every receipt): parse each once.
    let mut key_index: FxHashMap<PublicKey, Result<usize, SignatureError>> = FxHashMap::default();
    let mut batch: Vec<Pending> = Vec::with_capacity(items.len());
    for (i, (it, o)) in items.iter().zip(out.iter_mut()).enumerate() {
        let key = *key_index.entry(*it.key).or_insert_with(|| {
            parse_key(it.key).map(|a| {
                keys.push(Key {
                    bytes: *it.key,
                    neg_a: -a,
                });
                keys.len() - 1
            })
        });
        match key.and_then(|key| Ok((key, parse_signature(it.key, it.message, it.signature)?))) {
            Ok((key, sig)) => batch.push(Pending { item: i, key, sig }),
            Err(e) => *o = Err(e),
        }
    }
    settle(&batch, &keys, false, &mut out);
    out
}

#[cfg(test)]
thread_local! {
    /// Combined equations checked on this thread, for the bisection test.
    static COMBINED_CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
    use proptest::prelude::*;

    /// An encoding of a point of order 8.
    const ORDER_8: &str = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05";

    /// The eight points of small order, as encoded in the literature.
    const SMALL_ORDER: [&str; 8] = [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        ORDER_8,
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    ];

    /// ℓ, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    fn bytes32(h: &str) -> [u8; 32] {
        hex::decode(h).unwrap().try_into().unwrap()
    }

    fn t8() -> EdwardsPoint {
        let t = CompressedEdwardsY(bytes32(ORDER_8)).decompress().unwrap();
        assert!(!(t * Scalar::from(4u8)).is_identity() && t.mul_by_cofactor().is_identity());
        t
    }

    /// The secret scalar a of a seed (RFC 8032: clamped low half of SHA-512(seed)).
    fn secret(seed: [u8; 32]) -> Scalar {
        ed25519_dalek::SigningKey::from_bytes(&seed).to_scalar()
    }

    /// A signature made by hand: R = [r]B + torsion, S = r + k·a, k over the given key bytes.
    fn craft(a: Scalar, key: &PublicKey, r: u64, torsion: EdwardsPoint, m: &[u8]) -> [u8; 64] {
        let r = Scalar::from(r);
        let big_r = (B * r + torsion).compress();
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(big_r.as_bytes())
                .chain_update(key.0)
                .chain_update(m)
                .finalize()
                .into(),
        );
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice((r + k * a).as_bytes());
        sig
    }

    /// ed25519-dalek's cofactorless `verify_strict`: the old rule.
    fn cofactorless(key: &PublicKey, m: &[u8], sig: &[u8; 64]) -> bool {
        ed25519_dalek::VerifyingKey::from_bytes(&key.0)
            .and_then(|vk| vk.verify_strict(m, &ed25519_dalek::Signature::from_bytes(sig)))
            .is_ok()
    }

    fn items<'a>(
        keys: &'a [PublicKey],
        msgs: &'a [Vec<u8>],
        sigs: &'a [[u8; 64]],
    ) -> Vec<BatchItem<'a>> {
        (0..sigs.len())
            .map(|i| BatchItem {
                key: &keys[i],
                message: &msgs[i],
                signature: &sigs[i],
            })
            .collect()
    }

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
        for h in SMALL_ORDER {
            assert_eq!(
                verify_strict(&PublicKey(bytes32(h)), b"", &[0; 64]),
                Err(SignatureError::WeakKey),
                "{h}"
            );
        }
    }

    #[test]
    fn non_canonical_s_and_r_are_rejected() {
        let k = Keypair::from_seed([4; 32]);
        let sig = k.sign(b"m");
        // S = ℓ: the canonical check refuses it even though [ℓ]B = 0.
        let mut s_is_l = sig;
        s_is_l[32..].copy_from_slice(&L);
        assert_eq!(
            verify_strict(&k.public(), b"m", &s_is_l),
            Err(SignatureError::Invalid)
        );
        // Every R with y >= p.
        for low in 0xedu8..=0xff {
            let mut r = [0xffu8; 32];
            r[0] = low;
            r[31] = 0x7f;
            let mut bad = sig;
            bad[..32].copy_from_slice(&r);
            assert_eq!(
                verify_strict(&k.public(), b"m", &bad),
                Err(SignatureError::Invalid)
            );
        }
    }

    /// A signature whose R carries an order-8 component, made by the key's owner: the
    /// cofactored equation holds, so both paths accept it; the cofactorless one (the old rule,
    /// ed25519-dalek's `verify_strict`) rejects it. A wrong S is still rejected by both paths.
    #[test]
    fn mixed_order_r_is_accepted_by_single_and_batch_but_not_cofactorless() {
        let seed = [9u8; 32];
        let k = Keypair::from_seed(seed);
        let a = secret(seed);
        let pk = k.public();
        assert_eq!((B * a).compress().0, pk.0);
        let t = t8();
        let msgs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 8]).collect();
        let mut sigs: Vec<[u8; 64]> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                craft(
                    a,
                    &pk,
                    1000 + i as u64,
                    t * Scalar::from(1 + i as u64 % 7),
                    m,
                )
            })
            .collect();
        for (m, sig) in msgs.iter().zip(&sigs) {
            assert_eq!(verify_strict(&pk, m, sig), Ok(()));
            assert!(!cofactorless(&pk, m, sig), "the old rule rejects it");
        }
        let keys = vec![pk; msgs.len()];
        assert!(verify_batch(&items(&keys, &msgs, &sigs))
            .iter()
            .all(Result::is_ok));
        sigs[5][40] ^= 1;
        let got = verify_batch(&items(&keys, &msgs, &sigs));
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.is_ok(), i != 5, "item {i}");
            assert_eq!(*r, verify_strict(&keys[i], &msgs[i], &sigs[i]));
        }
    }

    /// A key with an order-8 component (A + T), signed by the owner of a: accepted.
    #[test]
    fn mixed_order_key_is_accepted() {
        let a = secret([10; 32]);
        let key = PublicKey((B * a + t8()).compress().0);
        let sig = craft(a, &key, 77, EdwardsPoint::default(), b"m");
        assert_eq!(verify_strict(&key, b"m", &sig), Ok(()));
        assert!(!cofactorless(&key, b"m", &sig));
        let item = BatchItem {
            key: &key,
            message: b"m",
            signature: &sig,
        };
        assert_eq!(verify_batch(&[item, item]), vec![Ok(()), Ok(())]);
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
        let got = verify_batch(&items(&pks, &msgs, &sigs));
        for (i, r) in got.iter().enumerate() {
            assert_eq!(*r, verify_strict(&pks[i], &msgs[i], &sigs[i]), "item {i}");
        }
        assert!(got[3].is_err() && got[7].is_err() && got[0].is_ok());
    }

    /// One bad signature among 64 is found by halving: about 2·log2(64) combined checks of
    /// shrinking halves and one single equation, not 64 single checks.
    #[test]
    fn one_bad_in_64_is_found_by_bisection() {
        let k = Keypair::from_seed([5; 32]);
        let msgs: Vec<Vec<u8>> = (0..64u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let keys = vec![k.public(); 64];
        for bad in [0, 21, 37, 63] {
            let mut sigs: Vec<[u8; 64]> = msgs.iter().map(|m| k.sign(m)).collect();
            sigs[bad][50] ^= 0x10;
            COMBINED_CHECKS.with(|c| c.set(0));
            let got = verify_batch(&items(&keys, &msgs, &sigs));
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.is_ok(), i != bad, "item {i}");
            }
            let checks = COMBINED_CHECKS.with(std::cell::Cell::get);
            assert!((6..=12).contains(&checks), "{checks} combined checks");
        }
    }

    #[test]
    fn empty_batch() {
        assert!(verify_batch(&[]).is_empty());
    }

    /// What a proptest batch item is made of.
    #[derive(Debug, Clone)]
    enum Case {
        Valid,
        WrongMessage,
        FlipS(usize),
        FlipR(usize),
        /// Signed by the owner with R = [r]B + [t]T8: valid.
        TorsionR(u8),
        /// As `TorsionR`, with S off by one: invalid.
        TorsionRWrongS(u8),
        SmallOrderR(usize),
        NonCanonicalR(u8),
        SPlusL,
        SmallOrderKey(usize),
        NonCanonicalKey(u8),
        /// The key A + [t]T8, signed by the owner of a: valid.
        MixedOrderKey(u8),
        /// A copy of an earlier item.
        Duplicate(usize),
    }

    fn case() -> impl Strategy<Value = Case> {
        prop_oneof![
            4 => Just(Case::Valid),
            1 => Just(Case::WrongMessage),
            1 => (32..64usize).prop_map(Case::FlipS),
            1 => (0..32usize).prop_map(Case::FlipR),
            2 => (1..8u8).prop_map(Case::TorsionR),
            1 => (0..8u8).prop_map(Case::TorsionRWrongS),
            1 => (0..8usize).prop_map(Case::SmallOrderR),
            1 => (0xedu8..=0xff).prop_map(Case::NonCanonicalR),
            1 => Just(Case::SPlusL),
            1 => (0..8usize).prop_map(Case::SmallOrderKey),
            1 => (0xedu8..=0xff).prop_map(Case::NonCanonicalKey),
            1 => (1..8u8).prop_map(Case::MixedOrderKey),
            2 => any::<usize>().prop_map(Case::Duplicate),
        ]
    }

    /// Builds (key, message, signature) for one case, signer `who` of three.
    fn build(
        c: &Case,
        who: usize,
        nonce: u64,
        done: &[(PublicKey, Vec<u8>, [u8; 64])],
    ) -> (PublicKey, Vec<u8>, [u8; 64]) {
        let seed = [who as u8 + 20; 32];
        let kp = Keypair::from_seed(seed);
        let a = secret(seed);
        let pk = kp.public();
        let m = format!("message {nonce}").into_bytes();
        let good = kp.sign(&m);
        let t = t8();
        let mut sig = good;
        let mut key = pk;
        let mut msg = m.clone();
        match c {
            Case::Valid => {}
            Case::WrongMessage => msg.push(b'!'),
            Case::FlipS(bit) | Case::FlipR(bit) => sig[*bit] ^= 1 << (nonce % 8),
            Case::TorsionR(i) => sig = craft(a, &pk, nonce, t * Scalar::from(*i), &m),
            Case::TorsionRWrongS(i) => {
                sig = craft(a, &pk, nonce, t * Scalar::from(*i), &m);
                let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
                sig[32..].copy_from_slice((s + Scalar::ONE).as_bytes());
            }
            Case::SmallOrderR(i) => sig[..32].copy_from_slice(&bytes32(SMALL_ORDER[*i])),
            Case::NonCanonicalR(low) => {
                sig[..32].copy_from_slice(&[0xff; 32]);
                sig[0] = *low;
                sig[31] = 0x7f | (nonce as u8 & 0x80);
            }
            Case::SPlusL => {
                let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
                // s + ℓ as a 256-bit integer, when it fits (it always does: s < ℓ < 2^253).
                let mut carry = 0u16;

                for (i, (x, y)) in s.as_bytes().iter().zip(&L).enumerate() {
                    let v = u16::from(*x) + u16::from(*y) + carry;
                    sig[32 + i] = v as u8;
                    carry = v >> 8;
                }
            }
            Case::SmallOrderKey(i) => key = PublicKey(bytes32(SMALL_ORDER[*i])),
            Case::NonCanonicalKey(low) => {
                key = PublicKey([0xff; 32]);
                key.0[0] = *low;
                key.0[31] = 0x7f;
            }
            Case::MixedOrderKey(i) => {
                key = PublicKey((B * a + t * Scalar::from(*i)).compress().0);
                sig = craft(a, &key, nonce, EdwardsPoint::default(), &m);
            }
            Case::Duplicate(j) => {
                if !done.is_empty() {
                    return done[j % done.len()].clone();
                }
            }
        }
        (key, msg, sig)
    }

    /// The cache keeps only keys that pass, answers as `parse_key` does, and stays bounded.
    #[test]
    fn the_key_cache_remembers_good_keys_only_and_is_bounded() {
        let keys = KeyCache::default();
        let good = Keypair::from_seed([5; 32]).public();
        assert_eq!(keys.parse(&good), parse_key(&good));
        assert_eq!(keys.parse(&good), parse_key(&good));
        assert_eq!(keys.len(), 1);
        let weak = PublicKey(bytes32(ORDER_8));
        assert_eq!(keys.parse(&weak), Err(SignatureError::WeakKey));
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2; // y = 2 is not on the curve
        assert_eq!(
            keys.parse(&PublicKey(off_curve)),
            Err(SignatureError::MalformedKey)
        );
        assert_eq!(keys.len(), 1);
        for seed in 0..=KeyCache::CAPACITY as u32 {
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&seed.to_le_bytes());
            let k = Keypair::from_seed(s).public();
            assert_eq!(keys.parse(&k), parse_key(&k));
            assert!(keys.len() <= KeyCache::CAPACITY);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Any mix of good and bad items: the batch answers what the single check answers.
        #[test]
        fn batch_equals_single(cases in prop::collection::vec((case(), 0..3usize), 0..40)) {
            let mut built = Vec::new();
            for (n, (c, who)) in cases.iter().enumerate() {
                let b = build(c, *who, n as u64 + 1, &built);
                built.push(b);
            }
            let batch: Vec<BatchItem> = built
                .iter()
                .map(|(k, m, s)| BatchItem { key: k, message: m, signature: s })
                .collect();
            let got = verify_batch(&batch);
            prop_assert_eq!(got.len(), batch.len());
            // With decompressed keys kept across batches (twice: cold, then warm), the same.
            let keys = KeyCache::default();
            prop_assert_eq!(&verify_batch_cached(&batch, &keys), &got);
            prop_assert_eq!(&verify_batch_cached(&batch, &keys), &got);
            for (i, (c, _)) in cases.iter().enumerate() {
                let (k, m, s) = &built[i];
                prop_assert_eq!(got[i], verify_strict(k, m, s), "item {} {:?}", i, c);
                if matches!(c, Case::Valid | Case::TorsionR(_) | Case::MixedOrderKey(_)) {
                    prop_assert!(got[i].is_ok(), "item {} {:?}", i, c);
                }
            }
        }
    }
}
