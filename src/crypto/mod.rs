//! Keys, peer ids, nonces and the per-chunk box (protocol.md §§3–5.1).
//!
//! Everything here is pure: no IO, no clock. Randomness only enters through the explicit
//! `generate`/`random` constructors so that tests can inject fixed values.

pub mod backend;
mod channel;
mod nonce;

pub use backend::{CryptoBackend, UnknownBackend};
pub use channel::{ChannelKey, Opener, Sealer, TAG_SIZE};
pub use nonce::{generate_nonces, increment_be, Nonce, Nonces, NONCE_SIZE};

use std::fmt;
use std::str::FromStr;

use blake2::digest::consts::{U16, U32};
use blake2::{Blake2b, Digest};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Size in bytes of a crypto_box (X25519) public key.
pub const PUBLIC_KEY_SIZE: usize = 32;
/// Size in bytes of a crypto_box (X25519) secret key.
pub const SECRET_KEY_SIZE: usize = 32;
/// Size in bytes of a binary peer id (BLAKE2b-128 of the public key).
pub const PEER_ID_SIZE: usize = 16;

/// Errors of the crypto layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A chunk's Poly1305 tag did not verify (octez `Decipher_error`).
    #[error("decipher error: the chunk's MAC does not verify (tampered, replayed or wrong key/nonce)")]
    DecipherError,
    /// The X25519 shared secret with the peer's public key is all zero: the key is of low
    /// order, so the channel key would be a constant known to anyone. libsodium refuses it, and
    /// octez's HACL* backend is believed to (protocol.md §4.1 marks that unconfirmed).
    #[error("the peer's public key {public_key} is of low order (all-zero shared secret)")]
    LowOrderPublicKey {
        /// The offending public key.
        public_key: PublicKey,
    },
    /// The cipher refused to seal a buffer this large (beyond 2^38 bytes; never for a chunk).
    #[error("cannot seal a buffer of {len} bytes")]
    SealFailed {
        /// Length of the buffer given.
        len: usize,
    },
    /// A buffer handed to seal/open is too short to hold the 16-byte tag.
    #[error("buffer of {len} bytes cannot hold a {TAG_SIZE}-byte tag")]
    BufferTooShort {
        /// Length of the buffer given.
        len: usize,
    },
}

/// BLAKE2b with a 32-byte digest over the concatenation of `parts` (nonces, PoW).
pub fn blake2b_256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// BLAKE2b with a native 16-byte digest (not a truncated 32-byte one), as used for peer ids.
pub fn blake2b_128(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Blake2b::<U16>::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// An X25519 (NaCl crypto_box) public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; PUBLIC_KEY_SIZE]);

impl PublicKey {
    /// Wraps 32 raw bytes. Any 32 bytes are a syntactically valid key; low-order keys are
    /// caught when the channel key is computed.
    pub const fn from_bytes(bytes: [u8; PUBLIC_KEY_SIZE]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; PUBLIC_KEY_SIZE] {
        &self.0
    }

    /// The peer id of this key: BLAKE2b-128 of its bytes (protocol.md §5.1).
    pub fn peer_id(&self) -> PeerId {
        PeerId(blake2b_128(&[&self.0]))
    }

    /// Lowercase hex, as in `identity.json`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// An X25519 secret key (32 random bytes used as a clamped scalar).
///
/// Zeroized on drop; `Debug` never shows the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; SECRET_KEY_SIZE]);

impl SecretKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut b = [0u8; SECRET_KEY_SIZE];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let k = Self(b);
        b.zeroize();
        k
    }

    /// Wraps raw bytes (the caller should zeroize its own copy).
    pub const fn from_bytes(bytes: [u8; SECRET_KEY_SIZE]) -> Self {
        Self(bytes)
    }

    /// The raw secret bytes. Handle with care: needed only to write an identity file.
    pub fn expose_secret(&self) -> &[u8; SECRET_KEY_SIZE] {
        &self.0
    }

    /// `X25519(sk, 9)`, octez `Crypto_box.neuterize`, by the default backend.
    pub fn public_key(&self) -> PublicKey {
        self.public_key_with(CryptoBackend::default())
    }

    /// [`SecretKey::public_key`] by a chosen backend (all give the same key).
    pub fn public_key_with(&self, backend: CryptoBackend) -> PublicKey {
        PublicKey(backend::public_key(backend, &self.0))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// A peer id: BLAKE2b-128 of the peer's public key, shown as Base58Check `id…`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; PEER_ID_SIZE]);

/// Base58Check version prefix of peer ids (octal `\153\103`), giving the `id` text prefix.
const PEER_ID_PREFIX: [u8; 2] = [0x99, 0x67];

/// Why a peer id text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerIdParseError {
    /// Not Base58Check (bad alphabet or checksum).
    #[error("not a Base58Check string: {0}")]
    Base58(String),
    /// Decoded, but not a `0x99 0x67` prefix followed by 16 bytes.
    #[error("not a peer id: expected prefix 99 67 and 16 bytes, got {len} bytes")]
    WrongPrefixOrLength {
        /// Decoded length (prefix included).
        len: usize,
    },
}

impl PeerId {
    /// Wraps 16 raw bytes.
    pub const fn from_bytes(bytes: [u8; PEER_ID_SIZE]) -> Self {
        Self(bytes)
    }

    /// The raw 16 bytes (the binary encoding used on the wire).
    pub const fn as_bytes(&self) -> &[u8; PEER_ID_SIZE] {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 18];
        buf[..2].copy_from_slice(&PEER_ID_PREFIX);
        buf[2..].copy_from_slice(&self.0);
        f.write_str(&bs58::encode(buf).with_check().into_string())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl FromStr for PeerId {
    type Err = PeerIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw = bs58::decode(s).with_check(None).into_vec().map_err(|e| PeerIdParseError::Base58(e.to_string()))?;
        match raw.split_first_chunk::<2>() {
            Some((prefix, rest)) if *prefix == PEER_ID_PREFIX => {
                let bytes: [u8; PEER_ID_SIZE] =
                    rest.try_into().map_err(|_| PeerIdParseError::WrongPrefixOrLength { len: raw.len() })?;
                Ok(Self(bytes))
            }
            _ => Err(PeerIdParseError::WrongPrefixOrLength { len: raw.len() }),
        }
    }
}

impl serde::Serialize for PeerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_key_debug_is_redacted() {
        let sk = SecretKey::from_bytes([7; 32]);
        assert_eq!(format!("{sk:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn peer_id_text_round_trips_and_rejects_garbage() {
        let id = SecretKey::generate().public_key().peer_id();
        let s = id.to_string();
        assert!(s.starts_with("id") && s.len() == 30, "{s}");
        assert_eq!(s.parse::<PeerId>(), Ok(id));
        assert!("idxxx".parse::<PeerId>().is_err());
        assert!("".parse::<PeerId>().is_err());
        // A valid Base58Check string with another prefix (a tz1 address) is refused.
        assert!(matches!(
            "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb".parse::<PeerId>(),
            Err(PeerIdParseError::WrongPrefixOrLength { .. })
        ));
    }
}
