//! A market's attestations newest first, without reading the whole market.
//!
//! The market index (see `market`) keeps a market's records of one kind contiguous and in
//! time order in each of its runs, so the newest are at the end of each run's range: a page
//! of the newest reads a block or two per run, however large the market. The iterator reads
//! pages of [`PAGE`] per kind, each under a short hold of the index (a checkpoint may replace
//! the runs between pages: the next page starts below the last entry returned).

use std::collections::{BinaryHeap, VecDeque};

use passalong_protocol::{Kind, PublicKey};

use crate::error::StoreError;
use crate::market::{rec, From, Indexed};
use crate::Store;

/// Entries read from the index at a time, per kind.
const PAGE: usize = 128;

/// What is left to read of one kind.
struct Cursor {
    kind: u8,
    /// Read and not yet returned, newest first.
    read: VecDeque<Indexed>,
    /// Nothing older is left in the index.
    end: bool,
    /// The oldest entry read, where the next page starts (below it).
    below: Option<Indexed>,
}

impl Store {
    /// A market's valid attestations (of `kind` only, if given), newest first, as
    /// (created_at_ms, id, kind): read a page at a time, so that taking the first few costs
    /// the same in a market of any size; its loose attestations (see `loose`, a bounded
    /// number) are read at once when their kinds are asked for. (Attestations indexed while
    /// it runs may be missed.)
    pub fn newest(&self, market: &PublicKey, kind: Option<Kind>) -> Newest<'_> {
        let kinds: Vec<u8> = match kind {
            Some(k) => vec![k as u8],
            None => Kind::ALL.iter().map(|k| *k as u8).collect(),
        };
        Newest {
            store: self,
            market: *market,
            cursors: kinds
                .into_iter()
                .map(|kind| Cursor {
                    kind,
                    read: VecDeque::new(),
                    end: false,
                    below: None,
                })
                .collect(),
            loose: BinaryHeap::new(),
            loose_read: false,
            done: false,
        }
    }

    /// How many valid attestations of `kind` a market holds (loose ones too, see `loose`).
    pub fn market_count(&self, market: &PublicKey, kind: Kind) -> Result<u64, StoreError> {
        let anchored = self.with_markets(|ix| ix.count(market, kind as u8))?;
        let loose = crate::loose::market_count(&*self.db()?, market, kind)?;
        Ok(anchored + loose)
    }
}

/// The iterator of [`Store::newest`].
pub struct Newest<'a> {
    store: &'a Store,
    market: PublicKey,
    cursors: Vec<Cursor>,
    /// The market's loose attestations of the kinds asked for, read at once (at most
    /// `MAX_LOOSE_PER_MARKET`) and not yet returned.
    loose: BinaryHeap<Indexed>,
    loose_read: bool,
    done: bool,
}

impl Newest<'_> {
    fn step(&mut self) -> Result<Option<(u64, passalong_protocol::Id, u8)>, StoreError> {
        if !self.loose_read {
            self.loose_read = true;
            let asks = |k: Kind| self.cursors.iter().any(|c| c.kind == k as u8);
            if asks(Kind::Referral) || asks(Kind::PurchaseClaim) {
                let mut entries = Vec::new();
                crate::loose::entries(&*self.store.db()?, &self.market, &mut entries)?;
                let kinds: Vec<u8> = self.cursors.iter().map(|c| c.kind).collect();
                self.loose
                    .extend(entries.into_iter().filter(|e| kinds.contains(&e.kind)));
            }
        }
        for c in &mut self.cursors {
            if c.read.is_empty() && !c.end {
                let from = From::Before(c.below.map(|b| rec(&self.market, &b)));
                let page = self
                    .store
                    .with_markets(|ix| ix.page(&self.market, c.kind, from, PAGE))?;
                c.end = page.len() < PAGE;
                c.below = page.last().copied().or(c.below);
                c.read.extend(page);
            }
        }
        let newest = self
            .cursors
            .iter_mut()
            .filter_map(|c| c.read.front().copied().map(|e| (e, c)))
            .max_by_key(|(e, _)| *e);
        let e = match (newest, self.loose.peek()) {
            (Some((e, _)), Some(l)) if *l > e => self.loose.pop(),
            (Some((_, c)), _) => c.read.pop_front(),
            (None, _) => self.loose.pop(),
        };
        Ok(e.map(|e| (e.created_at_ms, e.id, e.kind)))
    }
}

impl Iterator for Newest<'_> {
    type Item = Result<(u64, passalong_protocol::Id, u8), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.step().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use crate::common::*;
    use crate::Store;
    use passalong_protocol::{Attestation, Kind, Rule};

    const NOW: u64 = T0 + 400 * DAY_MS;

    fn envs(atts: &[Attestation]) -> Vec<&[u8]> {
        atts.iter().map(|a| a.bytes.as_slice()).collect()
    }

    /// Calls whose receipts interleave in time write runs that overlap: read newest first,
    /// they come out merged in time order, the same whether the market's runs were read
    /// before the calls (then kept up to date by each shipment) or after reopening.
    #[test]
    fn overlapping_runs_come_out_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (s, b, e) = (key(1), key(2), key(5));
        let seller = s.public();
        let o = offer(&s, policy(Rule::Direct, 1_000), T0);
        let r = refer(&b, &o, None, T0 + 1);
        let sale = |i: u64, t: u64| receipt(&s, &o, &format!("o{i}"), 100, e.public(), Some(&r), t);
        // Odd and even times in separate calls, then an old receipt last.
        let odd: Vec<_> = (0..40).map(|i| sale(i, T0 + 11 + 2 * i)).collect();
        let even: Vec<_> = (0..40).map(|i| sale(100 + i, T0 + 10 + 2 * i)).collect();
        let old = sale(999, T0 + 2);
        let st = Store::open(dir.path()).unwrap();
        st.ingest(&envs(&[o.clone(), r.clone()]), NOW).unwrap();
        assert_eq!(st.market_count(&seller, Kind::Receipt).unwrap(), 0);
        for part in odd.chunks(20).chain(even.chunks(20)) {
            st.ingest(&envs(part), NOW).unwrap();
        }
        st.ingest(&envs(&[old]), NOW).unwrap();
        let check = |st: &Store| {
            let mut all = st.market(&seller).unwrap();
            all.reverse();
            let newest: Vec<_> = st.newest(&seller, None).map(Result::unwrap).collect();
            assert_eq!(newest, all);
            let five: Vec<u64> = st
                .newest(&seller, Some(Kind::Receipt))
                .take(5)
                .map(|e| e.unwrap().0)
                .collect();
            assert_eq!(five, (0..5).map(|i| T0 + 89 - i).collect::<Vec<_>>());
            let offers: Vec<_> = st
                .newest(&seller, Some(Kind::Offer))
                .map(|e| e.unwrap().1)
                .collect();
            assert_eq!(offers, vec![o.id]);
            assert_eq!(st.market_count(&seller, Kind::Receipt).unwrap(), 81);
            assert_eq!(st.market_count(&seller, Kind::Referral).unwrap(), 1);
        };
        check(&st);
        drop(st);
        check(&Store::open(dir.path()).unwrap());
    }
}
