//! Work per account: one at a time, and a few an hour. Pure state machines (the caller passes
//! `now`), asked before a password is checked, so that a refused try costs no argon2 run.
//!
//! - [`Running`]: at most so many of an account's runs at once, the one home of "one at a
//!   time per account". Sign-ins hold a password check of an account to one at a time
//!   ([`CheckLimits`]): argon2id runs under the permits that every member's sign-in shares,
//!   and a right password is not slowed by the failure [`throttle`](crate::throttle), so
//!   without this a member (or anyone who knows her password) signing in from many
//!   connections at once could hold every permit, and others would be told the node is busy.
//!   One at a time also keeps parallel guesses on an account from all passing the throttle
//!   before the first failure is counted.
//! - [`Exports`]: an export seals a member's key at the export cost (argon2id, 256 MiB, three
//!   passes) under one of the same permits, so an account may have [`ExportLimits::at_once`]
//!   export running (the next is refused until it ends, whether it sealed a file or not), and
//!   [`ExportLimits::per_window`] exports that sealed a file within [`ExportLimits::window_ms`]
//!   (one that found the password wrong, or was refused before, does not count: the failure
//!   throttle slows those).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use passalong_protocol::PublicKey;

use crate::throttle::Verdict;

/// How many of an account's runs (of one kind) may go at once, and the wait a refusal asks
/// for (see the module docs).
#[derive(Debug)]
pub struct Running<K> {
    at_once: u32,
    retry_ms: u64,
    /// Runs going now, per account; an account with none is not kept.
    accounts: HashMap<K, u32>,
}

impl<K: Eq + Hash + Clone> Running<K> {
    /// At most `at_once` runs of an account at a time (at least one); a refusal asks to
    /// retry after `retry_ms` (at least 1 ms).
    pub fn new(at_once: u32, retry_ms: u64) -> Running<K> {
        Running {
            at_once: at_once.max(1),
            retry_ms: retry_ms.max(1),
            accounts: HashMap::new(),
        }
    }

    /// May a run of `who` start? [`Verdict::Go`] counts it as running until
    /// [`Running::end`] is called for it (exactly once).
    pub fn begin(&mut self, who: &K) -> Verdict {
        let n = self.accounts.entry(who.clone()).or_default();
        if *n >= self.at_once {
            return Verdict::Wait {
                retry_after_ms: self.retry_ms,
            };
        }
        *n += 1;
        Verdict::Go
    }

    /// A run of `who` that [`Running::begin`] let go ended.
    pub fn end(&mut self, who: &K) {
        if let Some(n) = self.accounts.get_mut(who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.accounts.remove(who);
            }
        }
    }

    /// Whether a run of `who` is going now.
    pub fn running_for(&self, who: &K) -> bool {
        self.accounts.get(who).is_some_and(|&n| n > 0)
    }

    /// Runs going now, of every account.
    pub fn running(&self) -> u32 {
        self.accounts.values().sum()
    }

    /// Accounts with a run going (the only ones kept).
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// No run going.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

/// The bound of the password checks of one account (a sign-in's, an export's), counted by
/// [`CheckLimits::running`] under the account's folded login, known or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckLimits {
    /// Password checks of one account at once.
    pub at_once: u32,
    /// The wait a refusal asks for (one check lasts a fraction of a second).
    pub retry_ms: u64,
}

impl Default for CheckLimits {
    /// One at a time; retry 1 s after a refusal.
    fn default() -> Self {
        CheckLimits {
            at_once: 1,
            retry_ms: 1_000,
        }
    }
}

impl CheckLimits {
    /// The password checks running, none yet, keyed by folded login.
    pub fn running(self) -> Running<String> {
        Running::new(self.at_once, self.retry_ms)
    }
}

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

/// Exports running and done, per account (see the module docs).
#[derive(Debug)]
pub struct Exports {
    limits: ExportLimits,
    running: Running<PublicKey>,
    /// When each export that sealed a file within the window ended, oldest first, per account.
    done: HashMap<PublicKey, VecDeque<u64>>,
}

impl Default for Exports {
    fn default() -> Self {
        Exports::new(ExportLimits::default())
    }
}

impl Exports {
    /// No export yet.
    pub fn new(limits: ExportLimits) -> Exports {
        Exports {
            limits,
            running: Running::new(limits.at_once, limits.running_retry_ms),
            done: HashMap::new(),
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
        self.done.retain(|_, done| {
            while done
                .front()
                .is_some_and(|&t| now_ms.saturating_sub(t) >= window_ms)
            {
                done.pop_front();
            }
            !done.is_empty()
        });
        if let wait @ Verdict::Wait { .. } = self.running.begin(who) {
            return wait;
        }
        let per_window = self.limits.per_window.max(1) as usize;
        if let Some(done) = self.done.get(who).filter(|d| d.len() >= per_window) {
            // The oldest that still counts leaves the window then.
            let oldest = done[done.len() - per_window];
            self.running.end(who);
            return Verdict::Wait {
                retry_after_ms: (oldest + window_ms).saturating_sub(now_ms).max(1),
            };
        }
        Verdict::Go
    }

    /// An export of `who` that [`Exports::begin`] let go ended at `now_ms`; `sealed`: it
    /// sealed a file (it counts in the window), else the password was wrong or it failed.
    pub fn end(&mut self, who: &PublicKey, now_ms: u64, sealed: bool) {
        self.running.end(who);
        if sealed {
            let done = self.done.entry(*who).or_default();
            done.push_back(now_ms);
            let keep = self.limits.per_window.max(1) as usize;
            while done.len() > keep {
                done.pop_front();
            }
        }
    }

    /// Whether an export of `who` is running now.
    pub fn running_for(&self, who: &PublicKey) -> bool {
        self.running.running_for(who)
    }

    /// Exports running now, of every account.
    pub fn running(&self) -> u32 {
        self.running.running()
    }

    /// Accounts remembered (running an export, or with exports in the window).
    pub fn len(&self) -> usize {
        self.done.len()
            + self
                .running
                .accounts
                .keys()
                .filter(|k| !self.done.contains_key(*k))
                .count()
    }

    /// No account remembered.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty() && self.running.is_empty()
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

    /// A sign-in's password check: one of an account's at a time, the next refused with
    /// a wait of 1 s (not queued); another account's goes; an ended one frees the account,
    /// which is then forgotten.
    #[test]
    fn one_password_check_at_a_time_per_account() {
        let limits = CheckLimits::default();
        assert_eq!((limits.at_once, limits.retry_ms), (1, 1_000), "limits.md");
        let mut checks = limits.running();
        let (anna, ben) = ("anna".to_string(), "ben".to_string());
        assert_eq!(checks.begin(&anna), Verdict::Go);
        for _ in 0..3 {
            assert_eq!(
                checks.begin(&anna),
                Verdict::Wait {
                    retry_after_ms: 1_000
                },
                "hers is under way"
            );
        }
        assert_eq!(checks.begin(&ben), Verdict::Go, "Ben's is his");
        assert_eq!((checks.running(), checks.len()), (2, 2));
        assert!(checks.running_for(&anna));
        checks.end(&anna);
        assert!(!checks.running_for(&anna));
        assert_eq!(checks.begin(&anna), Verdict::Go, "hers ended");
        checks.end(&anna);
        checks.end(&ben);
        assert!(checks.is_empty(), "nothing kept for accounts at rest");
        // An end too many frees nothing it should not.
        checks.end(&ben);
        assert_eq!(checks.running(), 0);
    }

    #[test]
    fn more_than_one_at_once_when_asked_and_never_none() {
        let mut two = Running::new(2, 5);
        assert_eq!(two.begin(&ANNA), Verdict::Go);
        assert_eq!(two.begin(&ANNA), Verdict::Go);
        assert_eq!(two.begin(&ANNA), Verdict::Wait { retry_after_ms: 5 });
        let mut zero = Running::new(0, 0);
        assert_eq!(zero.begin(&ANNA), Verdict::Go);
        assert_eq!(zero.begin(&ANNA), Verdict::Wait { retry_after_ms: 1 });
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
        assert!(e.running_for(&BEN));
        assert!(!e.done.contains_key(&ANNA));
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
