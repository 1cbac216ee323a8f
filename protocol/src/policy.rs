//! An offer's referral policy: how much of a sale goes to the chain and how it is split.

use serde::{Deserialize, Serialize};

/// How the pool of one sale is split along the referral chain (see `docs/payout-rules.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rule {
    /// Hop 1 (nearest the buyer) earns the whole pool: the classic affiliate link.
    Direct,
    /// Each kept hop earns `floor(pool / n)`.
    Equal,
    /// Hop after hop takes `(10000 - r_bps) / 10000` of what remains; `r_bps` < 10000.
    Geometric {
        /// The share of the remainder passed on to the next hop, in basis points.
        r_bps: u16,
    },
    /// Each kept hop earns `floor(pool / 2^(L-1))`, L the chain's length: splitting oneself
    /// into k identities earns at most `k / 2^(k-1)` of what one identity would.
    SplitProof,
}

/// The referral policy of an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Policy {
    /// Share of the sale amount paid to the referral chain, in basis points.
    pub pool_bps: u16,
    /// Share paid to the connector of hop 1's community, in basis points.
    pub connector_bps: u16,
    /// How the pool is split.
    pub rule: Rule,
    /// Hops kept, nearest the buyer first; 1..=16.
    pub max_depth: u8,
    /// A referral counts only when created at most this long before the receipt; > 0.
    pub window_ms: u64,
    /// A hop earns only if its referrer bought the offer (counted, not refunded) before referring.
    pub require_purchase: bool,
}

impl Rule {
    /// The CLI spelling: `direct`, `equal`, `geometric:R_BPS`, `split-proof`.
    pub fn parse(s: &str) -> Option<Rule> {
        match s {
            "direct" => Some(Rule::Direct),
            "equal" => Some(Rule::Equal),
            "split-proof" | "split_proof" => Some(Rule::SplitProof),
            _ => {
                let r = s.strip_prefix("geometric:")?.parse::<u16>().ok()?;
                (r < crate::limits::BPS_ONE).then_some(Rule::Geometric { r_bps: r })
            }
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Direct => f.write_str("direct"),
            Rule::Equal => f.write_str("equal"),
            Rule::Geometric { r_bps } => write!(f, "geometric:{r_bps}"),
            Rule::SplitProof => f.write_str("split-proof"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_spellings_round_trip() {
        for r in [
            Rule::Direct,
            Rule::Equal,
            Rule::Geometric { r_bps: 5000 },
            Rule::SplitProof,
        ] {
            assert_eq!(Rule::parse(&r.to_string()), Some(r));
        }
        assert_eq!(Rule::parse("geometric:10000"), None);
        assert_eq!(Rule::parse("geometric:"), None);
        assert_eq!(Rule::parse("pyramid"), None);
    }
}
