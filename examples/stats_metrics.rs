//! Reading connection and node statistics, and scraping the Prometheus endpoint.
//!
//! `cargo run --example stats_metrics`

use std::io::{Read as _, Write as _};
use std::time::Duration;

use bytes::Bytes;
use tezos_p2p::actor::Node;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::telemetry::Telemetry;
use tezos_p2p::wire::ConnectionMetadata;

type StatNode = Node<RawMessage, ConnectionMetadata>;

#[actix::main]
async fn main() {
    // Install the recorder before the nodes start, so every connection records into it.
    let telemetry = Telemetry::serve("127.0.0.1:0".parse().expect("address"), false).await.expect("metrics");
    let start = |listen: &str| {
        Node::builder(Identity::ephemeral(), ConnectionMetadata::default())
            .listen(listen.parse().expect("address"))
            .expected_pow(0.0)
            .expect("difficulty")
            .start()
    };
    let a: StatNode = start("127.0.0.1:0").await.expect("node");
    let b: StatNode = start("127.0.0.2:0").await.expect("node");
    let conn = b.connect(a.listen_addr().expect("bound")).await.expect("connect");
    for _ in 0..50 {
        conn.write(&RawMessage(Bytes::from(vec![1u8; 10_000]))).await.expect("write");
    }
    conn.write_sync(&RawMessage(Bytes::new())).await.expect("write_sync");
    // Averages refresh once a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let s = conn.stat();
    println!("connection: sent {} B, received {} B, outflow {} B/s", s.total_sent, s.total_recv, s.current_outflow);
    let g = b.scheduler().stat();
    println!("node b: sent {} B in total, outflow {} B/s", g.total_sent, g.current_outflow);
    assert!(s.total_sent >= 500_000);

    // Scrape the endpoint as Prometheus would.
    let addr = telemetry.addr();
    let body = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("response");
        text
    })
    .await
    .expect("scrape");
    let line = body.lines().find(|l| l.starts_with("tezos_p2p_sent_bytes_total")).expect("metric");
    println!("scraped: {line}");
    a.shutdown().await;
    b.shutdown().await;
    println!("ok");
}
