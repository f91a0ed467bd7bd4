//! `listen` and `connect`: JSON events on stdout (one object per line), logs on stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tezos_p2p::actor::{self, AdminApi, CloseReason, Connection, ConnectionConfig, Node, NodeConfig, NodeEvent};
use tezos_p2p::handshake::{AuthError, LocalConfig};
use tezos_p2p::identity::Identity;
use tezos_p2p::maintenance::MaintenanceConfig;
use tezos_p2p::message::db::{self, DbMessage, OctezMessage};
use tezos_p2p::message::{Encoding, P2pMessage, RawMessage};
use tezos_p2p::peers::ConnectionLimits;
use tezos_p2p::peers_file::PeersFileConfig;
use tezos_p2p::shell::ChainId;
use tezos_p2p::wire::{point_text, ConnectionMetadata, NackMotive, NetworkVersion};

/// octez's `connection_timeout` for outgoing connections (TCP connect + handshake): 10 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options shared by `listen` and `connect`.
#[derive(clap::Args)]
pub(crate) struct PeerArgs {
    /// Identity file (default: an ephemeral identity at difficulty 0).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Proof of work required of peers.
    #[arg(long, default_value = "26", value_parser = super::parse_difficulty)]
    expected_pow: tezos_p2p::pow::PowTarget,
    /// Chain name to announce and require.
    #[arg(long, default_value = "TEZOS_MAINNET")]
    chain_name: String,
    /// Write every received application message back on the same connection.
    #[arg(long)]
    echo: bool,
    /// Message encoding: `octez` (octez's P2P layer around typed distributed_db messages, what
    /// an octez node speaks) or `raw` (a 4-byte length and opaque bytes).
    #[arg(long, value_enum, default_value = "octez")]
    messages: Messages,
}

/// The message encoding of a session.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Messages {
    /// octez `P2p_message` around typed distributed_db messages.
    Octez,
    /// `dynamic_size bytes`: a 4-byte big-endian length, then the bytes.
    Raw,
}

/// `listen` options beyond the shared ones.
#[derive(clap::Args)]
pub(crate) struct ListenArgs {
    /// Exit 0 after this many connections have been served and closed.
    #[arg(long)]
    count: Option<u64>,
    /// Global upload limit in bytes/s (default: unlimited).
    #[arg(long)]
    max_upload_bytes_per_s: Option<u64>,
    /// Global download limit in bytes/s (default: unlimited).
    #[arg(long)]
    max_download_bytes_per_s: Option<u64>,
    /// A trusted bootstrap point, `HOST:PORT` (repeatable; names are resolved at each dial).
    #[arg(long = "peer", value_name = "HOST:PORT", value_parser = parse_point)]
    peers: Vec<String>,
    /// octez's `--connections N` (1–100): min N/2, expected N, max 3N/2, tables 8N.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=100))]
    connections: Option<u16>,
    /// Maintenance dials below this many connections (default 10, or N/2 with --connections).
    #[arg(long)]
    min_connections: Option<usize>,
    /// What maintenance aims for (default 50, or N with --connections).
    #[arg(long)]
    expected_connections: Option<usize>,
    /// Most connections (default 100, or 3N/2 with --connections); new ones get
    /// Nack(Too_many_connections) from maintenance's max_threshold on.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Do not dial by itself (octez --disable-p2p-maintenance); admit up to --max-connections.
    #[arg(long)]
    no_maintenance: bool,
    /// Keep known peers and points in this JSON file (loaded at start, saved every minute and
    /// at shutdown).
    #[arg(long)]
    peers_file: Option<PathBuf>,
    /// Move a corrupt peers file aside (with a warning) instead of refusing to start.
    #[arg(long)]
    recover_peers_file: bool,
    /// octez's private mode: dial and accept only trusted points, advertise nothing, announce
    /// ourselves as private.
    #[arg(long)]
    private_mode: bool,
    /// Serve the /network admin API on HOST:PORT, or PORT on 127.0.0.1 (port 0 picks a free
    /// one; printed as an `rpc` event). An admin interface: keep it on loopback.
    #[arg(long, value_parser = parse_rpc_addr)]
    rpc_addr: Option<SocketAddr>,
    /// Most incoming handshakes in progress from one address (default 4).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    max_pending_per_ip: Option<usize>,
    /// Most incoming handshakes in progress from one /24 (IPv4) or /64 (IPv6) (default 10).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    max_pending_per_network: Option<usize>,
    /// Most connections with one address (default 8).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    max_connections_per_ip: Option<usize>,
    /// Most connections with one /24 (IPv4) or /64 (IPv6) (default 25).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    max_connections_per_network: Option<usize>,
    /// Seconds allowed for an incoming peer's authenticate + accept (default 5, as octez).
    #[arg(long, default_value = "5", value_parser = super::parse_seconds)]
    handshake_timeout: Duration,
    /// Serve Prometheus metrics on HOST:PORT (port 0 picks a free one; printed as a `metrics`
    /// event).
    #[arg(long, value_parser = parse_host_port)]
    metrics_addr: Option<SocketAddr>,
    /// Label byte and message counters by peer (high cardinality: small deployments only).
    #[arg(long)]
    metrics_per_peer: bool,
}

/// `connect` options beyond the shared ones.
#[derive(clap::Args)]
pub(crate) struct ConnectArgs {
    /// Stay connected and print every received message as a `message` event (its codec JSON).
    #[arg(long)]
    watch: bool,
    /// A message to send once connected (repeatable): a kind that needs only the chain
    /// (`Get_current_head`, `Get_current_branch`, `Get_checkpoint`, `Deactivate`), `Bootstrap`,
    /// or any message as codec JSON (or `@FILE`).
    #[arg(long = "send", value_name = "KIND|JSON|@FILE")]
    send: Vec<String>,
    /// The chain id for `--send KIND` (default: mainnet's).
    #[arg(long, default_value = "NetXdQprcVkpaWU")]
    chain_id: String,
    /// With --watch: exit 0 after this many messages.
    #[arg(long)]
    max_messages: Option<u64>,
}

fn parse_rpc_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    parse_host_port(s).map_err(|e| format!("{e} (or a PORT on 127.0.0.1)"))
}

/// `HOST:PORT` (a literal address, `[v6]:port`, or a name) split in two, checked but not
/// resolved: `Err` says what is wrong.
fn split_point(s: &str) -> Result<(&str, u16), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not HOST:PORT (no port)"))?;
    let port = port.parse::<u16>().map_err(|_| format!("{s:?} is not HOST:PORT ({port:?} is not a port)"))?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.is_empty() {
        return Err(format!("{s:?} is not HOST:PORT (no host)"));
    }
    if host.contains(':') && bare == host {
        return Err(format!("{s:?} is not HOST:PORT (write an IPv6 address as [ADDR]:PORT)"));
    }
    Ok((bare, port))
}

/// A point given on the command line, `HOST:PORT`: its syntax is checked here, the name is
/// resolved when it is dialled (octez resolves bootstrap peers at each dial).
pub(crate) fn parse_point(s: &str) -> Result<String, String> {
    split_point(s).map(|_| s.to_owned())
}

/// An address to bind or serve on, `HOST:PORT`, resolved now (its first address).
pub(crate) fn parse_host_port(s: &str) -> Result<SocketAddr, String> {
    let (host, port) = split_point(s)?;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    use std::net::ToSocketAddrs as _;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host:?} has no address"))
}

fn emit(v: Value) {
    println!("{v}");
}

fn local_config(
    peer: &PeerArgs,
    metadata: ConnectionMetadata,
) -> Result<Arc<LocalConfig<ConnectionMetadata>>, ExitCode> {
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
        metadata,
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

fn connected<E: Encoding>(c: &Connection<E, ConnectionMetadata>) -> Value {
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

fn disconnected<E: Encoding>(c: &Connection<E, ConnectionMetadata>) -> Value {
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
async fn serve<E: Encoding>(c: &Connection<E, ConnectionMetadata>, echo: bool) {
    while let Ok((_, msg)) = c.read().await {
        if echo && c.write(&msg).await.is_err() {
            break;
        }
    }
    c.close(true).await;
}

/// A `--send` argument as a message.
fn message_to_send(arg: &str, chain_id: ChainId) -> Result<OctezMessage, String> {
    let by_kind = match arg {
        "Get_current_head" => Some(P2pMessage::Message(DbMessage::GetCurrentHead { chain_id })),
        "Get_current_branch" => Some(P2pMessage::Message(DbMessage::GetCurrentBranch { chain_id })),
        "Get_checkpoint" => Some(P2pMessage::Message(DbMessage::GetCheckpoint { chain_id })),
        "Deactivate" => Some(P2pMessage::Message(DbMessage::Deactivate { chain_id })),
        "Bootstrap" => Some(P2pMessage::Bootstrap),
        "Disconnect" => Some(P2pMessage::Disconnect),
        _ => None,
    };
    if let Some(m) = by_kind {
        return Ok(m);
    }
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("--send {arg}: {e}"))?,
        None => arg.to_owned(),
    };
    let v: Value = serde_json::from_str(&text).map_err(|_| {
        format!("--send {arg:?}: not a kind (Get_current_head, Get_current_branch, Get_checkpoint, Deactivate, Bootstrap) nor JSON")
    })?;
    let m = db::from_json(&v).map_err(|e| format!("--send: {e}"))?;
    // Encoded once here, so that a message octez would refuse (a bound exceeded) is a usage
    // error before anything is dialled, not a failed write later.
    m.encode(&mut Vec::new()).map_err(|e| format!("--send {arg:?}: {e}"))?;
    Ok(m)
}

pub(crate) fn connect(addr: String, peer: PeerArgs, opts: ConnectArgs) -> ExitCode {
    let chain_id: ChainId = match opts.chain_id.parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --chain-id: {e}");
            return ExitCode::from(2);
        }
    };
    let to_send = match opts.send.iter().map(|s| message_to_send(s, chain_id)).collect::<Result<Vec<_>, _>>() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if !to_send.is_empty() && peer.messages == Messages::Raw {
        eprintln!("error: --send needs --messages octez");
        return ExitCode::from(2);
    }
    let local = match local_config(&peer, ConnectionMetadata::default()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    actix::System::new().block_on(async move {
        match peer.messages {
            Messages::Octez => connect_as::<OctezMessage>(&addr, local, &peer, &opts, to_send).await,
            Messages::Raw => connect_as::<RawMessage>(&addr, local, &peer, &opts, Vec::new()).await,
        }
    })
}

/// The JSON of a received message for `--watch`.
trait WatchJson: Encoding {
    fn watch_json(&self) -> Value;
    fn from_octez(m: OctezMessage) -> Option<Self>;
}

impl WatchJson for OctezMessage {
    fn watch_json(&self) -> Value {
        db::to_json(self)
    }

    fn from_octez(m: OctezMessage) -> Option<Self> {
        Some(m)
    }
}

impl WatchJson for RawMessage {
    fn watch_json(&self) -> Value {
        json!({"kind": "Raw", "bytes": hex::encode(&self.0)})
    }

    fn from_octez(_: OctezMessage) -> Option<Self> {
        None
    }
}

/// Resolves `point` (`HOST:PORT`) and authenticates with the first of its addresses that
/// answers: a refused or unreachable address moves on to the next, a handshake failure ends.
async fn dial(
    point: &str,
    local: Arc<LocalConfig<ConnectionMetadata>>,
) -> Result<actor::Authenticated<ConnectionMetadata>, Value> {
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(point).await {
        Ok(a) => a.collect(),
        Err(e) => {
            return Err(
                json!({"event": "error", "error": "ConnectionRefused", "message": format!("cannot resolve {point}: {e}")}),
            )
        }
    };
    let mut last =
        json!({"event": "error", "error": "ConnectionRefused", "message": format!("{point} has no address")});
    for addr in addrs {
        match actor::connect(addr, local.clone(), CONNECT_TIMEOUT).await {
            Ok(auth) => return Ok(auth),
            Err(e @ (AuthError::ConnectionRefused { .. } | AuthError::Timeout)) => last = auth_error(&e),
            Err(e) => return Err(auth_error(&e)),
        }
    }
    Err(last)
}

async fn connect_as<E: WatchJson>(
    addr: &str,
    local: Arc<LocalConfig<ConnectionMetadata>>,
    peer: &PeerArgs,
    opts: &ConnectArgs,
    to_send: Vec<OctezMessage>,
) -> ExitCode {
    // `--watch` ends cleanly on SIGINT / SIGTERM, from before anything is printed (a signal
    // while dialling ends the command with a `shutdown` event).
    let mut interrupted = opts.watch.then(|| Box::pin(termination()));
    let dialled = async {
        match dial(addr, local).await {
            Ok(auth) => auth.accept(ConnectionConfig::default()).await.map_err(|e| auth_error(&e)),
            Err(event) => Err(event),
        }
    };
    let dialled = match &mut interrupted {
        Some(signal) => tokio::select! {
            r = dialled => r,
            name = signal.as_mut() => {
                emit(json!({"event": "shutdown", "signal": name}));
                return ExitCode::SUCCESS;
            }
        },
        None => dialled.await,
    };
    let conn: Connection<E, ConnectionMetadata> = match dialled {
        Ok(c) => c,
        Err(event) => {
            emit(event);
            return ExitCode::FAILURE;
        }
    };
    emit(connected(&conn));
    for m in to_send {
        let kind = db::to_json(&m)["kind"].clone();
        let Some(m) = E::from_octez(m) else { continue };
        match conn.write(&m).await {
            Ok(()) => emit(json!({"event": "sent", "kind": kind})),
            Err(e) => emit(json!({"event": "error", "error": "ConnectionClosed", "message": e.to_string()})),
        }
    }
    if let Some(interrupted) = &mut interrupted {
        let mut seen = 0u64;
        loop {
            let next = tokio::select! {
                r = conn.read() => r,
                _ = interrupted.as_mut() => break,
            };
            let Ok((size, msg)) = next else { break };
            let mut ev = json!({"event": "message", "size": size});
            if let (Value::Object(ev), Value::Object(body)) = (&mut ev, msg.watch_json()) {
                ev.extend(body);
            }
            emit(ev);
            if peer.echo && conn.write(&msg).await.is_err() {
                break;
            }
            seen += 1;
            if opts.max_messages.is_some_and(|n| seen >= n) {
                break;
            }
        }
        if !conn.is_closed() {
            conn.close(true).await;
        }
    } else if peer.echo {
        serve(&conn, true).await;
    } else {
        conn.close(true).await;
    }
    conn.closed().await;
    emit(disconnected(&conn));
    ExitCode::SUCCESS
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

/// The limits `listen` runs with: octez's `--connections`, then the explicit bounds; a lone
/// `--max-connections` below the defaults pulls min and expected down with it.
fn limits(opts: &ListenArgs) -> Result<ConnectionLimits, String> {
    let mut l =
        opts.connections.map_or_else(ConnectionLimits::default, |n| ConnectionLimits::from_connections(n.into()));
    if let Some(max) = opts.max_connections {
        l.max_connections = max.max(1);
    }
    if let Some(e) = opts.expected_connections {
        l.expected_connections = e;
    } else {
        l.expected_connections = l.expected_connections.min(l.max_connections);
    }
    if let Some(m) = opts.min_connections {
        l.min_connections = m;
    } else {
        l.min_connections = l.min_connections.min(l.expected_connections);
    }
    l.check()?;
    Ok(l)
}

/// The NodeEvent as a JSON event line, if it is one `listen` prints.
fn event_json(ev: &NodeEvent) -> Option<Value> {
    Some(match ev {
        NodeEvent::Dialing { point } => json!({"event": "dialing", "point": point_text(point)}),
        NodeEvent::DialFailed { point, reason } => {
            json!({"event": "dial_failed", "point": point_text(point), "error": reason})
        }
        NodeEvent::ResolveFailed { name, error } => {
            json!({"event": "resolve_failed", "peer": name, "message": error})
        }
        NodeEvent::P2p { peer_id, kind, sent, points, new_points, point, ignored } => {
            let name = match (*kind, *sent) {
                ("Bootstrap", false) => "bootstrap_received",
                ("Bootstrap", true) => "bootstrap_sent",
                ("Advertise", false) => "advertise_received",
                ("Advertise", true) => "advertise_sent",
                ("Swap_request", false) => "swap_request_received",
                ("Swap_request", true) => "swap_request_sent",
                ("Swap_ack", false) => "swap_ack_received",
                ("Swap_ack", true) => "swap_ack_sent",
                _ => return None,
            };
            let mut v = json!({"event": name, "peer_id": peer_id.to_string()});
            if *kind == "Advertise" {
                v["points"] = (*points).into();
                if !*sent {
                    v["new_points"] = (*new_points).into();
                }
            }
            if let Some(p) = point {
                v["point"] = point_text(p).into();
            }
            if !*sent {
                v["ignored"] = (*ignored).into();
            }
            v
        }
        NodeEvent::Swapped { point, replaced } => {
            json!({"event": "swapped", "point": point_text(point), "replaced_peer_id": replaced.to_string()})
        }
        NodeEvent::PeersSaved { peers, points } => json!({"event": "peers_saved", "peers": peers, "points": points}),
        _ => return None,
    })
}

pub(crate) fn listen(addr: SocketAddr, peer: PeerArgs, opts: ListenArgs) -> ExitCode {
    let limits = match limits(&opts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let metadata = ConnectionMetadata { disable_mempool: false, private_node: opts.private_mode };
    let local = match local_config(&peer, metadata) {
        Ok(l) => l,
        Err(code) => return code,
    };
    actix::System::new().block_on(async move {
        match peer.messages {
            Messages::Octez => listen_as::<OctezMessage>(addr, local, &peer, &opts, limits).await,
            Messages::Raw => listen_as::<RawMessage>(addr, local, &peer, &opts, limits).await,
        }
    })
}

/// Installs SIGINT and SIGTERM handlers now and returns a future that resolves to the name of
/// the first of them to arrive. Installed eagerly (not when first polled): a signal that comes
/// right after the command printed its first event must be handled, not kill the process with
/// the default action before the handler exists.
fn termination() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (int, term) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
        let (mut int, mut term) = (int.ok(), term.ok());
        async move {
            // A handler that could not be installed disables its branch (that signal keeps its
            // default action); with neither, this never resolves.
            tokio::select! {
                Some(()) = async { int.as_mut()?.recv().await } => "SIGINT",
                Some(()) = async { term.as_mut()?.recv().await } => "SIGTERM",
                else => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

async fn listen_as<E: Encoding>(
    addr: SocketAddr,
    local: Arc<LocalConfig<ConnectionMetadata>>,
    peer: &PeerArgs,
    opts: &ListenArgs,
    limits: ConnectionLimits,
) -> ExitCode {
    // SIGINT / SIGTERM handlers first: a signal that comes while the node starts, or just after
    // it printed `listening`, is a clean shutdown once the event loop runs.
    let signal = termination();
    tokio::pin!(signal);
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
    let mut config = NodeConfig::new((*local.identity).clone(), local.metadata);
    config.listen_addr = Some(addr);
    config.version = local.version.clone();
    config.expected_pow = local.expected_pow;
    config.handshake_timeout = opts.handshake_timeout;
    config.limits = limits;
    config.bandwidth = actor::Limits {
        max_upload_bytes_per_s: opts.max_upload_bytes_per_s,
        max_download_bytes_per_s: opts.max_download_bytes_per_s,
    };
    config.private_mode = opts.private_mode;
    let a = &mut config.admission;
    a.max_pending_per_ip = opts.max_pending_per_ip.unwrap_or(a.max_pending_per_ip);
    a.max_pending_per_network = opts.max_pending_per_network.unwrap_or(a.max_pending_per_network);
    a.max_connections_per_ip = opts.max_connections_per_ip.unwrap_or(a.max_connections_per_ip);
    a.max_connections_per_network = opts.max_connections_per_network.unwrap_or(a.max_connections_per_network);
    let mut names = Vec::new();
    for p in &opts.peers {
        match p.parse::<SocketAddr>() {
            Ok(a) => config.trusted_points.push(a),
            Err(_) => names.push(p.clone()),
        }
    }
    if !opts.no_maintenance {
        config.maintenance = Some(MaintenanceConfig { bootstrap_peers: names, ..MaintenanceConfig::default() });
    } else if !names.is_empty() {
        eprintln!("error: --peer NAME:PORT needs maintenance (it is resolved at each dial); give an address");
        return ExitCode::from(2);
    }
    config.peers_file = opts
        .peers_file
        .as_ref()
        .map(|p| PeersFileConfig { recover_corrupt: opts.recover_peers_file, ..PeersFileConfig::new(p.clone()) });
    let node: Node<E, ConnectionMetadata> = match Node::start(config).await {
        Ok(n) => n,
        Err(e) => {
            let error = match &e {
                actor::NodeError::Bind { .. } => "Bind",
                actor::NodeError::PeersFile(_) => "PeersFile",
                _ => "Config",
            };
            emit(json!({"event": "error", "error": error, "message": e.to_string()}));
            return ExitCode::FAILURE;
        }
    };
    let bound = node.listen_addr().unwrap_or(addr);
    emit(json!({"event": "listening", "addr": point_text(&bound), "peer_id": node.peer_id().to_string()}));
    if let Some((aside, error)) = node.peers_file_recovered() {
        emit(json!({"event": "peers_file_recovered", "moved_to": aside.display().to_string(), "message": error}));
    }
    let _admin = match opts.rpc_addr {
        Some(raddr) => match AdminApi::serve(node.clone(), raddr).await {
            Ok(a) => {
                emit(json!({"event": "rpc", "addr": point_text(&a.addr())}));
                Some(a)
            }
            Err(e) => {
                emit(json!({"event": "error", "error": "Rpc", "message": e.to_string()}));
                node.shutdown().await;
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    node.subscribe_events(actix::Actor::start(Forward(tx)).recipient());
    let mut served = 0u64;
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => match ev { Some(ev) => ev, None => break },
            name = &mut signal => {
                emit(json!({"event": "shutdown", "signal": name}));
                node.shutdown().await;
                // What the shutdown produced (disconnections, the peers file) is still printed.
                while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                    print_event(&node, &ev, peer.echo);
                }
                return ExitCode::SUCCESS;
            }
        };
        if print_event(&node, &ev, peer.echo) {
            served += 1;
        }
        if opts.count.is_some_and(|n| served >= n) {
            node.shutdown().await;
            return ExitCode::SUCCESS;
        }
    }
    ExitCode::SUCCESS
}

/// Prints one node event; true if it ends a connection (served or refused).
fn print_event<E: Encoding>(node: &Node<E, ConnectionMetadata>, ev: &NodeEvent, echo: bool) -> bool {
    match ev {
        NodeEvent::Connected { peer_id, .. } => {
            if let Some(conn) = node.peer(peer_id).and_then(|p| p.connection) {
                emit(connected(&conn));
                actix::spawn(async move { serve(&conn, echo).await });
            }
            false
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
            true
        }
        NodeEvent::Rejected { addr, peer_id, reason, .. } => {
            let mut v = json!({
                "event": if actor::is_refusal(reason) { "rejected" } else { "error" },
                "error": reason,
                "addr": addr.map(|a| point_text(&a)),
                "peer_id": peer_id.map(|p| p.to_string()),
                "message": refusal_text(reason),
            });
            // The node answered with a Nack: its motive, as `connect` reports a Nack it receives.
            if let Some(motive) = (0..=5).map(NackMotive::from_code).find(|m| m.octez_name() == *reason) {
                v["motive"] = motive.to_string().into();
                v["motive_code"] = motive.code().into();
            }
            emit(v);
            true
        }
        other => {
            if let Some(v) = event_json(other) {
                emit(v);
            }
            false
        }
    }
}

/// What a node's refusal or failure reason means, for the `message` of `listen`'s events.
fn refusal_text(reason: &str) -> String {
    match reason {
        "Banned" => "the address is banned".into(),
        "PeerBanned" => "the peer id is banned".into(),
        "Greylisted" => "the address is greylisted (it misbehaved recently)".into(),
        "Evicted" => "its handshake made room for others: the peer had not sent its connection message".into(),
        "TooManyPendingHandshakes" => "too many incoming handshakes are in progress".into(),
        "PrivateMode" => "private mode: only trusted points are accepted".into(),
        "TooManyPendingFromAddress" => "too many handshakes in progress from this address".into(),
        "TooManyPendingFromNetwork" => "too many handshakes in progress from this network (/24 or /64)".into(),
        "TooManyConnectionsFromAddress" => "too many connections with this address".into(),
        "TooManyConnectionsFromNetwork" => "too many connections with this network (/24 or /64)".into(),
        "IdentityCheckFailure" => "the peer's identity is not the one expected at this point".into(),
        "NotEnoughProofOfWork" => "the peer's proof of work is below the required level".into(),
        "Myself" => "the peer is this node itself".into(),
        "DecipherError" => "a chunk from the peer failed authentication".into(),
        "InvalidAuth" => "the peer's Ack failed authentication".into(),
        "ConnectionClosed" => "the peer closed the connection during the handshake".into(),
        "RejectedSocketConnection" => "the peer closed the connection instead of answering our Ack".into(),
        "Timeout" => "the handshake did not finish in time".into(),
        r if r.contains('_') => format!("the node refused the peer with a Nack ({r})"),
        r => format!("the handshake failed: {r}"),
    }
}

/// A per-source limit of 0 would refuse every incoming socket: refused as a mistake.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
