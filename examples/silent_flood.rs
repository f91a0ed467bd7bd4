//! A real peer's handshake latency on an idle node, then with 1,000 connected sockets that never
//! send a byte, measured in one run. `cargo run --release --example silent_flood`

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tezos_p2p::actor::{self, ConnectionConfig, Node, NodeConfig};
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};
use tokio::net::TcpSocket;

async fn handshake_ms(addr: SocketAddr, n: usize) -> f64 {
    let mut times = Vec::new();
    for _ in 0..n {
        let local = Arc::new(LocalConfig {
            identity: Arc::new(Identity::ephemeral()),
            advertised_port: None,
            version: NetworkVersion::current("TEZOS_MAINNET"),
            metadata: ConnectionMetadata::default(),
            expected_pow: PowTarget::new(0.0).expect("valid"),
            crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
        });
        let start = Instant::now();
        let conn = actor::connect(addr, local, Duration::from_secs(10))
            .await
            .expect("handshake")
            .accept::<RawMessage>(ConnectionConfig::default())
            .await
            .expect("accept");
        times.push(start.elapsed().as_secs_f64() * 1e3);
        conn.close(false).await;
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    actix::System::new().block_on(async {
        let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
        config.listen_addr = Some("127.0.0.1:0".parse().expect("addr"));
        config.expected_pow = PowTarget::new(0.0).expect("valid");
        let node: Node<RawMessage, ConnectionMetadata> = Node::start(config).await.expect("node");
        let addr = node.listen_addr().expect("bound");
        let idle = handshake_ms(addr, 50).await;
        let mut silent = Vec::new();
        for i in 0..1000u32 {
            let s = TcpSocket::new_v4().expect("socket");
            s.bind(SocketAddr::new(IpAddr::from([127, 0, 2 + (i / 250) as u8, (i % 250) as u8 + 1]), 0)).expect("bind");
            silent.push(s.connect(addr).await.expect("connect"));
        }
        let flooded = handshake_ms(addr, 50).await;
        println!("median handshake latency, idle node: {idle:.3} ms");
        println!("median handshake latency, 1000 silent sockets: {flooded:.3} ms ({:.2}x)", flooded / idle);
        drop(silent);
    });
}
