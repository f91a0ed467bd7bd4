//! Single-connection throughput over loopback, both ends in one process on two arbiters, next to
//! the raw seal+open rate of the same crypto measured in the same run.
//!
//! `cargo run --release --example throughput -- [SECONDS]`

#[path = "../src/bin/cli/benchkit.rs"]
mod benchkit;

use tezos_p2p::actor::Workers;

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let ceiling = benchkit::raw_seal_open(tezos_p2p::wire::MAX_CONTENT_LENGTH, secs);
    let (big, small) = actix::System::new().block_on(async move {
        let workers = Workers::new(2);
        let big = benchkit::connection_rate(&workers, 64 * 1024, secs, Default::default()).await;
        let small = benchkit::connection_rate(&workers, 1024, secs, Default::default()).await;
        (big, small)
    });
    println!("raw seal+open, 65517-byte chunks, 1 core: {:8.1} MB/s", ceiling / 1e6);
    println!(
        "connection, 64 KiB messages:               {:8.1} MB/s  ({:.2}x the raw seal+open rate)",
        big / 1e6,
        big / ceiling
    );
    println!("connection, 1 KiB messages:                {:8.1} MB/s", small / 1e6);
}
