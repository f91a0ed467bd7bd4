//! octez `P2p_stat` and `Moving_average` (protocol.md §11.4), pure: time is an argument.

/// octez `Moving_average` with alpha = 0.2, in integer arithmetic exactly as octez computes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MovingAverage {
    total: u64,
    current: u64,
    average: u64,
}

impl MovingAverage {
    /// Counts `n` bytes.
    pub fn add(&mut self, n: u64) {
        self.total = self.total.saturating_add(n);
        self.current = self.current.saturating_add(n);
    }

    /// One refresh, `elapsed_ms` after the previous one:
    /// `average := (200·current)/elapsed + (800·average)/1000`, each term truncated, then
    /// `current := 0`. A zero interval is skipped (octez measures ≥ 1 ms in practice).
    pub fn tick(&mut self, elapsed_ms: u64) {
        if elapsed_ms == 0 {
            return;
        }
        self.average = self.current.saturating_mul(200) / elapsed_ms + self.average.saturating_mul(800) / 1000;
        self.current = 0;
    }

    /// Bytes per second, smoothed.
    pub fn average(&self) -> u64 {
        self.average
    }

    /// Bytes counted since creation.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// octez `P2p_stat.t`: byte totals and smoothed rates of a connection (or of a whole node).
/// Bytes are raw socket bytes: connection message, chunk headers and tags included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stat {
    /// Bytes sent.
    pub total_sent: u64,
    /// Bytes received.
    pub total_recv: u64,
    /// Smoothed bytes/s received.
    pub current_inflow: u64,
    /// Smoothed bytes/s sent.
    pub current_outflow: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_decays_and_zero_interval_is_ignored() {
        let mut m = MovingAverage::default();
        m.add(1000);
        m.tick(0);
        assert_eq!(m.average(), 0);
        m.tick(1000);
        assert_eq!(m.average(), 200);
        m.tick(1000);
        assert_eq!(m.average(), 160);
        assert_eq!(m.total(), 1000);
    }
}
