//! The scheduler over real sockets: a global limit throttles (and never loses data), limits
//! change at run time, global statistics add up. Rate accuracy and fairness are checked in
//! simulated time in `src/bandwidth.rs` and measured in real time by `examples/scheduler.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tezos_p2p::actor::{self, Connection, ConnectionConfig, Limits, Scheduler, SetLimits};
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};

type Conn = Connection<RawMessage, ConnectionMetadata>;

fn local() -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(Identity::ephemeral()),
        advertised_port: None,
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: PowTarget::new(0.0).unwrap(),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    })
}

async fn pair(ca: ConnectionConfig, cb: ConnectionConfig) -> (Conn, Conn) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async {
        let (s, _) = listener.accept().await.unwrap();
        actor::authenticate(s, local(), true, Duration::from_secs(10))
            .await
            .unwrap()
            .accept::<RawMessage>(cb)
            .await
            .unwrap()
    };
    let client = async {
        actor::connect(addr, local(), Duration::from_secs(10)).await.unwrap().accept::<RawMessage>(ca).await.unwrap()
    };
    tokio::join!(client, server)
}

#[actix::test]
async fn a_download_limit_throttles_without_losing_data_and_can_be_lifted() {
    let limit = 256 * 1024;
    let scheduler = Scheduler::start(Limits { max_download_bytes_per_s: Some(limit), max_upload_bytes_per_s: None });
    let cb = ConnectionConfig { scheduler: Some(scheduler.clone()), ..Default::default() };
    let (a, b) = pair(ConnectionConfig::default(), cb).await;
    assert_eq!(scheduler.connections(), 1);
    let msg = RawMessage(Bytes::from(vec![9u8; 64 * 1024]));
    let start = Instant::now();
    for _ in 0..8 {
        a.write(&msg).await.unwrap();
    }
    for _ in 0..8 {
        assert_eq!(b.read().await.unwrap().1, msg);
    }
    // 512 KiB at 256 KiB/s cannot arrive in less than about 2 s (a lower bound: safe on a slow machine).
    assert!(start.elapsed() >= Duration::from_millis(1500), "{:?}", start.elapsed());
    assert!(scheduler.throttled().1 > Duration::ZERO);
    assert!(scheduler.stat().total_recv >= 8 * 64 * 1024);
    // Lifted at run time by an actor message: the rest flows at once.
    scheduler.addr().send(SetLimits(Limits::default())).await.unwrap();
    assert_eq!(scheduler.limits(), Limits::default());
    for _ in 0..64 {
        a.write(&msg).await.unwrap();
    }
    for _ in 0..64 {
        assert_eq!(b.read().await.unwrap().1, msg);
    }
    b.close(false).await;
    b.closed().await;
}

#[actix::test]
async fn an_upload_limit_throttles_the_writer() {
    let scheduler =
        Scheduler::start(Limits { max_upload_bytes_per_s: Some(256 * 1024), max_download_bytes_per_s: None });
    let ca = ConnectionConfig { scheduler: Some(scheduler.clone()), ..Default::default() };
    let (a, b) = pair(ca, ConnectionConfig::default()).await;
    let msg = RawMessage(Bytes::from(vec![3u8; 128 * 1024]));
    let start = Instant::now();
    for _ in 0..4 {
        a.write(&msg).await.unwrap();
        assert_eq!(b.read().await.unwrap().1, msg);
    }
    assert!(start.elapsed() >= Duration::from_millis(1500), "{:?}", start.elapsed());
    assert!(scheduler.throttled().0 > Duration::ZERO);
    assert!(scheduler.stat().total_sent >= 4 * 128 * 1024);
}
