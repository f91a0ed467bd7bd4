//! Ack / Nack / Nack_v_0, the plaintext of the third chunk (protocol.md §7).

use std::fmt;
use std::net::SocketAddr;

use super::point::{decode_point, encode_point};
use super::{DecodeError, EncodeError, Reader};

/// Most alternative points a Nack may carry, on encode and on decode (octez since v9.0).
pub const MAX_NACK_POINTS: usize = 100;

/// octez `P2p_rejection.t`: why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NackMotive {
    /// 0 `No_motive`.
    NoMotive,
    /// 1 `Too_many_connections`.
    TooManyConnections,
    /// 2 `Unknown_chain_name`.
    UnknownChainName,
    /// 3 `Deprecated_p2p_version`.
    DeprecatedP2pVersion,
    /// 4 `Deprecated_distributed_db_version`.
    DeprecatedDistributedDbVersion,
    /// 5 `Already_connected`.
    AlreadyConnected,
    /// Any other code (`Unknown_motive`), negative values included.
    Unknown(i16),
}

impl NackMotive {
    /// The `int16` code on the wire.
    pub fn code(self) -> i16 {
        match self {
            Self::NoMotive => 0,
            Self::TooManyConnections => 1,
            Self::UnknownChainName => 2,
            Self::DeprecatedP2pVersion => 3,
            Self::DeprecatedDistributedDbVersion => 4,
            Self::AlreadyConnected => 5,
            Self::Unknown(c) => c,
        }
    }

    /// The motive for a wire code.
    pub fn from_code(code: i16) -> Self {
        match code {
            0 => Self::NoMotive,
            1 => Self::TooManyConnections,
            2 => Self::UnknownChainName,
            3 => Self::DeprecatedP2pVersion,
            4 => Self::DeprecatedDistributedDbVersion,
            5 => Self::AlreadyConnected,
            c => Self::Unknown(c),
        }
    }

    /// octez's name of the motive (`Too_many_connections`, …).
    pub fn octez_name(self) -> &'static str {
        match self {
            Self::NoMotive => "No_motive",
            Self::TooManyConnections => "Too_many_connections",
            Self::UnknownChainName => "Unknown_chain_name",
            Self::DeprecatedP2pVersion => "Deprecated_p2p_version",
            Self::DeprecatedDistributedDbVersion => "Deprecated_distributed_db_version",
            Self::AlreadyConnected => "Already_connected",
            Self::Unknown(_) => "Unknown_motive",
        }
    }
}

impl fmt::Display for NackMotive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(c) => write!(f, "Unknown_motive({c})"),
            m => f.write_str(m.octez_name()),
        }
    }
}

/// The answer to the metadata exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckMessage {
    /// Tag 0x00: the sender accepts the connection.
    Ack,
    /// Tag 0x01 (p2p_version ≥ 1): refusal with a motive and at most 100 alternative points.
    Nack {
        /// Why.
        motive: NackMotive,
        /// Points the refused peer may try instead.
        alternative_points: Vec<SocketAddr>,
    },
    /// Tag 0xFF: the refusal understood by p2p_version 0 peers, with no motive or points.
    NackV0,
}

impl AckMessage {
    /// Encodes the chunk plaintext. A Nack with more than 100 points cannot be encoded (octez
    /// then sends nothing at all).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            Self::Ack => Ok(vec![0x00]),
            Self::NackV0 => Ok(vec![0xff]),
            Self::Nack { motive, alternative_points } => {
                if alternative_points.len() > MAX_NACK_POINTS {
                    return Err(EncodeError::TooManyElements {
                        what: "nack alternative points",
                        count: alternative_points.len(),
                        max: MAX_NACK_POINTS,
                    });
                }
                let mut out = Vec::with_capacity(7 + alternative_points.len() * 24);
                out.push(0x01);
                out.extend_from_slice(&motive.code().to_be_bytes());
                out.extend_from_slice(&[0; 4]);
                for p in alternative_points {
                    encode_point(p, &mut out)?;
                }
                // At most 100 × 51 bytes: fits a u32.
                let list_len = (out.len() - 7) as u32;
                out[3..7].copy_from_slice(&list_len.to_be_bytes());
                Ok(out)
            }
        }
    }

    /// Decodes a whole chunk plaintext; more than 100 points is a decoding error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        // Every error carries the offset of the field that failed.
        let at = |r: &Reader<'_>, e| DecodeError::at(r.position(), e);
        let msg = match r.u8("ack tag").map_err(|e| at(&r, e))? {
            0x00 => Self::Ack,
            0xff => Self::NackV0,
            0x01 => {
                let motive = NackMotive::from_code(r.i16("nack motive").map_err(|e| at(&r, e))?);
                let list = r.sized("nack alternative points", bytes.len()).map_err(|e| at(&r, e))?;
                let base = r.position() - list.len();
                let mut lr = Reader::new(list);
                let mut alternative_points = Vec::new();
                while lr.remaining() > 0 {
                    let start = base + lr.position();
                    if alternative_points.len() == MAX_NACK_POINTS {
                        return Err(DecodeError::at(
                            start,
                            DecodeError::TooManyElements { what: "nack alternative points", max: MAX_NACK_POINTS },
                        ));
                    }
                    alternative_points.push(decode_point(&mut lr).map_err(|e| DecodeError::at(start, e))?);
                }
                Self::Nack { motive, alternative_points }
            }
            tag => return Err(DecodeError::at(0, DecodeError::InvalidTag { what: "ack", tag: tag.into() })),
        };
        let end = r.position();
        r.finish("ack").map_err(|e| DecodeError::at(end, e))?;
        Ok(msg)
    }
}
