//! `passalong verify`: offline, no daemon. Recompute a bundle's ledgers with the protocol's
//! engine, check them against a root and check each Settlement's root.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use passalong_api::ledger::LedgerInfo;
use passalong_protocol::attestation::{Body, Settlement};
use passalong_protocol::bundle::{self, JsonBundle};
use passalong_protocol::{validation, Attestation, Outcome, PublicKey, State};
use serde::Serialize;

use crate::commands::{ledger_table, Out};
use crate::progress::Progress;

/// Envelopes checked (and attestations taken in) between two reports of progress.
pub const CHUNK: usize = 4096;

/// The attestations whose envelopes pass the stateless checks and whose signatures verify,
/// in the bundle's order: [`validation::check_batch`] in chunks of [`CHUNK`], with the
/// signers' keys decompressed once across chunks. A batch answers for each envelope what the
/// single check answers, so chunking changes nothing but the progress shown.
pub fn check_signatures(envelopes: &[Vec<u8>]) -> Vec<Attestation> {
    let keys = passalong_protocol::signature::KeyCache::default();
    let progress = Progress::new("checking signatures", envelopes.len() as u64);
    let mut checked = Vec::with_capacity(envelopes.len());
    for part in envelopes.chunks(CHUNK) {
        let refs: Vec<&[u8]> = part.iter().map(Vec::as_slice).collect();
        checked.extend(
            validation::check_batch_cached(&refs, &keys)
                .into_iter()
                .filter_map(Result::ok),
        );
        progress.add(part.len() as u64);
    }
    checked
}

/// What `verify` found in a bundle.
#[derive(Serialize)]
struct Verified {
    file: String,
    attestations: usize,
    /// Envelopes per outcome (`valid`, `pending`, `held`, `invalid`).
    outcomes: std::collections::BTreeMap<&'static str, u64>,
    ledgers: Vec<VerifiedLedger>,
    settlements: Vec<VerifiedSettlement>,
    ok: bool,
}

/// A seller's ledger as the bundle computes it, in the API's form, and whether its root is
/// the one given with `--root`.
#[derive(Serialize)]
struct VerifiedLedger {
    #[serde(flatten)]
    ledger: LedgerInfo,
    root_matches: Option<bool>,
}

/// A settlement of the bundle, and whether its root is reproduced from the attestations
/// created before it.
#[derive(Serialize)]
struct VerifiedSettlement {
    id: String,
    participant: String,
    amount_minor: u64,
    currency: String,
    reference: String,
    ledger_root: String,
    reproducible: bool,
}

/// Returns whether everything checked out.
pub fn verify(file: &Path, root: Option<&str>, out: Out) -> Result<bool> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let envelopes = bundle::decode(&bytes).with_context(|| format!("{}", file.display()))?;
    let hinted: Option<PublicKey> = serde_json::from_slice::<JsonBundle>(&bytes)
        .ok()
        .and_then(|b| b.seller)
        .and_then(|h| PublicKey::from_hex(&h).ok());
    let want_root = root
        .map(|r| {
            let mut b = [0u8; 32];
            hex::decode_to_slice(r.trim(), &mut b).map(|()| b)
        })
        .transpose()
        .map_err(|_| anyhow::anyhow!("--root: expected 64 hex digits"))?;
    let now = passalong_api::now_ms();

    // Signatures are checked once; subsets below reuse the checked attestations.
    let checked = check_signatures(&envelopes);
    let mut st = State::new();
    {
        let progress = Progress::new("computing the ledger", checked.len() as u64);
        for part in checked.chunks(CHUNK) {
            for a in part {
                st.insert_checked(a.clone(), now);
            }
            progress.add(part.len() as u64);
        }
    }
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    for e in &envelopes {
        let id = passalong_protocol::Id::of_envelope(e);
        let k = match st.outcome(&id) {
            Some(Outcome::Valid) => "valid",
            Some(Outcome::Pending { .. }) => "pending",
            Some(Outcome::Held { .. }) => "held",
            _ => "invalid",
        };
        *counts.entry(k).or_default() += 1;
    }
    let sellers = match hinted {
        Some(s) => vec![s],
        None => st.sellers(),
    };
    if root.is_some() && sellers.len() != 1 {
        bail!(
            "--root needs a bundle of one seller's market; this one has {}",
            sellers.len()
        );
    }
    // A Settlement is checked against the ledger of everything created before it: the roots
    // every settlement needs, in one pass for all sellers.
    let settled: Vec<(&Attestation, &Settlement)> = checked
        .iter()
        .filter(|a| st.outcome(&a.id) == Some(Outcome::Valid))
        .filter_map(|a| match &a.body {
            Body::Settlement(s) if sellers.contains(&s.seller) => Some((a, s)),
            _ => None,
        })
        .collect();
    let wanted: Vec<(u64, PublicKey)> = settled
        .iter()
        .map(|(_, s)| (s.created_at_ms, s.seller))
        .collect();
    let roots = roots_before(&checked, &wanted, now);
    let mut ok = true;
    let mut ledgers = Vec::new();
    let mut settlements = Vec::new();
    for seller in &sellers {
        let l = st.ledger(seller);
        let r = l.root();
        let root_matches = want_root.map(|w| w == r);
        if root_matches == Some(false) {
            ok = false;
        }
        ledgers.push(VerifiedLedger {
            ledger: LedgerInfo::of(&l),
            root_matches,
        });
        for (a, s) in settled.iter().filter(|(_, s)| s.seller == *seller) {
            let reproducible = roots.get(&(s.created_at_ms, s.seller)) == Some(&s.ledger_root);
            if !reproducible {
                ok = false;
            }
            settlements.push(VerifiedSettlement {
                id: a.id.to_hex(),
                participant: s.participant.to_hex(),
                amount_minor: s.amount_minor,
                currency: s.currency.as_str().to_string(),
                reference: s.reference.clone(),
                ledger_root: hex::encode(s.ledger_root),
                reproducible,
            });
        }
    }
    let v = Verified {
        file: file.display().to_string(),
        attestations: envelopes.len(),
        outcomes: counts,
        ledgers,
        settlements,
        ok,
    };
    out.print(&v, text);
    Ok(ok)
}

/// The root of each `(time, seller)`'s ledger over everything created before that time. One
/// state takes the attestations in time order and is read at each time: the state does not
/// depend on the order attestations arrive in, so this equals a fresh state per time, without
/// the quadratic cost of one per settlement (a market settled every hundred sales has
/// thousands), and one pass serves every seller of the bundle.
fn roots_before(
    checked: &[Attestation],
    wanted: &[(u64, PublicKey)],
    now: u64,
) -> HashMap<(u64, PublicKey), [u8; 32]> {
    let mut wanted = wanted.to_vec();
    wanted.sort_unstable_by_key(|(t, s)| (*t, s.0));
    wanted.dedup();
    let mut by_time: Vec<&Attestation> = checked.iter().collect();
    by_time.sort_by_key(|a| a.body.created_at_ms());
    let Some(&(last, _)) = wanted.last() else {
        return HashMap::new();
    };
    // Everything created before the last settlement is taken in.
    let total = by_time
        .iter()
        .take_while(|a| a.body.created_at_ms() < last)
        .count();
    let progress = Progress::new("checking settlements", total as u64);
    let mut later = by_time.into_iter().peekable();
    let mut st = State::new();
    let mut roots = HashMap::new();
    for (t, seller) in wanted {
        let mut n = 0;
        while let Some(a) = later.next_if(|a| a.body.created_at_ms() < t) {
            st.insert_checked(a.clone(), now);
            n += 1;
            if n % CHUNK == 0 {
                progress.add(CHUNK as u64);
            }
        }
        progress.add((n % CHUNK) as u64);
        roots.insert((t, seller), st.ledger(&seller).root());
    }
    roots
}

fn text(v: &Verified) -> String {
    let mut t = format!(
        "{} attestations: {}\n",
        v.attestations,
        serde_json::to_string(&v.outcomes).unwrap_or_default()
    );
    for l in &v.ledgers {
        t.push_str(&format!(
            "\nseller {}\n{}\nroot {}",
            l.ledger.seller.as_deref().unwrap_or(""),
            ledger_table(&l.ledger, None),
            l.ledger.root
        ));
        match l.root_matches {
            Some(true) => t.push_str("  (matches --root)"),
            Some(false) => t.push_str("  (DOES NOT match --root)"),
            None => {}
        }
        t.push('\n');
    }
    for s in &v.settlements {
        t.push_str(&format!(
            "settlement {} to {}: {} against root {} — {}\n",
            s.id,
            s.participant,
            crate::display::money(s.amount_minor, &s.currency),
            s.ledger_root,
            if s.reproducible {
                "reproduced"
            } else {
                "NOT reproducible from the attestations created before it"
            }
        ));
    }
    t.push_str(if v.ok { "OK" } else { "MISMATCH" });
    t
}

#[cfg(test)]
#[path = "../../protocol/tests/common/mod.rs"]
mod build;

#[cfg(test)]
mod tests {
    use super::*;
    use passalong_protocol::Rule;

    #[test]
    fn checks_in_chunks_give_what_one_batch_gives() {
        let seller = build::key(1);
        let o = build::offer(&seller, build::policy(Rule::Direct, 1_000), build::T0);
        let mut envs = vec![o.bytes.clone()];
        for i in 0..2 * CHUNK + 10 {
            let buyer = build::key((i % 7) as u8 + 2).public();
            let t = build::T0 + 1 + i as u64;
            envs.push(build::receipt(&seller, &o, &format!("o-{i}"), 100, buyer, None, t).bytes);
        }
        // Bad signatures on both sides of the chunks' boundaries, and an envelope cut short.
        for i in [1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK] {
            let last = envs[i].len() - 1;
            envs[i][last] ^= 1;
        }
        envs[7].truncate(10);
        let refs: Vec<&[u8]> = envs.iter().map(Vec::as_slice).collect();
        let ids = |a: &[Attestation]| a.iter().map(|a| a.id).collect::<Vec<_>>();
        let whole: Vec<Attestation> = validation::check_batch(&refs)
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        let chunked = check_signatures(&envs);
        assert_eq!(chunked.len(), envs.len() - 6);
        assert_eq!(ids(&chunked), ids(&whole));
    }
}
