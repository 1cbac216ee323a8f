//! The members of the community this node runs, as the store's attestations say: each
//! Membership of the community (in the connector's market) and the earliest MembershipEnd of
//! each (a MembershipEnd's market is its membership's). Pure: built from the attestations,
//! asked with the time.
//!
//! The signed attestations are the truth for who is admitted, hosted or not: an own-node
//! member (step 12) has no file here, and a hosted member's file only adds her login, her
//! sign-ins and her referrals. Reading the connector's market costs a scan of it, so
//! [`crate::community::CommunityNode`] keeps a roster in memory with the market's
//! [`SetSummary`] it was read at, and reads it again only when that summary changed.

use std::collections::BTreeMap;

use passalong_protocol::attestation::Body;
use passalong_protocol::{Attestation, Id, PublicKey};
use passalong_store::SetSummary;

/// How a membership ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// From when it no longer counts.
    pub ends_at_ms: u64,
    /// The member ended it herself (she left); otherwise the connector removed her.
    pub by_member: bool,
}

/// One membership of the community.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The member.
    pub member: PublicKey,
    /// Her Membership attestation.
    pub membership: Id,
    /// When it starts.
    pub since_ms: u64,
    /// Its earliest end, if any.
    pub end: Option<End>,
}

impl Admission {
    /// Whether it admits its member at `at_ms` (start ≤ t < earliest end, as the payout
    /// rules read it).
    pub fn admits_at(&self, at_ms: u64) -> bool {
        self.since_ms <= at_ms && self.end.is_none_or(|e| at_ms < e.ends_at_ms)
    }
}

/// Every membership of the community, by member.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    /// The connector's market as it was read (see the module docs).
    pub summary: SetSummary,
    by_member: BTreeMap<PublicKey, Vec<Admission>>,
}

impl Roster {
    /// The roster of `community` from the connector market's Membership and MembershipEnd
    /// attestations (others, and those of other communities, are skipped), read at `summary`.
    pub fn build(
        community: Id,
        memberships: &[Attestation],
        ends: &[Attestation],
        summary: SetSummary,
    ) -> Roster {
        let mut admissions: BTreeMap<Id, Admission> = BTreeMap::new();
        for a in memberships {
            if let Body::Membership(m) = &a.body {
                if m.community == community {
                    admissions.insert(
                        a.id,
                        Admission {
                            member: m.member,
                            membership: a.id,
                            since_ms: m.created_at_ms,
                            end: None,
                        },
                    );
                }
            }
        }
        for a in ends {
            let Body::MembershipEnd(e) = &a.body else {
                continue;
            };
            let Some(adm) = admissions.get_mut(&e.membership) else {
                continue;
            };
            let this = End {
                ends_at_ms: e.ends_at_ms,
                by_member: e.author == adm.member,
            };
            // The earliest end counts; of two at one time, the member's own says she left.
            let earlier = adm.end.is_none_or(|old| {
                (this.ends_at_ms, !this.by_member) < (old.ends_at_ms, !old.by_member)
            });
            if earlier {
                adm.end = Some(this);
            }
        }
        let mut by_member: BTreeMap<PublicKey, Vec<Admission>> = BTreeMap::new();
        for adm in admissions.into_values() {
            by_member.entry(adm.member).or_default().push(adm);
        }
        for list in by_member.values_mut() {
            list.sort_by_key(|a| (a.since_ms, a.membership));
        }
        Roster { summary, by_member }
    }

    /// How many members (of every status) it lists.
    pub fn len(&self) -> usize {
        self.by_member.len()
    }

    /// It lists no member.
    pub fn is_empty(&self) -> bool {
        self.by_member.is_empty()
    }

    /// The memberships of `member` that admit her at `at_ms`.
    pub fn admitting(&self, member: &PublicKey, at_ms: u64) -> Vec<&Admission> {
        self.by_member
            .get(member)
            .map(|l| l.iter().filter(|a| a.admits_at(at_ms)).collect())
            .unwrap_or_default()
    }

    /// The membership that says where `member` stands at `at_ms`: the newest that admits
    /// her, else her newest.
    pub fn current(&self, member: &PublicKey, at_ms: u64) -> Option<&Admission> {
        let list = self.by_member.get(member)?;
        list.iter()
            .rev()
            .find(|a| a.admits_at(at_ms))
            .or_else(|| list.last())
    }

    /// Every member with the membership that says where she stands at `at_ms`.
    pub fn members(&self, at_ms: u64) -> impl Iterator<Item = &Admission> {
        self.by_member
            .keys()
            .filter_map(move |m| self.current(m, at_ms))
    }

    /// Every membership, of every member.
    pub fn all(&self) -> impl Iterator<Item = &Admission> {
        self.by_member.values().flatten()
    }
}

#[cfg(test)]
mod tests {
    use passalong_protocol::attestation::{Community, Membership, MembershipEnd};
    use passalong_protocol::Keypair;

    use super::*;

    fn kp(seed: u8) -> Keypair {
        Keypair::from_seed([seed; 32])
    }

    fn community(connector: &Keypair, name: &str) -> Attestation {
        Attestation::sign(
            Body::Community(Community {
                connector: connector.public(),
                name: name.into(),
                created_at_ms: 1,
            }),
            connector,
        )
    }

    fn admit(connector: &Keypair, community: Id, member: &Keypair, at: u64) -> Attestation {
        Attestation::sign(
            Body::Membership(Membership::admit(connector.public(), community, member, at)),
            connector,
        )
    }

    fn end(author: &Keypair, membership: Id, at: u64) -> Attestation {
        Attestation::sign(
            Body::MembershipEnd(MembershipEnd {
                author: author.public(),
                membership,
                ends_at_ms: at,
                created_at_ms: at,
            }),
            author,
        )
    }

    #[test]
    fn members_are_admitted_until_their_earliest_end() {
        let (k, anna, ben, carla) = (kp(1), kp(2), kp(3), kp(4));
        let c = community(&k, "Riverside").id;
        let other = community(&k, "Elsewhere").id;
        let (ma, mb, mc) = (
            admit(&k, c, &anna, 100),
            admit(&k, c, &ben, 200),
            admit(&k, c, &carla, 300),
        );
        let elsewhere = admit(&k, other, &kp(5), 100);
        let ends = [
            end(&k, mb.id, 500),
            end(&ben, mb.id, 400),
            end(&carla, mc.id, 600),
            end(&k, mc.id, 600),
        ];
        let r = Roster::build(
            c,
            &[ma.clone(), mb.clone(), mc.clone(), elsewhere],
            &ends,
            SetSummary::default(),
        );
        assert_eq!(r.len(), 3, "the other community's member is not listed");
        let at = |who: &Keypair, t: u64| r.admitting(&who.public(), t).len();
        assert_eq!(
            (at(&anna, 99), at(&anna, 100), at(&anna, u64::MAX)),
            (0, 1, 1)
        );
        // Ben's earliest end is his own, at 400.
        assert_eq!((at(&ben, 399), at(&ben, 400)), (1, 0));
        let b = r.current(&ben.public(), 1_000).unwrap();
        assert_eq!(
            b.end,
            Some(End {
                ends_at_ms: 400,
                by_member: true
            })
        );
        // Two ends at one time: she left.
        let c_end = r.current(&carla.public(), 1_000).unwrap().end.unwrap();
        assert!(c_end.by_member);
        assert_eq!(r.members(1_000).count(), 3);
        assert!(r.current(&kp(9).public(), 0).is_none());
    }

    #[test]
    fn a_member_admitted_again_stands_by_the_membership_that_admits_her() {
        let (k, anna) = (kp(1), kp(2));
        let c = community(&k, "Riverside").id;
        let (first, second) = (admit(&k, c, &anna, 100), admit(&k, c, &anna, 300));
        let r = Roster::build(
            c,
            &[first.clone(), second.clone()],
            &[end(&k, second.id, 400)],
            SetSummary::default(),
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r.all().count(), 2);
        // The first never ended: it still admits her, so it is the one that counts.
        assert_eq!(r.current(&anna.public(), 500).unwrap().membership, first.id);
        assert_eq!(r.admitting(&anna.public(), 500).len(), 1);
    }
}
