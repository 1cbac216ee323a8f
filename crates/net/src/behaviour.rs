//! The one composed `NetworkBehaviour` and the swarm built around it.
#![allow(missing_docs)] // the derive generates an undocumented event enum

use std::sync::Arc;
use std::time::Duration;

use libp2p::metrics::Registry;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify, identity, kad, mdns,
    noise, ping, relay, request_response, tcp, yamux, StreamProtocol, Swarm,
};

use crate::config::NetConfig;
use crate::wire::{Codec, Traffic, SYNC_PROTOCOL};
use crate::NetError;

/// Identify's protocol version: peers of other networks are told apart by it.
pub const IDENTIFY_PROTOCOL: &str = "/passalong/1.0.0";
/// Passalong's own Kademlia DHT, separate from IPFS's.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/passalong/kad/1.0.0");
/// Largest gossipsub RPC frame. A frame can carry several messages and control entries (a
/// sender under load packs them), so this is well above one envelope (1 KiB, which the
/// protocol's decoder enforces on each message).
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// Connections kept with one peer. Hole punching needs four at once: a relayed connection
/// each way (both sides may dial through the relay at the same moment) and the direct
/// connection DCUtR opens from each side (a QUIC simultaneous open makes two). With 2, the
/// punched connections were refused as they opened, or each side refused the other's.
const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Provider keys the DHT store holds, this node's and others' together (each with at most
/// 20 providers): a node announces each market it follows and each shard it subscribes to,
/// so this is 10,000 markets, the shards, and room for others' records.
pub const MAX_PROVIDER_KEYS: usize = 16_384;
/// Inbound connections in their handshake at once, from all addresses together (one IP may
/// hold [`crate::ip_limits::MAX_PENDING_PER_IP`] of them).
pub const MAX_PENDING_INCOMING: u32 = 128;

/// Everything the node speaks, composed.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Refuses handshakes beyond a few at once from one IP.
    pub ip_limits: crate::ip_limits::Behaviour,
    /// Refuses connections beyond the configured limits.
    pub limits: connection_limits::Behaviour,
    /// Refuses banned and partitioned-off peers.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// A fixed set of shard topics that markets map to; peers may subscribe to those only.
    pub gossipsub:
        gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::WhitelistSubscriptionFilter>,
    /// Anti-entropy: reconciliation and fetches.
    pub sync: request_response::Behaviour<Codec>,
    /// Peers tell each other their addresses and protocols.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Peer discovery beyond the bootstrap nodes.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Peer discovery on the LAN.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Relay v2 server (community nodes).
    pub relay_server: Toggle<relay::Behaviour>,
    /// Relay v2 client: reachable through a relay when behind NAT.
    pub relay_client: relay::client::Behaviour,
    /// Hole punching through relayed connections.
    pub dcutr: dcutr::Behaviour,
    /// Learns whether this node is publicly reachable.
    pub autonat: autonat::Behaviour,
}

fn gossipsub_config() -> Result<gossipsub::Config, NetError> {
    gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(500))
        // Attestations are self-authenticating: no gossipsub signatures, no author field, and
        // the message id is the attestation id (the hash of the envelope after the market
        // key), so two publishers of one attestation agree.
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        // The frame's market is part of the id: a community or membership that goes out under
        // the name of each market depending on it is a new message on each of their topics.
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
        })
        // Nothing is forwarded before the protocol crate has validated it.
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| NetError::Config(e.to_string()))
}

/// AutoNAT probes sooner and more often than libp2p's defaults (15 s, then every 90 s while
/// unsure): a node behind NAT is reachable only once it knows and reserves a relay slot.
fn autonat_config() -> autonat::Config {
    autonat::Config {
        boot_delay: Duration::from_secs(3),
        retry_interval: Duration::from_secs(20),
        refresh_interval: Duration::from_secs(300),
        throttle_server_period: Duration::from_secs(15),
        ..autonat::Config::default()
    }
}

/// Builds the swarm: TCP and QUIC, noise, yamux, the relay client transport, and [`Behaviour`].
/// The transport counts its bytes per protocol stack and direction into `registry`
/// (`libp2p_bandwidth_bytes_total`).
pub fn build(
    key: identity::Keypair,
    config: &NetConfig,
    members: &crate::relay::RelayMembers,
    traffic: Arc<Traffic>,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, NetError> {
    let mdns_on = config.mdns;
    let (ping_interval, ping_timeout) = (config.ping_interval, config.ping_timeout);
    let relay_on = config.relay_server;
    let relay_config = config.relay.clone();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        // A quarter of the slots stay for connections this node opens: peers that dial in
        // cannot take them all (an eclipse).
        .with_max_established_incoming(Some(config.max_connections - config.max_connections / 4))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let mut gossipsub = gossipsub::Behaviour::new_with_subscription_filter(
                gossipsub::MessageAuthenticity::Anonymous,
                gossipsub_config().map_err(|e| e.to_string())?,
                gossipsub::WhitelistSubscriptionFilter(crate::market::all_topics().collect()),
            )?;
            gossipsub.with_peer_score(crate::scoring::params(), crate::scoring::thresholds())?;
            let sync = request_response::Behaviour::with_codec(
                Codec::new(traffic),
                [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(30))
                    .with_max_concurrent_streams(crate::wire::MAX_SYNC_STREAMS),
            );
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_query_timeout(Duration::from_secs(30));
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::with_config(
                    peer_id,
                    kad::store::MemoryStoreConfig {
                        max_provided_keys: MAX_PROVIDER_KEYS,
                        ..Default::default()
                    },
                ),
                kad_config,
            );
            // Every node serves the DHT: markets are small and peers few.
            kad.set_mode(Some(kad::Mode::Server));
            let mdns = if mdns_on {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            let relay_server =
                relay_on.then(|| crate::relay::server(peer_id, &relay_config, members));
            Ok(Behaviour {
                ip_limits: Default::default(),
                limits: connection_limits::Behaviour::new(limits),
                blocked: allow_block_list::Behaviour::default(),
                gossipsub,
                sync,
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                        .with_agent_version(format!("passalong/{}", env!("CARGO_PKG_VERSION")))
                        // A relay circuit address must reach peers soon after the reservation.
                        .with_push_listen_addr_updates(true),
                ),
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(ping_interval)
                        .with_timeout(ping_timeout),
                ),
                kad,
                mdns: mdns.into(),
                relay_server: relay_server.into(),
                relay_client,
                dcutr: dcutr::Behaviour::new(peer_id),
                autonat: autonat::Behaviour::new(peer_id, autonat_config()),
            })
        })
        .map_err(|e| NetError::Config(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}
