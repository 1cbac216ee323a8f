//! The lifecycle of an attestation on a node, once for every kind of storage: held while it
//! is dated beyond the clock skew, pending while it references attestations the node does not
//! hold, then valid or invalid for good; and whatever waited for it released when it settles.
//!
//! Storage implements [`Lifecycle`] (the in-memory [`State`](crate::State), and the store over
//! its tree); the functions here decide what happens and in which order, so that every node
//! reports the same outcomes whatever it keeps its attestations in. Like the rest of this
//! crate it reads no clock: the caller passes `now_ms`.

use crate::encoding::Attestation;
use crate::keys::Id;
use crate::validation::{self, Fact, InvalidReason, Known, Outcome};

/// The outcome of one attestation, reported when it is inserted or when it changes (a pending
/// one whose dependency arrived, a held one whose time came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The attestation.
    pub id: Id,
    /// Its outcome now.
    pub outcome: Outcome,
    /// It had been inserted before; nothing changed.
    pub duplicate: bool,
}

/// An attestation to evaluate, with the time it has been pending since (`None`: it was not
/// pending).
pub type Queued = (Attestation, Option<u64>);

/// What a storage does at each step of the lifecycle. `Known` answers stage 2's questions.
pub trait Lifecycle: Known {
    /// `att` is dated beyond the clock skew: keep it until `until_ms`, when the caller hands it
    /// to [`release`] (a storage may decline to keep it, over a budget).
    fn hold(&mut self, att: Attestation, until_ms: u64, now_ms: u64);
    /// `att` waits for `missing`; `since` is when it became pending, if it already was.
    fn wait(&mut self, att: Attestation, missing: &[Id], since: Option<u64>, now_ms: u64);
    /// `att` counts, with `fact` for what depends on it; `since` as for [`Lifecycle::wait`].
    fn count(&mut self, att: &Attestation, fact: Option<Fact>, since: Option<u64>);
    /// `id` never counts, for `reason`. `att` is set when it decoded (it may have been held
    /// or pending, since `since`), and not when it failed the stateless check.
    fn reject(
        &mut self,
        id: &Id,
        att: Option<&Attestation>,
        reason: &InvalidReason,
        since: Option<u64>,
        now_ms: u64,
    );
    /// Adds to `queue` the pending attestations that wait for `id`, which has just settled,
    /// and forgets that they wait (each is evaluated again, and waits again if it must).
    fn released(&mut self, id: &Id, queue: &mut Vec<Queued>);
}

/// Takes in a new attestation: `checked` is its stateless check. Reports its outcome first,
/// then those of the attestations it settled.
pub fn take<S: Lifecycle>(
    s: &mut S,
    id: Id,
    checked: Result<Attestation, InvalidReason>,
    now_ms: u64,
    reports: &mut Vec<Report>,
) {
    match checked {
        Err(reason) => {
            s.reject(&id, None, &reason, None, now_ms);
            reports.push(Report {
                id,
                outcome: Outcome::Invalid(reason),
                duplicate: false,
            });
            // Whatever waited for it can now never be valid.
            let mut queue = Vec::new();
            s.released(&id, &mut queue);
            evaluate(s, queue, now_ms, reports);
        }
        Ok(att) => match validation::held_until(att.body.created_at_ms(), now_ms) {
            Some(until_ms) => {
                reports.push(Report {
                    id,
                    outcome: Outcome::Held { until_ms },
                    duplicate: false,
                });
                s.hold(att, until_ms, now_ms);
            }
            None => evaluate(s, vec![(att, None)], now_ms, reports),
        },
    }
}

/// A held attestation whose time has come (the storage no longer holds it).
pub fn release<S: Lifecycle>(s: &mut S, att: Attestation, now_ms: u64, reports: &mut Vec<Report>) {
    evaluate(s, vec![(att, None)], now_ms, reports);
}

/// Stage 2 for each queued attestation and, transitively, for everything it settles.
fn evaluate<S: Lifecycle>(
    s: &mut S,
    mut queue: Vec<Queued>,
    now_ms: u64,
    reports: &mut Vec<Report>,
) {
    while let Some((att, since)) = queue.pop() {
        let id = att.id;
        let (outcome, fact) = validation::contextual(&att.body, &*s);
        match &outcome {
            Outcome::Valid => {
                s.count(&att, fact, since);
                s.released(&id, &mut queue);
            }
            Outcome::Pending { missing } => s.wait(att, missing, since, now_ms),
            Outcome::Invalid(reason) => {
                s.reject(&id, Some(&att), reason, since, now_ms);
                s.released(&id, &mut queue);
            }
            // Stage 2 does not read the clock.
            Outcome::Held { .. } => {}
        }
        reports.push(Report {
            id,
            outcome,
            duplicate: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::attestation::{Body, Currency, Offer, Referral};
    use crate::keys::Keypair;
    use crate::policy::{Policy, Rule};
    use crate::validation::Lookup;

    const T0: u64 = 1_767_225_600_000;

    fn offer(k: &Keypair, created_at_ms: u64) -> Attestation {
        Attestation::sign(
            Body::Offer(Offer {
                seller: k.public(),
                title: "A record".into(),
                content_hash: None,
                price_minor: 2_000,
                currency: Currency(*b"EUR"),
                policy: Policy {
                    pool_bps: 1_000,
                    connector_bps: 0,
                    rule: Rule::Geometric { r_bps: 5_000 },
                    max_depth: 16,
                    window_ms: 2_592_000_000,
                    require_purchase: false,
                },
                valid_from_ms: 0,
                valid_until_ms: None,
                created_at_ms,
                checkout_url: None,
            }),
            k,
        )
    }

    fn refer(k: &Keypair, offer: &Attestation, parent: Option<&Attestation>) -> Attestation {
        Attestation::sign(
            Body::Referral(Referral {
                referrer: k.public(),
                offer: offer.id,
                parent: parent.map(|p| p.id),
                recipient: None,
                community: None,
                created_at_ms: T0 + 1,
            }),
            k,
        )
    }

    /// A storage that records each step it is asked to take.
    #[derive(Default)]
    struct Log {
        facts: HashMap<Id, Fact>,
        invalid: Vec<Id>,
        /// In arrival order (released in that order).
        pending: Vec<(Attestation, Vec<Id>)>,
        steps: Vec<String>,
    }

    impl Known for Log {
        fn lookup(&self, id: &Id) -> Lookup {
            match self.facts.get(id) {
                Some(f) => Lookup::Valid(*f),
                None if self.invalid.contains(id) => Lookup::Invalid,
                None => Lookup::Unknown,
            }
        }
    }

    impl Lifecycle for Log {
        fn hold(&mut self, _: Attestation, until_ms: u64, _: u64) {
            self.steps.push(format!("hold {}", until_ms - T0));
        }
        fn wait(&mut self, att: Attestation, missing: &[Id], since: Option<u64>, _: u64) {
            self.steps
                .push(format!("wait {} since {since:?}", missing.len()));
            self.pending.push((att, missing.to_vec()));
        }
        fn count(&mut self, att: &Attestation, fact: Option<Fact>, since: Option<u64>) {
            self.steps
                .push(format!("count {:?} since {since:?}", att.kind()));
            self.facts
                .insert(att.id, fact.expect("a valid attestation has a fact"));
        }
        fn reject(
            &mut self,
            id: &Id,
            att: Option<&Attestation>,
            _: &InvalidReason,
            since: Option<u64>,
            _: u64,
        ) {
            let what = att.map_or("undecoded".into(), |a| format!("{:?}", a.kind()));
            self.steps.push(format!("reject {what} since {since:?}"));
            self.invalid.push(*id);
        }
        fn released(&mut self, id: &Id, queue: &mut Vec<Queued>) {
            let (waiting, rest) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|(_, missing)| missing.contains(id));
            self.pending = rest;
            for (att, _) in waiting {
                self.steps.push(format!("release {:?}", att.kind()));
                queue.push((att, Some(T0)));
            }
        }
    }

    #[test]
    fn a_pending_chain_settles_when_its_root_arrives_or_fails() {
        let (s, a, b) = (
            Keypair::from_seed([1; 32]),
            Keypair::from_seed([2; 32]),
            Keypair::from_seed([3; 32]),
        );
        let o = offer(&s, T0);
        let ra = refer(&a, &o, None);
        let rb = refer(&b, &o, Some(&ra));
        let now = T0 + 10;
        let mut log = Log::default();
        let mut reports = Vec::new();
        // The grandchild first, then its parent: both wait for what they reference.
        take(&mut log, rb.id, Ok(rb.clone()), now, &mut reports);
        take(&mut log, ra.id, Ok(ra.clone()), now, &mut reports);
        assert_eq!(log.steps, ["wait 2 since None", "wait 1 since None"]);
        // The offer releases both (both wait for it); the last released is evaluated first,
        // so the parent counts before its child, each reported as it settles.
        log.steps.clear();
        take(&mut log, o.id, Ok(o.clone()), now, &mut reports);
        assert_eq!(
            log.steps,
            [
                "count Offer since None",
                "release Referral",
                "release Referral",
                "count Referral since Some(1767225600000)",
                "count Referral since Some(1767225600000)",
            ]
        );
        let outcomes: Vec<(Id, Outcome)> =
            reports.iter().map(|r| (r.id, r.outcome.clone())).collect();
        assert_eq!(
            outcomes[2..],
            [
                (o.id, Outcome::Valid),
                (ra.id, Outcome::Valid),
                (rb.id, Outcome::Valid)
            ]
        );

        // An offer that fails its stateless check takes what waits for it down with it.
        let o2 = offer(&s, T0 + 2);
        let r2 = refer(&a, &o2, None);
        let (mut log, mut reports) = (Log::default(), Vec::new());
        take(&mut log, r2.id, Ok(r2.clone()), now, &mut reports);
        let reason = InvalidReason::DependsOnInvalid(Id([0; 32]));
        take(&mut log, o2.id, Err(reason.clone()), now, &mut reports);
        assert_eq!(
            log.steps,
            [
                "wait 1 since None",
                "reject undecoded since None",
                "release Referral",
                "reject Referral since Some(1767225600000)",
            ]
        );
        assert_eq!(reports[1].outcome, Outcome::Invalid(reason));
        assert_eq!(
            reports[2].outcome,
            Outcome::Invalid(InvalidReason::DependsOnInvalid(o2.id))
        );
    }

    #[test]
    fn what_is_dated_ahead_is_held_then_released_into_stage_2() {
        let s = Keypair::from_seed([1; 32]);
        let o = offer(&s, T0 + 3_600_000);
        let mut log = Log::default();
        let mut reports = Vec::new();
        take(&mut log, o.id, Ok(o.clone()), T0, &mut reports);
        // Held until its date less the clock skew allowed.
        let until_ms = o.body.created_at_ms() - crate::limits::MAX_FUTURE_SKEW_MS;
        assert_eq!(log.steps, [format!("hold {}", until_ms - T0)]);
        assert_eq!(reports[0].outcome, Outcome::Held { until_ms });
        release(&mut log, o.clone(), until_ms, &mut reports);
        assert_eq!(log.steps[1], "count Offer since None");
        assert_eq!(reports[1].outcome, Outcome::Valid);
    }
}
