//! Typed messages carried over a session, in the style of octez data-encoding (protocol.md §9).
//!
//! A message type says how to encode itself and how to find, from the first bytes of the
//! stream, the size of the next message, so that a reader can check that size against the
//! maximum *before* allocating and can decode messages that span chunks or share one.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::crypto::PeerId;
use crate::wire::{decode_point, encode_point, DecodeError, EncodeError, Reader};

/// A message encoding (octez's `'msg` with its `Data_encoding.t`). Must be self-delimiting.
pub trait Encoding: Sized + Send + 'static {
    /// Largest encoded message accepted or produced, in bytes.
    const MAX_SIZE: usize;

    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Given the first bytes of the stream, the total size of the next message, or `None` if
    /// more bytes are needed to tell. Must fail if the size exceeds [`Self::MAX_SIZE`].
    fn frame_size(prefix: &[u8]) -> Result<Option<usize>, DecodeError>;

    /// Decodes exactly one whole message (`frame_size` bytes).
    fn decode(frame: &[u8]) -> Result<Self, DecodeError>;
}

/// Length of the `u32be` size prefix of `dynamic_size` encodings.
const SIZE_PREFIX: usize = 4;

/// `frame_size` of a `dynamic_size` encoding: 4 + the `u32be` prefix, bounded by `max`.
fn dynamic_frame_size(
    prefix: &[u8],
    max: usize,
    what: &'static str,
) -> Result<Option<usize>, DecodeError> {
    let Some(len) = prefix.first_chunk::<SIZE_PREFIX>() else {
        return Ok(None);
    };
    let total = SIZE_PREFIX + u32::from_be_bytes(*len) as usize;
    if total > max {
        return Err(DecodeError::SizeLimit {
            what,
            size: total,
            max,
        });
    }
    Ok(Some(total))
}

/// Writes `u32be(len) ‖ body` where `body` is produced by `f`, checking the total against `max`.
fn encode_dynamic(
    out: &mut Vec<u8>,
    max: usize,
    what: &'static str,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; SIZE_PREFIX]);
    f(out)?;
    let total = out.len() - start;
    if total > max {
        out.truncate(start);
        return Err(EncodeError::SizeLimit {
            what,
            size: total,
            max,
        });
    }
    // total ≤ max ≤ u32::MAX for every encoding here.
    let body = (total - SIZE_PREFIX) as u32;
    out[start..start + SIZE_PREFIX].copy_from_slice(&body.to_be_bytes());
    Ok(())
}

/// The octez P2P message size limit (100 MiB), which we also apply to [`RawMessage`].
pub const MAX_P2P_MESSAGE_SIZE: usize = 100 * 1024 * 1024;

/// Opaque bytes with a 4-byte big-endian length prefix (octez `dynamic_size bytes`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RawMessage(pub Bytes);

impl Encoding for RawMessage {
    const MAX_SIZE: usize = MAX_P2P_MESSAGE_SIZE;

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_dynamic(out, Self::MAX_SIZE, "raw message", |out| {
            out.extend_from_slice(&self.0);
            Ok(())
        })
    }

    fn frame_size(prefix: &[u8]) -> Result<Option<usize>, DecodeError> {
        dynamic_frame_size(prefix, Self::MAX_SIZE, "raw message")
    }

    fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(frame);
        let body = r.sized("raw message", Self::MAX_SIZE)?;
        r.finish("raw message")?;
        Ok(Self(Bytes::copy_from_slice(body)))
    }
}

/// Most points an `Advertise` carries.
pub const MAX_ADVERTISED_POINTS: usize = 100;

/// The real node's envelope (octez `P2p_message`): `u32be size ‖ u16be tag ‖ body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum P2pMessage {
    /// 0x0001: the sender is closing.
    Disconnect,
    /// 0x0002: please advertise some points.
    Bootstrap,
    /// 0x0003: known points, at most 100.
    Advertise(Vec<SocketAddr>),
    /// 0x0004: propose swapping a connection for `point` (`peer_id`).
    SwapRequest {
        /// The proposed point.
        point: SocketAddr,
        /// Its peer.
        peer_id: PeerId,
    },
    /// 0x0005: accept a swap.
    SwapAck {
        /// The proposed point.
        point: SocketAddr,
        /// Its peer.
        peer_id: PeerId,
    },
    /// Any other tag: an application (distributed_db) message, body kept opaque.
    Message {
        /// The application tag (not 1..=5).
        tag: u16,
        /// The encoded body after the tag.
        body: Bytes,
    },
}

impl P2pMessage {
    fn tag(&self) -> u16 {
        match self {
            Self::Disconnect => 1,
            Self::Bootstrap => 2,
            Self::Advertise(_) => 3,
            Self::SwapRequest { .. } => 4,
            Self::SwapAck { .. } => 5,
            Self::Message { tag, .. } => *tag,
        }
    }
}

impl Encoding for P2pMessage {
    const MAX_SIZE: usize = MAX_P2P_MESSAGE_SIZE;

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_dynamic(out, Self::MAX_SIZE, "p2p message", |out| {
            out.extend_from_slice(&self.tag().to_be_bytes());
            match self {
                Self::Disconnect | Self::Bootstrap => {}
                Self::Advertise(points) => {
                    if points.len() > MAX_ADVERTISED_POINTS {
                        return Err(EncodeError::TooManyElements {
                            what: "advertised points",
                            count: points.len(),
                            max: MAX_ADVERTISED_POINTS,
                        });
                    }
                    for p in points {
                        encode_point(p, out)?;
                    }
                }
                Self::SwapRequest { point, peer_id } | Self::SwapAck { point, peer_id } => {
                    encode_point(point, out)?;
                    out.extend_from_slice(peer_id.as_bytes());
                }
                Self::Message { tag, body } => {
                    if (1..=5).contains(tag) {
                        return Err(EncodeError::InvalidValue(
                            "an application message tag cannot be 1..=5",
                        ));
                    }
                    out.extend_from_slice(body);
                }
            }
            Ok(())
        })
    }

    fn frame_size(prefix: &[u8]) -> Result<Option<usize>, DecodeError> {
        dynamic_frame_size(prefix, Self::MAX_SIZE, "p2p message")
    }

    fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let mut outer = Reader::new(frame);
        let body = outer.sized("p2p message", Self::MAX_SIZE)?;
        outer.finish("p2p message")?;
        let mut r = Reader::new(body);
        let msg = match r.u16("p2p message tag")? {
            1 => Self::Disconnect,
            2 => Self::Bootstrap,
            3 => {
                let mut points = Vec::new();
                while r.remaining() > 0 {
                    if points.len() == MAX_ADVERTISED_POINTS {
                        return Err(DecodeError::TooManyElements {
                            what: "advertised points",
                            max: MAX_ADVERTISED_POINTS,
                        });
                    }
                    points.push(decode_point(&mut r)?);
                }
                Self::Advertise(points)
            }
            tag @ (4 | 5) => {
                let point = decode_point(&mut r)?;
                let peer_id = PeerId::from_bytes(r.array("swap peer id")?);
                if tag == 4 {
                    Self::SwapRequest { point, peer_id }
                } else {
                    Self::SwapAck { point, peer_id }
                }
            }
            tag => {
                let body = Bytes::copy_from_slice(r.take("message body", r.remaining())?);
                Self::Message { tag, body }
            }
        };
        r.finish("p2p message")?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_size_is_checked_before_anything_is_buffered() {
        assert_eq!(RawMessage::frame_size(&[0, 0]), Ok(None));
        assert_eq!(RawMessage::frame_size(&[0, 0, 0, 3, 1]), Ok(Some(7)));
        assert!(matches!(
            RawMessage::frame_size(&[0xff; 4]),
            Err(DecodeError::SizeLimit { .. })
        ));
    }

    #[test]
    fn application_messages_keep_their_tag_and_body() {
        let m = P2pMessage::Message {
            tag: 0x10,
            body: Bytes::from_static(b"\x01\x02"),
        };
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        assert_eq!(out, b"\x00\x00\x00\x04\x00\x10\x01\x02");
        assert_eq!(P2pMessage::decode(&out).unwrap(), m);
        let bad = P2pMessage::Message {
            tag: 2,
            body: Bytes::new(),
        };
        assert!(bad.encode(&mut Vec::new()).is_err());
    }
}
