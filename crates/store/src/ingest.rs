//! Taking attestations in: stage 1 in a batch, then holding, pending and stage 2, with every
//! write buffered in one [`Txn`] so that the whole ingest lands atomically.

use passalong_protocol::state::Report;
use passalong_protocol::validation::{self, Fact, InvalidReason, Outcome};
use passalong_protocol::{Attestation, Id};

use crate::index;
use crate::keyspace::*;
use crate::txn::Txn;
use crate::Status;

/// The current status of `id`, if the store has ever seen it.
pub(crate) fn status(t: &Txn<'_>, id: &Id) -> Option<Status> {
    if t.contains(&key(FACT, &[&id.0])) {
        return Some(Status::Valid);
    }
    if let Some(reason) = t.get(&key(INVALID, &[&id.0])) {
        let text = String::from_utf8_lossy(&reason).into_owned();
        let (code, message) = text.split_once(": ").unwrap_or(("invalid", &text));
        return Some(Status::Invalid {
            code: code.to_string(),
            message: message.to_string(),
        });
    }
    if t.contains(&key(PENDING, &[&id.0])) {
        let att = envelope(t, id)?;
        let mut missing: Vec<Id> = att
            .body
            .dependencies()
            .into_iter()
            .filter(|d| !t.contains(&key(FACT, &[&d.0])))
            .collect();
        missing.sort();
        missing.dedup();
        return Some(Status::Pending { missing });
    }
    t.get(&key(HELD_BY_ID, &[&id.0])).map(|v| Status::Held {
        until_ms: u64_at(&v, 0),
    })
}

/// The stored envelope of `id`, decoded (it was checked when it came in).
pub(crate) fn envelope(t: &Txn<'_>, id: &Id) -> Option<Attestation> {
    let bytes = t.get(&key(ENVELOPE, &[&id.0]))?;
    Attestation::decode(&bytes).ok()
}

/// Ingests envelopes that passed (or failed) stage 1, in order.
pub(crate) fn ingest(
    t: &mut Txn<'_>,
    checked: Vec<(Id, Result<Attestation, InvalidReason>)>,
    now_ms: u64,
    reports: &mut Vec<Report>,
) {
    for (id, c) in checked {
        match c {
            Err(reason) => mark_invalid(t, id, reason, reports),
            Ok(att) => {
                t.put(key(ENVELOPE, &[&id.0]), att.bytes.clone());
                if let Some(until_ms) = validation::held_until(att.body.created_at_ms(), now_ms) {
                    t.put(key(HELD, &[&until_ms.to_be_bytes(), &id.0]), vec![]);
                    t.put(key(HELD_BY_ID, &[&id.0]), until_ms.to_be_bytes().to_vec());
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
        t.del(key(HELD_BY_ID, &[&id.0]));
        if let Some(att) = envelope(t, &id) {
            evaluate(t, att, reports);
        }
    }
}

fn mark_invalid(t: &mut Txn<'_>, id: Id, reason: InvalidReason, reports: &mut Vec<Report>) {
    t.put(
        key(INVALID, &[&id.0]),
        format!("{}: {reason}", reason.code()).into_bytes(),
    );
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
    for (k, _) in t.scan(&key(WAITER, &[&id.0])) {
        let waiter = Id(id_at(&k, 33));
        t.del(k);
        let pending = key(PENDING, &[&waiter.0]);
        if t.contains(&pending) {
            t.del(pending);
            if let Some(att) = envelope(t, &waiter) {
                queue.push(att);
            }
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
                if let Some(f) = fact {
                    if let Ok(bytes) = postcard::to_allocvec::<Fact>(&f) {
                        t.put(key(FACT, &[&id.0]), bytes);
                    }
                }
                let counter = key(META, &[b"valid"]);
                let n = t.get(&counter).map_or(0, |v| u64_at(&v, 0));
                t.put(counter, (n + 1).to_be_bytes().to_vec());
                index::apply(t, &att);
                release_waiters(t, &id, &mut queue);
            }
            Outcome::Pending { missing } => {
                for m in missing {
                    t.put(key(WAITER, &[&m.0, &id.0]), vec![]);
                }
                t.put(key(PENDING, &[&id.0]), vec![]);
            }
            Outcome::Invalid(reason) => {
                t.put(
                    key(INVALID, &[&id.0]),
                    format!("{}: {reason}", reason.code()).into_bytes(),
                );
                t.del(key(ENVELOPE, &[&id.0]));
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
