//! Each market's reconciled set in short: how many ids, and their XOR. Anti-entropy opens a
//! session with one digest per followed market, so a node following 10,000 markets would read
//! every one of them at every session; a summary is computed once, kept in memory, and dropped
//! when a shipment touches the market (its index, or its dependencies), so that a session
//! over markets that did not change reads nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use passalong_protocol::{Id, PublicKey};

use crate::txn::Shipment;

/// Most summaries kept; beyond it they are all dropped (and computed again when asked).
const MAX_SUMMARIES: usize = 100_000;

/// A set of ids in short: their number and their XOR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetSummary {
    /// How many ids.
    pub count: u64,
    /// The XOR of them all.
    pub xor: [u8; 32],
}

impl SetSummary {
    /// The summary of `ids`.
    pub fn of<'a>(ids: impl IntoIterator<Item = &'a Id>) -> SetSummary {
        let mut s = SetSummary::default();
        for id in ids {
            s.count += 1;
            for (x, b) in s.xor.iter_mut().zip(id.0) {
                *x ^= b;
            }
        }
        s
    }
}

#[derive(Default)]
struct Inner {
    /// Bumped by every shipment that drops summaries: a summary computed across one is not
    /// kept (it may have read the tree before the shipment's writes).
    generation: u64,
    by_market: HashMap<PublicKey, SetSummary>,
}

/// The summaries kept.
#[derive(Default)]
pub(crate) struct Summaries(Mutex<Inner>);

impl Summaries {
    /// The kept summary of `market`, if any, and the generation to hand back to
    /// [`Summaries::keep`].
    pub fn get(&self, market: &PublicKey) -> (Option<SetSummary>, u64) {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (g.by_market.get(market).copied(), g.generation)
    }

    /// Keeps a summary computed from the tree, unless a shipment landed since `generation`.
    pub fn keep(&self, market: PublicKey, s: SetSummary, generation: u64) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.generation == generation {
            if g.by_market.len() >= MAX_SUMMARIES {
                g.by_market.clear();
            }
            g.by_market.insert(market, s);
        }
    }

    /// A shipment's writes are in the tree: the markets it touched are summarised again.
    pub fn shipped(&self, shipment: &Shipment) {
        if shipment.touched.is_empty() {
            return;
        }
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.generation += 1;
        for m in &shipment.touched {
            g.by_market.remove(m);
        }
    }

    /// Drops every summary (the store was reopened).
    pub fn clear(&self) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.generation += 1;
        g.by_market.clear();
    }
}
