//! `tezos-p2p connect --watch`: each received message is printed as a `message` event carrying
//! its codec JSON; `--send` sends messages on connect.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tezos_p2p::actor::{self, Connection, ConnectionConfig};
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::db::{DbMessage, OctezMessage};
use tezos_p2p::message::P2pMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::shell::{
    BlockHash, BlockHeader, ContextHash, Fitness, Mempool, OperationHash, OperationListListHash, Timestamp,
};
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};

#[actix::test]
async fn watch_prints_every_message_as_codec_json_and_send_sends_on_connect() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let local = Arc::new(LocalConfig {
        identity: Arc::new(Identity::ephemeral()),
        advertised_port: Some(addr.port()),
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: PowTarget::new(0.0).unwrap(),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    });
    let header = BlockHeader {
        level: 42,
        proto: 1,
        predecessor: BlockHash::from_bytes([9; 32]),
        timestamp: Timestamp(1_552_897_838),
        validation_pass: 4,
        operations_hash: OperationListListHash::from_bytes([1; 32]),
        fitness: Fitness(vec![Bytes::from_static(&[0]), Bytes::from_static(&[0, 1])]),
        context: ContextHash::from_bytes([3; 32]),
        protocol_data: Bytes::from_static(&[0xaa, 0xbb]),
    };
    let expected_hash = header.hash().to_string();
    let server = actix::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let conn: Connection<OctezMessage, ConnectionMetadata> =
            actor::authenticate(s, local, true, Duration::from_secs(10))
                .await
                .unwrap()
                .accept(ConnectionConfig::default())
                .await
                .unwrap();
        // What the command sent on connect.
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(conn.read().await.unwrap().1);
        }
        conn.write(&P2pMessage::Bootstrap).await.unwrap();
        conn.write(&P2pMessage::Message(DbMessage::CurrentHead {
            chain_id: "NetXdQprcVkpaWU".parse().unwrap(),
            current_block_header: header,
            current_mempool: Mempool { known_valid: vec![OperationHash::from_bytes([5; 32])], pending: vec![] },
        }))
        .await
        .unwrap();
        let _ = conn.read().await;
        got
    });
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tezos-p2p"))
        .args(["connect", &addr.to_string(), "--expected-pow", "0", "--watch", "--max-messages", "2"])
        .args(["--send", "Get_current_head", "--send", r#"{"kind":"Get_block_headers","get_block_headers":[]}"#])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["connected", "sent", "sent", "message", "message", "disconnected"], "{stdout}");
    assert_eq!(events[1]["kind"], "Get_current_head");
    assert_eq!(events[3]["kind"], "Bootstrap");
    let head = &events[4];
    assert_eq!(head["kind"], "Current_head");
    assert_eq!(head["chain_id"], "NetXdQprcVkpaWU");
    assert_eq!(head["current_block_header"]["level"], 42);
    assert_eq!(head["current_block_header"]["hash"], expected_hash.as_str());
    assert_eq!(head["current_block_header"]["timestamp"], "2019-03-18T08:30:38Z");
    assert_eq!(head["current_block_header"]["protocol_data"], "aabb");
    assert!(head["size"].as_u64().unwrap() > 0);
    let got = server.await.unwrap();
    assert_eq!(got[0], P2pMessage::Message(DbMessage::GetCurrentHead { chain_id: "NetXdQprcVkpaWU".parse().unwrap() }));
    assert_eq!(got[1], P2pMessage::Message(DbMessage::GetBlockHeaders { get_block_headers: vec![] }));
}

#[test]
fn a_bad_send_argument_is_a_usage_error() {
    let out = common::bin().args(["connect", "127.0.0.1:1", "--send", "Get_everything"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--send"));
    // A message over one of octez's bounds is refused before dialling, not when written.
    let points: Vec<String> = (0..101).map(|i| format!("10.0.0.{}:9732", i + 1)).collect();
    let advertise = serde_json::json!({"kind": "Advertise", "id": points}).to_string();
    let out = common::bin().args(["connect", "127.0.0.1:1", "--send", &advertise]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("101 elements exceed the maximum 100"), "{out:?}");
}

#[test]
fn points_are_host_port_checked_at_parse_and_names_resolved_when_dialled() {
    for bad in ["foo", "foo:", ":9732", "::1:9732", "host:99999"] {
        let out = common::bin().args(["connect", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "connect {bad}: {out:?}");
        let out = common::bin().args(["listen", "--addr", "127.0.0.1:0", "--peer", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "listen --peer {bad}: {out:?}");
    }
    // `.invalid` never resolves (RFC 6761): a runtime failure with an event, exit 1.
    let out = common::bin().args(["connect", "nosuchhost.invalid:9732"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let ev: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["event"], "error");
    assert_eq!(ev["error"], "ConnectionRefused");
    assert!(ev["message"].as_str().unwrap().contains("cannot resolve nosuchhost.invalid:9732"), "{ev}");
}

#[actix::test]
async fn connect_dials_a_name_and_ends_cleanly_on_sigterm() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let auth =
            actor::authenticate(s, common::local_config(Identity::ephemeral(), None), true, Duration::from_secs(10))
                .await
                .unwrap();
        let c: Connection<OctezMessage, ConnectionMetadata> = auth.accept(ConnectionConfig::default()).await.unwrap();
        c.closed().await;
        c.close_reason()
    });
    let mut child = tokio::process::Command::from(common::bin())
        .args(["connect", &format!("localhost:{port}"), "--expected-pow", "0", "--watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let Some(first) = lines.next_line().await.unwrap() else {
        // The command ended without a word on stdout: say how, with what it wrote on stderr.
        let mut err = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut err).await;
        panic!("`connect` printed nothing and ended with {:?}; stderr: {err}", child.wait().await);
    };
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["event"], "connected", "{first}");
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let last: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(last["event"], "disconnected", "{last}");
    assert_eq!(child.wait().await.unwrap().code(), Some(0), "SIGTERM ends `connect --watch` with exit 0");
    assert!(server.await.unwrap().is_some(), "the server saw the connection end");
}

#[actix::test]
async fn a_signal_while_dialling_ends_connect_watch_with_a_shutdown_event() {
    // A peer that takes the TCP connection and never says a word: the handshake waits.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let child = tokio::process::Command::from(common::bin())
        .args(["connect", &addr.to_string(), "--expected-pow", "0", "--watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Accepted: the command is dialling, and its handlers were installed before it dialled.
    let (_silent, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await.unwrap().unwrap();
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 1, "{stdout}");
    assert_eq!(events[0]["event"], "shutdown");
    assert_eq!(events[0]["signal"], "SIGTERM");
}
