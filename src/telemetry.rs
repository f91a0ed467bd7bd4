//! Metrics: every name, label and help text in one place, and the Prometheus endpoint.
//!
//! Instrumentation goes through the `metrics` facade: with no recorder installed every call is a
//! no-op. Hot paths (bytes and messages) use handles taken once per connection, so recording is
//! an atomic add. Labels have small closed value sets; per-peer labels exist only when opted in
//! with [`Telemetry::serve`]'s `per_peer` flag (their cardinality grows with the number of peers).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Open connections (gauge), label `direction` = `incoming` | `outgoing`.
pub const CONNECTIONS: &str = "tezos_p2p_connections";
/// Handshakes (counter), label `result` = `accepted` | `rejected` | `failed`.
pub const HANDSHAKES: &str = "tezos_p2p_handshakes_total";
/// Handshake phase durations (histogram), label `phase` = `connection_message` |
/// `key_derivation` | `metadata` | `ack`.
pub const HANDSHAKE_DURATION: &str = "tezos_p2p_handshake_duration_seconds";
/// Refusals (counter), label `reason`: an octez error name, a Nack motive, or an ACL cause.
pub const REJECTIONS: &str = "tezos_p2p_rejections_total";
/// Raw socket bytes sent (counter).
pub const SENT_BYTES: &str = "tezos_p2p_sent_bytes_total";
/// Raw socket bytes received (counter).
pub const RECEIVED_BYTES: &str = "tezos_p2p_received_bytes_total";
/// Messages sent (counter).
pub const SENT_MESSAGES: &str = "tezos_p2p_sent_messages_total";
/// Messages received (counter).
pub const RECEIVED_MESSAGES: &str = "tezos_p2p_received_messages_total";
/// Chunks that failed to open (counter), label `stage` = `handshake` | `ack` | `message`.
pub const DECIPHER_FAILURES: &str = "tezos_p2p_decipher_failures_total";
/// Bytes waiting in read queues (gauge, sum over connections).
pub const READ_QUEUE_BYTES: &str = "tezos_p2p_read_queue_bytes";
/// Bytes waiting in write queues (gauge, sum over connections).
pub const WRITE_QUEUE_BYTES: &str = "tezos_p2p_write_queue_bytes";
/// `write` calls that had to wait for room (counter).
pub const WRITE_WAITS: &str = "tezos_p2p_write_backpressure_waits_total";
/// Configured global limit (gauge, 0 = unlimited), label `direction` = `upload` | `download`.
pub const BANDWIDTH_LIMIT: &str = "tezos_p2p_bandwidth_limit_bytes_per_second";
/// Smoothed global rate (gauge), label `direction` = `upload` | `download`.
pub const BANDWIDTH_RATE: &str = "tezos_p2p_bandwidth_bytes_per_second";
/// Cumulative time connections spent waiting for quota (gauge, since the `metrics` facade's
/// counters are integers), label `direction`. Use `rate()` on it for "seconds throttled per second".
pub const THROTTLED: &str = "tezos_p2p_throttled_seconds";
/// Greylist entries (gauge), label `kind` = `ip` | `peer`.
pub const GREYLIST: &str = "tezos_p2p_greylist_entries";
/// Peers in the registry (gauge), label `state` = `running` | `known_points`.
pub const PEERS: &str = "tezos_p2p_registry_peers";

/// P2P-layer messages (counter), labels `kind` = `Bootstrap` | `Advertise` | `Swap_request` |
/// `Swap_ack` | `Disconnect`, `direction` = `sent` | `received`.
pub const OVERLAY_MESSAGES: &str = "tezos_p2p_overlay_messages_total";
/// P2P-layer messages held by the per-connection throttle (counter), label `kind`.
pub const OVERLAY_HELD: &str = "tezos_p2p_overlay_held_total";
/// P2P-layer messages dropped because the overlay's mailbox was full (counter).
pub const OVERLAY_DROPPED: &str = "tezos_p2p_overlay_dropped_total";
/// Points received in `Advertise` messages (counter), label `result` = `new` | `known`.
pub const ADVERTISED_POINTS: &str = "tezos_p2p_advertised_points_total";
/// Dials (counter), label `result` = `connected` | `failed` | `deferred` (maintenance out of
/// its dial budget).
pub const DIALS: &str = "tezos_p2p_dials_total";
/// Maintenance steps (counter), label `outcome` = `too_few` | `too_many` | `satisfied`.
pub const MAINTENANCE_RUNS: &str = "tezos_p2p_maintenance_runs_total";
/// Swaps (counter), label `result` = `requested` | `accepted` | `succeeded` | `failed` |
/// `ignored`.
pub const SWAPS: &str = "tezos_p2p_swaps_total";
/// Known points (gauge), label `state` = `requested` | `accepted` | `running` | `disconnected`.
pub const POINTS: &str = "tezos_p2p_points";
/// Known peers (gauge).
pub const KNOWN_PEERS: &str = "tezos_p2p_known_peers";
/// Panics caught on a connection's path (counter), label `where` = `encode` | `decode` |
/// `reader` | `writer` | `handshake`; each closed one connection.
pub const PANICS: &str = "tezos_p2p_panics_total";

/// Buckets of the handshake phase histogram, in seconds: 50 µs (one X25519) to 5 s (the
/// handshake timeout), roughly ×2.5 apart.
pub const HANDSHAKE_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

static PER_PEER: AtomicBool = AtomicBool::new(false);

/// Whether per-peer labels are on.
pub fn per_peer() -> bool {
    PER_PEER.load(Ordering::Relaxed)
}

/// Registers every metric's help text and unit with the installed recorder.
pub fn describe_all() {
    describe_gauge!(CONNECTIONS, "Open authenticated connections, by direction.");
    describe_counter!(HANDSHAKES, "Handshakes, by result (accepted, rejected, failed).");
    describe_histogram!(HANDSHAKE_DURATION, Unit::Seconds, "Duration of each handshake phase.");
    describe_counter!(REJECTIONS, "Sockets and peers turned away, by reason.");
    describe_counter!(
        SENT_BYTES,
        Unit::Bytes,
        "Raw socket bytes sent by running connections (chunk headers and tags included)."
    );
    describe_counter!(RECEIVED_BYTES, Unit::Bytes, "Raw socket bytes received.");
    describe_counter!(SENT_MESSAGES, "Messages sent.");
    describe_counter!(RECEIVED_MESSAGES, "Messages received.");
    describe_counter!(DECIPHER_FAILURES, "Chunks whose MAC did not verify, by stage.");
    describe_gauge!(READ_QUEUE_BYTES, Unit::Bytes, "Bytes charged to read queues, over all connections.");
    describe_gauge!(WRITE_QUEUE_BYTES, Unit::Bytes, "Bytes charged to write queues, over all connections.");
    describe_counter!(WRITE_WAITS, "Writes that waited for room in a full write queue.");
    describe_gauge!(
        BANDWIDTH_LIMIT,
        Unit::Bytes,
        "Configured global bandwidth limit in bytes per second (0: unlimited)."
    );
    describe_gauge!(BANDWIDTH_RATE, Unit::Bytes, "Smoothed global rate in bytes per second (octez moving average).");
    describe_gauge!(THROTTLED, Unit::Seconds, "Cumulative time connections spent waiting for bandwidth quota.");
    describe_gauge!(GREYLIST, "Greylist entries, by kind (ip, peer).");
    describe_gauge!(PEERS, "Registry peers and known points.");
    describe_counter!(
        OVERLAY_MESSAGES,
        "P2P-layer messages (Bootstrap, Advertise, Swap, Disconnect), by kind and direction."
    );
    describe_counter!(OVERLAY_HELD, "P2P-layer messages held by the per-connection throttle, by kind.");
    describe_counter!(OVERLAY_DROPPED, "P2P-layer messages dropped because the overlay was saturated.");
    describe_counter!(ADVERTISED_POINTS, "Points received in Advertise messages, new or already known.");
    describe_counter!(DIALS, "Outgoing connection attempts, by result.");
    describe_counter!(MAINTENANCE_RUNS, "Maintenance steps, by outcome.");
    describe_counter!(SWAPS, "Connection swaps, by result.");
    describe_gauge!(POINTS, "Known points, by state.");
    describe_gauge!(KNOWN_PEERS, "Known peers.");
    describe_counter!(PANICS, "Panics caught on a connection's path (each closed that connection), by where.");
    // Series with a closed label set exist from the start (at 0), so that dashboards and alerts
    // see "nothing happened" rather than "no data".
    for stage in ["handshake", "ack", "message"] {
        metrics::counter!(DECIPHER_FAILURES, "stage" => stage).increment(0);
    }
    for result in ["accepted", "rejected", "failed"] {
        metrics::counter!(HANDSHAKES, "result" => result).increment(0);
    }
    metrics::counter!(WRITE_WAITS).increment(0);
    for kind in ["Bootstrap", "Advertise", "Swap_request", "Swap_ack", "Disconnect"] {
        for direction in ["sent", "received"] {
            metrics::counter!(OVERLAY_MESSAGES, "kind" => kind, "direction" => direction).increment(0);
        }
    }
    metrics::counter!(OVERLAY_DROPPED).increment(0);
    for kind in ["Bootstrap", "Advertise", "Swap_request", "Swap_ack"] {
        metrics::counter!(OVERLAY_HELD, "kind" => kind).increment(0);
    }
    for result in ["new", "known"] {
        metrics::counter!(ADVERTISED_POINTS, "result" => result).increment(0);
    }
    for result in ["connected", "failed", "deferred"] {
        metrics::counter!(DIALS, "result" => result).increment(0);
    }
    for outcome in ["too_few", "too_many", "satisfied"] {
        metrics::counter!(MAINTENANCE_RUNS, "outcome" => outcome).increment(0);
    }
    for result in ["requested", "accepted", "succeeded", "failed", "ignored"] {
        metrics::counter!(SWAPS, "result" => result).increment(0);
    }
    for place in ["encode", "decode", "reader", "writer", "handshake"] {
        metrics::counter!(PANICS, "where" => place).increment(0);
    }
    if !per_peer() {
        for name in [SENT_BYTES, RECEIVED_BYTES, SENT_MESSAGES, RECEIVED_MESSAGES] {
            metrics::counter!(name).increment(0);
        }
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The address is taken or not ours.
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A recorder is already installed in this process.
    #[error("a metrics recorder is already installed")]
    AlreadyInstalled,
}

/// The installed Prometheus recorder and its HTTP endpoint.
pub struct Telemetry {
    handle: PrometheusHandle,
    addr: SocketAddr,
}

impl Telemetry {
    /// Installs the Prometheus recorder (process-wide) and serves `GET /metrics` on `addr`
    /// (port 0 picks a free port; see [`Telemetry::addr`]). `per_peer` adds a `peer` label to
    /// byte and message counters: only for small deployments. Must run inside a tokio runtime.
    pub async fn serve(addr: SocketAddr, per_peer: bool) -> Result<Self, TelemetryError> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| TelemetryError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| TelemetryError::Bind { addr, source })?;
        let handle = Self::install(per_peer)?;
        let h = handle.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let h = h.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), respond(stream, &h)).await;
                });
            }
        });
        Ok(Self { handle, addr: bound })
    }

    /// Installs the recorder without an endpoint (render with [`Telemetry::render_with`]).
    pub fn install(per_peer: bool) -> Result<PrometheusHandle, TelemetryError> {
        let recorder = PrometheusBuilder::new()
            // Real Prometheus histograms (not summaries), so they aggregate across nodes.
            .set_buckets_for_metric(Matcher::Full(HANDSHAKE_DURATION.to_owned()), HANDSHAKE_BUCKETS)
            .map_err(|_| TelemetryError::AlreadyInstalled)?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::AlreadyInstalled)?;
        PER_PEER.store(per_peer, Ordering::Relaxed);
        describe_all();
        Ok(handle)
    }

    /// The bound address of the endpoint.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current exposition text.
    pub fn render(&self) -> String {
        Self::render_with(&self.handle)
    }

    /// The exposition text of `handle`.
    pub fn render_with(handle: &PrometheusHandle) -> String {
        handle.run_upkeep();
        handle.render()
    }
}

/// Answers one HTTP/1.x request: the exposition for `GET /metrics` (or `/`), 404 otherwise.
async fn respond(mut stream: tokio::net::TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    // Requests are tiny; 8 KiB bounds what a client can make us hold.
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        if n == buf.len() {
            return Ok(());
        }
        let m = stream.read(&mut buf[n..]).await?;
        if m == 0 {
            return Ok(());
        }
        n += m;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) =
        if line.starts_with("GET ") && (path == "/metrics" || path == "/" || path.starts_with("/metrics?")) {
            ("200 OK", Telemetry::render_with(handle))
        } else {
            ("404 Not Found", "not found\n".to_owned())
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
