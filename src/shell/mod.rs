//! octez shell types carried by distributed_db messages (`src/lib_base`): hashes, block
//! headers, operations, mempools, block locators, protocols, Merkle paths — with their exact
//! binary encodings and octez's bounds (`Distributed_db_message.Bounded_encoding`), checked
//! while decoding before anything is allocated from a claimed size.
//!
//! Protocol-specific payloads (`protocol_data` of a header, `data` of an operation) stay opaque
//! [`Bytes`], sliced from the received frame without copying: they change with every protocol;
//! the shell envelope is what this crate owns.
//!
//! ```
//! use bytes::Bytes;
//! use tezos_p2p::shell::Operation;
//! use tezos_p2p::wire::Cursor;
//!
//! let op = Operation { branch: "BKtKWtqPoR4RauWDA17sCu8akbcGuGzn2CshpAemQDHUPRxiE7P".parse()?, data: Bytes::from_static(b"\x01") };
//! let mut out = Vec::new();
//! op.encode(&mut out)?;
//! let frame = Bytes::from(out);
//! assert_eq!(Operation::decode(&mut Cursor::new(&frame))?, op);
//! println!("{}", op.hash()); // o…
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod hash;
pub mod json;

pub use hash::{BlockHash, ChainId, ContextHash, HashParseError, OperationHash, OperationListListHash, ProtocolHash};

use bytes::Bytes;
use serde_json::{json, Value};

use self::json::{Json, JsonError};
use crate::crypto::blake2b_256;
use crate::wire::{Cursor, DecodeError, EncodeError};

/// Largest encoded block header (octez `block_header_max_size`: 8 MiB).
pub const BLOCK_HEADER_MAX_SIZE: usize = 8 * 1024 * 1024;
/// Most block hashes in a locator's history (octez `block_locator_max_length`: 1,000).
pub const BLOCK_LOCATOR_MAX_LENGTH: usize = 1000;
/// Largest encoded operation (octez `operation_max_size`: 128 KiB).
pub const OPERATION_MAX_SIZE: usize = 128 * 1024;
/// Largest encoded list of operations in `Operations_for_blocks` (octez
/// `operation_list_max_size`: 1 MiB).
pub const OPERATION_LIST_MAX_SIZE: usize = 1024 * 1024;
/// Most validation passes (octez `operation_max_pass`: 8), which bounds the Merkle path.
pub const OPERATION_MAX_PASS: usize = 8;
/// Largest encoded operation-hashes path: `log2(max_pass) · (32 + 1) + 1` = 100 bytes (octez
/// `Operation_list_list_hash.bounded_path_encoding`).
pub const OPERATION_PATH_MAX_SIZE: usize = 3 * (32 + 1) + 1;
/// Largest encoded protocol (octez `protocol_max_size`: 2 MiB).
pub const PROTOCOL_MAX_SIZE: usize = 2 * 1024 * 1024;
/// octez's mempool bound (`mempool_max_operations`: 4,000), which it enforces as a byte budget
/// on the encoded mempool ([`MEMPOOL_MAX_SIZE`]).
pub const MEMPOOL_MAX_OPERATIONS: usize = 4000;
/// Largest encoded mempool: `8 + 4000 · 32` bytes (octez `Mempool.bounded_encoding`). With its
/// three length prefixes, a mempool therefore holds at most 3,999 operation hashes in all.
pub const MEMPOOL_MAX_SIZE: usize = 8 + MEMPOOL_MAX_OPERATIONS * 32;
/// Highest protocol environment version current octez knows (`Protocol.env_version`: V0–V17).
pub const MAX_ENV_VERSION: u16 = 17;

/// Appends `u32be(len) ‖ f(out)`, refusing more than `max` bytes inside (octez
/// `dynamic_size (check_size max …)`).
pub(crate) fn encode_dynamic(
    out: &mut Vec<u8>,
    what: &'static str,
    max: usize,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let r = f(out);
    let len = out.len() - start - 4;
    if let Err(e) = r {
        out.truncate(start);
        return Err(e);
    }
    if len > max || u32::try_from(len).is_err() {
        out.truncate(start);
        return Err(EncodeError::SizeLimit { what, size: len, max });
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Runs `f`, refusing more than `max` bytes written (octez `check_size max` on encoding).
pub(crate) fn encode_bounded(
    out: &mut Vec<u8>,
    what: &'static str,
    max: usize,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    let r = f(out);
    let len = out.len() - start;
    if r.is_err() || len > max {
        out.truncate(start);
    }
    r?;
    if len > max {
        return Err(EncodeError::SizeLimit { what, size: len, max });
    }
    Ok(())
}

/// A fixed list of hashes with a `u32be` byte-length prefix (octez `list` of a fixed-size
/// encoding), at most `max` of them.
pub(crate) fn encode_hash_list<const N: usize>(
    out: &mut Vec<u8>,
    what: &'static str,
    hashes: impl ExactSizeIterator<Item = [u8; N]>,
    max: Option<usize>,
) -> Result<(), EncodeError> {
    if let Some(max) = max.filter(|m| hashes.len() > *m) {
        return Err(EncodeError::TooManyElements { what, count: hashes.len(), max });
    }
    encode_dynamic(out, what, usize::MAX, |out| {
        for h in hashes {
            out.extend_from_slice(&h);
        }
        Ok(())
    })
}

/// A `u32be`-prefixed list of fixed-size hashes, at most `max` of them.
pub(crate) fn decode_hash_list<T, const N: usize>(
    c: &mut Cursor<'_>,
    what: &'static str,
    max: Option<usize>,
    f: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, DecodeError> {
    // The byte length is checked against what is there before the list is read; the bound on
    // the element count is checked before the vector is allocated.
    c.dynamic(what, usize::MAX, |c| c.fixed_list_to_end(what, max, f))
}

/// Seconds since the Unix epoch (octez `Time.Protocol`: `int64` on the wire, RFC 3339 in JSON
/// when the date has four digits, else the number as a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The RFC 3339 form octez prints (`2019-03-18T08:30:38Z`), or the decimal seconds for
    /// dates outside years 0000–9999, as octez does.
    pub fn to_notation(self) -> String {
        let rfc = time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .filter(|t| (0..=9999).contains(&t.year()))
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
        rfc.unwrap_or_else(|| self.0.to_string())
    }

    /// Parses RFC 3339 (any offset; fractions of a second are dropped) or decimal seconds.
    pub fn from_notation(s: &str) -> Option<Self> {
        if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
            return Some(Self(t.unix_timestamp()));
        }
        s.parse().ok().map(Self)
    }
}

/// A block's fitness (octez `Fitness.t`): a list of opaque byte strings, compared by the
/// protocol. On the wire: `u32be` byte length, then each element as `u32be` length + bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Fitness(pub Vec<Bytes>);

impl Fitness {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_dynamic(out, "fitness", usize::MAX, |out| {
            for e in &self.0 {
                encode_dynamic(out, "fitness element", usize::MAX, |out| {
                    out.extend_from_slice(e);
                    Ok(())
                })?;
            }
            Ok(())
        })
    }

    fn decode(c: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        c.dynamic("fitness", usize::MAX, |c| {
            c.list_to_end("fitness", None, |c| c.dynamic("fitness element", usize::MAX, |c| c.rest("fitness element")))
        })
        .map(Self)
    }
}

/// A block header (octez `Block_header.t`): the shell header, then the protocol's opaque data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    /// Height of the block (genesis: 0).
    pub level: i32,
    /// Number of protocol changes since genesis.
    pub proto: u8,
    /// The previous block.
    pub predecessor: BlockHash,
    /// When the block was made.
    pub timestamp: Timestamp,
    /// Number of validation passes (operation lists) of the block.
    pub validation_pass: u8,
    /// Merkle root of the block's operation lists.
    pub operations_hash: OperationListListHash,
    /// The block's score.
    pub fitness: Fitness,
    /// Hash of the context after the block.
    pub context: ContextHash,
    /// Protocol-specific data (opaque to the shell).
    pub protocol_data: Bytes,
}

impl BlockHeader {
    /// Appends the encoding (octez `Block_header.encoding`), at most [`BLOCK_HEADER_MAX_SIZE`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_bounded(out, "block header", BLOCK_HEADER_MAX_SIZE, |out| self.encode_fields(out))
    }

    fn encode_fields(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.level.to_be_bytes());
        out.push(self.proto);
        out.extend_from_slice(self.predecessor.as_bytes());
        out.extend_from_slice(&self.timestamp.0.to_be_bytes());
        out.push(self.validation_pass);
        out.extend_from_slice(self.operations_hash.as_bytes());
        self.fitness.encode(out)?;
        out.extend_from_slice(self.context.as_bytes());
        out.extend_from_slice(&self.protocol_data);
        Ok(())
    }

    /// Decodes a header that runs to the end of the cursor's region (its `protocol_data` is the
    /// rest), refusing a region over [`BLOCK_HEADER_MAX_SIZE`] before reading it.
    pub fn decode(c: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        c.bounded_rest("block header", BLOCK_HEADER_MAX_SIZE, |c| {
            Ok(Self {
                level: c.i32("level")?,
                proto: c.u8("proto")?,
                predecessor: BlockHash::from_bytes(c.array("predecessor")?),
                timestamp: Timestamp(c.i64("timestamp")?),
                validation_pass: c.u8("validation_pass")?,
                operations_hash: OperationListListHash::from_bytes(c.array("operations_hash")?),
                fitness: Fitness::decode(c)?,
                context: ContextHash::from_bytes(c.array("context")?),
                protocol_data: c.rest("protocol_data")?,
            })
        })
    }

    /// A `u32be`-length-prefixed header (octez `dynamic_size Block_header.encoding`).
    fn decode_dynamic(c: &mut Cursor<'_>, field: &'static str) -> Result<Self, DecodeError> {
        c.dynamic(field, BLOCK_HEADER_MAX_SIZE, Self::decode)
    }

    fn encode_dynamic(&self, out: &mut Vec<u8>, field: &'static str) -> Result<(), EncodeError> {
        encode_dynamic(out, field, BLOCK_HEADER_MAX_SIZE, |out| self.encode(out))
    }

    /// The block hash: BLAKE2b-256 of the encoded header (octez `Block_header.hash`).
    pub fn hash(&self) -> BlockHash {
        let mut out = Vec::with_capacity(128 + self.protocol_data.len());
        // Unbounded: a header held in memory may be over the bound; its hash is that of its bytes.
        let _ = self.encode_fields(&mut out);
        BlockHash::from_bytes(blake2b_256(&[&out]))
    }

    /// JSON with octez's field names, plus the computed `hash`.
    pub fn to_json(&self) -> Value {
        json!({
            "hash": self.hash(),
            "level": self.level,
            "proto": self.proto,
            "predecessor": self.predecessor,
            "timestamp": self.timestamp.to_notation(),
            "validation_pass": self.validation_pass,
            "operations_hash": self.operations_hash,
            "fitness": self.fitness.0.iter().map(hex::encode).collect::<Vec<_>>(),
            "context": self.context,
            "protocol_data": hex::encode(&self.protocol_data),
        })
    }

    /// Reads [`BlockHeader::to_json`]'s form (`hash`, if present, must match).
    pub fn from_json(j: Json<'_>) -> Result<Self, JsonError> {
        let h = Self {
            level: j.field("level")?.i32()?,
            proto: j.field("proto")?.u8()?,
            predecessor: j.field("predecessor")?.parse()?,
            timestamp: j.field("timestamp")?.timestamp()?,
            validation_pass: j.field("validation_pass")?.u8()?,
            operations_hash: j.field("operations_hash")?.parse()?,
            fitness: Fitness(j.field("fitness")?.list(|e| e.hex())?),
            context: j.field("context")?.parse()?,
            protocol_data: j.field("protocol_data")?.hex()?,
        };
        if let Some(field) = j.optional("hash") {
            if field.parse::<BlockHash>()? != h.hash() {
                return Err(field.error(format!("is not the hash of this header ({})", h.hash())));
            }
        }
        Ok(h)
    }
}

/// An operation (octez `Operation.t`): the block it is meant to apply on, then the protocol's
/// opaque data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The block the operation refers to.
    pub branch: BlockHash,
    /// Protocol-specific data (opaque to the shell).
    pub data: Bytes,
}

impl Operation {
    /// Appends the encoding, at most [`OPERATION_MAX_SIZE`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_bounded(out, "operation", OPERATION_MAX_SIZE, |out| {
            out.extend_from_slice(self.branch.as_bytes());
            out.extend_from_slice(&self.data);
            Ok(())
        })
    }

    /// Decodes an operation that runs to the end of the cursor's region, at most
    /// [`OPERATION_MAX_SIZE`].
    pub fn decode(c: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        c.bounded_rest("operation", OPERATION_MAX_SIZE, |c| {
            Ok(Self { branch: BlockHash::from_bytes(c.array("branch")?), data: c.rest("data")? })
        })
    }

    /// The operation hash: BLAKE2b-256 of the encoded operation (octez `Operation.hash`).
    pub fn hash(&self) -> OperationHash {
        OperationHash::from_bytes(blake2b_256(&[self.branch.as_bytes(), &self.data]))
    }

    /// JSON with octez's field names, plus the computed `hash`.
    pub fn to_json(&self) -> Value {
        json!({"hash": self.hash(), "branch": self.branch, "data": hex::encode(&self.data)})
    }

    /// Reads [`Operation::to_json`]'s form (`hash`, if present, must match).
    pub fn from_json(j: Json<'_>) -> Result<Self, JsonError> {
        let op = Self { branch: j.field("branch")?.parse()?, data: j.field("data")?.hex()? };
        if let Some(field) = j.optional("hash") {
            if field.parse::<OperationHash>()? != op.hash() {
                return Err(field.error(format!("is not the hash of this operation ({})", op.hash())));
            }
        }
        Ok(op)
    }
}

/// A mempool as announced in `Current_head` (octez `Mempool.t`).
///
/// On the wire `known_valid` is a `u32be`-length-prefixed list of hashes and `pending` has two
/// length prefixes (a `dynamic_size` around a list); octez decodes both into sets, so it accepts
/// any order and merges duplicates. This type keeps the order received, so that re-encoding
/// gives back the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Mempool {
    /// Operations the sender validated.
    pub known_valid: Vec<OperationHash>,
    /// Operations the sender has not validated yet.
    pub pending: Vec<OperationHash>,
}

impl Mempool {
    /// Appends the encoding, at most [`MEMPOOL_MAX_SIZE`] bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_bounded(out, "mempool", MEMPOOL_MAX_SIZE, |out| {
            encode_hash_list(out, "known_valid", self.known_valid.iter().map(|h| *h.as_bytes()), None)?;
            encode_dynamic(out, "pending", usize::MAX, |out| {
                encode_hash_list(out, "pending", self.pending.iter().map(|h| *h.as_bytes()), None)
            })
        })
    }

    /// Decodes a mempool, refusing more than [`MEMPOOL_MAX_SIZE`] bytes before any list is
    /// allocated.
    pub fn decode(c: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        c.limited("mempool", MEMPOOL_MAX_SIZE, |c| {
            let known_valid = decode_hash_list(c, "known_valid", None, OperationHash::from_bytes)?;
            let pending =
                c.dynamic("pending", usize::MAX, |c| decode_hash_list(c, "pending", None, OperationHash::from_bytes))?;
            Ok(Self { known_valid, pending })
        })
    }

    /// JSON with octez's field names.
    pub fn to_json(&self) -> Value {
        json!({"known_valid": self.known_valid, "pending": self.pending})
    }

    /// Reads [`Mempool::to_json`]'s form.
    pub fn from_json(j: Json<'_>) -> Result<Self, JsonError> {
        Ok(Self {
            known_valid: j.field("known_valid")?.list(|e| e.parse())?,
            pending: j.field("pending")?.list(|e| e.parse())?,
        })
    }
}

/// A sparse block locator (octez `Block_locator.t`): the current head and up to
/// [`BLOCK_LOCATOR_MAX_LENGTH`] older block hashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockLocator {
    /// The sender's head.
    pub current_head: BlockHeader,
    /// Hashes of some of its predecessors, most recent first.
    pub history: Vec<BlockHash>,
}

impl BlockLocator {
    /// Appends the encoding: the length-prefixed header, then the hashes to the end.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.current_head.encode_dynamic(out, "current_head")?;
        if self.history.len() > BLOCK_LOCATOR_MAX_LENGTH {
            return Err(EncodeError::TooManyElements {
                what: "history",
                count: self.history.len(),
                max: BLOCK_LOCATOR_MAX_LENGTH,
            });
        }
        for h in &self.history {
            out.extend_from_slice(h.as_bytes());
        }
        Ok(())
    }

    /// Decodes a locator that runs to the end of the cursor's region.
    pub fn decode(c: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        let current_head = BlockHeader::decode_dynamic(c, "current_head")?;
        let history = c.fixed_list_to_end("history", Some(BLOCK_LOCATOR_MAX_LENGTH), BlockHash::from_bytes)?;
        Ok(Self { current_head, history })
    }

    /// JSON with octez's field names.
    pub fn to_json(&self) -> Value {
        json!({"current_head": self.current_head.to_json(), "history": self.history})
    }

    /// Reads [`BlockLocator::to_json`]'s form.
    pub fn from_json(j: Json<'_>) -> Result<Self, JsonError> {
        Ok(Self {
            current_head: BlockHeader::from_json(j.field("current_head")?)?,
            history: j.field("history")?.list(|e| e.parse())?,
        })
    }
}

/// One step of a Merkle path from the root of a block's operation lists down to one list
/// (octez `Operation_list_list_hash.path`), outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathStep {
    /// The list is in the left subtree; `right` is the hash of the right one (tag `0xf0`).
    Left {
        /// Hash of the sibling subtree.
        right: OperationListListHash,
    },
    /// The list is in the right subtree; `left` is the hash of the left one (tag `0x0f`).
    Right {
        /// Hash of the sibling subtree.
        left: OperationListListHash,
    },
}

/// A Merkle path (octez `Operation_list_list_hash.path`), as its steps from the root; the
/// encoding ends with the `Op` tag `0x00`. At most [`OPERATION_PATH_MAX_SIZE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct OperationHashesPath(pub Vec<PathStep>);

impl OperationHashesPath {
    /// Appends the encoding: `0xf0 ‖ path ‖ right` or `0x0f ‖ left ‖ path`, down to `0x00`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_bounded(out, "operation_hashes_path", OPERATION_PATH_MAX_SIZE, |out| {
            for step in &self.0 {
                match step {
                    PathStep::Left { .. } => out.push(0xf0),
                    PathStep::Right { left } => {
                        out.push(0x0f);
                        out.extend_from_slice(left.as_bytes());
                    }
                }
            }
            out.push(0x00);
            // A left step's sibling comes after the whole inner path: innermost first.
            for step in self.0.iter().rev() {
                if let PathStep::Left { right } = step {
                    out.extend_from_slice(right.as_bytes());
                }
            }
            Ok(())
        })
    }

    /// Decodes a path of at most [`OPERATION_PATH_MAX_SIZE`] bytes (which also bounds its
    /// depth: decoding is iterative, never recursive).
    pub fn decode(c: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        c.limited("operation_hashes_path", OPERATION_PATH_MAX_SIZE, |c| {
            let mut steps = Vec::new();
            loop {
                let at = c.position();
                match c.u8("operation_hashes_path tag")? {
                    0xf0 => steps.push(PathStep::Left { right: OperationListListHash::from_bytes([0; 32]) }),
                    0x0f => steps.push(PathStep::Right { left: OperationListListHash::from_bytes(c.array("left")?) }),
                    0x00 => break,
                    tag => {
                        return Err(DecodeError::at(
                            at,
                            DecodeError::InvalidTag { what: "operation_hashes_path", tag: tag.into() },
                        ))
                    }
                }
            }
            for step in steps.iter_mut().rev() {
                if let PathStep::Left { right } = step {
                    *right = OperationListListHash::from_bytes(c.array("right")?);
                }
            }
            Ok(Self(steps))
        })
    }

    /// JSON as octez prints the recursive union: `{"path": …, "right": h}`, `{"left": h,
    /// "path": …}`, and `{}` for the end.
    pub fn to_json(&self) -> Value {
        let mut v = json!({});
        for step in self.0.iter().rev() {
            v = match step {
                PathStep::Left { right } => json!({"path": v, "right": right}),
                PathStep::Right { left } => json!({"left": left, "path": v}),
            };
        }
        v
    }

    /// Reads [`OperationHashesPath::to_json`]'s form.
    pub fn from_json(mut j: Json<'_>) -> Result<Self, JsonError> {
        let mut steps = Vec::new();
        loop {
            // Each step is 33 bytes: deeper paths could never be encoded.
            if steps.len() > OPERATION_PATH_MAX_SIZE / 33 {
                return Err(j.error(format!("a path deeper than {} steps", OPERATION_PATH_MAX_SIZE / 33)));
            }
            match (j.optional("left"), j.optional("right")) {
                (Some(left), None) => steps.push(PathStep::Right { left: left.parse()? }),
                (None, Some(right)) => steps.push(PathStep::Left { right: right.parse()? }),
                (None, None) => return Ok(Self(steps)),
                (Some(_), Some(_)) => return Err(j.error("a path step has either `left` or `right`, not both")),
            }
            j = j.field("path")?;
        }
    }
}

/// One module of a protocol's source (octez `Protocol.component`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProtocolComponent {
    /// Module name.
    pub name: Bytes,
    /// Its interface (`.mli`), if any.
    pub interface: Option<Bytes>,
    /// Its implementation (`.ml`).
    pub implementation: Bytes,
}

/// A protocol's source code (octez `Protocol.t`), as sent in `Protocol`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Protocol {
    /// The environment version it expects (0–[`MAX_ENV_VERSION`]).
    pub expected_env_version: u16,
    /// Its modules.
    pub components: Vec<ProtocolComponent>,
}

fn encode_string(out: &mut Vec<u8>, what: &'static str, s: &[u8]) -> Result<(), EncodeError> {
    encode_dynamic(out, what, usize::MAX, |out| {
        out.extend_from_slice(s);
        Ok(())
    })
}

fn decode_string(c: &mut Cursor<'_>, what: &'static str) -> Result<Bytes, DecodeError> {
    c.dynamic(what, usize::MAX, |c| c.rest(what))
}

impl Protocol {
    /// Appends the encoding, at most [`PROTOCOL_MAX_SIZE`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.expected_env_version > MAX_ENV_VERSION {
            return Err(EncodeError::InvalidValue("expected_env_version is above 17"));
        }
        encode_bounded(out, "protocol", PROTOCOL_MAX_SIZE, |out| {
            out.extend_from_slice(&self.expected_env_version.to_be_bytes());
            encode_dynamic(out, "components", usize::MAX, |out| {
                for comp in &self.components {
                    encode_string(out, "name", &comp.name)?;
                    match &comp.interface {
                        None => out.push(0x00),
                        Some(i) => {
                            out.push(0xff);
                            encode_string(out, "interface", i)?;
                        }
                    }
                    encode_string(out, "implementation", &comp.implementation)?;
                }
                Ok(())
            })
        })
    }

    /// Decodes a protocol of at most [`PROTOCOL_MAX_SIZE`] bytes.
    pub fn decode(c: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        c.limited("protocol", PROTOCOL_MAX_SIZE, |c| {
            let at = c.position();
            let expected_env_version = c.u16("expected_env_version")?;
            if expected_env_version > MAX_ENV_VERSION {
                return Err(DecodeError::at(
                    at,
                    DecodeError::Invalid {
                        what: "expected_env_version",
                        reason: format!("unknown environment version {expected_env_version}"),
                    },
                ));
            }
            let components = c.dynamic("components", usize::MAX, |c| {
                c.list_to_end("components", None, |c| {
                    let name = decode_string(c, "name")?;
                    let interface = if c.bool("interface")? { Some(decode_string(c, "interface")?) } else { None };
                    Ok(ProtocolComponent { name, interface, implementation: decode_string(c, "implementation")? })
                })
            })?;
            Ok(Self { expected_env_version, components })
        })
    }

    /// The protocol hash: BLAKE2b-256 of the encoded protocol (octez `Protocol.hash`).
    pub fn hash(&self) -> ProtocolHash {
        let mut out = Vec::new();
        let _ = self.encode(&mut out);
        ProtocolHash::from_bytes(blake2b_256(&[&out]))
    }

    /// JSON with octez's field names, plus the computed `hash`.
    pub fn to_json(&self) -> Value {
        let comps: Vec<Value> = self
            .components
            .iter()
            .map(|c| {
                let mut o = json!({"name": json::string_to_json(&c.name)});
                if let Some(i) = &c.interface {
                    o["interface"] = json::string_to_json(i);
                }
                o["implementation"] = json::string_to_json(&c.implementation);
                o
            })
            .collect();
        json!({"hash": self.hash(), "expected_env_version": self.expected_env_version, "components": comps})
    }

    /// Reads [`Protocol::to_json`]'s form (`hash`, if present, must match).
    pub fn from_json(j: Json<'_>) -> Result<Self, JsonError> {
        let env = j.field("expected_env_version")?;
        let expected_env_version = env.u16()?;
        if expected_env_version > MAX_ENV_VERSION {
            return Err(env.error(format!("unknown environment version {expected_env_version}")));
        }
        let p = Self {
            expected_env_version,
            components: j.field("components")?.list(|c| {
                Ok(ProtocolComponent {
                    name: c.field("name")?.string_bytes()?,
                    interface: c.optional("interface").map(|i| i.string_bytes()).transpose()?,
                    implementation: c.field("implementation")?.string_bytes()?,
                })
            })?,
        };
        if let Some(field) = j.optional("hash") {
            if field.parse::<ProtocolHash>()? != p.hash() {
                return Err(field.error(format!("is not the hash of this protocol ({})", p.hash())));
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(protocol_data: &[u8]) -> BlockHeader {
        BlockHeader {
            level: 7,
            proto: 1,
            predecessor: BlockHash::from_bytes([1; 32]),
            timestamp: Timestamp(1_552_897_838),
            validation_pass: 4,
            operations_hash: OperationListListHash::from_bytes([2; 32]),
            fitness: Fitness(vec![Bytes::from_static(&[0]), Bytes::from_static(&[0, 0, 0, 1])]),
            context: ContextHash::from_bytes([3; 32]),
            protocol_data: Bytes::copy_from_slice(protocol_data),
        }
    }

    #[test]
    fn timestamps_print_as_octez_does() {
        assert_eq!(Timestamp(1_552_897_838).to_notation(), "2019-03-18T08:30:38Z");
        assert_eq!(Timestamp(0).to_notation(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(i64::MAX).to_notation(), i64::MAX.to_string());
        assert_eq!(Timestamp::from_notation("2019-03-18T09:30:38+01:00"), Some(Timestamp(1_552_897_838)));
        assert_eq!(Timestamp::from_notation("-5"), Some(Timestamp(-5)));
        assert_eq!(Timestamp::from_notation("yesterday"), None);
    }

    #[test]
    fn paths_round_trip_and_are_bounded() {
        let h = |b| OperationListListHash::from_bytes([b; 32]);
        let path = OperationHashesPath(vec![PathStep::Left { right: h(1) }, PathStep::Right { left: h(2) }]);
        let mut out = Vec::new();
        path.encode(&mut out).unwrap();
        assert_eq!(out[0], 0xf0);
        assert_eq!(out[1], 0x0f);
        assert_eq!(&out[2..34], &[2; 32]);
        assert_eq!(out[34], 0);
        assert_eq!(&out[35..], &[1; 32]);
        let frame = Bytes::from(out);
        assert_eq!(OperationHashesPath::decode(&mut Cursor::new(&frame)).unwrap(), path);
        // Four levels are 133 bytes: over octez's 100-byte bound, refused while decoding.
        let deep = OperationHashesPath(vec![PathStep::Right { left: h(9) }; 4]);
        assert!(deep.encode(&mut Vec::new()).is_err());
        let mut raw = Vec::new();
        for _ in 0..4 {
            raw.push(0x0f);
            raw.extend_from_slice(&[9; 32]);
        }
        raw.push(0);
        let frame = Bytes::from(raw);
        let e = OperationHashesPath::decode(&mut Cursor::new(&frame)).unwrap_err();
        assert!(matches!(e.root(), DecodeError::SizeLimit { what: "operation_hashes_path", max: 100, .. }), "{e}");
        assert_eq!(OperationHashesPath::from_json(Json::root(&path.to_json())).unwrap(), path);
    }

    #[test]
    fn headers_round_trip_through_bytes_and_json() {
        let h = header(b"\xaa\xbb");
        let mut out = Vec::new();
        h.encode(&mut out).unwrap();
        let frame = Bytes::from(out.clone());
        let back = BlockHeader::decode(&mut Cursor::new(&frame)).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.hash(), BlockHash::from_bytes(blake2b_256(&[&out])));
        let j = h.to_json();
        assert_eq!(BlockHeader::from_json(Json::root(&j)).unwrap(), h);
        let mut wrong = j.clone();
        wrong["level"] = 8.into();
        assert!(BlockHeader::from_json(Json::root(&wrong)).unwrap_err().to_string().contains("hash"));
    }

    #[test]
    fn mempools_over_the_bound_are_refused_before_allocation() {
        let max = Mempool { known_valid: vec![OperationHash::from_bytes([1; 32]); 3999], pending: vec![] };
        let mut out = Vec::new();
        max.encode(&mut out).unwrap();
        assert_eq!(out.len(), 12 + 3999 * 32);
        let frame = Bytes::from(out);
        assert_eq!(Mempool::decode(&mut Cursor::new(&frame)).unwrap(), max);
        let over = Mempool { known_valid: vec![OperationHash::from_bytes([1; 32]); 4000], pending: vec![] };
        assert!(matches!(over.encode(&mut Vec::new()), Err(EncodeError::SizeLimit { what: "mempool", .. })));
        // A claim of 4 GiB of hashes with nothing behind it.
        let frame = Bytes::from_static(&[0xff, 0xff, 0xff, 0xe0, 0, 0, 0, 4, 0, 0, 0, 0]);
        assert!(Mempool::decode(&mut Cursor::new(&frame)).is_err());
    }
}
