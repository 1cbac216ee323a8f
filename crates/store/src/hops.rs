//! What the store needs of a valid referral besides its envelope, stored compactly under its
//! own prefix ([`crate::keyspace::HOP`]): the hop a chain walk reads, and the fact that
//! validating a receipt or a child referral reads.
//!
//! Every receipt checks its referral, and once counted walks its chain, up to the offer's
//! depth, to be paid. Read from the referrals' entries, each of those reads on a cold cache
//! pages in a leaf of the entries' region, which on a large store is far larger than sled's
//! cache (~280 bytes per attestation: 280 MB at a million). Records are ~110 bytes and only
//! referrals have one (a tenth of a store in the ingest bench), so their region stays dense: a
//! leaf paged in serves ~16 of them, and at a million attestations the whole region (~12 MB)
//! fits in the cache. The decoded records of the hot chains are also kept in memory
//! (`cache::ValidCache`).
//!
//! A store of format 9 has no record for the referrals it held before; those are read from
//! their entries, as before (see [`crate::FORMAT_VERSION`]).

use passalong_protocol::attestation::Referral;
use passalong_protocol::payout::Hop;
use passalong_protocol::validation::Fact;
use passalong_protocol::{Id, PublicKey};

use crate::keyspace::{id_at, u64_at};

/// What the store needs of a valid referral besides its envelope: the hop a chain walk reads,
/// and the fact that validating its children and receipts reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rec {
    pub hop: Hop<Id>,
    pub offer: Id,
    pub recipient: Option<PublicKey>,
    /// Hops from the offer down to it, inclusive.
    pub depth: u32,
}

impl Rec {
    /// The record of a referral found valid with `fact`; `None` if the fact is not a
    /// referral's.
    pub fn of(r: &Referral, fact: &Fact) -> Option<Rec> {
        match fact {
            Fact::Referral { hops, .. } => Some(Rec {
                hop: hop_of(r),
                offer: r.offer,
                recipient: r.recipient,
                depth: *hops,
            }),
            _ => None,
        }
    }

    /// Its validation fact.
    pub fn fact(&self) -> Fact {
        Fact::Referral {
            offer: self.offer,
            recipient: self.recipient,
            hops: self.depth,
            created_at_ms: self.hop.created_at_ms,
        }
    }
}

/// What a chain walk needs of a referral.
pub(crate) fn hop_of(r: &Referral) -> Hop<Id> {
    Hop {
        referrer: r.referrer,
        created_at_ms: r.created_at_ms,
        community: r.community,
        parent: r.parent,
    }
}

const HAS_PARENT: u8 = 1;
const HAS_COMMUNITY: u8 = 2;
const HAS_RECIPIENT: u8 = 4;
/// Bytes before the optional parts.
const FIXED: usize = 32 + 8 + 32 + 4 + 1;

/// referrer (32) ‖ created_at_ms (BE) ‖ offer (32) ‖ depth (u32 BE) ‖ flags (1) ‖ parent,
/// community, recipient (32 each, those present).
pub(crate) fn encode(r: &Rec) -> Vec<u8> {
    let h = &r.hop;
    let mut v = Vec::with_capacity(FIXED + 96);
    v.extend_from_slice(&h.referrer.0);
    v.extend_from_slice(&h.created_at_ms.to_be_bytes());
    v.extend_from_slice(&r.offer.0);
    v.extend_from_slice(&r.depth.to_be_bytes());
    let flag = |present: bool, f: u8| if present { f } else { 0 };
    v.push(
        flag(h.parent.is_some(), HAS_PARENT)
            | flag(h.community.is_some(), HAS_COMMUNITY)
            | flag(r.recipient.is_some(), HAS_RECIPIENT),
    );
    for part in [
        h.parent.map(|p| p.0),
        h.community.map(|c| c.0),
        r.recipient.map(|k| k.0),
    ]
    .into_iter()
    .flatten()
    {
        v.extend_from_slice(&part);
    }
    v
}

/// The record made by [`encode`]; `None` if it is damaged.
pub(crate) fn decode(v: &[u8]) -> Option<Rec> {
    let flags = *v.get(FIXED - 1)?;
    let all = HAS_PARENT | HAS_COMMUNITY | HAS_RECIPIENT;
    if flags & !all != 0 || v.len() != FIXED + 32 * flags.count_ones() as usize {
        return None;
    }
    let mut at = FIXED;
    let mut next = |f: u8| {
        (flags & f != 0).then(|| {
            at += 32;
            id_at(v, at - 32)
        })
    };
    let parent = next(HAS_PARENT).map(Id);
    let community = next(HAS_COMMUNITY).map(Id);
    let recipient = next(HAS_RECIPIENT).map(PublicKey);
    let mut depth = [0u8; 4];
    depth.copy_from_slice(&v[72..76]);
    Some(Rec {
        hop: Hop {
            referrer: PublicKey(id_at(v, 0)),
            created_at_ms: u64_at(v, 32),
            community,
            parent,
        },
        offer: Id(id_at(v, 40)),
        recipient,
        depth: u32::from_be_bytes(depth),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(parent: Option<Id>, community: Option<Id>, recipient: Option<PublicKey>) -> Rec {
        Rec {
            hop: Hop {
                referrer: PublicKey([7; 32]),
                created_at_ms: 1_767_225_600_123,
                community,
                parent,
            },
            offer: Id([3; 32]),
            recipient,
            depth: 4,
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let (p, c, k) = (Id([1; 32]), Id([2; 32]), PublicKey([5; 32]));
        for r in [
            rec(None, None, None),
            rec(Some(p), None, None),
            rec(None, Some(c), None),
            rec(None, None, Some(k)),
            rec(Some(p), Some(c), Some(k)),
        ] {
            let v = encode(&r);
            let back = decode(&v).expect("decodes");
            let h = (back.hop.referrer, back.hop.created_at_ms, back.hop.parent);
            assert_eq!(h, (r.hop.referrer, r.hop.created_at_ms, r.hop.parent));
            assert_eq!(back.hop.community, r.hop.community);
            assert_eq!(back.fact(), r.fact());
            assert!(decode(&v[..v.len() - 1]).is_none(), "truncated");
            let mut longer = v.clone();
            longer.push(0);
            assert!(decode(&longer).is_none(), "trailing bytes");
        }
        let mut bad = encode(&rec(None, None, None));
        bad[FIXED - 1] = 8;
        assert!(decode(&bad).is_none(), "unknown flag");
    }
}
