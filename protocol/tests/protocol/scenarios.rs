//! Hand-computed payout scenarios: each rule, refunds, settlements, equivocation, disputes,
//! the connector share, eligibility, window and depth.

use crate::common::*;
use passalong_protocol::state::{Dispute, Equivocation};
use passalong_protocol::{InvalidReason, Outcome, Rule};

/// seller S, chain B (hop 3) → C (hop 2) → D (hop 1) → buyer E, sale of 10 000 at 10 %.
fn chain(rule: Rule) -> Vec<passalong_protocol::Attestation> {
    let (s, b, c, d, e) = (key(1), key(2), key(3), key(4), key(5));
    let o = offer(&s, policy(rule, 1_000), T0);
    let rb = refer(&b, &o, None, T0 + 1);
    let rc = refer(&c, &o, Some(&rb), T0 + 2);
    let rd = refer(&d, &o, Some(&rc), T0 + 3);
    let r = receipt(&s, &o, "order-1", 10_000, e.public(), Some(&rd), T0 + 4);
    vec![o, rb, rc, rd, r]
}

fn ledger_of(atts: &[passalong_protocol::Attestation]) -> passalong_protocol::Ledger {
    let refs: Vec<&_> = atts.iter().collect();
    state_of(&refs).ledger(&key(1).public())
}

#[test]
fn direct_pays_hop_one_only() {
    let l = ledger_of(&chain(Rule::Direct));
    assert_eq!(line(&l, &key(4)), Some((1_000, 0, 0, 1_000)));
    assert_eq!(line(&l, &key(3)), None, "zero shares get no line");
    assert_eq!(l.entries.len(), 1);
}

#[test]
fn equal_splits_evenly_with_floor() {
    let l = ledger_of(&chain(Rule::Equal));
    for k in [2, 3, 4] {
        assert_eq!(line(&l, &key(k)), Some((333, 0, 0, 333)));
    }
}

#[test]
fn geometric_halves() {
    let l = ledger_of(&chain(Rule::Geometric { r_bps: 5_000 }));
    assert_eq!(line(&l, &key(4)).unwrap().0, 500);
    assert_eq!(line(&l, &key(3)).unwrap().0, 250);
    assert_eq!(line(&l, &key(2)).unwrap().0, 125);
}

#[test]
fn split_proof_pays_pool_over_two_to_the_length_minus_one() {
    let l = ledger_of(&chain(Rule::SplitProof));
    for k in [2, 3, 4] {
        assert_eq!(line(&l, &key(k)).unwrap().0, 250);
    }
}

#[test]
fn refund_claws_back_and_settlement_can_go_negative() {
    let mut atts = chain(Rule::Direct);
    let d = key(4);
    atts.push(settle(&key(1), d.public(), 1_500, T0 + 10));
    let l = ledger_of(&atts);
    assert_eq!(line(&l, &d), Some((1_000, 0, 1_500, -500)));
    let rf = refund(&key(1), &atts[4], T0 + 11);
    atts.push(rf);
    let l = ledger_of(&atts);
    assert_eq!(line(&l, &d), Some((1_000, 1_000, 1_500, -1_500)));
}

#[test]
fn equivocating_receipts_smaller_id_counts_and_pair_is_evidence() {
    let mut atts = chain(Rule::Direct);
    let (s, o) = (key(1), atts[0].clone());
    // Same order, no referral this time.
    let other = receipt(&s, &o, "order-1", 10_000, key(5).public(), None, T0 + 5);
    atts.push(other.clone());
    let st = state_of(&atts.iter().collect::<Vec<_>>());
    let first = &atts[4];
    let (lo, hi) = if first.id < other.id {
        (first, &other)
    } else {
        (&other, first)
    };
    assert_eq!(
        st.equivocations(&s.public()),
        vec![Equivocation {
            counted: lo.id,
            other: hi.id
        }]
    );
    let l = st.ledger(&s.public());
    let expected = if lo.id == first.id {
        Some((1_000, 0, 0, 1_000))
    } else {
        None
    };
    assert_eq!(line(&l, &key(4)), expected);
}

#[test]
fn purchase_claim_naming_another_referral_is_a_dispute() {
    let mut atts = chain(Rule::Direct);
    let buyer = key(5);
    let honest = claim(&buyer, &atts[0], "order-1", Some(atts[3].id), T0 + 6);
    let disputing = claim(&buyer, &atts[0], "order-1", Some(atts[2].id), T0 + 7);
    let stranger = claim(&key(9), &atts[0], "order-1", None, T0 + 7);
    atts.extend([honest, disputing.clone(), stranger.clone()]);
    let st = state_of(&atts.iter().collect::<Vec<_>>());
    let mut expected = vec![
        Dispute {
            claim: disputing.id,
            receipt: atts[4].id,
            buyer_matches: true,
            claimed_via: Some(atts[2].id),
            recorded_via: Some(atts[3].id),
        },
        Dispute {
            claim: stranger.id,
            receipt: atts[4].id,
            buyer_matches: false,
            claimed_via: None,
            recorded_via: Some(atts[3].id),
        },
    ];
    expected.sort();
    assert_eq!(st.disputes(&key(1).public()), expected);
}

#[test]
fn a_referral_dated_before_its_parent_is_invalid() {
    let (s, b, c) = (key(1), key(2), key(3));
    let o = offer(&s, policy(Rule::Direct, 1_000), T0);
    let rb = refer(&b, &o, None, T0 + 10);
    let rc = refer(&c, &o, Some(&rb), T0 + 9);
    let st = state_of(&[&o, &rb, &rc]);
    assert_eq!(
        st.outcome(&rc.id),
        Some(Outcome::Invalid(InvalidReason::BeforeParent))
    );
}

#[test]
fn the_connector_buying_through_a_member_gets_no_connector_share() {
    let (s, conn, m) = (key(1), key(6), key(7));
    let mut p = policy(Rule::Direct, 1_000);
    p.connector_bps = 200;
    let o = offer(&s, p, T0);
    let c = community(&conn, T0);
    let ms = membership(&conn, &c, &m, T0 + 1);
    let r1 = refer_full(&m, o.id, None, None, Some(c.id), T0 + 2);
    let sale = receipt(&s, &o, "1", 10_000, conn.public(), Some(&r1), T0 + 3);
    let l = state_of(&[&o, &c, &ms, &r1, &sale]).ledger(&s.public());
    assert_eq!(line(&l, &conn), None);
    assert_eq!(line(&l, &m).unwrap().0, 1_000);
}

#[test]
fn self_referral_repeated_key_and_seller_hops_earn_nothing_but_keep_position() {
    let (s, b, e) = (key(1), key(2), key(5));
    let o = offer(&s, policy(Rule::Geometric { r_bps: 5_000 }, 1_000), T0);
    let r1 = refer(&b, &o, None, T0 + 1); // hop 4: B again (nearer B is hop 2)
    let r2 = refer(&s, &o, Some(&r1), T0 + 2); // hop 3: the seller
    let r3 = refer(&b, &o, Some(&r2), T0 + 3); // hop 2: B
    let r4 = refer(&e, &o, Some(&r3), T0 + 4); // hop 1: the buyer
    let r = receipt(&s, &o, "x", 10_000, e.public(), Some(&r4), T0 + 5);
    let l = state_of(&[&o, &r1, &r2, &r3, &r4, &r]).ledger(&s.public());
    // hop 1 (buyer) 500 kept by seller; hop 2 B 250; hop 3 seller; hop 4 B again: nothing.
    assert_eq!(line(&l, &b), Some((250, 0, 0, 250)));
    assert_eq!(l.entries.len(), 1);
}

#[test]
fn window_and_future_referrals_end_the_chain() {
    let (s, b, c, e) = (key(1), key(2), key(3), key(5));
    let mut p = policy(Rule::Equal, 1_000);
    p.window_ms = DAY_MS;
    let o = offer(&s, p, T0);
    let rb = refer(&b, &o, None, T0); // two days before the sale: outside the window
    let rc = refer(&c, &o, Some(&rb), T0 + DAY_MS + 1);
    let r = receipt(&s, &o, "x", 10_000, e.public(), Some(&rc), T0 + 2 * DAY_MS);
    let l = state_of(&[&o, &rb, &rc, &r]).ledger(&s.public());
    assert_eq!(line(&l, &c), Some((1_000, 0, 0, 1_000)), "a chain of one");
    assert_eq!(line(&l, &b), None);
    // A referral created after the receipt does not count at all.
    let late = refer(&c, &o, None, T0 + 3 * DAY_MS);
    let r2 = receipt(
        &s,
        &o,
        "y",
        10_000,
        e.public(),
        Some(&late),
        T0 + 2 * DAY_MS,
    );
    let l = state_of(&[&o, &late, &r2]).ledger(&s.public());
    assert!(l.entries.is_empty());
}

#[test]
fn max_depth_keeps_nearest_hops() {
    let s = key(1);
    let mut p = policy(Rule::Equal, 1_000);
    p.max_depth = 2;
    let o = offer(&s, p, T0);
    let mut atts = vec![o.clone()];
    let mut parent: Option<passalong_protocol::Attestation> = None;
    for i in 0..4u8 {
        let r = refer(&key(10 + i), &o, parent.as_ref(), T0 + 1 + u64::from(i));
        atts.push(r.clone());
        parent = Some(r);
    }
    atts.push(receipt(
        &s,
        &o,
        "x",
        10_000,
        key(5).public(),
        parent.as_ref(),
        T0 + 10,
    ));
    let l = state_of(&atts.iter().collect::<Vec<_>>()).ledger(&s.public());
    assert_eq!(line(&l, &key(13)).unwrap().0, 500);
    assert_eq!(line(&l, &key(12)).unwrap().0, 500);
    assert_eq!(line(&l, &key(11)), None);
}

#[test]
fn require_purchase_needs_an_earlier_unrefunded_purchase() {
    let (s, b, c, e) = (key(1), key(2), key(3), key(5));
    let mut p = policy(Rule::Equal, 1_000);
    p.require_purchase = true;
    let o = offer(&s, p, T0);
    let bought = receipt(&s, &o, "b-buys", 2_000, b.public(), None, T0 + 1);
    let rb = refer(&b, &o, None, T0 + 2); // B bought before referring: eligible
    let rc = refer(&c, &o, Some(&rb), T0 + 3); // C never bought: its half stays with S
    let r = receipt(&s, &o, "e-buys", 10_000, e.public(), Some(&rc), T0 + 4);
    let l = state_of(&[&o, &bought, &rb, &rc, &r]).ledger(&s.public());
    assert_eq!(line(&l, &b), Some((500, 0, 0, 500)));
    assert_eq!(line(&l, &c), None);
    // Refunding B's own purchase makes B ineligible.
    let rf = refund(&s, &bought, T0 + 5);
    let l = state_of(&[&o, &bought, &rb, &rc, &r, &rf]).ledger(&s.public());
    assert_eq!(line(&l, &b), None);
}

#[test]
fn connector_share_needs_an_admitted_member_at_hop_one() {
    let (s, conn, m, e) = (key(1), key(6), key(7), key(5));
    let mut p = policy(Rule::Direct, 1_000);
    p.connector_bps = 200;
    let o = offer(&s, p, T0);
    let c = community(&conn, T0);
    let ms = membership(&conn, &c, &m, T0 + 1);
    let r1 = refer_full(&m, o.id, None, None, Some(c.id), T0 + 2);
    let sale = receipt(&s, &o, "1", 10_000, e.public(), Some(&r1), T0 + 3);
    let l = state_of(&[&o, &c, &ms, &r1, &sale]).ledger(&s.public());
    assert_eq!(line(&l, &m).unwrap().0, 1_000);
    assert_eq!(line(&l, &conn).unwrap().0, 200);
    // Ended before the referral: no connector share.
    let end = membership_end(&m, &ms, T0 + 2);
    let l = state_of(&[&o, &c, &ms, &end, &r1, &sale]).ledger(&s.public());
    assert_eq!(line(&l, &conn), None);
    // Not a member at all.
    let l = state_of(&[&o, &c, &r1, &sale]).ledger(&s.public());
    assert_eq!(line(&l, &conn), None);
}

#[test]
fn outcomes_pending_held_invalid() {
    let (s, b) = (key(1), key(2));
    let o = offer(&s, policy(Rule::Direct, 1_000), T0);
    let rb = refer(&b, &o, None, T0 + 1);
    let mut st = passalong_protocol::State::new();
    let rep = st.insert(&rb.bytes, T0 + 10);
    assert_eq!(
        rep[0].outcome,
        Outcome::Pending {
            missing: vec![o.id]
        }
    );
    let rep = st.insert(&o.bytes, T0 + 10);
    assert_eq!(rep.len(), 2, "the offer and the referral it unblocked");
    assert!(rep.iter().all(|r| r.outcome == Outcome::Valid));

    let future = refer(&key(3), &o, Some(&rb), T0 + DAY_MS);
    let rep = st.insert(&future.bytes, T0);
    assert!(matches!(rep[0].outcome, Outcome::Held { until_ms } if until_ms < T0 + DAY_MS));
    assert!(st.tick(T0 + 1000).is_empty());
    let rep = st.tick(T0 + DAY_MS);
    assert_eq!(rep[0].outcome, Outcome::Valid);

    // Addressed to C: D may not refer on from it.
    let to_c = refer_full(&key(2), o.id, None, Some(key(3).public()), None, T0 + 2);
    let by_d = refer_full(&key(4), o.id, Some(to_c.id), None, None, T0 + 3);
    st.insert(&to_c.bytes, T0 + 10);
    let rep = st.insert(&by_d.bytes, T0 + 10);
    assert_eq!(
        rep[0].outcome,
        Outcome::Invalid(InvalidReason::NotRecipient)
    );
    // A receipt by someone else than the seller.
    let fake = receipt(&key(9), &o, "1", 100, key(5).public(), None, T0 + 3);
    let rep = st.insert(&fake.bytes, T0 + 10);
    assert_eq!(
        rep[0].outcome.clone(),
        Outcome::Invalid(InvalidReason::WrongAuthor {
            role: "offer's seller"
        })
    );
}

#[test]
fn child_of_an_invalid_parent_is_invalid_in_any_order() {
    let (s, b) = (key(1), key(2));
    let o = offer(&s, policy(Rule::Direct, 1_000), T0);
    let mut bad = refer(&b, &o, None, T0 + 1);
    bad.bytes[70] ^= 1; // break the signature
    let bad = passalong_protocol::Attestation::decode(&bad.bytes).unwrap();
    let child = refer_full(&key(3), o.id, Some(bad.id), None, None, T0 + 2);
    for order in [[&o, &bad, &child], [&child, &bad, &o], [&bad, &child, &o]] {
        let st = state_of(&order);
        assert!(matches!(
            st.outcome(&child.id),
            Some(Outcome::Invalid(InvalidReason::DependsOnInvalid(_)))
        ));
    }
}

#[test]
fn chain_longer_than_64_hops_is_invalid() {
    let s = key(1);
    let o = offer(&s, policy(Rule::Direct, 1_000), T0);
    let mut atts = vec![o.clone()];
    for i in 0..65u64 {
        let parent = atts.last().filter(|_| i > 0).map(|a| a.id);
        atts.push(refer_full(
            &key(2 + (i % 2) as u8),
            o.id,
            parent,
            None,
            None,
            T0 + i,
        ));
    }
    let st = state_of(&atts.iter().collect::<Vec<_>>());
    assert_eq!(st.outcome(&atts[64].id), Some(Outcome::Valid));
    assert_eq!(
        st.outcome(&atts[65].id),
        Some(Outcome::Invalid(InvalidReason::ChainTooLong))
    );
}
