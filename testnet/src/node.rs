//! One `passalong run` process and its HTTP API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// A node process of the testnet.
pub struct Node {
    /// Its index in the testnet.
    pub index: usize,
    /// Its data dir.
    pub dir: PathBuf,
    /// Its libp2p TCP port (kept across restarts).
    pub port: u16,
    /// Peers it bootstraps from.
    pub bootstrap: Vec<String>,
    /// Its API address, once started.
    pub api: String,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Its public key (hex).
    pub public_key: String,
    token: String,
    bin: PathBuf,
    child: Option<Child>,
}

/// A TCP port nothing listens on now, taken below the kernel's ephemeral range (32768–60999
/// on Linux), where no outgoing connection can take it before the node binds it.
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() % 1_200) * 10;
    (0..12_000)
        .map(|_| 20_000 + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok())
        .map(|port| port as u16)
        .ok_or_else(|| anyhow!("no free TCP port between 20000 and 31999"))
}

impl Node {
    /// A node not started yet.
    pub fn new(index: usize, root: &Path, bin: &Path, bootstrap: Vec<String>) -> Result<Node> {
        Ok(Node {
            index,
            dir: root.join(format!("node{index}")),
            port: free_port()?,
            bootstrap,
            api: String::new(),
            peer_id: String::new(),
            public_key: String::new(),
            token: String::new(),
            bin: bin.to_path_buf(),
            child: None,
        })
    }

    /// The passalong binary it runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Whether the process runs.
    pub fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process and waits until its API answers.
    pub fn start(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(self.dir.join("api.addr"));
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--data-dir")
            .arg(&self.dir)
            .args(["run", "--api", "127.0.0.1:0", "--no-mdns"])
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{}", self.port)])
            .args(["--sync-interval-secs", "3"]);
        for b in &self.bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        // The nodes' log filter, e.g. `passalong_net=debug,info` (logs go to <dir>/nodeN.log).
        if let Ok(filter) = std::env::var("TESTNET_LOG") {
            cmd.args(["--log", &filter]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = std::fs::read_to_string(self.dir.join("api.addr")) {
                self.api = addr.trim().to_string();
                if let Ok(id) = self.get("/v1/id") {
                    self.peer_id = id["peer_id"].as_str().unwrap_or_default().to_string();
                    self.public_key = id["public_key"].as_str().unwrap_or_default().to_string();
                    self.token = std::fs::read_to_string(self.dir.join("api-token"))?
                        .trim()
                        .to_string();
                    return Ok(());
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                bail!(
                    "node {} exited with {status}: see {}",
                    self.index,
                    self.dir.with_extension("log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("node {} did not come up within 30 s", self.index);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // std has no SIGTERM and the workspace forbids unsafe (libc::kill): use kill(1).
            let pid = c.id();
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// CPU time the process has used (user and system), in milliseconds.
    pub fn cpu_ms(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command's closing parenthesis: utime and stime are the 12th
        // and 13th, in the kernel's USER_HZ (100 a second on Linux, whatever the kernel's HZ).
        let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
        let user: u64 = fields.next()?.parse().ok()?;
        let system: u64 = fields.next()?.parse().ok()?;
        Some((user + system) * 10)
    }

    /// The value of one series of `GET /metrics` (its name with its labels, as written).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = ureq::get(&self.url("/metrics"))
            .timeout(Duration::from_secs(10))
            .call()
            .ok()?
            .into_string()
            .ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// The address other nodes bootstrap from.
    pub fn p2p_addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.port, self.peer_id)
    }

    /// The URL of `path` on its API.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// `GET` a JSON document.
    pub fn get(&self, path: &str) -> Result<Value> {
        let r = ureq::get(&self.url(path))
            .timeout(Duration::from_secs(10))
            .call();
        answer(r, path)
    }

    /// `GET` a JSON document with the write token (the operator's reads).
    pub fn get_operator(&self, path: &str) -> Result<Value> {
        let r = ureq::get(&self.url(path))
            .timeout(Duration::from_secs(10))
            .set("Authorization", &format!("Bearer {}", self.token))
            .call();
        answer(r, path)
    }

    /// `POST` a JSON body with the write token.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.post_with(path, body, Some(&self.token))
    }

    /// `POST` a JSON body with `bearer` (the token, or a member's `pls.` session), or none.
    pub fn post_with(&self, path: &str, body: &Value, bearer: Option<&str>) -> Result<Value> {
        let mut req = ureq::post(&self.url(path)).timeout(Duration::from_secs(30));
        if let Some(b) = bearer {
            req = req.set("Authorization", &format!("Bearer {b}"));
        }
        answer(req.send_json(body.clone()), path)
    }
}

fn answer(r: Result<ureq::Response, ureq::Error>, path: &str) -> Result<Value> {
    match r {
        Ok(resp) => Ok(resp.into_json()?),
        Err(ureq::Error::Status(code, resp)) => {
            let body = resp.into_string().unwrap_or_default();
            Err(anyhow!("{path}: {code} {body}"))
        }
        Err(e) => Err(anyhow!("{path}: {e}")),
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}
