//! A seller's ledger: per (currency, participant), what was earned, refunded, settled and is
//! still owed; sorted, with a Merkle root and inclusion proofs.

use serde::{Deserialize, Serialize};

use crate::attestation::Currency;
use crate::keys::PublicKey;
use crate::merkle::{self, InclusionProof, MerkleRoot};

/// One line of a ledger. `owed = earned - refunded - settled`, and may be negative when the
/// seller paid more than was earned (it never wraps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Currency of every amount in the line.
    pub currency: Currency,
    /// The participant paid (a referrer or a connector; never the seller).
    pub participant: PublicKey,
    /// Sum of shares from counted receipts, refunded ones included.
    pub earned: u128,
    /// Sum of shares from refunded receipts.
    pub refunded: u128,
    /// Sum of Settlements to this participant in this currency.
    pub settled: u128,
    /// What the seller still owes.
    pub owed: i128,
}

/// Bytes of [`LedgerEntry::canonical_bytes`].
pub const ENTRY_BYTES: usize = 3 + 32 + 16 * 4;

impl LedgerEntry {
    /// A line from its three sums; `owed` follows.
    pub fn new(
        currency: Currency,
        participant: PublicKey,
        earned: u128,
        refunded: u128,
        settled: u128,
    ) -> Self {
        // Each sum is below 2^64 * 2^64 attestations' worth... in practice far below 2^126,
        // so the signed difference is exact; saturate rather than wrap if it ever were not.
        let owed = i128::try_from(earned)
            .unwrap_or(i128::MAX)
            .saturating_sub(i128::try_from(refunded).unwrap_or(i128::MAX))
            .saturating_sub(i128::try_from(settled).unwrap_or(i128::MAX));
        LedgerEntry {
            currency,
            participant,
            earned,
            refunded,
            settled,
            owed,
        }
    }

    /// The leaf bytes: currency (3 ASCII bytes) ‖ participant (32) ‖ earned ‖ refunded ‖
    /// settled (u128 big-endian, 16 each) ‖ owed (i128 big-endian two's complement, 16).
    pub fn canonical_bytes(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[..3].copy_from_slice(&self.currency.0);
        b[3..35].copy_from_slice(&self.participant.0);
        b[35..51].copy_from_slice(&self.earned.to_be_bytes());
        b[51..67].copy_from_slice(&self.refunded.to_be_bytes());
        b[67..83].copy_from_slice(&self.settled.to_be_bytes());
        b[83..99].copy_from_slice(&self.owed.to_be_bytes());
        b
    }
}

/// A seller's ledger: entries sorted by (currency, participant bytes), one per pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// The seller.
    pub seller: Option<PublicKey>,
    /// The lines, sorted.
    pub entries: Vec<LedgerEntry>,
}

impl Ledger {
    /// A ledger from lines in any order (they are sorted here).
    pub fn from_entries(seller: PublicKey, mut entries: Vec<LedgerEntry>) -> Ledger {
        entries.sort_by_key(|e| (e.currency, e.participant));
        Ledger {
            seller: Some(seller),
            entries,
        }
    }

    fn leaf_hashes(&self) -> Vec<[u8; 32]> {
        self.entries
            .iter()
            .map(|e| merkle::leaf_hash(&e.canonical_bytes()))
            .collect()
    }

    /// The Merkle root over the entries' canonical bytes.
    pub fn root(&self) -> MerkleRoot {
        merkle::root(&self.leaf_hashes())
    }

    /// The line of one participant in one currency.
    pub fn entry(&self, currency: Currency, participant: &PublicKey) -> Option<&LedgerEntry> {
        self.entries
            .binary_search_by(|e| (e.currency, e.participant).cmp(&(currency, *participant)))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The line and its inclusion proof, for handing to that participant.
    pub fn prove(
        &self,
        currency: Currency,
        participant: &PublicKey,
    ) -> Option<(LedgerEntry, InclusionProof)> {
        let i = self
            .entries
            .binary_search_by(|e| (e.currency, e.participant).cmp(&(currency, *participant)))
            .ok()?;
        Some((self.entries[i], merkle::prove(&self.leaf_hashes(), i)?))
    }
}

/// Checks that `entry` is a line of the ledger whose root is `root`.
pub fn verify_entry(root: &MerkleRoot, entry: &LedgerEntry, proof: &InclusionProof) -> bool {
    merkle::verify(root, &entry.canonical_bytes(), proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_goes_negative_without_wrapping() {
        let e = LedgerEntry::new(Currency(*b"EUR"), PublicKey([1; 32]), 10, 0, 25);
        assert_eq!(e.owed, -15);
        assert_eq!(&e.canonical_bytes()[83..99], &(-15i128).to_be_bytes());
    }

    #[test]
    fn proofs_check_and_tampering_fails() {
        let entries: Vec<LedgerEntry> = (0..7u8)
            .map(|i| LedgerEntry::new(Currency(*b"EUR"), PublicKey([i; 32]), 100 * i as u128, 0, 0))
            .collect();
        let l = Ledger::from_entries(PublicKey([9; 32]), entries);
        let root = l.root();
        let (e, p) = l.prove(Currency(*b"EUR"), &PublicKey([3; 32])).unwrap();
        assert!(verify_entry(&root, &e, &p));
        let mut forged = e;
        forged.earned += 1;
        assert!(!verify_entry(&root, &forged, &p));
        assert!(l.prove(Currency(*b"USD"), &PublicKey([3; 32])).is_none());
    }
}
