//! Group commit: concurrent requests' envelopes go to the store in one `ingest` (one fsync),
//! so the API's throughput is not one flush per request.
//!
//! The writer must outlive any one failure: a failed commit (a full disk) answers an error to
//! the requests of that commit only, and the next commit tries again, so writes resume once
//! space is free. Should the task itself die (a panic), a supervisor starts it again on the
//! same queue: only the requests of the commit in flight hear that the writer stopped.

use std::sync::Arc;
use std::time::Duration;

use passalong_protocol::Id;
use passalong_store::{Ack, Status, Store, StoreError};
use tokio::sync::{mpsc, oneshot, Mutex};

/// Most envelopes gathered into one ingest.
const MAX_BATCH: usize = 512;

/// Pause before the writer task is started again after a panic, so a task that dies at once
/// again does not spin a core.
const RESTART_DELAY_MS: u64 = 100;

/// Where the writer commits. The store in the node; tests put a store that fails on demand
/// in front of it (the store's own fault injection is private to its crate).
pub trait Sink: Send + Sync + 'static {
    /// Stores envelopes durably (see [`Store::ingest`]).
    fn ingest(&self, envelopes: &[&[u8]], now_ms: u64) -> Result<Vec<Ack>, StoreError>;
}

impl Sink for Store {
    fn ingest(&self, envelopes: &[&[u8]], now_ms: u64) -> Result<Vec<Ack>, StoreError> {
        // Anchored: never dropped as loose (see `Store::ingest_own`).
        let acks = Store::ingest_own(self, envelopes, now_ms)?;
        // What the node's own API stores (its acts, its imports) makes it follow the markets
        // concerned; what peers send does not (see `Store::followed`).
        let own: Vec<Id> = acks
            .iter()
            .take(envelopes.len())
            .filter(|a| !matches!(a.status, Status::Invalid { .. }))
            .map(|a| a.id)
            .collect();
        if let Err(e) = self.follow_markets_of(&own) {
            // Stored and acknowledged all the same: the market is followed at the next act.
            tracing::warn!(error = %e, "cannot follow the markets of what was stored");
        }
        Ok(acks)
    }
}

struct Job {
    envelopes: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Vec<Ack>, String>>,
}

/// The writer task's queue; shared with the supervisor so that a restarted task takes over
/// the jobs still waiting.
type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

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
        Writer::spawn_on(store, fresh)
    }

    /// Starts the writer task over any [`Sink`].
    pub fn spawn_on(sink: Arc<dyn Sink>, fresh: Option<mpsc::UnboundedSender<Vec<Id>>>) -> Writer {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(supervise(sink, Arc::new(Mutex::new(rx)), fresh));
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
            .map_err(|_| "the store writer stopped during this write: try again".to_string())?
    }
}

/// Runs the writer task, and starts it again whenever it panics; ends when every [`Writer`]
/// handle is gone or the runtime shuts down.
async fn supervise(
    sink: Arc<dyn Sink>,
    queue: Queue,
    fresh: Option<mpsc::UnboundedSender<Vec<Id>>>,
) {
    let mut restarts = 0u64;
    loop {
        match tokio::spawn(run(sink.clone(), queue.clone(), fresh.clone())).await {
            Err(e) if e.is_panic() => {
                restarts += 1;
                tracing::error!(restarts, "the store writer panicked; starting it again");
                tokio::time::sleep(Duration::from_millis(RESTART_DELAY_MS)).await;
            }
            _ => return,
        }
    }
}

async fn run(sink: Arc<dyn Sink>, queue: Queue, fresh: Option<mpsc::UnboundedSender<Vec<Id>>>) {
    let mut rx = queue.lock().await;
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
        let s = sink.clone();
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
                    let mut mine = acks.get(at..at + k).unwrap_or_default().to_vec();
                    mine.extend_from_slice(unblocked);
                    let _ = j.reply.send(Ok(mine));
                    at += k;
                }
            }
            // Answer first, log after: the requests hear of the failure whatever the log does.
            Ok(Err(e)) => {
                for j in jobs {
                    let _ = j.reply.send(Err(e.to_string()));
                }
                tracing::error!(error = %e, envelopes = n, "store ingest failed; the next write tries again");
            }
            Err(e) => {
                for j in jobs {
                    let _ = j.reply.send(Err(e.to_string()));
                }
                tracing::error!(error = %e, envelopes = n, "store ingest panicked; the next write tries again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A store whose first `fail` ingests fail the way a full disk does.
    struct Flaky {
        store: Store,
        fail: AtomicU64,
    }

    impl Sink for Flaky {
        fn ingest(&self, envelopes: &[&[u8]], now_ms: u64) -> Result<Vec<Ack>, StoreError> {
            if self
                .fail
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::Closed {
                    path: self.store.path().to_path_buf(),
                });
            }
            self.store.ingest(envelopes, now_ms)
        }
    }

    /// A log sink that panics on its first write, as tracing's stderr writer did on a full
    /// disk (it reports its own write error with `eprintln!`, which panics).
    #[derive(Clone, Default)]
    struct PanicsOnce(Arc<AtomicBool>);

    impl std::io::Write for PanicsOnce {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            assert!(
                self.0.swap(true, Ordering::Relaxed),
                "failed printing to stderr"
            );
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn offer_envelope(n: u64) -> Vec<u8> {
        use passalong_protocol::attestation::{Body, Currency, Offer};
        let keys = passalong_protocol::Keypair::from_seed([7; 32]);
        let body = Body::Offer(Offer {
            seller: keys.public(),
            title: format!("offer {n}"),
            content_hash: None,
            price_minor: 100,
            currency: Currency::parse("EUR").unwrap(),
            policy: passalong_protocol::Policy {
                pool_bps: 1000,
                connector_bps: 0,
                rule: passalong_protocol::Rule::Equal,
                max_depth: 4,
                window_ms: 1_000_000,
                require_purchase: false,
            },
            valid_from_ms: 0,
            valid_until_ms: None,
            created_at_ms: 1_000 + n,
            checkout_url: None,
        });
        passalong_protocol::Attestation::sign(body, &keys).bytes
    }

    /// A failed commit whose log line panics answers an error to that write; the writer is
    /// started again and the next write is stored (before, every later write answered "the
    /// store writer has stopped" until a restart).
    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_commit_with_a_panicking_log_does_not_stop_later_writes() {
        let log = PanicsOnce::default();
        let subscriber = tracing_subscriber_free(log);
        let _guard = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Flaky {
            store: Store::open(dir.path()).unwrap(),
            fail: AtomicU64::new(1),
        });
        let writer = Writer::spawn_on(sink.clone(), None);
        assert!(writer.ingest(vec![offer_envelope(1)]).await.is_err());
        let acks = writer.ingest(vec![offer_envelope(2)]).await.unwrap();
        assert_eq!(acks[0].status, Status::Valid);
        assert!(sink.store.status(&acks[0].id).unwrap().is_some());
    }

    /// A subscriber that writes every event's message to `w` (no tracing-subscriber here).
    fn tracing_subscriber_free(w: PanicsOnce) -> impl tracing::Subscriber + Send + Sync {
        struct Sub(std::sync::Mutex<PanicsOnce>);
        impl tracing::Subscriber for Sub {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, e: &tracing::Event<'_>) {
                let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
                let _ = std::io::Write::write_all(&mut *w, e.metadata().name().as_bytes());
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        Sub(std::sync::Mutex::new(w))
    }
}
