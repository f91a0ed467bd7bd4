//! One actix arbiter (a single-threaded runtime on its own thread) per core, so that the
//! connections of a process use every core; connections are placed round-robin.

use std::sync::atomic::{AtomicUsize, Ordering};

use actix::{Arbiter, ArbiterHandle};

/// A pool of arbiters. Dropping it stops them (and every actor on them).
pub struct Workers {
    arbiters: Vec<Arbiter>,
    next: AtomicUsize,
}

impl Workers {
    /// `n` arbiters (at least one). Must be called inside a running actix `System`.
    pub fn new(n: usize) -> Self {
        Self { arbiters: (0..n.max(1)).map(|_| Arbiter::new()).collect(), next: AtomicUsize::new(0) }
    }

    /// One arbiter per available core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The next arbiter in round-robin order.
    pub fn next(&self) -> ArbiterHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters[i].handle()
    }

    /// How many arbiters the pool has.
    pub fn len(&self) -> usize {
        self.arbiters.len()
    }

    /// Always false: a pool has at least one arbiter.
    pub fn is_empty(&self) -> bool {
        self.arbiters.is_empty()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for a in &self.arbiters {
            a.stop();
        }
    }
}
