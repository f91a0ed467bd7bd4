//! [`Node`]: a listener, a scheduler, a registry and the connections, tied together as octez's
//! connect handler does (protocol.md §10.2).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::connection::ControlSink;
use super::overlay::OverlayActor;
use super::registry::{NodeEvent, Registry, SubscribeEvents};
use super::socket::authenticate_filtered;
use super::{Authenticated, Connection, ConnectionConfig, Inbound, Limits, Scheduler, Workers};
use crate::admission::{Admission, AdmissionConfig};
use crate::crypto::{CryptoBackend, PeerId};
use crate::handshake::{AuthError, LocalConfig, DEFAULT_HANDSHAKE_TIMEOUT};
use crate::identity::Identity;
use crate::maintenance::MaintenanceConfig;
use crate::message::{Control, Encoding};
use crate::overlay::OverlayConfig;
use crate::peers::{AclConfig, AdmitError, ConnectionLimits, PeerEntry, PeerTable, PointInfo, ADVERTISED_POINTS};
use crate::peers_file::{PeersFileConfig, PeersFileError, WallClock};
use crate::pow::PowTarget;
use crate::telemetry;
use crate::wire::{Metadata, NackMotive, NetworkVersion};

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
    /// Keep the connection count between the limits' thresholds by dialling known points and
    /// closing extra connections (octez `P2p_maintenance`). `None` (the library's default): the
    /// node dials only when asked ([`Node::connect`]) and admits up to `max_connections`.
    pub maintenance: Option<MaintenanceConfig>,
    /// How P2P-layer messages (`Bootstrap`, `Advertise`, `Swap_*`) are answered, when the
    /// message encoding has a P2P layer ([`P2pMessage`](crate::message::P2pMessage)).
    pub overlay: OverlayConfig,
    /// octez's private mode: only trusted points are dialled and accepted, P2P-layer messages
    /// are ignored, no point is advertised. (Announce it to peers by setting `private_node` in
    /// [`NodeConfig::metadata`], as `tezos-p2p listen --private-mode` does.)
    pub private_mode: bool,
    /// Trusted points (octez bootstrap peers): dialled first, never forgotten.
    pub trusted_points: Vec<SocketAddr>,
    /// Where to keep what the node learns across restarts (`None`: nothing is kept).
    pub peers_file: Option<PeersFileConfig>,
    /// Handshakes in progress and connections allowed per address and per network, checked
    /// before a new socket's first byte is read (see [`crate::admission`] for the defaults).
    pub admission: AdmissionConfig,
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
            maintenance: None,
            overlay: OverlayConfig::default(),
            private_mode: false,
            trusted_points: Vec::new(),
            peers_file: None,
            admission: AdmissionConfig::default(),
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

    /// Run maintenance (see [`NodeConfig::maintenance`]).
    pub fn maintenance(mut self, maintenance: MaintenanceConfig) -> Self {
        self.config.maintenance = Some(maintenance);
        self
    }

    /// Trust `point` (a bootstrap peer).
    pub fn trusted_point(mut self, point: SocketAddr) -> Self {
        self.config.trusted_points.push(point);
        self
    }

    /// Keep the peers file (see [`NodeConfig::peers_file`]).
    pub fn peers_file(mut self, peers_file: PeersFileConfig) -> Self {
        self.config.peers_file = Some(peers_file);
        self
    }

    /// octez's private mode (see [`NodeConfig::private_mode`]).
    pub fn private_mode(mut self, private: bool) -> Self {
        self.config.private_mode = private;
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
    /// The limits are inconsistent (e.g. `min_connections` above `max_connections`).
    #[error("invalid connection limits: {0}")]
    Limits(String),
    /// The peers file could not be read (or, with `recover_corrupt`, moved aside).
    #[error(transparent)]
    PeersFile(#[from] PeersFileError),
}

/// A handshake in progress on the listener, which may be evicted by a newer one if it has not
/// even sent its connection message (slowloris defence).
struct Pending {
    id: u64,
    announced: Arc<AtomicBool>,
    cancel: CancellationToken,
}

pub(super) struct Inner<E: Encoding, M: Metadata> {
    pub(super) local: Arc<LocalConfig<M>>,
    pub(super) config: NodeConfig<M>,
    workers: Workers,
    scheduler: Scheduler,
    pub(super) registry: Registry,
    pub(super) connections: DashMap<PeerId, Connection<E, M>>,
    /// Subscribers to inbound messages (`true`: P2P-layer messages too).
    inbound: Mutex<Vec<(Recipient<Inbound<E>>, bool)>>,
    listen_addr: Option<SocketAddr>,
    pub(super) shutdown: CancellationToken,
    pending: Mutex<VecDeque<Pending>>,
    next_pending: AtomicU64,
    /// Where connections hand P2P-layer messages (set when the encoding has a P2P layer).
    control: OnceLock<ControlSink>,
    /// The overlay actor (P2P-layer answers, swaps, maintenance).
    overlay: OnceLock<Addr<OverlayActor<E, M>>>,
    /// Wakes maintenance (a connection came or went, or someone asked).
    pub(super) wake: Arc<Notify>,
    /// A new point was learned (maintenance waits for one after asking peers).
    pub(super) new_point: Arc<Notify>,
    /// Monotonic ↔ wall-clock time, for the peers file and the admin API.
    pub(super) clock: WallClock,
    /// Handshakes and connections per source.
    admission: Mutex<Admission>,
    /// Refusals of sockets before any handshake work are counted always, but published as events
    /// at a bounded rate: a flood must not flood the event subscribers too.
    refusal_events: Mutex<EventBudget>,
    /// A corrupt peers file moved aside at start: (where it went, what was wrong).
    peers_file_recovered: Option<(std::path::PathBuf, String)>,
}

/// A token bucket for refusal events: a burst of [`EventBudget::BURST`], then that many a second.
struct EventBudget {
    tokens: u32,
    refilled: Instant,
}

impl EventBudget {
    const BURST: u32 = 20;

    fn new() -> Self {
        Self { tokens: Self::BURST, refilled: Instant::now() }
    }

    fn take(&mut self, now: Instant) -> bool {
        if now.duration_since(self.refilled) >= Duration::from_secs(1) {
            self.tokens = Self::BURST;
            self.refilled = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl<E: Encoding, M: Metadata> Inner<E, M> {
    /// A socket refused before any handshake work: always counted, published at a bounded rate.
    fn refuse_socket(&self, addr: SocketAddr, reason: &'static str) {
        if self.refusal_events.lock().unwrap_or_else(|e| e.into_inner()).take(Instant::now()) {
            self.registry.publish(NodeEvent::Rejected { addr: Some(addr), peer_id: None, reason });
        } else {
            metrics::counter!(telemetry::REJECTIONS, "reason" => reason).increment(1);
            metrics::counter!(telemetry::HANDSHAKES, "result" => "rejected").increment(1);
        }
    }

    /// The source accounting, locked briefly.
    fn admission(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.admission.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<E: Encoding, M: Metadata> Inner<E, M> {
    /// The overlay actor, once started.
    pub(super) fn overlay_addr(&self) -> Option<Addr<OverlayActor<E, M>>> {
        self.overlay.get().cloned()
    }
}

/// A running node: its connections, scheduler and registry. Cheap to clone.
pub struct Node<E: Encoding, M: Metadata> {
    pub(super) inner: Arc<Inner<E, M>>,
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
    /// Starts the node: binds the listener (if configured), loads the peers file (if any),
    /// starts the scheduler, the registry, the overlay (and maintenance, if configured) and the
    /// worker arbiters. Must run inside an actix `System`.
    pub async fn start(config: NodeConfig<M>) -> Result<Self, NodeError> {
        if config.maintenance.is_some() {
            config.limits.check().map_err(NodeError::Limits)?;
        }
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
        let clock = WallClock::now();
        let now = Instant::now();
        let mut table = PeerTable::new(config.acl.clone(), config.limits);
        table.set_maintained(config.maintenance.is_some());
        if let Some(l) = listen_addr.filter(|l| !l.ip().is_unspecified()) {
            table.add_own_point(l);
            if let Some(port) = local.advertised_port {
                table.add_own_point(SocketAddr::new(l.ip(), port));
            }
        }
        let mut peers_file_recovered = None;
        if let Some(pf) = &config.peers_file {
            match crate::peers_file::load(&pf.path) {
                Ok(None) => {}
                Ok(Some(doc)) => match crate::peers_file::apply(&doc, &mut table, &clock, now) {
                    Ok(r) => {
                        tracing::info!(path = %pf.path.display(), peers = r.peers, points = r.points, "peers file loaded")
                    }
                    Err(reason) => {
                        let e = PeersFileError::Corrupt { path: pf.path.clone(), reason };
                        if !pf.recover_corrupt {
                            return Err(e.into());
                        }
                        let aside = crate::peers_file::move_aside(&pf.path)?;
                        tracing::warn!("{e}; moved aside to {}", aside.display());
                        peers_file_recovered = Some((aside, e.to_string()));
                    }
                },
                Err(e @ PeersFileError::Corrupt { .. }) if pf.recover_corrupt => {
                    let aside = crate::peers_file::move_aside(&pf.path)?;
                    tracing::warn!("{e}; moved aside to {}", aside.display());
                    peers_file_recovered = Some((aside, e.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        for p in &config.trusted_points {
            table.set_point_trusted(*p, true, now);
        }
        let workers = if config.workers == 0 { Workers::per_core() } else { Workers::new(config.workers) };
        let inner = Arc::new(Inner {
            local,
            workers,
            scheduler: Scheduler::start(config.bandwidth),
            registry: Registry::start(table),
            connections: DashMap::new(),
            inbound: Mutex::new(Vec::new()),
            listen_addr,
            shutdown: CancellationToken::new(),
            pending: Mutex::new(VecDeque::new()),
            next_pending: AtomicU64::new(0),
            control: OnceLock::new(),
            overlay: OnceLock::new(),
            wake: Arc::new(Notify::new()),
            new_point: Arc::new(Notify::new()),
            clock,
            admission: Mutex::new(Admission::new(config.admission)),
            refusal_events: Mutex::new(EventBudget::new()),
            peers_file_recovered,
            config,
        });
        let overlay = OverlayActor::new(Arc::downgrade(&inner)).start();
        if E::from_control(Control::Bootstrap).is_some() {
            let _ = inner.control.set(ControlSink {
                recipient: overlay.clone().recipient(),
                config: Arc::new(inner.config.overlay.clone()),
            });
        }
        let _ = inner.overlay.set(overlay);
        if let Some(listener) = listener {
            actix::spawn(listen(inner.clone(), listener));
        }
        actix::spawn(sample_metrics(Arc::downgrade(&inner)));
        if inner.config.maintenance.is_some() {
            actix::spawn(super::overlay::maintenance_loop(Arc::downgrade(&inner)));
        }
        if let Some(pf) = inner.config.peers_file.clone() {
            actix::spawn(save_peers_periodically(Arc::downgrade(&inner), pf.save_period));
        }
        Ok(Self { inner })
    }

    /// The bound listening address.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.listen_addr
    }

    /// With [`PeersFileConfig::recover_corrupt`](crate::peers_file::PeersFileConfig): where a
    /// corrupt peers file was moved at start, and what was wrong with it (`None`: it loaded, or
    /// there was none).
    pub fn peers_file_recovered(&self) -> Option<(&std::path::Path, &str)> {
        self.inner.peers_file_recovered.as_ref().map(|(p, e)| (p.as_path(), e.as_str()))
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.local.identity.peer_id
    }

    /// Dials `point`, authenticates and accepts; the connection runs on a worker arbiter. The
    /// point's state and reconnection delay are kept in the table (maintenance honours the
    /// delay; an explicit `connect` does not, as in octez).
    pub async fn connect(&self, point: SocketAddr) -> Result<Connection<E, M>, AuthError> {
        let r = self.dial(point).await;
        let result = if r.is_ok() { "connected" } else { "failed" };
        metrics::counter!(telemetry::DIALS, "result" => result).increment(1);
        if let Err(e) = &r {
            self.inner.registry.publish(NodeEvent::DialFailed { point, reason: e.name() });
        }
        r
    }

    async fn dial(&self, point: SocketAddr) -> Result<Connection<E, M>, AuthError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(AuthError::ConnectionRefused { addr: point, reason: "the node is shutting down".into() });
        }
        {
            // An explicit dial of one of our own points is allowed (the handshake then reports
            // `Myself`, as octez's `connect` does); maintenance never picks them.
            let mut t = self.inner.registry.table();
            if let Some(r) = t.ip_refused(point.ip(), Instant::now()) {
                return Err(AuthError::ConnectionRefused { addr: point, reason: format!("address {}", r.name()) });
            }
            if self.inner.config.private_mode && !t.point(&point).is_some_and(|p| p.trusted) {
                return Err(AuthError::PrivateMode { point });
            }
            t.point_requested(point, Instant::now());
        }
        self.inner.registry.publish(NodeEvent::Dialing { point });
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
            if result.is_err() {
                // Failed before the peer was admitted: back off (after admission, the
                // registry's disconnection bookkeeping does it).
                inner.registry.table().point_failed(point, Instant::now());
            }
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
    /// `write_now`); returns how many accepted it. The message is encoded once and its bytes
    /// shared by every queue.
    pub fn broadcast(&self, msg: &E) -> usize {
        match Connection::<E, M>::encode(msg) {
            Ok(encoded) => self.broadcast_encoded(&encoded),
            Err(_) => 0,
        }
    }

    /// [`Node::broadcast`] of a message already encoded.
    pub fn broadcast_encoded(&self, msg: &super::connection::Encoded<E>) -> usize {
        // Straight over the table: no handle is cloned per connection.
        self.inner.connections.iter().filter(|c| c.value().write_encoded_now(msg).unwrap_or(false)).count()
    }

    /// Delivers inbound messages of every connection, current and future, to `recipient`.
    /// P2P-layer messages (`Bootstrap`, `Advertise`, `Swap_*`, `Disconnect`) are the node's and
    /// are not delivered: see [`Node::subscribe_all`].
    pub fn subscribe(&self, recipient: Recipient<Inbound<E>>) {
        self.add_subscriber(recipient, false);
    }

    /// Like [`Node::subscribe`], P2P-layer messages included (after the node has handled them).
    pub fn subscribe_all(&self, recipient: Recipient<Inbound<E>>) {
        self.add_subscriber(recipient, true);
    }

    fn add_subscriber(&self, recipient: Recipient<Inbound<E>>, p2p: bool) {
        let mut inbound = self.inner.inbound.lock().unwrap_or_else(|e| e.into_inner());
        for c in self.connections() {
            if p2p {
                c.subscribe_all(recipient.clone());
            } else {
                c.subscribe(recipient.clone());
            }
        }
        inbound.push((recipient, p2p));
    }

    /// Whether the node speaks octez's P2P layer (its encoding carries `Bootstrap`, …).
    pub fn has_p2p_layer(&self) -> bool {
        self.inner.control.get().is_some()
    }

    /// Wakes maintenance now (octez `P2p.maintain`); without maintenance, does nothing.
    pub fn maintain(&self) {
        self.inner.wake.notify_one();
    }

    /// Learns a point, as if a peer had advertised it; returns whether it is new.
    pub fn add_point(&self, point: SocketAddr) -> bool {
        let new = self.inner.registry.table().register_point(point, Instant::now());
        if new {
            self.inner.new_point.notify_waiters();
        }
        new
    }

    /// Trusts (or stops trusting) a point: dialled first, never forgotten.
    pub fn set_point_trusted(&self, point: SocketAddr, trusted: bool) {
        self.inner.registry.table().set_point_trusted(point, trusted, Instant::now());
        self.inner.wake.notify_one();
    }

    /// What the node knows of `point`.
    pub fn point(&self, point: &SocketAddr) -> Option<PointInfo> {
        self.inner.registry.table().point(point).cloned()
    }

    /// Every known point.
    pub fn points(&self) -> Vec<(SocketAddr, PointInfo)> {
        self.inner.registry.table().points().map(|(a, p)| (*a, p.clone())).collect()
    }

    /// Every known peer.
    pub fn peers(&self) -> Vec<(PeerId, PeerEntry)> {
        self.inner.registry.table().peers().map(|(a, p)| (*a, p.clone())).collect()
    }

    /// Closes the connection with `peer`, if any (with `wait`, what is queued is written first).
    pub async fn disconnect(&self, peer: &PeerId, wait: bool) {
        let conn = self.inner.connections.get(peer).map(|c| c.value().clone());
        if let Some(c) = conn {
            c.close(wait).await;
        }
    }

    /// Writes the peers file now (it is also written periodically and at shutdown).
    pub fn save_peers(&self) -> Result<(), PeersFileError> {
        save_peers(&self.inner)
    }

    /// Monotonic ↔ wall-clock time, as the node converts them.
    pub fn clock(&self) -> WallClock {
        self.inner.clock
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig<M> {
        &self.inner.config
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

    /// Bans an address: refused at accept and for dialling. Running connections stay (see
    /// [`Node::ban_point`] for octez's RPC behaviour).
    pub fn ban_ip(&self, ip: IpAddr) {
        self.inner.registry.table().ban_ip(ip);
    }

    /// Lifts an address ban or greylisting.
    pub fn unban_ip(&self, ip: IpAddr) {
        self.inner.registry.table().unban_ip(ip);
    }

    /// Bans a peer id: refused right after its connection message. Its running connection
    /// stays (see [`Node::ban_peer_now`]).
    pub fn ban_peer(&self, peer: PeerId) {
        self.inner.registry.table().ban_peer(peer);
    }

    /// octez `PATCH /network/peers/<id> {"acl":"ban"}`: bans the peer and closes its connection.
    pub async fn ban_peer_now(&self, peer: PeerId) {
        self.ban_peer(peer);
        self.disconnect(&peer, false).await;
    }

    /// octez `PATCH /network/points/<point> {"acl":"ban"}`: bans the address, closes every
    /// connection from it and bans those peers.
    pub async fn ban_point(&self, point: SocketAddr) {
        let ip = point.ip();
        self.ban_ip(ip);
        self.inner.registry.table().set_point_trusted(point, false, Instant::now());
        let victims: Vec<Connection<E, M>> =
            self.connections().into_iter().filter(|c| c.info().id_point.is_some_and(|p| p.addr == ip)).collect();
        for c in victims {
            self.ban_peer(c.info().peer_id);
            c.close(false).await;
        }
    }

    /// Lifts a peer ban or greylisting.
    pub fn unban_peer(&self, peer: PeerId) {
        self.inner.registry.table().unban_peer(peer);
    }

    /// Empties the greylists and the ban lists (octez `DELETE /network/greylist`).
    pub fn clear_acl(&self) {
        self.inner.registry.table().clear_acl();
    }

    /// Trusts a peer: never greylisted, spared by maintenance, and twice the bandwidth share
    /// of others.
    pub fn trust(&self, peer: PeerId) {
        self.inner.registry.table().trust(peer);
        if let Some(c) = self.inner.connections.get(&peer) {
            self.inner.scheduler.set_weight(c.id(), 2);
        }
    }

    /// Stops trusting a peer.
    pub fn untrust(&self, peer: PeerId) {
        self.inner.registry.table().untrust(peer);
        if let Some(c) = self.inner.connections.get(&peer) {
            self.inner.scheduler.set_weight(c.id(), 1);
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

    /// Stops accepting and dialling, says `Disconnect` to every peer (when the encoding has a
    /// P2P layer), closes every connection after flushing what it has queued, and saves the
    /// peers file (if configured).
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        for p in self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            p.cancel.cancel();
        }
        let goodbye = if self.has_p2p_layer() { E::from_control(Control::Disconnect) } else { None };
        // All at once, each flush bounded: a peer that stopped reading cannot hold the others.
        let mut closing = tokio::task::JoinSet::new();
        for c in self.connections() {
            let goodbye = goodbye.clone();
            closing.spawn(async move {
                if let Some(m) = &goodbye {
                    if c.write_now(m).unwrap_or(false) {
                        metrics::counter!(telemetry::OVERLAY_MESSAGES, "kind" => "Disconnect", "direction" => "sent")
                            .increment(1);
                    }
                }
                if tokio::time::timeout(SHUTDOWN_FLUSH, c.close(true)).await.is_err() {
                    c.close(false).await;
                }
            });
        }
        while closing.join_next().await.is_some() {}
        if self.inner.config.peers_file.is_some() {
            // The registry marks the closed connections disconnected; the file stores every
            // point and peer as disconnected anyway.
            if let Err(e) = save_peers(&self.inner) {
                tracing::warn!("{e}");
            }
        }
    }
}

fn save_peers<E: Encoding, M: Metadata>(inner: &Inner<E, M>) -> Result<(), PeersFileError> {
    let Some(pf) = &inner.config.peers_file else { return Ok(()) };
    let (doc, peers, points) = {
        let t = inner.registry.table();
        (crate::peers_file::to_json(&t, &inner.clock, Instant::now()), t.known_peers_count(), t.known_points_count())
    };
    crate::peers_file::save(&pf.path, &doc)?;
    inner.registry.publish(NodeEvent::PeersSaved { peers, points });
    Ok(())
}

async fn save_peers_periodically<E: Encoding, M: Metadata>(inner: std::sync::Weak<Inner<E, M>>, period: Duration) {
    loop {
        tokio::time::sleep(period.max(Duration::from_secs(1))).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.shutdown.is_cancelled() {
            return;
        }
        if let Err(e) = save_peers(&inner) {
            tracing::warn!("{e}");
        }
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
        let (states, peers) = {
            let t = inner.registry.table();
            let mut states = [0usize; 4];
            for (_, p) in t.points() {
                states[match p.state {
                    crate::peers::PointState::Requested => 0,
                    crate::peers::PointState::Accepted(_) => 1,
                    crate::peers::PointState::Running(_) => 2,
                    crate::peers::PointState::Disconnected => 3,
                }] += 1;
            }
            (states, t.known_peers_count())
        };
        for (state, n) in ["requested", "accepted", "running", "disconnected"].into_iter().zip(states) {
            metrics::gauge!(POINTS, "state" => state).set(n as f64);
        }
        metrics::gauge!(KNOWN_PEERS).set(peers as f64);
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
            inner.refuse_socket(addr, r.name());
            continue;
        }
        // Then the per-source limits, still before reading a byte.
        if let Err(r) = inner.admission().begin_handshake(addr.ip()) {
            drop(stream);
            inner.refuse_socket(addr, r.name());
            continue;
        }
        let Some(slot) = reserve_pending(&inner, addr) else {
            drop(stream);
            inner.admission().end_handshake(addr.ip());
            continue;
        };
        let release = |inner: &Inner<E, M>, id: u64| {
            inner.pending.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| p.id != id);
            inner.admission().end_handshake(addr.ip());
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
            inner.admission().end_handshake(addr.ip());
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
                if let AuthError::Myself { point: Some(p), .. } = &e {
                    // octez `my_id_points`: a point that turned out to be us is never dialled
                    // again nor advertised.
                    if let Some(port) = p.port {
                        registry.table().add_own_point(SocketAddr::new(p.addr, port));
                    }
                }
                return reject(None, e);
            }
        };
    let info = auth.info().clone();
    let peer = info.peer_id;
    let point = info.id_point.and_then(|p| p.port.map(|port| SocketAddr::new(p.addr, port)));
    let now = Instant::now();
    // octez's connect handler, after authentication: expected peer id, then private mode.
    let (expected, point_trusted) = {
        let t = registry.table();
        let p = point.and_then(|p| t.point(&p));
        (p.and_then(|p| p.expected_peer_id), p.is_some_and(|p| p.trusted))
    };
    if let (Some(expected), Some(point)) = (expected, point) {
        if expected != peer {
            if let Some(r) = remote {
                registry.table().greylist_ip(r.ip(), now);
            }
            return reject(Some(peer), AuthError::IdentityCheckFailure { point, expected, peer_id: peer });
        }
    }
    if inner.config.private_mode && !point_trusted && !registry.table().is_trusted(&peer) {
        // No Nack: the socket is just closed (octez `Private_mode`).
        return reject(
            Some(peer),
            AuthError::PrivateMode { point: point.or(remote).unwrap_or(([0, 0, 0, 0], 0).into()) },
        );
    }
    if let Err(motive) = auth.negotiated_version() {
        let points = {
            let mut t = registry.table();
            // octez unregisters a point whose chain or version does not match.
            if let Some(p) = point {
                t.forget_point(&p);
            }
            t.advertisable_points(ADVERTISED_POINTS, point, now, &mut rand::thread_rng())
        };
        let _ = auth.nack(motive, points).await;
        return reject(Some(peer), AuthError::RejectedNoCommonProtocol { motive });
    }
    let admitted = {
        let mut t = registry.table();
        let addr = info.id_point.map(|p| p.addr).or(remote.map(|r| r.ip()));
        match addr {
            Some(a) => t
                .admit_at(peer, a, point, Some(incoming), now)
                .map_err(|e| (e, t.advertisable_points(ADVERTISED_POINTS, point, now, &mut rand::thread_rng()))),
            None => Err((AdmitError::TooManyConnections, Vec::new())),
        }
    };
    // The per-source connection limit (checked again now: several handshakes from one address
    // may have been in progress at once).
    let source = remote.map(|r| r.ip());
    let admitted = admitted.and_then(|()| match source.map(|ip| inner.admission().open_connection(ip)) {
        Some(Err(r)) => {
            registry.table().disconnected(peer, Some(r.name().to_owned()), now);
            tracing::debug!(%peer, reason = r.name(), "refused by the per-source connection limit");
            Err((AdmitError::TooManyConnections, Vec::new()))
        }
        _ => Ok(()),
    });
    let release_source = || {
        if let Some(ip) = source {
            inner.admission().close_connection(ip);
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
    let conn = match auth.accept_with::<E>(config, inner.control.get().cloned()).await {
        Ok(c) => c,
        Err(e) => {
            release_source();
            registry.table().disconnected(peer, Some(e.name().to_owned()), Instant::now());
            if let AuthError::RejectedByNack { alternative_points: Some(points), .. } = &e {
                let mut t = registry.table();
                let mut new = 0;
                for p in points {
                    new += usize::from(t.register_point(*p, Instant::now()));
                }
                if new > 0 {
                    inner.new_point.notify_waiters();
                }
            }
            return reject(Some(peer), e);
        }
    };
    let too_many = {
        let mut t = registry.table();
        t.running(peer, conn.id(), info.private_node, Instant::now());
        t.running_count() > t.limits().bounds().max_threshold
    };
    conn.subscribe_closed(registry.addr().recipient());
    {
        // Under the subscriber lock, so a concurrent `Node::subscribe` sees this connection or
        // this connection sees its recipient: never neither.
        // Listed before it is subscribed: whoever receives one of its messages finds it in
        // `connections()`.
        let inbound = inner.inbound.lock().unwrap_or_else(|e| e.into_inner());
        inner.connections.insert(peer, conn.clone());
        for (r, p2p) in inbound.iter() {
            if *p2p {
                conn.subscribe_all(r.clone());
            } else {
                conn.subscribe(r.clone());
            }
        }
    }
    registry.publish(NodeEvent::Connected { peer_id: peer, connection: conn.id(), point, incoming });
    if too_many {
        inner.wake.notify_one();
    }
    // Watches the connection without holding a handle (a handle would keep it alive).
    let (closed, id, weak) = (conn.closed_token(), conn.id(), Arc::downgrade(inner));
    actix::spawn(async move {
        closed.cancelled().await;
        if let Some(inner) = weak.upgrade() {
            if let Some(ip) = source {
                inner.admission().close_connection(ip);
            }
            inner.connections.remove_if(&peer, |_, c| c.id() == id);
            // octez fires its "too few connections" trigger on every disconnection below the
            // minimum.
            if inner.connections.len() < inner.config.limits.min_connections {
                inner.wake.notify_one();
            }
        }
    });
    Ok(conn)
}
