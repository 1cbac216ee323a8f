//! Connections still in their handshake, counted per remote IP: one address cannot take every
//! pending slot (libp2p's limit is global: 64 half-open TCP connections from one host locked
//! out every new peer).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    dummy, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure,
    NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Inbound connections in their handshake from one IP at once; more are refused until one
/// completes or fails (the handshake times out after 10 s).
pub const MAX_PENDING_PER_IP: usize = 8;

/// The refusal, as the swarm reports it.
#[derive(Debug, thiserror::Error)]
#[error("{ip} has {MAX_PENDING_PER_IP} connections in their handshake already")]
pub struct TooManyPending {
    /// The address.
    pub ip: IpAddr,
}

/// The pure count: which pending connection came from which IP.
#[derive(Debug, Default)]
pub struct PendingPerIp {
    by_ip: HashMap<IpAddr, HashSet<ConnectionId>>,
    ip_of: HashMap<ConnectionId, IpAddr>,
}

impl PendingPerIp {
    /// Admits a new pending connection from `ip`, or refuses it.
    pub fn admit(&mut self, id: ConnectionId, ip: IpAddr) -> Result<(), TooManyPending> {
        let set = self.by_ip.entry(ip).or_default();
        if set.len() >= MAX_PENDING_PER_IP {
            return Err(TooManyPending { ip });
        }
        set.insert(id);
        self.ip_of.insert(id, ip);
        Ok(())
    }

    /// The connection's handshake ended (established, failed or closed).
    pub fn done(&mut self, id: ConnectionId) {
        if let Some(ip) = self.ip_of.remove(&id) {
            if let Some(set) = self.by_ip.get_mut(&ip) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_ip.remove(&ip);
                }
            }
        }
    }

    /// Pending connections counted.
    pub fn len(&self) -> usize {
        self.ip_of.len()
    }

    /// Whether none are pending.
    pub fn is_empty(&self) -> bool {
        self.ip_of.is_empty()
    }
}

/// The behaviour that applies [`PendingPerIp`] to inbound connections.
#[derive(Debug, Default)]
pub struct Behaviour {
    pending: PendingPerIp,
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        // Relayed connections have no IP of their own: the relay limits them.
        match ip_of(remote) {
            Some(ip) => self
                .pending
                .admit(connection_id, ip)
                .map_err(ConnectionDenied::new),
            None => Ok(()),
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending.done(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.pending.done(connection_id)
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ip_cannot_take_every_pending_slot() {
        let mut p = PendingPerIp::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut n = 0;
        for i in 0..MAX_PENDING_PER_IP {
            p.admit(ConnectionId::new_unchecked(i), a).unwrap();
            n += 1;
        }
        assert!(p.admit(ConnectionId::new_unchecked(100), a).is_err());
        assert!(p.admit(ConnectionId::new_unchecked(101), b).is_ok());
        p.done(ConnectionId::new_unchecked(0));
        assert!(p.admit(ConnectionId::new_unchecked(102), a).is_ok());
        assert_eq!(p.len(), n + 1);
        for i in 1..MAX_PENDING_PER_IP {
            p.done(ConnectionId::new_unchecked(i));
        }
        p.done(ConnectionId::new_unchecked(101));
        p.done(ConnectionId::new_unchecked(102));
        assert!(p.is_empty());
    }
}
