//! The peer table: peers, known points, greylists, bans, trust and connection limits
//! (protocol.md §§10, 12). Pure: every time-dependent call takes `now`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::crypto::PeerId;

/// `now + d`, saturating at about a century for "forever" timeouts such as `Duration::MAX`.
fn far(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// ACL settings (defaults from octez `P2p_limits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclConfig {
    /// How long a greylisted address or peer stays refused (octez `greylist_timeout`: 1 day).
    pub greylist_timeout: Duration,
    /// Most greylisted addresses remembered; the oldest are forgotten first. octez uses a
    /// ≈2 MiB bloom filter; an exact bounded table of this size costs about 1 MiB.
    pub ip_greylist_size: usize,
    /// Most greylisted peer ids remembered (octez `peer_greylist_size`: 1023).
    pub peer_greylist_size: usize,
    /// Most known points remembered (offered as alternatives in Nacks).
    pub known_points_size: usize,
}

impl Default for AclConfig {
    fn default() -> Self {
        Self {
            greylist_timeout: Duration::from_secs(86_400),
            ip_greylist_size: 16 * 1024,
            peer_greylist_size: 1023,
            known_points_size: 1000,
        }
    }
}

/// Connection limits (defaults from octez `P2p_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most running connections (octez `max_connections`: 100). Beyond, peers get
    /// `Nack(Too_many_connections)` with known points.
    pub max_connections: usize,
    /// Most incoming handshakes in progress (octez `max_incoming_connections`: 20).
    pub max_pending_incoming: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { max_connections: 100, max_pending_incoming: 20 }
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

    fn len(&self) -> usize {
        self.until.len()
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

/// What the table knows of a peer.
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
}

/// Why admission refused a peer (the Nack motive follows from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    /// Already connected (or being accepted) with this peer id.
    AlreadyConnected,
    /// `max_connections` reached.
    TooManyConnections,
}

/// The table itself.
#[derive(Debug)]
pub struct PeerTable {
    acl: AclConfig,
    limits: ConnectionLimits,
    peers: HashMap<PeerId, PeerEntry>,
    known: VecDeque<SocketAddr>,
    known_set: HashSet<SocketAddr>,
    grey_ips: Greylist<IpAddr>,
    grey_peers: Greylist<PeerId>,
    banned_ips: HashSet<IpAddr>,
    banned_peers: HashSet<PeerId>,
    trusted_peers: HashSet<PeerId>,
}

impl PeerTable {
    /// An empty table.
    pub fn new(acl: AclConfig, limits: ConnectionLimits) -> Self {
        Self {
            grey_ips: Greylist::new(acl.ip_greylist_size),
            grey_peers: Greylist::new(acl.peer_greylist_size),
            acl,
            limits,
            peers: HashMap::new(),
            known: VecDeque::new(),
            known_set: HashSet::new(),
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
        self.limits = limits;
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
        self.grey_ips.add(ip, far(now, self.acl.greylist_timeout));
    }

    /// Greylists a peer id and its address (octez `greylist_peer`). Trusted peers are spared.
    pub fn greylist_peer(&mut self, peer: PeerId, ip: IpAddr, now: Instant) {
        if self.trusted_peers.contains(&peer) {
            return;
        }
        self.grey_peers.add(peer, far(now, self.acl.greylist_timeout));
        self.greylist_ip(ip, now);
    }

    /// Number of greylisted (addresses, peers), expired entries included until next looked up.
    pub fn greylist_sizes(&self) -> (usize, usize) {
        (self.grey_ips.len(), self.grey_peers.len())
    }

    /// Bans an address for good (until [`PeerTable::unban_ip`]).
    pub fn ban_ip(&mut self, ip: IpAddr) {
        self.banned_ips.insert(ip);
    }

    /// Lifts an address ban.
    pub fn unban_ip(&mut self, ip: IpAddr) {
        self.banned_ips.remove(&ip);
    }

    /// Bans a peer id for good.
    pub fn ban_peer(&mut self, peer: PeerId) {
        self.banned_peers.insert(peer);
    }

    /// Lifts a peer ban.
    pub fn unban_peer(&mut self, peer: PeerId) {
        self.banned_peers.remove(&peer);
    }

    /// Trusts a peer: never refused by greylists, never greylisted.
    pub fn trust(&mut self, peer: PeerId) {
        self.trusted_peers.insert(peer);
    }

    /// Whether a peer is trusted.
    pub fn is_trusted(&self, peer: &PeerId) -> bool {
        self.trusted_peers.contains(peer)
    }

    /// Running (and being accepted) connections.
    pub fn active(&self) -> usize {
        self.peers.values().filter(|p| p.state != PeerState::Disconnected).count()
    }

    /// Reserves the peer for an accept (octez's connect handler steps 4–5).
    pub fn admit(
        &mut self,
        peer: PeerId,
        addr: IpAddr,
        point: Option<SocketAddr>,
        now: Instant,
    ) -> Result<(), AdmitError> {
        // octez's order: the connection limit first, then the duplicate.
        if self.active() >= self.limits.max_connections {
            return Err(AdmitError::TooManyConnections);
        }
        if self.peers.get(&peer).is_some_and(|p| p.state != PeerState::Disconnected) {
            return Err(AdmitError::AlreadyConnected);
        }
        self.evict_if_full();
        let entry = self.peers.entry(peer).or_insert(PeerEntry {
            point,
            addr,
            state: PeerState::Disconnected,
            last_seen: now,
            last_disconnection: None,
            connection: None,
        });
        entry.state = PeerState::Accepted;
        entry.addr = addr;
        entry.point = point.or(entry.point);
        entry.last_seen = now;
        Ok(())
    }

    /// The accept succeeded: the peer is running on `connection`.
    /// A private peer's point is never offered to others (octez `list_known_points
    /// ~ignore_private:true`).
    pub fn running(&mut self, peer: PeerId, connection: u64, private_node: bool, now: Instant) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.state = PeerState::Running;
            p.connection = Some(connection);
            p.last_seen = now;
            if let (Some(point), false) = (p.point, private_node) {
                self.add_known_point(point);
            }
        }
    }

    /// Most peers remembered; beyond, the disconnected peer seen longest ago is forgotten.
    const MAX_PEERS: usize = 10_000;

    fn evict_if_full(&mut self) {
        if self.peers.len() < Self::MAX_PEERS {
            return;
        }
        let oldest = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Disconnected)
            .min_by_key(|(_, p)| p.last_seen)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.peers.remove(&id);
        }
    }

    /// The peer's connection ended (or its accept failed).
    pub fn disconnected(&mut self, peer: PeerId, reason: Option<String>, now: Instant) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.state = PeerState::Disconnected;
            p.connection = None;
            p.last_seen = now;
            if reason.is_some() {
                p.last_disconnection = reason;
            }
        }
    }

    /// What the table knows of `peer`.
    pub fn peer(&self, peer: &PeerId) -> Option<&PeerEntry> {
        self.peers.get(peer)
    }

    /// Remembers a point (e.g. from a Nack's alternatives), forgetting the oldest when full.
    pub fn add_known_point(&mut self, point: SocketAddr) {
        if self.known_set.insert(point) {
            self.known.push_back(point);
            while self.known.len() > self.acl.known_points_size.max(1) {
                if let Some(old) = self.known.pop_front() {
                    self.known_set.remove(&old);
                }
            }
        }
    }

    /// Number of known points.
    pub fn known_points_count(&self) -> usize {
        self.known.len()
    }

    /// Up to `n` known points, most recent first, excluding `except`.
    pub fn known_points(&self, n: usize, except: Option<SocketAddr>) -> Vec<SocketAddr> {
        self.known.iter().rev().filter(|p| Some(**p) != except).take(n).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn peer() -> PeerId {
        SecretKey::generate().public_key().peer_id()
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
    }

    #[test]
    fn admission_refuses_duplicates_and_beyond_the_maximum() {
        let now = Instant::now();
        let mut t =
            PeerTable::new(AclConfig::default(), ConnectionLimits { max_connections: 2, max_pending_incoming: 1 });
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
        t.admit(c, ip, None, now).unwrap();
        assert_eq!(t.peer(&a).unwrap().last_disconnection.as_deref(), Some("ConnectionClosed"));
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
