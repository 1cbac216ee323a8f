//! Taking attestations in: stage 1 in a batch, then the protocol's lifecycle (held, pending,
//! valid or invalid, and what each settles: `passalong_protocol::lifecycle`) over the store,
//! with every write buffered in one [`Txn`] that ships them atomically.

use passalong_protocol::lifecycle::{self, Lifecycle, Queued, Report};
use passalong_protocol::validation::{Fact, InvalidReason, Known, Lookup, Outcome, Rejection};
use passalong_protocol::{Attestation, Id};

use crate::expiry::{self, ExpiryLimits, NotKept};
use crate::index;
use crate::keyspace::*;
use crate::loose;
use crate::txn::{Entry, EntryState, Txn};
use crate::Status;

/// The current status of `id`, if the store has ever seen it.
pub(crate) fn status(t: &Txn<'_>, id: &Id) -> Option<Status> {
    if let Some(reason) = t.invalid_reason(id) {
        let text = String::from_utf8_lossy(&reason).into_owned();
        let (code, message) = text.split_once(": ").unwrap_or(("invalid", &text));
        return Some(Status::Invalid(Rejection {
            code: code.to_string(),
            message: message.to_string(),
        }));
    }
    let (state, body) = t.entry(id, |e| (e.state, e.body()))?;
    Some(match state {
        EntryState::Valid => Status::Valid,
        EntryState::Held { until_ms } => Status::Held { until_ms },
        EntryState::Pending => {
            let mut missing: Vec<Id> = body?
                .dependencies()
                .into_iter()
                .filter(|d| t.entry(d, |e| e.state) != Some(EntryState::Valid))
                .collect();
            missing.sort();
            missing.dedup();
            Status::Pending { missing }
        }
    })
}

/// The stored envelope of `id`, decoded (it was checked when it came in).
pub(crate) fn envelope(t: &Txn<'_>, id: &Id) -> Option<Attestation> {
    t.entry(id, |e| e.attestation(*id))?
}

/// Ingests envelopes that passed (or failed) stage 1, in order, at `now_ms`. A held one whose
/// release is beyond the horizon, or a loose one beyond its budget, is answered but not kept:
/// it goes to `not_kept`.
pub(crate) fn ingest(
    t: &mut Txn<'_>,
    checked: impl IntoIterator<Item = (Id, Result<Attestation, InvalidReason>)>,
    now_ms: u64,
    limits: &ExpiryLimits,
    reports: &mut Vec<Report>,
    not_kept: &mut Vec<(Id, NotKept)>,
) {
    let start = reports.len();
    {
        let mut steps = Steps {
            t,
            limits,
            not_kept,
        };
        for (id, c) in checked {
            lifecycle::take(&mut steps, id, c, now_ms, reports);
        }
    }
    keep_within_caps(t, limits, &reports[start..], not_kept);
}

/// Applies the caps if the reports stored anything that does not count (an honest call of
/// valid attestations reads nothing more), and the loose budgets if it added loose ones.
fn keep_within_caps(
    t: &mut Txn<'_>,
    limits: &ExpiryLimits,
    reports: &[Report],
    not_kept: &mut Vec<(Id, NotKept)>,
) {
    if reports.iter().any(|r| r.outcome != Outcome::Valid) {
        expiry::enforce_caps(t, limits);
    }
    let mut dropped = Vec::new();
    loose::enforce(t, limits, &mut dropped);
    not_kept.extend(dropped.into_iter().map(|id| (id, NotKept::OverBudget)));
}

/// Releases up to `budget` held attestations whose time has come (those that stay pending are
/// pending from `now_ms`); true if more are due.
pub(crate) fn tick(
    t: &mut Txn<'_>,
    now_ms: u64,
    limits: &ExpiryLimits,
    budget: usize,
    reports: &mut Vec<Report>,
) -> bool {
    let mut cursor = vec![HELD];
    let mut released = 0;
    let mut more = false;
    while let Some(k) = t.key_after(&[HELD], &cursor) {
        if u64_at(&k, 1) > now_ms {
            break;
        }
        if released == budget {
            more = true;
            break;
        }
        let id = Id(id_at(&k, 9));
        t.del(k.clone());
        cursor = k;
        expiry::held_counted(t, false);
        released += 1;
        if let Some(att) = envelope(t, &id) {
            let mut not_kept = Vec::new();
            let mut steps = Steps {
                t: &mut *t,
                limits,
                not_kept: &mut not_kept,
            };
            lifecycle::release(&mut steps, att, now_ms, reports);
        }
    }
    keep_within_caps(t, limits, reports, &mut Vec::new());
    more
}

/// The store's side of each step of the lifecycle.
struct Steps<'s, 't> {
    t: &'s mut Txn<'t>,
    limits: &'s ExpiryLimits,
    not_kept: &'s mut Vec<(Id, NotKept)>,
}

impl Known for Steps<'_, '_> {
    fn lookup(&self, id: &Id) -> Lookup {
        self.t.lookup(id)
    }
}

impl Lifecycle for Steps<'_, '_> {
    fn hold(&mut self, att: Attestation, until_ms: u64, now_ms: u64) {
        if !self.limits.keeps_held(until_ms, now_ms) {
            self.not_kept.push((att.id, NotKept::TooFarAhead));
            return;
        }
        let t = &mut *self.t;
        t.put(key(HELD, &[&until_ms.to_be_bytes(), &att.id.0]), vec![]);
        t.put_entry(
            &att.id,
            &Entry::new(EntryState::Held { until_ms }, &att.bytes),
        );
        expiry::held_counted(t, true);
    }

    fn wait(&mut self, att: Attestation, missing: &[Id], since: Option<u64>, now_ms: u64) {
        let t = &mut *self.t;
        let since_ms = since.unwrap_or(now_ms);
        for m in missing {
            t.add_waiter(m, &att.id, since_ms);
        }
        t.put_entry(&att.id, &Entry::new(EntryState::Pending, &att.bytes));
        if since.is_none() {
            expiry::pending_added(t, &att.id, since_ms);
        }
    }

    fn count(&mut self, att: &Attestation, fact: Option<Fact>, since: Option<u64>) {
        let t = &mut *self.t;
        if let Some(s) = since {
            expiry::pending_settled(t, &att.id, s);
        }
        t.put_valid(att, fact);
        let counter = key(META, &[b"valid"]);
        let n = t.get(&counter).map_or(0, |v| u64_at(&v, 0));
        t.put(counter, (n + 1).to_be_bytes().to_vec());
        index::apply(t, att);
    }

    fn reject(
        &mut self,
        id: &Id,
        att: Option<&Attestation>,
        reason: &InvalidReason,
        since: Option<u64>,
        now_ms: u64,
    ) {
        let t = &mut *self.t;
        if let (Some(att), Some(s)) = (att, since) {
            expiry::pending_settled(t, id, s);
            // It may still wait for another dependency: nothing will release it now.
            expiry::drop_waiters(t, id, &att.body.dependencies());
        }
        expiry::invalid_added(t, id, now_ms);
        t.put_invalid(id, format!("{}: {reason}", reason.code()));
        if att.is_some() {
            // Held or pending until now.
            t.del(key(ENTRY, &[&id.0]));
        }
    }

    fn released(&mut self, id: &Id, queue: &mut Vec<Queued>) {
        let t = &mut *self.t;
        // Usually nothing waits at all: skip the scan (a sled iterator costs several reads).
        if !t.may_have_waiters() {
            return;
        }
        for (k, since) in t.scan(&key(WAITER, &[&id.0])) {
            let waiter = Id(id_at(&k, 33));
            t.del(k);
            // A pending attestation waiting for two ids that resolve together is queued once.
            if queue.iter().any(|(a, _)| a.id == waiter) {
                continue;
            }
            let pending = t.entry(&waiter, |e| {
                (e.state == EntryState::Pending)
                    .then(|| e.attestation(waiter))
                    .flatten()
            });
            if let Some(att) = pending.flatten() {
                // Written before format 7 without a time: 0, as its index key (see `expiry`).
                queue.push((att, Some(u64_at(&since, 0))));
            }
        }
    }
}
