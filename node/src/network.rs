//! The node's side of the network: the store as the network's [`Backend`], the network as the
//! API's [`passalong_api::Network`], the task that gossips what this node's API made valid,
//! and the one that keeps a community node's members (its relay, the markets it follows for
//! them) and a member's preferred relays up to date.

use std::path::PathBuf;
use std::sync::Arc;

use passalong_api::community::CommunityNode;
use passalong_api::{now_ms, NetFuture, NetStatus, NetworkError};
use passalong_net::{Backend, Digest, NetInfo, Network, PeerId, Verdict};
use passalong_protocol::{Id, PublicKey};
use passalong_store::Store;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub mod members;
pub mod membership;

use members::Members;

/// The sled store behind the network, with the members of the community the node runs.
pub struct StoreBackend {
    /// The store.
    pub store: Arc<Store>,
    /// Whose digests make the node follow markets (kept by [`keep_community`]).
    pub members: Arc<Members>,
}

impl StoreBackend {
    /// The store, with no members until [`keep_community`] finds them.
    pub fn new(store: Arc<Store>) -> StoreBackend {
        StoreBackend {
            store,
            members: Arc::default(),
        }
    }
}

impl Backend for StoreBackend {
    fn markets(&self) -> Vec<PublicKey> {
        self.store.followed().unwrap_or_else(|e| {
            warn!(error = %e, "cannot list markets");
            Vec::new()
        })
    }

    fn items(&self, market: &PublicKey) -> Result<Vec<(u64, Id)>, String> {
        // With what its ledger depends on outside it, so that a follower gets it too.
        Ok(self
            .store
            .market_with_dependencies(market)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(t, id, _)| (t, id))
            .collect())
    }

    fn digest(&self, market: &PublicKey) -> Result<Digest, String> {
        // Kept by the store until the market changes: a session over markets that did not
        // change reads nothing.
        let s = self.store.set_summary(market).map_err(|e| e.to_string())?;
        Ok(Digest::from_xor(s.count, &s.xor))
    }

    fn market_of(&self, id: &Id) -> Option<PublicKey> {
        self.store.market_of(id).ok().flatten()
    }

    fn dependents(&self, id: &Id) -> Vec<PublicKey> {
        self.store.dependents(id).unwrap_or_default()
    }

    fn is_dependency_of(&self, market: &PublicKey, att: &passalong_protocol::Attestation) -> bool {
        self.store.is_dependency_of(market, att).unwrap_or(false)
    }

    fn member_markets(&self, peer: &PublicKey, markets: &[PublicKey]) -> Vec<PublicKey> {
        self.members.follow_for(&self.store, peer, markets)
    }

    fn declined(&self, id: &Id) -> bool {
        self.store.declined(id, now_ms())
    }

    fn envelopes(&self, ids: &[Id]) -> Vec<Vec<u8>> {
        ids.iter()
            .filter_map(|id| self.store.envelope(id).ok().flatten())
            .collect()
    }

    fn ingest(&self, envelopes: &[Vec<u8>]) -> Result<Vec<Verdict>, String> {
        let refs: Vec<&[u8]> = envelopes.iter().map(Vec::as_slice).collect();
        let acks = self
            .store
            .ingest(&refs, now_ms())
            .map_err(|e| e.to_string())?;
        Ok(acks
            .iter()
            .take(envelopes.len())
            .map(|a| {
                if a.duplicate {
                    Verdict::Duplicate
                } else if a.not_kept.is_some() {
                    Verdict::NotKept
                } else {
                    Verdict::New {
                        outcome: a.status.clone(),
                        market: a.market,
                    }
                }
            })
            .collect())
    }
}

/// The network as the API sees it: its answers in the API's own types.
pub struct ApiNetwork(pub Network);

impl ApiNetwork {
    fn parse(peer: &str) -> Result<PeerId, NetworkError> {
        peer.parse()
            .map_err(|_| NetworkError::BadPeer(peer.to_string()))
    }
}

fn failed(e: passalong_net::NetError) -> NetworkError {
    NetworkError::Failed(e.to_string())
}

impl passalong_api::Network for ApiNetwork {
    fn peer_id(&self) -> String {
        self.0.peer_id().to_string()
    }

    fn info(&self) -> NetFuture<'_, NetStatus> {
        Box::pin(async move { Ok(status(self.0.info().await.map_err(failed)?)) })
    }

    fn follow(&self, market: PublicKey) -> NetFuture<'_, ()> {
        Box::pin(async move { self.0.follow(market).await.map_err(failed) })
    }

    fn block<'a>(&'a self, peer: &'a str) -> NetFuture<'a, ()> {
        Box::pin(async move { self.0.block(Self::parse(peer)?).await.map_err(failed) })
    }

    fn unblock<'a>(&'a self, peer: &'a str) -> NetFuture<'a, ()> {
        Box::pin(async move { self.0.unblock(Self::parse(peer)?).await.map_err(failed) })
    }
}

/// The network crate's state, field for field, as the API's.
fn status(i: NetInfo) -> NetStatus {
    let t = i.stats;
    NetStatus {
        peer_id: i.peer_id,
        listen: i.listen,
        reachability: i.reachability,
        external: i.external,
        relays: i.relays,
        peers: i
            .peers
            .into_iter()
            .map(|p| passalong_api::network::PeerStatus {
                peer_id: p.peer_id,
                score: p.score,
                markets: p.markets,
                addr: p.addr,
                relayed: p.relayed,
            })
            .collect(),
        markets: i.markets,
        banned: i.banned,
        stats: passalong_api::network::NetCounters {
            gossip_received: t.gossip_received,
            gossip_accepted: t.gossip_accepted,
            gossip_rejected: t.gossip_rejected,
            gossip_ignored: t.gossip_ignored,
            published: t.published,
            syncs_done: t.syncs_done,
            syncs_failed: t.syncs_failed,
            sync_rounds: t.sync_rounds,
            sync_fetched: t.sync_fetched,
            last_sync_ms: t.last_sync_ms,
            syncing: t.syncing,
            queued: t.queued,
            banned_total: t.banned_total,
            deferred: t.deferred,
            relayed: t.relayed,
            author_budget_dropped: t.author_budget_dropped,
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
            hole_punches: t.hole_punches,
            hole_punch_failures: t.hole_punch_failures,
            dead_connections: t.dead_connections,
        },
    }
}

/// Gossips every attestation the API (or the release of held ones) made valid.
pub async fn publish_fresh(
    store: Arc<Store>,
    net: Network,
    mut fresh: mpsc::UnboundedReceiver<Vec<Id>>,
) {
    // Markets the store follows that the network was told of here (it also learns them
    // from the store at its next refresh).
    let mut told: std::collections::HashSet<PublicKey> = Default::default();
    while let Some(ids) = fresh.recv().await {
        let s = store.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for id in &ids {
                let (Some(market), Some(envelope)) = (
                    s.market_of(id).ok().flatten(),
                    s.envelope(id).ok().flatten(),
                ) else {
                    continue;
                };
                let followed = s.is_followed(&market).unwrap_or(false);
                // A community, membership or end also goes out under the name of each market
                // whose ledger depends on it, whose followers are not on the connector's shard.
                for dependent in s.dependents(id).unwrap_or_default() {
                    if dependent != market {
                        out.push((dependent, envelope.clone(), false));
                    }
                }
                out.push((market, envelope, followed));
            }
            out
        })
        .await
        .unwrap_or_default();
        for (market, envelope, followed) in found {
            // The node's first act in a market (an offer, a referral) follows it at once.
            if followed && told.insert(market) && net.follow(market).await.is_err() {
                return;
            }
            if net.publish(market, envelope).await.is_err() {
                return;
            }
        }
    }
}

/// What [`keep_community`] keeps up to date.
pub struct Upkeep {
    /// The store (the community's memberships).
    pub store: Arc<Store>,
    /// The community this node runs, if any (it may be founded while the node runs).
    pub community: Arc<CommunityNode>,
    /// The members the backend follows markets for.
    pub members: Arc<Members>,
    /// The network (its relay's members, its preferred relays).
    pub net: Network,
    /// The data dir (a member's `membership.json`).
    pub data_dir: PathBuf,
    /// The relay serves anyone because the node ran no community when it started and
    /// `relay_members_only` is unset: a community founded since is warned about.
    pub open_relay_by_default: bool,
}

/// Keeps, every [`members::REFRESH_EVERY`]: the admitted members of the community this node
/// runs, for the backend (whose digests make it follow markets) and the relay (who may
/// reserve; a removed member loses her slot at its renewal), recomputed when the connector's
/// market changes or a membership starts or ends; and, when `membership.json` is written or
/// changed, the community node's relays this node prefers and dials. Ends when the network
/// stops.
pub async fn keep_community(u: Upkeep) {
    let mut watch = members::Watch::default();
    // `None` read as "changed" at first, so that a file present at start is read.
    let mut stamp = Some(None);
    let mut warned_open = false;
    let mut tick = tokio::time::interval(members::REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let community = u.community.current().map(|c| c.id);
        if u.open_relay_by_default && community.is_some() && !warned_open {
            warned_open = true;
            warn!(community = ?community, "this node founded a community while its relay serves anyone: restart it to make the relay members-only (or set relay_members_only in config.toml)");
        }
        let (store, dir, seen) = (u.store.clone(), u.data_dir.clone(), stamp);
        let job = tokio::task::spawn_blocking(move || {
            let changed = watch.poll(&store, community, now_ms());
            let now = membership::stamp(&dir);
            let relays = (seen != Some(now)).then(|| membership::relays(&dir));
            (watch, changed, now, relays)
        });
        let (w, changed, now_stamp, relays) = match job.await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "reading the community's members failed");
                watch = members::Watch::default();
                continue;
            }
        };
        watch = w;
        stamp = Some(now_stamp);
        match changed {
            Ok(Some(admitted)) => {
                u.members.set(admitted.iter().copied());
                let peers: Vec<PeerId> =
                    admitted.iter().filter_map(passalong_net::peer_of).collect();
                info!(community = ?community, members = admitted.len(), "community members: the relay reserves for them, and their digests' markets are followed");
                u.net.set_relay_members(peers);
            }
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, community = ?community, "cannot read the community's members")
            }
        }
        if let Some(relays) = relays {
            let relays = relays.unwrap_or_else(|e| {
                warn!(error = %format!("{e:#}"), "the community node's relays are not preferred");
                Vec::new()
            });
            if !relays.is_empty() {
                let addrs: Vec<String> = relays.iter().map(|r| r.addr.to_string()).collect();
                info!(relays = ?addrs, "preferring the community node's relays");
            }
            // The network dials them, and again whenever it is connected to none of them.
            if u.net
                .prefer_relays(relays.into_iter().map(|r| r.addr).collect())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
