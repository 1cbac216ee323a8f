//! Real daemons talking over libp2p on loopback: what one node writes reaches the others by
//! gossip, every follower computes the same ledger root, a node killed with SIGKILL catches up
//! when it comes back, and a node that joins late catches up by reconciliation.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn gossip_and_anti_entropy_bring_every_follower_to_the_same_root() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Daemon::start_with(&tmp.path().join("s"), &["--sync-interval-secs", "2"]);
    let s_addr = s.p2p_addr();
    let mut b = Daemon::start_with(
        &tmp.path().join("b"),
        &["--bootstrap", &s_addr, "--sync-interval-secs", "2"],
    );
    let b_addr = b.p2p_addr();
    let c = Daemon::start_with(
        &tmp.path().join("c"),
        &[
            "--bootstrap",
            &b_addr,
            "--sync-interval-secs",
            "2",
            "--log",
            "passalong_net=debug,info",
        ],
    );
    let seller = s.public_key();
    for d in [&b, &c] {
        let v = d.json(&["market", "follow", &seller]);
        assert_eq!(v["following"], true);
    }
    wait_for("peers to connect", 20, || {
        c.json(&["peers"])["peers"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    });

    // The offer reaches C (two hops) by gossip or sync; C refers it by id alone.
    let offer = publish_offer(&s, "A record");
    let offer_id = offer["id"].as_str().unwrap().to_string();
    let mut rc = None;
    wait_for("the offer to reach C", 20, || {
        let out = c.cli(&["--json", "refer", &offer_id]);
        rc = out.status.success().then(|| {
            serde_json::from_slice::<Value>(&out.stdout).expect("JSON")["id"]
                .as_str()
                .map(str::to_string)
        });
        rc.is_some()
    });
    let rc_id = rc.flatten();
    // The seller learns C's referral from the network and records a sale through it.
    let via = rc_id.expect("refer prints the referral id");
    wait_for("C's referral to reach the seller", 20, || {
        s.cli(&[
            "receipt",
            "--offer",
            &offer_id,
            "--order",
            "N-1",
            "--amount",
            "10000",
            "--buyer",
            &"5a".repeat(32),
            "--via",
            &via,
        ])
        .status
        .success()
    });
    let expect = root(&s, &seller).unwrap();
    for d in [&b, &c] {
        wait_for("every follower to hold the seller's root", 20, || {
            root(d, &seller).as_deref() == Some(expect.as_str())
        });
    }
    let ledger = c.json(&["ledger", "--seller", &seller]);
    assert_eq!(ledger["root"], s.json(&["ledger"])["root"]);
    assert!(
        line(&ledger, &c.public_key()).is_some_and(|l| l.0 > 0),
        "C is paid in its own copy of the ledger: {ledger}"
    );

    // B is killed; the seller writes more; B comes back and catches up.
    b.kill9();
    for i in 0..20 {
        s.json(&[
            "receipt",
            "--offer",
            &offer_id,
            "--order",
            &format!("K-{i}"),
            "--amount",
            "10000",
            "--buyer",
            &"6b".repeat(32),
            "--via",
            &via,
        ]);
    }
    b.restart();
    let expect = root(&s, &seller).unwrap();
    for (name, d) in [("B", &b), ("C", &c)] {
        wait_for(&format!("{name} to catch up after B's crash"), 30, || {
            root(d, &seller).as_deref() == Some(expect.as_str())
        });
    }

    // A node that was never there joins and catches up by reconciliation alone.
    let d = Daemon::start_with(
        &tmp.path().join("d"),
        &["--bootstrap", &s_addr, "--sync-interval-secs", "2"],
    );
    d.json(&["market", "follow", &seller]);
    wait_for("the late joiner to catch up", 30, || {
        root(&d, &seller).as_deref() == Some(expect.as_str())
    });
    let status = d.json(&["status"]);
    assert!(
        status["network"]["sync"]["fetched"].as_u64().unwrap() >= 23,
        "{status}"
    );
    assert!(status["network"]["peers"].as_u64().unwrap() >= 1);
    // The same, as Prometheus metrics.
    let addr = std::fs::read_to_string(d.dir.join("api.addr")).unwrap();
    let metrics = ureq::get(&format!("http://{}/metrics", addr.trim()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert!(value("passalong_peers") >= 1.0);
    assert_eq!(value("passalong_markets_followed"), 1.0);
    assert!(value("passalong_sync_fetched_total") >= 23.0);
    assert!(value("passalong_ingested_total{outcome=\"valid\"}") >= 23.0);
    // libp2p's own families sit beside the node's in the same OpenMetrics exposition.
    assert!(metrics.ends_with("\n# EOF\n"), "{metrics}");
    let sum = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    assert!(
        sum("libp2p_swarm_connections_established_total{") >= 1.0,
        "{metrics}"
    );
    assert!(sum("libp2p_identify_received_total") >= 1.0, "{metrics}");
    assert!(sum("libp2p_bandwidth_bytes_total{") > 0.0, "{metrics}");
}

#[test]
fn network_flags_and_commands_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let out = cli_in(
        &dir,
        &[
            "run",
            "--api",
            "127.0.0.1:0",
            "--bootstrap",
            "not-a-multiaddr",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid bootstrap address"), "{err}");

    let d = Daemon::start(&tmp.path().join("m"));
    let out = d.cli(&["market", "follow", "zz"]);
    assert_eq!(out.status.code(), Some(1));
    let out = d.cli(&["peers", "block", "not-a-peer"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("peer id"));
    let id = d.json(&["id"]);
    assert!(
        id["peer_id"].as_str().unwrap().starts_with("12D3Koo"),
        "{id}"
    );
    assert_eq!(d.json(&["peers"])["peer_id"], id["peer_id"]);
}
