//! [`Handshake`]: the typed states behind one byte-stream interface.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{
    AuthError, Authenticated, ConnectionInfo, ExpectAck, ExpectConnectionMessage, ExpectMetadata, LocalConfig,
    PeerAnnounced, Session,
};
use crate::crypto::{Nonce, PeerId, TAG_SIZE};
use crate::wire::{Metadata, NackMotive, CHUNK_HEADER_SIZE};

enum Step<M> {
    ConnectionMessage(ExpectConnectionMessage<M>),
    Announced(PeerAnnounced<M>),
    Metadata(ExpectMetadata<M>),
    Authenticated(Authenticated<M>),
    Ack(ExpectAck<M>),
    Established(Session<M>),
    Closed,
}

/// Where a [`Handshake`] stands.
#[derive(Debug)]
pub enum Status<'a, M> {
    /// Waiting for more bytes from the peer (after sending [`Handshake::take_output`]).
    NeedInput,
    /// The peer's connection message passed the PoW check: call [`Handshake::derive_keys`], or
    /// drop the handshake to refuse this peer id before any X25519 work.
    PeerAnnounced(PeerId),
    /// octez `authenticate` is done: call [`Handshake::accept`] or [`Handshake::nack`].
    Authenticated(&'a ConnectionInfo<M>),
    /// Both Acks exchanged: take the session with [`Handshake::into_session`].
    Established(&'a ConnectionInfo<M>),
    /// Failed, nacked, or the session was taken: nothing more will happen.
    Closed,
}

/// The whole handshake for either role as one sans-IO machine: feed it the bytes read with
/// [`Handshake::read`], write out whatever [`Handshake::take_output`] returns, and follow
/// [`Handshake::status`].
///
/// It never consumes bytes past the end of the frame it is waiting for, so bytes the peer sent
/// after its Ack (its first messages) stay with the caller. It buffers at most one frame
/// (≤ 65537 bytes, the u16 length prefix's limit), whatever the peer claims.
pub struct Handshake<M> {
    step: Step<M>,
    frame: Vec<u8>,
    out: Vec<u8>,
}

impl<M: Metadata> Handshake<M> {
    /// Starts a handshake; our connection message is queued for output.
    pub fn new(
        local: Arc<LocalConfig<M>>,
        incoming: bool,
        message_nonce: Nonce,
        remote_addr: Option<SocketAddr>,
    ) -> Result<Self, AuthError> {
        let first = ExpectConnectionMessage::new(local, incoming, message_nonce, remote_addr)?;
        let out = first.bytes_to_send().to_vec();
        Ok(Self { step: Step::ConnectionMessage(first), frame: Vec::new(), out })
    }

    /// Bytes to write to the peer, in order (empty when there is nothing to send).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Where the handshake stands.
    pub fn status(&self) -> Status<'_, M> {
        match &self.step {
            Step::ConnectionMessage(_) | Step::Metadata(_) | Step::Ack(_) => Status::NeedInput,
            Step::Announced(a) => Status::PeerAnnounced(a.peer_id()),
            Step::Authenticated(a) => Status::Authenticated(a.info()),
            Step::Established(s) => Status::Established(&s.info),
            Step::Closed => Status::Closed,
        }
    }

    /// Consumes bytes from the peer, up to the end of the frame the current step waits for, and
    /// returns how many were used (0 when no input is expected now). A complete frame moves
    /// the machine on; an error closes it.
    pub fn read(&mut self, input: &[u8]) -> Result<usize, AuthError> {
        if !matches!(self.step, Step::ConnectionMessage(_) | Step::Metadata(_) | Step::Ack(_)) {
            return Ok(0);
        }
        let mut used = 0;
        if self.frame.len() < CHUNK_HEADER_SIZE {
            let n = (CHUNK_HEADER_SIZE - self.frame.len()).min(input.len());
            self.frame.extend_from_slice(&input[..n]);
            used = n;
        }
        let Some(header) = self.frame.first_chunk::<CHUNK_HEADER_SIZE>() else {
            return Ok(used);
        };
        let len = usize::from(u16::from_be_bytes(*header));
        // Like octez, refuse a short chunk as soon as its header is in, not after E more bytes.
        if len < TAG_SIZE && !matches!(self.step, Step::ConnectionMessage(_)) {
            self.step = Step::Closed;
            return Err(AuthError::InvalidIncomingCiphertextSize { size: len });
        }
        let total = CHUNK_HEADER_SIZE + len;
        let rest = &input[used..];
        let n = (total - self.frame.len()).min(rest.len());
        self.frame.extend_from_slice(&rest[..n]);
        used += n;
        if self.frame.len() == total {
            let frame = std::mem::take(&mut self.frame);
            if let Err(e) = self.complete(frame) {
                self.step = Step::Closed;
                return Err(e);
            }
        }
        Ok(used)
    }

    fn complete(&mut self, frame: Vec<u8>) -> Result<(), AuthError> {
        self.step = match std::mem::replace(&mut self.step, Step::Closed) {
            Step::ConnectionMessage(s) => Step::Announced(s.receive(&frame)?),
            Step::Metadata(s) => Step::Authenticated(s.receive(frame)?),
            Step::Ack(s) => Step::Established(s.receive(frame)?),
            _ => return Err(AuthError::InvalidState("no frame expected")),
        };
        Ok(())
    }

    /// After [`Status::PeerAnnounced`]: derives the channel key and queues our metadata chunk.
    pub fn derive_keys(&mut self) -> Result<(), AuthError> {
        match std::mem::replace(&mut self.step, Step::Closed) {
            Step::Announced(a) => {
                let (next, chunk) = a.derive_keys()?;
                self.out.extend_from_slice(&chunk);
                self.step = Step::Metadata(next);
                Ok(())
            }
            other => {
                self.step = other;
                Err(AuthError::InvalidState("derive_keys before the peer's connection message"))
            }
        }
    }

    /// After [`Status::Authenticated`]: queues our Ack and waits for the peer's.
    pub fn accept(&mut self) -> Result<(), AuthError> {
        match std::mem::replace(&mut self.step, Step::Closed) {
            Step::Authenticated(a) => {
                let (next, chunk) = a.accept()?;
                self.out.extend_from_slice(&chunk);
                self.step = Step::Ack(next);
                Ok(())
            }
            other => {
                self.step = other;
                Err(AuthError::InvalidState("accept before authentication"))
            }
        }
    }

    /// After [`Status::Authenticated`]: queues our Nack; the caller then closes.
    pub fn nack(&mut self, motive: NackMotive, alternative_points: Vec<SocketAddr>) -> Result<(), AuthError> {
        match std::mem::replace(&mut self.step, Step::Closed) {
            Step::Authenticated(a) => {
                let chunk = a.nack(motive, alternative_points)?;
                self.out.extend_from_slice(&chunk);
                Ok(())
            }
            other => {
                self.step = other;
                Err(AuthError::InvalidState("nack before authentication"))
            }
        }
    }

    /// The peer closed its side: the error octez reports at this step (`ConnectionClosed`, or
    /// `RejectedSocketConnection` while waiting for its Ack). Closes the machine.
    pub fn eof(&mut self) -> AuthError {
        let err = match self.step {
            Step::Ack(_) => AuthError::RejectedSocketConnection,
            _ => AuthError::ConnectionClosed,
        };
        self.step = Step::Closed;
        err
    }

    /// The established session, once both Acks are exchanged.
    pub fn into_session(self) -> Option<Session<M>> {
        match self.step {
            Step::Established(s) => Some(s),
            _ => None,
        }
    }
}
