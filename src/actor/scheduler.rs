//! The scheduler actor: global upload/download limits, fair shares, global statistics
//! (protocol.md §11). A thin shell over [`crate::bandwidth`].
//!
//! Connections get one [`Meter`] per direction. The reader and writer loops consult their meter
//! before each socket operation: one relaxed atomic load when no limit is set, a token
//! subtraction when one is. The scheduler refreshes the tokens of every metered connection each
//! [`REFRESH`] (a batch grant), so there is no round trip to the scheduler per chunk.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use tokio::sync::Notify;

use crate::bandwidth::{self, MeterState};
use crate::stat::{MovingAverage, Stat};

/// How often quotas are granted: short enough that a connection waits little for its share,
/// long enough that the refresh (one pass over the connections) costs nothing measurable.
pub const REFRESH: Duration = Duration::from_millis(100);
/// How often the global moving averages are updated (octez: 1 s).
const AVERAGE_PERIOD: Duration = Duration::from_secs(1);
/// Smallest write a throttled writer makes, so that a tiny remaining quota does not turn into
/// many tiny system calls; the overshoot is repaid in the next period.
pub(crate) const MIN_UNIT: usize = 16 * 1024;

/// One connection's bandwidth meter in one direction.
pub struct Meter {
    tokens: AtomicI64,
    waiting: AtomicBool,
    weight: AtomicU32,
    limited: AtomicBool,
    notify: Notify,
    /// The scheduler's total for this direction.
    global: Arc<AtomicU64>,
    throttled_ns: Arc<AtomicU64>,
}

impl Meter {
    fn new(limited: bool, weight: u32, global: Arc<AtomicU64>, throttled_ns: Arc<AtomicU64>) -> Self {
        Self {
            tokens: AtomicI64::new(0),
            waiting: AtomicBool::new(false),
            weight: AtomicU32::new(weight.max(1)),
            limited: AtomicBool::new(limited),
            notify: Notify::new(),
            global,
            throttled_ns,
        }
    }

    /// How many bytes may move now: `usize::MAX` when unlimited; otherwise waits until the
    /// meter has tokens and returns them. Time spent waiting is added to the throttled total.
    pub(crate) async fn available(&self) -> usize {
        if !self.limited.load(Ordering::Relaxed) {
            return usize::MAX;
        }
        let mut since: Option<Instant> = None;
        let n = loop {
            if !self.limited.load(Ordering::Relaxed) {
                break usize::MAX;
            }
            // Registered before the check, so a refresh between the check and the wait is seen.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Checked again once registered: a limit lifted in between must not be missed.
            if !self.limited.load(Ordering::Relaxed) {
                break usize::MAX;
            }
            let t = self.tokens.load(Ordering::Relaxed);
            if t > 0 {
                break usize::try_from(t).unwrap_or(usize::MAX);
            }
            self.waiting.store(true, Ordering::Relaxed);
            since.get_or_insert_with(Instant::now);
            notified.await;
        };
        if let Some(s) = since {
            let ns = u64::try_from(s.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.throttled_ns.fetch_add(ns, Ordering::Relaxed);
        }
        n
    }

    /// Counts `n` bytes moved.
    pub(crate) fn consume(&self, n: usize) {
        let n64 = n as u64;
        self.global.fetch_add(n64, Ordering::Relaxed);
        if self.limited.load(Ordering::Relaxed) {
            self.tokens.fetch_sub(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
    }
}

/// Global rate limits in bytes/s (`None`: unlimited, the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Upload limit for the whole node.
    pub max_upload_bytes_per_s: Option<u64>,
    /// Download limit for the whole node.
    pub max_download_bytes_per_s: Option<u64>,
}

struct Shared {
    limits: [AtomicU64; 2],
    meters: DashMap<u64, [Arc<Meter>; 2]>,
    totals: [Arc<AtomicU64>; 2],
    throttled_ns: [Arc<AtomicU64>; 2],
    averages: [AtomicU64; 2],
}

const UP: usize = 0;
const DOWN: usize = 1;

/// A handle on the scheduler: cheap to clone, readable without a mailbox round trip.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
    addr: Addr<SchedulerActor>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("limits", &self.limits())
            .field("connections", &self.shared.meters.len())
            .finish()
    }
}

impl Scheduler {
    /// Starts a scheduler actor on the current arbiter with `limits`.
    pub fn start(limits: Limits) -> Self {
        let shared = Arc::new(Shared {
            limits: [AtomicU64::new(0), AtomicU64::new(0)],
            meters: DashMap::new(),
            totals: [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))],
            throttled_ns: [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))],
            averages: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        store_limits(&shared, limits);
        let addr = SchedulerActor {
            shared: shared.clone(),
            last: Instant::now(),
            averages: Default::default(),
            last_totals: [0, 0],
        }
        .start();
        Self { shared, addr }
    }

    /// The current limits.
    pub fn limits(&self) -> Limits {
        let get = |d: usize| Some(self.shared.limits[d].load(Ordering::Relaxed)).filter(|&l| l > 0);
        Limits { max_upload_bytes_per_s: get(UP), max_download_bytes_per_s: get(DOWN) }
    }

    /// Changes the limits at run time (also available as the [`SetLimits`] actor message).
    pub fn set_limits(&self, limits: Limits) {
        store_limits(&self.shared, limits);
    }

    /// The scheduler actor.
    pub fn addr(&self) -> Addr<SchedulerActor> {
        self.addr.clone()
    }

    /// Whole-node statistics (octez global `P2p_stat`): raw socket bytes of every metered
    /// connection and their smoothed rates.
    pub fn stat(&self) -> Stat {
        let s = &self.shared;
        Stat {
            total_sent: s.totals[UP].load(Ordering::Relaxed),
            total_recv: s.totals[DOWN].load(Ordering::Relaxed),
            current_outflow: s.averages[UP].load(Ordering::Relaxed),
            current_inflow: s.averages[DOWN].load(Ordering::Relaxed),
        }
    }

    /// Total time connections spent waiting for upload / download quota.
    pub fn throttled(&self) -> (Duration, Duration) {
        let d = |i: usize| Duration::from_nanos(self.shared.throttled_ns[i].load(Ordering::Relaxed));
        (d(UP), d(DOWN))
    }

    /// Number of connections metered.
    pub fn connections(&self) -> usize {
        self.shared.meters.len()
    }

    /// Adds a connection's handshake bytes (written and read before it was metered) to the
    /// totals, as octez's global statistics count every byte of a socket.
    pub(crate) fn count_handshake(&self, sent: u64, recv: u64) {
        self.shared.totals[UP].fetch_add(sent, Ordering::Relaxed);
        self.shared.totals[DOWN].fetch_add(recv, Ordering::Relaxed);
    }

    /// Registers connection `id`; returns its (upload, download) meters.
    pub(crate) fn register(&self, id: u64, weight: u32) -> [Arc<Meter>; 2] {
        let s = &self.shared;
        let meter = |d: usize| {
            Arc::new(Meter::new(
                s.limits[d].load(Ordering::Relaxed) > 0,
                weight,
                s.totals[d].clone(),
                s.throttled_ns[d].clone(),
            ))
        };
        let meters = [meter(UP), meter(DOWN)];
        s.meters.insert(id, meters.clone());
        meters
    }

    /// Forgets connection `id`.
    pub(crate) fn unregister(&self, id: u64) {
        self.shared.meters.remove(&id);
    }

    /// Changes the weight of connection `id` (e.g. 2 for a trusted peer).
    pub fn set_weight(&self, id: u64, weight: u32) {
        if let Some(m) = self.shared.meters.get(&id) {
            for meter in m.iter() {
                meter.weight.store(weight.max(1), Ordering::Relaxed);
            }
        }
    }
}

fn store_limits(shared: &Shared, limits: Limits) {
    shared.limits[UP].store(limits.max_upload_bytes_per_s.unwrap_or(0), Ordering::Relaxed);
    shared.limits[DOWN].store(limits.max_download_bytes_per_s.unwrap_or(0), Ordering::Relaxed);
}

/// The scheduler actor: refreshes quotas every [`REFRESH`] and averages every second.
pub struct SchedulerActor {
    shared: Arc<Shared>,
    last: Instant,
    averages: [MovingAverage; 2],
    last_totals: [u64; 2],
}

impl SchedulerActor {
    fn refresh(&mut self, period: Duration) {
        for d in [UP, DOWN] {
            let limit = self.shared.limits[d].load(Ordering::Relaxed);
            let entries: Vec<Arc<Meter>> = self.shared.meters.iter().map(|e| e.value()[d].clone()).collect();
            if limit == 0 {
                for m in &entries {
                    m.limited.store(false, Ordering::Relaxed);
                    // Always: a waiter that registered just after an earlier notification must wake.
                    m.notify.notify_waiters();
                }
                continue;
            }
            let mut states: Vec<MeterState> = entries
                .iter()
                .map(|m| {
                    m.limited.store(true, Ordering::Relaxed);
                    MeterState {
                        tokens: m.tokens.load(Ordering::Relaxed),
                        waiting: m.waiting.load(Ordering::Relaxed),
                        weight: m.weight.load(Ordering::Relaxed),
                    }
                })
                .collect();
            let before: Vec<i64> = states.iter().map(|s| s.tokens).collect();
            bandwidth::refresh(&mut states, limit, period);
            for ((m, s), old) in entries.iter().zip(&states).zip(before) {
                // A delta, so bytes consumed since the snapshot are not forgotten.
                m.tokens.fetch_add(s.tokens - old, Ordering::Relaxed);
                m.waiting.store(false, Ordering::Relaxed);
                if s.tokens > 0 {
                    m.notify.notify_waiters();
                }
            }
        }
    }

    fn average(&mut self, elapsed: Duration) {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        for d in [UP, DOWN] {
            let total = self.shared.totals[d].load(Ordering::Relaxed);
            self.averages[d].add(total - self.last_totals[d]);
            self.averages[d].tick(ms);
            self.last_totals[d] = total;
            self.shared.averages[d].store(self.averages[d].average(), Ordering::Relaxed);
        }
    }
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Dropped unstarted as the runtime shuts down: no timers without a runtime.
        if tokio::runtime::Handle::try_current().is_err() {
            ctx.stop();
            return;
        }
        let mut last = Instant::now();
        ctx.run_interval(REFRESH, move |act, _| {
            let now = Instant::now();
            act.refresh(now - last);
            last = now;
        });
        ctx.run_interval(AVERAGE_PERIOD, |act, _| {
            let now = Instant::now();
            act.average(now - act.last);
            act.last = now;
        });
    }
}

/// Changes the global limits.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetLimits(pub Limits);

impl Handler<SetLimits> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: SetLimits, _: &mut Self::Context) {
        store_limits(&self.shared, msg.0);
    }
}
