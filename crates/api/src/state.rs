//! What every handler shares, and the write-token check.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use passalong_protocol::attestation::Body;
use passalong_protocol::link::ShareLink;
use passalong_protocol::{validation, Attestation, Id, Rejection};
use passalong_store::{Ack, Status, Store};

use crate::community::{CommunityNode, CommunityNodeError};
use crate::error::ApiError;
use crate::identity::Identities;
use crate::metrics::Metrics;
use crate::network::Network;
use crate::signer::Signer;
use crate::writer::Writer;

/// Shared state of the API.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<Store>,
    /// Durable writes, group-committed.
    pub writer: Writer,
    /// The keys the node signs with.
    pub identities: Arc<Identities>,
    /// The write token.
    pub token: Arc<String>,
    /// The base URL share links point to (`http://127.0.0.1:PORT`).
    pub base_url: Arc<String>,
    /// The node's data directory (for status).
    pub data_dir: Arc<PathBuf>,
    /// Local names for keys, per identity.
    pub contacts: Arc<crate::contacts::Contacts>,
    /// The peer-to-peer network, when it runs.
    pub net: Option<Arc<dyn Network>>,
    /// The registry `/metrics` encodes: the node's families, and libp2p's beside them.
    pub metrics: Metrics,
    /// The community this node runs as its connector, if any, and its invites.
    pub community: Arc<CommunityNode>,
    /// The argon2id cost of sealing a hosted member's key under her password (her sign-in
    /// pays it again): `KdfParams::MEMBER` unless the node's config says otherwise.
    pub member_kdf: passalong_accounts::KdfParams,
    /// The argon2id cost of a member's exported key file (`KdfParams::EXPORT`; tests lower
    /// it): a file that may travel by email costs a guess more than one kept on the node.
    pub export_kdf: passalong_accounts::KdfParams,
    /// Signed-in sessions (the dashboard's, and the API's members' later), each acting as one
    /// identity; a member's holds her key.
    pub sessions: Arc<Mutex<passalong_accounts::Sessions>>,
    /// What members' sign-ins pass through: the throttle, the argon2 permits and the client
    /// address rule.
    pub signin: Arc<crate::signin::SignInGate>,
    /// The node is reached from outside (a `public_url`): private reads then need an
    /// [`Actor`](crate::auth::Actor), as on a node that runs a community.
    pub public: bool,
}

/// Proof that a request is the operator's (the write token): the node's own settings,
/// peers, imports and community. A member's session is refused (403).
pub struct WriteAuth;

impl FromRequestParts<AppState> for WriteAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        crate::auth::Actor::from_request_parts(parts, state)
            .await?
            .operator()?;
        Ok(WriteAuth)
    }
}

/// Compares secrets in constant time.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AppState {
    /// The state of a node in `data_dir` signing with `identities`, without the network and
    /// with a registry of its own (set `net` and `metrics` after, where they run): contacts
    /// under `data_dir/contacts`, and the community the node runs, read from its files.
    pub fn new(
        store: Arc<Store>,
        writer: Writer,
        identities: Identities,
        token: String,
        base_url: String,
        data_dir: PathBuf,
    ) -> Result<AppState, CommunityNodeError> {
        Ok(AppState {
            store,
            writer,
            identities: Arc::new(identities),
            token: Arc::new(token),
            base_url: Arc::new(base_url),
            contacts: Arc::new(crate::contacts::Contacts::new(data_dir.join("contacts"))),
            community: Arc::new(CommunityNode::open(&data_dir)?),
            data_dir: Arc::new(data_dir),
            net: None,
            metrics: Metrics::default(),
            member_kdf: passalong_accounts::KdfParams::MEMBER,
            export_kdf: passalong_accounts::KdfParams::EXPORT,
            sessions: Arc::new(Mutex::new(passalong_accounts::Sessions::new(
                Default::default(),
            ))),
            signin: Arc::default(),
            public: false,
        })
    }

    /// Whether the node is reached from outside: it has a `public_url` or runs a community.
    pub fn exposed(&self) -> bool {
        self.public || self.community.current().is_some()
    }

    /// The network, or 503 when the node runs without it.
    pub fn net(&self) -> Result<&dyn Network, ApiError> {
        self.net
            .as_deref()
            .ok_or_else(|| ApiError::unavailable("peer-to-peer networking is off on this node"))
    }

    /// Runs `f` on the store in tokio's blocking pool. Every store call goes through here
    /// (or another `spawn_blocking`): sled reads can wait on the disk and scans take long, and
    /// the async workers, one per core, must stay free to answer other requests.
    pub async fn with_store<T, E>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(ApiError::internal)?
            .map_err(Into::into)
    }

    /// Valid attestations, markets and checkpoints of the store (for status).
    pub async fn store_counts(&self) -> Result<(u64, usize, u64), ApiError> {
        self.with_store(|store| {
            Ok::<_, passalong_store::StoreError>((
                store.valid_count()?,
                store.markets()?.len(),
                store.checkpoints(),
            ))
        })
        .await
    }

    /// Stores envelopes durably.
    pub async fn ingest(&self, envelopes: Vec<Vec<u8>>) -> Result<Vec<Ack>, ApiError> {
        self.writer
            .ingest(envelopes)
            .await
            .map_err(ApiError::internal)
    }

    /// Checks the limits of a body, signs it with `keys` and stores it; it must come out valid.
    pub async fn sign_and_store(
        &self,
        body: Body,
        keys: impl Into<Signer<'_>>,
    ) -> Result<Attestation, ApiError> {
        validation::check_limits(&body).map_err(|r| ApiError::invalid(r.code(), r.to_string()))?;
        let att = keys.into().sign(body);
        self.ingest_own(&att).await?;
        Ok(att)
    }

    /// Stores one attestation this node signed; it must come out valid.
    async fn ingest_own(&self, att: &Attestation) -> Result<(), ApiError> {
        let acks = self.ingest(vec![att.bytes.clone()]).await?;
        match acks.first().map(|a| &a.status) {
            Some(Status::Valid) => Ok(()),
            Some(Status::Invalid(Rejection { code, message })) => {
                Err(ApiError::invalid(code.clone(), message.clone()))
            }
            Some(Status::Pending { missing }) => Err(ApiError::invalid(
                "pending",
                format!(
                    "this node does not hold {} yet: pass a share link that carries it",
                    missing
                        .iter()
                        .map(Id::to_hex)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            Some(Status::Held { until_ms }) => Err(ApiError::invalid(
                "held",
                format!("dated in the future, counts from {until_ms}"),
            )),
            None => Err(ApiError::internal("no ack from the store")),
        }
    }

    /// Imports a share link's envelopes; returns how many were new. Any invalid one refuses
    /// the whole link.
    pub async fn import_link(&self, link: &ShareLink) -> Result<usize, ApiError> {
        let n = link.attestations.len();
        let acks = self
            .ingest(link.attestations.iter().map(|a| a.bytes.clone()).collect())
            .await?;
        // The first n acks answer the link's envelopes; any after them were unblocked.
        let acks = &acks[..n.min(acks.len())];
        for a in acks {
            if let Status::Invalid(Rejection { code, message }) = &a.status {
                return Err(ApiError::invalid(
                    code.clone(),
                    format!(
                        "the share link carries an invalid attestation {}: {message}",
                        a.id
                    ),
                ));
            }
        }
        Ok(acks.iter().filter(|a| !a.duplicate).count())
    }

    /// The share link of a stored offer or referral.
    pub async fn link_of(&self, id: &Id) -> Result<ShareLink, ApiError> {
        let id = *id;
        let chain = self.with_store(move |store| store.chain(&id)).await?;
        ShareLink::new(chain).map_err(ApiError::internal)
    }

    /// The id, share link and URL of a stored offer or referral.
    pub async fn published(&self, id: &Id) -> Result<crate::offers::Published, ApiError> {
        let link = self.link_of(id).await?;
        let short = passalong_protocol::link::ShortLink::of(&link);
        Ok(crate::offers::Published {
            id: id.to_hex(),
            link: link.token(),
            url: link.url(&self.base_url),
            short: short.token(),
            short_url: short.url(&self.base_url),
        })
    }

    /// A stored attestation, or 404.
    pub async fn attestation(&self, id: &Id, what: &str) -> Result<Attestation, ApiError> {
        let id = *id;
        self.with_store(move |store| store.attestation(&id))
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no {what} {id} on this node")))
    }
}
