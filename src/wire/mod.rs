//! Byte-exact encodings of the session protocol (protocol.md §§2, 4, 6, 7).
//!
//! Decoders read through a bounded [`Reader`] that never indexes out of range, checks every
//! claimed length against the bytes actually present before allocating anything, and rejects
//! trailing bytes, as octez's whole-buffer decodes do.

mod ack;
mod chunk;
mod connection_message;
mod cursor;
mod metadata;
mod point;

pub use ack::{AckMessage, NackMotive, MAX_NACK_POINTS};
pub use chunk::{
    check_binary_chunks_size, seal_chunks, ChunkDecoder, ChunkError, ChunkSize, CHUNK_HEADER_SIZE, EXTRA_BYTES,
    MAX_CHUNK_SIZE, MAX_CONTENT_LENGTH, MAX_INCOMING_PLAINTEXT,
};
pub use connection_message::{ChainName, ConnectionMessage, NetworkVersion};
pub use cursor::Cursor;
pub use metadata::{ConnectionMetadata, Metadata};
pub use point::{decode_point, encode_point, parse_point, point_text, MAX_POINT_ENCODED_SIZE, MAX_POINT_TEXT};

/// Why bytes did not decode (octez `Decoding_error`). The messages name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("not enough data for {field}: needed {needed} bytes, {available} left")]
    NotEnoughData {
        /// Field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes were left after a complete value (octez `Extra_bytes`).
    #[error("{count} extra bytes after {what}")]
    ExtraBytes {
        /// What was decoded.
        what: &'static str,
        /// How many bytes remain.
        count: usize,
    },
    /// A union tag with no case.
    #[error("unknown tag {tag:#x} for {what}")]
    InvalidTag {
        /// The union.
        what: &'static str,
        /// The tag read.
        tag: u16,
    },
    /// A list is longer than its maximum (e.g. a Nack with more than 100 points).
    #[error("{what}: more than {max} elements")]
    TooManyElements {
        /// The list.
        what: &'static str,
        /// Its maximum.
        max: usize,
    },
    /// A value is larger than the encoding allows (checked before allocating).
    #[error("{what}: size {size} exceeds the limit {max}")]
    SizeLimit {
        /// The value.
        what: &'static str,
        /// Its claimed size.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// A field's content is malformed (e.g. a point that is not `addr:port`).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Another error, with the byte offset in the frame where the failing field starts.
    #[error("{error} (at byte {offset})")]
    At {
        /// Offset of the failing field from the start of the frame.
        offset: usize,
        /// What went wrong there.
        error: Box<DecodeError>,
    },
}

impl DecodeError {
    /// `error` located at `offset` (an error that already has a location keeps it).
    pub fn at(offset: usize, error: DecodeError) -> Self {
        match error {
            located @ Self::At { .. } => located,
            error => Self::At { offset, error: Box::new(error) },
        }
    }

    /// The error without its location.
    pub fn root(&self) -> &DecodeError {
        match self {
            Self::At { error, .. } => error.root(),
            e => e,
        }
    }

    /// Where the failing field starts, when known.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Self::At { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// Why a value cannot be encoded (octez `Encoding_error`, `Invalid_message_size`,
/// `Invalid_chunks_size`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A list is longer than its maximum (a Nack with more than 100 points).
    #[error("{what}: {count} elements exceed the maximum {max}")]
    TooManyElements {
        /// The list.
        what: &'static str,
        /// Elements given.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A value is larger than its encoding allows.
    #[error("{what}: size {size} exceeds the limit {max}")]
    SizeLimit {
        /// The value.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// The value is not one the encoding can represent.
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
    /// `check_binary_chunks_size` refused a chunk size (octez `Invalid_chunks_size`).
    #[error("invalid chunks size {value}: must be between {min} and {max}")]
    InvalidChunksSize {
        /// The size given.
        value: usize,
        /// Smallest valid size (19).
        min: usize,
        /// Largest valid size (65535).
        max: usize,
    },
}

/// A bounded cursor over a byte slice (rustls style): every read checks the remaining length.
pub struct Reader<'a> {
    buf: &'a [u8],
    /// The length of the whole input, for [`Reader::position`].
    len: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, len: buf.len() }
    }

    /// Bytes read so far: after a failed read, the offset of the field that failed.
    pub fn position(&self) -> usize {
        self.len - self.buf.len()
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::NotEnoughData { field, needed: n, available: self.buf.len() });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let available = self.buf.len();
        match self.buf.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(*head)
            }
            None => Err(DecodeError::NotEnoughData { field, needed: N, available }),
        }
    }

    /// A big-endian `u8`.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `i16`.
    pub fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A `u32be`-length-prefixed field (octez `dynamic_size` / default `bytes`), length checked
    /// against what is present (and `max`) before anything is returned.
    pub fn sized(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(DecodeError::SizeLimit { what: field, size: len, max });
        }
        self.take(field, len)
    }

    /// Fails with `ExtraBytes` unless everything was consumed.
    pub fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::ExtraBytes { what, count: self.buf.len() })
        }
    }
}
