//! Connection metadata, exchanged in the first encrypted chunk (protocol.md §6).

use super::{DecodeError, Reader};

/// A metadata encoding (octez's `'meta` with its `conn_meta_config`).
///
/// The encoded value must fit one chunk (at most 65517 bytes) and decode with no bytes left.
pub trait Metadata: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes a whole chunk plaintext.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
    /// Whether the peer asked not to be advertised (octez `private_node`).
    fn private_node(&self) -> bool {
        false
    }

    /// The metadata as JSON, for the admin API (`null` unless the type says otherwise).
    fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// The real node's metadata (`Connection_metadata`): two booleans, two bytes on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ConnectionMetadata {
    /// The sender does not want mempool traffic.
    pub disable_mempool: bool,
    /// The sender runs in private mode: do not advertise it.
    pub private_node: bool,
}

/// data-encoding `bool`: writers emit 0x00 / 0xFF.
fn encode_bool(b: bool) -> u8 {
    if b {
        0xff
    } else {
        0x00
    }
}

impl Metadata for ConnectionMetadata {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(encode_bool(self.disable_mempool));
        out.push(encode_bool(self.private_node));
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let mut read = || {
            // Readers accept any non-zero byte as true.
            let disable_mempool = r.u8("disable_mempool")? != 0;
            let private_node = r.u8("private_node")? != 0;
            Ok(Self { disable_mempool, private_node })
        };
        let m = read().map_err(|e| DecodeError::at(r.position(), e))?;
        let at = r.position();
        r.finish("connection metadata").map_err(|e| DecodeError::at(at, e))?;
        Ok(m)
    }

    fn private_node(&self) -> bool {
        self.private_node
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"disable_mempool": self.disable_mempool, "private_node": self.private_node})
    }
}

/// `Data_encoding.empty`, the metadata octez's own socket tests use: an empty chunk.
impl Metadata for () {
    fn encode(&self, _out: &mut Vec<u8>) {}

    fn to_json(&self) -> serde_json::Value {
        // octez's `Data_encoding.empty`.
        serde_json::json!({})
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Reader::new(bytes).finish("empty metadata")
    }
}
