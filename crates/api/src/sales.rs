//! The seller's side: receipts, refunds, settlements.
//!
//! A node never makes its own key equivocate: before it signs, it looks for what it already
//! signed for the same thing — the receipt of the (seller, order), the refund of the receipt,
//! the settlement of the (seller, reference). A repeat with the same content answers the
//! existing attestation (`200`, `"existing": true`); a request that contradicts it is refused
//! (`409 conflict`, naming it) and nothing is signed. The look-up and the signature of one
//! such key run under a lock, so that two concurrent requests cannot both sign.

use std::fmt::Display;
use std::hash::{DefaultHasher, Hash, Hasher};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use passalong_protocol::attestation::{Body, Receipt, Refund, Settlement};
use passalong_protocol::{validation, Attestation, Id, Kind, PublicKey};
use passalong_store::{Status, MAX_IDEMPOTENCY_KEY};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};

use crate::auth::Actor;
use crate::error::{ApiError, AppJson};
use crate::identity::{parse_currency, parse_id, parse_key};
use crate::referrals::resolve;
use crate::signer::Signer;
use crate::state::AppState;
use crate::writer::now_ms;

/// Locks of the check-then-sign, by hash of what they guard: requests about different orders
/// rarely share one, so concurrent receipts still share group commits.
const STRIPES: usize = 256;
static LOCKS: [Mutex<()>; STRIPES] = [const { Mutex::const_new(()) }; STRIPES];

/// The stripe of `what`.
fn stripe(what: impl Hash) -> usize {
    let mut h = DefaultHasher::new();
    what.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

/// Takes the stripes in ascending order (so that two requests never wait for each other).
async fn lock(mut stripes: Vec<usize>) -> Vec<MutexGuard<'static, ()>> {
    stripes.sort_unstable();
    stripes.dedup();
    let mut guards = Vec::with_capacity(stripes.len());
    for i in stripes {
        guards.push(LOCKS[i].lock().await);
    }
    guards
}

/// What `POST /v1/receipts`, `/v1/refunds` and `/v1/settlements` answer: the attestation
/// signed now, or the one already signed for the same thing.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SaleAnswer {
    /// The attestation's id, hex.
    pub id: String,
    /// Always `valid`.
    pub status: String,
    /// Receipts: envelopes of the `via` link that were new here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<usize>,
    /// Settlements: the ledger root it was signed against, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_root: Option<String>,
    /// It was signed before (the answer is 200, not 201).
    pub existing: bool,
}

impl SaleAnswer {
    /// The valid attestation `id`.
    fn valid(id: Id) -> SaleAnswer {
        SaleAnswer {
            id: id.to_hex(),
            status: "valid".into(),
            imported: None,
            ledger_root: None,
            existing: false,
        }
    }
}

/// Answers a new attestation with 201, an existing one with 200; `"existing"` says which.
fn answer(existing: bool, v: SaleAnswer) -> (StatusCode, AppJson<SaleAnswer>) {
    let status = if existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, AppJson(SaleAnswer { existing, ..v }))
}

/// The header `Idempotency-Key`, if given: 1 to 255 bytes of printable ASCII.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "Idempotency-Key: expected 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        ))
    };
    let k = v.to_str().map_err(|_| bad())?.trim();
    if k.is_empty()
        || k.len() > MAX_IDEMPOTENCY_KEY
        || !k.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(bad());
    }
    Ok(Some(k.to_string()))
}

/// A stored valid attestation, or `None`.
async fn valid(s: &AppState, id: Id) -> Result<Option<Attestation>, ApiError> {
    s.with_store(move |store| {
        if store.status(&id)? != Some(Status::Valid) {
            return Ok(None);
        }
        store.attestation(&id)
    })
    .await
}

/// A seller's valid attestations of one kind (a scan of the market's index).
async fn of_kind(
    s: &AppState,
    seller: PublicKey,
    kind: Kind,
) -> Result<Vec<Attestation>, ApiError> {
    s.with_store(move |store| store.market_of_kind(&seller, kind))
        .await
}

/// Signs and stores `body`; with an idempotency key, the key is recorded first (the store's
/// flush of the attestation makes both durable) and forgotten if the attestation is refused.
async fn sign_and_store(
    s: &AppState,
    body: Body,
    keys: Signer<'_>,
    idempotency: Option<&str>,
) -> Result<Attestation, ApiError> {
    let Some(k) = idempotency else {
        return s.sign_and_store(body, keys).await;
    };
    // Signatures are deterministic: this is the id the store will get.
    let id = keys.sign(body.clone()).id;
    let key = k.to_string();
    s.with_store(move |store| store.set_idempotent(&key, Some(&id)))
        .await?;
    let stored = s.sign_and_store(body, keys).await;
    if stored.is_err() {
        let key = k.to_string();
        s.with_store(move |store| store.set_idempotent(&key, None))
            .await?;
    }
    stored
}

/// Notes `field` in `d` if the stored value differs from the one asked for.
fn differ(d: &mut Vec<String>, field: &str, stored: impl Display, asked: impl Display) {
    let (stored, asked) = (stored.to_string(), asked.to_string());
    if stored != asked {
        d.push(format!("{field} {stored} (this request: {asked})"));
    }
}

/// What differs between the receipt asked for and a stored one (empty: the same sale).
fn receipt_diff(asked: &Receipt, stored: &Receipt) -> Vec<String> {
    let hex = |v: &Option<Id>| v.map_or("none".to_string(), |i| i.to_hex());
    let mut d = Vec::new();
    differ(&mut d, "seller", stored.seller, asked.seller);
    differ(&mut d, "offer", stored.offer, asked.offer);
    differ(
        &mut d,
        "order",
        format!("{:?}", stored.order),
        format!("{:?}", asked.order),
    );
    differ(
        &mut d,
        "amount_minor",
        stored.amount_minor,
        asked.amount_minor,
    );
    differ(&mut d, "buyer", stored.buyer, asked.buyer);
    differ(&mut d, "via", hex(&stored.via), hex(&asked.via));
    d
}

/// `POST /v1/receipts` body (what `passalong receipt` sends).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct NewReceipt {
    /// The offer sold, hex.
    pub offer: String,
    /// The seller's order id.
    pub order: String,
    /// Amount paid, minor units.
    pub amount_minor: u64,
    /// The buyer's key, hex.
    pub buyer: String,
    /// The share link (or referral id) the buyer came through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Sign as this identity (hex) instead of the default.
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_: Option<String>,
}

/// `POST /v1/receipts`
pub async fn receipt(
    State(s): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    AppJson(req): AppJson<NewReceipt>,
) -> Result<(StatusCode, AppJson<SaleAnswer>), ApiError> {
    let keys = actor.signer(&s, req.as_.as_deref())?;
    let offer = parse_id(&req.offer, "offer")?;
    let buyer = parse_key(&req.buyer, "buyer")?;
    let key = idempotency_key(&headers)?;
    let (via, imported) = match &req.via {
        None => (None, 0),
        Some(v) => {
            let (via_offer, referral, imported) = resolve(&s, v, "via").await?;
            if via_offer != offer {
                return Err(ApiError::bad_request(format!(
                    "via: the link is for offer {via_offer}, not {offer}"
                )));
            }
            (referral, imported)
        }
    };
    if !matches!(s.attestation(&offer, "offer").await?.body, Body::Offer(_)) {
        return Err(ApiError::bad_request(format!(
            "offer: {offer} is not an offer"
        )));
    }
    let asked = Receipt {
        seller: keys.public(),
        offer,
        order: req.order,
        amount_minor: req.amount_minor,
        buyer,
        via,
        created_at_ms: now_ms(),
    };
    let body = Body::Receipt(asked.clone());
    validation::check_limits(&body).map_err(|r| ApiError::invalid(r.code(), r.to_string()))?;
    let existing = |id: Id| {
        answer(
            true,
            SaleAnswer {
                imported: Some(imported),
                ..SaleAnswer::valid(id)
            },
        )
    };
    let mut stripes = vec![stripe(("order", &asked.seller, &asked.order))];
    if let Some(k) = &key {
        stripes.push(stripe(("idempotency", k)));
    }
    let _locked = lock(stripes).await;

    if let Some(k) = &key {
        // A key names the receipt of its first request (if that was stored).
        let key = k.clone();
        if let Some(id) = s.with_store(move |store| store.idempotent(&key)).await? {
            if let Some(Body::Receipt(r)) = valid(&s, id).await?.map(|a| a.body) {
                let diff = receipt_diff(&asked, &r);
                if diff.is_empty() {
                    return Ok(existing(id));
                }
                return Err(ApiError::conflict(format!(
                    "Idempotency-Key {k:?} was used for receipt {id}, which has {}: use a new key for another sale",
                    diff.join(", ")
                )));
            }
        }
    }
    let (seller, order) = (asked.seller, asked.order.clone());
    let counted = s
        .with_store(move |store| {
            let Some(id) = store.receipt_of_order(&seller, &order)? else {
                return Ok(None);
            };
            Ok::<_, passalong_store::StoreError>(store.attestation(&id)?.map(|a| (id, a.body)))
        })
        .await?;
    if let Some((id, Body::Receipt(r))) = counted {
        let diff = receipt_diff(&asked, &r);
        if !diff.is_empty() {
            return Err(ApiError::conflict(format!(
                "order {:?} already has receipt {id}, which has {}: a seller signs one receipt per order (a second would equivocate); refund it and use a new order id",
                asked.order,
                diff.join(", ")
            )));
        }
        if let Some(k) = key.clone() {
            s.with_store(move |store| store.set_idempotent(&k, Some(&id)))
                .await?;
        }
        return Ok(existing(id));
    }
    let att = sign_and_store(&s, body, keys, key.as_deref()).await?;
    Ok(answer(
        false,
        SaleAnswer {
            imported: Some(imported),
            ..SaleAnswer::valid(att.id)
        },
    ))
}

/// `POST /v1/refunds` body (what `passalong refund` sends).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    /// The receipt refunded, hex.
    pub receipt: String,
    /// Sign as this identity (hex) instead of the default.
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_: Option<String>,
}

/// `POST /v1/refunds`: one refund per receipt (a repeat answers the existing one).
pub async fn refund(
    State(s): State<AppState>,
    actor: Actor,
    AppJson(req): AppJson<NewRefund>,
) -> Result<(StatusCode, AppJson<SaleAnswer>), ApiError> {
    let keys = actor.signer(&s, req.as_.as_deref())?;
    let receipt = parse_id(&req.receipt, "receipt")?;
    let r = s.attestation(&receipt, "receipt").await?;
    let seller = keys.public();
    let _locked = lock(vec![stripe(("refund", &receipt))]).await;
    // Only the receipt's seller can refund it: another signer is refused by the protocol.
    let mine = matches!(&r.body, Body::Receipt(r) if r.seller == seller);
    if mine
        && s.with_store(move |store| store.is_refunded(&receipt))
            .await?
    {
        let found = of_kind(&s, seller, Kind::Refund)
            .await?
            .into_iter()
            .find(|a| matches!(&a.body, Body::Refund(f) if f.receipt == receipt));
        match found {
            Some(a) => return Ok(answer(true, SaleAnswer::valid(a.id))),
            None => tracing::warn!(%receipt, "a refunded receipt without a refund in its market"),
        }
    }
    let att = s
        .sign_and_store(
            Body::Refund(Refund {
                seller,
                receipt,
                created_at_ms: now_ms(),
            }),
            keys,
        )
        .await?;
    Ok(answer(false, SaleAnswer::valid(att.id)))
}

/// `POST /v1/settlements` body; also what the dashboard's settlement form fills in and what
/// `passalong settle` sends.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NewSettlement {
    /// Who was paid (hex key).
    pub participant: String,
    /// Amount paid, minor units.
    pub amount_minor: u64,
    /// Currency code.
    pub currency: String,
    /// The payment's reference: one reference names one payment.
    pub reference: String,
    /// Start of the period settled.
    #[serde(default)]
    pub period_start_ms: u64,
    /// End of the period settled (default: now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_end_ms: Option<u64>,
    /// Sign as this identity (hex) instead of the default.
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub as_: Option<String>,
}

/// What differs between the settlement asked for and a stored one of the same reference
/// (empty: the same payment). A period end not given matches any.
fn settlement_diff(asked: &Settlement, end_given: bool, stored: &Settlement) -> Vec<String> {
    let mut d = Vec::new();
    differ(&mut d, "participant", stored.participant, asked.participant);
    differ(
        &mut d,
        "amount_minor",
        stored.amount_minor,
        asked.amount_minor,
    );
    differ(
        &mut d,
        "currency",
        stored.currency.as_str(),
        asked.currency.as_str(),
    );
    differ(
        &mut d,
        "period_start_ms",
        stored.period_start_ms,
        asked.period_start_ms,
    );
    if end_given {
        differ(
            &mut d,
            "period_end_ms",
            stored.period_end_ms,
            asked.period_end_ms,
        );
    }
    d
}

/// `POST /v1/settlements`: a seller's `reference` names one payment.
pub async fn settle(
    State(s): State<AppState>,
    actor: Actor,
    AppJson(req): AppJson<NewSettlement>,
) -> Result<(StatusCode, AppJson<SaleAnswer>), ApiError> {
    let keys = actor.signer(&s, req.as_.as_deref())?;
    settle_as(&s, keys, &req).await
}

/// Signs `keys`' settlement (or finds the same payment already settled: 200, not 201).
pub async fn settle_as(
    s: &AppState,
    keys: impl Into<Signer<'_>>,
    req: &NewSettlement,
) -> Result<(StatusCode, AppJson<SaleAnswer>), ApiError> {
    let keys = keys.into();
    let participant = parse_key(&req.participant, "participant")?;
    let currency = parse_currency(&req.currency)?;
    let seller = keys.public();
    let now = now_ms();
    let mut asked = Settlement {
        seller,
        participant,
        amount_minor: req.amount_minor,
        currency,
        period_start_ms: req.period_start_ms,
        period_end_ms: req.period_end_ms.unwrap_or(now),
        reference: req.reference.clone(),
        ledger_root: [0; 32],
        created_at_ms: now,
    };
    validation::check_limits(&Body::Settlement(asked.clone()))
        .map_err(|r| ApiError::invalid(r.code(), r.to_string()))?;
    let _locked = lock(vec![stripe(("settlement", &seller, &asked.reference))]).await;
    let mut conflicting = None;
    for a in of_kind(s, seller, Kind::Settlement).await? {
        let Body::Settlement(st) = a.body else {
            continue;
        };
        if st.seller != seller || st.reference != asked.reference {
            continue;
        }
        let diff = settlement_diff(&asked, req.period_end_ms.is_some(), &st);
        if diff.is_empty() {
            return Ok(answer(
                true,
                SaleAnswer {
                    ledger_root: Some(hex::encode(st.ledger_root)),
                    ..SaleAnswer::valid(a.id)
                },
            ));
        }
        conflicting.get_or_insert((a.id, diff));
    }
    if let Some((id, diff)) = conflicting {
        return Err(ApiError::conflict(format!(
            "reference {:?} was already settled by settlement {id}, which has {}: a reference names one payment; use the payment's own reference",
            asked.reference,
            diff.join(", ")
        )));
    }
    asked.ledger_root = s
        .with_store(move |store| store.ledger(&seller))
        .await?
        .root();
    let root = asked.ledger_root;
    // Dated once the root is read: what the root counts was created before it.
    let now = now_ms();
    asked.created_at_ms = now;
    asked.period_end_ms = req.period_end_ms.unwrap_or(now);
    let att = s.sign_and_store(Body::Settlement(asked), keys).await?;
    Ok(answer(
        false,
        SaleAnswer {
            ledger_root: Some(hex::encode(root)),
            ..SaleAnswer::valid(att.id)
        },
    ))
}
