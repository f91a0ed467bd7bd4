//! The P2P-layer message rules, pure (octez `P2p_protocol`): per-connection throttling of
//! `Bootstrap` / `Advertise` / `Swap_*`, and when a swap is accepted. The overlay actor
//! (`actor::overlay`) applies them; the point selection for `Advertise` lives in
//! [`PeerTable::advertisable_points`](crate::peers::PeerTable::advertisable_points).
//!
//! Throttling follows octez: a message of a kind that arrives sooner than its cooldown after
//! the previous one of that kind is *held* (the connection's reader waits, so TCP pushes back on
//! a flooding peer), not dropped. `Bootstrap` and `Advertise`: one per 100 ms per connection;
//! `Swap_request` and `Swap_ack`: one per 60 s.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom as _;
use rand::Rng;

use crate::crypto::PeerId;
use crate::maintenance::Running;
use crate::message::Control;
use crate::peers::{PeerTable, PointState};

/// How the node answers P2P-layer messages (octez `P2p_limits.swap_linger`, `P2p_protocol`).
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayConfig {
    /// After a swap (accepted or done), how long swap requests are ignored; `None` disables
    /// swaps (octez `swap_linger`: 30 s).
    pub swap_linger: Option<Duration>,
    /// Least time between two handled `Bootstrap` (and, separately, `Advertise`) messages of one
    /// connection (octez: 100 ms).
    pub discovery_cooldown: Duration,
    /// Least time between two handled `Swap_request` (and `Swap_ack`) messages of one connection
    /// (octez: 60 s).
    pub swap_cooldown: Duration,
    /// Points in an `Advertise` answer (octez: 50, the wire maximum being 100).
    pub advertise_size: usize,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        Self {
            swap_linger: Some(Duration::from_secs(30)),
            discovery_cooldown: Duration::from_millis(100),
            swap_cooldown: Duration::from_secs(60),
            advertise_size: crate::peers::ADVERTISED_POINTS,
        }
    }
}

/// When each kind of P2P-layer message of one connection was last handled.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    last: [Option<Instant>; 4],
}

impl Throttle {
    /// How long to hold `control` before handling it, received at `now`; records it as handled
    /// then. `Disconnect` is never held.
    pub fn hold(&mut self, control: &Control, now: Instant, config: &OverlayConfig) -> Duration {
        let (i, cooldown) = match control {
            Control::Bootstrap => (0, config.discovery_cooldown),
            Control::Advertise(_) => (1, config.discovery_cooldown),
            Control::SwapRequest { .. } => (2, config.swap_cooldown),
            Control::SwapAck { .. } => (3, config.swap_cooldown),
            Control::Disconnect => return Duration::ZERO,
        };
        let at = match self.last[i] {
            Some(last) => (last + cooldown).max(now),
            None => now,
        };
        self.last[i] = Some(at);
        at - now
    }
}

/// The node-wide swap state (octez `latest_accepted_swap`, `latest_successful_swap`).
#[derive(Debug, Clone, Default)]
pub struct SwapState {
    latest_accepted: Option<Instant>,
    latest_successful: Option<Instant>,
}

impl SwapState {
    /// Whether a swap request may be considered at `now`: swaps are enabled and the last swap
    /// (accepted or done) is older than `swap_linger`.
    pub fn may_swap(&self, now: Instant, config: &OverlayConfig) -> bool {
        let Some(linger) = config.swap_linger else { return false };
        let last = self.latest_accepted.max(self.latest_successful);
        last.is_none_or(|t| now.saturating_duration_since(t) >= linger)
    }

    /// We answered a request with an ack and now dial the proposed point.
    pub fn accepted(&mut self, now: Instant) {
        self.latest_accepted = Some(now);
    }

    /// The swap's connection was established.
    pub fn succeeded(&mut self, now: Instant) {
        self.latest_successful = Some(now);
    }

    /// The swap's connection failed: as if it had not been accepted.
    pub fn failed(&mut self) {
        self.latest_accepted = self.latest_successful;
    }
}

/// Whether to act on a proposed point (of a `Swap_request` or `Swap_ack`): not ours, and
/// unknown or disconnected (octez ignores points it is connected or connecting to).
pub fn swap_point_usable(table: &PeerTable, point: &SocketAddr) -> bool {
    !table.is_own_point(point) && table.point(point).is_none_or(|p| p.state == PointState::Disconnected)
}

/// Our answer to a `Swap_request` from `requester` (octez `swap_request`): the connection we
/// would give up in exchange, as `(its point, its peer)` — a random public peer with a known
/// listening port, other than the requester, and never a trusted one.
pub fn swap_answer(running: &[Running], requester: &PeerId, rng: &mut impl Rng) -> Option<(SocketAddr, PeerId)> {
    let pool: Vec<&Running> =
        running.iter().filter(|r| &r.peer_id != requester && !r.private && !r.trusted && r.point.is_some()).collect();
    let r = pool.choose(rng)?;
    Some((r.point?, r.peer_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use rand::SeedableRng as _;

    #[test]
    fn floods_are_held_to_one_per_cooldown() {
        let config = OverlayConfig::default();
        let mut t = Throttle::default();
        let now = Instant::now();
        assert_eq!(t.hold(&Control::Bootstrap, now, &config), Duration::ZERO);
        // Ten more at once: each waits one more cooldown than the previous.
        for i in 1..=10u32 {
            assert_eq!(t.hold(&Control::Bootstrap, now, &config), config.discovery_cooldown * i);
        }
        // Kinds are throttled separately.
        assert_eq!(t.hold(&Control::Advertise(vec![]), now, &config), Duration::ZERO);
        let swap = Control::SwapRequest { point: "127.0.0.1:1".parse().unwrap(), peer_id: PeerId::from_bytes([0; 16]) };
        assert_eq!(t.hold(&swap, now, &config), Duration::ZERO);
        assert_eq!(t.hold(&swap, now + Duration::from_secs(1), &config), Duration::from_secs(59));
        assert_eq!(t.hold(&Control::Disconnect, now, &config), Duration::ZERO);
        // Spaced out, nothing waits.
        let later = now + Duration::from_secs(10);
        assert_eq!(t.hold(&Control::Bootstrap, later, &config), Duration::ZERO);
    }

    #[test]
    fn swaps_linger_and_roll_back_on_failure() {
        let config = OverlayConfig::default();
        let mut s = SwapState::default();
        let now = Instant::now();
        assert!(s.may_swap(now, &config));
        s.accepted(now);
        assert!(!s.may_swap(now + Duration::from_secs(29), &config));
        s.failed();
        assert!(s.may_swap(now + Duration::from_secs(1), &config), "a failed swap does not linger");
        s.accepted(now);
        s.succeeded(now + Duration::from_secs(1));
        assert!(!s.may_swap(now + Duration::from_secs(30), &config));
        assert!(s.may_swap(now + Duration::from_secs(31), &config));
        assert!(!s.may_swap(now, &OverlayConfig { swap_linger: None, ..config }));
    }

    #[test]
    fn a_swap_never_gives_up_a_trusted_or_private_peer() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let id = || SecretKey::generate().public_key().peer_id();
        let p: SocketAddr = "127.0.0.2:9732".parse().unwrap();
        let requester = id();
        let running = vec![
            Running { peer_id: requester, point: Some(p), private: false, trusted: false },
            Running { peer_id: id(), point: Some(p), private: false, trusted: true },
            Running { peer_id: id(), point: Some(p), private: true, trusted: false },
            Running { peer_id: id(), point: None, private: false, trusted: false },
        ];
        assert_eq!(swap_answer(&running, &requester, &mut rng), None);
        let ok = Running { peer_id: id(), point: Some(p), private: false, trusted: false };
        let mut with = running.clone();
        with.push(ok);
        assert_eq!(swap_answer(&with, &requester, &mut rng), Some((p, ok.peer_id)));
    }
}
