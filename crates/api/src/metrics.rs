//! `GET /metrics`: the node's counters in the Prometheus text format (version 0.0.4), for an
//! operator's scraper. Read-only and on loopback like the rest of the API, so it needs no token.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::state::AppState;

/// The exposition format's content type.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metrics written one family at a time: `# HELP`, `# TYPE`, then its samples.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(self.0, "{name}{labels} {value}");
        }
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help, &[("", value as f64)]);
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help, &[("", value)]);
    }

    /// A counter with one sample per value of `label`.
    fn counter_by(&mut self, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
        let labels: Vec<String> = values
            .iter()
            .map(|(v, _)| format!("{{{label}=\"{v}\"}}"))
            .collect();
        let samples: Vec<(&str, f64)> = labels
            .iter()
            .zip(values)
            .map(|(l, (_, n))| (l.as_str(), *n as f64))
            .collect();
        self.family(name, "counter", help, &samples);
    }
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
    let (valid, markets) = s.store_counts().await?;
    let c = s.store.ingest_counters();
    let mut m = Exposition::default();
    m.family(
        "passalong_build_info",
        "gauge",
        "The running version (always 1).",
        &[(
            &format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
            1.0,
        )],
    );
    m.gauge(
        "passalong_attestations_valid",
        "Valid attestations in the store.",
        valid as f64,
    );
    m.gauge(
        "passalong_markets",
        "Markets (sellers) with something stored or followed.",
        markets as f64,
    );
    m.counter(
        "passalong_store_checkpoints_total",
        "Store checkpoints since the daemon started.",
        s.store.checkpoints(),
    );
    m.counter(
        "passalong_ingest_calls_total",
        "Store ingest calls (API writes, gossip, anti-entropy, imports).",
        c.calls,
    );
    m.family(
        "passalong_ingest_seconds_total",
        "counter",
        "Wall time spent in store ingest calls, durable flush included.",
        &[("", c.micros as f64 / 1e6)],
    );
    m.counter_by(
        "passalong_ingested_total",
        "Attestations answered by ingest calls, by outcome.",
        "outcome",
        &[
            ("valid", c.valid),
            ("pending", c.pending),
            ("held", c.held),
            ("invalid", c.invalid),
            ("duplicate", c.duplicate),
        ],
    );
    if let Some(net) = &s.net {
        let i = net.info().await.map_err(ApiError::internal)?;
        let t = &i.stats;
        m.gauge("passalong_peers", "Connected peers.", i.peers.len() as f64);
        m.gauge(
            "passalong_markets_followed",
            "Market topics this node subscribes to.",
            i.markets.len() as f64,
        );
        m.counter_by(
            "passalong_gossip_messages_total",
            "Gossip messages received, by verdict (accepted: valid and new, forwarded).",
            "verdict",
            &[
                ("accepted", t.gossip_accepted),
                ("rejected", t.gossip_rejected),
                ("ignored", t.gossip_ignored),
            ],
        );
        m.counter(
            "passalong_published_total",
            "Attestations this node published by gossip.",
            t.published,
        );
        m.gauge(
            "passalong_gossip_queued",
            "Gossip messages waiting for validation.",
            t.queued as f64,
        );
        m.counter(
            "passalong_sync_sessions_total",
            "Finished anti-entropy sessions.",
            t.syncs_done,
        );
        m.counter(
            "passalong_sync_failures_total",
            "Failed anti-entropy sessions.",
            t.syncs_failed,
        );
        m.counter(
            "passalong_sync_fetched_total",
            "Attestations fetched by anti-entropy and parent fetches.",
            t.sync_fetched,
        );
        m.gauge(
            "passalong_sync_running",
            "Anti-entropy sessions running now.",
            t.syncing as f64,
        );
        m.counter_by(
            "passalong_network_bytes_total",
            "Payload bytes of gossip and sync streams, by direction.",
            "direction",
            &[("in", t.bytes_in), ("out", t.bytes_out)],
        );
        m.counter(
            "passalong_peers_banned_total",
            "Peers banned for their score since start.",
            t.banned_total,
        );
        m.counter_by(
            "passalong_hole_punches_total",
            "Hole punching attempts (DCUtR), by result.",
            "result",
            &[
                ("success", t.hole_punches),
                ("failure", t.hole_punch_failures),
            ],
        );
        m.counter(
            "passalong_dead_connections_total",
            "Connections closed because their pings went unanswered.",
            t.dead_connections,
        );
    }
    if let Some(rss) = resident_bytes() {
        m.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            rss as f64,
        );
    }
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], m.0))
}
