//! What a chain walk needs of a referral, stored compactly under its own prefix ([`HOP`]).
//!
//! Every counted receipt walks its chain, up to the offer's depth, to be paid. Read from the
//! referral's entry, each hop of a cold walk pages in a leaf of the entries' region, which on
//! a large store is far larger than sled's cache (~250 bytes per attestation: 250 MB at a
//! million). Hop records are ~80 bytes and only referrals have one (a tenth of a store in the
//! ingest bench), so their region stays dense: a leaf paged in serves ~16 hops, and at a
//! million attestations the whole region (~11 MB) fits in the cache. The decoded hops of the
//! hot chains are also kept in memory (`txn::ValidCache`).
//!
//! A store of format 9 has no record for the referrals it held before; the walk then reads
//! their entries, as before (see [`crate::FORMAT_VERSION`]).

use passalong_protocol::attestation::Referral;
use passalong_protocol::payout::Hop;
use passalong_protocol::{Id, PublicKey};

use crate::keyspace::{id_at, u64_at};

/// What a chain walk needs of a referral.
pub(crate) fn of(r: &Referral) -> Hop<Id> {
    Hop {
        referrer: r.referrer,
        created_at_ms: r.created_at_ms,
        community: r.community,
        parent: r.parent,
    }
}

const HAS_PARENT: u8 = 1;
const HAS_COMMUNITY: u8 = 2;

/// referrer (32) ‖ created_at_ms (BE) ‖ flags (1) ‖ parent (32, if any) ‖ community (32, if
/// any).
pub(crate) fn encode(h: &Hop<Id>) -> Vec<u8> {
    let mut v = Vec::with_capacity(41 + 64);
    v.extend_from_slice(&h.referrer.0);
    v.extend_from_slice(&h.created_at_ms.to_be_bytes());
    let flags = if h.parent.is_some() { HAS_PARENT } else { 0 }
        | if h.community.is_some() {
            HAS_COMMUNITY
        } else {
            0
        };
    v.push(flags);
    for id in [h.parent, h.community].into_iter().flatten() {
        v.extend_from_slice(&id.0);
    }
    v
}

/// The hop of a record made by [`encode`]; `None` if it is damaged.
pub(crate) fn decode(v: &[u8]) -> Option<Hop<Id>> {
    let flags = *v.get(40)?;
    let want = 41
        + 32 * usize::from(flags & HAS_PARENT != 0)
        + 32 * usize::from(flags & HAS_COMMUNITY != 0);
    if v.len() != want || flags & !(HAS_PARENT | HAS_COMMUNITY) != 0 {
        return None;
    }
    let mut at = 41;
    let mut next = |present: bool| {
        present.then(|| {
            at += 32;
            Id(id_at(v, at - 32))
        })
    };
    let parent = next(flags & HAS_PARENT != 0);
    let community = next(flags & HAS_COMMUNITY != 0);
    Some(Hop {
        referrer: PublicKey(id_at(v, 0)),
        created_at_ms: u64_at(v, 32),
        community,
        parent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(parent: Option<Id>, community: Option<Id>) -> Hop<Id> {
        Hop {
            referrer: PublicKey([7; 32]),
            created_at_ms: 1_767_225_600_123,
            community,
            parent,
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        for (p, c) in [
            (None, None),
            (Some(Id([1; 32])), None),
            (None, Some(Id([2; 32]))),
            (Some(Id([1; 32])), Some(Id([2; 32]))),
        ] {
            let h = hop(p, c);
            let v = encode(&h);
            let back = decode(&v).expect("decodes");
            assert_eq!(
                (
                    back.referrer,
                    back.created_at_ms,
                    back.parent,
                    back.community
                ),
                (h.referrer, h.created_at_ms, h.parent, h.community)
            );
            assert!(decode(&v[..v.len() - 1]).is_none(), "truncated");
            let mut longer = v.clone();
            longer.push(0);
            assert!(decode(&longer).is_none(), "trailing bytes");
        }
        let mut bad = encode(&hop(None, None));
        bad[40] = 4;
        assert!(decode(&bad).is_none(), "unknown flag");
    }
}
