//! The `/network` admin API: every path answers octez's JSON shapes, and ban / trust / open /
//! close / dial through it change what the node does.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tezos_p2p::actor::{AdminApi, Node, NodeConfig};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::db::OctezMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::ConnectionMetadata;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

type TestNode = Node<OctezMessage, ConnectionMetadata>;

async fn node(ip: u8) -> TestNode {
    let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
    config.listen_addr = Some(SocketAddr::from(([127, 0, 0, ip], 0)));
    config.expected_pow = PowTarget::new(0.0).unwrap();
    config.workers = 1;
    Node::start(config).await.unwrap()
}

/// One HTTP/1.1 request (`Connection: close`): the status and the JSON body.
async fn http(api: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(api).await.unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut resp)).await.unwrap().unwrap();
    let text = String::from_utf8(resp).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")))
}

async fn get(api: SocketAddr, path: &str) -> Value {
    let (status, v) = http(api, "GET", path, None).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// Waits until `cond` holds (generous deadline; no timing is asserted).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not reached");
}

fn is_time(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.ends_with("-00:00") && s.len() == 29)
}

#[actix::test]
async fn every_path_answers_octez_shapes_and_acl_changes_take_effect() {
    let n = node(60).await;
    let api = AdminApi::serve(n.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap().addr();
    let (a, b, c) = (node(61).await, node(62).await, node(63).await);
    let to = n.listen_addr().unwrap();
    a.connect(to).await.unwrap();
    b.connect(to).await.unwrap();
    eventually("two connections", || n.connections().len() == 2).await;

    assert_eq!(get(api, "/network/self").await, json!(n.peer_id().to_string()));
    let stat = get(api, "/network/stat").await;
    assert!(stat["total_sent"].is_string() && stat["total_recv"].is_string(), "{stat}");
    // The node's totals count every socket byte, handshakes included, as each connection's do.
    let totals = |v: &Value| -> (u64, u64) {
        (v["total_sent"].as_str().unwrap().parse().unwrap(), v["total_recv"].as_str().unwrap().parse().unwrap())
    };
    let per_connection =
        || n.connections().iter().map(|c| c.stat()).fold((0, 0), |(s, r), st| (s + st.total_sent, r + st.total_recv));
    // Read in this order (connections first, the node's totals after), the node's are at least
    // the connections' sum once any write in flight is counted on both.
    let mut seen = Vec::new();
    for _ in 0..600 {
        let conns = per_connection();
        let node_totals = totals(&get(api, "/network/stat").await);
        seen.push((conns, node_totals));
        if node_totals.0 >= conns.0 && node_totals.1 >= conns.1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (conns, node_totals) = *seen.last().unwrap();
    assert!(node_totals.0 >= conns.0 && node_totals.1 >= conns.1, "connections {conns:?}, node {node_totals:?}");
    assert!(stat["current_inflow"].is_u64() && stat["current_outflow"].is_u64(), "{stat}");

    let conns = get(api, "/network/connections").await;
    assert_eq!(conns.as_array().unwrap().len(), 2, "{conns}");
    let ca = get(api, &format!("/network/connections/{}", a.peer_id())).await;
    assert_eq!(ca["incoming"], true);
    assert_eq!(ca["peer_id"], a.peer_id().to_string());
    assert_eq!(ca["id_point"], json!({"addr": "::ffff:127.0.0.61", "port": a.listen_addr().unwrap().port()}));
    assert!(ca["remote_socket_port"].is_u64());
    assert_eq!(ca["announced_version"]["chain_name"], "TEZOS_MAINNET");
    assert_eq!(ca["announced_version"]["distributed_db_version"], 2);
    assert_eq!(ca["announced_version"]["p2p_version"], 1);
    assert_eq!(ca["private"], false);
    assert_eq!(ca["local_metadata"], json!({"disable_mempool": false, "private_node": false}));
    assert_eq!(ca["remote_metadata"], json!({"disable_mempool": false, "private_node": false}));
    let (status, e) = http(api, "GET", &format!("/network/connections/{}", c.peer_id()), None).await;
    assert_eq!(status, 404, "{e}");
    assert!(e["error"].is_string());

    let peers = get(api, "/network/peers").await;
    assert_eq!(peers.as_array().unwrap().len(), 2);
    let pa = get(api, &format!("/network/peers/{}", a.peer_id())).await;
    assert_eq!(pa["state"], "running");
    assert_eq!(pa["trusted"], false);
    assert_eq!(pa["score"], 1.0);
    assert!(pa["stat"]["total_recv"].is_string());
    assert!(is_time(&pa["last_established_connection"][1]), "{pa}");
    assert_eq!(pa["reachable_at"]["addr"], "::ffff:127.0.0.61");
    assert_eq!(get(api, "/network/peers?filter=running").await.as_array().unwrap().len(), 2);
    assert_eq!(get(api, "/network/peers?filter=disconnected").await, json!([]));
    let (status, _) = http(api, "GET", "/network/peers?filter=sleeping", None).await;
    assert_eq!(status, 400);

    let points = get(api, "/network/points").await;
    let a_point = a.listen_addr().unwrap().to_string();
    assert!(points.as_array().unwrap().iter().any(|p| p[0] == a_point.as_str()), "{points}");
    let pt = get(api, &format!("/network/points/{a_point}")).await;
    assert_eq!(pt["state"], json!({"event_kind": "running", "p2p_peer_id": a.peer_id().to_string()}));
    assert_eq!(pt["p2p_peer_id"], a.peer_id().to_string());
    assert!(is_time(&pt["last_established_connection"][1]), "{pt}");
    assert_eq!(get(api, "/network/points?filter=running").await.as_array().unwrap().len(), 2);

    // trust → the node trusts the peer; open → no longer.
    let (status, t) = http(api, "PATCH", &format!("/network/peers/{}", a.peer_id()), Some(r#"{"acl":"trust"}"#)).await;
    assert_eq!((status, &t["trusted"]), (200, &json!(true)), "{t}");
    assert!(n.registry().table().is_trusted(&a.peer_id()));
    let (status, o) = http(api, "PATCH", &format!("/network/peers/{}", a.peer_id()), Some(r#"{"acl":"open"}"#)).await;
    assert_eq!((status, &o["trusted"]), (200, &json!(false)));
    assert!(!n.registry().table().is_trusted(&a.peer_id()));

    // ban → its connection closes and it is refused from then on.
    let (status, _) = http(api, "PATCH", &format!("/network/peers/{}", b.peer_id()), Some(r#"{"acl":"ban"}"#)).await;
    assert_eq!(status, 200);
    eventually("the banned peer is disconnected", || n.peer(&b.peer_id()).is_some_and(|p| p.connection.is_none()))
        .await;
    assert_eq!(get(api, &format!("/network/peers/{}/banned", b.peer_id())).await, json!(true));
    assert!(b.connect(to).await.is_err(), "a banned peer is refused");
    let (status, _) = http(api, "PATCH", &format!("/network/peers/{}", b.peer_id()), Some(r#"{"acl":"open"}"#)).await;
    assert_eq!(status, 200);
    assert_eq!(get(api, &format!("/network/peers/{}/banned", b.peer_id())).await, json!(false));

    // Points: trust creates and trusts; PUT dials; ban refuses the address.
    let c_point = c.listen_addr().unwrap().to_string();
    let (status, p) = http(api, "PATCH", &format!("/network/points/{c_point}"), Some(r#"{"acl":"trust"}"#)).await;
    assert_eq!((status, &p["trusted"]), (200, &json!(true)), "{p}");
    let (status, v) = http(api, "PUT", &format!("/network/points/{c_point}?timeout=10"), Some("{}")).await;
    assert_eq!((status, v), (200, json!({})));
    eventually("dialled through the API", || n.peer(&c.peer_id()).is_some_and(|p| p.connection.is_some())).await;
    assert_eq!(get(api, &format!("/network/points/{c_point}/banned")).await, json!(false));
    let (status, _) = http(api, "PATCH", &format!("/network/points/{c_point}"), Some(r#"{"acl":"ban"}"#)).await;
    assert_eq!(status, 200);
    eventually("the banned point is disconnected", || n.peer(&c.peer_id()).is_some_and(|p| p.connection.is_none()))
        .await;
    assert_eq!(get(api, &format!("/network/points/{c_point}/banned")).await, json!(true));
    let (status, e) = http(api, "PUT", &format!("/network/points/{c_point}"), Some("{}")).await;
    assert_eq!(status, 500, "{e}");
    assert!(e["kind"].is_string(), "{e}");

    // DELETE a connection (with wait).
    let (status, _) = http(api, "DELETE", &format!("/network/connections/{}?wait", a.peer_id()), None).await;
    assert_eq!(status, 200);
    eventually("closed through the API", || n.connections().is_empty()).await;

    // Greylists: listed, then cleared (bans too, as octez does).
    n.registry().table().greylist_peer(a.peer_id(), "127.0.0.61".parse().unwrap(), std::time::Instant::now());
    let ips = get(api, "/network/greylist/ips").await;
    assert_eq!(ips["ips"], json!(["::ffff:127.0.0.61"]), "{ips}");
    assert!(ips["not_reliable_since"].is_null());
    assert_eq!(get(api, "/network/greylist/peers").await, json!([a.peer_id().to_string()]));
    let (status, v) = http(api, "DELETE", "/network/greylist", None).await;
    assert_eq!((status, v), (200, json!({})));
    assert_eq!(get(api, "/network/greylist/peers").await, json!([]));
    assert_eq!(get(api, &format!("/network/points/{c_point}/banned")).await, json!(false));

    let full = get(api, "/network/full_stat").await;
    for k in ["stat", "incoming_connections", "outgoing_connections", "peers", "points"] {
        assert!(!full[k].is_null(), "{k}: {full}");
    }

    // Errors: unknown paths, bad ids, bad bodies.
    let (status, e) = http(api, "GET", "/network/nothing", None).await;
    assert_eq!((status, e["error"].is_string()), (404, true));
    let (status, _) = http(api, "GET", "/network/peers/not-a-peer-id", None).await;
    assert_eq!(status, 400);
    let (status, e) = http(api, "PATCH", &format!("/network/peers/{}", a.peer_id()), Some("{acl")).await;
    assert_eq!((status, e["error"].is_string()), (400, true), "{e}");
    let (status, _) = http(api, "PATCH", &format!("/network/peers/{}", a.peer_id()), Some(r#"{"acl":"maybe"}"#)).await;
    assert_eq!(status, 400);
    let (status, _) = http(api, "PATCH", &format!("/network/peers/{}", c.peer_id()), Some(r#"{"what":1}"#)).await;
    assert_eq!(status, 400);
    let (status, _) = http(api, "GET", "/network/points/nowhere", None).await;
    assert_eq!(status, 400);
    let (status, e) = http(api, "PATCH", &format!("/network/peers/{}", a.peer_id()), Some("")).await;
    assert_eq!((status, e["error"].is_string()), (400, true), "an empty body is not JSON: {e}");
    for (method, path) in [("POST", "/network/self"), ("DELETE", "/network/stat"), ("PUT", "/network/peers")] {
        let (status, e) = http(api, method, path, None).await;
        assert_eq!((status, e["error"].is_string()), (405, true), "{method} {path}: {e}");
    }
    for x in [n, a, b, c] {
        x.shutdown().await;
    }
}
