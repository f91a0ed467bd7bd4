//! octez's P2P layer (`Bootstrap`, `Advertise`, `Swap_*`, `Disconnect`) between `tezos-p2p
//! listen` and the independent Python peer (`tests/interop/octez_peer.py`, written from the
//! specification), byte for byte, over loopback; each party on its own 127.0.0.x address where
//! greylisting could mix them up.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bin, octez_peer};
use serde_json::Value;

/// Generous: each awaited event normally comes within a second or two.
const DEADLINE: Duration = Duration::from_secs(120);

/// A process printing JSON events, read line by line by a thread (so a missing event fails
/// the test after the deadline instead of hanging it).
struct Events {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Events {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// The next event satisfying `pred` (every event read is kept in `seen`).
    fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("no {what} event in {DEADLINE:?}: {:#?}", self.seen),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("no {what} event before the end: {:#?}", self.seen),
            };
            let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            self.seen.push(ev.clone());
            if pred(&ev) {
                return ev;
            }
        }
    }

    fn event(&mut self, name: &str) -> Value {
        self.until(name, |e| e["event"] == name)
    }

    /// Waits (at most the deadline) for the process and returns its exit code with every
    /// event it printed.
    fn finish(mut self) -> (Option<i32>, Vec<Value>) {
        let start = Instant::now();
        loop {
            match self.lines.recv_timeout(DEADLINE.saturating_sub(start.elapsed())) {
                Ok(line) => self.seen.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the process did not end: {:#?}", self.seen),
            }
        }
        (self.child.wait().unwrap().code(), std::mem::take(&mut self.seen))
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tezos-p2p listen` with octez messages (the default) on `ip`, and `extra` options.
fn listen(ip: &str, extra: &[&str]) -> (Events, String) {
    let mut c = bin();
    c.args(["listen", "--addr", &format!("{ip}:0"), "--expected-pow", "0"]).args(extra);
    let mut ev = Events::spawn(c);
    let l = ev.event("listening");
    let addr = l["addr"].as_str().unwrap().to_owned();
    (ev, addr)
}

fn peer(args: &[&str]) -> Command {
    let mut c = octez_peer();
    c.args(args);
    c
}

fn run(mut cmd: Command) -> (Option<i32>, Vec<Value>) {
    let out = cmd.output().unwrap();
    let evs = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    (out.status.code(), evs)
}

fn find<'a>(evs: &'a [Value], name: &str) -> &'a Value {
    evs.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("no {name} in {evs:#?}"))
}

#[test]
fn bootstrap_is_answered_with_an_advertise_of_known_public_points_never_the_askers() {
    let (mut node, addr) = listen("127.0.0.1", &[]);
    // A public peer with a listening port: its point becomes known to the node.
    let mut known = Events::spawn(peer(&["connect", &addr, "--port-announce", "19732", "--hold", "30"]));
    known.event("connected");
    node.event("connected");
    // Another peer asks for points (it announces its own port: it must not be offered it).
    let (code, evs) =
        run(peer(&["connect", &addr, "--source", "127.0.0.2", "--port-announce", "19733", "--send-bootstrap"]));
    assert_eq!(code, Some(0), "{evs:#?}");
    let adv = find(&evs, "advertise");
    let points: Vec<&str> = adv["points"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(points, vec!["127.0.0.1:19732"], "{adv}");
    assert_eq!(adv["distinct"], true);
    node.until("advertise_sent", |e| e["event"] == "advertise_sent" && e["points"] == 1);
    // The node, short of connections, asked its peers for points in octez's encoding.
    known.until("Bootstrap from the node", |e| e["event"] == "p2p_message" && e["kind"] == "Bootstrap");
}

#[test]
fn advertised_points_are_dialled() {
    // The point to be advertised: an octez-like listener on its own address.
    let mut target = Events::spawn(peer(&["listen", "--addr", "127.0.0.3:0", "--count", "1", "--hold", "2"]));
    let t = target.event("listening");
    let target_addr = t["addr"].as_str().unwrap().to_owned();
    // --connections 4: the node wants at least 2 connections.
    let (mut node, addr) = listen("127.0.0.4", &["--connections", "4"]);
    let adv = format!("127.0.0.9:1,{target_addr}");
    let mut advertiser =
        Events::spawn(peer(&["connect", &addr, "--source", "127.0.0.5", "--send-advertise", &adv, "--hold", "30"]));
    advertiser.event("connected");
    node.until("advertise_received", |e| e["event"] == "advertise_received" && e["new_points"] == 2);
    node.until("dialing the advertised point", |e| e["event"] == "dialing" && e["point"] == target_addr.as_str());
    let connected = target.event("connected");
    assert_eq!(connected["incoming"], true);
    let (code, _) = target.finish();
    assert_eq!(code, Some(0));
}

#[test]
fn disconnect_closes_with_its_own_reason_and_no_greylisting() {
    let (mut node, addr) = listen("127.0.0.1", &[]);
    let (code, evs) = run(peer(&["connect", &addr, "--source", "127.0.0.6", "--send-disconnect"]));
    assert_eq!(code, Some(0), "{evs:#?}");
    find(&evs, "closed_by_peer");
    let d = node.event("disconnected");
    assert_eq!(d["reason"], "Disconnect", "{d}");
    // Not greylisted: the same address is served again.
    let (code, evs) = run(peer(&["connect", &addr, "--source", "127.0.0.6"]));
    assert_eq!(code, Some(0), "{evs:#?}");
}

#[test]
fn a_message_over_octez_bounds_closes_that_connection_and_others_are_still_served() {
    let (mut node, addr) = listen("127.0.0.1", &[]);
    let (code, evs) = run(peer(&["connect", &addr, "--source", "127.0.0.7", "--send-oversize"]));
    assert_eq!(code, Some(0), "{evs:#?}");
    find(&evs, "closed_by_peer");
    let d = node.event("disconnected");
    assert_eq!(d["reason"], "DecodingError", "{d}");
    // The sender is greylisted (octez greylists peers whose messages do not decode) ...
    let (code, evs) = run(peer(&["connect", &addr, "--source", "127.0.0.7"]));
    assert_eq!(code, Some(1), "{evs:#?}");
    // ... and everyone else is still served.
    let (code, evs) = run(peer(&["connect", &addr, "--source", "127.0.0.8", "--send-bootstrap", "--hold", "0"]));
    assert_eq!(code, Some(1), "no points known, so no Advertise: {evs:#?}");
    assert_eq!(find(&evs, "error")["error"], "NoAdvertise");
    find(&evs, "connected");
}

#[test]
fn a_swap_request_is_acked_with_another_peer_then_performed() {
    let (mut node, addr) = listen("127.0.0.1", &[]);
    // The peer the node will offer (public, with a listening port).
    let mut offered = Events::spawn(peer(&["connect", &addr, "--port-announce", "19740", "--hold", "30"]));
    offered.event("connected");
    node.event("connected");
    // The point the requester proposes.
    let mut target = Events::spawn(peer(&["listen", "--addr", "127.0.0.10:0", "--count", "1", "--hold", "2"]));
    let target_addr = target.event("listening")["addr"].as_str().unwrap().to_owned();
    let swap = format!("{target_addr},{}", "00".repeat(16));
    let (code, evs) =
        run(peer(&["connect", &addr, "--source", "127.0.0.11", "--send-swap-request", &swap, "--hold", "3"]));
    assert_eq!(code, Some(0), "{evs:#?}");
    let ack = evs.iter().find(|e| e["kind"] == "Swap_ack").unwrap_or_else(|| panic!("no Swap_ack: {evs:#?}"));
    assert_eq!(ack["point"], "127.0.0.1:19740", "{ack}");
    // The node dials the proposed point, then gives up the offered peer.
    assert_eq!(target.event("connected")["incoming"], true);
    node.until("swapped", |e| e["event"] == "swapped" && e["point"] == target_addr.as_str());
    offered.until("the offered peer is closed", |e| e["event"] == "closed_by_peer");
}

#[test]
fn sigterm_says_disconnect_saves_the_peers_file_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peers.json");
    let (mut node, addr) = listen("127.0.0.1", &["--peers-file", file.to_str().unwrap()]);
    let mut p =
        Events::spawn(peer(&["connect", &addr, "--source", "127.0.0.12", "--port-announce", "19750", "--hold", "30"]));
    p.event("connected");
    node.event("connected");
    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (code, evs) = node.finish();
    assert_eq!(code, Some(0), "{evs:#?}");
    assert_eq!(find(&evs, "shutdown")["signal"], "SIGTERM");
    assert!(find(&evs, "peers_saved")["peers"].as_u64().unwrap() >= 1);
    p.until("Disconnect from the node", |e| e["event"] == "p2p_message" && e["kind"] == "Disconnect");
    p.event("closed_by_peer");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let points: Vec<&str> = saved["points"].as_array().unwrap().iter().map(|p| p["point"].as_str().unwrap()).collect();
    assert!(points.contains(&"127.0.0.12:19750"), "{saved}");
}

#[test]
fn a_truncated_peers_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peers.json");
    std::fs::write(&file, "{\"version\": 1, \"peers\": [").unwrap();
    let out = bin().args(["listen", "--addr", "127.0.0.1:0", "--peers-file"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let ev: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["event"], "error");
    assert_eq!(ev["error"], "PeersFile");
    assert!(ev["message"].as_str().unwrap().contains("corrupt"), "{ev}");
    assert!(file.exists());
    // With --recover-peers-file the node starts and says where the file went.
    let mut node = Events::spawn({
        let mut c = bin();
        c.args(["listen", "--addr", "127.0.0.1:0", "--recover-peers-file", "--peers-file"]).arg(&file);
        c
    });
    node.event("listening");
    let ev = node.event("peers_file_recovered");
    let moved = ev["moved_to"].as_str().unwrap();
    assert!(moved.contains("peers.json.corrupt-") && std::path::Path::new(moved).exists(), "{ev}");
    assert!(ev["message"].as_str().unwrap().contains("corrupt"), "{ev}");
    assert!(!file.exists());
}

#[test]
fn an_advertise_of_101_points_is_a_decoding_error_that_greylists_the_sender() {
    let (mut node, addr) = listen("127.0.0.1", &[]);
    let points: Vec<String> = (1..=101).map(|i| format!("10.0.{}.{}:9732", i / 250, i % 250 + 1)).collect();
    let (code, evs) =
        run(peer(&["connect", &addr, "--source", "127.0.0.13", "--send-advertise", &points.join(","), "--hold", "10"]));
    assert_eq!(code, Some(0), "{evs:#?}");
    find(&evs, "closed_by_peer");
    let d = node.event("disconnected");
    assert_eq!(d["reason"], "DecodingError", "{d}");
    let (code, evs) = run(peer(&["connect", &addr, "--source", "127.0.0.13"]));
    assert_eq!(code, Some(1), "greylisted: {evs:#?}");
    // 100 points are fine, and learned.
    let (code, evs) = run(peer(&[
        "connect",
        &addr,
        "--source",
        "127.0.0.14",
        "--send-advertise",
        &points[..100].join(","),
        "--hold",
        "1",
    ]));
    assert_eq!(code, Some(0), "{evs:#?}");
    let adv = node.event("advertise_received");
    assert_eq!((adv["points"].as_u64(), adv["new_points"].as_u64()), (Some(100), Some(100)), "{adv}");
}

#[test]
fn bootstrap_peers_may_be_given_by_name() {
    let mut target = Events::spawn(peer(&["listen", "--addr", "127.0.0.1:0", "--count", "1", "--hold", "1"]));
    let t = target.event("listening");
    let port = t["addr"].as_str().unwrap().rsplit(':').next().unwrap().to_owned();
    let (mut node, _) =
        listen("127.0.0.15", &["--peer", &format!("localhost:{port}"), "--peer", "nosuchhost.invalid:9732"]);
    // A name that does not resolve is said on stdout (and tried again at the next run).
    let ev = node.until("the unresolvable name", |e| e["event"] == "resolve_failed");
    assert_eq!(ev["peer"], "nosuchhost.invalid:9732", "{ev}");
    node.until("dialing the named peer", |e| e["event"] == "dialing");
    assert_eq!(target.event("connected")["incoming"], true);
}

#[test]
fn per_source_limits_are_set_from_the_command_line() {
    use std::io::Read as _;
    let (mut node, addr) = listen("127.0.0.70", &["--max-pending-per-ip", "1"]);
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let silent = |ip: [u8; 4]| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&std::net::SocketAddr::from((ip, 0)).into()).unwrap();
        s.connect(&addr.into()).unwrap();
        std::net::TcpStream::from(s)
    };
    // One handshake in progress from 127.0.0.71 (it says nothing), then a second from the
    // same address: refused before a byte is read, and the first is kept.
    let first = silent([127, 0, 0, 71]);
    let mut second = silent([127, 0, 0, 71]);
    let ev = node.until("rejected", |e| e["event"] == "rejected");
    assert_eq!(ev["error"], "TooManyPendingFromAddress", "{ev}");
    assert_eq!(ev["message"], "too many handshakes in progress from this address", "{ev}");
    assert_eq!(ev["addr"].as_str().unwrap().rsplit_once(':').unwrap().0, "127.0.0.71");
    second.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 1];
    assert!(matches!(second.read(&mut buf), Ok(0) | Err(_)), "the refused socket is closed");
    // Another address is not affected: a full handshake from 127.0.0.72.
    let (code, evs) = run(peer(&["connect", &addr.to_string(), "--source", "127.0.0.72"]));
    assert_eq!(code, Some(0), "{evs:#?}");
    drop(first);
    // A limit of 0 would refuse everyone: a usage error, not a node that serves no one.
    let out = bin().args(["listen", "--addr", "127.0.0.70:0", "--max-connections-per-network", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1"), "{out:?}");
}

#[test]
fn a_signal_right_after_listening_is_a_clean_shutdown() {
    // The handlers are installed before `listening` is printed: a SIGTERM sent the moment it
    // appears ends the node cleanly (no default-action kill), with its events and exit 0.
    let (node, _addr) = listen("127.0.0.1", &[]);
    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (code, evs) = node.finish();
    assert_eq!(code, Some(0), "{evs:#?}");
    assert_eq!(find(&evs, "shutdown")["signal"], "SIGTERM");
}
