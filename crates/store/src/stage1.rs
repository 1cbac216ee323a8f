//! Stage 1 of an ingest (decode, limits, signatures) spread over the machine's cores: it needs
//! no state, so helpers start on it before the writer lock is taken, and stage 2 runs on the
//! first envelopes while the helpers check the next ones. The helpers also tell which
//! envelopes are already stored (two point reads each), so stage 2 does not, and a duplicate's
//! signature is never checked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use passalong_protocol::signature::KeyCache;
use passalong_protocol::{validation, Attestation, Id, InvalidReason};

use crate::Store;

/// Calls with at least this many envelopes use the helpers (large batches come from sync and
/// gossip, where a second batch is often on its way).
pub(crate) const PRECHECK_MIN: usize = 64;

/// Envelopes a worker claims at a time: a batch signature check costs less per signature the
/// larger it is (by 16: ~1.3× the cost by 64).
const CHUNK: usize = 30;

/// The first chunk is smaller, so that stage 2 starts sooner.
const FIRST_CHUNK: usize = 4;

/// Where chunk `k` starts.
fn chunk_start(k: usize) -> usize {
    match k {
        0 => 0,
        k => FIRST_CHUNK + (k - 1) * CHUNK,
    }
}

pub(crate) type Checked = Result<Attestation, InvalidReason>;

/// Stage 1 of one envelope.
pub(crate) struct Item {
    /// The store's commit count when `stored` was read: if it changed before stage 2 runs, a
    /// concurrent call may have stored the envelope since, and stage 2 reads again.
    pub commits: u64,
    /// Already stored (valid, pending, held or invalid).
    pub stored: bool,
    /// The check, for envelopes not stored.
    pub checked: Option<Checked>,
}

/// The machine's cores, read once: `available_parallelism` reads cgroup files at every call,
/// which cost a single-envelope ingest about 14 % of its CPU.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Stage 1 of several envelopes, on the calling thread (small calls) or the machine's cores.
pub(crate) fn check_parallel(envelopes: &[&[u8]], keys: &KeyCache) -> Vec<Checked> {
    let threads = cores();
    if threads < 2 || envelopes.len() < 2 * CHUNK {
        return validation::check_batch_cached(envelopes, keys);
    }
    let chunk = envelopes.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = envelopes
            .chunks(chunk)
            .map(|c| s.spawn(move || validation::check_batch_cached(c, keys)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The work of one call, shared by helper threads and the caller: whoever is free claims the
/// next chunk, in order, so results arrive roughly in the order stage 2 needs them.
pub(crate) struct Stage1<'e> {
    envelopes: &'e [&'e [u8]],
    store: &'e Store,
    /// Chunks claimed so far.
    next: AtomicUsize,
}

type Done = (usize, Vec<Item>);

impl<'e> Stage1<'e> {
    pub fn new(store: &'e Store, envelopes: &'e [&'e [u8]]) -> Self {
        Stage1 {
            envelopes,
            store,
            next: AtomicUsize::new(0),
        }
    }

    /// Checks the next unclaimed chunk: its first index and results.
    fn claim(&self) -> Option<Done> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let start = chunk_start(k);
        let chunk = self.envelopes.get(start..)?;
        if chunk.is_empty() {
            return None;
        }
        let chunk = &chunk[..chunk.len().min(chunk_start(k + 1) - start)];
        // Read the count before the lookups: a commit that lands during them changes it.
        let commits = self.store.commits();
        let stored: Vec<bool> = chunk
            .iter()
            .map(|e| self.store.is_stored(&Id::of_envelope(e)))
            .collect();
        let fresh: Vec<&[u8]> = chunk
            .iter()
            .zip(&stored)
            .filter(|(_, s)| !**s)
            .map(|(e, _)| *e)
            .collect();
        let mut checked = validation::check_batch_cached(&fresh, &self.store.keys).into_iter();
        let items = stored
            .into_iter()
            .map(|stored| {
                let checked = if stored { None } else { checked.next() };
                Item {
                    commits,
                    stored,
                    checked,
                }
            })
            .collect();
        Some((start, items))
    }

    /// Runs `f` with the results, while helper threads (one per other core) work through
    /// the envelopes.
    pub fn run<R>(&self, f: impl FnOnce(&mut Results<'_, 'e>) -> R) -> R {
        let helpers = cores().saturating_sub(1).max(1);
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            for _ in 0..helpers {
                let tx = tx.clone();
                s.spawn(move || {
                    while let Some(done) = self.claim() {
                        if tx.send(done).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            f(&mut Results {
                work: self,
                rx,
                got: (0..self.envelopes.len()).map(|_| None).collect(),
            })
        })
    }
}

/// The caller's side of [`Stage1`]: results by index, waiting for (or checking itself) the
/// ones not ready yet.
pub(crate) struct Results<'s, 'e> {
    work: &'s Stage1<'e>,
    rx: mpsc::Receiver<Done>,
    got: Vec<Option<Item>>,
}

impl Results<'_, '_> {
    fn store(&mut self, (start, results): Done) {
        for (slot, r) in self.got[start..].iter_mut().zip(results) {
            *slot = Some(r);
        }
    }

    /// Stage 1 of envelope `i` (each is taken once).
    pub fn take(&mut self, i: usize) -> Item {
        loop {
            if let Some(r) = self.got.get_mut(i).and_then(Option::take) {
                return r;
            }
            // Rather than wait for a helper, check the next unclaimed chunk here (with chunks
            // of 30, the caller and a helper check a 64-envelope call's two big chunks side by
            // side while stage 2 runs on the first 4).
            if let Some(done) = self.work.claim() {
                self.store(done);
                continue;
            }
            match self.rx.recv() {
                Ok(done) => self.store(done),
                // Every chunk was claimed and every helper is gone: one died (its panic is
                // raised when the scope ends), or `i` was taken before. Check it here.
                Err(_) => {
                    return Item {
                        commits: 0,
                        stored: false,
                        checked: self.work.envelopes.get(i).map(|e| validation::check(e)),
                    }
                }
            }
        }
    }
}
