//! A head monitor: connects to an octez node, asks for its current head, and prints the level
//! and hash of each new head it announces (octez nodes push `Current_head` as their head moves).
//!
//! ```text
//! cargo run --release --example head_monitor -- HOST:PORT [--identity PATH] [--chain-id NetXdQprcVkpaWU] [--count N]
//! ```
//!
//! Mainnet nodes require a proof-of-work level of 26: give an identity made with
//! `tezos-p2p identity generate`. `--count N` stops after N distinct heads (and prints `ok`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tezos_p2p::actor::{self, Connection, ConnectionConfig};
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::db::{DbMessage, OctezMessage};
use tezos_p2p::message::P2pMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::shell::{BlockHash, ChainId};
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};

struct Args {
    addr: SocketAddr,
    identity: Option<String>,
    chain_id: ChainId,
    count: Option<usize>,
    chain_name: String,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        addr: "127.0.0.1:9732".parse().map_err(|_| "default address")?,
        identity: None,
        chain_id: "NetXdQprcVkpaWU".parse().map_err(|e| format!("{e}"))?,
        count: None,
        chain_name: "TEZOS_MAINNET".into(),
    };
    let mut addr_given = false;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--identity" => a.identity = Some(value("--identity")?),
            "--chain-id" => a.chain_id = value("--chain-id")?.parse().map_err(|e| format!("--chain-id: {e}"))?,
            "--chain-name" => a.chain_name = value("--chain-name")?,
            "--count" => a.count = Some(value("--count")?.parse().map_err(|_| "--count N")?),
            addr if !addr_given => {
                a.addr = addr.parse().map_err(|_| format!("{addr:?} is not HOST:PORT"))?;
                addr_given = true;
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let identity = match &a.identity {
        Some(path) => Identity::load(std::path::Path::new(path)).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        }),
        None => Identity::ephemeral(),
    };
    let local = Arc::new(LocalConfig {
        identity: Arc::new(identity),
        advertised_port: None,
        version: NetworkVersion::current(a.chain_name.as_str()),
        metadata: ConnectionMetadata::default(),
        // We only watch: accept whatever the node's stamp is worth.
        expected_pow: PowTarget::new(0.0).expect("0 is a valid difficulty"),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    });
    let code = actix::System::new().block_on(async move {
        let conn: Connection<OctezMessage, ConnectionMetadata> =
            match actor::connect(a.addr, local, Duration::from_secs(10)).await {
                Ok(auth) => match auth.accept(ConnectionConfig::default()).await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return 1;
                    }
                },
                Err(e) => {
                    eprintln!("error: {e}");
                    return 1;
                }
            };
        println!("connected to {conn}");
        let ask = P2pMessage::Message(DbMessage::GetCurrentHead { chain_id: a.chain_id });
        if let Err(e) = conn.write(&ask).await {
            eprintln!("error: {e}");
            return 1;
        }
        let mut last: Option<(i32, BlockHash)> = None;
        let mut heads = 0;
        while let Ok((_, msg)) = conn.read().await {
            let P2pMessage::Message(DbMessage::CurrentHead { chain_id, current_block_header: h, current_mempool }) =
                msg
            else {
                continue;
            };
            if chain_id != a.chain_id {
                continue;
            }
            let head = (h.level, h.hash());
            if last == Some(head) {
                continue;
            }
            println!(
                "head level={} hash={} timestamp={} operations_in_mempool={}",
                head.0,
                head.1,
                h.timestamp.to_notation(),
                current_mempool.known_valid.len() + current_mempool.pending.len()
            );
            last = Some(head);
            heads += 1;
            if a.count.is_some_and(|n| heads >= n) {
                println!("ok: {heads} heads");
                conn.close(true).await;
                return 0;
            }
        }
        eprintln!("connection closed: {:?}", conn.close_reason());
        if a.count.is_some() {
            1
        } else {
            0
        }
    });
    std::process::exit(code);
}
