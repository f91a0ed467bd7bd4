//! Real-time figures for the scheduler, measured in one run over loopback:
//! - with a global download limit and 1, 8 and 50 greedy senders, the aggregate received rate
//!   against the limit, and Jain's fairness index across senders;
//! - unlimited: one connection's throughput with the scheduler attached against the same
//!   connection with no scheduler.
//!
//! `cargo run --release --example scheduler -- [SECONDS] [LIMIT_BYTES_PER_S]`

#[path = "../src/bin/cli/benchkit.rs"]
mod benchkit;

use crate::benchkit::{connection_rate, limited_senders};
use tezos_p2p::actor::{ConnectionConfig, Limits, Scheduler, Workers};
use tezos_p2p::bandwidth::jain_index;

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let limit: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(20 * 1024 * 1024);
    actix::System::new().block_on(async move {
        let workers = Workers::new(2);
        for n in [1usize, 8, 50] {
            let got = limited_senders(&workers, n, limit, secs).await;
            let rate = got.iter().sum::<u64>() as f64 / secs;
            let jain = jain_index(&got.iter().map(|&x| x as f64).collect::<Vec<_>>());
            println!(
                "download limit {:.1} MB/s, {n:2} senders: {:.2} MB/s ({:+.2}% of the limit), Jain {jain:.4}",
                limit as f64 / 1e6,
                rate / 1e6,
                (rate / limit as f64 - 1.0) * 100.0
            );
        }
        let bare = connection_rate(&workers, 64 * 1024, secs / 2.0, ConnectionConfig::default()).await;
        let with = ConnectionConfig { scheduler: Some(Scheduler::start(Limits::default())), ..Default::default() };
        let metered = connection_rate(&workers, 64 * 1024, secs / 2.0, with).await;
        println!(
            "unlimited, one connection, 64 KiB messages: {:.1} MB/s with the scheduler, {:.1} MB/s without ({:.3}x)",
            metered / 1e6,
            bare / 1e6,
            metered / bare
        );
    });
}
