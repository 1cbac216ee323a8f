//! An own-node member's `<data-dir>/membership.json`: the community this node is a member of,
//! with the relays of its community node, which this node dials and, when it is behind NAT,
//! asks for a reservation before any other (`Network::prefer_relays`).
//!
//! ```json
//! {"version":1,"community":HEX32,"relays":["/dns4/k.example/tcp/7424/p2p/12D3KooW…"]}
//! ```
//!
//! `init --import-key` writes it from an exported key file, and `community join` when the node
//! joins (issue 16, steps 11 and 12). `relays` are read for the network, `community` for the
//! default community of the CLI's referrals; each relay is a multiaddr that ends with the
//! community node's `/p2p/<peer id>`. The file is not `community/community.json`, which says
//! which community a node runs as its connector.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use passalong_net::multiaddr::Protocol;
use passalong_net::{Addr, PeerId};
use passalong_protocol::Id;
use serde::Deserialize;

/// The file, in the data dir.
pub const FILE: &str = "membership.json";
/// The `version` this build reads.
pub const VERSION: u32 = 1;
/// No membership file is longer (a few relay addresses and an id).
const MAX_FILE_BYTES: u64 = 64 * 1024;

#[derive(Deserialize)]
struct OnDisk {
    version: u32,
    #[serde(default)]
    relays: Vec<String>,
}

/// A community node's relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    /// Its peer id.
    pub peer: PeerId,
    /// Where it is dialled (with its `/p2p/` suffix).
    pub addr: Addr,
}

/// The file in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// When the file last changed and its length (`None`: there is none): what tells a rewrite.
pub fn stamp(data_dir: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path(data_dir)).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The community node's relays the file names, in its order (none without a file).
pub fn relays(data_dir: &Path) -> Result<Vec<Relay>> {
    let path = path(data_dir);
    let bytes = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            bail!(
                "{} is {} bytes, more than {MAX_FILE_BYTES}",
                path.display(),
                m.len()
            )
        }
        Ok(_) => std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
    };
    let disk: OnDisk = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a membership file", path.display()))?;
    if disk.version != VERSION {
        bail!(
            "{} has version {} (this build reads {VERSION})",
            path.display(),
            disk.version
        );
    }
    disk.relays
        .iter()
        .map(|a| {
            let addr: Addr = a
                .parse()
                .with_context(|| format!("{}: relay {a:?} is not a multiaddr", path.display()))?;
            match addr.iter().last() {
                Some(Protocol::P2p(peer)) => Ok(Relay { peer, addr }),
                _ => bail!(
                    "{}: relay {a:?} does not end with /p2p/<peer id>",
                    path.display()
                ),
            }
        })
        .collect()
}

/// Writes the file: this node is a member of `community`, whose node's relays are `relays`
/// (each `<multiaddr>/p2p/<peer id>`; checked before anything is written). Atomic: a
/// temporary file synced, then renamed over the old one.
pub fn write(data_dir: &Path, community: &Id, relays: &[String]) -> Result<()> {
    for a in relays {
        let addr: Addr = a
            .parse()
            .with_context(|| format!("relay {a:?} is not a multiaddr"))?;
        if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
            bail!("relay {a:?} does not end with /p2p/<peer id>");
        }
    }
    let text = serde_json::to_string_pretty(&OnDiskOut {
        version: VERSION,
        community: community.to_hex(),
        relays,
    })
    .context("cannot encode the membership file")?;
    let path = path(data_dir);
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let written = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    written.with_context(|| format!("cannot write {}", path.display()))
}

/// The community the file names (`None`: no file, or it names none).
pub fn community(data_dir: &Path) -> Result<Option<Id>> {
    #[derive(Deserialize)]
    struct Named {
        #[serde(default)]
        community: Option<String>,
    }
    let path = path(data_dir);
    let bytes = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        r => r.with_context(|| format!("cannot read {}", path.display()))?,
    };
    let named: Named = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a membership file", path.display()))?;
    named
        .community
        .map(|c| {
            Id::from_hex(&c)
                .map_err(|_| anyhow::anyhow!("{}: community {c:?} is not an id", path.display()))
        })
        .transpose()
}

#[derive(serde::Serialize)]
struct OnDiskOut<'a> {
    version: u32,
    community: String,
    relays: &'a [String],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relays_are_read_in_order_and_bad_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(relays(dir.path()).unwrap(), Vec::new());
        assert_eq!(stamp(dir.path()), None);
        let (p, q) = (PeerId::random(), PeerId::random());
        let text = format!(
            "{{\"version\":1,\"community\":\"{}\",\"relays\":[\"/ip4/203.0.113.7/tcp/7424/p2p/{p}\",\"/dns4/k.example/udp/7424/quic-v1/p2p/{q}\"]}}",
            "07".repeat(32)
        );
        std::fs::write(path(dir.path()), text).unwrap();
        let r = relays(dir.path()).unwrap();
        assert_eq!(
            r.iter().map(|r| r.peer).collect::<Vec<_>>(),
            vec![p, q],
            "unknown fields are other readers'"
        );
        assert_eq!(
            r[0].addr.to_string(),
            format!("/ip4/203.0.113.7/tcp/7424/p2p/{p}")
        );
        assert!(stamp(dir.path()).is_some());
        assert_eq!(community(dir.path()).unwrap(), Some(Id([7; 32])));
        // Written back, the same.
        let id = Id([9; 32]);
        let addrs: Vec<String> = r.iter().map(|r| r.addr.to_string()).collect();
        write(dir.path(), &id, &addrs).unwrap();
        assert_eq!(relays(dir.path()).unwrap(), r);
        assert_eq!(community(dir.path()).unwrap(), Some(id));
        let e = write(dir.path(), &id, &["/ip4/203.0.113.7/tcp/1".to_string()]).unwrap_err();
        assert!(format!("{e:#}").contains("/p2p/"), "{e:#}");
        assert_eq!(relays(dir.path()).unwrap(), r, "nothing written");
        for (bad, says) in [
            ("{\"version\":2,\"relays\":[]}".to_string(), "version 2"),
            ("{\"relays\":[]}".to_string(), "not a membership file"),
            (
                "{\"version\":1,\"relays\":[\"/ip4/203.0.113.7/tcp/7424\"]}".to_string(),
                "/p2p/<peer id>",
            ),
            (
                "{\"version\":1,\"relays\":[\"k.example:7424\"]}".to_string(),
                "not a multiaddr",
            ),
        ] {
            std::fs::write(path(dir.path()), &bad).unwrap();
            let e = format!("{:#}", relays(dir.path()).unwrap_err());
            assert!(e.contains(says) && e.contains(FILE), "{bad}: {e}");
        }
    }
}
