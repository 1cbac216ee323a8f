//! The key file: a member's ed25519 key sealed under their password, the same format at rest
//! on a community node and as the file a member exports to run their own node.
//!
//! `master = argon2id(password, salt, params)`; from it, two keys by blake3's `derive_key`:
//! one encrypts (XChaCha20-Poly1305, a random 24-byte nonce), the other is stored as `check`,
//! so that a wrong password is told from a damaged file (it gives an attacker nothing the
//! cipher's tag would not). The tag also covers the header (format, version, public key, KDF
//! parameters and salt, nonce) as associated data, in a fixed binary form, so that no header
//! field can be changed unnoticed. Opening refuses KDF parameters outside
//! [`KdfParams::check`]'s bounds before deriving anything.
//!
//! ```json
//! {"format":"passalong-key","version":1,"public_key":HEX32,
//!  "kdf":{"alg":"argon2id","v":19,"m_kib":47104,"t":1,"p":1,"salt":HEX16},
//!  "aead":{"alg":"xchacha20poly1305","nonce":HEX24},
//!  "check":HEX32,"sealed":HEX}
//! ```
//!
//! `sealed` decrypts to the 32-byte seed, then whatever the caller sealed with it (an export
//! carries the member's markets and contacts; at rest it is empty).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use passalong_protocol::{Keypair, PublicKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::kdf::{self, KdfError, KdfParams};

/// The `format` field.
pub const FORMAT: &str = "passalong-key";
/// The `version` this build writes and reads.
pub const VERSION: u32 = 1;
const KDF_ALG: &str = "argon2id";
/// argon2's version 0x13.
const KDF_V: u32 = 19;
const AEAD_ALG: &str = "xchacha20poly1305";
const ENCRYPTION_CONTEXT: &str = "passalong key file v1 encryption";
const CHECK_CONTEXT: &str = "passalong key file v1 password check";

/// A key file as stored (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// The key's public half, hex: who the file is for, readable without the password.
    pub public_key: String,
    /// How the password becomes a key.
    pub kdf: KdfHeader,
    /// How the seed is encrypted.
    pub aead: AeadHeader,
    /// The password check, hex (32 bytes).
    pub check: String,
    /// The encrypted seed and extra bytes, with the tag, hex.
    pub sealed: String,
}

/// The key derivation of a [`KeyFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfHeader {
    /// Always `argon2id`.
    pub alg: String,
    /// argon2's version: 19 (0x13).
    pub v: u32,
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// 16 random bytes, hex.
    pub salt: String,
}

/// The encryption of a [`KeyFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AeadHeader {
    /// Always `xchacha20poly1305`.
    pub alg: String,
    /// 24 random bytes, hex.
    pub nonce: String,
}

/// Why a key file could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The password is not the one the file was sealed with.
    #[error("wrong password")]
    WrongPassword,
    /// The file is not a well-formed key file, or was altered or damaged.
    #[error("key file damaged: {0}")]
    Damaged(String),
    /// A key file this build does not read (another format, version or algorithm, or KDF
    /// parameters out of bounds).
    #[error("unsupported key file: {0}")]
    Unsupported(String),
    /// The key derivation failed.
    #[error(transparent)]
    Kdf(#[from] KdfError),
}

/// What an opened key file holds.
pub struct Opened {
    /// The member's key.
    pub keypair: Keypair,
    /// The bytes sealed with it.
    pub extra: Zeroizing<Vec<u8>>,
    /// The parameters it was sealed with (a node re-seals a file below its own).
    pub params: KdfParams,
}

/// Seals `keypair` and `extra` under `password` at `params`, with salt and nonce from `rng`.
pub fn seal(
    keypair: &Keypair,
    extra: &[u8],
    password: &[u8],
    params: KdfParams,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<KeyFile, VaultError> {
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    seal_with(keypair, extra, password, params, salt, nonce)
}

/// [`seal`] with a given salt and nonce (test vectors).
pub fn seal_with(
    keypair: &Keypair,
    extra: &[u8],
    password: &[u8],
    params: KdfParams,
    salt: [u8; 16],
    nonce: [u8; 24],
) -> Result<KeyFile, VaultError> {
    let public = keypair.public();
    let master = kdf::derive(password, &salt, &params)?;
    let (encryption, check) = subkeys(&master);
    let mut plain = Zeroizing::new(Vec::with_capacity(32 + extra.len()));
    plain.extend_from_slice(&keypair.seed());
    plain.extend_from_slice(extra);
    let aad = associated_data(&public, &params, &salt, &nonce);
    let sealed = XChaCha20Poly1305::new(encryption.as_ref().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::Damaged("encryption failed".into()))?;
    Ok(KeyFile {
        format: FORMAT.into(),
        version: VERSION,
        public_key: public.to_hex(),
        kdf: KdfHeader {
            alg: KDF_ALG.into(),
            v: KDF_V,
            m_kib: params.m_kib,
            t: params.t,
            p: params.p,
            salt: hex::encode(salt),
        },
        aead: AeadHeader {
            alg: AEAD_ALG.into(),
            nonce: hex::encode(nonce),
        },
        check: hex::encode(*check),
        sealed: hex::encode(sealed),
    })
}

/// Opens `file` with `password`: the key and what was sealed with it.
pub fn open(file: &KeyFile, password: &[u8]) -> Result<Opened, VaultError> {
    if file.format != FORMAT {
        return Err(VaultError::Unsupported(format!("format {:?}", file.format)));
    }
    if file.version != VERSION {
        return Err(VaultError::Unsupported(format!("version {}", file.version)));
    }
    if file.kdf.alg != KDF_ALG || file.kdf.v != KDF_V {
        return Err(VaultError::Unsupported(format!(
            "key derivation {} v{}",
            file.kdf.alg, file.kdf.v
        )));
    }
    if file.aead.alg != AEAD_ALG {
        return Err(VaultError::Unsupported(format!("cipher {}", file.aead.alg)));
    }
    let params = KdfParams {
        m_kib: file.kdf.m_kib,
        t: file.kdf.t,
        p: file.kdf.p,
    };
    params
        .check()
        .map_err(|e| VaultError::Unsupported(e.to_string()))?;
    let public = PublicKey(hex_array(&file.public_key, "public_key")?);
    let salt: [u8; 16] = hex_array(&file.kdf.salt, "salt")?;
    let nonce: [u8; 24] = hex_array(&file.aead.nonce, "nonce")?;
    let stored_check: [u8; 32] = hex_array(&file.check, "check")?;
    let sealed = hex::decode(&file.sealed).map_err(|_| damaged("sealed is not hex"))?;

    let master = kdf::derive(password, &salt, &params)?;
    let (encryption, check) = subkeys(&master);
    // blake3's Hash compares in constant time.
    if blake3::Hash::from(*check) != blake3::Hash::from(stored_check) {
        return Err(VaultError::WrongPassword);
    }
    let aad = associated_data(&public, &params, &salt, &nonce);
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(encryption.as_ref().into())
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| damaged("the header or the sealed bytes were altered"))?,
    );
    let Some((seed, extra)) = plain.split_first_chunk::<32>() else {
        return Err(damaged("the sealed bytes are too short"));
    };
    let keypair = Keypair::from_seed(*seed);
    if keypair.public() != public {
        return Err(damaged("the sealed key is not the file's public key"));
    }
    Ok(Opened {
        keypair,
        extra: Zeroizing::new(extra.to_vec()),
        params,
    })
}

impl KeyFile {
    /// A file that no password opens, for a login no member has: the sign-in opens it all the
    /// same (one argon2 run at `params`, then [`VaultError::WrongPassword`]), so that how long
    /// the answer takes does not tell which logins exist. Random throughout, so it costs no
    /// derivation to make.
    pub fn decoy(params: KdfParams, rng: &mut (impl CryptoRngCore + ?Sized)) -> KeyFile {
        let mut bytes = [0u8; 32 + 16 + 24 + 32 + 48];
        rng.fill_bytes(&mut bytes);
        let (public, rest) = bytes.split_at(32);
        let (salt, rest) = rest.split_at(16);
        let (nonce, rest) = rest.split_at(24);
        let (check, sealed) = rest.split_at(32);
        KeyFile {
            format: FORMAT.into(),
            version: VERSION,
            public_key: hex::encode(public),
            kdf: KdfHeader {
                alg: KDF_ALG.into(),
                v: KDF_V,
                m_kib: params.m_kib,
                t: params.t,
                p: params.p,
                salt: hex::encode(salt),
            },
            aead: AeadHeader {
                alg: AEAD_ALG.into(),
                nonce: hex::encode(nonce),
            },
            check: hex::encode(check),
            sealed: hex::encode(sealed),
        }
    }

    /// The file's text (JSON, one object).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a key file always serialises")
    }

    /// Reads a key file's text; anything else is [`VaultError::Damaged`].
    pub fn from_json(text: &str) -> Result<KeyFile, VaultError> {
        serde_json::from_str(text).map_err(|e| damaged(&format!("not a key file: {e}")))
    }

    /// The public key the file is for, readable without the password.
    pub fn public_key(&self) -> Result<PublicKey, VaultError> {
        Ok(PublicKey(hex_array(&self.public_key, "public_key")?))
    }
}

fn damaged(what: &str) -> VaultError {
    VaultError::Damaged(what.into())
}

fn hex_array<const N: usize>(s: &str, field: &str) -> Result<[u8; N], VaultError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| damaged(&format!("{field} is not {N} bytes of hex")))?;
    Ok(out)
}

/// The encryption key and the password check, from the derived master key.
fn subkeys(master: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    (
        Zeroizing::new(blake3::derive_key(ENCRYPTION_CONTEXT, master)),
        Zeroizing::new(blake3::derive_key(CHECK_CONTEXT, master)),
    )
}

/// The header as the cipher authenticates it: fixed-width fields, so that JSON's spacing or
/// field order never matters.
fn associated_data(
    public: &PublicKey,
    params: &KdfParams,
    salt: &[u8; 16],
    nonce: &[u8; 24],
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(FORMAT.len() + 1 + 4 + 32 + 16 + 16 + 24);
    aad.extend_from_slice(FORMAT.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&VERSION.to_be_bytes());
    aad.extend_from_slice(&public.0);
    for n in [KDF_V, params.m_kib, params.t, params.p] {
        aad.extend_from_slice(&n.to_be_bytes());
    }
    aad.extend_from_slice(salt);
    aad.extend_from_slice(nonce);
    aad
}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;

    use super::*;

    fn sealed(extra: &[u8]) -> (Keypair, KeyFile) {
        let k = Keypair::from_seed([7; 32]);
        let f = seal(
            &k,
            extra,
            b"a long passphrase",
            KdfParams::MINIMUM,
            &mut OsRng,
        )
        .unwrap();
        (k, f)
    }

    #[test]
    fn a_sealed_key_opens_with_its_password_only() {
        let (k, f) = sealed(b"markets and contacts");
        let back = KeyFile::from_json(&f.to_json()).unwrap();
        assert_eq!(back, f);
        let o = open(&back, b"a long passphrase").unwrap();
        assert_eq!(o.keypair.public(), k.public());
        assert_eq!(o.keypair.seed(), k.seed());
        assert_eq!(o.extra.as_slice(), b"markets and contacts");
        assert_eq!(o.params, KdfParams::MINIMUM);
        assert_eq!(back.public_key().unwrap(), k.public());
        assert!(matches!(
            open(&back, b"a long passphrasf"),
            Err(VaultError::WrongPassword)
        ));
        assert!(matches!(open(&back, b""), Err(VaultError::WrongPassword)));
    }

    #[test]
    fn the_file_does_not_show_the_key() {
        let (k, f) = sealed(b"");
        let text = f.to_json();
        let seed = k.seed();
        for w in seed.windows(8) {
            assert!(!text.contains(&hex::encode(w)), "hex of the seed");
            assert!(!text.as_bytes().windows(8).any(|x| x == w), "raw seed");
        }
        // Two seals of one key differ (salt and nonce are random).
        let (_, g) = sealed(b"");
        assert_ne!(f.sealed, g.sealed);
        assert_ne!(f.kdf.salt, g.kdf.salt);
    }

    /// Any change to a field, or a byte of the sealed bytes, is refused: never another key.
    #[test]
    fn an_altered_file_is_refused() {
        let (_, f) = sealed(b"x");
        let pw = b"a long passphrase";
        let other = Keypair::from_seed([8; 32]).public().to_hex();
        let mut cases: Vec<(&str, KeyFile)> = Vec::new();
        let mut c = f.clone();
        c.public_key = other;
        cases.push(("public key", c));
        let mut c = f.clone();
        c.kdf.t = 2;
        cases.push(("passes", c));
        let mut c = f.clone();
        c.kdf.salt = hex::encode([0u8; 16]);
        cases.push(("salt", c));
        let mut c = f.clone();
        c.aead.nonce = hex::encode([0u8; 24]);
        cases.push(("nonce", c));
        let mut c = f.clone();
        c.check = hex::encode([0u8; 32]);
        cases.push(("check", c));
        let mut sealed = hex::decode(&f.sealed).unwrap();
        for i in [0, 31, 32, sealed.len() - 1] {
            sealed[i] ^= 1;
            let mut c = f.clone();
            c.sealed = hex::encode(&sealed);
            cases.push(("sealed byte", c));
            sealed[i] ^= 1;
        }
        let mut c = f.clone();
        c.sealed.truncate(30);
        cases.push(("sealed cut short", c));
        for (what, c) in cases {
            match open(&c, pw) {
                Err(VaultError::Damaged(_) | VaultError::WrongPassword) => {}
                Err(e) => panic!("{what}: {e}"),
                Ok(_) => panic!("{what}: opened"),
            }
        }
    }

    #[test]
    fn a_decoy_is_a_well_formed_file_no_password_opens() {
        let d = KeyFile::decoy(KdfParams::MINIMUM, &mut OsRng);
        assert_eq!(KeyFile::from_json(&d.to_json()).unwrap(), d);
        for pw in [&b"a long passphrase"[..], b"", b"0123456789"] {
            assert!(matches!(open(&d, pw), Err(VaultError::WrongPassword)));
        }
        assert_ne!(d, KeyFile::decoy(KdfParams::MINIMUM, &mut OsRng));
        // It costs what a member's file at the same parameters costs: the same argon2 run.
        let (_, real) = sealed(b"");
        assert_eq!(
            (d.kdf.m_kib, d.kdf.t, d.kdf.p),
            (real.kdf.m_kib, real.kdf.t, real.kdf.p)
        );
    }

    #[test]
    fn unsupported_and_malformed_files_get_clear_errors() {
        let (_, f) = sealed(b"");
        // A memory bomb or a downgrade is refused before any derivation.
        for (m_kib, t) in [(u32::MAX, 1), (1024, 1), (KdfParams::MIN_M_KIB, 0)] {
            let mut c = f.clone();
            c.kdf.m_kib = m_kib;
            c.kdf.t = t;
            assert!(matches!(open(&c, b"x"), Err(VaultError::Unsupported(_))));
        }
        let mut c = f.clone();
        c.version = 2;
        assert!(matches!(open(&c, b"x"), Err(VaultError::Unsupported(_))));
        let mut c = f.clone();
        c.aead.alg = "aes-gcm".into();
        assert!(matches!(open(&c, b"x"), Err(VaultError::Unsupported(_))));
        let text = f.to_json();
        for bad in [&text[..text.len() / 2], "", "{}", "[1,2]"] {
            assert!(matches!(
                KeyFile::from_json(bad),
                Err(VaultError::Damaged(_))
            ));
        }
        let extra_field = text.replacen('{', "{\"x\":1,", 1);
        assert!(matches!(
            KeyFile::from_json(&extra_field),
            Err(VaultError::Damaged(_))
        ));
    }
}
