//! Every example runs to completion and says `ok` (cargo builds the examples for `cargo test`).

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-HASH → target/<profile>/examples/NAME
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join(name)
}

fn runs_ok(name: &str, args: &[&str]) {
    let path = example(name);
    assert!(path.exists(), "{path:?} not built");
    let out = Command::new(&path).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{name}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l.starts_with("ok")), "{name}: {stdout}");
}

#[test]
fn echo_server_and_client() {
    runs_ok("echo", &[]);
}

#[test]
fn chat_between_several_nodes() {
    runs_ok("chat", &[]);
}

#[test]
fn an_actor_subscribed_to_inbound_messages() {
    runs_ok("subscriber", &[]);
}

#[test]
fn a_connection_driven_with_actor_messages() {
    runs_ok("actor_messages", &[]);
}

#[test]
fn stats_and_a_metrics_scrape() {
    runs_ok("stats_metrics", &[]);
}

/// A local node serving synthetic heads: answers `Get_current_head`, then announces new heads
/// (one repeated, which the monitor must not print twice).
#[actix::test]
async fn the_head_monitor_prints_each_new_head_of_a_local_node() {
    use bytes::Bytes;
    use tezos_p2p::actor::{self, Connection, ConnectionConfig};
    use tezos_p2p::handshake::LocalConfig;
    use tezos_p2p::identity::Identity;
    use tezos_p2p::message::db::{DbMessage, OctezMessage};
    use tezos_p2p::message::P2pMessage;
    use tezos_p2p::pow::PowTarget;
    use tezos_p2p::shell::{BlockHash, BlockHeader, ContextHash, Fitness, Mempool, OperationListListHash, Timestamp};
    use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};

    let head = |level: i32| {
        P2pMessage::Message(DbMessage::CurrentHead {
            chain_id: "NetXdQprcVkpaWU".parse().unwrap(),
            current_block_header: BlockHeader {
                level,
                proto: 2,
                predecessor: BlockHash::from_bytes([level as u8; 32]),
                timestamp: Timestamp(1_700_000_000 + i64::from(level)),
                validation_pass: 4,
                operations_hash: OperationListListHash::from_bytes([1; 32]),
                fitness: Fitness(vec![Bytes::from_static(&[2])]),
                context: ContextHash::from_bytes([3; 32]),
                protocol_data: Bytes::from_static(b"synthetic"),
            },
            current_mempool: Mempool::default(),
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let local = std::sync::Arc::new(LocalConfig {
        identity: std::sync::Arc::new(Identity::ephemeral()),
        advertised_port: Some(addr.port()),
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: PowTarget::new(0.0).unwrap(),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    });
    let server = actix::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let conn: Connection<OctezMessage, ConnectionMetadata> =
            actor::authenticate(s, local, true, std::time::Duration::from_secs(10))
                .await
                .unwrap()
                .accept(ConnectionConfig::default())
                .await
                .unwrap();
        let (_, asked) = conn.read().await.unwrap();
        assert!(matches!(asked, P2pMessage::Message(DbMessage::GetCurrentHead { .. })), "{asked:?}");
        for level in [100, 101, 101, 102] {
            conn.write(&head(level)).await.unwrap();
        }
        // The monitor closes after its third head.
        let _ = conn.read().await;
    });
    let out = tokio::process::Command::new(example("head_monitor"))
        .args([&addr.to_string(), "--count", "3"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let levels: Vec<&str> = stdout.lines().filter(|l| l.starts_with("head ")).collect();
    assert_eq!(levels.len(), 3, "{stdout}");
    for (line, level) in levels.iter().zip(["100", "101", "102"]) {
        assert!(line.contains(&format!("level={level} hash=B")), "{line}");
    }
    assert!(stdout.lines().any(|l| l.starts_with("ok")), "{stdout}");
    server.await.unwrap();
}
