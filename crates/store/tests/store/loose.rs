//! Loose attestations (referrals and purchase claims no sale anchors) are kept within a budget
//! per author and per market, the newest kept; a sale anchors its chain, which is then kept
//! for good; what the node's own API stores is never dropped; and no ledger changes.

use crate::common::*;
use passalong_protocol::{Attestation, Keypair, Kind, PublicKey, Rule};
use passalong_store::{
    ExpiryLimits, NotKept, Status, Store, DECLINE_MS, MAX_LOOSE_PER_AUTHOR, MAX_LOOSE_PER_MARKET,
};
use proptest::prelude::*;

const NOW: u64 = T0 + 400 * DAY_MS;

fn envs(atts: &[Attestation]) -> Vec<&[u8]> {
    atts.iter().map(|a| a.bytes.as_slice()).collect()
}

/// A fresh key per `n` (a spammer's keys cost nothing).
fn fresh_key(n: u32) -> Keypair {
    let mut seed = [0x5A; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    Keypair::from_seed(seed)
}

fn limits(per_author: u64, per_market: u64) -> ExpiryLimits {
    ExpiryLimits {
        max_loose_per_author: per_author,
        max_loose_per_market: per_market,
        ..ExpiryLimits::default()
    }
}

/// The market's referrals held, sorted.
fn referrals(st: &Store, seller: &PublicKey) -> Vec<(u64, passalong_protocol::Id)> {
    let mut v: Vec<_> = st
        .market(seller)
        .expect("a store read")
        .into_iter()
        .filter(|e| e.2 == Kind::Referral as u8)
        .map(|(t, id, _)| (t, id))
        .collect();
    v.sort();
    v
}

/// The seller's receipt of order 1 of `o`, through `via`.
fn sale(o: &Attestation, via: Option<&Attestation>, t: u64) -> Attestation {
    receipt(&key(1), o, "order-1", 2_000, key(7).public(), via, t)
}

fn open_with_offer(dir: &std::path::Path, limits: ExpiryLimits) -> (Store, Attestation) {
    let st = Store::open(dir).expect("open the store");
    st.set_expiry_limits(limits);
    let o = offer(&key(1), policy(Rule::Direct, 1_000), T0);
    st.ingest_own(&[&o.bytes], NOW).expect("the offer");
    (st, o)
}

/// One key signing 1,000 valid referrals of a followed market costs its followers
/// `MAX_LOOSE_PER_AUTHOR` of them: the newest, whatever the calls; the others are answered
/// valid but "over budget". Reopened, the store holds the same.
#[test]
fn one_key_signing_many_referrals_costs_a_bounded_amount() {
    let dir = tempfile::tempdir().unwrap();
    let (st, o) = open_with_offer(dir.path(), ExpiryLimits::default());
    let spammer = key(9);
    let spam: Vec<Attestation> = (0..1_000u64)
        .map(|i| refer(&spammer, &o, None, T0 + 1 + (i * 7_919) % 1_000))
        .collect();
    let mut over = 0;
    for chunk in spam.chunks(64) {
        let acks = st.ingest(&envs(chunk), NOW).unwrap();
        for a in acks.iter().take(chunk.len()) {
            assert_eq!(a.status, Status::Valid, "valid, kept or not");
            if a.not_kept == Some(NotKept::OverBudget) {
                over += 1;
            }
        }
    }
    assert!(
        over > 0 && over <= 1_000 - MAX_LOOSE_PER_AUTHOR as usize,
        "{over}"
    );
    let mut newest: Vec<_> = spam
        .iter()
        .map(|a| (a.body.created_at_ms(), a.id))
        .collect();
    newest.sort();
    let newest = newest.split_off(newest.len() - MAX_LOOSE_PER_AUTHOR as usize);
    let seller = key(1).public();
    assert_eq!(referrals(&st, &seller), newest);
    assert_eq!(
        st.market_count(&seller, Kind::Referral).unwrap(),
        MAX_LOOSE_PER_AUTHOR
    );
    assert_eq!(st.valid_count().unwrap(), 1 + MAX_LOOSE_PER_AUTHOR);
    // Dropped ones are gone: asked again, not stored.
    let oldest = spam.iter().min_by_key(|a| a.body.created_at_ms()).unwrap();
    assert_eq!(st.status(&oldest.id).unwrap(), None);
    assert!(st.envelope(&oldest.id).unwrap().is_none());
    // Sent again, an old one is checked, found valid, and dropped at once.
    let acks = st.ingest(&[&oldest.bytes], NOW).unwrap();
    assert_eq!(acks[0].not_kept, Some(NotKept::OverBudget));
    assert_eq!(referrals(&st, &seller), newest);
    // Anti-entropy does not fetch it again for a while.
    assert!(st.declined(&oldest.id, NOW + 1));
    assert!(!st.declined(&oldest.id, NOW + DECLINE_MS));
    assert!(!st.declined(&newest[0].1, NOW + 1), "kept: not declined");
    st.close().unwrap();
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(referrals(&st, &seller), newest);
    assert_eq!(
        st.market_count(&seller, Kind::Referral).unwrap(),
        MAX_LOOSE_PER_AUTHOR
    );
    // Newest first lists them too.
    let listed = st.newest(&seller, Some(Kind::Referral)).count();
    assert_eq!(listed, MAX_LOOSE_PER_AUTHOR as usize);
    assert_eq!(MAX_LOOSE_PER_MARKET, 10_000);
    // A dropped referral leaves no hop record behind (a walk must not find it), also after
    // a checkpoint and reopening.
    let kept = |st: &Store| {
        spam.iter()
            .filter(|a| st.has_hop_record(&a.id).unwrap())
            .map(|a| (a.body.created_at_ms(), a.id))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let want: std::collections::BTreeSet<_> = newest.iter().copied().collect();
    assert_eq!(kept(&st), want);
    st.checkpoint().unwrap();
    st.close().unwrap();
    let st = Store::open(dir.path()).unwrap();
    assert_eq!(kept(&st), want);
}

/// Many fresh keys, one referral each: the market's budget holds, the newest kept.
#[test]
fn many_keys_are_bounded_by_the_market_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (st, o) = open_with_offer(dir.path(), limits(4, 50));
    let spam: Vec<Attestation> = (0..200u32)
        .map(|i| refer(&fresh_key(i), &o, None, T0 + 10 + u64::from(i * 37 % 200)))
        .collect();
    for chunk in spam.chunks(17) {
        st.ingest(&envs(chunk), NOW).unwrap();
    }
    let mut newest: Vec<_> = spam
        .iter()
        .map(|a| (a.body.created_at_ms(), a.id))
        .collect();
    newest.sort();
    let newest = newest.split_off(150);
    assert_eq!(referrals(&st, &key(1).public()), newest);
}

/// A sale through a loose chain anchors it: the chain is kept whatever the author signs
/// next, and the ledger pays through it, equal to a recompute.
#[test]
fn a_sale_anchors_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (st, o) = open_with_offer(dir.path(), limits(3, 1_000));
    let (a, b) = (key(2), key(3));
    let ra = refer(&a, &o, None, T0 + 1);
    let rb = refer(&b, &o, Some(&ra), T0 + 2);
    st.ingest(&envs(&[ra.clone(), rb.clone()]), NOW).unwrap();
    let sale = sale(&o, Some(&rb), T0 + 3);
    st.ingest(&[&sale.bytes], NOW).unwrap();
    // `a` now signs more than its budget: its anchored referral stays.
    let more: Vec<Attestation> = (0..10).map(|i| refer(&a, &o, None, T0 + 10 + i)).collect();
    st.ingest(&envs(&more), NOW).unwrap();
    let held = referrals(&st, &key(1).public());
    assert!(held.iter().any(|(_, id)| *id == ra.id), "anchored: kept");
    assert!(held.iter().any(|(_, id)| *id == rb.id));
    assert_eq!(held.len(), 2 + 3, "the chain and a's 3 newest loose");
    let seller = key(1).public();
    assert_eq!(
        st.ledger(&seller).unwrap(),
        st.recompute_ledger(&seller, NOW).unwrap()
    );
    assert!(st
        .ledger(&seller)
        .unwrap()
        .entries
        .iter()
        .any(|e| e.participant == b.public() && e.earned > 0));
}

/// A sale through a referral that was dropped waits for it; sent again (as the network's
/// parent fetch does), it is anchored by the sale in the same call and kept.
#[test]
fn a_dropped_referral_comes_back_with_its_sale() {
    let dir = tempfile::tempdir().unwrap();
    let (st, o) = open_with_offer(dir.path(), limits(2, 1_000));
    let a = key(2);
    let old = refer(&a, &o, None, T0 + 1);
    let newer: Vec<Attestation> = (0..2).map(|i| refer(&a, &o, None, T0 + 10 + i)).collect();
    st.ingest(&[&old.bytes], NOW).unwrap();
    st.ingest(&envs(&newer), NOW).unwrap();
    assert_eq!(
        st.status(&old.id).unwrap(),
        None,
        "dropped: the oldest of 3"
    );
    let sale = sale(&o, Some(&old), T0 + 20);
    let acks = st.ingest(&[&sale.bytes], NOW).unwrap();
    assert!(matches!(acks[0].status, Status::Pending { .. }));
    let acks = st.ingest(&[&old.bytes], NOW).unwrap();
    assert_eq!(acks[0].status, Status::Valid);
    assert_eq!(acks[0].not_kept, None, "anchored by the waiting sale");
    assert_eq!(st.status(&sale.id).unwrap(), Some(Status::Valid));
    let seller = key(1).public();
    assert_eq!(
        st.ledger(&seller).unwrap(),
        st.recompute_ledger(&seller, NOW).unwrap()
    );
    assert_eq!(referrals(&st, &seller).len(), 3);
}

/// Dropping a loose referral drops the loose ones below it (whoever made them).
#[test]
fn a_dropped_referral_takes_its_subtree() {
    let dir = tempfile::tempdir().unwrap();
    let (st, o) = open_with_offer(dir.path(), limits(2, 1_000));
    let (a, b, c) = (key(2), key(3), key(4));
    let ra = refer(&a, &o, None, T0 + 1);
    let rb = refer(&b, &o, Some(&ra), T0 + 2);
    let rc = refer(&c, &o, Some(&rb), T0 + 3);
    st.ingest(&envs(&[ra.clone(), rb.clone(), rc.clone()]), NOW)
        .unwrap();
    let more: Vec<Attestation> = (0..2).map(|i| refer(&a, &o, None, T0 + 10 + i)).collect();
    st.ingest(&envs(&more), NOW).unwrap();
    for gone in [&ra, &rb, &rc] {
        assert_eq!(st.status(&gone.id).unwrap(), None);
    }
    assert_eq!(referrals(&st, &key(1).public()).len(), 2);
    assert_eq!(
        st.market_count(&key(1).public(), Kind::Referral).unwrap(),
        2
    );
}

/// What the node's own API stores is anchored: never dropped, and it anchors the chain above
/// it (a link opened after its referrals came by gossip).
#[test]
fn own_acts_and_opened_links_are_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (st, o) = open_with_offer(dir.path(), limits(2, 1_000));
    let a = key(2);
    let own: Vec<Attestation> = (0..10).map(|i| refer(&a, &o, None, T0 + 1 + i)).collect();
    st.ingest_own(&envs(&own), NOW).unwrap();
    assert_eq!(referrals(&st, &key(1).public()).len(), 10);
    // A friend's referral came by gossip (loose); then the user opens a link through it.
    let friend = key(3);
    let rf = refer(&friend, &o, None, T0 + 100);
    st.ingest(&[&rf.bytes], NOW).unwrap();
    st.ingest_own(&[&rf.bytes], NOW).unwrap();
    let later: Vec<Attestation> = (0..5)
        .map(|i| refer(&friend, &o, None, T0 + 200 + i))
        .collect();
    st.ingest(&envs(&later), NOW).unwrap();
    assert_eq!(st.status(&rf.id).unwrap(), Some(Status::Valid), "anchored");
    assert_eq!(referrals(&st, &key(1).public()).len(), 10 + 1 + 2);
}

/// A purchase claim is loose until its order has a receipt.
#[test]
fn a_claim_is_anchored_by_its_order_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let (st, o) = open_with_offer(dir.path(), limits(1, 1_000));
    let buyer = key(7);
    let c1 = claim(&buyer, &o, "order-1", None, T0 + 1);
    let sale = receipt(&key(1), &o, "order-1", 2_000, buyer.public(), None, T0 + 2);
    st.ingest(&envs(&[c1.clone(), sale]), NOW).unwrap();
    let c2 = claim(&buyer, &o, "order-2", None, T0 + 3);
    let c3 = claim(&buyer, &o, "order-3", None, T0 + 4);
    st.ingest(&envs(&[c2.clone(), c3.clone()]), NOW).unwrap();
    assert_eq!(st.status(&c1.id).unwrap(), Some(Status::Valid), "anchored");
    assert_eq!(st.status(&c2.id).unwrap(), None, "loose, the older of two");
    assert_eq!(st.status(&c3.id).unwrap(), Some(Status::Valid));
}

/// A dropped referral that named a community takes with it what only it made the market
/// depend on (the community, the referrer's membership), so that the reconciled set stays a
/// function of what is held.
#[test]
fn a_dropped_referral_takes_its_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let (st, o) = open_with_offer(dir.path(), limits(1, 1_000));
    let (connector, member) = (key(5), key(2));
    let c = community(&connector, T0);
    let m = membership(&connector, &c, &member, T0 + 1);
    st.ingest(&envs(&[c.clone(), m.clone()]), NOW).unwrap();
    let named = refer_full(&member, o.id, None, None, Some(c.id), T0 + 2);
    st.ingest(&[&named.bytes], NOW).unwrap();
    let seller = key(1).public();
    let deps: Vec<_> = st
        .dependencies(&seller)
        .unwrap()
        .into_iter()
        .map(|d| d.1)
        .collect();
    assert_eq!(deps.len(), 2, "the community and the membership");
    assert!(deps.contains(&c.id) && deps.contains(&m.id));
    let newer = refer(&member, &o, None, T0 + 3);
    st.ingest(&[&newer.bytes], NOW).unwrap();
    assert_eq!(st.status(&named.id).unwrap(), None, "dropped");
    assert!(st.dependencies(&seller).unwrap().is_empty());
    // The community and membership themselves are the connector's market: still held.
    assert_eq!(st.status(&m.id).unwrap(), Some(Status::Valid));
}

proptest! {
    #![proptest_config(crate::proptest_config(24))]

    /// Within the market's budget, what a store keeps of each author's loose referrals is the
    /// newest ones, whatever the order and batching they came in: two nodes that were sent
    /// the same keep the same, so reconciling them ends.
    #[test]
    fn what_is_kept_does_not_depend_on_the_order(
        times in proptest::collection::vec((0u8..4, 0u64..1_000), 1..60),
        seed in any::<u64>(),
        batch in 1usize..9,
    ) {
        let o = offer(&key(1), policy(Rule::Direct, 1_000), T0);
        let atts: Vec<Attestation> = times
            .iter()
            .map(|(who, t)| refer(&key(20 + who), &o, None, T0 + 1 + t))
            .collect();
        let mut shuffled = atts.clone();
        // A deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let kept = |order: &[Attestation], batch: usize| {
            let dir = tempfile::tempdir().unwrap();
            let (st, _) = open_with_offer(dir.path(), limits(5, 1_000));
            for chunk in order.chunks(batch) {
                st.ingest(&envs(chunk), NOW).unwrap();
            }
            referrals(&st, &key(1).public())
        };
        let a = kept(&atts, 64);
        let b = kept(&shuffled, batch);
        prop_assert_eq!(&a, &b);
        // The newest 5 of each author.
        let mut expected = Vec::new();
        for who in 0..4u8 {
            let mut mine: Vec<_> = atts
                .iter()
                .zip(&times)
                .filter(|(_, (w, _))| *w == who)
                .map(|(a, _)| (a.body.created_at_ms(), a.id))
                .collect();
            mine.sort();
            mine.dedup();
            let n = mine.len().saturating_sub(5);
            expected.extend(mine.split_off(n));
        }
        expected.sort();
        prop_assert_eq!(a, expected);
    }
}

/// A loose referral is found from its parent (what dropping the parent takes with it): one
/// anchored in the call that brought it leaves no such key, and a loose subtree is still
/// dropped whole.
#[test]
fn only_loose_referrals_are_found_from_their_parent() {
    use passalong_store::keyspace::{key as skey, CHILD};
    let dir = tempfile::tempdir().unwrap();
    let (st, o) = open_with_offer(dir.path(), limits(1, 1_000));
    let (a, b, c, d) = (key(2), key(3), key(4), key(5));
    let ra = refer(&a, &o, None, T0 + 1);
    let rb = refer(&b, &o, Some(&ra), T0 + 2);
    // Brought with their sale: anchored in the same call.
    let rc = refer(&c, &o, None, T0 + 3);
    let rd = refer(&d, &o, Some(&rc), T0 + 4);
    let sold = receipt(
        &key(1),
        &o,
        "order-2",
        2_000,
        key(8).public(),
        Some(&rd),
        T0 + 5,
    );
    st.ingest(&envs(&[ra.clone(), rb.clone()]), NOW).unwrap();
    st.ingest(&envs(&[rc.clone(), rd.clone(), sold]), NOW)
        .unwrap();
    st.close().unwrap();
    {
        let db = crate::raw_open(dir.path());
        let child = |p: &Attestation, c: &Attestation| {
            db.get(skey(CHILD, &[&p.id.0, &c.id.0])).unwrap().is_some()
        };
        assert!(child(&ra, &rb), "loose: found from its parent");
        assert!(!child(&rc, &rd), "anchored as it came: no key");
    }
    // `a` signs past its budget of one: its loose referral goes, and the one below it.
    let st = Store::open(dir.path()).unwrap();
    st.set_expiry_limits(limits(1, 1_000));
    let newer = refer(&a, &o, None, T0 + 10);
    st.ingest(&[&newer.bytes], NOW).unwrap();
    assert_eq!(st.status(&ra.id).unwrap(), None, "dropped");
    assert_eq!(st.status(&rb.id).unwrap(), None, "dropped with its parent");
    assert_eq!(st.status(&rd.id).unwrap(), Some(Status::Valid));
    assert_eq!(referrals(&st, &key(1).public()).len(), 3);
}

/// A dropped referral takes its key by referrer with it: an offer that requires a purchase
/// indexes its referrals by referrer (a buyer's first purchase makes theirs eligible hops);
/// another offer's referral never had the key, and its drop deletes none.
#[test]
fn a_dropped_referral_leaves_no_key_by_referrer() {
    use passalong_store::keyspace::{key as skey, BY_REFERRER};
    let dir = tempfile::tempdir().unwrap();
    let st = Store::open(dir.path()).unwrap();
    st.set_expiry_limits(limits(1, 1_000));
    let mut gated_policy = policy(Rule::Direct, 1_000);
    gated_policy.require_purchase = true;
    let gated = offer(&key(1), gated_policy, T0);
    let plain = offer(&key(1), policy(Rule::Direct, 1_000), T0 + 1);
    st.ingest_own(&envs(&[gated.clone(), plain.clone()]), NOW)
        .unwrap();
    let a = key(2);
    let by_referrer = |db: &sled::Db, o: &Attestation| {
        db.scan_prefix(skey(BY_REFERRER, &[&o.id.0, &a.public().0]))
            .count()
    };
    st.ingest(&[&refer(&a, &gated, None, T0 + 2).bytes], NOW)
        .unwrap();
    st.close().unwrap();
    assert_eq!(by_referrer(&crate::raw_open(dir.path()), &gated), 1);
    // `a` is over its budget of one loose referral twice: both older ones go.
    let st = Store::open(dir.path()).unwrap();
    st.set_expiry_limits(limits(1, 1_000));
    st.ingest(&[&refer(&a, &plain, None, T0 + 3).bytes], NOW)
        .unwrap();
    st.ingest(&[&refer(&a, &plain, None, T0 + 4).bytes], NOW)
        .unwrap();
    assert_eq!(referrals(&st, &key(1).public()).len(), 1);
    st.close().unwrap();
    let db = crate::raw_open(dir.path());
    assert_eq!(by_referrer(&db, &gated), 0, "dropped with its referral");
    assert_eq!(by_referrer(&db, &plain), 0, "never written");
}
