//! Property tests of the payout invariants (proptest):
//! - the ledger depends only on the set of attestations: any permutation, any split into
//!   batches, gives the same ledger, root, equivocations and disputes;
//! - the ledger, walking each referral's chain once for all its receipts, equals the ledger
//!   computed receipt by receipt;
//! - a receipt's shares never exceed pool + connector share;
//! - a refund removes exactly that receipt's shares;
//! - recruiting without sales earns nothing;
//! - split_proof: inserting identities of one's own into a chain gains nothing; for geometric
//!   a counter-example exists and is found;
//! - an Offer with or without a checkout URL round-trips through its envelope with a stable id;
//!   without one it is exactly the version-1 envelope (a body declared here, apart from the
//!   crate, and the v1 tag), with one it is version 2 (that body, then the URL; the v2 tag).
//!
//! The scripts' offers carry a checkout URL half of the time, so the ledger properties run
//! over version-1 and version-2 offers alike.

use crate::common::*;
use passalong_protocol::attestation::{Body, Currency, Offer};
use passalong_protocol::{encoding, payout, validation};
use passalong_protocol::{Attestation, Id, Keypair, Ledger, Policy, PublicKey, Rule, State};
use proptest::prelude::*;

use crate::common::script::*;

type Summary = Vec<(
    PublicKey,
    Ledger,
    [u8; 32],
    Vec<passalong_protocol::state::Equivocation>,
    Vec<passalong_protocol::state::Dispute>,
)>;

fn summary(st: &State) -> Summary {
    SELLERS
        .iter()
        .map(|&s| {
            let pk = key(s).public();
            let l = st.ledger(&pk);
            let root = l.root();
            (pk, l, root, st.equivocations(&pk), st.disputes(&pk))
        })
        .collect()
}

const NOW: u64 = T0 + 400 * DAY_MS;

fn insert_all(atts: &[Attestation]) -> State {
    State::from_envelopes(atts.iter().map(|a| a.bytes.as_slice()), NOW)
}

/// Earned by `keys` in a ledger.
fn earned_by(l: &Ledger, keys: &[PublicKey]) -> u128 {
    l.entries
        .iter()
        .filter(|e| keys.contains(&e.participant))
        .map(|e| e.earned)
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ledger_depends_only_on_the_set(s in script(), perm_seed in any::<u64>(), cuts in prop::collection::vec(1..8usize, 1..6)) {
        let atts = build(&s);
        let baseline = summary(&insert_all(&atts));
        // A permutation from the seed (Fisher-Yates with a small LCG: deterministic per case).
        let mut shuffled = atts.clone();
        let mut x = perm_seed | 1;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (x >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(&summary(&insert_all(&shuffled)), &baseline);
        // The same permutation in batches, some verified as a batch, with time moving on.
        let mut st = State::new();
        let mut rest: &[Attestation] = &shuffled;
        let mut now = T0;
        for (i, c) in cuts.iter().cycle().enumerate() {
            if rest.is_empty() { break; }
            let (head, tail) = rest.split_at((*c).min(rest.len()));
            let envs: Vec<&[u8]> = head.iter().map(|a| a.bytes.as_slice()).collect();
            if i % 2 == 0 { st.insert_batch(&envs, now); } else { for e in envs { st.insert(e, now); } }
            now += 3 * DAY_MS;
            rest = tail;
        }
        st.tick(NOW);
        prop_assert_eq!(&summary(&st), &baseline);
    }

    #[test]
    fn the_ledger_walking_each_chain_once_equals_the_per_receipt_ledger(
        s in script(),
        more in prop::collection::vec((any::<prop::sample::Index>(), 10..24u8, 1..1_000_000u64, 0..20_000u32), 0..40),
    ) {
        // More receipts through the referrals the script's receipts came through (other
        // buyers, times and amounts; new orders), so that many share a chain.
        let mut s = s;
        if !s.receipts.is_empty() {
            for (i, (pick, buyer, amount, t_min)) in more.into_iter().enumerate() {
                let r = s.receipts[pick.index(s.receipts.len())].clone();
                s.receipts.push(ReceiptSpec { order: 8 + i as u8, buyer, amount, t_min, ..r });
            }
        }
        let st = insert_all(&build(&s));
        for seller in SELLERS {
            let pk = key(seller).public();
            let want = st.ledger_per_receipt(&pk);
            let got = st.ledger(&pk);
            prop_assert_eq!(got.root(), want.root());
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn shares_never_exceed_the_pool(rule in 0..5u8, pool in 0..u64::MAX, eligible in prop::collection::vec(any::<bool>(), 0..=16), extra in 0..48u32) {
        let n = eligible.len() as u32;
        let shares = payout::split(rule_of(rule), pool, &eligible, n + extra);
        prop_assert!(shares.total() <= u128::from(pool));
        prop_assert_eq!(shares.as_slice().len(), eligible.len());
    }

    #[test]
    fn one_receipt_pays_at_most_pool_plus_connector(s in script()) {
        // Keep only the first receipt: the sum of every earned amount is that receipt's shares.
        let mut s = s;
        s.receipts.truncate(1);
        s.refunds.clear();
        s.settlements.clear();
        let atts = build(&s);
        let st = insert_all(&atts);
        for (i, seller) in SELLERS.iter().enumerate() {
            let total: u128 = st.ledger(&key(*seller).public()).entries.iter().map(|e| e.earned).sum();
            let cap = s.receipts.first().filter(|r| s.offers[r.offer % s.offers.len()].seller == i).map_or(0, |r| {
                let o = &s.offers[r.offer % s.offers.len()];
                u128::from(payout::bps_of(r.amount, o.pool_bps)) + u128::from(payout::bps_of(r.amount, o.connector_bps))
            });
            prop_assert!(total <= cap, "paid {} > cap {}", total, cap);
        }
    }

    #[test]
    fn a_refund_removes_exactly_that_receipts_shares(s in script(), pick in any::<usize>()) {
        let mut s = s;
        for o in &mut s.offers { o.require_purchase = false; }
        s.refunds.clear();
        prop_assume!(!s.receipts.is_empty());
        let atts = build(&s);
        let st = insert_all(&atts);
        // A counted receipt: valid and not the loser of an equivocation.
        let receipts: Vec<&Attestation> = atts.iter().filter(|a| matches!(a.body, Body::Receipt(_))).collect();
        let r = receipts[pick % receipts.len()];
        let Body::Receipt(rb) = &r.body else { unreachable!() };
        let seller = rb.seller;
        prop_assume!(st.outcome(&r.id) == Some(passalong_protocol::Outcome::Valid));
        // Alone in its order: removing it must not let another receipt count instead.
        prop_assume!(st.equivocations(&seller).iter().all(|q| q.other != r.id && q.counted != r.id));
        let before = st.ledger(&seller);
        let without: Vec<Attestation> = atts.iter().filter(|a| a.id != r.id).cloned().collect();
        let without_r = insert_all(&without).ledger(&seller);
        let seller_keys = SELLERS.iter().find(|&&k| key(k).public() == seller).map(|&k| key(k)).unwrap();
        let mut with_refund = atts.clone();
        with_refund.push(refund(&seller_keys, r, T0 + 33 * DAY_MS));
        let after = insert_all(&with_refund).ledger(&seller);
        let get = |l: &Ledger, c: Currency, p: &PublicKey| l.entry(c, p).map_or((0, 0, 0), |e| (e.earned, e.refunded, e.settled));
        for e in &after.entries {
            let (b_earned, b_refunded, b_settled) = get(&before, e.currency, &e.participant);
            let (w_earned, _, _) = get(&without_r, e.currency, &e.participant);
            prop_assert_eq!(e.earned, b_earned, "earned is unchanged by a refund");
            prop_assert_eq!(e.settled, b_settled);
            prop_assert_eq!(e.refunded - b_refunded, b_earned - w_earned, "refunded grows by that receipt's shares");
        }
        prop_assert_eq!(after.entries.len(), before.entries.len());
    }

    #[test]
    fn recruiting_without_sales_earns_nothing(s in script(), extra in prop::collection::vec((10..20u8, 0..4usize, 0..40usize, 0..20_000u32), 1..10)) {
        let mut no_sales = s.clone();
        no_sales.receipts.clear();
        no_sales.refunds.clear();
        no_sales.settlements.clear();
        let st = insert_all(&build(&no_sales));
        for seller in SELLERS {
            prop_assert!(st.ledger(&key(seller).public()).entries.is_empty());
        }
        // Adding referrals that no receipt goes through changes nobody's ledger.
        let atts = build(&s);
        let base = summary(&insert_all(&atts));
        let mut more = atts.clone();
        let refs: Vec<Attestation> = atts.iter().filter(|a| matches!(a.body, Body::Referral(_))).cloned().collect();
        let offers: Vec<Attestation> = atts.iter().filter(|a| matches!(a.body, Body::Offer(_))).cloned().collect();
        for (who, o, parent, t) in extra {
            let offer = &offers[o % offers.len()];
            let parent = (!refs.is_empty()).then(|| refs[parent % refs.len()].id);
            more.push(refer_full(&key(who), offer.id, parent, None, None, T0 + u64::from(t) * MIN));
        }
        prop_assert_eq!(summary(&insert_all(&more)), base);
    }

    #[test]
    fn split_proof_inserting_own_identities_gains_nothing(len in 1..20usize, depth in 1..=16u8, pos in any::<usize>(), k in 2..6usize, amount in 1..10_000_000u64) {
        let pos = pos % len;
        let (honest, sybil) = sybil_earnings(Rule::SplitProof, len, depth, pos, k, amount);
        prop_assert!(sybil <= honest, "split-proof: {} identities earn {} > {}", k, sybil, honest);
    }
}

/// Earnings of the participant at hop `pos` (0 = nearest the buyer) of a chain of `len` hops
/// of distinct referrers, honestly and when it inserts `k - 1` more identities of its own
/// right above itself (so that its identities hold hops pos..pos+k).
fn sybil_earnings(
    rule: Rule,
    len: usize,
    depth: u8,
    pos: usize,
    k: usize,
    amount: u64,
) -> (u128, u128) {
    let seller = key(1);
    let mut p = policy(rule, 5_000);
    p.max_depth = depth;
    let o = offer(&seller, p, T0);
    let run = |keys: &[Keypair]| -> Ledger {
        // keys[0] is hop 1; the chain is signed from the top down.
        let mut atts = vec![o.clone()];
        let mut parent: Option<Id> = None;
        for (i, kp) in keys.iter().rev().enumerate() {
            let r = refer_full(kp, o.id, parent, None, None, T0 + i as u64);
            parent = Some(r.id);
            atts.push(r);
        }
        let last = atts.last().cloned();
        atts.push(receipt(
            &seller,
            &o,
            "x",
            amount,
            key(250).public(),
            last.as_ref().filter(|_| !keys.is_empty()),
            T0 + 1_000,
        ));
        insert_all(&atts).ledger(&seller.public())
    };
    let honest_keys: Vec<Keypair> = (0..len).map(|i| key(100 + i as u8)).collect();
    let me = honest_keys[pos].public();
    let honest = earned_by(&run(&honest_keys), &[me]);
    let mine: Vec<Keypair> = (0..k)
        .map(|j| {
            if j == 0 {
                key(100 + pos as u8)
            } else {
                key(200 + j as u8)
            }
        })
        .collect();
    let mut sybil_keys = honest_keys[..pos].to_vec();
    sybil_keys.extend(mine.iter().cloned());
    sybil_keys.extend(honest_keys[pos + 1..].iter().cloned());
    let mine_pk: Vec<PublicKey> = mine.iter().map(Keypair::public).collect();
    (honest, earned_by(&run(&sybil_keys), &mine_pk))
}

#[test]
fn geometric_is_not_split_proof_a_counter_example_is_found() {
    let mut found = None;
    'search: for len in 1..6 {
        for pos in 0..len {
            for k in 2..4 {
                let (h, s) =
                    sybil_earnings(Rule::Geometric { r_bps: 5000 }, len, 16, pos, k, 10_000);
                if s > h {
                    found = Some((len, pos, k, h, s));
                    break 'search;
                }
            }
        }
    }
    let (len, pos, k, h, s) = found.expect("geometric admits a profitable sybil split");
    // Hop 1 of a one-hop chain splitting in two: 1/2 + 1/4 of the pool instead of 1/2.
    assert_eq!((len, pos, k), (1, 0, 2));
    assert_eq!((h, s), (2_500, 3_750));
}

#[test]
fn equal_is_not_split_proof_either_but_direct_is() {
    let (h, s) = sybil_earnings(Rule::Equal, 3, 16, 1, 2, 10_000);
    assert!(s > h, "equal: {s} > {h}");
    for pos in 0..4 {
        let (h, s) = sybil_earnings(Rule::Direct, 4, 16, pos, 3, 10_000);
        assert!(s <= h);
    }
}

/// An Offer as envelope version 1 encodes it, declared here apart from the crate: an Offer
/// without a checkout URL must still encode to exactly these bytes.
#[derive(serde::Serialize)]
struct OfferV1<'a> {
    seller: [u8; 32],
    title: &'a str,
    content_hash: Option<[u8; 32]>,
    price_minor: u64,
    currency: [u8; 3],
    policy: &'a Policy,
    valid_from_ms: u64,
    valid_until_ms: Option<u64>,
    created_at_ms: u64,
}

/// URLs that pass the rule, ones near its limits, and any text (the encoding takes any).
fn checkout_url() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        3 => "https?://[a-z0-9-]{1,20}(\\.[a-z]{2,6}){0,2}(:[0-9]{1,4})?(/[A-Za-z0-9._~%!$&'()*+,;=:@/?#-]{0,80})?"
            .prop_map(Some),
        1 => (500usize..=520).prop_map(|n| Some(format!("https://s.example/{}", "p".repeat(n - 18)))),
        1 => prop::collection::vec(any::<char>(), 0..60).prop_map(|c| Some(c.into_iter().collect())),
    ]
}

fn any_offer() -> impl Strategy<Value = (Offer, u8)> {
    (
        1u8..8,
        "[a-zA-Z0-9 ]{1,40}",
        any::<Option<[u8; 32]>>(),
        1..=1_000_000_000u64,
        (
            0..5u8,
            0..=5_000u16,
            0..=5_000u16,
            1..=16u8,
            1..(90 * DAY_MS),
            any::<bool>(),
        ),
        0..T0,
        prop::option::of(T0..(T0 + 365 * DAY_MS)),
        T0..(T0 + DAY_MS),
        checkout_url(),
    )
        .prop_map(
            |(signer, title, content_hash, price_minor, p, from, until, created, url)| {
                let (rule, pool_bps, connector_bps, max_depth, window_ms, require_purchase) = p;
                let offer = Offer {
                    seller: key(signer).public(),
                    title,
                    content_hash,
                    price_minor,
                    currency: Currency(*b"EUR"),
                    policy: Policy {
                        pool_bps,
                        connector_bps,
                        rule: rule_of(rule),
                        max_depth,
                        window_ms,
                        require_purchase,
                    },
                    valid_from_ms: from,
                    valid_until_ms: until,
                    created_at_ms: created,
                    checkout_url: url,
                };
                (offer, signer)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn offers_round_trip_with_and_without_checkout_url((o, signer) in any_offer()) {
        let k = key(signer);
        let a = Attestation::sign(Body::Offer(o.clone()), &k);
        // The layout, built by hand: v1 body, then (v2 only) the URL as Option<String>.
        let mut body = postcard::to_allocvec(&OfferV1 {
            seller: o.seller.0,
            title: &o.title,
            content_hash: o.content_hash,
            price_minor: o.price_minor,
            currency: o.currency.0,
            policy: &o.policy,
            valid_from_ms: o.valid_from_ms,
            valid_until_ms: o.valid_until_ms,
            created_at_ms: o.created_at_ms,
        }).expect("postcard");
        let (version, tag): (u8, &[u8]) = match &o.checkout_url {
            None => (1, b"passalong/v1/offer\0"),
            Some(u) => {
                body.extend(postcard::to_allocvec(&Some(u.as_str())).expect("postcard"));
                (2, b"passalong/v2/offer\0")
            }
        };
        let mut message = tag.to_vec();
        message.extend_from_slice(&body);
        let mut envelope = vec![version, 1];
        envelope.extend_from_slice(&body);
        envelope.extend_from_slice(&k.sign(&message));
        prop_assert_eq!(&a.bytes, &envelope);
        prop_assert_eq!(a.version(), version);
        prop_assert_eq!(encoding::version_of(&a.body), version);
        prop_assert_eq!(a.signed_message(), message);
        prop_assert_eq!(a.id, Id(*blake3::hash(&envelope).as_bytes()));

        // Decoding gives the offer back, and signing it again the same envelope and id.
        let d = Attestation::decode(&a.bytes).expect("decodes");
        prop_assert_eq!(&d, &a);
        prop_assert_eq!(&d.body, &Body::Offer(o.clone()));
        prop_assert_eq!(Attestation::sign(d.body.clone(), &k).id, a.id);
        prop_assert_eq!(encoding::body_of_checked(&a.bytes), Some(d.body.clone()));
        // Valid exactly when the limits (the URL rule among them) hold.
        prop_assert_eq!(validation::check(&a.bytes).map(|_| ()), validation::check_limits(&a.body));

        // The same offer without its URL is the version-1 envelope, whatever the URL was.
        let mut plain = o.clone();
        plain.checkout_url = None;
        let p = Attestation::sign(Body::Offer(plain), &k);
        prop_assert_eq!(p.bytes[0], 1);
        prop_assert_eq!(&a.bytes[2..2 + p.bytes.len() - 66], &p.bytes[2..p.bytes.len() - 64]);
        prop_assert_eq!(o.checkout_url.is_none(), p.id == a.id);

        // The other version's byte on the same bytes never decodes.
        let mut other = a.bytes.clone();
        other[0] = 3 - version;
        prop_assert!(Attestation::decode(&other).is_err());
    }
}
