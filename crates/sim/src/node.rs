//! One simulated node: its policy, what it follows and stores, its peers.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use passalong_net::market::Shard;
use passalong_net::policy::Policy;
use passalong_net::wire::Digest;
use passalong_protocol::Id;

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
    /// Each followed market's stored `(created_at, id)`, kept sorted for reconciliation.
    pub store: BTreeMap<u16, BTreeSet<(u64, [u8; 32])>>,
    /// Ids seen by gossip (gossipsub's duplicate cache).
    pub seen: HashSet<Id>,
    /// Payload bytes in and out.
    pub bytes: u64,
    /// Spam attestations stored.
    pub spam_stored: u64,
    /// Largest policy footprint seen.
    pub policy_peak: usize,
}

impl Node {
    /// Stores `id` of `market` if followed; true if it is new.
    pub fn store(&mut self, market: u16, created_at: u64, id: Id) -> bool {
        if !self.followed.contains(&market) {
            return false;
        }
        self.store
            .entry(market)
            .or_default()
            .insert((created_at, id.0))
    }

    /// Whether it holds `id` of `market`.
    pub fn holds(&self, market: u16, created_at: u64, id: &Id) -> bool {
        self.store
            .get(&market)
            .is_some_and(|s| s.contains(&(created_at, id.0)))
    }

    /// The digest of a market's set, as `/passalong/sync/2` exchanges it.
    pub fn digest(&self, market: u16) -> Digest {
        match self.store.get(&market) {
            Some(s) => Digest::of(s.iter().map(|(_, id)| id)),
            None => Digest::of(std::iter::empty()),
        }
    }

    /// An estimate of the node's state in bytes: stored envelopes (about 220 bytes each with
    /// their index), seen ids, policy entries (about 100 bytes each).
    pub fn state_bytes(&self) -> u64 {
        let stored: usize = self.store.values().map(BTreeSet::len).sum();
        (stored * 220 + self.seen.len() * 48 + self.policy_peak * 100) as u64
    }
}
