//! Ledgers, equivocations and disputes of a seller.

use axum::extract::State;
use passalong_protocol::Ledger;
use serde_json::{json, Value};

use crate::contacts::Names;
use crate::error::{ApiError, AppJson, AppQuery};
use crate::offers::SellerQuery;
use crate::state::AppState;

/// The JSON form of a ledger (also what `ledger --json` prints).
pub fn ledger_json(l: &Ledger) -> Value {
    json!({
        "seller": l.seller.map(|s| s.to_hex()),
        "root": hex::encode(l.root()),
        "entries": l.entries.iter().map(|e| json!({
            "currency": e.currency.as_str(), "participant": e.participant.to_hex(),
            "earned": e.earned, "refunded": e.refunded, "settled": e.settled, "owed": e.owed,
        })).collect::<Vec<_>>(),
    })
}

/// One CSV field: quoted when it holds a comma, a quote or a line break, and with a leading
/// `'` when it starts like a spreadsheet formula (a contact's name is the user's own text).
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
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

/// What the seller owes as a payout batch: `participant,name,currency,amount` (major units),
/// one line per participant and currency with something owed; the seller's own lines left out.
pub fn payouts_csv(l: &Ledger, names: &Names) -> String {
    let mut out = String::from("participant,name,currency,amount\n");
    for e in l
        .entries
        .iter()
        .filter(|e| e.owed > 0 && Some(e.participant) != l.seller)
    {
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

/// `GET /v1/ledger`
pub async fn ledger(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<SellerQuery>,
) -> Result<AppJson<Value>, ApiError> {
    let seller = q.seller(&s)?;
    let store = s.store.clone();
    let l = tokio::task::spawn_blocking(move || store.ledger(&seller))
        .await
        .map_err(ApiError::internal)??;
    Ok(AppJson(ledger_json(&l)))
}

/// `GET /v1/equivocations`
pub async fn equivocations(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<SellerQuery>,
) -> Result<AppJson<Value>, ApiError> {
    let seller = q.seller(&s)?;
    let v = s.store.equivocations(&seller)?;
    Ok(AppJson(json!({"equivocations": v.iter().map(|e| json!({
        "counted": e.counted.to_hex(), "other": e.other.to_hex(),
    })).collect::<Vec<_>>()})))
}

/// `GET /v1/disputes`
pub async fn disputes(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<SellerQuery>,
) -> Result<AppJson<Value>, ApiError> {
    let seller = q.seller(&s)?;
    let v = s.store.disputes(&seller)?;
    Ok(AppJson(json!({"disputes": v.iter().map(|d| json!({
        "claim": d.claim.to_hex(), "receipt": d.receipt.to_hex(), "buyer_matches": d.buyer_matches,
        "claimed_via": d.claimed_via.map(|i| i.to_hex()), "recorded_via": d.recorded_via.map(|i| i.to_hex()),
    })).collect::<Vec<_>>()})))
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
            p,
            format!(
                "participant,name,currency,amount\n{},,EUR,10.34\n",
                anna.to_hex()
            )
        );
    }
}
