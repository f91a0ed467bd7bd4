//! octez's distributed_db messages (`src/lib_shell/distributed_db_message.ml`), typed, with
//! their exact encodings and octez's bounds, and [`OctezMessage`]: the P2P envelope around them,
//! what a real octez node sends and expects inside a session.
//!
//! ```
//! use bytes::Bytes;
//! use tezos_p2p::message::db::{DbMessage, OctezMessage};
//! use tezos_p2p::message::{Encoding, P2pMessage};
//!
//! // A capture from a 2019 test network: `Get_current_head` for chain NetXgtSLGNJvNye.
//! let frame = Bytes::from(hex::decode("0000000600138eceda2f")?);
//! let msg = OctezMessage::decode(frame)?;
//! let P2pMessage::Message(DbMessage::GetCurrentHead { chain_id }) = &msg else { panic!("{msg:?}") };
//! assert_eq!(chain_id.to_string(), "NetXgtSLGNJvNye");
//! assert_eq!(tezos_p2p::message::db::to_json(&msg)["kind"], "Get_current_head");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Bounds enforced while decoding, before anything is allocated from a claimed size
//! (`Bounded_encoding`): block header 8 MiB, operation 128 KiB, operation list 1 MiB, Merkle path
//! 100 bytes (8 validation passes), protocol 2 MiB, mempool `8 + 4000 · 32` bytes, locator
//! history 1,000 hashes, `Get_*` request lists 10 items, the whole envelope 100 MiB.

use std::net::SocketAddr;

use serde_json::{json, Value};

use super::{ApplicationMessage, P2pMessage};
use crate::crypto::PeerId;
use crate::shell::json::{Json, JsonError};
use crate::shell::{
    decode_hash_list, encode_hash_list, BlockHash, BlockHeader, BlockLocator, ChainId, Mempool, Operation,
    OperationHash, OperationHashesPath, Protocol, ProtocolHash, OPERATION_LIST_MAX_SIZE, OPERATION_MAX_SIZE,
};
use crate::wire::{point_text, Cursor, DecodeError, EncodeError};

/// Most items in a `Get_*` request (octez `list ~max_length:10`).
pub const MAX_REQUEST_LENGTH: usize = 10;

/// octez's `P2p_message` around typed distributed_db messages: what an octez node speaks. Use
/// it as `Connection<OctezMessage, _>` or `Node<OctezMessage, _>`.
pub type OctezMessage = P2pMessage<DbMessage>;

/// A block and one of its validation passes (octez `(Block_hash.t * int)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OperationsForBlock {
    /// The block.
    pub hash: BlockHash,
    /// The validation pass (`int8`).
    pub validation_pass: i8,
}

/// One octez `Distributed_db_message.t` case (field names are octez's).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbMessage {
    /// 0x10: asks for the peer's current branch of a chain.
    GetCurrentBranch {
        /// The chain.
        chain_id: ChainId,
    },
    /// 0x11: the sender's current branch (head and sparse history).
    CurrentBranch {
        /// The chain.
        chain_id: ChainId,
        /// Head and history.
        current_branch: BlockLocator,
    },
    /// 0x12: the sender stops following a chain.
    Deactivate {
        /// The chain.
        chain_id: ChainId,
    },
    /// 0x13: asks for the peer's current head.
    GetCurrentHead {
        /// The chain.
        chain_id: ChainId,
    },
    /// 0x14: the sender's current head and mempool.
    CurrentHead {
        /// The chain.
        chain_id: ChainId,
        /// The head's header.
        current_block_header: BlockHeader,
        /// The sender's mempool (often empty from recent nodes).
        current_mempool: Mempool,
    },
    /// 0x20: asks for block headers (at most 10).
    GetBlockHeaders {
        /// The blocks.
        get_block_headers: Vec<BlockHash>,
    },
    /// 0x21: a block header.
    BlockHeader {
        /// The header.
        block_header: BlockHeader,
    },
    /// 0x30: asks for operations (at most 10).
    GetOperations {
        /// The operations.
        get_operations: Vec<OperationHash>,
    },
    /// 0x31: an operation.
    Operation {
        /// The operation.
        operation: Operation,
    },
    /// 0x40: asks for protocols (at most 10).
    GetProtocols {
        /// The protocols.
        get_protocols: Vec<ProtocolHash>,
    },
    /// 0x41: a protocol's source.
    Protocol {
        /// The protocol.
        protocol: Protocol,
    },
    /// 0x60: asks for the operations of blocks, per validation pass (at most 10).
    GetOperationsForBlocks {
        /// The blocks and passes.
        get_operations_for_blocks: Vec<OperationsForBlock>,
    },
    /// 0x61: the operations of one validation pass of a block, with the Merkle path proving
    /// them against the header's `operations_hash`.
    OperationsForBlocks {
        /// The block and pass.
        operations_for_block: OperationsForBlock,
        /// The Merkle path.
        operation_hashes_path: OperationHashesPath,
        /// The operations (at most 1 MiB encoded, each at most 128 KiB).
        operations: Vec<Operation>,
    },
    /// 0x70: asks for the checkpoint of a chain.
    GetCheckpoint {
        /// The chain.
        chain_id: ChainId,
    },
    /// 0x71: the checkpoint's header.
    Checkpoint {
        /// The chain.
        chain_id: ChainId,
        /// The checkpoint block's header.
        header: BlockHeader,
    },
    /// 0x80: asks for the branch where a protocol level started.
    GetProtocolBranch {
        /// The chain.
        chain: ChainId,
        /// The protocol level (`uint8`).
        proto_level: u8,
    },
    /// 0x81: the branch of a protocol level.
    ProtocolBranch {
        /// The chain.
        chain: ChainId,
        /// The protocol level (`uint8`).
        proto_level: u8,
        /// Head and history of that branch.
        locator: BlockLocator,
    },
    /// 0x90: asks for the header `offset` blocks before `block`.
    GetPredecessorHeader {
        /// The block.
        block: BlockHash,
        /// How far back (`int32`).
        offset: i32,
    },
    /// 0x91: the header `offset` blocks before `block`.
    PredecessorHeader {
        /// The block.
        block: BlockHash,
        /// How far back (`int32`).
        offset: i32,
        /// The predecessor's header.
        header: BlockHeader,
    },
}

impl DbMessage {
    /// octez's case title (`Current_head`, `Operations_for_blocks`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::GetCurrentBranch { .. } => "Get_current_branch",
            Self::CurrentBranch { .. } => "Current_branch",
            Self::Deactivate { .. } => "Deactivate",
            Self::GetCurrentHead { .. } => "Get_current_head",
            Self::CurrentHead { .. } => "Current_head",
            Self::GetBlockHeaders { .. } => "Get_block_headers",
            Self::BlockHeader { .. } => "Block_header",
            Self::GetOperations { .. } => "Get_operations",
            Self::Operation { .. } => "Operation",
            Self::GetProtocols { .. } => "Get_protocols",
            Self::Protocol { .. } => "Protocol",
            Self::GetOperationsForBlocks { .. } => "Get_operations_for_blocks",
            Self::OperationsForBlocks { .. } => "Operations_for_blocks",
            Self::GetCheckpoint { .. } => "Get_checkpoint",
            Self::Checkpoint { .. } => "Checkpoint",
            Self::GetProtocolBranch { .. } => "Get_protocol_branch",
            Self::ProtocolBranch { .. } => "Protocol_branch",
            Self::GetPredecessorHeader { .. } => "Get_predecessor_header",
            Self::PredecessorHeader { .. } => "Predecessor_header",
        }
    }
}

fn too_many(what: &'static str, count: usize) -> Result<(), EncodeError> {
    if count > MAX_REQUEST_LENGTH {
        return Err(EncodeError::TooManyElements { what, count, max: MAX_REQUEST_LENGTH });
    }
    Ok(())
}

fn encode_operations(out: &mut Vec<u8>, operations: &[Operation]) -> Result<(), EncodeError> {
    crate::shell::encode_bounded(out, "operations", OPERATION_LIST_MAX_SIZE, |out| {
        for op in operations {
            crate::shell::encode_dynamic(out, "operation", OPERATION_MAX_SIZE, |out| op.encode(out))?;
        }
        Ok(())
    })
}

fn decode_operations(c: &mut Cursor<'_>) -> Result<Vec<Operation>, DecodeError> {
    c.bounded_rest("operations", OPERATION_LIST_MAX_SIZE, |c| {
        c.list_to_end("operations", None, |c| c.dynamic("operation", OPERATION_MAX_SIZE, Operation::decode))
    })
}

impl ApplicationMessage for DbMessage {
    fn is_tag(tag: u16) -> bool {
        super::is_application_tag(tag)
    }

    fn tag(&self) -> u16 {
        match self {
            Self::GetCurrentBranch { .. } => 0x10,
            Self::CurrentBranch { .. } => 0x11,
            Self::Deactivate { .. } => 0x12,
            Self::GetCurrentHead { .. } => 0x13,
            Self::CurrentHead { .. } => 0x14,
            Self::GetBlockHeaders { .. } => 0x20,
            Self::BlockHeader { .. } => 0x21,
            Self::GetOperations { .. } => 0x30,
            Self::Operation { .. } => 0x31,
            Self::GetProtocols { .. } => 0x40,
            Self::Protocol { .. } => 0x41,
            Self::GetOperationsForBlocks { .. } => 0x60,
            Self::OperationsForBlocks { .. } => 0x61,
            Self::GetCheckpoint { .. } => 0x70,
            Self::Checkpoint { .. } => 0x71,
            Self::GetProtocolBranch { .. } => 0x80,
            Self::ProtocolBranch { .. } => 0x81,
            Self::GetPredecessorHeader { .. } => 0x90,
            Self::PredecessorHeader { .. } => 0x91,
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Self::GetCurrentBranch { chain_id }
            | Self::Deactivate { chain_id }
            | Self::GetCurrentHead { chain_id }
            | Self::GetCheckpoint { chain_id } => out.extend_from_slice(chain_id.as_bytes()),
            Self::CurrentBranch { chain_id, current_branch } => {
                out.extend_from_slice(chain_id.as_bytes());
                current_branch.encode(out)?;
            }
            Self::CurrentHead { chain_id, current_block_header, current_mempool } => {
                out.extend_from_slice(chain_id.as_bytes());
                crate::shell::encode_dynamic(
                    out,
                    "current_block_header",
                    crate::shell::BLOCK_HEADER_MAX_SIZE,
                    |out| current_block_header.encode(out),
                )?;
                current_mempool.encode(out)?;
            }
            Self::GetBlockHeaders { get_block_headers: l } => {
                too_many("get_block_headers", l.len())?;
                encode_hash_list(out, "get_block_headers", l.iter().map(|h| *h.as_bytes()), None)?;
            }
            Self::BlockHeader { block_header } => block_header.encode(out)?,
            Self::GetOperations { get_operations: l } => {
                too_many("get_operations", l.len())?;
                encode_hash_list(out, "get_operations", l.iter().map(|h| *h.as_bytes()), None)?;
            }
            Self::Operation { operation } => operation.encode(out)?,
            Self::GetProtocols { get_protocols: l } => {
                too_many("get_protocols", l.len())?;
                encode_hash_list(out, "get_protocols", l.iter().map(|h| *h.as_bytes()), None)?;
            }
            Self::Protocol { protocol } => protocol.encode(out)?,
            Self::GetOperationsForBlocks { get_operations_for_blocks: l } => {
                too_many("get_operations_for_blocks", l.len())?;
                let items = l.iter().map(|k| {
                    let mut item = [0u8; 33];
                    item[..32].copy_from_slice(k.hash.as_bytes());
                    item[32] = k.validation_pass as u8;
                    item
                });
                encode_hash_list(out, "get_operations_for_blocks", items, None)?;
            }
            Self::OperationsForBlocks { operations_for_block, operation_hashes_path, operations } => {
                out.extend_from_slice(operations_for_block.hash.as_bytes());
                out.push(operations_for_block.validation_pass as u8);
                operation_hashes_path.encode(out)?;
                encode_operations(out, operations)?;
            }
            Self::Checkpoint { chain_id, header } => {
                out.extend_from_slice(chain_id.as_bytes());
                header.encode(out)?;
            }
            Self::GetProtocolBranch { chain, proto_level } => {
                out.extend_from_slice(chain.as_bytes());
                out.push(*proto_level);
            }
            Self::ProtocolBranch { chain, proto_level, locator } => {
                out.extend_from_slice(chain.as_bytes());
                out.push(*proto_level);
                locator.encode(out)?;
            }
            Self::GetPredecessorHeader { block, offset } => {
                out.extend_from_slice(block.as_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
            }
            Self::PredecessorHeader { block, offset, header } => {
                out.extend_from_slice(block.as_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
                header.encode(out)?;
            }
        }
        Ok(())
    }

    fn decode_body(tag: u16, c: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        let chain = |c: &mut Cursor<'_>, what| c.array(what).map(ChainId::from_bytes);
        let block = |c: &mut Cursor<'_>, what| c.array(what).map(BlockHash::from_bytes);
        let m = match tag {
            0x10 => Self::GetCurrentBranch { chain_id: chain(c, "get_current_branch")? },
            0x11 => Self::CurrentBranch { chain_id: chain(c, "chain_id")?, current_branch: BlockLocator::decode(c)? },
            0x12 => Self::Deactivate { chain_id: chain(c, "deactivate")? },
            0x13 => Self::GetCurrentHead { chain_id: chain(c, "get_current_head")? },
            0x14 => Self::CurrentHead {
                chain_id: chain(c, "chain_id")?,
                current_block_header: c.dynamic(
                    "current_block_header",
                    crate::shell::BLOCK_HEADER_MAX_SIZE,
                    BlockHeader::decode,
                )?,
                current_mempool: Mempool::decode(c)?,
            },
            0x20 => Self::GetBlockHeaders {
                get_block_headers: decode_hash_list(
                    c,
                    "get_block_headers",
                    Some(MAX_REQUEST_LENGTH),
                    BlockHash::from_bytes,
                )?,
            },
            0x21 => Self::BlockHeader { block_header: BlockHeader::decode(c)? },
            0x30 => Self::GetOperations {
                get_operations: decode_hash_list(
                    c,
                    "get_operations",
                    Some(MAX_REQUEST_LENGTH),
                    OperationHash::from_bytes,
                )?,
            },
            0x31 => Self::Operation { operation: Operation::decode(c)? },
            0x40 => Self::GetProtocols {
                get_protocols: decode_hash_list(
                    c,
                    "get_protocols",
                    Some(MAX_REQUEST_LENGTH),
                    ProtocolHash::from_bytes,
                )?,
            },
            0x41 => Self::Protocol { protocol: Protocol::decode(c)? },
            0x60 => Self::GetOperationsForBlocks {
                get_operations_for_blocks: decode_hash_list(
                    c,
                    "get_operations_for_blocks",
                    Some(MAX_REQUEST_LENGTH),
                    |item: [u8; 33]| {
                        let mut hash = [0u8; 32];
                        hash.copy_from_slice(&item[..32]);
                        OperationsForBlock { hash: BlockHash::from_bytes(hash), validation_pass: item[32] as i8 }
                    },
                )?,
            },
            0x61 => Self::OperationsForBlocks {
                operations_for_block: OperationsForBlock {
                    hash: block(c, "hash")?,
                    validation_pass: c.i8("validation_pass")?,
                },
                operation_hashes_path: OperationHashesPath::decode(c)?,
                operations: decode_operations(c)?,
            },
            0x70 => Self::GetCheckpoint { chain_id: chain(c, "get_checkpoint")? },
            0x71 => Self::Checkpoint { chain_id: chain(c, "chain_id")?, header: BlockHeader::decode(c)? },
            0x80 => Self::GetProtocolBranch { chain: chain(c, "chain")?, proto_level: c.u8("proto_level")? },
            0x81 => Self::ProtocolBranch {
                chain: chain(c, "chain")?,
                proto_level: c.u8("proto_level")?,
                locator: BlockLocator::decode(c)?,
            },
            0x90 => Self::GetPredecessorHeader { block: block(c, "block")?, offset: c.i32("offset")? },
            0x91 => Self::PredecessorHeader {
                block: block(c, "block")?,
                offset: c.i32("offset")?,
                header: BlockHeader::decode(c)?,
            },
            tag => return Err(DecodeError::InvalidTag { what: "distributed_db message", tag }),
        };
        c.finish(m.kind())?;
        Ok(m)
    }
}

fn ofb_json(k: &OperationsForBlock) -> Value {
    json!({"hash": k.hash, "validation_pass": k.validation_pass})
}

fn ofb_from_json(j: Json<'_>) -> Result<OperationsForBlock, JsonError> {
    Ok(OperationsForBlock { hash: j.field("hash")?.parse()?, validation_pass: j.field("validation_pass")?.i8()? })
}

impl DbMessage {
    /// JSON as `tezos-p2p codec` prints it: `kind` (octez's case title), then octez's field
    /// names; hashes in Base58Check, bytes in hex, timestamps in RFC 3339, headers and
    /// operations with their computed `hash`.
    pub fn to_json(&self) -> Value {
        let mut v = match self {
            Self::GetCurrentBranch { chain_id } => json!({"get_current_branch": chain_id}),
            Self::CurrentBranch { chain_id, current_branch } => {
                json!({"chain_id": chain_id, "current_branch": current_branch.to_json()})
            }
            Self::Deactivate { chain_id } => json!({"deactivate": chain_id}),
            Self::GetCurrentHead { chain_id } => json!({"get_current_head": chain_id}),
            Self::CurrentHead { chain_id, current_block_header, current_mempool } => json!({
                "chain_id": chain_id,
                "current_block_header": current_block_header.to_json(),
                "current_mempool": current_mempool.to_json(),
            }),
            Self::GetBlockHeaders { get_block_headers } => json!({"get_block_headers": get_block_headers}),
            Self::BlockHeader { block_header } => json!({"block_header": block_header.to_json()}),
            Self::GetOperations { get_operations } => json!({"get_operations": get_operations}),
            Self::Operation { operation } => json!({"operation": operation.to_json()}),
            Self::GetProtocols { get_protocols } => json!({"get_protocols": get_protocols}),
            Self::Protocol { protocol } => json!({"protocol": protocol.to_json()}),
            Self::GetOperationsForBlocks { get_operations_for_blocks } => json!({
                "get_operations_for_blocks": get_operations_for_blocks.iter().map(ofb_json).collect::<Vec<_>>()
            }),
            Self::OperationsForBlocks { operations_for_block, operation_hashes_path, operations } => json!({
                "operations_for_block": ofb_json(operations_for_block),
                "operation_hashes_path": operation_hashes_path.to_json(),
                "operations": operations.iter().map(Operation::to_json).collect::<Vec<_>>(),
            }),
            Self::GetCheckpoint { chain_id } => json!({"get_checkpoint": chain_id}),
            Self::Checkpoint { chain_id, header } => {
                json!({"checkpoint": {"chain_id": chain_id, "header": header.to_json()}})
            }
            Self::GetProtocolBranch { chain, proto_level } => {
                json!({"get_protocol_branch": {"chain": chain, "proto_level": proto_level}})
            }
            Self::ProtocolBranch { chain, proto_level, locator } => json!({
                "protocol_branch": {"chain": chain, "proto_level": proto_level, "locator": locator.to_json()}
            }),
            Self::GetPredecessorHeader { block, offset } => {
                json!({"get_predecessor_header": {"block": block, "offset": offset}})
            }
            Self::PredecessorHeader { block, offset, header } => json!({
                "predecessor_header": {"block": block, "offset": offset, "header": header.to_json()}
            }),
        };
        with_kind(&mut v, self.kind());
        v
    }

    /// Reads [`DbMessage::to_json`]'s form (the `kind` selects the case).
    pub fn from_json(j: Json<'_>) -> Result<Self, JsonError> {
        let kind = j.field("kind")?;
        let f = |name: &str| j.field(name);
        Ok(match kind.str()? {
            "Get_current_branch" => Self::GetCurrentBranch { chain_id: f("get_current_branch")?.parse()? },
            "Current_branch" => Self::CurrentBranch {
                chain_id: f("chain_id")?.parse()?,
                current_branch: BlockLocator::from_json(f("current_branch")?)?,
            },
            "Deactivate" => Self::Deactivate { chain_id: f("deactivate")?.parse()? },
            "Get_current_head" => Self::GetCurrentHead { chain_id: f("get_current_head")?.parse()? },
            "Current_head" => Self::CurrentHead {
                chain_id: f("chain_id")?.parse()?,
                current_block_header: BlockHeader::from_json(f("current_block_header")?)?,
                current_mempool: Mempool::from_json(f("current_mempool")?)?,
            },
            "Get_block_headers" => {
                Self::GetBlockHeaders { get_block_headers: f("get_block_headers")?.list(|e| e.parse())? }
            }
            "Block_header" => Self::BlockHeader { block_header: BlockHeader::from_json(f("block_header")?)? },
            "Get_operations" => Self::GetOperations { get_operations: f("get_operations")?.list(|e| e.parse())? },
            "Operation" => Self::Operation { operation: Operation::from_json(f("operation")?)? },
            "Get_protocols" => Self::GetProtocols { get_protocols: f("get_protocols")?.list(|e| e.parse())? },
            "Protocol" => Self::Protocol { protocol: Protocol::from_json(f("protocol")?)? },
            "Get_operations_for_blocks" => Self::GetOperationsForBlocks {
                get_operations_for_blocks: f("get_operations_for_blocks")?.list(ofb_from_json)?,
            },
            "Operations_for_blocks" => Self::OperationsForBlocks {
                operations_for_block: ofb_from_json(f("operations_for_block")?)?,
                operation_hashes_path: OperationHashesPath::from_json(f("operation_hashes_path")?)?,
                operations: f("operations")?.list(Operation::from_json)?,
            },
            "Get_checkpoint" => Self::GetCheckpoint { chain_id: f("get_checkpoint")?.parse()? },
            "Checkpoint" => {
                let o = f("checkpoint")?;
                Self::Checkpoint {
                    chain_id: o.field("chain_id")?.parse()?,
                    header: BlockHeader::from_json(o.field("header")?)?,
                }
            }
            "Get_protocol_branch" => {
                let o = f("get_protocol_branch")?;
                Self::GetProtocolBranch {
                    chain: o.field("chain")?.parse()?,
                    proto_level: o.field("proto_level")?.u8()?,
                }
            }
            "Protocol_branch" => {
                let o = f("protocol_branch")?;
                Self::ProtocolBranch {
                    chain: o.field("chain")?.parse()?,
                    proto_level: o.field("proto_level")?.u8()?,
                    locator: BlockLocator::from_json(o.field("locator")?)?,
                }
            }
            "Get_predecessor_header" => {
                let o = f("get_predecessor_header")?;
                Self::GetPredecessorHeader { block: o.field("block")?.parse()?, offset: o.field("offset")?.i32()? }
            }
            "Predecessor_header" => {
                let o = f("predecessor_header")?;
                Self::PredecessorHeader {
                    block: o.field("block")?.parse()?,
                    offset: o.field("offset")?.i32()?,
                    header: BlockHeader::from_json(o.field("header")?)?,
                }
            }
            other => return Err(kind.error(format!("unknown message kind {other:?}"))),
        })
    }
}

/// Puts `kind` first in a JSON object (serde_json keeps insertion order with
/// `preserve_order`; without it, keys sort, which is also fine for readers).
fn with_kind(v: &mut Value, kind: &str) {
    if let Value::Object(map) = v {
        let mut with = serde_json::Map::new();
        with.insert("kind".into(), kind.into());
        with.append(map);
        *map = with;
    }
}

/// The JSON of any octez message (P2P layer or distributed_db), as `tezos-p2p codec` and
/// `connect --watch` print it: `{"kind": …, …}` with octez's field names.
pub fn to_json(msg: &OctezMessage) -> Value {
    let mut v = match msg {
        P2pMessage::Disconnect => json!({}),
        P2pMessage::Bootstrap => json!({}),
        P2pMessage::Advertise(points) => json!({"id": points.iter().map(point_text).collect::<Vec<_>>()}),
        P2pMessage::SwapRequest { point, peer_id } | P2pMessage::SwapAck { point, peer_id } => {
            json!({"point": point_text(point), "peer_id": peer_id.to_string()})
        }
        P2pMessage::Message(m) => return m.to_json(),
    };
    let kind = match msg {
        P2pMessage::Disconnect => "Disconnect",
        P2pMessage::Bootstrap => "Bootstrap",
        P2pMessage::Advertise(_) => "Advertise",
        P2pMessage::SwapRequest { .. } => "Swap_request",
        P2pMessage::SwapAck { .. } => "Swap_ack",
        P2pMessage::Message(_) => unreachable!("returned above"),
    };
    with_kind(&mut v, kind);
    v
}

/// Reads [`to_json`]'s form back; a field the message does not have is an error, as in
/// octez.
pub fn from_json(value: &Value) -> Result<OctezMessage, JsonError> {
    let j = Json::root(value);
    let m = read_json(&j)?;
    j.reject_unknown()?;
    Ok(m)
}

fn read_json(j: &Json<'_>) -> Result<OctezMessage, JsonError> {
    let j = j.clone();
    let kind = j.field("kind")?;
    let point = |j: &Json<'_>| -> Result<SocketAddr, JsonError> {
        let f = j.field("point")?;
        f.str()?.parse().map_err(|_| f.error("expected addr:port"))
    };
    Ok(match kind.str()? {
        "Disconnect" => P2pMessage::Disconnect,
        "Bootstrap" => P2pMessage::Bootstrap,
        "Advertise" => {
            P2pMessage::Advertise(j.field("id")?.list(|p| p.str()?.parse().map_err(|_| p.error("expected addr:port")))?)
        }
        "Swap_request" => {
            P2pMessage::SwapRequest { point: point(&j)?, peer_id: j.field("peer_id")?.parse::<PeerId>()? }
        }
        "Swap_ack" => P2pMessage::SwapAck { point: point(&j)?, peer_id: j.field("peer_id")?.parse::<PeerId>()? },
        _ => P2pMessage::Message(DbMessage::from_json(j)?),
    })
}
