//! A community node's members as its network sees them: who is admitted now (read from the
//! store's Membership and MembershipEnd attestations of the community's connector), which
//! peers its relay reserves for, and which markets it follows because a member's node named
//! them in a digest.
//!
//! The set is recomputed when the connector's market changes (its summary in the store, kept
//! in memory until a write touches it, is compared every [`REFRESH_EVERY`]) or when a
//! membership starts or ends by the clock, and on a community founded while the node runs.
//! Every admitted member counts, hosted ones too: a hosted member who moves to her own node
//! keeps her key and her membership, and her node then needs the relay and the following; a
//! hosted member's peer id is otherwise nobody's.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use passalong_api::roster::Roster;
use passalong_protocol::attestation::{Body, Kind};
use passalong_protocol::{Attestation, Id, PublicKey};
use passalong_store::{SetSummary, Store, StoreError};
use tracing::{debug, warn};

/// Most markets a community node follows because of one member's digests (since it started:
/// the count is kept in memory; the total below is not).
pub const MAX_MARKETS_PER_MEMBER: usize = 2_000;
/// A member's digest makes the node follow a market only while it follows fewer than this many
/// in all, its own and its members' (counted in the store, so a restart does not reset it).
/// It is above the DHT's 16,384 provider keys: past those, the node still follows and syncs
/// a market but announces it no more (`docs/limits.md`).
pub const MAX_FOLLOWED_FOR_MEMBERS: usize = 20_000;
/// How often the connector's market is checked for a change of members.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Who is admitted to a community at one time, and when that can next change by the clock
/// alone (a membership's start or end ahead).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// The members admitted.
    pub members: BTreeSet<PublicKey>,
    /// The earliest start or end after that time, if any.
    pub next_change_ms: Option<u64>,
}

/// The members of `community` admitted at `now_ms`, by the payout rules' test (a membership
/// counts from its `created_at_ms` until the earliest `ends_at_ms` of its ends), as the
/// connector's page reads them ([`Roster`]): from the connector's valid Memberships and
/// MembershipEnds (others are ignored).
pub fn admitted_at(
    community: &Id,
    memberships: &[Attestation],
    ends: &[Attestation],
    now_ms: u64,
) -> Admitted {
    let roster = Roster::build(*community, memberships, ends, SetSummary::default());
    let mut out = Admitted::default();
    for a in roster.all() {
        if a.admits_at(now_ms) {
            out.members.insert(a.member);
        }
        let end = a.end.map(|e| e.ends_at_ms);
        for t in std::iter::once(a.since_ms).chain(end) {
            if t > now_ms {
                out.next_change_ms = Some(out.next_change_ms.map_or(t, |n| n.min(t)));
            }
        }
    }
    out
}

/// Watches the store for the members of the community a node runs: [`Watch::poll`] answers
/// the new set when it changed.
#[derive(Default)]
pub struct Watch {
    /// The community and the summary of its connector's market last read.
    seen: Option<(Id, SetSummary)>,
    admitted: Admitted,
    /// A community found in no store, warned about once.
    missing: Option<Id>,
}

impl Watch {
    /// The members of `community` (the one this node runs, if any) admitted at `now_ms`, if
    /// they differ from the last answer. Reads the connector's memberships only when its
    /// market changed or a membership started or ended since. Blocking (the store).
    pub fn poll(
        &mut self,
        store: &Store,
        community: Option<Id>,
        now_ms: u64,
    ) -> Result<Option<BTreeSet<PublicKey>>, StoreError> {
        let admitted = match community {
            None => {
                self.seen = None;
                Admitted::default()
            }
            Some(id) => {
                let Some(connector) = connector_of(store, &id)? else {
                    // Recorded in community.json but not in the store: no members.
                    if self.missing.replace(id) != Some(id) {
                        warn!(community = %id, "the community this node runs is not in its store: it has no members for the relay and market following");
                    }
                    self.seen = None;
                    return Ok(self.change_to(Admitted::default()));
                };
                self.missing = None;
                let summary = store.set_summary(&connector)?;
                let due = self.admitted.next_change_ms.is_some_and(|t| t <= now_ms);
                if self.seen == Some((id, summary)) && !due {
                    return Ok(None);
                }
                let memberships = store.market_of_kind(&connector, Kind::Membership)?;
                let ends = store.market_of_kind(&connector, Kind::MembershipEnd)?;
                self.seen = Some((id, summary));
                admitted_at(&id, &memberships, &ends, now_ms)
            }
        };
        Ok(self.change_to(admitted))
    }

    fn change_to(&mut self, admitted: Admitted) -> Option<BTreeSet<PublicKey>> {
        let changed = admitted.members != self.admitted.members;
        self.admitted = admitted;
        changed.then(|| self.admitted.members.clone())
    }
}

/// The connector of the stored community `id`.
fn connector_of(store: &Store, id: &Id) -> Result<Option<PublicKey>, StoreError> {
    Ok(match store.attestation(id)?.map(|a| a.body) {
        Some(Body::Community(c)) => Some(c.connector),
        _ => None,
    })
}

/// What became of the markets a member's digest named.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Followed from now on.
    pub follow: Vec<PublicKey>,
    /// Skipped: past the member's [`MAX_MARKETS_PER_MEMBER`].
    pub over_member: usize,
    /// Skipped: past [`MAX_FOLLOWED_FOR_MEMBERS`] in all.
    pub over_total: usize,
}

/// The markets followed for each member, against the caps (pure: the store is asked by the
/// caller).
#[derive(Default)]
pub struct Follows {
    /// Markets followed because of each member's digests, since the node started.
    per_member: HashMap<PublicKey, usize>,
    /// Members whose digests went past a cap (logged once as a warning, then as debug).
    warned: HashSet<PublicKey>,
}

impl Follows {
    /// Of `new`, the markets `member` named that the node does not follow yet, those to follow
    /// while it follows `followed` in all. Counts them as hers.
    pub fn decide(&mut self, member: PublicKey, new: &[PublicKey], followed: usize) -> Decision {
        let hers = self.per_member.entry(member).or_insert(0);
        let by_member = MAX_MARKETS_PER_MEMBER.saturating_sub(*hers);
        let by_total = MAX_FOLLOWED_FOR_MEMBERS.saturating_sub(followed);
        let n = new.len().min(by_member).min(by_total);
        *hers += n;
        let skipped = new.len() - n;
        let (over_member, over_total) = if by_member <= by_total {
            (skipped, 0)
        } else {
            (0, skipped)
        };
        Decision {
            follow: new[..n].to_vec(),
            over_member,
            over_total,
        }
    }

    /// `n` of the markets counted as `member`'s were not followed after all (the store
    /// failed): they are hers to ask again.
    pub fn give_back(&mut self, member: &PublicKey, n: usize) {
        if let Some(hers) = self.per_member.get_mut(member) {
            *hers = hers.saturating_sub(n);
        }
    }

    /// Whether a cap hit for `member` is news (to warn) rather than a repeat (debug).
    fn first_warning(&mut self, member: PublicKey) -> bool {
        self.warned.insert(member)
    }
}

/// The members of the community this node runs, shared by the network's backend (which
/// follows their markets) and the task that keeps them (which also tells the relay).
#[derive(Default)]
pub struct Members {
    admitted: RwLock<HashSet<PublicKey>>,
    follows: Mutex<Follows>,
}

impl Members {
    /// From now on, these members and no others.
    pub fn set(&self, members: impl IntoIterator<Item = PublicKey>) {
        *self.admitted.write().unwrap_or_else(|p| p.into_inner()) = members.into_iter().collect();
    }

    /// Whether `key` is admitted now.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.admitted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    /// `peer` named `markets` in a digest: if it is an admitted member, the node follows (in
    /// the store, durably) those it did not follow yet, within the caps, and answers them.
    /// Nobody else's digest makes it follow anything. Blocking (the store).
    pub fn follow_for(
        &self,
        store: &Store,
        peer: &PublicKey,
        markets: &[PublicKey],
    ) -> Vec<PublicKey> {
        if markets.is_empty() || !self.contains(peer) {
            return Vec::new();
        }
        let mut new: Vec<PublicKey> = markets
            .iter()
            .filter(|m| !store.is_followed(m).unwrap_or(true))
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if new.is_empty() {
            return Vec::new();
        }
        // One at a time, so that two digests cannot both take the last places.
        let mut follows = self.follows.lock().unwrap_or_else(|p| p.into_inner());
        // Followed meanwhile by another digest or the API.
        new.retain(|m| !store.is_followed(m).unwrap_or(true));
        let followed = match store.followed() {
            Ok(f) => f.len(),
            Err(e) => {
                warn!(error = %e, member = %peer, "cannot count the markets followed: following none for the member");
                return Vec::new();
            }
        };
        let d = follows.decide(*peer, &new, followed);
        if d.over_member + d.over_total > 0 {
            let first = follows.first_warning(*peer);
            let (cap, which) = if d.over_member > 0 {
                (MAX_MARKETS_PER_MEMBER, "per member")
            } else {
                (MAX_FOLLOWED_FOR_MEMBERS, "in all")
            };
            let skipped = d.over_member + d.over_total;
            if first {
                warn!(member = %peer, skipped, cap, which, followed, "a member's markets past the cap are not followed");
            } else {
                debug!(member = %peer, skipped, cap, which, followed, "a member's markets past the cap are not followed");
            }
        }
        let mut done = Vec::with_capacity(d.follow.len());
        for m in &d.follow {
            match store.follow(m) {
                Ok(()) => done.push(*m),
                Err(e) => {
                    warn!(error = %e, member = %peer, market = %m, "cannot follow a member's market");
                    break;
                }
            }
        }
        follows.give_back(peer, d.follow.len() - done.len());
        if !done.is_empty() {
            debug!(member = %peer, markets = done.len(), "following a member's markets");
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use passalong_protocol::attestation::{Community, Membership, MembershipEnd};
    use passalong_protocol::Keypair;

    use super::*;

    fn key(n: u8) -> Keypair {
        Keypair::from_seed([n; 32])
    }

    fn market(n: u32) -> PublicKey {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&n.to_be_bytes());
        PublicKey(k)
    }

    const T0: u64 = 1_764_892_800_000;

    fn community(connector: &Keypair) -> Attestation {
        Attestation::sign(
            Body::Community(Community {
                connector: connector.public(),
                name: "Riverside".into(),
                created_at_ms: T0,
            }),
            connector,
        )
    }

    fn membership(connector: &Keypair, community: Id, member: &Keypair, at: u64) -> Attestation {
        Attestation::sign(
            Body::Membership(Membership::admit(connector.public(), community, member, at)),
            connector,
        )
    }

    fn end(author: &Keypair, membership: Id, ends_at_ms: u64) -> Attestation {
        Attestation::sign(
            Body::MembershipEnd(MembershipEnd {
                author: author.public(),
                membership,
                ends_at_ms,
                created_at_ms: T0 + 10,
            }),
            author,
        )
    }

    #[test]
    fn a_member_counts_from_her_start_until_her_earliest_end() {
        let k = key(1);
        let c = community(&k);
        let (a, b, x) = (key(2), key(3), key(4));
        let ma = membership(&k, c.id, &a, T0 + 1);
        let mb = membership(&k, c.id, &b, T0 + 5);
        // Another community of the same connector: not this one's member.
        let other = Id([9; 32]);
        let mx = membership(&k, other, &x, T0 + 1);
        let ends = [end(&k, mb.id, T0 + 50), end(&b, mb.id, T0 + 30)];
        let all = [ma.clone(), mb.clone(), mx];
        let at = |t| admitted_at(&c.id, &all, &ends, t);
        assert_eq!(at(T0).members, BTreeSet::new());
        assert_eq!(at(T0).next_change_ms, Some(T0 + 1));
        assert_eq!(at(T0 + 1).members, [a.public()].into());
        assert_eq!(
            at(T0 + 5).members,
            [a.public(), b.public()].into_iter().collect()
        );
        assert_eq!(at(T0 + 5).next_change_ms, Some(T0 + 30), "the earliest end");
        assert_eq!(at(T0 + 30).members, [a.public()].into());
        assert_eq!(at(T0 + 30).next_change_ms, None);
    }

    #[test]
    fn the_watch_reads_the_store_when_the_connectors_market_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let k = key(1);
        let c = community(&k);
        let (a, b) = (key(2), key(3));
        let now = passalong_api::now_ms();
        let ingest = |atts: &[&Attestation]| {
            let bytes: Vec<&[u8]> = atts.iter().map(|a| a.bytes.as_slice()).collect();
            for ack in store.ingest(&bytes, now).unwrap() {
                assert_eq!(ack.status, passalong_store::Status::Valid);
            }
        };
        let mut w = Watch::default();
        assert_eq!(w.poll(&store, None, now).unwrap(), None, "no community");
        assert_eq!(w.poll(&store, Some(c.id), now).unwrap(), None, "not stored");
        let ma = membership(&k, c.id, &a, now - 1_000);
        ingest(&[&c, &ma]);
        assert_eq!(
            w.poll(&store, Some(c.id), now).unwrap(),
            Some([a.public()].into())
        );
        assert_eq!(w.poll(&store, Some(c.id), now).unwrap(), None, "unchanged");
        let mb = membership(&k, c.id, &b, now - 500);
        // B leaves a minute from now: she counts until then.
        let eb = end(&b, mb.id, now + 60_000);
        ingest(&[&mb, &eb]);
        assert_eq!(
            w.poll(&store, Some(c.id), now).unwrap(),
            Some([a.public(), b.public()].into_iter().collect())
        );
        assert_eq!(
            w.poll(&store, Some(c.id), now + 60_000).unwrap(),
            Some([a.public()].into()),
            "her end came by the clock"
        );
        // A is removed by the connector.
        ingest(&[&end(&k, ma.id, now)]);
        assert_eq!(
            w.poll(&store, Some(c.id), now + 60_001).unwrap(),
            Some(BTreeSet::new())
        );
        // The community is gone (a node that stopped running it): nobody.
        ingest(&[&membership(&k, c.id, &key(5), now)]);
        assert_eq!(
            w.poll(&store, Some(c.id), now + 60_002).unwrap(),
            Some([key(5).public()].into())
        );
        assert_eq!(
            w.poll(&store, None, now + 60_002).unwrap(),
            Some(BTreeSet::new())
        );
    }

    #[test]
    fn a_member_gets_at_most_her_share_and_all_members_at_most_the_total() {
        let mut f = Follows::default();
        let (a, b) = (key(2).public(), key(3).public());
        let batch = |from: u32, n: u32| (from..from + n).map(market).collect::<Vec<_>>();
        // A names 1,500 markets, then 1,000 more: 500 of those are past her cap.
        let d = f.decide(a, &batch(0, 1_500), 0);
        assert_eq!((d.follow.len(), d.over_member, d.over_total), (1_500, 0, 0));
        let d = f.decide(a, &batch(1_500, 1_000), 1_500);
        assert_eq!((d.follow.len(), d.over_member, d.over_total), (500, 500, 0));
        assert_eq!(d.follow, batch(1_500, 500));
        assert_eq!(f.decide(a, &batch(2_500, 1), 2_000).over_member, 1);
        // B is stopped by the total, not by her own cap.
        let d = f.decide(b, &batch(10_000, 1_000), MAX_FOLLOWED_FOR_MEMBERS - 300);
        assert_eq!((d.follow.len(), d.over_member, d.over_total), (300, 0, 700));
        assert_eq!(
            f.decide(b, &batch(20_000, 5), MAX_FOLLOWED_FOR_MEMBERS)
                .follow
                .len(),
            0
        );
        // What the store failed to follow is hers to ask again.
        f.give_back(&a, 10);
        assert_eq!(f.decide(a, &batch(3_000, 20), 0).follow.len(), 10);
    }

    #[test]
    fn only_an_admitted_members_digest_makes_the_node_follow_within_the_caps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let members = Members::default();
        let (a, x) = (key(2).public(), key(4).public());
        members.set([a]);
        let named: Vec<PublicKey> = (0..3).map(market).collect();
        assert_eq!(members.follow_for(&store, &x, &named), Vec::new());
        assert!(store.followed().unwrap().is_empty(), "an outsider's digest");
        store.follow(&market(1)).unwrap();
        assert_eq!(
            members.follow_for(&store, &a, &named),
            vec![market(0), market(2)],
            "what is followed already is not news"
        );
        assert_eq!(store.followed().unwrap().len(), 3);
        assert_eq!(members.follow_for(&store, &a, &named), Vec::new());
        // Removed, she makes it follow nothing more.
        members.set([]);
        assert!(!members.contains(&a));
        assert_eq!(members.follow_for(&store, &a, &[market(7)]), Vec::new());
        assert_eq!(store.followed().unwrap().len(), 3);
    }
}
