//! Sign-in slowing: after a few wrong passwords an account, and an address, must wait before
//! the next try, doubling with each failure. A pure state machine (the caller passes `now`),
//! asked before any password is checked, so that a waiting try costs no argon2 run.
//!
//! - Per account (its folded login, known or not): [`Limits::account_free`] failures, then
//!   waits of 1 s, 2 s, 4 s … up to [`Limits::account_cap_ms`]. So that anyone cannot lock a
//!   member out by failing on purpose, the account's wait holds only for addresses that failed
//!   on it within [`Limits::suspect_ms`]; others may try, unless the account has had more than
//!   [`Limits::account_global_after`] failures, when every address is held to one try per
//!   [`Limits::account_global_ms`].
//! - Per address (IPv4 /32, IPv6 /64): [`Limits::ip_free`] failures, then doubling waits up to
//!   [`Limits::ip_cap_ms`].
//! - A success clears the account's failures. Failures are forgotten after
//!   [`Limits::forget_ms`] of quiet; each table holds at most [`Limits::max_entries`], the
//!   quietest dropped first.

use std::collections::HashMap;
use std::net::IpAddr;

/// The bounds of [`Throttle`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures on an account before it waits.
    pub account_free: u32,
    /// The longest wait of an account.
    pub account_cap_ms: u64,
    /// How long an address that failed on an account stays held by the account's wait.
    pub suspect_ms: u64,
    /// Failures on an account past which every address is slowed.
    pub account_global_after: u32,
    /// The wait every address then keeps between tries on that account.
    pub account_global_ms: u64,
    /// Failures from an address before it waits.
    pub ip_free: u32,
    /// The longest wait of an address.
    pub ip_cap_ms: u64,
    /// Quiet after which failures are forgotten.
    pub forget_ms: u64,
    /// Entries per table.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            account_free: 5,
            account_cap_ms: 15 * 60_000,
            suspect_ms: 60 * 60_000,
            account_global_after: 50,
            account_global_ms: 10_000,
            ip_free: 20,
            ip_cap_ms: 60 * 60_000,
            forget_ms: 24 * 60 * 60_000,
            max_entries: 100_000,
        }
    }
}

/// May a sign-in be tried now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the password.
    Go,
    /// Refuse without checking it; the client may try again after this long.
    Wait {
        /// Milliseconds until a try is allowed.
        retry_after_ms: u64,
    },
}

/// An address as the throttle counts it: IPv4 whole, IPv6 by its /64 (one host's share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Addr(u128);

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(v4) => Addr(u128::from(v4.to_bits())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Addr(u128::from(v4.to_bits())),
                // The /64, with a bit set that no IPv4 address has.
                None => Addr((v6.to_bits() & !((1u128 << 64) - 1)) | (1 << 32)),
            },
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Failures {
    count: u32,
    last_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct Account {
    failures: Failures,
    /// Addresses that failed on the account, with their last failure.
    suspects: Vec<(Addr, u64)>,
    /// The last try on the account from any address (for the global slowing).
    last_try_ms: u64,
}

/// Addresses remembered per account (the oldest forgotten first).
const SUSPECTS: usize = 16;

/// Sign-in slowing (see the module docs).
#[derive(Debug, Default)]
pub struct Throttle {
    limits: Limits,
    accounts: HashMap<String, Account>,
    addrs: HashMap<Addr, Failures>,
}

/// How long after `f`'s last failure a try is allowed: none for the first `free`, then 1 s
/// doubling, up to `cap_ms`.
fn wait_after(f: &Failures, free: u32, cap_ms: u64, now_ms: u64) -> u64 {
    if f.count < free {
        return 0;
    }
    let doublings = (f.count - free).min(40);
    let wait = 1000u64.saturating_mul(1 << doublings).min(cap_ms);
    (f.last_ms + wait).saturating_sub(now_ms)
}

impl Throttle {
    /// A throttle with these bounds.
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            limits,
            ..Throttle::default()
        }
    }

    /// Whether `account` may be tried from `ip` now.
    pub fn check(&mut self, account: &str, ip: IpAddr, now_ms: u64) -> Verdict {
        let l = self.limits;
        let addr = Addr::from(ip);
        self.forget_quiet(account, addr, now_ms);
        let mut wait = self
            .addrs
            .get(&addr)
            .map_or(0, |f| wait_after(f, l.ip_free, l.ip_cap_ms, now_ms));
        if let Some(a) = self.accounts.get(account) {
            let suspect = a
                .suspects
                .iter()
                .any(|(s, at)| *s == addr && now_ms.saturating_sub(*at) < l.suspect_ms);
            if suspect {
                wait = wait.max(wait_after(
                    &a.failures,
                    l.account_free,
                    l.account_cap_ms,
                    now_ms,
                ));
            }
            if a.failures.count > l.account_global_after {
                wait = wait.max((a.last_try_ms + l.account_global_ms).saturating_sub(now_ms));
            }
        }
        if wait > 0 {
            return Verdict::Wait {
                retry_after_ms: wait,
            };
        }
        if let Some(a) = self.accounts.get_mut(account) {
            a.last_try_ms = now_ms;
        }
        Verdict::Go
    }

    /// A wrong password for `account` from `ip`.
    pub fn failed(&mut self, account: &str, ip: IpAddr, now_ms: u64) {
        let addr = Addr::from(ip);
        self.make_room(now_ms);
        let f = self.addrs.entry(addr).or_default();
        f.count = f.count.saturating_add(1);
        f.last_ms = now_ms;
        let a = self.accounts.entry(account.to_owned()).or_default();
        a.failures.count = a.failures.count.saturating_add(1);
        a.failures.last_ms = now_ms;
        a.last_try_ms = now_ms;
        a.suspects.retain(|(s, _)| *s != addr);
        if a.suspects.len() == SUSPECTS {
            a.suspects.remove(0);
        }
        a.suspects.push((addr, now_ms));
    }

    /// The right password for `account` from `ip`: the account's failures are cleared (the
    /// address's stay: it may have tried other accounts).
    pub fn succeeded(&mut self, account: &str, _ip: IpAddr, _now_ms: u64) {
        self.accounts.remove(account);
    }

    /// Entries held (accounts, addresses).
    pub fn len(&self) -> (usize, usize) {
        (self.accounts.len(), self.addrs.len())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.addrs.is_empty()
    }

    fn forget_quiet(&mut self, account: &str, addr: Addr, now_ms: u64) {
        let forget = self.limits.forget_ms;
        if self
            .accounts
            .get(account)
            .is_some_and(|a| now_ms.saturating_sub(a.failures.last_ms) >= forget)
        {
            self.accounts.remove(account);
        }
        if self
            .addrs
            .get(&addr)
            .is_some_and(|f| now_ms.saturating_sub(f.last_ms) >= forget)
        {
            self.addrs.remove(&addr);
        }
    }

    /// Before adding: if a table is full, drop what is forgotten, then the quietest tenth.
    fn make_room(&mut self, now_ms: u64) {
        let (max, forget) = (self.limits.max_entries.max(1), self.limits.forget_ms);
        if self.accounts.len() >= max {
            self.accounts
                .retain(|_, a| now_ms.saturating_sub(a.failures.last_ms) < forget);
            if self.accounts.len() >= max {
                let cut = quietest(self.accounts.values().map(|a| a.failures.last_ms), max);
                self.accounts.retain(|_, a| a.failures.last_ms > cut);
            }
        }
        if self.addrs.len() >= max {
            self.addrs
                .retain(|_, f| now_ms.saturating_sub(f.last_ms) < forget);
            if self.addrs.len() >= max {
                let cut = quietest(self.addrs.values().map(|f| f.last_ms), max);
                self.addrs.retain(|_, f| f.last_ms > cut);
            }
        }
    }
}

/// The time at or before which the quietest tenth (at least one) of `times` falls.
fn quietest(times: impl Iterator<Item = u64>, max: usize) -> u64 {
    let mut v: Vec<u64> = times.collect();
    let k = (max / 10).max(1).min(v.len()) - 1;
    *v.select_nth_unstable(k).1
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    fn wait(v: Verdict) -> u64 {
        match v {
            Verdict::Go => 0,
            Verdict::Wait { retry_after_ms } => retry_after_ms,
        }
    }

    /// An attacker guessing one member's password from one address: five free tries, then
    /// waits doubling to the cap; the member, elsewhere, still signs in.
    #[test]
    fn guesses_on_an_account_slow_down_only_where_they_come_from() {
        let mut t = Throttle::new(Limits::default());
        let mut now = 1_000_000;
        for _ in 0..5 {
            assert_eq!(t.check("anna", A, now), Verdict::Go);
            t.failed("anna", A, now);
        }
        assert_eq!(wait(t.check("anna", A, now)), 1_000);
        assert_eq!(t.check("anna", B, now), Verdict::Go, "the member elsewhere");
        let mut waits = Vec::new();
        for _ in 0..14 {
            now += wait(t.check("anna", A, now));
            assert_eq!(t.check("anna", A, now), Verdict::Go);
            t.failed("anna", A, now);
            waits.push(wait(t.check("anna", A, now)));
        }
        assert_eq!(&waits[..4], &[2_000, 4_000, 8_000, 16_000]);
        assert_eq!(*waits.last().unwrap(), 15 * 60_000, "capped");
        // The member signs in from B: the account's failures are cleared.
        t.succeeded("anna", B, now);
        assert_eq!(
            wait(t.check("anna", A, now)),
            0,
            "A's own count is under its 20"
        );
    }

    #[test]
    fn one_address_trying_many_accounts_is_slowed() {
        let mut t = Throttle::new(Limits::default());
        let now = 5_000;
        for i in 0..20 {
            let who = format!("user{i}");
            assert_eq!(t.check(&who, A, now), Verdict::Go);
            t.failed(&who, A, now);
        }
        assert_eq!(wait(t.check("someone-else", A, now)), 1_000);
        assert_eq!(t.check("someone-else", B, now), Verdict::Go);
    }

    /// Failures spread over many addresses (a botnet): past 50, every address keeps 10 s
    /// between tries on that account.
    #[test]
    fn many_addresses_on_one_account_are_slowed_together() {
        let mut t = Throttle::new(Limits::default());
        let mut now = 0;
        for i in 0..51u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i));
            now += 1;
            assert_eq!(t.check("anna", ip, now), Verdict::Go, "try {i}");
            t.failed("anna", ip, now);
        }
        let fresh = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
        assert_eq!(wait(t.check("anna", fresh, now)), 10_000);
        now += 10_000;
        assert_eq!(t.check("anna", fresh, now), Verdict::Go);
        assert_eq!(wait(t.check("anna", B, now + 1)), 9_999);
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_day_and_the_tables_stay_bounded() {
        let limits = Limits {
            max_entries: 100,
            ..Limits::default()
        };
        let mut t = Throttle::new(limits);
        for _ in 0..30 {
            t.failed("anna", A, 0);
        }
        assert!(wait(t.check("anna", A, 1)) > 0);
        assert_eq!(t.check("anna", A, limits.forget_ms), Verdict::Go);
        assert!(t.is_empty());
        for i in 0..1_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(i));
            t.failed(&format!("u{i}"), ip, u64::from(i));
            let (a, n) = t.len();
            assert!(a <= 100 && n <= 100, "{a} {n}");
        }
        // The latest stay.
        assert!(wait(t.check("x", IpAddr::V4(Ipv4Addr::from(999u32)), 999)) == 0);
        assert!(t.accounts.contains_key("u999"));
    }

    #[test]
    fn ipv6_is_counted_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Addr::from(a), Addr::from(b));
        assert_ne!(Addr::from(a), Addr::from(c));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(Addr::from(mapped), Addr::from(A));
        assert_ne!(
            Addr::from(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            Addr::from(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        );
    }
}
