//! A community node's relay: its members hold reservations on it, nobody else does.

use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, relay, tcp, yamux, Multiaddr, PeerId, Swarm};
use passalong_net::{NetConfig, Network, RelayConfig};

use crate::common::*;
use crate::support::*;

/// A peer with a relay client and nothing else: what a member's node behind NAT does with its
/// relay, without the rest of a node.
fn client() -> Swarm<relay::client::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_, relay_client| relay_client)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// Whether `swarm` gets a reservation on the relay at `relay` within 10 s (`false`: refused).
async fn reserves(swarm: &mut Swarm<relay::client::Behaviour>, relay: &Multiaddr) -> bool {
    swarm
        .listen_on(relay.clone().with(libp2p::multiaddr::Protocol::P2pCircuit))
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("the relay answered the reservation within 10 s");
        match event {
            SwarmEvent::Behaviour(relay::client::Event::ReservationReqAccepted { .. }) => {
                return true
            }
            SwarmEvent::ListenerClosed { reason: Err(_), .. }
            | SwarmEvent::ListenerError { .. } => return false,
            _ => {}
        }
    }
}

/// An address to listen on that the relay can also announce (a reservation carries the
/// relay's external addresses, and the client refuses one without any).
fn free_addr() -> Multiaddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

async fn relay_node(seed: u8, config: RelayConfig) -> (Network, Multiaddr) {
    let addr = free_addr();
    let net = relay_node_at(seed, config, &addr).await.unwrap();
    let with_id = addr.with(libp2p::multiaddr::Protocol::P2p(net.peer_id()));
    (net, with_id)
}

/// A relay node listening on `addr`.
async fn relay_node_at(
    seed: u8,
    config: RelayConfig,
    addr: &Multiaddr,
) -> Result<Network, passalong_net::NetError> {
    Network::start(
        [seed; 32],
        NetConfig {
            listen: vec![addr.clone()],
            external: vec![addr.clone()],
            relay_server: true,
            relay: config,
            ..config_for_tests()
        },
        std::sync::Arc::new(MemBackend::default()),
    )
    .await
}

fn config_for_tests() -> NetConfig {
    config(vec![], 3600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_relay_reserves_for_its_members_only() {
    let _cores = shared_cores().await;
    let (relay, addr) = relay_node(71, RelayConfig::members()).await;
    let (mut member, mut outsider) = (client(), client());
    relay.set_relay_members([*member.local_peer_id()]);
    assert!(
        !reserves(&mut outsider, &addr).await,
        "a peer that is not a member got a reservation"
    );
    assert!(
        reserves(&mut member, &addr).await,
        "a member was refused a reservation"
    );
    // Removed, she is refused at her next reservation (libp2p checks at each one).
    relay.set_relay_members(Vec::<PeerId>::new());
    let mut again = client();
    assert!(!reserves(&mut again, &addr).await);
    relay.set_relay_members([*again.local_peer_id()]);
    assert!(reserves(&mut again, &addr).await, "admitted later");
}

/// libp2p's relay asks its rate limiters in turn and each takes a token from its bucket until
/// one refuses: the members check comes first, so that non-members sharing a member's public
/// IP address (a carrier's NAT, a household) do not use up the address's bucket (60
/// reservations, then one a minute) with reservations that are refused anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_non_members_do_not_use_up_a_members_address() {
    let _cores = shared_cores().await;
    let (relay, addr) = relay_node(80, RelayConfig::members()).await;
    let mut member = client();
    relay.set_relay_members([*member.local_peer_id()]);
    // All on 127.0.0.1, as behind one NAT: three outsiders ask 30 times each (each peer's own
    // bucket holds 30), 90 reservations from the address in all.
    for _ in 0..3 {
        let mut outsider = client();
        for _ in 0..30 {
            assert!(
                !reserves(&mut outsider, &addr).await,
                "an outsider reserved"
            );
        }
    }
    assert!(
        reserves(&mut member, &addr).await,
        "the member was refused after outsiders at her address were"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_relay_reserves_for_anyone() {
    let _cores = shared_cores().await;
    let (_relay, addr) = relay_node(72, RelayConfig::default()).await;
    assert!(reserves(&mut client(), &addr).await);
}

/// A node key and its peer id map to each other (the relay admits members by peer id, the
/// backend knows them by key).
#[test]
fn node_keys_and_peer_ids_map_to_each_other() {
    let seed = [5u8; 32];
    let peer = passalong_net::peer_id_of(seed).unwrap();
    let key = passalong_net::key_of(&peer).unwrap();
    assert_eq!(passalong_net::peer_of(&key), Some(peer));
    assert_eq!(
        key,
        passalong_protocol::Keypair::from_seed(seed).public(),
        "a node's peer id embeds its signing key"
    );
    assert_eq!(
        passalong_net::key_of(&PeerId::random()),
        None,
        "not an ed25519 key"
    );
}

/// A community node follows the markets its members' digests name, and nobody else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_community_node_follows_its_members_markets() {
    let _cores = shared_cores().await;
    let (k, kb) = node_syncing_every(73, vec![], 3600).await;
    let (member, mm) = (key(74).public(), key(75).public());
    let (outsider, om) = (key(76).public(), key(77).public());
    let (b, _) = node_syncing_every(78, vec![addr_of(&k).await], 1).await;
    let (c, _) = node_syncing_every(79, vec![addr_of(&k).await], 1).await;
    kb.set_members(vec![passalong_net::key_of(&b.peer_id()).unwrap()]);
    b.follow(mm).await.unwrap();
    b.follow(member).await.unwrap();
    c.follow(om).await.unwrap();
    c.follow(outsider).await.unwrap();
    eventually(
        "the community node to follow its member's markets",
        20,
        || {
            futures::executor::block_on(k.info()).is_ok_and(|i| {
                i.markets.contains(&mm.to_hex()) && i.markets.contains(&member.to_hex())
            })
        },
    )
    .await;
    // The outsider has synced with it too by now (every second, like the member).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let markets = k.info().await.unwrap().markets;
    assert!(
        !markets.contains(&om.to_hex()) && !markets.contains(&outsider.to_hex()),
        "followed an outsider's market: {markets:?}"
    );
}

/// A member's node whose only peer is its community node (no bootstrap peer, no LAN peer) gets
/// it back when the community node restarts: it dials its preferred relays again while it is
/// connected to none of them, as it dials its bootstrap peers while alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_node_gets_its_community_node_back_after_a_restart() {
    let _cores = shared_cores().await;
    let bare = free_addr();
    let relay = relay_node_at(81, RelayConfig::members(), &bare)
        .await
        .unwrap();
    let relay_id = relay.peer_id();
    let addr = bare
        .clone()
        .with(libp2p::multiaddr::Protocol::P2p(relay_id));
    let (member, _) = node(82, vec![]).await;
    relay.set_relay_members([member.peer_id()]);
    // What the node does with `membership.json`'s relays.
    member.prefer_relays(vec![addr]).await.unwrap();
    let connected = || {
        futures::executor::block_on(member.info())
            .is_ok_and(|i| i.peers.iter().any(|p| p.peer_id == relay_id.to_string()))
    };
    eventually("the member to reach its community node", 10, connected).await;
    // Kademlia's own bootstrap, which a peer new to its routing table sets off half a second
    // later, dials the peers it knows too (and its periodic one does every 5 minutes): let it
    // be done, so that only the node's redialling can bring the community node back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.shutdown().await;
    eventually("the member to lose its community node", 10, || !connected()).await;
    // The community node comes back on the same address (its port may take a moment to be
    // free again).
    let started = std::time::Instant::now();
    let relay = loop {
        match relay_node_at(81, RelayConfig::members(), &bare).await {
            Ok(r) => break r,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the community node did not restart: {e}"),
        }
    };
    relay.set_relay_members([member.peer_id()]);
    let back = std::time::Instant::now();
    eventually(
        "the member to reach its restarted community node",
        20,
        connected,
    )
    .await;
    eprintln!("reconnected {:?} after the restart", back.elapsed());
}
