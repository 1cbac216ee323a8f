//! The client side of the CLI: finds the running daemon through the data dir and talks JSON
//! to its API.

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::Value;

use crate::datadir::DataDir;

/// A connection to the local daemon.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// Finds the daemon of `dir`.
    pub fn connect(dir: &DataDir) -> Result<Client> {
        let addr = dir.api_addr()?;
        Ok(Client {
            base: format!("http://{addr}"),
            token: dir.token()?,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
                .build(),
        })
    }

    fn answer(&self, r: Result<ureq::Response, ureq::Error>) -> Result<Value> {
        match r {
            Ok(resp) => resp
                .into_json::<Value>()
                .map_err(|e| anyhow!("the daemon sent a reply that is not JSON: {e}")),
            Err(ureq::Error::Status(code, resp)) => {
                let body: Value = resp.into_json().unwrap_or(Value::Null);
                let msg = body["error"].as_str().unwrap_or("no message").to_string();
                Err(anyhow!("{msg} (HTTP {code})"))
            }
            Err(ureq::Error::Transport(t)) => Err(anyhow!(
                "cannot reach the daemon at {}: {t}; is `passalong run` running for this data dir?",
                self.base
            )),
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.answer(self.agent.get(&format!("{}{path}", self.base)).call())
    }

    /// `POST path` with a JSON body and the write token.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.answer(
            self.agent
                .post(&format!("{}{path}", self.base))
                .set("Authorization", &format!("Bearer {}", self.token))
                .send_json(body),
        )
    }

    /// `GET path`, raw bytes.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        match self.agent.get(&format!("{}{path}", self.base)).call() {
            Ok(resp) => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut resp.into_reader(), &mut out)?;
                Ok(out)
            }
            Err(e) => self.answer(Err(e)).map(|_| Vec::new()),
        }
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
