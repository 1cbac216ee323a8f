//! Real daemons on separate hosts: Linux network namespaces joined by veth links, with NAT
//! routers made of iptables rules. They show what loopback tests cannot:
//!
//! * two nodes each behind its own NAT learn from AutoNAT that they are private, reserve a
//!   slot on a public relay, find each other's circuit address through the relay's DHT,
//!   connect through it and are upgraded to a direct connection by hole punching (DCUtR);
//!   when the direct path breaks for a while, they fall back on the relay and punch again;
//!   after the relay is gone, what one publishes still reaches the other;
//! * two nodes on one LAN find each other with mDNS, with no bootstrap address;
//! * issue 16's community journey (`community::journey`) on a small internet: the community
//!   node is public, with a relay for its members only; a member's own node behind NAT joins
//!   through an invite and reserves a slot on that relay, which refuses an outsider's node
//!   behind another NAT; her referral, naming the community, reaches a public seller she
//!   cannot reach directly, over the relay's circuit; the hosted members' browsers, the
//!   ledgers, the key export and the removal are the loopback journey's.
//!
//! They need root, `ip` (iproute2) and `iptables`, so they are ignored by a plain
//! `cargo test`; `.ci/run` runs them with `-- --ignored nat::`.
//!
//! ```text
//!  A 192.168.1.2 ── 192.168.1.1 NAT-A 7.0.1.2 ──┐
//!                                               7.0.1.1  relay R (internet router)  7.0.2.1
//!  B 192.168.2.2 ── 192.168.2.1 NAT-B 7.0.2.2 ──┘
//! ```
//!
//! Each NAT masquerades its LAN, answers unsolicited TCP with a reset and drops other
//! unsolicited packets, as a home router does.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// Runs `ip`/`iptables` setup commands; panics with the command on failure.
fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (needs iproute2 and iptables)"));
    assert!(
        out.status.success(),
        "{args:?} failed (these tests need root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Network namespaces named `<prefix><name>`, deleted on drop, with the links to this
/// test's own namespace.
struct Hosts {
    prefix: String,
    names: Vec<String>,
    here: std::sync::Mutex<Vec<String>>,
}

impl Hosts {
    fn new(tag: &str, names: &[&str]) -> Hosts {
        let prefix = format!("pl{}{tag}", std::process::id() % 100_000);
        let hosts = Hosts {
            prefix,
            names: names.iter().map(|n| n.to_string()).collect(),
            here: Default::default(),
        };
        for n in names {
            let ns = hosts.ns(n);
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        hosts
    }

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A veth link between two hosts, with an address on each end.
    fn link(&self, (a, a_ip): (&str, &str), (b, b_ip): (&str, &str)) {
        let (ia, ib) = (
            format!("{}{a}{b}", self.prefix),
            format!("{}{b}{a}", self.prefix),
        );
        sh(&[
            "ip", "link", "add", &ia, "type", "veth", "peer", "name", &ib,
        ]);
        for (host, dev, ip) in [(a, &ia, a_ip), (b, &ib, b_ip)] {
            let ns = self.ns(host);
            sh(&["ip", "link", "set", dev, "netns", &ns]);
            sh(&["ip", "-n", &ns, "addr", "add", ip, "dev", dev]);
            sh(&["ip", "-n", &ns, "link", "set", dev, "up"]);
        }
    }

    /// A veth link between `host` and this test's own namespace (where the browsers run),
    /// with an address on each end.
    fn link_here(&self, (host, host_ip): (&str, &str), here_ip: &str) {
        let (ih, here) = (
            format!("{}{host}h", self.prefix),
            format!("{}h{host}", self.prefix),
        );
        sh(&[
            "ip", "link", "add", &here, "type", "veth", "peer", "name", &ih,
        ]);
        self.here.lock().expect("links").push(here.clone());
        let ns = self.ns(host);
        sh(&["ip", "link", "set", &ih, "netns", &ns]);
        sh(&["ip", "-n", &ns, "addr", "add", host_ip, "dev", &ih]);
        sh(&["ip", "-n", &ns, "link", "set", &ih, "up"]);
        sh(&["ip", "addr", "add", here_ip, "dev", &here]);
        sh(&["ip", "link", "set", &here, "up"]);
    }

    /// The interface of `host` towards `peer`.
    fn dev(&self, host: &str, peer: &str) -> String {
        format!("{}{host}{peer}", self.prefix)
    }

    fn exec(&self, host: &str, args: &[&str]) {
        let ns = self.ns(host);
        let mut v = vec!["ip", "netns", "exec", &ns];
        v.extend_from_slice(args);
        sh(&v);
    }

    fn default_route(&self, host: &str, via: &str) {
        sh(&[
            "ip",
            "-n",
            &self.ns(host),
            "route",
            "add",
            "default",
            "via",
            via,
        ]);
    }

    /// Makes `host` a NAT router: its LAN leaves masqueraded through `wan`; nothing
    /// unsolicited comes in.
    fn nat(&self, host: &str, wan: &str) {
        self.exec(host, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        self.exec(
            host,
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                wan,
                "-j",
                "MASQUERADE",
            ],
        );
        for rule in [
            "INPUT -m conntrack --ctstate NEW -p tcp -j REJECT --reject-with tcp-reset",
            "INPUT -m conntrack --ctstate NEW -j DROP",
            "FORWARD -m conntrack --ctstate NEW -j DROP",
        ] {
            let mut v = vec!["iptables", "-A"];
            let (chain, rest) = rule.split_once(' ').expect("chain");
            v.push(chain);
            v.extend(["-i", wan]);
            v.extend(rest.split(' '));
            self.exec(host, &v);
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // This namespace's end first: a namespace lives on while a socket made in it is open.
        for dev in self.here.lock().map(|h| h.clone()).unwrap_or_default() {
            let _ = Command::new("ip").args(["link", "del", &dev]).status();
        }
        for n in &self.names {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .status();
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns`: the sockets it makes belong there,
/// wherever they are used afterwards. `setns(2)` has no safe wrapper in the crates the node
/// uses (`ip netns exec` runs whole processes only), hence the one unsafe call.
#[allow(unsafe_code)]
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns(2) with a descriptor open for the call; it moves this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the thread in the namespace")
}

/// Runs `f` where the daemon `d` runs: in its namespace, or here.
pub(crate) fn on_host<T: Send + 'static>(d: &Daemon, f: impl FnOnce() -> T + Send + 'static) -> T {
    match &d.netns {
        Some(ns) => in_netns(ns, f),
        None => f(),
    }
}

/// A TCP forwarder from `listen` to `to`, both in namespace `ns`: the reverse proxy an
/// operator puts in front of a node's API, which listens on loopback only. Stops on drop.
struct Forward(Arc<AtomicBool>);

impl Forward {
    fn start(ns: &str, listen: SocketAddr, to: SocketAddr) -> Forward {
        let l = in_netns(ns, move || TcpListener::bind(listen)).expect("bind the forwarder");
        l.set_nonblocking(true).expect("non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, stopped) = (ns.to_string(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let c = match l.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    Err(_) => continue,
                };
                let _ = c.set_nonblocking(false);
                let Ok(u) = in_netns(&ns, move || TcpStream::connect(to)) else {
                    continue;
                };
                let (c2, u2) = (c.try_clone().expect("clone"), u.try_clone().expect("clone"));
                for (mut from, mut into) in [(c, u), (u2, c2)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Forward(stop)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A GET of a daemon's API from where it runs (the API listens on its loopback).
fn api_get(d: &Daemon, path: &str) -> Option<Value> {
    let addr = std::fs::read_to_string(d.dir.join("api.addr")).expect("api.addr");
    let url = format!("http://{}{path}", addr.trim());
    on_host(d, move || {
        ureq::get(&url)
            .timeout(Duration::from_secs(10))
            .call()
            .ok()?
            .into_json()
            .ok()
    })
}

/// The community a referral names, as the daemon `d` holds it; `None` when it does not hold
/// it.
pub(crate) fn referral_community(d: &Daemon, referral: &str) -> Option<Option<String>> {
    let att = api_get(d, &format!("/v1/attestations/{referral}"))?;
    let envelope = hex::decode(att["envelope"].as_str().expect("an envelope")).expect("hex");
    match passalong_protocol::Attestation::decode(&envelope)
        .expect("an attestation")
        .body
    {
        passalong_protocol::attestation::Body::Referral(r) => Some(r.community.map(|c| c.to_hex())),
        other => panic!("not a referral: {other:?}"),
    }
}

/// On a failing test, prints what the daemons logged about reachability, relays, hole
/// punching and connections (their data dirs are removed with the temp dir).
pub(crate) struct LogsOnPanic(pub(crate) Vec<std::path::PathBuf>);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for log in &self.0 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            eprintln!("--- {}", log.display());
            for line in text.lines().filter(|l| {
                [
                    "reachab",
                    "relay",
                    "hole",
                    "listening",
                    "connected",
                    "Connection closed",
                    "connection closed",
                    "direct connection lost",
                    "connection denied",
                    "ERROR",
                    "WARN",
                ]
                .iter()
                .any(|k| l.contains(k))
            }) {
                eprintln!("{line}");
            }
        }
    }
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The peer entry for `peer_id` in `passalong peers --json`, if connected.
fn peer(d: &Daemon, peer_id: &str) -> Option<Value> {
    d.json(&["peers"])["peers"]
        .as_array()?
        .iter()
        .find(|p| p["peer_id"] == peer_id)
        .cloned()
}

fn peer_id(d: &Daemon) -> String {
    d.json(&["peers"])["peer_id"]
        .as_str()
        .expect("peer id")
        .to_string()
}

const LISTEN: [&str; 4] = [
    "--listen",
    "/ip4/0.0.0.0/tcp/7424",
    "--listen",
    "/ip4/0.0.0.0/udp/7424/quic-v1",
];

/// The network layer's connections and hole punching in detail, for [`LogsOnPanic`].
const LOG: [&str; 2] = ["--log", "info,passalong_net=debug,libp2p_swarm=debug"];

/// Whether A and B list each other as connected, both directly (`false`) or both only
/// through a relay (`true`).
fn both_relayed(a: &Daemon, b: &Daemon, a_id: &str, b_id: &str, relayed: bool) -> Option<Value> {
    let p = peer(b, a_id)?;
    let q = peer(a, b_id)?;
    (p["relayed"] == relayed && q["relayed"] == relayed).then_some(p)
}

#[test]
#[ignore = "needs root, ip netns and iptables: .ci/run runs it"]
fn nodes_behind_nat_meet_through_a_relay_and_punch_a_direct_connection() {
    let h = Hosts::new("n", &["r", "na", "nb", "a", "b"]);
    h.link(("r", "7.0.1.1/24"), ("na", "7.0.1.2/24"));
    h.link(("r", "7.0.2.1/24"), ("nb", "7.0.2.2/24"));
    h.link(("na", "192.168.1.1/24"), ("a", "192.168.1.2/24"));
    h.link(("nb", "192.168.2.1/24"), ("b", "192.168.2.2/24"));
    h.exec("r", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    h.default_route("na", "7.0.1.1");
    h.default_route("nb", "7.0.2.1");
    h.default_route("a", "192.168.1.1");
    h.default_route("b", "192.168.2.1");
    h.nat("na", &h.dev("na", "r"));
    h.nat("nb", &h.dev("nb", "r"));

    let tmp = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = [&LISTEN[..], &LOG].concat();
    args.extend([
        "--no-mdns",
        "--relay-server",
        "--external",
        "/ip4/7.0.1.1/tcp/7424",
        "--external",
        "/ip4/7.0.1.1/udp/7424/quic-v1",
    ]);
    let mut r = Daemon::start_netns(&h.ns("r"), &tmp.path().join("r"), &args);
    let r_id = peer_id(&r);

    // A dials the relay over TCP, B over QUIC.
    let a_boot = format!("/ip4/7.0.1.1/tcp/7424/p2p/{r_id}");
    let b_boot = format!("/ip4/7.0.2.1/udp/7424/quic-v1/p2p/{r_id}");
    let start = |host: &str, boot: &str| {
        let mut args: Vec<&str> = [&LISTEN[..], &LOG].concat();
        args.extend(["--no-mdns", "--bootstrap", boot]);
        Daemon::start_netns(&h.ns(host), &tmp.path().join(host), &args)
    };
    let a = start("a", &a_boot);
    let b = start("b", &b_boot);
    let _logs = LogsOnPanic(
        ["r", "a", "b"]
            .iter()
            .map(|n| tmp.path().join(format!("{n}.log")))
            .collect(),
    );
    let (a_id, b_id) = (peer_id(&a), peer_id(&b));
    let t0 = Instant::now();

    // AutoNAT: the relay cannot dial them back, so both learn they are private, and each
    // reserves a slot on the relay and listens on a circuit address.
    for (d, name) in [(&a, "A"), (&b, "B")] {
        wait_for(
            &format!("{name} private with a relay reservation"),
            60,
            || {
                let v = d.json(&["peers"]);
                let relayed = v["relays"].as_array()?.iter().any(|x| x == r_id.as_str());
                let circuit = v["listen"]
                    .as_array()?
                    .iter()
                    .any(|l| l.as_str().unwrap_or("").contains("/p2p-circuit"));
                (v["reachability"] == "private" && relayed && circuit).then_some(())
            },
        );
    }
    let reserved = t0.elapsed();

    // B finds A's circuit address through the relay's DHT, connects through the relay, and
    // DCUtR replaces it with a direct connection to A's NAT (7.0.1.2).
    let direct = wait_for("a direct connection between A and B", 90, || {
        both_relayed(&a, &b, &a_id, &b_id, false)
    });
    let punched = t0.elapsed();
    let addr = direct["addr"].as_str().expect("addr");
    assert!(
        addr.starts_with("/ip4/7.0.1.2/"),
        "B reaches A at its NAT's public address, not {addr}"
    );
    let punches = |d: &Daemon| {
        d.json(&["peers"])["stats"]["hole_punches"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        punches(&a) + punches(&b) >= 1,
        "the direct connection came from hole punching"
    );
    eprintln!("relay reservations after {reserved:?}, hole punched after {punched:?}: B→A {addr}");

    // R stops forwarding between the NATs but still relays: the direct connection dies and
    // A and B are left on the relay. Once R forwards again, the one that dialled the relayed
    // connection reconnects through the relay, which runs DCUtR again. QUIC gives up on a
    // silent path after its 10 s idle timeout; TCP would retransmit for about 15 minutes
    // (libp2p's ping reports failures but closes nothing, yamux has no keep-alive), so TCP is
    // answered with a reset, as by a NAT that lost its state.
    let iptables = |op: &str| {
        for rule in [
            "FORWARD -j DROP",
            "FORWARD -p tcp -j REJECT --reject-with tcp-reset",
        ] {
            let mut v = vec!["iptables", op];
            v.extend(rule.split(' '));
            h.exec("r", &v);
        }
    };
    let before = punches(&a) + punches(&b);
    let cut = Instant::now();
    iptables("-I");
    wait_for(
        "A and B back on the relay only, after R stopped forwarding between them",
        60,
        || both_relayed(&a, &b, &a_id, &b_id, true),
    );
    let lost = cut.elapsed();
    iptables("-D");
    let direct = wait_for(
        "a direct connection between A and B again, punched after the direct one was lost",
        60,
        || both_relayed(&a, &b, &a_id, &b_id, false),
    );
    assert!(
        punches(&a) + punches(&b) > before,
        "the new direct connection came from hole punching again"
    );
    eprintln!(
        "direct path cut: on the relay after {lost:?}, punched again after {:?}: B→A {}",
        cut.elapsed(),
        direct["addr"]
    );

    // Without the relay, what A publishes still reaches B, over the punched connection.
    let seller = a.public_key();
    b.json(&["market", "follow", &seller]);
    r.kill9();
    publish_offer(&a, "Behind NAT");
    wait_for("B holding A's market after the relay went away", 60, || {
        let (ra, rb) = (root(&a, &seller)?, root(&b, &seller)?);
        (ra == rb).then_some(())
    });
    assert_eq!(
        peer(&b, &a_id).map(|p| p["relayed"] == false),
        Some(true),
        "still directly connected"
    );
}

#[test]
#[ignore = "needs root, ip netns and iptables: .ci/run runs it"]
fn nodes_on_one_lan_find_each_other_with_mdns() {
    let h = Hosts::new("m", &["x", "y"]);
    h.link(("x", "10.77.0.1/24"), ("y", "10.77.0.2/24"));
    let tmp = tempfile::tempdir().unwrap();
    // No bootstrap address and mDNS on (the default).
    let x = Daemon::start_netns(&h.ns("x"), &tmp.path().join("x"), &LISTEN);
    let y = Daemon::start_netns(&h.ns("y"), &tmp.path().join("y"), &LISTEN);
    let (x_id, y_id) = (peer_id(&x), peer_id(&y));
    let t0 = Instant::now();
    let p = wait_for("x and y connected by mDNS", 30, || {
        let p = peer(&x, &y_id)?;
        peer(&y, &x_id)?;
        Some(p)
    });
    assert!(
        p["addr"]
            .as_str()
            .unwrap_or("")
            .starts_with("/ip4/10.77.0.2/"),
        "x reaches y on the LAN: {p}"
    );
    eprintln!("found by mDNS after {:?}", t0.elapsed());

    let seller = x.public_key();
    y.json(&["market", "follow", &seller]);
    publish_offer(&x, "Next door");
    wait_for("y holding x's market", 30, || {
        (root(&x, &seller)? == root(&y, &seller)?).then_some(())
    });
}

/// Whether `d` is private with a reservation on `relay` and a circuit address.
fn reserved_on(d: &Daemon, relay: &str) -> bool {
    let v = d.json(&["peers"]);
    let on = v["relays"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x == relay));
    let circuit = v["listen"].as_array().is_some_and(|l| {
        l.iter()
            .any(|a| a.as_str().unwrap_or("").contains("/p2p-circuit"))
    });
    v["reachability"] == "private" && on && circuit
}

/// Issue 16's community journey on a small internet, for [`crate::community::journey`]:
///
/// ```text
///                         this host (the browsers) 198.18.x.2
///                                          │ 198.18.x.1:7480 (K's public_url)
///  Cleo 192.168.1.2 ── NAT-A ── 7.0.1.1 K: community node, relay 7.0.2.1 ── NAT-B ── Dan 192.168.2.2
///                                7.0.3.1 │      7.0.4.1 │      7.0.5.1 │
///                         seller S 7.0.3.2  Anna's node 7.0.4.2  Bea's node 7.0.5.2
/// ```
///
/// K is the internet's router too, and rejects what goes between NAT-A and S, so that Cleo's
/// node and S meet through K only. Its relay serves its members only; its API, on its
/// loopback, is reached at its public_url through a forwarder, as behind an operator's reverse
/// proxy, from this host (its browsers) and from Cleo's node (her invite). Cleo's node and
/// Anna's own node know no node when they start: `membership.json` names K.
pub(crate) struct Internet {
    /// The forwarder to K's API; dropped before the hosts.
    proxy: Option<Forward>,
    k_id: String,
    /// K's address on the link to this host.
    here: String,
    hosts: Hosts,
}

impl Internet {
    pub(crate) fn new() -> Internet {
        let h = Hosts::new("j", &["r", "s", "na", "nb", "c", "d", "a", "b"]);
        h.link(("r", "7.0.1.1/24"), ("na", "7.0.1.2/24"));
        h.link(("r", "7.0.2.1/24"), ("nb", "7.0.2.2/24"));
        h.link(("r", "7.0.3.1/24"), ("s", "7.0.3.2/24"));
        h.link(("r", "7.0.4.1/24"), ("a", "7.0.4.2/24"));
        h.link(("r", "7.0.5.1/24"), ("b", "7.0.5.2/24"));
        h.link(("na", "192.168.1.1/24"), ("c", "192.168.1.2/24"));
        h.link(("nb", "192.168.2.1/24"), ("d", "192.168.2.2/24"));
        // To this host, a /30 of 198.18.0.0/15 (the range for network tests) that another
        // run of this test at the same time would not take: this namespace is shared.
        let n = std::process::id() % (2 * 256 * 64);
        let net = format!("198.{}.{}", 18 + n / (256 * 64), (n / 64) % 256);
        let (here, this_host) = (
            format!("{net}.{}", (n % 64) * 4 + 1),
            format!("{net}.{}", (n % 64) * 4 + 2),
        );
        h.link_here(("r", &format!("{here}/30")), &format!("{this_host}/30"));
        h.exec("r", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        for (host, via) in [
            ("s", "7.0.3.1"),
            ("a", "7.0.4.1"),
            ("b", "7.0.5.1"),
            ("na", "7.0.1.1"),
            ("nb", "7.0.2.1"),
            ("c", "192.168.1.1"),
            ("d", "192.168.2.1"),
        ] {
            h.default_route(host, via);
        }
        h.nat("na", &h.dev("na", "r"));
        h.nat("nb", &h.dev("nb", "r"));
        for (from, to) in [("7.0.1.0/24", "7.0.3.0/24"), ("7.0.3.0/24", "7.0.1.0/24")] {
            h.exec(
                "r",
                &[
                    "iptables", "-A", "FORWARD", "-s", from, "-d", to, "-j", "REJECT",
                ],
            );
        }
        Internet {
            proxy: None,
            k_id: String::new(),
            here,
            hosts: h,
        }
    }
}

impl crate::community::Hosting for Internet {
    fn community_node(&mut self, dir: &std::path::Path, flags: &[&str]) -> (Daemon, String) {
        let listen = format!("{}:7480", self.here);
        let base = format!("http://{listen}");
        let mut args: Vec<&str> = [&LISTEN[..], &LOG, flags].concat();
        args.extend([
            "--no-mdns",
            "--relay-server",
            "--external",
            "/ip4/7.0.1.1/tcp/7424",
            "--external",
            "/ip4/7.0.1.1/udp/7424/quic-v1",
            "--public-url",
            &base,
        ]);
        let r = self.hosts.ns("r");
        let k = Daemon::start_netns(&r, dir, &args);
        self.k_id = peer_id(&k);
        let api: SocketAddr = std::fs::read_to_string(dir.join("api.addr"))
            .expect("api.addr")
            .trim()
            .parse()
            .expect("an address");
        self.proxy = Some(Forward::start(&r, listen.parse().expect("an address"), api));
        (k, base)
    }

    fn node(&self, who: crate::community::Node, dir: &std::path::Path, flags: &[&str]) -> Daemon {
        use crate::community::Node;
        // Where it runs, and K's address there if it knows K when it starts.
        let (host, k_at) = match who {
            Node::Seller => ("s", Some("7.0.3.1")),
            Node::Cleo => ("c", None),
            Node::Dan => ("d", Some("7.0.2.1")),
            Node::AnnasOwn => ("a", None),
            Node::BeasOwn => ("b", Some("7.0.5.1")),
        };
        let boot = k_at.map(|ip| format!("/ip4/{ip}/tcp/7424/p2p/{}", self.k_id));
        let mut args: Vec<&str> = [&LISTEN[..], &LOG, flags, &["--no-mdns"]].concat();
        if let Some(b) = &boot {
            args.extend(["--bootstrap", b]);
        }
        Daemon::start_netns(&self.hosts.ns(host), dir, &args)
    }

    fn joined(&self, c: &mut Daemon) {
        let membership: Value = serde_json::from_str(
            &std::fs::read_to_string(c.dir.join("membership.json")).expect("membership.json"),
        )
        .expect("json");
        let relays: Vec<&str> = membership["relays"]
            .as_array()
            .expect("relays")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            relays
                .iter()
                .any(|r| r.starts_with("/ip4/7.0.1.1/") && r.ends_with(&self.k_id)),
            "K's public address among its relays: {relays:?}"
        );
        // Her node restarts, as after a reboot, knowing no node but from membership.json:
        // AutoNAT's first probe, 3 s after a start, then finds K. (Joined while running, it
        // may have probed before it knew K, and the next probe comes 20 s later.)
        c.stop();
        c.restart();
    }

    fn behind_nat(&self, s: &Daemon, c: &Daemon, d: &Daemon) {
        let t0 = Instant::now();
        let k_id = &self.k_id;
        // Cleo's node dialled K from membership.json, learnt that it is private and reserved
        // a slot on K's relay.
        wait_for("Cleo's node private with a reservation on K", 60, || {
            reserved_on(c, k_id).then_some(())
        });
        let reserved = t0.elapsed();
        // Dan's, private too, asked K for one and was refused: he is not a member.
        let d_log = d.dir.with_extension("log");
        wait_for("K to refuse Dan's node a reservation", 60, || {
            let log = std::fs::read_to_string(&d_log).unwrap_or_default();
            let refused = log.lines().any(|l| {
                l.contains("relay reservation closed")
                    && l.contains(k_id.as_str())
                    && l.contains("ResourceLimitExceeded")
            });
            (refused && d.json(&["peers"])["reachability"] == "private").then_some(())
        });
        assert!(!reserved_on(d, k_id), "Dan's node holds a reservation on K");
        let refused = t0.elapsed();
        // S, which Cleo's node cannot reach but through K, is connected to it over K's circuit.
        let c_id = peer_id(c);
        let circuit = format!("/p2p/{k_id}/p2p-circuit/p2p/{c_id}");
        let s_to_c = wait_for("S connected to Cleo's node through K's relay", 30, || {
            peer(s, &c_id).filter(|p| {
                p["relayed"] == true && p["addr"].as_str().is_some_and(|a| a.ends_with(&circuit))
            })
        });
        eprintln!(
            "behind NAT, checked in {reserved:?} (Cleo reserved), {refused:?} (Dan refused), {:?} (S to Cleo over {})",
            t0.elapsed(),
            s_to_c["addr"],
        );
    }
}

/// Issue 16's must-show test, one scenario: [`crate::community::journey`] with Cleo's own node
/// behind NAT on K's relay, Dan's behind another NAT, and the browsers on this host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, ip netns and iptables: .ci/run runs it"]
async fn a_community_node_hosts_neighbours_one_behind_nat_pays_its_connector_and_lets_them_leave() {
    let mut net = Internet::new();
    crate::community::journey(&mut net).await;
}
