//! The network's policy as a pure state machine: who is admitted, penalised and banned, how
//! fast a peer may ask, when and with whom to reconcile which markets, which shard topics to
//! hold, how fast this node publishes, which relays a private node listens through and when a
//! relayed peer is punched again.
//!
//! Like iroh-gossip's `proto` and this project's `protocol/`, it does no IO: no clock, no
//! randomness of its own, no swarm. [`Policy::handle`] takes an [`Input`], the time and an
//! RNG, and appends [`Output`]s; the event loop translates swarm events into inputs and
//! outputs into swarm calls, and the simulator (`testnet`'s `sim`) runs thousands of these
//! over a simulated network. Peers are any `Copy + Ord + Hash` value, so the simulator can use
//! small integers where the event loop uses libp2p's `PeerId`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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
/// Alone, the bootstrap peers are dialled again this often; connected to none of its
/// preferred relays, a node dials them again at this pace at first (see
/// `Policy::preferred_to_redial`).
pub const REDIAL_EVERY: Duration = Duration::from_secs(10);
/// The longest wait before preferred relays that stay out of reach are dialled again: the
/// wait doubles from [`REDIAL_EVERY`] with each dial that brings none of them back.
pub const MAX_PREFERRED_REDIAL: Duration = Duration::from_secs(160);
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
/// Relays a private node keeps a reservation with: one can go away.
pub const WANTED_RELAYS: usize = 2;
/// Preferred relays kept (see [`Input::PreferredRelays`]).
pub const MAX_PREFERRED_RELAYS: usize = 4;
/// Missing reservations are asked for again, and due hole punching retried, this often: a
/// relay that refuses is asked again at this pace, not in a loop.
const RELAY_CHECK_EVERY: Duration = Duration::from_secs(5);
/// Reconnections through a relay to run DCUtR again, per peer.
pub const MAX_PUNCH_RETRIES: u32 = 3;
/// A peer still reached only through a relay this long after a failed punch, a lost direct
/// connection or the last retry is reconnected through it: the path may take time to come
/// back, and the next retry waits for the last one's DCUtR to finish.
pub const PUNCH_RETRY_AFTER: Duration = Duration::from_secs(10);
/// How long a peer's hole punching retries are remembered after the last event (a failure,
/// a loss, a retry): a peer may then be punched again on a later connection.
pub const FORGET_PUNCHES_AFTER: Duration = Duration::from_secs(600);
/// Most peers whose hole punching is remembered (each a peer id, an instant and a count). Only DCUtR failures
/// and lost direct connections add one, and `FORGET_PUNCHES_AFTER` removes them, but a node
/// that many peers reach through relays must not grow without end: beyond it the peers
/// remembered longest ago are forgotten first.
pub const MAX_PUNCHED_PEERS: usize = 10_000;

/// How old an attestation anti-entropy brought may be for this node to relay it on gossip:
/// 10 minutes. Gossip misses some nodes (a partition, a seller whose shard peers withheld);
/// relaying what a session brought while it is news turns each such pull into a push again,
/// instead of one pull per node per sync interval, and a late joiner's catch-up (old news)
/// is not sent around again.
pub const RELAY_NEWS_MS: u64 = 600_000;

/// Most attestations one session hands back for relaying (the rest are left to anti-entropy).
pub const MAX_RELAYED_PER_SESSION: usize = 1_024;

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
    /// Peers connected at most (the connection limit): at it, looking for a market's holders
    /// first makes room by closing the connection with a peer that holds nothing followed here.
    pub max_peers: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig::DEFAULT
    }
}

impl PolicyConfig {
    /// The defaults (a `const`, so that a node's config file can show them).
    pub const DEFAULT: PolicyConfig = PolicyConfig {
        target_peers: 8,
        sync_interval: Duration::from_secs(30),
        requests_per_sec: 50.0,
        messages_per_sec: 2_000.0,
        author_messages_per_sec: 50.0,
        publish_per_sec: 200.0,
        ban_score: -30.0,
        ban_for: Duration::from_secs(600),
        max_peers: 256,
    };
}

/// What AutoNAT found about this node's reachability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reachability {
    /// Not known yet (or the probes disagree): reservations held are kept, none are asked.
    #[default]
    Unknown,
    /// Peers cannot dial this node: it listens through relays.
    Private,
    /// Peers can dial this node: relay slots are for those who cannot.
    Public,
}

/// A transport, as far as NAT mappings tell them apart: a mapping is learnt per transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// QUIC v1 (over UDP).
    Quic,
}

/// How this node is connected with a peer, as hole punching needs to know it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Links {
    /// Some connection runs without a relay.
    pub direct: bool,
    /// The transports of those direct connections (sorted; other transports are left out).
    pub direct_over: Vec<Transport>,
    /// This node opened one of the connections through a relay: it is the side that
    /// reconnects there to punch again (the other side does not, so that the two do not tear
    /// down each other's new connection).
    pub relayed_dialled: bool,
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
    /// Anti-entropy brought an attestation of `market` made `age_ms` ago (its time to now):
    /// relay it on gossip if it is news.
    Relay {
        /// Its market.
        market: PublicKey,
        /// Time since it was made, by its date (0 if dated ahead).
        age_ms: u64,
    },
    /// The operator asks for a session with `peer` now.
    SyncNow(P),
    /// The operator lifts a ban.
    Unban(P),
    /// A connected peer subscribed to a shard topic.
    PeerSubscribed(P, Shard),
    /// A connected peer left a shard topic.
    PeerUnsubscribed(P, Shard),
    /// How this node is connected with a peer, after a connection with it opened or closed
    /// (while one remains; after the last, [`Input::Disconnected`]).
    Links(P, Links),
    /// AutoNAT's verdict changed.
    Reachability(Reachability),
    /// A connected peer serves relay v2 and this node dialled it directly (a circuit can be
    /// built on that address); it may be asked for a reservation.
    RelayCandidate {
        /// The relay.
        peer: P,
        /// The transports it listens on at the IP it was dialled at (sorted).
        listens_over: Vec<Transport>,
    },
    /// A connected peer no longer qualifies as a relay (its identify no longer lists the
    /// hop protocol, or it was not dialled directly). A reservation it holds is kept.
    RelayGone(P),
    /// Relays to ask before any other, in this order (a community member's own community
    /// node, which keeps a reservation for each member): replaces the earlier list. The IO
    /// side dials them when it gives them, and again on [`Output::RedialPreferred`].
    PreferredRelays(Vec<P>),
    /// The relay accepted the reservation asked of it.
    ReservationAccepted(P),
    /// The reservation asked of this relay ended (the relay refused it or went away, the
    /// circuit listener closed) or could not be asked.
    ReservationClosed(P),
    /// DCUtR gave up upgrading the relayed connection with this peer.
    HolePunchFailed(P),
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
    /// Dial these preferred relays again (see [`Input::PreferredRelays`]): those not banned,
    /// while none of them is connected. At once when the last connection with them is lost
    /// (but at least [`REDIAL_EVERY`] after the last dial), then after [`REDIAL_EVERY`], the
    /// wait doubling with each dial that brings none of them back up to
    /// [`MAX_PREFERRED_REDIAL`]; the dial made when they are given counts as the first. A
    /// member behind NAT whose only peer was her community node (no bootstrap peer, no LAN
    /// peer) so gets it back after it restarts or the network comes back, as a node with no
    /// peer gets its bootstrap peers back.
    RedialPreferred(Vec<P>),
    /// Dial this many more peers from the routing table.
    DialMore(usize),
    /// Look for peers subscribed to this shard (they announce it in the DHT) and dial some.
    FindPeers(Shard),
    /// Announce in the DHT that this node follows the market.
    Announce(PublicKey),
    /// Look for peers that follow this market (their announcements) and dial some: no
    /// connected peer has shown it holds any of it for a while.
    FindHolders(PublicKey),
    /// Close the connections with this peer (not a ban): the node is at its connection limit
    /// and needs room for a peer that holds what it follows.
    Disconnect(P),
    /// Listen through this relay: ask it for a reservation, on the address it was dialled at.
    Reserve(P),
    /// Stop listening through this relay (this node is public).
    Unreserve(P),
    /// Connect to this relay again over `transport`, at its address of that transport on the
    /// IP it was dialled at: hole punching needs this node's public address for the transport
    /// the other side punches with, and a NAT mapping is learnt only from a connection over it.
    DialTransport {
        /// The relay.
        relay: P,
        /// The transport this node has no connection with it over yet.
        transport: Transport,
    },
    /// Reconnect to this peer through the relay this node reached it by (closing the relayed
    /// connections first): DCUtR runs on every new relayed connection, and only then.
    RetryHolePunch(P),
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
    /// How this node is connected with it.
    links: Links,
    /// It may relay for this node: the transports it listens on at the IP it was dialled at.
    relay: Option<Vec<Transport>>,
    /// Transports it was dialled over a second time to learn a mapping: once per connection
    /// with it (this entry goes with the connection).
    mappings_tried: Vec<Transport>,
    /// Reservations it refused in a row, and when it may be asked again: the wait doubles
    /// with each refusal, from [`RELAY_CHECK_EVERY`] up to [`MAX_RELAY_BACKOFF`].
    relay_refusals: u32,
    relay_retry_at: Option<Instant>,
}

/// The longest wait before a relay that keeps refusing reservations is asked again.
const MAX_RELAY_BACKOFF: Duration = Duration::from_secs(640);

/// When to dial again peers this node keeps a connection with while it has none: the
/// bootstrap peers while it has no peer at all, its preferred relays while none of them is
/// connected. The first dial after a connection was lost comes at once (at least
/// [`REDIAL_EVERY`] after the last), the next after [`REDIAL_EVERY`], and the wait doubles
/// with each dial that brings none of them back, up to `max` (the bootstrap peers' is
/// [`REDIAL_EVERY`]: every 10 s). Peers that accept a connection and close it are so dialled
/// every [`REDIAL_EVERY`], not in a loop.
#[derive(Clone, Copy, Debug)]
struct Redial {
    /// The last dial (the IO side's own included: the bootstrap peers at start, the
    /// preferred relays when they are given).
    last: Instant,
    /// Dials since one of the peers was last connected.
    missed: u32,
    /// The longest wait.
    max: Duration,
}

impl Redial {
    /// Dialled at `last`.
    fn new(last: Instant, max: Duration) -> Redial {
        Redial {
            last,
            missed: 1,
            max,
        }
    }

    /// None of the peers is connected: whether to dial them now.
    fn due(&mut self, now: Instant) -> bool {
        let wait = backoff(REDIAL_EVERY, self.missed.saturating_sub(1), self.max);
        if now.saturating_duration_since(self.last) < wait {
            return false;
        }
        self.last = now;
        self.missed = self.missed.saturating_add(1);
        true
    }

    /// One of them is connected: once none is, the waits start over.
    fn connected(&mut self) {
        self.missed = 0;
    }
}

/// `first` doubled `doublings` times, up to `max`: how long to wait after that many
/// attempts in a row came to nothing.
fn backoff(first: Duration, doublings: u32, max: Duration) -> Duration {
    first.saturating_mul(1 << doublings.min(16)).min(max)
}

/// A peer whose hole punching failed or whose direct connection was lost.
#[derive(Clone, Copy, Debug)]
struct Punch {
    /// The failure, the loss or the last retry.
    at: Instant,
    /// Reconnections through the relay so far. Kept after a success, so that a direct
    /// connection that keeps dying is not punched again forever.
    retries: u32,
}

/// A peer whose last session showed it held nothing followed here is asked again after this
/// many sync intervals (it may have begun to follow one without a subscription showing it).
const RECHECK_AFTER_INTERVALS: u32 = 10;

/// The policy of one node.
#[derive(Debug)]
pub struct Policy<P> {
    config: PolicyConfig,
    /// Connected peers: the swarm's connection limits bound them (see `docs/limits.md`).
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
    /// The bootstrap peers, dialled again while no peer is connected.
    bootstrap: Redial,
    /// When peers were last looked for on each shard.
    found: HashMap<Shard, Instant>,
    /// Each followed market: when a peer last showed it holds some of it (or when it was
    /// followed), and when holders were last looked for.
    last_held: HashMap<PublicKey, Instant>,
    holders_sought: HashMap<PublicKey, Instant>,
    /// Markets followed but not yet announced (a few per tick: each is a DHT query).
    to_announce: VecDeque<PublicKey>,
    reachability: Reachability,
    /// Relays asked for a reservation, and whether they accepted it: at most
    /// [`WANTED_RELAYS`], since one is asked only while fewer are held.
    reservations: BTreeMap<P, bool>,
    /// Relays asked first (see [`Input::PreferredRelays`]), at most [`MAX_PREFERRED_RELAYS`].
    preferred_relays: Vec<P>,
    /// The preferred relays, dialled again while none of them is connected.
    preferred_redial: Redial,
    /// When reservations and hole punching are next looked at.
    next_relay_check: Instant,
    /// Peers whose hole punching failed or whose direct connection was lost: at most
    /// [`MAX_PUNCHED_PEERS`], each forgotten [`FORGET_PUNCHES_AFTER`] after its last event.
    punches: HashMap<P, Punch>,
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
            bootstrap: Redial::new(now, REDIAL_EVERY),
            found: HashMap::new(),
            last_held: HashMap::new(),
            holders_sought: HashMap::new(),
            to_announce: VecDeque::new(),
            reachability: Reachability::Unknown,
            reservations: BTreeMap::new(),
            preferred_relays: Vec::new(),
            preferred_redial: Redial::new(now, MAX_PREFERRED_REDIAL),
            next_relay_check: now + RELAY_CHECK_EVERY,
            punches: HashMap::new(),
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

    /// What AutoNAT last said.
    pub fn reachability(&self) -> Reachability {
        self.reachability
    }

    /// Relays holding a reservation for this node (they accepted it).
    pub fn relays(&self) -> impl Iterator<Item = &P> {
        self.reservations
            .iter()
            .filter(|(_, accepted)| **accepted)
            .map(|(r, _)| r)
    }

    /// The preferred relays to dial again at this tick (see [`Output::RedialPreferred`]).
    fn preferred_to_redial(&mut self, now: Instant) -> Vec<P> {
        let wanted: Vec<P> = self
            .preferred_relays
            .iter()
            .filter(|p| !self.banned.contains_key(p))
            .copied()
            .collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        if wanted.iter().any(|p| self.peers.contains_key(p)) {
            self.preferred_redial.connected();
            return Vec::new();
        }
        if self.preferred_redial.due(now) {
            wanted
        } else {
            Vec::new()
        }
    }

    /// Entries held for peers, authors, bans and hole punching: what the policy's memory
    /// grows with.
    pub fn footprint(&self) -> usize {
        self.peers.len()
            + self.scores.len()
            + self.banned.len()
            + self.authors.len()
            + self.punches.len()
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
                        links: Links::default(),
                        relay: None,
                        mappings_tried: Vec::new(),
                        relay_refusals: 0,
                        relay_retry_at: None,
                    },
                );
                self.start_sync(p, None, now, out);
            }
            Input::Disconnected(p) => {
                self.peers.remove(&p);
                self.syncing.remove(&p);
                // The relay client closes its circuit listener with the connection.
                self.reservations.remove(&p);
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
            Input::Relay { market, age_ms } => {
                // Within the node's own publishing pace, shared with its own attestations.
                let s = market::shard(&market);
                let news = age_ms <= RELAY_NEWS_MS;
                let heard = self.peers.values().any(|p| p.shards.contains(&s));
                out.push(if news && heard && self.publish.take(1.0, now) {
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
                let ours = self.shards.contains(&s);
                if let Some(peer) = self.peers.get_mut(&p) {
                    peer.shards.insert(s);
                    // It may have begun to follow a market followed here (a peer that held
                    // nothing at its last session refers an offer): worth a session again.
                    if ours {
                        peer.useful = true;
                    }
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
            Input::Links(p, links) => {
                let Some(peer) = self.peers.get_mut(&p) else {
                    return;
                };
                let lost = peer.links.direct && !links.direct;
                peer.links = links;
                if lost {
                    self.direct_lost(p, now);
                }
            }
            Input::Reachability(r) => {
                self.reachability = r;
                if r == Reachability::Public {
                    // Dialable directly: relay slots are for those who are not.
                    let held = std::mem::take(&mut self.reservations);
                    out.extend(held.into_keys().map(Output::Unreserve));
                } else {
                    self.reserve_relays(now, rng, out);
                }
            }
            Input::RelayCandidate { peer, listens_over } => {
                if let Some(x) = self.peers.get_mut(&peer) {
                    x.relay = Some(listens_over);
                    self.reserve_relays(now, rng, out);
                }
            }
            Input::PreferredRelays(relays) => {
                // One entry per relay (a relay handed out with several addresses).
                let mut kept: Vec<P> = Vec::new();
                for r in relays {
                    if !kept.contains(&r) && kept.len() < MAX_PREFERRED_RELAYS {
                        kept.push(r);
                    }
                }
                self.preferred_relays = kept;
                // The IO side dials them as it gives them.
                self.preferred_redial = Redial::new(now, MAX_PREFERRED_REDIAL);
                self.reserve_relays(now, rng, out);
            }
            Input::RelayGone(p) => {
                if let Some(x) = self.peers.get_mut(&p) {
                    x.relay = None;
                }
            }
            Input::ReservationAccepted(relay) => {
                if let Some(accepted) = self.reservations.get_mut(&relay) {
                    *accepted = true;
                }
            }
            Input::ReservationClosed(relay) => {
                let accepted = self.reservations.remove(&relay);
                if let Some(x) = self.peers.get_mut(&relay) {
                    if accepted == Some(false) {
                        // Refused: asked again later, and later each time.
                        x.relay_refusals = x.relay_refusals.saturating_add(1);
                        let wait =
                            backoff(RELAY_CHECK_EVERY, x.relay_refusals - 1, MAX_RELAY_BACKOFF);
                        x.relay_retry_at = Some(now + wait);
                    } else {
                        x.relay_refusals = 0;
                        x.relay_retry_at = None;
                    }
                }
            }
            Input::HolePunchFailed(p) => {
                let retries = self.punches.get(&p).map_or(0, |x| x.retries);
                self.remember_punch(p, Punch { at: now, retries });
            }
            Input::Tick { connected } => self.tick(connected, now, rng, out),
        }
    }

    /// A private node listens through up to [`WANTED_RELAYS`] connected relays: the relay
    /// holds a reservation, the circuit address spreads by identify and Kademlia, and a peer
    /// that dials it there is then upgraded to a direct connection by DCUtR. Which relays is
    /// drawn from the RNG, so that the nodes behind one community do not all pick the same.
    ///
    /// It also connects to each relay over every transport the relay listens on and it has no
    /// connection over yet ([`Output::DialTransport`]): identify then reports both mappings
    /// (TCP and QUIC) to DCUtR, which otherwise knows only the one the relay was dialled over.
    fn reserve_relays(&mut self, now: Instant, rng: &mut impl RngCore, out: &mut Vec<Output<P>>) {
        if self.reachability != Reachability::Private {
            return;
        }
        let mut relays: Vec<P> = self
            .peers
            .iter()
            .filter(|(p, x)| x.relay.is_some() && !self.banned.contains_key(p))
            .map(|(p, _)| *p)
            .collect();
        relays.sort();
        for p in &relays {
            let Some(x) = self.peers.get_mut(p) else {
                continue;
            };
            let listens = x.relay.as_deref().unwrap_or_default();
            for kind in [Transport::Tcp, Transport::Quic] {
                if listens.contains(&kind)
                    && !x.mappings_tried.contains(&kind)
                    && !x.links.direct_over.contains(&kind)
                {
                    x.mappings_tried.push(kind);
                    out.push(Output::DialTransport {
                        relay: *p,
                        transport: kind,
                    });
                }
            }
        }
        let free = WANTED_RELAYS.saturating_sub(self.reservations.len());
        if free == 0 {
            return;
        }
        relays.retain(|p| {
            !self.reservations.contains_key(p)
                && self
                    .peers
                    .get(p)
                    .is_none_or(|x| x.relay_retry_at.is_none_or(|t| now >= t))
        });
        shuffle(&mut relays, rng);
        // The preferred first, in their order; then the random draw.
        let rank = |p: &P| {
            self.preferred_relays
                .iter()
                .position(|x| x == p)
                .unwrap_or(usize::MAX)
        };
        relays.sort_by_key(rank);
        for relay in relays.into_iter().take(free) {
            self.reservations.insert(relay, false);
            out.push(Output::Reserve(relay));
        }
    }

    /// DCUtR tries three times on a new relayed connection and then gives up (e.g. when both
    /// sides were busy and their dials missed each other), and it does not run again when a
    /// punched connection dies while the relayed one stays. A peer still reached only through
    /// a relay [`PUNCH_RETRY_AFTER`] later is reconnected through it, which runs DCUtR again:
    /// [`MAX_PUNCH_RETRIES`] times at most within [`FORGET_PUNCHES_AFTER`].
    fn retry_hole_punching(&mut self, now: Instant, out: &mut Vec<Output<P>>) {
        self.punches
            .retain(|_, x| now.saturating_duration_since(x.at) < FORGET_PUNCHES_AFTER);
        let mut due: Vec<P> = self
            .punches
            .iter()
            .filter(|(_, x)| {
                x.retries < MAX_PUNCH_RETRIES
                    && now.saturating_duration_since(x.at) >= PUNCH_RETRY_AFTER
            })
            .map(|(p, _)| *p)
            .collect();
        due.sort();
        for p in due {
            let Some(peer) = self.peers.get(&p) else {
                // Gone: a later connection is punched afresh.
                self.punches.remove(&p);
                continue;
            };
            if peer.links.direct {
                continue;
            }
            let redial = peer.links.relayed_dialled;
            if let Some(x) = self.punches.get_mut(&p) {
                x.at = now;
                x.retries += 1;
            }
            if redial {
                out.push(Output::RetryHolePunch(p));
            }
        }
    }

    /// The last direct connection with a connected peer closed (a NAT mapping gone, a network
    /// change): it is left on the relay, and DCUtR does not run again on that connection. It
    /// is retried like a failed punch, retries counted before included.
    fn direct_lost(&mut self, p: P, now: Instant) {
        match self.punches.get_mut(&p) {
            Some(x) if x.retries < MAX_PUNCH_RETRIES => x.at = now,
            Some(_) => {}
            None => self.remember_punch(
                p,
                Punch {
                    at: now,
                    retries: 0,
                },
            ),
        }
    }

    /// Remembers a peer's hole punching. When [`MAX_PUNCHED_PEERS`] are remembered, the tenth
    /// remembered longest ago is forgotten at once (one sort per tenth, not one scan per peer).
    fn remember_punch(&mut self, p: P, punch: Punch) {
        if self.punches.len() >= MAX_PUNCHED_PEERS && !self.punches.contains_key(&p) {
            let mut by_age: Vec<(Instant, P)> =
                self.punches.iter().map(|(p, x)| (x.at, *p)).collect();
            by_age.sort();
            for (_, old) in by_age.into_iter().take(MAX_PUNCHED_PEERS / 10) {
                self.punches.remove(&old);
            }
        }
        self.punches.insert(p, punch);
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
        let preferred = self.preferred_to_redial(now);
        if !preferred.is_empty() {
            out.push(Output::RedialPreferred(preferred));
        }
        if connected.is_empty() {
            if self.bootstrap.due(now) {
                out.push(Output::RedialBootstrap);
            }
        } else {
            self.bootstrap.connected();
            if connected.len() < self.config.target_peers {
                out.push(Output::DialMore(self.config.target_peers - connected.len()));
            }
        }
        self.find_short_shards(now, out);
        self.find_holders(now, out);
        let n = self.to_announce.len().min(ANNOUNCES_PER_TICK);
        out.extend(self.to_announce.drain(..n).map(Output::Announce));
        if now >= self.next_relay_check {
            self.next_relay_check = now + RELAY_CHECK_EVERY;
            self.reserve_relays(now, rng, out);
            self.retry_hole_punching(now, out);
        }
        let due = self.next_sync.is_none_or(|t| now >= t);
        if due && !connected.is_empty() {
            self.next_sync = Some(now + self.config.sync_interval);
            // Among the peers that hold something followed here (or were never asked), the
            // one reconciled with longest ago, ties broken at random: in turn, every such peer
            // is reconciled with within `their number × sync_interval`. The others have
            // nothing to give.
            connected.sort();
            shuffle(&mut connected, rng);
            let recheck = self.config.sync_interval * RECHECK_AFTER_INTERVALS;
            let useful = |p: &P| {
                self.peers.get(p).is_some_and(|x| {
                    x.useful || x.last_sync.is_none_or(|t| now.duration_since(t) >= recheck)
                })
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
        if !due.is_empty() && self.peers.len() >= self.config.max_peers {
            self.make_room(out);
        }
        for m in due.into_iter().take(FINDS_PER_TICK) {
            self.holders_sought.insert(m, now);
            out.push(Output::FindHolders(m));
        }
    }

    /// At the connection limit, closes the connection with the peer worth least here: one
    /// whose last session showed it holds nothing followed here, not a relay, sharing the
    /// fewest shards with this node (the smallest id among equals).
    fn make_room(&mut self, out: &mut Vec<Output<P>>) {
        let victim = self
            .peers
            .iter()
            .filter(|(_, p)| !p.useful && p.last_sync.is_some() && p.relay.is_none())
            .map(|(id, p)| (p.shards.intersection(&self.shards).count(), *id))
            .min();
        if let Some((_, id)) = victim {
            out.push(Output::Disconnect(id));
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
    fn what_sync_brought_is_relayed_while_it_is_news_within_the_pace() {
        let (mut p, t0, mut rng) = setup();
        let m = key(1);
        let relay = |age_ms| Input::Relay { market: m, age_ms };
        // No peer on its shard: nobody to tell.
        assert_eq!(run(&mut p, relay(0), t0, &mut rng), vec![Output::Defer]);
        run(&mut p, Input::Connected(1), t0, &mut rng);
        run(
            &mut p,
            Input::PeerSubscribed(1, market::shard(&m)),
            t0,
            &mut rng,
        );
        assert_eq!(
            run(&mut p, relay(1_000), t0, &mut rng),
            vec![Output::Publish]
        );
        assert_eq!(
            run(&mut p, relay(RELAY_NEWS_MS), t0, &mut rng),
            vec![Output::Publish]
        );
        // Old news (a late joiner's catch-up) is not sent around again.
        assert_eq!(
            run(&mut p, relay(RELAY_NEWS_MS + 1), t0, &mut rng),
            vec![Output::Defer]
        );
        // The node's own pace holds: 2,000 at once, then 200 a second.
        let relayed = (0..3_000)
            .flat_map(|_| run(&mut p, relay(0), t0, &mut rng))
            .filter(|o| *o == Output::Publish)
            .count();
        assert_eq!(relayed, 2_000 - 2);
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
    fn a_peer_that_held_nothing_is_synced_again_once_it_may_hold_something() {
        let (mut p, t0, mut rng) = setup();
        follow(&mut p, vec![key(1)], t0, &mut rng);
        for peer in 0..3u32 {
            run(&mut p, Input::Connected(peer), t0, &mut rng);
            let held = if peer == 0 { vec![key(1)] } else { vec![] };
            let ended = Input::SyncEnded {
                peer,
                fetched: 0,
                held,
            };
            run(&mut p, ended, t0, &mut rng);
        }
        let tick = |p: &mut Policy<u32>, t, rng: &mut ChaCha8Rng| {
            let out = run(
                p,
                Input::Tick {
                    connected: (0..3).collect(),
                },
                t,
                rng,
            );
            out.into_iter()
                .filter_map(|o| match o {
                    Output::StartSync(peer, _) => Some(peer),
                    _ => None,
                })
                .collect::<Vec<u32>>()
        };
        let mut t = t0 + Duration::from_secs(30);
        assert_eq!(
            tick(&mut p, t, &mut rng),
            vec![0],
            "only the peer that held it"
        );
        // Peer 1 joins the market's shard: it may have begun to follow the market.
        run(
            &mut p,
            Input::PeerSubscribed(1, market::shard(&key(1))),
            t,
            &mut rng,
        );
        t += Duration::from_secs(30);
        assert_eq!(tick(&mut p, t, &mut rng), vec![1]);
        // Peer 2 shows nothing, but is asked again after ten intervals.
        let mut asked = Vec::new();
        for _ in 0..RECHECK_AFTER_INTERVALS {
            t += Duration::from_secs(30);
            asked.extend(tick(&mut p, t, &mut rng));
        }
        assert!(asked.contains(&2), "{asked:?}");
        assert!(asked.iter().filter(|&&x| x == 2).count() <= 1);
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
    fn at_the_connection_limit_looking_for_holders_makes_room_first() {
        let t0 = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut p = Policy::new(
            PolicyConfig {
                max_peers: 3,
                ..PolicyConfig::default()
            },
            t0,
        );
        follow(&mut p, vec![key(1), key(2)], t0, &mut rng);
        for peer in [7, 8, 9] {
            run(&mut p, Input::Connected(peer), t0, &mut rng);
        }
        let mut t = t0;
        let mut outs = Vec::new();
        for _ in 0..100 {
            t += Duration::from_secs(1);
            // 7 holds market 1; 8 and 9 hold nothing followed here; nobody holds market 2.
            for (peer, held) in [(7, vec![key(1)]), (8, vec![]), (9, vec![])] {
                run(
                    &mut p,
                    Input::SyncEnded {
                        peer,
                        fetched: 0,
                        held,
                    },
                    t,
                    &mut rng,
                );
            }
            outs.extend(
                run(
                    &mut p,
                    Input::Tick {
                        connected: vec![7, 8, 9],
                    },
                    t,
                    &mut rng,
                )
                .into_iter()
                .filter(|o| matches!(o, Output::Disconnect(_) | Output::FindHolders(_))),
            );
        }
        assert_eq!(
            outs,
            vec![Output::Disconnect(8), Output::FindHolders(key(2))],
            "room made first, for a peer that holds nothing followed here"
        );
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
            run(&mut p, Input::HolePunchFailed(i), now, &mut rng);
            run(&mut p, Input::Disconnected(i), now, &mut rng);
            if i % 1_000 == 0 {
                now += Duration::from_millis(100);
                run(&mut p, Input::Tick { connected: vec![] }, now, &mut rng);
            }
        }
        run(&mut p, Input::Tick { connected: vec![] }, now, &mut rng);
        assert!(
            p.footprint() <= MAX_REMEMBERED_SCORES + MAX_AUTHORS + MAX_BANS + MAX_PUNCHED_PEERS,
            "{}",
            p.footprint()
        );
    }

    /// Connects `peer` and declares it a relay candidate listening over `listens_over`.
    fn relay(
        p: &mut Policy<u32>,
        peer: u32,
        listens_over: Vec<Transport>,
        t: Instant,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Output<u32>> {
        run(p, Input::Connected(peer), t, rng);
        run(
            p,
            Input::Links(
                peer,
                Links {
                    direct: true,
                    direct_over: vec![Transport::Tcp],
                    relayed_dialled: false,
                },
            ),
            t,
            rng,
        );
        run(p, Input::RelayCandidate { peer, listens_over }, t, rng)
    }

    /// AutoNAT finds the node private.
    fn private(p: &mut Policy<u32>, t: Instant, rng: &mut ChaCha8Rng) -> Vec<Output<u32>> {
        run(p, Input::Reachability(Reachability::Private), t, rng)
    }

    fn reserved(out: &[Output<u32>]) -> Vec<u32> {
        out.iter()
            .filter_map(|o| match o {
                Output::Reserve(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// Ticks once a second from `from` (excluded) to `to` (included), returning the relay and
    /// hole punching outputs with the second each came at.
    fn ticks(
        p: &mut Policy<u32>,
        t0: Instant,
        from: u64,
        to: u64,
        rng: &mut ChaCha8Rng,
    ) -> Vec<(u64, Output<u32>)> {
        let mut all = Vec::new();
        for s in from + 1..=to {
            let connected = p.peers.keys().copied().collect();
            let out = run(
                p,
                Input::Tick { connected },
                t0 + Duration::from_secs(s),
                rng,
            );
            all.extend(
                out.into_iter()
                    .filter(|o| {
                        matches!(
                            o,
                            Output::Reserve(_)
                                | Output::Unreserve(_)
                                | Output::DialTransport { .. }
                                | Output::RetryHolePunch(_)
                        )
                    })
                    .map(|o| (s, o)),
            );
        }
        all
    }

    #[test]
    fn a_private_node_reserves_two_relays_and_replaces_one_that_goes() {
        let (mut p, t0, mut rng) = setup();
        for r in 1..=3 {
            assert!(reserved(&relay(&mut p, r, vec![], t0, &mut rng)).is_empty());
        }
        // Reachability not known yet: no reservation.
        assert!(reserved(
            &ticks(&mut p, t0, 0, 10, &mut rng)
                .into_iter()
                .map(|(_, o)| o)
                .collect::<Vec<_>>()
        )
        .is_empty());
        let t = t0 + Duration::from_secs(10);
        let mut held = reserved(&run(
            &mut p,
            Input::Reachability(Reachability::Private),
            t,
            &mut rng,
        ));
        assert_eq!(held.len(), WANTED_RELAYS, "{held:?}");
        for r in &held {
            run(&mut p, Input::ReservationAccepted(*r), t, &mut rng);
        }
        let mut relays: Vec<u32> = p.relays().copied().collect();
        held.sort();
        assert_eq!(relays, held);
        // Enough held: a new candidate is not asked.
        assert!(reserved(&relay(&mut p, 4, vec![], t, &mut rng)).is_empty());
        // One goes away: the next check asks another.
        let gone = held[0];
        run(&mut p, Input::Disconnected(gone), t, &mut rng);
        run(&mut p, Input::ReservationClosed(gone), t, &mut rng);
        assert_eq!(p.relays().count(), 1);
        let out: Vec<Output<u32>> = ticks(&mut p, t0, 10, 15, &mut rng)
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        let new = reserved(&out);
        assert_eq!(new.len(), 1, "{out:?}");
        assert!(!held.contains(&new[0]));
        run(&mut p, Input::ReservationAccepted(new[0]), t, &mut rng);
        relays = p.relays().copied().collect();
        assert_eq!(relays.len(), WANTED_RELAYS);
        // Full again: later checks ask no one.
        let out: Vec<Output<u32>> = ticks(&mut p, t0, 15, 60, &mut rng)
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        assert!(reserved(&out).is_empty(), "{out:?}");
    }

    /// A member's community node is asked first, whatever the draw; a preferred relay that
    /// is not a candidate (not connected, or not serving) leaves the draw to the others.
    #[test]
    fn preferred_relays_are_asked_before_the_draw() {
        for seed in 0..20u64 {
            let (mut p, t0, _) = setup();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for r in 1..=5 {
                relay(&mut p, r, vec![], t0, &mut rng);
            }
            run(&mut p, Input::PreferredRelays(vec![9, 4]), t0, &mut rng);
            let held = reserved(&private(&mut p, t0, &mut rng));
            assert_eq!(held.len(), WANTED_RELAYS, "seed {seed}: {held:?}");
            assert_eq!(held[0], 4, "seed {seed}: {held:?}");
            assert!(!held.contains(&9));
        }
        // Preferred once private: the next reservations go to it.
        let (mut p, t0, mut rng) = setup();
        for r in 1..=5 {
            relay(&mut p, r, vec![], t0, &mut rng);
        }
        let held = reserved(&private(&mut p, t0, &mut rng));
        let other = (1..=5).find(|r| !held.contains(r)).unwrap();
        run(&mut p, Input::Disconnected(held[0]), t0, &mut rng);
        run(&mut p, Input::ReservationClosed(held[0]), t0, &mut rng);
        let asked = reserved(&run(
            &mut p,
            Input::PreferredRelays(vec![other]),
            t0,
            &mut rng,
        ));
        assert_eq!(asked, vec![other]);
    }

    /// The preferred relays a tick at `t` says to dial again (none: empty).
    fn preferred_redial(p: &mut Policy<u32>, t: Instant, rng: &mut ChaCha8Rng) -> Vec<u32> {
        let connected = p.peers.keys().copied().collect();
        run(p, Input::Tick { connected }, t, rng)
            .into_iter()
            .find_map(|o| match o {
                Output::RedialPreferred(r) => Some(r),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Ticks once a second from `from` (excluded) to `to` (included), as the event loop does;
    /// returns the seconds at which the bootstrap peers and the preferred relays were to be
    /// dialled again.
    fn redials(
        p: &mut Policy<u32>,
        t0: Instant,
        from: u64,
        to: u64,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<u64>, Vec<(u64, Vec<u32>)>) {
        let (mut bootstrap, mut preferred) = (Vec::new(), Vec::new());
        for s in from + 1..=to {
            let t = t0 + Duration::from_secs(s);
            let connected = p.peers.keys().copied().collect();
            for o in run(p, Input::Tick { connected }, t, rng) {
                match o {
                    Output::RedialBootstrap => bootstrap.push(s),
                    Output::RedialPreferred(relays) => preferred.push((s, relays)),
                    _ => {}
                }
            }
        }
        (bootstrap, preferred)
    }

    /// A member's node whose community node goes away dials it again: at once, then after
    /// 10 s, 20 s, 40 s…, up to every 160 s, and at once again after a later loss.
    #[test]
    fn preferred_relays_out_of_reach_are_dialled_again_later_and_later() {
        let (mut p, t0, mut rng) = setup();
        // Given (and dialled by the IO side) at 0; its connection opens at 1.
        run(&mut p, Input::PreferredRelays(vec![9, 9, 8]), t0, &mut rng);
        let (_, preferred) = redials(&mut p, t0, 0, 0, &mut rng);
        assert!(preferred.is_empty());
        run(
            &mut p,
            Input::Connected(9),
            t0 + Duration::from_secs(1),
            &mut rng,
        );
        let (bootstrap, preferred) = redials(&mut p, t0, 0, 100, &mut rng);
        assert!(preferred.is_empty(), "one is connected: {preferred:?}");
        assert!(bootstrap.is_empty());
        // Lost at 100 (the community node restarts, the network is cut): dialled at once,
        // both, in their order, once each; then later and later while neither comes back.
        run(
            &mut p,
            Input::Disconnected(9),
            t0 + Duration::from_secs(100),
            &mut rng,
        );
        let (bootstrap, preferred) = redials(&mut p, t0, 100, 1_000, &mut rng);
        let at: Vec<u64> = preferred.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            at,
            vec![101, 111, 131, 171, 251, 411, 571, 731, 891],
            "waits 10, 20, 40, 80, 160, then 160"
        );
        assert!(
            preferred.iter().all(|(_, r)| *r == vec![9, 8]),
            "{preferred:?}"
        );
        // Alone, the bootstrap peers go on every 10 s as before.
        assert_eq!(bootstrap.len(), 90, "{bootstrap:?}");
        assert!(bootstrap.windows(2).all(|w| w[1] - w[0] == 10));
        // One comes back: nothing more, and after a loss the waits start over.
        run(
            &mut p,
            Input::Connected(8),
            t0 + Duration::from_secs(1_000),
            &mut rng,
        );
        let (_, preferred) = redials(&mut p, t0, 1_000, 2_000, &mut rng);
        assert!(preferred.is_empty());
        run(
            &mut p,
            Input::Disconnected(8),
            t0 + Duration::from_secs(2_000),
            &mut rng,
        );
        let (_, preferred) = redials(&mut p, t0, 2_000, 2_100, &mut rng);
        let at: Vec<u64> = preferred.iter().map(|(s, _)| *s).collect();
        assert_eq!(at, vec![2_001, 2_011, 2_031, 2_071]);
    }

    /// A relay that accepts the connection and closes it at once is dialled every 10 s, not
    /// in a loop; a banned one is not dialled; a node that prefers none dials none.
    #[test]
    fn preferred_relays_are_dialled_again_no_faster_than_every_ten_seconds() {
        let (mut p, t0, mut rng) = setup();
        run(&mut p, Input::PreferredRelays(vec![9]), t0, &mut rng);
        let mut dialled = Vec::new();
        for s in 1..=60u64 {
            let t = t0 + Duration::from_secs(s);
            if !preferred_redial(&mut p, t, &mut rng).is_empty() {
                dialled.push(s);
                // Connected, then closed within the second.
                run(&mut p, Input::Connected(9), t, &mut rng);
                assert!(preferred_redial(&mut p, t, &mut rng).is_empty());
                run(&mut p, Input::Disconnected(9), t, &mut rng);
            }
        }
        assert_eq!(dialled, vec![10, 20, 30, 40, 50, 60]);

        // Banned: not dialled (the swarm would refuse it anyway).
        let (mut p, t0, mut rng) = setup();
        run(&mut p, Input::Connected(9), t0, &mut rng);
        for _ in 0..3 {
            run(&mut p, Input::Offence(9, "x"), t0, &mut rng);
        }
        assert!(p.is_banned(&9));
        run(&mut p, Input::PreferredRelays(vec![9]), t0, &mut rng);
        let (_, preferred) = redials(&mut p, t0, 0, 500, &mut rng);
        assert!(preferred.is_empty(), "{preferred:?}");

        // None preferred (or the list emptied): nothing to dial.
        let (mut p, t0, mut rng) = setup();
        let (_, preferred) = redials(&mut p, t0, 0, 100, &mut rng);
        assert!(preferred.is_empty());
        run(&mut p, Input::PreferredRelays(vec![9]), t0, &mut rng);
        run(&mut p, Input::PreferredRelays(vec![]), t0, &mut rng);
        let (_, preferred) = redials(&mut p, t0, 0, 100, &mut rng);
        assert!(preferred.is_empty());
    }

    #[test]
    fn a_refused_reservation_is_asked_again_at_the_check_pace() {
        let (mut p, t0, mut rng) = setup();
        private(&mut p, t0, &mut rng);
        assert_eq!(reserved(&relay(&mut p, 1, vec![], t0, &mut rng)), vec![1]);
        run(&mut p, Input::ReservationClosed(1), t0, &mut rng);
        let asked: Vec<u64> = ticks(&mut p, t0, 0, 20, &mut rng)
            .into_iter()
            .filter(|(_, o)| *o == Output::Reserve(1))
            .map(|(s, _)| s)
            .collect();
        // Asked again at the next check, not at once (a relay that refuses would be asked in
        // a loop), and then held.
        assert_eq!(asked, vec![5]);
        // A relay that stops being one is not asked again once its reservation ends.
        run(&mut p, Input::RelayGone(1), t0, &mut rng);
        run(&mut p, Input::ReservationClosed(1), t0, &mut rng);
        assert!(ticks(&mut p, t0, 20, 40, &mut rng).is_empty());
    }

    #[test]
    fn a_relay_that_keeps_refusing_is_asked_less_and_less_often() {
        let (mut p, t0, mut rng) = setup();
        private(&mut p, t0, &mut rng);
        assert_eq!(reserved(&relay(&mut p, 1, vec![], t0, &mut rng)), vec![1]);
        run(&mut p, Input::ReservationClosed(1), t0, &mut rng);
        // Every time it is asked, it refuses at once.
        let mut asked = Vec::new();
        for s in 1..=400u64 {
            let t = t0 + Duration::from_secs(s);
            let out = run(&mut p, Input::Tick { connected: vec![1] }, t, &mut rng);
            if out.contains(&Output::Reserve(1)) {
                asked.push(s);
                run(&mut p, Input::ReservationClosed(1), t, &mut rng);
            }
        }
        let gaps: Vec<u64> = asked.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(asked.first(), Some(&5), "{asked:?}");
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        assert!(
            asked.len() <= 8,
            "asked {} times in 400 s: {asked:?}",
            asked.len()
        );
        // Once it accepts, a later loss is asked again at the check pace.
        let t = t0 + Duration::from_secs(1_100);
        let out = run(&mut p, Input::Tick { connected: vec![1] }, t, &mut rng);
        assert!(out.contains(&Output::Reserve(1)), "{out:?}");
        run(&mut p, Input::ReservationAccepted(1), t, &mut rng);
        run(&mut p, Input::ReservationClosed(1), t, &mut rng);
        let out = run(
            &mut p,
            Input::Tick { connected: vec![1] },
            t + Duration::from_secs(5),
            &mut rng,
        );
        assert!(out.contains(&Output::Reserve(1)), "{out:?}");
    }

    #[test]
    fn a_banned_relay_is_not_asked() {
        let (mut p, t0, mut rng) = setup();
        relay(&mut p, 1, vec![], t0, &mut rng);
        relay(&mut p, 2, vec![], t0, &mut rng);
        for _ in 0..3 {
            run(&mut p, Input::Offence(1, "x"), t0, &mut rng);
        }
        assert!(p.is_banned(&1));
        // Identify may still report it before its connection closes.
        run(
            &mut p,
            Input::RelayCandidate {
                peer: 1,
                listens_over: vec![],
            },
            t0,
            &mut rng,
        );
        let out = private(&mut p, t0, &mut rng);
        assert_eq!(reserved(&out), vec![2]);
        let out: Vec<Output<u32>> = ticks(&mut p, t0, 0, 30, &mut rng)
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        assert!(reserved(&out).is_empty(), "{out:?}");
    }

    #[test]
    fn a_public_node_asks_no_relay_and_drops_the_ones_it_held() {
        let (mut p, t0, mut rng) = setup();
        run(
            &mut p,
            Input::Reachability(Reachability::Public),
            t0,
            &mut rng,
        );
        let mut out = relay(
            &mut p,
            1,
            vec![Transport::Tcp, Transport::Quic],
            t0,
            &mut rng,
        );
        out.extend(relay(&mut p, 2, vec![], t0, &mut rng));
        out.extend(
            ticks(&mut p, t0, 0, 30, &mut rng)
                .into_iter()
                .map(|(_, o)| o),
        );
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Reserve(_) | Output::DialTransport { .. })),
            "{out:?}"
        );
        let t = t0 + Duration::from_secs(30);
        let out = private(&mut p, t, &mut rng);
        assert_eq!(reserved(&out).len(), 2);
        run(&mut p, Input::ReservationAccepted(1), t, &mut rng);
        // Unsure again: what is held is kept, nothing more is asked.
        let out = run(
            &mut p,
            Input::Reachability(Reachability::Unknown),
            t,
            &mut rng,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(p.relays().collect::<Vec<_>>(), vec![&1]);
        let mut out = run(
            &mut p,
            Input::Reachability(Reachability::Public),
            t,
            &mut rng,
        );
        out.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(out, vec![Output::Unreserve(1), Output::Unreserve(2)]);
        assert_eq!(p.relays().count(), 0);
        assert!(ticks(&mut p, t0, 30, 60, &mut rng).is_empty());
    }

    #[test]
    fn a_relay_is_dialled_over_its_other_transport_once_per_connection() {
        let (mut p, t0, mut rng) = setup();
        private(&mut p, t0, &mut rng);
        let dials = |out: Vec<Output<u32>>| {
            out.into_iter()
                .filter(|o| matches!(o, Output::DialTransport { .. }))
                .collect::<Vec<_>>()
        };
        // Dialled over TCP (see `relay`), listening over both.
        let both = vec![Transport::Tcp, Transport::Quic];
        assert_eq!(
            dials(relay(&mut p, 1, both.clone(), t0, &mut rng)),
            vec![Output::DialTransport {
                relay: 1,
                transport: Transport::Quic
            }]
        );
        // Not again, whatever comes: another identify, the checks.
        let mut out = run(
            &mut p,
            Input::RelayCandidate {
                peer: 1,
                listens_over: both.clone(),
            },
            t0,
            &mut rng,
        );
        out.extend(
            ticks(&mut p, t0, 0, 30, &mut rng)
                .into_iter()
                .map(|(_, o)| o),
        );
        assert!(dials(out).is_empty());
        // A relay listening over TCP only is not dialled again.
        assert!(dials(relay(&mut p, 2, vec![Transport::Tcp], t0, &mut rng)).is_empty());
        // A new connection with relay 1: once more.
        run(&mut p, Input::Disconnected(1), t0, &mut rng);
        assert_eq!(dials(relay(&mut p, 1, both, t0, &mut rng)).len(), 1);
    }

    /// Connects `peer` through a relay, dialled by this node or not.
    fn relayed(p: &mut Policy<u32>, peer: u32, dialled: bool, t: Instant, rng: &mut ChaCha8Rng) {
        run(p, Input::Connected(peer), t, rng);
        let links = Links {
            direct: false,
            direct_over: vec![],
            relayed_dialled: dialled,
        };
        run(p, Input::Links(peer, links), t, rng);
    }

    fn retries(all: &[(u64, Output<u32>)], peer: u32) -> Vec<u64> {
        all.iter()
            .filter(|(_, o)| *o == Output::RetryHolePunch(peer))
            .map(|(s, _)| *s)
            .collect()
    }

    #[test]
    fn hole_punching_is_retried_three_times_then_forgotten_after_ten_minutes() {
        let (mut p, t0, mut rng) = setup();
        relayed(&mut p, 1, true, t0, &mut rng);
        run(&mut p, Input::HolePunchFailed(1), t0, &mut rng);
        // Every 10 s (checked every 5 s), three times.
        let all = ticks(&mut p, t0, 0, 200, &mut rng);
        assert_eq!(retries(&all, 1), vec![10, 20, 30]);
        // Another failure before it is forgotten: no more retries, and memory runs on.
        run(
            &mut p,
            Input::HolePunchFailed(1),
            t0 + Duration::from_secs(200),
            &mut rng,
        );
        assert!(retries(&ticks(&mut p, t0, 200, 795, &mut rng), 1).is_empty());
        // 600 s after the last failure it is forgotten: a new failure is retried again.
        ticks(&mut p, t0, 795, 800, &mut rng);
        run(
            &mut p,
            Input::HolePunchFailed(1),
            t0 + Duration::from_secs(801),
            &mut rng,
        );
        assert_eq!(
            retries(&ticks(&mut p, t0, 801, 900, &mut rng), 1),
            vec![815, 825, 835]
        );
    }

    #[test]
    fn only_a_peer_reached_through_a_relay_it_dialled_is_redialled() {
        let (mut p, t0, mut rng) = setup();
        relayed(&mut p, 1, true, t0, &mut rng);
        relayed(&mut p, 2, false, t0, &mut rng);
        relayed(&mut p, 3, true, t0, &mut rng);
        for peer in 1..=4 {
            run(&mut p, Input::HolePunchFailed(peer), t0, &mut rng);
        }
        // Peer 3 got a direct connection after all; peer 4 is not connected.
        let direct = Links {
            direct: true,
            direct_over: vec![Transport::Quic],
            relayed_dialled: true,
        };
        run(&mut p, Input::Links(3, direct), t0, &mut rng);
        let all = ticks(&mut p, t0, 0, 60, &mut rng);
        assert_eq!(retries(&all, 1), vec![10, 20, 30]);
        // The other side dialled the relayed connection: it redials, not this node.
        assert!(retries(&all, 2).is_empty());
        assert!(retries(&all, 3).is_empty());
        assert!(retries(&all, 4).is_empty());
        assert_eq!(p.punches.len(), 3, "peer 4 forgotten");
    }

    #[test]
    fn a_lost_direct_connection_is_punched_again_within_the_same_limit() {
        let (mut p, t0, mut rng) = setup();
        relayed(&mut p, 1, true, t0, &mut rng);
        let links = |direct: bool| Links {
            direct,
            direct_over: if direct {
                vec![Transport::Quic]
            } else {
                vec![]
            },
            relayed_dialled: true,
        };
        run(&mut p, Input::Links(1, links(true)), t0, &mut rng);
        assert!(ticks(&mut p, t0, 0, 30, &mut rng).is_empty());
        // The punched connection dies, the relayed one stays: reconnected 10 s later, punched
        // again; three times.
        let mut at = 30;
        for _ in 0..MAX_PUNCH_RETRIES {
            let t = t0 + Duration::from_secs(at);
            run(&mut p, Input::Links(1, links(false)), t, &mut rng);
            let all = ticks(&mut p, t0, at, at + 10, &mut rng);
            assert_eq!(retries(&all, 1), vec![at + 10]);
            let t = t0 + Duration::from_secs(at + 10);
            run(&mut p, Input::Links(1, links(true)), t, &mut rng);
            assert!(ticks(&mut p, t0, at + 10, at + 20, &mut rng).is_empty());
            at += 20;
        }
        // Lost a fourth time within ten minutes: left on the relay.
        let t = t0 + Duration::from_secs(at);
        run(&mut p, Input::Links(1, links(false)), t, &mut rng);
        assert!(ticks(&mut p, t0, at, 600, &mut rng).is_empty());
    }
}
