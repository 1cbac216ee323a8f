//! Real daemons: a hosted member leaves her community node with everything. She earns a hop
//! share on K (a seller's receipt through her referral), exports her key with
//! `member export-key`, starts a node of her own with `init --import-key`, and there her
//! history arrives (her referral, the seller's ledger line for her key); a later sale through
//! her referral credits the same key, on her node and on the seller's.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

pub(crate) const PASSWORD: &str = "correct horse battery";

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn stderr_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// The daemon's API base URL.
fn api(d: &Daemon) -> String {
    let addr = std::fs::read_to_string(d.dir.join("api.addr")).expect("api.addr");
    format!("http://{}", addr.trim())
}

fn post(url: &str, bearer: Option<&str>, body: Value) -> Value {
    let mut req = ureq::post(url);
    if let Some(b) = bearer {
        req = req.set("Authorization", &format!("Bearer {b}"));
    }
    match req.send_json(body) {
        Ok(r) => r.into_json().expect("json"),
        Err(ureq::Error::Status(code, r)) => {
            panic!("{url}: {code} {}", r.into_string().unwrap_or_default())
        }
        Err(e) => panic!("{url}: {e}"),
    }
}

/// `who`'s earned amount in `seller`'s ledger as `d` computes it.
fn earned(d: &Daemon, seller: &str, who: &str) -> Option<i64> {
    line(&d.json(&["ledger", "--seller", seller]), who).map(|l| l.0)
}

#[test]
fn a_hosted_member_takes_her_key_and_history_to_her_own_node() {
    let tmp = tempfile::tempdir().unwrap();
    // K: a community node hosting members (a cheap argon2 cost for her password; the export
    // is sealed at the export cost all the same).
    let k_dir = tmp.path().join("k");
    init_cheap_community(&k_dir);
    let sync = ["--sync-interval-secs", "1"];
    let k = Daemon::start_with(&k_dir, &sync);
    let connector = k.public_key();
    let community = k.json(&["community", "create", "--name", "Riverside"]);
    let invite = k.json(&["community", "invite"]);
    join_hosted(invite["url"].as_str().unwrap(), "anna", PASSWORD);
    let k_addr = k.p2p_addr();

    // S sells, with a connector share; Anna passes the offer along from her account on K.
    let s = Daemon::start_with(
        &tmp.path().join("s"),
        &["--bootstrap", &k_addr, "--sync-interval-secs", "1"],
    );
    let seller = s.public_key();
    let offer = publish_offer_with(&s, "A lamp", &["--connector-bps", "500"]);
    let session = post(
        &format!("{}/v1/signin", api(&k)),
        None,
        json!({"login": "anna", "password": PASSWORD}),
    );
    let bearer = session["session"].as_str().unwrap();
    let anna = session["identity"].as_str().unwrap().to_string();
    let referred = post(
        &format!("{}/v1/referrals", api(&k)),
        Some(bearer),
        json!({"from": offer["link"]}),
    );
    let referral = referred["id"].as_str().unwrap().to_string();
    let her_link = referred["link"].as_str().unwrap().to_string();
    let buyer = "3".repeat(64);
    s.json(&[
        "receipt",
        "--offer",
        offer["id"].as_str().unwrap(),
        "--order",
        "A-1",
        "--amount",
        "10000",
        "--buyer",
        &buyer,
        "--via",
        &her_link,
    ]);
    // Equal rule, 10 % pool, one hop: 1,000 for her; 500 for the connector.
    assert_eq!(earned(&s, &seller, &anna), Some(1000));
    // (Her Membership is in K's market: S fetches it from K, then pays the connector.)
    wait_for("S to pay the connector", 60, || {
        earned(&s, &seller, &connector) == Some(500)
    });
    wait_for("K to hold the sale", 60, || {
        earned(&k, &seller, &anna) == Some(1000)
    });

    // She exports her key from the command line (signing in as on the dashboard).
    let key_file = tmp.path().join("anna.key");
    let out = with_password(
        Command::new(BIN),
        &k.dir,
        &[
            "member",
            "export-key",
            "--login",
            "anna",
            "--out",
            key_file.to_str().unwrap(),
            "--json",
        ],
        PASSWORD,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(exported["public_key"], anna.as_str());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(
        (file["kdf"]["m_kib"].as_u64(), file["kdf"]["t"].as_u64()),
        (Some(256 * 1024), Some(3)),
        "sealed at the export cost"
    );
    let again = with_password(
        Command::new(BIN),
        &k.dir,
        &[
            "member",
            "export-key",
            "--login",
            "anna",
            "--out",
            key_file.to_str().unwrap(),
        ],
        PASSWORD,
    );
    assert!(stderr_line(&again).contains("exists"), "never over a file");
    let wrong = with_password(
        Command::new(BIN),
        &k.dir,
        &[
            "member",
            "export-key",
            "--login",
            "anna",
            "--out",
            tmp.path().join("x.key").to_str().unwrap(),
        ],
        "not her password",
    );
    assert!(stderr_line(&wrong).contains("wrong login or password"));

    // Her own node: a data dir with another key is refused; a wrong password opens nothing.
    let other = tmp.path().join("other");
    assert!(cli_in(&other, &["init"]).status.success());
    let refused = with_password(
        Command::new(BIN),
        &other,
        &["init", "--import-key", key_file.to_str().unwrap()],
        PASSWORD,
    );
    assert!(stderr_line(&refused).contains("another identity"));
    let n_dir = tmp.path().join("n");
    let refused = with_password(
        Command::new(BIN),
        &n_dir,
        &["init", "--import-key", key_file.to_str().unwrap()],
        "not her password",
    );
    assert!(stderr_line(&refused).contains("wrong password"));
    assert!(!n_dir.join("identity.key").exists(), "nothing written");
    let out = with_password(
        Command::new(BIN),
        &n_dir,
        &["init", "--import-key", key_file.to_str().unwrap(), "--json"],
        PASSWORD,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(imported["public_key"], anna.as_str());
    assert_eq!(imported["community"], community["id"]);
    assert!(imported["relays"].as_u64().unwrap() >= 1, "{imported}");
    assert!(
        imported["markets"].as_u64().unwrap() >= 2,
        "S's and K's: {imported}"
    );
    let membership: Value =
        serde_json::from_str(&std::fs::read_to_string(n_dir.join("membership.json")).unwrap())
            .unwrap();
    assert_eq!(membership["community"], community["id"]);
    let peer = k.json(&["peers"])["peer_id"].as_str().unwrap().to_string();
    assert!(
        membership["relays"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().ends_with(&peer)),
        "{membership}"
    );

    // It runs as her, knowing only K (from membership.json), and her history arrives.
    let n = Daemon::start_with(&n_dir, &sync);
    assert_eq!(n.public_key(), anna);
    assert!(n_dir.join("imported.json.done").exists() && !n_dir.join("imported.json").exists());
    wait_for("her history on her node", 90, || {
        earned(&n, &seller, &anna) == Some(1000)
    });
    let got = ureq::get(&format!("{}/v1/attestations/{referral}", api(&n)))
        .call()
        .expect("her referral is on her node")
        .into_json::<Value>()
        .unwrap();
    assert_eq!(got["id"], referral.as_str());
    assert_eq!(earned(&n, &seller, &connector), Some(500));

    // A later sale through her referral credits the same key, on S and on her node.
    s.json(&[
        "receipt",
        "--offer",
        offer["id"].as_str().unwrap(),
        "--order",
        "A-2",
        "--amount",
        "10000",
        "--buyer",
        &buyer,
        "--via",
        &referral,
    ]);
    assert_eq!(earned(&s, &seller, &anna), Some(2000));
    wait_for("the later sale on her node", 90, || {
        earned(&n, &seller, &anna) == Some(2000)
    });
    // Her own node's referrals name her community by default.
    let mine = n.json(&["refer", &referral]);
    let mine_id = mine["id"].as_str().unwrap();
    let att = ureq::get(&format!("{}/v1/attestations/{mine_id}", api(&n)))
        .call()
        .unwrap()
        .into_json::<Value>()
        .unwrap();
    let envelope = hex::decode(att["envelope"].as_str().unwrap()).unwrap();
    match passalong_protocol::Attestation::decode(&envelope)
        .unwrap()
        .body
    {
        passalong_protocol::attestation::Body::Referral(r) => assert_eq!(
            r.community.map(|c| c.to_hex()).as_deref(),
            community["id"].as_str()
        ),
        other => panic!("{other:?}"),
    }
}
