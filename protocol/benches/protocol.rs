//! Criterion benchmarks of the protocol core (`docs/benchmarks.md` records the figures).
//!
//! Three groups:
//!
//! - `validate`: the stateless check of one signed Receipt envelope against a bare
//!   `ed25519_dalek` strict verification of the same message (the overhead of decoding,
//!   limits and ids), our cofactored single check, and the batch path over 64 receipts (one
//!   seller; one bad among them; 64 different keys) against 64 single verifications;
//! - `ledger`: one seller's ledger recomputed from scratch over 1,000,000 receipts on referral
//!   chains of mean depth 5, six offers with different rules; and the same receipt by receipt
//!   (`State::ledger_per_receipt`, the reference), for a ratio from one run;
//! - `merkle`: the root and one inclusion proof of a 100,000-line ledger.
//!
//! Run with `cargo bench -p passalong-protocol --bench protocol`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};
use passalong_protocol::attestation::Sig64;
use passalong_protocol::{
    signature, validation, Attestation, Body, Community, Currency, Id, Keypair, Ledger,
    LedgerEntry, Membership, Offer, Policy, PublicKey, Receipt, Referral, Refund, Rule, Settlement,
    State,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;
/// 2026-01-01T00:00:00Z, as in the integration tests.
const T0: u64 = 1_767_225_600_000;

fn eur() -> Currency {
    Currency(*b"EUR")
}

fn usd() -> Currency {
    Currency(*b"USD")
}

fn policy(rule: Rule, pool_bps: u16) -> Policy {
    Policy {
        pool_bps,
        connector_bps: 0,
        rule,
        max_depth: 16,
        window_ms: 30 * DAY_MS,
        require_purchase: false,
    }
}

fn offer_body(seller: PublicKey, title: &str, currency: Currency, policy: Policy) -> Body {
    Body::Offer(Offer {
        seller,
        title: title.into(),
        content_hash: Some([0x5a; 32]),
        price_minor: 2_000,
        currency,
        policy,
        valid_from_ms: T0,
        valid_until_ms: None,
        created_at_ms: T0,
        checkout_url: None,
    })
}

fn referral_body(referrer: PublicKey, offer: Id, parent: Option<Id>, t: u64) -> Body {
    Body::Referral(Referral {
        referrer,
        offer,
        parent,
        recipient: None,
        community: None,
        created_at_ms: t,
    })
}

/// A random 32-byte key (the ledger never parses keys, so any bytes do there).
fn random_key(rng: &mut ChaCha8Rng) -> PublicKey {
    let mut k = [0u8; 32];
    rng.fill_bytes(&mut k);
    PublicKey(k)
}

/// A uniform value in `0..n` (n small, the modulo bias is irrelevant here).
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

// ---------------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------------

/// `n` seller-signed receipts of one offer, each through its own signed referral.
fn signed_receipts(n: usize) -> (Keypair, Vec<Attestation>) {
    let seller = Keypair::from_seed([1; 32]);
    let offer = Attestation::sign(
        offer_body(
            seller.public(),
            "Vespa GTS 300, 2019, 12,000 km",
            eur(),
            policy(Rule::Geometric { r_bps: 5000 }, 1_000),
        ),
        &seller,
    );
    let receipts = (0..n)
        .map(|i| {
            let referrer = Keypair::from_seed([(i % 200) as u8 + 2; 32]);
            let buyer = Keypair::from_seed([(i % 50) as u8 + 210; 32]);
            let referral = Attestation::sign(
                referral_body(referrer.public(), offer.id, None, T0 + HOUR_MS),
                &referrer,
            );
            Attestation::sign(
                Body::Receipt(Receipt {
                    seller: seller.public(),
                    offer: offer.id,
                    order: format!("WEB-2026-01-{:08}", 4_711 + i),
                    amount_minor: 189_900 + 100 * i as u64,
                    buyer: buyer.public(),
                    via: Some(referral.id),
                    created_at_ms: T0 + 3 * DAY_MS + i as u64 * MINUTE_MS,
                }),
                &seller,
            )
        })
        .collect();
    (seller, receipts)
}

/// A bare strict verification as a node without the protocol layer would do it.
fn bare_verify(key: &[u8; 32], msg: &[u8], sig: &Signature) -> bool {
    VerifyingKey::from_bytes(key)
        .and_then(|vk| vk.verify_strict(msg, sig))
        .is_ok()
}

fn bench_validate(c: &mut Criterion) {
    let (seller, receipts) = signed_receipts(64);
    let one = &receipts[0];
    let envelope = one.bytes.clone();
    let key = seller.public().0;
    let msg = one.signed_message();
    let sig = Signature::from_bytes(&one.signature);
    assert!(validation::check(&envelope).is_ok(), "the receipt is valid");
    assert!(bare_verify(&key, &msg, &sig), "the signature verifies");

    let envelopes: Vec<&[u8]> = receipts.iter().map(|a| a.bytes.as_slice()).collect();
    let messages: Vec<Vec<u8>> = receipts.iter().map(|a| a.signed_message()).collect();
    let sigs: Vec<Signature> = receipts
        .iter()
        .map(|a| Signature::from_bytes(&a.signature))
        .collect();
    assert!(
        validation::check_batch(&envelopes)
            .iter()
            .all(Result::is_ok),
        "every receipt of the batch is valid"
    );

    let mut g = c.benchmark_group("validate");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));

    g.bench_function("full_check", |b| {
        b.iter(|| validation::check(black_box(&envelope)))
    });
    g.bench_function("bare_verify_strict", |b| {
        b.iter(|| bare_verify(black_box(&key), black_box(&msg), black_box(&sig)))
    });
    g.bench_function("decode_only", |b| {
        b.iter(|| Attestation::decode(black_box(&envelope)))
    });

    g.throughput(Throughput::Elements(64));
    g.bench_function("check_batch_64", |b| {
        b.iter(|| validation::check_batch(black_box(&envelopes)))
    });
    g.bench_function("verify_strict_64", |b| {
        b.iter(|| {
            messages
                .iter()
                .zip(&sigs)
                .all(|(m, s)| bare_verify(black_box(&key), m, s))
        })
    });
    // Our strict single check (cofactored), next to dalek's `verify_strict` above.
    g.throughput(Throughput::Elements(1));
    let pk = PublicKey(key);
    g.bench_function("signature_verify_strict", |b| {
        b.iter(|| signature::verify_strict(black_box(&pk), black_box(&msg), &one.signature))
    });
    g.throughput(Throughput::Elements(64));
    // The batch, 64 receipts signed by one seller: one A term in the combined equation.
    let items: Vec<signature::BatchItem> = messages
        .iter()
        .zip(&receipts)
        .map(|(m, a)| signature::BatchItem {
            key: &pk,
            message: m,
            signature: &a.signature,
        })
        .collect();
    assert!(signature::verify_batch(&items).iter().all(Result::is_ok));
    g.bench_function("verify_batch_64", |b| {
        b.iter(|| signature::verify_batch(black_box(&items)))
    });
    // One bad signature among the 64: found by halving.
    let mut bad_sig = receipts[37].signature;
    bad_sig[40] ^= 1;
    let mut one_bad = items.clone();
    one_bad[37].signature = &bad_sig;
    assert_eq!(
        signature::verify_batch(&one_bad)
            .iter()
            .filter(|r| r.is_err())
            .count(),
        1
    );
    g.bench_function("verify_batch_64_one_bad", |b| {
        b.iter(|| signature::verify_batch(black_box(&one_bad)))
    });
    // 64 messages signed by 64 different keys: 64 A terms.
    let signers: Vec<Keypair> = (0..64u8)
        .map(|i| Keypair::from_seed([i.wrapping_add(100); 32]))
        .collect();
    let signer_keys: Vec<PublicKey> = signers.iter().map(Keypair::public).collect();
    let signer_sigs: Vec<[u8; 64]> = signers
        .iter()
        .zip(&messages)
        .map(|(k, m)| k.sign(m))
        .collect();
    let items_64_keys: Vec<signature::BatchItem> = messages
        .iter()
        .zip(&signer_keys)
        .zip(&signer_sigs)
        .map(|((m, k), s)| signature::BatchItem {
            key: k,
            message: m,
            signature: s,
        })
        .collect();
    assert!(signature::verify_batch(&items_64_keys)
        .iter()
        .all(Result::is_ok));
    g.bench_function("verify_batch_64_keys", |b| {
        b.iter(|| signature::verify_batch(black_box(&items_64_keys)))
    });
    // ed25519-dalek's batch (cofactorless, random coefficients, 2n+1 points): for comparison
    // only, it is consistent with neither dalek's `verify_strict` nor ours.
    let msg_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let vk = VerifyingKey::from_bytes(&key).expect("the seller's key is a valid point");
    let vks = vec![vk; 64];
    g.bench_function("dalek_verify_batch_64", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&msg_refs), &sigs, &vks))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// ledger
// ---------------------------------------------------------------------------------------------

const RECEIPTS: usize = 1_000_000;
const REFERRERS: usize = 4_096;
const CHAINS_PER_OFFER: usize = 2_000;
const CHAIN_DEPTH: usize = 9;

/// Inserts a body as already checked (no signature: `insert_checked` does not verify) and
/// returns its id.
fn put(state: &mut State, body: Body, now: u64) -> Id {
    let att = Attestation::assemble(body, [0u8; 64]);
    let id = att.id;
    state.insert_checked(att, now);
    id
}

/// One seller with six offers, ~108,000 referrals in chains of 9, 1,000,000 receipts through
/// a referral at a uniform depth 1..=9 (mean 5), 1% refunded, 500 settlements.
fn build_market() -> (State, PublicKey, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x9a55_a10e);
    let now = T0 + 90 * DAY_MS;
    let mut state = State::new();
    let mut inserted = 0usize;
    let seller = Keypair::from_seed([1; 32]).public();
    let referrers: Vec<PublicKey> = (0..REFERRERS).map(|_| random_key(&mut rng)).collect();

    // A community whose connector earns on the connector offer; half the referrers are members.
    let connector = random_key(&mut rng);
    let community = put(
        &mut state,
        Body::Community(Community {
            connector,
            name: "Vespa Club Bologna".into(),
            created_at_ms: T0,
        }),
        now,
    );
    inserted += 1;
    for member in referrers.iter().step_by(2) {
        put(
            &mut state,
            Body::Membership(Membership {
                connector,
                community,
                member: *member,
                member_signature: Sig64([0; 64]),
                created_at_ms: T0,
            }),
            now,
        );
        inserted += 1;
    }

    let mut with_purchase = policy(Rule::Equal, 1_000);
    with_purchase.require_purchase = true;
    let mut with_connector = policy(Rule::Geometric { r_bps: 3_000 }, 1_000);
    with_connector.connector_bps = 200;
    let mut split_proof = policy(Rule::SplitProof, 2_000);
    split_proof.max_depth = 4;
    let offers: Vec<(Id, bool)> = [
        ("direct", eur(), policy(Rule::Direct, 1_000)),
        ("equal", eur(), policy(Rule::Equal, 1_000)),
        (
            "geometric",
            eur(),
            policy(Rule::Geometric { r_bps: 5_000 }, 1_500),
        ),
        ("split-proof", eur(), split_proof),
        ("require-purchase", eur(), with_purchase),
        ("connector", usd(), with_connector),
    ]
    .into_iter()
    .map(|(title, currency, p)| {
        inserted += 1;
        (
            put(&mut state, offer_body(seller, title, currency, p), now),
            p.connector_bps > 0,
        )
    })
    .collect();

    // Per offer, CHAINS_PER_OFFER chains of CHAIN_DEPTH referrals: (id, created_at_ms).
    let mut chains: Vec<Vec<[(Id, u64); CHAIN_DEPTH]>> = Vec::with_capacity(offers.len());
    for &(offer, in_community) in &offers {
        let mut of_offer = Vec::with_capacity(CHAINS_PER_OFFER);
        for _ in 0..CHAINS_PER_OFFER {
            let base = T0 + HOUR_MS + below(&mut rng, 10 * DAY_MS);
            let mut chain = [(Id([0; 32]), 0u64); CHAIN_DEPTH];
            let mut parent = None;
            for (depth, slot) in chain.iter_mut().enumerate() {
                let t = base + depth as u64 * 10 * MINUTE_MS;
                let referrer = referrers[below(&mut rng, REFERRERS as u64) as usize];
                let id = put(
                    &mut state,
                    Body::Referral(Referral {
                        referrer,
                        offer,
                        parent,
                        recipient: None,
                        community: in_community.then_some(community),
                        created_at_ms: t,
                    }),
                    now,
                );
                inserted += 1;
                *slot = (id, t);
                parent = Some(id);
            }
            of_offer.push(chain);
        }
        chains.push(of_offer);
    }

    let mut to_refund = Vec::with_capacity(RECEIPTS / 100);
    for i in 0..RECEIPTS {
        let o = below(&mut rng, offers.len() as u64) as usize;
        let chain = &chains[o][below(&mut rng, CHAINS_PER_OFFER as u64) as usize];
        let depth = 1 + below(&mut rng, CHAIN_DEPTH as u64) as usize;
        let (via, via_t) = chain[depth - 1];
        let t = via_t + 1 + below(&mut rng, 15 * DAY_MS);
        // A quarter of the buyers are referrers (so require_purchase has purchases to find).
        let buyer = if below(&mut rng, 4) == 0 {
            referrers[below(&mut rng, REFERRERS as u64) as usize]
        } else {
            random_key(&mut rng)
        };
        let id = put(
            &mut state,
            Body::Receipt(Receipt {
                seller,
                offer: offers[o].0,
                order: format!("WEB-2026-{:08}", 1_000_000 + i),
                amount_minor: 500 + below(&mut rng, 200_000),
                buyer,
                via: Some(via),
                created_at_ms: t,
            }),
            now,
        );
        inserted += 1;
        if i % 100 == 0 {
            to_refund.push((id, t + DAY_MS));
        }
    }
    for (receipt, t) in to_refund {
        put(
            &mut state,
            Body::Refund(Refund {
                seller,
                receipt,
                created_at_ms: t,
            }),
            now,
        );
        inserted += 1;
    }
    for i in 0..500u64 {
        put(
            &mut state,
            Body::Settlement(Settlement {
                seller,
                participant: referrers[below(&mut rng, REFERRERS as u64) as usize],
                amount_minor: 1_000 + below(&mut rng, 100_000),
                currency: eur(),
                period_start_ms: T0,
                period_end_ms: T0 + 30 * DAY_MS,
                reference: format!("SEPA-2026-{i:05}"),
                ledger_root: [0; 32],
                created_at_ms: T0 + 31 * DAY_MS,
            }),
            now,
        );
        inserted += 1;
    }
    (state, seller, inserted)
}

fn bench_ledger(c: &mut Criterion) {
    let started = Instant::now();
    let (state, seller, inserted) = build_market();
    let built = started.elapsed();
    assert_eq!(
        state.valid_count(),
        inserted,
        "every generated attestation is valid"
    );
    let ledger = state.ledger(&seller);
    assert_eq!(
        ledger,
        state.ledger_per_receipt(&seller),
        "the grouped ledger is the per-receipt one"
    );
    println!(
        "ledger/build_state: {inserted} attestations inserted in {:.2} s; ledger has {} lines",
        built.as_secs_f64(),
        ledger.entries.len()
    );

    let mut g = c.benchmark_group("ledger");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("recompute_1m", |b| {
        b.iter(|| state.ledger(black_box(&seller)))
    });
    // The same ledger receipt by receipt, each walking its own chain (the reference).
    g.bench_function("recompute_1m_per_receipt", |b| {
        b.iter(|| state.ledger_per_receipt(black_box(&seller)))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// merkle
// ---------------------------------------------------------------------------------------------

fn bench_merkle(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x3e41_e000);
    let entries: Vec<LedgerEntry> = (0..100_000)
        .map(|_| {
            let earned = u128::from(below(&mut rng, 10_000_000));
            let refunded = earned / 50;
            let settled = u128::from(below(&mut rng, 5_000_000));
            LedgerEntry::new(eur(), random_key(&mut rng), earned, refunded, settled)
        })
        .collect();
    let participant = entries[54_321].participant;
    let ledger = Ledger::from_entries(Keypair::from_seed([1; 32]).public(), entries);
    let root = ledger.root();
    let (entry, proof) = ledger
        .prove(eur(), &participant)
        .expect("the participant has a line");
    assert!(
        passalong_protocol::ledger::verify_entry(&root, &entry, &proof),
        "the proof checks"
    );

    let mut g = c.benchmark_group("merkle");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("root_100k", |b| b.iter(|| black_box(&ledger).root()));
    g.bench_function("prove_100k", |b| {
        b.iter(|| black_box(&ledger).prove(eur(), black_box(&participant)))
    });
    g.finish();
}

// `criterion_group!` would define an undocumented public function; this is what it and
// `criterion_main!` expand to.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_validate(&mut c);
    bench_ledger(&mut c);
    bench_merkle(&mut c);
    c.final_summary();
}
