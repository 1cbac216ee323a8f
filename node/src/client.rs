//! The client side of the CLI: finds the running daemon through the data dir and talks JSON
//! to its API, in the API's own request and answer types (`passalong_api`).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use passalong_api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::datadir::DataDir;
use crate::progress::{Progress, Unit};

/// A connection to the local daemon.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// Finds the daemon of `dir`. The write token goes only to a loopback address: the
    /// daemon listens on nothing else, so an `api.addr` naming another host was not written
    /// by it (a remote daemon is reached through a tunnel to a local port instead).
    pub fn connect(dir: &DataDir) -> Result<Client> {
        let addr = dir.api_addr()?;
        if !addr.ip().is_loopback() {
            bail!(
                "{} names {addr}, which is not a loopback address: the daemon's API listens only on this machine, so the CLI sends its token nowhere else; stop and restart the daemon (it rewrites the file)",
                dir.addr_file().display()
            );
        }
        Ok(Client {
            base: format!("http://{addr}"),
            token: dir.token()?,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
                .build(),
        })
    }

    /// The answer read as `T` (read from the body as it streams in: amounts of up to 128
    /// bits stay exact, which a `serde_json::Value` would not keep).
    fn answer<T: DeserializeOwned>(&self, r: Result<ureq::Response, ureq::Error>) -> Result<T> {
        match r {
            Ok(resp) => resp.into_json::<T>().map_err(|e| {
                anyhow!("the daemon's answer is not in the form this release expects: {e}")
            }),
            Err(e) => Err(self.failure(e)),
        }
    }

    /// What a failed request says: the API's error message, or why the daemon was not reached.
    fn failure(&self, e: ureq::Error) -> anyhow::Error {
        match e {
            ureq::Error::Status(code, resp) => {
                let msg = resp
                    .into_json::<ErrorBody>()
                    .map_or_else(|_| "no message".to_string(), |b| b.error);
                anyhow!("{msg} (HTTP {code})")
            }
            ureq::Error::Transport(t) => anyhow!(
                "cannot reach the daemon at {}: {t}; is `passalong run` running for this data dir?",
                self.base
            ),
        }
    }

    /// `GET path` with the token, its answer read as `T`. Reads carry the token too: on a
    /// node reached from outside (a community, a `public_url`), contacts, earnings and
    /// anything read `as` an identity need it.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.answer(self.authorized_get(path).call())
    }

    /// A `GET path` request with the token (sent to loopback only: see [`Client::connect`]).
    fn authorized_get(&self, path: &str) -> ureq::Request {
        self.agent
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
    }

    /// `GET path` with the write token (a read that is not public: a community's invites),
    /// its answer read as `T`.
    pub fn get_private<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.answer(
            self.agent
                .get(&format!("{}{path}", self.base))
                .set("Authorization", &format!("Bearer {}", self.token))
                .call(),
        )
    }

    /// `POST path` with a JSON body and the write token, its answer read as `T`.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.answer(
            self.agent
                .post(&format!("{}{path}", self.base))
                .set("Authorization", &format!("Bearer {}", self.token))
                .send_json(body),
        )
    }

    /// `GET path`, raw bytes.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        match self.authorized_get(path).call() {
            Ok(resp) => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut resp.into_reader(), &mut out)?;
                Ok(out)
            }
            Err(e) => Err(self.failure(e)),
        }
    }
}

impl Client {
    /// `GET path`, raw bytes, with the progress of the download on a terminal: a spinner
    /// while the daemon gathers the answer, then the bytes received.
    pub fn download(&self, path: &str, what: &'static str) -> Result<Vec<u8>> {
        let waiting = Progress::waiting(what);
        let resp = match self.authorized_get(path).call() {
            Ok(resp) => resp,
            Err(e) => return Err(self.failure(e)),
        };
        drop(waiting);
        let total = resp
            .header("Content-Length")
            .and_then(|l| l.parse::<u64>().ok());
        let progress = Progress::of(what, total, Unit::Bytes);
        let mut reader = resp.into_reader();
        let mut out = Vec::with_capacity(total.unwrap_or(0).min(1 << 30) as usize);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match std::io::Read::read(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow!("reading the daemon's answer: {e}")),
            };
            out.extend_from_slice(&buf[..n]);
            progress.add(n as u64);
        }
        Ok(out)
    }
}

/// Percent-encodes a query value (hex keys need none; this is for safety).
pub fn q(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
