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
#[path = "cli/benchkit.rs"]
mod benchkit;
#[path = "cli/codec.rs"]
mod codec;
#[path = "cli/demo.rs"]
mod demo;
#[path = "cli/net.rs"]
mod net;

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
        /// Where to serve Prometheus metrics, HOST:PORT (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:9932", value_parser = net::parse_host_port)]
        metrics_addr: SocketAddr,
        /// The hub's global bandwidth limit in bytes/s, each way.
        #[arg(long, default_value = "4000000")]
        limit: u64,
        /// Size of each message body in bytes.
        #[arg(long, default_value = "16384")]
        message_size: usize,
    },
    /// Measure every headline figure beside its ceiling, in one run (about 2½ minutes).
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
        /// (internal) Dial connections to this address that each send 64 KiB and never read.
        #[arg(long, hide = true)]
        traffic_child: Option<SocketAddr>,
        /// (internal) Measure resident memory per connection in a fresh process (`idle` or
        /// `traffic`) and print it.
        #[arg(long, hide = true)]
        memory_child: Option<String>,
        /// (internal) How many for `--idle-child`, `--traffic-child` and `--memory-child`.
        #[arg(long, hide = true, default_value = "10000")]
        count: usize,
    },
    /// Create, inspect and validate octez identity files (identity.json).
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Decode and encode the wire types (octez P2P and distributed_db messages, block headers,
    /// operations, handshake messages), in the spirit of octez-codec.
    #[command(subcommand)]
    Codec(CodecCommand),
    /// Run a node: accept connections, keep the connection count between the limits (dialling
    /// bootstrap and learned points), answer the P2P layer, and print one JSON event per line.
    Listen {
        /// Address to listen on, HOST:PORT (port 0 picks a free one).
        #[arg(long, value_parser = net::parse_host_port)]
        addr: SocketAddr,
        #[command(flatten)]
        peer: net::PeerArgs,
        // Boxed: the listen options are by far the largest variant.
        #[command(flatten)]
        listen: Box<net::ListenArgs>,
    },
    /// Connect to a peer and print one JSON event per line (`--watch`: every message it sends).
    Connect {
        /// The peer, HOST:PORT (a name is resolved when dialling; each of its addresses is
        /// tried in turn).
        #[arg(value_parser = net::parse_point)]
        addr: String,
        #[command(flatten)]
        peer: net::PeerArgs,
        #[command(flatten)]
        connect: net::ConnectArgs,
    },
}

#[derive(Subcommand)]
enum CodecCommand {
    /// Name every encoding.
    List,
    /// Print a binary value as one JSON object (exit 1 with the field and byte offset on bad input).
    Decode {
        /// The encoding (see `codec list`), e.g. `p2p_message`.
        encoding: String,
        /// The value in hex, or `@FILE` (hex text, or raw bytes).
        input: String,
    },
    /// Print the hex of a value given as JSON (exit 1 with the field on bad input).
    Encode {
        /// The encoding (see `codec list`), e.g. `p2p_message`.
        encoding: String,
        /// The JSON, or `@FILE`.
        input: String,
    },
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
        Command::Bench { json, metrics_child, seconds, idle_child, traffic_child, memory_child, count } => {
            match (metrics_child, idle_child.or(traffic_child), memory_child) {
                (Some(mode), _, _) => bench::metrics_child(mode == "on", seconds),
                (None, Some(addr), _) => bench::idle_child(addr, count, traffic_child.is_some()),
                (None, None, Some(mode)) => bench::memory_child(count, &mode),
                (None, None, None) => bench::run(json),
            }
        }
        Command::Demo { peers, duration, metrics_addr, limit, message_size } => {
            demo::run(demo::DemoOptions { peers: peers.clamp(1, 250), duration, metrics_addr, limit, message_size })
        }
        Command::Identity(IdentityCommand::Generate { difficulty, output, threads, force }) => {
            generate(&difficulty, &output, threads, force)
        }
        Command::Identity(IdentityCommand::Show { path, json }) => show(&path, json),
        Command::Codec(CodecCommand::List) => codec::list(),
        Command::Codec(CodecCommand::Decode { encoding, input }) => codec::decode(&encoding, &input),
        Command::Codec(CodecCommand::Encode { encoding, input }) => codec::encode(&encoding, &input),
        Command::Identity(IdentityCommand::Check { path, difficulty }) => check(&path, &difficulty),
        Command::Listen { addr, peer, listen } => net::listen(addr, peer, *listen),
        Command::Connect { addr, peer, connect } => net::connect(addr, peer, connect),
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
