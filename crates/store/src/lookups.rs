//! What the API asks before it signs, so that a node never makes its own key equivocate: the
//! receipt of an order, whether a receipt is refunded, and the receipt a checkout's
//! idempotency key named.

use passalong_protocol::{Id, PublicKey};

use crate::index::order_hash;
use crate::keyspace::*;
use crate::orders::order_key;
use crate::{Store, StoreError};

/// Longest idempotency key kept, in bytes (the API refuses longer ones).
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

fn idempotency_key(k: &str) -> Vec<u8> {
    key(IDEMPOTENCY, &[blake3::hash(k.as_bytes()).as_bytes()])
}

impl Store {
    /// The receipt of `seller`'s order `order` that counts (the smallest id of its valid
    /// receipts), if there is one. Reads memory, and a file block only if the order may have a receipt.
    pub fn receipt_of_order(
        &self,
        seller: &PublicKey,
        order: &str,
    ) -> Result<Option<Id>, StoreError> {
        let _open = self.db()?;
        let k = order_key(seller, &order_hash(order));
        let orders = self
            .commit
            .orders()
            .read()
            .unwrap_or_else(|p| p.into_inner());
        orders.counted(&k)
    }

    /// Whether a valid Refund of `receipt` is stored.
    pub fn is_refunded(&self, receipt: &Id) -> Result<bool, StoreError> {
        Ok(self.db()?.contains_key(key(REFUNDED, &[&receipt.0]))?)
    }

    /// The attestation idempotency key `k` was recorded for, if any (it may name an
    /// attestation that was never stored: the caller checks).
    pub fn idempotent(&self, k: &str) -> Result<Option<Id>, StoreError> {
        Ok(self
            .db()?
            .get(idempotency_key(k))?
            .filter(|v| v.len() == 32)
            .map(|v| Id(id_at(&v, 0))))
    }

    /// Records (`Some`) or forgets (`None`) the attestation of idempotency key `k`. Not
    /// flushed here: record it before ingesting the attestation, whose durable ingest then
    /// flushes both (sled writes reach the disk in order); a key left by a crash before that
    /// names an attestation that is not stored.
    pub fn set_idempotent(&self, k: &str, id: Option<&Id>) -> Result<(), StoreError> {
        let db = self.db()?;
        match id {
            Some(id) => db.insert(idempotency_key(k), &id.0)?,
            None => db.remove(idempotency_key(k))?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::common::*;
    use crate::Store;
    use passalong_protocol::{Id, Rule};

    const NOW: u64 = T0 + 400 * DAY_MS;

    #[test]
    fn orders_refunds_and_idempotency_keys_are_found_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (s, b) = (key(1), key(2));
        let o = offer(&s, policy(Rule::Direct, 1_000), T0);
        let r1 = receipt(&s, &o, "A-1", 1_000, b.public(), None, T0 + 1);
        let r2 = receipt(&s, &o, "A-1", 2_000, b.public(), None, T0 + 2);
        let rf = refund(&s, &r1, T0 + 3);
        let st = Store::open(dir.path()).unwrap();
        assert_eq!(st.receipt_of_order(&s.public(), "A-1").unwrap(), None);
        let envs: Vec<&[u8]> = [&o, &r1, &rf].iter().map(|a| a.bytes.as_slice()).collect();
        st.ingest(&envs, NOW).unwrap();
        assert_eq!(
            st.receipt_of_order(&s.public(), "A-1").unwrap(),
            Some(r1.id)
        );
        assert_eq!(st.receipt_of_order(&b.public(), "A-1").unwrap(), None);
        assert_eq!(st.receipt_of_order(&s.public(), "A-2").unwrap(), None);
        assert!(st.is_refunded(&r1.id).unwrap());
        assert!(!st.is_refunded(&r2.id).unwrap());
        // An equivocation: the smaller id counts.
        st.ingest(&[&r2.bytes], NOW).unwrap();
        let counted = r1.id.min(r2.id);
        assert_eq!(
            st.receipt_of_order(&s.public(), "A-1").unwrap(),
            Some(counted)
        );

        assert_eq!(st.idempotent("checkout-1").unwrap(), None);
        st.set_idempotent("checkout-1", Some(&r1.id)).unwrap();
        st.set_idempotent("checkout-2", Some(&Id([7; 32]))).unwrap();
        st.set_idempotent("checkout-2", None).unwrap();
        st.flush().unwrap();
        drop(st);
        let st = Store::open(dir.path()).unwrap();
        assert_eq!(
            st.receipt_of_order(&s.public(), "A-1").unwrap(),
            Some(counted)
        );
        assert!(st.is_refunded(&r1.id).unwrap());
        assert_eq!(st.idempotent("checkout-1").unwrap(), Some(r1.id));
        assert_eq!(st.idempotent("checkout-2").unwrap(), None);
    }
}
