//! The key file a member takes away (issue 16): her key, sealed as every [`KeyFile`] is, and
//! sealed with it what her own node needs to go on where she was — the markets her history is
//! in, her community and its node's relay addresses, her contacts ([`Carried`]).
//!
//! The same [`vault`] format as a key file at rest, so a node opens either; at rest the sealed
//! bytes after the seed are empty and [`open`] gives an empty [`Carried`]. An export's are one
//! JSON object (versioned; fields this build does not know are ignored, so a newer node's
//! file still opens):
//!
//! ```json
//! {"version":1,"markets":[HEX32,…],"community":HEX32|null,"relays":["<multiaddr>/p2p/<peer id>",…],
//!  "contacts":[[HEX32,"Anna"],…]}
//! ```
//!
//! An export is sealed at [`KdfParams::EXPORT`] (a file that may travel by email must cost an
//! attacker more than the one kept on the node) unless the caller says otherwise.

use passalong_protocol::{Id, Keypair, PublicKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::kdf::KdfParams;
use crate::vault::{self, KeyFile, VaultError};

/// The `version` of the carried object this build writes.
pub const CARRIED_VERSION: u32 = 1;
/// The most markets, relays and contacts a file carries, each: what a node accepts from a file.
pub const MAX_CARRIED: usize = 20_000;

/// What an exported key file carries besides the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// The markets (sellers' keys) her history is in: her node follows them.
    pub markets: Vec<PublicKey>,
    /// Her community, if she was a member of one.
    pub community: Option<Id>,
    /// The community node's relay addresses (`<multiaddr>/p2p/<peer id>`).
    pub relays: Vec<String>,
    /// Her contacts: a key and her name for it.
    pub contacts: Vec<(PublicKey, String)>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    #[serde(default)]
    markets: Vec<String>,
    #[serde(default)]
    community: Option<String>,
    #[serde(default)]
    relays: Vec<String>,
    #[serde(default)]
    contacts: Vec<(String, String)>,
}

impl Carried {
    fn to_bytes(&self) -> Vec<u8> {
        let disk = OnDisk {
            version: CARRIED_VERSION,
            markets: self.markets.iter().map(PublicKey::to_hex).collect(),
            community: self.community.as_ref().map(Id::to_hex),
            relays: self.relays.clone(),
            contacts: self
                .contacts
                .iter()
                .map(|(k, n)| (k.to_hex(), n.clone()))
                .collect(),
        };
        serde_json::to_vec(&disk).expect("strings and numbers always serialise")
    }

    fn from_bytes(bytes: &[u8]) -> Result<Carried, VaultError> {
        if bytes.is_empty() {
            return Ok(Carried::default());
        }
        let disk: OnDisk = serde_json::from_slice(bytes)
            .map_err(|e| VaultError::Damaged(format!("what the key carries: {e}")))?;
        if disk.version != CARRIED_VERSION {
            return Err(VaultError::Unsupported(format!(
                "what the key carries is version {} (this build reads {CARRIED_VERSION})",
                disk.version
            )));
        }
        if [disk.markets.len(), disk.relays.len(), disk.contacts.len()]
            .iter()
            .any(|&n| n > MAX_CARRIED)
        {
            return Err(VaultError::Damaged(format!(
                "more than {MAX_CARRIED} markets, relays or contacts"
            )));
        }
        let key = |h: &str, what: &str| {
            PublicKey::from_hex(h)
                .map_err(|_| VaultError::Damaged(format!("{what} {h:?} is not a key")))
        };
        Ok(Carried {
            markets: disk
                .markets
                .iter()
                .map(|m| key(m, "market"))
                .collect::<Result<_, _>>()?,
            community: disk
                .community
                .as_deref()
                .map(|c| {
                    Id::from_hex(c)
                        .map_err(|_| VaultError::Damaged(format!("community {c:?} is not an id")))
                })
                .transpose()?,
            relays: disk.relays,
            contacts: disk
                .contacts
                .iter()
                .map(|(k, n)| Ok((key(k, "contact")?, n.clone())))
                .collect::<Result<_, VaultError>>()?,
        })
    }
}

/// Seals `keypair` with `carried` under `password` at `params` (an export:
/// [`KdfParams::EXPORT`]).
pub fn seal(
    keypair: &Keypair,
    carried: &Carried,
    password: &[u8],
    params: KdfParams,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<KeyFile, VaultError> {
    vault::seal(keypair, &carried.to_bytes(), password, params, rng)
}

/// Opens an exported (or at-rest) key file with `password`: the key and what it carries.
pub fn open(file: &KeyFile, password: &[u8]) -> Result<(Keypair, Carried), VaultError> {
    let opened = vault::open(file, password)?;
    let carried = Carried::from_bytes(&opened.extra)?;
    Ok((opened.keypair, carried))
}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;

    use super::*;

    fn carried() -> Carried {
        Carried {
            markets: vec![
                Keypair::from_seed([2; 32]).public(),
                Keypair::from_seed([3; 32]).public(),
            ],
            community: Some(Id([9; 32])),
            relays: vec!["/ip4/203.0.113.7/tcp/7424/p2p/12D3KooWExample".into()],
            contacts: vec![(Keypair::from_seed([4; 32]).public(), "Ben \"B\" ✓".into())],
        }
    }

    #[test]
    fn an_export_round_trips_through_its_text() {
        let k = Keypair::from_seed([7; 32]);
        let c = carried();
        let f = seal(&k, &c, b"a long passphrase", KdfParams::MINIMUM, &mut OsRng).unwrap();
        let back = KeyFile::from_json(&f.to_json()).unwrap();
        let (key, got) = open(&back, b"a long passphrase").unwrap();
        assert_eq!(key.seed(), k.seed());
        assert_eq!(got, c);
        // Nothing it carries is readable without the password.
        let text = f.to_json();
        assert!(!text.contains("Ben") && !text.contains(&c.markets[0].to_hex()));
        // An empty one (and a file at rest, which carries nothing) opens to nothing.
        let f = seal(
            &k,
            &Carried::default(),
            b"a long passphrase",
            KdfParams::MINIMUM,
            &mut OsRng,
        )
        .unwrap();
        assert_eq!(
            open(&f, b"a long passphrase").unwrap().1,
            Carried::default()
        );
        let rest = vault::seal(&k, b"", b"pw at rest", KdfParams::MINIMUM, &mut OsRng).unwrap();
        assert_eq!(open(&rest, b"pw at rest").unwrap().1, Carried::default());
    }

    #[test]
    fn a_wrong_password_is_told_from_a_damaged_file() {
        let k = Keypair::from_seed([7; 32]);
        let f = seal(
            &k,
            &carried(),
            b"a long passphrase",
            KdfParams::MINIMUM,
            &mut OsRng,
        )
        .unwrap();
        assert!(matches!(
            open(&f, b"another passphrase"),
            Err(VaultError::WrongPassword)
        ));
        let mut sealed = hex::decode(&f.sealed).unwrap();
        let last = sealed.len() - 1;
        sealed[40] ^= 0x20;
        sealed[last] ^= 1;
        let mut c = f.clone();
        c.sealed = hex::encode(&sealed);
        assert!(matches!(
            open(&c, b"a long passphrase"),
            Err(VaultError::Damaged(_))
        ));
        let text = f.to_json();
        assert!(matches!(
            KeyFile::from_json(&text[..text.len() - 3]),
            Err(VaultError::Damaged(_))
        ));
        // Sealed bytes that are not a carried object, under the right password: damaged.
        let odd = vault::seal(&k, b"{not json", b"pw", KdfParams::MINIMUM, &mut OsRng).unwrap();
        assert!(matches!(open(&odd, b"pw"), Err(VaultError::Damaged(_))));
        let bad_key = br#"{"version":1,"markets":["zz"]}"#;
        let odd = vault::seal(&k, bad_key, b"pw", KdfParams::MINIMUM, &mut OsRng).unwrap();
        assert!(matches!(open(&odd, b"pw"), Err(VaultError::Damaged(_))));
        let newer = br#"{"version":2}"#;
        let odd = vault::seal(&k, newer, b"pw", KdfParams::MINIMUM, &mut OsRng).unwrap();
        assert!(matches!(open(&odd, b"pw"), Err(VaultError::Unsupported(_))));
        // A field a later build adds is ignored.
        let more = br#"{"version":1,"markets":[],"later":true}"#;
        let odd = vault::seal(&k, more, b"pw", KdfParams::MINIMUM, &mut OsRng).unwrap();
        assert_eq!(open(&odd, b"pw").unwrap().1, Carried::default());
    }
}
