//! A node following 10,000 markets across two peers: every market's new attestations reach
//! it, it catches up after a restart, nobody is banned. It runs alone ([`all_cores`]): it
//! keeps both cores busy for seconds, which would starve the timing-sensitive tests beside it.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use crate::support::*;
use passalong_net::{NetConfig, Network, PolicyConfig};
use passalong_protocol::{Attestation, Keypair, PublicKey, Rule};

async fn follower(
    nb: Arc<MemBackend>,
    bootstrap: Vec<passalong_net::Addr>,
    markets: &[PublicKey],
) -> Network {
    let n = Network::start([83; 32], config(bootstrap, 5), nb)
        .await
        .unwrap();
    for m in markets {
        n.follow(*m).await.unwrap();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_following_ten_thousand_markets_gets_each_and_catches_up_after_a_restart() {
    let _alone = all_cores().await;
    const MARKETS: usize = 10_000;
    let sellers: Vec<Keypair> = (0..MARKETS as u32)
        .map(|i| Keypair::from_seed(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let markets: Vec<PublicKey> = sellers.iter().map(|k| k.public()).collect();
    let offers: Vec<Attestation> = sellers
        .iter()
        .map(|k| offer(k, policy(Rule::Equal, 1_000), T0))
        .collect();
    // Two peers that hold every market; a hostile pace is not needed: they publish freely.
    let free = |bootstrap| NetConfig {
        policy: PolicyConfig {
            publish_per_sec: 1e9,
            sync_interval: Duration::from_secs(3600),
            ..PolicyConfig::default()
        },
        ..config(bootstrap, 3600)
    };
    let p1b = Arc::new(MemBackend::default());
    let p2b = Arc::new(MemBackend::default());
    for o in &offers {
        p1b.add(o);
        p2b.add(o);
    }
    let p1 = Network::start([81; 32], free(vec![]), p1b.clone())
        .await
        .unwrap();
    let p2 = Network::start([82; 32], free(vec![addr_of(&p1).await]), p2b.clone())
        .await
        .unwrap();
    let bootstrap = vec![addr_of(&p1).await, addr_of(&p2).await];
    for m in &markets {
        p1.follow(*m).await.unwrap();
        p2.follow(*m).await.unwrap();
    }
    let nb = Arc::new(MemBackend::default());
    let n = follower(nb.clone(), bootstrap.clone(), &markets).await;
    eventually("every market's offer to reach the follower", 120, || {
        nb.len() == MARKETS
    })
    .await;
    // A new attestation of each market, gossiped.
    let referrer = |i: usize| key((i % 200) as u8 + 2);
    let fresh: Vec<Attestation> = offers
        .iter()
        .enumerate()
        .map(|(i, o)| refer(&referrer(i), o, None, T0 + 10))
        .collect();
    for (a, m) in fresh.iter().zip(&markets) {
        p1b.add(a);
        p1.publish(*m, a.bytes.clone()).await.unwrap();
    }
    eventually(
        "every market's new referral to reach the follower",
        120,
        || fresh.iter().all(|a| nb.holds(&a.id)),
    )
    .await;
    let gossiped = n.info().await.unwrap().stats.gossip_accepted;
    // Restart: while it is down, each market gets one more.
    n.shutdown().await;
    let later: Vec<Attestation> = offers
        .iter()
        .enumerate()
        .map(|(i, o)| refer(&referrer(i + 1), o, None, T0 + 20))
        .collect();
    for a in &later {
        p2b.add(a);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = follower(nb.clone(), bootstrap, &markets).await;
    eventually("the follower to catch up after its restart", 120, || {
        later.iter().all(|a| nb.holds(&a.id))
    })
    .await;
    for (k, net) in [&p1, &p2, &n].into_iter().enumerate() {
        let i = net.info().await.unwrap();
        let who = [p1.peer_id(), p2.peer_id(), n.peer_id()];
        assert!(
            i.banned.is_empty(),
            "node {k} banned {:?} of {who:?}: {:?}",
            i.banned,
            i.stats
        );
        assert_eq!(i.stats.banned_total, 0);
        assert!(i.peers.iter().all(|p| p.markets <= 64), "{:?}", i.peers);
    }
    assert!(gossiped > 0, "some of the new referrals came by gossip");
}
