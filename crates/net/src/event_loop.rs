//! The single task that owns the `Swarm`: it takes [`Command`]s over a channel, handles swarm
//! events, hands storage work to blocking tasks and gets their results back as [`Internal`]s.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId};
use libp2p::metrics::{Metrics, Recorder};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError, SwarmEvent};
use libp2p::{autonat, dcutr, identify, kad, mdns, ping, relay, Multiaddr, PeerId, Swarm};
use passalong_protocol::limits::MAX_ENVELOPE_BYTES;
use passalong_protocol::{validation, Attestation, Outcome, PublicKey};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::backend::{Backend, Verdict};
use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::config::NetConfig;
use crate::policy::{Input, Links, Output, Policy, Reachability, Transport};
use crate::sync::{Requester, Responder, SyncReport};
use crate::wire::{Request, Response, Traffic};
use crate::{market, scoring, NetError, NetInfo, NetStats, PeerInfo};

/// Gossip messages stored together in one backend call (one flush).
const INGEST_BATCH: usize = 512;
/// Bytes of gossip waiting for validation beyond which more is ignored: memory stays bounded
/// under a flood (messages longer than an envelope are refused before they are queued).
pub const MAX_QUEUED_BYTES: usize = 4 << 20;
/// Parent fetches for pending gossip running at once.
const MAX_PARENT_FETCHES: usize = 16;
/// Most publications held until a peer on their shard connects; beyond it anti-entropy
/// alone carries them.
const MAX_HELD: usize = 10_000;
/// Addresses kept for one preferred relay (a community node hands out 8 of its own); the
/// rest are left out.
const MAX_PREFERRED_ADDRS: usize = 8;

/// What the handle asks of the loop.
pub(crate) enum Command {
    Follow(PublicKey),
    Publish {
        market: PublicKey,
        envelope: Vec<u8>,
    },
    Dial(Multiaddr),
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, NetError>>,
    },
    Block(PeerId),
    Unblock(PeerId),
    Sync(PeerId),
    /// Each address ends with its relay's `/p2p/` peer id.
    PreferRelays(Vec<Multiaddr>),
    Info(oneshot::Sender<NetInfo>),
    Shutdown,
}

/// Results of work done off the loop.
pub(crate) enum Internal {
    Ingested {
        batch: Vec<Incoming>,
        result: Result<Vec<Checked>, String>,
    },
    Respond {
        peer: PeerId,
        channel: ResponseChannel<Response>,
        response: Response,
        offence: bool,
    },
    SyncDone {
        peer: PeerId,
        result: Result<SyncReport, NetError>,
    },
    ParentsDone {
        peer: PeerId,
        result: Result<SyncReport, NetError>,
    },
    /// Markets to follow: read from storage, or a member's (see `Backend::member_markets`).
    Markets(Vec<PublicKey>),
}

/// An open connection.
struct Conn {
    id: ConnectionId,
    /// The remote address (for a relayed inbound one, just `/p2p/<peer>`).
    addr: Multiaddr,
    relayed: bool,
    /// This node opened it.
    dialled: bool,
}

/// Where a relay candidate was dialled and where it listens: the policy picks the relays and
/// the transports, these turn its choices into addresses.
struct RelayAddrs {
    /// The address this node dialled it at, not through a relay (circuits are built on it).
    dialled: Multiaddr,
    /// The addresses it listens on, from identify.
    listen: Vec<Multiaddr>,
}

/// A gossip message waiting for validation.
pub(crate) struct Incoming {
    id: MessageId,
    source: PeerId,
    /// The market the message names.
    market: PublicKey,
    /// The envelope.
    data: Vec<u8>,
    /// This node follows the market: the message is stored, not only checked.
    followed: bool,
}

/// What checking one queued message found.
pub(crate) struct Checked {
    verdict: Verdict,
    /// Its author, once it is known to be valid.
    author: Option<PublicKey>,
    /// Other followed markets whose ledgers depend on it (a community, membership or end
    /// that came under its connector's name): it goes out under theirs too.
    bridge: Vec<PublicKey>,
}

pub(crate) struct EventLoop {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) requester: Requester,
    pub(crate) internal_tx: mpsc::UnboundedSender<Internal>,
    pub(crate) internal_rx: mpsc::UnboundedReceiver<Internal>,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) responder: Responder,
    pub(crate) config: NetConfig,
    pub(crate) traffic: Arc<Traffic>,
    pub(crate) listen_addrs: Vec<Multiaddr>,
    /// libp2p's own metrics, fed every swarm and protocol event.
    metrics: Metrics,
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, NetError>>>,
    queue: Vec<Incoming>,
    ingesting: bool,
    /// Bytes held in `queue`.
    queued_bytes: usize,
    /// Who is admitted, penalised, banned; when to reconcile what; which shards to hold.
    policy: Policy<PeerId>,
    /// The policy's randomness (peer choices), seeded from the OS.
    rng: ChaCha8Rng,
    parent_fetches: usize,
    /// Publications held until a peer on their shard connects (the policy's
    /// [`Output::Hold`]), at most [`MAX_HELD`].
    held: HashMap<market::Shard, Vec<(PublicKey, Vec<u8>)>>,
    stats: NetStats,
    last_kad_bootstrap: Option<Instant>,
    /// Open connections per peer.
    connections: HashMap<PeerId, Vec<Conn>>,
    /// The addresses of the connected peers that may relay for this node (the policy's relay
    /// candidates): one entry per connected relay, removed when it disconnects.
    relay_addrs: HashMap<PeerId, RelayAddrs>,
    /// Circuit listeners: relay → listener (the reservation is renewed by libp2p). One per
    /// reservation the policy asked for, so at most `policy::WANTED_RELAYS`.
    reservations: HashMap<PeerId, ListenerId>,
    /// Where the preferred relays are dialled (the policy's [`Input::PreferredRelays`]): at
    /// most `policy::MAX_PREFERRED_RELAYS` of them, [`MAX_PREFERRED_ADDRS`] addresses each.
    preferred_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    external: Vec<Multiaddr>,
}

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        requester: Requester,
        backend: Arc<dyn Backend>,
        config: NetConfig,
        traffic: Arc<Traffic>,
        listen_addrs: Vec<Multiaddr>,
        metrics: Metrics,
    ) -> EventLoop {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let policy = Policy::new(config.policy.clone(), Instant::now());
        EventLoop {
            swarm,
            commands,
            requester,
            internal_tx,
            internal_rx,
            responder: Responder::new(backend.clone()),
            backend,
            config,
            traffic,
            listen_addrs,
            metrics,
            pending_requests: HashMap::new(),
            queue: Vec::new(),
            ingesting: false,
            queued_bytes: 0,
            policy,
            rng: ChaCha8Rng::from_entropy(),
            parent_fetches: 0,
            held: HashMap::new(),
            stats: NetStats::default(),
            last_kad_bootstrap: None,
            connections: HashMap::new(),
            relay_addrs: HashMap::new(),
            reservations: HashMap::new(),
            preferred_addrs: HashMap::new(),
            external: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        for addr in self.config.bootstrap.clone() {
            self.dial(addr);
        }
        self.refresh_markets();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(c) => self.on_command(c),
                },
                Some(internal) = self.internal_rx.recv() => self.on_internal(internal),
                _ = tick.tick() => {
                    ticks += 1;
                    self.on_tick(ticks);
                }
            }
        }
        debug!("network event loop stopped");
    }

    fn dial(&mut self, addr: Multiaddr) {
        if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
        }
        if let Err(e) = self.swarm.dial(addr.clone()) {
            warn!(%addr, error = %e, "cannot dial");
        }
    }

    /// Runs the policy on `input` and carries out what it says; returns its answers to the
    /// caller (serve or refuse, publish or defer, ignore a message).
    fn policy(&mut self, input: Input<PeerId>) -> Vec<Output<PeerId>> {
        let mut out = Vec::new();
        self.policy
            .handle(input, Instant::now(), &mut self.rng, &mut out);
        for o in &out {
            match o {
                Output::SetAppScore(peer, score) => {
                    debug!(%peer, score, "peer penalised");
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .set_application_score(peer, *score as f64);
                }
                Output::Ban(peer, why) => {
                    warn!(%peer, why, "peer banned and disconnected");
                    self.stats.banned_total += 1;
                    self.swarm.behaviour_mut().blocked.block_peer(*peer);
                    let _ = self.swarm.disconnect_peer_id(*peer);
                }
                Output::Unban(peer) => {
                    self.swarm.behaviour_mut().blocked.unblock_peer(*peer);
                }
                Output::StartSync(peer, markets) => self.start_sync(*peer, markets.clone()),
                Output::Subscribe(shard) => {
                    let topic = market::topic(*shard);
                    let gs = &mut self.swarm.behaviour_mut().gossipsub;
                    if let Err(e) = gs.subscribe(&topic) {
                        warn!(shard, error = ?e, "cannot subscribe");
                    }
                    let _ = gs.set_topic_params(topic, scoring::topic_params());
                    let key = kad::RecordKey::new(&market::provider_key(*shard));
                    if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                        debug!(shard, error = %e, "cannot announce the shard");
                    }
                }
                Output::FindPeers(shard) => {
                    let key = kad::RecordKey::new(&market::provider_key(*shard));
                    self.swarm.behaviour_mut().kad.get_providers(key);
                }
                Output::Announce(m) => {
                    let key = kad::RecordKey::new(&market::follower_key(m));
                    if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                        debug!(market = %m.to_hex(), error = %e, "cannot announce the market");
                    }
                }
                Output::FindHolders(m) => {
                    let key = kad::RecordKey::new(&market::follower_key(m));
                    self.swarm.behaviour_mut().kad.get_providers(key);
                }
                Output::Disconnect(peer) => {
                    debug!(%peer, "making room for a peer that holds what is followed here");
                    let _ = self.swarm.disconnect_peer_id(*peer);
                }
                Output::RedialBootstrap => {
                    for addr in self.config.bootstrap.clone() {
                        self.dial(addr);
                    }
                }
                Output::RedialPreferred(relays) => {
                    for relay in relays {
                        debug!(%relay, "none of the preferred relays is connected: dialling them again");
                        self.dial_preferred(*relay);
                    }
                }
                Output::DialMore(n) => self.dial_more(*n),
                Output::Reserve(relay) => self.reserve(*relay),
                Output::Unreserve(relay) => {
                    if let Some(l) = self.reservations.remove(relay) {
                        debug!(%relay, "public: dropping the relay reservation");
                        self.swarm.remove_listener(l);
                    }
                }
                Output::DialTransport { relay, transport } => {
                    self.dial_transport(*relay, *transport)
                }
                Output::RetryHolePunch(peer) => self.retry_hole_punch(*peer),
                Output::PublishHeld(shard) => {
                    for (market, envelope) in self.held.remove(shard).unwrap_or_default() {
                        self.publish(market, &envelope);
                    }
                }
                Output::IgnoreGossip
                | Output::Serve
                | Output::Refuse
                | Output::Publish
                | Output::Defer
                | Output::Hold => {}
            }
        }
        out
    }

    /// Publishes an attestation that did not come by gossip here (sync brought it, or it
    /// came under another market's name) on `market`'s shard, if the policy says so.
    fn relay(&mut self, market: PublicKey, age_ms: u64, envelope: &[u8]) {
        if self
            .policy(Input::Relay { market, age_ms })
            .contains(&Output::Publish)
        {
            self.stats.relayed += 1;
            self.publish(market, envelope);
        }
    }

    /// Publishes an attestation of `market` on its shard's topic.
    fn publish(&mut self, market: PublicKey, envelope: &[u8]) {
        let data = market::frame(&market, envelope);
        let len = data.len() as u64;
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(market::topic(market::shard(&market)), data)
        {
            Ok(_) => {
                self.stats.published += 1;
                self.traffic.bytes_out.fetch_add(len, Ordering::Relaxed);
            }
            // No peer yet, or already seen: anti-entropy will carry it.
            Err(e) => debug!(error = %e, "not published"),
        }
    }

    fn refresh_markets(&self) {
        let backend = self.backend.clone();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Internal::Markets(backend.markets()));
        });
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Follow(m) => {
                // A market followed on request is caught up at once from a few peers.
                self.policy(Input::Follow {
                    markets: vec![m],
                    urgent: true,
                });
            }
            Command::Publish { market, envelope } => {
                let out = self.policy(Input::Publish(market));
                if out.contains(&Output::Hold) {
                    // No peer on its shard: published when one comes.
                    let held: usize = self.held.values().map(Vec::len).sum();
                    if held < MAX_HELD {
                        let shard = market::shard(&market);
                        self.held.entry(shard).or_default().push((market, envelope));
                    }
                    return;
                }
                if !out.contains(&Output::Publish) {
                    // Over this node's publishing pace: anti-entropy will carry it.
                    self.stats.deferred += 1;
                    return;
                }
                self.publish(market, &envelope);
            }
            Command::Dial(addr) => self.dial(addr),
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending_requests.insert(id, reply);
            }
            Command::Block(peer) => {
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            Command::Unblock(peer) => {
                self.policy(Input::Unban(peer));
            }
            Command::Sync(peer) => {
                self.policy(Input::SyncNow(peer));
            }
            Command::PreferRelays(addrs) => self.prefer_relays(addrs),
            Command::Info(reply) => {
                let _ = reply.send(self.info());
            }
            Command::Shutdown => {} // handled by `run`
        }
    }

    fn info(&self) -> NetInfo {
        let gs = &self.swarm.behaviour().gossipsub;
        let topics: HashMap<PeerId, usize> = gs.all_peers().map(|(p, t)| (*p, t.len())).collect();
        let mut peers: Vec<PeerInfo> = self
            .swarm
            .connected_peers()
            .map(|p| {
                let conns = self.connections.get(p).map_or(&[][..], Vec::as_slice);
                let direct = conns.iter().find(|c| !c.relayed);
                let addr = direct
                    .or(conns.first())
                    .map_or(String::new(), |c| c.addr.to_string());
                PeerInfo {
                    peer_id: p.to_string(),
                    score: gs.peer_score(p),
                    markets: topics.get(p).copied().unwrap_or(0),
                    addr,
                    relayed: direct.is_none() && !conns.is_empty(),
                }
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let markets: Vec<String> = self.policy.followed().iter().map(|m| m.to_hex()).collect();
        let mut stats = self.stats.clone();
        stats.bytes_in = self.traffic.bytes_in.load(Ordering::Relaxed);
        stats.bytes_out = self.traffic.bytes_out.load(Ordering::Relaxed);
        stats.syncing = self.policy.syncing();
        stats.queued = self.queue.len();
        let mut banned: Vec<String> = self.policy.banned().map(|p| p.to_string()).collect();
        banned.sort();
        let mut relays: Vec<String> = self.policy.relays().map(|p| p.to_string()).collect();
        relays.sort();
        NetInfo {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
            reachability: match self.policy.reachability() {
                Reachability::Public => "public",
                Reachability::Private => "private",
                Reachability::Unknown => "unknown",
            }
            .to_string(),
            external: self.external.iter().map(|a| a.to_string()).collect(),
            relays,
            peers,
            markets,
            banned,
            stats,
        }
    }

    fn on_tick(&mut self, ticks: u64) {
        let now = Instant::now();
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let scores: Vec<(PeerId, f64)> = connected
            .iter()
            .filter_map(|p| Some((*p, self.swarm.behaviour().gossipsub.peer_score(p)?)))
            .collect();
        for (p, s) in scores {
            self.policy(Input::GossipScore(p, s));
        }
        let count = connected.len();
        self.policy(Input::Tick { connected });
        if ticks.is_multiple_of(5) {
            self.refresh_markets();
        }
        // Short of peers, look for more often: a peer behind NAT becomes reachable only once
        // its relay address has spread.
        let every = if count < self.config.policy.target_peers {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(60)
        };
        let bootstrap_due = self
            .last_kad_bootstrap
            .is_none_or(|t| now.duration_since(t) > every);
        if count > 0 && bootstrap_due {
            self.last_kad_bootstrap = Some(now);
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    /// Prefers the relays at `addrs` (each ending with its `/p2p/` peer id), in their order,
    /// and dials them: the policy asks them for a reservation first and has them dialled again
    /// while none is connected.
    fn prefer_relays(&mut self, addrs: Vec<Multiaddr>) {
        let mut relays: Vec<PeerId> = Vec::new();
        let mut by_relay: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for addr in addrs {
            let Some(Protocol::P2p(relay)) = addr.iter().last() else {
                warn!(%addr, "a preferred relay's address has no /p2p/ peer id: left out");
                continue;
            };
            if !relays.contains(&relay) {
                if relays.len() >= crate::policy::MAX_PREFERRED_RELAYS {
                    continue;
                }
                relays.push(relay);
            }
            let known = by_relay.entry(relay).or_default();
            if known.len() < MAX_PREFERRED_ADDRS && !known.contains(&addr) {
                known.push(addr);
            }
        }
        self.preferred_addrs = by_relay;
        self.policy(Input::PreferredRelays(relays.clone()));
        for relay in relays {
            if !self.policy.is_banned(&relay) {
                self.dial_preferred(relay);
            }
        }
    }

    /// Dials a preferred relay at its addresses, unless it is connected or being dialled.
    fn dial_preferred(&mut self, relay: PeerId) {
        let addrs = self
            .preferred_addrs
            .get(&relay)
            .cloned()
            .unwrap_or_default();
        if addrs.is_empty() {
            return;
        }
        for addr in &addrs {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&relay, addr.clone());
        }
        let opts = DialOpts::peer_id(relay)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addrs)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%relay, error = %e, "cannot dial the preferred relay");
        }
    }

    fn dial_more(&mut self, want: usize) {
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        let local = *self.swarm.local_peer_id();
        let mut candidates = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for e in bucket.iter() {
                let p = *e.node.key.preimage();
                if p != local && !connected.contains(&p) {
                    candidates.push(p);
                }
            }
        }
        for p in candidates.into_iter().take(want) {
            if !self.policy.is_banned(&p) {
                let _ = self.swarm.dial(p);
            }
        }
    }

    /// Asks `relay` for a reservation (the policy chose it): listens on a circuit built on the
    /// address this node dialled it at. Renewals are libp2p's.
    fn reserve(&mut self, relay: PeerId) {
        let Some(addr) = self.relay_addrs.get(&relay).map(|a| a.dialled.clone()) else {
            self.policy(Input::ReservationClosed(relay));
            return;
        };
        let mut circuit: Multiaddr = addr
            .iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        circuit.push(Protocol::P2p(relay));
        circuit.push(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                debug!(%relay, %circuit, "asking the relay for a reservation");
                self.reservations.insert(relay, id);
            }
            Err(e) => {
                warn!(%circuit, error = %e, "cannot listen through relay");
                self.policy(Input::ReservationClosed(relay));
            }
        }
    }

    /// Connects to `relay` again over `kind` (the policy chose it), at the address of that
    /// transport it listens on at the IP this node dialled it at: identify then reports this
    /// node's mapping for that transport to DCUtR.
    fn dial_transport(&mut self, relay: PeerId, kind: Transport) {
        let Some(a) = self.relay_addrs.get(&relay) else {
            return;
        };
        let ip = a.dialled.iter().next();
        let Some(addr) = a
            .listen
            .iter()
            .find(|l| transport(l) == Some(kind) && l.iter().next() == ip)
            .cloned()
        else {
            return;
        };
        debug!(%relay, %addr, "connecting to the relay over a second transport");
        let opts = DialOpts::peer_id(relay)
            .condition(PeerCondition::Always)
            .addresses(vec![addr])
            .build();
        let _ = self.swarm.dial(opts);
    }

    /// Reconnects to `peer` through the relays this node reached it by (the policy says it is
    /// still reached only that way, and when): the new relayed connection runs DCUtR again.
    fn retry_hole_punch(&mut self, peer: PeerId) {
        let redial: Vec<Multiaddr> = self
            .connections
            .get(&peer)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|c| c.dialled && c.relayed)
            .map(|c| c.addr.clone())
            .collect();
        if redial.is_empty() {
            return;
        }
        info!(%peer, "retrying hole punching: reconnecting through the relay");
        let _ = self.swarm.disconnect_peer_id(peer);
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::Always)
            .addresses(redial)
            .build();
        let _ = self.swarm.dial(opts);
    }

    /// How this node is connected with `peer` now, for the policy.
    fn links(&self, peer: &PeerId) -> Links {
        let conns = self.connections.get(peer).map_or(&[][..], Vec::as_slice);
        let mut direct_over: Vec<Transport> = conns
            .iter()
            .filter(|c| !c.relayed)
            .filter_map(|c| transport(&c.addr))
            .collect();
        direct_over.sort();
        direct_over.dedup();
        Links {
            direct: conns.iter().any(|c| !c.relayed),
            direct_over,
            relayed_dialled: conns.iter().any(|c| c.relayed && c.dialled),
        }
    }

    fn start_sync(&mut self, peer: PeerId, markets: Vec<PublicKey>) {
        let req = self.requester.clone();
        let backend = self.backend.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let result = crate::sync::session(req, backend, peer, markets).await;
            let _ = tx.send(Internal::SyncDone { peer, result });
        });
    }

    fn penalise(&mut self, peer: PeerId, why: &'static str) {
        self.policy(Input::Offence(peer, why));
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::Ingested { batch, result } => {
                self.ingesting = false;
                self.on_ingested(batch, result);
                self.maybe_ingest();
            }
            Internal::Respond {
                peer,
                channel,
                response,
                offence,
            } => {
                if offence {
                    self.penalise(peer, "malformed sync request");
                }
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            Internal::SyncDone { peer, result } => {
                let (fetched, held) = result
                    .as_ref()
                    .map_or((0, Vec::new()), |r| (r.fetched, r.held.clone()));
                self.policy(Input::SyncEnded {
                    peer,
                    fetched,
                    held,
                });
                match result {
                    Ok(mut r) => {
                        // What gossip did not bring here may not have reached this node's
                        // peers either: relayed while it is news, a pull becomes a push.
                        let now = now_ms();
                        for (market, at, envelope) in std::mem::take(&mut r.news) {
                            self.relay(market, now.saturating_sub(at), &envelope);
                        }
                        self.stats.syncs_done += 1;
                        self.stats.sync_fetched += r.fetched as u64;
                        self.stats.sync_rounds += r.rounds as u64;
                        self.stats.last_sync_ms = now_ms();
                        if r.fetched > 0 {
                            info!(%peer, fetched = r.fetched, rounds = r.rounds, markets = r.markets, "caught up");
                        }
                        for _ in 0..r.offences {
                            self.penalise(peer, "bad answers to sync");
                        }
                    }
                    Err(e) => {
                        self.stats.syncs_failed += 1;
                        debug!(%peer, error = %e, "sync failed");
                    }
                }
            }
            Internal::ParentsDone { peer, result } => {
                self.parent_fetches = self.parent_fetches.saturating_sub(1);
                if let Ok(r) = result {
                    self.stats.sync_fetched += r.fetched as u64;
                    for _ in 0..r.offences {
                        self.penalise(peer, "bad answers to a parent fetch");
                    }
                }
            }
            Internal::Markets(markets) => {
                self.policy(Input::Follow {
                    markets,
                    urgent: false,
                });
            }
        }
    }

    fn on_ingested(&mut self, batch: Vec<Incoming>, result: Result<Vec<Checked>, String>) {
        let checked = match result {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "storing gossip failed");
                batch
                    .iter()
                    .map(|_| Checked {
                        verdict: Verdict::Duplicate,
                        author: None,
                        bridge: Vec::new(),
                    })
                    .collect()
            }
        };
        let mut wanted: HashMap<PeerId, Vec<passalong_protocol::Id>> = HashMap::new();
        for (m, c) in batch.into_iter().zip(checked) {
            let acceptance = match c.verdict {
                Verdict::New {
                    outcome: Outcome::Valid,
                    market,
                } if market == Some(m.market) => {
                    let over = c.author.is_some_and(|author| {
                        self.policy(Input::Authored {
                            peer: m.source,
                            author,
                        })
                        .contains(&Output::IgnoreGossip)
                    });
                    if over {
                        // Over its author's budget: kept (if followed), not forwarded.
                        self.stats.gossip_ignored += 1;
                        self.stats.author_budget_dropped += 1;
                        MessageAcceptance::Ignore
                    } else {
                        self.stats.gossip_accepted += 1;
                        MessageAcceptance::Accept
                    }
                }
                Verdict::New {
                    outcome: Outcome::Valid,
                    ..
                } => {
                    // Valid, but on another market's topic: stored, not forwarded.
                    self.stats.gossip_rejected += 1;
                    MessageAcceptance::Reject
                }
                Verdict::New {
                    outcome: Outcome::Invalid(r),
                    ..
                } => {
                    debug!(peer = %m.source, reason = r.code, "invalid gossip");
                    self.stats.gossip_rejected += 1;
                    MessageAcceptance::Reject
                }
                Verdict::New {
                    outcome: Outcome::Pending { missing },
                    ..
                } => {
                    self.stats.gossip_ignored += 1;
                    wanted.entry(m.source).or_default().extend(missing);
                    MessageAcceptance::Ignore
                }
                Verdict::Duplicate
                | Verdict::NotKept
                | Verdict::New {
                    outcome: Outcome::Held { .. },
                    ..
                } => {
                    self.stats.gossip_ignored += 1;
                    MessageAcceptance::Ignore
                }
            };
            let accepted = acceptance == MessageAcceptance::Accept;
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&m.id, &m.source, acceptance);
            // Followers of the markets that depend on it are not on its connector's shard.
            for market in c.bridge.iter().filter(|_| accepted) {
                self.relay(*market, 0, &m.data);
            }
        }
        for (peer, ids) in wanted {
            if self.parent_fetches >= MAX_PARENT_FETCHES {
                break;
            }
            self.parent_fetches += 1;
            let req = self.requester.clone();
            let backend = self.backend.clone();
            let tx = self.internal_tx.clone();
            tokio::spawn(async move {
                let mut report = SyncReport::default();
                let result = crate::sync::fetch(&req, &backend, peer, ids, None, &mut report)
                    .await
                    .map(|()| report);
                let _ = tx.send(Internal::ParentsDone { peer, result });
            });
        }
    }

    fn maybe_ingest(&mut self) {
        if self.ingesting || self.queue.is_empty() {
            return;
        }
        let n = self.queue.len().min(INGEST_BATCH);
        let batch: Vec<Incoming> = self.queue.drain(..n).collect();
        self.queued_bytes -= batch.iter().map(|m| m.data.len()).sum::<usize>();
        self.ingesting = true;
        let backend = self.backend.clone();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = check(&*backend, &batch);
            let _ = tx.send(Internal::Ingested { batch, result });
        });
    }

    fn on_gossip(&mut self, source: PeerId, id: MessageId, message: gossipsub::Message) {
        self.stats.gossip_received += 1;
        self.traffic
            .bytes_in
            .fetch_add(message.data.len() as u64, Ordering::Relaxed);
        let admitted = self.admit(source, &message);
        match admitted {
            Ok((market, envelope)) => {
                self.queued_bytes += envelope.len();
                self.queue.push(Incoming {
                    id,
                    source,
                    market,
                    followed: self.policy.follows(&market),
                    data: envelope,
                });
                self.maybe_ingest();
            }
            Err(acceptance) => {
                if acceptance == MessageAcceptance::Reject {
                    self.stats.gossip_rejected += 1;
                } else {
                    self.stats.gossip_ignored += 1;
                }
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
            }
        }
    }

    /// What can be decided about a message before it is checked: its shape, its sender's
    /// rate, room in the queue. Rejected shapes cost the sender through gossipsub's score.
    fn admit(
        &mut self,
        source: PeerId,
        message: &gossipsub::Message,
    ) -> Result<(PublicKey, Vec<u8>), MessageAcceptance> {
        let shard = market::shard_of(&message.topic).ok_or(MessageAcceptance::Reject)?;
        let (m, envelope) = market::unframe(&message.data).ok_or(MessageAcceptance::Reject)?;
        if market::shard(&m) != shard || envelope.len() > MAX_ENVELOPE_BYTES {
            return Err(MessageAcceptance::Reject);
        }
        if self
            .policy(Input::Gossip(source))
            .contains(&Output::IgnoreGossip)
            || self.queued_bytes + envelope.len() > MAX_QUEUED_BYTES
        {
            return Err(MessageAcceptance::Ignore);
        }
        Ok((m, envelope.to_vec()))
    }

    fn on_request(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        if !self.policy(Input::Request(peer)).contains(&Output::Serve) {
            return;
        }
        let responder = self.responder.clone();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let follow = responder.member_markets(&peer, &request);
            if !follow.is_empty() {
                let _ = tx.send(Internal::Markets(follow));
            }
            let (response, offence) = responder.answer(request);
            let _ = tx.send(Internal::Respond {
                peer,
                channel,
                response,
                offence,
            });
        });
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                for a in &addresses {
                    self.listen_addrs.retain(|l| l != a);
                }
                let relay = self
                    .reservations
                    .iter()
                    .find(|(_, l)| **l == listener_id)
                    .map(|(p, _)| *p);
                if let Some(relay) = relay {
                    debug!(%relay, ?reason, "relay reservation closed");
                    self.reservations.remove(&relay);
                    self.policy(Input::ReservationClosed(relay));
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "external address confirmed");
                if !self.external.contains(&address) {
                    self.external.push(address);
                }
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                self.external.retain(|a| a != &address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                debug!(peer = %peer_id, %addr, "connected");
                self.connections.entry(peer_id).or_default().push(Conn {
                    id: connection_id,
                    relayed: endpoint.is_relayed(),
                    dialled: endpoint.is_dialer(),
                    addr,
                });
                if num_established.get() == 1 {
                    self.policy(Input::Connected(peer_id));
                }
                self.policy(Input::Links(peer_id, self.links(&peer_id)));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                cause,
            } => {
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), ?cause, "connection closed");
                if let Some(c) = self.connections.get_mut(&peer_id) {
                    c.retain(|c| c.id != connection_id);
                }
                if num_established == 0 {
                    debug!(peer = %peer_id, "disconnected");
                    self.connections.remove(&peer_id);
                    self.relay_addrs.remove(&peer_id);
                    self.policy(Input::Disconnected(peer_id));
                } else {
                    let links = self.links(&peer_id);
                    if !endpoint.is_relayed() && !links.direct {
                        // A punched connection that died (a NAT mapping gone, a network
                        // change): the policy has it punched again through the relay.
                        info!(peer = %peer_id, "direct connection lost: only the relay is left");
                    }
                    self.policy(Input::Links(peer_id, links));
                }
            }
            // A connection a behaviour refuses once it is established (e.g. over the per-peer
            // limit) is closed at once: the other side sees it closed by this one.
            SwarmEvent::IncomingConnectionError {
                peer_id: Some(peer),
                send_back_addr,
                error: ListenError::Denied { cause },
                ..
            } => debug!(%peer, addr = %send_back_addr, ?cause, "connection denied"),
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error: DialError::Denied { cause },
                ..
            } => debug!(%peer, ?cause, "connection denied"),
            SwarmEvent::Behaviour(e) => self.on_behaviour_event(e),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        // The protocols libp2p's metrics know (AutoNAT, mDNS, the relay client and the sync
        // protocol have no recorder there; the swarm's own events count their connections).
        match &event {
            BehaviourEvent::Gossipsub(e) => self.metrics.record(e),
            BehaviourEvent::Identify(e) => self.metrics.record(e),
            BehaviourEvent::Kad(e) => self.metrics.record(e),
            BehaviourEvent::Ping(e) => self.metrics.record(e),
            BehaviourEvent::RelayServer(e) => self.metrics.record(e),
            BehaviourEvent::Dcutr(e) => self.metrics.record(e),
            _ => {}
        }
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic }) => {
                if let Some(s) = market::shard_of(&topic) {
                    self.policy(Input::PeerSubscribed(peer_id, s));
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Unsubscribed { peer_id, topic }) => {
                if let Some(s) = market::shard_of(&topic) {
                    self.policy(Input::PeerUnsubscribed(peer_id, s));
                }
            }
            // Peers on a shard this node is short of: dial a few.
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result:
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })),
                ..
            }) => {
                let local = *self.swarm.local_peer_id();
                let mut fresh: Vec<PeerId> = providers
                    .into_iter()
                    .filter(|p| {
                        *p != local && !self.swarm.is_connected(p) && !self.policy.is_banned(p)
                    })
                    .collect();
                fresh.sort();
                for p in fresh.into_iter().take(crate::policy::MIN_SHARD_PEERS) {
                    let _ = self.swarm.dial(p);
                }
            }
            BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(reply) = self.pending_requests.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            }) => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request(error.to_string())));
                }
            }
            BehaviourEvent::Sync(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                // A request we could not decode is garbage (timeouts and closed streams are not).
                if matches!(&error, request_response::InboundFailure::Io(e)
                    if e.kind() == std::io::ErrorKind::InvalidData)
                {
                    self.penalise(peer, "undecodable sync request");
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if info.protocol_version == crate::behaviour::IDENTIFY_PROTOCOL =>
            {
                // A peer's loopback addresses are its own machine's, useful only to a peer on
                // that machine.
                let local = self
                    .connections
                    .get(&peer_id)
                    .is_some_and(|c| c.iter().any(|c| is_loopback(&c.addr)));
                for addr in info.listen_addrs.clone() {
                    if local || !is_loopback(&addr) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
                // An address this node dialled it at, not through a relay.
                let dialled = self.connections.get(&peer_id).and_then(|c| {
                    c.iter()
                        .find(|c| c.dialled && !c.relayed)
                        .map(|c| c.addr.clone())
                });
                match dialled {
                    Some(dialled) if info.protocols.contains(&relay::HOP_PROTOCOL_NAME) => {
                        let ip = dialled.iter().next();
                        let mut listens_over: Vec<Transport> = info
                            .listen_addrs
                            .iter()
                            .filter(|a| a.iter().next() == ip)
                            .filter_map(transport)
                            .collect();
                        listens_over.sort();
                        listens_over.dedup();
                        let listen = info.listen_addrs.clone();
                        self.relay_addrs
                            .insert(peer_id, RelayAddrs { dialled, listen });
                        self.policy(Input::RelayCandidate {
                            peer: peer_id,
                            listens_over,
                        });
                    }
                    _ => {
                        if self.relay_addrs.remove(&peer_id).is_some() {
                            self.policy(Input::RelayGone(peer_id));
                        }
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                    if !self.swarm.is_connected(&peer) && !self.policy.is_banned(&peer) {
                        let _ = self.swarm.dial(peer);
                    }
                }
            }
            // Kademlia keeps only connected peers in its table: peers its queries find are
            // dialled here while this node has fewer than it wants.
            BehaviourEvent::Kad(
                kad::Event::RoutablePeer { peer, address }
                | kad::Event::PendingRoutablePeer { peer, address },
            ) => {
                let connected = self.swarm.connected_peers().count();
                if connected < self.config.policy.target_peers
                    && !self.swarm.is_connected(&peer)
                    && !self.policy.is_banned(&peer)
                {
                    let opts = DialOpts::peer_id(peer).addresses(vec![address]).build();
                    let _ = self.swarm.dial(opts);
                }
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                info!(?old, ?new, "reachability changed");
                self.policy(Input::Reachability(match new {
                    autonat::NatStatus::Public(_) => Reachability::Public,
                    autonat::NatStatus::Private => Reachability::Private,
                    autonat::NatStatus::Unknown => Reachability::Unknown,
                }));
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) => {
                if !renewal {
                    info!(relay = %relay_peer_id, "relay reservation accepted");
                }
                self.policy(Input::ReservationAccepted(relay_peer_id));
            }
            // libp2p's ping only reports; the policy is ours. A peer that does not speak
            // ping is not dead.
            BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(failure),
            }) if !matches!(failure, ping::Failure::Unsupported) => {
                debug!(%peer, error = %failure, "ping failed: closing the connection");
                if self.swarm.close_connection(connection) {
                    self.stats.dead_connections += 1;
                }
            }
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(_) => {
                    info!(peer = %remote_peer_id, "hole punched: direct connection");
                    self.stats.hole_punches += 1;
                }
                Err(e) => {
                    debug!(peer = %remote_peer_id, error = %e, "hole punching failed");
                    self.stats.hole_punch_failures += 1;
                    self.policy(Input::HolePunchFailed(remote_peer_id));
                }
            },
            _ => {}
        }
    }
}

/// Checks a batch of gossip off the loop: messages of followed markets are stored (the store
/// validates them), the others are only checked statelessly (decoding, limits, signatures)
/// and, when their body names a market, that it is the one the message names. Valid ones
/// carry their author for the per-author budget.
fn check(backend: &dyn Backend, batch: &[Incoming]) -> Result<Vec<Checked>, String> {
    // A body that names another market than its message (itself, or through the offer or
    // membership it points to, when that is held) is refused before anything is stored: an
    // honest node never forwards one.
    // What a market's ledger depends on outside it (a community, a membership, its end) may
    // come under the name of any market that depends on it.
    let decoded: Vec<Option<Attestation>> = batch
        .iter()
        .map(|m| Attestation::decode(&m.data).ok())
        .collect();
    let travels = |a: &Option<Attestation>| {
        a.as_ref()
            .is_some_and(|a| crate::backend::travels_with_markets(&a.body))
    };
    let misnamed = |m: &Incoming, a: &Option<Attestation>| {
        a.as_ref()
            .is_some_and(|a| crate::backend::misnamed(backend, a, &m.market))
    };
    let store: Vec<bool> = batch
        .iter()
        .zip(&decoded)
        .map(|(m, a)| m.followed && !misnamed(m, a))
        .collect();
    let followed: Vec<Vec<u8>> = batch
        .iter()
        .zip(&store)
        .filter(|(_, s)| **s)
        .map(|(m, _)| m.data.clone())
        .collect();
    let mut stored = backend.ingest(&followed)?.into_iter();
    let others: Vec<&[u8]> = batch
        .iter()
        .filter(|m| !m.followed)
        .map(|m| m.data.as_slice())
        .collect();
    let mut checked = validation::check_batch(&others).into_iter();
    let wrong_market = || Verdict::invalid("wrong_market", "an attestation of another market");
    Ok(batch
        .iter()
        .zip(store)
        .zip(&decoded)
        .map(|((m, store), a)| {
            let mut bridge = Vec::new();
            let verdict = if store {
                match stored.next().unwrap_or(Verdict::Duplicate) {
                    // What travels with markets counts as the market it came under.
                    v if v.valid_in().is_some() && travels(a) => {
                        if let Some(a) = a {
                            bridge = backend.dependents(&a.id);
                            bridge.retain(|x| *x != m.market);
                        }
                        Verdict::valid(Some(m.market))
                    }
                    // A referral or claim shows its market only once stored: one of another
                    // market is not forwarded.
                    v if v.valid_in().flatten().is_some_and(|x| x != m.market) => wrong_market(),
                    v => v,
                }
            } else if m.followed && travels(a) {
                // A community or membership this node cannot tell the market depends on (yet):
                // neither kept nor forwarded, and the sender is not blamed (its store may hold
                // the referral that names the community, this one not yet).
                Verdict::NotKept
            } else if m.followed {
                wrong_market()
            } else {
                match checked.next() {
                    Some(Ok(a)) => match a.body.market() {
                        Some(named)
                            if named != m.market
                                && !crate::backend::travels_with_markets(&a.body) =>
                        {
                            wrong_market()
                        }
                        _ => Verdict::valid(Some(m.market)),
                    },
                    Some(Err(e)) => Verdict::New {
                        outcome: Outcome::Invalid((&e).into()),
                        market: None,
                    },
                    None => Verdict::Duplicate,
                }
            };
            let author = verdict
                .valid_in()
                .and_then(|_| a.as_ref().map(|a| a.body.author()));
            Checked {
                verdict,
                author,
                bridge,
            }
        })
        .collect())
}

/// The transport of a direct connection's address (`None` through a relay, or another
/// transport than TCP and QUIC).
fn transport(addr: &Multiaddr) -> Option<Transport> {
    if is_relayed(addr) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(_) => Some(Transport::Tcp),
        Protocol::QuicV1 => Some(Transport::Quic),
        _ => None,
    })
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// Whether a connection address runs through a relay.
fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
