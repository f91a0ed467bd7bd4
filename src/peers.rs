//! The peer table: peers, known points, greylists, bans, trust and connection limits
//! (protocol.md §§10, 12; octez `P2p_pool`, `P2p_point_state`, `P2p_peer_state`, `P2p_acl`).
//! Pure: every time-dependent call takes `now`, every random choice takes the caller's RNG.
//!
//! Points follow octez's states (`Requested` while we dial, `Accepted` while the handshake
//! completes, `Running`, `Disconnected`) and its reconnection delay: after a failed attempt a
//! point may not be dialled again for `initial_delay` (1 s), growing ×1.2 per failure up to a
//! two-day step; after a running connection ends, for 60 s. The table is bounded as octez bounds
//! it (`max_known_points`, `max_known_peer_ids`: (400, 300)): when a new entry would exceed the
//! maximum, disconnected untrusted entries are forgotten down to the target — so a peer
//! advertising junk can neither grow the table without limit nor evict trusted points.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom as _;
use rand::Rng;

use crate::crypto::PeerId;

/// `now + d`, saturating at about a century for "forever" timeouts such as `Duration::MAX`.
fn far(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// How long a point waits before it is dialled again (octez `Point_reconnection_config`, the
/// node's `p2p.greylisting_config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectionConfig {
    /// Delay after a first failure (octez: 1 s).
    pub initial_delay: Duration,
    /// Growth of the delay per further failure (octez: 1.2).
    pub factor: f64,
    /// Largest delay (octez `increase_cap`: 2 days).
    pub increase_cap: Duration,
    /// Delay after a running connection ends (octez: 60 s).
    pub disconnection_delay: Duration,
}

impl Default for ReconnectionConfig {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(1),
            factor: 1.2,
            increase_cap: Duration::from_secs(2 * 86_400),
            disconnection_delay: Duration::from_secs(60),
        }
    }
}

/// ACL settings (defaults from octez `P2p_limits`).
#[derive(Debug, Clone, PartialEq)]
pub struct AclConfig {
    /// How long a greylisted address or peer stays refused (octez `greylist_timeout`: 1 day).
    pub greylist_timeout: Duration,
    /// Most greylisted addresses remembered; the oldest are forgotten first. octez uses a
    /// ≈2 MiB bloom filter; an exact bounded table of this size costs about 1 MiB.
    pub ip_greylist_size: usize,
    /// Most greylisted peer ids remembered (octez `peer_greylist_size`: 1023).
    pub peer_greylist_size: usize,
    /// Reconnection delays of points.
    pub reconnection: ReconnectionConfig,
    /// A peer that says `Disconnect` this many times within the window is greylisted: a
    /// connect–disconnect loop costs the node a handshake each time (octez has no such rule;
    /// an honest node does not restart five times in ten minutes).
    pub disconnect_loop: (u32, Duration),
}

impl Default for AclConfig {
    fn default() -> Self {
        Self {
            greylist_timeout: Duration::from_secs(86_400),
            ip_greylist_size: 16 * 1024,
            peer_greylist_size: 1023,
            reconnection: ReconnectionConfig::default(),
            disconnect_loop: (5, Duration::from_secs(600)),
        }
    }
}

/// Connection limits and table bounds (defaults from octez `P2p_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Maintenance dials when fewer connections run (octez `min_connections`: 10).
    pub min_connections: usize,
    /// What maintenance aims for (octez `expected_connections`: 50).
    pub expected_connections: usize,
    /// Most running connections (octez `max_connections`: 100). Beyond (beyond
    /// [`Bounds::max_threshold`] when maintenance runs), peers get `Nack(Too_many_connections)`
    /// with known points.
    pub max_connections: usize,
    /// Most incoming handshakes in progress (octez `max_incoming_connections`: 20).
    pub max_pending_incoming: usize,
    /// Known points kept: when a new one would exceed the first, disconnected untrusted points
    /// are forgotten down to the second (octez `max_known_points`: (400, 300)).
    pub max_known_points: (usize, usize),
    /// Known peers kept, likewise (octez `max_known_peer_ids`: (400, 300)).
    pub max_known_peer_ids: (usize, usize),
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            min_connections: 10,
            expected_connections: 50,
            max_connections: 100,
            max_pending_incoming: 20,
            max_known_points: (400, 300),
            max_known_peer_ids: (400, 300),
        }
    }
}

/// Maintenance thresholds derived from the limits (octez `make_maintenance_bounds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Below this, maintenance dials (`min + step_min`).
    pub min_threshold: usize,
    /// How many it dials at least towards (`min + 2·step_min`).
    pub min_target: usize,
    /// How many it dials at most towards, and closes down to (`max − 2·step_max`).
    pub max_target: usize,
    /// Above this, maintenance closes connections (`max − step_max`); new ones are refused
    /// from this many on.
    pub max_threshold: usize,
}

impl ConnectionLimits {
    /// octez's `--connections N`: min `N/2` (1 for N = 1), expected `N`, max `3N/2`, tables
    /// `(8N, 6N)`.
    pub fn from_connections(n: usize) -> Self {
        let table = (8 * n, 8 * n / 4 * 3);
        Self {
            min_connections: if n == 1 { 1 } else { n / 2 },
            expected_connections: n,
            max_connections: 3 * n / 2,
            max_known_points: table,
            max_known_peer_ids: table,
            ..Self::default()
        }
    }

    /// Checks `min ≤ expected ≤ max` and the table bounds (octez's config validation).
    pub fn check(&self) -> Result<(), String> {
        if self.min_connections > self.expected_connections {
            return Err(format!(
                "min_connections ({}) is above expected_connections ({})",
                self.min_connections, self.expected_connections
            ));
        }
        if self.expected_connections > self.max_connections {
            return Err(format!(
                "expected_connections ({}) is above max_connections ({})",
                self.expected_connections, self.max_connections
            ));
        }
        for (what, (max, target)) in
            [("max_known_points", self.max_known_points), ("max_known_peer_ids", self.max_known_peer_ids)]
        {
            if target > max {
                return Err(format!("{what}: target {target} is above the maximum {max}"));
            }
        }
        Ok(())
    }

    /// The maintenance thresholds (octez: 23 / 36 / 68 / 84 with the defaults).
    pub fn bounds(&self) -> Bounds {
        let (min, expected, max) = (self.min_connections, self.expected_connections, self.max_connections);
        let step_min = expected.saturating_sub(min) / 3;
        let step_max = max.saturating_sub(expected) / 3;
        Bounds {
            min_threshold: min + step_min,
            min_target: min + 2 * step_min,
            max_target: max.saturating_sub(2 * step_max),
            max_threshold: max.saturating_sub(step_max),
        }
    }
}

/// Why the ACL refuses an address or a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// On the manual ban list.
    Banned,
    /// Greylisted (until the entry expires).
    Greylisted,
}

impl Refusal {
    /// A bounded label for events and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Banned => "Banned",
            Self::Greylisted => "Greylisted",
        }
    }
}

/// A bounded map with expiry: the oldest entry is forgotten when full.
#[derive(Debug)]
struct Greylist<K> {
    until: HashMap<K, Instant>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> Greylist<K> {
    fn new(capacity: usize) -> Self {
        Self { until: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    fn add(&mut self, k: K, until: Instant) {
        if self.until.insert(k.clone(), until).is_some() {
            // A repeat offender moves to the back of the eviction order.
            self.order.retain(|x| x != &k);
        }
        self.order.push_back(k);
        while self.until.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.until.remove(&old);
                }
                None => break,
            }
        }
    }

    fn contains(&mut self, k: &K, now: Instant) -> bool {
        match self.until.get(k) {
            Some(&t) if t > now => true,
            Some(_) => {
                self.until.remove(k);
                self.order.retain(|x| x != k);
                false
            }
            None => false,
        }
    }

    fn remove(&mut self, k: &K) {
        if self.until.remove(k).is_some() {
            self.order.retain(|x| x != k);
        }
    }

    fn clear(&mut self) {
        self.until.clear();
        self.order.clear();
    }

    fn len(&self) -> usize {
        self.until.len()
    }

    /// Unexpired entries and their expiry, oldest first.
    fn entries(&self, now: Instant) -> impl Iterator<Item = (&K, Instant)> {
        self.order.iter().filter_map(move |k| self.until.get(k).filter(|t| **t > now).map(|t| (k, *t)))
    }
}

/// Where a peer stands (octez point/peer states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PeerState {
    /// Authenticated, being accepted.
    Accepted,
    /// Connection running.
    Running,
    /// Not connected.
    Disconnected,
}

impl PeerState {
    /// octez's JSON name (`accepted`, `running`, `disconnected`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Running => "running",
            Self::Disconnected => "disconnected",
        }
    }
}

/// What the table knows of a peer (octez `P2p_peer_state.Info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    /// Its point, when known (announced or dialled).
    pub point: Option<SocketAddr>,
    /// Its IP address.
    pub addr: IpAddr,
    /// Where it stands.
    pub state: PeerState,
    /// When it was last connected or disconnected.
    pub last_seen: Instant,
    /// Why its last connection ended.
    pub last_disconnection: Option<String>,
    /// Its connection's id while connected.
    pub connection: Option<u64>,
    /// When the table first heard of it.
    pub created: Instant,
    /// When its last connection was established.
    pub last_established: Option<Instant>,
    /// When it was last refused after authentication (or its accept failed).
    pub last_rejected: Option<Instant>,
    /// When its last running connection ended.
    pub last_disconnected: Option<Instant>,
    /// `Disconnect` messages it sent in the current window, and when the window started.
    pub disconnects: (u32, Instant),
}

/// Why admission refused a peer (the Nack motive follows from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    /// Already connected (or being accepted) with this peer id or at this point.
    AlreadyConnected,
    /// The connection limit is reached.
    TooManyConnections,
}

/// Where a point stands (octez `P2p_point_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointState {
    /// We are dialling it.
    Requested,
    /// Authenticated as this peer; the accept is completing.
    Accepted(PeerId),
    /// A connection with this peer runs.
    Running(PeerId),
    /// No connection.
    Disconnected,
}

impl PointState {
    /// octez's JSON `event_kind` (`requested`, `accepted`, `running`, `disconnected`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Accepted(_) => "accepted",
            Self::Running(_) => "running",
            Self::Disconnected => "disconnected",
        }
    }

    /// The peer at the point, when there is one.
    pub fn peer(self) -> Option<PeerId> {
        match self {
            Self::Accepted(p) | Self::Running(p) => Some(p),
            _ => None,
        }
    }
}

/// How long a point waits before it may be dialled again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnection {
    /// The delay the next failure will use.
    pub delay: Duration,
    /// Not dialled before this.
    pub end: Instant,
}

/// What the table knows of a point (octez `P2p_point_state.Info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointInfo {
    /// Dialled first, never forgotten, never greylisted by maintenance choices.
    pub trusted: bool,
    /// Where it stands.
    pub state: PointState,
    /// We completed a handshake with it and it did not ask to stay private: only such points
    /// are advertised to others (octez `known_public`).
    pub known_public: bool,
    /// Our last dial that failed before authentication.
    pub last_failed_connection: Option<Instant>,
    /// The last connection refused after authentication.
    pub last_rejected_connection: Option<(PeerId, Instant)>,
    /// The last connection established.
    pub last_established_connection: Option<(PeerId, Instant)>,
    /// The last running connection that ended.
    pub last_disconnection: Option<(PeerId, Instant)>,
    /// When it may be dialled again.
    pub reconnection: Option<Reconnection>,
    /// The peer id this point must have (`PATCH /network/points/<point>`).
    pub expected_peer_id: Option<PeerId>,
    /// When the table learned it.
    pub added: Instant,
}

fn recent<T: Copy>(a: Option<(T, Instant)>, b: Option<(T, Instant)>) -> Option<(T, Instant)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.1 > x.1 { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

impl PointInfo {
    fn new(now: Instant) -> Self {
        Self {
            trusted: false,
            state: PointState::Disconnected,
            known_public: false,
            last_failed_connection: None,
            last_rejected_connection: None,
            last_established_connection: None,
            last_disconnection: None,
            reconnection: None,
            expected_peer_id: None,
            added: now,
        }
    }

    /// The most recent of rejected, established and disconnected (octez `last_seen`).
    pub fn last_seen(&self) -> Option<(PeerId, Instant)> {
        recent(recent(self.last_rejected_connection, self.last_established_connection), self.last_disconnection)
    }

    /// The most recent failure, rejection or disconnection (octez `last_miss`).
    pub fn last_miss(&self) -> Option<Instant> {
        let seen = recent(self.last_rejected_connection, self.last_disconnection).map(|(_, t)| t);
        match (self.last_failed_connection, seen) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the reconnection delay still runs (octez `cannot_reconnect_yet`).
    pub fn cannot_reconnect_yet(&self, now: Instant) -> bool {
        self.reconnection.is_some_and(|r| now <= r.end)
    }
}

/// The table itself.
#[derive(Debug)]
pub struct PeerTable {
    acl: AclConfig,
    limits: ConnectionLimits,
    /// The admission threshold: `max_connections`, or the maintenance `max_threshold`.
    threshold: usize,
    peers: HashMap<PeerId, PeerEntry>,
    points: HashMap<SocketAddr, PointInfo>,
    /// Our own points (listening address, and points that turned out to be us): never dialled,
    /// never advertised.
    own_points: HashSet<SocketAddr>,
    grey_ips: Greylist<IpAddr>,
    grey_peers: Greylist<PeerId>,
    banned_ips: HashSet<IpAddr>,
    banned_peers: HashSet<PeerId>,
    trusted_peers: HashSet<PeerId>,
}

/// How many points `Bootstrap` answers and Nacks carry (octez `list_known_points` default: 50).
pub const ADVERTISED_POINTS: usize = 50;

impl PeerTable {
    /// An empty table.
    pub fn new(acl: AclConfig, limits: ConnectionLimits) -> Self {
        Self {
            grey_ips: Greylist::new(acl.ip_greylist_size),
            grey_peers: Greylist::new(acl.peer_greylist_size),
            acl,
            threshold: limits.max_connections,
            limits,
            peers: HashMap::new(),
            points: HashMap::new(),
            own_points: HashSet::new(),
            banned_ips: HashSet::new(),
            banned_peers: HashSet::new(),
            trusted_peers: HashSet::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Changes the limits (running connections beyond a lowered maximum are kept).
    pub fn set_limits(&mut self, limits: ConnectionLimits) {
        let maintained = self.threshold != self.limits.max_connections;
        self.limits = limits;
        self.threshold = if maintained { limits.bounds().max_threshold } else { limits.max_connections };
    }

    /// With maintenance, new connections are refused from `max_threshold` on (octez
    /// `connections_threshold`); without, from `max_connections`.
    pub fn set_maintained(&mut self, maintained: bool) {
        self.threshold =
            if maintained { self.limits.bounds().max_threshold.max(1) } else { self.limits.max_connections };
    }

    /// The settings.
    pub fn acl(&self) -> &AclConfig {
        &self.acl
    }

    /// Whether an address is refused (checked at accept, before any handshake work).
    pub fn ip_refused(&mut self, ip: IpAddr, now: Instant) -> Option<Refusal> {
        if self.banned_ips.contains(&ip) {
            Some(Refusal::Banned)
        } else if self.grey_ips.contains(&ip, now) {
            Some(Refusal::Greylisted)
        } else {
            None
        }
    }

    /// Whether a peer id is refused (checked right after its connection message).
    pub fn peer_refused(&mut self, peer: &PeerId, now: Instant) -> Option<Refusal> {
        if self.trusted_peers.contains(peer) {
            None
        } else if self.banned_peers.contains(peer) {
            Some(Refusal::Banned)
        } else if self.grey_peers.contains(peer, now) {
            Some(Refusal::Greylisted)
        } else {
            None
        }
    }

    /// Greylists an address until `now + greylist_timeout`.
    pub fn greylist_ip(&mut self, ip: IpAddr, now: Instant) {
        self.greylist_ip_until(ip, far(now, self.acl.greylist_timeout));
    }

    /// Greylists an address until `until` (restoring a saved greylist).
    pub fn greylist_ip_until(&mut self, ip: IpAddr, until: Instant) {
        self.grey_ips.add(ip, until);
    }

    /// Greylists a peer id and its address (octez `greylist_peer`). Trusted peers are spared.
    pub fn greylist_peer(&mut self, peer: PeerId, ip: IpAddr, now: Instant) {
        if self.trusted_peers.contains(&peer) {
            return;
        }
        self.grey_peers.add(peer, far(now, self.acl.greylist_timeout));
        self.greylist_ip(ip, now);
    }

    /// Greylists a peer id until `until` (restoring a saved greylist).
    pub fn greylist_peer_until(&mut self, peer: PeerId, until: Instant) {
        if !self.trusted_peers.contains(&peer) {
            self.grey_peers.add(peer, until);
        }
    }

    /// Number of greylisted (addresses, peers), expired entries included until next looked up.
    pub fn greylist_sizes(&self) -> (usize, usize) {
        (self.grey_ips.len(), self.grey_peers.len())
    }

    /// Greylisted addresses and until when.
    pub fn greylisted_ips(&self, now: Instant) -> Vec<(IpAddr, Instant)> {
        self.grey_ips.entries(now).map(|(k, t)| (*k, t)).collect()
    }

    /// Greylisted peers and until when.
    pub fn greylisted_peers(&self, now: Instant) -> Vec<(PeerId, Instant)> {
        self.grey_peers.entries(now).map(|(k, t)| (*k, t)).collect()
    }

    /// Empties the greylists and the ban lists (octez `DELETE /network/greylist` clears both).
    pub fn clear_acl(&mut self) {
        self.grey_ips.clear();
        self.grey_peers.clear();
        self.banned_ips.clear();
        self.banned_peers.clear();
    }

    /// Bans an address for good (until [`PeerTable::unban_ip`]).
    pub fn ban_ip(&mut self, ip: IpAddr) {
        self.banned_ips.insert(ip);
    }

    /// Lifts an address ban and its greylisting.
    pub fn unban_ip(&mut self, ip: IpAddr) {
        self.banned_ips.remove(&ip);
        self.grey_ips.remove(&ip);
    }

    /// Banned addresses.
    pub fn banned_ips(&self) -> impl Iterator<Item = &IpAddr> {
        self.banned_ips.iter()
    }

    /// Bans a peer id for good (and stops trusting it).
    pub fn ban_peer(&mut self, peer: PeerId) {
        self.trusted_peers.remove(&peer);
        self.banned_peers.insert(peer);
    }

    /// Lifts a peer ban and its greylisting.
    pub fn unban_peer(&mut self, peer: PeerId) {
        self.banned_peers.remove(&peer);
        self.grey_peers.remove(&peer);
    }

    /// Banned peers.
    pub fn banned_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.banned_peers.iter()
    }

    /// Whether a peer is on the manual ban list.
    pub fn is_banned_peer(&self, peer: &PeerId) -> bool {
        self.banned_peers.contains(peer)
    }

    /// Trusts a peer: never refused by greylists, never greylisted (lifts a ban).
    pub fn trust(&mut self, peer: PeerId) {
        self.unban_peer(peer);
        self.trusted_peers.insert(peer);
    }

    /// Stops trusting a peer.
    pub fn untrust(&mut self, peer: PeerId) {
        self.trusted_peers.remove(&peer);
    }

    /// Whether a peer is trusted.
    pub fn is_trusted(&self, peer: &PeerId) -> bool {
        self.trusted_peers.contains(peer)
    }

    /// Running (and being accepted) connections.
    pub fn active(&self) -> usize {
        self.peers.values().filter(|p| p.state != PeerState::Disconnected).count()
    }

    /// Running connections only.
    pub fn running_count(&self) -> usize {
        self.peers.values().filter(|p| p.state == PeerState::Running).count()
    }

    /// Reserves the peer for an accept (octez's connect handler, `is_acceptable`): the
    /// connection threshold first, then a duplicate peer, then a point already connected (or,
    /// for an incoming connection, being dialled by us).
    pub fn admit(
        &mut self,
        peer: PeerId,
        addr: IpAddr,
        point: Option<SocketAddr>,
        now: Instant,
    ) -> Result<(), AdmitError> {
        self.admit_at(peer, addr, point, None, now)
    }

    /// [`PeerTable::admit`], knowing whether the connection is incoming (`Some(true)`).
    pub fn admit_at(
        &mut self,
        peer: PeerId,
        addr: IpAddr,
        point: Option<SocketAddr>,
        incoming: Option<bool>,
        now: Instant,
    ) -> Result<(), AdmitError> {
        if self.active() >= self.threshold.max(1) {
            return Err(AdmitError::TooManyConnections);
        }
        if self.peers.get(&peer).is_some_and(|p| p.state != PeerState::Disconnected) {
            return Err(AdmitError::AlreadyConnected);
        }
        if let Some(info) = point.and_then(|p| self.points.get(&p)) {
            let busy = match info.state {
                PointState::Accepted(_) | PointState::Running(_) => true,
                PointState::Requested => incoming == Some(true),
                PointState::Disconnected => false,
            };
            if busy {
                return Err(AdmitError::AlreadyConnected);
            }
        }
        if !self.peers.contains_key(&peer) {
            self.gc_peers();
        }
        let entry = self.peers.entry(peer).or_insert(PeerEntry {
            point,
            addr,
            state: PeerState::Disconnected,
            last_seen: now,
            last_disconnection: None,
            connection: None,
            created: now,
            last_established: None,
            last_rejected: None,
            last_disconnected: None,
            disconnects: (0, now),
        });
        entry.state = PeerState::Accepted;
        entry.addr = addr;
        entry.point = point.or(entry.point);
        entry.last_seen = now;
        if let Some(p) = point {
            if let Some(info) = self.points.get_mut(&p) {
                info.state = PointState::Accepted(peer);
            }
        }
        Ok(())
    }

    /// The accept succeeded: the peer is running on `connection`. A private peer's point is
    /// never offered to others (octez `known_public`).
    pub fn running(&mut self, peer: PeerId, connection: u64, private_node: bool, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.state = PeerState::Running;
        p.connection = Some(connection);
        p.last_seen = now;
        p.last_established = Some(now);
        if let Some(point) = p.point {
            if !self.own_points.contains(&point) {
                self.register_point(point, now);
            }
            if let Some(info) = self.points.get_mut(&point) {
                info.state = PointState::Running(peer);
                info.known_public = !private_node;
                info.last_established_connection = Some((peer, now));
            }
        }
    }

    fn gc_peers(&mut self) {
        let (max, target) = self.limits.max_known_peer_ids;
        if self.peers.len() < max.max(1) {
            return;
        }
        // octez: disconnected, untrusted peers; the most recently created go first (a flood of
        // new identities cannot push out long-known peers).
        let mut victims: Vec<(PeerId, Instant)> = self
            .peers
            .iter()
            .filter(|(id, p)| p.state == PeerState::Disconnected && !self.trusted_peers.contains(id))
            .map(|(id, p)| (*id, p.created))
            .collect();
        victims.sort_by_key(|(_, created)| std::cmp::Reverse(*created));
        let excess = self.peers.len() + 1 - target.min(max).max(1);
        for (id, _) in victims.into_iter().take(excess) {
            self.peers.remove(&id);
        }
    }

    /// The peer's connection ended (or its accept failed).
    pub fn disconnected(&mut self, peer: PeerId, reason: Option<String>, now: Instant) {
        let reconnection = self.acl.reconnection;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        let was = p.state;
        p.state = PeerState::Disconnected;
        p.connection = None;
        p.last_seen = now;
        if reason.is_some() {
            p.last_disconnection = reason;
        }
        match was {
            PeerState::Running => p.last_disconnected = Some(now),
            PeerState::Accepted => p.last_rejected = Some(now),
            PeerState::Disconnected => {}
        }
        let Some(point) = p.point else { return };
        let Some(info) = self.points.get_mut(&point) else { return };
        if info.state.peer() != Some(peer) {
            return;
        }
        match info.state {
            PointState::Running(_) => {
                info.last_disconnection = Some((peer, now));
                info.reconnection = Some(Reconnection {
                    delay: reconnection.initial_delay,
                    end: far(now, reconnection.disconnection_delay),
                });
            }
            _ => {
                info.last_rejected_connection = Some((peer, now));
                Self::back_off(info, &reconnection, now);
            }
        }
        info.state = PointState::Disconnected;
    }

    fn back_off(info: &mut PointInfo, config: &ReconnectionConfig, now: Instant) {
        let delay = info.reconnection.map_or(config.initial_delay, |r| r.delay);
        let next = Duration::try_from_secs_f64(delay.as_secs_f64() * config.factor)
            .unwrap_or(config.increase_cap)
            .min(config.increase_cap);
        info.reconnection = Some(Reconnection { delay: next, end: far(now, delay) });
    }

    /// `peer` closed with `Disconnect`: counted in its window; at the loop bound it is
    /// greylisted (and its address), and this returns true.
    pub fn peer_sent_disconnect(&mut self, peer: PeerId, now: Instant) -> bool {
        let (max, window) = self.acl.disconnect_loop;
        let Some(p) = self.peers.get_mut(&peer) else { return false };
        if now.saturating_duration_since(p.disconnects.1) > window {
            p.disconnects = (0, now);
        }
        p.disconnects.0 += 1;
        if p.disconnects.0 < max.max(1) {
            return false;
        }
        p.disconnects = (0, now);
        let ip = p.addr;
        self.greylist_peer(peer, ip, now);
        !self.trusted_peers.contains(&peer)
    }

    /// What the table knows of `peer`.
    pub fn peer(&self, peer: &PeerId) -> Option<&PeerEntry> {
        self.peers.get(peer)
    }

    /// Every known peer.
    pub fn peers(&self) -> impl Iterator<Item = (&PeerId, &PeerEntry)> {
        self.peers.iter()
    }

    /// Restores a peer from a saved table (disconnected).
    pub fn restore_peer(&mut self, peer: PeerId, entry: PeerEntry) {
        if !self.peers.contains_key(&peer) {
            self.gc_peers();
        }
        self.peers.insert(peer, PeerEntry { state: PeerState::Disconnected, connection: None, ..entry });
    }

    /// Marks `point` as one of ours: never dialled, never advertised (octez `my_id_points`).
    pub fn add_own_point(&mut self, point: SocketAddr) {
        self.own_points.insert(point);
        if self.points.get(&point).is_some_and(|p| !p.trusted && p.state == PointState::Disconnected) {
            self.points.remove(&point);
        }
    }

    /// Whether `point` is one of ours.
    pub fn is_own_point(&self, point: &SocketAddr) -> bool {
        self.own_points.contains(point)
    }

    /// Learns a point (octez `register_point`); returns whether it is new. Our own points are
    /// ignored. A new point beyond `max_known_points` first makes room by forgetting
    /// disconnected, untrusted points, oldest miss first; if there is no such point, the new
    /// one is not added (the table never grows past its maximum).
    pub fn register_point(&mut self, point: SocketAddr, now: Instant) -> bool {
        if self.own_points.contains(&point) || self.points.contains_key(&point) || point.port() == 0 {
            return false;
        }
        let (max, target) = self.limits.max_known_points;
        if self.points.len() >= max.max(1) {
            let mut victims: Vec<(SocketAddr, Instant)> = self
                .points
                .iter()
                .filter(|(_, p)| !p.trusted && p.state == PointState::Disconnected)
                // A point never missed counts as missed now: it goes last.
                .map(|(a, p)| (*a, p.last_miss().unwrap_or(now)))
                .collect();
            victims.sort_by_key(|(_, miss)| *miss);
            let excess = self.points.len() + 1 - target.min(max).max(1);
            for (a, _) in victims.into_iter().take(excess) {
                self.points.remove(&a);
            }
            if self.points.len() >= max.max(1) {
                return false;
            }
        }
        self.points.insert(point, PointInfo::new(now));
        true
    }

    /// Remembers a point (e.g. from a Nack's alternatives or an Advertise); see
    /// [`PeerTable::register_point`].
    pub fn add_known_point(&mut self, point: SocketAddr) {
        self.register_point(point, Instant::now());
    }

    /// Trusts (or stops trusting) a point, learning it if needed. Trusted points are spared by
    /// the table's bound.
    pub fn set_point_trusted(&mut self, point: SocketAddr, trusted: bool, now: Instant) {
        if trusted && !self.points.contains_key(&point) && !self.own_points.contains(&point) {
            // Trusted points always fit: they are configured, not learned from peers.
            self.points.insert(point, PointInfo::new(now));
        }
        if let Some(p) = self.points.get_mut(&point) {
            p.trusted = trusted;
        }
    }

    /// Sets the peer id a point must have.
    pub fn set_expected_peer_id(&mut self, point: SocketAddr, peer: Option<PeerId>) {
        if let Some(p) = self.points.get_mut(&point) {
            p.expected_peer_id = peer;
        }
    }

    /// Restores a point from a saved table (disconnected).
    pub fn restore_point(&mut self, point: SocketAddr, info: PointInfo) {
        if self.own_points.contains(&point) {
            return;
        }
        if !self.points.contains_key(&point) && !info.trusted && !self.register_point(point, info.added) {
            return;
        }
        self.points.insert(point, PointInfo { state: PointState::Disconnected, ..info });
    }

    /// Forgets a point (octez unregisters points whose chain or version does not match).
    pub fn forget_point(&mut self, point: &SocketAddr) {
        if self.points.get(point).is_some_and(|p| !p.trusted && p.state == PointState::Disconnected) {
            self.points.remove(point);
        }
    }

    /// We start dialling `point` (octez `set_requested`); false if it is not disconnected.
    pub fn point_requested(&mut self, point: SocketAddr, now: Instant) -> bool {
        if self.own_points.contains(&point) {
            return false;
        }
        if !self.points.contains_key(&point) && !self.register_point(point, now) {
            // The table is full of live or trusted points: dial anyway, untracked.
            return true;
        }
        match self.points.get_mut(&point) {
            Some(p) if p.state == PointState::Disconnected => {
                p.state = PointState::Requested;
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Our dial of `point` failed before authentication (or was refused): back off.
    pub fn point_failed(&mut self, point: SocketAddr, now: Instant) {
        let reconnection = self.acl.reconnection;
        if let Some(p) = self.points.get_mut(&point) {
            if matches!(p.state, PointState::Requested | PointState::Disconnected) {
                p.state = PointState::Disconnected;
                p.last_failed_connection = Some(now);
                Self::back_off(p, &reconnection, now);
            }
        }
    }

    /// What the table knows of `point`.
    pub fn point(&self, point: &SocketAddr) -> Option<&PointInfo> {
        self.points.get(point)
    }

    /// Every known point.
    pub fn points(&self) -> impl Iterator<Item = (&SocketAddr, &PointInfo)> {
        self.points.iter()
    }

    /// Number of known points.
    pub fn known_points_count(&self) -> usize {
        self.points.len()
    }

    /// Number of known peers.
    pub fn known_peers_count(&self) -> usize {
        self.peers.len()
    }

    /// Points to offer in an `Advertise` or a Nack (octez `list_known_points ~ignore_private`):
    /// not ours, not banned or greylisted, public (we completed a handshake with them and they
    /// did not ask to stay private), never `except` (the asker's own point). Up to `size`: the
    /// 3/5 best-ranked (running ones by oldest contact, then the most recently seen), the rest
    /// drawn at random, then shuffled.
    pub fn advertisable_points(
        &mut self,
        size: usize,
        except: Option<SocketAddr>,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Vec<SocketAddr> {
        let mut candidates: Vec<(SocketAddr, bool, Option<Instant>)> = Vec::new();
        let points: Vec<(SocketAddr, bool, bool, Option<Instant>)> = self
            .points
            .iter()
            .map(|(a, p)| (*a, p.known_public, p.state != PointState::Disconnected, p.last_seen().map(|(_, t)| t)))
            .collect();
        for (a, public, connected, seen) in points {
            if !public || Some(a) == except || self.own_points.contains(&a) || self.ip_refused(a.ip(), now).is_some() {
                continue;
            }
            candidates.push((a, connected, seen));
        }
        // Connected points first, the longest-known contact first; then disconnected ones, the
        // most recently seen first.
        candidates.shuffle(rng);
        candidates.sort_by(|a, b| match (a.1, b.1) {
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            (true, true) => a.2.cmp(&b.2),
            (false, false) => b.2.cmp(&a.2),
        });
        let other = size * 2 / 5;
        let best = size - other;
        let mut out: Vec<SocketAddr> = if candidates.len() <= size {
            candidates.iter().map(|c| c.0).collect()
        } else {
            let mut chosen: Vec<SocketAddr> = candidates[..best].iter().map(|c| c.0).collect();
            let rest: Vec<SocketAddr> = candidates[best..].iter().map(|c| c.0).collect();
            chosen.extend(rest.choose_multiple(rng, other).copied());
            chosen
        };
        out.shuffle(rng);
        out
    }

    /// Up to `n` public known points, excluding `except` (for a Nack's alternatives): see
    /// [`PeerTable::advertisable_points`].
    pub fn known_points(&mut self, n: usize, except: Option<SocketAddr>) -> Vec<SocketAddr> {
        self.advertisable_points(n, except, Instant::now(), &mut rand::thread_rng())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use rand::SeedableRng as _;

    fn peer() -> PeerId {
        SecretKey::generate().public_key().peer_id()
    }

    fn pt(n: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::from([127, 0, 0, n]), port)
    }

    #[test]
    fn bounds_follow_octez() {
        assert_eq!(
            ConnectionLimits::default().bounds(),
            Bounds { min_threshold: 23, min_target: 36, max_target: 68, max_threshold: 84 }
        );
        let l = ConnectionLimits::from_connections(50);
        assert_eq!((l.min_connections, l.expected_connections, l.max_connections), (25, 50, 75));
        assert_eq!(l.bounds(), Bounds { min_threshold: 33, min_target: 41, max_target: 59, max_threshold: 67 });
        assert_eq!(l.max_known_points, (400, 300));
        let one = ConnectionLimits::from_connections(1);
        assert_eq!((one.min_connections, one.expected_connections, one.max_connections), (1, 1, 1));
        assert!(ConnectionLimits { min_connections: 60, ..Default::default() }.check().is_err());
        assert!(ConnectionLimits::from_connections(4).check().is_ok());
    }

    #[test]
    fn greylist_entries_expire_and_are_bounded() {
        let now = Instant::now();
        let acl = AclConfig { greylist_timeout: Duration::from_secs(10), ip_greylist_size: 2, ..Default::default() };
        let mut t = PeerTable::new(acl, ConnectionLimits::default());
        let ip = |n: u8| IpAddr::from([127, 0, 0, n]);
        t.greylist_ip(ip(1), now);
        assert_eq!(t.ip_refused(ip(1), now + Duration::from_secs(9)), Some(Refusal::Greylisted));
        assert_eq!(t.ip_refused(ip(1), now + Duration::from_secs(10)), None);
        for n in 2..=4 {
            t.greylist_ip(ip(n), now);
        }
        assert_eq!(t.greylist_sizes().0, 2);
        assert_eq!(t.ip_refused(ip(2), now), None, "oldest forgotten");
        assert_eq!(t.ip_refused(ip(4), now), Some(Refusal::Greylisted));
        t.ban_ip(ip(9));
        assert_eq!(t.ip_refused(ip(9), now + Duration::from_secs(1_000_000)), Some(Refusal::Banned));
        t.clear_acl();
        assert_eq!(t.ip_refused(ip(9), now), None);
        assert_eq!(t.ip_refused(ip(4), now), None);
    }

    #[test]
    fn admission_refuses_duplicates_and_beyond_the_maximum() {
        let now = Instant::now();
        let limits =
            ConnectionLimits { max_connections: 2, max_pending_incoming: 1, ..ConnectionLimits::from_connections(2) };
        let mut t = PeerTable::new(AclConfig::default(), limits);
        let (a, b, c) = (peer(), peer(), peer());
        let ip = IpAddr::from([127, 0, 0, 1]);
        let pa: SocketAddr = "127.0.0.1:9732".parse().unwrap();
        t.admit(a, ip, Some(pa), now).unwrap();
        assert_eq!(t.admit(a, ip, None, now), Err(AdmitError::AlreadyConnected));
        t.running(a, 1, false, now);
        t.admit(b, ip, None, now).unwrap();
        assert_eq!(t.admit(c, ip, None, now), Err(AdmitError::TooManyConnections));
        assert_eq!(t.known_points(100, None), vec![pa]);
        t.disconnected(a, Some("ConnectionClosed".into()), now);
        // The point is busy no more, but waits its 60 s before maintenance dials it again.
        assert!(t.point(&pa).unwrap().cannot_reconnect_yet(now + Duration::from_secs(59)));
        assert!(!t.point(&pa).unwrap().cannot_reconnect_yet(now + Duration::from_secs(61)));
        t.admit(c, ip, None, now).unwrap();
        assert_eq!(t.peer(&a).unwrap().last_disconnection.as_deref(), Some("ConnectionClosed"));
    }

    #[test]
    fn a_point_being_used_is_already_connected() {
        let now = Instant::now();
        let mut t = PeerTable::new(AclConfig::default(), ConnectionLimits::default());
        let p = pt(5, 9732);
        assert!(t.point_requested(p, now));
        assert!(!t.point_requested(p, now), "a second dial of the same point");
        let ip = p.ip();
        assert_eq!(t.admit_at(peer(), ip, Some(p), Some(true), now), Err(AdmitError::AlreadyConnected));
        let q = peer();
        t.admit_at(q, ip, Some(p), Some(false), now).unwrap();
        t.running(q, 7, false, now);
        assert_eq!(t.point(&p).unwrap().state, PointState::Running(q));
        assert_eq!(t.admit_at(peer(), ip, Some(p), Some(true), now), Err(AdmitError::AlreadyConnected));
    }

    #[test]
    fn failed_dials_back_off_by_octez_factor_up_to_the_cap() {
        let mut now = Instant::now();
        let acl = AclConfig {
            reconnection: ReconnectionConfig { increase_cap: Duration::from_secs(2), ..Default::default() },
            ..Default::default()
        };
        let mut t = PeerTable::new(acl, ConnectionLimits::default());
        let p = pt(3, 1);
        let mut waits = Vec::new();
        for _ in 0..6 {
            assert!(t.point_requested(p, now));
            t.point_failed(p, now);
            let end = t.point(&p).unwrap().reconnection.unwrap().end;
            waits.push((end - now).as_millis());
            now = end + Duration::from_millis(1);
        }
        assert_eq!(waits, vec![1000, 1200, 1440, 1728, 2000, 2000]);
        assert_eq!(t.point(&p).unwrap().last_failed_connection, Some(now - Duration::from_millis(2001)));
    }

    #[test]
    fn the_point_table_is_bounded_and_spares_trusted_points() {
        let now = Instant::now();
        let limits = ConnectionLimits { max_known_points: (10, 6), ..Default::default() };
        let mut t = PeerTable::new(AclConfig::default(), limits);
        let trusted = pt(1, 1);
        t.set_point_trusted(trusted, true, now);
        for i in 0..1000u16 {
            t.register_point(pt(2, 1000 + i), now + Duration::from_millis(u64::from(i)));
            assert!(t.known_points_count() <= 10);
        }
        assert!(t.point(&trusted).is_some_and(|p| p.trusted), "a flood never evicts a trusted point");
        // A table full of trusted points takes no more.
        let mut full = PeerTable::new(AclConfig::default(), ConnectionLimits { max_known_points: (2, 1), ..limits });
        full.set_point_trusted(pt(1, 1), true, now);
        full.set_point_trusted(pt(1, 2), true, now);
        assert!(!full.register_point(pt(9, 9), now));
        assert_eq!(full.known_points_count(), 2);
    }

    #[test]
    fn advertised_points_are_public_known_and_never_the_askers() {
        let now = Instant::now();
        let mut t = PeerTable::new(AclConfig::default(), ConnectionLimits::default());
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // Learned from an Advertise only: not public, so not re-advertised (octez).
        t.register_point(pt(1, 1), now);
        let (public, private) = (peer(), peer());
        for (n, id, private_node) in [(2u8, public, false), (3, private, true)] {
            t.admit(id, pt(n, 1).ip(), Some(pt(n, 1)), now).unwrap();
            t.running(id, u64::from(n), private_node, now);
        }
        assert_eq!(t.advertisable_points(50, None, now, &mut rng), vec![pt(2, 1)]);
        assert!(t.advertisable_points(50, Some(pt(2, 1)), now, &mut rng).is_empty());
        t.greylist_ip(pt(2, 1).ip(), now);
        assert!(t.advertisable_points(50, None, now, &mut rng).is_empty());
        // Many public points: at most `size`, all distinct.
        let mut t = PeerTable::new(AclConfig::default(), ConnectionLimits::default());
        for i in 0..200u16 {
            let id = peer();
            t.admit(id, pt(4, i + 1).ip(), Some(pt(4, i + 1)), now).unwrap();
            t.running(id, u64::from(i), false, now);
            t.disconnected(id, None, now + Duration::from_secs(u64::from(i)));
        }
        let got = t.advertisable_points(50, None, now, &mut rng);
        assert!(got.len() <= 50 && got.len() >= 30, "{}", got.len());
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
    }

    #[test]
    fn a_disconnect_loop_is_greylisted_after_the_bound() {
        let now = Instant::now();
        let mut t = PeerTable::new(AclConfig::default(), ConnectionLimits::default());
        let p = peer();
        let ip = IpAddr::from([127, 0, 0, 9]);
        t.admit(p, ip, None, now).unwrap();
        for i in 0..4 {
            assert!(!t.peer_sent_disconnect(p, now + Duration::from_secs(i)));
        }
        assert!(t.peer_sent_disconnect(p, now + Duration::from_secs(5)));
        assert_eq!(t.peer_refused(&p, now + Duration::from_secs(6)), Some(Refusal::Greylisted));
        assert_eq!(t.ip_refused(ip, now + Duration::from_secs(6)), Some(Refusal::Greylisted));
        // Spread over more than the window, the count starts again.
        let q = peer();
        t.admit(q, IpAddr::from([127, 0, 0, 8]), None, now).unwrap();
        for i in 0..20u64 {
            assert!(!t.peer_sent_disconnect(q, now + Duration::from_secs(i * 200)), "{i}");
        }
    }

    #[test]
    fn trusted_peers_are_never_greylisted() {
        let now = Instant::now();
        let mut t = PeerTable::new(AclConfig::default(), ConnectionLimits::default());
        let p = peer();
        t.trust(p);
        t.greylist_peer(p, IpAddr::from([127, 0, 0, 1]), now);
        assert_eq!(t.peer_refused(&p, now), None);
        let q = peer();
        t.greylist_peer(q, IpAddr::from([127, 0, 0, 2]), now);
        assert_eq!(t.peer_refused(&q, now), Some(Refusal::Greylisted));
        assert_eq!(t.ip_refused(IpAddr::from([127, 0, 0, 2]), now), Some(Refusal::Greylisted));
    }
}
