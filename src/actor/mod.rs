//! Connections as actix actors: the IO shell around the pure core (protocol.md §§8–10).
//!
//! ```text
//!             Connection<E, M> (cheap handle) ──┐           Addr<ConnectionActor> (actor messages)
//!                       │ write / read         │                       │
//!        ┌──────────────▼──────────────┐       │     ┌─────────────────▼───────────────┐
//!        │ write queue (bytes + count) │       └────►│ ConnectionActor: info, stats,   │
//!        └──────────────┬──────────────┘             │ lifecycle, subscriptions, close │
//!                       │                            └───────┬─────────────────┬───────┘
//!             ┌─────────▼─────────┐                          │ owns            │ owns
//!             │ WriterActor: seal │◄─────────────────────────┘                 │
//!             │ + coalesce writes │──► socket ──► peer                         │
//!             └───────────────────┘                                 ┌────────▼──────────┐
//!  read / subscribers ◄── read queue (bytes + count) ◄──────────────│ ReaderActor: open │◄── socket
//!                                                                   │ chunks, decode    │
//!                                                                   └───────────────────┘
//! ```
//!
//! The data path never goes through an actix mailbox (actix mailboxes do not enforce their
//! capacity): messages travel through queues bounded in bytes *and* in count, shared by the
//! handle and the reader/writer actors. The actors own the socket halves and the crypto state
//! and report how and why they stopped; the connection actor turns that into one close reason.

pub mod admin;
mod connection;
mod io;
mod node;
mod overlay;
mod registry;
mod scheduler;
mod socket;
mod workers;

pub use admin::{AdminApi, AdminError};
pub use connection::{
    live_connections, Close, Closed, Connection, ConnectionActor, Encoded, Inbound, Info, LocalMetadata, PrivateNode,
    Read, ReadNow, RemoteMetadata, Stat, Subscribe, SubscribeClosed, Write, WriteNow, WriteSync,
};
pub use node::{Node, NodeBuilder, NodeConfig, NodeError, PeerInfo, DEFAULT_CONNECT_TIMEOUT};
pub use overlay::ControlIn;
pub use registry::{is_refusal, NodeEvent, Registry, RegistryActor, SubscribeEvents};
pub use scheduler::{Limits, Meter, Scheduler, SchedulerActor, SetLimits, REFRESH};
pub use socket::authenticate_filtered;
pub use socket::{
    authenticate, connect, select_version, Authenticated, SUPPORTED_DISTRIBUTED_DB_VERSIONS, SUPPORTED_P2P_VERSIONS,
};
pub use workers::Workers;

use std::time::Duration;

use crate::wire::{ChunkSize, DecodeError, EncodeError};

/// octez's default byte budget of each message queue (`incoming_message_queue_size`,
/// `outgoing_message_queue_size`: 8 MiB, protocol.md §14).
pub const DEFAULT_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// The parameters of octez `accept`: queue sizes and chunking, plus our count bounds.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Byte budget of the inbound message queue (octez `incoming_message_queue_size`, 8 MiB).
    pub incoming_queue_bytes: usize,
    /// Byte budget of the outbound message queue (octez `outgoing_message_queue_size`, 8 MiB).
    pub outgoing_queue_bytes: usize,
    /// Most messages in each queue, whatever their size: bounds per-message overhead when
    /// messages are tiny (octez bounds bytes only). 4096 keeps a 1 KiB stream coalescing well.
    pub queue_messages: usize,
    /// Total size of the chunks we send (octez `binary_chunks_size`, default 65535).
    pub binary_chunks_size: ChunkSize,
    /// Largest message accepted from the peer (further capped by the encoding's maximum).
    pub max_message_size: usize,
    /// Bytes asked of the kernel per socket read. octez reads 16 KiB at a time; we default to
    /// 64 KiB (one full chunk) because it halves the system calls at full speed, and the buffer
    /// is only held while data flows.
    pub read_buffer_size: usize,
    /// The scheduler metering this connection (`None`: unmetered, only per-connection stats).
    pub scheduler: Option<Scheduler>,
    /// This connection's share weight under the scheduler (1 = normal).
    pub weight: u32,
    /// TCP keepalive on the socket, `(idle, interval)`: a peer that vanished (behind a NAT, a
    /// pulled cable) is noticed without traffic. octez's values: 10 s, 5 s (`p2p_fd.ml`).
    pub tcp_keepalive: Option<(Duration, Duration)>,
    /// `TCP_USER_TIMEOUT` (Linux): how long sent data may stay unacknowledged (or unsent behind
    /// a closed window) before the kernel gives the connection up, which then ends with
    /// [`CloseReason::TimedOut`]. octez's value: 45 s.
    pub tcp_user_timeout: Option<Duration>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            incoming_queue_bytes: DEFAULT_QUEUE_BYTES,
            outgoing_queue_bytes: DEFAULT_QUEUE_BYTES,
            queue_messages: 4096,
            binary_chunks_size: ChunkSize::default(),
            max_message_size: usize::MAX,
            read_buffer_size: 64 * 1024,
            scheduler: None,
            weight: 1,
            tcp_keepalive: Some((Duration::from_secs(10), Duration::from_secs(5))),
            tcp_user_timeout: Some(Duration::from_secs(45)),
        }
    }
}

/// Errors of the connection API (after accept).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The connection is closed, or closed while the operation waited (octez
    /// `Connection_closed`). The cause is the connection's [`CloseReason`].
    #[error("connection closed")]
    ConnectionClosed,
    /// The message cannot be encoded (octez `Encoding_error`).
    #[error("encoding error: {0}")]
    Encoding(#[from] EncodeError),
}

/// Why a connection ended, and who ended it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// We closed it (`close`).
    #[error("closed locally")]
    LocalClose,
    /// The peer closed its side (octez `Connection_closed`).
    #[error("connection closed by the peer")]
    ConnectionClosed,
    /// A chunk's MAC did not verify (octez `Decipher_error`).
    #[error("decipher error: a chunk from the peer does not open")]
    DecipherError,
    /// A chunk's length field was below 16 (octez `Invalid_incoming_ciphertext_size`).
    #[error("invalid incoming ciphertext size {size}")]
    InvalidIncomingCiphertextSize {
        /// The length field.
        size: usize,
    },
    /// A message did not decode or was over the size limit (octez `Decoding_error`).
    #[error("decoding error: {0}")]
    Decoding(DecodeError),
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(String),
    /// The peer sent `Disconnect` (octez `P2p_message.Disconnect`): it is closing, not at fault.
    #[error("the peer sent Disconnect")]
    Disconnect,
    /// The peer stopped acknowledging what we sent (TCP user timeout or keepalive): it vanished.
    #[error("the peer stopped acknowledging data (TCP user timeout or keepalive)")]
    TimedOut,
    /// Code of the application's on this connection's path panicked (its `Encoding`'s
    /// `encode` / `decode` / `frame_size`, or its `Metadata`): this connection is closed, the
    /// others run on.
    #[error("panic in {context}")]
    Panic {
        /// Where, and the panic's message.
        context: String,
    },
}

impl CloseReason {
    /// A panic at `context`, with its message (counted in `tezos_p2p_panics_total`).
    pub(crate) fn panic(context: &'static str, payload: &(dyn std::any::Any + Send)) -> Self {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        metrics::counter!(crate::telemetry::PANICS, "where" => context).increment(1);
        tracing::error!("panic in {context} on a connection's path: {text}; closing that connection");
        Self::Panic { context: format!("{context}: {text}") }
    }

    /// The octez-style name, for events and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Self::LocalClose => "LocalClose",
            Self::ConnectionClosed => "ConnectionClosed",
            Self::DecipherError => "DecipherError",
            Self::InvalidIncomingCiphertextSize { .. } => "InvalidIncomingCiphertextSize",
            Self::Decoding(_) => "DecodingError",
            Self::Io(_) => "Io",
            Self::Disconnect => "Disconnect",
            Self::TimedOut => "TimedOut",
            Self::Panic { .. } => "Panic",
        }
    }

    /// Whether octez greylists the peer for this (protocol.md §12): a message that does not
    /// decode, or a chunk that does not open.
    pub fn greylists(&self) -> bool {
        match self {
            Self::DecipherError | Self::InvalidIncomingCiphertextSize { .. } | Self::Decoding(_) => true,
            // Closes and socket errors are not the peer's proven fault; octez does not greylist
            // a peer that said goodbye.
            Self::LocalClose | Self::ConnectionClosed | Self::Io(_) | Self::Disconnect | Self::TimedOut => false,
            // Our (or the application's) bug, whatever the peer sent.
            Self::Panic { .. } => false,
        }
    }
}
