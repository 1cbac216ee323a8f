//! Gossipsub peer scoring: the parameters, and why.
//!
//! The one signal that matters is P4, invalid messages: an attestation that fails the
//! protocol's checks cannot be produced by an honest node by mistake (every node validates
//! before forwarding), so each one costs its forwarder heavily. Mesh-delivery penalties (P3)
//! are off: markets are quiet most of the time and a quiet honest peer must not be punished.
//! The application score (P5) carries what gossipsub does not see: garbage and floods on the
//! sync protocol, and messages published on the wrong market's topic.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::gossipsub::{PeerScoreParams, PeerScoreThresholds, TopicScoreParams};

/// P4 weight per (squared) invalid message: 2 invalid messages (−40) pass the ban line of −30
/// (`PolicyConfig::ban_score`), which is above the graylist threshold (−40) on purpose: a
/// graylisted peer's messages are dropped unseen, so its score would stop falling.
pub const INVALID_MESSAGE_WEIGHT: f64 = -10.0;
/// Application-score penalty per sync-protocol offence (weight 1).
pub const APP_PENALTY: f64 = -10.0;

/// The global score parameters.
pub fn params() -> PeerScoreParams {
    PeerScoreParams {
        topic_score_cap: 100.0,
        app_specific_weight: 1.0,
        // Loopback and LAN testnets put many peers on one IP: do not punish that.
        ip_colocation_factor_weight: -5.0,
        ip_colocation_factor_threshold: 10.0,
        ip_colocation_factor_whitelist: HashSet::from([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]),
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: 0.99,
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.01,
        retain_score: Duration::from_secs(3600),
        ..PeerScoreParams::default()
    }
}

/// The parameters of each market topic.
pub fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        // Slow decay: about 5 % per second, so a burst of garbage stays on record for minutes.
        invalid_message_deliveries_decay: 0.95,
        ..TopicScoreParams::default()
    }
}

/// Score thresholds: below `graylist` a peer's messages are ignored outright.
pub fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -20.0,
        graylist_threshold: -40.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_valid() {
        params().validate().unwrap();
        topic_params().validate().unwrap();
        thresholds().validate().unwrap();
    }
}
