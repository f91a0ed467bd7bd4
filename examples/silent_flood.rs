//! A real peer's handshake latency, measured in one run:
//! 1. on an idle node;
//! 2. with 1,000 connected sockets that never send a byte, from 1,000 addresses in four /24
//!    networks (the per-network admission cap refuses most at once; those it admits are held
//!    until the handshake timeout);
//! 3. while sockets from one address arrive without pause, 5,000 held open at a time (all but
//!    the first few refused by the per-address cap before a byte is read).
//!
//! `cargo run --release --example silent_flood`

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
        drop(silent);
        let _ = rlimit::increase_nofile_limit(20_000);
        // The flood runs during the measurement: 5,000 sockets first, then one more for each
        // that is let go, until the honest handshakes are done.
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let flood = {
            let (done, opened) = (done.clone(), opened.clone());
            actix::spawn(async move {
                let mut held = std::collections::VecDeque::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let s = TcpSocket::new_v4().expect("socket");
                    s.bind(SocketAddr::new(IpAddr::from([127, 0, 6, 1]), 0)).expect("bind");
                    // Refused sockets are closed by the node at once; the connect itself succeeds.
                    if let Ok(c) = s.connect(addr).await {
                        held.push_back(c);
                        opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if held.len() > 5000 {
                        held.pop_front();
                    }
                }
            })
        };
        while opened.load(std::sync::atomic::Ordering::Relaxed) < 5000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let from_one = handshake_ms(addr, 50).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = flood.await;
        let total = opened.load(std::sync::atomic::Ordering::Relaxed);
        println!("median handshake latency, idle node: {idle:.3} ms");
        println!("median handshake latency, 1000 silent sockets: {flooded:.3} ms ({:.2}x)", flooded / idle);
        println!(
            "median handshake latency, during a flood from one address ({total} sockets, 5000 held): {from_one:.3} ms ({:.2}x idle, {:.2}x the 1000-socket case)",
            from_one / idle,
            from_one / flooded
        );
    });
}
