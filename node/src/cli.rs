//! The command line, as the brief's scripting contract fixes it (names and flags are kept;
//! more may be added).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use passalong_protocol::Rule;

/// Passalong: pass things along to friends, get paid when they buy.
#[derive(Parser, Debug)]
#[command(name = "passalong", version, about, long_about = None)]
pub struct Cli {
    /// The node's data directory (keys, config, store). Default: the platform's data dir.
    #[arg(long, global = true, env = "PASSALONG_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print one machine-readable JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the data dir: keys (0600), config.toml, API token. `run` does it if missing.
    Init(InitArgs),
    /// Run the daemon.
    Run(RunArgs),
    /// Print my public key and peer id.
    Id,
    /// The daemon's status, with the network's and sync's.
    Status,
    /// Connected peers (and block or unblock one).
    Peers {
        /// What to do (default: list).
        #[command(subcommand)]
        action: Option<PeersCommand>,
    },
    /// Follow and list markets.
    #[command(subcommand)]
    Market(MarketCommand),
    /// Publish and list offers.
    #[command(subcommand)]
    Offer(OfferCommand),
    /// Import the chain a link carries, sign my referral, print my share link.
    Refer {
        /// A share link, or an offer or referral id.
        #[arg(value_name = "OFFER_ID|LINK")]
        from: String,
        /// Address the referral to one friend's key.
        #[arg(long, value_name = "PUBKEY")]
        to: Option<String>,
        /// Name a community, whose connector may earn the connector share (default: the
        /// community this node is a member of, in membership.json; `none`: no community).
        #[arg(long, value_name = "ID|none")]
        community: Option<String>,
    },
    /// The seller confirms a sale (a link given as --via is imported first).
    Receipt {
        /// The offer sold.
        #[arg(long, value_name = "ID")]
        offer: String,
        /// The shop's order id.
        #[arg(long, value_name = "ORDER")]
        order: String,
        /// Amount paid, in minor units.
        #[arg(long, value_name = "MINOR")]
        amount: u64,
        /// The buyer's public key.
        #[arg(long, value_name = "PUBKEY")]
        buyer: String,
        /// The share link or referral id the sale came through.
        #[arg(long, value_name = "LINK|REFERRAL_ID")]
        via: Option<String>,
    },
    /// The seller refunds a receipt (its shares are clawed back).
    Refund {
        /// The receipt.
        #[arg(value_name = "RECEIPT_ID")]
        receipt: String,
    },
    /// The seller records a payment to a participant.
    Settle {
        /// Who was paid.
        #[arg(long, value_name = "PUBKEY")]
        participant: String,
        /// Amount paid, minor units.
        #[arg(long, value_name = "MINOR")]
        amount: u64,
        /// Currency paid.
        #[arg(long, value_name = "C")]
        currency: String,
        /// Payment reference.
        #[arg(long, value_name = "REF")]
        reference: String,
    },
    /// A seller's ledger: (currency, participant, earned, refunded, settled, owed), amounts in
    /// major units (`--json`: minor units, and the root).
    Ledger {
        /// The seller (default: me).
        #[arg(long, value_name = "PUBKEY")]
        seller: Option<String>,
        /// Print CSV (amounts in major units, with contact names), as the dashboard's download.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// What a seller (default: me) owes, per participant and currency: a payout batch.
    Payouts {
        /// The seller (default: me).
        #[arg(long, value_name = "PUBKEY")]
        seller: Option<String>,
        /// Print CSV (participant, name, currency, amount in major units).
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// The sales that paid me, newest first: receipt, order, offer, hop, amount.
    Earnings {
        /// Only sales of this seller's market.
        #[arg(long, value_name = "PUBKEY")]
        seller: Option<String>,
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// At most this many sales (default: every one).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Local names for keys, shown beside them (kept on this node, never gossiped).
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Run a community as its connector: found it, invite neighbours, see and remove members.
    #[command(subcommand)]
    Community(CommunityCommand),
    /// A hosted member's own account on a community node.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Write a seller's market (and the communities it depends on) to a bundle file.
    Export {
        /// The seller.
        #[arg(long, value_name = "PUBKEY")]
        seller: String,
        /// Where to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Bundle encoding.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Import a bundle file into the running node.
    Import {
        /// The bundle (binary or JSON).
        file: PathBuf,
    },
    /// Offline, no daemon: recompute the ledger of a bundle, check it against a root and the
    /// seller's Settlements; exit 1 on a mismatch.
    Verify {
        /// The bundle (binary or JSON).
        file: PathBuf,
        /// The root the ledger must have.
        #[arg(long, value_name = "HEX")]
        root: Option<String>,
    },
}

/// `passalong init` flags.
#[derive(clap::Args, Debug, Default)]
pub struct InitArgs {
    /// Start this node with a member's exported key file (`passalong member export-key`):
    /// her key becomes the node's, with her contacts, her community's relays and the markets
    /// her history is in, which `run` follows (refused if the data dir has another key).
    #[arg(long, value_name = "FILE")]
    pub import_key: Option<PathBuf>,
    /// The key file's password, the first line of FILE (default: $PASSALONG_KEY_PASSWORD, or
    /// asked at the terminal).
    #[arg(long, value_name = "FILE", requires = "import_key")]
    pub password_file: Option<PathBuf>,
}

/// `passalong member …`
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Export a hosted member's key as a password-protected file, to run a node of her own
    /// with it (`passalong init --import-key FILE`): signs in as LOGIN on the community node.
    /// An https node's certificate must chain to a Mozilla root or to a certificate of the
    /// PEM file named by $SSL_CERT_FILE.
    ExportKey {
        /// Her login on the community node.
        #[arg(long)]
        login: String,
        /// Where to write the key file (it must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The community node (`https://HOST[:PORT]` or `http://`; default: this data dir's
        /// running daemon).
        #[arg(long, value_name = "URL")]
        node: Option<String>,
        /// Her password, the first line of FILE (default: $PASSALONG_KEY_PASSWORD, or asked
        /// at the terminal); the file is sealed under it.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Seal the file under another password: the first line of FILE.
        #[arg(long, value_name = "FILE")]
        export_password_file: Option<PathBuf>,
    },
}

/// `passalong run` flags. Each is also a setting of config.toml.
#[derive(clap::Args, Debug, Default)]
pub struct RunArgs {
    /// Address of the local API (loopback only; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// libp2p listen address (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// libp2p bootstrap peer (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// An address peers can reach this node at: its public address or a forwarded port
    /// (repeatable; a relay server needs one).
    #[arg(long, value_name = "MULTIADDR")]
    pub external: Vec<String>,
    /// Do not look for peers on the LAN with mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// Relay connections for peers behind NAT (community nodes).
    #[arg(long)]
    pub relay_server: bool,
    /// Run without peer-to-peer networking.
    #[arg(long)]
    pub offline: bool,
    /// Seconds between reconciliations with a random peer.
    #[arg(long, value_name = "SECS")]
    pub sync_interval_secs: Option<u64>,
    /// Attestations written between store checkpoints (0: only when the journal reaches 256 MiB).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,
    /// The store's page cache, in MiB (at least 8; default: sized by the store, 64 to 512).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(8..))]
    pub store_cache_mib: Option<u64>,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `passalong=debug`.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// The address the node is reached at from outside (`https://HOST`), which share links'
    /// URLs use; the dashboard also answers to this host.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

/// `passalong peers …`
#[derive(Subcommand, Debug)]
pub enum PeersCommand {
    /// Drop a peer and refuse it until unblocked.
    Block {
        /// Its peer id.
        peer: String,
    },
    /// Accept a blocked or banned peer again.
    Unblock {
        /// Its peer id.
        peer: String,
    },
}

/// `passalong market …`
#[derive(Subcommand, Debug)]
pub enum MarketCommand {
    /// Gossip and reconcile a seller's market from now on.
    Follow {
        /// The seller's (or community connector's) public key.
        #[arg(value_name = "PUBKEY")]
        market: String,
    },
    /// The markets followed, with their attestation counts and ledger roots.
    List,
}

/// `passalong contacts …`
#[derive(Subcommand, Debug)]
pub enum ContactsCommand {
    /// Name a key (or rename it).
    Add {
        /// The key.
        #[arg(value_name = "PUBKEY")]
        key: String,
        /// Its name: 1 to 64 characters, no control characters.
        name: String,
    },
    /// Every name.
    List,
    /// Forget a key's name.
    Remove {
        /// The key.
        #[arg(value_name = "PUBKEY")]
        key: String,
    },
}

/// `passalong community …`
#[derive(Subcommand, Debug)]
pub enum CommunityCommand {
    /// Found this node's community: the node's key signs the Community attestation and
    /// becomes its connector (one community per node).
    Create {
        /// Its name, as members and share pages show it (1 to 64 bytes).
        #[arg(long)]
        name: String,
    },
    /// The community this node runs.
    Show,
    /// Make a one-time invite and print its link (shown this once: only its hash is kept).
    Invite {
        /// How long it works (e.g. 7d, 12h; default 7d, at most 365d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        expires: Option<u64>,
        /// Whom it is for (a note for you; the invitee never sees it).
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// The invites: open, used, revoked and expired (closed ones for 30 days; no tokens).
    Invites,
    /// Revoke an open invite: its link stops working.
    Revoke {
        /// The invite's id (8 hex digits, as `community invites` lists it).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// The members, newest first: login or key, hosted here or with their own node, since
    /// when, where they stand, last sign-in, referrals and hop earnings.
    Members,
    /// Remove a member: the node's key signs the end of her membership from now (her new
    /// referrals pay the connector nothing), and she is signed out at once; a hosted member
    /// may still sign in, read-only.
    Remove {
        /// The member's key (64 hex digits, as `community members` lists it).
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// What the connector earned, per market (its lines in the sellers' ledgers).
    Earnings,
    /// Join a community with this node's own key, through its invite link: the community
    /// node admits the key, this node follows the community's market, prefers its node's
    /// relays and names the community in its referrals (`refer --community none` opts out).
    /// An https node's certificate must chain to a Mozilla root or to a certificate of the
    /// PEM file named by $SSL_CERT_FILE.
    Join {
        /// The invite link (`https://HOST/join/inv1.…`).
        #[arg(value_name = "URL")]
        url: String,
    },
}

/// `passalong offer …`
#[derive(Subcommand, Debug)]
pub enum OfferCommand {
    /// Publish an offer; prints its id and a share link.
    Publish {
        /// What is sold.
        #[arg(long)]
        title: String,
        /// Price in minor units.
        #[arg(long, value_name = "MINOR")]
        price: u64,
        /// Currency code (three upper-case letters).
        #[arg(long)]
        currency: String,
        /// Share of each sale paid to the referral chain, in basis points.
        #[arg(long, value_name = "N")]
        pool_bps: u16,
        /// direct | equal | geometric:R_BPS | split-proof
        #[arg(long, value_parser = parse_rule)]
        rule: Rule,
        /// Share paid to the connector of hop 1's community, in basis points.
        #[arg(long, value_name = "N", default_value_t = 0)]
        connector_bps: u16,
        /// Hops paid, 1..=16.
        #[arg(long, value_name = "N", default_value_t = 16)]
        max_depth: u8,
        /// How long before a sale a referral still counts (e.g. 30d, 12h, 90m, 45s, 500ms).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        window: Option<u64>,
        /// A referrer earns only after buying the offer.
        #[arg(long)]
        require_purchase: bool,
        /// Where a friend buys: an http:// or https:// URL of at most 512 bytes.
        #[arg(long, value_name = "URL")]
        checkout_url: Option<String>,
    },
    /// List offers.
    List {
        /// The seller (default: me).
        #[arg(long, value_name = "PUBKEY")]
        seller: Option<String>,
    },
}

/// Bundle encodings.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Documented JSON.
    Json,
    /// Compact binary.
    Binary,
}

fn parse_rule(s: &str) -> Result<Rule, String> {
    Rule::parse(s).ok_or_else(|| {
        format!("{s:?}: expected direct, equal, geometric:R_BPS (0..=9999) or split-proof")
    })
}

/// `30d`, `12h`, `90m`, `45s`, `500ms`, or a plain number of milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 30d, 12h, 90m, 45s or 500ms"))?;
    let per = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use d, h, m, s or ms)"
            ))
        }
    };
    let ms = n
        .checked_mul(per)
        .ok_or_else(|| format!("{s:?}: too long"))?;
    if ms == 0 {
        return Err(format!("{s:?}: must be longer than zero"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_duration_ms("1500"), Ok(1500));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("3w").is_err());
        assert!(parse_duration_ms("d").is_err());
    }
}
