//! One module per page of the dashboard, plus the public share page.

pub mod account;
pub mod community;
pub mod contacts;
pub mod disputes;
pub mod home;
pub mod join;
pub mod ledger;
pub mod network;
pub mod offers;
pub mod pass;
pub mod sale;
pub mod share;

use std::sync::Arc;

use axum::http::StatusCode;
use passalong_api::contacts::Names;
use passalong_protocol::{LedgerEntry, PublicKey};
use passalong_store::Store;

use crate::layout::PageError;
use crate::WebState;

/// Runs store work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "page task failed");
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the node failed to build this page; see its log",
        )
    })?
}

/// `me`'s contact names.
pub(crate) async fn names(s: &WebState, me: PublicKey) -> Result<Arc<Names>, PageError> {
    let c = s.api.contacts.clone();
    blocking(move || Ok(c.of(&me)?)).await
}

/// Every ledger line of `me`, by seller: the markets I take part in.
pub(crate) fn my_lines(
    store: &Store,
    me: &PublicKey,
) -> Result<Vec<(PublicKey, LedgerEntry)>, PageError> {
    Ok(store.lines_of(me)?)
}

/// The markets `me` sells in or takes part in (my own first).
pub(crate) fn my_markets(store: &Store, me: &PublicKey) -> Result<Vec<PublicKey>, PageError> {
    let mut out = vec![*me];
    for seller in passalong_api::earnings::markets_of(store, me)? {
        if !out.contains(&seller) {
            out.push(seller);
        }
    }
    Ok(out)
}

/// `?page=N` (from 0).
#[derive(serde::Deserialize, Default, Debug)]
pub struct PageQuery {
    /// The page asked for.
    #[serde(default)]
    pub page: usize,
}

/// Links to the previous and next page of a list of `total` items shown `per` a page.
pub(crate) fn pager(base: &str, page: usize, per: usize, total: usize) -> maud::Markup {
    let last = total.saturating_sub(1) / per.max(1);
    maud::html! {
        @if last > 0 {
            nav.pager aria-label="pages" {
                @if page > 0 { a href={ (base) "?page=" (page - 1) } rel="prev" { "← Previous" } " " }
                span.muted { "Page " (page + 1) " of " (last + 1) }
                @if page < last { " " a href={ (base) "?page=" (page + 1) } rel="next" { "Next →" } }
            }
        }
    }
}
