//! Measures the proof-of-work search rate on 1 thread and on N threads in one run, and prints
//! the speed-up. `cargo run --release --example pow_rate -- [SECONDS] [THREADS]`
//!
//! The search runs at an unreachable difficulty and is cancelled after the given time, so both
//! figures count the same work: BLAKE2b-256 over key ‖ stamp and the little-endian comparison.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tezos_p2p::crypto::SecretKey;
use tezos_p2p::pow::{generate, GenerateOptions, PowTarget};

fn rate(threads: usize, secs: f64) -> f64 {
    let pk = SecretKey::generate().public_key();
    let target = PowTarget::new(250.0).expect("valid difficulty");
    let cancel = AtomicBool::new(false);
    let last = AtomicU64::new(0);
    let start = Instant::now();
    let progress = |attempts: u64| {
        last.store(attempts, Ordering::Relaxed);
        if start.elapsed().as_secs_f64() >= secs {
            cancel.store(true, Ordering::Relaxed);
        }
    };
    let opts =
        GenerateOptions { threads, cancel: &cancel, progress: &progress, progress_interval: Duration::from_millis(50) };
    let found = generate(&pk, &target, &opts);
    assert!(found.is_none(), "difficulty 250 cannot be met");
    last.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let threads: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let one = rate(1, secs);
    let many = rate(threads, secs);
    println!("pow rate 1 thread:   {:.3} MH/s", one / 1e6);
    println!("pow rate {threads} threads:  {:.3} MH/s", many / 1e6);
    println!("speed-up: {:.2}x", many / one);
}
