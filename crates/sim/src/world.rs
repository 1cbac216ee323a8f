//! The simulation: nodes, events in time order, and what was measured.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use passalong_net::market;
use passalong_net::policy::{Input, Output, Policy, PolicyConfig};
use passalong_protocol::Id;
use passalong_reconcile::{Config as ReconcileConfig, Item, Reconciler, Storage};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::link::Links;
use crate::node::{Msg, Node};
use crate::workload::{self, Checked, Checks, Publication, EPOCH_MS};
use crate::{Config, Report, Undelivered};

/// Peers a node forwards a message of a shard to (gossipsub's mesh degree D).
const MESH: usize = 6;
/// Peers a node tells of the messages it got, besides its mesh, at its next heartbeat
/// (gossipsub's D_lazy; at least a quarter of the other peers on the topic, its gossip
/// factor).
const LAZY: usize = 6;
/// Gossipsub's heartbeat (the node's config), ms: IHAVE goes out at the next one.
const HEARTBEAT_MS: u64 = 500;
/// The node an eclipse is attempted on.
const VICTIM: u32 = 0;

#[derive(Debug)]
enum Event {
    Tick(u32),
    Publish(usize),
    Gossip {
        from: u32,
        to: u32,
        market: u16,
        id: Msg,
    },
    /// Gossipsub's IHAVE: `from` has `id`; `to` asks for it (IWANT) if it has not seen it.
    IHave {
        from: u32,
        to: u32,
        market: u16,
        id: Msg,
    },
    Garbage(u32),
    Offline(u32),
    Online(u32),
    Fetched {
        node: u32,
        peer: u32,
        items: Vec<(u16, Msg)>,
        held: Vec<u16>,
    },
}

/// An event and when it happens; events are ordered by (time, sequence number).
struct Due {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Due {
    fn eq(&self, o: &Due) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Due) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Due {
    fn cmp(&self, o: &Due) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A message of the run.
struct Message {
    created: u64,
    envelope: Arc<Vec<u8>>,
    /// When an honest attestation was published (`None`: spam or garbage).
    published: Option<u64>,
}

struct World {
    config: Config,
    nodes: Vec<Node>,
    links: Links,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<Due>>,
    seq: u64,
    now: u64,
    /// The wall clock the policies see: a fixed origin plus simulated time.
    origin: Instant,
    /// Each message's id, creation time, envelope, and (honest ones) publication time.
    msgs: Vec<Message>,
    /// Messages by id.
    index: HashMap<Id, Msg>,
    /// Messages' ids by number (what digests and reconciliation take).
    ids: Vec<[u8; 32]>,
    checks: Checks,
    market_of: HashMap<passalong_protocol::PublicKey, u16>,
    keys: Vec<passalong_protocol::PublicKey>,
    publications: Vec<Publication>,
    /// Honest attestations published.
    honest_published: usize,
    latencies: Vec<u64>,
    by_gossip: u64,
    /// Attestations relayed on gossip after anti-entropy brought them.
    relayed: u64,
    garbage_banned: HashSet<u32>,
    processed: u64,
    /// The nodes announcing each shard (the DHT's provider records).
    providers: Vec<Vec<u32>>,
    /// The nodes announcing that they follow each market.
    followers: HashMap<u16, Vec<u32>>,
}

/// Runs a simulation to its end and reports what it measured.
pub fn run(config: Config) -> Report {
    let mut w = World::new(config);
    w.start();
    while let Some(Reverse(Due { at, event, .. })) = w.queue.pop() {
        if at > w.config.duration_ms {
            break;
        }
        w.now = at;
        w.processed += 1;
        w.on(event);
    }
    w.report()
}

impl World {
    fn new(config: Config) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let n = config.nodes as u32;
        let hostile: Vec<u32> = (1..n)
            .filter(|_| rng.next_u64() % 100 < u64::from(config.hostile_pct))
            .collect();
        let hostile_set: HashSet<u32> = hostile.iter().copied().collect();
        let honest: Vec<u32> = (0..n).filter(|i| !hostile_set.contains(i)).collect();
        let sellers: Vec<u32> = (0..config.markets)
            .map(|_| honest[(rng.next_u64() % honest.len() as u64) as usize])
            .collect();
        let w = workload::build(
            &mut rng,
            &sellers,
            &hostile,
            config.referrals_per_market,
            config.spam_per_hostile,
            config.publish_ms,
        );
        let origin = Instant::now();
        let policy_config = PolicyConfig {
            sync_interval: std::time::Duration::from_millis(config.sync_interval_ms),
            max_peers: config.max_connections,
            ..PolicyConfig::default()
        };
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| {
                let honest = !hostile_set.contains(&i);
                let mut followed = BTreeSet::new();
                if honest {
                    let (lo, hi) = config.follow;
                    let k = lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize;
                    while followed.len() < k.min(config.markets) {
                        followed.insert((rng.next_u64() % config.markets as u64) as u16);
                    }
                }
                Node {
                    honest,
                    online: true,
                    followed,
                    shards: if honest {
                        HashSet::new()
                    } else {
                        (0..market::SHARDS).collect()
                    },
                    peers: BTreeSet::new(),
                    inbound: HashSet::new(),
                    policy: Policy::new(policy_config.clone(), origin),
                    store: Default::default(),
                    seen: Default::default(),
                    held: Vec::new(),
                    bytes: 0,
                    spam_stored: 0,
                    policy_peak: 0,
                }
            })
            .collect();
        // A seller follows its market.
        for (m, s) in sellers.iter().enumerate() {
            nodes[*s as usize].followed.insert(m as u16);
        }
        let honest_published = w.publications.iter().filter(|p| p.honest).count();
        let mut world = World {
            links: Links::new(config.latency_ms, config.loss, config.partition),
            config,
            nodes,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            origin,
            msgs: Vec::new(),
            index: HashMap::new(),
            ids: Vec::new(),
            checks: Checks::default(),
            market_of: w.market_of,
            keys: w.markets,
            publications: w.publications,
            honest_published,
            latencies: Vec::new(),
            by_gossip: 0,
            relayed: 0,
            garbage_banned: HashSet::new(),
            processed: 0,
            providers: vec![Vec::new(); usize::from(market::SHARDS)],
            followers: HashMap::new(),
        };
        for k in 0..world.publications.len() {
            let p = &world.publications[k];
            let (id, envelope) = (p.id, p.envelope.clone());
            let published = p.honest.then_some(p.at);
            world.intern(id, envelope, EPOCH_MS + p.at, published);
        }
        world
    }

    /// The number of message `id`, given one if it is new.
    fn intern(
        &mut self,
        id: Id,
        envelope: Arc<Vec<u8>>,
        created: u64,
        published: Option<u64>,
    ) -> Msg {
        if let Some(m) = self.index.get(&id) {
            return *m;
        }
        let m = self.msgs.len() as Msg;
        self.msgs.push(Message {
            created,
            envelope,
            published,
        });
        self.ids.push(id.0);
        self.index.insert(id, m);
        m
    }

    fn len(&self, m: Msg) -> u64 {
        self.msgs[m as usize].envelope.len() as u64
    }

    fn at(&mut self, t: u64, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Due {
            at: t,
            seq: self.seq,
            event: e,
        }));
    }

    fn instant(&self) -> Instant {
        self.origin + std::time::Duration::from_millis(self.now)
    }

    fn random_node(&mut self) -> u32 {
        (self.rng.next_u64() % self.nodes.len() as u64) as u32
    }

    fn start(&mut self) {
        let n = self.nodes.len() as u32;
        // Honest nodes follow their markets, then dial `degree` random peers.
        for i in 0..n {
            if self.nodes[i as usize].honest {
                let markets: Vec<_> = self.nodes[i as usize]
                    .followed
                    .iter()
                    .map(|m| self.market_key(*m))
                    .collect();
                self.policy(
                    i,
                    Input::Follow {
                        markets,
                        urgent: false,
                    },
                );
            }
        }
        for i in 0..n {
            if self.nodes[i as usize].honest {
                for _ in 0..self.config.degree {
                    let p = self.random_node();
                    self.connect(i, p);
                }
                let offset = u64::from(i) % 1_000;
                self.at(offset, Event::Tick(i));
            }
        }
        for i in 0..n {
            if !self.nodes[i as usize].honest {
                for s in 0..usize::from(market::SHARDS) {
                    self.providers[s].push(i);
                }
            }
        }
        // Hostile nodes dial the victim first, then others.
        for i in 0..n {
            if !self.nodes[i as usize].honest {
                self.connect(i, VICTIM);
                for _ in 0..self.config.degree {
                    let p = self.random_node();
                    self.connect(i, p);
                }
                for _ in 0..self.config.garbage_per_hostile {
                    let t = self.rng.next_u64() % self.config.publish_ms.max(1);
                    self.at(t, Event::Garbage(i));
                }
            }
        }
        for k in 0..self.publications.len() {
            let t = self.publications[k].at;
            self.at(t, Event::Publish(k));
        }
        let churn: Vec<u32> = (1..n)
            .filter(|i| self.nodes[*i as usize].honest)
            .filter(|_| self.rng.next_u64() % 100 < u64::from(self.config.churn_pct))
            .collect();
        for i in churn {
            let t = self.rng.next_u64() % self.config.publish_ms.max(1);
            let back = t + 10_000 + self.rng.next_u64() % 30_000;
            self.at(t, Event::Offline(i));
            self.at(back, Event::Online(i));
        }
    }

    fn market_key(&self, m: u16) -> passalong_protocol::PublicKey {
        self.keys[m as usize]
    }

    /// Runs `input` through node `i`'s policy and carries out what it says; returns its
    /// answers.
    fn policy(&mut self, i: u32, input: Input<u32>) -> Vec<Output<u32>> {
        let now = self.instant();
        let mut out = Vec::new();
        let node = &mut self.nodes[i as usize];
        node.policy.handle(input, now, &mut self.rng, &mut out);
        node.policy_peak = node.policy_peak.max(node.policy.footprint());
        for o in &out {
            match o {
                Output::Ban(p, why) => {
                    if !self.nodes[*p as usize].honest && *why != "sync request rate exceeded" {
                        self.garbage_banned.insert(*p);
                    }
                    self.disconnect(i, *p);
                }
                Output::Subscribe(s) => {
                    self.nodes[i as usize].shards.insert(*s);
                    self.providers[usize::from(*s)].push(i);
                    let peers: Vec<u32> = self.nodes[i as usize].peers.iter().copied().collect();
                    for p in peers {
                        if self.nodes[p as usize].honest {
                            self.policy(p, Input::PeerSubscribed(i, *s));
                        }
                    }
                }
                Output::Announce(m) => {
                    if let Some(n) = self.market_of.get(m).copied() {
                        self.followers.entry(n).or_default().push(i);
                    }
                }
                Output::Disconnect(p) => self.disconnect(i, *p),
                Output::FindHolders(m) => {
                    let found = self
                        .market_of
                        .get(m)
                        .and_then(|n| self.followers.get(n))
                        .cloned()
                        .unwrap_or_default();
                    if !found.is_empty() {
                        for _ in 0..passalong_net::policy::MIN_SHARD_PEERS {
                            let k = (self.rng.next_u64() % found.len() as u64) as usize;
                            self.connect(i, found[k]);
                        }
                    }
                }
                Output::FindPeers(s) => {
                    let found = self.providers[usize::from(*s)].len() as u64;
                    if found > 0 {
                        for _ in 0..passalong_net::policy::MIN_SHARD_PEERS {
                            let k = (self.rng.next_u64() % found) as usize;
                            let p = self.providers[usize::from(*s)][k];
                            self.connect(i, p);
                        }
                    }
                }
                Output::StartSync(p, markets) => self.sync(i, *p, markets),
                Output::PublishHeld(s) => {
                    let held = std::mem::take(&mut self.nodes[i as usize].held);
                    let (now, later): (Vec<_>, Vec<_>) = held
                        .into_iter()
                        .partition(|(m, _)| market::shard(&self.market_key(*m)) == *s);
                    self.nodes[i as usize].held = later;
                    for (m, id) in now {
                        self.forward(i, None, m, id);
                    }
                }
                Output::DialMore(k) => {
                    for _ in 0..*k {
                        let p = self.random_node();
                        self.connect(i, p);
                    }
                }
                Output::RedialBootstrap => {
                    for _ in 0..self.config.degree {
                        let p = self.random_node();
                        self.connect(i, p);
                    }
                }
                Output::SetAppScore(..)
                | Output::Unban(_)
                | Output::IgnoreGossip
                | Output::Serve
                | Output::Refuse
                | Output::Publish
                | Output::Defer
                // Simulated nodes are all reachable: no relays, no hole punching.
                | Output::Reserve(_)
                | Output::Unreserve(_)
                | Output::RedialPreferred(_)
                | Output::DialTransport { .. }
                | Output::RetryHolePunch(_)
                | Output::Hold => {}
            }
        }
        out
    }

    fn connect(&mut self, a: u32, b: u32) {
        let (na, nb) = (&self.nodes[a as usize], &self.nodes[b as usize]);
        if a == b
            || !na.online
            || !nb.online
            || na.peers.contains(&b)
            || nb.peers.len() >= self.config.max_connections
            || nb.inbound.len() >= self.config.max_connections - self.config.max_connections / 4
            || na.peers.len() >= self.config.max_connections
            || na.policy.is_banned(&b)
            || nb.policy.is_banned(&a)
            || !self.links.connected(a, b, self.now)
        {
            return;
        }
        self.nodes[a as usize].peers.insert(b);
        self.nodes[b as usize].peers.insert(a);
        self.nodes[b as usize].inbound.insert(a);
        for (x, y) in [(a, b), (b, a)] {
            if self.nodes[x as usize].honest {
                self.policy(x, Input::Connected(y));
                let mut shards: Vec<u16> = self.nodes[y as usize].shards.iter().copied().collect();
                // In order: what a subscription sets off (held publications) draws from the
                // RNG.
                shards.sort_unstable();
                for s in shards {
                    self.policy(x, Input::PeerSubscribed(y, s));
                }
            }
        }
    }

    fn disconnect(&mut self, a: u32, b: u32) {
        let was = self.nodes[a as usize].peers.remove(&b);
        self.nodes[b as usize].peers.remove(&a);
        self.nodes[a as usize].inbound.remove(&b);
        self.nodes[b as usize].inbound.remove(&a);
        if was {
            for (x, y) in [(a, b), (b, a)] {
                if self.nodes[x as usize].honest {
                    self.policy(x, Input::Disconnected(y));
                }
            }
        }
    }

    fn on(&mut self, e: Event) {
        match e {
            Event::Tick(i) => {
                if self.nodes[i as usize].online {
                    let connected: Vec<u32> =
                        self.nodes[i as usize].peers.iter().copied().collect();
                    self.policy(i, Input::Tick { connected });
                }
                let next = self.now + 1_000;
                self.at(next, Event::Tick(i));
            }
            Event::Publish(k) => self.publish(k),
            Event::Gossip {
                from,
                to,
                market,
                id,
            } => self.gossip(from, to, market, id),
            Event::IHave {
                from,
                to,
                market,
                id,
            } => {
                let n = &self.nodes[to as usize];
                if n.online && n.honest && n.peers.contains(&from) && !n.seen.contains(id) {
                    // IWANT back, then the message: two more trips.
                    self.nodes[to as usize].bytes += 32;
                    let back = self.links.latency(from, to);
                    if let Some(t) = self.links.deliver(to, from, self.now + back, &mut self.rng) {
                        self.nodes[from as usize].bytes += 32 + self.len(id);
                        self.at(
                            t,
                            Event::Gossip {
                                from,
                                to,
                                market,
                                id,
                            },
                        );
                    }
                }
            }
            Event::Garbage(h) => {
                let mut junk = vec![0u8; 120];
                self.rng.fill_bytes(&mut junk);
                let id = Id::of_envelope(&junk);
                let id = self.intern(id, Arc::new(junk), 0, None);
                let market = (self.rng.next_u64() % self.market_of.len() as u64) as u16;
                let peers: Vec<u32> = self.nodes[h as usize].peers.iter().copied().collect();
                for p in peers {
                    self.send(h, p, market, id);
                }
            }
            Event::Offline(i) => {
                if trace(i) {
                    eprintln!("trace {} ms: node {i} offline", self.now);
                }
                self.nodes[i as usize].online = false;
                let peers: Vec<u32> = self.nodes[i as usize].peers.iter().copied().collect();
                for p in peers {
                    self.disconnect(i, p);
                }
            }
            Event::Online(i) => {
                if trace(i) {
                    eprintln!("trace {} ms: node {i} online", self.now);
                }
                self.nodes[i as usize].online = true;
                for _ in 0..self.config.degree {
                    let p = self.random_node();
                    self.connect(i, p);
                }
            }
            Event::Fetched {
                node,
                peer,
                items,
                held,
            } => {
                let mut fetched = 0;
                let mut news = Vec::new();
                for (market, id) in items {
                    let bytes = self.len(id);
                    self.nodes[node as usize].bytes += bytes;
                    self.nodes[peer as usize].bytes += bytes;
                    if self.accept(node, market, id, false) {
                        fetched += 1;
                        if news.len() < passalong_net::policy::MAX_RELAYED_PER_SESSION {
                            news.push((market, id));
                        }
                    }
                }
                // What the session brought is relayed on gossip while it is news, as the
                // real event loop does.
                for (market, id) in news {
                    if !self.nodes[node as usize].online {
                        break;
                    }
                    let age_ms =
                        (EPOCH_MS + self.now).saturating_sub(self.msgs[id as usize].created);
                    let key = self.market_key(market);
                    let out = self.policy(
                        node,
                        Input::Relay {
                            market: key,
                            age_ms,
                        },
                    );
                    if out.contains(&Output::Publish) {
                        self.nodes[node as usize].seen.insert(id);
                        self.relayed += 1;
                        self.forward(node, None, market, id);
                    }
                }
                if self.nodes[node as usize].online {
                    let held = held.into_iter().map(|m| self.market_key(m)).collect();
                    self.policy(
                        node,
                        Input::SyncEnded {
                            peer,
                            fetched,
                            held,
                        },
                    );
                }
            }
        }
    }

    fn send(&mut self, from: u32, to: u32, market: u16, id: Msg) {
        if let Some(t) = self.links.deliver(from, to, self.now, &mut self.rng) {
            self.at(
                t,
                Event::Gossip {
                    from,
                    to,
                    market,
                    id,
                },
            );
        }
    }

    fn publish(&mut self, k: usize) {
        let p = self.publications[k].clone();
        let id = self.index[&p.id];
        if traced_id(&p.id.0) {
            eprintln!(
                "publish {} ms: node {} online {}",
                self.now, p.node, self.nodes[p.node as usize].online
            );
        }
        let node = &self.nodes[p.node as usize];
        if node.honest {
            // Signed while offline too: then no peer is on its shard, and the policy holds it
            // until one is.
            let key = self.market_key(p.market);
            let out = self.policy(p.node, Input::Publish(key));
            self.accept(p.node, p.market, id, false);
            self.nodes[p.node as usize].seen.insert(id);
            if out.contains(&Output::Publish) {
                self.forward(p.node, None, p.market, id);
            } else if out.contains(&Output::Hold) {
                self.nodes[p.node as usize].held.push((p.market, id));
            }
        } else if node.online {
            // Spam goes to every peer at once, unpaced.
            let peers: Vec<u32> = self.nodes[p.node as usize].peers.iter().copied().collect();
            for q in peers {
                self.send(p.node, q, p.market, id);
            }
        }
    }

    /// Stores an attestation a node received (if it follows the market) and records an
    /// honest one's delivery.
    fn accept(&mut self, i: u32, market: u16, id: Msg, gossip: bool) -> bool {
        if !self.nodes[i as usize].store(market, id) {
            return false;
        }
        if traced_id(&self.ids[id as usize]) {
            eprintln!("got {} ms: node {i} (gossip {gossip})", self.now);
        }
        match self.msgs[id as usize].published {
            Some(at) => {
                if self.nodes[i as usize].honest {
                    self.latencies.push(self.now.saturating_sub(at));
                    self.by_gossip += u64::from(gossip);
                }
            }
            None => self.nodes[i as usize].spam_stored += 1,
        }
        true
    }

    fn gossip(&mut self, from: u32, to: u32, market: u16, id: Msg) {
        let envelope = self.msgs[id as usize].envelope.clone();
        let node = &mut self.nodes[to as usize];
        if !node.online || !node.peers.contains(&from) {
            return;
        }
        node.bytes += 32 + envelope.len() as u64;
        if !node.seen.insert(id) || !node.honest {
            return; // a duplicate; hostile nodes withhold
        }
        if self
            .policy(to, Input::Gossip(from))
            .contains(&Output::IgnoreGossip)
        {
            return;
        }
        let key = self.market_key(market);
        match self.checks.check(Id(self.ids[id as usize]), &envelope) {
            Checked::Valid {
                author,
                market: named,
            } if named.is_none_or(|n| n == key) => {
                let over = self
                    .policy(to, Input::Authored { peer: from, author })
                    .contains(&Output::IgnoreGossip);
                self.accept(to, market, id, true);
                if !over {
                    self.forward(to, Some(from), market, id);
                }
            }
            _ => {
                self.policy(to, Input::Offence(from, "invalid gossip"));
            }
        }
    }

    /// Sends a message on to the node's mesh of the market's shard: up to [`MESH`] peers
    /// subscribed to it that do not have it yet, chosen by a stable per-node order (all of
    /// them for the node's own message: gossipsub's flood publishing); then tells [`LAZY`]
    /// others picked at random at the next heartbeat (IHAVE), and those that lack it ask.
    fn forward(&mut self, i: u32, except: Option<u32>, market: u16, id: Msg) {
        let shard = market::shard(&self.market_key(market));
        let mut mesh: Vec<(u64, u32)> = self.nodes[i as usize]
            .peers
            .iter()
            .filter(|p| Some(**p) != except)
            .filter(|p| self.nodes[**p as usize].shards.contains(&shard))
            .map(|p| (mix(i, *p, shard), *p))
            .collect();
        mesh.sort_unstable();
        let fanout = if except.is_none() { mesh.len() } else { MESH };
        let mut others: Vec<u32> = mesh.iter().skip(fanout).map(|x| x.1).collect();
        mesh.truncate(fanout);
        // Gossipsub 1.2's IDONTWANT: a peer that already has the message says so, and most
        // duplicates are never sent.
        mesh.retain(|x| !self.nodes[x.1 as usize].seen.contains(id));
        let lazy = LAZY.max(others.len() / 4).min(others.len());
        let wait = self.rng.next_u64() % HEARTBEAT_MS;
        for k in 0..lazy {
            let j = k + (self.rng.next_u64() % (others.len() - k) as u64) as usize;
            others.swap(k, j);
            let p = others[k];
            self.nodes[i as usize].bytes += 32;
            if self.nodes[p as usize].seen.contains(id) {
                continue;
            }
            if let Some(t) = self.links.deliver(i, p, self.now + wait, &mut self.rng) {
                self.at(
                    t,
                    Event::IHave {
                        from: i,
                        to: p,
                        market,
                        id,
                    },
                );
            }
        }
        if trace(i) {
            eprintln!(
                "trace {} ms: node {i} forwards {} to {:?} of peers {:?}",
                self.now,
                hex(&self.ids[id as usize]),
                mesh.iter().map(|x| x.1).collect::<Vec<_>>(),
                self.nodes[i as usize].peers
            );
        }
        for (_, p) in mesh {
            self.nodes[i as usize].bytes += 32 + self.len(id);
            self.send(i, p, market, id);
        }
    }

    /// An anti-entropy session of `i` with `p` over `markets`, as `/passalong/sync/2` runs
    /// it: digests, then real reconciliation of the markets that differ; what `i` lacks
    /// arrives after the round trips it took.
    fn sync(&mut self, i: u32, p: u32, markets: &[passalong_protocol::PublicKey]) {
        let rtt = 2 * self.links.latency(i, p);
        let reachable = self.nodes[p as usize].online
            && self.nodes[i as usize].peers.contains(&p)
            && self.links.connected(i, p, self.now);
        let mut items = Vec::new();
        let mut held = Vec::new();
        let mut rounds = 1u64;
        if reachable && self.nodes[p as usize].honest {
            let numbers: Vec<u16> = markets
                .iter()
                .filter_map(|k| self.market_of.get(k).copied())
                .collect();
            self.nodes[i as usize].bytes += 48 * numbers.len() as u64;
            for m in numbers {
                if self.nodes[p as usize].held(m).is_empty() {
                    continue;
                }
                held.push(m);
                let theirs = self.nodes[p as usize].digest(m, &self.ids);
                if theirs == self.nodes[i as usize].digest(m, &self.ids) {
                    continue;
                }
                let (need, r, bytes) = self.reconcile(i, p, m);
                rounds = rounds.max(1 + r);
                if trace(i) && traced_market(m) {
                    eprintln!(
                        "  market {m}: mine {} theirs {} need {} rounds {r}",
                        self.nodes[i as usize].held(m).len(),
                        theirs.count,
                        need.len()
                    );
                }
                self.nodes[i as usize].bytes += bytes;
                self.nodes[p as usize].bytes += bytes;
                items.extend(need.into_iter().map(|id| (m, id)));
            }
        }
        if trace(i) {
            eprintln!(
                "trace {} ms: node {i} syncs with {p} (honest {}, reachable {reachable}): {} markets asked, {} held, {} items",
                self.now,
                self.nodes[p as usize].honest,
                markets.len(),
                held.len(),
                items.len()
            );
        }
        let done = self.now + rtt * (rounds + 1);
        self.at(
            done,
            Event::Fetched {
                node: i,
                peer: p,
                items,
                held,
            },
        );
    }

    /// Reconciles market `m` of `a` (initiator) with `b` through `passalong-reconcile`: what
    /// `a` lacks, the round trips, and the bytes of the messages.
    fn reconcile(&self, a: u32, b: u32, m: u16) -> (Vec<Msg>, u64, u64) {
        let storage = |n: u32| {
            Storage::from_items(self.nodes[n as usize].held(m).iter().map(|x| Item {
                created_at: self.msgs[*x as usize].created,
                id: self.ids[*x as usize],
            }))
        };
        let (sa, sb) = (storage(a), storage(b));
        let mut ra = Reconciler::new(&sa, ReconcileConfig::default());
        let mut bytes = 0u64;
        let mut rounds = 0u64;
        let Ok(mut msg) = ra.initiate() else {
            return (Vec::new(), 0, 0);
        };
        while rounds < passalong_net::sync::MAX_ROUNDS as u64 {
            rounds += 1;
            bytes += msg.len() as u64;
            let mut rb = Reconciler::new(&sb, ReconcileConfig::default());
            let Ok(Some(answer)) = rb.reconcile(&msg) else {
                break;
            };
            bytes += answer.len() as u64;
            match ra.reconcile(&answer) {
                Ok(Some(next)) => msg = next,
                Ok(None) => {
                    let need = ra
                        .need()
                        .iter()
                        .filter_map(|id| self.index.get(&Id(*id)).copied())
                        .filter(|x| self.nodes[b as usize].holds(m, *x))
                        .collect();
                    return (need, rounds, bytes);
                }
                Err(_) => break,
            }
        }
        (Vec::new(), rounds, bytes)
    }

    fn report(&self) -> Report {
        let honest: Vec<&Node> = self.nodes.iter().filter(|n| n.honest).collect();
        let mut expected = 0u64;
        let mut delivered = 0u64;
        let mut victim_complete = true;
        let mut undelivered = Undelivered::default();
        let mut honest_of: HashMap<u16, Vec<Msg>> = HashMap::new();
        for p in self.publications.iter().filter(|p| p.honest) {
            honest_of
                .entry(p.market)
                .or_default()
                .push(self.index[&p.id]);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.honest {
                continue;
            }
            for m in &n.followed {
                for id in honest_of.get(m).map_or(&[][..], Vec::as_slice) {
                    expected += 1;
                    if n.holds(*m, *id) {
                        delivered += 1;
                    } else {
                        if i as u32 == VICTIM {
                            victim_complete = false;
                        }
                        self.explain(i as u32, *m, *id, &mut undelivered);
                    }
                }
            }
        }
        let mut lat = self.latencies.clone();
        lat.sort_unstable();
        let pct = |q: f64| {
            lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        let mut bytes: Vec<u64> = honest.iter().map(|n| n.bytes).collect();
        bytes.sort_unstable();
        Report {
            honest_nodes: honest.len(),
            hostile_nodes: self.nodes.len() - honest.len(),
            honest_attestations: self.honest_published,
            expected_deliveries: expected,
            delivered,
            by_gossip: self.by_gossip,
            relayed: self.relayed,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            max_ms: lat.last().copied().unwrap_or(0),
            victim_complete,
            bytes_per_node_p50: bytes.get(bytes.len() / 2).copied().unwrap_or(0),
            bytes_per_node_max: bytes.last().copied().unwrap_or(0),
            spam_stored_max: honest.iter().map(|n| n.spam_stored).max().unwrap_or(0),
            garbage_senders_banned: self.garbage_banned.len(),
            policy_entries_max: honest.iter().map(|n| n.policy_peak).max().unwrap_or(0),
            state_bytes_max: honest.iter().map(|n| n.state_bytes()).max().unwrap_or(0),
            events: self.processed,
            undelivered,
        }
    }

    /// Counts one missing delivery under its likeliest cause (and prints it when
    /// `SIM_MISSING` is set).
    fn explain(&self, i: u32, m: u16, id: Msg, u: &mut Undelivered) {
        let n = &self.nodes[i as usize];
        let honest: Vec<u32> = n
            .peers
            .iter()
            .copied()
            .filter(|p| self.nodes[*p as usize].honest)
            .collect();
        let holding = honest
            .iter()
            .filter(|p| self.nodes[**p as usize].holds(m, id))
            .count();
        let following = honest
            .iter()
            .filter(|p| self.nodes[**p as usize].followed.contains(&m))
            .count();
        let holders = self
            .nodes
            .iter()
            .filter(|x| x.honest && x.holds(m, id))
            .count();
        let cause = if i == VICTIM {
            u.victim += 1;
            "victim"
        } else if !n.online {
            u.offline += 1;
            "offline"
        } else if honest.is_empty() {
            u.no_honest_peer += 1;
            "no honest peer"
        } else if holding > 0 {
            u.a_peer_holds_it += 1;
            "a peer holds it"
        } else {
            u.no_peer_holds_it += 1;
            "no peer holds it"
        };
        if debug().missing {
            let shard = market::shard(&self.market_key(m));
            let on_shard = honest
                .iter()
                .filter(|p| self.nodes[**p as usize].shards.contains(&shard))
                .count();
            eprintln!(
                "missing: node {i} market {m} published {} ms: {cause}; peers {} (honest {}, \
                 on the shard {on_shard}, following {following}, holding {holding}); \
                 follows {}; honest holders in all {holders}; banned {}",
                self.msgs[id as usize].created - EPOCH_MS,
                n.peers.len(),
                honest.len(),
                n.followed.len(),
                n.policy.banned().count(),
            );
            eprintln!(
                "  id {} mine {:?}",
                hex(&self.ids[id as usize]),
                n.held(m)
                    .iter()
                    .map(|x| (
                        self.msgs[*x as usize].created.saturating_sub(EPOCH_MS),
                        hex(&self.ids[*x as usize])
                    ))
                    .collect::<Vec<_>>()
            );
        }
    }
}

/// A stable pseudo-random order of a node's peers for one shard.
fn mix(a: u32, b: u32, shard: u16) -> u64 {
    let x = (u64::from(a) << 32) ^ u64::from(b) ^ (u64::from(shard) << 48);
    let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What to print, from the environment: `SIM_MISSING` (each missing delivery), `SIM_TRACE`
/// (nodes, comma-separated: their sessions and gossip), `SIM_TRACE_MARKET` (a market's
/// reconciliations in those sessions), `SIM_TRACE_ID` (the first 8 hex digits of an id:
/// who got it when).
struct Debug {
    missing: bool,
    nodes: Vec<u32>,
    market: Option<u16>,
    id: Option<String>,
}

fn debug() -> &'static Debug {
    static D: std::sync::OnceLock<Debug> = std::sync::OnceLock::new();
    D.get_or_init(|| Debug {
        missing: std::env::var_os("SIM_MISSING").is_some(),
        nodes: std::env::var("SIM_TRACE")
            .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default(),
        market: std::env::var("SIM_TRACE_MARKET")
            .ok()
            .and_then(|v| v.parse().ok()),
        id: std::env::var("SIM_TRACE_ID").ok(),
    })
}

fn trace(i: u32) -> bool {
    debug().nodes.contains(&i)
}

fn traced_market(m: u16) -> bool {
    debug().market == Some(m)
}

fn traced_id(id: &[u8; 32]) -> bool {
    debug().id.as_ref().is_some_and(|x| *x == hex(id))
}

fn hex(x: &[u8; 32]) -> String {
    x[..4].iter().map(|b| format!("{b:02x}")).collect()
}
