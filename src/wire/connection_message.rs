//! The clear-text connection message (protocol.md §2).

use std::fmt;

use super::{DecodeError, EncodeError, Reader};
use crate::crypto::{Nonce, PublicKey};
use crate::pow::Stamp;

/// A chain name: raw bytes compared byte for byte (octez applies no charset check in binary).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChainName(Vec<u8>);

impl ChainName {
    /// Wraps raw bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for ChainName {
    fn from(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl fmt::Display for ChainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for ChainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// octez `Network_version`: the chain and the two protocol versions a node announces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkVersion {
    /// Chain name, e.g. `TEZOS_MAINNET`.
    pub chain_name: ChainName,
    /// `distributed_db_version` (current octez announces 2).
    pub distributed_db_version: u16,
    /// `p2p_version` (current octez announces 1; 0 peers get `Nack_v_0`).
    pub p2p_version: u16,
}

impl NetworkVersion {
    /// What current octez announces on `chain_name`: ddb 2, p2p 1 (protocol.md §10.1).
    pub fn current(chain_name: impl Into<ChainName>) -> Self {
        Self { chain_name: chain_name.into(), distributed_db_version: 2, p2p_version: 1 }
    }
}

/// The first message of a session, sent in clear by both sides (protocol.md §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionMessage {
    /// Advertised listening port; `None` is sent as 0.
    pub port: Option<u16>,
    /// The sender's X25519 public key.
    pub public_key: PublicKey,
    /// The sender's proof-of-work stamp.
    pub proof_of_work_stamp: Stamp,
    /// 24 fresh random bytes (they make the derived nonces unique per connection).
    pub message_nonce: Nonce,
    /// Chain and versions.
    pub version: NetworkVersion,
}

/// Length of the body before the chain name: port 2 + key 32 + stamp 24 + nonce 24 + len 4.
const FIXED_PREFIX: usize = 2 + 32 + 24 + 24 + 4;
/// Largest body the u16 length prefix can describe.
const MAX_BODY: usize = u16::MAX as usize;

impl ConnectionMessage {
    /// Encodes `u16be(L) ‖ body`: the exact bytes to send and to hash for nonces.
    ///
    /// Fails when the body would not fit the 2-byte prefix (octez
    /// `Unexpected_size_of_decoded_buffer`), i.e. a chain name over 65445 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let name = self.version.chain_name.as_bytes();
        let body_len = FIXED_PREFIX + name.len() + 4;
        if body_len > MAX_BODY {
            return Err(EncodeError::SizeLimit { what: "connection message", size: body_len, max: MAX_BODY });
        }
        let mut out = Vec::with_capacity(2 + body_len);
        // Lossless: checked above.
        out.extend_from_slice(&(body_len as u16).to_be_bytes());
        out.extend_from_slice(&self.port.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(self.public_key.as_bytes());
        out.extend_from_slice(self.proof_of_work_stamp.as_bytes());
        out.extend_from_slice(self.message_nonce.as_bytes());
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&self.version.distributed_db_version.to_be_bytes());
        out.extend_from_slice(&self.version.p2p_version.to_be_bytes());
        Ok(out)
    }

    /// Decodes a body (without its 2-byte length prefix). Extra bytes are an error.
    pub fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let mut read = || {
            let port = r.u16("port")?;
            let public_key = PublicKey::from_bytes(r.array("public_key")?);
            let proof_of_work_stamp = Stamp::from_bytes(r.array("proof_of_work_stamp")?);
            let message_nonce = Nonce::from_bytes(r.array("message_nonce")?);
            let chain_name = ChainName::new(r.sized("chain_name", MAX_BODY)?);
            let distributed_db_version = r.u16("distributed_db_version")?;
            let p2p_version = r.u16("p2p_version")?;
            Ok(Self {
                port: (port != 0).then_some(port),
                public_key,
                proof_of_work_stamp,
                message_nonce,
                version: NetworkVersion { chain_name, distributed_db_version, p2p_version },
            })
        };
        // The offset of the field that failed is part of the error.
        let m = read().map_err(|e| DecodeError::at(r.position(), e))?;
        let end = r.position();
        r.finish("connection message").map_err(|e| DecodeError::at(end, e))?;
        Ok(m)
    }

    /// Decodes `u16be(L) ‖ body`, requiring exactly `L` bytes after the prefix.
    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(raw);
        let len = r.u16("connection message length")? as usize;
        let body = r.take("connection message body", len)?;
        r.finish("connection message")?;
        Self::decode_body(body)
    }
}
