//! `testnet`: starts N real `passalong` nodes on 127.0.0.1, each with its own data dir and
//! ports, bootstraps them, plays a scenario through their HTTP APIs (sellers, an offer with each
//! payout rule, referral trees up to 12 hops, receipts, refunds, settlements), and waits until
//! every node holds, for every market, the ledger root that the protocol crate computes offline
//! from the same attestations. It prints a table, or with `--json` one summary object, and
//! exits 1 when a node disagrees or time runs out.
//!
//! Faults: `--kill` (SIGKILL a node mid-scenario, restart it later), `--partition` (two halves
//! block each other, then heal), `--garbage` (a peer publishing garbage, broken signatures and
//! a flood), `--late-joiner` (a node that starts after the scenario); `--all-faults` for all.
//!
//! Communities: `--communities N --hosted M` (part of `--all-faults`, with two) — N nodes run
//! a community each, whose M hosted members join through invites and pass offers along with
//! their sessions, and another node joins one with its own key; midway a member is removed
//! and goes on from a node of her own, where her referrals pay the connector nothing (see
//! `community.rs`).

mod community;
mod garbage;
mod node;
mod preload;
mod scenario;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "testnet",
    about = "Run N passalong nodes on loopback through a scenario with faults"
)]
pub struct Args {
    /// Nodes to start.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Sellers among them (each publishes one offer per payout rule).
    #[arg(long, default_value_t = 2)]
    pub sellers: usize,
    /// Referrals per offer (the first 12 form one 12-hop chain).
    #[arg(long, default_value_t = 24)]
    pub referrals: usize,
    /// Receipts per offer.
    #[arg(long, default_value_t = 8)]
    pub receipts: usize,
    /// Seed of the scenario's random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// SIGKILL a node a third of the way through, restart it at two thirds.
    #[arg(long)]
    pub kill: bool,
    /// Split the nodes in two halves that refuse each other, then heal.
    #[arg(long)]
    pub partition: bool,
    /// Add a peer that sends garbage, broken signatures and a flood.
    #[arg(long)]
    pub garbage: bool,
    /// Messages the garbage peer sends.
    #[arg(long, default_value_t = 3_000)]
    pub flood: u64,
    /// Hostile peers joining a quarter of the way through (on top of `--nodes`): each dials
    /// node 0 first (an eclipse attempt), publishes `--flood` messages unpaced, one in three
    /// of them valid spam (referrals of a real offer, half by fresh keys, half by the peer's
    /// one key), the rest garbage and broken signatures, and forwards and serves nothing.
    #[arg(long, default_value_t = 0)]
    pub hostile: usize,
    /// Start one more node after the scenario; it must catch up.
    #[arg(long)]
    pub late_joiner: bool,
    /// Before the scenario, import a market of this many attestations into node 0; only the
    /// late joiner follows it (the catch-up benchmark).
    #[arg(long, default_value_t = 0)]
    pub preload: usize,
    /// Fail (exit 1) if a node's resident memory exceeds this many MiB at the end.
    #[arg(long)]
    pub max_rss_mib: Option<u64>,
    /// Fail (exit 1) if a node's data dir exceeds this many MiB at the end.
    #[arg(long)]
    pub max_disk_mib: Option<u64>,
    /// Fail (exit 1) if the p99 propagation time exceeds this many milliseconds.
    #[arg(long)]
    pub max_p99_ms: Option<u64>,
    /// Nodes that run a community (after the sellers): each hosts `--hosted` members, who
    /// join through invites, sign in and pass offers along; the first community removes a
    /// member midway, and a referral of hers made after pays its connector nothing.
    /// `--all-faults` makes it 2 (as many as there are nodes besides the sellers, if fewer).
    #[arg(long)]
    pub communities: Option<usize>,
    /// Hosted members per community.
    #[arg(long, default_value_t = 4)]
    pub hosted: usize,
    /// The community nodes' `member_kdf` (the argon2id cost of each join and sign-in):
    /// `member` (46 MiB, a node's default) or `minimum` (19 MiB, as the tests use: quicker).
    #[arg(long, default_value = "member", value_parser = ["member", "minimum"])]
    pub member_kdf: String,
    /// All of the faults above, and two communities.
    #[arg(long)]
    pub all_faults: bool,
    /// Give up after this many seconds of waiting for convergence.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// The passalong binary (default: next to this one).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Keep the data dirs and logs here (default: a temporary dir, removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// One JSON summary object on stdout.
    #[arg(long)]
    pub json: bool,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    // The garbage peer's own logs (RUST_LOG, e.g. `libp2p_gossipsub=debug`), on stderr.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    if args.all_faults {
        args.kill = true;
        args.partition = true;
        args.garbage = true;
        args.late_joiner = true;
        let room = args.nodes.saturating_sub(args.sellers);
        args.communities.get_or_insert(room.min(2));
    }
    match run(&args) {
        Ok(summary) => {
            let converged = summary["converged"] == true;
            if args.json {
                println!("{summary}");
            } else {
                print!("{}", scenario::table(&summary));
            }
            if converged {
                ExitCode::SUCCESS
            } else {
                eprintln!("error: the nodes did not converge (see the summary)");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<serde_json::Value> {
    if args.nodes < 2 || args.sellers == 0 || args.sellers > args.nodes {
        bail!("need at least 2 nodes and between 1 and --nodes sellers");
    }
    let communities = args.communities.unwrap_or(0);
    if communities > args.nodes - args.sellers {
        bail!("--communities {communities}: at most one per node that is not a seller");
    }
    if communities > 0 && args.hosted == 0 {
        bail!("--hosted: a community needs at least one member");
    }
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("passalong"))
            .unwrap_or_default(),
    };
    if !bin.exists() {
        bail!(
            "no passalong binary at {}: build it (cargo build -p passalong) or pass --bin",
            bin.display()
        );
    }
    let tmp;
    let root = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = TempDir::new()?;
            tmp.0.clone()
        }
    };
    scenario::play(args, &bin, &root, Duration::from_secs(args.timeout_secs))
}

/// A temporary directory removed on drop (std only).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let p =
            std::env::temp_dir().join(format!("passalong-testnet-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
