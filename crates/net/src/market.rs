//! One gossipsub topic per market: `passalong/v1/market/<hex key>`, the key being the seller's
//! (or, for community attestations, the connector's).

use libp2p::gossipsub::{IdentTopic, TopicHash};
use passalong_protocol::PublicKey;

const PREFIX: &str = "passalong/v1/market/";

/// The topic of a market.
pub fn topic(market: &PublicKey) -> IdentTopic {
    IdentTopic::new(format!("{PREFIX}{}", market.to_hex()))
}

/// The market a topic names, if it is one of ours.
pub fn market_of(topic: &TopicHash) -> Option<PublicKey> {
    let hex = topic.as_str().strip_prefix(PREFIX)?;
    PublicKey::from_hex(hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_round_trip() {
        let pk = PublicKey([3; 32]);
        assert_eq!(market_of(&topic(&pk).hash()), Some(pk));
        assert_eq!(market_of(&IdentTopic::new("other").hash()), None);
        assert_eq!(
            market_of(&IdentTopic::new("passalong/v1/market/zz").hash()),
            None
        );
    }
}
