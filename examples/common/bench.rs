//! Shared by the benchmark examples: a loopback connection pair measured end to end.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tezos_p2p::actor::{self, ConnectionConfig, Workers};
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};

/// A local configuration with an ephemeral identity and no PoW requirement.
pub fn local() -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(Identity::ephemeral()),
        advertised_port: None,
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: PowTarget::new(0.0).expect("valid"),
    })
}

/// Message bytes per second one connection delivers for `secs` seconds, both ends in this
/// process on two arbiters (so sealing and opening run on different cores).
pub async fn connection_rate(workers: &Workers, size: usize, secs: f64) -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    workers.next().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let (s, _) = listener.accept().await.expect("accept");
        let auth = actor::authenticate(s, local(), true, Duration::from_secs(5)).await.expect("auth");
        let conn = auth.accept::<RawMessage>(ConnectionConfig::default()).await.expect("accept");
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
        let auth = actor::connect(addr, local(), Duration::from_secs(5)).await.expect("connect");
        let conn = auth.accept::<RawMessage>(ConnectionConfig::default()).await.expect("accept");
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
