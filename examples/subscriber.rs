//! An actor subscribed to a connection's inbound messages and to its lifecycle.
//!
//! `cargo run --example subscriber`

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tezos_p2p::actor::{self, Closed, ConnectionConfig, Inbound};
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};

/// Counts messages; stops the system when the connection closes.
struct Counter {
    messages: usize,
    bytes: usize,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Inbound<RawMessage>> for Counter {
    type Result = ();

    fn handle(&mut self, msg: Inbound<RawMessage>, _: &mut Self::Context) {
        self.messages += 1;
        self.bytes += msg.size;
    }
}

impl Handler<Closed> for Counter {
    type Result = ();

    fn handle(&mut self, msg: Closed, _: &mut Self::Context) {
        println!("connection closed ({}): {} messages, {} bytes", msg.reason, self.messages, self.bytes);
        assert_eq!(self.messages, 100);
        System::current().stop();
    }
}

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

fn main() {
    let system = System::new();
    // The server's handle is kept until the system stops: the handles own the connection (the
    // last one dropped closes it), subscribing does not.
    let _server = system.block_on(async {
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
        let (client, server) = (client.expect("accept"), server.expect("accept"));
        // The subscriber gets every inbound message (instead of the read queue) and the close.
        let counter = Counter { messages: 0, bytes: 0 }.start();
        server.subscribe(counter.clone().recipient());
        server.subscribe_closed(counter.recipient());
        for i in 0..100u8 {
            client.write(&RawMessage(Bytes::from(vec![i; 100]))).await.expect("write");
        }
        client.close(true).await;
        server
    });
    system.run().expect("system");
    println!("ok");
}
