//! Raw attestations in and out: import, look up, export a market as a bundle.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use passalong_protocol::{bundle, Kind, Rejection};
use passalong_store::{Ack, Status};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, AppJson, AppQuery};
use crate::identity::{parse_id, parse_key};
use crate::state::{AppState, WriteAuth};

/// What a store says of an attestation beyond its status: the parents it waits for, when it
/// counts, or why it is invalid (each field only for its status).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusDetail {
    /// `pending`: the ids it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
    /// `held`: when it counts (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// `invalid`: the protocol's reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `invalid`: what is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StatusDetail {
    /// The status's name and its detail.
    pub fn of(status: &Status) -> (String, StatusDetail) {
        let mut d = StatusDetail::default();
        match status {
            Status::Valid => {}
            Status::Pending { missing } => {
                d.missing = Some(missing.iter().map(|m| m.to_hex()).collect());
            }
            Status::Held { until_ms } => d.until_ms = Some(*until_ms),
            Status::Invalid(Rejection { code, message }) => {
                d.reason = Some(code.clone());
                d.message = Some(message.clone());
            }
        }
        (status.name().to_string(), d)
    }
}

/// What the store answered for one envelope: `{"id", "status", "duplicate", …detail}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AckInfo {
    /// The attestation's id, hex.
    pub id: String,
    /// `valid`, `pending`, `held` or `invalid`.
    pub status: String,
    /// It was already held.
    pub duplicate: bool,
    /// What the status says beyond its name.
    #[serde(flatten)]
    pub detail: StatusDetail,
    /// Set when the node answered without keeping it, a storage bound and not a verdict:
    /// `too_far_ahead` (held, counting more than 24 h from now; offer it again later), or
    /// `over_budget` (a loose referral or claim beyond its author's or market's budget; never
    /// for what the API itself stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_kept: Option<String>,
}

impl AckInfo {
    /// The JSON form of an ack.
    pub fn of(a: &Ack) -> AckInfo {
        let (status, detail) = StatusDetail::of(&a.status);
        AckInfo {
            id: a.id.to_hex(),
            status,
            duplicate: a.duplicate,
            detail,
            not_kept: a.not_kept.map(|n| match n {
                passalong_store::NotKept::TooFarAhead => "too_far_ahead".to_string(),
                passalong_store::NotKept::OverBudget => "over_budget".to_string(),
            }),
        }
    }
}

/// Most acks and most errors an import's answer lists; the counts cover every envelope.
pub const MAX_LISTED: usize = 100;

/// Envelopes an import hands the store at a time: the memory an import takes beyond its
/// body is that of one chunk and its acks, whatever the body holds.
pub const IMPORT_CHUNK: usize = 512;

/// `POST /v1/attestations` answer: counts of every outcome, and the first [`MAX_LISTED`]
/// acks and errors. (It was one ack per envelope: 5 MB of junk envelopes made a 198 MB answer.)
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Envelopes in the request.
    pub envelopes: u64,
    /// Of them, the ones this node did not hold before.
    pub new: u64,
    /// How many envelopes came out `valid`, `pending`, `held` and `invalid` (held before or
    /// not); only statuses that occur.
    pub statuses: std::collections::BTreeMap<String, u64>,
    /// Attestations held as pending before that the import made valid (their parent came).
    pub unblocked: u64,
    /// The first [`MAX_LISTED`] acks: for each chunk of [`IMPORT_CHUNK`] envelopes, one per
    /// envelope in order, then one per attestation they unblocked (an import of up to 100
    /// envelopes gets all of its acks).
    pub acks: Vec<AckInfo>,
    /// The first [`MAX_LISTED`] invalid envelopes.
    pub errors: Vec<ImportError>,
    /// Whether `acks` or `errors` left some out.
    pub truncated: bool,
}

/// An invalid envelope of an import.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// Its position in the request's `envelopes`, from 0.
    pub index: u64,
    /// Its id, hex.
    pub id: String,
    /// The protocol's reason code.
    pub reason: String,
    /// What is wrong.
    pub message: String,
}

impl Imported {
    /// Counts the acks of `inputs` envelopes that start at `first` in the request, then the
    /// attestations they unblocked (the acks after the first `inputs`).
    pub fn add(&mut self, first: u64, inputs: usize, acks: &[Ack]) {
        self.envelopes += inputs as u64;
        for (i, a) in acks.iter().enumerate() {
            if i < inputs {
                *self
                    .statuses
                    .entry(a.status.name().to_string())
                    .or_default() += 1;
                if !a.duplicate {
                    self.new += 1;
                }
                if let Status::Invalid(Rejection { code, message }) = &a.status {
                    if self.errors.len() < MAX_LISTED {
                        self.errors.push(ImportError {
                            index: first + i as u64,
                            id: a.id.to_hex(),
                            reason: code.clone(),
                            message: message.clone(),
                        });
                    } else {
                        self.truncated = true;
                    }
                }
            } else if !a.duplicate && a.status == Status::Valid {
                self.unblocked += 1;
            }
            if self.acks.len() < MAX_LISTED {
                self.acks.push(AckInfo::of(a));
            } else {
                self.truncated = true;
            }
        }
    }

    /// Adds what a later part of the same import answered (the CLI sends a file in parts);
    /// `offset` is where that part starts in the whole.
    pub fn merge(&mut self, offset: u64, part: Imported) {
        self.envelopes += part.envelopes;
        self.new += part.new;
        self.unblocked += part.unblocked;
        for (k, v) in part.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        let room = MAX_LISTED.saturating_sub(self.acks.len());
        self.truncated |= part.truncated || part.acks.len() > room;
        self.acks.extend(part.acks.into_iter().take(room));
        let room = MAX_LISTED.saturating_sub(self.errors.len());
        self.truncated |= part.errors.len() > room;
        self.errors
            .extend(part.errors.into_iter().take(room).map(|mut e| {
                e.index += offset;
                e
            }));
    }
}

/// `GET /v1/attestations/<id>` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AttestationInfo {
    /// Its id, hex.
    pub id: String,
    /// Its kind (`offer`, `referral`, …; `null` if its envelope is not held).
    pub kind: Option<String>,
    /// `valid`, `pending`, `held` or `invalid`.
    pub status: String,
    /// What the status says beyond its name.
    #[serde(flatten)]
    pub detail: StatusDetail,
    /// Its signed envelope, hex (`null` if not held).
    pub envelope: Option<String>,
}

/// `POST /v1/attestations` body (what `passalong import` sends).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Import {
    /// Signed envelopes, hex.
    pub envelopes: Vec<String>,
}

/// `POST /v1/attestations`. The body is read twice, string by string, without building a
/// list of envelopes: first to refuse a malformed one (non-hex: 400, nothing stored), then
/// to hand the store [`IMPORT_CHUNK`] envelopes at a time. A store failure midway answers
/// an error; the chunks before it are stored, and importing the same body again is safe.
pub async fn import(
    State(s): State<AppState>,
    _auth: WriteAuth,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<AppJson<Imported>, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large()
        } else {
            ApiError::bad_request(format!("cannot read the body: {}", r.body_text()))
        }
    })?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
        })
        .unwrap_or(false);
    if !json {
        return Err(ApiError::bad_request(
            "malformed JSON body: Expected request with `Content-Type: application/json`",
        ));
    }
    each_envelope(&body, |i, h| {
        let h = h.trim();
        if h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err(format!("envelopes[{i}]: not hex"))
        }
    })
    .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut summary = Imported::default();
        let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(IMPORT_CHUNK);
        let mut first = 0u64;
        let mut failed: Option<ApiError> = None;
        let commit = |chunk: &mut Vec<Vec<u8>>, first: &mut u64, summary: &mut Imported| {
            let envelopes = std::mem::take(chunk);
            let n = envelopes.len();
            let acks = rt.block_on(s.ingest(envelopes))?;
            summary.add(*first, n, &acks);
            *first += n as u64;
            chunk.reserve(IMPORT_CHUNK);
            Ok::<(), ApiError>(())
        };
        let walked = each_envelope(&body, |_, h| {
            // Checked in the first pass.
            chunk.push(hex::decode(h.trim()).unwrap_or_default());
            if chunk.len() == IMPORT_CHUNK {
                if let Err(e) = commit(&mut chunk, &mut first, &mut summary) {
                    failed = Some(e);
                    return Err("the store failed".into());
                }
            }
            Ok(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        walked.map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
        if !chunk.is_empty() {
            commit(&mut chunk, &mut first, &mut summary)?;
        }
        Ok(AppJson(summary))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Calls `f(index, text)` on each string of the body's `envelopes` array, in order, without
/// collecting them; the body is `{"envelopes": [STRING, …]}` and nothing else.
fn each_envelope(
    body: &[u8],
    f: impl FnMut(u64, &str) -> Result<(), String>,
) -> Result<(), serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    struct Top<F>(F);
    struct List<'a, F>(&'a mut F);
    struct Item<'a, F>(&'a mut F, u64);

    impl<'de, F: FnMut(u64, &str) -> Result<(), String>> Visitor<'de> for Top<F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object {\"envelopes\": [HEX, …]}")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
            let mut seen = false;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match &*key {
                    "envelopes" if !seen => {
                        map.next_value_seed(List(&mut self.0))?;
                        seen = true;
                    }
                    "envelopes" => return Err(A::Error::duplicate_field("envelopes")),
                    other => return Err(A::Error::unknown_field(other, &["envelopes"])),
                }
            }
            if seen {
                Ok(())
            } else {
                Err(A::Error::missing_field("envelopes"))
            }
        }
    }
    impl<'de, F: FnMut(u64, &str) -> Result<(), String>> DeserializeSeed<'de> for List<'_, F> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de, F: FnMut(u64, &str) -> Result<(), String>> Visitor<'de> for List<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of hex strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0u64;
            while seq.next_element_seed(Item(&mut *self.0, i))?.is_some() {
                i += 1;
            }
            Ok(())
        }
    }
    impl<'de, F: FnMut(u64, &str) -> Result<(), String>> DeserializeSeed<'de> for Item<'_, F> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de, F: FnMut(u64, &str) -> Result<(), String>> Visitor<'de> for Item<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a hex string")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<(), E> {
            (self.0)(self.1, v).map_err(E::custom)
        }
    }

    let mut de = serde_json::Deserializer::from_slice(body);
    de.deserialize_map(Top(f))?;
    de.end()
}

/// `GET /v1/attestations/<id>`
pub async fn get(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<AppJson<AttestationInfo>, ApiError> {
    let id = parse_id(&id, "id")?;
    let (status, envelope) = s
        .with_store(move |store| {
            Ok::<_, passalong_store::StoreError>((store.status(&id)?, store.envelope(&id)?))
        })
        .await?;
    let status =
        status.ok_or_else(|| ApiError::not_found(format!("no attestation {id} on this node")))?;
    let (status, detail) = StatusDetail::of(&status);
    Ok(AppJson(AttestationInfo {
        id: id.to_hex(),
        kind: envelope
            .as_ref()
            .and_then(|e| e.get(1).and_then(|&k| Kind::from_byte(k)))
            .map(|k| k.name().to_string()),
        status,
        detail,
        envelope: envelope.map(hex::encode),
    }))
}

/// `?seller=HEX&format=json|binary`
#[derive(Deserialize)]
pub struct ExportQuery {
    seller: String,
    format: Option<String>,
}

/// `GET /v1/export`: the seller's market and what its ledger depends on outside it (the
/// communities its referrals name, the memberships and their ends: the connector share
/// depends on them), oldest first.
pub async fn export(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let seller = parse_key(&q.seller, "seller")?;
    let binary = match q.format.as_deref() {
        None | Some("json") => false,
        Some("binary") => true,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "format {f:?}: expected json or binary"
            )))
        }
    };
    let store = s.store.clone();
    let envelopes = tokio::task::spawn_blocking(
        move || -> Result<Vec<Vec<u8>>, passalong_store::StoreError> {
            // Oldest first.
            let ids = store.market_with_dependencies(&seller)?;
            let mut out = Vec::with_capacity(ids.len());
            for (_, id, _) in ids {
                if let Some(e) = store.envelope(&id)? {
                    out.push(e);
                }
            }
            Ok(out)
        },
    )
    .await
    .map_err(ApiError::internal)??;
    Ok(if binary {
        (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bundle::to_binary(&envelopes),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            bundle::to_json(&envelopes, Some(&seller)),
        )
            .into_response()
    })
}
