//! Real daemons: a community node serves its members and nobody else. Its relay (on, and
//! members-only because it runs a community) gives an own-node member a reservation and
//! refuses a node that is not a member; a member's sync makes it follow the markets she
//! follows, so that it holds them, while an outsider's makes it follow nothing. Removed, the
//! member is refused a reservation and her new markets are not followed. The member's node
//! finds its community node through its `membership.json` alone.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, relay, tcp, yamux, Multiaddr, Swarm};
use passalong_protocol::attestation::{Body, Membership, MembershipEnd};
use passalong_protocol::{bundle, Attestation, Id, Keypair};

use crate::common::*;

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64
}

/// The seed of a data dir's node key.
fn seed(dir: &std::path::Path) -> [u8; 32] {
    let hex_seed = std::fs::read_to_string(dir.join("identity.key")).expect("identity key");
    hex::decode(hex_seed.trim())
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

/// Imports `atts` into `d` as a bundle file.
fn import(d: &Daemon, atts: &[&Attestation]) {
    let file = d.dir.join(format!("bundle-{}.json", now_ms()));
    let envelopes: Vec<Vec<u8>> = atts.iter().map(|a| a.bytes.clone()).collect();
    std::fs::write(&file, bundle::to_json(&envelopes, None)).expect("write the bundle");
    let out = d.json(&["import", file.to_str().expect("a UTF-8 path")]);
    assert_eq!(out["errors"].as_array().map_or(0, Vec::len), 0, "{out}");
}

/// The markets `d`'s network follows (`peers --json`).
fn net_markets(d: &Daemon) -> Vec<String> {
    d.json(&["peers"])["markets"]
        .as_array()
        .expect("markets")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect()
}

fn syncs_done(d: &Daemon) -> u64 {
    d.json(&["peers"])["stats"]["syncs_done"]
        .as_u64()
        .expect("a count")
}

/// Whether the relay at `relay` gives a reservation to a bare relay client holding the node
/// key `seed` (what that node asks for behind NAT); `false`: refused.
fn reserves(seed: [u8; 32], relay: &Multiaddr) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let key = passalong_net::identity_of(seed).expect("an ed25519 key");
        let mut swarm: Swarm<relay::client::Behaviour> =
            libp2p::SwarmBuilder::with_existing_identity(key)
                .with_tokio()
                .with_tcp(
                    tcp::Config::default(),
                    noise::Config::new,
                    yamux::Config::default,
                )
                .expect("tcp")
                .with_relay_client(noise::Config::new, yamux::Config::default)
                .expect("a relay client")
                .with_behaviour(|_, relay_client| relay_client)
                .expect("the behaviour")
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
                .build();
        swarm
            .listen_on(relay.clone().with(libp2p::multiaddr::Protocol::P2pCircuit))
            .expect("listen through the relay");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .expect("the relay answered the reservation within 15 s");
            match event {
                SwarmEvent::Behaviour(relay::client::Event::ReservationReqAccepted { .. }) => {
                    return true
                }
                SwarmEvent::ListenerClosed { reason: Err(_), .. }
                | SwarmEvent::ListenerError { .. } => return false,
                _ => {}
            }
        }
    })
}

#[test]
fn a_community_node_relays_for_and_follows_its_members_only() {
    let tmp = tempfile::tempdir().unwrap();
    // K runs the community, with a relay at an address it also hands out in reservations.
    let k_listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let mut k = Daemon {
        dir: tmp.path().join("k"),
        child: None,
        args: [
            "--listen",
            &k_listen,
            "--external",
            &k_listen,
            "--no-mdns",
            "--relay-server",
            "--sync-interval-secs",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        netns: None,
    };
    k.restart();
    let founded = k.json(&["community", "create", "--name", "Riverside"]);
    let community = Id::from_hex(founded["id"].as_str().expect("an id")).expect("hex");
    // Whom the relay serves is settled at start (relay_members_only is unset): once it runs a
    // community, its members only.
    k.stop();
    k.restart();
    let k_addr = k.p2p_addr();
    let relay: Multiaddr = k_addr.parse().expect("a multiaddr");
    let kk = Keypair::from_seed(seed(&k.dir));

    // M is a member with her own node, which knows K from its membership.json only (as
    // `community join` leaves it); N is a node that is not a member.
    let m_dir = tmp.path().join("m");
    assert!(cli_in(&m_dir, &["init"]).status.success());
    std::fs::write(
        m_dir.join("membership.json"),
        format!(
            "{{\"version\":1,\"community\":\"{}\",\"relays\":[\"{k_addr}\"]}}",
            community.to_hex()
        ),
    )
    .unwrap();
    let mk = Keypair::from_seed(seed(&m_dir));
    let membership = Attestation::sign(
        Body::Membership(Membership::admit(
            kk.public(),
            community,
            &mk,
            now_ms() - 1_000,
        )),
        &kk,
    );
    import(&k, &[&membership]);
    let m = Daemon::start_with(&m_dir, &["--sync-interval-secs", "1"]);
    let n = Daemon::start_with(
        &tmp.path().join("n"),
        &["--bootstrap", &k_addr, "--sync-interval-secs", "1"],
    );

    // A seller S (offline: its link carries the offer) and M's referral of its offer: M
    // follows S's market, and K, serving her, follows it and reconciles it from her.
    let s = Daemon::start_with(&tmp.path().join("s"), &["--offline"]);
    let seller = s.public_key();
    let offer = publish_offer(&s, "A bicycle");
    m.json(&["refer", offer["link"].as_str().expect("a link")]);
    wait_for("K to follow and hold its member's market", 60, || {
        root(&k, &seller).is_some_and(|r| r.starts_with("2:"))
    });
    assert!(net_markets(&k).contains(&seller));

    // N follows a market of its own; its syncs with K make K follow nothing.
    let outsiders = Keypair::from_seed([0x0b; 32]).public().to_hex();
    n.json(&["market", "follow", &outsiders]);
    let before = syncs_done(&n);
    wait_for("N to sync with K a few times", 30, || {
        syncs_done(&n) >= before + 3
    });
    assert!(
        root(&k, &outsiders).is_none() && !net_markets(&k).contains(&outsiders),
        "K followed a market of a node that is not a member"
    );

    // The relay: M's node key gets a reservation, N's is refused.
    assert!(
        reserves(seed(&m.dir), &relay),
        "the community node refused its member a reservation"
    );
    assert!(
        !reserves(seed(&n.dir), &relay),
        "the community node gave a reservation to a node that is not a member"
    );

    // K removes M: her next reservation is refused, and her new markets are not followed.
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
    wait_for("the relay to refuse the removed member", 30, || {
        !reserves(seed(&m.dir), &relay)
    });
    let later = Keypair::from_seed([0x0c; 32]).public().to_hex();
    m.json(&["market", "follow", &later]);
    let before = syncs_done(&m);
    wait_for("M to sync with K a few times", 30, || {
        syncs_done(&m) >= before + 3
    });
    assert!(
        !net_markets(&k).contains(&later),
        "K followed a new market of a removed member"
    );
    assert!(
        net_markets(&k).contains(&seller),
        "what K followed for her stays followed"
    );
}
