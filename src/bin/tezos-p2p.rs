//! `tezos-p2p`: the command-line front end. Thin by design: parsing, output and exit codes
//! only; the work is done by the library.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tezos_p2p::identity::{Identity, IdentityError};
use tezos_p2p::pow::{GenerateOptions, PowTarget};

/// `--version`: the crate version and the crypto backend this build uses.
#[cfg(feature = "sodium")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (crypto backend: sodium)");
/// `--version`: the crate version and the crypto backend this build uses.
#[cfg(not(feature = "sodium"))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (crypto backend: rust-crypto)");

/// Typed, authenticated and encrypted connections speaking the Tezos (octez) P2P protocol.
#[derive(Parser)]
#[command(name = "tezos-p2p", version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[path = "cli/bench.rs"]
mod bench;
#[path = "cli/demo.rs"]
mod demo;

#[derive(Subcommand)]
enum Command {
    /// Run the whole product on this machine: a hub and N peers exchanging typed messages under
    /// a bandwidth limit, a refused weak peer, a Nack with alternatives, live metrics.
    Demo {
        /// Number of peers.
        #[arg(long, default_value = "8")]
        peers: usize,
        /// How long the peers exchange messages, in seconds.
        #[arg(long, default_value = "20", value_parser = parse_seconds)]
        duration: Duration,
        /// Where to serve Prometheus metrics (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:9932")]
        metrics_addr: SocketAddr,
        /// The hub's global bandwidth limit in bytes/s, each way.
        #[arg(long, default_value = "4000000")]
        limit: u64,
        /// Size of each message body in bytes.
        #[arg(long, default_value = "16384")]
        message_size: usize,
    },
    /// Measure every headline figure beside its ceiling, in one run (about a minute).
    Bench {
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// (internal) Run one metrics on/off measurement and print the rate.
        #[arg(long, hide = true)]
        metrics_child: Option<String>,
        /// (internal) Seconds for `--metrics-child`.
        #[arg(long, hide = true, default_value = "3")]
        seconds: f64,
        /// (internal) Dial idle connections to this address and hold them.
        #[arg(long, hide = true)]
        idle_child: Option<SocketAddr>,
        /// (internal) How many for `--idle-child`.
        #[arg(long, hide = true, default_value = "10000")]
        count: usize,
    },
    /// Create, inspect and validate octez identity files (identity.json).
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Accept connections and print one JSON event per line.
    Listen {
        /// Address to listen on (port 0 picks a free one).
        #[arg(long)]
        addr: SocketAddr,
        #[command(flatten)]
        peer: PeerArgs,
        /// Exit 0 after this many connections have been served and closed.
        #[arg(long)]
        count: Option<u64>,
        /// Global upload limit in bytes/s (default: unlimited).
        #[arg(long)]
        max_upload_bytes_per_s: Option<u64>,
        /// Global download limit in bytes/s (default: unlimited).
        #[arg(long)]
        max_download_bytes_per_s: Option<u64>,
        /// Most running connections; beyond, peers get Nack(Too_many_connections) (default 100).
        #[arg(long, default_value = "100")]
        max_connections: usize,
        /// Seconds allowed for an incoming peer's authenticate + accept (default 5, as octez).
        #[arg(long, default_value = "5", value_parser = parse_seconds)]
        handshake_timeout: Duration,
        /// Serve Prometheus metrics on HOST:PORT (port 0 picks a free one; printed as a
        /// `metrics` event).
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
        /// Label byte and message counters by peer (high cardinality: small deployments only).
        #[arg(long)]
        metrics_per_peer: bool,
    },
    /// Connect to a peer and print one JSON event per line.
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        #[command(flatten)]
        peer: PeerArgs,
    },
}

/// Options shared by `listen` and `connect`.
#[derive(clap::Args)]
struct PeerArgs {
    /// Identity file (default: an ephemeral identity at difficulty 0).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Proof of work required of peers.
    #[arg(long, default_value = "26", value_parser = parse_difficulty)]
    expected_pow: PowTarget,
    /// Chain name to announce and require.
    #[arg(long, default_value = "TEZOS_MAINNET")]
    chain_name: String,
    /// Write every received message back on the same connection.
    #[arg(long)]
    echo: bool,
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Generate a key pair and a proof-of-work stamp, and write identity.json (mode 0600).
    Generate {
        /// Proof-of-work difficulty (leading zero bits; fractions allowed). Mainnet nodes expect 26.
        #[arg(long, default_value = "26", value_parser = parse_difficulty)]
        difficulty: PowTarget,
        /// Where to write the identity.
        #[arg(long, default_value = "./identity.json")]
        output: PathBuf,
        /// Search threads (default: the number of cores).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the peer id, public key and proof-of-work level of an identity.
    Show {
        /// The identity file.
        path: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 if the file is a valid identity at the given level, else 1 with the reason.
    Check {
        /// The identity file.
        path: PathBuf,
        /// Required proof-of-work difficulty.
        #[arg(long, default_value = "0", value_parser = parse_difficulty)]
        difficulty: PowTarget,
    },
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let f: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(f).map_err(|e| e.to_string()).and_then(|d| {
        if d.is_zero() {
            Err("must be positive".into())
        } else {
            Ok(d)
        }
    })
}

fn parse_difficulty(s: &str) -> Result<PowTarget, String> {
    let f: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    PowTarget::new(f).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench { json, metrics_child, seconds, idle_child, count } => match (metrics_child, idle_child) {
            (Some(mode), _) => bench::metrics_child(mode == "on", seconds),
            (None, Some(addr)) => bench::idle_child(addr, count),
            (None, None) => bench::run(json),
        },
        Command::Demo { peers, duration, metrics_addr, limit, message_size } => {
            demo::run(demo::DemoOptions { peers: peers.clamp(1, 250), duration, metrics_addr, limit, message_size })
        }
        Command::Identity(IdentityCommand::Generate { difficulty, output, threads, force }) => {
            generate(&difficulty, &output, threads, force)
        }
        Command::Identity(IdentityCommand::Show { path, json }) => show(&path, json),
        Command::Identity(IdentityCommand::Check { path, difficulty }) => check(&path, &difficulty),
        Command::Listen {
            addr,
            peer,
            count,
            max_upload_bytes_per_s,
            max_download_bytes_per_s,
            max_connections,
            handshake_timeout,
            metrics_addr,
            metrics_per_peer,
        } => net::listen(
            addr,
            peer,
            net::ListenOptions {
                count,
                bandwidth: tezos_p2p::actor::Limits { max_upload_bytes_per_s, max_download_bytes_per_s },
                max_connections,
                handshake_timeout,
                metrics_addr,
                metrics_per_peer,
            },
        ),
        Command::Connect { addr, peer } => net::connect(addr, peer),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn generate(target: &PowTarget, output: &Path, threads: Option<u16>, force: bool) -> ExitCode {
    // Refuse early rather than after minutes of work; `save` re-checks atomically.
    if !force && output.exists() {
        return fail(IdentityError::AlreadyExists { path: output.to_owned() });
    }
    let threads =
        threads.map(usize::from).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        if let Err(e) = ctrlc::set_handler(move || cancel.store(true, Ordering::Relaxed)) {
            tracing::warn!("cannot install the Ctrl-C handler: {e}");
        }
    }
    let expected = 2f64.powf(target.difficulty());
    // Announced before the search starts (after the Ctrl-C handler is in place), so scripts and
    // tests can tell when an interrupt will be handled.
    eprintln!(
        "searching a stamp at difficulty {} on {threads} threads (about {expected:.0} hashes expected; Ctrl-C to stop)",
        target.difficulty()
    );
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let start = Instant::now();
    let progress = |attempts: u64| {
        if let Some(bar) = &bar {
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            let rate = attempts as f64 / secs;
            let eta = if rate > 0.0 { format!("{:.0} s", expected / rate) } else { "?".into() };
            bar.set_message(format!(
                "difficulty {} on {threads} threads: {attempts} hashes, {:.2} MH/s, expected time {eta}",
                target.difficulty(),
                rate / 1e6
            ));
            bar.tick();
        }
    };
    let options = GenerateOptions {
        threads,
        cancel: &cancel,
        progress: &progress,
        progress_interval: Duration::from_millis(200),
    };
    let identity = Identity::generate(target, &options);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let Some(identity) = identity else {
        eprintln!("interrupted: no identity written");
        return ExitCode::from(130);
    };
    if let Err(e) = identity.save(output, force) {
        return fail(e);
    }
    println!("{}", identity.peer_id);
    eprintln!(
        "wrote {} (peer id {}, proof-of-work level {}) in {:.1} s",
        output.display(),
        identity.peer_id,
        identity.pow_level(),
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

fn show(path: &Path, json: bool) -> ExitCode {
    let identity = match Identity::load(path) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    if json {
        let v = serde_json::json!({
            "peer_id": identity.peer_id.to_string(),
            "public_key": identity.public_key.to_hex(),
            "proof_of_work_stamp": hex::encode(identity.proof_of_work_stamp.as_bytes()),
            "pow_level": identity.pow_level(),
        });
        println!("{v}");
    } else {
        println!("peer_id:    {}", identity.peer_id);
        println!("public_key: {}", identity.public_key);
        println!("pow_level:  {}", identity.pow_level());
    }
    ExitCode::SUCCESS
}

fn check(path: &Path, target: &PowTarget) -> ExitCode {
    match Identity::load(path).and_then(|i| i.check_pow(target).map(|()| i)) {
        Ok(i) => {
            println!(
                "ok: {} is a valid identity ({}) meeting difficulty {} (its stamp has {} leading zero bits)",
                path.display(),
                i.peer_id,
                target.difficulty(),
                i.pow_level()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `listen` and `connect`: JSON events on stdout, logs on stderr.
mod net {
    use std::net::SocketAddr;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::{json, Value};
    use tezos_p2p::actor::{self, CloseReason, Connection, ConnectionConfig, Node, NodeConfig, NodeEvent};
    use tezos_p2p::handshake::{AuthError, LocalConfig};
    use tezos_p2p::identity::Identity;
    use tezos_p2p::message::RawMessage;
    use tezos_p2p::wire::{point_text, ConnectionMetadata, NetworkVersion};

    use super::PeerArgs;

    /// octez's `connection_timeout` for outgoing connections (TCP connect + handshake): 10 s.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    type Conn = Connection<RawMessage, ConnectionMetadata>;

    fn emit(v: Value) {
        println!("{v}");
    }

    fn local_config(peer: &PeerArgs) -> Result<Arc<LocalConfig<ConnectionMetadata>>, ExitCode> {
        let identity = match &peer.identity {
            Some(path) => Identity::load(path).map_err(|e| {
                emit(json!({"event": "error", "error": "InvalidIdentity", "message": e.to_string()}));
                ExitCode::FAILURE
            })?,
            None => Identity::ephemeral(),
        };
        Ok(Arc::new(LocalConfig {
            identity: Arc::new(identity),
            advertised_port: None,
            version: NetworkVersion::current(peer.chain_name.as_str()),
            metadata: ConnectionMetadata::default(),
            expected_pow: peer.expected_pow,
            crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
        }))
    }

    fn version_json(v: &NetworkVersion) -> Value {
        json!({"chain_name": v.chain_name.to_string(), "distributed_db_version": v.distributed_db_version, "p2p_version": v.p2p_version})
    }

    fn auth_error(e: &AuthError) -> Value {
        match e {
            AuthError::RejectedByNack { motive, alternative_points } => json!({
                "event": "rejected",
                "error": e.name(),
                "motive": motive.to_string(),
                "motive_code": motive.code(),
                "alternative_points": alternative_points.as_ref().map(|p| p.iter().map(point_text).collect::<Vec<_>>()),
            }),
            AuthError::RejectedNoCommonProtocol { motive } => json!({
                "event": "rejected", "error": e.name(), "motive": motive.to_string(), "motive_code": motive.code(),
            }),
            _ => json!({"event": "error", "error": e.name(), "message": e.to_string()}),
        }
    }

    fn connected(c: &Conn) -> Value {
        let info = c.info();
        json!({
            "event": "connected",
            "peer_id": info.peer_id.to_string(),
            "addr": c.to_string().split_once('@').map(|(_, a)| a.to_owned()),
            "incoming": info.incoming,
            "version": version_json(c.version()),
            "remote_metadata": {"disable_mempool": info.remote_metadata.disable_mempool, "private_node": info.remote_metadata.private_node},
        })
    }

    fn disconnected(c: &Conn) -> Value {
        let stat = c.stat();
        let reason = c.close_reason().unwrap_or(CloseReason::LocalClose);
        json!({
            "event": "disconnected",
            "peer_id": c.info().peer_id.to_string(),
            "reason": reason.name(),
            "message": reason.to_string(),
            "total_sent": stat.total_sent,
            "total_recv": stat.total_recv,
            "current_inflow": stat.current_inflow,
            "current_outflow": stat.current_outflow,
        })
    }

    /// Serves an accepted connection until it ends: echoes or drains what the peer sends.
    async fn serve(c: &Conn, echo: bool) {
        while let Ok((_, msg)) = c.read().await {
            if echo && c.write(&msg).await.is_err() {
                break;
            }
        }
        c.close(true).await;
    }

    pub(super) fn connect(addr: SocketAddr, peer: PeerArgs) -> ExitCode {
        let local = match local_config(&peer) {
            Ok(l) => l,
            Err(code) => return code,
        };
        actix::System::new().block_on(async move {
            let conn: Conn = match actor::connect(addr, local, CONNECT_TIMEOUT).await {
                Ok(auth) => match auth.accept(ConnectionConfig::default()).await {
                    Ok(c) => c,
                    Err(e) => {
                        emit(auth_error(&e));
                        return ExitCode::FAILURE;
                    }
                },
                Err(e) => {
                    emit(auth_error(&e));
                    return ExitCode::FAILURE;
                }
            };
            emit(connected(&conn));
            if peer.echo {
                serve(&conn, true).await;
            } else {
                conn.close(true).await;
            }
            conn.closed().await;
            emit(disconnected(&conn));
            ExitCode::SUCCESS
        })
    }

    /// `listen` options beyond the shared ones.
    pub(super) struct ListenOptions {
        pub(super) count: Option<u64>,
        pub(super) bandwidth: actor::Limits,
        pub(super) max_connections: usize,
        pub(super) handshake_timeout: Duration,
        pub(super) metrics_addr: Option<SocketAddr>,
        pub(super) metrics_per_peer: bool,
    }

    /// Forwards node events to the command's loop (bounded: the registry drops events for a
    /// subscriber that lags by more than its mailbox, and counts them).
    struct Forward(tokio::sync::mpsc::Sender<NodeEvent>);

    impl actix::Actor for Forward {
        type Context = actix::Context<Self>;
    }

    impl actix::Handler<NodeEvent> for Forward {
        type Result = ();

        fn handle(&mut self, ev: NodeEvent, _: &mut Self::Context) {
            let _ = self.0.try_send(ev);
        }
    }

    pub(super) fn listen(addr: SocketAddr, peer: PeerArgs, opts: ListenOptions) -> ExitCode {
        let local = match local_config(&peer) {
            Ok(l) => l,
            Err(code) => return code,
        };
        actix::System::new().block_on(async move {
            // Installed before the node starts, so every connection records into it.
            let _telemetry = match opts.metrics_addr {
                Some(maddr) => match tezos_p2p::telemetry::Telemetry::serve(maddr, opts.metrics_per_peer).await {
                    Ok(t) => {
                        emit(json!({"event": "metrics", "addr": point_text(&t.addr())}));
                        Some(t)
                    }
                    Err(e) => {
                        emit(json!({"event": "error", "error": "Metrics", "message": e.to_string()}));
                        return ExitCode::FAILURE;
                    }
                },
                None => None,
            };
            let mut config = NodeConfig::new((*local.identity).clone(), ConnectionMetadata::default());
            config.listen_addr = Some(addr);
            config.version = local.version.clone();
            config.expected_pow = local.expected_pow;
            config.handshake_timeout = opts.handshake_timeout;
            config.limits.max_connections = opts.max_connections;
            config.bandwidth = opts.bandwidth;
            let node: Node<RawMessage, ConnectionMetadata> = match Node::start(config).await {
                Ok(n) => n,
                Err(e) => {
                    emit(json!({"event": "error", "error": "Bind", "message": e.to_string()}));
                    return ExitCode::FAILURE;
                }
            };
            let bound = node.listen_addr().unwrap_or(addr);
            emit(json!({"event": "listening", "addr": point_text(&bound), "peer_id": node.peer_id().to_string()}));
            let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
            node.subscribe_events(actix::Actor::start(Forward(tx)).recipient());
            let mut served = 0u64;
            while let Some(ev) = rx.recv().await {
                match ev {
                    NodeEvent::Connected { peer_id, .. } => {
                        if let Some(conn) = node.peer(&peer_id).and_then(|p| p.connection) {
                            emit(connected(&conn));
                            let echo = peer.echo;
                            actix::spawn(async move { serve(&conn, echo).await });
                        }
                    }
                    NodeEvent::Disconnected { peer_id, reason, stat, .. } => {
                        emit(json!({
                            "event": "disconnected",
                            "peer_id": peer_id.to_string(),
                            "reason": reason,
                            "total_sent": stat.total_sent,
                            "total_recv": stat.total_recv,
                            "current_inflow": stat.current_inflow,
                            "current_outflow": stat.current_outflow,
                        }));
                        served += 1;
                    }
                    NodeEvent::Rejected { addr, peer_id, reason } => {
                        emit(json!({
                            "event": if actor::is_refusal(reason) { "rejected" } else { "error" },
                            "error": reason,
                            "addr": addr.map(|a| point_text(&a)),
                            "peer_id": peer_id.map(|p| p.to_string()),
                        }));
                        served += 1;
                    }
                    _ => {}
                }
                if opts.count.is_some_and(|n| served >= n) {
                    node.shutdown().await;
                    return ExitCode::SUCCESS;
                }
            }
            ExitCode::SUCCESS
        })
    }
}
