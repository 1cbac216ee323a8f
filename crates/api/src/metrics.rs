//! `GET /metrics`: the node's counters, and libp2p's own beside them, in the OpenMetrics text
//! format (prometheus-client), for an operator's scraper. Read-only and on loopback like the
//! rest of the API, so it needs no token.
//!
//! One [`Registry`], made by the node: the network registers libp2p's families in it (prefix
//! `libp2p`) and records the swarm's events into them as they happen; the node's own families
//! come from a collector registered here, whose values are read from the store (in the
//! blocking pool) and from the network at each scrape, just before the registry is encoded.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use passalong_store::IngestCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

pub use prometheus_client::registry::Registry;

use crate::error::ApiError;
use crate::network::NetStatus;
use crate::state::AppState;

/// The exposition's content type: OpenMetrics 1.0 text, what prometheus-client writes (it
/// ends with `# EOF`; a counter family `x` has the sample `x_total`). Prometheus asks for it
/// first and parses it; the older `text/plain; version=0.0.4` is not served.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry `/metrics` encodes, with the node's families registered in it.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    node: Arc<NodeFamilies>,
    /// One scrape at a time: its snapshot, then the encoding that reads it.
    scrape: Arc<tokio::sync::Mutex<()>>,
}

impl Metrics {
    /// Registers the node's families in `registry`, which may already hold others (libp2p's,
    /// registered by the network), and keeps it for the scrapes.
    pub fn new(mut registry: Registry) -> Metrics {
        let node = Arc::new(NodeFamilies::default());
        registry.register_collector(Box::new(node.clone()));
        Metrics {
            registry: Arc::new(registry),
            node,
            scrape: Arc::default(),
        }
    }

    /// The exposition of `snapshot` and of everything else in the registry.
    fn encode(&self, snapshot: Snapshot) -> Result<String, fmt::Error> {
        *self.node.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    /// A registry with the node's families alone (a node without a network, tests).
    fn default() -> Self {
        Metrics::new(Registry::default())
    }
}

/// What a scrape read from the store, the network and the process.
#[derive(Debug)]
struct Snapshot {
    valid: u64,
    markets: usize,
    checkpoints: u64,
    ingest: IngestCounters,
    net: Option<NetStatus>,
    resident_bytes: Option<u64>,
}

/// The node's families, encoded from the latest scrape's [`Snapshot`].
#[derive(Debug, Default)]
struct NodeFamilies(Mutex<Option<Snapshot>>);

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A counter with one sample per value of `label`.
fn counter_by(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for NodeFamilies {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let snapshot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(s) = snapshot.as_ref() else {
            return Ok(());
        };
        let e = &mut e;
        {
            let help = "The running version (always 1).";
            let mut family =
                e.encode_descriptor("passalong_build_info", help, None, MetricType::Gauge)?;
            let labels = [("version", env!("CARGO_PKG_VERSION"))];
            ConstGauge::new(1u64).encode(family.encode_family(&labels)?)?;
        }
        gauge(
            e,
            "passalong_attestations_valid",
            "Valid attestations in the store.",
            s.valid,
        )?;
        gauge(
            e,
            "passalong_markets",
            "Markets (sellers) with something stored or followed.",
            s.markets,
        )?;
        counter(
            e,
            "passalong_store_checkpoints",
            "Store checkpoints since the daemon started.",
            s.checkpoints,
        )?;
        let c = &s.ingest;
        counter(
            e,
            "passalong_ingest_calls",
            "Store ingest calls (API writes, gossip, anti-entropy, imports).",
            c.calls,
        )?;
        counter(
            e,
            "passalong_ingest_seconds",
            "Wall time spent in store ingest calls, durable flush included.",
            c.micros as f64 / 1e6,
        )?;
        counter_by(
            e,
            "passalong_ingested",
            "Attestations answered by ingest calls, by outcome.",
            "outcome",
            &[
                ("valid", c.valid),
                ("pending", c.pending),
                ("held", c.held),
                ("invalid", c.invalid),
                ("duplicate", c.duplicate),
            ],
        )?;
        counter(
            e,
            "passalong_ledger_updates",
            "Receipts that started to count, each an incremental update of its seller's ledger.",
            c.ledger_updates,
        )?;
        counter(
            e,
            "passalong_ledger_update_seconds",
            "Time spent in those incremental ledger updates (chain walk, payout rules, lines).",
            c.ledger_nanos as f64 / 1e9,
        )?;
        if let Some(i) = &s.net {
            network(e, i)?;
        }
        if let Some(rss) = s.resident_bytes {
            gauge(
                e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            )?;
        }
        Ok(())
    }
}

/// The network's families (only when it runs).
fn network(e: &mut DescriptorEncoder, i: &NetStatus) -> fmt::Result {
    let t = &i.stats;
    gauge(e, "passalong_peers", "Connected peers.", i.peers.len())?;
    gauge(
        e,
        "passalong_markets_followed",
        "Market topics this node subscribes to.",
        i.markets.len(),
    )?;
    counter_by(
        e,
        "passalong_gossip_messages",
        "Gossip messages received, by verdict (accepted: valid and new, forwarded).",
        "verdict",
        &[
            ("accepted", t.gossip_accepted),
            ("rejected", t.gossip_rejected),
            ("ignored", t.gossip_ignored),
        ],
    )?;
    counter(
        e,
        "passalong_published",
        "Attestations this node published by gossip.",
        t.published,
    )?;
    gauge(
        e,
        "passalong_gossip_queued",
        "Gossip messages waiting for validation.",
        t.queued,
    )?;
    counter(
        e,
        "passalong_sync_sessions",
        "Finished anti-entropy sessions.",
        t.syncs_done,
    )?;
    counter(
        e,
        "passalong_sync_failures",
        "Failed anti-entropy sessions.",
        t.syncs_failed,
    )?;
    counter(
        e,
        "passalong_sync_fetched",
        "Attestations fetched by anti-entropy and parent fetches.",
        t.sync_fetched,
    )?;
    gauge(
        e,
        "passalong_sync_running",
        "Anti-entropy sessions running now.",
        t.syncing,
    )?;
    counter_by(
        e,
        "passalong_network_bytes",
        "Payload bytes of gossip and sync streams, by direction.",
        "direction",
        &[("in", t.bytes_in), ("out", t.bytes_out)],
    )?;
    counter(
        e,
        "passalong_published_deferred",
        "Own attestations left to anti-entropy: over the node's publishing pace.",
        t.deferred,
    )?;
    counter(
        e,
        "passalong_sync_relayed",
        "Attestations anti-entropy brought and the node relayed on gossip while news.",
        t.relayed,
    )?;
    counter(
        e,
        "passalong_gossip_author_budget_dropped",
        "Valid gossip not forwarded: its author over the per-author budget.",
        t.author_budget_dropped,
    )?;
    counter(
        e,
        "passalong_peers_banned",
        "Peers banned for their score since start.",
        t.banned_total,
    )?;
    counter_by(
        e,
        "passalong_hole_punches",
        "Hole punching attempts (DCUtR), by result.",
        "result",
        &[
            ("success", t.hole_punches),
            ("failure", t.hole_punch_failures),
        ],
    )?;
    counter(
        e,
        "passalong_dead_connections",
        "Connections closed because their pings went unanswered.",
        t.dead_connections,
    )
}

/// Resident memory of this process (Linux: `VmRSS` of `/proc/self/status`).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// `GET /metrics`
pub async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let _one = s.metrics.scrape.lock().await;
    let (valid, markets, checkpoints, ingest, resident_bytes) = s
        .with_store(|store| {
            Ok::<_, passalong_store::StoreError>((
                store.valid_count()?,
                store.markets()?.len(),
                store.checkpoints(),
                store.ingest_counters(),
                // /proc is no disk, but a read all the same: here, off the async workers.
                resident_bytes(),
            ))
        })
        .await?;
    let net = match &s.net {
        Some(net) => Some(net.info().await.map_err(ApiError::internal)?),
        None => None,
    };
    let body = s
        .metrics
        .encode(Snapshot {
            valid,
            markets,
            checkpoints,
            ingest,
            net,
            resident_bytes,
        })
        .map_err(ApiError::internal)?;
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_sit_beside_others_in_one_registry() {
        let mut registry = Registry::default();
        let other = prometheus_client::metrics::counter::Counter::<u64>::default();
        other.inc_by(3);
        registry
            .sub_registry_with_prefix("libp2p")
            .register("swarm_dials", "Dials", other);
        let m = Metrics::new(registry);
        let text = m
            .encode(Snapshot {
                valid: 5,
                markets: 1,
                checkpoints: 0,
                ingest: IngestCounters::default(),
                net: None,
                resident_bytes: Some(4096),
            })
            .expect("encodes");
        for line in [
            "# TYPE passalong_attestations_valid gauge",
            "passalong_attestations_valid 5",
            "# TYPE passalong_ingest_calls counter",
            "passalong_ingest_calls_total 0",
            "passalong_ingested_total{outcome=\"duplicate\"} 0",
            "passalong_build_info{version=\"0.1.0\"} 1",
            "process_resident_memory_bytes 4096",
            "libp2p_swarm_dials_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(!text.contains("passalong_peers"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
