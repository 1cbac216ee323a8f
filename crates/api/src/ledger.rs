//! Ledgers, equivocations and disputes of a seller.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use passalong_protocol::{Ledger, LedgerEntry};
use serde::{Deserialize, Serialize};

use crate::auth::Actor;
use crate::contacts::Names;
use crate::error::{ApiError, AppJson, AppQuery};
use crate::identity::parse_key;
use crate::offers::SellerQuery;
use crate::state::AppState;
use crate::text::printable;

/// The JSON form of a ledger: `GET /v1/ledger`'s answer, what `ledger --json` prints and what
/// `verify` reports of each seller. Amounts are JSON integers of up to 128 bits (serde_json
/// writes and reads `u128`/`i128` as numbers; read them into this type, not into a
/// `serde_json::Value`, which holds 64 bits).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LedgerInfo {
    /// The seller, hex (`null` for a ledger of no seller).
    pub seller: Option<String>,
    /// The ledger's Merkle root, hex.
    pub root: String,
    /// Its lines, by currency, then participant.
    pub entries: Vec<LedgerLine>,
}

/// One participant's line of a ledger, in one currency (minor units).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LedgerLine {
    /// Currency code.
    pub currency: String,
    /// The participant's key, hex.
    pub participant: String,
    /// Earned from counted sales.
    pub earned: u128,
    /// Taken back by refunds.
    pub refunded: u128,
    /// Paid by settlements.
    pub settled: u128,
    /// Still owed (negative: the seller paid more than was earned).
    pub owed: i128,
}

impl LedgerInfo {
    /// The JSON form of `l`.
    pub fn of(l: &Ledger) -> LedgerInfo {
        LedgerInfo {
            seller: l.seller.map(|s| s.to_hex()),
            root: hex::encode(l.root()),
            entries: l
                .entries
                .iter()
                .map(|e| LedgerLine {
                    currency: e.currency.as_str().to_string(),
                    participant: e.participant.to_hex(),
                    earned: e.earned,
                    refunded: e.refunded,
                    settled: e.settled,
                    owed: e.owed,
                })
                .collect(),
        }
    }
}

/// [`LedgerInfo`] as a `serde_json::Value`, to compare an answer read as one. A `Value` holds
/// 64-bit integers only: an amount beyond that makes this `null` (print [`LedgerInfo`]).
pub fn ledger_json(l: &Ledger) -> serde_json::Value {
    serde_json::to_value(LedgerInfo::of(l)).unwrap_or_default()
}

/// One CSV field: quoted when it holds a comma or a quote, with a leading `'` when it starts
/// like a spreadsheet formula (a contact's name is the user's own text, an order a remote
/// seller's), and without control or reordering characters ([`printable`]: a spreadsheet has
/// no use for them, and a bidirectional override would make a cell read backwards).
pub fn field(text: &str) -> String {
    let text = printable(text);
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.into_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// A ledger as CSV, amounts in major units: `currency,participant,name,earned,refunded,settled,owed`.
pub fn ledger_csv(l: &Ledger, names: &Names) -> String {
    let mut out = String::from("currency,participant,name,earned,refunded,settled,owed\n");
    for e in &l.entries {
        let c = e.currency;
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            c.as_str(),
            e.participant.to_hex(),
            field(names.get(&e.participant).map_or("", String::as_str)),
            c.major(e.earned as i128),
            c.major(e.refunded as i128),
            c.major(e.settled as i128),
            c.major(e.owed),
        ));
    }
    out
}

/// The sales that paid me as CSV, amounts in major units:
/// `receipt,order,offer,title,seller,seller_name,hop,currency,amount,share` (`amount` the
/// sale's, `share` mine; `hop` empty when I was paid as the connector), newest first.
pub fn earnings_csv(earnings: &[crate::earnings::Earning], names: &Names) -> String {
    let mut out =
        String::from("receipt,order,offer,title,seller,seller_name,hop,currency,amount,share\n");
    for e in earnings {
        let name = passalong_protocol::PublicKey::from_hex(&e.seller)
            .ok()
            .and_then(|k| names.get(&k))
            .map_or("", String::as_str);
        let major = |minor: u64| match passalong_protocol::Currency::parse(&e.currency) {
            Some(c) => c.major(i128::from(minor)),
            None => minor.to_string(),
        };
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            field(&e.receipt),
            field(&e.order),
            field(&e.offer),
            field(&e.title),
            field(&e.seller),
            field(name),
            e.hop.map_or(String::new(), |h| h.to_string()),
            field(&e.currency),
            major(e.amount_minor),
            major(e.share_minor),
        ));
    }
    out
}

/// What the seller owes: the ledger's lines with something owed, the seller's own left out.
pub fn payouts(l: &Ledger) -> impl Iterator<Item = &LedgerEntry> {
    l.entries
        .iter()
        .filter(|e| e.owed > 0 && Some(e.participant) != l.seller)
}

/// What the seller owes as a payout batch: `participant,name,currency,amount` (major units),
/// one line per participant and currency with something owed ([`payouts`]).
pub fn payouts_csv(l: &Ledger, names: &Names) -> String {
    let mut out = String::from("participant,name,currency,amount\n");
    for e in payouts(l) {
        out.push_str(&format!(
            "{},{},{},{}\n",
            e.participant.to_hex(),
            field(names.get(&e.participant).map_or("", String::as_str)),
            e.currency.as_str(),
            e.currency.major(e.owed),
        ));
    }
    out
}

/// What a seller owes (`GET /v1/payouts`' answer).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Payouts {
    /// The seller, hex.
    pub seller: Option<String>,
    /// One line per participant and currency with something owed.
    pub payouts: Vec<Payout>,
}

/// What the seller owes one participant in one currency.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// The participant's key, hex.
    pub participant: String,
    /// Currency code.
    pub currency: String,
    /// Amount owed, minor units.
    pub amount_minor: u128,
}

impl Payouts {
    /// What the seller of `l` owes ([`payouts`]).
    pub fn of(l: &Ledger) -> Payouts {
        Payouts {
            seller: l.seller.map(|s| s.to_hex()),
            payouts: payouts(l)
                .map(|e| Payout {
                    participant: e.participant.to_hex(),
                    currency: e.currency.as_str().to_string(),
                    amount_minor: e.owed.unsigned_abs(),
                })
                .collect(),
        }
    }
}

/// Two receipts of one order (`GET /v1/equivocations`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Equivocation {
    /// The receipt that counts, hex.
    pub counted: String,
    /// The other one, hex.
    pub other: String,
}

/// `GET /v1/equivocations` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Equivocations {
    /// The seller's equivocations.
    pub equivocations: Vec<Equivocation>,
}

/// A purchase claim that contradicts the counted receipt of its order (`GET /v1/disputes`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Dispute {
    /// The claim, hex.
    pub claim: String,
    /// The receipt it is about, hex.
    pub receipt: String,
    /// The claim's buyer is the receipt's.
    pub buyer_matches: bool,
    /// The referral the buyer says they came through, hex.
    pub claimed_via: Option<String>,
    /// The referral the receipt names, hex.
    pub recorded_via: Option<String>,
}

/// `GET /v1/disputes` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Disputes {
    /// The seller's disputes.
    pub disputes: Vec<Dispute>,
}

/// `?seller=HEX&format=json|csv&as=HEX` of the ledger routes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    seller: Option<String>,
    format: Option<String>,
    #[serde(rename = "as")]
    as_: Option<String>,
}

impl LedgerQuery {
    /// The seller asked for, or the node's identity; whether CSV was asked for.
    fn parse(&self, s: &AppState) -> Result<(passalong_protocol::PublicKey, bool), ApiError> {
        let seller = match &self.seller {
            Some(h) => parse_key(h, "seller")?,
            None => s.identities.default_key(),
        };
        let csv = match self.format.as_deref() {
            None | Some("json") => false,
            Some("csv") => true,
            Some(f) => {
                return Err(ApiError::bad_request(format!(
                    "format {f:?}: expected json or csv"
                )))
            }
        };
        Ok((seller, csv))
    }
}

/// The seller's ledger, read off the async workers.
async fn read_ledger(
    s: &AppState,
    seller: passalong_protocol::PublicKey,
) -> Result<Ledger, ApiError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || store.ledger(&seller))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

/// The contact names of the identity `as_` (the default one without it), for a CSV.
async fn names_of(
    s: &AppState,
    actor: Option<&Actor>,
    as_: Option<&str>,
) -> Result<std::sync::Arc<Names>, ApiError> {
    let owner = crate::auth::reader(s, actor, as_)?;
    let c = s.contacts.clone();
    Ok(tokio::task::spawn_blocking(move || c.of(&owner))
        .await
        .map_err(ApiError::internal)??)
}

/// A CSV answer (what the dashboard's downloads hold, byte for byte).
fn csv_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// A seller's ledger answered as the query asks: JSON built by `json`, or CSV by `csv`.
async fn ledger_answer<J: serde::Serialize>(
    s: &AppState,
    actor: Option<&Actor>,
    q: &LedgerQuery,
    json: fn(&Ledger) -> J,
    csv: fn(&Ledger, &Names) -> String,
) -> Result<Response, ApiError> {
    let (seller, as_csv) = q.parse(s)?;
    let l = read_ledger(s, seller).await?;
    if as_csv {
        let names = names_of(s, actor, q.as_.as_deref()).await?;
        return Ok(csv_response(csv(&l, &names)));
    }
    Ok(AppJson(json(&l)).into_response())
}

/// `GET /v1/ledger[?seller=HEX][&format=csv]`
pub async fn ledger(
    State(s): State<AppState>,
    actor: Option<Actor>,
    AppQuery(q): AppQuery<LedgerQuery>,
) -> Result<Response, ApiError> {
    ledger_answer(&s, actor.as_ref(), &q, LedgerInfo::of, ledger_csv).await
}

/// `GET /v1/payouts[?seller=HEX][&format=csv]`: what the seller owes, per participant and
/// currency.
pub async fn payouts_route(
    State(s): State<AppState>,
    actor: Option<Actor>,
    AppQuery(q): AppQuery<LedgerQuery>,
) -> Result<Response, ApiError> {
    ledger_answer(&s, actor.as_ref(), &q, Payouts::of, payouts_csv).await
}

/// `GET /v1/equivocations`
pub async fn equivocations(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<SellerQuery>,
) -> Result<AppJson<Equivocations>, ApiError> {
    let seller = q.seller(&s)?;
    let v = s
        .with_store(move |store| store.equivocations(&seller))
        .await?;
    Ok(AppJson(Equivocations {
        equivocations: v
            .iter()
            .map(|e| Equivocation {
                counted: e.counted.to_hex(),
                other: e.other.to_hex(),
            })
            .collect(),
    }))
}

/// `GET /v1/disputes`
pub async fn disputes(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<SellerQuery>,
) -> Result<AppJson<Disputes>, ApiError> {
    let seller = q.seller(&s)?;
    let v = s.with_store(move |store| store.disputes(&seller)).await?;
    Ok(AppJson(Disputes {
        disputes: v
            .iter()
            .map(|d| Dispute {
                claim: d.claim.to_hex(),
                receipt: d.receipt.to_hex(),
                buyer_matches: d.buyer_matches,
                claimed_via: d.claimed_via.map(|i| i.to_hex()),
                recorded_via: d.recorded_via.map(|i| i.to_hex()),
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use passalong_protocol::{Currency, LedgerEntry, PublicKey};

    #[test]
    fn csv_in_major_units_with_names_escaped() {
        let seller = PublicKey([9; 32]);
        let anna = PublicKey([1; 32]);
        let eur = Currency::parse("EUR").unwrap();
        let l = Ledger::from_entries(
            seller,
            vec![
                LedgerEntry::new(eur, anna, 1234, 0, 200),
                LedgerEntry::new(eur, seller, 5, 0, 0),
            ],
        );
        let names = Names::from([(anna, "=Anna, \"A\"".to_string())]);
        let csv = ledger_csv(&l, &names);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "currency,participant,name,earned,refunded,settled,owed"
        );
        assert!(
            lines.contains(
                &format!(
                    "EUR,{},\"'=Anna, \"\"A\"\"\",12.34,0.00,2.00,10.34",
                    anna.to_hex()
                )
                .as_str()
            ),
            "{csv}"
        );
        let p = payouts_csv(&l, &Names::new());
        assert_eq!(
            payouts(&l).count(),
            1,
            "the seller's own line is not a payout"
        );
        assert_eq!(
            p,
            format!(
                "participant,name,currency,amount\n{},,EUR,10.34\n",
                anna.to_hex()
            )
        );
    }

    #[test]
    fn amounts_beyond_64_bits_stay_json_integers_both_ways() {
        let eur = Currency::parse("EUR").unwrap();
        let mut l = Ledger::from_entries(
            PublicKey([9; 32]),
            vec![LedgerEntry::new(eur, PublicKey([1; 32]), 1, 0, 0)],
        );
        l.entries[0].earned = u128::MAX;
        l.entries[0].refunded = u128::from(u64::MAX) + 1;
        l.entries[0].owed = i128::MIN;
        let info = LedgerInfo::of(&l);
        let text = serde_json::to_string(&info).unwrap();
        assert!(
            text.contains(&format!("\"earned\":{}", u128::MAX)),
            "a number, not a string: {text}"
        );
        assert!(text.contains(&format!("\"owed\":{}", i128::MIN)), "{text}");
        let back: LedgerInfo = serde_json::from_str(&text).unwrap();
        assert_eq!(back, info);
        // Within 64 bits, the same JSON as a Value.
        let small = Ledger::from_entries(
            PublicKey([9; 32]),
            vec![LedgerEntry::new(eur, PublicKey([1; 32]), 1234, 0, 200)],
        );
        let v = ledger_json(&small);
        assert_eq!(v["entries"][0]["earned"], 1234);
        assert_eq!(v["entries"][0]["owed"], 1034);
        let p: Payouts =
            serde_json::from_str(&serde_json::to_string(&Payouts::of(&small)).unwrap()).unwrap();
        assert_eq!(p.payouts[0].amount_minor, 1034);
    }

    #[test]
    fn earnings_csv_has_printable_fields_in_major_units() {
        let shop = PublicKey([4; 32]);
        let e = crate::earnings::Earning {
            receipt: "ab".repeat(32),
            order: "-A,1\u{1b}[2J\u{202E}".into(),
            offer: "cd".repeat(32),
            title: "Tea \"green\"\n".into(),
            seller: shop.to_hex(),
            currency: "JPY".into(),
            amount_minor: 1200,
            hop: None,
            share_minor: 120,
            created_at_ms: 1,
        };
        let names = Names::from([(shop, "Shop".to_string())]);
        let csv = earnings_csv(std::slice::from_ref(&e), &names);
        assert_eq!(
            csv.lines().nth(1),
            Some(
                format!(
                    "{},\"'-A,1\u{FFFD}[2J\u{FFFD}\",{},\"Tea \"\"green\"\"\u{FFFD}\",{},Shop,,JPY,1200,120",
                    e.receipt,
                    e.offer,
                    e.seller
                )
                .as_str()
            ),
            "{csv}"
        );
        let eur = crate::earnings::Earning {
            currency: "EUR".into(),
            hop: Some(2),
            amount_minor: 2000,
            share_minor: 50,
            ..e
        };
        assert!(earnings_csv(&[eur], &Names::new()).ends_with(",,2,EUR,20.00,0.50\n"));
    }
}
