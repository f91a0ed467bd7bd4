//! The session handshake as a pure state machine (protocol.md §§1–3, 6–8).
//!
//! Both roles run the same steps; at each one a side writes first, then reads. The typed states
//! are named after what they wait for:
//!
//! ```text
//! ExpectConnectionMessage --receive(peer ConnMsg)--> PeerAnnounced      (PoW checked, no X25519 yet)
//! PeerAnnounced           --derive_keys()--------->  ExpectMetadata     (+ our metadata chunk)
//! ExpectMetadata          --receive(peer chunk)--->  Authenticated      (Myself checked last)
//! Authenticated           --accept()-------------->  ExpectAck          (+ our Ack chunk)
//!                         --nack(motive, points)-->  bytes to send, then close
//! ExpectAck               --receive(peer chunk)--->  Session            (keys and nonces for traffic)
//! ```
//!
//! Apart from the async driver ([`authenticate`]), nothing here does IO, reads a clock or draws randomness: the connection message nonce and the
//! peer's address are inputs. [`Handshake`] wraps the states into one byte-stream machine (feed
//! it whatever arrives, send what it emits) for drivers, fuzzers and property tests.

mod driver;
mod machine;

pub use driver::{authenticate, with_timeout, AuthenticatedStream, HandshakeBytes, DEFAULT_HANDSHAKE_TIMEOUT};
pub use machine::{Handshake, Status};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::crypto::{generate_nonces, ChannelKey, CryptoBackend, CryptoError, Nonce, Opener, PeerId, Sealer, TAG_SIZE};
use crate::identity::Identity;
use crate::pow::{check_proof_of_work, PowTarget};
use crate::wire::{
    AckMessage, ConnectionMessage, DecodeError, EncodeError, Metadata, NackMotive, NetworkVersion, CHUNK_HEADER_SIZE,
    MAX_CONTENT_LENGTH,
};

/// Errors of the handshake layer, named after the octez errors they mirror.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The peer closed the connection before authentication completed (octez
    /// `Connection_closed`).
    #[error("connection closed by the peer during the handshake")]
    ConnectionClosed,
    /// A message from the peer does not decode (octez `Decoding_error`).
    #[error("decoding error in the peer's {what}: {source}")]
    Decoding {
        /// Which handshake message.
        what: &'static str,
        /// The field-level cause.
        source: DecodeError,
    },
    /// One of our own values cannot be encoded (octez `Encoding_error`).
    #[error("encoding error: {0}")]
    Encoding(#[from] EncodeError),
    /// The peer's stamp does not meet our expected difficulty (octez `Not_enough_proof_of_work`).
    #[error("not enough proof of work from peer {peer_id} (expected difficulty {expected})")]
    NotEnoughProofOfWork {
        /// The peer.
        peer_id: PeerId,
        /// Our expected difficulty.
        expected: f64,
    },
    /// The peer's public key gives an all-zero shared secret (see [`CryptoError`]). octez's
    /// HACL* backend is believed to refuse it too (protocol.md §4.1, unconfirmed there).
    #[error("peer {peer_id} sent a low-order public key (all-zero shared secret)")]
    LowOrderPublicKey {
        /// The peer.
        peer_id: PeerId,
    },
    /// A chunk's length field is below 16 (octez `Invalid_incoming_ciphertext_size`).
    #[error("invalid incoming ciphertext size {size} (minimum {TAG_SIZE})")]
    InvalidIncomingCiphertextSize {
        /// The length field.
        size: usize,
    },
    /// The peer's metadata chunk does not open (octez `Decipher_error`): typically a peer that
    /// announced a public key it does not own.
    #[error("decipher error: the peer's metadata chunk does not open")]
    DecipherError,
    /// The peer is ourselves (octez `Myself`), checked after the metadata exchange as since v18.
    #[error("connected to myself ({peer_id}{})", point.map(|p| format!(" at {}:{}", p.addr, p.port.map_or("?".into(), |x| x.to_string()))).unwrap_or_default())]
    Myself {
        /// Our own peer id.
        peer_id: PeerId,
        /// The point it was reached at (octez `(addr, port option)`), if known.
        point: Option<IdPoint>,
    },
    /// The peer closed instead of answering our Ack (octez `Rejected_socket_connection`).
    #[error("rejected socket connection: the peer closed instead of sending Ack/Nack")]
    RejectedSocketConnection,
    /// The peer refused us (octez `Rejected_by_nack`); `alternative_points` is `None` for a
    /// `Nack_v_0`.
    #[error("rejected by nack: {motive}{}", alternative_points.as_ref().map(|p| format!(", {} alternative points", p.len())).unwrap_or_default())]
    RejectedByNack {
        /// Why.
        motive: NackMotive,
        /// Points to try instead (`None` from a p2p_version 0 peer).
        alternative_points: Option<Vec<SocketAddr>>,
    },
    /// The peer's Ack chunk does not open (octez `Invalid_auth` wrapping `Decipher_error`).
    #[error("invalid auth: the peer's ack chunk does not open (decipher error)")]
    InvalidAuth,
    /// The peer and we share no chain or protocol version (octez `Rejected_no_common_protocol`);
    /// a Nack with `motive` was sent.
    #[error("no common protocol with the peer: {motive}")]
    RejectedNoCommonProtocol {
        /// The Nack motive sent (`Unknown_chain_name`, `Deprecated_*_version`).
        motive: NackMotive,
    },
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {reason}")]
    ConnectionRefused {
        /// The point dialled.
        addr: SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// The peer id is banned or greylisted (octez `Peer_banned`): refused right after its
    /// connection message, before any key derivation; the socket is closed without a Nack.
    #[error("peer {peer_id} is {reason}")]
    PeerBanned {
        /// The peer.
        peer_id: PeerId,
        /// `banned` or `greylisted`.
        reason: &'static str,
    },
    /// We refused the peer with a Nack (connection limit, already connected).
    #[error("we refused the peer: {motive}")]
    Nacked {
        /// The motive we sent.
        motive: NackMotive,
    },
    /// In private mode, only trusted points and peers are connected (octez `Private_mode`);
    /// the socket is closed without a Nack.
    #[error("private mode: {point} is not trusted")]
    PrivateMode {
        /// The point.
        point: SocketAddr,
    },
    /// The point was expected to be another peer (octez `Identity_check_failure`).
    #[error("identity check failure: {point} should be {expected}, it is {peer_id}")]
    IdentityCheckFailure {
        /// The point.
        point: SocketAddr,
        /// The peer id it must have.
        expected: PeerId,
        /// The peer id it has.
        peer_id: PeerId,
    },
    /// The handshake did not finish in time (octez `Canceled` by the authentication timeout).
    #[error("handshake timed out")]
    Timeout,
    /// The handshake API was used out of order (a bug in the caller, not the peer's fault).
    #[error("handshake used out of order: {0}")]
    InvalidState(&'static str),
}

impl AuthError {
    /// The octez-style name of the error (`NotEnoughProofOfWork`, …), for events and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ConnectionClosed => "ConnectionClosed",
            Self::Decoding { .. } => "DecodingError",
            Self::Encoding(_) => "EncodingError",
            Self::NotEnoughProofOfWork { .. } => "NotEnoughProofOfWork",
            Self::LowOrderPublicKey { .. } => "LowOrderPublicKey",
            Self::InvalidIncomingCiphertextSize { .. } => "InvalidIncomingCiphertextSize",
            Self::DecipherError => "DecipherError",
            Self::Myself { .. } => "Myself",
            Self::RejectedSocketConnection => "RejectedSocketConnection",
            Self::RejectedByNack { .. } => "RejectedByNack",
            Self::InvalidAuth => "InvalidAuth",
            Self::Timeout => "Timeout",
            Self::PeerBanned { .. } => "PeerBanned",
            Self::Nacked { .. } => "Nacked",
            Self::PrivateMode { .. } => "PrivateMode",
            Self::IdentityCheckFailure { .. } => "IdentityCheckFailure",
            Self::RejectedNoCommonProtocol { .. } => "RejectedNoCommonProtocol",
            Self::ConnectionRefused { .. } => "ConnectionRefused",
            Self::InvalidState(_) => "InvalidState",
        }
    }

    /// Whether octez's connect handler greylists the peer's address for this failure
    /// (protocol.md §12): only failures of `authenticate` greylist (not of `accept`), and among
    /// them the proof-of-work, deciphering and encoding/decoding errors. A low-order key makes
    /// octez raise an exception, which greylists incoming peers only.
    pub fn greylists(&self, incoming: bool) -> bool {
        match self {
            Self::NotEnoughProofOfWork { .. } | Self::DecipherError | Self::Encoding(_) => true,
            // `Decoding` of the Ack happens in `accept`, which never greylists.
            Self::Decoding { what, .. } => *what != "ack",
            Self::LowOrderPublicKey { .. } => incoming,
            // Not in octez's list, and `InvalidAuth` can only arise in `accept`.
            Self::InvalidIncomingCiphertextSize { .. } | Self::InvalidAuth => false,
            Self::ConnectionClosed
            | Self::RejectedSocketConnection
            | Self::RejectedByNack { .. }
            | Self::Myself { .. }
            // octez does not greylist on cancel/timeout.
            | Self::Timeout
            | Self::PeerBanned { .. }
            | Self::Nacked { .. }
            | Self::PrivateMode { .. }
            // The caller greylists the address itself (it knows the point was expected).
            | Self::IdentityCheckFailure { .. }
            // The point is unregistered, not greylisted (protocol.md §10.2).
            | Self::RejectedNoCommonProtocol { .. }
            | Self::ConnectionRefused { .. }
            | Self::InvalidState(_) => false,
        }
    }
}

/// What we announce and check, shared by every handshake of a node (hence the `Arc`s).
#[derive(Debug, Clone)]
pub struct LocalConfig<M> {
    /// Our identity (keys, stamp, peer id).
    pub identity: Arc<Identity>,
    /// Our advertised listening port (`None` is sent as 0).
    pub advertised_port: Option<u16>,
    /// The network version we announce.
    pub version: NetworkVersion,
    /// Our connection metadata.
    pub metadata: M,
    /// The difficulty a peer's stamp must meet (octez node default 26).
    pub expected_pow: PowTarget,
    /// Which implementation computes the channel key and seals/opens this node's chunks
    /// (`CryptoBackend::default()`: libsodium with the `sodium` feature, else pure Rust). It is
    /// invisible on the wire: peers on different backends interoperate.
    pub crypto_backend: CryptoBackend,
}

/// An `(address, port)` pair where the port may be unknown (octez `P2p_connection.Id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdPoint {
    /// The peer's IP address.
    pub addr: IpAddr,
    /// Its listening port: the announced one for incoming connections, the dialled one for
    /// outgoing connections.
    pub port: Option<u16>,
}

/// octez `P2p_connection.Info`: what is known about an authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo<M> {
    /// Whether the peer opened the TCP connection.
    pub incoming: bool,
    /// The peer's id.
    pub peer_id: PeerId,
    /// The peer's point, when its socket address was given to the handshake.
    pub id_point: Option<IdPoint>,
    /// The TCP port of the peer's socket, when known.
    pub remote_socket_port: Option<u16>,
    /// The port the peer advertised in its connection message.
    pub announced_port: Option<u16>,
    /// The network version the peer announced.
    pub announced_version: NetworkVersion,
    /// Whether the peer asked not to be advertised (from its metadata).
    pub private_node: bool,
    /// Our metadata.
    pub local_metadata: M,
    /// The peer's metadata.
    pub remote_metadata: M,
}

/// Waiting for the peer's connection message; ours is [`Self::bytes_to_send`].
#[derive(Debug)]
pub struct ExpectConnectionMessage<M> {
    local: Arc<LocalConfig<M>>,
    incoming: bool,
    remote_addr: Option<SocketAddr>,
    sent_msg: Vec<u8>,
}

impl<M: Metadata> ExpectConnectionMessage<M> {
    /// Starts a handshake. `message_nonce` must be fresh random bytes ([`Nonce::random`]);
    /// `remote_addr` is the peer's socket address, when known, for [`ConnectionInfo`].
    pub fn new(
        local: Arc<LocalConfig<M>>,
        incoming: bool,
        message_nonce: Nonce,
        remote_addr: Option<SocketAddr>,
    ) -> Result<Self, AuthError> {
        let msg = ConnectionMessage {
            port: local.advertised_port,
            public_key: local.identity.public_key,
            proof_of_work_stamp: local.identity.proof_of_work_stamp,
            message_nonce,
            version: local.version.clone(),
        };
        let sent_msg = msg.encode()?;
        Ok(Self { local, incoming, remote_addr, sent_msg })
    }

    /// Our connection message, length prefix included: send it first.
    pub fn bytes_to_send(&self) -> &[u8] {
        &self.sent_msg
    }

    /// Takes the peer's whole connection message (`u16be L ‖ body`), derives its peer id and
    /// checks its proof of work. No X25519 work happens here, so a peer with a bad stamp, or
    /// one an ACL refuses by peer id, costs only a hash.
    pub fn receive(self, raw: &[u8]) -> Result<PeerAnnounced<M>, AuthError> {
        let msg = ConnectionMessage::decode(raw)
            .map_err(|source| AuthError::Decoding { what: "connection message", source })?;
        let peer_id = msg.public_key.peer_id();
        if !check_proof_of_work(&msg.public_key, &msg.proof_of_work_stamp, &self.local.expected_pow) {
            return Err(AuthError::NotEnoughProofOfWork { peer_id, expected: self.local.expected_pow.difficulty() });
        }
        Ok(PeerAnnounced { prev: self, recv_msg: raw.to_vec(), msg, peer_id })
    }
}

/// The peer's connection message is in and its PoW holds; the caller may refuse the peer id
/// (ban lists) before any key derivation.
#[derive(Debug)]
pub struct PeerAnnounced<M> {
    prev: ExpectConnectionMessage<M>,
    recv_msg: Vec<u8>,
    msg: ConnectionMessage,
    peer_id: PeerId,
}

impl<M: Metadata> PeerAnnounced<M> {
    /// The peer's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The peer's decoded connection message.
    pub fn connection_message(&self) -> &ConnectionMessage {
        &self.msg
    }

    /// Computes the channel key and both nonces, and seals our metadata with our first nonce.
    /// Returns the next state and our metadata chunk (prefix included) to send.
    pub fn derive_keys(self) -> Result<(ExpectMetadata<M>, Vec<u8>), AuthError> {
        let Self { prev, recv_msg, msg, peer_id } = self;
        let key =
            ChannelKey::precompute_with(prev.local.crypto_backend, &msg.public_key, &prev.local.identity.secret_key)
                .map_err(|e| match e {
                    CryptoError::LowOrderPublicKey { .. } => AuthError::LowOrderPublicKey { peer_id },
                    _ => AuthError::DecipherError,
                })?;
        let nonces = generate_nonces(prev.incoming, &prev.sent_msg, &recv_msg);
        let mut plaintext = Vec::new();
        prev.local.metadata.encode(&mut plaintext);
        let mut sealer = Sealer::new(key.clone(), nonces.local);
        let chunk = seal_one_chunk(&mut sealer, &plaintext)?;
        Ok((
            ExpectMetadata {
                local: prev.local,
                incoming: prev.incoming,
                remote_addr: prev.remote_addr,
                msg,
                peer_id,
                sealer,
                opener: Opener::new(key, nonces.remote),
            },
            chunk,
        ))
    }
}

/// Seals `plaintext` as a single chunk (`u16be E ‖ tag ‖ ciphertext`); handshake messages must
/// fit one chunk.
fn seal_one_chunk(sealer: &mut Sealer, plaintext: &[u8]) -> Result<Vec<u8>, AuthError> {
    if plaintext.len() > MAX_CONTENT_LENGTH {
        return Err(
            EncodeError::SizeLimit { what: "handshake chunk", size: plaintext.len(), max: MAX_CONTENT_LENGTH }.into()
        );
    }
    let mut out = Vec::with_capacity(CHUNK_HEADER_SIZE + TAG_SIZE + plaintext.len());
    // ≤ 65533 by the check above.
    out.extend_from_slice(&((TAG_SIZE + plaintext.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0; TAG_SIZE]);
    out.extend_from_slice(plaintext);
    sealer
        .seal_in_place(&mut out[CHUNK_HEADER_SIZE..])
        .map_err(|_| AuthError::InvalidState("sealing a handshake chunk"))?;
    Ok(out)
}

/// Opens one whole chunk (`u16be E ‖ tag ‖ ciphertext`) in place and returns its plaintext.
fn open_one_chunk<'a>(opener: &mut Opener, chunk: &'a mut [u8]) -> Result<&'a [u8], AuthError> {
    let (header, body) = chunk.split_first_chunk_mut::<CHUNK_HEADER_SIZE>().ok_or(AuthError::ConnectionClosed)?;
    let size = usize::from(u16::from_be_bytes(*header));
    if size < TAG_SIZE {
        return Err(AuthError::InvalidIncomingCiphertextSize { size });
    }
    if size != body.len() {
        return Err(AuthError::Decoding {
            what: "chunk",
            source: DecodeError::SizeLimit { what: "chunk body", size: body.len(), max: size },
        });
    }
    opener.open_in_place(body).map_err(|_| AuthError::DecipherError)?;
    Ok(&body[TAG_SIZE..])
}

/// Waiting for the peer's metadata chunk; ours was returned by [`PeerAnnounced::derive_keys`].
pub struct ExpectMetadata<M> {
    local: Arc<LocalConfig<M>>,
    incoming: bool,
    remote_addr: Option<SocketAddr>,
    msg: ConnectionMessage,
    peer_id: PeerId,
    sealer: Sealer,
    opener: Opener,
}

impl<M: Metadata> ExpectMetadata<M> {
    /// The peer's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Opens the peer's metadata chunk (prefix included) with its first nonce, decodes it, then
    /// checks that the peer is not ourselves (octez v18+ order: a replay of our own key fails
    /// with `DecipherError` before it can look like `Myself`).
    pub fn receive(mut self, mut chunk: Vec<u8>) -> Result<Authenticated<M>, AuthError> {
        let plaintext = open_one_chunk(&mut self.opener, &mut chunk)?;
        // The metadata type is the application's: a panic in its decoder refuses this peer
        // instead of unwinding through the node.
        let remote_metadata = std::panic::catch_unwind(|| M::decode(plaintext))
            .unwrap_or_else(|_| {
                Err(DecodeError::Invalid { what: "metadata", reason: "the Metadata decoder panicked".into() })
            })
            .map_err(|source| AuthError::Decoding { what: "metadata", source })?;
        let id_point = self
            .remote_addr
            .map(|a| IdPoint { addr: a.ip(), port: if self.incoming { self.msg.port } else { Some(a.port()) } });
        if self.peer_id == self.local.identity.peer_id {
            return Err(AuthError::Myself { peer_id: self.peer_id, point: id_point });
        }
        let info = ConnectionInfo {
            incoming: self.incoming,
            peer_id: self.peer_id,
            id_point,
            remote_socket_port: self.remote_addr.map(|a| a.port()),
            announced_port: self.msg.port,
            announced_version: self.msg.version.clone(),
            private_node: remote_metadata.private_node(),
            local_metadata: self.local.metadata.clone(),
            remote_metadata,
        };
        Ok(Authenticated {
            info,
            remote_p2p_version: self.msg.version.p2p_version,
            sealer: self.sealer,
            opener: self.opener,
        })
    }
}

/// Authenticated (octez `authenticate` returned): the caller decides to accept or nack.
pub struct Authenticated<M> {
    info: ConnectionInfo<M>,
    remote_p2p_version: u16,
    sealer: Sealer,
    opener: Opener,
}

impl<M: Metadata> Authenticated<M> {
    /// What we know of the peer.
    pub fn info(&self) -> &ConnectionInfo<M> {
        &self.info
    }

    /// octez `accept`, first half: returns the next state and our Ack chunk to send.
    pub fn accept(mut self) -> Result<(ExpectAck<M>, Vec<u8>), AuthError> {
        let chunk = seal_one_chunk(&mut self.sealer, &AckMessage::Ack.encode()?)?;
        Ok((ExpectAck { info: self.info, sealer: self.sealer, opener: self.opener }, chunk))
    }

    /// octez `nack`: our Nack chunk (a `Nack_v_0` if the peer announced p2p_version 0). Send it,
    /// then close. More than 100 points is an `Encoding` error (octez would send nothing).
    pub fn nack(
        mut self,
        motive: NackMotive,
        alternative_points: Vec<std::net::SocketAddr>,
    ) -> Result<Vec<u8>, AuthError> {
        let msg = if self.remote_p2p_version == 0 {
            AckMessage::NackV0
        } else {
            AckMessage::Nack { motive, alternative_points }
        };
        seal_one_chunk(&mut self.sealer, &msg.encode()?)
    }
}

/// Waiting for the peer's Ack or Nack; our Ack was returned by [`Authenticated::accept`].
pub struct ExpectAck<M> {
    info: ConnectionInfo<M>,
    sealer: Sealer,
    opener: Opener,
}

impl<M: Metadata> ExpectAck<M> {
    /// What we know of the peer.
    pub fn info(&self) -> &ConnectionInfo<M> {
        &self.info
    }

    /// octez `accept`, second half: the peer's Ack gives the session; a Nack gives
    /// `RejectedByNack`; a chunk that does not open gives `InvalidAuth`.
    pub fn receive(mut self, mut chunk: Vec<u8>) -> Result<Session<M>, AuthError> {
        let plaintext = open_one_chunk(&mut self.opener, &mut chunk).map_err(|e| match e {
            AuthError::DecipherError => AuthError::InvalidAuth,
            other => other,
        })?;
        match AckMessage::decode(plaintext).map_err(|source| AuthError::Decoding { what: "ack", source })? {
            AckMessage::Ack => Ok(Session { info: self.info, sealer: self.sealer, opener: self.opener }),
            AckMessage::Nack { motive, alternative_points } => {
                Err(AuthError::RejectedByNack { motive, alternative_points: Some(alternative_points) })
            }
            AckMessage::NackV0 => {
                Err(AuthError::RejectedByNack { motive: NackMotive::NoMotive, alternative_points: None })
            }
        }
    }
}

/// An established session: the peer's info and the two directions' crypto state, positioned
/// at the first message chunk (nonces `L0+2` and `R0+2`).
pub struct Session<M> {
    /// What we know of the peer.
    pub info: ConnectionInfo<M>,
    /// Seals our outgoing chunks.
    pub sealer: Sealer,
    /// Opens the peer's chunks.
    pub opener: Opener,
}

impl<M> std::fmt::Debug for Session<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("peer_id", &self.info.peer_id).finish_non_exhaustive()
    }
}
