//! The network's policy as a pure state machine: who is admitted, penalised and banned, how
//! fast a peer may ask, when and with whom to reconcile which markets, which shard topics to
//! hold, how fast this node publishes.
//!
//! Like iroh-gossip's `proto` and this project's `protocol/`, it does no IO: no clock, no
//! randomness of its own, no swarm. [`Policy::handle`] takes an [`Input`], the time and an
//! RNG, and appends [`Output`]s; the event loop translates swarm events into inputs and
//! outputs into swarm calls, and the simulator (`testnet`'s `sim`) runs thousands of these
//! over a simulated network. Peers are any `Copy + Ord + Hash` value, so the simulator can use
//! small integers where the event loop uses libp2p's `PeerId`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use passalong_protocol::PublicKey;
use rand_core::RngCore;

use crate::market::{self, Shard};
use crate::rate::Bucket;

/// Application-score penalty per offence; two of them (−20) stay above the ban line (−30),
/// three pass it.
pub const PENALTY: f64 = -10.0;
/// Application scores shrink by this factor each tick (one second): an offence is forgiven
/// after a few minutes.
const SCORE_DECAY: f64 = 0.98;
/// Scores closer to zero than this are forgotten.
const SCORE_FORGET: f64 = 0.5;
/// Most application scores remembered for disconnected peers (each about 64 bytes): beyond
/// it the mildest are forgotten first. Bans are kept apart and expire on their own.
pub const MAX_REMEMBERED_SCORES: usize = 10_000;
/// Most bans held at once (a ban is refused connections for `ban_for`); beyond it the one
/// that ends soonest is lifted early.
pub const MAX_BANS: usize = 10_000;
/// Peers reconciled with at once when a market is followed on request.
const FOLLOW_SYNC_PEERS: usize = 3;
/// After a session that brought something, the next one starts this soon.
const CATCH_UP_AFTER: Duration = Duration::from_secs(1);
/// Alone, the bootstrap peers are dialled again this often.
const REDIAL_EVERY: Duration = Duration::from_secs(10);
/// A subscribed shard with fewer connected peers on it than this is short: gossip of its
/// markets would not reach this node, so peers on it are looked for (gossipsub's D_low).
pub const MIN_SHARD_PEERS: usize = 4;
/// A short shard's peers are looked for at most this often.
const FIND_EVERY: Duration = Duration::from_secs(30);
/// A followed market no connected peer has shown it holds for this many sync intervals has
/// its followers looked for.
const HOLDERS_PATIENCE: u32 = 3;
/// A market's followers are looked for at most this often.
const SEEK_HOLDERS_EVERY: Duration = Duration::from_secs(300);
/// Markets announced in the DHT per tick: a node following 10,000 markets announces them
/// all in under nine minutes without flooding its peers with DHT queries at start.
const ANNOUNCES_PER_TICK: usize = 20;
/// Searches for peers started in one tick at most.
const FINDS_PER_TICK: usize = 4;

/// The policy's settings (the node's config fills them; see `docs/limits.md`).
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// Dial more peers while fewer than this are connected.
    pub target_peers: usize,
    /// Reconcile with one peer chosen at random this often (and with each new peer at once).
    pub sync_interval: Duration,
    /// Inbound sync requests per second one peer may make (burst: 10 seconds' worth).
    pub requests_per_sec: f64,
    /// Gossip messages per second one peer may send (burst: 10 seconds' worth).
    pub messages_per_sec: f64,
    /// Gossip messages per second one author's attestations may take through this node
    /// (burst: 10 seconds' worth); the rest waits for anti-entropy.
    pub author_messages_per_sec: f64,
    /// Attestations per second this node publishes itself (burst: 10 seconds' worth); the
    /// rest reaches peers by anti-entropy, so a large import does not look like a flood.
    pub publish_per_sec: f64,
    /// A peer whose score falls below this is disconnected and refused.
    pub ban_score: f64,
    /// How long a ban lasts.
    pub ban_for: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            target_peers: 8,
            sync_interval: Duration::from_secs(30),
            requests_per_sec: 50.0,
            messages_per_sec: 2_000.0,
            author_messages_per_sec: 50.0,
            publish_per_sec: 200.0,
            ban_score: -30.0,
            ban_for: Duration::from_secs(600),
        }
    }
}

/// Something that happened, as the policy needs to know it.
#[derive(Clone, Debug, PartialEq)]
pub enum Input<P> {
    /// The first connection with a peer opened.
    Connected(P),
    /// The last connection with a peer closed.
    Disconnected(P),
    /// A gossip message from `peer`, before anything else is done with it.
    Gossip(P),
    /// A gossip message from `peer` passed the stateless checks; `author` signed it.
    Authored {
        /// The peer that forwarded it.
        peer: P,
        /// Its signer.
        author: PublicKey,
    },
    /// An inbound sync request from `peer`, before it is answered.
    Request(P),
    /// `peer` broke a rule (garbage, an invalid attestation, a bad answer).
    Offence(P, &'static str),
    /// Gossipsub's own score of a connected peer, read each tick.
    GossipScore(P, f64),
    /// A reconciliation session with a peer ended (well or not).
    SyncEnded {
        /// The peer.
        peer: P,
        /// Attestations it brought.
        fetched: usize,
        /// The markets it holds something of (it said so in the digest round).
        held: Vec<PublicKey>,
    },
    /// Markets to follow: `urgent` when asked for now (caught up at once), not when read
    /// from storage.
    Follow {
        /// The markets.
        markets: Vec<PublicKey>,
        /// Reconcile them with a few peers at once.
        urgent: bool,
    },
    /// This node wants to publish an attestation of `market`.
    Publish(PublicKey),
    /// The operator asks for a session with `peer` now.
    SyncNow(P),
    /// The operator lifts a ban.
    Unban(P),
    /// A connected peer subscribed to a shard topic.
    PeerSubscribed(P, Shard),
    /// A connected peer left a shard topic.
    PeerUnsubscribed(P, Shard),
    /// One second passed; `connected` peers are connected now.
    Tick {
        /// Connected peers, in any order.
        connected: Vec<P>,
    },
}

/// What the IO side must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<P> {
    /// Drop this gossip message unseen (the sender is over its rate, or the author over its
    /// budget): it is neither stored nor forwarded.
    IgnoreGossip,
    /// Answer this sync request.
    Serve,
    /// Refuse this sync request (the peer is banned in the same breath).
    Refuse,
    /// Publish the attestation asked for.
    Publish,
    /// Do not publish it now: anti-entropy will carry it.
    Defer,
    /// Keep it and publish it at [`Output::PublishHeld`] of its shard: no connected peer is
    /// on that shard, so gossip would reach no one, and anti-entropy alone carries news from
    /// one node to the next only as fast as each pulls from a peer that has it.
    Hold,
    /// A peer on this shard connected: publish what was held for it.
    PublishHeld(Shard),
    /// Tell gossipsub this peer's application score.
    SetAppScore(P, i64),
    /// Disconnect the peer and refuse it until [`Output::Unban`].
    Ban(P, &'static str),
    /// Accept the peer again.
    Unban(P),
    /// Reconcile these markets with the peer (sorted).
    StartSync(P, Vec<PublicKey>),
    /// Subscribe to a shard topic.
    Subscribe(Shard),
    /// Dial the bootstrap peers again.
    RedialBootstrap,
    /// Dial this many more peers from the routing table.
    DialMore(usize),
    /// Look for peers subscribed to this shard (they announce it in the DHT) and dial some.
    FindPeers(Shard),
    /// Announce in the DHT that this node follows the market.
    Announce(PublicKey),
    /// Look for peers that follow this market (their announcements) and dial some: no
    /// connected peer has shown it holds any of it for a while.
    FindHolders(PublicKey),
}

/// A connected peer's budgets.
#[derive(Clone, Debug)]
struct Peer {
    requests: Bucket,
    messages: Bucket,
    /// The shard topics it subscribes to.
    shards: BTreeSet<Shard>,
    /// When the last session with it started.
    last_sync: Option<Instant>,
    /// Its last session showed it holds some of the markets followed here.
    useful: bool,
}

/// The policy of one node.
#[derive(Debug)]
pub struct Policy<P> {
    config: PolicyConfig,
    peers: HashMap<P, Peer>,
    scores: HashMap<P, f64>,
    banned: HashMap<P, Instant>,
    /// Per-author gossip budgets, for authors seen within the last `AUTHOR_TTL`.
    authors: HashMap<PublicKey, Bucket>,
    followed: BTreeSet<PublicKey>,
    shards: BTreeSet<Shard>,
    /// Sessions running, and for each the markets followed since it started (run next).
    syncing: HashMap<P, BTreeSet<PublicKey>>,
    publish: Bucket,
    next_sync: Option<Instant>,
    last_redial: Option<Instant>,
    /// When peers were last looked for on each shard.
    found: HashMap<Shard, Instant>,
    /// Each followed market: when a peer last showed it holds some of it (or when it was
    /// followed), and when holders were last looked for.
    last_held: HashMap<PublicKey, Instant>,
    holders_sought: HashMap<PublicKey, Instant>,
    /// Markets followed but not yet announced (a few per tick: each is a DHT query).
    to_announce: VecDeque<PublicKey>,
    /// Shards with publications held for want of a peer on them.
    held: BTreeSet<Shard>,
}

/// Author budgets not used for this long are forgotten: memory stays proportional to the
/// authors active in the last minute, each about 80 bytes.
const AUTHOR_TTL: Duration = Duration::from_secs(60);
/// Most author budgets held at once; beyond it the fullest (least recently used) go first.
pub const MAX_AUTHORS: usize = 100_000;

impl<P: Copy + Eq + Hash + Ord> Policy<P> {
    /// A policy starting at `now`.
    pub fn new(config: PolicyConfig, now: Instant) -> Policy<P> {
        let publish = Bucket::new(config.publish_per_sec, config.publish_per_sec * 10.0, now);
        Policy {
            config,
            peers: HashMap::new(),
            scores: HashMap::new(),
            banned: HashMap::new(),
            authors: HashMap::new(),
            followed: BTreeSet::new(),
            shards: BTreeSet::new(),
            syncing: HashMap::new(),
            publish,
            next_sync: None,
            // The IO side dials the bootstrap peers at start.
            last_redial: Some(now),
            found: HashMap::new(),
            last_held: HashMap::new(),
            holders_sought: HashMap::new(),
            to_announce: VecDeque::new(),
            held: BTreeSet::new(),
        }
    }

    /// The markets followed.
    pub fn followed(&self) -> &BTreeSet<PublicKey> {
        &self.followed
    }

    /// Whether `market` is followed.
    pub fn follows(&self, market: &PublicKey) -> bool {
        self.followed.contains(market)
    }

    /// Whether `peer` is banned now.
    pub fn is_banned(&self, peer: &P) -> bool {
        self.banned.contains_key(peer)
    }

    /// Banned peers.
    pub fn banned(&self) -> impl Iterator<Item = &P> {
        self.banned.keys()
    }

    /// Sessions running.
    pub fn syncing(&self) -> usize {
        self.syncing.len()
    }

    /// Entries held for peers, authors and bans: what the policy's memory grows with.
    pub fn footprint(&self) -> usize {
        self.peers.len() + self.scores.len() + self.banned.len() + self.authors.len()
    }

    /// Handles one input at `now`, appending what to do to `out`.
    pub fn handle(
        &mut self,
        input: Input<P>,
        now: Instant,
        rng: &mut impl RngCore,
        out: &mut Vec<Output<P>>,
    ) {
        match input {
            Input::Connected(p) => {
                let rate = (self.config.requests_per_sec, self.config.messages_per_sec);
                self.peers.insert(
                    p,
                    Peer {
                        requests: Bucket::new(rate.0, rate.0 * 10.0, now),
                        messages: Bucket::new(rate.1, rate.1 * 10.0, now),
                        shards: BTreeSet::new(),
                        last_sync: None,
                        useful: false,
                    },
                );
                self.start_sync(p, None, now, out);
            }
            Input::Disconnected(p) => {
                self.peers.remove(&p);
                self.syncing.remove(&p);
            }
            Input::Gossip(p) => {
                let allowed = self
                    .peers
                    .get_mut(&p)
                    .is_some_and(|peer| peer.messages.take(1.0, now));
                if !allowed {
                    out.push(Output::IgnoreGossip);
                    if self.peers.contains_key(&p) {
                        self.penalise(p, "gossip flood", now, out);
                    }
                }
            }
            Input::Authored { author, .. } => {
                let rate = self.config.author_messages_per_sec;
                if self.authors.len() >= MAX_AUTHORS && !self.authors.contains_key(&author) {
                    self.forget_authors(now);
                }
                let allowed = self
                    .authors
                    .entry(author)
                    .or_insert_with(|| Bucket::new(rate, rate * 10.0, now))
                    .take(1.0, now);
                // Not the forwarder's fault: an honest peer forwards what it accepted.
                if !allowed {
                    out.push(Output::IgnoreGossip);
                }
            }
            Input::Request(p) => match self.peers.get_mut(&p).map(|x| x.requests.take(1.0, now)) {
                Some(true) => out.push(Output::Serve),
                Some(false) => {
                    out.push(Output::Refuse);
                    self.ban(p, "sync request rate exceeded", now, out);
                }
                // Not connected (any more), or banned: nothing to answer.
                None => out.push(Output::Refuse),
            },
            Input::Offence(p, why) => self.penalise(p, why, now, out),
            Input::GossipScore(p, s) => {
                if s < self.config.ban_score {
                    self.ban(p, "gossip score below the ban line", now, out);
                }
            }
            Input::SyncEnded {
                peer: p,
                fetched,
                held,
            } => {
                if let Some(peer) = self.peers.get_mut(&p) {
                    peer.useful = !held.is_empty();
                }
                for m in held {
                    if let Some(t) = self.last_held.get_mut(&m) {
                        *t = now;
                    }
                }
                // A session that brought something means news this node missed (a lost
                // message, a partition, a restart): reconcile with the next peer soon
                // rather than in `sync_interval`.
                if fetched > 0 {
                    let soon = now + CATCH_UP_AFTER;
                    self.next_sync = Some(self.next_sync.map_or(soon, |t| t.min(soon)));
                }
                if let Some(more) = self.syncing.remove(&p) {
                    if !more.is_empty() && self.peers.contains_key(&p) {
                        self.start_sync(p, Some(more), now, out);
                    }
                }
            }
            Input::Follow { markets, urgent } => {
                let new: BTreeSet<PublicKey> = markets
                    .into_iter()
                    .filter(|m| self.followed.insert(*m))
                    .collect();
                for m in &new {
                    self.last_held.insert(*m, now);
                    self.to_announce.push_back(*m);
                    let s = market::shard(m);
                    if self.shards.insert(s) {
                        out.push(Output::Subscribe(s));
                    }
                }
                if !new.is_empty() {
                    // Sessions running carry on with their markets; these come after.
                    for (_, more) in self.syncing.iter_mut() {
                        more.extend(new.iter().copied());
                    }
                    if urgent {
                        let mut peers: Vec<P> = self
                            .peers
                            .keys()
                            .filter(|p| !self.syncing.contains_key(p))
                            .copied()
                            .collect();
                        peers.sort();
                        shuffle(&mut peers, rng);
                        for p in peers.into_iter().take(FOLLOW_SYNC_PEERS) {
                            self.start_sync(p, Some(new.clone()), now, out);
                        }
                    }
                }
            }
            Input::Publish(m) => {
                if !self.followed.contains(&m) {
                    self.handle(
                        Input::Follow {
                            markets: vec![m],
                            urgent: false,
                        },
                        now,
                        rng,
                        out,
                    );
                }
                let s = market::shard(&m);
                if !self.peers.values().any(|p| p.shards.contains(&s)) {
                    self.held.insert(s);
                    out.push(Output::Hold);
                    return;
                }
                out.push(if self.publish.take(1.0, now) {
                    Output::Publish
                } else {
                    Output::Defer
                });
            }
            Input::SyncNow(p) => self.start_sync(p, None, now, out),
            Input::Unban(p) => {
                self.banned.remove(&p);
                self.scores.remove(&p);
                out.push(Output::Unban(p));
            }
            Input::PeerSubscribed(p, s) => {
                if let Some(peer) = self.peers.get_mut(&p) {
                    peer.shards.insert(s);
                    if self.held.remove(&s) {
                        out.push(Output::PublishHeld(s));
                    }
                }
            }
            Input::PeerUnsubscribed(p, s) => {
                if let Some(peer) = self.peers.get_mut(&p) {
                    peer.shards.remove(&s);
                }
            }
            Input::Tick { connected } => self.tick(connected, now, rng, out),
        }
    }

    fn tick(
        &mut self,
        mut connected: Vec<P>,
        now: Instant,
        rng: &mut impl RngCore,
        out: &mut Vec<Output<P>>,
    ) {
        let expired: Vec<P> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.banned.remove(&p);
            out.push(Output::Unban(p));
        }
        for s in self.scores.values_mut() {
            *s *= SCORE_DECAY;
        }
        let peers = &self.peers;
        self.scores
            .retain(|p, s| s.abs() >= SCORE_FORGET || peers.contains_key(p));
        if self.scores.len() > MAX_REMEMBERED_SCORES {
            let mut mild: Vec<(P, f64)> = self
                .scores
                .iter()
                .filter(|(p, _)| !self.peers.contains_key(p))
                .map(|(p, s)| (*p, s.abs()))
                .collect();
            mild.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let excess = self.scores.len() - MAX_REMEMBERED_SCORES;
            for (p, _) in mild.into_iter().take(excess) {
                self.scores.remove(&p);
            }
        }
        self.authors
            .retain(|_, b| now.saturating_duration_since(b.last()) < AUTHOR_TTL);
        if connected.is_empty() {
            if self
                .last_redial
                .is_none_or(|t| now.saturating_duration_since(t) >= REDIAL_EVERY)
            {
                self.last_redial = Some(now);
                out.push(Output::RedialBootstrap);
            }
        } else if connected.len() < self.config.target_peers {
            out.push(Output::DialMore(self.config.target_peers - connected.len()));
        }
        self.find_short_shards(now, out);
        self.find_holders(now, out);
        let n = self.to_announce.len().min(ANNOUNCES_PER_TICK);
        out.extend(self.to_announce.drain(..n).map(Output::Announce));
        let due = self.next_sync.is_none_or(|t| now >= t);
        if due && !connected.is_empty() {
            self.next_sync = Some(now + self.config.sync_interval);
            // Among the peers that hold something followed here (or were never asked), the
            // one reconciled with longest ago, ties broken at random: in turn, every such peer
            // is reconciled with within `their number × sync_interval`. The others have
            // nothing to give.
            connected.sort();
            shuffle(&mut connected, rng);
            let useful = |p: &P| {
                self.peers
                    .get(p)
                    .is_some_and(|x| x.useful || x.last_sync.is_none())
            };
            let mut candidates: Vec<P> = connected.iter().copied().filter(useful).collect();
            if candidates.is_empty() {
                candidates = connected;
            }
            let last = |p: &P| self.peers.get(p).and_then(|x| x.last_sync);
            if let Some(p) = candidates.iter().min_by_key(|p| last(p)).copied() {
                self.start_sync(p, None, now, out);
            }
        }
    }

    /// Peers on each subscribed shard, counted from their subscriptions.
    pub fn shard_peers(&self, shard: Shard) -> usize {
        self.peers
            .values()
            .filter(|p| p.shards.contains(&shard))
            .count()
    }

    /// Looks for peers on the subscribed shards that have fewer than [`MIN_SHARD_PEERS`],
    /// each at most every [`FIND_EVERY`], a few per tick.
    fn find_short_shards(&mut self, now: Instant, out: &mut Vec<Output<P>>) {
        let mut counts: HashMap<Shard, usize> = HashMap::new();
        for p in self.peers.values() {
            for s in &p.shards {
                *counts.entry(*s).or_default() += 1;
            }
        }
        let short: Vec<Shard> = self
            .shards
            .iter()
            .filter(|s| counts.get(s).copied().unwrap_or(0) < MIN_SHARD_PEERS)
            .filter(|s| {
                self.found
                    .get(s)
                    .is_none_or(|t| now.saturating_duration_since(*t) >= FIND_EVERY)
            })
            .take(FINDS_PER_TICK)
            .copied()
            .collect();
        for s in short {
            self.found.insert(s, now);
            out.push(Output::FindPeers(s));
        }
    }

    /// Looks for followers of the followed markets that no connected peer has shown it holds
    /// for [`HOLDERS_PATIENCE`] × the sync interval, each at most every [`SEEK_HOLDERS_EVERY`],
    /// a few per tick. Gossip reaches a node through any peer on the shard, but what gossip
    /// missed (a partition, churn) only a holder can give it.
    fn find_holders(&mut self, now: Instant, out: &mut Vec<Output<P>>) {
        let patience = self.config.sync_interval * HOLDERS_PATIENCE;
        let sought = &self.holders_sought;
        let mut due: Vec<PublicKey> = self
            .last_held
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= patience)
            .filter(|(m, _)| {
                sought
                    .get(m)
                    .is_none_or(|t| now.saturating_duration_since(*t) >= SEEK_HOLDERS_EVERY)
            })
            .map(|(m, _)| *m)
            .collect();
        due.sort();
        for m in due.into_iter().take(FINDS_PER_TICK) {
            self.holders_sought.insert(m, now);
            out.push(Output::FindHolders(m));
        }
    }

    /// Starts a session with `p` for `markets` (all followed when `None`), or adds them to
    /// what runs after the one under way.
    fn start_sync(
        &mut self,
        p: P,
        markets: Option<BTreeSet<PublicKey>>,
        now: Instant,
        out: &mut Vec<Output<P>>,
    ) {
        if self.banned.contains_key(&p) || self.followed.is_empty() {
            return;
        }
        let markets = markets.unwrap_or_else(|| self.followed.clone());
        if let Some(more) = self.syncing.get_mut(&p) {
            more.extend(markets);
            return;
        }
        self.syncing.insert(p, BTreeSet::new());
        if let Some(peer) = self.peers.get_mut(&p) {
            peer.last_sync = Some(now);
        }
        out.push(Output::StartSync(p, markets.into_iter().collect()));
    }

    fn penalise(&mut self, p: P, why: &'static str, now: Instant, out: &mut Vec<Output<P>>) {
        let s = self.scores.entry(p).or_insert(0.0);
        *s += PENALTY;
        let score = *s;
        out.push(Output::SetAppScore(p, score.round() as i64));
        if score <= self.config.ban_score {
            self.ban(p, why, now, out);
        }
    }

    fn ban(&mut self, p: P, why: &'static str, now: Instant, out: &mut Vec<Output<P>>) {
        if self.banned.contains_key(&p) {
            return;
        }
        if self.banned.len() >= MAX_BANS {
            if let Some(first) = self
                .banned
                .iter()
                .min_by_key(|(p, until)| (**until, **p))
                .map(|(p, _)| *p)
            {
                self.banned.remove(&first);
                out.push(Output::Unban(first));
            }
        }
        self.banned.insert(p, now + self.config.ban_for);
        self.peers.remove(&p);
        self.syncing.remove(&p);
        out.push(Output::Ban(p, why));
    }

    fn forget_authors(&mut self, now: Instant) {
        self.authors
            .retain(|_, b| now.saturating_duration_since(b.last()) < AUTHOR_TTL);
        if self.authors.len() >= MAX_AUTHORS {
            let mut by_age: Vec<(Instant, PublicKey)> =
                self.authors.iter().map(|(a, b)| (b.last(), *a)).collect();
            by_age.sort();
            for (_, a) in by_age.into_iter().take(MAX_AUTHORS / 10) {
                self.authors.remove(&a);
            }
        }
    }
}

/// Fisher–Yates with the injected RNG.
fn shuffle<T>(v: &mut [T], rng: &mut impl RngCore) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn run(
        p: &mut Policy<u32>,
        input: Input<u32>,
        now: Instant,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Output<u32>> {
        let mut out = Vec::new();
        p.handle(input, now, rng, &mut out);
        out
    }

    fn follow(p: &mut Policy<u32>, markets: Vec<PublicKey>, t: Instant, rng: &mut ChaCha8Rng) {
        run(
            p,
            Input::Follow {
                markets,
                urgent: false,
            },
            t,
            rng,
        );
    }

    fn setup() -> (Policy<u32>, Instant, ChaCha8Rng) {
        let t0 = Instant::now();
        (
            Policy::new(PolicyConfig::default(), t0),
            t0,
            ChaCha8Rng::seed_from_u64(7),
        )
    }

    fn key(i: u8) -> PublicKey {
        PublicKey([i; 32])
    }

    #[test]
    fn three_offences_ban_and_the_ban_expires() {
        let (mut p, t0, mut rng) = setup();
        run(&mut p, Input::Connected(1), t0, &mut rng);
        assert_eq!(
            run(&mut p, Input::Offence(1, "x"), t0, &mut rng),
            vec![Output::SetAppScore(1, -10)]
        );
        run(&mut p, Input::Offence(1, "x"), t0, &mut rng);
        let out = run(&mut p, Input::Offence(1, "x"), t0, &mut rng);
        assert!(out.contains(&Output::Ban(1, "x")), "{out:?}");
        assert!(p.is_banned(&1));
        let later = t0 + Duration::from_secs(601);
        let out = run(&mut p, Input::Tick { connected: vec![] }, later, &mut rng);
        assert!(out.contains(&Output::Unban(1)));
        assert!(!p.is_banned(&1));
    }

    #[test]
    fn a_peer_over_its_request_rate_is_refused_and_banned() {
        let (mut p, t0, mut rng) = setup();
        run(&mut p, Input::Connected(1), t0, &mut rng);
        // The burst is ten seconds' worth.
        for _ in 0..500 {
            assert_eq!(
                run(&mut p, Input::Request(1), t0, &mut rng),
                vec![Output::Serve]
            );
        }
        let out = run(&mut p, Input::Request(1), t0, &mut rng);
        assert_eq!(out[0], Output::Refuse);
        assert!(p.is_banned(&1));
    }

    #[test]
    fn one_author_over_budget_is_dropped_without_blaming_the_forwarder() {
        let (mut p, t0, mut rng) = setup();
        run(&mut p, Input::Connected(1), t0, &mut rng);
        let a = key(9);
        let mut ignored = 0;
        for _ in 0..1_000 {
            let out = run(&mut p, Input::Authored { peer: 1, author: a }, t0, &mut rng);
            ignored += out.iter().filter(|o| **o == Output::IgnoreGossip).count();
            assert!(out.iter().all(|o| !matches!(o, Output::SetAppScore(..))));
        }
        assert_eq!(ignored, 500, "the burst is 10 s at 50/s");
        // Another author is not affected.
        let out = run(
            &mut p,
            Input::Authored {
                peer: 1,
                author: key(8),
            },
            t0,
            &mut rng,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn publishing_is_paced_and_the_rest_deferred() {
        let (mut p, t0, mut rng) = setup();
        let m = key(1);
        run(&mut p, Input::Connected(1), t0, &mut rng);
        run(
            &mut p,
            Input::PeerSubscribed(1, market::shard(&m)),
            t0,
            &mut rng,
        );
        let outs: Vec<Output<u32>> = (0..3_000)
            .flat_map(|_| run(&mut p, Input::Publish(m), t0, &mut rng))
            .filter(|o| matches!(o, Output::Publish | Output::Defer))
            .collect();
        let published = outs.iter().filter(|o| **o == Output::Publish).count();
        assert_eq!(published, 2_000);
        // A second later, 200 more.
        let t1 = t0 + Duration::from_secs(1);
        let published = (0..1_000)
            .flat_map(|_| run(&mut p, Input::Publish(m), t1, &mut rng))
            .filter(|o| *o == Output::Publish)
            .count();
        assert_eq!(published, 200);
    }

    #[test]
    fn a_publication_without_a_peer_on_its_shard_is_held_until_one_comes() {
        let (mut p, t0, mut rng) = setup();
        let m = key(1);
        let s = market::shard(&m);
        let other = (s + 1) % market::SHARDS;
        follow(&mut p, vec![m], t0, &mut rng);
        assert!(run(&mut p, Input::Publish(m), t0, &mut rng).contains(&Output::Hold));
        run(&mut p, Input::Connected(1), t0, &mut rng);
        assert!(run(&mut p, Input::PeerSubscribed(1, other), t0, &mut rng).is_empty());
        assert!(run(&mut p, Input::Publish(m), t0, &mut rng).contains(&Output::Hold));
        assert_eq!(
            run(&mut p, Input::PeerSubscribed(1, s), t0, &mut rng),
            vec![Output::PublishHeld(s)]
        );
        // Released once; from now on published at once.
        run(&mut p, Input::Connected(2), t0, &mut rng);
        assert!(run(&mut p, Input::PeerSubscribed(2, s), t0, &mut rng).is_empty());
        assert_eq!(
            run(&mut p, Input::Publish(m), t0, &mut rng),
            vec![Output::Publish]
        );
    }

    #[test]
    fn ten_thousand_markets_hold_a_bounded_number_of_topics() {
        let (mut p, t0, mut rng) = setup();
        let markets: Vec<PublicKey> = (0..10_000u32)
            .map(|i| PublicKey(*blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect();
        let out = run(
            &mut p,
            Input::Follow {
                markets,
                urgent: false,
            },
            t0,
            &mut rng,
        );
        let mut announced = 0;
        let mut t = t0;
        for _ in 0..600 {
            t += Duration::from_secs(1);
            announced += run(&mut p, Input::Tick { connected: vec![] }, t, &mut rng)
                .iter()
                .filter(|o| matches!(o, Output::Announce(_)))
                .count();
        }
        assert_eq!(announced, 10_000, "all announced, 20 a second");
        let subs = out
            .iter()
            .filter(|o| matches!(o, Output::Subscribe(_)))
            .count();
        assert_eq!(subs, market::SHARDS as usize);
        assert_eq!(p.followed().len(), 10_000);
    }

    #[test]
    fn markets_followed_during_a_session_are_reconciled_after_it() {
        let (mut p, t0, mut rng) = setup();
        follow(&mut p, vec![key(1)], t0, &mut rng);
        let out = run(&mut p, Input::Connected(5), t0, &mut rng);
        assert_eq!(out, vec![Output::StartSync(5, vec![key(1)])]);
        let out = run(
            &mut p,
            Input::Follow {
                markets: vec![key(2)],
                urgent: true,
            },
            t0,
            &mut rng,
        );
        assert!(
            !out.iter().any(|o| matches!(o, Output::StartSync(..))),
            "one session per peer at a time"
        );
        let out = run(
            &mut p,
            Input::SyncEnded {
                peer: 5,
                fetched: 0,
                held: vec![],
            },
            t0,
            &mut rng,
        );
        assert_eq!(out, vec![Output::StartSync(5, vec![key(2)])]);
        assert!(run(
            &mut p,
            Input::SyncEnded {
                peer: 5,
                fetched: 0,
                held: vec![]
            },
            t0,
            &mut rng
        )
        .is_empty());
    }

    #[test]
    fn the_periodic_session_peer_comes_from_the_rng() {
        let (mut p, t0, _) = setup();
        run(
            &mut p,
            Input::Follow {
                markets: vec![key(1)],
                urgent: false,
            },
            t0,
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        let pick = |seed: u64| {
            let mut p2 = Policy::<u32>::new(PolicyConfig::default(), t0);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            run(
                &mut p2,
                Input::Follow {
                    markets: vec![key(1)],
                    urgent: false,
                },
                t0,
                &mut rng,
            );
            run(
                &mut p2,
                Input::Tick {
                    connected: (0..50).collect(),
                },
                t0,
                &mut rng,
            )
            .into_iter()
            .find_map(|o| match o {
                Output::StartSync(peer, _) => Some(peer),
                _ => None,
            })
        };
        assert_eq!(pick(1), pick(1), "same seed, same choice");
        // (all 50 peers are equally "longest ago": the RNG decides)
        let picks: std::collections::HashSet<Option<u32>> = (0..20).map(pick).collect();
        assert!(picks.len() > 5, "different seeds spread: {picks:?}");
    }

    #[test]
    fn a_shard_short_of_peers_is_searched_now_and_then() {
        let (mut p, t0, mut rng) = setup();
        follow(&mut p, vec![key(1)], t0, &mut rng);
        let shard = market::shard(&key(1));
        let finds = |out: Vec<Output<u32>>| {
            out.into_iter()
                .filter(|o| matches!(o, Output::FindPeers(_)))
                .collect::<Vec<_>>()
        };
        let tick = |p: &mut Policy<u32>, t: Instant, rng: &mut ChaCha8Rng| {
            run(p, Input::Tick { connected: vec![] }, t, rng)
        };
        assert_eq!(
            finds(tick(&mut p, t0, &mut rng)),
            vec![Output::FindPeers(shard)]
        );
        let t1 = t0 + Duration::from_secs(1);
        assert!(
            finds(tick(&mut p, t1, &mut rng)).is_empty(),
            "not every tick"
        );
        // Four peers on the shard: no longer short.
        for peer in 0..MIN_SHARD_PEERS as u32 {
            run(&mut p, Input::Connected(peer), t1, &mut rng);
            run(&mut p, Input::PeerSubscribed(peer, shard), t1, &mut rng);
        }
        assert_eq!(p.shard_peers(shard), MIN_SHARD_PEERS);
        let t2 = t0 + Duration::from_secs(31);
        assert!(finds(tick(&mut p, t2, &mut rng)).is_empty());
        run(&mut p, Input::Disconnected(0), t2, &mut rng);
        let t3 = t0 + Duration::from_secs(62);
        assert_eq!(
            finds(tick(&mut p, t3, &mut rng)),
            vec![Output::FindPeers(shard)]
        );
    }

    #[test]
    fn periodic_sessions_take_peers_in_turn_and_hurry_after_news() {
        let (mut p, t0, mut rng) = setup();
        follow(&mut p, vec![key(1)], t0, &mut rng);
        for peer in 0..5u32 {
            run(&mut p, Input::Connected(peer), t0, &mut rng);
            run(
                &mut p,
                Input::SyncEnded {
                    peer,
                    fetched: 0,
                    held: vec![],
                },
                t0,
                &mut rng,
            );
        }
        let mut picked = Vec::new();
        let mut t = t0;
        for _ in 0..5 {
            t += Duration::from_secs(30);
            let out = run(
                &mut p,
                Input::Tick {
                    connected: (0..5).collect(),
                },
                t,
                &mut rng,
            );
            for o in out {
                if let Output::StartSync(peer, _) = o {
                    picked.push(peer);
                    run(
                        &mut p,
                        Input::SyncEnded {
                            peer,
                            fetched: 0,
                            held: vec![],
                        },
                        t,
                        &mut rng,
                    );
                }
            }
        }
        picked.sort();
        assert_eq!(
            picked,
            vec![0, 1, 2, 3, 4],
            "each peer once in five intervals"
        );
        // A session that brought something: the next starts a second later.
        run(
            &mut p,
            Input::SyncEnded {
                peer: 0,
                fetched: 3,
                held: vec![],
            },
            t,
            &mut rng,
        );
        let out = run(
            &mut p,
            Input::Tick {
                connected: (0..5).collect(),
            },
            t + Duration::from_secs(1),
            &mut rng,
        );
        assert!(
            out.iter().any(|o| matches!(o, Output::StartSync(..))),
            "{out:?}"
        );
    }

    #[test]
    fn periodic_sessions_go_to_peers_that_hold_what_is_followed() {
        let (mut p, t0, mut rng) = setup();
        follow(&mut p, vec![key(1)], t0, &mut rng);
        for peer in 0..5u32 {
            run(&mut p, Input::Connected(peer), t0, &mut rng);
            let held = if peer == 3 { vec![key(1)] } else { vec![] };
            run(
                &mut p,
                Input::SyncEnded {
                    peer,
                    fetched: 0,
                    held,
                },
                t0,
                &mut rng,
            );
        }
        let mut t = t0;
        for _ in 0..3 {
            t += Duration::from_secs(30);
            let out = run(
                &mut p,
                Input::Tick {
                    connected: (0..5).collect(),
                },
                t,
                &mut rng,
            );
            assert!(out.contains(&Output::StartSync(3, vec![key(1)])), "{out:?}");
            run(
                &mut p,
                Input::SyncEnded {
                    peer: 3,
                    fetched: 0,
                    held: vec![key(1)],
                },
                t,
                &mut rng,
            );
        }
    }

    #[test]
    fn followers_are_sought_for_a_market_no_peer_holds() {
        let (mut p, t0, mut rng) = setup();
        follow(&mut p, vec![key(1), key(2)], t0, &mut rng);
        run(&mut p, Input::Connected(7), t0, &mut rng);
        let seek = |out: Vec<Output<u32>>| {
            out.into_iter()
                .filter_map(|o| match o {
                    Output::FindHolders(m) => Some(m),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        // Peer 7 keeps showing it holds market 1, never market 2.
        let mut t = t0;
        let mut sought = Vec::new();
        for _ in 0..100 {
            t += Duration::from_secs(1);
            run(
                &mut p,
                Input::SyncEnded {
                    peer: 7,
                    fetched: 0,
                    held: vec![key(1)],
                },
                t,
                &mut rng,
            );
            sought.extend(seek(run(
                &mut p,
                Input::Tick { connected: vec![7] },
                t,
                &mut rng,
            )));
        }
        assert_eq!(sought, vec![key(2)], "after 90 s, once");
    }

    #[test]
    fn memory_stays_bounded_under_churn_of_peers_and_authors() {
        let (mut p, t0, mut rng) = setup();
        let mut now = t0;
        for i in 0..200_000u32 {
            run(&mut p, Input::Connected(i), now, &mut rng);
            run(&mut p, Input::Offence(i, "x"), now, &mut rng);
            let author = PublicKey(*blake3::hash(&i.to_le_bytes()).as_bytes());
            run(&mut p, Input::Authored { peer: i, author }, now, &mut rng);
            run(&mut p, Input::Disconnected(i), now, &mut rng);
            if i % 1_000 == 0 {
                now += Duration::from_millis(100);
                run(&mut p, Input::Tick { connected: vec![] }, now, &mut rng);
            }
        }
        run(&mut p, Input::Tick { connected: vec![] }, now, &mut rng);
        assert!(
            p.footprint() <= MAX_REMEMBERED_SCORES + MAX_AUTHORS + MAX_BANS,
            "{}",
            p.footprint()
        );
    }
}
