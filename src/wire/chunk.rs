//! Encrypted chunks: `u16be E ‖ tag(16) ‖ ciphertext(E − 16)` (protocol.md §4.3–4.4).

use bytes::{Buf as _, BufMut as _, BytesMut};

use super::EncodeError;
use crate::crypto::{CryptoError, Opener, Sealer, TAG_SIZE};

/// Size of a chunk's length prefix (octez `header_length`).
pub const CHUNK_HEADER_SIZE: usize = 2;
/// Prefix plus tag (octez `extrabytes`).
pub const EXTRA_BYTES: usize = CHUNK_HEADER_SIZE + TAG_SIZE;
/// Largest chunk we produce, prefix included (octez `bufsize`).
pub const MAX_CHUNK_SIZE: usize = 65535;
/// Largest plaintext per chunk when writing (octez `max_content_length`).
pub const MAX_CONTENT_LENGTH: usize = MAX_CHUNK_SIZE - EXTRA_BYTES;
/// Largest plaintext a reader must accept: any `E` up to 65535 is valid on input, although
/// octez never sends more than 65517 plaintext bytes.
pub const MAX_INCOMING_PLAINTEXT: usize = u16::MAX as usize - TAG_SIZE;

/// A valid `binary_chunks_size`: the total chunk size, 19..=65535 (octez
/// `check_binary_chunks_size`). Messages are cut into pieces of `size − 18` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSize(u16);

/// octez `P2p_socket.check_binary_chunks_size`.
pub fn check_binary_chunks_size(size: usize) -> Result<ChunkSize, EncodeError> {
    ChunkSize::new(size)
}

impl ChunkSize {
    /// The smallest valid size: one plaintext byte per chunk.
    pub const MIN: usize = EXTRA_BYTES + 1;

    /// Validates a total chunk size.
    pub fn new(size: usize) -> Result<Self, EncodeError> {
        if (Self::MIN..=MAX_CHUNK_SIZE).contains(&size) {
            // In range, so it fits a u16.
            Ok(Self(size as u16))
        } else {
            Err(EncodeError::InvalidChunksSize { value: size, min: Self::MIN, max: MAX_CHUNK_SIZE })
        }
    }

    /// The total chunk size.
    pub fn get(self) -> usize {
        self.0.into()
    }

    /// Plaintext bytes per chunk (`size − 18`).
    pub fn plaintext_len(self) -> usize {
        self.get() - EXTRA_BYTES
    }
}

impl Default for ChunkSize {
    /// 65535 total, 65517 plaintext: octez's default when no size is configured.
    fn default() -> Self {
        Self(MAX_CHUNK_SIZE as u16)
    }
}

/// Why an incoming chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// The length field is below the 16-byte tag (octez `Invalid_incoming_ciphertext_size`).
    #[error("invalid incoming ciphertext size {size}: a chunk holds at least the {TAG_SIZE}-byte tag")]
    InvalidIncomingCiphertextSize {
        /// The length field read.
        size: usize,
    },
    /// The MAC did not verify (octez `Decipher_error`).
    #[error("decipher error: the chunk's MAC does not verify")]
    DecipherError,
}

impl From<CryptoError> for ChunkError {
    fn from(_: CryptoError) -> Self {
        // Opening can only fail on the MAC; lengths were checked before.
        Self::DecipherError
    }
}

/// Cuts `payload` into pieces of `size.plaintext_len()` bytes and appends one sealed chunk per
/// piece to `out` (an empty payload gives one empty chunk). Returns the number of chunks.
///
/// Each piece is copied once, into its place in `out`, and encrypted there.
pub fn seal_chunks(sealer: &mut Sealer, payload: &[u8], size: ChunkSize, out: &mut BytesMut) -> usize {
    let piece_len = size.plaintext_len();
    let pieces = payload.len().div_ceil(piece_len).max(1);
    out.reserve(payload.len() + pieces * EXTRA_BYTES);
    let mut rest = payload;
    for _ in 0..pieces {
        let (piece, tail) = rest.split_at(rest.len().min(piece_len));
        rest = tail;
        // piece_len ≤ 65517, so the length fits a u16.
        out.put_u16((TAG_SIZE + piece.len()) as u16);
        let start = out.len();
        out.put_bytes(0, TAG_SIZE);
        out.extend_from_slice(piece);
        // Cannot fail: the slice holds the tag room and at most 65517 bytes.
        let _ = sealer.seal_in_place(&mut out[start..]);
    }
    pieces
}

/// A streaming chunk decoder (the tokio-util `Decoder` contract: `Ok(None)` means "more bytes
/// needed", an `Err` is fatal for the connection).
///
/// It reserves room for at most the one chunk it is waiting for (≤ 65537 bytes), whatever the
/// peer claims, and opens chunks in place: the plaintext returned shares the input buffer.
pub struct ChunkDecoder {
    opener: Opener,
}

impl ChunkDecoder {
    /// A decoder whose next chunk must be sealed with `opener`'s nonce.
    pub fn new(opener: Opener) -> Self {
        Self { opener }
    }

    /// Takes one whole chunk from the front of `src` and returns its plaintext, or `Ok(None)`
    /// (with room reserved for the rest of the chunk) if `src` does not hold it all yet.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ChunkError> {
        let Some(header) = src.first_chunk::<CHUNK_HEADER_SIZE>() else {
            return Ok(None);
        };
        let size = usize::from(u16::from_be_bytes(*header));
        if size < TAG_SIZE {
            return Err(ChunkError::InvalidIncomingCiphertextSize { size });
        }
        let total = CHUNK_HEADER_SIZE + size;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(CHUNK_HEADER_SIZE);
        let mut body = src.split_to(size);
        self.opener.open_in_place(&mut body)?;
        body.advance(TAG_SIZE);
        Ok(Some(body))
    }

    /// The opener, for handing the session on.
    pub fn into_opener(self) -> Opener {
        self.opener
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{ChannelKey, Nonce};

    fn pair() -> (Sealer, ChunkDecoder) {
        let key = ChannelKey::from_bytes([5; 32]);
        let n = Nonce::from_bytes([1; 24]);
        (Sealer::new(key.clone(), n), ChunkDecoder::new(Opener::new(key, n)))
    }

    #[test]
    fn chunk_sizes_are_checked_like_octez() {
        assert!(ChunkSize::new(18).is_err());
        assert_eq!(ChunkSize::new(19).unwrap().plaintext_len(), 1);
        assert_eq!(ChunkSize::new(65535).unwrap().plaintext_len(), 65517);
        assert_eq!(ChunkSize::new(65536), Err(EncodeError::InvalidChunksSize { value: 65536, min: 19, max: 65535 }));
    }

    #[test]
    fn split_and_reassemble_at_every_byte_boundary() {
        let payload: Vec<u8> = (0..260u32).map(|i| i as u8).collect();
        let (mut s, _) = pair();
        let mut wire = BytesMut::new();
        // octez test "chunked-message": 21-byte chunks carry 3 plaintext bytes each.
        assert_eq!(seal_chunks(&mut s, &payload, ChunkSize::new(21).unwrap(), &mut wire), 87);
        for split in 0..wire.len() {
            let (_, mut d) = pair();
            let mut src = BytesMut::from(&wire[..split]);
            let mut got = Vec::new();
            while let Some(p) = d.decode(&mut src).unwrap() {
                got.extend_from_slice(&p);
            }
            src.extend_from_slice(&wire[split..]);
            while let Some(p) = d.decode(&mut src).unwrap() {
                got.extend_from_slice(&p);
            }
            assert_eq!(got, payload, "split at {split}");
            assert!(src.is_empty());
        }
    }

    #[test]
    fn empty_payload_is_one_empty_chunk_and_short_lengths_are_refused() {
        let (mut s, mut d) = pair();
        let mut wire = BytesMut::new();
        assert_eq!(seal_chunks(&mut s, &[], ChunkSize::default(), &mut wire), 1);
        assert_eq!(wire.len(), 18);
        assert_eq!(d.decode(&mut wire).unwrap().unwrap().len(), 0);
        let mut bad = BytesMut::from(&[0x00, 0x0f][..]);
        assert_eq!(d.decode(&mut bad), Err(ChunkError::InvalidIncomingCiphertextSize { size: 15 }));
    }

    #[test]
    fn reservation_is_bounded_by_one_chunk() {
        let (_, mut d) = pair();
        let mut src = BytesMut::from(&[0xff, 0xff][..]);
        assert_eq!(d.decode(&mut src), Ok(None));
        assert!(src.capacity() <= 2 + 65535 + 64, "{}", src.capacity());
    }
}
