//! Propagation latency: one poller thread per node asks for each written attestation until
//! the node holds it as valid, and records how long after the writer's acknowledgement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One written attestation.
#[derive(Clone)]
pub struct Write {
    /// Its id (hex).
    pub id: String,
    /// The node that wrote it.
    pub writer: usize,
    /// Its market, as the index of the seller's node.
    pub market: usize,
    /// When the writer acknowledged it.
    pub at: Instant,
}

/// Written attestations, in order.
#[derive(Clone, Default)]
pub struct Written(pub Arc<Mutex<Vec<Write>>>);

impl Written {
    /// Records a write.
    pub fn push(&self, id: &str, writer: usize, market: usize) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        w.push(Write {
            id: id.to_string(),
            writer,
            market,
            at: Instant::now(),
        });
    }

    /// Every write so far.
    pub fn all(&self) -> Vec<Write> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One node's poller.
pub struct Poller {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<u64>>,
}

impl Poller {
    /// Polls `api` for every write (but its own) until stopped; returns the delays in ms.
    pub fn spawn(api: String, index: usize, written: Written) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = 0;
            let mut pending: Vec<(String, Instant)> = Vec::new();
            let mut delays = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let all = written.all();
                for w in &all[seen..] {
                    if w.writer != index {
                        pending.push((w.id.clone(), w.at));
                    }
                }
                seen = all.len();
                pending.retain(|(id, t0)| {
                    let url = format!("http://{api}/v1/attestations/{id}");
                    let held = ureq::get(&url)
                        .timeout(Duration::from_secs(2))
                        .call()
                        .ok()
                        .and_then(|r| r.into_json::<serde_json::Value>().ok())
                        .is_some_and(|v| v["status"] == "valid");
                    if held {
                        delays.push(t0.elapsed().as_millis() as u64);
                    }
                    !held
                });
                std::thread::sleep(Duration::from_millis(20));
            }
            delays
        });
        Poller { stop, handle }
    }

    /// Stops and returns the delays measured.
    pub fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// The `q` quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
