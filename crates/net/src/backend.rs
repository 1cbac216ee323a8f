//! What the network needs from the node's storage, as a trait so that this crate depends only
//! on the protocol (the node implements it over the sled store; tests over memory).

use passalong_protocol::{Body, Id, Outcome, PublicKey, Rejection};

use crate::wire::Digest;

/// What became of one envelope handed to [`Backend::ingest`]: the protocol's outcome when it
/// is news, or why the storage did not take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New to the storage, with the protocol's outcome; `market` is a valid one's market.
    New {
        /// What the protocol makes of it (an invalid one: the sender misbehaved, or relayed
        /// it).
        outcome: Outcome<Rejection>,
        /// Its market, if valid.
        market: Option<PublicKey>,
    },
    /// Already held (valid, pending, held or known invalid).
    Duplicate,
    /// Answered but not kept: a storage budget, not misbehaviour (a loose referral beyond its
    /// author's budget, a held one dated too far ahead). Not forwarded.
    NotKept,
}

impl Verdict {
    /// New and valid, in `market`.
    pub fn valid(market: Option<PublicKey>) -> Verdict {
        Verdict::New {
            outcome: Outcome::Valid,
            market,
        }
    }

    /// New and invalid, for the reason `code` (the network's own, such as `wrong_market`).
    pub fn invalid(code: &str, message: &str) -> Verdict {
        Verdict::New {
            outcome: Outcome::Invalid(Rejection {
                code: code.into(),
                message: message.into(),
            }),
            market: None,
        }
    }

    /// New and valid: its market then.
    pub fn valid_in(&self) -> Option<Option<PublicKey>> {
        match self {
            Verdict::New {
                outcome: Outcome::Valid,
                market,
            } => Some(*market),
            _ => None,
        }
    }
}

/// Storage as seen by the network. Calls block (the network runs them off its event loop).
pub trait Backend: Send + Sync + 'static {
    /// The markets this node follows.
    fn markets(&self) -> Vec<PublicKey>;
    /// A market's valid attestations as `(created_at_ms, id)`, in any order.
    fn items(&self, market: &PublicKey) -> Result<Vec<(u64, Id)>, String>;
    /// The digest of a market's valid attestation ids (a store may keep it up to date
    /// instead of reading the market).
    fn digest(&self, market: &PublicKey) -> Result<Digest, String> {
        let items = self.items(market)?;
        Ok(Digest::of(items.iter().map(|(_, id)| &id.0)))
    }
    /// The market of a valid attestation held (`None` if unknown): the market of a referral
    /// or claim shows only through its offer, so that one framed as another market's can be
    /// refused before it is stored.
    fn market_of(&self, _id: &Id) -> Option<PublicKey> {
        None
    }
    /// Whether `id` was fetched lately and not kept (over a storage budget): anti-entropy
    /// does not fetch it again for a while.
    fn declined(&self, _id: &Id) -> bool {
        false
    }
    /// The followed markets whose ledgers depend on the valid attestation `id` (a community,
    /// a membership or its end): what came under its connector's name goes out under theirs.
    fn dependents(&self, _id: &Id) -> Vec<PublicKey> {
        Vec::new()
    }
    /// Whether `market`'s ledger depends on `att` (a community, membership or end that came
    /// under that market's name): only then is it stored and forwarded there.
    fn is_dependency_of(
        &self,
        _market: &PublicKey,
        _att: &passalong_protocol::Attestation,
    ) -> bool {
        false
    }
    /// `peer` (a connected node, by its key) asked for a digest of `markets`: those this
    /// node should follow for it, if it is a member of this node's community (a community
    /// node follows the markets its members take part in, so that it can serve them). The
    /// backend records the follows; the network then reconciles them. Nobody else's
    /// digest makes a node follow anything.
    fn member_markets(&self, _peer: &PublicKey, _markets: &[PublicKey]) -> Vec<PublicKey> {
        Vec::new()
    }
    /// The envelopes held among `ids` (unknown ones are skipped).
    fn envelopes(&self, ids: &[Id]) -> Vec<Vec<u8>>;
    /// Validates and stores envelopes durably; one verdict per envelope, in order.
    fn ingest(&self, envelopes: &[Vec<u8>]) -> Result<Vec<Verdict>, String>;
}

/// The market a body belongs to, as far as `backend` can tell: the one it names itself, or
/// for a referral, a claim or a membership's end, that of the offer or membership it points to
/// when that is held. Gossip and sync refuse what is framed as another market's by it.
pub fn named_market(backend: &dyn Backend, body: &Body) -> Option<PublicKey> {
    named_market_by(body, |id| backend.market_of(id))
}

/// [`named_market`] with `market_of` answering for the attestation a body points to.
pub fn named_market_by(
    body: &Body,
    mut market_of: impl FnMut(&Id) -> Option<PublicKey>,
) -> Option<PublicKey> {
    body.market().or_else(|| match body {
        Body::Referral(r) => market_of(&r.offer),
        Body::PurchaseClaim(c) => market_of(&c.offer),
        Body::MembershipEnd(e) => market_of(&e.membership),
        _ => None,
    })
}

/// Whether `body` may travel under any market's name: a community, a membership or its end,
/// which belong to the connector's market but are what other markets' ledgers depend on (the
/// connector share), so they travel with those markets, in gossip and in sync.
pub fn travels_with_markets(body: &Body) -> bool {
    matches!(
        body,
        Body::Community(_) | Body::Membership(_) | Body::MembershipEnd(_)
    )
}

/// Whether `att`, sent under `market`'s name, is framed as another market's: it names
/// another market (itself, or through the offer or membership it points to, when held), unless
/// it travels with markets and `market`'s ledger depends on it.
pub fn misnamed(
    backend: &dyn Backend,
    att: &passalong_protocol::Attestation,
    market: &PublicKey,
) -> bool {
    named_market(backend, &att.body).is_some_and(|n| n != *market)
        && !(travels_with_markets(&att.body) && backend.is_dependency_of(market, att))
}
