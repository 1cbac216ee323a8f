//! Group commit: concurrent requests' envelopes go to the store in one `ingest` (one fsync),
//! so the API's throughput is not one flush per request.

use std::sync::Arc;

use passalong_protocol::Id;
use passalong_store::{Ack, Status, Store};
use tokio::sync::{mpsc, oneshot};

/// Most envelopes gathered into one ingest.
const MAX_BATCH: usize = 512;

struct Job {
    envelopes: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Vec<Ack>, String>>,
}

/// A handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

/// Milliseconds since the Unix epoch, by the local clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Writer {
    /// Starts the writer task on the current runtime.
    pub fn spawn(store: Arc<Store>) -> Writer {
        Writer::spawn_with(store, None)
    }

    /// Starts the writer task; the ids of attestations that each commit made valid are sent
    /// to `fresh` (the node gossips them).
    pub fn spawn_with(store: Arc<Store>, fresh: Option<mpsc::UnboundedSender<Vec<Id>>>) -> Writer {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(store, rx, fresh));
        Writer { tx }
    }

    /// Stores envelopes durably; one ack per envelope, in order, then one per attestation
    /// the group commit unblocked.
    pub async fn ingest(&self, envelopes: Vec<Vec<u8>>) -> Result<Vec<Ack>, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { envelopes, reply })
            .await
            .map_err(|_| "the store writer has stopped".to_string())?;
        rx.await
            .map_err(|_| "the store writer has stopped".to_string())?
    }
}

async fn run(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Job>,
    fresh: Option<mpsc::UnboundedSender<Vec<Id>>>,
) {
    while let Some(first) = rx.recv().await {
        let mut n = first.envelopes.len();
        let mut jobs = vec![first];
        while n < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.envelopes.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let all: Vec<Vec<u8>> = jobs.iter().flat_map(|j| j.envelopes.clone()).collect();
        let s = store.clone();
        let result = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
            s.ingest(&refs, now_ms())
        })
        .await;
        match result {
            Ok(Ok(acks)) => {
                if let Some(f) = &fresh {
                    let new: Vec<Id> = acks
                        .iter()
                        .filter(|a| !a.duplicate && a.status == Status::Valid)
                        .map(|a| a.id)
                        .collect();
                    if !new.is_empty() {
                        let _ = f.send(new);
                    }
                }
                // The store answers the inputs in order, then what they unblocked; which job's
                // envelope unblocked what is not tracked, so every job of the group hears it.
                let inputs: usize = jobs.iter().map(|j| j.envelopes.len()).sum();
                let unblocked = acks.get(inputs..).unwrap_or_default();
                let mut at = 0;
                for j in jobs {
                    let k = j.envelopes.len();
                    let mut mine = acks[at..at + k].to_vec();
                    mine.extend_from_slice(unblocked);
                    let _ = j.reply.send(Ok(mine));
                    at += k;
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store ingest failed");
                for j in jobs {
                    let _ = j.reply.send(Err(e.to_string()));
                }
            }
            Err(e) => {
                for j in jobs {
                    let _ = j.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}
