//! Ledgers of the markets I sell or take part in: entries, the Merkle root and a CSV download;
//! for my own market, what I owe as a payout batch (CSV) and a form to record a settlement.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use passalong_api::contacts::Names;
use passalong_api::ledger::{ledger_csv, payouts_csv};
use passalong_protocol::{Ledger, LedgerEntry, PublicKey};
use serde::Deserialize;

use super::{blocking, my_markets, names, pager, PageQuery};
use crate::auth::SignedIn;
use crate::layout::{self, PageError};
use crate::WebState;

fn seller_of(hex: &str) -> Result<PublicKey, PageError> {
    PublicKey::from_hex(hex.trim_end_matches(".csv"))
        .map_err(|_| PageError::bad("expected a seller's key of 64 hex digits"))
}

async fn ledger(s: &WebState, seller: PublicKey) -> Result<Ledger, PageError> {
    let store = s.api.store.clone();
    blocking(move || Ok(store.ledger(&seller)?)).await
}

/// `GET /ledger`: the markets I sell or take part in.
pub async fn index(State(s): State<WebState>, me: SignedIn) -> Result<Markup, PageError> {
    let who = me.me();
    let names = names(&s, who).await?;
    let store = s.api.store.clone();
    let markets = blocking(move || {
        my_markets(&store, &who)?
            .into_iter()
            .map(|m| Ok((m, store.ledger_summary(&m)?)))
            .collect::<Result<Vec<_>, PageError>>()
    })
    .await?;
    Ok(layout::page(
        &me,
        &names,
        "/ledger",
        "Ledger",
        html! {
            h1 { "Ledgers" }
            p.muted { "Every node that holds a market's attestations computes the same ledger; its root is one hash to compare." }
            section.card { div.scroll { table {
                thead { tr { th { "Market (seller)" } th.num { "Lines" } th { "Root" } } }
                tbody { @for (m, (lines, root)) in &markets { tr {
                    td { a href={ "/ledger/" (m.to_hex()) } { @if *m == who { "My market" } @else { (names.get(m).cloned().unwrap_or_else(|| m.to_hex()[..16].to_string())) } } }
                    td.num { (lines) }
                    td { code { (hex::encode(&root[..8])) "…" } }
                } } }
            } } }
        },
    ))
}

/// Ledger lines per page.
const LINES_PER_PAGE: usize = 100;
/// Lines of "What I owe" shown, the largest first (the payout batch has every one).
const OWED_SHOWN: usize = 50;

fn entries(names: &Names, l: &[LedgerEntry]) -> Markup {
    html! { div.scroll { table #ledger {
        thead { tr { th { "Participant" } th { "Currency" } th.num { "Earned" } th.num { "Refunded" } th.num { "Settled" } th.num { "Owed" } } }
        tbody { @for e in l { tr {
            td { (layout::key(names, &e.participant)) }
            td { (e.currency.as_str()) }
            td.num { (layout::money(e.currency, e.earned as i128)) }
            td.num { (layout::money(e.currency, e.refunded as i128)) }
            td.num { (layout::money(e.currency, e.settled as i128)) }
            td.num { strong { (layout::money(e.currency, e.owed)) } }
        } } }
    } } }
}

/// `GET /ledger/<seller>[?page=N]`: the root, a page of lines (100), and for my own market
/// the largest amounts I owe with the settlement form.
pub async fn one(
    State(s): State<WebState>,
    me: SignedIn,
    Path(seller): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Markup, PageError> {
    let seller = seller_of(&seller)?;
    let names = names(&s, me.me()).await?;
    let l = ledger(&s, seller).await?;
    let mine = seller == me.me();
    let mut owed: Vec<_> = l
        .entries
        .iter()
        .filter(|e| e.owed > 0 && e.participant != seller)
        .collect();
    let owing = owed.len();
    owed.sort_by_key(|e| std::cmp::Reverse(e.owed));
    owed.truncate(OWED_SHOWN);
    let total = l.entries.len();
    let from = q.page.saturating_mul(LINES_PER_PAGE).min(total);
    let shown = &l.entries[from..(from + LINES_PER_PAGE).min(total)];
    let base = format!("/ledger/{}", seller.to_hex());
    Ok(layout::page(
        &me,
        &names,
        "/ledger",
        "Ledger",
        html! {
            h1 { @if mine { "My market's ledger" } @else { "Ledger of " (layout::key(&names, &seller)) } }
            section.card {
                p { "Root: " code #root { (hex::encode(l.root())) } }
                @if l.entries.is_empty() { p.muted { "No entries yet." } } @else {
                    @if total > shown.len() { p.muted { "Lines " (from + 1) "–" (from + shown.len()) " of " (total) "; the CSV has them all." } }
                    (entries(&names, shown))
                    (pager(&base, q.page, LINES_PER_PAGE, total))
                }
                a.button.secondary href={ (base) "/ledger.csv" } download { "Download CSV" }
            }
            @if mine {
                section.card {
                    h2 { "What I owe" }
                    @if owed.is_empty() { p.muted { "You owe nothing right now." } }
                    @else {
                        @if owing > owed.len() { p.muted { "The " (owed.len()) " largest of " (owing) " amounts owed; the payout batch has them all." } }
                        div.scroll { table {
                            thead { tr { th { "Participant" } th { "Currency" } th.num { "Owed" } } }
                            tbody { @for e in &owed { tr {
                                td { (layout::key(&names, &e.participant)) }
                                td { (e.currency.as_str()) }
                                td.num { (layout::money(e.currency, e.owed)) }
                            } } }
                        } }
                        a.button.secondary href={ (base) "/payouts.csv" } download { "Download payout batch (CSV)" }
                    }
                }
                form.card method="post" action="/settlements" {
                    h2 { "Record a payment" }
                    p.muted { "After you paid someone, record it: a signed settlement that everyone can check against this ledger's root." }
                    (layout::csrf(&me))
                    label for="participant" { "Paid to" }
                    select #participant name="participant" required {
                        @for e in &owed { option value={ (e.participant.to_hex()) ":" (e.currency.as_str()) } {
                            (names.get(&e.participant).cloned().unwrap_or_else(|| e.participant.to_hex()[..16].to_string()))
                            " — owed " (e.currency.display(e.owed))
                        } }
                    }
                    label for="amount" { "Amount paid" } input #amount name="amount" inputmode="decimal" required;
                    label for="reference" { "Payment reference" } input #reference name="reference" required maxlength="128";
                    button type="submit" { "Record the settlement" }
                }
            }
        },
    ))
}

fn csv_response(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /ledger/<seller>/ledger.csv`
pub async fn csv(
    State(s): State<WebState>,
    me: SignedIn,
    Path(seller): Path<String>,
) -> Result<Response, PageError> {
    let seller = seller_of(&seller)?;
    let names = names(&s, me.me()).await?;
    let l = ledger(&s, seller).await?;
    Ok(csv_response("ledger.csv", ledger_csv(&l, &names)))
}

/// `GET /ledger/<seller>/payouts.csv`: what the seller owes, one line per participant and
/// currency.
pub async fn payouts_csv_handler(
    s: &WebState,
    me: &SignedIn,
    seller: PublicKey,
) -> Result<Response, PageError> {
    let names = names(s, me.me()).await?;
    let l = ledger(s, seller).await?;
    Ok(csv_response("payouts.csv", payouts_csv(&l, &names)))
}

/// `GET /ledger/<seller>/payouts.csv`
pub async fn payouts_csv_get(
    State(s): State<WebState>,
    me: SignedIn,
    Path(seller): Path<String>,
) -> Result<Response, PageError> {
    payouts_csv_handler(&s, &me, seller_of(&seller)?).await
}

/// The settlement form.
#[derive(Deserialize)]
pub struct SettleForm {
    #[serde(default)]
    csrf: String,
    participant: String,
    amount: String,
    reference: String,
}

/// `POST /settlements`: signs a settlement of my market.
pub async fn settle(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<SettleForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&f.csrf)?;
    // A read-only session is refused before the form is read.
    let keys = me.signer(&s)?;
    let (participant, currency) = f
        .participant
        .split_once(':')
        .ok_or_else(|| PageError::bad("Paid to: choose someone from the list"))?;
    let currency = passalong_protocol::Currency::parse(currency)
        .ok_or_else(|| PageError::bad("bad currency"))?;
    let amount_minor = currency
        .parse_major(&f.amount)
        .filter(|&a| a > 0)
        .ok_or_else(|| {
            PageError::bad(format!(
                "Amount: expected an amount in {currency} with at most {} decimals",
                currency.minor_digits()
            ))
        })?;
    let req = passalong_api::sales::NewSettlement {
        participant: participant.to_string(),
        amount_minor,
        currency: currency.as_str().to_string(),
        reference: f.reference.trim().to_string(),
        ..Default::default()
    };
    passalong_api::sales::settle_as(&s.api, keys, &req).await?;
    Ok(Redirect::to(&format!("/ledger/{}", me.me().to_hex())).into_response())
}
