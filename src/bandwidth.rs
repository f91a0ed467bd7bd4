//! Bandwidth metering, pure (protocol.md §11.3): quotas granted per period from a global limit,
//! shared fairly (by weight) among the connections that want bandwidth.
//!
//! Like octez's I/O scheduler, only the global limit is a hard cap and a connection that uses
//! less than its share leaves the rest to the others (work-conserving); over-consumption within
//! a period is carried as debt into the next one. Unlike octez (which only orders service by
//! quota), each connection is held to its quota, and connections may carry weights (octez
//! planned weights and never built them). Time is an argument: the caller says how long the
//! period was, so the logic is tested in simulated time.

use std::time::Duration;

/// One connection's meter state in one direction, as the refresh sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterState {
    /// Bytes it may still move; negative is debt (it overshot by one unit).
    pub tokens: i64,
    /// It ran out and is waiting for bandwidth.
    pub waiting: bool,
    /// Relative share (1 = normal; 2 = twice the share of a normal connection).
    pub weight: u32,
}

impl Default for MeterState {
    fn default() -> Self {
        Self { tokens: 0, waiting: false, weight: 1 }
    }
}

/// Grants one period's worth of `limit` bytes/s among `meters`.
///
/// Each connection that wants bandwidth (waiting, or out of tokens) gets `budget · w / Σw` on
/// top of its debt (`tokens := min(tokens, 0) + share`); a connection that did not use its
/// tokens keeps at most one share (no hoarding), so what it leaves goes to the others at the
/// next refresh.
pub fn refresh(meters: &mut [MeterState], limit: u64, period: Duration) {
    let budget = (u128::from(limit) * period.as_micros() / 1_000_000).min(i64::MAX as u128) as i64;
    let wants = |m: &MeterState| m.waiting || m.tokens <= 0;
    let weight_of = |m: &MeterState| i64::from(m.weight.max(1));
    let wanting_weight: i64 = meters.iter().filter(|m| wants(m)).map(weight_of).sum();
    let total_weight: i64 = meters.iter().map(weight_of).sum();
    for m in meters.iter_mut() {
        let w = weight_of(m);
        if wants(m) {
            // At least one byte, so a tiny limit spread over many connections never stalls them all.
            let share = (budget.saturating_mul(w) / wanting_weight.max(1)).max(1);
            m.tokens = m.tokens.min(0).saturating_add(share);
            m.waiting = false;
        } else {
            let cap = budget.saturating_mul(w) / total_weight.max(1);
            m.tokens = m.tokens.min(cap.max(1));
        }
    }
}

/// Jain's fairness index of `xs`: 1 when all are equal, 1/n when one takes everything.
pub fn jain_index(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    if squares == 0.0 {
        return 1.0;
    }
    sum * sum / (xs.len() as f64 * squares)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated sender: how fast it would go if unthrottled (bytes per ms), its write unit.
    struct Sender {
        demand_per_ms: i64,
        unit: i64,
        sent: i64,
        backlog: i64,
    }

    /// Runs `secs` seconds of simulated time in 1 ms steps with a refresh every `period_ms`.
    fn simulate(senders: &mut [Sender], weights: &[u32], limit: u64, secs: u64, period_ms: u64) {
        let mut meters: Vec<MeterState> =
            weights.iter().map(|&w| MeterState { weight: w, ..Default::default() }).collect();
        for ms in 0..secs * 1000 {
            if ms % period_ms == 0 {
                refresh(&mut meters, limit, Duration::from_millis(period_ms));
            }
            for (s, m) in senders.iter_mut().zip(meters.iter_mut()) {
                s.backlog += s.demand_per_ms;
                // The IO loop: while it has tokens and data, move one unit (may overshoot).
                while s.backlog > 0 {
                    if m.tokens <= 0 {
                        m.waiting = true;
                        break;
                    }
                    let n = s.unit.min(s.backlog);
                    m.tokens -= n;
                    s.backlog -= n;
                    s.sent += n;
                }
                // A greedy sender never runs dry; cap the simulated backlog.
                s.backlog = s.backlog.min(s.unit * 64);
            }
        }
    }

    fn greedy(n: usize) -> Vec<Sender> {
        (0..n).map(|_| Sender { demand_per_ms: 1 << 30, unit: 16 * 1024, sent: 0, backlog: 0 }).collect()
    }

    #[test]
    fn aggregate_within_5_percent_and_fair_for_1_8_50_senders() {
        for n in [1usize, 8, 50] {
            let limit = 4 * 1024 * 1024;
            let mut s = greedy(n);
            simulate(&mut s, &vec![1; n], limit, 10, 100);
            let total: i64 = s.iter().map(|x| x.sent).sum();
            let expected = limit as f64 * 10.0;
            let err = (total as f64 - expected).abs() / expected;
            assert!(err <= 0.05, "{n} senders: {total} vs {expected} ({:.2}%)", err * 100.0);
            let jain = jain_index(&s.iter().map(|x| x.sent as f64).collect::<Vec<_>>());
            assert!(jain >= 0.95, "{n} senders: Jain {jain}");
        }
    }

    #[test]
    fn a_light_connection_leaves_the_rest_to_a_greedy_one() {
        let limit = 1_000_000u64; // 1000 bytes per ms
        let mut s = vec![
            Sender { demand_per_ms: 100, unit: 100, sent: 0, backlog: 0 }, // 10% of the limit
            Sender { demand_per_ms: 1 << 30, unit: 1000, sent: 0, backlog: 0 },
        ];
        simulate(&mut s, &[1, 1], limit, 10, 100);
        let (light, heavy) = (s[0].sent as f64, s[1].sent as f64);
        assert!((light - 1_000_000.0).abs() / 1_000_000.0 < 0.05, "light got {light}");
        assert!((light + heavy - 10_000_000.0).abs() / 10_000_000.0 < 0.05, "total {}", light + heavy);
        assert!(heavy > 8_500_000.0, "greedy got only {heavy}");
    }

    #[test]
    fn weights_split_the_limit_proportionally() {
        let mut s = greedy(2);
        simulate(&mut s, &[1, 3], 4_000_000, 10, 100);
        let ratio = s[1].sent as f64 / s[0].sent as f64;
        assert!((ratio - 3.0).abs() < 0.15, "ratio {ratio}");
    }

    #[test]
    fn jain_index_extremes() {
        assert_eq!(jain_index(&[5.0, 5.0, 5.0]), 1.0);
        assert!((jain_index(&[1.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-9);
    }
}
