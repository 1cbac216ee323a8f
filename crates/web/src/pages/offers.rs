//! Offers: the publish form (the rule in plain words, and each hop's share of a sample sale
//! computed by the protocol's own payout code), my offers with their sales, one page per offer.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use passalong_api::earnings;
use passalong_api::offers::{publish_offer, NewOffer};
use passalong_api::ApiError;
use passalong_protocol::attestation::Body;
use passalong_protocol::payout::{bps_of, split};
use passalong_protocol::{Currency, Id, Kind, Offer, PublicKey, Rule};
use passalong_store::OfferTotals;
use serde::Deserialize;

use super::{blocking, names, pager, sale, PageQuery};
use crate::auth::SignedIn;
use crate::layout::{self, PageError};
use crate::WebState;

/// The publish form as posted.
#[derive(Deserialize, Default, Debug)]
pub struct OfferForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    pool_percent: String,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    ratio_percent: String,
    #[serde(default)]
    connector_percent: String,
    #[serde(default)]
    max_depth: String,
    #[serde(default)]
    window_days: String,
    require_purchase: Option<String>,
    #[serde(default)]
    checkout_url: String,
}

/// A percentage with up to two decimals in basis points: "10" → 1000, "2.5" → 250.
pub fn percent_to_bps(text: &str, field: &str) -> Result<u16, PageError> {
    let text = if text.trim().is_empty() { "0" } else { text };
    // Two decimals, as a currency with two minor digits would have.
    Currency(*b"EUR")
        .parse_major(text)
        .filter(|&b| b <= 10_000)
        .map(|b| b as u16)
        .ok_or_else(|| {
            PageError::bad(format!(
                "{field}: expected a percentage from 0 to 100, like 10 or 2.5"
            ))
        })
}

impl OfferForm {
    fn to_new_offer(&self) -> Result<NewOffer, PageError> {
        let currency = Currency::parse(self.currency.trim())
            .ok_or_else(|| PageError::bad("Currency: expected three capital letters, like EUR"))?;
        let price_minor = currency
            .parse_major(&self.price)
            .filter(|&p| p > 0)
            .ok_or_else(|| {
                PageError::bad(format!(
                    "Price: expected an amount in {} with at most {} decimals, like {}",
                    currency.as_str(),
                    currency.minor_digits(),
                    currency.major(1999)
                ))
            })?;
        let rule = match self.rule.as_str() {
            "geometric" => format!(
                "geometric:{}",
                percent_to_bps(&self.ratio_percent, "Halving ratio")?.min(9_999)
            ),
            "direct" | "equal" | "split-proof" => self.rule.clone(),
            other => {
                return Err(PageError::bad(format!(
                    "Rule {other:?}: choose one from the list"
                )))
            }
        };
        let number = |text: &str, field: &str, default: u64| -> Result<u64, PageError> {
            if text.trim().is_empty() {
                return Ok(default);
            }
            text.trim()
                .parse()
                .map_err(|_| PageError::bad(format!("{field}: expected a whole number")))
        };
        let max_depth = number(&self.max_depth, "Hops paid", 16)?;
        let days = number(&self.window_days, "Window", 30)?;
        Ok(NewOffer {
            title: self.title.trim().to_string(),
            price_minor,
            currency: currency.as_str().to_string(),
            pool_bps: percent_to_bps(&self.pool_percent, "Share for the chain")?,
            rule,
            connector_bps: percent_to_bps(&self.connector_percent, "Connector share")?,
            max_depth: Some(
                u8::try_from(max_depth).map_err(|_| PageError::bad("Hops paid: 1 to 16"))?,
            ),
            window_ms: Some(days.saturating_mul(86_400_000)),
            require_purchase: self.require_purchase.is_some(),
            checkout_url: Some(self.checkout_url.trim().to_string()).filter(|u| !u.is_empty()),
            ..NewOffer::default()
        })
    }
}

/// Basis points as a percentage without trailing zeros: 1000 → "10", 250 → "2.5".
pub fn percent(bps: u16) -> String {
    let s = Currency(*b"EUR").major(i128::from(bps));
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The rule in plain words.
pub fn explain(o: &Offer) -> String {
    let p = &o.policy;
    let pool = format!("{} %", percent(p.pool_bps));
    let depth = p.max_depth;
    let mut s = match p.rule {
        Rule::Direct => format!(
            "The friend whose link the buyer used earns the whole {pool} of the sale; people earlier in the chain earn nothing."
        ),
        Rule::Equal => format!(
            "{pool} of each sale is shared equally by the people of the chain, up to {depth} of them, nearest the buyer first."
        ),
        Rule::Geometric { r_bps } => format!(
            "{pool} of each sale goes to the chain: the friend nearest the buyer earns {} % of it, the next one {} % of what is left, and so on for up to {depth} people.",
            percent(10_000 - r_bps),
            percent(10_000 - r_bps),
        ),
        Rule::SplitProof => format!(
            "{pool} of each sale goes to the chain; everyone in it (up to {depth} people) earns the same share, which halves with each person the chain holds, so that no one gains by adding fake identities of their own."
        ),
    };
    if p.connector_bps > 0 {
        s.push_str(&format!(
            " A further {} % goes to the connector of the community the nearest friend belongs to.",
            percent(p.connector_bps)
        ));
    }
    if p.require_purchase {
        s.push_str(" Only people who bought it themselves earn.");
    }
    s.push_str(&format!(
        " A referral counts for {} days before a sale. What is not paid out stays with you.",
        p.window_ms / 86_400_000
    ));
    s
}

/// Each hop's share of a sale of the offer's price through a chain of `hops` people, by the
/// protocol's payout code: (hop shares nearest the buyer first, connector share, seller keeps).
pub fn sample(o: &Offer, hops: usize) -> (Vec<u64>, u64, u64) {
    let p = &o.policy;
    let n = hops.min(usize::from(p.max_depth));
    let pool = bps_of(o.price_minor, p.pool_bps);
    let shares = split(p.rule, pool, &vec![true; n], hops as u32);
    let connector = bps_of(o.price_minor, p.connector_bps);
    let paid: u64 = shares.as_slice().iter().sum::<u64>() + connector;
    (
        shares.as_slice().to_vec(),
        connector,
        o.price_minor.saturating_sub(paid),
    )
}

fn shares_card(o: &Offer) -> Markup {
    let hops = usize::from(o.policy.max_depth).min(4);
    let (shares, connector, seller) = sample(o, hops);
    let c = o.currency;
    html! {
        div.card #preview {
            h2 { "How a sale pays" }
            p { (explain(o)) }
            p.muted { "A sale of " (layout::money(c, i128::from(o.price_minor))) " through a chain of " (hops) " friends:" }
            table {
                tbody {
                    @for (i, a) in shares.iter().enumerate() {
                        tr { td { "Hop " (i + 1) @if i == 0 { " (nearest the buyer)" } } td.num { (layout::money(c, i128::from(*a))) } }
                    }
                    @if o.policy.connector_bps > 0 {
                        tr { td { "Connector" } td.num { (layout::money(c, i128::from(connector))) } }
                    }
                    tr { td { strong { "You keep" } } td.num { strong { (layout::money(c, i128::from(seller))) } } }
                }
            }
        }
    }
}

fn form(me: &SignedIn, f: &OfferForm) -> Markup {
    let rule = if f.rule.is_empty() {
        "geometric"
    } else {
        f.rule.as_str()
    };
    let opt = |value: &str, label: &str| {
        html! {
            option value=(value) selected[rule == value] { (label) }
        }
    };
    let or = |v: &str, d: &str| {
        if v.trim().is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    html! {
        form.card method="post" action="/offers" {
            h2 { "Publish an offer" }
            (layout::csrf(me))
            label for="title" { "What you sell" }
            input #title name="title" value=(f.title) required maxlength="256";
            div.grid {
                div { label for="price" { "Price" } input #price name="price" value=(f.price) inputmode="decimal" required placeholder="20.00"; }
                div { label for="currency" { "Currency" } input #currency name="currency" value=(or(&f.currency, "EUR")) maxlength="3" required; }
            }
            label for="checkout_url" { "Checkout page (where a friend buys)" }
            input #checkout_url name="checkout_url" type="url" value=(f.checkout_url) placeholder="https://shop.example/buy/record";
            div.grid {
                div { label for="pool_percent" { "Share of each sale for the chain (%)" }
                      input #pool_percent name="pool_percent" value=(or(&f.pool_percent, "10")) inputmode="decimal"; }
                div { label for="rule" { "How the chain shares it" }
                      select #rule name="rule" {
                          (opt("geometric", "Halving along the chain (geometric)"))
                          (opt("direct", "All to the last friend (direct)"))
                          (opt("equal", "Equal shares (equal)"))
                          (opt("split-proof", "Equal, fake-identity proof (split-proof)"))
                      } }
                div { label for="ratio_percent" { "Geometric: % passed on at each hop" }
                      input #ratio_percent name="ratio_percent" value=(or(&f.ratio_percent, "50")) inputmode="decimal"; }
                div { label for="connector_percent" { "Connector share (%)" }
                      input #connector_percent name="connector_percent" value=(or(&f.connector_percent, "0")) inputmode="decimal"; }
                div { label for="max_depth" { "People paid, at most" }
                      input #max_depth name="max_depth" value=(or(&f.max_depth, "16")) inputmode="numeric"; }
                div { label for="window_days" { "A referral counts for (days)" }
                      input #window_days name="window_days" value=(or(&f.window_days, "30")) inputmode="numeric"; }
            }
            label { input type="checkbox" name="require_purchase" checked[f.require_purchase.is_some()]; " Only people who bought it earn" }
            button.secondary type="submit" formaction="/offers/preview" { "Preview the shares" }
            button #publish type="submit" { "Publish" }
        }
    }
}

/// Offers per page of "My offers".
const OFFERS_PER_PAGE: usize = 50;
/// Sales shown on an offer's page.
const OFFER_SALES: usize = 20;
/// Receipts of the seller's market read to find them: the page costs the same in a market of
/// any size.
const OFFER_SCAN: usize = 2_000;

struct Row {
    id: Id,
    offer: Offer,
    totals: OfferTotals,
}

/// One page of my offers, newest first, with their totals; and how many I have.
fn my_offers(
    store: &passalong_store::Store,
    me: &PublicKey,
    page: usize,
) -> Result<(Vec<Row>, u64), PageError> {
    let total = store.market_count(me, Kind::Offer)?;
    let mut rows = Vec::new();
    let skip = page.saturating_mul(OFFERS_PER_PAGE);
    for e in store
        .newest(me, Some(Kind::Offer))
        .skip(skip)
        .take(OFFERS_PER_PAGE)
    {
        let (_, id, _) = e?;
        if let Some(Body::Offer(o)) = store.attestation(&id)?.map(|a| a.body) {
            if o.seller == *me {
                rows.push(Row {
                    id,
                    totals: store.offer_totals(&id)?,
                    offer: o,
                });
            }
        }
    }
    Ok((rows, total))
}

async fn render(
    s: &WebState,
    me: &SignedIn,
    f: &OfferForm,
    extra: Markup,
    page: usize,
) -> Result<Markup, PageError> {
    let who = me.me();
    let names = names(s, who).await?;
    let store = s.api.store.clone();
    let (rows, total) = blocking(move || my_offers(&store, &who, page)).await?;
    Ok(layout::page(
        me,
        &names,
        "/offers",
        "Offers",
        html! {
            h1 { "Offers" }
            (extra)
            (form(me, f))
            section.card {
                h2 { "My offers" }
                @if total == 0 { p.muted { "You have not published an offer yet." } }
                @else {
                    p.muted { (total) " in all, newest first." }
                    div.scroll { table {
                        thead { tr { th { "Item" } th.num { "Price" } th.num { "Sales" } th.num { "Revenue" } th.num { "Paid to the chain" } } }
                        tbody { @for r in &rows { tr {
                            td { a href={ "/offers/" (r.id.to_hex()) } { (r.offer.title) } }
                            td.num { (layout::money(r.offer.currency, i128::from(r.offer.price_minor))) }
                            td.num { (r.totals.sales) }
                            td.num { (layout::money(r.offer.currency, clamp(r.totals.revenue_minor))) }
                            td.num { (layout::money(r.offer.currency, clamp(r.totals.shares_minor))) }
                        } } }
                    } }
                    (pager("/offers", page, OFFERS_PER_PAGE, usize::try_from(total).unwrap_or(usize::MAX)))
                }
            }
        },
    ))
}

/// An amount summed in u128, as the money formatter takes it.
fn clamp(v: u128) -> i128 {
    i128::try_from(v).unwrap_or(i128::MAX)
}

/// `GET /offers[?page=N]`
pub async fn list(
    State(s): State<WebState>,
    me: SignedIn,
    Query(q): Query<PageQuery>,
) -> Result<Markup, PageError> {
    render(&s, &me, &OfferForm::default(), html! {}, q.page).await
}

/// `POST /offers/preview`: the form again, with the shares of a sample sale.
pub async fn preview_page(s: &WebState, me: &SignedIn, f: &OfferForm) -> Result<Markup, PageError> {
    me.check_csrf(&f.csrf)?;
    let shown = match f.to_new_offer().and_then(|n| Ok(n.offer(me.me(), 0)?)) {
        Ok(o) => match passalong_protocol::validation::check_limits(&Body::Offer(o.clone())) {
            Ok(()) => shares_card(&o),
            Err(r) => html! { p.error role="alert" { (r.to_string()) } },
        },
        Err(e) => html! { p.error role="alert" { (e.message) } },
    };
    render(s, me, f, shown, 0).await
}

/// `POST /offers/preview`
pub async fn preview(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<OfferForm>,
) -> Result<Markup, PageError> {
    preview_page(&s, &me, &f).await
}

/// `POST /offers`: signs and stores the offer, then shows its page.
pub async fn publish(
    State(s): State<WebState>,
    me: SignedIn,
    Form(f): Form<OfferForm>,
) -> Result<Response, PageError> {
    me.check_csrf(&f.csrf)?;
    // A read-only session is refused before the form is read.
    let keys = me.signer(&s)?;
    let new = match f.to_new_offer() {
        Ok(n) => n,
        Err(e) => {
            return Ok((
                e.status,
                render(
                    &s,
                    &me,
                    &f,
                    html! { p.error role="alert" { (e.message) } },
                    0,
                )
                .await?,
            )
                .into_response())
        }
    };
    match publish_offer(&s.api, keys, &new).await {
        Ok(p) => Ok(Redirect::to(&format!("/offers/{}", p.id)).into_response()),
        Err(ApiError {
            status, message, ..
        }) => Ok((
            status,
            render(&s, &me, &f, html! { p.error role="alert" { (message) } }, 0).await?,
        )
            .into_response()),
    }
}

/// `GET /offers/<id>`: the offer, its share link and QR code, its sales and chains.
pub async fn one(
    State(s): State<WebState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let id =
        Id::from_hex(&id).map_err(|_| PageError::bad("expected an offer id of 64 hex digits"))?;
    let who = me.me();
    let names = names(&s, who).await?;
    let store = s.api.store.clone();
    let (offer, sales, totals) = blocking(move || {
        let Some(Body::Offer(o)) = store.attestation(&id)?.map(|a| a.body) else {
            return Err(PageError::not_found(format!("no offer {id} on this node")));
        };
        let sales = earnings::receipts(&store, &o.seller, Some(id), OFFER_SALES, OFFER_SCAN)?;
        Ok((o, sales, store.offer_totals(&id)?))
    })
    .await?;
    let link = s.api.published(&id).await?;
    let c = offer.currency;
    Ok(layout::page(
        &me,
        &names,
        "/offers",
        &offer.title,
        html! {
            h1 { (offer.title) }
            div.grid {
                section.card {
                    p.price { (layout::money(c, i128::from(offer.price_minor))) }
                    p { "Seller: " (layout::key(&names, &offer.seller)) }
                    @if let Some(u) = &offer.checkout_url { p { "Checkout: " a href=(u) rel="noopener noreferrer" { (u) } } }
                    p { (explain(&offer)) }
                    p.muted { "Published " (layout::time(offer.created_at_ms)) }
                }
                (super::pass::link_card(&link, "Share this offer"))
            }
            section.card {
                h2 { "Sales" }
                @if totals.sales > 0 {
                    p { (totals.sales) " sales, " (layout::money(c, clamp(totals.revenue_minor)))
                        " in all; " (layout::money(c, clamp(totals.shares_minor))) " paid to the chains." }
                }
                @if sales.is_empty() && totals.sales == 0 { p.muted { "No sale yet." } }
                @else if sales.is_empty() { p.muted { "None among the market's latest sales." } }
                @else {
                @if totals.sales > sales.len() as u64 { p.muted { "The latest " (sales.len()) ":" } }
                div.scroll { table {
                    thead { tr { th { "When" } th { "Order" } th.num { "Amount" } th.num { "Paid to the chain" } th { "Chain" } } }
                    tbody { @for sale in &sales { tr {
                        td { (layout::time(sale.receipt.created_at_ms)) }
                        td { (sale.receipt.order) }
                        td.num { (layout::money(c, i128::from(sale.receipt.amount_minor))) }
                        td.num { (layout::money(c, i128::from(sale.shares()))) }
                        td { (sale::chain(&names, &who, sale)) }
                    } } }
                } } }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_become_basis_points() {
        assert_eq!(percent_to_bps("10", "x").unwrap(), 1000);
        assert_eq!(percent_to_bps("2.5", "x").unwrap(), 250);
        assert_eq!(percent_to_bps("", "x").unwrap(), 0);
        assert_eq!(percent_to_bps("100", "x").unwrap(), 10_000);
        assert!(percent_to_bps("100.01", "x").is_err());
        assert!(percent_to_bps("-1", "x").is_err());
        assert!(percent_to_bps("ten", "x").is_err());
    }

    #[test]
    fn the_preview_is_the_protocols_split() {
        let f = OfferForm {
            title: "A record".into(),
            price: "20.00".into(),
            currency: "EUR".into(),
            pool_percent: "10".into(),
            rule: "geometric".into(),
            ratio_percent: "50".into(),
            connector_percent: "1".into(),
            ..Default::default()
        };
        let o = f
            .to_new_offer()
            .unwrap()
            .offer(PublicKey([1; 32]), 0)
            .unwrap();
        assert_eq!(o.price_minor, 2000);
        // Pool 200: 100, 50, 25, 12; connector 20; the seller keeps the rest.
        let (shares, connector, seller) = sample(&o, 4);
        assert_eq!(shares, vec![100, 50, 25, 12]);
        assert_eq!(connector, 20);
        assert_eq!(seller, 2000 - 187 - 20);
        assert!(explain(&o).contains("earns 50 % of it"));
        assert_eq!(
            (percent(1000), percent(250), percent(5), percent(0)),
            ("10".into(), "2.5".into(), "0.05".into(), "0".into())
        );
        let bad = OfferForm {
            price: "20.001".into(),
            ..f
        };
        assert!(bad.to_new_offer().is_err());
    }
}
