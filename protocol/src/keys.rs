//! Keys and ids: fixed 32-byte values, compared and sorted as unsigned byte strings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Parses 64 hex digits into 32 bytes.
fn parse_hex32(s: &str) -> Result<[u8; 32], hex::FromHexError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)?;
    Ok(out)
}

/// An ed25519 public key in its 32-byte compressed form. Whether it is a usable key is a
/// question for [`crate::signature`]: this type only carries bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

/// The id of an attestation: blake3 of its whole signed envelope. Ids compare as byte strings
/// (lexicographic, unsigned), which is what "the smaller id" means in every rule.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Id(pub [u8; 32]);

macro_rules! hex32 {
    ($t:ident) => {
        impl $t {
            /// Lower-case hex, 64 digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// Parses 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
                parse_hex32(s).map($t)
            }
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($t), &self.to_hex()[..12])
            }
        }
        impl std::str::FromStr for $t {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }
    };
}
hex32!(PublicKey);
hex32!(Id);

impl Id {
    /// The id of an envelope: blake3 of its bytes.
    pub fn of_envelope(envelope: &[u8]) -> Id {
        Id(*blake3::hash(envelope).as_bytes())
    }
}

/// A signing key pair. Nodes hold many (a community node signs for each member), so this is a
/// plain value, not a global.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
}

impl Keypair {
    /// The key pair whose secret is `seed` (RFC 8032's 32-byte private key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Keypair {
            signing: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh key pair from the caller's randomness (the crate has none of its own).
    pub fn generate<R: rand_core::CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The 32-byte secret seed, for writing the key file.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs `message` (deterministic RFC 8032 signature).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_bad_hex() {
        let id = Id([0xab; 32]);
        assert_eq!(Id::from_hex(&id.to_hex()).unwrap(), id);
        assert!(Id::from_hex("abc").is_err());
        assert!(PublicKey::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn ids_order_as_bytes() {
        let mut a = [0u8; 32];
        a[0] = 1;
        let mut b = [0u8; 32];
        b[31] = 0xff;
        assert!(Id(b) < Id(a));
    }
}
