//! Some of `tezos-p2p bench`'s figures at scale, one at a time, for profiling:
//!
//! ```text
//! cargo run --release --example scale -- tcp | rtt | rtt-loaded | fanout | aggregate | handshakes
//! ```

#[path = "../src/bin/cli/benchkit.rs"]
mod benchkit;

use std::time::Duration;

use tezos_p2p::actor::Workers;

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "rtt".into());
    let secs = 4.0;
    actix::System::new().block_on(async move {
        let workers = Workers::new(2);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        match what.as_str() {
            "tcp" => {
                let bulk = benchkit::tcp_bulk_rate(&workers, 64 * 1024, secs).await;
                let (p50, p99) = benchkit::tcp_rtt(&workers, 100, 20_000).await;
                println!("raw TCP: {:.0} MB/s; 100-byte round trip p50 {:.1} µs, p99 {:.1} µs", bulk / 1e6, us(p50), us(p99));
            }
            "rtt" | "rtt-loaded" => {
                let (t50, t99) = benchkit::tcp_rtt(&workers, 100, 20_000).await;
                let (p50, p99) = benchkit::message_rtt(&workers, 100, 20_000, what == "rtt-loaded").await;
                println!(
                    "message round trip p50 {:.1} µs ({:.2}x raw), p99 {:.1} µs ({:.2}x raw)",
                    us(p50),
                    us(p50) / us(t50),
                    us(p99),
                    us(p99) / us(t99)
                );
            }
            "fanout" => {
                let single = benchkit::connection_rate(&workers, 1024, secs, Default::default()).await / 1028.0;
                let (rate, p50, p99) = benchkit::broadcast_fanout(500, 1024, secs).await;
                println!(
                    "fan-out to 500: {rate:.0} msg/s ({:.3}x single {single:.0}); last delivery p50 {:.1} ms, p99 {:.1} ms",
                    rate / single,
                    us(p50) / 1e3,
                    us(p99) / 1e3
                );
            }
            "aggregate" => {
                let single = benchkit::connection_rate(&workers, 64 * 1024, secs, Default::default()).await;
                let agg = benchkit::aggregate_rate(&workers, 100, 64 * 1024, secs).await;
                println!("100 connections: {:.0} MB/s ({:.3}x single {:.0})", agg / 1e6, agg / single, single / 1e6);
            }
            "handshakes" => {
                let tcp = benchkit::tcp_handshake_shape_rate(&workers, 64, secs).await;
                println!("raw TCP, same exchanges: {tcp:.0} connections/s");
                let (rate, p50, p99) = benchkit::handshake_rate(&workers, 64, secs).await;
                println!("{rate:.0} handshakes/s, p50 {:.2} ms, p99 {:.2} ms", us(p50) / 1e3, us(p99) / 1e3);
            }
            other => eprintln!("unknown figure {other}"),
        }
    });
    println!("ok");
}
