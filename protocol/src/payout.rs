//! The payout rules of one counted receipt, as pure integer functions.
//!
//! The chain walk (which hops are kept, which are eligible, see [`crate::state`]) produces a
//! list of hops nearest the buyer first; this module turns the sale amount and that list into
//! shares. Everything is integer arithmetic with u128 intermediates and floor division; what
//! is not paid out stays with the seller. The formulas, worked examples and the papers behind
//! them are in `docs/payout-rules.md`.

use crate::limits::{BPS_ONE, MAX_POLICY_DEPTH};
use crate::policy::Rule;

/// `floor(amount * bps / 10000)`, the pool or the connector share of a sale.
pub fn bps_of(amount_minor: u64, bps: u16) -> u64 {
    // amount < 2^64 and bps <= 10000 so the product fits in u128 and the quotient in u64.
    (u128::from(amount_minor) * u128::from(bps) / u128::from(BPS_ONE)) as u64
}

/// Shares of the kept hops, nearest the buyer first. `eligible[i]` says whether hop i may
/// earn; an ineligible hop keeps its position and its share stays with the seller.
/// `chain_hops` is the length of the whole counted chain (before `max_depth` cuts it), which
/// only [`Rule::SplitProof`] uses. At most [`MAX_POLICY_DEPTH`] hops are paid.
///
/// Returns one amount per hop in `eligible` (0 for ineligible hops).
pub fn split(rule: Rule, pool: u64, eligible: &[bool], chain_hops: u32) -> Shares {
    let n = eligible.len().min(usize::from(MAX_POLICY_DEPTH));
    let mut out = Shares {
        amounts: [0; MAX_POLICY_DEPTH as usize],
        len: n,
    };
    if n == 0 {
        return out;
    }
    match rule {
        Rule::Direct => out.amounts[0] = pool,
        Rule::Equal => {
            let each = pool / n as u64;
            out.amounts[..n].fill(each);
        }
        Rule::Geometric { r_bps } => {
            let keep = u128::from(BPS_ONE.saturating_sub(r_bps));
            let mut remaining = pool;
            for a in &mut out.amounts[..n] {
                let share = (u128::from(remaining) * keep / u128::from(BPS_ONE)) as u64;
                remaining -= share;
                *a = share;
            }
        }
        Rule::SplitProof => {
            let each = split_proof_share(pool, chain_hops.max(n as u32));
            out.amounts[..n].fill(each);
        }
    }
    for (a, ok) in out.amounts[..n].iter_mut().zip(eligible) {
        if !ok {
            *a = 0;
        }
    }
    out
}

/// `floor(pool / 2^(L-1))`: what each kept hop of a chain of L hops earns under split_proof.
///
/// Why halving: k identities of one participant in a chain of L+k-1 hops earn
/// `k * pool / 2^(L+k-2)`, which is at most `pool / 2^(L-1)` exactly when `k <= 2^(k-1)`,
/// true for every k >= 1. Halving per extra hop is the slowest decay with this property
/// (k = 2 forces it), so it is the most generous split-proof rule that pays hops equally.
pub fn split_proof_share(pool: u64, chain_hops: u32) -> u64 {
    pool.checked_shr(chain_hops.saturating_sub(1)).unwrap_or(0)
}

/// The shares of up to 16 hops, without allocating (the ledger computes millions of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shares {
    amounts: [u64; MAX_POLICY_DEPTH as usize],
    len: usize,
}

impl Shares {
    /// One amount per hop, nearest the buyer first.
    pub fn as_slice(&self) -> &[u64] {
        &self.amounts[..self.len]
    }
    /// Their sum (never more than the pool).
    pub fn total(&self) -> u128 {
        self.as_slice().iter().map(|&a| u128::from(a)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(rule: Rule, pool: u64, n: usize, len: u32) -> Vec<u64> {
        split(rule, pool, &vec![true; n], len).as_slice().to_vec()
    }

    #[test]
    fn worked_examples() {
        assert_eq!(bps_of(10_000, 1_000), 1_000);
        assert_eq!(bps_of(999, 1), 0);
        assert_eq!(s(Rule::Direct, 1000, 3, 3), vec![1000, 0, 0]);
        assert_eq!(s(Rule::Equal, 1000, 3, 3), vec![333, 333, 333]);
        assert_eq!(
            s(Rule::Geometric { r_bps: 5000 }, 1000, 4, 4),
            vec![500, 250, 125, 62]
        );
        assert_eq!(s(Rule::SplitProof, 1000, 3, 3), vec![250, 250, 250]);
        assert_eq!(s(Rule::SplitProof, 1000, 2, 5), vec![62, 62]);
        assert_eq!(s(Rule::SplitProof, u64::MAX, 1, 64), vec![1]);
        assert_eq!(split_proof_share(u64::MAX, 65), 0);
    }

    #[test]
    fn ineligible_hops_keep_their_position() {
        let sh = split(Rule::Geometric { r_bps: 5000 }, 1000, &[false, true], 2);
        assert_eq!(sh.as_slice(), &[0, 250]);
        let sh = split(Rule::Direct, 1000, &[false, true], 2);
        assert_eq!(sh.as_slice(), &[0, 0]);
    }

    #[test]
    fn empty_chain_pays_nothing() {
        assert_eq!(split(Rule::Equal, 1000, &[], 0).total(), 0);
    }
}
