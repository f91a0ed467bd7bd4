//! An echo server and client over loopback, in one process: the server echoes every message it
//! receives; the client sends a few and checks the answers.
//!
//! `cargo run --example echo`

use std::time::Duration;

use bytes::Bytes;
use tezos_p2p::actor::{self, ConnectionConfig, Node};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::wire::ConnectionMetadata;

#[actix::main]
async fn main() {
    // The server: a node that echoes what each connection sends.
    let server: Node<RawMessage, ConnectionMetadata> =
        Node::builder(Identity::ephemeral(), ConnectionMetadata::default())
            .listen("127.0.0.1:0".parse().expect("address"))
            .expected_pow(0.0)
            .expect("difficulty")
            .start()
            .await
            .expect("server");
    let addr = server.listen_addr().expect("bound");
    println!("server {} on {addr}", server.peer_id());

    // The client: authenticate, accept, then talk.
    let client_identity = Identity::ephemeral();
    let client_id = client_identity.peer_id;
    let client = actor::connect(addr, local(client_identity), Duration::from_secs(5))
        .await
        .expect("handshake")
        .accept::<RawMessage>(ConnectionConfig::default())
        .await
        .expect("accept");
    // The server registers its side of the connection as soon as its own accept completes.
    let server_side = loop {
        if let Some(c) = server.peer(&client_id).and_then(|p| p.connection) {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    actix::spawn(async move {
        while let Ok((_, msg)) = server_side.read().await {
            if server_side.write(&msg).await.is_err() {
                break;
            }
        }
    });
    for text in ["hello", "tezos", "p2p"] {
        client.write(&RawMessage(Bytes::from(text))).await.expect("write");
        let (size, echoed) = client.read().await.expect("read");
        println!("echoed {size} bytes: {}", String::from_utf8_lossy(&echoed.0));
        assert_eq!(echoed.0, text.as_bytes());
    }
    client.close(true).await;
    server.shutdown().await;
    println!("ok");
}

/// What the client announces: its identity, no listening port, mainnet, no PoW requirement.
fn local(identity: Identity) -> std::sync::Arc<tezos_p2p::handshake::LocalConfig<ConnectionMetadata>> {
    std::sync::Arc::new(tezos_p2p::handshake::LocalConfig {
        identity: std::sync::Arc::new(identity),
        advertised_port: None,
        version: tezos_p2p::wire::NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: tezos_p2p::pow::PowTarget::new(0.0).expect("difficulty"),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    })
}
