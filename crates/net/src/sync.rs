//! Anti-entropy: one side asks a peer which of its markets' sets differ (digests of up to
//! 1,024 markets per request), reconciles those through `passalong-reconcile` — small
//! markets up to 128 per request, large ones alone with the whole message budget — then
//! fetches the missing bodies in batches and stores them (the backend verifies each batch
//! together). The other side answers statelessly. A node following 10,000 markets that
//! agree with its peer's costs ten requests, not ten thousand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use passalong_protocol::{Id, Outcome, PublicKey};
use passalong_reconcile::{Config as ReconcileConfig, Item, Reconciler, Storage};
use tokio::sync::{mpsc, oneshot};

use crate::backend::{Backend, Verdict};
use crate::event_loop::Command;
use crate::policy;
use crate::wire::{
    Digest, Held, Request, Response, MAX_DIGEST_MARKETS, MAX_FETCH_IDS, MAX_RECONCILE_MARKETS,
    MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
};
use crate::{key_of, NetError};

/// A reconciliation that has not ended after this many round trips is abandoned. Messages
/// of a market reconciled alone are chunked to the request limit (about 30,000 ids each),
/// so this covers differences of about two million attestations.
pub const MAX_ROUNDS: usize = 64;
/// A market with more items than this on either side is reconciled alone, with the whole
/// message budget; smaller ones share a request.
pub const SOLO_ITEMS: u64 = 4_000;
/// How long a responder reuses a market's sorted set before reading it again.
const STORAGE_TTL: Duration = Duration::from_secs(1);
/// Most market sets a responder keeps at once (each read at most `STORAGE_TTL` ago).
const MAX_CACHED_MARKETS: usize = 256;
/// Parents are fetched this many levels up at most (a chain is at most 64 hops).
const MAX_PARENT_LEVELS: usize = 70;

/// The reconciliation message budget of each market in a request carrying `n` of them.
/// Both sides derive it from the request, so they agree: the whole budget for a market
/// alone, an equal share of it for a batch.
fn reconcile_config(n: usize) -> ReconcileConfig {
    // Room for the market keys and postcard framing around the reconcile messages.
    let whole = MAX_REQUEST_BYTES.min(MAX_RESPONSE_BYTES) - 64 * 1024;
    ReconcileConfig {
        max_message_size: if n <= 1 {
            whole
        } else {
            whole / MAX_RECONCILE_MARKETS
        },
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
    /// The markets the peer holds something of.
    pub held: Vec<PublicKey>,
    /// What it brought that may be news, to relay on gossip: market, date and envelope of
    /// each valid new attestation made within `policy::RELAY_NEWS_MS` of now (at most
    /// `policy::MAX_RELAYED_PER_SESSION`).
    pub news: Vec<(PublicKey, u64, Vec<u8>)>,
}

/// Reconciles every market in `markets` with `peer` and fetches what this side lacks.
pub(crate) async fn session(
    req: Requester,
    backend: Arc<dyn Backend>,
    peer: PeerId,
    markets: Vec<PublicKey>,
) -> Result<SyncReport, NetError> {
    let mut report = SyncReport::default();
    for chunk in markets.chunks(MAX_DIGEST_MARKETS) {
        let b = backend.clone();
        let ms = chunk.to_vec();
        let mine = blocking(move || {
            ms.iter()
                .map(|m| Ok((*m, b.digest(m)?)))
                .collect::<Result<Vec<(PublicKey, Digest)>, String>>()
        })
        .await?;
        report.rounds += 1;
        let answer = req
            .request(
                peer,
                Request::Digest {
                    markets: mine.iter().map(|(m, d)| (m.0, *d)).collect(),
                },
            )
            .await?;
        let held = match answer {
            Response::Digest { markets } if markets.len() == mine.len() => markets,
            other => {
                report.offences += usize::from(!matches!(other, Response::Refused { .. }));
                continue;
            }
        };
        let mut solo = Vec::new();
        let mut batched = Vec::new();
        for ((m, ours), held) in mine.iter().zip(held) {
            let theirs = match held {
                Held::Nothing => continue,
                Held::Same => {
                    report.held.push(*m);
                    continue;
                }
                Held::Differs(n) => n,
            };
            report.held.push(*m);
            let m = *m;
            if ours.count.max(theirs) > SOLO_ITEMS {
                solo.push(m);
            } else {
                batched.push(m);
            }
        }
        report.markets += chunk.len();
        let groups = solo.chunks(1).chain(batched.chunks(MAX_RECONCILE_MARKETS));
        for group in groups {
            let mut need = reconcile(&req, &backend, peer, group, &mut report).await?;
            need.retain(|id| !backend.declined(id));
            fetch(&req, &backend, peer, need, Some(group), &mut report).await?;
        }
    }
    Ok(report)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, NetError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NetError::Backend(e.to_string()))?
        .map_err(NetError::Backend)
}

fn storage_of(items: Vec<(u64, Id)>) -> Storage {
    Storage::from_items(items.into_iter().map(|(created_at, id)| Item {
        created_at,
        id: id.0,
    }))
}

/// Reconciles a group of markets with `peer` in lockstep, one request per round for all
/// those not finished; returns the ids this side lacks.
async fn reconcile(
    req: &Requester,
    backend: &Arc<dyn Backend>,
    peer: PeerId,
    markets: &[PublicKey],
    report: &mut SyncReport,
) -> Result<Vec<Id>, NetError> {
    let b = backend.clone();
    let ms = markets.to_vec();
    let storages: Vec<Storage> = blocking(move || {
        ms.iter()
            .map(|m| Ok(storage_of(b.items(m)?)))
            .collect::<Result<Vec<Storage>, String>>()
    })
    .await?;
    let config = reconcile_config(markets.len());
    let mut recs: Vec<Reconciler<'_>> = storages
        .iter()
        .map(|s| Reconciler::new(s, config.clone()))
        .collect();
    // The next message of each market still reconciling.
    let mut next: Vec<Option<Vec<u8>>> = recs.iter_mut().map(|r| r.initiate().ok()).collect();
    let mut need = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let active: Vec<usize> = (0..markets.len()).filter(|i| next[*i].is_some()).collect();
        if active.is_empty() {
            return Ok(need);
        }
        report.rounds += 1;
        let rounds = active
            .iter()
            .map(|i| (markets[*i].0, next[*i].take().unwrap_or_default()))
            .collect();
        let answer = req.request(peer, Request::Reconcile { rounds }).await?;
        let answers = match answer {
            Response::Reconcile { rounds } if rounds.len() == active.len() => rounds,
            other => {
                report.offences += usize::from(!matches!(other, Response::Refused { .. }));
                return Ok(need);
            }
        };
        for (i, answer) in active.into_iter().zip(answers) {
            let Some(m) = answer else { continue };
            match recs[i].reconcile(&m) {
                Ok(Some(more)) => next[i] = Some(more),
                Ok(None) => need.extend(recs[i].need().iter().map(|id| Id(*id))),
                Err(_) => report.offences += 1,
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

/// A stored batch's verdicts, and how many bodies of it were refused as another market's.
type Ingest = tokio::task::JoinHandle<Result<(Vec<Verdict>, usize, Vec<Vec<u8>>), String>>;

/// The bodies fetched while reconciling `markets` that may be stored, and those that may not:
/// a body may when it names one of them, or is a community or membership (what a market's
/// ledger depends on outside it travels with it). A body that names no market (a referral, a
/// claim, a membership's end) shows it through the offer or membership it points to, when
/// that is held: looked up once per chunk (a chunk's referrals mostly share their offer).
/// Only the body is parsed: the store checks the rest (and the sender is blamed for it).
fn split_foreign(
    envelopes: Vec<Vec<u8>>,
    markets: &[PublicKey],
    mut market_of: impl FnMut(&Id) -> Option<PublicKey>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut known: HashMap<Id, Option<PublicKey>> = HashMap::new();
    envelopes.into_iter().partition(|e| {
        passalong_protocol::encoding::body_of_checked(e).is_none_or(|body| {
            crate::backend::travels_with_markets(&body)
                || crate::backend::named_market_by(&body, |id| {
                    *known.entry(*id).or_insert_with(|| market_of(id))
                })
                .is_none_or(|m| markets.contains(&m))
        })
    })
}

/// Fetches `ids` from `peer` in batches, then keeps fetching what they wait for. When they
/// were found reconciling `markets`, a body of another market is refused (an offence)
/// before it is stored.
pub(crate) async fn fetch(
    req: &Requester,
    backend: &Arc<dyn Backend>,
    peer: PeerId,
    ids: Vec<Id>,
    markets: Option<&[PublicKey]>,
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
            let ms: Option<Vec<PublicKey>> = markets.map(<[PublicKey]>::to_vec);
            in_flight.push_back(tokio::task::spawn_blocking(move || {
                let (wanted, foreign) = match &ms {
                    Some(ms) => split_foreign(wanted, ms, |id| b.market_of(id)),
                    None => (wanted, Vec::new()),
                };
                let verdicts = b.ingest(&wanted)?;
                Ok((verdicts, foreign.len(), wanted))
            }));
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
    let (verdicts, foreign, envelopes) = h
        .await
        .map_err(|e| NetError::Backend(e.to_string()))?
        .map_err(NetError::Backend)?;
    report.offences += foreign;
    let now = crate::event_loop::now_ms();
    for (v, envelope) in verdicts.into_iter().zip(envelopes) {
        match v {
            Verdict::New {
                outcome: Outcome::Valid,
                market,
            } => {
                report.fetched += 1;
                let dated = passalong_protocol::encoding::body_of_checked(&envelope)
                    .map(|b| b.created_at_ms());
                if let (Some(market), Some(at)) = (market, dated) {
                    let news = at.saturating_add(policy::RELAY_NEWS_MS) >= now;
                    if news && report.news.len() < policy::MAX_RELAYED_PER_SESSION {
                        report.news.push((market, at, envelope));
                    }
                }
            }
            Verdict::New {
                outcome: Outcome::Invalid(_),
                ..
            } => report.offences += 1,
            Verdict::New {
                outcome: Outcome::Pending { missing: m },
                ..
            } => missing.extend(m),
            Verdict::Duplicate
            | Verdict::NotKept
            | Verdict::New {
                outcome: Outcome::Held { .. },
                ..
            } => {}
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
        let storage = Arc::new(storage_of(self.backend.items(&market)?));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (at, _)| now.duration_since(*at) < STORAGE_TTL);
        if cache.len() < MAX_CACHED_MARKETS {
            cache.insert(market, (now, storage.clone()));
        }
        Ok(storage)
    }

    /// The markets to follow for `peer` that its request names (a digest from a member of
    /// this node's community: see [`Backend::member_markets`]).
    pub(crate) fn member_markets(&self, peer: &PeerId, request: &Request) -> Vec<PublicKey> {
        let Request::Digest { markets } = request else {
            return Vec::new();
        };
        if markets.len() > MAX_DIGEST_MARKETS {
            return Vec::new();
        }
        let Some(key) = key_of(peer) else {
            return Vec::new();
        };
        let named: Vec<PublicKey> = markets.iter().map(|(m, _)| PublicKey(*m)).collect();
        self.backend.member_markets(&key, &named)
    }

    /// The answer, and whether the request was an offence (malformed, over a limit).
    pub(crate) fn answer(&self, request: Request) -> (Response, bool) {
        let refused = |reason: String| (Response::Refused { reason }, true);
        match request {
            Request::Digest { markets } if markets.len() > MAX_DIGEST_MARKETS => {
                refused(format!("at most {MAX_DIGEST_MARKETS} markets per digest"))
            }
            Request::Digest { markets } => {
                let mut held = Vec::with_capacity(markets.len());
                for (m, theirs) in markets {
                    held.push(match self.backend.digest(&PublicKey(m)) {
                        Ok(ours) if ours.count == 0 => Held::Nothing,
                        Ok(ours) if ours == theirs => Held::Same,
                        Ok(ours) => Held::Differs(ours.count),
                        Err(reason) => return (Response::Refused { reason }, false),
                    });
                }
                (Response::Digest { markets: held }, false)
            }
            Request::Reconcile { rounds } if rounds.len() > MAX_RECONCILE_MARKETS => refused(
                format!("at most {MAX_RECONCILE_MARKETS} markets per request"),
            ),
            Request::Reconcile { rounds } => {
                let config = reconcile_config(rounds.len());
                let mut offence = false;
                let mut answers = Vec::with_capacity(rounds.len());
                for (market, msg) in rounds {
                    let storage = match self.storage(PublicKey(market)) {
                        Ok(s) => s,
                        Err(reason) => return (Response::Refused { reason }, false),
                    };
                    let mut rec = Reconciler::new(&storage, config.clone());
                    answers.push(match rec.reconcile(&msg) {
                        Ok(Some(m)) => Some(m),
                        Ok(None) | Err(_) => {
                            offence = true;
                            None
                        }
                    });
                }
                (Response::Reconcile { rounds: answers }, offence)
            }
            Request::Fetch { ids } if ids.len() > MAX_FETCH_IDS => {
                refused(format!("at most {MAX_FETCH_IDS} ids per fetch"))
            }
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

/// The protocol's test fixtures (keys, offers, referrals), as the integration tests use them.
#[cfg(test)]
#[path = "../../../protocol/tests/common/mod.rs"]
#[allow(clippy::unwrap_used)]
mod common;

#[cfg(test)]
mod tests {
    use super::common::*;
    use super::*;
    use passalong_protocol::Rule;

    /// Fetched for `mine`'s market: another seller's offer and the referrals of it are split
    /// off, each offer looked up once; what names no market held here, a body that does not
    /// parse, and `mine`'s own are kept (the store judges them).
    #[test]
    fn bodies_of_other_markets_are_split_off_with_one_lookup_per_offer() {
        let (me, other) = (key(2), key(1));
        let mine = offer(&me, policy(Rule::Direct, 1_000), T0);
        let theirs = offer(&other, policy(Rule::Direct, 1_000), T0);
        let r1 = refer(&key(3), &theirs, None, T0 + 1);
        let r2 = refer(&key(4), &theirs, Some(&r1), T0 + 2);
        let r3 = refer(&key(5), &mine, None, T0 + 3);
        let garbage = vec![1u8, 2, 3];
        let fetched: Vec<Vec<u8>> = [&mine, &theirs, &r1, &r2, &r3]
            .iter()
            .map(|a| a.bytes.clone())
            .chain([garbage.clone()])
            .collect();
        let mut lookups = Vec::new();
        let (kept, foreign) = split_foreign(fetched, &[me.public()], |id| {
            lookups.push(*id);
            (*id == theirs.id).then(|| other.public())
        });
        assert_eq!(kept, vec![mine.bytes.clone(), r3.bytes.clone(), garbage]);
        assert_eq!(foreign, vec![theirs.bytes, r1.bytes, r2.bytes]);
        assert_eq!(lookups, vec![theirs.id, mine.id]);
    }
}
