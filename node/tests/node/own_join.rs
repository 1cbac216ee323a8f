//! Real daemons: a person with her own node joins a community with her own key through the
//! same invite link as a hosted member (`passalong community join URL`). The invite works
//! once; her referrals name the community; a sale through her referral pays the connector its
//! share in the seller's ledger, and her her hop share.

use std::time::{Duration, Instant};

use passalong_protocol::attestation::Body;
use serde_json::Value;

use crate::common::*;

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn earned(d: &Daemon, seller: &str, who: &str) -> Option<i64> {
    line(&d.json(&["ledger", "--seller", seller]), who).map(|l| l.0)
}

/// The community a referral stored on `d` names.
pub(crate) fn community_of(d: &Daemon, referral: &str) -> Option<String> {
    let addr = std::fs::read_to_string(d.dir.join("api.addr")).expect("api.addr");
    let att: Value = ureq::get(&format!(
        "http://{}/v1/attestations/{referral}",
        addr.trim()
    ))
    .call()
    .expect("the referral")
    .into_json()
    .expect("json");
    let envelope = hex::decode(att["envelope"].as_str().expect("an envelope")).expect("hex");
    match passalong_protocol::Attestation::decode(&envelope)
        .expect("an attestation")
        .body
    {
        Body::Referral(r) => r.community.map(|c| c.to_hex()),
        other => panic!("not a referral: {other:?}"),
    }
}

#[test]
fn an_own_node_member_joins_through_an_invite_and_her_referrals_pay_the_connector() {
    let tmp = tempfile::tempdir().unwrap();
    let sync = ["--sync-interval-secs", "1"];
    let k = Daemon::start_with(&tmp.path().join("k"), &sync);
    let connector = k.public_key();
    let community = k.json(&["community", "create", "--name", "Riverside"]);
    let url = k.json(&["community", "invite"])["url"]
        .as_str()
        .unwrap()
        .to_string();
    let k_addr = k.p2p_addr();
    let s = Daemon::start_with(
        &tmp.path().join("s"),
        &["--bootstrap", &k_addr, "--sync-interval-secs", "1"],
    );
    let seller = s.public_key();

    // The invite's page shows a person with her own node the command to run.
    let page = ureq::get(&url).call().unwrap().into_string().unwrap();
    assert!(
        page.contains(&format!("passalong community join {url}")),
        "{page}"
    );

    // M joins with her own node's key.
    let m = Daemon::start_with(
        &tmp.path().join("m"),
        &["--bootstrap", &k_addr, "--sync-interval-secs", "1"],
    );
    let me = m.public_key();
    let joined = m.json(&["community", "join", &url]);
    assert_eq!(joined["community"], community["id"]);
    assert_eq!(joined["connector"], connector.as_str());
    let membership: Value =
        serde_json::from_str(&std::fs::read_to_string(m.dir.join("membership.json")).unwrap())
            .unwrap();
    assert_eq!(membership["community"], community["id"]);
    assert!(
        !membership["relays"].as_array().unwrap().is_empty(),
        "K's addresses, to prefer"
    );
    let members = k.json(&["community", "members"]);
    let listed = &members["members"][0];
    assert_eq!(
        (
            listed["key"].as_str(),
            listed["hosted"].as_bool(),
            listed["status"].as_str()
        ),
        (Some(me.as_str()), Some(false), Some("admitted")),
        "{members}"
    );

    // Her node may run the join again (say it stopped before writing membership.json): she
    // is answered with the Membership that admits her, nothing is signed twice.
    std::fs::remove_file(m.dir.join("membership.json")).unwrap();
    let retried = m.json(&["community", "join", &url]);
    assert_eq!(retried["membership"], joined["membership"], "{retried}");
    assert!(m.dir.join("membership.json").exists());
    assert_eq!(
        k.json(&["community", "members"])["members"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // The invite worked once: another node is refused it.
    let o = Daemon::start_with(&tmp.path().join("o"), &["--offline"]);
    let again = o.cli(&["community", "join", &url]);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("used already") && err.contains("410"), "{err}");
    assert!(!o.dir.join("membership.json").exists());

    // Her referral names the community (the default), unless she says none.
    let offer = publish_offer_with(&s, "A lamp", &["--connector-bps", "500"]);
    let referred = m.json(&["refer", offer["link"].as_str().unwrap()]);
    let referral = referred["id"].as_str().unwrap().to_string();
    assert_eq!(
        community_of(&m, &referral).as_deref(),
        community["id"].as_str()
    );
    let plain = m.json(&[
        "refer",
        offer["link"].as_str().unwrap(),
        "--community",
        "none",
    ]);
    assert_eq!(community_of(&m, plain["id"].as_str().unwrap()), None);

    // A sale through her referral: the seller's ledger pays her the hop share and the
    // connector its share (once the seller holds her Membership, from K's market).
    s.json(&[
        "receipt",
        "--offer",
        offer["id"].as_str().unwrap(),
        "--order",
        "M-1",
        "--amount",
        "10000",
        "--buyer",
        &"3".repeat(64),
        "--via",
        referred["link"].as_str().unwrap(),
    ]);
    assert_eq!(earned(&s, &seller, &me), Some(1000));
    wait_for("the seller to pay the connector", 60, || {
        earned(&s, &seller, &connector) == Some(500)
    });
    wait_for("her node to see the same", 60, || {
        earned(&m, &seller, &connector) == Some(500) && earned(&m, &seller, &me) == Some(1000)
    });
}
