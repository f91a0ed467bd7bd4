//! Measurement helpers of `tezos-p2p bench`, also compiled into the benches, the load tests
//! and the benchmark examples (with `#[path]`): they use only the library's public API, and the
//! library's public surface stays the product. Everything runs on loopback inside the calling
//! actix `System`.
#![allow(dead_code)] // each includer uses a part

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use tezos_p2p::actor::{self, ConnectionConfig, Limits, Scheduler, Workers};
use tezos_p2p::crypto::{ChannelKey, CryptoBackend, Nonce, SecretKey};
use tezos_p2p::handshake::{ExpectConnectionMessage, Handshake, LocalConfig, Session, Status};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::{PowTarget, Stamp};
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};

/// A local configuration with an ephemeral identity and no PoW requirement.
pub fn local() -> Arc<LocalConfig<ConnectionMetadata>> {
    local_with(Identity::ephemeral(), 0.0)
}

/// [`local`] computing its crypto with `backend`.
pub fn local_using(backend: CryptoBackend) -> Arc<LocalConfig<ConnectionMetadata>> {
    let mut config = (*local()).clone();
    config.crypto_backend = backend;
    Arc::new(config)
}

/// A local configuration for `identity`, requiring `pow` of peers.
pub fn local_with(identity: Identity, pow: f64) -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(identity),
        advertised_port: None,
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: PowTarget::new(pow).unwrap_or_else(|_| PowTarget::new(0.0).unwrap_or_else(|_| unreachable!())),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    })
}

/// Bytes per second of sealing then opening `len`-byte payloads on one core, for `secs`, with
/// the default backend.
pub fn raw_seal_open(len: usize, secs: f64) -> f64 {
    raw_seal_open_using(CryptoBackend::default(), len, secs)
}

/// [`raw_seal_open`] with a chosen backend.
pub fn raw_seal_open_using(backend: CryptoBackend, len: usize, secs: f64) -> f64 {
    let key = ChannelKey::from_bytes_with(backend, [1; 32]);
    let nonce = Nonce::from_bytes([2; 24]);
    let mut buf = vec![0u8; 16 + len];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..16 {
            let _ = key.seal_in_place(&nonce, &mut buf);
            let _ = key.open_in_place(&nonce, &mut buf);
        }
        bytes += 16 * len as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

/// Channel keys (X25519 + HSalsa20) computed per second on one core, for `secs`, by the
/// default backend.
pub fn precompute_rate(secs: f64) -> f64 {
    let sk = SecretKey::generate();
    let pk = SecretKey::generate().public_key();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..16 {
            let _ = ChannelKey::precompute(&pk, &sk);
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Message bytes per second one connection delivers for `secs` seconds, both ends in this
/// process on two arbiters (so sealing and opening run on different cores). `config` applies
/// to the receiving end. Both ends use the default crypto backend.
pub async fn connection_rate(workers: &Workers, size: usize, secs: f64, config: ConnectionConfig) -> f64 {
    connection_rate_using(CryptoBackend::default(), workers, size, secs, config).await
}

/// [`connection_rate`] with both ends on `backend`.
pub async fn connection_rate_using(
    backend: CryptoBackend,
    workers: &Workers,
    size: usize,
    secs: f64,
    config: ConnectionConfig,
) -> f64 {
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else { return 0.0 };
    let _ = listener.set_nonblocking(true);
    let Ok(addr) = listener.local_addr() else { return 0.0 };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    workers.next().spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
        let Ok((s, _)) = listener.accept().await else { return };
        let Ok(auth) = actor::authenticate(s, local_using(backend), true, Duration::from_secs(5)).await else { return };
        let Ok(conn) = auth.accept::<RawMessage>(config).await else { return };
        let mut bytes = 0u64;
        let mut start = None;
        while let Ok((n, _)) = conn.read().await {
            start.get_or_insert_with(Instant::now);
            bytes += n as u64;
        }
        let elapsed = start.map_or(1.0, |s| s.elapsed().as_secs_f64());
        let _ = done_tx.send(bytes as f64 / elapsed);
    });
    workers.next().spawn(async move {
        let Ok(auth) = actor::connect(addr, local_using(backend), Duration::from_secs(5)).await else { return };
        let Ok(conn) = auth.accept::<RawMessage>(ConnectionConfig::default()).await else { return };
        let msg = RawMessage(Bytes::from(vec![7u8; size]));
        let start = Instant::now();
        'outer: while start.elapsed().as_secs_f64() < secs {
            for _ in 0..64 {
                if conn.write(&msg).await.is_err() {
                    break 'outer;
                }
            }
        }
        conn.close(true).await;
    });
    done_rx.await.unwrap_or(0.0)
}

/// The accepting side of the handshake figures: one accept loop (until `stop`) handing each
/// socket to the next arbiter in turn, where `serve` runs on it.
fn spread_accepts<F, Fut>(
    workers: &Workers,
    listener: std::net::TcpListener,
    stop: tokio_util::sync::CancellationToken,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let handles: Vec<_> = (0..workers.len()).map(|_| workers.next()).collect();
    workers.next().spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
        let mut i = 0usize;
        loop {
            let s = tokio::select! {
                () = stop.cancelled() => return,
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            };
            // Moved as a std socket: a tokio one is tied to this arbiter's reactor.
            let Ok(std) = s.into_std() else { continue };
            i += 1;
            let serve = serve.clone();
            handles[i % handles.len()].spawn(async move {
                if let Ok(s) = tokio::net::TcpStream::from_std(std) {
                    serve(s).await;
                }
            });
        }
    });
}

/// Completed handshakes (authenticate + accept, both ends in this process) per second with
/// `in_flight` concurrent dialers for `secs`; returns (rate, p50, p99) latencies of the dialer.
pub async fn handshake_rate(workers: &Workers, in_flight: usize, secs: f64) -> (f64, Duration, Duration) {
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else { return (0.0, Duration::ZERO, Duration::ZERO) };
    let _ = listener.set_nonblocking(true);
    let Ok(addr) = listener.local_addr() else { return (0.0, Duration::ZERO, Duration::ZERO) };
    let server_local = local();
    let stop = tokio_util::sync::CancellationToken::new();
    spread_accepts(workers, listener, stop.clone(), move |s| {
        let local = server_local.clone();
        async move {
            if let Ok(auth) = actor::authenticate(s, local, true, Duration::from_secs(10)).await {
                if let Ok(c) = auth.accept::<RawMessage>(ConnectionConfig::default()).await {
                    c.close(false).await;
                }
            }
        }
    });
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (fin_tx, mut fin_rx) = tokio::sync::mpsc::channel::<()>(in_flight.max(1));
    let dialer_local = local();
    for _ in 0..in_flight {
        let (done, latencies, fin, local) = (done.clone(), latencies.clone(), fin_tx.clone(), dialer_local.clone());
        workers.next().spawn(async move {
            let start = Instant::now();
            let mut mine = Vec::new();
            while start.elapsed().as_secs_f64() < secs {
                let t = Instant::now();
                if let Ok(auth) = actor::connect(addr, local.clone(), Duration::from_secs(10)).await {
                    if let Ok(c) = auth.accept::<RawMessage>(ConnectionConfig::default()).await {
                        mine.push(t.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                        c.close(false).await;
                    }
                }
            }
            if let Ok(mut l) = latencies.lock() {
                l.extend(mine);
            }
            let _ = fin.send(()).await;
        });
    }
    drop(fin_tx);
    let start = Instant::now();
    let mut finished = 0;
    while finished < in_flight && fin_rx.recv().await.is_some() {
        finished += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.cancel();
    let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort();
    let pct =
        |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or_default();
    (done.load(Ordering::Relaxed) as f64 / elapsed, pct(0.5), pct(0.99))
}

/// The raw-TCP ceiling of [`handshake_rate`]: the same layout (one accept loop handing sockets
/// to the arbiters, `in_flight` dialers) and the same socket work per connection — connect, the
/// handshake's three exchanges with its message sizes (connection message, metadata, ack, each
/// written by both ends before reading the peer's), FIN both ways, close — with no cryptography
/// and no actors. Connections per second.
pub async fn tcp_handshake_shape_rate(workers: &Workers, in_flight: usize, secs: f64) -> f64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Connection message of a default identity and version, then sealed metadata, sealed ack
    // (each with its 2-byte length prefix).
    const SIZES: [usize; 3] = [105, 20, 19];
    async fn exchange(mut s: tokio::net::TcpStream) -> bool {
        let _ = s.set_nodelay(true);
        let mut buf = [0u8; 128];
        for n in SIZES {
            if s.write_all(&buf[..n]).await.is_err() || s.read_exact(&mut buf[..n]).await.is_err() {
                return false;
            }
        }
        if s.shutdown().await.is_err() {
            return false;
        }
        matches!(s.read(&mut buf).await, Ok(0))
    }
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else { return 0.0 };
    let _ = listener.set_nonblocking(true);
    let Ok(addr) = listener.local_addr() else { return 0.0 };
    let stop = tokio_util::sync::CancellationToken::new();
    spread_accepts(workers, listener, stop.clone(), |s| async move {
        exchange(s).await;
    });
    let done = Arc::new(AtomicU64::new(0));
    let (fin_tx, mut fin_rx) = tokio::sync::mpsc::channel::<()>(in_flight.max(1));
    for _ in 0..in_flight {
        let (done, fin) = (done.clone(), fin_tx.clone());
        workers.next().spawn(async move {
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < secs {
                if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
                    if exchange(s).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let _ = fin.send(()).await;
        });
    }
    drop(fin_tx);
    let start = Instant::now();
    let mut finished = 0;
    while finished < in_flight && fin_rx.recv().await.is_some() {
        finished += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.cancel();
    done.load(Ordering::Relaxed) as f64 / elapsed
}

/// Protocol CPU per attempt, sockets excluded: (seconds per refused bad-PoW connection message,
/// seconds per complete handshake with both roles), each measured over about `secs`.
pub fn pow_rejection_vs_handshake_cpu(secs: f64) -> (f64, f64) {
    let server = local_with(Identity::ephemeral(), 24.0);
    // A peer whose stamp cannot meet 24 bits (checked), as a raw connection message.
    let weak = loop {
        let id = Identity::from_secret_key(SecretKey::generate(), Stamp::random());
        if id.pow_level() < 24 {
            break id;
        }
    };
    let raw = ExpectConnectionMessage::new(local_with(weak, 0.0), false, Nonce::random(), None)
        .map(|s| s.bytes_to_send().to_vec())
        .unwrap_or_default();
    let start = Instant::now();
    let mut refused = 0u64;
    while start.elapsed().as_secs_f64() < secs / 2.0 {
        for _ in 0..256 {
            if let Ok(s) = ExpectConnectionMessage::new(server.clone(), true, Nonce::from_bytes([0; 24]), None) {
                if s.receive(&raw).is_err() {
                    refused += 1;
                }
            }
        }
    }
    let per_refusal = start.elapsed().as_secs_f64() / refused.max(1) as f64;
    let (a_cfg, b_cfg) = (local(), local());
    let start = Instant::now();
    let mut full = 0u64;
    while start.elapsed().as_secs_f64() < secs / 2.0 {
        if establish(a_cfg.clone(), b_cfg.clone()).is_none() {
            break;
        }
        full += 1;
    }
    (per_refusal, start.elapsed().as_secs_f64() / full.max(1) as f64)
}

/// Runs a whole handshake in memory (no sockets): `a` dials, `b` accepts, each side taking the
/// usual decisions (derive keys, accept). `None` if either side fails or it does not finish.
pub fn establish(
    a: Arc<LocalConfig<ConnectionMetadata>>,
    b: Arc<LocalConfig<ConnectionMetadata>>,
) -> Option<(Session<ConnectionMetadata>, Session<ConnectionMetadata>)> {
    let mut ha = Handshake::new(a, false, Nonce::random(), None).ok()?;
    let mut hb = Handshake::new(b, true, Nonce::random(), None).ok()?;
    // Connection messages, metadata, acks: three exchanges each way, one spare.
    for _ in 0..4 {
        pass(&mut ha, &mut hb)?;
        pass(&mut hb, &mut ha)?;
    }
    Some((ha.into_session()?, hb.into_session()?))
}

/// Hands everything `from` has to send to `to`; `None` if `to` refuses it.
fn pass(from: &mut Handshake<ConnectionMetadata>, to: &mut Handshake<ConnectionMetadata>) -> Option<()> {
    let bytes = from.take_output();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let n = to.read(rest).ok()?;
        if n == 0 {
            return Some(());
        }
        rest = &rest[n..];
        match to.status() {
            Status::PeerAnnounced(_) => to.derive_keys().ok()?,
            Status::Authenticated(_) => to.accept().ok()?,
            _ => {}
        }
    }
    Some(())
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`), if readable.
pub fn rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Raises the open-files soft limit towards `want` (the hard limit cannot be raised without
/// privilege); returns the soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else { return 0 };
    if soft < want && rlimit::setrlimit(rlimit::Resource::NOFILE, want, want.max(hard)).is_err() {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, want.min(hard), hard);
    }
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(soft, |(s, _)| s)
}

/// Accepts `n` authenticated connections on `listener` (the dialing ends live in another
/// process, so each process holds `n` sockets) and returns the resident memory they added per
/// connection, in bytes, once idle. The connections stay open until the returned handles drop.
pub async fn idle_memory_server(
    listener: tokio::net::TcpListener,
    n: usize,
) -> Result<(f64, Vec<tezos_p2p::actor::Connection<RawMessage, ConnectionMetadata>>), String> {
    let server_local = local();
    let before = rss_bytes().unwrap_or(0);
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let (s, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let auth = actor::authenticate(s, server_local.clone(), true, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        conns.push(auth.accept::<RawMessage>(ConnectionConfig::default()).await.map_err(|e| e.to_string())?);
    }
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
    let after = rss_bytes().unwrap_or(0);
    Ok((after.saturating_sub(before) as f64 / n.max(1) as f64, conns))
}

/// The dialing side of [`idle_memory_server`]: opens `n` connections to `addr`, 32 at a time,
/// and returns them (keep them to keep the connections open). Gives up after `n` failed
/// attempts (the measuring side has stopped), returning what it has.
pub async fn idle_memory_client(
    addr: SocketAddr,
    n: usize,
) -> Vec<tezos_p2p::actor::Connection<RawMessage, ConnectionMetadata>> {
    let mut conns = Vec::with_capacity(n);
    let mut failures = 0;
    while conns.len() < n && failures < n {
        let batch = (n - conns.len()).min(32);
        let mut set = Vec::with_capacity(batch);
        for _ in 0..batch {
            // One identity per connection: a node refuses a second connection of a peer id.
            set.push(actor::connect(addr, local(), Duration::from_secs(30)));
        }
        for f in set {
            match f.await {
                Ok(auth) => match auth.accept::<RawMessage>(ConnectionConfig::default()).await {
                    Ok(c) => conns.push(c),
                    Err(_) => failures += 1,
                },
                Err(_) => failures += 1,
            }
        }
    }
    conns
}

/// With a global download limit `limit` and `senders` greedy connections for `secs` (after a
/// 1 s warm-up), returns the bytes each sender got through.
pub async fn limited_senders(workers: &Workers, senders: usize, limit: u64, secs: f64) -> Vec<u64> {
    let scheduler = Scheduler::start(Limits { max_upload_bytes_per_s: None, max_download_bytes_per_s: Some(limit) });
    let config = ConnectionConfig { scheduler: Some(scheduler), ..Default::default() };
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else { return Vec::new() };
    let _ = listener.set_nonblocking(true);
    let Ok(addr) = listener.local_addr() else { return Vec::new() };
    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..senders).map(|_| AtomicU64::new(0)).collect());
    let stop = tokio_util::sync::CancellationToken::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (c2, s2) = (counters.clone(), stop.clone());
    workers.next().spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
        for i in 0..senders {
            let Ok((s, _)) = listener.accept().await else { return };
            let Ok(auth) = actor::authenticate(s, local(), true, Duration::from_secs(10)).await else { return };
            let Ok(conn) = auth.accept::<RawMessage>(config.clone()).await else { return };
            let (counters, stop) = (c2.clone(), s2.clone());
            actix::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        r = conn.read() => match r {
                            Ok((n, _)) => { counters[i].fetch_add(n as u64, Ordering::Relaxed); }
                            Err(_) => break,
                        },
                    }
                }
                conn.close(false).await;
            });
        }
        let _ = ready_tx.send(()).await;
    });
    for _ in 0..senders {
        workers.next().spawn(async move {
            let Ok(auth) = actor::connect(addr, local(), Duration::from_secs(10)).await else { return };
            let Ok(conn) = auth.accept::<RawMessage>(ConnectionConfig::default()).await else { return };
            let msg = RawMessage(Bytes::from(vec![1u8; 16 * 1024]));
            while conn.write(&msg).await.is_ok() {}
        });
    }
    ready_rx.recv().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let elapsed = start.elapsed().as_secs_f64();
    stop.cancel();
    counters.iter().zip(before).map(|(c, b)| ((c.load(Ordering::Relaxed) - b) as f64 * secs / elapsed) as u64).collect()
}

/// The `p`-quantile of sorted `v`.
pub fn quantile(v: &[Duration], p: f64) -> Duration {
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or_default()
}

/// A connected loopback TCP pair: (the listener's end, the dialler's end), std sockets ready to
/// be registered on any arbiter.
fn tcp_pair() -> Option<(std::net::TcpStream, std::net::TcpStream)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    let dialer = std::net::TcpStream::connect(listener.local_addr().ok()?).ok()?;
    let (accepted, _) = listener.accept().ok()?;
    for s in [&accepted, &dialer] {
        s.set_nonblocking(true).ok()?;
        s.set_nodelay(true).ok()?;
    }
    Some((accepted, dialer))
}

/// The raw-TCP ceiling of one stream: bytes per second a reader on one arbiter gets from a
/// writer on another issuing `write_size`-byte writes for `secs` (the same runtime layout as a
/// connection's two ends).
pub async fn tcp_bulk_rate(workers: &Workers, write_size: usize, secs: f64) -> f64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Some((a, b)) = tcp_pair() else { return 0.0 };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    workers.next().spawn(async move {
        let Ok(mut r) = tokio::net::TcpStream::from_std(a) else { return };
        let mut buf = vec![0u8; 256 * 1024];
        let (mut bytes, mut start) = (0u64, None);
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            start.get_or_insert_with(Instant::now);
            bytes += n as u64;
        }
        let elapsed = start.map_or(1.0, |s: Instant| s.elapsed().as_secs_f64());
        let _ = done_tx.send(bytes as f64 / elapsed);
    });
    workers.next().spawn(async move {
        let Ok(mut w) = tokio::net::TcpStream::from_std(b) else { return };
        let buf = vec![7u8; write_size];
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < secs {
            for _ in 0..16 {
                if w.write_all(&buf).await.is_err() {
                    return;
                }
            }
        }
        let _ = w.shutdown().await;
    });
    done_rx.await.unwrap_or(0.0)
}

/// The raw-TCP ceiling of a request/response: `rounds` round trips of `size` bytes each way
/// between two arbiters; (p50, p99).
pub async fn tcp_rtt(workers: &Workers, size: usize, rounds: usize) -> (Duration, Duration) {
    let lat = tcp_rtt_samples(workers, size, rounds).await;
    (quantile(&lat, 0.5), quantile(&lat, 0.99))
}

/// The round trips of [`tcp_rtt`], sorted (the first tenth, a warm-up, left out).
pub async fn tcp_rtt_samples(workers: &Workers, size: usize, rounds: usize) -> Vec<Duration> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Some((a, b)) = tcp_pair() else { return Vec::new() };
    workers.next().spawn(async move {
        let Ok(mut s) = tokio::net::TcpStream::from_std(a) else { return };
        let mut buf = vec![0u8; size];
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(&buf).await.is_err() {
                return;
            }
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    workers.next().spawn(async move {
        let Ok(mut s) = tokio::net::TcpStream::from_std(b) else { return };
        let mut buf = vec![1u8; size];
        let mut lat = Vec::with_capacity(rounds);
        for i in 0..rounds + rounds / 10 {
            let t = Instant::now();
            if s.write_all(&buf).await.is_err() || s.read_exact(&mut buf).await.is_err() {
                break;
            }
            // The first tenth warms up.
            if i >= rounds / 10 {
                lat.push(t.elapsed());
            }
        }
        let _ = tx.send(lat);
    });
    let mut lat = rx.await.unwrap_or_default();
    lat.sort();
    lat
}

/// Both ends of `n` connections in this process, the listener's ends spread over the
/// arbiters round-robin: (dialler's ends, listener's ends).
pub async fn connection_pairs(
    workers: &Workers,
    n: usize,
    config: ConnectionConfig,
) -> Vec<(
    tezos_p2p::actor::Connection<RawMessage, ConnectionMetadata>,
    tezos_p2p::actor::Connection<RawMessage, ConnectionMetadata>,
)> {
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else { return Vec::new() };
    let _ = listener.set_nonblocking(true);
    let Ok(addr) = listener.local_addr() else { return Vec::new() };
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return Vec::new() };
    let mut pairs = Vec::with_capacity(n);
    // A few at a time: the accept backlog is finite.
    for _ in 0..n {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server_config = config.clone();
        let dial_config = config.clone();
        let accepted = listener.accept();
        let client = workers.next();
        client.spawn(async move {
            let c = match actor::connect(addr, local(), Duration::from_secs(30)).await {
                Ok(auth) => auth.accept::<RawMessage>(dial_config).await.ok(),
                Err(_) => None,
            };
            let _ = tx.send(c);
        });
        let Ok((s, _)) = accepted.await else { continue };
        let Ok(std) = s.into_std() else { continue };
        let (stx, srx) = tokio::sync::oneshot::channel();
        workers.next().spawn(async move {
            let c = match tokio::net::TcpStream::from_std(std) {
                Ok(s) => match actor::authenticate(s, local(), true, Duration::from_secs(30)).await {
                    Ok(auth) => auth.accept::<RawMessage>(server_config).await.ok(),
                    Err(_) => None,
                },
                Err(_) => None,
            };
            let _ = stx.send(c);
        });
        if let (Ok(Some(c)), Ok(Some(s))) = (rx.await, srx.await) {
            pairs.push((c, s));
        }
    }
    pairs
}

/// Aggregate message bytes per second over `n` concurrent connections sending `size`-byte
/// messages for `secs`, both ends in this process.
pub async fn aggregate_rate(workers: &Workers, n: usize, size: usize, secs: f64) -> f64 {
    let pairs = connection_pairs(workers, n, ConnectionConfig::default()).await;
    if pairs.len() < n {
        return 0.0;
    }
    let total = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let msg = RawMessage(Bytes::from(vec![7u8; size]));
    let mut readers = Vec::new();
    for (c, s) in pairs {
        let (msg, stop2) = (msg.clone(), stop.clone());
        workers.next().spawn(async move {
            loop {
                tokio::select! {
                    () = stop2.cancelled() => break,
                    r = c.write(&msg) => if r.is_err() { break },
                }
            }
            c.close(false).await;
        });
        let (total, stop2) = (total.clone(), stop.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        readers.push(rx);
        workers.next().spawn(async move {
            loop {
                tokio::select! {
                    () = stop2.cancelled() => break,
                    r = s.read() => match r {
                        Ok((m, _)) => { total.fetch_add(m as u64, Ordering::Relaxed); }
                        Err(_) => break,
                    },
                }
            }
            s.close(false).await;
            let _ = tx.send(());
        });
    }
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = total.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let bytes = total.load(Ordering::Relaxed) - before;
    let elapsed = start.elapsed().as_secs_f64();
    stop.cancel();
    for r in readers {
        let _ = r.await;
    }
    bytes as f64 / elapsed
}

/// Echoes every inbound message on its connection (the peer's subscriber of the round trip).
struct Echo(tezos_p2p::actor::Connection<RawMessage, ConnectionMetadata>);

impl actix::Actor for Echo {
    type Context = actix::Context<Self>;
}

impl actix::Handler<tezos_p2p::actor::Inbound<RawMessage>> for Echo {
    type Result = ();

    fn handle(&mut self, m: tezos_p2p::actor::Inbound<RawMessage>, _: &mut Self::Context) {
        let _ = self.0.write_now(&m.message);
    }
}

/// Our subscriber of the round trip: tells the measuring task each reply arrived.
struct Probe(tokio::sync::mpsc::Sender<()>);

impl actix::Actor for Probe {
    type Context = actix::Context<Self>;
}

impl actix::Handler<tezos_p2p::actor::Inbound<RawMessage>> for Probe {
    type Result = ();

    fn handle(&mut self, _: tezos_p2p::actor::Inbound<RawMessage>, _: &mut Self::Context) {
        let _ = self.0.try_send(());
    }
}

/// Round trips of a `size`-byte message over an established connection: write → the peer's
/// subscriber, which writes it back → our subscriber; (p50, p99). Each end and its subscriber
/// live on one arbiter, the two ends on two (as a node and a peer). With `load`, another
/// connection between the same two arbiters is saturated with 64 KiB messages meanwhile.
pub async fn message_rtt(workers: &Workers, size: usize, rounds: usize, load: bool) -> (Duration, Duration) {
    let lat = message_rtt_samples(workers, size, rounds, load).await;
    (quantile(&lat, 0.5), quantile(&lat, 0.99))
}

/// The round trips of [`message_rtt`], sorted (the first tenth, a warm-up, left out).
pub async fn message_rtt_samples(workers: &Workers, size: usize, rounds: usize, load: bool) -> Vec<Duration> {
    let zero = Vec::new();
    let (here, there) = (workers.next(), workers.next());
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else { return zero };
    let _ = listener.set_nonblocking(true);
    let Ok(addr) = listener.local_addr() else { return zero };
    let stop = tokio_util::sync::CancellationToken::new();
    let links = if load { 2 } else { 1 };
    // The far ends: the first echoes through a subscriber, the second (load) drains.
    let stop2 = stop.clone();
    there.spawn(async move {
        use actix::Actor as _;
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
        let mut held = Vec::new();
        for i in 0..links {
            let Ok((s, _)) = listener.accept().await else { return };
            let Ok(auth) = actor::authenticate(s, local(), true, Duration::from_secs(10)).await else { return };
            let Ok(c) = auth.accept::<RawMessage>(ConnectionConfig::default()).await else { return };
            if i == 0 {
                c.subscribe(Echo(c.clone()).start().recipient());
                held.push(c);
            } else {
                let stop3 = stop2.clone();
                actix::spawn(async move {
                    loop {
                        tokio::select! {
                            () = stop3.cancelled() => break,
                            r = c.read() => if r.is_err() { break },
                        }
                    }
                    c.close(false).await;
                });
            }
        }
        stop2.cancelled().await;
        for c in held {
            c.close(false).await;
        }
    });
    let (result_tx, result_rx) = tokio::sync::oneshot::channel();
    let stop2 = stop.clone();
    here.spawn(async move {
        use actix::Actor as _;
        let connect = || async {
            actor::connect(addr, local(), Duration::from_secs(10))
                .await
                .ok()?
                .accept::<RawMessage>(ConnectionConfig::default())
                .await
                .ok()
        };
        let Some(ours) = connect().await else { return };
        if load {
            let Some(busy) = connect().await else { return };
            let big = RawMessage(Bytes::from(vec![3u8; 64 * 1024]));
            let stop3 = stop2.clone();
            actix::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop3.cancelled() => break,
                        r = busy.write(&big) => if r.is_err() { break },
                    }
                }
                busy.close(false).await;
            });
            // Let the saturating stream reach its pace.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        ours.subscribe(Probe(tx).start().recipient());
        let msg = RawMessage(Bytes::from(vec![5u8; size.saturating_sub(4)]));
        let mut lat = Vec::with_capacity(rounds);
        for i in 0..rounds + rounds / 10 {
            let t = Instant::now();
            if ours.write(&msg).await.is_err() || rx.recv().await.is_none() {
                break;
            }
            // The first tenth warms up.
            if i >= rounds / 10 {
                lat.push(t.elapsed());
            }
        }
        ours.close(false).await;
        let _ = result_tx.send(lat);
    });
    let mut lat = result_rx.await.unwrap_or_default();
    stop.cancel();
    lat.sort();
    lat
}

/// Broadcast fan-out: a `Node` with `peers` connected peers (plain connections in this process)
/// broadcasts `size`-byte messages. Returns (messages delivered per second at the receivers
/// while it broadcasts as fast as it can for `secs`, and the p50 and p99 time until the last
/// peer has a message, measured on 200 paced broadcasts).
pub async fn broadcast_fanout(peers: usize, size: usize, secs: f64) -> (f64, Duration, Duration) {
    // Broadcasts per burst in the flat-out phase: measured 4..16 as the best (a larger burst
    // only fills queues that then drop; a smaller one spends the time in pauses).
    const BURST: usize = 8;
    use tezos_p2p::actor::{Node, NodeConfig};
    let zero = (0.0, Duration::ZERO, Duration::ZERO);
    raise_nofile(2 * peers as u64 + 1024);
    let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
    config.listen_addr = "127.0.0.1:0".parse().ok();
    config.expected_pow = PowTarget::new(0.0).unwrap_or_else(|_| unreachable!());
    config.limits.max_connections = peers + 10;
    config.limits.max_pending_incoming = 256;
    config.admission = tezos_p2p::admission::AdmissionConfig::unlimited();
    let Ok(node) = Node::<RawMessage, ConnectionMetadata>::start(config).await else { return zero };
    let Some(addr) = node.listen_addr() else { return zero };
    let readers = Workers::new(2);
    let received = Arc::new(AtomicU64::new(0));
    // Per paced broadcast: how many peers have it, and when the last one got it.
    const PACED: usize = 200;
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..PACED).map(|_| AtomicU64::new(0)).collect());
    let last: Arc<std::sync::Mutex<Vec<Option<Instant>>>> = Arc::new(std::sync::Mutex::new(vec![None; PACED]));
    let stop = tokio_util::sync::CancellationToken::new();
    // Each peer's connection, and the task reading it, on one of the readers' arbiters.
    let mut ready = Vec::with_capacity(peers);
    for _ in 0..peers {
        let (received, counts, last, stop) = (received.clone(), counts.clone(), last.clone(), stop.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<bool>();
        ready.push(rx);
        readers.next().spawn(async move {
            let c = match actor::connect(addr, local(), Duration::from_secs(30)).await {
                Ok(auth) => auth.accept::<RawMessage>(ConnectionConfig::default()).await.ok(),
                Err(_) => None,
            };
            let _ = tx.send(c.is_some());
            let Some(c) = c else { return };
            loop {
                let r = tokio::select! {
                    () = stop.cancelled() => break,
                    r = c.read() => r,
                };
                let Ok((_, m)) = r else { break };
                received.fetch_add(1, Ordering::Relaxed);
                // Paced messages carry their index + 1 in the first two bytes.
                let tag = u16::from_be_bytes([m.0[0], m.0[1]]) as usize;
                if (1..=PACED).contains(&tag) && counts[tag - 1].fetch_add(1, Ordering::Relaxed) + 1 == peers as u64 {
                    if let Ok(mut l) = last.lock() {
                        l[tag - 1] = Some(Instant::now());
                    }
                }
            }
            c.close(false).await;
        });
        // A few dozen handshakes at a time: the accept backlog is finite.
        if ready.len() % 32 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for r in ready {
        let _ = r.await;
    }
    for _ in 0..500 {
        if node.connections().len() >= peers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Paced: one broadcast every 5 ms, timed until its last delivery.
    let mut sent_at = Vec::with_capacity(PACED);
    for i in 0..PACED {
        let mut body = vec![0u8; size.max(2)];
        body[..2].copy_from_slice(&((i + 1) as u16).to_be_bytes());
        sent_at.push(Instant::now());
        node.broadcast(&RawMessage(Bytes::from(body)));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lat: Vec<Duration> = {
        let l = last.lock().map(|l| l.clone()).unwrap_or_default();
        l.iter().zip(&sent_at).filter_map(|(done, sent)| done.map(|d| d.duration_since(*sent))).collect()
    };
    lat.sort();
    // Flat out: bursts of broadcasts, more than the peers can take (broadcast drops where a
    // queue is full), with a 1 ms pause between bursts so that the broadcasting thread does not
    // spin on a core the connections need.
    let msg = RawMessage(Bytes::from(vec![0u8; size]));
    let before = received.load(Ordering::Relaxed);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..BURST {
            node.broadcast(&msg);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = (received.load(Ordering::Relaxed) - before) as f64 / start.elapsed().as_secs_f64();
    stop.cancel();
    node.shutdown().await;
    (rate, quantile(&lat, 0.5), quantile(&lat, 0.99))
}

/// Queue budgets of the memory-under-traffic figure, each way.
pub const LOADED_QUEUE_BYTES: usize = 128 * 1024;

/// Accepts `n` connections whose peers (in another process) each send one `in_flight`-byte
/// message and never read; sends each peer one `in_flight`-byte message too. Returns the
/// resident memory added per connection, in bytes, with that traffic in flight.
pub async fn loaded_memory_server(
    listener: tokio::net::TcpListener,
    n: usize,
    in_flight: usize,
) -> Result<(f64, Vec<tezos_p2p::actor::Connection<RawMessage, ConnectionMetadata>>), String> {
    let server_local = local();
    let config = ConnectionConfig {
        incoming_queue_bytes: LOADED_QUEUE_BYTES,
        outgoing_queue_bytes: LOADED_QUEUE_BYTES,
        ..ConnectionConfig::default()
    };
    let before = rss_bytes().unwrap_or(0);
    let msg = RawMessage(Bytes::from(vec![4u8; in_flight]));
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let (s, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let auth = actor::authenticate(s, server_local.clone(), true, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        let c = auth.accept::<RawMessage>(config.clone()).await.map_err(|e| e.to_string())?;
        let _ = c.write_now(&msg);
        conns.push(c);
    }
    // Until every peer's message sits in our read queue.
    for _ in 0..3000 {
        if conns.iter().all(|c| c.read_queue_bytes() >= in_flight) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = rss_bytes().unwrap_or(0);
    Ok((after.saturating_sub(before) as f64 / n.max(1) as f64, conns))
}

/// The other side of [`loaded_memory_server`]: `n` connections, each sending one
/// `in_flight`-byte message, never reading.
pub async fn loaded_memory_client(
    addr: SocketAddr,
    n: usize,
    in_flight: usize,
) -> Vec<tezos_p2p::actor::Connection<RawMessage, ConnectionMetadata>> {
    let conns = idle_memory_client(addr, n).await;
    let msg = RawMessage(Bytes::from(vec![6u8; in_flight]));
    for c in &conns {
        let _ = c.write_now(&msg);
    }
    conns
}
