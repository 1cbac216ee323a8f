//! A market's index: its valid attestations by time, kept as runs.
//!
//! sled's cost is per key written (about 18k instructions each), and a market index key per
//! attestation was a third of a receipt's keys. So what one batch indexes in a market goes
//! under one key, a run: `MARKET ‖ market ‖ created_at_ms (BE) ‖ id` of its first (smallest)
//! entry, and as value its entries, `created_at_ms (BE) ‖ id ‖ kind` each (41 bytes). A run of
//! one is written as the kind byte alone (the entry is the key): that is also format 3's
//! layout, where every key was a run of one. Runs of different batches overlap in time, so a
//! reader merges them; nothing ever rewrites a run.

use passalong_protocol::{Id, PublicKey};

use crate::error::StoreError;
use crate::keyspace::{id_at, key, u64_at, MARKET};

/// One indexed attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Indexed {
    pub created_at_ms: u64,
    pub id: Id,
    pub kind: u8,
}

/// Bytes of an entry in a run's value.
const ENTRY_LEN: usize = 8 + 32 + 1;

/// The keys and values that index `entries` (in any order, with their markets): one run per
/// market.
pub(crate) fn runs(mut entries: Vec<(PublicKey, Indexed)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    entries.sort_unstable();
    entries.dedup();
    let mut out = Vec::new();
    for run in entries.chunk_by(|a, b| a.0 == b.0) {
        let (market, first) = run[0];
        let k = key(
            MARKET,
            &[&market.0, &first.created_at_ms.to_be_bytes(), &first.id.0],
        );
        let v = if run.len() == 1 {
            vec![first.kind]
        } else {
            let mut v = Vec::with_capacity(run.len() * ENTRY_LEN);
            for (_, e) in run {
                v.extend_from_slice(&e.created_at_ms.to_be_bytes());
                v.extend_from_slice(&e.id.0);
                v.push(e.kind);
            }
            v
        };
        out.push((k, v));
    }
    out
}

/// Appends the entries of one stored run (`k`, `v`) to `out`.
pub(crate) fn decode(k: &[u8], v: &[u8], out: &mut Vec<Indexed>) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Record {
        prefix: char::from(MARKET),
        detail,
    };
    if k.len() != 1 + 32 + 8 + 32 {
        return Err(corrupt(format!("a key of {} bytes", k.len())));
    }
    match v {
        [kind] => out.push(Indexed {
            created_at_ms: u64_at(k, 33),
            id: Id(id_at(k, 41)),
            kind: *kind,
        }),
        _ if !v.is_empty() && v.len().is_multiple_of(ENTRY_LEN) => {
            out.extend(v.chunks_exact(ENTRY_LEN).map(|e| Indexed {
                created_at_ms: u64_at(e, 0),
                id: Id(id_at(e, 8)),
                kind: e[40],
            }))
        }
        _ => return Err(corrupt(format!("a run of {} bytes", v.len()))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: u64, id: u8, kind: u8) -> Indexed {
        Indexed {
            created_at_ms: t,
            id: Id([id; 32]),
            kind,
        }
    }

    #[test]
    fn runs_decode_to_their_entries_one_run_per_market() {
        let (m1, m2) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let entries = vec![
            (m2, e(5, 9, 3)),
            (m1, e(7, 1, 2)),
            (m1, e(3, 4, 3)),
            (m1, e(3, 2, 3)),
        ];
        let runs = runs(entries);
        assert_eq!(runs.len(), 2);
        // A run of one is the kind byte under the entry's own key (format 3's layout).
        let (k2, v2) = &runs[1];
        assert_eq!(v2, &vec![3]);
        assert_eq!(k2[1..33], m2.0);
        // The first run's key is its smallest entry.
        let (k1, v1) = &runs[0];
        assert_eq!(u64_at(k1, 33), 3);
        assert_eq!(id_at(k1, 41), [2; 32]);
        let mut out = Vec::new();
        decode(k1, v1, &mut out).unwrap();
        assert_eq!(out, vec![e(3, 2, 3), e(3, 4, 3), e(7, 1, 2)]);
        decode(k2, v2, &mut out).unwrap();
        assert_eq!(out.last(), Some(&e(5, 9, 3)));
    }

    #[test]
    fn a_damaged_run_is_an_error() {
        let k = key(MARKET, &[&[1; 32], &7u64.to_be_bytes(), &[2; 32]]);
        let mut out = Vec::new();
        for v in [&[][..], &[0u8; 40][..], &[0u8; 42][..]] {
            let err = decode(&k, v, &mut out).unwrap_err();
            assert!(err.to_string().contains("run of"), "{err}");
        }
        assert!(decode(&k[..40], &[1], &mut out).is_err());
        assert!(out.is_empty());
    }
}
