//! Home: what I earned and am owed, the latest sales that paid me, and a line on the network.

use axum::extract::State;
use maud::{html, Markup};
use passalong_api::earnings;

use super::{blocking, my_lines, names, sale};
use crate::auth::SignedIn;
use crate::layout::{self, PageError};
use crate::WebState;

/// Sales shown on the home page.
const LATEST: usize = 10;
/// Receipts read per market to find them: the page costs the same in a market of any size
/// (a sale that paid me further back is in `GET /v1/earnings`).
const SCAN: usize = 1_000;
/// Ledger lines shown (one per seller and currency).
const LINES: usize = 50;

/// `GET /`
pub async fn home(State(s): State<WebState>, me: SignedIn) -> Result<Markup, PageError> {
    let who = me.me();
    let names = names(&s, who).await?;
    let store = s.api.store.clone();
    let (lines, sales) = blocking(move || {
        let lines = my_lines(&store, &who)?;
        let sales = earnings::paid_to(&store, &who, None, LATEST, SCAN)?;
        Ok((lines, sales))
    })
    .await?;
    let network = network_line(&s).await;
    Ok(layout::page(
        &me,
        &names,
        "/",
        "Home",
        html! {
            h1 { "Home" }
            p.muted { (network) }
            section.card {
                h2 { "What I earned" }
                @if lines.is_empty() {
                    p { "Nothing yet. Pass an offer along from the "
                        a href="/pass" { "Pass along" } " page: when a friend buys through your link, your share shows here." }
                } @else {
                    div.scroll { table {
                        thead { tr {
                            th { "Seller" } th { "Currency" } th.num { "Earned" } th.num { "Refunded" }
                            th.num { "Paid to me" } th.num { "Owed to me" }
                        } }
                        tbody { @for (seller, e) in lines.iter().take(LINES) { tr {
                            td { (layout::key(&names, seller)) }
                            td { (e.currency.as_str()) }
                            td.num { (layout::money(e.currency, e.earned as i128)) }
                            td.num { (layout::money(e.currency, e.refunded as i128)) }
                            td.num { (layout::money(e.currency, e.settled as i128)) }
                            td.num { strong { (layout::money(e.currency, e.owed)) } }
                        } } }
                    } }
                    @if lines.len() > LINES {
                        p.muted { (lines.len() - LINES) " more: see " a href="/ledger" { "Ledgers" } "." }
                    }
                }
            }
            section.card {
                h2 { "Latest sales that paid me" }
                @if sales.is_empty() && lines.is_empty() {
                    p.muted { "No sale has paid you yet." }
                } @else if sales.is_empty() {
                    p.muted { "No recent sale has paid you." }
                } @else {
                    div.scroll { table {
                        thead { tr { th { "When" } th { "Item" } th.num { "Sale" } th.num { "My share" } th { "Chain" } } }
                        tbody { @for sale in &sales { tr {
                            td { (layout::time(sale.receipt.created_at_ms)) }
                            td { (sale.title) }
                            td.num { (layout::money(sale.currency, i128::from(sale.receipt.amount_minor))) }
                            td.num { strong { (layout::money(sale.currency, i128::from(sale.paid(&who)))) } }
                            td { (sale::chain(&names, &who, sale)) }
                        } } }
                    } }
                }
            }
        },
    ))
}

/// "Connected to 3 peers · following 2 markets · last sync 14:02 UTC".
async fn network_line(s: &WebState) -> String {
    let Some(net) = &s.api.net else {
        return "Running offline: no peer-to-peer network.".into();
    };
    match net.info().await {
        Ok(i) => {
            let sync = if i.stats.last_sync_ms > 0 {
                format!("last sync {}", layout::time(i.stats.last_sync_ms))
            } else {
                "not synced yet".into()
            };
            format!(
                "Connected to {} peer{} · following {} market{} · {sync}",
                i.peers.len(),
                if i.peers.len() == 1 { "" } else { "s" },
                i.markets.len(),
                if i.markets.len() == 1 { "" } else { "s" },
            )
        }
        Err(e) => format!("The network does not answer: {e}"),
    }
}
