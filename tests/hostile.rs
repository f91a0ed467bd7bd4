//! Hostile peers over real loopback sockets. For each case: the expected typed error or clean
//! close, the node still serves a fresh honest peer, its queues stay within their configured
//! bounds, and nothing is left behind (connection actors and file descriptors are counted).
//! Each hostile peer dials from its own 127.0.0.x address, since most cases greylist it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
mod common;

use common::{open_fds, Forward};

fn local(id: Identity) -> Arc<LocalConfig<ConnectionMetadata>> {
    common::local_config(id, None)
}
use tezos_p2p::actor::{self, live_connections, Connection, ConnectionConfig, Node, NodeConfig, NodeEvent};
use tezos_p2p::crypto::{Nonce, PublicKey};
use tezos_p2p::handshake::{self as hs, LocalConfig};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::{Encoding, RawMessage};
use tezos_p2p::pow::{PowTarget, Stamp};
use tezos_p2p::wire::{seal_chunks, ChunkSize, ConnectionMessage, ConnectionMetadata, NetworkVersion};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

type Conn = Connection<RawMessage, ConnectionMetadata>;
type TestNode = Node<RawMessage, ConnectionMetadata>;

const QUEUE: usize = 256 * 1024;

async fn dial(last: u8, to: SocketAddr) -> TcpStream {
    common::dial([127, 0, 3, last], to).await
}

/// A node with small queues and a short handshake timeout, and its event stream.
async fn node() -> (TestNode, mpsc::Receiver<NodeEvent>) {
    node_with_pow(0.0).await
}

async fn node_with_pow(pow: f64) -> (TestNode, mpsc::Receiver<NodeEvent>) {
    let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
    config.listen_addr = Some("127.0.0.1:0".parse().unwrap());
    config.expected_pow = PowTarget::new(pow).unwrap();
    config.handshake_timeout = Duration::from_millis(500);
    config.workers = 1;
    config.connection =
        ConnectionConfig { incoming_queue_bytes: QUEUE, outgoing_queue_bytes: QUEUE, ..Default::default() };
    let node = TestNode::start(config).await.unwrap();
    let (tx, rx) = mpsc::channel(1000);
    node.subscribe_events(Forward(tx).start().recipient());
    (node, rx)
}

async fn event(rx: &mut mpsc::Receiver<NodeEvent>, pred: impl Fn(&NodeEvent) -> bool) -> NodeEvent {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("event").expect("open");
        if pred(&ev) {
            return ev;
        }
    }
}

fn rejected(reason: &'static str) -> impl Fn(&NodeEvent) -> bool {
    move |e| matches!(e, NodeEvent::Rejected { reason: r, .. } if *r == reason)
}

fn disconnected(reason: &'static str) -> impl Fn(&NodeEvent) -> bool {
    move |e| matches!(e, NodeEvent::Disconnected { reason: r, .. } if *r == reason)
}

/// The node still serves an honest peer (from an address of its own), echoing one message.
async fn honest_peer_gets_in(node: &TestNode, last: u8) {
    let stream = dial(last, node.listen_addr().unwrap()).await;
    let conn: Conn = actor::authenticate(stream, local(Identity::ephemeral()), false, Duration::from_secs(5))
        .await
        .expect("honest handshake")
        .accept(ConnectionConfig::default())
        .await
        .expect("honest accept");
    conn.close(true).await;
}

/// Everything the case created is gone: connection actors and file descriptors.
async fn nothing_left_behind(node: TestNode, fds_before: usize, live_before: usize) {
    node.shutdown().await;
    drop(node);
    for _ in 0..500 {
        if live_connections() <= live_before && open_fds() <= fds_before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "left behind: {} connection actors (was {live_before}), {} fds (was {fds_before})",
        live_connections(),
        open_fds()
    );
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs one hostile case against a fresh node.
macro_rules! hostile {
    ($name:ident, |$node:ident, $events:ident, $addr:ident| $body:block) => {
        #[actix::test]
        async fn $name() {
            // One case at a time: the leak counters are process-wide.
            let _serial = SERIAL.lock().await;
            let (fds, live) = (open_fds(), live_connections());
            let ($node, mut $events) = node().await;
            let $addr = $node.listen_addr().unwrap();
            let _ = &mut $events;
            {
                $body
            }
            honest_peer_gets_in(&$node, 200).await;
            nothing_left_behind($node, fds + 4, live).await;
        }
    };
}

hostile!(garbage_instead_of_a_connection_message_is_a_decoding_error, |node, events, addr| {
    let mut s = dial(1, addr).await;
    s.write_all(b"\x00\x05hello").await.unwrap();
    event(&mut events, rejected("DecodingError")).await;
});

hostile!(a_truncated_connection_message_then_silence_times_out, |node, events, addr| {
    let mut s = dial(2, addr).await;
    s.write_all(&[0x00, 0x67, 1, 2, 3]).await.unwrap();
    event(&mut events, rejected("Timeout")).await;
    drop(s);
});

hostile!(silence_after_the_connection_message_times_out, |node, events, addr| {
    let mut s = dial(3, addr).await;
    let msg = ConnectionMessage {
        port: None,
        public_key: Identity::ephemeral().public_key,
        proof_of_work_stamp: Stamp::random(),
        message_nonce: Nonce::random(),
        version: NetworkVersion::current("TEZOS_MAINNET"),
    };
    s.write_all(&msg.encode().unwrap()).await.unwrap();
    event(&mut events, rejected("Timeout")).await;
});

hostile!(silence_after_the_metadata_times_out, |node, events, addr| {
    // A real handshake up to authentication, then nothing instead of the Ack.
    let s = dial(4, addr).await;
    let auth = hs::authenticate(s, local(Identity::ephemeral()), false, Some(addr), |_| Ok(())).await.unwrap();
    event(&mut events, rejected("Timeout")).await;
    drop(auth);
});

hostile!(an_all_zero_public_key_is_refused_without_panicking, |node, events, addr| {
    let mut s = dial(5, addr).await;
    let msg = ConnectionMessage {
        port: None,
        public_key: PublicKey::from_bytes([0; 32]),
        proof_of_work_stamp: Stamp::random(),
        message_nonce: Nonce::random(),
        version: NetworkVersion::current("TEZOS_MAINNET"),
    };
    s.write_all(&msg.encode().unwrap()).await.unwrap();
    event(&mut events, rejected("LowOrderPublicKey")).await;
});

/// Authenticates and accepts as a raw peer, returning its socket and sealer.
async fn raw_session(last: u8, addr: SocketAddr) -> (TcpStream, tezos_p2p::crypto::Sealer) {
    let s = dial(last, addr).await;
    let (stream, session, _) = hs::authenticate(s, local(Identity::ephemeral()), false, Some(addr), |_| Ok(()))
        .await
        .unwrap()
        .accept()
        .await
        .unwrap();
    (stream, session.sealer)
}

fn sealed(sealer: &mut tezos_p2p::crypto::Sealer, payload: &[u8], size: ChunkSize) -> BytesMut {
    let mut out = BytesMut::new();
    seal_chunks(sealer, payload, size, &mut out);
    out
}

fn encoded(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    RawMessage(Bytes::from(vec![0x5a; len])).encode(&mut out).unwrap();
    out
}

hostile!(a_replayed_chunk_is_a_decipher_error, |node, events, addr| {
    let (mut s, mut sealer) = raw_session(6, addr).await;
    let one = sealed(&mut sealer, &encoded(10), ChunkSize::default());
    s.write_all(&one).await.unwrap();
    s.write_all(&one).await.unwrap();
    event(&mut events, disconnected("DecipherError")).await;
});

hostile!(a_bad_mac_is_a_decipher_error, |node, events, addr| {
    let (mut s, mut sealer) = raw_session(7, addr).await;
    let mut c = sealed(&mut sealer, &encoded(10), ChunkSize::default());
    c[2] ^= 0x80;
    s.write_all(&c).await.unwrap();
    event(&mut events, disconnected("DecipherError")).await;
});

hostile!(a_chunk_length_below_16_is_refused, |node, events, addr| {
    let (mut s, _) = raw_session(8, addr).await;
    s.write_all(&[0x00, 0x0a]).await.unwrap();
    event(&mut events, disconnected("InvalidIncomingCiphertextSize")).await;
});

hostile!(a_chunk_of_65519_plaintext_bytes_is_accepted_as_octez_does, |node, events, addr| {
    // Above what a writer produces (65517), within what a reader must accept (65519).
    let (mut s, mut sealer) = raw_session(9, addr).await;
    let msg = encoded(65_515);
    let mut out = BytesMut::new();
    out.extend_from_slice(&((16 + msg.len()) as u16).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&msg);
    sealer.seal_in_place(&mut out[start..]).unwrap();
    s.write_all(&out).await.unwrap();
    let ev = event(&mut events, |e| matches!(e, NodeEvent::Connected { .. })).await;
    let NodeEvent::Connected { peer_id, .. } = ev else { unreachable!() };
    let conn = node.peer(&peer_id).and_then(|p| p.connection).unwrap();
    assert_eq!(conn.read().await.unwrap().0, 65_519);
});

hostile!(close_in_the_middle_of_a_chunk_is_connection_closed, |node, events, addr| {
    let (mut s, mut sealer) = raw_session(10, addr).await;
    let c = sealed(&mut sealer, &encoded(1000), ChunkSize::default());
    s.write_all(&c[..500]).await.unwrap();
    drop(s);
    event(&mut events, disconnected("ConnectionClosed")).await;
});

hostile!(a_length_prefix_over_the_limit_is_a_decoding_error, |node, events, addr| {
    let (mut s, mut sealer) = raw_session(11, addr).await;
    s.write_all(&sealed(&mut sealer, &[0x7f, 0xff, 0xff, 0xff], ChunkSize::default())).await.unwrap();
    event(&mut events, disconnected("DecodingError")).await;
});

hostile!(a_peer_that_never_reads_backs_up_into_bounded_queues, |node, events, addr| {
    let (s, _sealer) = raw_session(12, addr).await;
    let ev = event(&mut events, |e| matches!(e, NodeEvent::Connected { .. })).await;
    let NodeEvent::Connected { peer_id, .. } = ev else { unreachable!() };
    let conn = node.peer(&peer_id).and_then(|p| p.connection).unwrap();
    // Keep writing until the queue refuses: it never exceeds its byte budget.
    let msg = RawMessage(Bytes::from(vec![1u8; 8192]));
    let mut queued = 0u64;
    loop {
        match conn.write_now(&msg) {
            Ok(true) => queued += 1,
            Ok(false) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(conn.write_queue_bytes() <= QUEUE);
        if queued.is_multiple_of(32) {
            tokio::task::yield_now().await;
        }
        assert!(queued < 1_000_000, "the queue never filled");
    }
    assert!(conn.write_queue_bytes() <= QUEUE);
    drop(s);
});

hostile!(a_peer_flooding_at_line_rate_into_a_slow_consumer_is_held_by_the_read_queue, |node, events, addr| {
    let (mut s, mut sealer) = raw_session(13, addr).await;
    let ev = event(&mut events, |e| matches!(e, NodeEvent::Connected { .. })).await;
    let NodeEvent::Connected { peer_id, .. } = ev else { unreachable!() };
    let conn = node.peer(&peer_id).and_then(|p| p.connection).unwrap();
    // The flood: 128 MiB of valid messages, as fast as the socket takes them.
    let payload = encoded(16_000);
    let flood = tokio::task::spawn_local(async move {
        for _ in 0..8192 {
            let c = sealed(&mut sealer, &payload, ChunkSize::default());
            if s.write_all(&c).await.is_err() {
                break;
            }
        }
    });
    // A slow consumer: the read queue never holds more than its budget, and the flood stalls.
    for _ in 0..50 {
        assert!(conn.read_queue_bytes() <= QUEUE, "{}", conn.read_queue_bytes());
        assert_eq!(conn.read().await.unwrap().0, 16_004);
        tokio::task::yield_now().await;
    }
    assert!(!flood.is_finished(), "128 MiB went through a 256 KiB queue without backpressure");
    flood.abort();
});

#[actix::test]
async fn insufficient_proof_of_work_is_refused_before_key_derivation() {
    let _serial = SERIAL.lock().await;
    let (fds, live) = (open_fds(), live_connections());
    let (node, mut events) = node_with_pow(16.0).await;
    let addr = node.listen_addr().unwrap();
    let weak = loop {
        let id = Identity::ephemeral();
        if id.pow_level() < 16 {
            break id;
        }
    };
    let s = dial(14, addr).await;
    let r = hs::authenticate(s, local(weak), false, Some(addr), |_| Ok(())).await;
    assert!(r.is_err());
    event(&mut events, rejected("NotEnoughProofOfWork")).await;
    // An honest peer with enough proof of work still gets in.
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let opts = tezos_p2p::pow::GenerateOptions {
        threads: 1,
        cancel: &cancel,
        progress: &|_| {},
        progress_interval: Duration::from_millis(20),
    };
    let strong = Identity::generate(&PowTarget::new(16.0).unwrap(), &opts).unwrap();
    let stream = dial(201, addr).await;
    let conn: Conn = actor::authenticate(stream, local(strong), false, Duration::from_secs(5))
        .await
        .unwrap()
        .accept(ConnectionConfig::default())
        .await
        .unwrap();
    conn.close(true).await;
    nothing_left_behind(node, fds + 4, live).await;
}
