//! The network's settings; the node fills them from its TOML config and flags.

use std::time::Duration;

use libp2p::Multiaddr;

use crate::policy::PolicyConfig;
use crate::relay::RelayConfig;

/// Network settings.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Addresses to listen on (TCP and QUIC multiaddrs; relay circuits too).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (each with its `/p2p/` peer id for Kademlia).
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses peers can reach this node at, declared by its operator (a public address or
    /// a forwarded port). AutoNAT finds them too, but later; a relay needs one to serve.
    pub external: Vec<Multiaddr>,
    /// Find peers on the LAN with mDNS.
    pub mdns: bool,
    /// Serve as a relay (v2) for peers behind NAT (community nodes do).
    pub relay_server: bool,
    /// Whom the relay serves and how much (see `relay`).
    pub relay: RelayConfig,
    /// Most established connections in total.
    pub max_connections: u32,
    /// Who is admitted and banned, when to reconcile, how fast peers, authors and this node
    /// may go (the policy state machine's settings).
    pub policy: PolicyConfig,
    /// Every connection is pinged this often, and closed when pings go unanswered for
    /// `ping_timeout`: a peer that vanished without closing its TCP connection (its host
    /// crashed, the network was cut) would otherwise count as connected for the ~15 minutes
    /// TCP takes to give up. libp2p lets the first failure pass and the next stream takes up
    /// to 10 s to fail, so with the defaults a vanished peer is dropped within about a minute.
    pub ping_interval: Duration,
    /// See `ping_interval`.
    pub ping_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr"),
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .expect("valid multiaddr"),
            ],
            bootstrap: Vec::new(),
            external: Vec::new(),
            mdns: true,
            relay_server: false,
            relay: RelayConfig::default(),
            max_connections: 256,
            policy: PolicyConfig::default(),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(20),
        }
    }
}
