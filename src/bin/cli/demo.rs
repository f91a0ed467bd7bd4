//! `tezos-p2p demo`: the whole product on one machine, no external service. A hub node and N
//! peer nodes (ephemeral identities, each on its own loopback address) authenticate and
//! exchange typed messages both ways under a global bandwidth limit; on the way a peer with too
//! little proof of work is refused and one beyond the hub's connection limit is turned away with
//! a Nack carrying alternative points. Metrics are served for Prometheus throughout.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tezos_p2p::actor::{Connection, ConnectionConfig, Limits, Node, NodeConfig, NodeEvent};
use tezos_p2p::handshake::AuthError;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::{OpaqueMessage, P2pMessage};
use tezos_p2p::pow::{GenerateOptions, PowTarget};
use tezos_p2p::telemetry::Telemetry;
use tezos_p2p::wire::{point_text, ConnectionMetadata};

/// Options of `demo`.
pub struct DemoOptions {
    pub peers: usize,
    pub duration: Duration,
    pub metrics_addr: SocketAddr,
    pub limit: u64,
    pub message_size: usize,
}

type DemoNode = Node<P2pMessage, ConnectionMetadata>;
type Conn = Connection<P2pMessage, ConnectionMetadata>;

/// Proof of work the hub requires; peers generate identities that meet it (256 hashes).
const POW: f64 = 8.0;

fn identity(level: f64) -> Identity {
    let cancel = AtomicBool::new(false);
    let opts = GenerateOptions {
        threads: 1,
        cancel: &cancel,
        progress: &|_| {},
        progress_interval: Duration::from_millis(20),
    };
    // Level 8 is found in a few hundred hashes; the search cannot be cancelled here.
    Identity::generate(&PowTarget::new(level).unwrap_or_else(|_| unreachable!()), &opts)
        .unwrap_or_else(Identity::ephemeral)
}

fn weak_identity() -> Identity {
    loop {
        let id = Identity::ephemeral();
        if id.check_pow(&PowTarget::new(POW).unwrap_or_else(|_| unreachable!())).is_err() {
            return id;
        }
    }
}

/// A typed octez message: `Current_head` (tag 0x14) with an opaque body of `size` bytes.
fn head(size: usize, seed: u8) -> P2pMessage {
    P2pMessage::Message(OpaqueMessage { tag: 0x14, body: Bytes::from(vec![seed; size]) })
}

struct Forward(tokio::sync::mpsc::Sender<NodeEvent>);

impl Actor for Forward {
    type Context = Context<Self>;
}

impl Handler<NodeEvent> for Forward {
    type Result = ();

    fn handle(&mut self, ev: NodeEvent, _: &mut Self::Context) {
        let _ = self.0.try_send(ev);
    }
}

/// Messages delivered each way (counted by the reading side).
#[derive(Default)]
struct Totals {
    to_hub: AtomicU64,
    to_peers: AtomicU64,
}

/// Reads and writes on `conn` until `stop`: typed messages both ways; each message read is
/// counted in `received`.
fn pump(
    conn: Conn,
    size: usize,
    seed: u8,
    received: Arc<Totals>,
    hub_side: bool,
    stop: tokio_util::sync::CancellationToken,
) {
    let reader = conn.clone();
    let s = stop.clone();
    actix::spawn(async move {
        let counter = if hub_side { &received.to_hub } else { &received.to_peers };
        loop {
            tokio::select! {
                () = s.cancelled() => break,
                r = reader.read() => match r {
                    Ok(_) => { counter.fetch_add(1, Ordering::Relaxed); }
                    Err(_) => break,
                },
            }
        }
    });
    actix::spawn(async move {
        let msg = head(size, seed);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                r = conn.write(&msg) => if r.is_err() { break },
            }
        }
    });
}

async fn start_node(id: Identity, listen: SocketAddr, f: impl FnOnce(&mut NodeConfig<ConnectionMetadata>)) -> DemoNode {
    let mut config = NodeConfig::new(id, ConnectionMetadata::default());
    config.listen_addr = Some(listen);
    config.expected_pow = PowTarget::new(POW).unwrap_or_else(|_| unreachable!());
    config.workers = 1;
    f(&mut config);
    match DemoNode::start(config).await {
        Ok(n) => n,
        Err(e) => panic!("cannot start a demo node: {e}"),
    }
}

fn mb(x: f64) -> String {
    format!("{:.2} MB/s", x / 1e6)
}

/// Runs the demo; returns the process exit code.
pub fn run(opts: DemoOptions) -> ExitCode {
    actix::System::new().block_on(async move {
        let telemetry = match Telemetry::serve(opts.metrics_addr, false).await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("metrics: http://{}/metrics", telemetry.addr());
        let limits = Limits { max_upload_bytes_per_s: Some(opts.limit), max_download_bytes_per_s: Some(opts.limit) };
        let hub = start_node(identity(POW), "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()), |c| {
            c.bandwidth = limits;
            c.limits.max_connections = opts.peers;
            c.workers = 2;
            c.connection = ConnectionConfig { outgoing_queue_bytes: 1 << 20, incoming_queue_bytes: 1 << 20, ..Default::default() };
        })
        .await;
        let hub_addr = match hub.listen_addr() {
            Some(a) => a,
            None => return ExitCode::FAILURE,
        };
        println!(
            "hub {} listening on {}, {} peers, global limit {} each way, {} s",
            hub.peer_id(),
            point_text(&hub_addr),
            opts.peers,
            mb(opts.limit as f64),
            opts.duration.as_secs()
        );
        let (tx, mut events) = tokio::sync::mpsc::channel(10_000);
        hub.subscribe_events(Forward(tx).start().recipient());
        let stop = tokio_util::sync::CancellationToken::new();
        let totals = Arc::new(Totals::default());

        // N honest peers, each a node on its own loopback address (so its point is distinct).
        let mut peers = Vec::new();
        for i in 0..opts.peers {
            let ip = IpAddr::from([127, 0, 1, (i % 250) as u8 + 1]);
            let node = start_node(identity(POW), SocketAddr::new(ip, 0), |_| {}).await;
            match node.connect(hub_addr).await {
                Ok(conn) => pump(conn, opts.message_size, i as u8, totals.clone(), false, stop.clone()),
                Err(e) => println!("peer {i} could not connect: {e}"),
            }
            peers.push(node);
        }
        // The hub serves every peer the same way.
        for conn in hub.connections() {
            pump(conn, opts.message_size, 0xee, totals.clone(), true, stop.clone());
        }
        // A peer with too little proof of work: refused before any key derivation.
        let weak = start_node(weak_identity(), "127.0.0.2:0".parse().unwrap_or_else(|_| unreachable!()), |_| {}).await;
        match weak.connect(hub_addr).await {
            Err(e) => println!(
                "weak peer {} (proof of work below {POW}) refused: the hub closed after its connection message ({} on the peer's side)",
                weak.peer_id(),
                e.name()
            ),
            Ok(_) => println!("weak peer unexpectedly accepted"),
        }
        // One peer too many: a Nack with alternative points.
        let extra = start_node(identity(POW), "127.0.0.3:0".parse().unwrap_or_else(|_| unreachable!()), |_| {}).await;
        match extra.connect(hub_addr).await {
            Err(AuthError::RejectedByNack { motive, alternative_points }) => {
                let points = alternative_points.unwrap_or_default();
                println!(
                    "extra peer turned away: Nack({motive}) with {} alternative points: {}",
                    points.len(),
                    points.iter().take(4).map(point_text).collect::<Vec<_>>().join(", ")
                );
            }
            other => println!("extra peer: unexpected outcome {:?}", other.map(|c| c.to_string())),
        }

        let start = Instant::now();
        let progress = Progress::new(std::io::stdout().is_terminal(), opts.peers);
        let hub_stat0 = hub.scheduler().stat();
        while start.elapsed() < opts.duration {
            tokio::time::sleep(Duration::from_millis(500)).await;
            progress.update(&hub, start.elapsed(), &totals);
        }
        progress.finish();
        let elapsed = start.elapsed().as_secs_f64();
        let hub_stat = hub.scheduler().stat();
        stop.cancel();

        // Gather what the hub saw.
        let mut accepted = 0;
        let mut reasons: BTreeMap<&'static str, u64> = BTreeMap::new();
        while let Ok(ev) = events.try_recv() {
            match ev {
                NodeEvent::Connected { .. } => accepted += 1,
                NodeEvent::Rejected { reason, .. } => *reasons.entry(reason).or_default() += 1,
                _ => {}
            }
        }
        let sent = (hub_stat.total_sent - hub_stat0.total_sent) as f64 / elapsed;
        let recv = (hub_stat.total_recv - hub_stat0.total_recv) as f64 / elapsed;
        println!();
        println!("summary ({elapsed:.1} s)");
        println!("  {:<38} {}", "handshakes accepted by the hub", accepted);
        for (reason, n) in &reasons {
            println!("  {:<38} {}", format!("rejected: {reason}"), n);
        }
        println!("  {:<38} {} bytes, {} messages", "hub → peers", hub_stat.total_sent, totals.to_peers.load(Ordering::Relaxed));
        println!("  {:<38} {} bytes, {} messages", "peers → hub", hub_stat.total_recv, totals.to_hub.load(Ordering::Relaxed));
        println!("  {:<38} {} (configured {})", "hub upload rate", mb(sent), mb(opts.limit as f64));
        println!("  {:<38} {} (configured {})", "hub download rate", mb(recv), mb(opts.limit as f64));
        hub.shutdown().await;
        for p in &peers {
            p.shutdown().await;
        }
        drop((weak, extra, telemetry));
        if accepted == opts.peers as u64 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    })
}

/// Live progress: bars on a terminal, plain periodic lines otherwise.
struct Progress {
    bars: Option<(indicatif::MultiProgress, Vec<indicatif::ProgressBar>, indicatif::ProgressBar)>,
    last_line: std::cell::Cell<Option<Instant>>,
}

impl Progress {
    fn new(terminal: bool, peers: usize) -> Self {
        let bars = terminal.then(|| {
            let multi = indicatif::MultiProgress::new();
            let style = indicatif::ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            let lines: Vec<_> = (0..peers)
                .map(|_| multi.add(indicatif::ProgressBar::new_spinner().with_style(style.clone())))
                .collect();
            let total = multi.add(indicatif::ProgressBar::new_spinner().with_style(style));
            (multi, lines, total)
        });
        Self { bars, last_line: std::cell::Cell::new(None) }
    }

    fn update(&self, hub: &DemoNode, elapsed: Duration, totals: &Totals) {
        let stat = hub.scheduler().stat();
        let total = format!(
            "[{:>5.1}s] hub total: in {} out {}, messages: {} to the hub, {} to the peers",
            elapsed.as_secs_f64(),
            mb(stat.current_inflow as f64),
            mb(stat.current_outflow as f64),
            totals.to_hub.load(Ordering::Relaxed),
            totals.to_peers.load(Ordering::Relaxed)
        );
        match &self.bars {
            Some((_, lines, bar)) => {
                for (line, c) in lines.iter().zip(hub.connections()) {
                    let s = c.stat();
                    line.set_message(format!(
                        "  {:<32} in {:>10} out {:>10} queued {:>8} B",
                        c.info().peer_id.to_string(),
                        mb(s.current_inflow as f64),
                        mb(s.current_outflow as f64),
                        c.read_queue_bytes() + c.write_queue_bytes()
                    ));
                }
                bar.set_message(total);
            }
            None => {
                // Plain lines every 2 s when not on a terminal.
                if self.last_line.get().is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                    println!("{total}");
                    self.last_line.set(Some(Instant::now()));
                }
            }
        }
    }

    fn finish(&self) {
        if let Some((multi, lines, bar)) = &self.bars {
            for l in lines {
                l.finish();
            }
            bar.finish();
            let _ = multi.clear();
        }
    }
}
