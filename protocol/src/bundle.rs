//! Attestation bundles: what `export` writes and `import` and `verify` read. Two encodings of
//! the same list of envelopes (see `docs/export-format.md`):
//!
//! ```text
//! binary = "PLB1" ‖ count (u32 BE) ‖ count × (length (u16 BE) ‖ envelope) ‖ blake3(all before) (32)
//! json   = {"format": "passalong-bundle", "version": 1, "seller": HEX|null,
//!           "attestations": [{"id": HEX, "kind": NAME, "envelope": HEX}, …]}
//! ```
//!
//! A bundle is only a container: its envelopes are validated like any others when imported.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::attestation::Kind;
use crate::keys::{Id, PublicKey};
use crate::limits::MAX_ENVELOPE_BYTES;

/// Magic bytes of a binary bundle (version 1).
pub const MAGIC: &[u8; 4] = b"PLB1";
/// Most envelopes in one bundle (bounds what a file can make us allocate).
pub const MAX_ENVELOPES: usize = 50_000_000;

/// Why a bundle cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BundleError {
    /// Neither a binary nor a JSON bundle.
    #[error("not a passalong bundle (expected the binary magic PLB1 or a JSON bundle)")]
    NotABundle,
    /// The file ends early.
    #[error("bundle is truncated: it ends inside envelope {0}; export it again")]
    Truncated(usize),
    /// The checksum does not match.
    #[error("bundle is damaged: its blake3 checksum does not match; export it again")]
    Checksum,
    /// Bytes after the checksum, an envelope over the size limit, too many envelopes.
    #[error("bundle is malformed: {0}")]
    Malformed(String),
    /// The JSON does not have the documented shape.
    #[error("JSON bundle: {0}")]
    Json(String),
}

/// One attestation of a JSON bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JsonEntry {
    /// blake3 of the envelope (informational: recomputed on import).
    pub id: String,
    /// Kind name (informational).
    pub kind: String,
    /// The envelope, hex.
    pub envelope: String,
}

/// A JSON bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JsonBundle {
    /// Always "passalong-bundle".
    pub format: String,
    /// Always 1.
    pub version: u32,
    /// The seller whose market this is, if the export was of one market.
    pub seller: Option<String>,
    /// The attestations.
    pub attestations: Vec<JsonEntry>,
}

/// Encodes envelopes as a binary bundle.
pub fn to_binary(envelopes: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 32 + envelopes.iter().map(|e| e.len() + 2).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(envelopes.len() as u32).to_be_bytes());
    for e in envelopes {
        out.extend_from_slice(&(e.len() as u16).to_be_bytes());
        out.extend_from_slice(e);
    }
    let check = blake3::hash(&out);
    out.extend_from_slice(check.as_bytes());
    out
}

/// Encodes envelopes as a JSON bundle.
pub fn to_json(envelopes: &[Vec<u8>], seller: Option<&PublicKey>) -> String {
    let b = JsonBundle {
        format: "passalong-bundle".into(),
        version: 1,
        seller: seller.map(PublicKey::to_hex),
        attestations: envelopes
            .iter()
            .map(|e| JsonEntry {
                id: Id::of_envelope(e).to_hex(),
                kind: e
                    .get(1)
                    .and_then(|&k| Kind::from_byte(k))
                    .map_or("unknown", Kind::name)
                    .into(),
                envelope: hex::encode(e),
            })
            .collect(),
    };
    serde_json::to_string_pretty(&b).unwrap_or_default()
}

/// Reads either encoding; returns the envelopes in order (not yet validated).
pub fn decode(bytes: &[u8]) -> Result<Vec<Vec<u8>>, BundleError> {
    if bytes.starts_with(MAGIC) {
        return decode_binary(bytes);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| BundleError::NotABundle)?;
    if !text.trim_start().starts_with('{') {
        return Err(BundleError::NotABundle);
    }
    let b: JsonBundle = serde_json::from_str(text).map_err(|e| BundleError::Json(e.to_string()))?;
    if b.format != "passalong-bundle" || b.version != 1 {
        return Err(BundleError::Json(format!(
            "format {:?} version {} is not passalong-bundle version 1",
            b.format, b.version
        )));
    }
    b.attestations
        .iter()
        .enumerate()
        .map(|(i, a)| {
            hex::decode(&a.envelope).map_err(|e| {
                BundleError::Json(format!("attestation {i}: envelope is not hex: {e}"))
            })
        })
        .collect()
}

fn decode_binary(bytes: &[u8]) -> Result<Vec<Vec<u8>>, BundleError> {
    if bytes.len() < 8 + 32 {
        return Err(BundleError::Truncated(0));
    }
    let count = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    if count > MAX_ENVELOPES {
        return Err(BundleError::Malformed(format!(
            "{count} envelopes, at most {MAX_ENVELOPES}"
        )));
    }
    let mut rest = &bytes[8..];
    let mut out = Vec::with_capacity(count.min(1 << 20));
    for i in 0..count {
        if rest.len() < 2 {
            return Err(BundleError::Truncated(i));
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if len > MAX_ENVELOPE_BYTES {
            return Err(BundleError::Malformed(format!(
                "envelope {i} is {len} bytes, at most {MAX_ENVELOPE_BYTES}"
            )));
        }
        rest = &rest[2..];
        if rest.len() < len {
            return Err(BundleError::Truncated(i));
        }
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    if rest.len() < 32 {
        return Err(BundleError::Truncated(count));
    }
    if rest.len() > 32 {
        return Err(BundleError::Malformed("bytes after the checksum".into()));
    }
    let body = &bytes[..bytes.len() - 32];
    if blake3::hash(body).as_bytes() != rest {
        return Err(BundleError::Checksum);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_round_trip_and_damage_is_reported() {
        let envs = vec![vec![1u8, 3, 5], vec![7u8; 100]];
        let bin = to_binary(&envs);
        assert_eq!(decode(&bin).unwrap(), envs);
        let json = to_json(&envs, Some(&PublicKey([2; 32])));
        assert_eq!(decode(json.as_bytes()).unwrap(), envs);
        assert_eq!(
            decode(&bin[..bin.len() - 40]),
            Err(BundleError::Truncated(1))
        );
        let mut bad = bin.clone();
        bad[12] ^= 1;
        assert_eq!(decode(&bad), Err(BundleError::Checksum));
        assert_eq!(decode(b"hello"), Err(BundleError::NotABundle));
        assert!(matches!(
            decode(b"{\"format\": 1}"),
            Err(BundleError::Json(_))
        ));
        let mut extra = bin.clone();
        extra.push(0);
        assert!(matches!(decode(&extra), Err(BundleError::Malformed(_))));
    }
}
