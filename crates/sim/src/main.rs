//! `sim`: runs the simulator and prints its report as JSON, with the wall time and the peak
//! resident memory of the whole simulation.

use clap::Parser;
use passalong_sim::{run, Config};

/// Simulates many Passalong nodes' network policies over a simulated network.
#[derive(Parser)]
struct Args {
    /// The full size (10,000 nodes, 2,000 markets, 1–500 followed each).
    #[arg(long)]
    full: bool,
    /// Nodes (overrides the size).
    #[arg(long)]
    nodes: Option<usize>,
    /// Markets (overrides the size).
    #[arg(long)]
    markets: Option<usize>,
    /// Most markets one node follows (overrides the size).
    #[arg(long)]
    max_follow: Option<usize>,
    /// Percentage of hostile nodes.
    #[arg(long)]
    hostile_pct: Option<u32>,
    /// Simulated seconds in all (overrides the size's 300).
    #[arg(long)]
    duration_s: Option<u64>,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let a = Args::parse();
    let mut c = if a.full {
        Config::full(a.seed)
    } else {
        Config::small(a.seed)
    };
    if let Some(n) = a.nodes {
        c.nodes = n;
    }
    if let Some(m) = a.markets {
        c.markets = m;
    }
    if let Some(f) = a.max_follow {
        c.follow.1 = f;
    }
    if let Some(h) = a.hostile_pct {
        c.hostile_pct = h;
    }
    if let Some(d) = a.duration_s {
        c.duration_ms = d * 1_000;
    }
    let started = std::time::Instant::now();
    let report = run(c.clone());
    let out = serde_json::json!({
        "config": format!("{c:?}"),
        "report": report,
        "wall_s": started.elapsed().as_secs_f64(),
        "peak_rss_mib": peak_rss_kib() / 1024,
    });
    println!("{out:#}");
}
