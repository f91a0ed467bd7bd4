//! The `/network` admin API: octez's node RPCs of the same paths and JSON shapes
//! (`p2p_services.ml`, `p2p_directory.ml`), over HTTP/1.1 with JSON bodies.
//!
//! **An admin interface**: whoever reaches it can ban, trust, dial and disconnect. Bind it to
//! loopback (the CLI's default) or put it behind something that authenticates.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/network/self` | our peer id |
//! | GET | `/network/stat` | global `P2p_stat` (totals as strings, rates in bytes/s) |
//! | GET | `/network/full_stat` | stat, incoming/outgoing connections, peers, points |
//! | GET | `/network/connections` | running connections |
//! | GET, DELETE | `/network/connections/<peer_id>` (`?wait`) | one connection; close it (`wait`: flush first) |
//! | GET | `/network/peers` (`?filter=accepted\|running\|disconnected`, repeatable) | `[[peer_id, info], …]` |
//! | GET, PATCH | `/network/peers/<peer_id>` (body `{"acl": "ban"\|"trust"\|"open"}`) | one peer; change its ACL |
//! | GET | `/network/peers/<peer_id>/banned` | whether it is refused (never if trusted) |
//! | GET | `/network/points` (`?filter=requested\|accepted\|running\|disconnected`) | `[[point, info], …]` |
//! | GET, PATCH, PUT | `/network/points/<point>` (PATCH body `{"acl": …, "peer_id": …}`; PUT `?timeout=SECONDS`) | one point; change its ACL or expected peer; dial it |
//! | GET | `/network/points/<point>/banned` | whether its address is refused |
//! | DELETE | `/network/greylist` | clear greylists **and bans** (as octez does) |
//! | GET | `/network/greylist/ips`, `/network/greylist/peers` | greylisted addresses, peers |
//!
//! Unknown paths answer 404, bad input 400, each with `{"error": …}`; failures of an action
//! (a refused dial) answer 500 with `{"error": …, "kind": <octez error name>}`. octez's
//! streaming `/log` services and `peer_metadata` (the shell's counters) are not served.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::node::Node;
use super::Connection;
use crate::crypto::PeerId;
use crate::message::Encoding;
use crate::peers::{PeerEntry, PointInfo, PointState};
use crate::peers_file::{conn_id_json, time_json, WallClock};
use crate::stat::Stat;
use crate::wire::{point_text, Metadata};

/// Largest request body accepted (ACL changes are a few dozen bytes).
const MAX_BODY: usize = 16 * 1024;

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The address is taken or not ours.
    #[error("cannot serve the admin API on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The running admin API of a node; it stops with the node.
pub struct AdminApi {
    addr: SocketAddr,
}

impl AdminApi {
    /// Serves the API of `node` on `addr` (port 0 picks a free one). Must run inside the actix
    /// `System` of the node.
    pub async fn serve<E: Encoding, M: Metadata>(node: Node<E, M>, addr: SocketAddr) -> Result<Self, AdminError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| AdminError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| AdminError::Bind { addr, source })?;
        let shutdown = node.inner.shutdown.clone();
        let app = router(node);
        actix::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await });
            if let Err(e) = server.await {
                tracing::warn!("admin API stopped: {e}");
            }
        });
        Ok(Self { addr: bound })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The API's routes over `node` (to embed them in another server).
pub fn router<E: Encoding, M: Metadata>(node: Node<E, M>) -> Router {
    Router::new()
        .route("/network/self", get(self_id::<E, M>))
        .route("/network/stat", get(stat::<E, M>))
        .route("/network/full_stat", get(full_stat::<E, M>))
        .route("/network/connections", get(connections::<E, M>))
        .route("/network/connections/{peer}", get(connection::<E, M>).delete(close_connection::<E, M>))
        .route("/network/peers", get(peers::<E, M>))
        .route("/network/peers/{peer}", get(peer::<E, M>).patch(patch_peer::<E, M>))
        .route("/network/peers/{peer}/banned", get(peer_banned::<E, M>))
        .route("/network/points", get(points::<E, M>))
        .route("/network/points/{point}", get(point::<E, M>).patch(patch_point::<E, M>).put(put_point::<E, M>))
        .route("/network/points/{point}/banned", get(point_banned::<E, M>))
        .route("/network/greylist", axum::routing::delete(clear_greylist::<E, M>))
        .route("/network/greylist/ips", get(greylist_ips::<E, M>))
        .route("/network/greylist/peers", get(greylist_peers::<E, M>))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found").into_response() })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            error(StatusCode::METHOD_NOT_ALLOWED, format!("method {method} is not served on this path")).into_response()
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(node)
}

type Reply = Result<Response, ApiError>;

/// An error answer: a status and a JSON body.
struct ApiError(StatusCode, Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> ApiError {
    ApiError(status, json!({"error": msg.to_string()}))
}

fn ok(v: Value) -> Reply {
    Ok(Json(v).into_response())
}

fn parse_peer(s: &str) -> Result<PeerId, ApiError> {
    s.parse().map_err(|e| error(StatusCode::BAD_REQUEST, format!("{s:?} is not a peer id: {e}")))
}

fn parse_point(s: &str) -> Result<SocketAddr, ApiError> {
    s.parse().map_err(|_| error(StatusCode::BAD_REQUEST, format!("{s:?} is not a point (addr:port)")))
}

/// The values of `key` in a query string (`?filter=a&filter=b`); a bare `key` gives `""`.
fn query_values<'q>(query: &'q Option<String>, key: &str) -> Vec<&'q str> {
    query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
        .collect()
}

/// octez's flag arguments: `wait`, `wait=true|t|yes|y` (or empty) are true.
fn flag(query: &Option<String>, key: &str) -> Result<bool, ApiError> {
    match query_values(query, key).last() {
        None => Ok(false),
        Some(&("" | "true" | "t" | "yes" | "y")) => Ok(true),
        Some(&("false" | "f" | "no" | "n")) => Ok(false),
        Some(v) => Err(error(StatusCode::BAD_REQUEST, format!("{key}={v}: expected a boolean"))),
    }
}

fn stat_json(s: &Stat) -> Value {
    // int64 totals are strings in octez's JSON.
    json!({
        "total_sent": s.total_sent.to_string(),
        "total_recv": s.total_recv.to_string(),
        "current_inflow": s.current_inflow,
        "current_outflow": s.current_outflow,
    })
}

/// octez `P2p_connection.Info` JSON.
pub fn connection_json<E: Encoding, M: Metadata>(c: &Connection<E, M>) -> Value {
    let info = c.info();
    let v = &info.announced_version;
    let mut o = json!({
        "incoming": info.incoming,
        "peer_id": info.peer_id.to_string(),
    });
    if let Some(p) = info.id_point {
        o["id_point"] = conn_id_json(p.addr, p.port);
    }
    if let Some(port) = info.remote_socket_port {
        o["remote_socket_port"] = port.into();
    }
    o["announced_version"] = json!({
        "chain_name": String::from_utf8_lossy(v.chain_name.as_bytes()),
        "distributed_db_version": v.distributed_db_version,
        "p2p_version": v.p2p_version,
    });
    o["private"] = info.private_node.into();
    o["local_metadata"] = info.local_metadata.to_json();
    o["remote_metadata"] = info.remote_metadata.to_json();
    o
}

fn peer_json<E: Encoding, M: Metadata>(
    entry: &PeerEntry,
    trusted: bool,
    conn: Option<&Connection<E, M>>,
    clock: &WallClock,
) -> Value {
    let t = |i: Instant| time_json(clock.system(i));
    let conn_id = conn_id_json(entry.addr, entry.point.map(|p| p.port()));
    let mut o = json!({"score": 1.0, "trusted": trusted});
    if let Some(c) = conn {
        o["conn_metadata"] = c.info().remote_metadata.to_json();
    }
    o["state"] = entry.state.name().into();
    if let Some(c) = conn {
        let info = c.info();
        if let Some(p) = info.id_point {
            o["reachable_at"] = conn_id_json(p.addr, p.port);
        }
    }
    o["stat"] = stat_json(&conn.map(|c| c.stat()).unwrap_or_default());
    let fields = [
        ("last_rejected_connection", entry.last_rejected),
        ("last_established_connection", entry.last_established),
        ("last_disconnection", entry.last_disconnected),
    ];
    for (field, at) in fields {
        if let Some(at) = at {
            o[field] = json!([conn_id, t(at)]);
        }
    }
    let last = fields.iter().filter_map(|(_, at)| *at).max();
    if let Some(at) = last {
        o["last_seen"] = json!([conn_id, t(at)]);
    }
    let miss = [entry.last_rejected, entry.last_disconnected].into_iter().flatten().max();
    if let Some(at) = miss {
        o["last_miss"] = json!([conn_id, t(at)]);
    }
    o
}

/// octez `P2p_point.Info` JSON.
pub fn point_json(p: &PointInfo, clock: &WallClock) -> Value {
    let t = |i: Instant| time_json(clock.system(i));
    let mut o = json!({"trusted": p.trusted});
    if let Some(r) = p.reconnection {
        o["greylisted_until"] = t(r.end).into();
    }
    let mut state = json!({"event_kind": p.state.name()});
    if let Some(peer) = p.state.peer() {
        state["p2p_peer_id"] = peer.to_string().into();
    }
    o["state"] = state;
    if let Some(peer) = p.state.peer() {
        o["p2p_peer_id"] = peer.to_string().into();
    }
    if let Some(f) = p.last_failed_connection {
        o["last_failed_connection"] = t(f).into();
    }
    let pair = |v: Option<(PeerId, Instant)>| v.map(|(peer, at)| json!([peer.to_string(), t(at)]));
    for (field, v) in [
        ("last_rejected_connection", p.last_rejected_connection),
        ("last_established_connection", p.last_established_connection),
        ("last_disconnection", p.last_disconnection),
        ("last_seen", p.last_seen()),
    ] {
        if let Some(j) = pair(v) {
            o[field] = j;
        }
    }
    if let Some(m) = p.last_miss() {
        o["last_miss"] = t(m).into();
    }
    if let Some(e) = p.expected_peer_id {
        o["expected_peer_id"] = e.to_string().into();
    }
    o
}

async fn self_id<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>) -> Reply {
    ok(json!(node.peer_id().to_string()))
}

async fn stat<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>) -> Reply {
    ok(stat_json(&node.scheduler().stat()))
}

fn peer_entry_json<E: Encoding, M: Metadata>(node: &Node<E, M>, id: &PeerId) -> Option<Value> {
    let info = node.peer(id)?;
    let trusted = node.registry().table().is_trusted(id);
    Some(peer_json(&info.entry, trusted, info.connection.as_ref(), &node.clock()))
}

fn peers_list<E: Encoding, M: Metadata>(node: &Node<E, M>, filter: &[&str]) -> Vec<Value> {
    let mut peers = node.peers();
    peers.sort_by_key(|(id, _)| *id);
    peers
        .into_iter()
        .filter(|(_, e)| filter.is_empty() || filter.contains(&e.state.name()))
        .filter_map(|(id, _)| Some(json!([id.to_string(), peer_entry_json(node, &id)?])))
        .collect()
}

fn points_list<E: Encoding, M: Metadata>(node: &Node<E, M>, filter: &[&str]) -> Vec<Value> {
    let clock = node.clock();
    let mut points = node.points();
    points.sort_by_key(|(a, _)| *a);
    points
        .into_iter()
        .filter(|(_, p)| filter.is_empty() || filter.contains(&p.state.name()))
        .map(|(a, p)| json!([point_text(&a), point_json(&p, &clock)]))
        .collect()
}

async fn full_stat<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>) -> Reply {
    let conns = node.connections();
    let (incoming, outgoing): (Vec<_>, Vec<_>) = conns.iter().partition(|c| c.info().incoming);
    ok(json!({
        "stat": stat_json(&node.scheduler().stat()),
        "incoming_connections": incoming.iter().map(|c| connection_json(c)).collect::<Vec<_>>(),
        "outgoing_connections": outgoing.iter().map(|c| connection_json(c)).collect::<Vec<_>>(),
        "peers": peers_list(&node, &[]),
        "points": points_list(&node, &[]),
    }))
}

async fn connections<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>) -> Reply {
    let mut conns = node.connections();
    conns.sort_by_key(|c| c.info().peer_id);
    ok(Value::Array(conns.iter().map(connection_json).collect()))
}

fn running<E: Encoding, M: Metadata>(node: &Node<E, M>, peer: &PeerId) -> Option<Connection<E, M>> {
    node.peer(peer).and_then(|p| p.connection)
}

async fn connection<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>, Path(peer): Path<String>) -> Reply {
    let peer = parse_peer(&peer)?;
    match running(&node, &peer) {
        Some(c) => ok(connection_json(&c)),
        None => Err(error(StatusCode::NOT_FOUND, format!("no connection with {peer}"))),
    }
}

async fn close_connection<E: Encoding, M: Metadata>(
    State(node): State<Node<E, M>>,
    Path(peer): Path<String>,
    RawQuery(query): RawQuery,
) -> Reply {
    let peer = parse_peer(&peer)?;
    let wait = flag(&query, "wait")?;
    // octez answers OK for an unknown peer too.
    node.disconnect(&peer, wait).await;
    ok(json!({}))
}

async fn peers<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>, RawQuery(query): RawQuery) -> Reply {
    let filter = query_values(&query, "filter");
    if let Some(bad) = filter.iter().find(|f| !["accepted", "running", "disconnected"].contains(f)) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("filter={bad}: expected accepted, running or disconnected"),
        ));
    }
    ok(Value::Array(peers_list(&node, &filter)))
}

async fn peer<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>, Path(peer): Path<String>) -> Reply {
    let peer = parse_peer(&peer)?;
    peer_entry_json(&node, &peer).map_or_else(|| Err(error(StatusCode::NOT_FOUND, format!("unknown peer {peer}"))), ok)
}

/// A PATCH body: `{"acl": "ban" | "trust" | "open"}` and, for points, `"peer_id"`.
fn acl_body(body: &[u8], allow_peer_id: bool) -> Result<(Option<&'static str>, Option<PeerId>), ApiError> {
    let bad = |msg: String| error(StatusCode::BAD_REQUEST, msg);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("empty body: expected a JSON object such as {\"acl\": \"trust\"}".into()));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad("expected a JSON object".into()))?;
    for k in obj.keys() {
        if k != "acl" && !(allow_peer_id && k == "peer_id") {
            return Err(bad(format!("unknown field {k:?}")));
        }
    }
    let acl = match obj.get("acl") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "ban" => Some("ban"),
            "trust" => Some("trust"),
            "open" => Some("open"),
            other => return Err(bad(format!("acl: {other:?} is not ban, trust or open"))),
        },
        Some(_) => return Err(bad("acl: expected a string".into())),
    };
    let peer_id = match obj.get("peer_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_peer(s)?),
        Some(_) => return Err(bad("peer_id: expected a string".into())),
    };
    Ok((acl, peer_id))
}

async fn patch_peer<E: Encoding, M: Metadata>(
    State(node): State<Node<E, M>>,
    Path(peer): Path<String>,
    body: axum::body::Bytes,
) -> Reply {
    let peer = parse_peer(&peer)?;
    let (acl, _) = acl_body(&body, false)?;
    if node.peer(&peer).is_none() {
        return Err(error(StatusCode::NOT_FOUND, format!("unknown peer {peer}")));
    }
    match acl {
        Some("ban") => node.ban_peer_now(peer).await,
        Some("trust") => node.trust(peer),
        Some(_) => {
            node.unban_peer(peer);
            node.untrust(peer);
        }
        None => {}
    }
    peer_entry_json(&node, &peer).map_or_else(|| Err(error(StatusCode::NOT_FOUND, format!("unknown peer {peer}"))), ok)
}

async fn peer_banned<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>, Path(peer): Path<String>) -> Reply {
    let peer = parse_peer(&peer)?;
    let refused = node.registry().table().peer_refused(&peer, Instant::now()).is_some();
    ok(json!(refused))
}

async fn points<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>, RawQuery(query): RawQuery) -> Reply {
    let filter = query_values(&query, "filter");
    if let Some(bad) = filter.iter().find(|f| !["requested", "accepted", "running", "disconnected"].contains(f)) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("filter={bad}: expected requested, accepted, running or disconnected"),
        ));
    }
    ok(Value::Array(points_list(&node, &filter)))
}

async fn point<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>, Path(point): Path<String>) -> Reply {
    let point = parse_point(&point)?;
    match node.point(&point) {
        Some(p) => ok(point_json(&p, &node.clock())),
        None => Err(error(StatusCode::NOT_FOUND, format!("unknown point {}", point_text(&point)))),
    }
}

async fn patch_point<E: Encoding, M: Metadata>(
    State(node): State<Node<E, M>>,
    Path(point): Path<String>,
    body: axum::body::Bytes,
) -> Reply {
    let point = parse_point(&point)?;
    let (acl, peer_id) = acl_body(&body, true)?;
    // octez: the expected peer first (only for a known point), then the ACL.
    if let Some(expected) = peer_id {
        let running_other = {
            let mut t = node.registry().table();
            if t.point(&point).is_some() {
                t.set_expected_peer_id(point, Some(expected));
            }
            match t.point(&point).map(|p| p.state) {
                Some(PointState::Running(p)) | Some(PointState::Accepted(p)) if p != expected => {
                    t.greylist_ip(point.ip(), Instant::now());
                    Some(p)
                }
                _ => None,
            }
        };
        if let Some(other) = running_other {
            node.disconnect(&other, false).await;
        }
    }
    match acl {
        Some("ban") => node.ban_point(point).await,
        Some("trust") => {
            node.unban_ip(point.ip());
            node.set_point_trusted(point, true);
        }
        Some(_) => {
            node.unban_ip(point.ip());
            node.set_point_trusted(point, false);
        }
        None => {}
    }
    match node.point(&point) {
        Some(p) => ok(point_json(&p, &node.clock())),
        None => Err(error(StatusCode::NOT_FOUND, format!("unknown point {}", point_text(&point)))),
    }
}

async fn put_point<E: Encoding, M: Metadata>(
    State(node): State<Node<E, M>>,
    Path(point): Path<String>,
    RawQuery(query): RawQuery,
) -> Reply {
    let point = parse_point(&point)?;
    let timeout = match query_values(&query, "timeout").last() {
        None => node.config().connect_timeout,
        Some(t) => t
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, format!("timeout={t}: expected seconds")))?,
    };
    node.add_point(point);
    match tokio::time::timeout(timeout, node.connect(point)).await {
        Ok(Ok(_)) => ok(json!({})),
        Ok(Err(e)) => {
            Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e.to_string(), "kind": e.name()})))
        }
        Err(_) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "timed out", "kind": "Timeout"}))),
    }
}

async fn point_banned<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>, Path(point): Path<String>) -> Reply {
    let point = parse_point(&point)?;
    let mut t = node.registry().table();
    let trusted = t.point(&point).is_some_and(|p| p.trusted);
    let refused = !trusted && t.ip_refused(point.ip(), Instant::now()).is_some();
    ok(json!(refused))
}

async fn clear_greylist<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>) -> Reply {
    node.clear_acl();
    ok(json!({}))
}

/// octez's `P2p_addr` JSON: IPv6 text, IPv4 as `::ffff:a.b.c.d`.
fn addr_json(ip: IpAddr) -> Value {
    conn_id_json(ip, None)["addr"].clone()
}

async fn greylist_ips<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>) -> Reply {
    let ips = node.registry().table().greylisted_ips(Instant::now());
    // Our greylist is an exact table (not octez's bloom filter): always reliable.
    ok(json!({"ips": ips.into_iter().map(|(ip, _)| addr_json(ip)).collect::<Vec<_>>(), "not_reliable_since": null}))
}

async fn greylist_peers<E: Encoding, M: Metadata>(State(node): State<Node<E, M>>) -> Reply {
    let peers = node.registry().table().greylisted_peers(Instant::now());
    ok(Value::Array(peers.into_iter().map(|(p, _)| json!(p.to_string())).collect()))
}
