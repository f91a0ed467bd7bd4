//! Single-connection throughput over loopback, both ends in one process on two arbiters, next to
//! the raw seal+open rate of the same crypto measured in the same run.
//!
//! `cargo run --release --example throughput -- [SECONDS]`

#[path = "common/bench.rs"]
mod bench;

use std::time::Instant;

use bench::connection_rate;
use tezos_p2p::actor::Workers;
use tezos_p2p::crypto::{ChannelKey, Nonce};
use tezos_p2p::wire::MAX_CONTENT_LENGTH;

/// Bytes per second of sealing then opening full 65517-byte chunks on one core.
fn raw_seal_open(secs: f64) -> f64 {
    let key = ChannelKey::from_bytes([1; 32]);
    let nonce = Nonce::from_bytes([2; 24]);
    let mut buf = vec![0u8; 16 + MAX_CONTENT_LENGTH];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        key.seal_in_place(&nonce, &mut buf).expect("seal");
        key.open_in_place(&nonce, &mut buf).expect("open");
        bytes += MAX_CONTENT_LENGTH as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let ceiling = raw_seal_open(secs);
    let (big, small) = actix::System::new().block_on(async move {
        let workers = Workers::new(2);
        let big = connection_rate(&workers, 64 * 1024, secs).await;
        let small = connection_rate(&workers, 1024, secs).await;
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
