//! Entry points for fuzzers and "never panics" property tests (not a stable API).
//!
//! Each function feeds arbitrary bytes to one decoder or state machine and checks the
//! invariants that must hold whatever the bytes are. They are shared by `fuzz/` (cargo-fuzz)
//! and by the proptest suite, so the stable-only test run exercises them too.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::crypto::{ChannelKey, Nonce, Opener, SecretKey};
use crate::handshake::{Handshake, LocalConfig, Status};
use crate::identity::Identity;
use crate::message::{Encoding, P2pMessage, RawMessage};
use crate::pow::{PowTarget, Stamp};
use crate::wire::{AckMessage, ChunkDecoder, ConnectionMessage, ConnectionMetadata, Metadata, NetworkVersion};

/// Decodes a connection message (prefix included); whatever decodes re-encodes identically.
pub fn connection_message(data: &[u8]) {
    if let Ok(msg) = ConnectionMessage::decode(data) {
        // A decoded message has a 0 port only as `None`, so the encoding is canonical.
        assert_eq!(msg.encode().ok().as_deref(), Some(data));
    }
}

/// Decodes connection metadata.
pub fn metadata(data: &[u8]) {
    if let Ok(m) = ConnectionMetadata::decode(data) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(ConnectionMetadata::decode(&out), Ok(m));
    }
}

/// Decodes an Ack/Nack plaintext; whatever decodes re-encodes and decodes to the same value.
pub fn ack(data: &[u8]) {
    if let Ok(a) = AckMessage::decode(data) {
        let again = a.encode().ok().and_then(|b| AckMessage::decode(&b).ok());
        assert_eq!(again, Some(a));
    }
}

/// Decodes a typed message of each shipped encoding.
pub fn messages(data: &[u8]) {
    fn one<E: Encoding + PartialEq + std::fmt::Debug>(data: &[u8]) {
        if let Ok(Some(n)) = E::frame_size(data) {
            assert!(n <= E::MAX_SIZE);
            if let Some(frame) = data.get(..n) {
                if let Ok(m) = E::decode(Bytes::copy_from_slice(frame)) {
                    let mut out = Vec::new();
                    assert!(m.encode(&mut out).is_ok());
                    assert_eq!(E::decode(out.into()).ok(), Some(m));
                }
            }
        }
    }
    one::<RawMessage>(data);
    one::<P2pMessage>(data);
    one::<crate::message::db::OctezMessage>(data);
}

/// Decodes typed octez messages (the distributed_db bodies with octez's bounds): no panic;
/// whatever decodes re-encodes to the same bytes (application messages are canonical; a point's
/// text may be written differently, so P2P-layer ones are compared by value) and reads back
/// from its codec JSON. Also feeds the bytes to each shell type's decoder alone.
pub fn db_messages(data: &[u8]) {
    use crate::message::db::{self, OctezMessage};
    use crate::shell::{BlockHeader, BlockLocator, Mempool, Operation, OperationHashesPath, Protocol};
    use crate::wire::Cursor;
    let frame = Bytes::copy_from_slice(data);
    if let Ok(m) = OctezMessage::decode(frame.clone()) {
        let mut out = Vec::new();
        assert!(m.encode(&mut out).is_ok());
        if let P2pMessage::Message(_) = &m {
            assert_eq!(&out[..], data);
        } else {
            assert_eq!(OctezMessage::decode(out.into()).ok().as_ref(), Some(&m));
        }
        assert_eq!(db::from_json(&db::to_json(&m)).ok().as_ref(), Some(&m));
    }
    let _ = BlockHeader::decode(&mut Cursor::new(&frame));
    let _ = Operation::decode(&mut Cursor::new(&frame));
    let _ = Mempool::decode(&mut Cursor::new(&frame));
    let _ = BlockLocator::decode(&mut Cursor::new(&frame));
    let _ = OperationHashesPath::decode(&mut Cursor::new(&frame));
    let _ = Protocol::decode(&mut Cursor::new(&frame));
}

/// Feeds bytes to a chunk decoder under a fixed key: no panic, no reservation beyond a chunk.
pub fn chunk_stream(data: &[u8]) {
    let key = ChannelKey::from_bytes([7; 32]);
    let mut d = ChunkDecoder::new(Opener::new(key, Nonce::from_bytes([0; 24])));
    let mut src = BytesMut::from(data);
    while let Ok(Some(plain)) = d.decode(&mut src) {
        assert!(plain.len() <= crate::wire::MAX_INCOMING_PLAINTEXT);
    }
    assert!(src.capacity() <= data.len().max(2 + 65535) + 64);
}

fn local() -> Arc<LocalConfig<ConnectionMetadata>> {
    static LOCAL: OnceLock<Arc<LocalConfig<ConnectionMetadata>>> = OnceLock::new();
    LOCAL
        .get_or_init(|| {
            let identity = Identity::from_secret_key(SecretKey::from_bytes([42; 32]), Stamp::from_bytes([0; 24]));
            Arc::new(LocalConfig {
                identity: Arc::new(identity),
                advertised_port: Some(9732),
                version: NetworkVersion::current("TEZOS_MAINNET"),
                metadata: ConnectionMetadata::default(),
                expected_pow: PowTarget::new(0.0).unwrap_or_else(|_| unreachable!("0 is a valid difficulty")),
                crypto_backend: crate::crypto::CryptoBackend::default(),
            })
        })
        .clone()
}

/// Drives the handshake in one role with arbitrary peer bytes, split at arbitrary points
/// (the first byte chooses the split size): it must end in an error or keep waiting, never panic,
/// and never buffer more than one frame.
pub fn handshake(data: &[u8], incoming: bool) {
    let Ok(mut hs) = Handshake::new(local(), incoming, Nonce::from_bytes([1; 24]), None) else {
        return;
    };
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut rest = data.get(1..).unwrap_or_default();
    let _ = hs.take_output();
    while !rest.is_empty() {
        let piece = &rest[..rest.len().min(step)];
        match hs.read(piece) {
            Ok(0) => break,
            Ok(n) => rest = &rest[n..],
            Err(_) => return,
        }
        let next = match hs.status() {
            Status::PeerAnnounced(_) => hs.derive_keys(),
            Status::Authenticated(_) => hs.accept(),
            _ => Ok(()),
        };
        if next.is_err() {
            return;
        }
        let _ = hs.take_output();
    }
    let _ = hs.eof();
}
