//! Typed messages carried over a session, in the style of octez data-encoding (protocol.md §9).
//!
//! A message type says how to encode itself and how to find, from the first bytes of the
//! stream, the size of the next message, so that a reader can check that size against the
//! maximum *before* allocating and can decode messages that span chunks or share one.

use std::fmt;
use std::net::SocketAddr;

use bytes::{Buf as _, Bytes, BytesMut};

use crate::crypto::PeerId;
use crate::wire::{encode_point, parse_point, Cursor, DecodeError, EncodeError, Reader, MAX_POINT_TEXT};

pub mod db;

pub use db::OctezMessage;

/// A message encoding (octez's `'msg` with its `Data_encoding.t`). Must be self-delimiting.
pub trait Encoding: Sized + Clone + Send + 'static {
    /// Largest encoded message accepted or produced, in bytes.
    const MAX_SIZE: usize;

    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Given the first bytes of the stream, the total size of the next message, or `None` if
    /// more bytes are needed to tell. Must fail if the size exceeds [`Self::MAX_SIZE`].
    fn frame_size(prefix: &[u8]) -> Result<Option<usize>, DecodeError>;

    /// Decodes exactly one whole message (`frame_size` bytes). The frame is shared, so
    /// payloads can be kept as slices of it without copying.
    fn decode(frame: Bytes) -> Result<Self, DecodeError>;

    /// Whether this is an octez P2P-layer message ([`Control`]), which a [`Node`] handles
    /// itself. Encodings without a P2P layer keep the default (`false`).
    ///
    /// [`Node`]: crate::actor::Node
    fn is_control(&self) -> bool {
        false
    }

    /// The P2P-layer content of this message, or the message back if it is an application one.
    fn into_control(self) -> Result<Control, Self> {
        Err(self)
    }

    /// The message carrying `control`, if this encoding has a P2P layer (`None` otherwise).
    fn from_control(control: Control) -> Option<Self> {
        let _ = control;
        None
    }
}

/// Length of the `u32be` size prefix of `dynamic_size` encodings.
const SIZE_PREFIX: usize = 4;

/// `frame_size` of a `dynamic_size` encoding: 4 + the `u32be` prefix, bounded by `max`.
fn dynamic_frame_size(prefix: &[u8], max: usize, what: &'static str) -> Result<Option<usize>, DecodeError> {
    let Some(len) = prefix.first_chunk::<SIZE_PREFIX>() else {
        return Ok(None);
    };
    // Saturating: no overflow on 32-bit targets, where a u32 length may not fit beside 4.
    let total = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX).saturating_add(SIZE_PREFIX);
    if total > max {
        return Err(DecodeError::SizeLimit { what, size: total, max });
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
        return Err(EncodeError::SizeLimit { what, size: total, max });
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

    fn decode(frame: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(&frame);
        let len = r.sized("raw message", Self::MAX_SIZE)?.len();
        r.finish("raw message")?;
        Ok(Self(frame.slice(SIZE_PREFIX..SIZE_PREFIX + len)))
    }
}

/// Most points an `Advertise` carries (octez `Variable.list ~max_length:100`).
pub const MAX_ADVERTISED_POINTS: usize = 100;

/// An octez P2P-layer message (everything in `P2p_message` but `Message`): what a [`Node`]
/// handles itself — answering `Bootstrap`, learning points from `Advertise`, swapping
/// connections, closing on `Disconnect`.
///
/// [`Node`]: crate::actor::Node
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The sender is closing.
    Disconnect,
    /// Please advertise some points.
    Bootstrap,
    /// Known points, at most [`MAX_ADVERTISED_POINTS`].
    Advertise(Vec<SocketAddr>),
    /// Proposes replacing our connection with the sender by one with `peer_id` at `point`.
    SwapRequest {
        /// The proposed point.
        point: SocketAddr,
        /// Its peer.
        peer_id: PeerId,
    },
    /// Accepts a swap: the sender will connect to `point` (`peer_id`) in our place.
    SwapAck {
        /// The proposed point.
        point: SocketAddr,
        /// Its peer.
        peer_id: PeerId,
    },
}

impl Control {
    /// octez's case name (`Bootstrap`, `Swap_request`, …), for events and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Disconnect => "Disconnect",
            Self::Bootstrap => "Bootstrap",
            Self::Advertise(_) => "Advertise",
            Self::SwapRequest { .. } => "Swap_request",
            Self::SwapAck { .. } => "Swap_ack",
        }
    }
}

/// The application messages an envelope carries (octez `P2p_params.message_config`'s
/// `encoding`: a list of cases with 16-bit tags). [`OpaqueMessage`] keeps bodies as bytes;
/// [`db::DbMessage`] decodes octez's distributed_db messages.
pub trait ApplicationMessage: Sized + Clone + Send + Sync + fmt::Debug + PartialEq + 'static {
    /// Whether `tag` is one of this encoding's cases (any other tag is a decoding error).
    fn is_tag(tag: u16) -> bool;

    /// The tag of this message.
    fn tag(&self) -> u16;

    /// Appends the body (what follows the tag).
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Decodes the body of a `tag` message from `c`, which ends where the envelope ends: the
    /// body must consume it all.
    fn decode_body(tag: u16, c: &mut Cursor<'_>) -> Result<Self, DecodeError>;
}

/// An application message kept opaque: its tag and the bytes after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpaqueMessage {
    /// One of octez's `Distributed_db_message` tags (see [`is_application_tag`]).
    pub tag: u16,
    /// The encoded body after the tag.
    pub body: Bytes,
}

impl ApplicationMessage for OpaqueMessage {
    fn is_tag(tag: u16) -> bool {
        is_application_tag(tag)
    }

    fn tag(&self) -> u16 {
        self.tag
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.body);
        Ok(())
    }

    fn decode_body(tag: u16, c: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        Ok(Self { tag, body: c.rest("message body")? })
    }
}

/// The real node's envelope (octez `P2p_message`): `u32be size ‖ u16be tag ‖ body`, at most
/// 100 MiB in all, around application messages `A` (default: [`OpaqueMessage`]; octez's typed
/// distributed_db messages: [`OctezMessage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum P2pMessage<A = OpaqueMessage> {
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
    /// An application message. Only the tags `A` defines are valid; any other tag is a
    /// decoding error, as in octez (which greylists the sender).
    Message(A),
}

/// Whether `tag` is one of octez's `Distributed_db_message` tags (protocol.md §9.5):
/// 0x10–0x14, then request/answer pairs 0x20/21, 0x30/31, 0x40/41, 0x60/61, 0x70/71, 0x80/81,
/// 0x90/91.
pub fn is_application_tag(tag: u16) -> bool {
    matches!(
        tag,
        0x10..=0x14 | 0x20 | 0x21 | 0x30 | 0x31 | 0x40 | 0x41 | 0x60 | 0x61 | 0x70 | 0x71 | 0x80 | 0x81 | 0x90 | 0x91
    )
}

impl<A: ApplicationMessage> P2pMessage<A> {
    /// The message's 16-bit tag.
    pub fn tag(&self) -> u16 {
        match self {
            Self::Disconnect => 1,
            Self::Bootstrap => 2,
            Self::Advertise(_) => 3,
            Self::SwapRequest { .. } => 4,
            Self::SwapAck { .. } => 5,
            Self::Message(m) => m.tag(),
        }
    }

    fn decode_in(c: &mut Cursor<'_>) -> Result<Self, DecodeError> {
        c.dynamic("p2p message", MAX_P2P_MESSAGE_SIZE - SIZE_PREFIX, |c| {
            let at = c.position();
            Ok(match c.u16("p2p message tag")? {
                1 => Self::Disconnect,
                2 => Self::Bootstrap,
                3 => {
                    Self::Advertise(c.list_to_end("advertised points", Some(MAX_ADVERTISED_POINTS), decode_point_at)?)
                }
                tag @ (4 | 5) => {
                    let point = decode_point_at(c)?;
                    let peer_id = PeerId::from_bytes(c.array("swap peer id")?);
                    if tag == 4 {
                        Self::SwapRequest { point, peer_id }
                    } else {
                        Self::SwapAck { point, peer_id }
                    }
                }
                tag if A::is_tag(tag) => Self::Message(A::decode_body(tag, c)?),
                tag => return Err(DecodeError::at(at, DecodeError::InvalidTag { what: "p2p message", tag })),
            })
        })
    }
}

/// A point through the cursor (octez `P2p_point.Id.encoding`: a string of at most 51 bytes
/// with its prefix).
fn decode_point_at(c: &mut Cursor<'_>) -> Result<SocketAddr, DecodeError> {
    let at = c.position();
    let raw = c.dynamic("point", MAX_POINT_TEXT, |c| c.rest("point"))?;
    parse_point(&raw).map_err(|e| DecodeError::at(at, e))
}

impl<A: ApplicationMessage> Encoding for P2pMessage<A> {
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
                Self::Message(m) => {
                    if !A::is_tag(m.tag()) {
                        return Err(EncodeError::InvalidValue("not a distributed_db message tag"));
                    }
                    m.encode_body(out)?;
                }
            }
            Ok(())
        })
    }

    fn frame_size(prefix: &[u8]) -> Result<Option<usize>, DecodeError> {
        dynamic_frame_size(prefix, Self::MAX_SIZE, "p2p message")
    }

    fn decode(frame: Bytes) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(&frame);
        let m = Self::decode_in(&mut c).map_err(|e| DecodeError::at(c.position(), e))?;
        c.finish("p2p message").map_err(|e| DecodeError::at(c.position(), e))?;
        Ok(m)
    }

    fn into_control(self) -> Result<Control, Self> {
        match self {
            Self::Disconnect => Ok(Control::Disconnect),
            Self::Bootstrap => Ok(Control::Bootstrap),
            Self::Advertise(points) => Ok(Control::Advertise(points)),
            Self::SwapRequest { point, peer_id } => Ok(Control::SwapRequest { point, peer_id }),
            Self::SwapAck { point, peer_id } => Ok(Control::SwapAck { point, peer_id }),
            m @ Self::Message(_) => Err(m),
        }
    }

    fn from_control(control: Control) -> Option<Self> {
        Some(match control {
            Control::Disconnect => Self::Disconnect,
            Control::Bootstrap => Self::Bootstrap,
            Control::Advertise(points) => Self::Advertise(points),
            Control::SwapRequest { point, peer_id } => Self::SwapRequest { point, peer_id },
            Control::SwapAck { point, peer_id } => Self::SwapAck { point, peer_id },
        })
    }

    fn is_control(&self) -> bool {
        !matches!(self, Self::Message(_))
    }
}

/// Messages below this size are copied out of the read buffer instead of sharing it: a shared
/// slice keeps the whole buffer (up to 64 KiB) alive, so sharing only pays for large messages,
/// and this bounds the memory a queued message can pin to about twice its size.
const COPY_BELOW: usize = 32 * 1024;

/// Reassembles typed messages from chunk plaintexts (octez's streaming decoder, §9.2): a message
/// may span chunks and a chunk may hold several messages.
///
/// The next message's size is read from its prefix and checked against the limit before its
/// bytes are gathered; buffered bytes never exceed one message plus one chunk. A plaintext that
/// arrives while nothing is buffered is kept as is (no copy), so a message inside one chunk
/// reaches the caller as a slice of the read buffer.
pub struct MessageDecoder<E> {
    buf: BytesMut,
    max_size: usize,
    _encoding: std::marker::PhantomData<fn() -> E>,
}

impl<E: Encoding> MessageDecoder<E> {
    /// A decoder refusing messages over `max_size` bytes (and over `E::MAX_SIZE` in any case).
    pub fn new(max_size: usize) -> Self {
        Self { buf: BytesMut::new(), max_size: max_size.min(E::MAX_SIZE), _encoding: std::marker::PhantomData }
    }

    /// Appends the plaintext of the next chunk.
    pub fn push(&mut self, plaintext: BytesMut) {
        if self.buf.is_empty() {
            self.buf = plaintext;
        } else {
            self.buf.extend_from_slice(&plaintext);
        }
    }

    /// Bytes buffered and not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message with its encoded size (octez `read`'s `(size, msg)`), or
    /// `Ok(None)` if more chunks are needed. An error is fatal for the connection.
    pub fn next_message(&mut self) -> Result<Option<(usize, E)>, DecodeError> {
        let Some(size) = E::frame_size(&self.buf)? else {
            return Ok(None);
        };
        if size > self.max_size {
            return Err(DecodeError::SizeLimit { what: "message", size, max: self.max_size });
        }
        if self.buf.len() < size {
            return Ok(None);
        }
        // A small message is copied out rather than sliced, so that it does not keep alive the
        // whole read buffer it arrived in (a 6-byte message must not pin 64 KiB while queued).
        let frame = if size < COPY_BELOW {
            let f = Bytes::copy_from_slice(&self.buf[..size]);
            self.buf.advance(size);
            f
        } else {
            self.buf.split_to(size).freeze()
        };
        if self.buf.is_empty() {
            // Drop the reference to the (possibly large) read buffer this frame came from.
            self.buf = BytesMut::new();
        }
        Ok(Some((size, E::decode(frame)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_size_is_checked_before_anything_is_buffered() {
        assert_eq!(RawMessage::frame_size(&[0, 0]), Ok(None));
        assert_eq!(RawMessage::frame_size(&[0, 0, 0, 3, 1]), Ok(Some(7)));
        assert!(matches!(RawMessage::frame_size(&[0xff; 4]), Err(DecodeError::SizeLimit { .. })));
    }

    #[test]
    fn messages_spanning_and_sharing_chunks_are_reassembled() {
        let mut stream = Vec::new();
        let bodies: Vec<Vec<u8>> = (0..20).map(|i| vec![i as u8; i * 7]).collect();
        for b in &bodies {
            RawMessage(Bytes::from(b.clone())).encode(&mut stream).unwrap();
        }
        for piece in [1, 3, 10, 64, 1000] {
            let mut d = MessageDecoder::<RawMessage>::new(1 << 20);
            let mut got = Vec::new();
            for chunk in stream.chunks(piece) {
                d.push(BytesMut::from(chunk));
                while let Some((size, m)) = d.next_message().unwrap() {
                    assert_eq!(size, m.0.len() + 4);
                    got.push(m.0.to_vec());
                }
            }
            assert_eq!(got, bodies, "piece {piece}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn small_messages_do_not_pin_the_read_buffer() {
        let mut stream = Vec::new();
        RawMessage(Bytes::from_static(b"tiny")).encode(&mut stream).unwrap();
        let mut big = BytesMut::with_capacity(64 * 1024);
        big.extend_from_slice(&stream);
        let range = big.as_ptr() as usize..big.as_ptr() as usize + big.capacity();
        let mut d = MessageDecoder::<RawMessage>::new(1 << 20);
        d.push(big);
        let (_, m) = d.next_message().unwrap().unwrap();
        assert!(!range.contains(&(m.0.as_ptr() as usize)), "a 4-byte message shares the 64 KiB buffer");
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_the_body_arrives() {
        let mut d = MessageDecoder::<RawMessage>::new(100);
        d.push(BytesMut::from(&[0, 0, 0, 97][..]));
        assert!(matches!(d.next_message(), Err(DecodeError::SizeLimit { size: 101, max: 100, .. })));
        let mut d = MessageDecoder::<RawMessage>::new(100);
        d.push(BytesMut::from(&[0, 0, 0, 96][..]));
        assert_eq!(d.next_message(), Ok(None));
    }

    #[test]
    fn application_messages_keep_their_tag_and_body() {
        let m: P2pMessage = P2pMessage::Message(OpaqueMessage { tag: 0x10, body: Bytes::from_static(b"\x01\x02") });
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        assert_eq!(out, b"\x00\x00\x00\x04\x00\x10\x01\x02");
        assert_eq!(P2pMessage::decode(out.into()).unwrap(), m);
        let bad: P2pMessage = P2pMessage::Message(OpaqueMessage { tag: 2, body: Bytes::new() });
        assert!(bad.encode(&mut Vec::new()).is_err());
    }
}
