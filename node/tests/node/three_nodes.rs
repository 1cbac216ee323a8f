//! Three real daemons, separate data dirs and ports: the seller publishes an offer, B refers
//! the seller's link, C refers B's link, the seller records a receipt via C's link; the
//! seller's ledger pays C and B exactly as the rule says, and the same after a restart.

use crate::common::*;

#[test]
fn a_share_passes_through_three_nodes_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seller = Daemon::start(&tmp.path().join("seller"));
    let b = Daemon::start(&tmp.path().join("b"));
    let c = Daemon::start(&tmp.path().join("c"));
    let (kb, kc) = (b.public_key(), c.public_key());

    let offer = seller.json(&[
        "offer",
        "publish",
        "--title",
        "A record",
        "--price",
        "10000",
        "--currency",
        "EUR",
        "--pool-bps",
        "1000",
        "--rule",
        "geometric:5000",
        "--window",
        "30d",
    ]);
    let offer_id = offer["id"].as_str().unwrap().to_string();
    let link_s = offer["link"].as_str().unwrap();

    let rb = b.json(&["refer", link_s]);
    assert_eq!(rb["imported"], 1, "B imported the offer from the link");
    let rc = c.json(&["refer", rb["url"].as_str().unwrap()]); // the URL form works too
    assert_eq!(rc["imported"], 2, "C imported the offer and B's referral");

    let buyer = "5a".repeat(32);
    let r = seller.json(&[
        "receipt",
        "--offer",
        &offer_id,
        "--order",
        "A-1001",
        "--amount",
        "10000",
        "--buyer",
        &buyer,
        "--via",
        rc["link"].as_str().unwrap(),
    ]);
    assert_eq!(r["status"], "valid");
    assert_eq!(
        r["imported"], 2,
        "the seller imported B's and C's referrals"
    );

    // geometric:5000 on a pool of 10 % of 10 000: hop 1 (C) 500, hop 2 (B) 250.
    let ledger = seller.json(&["ledger"]);
    assert_eq!(line(&ledger, &kc), Some((500, 0, 0, 500)));
    assert_eq!(line(&ledger, &kb), Some((250, 0, 0, 250)));
    assert_eq!(ledger["entries"].as_array().unwrap().len(), 2);
    let root = ledger["root"].as_str().unwrap().to_string();

    // The plain-text table shows the same, in major units.
    let table = String::from_utf8(seller.cli(&["ledger"]).stdout).unwrap();
    assert!(table.contains(&kc) && table.contains("5.00 EUR"), "{table}");

    seller.stop();
    assert!(
        !seller.dir.join("api.addr").exists(),
        "a clean stop removes api.addr"
    );
    seller.restart();
    let after = seller.json(&["ledger"]);
    assert_eq!(after, ledger, "the same ledger after a restart");
    assert_eq!(after["root"], root);

    // A refund claws the shares back; a settlement to B may overpay.
    seller.json(&["refund", r["id"].as_str().unwrap()]);
    seller.json(&[
        "settle",
        "--participant",
        &kb,
        "--amount",
        "300",
        "--currency",
        "EUR",
        "--reference",
        "SEPA-1",
    ]);
    let l = seller.json(&["ledger"]);
    assert_eq!(line(&l, &kc), Some((500, 500, 0, 0)));
    assert_eq!(line(&l, &kb), Some((250, 250, 300, -300)));

    // Export, then verify offline: the same root.
    let bundle = tmp.path().join("market.json");
    let seller_key = seller.public_key();
    seller.json(&[
        "export",
        "--seller",
        &seller_key,
        "--out",
        bundle.to_str().unwrap(),
    ]);
    let root_now = l["root"].as_str().unwrap();
    let v = std::process::Command::new(BIN)
        .args([
            "verify",
            bundle.to_str().unwrap(),
            "--root",
            root_now,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let wrong = std::process::Command::new(BIN)
        .args([
            "verify",
            bundle.to_str().unwrap(),
            "--root",
            &"00".repeat(32),
        ])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
}
