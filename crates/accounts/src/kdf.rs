//! The key derived from a password: argon2id (RFC 9106, version 0x13), with bounds on the
//! parameters a file may ask for, so that a crafted file can neither downgrade the cost below
//! a floor nor make the node allocate gigabytes.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// argon2id's cost: memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes over the memory.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

/// Why a derivation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KdfError {
    /// The parameters are outside what this build accepts.
    #[error("argon2id parameters out of bounds: m={m_kib} KiB, t={t}, p={p} (accepted: m {min_m}..={max_m} KiB, t 1..={max_t}, p 1..={max_p})", min_m = KdfParams::MIN_M_KIB, max_m = KdfParams::MAX_M_KIB, max_t = KdfParams::MAX_T, max_p = KdfParams::MAX_P)]
    OutOfBounds {
        /// Memory asked for, KiB.
        m_kib: u32,
        /// Passes asked for.
        t: u32,
        /// Lanes asked for.
        p: u32,
    },
    /// argon2 itself refused (it should not, within the bounds).
    #[error("argon2id: {0}")]
    Argon2(String),
}

impl KdfParams {
    /// The least memory accepted: OWASP's minimum for argon2id (19 MiB with two passes).
    pub const MIN_M_KIB: u32 = 19 * 1024;
    /// The most memory accepted: 1 GiB.
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    /// The most passes accepted.
    pub const MAX_T: u32 = 10;
    /// The most lanes accepted.
    pub const MAX_P: u32 = 4;

    /// Members' key files at rest and their sign-in: 46 MiB, one pass (OWASP's second
    /// option), chosen by measuring sign-ins on a community node of 10,000 members
    /// (`docs/benchmarks.md`, Community nodes).
    pub const MEMBER: KdfParams = KdfParams {
        m_kib: 46 * 1024,
        t: 1,
        p: 1,
    };

    /// Exported key files, which may travel by email: 256 MiB, three passes (a one-off cost on
    /// a computer).
    pub const EXPORT: KdfParams = KdfParams {
        m_kib: 256 * 1024,
        t: 3,
        p: 1,
    };

    /// The cheapest parameters accepted (tests).
    pub const MINIMUM: KdfParams = KdfParams {
        m_kib: Self::MIN_M_KIB,
        t: 1,
        p: 1,
    };

    /// Whether a file sealed at these parameters costs a guess less than `target` does (less
    /// memory or fewer passes): a node re-seals such a file at a sign-in, when it has the
    /// password. Lanes are not a cost to an attacker, who runs them in parallel.
    pub fn weaker_than(&self, target: &KdfParams) -> bool {
        self.m_kib < target.m_kib || self.t < target.t
    }

    /// Whether this build accepts these parameters.
    pub fn check(&self) -> Result<(), KdfError> {
        let ok = (Self::MIN_M_KIB..=Self::MAX_M_KIB).contains(&self.m_kib)
            && (1..=Self::MAX_T).contains(&self.t)
            && (1..=Self::MAX_P).contains(&self.p);
        if ok {
            Ok(())
        } else {
            Err(KdfError::OutOfBounds {
                m_kib: self.m_kib,
                t: self.t,
                p: self.p,
            })
        }
    }
}

/// The 32-byte key argon2id derives from `password` and `salt` at `params` (checked first).
pub fn derive(
    password: &[u8],
    salt: &[u8; 16],
    params: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KdfError> {
    params.check()?;
    let p = Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| KdfError::Argon2(e.to_string()))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(password, salt, out.as_mut())
        .map_err(|e| KdfError::Argon2(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_presets_are_within_bounds_and_the_bounds_hold() {
        for p in [KdfParams::MEMBER, KdfParams::EXPORT, KdfParams::MINIMUM] {
            p.check().unwrap();
        }
        for bad in [
            KdfParams {
                m_kib: 1024,
                ..KdfParams::MINIMUM
            },
            KdfParams {
                m_kib: u32::MAX,
                ..KdfParams::MINIMUM
            },
            KdfParams {
                t: 0,
                ..KdfParams::MINIMUM
            },
            KdfParams {
                t: 11,
                ..KdfParams::MINIMUM
            },
            KdfParams {
                p: 0,
                ..KdfParams::MINIMUM
            },
            KdfParams {
                p: 5,
                ..KdfParams::MINIMUM
            },
        ] {
            assert!(
                matches!(bad.check(), Err(KdfError::OutOfBounds { .. })),
                "{bad:?}"
            );
            assert!(
                derive(b"pw", &[0; 16], &bad).is_err(),
                "refused before any work"
            );
        }
    }

    #[test]
    fn weaker_means_less_memory_or_fewer_passes() {
        let m = KdfParams::MEMBER;
        assert!(KdfParams::MINIMUM.weaker_than(&m));
        assert!(!m.weaker_than(&m));
        assert!(!KdfParams::EXPORT.weaker_than(&m), "a stronger file stays");
        assert!(KdfParams {
            t: 1,
            ..KdfParams::EXPORT
        }
        .weaker_than(&KdfParams::EXPORT));
        assert!(!KdfParams { p: 1, ..m }.weaker_than(&KdfParams { p: 4, ..m }));
    }

    #[test]
    fn derivation_depends_on_password_salt_and_cost() {
        let k = derive(b"correct horse", &[1; 16], &KdfParams::MINIMUM).unwrap();
        assert_eq!(
            *k,
            *derive(b"correct horse", &[1; 16], &KdfParams::MINIMUM).unwrap()
        );
        assert_ne!(
            *k,
            *derive(b"correct horsf", &[1; 16], &KdfParams::MINIMUM).unwrap()
        );
        assert_ne!(
            *k,
            *derive(b"correct horse", &[2; 16], &KdfParams::MINIMUM).unwrap()
        );
        let two = KdfParams {
            t: 2,
            ..KdfParams::MINIMUM
        };
        assert_ne!(*k, *derive(b"correct horse", &[1; 16], &two).unwrap());
    }
}
