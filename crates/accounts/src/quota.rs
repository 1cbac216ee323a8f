//! Key exports per account: one at a time, and a few an hour. A pure state machine (the caller
//! passes `now`), asked before an export checks the password, so that a refused one costs no
//! argon2 run.
//!
//! An export seals a member's key at the export cost (argon2id, 256 MiB, three passes) under
//! one of the argon2 permits that sign-ins share, and a right password is not slowed by the
//! failure [`throttle`](crate::throttle): without this, a member exporting again and again,
//! or many times at once, could hold the permits so that others' sign-ins are told the node is
//! busy. So an account may have [`ExportLimits::at_once`] export running (the next is refused
//! until it ends, whether it sealed a file or not), and [`ExportLimits::per_window`] exports
//! that sealed a file within [`ExportLimits::window_ms`] (one that found the password wrong,
//! or was refused before, does not count: the failure throttle slows those).

use std::collections::{HashMap, VecDeque};

use passalong_protocol::PublicKey;

use crate::throttle::Verdict;

/// The bounds of [`Exports`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    /// Exports of one account running at once.
    pub at_once: u32,
    /// Exports of one account that sealed a file within [`ExportLimits::window_ms`].
    pub per_window: u32,
    /// The window [`ExportLimits::per_window`] counts in.
    pub window_ms: u64,
    /// The wait a refusal asks for while an export of the account runs (about as long as
    /// one lasts at the export cost).
    pub running_retry_ms: u64,
}

impl Default for ExportLimits {
    /// One at a time, five an hour; retry 2 s after a refusal while one runs.
    fn default() -> Self {
        ExportLimits {
            at_once: 1,
            per_window: 5,
            window_ms: 60 * 60_000,
            running_retry_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Account {
    /// Exports running now.
    running: u32,
    /// When each export that sealed a file within the window ended, oldest first.
    done: VecDeque<u64>,
}

/// Exports running and done, per account (see the module docs).
#[derive(Debug, Default)]
pub struct Exports {
    limits: ExportLimits,
    accounts: HashMap<PublicKey, Account>,
}

impl Exports {
    /// No export yet.
    pub fn new(limits: ExportLimits) -> Exports {
        Exports {
            limits,
            accounts: HashMap::new(),
        }
    }

    /// The limits it keeps.
    pub fn limits(&self) -> ExportLimits {
        self.limits
    }

    /// May `who` start an export at `now_ms`? [`Verdict::Go`] counts it as running until
    /// [`Exports::end`] is called for it (exactly once).
    pub fn begin(&mut self, who: &PublicKey, now_ms: u64) -> Verdict {
        let window_ms = self.limits.window_ms;
        // Forget what the window let go of, and accounts with nothing left to remember.
        self.accounts.retain(|_, a| {
            while a
                .done
                .front()
                .is_some_and(|&t| now_ms.saturating_sub(t) >= window_ms)
            {
                a.done.pop_front();
            }
            a.running > 0 || !a.done.is_empty()
        });
        let a = self.accounts.entry(*who).or_default();
        if a.running >= self.limits.at_once.max(1) {
            return Verdict::Wait {
                retry_after_ms: self.limits.running_retry_ms.max(1),
            };
        }
        let per_window = self.limits.per_window.max(1) as usize;
        if a.done.len() >= per_window {
            // The oldest that still counts leaves the window then.
            let oldest = a.done[a.done.len() - per_window];
            return Verdict::Wait {
                retry_after_ms: (oldest + window_ms).saturating_sub(now_ms).max(1),
            };
        }
        a.running += 1;
        Verdict::Go
    }

    /// An export of `who` that [`Exports::begin`] let go ended at `now_ms`; `sealed`: it
    /// sealed a file (it counts in the window), else the password was wrong or it failed.
    pub fn end(&mut self, who: &PublicKey, now_ms: u64, sealed: bool) {
        let a = self.accounts.entry(*who).or_default();
        a.running = a.running.saturating_sub(1);
        if sealed {
            a.done.push_back(now_ms);
            let keep = self.limits.per_window.max(1) as usize;
            while a.done.len() > keep {
                a.done.pop_front();
            }
        }
    }

    /// Whether an export of `who` is running now.
    pub fn running_for(&self, who: &PublicKey) -> bool {
        self.accounts.get(who).is_some_and(|a| a.running > 0)
    }

    /// Exports running now, of every account.
    pub fn running(&self) -> u32 {
        self.accounts.values().map(|a| a.running).sum()
    }

    /// Accounts remembered (running an export, or with exports in the window).
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// No account remembered.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANNA: PublicKey = PublicKey([1; 32]);
    const BEN: PublicKey = PublicKey([2; 32]);
    const HOUR: u64 = 3_600_000;

    fn wait(v: Verdict) -> u64 {
        match v {
            Verdict::Wait { retry_after_ms } => retry_after_ms,
            Verdict::Go => 0,
        }
    }

    #[test]
    fn one_at_a_time_per_account() {
        let mut e = Exports::new(ExportLimits::default());
        assert_eq!(e.begin(&ANNA, 0), Verdict::Go);
        assert_eq!(wait(e.begin(&ANNA, 10)), 2_000, "hers runs");
        assert_eq!(e.begin(&BEN, 10), Verdict::Go, "Ben's is his");
        assert_eq!(e.running(), 2);
        assert!(e.running_for(&ANNA) && !e.running_for(&PublicKey([3; 32])));
        e.end(&ANNA, 20, true);
        assert_eq!(e.begin(&ANNA, 30), Verdict::Go, "hers ended");
        // One that did not seal (a wrong password) ends it too.
        e.end(&ANNA, 40, false);
        e.end(&BEN, 40, false);
        assert_eq!(e.running(), 0);
    }

    #[test]
    fn a_few_sealed_an_hour_then_wait_for_the_oldest_to_leave_the_window() {
        let mut e = Exports::new(ExportLimits::default());
        for t in 0..5 {
            assert_eq!(e.begin(&ANNA, t * 1_000), Verdict::Go, "export {t}");
            e.end(&ANNA, t * 1_000 + 500, true);
        }
        // Sealed at 500, 1500, …, 4500: the sixth waits until the first is an hour old.
        assert_eq!(wait(e.begin(&ANNA, 10_000)), HOUR + 500 - 10_000);
        assert_eq!(wait(e.begin(&ANNA, HOUR + 499)), 1);
        assert_eq!(e.begin(&ANNA, HOUR + 500), Verdict::Go);
        e.end(&ANNA, HOUR + 600, true);
        assert_eq!(
            wait(e.begin(&ANNA, HOUR + 700)),
            1_500 + HOUR - (HOUR + 700)
        );
        assert_eq!(e.begin(&BEN, HOUR + 700), Verdict::Go, "Ben's are his");
    }

    #[test]
    fn exports_that_sealed_nothing_do_not_count() {
        let mut e = Exports::new(ExportLimits::default());
        for t in 0..100 {
            assert_eq!(e.begin(&ANNA, t), Verdict::Go);
            e.end(&ANNA, t, false);
        }
        for t in 100..105 {
            assert_eq!(e.begin(&ANNA, t), Verdict::Go);
            e.end(&ANNA, t, true);
        }
        assert!(wait(e.begin(&ANNA, 200)) > 0);
    }

    #[test]
    fn accounts_are_forgotten_once_their_window_is_empty() {
        let mut e = Exports::new(ExportLimits::default());
        assert_eq!(e.begin(&ANNA, 0), Verdict::Go);
        e.end(&ANNA, 0, true);
        assert_eq!(e.begin(&BEN, 0), Verdict::Go);
        e.end(&BEN, 0, false);
        assert_eq!(e.begin(&BEN, 1), Verdict::Go);
        assert_eq!(e.len(), 2);
        // An hour on, Anna's export left the window; Ben's still runs.
        e.begin(&PublicKey([3; 32]), HOUR);
        assert_eq!(e.len(), 2, "Ben's (running) and the newcomer's");
        assert!(e.accounts.contains_key(&BEN));
        assert!(!e.accounts.contains_key(&ANNA));
        assert!(!e.is_empty());
    }

    #[test]
    fn limits_below_one_still_let_one_export_through() {
        let mut e = Exports::new(ExportLimits {
            at_once: 0,
            per_window: 0,
            window_ms: HOUR,
            running_retry_ms: 0,
        });
        assert_eq!(e.begin(&ANNA, 0), Verdict::Go);
        assert_eq!(wait(e.begin(&ANNA, 0)), 1);
        e.end(&ANNA, 0, true);
        assert_eq!(wait(e.begin(&ANNA, 1)), HOUR - 1);
        assert_eq!(e.limits().per_window, 0);
    }
}
