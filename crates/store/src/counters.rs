//! What the store's ingest calls have seen since it was opened, for an operator's metrics:
//! every source (the API, gossip, anti-entropy, imports) goes through `Store::ingest`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Ack, Status};

/// Counts since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestCounters {
    /// `Store::ingest` calls that returned acks.
    pub calls: u64,
    /// Wall time spent in them, in microseconds.
    pub micros: u64,
    /// Acks by outcome: new and valid (including what they unblocked), pending a parent,
    /// held until their time, invalid, and already stored.
    pub valid: u64,
    /// See `valid`.
    pub pending: u64,
    /// See `valid`.
    pub held: u64,
    /// See `valid`.
    pub invalid: u64,
    /// See `valid`.
    pub duplicate: u64,
    /// Receipts that started to count (a new order, or a smaller id for one): each updates
    /// its seller's ledger incrementally (the chain walk and payout rules, the lines changed).
    pub ledger_updates: u64,
    /// Time spent in those updates, in nanoseconds.
    pub ledger_nanos: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    calls: AtomicU64,
    micros: AtomicU64,
    valid: AtomicU64,
    pending: AtomicU64,
    held: AtomicU64,
    invalid: AtomicU64,
    duplicate: AtomicU64,
    ledger_updates: AtomicU64,
    ledger_nanos: AtomicU64,
}

impl Counters {
    /// Counts one call that took `took` and answered `acks`.
    pub fn add(&self, acks: &[Ack], took: Duration) {
        let mut by = [0u64; 5];
        for a in acks {
            let i = match (a.duplicate, &a.status) {
                (true, _) => 4,
                (false, Status::Valid) => 0,
                (false, Status::Pending { .. }) => 1,
                (false, Status::Held { .. }) => 2,
                (false, Status::Invalid { .. }) => 3,
            };
            by[i] += 1;
        }
        let r = Ordering::Relaxed;
        self.calls.fetch_add(1, r);
        self.micros.fetch_add(took.as_micros() as u64, r);
        for (counter, n) in [
            &self.valid,
            &self.pending,
            &self.held,
            &self.invalid,
            &self.duplicate,
        ]
        .into_iter()
        .zip(by)
        {
            if n > 0 {
                counter.fetch_add(n, r);
            }
        }
    }

    /// Counts `updates` incremental ledger updates that took `took`.
    pub fn ledger(&self, updates: u64, took: Duration) {
        if updates > 0 {
            self.ledger_updates.fetch_add(updates, Ordering::Relaxed);
            self.ledger_nanos
                .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> IngestCounters {
        let r = Ordering::Relaxed;
        IngestCounters {
            calls: self.calls.load(r),
            micros: self.micros.load(r),
            valid: self.valid.load(r),
            pending: self.pending.load(r),
            held: self.held.load(r),
            invalid: self.invalid.load(r),
            duplicate: self.duplicate.load(r),
            ledger_updates: self.ledger_updates.load(r),
            ledger_nanos: self.ledger_nanos.load(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use passalong_protocol::Id;

    use super::*;

    fn ack(status: Status, duplicate: bool) -> Ack {
        Ack {
            id: Id([7; 32]),
            status,
            duplicate,
            not_kept: None,
            market: None,
        }
    }

    #[test]
    fn acks_are_counted_by_outcome() {
        let c = Counters::default();
        c.add(
            &[
                ack(Status::Valid, false),
                ack(Status::Valid, false),
                ack(Status::Pending { missing: vec![] }, false),
                ack(Status::Held { until_ms: 1 }, false),
                ack(
                    Status::Invalid(passalong_protocol::Rejection {
                        code: "bad_signature".into(),
                        message: String::new(),
                    }),
                    false,
                ),
                ack(Status::Valid, true),
            ],
            Duration::from_micros(1500),
        );
        c.add(&[], Duration::from_micros(500));
        assert_eq!(
            c.get(),
            IngestCounters {
                calls: 2,
                micros: 2000,
                valid: 2,
                pending: 1,
                held: 1,
                invalid: 1,
                duplicate: 1,
                ledger_updates: 0,
                ledger_nanos: 0,
            }
        );
    }
}
