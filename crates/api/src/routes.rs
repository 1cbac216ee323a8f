//! Every route of the JSON API in one table ([`ROUTES`]), with who may use it, and the router
//! built from it: the security tests walk the same table, so a route cannot be added without
//! them trying it as another member.

use std::collections::BTreeMap;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{
    account, attestations, auth, community, contacts, earnings, join, ledger, metrics, node,
    offers, peers, referrals, sales, MAX_BODY_BYTES, MAX_IMPORT_BYTES,
};

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: what the node shows every visitor (its id, offers, ledgers, attestations).
    Public,
    /// A private read (`?as=`, contacts, earnings): anyone on a node reached on loopback
    /// only; once it has a community or a `public_url`, an [`auth::Actor`] reading its own.
    Private,
    /// An [`auth::Actor`] acting as an identity: the operator as one the node holds, a member
    /// as herself.
    Acts,
    /// The operator only (the token): the node's own settings, peers, imports, community.
    Operator,
    /// Anyone signing in (throttled).
    SignIn,
    /// A member's own session.
    Session,
    /// A hosted member's own account (her key file): her session only, as herself; the
    /// operator's token has no account (400).
    Own,
    /// Anyone holding an invite (its token in the path): a person with her own node joining.
    Invite,
}

/// Every route: method, path, access.
pub const ROUTES: &[(Method, &str, Access)] = &[
    (Method::GET, "/v1/id", Access::Public),
    (Method::GET, "/v1/status", Access::Public),
    (Method::GET, "/metrics", Access::Public),
    (Method::POST, "/v1/offers", Access::Acts),
    (Method::GET, "/v1/offers", Access::Public),
    (Method::POST, "/v1/referrals", Access::Acts),
    (Method::POST, "/v1/receipts", Access::Acts),
    (Method::POST, "/v1/refunds", Access::Acts),
    (Method::POST, "/v1/settlements", Access::Acts),
    (Method::GET, "/v1/ledger", Access::Private),
    (Method::GET, "/v1/earnings", Access::Private),
    (Method::GET, "/v1/payouts", Access::Private),
    (Method::GET, "/v1/equivocations", Access::Public),
    (Method::GET, "/v1/disputes", Access::Public),
    (Method::POST, "/v1/attestations", Access::Operator),
    (Method::GET, "/v1/attestations/{id}", Access::Public),
    (Method::GET, "/v1/export", Access::Public),
    (Method::GET, "/v1/contacts", Access::Private),
    (Method::POST, "/v1/contacts", Access::Acts),
    (Method::POST, "/v1/contacts/remove", Access::Acts),
    (Method::GET, "/v1/peers", Access::Public),
    (Method::POST, "/v1/peers/block", Access::Operator),
    (Method::POST, "/v1/peers/unblock", Access::Operator),
    (Method::GET, "/v1/markets", Access::Public),
    (Method::POST, "/v1/markets/follow", Access::Operator),
    (Method::POST, "/v1/community", Access::Operator),
    (Method::GET, "/v1/community", Access::Public),
    (Method::POST, "/v1/community/invites", Access::Operator),
    (Method::GET, "/v1/community/invites", Access::Operator),
    (
        Method::POST,
        "/v1/community/invites/{id}/revoke",
        Access::Operator,
    ),
    (Method::GET, "/v1/community/members", Access::Operator),
    (
        Method::POST,
        "/v1/community/members/{key}/remove",
        Access::Operator,
    ),
    (Method::GET, "/v1/community/earnings", Access::Operator),
    (Method::GET, "/v1/community/activity", Access::Operator),
    (Method::POST, "/v1/signin", Access::SignIn),
    (Method::POST, "/v1/signout", Access::Session),
    (Method::POST, "/v1/account/export-key", Access::Own),
    (Method::GET, "/v1/join/{token}", Access::Invite),
    (Method::POST, "/v1/join/{token}", Access::Invite),
    (Method::POST, "/v1/membership-requests", Access::Operator),
];

/// The handler of one row of [`ROUTES`].
fn handler(method: &Method, path: &str) -> Option<MethodRouter<AppState>> {
    let get_ = *method == Method::GET;
    Some(match (get_, path) {
        (true, "/v1/id") => get(node::id),
        (true, "/v1/status") => get(node::status),
        (true, "/metrics") => get(metrics::metrics),
        (false, "/v1/offers") => post(offers::publish),
        (true, "/v1/offers") => get(offers::list),
        (false, "/v1/referrals") => post(referrals::refer),
        (false, "/v1/receipts") => post(sales::receipt),
        (false, "/v1/refunds") => post(sales::refund),
        (false, "/v1/settlements") => post(sales::settle),
        (true, "/v1/ledger") => get(ledger::ledger),
        (true, "/v1/earnings") => get(earnings::earnings),
        (true, "/v1/payouts") => get(ledger::payouts_route),
        (true, "/v1/equivocations") => get(ledger::equivocations),
        (true, "/v1/disputes") => get(ledger::disputes),
        (false, "/v1/attestations") => {
            post(attestations::import).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES))
        }
        (true, "/v1/attestations/{id}") => get(attestations::get),
        (true, "/v1/export") => get(attestations::export),
        (true, "/v1/contacts") => get(contacts::list),
        (false, "/v1/contacts") => post(contacts::add),
        (false, "/v1/contacts/remove") => post(contacts::remove),
        (true, "/v1/peers") => get(peers::list),
        (false, "/v1/peers/block") => post(peers::block),
        (false, "/v1/peers/unblock") => post(peers::unblock),
        (true, "/v1/markets") => get(peers::markets),
        (false, "/v1/markets/follow") => post(peers::follow),
        (false, "/v1/community") => post(community::create),
        (true, "/v1/community") => get(community::show),
        (false, "/v1/community/invites") => post(community::create_invite),
        (true, "/v1/community/invites") => get(community::list_invites),
        (false, "/v1/community/invites/{id}/revoke") => post(community::revoke),
        (true, "/v1/community/members") => get(community::list_members),
        (false, "/v1/community/members/{key}/remove") => post(community::remove),
        (true, "/v1/community/earnings") => get(community::earnings),
        (true, "/v1/community/activity") => get(community::list_activity),
        (false, "/v1/signin") => post(auth::signin),
        (false, "/v1/signout") => post(auth::signout),
        (false, "/v1/account/export-key") => post(account::export_key_route),
        (true, "/v1/join/{token}") => get(join::show),
        (false, "/v1/join/{token}") => post(join::join),
        (false, "/v1/membership-requests") => post(join::request),
        _ => return None,
    })
}

/// Every route of [`ROUTES`] (a row without a handler is logged and left out; the tests
/// check that none is).
pub fn router(state: AppState) -> Router {
    let mut paths: BTreeMap<&str, MethodRouter<AppState>> = BTreeMap::new();
    for (method, path, _) in ROUTES {
        let Some(h) = handler(method, path) else {
            tracing::error!(%method, path, "a route of the table has no handler");
            continue;
        };
        let merged = match paths.remove(path) {
            Some(other) => other.merge(h),
            None => h,
        };
        paths.insert(path, merged);
    }
    paths
        .into_iter()
        .fold(Router::new(), |r, (path, m)| r.route(path, m))
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
