//! `passalong`: the node binary — the daemon (`run`) and every client command of the brief's
//! scripting contract. It is the CLI definition plus glue; the work happens in the protocol,
//! store and api crates.
//!
//! Exit codes: 0 success, 1 an error (one line on stderr saying what was wrong and what to do),
//! 2 a usage error (clap's). Output whose reader left early (`passalong verify F | head`) is not
//! an error: the rest is dropped quietly and the exit code is the command's (`commands::emit`).

mod cli;
mod client;
mod commands;
mod community;
mod config;
mod daemon;
mod datadir;
mod display;
mod keyfile;
mod logging;
mod network;
mod password;
mod progress;
mod remote;
mod verify;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command};
use commands::Out;
use datadir::DataDir;

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    let code = match try_main(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            // One line: the error and its causes.
            say(&format!("error: {}", format!("{e:#}").replace('\n', " ")));
            ExitCode::from(1)
        }
    };
    if commands::output_failed() {
        return ExitCode::from(1);
    }
    code
}

/// A line on stderr, made printable (an error may quote a remote seller's text); if stderr is
/// closed too, nothing (`eprintln!` would panic).
fn say(line: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "{}",
        passalong_api::text::printable(line)
    );
}

fn try_main(cli: Cli) -> Result<bool> {
    let out = Out { json: cli.json };
    if let Command::Verify { file, root } = &cli.command {
        let ok = verify::verify(file, root.as_deref(), out)?;
        if !ok {
            say("error: verification failed: the recomputed ledger does not match (see above)");
        }
        return Ok(ok);
    }
    let dir = DataDir::resolve(cli.data_dir)?;
    match cli.command {
        Command::Init(args) if args.import_key.is_some() => {
            let file = args
                .import_key
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            let v = keyfile::import(&dir, file, args.password_file.as_deref())?;
            out.print(&v, |v| {
                let mut s = format!(
                    "{} {} with the imported key\npublic key {}\n{} markets to follow on the first `passalong run`, {} contacts",
                    if v.created { "initialised" } else { "already initialised:" },
                    v.data_dir,
                    v.public_key,
                    v.markets,
                    v.contacts
                );
                if let Some(c) = &v.community {
                    s.push_str(&format!("\nmember of community {c} ({} relays of its node in membership.json)", v.relays));
                }
                s
            });
        }
        Command::Init(_) => {
            let created = dir.init()?;
            let pk = dir.keypair()?.public();
            /// What `passalong init` did.
            #[derive(serde::Serialize)]
            struct Initialised {
                data_dir: String,
                created: bool,
                public_key: String,
            }
            let v = Initialised {
                data_dir: dir.root().display().to_string(),
                created,
                public_key: pk.to_hex(),
            };
            out.print(&v, |v| {
                format!(
                    "{} {}\npublic key {}",
                    if v.created {
                        "initialised"
                    } else {
                        "already initialised:"
                    },
                    v.data_dir,
                    v.public_key
                )
            });
        }
        Command::Run(args) => daemon::run(&dir, &args)?,
        Command::Id => commands::id(&dir, out)?,
        Command::Status => commands::status(&dir, out)?,
        Command::Peers { action } => commands::peers(&dir, out, action)?,
        Command::Market(cmd) => commands::market(&dir, out, cmd)?,
        Command::Offer(cmd) => commands::offer(&dir, out, cmd)?,
        Command::Refer {
            from,
            to,
            community,
        } => commands::refer(&dir, out, from, to, community)?,
        Command::Receipt {
            offer,
            order,
            amount,
            buyer,
            via,
        } => commands::receipt(&dir, out, offer, order, amount, buyer, via)?,
        Command::Refund { receipt } => commands::refund(&dir, out, receipt)?,
        Command::Settle {
            participant,
            amount,
            currency,
            reference,
        } => commands::settle(&dir, out, participant, amount, currency, reference)?,
        Command::Ledger { seller, csv } => commands::ledger(&dir, out, seller, csv)?,
        Command::Payouts { seller, csv } => commands::payouts(&dir, out, seller, csv)?,
        Command::Earnings { seller, csv, limit } => {
            commands::earnings(&dir, out, seller, csv, limit)?
        }
        Command::Contacts(cmd) => commands::contacts(&dir, out, cmd)?,
        Command::Community(cmd) => community::community(&dir, out, cmd)?,
        Command::Member(cli::MemberCommand::ExportKey {
            login,
            out: file,
            node,
            password_file,
            export_password_file,
        }) => keyfile::export_key(
            &dir,
            out,
            &login,
            &file,
            node.as_deref(),
            password_file.as_deref(),
            export_password_file.as_deref(),
        )?,
        Command::Export {
            seller,
            out: file,
            format,
        } => commands::export(&dir, out, seller, &file, format)?,
        Command::Import { file } => commands::import(&dir, out, &file)?,
        Command::Verify { .. } => unreachable!("handled above"),
    }
    Ok(true)
}

/// Bounds glibc's malloc arenas to two, unless `MALLOC_ARENA_MAX` says otherwise. glibc gives
/// threads that allocate at once arenas of their own, up to eight per core, and each keeps
/// what it freed: the node's threads (tokio's workers, the store's stage-1 helpers and writer)
/// held a late joiner catching up 100,000 attestations at 214–264 MB of RSS, against 169–176
/// MB with two arenas, in the same time (mimalloc instead: 355–404 MB; docs/benchmarks.md).
///
/// Also fixes the size from which an allocation is its own mapping at [`MMAP_THRESHOLD`],
/// unless `MALLOC_MMAP_THRESHOLD_` says otherwise. glibc raises that size (up to 32 MiB) each
/// time such a mapping is freed, and keeps what is below it: each argon2id derivation of a
/// sign-in or join (19 MiB at the lowest preset) then stayed in the heap, and a community node
/// grew ~17 MiB per sign-in (16 joins: 556 against 30 MiB).
#[allow(unsafe_code)]
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only sets one of the allocator's tunables, and this runs first
            // in `main`, before any other thread exists.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}

/// Allocations of this many bytes or more are mappings of their own, given back when freed
/// (see [`tune_malloc`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;
