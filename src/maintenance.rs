//! Connection maintenance, pure (octez `P2p_maintenance`): what to do, given the connections
//! that run, the point table and `now`. The overlay actor (`actor::overlay`) executes the plan:
//! it dials, sends `Bootstrap`, closes connections, and calls back in.
//!
//! ```text
//!   n < min_threshold ──► dial up to max_target − n candidates (trusted first, then the last
//!                         successes, then never-tried points, then the oldest misses); none
//!                         left and still n < min_target ──► Bootstrap to every public peer,
//!                         wait for a new point (at most `looking_for_peers`), again
//!   n > max_threshold ──► close n − max_target random untrusted connections
//!   otherwise         ──► satisfied (and, unless private, propose one swap)
//! ```
//!
//! With the defaults (10 / 50 / 100) the thresholds are 23 / 36 / 68 / 84; see
//! [`ConnectionLimits::bounds`](crate::peers::ConnectionLimits::bounds).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom as _;
use rand::Rng;

use crate::crypto::PeerId;
use crate::peers::{Bounds, PeerTable, PointState};

/// How maintenance runs (octez `P2p_maintenance.config` and `P2p_limits`).
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceConfig {
    /// Longest sleep between two runs; every connection change also wakes it (octez
    /// `maintenance_idle_time`: 120 s).
    pub idle_time: Duration,
    /// After asking peers for points (`Bootstrap`), how long to wait for a new one before trying
    /// again (octez `time_between_looking_for_peers`: 5 s).
    pub looking_for_peers: Duration,
    /// Most dials in flight at once. octez has no cap (a TODO in its sources); a cap keeps a
    /// node from becoming a SYN cannon towards addresses its peers name.
    pub max_concurrent_dials: usize,
    /// Bootstrap peers given by name (`host:port`): resolved at every run, as octez does, and
    /// dialled as trusted points.
    pub bootstrap_peers: Vec<String>,
    /// Dials per `looking_for_peers` period, at most (`None`: `max_target`, what one octez run
    /// may dial): see [`DialBudget`].
    pub dial_budget: Option<usize>,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            idle_time: Duration::from_secs(120),
            looking_for_peers: Duration::from_secs(5),
            max_concurrent_dials: 16,
            bootstrap_peers: Vec::new(),
            dial_budget: None,
        }
    }
}

/// How many dials maintenance may start: `capacity` at once, refilled by `capacity` every
/// `period` (octez dials at most `max_target − n` per run and waits `looking_for_peers` between
/// runs that find nothing; but a peer that keeps advertising fresh points wakes it again and
/// again). A token bucket over all runs bounds what any peer can make the node dial: points a
/// peer names are never dialled faster than this, however many it names.
#[derive(Debug, Clone)]
pub struct DialBudget {
    capacity: f64,
    period: Duration,
    tokens: f64,
    last: Instant,
}

impl DialBudget {
    /// Full at `now`.
    pub fn new(capacity: usize, period: Duration, now: Instant) -> Self {
        let capacity = capacity.max(1) as f64;
        Self { capacity, period: period.max(Duration::from_millis(1)), tokens: capacity, last: now }
    }

    /// Up to `wanted` dials allowed at `now` (taken from the budget).
    pub fn take(&mut self, wanted: usize, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed / self.period.as_secs_f64() * self.capacity).min(self.capacity);
        self.last = now;
        let granted = (wanted as f64).min(self.tokens.floor()).max(0.0) as usize;
        self.tokens -= granted as f64;
        granted
    }

    /// Gives back `n` dials granted and not used.
    pub fn refund(&mut self, n: usize) {
        self.tokens = (self.tokens + n as f64).min(self.capacity);
    }

    /// When at least one dial will be allowed again.
    pub fn next_dial(&self, now: Instant) -> Instant {
        if self.tokens >= 1.0 {
            return now;
        }
        let missing = 1.0 - self.tokens;
        now + self.period.mul_f64(missing / self.capacity)
    }
}

/// Where the connection count stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Between the thresholds.
    Satisfied,
    /// Below `min_threshold`: get at least `min_to_contact` more, at most `max_to_contact`.
    TooFew {
        /// Successful dials needed to reach `min_target`.
        min_to_contact: usize,
        /// Dials allowed up to `max_target`.
        max_to_contact: usize,
    },
    /// Above `max_threshold`: close this many.
    TooMany {
        /// Connections to close (down to `max_target`).
        kill: usize,
    },
}

/// What the count `n` calls for (octez `do_maintain`).
pub fn step(n: usize, bounds: &Bounds) -> Step {
    if n < bounds.min_threshold {
        Step::TooFew {
            min_to_contact: bounds.min_target.saturating_sub(n).max(1),
            max_to_contact: bounds.max_target.saturating_sub(n).max(1),
        }
    } else if n > bounds.max_threshold {
        Step::TooMany { kill: n - bounds.max_target }
    } else {
        Step::Satisfied
    }
}

/// Up to `wanted` points to dial now (octez `connectable`), each added to `seen` so that one
/// run never dials a point twice. A point is a candidate when it is disconnected, not ours,
/// not banned or greylisted, allowed by private mode (trusted only), and not waiting out its
/// reconnection delay nor already missed during this run (`since`). Order: trusted points,
/// then those with the most recent successful connection, then points never missed, then the
/// oldest misses — ties broken at random.
pub fn candidates(
    table: &mut PeerTable,
    wanted: usize,
    seen: &mut HashSet<SocketAddr>,
    since: Instant,
    now: Instant,
    private_mode: bool,
    rng: &mut impl Rng,
) -> Vec<SocketAddr> {
    /// A candidate: its point, whether trusted, its last success and its last miss.
    type Candidate = (SocketAddr, bool, Option<Instant>, Option<Instant>);
    let mut found: Vec<Candidate> = Vec::new();
    let mut busy = Vec::new();
    for (point, p) in table.points() {
        if seen.contains(point) || (private_mode && !p.trusted) {
            continue;
        }
        let last_miss = p.last_miss();
        if p.state != PointState::Disconnected || p.cannot_reconnect_yet(now) || last_miss.is_some_and(|m| m > since) {
            busy.push(*point);
            continue;
        }
        found.push((*point, p.trusted, p.last_established_connection.map(|(_, t)| t), last_miss));
    }
    // Checked after the scan: the ACL lookup needs the table mutably (it drops expired entries).
    found.retain(|(point, ..)| !table.is_own_point(point) && table.ip_refused(point.ip(), now).is_none());
    busy.retain(|point| !table.is_own_point(point) && table.ip_refused(point.ip(), now).is_none());
    seen.extend(busy);
    found.shuffle(rng);
    found.sort_by(|a, b| {
        b.1.cmp(&a.1) // trusted first
            .then_with(|| b.2.cmp(&a.2)) // the most recent success first (None last)
            .then_with(|| match (a.3, b.3) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Less, // never missed before missed
                (Some(_), None) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => x.cmp(&y), // the oldest miss first
            })
    });
    found.truncate(wanted);
    for (p, ..) in &found {
        seen.insert(*p);
    }
    found.into_iter().map(|(p, ..)| p).collect()
}

/// A running connection, as maintenance sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// The peer.
    pub peer_id: PeerId,
    /// Its listening point, when it announced one.
    pub point: Option<SocketAddr>,
    /// The peer asked not to be advertised.
    pub private: bool,
    /// The peer or its point is trusted.
    pub trusted: bool,
}

/// `k` connections to close when there are too many: chosen at random, as octez does, but
/// never a trusted peer (octez spares only peers that are both private and trusted).
pub fn victims(running: &[Running], k: usize, rng: &mut impl Rng) -> Vec<PeerId> {
    let mut pool: Vec<PeerId> = running.iter().filter(|r| !r.trusted).map(|r| r.peer_id).collect();
    pool.shuffle(rng);
    pool.truncate(k);
    pool
}

/// A swap to propose when satisfied (octez `propose_swap_request`): to a random public peer,
/// the point of another random public peer with a known listening port. `None` when there are
/// not two such peers.
pub fn swap_proposal(running: &[Running], rng: &mut impl Rng) -> Option<(PeerId, SocketAddr, PeerId)> {
    let recipient = running.iter().filter(|r| !r.private).collect::<Vec<_>>().choose(rng).copied()?;
    let proposed: Vec<&Running> =
        running.iter().filter(|r| !r.private && r.peer_id != recipient.peer_id && r.point.is_some()).collect();
    let p = proposed.choose(rng)?;
    Some((recipient.peer_id, p.point?, p.peer_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use crate::peers::{AclConfig, ConnectionLimits};
    use rand::SeedableRng as _;
    use std::net::IpAddr;

    fn pt(n: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::from([127, 0, 0, n]), 9732)
    }

    fn peer() -> PeerId {
        SecretKey::generate().public_key().peer_id()
    }

    #[test]
    fn steps_follow_the_thresholds() {
        let b = ConnectionLimits::default().bounds();
        assert_eq!(step(0, &b), Step::TooFew { min_to_contact: 36, max_to_contact: 68 });
        assert_eq!(step(22, &b), Step::TooFew { min_to_contact: 14, max_to_contact: 46 });
        assert_eq!(step(23, &b), Step::Satisfied);
        assert_eq!(step(84, &b), Step::Satisfied);
        assert_eq!(step(90, &b), Step::TooMany { kill: 22 });
        // --connections 4: min 2, max 6, no room between the thresholds.
        let small = ConnectionLimits::from_connections(4).bounds();
        assert_eq!(step(1, &small), Step::TooFew { min_to_contact: 1, max_to_contact: 5 });
        assert_eq!(step(2, &small), Step::Satisfied);
        assert_eq!(step(7, &small), Step::TooMany { kill: 1 });
    }

    #[test]
    fn candidates_exclude_what_octez_excludes_and_order_trusted_first() {
        let now = Instant::now();
        let mut t = PeerTable::new(AclConfig::default(), ConnectionLimits::default());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in 1..=8 {
            t.register_point(pt(n), now);
        }
        t.set_point_trusted(pt(8), true, now);
        t.add_own_point(pt(1)); // ourselves
        t.greylist_ip(pt(2).ip(), now); // greylisted
        assert!(t.point_requested(pt(3), now)); // being dialled
        assert!(t.point_requested(pt(4), now));
        t.point_failed(pt(4), now); // waiting out its delay
        let (a, ip5) = (peer(), pt(5).ip());
        t.admit(a, ip5, Some(pt(5)), now).unwrap();
        t.running(a, 1, false, now); // connected
        let mut seen = HashSet::new();
        let got = candidates(&mut t, 10, &mut seen, now, now, false, &mut rng);
        assert_eq!(got[0], pt(8), "trusted first: {got:?}");
        let rest: HashSet<_> = got[1..].iter().copied().collect();
        assert_eq!(rest, [pt(6), pt(7)].into_iter().collect());
        // Nothing is offered twice in one run.
        assert!(candidates(&mut t, 10, &mut seen, now, now, false, &mut rng).is_empty());
        // Private mode: trusted points only.
        let mut seen = HashSet::new();
        assert_eq!(candidates(&mut t, 10, &mut seen, now, now, true, &mut rng), vec![pt(8)]);
        // The delay over, the failed point comes back, after the never-missed ones.
        let later = now + Duration::from_secs(2);
        let mut seen = HashSet::new();
        let got = candidates(&mut t, 10, &mut seen, later, later, false, &mut rng);
        assert_eq!(got.last(), Some(&pt(4)), "{got:?}");
        assert_eq!(candidates(&mut t, 1, &mut HashSet::new(), later, later, false, &mut rng).len(), 1);
    }

    #[test]
    fn the_dial_budget_bounds_dials_over_time_whatever_is_asked() {
        let now = Instant::now();
        let mut b = DialBudget::new(5, Duration::from_secs(5), now);
        assert_eq!(b.take(100, now), 5);
        assert_eq!(b.take(100, now), 0);
        assert_eq!(b.next_dial(now), now + Duration::from_secs(1));
        assert_eq!(b.take(100, now + Duration::from_secs(1)), 1);
        assert_eq!(b.take(100, now + Duration::from_secs(60)), 5, "never more than the capacity");
        // Over a minute of constant demand: at most capacity + capacity · 60 / 5.
        let mut b = DialBudget::new(5, Duration::from_secs(5), now);
        let granted: usize = (0..600).map(|i| b.take(1000, now + Duration::from_millis(100 * i))).sum();
        assert!(granted <= 5 + 60, "{granted}");
    }

    #[test]
    fn victims_are_never_trusted_and_swaps_need_two_public_peers() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let r = |trusted, private, point| Running { peer_id: peer(), point, private, trusted };
        let running = vec![r(true, false, Some(pt(1))), r(false, false, Some(pt(2))), r(false, true, Some(pt(3)))];
        for k in 0..4 {
            let v = victims(&running, k, &mut rng);
            assert_eq!(v.len(), k.min(2));
            assert!(!v.contains(&running[0].peer_id));
        }
        let (to, point, peer_id) = swap_proposal(&running, &mut rng).unwrap();
        assert_ne!(to, peer_id);
        assert!(point == pt(1) || point == pt(2));
        assert!(swap_proposal(&running[..1], &mut rng).is_none());
        assert!(swap_proposal(&running[2..], &mut rng).is_none());
    }
}
