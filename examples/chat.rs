//! A chat between several nodes: each node dials the others, then every node broadcasts a line
//! and prints what it receives (through a subscriber actor).
//!
//! `cargo run --example chat`

use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tezos_p2p::actor::{Inbound, Node};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::wire::ConnectionMetadata;

type ChatNode = Node<RawMessage, ConnectionMetadata>;

/// Prints every line a node receives and reports it on a channel.
struct Printer {
    name: &'static str,
    seen: tokio::sync::mpsc::Sender<String>,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<Inbound<RawMessage>> for Printer {
    type Result = ();

    fn handle(&mut self, msg: Inbound<RawMessage>, _: &mut Self::Context) {
        let line = String::from_utf8_lossy(&msg.message.0).into_owned();
        println!("{} got from {}: {line}", self.name, msg.peer_id);
        let _ = self.seen.try_send(line);
    }
}

#[actix::main]
async fn main() {
    let names = ["alice", "bob", "carol"];
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut nodes: Vec<ChatNode> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let node: ChatNode = Node::builder(Identity::ephemeral(), ConnectionMetadata::default())
            .listen(format!("127.0.0.{}:0", i + 1).parse().expect("address"))
            .expected_pow(0.0)
            .expect("difficulty")
            .start()
            .await
            .expect("node");
        node.subscribe(Printer { name, seen: tx.clone() }.start().recipient());
        nodes.push(node);
    }
    // A full mesh: each node dials the ones before it.
    for i in 0..nodes.len() {
        for j in 0..i {
            nodes[i].connect(nodes[j].listen_addr().expect("bound")).await.expect("connect");
        }
    }
    // Wait until every node sees the two others.
    while nodes.iter().any(|n| n.connections().len() < names.len() - 1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (node, name) in nodes.iter().zip(names) {
        let sent = node.broadcast(&RawMessage(Bytes::from(format!("hello from {name}"))));
        assert_eq!(sent, names.len() - 1);
    }
    // Everybody hears from everybody else.
    let mut lines = Vec::new();
    while lines.len() < names.len() * (names.len() - 1) {
        lines.push(rx.recv().await.expect("line"));
    }
    for n in &nodes {
        n.shutdown().await;
    }
    println!("ok: {} lines delivered", lines.len());
}
