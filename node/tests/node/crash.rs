//! Durability: a daemon under a stream of writes is killed with SIGKILL at random moments,
//! 20 times. After every restart each attestation the API acknowledged is there, the store
//! opens, and the kept ledger equals an offline recompute of the exported market.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use passalong_protocol::attestation::{Body, Referral};
use passalong_protocol::{Attestation, Id, Keypair};
use serde_json::json;

fn api(d: &Daemon) -> (String, String) {
    let addr = std::fs::read_to_string(d.dir.join("api.addr")).expect("the daemon wrote api.addr");
    let token = std::fs::read_to_string(d.dir.join("api-token")).expect("init wrote api-token");
    (format!("http://{}", addr.trim()), token.trim().to_string())
}

#[test]
fn nothing_acknowledged_is_lost_to_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    // Checkpoints every 25 attestations, so that kills also land during them.
    let mut d = Daemon::start_with(&tmp.path().join("node"), &["--checkpoint-every", "25"]);
    let seller = d.public_key();
    let offer = d.json(&[
        "offer",
        "publish",
        "--title",
        "Vespa",
        "--price",
        "500000",
        "--currency",
        "EUR",
        "--pool-bps",
        "500",
        "--rule",
        "equal",
    ]);
    let offer_id = Id::from_hex(offer["id"].as_str().unwrap()).unwrap();
    // A referral chain by three other people, imported as signed envelopes.
    let now = passalong_api::now_ms();
    let mut parent = None;
    let mut tips = Vec::new();
    let mut envs = Vec::new();
    for seed in 2..5u8 {
        let k = Keypair::from_seed([seed; 32]);
        let r = Attestation::sign(
            Body::Referral(Referral {
                referrer: k.public(),
                offer: offer_id,
                parent,
                recipient: None,
                community: None,
                created_at_ms: now,
            }),
            &k,
        );
        parent = Some(r.id);
        tips.push(r.id.to_hex());
        envs.push(hex::encode(&r.bytes));
    }
    let (base, token) = api(&d);
    let r = ureq::post(&format!("{base}/v1/attestations"))
        .set("Authorization", &format!("Bearer {token}"))
        .send_json(json!({"envelopes": envs}))
        .unwrap();
    assert_eq!(r.status(), 200);

    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut rng = 0x9e3779b97f4a7c15u64 ^ now;
    let mut order = 0u64;
    let mut checked = 0;
    let batches = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for cycle in 0..20 {
        let (base, token) = api(&d);
        let stop = Arc::new(AtomicBool::new(false));
        // Two writers, so acknowledgements of concurrent requests share flushes.
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (base, token, acked, stop, offer, tips) =
                    (base.clone(), token.clone(), acked.clone(), stop.clone(), offer_id.to_hex(), tips.clone());
                let first = order + w * 1_000_000;
                std::thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
                    let mut n = first;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let via = &tips[(n % 3) as usize];
                        let body = if n.is_multiple_of(7) {
                            json!({"participant": "11".repeat(32), "amount_minor": 7, "currency": "EUR", "reference": format!("S-{n}")})
                        } else {
                            json!({"offer": offer, "order": format!("O-{cycle}-{n}"), "amount_minor": 1000 + n % 97, "buyer": "5a".repeat(32), "via": via})
                        };
                        let path = if n.is_multiple_of(7) { "settlements" } else { "receipts" };
                        match agent.post(&format!("{base}/v1/{path}")).set("Authorization", &format!("Bearer {token}")).send_json(body) {
                            Ok(resp) => {
                                let v: serde_json::Value = resp.into_json().unwrap();
                                acked.lock().unwrap().push(v["id"].as_str().unwrap().to_string());
                            }
                            Err(_) => return, // the daemon died under us
                        }
                    }
                })
            })
            .collect::<Vec<_>>();
        // A third writer imports batches of 64 referrals (the large-call path: stage 1 on
        // helpers, shipments to a writer thread, the merged tail).
        let batcher = {
            let (base, token, acked, stop, tips, batches) = (
                base.clone(),
                token.clone(),
                acked.clone(),
                stop.clone(),
                tips.clone(),
                batches.clone(),
            );
            let first = order * 64;
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(5))
                    .build();
                let mut n = first;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<Attestation> = (0..64u64)
                        .map(|i| {
                            let mut seed = [9u8; 32];
                            seed[..8].copy_from_slice(&(n + i).to_le_bytes());
                            let k = Keypair::from_seed(seed);
                            Attestation::sign(
                                Body::Referral(Referral {
                                    referrer: k.public(),
                                    offer: offer_id,
                                    parent: Some(
                                        Id::from_hex(&tips[((n + i) % 3) as usize]).unwrap(),
                                    ),
                                    recipient: None,
                                    community: None,
                                    created_at_ms: now,
                                }),
                                &k,
                            )
                        })
                        .collect();
                    n += 64;
                    let envs: Vec<String> = batch.iter().map(|a| hex::encode(&a.bytes)).collect();
                    match agent
                        .post(&format!("{base}/v1/attestations"))
                        .set("Authorization", &format!("Bearer {token}"))
                        .send_json(json!({"envelopes": envs}))
                    {
                        Ok(resp) => {
                            let v: serde_json::Value = resp.into_json().unwrap();
                            let acks = v["acks"].as_array().unwrap();
                            assert!(acks.len() >= 64);
                            let mut acked = acked.lock().unwrap();
                            for (ack, a) in acks.iter().zip(&batch) {
                                assert_eq!(ack["id"], a.id.to_hex());
                                assert_eq!(ack["status"], "valid", "{ack}");
                                acked.push(a.id.to_hex());
                            }
                            batches.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(30 + (rng >> 33) % 400));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers.into_iter().chain([batcher]) {
            w.join().unwrap();
        }
        order += 10_000;
        d.restart();
        // Every attestation acknowledged since the last restart is there and valid, and so
        // is every tenth one of before; none is missing from the count.
        let (base, _) = api(&d);
        let ids = acked.lock().unwrap().clone();
        let valid = d.json(&["status"])["valid_attestations"].as_u64().unwrap();
        assert!(
            valid as usize >= ids.len() + 4,
            "cycle {cycle}: {valid} valid, {} acknowledged",
            ids.len() + 4
        );
        let fresh = ids.len() - checked;
        let sample = ids[..checked].iter().step_by(10);
        checked = ids.len();
        for id in ids[checked - fresh..].iter().chain(sample) {
            let v: serde_json::Value = ureq::get(&format!("{base}/v1/attestations/{id}"))
                .call()
                .unwrap_or_else(|e| panic!("cycle {cycle}: acknowledged {id} is lost: {e}"))
                .into_json()
                .unwrap();
            assert_eq!(v["status"], "valid", "cycle {cycle}: {id}");
        }
        // The kept ledger equals an offline recompute.
        let ledger = d.json(&["ledger"]);
        let bundle = tmp.path().join(format!("export-{cycle}.bin"));
        d.json(&[
            "export",
            "--seller",
            &seller,
            "--out",
            bundle.to_str().unwrap(),
            "--format",
            "binary",
        ]);
        let v = std::process::Command::new(BIN)
            .args([
                "verify",
                bundle.to_str().unwrap(),
                "--root",
                ledger["root"].as_str().unwrap(),
                "--json",
            ])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
        assert_eq!(
            report["ledgers"][0]["root_matches"],
            true,
            "cycle {cycle}: kept ledger differs from the recompute: {}",
            String::from_utf8_lossy(&v.stdout)
        );
    }
    assert!(
        acked.lock().unwrap().len() > 100,
        "the writers got work done"
    );
    assert!(
        batches.load(Ordering::Relaxed) >= 5,
        "the batch writer got work done"
    );
    // The writes of a cycle ran through checkpoints (every 25 attestations).
    let (base, token) = api(&d);
    for n in 0..60 {
        ureq::post(&format!("{base}/v1/settlements"))
            .set("Authorization", &format!("Bearer {token}"))
            .send_json(json!({"participant": "11".repeat(32), "amount_minor": 1, "currency": "EUR", "reference": format!("C-{n}")}))
            .unwrap();
    }
    assert!(d.json(&["status"])["store_checkpoints"].as_u64().unwrap() >= 2);
}
