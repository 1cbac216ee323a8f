//! The relay v2 server a community node runs for its members: who may hold a reservation on
//! it, and how much a circuit may carry.
//!
//! A member behind NAT is reachable only through a relay where she holds a reservation, so
//! the community node keeps one slot for each of its members and none for anyone else
//! (`members_only`): its reservations are checked against [`RelayMembers`], which the node
//! refreshes as members are admitted and removed. Anyone may open a circuit *to* a member (an
//! outsider's node reaching a member behind NAT is the point of the relay); a circuit's
//! destination must hold a reservation, so only members can be reached through it. libp2p
//! checks an admission only when a reservation is made or renewed: a removed member keeps her
//! slot until its renewal (at most [`RelayLimits::reservation_duration`]).
//!
//! libp2p's defaults (128 KiB and 2 minutes per circuit) suit a relay that only helps two peers
//! punch a hole. Members whose NAT cannot be punched sync through the circuit itself, so a
//! members' relay allows [`RelayLimits::members`]. libp2p-relay has no byte budget per peer
//! over time: the limits are per circuit, and the number of circuits per peer.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use libp2p::{relay, Multiaddr, PeerId};

/// The relay server's settings (used when `NetConfig::relay_server` is on).
#[derive(Clone, Debug, PartialEq)]
pub struct RelayConfig {
    /// Reservations only for the peers in [`RelayMembers`] (a community node's members).
    pub members_only: bool,
    /// How much it serves.
    pub limits: RelayLimits,
}

impl Default for RelayConfig {
    /// Anyone may reserve, with libp2p's limits: the relay a personal node with a public
    /// address may offer to help others punch holes.
    fn default() -> Self {
        RelayConfig {
            members_only: false,
            limits: RelayLimits::open(),
        }
    }
}

impl RelayConfig {
    /// A community node's relay: reservations for its members only, circuits that can carry a
    /// member's sync.
    pub fn members() -> RelayConfig {
        RelayConfig {
            members_only: true,
            limits: RelayLimits::members(),
        }
    }
}

/// How much the relay serves at once and per circuit.
#[derive(Clone, Debug, PartialEq)]
pub struct RelayLimits {
    /// Reservations held at once, in all.
    pub max_reservations: usize,
    /// Reservations one peer holds at once.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before the peer renews it (and is checked again).
    pub reservation_duration: Duration,
    /// Circuits open at once, in all.
    pub max_circuits: usize,
    /// Circuits open at once from or to one peer.
    pub max_circuits_per_peer: usize,
    /// A circuit is closed after this long.
    pub max_circuit_duration: Duration,
    /// A circuit is closed after carrying this many bytes (each way).
    pub max_circuit_bytes: u64,
}

impl RelayLimits {
    /// libp2p's defaults: circuits long enough to punch a hole.
    pub fn open() -> RelayLimits {
        let d = relay::Config::default();
        RelayLimits {
            max_reservations: d.max_reservations,
            max_reservations_per_peer: d.max_reservations_per_peer,
            reservation_duration: d.reservation_duration,
            max_circuits: d.max_circuits,
            max_circuits_per_peer: d.max_circuits_per_peer,
            max_circuit_duration: d.max_circuit_duration,
            max_circuit_bytes: d.max_circuit_bytes,
        }
    }

    /// A members' relay: a reservation per member (two devices each, and renewals
    /// overlapping), circuits of 16 MiB and 30 minutes (a member catching up a market through
    /// it), four at once per peer.
    pub fn members() -> RelayLimits {
        RelayLimits {
            max_reservations: 1_024,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(3_600),
            max_circuits: 256,
            max_circuits_per_peer: 4,
            max_circuit_duration: Duration::from_secs(30 * 60),
            max_circuit_bytes: 16 << 20,
        }
    }
}

/// The peers a members-only relay admits, shared by the node (which sets them) and the relay
/// (which reads them at each reservation). Cloning shares the set.
#[derive(Clone, Debug, Default)]
pub struct RelayMembers(Arc<RwLock<HashSet<PeerId>>>);

impl RelayMembers {
    /// From now on, these peers and no others.
    pub fn set(&self, peers: impl IntoIterator<Item = PeerId>) {
        let peers: HashSet<PeerId> = peers.into_iter().collect();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = peers;
    }

    /// Whether `peer` may reserve.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(peer)
    }

    /// Peers admitted.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The relay server of `config`, admitting `members` if it is members-only (see
/// [`server_config`]).
pub fn server(peer_id: PeerId, config: &RelayConfig, members: &RelayMembers) -> relay::Behaviour {
    let mut r = relay::Behaviour::new(peer_id, server_config(config, members));
    // An operator who turns the relay on says the node is reachable: advertise the hop
    // protocol at once instead of waiting for AutoNAT to confirm an address.
    r.set_status(Some(relay::Status::Enable));
    r
}

/// libp2p-relay's settings for `config`. libp2p's own rate limits stay: per peer and per IP
/// address, a bucket of reservations and one of circuits (`relay::Config::default()`).
///
/// A members-only relay checks membership before them. libp2p asks the reservation limiters
/// in turn and stops at the first that refuses, and each one asked takes a token: checked
/// after them, a non-member's refused reservation took a token from the bucket of the IP
/// address it came from, which the members behind that address (a carrier's NAT, a
/// household) share, so that non-members could use it up and have her reservations and
/// renewals refused. Checked first, a non-member takes nothing.
pub fn server_config(config: &RelayConfig, members: &RelayMembers) -> relay::Config {
    let l = &config.limits;
    let mut c = relay::Config {
        max_reservations: l.max_reservations,
        max_reservations_per_peer: l.max_reservations_per_peer,
        reservation_duration: l.reservation_duration,
        max_circuits: l.max_circuits,
        max_circuits_per_peer: l.max_circuits_per_peer,
        max_circuit_duration: l.max_circuit_duration,
        max_circuit_bytes: l.max_circuit_bytes,
        ..relay::Config::default()
    };
    if config.members_only {
        let members = members.clone();
        c.reservation_rate_limiters.insert(
            0,
            Box::new(
                move |peer: PeerId, _addr: &Multiaddr, _now: std::time::Instant| {
                    members.contains(&peer)
                },
            ),
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn members_are_replaced_as_a_whole_and_shared_by_clones() {
        let m = RelayMembers::default();
        let shared = m.clone();
        let (a, b) = (PeerId::random(), PeerId::random());
        m.set([a]);
        assert!(shared.contains(&a) && !shared.contains(&b));
        m.set([b]);
        assert!(!shared.contains(&a) && shared.contains(&b));
        assert_eq!(shared.len(), 1);
    }

    /// Whether `peer` at `addr` may reserve, by the limiters alone: libp2p-relay 0.22 asks
    /// them so (`Behaviour::on_connection_handler_event`, a reservation request), each taking
    /// a token from its bucket until one refuses.
    fn admits(c: &mut relay::Config, peer: PeerId, addr: &Multiaddr, now: Instant) -> bool {
        c.reservation_rate_limiters
            .iter_mut()
            .all(|l| l.try_next(peer, addr, now))
    }

    #[test]
    fn non_members_at_a_members_address_take_nothing_from_its_bucket() {
        let members = RelayMembers::default();
        let member = PeerId::random();
        members.set([member]);
        let mut c = server_config(&RelayConfig::members(), &members);
        assert_eq!(c.reservation_rate_limiters.len(), 3, "libp2p's two stay");
        // A carrier's NAT: everyone at one address. libp2p's per-IP bucket holds 60, and each
        // peer's 30: refused non-members, many and each asking again and again.
        let shared: Multiaddr = "/ip4/203.0.113.7/tcp/4001".parse().unwrap();
        let now = Instant::now();
        for _ in 0..100 {
            let outsider = PeerId::random();
            for _ in 0..40 {
                assert!(!admits(&mut c, outsider, &shared, now));
            }
        }
        // The member has the address's whole bucket: her own 30 reservations and renewals.
        for i in 0..30 {
            assert!(admits(&mut c, member, &shared, now), "refused at {i}");
        }
        assert!(
            !admits(&mut c, member, &shared, now),
            "her own bucket holds 30"
        );
    }

    #[test]
    fn an_open_relay_keeps_libp2ps_per_ip_bucket() {
        let mut c = server_config(&RelayConfig::default(), &RelayMembers::default());
        let shared: Multiaddr = "/ip4/203.0.113.7/tcp/4001".parse().unwrap();
        let now = Instant::now();
        let admitted = (0..100)
            .filter(|_| admits(&mut c, PeerId::random(), &shared, now))
            .count();
        assert_eq!(admitted, 60);
    }

    #[test]
    fn a_members_relay_lets_a_sync_through_and_an_open_one_keeps_libp2p_limits() {
        let members = RelayLimits::members();
        let open = RelayLimits::open();
        assert!(members.max_circuit_bytes >= 64 * open.max_circuit_bytes);
        assert!(members.max_circuit_duration > open.max_circuit_duration);
        assert_eq!(RelayConfig::default().limits, open);
        assert!(!RelayConfig::default().members_only);
        assert!(RelayConfig::members().members_only);
    }
}
