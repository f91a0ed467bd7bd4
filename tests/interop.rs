//! The `tezos-p2p` binary against an independent octez-compatible implementation
//! (`tests/interop/octez_peer.py`, Python + PyNaCl, written from the specification only), in
//! both roles, over loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use common::{bin, octez_peer};
use serde_json::Value;

/// Starts a listener (ours or theirs), returns it with its port (read from its first event).
fn start_listener(mut cmd: Command) -> (Child, u16, BufReader<std::process::ChildStdout>) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(ev["event"], "listening", "{line}");
    let port = ev["addr"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    (child, port, out)
}

fn events(text: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn rest_events(mut child: Child, mut out: BufReader<std::process::ChildStdout>) -> (Option<i32>, Vec<Value>) {
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut out, &mut text).unwrap();
    let status = child.wait().unwrap();
    (status.code(), events(&text))
}

fn find<'a>(evs: &'a [Value], name: &str) -> &'a Value {
    evs.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("no {name} event in {evs:#?}"))
}

fn run(mut cmd: Command) -> Output {
    cmd.output().unwrap()
}

#[test]
fn our_listener_echoes_random_messages_up_to_1_mib_byte_exact() {
    let mut ours = bin();
    // Random payloads: raw messages (the octez encoding would refuse random bytes).
    ours.args([
        "listen",
        "--addr",
        "127.0.0.1:0",
        "--echo",
        "--count",
        "2",
        "--expected-pow",
        "0",
        "--messages",
        "raw",
    ]);
    let (child, port, out) = start_listener(ours);
    let target = format!("127.0.0.1:{port}");
    // Aligned chunks, then messages packed across 19-byte chunks (several per chunk, many per message).
    let mut theirs = octez_peer();
    theirs.args(["connect", &target, "--send-random", "40", "--max-size", "1048576", "--seed", "11"]);
    let r = run(theirs);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(find(&events(&r.stdout), "echo_ok")["messages"], 40);
    let mut packed = octez_peer();
    packed.args([
        "connect",
        &target,
        "--send-random",
        "30",
        "--max-size",
        "5000",
        "--seed",
        "12",
        "--pack",
        "--chunk-size",
        "19",
    ]);
    let r = run(packed);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    let (code, evs) = rest_events(child, out);
    assert_eq!(code, Some(0), "{evs:#?}");
    let c = find(&evs, "connected");
    assert_eq!(c["incoming"], true);
    assert_eq!(c["version"]["distributed_db_version"], 2);
    let d = find(&evs, "disconnected");
    assert_eq!(d["reason"], "ConnectionClosed");
    assert!(d["total_recv"].as_u64().unwrap() > 1_000_000);
}

#[test]
fn our_connector_echoes_what_their_listener_sends() {
    let mut theirs = octez_peer();
    theirs.args([
        "listen",
        "--addr",
        "127.0.0.1:0",
        "--count",
        "1",
        "--send-random",
        "30",
        "--max-size",
        "1048576",
        "--seed",
        "5",
        "--pack",
    ]);
    let (child, port, out) = start_listener(theirs);
    let r = run({
        let mut c = bin();
        c.args(["connect", &format!("127.0.0.1:{port}"), "--expected-pow", "0", "--echo", "--messages", "raw"]);
        c
    });
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    let ours = events(&r.stdout);
    assert_eq!(find(&ours, "connected")["incoming"], false);
    let (code, evs) = rest_events(child, out);
    assert_eq!(code, Some(0), "{evs:#?}");
    assert_eq!(find(&evs, "echo_ok")["messages"], 30);
}

#[test]
fn connect_without_echo_closes_cleanly_and_exits_0() {
    let mut theirs = octez_peer();
    theirs.args(["listen", "--addr", "127.0.0.1:0", "--count", "1", "--echo"]);
    let (child, port, out) = start_listener(theirs);
    let r = run({
        let mut c = bin();
        c.args(["connect", &format!("127.0.0.1:{port}"), "--expected-pow", "0"]);
        c
    });
    assert_eq!(r.status.code(), Some(0));
    let ours = events(&r.stdout);
    assert_eq!(ours.len(), 2, "{ours:#?}");
    assert_eq!(ours[0]["event"], "connected");
    assert_eq!(ours[1]["event"], "disconnected");
    assert_eq!(ours[1]["total_sent"], 144); // ConnMsg 105 + metadata 20 + Ack 19
    let (_, evs) = rest_events(child, out);
    assert_eq!(find(&evs, "disconnected")["reason"], "ConnectionClosed");
}

#[test]
fn a_nack_with_alternative_points_is_reported_by_connect() {
    let mut theirs = octez_peer();
    theirs.args(["listen", "--addr", "127.0.0.1:0", "--count", "1", "--nack", "1", "--nack-points-count", "100"]);
    let (child, port, out) = start_listener(theirs);
    let r = run({
        let mut c = bin();
        c.args(["connect", &format!("127.0.0.1:{port}"), "--expected-pow", "0"]);
        c
    });
    assert_eq!(r.status.code(), Some(1));
    let ev = find(&events(&r.stdout), "rejected").clone();
    assert_eq!(ev["error"], "RejectedByNack");
    assert_eq!(ev["motive"], "Too_many_connections");
    assert_eq!(ev["motive_code"], 1);
    let points = ev["alternative_points"].as_array().unwrap();
    assert_eq!(points.len(), 100);
    assert_eq!(points[0], "10.0.0.1:9732");
    let _ = rest_events(child, out);
}

#[test]
fn our_listener_nacks_another_chain_with_unknown_chain_name_and_v0_peers_with_nack_v0() {
    let mut ours = bin();
    ours.args(["listen", "--addr", "127.0.0.1:0", "--count", "2", "--expected-pow", "0"]);
    let (child, port, out) = start_listener(ours);
    let target = format!("127.0.0.1:{port}");
    let r = run({
        let mut c = octez_peer();
        c.args(["connect", &target, "--chain-name", "TEZOS_GHOSTNET"]);
        c
    });
    let ev = find(&events(&r.stdout), "rejected").clone();
    assert_eq!((ev["error"].as_str(), ev["motive"].as_i64()), (Some("RejectedByNack"), Some(2)), "{ev}");
    let r = run({
        let mut c = octez_peer();
        c.args(["connect", &target, "--chain-name", "TEZOS_GHOSTNET", "--p2p-version", "0"]);
        c
    });
    let ev = find(&events(&r.stdout), "rejected").clone();
    assert!(ev["alternative_points"].is_null(), "Nack_v_0 carries no points: {ev}");
    let (code, evs) = rest_events(child, out);
    assert_eq!(code, Some(0));
    assert_eq!(evs.iter().filter(|e| e["error"] == "RejectedNoCommonProtocol").count(), 2, "{evs:#?}");
}

#[test]
fn our_listener_refuses_insufficient_pow_and_keeps_serving() {
    let mut ours = bin();
    ours.args([
        "listen",
        "--addr",
        "127.0.0.1:0",
        "--count",
        "3",
        "--expected-pow",
        "12",
        "--echo",
        "--messages",
        "raw",
    ]);
    let (child, port, out) = start_listener(ours);
    let target = format!("127.0.0.1:{port}");
    let weak = run({
        let mut c = octez_peer();
        c.args(["connect", &target, "--pow", "0", "--source", "127.0.0.2"]);
        c
    });
    assert_eq!(weak.status.code(), Some(1));
    assert_eq!(find(&events(&weak.stdout), "error")["error"], "ConnectionClosed");
    // An honest peer (an identity we generate at difficulty 12) still gets in.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id.json");
    assert!(bin()
        .args(["identity", "generate", "--difficulty", "12", "--output"])
        .arg(&path)
        .status()
        .unwrap()
        .success());
    let strong = run({
        let mut c = octez_peer();
        c.args(["connect", &target, "--send-random", "3", "--max-size", "100", "--identity"]).arg(&path);
        c
    });
    assert_eq!(strong.status.code(), Some(0), "{}", String::from_utf8_lossy(&strong.stdout));
    // octez greylists the address of a peer with insufficient proof of work: a later attempt
    // from 127.0.0.2, even with a good identity, is refused at accept.
    let again = run({
        let mut c = octez_peer();
        c.args(["connect", &target, "--send-random", "1", "--max-size", "10", "--source", "127.0.0.2", "--identity"])
            .arg(&path);
        c
    });
    assert_eq!(again.status.code(), Some(1));
    let (code, evs) = rest_events(child, out);
    assert_eq!(code, Some(0));
    assert_eq!(find(&evs, "error")["error"], "NotEnoughProofOfWork");
    assert_eq!(find(&evs, "rejected")["error"], "Greylisted");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(bin().args(["connect", "not-an-address"]).output().unwrap().status.code(), Some(2));
    assert_eq!(bin().args(["listen"]).output().unwrap().status.code(), Some(2));
}

#[test]
fn with_max_connections_1_a_second_peer_gets_too_many_connections_with_the_first_peers_point() {
    let mut ours = bin();
    ours.args(["listen", "--addr", "127.0.0.1:0", "--max-connections", "1", "--expected-pow", "0", "--echo"]);
    let (mut child, port, _out) = start_listener(ours);
    let target = format!("127.0.0.1:{port}");
    // The first peer announces port 12345 and stays connected (echoing, so it waits for us).
    let mut first = octez_peer()
        .args(["connect", &target, "--port-announce", "12345", "--echo", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_out = BufReader::new(first.stdout.take().unwrap());
    let mut line = String::new();
    first_out.read_line(&mut line).unwrap();
    assert!(line.contains("\"connected\""), "{line}");
    let second = run({
        let mut c = octez_peer();
        c.args(["connect", &target, "--source", "127.0.0.2"]);
        c
    });
    assert_eq!(second.status.code(), Some(1));
    let ev = find(&events(&second.stdout), "rejected").clone();
    assert_eq!(ev["error"], "RejectedByNack");
    assert_eq!(ev["motive"], 1, "Too_many_connections: {ev}");
    let points: Vec<&str> = ev["alternative_points"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    assert!(points.contains(&"127.0.0.1:12345"), "{points:?}");
    let _ = first.kill();
    let _ = child.kill();
    let _ = child.wait();
    let _ = first.wait();
}

#[test]
fn a_nack_listing_101_points_is_a_decoding_error_not_a_crash() {
    let mut theirs = octez_peer();
    theirs.args([
        "listen",
        "--addr",
        "127.0.0.1:0",
        "--count",
        "1",
        "--nack",
        "1",
        "--nack-points-count",
        "101",
        "--force-oversize-nack",
    ]);
    let (child, port, out) = start_listener(theirs);
    let r = run({
        let mut c = bin();
        c.args(["connect", &format!("127.0.0.1:{port}"), "--expected-pow", "0"]);
        c
    });
    assert_eq!(r.status.code(), Some(1));
    let ev = find(&events(&r.stdout), "error").clone();
    assert_eq!(ev["error"], "DecodingError", "{ev}");
    assert!(ev["message"].as_str().unwrap().contains("more than 100"), "{ev}");
    assert!(!String::from_utf8_lossy(&r.stderr).contains("panicked"));
    let _ = rest_events(child, out);
}
