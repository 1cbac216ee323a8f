//! The network: peers, reachability, relays, followed markets and sync state.

use axum::extract::State;
use maud::{html, Markup};

use super::names;
use crate::auth::SignedIn;
use crate::layout::{self, PageError};
use crate::WebState;

/// `GET /network`
pub async fn page(State(s): State<WebState>, me: SignedIn) -> Result<Markup, PageError> {
    let names = names(&s, me.me()).await?;
    let info = match &s.api.net {
        Some(net) => Some(net.info().await.map_err(|e| {
            PageError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        })?),
        None => None,
    };
    Ok(layout::page(
        &me,
        &names,
        "/network",
        "Network",
        html! {
            h1 { "Network" }
            @match &info {
                None => p { "This node runs offline: no peer-to-peer network." },
                Some(i) => {
                    section.card {
                        p { "Peer id " code { (i.peer_id) } }
                        p { "Reachability: " strong { (format!("{:?}", i.reachability).to_lowercase().trim_matches('"')) } }
                        p { "Listening on:" } ul { @for a in &i.listen { li { code { (a) } } } }
                        @if !i.external.is_empty() { p { "Reachable at:" } ul { @for a in &i.external { li { code { (a) } } } } }
                        @if !i.relays.is_empty() { p { "Relays:" } ul { @for r in &i.relays { li { code { (r) } } } } }
                    }
                    section.card {
                        h2 { "Peers (" (i.peers.len()) ")" }
                        @if i.peers.is_empty() { p.muted { "No peer connected." } }
                        @else { ul { @for p in &i.peers { li { code { (format!("{p:?}")) } } } } }
                    }
                    section.card {
                        h2 { "Sync" }
                        p { (i.stats.syncs_done) " sessions, " (i.stats.syncs_failed) " failed, " (i.stats.sync_fetched) " attestations fetched"
                            @if i.stats.last_sync_ms > 0 { "; last " (layout::time(i.stats.last_sync_ms)) } }
                        p { "Gossip: " (i.stats.gossip_received) " received, " (i.stats.gossip_accepted) " accepted, " (i.stats.gossip_rejected) " rejected, " (i.stats.published) " published" }
                    }
                    section.card {
                        h2 { "Followed markets (" (i.markets.len()) ")" }
                        ul { @for m in &i.markets { li { (format!("{m:?}")) } } }
                    }
                }
            }
        },
    ))
}
