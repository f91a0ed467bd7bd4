//! [`Node`]: a listener, a scheduler, a registry and the connections, tied together as octez's
//! connect handler does (protocol.md §10.2).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::registry::{NodeEvent, Registry, SubscribeEvents};
use super::socket::authenticate_filtered;
use super::{Authenticated, Connection, ConnectionConfig, Inbound, Limits, Scheduler, Workers};
use crate::crypto::{CryptoBackend, PeerId};
use crate::handshake::{AuthError, LocalConfig, DEFAULT_HANDSHAKE_TIMEOUT};
use crate::identity::Identity;
use crate::message::Encoding;
use crate::peers::{AclConfig, AdmitError, ConnectionLimits, PeerEntry, PeerTable};
use crate::pow::PowTarget;
use crate::wire::{Metadata, NackMotive, NetworkVersion, MAX_NACK_POINTS};

/// octez's `connection_timeout` for outgoing connections (TCP connect + handshake): 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a node needs; `Default`-like values come from octez (see each field).
#[derive(Debug, Clone)]
pub struct NodeConfig<M> {
    /// Our identity.
    pub identity: Identity,
    /// Where to listen (`None`: outgoing connections only).
    pub listen_addr: Option<SocketAddr>,
    /// The port we advertise (default: the listening port).
    pub advertised_port: Option<u16>,
    /// Our network version (default: `TEZOS_MAINNET`, ddb 2, p2p 1).
    pub version: NetworkVersion,
    /// Our connection metadata.
    pub metadata: M,
    /// Proof of work required of peers (octez node default: 26).
    pub expected_pow: PowTarget,
    /// Bound on authenticate + accept for incoming peers (octez: 5 s).
    pub handshake_timeout: Duration,
    /// Bound on TCP connect + handshake for outgoing peers (octez: 10 s).
    pub connect_timeout: Duration,
    /// Connection limits.
    pub limits: ConnectionLimits,
    /// Global bandwidth limits (default: unlimited).
    pub bandwidth: Limits,
    /// Greylist settings.
    pub acl: AclConfig,
    /// Queues and chunking of each connection (its `scheduler` is set by the node).
    pub connection: ConnectionConfig,
    /// Arbiters to spread connections over (0: one per core).
    pub workers: usize,
    /// Which implementation does the channel crypto (default: the fastest compiled in).
    pub crypto_backend: CryptoBackend,
}

impl<M: Metadata> NodeConfig<M> {
    /// A configuration with octez's defaults.
    pub fn new(identity: Identity, metadata: M) -> Self {
        Self {
            identity,
            listen_addr: None,
            advertised_port: None,
            version: NetworkVersion::current("TEZOS_MAINNET"),
            metadata,
            // 26 is within [0, 256]: this cannot fail.
            expected_pow: PowTarget::new(26.0).unwrap_or_else(|_| unreachable!("26 is a valid difficulty")),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            limits: ConnectionLimits::default(),
            bandwidth: Limits::default(),
            acl: AclConfig::default(),
            connection: ConnectionConfig::default(),
            workers: 0,
            crypto_backend: CryptoBackend::default(),
        }
    }
}

/// Builds a [`NodeConfig`] step by step: `Node::builder(identity, metadata).listen(addr)
/// .expected_pow(26.0)?.start().await`.
pub struct NodeBuilder<M> {
    config: NodeConfig<M>,
}

impl<M: Metadata> NodeBuilder<M> {
    /// Listen on `addr` (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen_addr = Some(addr);
        self
    }

    /// Advertise `port` instead of the listening port.
    pub fn advertised_port(mut self, port: u16) -> Self {
        self.config.advertised_port = Some(port);
        self
    }

    /// Announce and require `version`.
    pub fn version(mut self, version: NetworkVersion) -> Self {
        self.config.version = version;
        self
    }

    /// Require this proof-of-work difficulty of peers.
    pub fn expected_pow(mut self, difficulty: f64) -> Result<Self, crate::pow::PowError> {
        self.config.expected_pow = PowTarget::new(difficulty)?;
        Ok(self)
    }

    /// Bound incoming handshakes in time.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Connection limits.
    pub fn limits(mut self, limits: ConnectionLimits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Global bandwidth limits.
    pub fn bandwidth(mut self, limits: Limits) -> Self {
        self.config.bandwidth = limits;
        self
    }

    /// Greylist settings.
    pub fn acl(mut self, acl: AclConfig) -> Self {
        self.config.acl = acl;
        self
    }

    /// Compute the channel crypto with `backend` (see [`CryptoBackend`]).
    pub fn crypto_backend(mut self, backend: CryptoBackend) -> Self {
        self.config.crypto_backend = backend;
        self
    }

    /// Per-connection queues and chunking.
    pub fn connection(mut self, connection: ConnectionConfig) -> Self {
        self.config.connection = connection;
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &NodeConfig<M> {
        &self.config
    }

    /// Starts the node (inside an actix `System`).
    pub async fn start<E: Encoding>(self) -> Result<Node<E, M>, NodeError> {
        Node::start(self.config).await
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A handshake in progress on the listener, which may be evicted by a newer one if it has not
/// even sent its connection message (slowloris defence).
struct Pending {
    id: u64,
    announced: Arc<AtomicBool>,
    cancel: CancellationToken,
}

struct Inner<E: Encoding, M: Metadata> {
    local: Arc<LocalConfig<M>>,
    config: NodeConfig<M>,
    workers: Workers,
    scheduler: Scheduler,
    registry: Registry,
    connections: DashMap<PeerId, Connection<E, M>>,
    inbound: Mutex<Vec<Recipient<Inbound<E>>>>,
    listen_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    pending: Mutex<VecDeque<Pending>>,
    next_pending: AtomicU64,
}

/// A running node: its connections, scheduler and registry. Cheap to clone.
pub struct Node<E: Encoding, M: Metadata> {
    inner: Arc<Inner<E, M>>,
}

impl<E: Encoding, M: Metadata> Clone for Node<E, M> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

/// What [`Node::peer`] knows of a peer.
#[derive(Debug, Clone)]
pub struct PeerInfo<E: Encoding, M: Metadata> {
    /// The registry's entry (point, state, last seen, last disconnection reason).
    pub entry: PeerEntry,
    /// The running connection, if any (its `info()` and `stat()`).
    pub connection: Option<Connection<E, M>>,
}

impl<M: Metadata> Node<crate::message::RawMessage, M> {
    /// A builder with octez's defaults (use [`NodeBuilder::start`] to pick the message type).
    pub fn builder(identity: Identity, metadata: M) -> NodeBuilder<M> {
        NodeBuilder { config: NodeConfig::new(identity, metadata) }
    }
}

impl<E: Encoding, M: Metadata> Node<E, M> {
    /// Starts the node: binds the listener (if configured), the scheduler, the registry and the
    /// worker arbiters. Must run inside an actix `System`.
    pub async fn start(config: NodeConfig<M>) -> Result<Self, NodeError> {
        let listener = match config.listen_addr {
            Some(addr) => {
                Some(tokio::net::TcpListener::bind(addr).await.map_err(|source| NodeError::Bind { addr, source })?)
            }
            None => None,
        };
        let listen_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let local = Arc::new(LocalConfig {
            identity: Arc::new(config.identity.clone()),
            advertised_port: config.advertised_port.or(listen_addr.map(|a| a.port())),
            version: config.version.clone(),
            metadata: config.metadata.clone(),
            expected_pow: config.expected_pow,
            crypto_backend: config.crypto_backend,
        });
        let workers = if config.workers == 0 { Workers::per_core() } else { Workers::new(config.workers) };
        let inner = Arc::new(Inner {
            local,
            workers,
            scheduler: Scheduler::start(config.bandwidth),
            registry: Registry::start(PeerTable::new(config.acl.clone(), config.limits)),
            connections: DashMap::new(),
            inbound: Mutex::new(Vec::new()),
            listen_addr,
            shutdown: CancellationToken::new(),
            pending: Mutex::new(VecDeque::new()),
            next_pending: AtomicU64::new(0),
            config,
        });
        if let Some(listener) = listener {
            actix::spawn(listen(inner.clone(), listener));
        }
        actix::spawn(sample_metrics(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// The bound listening address.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.listen_addr
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.local.identity.peer_id
    }

    /// Dials `point`, authenticates and accepts; the connection runs on a worker arbiter.
    pub async fn connect(&self, point: SocketAddr) -> Result<Connection<E, M>, AuthError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(AuthError::ConnectionRefused { addr: point, reason: "the node is shutting down".into() });
        }
        if let Some(r) = self.inner.registry.table().ip_refused(point.ip(), Instant::now()) {
            return Err(AuthError::ConnectionRefused { addr: point, reason: format!("address {}", r.name()) });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = self.inner.clone();
        self.inner.workers.next().spawn(async move {
            // One budget for TCP connect and handshake together (octez `connection_timeout`).
            let result = tokio::time::timeout(inner.config.connect_timeout, async {
                let refused = |e: std::io::Error| AuthError::ConnectionRefused { addr: point, reason: e.to_string() };
                // Dial from the address we listen on, when it is a specific one, so the peer sees
                // (and may greylist, or advertise) the address we are reachable at.
                let socket =
                    if point.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
                        .map_err(refused)?;
                if let Some(l) =
                    inner.listen_addr.filter(|l| !l.ip().is_unspecified() && l.is_ipv4() == point.is_ipv4())
                {
                    socket.bind(SocketAddr::new(l.ip(), 0)).map_err(refused)?;
                }
                let stream = socket.connect(point).await.map_err(refused)?;
                establish(&inner, stream, false, None).await
            })
            .await
            .unwrap_or(Err(AuthError::Timeout));
            let _ = tx.send(result);
        });
        rx.await.unwrap_or(Err(AuthError::ConnectionClosed))
    }

    /// The running connections.
    pub fn connections(&self) -> Vec<Connection<E, M>> {
        self.inner.connections.iter().map(|c| c.value().clone()).filter(|c| !c.is_closed()).collect()
    }

    /// What the node knows of `peer`.
    pub fn peer(&self, peer: &PeerId) -> Option<PeerInfo<E, M>> {
        let entry = self.inner.registry.table().peer(peer).cloned()?;
        let connection = self.inner.connections.get(peer).map(|c| c.value().clone()).filter(|c| !c.is_closed());
        Some(PeerInfo { entry, connection })
    }

    /// Queues `msg` on every running connection that has room (octez broadcast uses
    /// `write_now`); returns how many accepted it.
    pub fn broadcast(&self, msg: &E) -> usize {
        self.connections().iter().filter(|c| c.write_now(msg).unwrap_or(false)).count()
    }

    /// Delivers inbound messages of every connection, current and future, to `recipient`.
    pub fn subscribe(&self, recipient: Recipient<Inbound<E>>) {
        let mut inbound = self.inner.inbound.lock().unwrap_or_else(|e| e.into_inner());
        for c in self.connections() {
            c.subscribe(recipient.clone());
        }
        inbound.push(recipient);
    }

    /// Sends [`NodeEvent`]s (connected, disconnected, rejected) to `recipient`.
    pub fn subscribe_events(&self, recipient: Recipient<NodeEvent>) {
        self.inner.registry.addr().do_send(SubscribeEvents(recipient));
    }

    /// Changes the connection limits.
    pub fn set_limits(&self, limits: ConnectionLimits) {
        self.inner.registry.table().set_limits(limits);
    }

    /// Changes the global bandwidth limits at run time.
    pub fn set_bandwidth(&self, limits: Limits) {
        self.inner.scheduler.set_limits(limits);
    }

    /// Bans an address: refused at accept and for dialling. Running connections stay.
    pub fn ban_ip(&self, ip: std::net::IpAddr) {
        self.inner.registry.table().ban_ip(ip);
    }

    /// Bans a peer id: refused right after its connection message.
    pub fn ban_peer(&self, peer: PeerId) {
        self.inner.registry.table().ban_peer(peer);
    }

    /// Trusts a peer: never greylisted, and twice the bandwidth share of others.
    pub fn trust(&self, peer: PeerId) {
        self.inner.registry.table().trust(peer);
        if let Some(c) = self.inner.connections.get(&peer) {
            self.inner.scheduler.set_weight(c.id(), 2);
        }
    }

    /// The scheduler (limits, global statistics).
    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }

    /// The registry (peer table, events).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Incoming handshakes in progress.
    pub fn pending_handshakes(&self) -> usize {
        self.inner.pending.lock().map_or(0, |p| p.len())
    }

    /// Stops accepting, closes every connection after flushing what it has queued.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        for p in self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            p.cancel.cancel();
        }
        // All at once, each flush bounded: a peer that stopped reading cannot hold the others.
        let mut closing = tokio::task::JoinSet::new();
        for c in self.connections() {
            closing.spawn(async move {
                if tokio::time::timeout(SHUTDOWN_FLUSH, c.close(true)).await.is_err() {
                    c.close(false).await;
                }
            });
        }
        while closing.join_next().await.is_some() {}
    }
}

/// How long [`Node::shutdown`] lets each connection flush what it has queued.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// How often gauges are sampled (queue depths, limits, rates, registry sizes).
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Sets the node's gauges every [`SAMPLE_PERIOD`] from state that is cheap to read, so that
/// nothing on the data path updates a gauge. Ends with the node.
async fn sample_metrics<E: Encoding, M: Metadata>(inner: std::sync::Weak<Inner<E, M>>) {
    use crate::telemetry::*;
    loop {
        tokio::time::sleep(SAMPLE_PERIOD).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.shutdown.is_cancelled() {
            return;
        }
        let conns: Vec<Connection<E, M>> =
            inner.connections.iter().map(|c| c.value().clone()).filter(|c| !c.is_closed()).collect();
        let incoming = conns.iter().filter(|c| c.info().incoming).count();
        metrics::gauge!(CONNECTIONS, "direction" => "incoming").set(incoming as f64);
        metrics::gauge!(CONNECTIONS, "direction" => "outgoing").set((conns.len() - incoming) as f64);
        metrics::gauge!(READ_QUEUE_BYTES).set(conns.iter().map(|c| c.read_queue_bytes()).sum::<usize>() as f64);
        metrics::gauge!(WRITE_QUEUE_BYTES).set(conns.iter().map(|c| c.write_queue_bytes()).sum::<usize>() as f64);
        let limits = inner.scheduler.limits();
        metrics::gauge!(BANDWIDTH_LIMIT, "direction" => "upload")
            .set(limits.max_upload_bytes_per_s.unwrap_or(0) as f64);
        metrics::gauge!(BANDWIDTH_LIMIT, "direction" => "download")
            .set(limits.max_download_bytes_per_s.unwrap_or(0) as f64);
        let stat = inner.scheduler.stat();
        metrics::gauge!(BANDWIDTH_RATE, "direction" => "upload").set(stat.current_outflow as f64);
        metrics::gauge!(BANDWIDTH_RATE, "direction" => "download").set(stat.current_inflow as f64);
        let (up, down) = inner.scheduler.throttled();
        metrics::gauge!(THROTTLED, "direction" => "upload").set(up.as_secs_f64());
        metrics::gauge!(THROTTLED, "direction" => "download").set(down.as_secs_f64());
        let (ips, peers, running, known) = {
            let t = inner.registry.table();
            let (ips, peers) = t.greylist_sizes();
            (ips, peers, t.active(), t.known_points_count())
        };
        metrics::gauge!(GREYLIST, "kind" => "ip").set(ips as f64);
        metrics::gauge!(GREYLIST, "kind" => "peer").set(peers as f64);
        metrics::gauge!(PEERS, "state" => "running").set(running as f64);
        metrics::gauge!(PEERS, "state" => "known_points").set(known as f64);
    }
}

async fn listen<E: Encoding, M: Metadata>(inner: Arc<Inner<E, M>>, listener: tokio::net::TcpListener) {
    loop {
        let (stream, addr) = tokio::select! {
            () = inner.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    // Typically out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // ACL first: a greylisted or banned address costs no handshake work at all.
        if let Some(r) = inner.registry.table().ip_refused(addr.ip(), Instant::now()) {
            drop(stream);
            inner.registry.publish(NodeEvent::Rejected { addr: Some(addr), peer_id: None, reason: r.name() });
            continue;
        }
        let Some(slot) = reserve_pending(&inner, addr) else {
            drop(stream);
            continue;
        };
        let release = |inner: &Inner<E, M>, id: u64| {
            inner.pending.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| p.id != id);
        };
        let Ok(std_stream) = stream.into_std() else {
            release(&inner, slot.id);
            continue;
        };
        let worker_inner = inner.clone();
        let slot_id = slot.id;
        // The socket is re-registered with the worker arbiter's own reactor there.
        let spawned = inner.workers.next().spawn(async move {
            let inner = worker_inner;
            if let Ok(stream) = TcpStream::from_std(std_stream) {
                tokio::select! {
                    () = slot.cancel.cancelled() => {
                        inner.registry.publish(NodeEvent::Rejected { addr: Some(addr), peer_id: None, reason: "Evicted" });
                    }
                    _ = establish(&inner, stream, true, Some(slot.announced.clone())) => {}
                }
            }
            inner.pending.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| p.id != slot.id);
        });
        if !spawned {
            release(&inner, slot_id);
        }
    }
}

/// Takes a pending-handshake slot; when all are taken, evicts the oldest handshake whose peer
/// has not sent its connection message yet, or refuses the newcomer if every slot is busy with
/// real work. A flood of silent sockets thus cannot keep a real peer out.
fn reserve_pending<E: Encoding, M: Metadata>(inner: &Inner<E, M>, addr: SocketAddr) -> Option<Pending> {
    let mut pending = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
    let max = inner.registry.table().limits().max_pending_incoming.max(1);
    if pending.len() >= max {
        match pending.iter().position(|p| !p.announced.load(Ordering::Relaxed)) {
            Some(i) => {
                if let Some(old) = pending.remove(i) {
                    old.cancel.cancel();
                }
            }
            None => {
                inner.registry.publish(NodeEvent::Rejected {
                    addr: Some(addr),
                    peer_id: None,
                    reason: "TooManyPendingHandshakes",
                });
                return None;
            }
        }
    }
    let slot = Pending {
        id: inner.next_pending.fetch_add(1, Ordering::Relaxed),
        announced: Arc::new(AtomicBool::new(false)),
        cancel: CancellationToken::new(),
    };
    pending.push_back(Pending { id: slot.id, announced: slot.announced.clone(), cancel: slot.cancel.clone() });
    Some(slot)
}

/// octez's connect handler after the TCP connection: authenticate (ACL on the peer id before
/// any key derivation), then ban check, version selection, limits, and accept or nack.
async fn establish<E: Encoding, M: Metadata>(
    inner: &Arc<Inner<E, M>>,
    stream: TcpStream,
    incoming: bool,
    announced: Option<Arc<AtomicBool>>,
) -> Result<Connection<E, M>, AuthError> {
    let remote = stream.peer_addr().ok();
    let timeout = if incoming { inner.config.handshake_timeout } else { inner.config.connect_timeout };
    let registry = &inner.registry;
    let reject = |peer_id: Option<PeerId>, e: AuthError| {
        registry.publish(NodeEvent::Rejected { addr: remote, peer_id, reason: e.name() });
        Err(e)
    };
    let filter =
        |p: &crate::handshake::PeerAnnounced<M>| match registry.table().peer_refused(&p.peer_id(), Instant::now()) {
            Some(r) => Err(AuthError::PeerBanned {
                peer_id: p.peer_id(),
                reason: if r.name() == "Banned" { "banned" } else { "greylisted" },
            }),
            None => Ok(()),
        };
    let auth: Authenticated<M> =
        match authenticate_filtered(stream, inner.local.clone(), incoming, timeout, filter).await {
            Ok(a) => {
                // Only now has the peer proved it holds its key (its metadata chunk opened): a
                // replayed connection message followed by silence stays evictable.
                if let Some(a) = &announced {
                    a.store(true, Ordering::Relaxed);
                }
                a
            }
            Err(e) => {
                if let (true, Some(r)) = (e.greylists(incoming), remote) {
                    registry.table().greylist_ip(r.ip(), Instant::now());
                }
                return reject(None, e);
            }
        };
    let info = auth.info().clone();
    let peer = info.peer_id;
    let point = info.id_point.and_then(|p| p.port.map(|port| SocketAddr::new(p.addr, port)));
    if let Err(motive) = auth.negotiated_version() {
        let points = registry.table().known_points(MAX_NACK_POINTS, point);
        let _ = auth.nack(motive, points).await;
        return reject(Some(peer), AuthError::RejectedNoCommonProtocol { motive });
    }
    let admitted = {
        let mut t = registry.table();
        let addr = info.id_point.map(|p| p.addr).or(remote.map(|r| r.ip()));
        match addr {
            Some(a) => t.admit(peer, a, point, Instant::now()).map_err(|e| (e, t.known_points(MAX_NACK_POINTS, point))),
            None => Err((AdmitError::TooManyConnections, Vec::new())),
        }
    };
    if let Err((why, points)) = admitted {
        let motive = match why {
            AdmitError::AlreadyConnected => NackMotive::AlreadyConnected,
            AdmitError::TooManyConnections => NackMotive::TooManyConnections,
        };
        // octez offers known points with every rejection motive.
        let _ = auth.nack(motive, points).await;
        registry.publish(NodeEvent::Rejected { addr: remote, peer_id: Some(peer), reason: motive.octez_name() });
        return Err(AuthError::Nacked { motive });
    }
    let weight = if registry.table().is_trusted(&peer) { 2 } else { 1 };
    let config =
        ConnectionConfig { scheduler: Some(inner.scheduler.clone()), weight, ..inner.config.connection.clone() };
    let conn = match auth.accept::<E>(config).await {
        Ok(c) => c,
        Err(e) => {
            registry.table().disconnected(peer, Some(e.name().to_owned()), Instant::now());
            if let AuthError::RejectedByNack { alternative_points: Some(points), .. } = &e {
                let mut t = registry.table();
                for p in points {
                    t.add_known_point(*p);
                }
            }
            return reject(Some(peer), e);
        }
    };
    registry.table().running(peer, conn.id(), info.private_node, Instant::now());
    conn.subscribe_closed(registry.addr().recipient());
    {
        // Under the subscriber lock, so a concurrent `Node::subscribe` sees this connection or
        // this connection sees its recipient: never neither.
        // Listed before it is subscribed: whoever receives one of its messages finds it in
        // `connections()`.
        let inbound = inner.inbound.lock().unwrap_or_else(|e| e.into_inner());
        inner.connections.insert(peer, conn.clone());
        for r in inbound.iter() {
            conn.subscribe(r.clone());
        }
    }
    registry.publish(NodeEvent::Connected { peer_id: peer, connection: conn.id(), point, incoming });
    let (watch, weak) = (conn.clone(), Arc::downgrade(inner));
    actix::spawn(async move {
        watch.closed().await;
        if let Some(inner) = weak.upgrade() {
            inner.connections.remove_if(&peer, |_, c| c.id() == watch.id());
        }
    });
    Ok(conn)
}
