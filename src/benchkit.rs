//! Measurement helpers shared by `tezos-p2p bench` and the benchmark examples (not a stable
//! API). Everything runs on loopback inside the calling actix `System`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::actor::{self, ConnectionConfig, Limits, Scheduler, Workers};
use crate::crypto::{ChannelKey, CryptoBackend, Nonce, SecretKey};
use crate::handshake::{ExpectConnectionMessage, Handshake, LocalConfig, Session, Status};
use crate::identity::Identity;
use crate::message::RawMessage;
use crate::pow::{PowTarget, Stamp};
use crate::wire::{ConnectionMetadata, NetworkVersion};

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
        crypto_backend: crate::crypto::CryptoBackend::default(),
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

/// Completed handshakes (authenticate + accept, both ends in this process) per second with
/// `in_flight` concurrent dialers for `secs`; returns (rate, p50, p99) latencies of the dialer.
pub async fn handshake_rate(workers: &Workers, in_flight: usize, secs: f64) -> (f64, Duration, Duration) {
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else { return (0.0, Duration::ZERO, Duration::ZERO) };
    let _ = listener.set_nonblocking(true);
    let Ok(addr) = listener.local_addr() else { return (0.0, Duration::ZERO, Duration::ZERO) };
    let server_local = local();
    let stop = tokio_util::sync::CancellationToken::new();
    // The accepting side: one accept loop, each handshake on the next arbiter.
    let handles: Vec<_> = (0..workers.len()).map(|_| workers.next()).collect();
    let accept_stop = stop.clone();
    workers.next().spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
        let mut i = 0usize;
        loop {
            let s = tokio::select! {
                () = accept_stop.cancelled() => return,
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            };
            let Ok(std) = s.into_std() else { continue };
            let local = server_local.clone();
            i += 1;
            handles[i % handles.len()].spawn(async move {
                let Ok(s) = tokio::net::TcpStream::from_std(std) else { return };
                if let Ok(auth) = actor::authenticate(s, local, true, Duration::from_secs(10)).await {
                    if let Ok(c) = auth.accept::<RawMessage>(ConnectionConfig::default()).await {
                        c.close(false).await;
                    }
                }
            });
        }
    });
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (fin_tx, mut fin_rx) = tokio::sync::mpsc::channel::<()>(in_flight.max(1));
    let dialer_local = local();
    for k in 0..in_flight {
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
            let _ = k;
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
) -> Result<(f64, Vec<crate::actor::Connection<RawMessage, ConnectionMetadata>>), String> {
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
/// and returns them (keep them to keep the connections open).
pub async fn idle_memory_client(
    addr: SocketAddr,
    n: usize,
) -> Vec<crate::actor::Connection<RawMessage, ConnectionMetadata>> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = (n - conns.len()).min(32);
        let mut set = Vec::with_capacity(batch);
        for _ in 0..batch {
            // One identity per connection: a node refuses a second connection of a peer id.
            set.push(actor::connect(addr, local(), Duration::from_secs(30)));
        }
        for f in set {
            if let Ok(auth) = f.await {
                if let Ok(c) = auth.accept::<RawMessage>(ConnectionConfig::default()).await {
                    conns.push(c);
                }
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
