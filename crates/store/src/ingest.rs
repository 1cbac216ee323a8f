//! Taking attestations in: stage 1 in a batch, then holding, pending and stage 2, with every
//! write buffered in one [`Txn`] so that the whole ingest lands atomically.

use passalong_protocol::state::Report;
use passalong_protocol::validation::{self, InvalidReason, Outcome};
use passalong_protocol::{Attestation, Id};

use crate::index;
use crate::keyspace::*;
use crate::txn::{Entry, EntryState, Txn};
use crate::Status;

/// The current status of `id`, if the store has ever seen it.
pub(crate) fn status(t: &Txn<'_>, id: &Id) -> Option<Status> {
    if let Some(reason) = t.invalid_reason(id) {
        let text = String::from_utf8_lossy(&reason).into_owned();
        let (code, message) = text.split_once(": ").unwrap_or(("invalid", &text));
        return Some(Status::Invalid {
            code: code.to_string(),
            message: message.to_string(),
        });
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

/// Ingests envelopes that passed (or failed) stage 1, in order.
pub(crate) fn ingest(
    t: &mut Txn<'_>,
    checked: impl IntoIterator<Item = (Id, Result<Attestation, InvalidReason>)>,
    now_ms: u64,
    reports: &mut Vec<Report>,
) {
    for (id, c) in checked {
        match c {
            Err(reason) => mark_invalid(t, id, reason, reports),
            Ok(att) => {
                if let Some(until_ms) = validation::held_until(att.body.created_at_ms(), now_ms) {
                    t.put(key(HELD, &[&until_ms.to_be_bytes(), &id.0]), vec![]);
                    t.put_entry(&id, &Entry::new(EntryState::Held { until_ms }, &att.bytes));
                    reports.push(Report {
                        id,
                        outcome: Outcome::Held { until_ms },
                        duplicate: false,
                    });
                } else {
                    evaluate(t, att, reports);
                }
            }
        }
    }
}

/// Releases held attestations whose time has come.
pub(crate) fn tick(t: &mut Txn<'_>, now_ms: u64, reports: &mut Vec<Report>) {
    for (k, _) in t.scan(&[HELD]) {
        if u64_at(&k, 1) > now_ms {
            break;
        }
        let id = Id(id_at(&k, 9));
        t.del(k);
        if let Some(att) = envelope(t, &id) {
            evaluate(t, att, reports);
        }
    }
}

fn mark_invalid(t: &mut Txn<'_>, id: Id, reason: InvalidReason, reports: &mut Vec<Report>) {
    t.put_invalid(&id, format!("{}: {reason}", reason.code()));
    reports.push(Report {
        id,
        outcome: Outcome::Invalid(reason),
        duplicate: false,
    });
    let mut queue = Vec::new();
    release_waiters(t, &id, &mut queue);
    for att in queue {
        evaluate(t, att, reports);
    }
}

fn release_waiters(t: &mut Txn<'_>, id: &Id, queue: &mut Vec<Attestation>) {
    // Usually nothing waits at all: skip the scan (a sled iterator costs several reads).
    if !t.may_have_waiters() {
        return;
    }
    for (k, _) in t.scan(&key(WAITER, &[&id.0])) {
        let waiter = Id(id_at(&k, 33));
        t.del(k);
        // A pending attestation waiting for two ids that resolve together is queued once.
        if queue.iter().any(|a| a.id == waiter) {
            continue;
        }
        let pending = t.entry(&waiter, |e| {
            (e.state == EntryState::Pending)
                .then(|| e.attestation(waiter))
                .flatten()
        });
        if let Some(att) = pending.flatten() {
            queue.push(att);
        }
    }
}

/// Stage 2 for `att` and everything it unblocks (the same walk as the protocol's `State`).
fn evaluate(t: &mut Txn<'_>, att: Attestation, reports: &mut Vec<Report>) {
    let mut queue = vec![att];
    while let Some(att) = queue.pop() {
        let id = att.id;
        let (outcome, fact) = validation::contextual(&att.body, &*t);
        match &outcome {
            Outcome::Valid => {
                t.put_valid(&att, fact);
                let counter = key(META, &[b"valid"]);
                let n = t.get(&counter).map_or(0, |v| u64_at(&v, 0));
                t.put(counter, (n + 1).to_be_bytes().to_vec());
                index::apply(t, &att);
                release_waiters(t, &id, &mut queue);
            }
            Outcome::Pending { missing } => {
                for m in missing {
                    t.add_waiter(m, &id);
                }
                t.put_entry(&id, &Entry::new(EntryState::Pending, &att.bytes));
            }
            Outcome::Invalid(reason) => {
                t.put_invalid(&id, format!("{}: {reason}", reason.code()));
                t.del(key(ENTRY, &[&id.0]));
                release_waiters(t, &id, &mut queue);
            }
            Outcome::Held { .. } => {}
        }
        reports.push(Report {
            id,
            outcome,
            duplicate: false,
        });
    }
}
