//! Cross-backend interoperability over loopback: one peer computes its crypto with each backend
//! compiled into this build (`CryptoBackend::ALL`). With `--features sodium` that is libsodium
//! against pure Rust in both roles; without it, the pure-Rust backend against itself.

#[path = "../src/bin/cli/benchkit.rs"]
mod benchkit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
mod common;

use tezos_p2p::actor::{self, Connection, ConnectionConfig, Inbound, Node, NodeConfig, NodeEvent};
use tezos_p2p::crypto::CryptoBackend;
use tezos_p2p::handshake::{AuthError, LocalConfig};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, NackMotive, NetworkVersion};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Conn = Connection<RawMessage, ConnectionMetadata>;

const T: Duration = Duration::from_secs(10);

fn local(backend: CryptoBackend) -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(Identity::ephemeral()),
        advertised_port: Some(9732),
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata { disable_mempool: true, private_node: false },
        expected_pow: PowTarget::new(0.0).unwrap(),
        crypto_backend: backend,
    })
}

/// Every (dialer, listener) pair of backends; with several backends, the mixed pairs included.
fn pairs() -> Vec<(CryptoBackend, CryptoBackend)> {
    let all = CryptoBackend::ALL;
    let pairs: Vec<_> = all.iter().flat_map(|&a| all.iter().map(move |&b| (a, b))).collect();
    if cfg!(feature = "sodium") {
        assert!(pairs.iter().any(|(a, b)| a != b), "the sodium build must test mixed pairs");
    }
    pairs
}

/// Authenticates a dialer on `a` with a listener on `b` over loopback.
async fn authenticated(
    a: CryptoBackend,
    b: CryptoBackend,
) -> (actor::Authenticated<ConnectionMetadata>, actor::Authenticated<ConnectionMetadata>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async move {
        let (s, _) = listener.accept().await.unwrap();
        actor::authenticate(s, local(b), true, T).await
    };
    let (ra, rb) = tokio::join!(actor::connect(addr, local(a), T), server);
    (ra.unwrap_or_else(|e| panic!("{a} dialer: {e}")), rb.unwrap_or_else(|e| panic!("{b} listener: {e}")))
}

fn raw(len: usize, seed: u8) -> RawMessage {
    RawMessage(Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed)).collect::<Vec<_>>()))
}

#[actix::test]
async fn every_backend_pair_carries_messages_of_edge_sizes_both_ways() {
    for (a, b) in pairs() {
        let (da, lb) = authenticated(a, b).await;
        let (ca, cb): (Result<Conn, _>, Result<Conn, _>) = tokio::join!(
            da.accept::<RawMessage>(ConnectionConfig::default()),
            lb.accept::<RawMessage>(ConnectionConfig::default())
        );
        let (ca, cb) = (ca.unwrap(), cb.unwrap());
        // Each end really computes with the backend its configuration chose.
        assert_eq!((ca.crypto_backend(), cb.crypto_backend()), (a, b));
        assert!(ca.remote_metadata().disable_mempool, "{a}→{b}: metadata crossed the backends");
        // Sizes around the chunk boundaries (65517/65518 with the 4-byte prefix) and a message
        // of many chunks: every chunk is sealed by one backend and opened by the other.
        for (n, len) in [0usize, 1, 19, 4096, 65_517, 65_518, 1 << 20].into_iter().enumerate() {
            let (to_b, to_a) = (raw(len, n as u8), raw(len, 100 + n as u8));
            ca.write(&to_b).await.unwrap();
            cb.write(&to_a).await.unwrap();
            assert_eq!(cb.read().await.unwrap(), (len + 4, to_b), "{a}→{b}, {len} bytes");
            assert_eq!(ca.read().await.unwrap(), (len + 4, to_a), "{b}→{a}, {len} bytes");
        }
        ca.close(true).await;
        assert!(cb.read().await.is_err(), "{a}→{b}: close reached the peer");
    }
}

/// The sans-IO handshake: each side's session keys come from its configured backend, and the
/// two sessions agree chunk for chunk.
#[test]
fn the_handshake_derives_keys_with_the_configured_backend() {
    for (a, b) in pairs() {
        let (mut sa, mut sb) = benchkit::establish(local(a), local(b)).expect("handshake completes");
        assert_eq!((sa.sealer.backend(), sa.opener.backend()), (a, a));
        assert_eq!((sb.sealer.backend(), sb.opener.backend()), (b, b));
        for len in [0usize, 1, 1000, 65_519] {
            let mut chunk = vec![7u8; 16 + len];
            sa.sealer.seal_in_place(&mut chunk).unwrap();
            sb.opener.open_in_place(&mut chunk).unwrap();
            assert!(chunk[16..].iter().all(|&x| x == 7), "{a}→{b} {len}");
            sb.sealer.seal_in_place(&mut chunk).unwrap();
            sa.opener.open_in_place(&mut chunk).unwrap();
        }
    }
}

#[actix::test]
async fn a_nack_sealed_by_one_backend_opens_with_the_other() {
    let points: Vec<SocketAddr> = (0..100).map(|i| format!("10.2.0.{i}:9732").parse().unwrap()).collect();
    for (a, b) in pairs() {
        let (da, lb) = authenticated(a, b).await;
        let (ra, rb) = tokio::join!(
            da.accept::<RawMessage>(ConnectionConfig::default()),
            lb.nack(NackMotive::TooManyConnections, points.clone())
        );
        rb.unwrap();
        assert_eq!(
            ra.err(),
            Some(AuthError::RejectedByNack {
                motive: NackMotive::TooManyConnections,
                alternative_points: Some(points.clone())
            }),
            "{a}→{b}"
        );
    }
}

/// Forwards each inbound message to a channel.
struct Sink(mpsc::Sender<Bytes>);

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<Inbound<RawMessage>> for Sink {
    type Result = ();

    fn handle(&mut self, msg: Inbound<RawMessage>, _: &mut Context<Self>) {
        let _ = self.0.try_send(msg.message.0);
    }
}

#[actix::test]
async fn nodes_on_different_backends_talk() {
    let start = |backend: CryptoBackend| async move {
        let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
        config.listen_addr = Some("127.0.0.1:0".parse().unwrap());
        config.expected_pow = PowTarget::new(0.0).unwrap();
        config.workers = 1;
        config.crypto_backend = backend;
        Node::<RawMessage, ConnectionMetadata>::start(config).await.unwrap()
    };
    let backends = CryptoBackend::ALL;
    let (first, last) = (backends[0], backends[backends.len() - 1]);
    let (n1, n2) = (start(first).await, start(last).await);
    let (tx, mut rx) = mpsc::channel(16);
    // Every inbound message of the listening node, from connections to come.
    n2.subscribe(Sink(tx).start().recipient());
    let (events_tx, mut events) = mpsc::channel(16);
    n2.subscribe_events(common::Forward(events_tx).start().recipient());
    let conn = n1.connect(n2.listen_addr().unwrap()).await.unwrap();
    // Sent once the listening node has registered (and so subscribed) its side: a message
    // arriving earlier would wait in that connection's read queue instead.
    loop {
        let ev = tokio::time::timeout(T, events.recv()).await.expect("event in time").expect("events open");
        if matches!(ev, NodeEvent::Connected { .. }) {
            break;
        }
    }
    let msg = raw(200_000, 9);
    conn.write(&msg).await.unwrap();
    let got = tokio::time::timeout(T, rx.recv()).await.expect("in time").expect("open");
    assert_eq!(got, msg.0, "{first} node → {last} node");
    assert_eq!(conn.crypto_backend(), first);
    let theirs = n2.connections();
    assert_eq!(theirs.iter().map(|c| c.crypto_backend()).collect::<Vec<_>>(), vec![last]);
    n1.shutdown().await;
    n2.shutdown().await;
}

/// The `tezos-p2p` binary of another build (`TEZOS_P2P_OTHER_BIN`; `.ci/run` keeps the default
/// build's binary and runs this with `--features sodium`): peers *built* on different backends.
fn other_build() -> std::path::PathBuf {
    std::env::var_os("TEZOS_P2P_OTHER_BIN")
        .map(std::path::PathBuf::from)
        .expect("TEZOS_P2P_OTHER_BIN must name a tezos-p2p binary of another build")
}

/// The backend a binary reports in `--version`.
fn backend_of(bin: &std::path::Path) -> String {
    let out = std::process::Command::new(bin).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("crypto backend: ").nth(1).and_then(|r| r.split(')').next()).unwrap_or_default().to_string()
}

/// Sends messages of edge sizes on `conn` and checks each comes back byte for byte.
async fn echo_round_trip(conn: &Conn, what: &str) {
    for (n, len) in [0usize, 1, 19, 65_517, 65_518, 1 << 20].into_iter().enumerate() {
        let m = raw(len, 50 + n as u8);
        conn.write(&m).await.unwrap();
        assert_eq!(conn.read().await.unwrap(), (len + 4, m), "{what}, {len} bytes");
    }
}

#[actix::test]
#[ignore = "needs another build's binary in TEZOS_P2P_OTHER_BIN; run by .ci/run"]
async fn this_build_and_another_build_interoperate_in_both_roles() {
    // Async process IO: the connections' actors run on this test's thread, which must not block.
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
    use tokio::process::Command;
    let other = other_build();
    let (theirs, ours) = (backend_of(&other), CryptoBackend::default().name().to_string());
    assert!(!theirs.is_empty(), "{} --version names no backend", other.display());
    if cfg!(feature = "sodium") {
        assert_eq!((theirs.as_str(), ours.as_str()), ("rust-crypto", "sodium"), "the builds must differ");
    }

    // Their binary listens and echoes; this build dials.
    let mut child = Command::new(&other)
        .args(["listen", "--addr", "127.0.0.1:0", "--echo", "--count", "1", "--expected-pow", "0", "--messages", "raw"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(T, out.read_line(&mut line)).await.expect("listening in time").unwrap();
    let ev: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(ev["event"], "listening", "{line}");
    let addr: SocketAddr = ev["addr"].as_str().unwrap().parse().unwrap();
    let conn: Conn = actor::connect(addr, local(CryptoBackend::default()), T)
        .await
        .unwrap()
        .accept::<RawMessage>(ConnectionConfig::default())
        .await
        .unwrap();
    echo_round_trip(&conn, &format!("{ours} dialer → {theirs} listener")).await;
    conn.close(true).await;
    let mut rest = String::new();
    tokio::time::timeout(T, out.read_to_string(&mut rest)).await.expect("listener ends in time").unwrap();
    assert_eq!(child.wait().await.unwrap().code(), Some(0), "{rest}");
    assert!(rest.contains("\"disconnected\""), "{rest}");

    // This build listens; their binary dials and echoes what we send.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = Command::new(&other)
        .args(["connect", &addr.to_string(), "--echo", "--expected-pow", "0", "--messages", "raw"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (s, _) = tokio::time::timeout(T, listener.accept()).await.expect("dialled in time").unwrap();
    let conn: Conn = actor::authenticate(s, local(CryptoBackend::default()), true, T)
        .await
        .unwrap()
        .accept::<RawMessage>(ConnectionConfig::default())
        .await
        .unwrap();
    echo_round_trip(&conn, &format!("{theirs} dialer → {ours} listener")).await;
    conn.close(true).await;
    let status = tokio::time::timeout(T, child.wait()).await.expect("dialer ends in time").unwrap();
    assert_eq!(status.code(), Some(0));
}
