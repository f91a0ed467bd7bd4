//! Shared test helpers.
#![allow(dead_code)]

pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Handshake settings for a test peer: `id`, advertising `port`, TEZOS_MAINNET, no PoW required.
pub fn local_config(
    id: tezos_p2p::identity::Identity,
    port: Option<u16>,
) -> std::sync::Arc<tezos_p2p::handshake::LocalConfig<tezos_p2p::wire::ConnectionMetadata>> {
    std::sync::Arc::new(tezos_p2p::handshake::LocalConfig {
        identity: std::sync::Arc::new(id),
        advertised_port: port,
        version: tezos_p2p::wire::NetworkVersion::current("TEZOS_MAINNET"),
        metadata: tezos_p2p::wire::ConnectionMetadata::default(),
        expected_pow: tezos_p2p::pow::PowTarget::new(0.0).unwrap(),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    })
}

/// Open file descriptors of this process (the leak checks of the hostile suites).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// The release or debug `tezos-p2p` binary cargo built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tezos-p2p"))
}

/// The independent octez-compatible peer and checker (Python + PyNaCl, written from the
/// protocol specification only, not from this crate).
pub fn octez_peer() -> Command {
    let mut c = Command::new(python());
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/octez_peer.py"));
    c
}

/// A Python interpreter that has PyNaCl: the system one if it does, else a virtualenv under
/// `target/` where PyNaCl is installed from PyPI once.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let has_nacl =
            |py: &Path| Command::new(py).args(["-c", "import nacl.bindings"]).status().is_ok_and(|s| s.success());
        let system = PathBuf::from("python3");
        if has_nacl(&system) {
            return system;
        }
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv");
        let py = venv.join("bin/python3");
        if !has_nacl(&py) {
            let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().is_ok_and(|s| s.success())
                && Command::new(&py).args(["-m", "pip", "install", "-q", "pynacl"]).status().is_ok_and(|s| s.success());
            assert!(ok && has_nacl(&py), "cannot get PyNaCl for the interop tests: run `pip install pynacl`");
        }
        py
    })
    .clone()
}

/// Writes `text` to a fresh file in a temporary directory.
pub fn write_temp(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write temp file");
    p
}

/// Forwards a node's events to a channel the test reads (bounded; a full channel drops).
pub struct Forward(pub tokio::sync::mpsc::Sender<tezos_p2p::actor::NodeEvent>);

impl actix::Actor for Forward {
    type Context = actix::Context<Self>;
}

impl actix::Handler<tezos_p2p::actor::NodeEvent> for Forward {
    type Result = ();

    fn handle(&mut self, ev: tezos_p2p::actor::NodeEvent, _: &mut Self::Context) {
        let _ = self.0.try_send(ev);
    }
}

/// A TCP connection to `to` from the loopback address `from` (each peer that may be greylisted
/// gets its own address: all of 127.0.0.0/8 is loopback).
pub async fn dial(from: [u8; 4], to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind(std::net::SocketAddr::new(std::net::IpAddr::from(from), 0)).expect("bind");
    s.connect(to).await.expect("connect")
}

/// A raw peer from `from` that authenticates with the pure core (announcing `local`), then sends
/// one chunk with a flipped bit. Returns its socket, to keep it open as long as the caller wants.
pub async fn send_tampered_chunk(
    from: [u8; 4],
    to: std::net::SocketAddr,
    local: std::sync::Arc<tezos_p2p::handshake::LocalConfig<tezos_p2p::wire::ConnectionMetadata>>,
) -> tokio::net::TcpStream {
    use tezos_p2p::message::Encoding as _;
    use tokio::io::AsyncWriteExt as _;
    let stream = dial(from, to).await;
    let (mut stream, mut session, _) = tezos_p2p::handshake::authenticate(stream, local, false, Some(to), |_| Ok(()))
        .await
        .expect("handshake")
        .accept()
        .await
        .expect("accept");
    let mut enc = Vec::new();
    tezos_p2p::message::RawMessage(bytes::Bytes::from_static(b"hello")).encode(&mut enc).expect("encode");
    let mut chunk = bytes::BytesMut::new();
    tezos_p2p::wire::seal_chunks(&mut session.sealer, &enc, tezos_p2p::wire::ChunkSize::default(), &mut chunk);
    chunk[5] ^= 1;
    stream.write_all(&chunk).await.expect("write");
    stream
}
