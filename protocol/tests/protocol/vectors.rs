//! Test vectors under `tests/vectors/`, for this crate and for other implementations.
//!
//! `cargo test -p passalong-protocol --test protocol vectors::` loads every file and checks this
//! implementation against it. `PASSALONG_BLESS=1 cargo test -p passalong-protocol --test protocol
//! vectors::` writes them anew from the generators below
//! (everything is deterministic: fixed seeds, fixed times), after which `git diff` shows what
//! changed. A change to a committed vector is a protocol change.

use std::path::PathBuf;

use crate::common::*;
use passalong_protocol::attestation::{Body, Kind};
use passalong_protocol::encoding::{self, Attestation};
use passalong_protocol::ledger::verify_entry;
use passalong_protocol::policy::Rule;
use passalong_protocol::signature;
use passalong_protocol::{validation, Ledger, Outcome, State};
use serde_json::{json, Value};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("valid hex")
}

/// Writes the file when blessing, otherwise compares it with what the generator makes now.
fn bless_or_check(name: &str, v: &Value) {
    let path = dir().join(name);
    let text = serde_json::to_string_pretty(v).expect("json") + "\n";
    if std::env::var_os("PASSALONG_BLESS").is_some() {
        std::fs::write(&path, text).expect("write vector file");
    } else {
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with PASSALONG_BLESS=1)", path.display()));
        assert_eq!(
            on_disk, text,
            "{name} differs from the generator: protocol change?"
        );
    }
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(name)).expect("vector file");
    serde_json::from_str(&text).expect("vector json")
}

fn opt_hex<T: AsRef<[u8]>>(o: Option<T>) -> Value {
    o.map_or(Value::Null, |b| Value::String(h(b.as_ref())))
}

/// The fields of a body as JSON: keys and ids as hex, numbers as numbers.
fn fields(body: &Body) -> Value {
    match body {
        // `checkout_url` only when there is one: an Offer without one (version 1) has the
        // fields it had before version 2 existed.
        Body::Offer(o) => {
            let mut v = json!({
            "seller": o.seller.to_hex(), "title": o.title, "content_hash": opt_hex(o.content_hash),
            "price_minor": o.price_minor, "currency": o.currency.as_str(),
            "policy": {
                "pool_bps": o.policy.pool_bps, "connector_bps": o.policy.connector_bps,
                "rule": o.policy.rule.to_string(), "max_depth": o.policy.max_depth,
                "window_ms": o.policy.window_ms, "require_purchase": o.policy.require_purchase,
            },
            "valid_from_ms": o.valid_from_ms, "valid_until_ms": o.valid_until_ms,
            "created_at_ms": o.created_at_ms,
            });
            if let Some(u) = &o.checkout_url {
                v["checkout_url"] = u.as_str().into();
            }
            v
        }
        Body::Referral(r) => json!({
            "referrer": r.referrer.to_hex(), "offer": r.offer.to_hex(), "parent": opt_hex(r.parent.map(|p| p.0)),
            "recipient": opt_hex(r.recipient.map(|p| p.0)), "community": opt_hex(r.community.map(|p| p.0)),
            "created_at_ms": r.created_at_ms,
        }),
        Body::Receipt(r) => json!({
            "seller": r.seller.to_hex(), "offer": r.offer.to_hex(), "order": r.order,
            "amount_minor": r.amount_minor, "buyer": r.buyer.to_hex(), "via": opt_hex(r.via.map(|p| p.0)),
            "created_at_ms": r.created_at_ms,
        }),
        Body::PurchaseClaim(c) => json!({
            "buyer": c.buyer.to_hex(), "offer": c.offer.to_hex(), "order": c.order,
            "via": opt_hex(c.via.map(|p| p.0)), "created_at_ms": c.created_at_ms,
        }),
        Body::Refund(r) => json!({
            "seller": r.seller.to_hex(), "receipt": r.receipt.to_hex(), "created_at_ms": r.created_at_ms,
        }),
        Body::Settlement(s) => json!({
            "seller": s.seller.to_hex(), "participant": s.participant.to_hex(), "amount_minor": s.amount_minor,
            "currency": s.currency.as_str(), "period_start_ms": s.period_start_ms, "period_end_ms": s.period_end_ms,
            "reference": s.reference, "ledger_root": h(&s.ledger_root), "created_at_ms": s.created_at_ms,
        }),
        Body::Community(c) => json!({
            "connector": c.connector.to_hex(), "name": c.name, "created_at_ms": c.created_at_ms,
        }),
        Body::Membership(m) => json!({
            "connector": m.connector.to_hex(), "community": m.community.to_hex(), "member": m.member.to_hex(),
            "member_signature": h(&m.member_signature.0), "created_at_ms": m.created_at_ms,
        }),
        Body::MembershipEnd(e) => json!({
            "author": e.author.to_hex(), "membership": e.membership.to_hex(), "ends_at_ms": e.ends_at_ms,
            "created_at_ms": e.created_at_ms,
        }),
    }
}

/// The URL of the version-2 offer vectors.
const CHECKOUT_URL: &str = "https://shop.example/records/a-record?ref=passalong";

/// The offer of [`one_of_each`] with a checkout URL (a version-2 envelope), or with one that
/// breaks the URL rule.
fn offer_with_url(url: &str) -> Attestation {
    offer_at(
        &key(1),
        policy(Rule::Geometric { r_bps: 5000 }, 1_000),
        T0,
        Some(url),
    )
}

/// One valid attestation of each kind, authored by fixed-seed keys (seed = 32 × the byte).
fn one_of_each() -> Vec<(&'static str, u8, Attestation)> {
    let (s, b, c, e, conn, m) = (key(1), key(2), key(3), key(5), key(6), key(7));
    let o = offer(&s, policy(Rule::Geometric { r_bps: 5000 }, 1_000), T0);
    let rb = refer(&b, &o, None, T0 + 1_000);
    let rc = refer_full(
        &c,
        o.id,
        Some(rb.id),
        Some(key(4).public()),
        None,
        T0 + 2_000,
    );
    let rcpt = receipt(&s, &o, "order-1", 2_000, e.public(), Some(&rb), T0 + 3_000);
    let cl = claim(&e, &o, "order-1", Some(rb.id), T0 + 4_000);
    let rf = refund(&s, &rcpt, T0 + 5_000);
    let st = settle(&s, b.public(), 100, T0 + 6_000);
    let co = community(&conn, T0);
    let ms = membership(&conn, &co, &m, T0 + 1_000);
    let me = membership_end(&m, &ms, T0 + 9_000);
    vec![
        ("offer", 1, o),
        ("offer-with-checkout-url", 1, offer_with_url(CHECKOUT_URL)),
        ("referral-root", 2, rb),
        ("referral-addressed", 3, rc),
        ("receipt", 1, rcpt),
        ("purchase-claim", 5, cl),
        ("refund", 1, rf),
        ("settlement", 1, st),
        ("community", 6, co),
        ("membership", 6, ms),
        ("membership-end", 7, me),
    ]
}

fn gen_keys() -> Value {
    Value::Array(
        (1u8..=12)
            .map(|n| json!({"seed": h(&[n; 32]), "public_key": key(n).public().to_hex()}))
            .collect(),
    )
}

fn gen_attestations() -> Value {
    Value::Array(
        one_of_each()
            .into_iter()
            .map(|(name, seed, a)| {
                let body = encoding::encode_body(&a.body);
                json!({
                    "name": name, "kind": a.kind().name(), "kind_byte": a.kind() as u8,
                    "author_seed": h(&[seed; 32]), "fields": fields(&a.body),
                    "tag": String::from_utf8_lossy(encoding::versioned_tag(a.version(), a.kind())).replace('\0', "\\0"),
                    "body": h(&body), "signed_message": h(&a.signed_message()),
                    "signature": h(&a.signature), "envelope": h(&a.bytes), "id": a.id.to_hex(),
                })
            })
            .collect(),
    )
}

/// Adds the group order l to the scalar S of a signature (little-endian), the classic
/// malleation: the same equation holds, the encoding is not canonical.
fn add_l(sig: &[u8; 64]) -> [u8; 64] {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = *sig;
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        out[32 + i] = s as u8;
        carry = s >> 8;
    }
    out
}

/// An envelope made by hand: `version ‖ kind ‖ body ‖ signature over tag ‖ body`.
fn by_hand(
    version: u8,
    kind: Kind,
    body: &[u8],
    k: &passalong_protocol::Keypair,
    tag: &[u8],
) -> Vec<u8> {
    let mut m = tag.to_vec();
    m.extend_from_slice(body);
    let mut e = vec![version, kind as u8];
    e.extend_from_slice(body);
    e.extend_from_slice(&k.sign(&m));
    e
}

/// The clock of every invalid.json case: a day after the scenarios' epoch, so that no case is
/// held (the hold rule compares `created_at_ms` with it).
const INVALID_NOW_MS: u64 = T0 + DAY_MS;

fn gen_invalid() -> Value {
    let all = one_of_each();
    let get = |n: &str| {
        all.iter()
            .find(|(name, _, _)| *name == n)
            .expect("named")
            .2
            .clone()
    };
    let (o, rb, rcpt) = (get("offer"), get("referral-root"), get("receipt"));
    let s = key(1);
    let mut cases: Vec<(String, Vec<u8>, Vec<Attestation>)> = Vec::new();
    let mut push = |name: &str, bytes: Vec<u8>, ctx: Vec<Attestation>| {
        cases.push((name.to_string(), bytes, ctx))
    };
    push("empty", vec![], vec![]);
    push(
        "truncated-envelope",
        rcpt.bytes[..rcpt.bytes.len() - 1].to_vec(),
        vec![],
    );
    let mut b = rcpt.bytes.clone();
    b[0] = 3;
    push("unknown-version", b, vec![]);
    // Version 2 exists, for Offers with a checkout URL only: a receipt in it is not canonical.
    let mut b = rcpt.bytes.clone();
    b[0] = 2;
    push("receipt-as-version-2", b, vec![]);
    let mut b = rcpt.bytes.clone();
    b[1] = 10;
    push("unknown-kind", b, vec![]);
    let mut b = rcpt.bytes.clone();
    b[1] = Kind::Offer as u8;
    push("kind-byte-swapped", b, vec![]);
    let mut b = rcpt.bytes.clone();
    b.insert(b.len() - 64, 0);
    push("trailing-byte-in-body", b, vec![]);
    // Refund { seller, receipt, created_at_ms }: the time's minimal varint, made over-long.
    let rf = get("refund");
    let mut b = rf.bytes.clone();
    let t = encoding::encode_body(&rf.body);
    let varint_at = 2 + 64; // after seller and receipt
    let mut long = t[64..].to_vec();
    let last = long.len() - 1;
    long[last] |= 0x80;
    long.push(0);
    b.splice(varint_at..varint_at + t.len() - 64, long);
    push("over-long-varint", b, vec![]);
    let mut b = rcpt.bytes.clone();
    let n = b.len();
    b[n - 1] ^= 0x01;
    push("bad-signature", b, vec![]);
    let wrong_signer =
        Attestation::assemble(rcpt.body.clone(), key(9).sign(&rcpt.signed_message()));
    push("signed-by-another-key", wrong_signer.bytes, vec![]);
    push(
        "malleated-signature-s-plus-l",
        Attestation::assemble(rcpt.body.clone(), add_l(&rcpt.signature)).bytes,
        vec![],
    );
    // Limits and ranges.
    let mut p = policy(Rule::Equal, 9_000);
    p.connector_bps = 1_001;
    push(
        "pool-plus-connector-over-10000",
        offer(&s, p, T0).bytes,
        vec![],
    );
    let mut p = policy(Rule::Equal, 1_000);
    p.max_depth = 17;
    push("max-depth-17", offer(&s, p, T0).bytes, vec![]);
    let mut p = policy(Rule::Equal, 1_000);
    p.max_depth = 0;
    push("max-depth-0", offer(&s, p, T0).bytes, vec![]);
    push(
        "geometric-r-10000",
        offer(&s, policy(Rule::Geometric { r_bps: 10_000 }, 1_000), T0).bytes,
        vec![],
    );
    let mut ob = match &o.body {
        Body::Offer(x) => x.clone(),
        _ => unreachable!(),
    };
    ob.currency = passalong_protocol::Currency(*b"eur");
    push(
        "lower-case-currency",
        Attestation::sign(Body::Offer(ob.clone()), &s).bytes,
        vec![],
    );
    ob.currency = passalong_protocol::Currency(*b"EUR");
    ob.title = "x".repeat(257);
    push(
        "title-too-long",
        Attestation::sign(Body::Offer(ob.clone()), &s).bytes,
        vec![],
    );
    push(
        "zero-amount-receipt",
        receipt(&s, &o, "z", 0, key(5).public(), None, T0).bytes,
        vec![],
    );
    push(
        "settlement-to-self",
        settle(&s, s.public(), 10, T0).bytes,
        vec![],
    );
    // Version 2: an Offer with a checkout URL. A v2 envelope of an Offer without one, signed
    // under the v2 tag: non-canonical (it is written as version 1).
    let v2 = offer_with_url(CHECKOUT_URL);
    let mut body = encoding::encode_body(&o.body);
    body.push(0x00);
    push(
        "offer-version-2-without-checkout-url",
        by_hand(2, Kind::Offer, &body, &s, encoding::OFFER_V2_TAG),
        vec![],
    );
    // The version byte changed, the signature kept: the body no longer fits the version.
    let mut b = o.bytes.clone();
    b[0] = 2;
    push("offer-version-1-relabelled-2", b, vec![]);
    let mut b = v2.bytes.clone();
    b[0] = 1;
    push("offer-version-2-relabelled-1", b, vec![]);
    // A v2 body signed under the v1 tag: a v1 signature never passes as a v2 one.
    push(
        "offer-version-2-signed-under-v1-tag",
        by_hand(
            2,
            Kind::Offer,
            &encoding::encode_body(&v2.body),
            &s,
            encoding::tag(Kind::Offer),
        ),
        vec![],
    );
    let long = format!("https://shop.example/{}", "a".repeat(513 - 21));
    for (name, url) in [
        ("checkout-url-ftp-scheme", "ftp://shop.example/a-record"),
        ("checkout-url-513-bytes", long.as_str()),
        ("checkout-url-space", "https://shop.example/a record"),
        (
            "checkout-url-control-char",
            "https://shop.example/a-record\n",
        ),
        ("checkout-url-non-ascii", "https://bücher.example/a-record"),
        (
            "checkout-url-upper-case-scheme",
            "HTTPS://shop.example/a-record",
        ),
        ("checkout-url-no-host", "https:///a-record"),
        (
            "checkout-url-userinfo",
            "https://user@shop.example/a-record",
        ),
        ("checkout-url-empty", ""),
    ] {
        push(name, offer_with_url(url).bytes, vec![]);
    }
    // Contextual rules (the context is inserted first).
    push(
        "receipt-not-by-offer-seller",
        receipt(&key(9), &o, "x", 10, key(5).public(), None, T0 + 1).bytes,
        vec![o.clone()],
    );
    let to3 = refer_full(&key(2), o.id, None, Some(key(3).public()), None, T0 + 1);
    push(
        "referral-by-non-recipient",
        refer_full(&key(4), o.id, Some(to3.id), None, None, T0 + 2).bytes,
        vec![o.clone(), to3],
    );
    let o2 = offer(&key(8), policy(Rule::Direct, 100), T0);
    push(
        "parent-of-another-offer",
        refer(&key(3), &o2, Some(&rb), T0 + 2).bytes,
        vec![o.clone(), o2.clone(), rb.clone()],
    );
    push(
        "parent-is-not-a-referral",
        refer_full(&key(3), o.id, Some(o.id), None, None, T0 + 2).bytes,
        vec![o.clone()],
    );
    push(
        "refund-by-another-seller",
        refund(&key(9), &rcpt, T0 + 9).bytes,
        vec![o.clone(), rb.clone(), rcpt.clone()],
    );
    push(
        "referral-dated-before-parent",
        refer(&key(3), &o, Some(&rb), T0 + 500).bytes,
        vec![o.clone(), rb.clone()],
    );
    let mut early = match &o.body {
        Body::Offer(x) => x.clone(),
        _ => unreachable!(),
    };
    early.valid_until_ms = Some(T0 + 10);
    let early = Attestation::sign(Body::Offer(early), &s);
    push(
        "receipt-after-offer-expired",
        receipt(&s, &early, "late", 10, key(5).public(), None, T0 + 10).bytes,
        vec![early],
    );

    Value::Array(
        cases
            .into_iter()
            .map(|(name, bytes, ctx)| {
                let mut st = State::new();
                for c in &ctx {
                    st.insert(&c.bytes, INVALID_NOW_MS);
                }
                let rep = st.insert(&bytes, INVALID_NOW_MS);
                let code = match &rep[0].outcome {
                    Outcome::Invalid(r) => r.code(),
                    other => panic!("vector {name} is not invalid: {other:?}"),
                };
                let stage = if validation::check(&bytes).is_err() {
                    "stateless"
                } else {
                    "contextual"
                };
                json!({
                    "name": name, "stage": stage, "reason": code, "envelope": h(&bytes),
                    "context": ctx.iter().map(|c| h(&c.bytes)).collect::<Vec<_>>(),
                    "now_ms": INVALID_NOW_MS,
                })
            })
            .collect(),
    )
}

/// The secret scalar of a seed (RFC 8032: the clamped low half of SHA-512(seed)).
fn secret_scalar(seed: [u8; 32]) -> Scalar {
    ed25519_dalek::SigningKey::from_bytes(&seed).to_scalar()
}

/// A signature made by hand under `key` (whose secret is `a`): R = [r]B + `torsion`,
/// S = r + k·a with k = SHA-512(R ‖ key ‖ m) mod l and r derived from `nonce_label`.
fn craft_signature(
    a: Scalar,
    key: &[u8; 32],
    torsion: EdwardsPoint,
    nonce_label: &[u8],
    m: &[u8],
) -> [u8; 64] {
    let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(nonce_label).into());
    let big_r = (ED25519_BASEPOINT_POINT * r + torsion).compress();
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(key)
            .chain_update(m)
            .finalize()
            .into(),
    );
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice((r + k * a).as_bytes());
    sig
}

/// (name, public key, message, signature, valid)
type SigCase = (&'static str, [u8; 32], Vec<u8>, [u8; 64], bool);

fn gen_signatures() -> Value {
    let k = key(1);
    let msg = b"passalong test message".to_vec();
    let good = k.sign(&msg);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut order2 = [0xffu8; 32]; // y = p - 1: the point (0, -1) of order 2
    order2[0] = 0xec;
    order2[31] = 0x7f;
    let mut y_ge_p = [0xffu8; 32]; // y = p + 1, a non-canonical encoding of y = 1
    y_ge_p[0] = 0xee;
    y_ge_p[31] = 0x7f;
    let mut r_identity_s_zero = [0u8; 64];
    r_identity_s_zero[0] = 1;
    let mut small_r = good;
    small_r[..32].copy_from_slice(&identity);
    let mut flipped = good;
    flipped[10] ^= 0x04;
    // A point of order 8, and the key-1 secret: signatures only the key's owner can make.
    let t8 = CompressedEdwardsY(
        hex::decode("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
            .expect("hex")
            .try_into()
            .expect("32"),
    )
    .decompress()
    .expect("a curve point");
    let a = secret_scalar([1; 32]);
    assert_eq!((ED25519_BASEPOINT_POINT * a).compress().0, k.public().0);
    let torsion_r = craft_signature(a, &k.public().0, t8, b"torsion-r", &msg);
    let mixed_key = (ED25519_BASEPOINT_POINT * a + t8).compress().0;
    let mixed_key_sig = craft_signature(
        a,
        &mixed_key,
        EdwardsPoint::default(),
        b"mixed-order-key",
        &msg,
    );
    // They pin the cofactored rule: the cofactorless one (ed25519-dalek's verify_strict)
    // rejects both.
    for (key, sig) in [(k.public().0, torsion_r), (mixed_key, mixed_key_sig)] {
        let cofactorless = ed25519_dalek::VerifyingKey::from_bytes(&key)
            .and_then(|vk| vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig)));
        assert!(cofactorless.is_err());
    }
    let mut r_y_ge_p = good; // R = y = p + 3, a non-canonical encoding of a curve point
    r_y_ge_p[..32].copy_from_slice(&[0xff; 32]);
    r_y_ge_p[0] = 0xf0;
    r_y_ge_p[31] = 0x7f;
    let mut s_is_l = good; // S = l exactly
    s_is_l[32..].copy_from_slice(&add_l(&[0; 64])[32..]);
    let cases: Vec<SigCase> = vec![
        ("valid", k.public().0, msg.clone(), good, true),
        (
            "wrong-message",
            k.public().0,
            b"passalong test messagE".to_vec(),
            good,
            false,
        ),
        ("bit-flipped-r", k.public().0, msg.clone(), flipped, false),
        (
            "non-canonical-s-malleated",
            k.public().0,
            msg.clone(),
            add_l(&good),
            false,
        ),
        (
            "small-order-key-identity",
            identity,
            msg.clone(),
            r_identity_s_zero,
            false,
        ),
        (
            "small-order-key-order-2",
            order2,
            msg.clone(),
            r_identity_s_zero,
            false,
        ),
        (
            "non-canonical-key-encoding",
            y_ge_p,
            msg.clone(),
            r_identity_s_zero,
            false,
        ),
        ("small-order-r", k.public().0, msg.clone(), small_r, false),
        // The cofactored equation: R = [r]B + T with T of order 8, S = r + k·a. Valid; the
        // cofactorless equation would reject it.
        (
            "torsion-r-cofactored",
            k.public().0,
            msg.clone(),
            torsion_r,
            true,
        ),
        // The key A + T (T of order 8) is not of small order; signed with S = r + k·a. Valid.
        (
            "mixed-order-key-cofactored",
            mixed_key,
            msg.clone(),
            mixed_key_sig,
            true,
        ),
        (
            "non-canonical-r",
            k.public().0,
            msg.clone(),
            r_y_ge_p,
            false,
        ),
        ("s-equals-l", k.public().0, msg.clone(), s_is_l, false),
    ];
    Value::Array(
        cases
            .into_iter()
            .map(|(name, pk, m, sig, valid)| {
                json!({"name": name, "public_key": h(&pk), "message": h(&m), "signature": h(&sig), "valid": valid})
            })
            .collect(),
    )
}

/// Payout scenarios: envelopes (in the order given; any order gives the same ledger) and the
/// seller's expected ledger and root.
fn gen_payouts() -> Value {
    let s = key(1);
    let (b, c, d, e) = (key(2), key(3), key(4), key(5));
    let mut scenarios: Vec<(String, Vec<Attestation>)> = Vec::new();
    for (name, rule) in [
        ("direct", Rule::Direct),
        ("equal", Rule::Equal),
        ("geometric-5000", Rule::Geometric { r_bps: 5000 }),
        ("geometric-2500", Rule::Geometric { r_bps: 2500 }),
        ("split-proof", Rule::SplitProof),
    ] {
        let o = offer(&s, policy(rule, 1_000), T0);
        let rb = refer(&b, &o, None, T0 + 1);
        let rc = refer(&c, &o, Some(&rb), T0 + 2);
        let rd = refer(&d, &o, Some(&rc), T0 + 3);
        let r1 = receipt(&s, &o, "1", 10_000, e.public(), Some(&rd), T0 + 4);
        let r2 = receipt(&s, &o, "2", 3_333, key(9).public(), Some(&rc), T0 + 5);
        scenarios.push((
            format!("three-hop-chain-{name}"),
            vec![o, rb, rc, rd, r1, r2],
        ));
    }
    // Refund, settlements (one overpaying), equivocation, a dispute.
    let o = offer(&s, policy(Rule::Equal, 2_000), T0);
    let rb = refer(&b, &o, None, T0 + 1);
    let rc = refer(&c, &o, Some(&rb), T0 + 2);
    let r1 = receipt(&s, &o, "1", 10_000, e.public(), Some(&rc), T0 + 3);
    let r2 = receipt(&s, &o, "2", 5_000, e.public(), Some(&rc), T0 + 4);
    let r2b = receipt(&s, &o, "2", 5_000, e.public(), Some(&rb), T0 + 4);
    let rf = refund(&s, &r1, T0 + 5);
    let st1 = settle(&s, b.public(), 600, T0 + 6);
    let st2 = settle(&s, c.public(), 2_000, T0 + 6);
    let cl = claim(&e, &o, "2", Some(rb.id), T0 + 7);
    scenarios.push((
        "refund-settlement-equivocation-dispute".into(),
        vec![o, rb, rc, r1, r2, r2b, rf, st1, st2, cl],
    ));
    // Eligibility: buyer, seller and repeated keys in the chain; require_purchase; window; depth.
    let mut p = policy(Rule::Geometric { r_bps: 5000 }, 1_000);
    p.require_purchase = true;
    p.max_depth = 4;
    p.window_ms = 10 * DAY_MS;
    let o = offer(&s, p, T0);
    let bought = receipt(&s, &o, "b", 2_000, b.public(), None, T0 + 1);
    let h6 = refer(&d, &o, None, T0 + 2);
    let h5 = refer(&b, &o, Some(&h6), T0 + 3);
    let h4 = refer(&s, &o, Some(&h5), T0 + 4);
    let h3 = refer(&b, &o, Some(&h4), T0 + 5);
    let h2 = refer(&c, &o, Some(&h3), T0 + 6);
    let h1 = refer(&e, &o, Some(&h2), T0 + 7);
    let sale = receipt(&s, &o, "e", 10_000, e.public(), Some(&h1), T0 + 8);
    let old = refer(&d, &o, None, T0 + 9);
    let late_sale = receipt(
        &s,
        &o,
        "late",
        10_000,
        key(9).public(),
        Some(&old),
        T0 + 9 + 11 * DAY_MS,
    );
    scenarios.push((
        "eligibility-window-depth".into(),
        vec![o, bought, h6, h5, h4, h3, h2, h1, sale, old, late_sale],
    ));
    // Connector share with a membership that ends.
    let (conn, m) = (key(6), key(7));
    let mut p = policy(Rule::Direct, 1_000);
    p.connector_bps = 250;
    let o = offer(&s, p, T0);
    let co = community(&conn, T0);
    let ms = membership(&conn, &co, &m, T0 + 1);
    let end = membership_end(&conn, &ms, T0 + 100);
    let r_in = refer_full(&m, o.id, None, None, Some(co.id), T0 + 50);
    let r_out = refer_full(&m, o.id, None, None, Some(co.id), T0 + 150);
    let s1 = receipt(&s, &o, "in", 10_000, e.public(), Some(&r_in), T0 + 200);
    let s2 = receipt(&s, &o, "out", 10_000, e.public(), Some(&r_out), T0 + 200);
    scenarios.push((
        "connector-share-and-membership-end".into(),
        vec![o, co, ms, end, r_in, r_out, s1, s2],
    ));
    scenarios.push(("settlement-root-boundary".into(), settlement_boundary()));

    Value::Array(
        scenarios
            .into_iter()
            .map(|(name, atts)| {
                let st = state_of(&atts.iter().collect::<Vec<_>>());
                for a in &atts {
                    assert_eq!(st.outcome(&a.id), Some(Outcome::Valid), "{name}: all vectors' inputs are valid");
                }
                let l = st.ledger(&s.public());
                let envs: Vec<&[u8]> = atts.iter().map(|a| a.bytes.as_slice()).collect();
                json!({
                    "name": name, "seller": s.public().to_hex(), "now_ms": PAYOUTS_NOW_MS,
                    "envelopes": atts.iter().map(|a| h(&a.bytes)).collect::<Vec<_>>(),
                    "ledger": ledger_json(&l), "root": h(&l.root()),
                    "equivocations": st.equivocations(&s.public()).iter()
                        .map(|q| json!({"counted": q.counted.to_hex(), "other": q.other.to_hex()})).collect::<Vec<_>>(),
                    "disputes": disputes_json(&st, &s.public()),
                    "settlements": settlements_json(&envs, &s.public(), PAYOUTS_NOW_MS),
                })
            })
            .collect(),
    )
}

/// The clock of every payouts.json scenario: a year after the epoch, past every attestation.
const PAYOUTS_NOW_MS: u64 = T0 + 365 * DAY_MS;

/// A settlement to `participant` at `t` that commits to `ledger_root`.
fn settle_against(
    seller: &passalong_protocol::Keypair,
    participant: &passalong_protocol::Keypair,
    amount_minor: u64,
    t: u64,
    reference: &str,
    ledger_root: [u8; 32],
) -> Attestation {
    Attestation::sign(
        Body::Settlement(passalong_protocol::Settlement {
            seller: seller.public(),
            participant: participant.public(),
            amount_minor,
            currency: eur(),
            period_start_ms: T0,
            period_end_ms: t,
            reference: reference.into(),
            ledger_root,
            created_at_ms: t,
        }),
        seller,
    )
}

/// The root of `seller`'s ledger over the envelopes created strictly before `t`, at `now_ms`:
/// what a Settlement created at `t` must commit to (the rule `passalong verify` checks).
fn root_before(
    envs: &[&[u8]],
    t: u64,
    seller: &passalong_protocol::PublicKey,
    now_ms: u64,
) -> [u8; 32] {
    let before = envs
        .iter()
        .copied()
        .filter(|e| Attestation::decode(e).is_ok_and(|a| a.body.created_at_ms() < t));
    State::from_envelopes(before, now_ms).ledger(seller).root()
}

/// Settlements at the boundary of what their root covers. Direct rule, `require_purchase`:
/// - S1 (T0+10) covers receipt R1 (T0+3): B earned 1000;
/// - S2 is created in the same millisecond as receipt R2 (T0+20): R2 is not in S2's root
///   (attestations created strictly before the settlement count);
/// - C bought (receipt PC, T0+30) through a referral Y dated after S3 (T0+50 > T0+40), then
///   referred a sale R4 (T0+32). In S3's ledger PC is pending (Y is not in it), so C had no
///   counted purchase and earned nothing from R4; in the ledger of every envelope C earns 1000.
fn settlement_boundary() -> Vec<Attestation> {
    let (s, b, c, d, e) = (key(1), key(2), key(3), key(4), key(5));
    let mut p = policy(Rule::Direct, 1_000);
    p.require_purchase = true;
    let o = offer(&s, p, T0);
    let pb = receipt(&s, &o, "pb", 2_000, b.public(), None, T0 + 1);
    let rb = refer(&b, &o, None, T0 + 2);
    let r1 = receipt(&s, &o, "1", 10_000, e.public(), Some(&rb), T0 + 3);
    let mut atts = vec![o.clone(), pb, rb.clone(), r1];
    let root = |atts: &[Attestation], t: u64| {
        let envs: Vec<&[u8]> = atts.iter().map(|a| a.bytes.as_slice()).collect();
        root_before(&envs, t, &s.public(), PAYOUTS_NOW_MS)
    };
    let s1 = settle_against(&s, &b, 1_000, T0 + 10, "SEPA-0001", root(&atts, T0 + 10));
    atts.push(s1);
    atts.push(receipt(&s, &o, "2", 10_000, e.public(), Some(&rb), T0 + 20));
    let s2 = settle_against(&s, &b, 1_000, T0 + 20, "SEPA-0002", root(&atts, T0 + 20));
    atts.push(s2);
    let y = refer(&d, &o, None, T0 + 50);
    let pc = receipt(&s, &o, "pc", 2_000, c.public(), Some(&y), T0 + 30);
    let rc = refer(&c, &o, None, T0 + 31);
    let r4 = receipt(&s, &o, "4", 10_000, e.public(), Some(&rc), T0 + 32);
    atts.extend([pc, rc, r4, y]);
    let s3 = settle_against(&s, &c, 1_000, T0 + 40, "SEPA-0003", root(&atts, T0 + 40));
    atts.push(s3);
    atts
}

fn disputes_json(st: &State, seller: &passalong_protocol::PublicKey) -> Value {
    Value::Array(
        st.disputes(seller)
            .iter()
            .map(|q| {
                json!({
                    "claim": q.claim.to_hex(), "receipt": q.receipt.to_hex(), "buyer_matches": q.buyer_matches,
                    "claimed_via": opt_hex(q.claimed_via.map(|i| i.0)),
                    "recorded_via": opt_hex(q.recorded_via.map(|i| i.0)),
                })
            })
            .collect(),
    )
}

/// Every valid Settlement of `seller` among `envs`, in envelope order, with the root of the
/// ledger of the envelopes created before it and whether its own `ledger_root` is that root.
fn settlements_json(envs: &[&[u8]], seller: &passalong_protocol::PublicKey, now_ms: u64) -> Value {
    let st = State::from_envelopes(envs.iter().copied(), now_ms);
    Value::Array(
        envs.iter()
            .filter_map(|e| Attestation::decode(e).ok())
            .filter(|a| st.outcome(&a.id) == Some(Outcome::Valid))
            .filter_map(|a| match &a.body {
                Body::Settlement(x) if x.seller == *seller => {
                    let before = root_before(envs, x.created_at_ms, seller, now_ms);
                    Some(json!({
                        "id": a.id.to_hex(), "created_at_ms": x.created_at_ms,
                        "ledger_root": h(&x.ledger_root), "root_before": h(&before),
                        "reproducible": x.ledger_root == before,
                    }))
                }
                _ => None,
            })
            .collect(),
    )
}

fn ledger_json(l: &Ledger) -> Value {
    Value::Array(
        l.entries
            .iter()
            .map(|e| {
                json!({
                    "currency": e.currency.as_str(), "participant": e.participant.to_hex(),
                    "earned": e.earned.to_string(), "refunded": e.refunded.to_string(),
                    "settled": e.settled.to_string(), "owed": e.owed.to_string(),
                    "leaf": h(&e.canonical_bytes()),
                })
            })
            .collect(),
    )
}

#[test]
fn generators_match_committed_files() {
    bless_or_check("keys.json", &gen_keys());
    bless_or_check("attestations.json", &gen_attestations());
    bless_or_check("invalid.json", &gen_invalid());
    bless_or_check("signatures.json", &gen_signatures());
    bless_or_check("payouts.json", &gen_payouts());
}

// The checks below read only the files, as another implementation would.

#[test]
fn keys_derive_from_seeds() {
    for v in load("keys.json").as_array().expect("array") {
        let seed: [u8; 32] = unhex(&v["seed"]).try_into().expect("32 bytes");
        assert_eq!(
            passalong_protocol::Keypair::from_seed(seed)
                .public()
                .to_hex(),
            v["public_key"]
        );
    }
}

#[test]
fn valid_attestations_decode_verify_and_reencode() {
    for v in load("attestations.json").as_array().expect("array") {
        let env = unhex(&v["envelope"]);
        let a = validation::check(&env).unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
        assert_eq!(a.id.to_hex(), v["id"], "{}", v["name"]);
        assert_eq!(h(&a.signed_message()), v["signed_message"]);
        assert_eq!(h(&encoding::encode_body(&a.body)), v["body"]);
        assert_eq!(a.kind() as u8, v["kind_byte"].as_u64().expect("byte") as u8);
        assert_eq!(fields(&a.body), v["fields"], "{}", v["name"]);
        let seed: [u8; 32] = unhex(&v["author_seed"]).try_into().expect("32 bytes");
        let resigned = Attestation::sign(
            a.body.clone(),
            &passalong_protocol::Keypair::from_seed(seed),
        );
        assert_eq!(resigned.bytes, env, "ed25519 signing is deterministic");
    }
}

#[test]
fn invalid_attestations_are_rejected_with_their_reason() {
    let cases = load("invalid.json");
    assert!(cases.as_array().expect("array").len() >= 20);
    for v in cases.as_array().expect("array") {
        let now = v["now_ms"].as_u64().expect("now_ms");
        let mut st = State::new();
        for c in v["context"].as_array().expect("array") {
            let rep = st.insert(&unhex(c), now);
            assert_eq!(rep[0].outcome, Outcome::Valid, "{}: context", v["name"]);
        }
        let rep = st.insert(&unhex(&v["envelope"]), now);
        match &rep[0].outcome {
            Outcome::Invalid(r) => assert_eq!(r.code(), v["reason"], "{}", v["name"]),
            other => panic!("{}: expected invalid, got {other:?}", v["name"]),
        }
        let stateless = validation::check(&unhex(&v["envelope"])).is_err();
        assert_eq!(stateless, v["stage"] == "stateless", "{}", v["name"]);
    }
}

#[test]
fn strict_signature_cases() {
    for v in load("signatures.json").as_array().expect("array") {
        let pk = passalong_protocol::PublicKey(unhex(&v["public_key"]).try_into().expect("32"));
        let sig: [u8; 64] = unhex(&v["signature"]).try_into().expect("64");
        let msg = unhex(&v["message"]);
        let single = signature::verify_strict(&pk, &msg, &sig).is_ok();
        assert_eq!(single, v["valid"].as_bool().expect("bool"), "{}", v["name"]);
        let batch = signature::verify_batch(&[signature::BatchItem {
            key: &pk,
            message: &msg,
            signature: &sig,
        }]);
        assert_eq!(batch[0].is_ok(), single, "{}: batch agrees", v["name"]);
    }
}

/// All signature vectors in one batch, and each twice: the same verdicts.
#[test]
fn strict_signature_cases_in_one_batch() {
    let cases: Vec<(passalong_protocol::PublicKey, Vec<u8>, [u8; 64], bool)> =
        load("signatures.json")
            .as_array()
            .expect("array")
            .iter()
            .map(|v| {
                (
                    passalong_protocol::PublicKey(unhex(&v["public_key"]).try_into().expect("32")),
                    unhex(&v["message"]),
                    unhex(&v["signature"]).try_into().expect("64"),
                    v["valid"].as_bool().expect("bool"),
                )
            })
            .collect();
    let items: Vec<signature::BatchItem> = cases
        .iter()
        .chain(&cases)
        .map(|(key, message, signature, _)| signature::BatchItem {
            key,
            message,
            signature,
        })
        .collect();
    let got = signature::verify_batch(&items);
    for (r, (_, _, _, valid)) in got.iter().zip(cases.iter().chain(&cases)) {
        assert_eq!(r.is_ok(), *valid);
    }
}

/// The `settlements` of a payouts.json scenario, recomputed the way `passalong verify` does it:
/// one state fed the envelopes in `created_at_ms` order and read at each settlement's time,
/// after everything created strictly before it.
fn check_settlements(envs: &[&[u8]], seller: &passalong_protocol::PublicKey, now: u64, v: &Value) {
    let name = &v["name"];
    let all = State::from_envelopes(envs.iter().copied(), now);
    let mut atts: Vec<Attestation> = envs
        .iter()
        .map(|e| Attestation::decode(e).expect("decodes"))
        .collect();
    atts.sort_by_key(|a| a.body.created_at_ms());
    let settlements: Vec<(&Attestation, &passalong_protocol::Settlement)> = atts
        .iter()
        .filter(|a| all.outcome(&a.id) == Some(Outcome::Valid))
        .filter_map(|a| match &a.body {
            Body::Settlement(x) if x.seller == *seller => Some((a, x)),
            _ => None,
        })
        .collect();
    let wanted = v["settlements"].as_array().expect("settlements");
    assert_eq!(
        wanted.len(),
        settlements.len(),
        "{name}: every valid settlement is listed"
    );
    let mut later = atts.iter().peekable();
    let mut st = State::new();
    for (a, x) in settlements {
        while let Some(b) = later.next_if(|b| b.body.created_at_ms() < x.created_at_ms) {
            st.insert(&b.bytes, now);
        }
        let root = st.ledger(seller).root();
        let w = wanted
            .iter()
            .find(|w| w["id"] == a.id.to_hex())
            .unwrap_or_else(|| panic!("{name}: settlement {} is listed", a.id));
        assert_eq!(w["created_at_ms"], x.created_at_ms, "{name}");
        assert_eq!(w["ledger_root"], h(&x.ledger_root), "{name}");
        assert_eq!(w["root_before"], h(&root), "{name}: root before {}", a.id);
        assert_eq!(w["reproducible"], x.ledger_root == root, "{name}");
    }
}

#[test]
fn payout_scenarios_give_their_ledger_and_root_in_any_order() {
    for v in load("payouts.json").as_array().expect("array") {
        let envs: Vec<Vec<u8>> = v["envelopes"]
            .as_array()
            .expect("array")
            .iter()
            .map(unhex)
            .collect();
        let seller = passalong_protocol::PublicKey::from_hex(v["seller"].as_str().expect("hex"))
            .expect("key");
        let now = v["now_ms"].as_u64().expect("time");
        for order in [false, true] {
            let mut e: Vec<&[u8]> = envs.iter().map(Vec::as_slice).collect();
            if order {
                e.reverse();
            }
            let st = State::from_envelopes(e.iter().copied(), now);
            let l = st.ledger(&seller);
            assert_eq!(ledger_json(&l), v["ledger"], "{}", v["name"]);
            assert_eq!(h(&l.root()), v["root"], "{}", v["name"]);
            assert_eq!(disputes_json(&st, &seller), v["disputes"], "{}", v["name"]);
            let eq: Vec<Value> = st
                .equivocations(&seller)
                .iter()
                .map(|q| json!({"counted": q.counted.to_hex(), "other": q.other.to_hex()}))
                .collect();
            assert_eq!(Value::Array(eq), v["equivocations"], "{}", v["name"]);
            check_settlements(&e, &seller, now, v);
            for entry in &l.entries {
                let (_, proof) = l.prove(entry.currency, &entry.participant).expect("entry");
                assert!(verify_entry(&l.root(), entry, &proof));
            }
        }
    }
}
