//! The node's side of the network: the store as the network's [`Backend`], and the task that
//! gossips what this node's API made valid.

use std::sync::Arc;

use passalong_api::now_ms;
use passalong_net::{Backend, Network, Verdict};
use passalong_protocol::{Id, PublicKey};
use passalong_store::{Status, Store};
use tokio::sync::mpsc;
use tracing::warn;

/// The sled store behind the network.
pub struct StoreBackend(pub Arc<Store>);

impl Backend for StoreBackend {
    fn markets(&self) -> Vec<PublicKey> {
        self.0.followed().unwrap_or_else(|e| {
            warn!(error = %e, "cannot list markets");
            Vec::new()
        })
    }

    fn items(&self, market: &PublicKey) -> Result<Vec<(u64, Id)>, String> {
        Ok(self
            .0
            .market(market)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(t, id, _)| (t, id))
            .collect())
    }

    fn envelopes(&self, ids: &[Id]) -> Vec<Vec<u8>> {
        ids.iter()
            .filter_map(|id| self.0.envelope(id).ok().flatten())
            .collect()
    }

    fn ingest(&self, envelopes: &[Vec<u8>]) -> Result<Vec<Verdict>, String> {
        let refs: Vec<&[u8]> = envelopes.iter().map(Vec::as_slice).collect();
        let acks = self.0.ingest(&refs, now_ms()).map_err(|e| e.to_string())?;
        Ok(acks
            .iter()
            .take(envelopes.len())
            .map(|a| match &a.status {
                _ if a.duplicate => Verdict::Duplicate,
                Status::Valid => Verdict::Valid {
                    market: self.0.market_of(&a.id).ok().flatten(),
                },
                Status::Pending { missing } => Verdict::Pending {
                    missing: missing.clone(),
                },
                Status::Held { .. } => Verdict::Held,
                Status::Invalid { code, .. } => Verdict::Invalid {
                    reason: code.clone(),
                },
            })
            .collect())
    }
}

/// Gossips every attestation the API (or the release of held ones) made valid.
pub async fn publish_fresh(
    store: Arc<Store>,
    net: Network,
    mut fresh: mpsc::UnboundedReceiver<Vec<Id>>,
) {
    while let Some(ids) = fresh.recv().await {
        let s = store.clone();
        let found = tokio::task::spawn_blocking(move || {
            ids.iter()
                .filter_map(|id| {
                    let market = s.market_of(id).ok().flatten()?;
                    let envelope = s.envelope(id).ok().flatten()?;
                    Some((market, envelope))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (market, envelope) in found {
            if net.publish(market, envelope).await.is_err() {
                return;
            }
        }
    }
}
