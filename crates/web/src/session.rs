//! Sign-in sessions as a pure state machine: the time and the randomness come in as
//! arguments, so the lifecycle (start, idle expiry, absolute expiry, sign-out, eviction when
//! full) is tested without a clock or a browser.
//!
//! A session belongs to one identity (a public key the node holds a key pair for). A personal
//! node's only identity signs in with the API token; a community node will sign its members in
//! with their passwords into sessions of their own keys, and every page acts as the session's
//! identity only.
//!
//! Sessions live in memory: a restart signs everyone out. The cookie carries a random 256-bit
//! id; each session has its own random CSRF token that every form repeats.

use std::collections::HashMap;

use passalong_protocol::PublicKey;
use rand_core::RngCore;

/// A session's cookie value: 32 random bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// Lower-case hex, as in the cookie.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the cookie value; anything but 64 hex digits is `None`.
    pub fn from_hex(s: &str) -> Option<SessionId> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(SessionId(out))
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a live session id (logs would leak a sign-in).
        f.write_str("SessionId(…)")
    }
}

/// One signed-in browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Who this session acts as.
    pub identity: PublicKey,
    /// The token every form of this session carries.
    pub csrf: [u8; 32],
    /// When it started.
    pub started_ms: u64,
    /// When it was last used.
    pub seen_ms: u64,
}

impl Session {
    /// The CSRF token as the forms carry it.
    pub fn csrf_hex(&self) -> String {
        hex::encode(self.csrf)
    }

    /// Whether `given` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        let mut g = [0u8; 32];
        hex::decode_to_slice(given.trim(), &mut g).is_ok()
            && g.iter().zip(&self.csrf).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    }
}

/// How long sessions last and how many there may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A session unused this long ends.
    pub idle_ms: u64,
    /// A session ends this long after it started, used or not.
    pub max_age_ms: u64,
    /// At most this many sessions; starting one more ends the least recently used.
    pub max_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_ms: 12 * 3_600_000,
            max_age_ms: 7 * 86_400_000,
            max_sessions: 10_000,
        }
    }
}

/// Every live session.
#[derive(Debug, Default)]
pub struct Sessions {
    limits: Limits,
    live: HashMap<SessionId, Session>,
}

impl Sessions {
    /// No sessions yet.
    pub fn new(limits: Limits) -> Sessions {
        Sessions {
            limits,
            live: HashMap::new(),
        }
    }

    /// Starts a session for `identity`.
    pub fn start(
        &mut self,
        identity: PublicKey,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> (SessionId, Session) {
        self.expire(now_ms);
        while self.live.len() >= self.limits.max_sessions.max(1) {
            let Some(oldest) = self
                .live
                .iter()
                .min_by_key(|(_, s)| s.seen_ms)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.live.remove(&oldest);
        }
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        let mut csrf = [0u8; 32];
        rng.fill_bytes(&mut csrf);
        let session = Session {
            identity,
            csrf,
            started_ms: now_ms,
            seen_ms: now_ms,
        };
        self.live.insert(SessionId(id), session.clone());
        (SessionId(id), session)
    }

    /// The live session `id`, marked as used now; `None` if it never was or has ended.
    pub fn touch(&mut self, id: &SessionId, now_ms: u64) -> Option<Session> {
        let limits = self.limits;
        let s = self.live.get_mut(id)?;
        let idle = now_ms.saturating_sub(s.seen_ms) >= limits.idle_ms;
        let old = now_ms.saturating_sub(s.started_ms) >= limits.max_age_ms;
        if idle || old {
            self.live.remove(id);
            return None;
        }
        s.seen_ms = s.seen_ms.max(now_ms);
        Some(s.clone())
    }

    /// Signs out.
    pub fn end(&mut self, id: &SessionId) {
        self.live.remove(id);
    }

    /// Ends every session of `identity` (a member removed, a key exported).
    pub fn end_all(&mut self, identity: &PublicKey) {
        self.live.retain(|_, s| s.identity != *identity);
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// No live session.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn expire(&mut self, now_ms: u64) {
        let l = self.limits;
        self.live.retain(|_, s| {
            now_ms.saturating_sub(s.seen_ms) < l.idle_ms
                && now_ms.saturating_sub(s.started_ms) < l.max_age_ms
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(7)
    }

    const ANNA: PublicKey = PublicKey([1; 32]);
    const BEN: PublicKey = PublicKey([2; 32]);

    fn limits() -> Limits {
        Limits {
            idle_ms: 100,
            max_age_ms: 1_000,
            max_sessions: 3,
        }
    }

    #[test]
    fn a_session_acts_as_its_identity_until_it_idles_out() {
        let mut s = Sessions::new(limits());
        let mut r = rng();
        let (id, started) = s.start(ANNA, 0, &mut r);
        assert_eq!(s.touch(&id, 50).map(|x| x.identity), Some(ANNA));
        // Used at 50: still alive at 149, gone at 150.
        assert!(s.touch(&id, 149).is_some());
        assert!(s.touch(&id, 249).is_none());
        assert!(s.is_empty());
        assert!(started.csrf_matches(&started.csrf_hex()));
    }

    #[test]
    fn a_used_session_still_ends_at_its_maximum_age() {
        let mut s = Sessions::new(limits());
        let mut r = rng();
        let (id, _) = s.start(ANNA, 0, &mut r);
        let mut t = 0;
        while t < 990 {
            t += 90;
            if t >= 1_000 {
                break;
            }
            assert!(s.touch(&id, t).is_some(), "alive at {t}");
        }
        assert!(s.touch(&id, 1_000).is_none());
    }

    #[test]
    fn ids_and_csrf_tokens_are_random_and_distinct() {
        let mut s = Sessions::new(Limits::default());
        let mut r = rng();
        let (a, sa) = s.start(ANNA, 0, &mut r);
        let (b, sb) = s.start(ANNA, 0, &mut r);
        assert_ne!(a, b);
        assert_ne!(sa.csrf, sb.csrf);
        assert_ne!(a.0, sa.csrf);
        assert!(!sa.csrf_matches(&sb.csrf_hex()));
        assert!(!sa.csrf_matches(""));
        assert!(!sa.csrf_matches("zz"));
        assert_eq!(SessionId::from_hex(&a.to_hex()), Some(a));
        assert_eq!(SessionId::from_hex("nothex"), None);
        assert!(!format!("{a:?}").contains(&a.to_hex()[..8]));
    }

    #[test]
    fn sign_out_and_end_all_of_one_identity() {
        let mut s = Sessions::new(Limits::default());
        let mut r = rng();
        let (a1, _) = s.start(ANNA, 0, &mut r);
        let (a2, _) = s.start(ANNA, 0, &mut r);
        let (b, _) = s.start(BEN, 0, &mut r);
        s.end(&a1);
        assert!(s.touch(&a1, 1).is_none());
        assert!(s.touch(&a2, 1).is_some());
        s.end_all(&ANNA);
        assert!(s.touch(&a2, 2).is_none());
        assert_eq!(s.touch(&b, 2).map(|x| x.identity), Some(BEN));
    }

    #[test]
    fn when_full_the_least_recently_used_session_ends() {
        let mut s = Sessions::new(limits());
        let mut r = rng();
        let (a, _) = s.start(ANNA, 0, &mut r);
        let (b, _) = s.start(BEN, 1, &mut r);
        let (c, _) = s.start(BEN, 2, &mut r);
        assert!(s.touch(&a, 3).is_some()); // a is now the most recent
        let (d, _) = s.start(ANNA, 4, &mut r);
        assert_eq!(s.len(), 3);
        assert!(s.touch(&b, 5).is_none(), "b was least recently used");
        assert!(s.touch(&a, 5).is_some());
        assert!(s.touch(&c, 5).is_some());
        assert!(s.touch(&d, 5).is_some());
    }
}
