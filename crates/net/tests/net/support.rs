//! What the network tests share: an in-memory backend that validates with the protocol
//! crate's `State`, node configs, and waiting helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use passalong_net::{Backend, NetConfig, Network, PolicyConfig, Verdict};
use passalong_protocol::attestation::Body;
use passalong_protocol::{Attestation, Id, Outcome, PublicKey, State};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The scale test keeps both cores busy for seconds, which would starve the timing-sensitive
/// tests beside it. In one executable with them, it holds this lock for writing and each other
/// test holds it for reading, so it runs alone, as it did in an executable of its own.
static CORES: RwLock<()> = RwLock::const_new(());

/// Held for the whole of a test that can share the cores with other tests.
pub async fn shared_cores() -> RwLockReadGuard<'static, ()> {
    CORES.read().await
}

/// Held for the whole of a test that needs both cores to itself.
pub async fn all_cores() -> RwLockWriteGuard<'static, ()> {
    CORES.write().await
}

#[derive(Default)]
pub struct Mem {
    state: State,
    /// id → (created_at, market, envelope) of valid attestations.
    valid: HashMap<Id, (u64, PublicKey, Vec<u8>)>,
    envelopes: HashMap<Id, Vec<u8>>,
    /// Each market's valid `(created_at, id)`.
    by_market: HashMap<PublicKey, Vec<(u64, Id)>>,
    /// What `Backend::dependents` answers (a test sets it).
    dependents: HashMap<Id, Vec<PublicKey>>,
    /// The nodes whose digests `Backend::member_markets` follows (a test sets them).
    members: Vec<PublicKey>,
}

#[derive(Default)]
pub struct MemBackend(Mutex<Mem>);

impl MemBackend {
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().valid.len()
    }
    pub fn holds(&self, id: &Id) -> bool {
        self.0.lock().unwrap().valid.contains_key(id)
    }
    /// Whether `id` is stored at all (valid or pending).
    pub fn stores(&self, id: &Id) -> bool {
        self.0.lock().unwrap().envelopes.contains_key(id)
    }
    pub fn add(&self, a: &Attestation) {
        self.ingest(std::slice::from_ref(&a.bytes)).unwrap();
    }
    /// Makes these node keys the community's members (see `Backend::member_markets`).
    pub fn set_members(&self, members: Vec<PublicKey>) {
        self.0.lock().unwrap().members = members;
    }
    /// Says that the ledgers of `markets` depend on `id` (as a store's dependency index would).
    pub fn set_dependents(&self, id: Id, markets: Vec<PublicKey>) {
        self.0.lock().unwrap().dependents.insert(id, markets);
    }
}

pub fn market_of(m: &Mem, a: &Attestation) -> Option<PublicKey> {
    match &a.body {
        Body::Offer(o) => Some(o.seller),
        Body::Referral(r) => m.valid.get(&r.offer).map(|v| v.1),
        Body::Receipt(r) => Some(r.seller),
        _ => None,
    }
}

impl Backend for MemBackend {
    fn markets(&self) -> Vec<PublicKey> {
        self.0.lock().unwrap().state.sellers()
    }
    fn items(&self, market: &PublicKey) -> Result<Vec<(u64, Id)>, String> {
        let m = self.0.lock().unwrap();
        Ok(m.by_market.get(market).cloned().unwrap_or_default())
    }
    fn market_of(&self, id: &Id) -> Option<PublicKey> {
        self.0.lock().unwrap().valid.get(id).map(|v| v.1)
    }
    fn is_dependency_of(&self, market: &PublicKey, att: &Attestation) -> bool {
        let m = self.0.lock().unwrap();
        m.dependents
            .get(&att.id)
            .is_some_and(|ms| ms.contains(market))
    }
    fn dependents(&self, id: &Id) -> Vec<PublicKey> {
        let m = self.0.lock().unwrap();
        m.dependents.get(id).cloned().unwrap_or_default()
    }
    fn member_markets(&self, peer: &PublicKey, markets: &[PublicKey]) -> Vec<PublicKey> {
        let m = self.0.lock().unwrap();
        if m.members.contains(peer) {
            markets.to_vec()
        } else {
            Vec::new()
        }
    }
    fn envelopes(&self, ids: &[Id]) -> Vec<Vec<u8>> {
        let m = self.0.lock().unwrap();
        ids.iter()
            .filter_map(|i| m.envelopes.get(i).cloned())
            .collect()
    }
    fn ingest(&self, envelopes: &[Vec<u8>]) -> Result<Vec<Verdict>, String> {
        let mut m = self.0.lock().unwrap();
        let mut out = Vec::new();
        for e in envelopes {
            let id = Id::of_envelope(e);
            let known = m.envelopes.contains_key(&id) || m.state.outcome(&id).is_some();
            let reports = m.state.insert(e, T0 + 1_000 * DAY_MS);
            // Everything that became valid (this one and what it unblocked) is recorded.
            for r in &reports {
                if r.outcome == Outcome::Valid && !m.valid.contains_key(&r.id) {
                    let env = if r.id == id {
                        e.clone()
                    } else {
                        m.envelopes[&r.id].clone()
                    };
                    let a = Attestation::decode(&env).unwrap();
                    if let Some(mk) = market_of(&m, &a) {
                        let t = a.body.created_at_ms();
                        m.valid.insert(r.id, (t, mk, env));
                        m.by_market.entry(mk).or_default().push((t, r.id));
                    }
                }
            }
            let first = reports.first().map(|r| r.outcome.clone());
            if !matches!(first, Some(Outcome::Invalid(_))) {
                m.envelopes.insert(id, e.clone());
            }
            out.push(match first {
                _ if known => Verdict::Duplicate,
                Some(outcome) => Verdict::New {
                    market: (outcome == Outcome::Valid)
                        .then(|| m.valid.get(&id).map(|v| v.1))
                        .flatten(),
                    outcome: (&outcome).into(),
                },
                None => Verdict::Duplicate,
            });
        }
        Ok(out)
    }
}

pub fn config(bootstrap: Vec<passalong_net::Addr>, sync_secs: u64) -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        mdns: false,
        policy: PolicyConfig {
            sync_interval: Duration::from_secs(sync_secs),
            ..PolicyConfig::default()
        },
        ..NetConfig::default()
    }
}

pub async fn node(seed: u8, bootstrap: Vec<passalong_net::Addr>) -> (Network, Arc<MemBackend>) {
    node_syncing_every(seed, bootstrap, 2).await
}

pub async fn node_syncing_every(
    seed: u8,
    bootstrap: Vec<passalong_net::Addr>,
    sync_secs: u64,
) -> (Network, Arc<MemBackend>) {
    let backend = Arc::new(MemBackend::default());
    let net = Network::start([seed; 32], config(bootstrap, sync_secs), backend.clone())
        .await
        .unwrap();
    (net, backend)
}

pub async fn addr_of(net: &Network) -> passalong_net::Addr {
    let info = net.info().await.unwrap();
    format!("{}/p2p/{}", info.listen[0], info.peer_id)
        .parse()
        .unwrap()
}

pub async fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes until gossipsub has a mesh to publish to (the first tries may find no peer).
pub async fn publish(net: &Network, market: PublicKey, a: &Attestation, to: &[&MemBackend]) {
    for _ in 0..100 {
        net.publish(market, a.bytes.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if to.iter().all(|b| b.holds(&a.id)) {
            return;
        }
    }
    panic!("{} did not propagate", a.id.to_hex());
}

/// Waits until each node has sessions done and `links` peers sharing a shard with it, then a
/// few gossip heartbeats, so that the mesh is formed.
pub async fn mesh_formed(nodes: &[(&Network, usize)]) {
    for (n, links) in nodes {
        loop {
            let i = n.info().await.unwrap();
            if i.stats.syncing == 0 && i.peers.iter().filter(|p| p.markets > 0).count() >= *links {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
}
