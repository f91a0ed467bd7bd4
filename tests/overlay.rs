//! The P2P layer over loopback: nodes that know only a seed find each other through Nacks and
//! `Advertise`, keep their connection count between the limits, heal when peers die, and come
//! back from their peers file. Each node has its own 127.0.0.x address.
//!
//! No timing threshold is asserted: each wait has a generous deadline, and the test only
//! requires that the overlay reaches the stated shape before it.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use tezos_p2p::actor::{Node, NodeConfig};
use tezos_p2p::crypto::PeerId;
use tezos_p2p::identity::Identity;
use tezos_p2p::maintenance::MaintenanceConfig;
use tezos_p2p::message::db::OctezMessage;
use tezos_p2p::peers::ConnectionLimits;
use tezos_p2p::peers_file::PeersFileConfig;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::ConnectionMetadata;

type TestNode = Node<OctezMessage, ConnectionMetadata>;

/// Generous: the overlay usually settles in seconds; a loaded CI machine may take longer.
const DEADLINE: Duration = Duration::from_secs(180);

async fn node(ip: u8, trusted: &[SocketAddr], peers_file: Option<PeersFileConfig>) -> TestNode {
    let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
    config.listen_addr = Some(SocketAddr::from(([127, 0, 0, ip], 0)));
    config.expected_pow = PowTarget::new(0.0).unwrap();
    config.workers = 1;
    config.limits = ConnectionLimits::from_connections(4);
    config.maintenance = Some(MaintenanceConfig::default());
    config.trusted_points = trusted.to_vec();
    config.peers_file = peers_file;
    Node::start(config).await.expect("node starts")
}

fn peers_of(n: &TestNode) -> HashSet<PeerId> {
    n.connections().iter().map(|c| c.info().peer_id).collect()
}

/// Polls `cond` until it holds, failing with `what` and the last state past the deadline.
async fn eventually(what: &str, mut cond: impl FnMut() -> Result<(), String>) {
    let start = std::time::Instant::now();
    loop {
        match cond() {
            Ok(()) => return,
            Err(state) if start.elapsed() > DEADLINE => panic!("{what}: not reached in {DEADLINE:?}: {state}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn check_counts(nodes: &[&TestNode], min: usize, max: usize) -> Result<(), String> {
    let counts: Vec<usize> = nodes.iter().map(|n| n.connections().len()).collect();
    if counts.iter().all(|c| (min..=max).contains(c)) {
        Ok(())
    } else {
        Err(format!("connection counts {counts:?}"))
    }
}

#[actix::test]
async fn sixteen_nodes_that_know_only_a_seed_form_an_overlay_and_heal() {
    let limits = ConnectionLimits::from_connections(4);
    let (min, max) = (limits.min_connections, limits.max_connections);
    let seed = node(10, &[], None).await;
    let seed_point = seed.listen_addr().unwrap();
    let mut nodes = Vec::new();
    for i in 0..15u8 {
        nodes.push(node(11 + i, &[seed_point], None).await);
    }
    let all = |nodes: &[TestNode]| -> Vec<TestNode> {
        let mut v = vec![seed.clone()];
        v.extend(nodes.iter().cloned());
        v
    };
    eventually("every node between min and max connections", || {
        let everyone = all(&nodes);
        check_counts(&everyone.iter().collect::<Vec<_>>(), min, max)
    })
    .await;
    // Most connections are between non-seed nodes: learned through Nacks and Advertise.
    let seed_id = seed.peer_id();
    let (mut to_seed, mut others) = (0, 0);
    for n in &nodes {
        for p in peers_of(n) {
            if p == seed_id {
                to_seed += 1;
            } else {
                others += 1;
            }
        }
    }
    eprintln!("formed: {others} connection ends between nodes, {to_seed} to the seed");
    assert!(others > to_seed, "{others} connections between nodes, {to_seed} to the seed");
    assert!(nodes.iter().all(|n| n.points().len() > 1), "every node learned points beyond the seed");

    // Kill a quarter of the nodes: the others go back between the limits without them.
    let dead: Vec<TestNode> = nodes.drain(..4).collect();
    let dead_ids: HashSet<PeerId> = dead.iter().map(|n| n.peer_id()).collect();
    for d in &dead {
        d.shutdown().await;
    }
    eventually("the survivors heal", || {
        let everyone = all(&nodes);
        check_counts(&everyone.iter().collect::<Vec<_>>(), min, max)?;
        for n in &everyone {
            if let Some(p) = peers_of(n).intersection(&dead_ids).next() {
                return Err(format!("still connected to dead node {p}"));
            }
        }
        Ok(())
    })
    .await;
    eprintln!("healed: {:?}", all(&nodes).iter().map(|n| n.connections().len()).collect::<Vec<_>>());
    for n in all(&nodes) {
        n.shutdown().await;
    }
}

#[actix::test]
async fn a_restarted_node_reconnects_to_the_points_it_learned() {
    let dir = tempfile::tempdir().unwrap();
    let file = PeersFileConfig::new(dir.path().join("peers.json"));
    let seed = node(40, &[], None).await;
    let seed_point = seed.listen_addr().unwrap();
    let others = [node(41, &[seed_point], None).await, node(42, &[seed_point], None).await];
    let other_ids: HashSet<PeerId> = others.iter().map(|n| n.peer_id()).collect();
    let me = node(43, &[seed_point], Some(file.clone())).await;
    eventually("the node learns the other nodes' points", || {
        let known: HashSet<SocketAddr> = me.points().into_iter().map(|(a, _)| a).collect();
        match others.iter().all(|o| known.contains(&o.listen_addr().unwrap())) {
            true => Ok(()),
            false => Err(format!("knows {known:?}")),
        }
    })
    .await;
    me.shutdown().await;
    seed.shutdown().await;
    let saved = std::fs::read_to_string(&file.path).unwrap();
    for o in &others {
        assert!(saved.contains(&o.listen_addr().unwrap().to_string()), "{saved}");
    }
    // Restarted with its peers file only (no bootstrap peer, the seed gone).
    let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
    config.listen_addr = Some(SocketAddr::from(([127, 0, 0, 44], 0)));
    config.expected_pow = PowTarget::new(0.0).unwrap();
    config.workers = 1;
    config.limits = ConnectionLimits::from_connections(4);
    config.maintenance = Some(MaintenanceConfig::default());
    config.peers_file = Some(file.clone());
    let again: TestNode = Node::start(config).await.unwrap();
    eventually("the restarted node reconnects to learned points", || {
        let connected = peers_of(&again);
        match connected.intersection(&other_ids).count() {
            0 => Err(format!("connected to {connected:?}")),
            _ => Ok(()),
        }
    })
    .await;
    again.shutdown().await;
    for o in &others {
        o.shutdown().await;
    }
}

#[actix::test]
async fn a_corrupt_peers_file_stops_the_start_unless_recovery_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    std::fs::write(&path, b"{\"version\": 1, \"points\": [{\"point\": \"127.0.0.1:1\"").unwrap();
    let mut config = NodeConfig::new(Identity::ephemeral(), ConnectionMetadata::default());
    config.peers_file = Some(PeersFileConfig::new(&path));
    let e = Node::<OctezMessage, _>::start(config.clone()).await.err().expect("a truncated file is an error");
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert!(path.exists(), "the file is left as it was");
    config.peers_file = Some(PeersFileConfig { recover_corrupt: true, ..PeersFileConfig::new(&path) });
    let n = Node::<OctezMessage, _>::start(config).await.expect("recovery starts the node");
    assert!(!path.exists(), "moved aside");
    let aside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).collect();
    assert_eq!(aside.len(), 1);
    assert!(aside[0].file_name().to_string_lossy().starts_with("peers.json.corrupt-"));
    n.shutdown().await;
}

#[actix::test]
async fn a_private_node_dials_and_accepts_only_trusted_points_and_answers_no_bootstrap() {
    let friend = node(50, &[], None).await;
    let stranger = node(51, &[], None).await;
    let mut config =
        NodeConfig::new(Identity::ephemeral(), ConnectionMetadata { disable_mempool: false, private_node: true });
    config.listen_addr = Some(SocketAddr::from(([127, 0, 0, 52], 0)));
    config.expected_pow = PowTarget::new(0.0).unwrap();
    config.workers = 1;
    config.limits = ConnectionLimits::from_connections(4);
    config.maintenance = Some(MaintenanceConfig::default());
    config.private_mode = true;
    config.trusted_points = vec![friend.listen_addr().unwrap()];
    let private: TestNode = Node::start(config).await.unwrap();
    // It learns another point, but dials only the trusted one.
    private.add_point(stranger.listen_addr().unwrap());
    eventually("the trusted point is dialled", || match peers_of(&private).contains(&friend.peer_id()) {
        true => Ok(()),
        false => Err("not yet".into()),
    })
    .await;
    assert!(!peers_of(&private).contains(&stranger.peer_id()));
    assert!(private.connect(stranger.listen_addr().unwrap()).await.is_err(), "private mode dials trusted points only");
    // An untrusted peer is refused (no Nack: the socket is closed).
    assert!(stranger.connect(private.listen_addr().unwrap()).await.is_err());
    // Its peers never advertise it: the friend sees a private peer.
    assert!(friend.connections().iter().all(|c| c.private_node()));
    let public = friend.point(&private.listen_addr().unwrap());
    assert!(public.is_none_or(|p| !p.known_public), "a private node's point is not advertisable");
    for n in [private, friend, stranger] {
        n.shutdown().await;
    }
}
