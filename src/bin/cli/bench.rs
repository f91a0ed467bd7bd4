//! `tezos-p2p bench`: every headline figure beside its ceiling or target, measured in one run on
//! this machine; `--json PATH` writes them too.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::benchkit;
use serde_json::json;
use tezos_p2p::actor::{ConnectionConfig, Workers};
use tezos_p2p::bandwidth::jain_index;
use tezos_p2p::crypto::CryptoBackend;
use tezos_p2p::telemetry::Telemetry;
use tezos_p2p::wire::MAX_CONTENT_LENGTH;

/// The backend the figures are measured with: this build's default (libsodium when built with
/// `--features sodium`, else pure Rust).
fn backend() -> CryptoBackend {
    CryptoBackend::default()
}

struct Figure {
    name: &'static str,
    value: f64,
    unit: &'static str,
    ceiling: Option<(f64, &'static str)>,
    /// Whether value / ceiling is a meaningful ratio (same unit).
    comparable: bool,
    target: &'static str,
    met: bool,
}

fn say(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Child mode for the metrics on/off comparison (a recorder is process-wide).
pub fn metrics_child(on: bool, secs: f64) -> ExitCode {
    let rate = actix::System::new().block_on(async move {
        let telemetry = if on {
            Telemetry::serve("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()), false).await.ok()
        } else {
            None
        };
        if let Some(t) = &telemetry {
            let addr = t.addr();
            // Exported as a scraper would take it, every second.
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                    use std::io::{Read as _, Write as _};
                    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
                    let _ = s.read_to_end(&mut Vec::new());
                }
            });
        }
        let workers = Workers::new(2);
        // One arbiter per core, pinned: at the sodium build's ~1.7 GB/s the unpinned rate of
        // identical runs spread from 1.5 to 2.0 GB/s as threads migrated, which drowned the
        // recorder's real cost (0.1 % of CPU samples under perf); pinned runs agree within ±3 %.
        for core in core_affinity::get_core_ids().unwrap_or_default().into_iter().take(workers.len()) {
            workers.next().spawn(async move {
                core_affinity::set_for_current(core);
            });
        }
        benchkit::connection_rate(&workers, 64 * 1024, secs, ConnectionConfig::default()).await
    });
    println!("{rate}");
    ExitCode::SUCCESS
}

/// Child mode for the memory figures: dials `n` connections to `addr` (each sending 64 KiB
/// with `traffic`), says `ready`, and holds them until its standard input closes.
pub fn idle_child(addr: std::net::SocketAddr, n: usize, traffic: bool) -> ExitCode {
    benchkit::raise_nofile(n as u64 + 1024);
    actix::System::new().block_on(async move {
        let conns = if traffic {
            benchkit::loaded_memory_client(addr, n, 64 * 1024).await
        } else {
            benchkit::idle_memory_client(addr, n).await
        };
        println!("ready {}", conns.len());
        let _ =
            tokio::task::spawn_blocking(|| std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())).await;
        drop(conns);
    });
    ExitCode::SUCCESS
}

/// Child mode for the memory figures' measuring side: in a fresh process (so the allocator
/// holds no memory freed by earlier figures, which new connections would reuse and hide),
/// accepts `n` connections from a dialing grandchild, prints the resident bytes they added per
/// connection, and exits.
pub fn memory_child(n: usize, mode: &str) -> ExitCode {
    let traffic = match mode {
        "traffic" => true,
        "idle" => false,
        other => {
            eprintln!("--memory-child takes idle or traffic, not {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let result = actix::System::new().block_on(connection_memory_here(n, traffic));
    match result {
        Ok(per) => {
            println!("{per}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("memory measurement failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resident bytes per connection with `n` connections, measured by [`memory_child`] in its own
/// process: idle, or (`traffic`) with 64 KiB in flight each way.
async fn connection_memory(n: usize, traffic: bool) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mode = if traffic { "traffic" } else { "idle" };
    let out = tokio::process::Command::new(exe)
        .args(["bench", "--memory-child", mode, "--count", &n.to_string()])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    let per: f64 = text.trim().parse().map_err(|_| format!("unexpected output {text:?}"))?;
    // No growth at all means the figure measured nothing (e.g. RSS unreadable): report a
    // failure rather than a perfect score.
    if per.is_nan() || per <= 0.0 {
        return Err(format!("no resident-memory growth measured for {n} connections"));
    }
    Ok(per)
}

/// The measuring side of [`connection_memory`], in this process, with the dialing ends in a
/// child process (so each process holds `n` sockets).
async fn connection_memory_here(n: usize, traffic: bool) -> Result<f64, String> {
    benchkit::raise_nofile(n as u64 + 1024);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let flag = if traffic { "--traffic-child" } else { "--idle-child" };
    let mut child = tokio::process::Command::new(exe)
        .args(["bench", flag, &addr.to_string(), "--count", &n.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let result = if traffic {
        benchkit::loaded_memory_server(listener, n, 64 * 1024).await
    } else {
        benchkit::idle_memory_server(listener, n).await
    };
    if result.is_err() {
        // The dialer would keep retrying against a closed listener: stop it now.
        let _ = child.start_kill();
    }
    drop(child.stdin.take());
    let _ = child.wait().await;
    result.map(|(per, conns)| {
        drop(conns);
        per
    })
}

/// Starts a figure: waits (up to 15 s) until the previous figure's connections have all closed,
/// so no figure pays for another's teardown, then says what it measures.
async fn phase(what: &str) {
    settle().await;
    say(what);
}

/// Waits (up to 15 s) until no connection is open in this process.
async fn settle() {
    let until = Instant::now() + Duration::from_secs(15);
    while tezos_p2p::actor::live_connections() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = tezos_p2p::actor::live_connections();
    if left > 0 {
        say(&format!("({left} connections of the previous figure still open)"));
    }
}

/// The median of `v` (0 when empty); sorts `v`.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn child_rate(on: bool, secs: f64) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .args(["bench", "--metrics-child", if on { "on" } else { "off" }, "--seconds", &secs.to_string()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The figures at scale: raw-TCP ceilings, many connections, latency, fan-out, memory.
struct Scale {
    tcp_bulk: f64,
    tcp_rtt: (Duration, Duration),
    /// Aggregate rate of 100 connections and the one-connection rate measured beside it.
    agg100: (f64, f64),
    agg1000: f64,
    rtt: (Duration, Duration),
    rtt_loaded: (Duration, Duration),
    fanout: (f64, Duration, Duration),
    loaded: Result<f64, String>,
}

/// Runs every measurement; prints a table and optionally writes JSON.
pub fn run(json_path: Option<PathBuf>) -> ExitCode {
    let mut figures = Vec::new();
    let secs = 4.0;
    let backend = backend();
    let sodium = backend.name() == "sodium";
    say(&format!("crypto backend: {backend} ({})", backend.description()));
    // The other backends compiled into this build, measured on the same machine in the same run
    // for a direct ratio (a `sodium` build also carries the pure-Rust backend).
    let others: Vec<CryptoBackend> = CryptoBackend::ALL.iter().copied().filter(|&b| b != backend).collect();
    let mut other_raw64 = Vec::new();
    for &b in &others {
        say(&format!("raw seal+open of 65517-byte chunks (1 core), {b} backend"));
        other_raw64.push(benchkit::raw_seal_open_using(b, MAX_CONTENT_LENGTH, 3.0));
    }

    say("raw seal+open of 65517-byte chunks (1 core)");
    let raw64 = benchkit::raw_seal_open(MAX_CONTENT_LENGTH, 3.0);
    say("raw seal+open of 1 KiB payloads (1 core)");
    let raw1k = benchkit::raw_seal_open(1024 + 4, 2.0);
    say("channel key precomputations (1 core)");
    let precompute = benchkit::precompute_rate(2.0);
    say("protocol CPU: bad-PoW refusal vs full handshake");
    let (per_refusal, per_handshake) = benchkit::pow_rejection_vs_handshake_cpu(3.0);

    let system = actix::System::new();
    let others_for_run = others.clone();
    let scale = system.block_on(async move {
        let bound = Duration::from_secs(180);
        let workers = Workers::new(2);
        phase("raw TCP: one stream, 64 KiB writes").await;
        let tcp_bulk =
            tokio::time::timeout(bound, benchkit::tcp_bulk_rate(&workers, 64 * 1024, secs)).await.unwrap_or(0.0);
        phase("100 concurrent connections, 64 KiB messages (alternating with one connection, 5 pairs)").await;
        // This VM's bulk rate drifts by ±10 % between minutes, which alone moved the ratio from
        // 0.80 to 0.94 between runs: the 100-connection figure and its one-connection ceiling are
        // measured back to back, five times in alternating order, and the medians compared.
        let (mut aggs, mut singles) = (Vec::new(), Vec::new());
        for i in 0..5 {
            let agg = benchkit::aggregate_rate(&workers, 100, 64 * 1024, secs / 2.0);
            let one = benchkit::connection_rate(&workers, 64 * 1024, secs / 2.0, ConnectionConfig::default());
            if i % 2 == 0 {
                singles.push(tokio::time::timeout(bound, one).await.unwrap_or(0.0));
                settle().await;
                aggs.push(tokio::time::timeout(bound, agg).await.unwrap_or(0.0));
            } else {
                aggs.push(tokio::time::timeout(bound, agg).await.unwrap_or(0.0));
                settle().await;
                singles.push(tokio::time::timeout(bound, one).await.unwrap_or(0.0));
            }
            settle().await;
        }
        let agg100 = (median(&mut aggs), median(&mut singles));
        phase("1,000 concurrent connections, 1 KiB messages").await;
        let agg1000 =
            tokio::time::timeout(bound, benchkit::aggregate_rate(&workers, 1000, 1024, secs)).await.unwrap_or(0.0);
        phase("100-byte round trips: raw TCP, messages, messages beside a saturated connection (5 rounds)").await;
        // How fast a sleeping core wakes up decides a loopback round trip on this VM: the raw
        // TCP p50 measured 75 µs in one minute and 18 µs in another (when other work kept the
        // cores from idling), while ours moved less. The three are measured in alternating
        // blocks, so each ratio compares round trips taken under the same conditions.
        let (mut raw, mut ours, mut beside) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..5 {
            let mut order = [0, 1, 2];
            order.rotate_left(i % 3);
            for which in order {
                let block = match which {
                    0 => tokio::time::timeout(bound, benchkit::tcp_rtt_samples(&workers, 100, 4_000)).await,
                    1 => tokio::time::timeout(bound, benchkit::message_rtt_samples(&workers, 100, 4_000, false)).await,
                    _ => tokio::time::timeout(bound, benchkit::message_rtt_samples(&workers, 100, 4_000, true)).await,
                };
                [&mut raw, &mut ours, &mut beside][which].extend(block.unwrap_or_default());
                settle().await;
            }
        }
        let quantiles = |v: &mut Vec<Duration>| {
            v.sort();
            (benchkit::quantile(v, 0.5), benchkit::quantile(v, 0.99))
        };
        let (tcp_rtt, rtt, rtt_loaded) = (quantiles(&mut raw), quantiles(&mut ours), quantiles(&mut beside));
        phase("broadcast of 1 KiB messages to 500 peers").await;
        let fanout = tokio::time::timeout(bound, benchkit::broadcast_fanout(500, 1024, secs)).await.unwrap_or_default();
        phase("1,000 connections with 64 KiB in flight each way (peers in a child process)").await;
        let loaded = tokio::time::timeout(bound, connection_memory(1000, true))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        Scale { tcp_bulk, tcp_rtt, agg100, agg1000, rtt, rtt_loaded, fanout, loaded }
    });
    let (big, other_big, small, (hs_rate, p50, p99), tcp_hs, idle, fair) = system.block_on(async move {
        // Every phase is bounded, so a stuck measurement reports a failure instead of hanging.
        let bound = Duration::from_secs(120);
        let workers = Workers::new(2);
        phase("one connection, 64 KiB messages").await;
        let big = tokio::time::timeout(
            bound,
            benchkit::connection_rate(&workers, 64 * 1024, secs, ConnectionConfig::default()),
        )
        .await
        .unwrap_or(0.0);
        let mut other_big = Vec::new();
        for b in others_for_run {
            phase(&format!("one connection, 64 KiB messages, {b} backend")).await;
            let rate = benchkit::connection_rate_using(b, &workers, 64 * 1024, secs, ConnectionConfig::default());
            other_big.push(tokio::time::timeout(bound, rate).await.unwrap_or(0.0));
        }
        phase("one connection, 1 KiB messages").await;
        let small =
            tokio::time::timeout(bound, benchkit::connection_rate(&workers, 1024, secs, ConnectionConfig::default()))
                .await
                .unwrap_or(0.0);
        phase("8 greedy senders under a 20 MB/s download limit").await;
        let fair = tokio::time::timeout(bound, benchkit::limited_senders(&workers, 8, 20_000_000, 8.0))
            .await
            .unwrap_or_default();
        phase("raw TCP connections with the handshake's exchanges, 64 in flight").await;
        let tcp_hs =
            tokio::time::timeout(bound, benchkit::tcp_handshake_shape_rate(&workers, 64, secs)).await.unwrap_or(0.0);
        phase("handshakes, 64 in flight").await;
        let hs = tokio::time::timeout(bound, benchkit::handshake_rate(&workers, 64, secs)).await.unwrap_or((
            0.0,
            Duration::ZERO,
            Duration::ZERO,
        ));
        phase("10,000 idle authenticated connections (dialers in a child process)").await;
        let idle = tokio::time::timeout(bound, connection_memory(10_000, false))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        (big, other_big, small, hs, tcp_hs, idle, fair)
    });
    drop(system);
    say("metrics recorded and exported vs no recorder (child processes, alternating)");
    let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // Ten pairs of 2-second runs, one with and one without a recorder, back to back (the order
    // alternating), and the median of the ten per-pair ratios. This 2-core VM is noisy in a
    // particular way: at the sodium build's ~1.7 GB/s, runs fall into a ~1.6 and a ~1.8 GB/s
    // mode for reasons outside the process, so medians taken per side swung by ±4 % between
    // runs of identical binaries; a mode tends to last across neighbouring runs, so comparing
    // neighbours cancels most of it. (Under perf, the recorder's own cost is ~0.1 % of samples.)
    for round in 0..10 {
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        let mut pair = [None, None];
        for with_recorder in order {
            pair[usize::from(with_recorder)] = child_rate(with_recorder, 2.0);
        }
        if let [Some(without), Some(with)] = pair {
            off.push(without);
            on.push(with);
            if without > 0.0 {
                ratios.push(with / without);
            }
        }
    }
    say(&format!(
        "metrics off, MB/s: {}; on: {}",
        off.iter().map(|r| format!("{:.0}", r / 1e6)).collect::<Vec<_>>().join(" "),
        on.iter().map(|r| format!("{:.0}", r / 1e6)).collect::<Vec<_>>().join(" ")
    ));
    let (off, metrics_ratio) = (median(&mut off), median(&mut ratios));

    figures.push(Figure {
        name: "single-connection throughput, 64 KiB messages",
        value: big / 1e6,
        unit: "MB/s",
        ceiling: Some((raw64 / 1e6, "raw seal+open rate of 65517-byte chunks, 1 core")),
        comparable: true,
        target: if sodium { ">= 0.8x ceil, >= 1100" } else { ">= 0.8x the ceiling" },
        met: big >= 0.8 * raw64 && (!sodium || big >= 1.1e9),
    });
    for ((b, other), other_raw) in others.iter().zip(&other_big).zip(&other_raw64) {
        figures.push(Figure {
            name: match b.name() {
                "rust-crypto" => "single-connection throughput, 64 KiB messages, rust-crypto backend of this build",
                _ => "single-connection throughput, 64 KiB messages, other backend of this build",
            },
            value: other / 1e6,
            unit: "MB/s",
            ceiling: Some((other_raw / 1e6, "raw seal+open rate of 65517-byte chunks, 1 core, that backend")),
            comparable: true,
            target: "reported",
            met: true,
        });
        if sodium && b.name() == "rust-crypto" {
            figures.push(Figure {
                name: "single-connection throughput, 64 KiB: sodium / rust-crypto, same run",
                value: if *other > 0.0 { big / other } else { 0.0 },
                unit: "ratio",
                ceiling: None,
                comparable: false,
                target: ">= 2",
                met: *other > 0.0 && big >= 2.0 * other,
            });
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    figures.push(Figure {
        name: "raw TCP bulk rate, one stream, 64 KiB writes (ceiling)",
        value: scale.tcp_bulk / 1e6,
        unit: "MB/s",
        ceiling: None,
        comparable: false,
        target: "reported",
        met: scale.tcp_bulk > 0.0,
    });
    for (name, d) in [
        ("raw TCP round trip, 100 bytes, p50 (ceiling)", scale.tcp_rtt.0),
        ("raw TCP round trip, 100 bytes, p99 (ceiling)", scale.tcp_rtt.1),
    ] {
        figures.push(Figure {
            name,
            value: us(d),
            unit: "µs",
            ceiling: None,
            comparable: false,
            target: "reported",
            met: true,
        });
    }
    figures.push(Figure {
        name: "single-connection throughput, 64 KiB messages / raw TCP bulk",
        value: big / 1e6,
        unit: "MB/s",
        ceiling: Some((scale.tcp_bulk / 1e6, "raw TCP bulk rate, same runtime layout")),
        comparable: true,
        target: "reported",
        met: true,
    });
    figures.push(Figure {
        name: "aggregate throughput, 100 concurrent connections, 64 KiB messages",
        value: scale.agg100.0 / 1e6,
        unit: "MB/s",
        ceiling: Some((
            scale.agg100.1 / 1e6,
            "single-connection throughput, 64 KiB messages, measured alternately with it (medians of 5)",
        )),
        comparable: true,
        target: ">= 0.9x",
        met: scale.agg100.1 > 0.0 && scale.agg100.0 >= 0.9 * scale.agg100.1,
    });
    figures.push(Figure {
        name: "aggregate throughput, 1,000 concurrent connections, 1 KiB messages",
        value: scale.agg1000 / 1e6,
        unit: "MB/s",
        ceiling: Some((small / 1e6, "single-connection throughput, 1 KiB messages")),
        comparable: true,
        target: "reported",
        met: scale.agg1000 > 0.0,
    });
    for (name, value, ceiling, factor) in [
        ("message round trip, 100 bytes, p50", scale.rtt.0, scale.tcp_rtt.0, 2.0),
        ("message round trip, 100 bytes, p99", scale.rtt.1, scale.tcp_rtt.1, 3.0),
        ("message round trip beside a saturated connection, 100 bytes, p99", scale.rtt_loaded.1, scale.tcp_rtt.1, 5.0),
    ] {
        figures.push(Figure {
            name,
            value: us(value),
            unit: "µs",
            ceiling: Some((
                us(ceiling),
                "raw TCP round trip of 100 bytes, same quantile, in blocks alternating with it",
            )),
            comparable: true,
            target: match factor as u32 {
                2 => "<= 2.0x",
                3 => "<= 3.0x",
                _ => "<= 5.0x",
            },
            met: !value.is_zero() && value.as_secs_f64() <= factor * ceiling.as_secs_f64(),
        });
    }
    figures.push(Figure {
        name: "message round trip beside a saturated connection, 100 bytes, p50",
        value: us(scale.rtt_loaded.0),
        unit: "µs",
        ceiling: Some((us(scale.tcp_rtt.0), "raw TCP round trip of 100 bytes, p50, in blocks alternating with it")),
        comparable: true,
        target: "reported",
        met: true,
    });
    // Frames of 1 KiB messages are 1028 bytes (the 4-byte length included).
    let single_msgs = small / 1028.0;
    figures.push(Figure {
        name: "broadcast fan-out, 1 KiB messages to 500 peers, messages delivered per second",
        value: scale.fanout.0,
        unit: "messages/s",
        ceiling: Some((single_msgs, "single-connection message rate, 1 KiB messages")),
        comparable: true,
        target: ">= 0.5x",
        met: single_msgs > 0.0 && scale.fanout.0 >= 0.5 * single_msgs,
    });
    for (name, d) in [
        ("broadcast to 500 peers, time until the last peer has the message, p50", scale.fanout.1),
        ("broadcast to 500 peers, time until the last peer has the message, p99", scale.fanout.2),
    ] {
        figures.push(Figure {
            name,
            value: d.as_secs_f64() * 1e3,
            unit: "ms",
            ceiling: None,
            comparable: false,
            target: "reported",
            met: !d.is_zero(),
        });
    }
    match &scale.loaded {
        Ok(per) => {
            let budgets = 2.0 * benchkit::LOADED_QUEUE_BYTES as f64;
            figures.push(Figure {
                name: "resident memory per connection under traffic, 1,000 connections, 64 KiB in flight each way",
                value: per / 1024.0,
                unit: "KiB",
                ceiling: Some((budgets / 1024.0, "configured queue budgets (read + write) per connection")),
                comparable: true,
                target: "<= 3.0x",
                met: *per <= 3.0 * budgets,
            });
        }
        Err(e) => say(&format!("memory-under-traffic measurement failed: {e}")),
    }
    figures.push(Figure {
        name: "single-connection throughput, 1 KiB messages",
        value: small / 1e6,
        unit: "MB/s",
        ceiling: Some((raw1k / 1e6, "raw seal+open rate of 1 KiB messages, 1 core")),
        comparable: true,
        target: ">= 200 MB/s",
        met: small >= 200e6,
    });
    figures.push(Figure {
        name: "raw TCP connections per second with the handshake's exchanges, 64 in flight (ceiling)",
        value: tcp_hs,
        unit: "connections/s",
        ceiling: Some((precompute, "channel keys per second on 1 core")),
        comparable: false,
        target: "reported",
        met: true,
    });
    figures.push(Figure {
        name: "completed handshakes per second, 64 in flight, both ends in one process",
        value: hs_rate,
        unit: "handshakes/s",
        // Per handshake the 2 cores spend the raw TCP work (2 / tcp_hs core-seconds) and two
        // channel keys (2 / precompute core-seconds): the physical ceiling is their sum's rate.
        ceiling: Some((
            1.0 / (1.0 / tcp_hs.max(1e-9) + 1.0 / precompute.max(1e-9)),
            "raw TCP connections with the same exchanges + 2 channel keys each, on the 2 cores",
        )),
        comparable: true,
        target: if sodium { ">= 15000/s" } else { ">= 7000/s" },
        met: hs_rate >= if sodium { 15000.0 } else { 7000.0 },
    });
    figures.push(Figure {
        name: "handshake latency p50",
        value: p50.as_secs_f64() * 1e3,
        unit: "ms",
        ceiling: None,
        comparable: false,
        target: "reported",
        met: true,
    });
    figures.push(Figure {
        name: "handshake latency p99",
        value: p99.as_secs_f64() * 1e3,
        unit: "ms",
        ceiling: None,
        comparable: false,
        target: "reported",
        met: true,
    });
    figures.push(Figure {
        name: "CPU per refused bad-PoW attempt / CPU per full handshake (protocol work, sockets excluded)",
        value: per_refusal / per_handshake,
        unit: "ratio",
        ceiling: Some((per_handshake * 1e6, "µs of CPU per full handshake, both roles")),
        comparable: false,
        target: "<= 0.02",
        met: per_refusal / per_handshake <= 0.02,
    });
    match idle {
        Ok(per) => figures.push(Figure {
            name: "resident memory per idle authenticated connection (accepting side), 10,000 connections open",
            value: per / 1024.0,
            unit: "KiB",
            ceiling: None,
            comparable: false,
            target: "<= 16 KiB",
            met: per <= 16.0 * 1024.0,
        }),
        Err(e) => say(&format!("idle-connection measurement failed: {e}")),
    }
    let total: u64 = fair.iter().sum();
    let rate = total as f64 / 8.0;
    let err = (rate / 20e6 - 1.0).abs();
    figures.push(Figure {
        name: "bandwidth-limit error, 8 greedy senders, 20 MB/s",
        value: err * 100.0,
        unit: "%",
        ceiling: Some((20.0, "configured limit, MB/s")),
        comparable: false,
        target: "<= 5%",
        met: err <= 0.05,
    });
    let jain = jain_index(&fair.iter().map(|&x| x as f64).collect::<Vec<_>>());
    figures.push(Figure {
        name: "Jain fairness, 8 equal senders",
        value: jain,
        unit: "index",
        ceiling: Some((1.0, "perfect fairness")),
        comparable: false,
        target: ">= 0.95",
        met: jain >= 0.95,
    });
    figures.push(Figure {
        name: "throughput with metrics recorded and exported / without a recorder (median of 10 pairs)",
        value: metrics_ratio,
        unit: "ratio",
        ceiling: Some((off / 1e6, "MB/s without a recorder, median")),
        comparable: false,
        target: ">= 0.97",
        met: metrics_ratio >= 0.97,
    });

    println!("backend: {backend} ({})", backend.description());
    for f in &figures {
        let ceiling = f
            .ceiling
            .map(|(c, d)| {
                let ratio = if f.comparable { format!(", ratio {:.3}", f.value / c) } else { String::new() };
                format!("; ceiling {c:.2} ({d}){ratio}")
            })
            .unwrap_or_default();
        println!(
            "{:<100} {:>12.3} {:<13} target {:<18} {}{ceiling}",
            f.name,
            f.value,
            f.unit,
            f.target,
            if f.met { "met" } else { "MISSED" }
        );
    }
    if let Some(path) = json_path {
        let doc = json!({
            "backend": backend.name(),
            "backend_description": backend.description(),
            "backends_compiled": CryptoBackend::ALL.iter().map(|b| b.name()).collect::<Vec<_>>(),
            "figures": figures.iter().map(|f| json!({
                "name": f.name,
                "value": f.value,
                "unit": f.unit,
                "ceiling": f.ceiling.map(|(c, _)| c),
                "ceiling_description": f.ceiling.map(|(_, d)| d),
                "ratio": f.ceiling.filter(|_| f.comparable).map(|(c, _)| f.value / c),
                "ratio_to_ceiling": f.ceiling.filter(|_| f.comparable).map(|(c, _)| f.value / c),
                "target": f.target,
                "met": f.met,
            })).collect::<Vec<_>>(),
        });
        if let Err(e) = std::fs::write(&path, format!("{doc:#}\n")) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
