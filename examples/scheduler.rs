//! Real-time figures for the scheduler, measured in one run over loopback:
//! - with a global download limit L and 1, 8 and 50 greedy senders, the aggregate received rate
//!   over the measurement window against L, and Jain's fairness index across senders;
//! - unlimited: one connection's throughput with the scheduler attached against the same
//!   connection with no scheduler.
//!
//! `cargo run --release --example scheduler -- [SECONDS] [LIMIT_BYTES_PER_S]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tezos_p2p::actor::{self, ConnectionConfig, Limits, Scheduler, Workers};
use tezos_p2p::bandwidth::jain_index;
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};

fn local() -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(Identity::ephemeral()),
        advertised_port: None,
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: PowTarget::new(0.0).expect("valid"),
    })
}

/// Runs `senders` greedy connections into one receiver whose connections use `config`; returns
/// bytes received per sender during the `secs` window that starts after a 1 s warm-up.
async fn run(workers: &Workers, senders: usize, config: ConnectionConfig, size: usize, secs: f64) -> Vec<u64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..senders).map(|_| AtomicU64::new(0)).collect());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(senders.max(1));
    let receiver_counters = counters.clone();
    let receiver_ready = ready_tx.clone();
    // Closed after the measurement, which stops the senders too.
    let stop = tokio_util::sync::CancellationToken::new();
    let receiver_stop = stop.clone();
    workers.next().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        for i in 0..senders {
            let (s, _) = listener.accept().await.expect("accept");
            let auth = actor::authenticate(s, local(), true, Duration::from_secs(10)).await.expect("auth");
            let conn = auth.accept::<RawMessage>(config.clone()).await.expect("accept");
            let counters = receiver_counters.clone();
            let stop = receiver_stop.clone();
            actix::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        r = conn.read() => match r {
                            Ok((n, _)) => counters[i].fetch_add(n as u64, Ordering::Relaxed),
                            Err(_) => break,
                        },
                    };
                }
                conn.close(false).await;
            });
        }
        let _ = receiver_ready.send(()).await;
    });
    for _ in 0..senders {
        workers.next().spawn(async move {
            let auth = actor::connect(addr, local(), Duration::from_secs(10)).await.expect("connect");
            let conn = auth.accept::<RawMessage>(ConnectionConfig::default()).await.expect("accept");
            let msg = RawMessage(Bytes::from(vec![1u8; size]));
            while conn.write(&msg).await.is_ok() {}
        });
    }
    ready_rx.recv().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let elapsed = start.elapsed().as_secs_f64();
    stop.cancel();
    counters.iter().zip(before).map(|(c, b)| ((c.load(Ordering::Relaxed) - b) as f64 * secs / elapsed) as u64).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let limit: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(20 * 1024 * 1024);
    actix::System::new().block_on(async move {
        let workers = Workers::new(2);
        for n in [1usize, 8, 50] {
            let scheduler =
                Scheduler::start(Limits { max_upload_bytes_per_s: None, max_download_bytes_per_s: Some(limit) });
            let config = ConnectionConfig { scheduler: Some(scheduler), ..Default::default() };
            let got = run(&workers, n, config, 16 * 1024, secs).await;
            let total: u64 = got.iter().sum();
            let rate = total as f64 / secs;
            let jain = jain_index(&got.iter().map(|&x| x as f64).collect::<Vec<_>>());
            println!(
                "download limit {:.1} MB/s, {n:2} senders: {:.2} MB/s ({:+.2}% of the limit), Jain {jain:.4}",
                limit as f64 / 1e6,
                rate / 1e6,
                (rate / limit as f64 - 1.0) * 100.0
            );
        }
        let bare = run(&workers, 1, ConnectionConfig::default(), 64 * 1024, secs / 2.0).await[0] as f64 / (secs / 2.0);
        let with = ConnectionConfig { scheduler: Some(Scheduler::start(Limits::default())), ..Default::default() };
        let metered = run(&workers, 1, with, 64 * 1024, secs / 2.0).await[0] as f64 / (secs / 2.0);
        println!(
            "unlimited, one connection, 64 KiB messages: {:.1} MB/s with the scheduler, {:.1} MB/s without ({:.3}x)",
            metered / 1e6,
            bare / 1e6,
            metered / bare
        );
    });
}
