//! `Node`: registry, ACL and limits over real loopback sockets. Each peer that may be greylisted
//! gets its own source address (all of 127.0.0.0/8 is loopback).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
mod common;

use common::{dial, send_tampered_chunk, Forward};
use tezos_p2p::actor::{self, Connection, ConnectionConfig, Inbound, Node, NodeConfig, NodeEvent};
use tezos_p2p::handshake::{AuthError, LocalConfig};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, NackMotive, NetworkVersion};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

type Conn = Connection<RawMessage, ConnectionMetadata>;
type TestNode = Node<RawMessage, ConnectionMetadata>;

const T: Duration = Duration::from_secs(10);

fn local(id: &Identity, port: Option<u16>) -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(id.clone()),
        advertised_port: port,
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: PowTarget::new(0.0).unwrap(),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    })
}

async fn node_with(f: impl FnOnce(&mut NodeConfig<ConnectionMetadata>)) -> (TestNode, mpsc::Receiver<NodeEvent>) {
    let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
    config.listen_addr = Some("127.0.0.1:0".parse().unwrap());
    config.expected_pow = PowTarget::new(0.0).unwrap();
    config.workers = 2;
    f(&mut config);
    let node = TestNode::start(config).await.unwrap();
    let (tx, rx) = mpsc::channel(10_000);
    node.subscribe_events(Forward(tx).start().recipient());
    (node, rx)
}

/// A well-behaved client from `from`, as an accepted connection.
async fn client(from: [u8; 4], to: SocketAddr, id: &Identity, port: Option<u16>) -> Result<Conn, AuthError> {
    let stream = dial(from, to).await;
    actor::authenticate(stream, local(id, port), false, T)
        .await?
        .accept::<RawMessage>(ConnectionConfig::default())
        .await
}

async fn next_matching(rx: &mut mpsc::Receiver<NodeEvent>, mut f: impl FnMut(&NodeEvent) -> bool) -> NodeEvent {
    loop {
        let ev = tokio::time::timeout(T, rx.recv()).await.expect("event in time").expect("events open");
        if f(&ev) {
            return ev;
        }
    }
}

#[actix::test]
async fn a_tampered_chunk_greylists_the_peer_which_is_refused_at_accept_until_expiry() {
    let (node, mut events) = node_with(|c| c.acl.greylist_timeout = Duration::from_millis(300)).await;
    let addr = node.listen_addr().unwrap();
    // The misbehaving peer runs the pure handshake, then sends a chunk with a flipped bit.
    let _peer = send_tampered_chunk([127, 0, 0, 3], addr, local(&Identity::ephemeral(), None)).await;
    let ev = next_matching(&mut events, |e| matches!(e, NodeEvent::Disconnected { .. })).await;
    assert!(matches!(ev, NodeEvent::Disconnected { reason: "DecipherError", .. }), "{ev:?}");

    // Refused at accept: the node closes without sending a single byte (no handshake crypto).
    let mut again = dial([127, 0, 0, 3], addr).await;
    let mut buf = [0u8; 16];
    assert_eq!(again.read(&mut buf).await.unwrap(), 0);
    let ev = next_matching(&mut events, |e| matches!(e, NodeEvent::Rejected { .. })).await;
    assert!(matches!(ev, NodeEvent::Rejected { reason: "Greylisted", peer_id: None, .. }), "{ev:?}");
    // Another address is served meanwhile.
    assert!(client([127, 0, 0, 4], addr, &Identity::ephemeral(), None).await.is_ok());
    // Once the entry expires the address gets in again.
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(tries < 200, "still refused");
        if client([127, 0, 0, 3], addr, &Identity::ephemeral(), None).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix::test]
async fn beyond_max_connections_a_peer_gets_too_many_connections_with_known_points() {
    let (node, mut events) = node_with(|c| c.limits.max_connections = 1).await;
    let addr = node.listen_addr().unwrap();
    let first = client([127, 0, 0, 1], addr, &Identity::ephemeral(), Some(4242)).await.unwrap();
    // The client is done once it has sent its Ack; the node records the connection (and so
    // learns the announced point as public) when that Ack arrives, a moment later.
    next_matching(&mut events, |e| matches!(e, NodeEvent::Connected { .. })).await;
    let second = client([127, 0, 0, 1], addr, &Identity::ephemeral(), None).await;
    match second {
        Err(AuthError::RejectedByNack { motive: NackMotive::TooManyConnections, alternative_points: Some(points) }) => {
            assert!(points.contains(&"127.0.0.1:4242".parse().unwrap()), "{points:?}");
        }
        other => panic!("{other:?}"),
    }
    // After the first leaves, there is room again.
    first.close(true).await;
    let mut tries = 0;
    while client([127, 0, 0, 1], addr, &Identity::ephemeral(), None).await.is_err() {
        tries += 1;
        assert!(tries < 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix::test]
async fn the_builder_starts_a_node_that_dials_another() {
    let a: TestNode = Node::builder(Identity::ephemeral(), ConnectionMetadata::default())
        .listen("127.0.0.1:0".parse().unwrap())
        .expected_pow(0.0)
        .unwrap()
        .start()
        .await
        .unwrap();
    let b: TestNode = Node::builder(Identity::ephemeral(), ConnectionMetadata::default())
        .expected_pow(0.0)
        .unwrap()
        .start()
        .await
        .unwrap();
    let conn = b.connect(a.listen_addr().unwrap()).await.unwrap();
    assert_eq!(conn.info().peer_id, a.peer_id());
    // The dialled side advertises its listening port; the dialled point becomes known.
    assert_eq!(conn.info().announced_port, a.listen_addr().map(|x| x.port()));
    assert_eq!(b.peer(&a.peer_id()).unwrap().entry.point, a.listen_addr());
}

#[actix::test]
async fn a_second_connection_of_a_connected_peer_is_refused() {
    let (node, mut events) = node_with(|_| {}).await;
    let addr = node.listen_addr().unwrap();
    let me = Identity::ephemeral();
    let _first = client([127, 0, 0, 1], addr, &me, None).await.unwrap();
    // The node lists the connection once the client's Ack has arrived (see above).
    next_matching(&mut events, |e| matches!(e, NodeEvent::Connected { .. })).await;
    let second = client([127, 0, 0, 1], addr, &me, None).await;
    assert_eq!(
        second.err(),
        Some(AuthError::RejectedByNack { motive: NackMotive::AlreadyConnected, alternative_points: Some(vec![]) })
    );
    assert_eq!(node.connections().len(), 1);
    assert!(node.peer(&me.peer_id).unwrap().connection.is_some());
}

#[actix::test]
async fn connecting_to_ourselves_is_reported_and_greylists_nobody() {
    let (node, _events) = node_with(|_| {}).await;
    let addr = node.listen_addr().unwrap();
    assert!(matches!(node.connect(addr).await, Err(AuthError::Myself { .. })));
    assert!(client([127, 0, 0, 1], addr, &Identity::ephemeral(), None).await.is_ok());
    assert_eq!(node.registry().table().greylist_sizes(), (0, 0));
}

#[actix::test]
async fn a_banned_peer_id_is_refused_right_after_its_connection_message() {
    let (node, mut events) = node_with(|_| {}).await;
    let addr = node.listen_addr().unwrap();
    let bad = Identity::ephemeral();
    node.ban_peer(bad.peer_id);
    let r = client([127, 0, 0, 5], addr, &bad, None).await;
    assert_eq!(r.err(), Some(AuthError::ConnectionClosed));
    let ev = next_matching(&mut events, |e| matches!(e, NodeEvent::Rejected { .. })).await;
    assert!(matches!(ev, NodeEvent::Rejected { reason: "PeerBanned", .. }), "{ev:?}");
}

#[actix::test]
async fn a_flood_of_silent_sockets_does_not_keep_a_real_peer_out() {
    let (node, _events) = node_with(|c| c.limits.max_pending_incoming = 20).await;
    let addr = node.listen_addr().unwrap();
    let mut silent = Vec::new();
    for i in 0..1000u32 {
        silent.push(dial([127, 0, 1 + (i / 250) as u8, (i % 250) as u8 + 1], addr).await);
    }
    let real = client([127, 0, 0, 1], addr, &Identity::ephemeral(), None).await;
    assert!(real.is_ok(), "{:?}", real.err());
    assert!(node.pending_handshakes() <= 20);
    drop(silent);
}

struct Collect(mpsc::Sender<(u64, Bytes)>);

impl Actor for Collect {
    type Context = Context<Self>;
}

impl Handler<Inbound<RawMessage>> for Collect {
    type Result = ();

    fn handle(&mut self, m: Inbound<RawMessage>, _: &mut Self::Context) {
        let _ = self.0.try_send((m.connection, m.message.0));
    }
}

#[actix::test]
async fn broadcast_and_subscriptions_cover_every_connection_then_shutdown_closes_them() {
    let (node, _events) = node_with(|_| {}).await;
    let addr = node.listen_addr().unwrap();
    let (tx, mut rx) = mpsc::channel(100);
    node.subscribe(Collect(tx).start().recipient());
    let mut clients = Vec::new();
    for i in 0..3u8 {
        clients.push(client([127, 0, 0, 10 + i], addr, &Identity::ephemeral(), None).await.unwrap());
    }
    let mut tries = 0;
    while node.connections().len() < 3 {
        tries += 1;
        assert!(tries < 500);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, c) in clients.iter().enumerate() {
        c.write(&RawMessage(Bytes::from(vec![i as u8; 3]))).await.unwrap();
    }
    let mut got: Vec<Bytes> = Vec::new();
    for _ in 0..3 {
        got.push(tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap().1);
    }
    got.sort();
    assert_eq!(got, (0..3u8).map(|i| Bytes::from(vec![i; 3])).collect::<Vec<_>>());
    assert_eq!(node.broadcast(&RawMessage(Bytes::from_static(b"all"))), 3);
    for c in &clients {
        assert_eq!(c.read().await.unwrap().1, RawMessage(Bytes::from_static(b"all")));
    }
    node.shutdown().await;
    for c in &clients {
        assert!(c.read().await.is_err());
    }
}
