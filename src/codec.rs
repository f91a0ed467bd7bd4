//! Every wire type of the crate by name, from binary to JSON and back, in the spirit of
//! `octez-codec` (what `tezos-p2p codec` runs).
//!
//! ```
//! use tezos_p2p::codec;
//!
//! let bootstrap = hex::decode("000000020002")?;
//! let json = codec::decode("p2p_message", &bootstrap)?;
//! assert_eq!(json["kind"], "Bootstrap");
//! assert_eq!(codec::encode("p2p_message", &json)?, bootstrap);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::Bytes;
use serde_json::{json, Value};

use crate::crypto::{Nonce, PublicKey};
use crate::message::db::{self, OctezMessage};
use crate::message::Encoding as _;
use crate::pow::Stamp;
use crate::shell::json::{Json, JsonError};
use crate::shell::{BlockHeader, BlockLocator, Mempool, Operation, Protocol};
use crate::wire::{
    point_text, AckMessage, ChainName, ConnectionMessage, ConnectionMetadata, Cursor, DecodeError, EncodeError,
    Metadata as _, NackMotive, NetworkVersion,
};

/// Why a conversion failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// No encoding has this name.
    #[error("unknown encoding {name:?} (known: {})", names().join(", "))]
    UnknownEncoding {
        /// The name given.
        name: String,
    },
    /// The bytes do not decode (the message names the field and its byte offset).
    #[error("{encoding}: {error}")]
    Decode {
        /// The encoding.
        encoding: &'static str,
        /// What went wrong, and where.
        error: DecodeError,
    },
    /// The JSON does not describe a value of the encoding (the message names the field).
    #[error("{encoding}: {error}")]
    Json {
        /// The encoding.
        encoding: &'static str,
        /// What went wrong, and where.
        error: JsonError,
    },
    /// The value cannot be encoded (e.g. over one of octez's bounds).
    #[error("{encoding}: {error}")]
    Encode {
        /// The encoding.
        encoding: &'static str,
        /// Why.
        error: EncodeError,
    },
}

/// One named encoding.
pub struct Codec {
    /// Its name (`p2p_message`, `block_header`, …).
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    decode: fn(Bytes) -> Result<Value, Failure>,
    encode: fn(&Value) -> Result<Vec<u8>, Failure>,
}

enum Failure {
    Decode(DecodeError),
    Json(JsonError),
    Encode(EncodeError),
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl From<JsonError> for Failure {
    fn from(e: JsonError) -> Self {
        Self::Json(e)
    }
}

impl From<EncodeError> for Failure {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

/// Decodes a whole value with `f` through a cursor, locating any error in the input.
fn whole<T>(
    bytes: &Bytes,
    what: &'static str,
    f: impl FnOnce(&mut Cursor<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut c = Cursor::new(bytes);
    let v = f(&mut c).map_err(|e| DecodeError::at(c.position(), e))?;
    c.finish(what).map_err(|e| DecodeError::at(c.position(), e))?;
    Ok(v)
}

fn encoded(f: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    f(&mut out)?;
    Ok(out)
}

fn hex_field<const N: usize>(j: &Json<'_>, name: &str) -> Result<[u8; N], JsonError> {
    let f = j.field(name)?;
    let bytes = f.hex()?;
    bytes.as_ref().try_into().map_err(|_| f.error(format!("expected {N} bytes of hex")))
}

fn version_json(v: &NetworkVersion) -> Value {
    json!({
        "chain_name": String::from_utf8_lossy(v.chain_name.as_bytes()),
        "distributed_db_version": v.distributed_db_version,
        "p2p_version": v.p2p_version,
    })
}

fn version_from_json(j: Json<'_>) -> Result<NetworkVersion, JsonError> {
    Ok(NetworkVersion {
        chain_name: ChainName::new(j.field("chain_name")?.str()?.as_bytes().to_vec()),
        distributed_db_version: j.field("distributed_db_version")?.u16()?,
        p2p_version: j.field("p2p_version")?.u16()?,
    })
}

fn points(j: Json<'_>) -> Result<Vec<std::net::SocketAddr>, JsonError> {
    j.list(|p| p.str()?.parse().map_err(|_| p.error("expected addr:port")))
}

/// Every encoding, in the order `codec list` prints them.
pub static CODECS: &[Codec] = &[
    Codec {
        name: "p2p_message",
        description: "octez P2p_message around typed distributed_db messages: u32be size, u16be tag, body",
        decode: |b| Ok(db::to_json(&OctezMessage::decode(b)?)),
        encode: |v| {
            let m = db::from_json(v)?;
            encoded(|out| m.encode(out))
        },
    },
    Codec {
        name: "block_header",
        description: "a block header (shell header, then protocol data to the end)",
        decode: |b| Ok(whole(&b, "block header", BlockHeader::decode)?.to_json()),
        encode: |v| {
            let j = Json::root(v);
            let h = BlockHeader::from_json(j.clone())?;
            j.reject_unknown()?;
            encoded(|out| h.encode(out))
        },
    },
    Codec {
        name: "operation",
        description: "an operation (branch, then protocol data to the end)",
        decode: |b| Ok(whole(&b, "operation", Operation::decode)?.to_json()),
        encode: |v| {
            let j = Json::root(v);
            let o = Operation::from_json(j.clone())?;
            j.reject_unknown()?;
            encoded(|out| o.encode(out))
        },
    },
    Codec {
        name: "mempool",
        description: "a mempool as in Current_head (known_valid and pending operation hashes)",
        decode: |b| Ok(whole(&b, "mempool", Mempool::decode)?.to_json()),
        encode: |v| {
            let j = Json::root(v);
            let m = Mempool::from_json(j.clone())?;
            j.reject_unknown()?;
            encoded(|out| m.encode(out))
        },
    },
    Codec {
        name: "block_locator",
        description: "a block locator as in Current_branch (length-prefixed head, then hashes to the end)",
        decode: |b| Ok(whole(&b, "block locator", BlockLocator::decode)?.to_json()),
        encode: |v| {
            let j = Json::root(v);
            let l = BlockLocator::from_json(j.clone())?;
            j.reject_unknown()?;
            encoded(|out| l.encode(out))
        },
    },
    Codec {
        name: "protocol",
        description: "a protocol's source (environment version and components)",
        decode: |b| Ok(whole(&b, "protocol", Protocol::decode)?.to_json()),
        encode: |v| {
            let j = Json::root(v);
            let p = Protocol::from_json(j.clone())?;
            j.reject_unknown()?;
            encoded(|out| p.encode(out))
        },
    },
    Codec {
        name: "connection_message",
        description: "the clear-text connection message body (without the u16be length that precedes it on the wire)",
        decode: |b| {
            let m = ConnectionMessage::decode_body(&b)?;
            Ok(json!({
                "port": m.port.unwrap_or(0),
                "pubkey": m.public_key.to_hex(),
                "proof_of_work_stamp": hex::encode(m.proof_of_work_stamp.as_bytes()),
                "message_nonce": hex::encode(m.message_nonce.as_bytes()),
                "version": version_json(&m.version),
            }))
        },
        encode: |v| {
            let j = Json::root(v);
            let port = j.field("port")?.u16()?;
            let m = ConnectionMessage {
                port: (port != 0).then_some(port),
                public_key: PublicKey::from_bytes(hex_field(&j, "pubkey")?),
                proof_of_work_stamp: Stamp::from_bytes(hex_field(&j, "proof_of_work_stamp")?),
                message_nonce: Nonce::from_bytes(hex_field(&j, "message_nonce")?),
                version: version_from_json(j.field("version")?)?,
            };
            j.reject_unknown()?;
            // The wire form has a 2-byte length first; this encoding is the body.
            Ok(m.encode()?.split_off(2))
        },
    },
    Codec {
        name: "metadata",
        description: "connection metadata (disable_mempool, private_node), the first encrypted chunk",
        decode: |b| {
            let m = ConnectionMetadata::decode(&b)?;
            Ok(json!({"disable_mempool": m.disable_mempool, "private_node": m.private_node}))
        },
        encode: |v| {
            let j = Json::root(v);
            let m = ConnectionMetadata {
                disable_mempool: j.field("disable_mempool")?.bool()?,
                private_node: j.field("private_node")?.bool()?,
            };
            j.reject_unknown()?;
            let mut out = Vec::new();
            m.encode(&mut out);
            Ok(out)
        },
    },
    Codec {
        name: "ack",
        description: "the answer to the metadata exchange: Ack, Nack (motive, points) or Nack_v_0",
        decode: |b| {
            Ok(match AckMessage::decode(&b)? {
                AckMessage::Ack => json!({"kind": "Ack"}),
                AckMessage::NackV0 => json!({"kind": "Nack_v_0"}),
                AckMessage::Nack { motive, alternative_points } => json!({
                    "kind": "Nack",
                    "nack_motive": motive.code(),
                    "nack_list": alternative_points.iter().map(point_text).collect::<Vec<_>>(),
                }),
            })
        },
        encode: |v| {
            let j = Json::root(v);
            let kind = j.field("kind")?;
            let m = match kind.str()? {
                "Ack" => AckMessage::Ack,
                "Nack_v_0" => AckMessage::NackV0,
                "Nack" => {
                    let code = j.field("nack_motive")?;
                    let code = i16::try_from(code.value().as_i64().unwrap_or(i64::MAX))
                        .map_err(|_| code.error("expected an int16"))?;
                    AckMessage::Nack {
                        motive: NackMotive::from_code(code),
                        alternative_points: points(j.field("nack_list")?)?,
                    }
                }
                other => return Err(kind.error(format!("unknown kind {other:?} (Ack, Nack, Nack_v_0)")).into()),
            };
            j.reject_unknown()?;
            Ok(m.encode()?)
        },
    },
];

/// The names of every encoding.
pub fn names() -> Vec<&'static str> {
    CODECS.iter().map(|c| c.name).collect()
}

fn find(name: &str) -> Result<&'static Codec, CodecError> {
    CODECS.iter().find(|c| c.name == name).ok_or_else(|| CodecError::UnknownEncoding { name: name.to_owned() })
}

fn failure(encoding: &'static str, f: Failure) -> CodecError {
    match f {
        Failure::Decode(error) => CodecError::Decode { encoding, error },
        Failure::Json(error) => CodecError::Json { encoding, error },
        Failure::Encode(error) => CodecError::Encode { encoding, error },
    }
}

/// Decodes `bytes` (exactly one value, nothing left over) as `encoding`, to its JSON.
pub fn decode(encoding: &str, bytes: &[u8]) -> Result<Value, CodecError> {
    let c = find(encoding)?;
    (c.decode)(Bytes::copy_from_slice(bytes)).map_err(|f| failure(c.name, f))
}

/// Encodes the JSON of a value of `encoding` to its bytes.
pub fn encode(encoding: &str, value: &Value) -> Result<Vec<u8>, CodecError> {
    let c = find(encoding)?;
    (c.encode)(value).map_err(|f| failure(c.name, f))
}
