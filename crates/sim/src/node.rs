//! One simulated node: its policy, what it follows and stores, its peers.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use passalong_net::market::Shard;
use passalong_net::policy::Policy;
use passalong_net::wire::Digest;

/// A message of the run (an attestation or garbage), numbered in the order it was first
/// made: nodes hold these numbers, not the 32-byte ids.
pub type Msg = u32;

/// A set of message numbers, one bit each: a node's seen set costs an eighth of a byte per
/// message of the whole run, not a hash-set entry per message it saw.
#[derive(Clone, Debug, Default)]
pub struct Bits(Vec<u64>);

impl Bits {
    /// Adds `m`; true if it was not there.
    pub fn insert(&mut self, m: Msg) -> bool {
        let (w, b) = (m as usize / 64, m % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        let new = self.0[w] & (1 << b) == 0;
        self.0[w] |= 1 << b;
        new
    }

    /// Whether `m` is in.
    pub fn contains(&self, m: Msg) -> bool {
        self.0
            .get(m as usize / 64)
            .is_some_and(|w| w & (1 << (m % 64)) != 0)
    }

    /// How many are in.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// A simulated node.
pub struct Node {
    /// Honest, or hostile (spams, sends garbage, withholds, eclipses).
    pub honest: bool,
    /// Up, or offline for a while (churn).
    pub online: bool,
    /// The markets it follows (numbers).
    pub followed: BTreeSet<u16>,
    /// The shard topics it subscribes to.
    pub shards: HashSet<Shard>,
    /// Connected peers.
    pub peers: BTreeSet<u32>,
    /// Those of them that dialled this node.
    pub inbound: HashSet<u32>,
    /// The real network policy.
    pub policy: Policy<u32>,
    /// Each followed market's stored messages (a handful each: a list is smaller than a set).
    pub store: BTreeMap<u16, Vec<Msg>>,
    /// Messages seen by gossip (gossipsub's duplicate cache).
    pub seen: Bits,
    /// Its own publications held until a peer on their shard connects.
    pub held: Vec<(u16, Msg)>,
    /// Payload bytes in and out.
    pub bytes: u64,
    /// Spam attestations stored.
    pub spam_stored: u64,
    /// Largest policy footprint seen.
    pub policy_peak: usize,
}

impl Node {
    /// Stores `m` of `market` if followed; true if it is new.
    pub fn store(&mut self, market: u16, m: Msg) -> bool {
        if !self.followed.contains(&market) {
            return false;
        }
        let s = self.store.entry(market).or_default();
        if s.contains(&m) {
            return false;
        }
        s.push(m);
        true
    }

    /// Whether it holds `m` of `market`.
    pub fn holds(&self, market: u16, m: Msg) -> bool {
        self.store.get(&market).is_some_and(|s| s.contains(&m))
    }

    /// What it holds of `market`.
    pub fn held(&self, market: u16) -> &[Msg] {
        self.store.get(&market).map_or(&[], Vec::as_slice)
    }

    /// The digest of a market's set, as `/passalong/sync/2` exchanges it (`ids` are the
    /// messages' ids by number).
    pub fn digest(&self, market: u16, ids: &[[u8; 32]]) -> Digest {
        Digest::of(self.held(market).iter().map(|m| &ids[*m as usize]))
    }

    /// An estimate of the node's state in bytes: stored envelopes (about 220 bytes each with
    /// their index), seen ids (48 bytes each in gossipsub's duplicate cache), policy entries
    /// (about 100 bytes each).
    pub fn state_bytes(&self) -> u64 {
        let stored: usize = self.store.values().map(Vec::len).sum();
        (stored * 220 + self.seen.len() * 48 + self.policy_peak * 100) as u64
    }
}
