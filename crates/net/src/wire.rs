//! The anti-entropy request-response protocol `/passalong/sync/2`: digests, reconciliation rounds and
//! body fetches, postcard-encoded, one request and one response per stream, each bounded.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// The protocol name negotiated on each stream.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/passalong/sync/2");
/// Largest request accepted (a reconciliation message or an id list). A request is read whole
/// before the peer's rate is checked, so this times [`MAX_SYNC_STREAMS`] is what one
/// connection can make a node hold at once.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Sync streams open at once on one connection, both ways.
pub const MAX_SYNC_STREAMS: usize = 16;
/// Largest response accepted (a reconciliation message or a batch of envelopes).
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;
/// Most ids one `Fetch` may ask for; with envelopes of at most 1 KiB the answer stays
/// within [`MAX_RESPONSE_BYTES`].
pub const MAX_FETCH_IDS: usize = 2048;
/// Most markets one `Digest` may name (48 bytes each).
pub const MAX_DIGEST_MARKETS: usize = 1024;
/// Most markets one `Reconcile` may carry.
pub const MAX_RECONCILE_MARKETS: usize = 128;

/// What a set of attestation ids looks like from afar: equal digests, equal sets.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digest {
    /// How many.
    pub count: u64,
    /// The first 16 bytes of blake3(count, XOR of the ids).
    pub fingerprint: [u8; 16],
}

impl Digest {
    /// The digest of a set of ids, in any order.
    pub fn of<'a>(ids: impl IntoIterator<Item = &'a [u8; 32]>) -> Digest {
        let mut xor = [0u8; 32];
        let mut count = 0u64;
        for id in ids {
            count += 1;
            for (x, b) in xor.iter_mut().zip(id) {
                *x ^= b;
            }
        }
        Digest::from_xor(count, &xor)
    }

    /// The digest of a set of `count` ids whose XOR is `xor` (a store may keep those two).
    pub fn from_xor(count: u64, xor: &[u8; 32]) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(&count.to_le_bytes());
        h.update(xor);
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Digest { count, fingerprint }
    }
}

/// What a responder holds of a market named in a `Digest`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nothing.
    Nothing,
    /// The same set as the asker.
    Same,
    /// A different set of this many attestations.
    Differs(u64),
}

/// A request from the side that drives the exchange.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The digests of markets' sets: which of these differ on your side?
    Digest {
        /// Market keys and this side's digests, at most [`MAX_DIGEST_MARKETS`].
        markets: Vec<([u8; 32], Digest)>,
    },
    /// One reconciliation message for each of several markets' sets of `(created_at, id)`
    /// items, at most [`MAX_RECONCILE_MARKETS`].
    Reconcile {
        /// Market keys and `passalong-reconcile` messages.
        rounds: Vec<([u8; 32], Vec<u8>)>,
    },
    /// Send me the envelopes of these attestations.
    Fetch {
        /// Attestation ids, at most [`MAX_FETCH_IDS`].
        ids: Vec<[u8; 32]>,
    },
}

/// The answer to a [`Request`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// For each market of a `Digest`, in order: what the responder holds of it.
    Digest {
        /// One per market asked.
        markets: Vec<Held>,
    },
    /// The responder's reconciliation messages, one per market asked, in order (`None`: that
    /// market's message was refused).
    Reconcile {
        /// `passalong-reconcile` messages.
        rounds: Vec<Option<Vec<u8>>>,
    },
    /// The envelopes the responder holds among those asked for (the others are left out).
    Bodies {
        /// Attestation envelopes.
        envelopes: Vec<Vec<u8>>,
    },
    /// The request was understood but refused (unknown market, too many ids, ...).
    Refused {
        /// Why, for the logs.
        reason: String,
    },
}

/// Bytes this node moved over the sync protocol, both ways.
#[derive(Default, Debug)]
pub struct Traffic {
    /// Bytes read from peers.
    pub bytes_in: AtomicU64,
    /// Bytes written to peers.
    pub bytes_out: AtomicU64,
}

/// The request-response codec: read to the end of the stream within a limit, then decode.
#[derive(Clone, Default)]
pub struct Codec {
    traffic: Arc<Traffic>,
}

impl Codec {
    /// A codec counting into `traffic`.
    pub fn new(traffic: Arc<Traffic>) -> Codec {
        Codec { traffic }
    }

    async fn read<T, M>(&self, io: &mut T, limit: usize) -> io::Result<M>
    where
        T: AsyncRead + Unpin + Send,
        M: for<'de> Deserialize<'de>,
    {
        let mut buf = Vec::new();
        io.take(limit as u64 + 1).read_to_end(&mut buf).await?;
        self.traffic
            .bytes_in
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        if buf.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message larger than {limit} bytes"),
            ));
        }
        decode(&buf)
    }

    async fn write<T, M>(&self, io: &mut T, m: &M) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
        M: Serialize,
    {
        let buf = postcard::to_allocvec(m).map_err(|e| io::Error::other(e.to_string()))?;
        self.traffic
            .bytes_out
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        io.write_all(&buf).await?;
        io.close().await
    }
}

/// Decodes a message, rejecting trailing bytes.
pub fn decode<M: for<'de> Deserialize<'de>>(buf: &[u8]) -> io::Result<M> {
    match postcard::take_from_bytes(buf) {
        Ok((m, [])) => Ok(m),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "trailing bytes after the message",
        )),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    }
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io, MAX_REQUEST_BYTES).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io, MAX_RESPONSE_BYTES).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, &r).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, &r).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec as _;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let mut c = Codec::default();
        let req = Request::Fetch {
            ids: vec![[7; 32]; 3],
        };
        let mut buf = futures::io::Cursor::new(Vec::new());
        c.write_request(&SYNC_PROTOCOL, &mut buf, req.clone())
            .await
            .unwrap();
        let mut r = futures::io::Cursor::new(buf.into_inner());
        assert_eq!(c.read_request(&SYNC_PROTOCOL, &mut r).await.unwrap(), req);

        let big = vec![0u8; MAX_REQUEST_BYTES + 10];
        let mut r = futures::io::Cursor::new(big);
        let e = c.read_request(&SYNC_PROTOCOL, &mut r).await.unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");

        for garbage in [&[0xff_u8, 0xff, 0xff][..], &[][..], &[1, 200, 3][..]] {
            let mut r = futures::io::Cursor::new(garbage.to_vec());
            assert!(c.read_request(&SYNC_PROTOCOL, &mut r).await.is_err());
        }
    }
}
