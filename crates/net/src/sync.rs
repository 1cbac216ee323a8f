//! Anti-entropy: one side reconciles a market's `(created_at, id)` set with a peer through
//! `passalong-reconcile`, then fetches the missing bodies in batches and stores them (the
//! backend verifies each batch together). The other side answers statelessly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use passalong_protocol::{Id, PublicKey};
use passalong_reconcile::{Config as ReconcileConfig, Item, Reconciler, Storage};
use tokio::sync::{mpsc, oneshot};

use crate::backend::{Backend, Verdict};
use crate::event_loop::Command;
use crate::wire::{Request, Response, MAX_FETCH_IDS, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use crate::NetError;

/// A reconciliation that has not ended after this many round trips is abandoned. Messages
/// are chunked to the request limit (about 130,000 ids each), so this covers differences of
/// several million attestations.
pub const MAX_ROUNDS: usize = 64;
/// How long a responder reuses a market's sorted set before reading it again.
const STORAGE_TTL: Duration = Duration::from_secs(1);
/// Parents are fetched this many levels up at most (a chain is at most 64 hops).
const MAX_PARENT_LEVELS: usize = 70;

fn reconcile_config() -> ReconcileConfig {
    ReconcileConfig {
        // Room for the market key and postcard framing around the reconcile message.
        max_message_size: MAX_REQUEST_BYTES.min(MAX_RESPONSE_BYTES) - 1024,
        ..ReconcileConfig::default()
    }
}

/// Sends requests through the event loop.
#[derive(Clone)]
pub(crate) struct Requester {
    pub(crate) tx: mpsc::Sender<Command>,
}

impl Requester {
    pub(crate) async fn request(
        &self,
        peer: PeerId,
        request: Request,
    ) -> Result<Response, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Request {
                peer,
                request,
                reply,
            })
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }
}

/// What one session with one peer achieved.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    /// Markets reconciled.
    pub markets: usize,
    /// Round trips, all markets together.
    pub rounds: usize,
    /// Attestations fetched and stored as new.
    pub fetched: usize,
    /// The peer broke the protocol (garbage, bodies not asked for, invalid attestations).
    pub offences: usize,
}

/// Reconciles every market in `markets` with `peer` and fetches what this side lacks.
pub(crate) async fn session(
    req: Requester,
    backend: Arc<dyn Backend>,
    peer: PeerId,
    markets: Vec<PublicKey>,
) -> Result<SyncReport, NetError> {
    let mut report = SyncReport::default();
    for market in markets {
        let b = backend.clone();
        let items = tokio::task::spawn_blocking(move || b.items(&market))
            .await
            .map_err(|e| NetError::Backend(e.to_string()))?
            .map_err(NetError::Backend)?;
        let need = reconcile_market(&req, peer, market, items, &mut report).await?;
        report.markets += 1;
        fetch(&req, &backend, peer, need, &mut report).await?;
    }
    Ok(report)
}

async fn reconcile_market(
    req: &Requester,
    peer: PeerId,
    market: PublicKey,
    items: Vec<(u64, Id)>,
    report: &mut SyncReport,
) -> Result<Vec<Id>, NetError> {
    let storage = Storage::from_items(items.into_iter().map(|(created_at, id)| Item {
        created_at,
        id: id.0,
    }));
    let mut rec = Reconciler::new(&storage, reconcile_config());
    let mut msg = rec
        .initiate()
        .map_err(|e| NetError::Protocol(e.to_string()))?;
    for _ in 0..MAX_ROUNDS {
        report.rounds += 1;
        let answer = req
            .request(
                peer,
                Request::Reconcile {
                    market: market.0,
                    msg,
                },
            )
            .await?;
        let Response::Reconcile { msg: m } = answer else {
            report.offences += usize::from(!matches!(answer, Response::Refused { .. }));
            return Ok(Vec::new());
        };
        match rec.reconcile(&m) {
            Ok(Some(next)) => msg = next,
            Ok(None) => return Ok(rec.need().iter().map(|id| Id(*id)).collect()),
            Err(e) => {
                report.offences += 1;
                return Err(NetError::Protocol(format!(
                    "bad reconciliation message: {e}"
                )));
            }
        }
    }
    Err(NetError::Protocol(format!(
        "reconciliation did not end within {MAX_ROUNDS} round trips"
    )))
}

/// Batches stored at once while the next is fetched: the store verifies one batch while it
/// writes the other.
const INGESTS_IN_FLIGHT: usize = 2;

type Ingest = tokio::task::JoinHandle<Result<Vec<Verdict>, String>>;

/// Fetches `ids` from `peer` in batches, then keeps fetching what they wait for.
pub(crate) async fn fetch(
    req: &Requester,
    backend: &Arc<dyn Backend>,
    peer: PeerId,
    ids: Vec<Id>,
    report: &mut SyncReport,
) -> Result<(), NetError> {
    let mut todo = ids;
    for _ in 0..MAX_PARENT_LEVELS {
        if todo.is_empty() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut in_flight: std::collections::VecDeque<Ingest> = Default::default();
        for chunk in todo.chunks(MAX_FETCH_IDS) {
            let answer = req
                .request(
                    peer,
                    Request::Fetch {
                        ids: chunk.iter().map(|i| i.0).collect(),
                    },
                )
                .await?;
            let Response::Bodies { envelopes } = answer else {
                report.offences += usize::from(!matches!(answer, Response::Refused { .. }));
                break;
            };
            // Only what was asked for is taken.
            let asked: std::collections::HashSet<Id> = chunk.iter().copied().collect();
            let (wanted, unasked): (Vec<Vec<u8>>, Vec<Vec<u8>>) = envelopes
                .into_iter()
                .partition(|e| asked.contains(&Id::of_envelope(e)));
            report.offences += usize::from(!unasked.is_empty());
            if wanted.is_empty() {
                continue;
            }
            let b = backend.clone();
            in_flight.push_back(tokio::task::spawn_blocking(move || b.ingest(&wanted)));
            if in_flight.len() >= INGESTS_IN_FLIGHT {
                if let Some(h) = in_flight.pop_front() {
                    absorb(h, report, &mut missing).await?;
                }
            }
        }
        while let Some(h) = in_flight.pop_front() {
            absorb(h, report, &mut missing).await?;
        }
        missing.sort_unstable();
        missing.dedup();
        todo = missing;
    }
    Ok(())
}

/// Waits for one stored batch and counts what it brought.
async fn absorb(h: Ingest, report: &mut SyncReport, missing: &mut Vec<Id>) -> Result<(), NetError> {
    let verdicts = h
        .await
        .map_err(|e| NetError::Backend(e.to_string()))?
        .map_err(NetError::Backend)?;
    for v in verdicts {
        match v {
            Verdict::Valid { .. } => report.fetched += 1,
            Verdict::Invalid { .. } => report.offences += 1,
            Verdict::Pending { missing: m } => missing.extend(m),
            Verdict::Duplicate | Verdict::Held => {}
        }
    }
    Ok(())
}

/// Each market's sorted set, and when it was read.
type StorageCache = HashMap<PublicKey, (Instant, Arc<Storage>)>;

/// Answers sync requests; keeps each market's sorted set for a moment so that the rounds of
/// one reconciliation do not each read the store.
#[derive(Clone)]
pub(crate) struct Responder {
    backend: Arc<dyn Backend>,
    cache: Arc<Mutex<StorageCache>>,
}

impl Responder {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Responder {
        Responder {
            backend,
            cache: Arc::default(),
        }
    }

    fn storage(&self, market: PublicKey) -> Result<Arc<Storage>, String> {
        let now = Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, s)) = cache.get(&market) {
                if now.duration_since(*at) < STORAGE_TTL {
                    return Ok(s.clone());
                }
            }
        }
        let items = self.backend.items(&market)?;
        let storage = Arc::new(Storage::from_items(items.into_iter().map(
            |(created_at, id)| Item {
                created_at,
                id: id.0,
            },
        )));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (at, _)| now.duration_since(*at) < STORAGE_TTL);
        cache.insert(market, (now, storage.clone()));
        Ok(storage)
    }

    /// The answer, and whether the request was an offence (malformed, over a limit).
    pub(crate) fn answer(&self, request: Request) -> (Response, bool) {
        match request {
            Request::Reconcile { market, msg } => {
                let storage = match self.storage(PublicKey(market)) {
                    Ok(s) => s,
                    Err(e) => return (Response::Refused { reason: e }, false),
                };
                let mut rec = Reconciler::new(&storage, reconcile_config());
                match rec.reconcile(&msg) {
                    Ok(Some(m)) => (Response::Reconcile { msg: m }, false),
                    Ok(None) => (
                        Response::Refused {
                            reason: "unexpected message".into(),
                        },
                        true,
                    ),
                    Err(e) => (
                        Response::Refused {
                            reason: e.to_string(),
                        },
                        true,
                    ),
                }
            }
            Request::Fetch { ids } if ids.len() > MAX_FETCH_IDS => (
                Response::Refused {
                    reason: format!("at most {MAX_FETCH_IDS} ids per fetch"),
                },
                true,
            ),
            Request::Fetch { ids } => {
                let ids: Vec<Id> = ids.into_iter().map(Id).collect();
                (
                    Response::Bodies {
                        envelopes: self.backend.envelopes(&ids),
                    },
                    false,
                )
            }
        }
    }
}
