//! Real daemons: what a market's ledger depends on outside it travels with it. A seller, a
//! connector with a community, a member and a referrer who is not one: the connector share of
//! a sale depends on the Community and Membership attestations, which belong to the
//! connector's market, not the seller's. Every node that follows the seller's market must
//! still reach the seller's root, before and after the member is removed, and an export of
//! it must verify offline to the same root.

use std::time::{Duration, Instant};

use crate::common::*;
use passalong_protocol::attestation::{Body, Community, Membership, MembershipEnd};
use passalong_protocol::{bundle, Attestation, Keypair};

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The daemon's own key pair, from its data dir (a member signs the request to join).
fn keypair(d: &Daemon) -> Keypair {
    let hex_seed = std::fs::read_to_string(d.dir.join("identity.key")).expect("identity key");
    let seed: [u8; 32] = hex::decode(hex_seed.trim())
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    Keypair::from_seed(seed)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64
}

/// Imports `atts` into `d` as a bundle file.
fn import(d: &Daemon, atts: &[&Attestation]) {
    let file = d.dir.join(format!("bundle-{}.json", now_ms()));
    let envelopes: Vec<Vec<u8>> = atts.iter().map(|a| a.bytes.clone()).collect();
    std::fs::write(&file, bundle::to_json(&envelopes, None)).expect("write the bundle");
    let out = d.json(&["import", file.to_str().expect("a UTF-8 path")]);
    assert_eq!(out["errors"].as_array().map_or(0, Vec::len), 0, "{out}");
}

/// `(earned, …)` of `who` in `seller`'s ledger on `d`.
fn earned(d: &Daemon, seller: &str, who: &str) -> i64 {
    line(&d.json(&["ledger", "--seller", seller]), who).map_or(0, |l| l.0)
}

fn sale(seller: &Daemon, offer: &str, order: &str, via: &str) {
    let out = seller.cli(&[
        "receipt",
        "--offer",
        offer,
        "--order",
        order,
        "--amount",
        "10000",
        "--buyer",
        &"5a".repeat(32),
        "--via",
        via,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until every follower shows the seller's root, and returns it.
fn same_root(followers: &[&Daemon], seller: &str, what: &str) -> String {
    let mut roots = Vec::new();
    wait_for(what, 60, || {
        roots = followers.iter().map(|d| root(d, seller)).collect();
        roots[0].is_some() && roots.iter().all(|r| r == &roots[0])
    });
    roots[0].clone().expect("a root")
}

#[test]
fn every_follower_of_a_market_gets_the_communities_its_ledger_depends_on() {
    let tmp = tempfile::tempdir().unwrap();
    let fast = ["--sync-interval-secs", "2"];
    let s = Daemon::start_with(&tmp.path().join("seller"), &fast);
    let boot = s.p2p_addr();
    let args = ["--bootstrap", &boot, "--sync-interval-secs", "2"];
    let k = Daemon::start_with(&tmp.path().join("connector"), &args);
    let x = Daemon::start_with(&tmp.path().join("member"), &args);
    let y = Daemon::start_with(&tmp.path().join("referrer"), &args);
    let (seller, connector) = (s.public_key(), k.public_key());
    let (kk, xk) = (keypair(&k), keypair(&x));
    assert_eq!(kk.public().to_hex(), connector);

    // The connector's community admits the member (she signed the request to join).
    let t0 = now_ms() - 60_000;
    let community = Attestation::sign(
        Body::Community(Community {
            connector: kk.public(),
            name: "Rue des Lilas".into(),
            created_at_ms: t0,
        }),
        &kk,
    );
    let membership = Attestation::sign(
        Body::Membership(Membership::admit(kk.public(), community.id, &xk, t0 + 1)),
        &kk,
    );
    import(&k, &[&community, &membership]);
    // The member follows her community's market, as a member's node does.
    x.json(&["market", "follow", &connector]);
    wait_for("the membership to reach the member", 30, || {
        root(&x, &connector).is_some_and(|r| r.starts_with("2:"))
    });

    // The seller's offer pays a connector share; the referrer refers it, the member refers
    // his link naming her community, and a sale goes through hers (she is hop 1).
    let offer = publish_offer_with(&s, "A bicycle", &["--connector-bps", "500"]);
    let offer_id = offer["id"].as_str().unwrap().to_string();
    let ry = y.json(&["refer", offer["link"].as_str().unwrap()]);
    let rx = x.json(&[
        "refer",
        ry["link"].as_str().unwrap(),
        "--community",
        &community.id.to_hex(),
    ]);
    sale(&s, &offer_id, "L-1", rx["link"].as_str().unwrap());

    // The seller got the community and the membership from the market's followers, not
    // from the connector's market, which it does not follow: the connector is paid.
    wait_for("the connector share in the seller's ledger", 60, || {
        earned(&s, &seller, &connector) == 500
    });
    let followers = [&s, &x, &y];
    let before = same_root(&followers, &seller, "the followers to reach one root");
    assert_eq!(earned(&y, &seller, &connector), 500);

    // An export of the market from the referrer (who never followed the connector) holds
    // what its ledger depends on, and verifies offline to the same root.
    let file = tmp.path().join("market.json");
    y.json(&[
        "export",
        "--seller",
        &seller,
        "--out",
        file.to_str().unwrap(),
    ]);
    let root_hex = before.split(':').nth(1).unwrap();
    let out = cli_in(
        tmp.path(),
        &["verify", file.to_str().unwrap(), "--root", root_hex],
    );
    assert!(
        out.status.success(),
        "the export verifies: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The connector removes the member; her later referrals pay no connector share, and
    // the end reaches every follower of the seller's market.
    let end_at = now_ms();
    let end = Attestation::sign(
        Body::MembershipEnd(MembershipEnd {
            author: kk.public(),
            membership: membership.id,
            ends_at_ms: end_at,
            created_at_ms: end_at,
        }),
        &kk,
    );
    import(&k, &[&end]);
    std::thread::sleep(Duration::from_millis(5));
    let rx2 = x.json(&["refer", &offer_id, "--community", &community.id.to_hex()]);
    sale(&s, &offer_id, "L-2", rx2["link"].as_str().unwrap());
    // Until the end reaches a follower, it pays the connector for the second sale too.
    let mut roots = Vec::new();
    wait_for("every follower to apply the removal", 60, || {
        roots = followers.iter().map(|d| root(d, &seller)).collect();
        roots[0].as_ref().is_some_and(|r| *r != before)
            && roots.iter().all(|r| r == &roots[0])
            && followers
                .iter()
                .all(|d| earned(d, &seller, &connector) == 500)
    });
}
