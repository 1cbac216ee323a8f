//! A hosted member's own account through the API: `POST /v1/account/export-key` gives her key
//! as a password-protected file to take to a node of her own (issue 16, "leaving with
//! everything").
//!
//! The file is a [`KeyFile`] sealed at the export cost ([`AppState::export_kdf`],
//! `KdfParams::EXPORT` unless a test lowers it) under the export password she gives, or her
//! password, and it carries what her new node needs to go on where she was
//! ([`passalong_accounts::Carried`]): the markets she has ledger lines in (and the
//! community's, where her Membership is), her community and the community node's relay
//! addresses while she is a member, and her contacts. Her password is asked again and checked
//! as a sign-in is (throttled, one argon2 permit), so a session alone does not give her key
//! away; and since a right password is not slowed, her exports are held per account (one at a
//! time, a few an hour: [`passalong_accounts::quota`]) so that they cannot keep the permits
//! from others' sign-ins. The answer is `Cache-Control: no-store`. A read-only member
//! (removed, or gone of her own accord) may export too: that is what the read-only mode is
//! for.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use passalong_accounts::export::{self, Carried};
use passalong_accounts::members::{self, Status};
use passalong_accounts::KeyFile;
use passalong_protocol::PublicKey;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::Actor;
use crate::error::{ApiError, AppJson};
use crate::signin::{with_password, Peer, SignInError};
use crate::state::AppState;

/// `POST /v1/account/export-key` body.
#[derive(Serialize, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ExportKey {
    /// Her password, asked again.
    pub password: String,
    /// The password the file is sealed under (10 to 256 bytes); default: her password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_password: Option<String>,
}

impl std::fmt::Debug for ExportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportKey { .. }")
    }
}

/// A member's exported key.
#[derive(Debug)]
pub struct Exported {
    /// Her login (the file's name: `passalong-<login>.key`).
    pub login: String,
    /// The file.
    pub file: KeyFile,
}

/// Why an export was refused: a password check's refusal (with its status and `Retry-After`)
/// or the API's.
#[derive(Debug)]
pub enum ExportError {
    /// The password check refused.
    Password(SignInError),
    /// Anything else.
    Api(ApiError),
}

impl From<ApiError> for ExportError {
    fn from(e: ApiError) -> Self {
        ExportError::Api(e)
    }
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Password(SignInError::Wrong) => f.write_str("wrong password"),
            ExportError::Password(e) => write!(f, "{e}"),
            ExportError::Api(e) => f.write_str(&e.message),
        }
    }
}

impl IntoResponse for ExportError {
    fn into_response(self) -> Response {
        match self {
            ExportError::Password(e) => e.into_response(),
            ExportError::Api(e) => e.into_response(),
        }
    }
}

/// What `member`'s file carries: her markets, her community and its relays while she is a
/// member here, her contacts.
async fn carried(s: &AppState, member: PublicKey) -> Result<Carried, ApiError> {
    let connector = s.identities.default_key();
    let active = s.community.hosted_status(&member) == Some(Status::Active);
    let community = s.community.current().filter(|_| active).map(|c| c.id);
    let lines = s.with_store(move |st| st.lines_of(&member)).await?;
    let mut markets: Vec<PublicKey> = lines.into_iter().map(|(seller, _)| seller).collect();
    if s.community.current().is_some() {
        markets.push(connector);
    }
    markets.sort();
    markets.dedup();
    let relays = if community.is_some() {
        crate::community::relay_addrs(s).await
    } else {
        Vec::new()
    };
    let contacts = s.contacts.clone();
    let contacts = tokio::task::spawn_blocking(move || contacts.of(&member))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Carried {
        markets,
        community,
        relays,
        contacts: contacts.iter().map(|(k, n)| (*k, n.clone())).collect(),
    })
}

/// Exports the hosted member `member`'s key, checking `password` (hers) first, for a request
/// from `ip`: sealed under `export_password`, or her password, at the node's export cost.
pub async fn export_key(
    s: &AppState,
    member: PublicKey,
    password: &[u8],
    export_password: Option<&[u8]>,
    ip: IpAddr,
) -> Result<Exported, ExportError> {
    let sealing = Zeroizing::new(export_password.unwrap_or(password).to_vec());
    if export_password.is_some() {
        members::check_password(&sealing)
            .map_err(|e| ApiError::bad_request(format!("export_password: {e}")))?;
    }
    // One of hers at a time, a few an hour: asked before the password check, so that a
    // refused export waits for no argon2 permit.
    let mut ticket = s.signin.begin_export(member).map_err(|e| {
        tracing::info!(%member, %ip, error = %e, "a key export refused");
        ExportError::Password(e)
    })?;
    let carried = carried(s, member).await?;
    let (markets, contacts) = (carried.markets.len(), carried.contacts.len());
    let params = s.export_kdf;
    // The ticket goes with the sealing into the blocking task: the export counts as running
    // until its argon2 work ends, even if the client went away meanwhile, and in her hour
    // only if it sealed a file.
    let (login, file) = with_password(s, &member, password, ip, move |keypair| {
        let sealed = export::seal(&keypair, &carried, &sealing, params, &mut OsRng);
        if sealed.is_ok() {
            ticket.sealed();
        }
        drop(ticket);
        sealed
    })
    .await
    .map_err(ExportError::Password)?;
    tracing::info!(%member, login = %login, markets, contacts, m_kib = params.m_kib, "a member exported her key");
    Ok(Exported { login, file })
}

/// `POST /v1/account/export-key`: a hosted member's key file (her session, her password
/// again), answered `Cache-Control: no-store` as the dashboard's download is: no cache on the
/// way, or the client's, may keep it. The operator's token has no account: the node's key is
/// its `identity.key`.
pub async fn export_key_route(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Peer(peer): Peer,
    AppJson(req): AppJson<ExportKey>,
) -> Result<impl IntoResponse, ExportError> {
    let Actor::Member { session, .. } = actor else {
        return Err(ApiError::bad_request(
            "the operator has no account to export: the node's own key is its data dir's identity.key; this is for a hosted member's session (POST /v1/signin)",
        )
        .into());
    };
    let ip = s.signin.client_ip(&headers, peer);
    let password = Zeroizing::new(req.password);
    let export_password = req.export_password.map(Zeroizing::new);
    let out = export_key(
        &s,
        session.identity,
        password.as_bytes(),
        export_password.as_ref().map(|p| p.as_bytes()),
        ip,
    )
    .await?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        AppJson(out.file),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::http::StatusCode;
    use passalong_accounts::{KdfParams, VaultError};
    use passalong_protocol::Keypair;

    use super::*;
    use crate::community::{found, invite, join_hosted, NewInvite};
    use crate::signin::SignInGate;
    use crate::{now_ms, Identities, Writer};

    pub(crate) const PASSWORD: &str = "a long enough password";

    /// A community node (at the cheapest argon2 cost) hosting `logins`, each signed in: her
    /// key and her bearer.
    /// A community node's state with `logins` joined as hosted members, each signed in.
    pub(crate) struct Hosted {
        pub s: AppState,
        /// Each member's key and session bearer.
        pub members: Vec<(PublicKey, String)>,
        _dir: tempfile::TempDir,
    }

    pub(crate) async fn hosted(gate: SignInGate, logins: &[&str]) -> Hosted {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Arc::new(passalong_store::Store::open(dir.path().join("store")).expect("store"));
        let mut s = AppState::new(
            store.clone(),
            Writer::spawn(store),
            Identities::single(Keypair::from_seed([1; 32])),
            "t".repeat(64),
            "http://127.0.0.1:1".into(),
            dir.path().to_path_buf(),
        )
        .expect("state");
        s.member_kdf = KdfParams::MINIMUM;
        s.export_kdf = KdfParams::MINIMUM;
        s.signin = Arc::new(gate);
        found(&s, "Riverside").await.expect("community");
        let mut members = Vec::new();
        for login in logins {
            let inv = invite(&s, &NewInvite::default()).await.expect("invite");
            let joined = join_hosted(&s, &inv.token, login, PASSWORD.as_bytes())
                .await
                .expect("joined");
            let me = joined.key.public();
            let (id, _) = s
                .sessions
                .lock()
                .unwrap()
                .start_member(joined.key, now_ms(), &mut OsRng);
            members.push((
                me,
                format!("{}{}", crate::auth::SESSION_PREFIX, id.to_hex()),
            ));
        }
        Hosted {
            s,
            members,
            _dir: dir,
        }
    }

    fn ip() -> IpAddr {
        IpAddr::from([192, 0, 2, 7])
    }

    async fn export(s: &AppState, me: PublicKey, password: &str) -> Result<Exported, ExportError> {
        export_key(s, me, password.as_bytes(), None, ip()).await
    }

    /// The answer a refusal is given: its status and `Retry-After`.
    fn refused(e: ExportError) -> (StatusCode, Option<u64>) {
        let res = e.into_response();
        let retry = res
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        (res.status(), retry)
    }

    /// A member who exports again and again (her password is right: the failure throttle
    /// does not slow her) holds the sign-ins' argon2 permits for no more than a few exports
    /// an hour: past them, 429 with a `Retry-After`, before any password check. Another
    /// member's exports are hers, and a wrong password spends none.
    #[tokio::test]
    async fn exports_are_limited_per_account_and_hour() {
        let h = hosted(SignInGate::default(), &["anna", "ben"]).await;
        let ((anna, _), (ben, _)) = (h.members[0].clone(), h.members[1].clone());
        assert!(matches!(
            export(&h.s, anna, "not her password").await,
            Err(ExportError::Password(SignInError::Wrong))
        ));
        let per_hour = h.s.signin.export_limits().per_window;
        assert_eq!(per_hour, 5, "docs/limits.md says so");
        for n in 0..per_hour {
            let out = export(&h.s, anna, PASSWORD).await;
            assert!(out.is_ok(), "export {n}: {:?}", out.err());
        }
        let checks = h.s.signin.password_checks();
        let (status, retry) = refused(
            export(&h.s, anna, PASSWORD)
                .await
                .expect_err("the sixth export within the hour is refused"),
        );
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let retry = retry.expect("a Retry-After");
        assert!((3_500..=3_600).contains(&retry), "{retry} s");
        assert_eq!(
            h.s.signin.password_checks(),
            checks,
            "refused before any argon2 run"
        );
        assert!(export(&h.s, ben, PASSWORD).await.is_ok(), "Ben's are his");
        let file = export(&h.s, ben, PASSWORD).await.expect("exported").file;
        assert!(export::open(&file, PASSWORD.as_bytes()).is_ok());
        assert!(matches!(
            export::open(&file, b"not his password"),
            Err(VaultError::WrongPassword)
        ));
    }

    /// While one export of hers runs (here: waits for the only argon2 permit), another is
    /// refused at once, not queued behind it for a second permit.
    #[tokio::test]
    async fn one_export_at_a_time_per_account() {
        let h = hosted(
            SignInGate::new(1, 8, Default::default(), None),
            &["anna", "ben"],
        )
        .await;
        let ((anna, _), (ben, _)) = (h.members[0].clone(), h.members[1].clone());
        let held = h.s.signin.hold_permit().await;
        let first = {
            let s = h.s.clone();
            tokio::spawn(async move { export(&s, anna, PASSWORD).await.map(|e| e.login) })
        };
        while h.s.signin.waiting_now() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let second = tokio::time::timeout(Duration::from_secs(5), export(&h.s, anna, PASSWORD))
            .await
            .expect("answered at once, not queued for a permit");
        let (status, retry) = refused(second.expect_err("refused while hers runs"));
        assert_eq!(
            (status, retry.is_some()),
            (StatusCode::TOO_MANY_REQUESTS, true)
        );
        assert_eq!(h.s.signin.waiting_now(), 1, "the second never queued");
        // Ben's waits its turn as before.
        let bens = {
            let s = h.s.clone();
            tokio::spawn(async move { export(&s, ben, PASSWORD).await.map(|e| e.login) })
        };
        while h.s.signin.waiting_now() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(held);
        assert_eq!(first.await.expect("task").expect("exported"), "anna");
        assert_eq!(bens.await.expect("task").expect("exported"), "ben");
        assert!(
            export(&h.s, anna, PASSWORD).await.is_ok(),
            "hers ended: she may export again"
        );
    }

    /// The API's answer is a key file: no cache may keep it (the dashboard's download says
    /// so too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_exported_file_is_never_cached() {
        let h = hosted(SignInGate::default(), &["anna"]).await;
        let (anna, bearer) = h.members[0].clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(crate::serve(listener, h.s.clone(), std::future::pending()));
        let res = tokio::task::spawn_blocking(move || {
            ureq::post(&format!("http://{addr}/v1/account/export-key"))
                .set("Authorization", &format!("Bearer {bearer}"))
                .send_json(serde_json::json!({ "password": PASSWORD }))
                .expect("200")
        })
        .await
        .expect("request");
        assert_eq!(res.status(), 200);
        assert_eq!(res.header("cache-control"), Some("no-store"));
        let file = KeyFile::from_json(&res.into_string().expect("body")).expect("a key file");
        assert_eq!(
            export::open(&file, PASSWORD.as_bytes())
                .expect("opens")
                .0
                .public(),
            anna
        );
        server.abort();
    }
}
