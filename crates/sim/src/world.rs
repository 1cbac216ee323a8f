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
use crate::node::Node;
use crate::workload::{self, Checked, Checks, Publication, EPOCH_MS};
use crate::{Config, Report, Undelivered};

/// Peers a node forwards a message of a shard to (gossipsub's mesh degree D).
const MESH: usize = 6;
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
        id: Id,
    },
    Garbage(u32),
    Offline(u32),
    Online(u32),
    Fetched {
        node: u32,
        peer: u32,
        items: Vec<(u16, u64, Id)>,
        held: Vec<u16>,
    },
}

struct World {
    config: Config,
    nodes: Vec<Node>,
    links: Links,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    seq: u64,
    now: u64,
    /// The wall clock the policies see: a fixed origin plus simulated time.
    origin: Instant,
    envelopes: HashMap<Id, (Arc<Vec<u8>>, u64)>,
    checks: Checks,
    market_of: HashMap<passalong_protocol::PublicKey, u16>,
    keys: Vec<passalong_protocol::PublicKey>,
    publications: Vec<Publication>,
    /// Honest publication of each id: when it was published.
    published_at: HashMap<Id, u64>,
    latencies: Vec<u64>,
    by_gossip: u64,
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
    while let Some(Reverse((at, seq))) = w.queue.pop() {
        if at > w.config.duration_ms {
            break;
        }
        w.now = at;
        w.processed += 1;
        if let Some(e) = w.events.remove(&seq) {
            w.on(e);
        }
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
                    seen: HashSet::new(),
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
        let mut envelopes = HashMap::new();
        let mut published_at = HashMap::new();
        for p in &w.publications {
            envelopes.insert(p.id, (p.envelope.clone(), EPOCH_MS + p.at));
            if p.honest {
                published_at.insert(p.id, p.at);
            }
        }
        World {
            links: Links::new(config.latency_ms, config.loss, config.partition),
            config,
            nodes,
            rng,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            now: 0,
            origin,
            envelopes,
            checks: Checks::default(),
            market_of: w.market_of,
            keys: w.markets,
            publications: w.publications,
            published_at,
            latencies: Vec::new(),
            by_gossip: 0,
            garbage_banned: HashSet::new(),
            processed: 0,
            providers: vec![Vec::new(); usize::from(market::SHARDS)],
            followers: HashMap::new(),
        }
    }

    fn at(&mut self, t: u64, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq)));
        self.events.insert(self.seq, e);
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
                | Output::Defer => {}
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
                let shards: Vec<u16> = self.nodes[y as usize].shards.iter().copied().collect();
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
            Event::Garbage(h) => {
                let mut junk = vec![0u8; 120];
                self.rng.fill_bytes(&mut junk);
                let id = Id::of_envelope(&junk);
                self.envelopes.insert(id, (Arc::new(junk), 0));
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
                for (market, created, id) in items {
                    let bytes = self.envelopes.get(&id).map_or(0, |e| e.0.len() as u64);
                    self.nodes[node as usize].bytes += bytes;
                    self.nodes[peer as usize].bytes += bytes;
                    fetched += usize::from(self.accept(node, market, created, id, false));
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

    fn send(&mut self, from: u32, to: u32, market: u16, id: Id) {
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
        if std::env::var("SIM_TRACE_ID").is_ok_and(|v| v == hex(&p.id.0)) {
            eprintln!(
                "publish {} ms: node {} online {}",
                self.now, p.node, self.nodes[p.node as usize].online
            );
        }
        let node = &self.nodes[p.node as usize];
        let created = EPOCH_MS + p.at;
        if !node.online {
            // Signed while offline: peers get it by anti-entropy once the node is back.
            if node.honest {
                self.accept(p.node, p.market, created, p.id, false);
            }
            return;
        }
        if node.honest {
            let key = self.market_key(p.market);
            let go = self
                .policy(p.node, Input::Publish(key))
                .contains(&Output::Publish);
            self.accept(p.node, p.market, created, p.id, false);
            self.nodes[p.node as usize].seen.insert(p.id);
            if go {
                self.forward(p.node, None, p.market, p.id);
            }
        } else {
            // Spam goes to every peer at once, unpaced.
            let peers: Vec<u32> = self.nodes[p.node as usize].peers.iter().copied().collect();
            for q in peers {
                self.send(p.node, q, p.market, p.id);
            }
        }
    }

    /// Stores an attestation a node received (if it follows the market) and records an
    /// honest one's delivery.
    fn accept(&mut self, i: u32, market: u16, created: u64, id: Id, gossip: bool) -> bool {
        if !self.nodes[i as usize].store(market, created, id) {
            return false;
        }
        if std::env::var("SIM_TRACE_ID").is_ok_and(|v| v == hex(&id.0)) {
            eprintln!("got {} ms: node {i} (gossip {gossip})", self.now);
        }
        match self.published_at.get(&id) {
            Some(at) => {
                if self.nodes[i as usize].honest {
                    self.latencies.push(self.now.saturating_sub(*at));
                    self.by_gossip += u64::from(gossip);
                }
            }
            None => self.nodes[i as usize].spam_stored += 1,
        }
        true
    }

    fn gossip(&mut self, from: u32, to: u32, market: u16, id: Id) {
        let Some((envelope, created)) = self.envelopes.get(&id).cloned() else {
            return;
        };
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
        match self.checks.check(id, &envelope) {
            Checked::Valid {
                author,
                market: named,
            } if named.is_none_or(|n| n == key) => {
                let over = self
                    .policy(to, Input::Authored { peer: from, author })
                    .contains(&Output::IgnoreGossip);
                self.accept(to, market, created, id, true);
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
    /// subscribed to it that do not have it yet, chosen by a stable per-node order.
    fn forward(&mut self, i: u32, except: Option<u32>, market: u16, id: Id) {
        let shard = market::shard(&self.market_key(market));
        let mut mesh: Vec<(u64, u32)> = self.nodes[i as usize]
            .peers
            .iter()
            .filter(|p| Some(**p) != except)
            .filter(|p| self.nodes[**p as usize].shards.contains(&shard))
            // Gossipsub 1.2's IDONTWANT: a peer that already has the message says so, and
            // most duplicates are never sent.
            .filter(|p| !self.nodes[**p as usize].seen.contains(&id))
            .map(|p| (mix(i, *p, shard), *p))
            .collect();
        mesh.sort_unstable();
        if trace(i) {
            eprintln!(
                "trace {} ms: node {i} forwards {} to {:?} of peers {:?}",
                self.now,
                hex(&id.0),
                mesh.iter().take(MESH).map(|x| x.1).collect::<Vec<_>>(),
                self.nodes[i as usize].peers
            );
        }
        for (_, p) in mesh.into_iter().take(MESH) {
            self.nodes[i as usize].bytes += 32 + self.envelopes[&id].0.len() as u64;
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
                let theirs = self.nodes[p as usize].digest(m);
                if theirs.count == 0 {
                    continue;
                }
                held.push(m);
                if theirs == self.nodes[i as usize].digest(m) {
                    continue;
                }
                let (need, r, bytes) =
                    reconcile(&self.nodes[i as usize], &self.nodes[p as usize], m);
                rounds = rounds.max(1 + r);
                if trace(i) && std::env::var("SIM_TRACE_MARKET").is_ok_and(|v| v == m.to_string()) {
                    eprintln!(
                        "  market {m}: mine {} theirs {} need {} rounds {r}",
                        self.nodes[i as usize].digest(m).count,
                        theirs.count,
                        need.len()
                    );
                }
                self.nodes[i as usize].bytes += bytes;
                self.nodes[p as usize].bytes += bytes;
                items.extend(need.into_iter().map(|(t, id)| (m, t, id)));
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

    fn report(&self) -> Report {
        let honest: Vec<&Node> = self.nodes.iter().filter(|n| n.honest).collect();
        let mut expected = 0u64;
        let mut delivered = 0u64;
        let mut victim_complete = true;
        let mut undelivered = Undelivered::default();
        let mut honest_of: HashMap<u16, Vec<(u64, Id)>> = HashMap::new();
        for p in self.publications.iter().filter(|p| p.honest) {
            honest_of
                .entry(p.market)
                .or_default()
                .push((EPOCH_MS + p.at, p.id));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.honest {
                continue;
            }
            for m in &n.followed {
                for (t, id) in honest_of.get(m).map_or(&[][..], Vec::as_slice) {
                    expected += 1;
                    if n.holds(*m, *t, id) {
                        delivered += 1;
                    } else {
                        if i as u32 == VICTIM {
                            victim_complete = false;
                        }
                        self.explain(i as u32, *m, *t, id, &mut undelivered);
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
            honest_attestations: self.published_at.len(),
            expected_deliveries: expected,
            delivered,
            by_gossip: self.by_gossip,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
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
    fn explain(&self, i: u32, m: u16, t: u64, id: &Id, u: &mut Undelivered) {
        let n = &self.nodes[i as usize];
        let honest: Vec<u32> = n
            .peers
            .iter()
            .copied()
            .filter(|p| self.nodes[*p as usize].honest)
            .collect();
        let holding = honest
            .iter()
            .filter(|p| self.nodes[**p as usize].holds(m, t, id))
            .count();
        let following = honest
            .iter()
            .filter(|p| self.nodes[**p as usize].followed.contains(&m))
            .count();
        let holders = self
            .nodes
            .iter()
            .filter(|x| x.honest && x.holds(m, t, id))
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
        if std::env::var_os("SIM_MISSING").is_some() {
            let shard = market::shard(&self.market_key(m));
            let on_shard = honest
                .iter()
                .filter(|p| self.nodes[**p as usize].shards.contains(&shard))
                .count();
            eprintln!(
                "missing: node {i} market {m} published {} ms: {cause}; peers {} (honest {}, \
                 on the shard {on_shard}, following {following}, holding {holding}); \
                 follows {}; honest holders in all {holders}; banned {}",
                t - EPOCH_MS,
                n.peers.len(),
                honest.len(),
                n.followed.len(),
                n.policy.banned().count(),
            );
            eprintln!(
                "  id {} mine {:?}",
                hex(&id.0),
                n.store.get(&m).map(|s| s
                    .iter()
                    .map(|(t, x)| (t - EPOCH_MS, hex(x)))
                    .collect::<Vec<_>>())
            );
        }
    }
}

/// Reconciles market `m` of `a` (initiator) with `b` through `passalong-reconcile`: what `a`
/// lacks, the round trips, and the bytes of the messages.
fn reconcile(a: &Node, b: &Node, m: u16) -> (Vec<(u64, Id)>, u64, u64) {
    let storage = |n: &Node| {
        Storage::from_items(n.store.get(&m).into_iter().flatten().map(|(t, id)| Item {
            created_at: *t,
            id: *id,
        }))
    };
    let (sa, sb) = (storage(a), storage(b));
    let mut ra = Reconciler::new(&sa, ReconcileConfig::default());
    let mut bytes = 0u64;
    let mut rounds = 0u64;
    let Ok(mut msg) = ra.initiate() else {
        return (Vec::new(), 0, 0);
    };
    let times: HashMap<[u8; 32], u64> = b
        .store
        .get(&m)
        .into_iter()
        .flatten()
        .map(|(t, id)| (*id, *t))
        .collect();
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
                    .filter_map(|id| Some((*times.get(id)?, Id(*id))))
                    .collect();
                return (need, rounds, bytes);
            }
            Err(_) => break,
        }
    }
    (Vec::new(), rounds, bytes)
}

/// A stable pseudo-random order of a node's peers for one shard.
fn mix(a: u32, b: u32, shard: u16) -> u64 {
    let x = (u64::from(a) << 32) ^ u64::from(b) ^ (u64::from(shard) << 48);
    let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn trace(i: u32) -> bool {
    std::env::var("SIM_TRACE").is_ok_and(|v| v.split(',').any(|x| x == i.to_string()))
}

fn hex(x: &[u8; 32]) -> String {
    x[..4].iter().map(|b| format!("{b:02x}")).collect()
}
