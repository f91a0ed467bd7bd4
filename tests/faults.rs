//! Connections through a faulty link (`tests/common/proxy.rs`): delay, a bandwidth cap, stalls,
//! a reset in the middle of a chunk, a one-way half-close, a corrupted byte, a dribbler. Each
//! transfer either completes byte-exact or ends with a typed error — never a silent truncation,
//! never a hang past the configured timeouts (each wait has a generous deadline).

mod common;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use common::proxy::{Dir, Faults, Proxy};
use common::Forward;
use tezos_p2p::actor::{self, CloseReason, Connection, ConnectionConfig, ConnectionError, Node, NodeConfig, NodeEvent};
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::ConnectionMetadata;
use tokio::net::TcpListener;

type Conn = Connection<RawMessage, ConnectionMetadata>;

/// Generous bound on anything that must end: far beyond every timeout the cases configure.
const DEADLINE: Duration = Duration::from_secs(60);

fn local() -> Arc<LocalConfig<ConnectionMetadata>> {
    common::local_config(Identity::ephemeral(), None)
}

/// Both ends of one connection through a proxy with `faults`: (dialler's end, listener's end).
async fn pair(faults: Faults, config: ConnectionConfig) -> (Conn, Conn, Proxy) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start(listener.local_addr().unwrap(), faults).await;
    let server_config = config.clone();
    let server = actix::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        actor::authenticate(s, local(), true, DEADLINE).await.unwrap().accept(server_config).await.unwrap()
    });
    let client: Conn = actor::connect(proxy.addr, local(), DEADLINE).await.unwrap().accept(config).await.unwrap();
    (client, server.await.unwrap(), proxy)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f).await.unwrap_or_else(|_| panic!("{what}: no result within {DEADLINE:?}"))
}

/// Messages of sizes from 0 B to 300 KiB, their bytes derived from their index.
fn messages() -> Vec<RawMessage> {
    [0usize, 1, 65_513, 65_517, 100, 300 * 1024, 7, 131_072, 4096, 2]
        .into_iter()
        .enumerate()
        .map(|(i, n)| RawMessage(Bytes::from((0..n).map(|j| (i * 31 + j) as u8).collect::<Vec<_>>())))
        .collect()
}

#[actix::test]
async fn a_slow_stalling_link_delivers_everything_byte_exact() {
    let faults = Faults { delay: Duration::from_millis(1), bytes_per_sec: Some(4_000_000), ..Faults::default() };
    let (client, server, proxy) = pair(faults, ConnectionConfig::default()).await;
    let sent = messages();
    let writer = {
        let (client, sent) = (client.clone(), sent.clone());
        actix::spawn(async move {
            for m in &sent {
                client.write(m).await.unwrap();
            }
        })
    };
    // Stall each way in turn while the transfer runs.
    for dir in [Dir::Up, Dir::Down, Dir::Up] {
        proxy.controls.stall(dir, true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.controls.stall(dir, false);
    }
    for m in &sent {
        let (_, got) = within("a message through the link", server.read()).await.unwrap();
        assert_eq!(&got, m);
    }
    writer.await.unwrap();
    client.close(true).await;
    assert!(within("the end", server.read()).await.is_err());
}

#[actix::test]
async fn a_corrupted_byte_is_a_decipher_error_never_silently_delivered() {
    // Well past the handshake (about 400 bytes up), inside the first data chunks.
    let faults = Faults { corrupt_at: Some((Dir::Up, 5_000)), ..Faults::default() };
    let (client, server, _proxy) = pair(faults, ConnectionConfig::default()).await;
    let m = RawMessage(Bytes::from(vec![7u8; 20_000]));
    client.write(&m).await.unwrap();
    let r = within("the corrupted message", server.read()).await;
    assert_eq!(r.err(), Some(ConnectionError::ConnectionClosed), "no corrupted message is delivered");
    within("closed", server.closed()).await;
    assert_eq!(server.close_reason(), Some(CloseReason::DecipherError));
}

#[actix::test]
async fn a_reset_mid_chunk_fails_every_pending_read_and_write() {
    let (client, _server, proxy) = pair(Faults::default(), ConnectionConfig::default()).await;
    // Nothing comes back, and nothing goes through: reads and a big write stay pending.
    proxy.controls.stall(Dir::Up, true);
    let mut pending = Vec::new();
    for _ in 0..3 {
        let c = client.clone();
        pending.push(actix::spawn(async move { c.read().await.map(|_| ()) }));
    }
    let big = RawMessage(Bytes::from(vec![1u8; 24 * 1024 * 1024]));
    let c = client.clone();
    let write = actix::spawn(async move { c.write_sync(&big).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.controls.reset_now();
    for p in pending {
        assert_eq!(within("a pending read", p).await.unwrap(), Err(ConnectionError::ConnectionClosed));
    }
    // 24 MiB cannot all have been taken by the sockets of a link that stalled: write_sync must
    // not report success.
    assert_eq!(within("the pending write_sync", write).await.unwrap(), Err(ConnectionError::ConnectionClosed));
    within("closed", client.closed()).await;
    assert_eq!(client.close_reason(), Some(CloseReason::ConnectionClosed));
    assert!(client.write(&RawMessage(Bytes::from_static(b"late"))).await.is_err());
}

#[actix::test]
async fn a_one_way_half_close_ends_both_sides_with_typed_reasons() {
    // The listener's answers stop (FIN towards the dialler) after the handshake and 1 KiB.
    let faults = Faults { half_close_after: Some((Dir::Down, 1_500)), ..Faults::default() };
    let (client, server, _proxy) = pair(faults, ConnectionConfig::default()).await;
    server.write(&RawMessage(Bytes::from(vec![3u8; 64 * 1024]))).await.unwrap();
    let r = within("the cut message", client.read()).await;
    assert!(r.is_err(), "a message cut by the FIN is not delivered: {r:?}");
    within("the dialler ends", client.closed()).await;
    assert_eq!(client.close_reason(), Some(CloseReason::ConnectionClosed));
    within("the listener ends", server.closed()).await;
    assert!(server.close_reason().is_some());
}

#[actix::test]
async fn write_sync_reports_success_once_the_bytes_are_in_the_socket() {
    let (client, server, _proxy) = pair(Faults::default(), ConnectionConfig::default()).await;
    let m = RawMessage(Bytes::from(vec![9u8; 200_000]));
    within("write_sync", client.write_sync(&m)).await.unwrap();
    assert_eq!(within("the message", server.read()).await.unwrap().1, m);
}

/// The `i`-th message of a numbered stream: 40 KiB (under the writer's 64 KiB coalescing unit,
/// so each is written by one flush), its bytes derived from `i`.
fn numbered(i: u32) -> RawMessage {
    let mut v = vec![(i % 251) as u8; 40 * 1024];
    v[..4].copy_from_slice(&i.to_be_bytes());
    RawMessage(Bytes::from(v))
}

/// `write_sync` reports success only for messages whose bytes the socket took. The link stalls
/// until the sockets are full and `write_sync` stops returning; then the connection is closed
/// without waiting (what is still in the writer's buffer is dropped; what the socket took is
/// still delivered) and the link resumes. Every message `write_sync` reported must arrive whole.
#[actix::test]
async fn write_sync_never_reports_bytes_the_socket_did_not_take() {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    let (client, server, proxy) = pair(Faults::default(), ConnectionConfig::default()).await;
    proxy.controls.stall(Dir::Up, true);
    let reported = Arc::new(AtomicU32::new(0));
    let (c, r) = (client.clone(), reported.clone());
    let writer = actix::spawn(async move {
        for i in 0.. {
            if c.write_sync(&numbered(i)).await.is_err() {
                break;
            }
            r.store(i + 1, SeqCst);
        }
    });
    // The sockets hold a few MB: once they are full, write_sync stops returning.
    within("the sockets fill", async {
        let mut last = u32::MAX;
        while reported.load(SeqCst) != last {
            last = reported.load(SeqCst);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    client.close(false).await;
    within("the writing task ends", writer).await.unwrap();
    let reported = reported.load(SeqCst);
    assert!(reported > 0);
    proxy.controls.stall(Dir::Up, false);
    let mut received = 0;
    while let Ok((_, m)) = within("the next message", server.read()).await {
        assert_eq!(m, numbered(received), "message {received}");
        received += 1;
    }
    assert!(received >= reported, "write_sync reported {reported} messages, {received} arrived");
}

#[actix::test]
async fn a_stalled_link_ends_the_connection_with_a_typed_reason() {
    // octez's TCP_USER_TIMEOUT is 45 s; 2 s here. The link stalls both ways, as a peer that
    // vanished behind a NAT would: what we send is never acknowledged.
    let config = ConnectionConfig { tcp_user_timeout: Some(Duration::from_secs(2)), ..ConnectionConfig::default() };
    let (client, _server, proxy) = pair(Faults::default(), config).await;
    proxy.controls.stall(Dir::Up, true);
    proxy.controls.stall(Dir::Down, true);
    let c = client.clone();
    actix::spawn(async move {
        let m = RawMessage(Bytes::from(vec![5u8; 1 << 20]));
        while c.write(&m).await.is_ok() {}
    });
    within("the stalled connection ends", client.closed()).await;
    assert_eq!(client.close_reason(), Some(CloseReason::TimedOut));
}

/// The handshake timeout holds against a dribbler, whichever handshake phase it dribbles in.
#[actix::test]
async fn the_handshake_timeout_holds_against_a_dribbler_in_every_phase() {
    let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
    config.listen_addr = Some("127.0.0.1:0".parse().unwrap());
    config.expected_pow = PowTarget::new(0.0).unwrap();
    config.handshake_timeout = Duration::from_millis(800);
    config.workers = 1;
    let node: Node<RawMessage, ConnectionMetadata> = Node::start(config).await.unwrap();
    let (tx, mut events) = tokio::sync::mpsc::channel(100);
    node.subscribe_events(Forward(tx).start().recipient());
    let target = node.listen_addr().unwrap();
    // The dialler sends 105 bytes of connection message ("TEZOS_MAINNET"), a 20-byte metadata
    // chunk, then a 19-byte Ack chunk. Dribbling from the first byte, after the connection
    // message, and after the metadata: 1 byte per second, as the dribbler does.
    for (after, phase) in [(0u64, 105u64), (105, 20), (125, 19)] {
        let faults = Faults { dribble: Some((Dir::Up, after, Duration::from_secs(1))), ..Faults::default() };
        let proxy = Proxy::start(target, faults).await;
        let controls = proxy.controls.clone();
        let dial = actix::spawn(async move {
            match actor::connect(proxy.addr, local(), DEADLINE).await {
                Ok(auth) => auth.accept::<RawMessage>(ConnectionConfig::default()).await,
                Err(e) => Err(e),
            }
        });
        let ev = within("the node gives up", async {
            loop {
                if let Some(NodeEvent::Rejected { reason, .. }) = events.recv().await {
                    return reason;
                }
            }
        })
        .await;
        assert_eq!(ev, "Timeout", "dribbling after {after} bytes");
        // The node gave up while that phase was still arriving: its deadline held, and did not
        // merely fire once the dribbler finally completed the phase.
        let forwarded = controls.up.load(std::sync::atomic::Ordering::SeqCst);
        assert!(forwarded < after + phase, "dribbling after {after} bytes: {forwarded} bytes had passed");
        // The dialler fails too — or, when only its Ack was dribbled (it got the node's),
        // its connection is closed by the node.
        if let Ok(conn) = within("the dialler's side", dial).await.unwrap() {
            within("the dialler's connection ends", conn.closed()).await;
        }
    }
    assert!(node.connections().is_empty());
    node.shutdown().await;
}
