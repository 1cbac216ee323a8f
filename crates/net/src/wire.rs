//! The anti-entropy request-response protocol `/passalong/sync/1`: reconciliation rounds and
//! body fetches, postcard-encoded, one request and one response per stream, each bounded.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// The protocol name negotiated on each stream.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/passalong/sync/1");
/// Largest request accepted (a reconciliation message or an id list).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// Largest response accepted (a reconciliation message or a batch of envelopes).
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;
/// Most ids one `Fetch` may ask for; with envelopes of at most 1 KiB the answer stays
/// within [`MAX_RESPONSE_BYTES`].
pub const MAX_FETCH_IDS: usize = 2048;

/// A request from the side that drives the exchange.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// One reconciliation message about a market's set of `(created_at, id)` items.
    Reconcile {
        /// The market (seller or connector key).
        market: [u8; 32],
        /// A `passalong-reconcile` message.
        msg: Vec<u8>,
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
    /// The responder's reconciliation message.
    Reconcile {
        /// A `passalong-reconcile` message.
        msg: Vec<u8>,
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
