//! The peers file: what a node knows of the network, kept across restarts (octez
//! `peers.json`, extended with points and ACLs).
//!
//! ```json
//! {
//!   "version": 1,
//!   "saved_at": "2026-12-01T10:00:00.000-00:00",
//!   "peers": [{"peer_id": "idt…", "created": "…", "trusted": true,
//!              "last_established_connection": [{"addr": "::ffff:1.2.3.4", "port": 9732}, "…"], …}],
//!   "points": [{"point": "1.2.3.4:9732", "trusted": true, "greylisted_until": "…",
//!               "last_failed_connection": "…", "last_established_connection": ["idt…", "…"], …}],
//!   "greylist": {"ips": [{"addr": "…", "until": "…"}], "peers": [{"peer_id": "…", "until": "…"}]},
//!   "banned": {"ips": ["…"], "peers": ["…"]}
//! }
//! ```
//!
//! Peer objects keep octez's `peers.json` field names (`peer_id`, `created`, `trusted`,
//! `last_*_connection`, `last_disconnection` as `[conn id, time]`), and an octez `peers.json`
//! (a bare array of peers) loads too. Point objects use the field names of octez's
//! `GET /network/points` (`greylisted_until` is the end of the reconnection delay, as there).
//! Times are RFC 3339 as octez prints them; times in the past that this process cannot
//! represent (before the machine booted) load as "long ago".
//!
//! [`to_json`] and [`apply`] are pure; [`save`] writes atomically (a temporary file in the same
//! directory, synced, then renamed over the old one) and [`load`] reads.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::crypto::PeerId;
use crate::peers::{PeerEntry, PeerState, PeerTable, PointInfo, PointState, Reconnection};
use crate::wire::point_text;

/// Where and how often a node keeps its peers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeersFileConfig {
    /// The file (`--peers-file`).
    pub path: PathBuf,
    /// How often it is saved while the node runs (it is also saved at shutdown).
    pub save_period: Duration,
    /// A file that does not parse is moved aside (to `PATH.corrupt-SECONDS`) with a warning
    /// instead of stopping the node from starting.
    pub recover_corrupt: bool,
}

impl PeersFileConfig {
    /// `path`, saved every minute, a corrupt file being an error.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), save_period: Duration::from_secs(60), recover_corrupt: false }
    }
}

/// Why the peers file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeersFileError {
    /// Reading or writing failed.
    #[error("peers file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a peers file (truncated, edited, another format).
    #[error("peers file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        reason: String,
    },
}

/// Converts between the monotonic clock the table uses and wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    instant: Instant,
    system: SystemTime,
}

impl WallClock {
    /// The clocks now.
    pub fn now() -> Self {
        Self { instant: Instant::now(), system: SystemTime::now() }
    }

    /// A fixed pairing (for tests).
    pub fn at(instant: Instant, system: SystemTime) -> Self {
        Self { instant, system }
    }

    /// The wall-clock time of `t`.
    pub fn system(&self, t: Instant) -> SystemTime {
        if t >= self.instant {
            self.system + (t - self.instant)
        } else {
            self.system.checked_sub(self.instant - t).unwrap_or(SystemTime::UNIX_EPOCH)
        }
    }

    /// The monotonic time of `t`; times before what `Instant` can represent come back as the
    /// earliest it can.
    pub fn instant(&self, t: SystemTime) -> Instant {
        match t.duration_since(self.system) {
            Ok(ahead) => self.instant.checked_add(ahead).unwrap_or(self.instant),
            Err(e) => {
                let back = e.duration();
                let mut d = back;
                // Step back as far as the platform allows.
                loop {
                    if let Some(i) = self.instant.checked_sub(d) {
                        return i;
                    }
                    d /= 2;
                    if d.is_zero() {
                        return self.instant;
                    }
                }
            }
        }
    }
}

/// octez's `Time.System` JSON: RFC 3339 with milliseconds and a `-00:00` offset.
pub fn time_json(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}-00:00",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// Parses RFC 3339 (any offset) or seconds since the epoch.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let unknown_offset = s.strip_suffix("-00:00").map(|base| format!("{base}Z"));
    let text = unknown_offset.as_deref().unwrap_or(s);
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Some(t.into());
    }
    let secs: i64 = s.parse().ok()?;
    Some(if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    })
}

/// octez's `P2p_connection.Id` JSON: `{"addr": "::ffff:1.2.3.4", "port": 9732}`.
pub fn conn_id_json(addr: IpAddr, port: Option<u16>) -> Value {
    let v6 = match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let text = match v6.to_ipv4_mapped() {
        Some(v4) => format!("::ffff:{v4}"),
        None => v6.to_string(),
    };
    match port {
        Some(p) => json!({"addr": text, "port": p}),
        None => json!({"addr": text}),
    }
}

fn parse_conn_id(v: &Value) -> Option<(IpAddr, Option<u16>)> {
    let addr: IpAddr = v.get("addr")?.as_str()?.parse().ok()?;
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let port = v.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
    Some((addr, port))
}

/// The table as the peers file stores it.
pub fn to_json(table: &PeerTable, clock: &WallClock, now: Instant) -> Value {
    let t = |i: Instant| time_json(clock.system(i));
    let mut peers: Vec<(String, Value)> = table
        .peers()
        .map(|(id, p)| {
            let conn = conn_id_json(p.addr, p.point.map(|x| x.port()));
            let mut o = json!({"peer_id": id.to_string(), "created": t(p.created)});
            if table.is_trusted(id) {
                o["trusted"] = true.into();
            }
            for (field, at) in [
                ("last_rejected_connection", p.last_rejected),
                ("last_established_connection", p.last_established),
                ("last_disconnection", p.last_disconnected),
            ] {
                if let Some(at) = at {
                    o[field] = json!([conn, t(at)]);
                }
            }
            if let Some(reason) = &p.last_disconnection {
                o["last_disconnection_reason"] = reason.clone().into();
            }
            (id.to_string(), o)
        })
        .collect();
    peers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut points: Vec<(SocketAddr, Value)> = table
        .points()
        .map(|(a, p)| {
            let mut o = json!({"point": point_text(a), "trusted": p.trusted});
            if let Some(r) = p.reconnection {
                o["greylisted_until"] = t(r.end).into();
                o["reconnection_delay"] = r.delay.as_secs_f64().into();
            }
            if let Some(f) = p.last_failed_connection {
                o["last_failed_connection"] = t(f).into();
            }
            for (field, v) in [
                ("last_rejected_connection", p.last_rejected_connection),
                ("last_established_connection", p.last_established_connection),
                ("last_disconnection", p.last_disconnection),
            ] {
                if let Some((peer, at)) = v {
                    o[field] = json!([peer.to_string(), t(at)]);
                }
            }
            if p.known_public {
                o["known_public"] = true.into();
            }
            if let Some(e) = p.expected_peer_id {
                o["expected_peer_id"] = e.to_string().into();
            }
            o["added"] = t(p.added).into();
            (*a, o)
        })
        .collect();
    points.sort_by_key(|(a, _)| *a);
    json!({
        "version": 1,
        "saved_at": t(now),
        "peers": peers.into_iter().map(|(_, o)| o).collect::<Vec<_>>(),
        "points": points.into_iter().map(|(_, o)| o).collect::<Vec<_>>(),
        "greylist": {
            "ips": table.greylisted_ips(now).into_iter().map(|(ip, until)| json!({"addr": ip.to_string(), "until": t(until)})).collect::<Vec<_>>(),
            "peers": table.greylisted_peers(now).into_iter().map(|(p, until)| json!({"peer_id": p.to_string(), "until": t(until)})).collect::<Vec<_>>(),
        },
        "banned": {
            "ips": table.banned_ips().map(|ip| ip.to_string()).collect::<Vec<_>>(),
            "peers": table.banned_peers().map(|p| p.to_string()).collect::<Vec<_>>(),
        },
    })
}

/// What [`apply`] restored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Peers restored.
    pub peers: usize,
    /// Points restored (or learned from peers' last addresses).
    pub points: usize,
}

struct Reader<'a> {
    what: String,
    v: &'a Value,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: impl std::fmt::Display) -> String {
        format!("{}: {reason}", self.what)
    }

    fn time(&self, field: &str) -> Result<Option<SystemTime>, String> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_time(s).map(Some).ok_or_else(|| self.err(format!("{field}: not a time"))),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|s| parse_time(&s.to_string()))
                .map(Some)
                .ok_or_else(|| self.err(format!("{field}: not a time"))),
            Some(_) => Err(self.err(format!("{field}: not a time"))),
        }
    }

    /// A `[x, time]` pair.
    fn pair(&self, field: &str) -> Result<Option<(&'a Value, SystemTime)>, String> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) if a.len() == 2 => {
                let t = a[1].as_str().and_then(parse_time).ok_or_else(|| self.err(format!("{field}: not a time")))?;
                Ok(Some((&a[0], t)))
            }
            Some(_) => Err(self.err(format!("{field}: expected [value, time]"))),
        }
    }

    fn bool(&self, field: &str) -> Result<bool, String> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.err(format!("{field}: not a boolean"))),
        }
    }

    fn peer_id(&self, v: &Value, field: &str) -> Result<PeerId, String> {
        v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| self.err(format!("{field}: not a peer id")))
    }
}

/// Restores a saved table into `table` (peers and points disconnected), checking the whole
/// document first: a corrupt file changes nothing.
pub fn apply(doc: &Value, table: &mut PeerTable, clock: &WallClock, now: Instant) -> Result<Restored, String> {
    // octez's peers.json is a bare array of peers.
    let (peers, points, greylist, banned) = match doc {
        Value::Array(a) => (a.as_slice(), &[][..], None, None),
        Value::Object(o) => {
            match o.get("version").and_then(Value::as_u64) {
                Some(1) => {}
                other => return Err(format!("unknown version {other:?} (this build reads version 1)")),
            }
            let list = |k: &str| -> Result<&[Value], String> {
                match o.get(k) {
                    None => Ok(&[]),
                    Some(Value::Array(a)) => Ok(a.as_slice()),
                    Some(_) => Err(format!("{k}: expected an array")),
                }
            };
            (list("peers")?, list("points")?, o.get("greylist"), o.get("banned"))
        }
        _ => return Err("expected a JSON object (or an octez peers.json array)".into()),
    };
    let inst = |t: SystemTime| clock.instant(t);
    let mut restored_peers = Vec::new();
    let mut learned_points = Vec::new();
    for (i, v) in peers.iter().enumerate() {
        let r = Reader { what: format!("peers[{i}]"), v };
        let id = r.peer_id(v.get("peer_id").unwrap_or(&Value::Null), "peer_id")?;
        let created = r.time("created")?.map_or(now, inst);
        let mut entry = PeerEntry {
            point: None,
            addr: IpAddr::from([0, 0, 0, 0]),
            state: PeerState::Disconnected,
            last_seen: created,
            last_disconnection: v.get("last_disconnection_reason").and_then(Value::as_str).map(str::to_owned),
            connection: None,
            created,
            last_established: None,
            last_rejected: None,
            last_disconnected: None,
            disconnects: (0, now),
        };
        let mut last_conn: Option<(Instant, IpAddr, Option<u16>)> = None;
        for field in
            ["last_failed_connection", "last_rejected_connection", "last_established_connection", "last_disconnection"]
        {
            if let Some((conn, t)) = r.pair(field)? {
                let (addr, port) = parse_conn_id(conn).ok_or_else(|| r.err(format!("{field}: not a connection id")))?;
                let at = inst(t);
                match field {
                    "last_rejected_connection" => entry.last_rejected = Some(at),
                    "last_established_connection" => entry.last_established = Some(at),
                    "last_disconnection" => entry.last_disconnected = Some(at),
                    _ => {}
                }
                if last_conn.is_none_or(|(t0, ..)| at > t0) {
                    last_conn = Some((at, addr, port));
                }
            }
        }
        if let Some((at, addr, port)) = last_conn {
            entry.addr = addr;
            entry.last_seen = at;
            entry.point = port.map(|p| SocketAddr::new(addr, p));
            // octez re-learns each saved peer's last point.
            if let Some(p) = entry.point {
                learned_points.push(p);
            }
        }
        restored_peers.push((id, r.bool("trusted")?, entry));
    }
    let mut restored_points = Vec::new();
    for (i, v) in points.iter().enumerate() {
        let r = Reader { what: format!("points[{i}]"), v };
        let point: SocketAddr = v
            .get("point")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| r.err("point: expected addr:port"))?;
        let with_peer = |field: &str| -> Result<Option<(PeerId, Instant)>, String> {
            match r.pair(field)? {
                Some((p, t)) => Ok(Some((r.peer_id(p, field)?, inst(t)))),
                None => Ok(None),
            }
        };
        let reconnection = match r.time("greylisted_until")? {
            Some(end) => {
                let delay = v.get("reconnection_delay").and_then(Value::as_f64).unwrap_or(1.0);
                let delay =
                    Duration::try_from_secs_f64(delay).map_err(|_| r.err("reconnection_delay: not a duration"))?;
                Some(Reconnection { delay, end: inst(end) })
            }
            None => None,
        };
        let last_disconnection = with_peer("last_disconnection")?;
        let last_failed = r.time("last_failed_connection")?.map(inst);
        let last_rejected = with_peer("last_rejected_connection")?;
        // The delay that follows a connection's end (60 s) is not kept across a restart: our
        // own shutdown ended those connections. The back-off of failed dials is kept.
        let ended_by_disconnection = last_disconnection
            .is_some_and(|(_, d)| last_failed.is_none_or(|f| d >= f) && last_rejected.is_none_or(|(_, r)| d >= r));
        let reconnection = reconnection.filter(|_| !ended_by_disconnection);
        let info = PointInfo {
            trusted: r.bool("trusted")?,
            state: PointState::Disconnected,
            known_public: r.bool("known_public")?,
            last_failed_connection: last_failed,
            last_rejected_connection: last_rejected,
            last_established_connection: with_peer("last_established_connection")?,
            last_disconnection,
            reconnection,
            expected_peer_id: match v.get("expected_peer_id") {
                None | Some(Value::Null) => None,
                Some(p) => Some(r.peer_id(p, "expected_peer_id")?),
            },
            added: r.time("added")?.map_or(now, inst),
        };
        restored_points.push((point, info));
    }
    let mut grey_ips = Vec::new();
    let mut grey_peers = Vec::new();
    if let Some(g) = greylist {
        for (i, e) in g.get("ips").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
            let r = Reader { what: format!("greylist.ips[{i}]"), v: e };
            let ip: IpAddr =
                e.get("addr").and_then(Value::as_str).and_then(|s| s.parse().ok()).ok_or_else(|| r.err("addr"))?;
            let until = r.time("until")?.ok_or_else(|| r.err("until: missing"))?;
            grey_ips.push((ip, inst(until)));
        }
        for (i, e) in g.get("peers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
            let r = Reader { what: format!("greylist.peers[{i}]"), v: e };
            let id = r.peer_id(e.get("peer_id").unwrap_or(&Value::Null), "peer_id")?;
            let until = r.time("until")?.ok_or_else(|| r.err("until: missing"))?;
            grey_peers.push((id, inst(until)));
        }
    }
    let mut ban_ips = Vec::new();
    let mut ban_peers = Vec::new();
    if let Some(b) = banned {
        for e in b.get("ips").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            ban_ips.push(e.as_str().and_then(|s| s.parse::<IpAddr>().ok()).ok_or("banned.ips: not an address")?);
        }
        for e in b.get("peers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            ban_peers.push(e.as_str().and_then(|s| s.parse::<PeerId>().ok()).ok_or("banned.peers: not a peer id")?);
        }
    }
    // Everything parsed: apply.
    let mut out = Restored::default();
    for (id, trusted, entry) in restored_peers {
        if trusted {
            table.trust(id);
        }
        table.restore_peer(id, entry);
        out.peers += 1;
    }
    for (point, info) in restored_points {
        if table.point(&point).is_none() {
            table.restore_point(point, info);
            out.points += usize::from(table.point(&point).is_some());
        }
    }
    for p in learned_points {
        out.points += usize::from(table.register_point(p, now));
    }
    for (ip, until) in grey_ips.into_iter().filter(|(_, u)| *u > now) {
        table.greylist_ip_until(ip, until);
    }
    for (id, until) in grey_peers.into_iter().filter(|(_, u)| *u > now) {
        table.greylist_peer_until(id, until);
    }
    for ip in ban_ips {
        table.ban_ip(ip);
    }
    for id in ban_peers {
        table.ban_peer(id);
    }
    Ok(out)
}

/// Writes `doc` to `path` atomically: a temporary file beside it, synced, renamed over it.
pub fn save(path: &Path, doc: &Value) -> Result<(), PeersFileError> {
    use std::io::Write as _;
    let io = |source| PeersFileError::Io { path: path.to_owned(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let text = serde_json::to_vec_pretty(doc).map_err(|e| io(std::io::Error::other(e)))?;
    tmp.write_all(&text).map_err(io)?;
    tmp.write_all(b"\n").map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Reads `path`: `Ok(None)` if it does not exist (a first run), the document otherwise.
pub fn load(path: &Path) -> Result<Option<Value>, PeersFileError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PeersFileError::Io { path: path.to_owned(), source }),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| PeersFileError::Corrupt { path: path.to_owned(), reason: e.to_string() })
}

/// Moves a corrupt file aside (to `PATH.corrupt-SECONDS`), returning where it went.
pub fn move_aside(path: &Path) -> Result<PathBuf, PeersFileError> {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{secs}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|source| PeersFileError::Io { path: path.to_owned(), source })?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use crate::peers::{AclConfig, ConnectionLimits};

    fn pt(n: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::from([127, 0, 0, n]), 9732)
    }

    #[test]
    fn times_print_and_parse_as_octez_does() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_729_782_151_549);
        assert_eq!(time_json(t), "2024-10-24T15:02:31.549-00:00");
        assert_eq!(parse_time("2024-10-24T15:02:31.549-00:00"), Some(t));
        assert_eq!(parse_time("1729782151"), Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_729_782_151)));
        assert_eq!(parse_time("soon"), None);
        assert_eq!(conn_id_json(IpAddr::from([1, 2, 3, 4]), Some(1)), json!({"addr": "::ffff:1.2.3.4", "port": 1}));
        assert_eq!(parse_conn_id(&json!({"addr": "::ffff:1.2.3.4"})), Some((IpAddr::from([1, 2, 3, 4]), None)));
    }

    #[test]
    fn a_table_survives_a_round_trip() {
        let now = Instant::now();
        let clock = WallClock::now();
        let mut t = PeerTable::new(AclConfig::default(), ConnectionLimits::default());
        let (a, b) = (SecretKey::generate().public_key().peer_id(), SecretKey::generate().public_key().peer_id());
        t.set_point_trusted(pt(1), true, now);
        t.admit(a, pt(2).ip(), Some(pt(2)), now).unwrap();
        t.running(a, 1, false, now);
        t.disconnected(a, Some("ConnectionClosed".into()), now);
        t.trust(b);
        t.admit(b, pt(3).ip(), Some(pt(3)), now).unwrap();
        t.running(b, 2, false, now);
        assert!(t.point_requested(pt(4), now));
        t.point_failed(pt(4), now);
        t.greylist_ip(IpAddr::from([10, 0, 0, 1]), now);
        t.ban_peer(SecretKey::generate().public_key().peer_id());
        let doc = to_json(&t, &clock, now);
        let text = serde_json::to_string(&doc).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let mut u = PeerTable::new(AclConfig::default(), ConnectionLimits::default());
        let r = apply(&doc, &mut u, &clock, now).unwrap();
        assert_eq!(r.peers, 2);
        assert_eq!(u.known_points_count(), 4);
        assert!(u.point(&pt(1)).unwrap().trusted);
        assert!(u.point(&pt(2)).unwrap().known_public);
        assert_eq!(u.point(&pt(3)).unwrap().state, PointState::Disconnected, "running points come back disconnected");
        assert!(u.point(&pt(4)).unwrap().last_failed_connection.is_some());
        assert!(u.is_trusted(&b));
        assert_eq!(u.peer(&a).unwrap().last_disconnection.as_deref(), Some("ConnectionClosed"));
        assert_eq!(u.ip_refused(IpAddr::from([10, 0, 0, 1]), now), Some(crate::peers::Refusal::Greylisted));
        assert_eq!(u.banned_peers().count(), 1);
        // A connection's end (our shutdown) does not delay the reconnection after a restart;
        // a failed dial's back-off is kept.
        assert!(u.point(&pt(2)).unwrap().reconnection.is_none());
        assert!(u.point(&pt(4)).unwrap().reconnection.is_some());
        // Otherwise what was saved is what is saved again.
        let mut again = to_json(&u, &clock, now)["points"].clone();
        let mut before = doc["points"].clone();
        for list in [&mut again, &mut before] {
            for p in list.as_array_mut().unwrap() {
                if p["point"] == point_text(&pt(2)) {
                    let o = p.as_object_mut().unwrap();
                    o.remove("greylisted_until");
                    o.remove("reconnection_delay");
                }
            }
        }
        assert_eq!(again, before);
    }

    #[test]
    fn a_corrupt_document_changes_nothing_and_says_where() {
        let now = Instant::now();
        let clock = WallClock::now();
        let mut t = PeerTable::new(AclConfig::default(), ConnectionLimits::default());
        let doc = json!({"version": 1, "points": [{"point": "127.0.0.1:1", "trusted": true}, {"point": "nowhere"}]});
        let e = apply(&doc, &mut t, &clock, now).unwrap_err();
        assert!(e.contains("points[1]"), "{e}");
        assert_eq!(t.known_points_count(), 0);
        assert!(apply(&json!({"version": 7}), &mut t, &clock, now).is_err());
        assert!(apply(&json!("x"), &mut t, &clock, now).is_err());
    }

    #[test]
    fn an_octez_peers_json_loads() {
        let now = Instant::now();
        let clock = WallClock::now();
        let id = SecretKey::generate().public_key().peer_id();
        let doc = json!([{
            "peer_id": id.to_string(),
            "created": "2024-10-24T15:02:31.549-00:00",
            "trusted": true,
            "peer_metadata": {},
            "last_established_connection": [{"addr": "::ffff:46.137.127.32", "port": 9732}, "2024-10-24T15:02:31.549-00:00"]
        }]);
        let mut t = PeerTable::new(AclConfig::default(), ConnectionLimits::default());
        assert_eq!(apply(&doc, &mut t, &clock, now).unwrap(), Restored { peers: 1, points: 1 });
        assert!(t.is_trusted(&id));
        assert!(t.point(&"46.137.127.32:9732".parse().unwrap()).is_some());
    }

    #[test]
    fn saving_is_atomic_and_loading_reports_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        assert!(load(&path).unwrap().is_none());
        save(&path, &json!({"version": 1})).unwrap();
        assert_eq!(load(&path).unwrap().unwrap(), json!({"version": 1}));
        std::fs::write(&path, b"{\"version\": 1, \"peers\": [").unwrap();
        assert!(matches!(load(&path), Err(PeersFileError::Corrupt { .. })));
        let aside = move_aside(&path).unwrap();
        assert!(aside.exists() && !path.exists());
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
