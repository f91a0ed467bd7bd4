//! Hostile load at the node (beyond one misbehaving connection, `tests/hostile.rs`): a flood of
//! sockets from one address, application code that panics, dropped handles, and abuse of the
//! P2P layer (Bootstrap spam, Advertise floods, Swap spam, Disconnect loops). Each case checks
//! its typed outcome, that an honest peer is still served, that memory stays bounded, and that
//! no connection actor or file descriptor is left behind.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use common::{dial, local_config as local, open_fds, Forward};
use tezos_p2p::actor::{
    self, live_connections, CloseReason, Connection, ConnectionConfig, Node, NodeConfig, NodeEvent,
};
use tezos_p2p::crypto::PeerId;
use tezos_p2p::identity::Identity;
use tezos_p2p::maintenance::MaintenanceConfig;
use tezos_p2p::message::db::OctezMessage;
use tezos_p2p::message::{Encoding, P2pMessage, RawMessage};
use tezos_p2p::peers::ConnectionLimits;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, DecodeError, EncodeError};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(60);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Leak counters are process-wide: one case at a time, each checking against its start.
struct Case {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    fds: usize,
    live: usize,
}

async fn case() -> Case {
    let serial = SERIAL.lock().await;
    Case { _serial: serial, fds: open_fds(), live: live_connections() }
}

impl Case {
    /// Shuts the nodes down and waits for every connection actor and descriptor to be gone.
    async fn nothing_left_behind<E: Encoding>(self, nodes: Vec<Node<E, ConnectionMetadata>>) {
        for n in &nodes {
            n.shutdown().await;
        }
        drop(nodes);
        for _ in 0..1000 {
            if live_connections() <= self.live && open_fds() <= self.fds + 8 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "left behind: {} connection actors (was {}), {} fds (was {})",
            live_connections(),
            self.live,
            open_fds(),
            self.fds
        );
    }
}

async fn node<E: Encoding>(ip: u8, f: impl FnOnce(&mut NodeConfig<ConnectionMetadata>)) -> Node<E, ConnectionMetadata> {
    let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
    config.listen_addr = Some(SocketAddr::from(([127, 0, 0, ip], 0)));
    config.expected_pow = PowTarget::new(0.0).unwrap();
    config.workers = 1;
    f(&mut config);
    Node::start(config).await.unwrap()
}

fn events<E: Encoding>(n: &Node<E, ConnectionMetadata>) -> mpsc::Receiver<NodeEvent> {
    let (tx, rx) = mpsc::channel(10_000);
    n.subscribe_events(Forward(tx).start().recipient());
    rx
}

async fn next_event(rx: &mut mpsc::Receiver<NodeEvent>, pred: impl Fn(&NodeEvent) -> bool) -> NodeEvent {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let ev = rx.recv().await.expect("events");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("the event in time")
}

/// A plain connection (no node: it sees every message) from `from` to `to`.
async fn client<E: Encoding>(
    from: [u8; 4],
    to: SocketAddr,
    id: Identity,
    port: Option<u16>,
) -> Connection<E, ConnectionMetadata> {
    let s = dial(from, to).await;
    actor::authenticate(s, local(id, port), false, DEADLINE)
        .await
        .unwrap()
        .accept(ConnectionConfig::default())
        .await
        .unwrap()
}

/// An honest peer from its own address gets in and exchanges a message.
async fn honest_peer_is_served<E: Encoding>(n: &Node<E, ConnectionMetadata>, from: [u8; 4]) {
    let c: Connection<RawMessage, ConnectionMetadata> = {
        let s = dial(from, n.listen_addr().unwrap()).await;
        actor::authenticate(s, local(Identity::ephemeral(), None), false, DEADLINE)
            .await
            .expect("honest handshake")
            .accept(ConnectionConfig::default())
            .await
            .expect("honest accept")
    };
    c.close(true).await;
}

#[actix::test]
async fn five_thousand_sockets_from_one_address_keep_nobody_else_out() {
    let _ = rlimit::increase_nofile_limit(20_000);
    let case = case().await;
    let n: Node<RawMessage, _> = node(1, |_| {}).await;
    let mut ev = events(&n);
    let addr = n.listen_addr().unwrap();
    let mut flood = Vec::new();
    for _ in 0..5000 {
        flood.push(dial([127, 0, 4, 1], addr).await);
    }
    let refused =
        next_event(&mut ev, |e| matches!(e, NodeEvent::Rejected { reason: "TooManyPendingFromAddress", .. })).await;
    assert!(matches!(refused, NodeEvent::Rejected { .. }));
    // At most 4 of the flood's sockets hold a handshake slot.
    assert!(n.pending_handshakes() <= 4, "{}", n.pending_handshakes());
    honest_peer_is_served(&n, [127, 0, 0, 9]).await;
    drop(flood);
    case.nothing_left_behind(vec![n]).await;
}

#[actix::test]
async fn connections_per_address_are_capped() {
    let case = case().await;
    let n: Node<RawMessage, _> = node(2, |c| c.admission.max_connections_per_ip = 2).await;
    let addr = n.listen_addr().unwrap();
    let a: Connection<RawMessage, _> = client([127, 0, 4, 2], addr, Identity::ephemeral(), None).await;
    let b: Connection<RawMessage, _> = client([127, 0, 4, 2], addr, Identity::ephemeral(), None).await;
    // The third from the same address is closed before its handshake.
    let s = dial([127, 0, 4, 2], addr).await;
    let third = actor::authenticate(s, local(Identity::ephemeral(), None), false, DEADLINE).await;
    assert!(third.is_err());
    honest_peer_is_served(&n, [127, 0, 4, 3]).await;
    drop((a, b));
    case.nothing_left_behind(vec![n]).await;
}

/// Handshakes from one address that were already running when the cap was reached: each is
/// counted again as it becomes a connection, so only the cap's worth get in.
#[actix::test]
async fn handshakes_running_at_once_from_one_address_stay_within_the_cap() {
    let case = case().await;
    let n: Node<RawMessage, _> = node(5, |c| c.admission.max_connections_per_ip = 1).await;
    let addr = n.listen_addr().unwrap();
    // Both sockets are open (admitted to a handshake each) before either handshake starts.
    let sockets = [dial([127, 0, 4, 5], addr).await, dial([127, 0, 4, 5], addr).await];
    let attempts = sockets.map(|s| {
        actix::spawn(async move {
            match actor::authenticate(s, local(Identity::ephemeral(), None), false, DEADLINE).await {
                Ok(auth) => auth.accept::<RawMessage>(ConnectionConfig::default()).await.ok(),
                Err(_) => None,
            }
        })
    });
    let mut established = Vec::new();
    for a in attempts {
        established.extend(tokio::time::timeout(DEADLINE, a).await.unwrap().unwrap());
    }
    assert_eq!(established.len(), 1, "{} connections from one address, cap 1", established.len());
    // The node lists a connection once the client's Ack has arrived, a moment after the client
    // returns: wait for it, then it must be the only one.
    for _ in 0..1000 {
        if !n.connections().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(n.connections().len(), 1);
    honest_peer_is_served(&n, [127, 0, 4, 6]).await;
    drop(established);
    case.nothing_left_behind(vec![n]).await;
}

/// A message type whose code panics on a marker byte: decoding a message starting with 0xEE,
/// encoding one starting with 0xEF.
#[derive(Debug, Clone, PartialEq)]
struct Bomb(Bytes);

impl Encoding for Bomb {
    const MAX_SIZE: usize = 1 << 20;

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        assert!(self.0.first() != Some(&0xef), "boom (encode)");
        RawMessage(self.0.clone()).encode(out)
    }

    fn frame_size(prefix: &[u8]) -> Result<Option<usize>, DecodeError> {
        RawMessage::frame_size(prefix)
    }

    fn decode(frame: Bytes) -> Result<Self, DecodeError> {
        let m = RawMessage::decode(frame)?;
        assert!(m.0.first() != Some(&0xee), "boom (decode)");
        Ok(Self(m.0))
    }
}

#[actix::test]
async fn a_panicking_encoding_closes_only_its_connection() {
    let case = case().await;
    // One worker arbiter: every connection shares its thread, which must survive.
    let n: Node<Bomb, _> = node(3, |_| {}).await;
    let mut ev = events(&n);
    let addr = n.listen_addr().unwrap();
    let mut peers: Vec<Connection<Bomb, ConnectionMetadata>> = Vec::new();
    let mut ids: Vec<PeerId> = Vec::new();
    for i in 0..3u8 {
        let id = Identity::ephemeral();
        ids.push(id.peer_id);
        peers.push(client([127, 0, 4, 10 + i], addr, id, None).await);
    }
    for id in &ids {
        for _ in 0..1000 {
            if n.peer(id).and_then(|p| p.connection).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // A decode that panics closes that connection with a reason that says so, and where.
    let first = n.peer(&ids[0]).and_then(|p| p.connection).unwrap();
    peers[0].write(&Bomb(Bytes::from_static(&[0xee, 1]))).await.unwrap();
    let closed =
        next_event(&mut ev, |e| matches!(e, NodeEvent::Disconnected { peer_id, .. } if *peer_id == ids[0])).await;
    assert!(matches!(closed, NodeEvent::Disconnected { reason: "Panic", .. }), "{closed:?}");
    assert!(
        matches!(first.close_reason(), Some(CloseReason::Panic { context })
            if context.starts_with("decode") && context.contains("boom (decode)")),
        "{:?}",
        first.close_reason()
    );
    drop(first);
    // The others still work both ways.
    peers[1].write(&Bomb(Bytes::from_static(b"still here"))).await.unwrap();
    let server_side = n.peer(&ids[1]).and_then(|p| p.connection).unwrap();
    assert_eq!(
        tokio::time::timeout(DEADLINE, server_side.read()).await.unwrap().unwrap().1,
        Bomb(Bytes::from_static(b"still here"))
    );
    // An encode that panics fails that write and closes that connection only.
    let third = n.peer(&ids[2]).and_then(|p| p.connection).unwrap();
    assert!(third.write(&Bomb(Bytes::from_static(&[0xef]))).await.is_err());
    assert!(matches!(third.close_reason(), Some(CloseReason::Panic { .. })), "{:?}", third.close_reason());
    server_side.write(&Bomb(Bytes::from_static(b"ok"))).await.unwrap();
    assert_eq!(
        tokio::time::timeout(DEADLINE, peers[1].read()).await.unwrap().unwrap().1,
        Bomb(Bytes::from_static(b"ok"))
    );
    honest_peer_is_served(&n, [127, 0, 4, 20]).await;
    drop(peers);
    case.nothing_left_behind(vec![n]).await;
}

#[actix::test]
async fn dropping_the_last_handle_flushes_then_closes() {
    let case = case().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = actix::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let c: Connection<RawMessage, ConnectionMetadata> =
            actor::authenticate(s, local(Identity::ephemeral(), None), true, DEADLINE)
                .await
                .unwrap()
                .accept(ConnectionConfig::default())
                .await
                .unwrap();
        let mut got = Vec::new();
        while let Ok((_, m)) = c.read().await {
            got.push(m);
        }
        (got, c.close_reason())
    });
    let c: Connection<RawMessage, ConnectionMetadata> =
        client([127, 0, 4, 30], addr, Identity::ephemeral(), None).await;
    let msgs: Vec<RawMessage> = (0..3u8).map(|i| RawMessage(Bytes::from(vec![i; 100_000]))).collect();
    for m in &msgs {
        assert!(c.write_now(m).unwrap());
    }
    // The last handle goes with three messages still queued.
    drop(c);
    let (got, reason) = tokio::time::timeout(DEADLINE, server).await.unwrap().unwrap();
    assert_eq!(got, msgs, "everything queued was written before the FIN");
    assert_eq!(reason, Some(CloseReason::ConnectionClosed));
    // A node's connection is the node's: dropping a handle the node gave out closes nothing.
    let n: Node<RawMessage, _> = node(4, |_| {}).await;
    let held: Connection<RawMessage, _> =
        client([127, 0, 4, 31], n.listen_addr().unwrap(), Identity::ephemeral(), None).await;
    for _ in 0..100 {
        if !n.connections().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(n.connections());
    held.write(&RawMessage(Bytes::from_static(b"still open"))).await.unwrap();
    let side = n.connections().pop().expect("the node keeps its connection");
    assert_eq!(
        tokio::time::timeout(DEADLINE, side.read()).await.unwrap().unwrap().1,
        RawMessage(Bytes::from_static(b"still open"))
    );
    drop((held, side));
    case.nothing_left_behind(vec![n]).await;
}

type Octez = Connection<OctezMessage, ConnectionMetadata>;

/// `--connections 10`: the node wants at least 6 connections, so with two it keeps dialling
/// whatever it learns.
fn limits() -> ConnectionLimits {
    ConnectionLimits::from_connections(10)
}

/// A node speaking the P2P layer, with a public peer (whose point it can advertise or offer).
async fn overlay_node(ip: u8) -> (Node<OctezMessage, ConnectionMetadata>, Node<OctezMessage, ConnectionMetadata>) {
    let n = node(ip, |c| {
        c.limits = limits();
        c.maintenance = Some(MaintenanceConfig::default());
    })
    .await;
    let public: Node<OctezMessage, _> = node(ip + 1, |_| {}).await;
    public.connect(n.listen_addr().unwrap()).await.unwrap();
    (n, public)
}

#[actix::test]
async fn bootstrap_spam_is_answered_at_a_bounded_rate() {
    let case = case().await;
    let (n, public) = overlay_node(40).await;
    let attacker: Octez = client([127, 0, 4, 40], n.listen_addr().unwrap(), Identity::ephemeral(), None).await;
    let start = Instant::now();
    for _ in 0..200 {
        attacker.write(&P2pMessage::Bootstrap).await.unwrap();
    }
    let mut advertises = 0;
    while start.elapsed() < Duration::from_secs(1) {
        match tokio::time::timeout(Duration::from_millis(50), attacker.read()).await {
            Ok(Ok((_, P2pMessage::Advertise(_)))) => advertises += 1,
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("{e}"),
        }
    }
    // One answer per 100 ms at most (the first at once), whatever was asked.
    let bound = 2 + start.elapsed().as_millis() as usize / 100;
    assert!(advertises >= 1 && advertises <= bound, "{advertises} Advertise in {:?}", start.elapsed());
    honest_peer_is_served(&n, [127, 0, 4, 41]).await;
    drop(attacker);
    case.nothing_left_behind(vec![n, public]).await;
}

#[actix::test]
async fn advertise_floods_stay_within_the_table_and_the_dial_budget() {
    let case = case().await;
    let (n, public) = overlay_node(50).await;
    let mut ev = events(&n);
    let trusted: SocketAddr = "127.0.0.52:9732".parse().unwrap();
    n.set_point_trusted(trusted, true);
    let attacker: Octez = client([127, 0, 4, 50], n.listen_addr().unwrap(), Identity::ephemeral(), None).await;
    let start = Instant::now();
    // 5,000 attacker-chosen points (refused at once when dialled: the fastest a dial can fail).
    for batch in 0..50u16 {
        let points: Vec<SocketAddr> =
            (0..100u16).map(|i| SocketAddr::from(([127, 0, 9, (batch % 250) as u8], 1000 + batch * 100 + i))).collect();
        attacker.write(&P2pMessage::Advertise(points)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let elapsed = start.elapsed();
    let known = n.points().len();
    let max = limits().max_known_points.0;
    assert!(known <= max, "{known} known points, bound {max}");
    assert!(n.point(&trusted).is_some_and(|p| p.trusted), "a flood never evicts a trusted point");
    // Dials: at most the budget (max_target now, as much again every 5 s).
    let mut dials = 0;
    while let Ok(e) = ev.try_recv() {
        if matches!(e, NodeEvent::Dialing { .. }) {
            dials += 1;
        }
    }
    let budget = limits().bounds().max_target;
    let bound = budget + budget * (elapsed.as_secs() as usize + 1) / 5 + budget;
    assert!(dials > 0, "the node dials what it learns");
    assert!(dials <= bound, "{dials} dials in {elapsed:?}, bound {bound}");
    honest_peer_is_served(&n, [127, 0, 4, 51]).await;
    drop(attacker);
    case.nothing_left_behind(vec![n, public]).await;
}

#[actix::test]
async fn swap_request_spam_is_acted_on_once() {
    let case = case().await;
    let (n, public) = overlay_node(60).await;
    // Two connections of the attacker's: one connection's spam is held by its own throttle
    // (60 s between swap messages), the other's by the node-wide linger (30 s after a swap).
    let mut attackers: Vec<Octez> = Vec::new();
    for ip in [60, 62] {
        attackers.push(client([127, 0, 4, ip], n.listen_addr().unwrap(), Identity::ephemeral(), None).await);
    }
    for (a, attacker) in attackers.iter().enumerate() {
        for i in 0..10u16 {
            let point = SocketAddr::from(([127, 0, 9, 60 + a as u8], 2000 + i));
            attacker
                .write(&P2pMessage::SwapRequest { point, peer_id: PeerId::from_bytes([i as u8; 16]) })
                .await
                .unwrap();
        }
    }
    let mut acks = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        for attacker in &attackers {
            if let Ok(Ok((_, P2pMessage::SwapAck { .. }))) =
                tokio::time::timeout(Duration::from_millis(25), attacker.read()).await
            {
                acks += 1;
            }
        }
    }
    // The first is considered; the next one of that connection waits 60 s, and a swap lingers
    // 30 s node-wide, so the other connection's requests are ignored.
    assert!(acks <= 1, "{acks} Swap_ack");
    honest_peer_is_served(&n, [127, 0, 4, 61]).await;
    drop(attackers);
    case.nothing_left_behind(vec![n, public]).await;
}

#[actix::test]
async fn a_disconnect_reconnect_loop_is_greylisted_after_five() {
    let case = case().await;
    let n: Node<OctezMessage, _> = node(70, |_| {}).await;
    let mut ev = events(&n);
    let addr = n.listen_addr().unwrap();
    let me = Identity::ephemeral();
    for round in 0..5 {
        let c: Octez = client([127, 0, 4, 70], addr, me.clone(), None).await;
        c.write(&P2pMessage::Disconnect).await.unwrap();
        let e = next_event(&mut ev, |e| matches!(e, NodeEvent::Disconnected { .. })).await;
        assert!(matches!(e, NodeEvent::Disconnected { reason: "Disconnect", .. }), "round {round}: {e:?}");
        tokio::time::timeout(DEADLINE, c.closed()).await.unwrap();
    }
    // The sixth time, the address is refused before any handshake work.
    let s = dial([127, 0, 4, 70], addr).await;
    assert!(actor::authenticate(s, local(me, None), false, DEADLINE).await.is_err());
    next_event(&mut ev, |e| matches!(e, NodeEvent::Rejected { reason: "Greylisted", .. })).await;
    honest_peer_is_served(&n, [127, 0, 4, 71]).await;
    case.nothing_left_behind(vec![n]).await;
}
