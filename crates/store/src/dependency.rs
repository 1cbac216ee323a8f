//! What a market's ledger depends on outside the market, indexed under the market so that it
//! travels with it.
//!
//! The connector share of a sale depends on the community its hop 1 referral names and on
//! whether the referrer was a member then: Community, Membership and MembershipEnd
//! attestations, which belong to the connector's market, not the seller's. A node that
//! follows only the seller's market would never get them, and its ledger (and root) would
//! differ from the seller's. So each market also lists, under `DEPENDENCY`, the communities
//! its valid referrals name, the memberships of those referrers in them, and the ends of
//! those memberships: exactly what `admitted` and `connector` read for it, no more (a
//! community of 10,000 members adds to a market only the memberships of those who referred
//! in it). The network reconciles a market's own attestations and these together.
//!
//! The list is a function of the valid attestations held, whatever their order of arrival:
//! each of the four kinds, when it becomes valid, adds what the others already held imply.

use passalong_protocol::attestation::{Membership, MembershipEnd, Referral};
use passalong_protocol::{Body, Id, Kind, PublicKey};

use crate::keyspace::*;
use crate::txn::Txn;

/// Lists `id` (of `kind`, made at `created_at_ms`) among `market`'s dependencies.
fn depend(t: &mut Txn<'_>, market: PublicKey, id: Id, created_at_ms: u64, kind: Kind) {
    let mut v = created_at_ms.to_be_bytes().to_vec();
    v.push(kind as u8);
    t.put(key(DEPENDENCY, &[&market.0, &id.0]), v);
}

/// The markets of the valid referrals that name `community` (made by `member`, if given).
fn markets_naming(t: &Txn<'_>, community: &Id, member: Option<&PublicKey>) -> Vec<PublicKey> {
    let prefix = match member {
        Some(m) => key(NAMING, &[&community.0, &m.0]),
        None => key(NAMING, &[&community.0]),
    };
    let mut out: Vec<PublicKey> = t
        .scan(&prefix)
        .iter()
        .filter_map(|(k, _)| {
            let referral = t.referral(&Id(id_at(k, 65)))?;
            Some(t.offer(&referral.offer)?.seller)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A valid referral in `market`: its community, the referrer's memberships of it and their
/// ends become the market's.
pub(crate) fn referral(t: &mut Txn<'_>, market: PublicKey, r: &Referral) {
    let Some(community) = r.community else {
        return;
    };
    if let Some(Body::Community(c)) = t.body(&community) {
        depend(t, market, community, c.created_at_ms, Kind::Community);
    }
    for (k, start) in t.scan(&key(MEMBER, &[&community.0, &r.referrer.0])) {
        let membership = Id(id_at(&k, 65));
        depend(t, market, membership, u64_at(&start, 0), Kind::Membership);
        for (ek, at) in t.scan(&key(ENDED_BY, &[&membership.0])) {
            depend(
                t,
                market,
                Id(id_at(&ek, 33)),
                u64_at(&at, 0),
                Kind::MembershipEnd,
            );
        }
    }
}

/// A loose referral in `market` was dropped (see `loose`): what only it made the market's
/// is the market's no more, so that the list stays a function of the attestations held.
pub(crate) fn referral_gone(t: &mut Txn<'_>, market: PublicKey, r: &Referral) {
    let Some(community) = r.community else {
        return;
    };
    if markets_naming(t, &community, Some(&r.referrer)).contains(&market) {
        return;
    }
    for (k, _) in t.scan(&key(MEMBER, &[&community.0, &r.referrer.0])) {
        let membership = Id(id_at(&k, 65));
        t.del(key(DEPENDENCY, &[&market.0, &membership.0]));
        for (ek, _) in t.scan(&key(ENDED_BY, &[&membership.0])) {
            t.del(key(DEPENDENCY, &[&market.0, &ek[33..65]]));
        }
    }
    if !markets_naming(t, &community, None).contains(&market) {
        t.del(key(DEPENDENCY, &[&market.0, &community.0]));
    }
}

/// A valid community: it becomes a dependency of every market with a referral naming it.
pub(crate) fn community(t: &mut Txn<'_>, id: Id, created_at_ms: u64) {
    for market in markets_naming(t, &id, None) {
        depend(t, market, id, created_at_ms, Kind::Community);
    }
}

/// A valid membership: a dependency of the markets where the member named the community.
pub(crate) fn membership(t: &mut Txn<'_>, id: Id, m: &Membership) {
    for market in markets_naming(t, &m.community, Some(&m.member)) {
        depend(t, market, id, m.created_at_ms, Kind::Membership);
    }
}

/// A valid end of a membership: a dependency wherever the membership is.
pub(crate) fn end(t: &mut Txn<'_>, id: Id, e: &MembershipEnd) {
    t.put(
        key(ENDED_BY, &[&e.membership.0, &id.0]),
        e.created_at_ms.to_be_bytes().to_vec(),
    );
    let Some(m) = t.get(&key(MEMBERSHIP, &[&e.membership.0])) else {
        return;
    };
    let (community, member) = (Id(id_at(&m, 0)), PublicKey(id_at(&m, 32)));
    for market in markets_naming(t, &community, Some(&member)) {
        depend(t, market, id, e.created_at_ms, Kind::MembershipEnd);
    }
}

/// The markets whose ledgers depend on `body` (of id `id`), valid or not yet held: for a
/// community, the markets of the referrals that name it; for a membership or its end, those
/// of the member's referrals naming the community (an end's membership must be held). Empty
/// for other kinds.
pub(crate) fn dependents(t: &Txn<'_>, id: &Id, body: &Body) -> Vec<PublicKey> {
    match body {
        Body::Community(_) => markets_naming(t, id, None),
        Body::Membership(m) => markets_naming(t, &m.community, Some(&m.member)),
        Body::MembershipEnd(e) => match t.get(&key(MEMBERSHIP, &[&e.membership.0])) {
            Some(m) => markets_naming(t, &Id(id_at(&m, 0)), Some(&PublicKey(id_at(&m, 32)))),
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Builds the index over what a store of format 7 holds: the ends of memberships (`ends`, the
/// ids of the valid `MembershipEnd`s), then each referral that names a community. Idempotent:
/// an upgrade cut short starts again at the next open.
pub(crate) fn index_existing(t: &mut Txn<'_>, ends: &[Id]) {
    for id in ends {
        if let Some(Body::MembershipEnd(e)) = t.body(id) {
            t.put(
                key(ENDED_BY, &[&e.membership.0, &id.0]),
                e.created_at_ms.to_be_bytes().to_vec(),
            );
        }
    }
    for (k, _) in t.scan(&[NAMING]) {
        let Some(r) = t.referral(&Id(id_at(&k, 65))) else {
            continue;
        };
        if let Some(market) = t.offer(&r.offer).map(|o| o.seller) {
            referral(t, market, &r);
        }
    }
}
