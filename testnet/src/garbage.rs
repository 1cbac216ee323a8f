//! A misbehaving peer: a real libp2p node (`passalong-net`, with a backend that stores nothing,
//! so it forwards nothing and answers every reconciliation with an empty set) that publishes
//! garbage, attestations with broken signatures and a flood on every market, and, as a hostile
//! peer, valid spam: referrals of a real offer, half of them each by a fresh key, half by the
//! peer's one key (more than an author's budget), without pacing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use passalong_net::{Backend, NetConfig, Network, Verdict};
use passalong_protocol::attestation::{Body, Referral};
use passalong_protocol::{Attestation, Id, Keypair, PublicKey};

struct Nothing;

impl Backend for Nothing {
    fn markets(&self) -> Vec<PublicKey> {
        Vec::new()
    }
    fn items(&self, _: &PublicKey) -> Result<Vec<(u64, Id)>, String> {
        Ok(Vec::new())
    }
    fn envelopes(&self, _: &[Id]) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn ingest(&self, e: &[Vec<u8>]) -> Result<Vec<Verdict>, String> {
        Ok(vec![Verdict::Duplicate; e.len()])
    }
}

/// What the garbage node did.
pub struct Garbage {
    /// Its peer id.
    pub peer_id: String,
    /// Messages it published.
    pub sent: u64,
    /// Of them, valid spam.
    pub spam: u64,
    /// Peers it was connected to when it started sending.
    pub peers: usize,
}

/// Runs the garbage node against `bootstrap` for the `markets`; `sample` is a real offer's
/// envelope, whose signature it breaks and which its spam refers. Returns after `flood`
/// messages, one in `spam_every` of them valid spam (0: none). `tag` tells peers apart.
pub fn run(
    bootstrap: Vec<String>,
    markets: Vec<PublicKey>,
    sample: Vec<u8>,
    flood: u64,
    spam_every: u64,
    tag: u8,
) -> Result<Garbage> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&std::process::id().to_le_bytes().repeat(2));
        seed[31] = 0xBA;
        seed[30] = tag;
        let config = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            bootstrap: bootstrap
                .iter()
                .map(|b| b.parse())
                .collect::<Result<_, _>>()?,
            mdns: false,
            policy: passalong_net::PolicyConfig {
                sync_interval: Duration::from_secs(3600),
                // A hostile peer does not pace what it publishes.
                publish_per_sec: 1e9,
                ..Default::default()
            },
            ..NetConfig::default()
        };
        let net = Network::start(seed, config, Arc::new(Nothing)).await?;
        for m in &markets {
            net.follow(*m).await?;
        }
        // Let the gossip mesh form.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let peers = net.info().await?.peers.len();
        let mut sent = 0u64;
        let mut spam = 0u64;
        let offer = Id::of_envelope(&sample);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        for i in 0..flood {
            let mut m = markets[(i as usize) % markets.len()];
            let msg = match i % 3 {
                // Valid: a referral of the sample offer, by a fresh key or, every other
                // time, by the peer's one key (beyond its budget, followers keep the newest).
                _ if spam_every > 0 && i % spam_every == 0 => {
                    let mut k = [tag; 32];
                    if (i / spam_every).is_multiple_of(2) {
                        k[..8].copy_from_slice(&i.to_le_bytes());
                    }
                    let key = Keypair::from_seed(k);
                    spam += 1;
                    m = markets[0];
                    let body = Body::Referral(Referral {
                        referrer: key.public(),
                        offer,
                        parent: None,
                        recipient: None,
                        community: None,
                        created_at_ms: now + i,
                    });
                    Attestation::sign(body, &key).bytes
                }
                // Bytes that are not an attestation.
                0 => {
                    let mut g = b"garbage".to_vec();
                    g.extend_from_slice(&i.to_le_bytes());
                    g
                }
                // A real attestation with a broken signature.
                1 => {
                    let mut b = sample.clone();
                    let n = b.len();
                    b[n - 1 - (i as usize % 32)] ^= (i % 255) as u8 | 1;
                    b
                }
                // Random bytes of envelope size.
                _ => (0..200u64)
                    .map(|k| (i.wrapping_mul(2654435761).wrapping_add(k * 40503) >> 7) as u8)
                    .collect(),
            };
            net.publish(m, msg).await?;
            sent += 1;
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let peer_id = net.peer_id().to_string();
        net.shutdown().await;
        Ok(Garbage {
            peer_id,
            sent,
            spam,
            peers,
        })
    })
}
