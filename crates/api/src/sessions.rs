//! The sweep of expired sign-in sessions: a session ends when it idles out or reaches its
//! maximum age, but [`Sessions`] notices only when it is next used. A member's session holds
//! her key, which must leave memory when the session ends, not at her next request, so the
//! daemon sweeps every [`SWEEP_EVERY`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use passalong_accounts::Sessions;

use crate::writer::now_ms;

/// How often the daemon sweeps: a member's key outlives her session by at most this.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Ends the expired sessions of `sessions` every `every`, for good (abort the task to stop).
pub async fn sweep_every(sessions: Arc<Mutex<Sessions>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ended = sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sweep(now_ms());
        if !ended.is_empty() {
            tracing::info!(ended = ended.len(), "expired sign-in sessions ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use passalong_accounts::session::{Limits, MemberLimits};
    use passalong_accounts::MemberKey;
    use passalong_protocol::Keypair;
    use rand_core::OsRng;

    use super::*;

    /// The task, not only `Sessions::sweep`: a member's key leaves memory without any
    /// request once her session expires.
    #[tokio::test]
    async fn the_sweep_drops_an_expired_members_key() {
        let sessions = Arc::new(Mutex::new(Sessions::with_member_limits(
            Limits::default(),
            MemberLimits {
                idle_ms: 50,
                max_age_ms: 1_000,
            },
        )));
        let (_, session) = sessions.lock().unwrap().start_member(
            MemberKey::new(Keypair::from_seed([3; 32])),
            now_ms(),
            &mut OsRng,
        );
        let key = Arc::downgrade(session.key.as_ref().expect("her key"));
        drop(session);
        let task = tokio::spawn(sweep_every(sessions.clone(), Duration::from_millis(20)));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while key.upgrade().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the key is still in memory"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(sessions.lock().unwrap().is_empty());
        task.abort();
    }
}
