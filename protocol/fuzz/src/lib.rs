//! The logic of the fuzz targets of `passalong-protocol`, as plain functions so that the seed
//! corpus can also be replayed by `cargo test` (see `README.md`).
//!
//! - [`decode`]: bytes → `Attestation::decode`, `validation::check` and `check_batch`; what is
//!   accepted is canonical; a decodable body re-signed by a known key passes exactly when its
//!   limits hold.
//! - [`state`]: bytes → a list of records (see [`split`]) inserted into a `State`, one by one
//!   and in batches, with ticks; every ledger is computed; the result must not depend on the
//!   order the envelopes arrived in.
//!
//! Every check is an `assert!`: a failed one is a crash libFuzzer reports, like a panic in the
//! crate itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use passalong_protocol::attestation::{Body, Membership};
use passalong_protocol::limits::MAX_ENVELOPE_BYTES;
use passalong_protocol::state::Report;
use passalong_protocol::validation::{self, InvalidReason};
use passalong_protocol::{Attestation, Id, Keypair, Outcome, PublicKey, State};

/// 2026-01-01T00:00:00Z: the seeds' epoch and the centre of the state target's clock.
pub const T0: u64 = 1_767_225_600_000;
/// One hour in milliseconds.
pub const HOUR_MS: u64 = 3_600_000;

/// Eight fixed-seed key pairs: `keys()[i]` has the seed `[i + 1; 32]`, like the integration
/// tests' `key(i + 1)`, so the seeds are signed by keys the targets can sign with too.
pub fn keys() -> &'static [Keypair] {
    static KEYS: OnceLock<Vec<Keypair>> = OnceLock::new();
    KEYS.get_or_init(|| (1..=8u8).map(|n| Keypair::from_seed([n; 32])).collect())
}

fn id_of(bytes: &[u8]) -> Id {
    Id(*blake3::hash(bytes).as_bytes())
}

/// Asserts what must hold of anything `check` or `decode` accepted: it is exactly the bytes,
/// its id is their blake3, and assembling its body and signature gives the same bytes.
pub fn assert_canonical(bytes: &[u8], a: &Attestation) {
    assert_eq!(a.bytes, bytes, "accepted attestation carries other bytes");
    assert_eq!(a.id, id_of(bytes), "id is not blake3 of the envelope");
    let again = Attestation::assemble(a.body.clone(), a.signature);
    assert_eq!(again.bytes, bytes, "accepted envelope is not canonical");
}

/// `body` re-authored by `keys()[k % 8]`: the author field is set to that key and, for a
/// Membership, the member (the next key) signs the request again. Sign the result with
/// [`keys`]`()[k % 8]` to get an envelope whose signatures verify.
pub fn reauthor(mut body: Body, k: usize) -> (Body, &'static Keypair) {
    let ks = keys();
    let signer = &ks[k % ks.len()];
    let author = signer.public();
    match &mut body {
        Body::Offer(b) => b.seller = author,
        Body::Referral(b) => b.referrer = author,
        Body::Receipt(b) => b.seller = author,
        Body::PurchaseClaim(b) => b.buyer = author,
        Body::Refund(b) => b.seller = author,
        Body::Settlement(b) => b.seller = author,
        Body::Community(b) => b.connector = author,
        Body::Membership(b) => {
            let member = &ks[(k + 1) % ks.len()];
            *b = Membership::admit(author, b.community, member, b.created_at_ms);
        }
        Body::MembershipEnd(b) => b.author = author,
    }
    (body, signer)
}

/// Points every reference of `body` (offer, parent, via, receipt, community, membership) at
/// one of `ids`, chosen by the reference's own first byte, so the fuzzer can build graphs
/// of attestations whose ids it cannot compute.
pub fn relink(body: &mut Body, ids: &[Id]) {
    if ids.is_empty() {
        return;
    }
    let pick = |id: &mut Id| *id = ids[usize::from(id.0[0]) % ids.len()];
    let pick_opt = |id: &mut Option<Id>| {
        if let Some(id) = id {
            *id = ids[usize::from(id.0[0]) % ids.len()];
        }
    };
    match body {
        Body::Referral(r) => {
            pick(&mut r.offer);
            pick_opt(&mut r.parent);
            pick_opt(&mut r.community);
        }
        Body::Receipt(r) => {
            pick(&mut r.offer);
            pick_opt(&mut r.via);
        }
        Body::PurchaseClaim(c) => {
            pick(&mut c.offer);
            pick_opt(&mut c.via);
        }
        Body::Refund(r) => pick(&mut r.receipt),
        Body::Membership(m) => pick(&mut m.community),
        Body::MembershipEnd(e) => pick(&mut e.membership),
        Body::Offer(_) | Body::Settlement(_) | Body::Community(_) => {}
    }
}

/// The `decode` target: see the crate docs.
pub fn decode(data: &[u8]) {
    let decoded = Attestation::decode(data);
    if let Ok(a) = &decoded {
        assert_canonical(data, a);
        let _ = (a.signed_message(), a.body.dependencies(), a.body.author());
    }
    let checked = validation::check(data);
    match (&decoded, &checked) {
        (Ok(a), Ok(c)) => assert_eq!(a, c),
        (Ok(_), Err(r)) => assert!(
            !matches!(r, InvalidReason::Decode(_)),
            "decode accepted what check calls undecodable: {r}"
        ),
        (Err(e), Err(r)) => assert_eq!(&InvalidReason::Decode(e.clone()), r),
        (Err(e), Ok(_)) => panic!("check accepted what decode rejects: {e}"),
    }
    if let Err(r) = &checked {
        let _ = (r.to_string(), r.code());
    }
    // The batch path gives what the single path gives, also next to a valid envelope.
    let valid = &seeds()[0].bytes;
    let batch = validation::check_batch(&[data, valid, data]);
    assert_eq!(batch[0], checked, "check_batch disagrees with check");
    assert_eq!(batch[2], checked, "check_batch disagrees with check");
    assert!(batch[1].is_ok(), "check_batch rejects a valid envelope");

    // A decodable body signed by its (new) author: valid exactly when its limits hold.
    if let Ok(a) = decoded {
        let k = usize::from(data[data.len() - 1]);
        let (body, signer) = reauthor(a.body, k);
        let signed = Attestation::sign(body, signer);
        assert!(
            signed.bytes.len() <= MAX_ENVELOPE_BYTES,
            "re-signing changed the size"
        );
        assert_eq!(Attestation::decode(&signed.bytes).as_ref(), Ok(&signed));
        let expected = validation::check_limits(&signed.body).map(|()| signed.clone());
        assert_eq!(validation::check(&signed.bytes), expected);
    }
}

/// One record of the `state` target's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Control bits, see the `CTRL_*` constants.
    pub ctrl: u8,
    /// The clock: `now_ms = T0 - 2 h + time * 15 min` for the group this record opens.
    pub time: u8,
    /// The envelope (or, with [`CTRL_RESIGN`], the envelope whose body is re-signed).
    pub payload: &'a [u8],
}

/// Ends the current group after this record (a group is inserted as one batch).
pub const CTRL_FLUSH: u8 = 1;
/// After this record's group, both states tick at the group's time plus an hour.
pub const CTRL_TICK: u8 = 2;
/// If the payload decodes, re-author and re-sign its body (see [`reauthor`]).
pub const CTRL_RESIGN: u8 = 4;
/// With [`CTRL_RESIGN`], first point its references at earlier envelopes (see [`relink`]).
pub const CTRL_RELINK: u8 = 8;
/// The key that re-signs is `keys()[ctrl >> 4]` (mod 8).
pub const CTRL_KEY_SHIFT: u8 = 4;

/// Most records one input is split into.
pub const MAX_RECORDS: usize = 64;

/// Splits the input into records: `ctrl (1 byte) ‖ time (1 byte) ‖ length (u16 LE) ‖
/// payload`, the last payload cut short at the end of the input.
pub fn split(mut data: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    while data.len() >= 4 && out.len() < MAX_RECORDS {
        let len = usize::from(u16::from_le_bytes([data[2], data[3]]));
        let (ctrl, time) = (data[0], data[1]);
        let rest = &data[4..];
        let n = len.min(rest.len());
        out.push(Record {
            ctrl,
            time,
            payload: &rest[..n],
        });
        data = &rest[n..];
    }
    out
}

/// Encodes records in the format [`split`] reads (for seeds and tests).
pub fn join(records: &[Record<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let len = u16::try_from(r.payload.len()).expect("payload under 64 KiB");
        out.extend_from_slice(&[r.ctrl, r.time]);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(r.payload);
    }
    out
}

fn now_of(time: u8) -> u64 {
    T0 - 2 * HOUR_MS + u64::from(time) * 15 * 60_000
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

/// Every read-only view of a state; none may panic, and every ledger line has a proof.
fn all_views(st: &State) {
    for seller in st.sellers() {
        let l = st.ledger(&seller);
        let root = l.root();
        for e in &l.entries {
            assert_ne!(
                e.participant, seller,
                "the seller has a line in its own ledger"
            );
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

/// The `state` target: see the crate docs.
pub fn state(data: &[u8]) {
    let records = split(data);
    let mut one = State::new();
    let mut batched = State::new();
    let mut ids: Vec<Id> = Vec::new();
    // Every distinct envelope inserted, valid or not (an invalid one makes what references
    // it invalid, so the reference state below needs them all).
    let mut inserted: BTreeMap<Id, Vec<u8>> = BTreeMap::new();

    let mut group: Vec<Vec<u8>> = Vec::new();
    let mut group_now = 0u64;
    let mut reports: Vec<Report> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut envelope = r.payload.to_vec();
        if r.ctrl & CTRL_RESIGN != 0 {
            if let Ok(a) = Attestation::decode(r.payload) {
                let mut body = a.body;
                if r.ctrl & CTRL_RELINK != 0 {
                    relink(&mut body, &ids);
                }
                let (body, signer) = reauthor(body, usize::from(r.ctrl >> CTRL_KEY_SHIFT));
                envelope = Attestation::sign(body, signer).bytes;
            }
        }
        if group.is_empty() {
            group_now = now_of(r.time);
        }
        let rep = one.insert(&envelope, group_now);
        assert!(!rep.is_empty(), "insert gave no report");
        assert_eq!(
            rep[0].id,
            id_of(&envelope),
            "first report is not the envelope's"
        );
        reports.extend(rep);
        ids.push(id_of(&envelope));
        inserted.insert(id_of(&envelope), envelope.clone());
        group.push(envelope);

        let last = i + 1 == records.len();
        if r.ctrl & CTRL_FLUSH != 0 || last {
            let refs: Vec<&[u8]> = group.iter().map(Vec::as_slice).collect();
            let batch_reports = batched.insert_batch(&refs, group_now);
            assert_eq!(reports, batch_reports, "insert_batch reports differ");
            reports.clear();
            group.clear();
            if r.ctrl & CTRL_TICK != 0 {
                let t = group_now + HOUR_MS;
                assert_eq!(one.tick(t), batched.tick(t), "tick reports differ");
            }
            all_views(&one);
        }
    }
    let _ = one.tick(u64::MAX);
    let _ = batched.tick(u64::MAX);
    assert_eq!(one.next_release_ms(), None);
    all_views(&one);

    // The same envelopes in reverse id order, all at once: the same outcome for each (up to
    // which invalid dependency is named), and the same ledgers.
    let other = State::from_envelopes(inserted.values().rev().map(Vec::as_slice), u64::MAX);
    assert_eq!(
        one.valid_count(),
        other.valid_count(),
        "order changed validity"
    );
    for id in inserted.keys() {
        assert_eq!(
            class(one.outcome(id)),
            class(other.outcome(id)),
            "order changed the outcome of {id}"
        );
    }
    assert_eq!(one.sellers(), other.sellers());
    // `missing()` must name exactly the ids pending attestations wait for (it once kept ids
    // that an attestation waited for before another dependency turned out invalid: README,
    // "Findings").
    for st in [&one, &other] {
        let waited: BTreeSet<Id> = inserted
            .keys()
            .filter_map(|id| match st.outcome(id) {
                Some(Outcome::Pending { missing }) => Some(missing),
                _ => None,
            })
            .flatten()
            .collect();
        let missing: BTreeSet<Id> = st.missing().into_iter().collect();
        assert_eq!(
            waited, missing,
            "missing() is not exactly what pending attestations wait for"
        );
    }
    for seller in one.sellers() {
        let l = one.ledger(&seller);
        assert_eq!(l, batched.ledger(&seller), "batched ledger differs");
        assert_eq!(
            l,
            other.ledger(&seller),
            "order changed the ledger of {seller}"
        );
        assert_eq!(one.equivocations(&seller), other.equivocations(&seller));
        assert_eq!(one.disputes(&seller), other.disputes(&seller));
    }
}

/// A coherent set of valid envelopes of all nine kinds (the seed corpus is made of them):
/// two sellers, a referral chain with an addressed hop, a community with a member and an
/// offer with a checkout URL (envelope version 2) paying a connector share under
/// `require_purchase`, an equivocating receipt, a disputing claim, a refund, a settlement and
/// a membership end a day later.
pub fn seeds() -> &'static [Attestation] {
    static SEEDS: OnceLock<Vec<Attestation>> = OnceLock::new();
    SEEDS.get_or_init(build_seeds)
}

fn build_seeds() -> Vec<Attestation> {
    use passalong_protocol::attestation::*;
    use passalong_protocol::{Policy, Rule};
    let k = keys();
    let (s, b, c, d, buyer, conn, s2) = (&k[0], &k[1], &k[2], &k[3], &k[4], &k[5], &k[7]);
    let eur = Currency(*b"EUR");
    let day = 24 * HOUR_MS;
    let policy = |rule, pool_bps, connector_bps, require_purchase| Policy {
        pool_bps,
        connector_bps,
        rule,
        max_depth: 16,
        window_ms: 30 * day,
        require_purchase,
    };
    let offer = |seller: &Keypair, policy: Policy, t: u64, checkout_url: Option<&'static str>| {
        Attestation::sign(
            Body::Offer(Offer {
                seller: seller.public(),
                title: "A record".into(),
                content_hash: Some([7; 32]),
                price_minor: 2_000,
                currency: eur,
                policy,
                valid_from_ms: T0,
                valid_until_ms: Some(T0 + 365 * day),
                created_at_ms: t,
                checkout_url: checkout_url.map(String::from),
            }),
            seller,
        )
    };
    let refer = |r: &Keypair,
                 offer: Id,
                 parent: Option<Id>,
                 recipient: Option<PublicKey>,
                 community: Option<Id>,
                 t: u64| {
        Attestation::sign(
            Body::Referral(Referral {
                referrer: r.public(),
                offer,
                parent,
                recipient,
                community,
                created_at_ms: t,
            }),
            r,
        )
    };
    let receipt = |seller: &Keypair,
                   offer: Id,
                   order: &str,
                   amount_minor: u64,
                   buyer: PublicKey,
                   via: Option<Id>,
                   t: u64| {
        Attestation::sign(
            Body::Receipt(Receipt {
                seller: seller.public(),
                offer,
                order: order.into(),
                amount_minor,
                buyer,
                via,
                created_at_ms: t,
            }),
            seller,
        )
    };
    let com = Attestation::sign(
        Body::Community(Community {
            connector: conn.public(),
            name: "Neighbours".into(),
            created_at_ms: T0,
        }),
        conn,
    );
    let mem = Attestation::sign(
        Body::Membership(Membership::admit(conn.public(), com.id, b, T0 + 1)),
        conn,
    );
    let o1 = offer(
        s,
        policy(Rule::Geometric { r_bps: 5_000 }, 1_000, 0, false),
        T0,
        None,
    );
    // A version-2 envelope: an offer with a checkout URL.
    let o2 = offer(
        s,
        policy(Rule::SplitProof, 1_000, 500, true),
        T0 + HOUR_MS,
        Some("https://shop.example/records/2?ref=passalong"),
    );
    let r1 = refer(b, o1.id, None, None, Some(com.id), T0 + 2 * HOUR_MS);
    let r2 = refer(c, o1.id, Some(r1.id), None, None, T0 + 3 * HOUR_MS);
    let r3 = refer(
        d,
        o1.id,
        Some(r2.id),
        Some(buyer.public()),
        None,
        T0 + 4 * HOUR_MS,
    );
    let rb = receipt(
        s,
        o1.id,
        "order-1",
        10_000,
        buyer.public(),
        Some(r3.id),
        T0 + 5 * HOUR_MS,
    );
    let rb2 = receipt(
        s,
        o1.id,
        "order-1",
        9_000,
        buyer.public(),
        None,
        T0 + 5 * HOUR_MS + 1,
    );
    let cl = Attestation::sign(
        Body::PurchaseClaim(PurchaseClaim {
            buyer: buyer.public(),
            offer: o1.id,
            order: "order-1".into(),
            via: Some(r2.id),
            created_at_ms: T0 + 6 * HOUR_MS,
        }),
        buyer,
    );
    let rf = Attestation::sign(
        Body::Refund(Refund {
            seller: s.public(),
            receipt: rb.id,
            created_at_ms: T0 + 7 * HOUR_MS,
        }),
        s,
    );
    let st = Attestation::sign(
        Body::Settlement(Settlement {
            seller: s.public(),
            participant: c.public(),
            amount_minor: 500,
            currency: eur,
            period_start_ms: T0,
            period_end_ms: T0 + 8 * HOUR_MS,
            reference: "SEPA-0001".into(),
            ledger_root: [0; 32],
            created_at_ms: T0 + 8 * HOUR_MS,
        }),
        s,
    );
    let q1 = refer(b, o2.id, None, None, Some(com.id), T0 + 2 * HOUR_MS);
    let pc = receipt(
        s,
        o2.id,
        "order-2",
        5_000,
        c.public(),
        Some(q1.id),
        T0 + 3 * HOUR_MS,
    );
    let q2 = refer(c, o2.id, Some(q1.id), None, None, T0 + 4 * HOUR_MS);
    let pe = receipt(
        s,
        o2.id,
        "order-3",
        7_000,
        buyer.public(),
        Some(q2.id),
        T0 + 5 * HOUR_MS,
    );
    let me = Attestation::sign(
        Body::MembershipEnd(MembershipEnd {
            author: b.public(),
            membership: mem.id,
            ends_at_ms: T0 + day,
            created_at_ms: T0 + day,
        }),
        b,
    );
    let o3 = offer(s2, policy(Rule::Direct, 2_000, 0, false), T0, None);
    let r4 = refer(d, o3.id, None, None, None, T0 + HOUR_MS);
    let p3 = receipt(
        s2,
        o3.id,
        "x",
        100,
        buyer.public(),
        Some(r4.id),
        T0 + 2 * HOUR_MS,
    );
    vec![
        com, mem, o1, o2, r1, r2, r3, rb, rb2, cl, rf, st, q1, pc, q2, pe, me, o3, r4, p3,
    ]
}

/// The seed inputs of each target, by file name: every valid envelope for `decode`; for
/// `state`, the whole set in order, in reverse with ticks, re-signed and relinked.
pub fn seed_files() -> Vec<(&'static str, String, Vec<u8>)> {
    let set = seeds();
    let mut out = Vec::new();
    for (i, a) in set.iter().enumerate() {
        let name = format!("seed-{:02}-{}", i, a.kind().name());
        out.push(("decode", name, a.bytes.clone()));
    }
    let in_order: Vec<Record<'_>> = set
        .iter()
        .enumerate()
        .map(|(i, a)| Record {
            ctrl: if i % 5 == 4 { CTRL_FLUSH } else { 0 },
            time: 200,
            payload: &a.bytes,
        })
        .collect();
    out.push(("state", "seed-in-order".into(), join(&in_order)));
    let reversed: Vec<Record<'_>> = set
        .iter()
        .rev()
        .enumerate()
        .map(|(i, a)| Record {
            ctrl: CTRL_FLUSH | if i % 3 == 0 { CTRL_TICK } else { 0 },
            time: (i * 13) as u8,
            payload: &a.bytes,
        })
        .collect();
    out.push(("state", "seed-reversed-ticking".into(), join(&reversed)));
    let resigned: Vec<Record<'_>> = set
        .iter()
        .enumerate()
        .map(|(i, a)| Record {
            ctrl: CTRL_RESIGN
                | if i % 2 == 0 { CTRL_RELINK } else { 0 }
                | if i % 4 == 3 { CTRL_FLUSH } else { 0 }
                | ((i % 8) as u8) << CTRL_KEY_SHIFT,
            time: 100 + i as u8,
            payload: &a.bytes,
        })
        .collect();
    out.push(("state", "seed-resigned-relinked".into(), join(&resigned)));
    // The stale `missing()` finding (README, "Findings"): a referral waits for an offer that
    // then arrives invalid and for a parent that never arrives.
    let garbage: &[u8] = b"not an envelope";
    let referrer = &keys()[1];
    let waiting = Attestation::sign(
        Body::Referral(passalong_protocol::Referral {
            referrer: referrer.public(),
            offer: id_of(garbage),
            parent: Some(Id([9; 32])),
            recipient: None,
            community: None,
            created_at_ms: T0,
        }),
        referrer,
    );
    let stale = [
        Record {
            ctrl: 0,
            time: 8,
            payload: &waiting.bytes,
        },
        Record {
            ctrl: CTRL_FLUSH,
            time: 8,
            payload: garbage,
        },
    ];
    out.push(("state", "seed-stale-missing".into(), join(&stale)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_valid_and_targets_accept_them() {
        let st = State::from_envelopes(seeds().iter().map(|a| a.bytes.as_slice()), u64::MAX);
        assert_eq!(st.valid_count(), seeds().len());
        for (target, _, bytes) in seed_files() {
            match target {
                "decode" => decode(&bytes),
                _ => state(&bytes),
            }
        }
    }

    #[test]
    fn split_reads_what_join_writes() {
        let recs = [
            Record {
                ctrl: 1,
                time: 2,
                payload: b"abc",
            },
            Record {
                ctrl: 3,
                time: 4,
                payload: b"",
            },
        ];
        assert_eq!(split(&join(&recs)), recs);
        assert_eq!(split(&[9, 9, 200, 0, 1, 2]).len(), 1);
        assert!(split(&[1, 2, 3]).is_empty());
    }

    /// Replays the checked-in corpus (and anything `cargo fuzz run` added to it).
    #[test]
    fn corpus_replays() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for target in ["decode", "state"] {
            let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
                continue;
            };
            for e in entries.flatten() {
                let bytes = std::fs::read(e.path()).expect("readable corpus file");
                match target {
                    "decode" => decode(&bytes),
                    _ => state(&bytes),
                }
            }
        }
    }
}
