//! Real swarms on loopback, in one process, over an in-memory backend that validates with the
//! protocol crate's `State`: gossip delivery and validation, catch-up by anti-entropy, parent
//! fetches, and a garbage sender scored down and dropped.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use crate::support::*;
use passalong_net::{Backend, NetConfig, Network, PolicyConfig};
use passalong_protocol::{Attestation, Rule};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_propagates_valid_attestations_along_a_line() {
    let _cores = shared_cores().await;
    let seller = key(1);
    let market = seller.public();
    // No periodic anti-entropy: whatever arrives, arrives by gossip.
    let (a, ab) = node_syncing_every(11, vec![], 3600).await;
    let (b, bb) = node_syncing_every(12, vec![addr_of(&a).await], 3600).await;
    let (c, cb) = node_syncing_every(13, vec![addr_of(&b).await], 3600).await;
    for n in [&a, &b, &c] {
        n.follow(market).await.unwrap();
    }
    // Let the catch-up that following starts finish (it must not carry what comes next),
    // and the gossip mesh form: every link subscribed, then a few heartbeats.
    mesh_formed(&[(&a, 1), (&b, 2), (&c, 1)]).await;
    let offer = offer(&seller, policy(Rule::Equal, 2_000), T0);
    ab.add(&offer);
    publish(&a, market, &offer, &[&bb, &cb]).await;
    // A referral published by C travels back to A through B.
    let r = refer(&key(2), &offer, None, T0 + 1);
    cb.add(&r);
    publish(&c, market, &r, &[&ab, &bb]).await;
    let info = b.info().await.unwrap();
    assert!(info.stats.gossip_accepted >= 2, "{:?}", info.stats);
    assert_eq!(info.stats.sync_fetched, 0, "{:?}", info.stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_catches_up_by_reconciliation_and_fetches_parents() {
    let _cores = shared_cores().await;
    let seller = key(1);
    let market = seller.public();
    let (a, ab) = node(21, vec![]).await;
    a.follow(market).await.unwrap();
    let offer = offer(&seller, policy(Rule::Geometric { r_bps: 5_000 }, 2_000), T0);
    ab.add(&offer);
    // A long chain (parents must come before children) and many siblings.
    let mut parent: Option<Attestation> = None;
    let mut all = vec![offer.id];
    for i in 0..40u64 {
        let r = refer(&key(30 + i as u8), &offer, parent.as_ref(), T0 + 1 + i);
        ab.add(&r);
        all.push(r.id);
        parent = Some(r);
    }
    let mut envs = Vec::new();
    for i in 0..2_000u64 {
        let r = refer(&key((i % 200) as u8 + 50), &offer, None, T0 + 100 + i);
        all.push(r.id);
        envs.push(r.bytes.clone());
    }
    ab.ingest(&envs).unwrap();
    assert_eq!(ab.len(), all.len());

    let (d, db) = node(22, vec![addr_of(&a).await]).await;
    d.follow(market).await.unwrap();
    eventually("the late joiner to hold everything", 30, || {
        db.len() == all.len()
    })
    .await;
    assert!(all.iter().all(|id| db.holds(id)));
    let mut info = d.info().await.unwrap();
    while info.stats.syncing > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        info = d.info().await.unwrap();
    }
    assert!(
        info.stats.sync_fetched as usize >= all.len(),
        "{:?}",
        info.stats
    );
    assert!(info.stats.sync_rounds <= 6 * 2, "{:?}", info.stats);

    // A child gossiped to a node that lacks its parent: ignored, the parent is fetched from
    // the sender, and then both count.
    let (e, eb) = node(23, vec![addr_of(&a).await]).await;
    e.follow(market).await.unwrap();
    eventually("the second joiner to catch up", 30, || {
        eb.len() == all.len()
    })
    .await;
    let p = refer(&key(7), &offer, None, T0 + 10_000);
    let child = refer(&key(8), &offer, Some(&p), T0 + 10_001);
    ab.add(&p);
    ab.add(&child);
    // Only the child is published.
    publish(&a, market, &child, &[&db, &eb]).await;
    assert!(db.holds(&p.id) && eb.holds(&p.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_sender_is_banned_and_honest_nodes_still_converge() {
    let _cores = shared_cores().await;
    let seller = key(1);
    let market = seller.public();
    let (a, ab) = node(31, vec![]).await;
    let (b, bb) = node(32, vec![addr_of(&a).await]).await;
    let (g, _gb) = node(33, vec![addr_of(&a).await]).await;
    for n in [&a, &b, &g] {
        n.follow(market).await.unwrap();
    }
    let offer = offer(&seller, policy(Rule::Equal, 2_000), T0);
    ab.add(&offer);
    publish(&a, market, &offer, &[&bb]).await;
    // G publishes garbage, then an attestation with a broken signature, many times.
    let g_id = g.peer_id().to_string();
    let mut bad = refer(&key(9), &offer, None, T0 + 5).bytes;
    let n = bad.len();
    bad[n - 1] ^= 1;
    for i in 0..200u32 {
        let mut garbage = vec![0xA5; 40];
        garbage.extend_from_slice(&i.to_le_bytes());
        g.publish(market, garbage).await.unwrap();
        let mut b2 = bad.clone();
        b2[n - 2] = i as u8;
        g.publish(market, b2).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let ia = a.info().await.unwrap();
        if ia.banned.contains(&g_id) {
            break;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ia = a.info().await.unwrap();
        if ia.banned.contains(&g_id) && !ia.peers.iter().any(|p| p.peer_id == g_id) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "G was not banned: {ia:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The honest pair still gossips.
    let r = refer(&key(3), &offer, None, T0 + 7);
    ab.add(&r);
    publish(&a, market, &r, &[&bb]).await;
    let ia = a.info().await.unwrap();
    assert!(ia.stats.gossip_rejected > 0);
    // Nothing invalid was stored.
    assert_eq!(ab.len(), 2);
    assert_eq!(bb.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_quic_too() {
    let _cores = shared_cores().await;
    let seller = key(1);
    let market = seller.public();
    let quic = |bootstrap| NetConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        bootstrap,
        mdns: false,
        policy: PolicyConfig {
            sync_interval: Duration::from_secs(2),
            ..PolicyConfig::default()
        },
        ..NetConfig::default()
    };
    let ab = Arc::new(MemBackend::default());
    let a = Network::start([41; 32], quic(vec![]), ab.clone())
        .await
        .unwrap();
    let a_addr = addr_of(&a).await;
    assert!(a_addr.to_string().contains("/quic-v1/"), "{a_addr}");
    let bb = Arc::new(MemBackend::default());
    let b = Network::start([42; 32], quic(vec![a_addr]), bb.clone())
        .await
        .unwrap();
    let offer = offer(&seller, policy(Rule::Direct, 1_000), T0);
    ab.add(&offer);
    a.follow(market).await.unwrap();
    b.follow(market).await.unwrap();
    eventually("the offer to cross QUIC", 20, || bb.holds(&offer.id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_valid_messages_is_bounded_and_its_sender_dropped() {
    let _cores = shared_cores().await;
    let seller = key(1);
    let market = seller.public();
    let ab = Arc::new(MemBackend::default());
    let limited = NetConfig {
        policy: PolicyConfig {
            messages_per_sec: 500.0, // burst 5,000
            sync_interval: Duration::from_secs(3600),
            ..PolicyConfig::default()
        },
        ..config(vec![], 3600)
    };
    let a = Network::start([51; 32], limited, ab.clone()).await.unwrap();
    // A hostile node does not pace what it publishes.
    let unpaced = NetConfig {
        policy: PolicyConfig {
            publish_per_sec: 1e9,
            sync_interval: Duration::from_secs(3600),
            ..PolicyConfig::default()
        },
        ..config(vec![addr_of(&a).await], 3600)
    };
    let fb = Arc::new(MemBackend::default());
    let f = Network::start([52; 32], unpaced, fb.clone()).await.unwrap();
    a.follow(market).await.unwrap();
    f.follow(market).await.unwrap();
    let offer = offer(&seller, policy(Rule::Equal, 1_000), T0);
    ab.add(&offer);
    fb.add(&offer);
    tokio::time::sleep(Duration::from_millis(1_500)).await; // the mesh forms

    let flood: Vec<Vec<u8>> = (0..20_000u64)
        .map(|i| refer(&key((i % 250) as u8 + 2), &offer, None, T0 + 1 + i).bytes)
        .collect();
    let watch = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut most = 0;
            for _ in 0..200 {
                let i = a.info().await.unwrap();
                most = most.max(i.stats.queued);
                if !i.banned.is_empty() {
                    return (most, i);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (most, a.info().await.unwrap())
        })
    };
    for m in flood {
        f.publish(market, m).await.unwrap();
    }
    let (most_queued, info) = watch.await.unwrap();
    assert!(most_queued <= 8_192, "queue grew to {most_queued}");
    assert_eq!(
        info.banned,
        vec![f.peer_id().to_string()],
        "{:?}",
        info.stats
    );
    assert!(ab.len() <= 5_001 + 512, "stored {}", ab.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_bulk_publish_is_paced_not_banned_and_the_rest_arrives_by_sync() {
    let _cores = shared_cores().await;
    let seller = key(1);
    let market = seller.public();
    let (a, ab) = node_syncing_every(61, vec![], 2).await;
    let (f, fb) = node_syncing_every(62, vec![addr_of(&a).await], 3600).await;
    a.follow(market).await.unwrap();
    f.follow(market).await.unwrap();
    let offer = offer(&seller, policy(Rule::Equal, 1_000), T0);
    ab.add(&offer);
    fb.add(&offer);
    tokio::time::sleep(Duration::from_millis(1_500)).await; // the mesh forms
                                                            // As `passalong import` of a large bundle does: stored, then handed to the network.
    let bulk: Vec<Attestation> = (0..30_000u64)
        .map(|i| refer(&key((i % 250) as u8 + 2), &offer, None, T0 + 1 + i))
        .collect();
    for r in &bulk {
        fb.add(r);
    }
    for r in &bulk {
        f.publish(market, r.bytes.clone()).await.unwrap();
    }
    let info = f.info().await.unwrap();
    assert!(info.stats.deferred >= 25_000, "{:?}", info.stats);
    eventually("every referral to reach the peer", 90, || {
        ab.len() == bulk.len() + 1
    })
    .await;
    let info = a.info().await.unwrap();
    assert!(info.banned.is_empty(), "{:?}", info.banned);
    assert_eq!(info.stats.banned_total, 0);
}

/// Forwards TCP connections from a local port to `to` until `frozen` is set; then it stops
/// forwarding but keeps every socket open: to both ends, the other has vanished without a FIN
/// or a reset, as when its host dies or the network between them is cut.
async fn freezable_proxy(
    to: std::net::SocketAddr,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            for (mut r, mut w) in [(ri, wo), (ro, wi)] {
                let frozen = frozen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if frozen.load(std::sync::atomic::Ordering::Relaxed) {
                            // Hold both halves open, forever.
                            let _hold = (&r, &w);
                            std::future::pending::<()>().await;
                        }
                        if w.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_to_a_vanished_peer_is_closed() {
    let _cores = shared_cores().await;
    let quick = |bootstrap| NetConfig {
        ping_interval: Duration::from_millis(500),
        ping_timeout: Duration::from_secs(2),
        ..config(bootstrap, 3600)
    };
    let b = Network::start([61; 32], quick(vec![]), Arc::new(MemBackend::default()))
        .await
        .unwrap();
    let b_info = b.info().await.unwrap();
    let b_tcp: std::net::SocketAddr = {
        let mut parts = b_info.listen[0].split('/');
        let (ip, port) = (parts.nth(2).unwrap(), parts.nth(1).unwrap());
        format!("{ip}:{port}").parse().unwrap()
    };
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = freezable_proxy(b_tcp, frozen.clone()).await;
    let via_proxy: passalong_net::Addr =
        format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", b_info.peer_id)
            .parse()
            .unwrap();
    let a = Network::start(
        [62; 32],
        quick(vec![via_proxy]),
        Arc::new(MemBackend::default()),
    )
    .await
    .unwrap();
    let proxied = |i: &passalong_net::NetInfo| {
        i.peers
            .iter()
            .any(|p| p.addr.contains(&format!("/tcp/{port}")))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !proxied(&a.info().await.unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never connected through the proxy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Pings flow, so the connection stays while the proxy forwards.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let info = a.info().await.unwrap();
    assert!(proxied(&info), "{info:?}");
    assert_eq!(info.stats.dead_connections, 0);

    frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    let frozen_at = tokio::time::Instant::now();
    let deadline = frozen_at + Duration::from_secs(30);
    loop {
        let info = a.info().await.unwrap();
        if !proxied(&info) {
            assert_eq!(info.stats.dead_connections, 1, "{:?}", info.stats);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection to the vanished peer stayed: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_from_one_host_do_not_lock_out_new_peers() {
    let _cores = shared_cores().await;
    let (a, _ab) = node(71, vec![]).await;
    let a_addr = addr_of(&a).await;
    let port = a_addr
        .iter()
        .find_map(|p| match p {
            passalong_net::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    // 100 TCP connections from another loopback address that never start a handshake.
    let mut held = Vec::new();
    for _ in 0..100 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(s) = socket.connect(([127, 0, 0, 1], port).into()).await {
            held.push(s);
        }
    }
    assert!(held.len() >= 90, "{} held", held.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A new peer from another address still gets in, well before the handshakes time out.
    let (b, _bb) = node(72, vec![a_addr]).await;
    eventually("the new peer to connect", 4, || {
        futures_lite_block(b.info()).is_some_and(|i| !i.peers.is_empty())
    })
    .await;
    drop(held);
}

/// Polls a future once it is ready; the network answers info within a few milliseconds.
fn futures_lite_block<T>(
    f: impl std::future::Future<Output = Result<T, passalong_net::NetError>>,
) -> Option<T> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_attestation_gossiped_under_another_market_is_refused_and_not_stored() {
    let _cores = shared_cores().await;
    let (yes, other) = (key(2), key(1));
    let market = yes.public();
    let (a, ab) = node_syncing_every(91, vec![], 3600).await;
    let (f, _fb) = node_syncing_every(92, vec![addr_of(&a).await], 3600).await;
    a.follow(market).await.unwrap();
    f.follow(market).await.unwrap();
    // The path works: an offer of the market followed arrives.
    let honest = offer(&yes, policy(Rule::Direct, 1_000), T0);
    publish(&f, market, &honest, &[&ab]).await;
    // Another seller's offer, framed as this market's: valid, but not of it.
    let misnamed = offer(&other, policy(Rule::Direct, 1_000), T0);
    f.publish(market, misnamed.bytes.clone()).await.unwrap();
    eventually("the misnamed offer to be rejected", 10, || {
        futures_lite_block(a.info()).is_some_and(|i| i.stats.gossip_rejected >= 1)
    })
    .await;
    assert!(
        !ab.holds(&misnamed.id),
        "stored although it is not of the market"
    );
    // A referral names its market only through its offer: one of another market's offer the
    // node holds, framed as this market's, is refused before it is stored too.
    ab.add(&misnamed);
    let rejected = futures_lite_block(a.info()).map_or(0, |i| i.stats.gossip_rejected);
    let referral = refer(&key(3), &misnamed, None, T0 + 1);
    f.publish(market, referral.bytes.clone()).await.unwrap();
    eventually("the misnamed referral to be rejected", 10, || {
        futures_lite_block(a.info()).is_some_and(|i| i.stats.gossip_rejected > rejected)
    })
    .await;
    assert!(
        !ab.stores(&referral.id),
        "stored although its offer is of another market"
    );
}

/// What a market's ledger depends on outside it travels with the market in gossip too: a
/// community published under its connector's market reaches a node that follows only a
/// market depending on it, through a node that follows both (no anti-entropy here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_goes_out_under_the_markets_that_depend_on_it() {
    let _cores = shared_cores().await;
    let connector = key(40);
    let c = connector.public();
    // A seller's market on another shard than the connector's.
    let x = (41..u8::MAX)
        .map(|n| key(n).public())
        .find(|m| passalong_net::market::shard(m) != passalong_net::market::shard(&c))
        .unwrap();
    let (a, _ab) = node_syncing_every(31, vec![], 3600).await;
    let (b, bb) = node_syncing_every(32, vec![addr_of(&a).await], 3600).await;
    let (d, db) = node_syncing_every(33, vec![addr_of(&b).await], 3600).await;
    a.follow(c).await.unwrap();
    b.follow(c).await.unwrap();
    b.follow(x).await.unwrap();
    d.follow(x).await.unwrap();
    mesh_formed(&[(&a, 1), (&b, 2), (&d, 1)]).await;
    let community = community(&connector, T0);
    // B's and D's stores would list it as a dependency of X (a referral there names it).
    bb.set_dependents(community.id, vec![x]);
    db.set_dependents(community.id, vec![x]);
    let mut arrived = false;
    for _ in 0..100 {
        a.publish(c, community.bytes.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if db.stores(&community.id) {
            arrived = true;
            break;
        }
    }
    assert!(
        arrived,
        "the community did not reach the follower of X: B {:?}, D {:?}, B holds it {}",
        b.info().await.unwrap().stats,
        d.info().await.unwrap().stats,
        bb.stores(&community.id)
    );
    let bi = b.info().await.unwrap();
    assert!(bi.stats.relayed >= 1, "{:?}", bi.stats);
    let di = d.info().await.unwrap();
    assert_eq!(di.stats.sync_fetched, 0, "by gossip: {:?}", di.stats);
    assert_eq!(di.stats.gossip_rejected, 0, "{:?}", di.stats);
}
