//! Driving a connection purely with actor messages (`Addr::send`): write, read, stat, info,
//! close.
//!
//! `cargo run --example actor_messages`

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tezos_p2p::actor::{self, Close, ConnectionConfig, Info, Read, Stat, Write, WriteSync};
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};

fn local() -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(Identity::ephemeral()),
        advertised_port: None,
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: PowTarget::new(0.0).expect("difficulty"),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    })
}

#[actix::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = async {
        let (s, _) = listener.accept().await.expect("accept");
        actor::authenticate(s, local(), true, Duration::from_secs(5)).await.expect("handshake")
    };
    let (client, server) = tokio::join!(actor::connect(addr, local(), Duration::from_secs(5)), server);
    let (client, server) = tokio::join!(
        client.expect("handshake").accept::<RawMessage>(ConnectionConfig::default()),
        server.accept::<RawMessage>(ConnectionConfig::default())
    );
    // The handles own the connections (the last one dropped closes its connection): keep them;
    // from here on, everything goes through the actors' addresses.
    let (client, server) = (client.expect("accept"), server.expect("accept"));
    let (a, b) = (client.addr(), server.addr());
    a.send(Write(RawMessage(Bytes::from_static(b"ping")))).await.expect("mailbox").expect("write");
    let (size, msg) = b.send(Read::default()).await.expect("mailbox").expect("read");
    println!("b read {size} bytes: {:?}", msg.0);
    b.send(WriteSync(RawMessage(Bytes::from_static(b"pong")))).await.expect("mailbox").expect("write_sync");
    let (_, msg) = a.send(Read::default()).await.expect("mailbox").expect("read");
    assert_eq!(&msg.0[..], b"pong");
    let info = a.send(Info::default()).await.expect("mailbox");
    let stat = a.send(Stat).await.expect("mailbox");
    println!("a is connected to {} (incoming: {}), sent {} bytes", info.peer_id, info.incoming, stat.total_sent);
    a.send(Close { wait: true }).await.expect("mailbox");
    assert!(b.send(Read::<RawMessage>::default()).await.expect("mailbox").is_err());
    println!("ok");
}
