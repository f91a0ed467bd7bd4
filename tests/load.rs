//! Load runs, ignored in normal test runs (they take minutes and thousands of descriptors):
//!
//! ```text
//! cargo test --release --test load -- --ignored --nocapture ten_thousand
//! CHURN_SECS=600 cargo test --release --test load -- --ignored --nocapture churn
//! ```

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tezos_p2p::actor::{ConnectionConfig, Node, NodeConfig};
use tezos_p2p::benchkit::{local, raise_nofile, rss_bytes};
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
