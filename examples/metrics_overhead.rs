//! Throughput of one connection (64 KiB messages) with metrics recorded and exported, against
//! the same with no recorder installed, in one run. A recorder is process-wide, so each
//! measurement runs in a child process; rounds alternate to spread machine noise evenly.
//!
//! `cargo run --release --example metrics_overhead -- [SECONDS_PER_ROUND] [ROUNDS]`

use std::time::Duration;

use tezos_p2p::actor::Workers;
use tezos_p2p::telemetry::Telemetry;

fn child(metrics: bool, secs: f64) {
    let rate = actix::System::new().block_on(async move {
        let telemetry = if metrics {
            Some(Telemetry::serve("127.0.0.1:0".parse().expect("addr"), false).await.expect("telemetry"))
        } else {
            None
        };
        if let Some(t) = &telemetry {
            // Export as a scraper would, every second, for the whole measurement.
            let addr = t.addr();
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
        tezos_p2p::benchkit::connection_rate(&workers, 64 * 1024, secs, Default::default()).await
    });
    println!("{rate}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(args.get(2).map(String::as_str) == Some("on"), args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3.0));
        return;
    }
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let exe = std::env::current_exe().expect("exe");
    let run = |mode: &str| -> f64 {
        let out = std::process::Command::new(&exe).args(["--child", mode, &secs.to_string()]).output().expect("child");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("rate")
    };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        off.push(run("off"));
        on.push(run("on"));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut off), median(&mut on));
    println!(
        "one connection, 64 KiB messages: {:.1} MB/s with metrics recorded and exported, {:.1} MB/s without ({:.3}x)",
        on / 1e6,
        off / 1e6,
        on / off
    );
}
