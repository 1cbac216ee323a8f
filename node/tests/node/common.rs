//! Runs the real `passalong` binary: daemons in their own data dirs on free ports, and client
//! commands against them, the way a user or a script would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_passalong");

/// A daemon process with its data dir.
pub struct Daemon {
    pub dir: PathBuf,
    pub child: Option<Child>,
    /// Flags of `run` beyond the API address.
    pub args: Vec<String>,
    /// The network namespace it runs in (`ip netns exec`), if not the test's own.
    pub netns: Option<String>,
}

impl Daemon {
    /// Starts `passalong run --api 127.0.0.1:0` listening for peers on a free loopback port
    /// (the same one after a restart, as a real node's) without mDNS, and waits until its API
    /// answers.
    pub fn start(dir: &Path) -> Daemon {
        Daemon::start_with(dir, &[])
    }

    /// The same with more flags of `run` (e.g. `--bootstrap ADDR`; `--api ADDR` instead of a
    /// free port).
    pub fn start_with(dir: &Path, args: &[&str]) -> Daemon {
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            child: None,
            args: [
                "--listen",
                &format!("/ip4/127.0.0.1/tcp/{}", free_port()),
                "--no-mdns",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(args.iter().map(|s| s.to_string()))
            .collect(),
            netns: None,
        };
        d.restart();
        d
    }

    /// Starts a daemon inside network namespace `netns` with exactly these flags of `run`;
    /// its client commands run in that namespace too (the API is on its loopback).
    pub fn start_netns(netns: &str, dir: &Path, args: &[&str]) -> Daemon {
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            netns: Some(netns.to_string()),
        };
        d.restart();
        d
    }

    /// `passalong` here, or `ip netns exec NS passalong` in its namespace.
    pub fn command(&self) -> Command {
        match &self.netns {
            None => Command::new(BIN),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
        }
    }

    /// An address other nodes can bootstrap from: `<listen addr>/p2p/<peer id>`.
    pub fn p2p_addr(&self) -> String {
        let v = self.json(&["peers"]);
        let listen = v["listen"][0].as_str().expect("a listen address");
        format!("{listen}/p2p/{}", v["peer_id"].as_str().expect("peer id"))
    }

    /// (Re)starts the process on the same data dir.
    pub fn restart(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("api.addr"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .expect("log file");
        // A free API port, unless the flags name one (a node whose public_url is its API).
        let api: &[&str] = if self.args.iter().any(|a| a == "--api") {
            &[]
        } else {
            &["--api", "127.0.0.1:0"]
        };
        let child = self
            .command()
            .args(["--data-dir", self.dir.to_str().expect("utf-8 path"), "run"])
            .args(api)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn passalong run");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.dir.join("api.addr").exists() && self.cli(&["status"]).status.success() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                let log =
                    std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "daemon exited early with {status}; the end of its log:\n{}",
                    tail.join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not come up within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no cleanup (the crash test).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY-free: libc::kill only sends a signal to our own child.
            unsafe_free_term(c.id());
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a client command against this daemon's data dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("PASSALONG_DATA_DIR")
            .output()
            .expect("run passalong")
    }

    /// Runs a client command with `--json`, asserts success, parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli(&a);
        assert!(
            out.status.success(),
            "passalong {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON document on stdout")
    }

    pub fn public_key(&self) -> String {
        self.json(&["id"])["public_key"]
            .as_str()
            .expect("key")
            .to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unsafe_free_term(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// A TCP port nothing listens on now, taken below the kernel's ephemeral range (32768–60999
/// on Linux): a port the kernel handed out would be free again for any outgoing connection
/// (every CLI call makes one) to take before the daemon binds it, which made a daemon's start
/// fail now and then.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() % 1_200) * 10;
    (0..12_000)
        .map(|_| 20_000 + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok())
        .expect("a free port between 20000 and 31999") as u16
}

/// `passalong init` on `dir` for a community node whose members' passwords are sealed at the
/// cheapest argon2 cost (tests sign in often; exports keep their own cost).
pub fn init_cheap_community(dir: &Path) {
    assert!(cli_in(dir, &["init"]).status.success());
    let config = std::fs::read_to_string(dir.join("config.toml")).expect("init wrote it");
    let edited = config.replace("member_kdf = \"member\"", "member_kdf = \"minimum\"");
    assert_ne!(edited, config, "config.toml names member_kdf");
    std::fs::write(dir.join("config.toml"), edited).expect("write config.toml");
}

/// `passalong --data-dir DIR args…` run by `cmd` (`Command::new(BIN)`, or a daemon's
/// [`Daemon::command`] where it runs) with a key file's password in the environment.
pub fn with_password(mut cmd: Command, dir: &Path, args: &[&str], password: &str) -> Output {
    cmd.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("PASSALONG_DATA_DIR")
        .env("PASSALONG_KEY_PASSWORD", password)
        .output()
        .expect("run passalong")
}

/// `login` joins a community as a hosted member with `password` through the invite at `url`
/// (its join page, as a browser posts it).
pub fn join_hosted(url: &str, login: &str, password: &str) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let page = agent.get(url).call().expect("the join page");
    let set = page
        .header("set-cookie")
        .expect("a form cookie")
        .to_string();
    let cookie = set.split(';').next().expect("cookie").to_string();
    let body = page.into_string().expect("page");
    let at = body.find("name=\"csrf\" value=\"").expect("csrf") + 19;
    let csrf = body[at..at + 64].to_string();
    let r = agent
        .post(url)
        .set("Cookie", &cookie)
        .send_form(&[
            ("csrf", csrf.as_str()),
            ("login", login),
            ("password", password),
            ("password2", password),
        ])
        .expect("joined");
    assert_eq!(r.status(), 303);
}

/// `passalong --data-dir DIR args…`
pub fn cli_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("PASSALONG_DATA_DIR")
        .output()
        .expect("run passalong")
}

/// (earned, refunded, settled, owed) of `who` in a `ledger --json` document.
pub fn line(ledger: &Value, who: &str) -> Option<(i64, i64, i64, i64)> {
    ledger["entries"]
        .as_array()?
        .iter()
        .find(|e| e["participant"] == who)
        .map(|e| {
            (
                e["earned"].as_i64().expect("n"),
                e["refunded"].as_i64().expect("n"),
                e["settled"].as_i64().expect("n"),
                e["owed"].as_i64().expect("n"),
            )
        })
}

/// `<attestation count>:<root>` of `seller`'s market as `market list` shows it on `d`.
pub fn root(d: &Daemon, seller: &str) -> Option<String> {
    d.json(&["market", "list"])["markets"]
        .as_array()?
        .iter()
        .find(|m| m["market"] == seller)
        .map(|m| format!("{}:{}", m["attestations"], m["root"].as_str().unwrap_or("")))
}

/// Publishes an offer (equal split, 10 % pool) on `seller`; returns `offer publish --json`.
pub fn publish_offer(seller: &Daemon, title: &str) -> Value {
    publish_offer_with(seller, title, &[])
}

/// The same with more flags of `offer publish` (e.g. `--connector-bps 500`).
pub fn publish_offer_with(seller: &Daemon, title: &str, more: &[&str]) -> Value {
    let mut args = vec![
        "offer",
        "publish",
        "--title",
        title,
        "--price",
        "10000",
        "--currency",
        "EUR",
        "--pool-bps",
        "1000",
        "--rule",
        "equal",
    ];
    args.extend_from_slice(more);
    seller.json(&args)
}
