//! Connections over real loopback sockets: both roles, the octez errors a misbehaving peer
//! causes, message sizes, queues and backpressure, subscriptions, actor messages.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tezos_p2p::actor::{
    self, CloseReason, Closed, Connection, ConnectionConfig, ConnectionError, Inbound, Read, ReadNow, Stat, Write,
    WriteSync,
};
use tezos_p2p::handshake::{self as hs, AuthError, LocalConfig};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::{Encoding, RawMessage};
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{seal_chunks, ChunkSize, ConnectionMetadata, NackMotive, NetworkVersion};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

type Conn = Connection<RawMessage, ConnectionMetadata>;

fn local(identity: &Identity, pow: f64, p2p_version: u16) -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(identity.clone()),
        advertised_port: Some(9732),
        version: NetworkVersion { p2p_version, ..NetworkVersion::current("TEZOS_MAINNET") },
        metadata: ConnectionMetadata { disable_mempool: true, private_node: false },
        expected_pow: PowTarget::new(pow).unwrap(),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    })
}

const T: Duration = Duration::from_secs(10);

/// Authenticates both ends over loopback; returns (outgoing side, incoming side) results.
async fn handshake_pair(
    a: Arc<LocalConfig<ConnectionMetadata>>,
    b: Arc<LocalConfig<ConnectionMetadata>>,
) -> (
    Result<actor::Authenticated<ConnectionMetadata>, AuthError>,
    Result<actor::Authenticated<ConnectionMetadata>, AuthError>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async move {
        let (s, _) = listener.accept().await.unwrap();
        actor::authenticate(s, b, true, T).await
    };
    tokio::join!(actor::connect(addr, a, T), server)
}

/// Like [`pair_with`], with small kernel socket buffers (no autotuning), so that backpressure
/// reaches the application queues after a few hundred KiB instead of tens of MiB.
async fn pair_small_buffers(ca: ConnectionConfig, cb: ConnectionConfig) -> (Conn, Conn) {
    let ls = tokio::net::TcpSocket::new_v4().unwrap();
    ls.set_recv_buffer_size(64 * 1024).unwrap();
    ls.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = ls.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async move {
        let (s, _) = listener.accept().await.unwrap();
        actor::authenticate(s, local(&Identity::ephemeral(), 0.0, 1), true, T)
            .await
            .unwrap()
            .accept::<RawMessage>(cb)
            .await
            .unwrap()
    };
    let client = async move {
        let cs = tokio::net::TcpSocket::new_v4().unwrap();
        cs.set_send_buffer_size(64 * 1024).unwrap();
        let s = cs.connect(addr).await.unwrap();
        actor::authenticate(s, local(&Identity::ephemeral(), 0.0, 1), false, T)
            .await
            .unwrap()
            .accept::<RawMessage>(ca)
            .await
            .unwrap()
    };
    tokio::join!(client, server)
}

async fn pair_with(ca: ConnectionConfig, cb: ConnectionConfig) -> (Conn, Conn) {
    let (a, b) = handshake_pair(local(&Identity::ephemeral(), 0.0, 1), local(&Identity::ephemeral(), 0.0, 1)).await;
    let (a, b) = tokio::join!(a.unwrap().accept(ca), b.unwrap().accept(cb));
    (a.unwrap(), b.unwrap())
}

async fn pair() -> (Conn, Conn) {
    pair_with(ConnectionConfig::default(), ConnectionConfig::default()).await
}

fn raw(len: usize, seed: u8) -> RawMessage {
    RawMessage(Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<_>>()))
}

/// Waits (without a timing threshold: the bound is only a safety net) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[actix::test]
async fn both_roles_carry_messages_of_edge_sizes_both_ways() {
    let (a, b) = pair().await;
    assert!(!a.info().incoming && b.info().incoming);
    assert_ne!(a.info().peer_id, b.info().peer_id);
    assert!(a.remote_metadata().disable_mempool && !a.private_node());
    // 65517 and 65518 straddle one chunk's plaintext once the 4-byte prefix is counted too.
    let sizes = [0usize, 1, 65_513, 65_514, 65_517, 65_518, 1 << 20];
    for (n, &len) in sizes.iter().enumerate() {
        let m = raw(len, n as u8);
        a.write(&m).await.unwrap();
        b.write(&raw(len, n as u8 + 100)).await.unwrap();
        let (size, got) = b.read().await.unwrap();
        assert_eq!((size, &got), (len + 4, &m), "a→b {len}");
        let (size, got) = a.read().await.unwrap();
        assert_eq!((size, got), (len + 4, raw(len, n as u8 + 100)), "b→a {len}");
    }
    assert_eq!(a.read_now(), Ok(None));
    // Stats count raw socket bytes, handshake included, and agree across the two ends.
    eventually("stats settle", || {
        a.stat().total_sent == b.stat().total_recv && b.stat().total_sent == a.stat().total_recv
    })
    .await;
    assert!(a.stat().total_sent > (1 << 20) + 144);
    assert!(a.to_string().starts_with(&format!("{}@127.0.0.1:", a.info().peer_id)));
    assert_ne!(a, b);
    assert_eq!(a, a.clone());
}

#[actix::test]
async fn write_sync_resolves_once_written_and_close_wait_delivers_everything_before_the_fin() {
    let (a, b) = pair().await;
    a.write_sync(&raw(10, 1)).await.unwrap();
    assert_eq!(b.read().await.unwrap().1, raw(10, 1));
    for i in 0..200 {
        a.write(&raw(1000 + i, i as u8)).await.unwrap();
    }
    a.close(true).await;
    assert_eq!(a.write(&raw(1, 1)).await, Err(ConnectionError::ConnectionClosed));
    for i in 0..200 {
        assert_eq!(b.read().await.unwrap().1, raw(1000 + i, i as u8), "message {i}");
    }
    assert_eq!(b.read().await, Err(ConnectionError::ConnectionClosed));
    b.closed().await;
    assert_eq!(b.close_reason(), Some(CloseReason::ConnectionClosed));
    assert_eq!(a.close_reason(), Some(CloseReason::LocalClose));
}

#[actix::test]
async fn write_now_drops_on_a_full_queue_and_a_full_read_queue_makes_the_remote_write_wait() {
    let small =
        ConnectionConfig { incoming_queue_bytes: 64 * 1024, outgoing_queue_bytes: 64 * 1024, ..Default::default() };
    let (a, b) = pair_small_buffers(small.clone(), small).await;
    // b never reads: its read queue fills, its reader stops reading, TCP fills, a's writer
    // blocks, a's write queue fills, and then write_now refuses.
    let msg = raw(4000, 7);
    let mut queued = 0usize;
    let mut refused = false;
    for _ in 0..100_000 {
        match a.write_now(&msg).unwrap() {
            true => queued += 1,
            false => {
                refused = true;
                break;
            }
        }
        if queued.is_multiple_of(64) {
            tokio::task::yield_now().await;
        }
    }
    assert!(refused, "write_now never refused after {queued} messages");
    assert!(a.write_queue_bytes() > 64 * 1024 - 2 * (4004 + 128), "{}", a.write_queue_bytes());
    eventually("b's read queue is full", || b.read_queue_bytes() > 64 * 1024 - 2 * (4004 + 128)).await;
    // Blocking writes now wait (counted) until b reads; nothing is lost or reordered.
    let a2 = a.clone();
    let writer = tokio::task::spawn_local(async move {
        let mut n = 0;
        while a2.write_waits() == 0 {
            a2.write(&raw(4000, 9)).await.unwrap();
            n += 1;
        }
        n
    });
    eventually("a's write waits", || a.write_waits() > 0).await;
    for i in 0..queued {
        assert_eq!(b.read().await.unwrap().1, msg, "message {i}");
    }
    let extra = writer.await.unwrap();
    for _ in 0..extra {
        assert_eq!(b.read().await.unwrap().1, raw(4000, 9));
    }
    assert_eq!(b.read_now(), Ok(None));
}

#[actix::test]
async fn the_writer_gives_each_message_s_budget_back_as_its_bytes_reach_the_socket() {
    // Room for 16 messages of 64 KiB; small socket buffers; b never reads.
    let ca = ConnectionConfig { outgoing_queue_bytes: 16 * (4 + 64 * 1024 + 128), ..Default::default() };
    let cb = ConnectionConfig { incoming_queue_bytes: 64 * 1024, ..Default::default() };
    let (a, b) = pair_small_buffers(ca, cb).await;
    let msg = raw(64 * 1024, 3);
    // Queued without yielding: the writer takes all 16 as one batch.
    let mut queued = 0;
    while a.write_now(&msg).unwrap() {
        queued += 1;
    }
    assert_eq!(queued, 16);
    // The sockets and b's read queue hold a few of them, far from all 16, so the writer is
    // stuck inside its batch; what it handed to the socket is already room for new messages
    // (a writer that released the budget at the end of the batch would never make room here).
    eventually("room in the write queue while the batch is being written", || a.write_now(&msg).unwrap()).await;
    queued += 1;
    for i in 0..queued {
        assert_eq!(b.read().await.unwrap().1, msg, "message {i}");
    }
    assert_eq!(b.read_now(), Ok(None));
}

/// A subscriber that counts messages, and holds each one until `release` allows it.
struct Slow {
    got: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Actor for Slow {
    type Context = Context<Self>;
}

impl Handler<Inbound<RawMessage>> for Slow {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Inbound<RawMessage>, _: &mut Self::Context) -> Self::Result {
        let (got, gate) = (self.got.clone(), self.gate.clone());
        Box::pin(async move {
            let _ = gate.acquire().await.map(|p| p.forget());
            assert_eq!(msg.message.0.len(), 1000);
            got.fetch_add(1, Ordering::SeqCst);
        })
    }
}

#[actix::test]
async fn a_slow_subscriber_slows_the_reader_instead_of_growing_memory() {
    let small =
        ConnectionConfig { incoming_queue_bytes: 32 * 1024, outgoing_queue_bytes: 32 * 1024, ..Default::default() };
    let (a, b) = pair_small_buffers(small.clone(), small).await;
    let got = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    b.subscribe(Slow { got: got.clone(), gate: gate.clone() }.start().recipient());
    // With the subscriber stuck on the first message, a's writes back up into its own queue.
    let mut sent = 0usize;
    while a.write_now(&raw(1000, 1)).unwrap() {
        sent += 1;
        if sent.is_multiple_of(32) {
            tokio::task::yield_now().await;
        }
    }
    assert!(sent > 0);
    assert_eq!(got.load(Ordering::SeqCst), 0);
    // Nothing piles up on b's side: subscribers bypass the read queue, one message in flight.
    assert_eq!(b.read_queue_bytes(), 0);
    gate.add_permits(sent);
    eventually("all delivered", || got.load(Ordering::SeqCst) == sent).await;
}

#[actix::test]
async fn a_connection_can_be_driven_purely_with_actor_messages() {
    let (a, b) = pair().await;
    let (aa, ba) = (a.addr(), b.addr());
    aa.send(Write(raw(5, 5))).await.unwrap().unwrap();
    let (size, m) = ba.send(Read::default()).await.unwrap().unwrap();
    assert_eq!((size, m), (9, raw(5, 5)));
    aa.send(WriteSync(raw(6, 6))).await.unwrap().unwrap();
    eventually("queued", || b.read_queue_bytes() > 0).await;
    assert_eq!(ba.send(ReadNow::default()).await.unwrap().unwrap().unwrap().1, raw(6, 6));
    assert_eq!(ba.send(ReadNow::<RawMessage>::default()).await.unwrap(), Ok(None));
    let stat = aa.send(Stat).await.unwrap();
    assert!(stat.total_sent >= 144);
    let info = aa.send(actor::Info::default()).await.unwrap();
    assert_eq!(info.peer_id, a.info().peer_id);
    assert!(!aa.send(actor::PrivateNode).await.unwrap());
    assert!(ba.send(actor::RemoteMetadata::default()).await.unwrap().disable_mempool);
    aa.send(actor::Close { wait: true }).await.unwrap();
    assert_eq!(ba.send(Read::<RawMessage>::default()).await.unwrap(), Err(ConnectionError::ConnectionClosed));
}

struct Watcher(tokio::sync::mpsc::Sender<Closed>);

impl Actor for Watcher {
    type Context = Context<Self>;
}

impl Handler<Closed> for Watcher {
    type Result = ();

    fn handle(&mut self, msg: Closed, _: &mut Self::Context) {
        let _ = self.0.try_send(msg);
    }
}

/// A raw peer: authenticates with the pure core over a plain socket, then sends `bytes`.
async fn misbehaving_peer(
    bytes: impl FnOnce(&mut tezos_p2p::crypto::Sealer) -> Vec<u8>,
) -> (Conn, tokio::sync::mpsc::Receiver<Closed>) {
    let (conn, mut stream, mut sealer) = raw_peer().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    conn.subscribe_closed(Watcher(tx).start().recipient());
    stream.write_all(&bytes(&mut sealer)).await.unwrap();
    // Keep the raw peer's socket open until our side reacts.
    tokio::task::spawn_local(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    (conn, rx)
}

/// Our accepted connection, and the raw peer's socket and sealer (the peer ran the pure core).
async fn raw_peer() -> (Conn, TcpStream, tezos_p2p::crypto::Sealer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ours = async move {
        let (s, _) = listener.accept().await.unwrap();
        actor::authenticate(s, local(&Identity::ephemeral(), 0.0, 1), true, T)
            .await
            .unwrap()
            .accept::<RawMessage>(ConnectionConfig::default())
            .await
            .unwrap()
    };
    let theirs = async move {
        let s = TcpStream::connect(addr).await.unwrap();
        let auth =
            hs::authenticate(s, local(&Identity::ephemeral(), 0.0, 1), false, Some(addr), |_| Ok(())).await.unwrap();
        auth.accept().await.unwrap()
    };
    let (conn, (stream, session, _)) = tokio::join!(ours, theirs);
    (conn, stream, session.sealer)
}

fn chunked(sealer: &mut tezos_p2p::crypto::Sealer, msg: &RawMessage) -> Vec<u8> {
    let mut enc = Vec::new();
    msg.encode(&mut enc).unwrap();
    let mut out = BytesMut::new();
    seal_chunks(sealer, &enc, ChunkSize::default(), &mut out);
    out.to_vec()
}

#[actix::test]
async fn a_tampered_chunk_closes_with_decipher_error_after_the_good_ones() {
    let (conn, mut closed) = misbehaving_peer(|s| {
        let mut bytes = chunked(s, &raw(100, 1));
        let mut bad = chunked(s, &raw(100, 2));
        bad[20] ^= 1;
        bytes.extend(bad);
        bytes
    })
    .await;
    assert_eq!(conn.read().await.unwrap().1, raw(100, 1));
    assert_eq!(conn.read().await, Err(ConnectionError::ConnectionClosed));
    assert_eq!(conn.close_reason(), Some(CloseReason::DecipherError));
    assert!(conn.close_reason().unwrap().greylists());
    let ev = closed.recv().await.unwrap();
    assert_eq!(ev.reason, CloseReason::DecipherError);
    assert_eq!(ev.peer_id, conn.info().peer_id);
}

#[actix::test]
async fn a_replayed_chunk_is_a_decipher_error() {
    let (conn, _closed) = misbehaving_peer(|s| {
        let one = chunked(s, &raw(10, 1));
        [one.clone(), one].concat()
    })
    .await;
    assert_eq!(conn.read().await.unwrap().1, raw(10, 1));
    assert_eq!(conn.read().await, Err(ConnectionError::ConnectionClosed));
    assert_eq!(conn.close_reason(), Some(CloseReason::DecipherError));
}

#[actix::test]
async fn a_short_chunk_length_is_invalid_incoming_ciphertext_size() {
    let (conn, _closed) = misbehaving_peer(|_| vec![0x00, 0x0f]).await;
    assert_eq!(conn.read().await, Err(ConnectionError::ConnectionClosed));
    assert_eq!(conn.close_reason(), Some(CloseReason::InvalidIncomingCiphertextSize { size: 15 }));
}

#[actix::test]
async fn an_oversized_length_prefix_is_a_decoding_error_before_any_allocation() {
    let (conn, _closed) = misbehaving_peer(|s| {
        let mut out = BytesMut::new();
        seal_chunks(s, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3], ChunkSize::default(), &mut out);
        out.to_vec()
    })
    .await;
    assert_eq!(conn.read().await, Err(ConnectionError::ConnectionClosed));
    assert!(matches!(conn.close_reason(), Some(CloseReason::Decoding(_))), "{:?}", conn.close_reason());
}

#[actix::test]
async fn a_truncated_stream_is_connection_closed() {
    let (conn, mut stream, mut sealer) = raw_peer().await;
    let bytes = chunked(&mut sealer, &raw(1000, 3));
    stream.write_all(&bytes[..500]).await.unwrap();
    drop(stream);
    assert_eq!(conn.read().await, Err(ConnectionError::ConnectionClosed));
    assert_eq!(conn.close_reason(), Some(CloseReason::ConnectionClosed));
}

#[actix::test]
async fn insufficient_pow_is_refused_before_any_key_derivation() {
    let (a, b) = handshake_pair(local(&Identity::ephemeral(), 0.0, 1), local(&Identity::ephemeral(), 40.0, 1)).await;
    assert!(matches!(b.err(), Some(AuthError::NotEnoughProofOfWork { .. })));
    assert!(matches!(a.err(), Some(AuthError::ConnectionClosed)));
}

#[actix::test]
async fn connecting_to_ourselves_is_myself_on_both_sides() {
    let me = Identity::ephemeral();
    let (a, b) = handshake_pair(local(&me, 0.0, 1), local(&me, 0.0, 1)).await;
    assert!(matches!(a.err(), Some(AuthError::Myself { .. })));
    assert!(matches!(b.err(), Some(AuthError::Myself { .. })));
}

#[actix::test]
async fn a_nack_with_100_points_reaches_the_peer_and_p2p_version_0_gets_nack_v0() {
    let points: Vec<SocketAddr> =
        (0..100).map(|i| format!("10.1.{}.{}:9732", i / 200, i % 200).parse().unwrap()).collect();
    let (a, b) = handshake_pair(local(&Identity::ephemeral(), 0.0, 1), local(&Identity::ephemeral(), 0.0, 1)).await;
    let (ra, rb) = tokio::join!(
        a.unwrap().accept::<RawMessage>(ConnectionConfig::default()),
        b.unwrap().nack(NackMotive::TooManyConnections, points.clone())
    );
    rb.unwrap();
    assert_eq!(
        ra.err(),
        Some(AuthError::RejectedByNack { motive: NackMotive::TooManyConnections, alternative_points: Some(points) })
    );

    let (a, b) = handshake_pair(local(&Identity::ephemeral(), 0.0, 0), local(&Identity::ephemeral(), 0.0, 1)).await;
    let (ra, _) = tokio::join!(
        a.unwrap().accept::<RawMessage>(ConnectionConfig::default()),
        b.unwrap().nack(NackMotive::TooManyConnections, vec![])
    );
    assert_eq!(ra.err(), Some(AuthError::RejectedByNack { motive: NackMotive::NoMotive, alternative_points: None }));
}

#[actix::test]
async fn a_chain_mismatch_is_nacked_with_unknown_chain_name() {
    let other = Arc::new(LocalConfig {
        version: NetworkVersion::current("TEZOS_GHOSTNET"),
        ..(*local(&Identity::ephemeral(), 0.0, 1)).clone()
    });
    let (a, b) = handshake_pair(local(&Identity::ephemeral(), 0.0, 1), other).await;
    let (ra, rb) = tokio::join!(
        a.unwrap().accept::<RawMessage>(ConnectionConfig::default()),
        b.unwrap().accept::<RawMessage>(ConnectionConfig::default())
    );
    let motive = NackMotive::UnknownChainName;
    assert_eq!(rb.err(), Some(AuthError::RejectedNoCommonProtocol { motive }));
    // Both sides find the mismatch and nack; each sees the other's Nack, or the close after it.
    assert!(matches!(
        ra.err(),
        Some(
            AuthError::RejectedNoCommonProtocol { .. }
                | AuthError::RejectedByNack { .. }
                | AuthError::RejectedSocketConnection
        )
    ));
}

#[actix::test]
async fn a_silent_peer_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _silent = TcpStream::connect(addr).await.unwrap();
    let (s, _) = listener.accept().await.unwrap();
    let r = actor::authenticate(s, local(&Identity::ephemeral(), 0.0, 1), true, Duration::from_millis(200)).await;
    assert_eq!(r.err(), Some(AuthError::Timeout));
}
