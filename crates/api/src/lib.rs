//! Passalong's local HTTP JSON API (see `docs/api.md`): small axum handlers over shared state —
//! the store, a group-committing writer and the node's identities.
//!
//! It listens on loopback only; writes need the bearer token from `<data-dir>/api-token`.
//! Errors are JSON `{"error", "code"}` ([`ErrorBody`]) with a status that says what kind (400,
//! 401, 404, 413, 422, 500).
//!
//! Every request body and every answer is a typed struct (Serialize + Deserialize) in the
//! module of its route — `offers::OfferList`, `ledger::LedgerInfo`, `sales::SaleAnswer`, … —
//! which the handlers answer with and the CLI reads back, so the two cannot drift apart.
#![deny(missing_docs)]

pub mod account;
pub mod attestations;
pub mod auth;
pub mod community;
pub mod contacts;
pub mod earnings;
mod error;
mod identity;
pub mod join;
pub mod ledger;
pub mod metrics;
pub mod network;
pub mod node;
pub mod offers;
pub mod peers;
pub mod referrals;
pub mod roster;
pub mod routes;
pub mod sales;
pub mod server;
pub mod sessions;
pub mod signer;
pub mod signin;
mod state;
pub mod text;
mod writer;

pub use error::{ApiError, ErrorBody};
pub use identity::Identities;
pub use ledger::ledger_json;
pub use metrics::{Metrics, Registry};
pub use network::{NetFuture, NetStatus, Network, NetworkError};
pub use routes::{router, Access, ROUTES};
pub use server::{serve_app, ServeLimits};
pub use signer::Signer;
pub use state::{constant_time_eq, AppState};
pub use writer::{now_ms, Sink, Writer};

/// Largest JSON body of an ordinary write.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest import body.
pub const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve_app(
        listener,
        router(state),
        server::ServeLimits::default(),
        shutdown,
    )
    .await
}
