//! The async driver: runs the handshake states over any `AsyncRead + AsyncWrite` (protocol.md §1).
//!
//! It reads exact frames (a `u16be` length, then that many bytes: at most 65537 bytes buffered),
//! so no byte after the peer's Ack is consumed and the stream can be handed to the connection.
//! Every function here is cancel-safe in the sense that dropping its future abandons the
//! handshake cleanly: nothing is left behind but the stream, which the caller drops.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{AuthError, Authenticated, ConnectionInfo, ExpectConnectionMessage, LocalConfig, PeerAnnounced, Session};
use crate::crypto::{Nonce, TAG_SIZE};
use crate::wire::{Metadata, NackMotive};

/// octez's `authentication_timeout` default: authenticate + accept must finish within 5 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads one `u16be`-prefixed frame (connection message or chunk), prefix included.
/// `eof` is the error to report if the peer closes first; a chunk's length is checked against
/// the tag size as soon as its header is in, as octez does.
async fn read_frame<S: AsyncRead + Unpin>(io: &mut S, chunk: bool, eof: AuthError) -> Result<Vec<u8>, AuthError> {
    let mut header = [0u8; 2];
    io.read_exact(&mut header).await.map_err(|_| eof.clone())?;
    let len = usize::from(u16::from_be_bytes(header));
    if chunk && len < TAG_SIZE {
        return Err(AuthError::InvalidIncomingCiphertextSize { size: len });
    }
    let mut frame = vec![0u8; 2 + len];
    frame[..2].copy_from_slice(&header);
    io.read_exact(&mut frame[2..]).await.map_err(|_| eof)?;
    Ok(frame)
}

async fn write_all<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) -> Result<(), AuthError> {
    io.write_all(bytes).await.map_err(|_| AuthError::ConnectionClosed)?;
    io.flush().await.map_err(|_| AuthError::ConnectionClosed)
}

/// Runs `fut` under `timeout`, mapping expiry to [`AuthError::Timeout`].
pub async fn with_timeout<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, AuthError>>,
) -> Result<T, AuthError> {
    tokio::time::timeout(timeout, fut).await.map_err(|_| AuthError::Timeout)?
}

/// octez `authenticate`: exchanges connection messages and metadata over `io`.
///
/// `filter` sees the peer as soon as its clear-text connection message passed the PoW check and
/// may refuse it (e.g. a banned peer id) before any X25519 work. Wrap in [`with_timeout`] (or
/// drop the future) to bound it in time.
pub async fn authenticate<M, S, F>(
    mut io: S,
    local: Arc<LocalConfig<M>>,
    incoming: bool,
    remote_addr: Option<SocketAddr>,
    filter: F,
) -> Result<AuthenticatedStream<M, S>, AuthError>
where
    M: Metadata,
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&PeerAnnounced<M>) -> Result<(), AuthError>,
{
    let t0 = Instant::now();
    let start = ExpectConnectionMessage::new(local, incoming, Nonce::random(), remote_addr)?;
    let mut bytes = HandshakeBytes::default();
    write_all(&mut io, start.bytes_to_send()).await?;
    bytes.sent += start.bytes_to_send().len();
    let peer_msg = read_frame(&mut io, false, AuthError::ConnectionClosed).await?;
    bytes.recv += peer_msg.len();
    let announced = start.receive(&peer_msg)?;
    filter(&announced)?;
    let t1 = Instant::now();
    bytes.connection_message = t1 - t0;
    let (expect_metadata, metadata_chunk) = announced.derive_keys()?;
    let t2 = Instant::now();
    bytes.key_derivation = t2 - t1;
    write_all(&mut io, &metadata_chunk).await?;
    bytes.sent += metadata_chunk.len();
    let peer_metadata = read_frame(&mut io, true, AuthError::ConnectionClosed).await?;
    bytes.recv += peer_metadata.len();
    let state = expect_metadata.receive(peer_metadata)?;
    bytes.metadata = t2.elapsed();
    Ok(AuthenticatedStream { io, state, bytes })
}

/// Raw bytes the handshake moved each way (they count in the connection's `P2p_stat`, as octez
/// counts every socket byte), and how long each phase took (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeBytes {
    /// Bytes written.
    pub sent: usize,
    /// Bytes read.
    pub recv: usize,
    /// Exchanging connection messages (including the peer's PoW check).
    pub connection_message: Duration,
    /// X25519, HSalsa20 and sealing our metadata.
    pub key_derivation: Duration,
    /// Exchanging metadata chunks.
    pub metadata: Duration,
    /// Exchanging Acks.
    pub ack: Duration,
}

/// A stream whose peer is authenticated: [`accept`](Self::accept) or [`nack`](Self::nack) it.
pub struct AuthenticatedStream<M, S> {
    io: S,
    state: Authenticated<M>,
    bytes: HandshakeBytes,
}

impl<M: Metadata, S: AsyncRead + AsyncWrite + Unpin> AuthenticatedStream<M, S> {
    /// What we know of the peer.
    pub fn info(&self) -> &ConnectionInfo<M> {
        self.state.info()
    }

    /// octez `accept`: sends our Ack and reads the peer's answer. The peer closing instead is
    /// `RejectedSocketConnection`; its Nack is `RejectedByNack`.
    pub async fn accept(self) -> Result<(S, Session<M>, HandshakeBytes), AuthError> {
        let Self { mut io, state, mut bytes } = self;
        let t0 = Instant::now();
        let (expect_ack, ack) = state.accept()?;
        write_all(&mut io, &ack).await.map_err(|_| AuthError::RejectedSocketConnection)?;
        bytes.sent += ack.len();
        let peer_ack = read_frame(&mut io, true, AuthError::RejectedSocketConnection).await?;
        bytes.recv += peer_ack.len();
        let session = expect_ack.receive(peer_ack)?;
        bytes.ack = t0.elapsed();
        Ok((io, session, bytes))
    }

    /// octez `nack`: sends a Nack (a `Nack_v_0` to p2p_version 0 peers) and closes. Write
    /// errors are ignored, as in octez; more than 100 points is an `Encoding` error and sends
    /// nothing.
    pub async fn nack(self, motive: NackMotive, alternative_points: Vec<SocketAddr>) -> Result<(), AuthError> {
        let Self { mut io, state, .. } = self;
        let chunk = state.nack(motive, alternative_points)?;
        let _ = io.write_all(&chunk).await;
        let _ = io.shutdown().await;
        Ok(())
    }
}
