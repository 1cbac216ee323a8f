//! Sign-in sessions as a pure state machine: the time and the randomness come in as
//! arguments, so the lifecycle (start, idle expiry, absolute expiry, sign-out, eviction when
//! full, the periodic sweep) is tested without a clock or a browser.
//!
//! A session belongs to one identity and has a [`Role`]. The operator signs in with the API
//! token and acts as the node's own identity, whose key the node holds anyway. A hosted member
//! signs in with her password: the sign-in decrypts her key into her session ([`MemberKey`]),
//! never into the node's identities, so the key is in memory only while she is signed in, and
//! only her own sessions can sign with it. When the session ends (sign-out, expiry, the sweep,
//! [`Sessions::end_all`], eviction) the session's reference to the key goes; the key is wiped
//! when the last request using it finishes. Members' sessions are shorter than the operator's
//! ([`MemberLimits`]) because they hold a key in memory.
//!
//! How many sessions there may be is bounded ([`Limits`]): the operator's and the members'
//! have budgets of their own, and each member a cap of her own, so that a member signing in
//! again and again (nothing slows a right password) ends only her own sessions, never another
//! member's or the operator's.
//!
//! Sessions live in memory: a restart signs everyone out. The cookie carries a random 256-bit
//! id; each session has its own random CSRF token that every form repeats.

use std::collections::HashMap;
use std::sync::Arc;

use passalong_protocol::attestation::Body;
use passalong_protocol::{Attestation, Keypair, PublicKey};
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

/// Who signed a session in, which decides what it may reach and how long it lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The node's operator (the API token): acts as the node's own identity.
    Operator,
    /// A hosted member (her password): acts as herself only, with the key her sign-in opened.
    Member,
}

/// A member's key, decrypted at sign-in and held by her sessions only.
///
/// Not `Clone`, so that it exists once however many requests use it (they share it through
/// an `Arc`); its `Debug` shows the public key only. The key pair wraps ed25519-dalek's
/// `SigningKey`, which the workspace builds with `zeroize`: it is wiped when dropped.
pub struct MemberKey(Keypair);

impl MemberKey {
    /// Takes a member's key pair, as opened from her key file.
    pub fn new(keypair: Keypair) -> MemberKey {
        MemberKey(keypair)
    }

    /// Whose key it is.
    pub fn public(&self) -> PublicKey {
        self.0.public()
    }

    /// Signs `message` with her key (her request to join a community). There is no way to
    /// the key pair itself: a copy of it would outlive her sessions.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message)
    }

    /// Signs an attestation she authors.
    pub fn sign_attestation(&self, body: Body) -> Attestation {
        Attestation::sign(body, &self.0)
    }
}

impl std::fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemberKey({})", self.public())
    }
}

/// One signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    /// Who this session acts as.
    pub identity: PublicKey,
    /// Who signed it in.
    pub role: Role,
    /// A member's key (`None` for the operator, whose key the node holds).
    pub key: Option<Arc<MemberKey>>,
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

    /// A member's session that holds no key: she was removed from the community or left it,
    /// and may read her pages but sign nothing.
    pub fn read_only(&self) -> bool {
        self.role == Role::Member && self.key.is_none()
    }

    /// Whether `given` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        let mut g = [0u8; 32];
        hex::decode_to_slice(given.trim(), &mut g).is_ok()
            && g.iter().zip(&self.csrf).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    }
}

/// How long the operator's sessions last, and how many sessions there may be.
///
/// The operator's sessions and the members' have budgets of their own, so that no member's
/// sign-ins (which nothing slows while her password is right) can end the operator's, and each
/// member has a cap of her own within the members' budget, so that she can end no one's but
/// her own: a member's sign-in past her cap ends her least recently used session; one past the
/// members' budget (only many members together reach it) ends the least recently used
/// member's session; the operator's past hers ends her own least recently used.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// An operator's session unused this long ends.
    pub idle_ms: u64,
    /// An operator's session ends this long after it started, used or not.
    pub max_age_ms: u64,
    /// At most this many sessions of both roles together: [`Limits::operator_sessions`] of
    /// them the operator's, the rest (at least one) the members'.
    pub max_sessions: usize,
    /// The operator's sessions (her browsers), kept apart from the members': a member's
    /// sign-in never ends one.
    pub operator_sessions: usize,
    /// Sessions of any one member (her devices, read-only ones included).
    pub sessions_per_member: usize,
}

impl Limits {
    /// How many sessions the operator may have at once (at least one).
    pub fn operator_budget(&self) -> usize {
        self.operator_sessions.max(1)
    }

    /// How many sessions the members may have at once, all of them together (at least one):
    /// what [`Limits::max_sessions`] leaves beside the operator's.
    pub fn member_budget(&self) -> usize {
        self.max_sessions
            .saturating_sub(self.operator_budget())
            .max(1)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_ms: 12 * 3_600_000,
            max_age_ms: 7 * 86_400_000,
            max_sessions: 10_000,
            operator_sessions: 16,
            sessions_per_member: 8,
        }
    }
}

/// How long a member's sessions last: shorter than the operator's, since each holds her key.
#[derive(Clone, Copy, Debug)]
pub struct MemberLimits {
    /// A member's session unused this long ends.
    pub idle_ms: u64,
    /// A member's session ends this long after it started, used or not.
    pub max_age_ms: u64,
}

impl Default for MemberLimits {
    fn default() -> Self {
        MemberLimits {
            idle_ms: 2 * 3_600_000,
            max_age_ms: 24 * 3_600_000,
        }
    }
}

/// Every live session.
#[derive(Debug, Default)]
pub struct Sessions {
    limits: Limits,
    member: MemberLimits,
    live: HashMap<SessionId, Session>,
}

impl Sessions {
    /// No sessions yet; members' sessions get [`MemberLimits::default`].
    pub fn new(limits: Limits) -> Sessions {
        Sessions::with_member_limits(limits, MemberLimits::default())
    }

    /// No sessions yet, with members' lifetimes given too.
    pub fn with_member_limits(limits: Limits, member: MemberLimits) -> Sessions {
        Sessions {
            limits,
            member,
            live: HashMap::new(),
        }
    }

    /// Starts an operator's session acting as `identity` (the node's own).
    pub fn start(
        &mut self,
        identity: PublicKey,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> (SessionId, Session) {
        self.insert(identity, Role::Operator, None, now_ms, rng)
    }

    /// Starts a member's session that holds `key` and acts as its public key.
    pub fn start_member(
        &mut self,
        key: MemberKey,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> (SessionId, Session) {
        let identity = key.public();
        self.insert(identity, Role::Member, Some(Arc::new(key)), now_ms, rng)
    }

    /// Starts a read-only session of a member (removed, or gone of her own accord): it acts
    /// as `identity` and lasts as a member's does, but holds no key, so nothing can be signed
    /// through it ([`Session::read_only`]).
    pub fn start_read_only(
        &mut self,
        identity: PublicKey,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> (SessionId, Session) {
        self.insert(identity, Role::Member, None, now_ms, rng)
    }

    fn insert(
        &mut self,
        identity: PublicKey,
        role: Role,
        key: Option<Arc<MemberKey>>,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> (SessionId, Session) {
        self.sweep(now_ms);
        match role {
            // The operator's budget is hers alone: past it, her own oldest goes.
            Role::Operator => {
                self.make_room(self.limits.operator_budget(), |s| s.role == Role::Operator)
            }
            Role::Member => {
                // Her own cap first, so that signing in again and again ends only hers; then
                // the members' budget, which never reaches into the operator's.
                self.make_room(self.limits.sessions_per_member.max(1), |s| {
                    s.role == Role::Member && s.identity == identity
                });
                self.make_room(self.limits.member_budget(), |s| s.role == Role::Member);
            }
        }
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        let mut csrf = [0u8; 32];
        rng.fill_bytes(&mut csrf);
        let session = Session {
            identity,
            role,
            key,
            csrf,
            started_ms: now_ms,
            seen_ms: now_ms,
        };
        self.live.insert(SessionId(id), session.clone());
        (SessionId(id), session)
    }

    /// Ends the least recently used of the sessions `counted` picks until fewer than `budget`
    /// of them are left, room for one more.
    fn make_room(&mut self, budget: usize, counted: impl Fn(&Session) -> bool) {
        let mut picked: Vec<(u64, SessionId)> = self
            .live
            .iter()
            .filter(|(_, s)| counted(s))
            .map(|(id, s)| (s.seen_ms, *id))
            .collect();
        if picked.len() < budget {
            return;
        }
        let over = picked.len() + 1 - budget;
        picked.select_nth_unstable_by_key(over - 1, |(seen, id)| (*seen, id.0));
        for (_, id) in &picked[..over] {
            self.live.remove(id);
        }
    }

    /// The live session `id`, marked as used now; `None` if it never was or has ended.
    pub fn touch(&mut self, id: &SessionId, now_ms: u64) -> Option<Session> {
        let s = self.live.get(id)?;
        if self.expired(s, now_ms) {
            self.live.remove(id);
            return None;
        }
        let s = self.live.get_mut(id)?;
        s.seen_ms = s.seen_ms.max(now_ms);
        Some(s.clone())
    }

    /// Signs out.
    pub fn end(&mut self, id: &SessionId) {
        self.live.remove(id);
    }

    /// Ends every session of `identity` (a member removed, a key exported); how many ended.
    pub fn end_all(&mut self, identity: &PublicKey) -> usize {
        let before = self.live.len();
        self.live.retain(|_, s| s.identity != *identity);
        before - self.live.len()
    }

    /// Ends every session expired at `now_ms`, so that a member's key leaves memory without
    /// waiting for her next request: the ended sessions and whom they acted as, sorted.
    pub fn sweep(&mut self, now_ms: u64) -> Vec<(SessionId, PublicKey)> {
        let mut ended: Vec<(SessionId, PublicKey)> = self
            .live
            .iter()
            .filter(|(_, s)| self.expired(s, now_ms))
            .map(|(id, s)| (*id, s.identity))
            .collect();
        for (id, _) in &ended {
            self.live.remove(id);
        }
        ended.sort_by_key(|(id, identity)| (*identity, id.0));
        ended
    }

    /// The longest a session of `role` may last: what its cookie's `Max-Age` says, so that a
    /// browser forgets the cookie when the session ends anyway.
    pub fn max_age_ms(&self, role: Role) -> u64 {
        match role {
            Role::Operator => self.limits.max_age_ms,
            Role::Member => self.member.max_age_ms,
        }
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// No live session.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn expired(&self, s: &Session, now_ms: u64) -> bool {
        let (idle_ms, max_age_ms) = match s.role {
            Role::Operator => (self.limits.idle_ms, self.limits.max_age_ms),
            Role::Member => (self.member.idle_ms, self.member.max_age_ms),
        };
        now_ms.saturating_sub(s.seen_ms) >= idle_ms
            || now_ms.saturating_sub(s.started_ms) >= max_age_ms
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
            max_sessions: 5,
            operator_sessions: 2,
            sessions_per_member: 2,
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
    fn past_the_operators_budget_her_least_recently_used_session_ends() {
        let mut s = Sessions::new(limits());
        let mut r = rng();
        let (a, _) = s.start(ANNA, 0, &mut r);
        let (b, _) = s.start(ANNA, 1, &mut r);
        let (m, _) = s.start_member(member(9), 2, &mut r);
        assert!(s.touch(&a, 3).is_some()); // a is now the more recent
        let (c, _) = s.start(ANNA, 4, &mut r);
        assert_eq!(s.len(), 3);
        assert!(s.touch(&b, 5).is_none(), "b was least recently used");
        assert!(s.touch(&a, 5).is_some());
        assert!(s.touch(&c, 5).is_some());
        assert!(
            s.touch(&m, 5).is_some(),
            "the member's, older, is not the operator's to end"
        );
    }

    #[test]
    fn past_her_own_cap_a_members_least_recently_used_session_ends() {
        let mut s = Sessions::new(limits());
        let mut r = rng();
        let (op, _) = s.start(ANNA, 0, &mut r);
        let (ben, _) = s.start_member(member(10), 0, &mut r);
        let (a, _) = s.start_member(member(9), 1, &mut r);
        let (b, _) = s.start_read_only(member(9).public(), 2, &mut r);
        assert!(s.touch(&a, 3).is_some()); // a is now the more recent
        let (c, _) = s.start_member(member(9), 4, &mut r);
        assert!(s.touch(&b, 5).is_none(), "her least recently used");
        assert!(s.touch(&a, 5).is_some());
        assert!(s.touch(&c, 5).is_some());
        assert!(s.touch(&ben, 5).is_some(), "older, but not hers");
        assert!(s.touch(&op, 5).is_some(), "older, but not hers");
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn past_the_members_budget_the_least_recently_used_members_session_ends() {
        let mut s = Sessions::new(limits());
        let mut r = rng();
        let (op1, _) = s.start(ANNA, 0, &mut r);
        let (op2, _) = s.start(ANNA, 0, &mut r);
        let (m1, _) = s.start_member(member(9), 1, &mut r);
        let (m2, _) = s.start_member(member(10), 2, &mut r);
        let (m3, _) = s.start_member(member(11), 3, &mut r);
        assert!(s.touch(&m1, 4).is_some()); // m1 is now the most recent
        let (m4, _) = s.start_member(member(12), 5, &mut r);
        assert_eq!(s.len(), 5, "max_sessions in all");
        assert!(s.touch(&m2, 6).is_none(), "m2 was least recently used");
        for id in [op1, op2, m1, m3, m4] {
            assert!(
                s.touch(&id, 6).is_some(),
                "the operator's, older, are kept apart"
            );
        }
        // And the operator's own sign-ins do not reach into the members' budget either.
        let (op3, _) = s.start(ANNA, 7, &mut r);
        assert_eq!(s.len(), 5);
        assert!(s.touch(&op3, 8).is_some());
        for id in [m1, m3, m4] {
            assert!(s.touch(&id, 8).is_some());
        }
    }

    #[test]
    fn the_budgets_keep_the_total_bounded() {
        let l = Limits::default();
        assert_eq!(
            (
                l.operator_budget(),
                l.member_budget(),
                l.sessions_per_member
            ),
            (16, 9_984, 8)
        );
        let mut s = Sessions::new(Limits {
            max_sessions: 50,
            ..Limits::default()
        });
        let mut r = rng();
        for t in 0..2_000u64 {
            match t % 3 {
                0 => drop(s.start(ANNA, t, &mut r)),
                1 => drop(s.start_member(member((t % 40) as u8), t, &mut r)),
                _ => drop(s.start_read_only(PublicKey([(t % 7) as u8; 32]), t, &mut r)),
            }
            assert!(s.len() <= 50, "{} sessions at {t}", s.len());
        }
        // A degenerate configuration still bounds each budget by one.
        let tiny = Limits {
            max_sessions: 0,
            operator_sessions: 0,
            sessions_per_member: 0,
            ..Limits::default()
        };
        assert_eq!((tiny.operator_budget(), tiny.member_budget()), (1, 1));
    }

    fn member(seed: u8) -> MemberKey {
        MemberKey::new(Keypair::from_seed([seed; 32]))
    }

    /// A member who signs in again and again (her password is right: nothing slows her)
    /// pushes out no one but herself: the operator's session and another member's live on.
    #[test]
    fn a_member_signing_in_again_and_again_pushes_out_no_one_else() {
        let mut s = Sessions::new(Limits {
            max_sessions: 100,
            ..Limits::default()
        });
        let mut r = rng();
        let (op, _) = s.start(ANNA, 0, &mut r);
        let (ben, _) = s.start_member(member(10), 1, &mut r);
        for t in 2..1_000 {
            s.start_member(member(9), t, &mut r);
        }
        assert!(s.touch(&op, 1_000).is_some(), "the operator signed out");
        assert!(s.touch(&ben, 1_000).is_some(), "Ben signed out");
        assert!(s.len() <= 100);
    }

    fn key_of(s: &Session) -> Arc<MemberKey> {
        s.key.clone().expect("a member's session holds her key")
    }

    const HOUR_MS: u64 = 3_600_000;

    #[test]
    fn members_sessions_are_shorter_than_the_operators() {
        let mut s = Sessions::new(Limits::default());
        let mut r = rng();
        let (op, op_s) = s.start(ANNA, 0, &mut r);
        let (m, m_s) = s.start_member(member(9), 0, &mut r);
        assert_eq!((op_s.role, op_s.key.is_none()), (Role::Operator, true));
        assert_eq!(m_s.role, Role::Member);
        assert_eq!(m_s.identity, Keypair::from_seed([9; 32]).public());
        assert_eq!(key_of(&m_s).public(), m_s.identity);
        drop(m_s);
        // Member: idle 2 h. Operator: idle 12 h.
        assert!(s.touch(&m, 2 * HOUR_MS - 1).is_some());
        assert!(s.touch(&m, 4 * HOUR_MS - 1).is_none(), "idle 2 h");
        assert!(s.touch(&op, 4 * HOUR_MS).is_some());
        assert!(s.touch(&op, 16 * HOUR_MS - 1).is_some(), "idle 12 h");

        // Member: at most 24 h, however busy. Operator: 7 days.
        let mut s = Sessions::new(Limits::default());
        let (op, _) = s.start(ANNA, 0, &mut r);
        let (m, _) = s.start_member(member(9), 0, &mut r);
        let mut t = 0;
        while t + HOUR_MS < 24 * HOUR_MS {
            t += HOUR_MS;
            assert!(s.touch(&m, t).is_some(), "alive at {t}");
            assert!(s.touch(&op, t).is_some());
        }
        assert!(s.touch(&m, 24 * HOUR_MS).is_none(), "24 h at most");
        assert!(s.touch(&op, 24 * HOUR_MS).is_some(), "the operator stays");
    }

    #[test]
    fn each_role_has_its_own_maximum_age() {
        let s = Sessions::new(Limits::default());
        assert_eq!(s.max_age_ms(Role::Operator), 7 * 24 * HOUR_MS);
        assert_eq!(s.max_age_ms(Role::Member), 24 * HOUR_MS);
    }

    #[test]
    fn member_limits_are_set_apart_from_the_operators() {
        let mut s = Sessions::with_member_limits(
            limits(),
            MemberLimits {
                idle_ms: 10,
                max_age_ms: 50,
            },
        );
        let mut r = rng();
        let (op, _) = s.start(ANNA, 0, &mut r);
        let (m, _) = s.start_member(member(9), 0, &mut r);
        assert!(s.touch(&m, 9).is_some());
        assert!(s.touch(&op, 9).is_some());
        assert!(s.touch(&m, 19).is_none());
        assert!(s.touch(&op, 19).is_some());
    }

    #[test]
    fn the_sweep_ends_expired_sessions_and_drops_their_keys() {
        let mut s = Sessions::with_member_limits(
            limits(),
            MemberLimits {
                idle_ms: 10,
                max_age_ms: 50,
            },
        );
        let mut r = rng();
        let (op, _) = s.start(ANNA, 0, &mut r);
        let (m1, m1_s) = s.start_member(member(9), 0, &mut r);
        let (m2, m2_s) = s.start_member(member(10), 5, &mut r);
        let k1 = key_of(&m1_s);
        let k2 = key_of(&m2_s);
        drop((m1_s, m2_s));
        assert_eq!(Arc::strong_count(&k1), 2, "the session's and ours");
        assert!(s.sweep(9).is_empty());
        // At 12, m1 (seen at 0) idled out; m2 (seen at 5) and the operator have not.
        assert_eq!(s.sweep(12), vec![(m1, k1.public())]);
        assert_eq!(Arc::strong_count(&k1), 1, "the session's reference went");
        assert_eq!(Arc::strong_count(&k2), 2);
        assert!(s.touch(&m1, 12).is_none());
        // Nothing touched since: m2 and the operator go together, sorted by identity.
        let mut expected = vec![(op, ANNA), (m2, k2.public())];
        expected.sort_by_key(|(_, identity)| *identity);
        assert_eq!(s.sweep(200), expected);
        assert_eq!(Arc::strong_count(&k2), 1);
        assert!(s.is_empty());
        assert!(s.sweep(1_000).is_empty());
    }

    #[test]
    fn end_all_ends_every_device_of_a_member_and_drops_the_key() {
        let mut s = Sessions::new(Limits::default());
        let mut r = rng();
        let (_, a) = s.start_member(member(9), 0, &mut r);
        let (_, b) = s.start_member(member(9), 1, &mut r);
        let (other, _) = s.start_member(member(10), 1, &mut r);
        let (ka, kb) = (key_of(&a), key_of(&b));
        assert!(!Arc::ptr_eq(&ka, &kb), "two sign-ins, two decryptions");
        drop((a, b));
        assert_eq!(s.end_all(&ka.public()), 2);
        assert_eq!((Arc::strong_count(&ka), Arc::strong_count(&kb)), (1, 1));
        assert_eq!(s.end_all(&ka.public()), 0);
        assert!(s.touch(&other, 2).is_some());
    }

    #[test]
    fn a_read_only_session_is_a_members_without_a_key() {
        let mut s = Sessions::new(limits());
        let mut r = rng();
        let (id, started) = s.start_read_only(ANNA, 0, &mut r);
        assert_eq!(
            (started.identity, started.role, started.key.is_none()),
            (ANNA, Role::Member, true)
        );
        assert!(started.read_only());
        let (_, op) = s.start(BEN, 0, &mut r);
        assert!(
            !op.read_only(),
            "the operator's holds no key but signs with the node's"
        );
        let (_, member) = s.start_member(member(9), 0, &mut r);
        assert!(!member.read_only());
        // Removing her ends it with her other sessions.
        assert!(s.touch(&id, 20).is_some());
        assert_eq!(s.end_all(&ANNA), 1);
        assert!(s.touch(&id, 21).is_none());
    }

    #[test]
    fn a_key_lives_as_long_as_its_session_and_the_requests_using_it() {
        let mut s = Sessions::new(limits());
        let mut r = rng();
        let (id, started) = s.start_member(member(9), 0, &mut r);
        let weak = Arc::downgrade(&key_of(&started));
        drop(started);
        assert_eq!(weak.strong_count(), 1, "the session alone holds it");
        // A request holds it while it runs, then lets go.
        let during = s.touch(&id, 1).expect("live");
        assert_eq!(weak.strong_count(), 2);
        drop(during);
        s.end(&id);
        assert_eq!(weak.strong_count(), 0, "signed out: the key is gone");
        assert!(weak.upgrade().is_none());

        // Eviction drops the evicted session's key too.
        let (_, first) = s.start_member(member(9), 10, &mut r);
        let weak = Arc::downgrade(&key_of(&first));
        drop(first);
        for t in 11..13 {
            s.start_member(member(9), t, &mut r);
        }
        assert_eq!(s.len(), 2, "her cap");
        assert!(weak.upgrade().is_none(), "evicted: the key is gone");
    }

    #[test]
    fn a_member_key_never_prints_its_secret() {
        let k = member(9);
        let seed = hex::encode([9u8; 32]);
        let shown = format!("{k:?}");
        assert!(shown.contains(&k.public().to_hex()), "{shown}");
        assert!(!shown.contains(&seed[..16]), "{shown}");
        let mut s = Sessions::new(Limits::default());
        let (_, session) = s.start_member(k, 0, &mut rng());
        assert!(!format!("{session:?}").contains(&seed[..16]));
    }

    #[test]
    fn a_member_key_signs_as_her_and_only_as_her() {
        use passalong_protocol::attestation::Community;
        let k = member(9);
        let same = Keypair::from_seed([9; 32]);
        assert_eq!(k.sign(b"join"), same.sign(b"join"));
        let body = Body::Community(Community {
            connector: k.public(),
            name: "Riverside".into(),
            created_at_ms: 1,
        });
        let signed = k.sign_attestation(body.clone());
        assert_eq!(signed.body.author(), k.public());
        assert_eq!(signed.id, Attestation::sign(body, &same).id);
    }

    /// The key pair's secret is wiped on drop only because ed25519-dalek is built with its
    /// `zeroize` feature; this fails to compile if the workspace ever turns it off.
    #[test]
    fn the_signing_key_zeroizes_on_drop() {
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroized_on_drop::<ed25519_dalek::SigningKey>();
    }
}
