//! `config.toml`: every setting of `passalong run`, also settable by a flag (flags win).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use passalong_net::{RelayConfig, RelayLimits};

use crate::cli::RunArgs;

/// The default API address.
pub const DEFAULT_API: &str = "127.0.0.1:7423";
/// The default libp2p listen addresses: TCP and QUIC on port 7424 of every interface.
pub const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/7424", "/ip4/0.0.0.0/udp/7424/quic-v1"];

/// The node's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the local HTTP API (loopback only).
    pub api: SocketAddr,
    /// libp2p listen addresses.
    pub listen: Vec<String>,
    /// libp2p bootstrap peers.
    pub bootstrap: Vec<String>,
    /// Addresses peers can reach this node at (public address or forwarded port).
    pub external: Vec<String>,
    /// Find peers on the LAN with mDNS.
    pub mdns: bool,
    /// Serve as a relay (v2) for peers behind NAT.
    pub relay_server: bool,
    /// The relay reserves for this node's community members only. Unset: only when the node
    /// runs a community when it starts (see [`Config::relay`]).
    pub relay_members_only: Option<bool>,
    /// The relay's reservations at once, in all (0: the default of the relay's kind).
    pub relay_max_reservations: usize,
    /// The relay's reservations one peer holds at once (0: the default).
    pub relay_max_reservations_per_peer: usize,
    /// Seconds a reservation lasts before it is renewed and checked again (0: the default).
    pub relay_reservation_secs: u64,
    /// Circuits relayed at once, in all (0: the default).
    pub relay_max_circuits: usize,
    /// Circuits relayed at once from or to one peer (0: the default).
    pub relay_max_circuits_per_peer: usize,
    /// Seconds a circuit stays open at most (0: the default).
    pub relay_max_circuit_secs: u64,
    /// Bytes a circuit carries each way at most (0: the default).
    pub relay_max_circuit_bytes: u64,
    /// Run without peer-to-peer networking.
    pub offline: bool,
    /// Seconds between anti-entropy rounds with a random peer.
    pub sync_interval_secs: u64,
    /// Attestations written between store checkpoints (0: only when the journal reaches 256 MiB).
    pub checkpoint_every: u64,
    /// sled's page cache for the store, in MiB (0: sized by the store, see
    /// `passalong_store::auto_cache_bytes`).
    pub store_cache_mib: u64,
    /// Log filter.
    pub log: String,
    /// Where the node is reached from outside (`https://HOST`): share links' URLs use it and
    /// the dashboard answers to its host. Empty: the API address.
    pub public_url: String,
    /// Milliseconds a client of the API has to send a request's head (also the longest an
    /// idle connection stays open).
    pub http_header_timeout_ms: u64,
    /// Milliseconds a request of the API may take to be answered (its body read included).
    pub http_request_timeout_ms: u64,
    /// Milliseconds a stop waits for the API's requests under way before it closes them.
    pub shutdown_deadline_ms: u64,
    /// Dial more peers while fewer than this are connected.
    pub target_peers: usize,
    /// Sync requests per second one peer may make (burst: 10 seconds' worth).
    pub peer_requests_per_sec: u32,
    /// Gossip messages per second one peer may send (burst: 10 seconds' worth).
    pub peer_messages_per_sec: u32,
    /// Gossip messages per second one author's attestations may take through this node.
    pub author_messages_per_sec: u32,
    /// Attestations per second this node publishes itself; the rest goes by anti-entropy.
    pub publish_per_sec: u32,
    /// Seconds a misbehaving peer stays banned.
    pub ban_secs: u64,
    /// The argon2id cost of a hosted member's key file and sign-in: `member` (46 MiB, one
    /// pass) or `minimum` (19 MiB, one pass: the least a key file may ask for; tests and very
    /// small devices only).
    pub member_kdf: String,
    /// Members' sign-ins checking a password at once (an argon2 run each); 0: one per core.
    pub signin_concurrency: usize,
    /// The header a reverse proxy on this machine puts the client's address in
    /// (`x-forwarded-for`), believed from a loopback peer only; empty: the TCP peer's address.
    pub client_ip_header: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api: DEFAULT_API
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7423))),
            listen: DEFAULT_LISTEN.iter().map(|s| s.to_string()).collect(),
            bootstrap: Vec::new(),
            external: Vec::new(),
            mdns: true,
            relay_server: false,
            relay_members_only: None,
            relay_max_reservations: 0,
            relay_max_reservations_per_peer: 0,
            relay_reservation_secs: 0,
            relay_max_circuits: 0,
            relay_max_circuits_per_peer: 0,
            relay_max_circuit_secs: 0,
            relay_max_circuit_bytes: 0,
            offline: false,
            sync_interval_secs: 30,
            checkpoint_every: passalong_store::CHECKPOINT_EVERY,
            store_cache_mib: 0,
            log: "info".into(),
            public_url: String::new(),
            http_header_timeout_ms: passalong_api::server::DEFAULT_HEADER_READ_TIMEOUT_MS,
            http_request_timeout_ms: passalong_api::server::DEFAULT_REQUEST_TIMEOUT_MS,
            shutdown_deadline_ms: passalong_api::server::DEFAULT_SHUTDOWN_DEADLINE_MS,
            target_peers: NET.target_peers,
            peer_requests_per_sec: NET.requests_per_sec as u32,
            peer_messages_per_sec: NET.messages_per_sec as u32,
            author_messages_per_sec: NET.author_messages_per_sec as u32,
            publish_per_sec: NET.publish_per_sec as u32,
            ban_secs: NET.ban_for.as_secs(),
            member_kdf: "member".into(),
            signin_concurrency: 0,
            client_ip_header: String::new(),
        }
    }
}

/// The network policy's defaults.
const NET: passalong_net::PolicyConfig = passalong_net::PolicyConfig::DEFAULT;

/// The shortest reservation a relay may grant, in seconds: each renewal is a request from every
/// member, and a removed member keeps her slot until hers.
pub const MIN_RELAY_RESERVATION_SECS: u64 = 60;
/// The longest reservation or circuit, in seconds: a day (a removed member would keep her slot
/// that long; libp2p states a circuit's time in 32 bits).
pub const MAX_RELAY_SECS: u64 = 86_400;
/// The fewest bytes a circuit may carry each way: less than this cannot even carry the
/// exchange that punches a hole (libp2p's default is 128 KiB).
pub const MIN_RELAY_CIRCUIT_BYTES: u64 = 16 * 1024;

/// The file `init` writes: the defaults, with what each setting means.
pub fn default_file() -> String {
    let (members, open) = (RelayLimits::members(), RelayLimits::open());
    format!(
        "# Passalong node configuration. Every setting is also a flag of `passalong run`,\n\
         # and a flag wins over this file.\n\n\
         # The local HTTP API (loopback only; port 0 picks a free port).\n\
         api = \"{DEFAULT_API}\"\n\n\
         # libp2p listen addresses and bootstrap peers (multiaddrs; a bootstrap address\n\
         # ends with /p2p/<peer id>, which `passalong id` prints).\n\
         listen = [\"{}\", \"{}\"]\n\
         bootstrap = []\n\n\
         # Addresses peers can reach this node at, when it knows them (a public address or a\n\
         # forwarded port, e.g. /ip4/203.0.113.7/tcp/7424). A relay server needs one.\n\
         external = []\n\n\
         # Find peers on the local network with mDNS.\n\
         mdns = true\n\n\
         # Relay connections for peers behind NAT (community nodes). A relay needs an\n\
         # address peers can reach (`external` above).\n\
         relay_server = false\n\n\
         # Whom the relay reserves a slot for: true, this node's community members only (a\n\
         # member is checked at each reservation and at its renewal, so a removed member\n\
         # loses her slot within relay_reservation_secs); false, anyone. Unset: members only if\n\
         # this node runs a community when it starts (one founded while it runs takes effect\n\
         # at the next start), anyone otherwise.\n\
         # relay_members_only = true\n\n\
         # The relay's limits; 0 is the default of its kind, members only / anyone:\n\
         # reservations in all ({} / {}), per peer ({} / {}), and how long one lasts before\n\
         # it is renewed, in seconds ({} / {}); circuits in all ({} / {}), per peer\n\
         # ({} / {}), and what one carries at most, in seconds ({} / {}) and bytes each way\n\
         # ({} / {}). A member whose NAT cannot be punched syncs through a circuit.\n\
         relay_max_reservations = 0\n\
         relay_max_reservations_per_peer = 0\n\
         relay_reservation_secs = 0\n\
         relay_max_circuits = 0\n\
         relay_max_circuits_per_peer = 0\n\
         relay_max_circuit_secs = 0\n\
         relay_max_circuit_bytes = 0\n\n\
         # Run without peer-to-peer networking (the API still works).\n\
         offline = false\n\n\
         # Seconds between reconciliations with a random peer (also on every new connection).\n\
         sync_interval_secs = 30\n\n\
         # Attestations written between store checkpoints, which keep the start after a crash\n\
         # short (the store pauses for a moment, about 0.3 s with a million attestations).\n\
         # 0: only when the journal of what was written since reaches 256 MiB.\n\
         checkpoint_every = {}\n\n\
         # The store's page cache, in MiB: a node holding millions of attestations ingests\n\
         # faster with more, at that much more memory. 0: sized by the store (a 25th of its\n\
         # tree file, {} to {} MiB).\n\
         store_cache_mib = 0\n\n\
         # Log filter, e.g. \"info\" or \"passalong=debug\".\n\
         log = \"info\"\n\n\
         # The address the node is reached at from outside, e.g. \"https://shop.example\"\n\
         # (behind a reverse proxy): share links' URLs use it, and the dashboard answers to\n\
         # its host. Empty: share links point at the local API address.\n\
         public_url = \"\"\n\n\
         # The API's timeouts, in milliseconds: for a client to send a request's head (an idle\n\
         # connection is closed after it too), for a request to be answered, and for a stop\n\
         # (SIGTERM) to wait for the requests under way before it closes them.\n\
         http_header_timeout_ms = {}\n\
         http_request_timeout_ms = {}\n\
         shutdown_deadline_ms = {}\n\n\
         # The network's limits (docs/limits.md). Peers dialled until this many are connected.\n\
         target_peers = {}\n\
         # Per peer: sync requests and gossip messages a second (bursts: 10 seconds' worth);\n\
         # a peer over them is penalised, and banned after three offences.\n\
         peer_requests_per_sec = {}\n\
         peer_messages_per_sec = {}\n\
         # Gossip a second one author's attestations may take through this node (the rest\n\
         # waits for anti-entropy), and attestations a second this node publishes itself (so a\n\
         # large import does not look like a flood to peers).\n\
         author_messages_per_sec = {}\n\
         publish_per_sec = {}\n\
         # Seconds a misbehaving peer stays banned.\n\
         ban_secs = {}\n\n\
         # A community node: the argon2id cost of sealing a hosted member's key under her\n\
         # password (her sign-ins pay it again). \"member\": 46 MiB, one pass. \"minimum\":\n\
         # 19 MiB, one pass, the least a key file may ask for: weaker against someone who\n\
         # steals the disk, for tests and very small devices only.\n\
         member_kdf = \"member\"\n\n\
         # Members' sign-ins checking a password at once, each an argon2id run of the cost\n\
         # above in memory; more wait (up to 64, then \"busy, retry\"). 0: one per core.\n\
         signin_concurrency = 0\n\n\
         # Behind a reverse proxy on this machine (nginx, Caddy), the header it puts the\n\
         # client's address in, e.g. \"x-forwarded-for\": failed sign-ins are slowed per\n\
         # address, and without it every client looks like 127.0.0.1. Believed only from a\n\
         # loopback peer (the proxy); its rightmost entry is used. Empty: the TCP peer.\n\
         client_ip_header = \"\"\n",
        DEFAULT_LISTEN[0],
        DEFAULT_LISTEN[1],
        members.max_reservations,
        open.max_reservations,
        members.max_reservations_per_peer,
        open.max_reservations_per_peer,
        members.reservation_duration.as_secs(),
        open.reservation_duration.as_secs(),
        members.max_circuits,
        open.max_circuits,
        members.max_circuits_per_peer,
        open.max_circuits_per_peer,
        members.max_circuit_duration.as_secs(),
        open.max_circuit_duration.as_secs(),
        members.max_circuit_bytes,
        open.max_circuit_bytes,
        passalong_store::CHECKPOINT_EVERY,
        passalong_store::DEFAULT_CACHE_MIB,
        passalong_store::MAX_AUTO_CACHE_MIB,
        passalong_api::server::DEFAULT_HEADER_READ_TIMEOUT_MS,
        passalong_api::server::DEFAULT_REQUEST_TIMEOUT_MS,
        passalong_api::server::DEFAULT_SHUTDOWN_DEADLINE_MS,
        NET.target_peers,
        NET.requests_per_sec,
        NET.messages_per_sec,
        NET.author_messages_per_sec,
        NET.publish_per_sec,
        NET.ban_for.as_secs(),
    )
}

impl Config {
    /// Reads the file (missing: defaults).
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        toml::from_str(&text).with_context(|| {
            format!(
                "invalid config {} (fix or delete it: `passalong init` writes a fresh one)",
                path.display()
            )
        })
    }

    /// Applies the flags of `passalong run` over the file's settings.
    pub fn with_flags(mut self, flags: &RunArgs) -> Result<Config> {
        if let Some(a) = flags.api {
            self.api = a;
        }
        if !flags.listen.is_empty() {
            self.listen = flags.listen.clone();
        }
        if !flags.bootstrap.is_empty() {
            self.bootstrap = flags.bootstrap.clone();
        }
        if !flags.external.is_empty() {
            self.external = flags.external.clone();
        }
        if flags.no_mdns {
            self.mdns = false;
        }
        if flags.relay_server {
            self.relay_server = true;
        }
        if flags.offline {
            self.offline = true;
        }
        if let Some(secs) = flags.sync_interval_secs {
            self.sync_interval_secs = secs;
        }
        if let Some(u) = &flags.public_url {
            self.public_url = u.clone();
        }
        if let Some(n) = flags.checkpoint_every {
            self.checkpoint_every = n;
        }
        if let Some(n) = flags.store_cache_mib {
            self.store_cache_mib = n;
        }
        if let Some(l) = &flags.log {
            self.log = l.clone();
        }
        if !self.api.ip().is_loopback() {
            bail!("the API address {} is not a loopback address: the API holds the node's keys and listens on 127.0.0.1 or ::1 only", self.api);
        }
        if self.sync_interval_secs == 0 {
            bail!("sync_interval_secs must be at least 1");
        }
        self.member_kdf()?;
        self.client_ip_header()?;
        // Unset, the relay's kind is known only when the node starts: both must be right.
        match self.relay_members_only {
            Some(members_only) => {
                self.relay(members_only)?;
            }
            None => {
                self.relay(false)?;
                self.relay(true)?;
            }
        }
        if (1..8).contains(&self.store_cache_mib) {
            bail!(
                "store_cache_mib must be 0 (sized by the store) or at least 8 (it is {})",
                self.store_cache_mib
            );
        }
        for (key, n) in [
            ("http_header_timeout_ms", self.http_header_timeout_ms),
            ("http_request_timeout_ms", self.http_request_timeout_ms),
            ("target_peers", self.target_peers as u64),
            (
                "peer_requests_per_sec",
                u64::from(self.peer_requests_per_sec),
            ),
            (
                "peer_messages_per_sec",
                u64::from(self.peer_messages_per_sec),
            ),
            (
                "author_messages_per_sec",
                u64::from(self.author_messages_per_sec),
            ),
            ("publish_per_sec", u64::from(self.publish_per_sec)),
        ] {
            if n == 0 {
                bail!("{key} must be at least 1");
            }
        }
        Ok(self)
    }

    /// The argon2id parameters `member_kdf` names.
    pub fn member_kdf(&self) -> Result<passalong_accounts::KdfParams> {
        match self.member_kdf.as_str() {
            "member" => Ok(passalong_accounts::KdfParams::MEMBER),
            "minimum" => Ok(passalong_accounts::KdfParams::MINIMUM),
            other => bail!("member_kdf {other:?}: expected \"member\" or \"minimum\""),
        }
    }

    /// The header `client_ip_header` names, if any.
    pub fn client_ip_header(&self) -> Result<Option<passalong_api::signin::HeaderName>> {
        let name = self.client_ip_header.trim();
        if name.is_empty() {
            return Ok(None);
        }
        passalong_api::signin::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map(Some)
            .map_err(|_| {
                anyhow::anyhow!(
                    "client_ip_header {name:?}: expected a header name such as \"x-forwarded-for\""
                )
            })
    }

    /// The relay server's settings (used with `relay_server`), for a node that runs a
    /// community when it starts or not: `relay_members_only` when set, else members only
    /// exactly when it runs one; the limits of that kind ([`RelayLimits::members`] or
    /// [`RelayLimits::open`]) where a key is 0. Refuses limits a relay cannot work with.
    pub fn relay(&self, runs_community: bool) -> Result<RelayConfig> {
        use std::time::Duration;
        let members_only = self.relay_members_only.unwrap_or(runs_community);
        let d = if members_only {
            RelayLimits::members()
        } else {
            RelayLimits::open()
        };
        let or = |n: u64, default: u64| if n == 0 { default } else { n };
        let orz = |n: usize, default: usize| if n == 0 { default } else { n };
        let limits = RelayLimits {
            max_reservations: orz(self.relay_max_reservations, d.max_reservations),
            max_reservations_per_peer: orz(
                self.relay_max_reservations_per_peer,
                d.max_reservations_per_peer,
            ),
            reservation_duration: Duration::from_secs(or(
                self.relay_reservation_secs,
                d.reservation_duration.as_secs(),
            )),
            max_circuits: orz(self.relay_max_circuits, d.max_circuits),
            max_circuits_per_peer: orz(self.relay_max_circuits_per_peer, d.max_circuits_per_peer),
            max_circuit_duration: Duration::from_secs(or(
                self.relay_max_circuit_secs,
                d.max_circuit_duration.as_secs(),
            )),
            max_circuit_bytes: or(self.relay_max_circuit_bytes, d.max_circuit_bytes),
        };
        let kind = if members_only {
            "a members-only relay"
        } else {
            "an open relay"
        };
        if limits.max_reservations_per_peer > limits.max_reservations {
            bail!(
                "relay_max_reservations_per_peer ({}) is more than relay_max_reservations ({}) for {kind}: lower it or raise relay_max_reservations",
                limits.max_reservations_per_peer,
                limits.max_reservations
            );
        }
        if limits.max_circuits_per_peer > limits.max_circuits {
            bail!(
                "relay_max_circuits_per_peer ({}) is more than relay_max_circuits ({}) for {kind}: lower it or raise relay_max_circuits",
                limits.max_circuits_per_peer,
                limits.max_circuits
            );
        }
        let reservation = limits.reservation_duration.as_secs();
        if !(MIN_RELAY_RESERVATION_SECS..=MAX_RELAY_SECS).contains(&reservation) {
            bail!(
                "relay_reservation_secs must be 0 (the default) or {MIN_RELAY_RESERVATION_SECS} to {MAX_RELAY_SECS} (it is {reservation})"
            );
        }
        let circuit = limits.max_circuit_duration.as_secs();
        if circuit > MAX_RELAY_SECS {
            bail!(
                "relay_max_circuit_secs must be 0 (the default) or 1 to {MAX_RELAY_SECS} (it is {circuit})"
            );
        }
        if limits.max_circuit_bytes < MIN_RELAY_CIRCUIT_BYTES {
            bail!(
                "relay_max_circuit_bytes must be 0 (the default) or at least {MIN_RELAY_CIRCUIT_BYTES} (it is {})",
                limits.max_circuit_bytes
            );
        }
        Ok(RelayConfig {
            members_only,
            limits,
        })
    }

    /// Members' sign-ins checking a password at once.
    pub fn signin_concurrency(&self) -> usize {
        match self.signin_concurrency {
            0 => passalong_api::signin::default_concurrency(),
            n => n,
        }
    }

    /// The API server's timeouts.
    pub fn serve_limits(&self) -> passalong_api::ServeLimits {
        use std::time::Duration;
        passalong_api::ServeLimits {
            header_read_timeout: Duration::from_millis(self.http_header_timeout_ms),
            request_timeout: Duration::from_millis(self.http_request_timeout_ms),
            shutdown_deadline: Duration::from_millis(self.shutdown_deadline_ms),
        }
    }

    /// The network settings, with every address checked, for a node that runs a community
    /// when it starts or not (its relay's kind, see [`Config::relay`]).
    pub fn net(&self, runs_community: bool) -> Result<passalong_net::NetConfig> {
        let parse = |what: &str, a: &String| -> Result<passalong_net::Addr> {
            a.parse().with_context(|| {
                format!("invalid {what} address {a:?}: expected a multiaddr such as /ip4/127.0.0.1/tcp/7424")
            })
        };
        Ok(passalong_net::NetConfig {
            listen: self
                .listen
                .iter()
                .map(|a| parse("listen", a))
                .collect::<Result<_>>()?,
            bootstrap: self
                .bootstrap
                .iter()
                .map(|a| parse("bootstrap", a))
                .collect::<Result<_>>()?,
            external: self
                .external
                .iter()
                .map(|a| parse("external", a))
                .collect::<Result<_>>()?,
            mdns: self.mdns,
            relay_server: self.relay_server,
            relay: self.relay(runs_community)?,
            policy: passalong_net::PolicyConfig {
                target_peers: self.target_peers,
                sync_interval: std::time::Duration::from_secs(self.sync_interval_secs),
                requests_per_sec: f64::from(self.peer_requests_per_sec),
                messages_per_sec: f64::from(self.peer_messages_per_sec),
                author_messages_per_sec: f64::from(self.author_messages_per_sec),
                publish_per_sec: f64::from(self.publish_per_sec),
                ban_for: std::time::Duration::from_secs(self.ban_secs),
                ..NET
            },
            ..passalong_net::NetConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        assert_eq!(
            toml::from_str::<Config>(&default_file()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn flags_win_and_public_api_addresses_are_refused() {
        let flags = RunArgs {
            api: Some("127.0.0.1:0".parse().unwrap()),
            ..RunArgs::default()
        };
        assert_eq!(Config::default().with_flags(&flags).unwrap().api.port(), 0);
        let public = RunArgs {
            api: Some("0.0.0.0:7423".parse().unwrap()),
            ..RunArgs::default()
        };
        assert!(Config::default().with_flags(&public).is_err());
        assert!(toml::from_str::<Config>("apii = 1").is_err());
    }

    #[test]
    fn the_store_cache_is_set_by_file_or_flag_and_too_small_is_refused() {
        let file: Config = toml::from_str("store_cache_mib = 192").unwrap();
        let none = RunArgs::default();
        assert_eq!(file.clone().with_flags(&none).unwrap().store_cache_mib, 192);
        let flag = RunArgs {
            store_cache_mib: Some(32),
            ..RunArgs::default()
        };
        assert_eq!(file.with_flags(&flag).unwrap().store_cache_mib, 32);
        let tiny: Config = toml::from_str("store_cache_mib = 2").unwrap();
        let e = tiny.with_flags(&none).unwrap_err().to_string();
        assert!(e.contains("or at least 8"), "{e}");
        assert_eq!(
            Config::default().with_flags(&none).unwrap().store_cache_mib,
            0,
            "sized by the store unless set"
        );
    }

    #[test]
    fn the_client_address_header_is_checked_and_concurrency_defaults_to_the_cores() {
        let none = RunArgs::default();
        let default = Config::default().with_flags(&none).unwrap();
        assert_eq!(default.client_ip_header().unwrap(), None);
        assert_eq!(
            default.signin_concurrency(),
            passalong_api::signin::default_concurrency()
        );
        let proxied: Config =
            toml::from_str("client_ip_header = \"X-Forwarded-For\"\nsignin_concurrency = 3")
                .unwrap();
        let proxied = proxied.with_flags(&none).unwrap();
        assert_eq!(
            proxied.client_ip_header().unwrap().unwrap().as_str(),
            "x-forwarded-for"
        );
        assert_eq!(proxied.signin_concurrency(), 3);
        let bad: Config = toml::from_str("client_ip_header = \"x forwarded\"").unwrap();
        let e = bad.with_flags(&none).unwrap_err().to_string();
        assert!(e.contains("client_ip_header"), "{e}");
    }

    #[test]
    fn members_key_cost_is_a_named_preset() {
        let none = RunArgs::default();
        let default = Config::default().with_flags(&none).unwrap();
        assert_eq!(
            default.member_kdf().unwrap(),
            passalong_accounts::KdfParams::MEMBER
        );
        let small: Config = toml::from_str("member_kdf = \"minimum\"").unwrap();
        assert_eq!(
            small.with_flags(&none).unwrap().member_kdf().unwrap(),
            passalong_accounts::KdfParams::MINIMUM
        );
        let bad: Config = toml::from_str("member_kdf = \"fast\"").unwrap();
        let e = bad.with_flags(&none).unwrap_err().to_string();
        assert!(e.contains("member_kdf \"fast\""), "{e}");
    }

    #[test]
    fn the_relay_is_members_only_on_a_community_node_unless_set_and_its_limits_are_checked() {
        let none = RunArgs::default();
        let default = Config::default().with_flags(&none).unwrap();
        assert_eq!(default.relay(false).unwrap(), RelayConfig::default());
        assert_eq!(default.relay(true).unwrap(), RelayConfig::members());
        let net = default.net(true).unwrap();
        assert!(net.relay.members_only && !net.relay_server);

        let open: Config = toml::from_str("relay_members_only = false").unwrap();
        let open = open.with_flags(&none).unwrap();
        assert_eq!(open.relay(true).unwrap(), RelayConfig::default());
        let closed: Config = toml::from_str("relay_members_only = true").unwrap();
        let closed = closed.with_flags(&none).unwrap();
        assert_eq!(closed.relay(false).unwrap(), RelayConfig::members());

        let set: Config = toml::from_str(
            "relay_max_reservations = 10\nrelay_max_reservations_per_peer = 2\n\
             relay_reservation_secs = 600\nrelay_max_circuits = 8\n\
             relay_max_circuits_per_peer = 1\nrelay_max_circuit_secs = 90\n\
             relay_max_circuit_bytes = 1048576",
        )
        .unwrap();
        let r = set.with_flags(&none).unwrap().relay(true).unwrap();
        assert!(r.members_only);
        assert_eq!(
            r.limits,
            RelayLimits {
                max_reservations: 10,
                max_reservations_per_peer: 2,
                reservation_duration: std::time::Duration::from_secs(600),
                max_circuits: 8,
                max_circuits_per_peer: 1,
                max_circuit_duration: std::time::Duration::from_secs(90),
                max_circuit_bytes: 1 << 20,
            }
        );

        for (bad, key) in [
            (
                "relay_max_reservations_per_peer = 2000",
                "relay_max_reservations_per_peer",
            ),
            ("relay_max_circuits = 2", "relay_max_circuits_per_peer"),
            ("relay_reservation_secs = 5", "relay_reservation_secs"),
            ("relay_reservation_secs = 100000", "relay_reservation_secs"),
            ("relay_max_circuit_secs = 100000", "relay_max_circuit_secs"),
            ("relay_max_circuit_bytes = 100", "relay_max_circuit_bytes"),
        ] {
            let c: Config = toml::from_str(bad).unwrap();
            let e = c.with_flags(&none).unwrap_err().to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
        // 200 per peer fits a members' relay (1,024) but not an open one (128): refused unless
        // the relay's kind is set.
        let c: Config = toml::from_str("relay_max_reservations_per_peer = 200").unwrap();
        assert!(c.clone().with_flags(&none).is_err());
        let c = Config {
            relay_members_only: Some(true),
            ..c
        };
        assert_eq!(
            c.with_flags(&none)
                .unwrap()
                .relay(false)
                .unwrap()
                .limits
                .max_reservations_per_peer,
            200
        );
        assert!(toml::from_str::<Config>("relay_max_circuits = -1").is_err());
    }
}
