//! Single-connection throughput over loopback, both ends in one process on two arbiters, next to
//! the raw seal+open rate of the same crypto measured in the same run.
//!
//! `cargo run --release --example throughput -- [SECONDS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tezos_p2p::actor::{self, ConnectionConfig, Workers};
use tezos_p2p::crypto::{ChannelKey, Nonce};
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion, MAX_CONTENT_LENGTH};

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

fn local() -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(Identity::ephemeral()),
        advertised_port: None,
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: PowTarget::new(0.0).expect("valid"),
    })
}

/// Message bytes per second delivered by one connection for `secs` seconds.
async fn connection_rate(workers: &Workers, size: usize, secs: f64) -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    workers.next().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let (s, _) = listener.accept().await.expect("accept");
        let auth = actor::authenticate(s, local(), true, Duration::from_secs(5))
            .await
            .expect("auth");
        let conn = auth
            .accept::<RawMessage>(ConnectionConfig::default())
            .await
            .expect("accept");
        let mut bytes = 0u64;
        let mut start = None;
        while let Ok((n, _)) = conn.read().await {
            start.get_or_insert_with(Instant::now);
            bytes += n as u64;
        }
        let elapsed = start.map_or(1.0, |s| s.elapsed().as_secs_f64());
        let _ = done_tx.send(bytes as f64 / elapsed);
    });
    workers.next().spawn(async move {
        let auth = actor::connect(addr, local(), Duration::from_secs(5))
            .await
            .expect("connect");
        let conn = auth
            .accept::<RawMessage>(ConnectionConfig::default())
            .await
            .expect("accept");
        let msg = RawMessage(Bytes::from(vec![7u8; size]));
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < secs {
            for _ in 0..64 {
                if conn.write(&msg).await.is_err() {
                    return;
                }
            }
        }
        conn.close(true).await;
    });
    done_rx.await.expect("result")
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let ceiling = raw_seal_open(secs);
    let (big, small) = actix::System::new().block_on(async move {
        let workers = Workers::new(2);
        let big = connection_rate(&workers, 64 * 1024, secs).await;
        let small = connection_rate(&workers, 1024, secs).await;
        (big, small)
    });
    println!(
        "raw seal+open, 65517-byte chunks, 1 core: {:8.1} MB/s",
        ceiling / 1e6
    );
    println!(
        "connection, 64 KiB messages:               {:8.1} MB/s  ({:.2}x the raw seal+open rate)",
        big / 1e6,
        big / ceiling
    );
    println!(
        "connection, 1 KiB messages:                {:8.1} MB/s",
        small / 1e6
    );
}
