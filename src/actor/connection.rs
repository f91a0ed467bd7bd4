//! The connection actor, its messages, and the [`Connection`] handle (octez `P2p_socket.t`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::io::{ReaderActor, ReaderParts, WriterActor, WriterParts};
use super::{CloseReason, ConnectionConfig, ConnectionError};
use crate::crypto::PeerId;
use crate::handshake::{ConnectionInfo, HandshakeBytes, Session};
use crate::message::{Encoding, MessageDecoder};
use crate::stat::{MovingAverage, Stat as P2pStat};
use crate::wire::{point_text, ChunkDecoder, Metadata, NetworkVersion};

/// Bytes charged to a queue budget per message on top of its encoded size: a stand-in for the
/// bookkeeping around it (octez charges ≈ 120 bytes inbound, ≈ 128 + 96 outbound, §9.3).
pub(super) const QUEUE_OVERHEAD: usize = 128;

/// How often the moving averages are refreshed (octez's `Moving_average` worker: 1 s).
const STAT_PERIOD: Duration = Duration::from_secs(1);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Connection actors alive in this process (started and not yet stopped).
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many connection actors are alive in this process: a leak detector for tests and
/// diagnostics (each one also owns a reader and a writer actor and one socket).
pub fn live_connections() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// A unit of work for the writer.
pub(super) enum WriteCmd {
    /// An encoded message; its budget permit is released once it is written.
    Message { bytes: Bytes, _permit: OwnedSemaphorePermit, done: Option<oneshot::Sender<()>> },
    /// Answered once everything queued before it is written (close with wait).
    Flush(oneshot::Sender<()>),
}

/// A decoded inbound message waiting in the read queue, holding its share of the budget.
pub(super) struct ReadItem<E> {
    pub(super) size: usize,
    pub(super) msg: E,
    pub(super) _permit: OwnedSemaphorePermit,
}

/// A subscriber to inbound messages; `p2p`: it also wants the P2P-layer messages a node
/// handles itself (`Bootstrap`, `Advertise`, …).
pub(super) struct Subscriber<E: Send + 'static> {
    pub(super) recipient: Recipient<Inbound<E>>,
    pub(super) p2p: bool,
}

impl<E: Send + 'static> Clone for Subscriber<E> {
    fn clone(&self) -> Self {
        Self { recipient: self.recipient.clone(), p2p: self.p2p }
    }
}

/// Subscribers to inbound messages, swapped as a whole so the reader reads them lock-free.
pub(super) type Subscribers<E> = Arc<Vec<Subscriber<E>>>;

/// Where a node's connections hand the P2P-layer messages they receive (the overlay actor),
/// and the rules for throttling them.
#[derive(Clone)]
pub(crate) struct ControlSink {
    pub(crate) recipient: Recipient<super::overlay::ControlIn>,
    pub(crate) config: Arc<crate::overlay::OverlayConfig>,
}

/// The state the handle, the actors and the reader/writer loops share.
pub(super) struct Shared<E: Encoding, M> {
    pub(super) id: u64,
    pub(super) info: ConnectionInfo<M>,
    pub(super) version: NetworkVersion,
    pub(super) config: ConnectionConfig,
    pub(super) write_tx: mpsc::Sender<WriteCmd>,
    pub(super) write_budget: Arc<Semaphore>,
    pub(super) read_rx: tokio::sync::Mutex<mpsc::Receiver<ReadItem<E>>>,
    pub(super) read_budget: Arc<Semaphore>,
    pub(super) sent: AtomicU64,
    pub(super) recv: AtomicU64,
    pub(super) inflow: AtomicU64,
    pub(super) outflow: AtomicU64,
    /// Times a `write` had to wait for room in the write queue.
    pub(super) write_waits: AtomicU64,
    /// The backend that seals and opens this connection's chunks.
    crypto_backend: crate::crypto::CryptoBackend,
    /// The process-wide metric for the same event, its handle taken once: looking it up by name
    /// on every wait cost a registry lookup per message when writers outpace the socket.
    write_waits_metric: metrics::Counter,
    pub(super) cancel: CancellationToken,
    /// Cancelled when the last [`Connection`] handle is dropped: flush, then close.
    pub(super) orphaned: CancellationToken,
    pub(super) reason: OnceLock<CloseReason>,
    pub(super) subscribers: watch::Sender<Subscribers<E>>,
    /// Subscribers to [`Closed`], and the event once it has fired (late subscribers get it at once).
    pub(super) closed_subscribers: Mutex<(Vec<Recipient<Closed>>, Option<Closed>)>,
    /// Where P2P-layer messages go (a node's overlay), if the connection belongs to a node
    /// whose encoding has a P2P layer.
    pub(super) control: Option<ControlSink>,
}

/// Budget units a message of `size` bytes takes from a queue of `max` bytes: at most the whole
/// queue, so that, as in octez, one oversized message still fits in an empty queue.
fn cost(size: usize, max: usize) -> u32 {
    u32::try_from(size.saturating_add(QUEUE_OVERHEAD).min(max).max(1)).unwrap_or(u32::MAX)
}

impl<E: Encoding, M: Metadata> Shared<E, M> {
    /// Registers for [`Closed`]; if the connection already ended, the event is sent at once.
    pub(super) fn subscribe_closed(&self, r: Recipient<Closed>) {
        let mut guard = self.closed_subscribers.lock().unwrap_or_else(|e| e.into_inner());
        match &guard.1 {
            Some(event) => r.do_send(event.clone()),
            None => guard.0.push(r),
        }
    }

    /// Ends the connection: the first reason wins; queues refuse new work; loops stop.
    pub(super) fn shutdown(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.write_budget.close();
        self.read_budget.close();
        self.cancel.cancel();
    }

    /// Encodes with the user's `Encoding`; a panic there closes this connection (and only it)
    /// with `CloseReason::Panic` instead of unwinding into the caller.
    fn encode(&self, msg: &E) -> Result<Bytes, ConnectionError> {
        let mut out = Vec::new();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| msg.encode(&mut out))) {
            Ok(r) => {
                r?;
                Ok(out.into())
            }
            Err(payload) => {
                self.shutdown(CloseReason::panic("encode", &payload));
                Err(ConnectionError::ConnectionClosed)
            }
        }
    }

    /// Adds a subscriber (`p2p`: P2P-layer messages too).
    pub(super) fn add_subscriber(&self, recipient: Recipient<Inbound<E>>, p2p: bool) {
        self.subscribers.send_modify(|subs| {
            let mut v = (**subs).clone();
            v.push(Subscriber { recipient, p2p });
            *subs = Arc::new(v);
        });
    }

    async fn write(&self, msg: &E, done: Option<oneshot::Sender<()>>) -> Result<(), ConnectionError> {
        let bytes = self.encode(msg)?;
        let units = cost(bytes.len(), self.config.outgoing_queue_bytes);
        let permit = match self.write_budget.clone().try_acquire_many_owned(units) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(ConnectionError::ConnectionClosed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.write_waits.fetch_add(1, Ordering::Relaxed);
                self.write_waits_metric.increment(1);
                self.write_budget
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    .map_err(|_| ConnectionError::ConnectionClosed)?
            }
        };
        self.write_tx
            .send(WriteCmd::Message { bytes, _permit: permit, done })
            .await
            .map_err(|_| ConnectionError::ConnectionClosed)
    }

    fn write_now(&self, msg: &E) -> Result<bool, ConnectionError> {
        if self.cancel.is_cancelled() {
            return Err(ConnectionError::ConnectionClosed);
        }
        let bytes = self.encode(msg)?;
        self.queue_now(bytes)
    }

    /// Queues already encoded bytes if there is room (`write_now` without the encoding).
    fn queue_now(&self, bytes: Bytes) -> Result<bool, ConnectionError> {
        if self.cancel.is_cancelled() {
            return Err(ConnectionError::ConnectionClosed);
        }
        let permit =
            match self.write_budget.clone().try_acquire_many_owned(cost(bytes.len(), self.config.outgoing_queue_bytes))
            {
                Ok(p) => p,
                Err(tokio::sync::TryAcquireError::NoPermits) => return Ok(false),
                Err(tokio::sync::TryAcquireError::Closed) => return Err(ConnectionError::ConnectionClosed),
            };
        match self.write_tx.try_send(WriteCmd::Message { bytes, _permit: permit, done: None }) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ConnectionError::ConnectionClosed),
        }
    }

    async fn write_sync(&self, msg: &E) -> Result<(), ConnectionError> {
        let (tx, rx) = oneshot::channel();
        self.write(msg, Some(tx)).await?;
        rx.await.map_err(|_| ConnectionError::ConnectionClosed)
    }

    async fn read(&self) -> Result<(usize, E), ConnectionError> {
        let mut rx = self.read_rx.lock().await;
        match rx.recv().await {
            Some(item) => Ok((item.size, item.msg)),
            None => Err(ConnectionError::ConnectionClosed),
        }
    }

    fn read_now(&self) -> Result<Option<(usize, E)>, ConnectionError> {
        // Another task holding the lock is waiting in `read`: the queue is empty.
        let Ok(mut rx) = self.read_rx.try_lock() else {
            return Ok(None);
        };
        match rx.try_recv() {
            Ok(item) => Ok(Some((item.size, item.msg))),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(ConnectionError::ConnectionClosed),
        }
    }

    async fn close(&self, wait: bool) {
        if wait && !self.cancel.is_cancelled() {
            // No new writes; what is queued goes out, then the FIN.
            self.write_budget.close();
            let (tx, rx) = oneshot::channel();
            if self.write_tx.send(WriteCmd::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
        self.shutdown(CloseReason::LocalClose);
    }

    fn stat(&self) -> P2pStat {
        P2pStat {
            total_sent: self.sent.load(Ordering::Relaxed),
            total_recv: self.recv.load(Ordering::Relaxed),
            current_inflow: self.inflow.load(Ordering::Relaxed),
            current_outflow: self.outflow.load(Ordering::Relaxed),
        }
    }
}

/// A cheap, cloneable handle on a connection (octez `P2p_socket.t`), generic over the message
/// encoding `E` (octez `'msg`) and the metadata `M` (octez `'meta`).
///
/// Its methods reach the queues directly, without an actor round trip; the same operations are
/// available as actor messages on [`Connection::addr`]. Equality and hashing are by connection.
///
/// **The handles own the connection**: when the last one is dropped (a [`Node`](super::Node)
/// holds one for each of its connections until they end), the connection closes cleanly — what
/// is already queued is written (for at most 5 s), then the FIN — and its actors stop. An
/// [`Addr`] of its actor does not keep it open.
pub struct Connection<E: Encoding, M: Metadata> {
    shared: Arc<Shared<E, M>>,
    addr: Addr<ConnectionActor<E, M>>,
    _owner: Arc<Owner>,
}

/// Shared by every handle of a connection: its drop, when the last handle goes, asks the writer
/// to flush and close.
struct Owner(CancellationToken);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl<E: Encoding, M: Metadata> Clone for Connection<E, M> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone(), addr: self.addr.clone(), _owner: self._owner.clone() }
    }
}

impl<E: Encoding, M: Metadata> PartialEq for Connection<E, M> {
    fn eq(&self, other: &Self) -> bool {
        self.shared.id == other.shared.id
    }
}

impl<E: Encoding, M: Metadata> Eq for Connection<E, M> {}

impl<E: Encoding, M: Metadata> std::hash::Hash for Connection<E, M> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.shared.id.hash(state);
    }
}

impl<E: Encoding, M: Metadata> fmt::Display for Connection<E, M> {
    /// `peer_id@ip:port`, with the peer's announced port when known, else its socket port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = &self.shared.info;
        match info.id_point {
            Some(p) => {
                let port = p.port.or(info.remote_socket_port).unwrap_or(0);
                write!(f, "{}@{}", info.peer_id, point_text(&std::net::SocketAddr::new(p.addr, port)))
            }
            None => write!(f, "{}@?", info.peer_id),
        }
    }
}

impl<E: Encoding, M: Metadata> fmt::Debug for Connection<E, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connection#{}({self})", self.shared.id)
    }
}

impl<E: Encoding, M: Metadata> Connection<E, M> {
    /// Starts the connection actor and its reader and writer on the current actix arbiter.
    pub(super) fn start(
        stream: TcpStream,
        session: Session<M>,
        version: NetworkVersion,
        config: ConnectionConfig,
        handshake: HandshakeBytes,
        control: Option<ControlSink>,
    ) -> Self {
        let Session { info, sealer, opener } = session;
        let (write_tx, write_rx) = mpsc::channel(config.queue_messages.max(1));
        let (read_tx, read_rx) = mpsc::channel(config.queue_messages.max(1));
        let (subscribers, subs_rx) = watch::channel(Arc::new(Vec::new()));
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            write_budget: Arc::new(Semaphore::new(config.outgoing_queue_bytes.clamp(1, Semaphore::MAX_PERMITS))),
            read_budget: Arc::new(Semaphore::new(config.incoming_queue_bytes.clamp(1, Semaphore::MAX_PERMITS))),
            info,
            version,
            write_tx,
            read_rx: tokio::sync::Mutex::new(read_rx),
            sent: AtomicU64::new(handshake.sent as u64),
            recv: AtomicU64::new(handshake.recv as u64),
            inflow: AtomicU64::new(0),
            outflow: AtomicU64::new(0),
            write_waits: AtomicU64::new(0),
            crypto_backend: sealer.backend(),
            write_waits_metric: metrics::counter!(crate::telemetry::WRITE_WAITS),
            cancel: CancellationToken::new(),
            orphaned: CancellationToken::new(),
            reason: OnceLock::new(),
            subscribers,
            closed_subscribers: Mutex::new((Vec::new(), None)),
            control,
            config,
        });
        set_socket_options(&stream, &shared.config);
        let (rd, wr) = stream.into_split();
        let meters = shared.config.scheduler.as_ref().map(|s| {
            s.count_handshake(handshake.sent as u64, handshake.recv as u64);
            s.register(shared.id, shared.config.weight)
        });
        let io = IoParts {
            meters,
            rd,
            wr,
            chunks: ChunkDecoder::new(opener),
            messages: MessageDecoder::new(shared.config.max_message_size),
            sealer,
            read_tx,
            write_rx,
            subs_rx,
        };
        LIVE.fetch_add(1, Ordering::Relaxed);
        let actor = ConnectionActor {
            shared: shared.clone(),
            io: Some(io),
            running_children: 0,
            averages: Averages::default(),
        };
        let owner = Arc::new(Owner(shared.orphaned.clone()));
        Self { shared, addr: actor.start(), _owner: owner }
    }

    /// The connection actor, for driving it with actor messages ([`Write`], [`Read`], …).
    pub fn addr(&self) -> Addr<ConnectionActor<E, M>> {
        self.addr.clone()
    }

    /// A process-unique id of this connection.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// octez `write`: queues `msg`, waiting while the write queue is full. Dropping the future
    /// before it resolves leaves the message unqueued.
    pub async fn write(&self, msg: &E) -> Result<(), ConnectionError> {
        self.shared.write(msg, None).await
    }

    /// octez `write_now`: `Ok(true)` if queued, `Ok(false)` if dropped for lack of room.
    pub fn write_now(&self, msg: &E) -> Result<bool, ConnectionError> {
        self.shared.write_now(msg)
    }

    /// octez `encode`: a message encoded once, to be queued on many connections with
    /// [`Connection::write_encoded_now`] (what a broadcast does: one encoding, shared bytes).
    pub fn encode(msg: &E) -> Result<Encoded<E>, ConnectionError> {
        let mut out = Vec::new();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| msg.encode(&mut out))) {
            Ok(r) => {
                r?;
                Ok(Encoded { bytes: out.into(), _encoding: std::marker::PhantomData })
            }
            Err(payload) => {
                // No connection to close: the caller gets the error.
                let _ = CloseReason::panic("encode", &payload);
                Err(ConnectionError::Encoding(crate::wire::EncodeError::InvalidValue("the Encoding panicked")))
            }
        }
    }

    /// octez `write_encoded_now`: queues an [`Encoded`] message if there is room (`Ok(false)`
    /// if the queue is full), sharing its bytes.
    pub fn write_encoded_now(&self, msg: &Encoded<E>) -> Result<bool, ConnectionError> {
        self.shared.queue_now(msg.bytes.clone())
    }

    /// octez `write_sync`: resolves once the message's bytes were handed to the socket.
    pub async fn write_sync(&self, msg: &E) -> Result<(), ConnectionError> {
        self.shared.write_sync(msg).await
    }

    /// octez `read`: the next message and its encoded size, waiting for one. Dropping the future
    /// loses nothing.
    pub async fn read(&self) -> Result<(usize, E), ConnectionError> {
        self.shared.read().await
    }

    /// octez `read_now`: the next message if one is queued.
    pub fn read_now(&self) -> Result<Option<(usize, E)>, ConnectionError> {
        self.shared.read_now()
    }

    /// octez `stat`: byte totals (raw socket bytes) and smoothed rates.
    pub fn stat(&self) -> P2pStat {
        self.shared.stat()
    }

    /// octez `close ?wait`: with `wait`, everything already queued is written before the FIN.
    pub async fn close(&self, wait: bool) {
        self.shared.close(wait).await;
    }

    /// octez `info`.
    pub fn info(&self) -> &ConnectionInfo<M> {
        &self.shared.info
    }

    /// The crypto backend that seals and opens this connection's chunks (the one chosen in the
    /// [`LocalConfig`](crate::handshake::LocalConfig) that authenticated it).
    pub fn crypto_backend(&self) -> crate::crypto::CryptoBackend {
        self.shared.crypto_backend
    }

    /// The version negotiated with the peer.
    pub fn version(&self) -> &NetworkVersion {
        &self.shared.version
    }

    /// octez `local_metadata`.
    pub fn local_metadata(&self) -> &M {
        &self.shared.info.local_metadata
    }

    /// octez `remote_metadata`.
    pub fn remote_metadata(&self) -> &M {
        &self.shared.info.remote_metadata
    }

    /// octez `private_node`: whether the peer asked not to be advertised.
    pub fn private_node(&self) -> bool {
        self.shared.info.private_node
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.reason.get().cloned()
    }

    /// Whether the connection has ended (or is ending).
    pub fn is_closed(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// Resolves when the connection has ended.
    pub async fn closed(&self) {
        self.shared.cancel.cancelled().await;
    }

    /// Bytes charged to the write queue (encoded sizes plus overhead), in flight included.
    pub fn write_queue_bytes(&self) -> usize {
        self.shared.config.outgoing_queue_bytes.saturating_sub(self.shared.write_budget.available_permits())
    }

    /// Bytes charged to the read queue.
    pub fn read_queue_bytes(&self) -> usize {
        self.shared.config.incoming_queue_bytes.saturating_sub(self.shared.read_budget.available_permits())
    }

    /// How many `write` calls had to wait for room in the write queue.
    pub fn write_waits(&self) -> u64 {
        self.shared.write_waits.load(Ordering::Relaxed)
    }

    /// Delivers every inbound message to `recipient` instead of the read queue, from now on.
    ///
    /// Delivery awaits each recipient's answer (`Addr::send`), so a slow subscriber slows the
    /// reader, which stops reading the socket: TCP pushes back on the peer and memory stays
    /// bounded (at most one message in flight per subscriber). A subscriber that stopped is
    /// skipped.
    ///
    /// On a [`Node`](super::Node)'s connection whose encoding has a P2P layer, the P2P-layer
    /// messages (`Bootstrap`, `Advertise`, `Swap_*`, `Disconnect`) are handled by the node and
    /// not delivered here: see [`Connection::subscribe_all`].
    pub fn subscribe(&self, recipient: Recipient<Inbound<E>>) {
        self.shared.add_subscriber(recipient, false);
    }

    /// Like [`Connection::subscribe`], and also delivers the P2P-layer messages a node handles
    /// itself (after the node has seen them).
    pub fn subscribe_all(&self, recipient: Recipient<Inbound<E>>) {
        self.shared.add_subscriber(recipient, true);
    }

    /// Cancelled when the connection ends: lets internal watchers wait without holding a
    /// handle (which would keep the connection open).
    pub(super) fn closed_token(&self) -> CancellationToken {
        self.shared.cancel.clone()
    }

    /// Sends [`Closed`] to `recipient` when the connection ends (at once if it has ended).
    pub fn subscribe_closed(&self, recipient: Recipient<Closed>) {
        // Straight into the shared list (not through the mailbox, which is gone once the actor
        // stopped), so a late subscriber still gets the event.
        self.shared.subscribe_closed(recipient);
    }
}

/// Keepalive and user timeout, so that a vanished peer ends the connection in under a minute
/// instead of hours. Failures are logged: the connection works without them.
fn set_socket_options(stream: &TcpStream, config: &ConnectionConfig) {
    let sock = socket2::SockRef::from(stream);
    if let Some((idle, interval)) = config.tcp_keepalive {
        let ka = socket2::TcpKeepalive::new().with_time(idle).with_interval(interval);
        if let Err(e) = sock.set_tcp_keepalive(&ka) {
            tracing::warn!("cannot set TCP keepalive: {e}");
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    if let Some(t) = config.tcp_user_timeout {
        if let Err(e) = sock.set_tcp_user_timeout(Some(t)) {
            tracing::warn!("cannot set TCP_USER_TIMEOUT: {e}");
        }
    }
}

/// A message encoded once (octez `encode`), queued on any number of connections with
/// [`Connection::write_encoded_now`] without encoding it again.
pub struct Encoded<E> {
    bytes: Bytes,
    _encoding: std::marker::PhantomData<fn() -> E>,
}

impl<E> Clone for Encoded<E> {
    fn clone(&self) -> Self {
        Self { bytes: self.bytes.clone(), _encoding: std::marker::PhantomData }
    }
}

impl<E> Encoded<E> {
    /// Its encoded size.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it is empty (never, for a real encoding).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The socket halves and crypto/codec state the reader and writer actors take over.
pub(super) struct IoParts<E: Encoding> {
    /// (upload, download) meters when a scheduler is attached.
    pub(super) meters: Option<[Arc<super::Meter>; 2]>,
    pub(super) rd: tokio::net::tcp::OwnedReadHalf,
    pub(super) wr: tokio::net::tcp::OwnedWriteHalf,
    pub(super) chunks: ChunkDecoder,
    pub(super) messages: MessageDecoder<E>,
    pub(super) sealer: crate::crypto::Sealer,
    pub(super) read_tx: mpsc::Sender<ReadItem<E>>,
    pub(super) write_rx: mpsc::Receiver<WriteCmd>,
    pub(super) subs_rx: watch::Receiver<Subscribers<E>>,
}

#[derive(Default)]
struct Averages {
    last: Option<std::time::Instant>,
    last_sent: u64,
    last_recv: u64,
    inflow: MovingAverage,
    outflow: MovingAverage,
}

/// The actor owning a connection: its reader and writer children, its statistics and its
/// lifecycle. Stops once both children have stopped.
pub struct ConnectionActor<E: Encoding, M: Metadata> {
    shared: Arc<Shared<E, M>>,
    io: Option<IoParts<E>>,
    running_children: u8,
    averages: Averages,
}

impl<E: Encoding, M: Metadata> ConnectionActor<E, M> {
    fn tick(&mut self) {
        let now = std::time::Instant::now();
        let a = &mut self.averages;
        let (sent, recv) = (self.shared.sent.load(Ordering::Relaxed), self.shared.recv.load(Ordering::Relaxed));
        if let Some(last) = a.last {
            let elapsed = u64::try_from(now.duration_since(last).as_millis()).unwrap_or(u64::MAX);
            a.outflow.add(sent - a.last_sent);
            a.inflow.add(recv - a.last_recv);
            a.outflow.tick(elapsed);
            a.inflow.tick(elapsed);
            self.shared.outflow.store(a.outflow.average(), Ordering::Relaxed);
            self.shared.inflow.store(a.inflow.average(), Ordering::Relaxed);
        }
        (a.last, a.last_sent, a.last_recv) = (Some(now), sent, recv);
    }

    fn closed_event(&self) -> Closed {
        Closed {
            connection: self.shared.id,
            peer_id: self.shared.info.peer_id,
            reason: self.shared.reason.get().cloned().unwrap_or(CloseReason::LocalClose),
            stat: self.shared.stat(),
        }
    }
}

impl<E: Encoding, M: Metadata> Actor for ConnectionActor<E, M> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // actix polls a never-started actor once when it is dropped, e.g. as the runtime shuts
        // down; timers and children need a runtime, so such an actor just ends.
        if tokio::runtime::Handle::try_current().is_err() {
            self.shared.shutdown(CloseReason::LocalClose);
            ctx.stop();
            return;
        }
        if let Some(io) = self.io.take() {
            let me = ctx.address();
            let [up, down] = io.meters.map_or([None, None], |[u, d]| [Some(u), Some(d)]);
            ReaderActor::new(
                ReaderParts {
                    meter: down,
                    rd: io.rd,
                    chunks: io.chunks,
                    messages: io.messages,
                    tx: io.read_tx,
                    subs: io.subs_rx,
                    shared: self.shared.clone(),
                },
                me.clone(),
            )
            .start();
            WriterActor::new(
                WriterParts {
                    bytes_out: if crate::telemetry::per_peer() {
                        metrics::counter!(crate::telemetry::SENT_BYTES, "peer" => self.shared.info.peer_id.to_string())
                    } else {
                        metrics::counter!(crate::telemetry::SENT_BYTES)
                    },
                    meter: up,
                    wr: io.wr,
                    sealer: io.sealer,
                    rx: io.write_rx,
                    shared: self.shared.clone(),
                },
                me,
            )
            .start();
            self.running_children = 2;
        }
        self.tick();
        ctx.run_interval(STAT_PERIOD, |act, _| act.tick());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        self.shared.shutdown(CloseReason::LocalClose);
        if let Some(s) = &self.shared.config.scheduler {
            s.unregister(self.shared.id);
        }
        let event = self.closed_event();
        let subs = {
            let mut guard = self.shared.closed_subscribers.lock().unwrap_or_else(|e| e.into_inner());
            guard.1 = Some(event.clone());
            std::mem::take(&mut guard.0)
        };
        for s in subs {
            // Control plane: one event per subscriber per connection.
            s.do_send(event.clone());
        }
    }
}

/// Sent by the reader or writer when its loop ends, with the reason if it found one.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct ChildStopped(pub(super) Option<CloseReason>);

impl<E: Encoding, M: Metadata> Handler<ChildStopped> for ConnectionActor<E, M> {
    type Result = ();

    fn handle(&mut self, msg: ChildStopped, ctx: &mut Self::Context) {
        if let Some(reason) = msg.0 {
            tracing::debug!(connection = self.shared.id, peer = %self.shared.info.peer_id, %reason, "connection ending");
            self.shared.shutdown(reason);
        } else {
            self.shared.shutdown(CloseReason::LocalClose);
        }
        self.running_children = self.running_children.saturating_sub(1);
        if self.running_children == 0 {
            ctx.stop();
        }
    }
}

/// An inbound message delivered to a subscriber.
pub struct Inbound<E> {
    /// The connection's id.
    pub connection: u64,
    /// The peer it came from.
    pub peer_id: PeerId,
    /// Its encoded size.
    pub size: usize,
    /// The message.
    pub message: E,
}

impl<E: Send + 'static> Message for Inbound<E> {
    type Result = ();
}

/// Lifecycle event: the connection ended.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Closed {
    /// The connection's id.
    pub connection: u64,
    /// The peer.
    pub peer_id: PeerId,
    /// Why it ended.
    pub reason: CloseReason,
    /// Final statistics.
    pub stat: P2pStat,
}

/// Subscribes a recipient to [`Closed`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeClosed(pub Recipient<Closed>);

impl<E: Encoding, M: Metadata> Handler<SubscribeClosed> for ConnectionActor<E, M> {
    type Result = ();

    fn handle(&mut self, msg: SubscribeClosed, _: &mut Self::Context) {
        self.shared.subscribe_closed(msg.0);
    }
}

/// Subscribes a recipient to inbound messages (see [`Connection::subscribe`]).
pub struct Subscribe<E: Send + 'static>(pub Recipient<Inbound<E>>);

impl<E: Send + 'static> Message for Subscribe<E> {
    type Result = ();
}

impl<E: Encoding, M: Metadata> Handler<Subscribe<E>> for ConnectionActor<E, M> {
    type Result = ();

    fn handle(&mut self, msg: Subscribe<E>, _: &mut Self::Context) {
        self.shared.add_subscriber(msg.0, false);
    }
}

/// Implements an actor message as a future over the shared state (the data path does not wait
/// on the actor: the handler returns at once and the future runs on its own).
macro_rules! handle_async {
    ($msg:ty, $ret:ty, |$shared:ident, $m:ident| $body:expr) => {
        impl<E: Encoding, M: Metadata> Handler<$msg> for ConnectionActor<E, M> {
            type Result = ResponseFuture<$ret>;

            fn handle(&mut self, $m: $msg, _: &mut Self::Context) -> Self::Result {
                let $shared = self.shared.clone();
                Box::pin(async move { $body })
            }
        }
    };
}

/// Implements an actor message answered at once from the shared state.
macro_rules! handle_now {
    ($msg:ty, $ret:ty, |$shared:ident, $m:ident| $body:expr) => {
        impl<E: Encoding, M: Metadata> Handler<$msg> for ConnectionActor<E, M> {
            type Result = MessageResult<$msg>;

            fn handle(&mut self, $m: $msg, _: &mut Self::Context) -> Self::Result {
                let $shared = &self.shared;
                MessageResult($body)
            }
        }
    };
}

/// octez `write` as an actor message: waits for room in the write queue.
///
/// The wait happens in the answer, not in the mailbox: send it with `send().await` (which then
/// applies backpressure); a loop of `do_send(Write(..))` would queue without bound.
pub struct Write<E>(pub E);

impl<E: Send + 'static> Message for Write<E> {
    type Result = Result<(), ConnectionError>;
}
handle_async!(Write<E>, Result<(), ConnectionError>, |shared, m| shared.write(&m.0, None).await);

/// octez `write_now` as an actor message: `Ok(false)` if the queue is full.
pub struct WriteNow<E>(pub E);

impl<E: Send + 'static> Message for WriteNow<E> {
    type Result = Result<bool, ConnectionError>;
}
handle_now!(WriteNow<E>, Result<bool, ConnectionError>, |shared, m| shared.write_now(&m.0));

/// octez `write_sync` as an actor message: resolves once the bytes are handed to the socket.
pub struct WriteSync<E>(pub E);

impl<E: Send + 'static> Message for WriteSync<E> {
    type Result = Result<(), ConnectionError>;
}
handle_async!(WriteSync<E>, Result<(), ConnectionError>, |shared, m| shared.write_sync(&m.0).await);

/// octez `read` as an actor message: the next message and its encoded size.
///
/// Await the request (`addr.send(Read::default()).await`): the handler takes the message off
/// the queue as soon as one is there, so a request dropped before its answer (or sent with
/// `do_send`) loses that message. The [`Connection::read`] method has no such caveat.
pub struct Read<E>(std::marker::PhantomData<fn() -> E>);

impl<E> Default for Read<E> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<E: Send + 'static> Message for Read<E> {
    type Result = Result<(usize, E), ConnectionError>;
}
handle_async!(Read<E>, Result<(usize, E), ConnectionError>, |shared, _m| shared.read().await);

/// octez `read_now` as an actor message: `Ok(None)` when nothing is queued.
pub struct ReadNow<E>(std::marker::PhantomData<fn() -> E>);

impl<E> Default for ReadNow<E> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<E: Send + 'static> Message for ReadNow<E> {
    type Result = Result<Option<(usize, E)>, ConnectionError>;
}
handle_now!(ReadNow<E>, Result<Option<(usize, E)>, ConnectionError>, |shared, _m| shared.read_now());

/// octez `close ?wait` as an actor message.
pub struct Close {
    /// Write everything already queued before closing.
    pub wait: bool,
}

impl Message for Close {
    type Result = ();
}
handle_async!(Close, (), |shared, m| shared.close(m.wait).await);

/// octez `stat` as an actor message.
pub struct Stat;

impl Message for Stat {
    type Result = crate::stat::Stat;
}
handle_now!(Stat, crate::stat::Stat, |shared, _m| shared.stat());

/// octez `info` as an actor message.
pub struct Info<M>(std::marker::PhantomData<fn() -> M>);

impl<M> Default for Info<M> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<M: Send + 'static> Message for Info<M> {
    type Result = ConnectionInfo<M>;
}
handle_now!(Info<M>, ConnectionInfo<M>, |shared, _m| shared.info.clone());

/// octez `local_metadata` as an actor message.
pub struct LocalMetadata<M>(std::marker::PhantomData<fn() -> M>);

impl<M> Default for LocalMetadata<M> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<M: Send + 'static> Message for LocalMetadata<M> {
    type Result = M;
}
handle_now!(LocalMetadata<M>, M, |shared, _m| shared.info.local_metadata.clone());

/// octez `remote_metadata` as an actor message.
pub struct RemoteMetadata<M>(std::marker::PhantomData<fn() -> M>);

impl<M> Default for RemoteMetadata<M> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<M: Send + 'static> Message for RemoteMetadata<M> {
    type Result = M;
}
handle_now!(RemoteMetadata<M>, M, |shared, _m| shared.info.remote_metadata.clone());

/// octez `private_node` as an actor message.
pub struct PrivateNode;

impl Message for PrivateNode {
    type Result = bool;
}
handle_now!(PrivateNode, bool, |shared, _m| shared.info.private_node);
