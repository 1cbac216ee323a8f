//! `passalong verify`, offline: every Settlement in a bundle is checked against the seller's
//! ledger over everything created before it, however many there are.

use crate::build::*;
use crate::common;
use passalong_protocol::attestation::{Body, Settlement};
use passalong_protocol::{bundle, Attestation, Rule};

/// A market with 40 sales and a settlement after every fourth, each signed over the root of
/// the ledger of everything before it; `wrong`: the settlement (by index) whose root is not.
fn market(wrong: Option<usize>) -> Vec<Attestation> {
    let (seller, friend) = (key(1), key(2));
    let o = offer(&seller, policy(Rule::Equal, 2_000), T0);
    let r = refer(&friend, &o, None, T0 + 1);
    let mut atts = vec![o.clone(), r.clone()];
    let mut settled = 0;
    for i in 0..40u64 {
        let t = T0 + 10 + i * 10;
        atts.push(receipt(
            &seller,
            &o,
            &format!("order-{i}"),
            10_000,
            key(3).public(),
            Some(&r),
            t,
        ));
        if i % 4 == 3 {
            let refs: Vec<&Attestation> = atts.iter().collect();
            let mut root = state_of(&refs).ledger(&seller.public()).root();
            if wrong == Some(settled) {
                root[0] ^= 1;
            }
            atts.push(Attestation::sign(
                Body::Settlement(Settlement {
                    seller: seller.public(),
                    participant: friend.public(),
                    amount_minor: 100,
                    currency: eur(),
                    period_start_ms: T0,
                    period_end_ms: t,
                    reference: format!("SEPA-{settled}"),
                    ledger_root: root,
                    created_at_ms: t + 5,
                }),
                &seller,
            ));
            settled += 1;
        }
    }
    atts
}

fn verify(atts: &[Attestation]) -> (Option<i32>, serde_json::Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("market.bin");
    // Newest first: the check must not depend on the bundle's order.
    let mut envs: Vec<Vec<u8>> = atts.iter().map(|a| a.bytes.clone()).collect();
    envs.reverse();
    std::fs::write(&file, bundle::to_binary(&envs)).expect("write the bundle");
    let path = file.to_str().expect("a UTF-8 temp path");
    let out = common::cli_in(dir.path(), &["verify", path, "--json"]);
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).expect("JSON report"),
    )
}

#[test]
fn every_settlement_is_checked_against_the_ledger_before_it() {
    let (code, v) = verify(&market(None));
    assert_eq!(code, Some(0), "{v}");
    let s = v["settlements"].as_array().unwrap();
    assert_eq!(s.len(), 10);
    assert!(s.iter().all(|s| s["reproducible"] == true), "{v}");

    let (code, v) = verify(&market(Some(6)));
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["ok"], false);
    for s in v["settlements"].as_array().unwrap() {
        let bad = s["reference"] == "SEPA-6";
        assert_eq!(s["reproducible"], !bad, "{s}");
    }
}
