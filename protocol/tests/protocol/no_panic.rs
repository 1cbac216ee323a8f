//! Robustness properties: whatever bytes a peer sends, decoding, stage-1 validation and the
//! in-memory [`State`] never panic, and they behave sanely.
//!
//! - Arbitrary bytes (raw, and framed with version 1 or 2 and a kind byte 1..=9 so they reach
//!   the body decoder) go through `Attestation::decode`, `validation::check`,
//!   `validation::check_batch` and `State::insert`. Whatever `check` accepts re-encodes to
//!   exactly its bytes and its id is blake3 of them.
//! - Valid signed envelopes of all nine kinds (an Offer with a checkout URL, version 2, among
//!   them), mutated (bit flips, truncation, extension, splices, another kind or version byte, overwritten ranges, another envelope's signature or body),
//!   are rejected unless the result is one of the envelopes we signed (the original when the
//!   mutation changed nothing), and `check` and `check_batch` always give the same answer.
//! - Arbitrary well-formed bodies (random keys, amounts, times and texts around every limit,
//!   Offers with and without checkout URLs, valid, near 512 bytes and broken),
//!   signed by their author, pass `check` exactly when `check_limits` passes; with a random
//!   signature they never pass.
//! - A `State` fed random sequences of valid, mutated and freshly signed envelopes at random
//!   times, with ticks, never panics and neither does any ledger; `insert_batch` reports what
//!   one-by-one `insert` reports; nothing else makes a valid envelope invalid; once nothing is
//!   held an original is valid exactly when its dependencies arrived; and the outcomes and
//!   ledgers equal those of a state that received the same envelopes in another order.
//!
//! The case counts keep this file at a few seconds in the test profile; set `PROPTEST_CASES`
//! to run every property that many times instead. The last test is a regression test for a
//! bug the `state` fuzz target found (see `protocol/fuzz/README.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use crate::common::*;
use passalong_protocol::attestation::{
    Body, Community, Currency, Kind, Membership, MembershipEnd, Offer, PurchaseClaim, Receipt,
    Referral, Refund, Settlement, Sig64,
};
use passalong_protocol::limits::{MAX_AMOUNT_MINOR, MAX_ENVELOPE_BYTES, MAX_TIME_MS};
use passalong_protocol::state::Report;
use passalong_protocol::validation::{self, InvalidReason};
use passalong_protocol::{Attestation, Id, Outcome, Policy, PublicKey, Rule, State};
use proptest::prelude::*;
use proptest::sample::Index;

const HOUR_MS: u64 = 3_600_000;

/// `cases` cases, or `PROPTEST_CASES` if set (for a longer run).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Failures print the minimal input; no regression file is written next to the test.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A coherent set of valid envelopes covering all nine kinds, two sellers, a referral chain
/// with an addressed hop, a community with a member (connector share), an offer with a
/// checkout URL (envelope version 2), `require_purchase`,
/// an equivocating receipt, a disputing claim, a refund, a settlement and a membership end
/// dated a day after the others (so it is often held).
fn build_valid_set() -> Vec<Attestation> {
    let (s, b, c, d, buyer, conn, s2) = (key(1), key(2), key(3), key(4), key(5), key(6), key(8));
    let com = community(&conn, T0);
    let mem = membership(&conn, &com, &b, T0 + 1);
    let o1 = offer(&s, policy(Rule::Geometric { r_bps: 5_000 }, 1_000), T0);
    let o2 = Attestation::sign(
        Body::Offer(Offer {
            seller: s.public(),
            title: "A second record".into(),
            content_hash: Some([7; 32]),
            price_minor: 5_000,
            currency: eur(),
            policy: Policy {
                pool_bps: 1_000,
                connector_bps: 500,
                rule: Rule::SplitProof,
                max_depth: 3,
                window_ms: 30 * DAY_MS,
                require_purchase: true,
            },
            valid_from_ms: T0,
            valid_until_ms: Some(T0 + 365 * DAY_MS),
            created_at_ms: T0 + HOUR_MS,
            checkout_url: Some("https://shop.example/records/2?ref=passalong".into()),
        }),
        &s,
    );
    let r1 = refer_full(&b, o1.id, None, None, Some(com.id), T0 + 2 * HOUR_MS);
    let r2 = refer(&c, &o1, Some(&r1), T0 + 3 * HOUR_MS);
    let r3 = refer_full(
        &d,
        o1.id,
        Some(r2.id),
        Some(buyer.public()),
        None,
        T0 + 4 * HOUR_MS,
    );
    let rb = receipt(
        &s,
        &o1,
        "order-1",
        10_000,
        buyer.public(),
        Some(&r3),
        T0 + 5 * HOUR_MS,
    );
    let rb2 = receipt(
        &s,
        &o1,
        "order-1",
        9_000,
        buyer.public(),
        None,
        T0 + 5 * HOUR_MS + 1,
    );
    let cl = claim(&buyer, &o1, "order-1", Some(r2.id), T0 + 6 * HOUR_MS);
    let rf = refund(&s, &rb, T0 + 7 * HOUR_MS);
    let st = settle(&s, c.public(), 500, T0 + 8 * HOUR_MS);
    let q1 = refer_full(&b, o2.id, None, None, Some(com.id), T0 + 2 * HOUR_MS);
    let pc = receipt(
        &s,
        &o2,
        "order-2",
        5_000,
        c.public(),
        Some(&q1),
        T0 + 3 * HOUR_MS,
    );
    let q2 = refer(&c, &o2, Some(&q1), T0 + 4 * HOUR_MS);
    let pe = receipt(
        &s,
        &o2,
        "order-3",
        7_000,
        buyer.public(),
        Some(&q2),
        T0 + 5 * HOUR_MS,
    );
    let me = membership_end(&b, &mem, T0 + DAY_MS);
    let o3 = offer(&s2, policy(Rule::Direct, 2_000), T0);
    let r4 = refer(&d, &o3, None, T0 + HOUR_MS);
    let p3 = receipt(
        &s2,
        &o3,
        "x",
        100,
        buyer.public(),
        Some(&r4),
        T0 + 2 * HOUR_MS,
    );
    vec![
        com, mem, o1, o2, r1, r2, r3, rb, rb2, cl, rf, st, q1, pc, q2, pe, me, o3, r4, p3,
    ]
}

static VALID: LazyLock<Vec<Attestation>> = LazyLock::new(build_valid_set);

/// Later than every attestation of the set: nothing is held at this time.
const LATE: u64 = T0 + 10 * 365 * DAY_MS;

fn pick(i: &Index) -> &'static Attestation {
    i.get(&VALID)
}

/// One way of damaging an envelope.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        at: Index,
        bit: u8,
    },
    SetByte {
        at: Index,
        value: u8,
    },
    Truncate {
        keep: Index,
    },
    Extend {
        bytes: Vec<u8>,
    },
    Splice {
        at: Index,
        remove: usize,
        insert: Vec<u8>,
    },
    SetKind(u8),
    SetVersion(u8),
    Overwrite {
        at: Index,
        bytes: Vec<u8>,
    },
    /// Replace the last 64 bytes with another valid envelope's signature.
    OtherSignature(Index),
    /// Replace everything after the kind byte with another valid envelope's body and signature.
    OtherBody(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        1 => any::<Index>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(|bytes| Mutation::Extend { bytes }),
        2 => (any::<Index>(), 0usize..40, prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(at, remove, insert)| Mutation::Splice { at, remove, insert }),
        1 => prop_oneof![0u8..=10, any::<u8>()].prop_map(Mutation::SetKind),
        1 => prop_oneof![0u8..=3, any::<u8>()].prop_map(Mutation::SetVersion),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
        1 => any::<Index>().prop_map(Mutation::OtherSignature),
        1 => any::<Index>().prop_map(Mutation::OtherBody),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::FlipBit { at, bit } => {
            if len > 0 {
                bytes[at.index(len)] ^= 1 << bit;
            }
        }
        Mutation::SetByte { at, value } => {
            if len > 0 {
                bytes[at.index(len)] = *value;
            }
        }
        Mutation::Truncate { keep } => bytes.truncate(keep.index(len + 1)),
        Mutation::Extend { bytes: more } => bytes.extend_from_slice(more),
        Mutation::Splice { at, remove, insert } => {
            let start = at.index(len + 1);
            let end = (start + remove).min(len);
            bytes.splice(start..end, insert.iter().copied());
        }
        Mutation::SetKind(k) => {
            if len > 1 {
                bytes[1] = *k;
            }
        }
        Mutation::SetVersion(v) => {
            if len > 0 {
                bytes[0] = *v;
            }
        }
        Mutation::Overwrite { at, bytes: with } => {
            if len > 0 {
                let start = at.index(len);
                let n = with.len().min(len - start);
                bytes[start..start + n].copy_from_slice(&with[..n]);
            }
        }
        Mutation::OtherSignature(i) => {
            let other = &pick(i).bytes;
            if len >= 64 {
                bytes[len - 64..].copy_from_slice(&other[other.len() - 64..]);
            }
        }
        Mutation::OtherBody(i) => {
            let other = &pick(i).bytes;
            bytes.truncate(2.min(len));
            bytes.extend_from_slice(&other[2..]);
        }
    }
}

fn mutated(base: &Attestation, ms: &[Mutation]) -> Vec<u8> {
    let mut b = base.bytes.clone();
    for m in ms {
        mutate(&mut b, m);
    }
    b
}

/// Stage 1 agrees with itself: `check` and `check_batch` give the same answer for every item
/// (the same attestation, or the same reason), and what is accepted is canonical.
fn check_all_agree(inputs: &[&[u8]]) -> Vec<Result<Attestation, InvalidReason>> {
    let single: Vec<_> = inputs.iter().map(|b| validation::check(b)).collect();
    let batch = validation::check_batch(inputs);
    assert_eq!(batch.len(), inputs.len());
    for (i, (s, b)) in single.iter().zip(&batch).enumerate() {
        match (s, b) {
            (Ok(x), Ok(y)) => assert_eq!(x, y, "item {i}"),
            (Err(x), Err(y)) => {
                assert_eq!(x.code(), y.code(), "item {i}");
                assert_eq!(x, y, "item {i}");
            }
            _ => panic!("item {i}: check gave {s:?}, check_batch gave {b:?}"),
        }
    }
    for (bytes, r) in inputs.iter().zip(&single) {
        match r {
            Ok(a) => assert_accepted_is_canonical(bytes, a),
            Err(e) => {
                // Display and the code must not panic either.
                let _ = (e.to_string(), e.code());
            }
        }
    }
    single
}

fn assert_accepted_is_canonical(bytes: &[u8], a: &Attestation) {
    assert_eq!(a.bytes, bytes);
    assert_eq!(a.id, Id(*blake3::hash(bytes).as_bytes()));
    let again = Attestation::assemble(a.body.clone(), a.signature);
    assert_eq!(again.bytes, bytes, "accepted bytes are not canonical");
    assert_eq!(again.id, a.id);
    assert_eq!(Attestation::decode(bytes).as_ref(), Ok(a));
}

/// Everything a node would do with untrusted bytes, none of which may panic.
fn exercise(bytes: &[u8]) {
    match Attestation::decode(bytes) {
        Ok(a) => {
            let again = Attestation::assemble(a.body.clone(), a.signature);
            assert_eq!(again.bytes, bytes, "decoded bytes are not canonical");
            assert_eq!(a.id, Id(*blake3::hash(bytes).as_bytes()));
            let _ = (a.signed_message(), a.kind(), a.body.dependencies());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let valid = &VALID[0].bytes;
    let checked = check_all_agree(&[bytes, valid, bytes]);
    let mut st = State::new();
    let reports = st.insert(bytes, LATE);
    assert_eq!(reports[0].id, Id(*blake3::hash(bytes).as_bytes()));
    match &checked[0] {
        Ok(_) => assert!(!matches!(reports[0].outcome, Outcome::Invalid(_))),
        Err(e) => assert_eq!(reports[0].outcome, Outcome::Invalid(e.clone())),
    }
    for seller in st.sellers() {
        let _ = st.ledger(&seller).root();
    }
}

/// Numbers around every boundary the rules have, and anything at all.
fn num() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => any::<u64>(),
        1 => 0u64..3,
        1 => (MAX_AMOUNT_MINOR - 1)..=(MAX_AMOUNT_MINOR + 1),
        1 => (MAX_TIME_MS - 1)..=(MAX_TIME_MS + 1),
        1 => u64::MAX - 2..=u64::MAX,
        3 => T0..(T0 + 2 * DAY_MS),
    ]
}

/// A `created_at_ms`: mostly near the valid set's (some held at the test's times), or anything.
fn created() -> impl Strategy<Value = u64> {
    prop_oneof![5 => (T0 - HOUR_MS)..(T0 + 2 * DAY_MS), 1 => num()]
}

/// Mostly ids of the valid set (so references resolve), sometimes anything.
fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        3 => any::<Index>().prop_map(|i| pick(&i).id),
        1 => any::<[u8; 32]>().prop_map(Id),
    ]
}

/// Mostly ids of the valid set's attestations of `kind` (what the field must name).
fn id_of(kind: Kind) -> impl Strategy<Value = Id> {
    let ids: Vec<Id> = VALID
        .iter()
        .filter(|a| a.kind() == kind)
        .map(|a| a.id)
        .collect();
    prop_oneof![3 => prop::sample::select(ids), 1 => id()]
}

/// The fixed-seed keys, odd keys (identity, small order, y >= p, random bytes), or anything.
fn public_key() -> impl Strategy<Value = PublicKey> {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut not_canonical = [0xffu8; 32];
    not_canonical[0] = 0xee;
    not_canonical[31] = 0x7f;
    prop_oneof![
        4 => (1u8..10).prop_map(|n| key(n).public()),
        1 => prop_oneof![
            Just(PublicKey([0; 32])),
            Just(PublicKey(identity)),
            Just(PublicKey(not_canonical)),
        ],
        1 => any::<[u8; 32]>().prop_map(PublicKey),
    ]
}

/// Texts that fit, texts just over a limit, empty ones and random Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 -]{1,12}",
        1 => Just(String::new()),
        1 => prop_oneof![Just(64usize), Just(65), Just(128), Just(129), Just(256), Just(257)]
            .prop_map(|n| "x".repeat(n)),
        1 => prop::collection::vec(any::<char>(), 0..40).prop_map(|c| c.into_iter().collect()),
    ]
}

/// None, URLs that pass the rule, ones around 512 bytes, broken ones and any text.
fn checkout_url() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(None),
        2 => "https?://[a-z0-9.-]{1,20}(:[0-9]{1,6})?(/[a-z0-9/?#=&%-]{0,30})?".prop_map(Some),
        1 => (509usize..=514).prop_map(|n| Some(format!("https://s.example/{}", "p".repeat(n - 18)))),
        1 => prop_oneof![
            Just(String::new()),
            Just("ftp://s.example".to_string()),
            Just("https://".to_string()),
            Just("https://a b".to_string()),
            Just("https://u@s.example".to_string()),
            Just("https://s.example/\u{0}".to_string()),
        ]
        .prop_map(Some),
        1 => text().prop_map(Some),
    ]
}

fn currency() -> impl Strategy<Value = Currency> {
    prop_oneof![
        3 => Just(eur()),
        1 => Just(Currency(*b"USD")),
        1 => any::<[u8; 3]>().prop_map(Currency),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        Just(Rule::Direct),
        Just(Rule::Equal),
        Just(Rule::SplitProof),
        prop_oneof![0u16..10_000, 9_999u16..=10_001, any::<u16>()]
            .prop_map(|r_bps| Rule::Geometric { r_bps }),
    ]
}

fn bps() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..=10_000, Just(0u16), Just(10_000), any::<u16>()]
}

fn policy_any() -> impl Strategy<Value = Policy> {
    (
        bps(),
        prop_oneof![3 => Just(0u16), 1 => bps()],
        rule(),
        prop_oneof![0u8..=17, any::<u8>()],
        prop_oneof![1 => Just(0u64), 3 => 1..(60 * DAY_MS), 1 => any::<u64>()],
        any::<bool>(),
    )
        .prop_map(
            |(pool_bps, connector_bps, rule, max_depth, window_ms, require_purchase)| Policy {
                pool_bps,
                connector_bps,
                rule,
                max_depth,
                window_ms,
                require_purchase,
            },
        )
}

/// A well-formed body of any kind with arbitrary field values.
fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (
            public_key(),
            text(),
            any::<Option<[u8; 32]>>(),
            num(),
            currency(),
            policy_any(),
            num(),
            prop::option::of(num()),
            (created(), checkout_url()),
        )
            .prop_map(
                |(seller, title, content_hash, price_minor, currency, policy, f, u, (t, url))| {
                    Body::Offer(Offer {
                        seller,
                        title,
                        content_hash,
                        price_minor,
                        currency,
                        policy,
                        valid_from_ms: f,
                        valid_until_ms: u,
                        created_at_ms: t,
                        checkout_url: url,
                    })
                }
            ),
        (
            public_key(),
            id_of(Kind::Offer),
            prop::option::of(id_of(Kind::Referral)),
            prop::option::of(public_key()),
            prop::option::of(id_of(Kind::Community)),
            created(),
        )
            .prop_map(|(referrer, offer, parent, recipient, community, t)| {
                Body::Referral(Referral {
                    referrer,
                    offer,
                    parent,
                    recipient,
                    community,
                    created_at_ms: t,
                })
            }),
        (
            public_key(),
            id_of(Kind::Offer),
            text(),
            num(),
            public_key(),
            prop::option::of(id_of(Kind::Referral)),
            created(),
        )
            .prop_map(|(seller, offer, order, amount_minor, buyer, via, t)| {
                Body::Receipt(Receipt {
                    seller,
                    offer,
                    order,
                    amount_minor,
                    buyer,
                    via,
                    created_at_ms: t,
                })
            }),
        (
            public_key(),
            id_of(Kind::Offer),
            text(),
            prop::option::of(id_of(Kind::Referral)),
            created()
        )
            .prop_map(|(buyer, offer, order, via, t)| {
                Body::PurchaseClaim(PurchaseClaim {
                    buyer,
                    offer,
                    order,
                    via,
                    created_at_ms: t,
                })
            }),
        (public_key(), id_of(Kind::Receipt), created()).prop_map(|(seller, receipt, t)| {
            Body::Refund(Refund {
                seller,
                receipt,
                created_at_ms: t,
            })
        }),
        (
            public_key(),
            public_key(),
            num(),
            currency(),
            num(),
            num(),
            text(),
            any::<[u8; 32]>(),
            created(),
        )
            .prop_map(
                |(seller, participant, amount_minor, currency, a, b, reference, root, t)| {
                    Body::Settlement(Settlement {
                        seller,
                        participant,
                        amount_minor,
                        currency,
                        period_start_ms: a,
                        period_end_ms: b,
                        reference,
                        ledger_root: root,
                        created_at_ms: t,
                    })
                }
            ),
        (public_key(), text(), created()).prop_map(|(connector, name, t)| {
            Body::Community(Community {
                connector,
                name,
                created_at_ms: t,
            })
        }),
        (
            public_key(),
            id_of(Kind::Community),
            1u8..10,
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 64),
            created(),
        )
            .prop_map(|(connector, community, member, signs, junk, t)| {
                let mut m = Membership::admit(connector, community, &key(member), t);
                if !signs {
                    m.member_signature = Sig64(junk.try_into().expect("64 bytes"));
                }
                Body::Membership(m)
            }),
        (public_key(), id_of(Kind::Membership), num(), created()).prop_map(
            |(author, membership, ends, t)| {
                Body::MembershipEnd(MembershipEnd {
                    author,
                    membership,
                    ends_at_ms: ends,
                    created_at_ms: t,
                })
            }
        ),
    ]
}

/// `body` with its author replaced by `author`.
fn with_author(mut body: Body, author: PublicKey) -> Body {
    match &mut body {
        Body::Offer(b) => b.seller = author,
        Body::Referral(b) => b.referrer = author,
        Body::Receipt(b) => b.seller = author,
        Body::PurchaseClaim(b) => b.buyer = author,
        Body::Refund(b) => b.seller = author,
        Body::Settlement(b) => b.seller = author,
        Body::Community(b) => b.connector = author,
        Body::Membership(b) => b.connector = author,
        Body::MembershipEnd(b) => b.author = author,
    }
    body
}

/// `body` signed by the fixed-seed key `signer`, which becomes its author.
fn signed_by(body: &Body, signer: u8) -> Attestation {
    let k = key(signer);
    Attestation::sign(with_author(body.clone(), k.public()), &k)
}

fn framed() -> impl Strategy<Value = Vec<u8>> {
    (
        1u8..=2,
        1u8..=9,
        prop::collection::vec(any::<u8>(), 0..1200),
    )
        .prop_map(|(version, kind, rest)| {
            let mut b = vec![version, kind];
            b.extend(rest);
            b
        })
}

/// Framed, and as long as real envelopes (67..~400 bytes), so the body decoder often
/// reaches the end and the signature check runs on random keys and signatures.
fn framed_short() -> impl Strategy<Value = Vec<u8>> {
    (
        1u8..=2,
        1u8..=9,
        prop::collection::vec(any::<u8>(), 65..400),
    )
        .prop_map(|(version, kind, rest)| {
            let mut b = vec![version, kind];
            b.extend(rest);
            b
        })
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
        exercise(&bytes);
    }

    #[test]
    fn framed_bytes_never_panic(bytes in prop_oneof![framed(), framed_short()]) {
        exercise(&bytes);
    }

    /// A valid envelope's body with random bytes in a field-sized window: the body often
    /// still decodes, so the limits and signature paths run on odd values.
    #[test]
    fn decodable_garbage_never_panics(i in any::<Index>(), at in any::<Index>(), junk in prop::collection::vec(any::<u8>(), 1..40)) {
        let base = pick(&i);
        let mut b = base.bytes.clone();
        let body_len = b.len() - 66;
        let start = 2 + at.index(body_len);
        let n = junk.len().min(body_len + 2 - start);
        b[start..start + n].copy_from_slice(&junk[..n]);
        exercise(&b);
        if b != base.bytes {
            prop_assert!(validation::check(&b).is_err());
        }
    }
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn mutated_envelopes_are_rejected(
        i in any::<Index>(),
        ms in prop::collection::vec(mutation(), 1..5),
        j in any::<Index>(),
        k in any::<Index>(),
    ) {
        let base = pick(&i);
        let b = mutated(base, &ms);
        let other = pick(&j);
        let third = mutated(pick(&k), &ms[..1]);
        // The mutated envelope alone, and in a batch with valid and other mutated ones.
        check_all_agree(&[&b]);
        let results = check_all_agree(&[&other.bytes, &b, &third, &base.bytes]);
        prop_assert!(results[0].is_ok());
        prop_assert!(results[3].is_ok());
        // Whatever is accepted is one of the envelopes we signed (no forgery): the original
        // if the mutation changed nothing, or another one `OtherBody` copied whole.
        match &results[1] {
            Ok(a) => {
                prop_assert!(
                    VALID.iter().any(|v| v == a),
                    "a mutated envelope was accepted: {:?} -> {}",
                    ms,
                    hex::encode(&b)
                );
                if b != base.bytes {
                    prop_assert_ne!(a.id, base.id);
                }
            }
            Err(reason) => {
                prop_assert!(
                    VALID.iter().all(|v| v.bytes != b),
                    "a valid envelope was rejected: {:?}",
                    reason
                );
                prop_assert_ne!(Id(*blake3::hash(&b).as_bytes()), base.id);
            }
        }
        exercise(&b);
    }
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn arbitrary_bodies_pass_exactly_when_within_limits(
        body in body(),
        signer in 1u8..10,
        sig in prop::collection::vec(any::<u8>(), 64),
    ) {
        // Signed by its author: valid exactly when every limit holds (and it fits).
        let a = signed_by(&body, signer);
        let got = validation::check(&a.bytes);
        if a.bytes.len() > MAX_ENVELOPE_BYTES {
            prop_assert_eq!(got.map_err(|e| e.code()).err(), Some("decode.too_large"));
        } else {
            prop_assert_eq!(got, validation::check_limits(&a.body).map(|()| a.clone()));
        }
        exercise(&a.bytes);
        // With a random signature (and perhaps a key no one holds): never valid.
        let forged = Attestation::assemble(body, sig.try_into().expect("64 bytes"));
        prop_assert!(validation::check(&forged.bytes).is_err());
        exercise(&forged.bytes);
    }
}

/// One thing fed to a state.
#[derive(Clone, Debug)]
enum Input {
    /// The valid set's envelope at this position.
    Original(usize),
    Valid(Index),
    Mutated(Index, Vec<Mutation>),
    Random(Vec<u8>),
    /// An arbitrary body signed by its author: often valid, often referencing the valid set.
    Signed(Body, u8),
}

impl Input {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Input::Original(i) => VALID[*i].bytes.clone(),
            Input::Valid(i) => pick(i).bytes.clone(),
            Input::Mutated(i, ms) => mutated(pick(i), ms),
            Input::Random(b) => b.clone(),
            Input::Signed(body, signer) => signed_by(body, *signer).bytes,
        }
    }
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => any::<Index>().prop_map(Input::Valid),
        3 => (any::<Index>(), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(i, ms)| Input::Mutated(i, ms)),
        1 => prop_oneof![framed_short(), prop::collection::vec(any::<u8>(), 0..200)]
            .prop_map(Input::Random),
        3 => (body(), prop_oneof![Just(1u8), 1u8..10]).prop_map(|(b, k)| Input::Signed(b, k)),
    ]
}

/// A time around the set's attestations (so some are held), or anywhere at all.
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (T0 - HOUR_MS)..(T0 + 2 * DAY_MS),
        1 => any::<u64>(),
        1 => Just(0u64),
        1 => Just(u64::MAX),
    ]
}

/// A group of inputs inserted at one time, then perhaps a tick.
#[derive(Clone, Debug)]
struct Step {
    inputs: Vec<Input>,
    now_ms: u64,
    tick_ms: Option<u64>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::collection::vec(input(), 1..6),
        time(),
        prop::option::of(time()),
    )
        .prop_map(|(inputs, now_ms, tick_ms)| Step {
            inputs,
            now_ms,
            tick_ms,
        })
}

/// Ids of the valid set whose dependencies, transitively, are all in `present`.
fn complete(present: &BTreeSet<Id>) -> BTreeSet<Id> {
    let mut done: BTreeSet<Id> = BTreeSet::new();
    loop {
        let before = done.len();
        for a in VALID.iter() {
            if present.contains(&a.id) && a.body.dependencies().iter().all(|d| done.contains(d)) {
                done.insert(a.id);
            }
        }
        if done.len() == before {
            return done;
        }
    }
}

fn all_views(st: &State) {
    for seller in st.sellers() {
        let l = st.ledger(&seller);
        let root = l.root();
        for e in &l.entries {
            let (line, proof) = l
                .prove(e.currency, &e.participant)
                .expect("every line has a proof");
            assert!(passalong_protocol::ledger::verify_entry(
                &root, &line, &proof
            ));
        }
        let _ = (st.equivocations(&seller), st.disputes(&seller));
    }
    let _ = (st.missing(), st.next_release_ms(), st.valid_count());
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn state_survives_valid_mutated_and_signed_inputs(
        preload in prop::option::of((Just((0..VALID.len()).collect::<Vec<usize>>()).prop_shuffle(), time())),
        more in prop::collection::vec(step(), 1..10),
    ) {
        // Half the runs start with the whole valid set in a random order, so that signed
        // arbitrary bodies meet the offers, referrals and receipts they name.
        let mut steps: Vec<Step> = Vec::new();
        if let Some((order, now_ms)) = preload {
            steps.push(Step {
                inputs: order.into_iter().map(Input::Original).collect(),
                now_ms,
                tick_ms: None,
            });
        }
        steps.extend(more);
        // `one` inserts one envelope at a time, `batched` each step as one batch: same reports.
        let mut one = State::new();
        let mut batched = State::new();
        // Originals of the valid set that were inserted, and every distinct envelope inserted
        // (valid or not: an invalid one makes what references it invalid).
        let mut present: BTreeSet<Id> = BTreeSet::new();
        let mut inserted: BTreeMap<Id, Vec<u8>> = BTreeMap::new();
        for s in &steps {
            let envelopes: Vec<Vec<u8>> = s.inputs.iter().map(Input::bytes).collect();
            let mut r1: Vec<Report> = Vec::new();
            for e in &envelopes {
                let r = one.insert(e, s.now_ms);
                prop_assert!(!r.is_empty());
                prop_assert_eq!(r[0].id, Id(*blake3::hash(e).as_bytes()));
                r1.extend(r);
            }
            let refs: Vec<&[u8]> = envelopes.iter().map(Vec::as_slice).collect();
            let r2 = batched.insert_batch(&refs, s.now_ms);
            prop_assert_eq!(&r1, &r2);
            if let Some(t) = s.tick_ms {
                prop_assert_eq!(one.tick(t), batched.tick(t));
            }
            for e in envelopes {
                let id = Id(*blake3::hash(&e).as_bytes());
                // (A mutation may leave the bytes as they were: then it is the original.)
                if VALID.iter().any(|a| a.id == id) {
                    present.insert(id);
                }
                inserted.insert(id, e);
            }
            // Nothing valid is ever marked invalid, whatever else arrived.
            for id in &present {
                prop_assert!(!matches!(one.outcome(id), Some(Outcome::Invalid(_))));
            }
            all_views(&one);
        }
        one.tick(u64::MAX);
        prop_assert_eq!(one.next_release_ms(), None);
        all_views(&one);

        // Once nothing is held, an original is valid exactly when its dependencies arrived.
        let expected = complete(&present);
        for a in VALID.iter().filter(|a| present.contains(&a.id)) {
            let got = one.outcome(&a.id);
            if expected.contains(&a.id) {
                prop_assert_eq!(got, Some(Outcome::Valid));
            } else {
                prop_assert!(matches!(got, Some(Outcome::Pending { .. })), "{:?}", got);
            }
        }

        // The same envelopes in another order, all at once: the same outcomes (up to
        // which invalid dependency is named) and the same ledgers.
        let other = State::from_envelopes(inserted.values().rev().map(Vec::as_slice), u64::MAX);
        prop_assert_eq!(one.valid_count(), other.valid_count());
        for id in inserted.keys() {
            prop_assert_eq!(class(one.outcome(id)), class(other.outcome(id)), "{:?}", id);
        }
        prop_assert_eq!(one.sellers(), other.sellers());
        prop_assert_eq!(one.missing(), other.missing());
        for seller in one.sellers() {
            prop_assert_eq!(one.ledger(&seller), other.ledger(&seller));
            prop_assert_eq!(one.equivocations(&seller), other.equivocations(&seller));
            prop_assert_eq!(one.disputes(&seller), other.disputes(&seller));
        }
    }
}

/// An outcome without the id an invalid dependency names (which one is found first may
/// depend on the order of arrival).
fn class(o: Option<Outcome>) -> String {
    match o {
        None => "absent".into(),
        Some(Outcome::Valid) => "valid".into(),
        Some(Outcome::Pending { missing }) => format!("pending {missing:?}"),
        Some(Outcome::Held { until_ms }) => format!("held {until_ms}"),
        Some(Outcome::Invalid(r)) => r.code().into(),
    }
}

#[test]
fn the_valid_set_is_valid() {
    assert_eq!(VALID.len(), 20);
    let kinds: BTreeSet<u8> = VALID.iter().map(|a| a.kind() as u8).collect();
    assert_eq!(kinds.len(), 9, "all nine kinds");
    for a in VALID.iter() {
        assert_eq!(validation::check(&a.bytes).as_ref(), Ok(a));
    }
    let st = State::from_envelopes(VALID.iter().map(|a| a.bytes.as_slice()), LATE);
    assert_eq!(st.valid_count(), VALID.len());
    let s = key(1).public();
    assert!(!st.ledger(&s).entries.is_empty());
    assert_eq!(st.equivocations(&s).len(), 1);
    assert_eq!(st.disputes(&s).len(), 1);
    assert_eq!(st.sellers().len(), 2);
}

/// Found by the `state` fuzz target: an attestation waits for two ids, one of them turns out
/// invalid, so it becomes invalid too, but `missing()` goes on naming the other id, which
/// nothing waited for any more. Inserted the other way round, `missing()` is empty; now it is
/// empty both ways.
#[test]
fn missing_forgets_what_only_invalid_attestations_waited_for() {
    let garbage: &[u8] = b"not an envelope";
    let g = Id(*blake3::hash(garbage).as_bytes());
    let never_sent = Id([9; 32]);
    let r = refer_full(&key(2), g, Some(never_sent), None, None, T0);
    let mut st = State::new();
    st.insert(&r.bytes, T0);
    assert_eq!(st.missing(), {
        let mut m = vec![g, never_sent];
        m.sort();
        m
    });
    st.insert(garbage, T0);
    assert!(matches!(
        st.outcome(&r.id),
        Some(Outcome::Invalid(InvalidReason::DependsOnInvalid(_)))
    ));
    assert_eq!(
        st.missing(),
        Vec::<Id>::new(),
        "nothing waits for {never_sent}"
    );
}
