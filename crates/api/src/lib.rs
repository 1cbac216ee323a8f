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

pub mod attestations;
pub mod community;
pub mod contacts;
pub mod earnings;
mod error;
mod identity;
pub mod ledger;
pub mod metrics;
pub mod network;
pub mod node;
pub mod offers;
pub mod peers;
pub mod referrals;
pub mod sales;
pub mod server;
pub mod sessions;
pub mod signer;
pub mod signin;
mod state;
pub mod text;
mod writer;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use error::{ApiError, ErrorBody};
pub use identity::Identities;
pub use ledger::ledger_json;
pub use metrics::{Metrics, Registry};
pub use network::{NetFuture, NetStatus, Network, NetworkError};
pub use server::{serve_app, ServeLimits};
pub use signer::Signer;
pub use state::{constant_time_eq, AppState};
pub use writer::{now_ms, Sink, Writer};

/// Largest JSON body of an ordinary write.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest import body.
pub const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

/// Every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/id", get(node::id))
        .route("/v1/status", get(node::status))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/offers", post(offers::publish).get(offers::list))
        .route("/v1/referrals", post(referrals::refer))
        .route("/v1/receipts", post(sales::receipt))
        .route("/v1/refunds", post(sales::refund))
        .route("/v1/settlements", post(sales::settle))
        .route("/v1/ledger", get(ledger::ledger))
        .route("/v1/earnings", get(earnings::earnings))
        .route("/v1/payouts", get(ledger::payouts_route))
        .route("/v1/equivocations", get(ledger::equivocations))
        .route("/v1/disputes", get(ledger::disputes))
        .route(
            "/v1/attestations",
            post(attestations::import).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .route("/v1/attestations/{id}", get(attestations::get))
        .route("/v1/export", get(attestations::export))
        .route("/v1/contacts", get(contacts::list).post(contacts::add))
        .route("/v1/contacts/remove", post(contacts::remove))
        .route("/v1/peers", get(peers::list))
        .route("/v1/peers/block", post(peers::block))
        .route("/v1/peers/unblock", post(peers::unblock))
        .route("/v1/markets", get(peers::markets))
        .route("/v1/markets/follow", post(peers::follow))
        .route(
            "/v1/community",
            post(community::create).get(community::show),
        )
        .route(
            "/v1/community/invites",
            post(community::create_invite).get(community::list_invites),
        )
        .route("/v1/community/invites/{id}/revoke", post(community::revoke))
        .fallback(|| async { ApiError::not_found("no such route: see docs/api.md") })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: "this route does not take that method: see docs/api.md".into(),
                reason: None,
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

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
