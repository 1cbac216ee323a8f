//! Sales that paid me: every counted receipt whose payout credited an identity, newest first,
//! with the chain it came through. One home for the dashboard's "latest sales that paid me",
//! the offer pages' sales and `GET /v1/earnings` (what `passalong earnings` prints).

use axum::extract::State;
use passalong_protocol::attestation::{Body, Receipt};
use passalong_protocol::{Attestation, Currency, Id, Kind, PublicKey};
use passalong_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::auth::Actor;
use crate::error::{ApiError, AppJson, AppQuery};
use crate::identity::parse_key;
use crate::state::AppState;

/// One receipt with what it paid.
#[derive(Debug, Clone)]
pub struct Sale {
    /// The receipt's id.
    pub id: Id,
    /// The receipt.
    pub receipt: Receipt,
    /// The offer's title.
    pub title: String,
    /// The offer's currency.
    pub currency: Currency,
    /// Hops the offer pays at most.
    pub max_depth: u8,
    /// The referrers of its chain, nearest the seller first (hop n … hop 1).
    pub chain: Vec<PublicKey>,
    /// What it credited, per participant (hops nearest the buyer first, then the connector).
    pub credits: Vec<(PublicKey, u64)>,
    /// It counts (the counted receipt of its order, with a valid chain).
    pub counted: bool,
}

impl Sale {
    /// What `who` earned from it.
    pub fn paid(&self, who: &PublicKey) -> u64 {
        self.credits
            .iter()
            .filter(|(k, _)| k == who)
            .map(|(_, a)| *a)
            .sum()
    }

    /// Every share it paid.
    pub fn shares(&self) -> u64 {
        self.credits.iter().map(|(_, a)| *a).sum()
    }

    /// `who`'s place in the chain as a paid hop, 1 = nearest the buyer: the nearest place
    /// they hold within the hops the offer pays (the protocol pays a key once, there). `None`
    /// if they hold none: what they earned, they earned as the connector.
    pub fn hop(&self, who: &PublicKey) -> Option<u8> {
        let pos = self.chain.iter().rev().position(|k| k == who)? + 1;
        u8::try_from(pos)
            .ok()
            .filter(|&p| p <= self.max_depth && self.paid(who) > 0)
    }
}

/// The sale behind a stored receipt (`None` if `a` is not a receipt or its offer is not held).
pub fn load(store: &Store, a: Attestation) -> Result<Option<Sale>, StoreError> {
    let Body::Receipt(receipt) = a.body else {
        return Ok(None);
    };
    let (title, currency, max_depth) = match store.attestation(&receipt.offer)?.map(|o| o.body) {
        Some(Body::Offer(o)) => (o.title, o.currency, o.policy.max_depth),
        _ => return Ok(None),
    };
    let chain = match receipt.via {
        None => Vec::new(),
        Some(via) => store
            .chain(&via)?
            .into_iter()
            .filter_map(|a| match a.body {
                Body::Referral(r) => Some(r.referrer),
                _ => None,
            })
            .collect(),
    };
    let credits = store.credits(&a.id)?;
    Ok(Some(Sale {
        id: a.id,
        receipt,
        title,
        currency,
        max_depth,
        chain,
        counted: credits.is_some(),
        credits: credits.unwrap_or_default(),
    }))
}

/// The receipts of `seller`'s market, newest first, at most `limit` (of `offer` only, if
/// given), among the market's `scan` newest receipts: the cost is that of the receipts read,
/// whatever the market's size.
pub fn receipts(
    store: &Store,
    seller: &PublicKey,
    offer: Option<Id>,
    limit: usize,
    scan: usize,
) -> Result<Vec<Sale>, StoreError> {
    let mut out = Vec::new();
    for e in store.newest(seller, Some(Kind::Receipt)).take(scan) {
        if out.len() >= limit {
            break;
        }
        let (_, id, _) = e?;
        let Some(a) = store.attestation(&id)? else {
            continue;
        };
        if offer.is_some_and(|o| !matches!(&a.body, Body::Receipt(r) if r.offer == o)) {
            continue;
        }
        if let Some(s) = load(store, a)? {
            out.push(s);
        }
    }
    Ok(out)
}

/// The markets (sellers) where `who` has a ledger line: those that paid them or settled with
/// them.
pub fn markets_of(store: &Store, who: &PublicKey) -> Result<Vec<PublicKey>, StoreError> {
    let mut out: Vec<PublicKey> = store.lines_of(who)?.into_iter().map(|(s, _)| s).collect();
    out.dedup();
    Ok(out)
}

/// The sales that paid `who`, newest first, at most `limit`: in `seller`'s market, or in every
/// market where `who` has a ledger line; among each market's `scan` newest receipts.
pub fn paid_to(
    store: &Store,
    who: &PublicKey,
    seller: Option<PublicKey>,
    limit: usize,
    scan: usize,
) -> Result<Vec<Sale>, StoreError> {
    let markets = match seller {
        Some(s) => vec![s],
        None => markets_of(store, who)?,
    };
    let mut out = Vec::new();
    for m in markets {
        let mut found = 0;
        for e in store.newest(&m, Some(Kind::Receipt)).take(scan) {
            if found >= limit {
                break;
            }
            let (_, id, _) = e?;
            let paid = store
                .credits(&id)?
                .is_some_and(|c| c.iter().any(|(k, a)| k == who && *a > 0));
            if !paid {
                continue;
            }
            if let Some(a) = store.attestation(&id)? {
                if let Some(s) = load(store, a)? {
                    out.push(s);
                    found += 1;
                }
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse((s.receipt.created_at_ms, s.id)));
    out.truncate(limit);
    Ok(out)
}

/// One sale that paid me, as `GET /v1/earnings` answers it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Earning {
    /// The receipt's id (hex).
    pub receipt: String,
    /// The seller's order id.
    pub order: String,
    /// The offer's id (hex).
    pub offer: String,
    /// The offer's title.
    pub title: String,
    /// The seller (hex).
    pub seller: String,
    /// The offer's currency.
    pub currency: String,
    /// The sale's amount, minor units.
    pub amount_minor: u64,
    /// My place in the chain (1 = nearest the buyer); `None` when I was paid as the connector.
    pub hop: Option<u8>,
    /// What the sale paid me, minor units.
    pub share_minor: u64,
    /// When the receipt was signed.
    pub created_at_ms: u64,
}

impl Earning {
    /// What `sale` paid `who`.
    pub fn of(sale: &Sale, who: &PublicKey) -> Earning {
        Earning {
            receipt: sale.id.to_hex(),
            order: sale.receipt.order.clone(),
            offer: sale.receipt.offer.to_hex(),
            title: sale.title.clone(),
            seller: sale.receipt.seller.to_hex(),
            currency: sale.currency.as_str().to_string(),
            amount_minor: sale.receipt.amount_minor,
            hop: sale.hop(who),
            share_minor: sale.paid(who),
            created_at_ms: sale.receipt.created_at_ms,
        }
    }
}

/// `GET /v1/earnings` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Earnings {
    /// Newest first.
    pub earnings: Vec<Earning>,
}

/// `?seller=HEX&limit=N&as=HEX`
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct EarningsQuery {
    /// Only this seller's market.
    pub seller: Option<String>,
    /// At most this many (default: every one).
    pub limit: Option<usize>,
    /// Whose earnings: an identity the node holds (default: the node's).
    #[serde(rename = "as")]
    pub as_: Option<String>,
}

/// `GET /v1/earnings`: the sales that paid an identity of this node, newest first.
pub async fn earnings(
    State(s): State<AppState>,
    actor: Option<Actor>,
    AppQuery(q): AppQuery<EarningsQuery>,
) -> Result<AppJson<Earnings>, ApiError> {
    let who = crate::auth::reader(&s, actor.as_ref(), q.as_.as_deref())?;
    let seller = q
        .seller
        .as_deref()
        .map(|h| parse_key(h, "seller"))
        .transpose()?;
    let limit = q.limit.unwrap_or(usize::MAX);
    let store = s.store.clone();
    let sales =
        tokio::task::spawn_blocking(move || paid_to(&store, &who, seller, limit, usize::MAX))
            .await
            .map_err(ApiError::internal)??;
    Ok(AppJson(Earnings {
        earnings: sales.iter().map(|s| Earning::of(s, &who)).collect(),
    }))
}
