//! Load runs, ignored in normal test runs (they take minutes and thousands of descriptors):
//!
//! ```text
//! cargo test --release --test load -- --ignored --nocapture ten_thousand
//! CHURN_SECS=600 cargo test --release --test load -- --ignored --nocapture churn
//! SOAK_SECS=1800 cargo test --release --test load -- --ignored --nocapture mixed_soak
//! ```

#[path = "../src/bin/cli/benchkit.rs"]
mod benchkit;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::benchkit::{local, raise_nofile, rss_bytes};
use bytes::Bytes;
use tezos_p2p::actor::{ConnectionConfig, Node, NodeConfig};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::peers::ConnectionLimits;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::ConnectionMetadata;

type LoadNode = Node<RawMessage, ConnectionMetadata>;

async fn node(max_connections: usize) -> LoadNode {
    let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
    config.listen_addr = Some("127.0.0.1:0".parse().unwrap());
    config.expected_pow = PowTarget::new(0.0).unwrap();
    config.limits = ConnectionLimits { max_connections, max_pending_incoming: 256, ..ConnectionLimits::default() };
    // Thousands of connections from 127.0.0.1: no per-source limit here.
    config.admission = tezos_p2p::admission::AdmissionConfig::unlimited();
    config.handshake_timeout = Duration::from_secs(30);
    LoadNode::start(config).await.unwrap()
}

#[actix::test]
#[ignore = "load run: 10,000 connections (see the module docs)"]
async fn ten_thousand_concurrent_connections_to_one_node() {
    const N: usize = 10_000;
    raise_nofile(N as u64 + 2048);
    let node = node(N + 10).await;
    let addr = node.listen_addr().unwrap();
    let before = rss_bytes().unwrap_or(0);
    // The dialing ends live in a child process: each process then holds N sockets, within the
    // usual hard limit on open files.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tezos-p2p"))
        .args(["bench", "--idle-child", &addr.to_string(), "--count", &N.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let ready = tokio::task::spawn_blocking(move || {
        out.read_line(&mut line).unwrap();
        line
    });
    let start = Instant::now();
    let line = ready.await.unwrap();
    assert_eq!(line.trim(), format!("ready {N}"));
    let mut tries = 0;
    while node.connections().len() < N {
        tries += 1;
        assert!(tries < 3000, "only {} connections", node.connections().len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = rss_bytes().unwrap_or(0);
    println!(
        "{N} connections to one node in {:.1} s; RSS {} -> {} MiB, {:.1} KiB per connection",
        start.elapsed().as_secs_f64(),
        before >> 20,
        after >> 20,
        after.saturating_sub(before) as f64 / N as f64 / 1024.0
    );
    let _ = child.stdin.take().map(|mut s| s.write_all(b""));
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    node.shutdown().await;
}

#[actix::test]
#[ignore = "load run: connect, exchange, close, repeat (CHURN_SECS, default 600)"]
async fn churn_keeps_memory_bounded() {
    let secs: u64 = std::env::var("CHURN_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let node = node(1000).await;
    let addr = node.listen_addr().unwrap();
    let echo = node.clone();
    // The node echoes on every connection.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    actix::spawn(async move {
        loop {
            for c in echo.connections() {
                while let Ok(Some((_, m))) = c.read_now() {
                    let _ = c.write_now(&m);
                }
            }
            tokio::select! {
                _ = rx.recv() => return,
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
    });
    let msg = RawMessage(Bytes::from(vec![3u8; 4096]));
    let run = |warm: bool| {
        let msg = msg.clone();
        async move {
            let conn = tezos_p2p::actor::connect(addr, local(), Duration::from_secs(10))
                .await
                .unwrap()
                .accept::<RawMessage>(ConnectionConfig::default())
                .await
                .unwrap();
            for _ in 0..4 {
                conn.write(&msg).await.unwrap();
                assert_eq!(conn.read().await.unwrap().1, msg);
            }
            conn.close(true).await;
            let _ = warm;
        }
    };
    // Warm up allocator pools and lazily built structures, then measure.
    for _ in 0..500 {
        run(true).await;
    }
    let start_rss = rss_bytes().unwrap_or(0);
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        run(false).await;
        rounds += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let end_rss = rss_bytes().unwrap_or(0);
    println!(
        "churn: {rounds} connections in {secs} s ({:.0}/s); RSS at start {:.1} MiB, at end {:.1} MiB",
        rounds as f64 / secs as f64,
        start_rss as f64 / 1048576.0,
        end_rss as f64 / 1048576.0
    );
    let _ = tx.send(()).await;
    assert!(end_rss < start_rss + 64 * 1024 * 1024, "RSS grew from {start_rss} to {end_rss}");
    node.shutdown().await;
}

/// RSS, open descriptors and live connection actors, at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: u64,
    rss: u64,
    fds: usize,
    live: usize,
}

fn sample(start: Instant) -> Sample {
    Sample {
        at: start.elapsed().as_secs(),
        rss: rss_bytes().unwrap_or(0),
        fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        live: tezos_p2p::actor::live_connections(),
    }
}

#[actix::test]
#[ignore = "soak: churn, traffic, hostile sockets and the overlay together (SOAK_SECS, default 1800)"]
async fn mixed_soak() {
    use tezos_p2p::maintenance::MaintenanceConfig;
    use tezos_p2p::message::db::{DbMessage, OctezMessage};
    use tezos_p2p::message::P2pMessage;
    use tezos_p2p::shell::{BlockHash, Operation};
    type Octez = Node<OctezMessage, ConnectionMetadata>;
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1800);
    raise_nofile(8192);
    let mk = |ip: u8, trusted: Vec<std::net::SocketAddr>| async move {
        let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
        config.listen_addr = Some(std::net::SocketAddr::from(([127, 0, 0, ip], 0)));
        config.expected_pow = PowTarget::new(0.0).unwrap();
        config.workers = 1;
        config.limits = ConnectionLimits::from_connections(8);
        config.maintenance = Some(MaintenanceConfig::default());
        config.trusted_points = trusted;
        Octez::start(config).await.unwrap()
    };
    // The node under soak, and a small overlay around it (maintenance, Bootstrap, swaps).
    let hub = mk(100, vec![]).await;
    let hub_addr = hub.listen_addr().unwrap();
    let mut overlay = Vec::new();
    for i in 0..6u8 {
        overlay.push(mk(101 + i, vec![hub_addr]).await);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    // What each activity did, printed with the samples (a soak that idles proves nothing).
    let churned = Arc::new(AtomicU64::new(0));
    let hostile = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    // Steady traffic: every overlay node broadcasts 16 KiB messages to its peers.
    for n in overlay.clone() {
        let stop = stop.clone();
        let delivered = delivered.clone();
        actix::spawn(async move {
            let msg = P2pMessage::Message(DbMessage::Operation {
                operation: Operation {
                    branch: BlockHash::from_bytes([7; 32]),
                    data: Bytes::from(vec![9u8; 16 * 1024]),
                },
            });
            while !stop.is_cancelled() {
                n.broadcast(&msg);
                for c in n.connections() {
                    while let Ok(Some(_)) = c.read_now() {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    {
        let hub = hub.clone();
        let stop = stop.clone();
        let delivered = delivered.clone();
        actix::spawn(async move {
            while !stop.is_cancelled() {
                for c in hub.connections() {
                    while let Ok(Some(_)) = c.read_now() {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    // Churn: a client connects, asks for points, leaves.
    {
        let stop = stop.clone();
        let churned = churned.clone();
        actix::spawn(async move {
            while !stop.is_cancelled() {
                let s = tezos_p2p::actor::connect(hub_addr, local(), Duration::from_secs(10));
                if let Ok(auth) = s.await {
                    if let Ok(c) = auth.accept::<OctezMessage>(ConnectionConfig::default()).await {
                        let _ = c.write(&P2pMessage::Bootstrap).await;
                        let _ = tokio::time::timeout(Duration::from_millis(200), c.read()).await;
                        c.close(true).await;
                        churned.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    // Hostile sockets: bursts of silent sockets from one address, and garbage.
    {
        let stop = stop.clone();
        let hostile = hostile.clone();
        actix::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            let mut round = 0u32;
            while !stop.is_cancelled() {
                round += 1;
                let mut held = Vec::new();
                for _ in 0..200 {
                    let sock = tokio::net::TcpSocket::new_v4().unwrap();
                    let _ = sock.bind(std::net::SocketAddr::from(([127, 0, 9, 9], 0)));
                    if let Ok(s) = sock.connect(hub_addr).await {
                        held.push(s);
                        hostile.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Garbage from an address of its own each round (the silent burst's address is
                // at its pending cap, which would refuse it unread): read, refused as a decoding
                // error, greylisted; the greylist table sees a new address every round.
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                let _ = sock.bind(std::net::SocketAddr::from(([127, 0, 10, (round % 250 + 1) as u8], 0)));
                if let Ok(mut g) = sock.connect(hub_addr).await {
                    let _ = g.write_all(b"\x00\x05hello").await;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                drop(held);
            }
        });
    }
    let start = Instant::now();
    let mut samples = vec![sample(start)];
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let s = sample(start);
        println!(
            "t={:>5}s rss={:.1} MiB fds={} live_connections={} hub_connections={} hub_points={} churned={} hostile_sockets={} messages_delivered={}",
            s.at,
            s.rss as f64 / 1048576.0,
            s.fds,
            s.live,
            hub.connections().len(),
            hub.points().len(),
            churned.load(Ordering::Relaxed),
            hostile.load(Ordering::Relaxed),
            delivered.load(Ordering::Relaxed),
        );
        samples.push(s);
    }
    stop.cancel();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in overlay.iter().chain(std::iter::once(&hub)) {
        n.shutdown().await;
    }
    drop(overlay);
    drop(hub);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = sample(start);
    // After the first minute (warm-up): start, end and maximum of each.
    let mut after: Vec<&Sample> = samples.iter().filter(|s| s.at >= 60).collect();
    if after.is_empty() {
        // A run shorter than the warm-up: all of it.
        after = samples.iter().collect();
    }
    let first = after.first().copied().copied().unwrap_or(samples[0]);
    let last = samples.last().copied().unwrap_or(first);
    let max = |f: fn(&Sample) -> u64| after.iter().map(|s| f(s)).max().unwrap_or(0);
    println!(
        "soak {secs} s: RSS start {:.1} / end {:.1} / max {:.1} MiB; fds start {} / end {} / max {}; live connections start {} / end {} / max {}; after shutdown: fds {}, live connections {}",
        first.rss as f64 / 1048576.0,
        last.rss as f64 / 1048576.0,
        max(|s| s.rss) as f64 / 1048576.0,
        first.fds,
        last.fds,
        max(|s| s.fds as u64),
        first.live,
        last.live,
        max(|s| s.live as u64),
        end.fds,
        end.live,
    );
    assert_eq!(end.live, 0, "connection actors left after shutdown");
    assert!(churned.load(Ordering::Relaxed) > 0, "no churn session completed");
    assert!(delivered.load(Ordering::Relaxed) > 0, "no message delivered");
}
