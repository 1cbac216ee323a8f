//! Markets travel on a fixed number of shard topics, `passalong/v2/shard/<n>`: a node's
//! subscriptions do not grow with the markets it follows (gossipsub peers refuse more than
//! a hundred topics from one peer by default, and a subscription frame of 700 market topics
//! is over the frame limit). Each gossip message names its market in front of the envelope,
//! so a node drops other markets' messages of its shards after checking them statelessly,
//! and forwards the valid ones.

use libp2p::gossipsub::{IdentTopic, TopicHash};
use passalong_protocol::PublicKey;

const PREFIX: &str = "passalong/v2/shard/";
/// Shard topics. A node following one market receives `1/SHARDS` of the network's gossip; one
/// following more than a few hundred receives nearly all of it (see `docs/network.md`).
pub const SHARDS: u16 = 64;

/// A shard number, below [`SHARDS`].
pub type Shard = u16;

/// The shard a market travels on: the first two bytes of the blake3 hash of its key.
pub fn shard(market: &PublicKey) -> Shard {
    let h = blake3::hash(&market.0);
    u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]) % SHARDS
}

/// The topic of a shard.
pub fn topic(shard: Shard) -> IdentTopic {
    IdentTopic::new(format!("{PREFIX}{shard}"))
}

/// The shard a topic names, if it is one of ours.
pub fn shard_of(topic: &TopicHash) -> Option<Shard> {
    let n: Shard = topic.as_str().strip_prefix(PREFIX)?.parse().ok()?;
    (n < SHARDS && topic.as_str() == topic_name(n)).then_some(n)
}

fn topic_name(shard: Shard) -> String {
    format!("{PREFIX}{shard}")
}

/// The DHT key under which the peers of a shard announce themselves (provider records), so
/// that a node short of peers on a shard can find some.
pub fn provider_key(shard: Shard) -> Vec<u8> {
    topic_name(shard).into_bytes()
}

/// The DHT key under which a market's followers announce themselves, so that a node none
/// of whose peers holds a market it follows can find some.
pub fn follower_key(market: &PublicKey) -> Vec<u8> {
    format!("passalong/v2/market/{}", market.to_hex()).into_bytes()
}

/// Every shard topic: what a peer may subscribe to.
pub fn all_topics() -> impl Iterator<Item = TopicHash> {
    (0..SHARDS).map(|s| topic(s).hash())
}

/// A gossip message: the market's key, then the envelope.
pub fn frame(market: &PublicKey, envelope: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + envelope.len());
    out.extend_from_slice(&market.0);
    out.extend_from_slice(envelope);
    out
}

/// The market and envelope of a gossip message; `None` if it is too short to hold both.
pub fn unframe(data: &[u8]) -> Option<(PublicKey, &[u8])> {
    if data.len() <= 32 {
        return None;
    }
    let (m, e) = data.split_at(32);
    Some((PublicKey(m.try_into().ok()?), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_round_trip() {
        for s in [0, 1, SHARDS - 1] {
            assert_eq!(shard_of(&topic(s).hash()), Some(s));
        }
        for bad in [
            "other",
            "passalong/v2/shard/64",
            "passalong/v2/shard/01",
            "passalong/v2/shard/x",
        ] {
            assert_eq!(shard_of(&IdentTopic::new(bad).hash()), None, "{bad}");
        }
    }

    #[test]
    fn shards_spread_markets() {
        let mut counts = [0u32; SHARDS as usize];
        for i in 0..6_400u32 {
            let m = PublicKey(*blake3::hash(&i.to_le_bytes()).as_bytes());
            counts[shard(&m) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (50..150).contains(c)), "{counts:?}");
    }

    #[test]
    fn frames_round_trip_and_short_ones_are_refused() {
        let m = PublicKey([7; 32]);
        let f = frame(&m, b"envelope");
        assert_eq!(unframe(&f), Some((m, &b"envelope"[..])));
        assert_eq!(unframe(&f[..32]), None);
        assert_eq!(unframe(&[]), None);
    }
}
