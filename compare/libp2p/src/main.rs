//! Loopback bulk-throughput benchmark: rust-libp2p 0.57 (TCP + Noise + Yamux,
//! driven directly through `libp2p::core::Transport`, no Swarm) vs. raw tokio TCP.
//!
//! Methodology (identical for both transports):
//! * one connection, one stream; both ends in this process;
//! * tokio multi-thread runtime with 2 worker threads;
//! * writer: `write_all` of a 64 KiB buffer in a loop for DURATION (default 10 s), then close;
//! * reader: reads into a 256 KiB buffer until EOF; rate = bytes / (EOF - first byte);
//! * 3 runs of each, alternating (libp2p, tcp, libp2p, tcp, ...), median reported.
//!
//! Usage: libp2p-bench [SECONDS] [RUNS]   (defaults 10 and 3)

use std::time::{Duration, Instant};

use futures::future::poll_fn;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt as _};
use libp2p::core::transport::{Boxed, DialOpts, ListenerId, PortUse, TransportEvent};
use libp2p::core::upgrade::Version;
use libp2p::core::{Endpoint, Transport as _};
use libp2p::{identity, noise, tcp, yamux, Multiaddr, PeerId};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

const WRITE_BUF: usize = 64 * 1024;
const READ_BUF: usize = 256 * 1024;

fn build_transport() -> Boxed<(PeerId, StreamMuxerBox)> {
    let keypair = identity::Keypair::generate_ed25519();
    tcp::tokio::Transport::new(tcp::Config::default())
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(&keypair).expect("noise config"))
        .multiplex(yamux::Config::default()) // defaults on purpose: what a user gets
        .boxed()
}

/// Returns (bytes received, bytes/second from first received byte to EOF).
async fn run_libp2p(dur: Duration) -> (u64, f64) {
    // ---------- listener ----------
    let mut listener = build_transport();
    listener
        .listen_on(ListenerId::next(), "/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .expect("listen_on");
    let addr: Multiaddr = loop {
        match listener.next().await.expect("listener stream ended") {
            TransportEvent::NewAddress { listen_addr, .. } => break listen_addr,
            other => panic!("unexpected listener event: {other:?}"),
        }
    };

    let listen_task = tokio::spawn(async move {
        let upgrade = loop {
            match listener.next().await.expect("listener stream ended") {
                TransportEvent::Incoming { upgrade, .. } => break upgrade,
                TransportEvent::NewAddress { .. } => continue,
                other => panic!("unexpected listener event: {other:?}"),
            }
        };
        let (_peer, mut muxer) = upgrade.await.expect("inbound upgrade");
        let mut stream = poll_fn(|cx| muxer.poll_inbound_unpin(cx))
            .await
            .expect("inbound substream");

        // Connection driver (what a Swarm's connection task would do).
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let driver = tokio::spawn(async move {
            tokio::select! {
                r = poll_fn(|cx| muxer.poll_unpin(cx)) => { let _ = r; }
                _ = done_rx => {}
            }
            let _ = muxer.close().await;
        });

        // Reader (what a protocol handler / libp2p-stream user would do).
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            let mut total: u64 = 0;
            let mut first: Option<Instant> = None;
            loop {
                let n = stream.read(&mut buf).await.expect("substream read");
                if n == 0 {
                    break;
                }
                first.get_or_insert_with(Instant::now);
                total += n as u64;
            }
            let elapsed = first.expect("no data received").elapsed();
            (total, total as f64 / elapsed.as_secs_f64())
        });
        let res = reader.await.unwrap();
        let _ = done_tx.send(());
        driver.await.unwrap();
        drop(listener);
        res
    });

    // ---------- dialer ----------
    let mut dialer = build_transport();
    let dial = dialer
        .dial(
            addr,
            DialOpts {
                role: Endpoint::Dialer,
                port_use: PortUse::New,
            },
        )
        .expect("dial");
    let (_peer, mut muxer) = dial.await.expect("outbound upgrade");
    let mut stream = poll_fn(|cx| muxer.poll_outbound_unpin(cx))
        .await
        .expect("outbound substream");
    // Dialer connection driver: runs until the listener closes the connection.
    let driver = tokio::spawn(async move {
        let _ = poll_fn(|cx| muxer.poll_unpin(cx)).await;
    });
    let writer = tokio::spawn(async move {
        let buf = vec![0xabu8; WRITE_BUF];
        let start = Instant::now();
        while start.elapsed() < dur {
            stream.write_all(&buf).await.expect("substream write");
        }
        stream.close().await.expect("substream close");
    });

    writer.await.unwrap();
    let res = listen_task.await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), driver).await;
    res
}

async fn run_tcp(dur: Duration) -> (u64, f64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        sock.set_nodelay(true).unwrap(); // same as libp2p-tcp's default
        let mut buf = vec![0u8; READ_BUF];
        let mut total: u64 = 0;
        let mut first: Option<Instant> = None;
        loop {
            let n = sock.read(&mut buf).await.expect("tcp read");
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            total += n as u64;
        }
        let elapsed = first.expect("no data received").elapsed();
        (total, total as f64 / elapsed.as_secs_f64())
    });
    let writer = tokio::spawn(async move {
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.set_nodelay(true).unwrap();
        let buf = vec![0xabu8; WRITE_BUF];
        let start = Instant::now();
        while start.elapsed() < dur {
            sock.write_all(&buf).await.expect("tcp write");
        }
        sock.shutdown().await.expect("tcp shutdown");
    });
    writer.await.unwrap();
    reader.await.unwrap()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().map(|s| s.parse().expect("SECONDS")).unwrap_or(10.0);
    let runs: usize = args.next().map(|s| s.parse().expect("RUNS")).unwrap_or(3);
    let dur = Duration::from_secs_f64(secs);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let t0 = Instant::now();
    let (mut p2p, mut raw) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        let (b, r) = rt.block_on(run_libp2p(dur));
        eprintln!("run {i}: libp2p tcp+noise+yamux: {:.1} MB/s ({b} bytes)", r / 1e6);
        p2p.push(r / 1e6);
        let (b, r) = rt.block_on(run_tcp(dur));
        eprintln!("run {i}: raw tokio tcp:          {:.1} MB/s ({b} bytes)", r / 1e6);
        raw.push(r / 1e6);
    }
    let (p, t) = (median(&mut p2p), median(&mut raw));
    println!(
        "libp2p tcp+noise+yamux: {p:.1} MB/s; raw tokio tcp: {t:.1} MB/s; ratio {:.3}",
        p / t
    );
    eprintln!("total wall time: {:.1} s", t0.elapsed().as_secs_f64());
}
