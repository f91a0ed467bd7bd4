//! The crypto-backend seam: the only place that knows how X25519, HSalsa20 and
//! XSalsa20-Poly1305 are computed.
//!
//! Everything above it ([`ChannelKey`](super::ChannelKey), the sealer and opener, the
//! handshake, the actors) speaks in terms of four operations, which each backend implements:
//! derive a public key from a secret, precompute a channel key (NaCl `crypto_box_beforenm`),
//! and seal/open one buffer in place with a detached 16-byte tag (`crypto_secretbox_detached`
//! and `crypto_secretbox_open_detached`).
//!
//! - [`CryptoBackend::RustCrypto`] (always built): the RustCrypto crates `crypto_box` is made of
//!   (curve25519-dalek, salsa20, crypto_secretbox). Pure Rust, no C toolchain.
//! - `CryptoBackend::Sodium` (cargo feature `sodium`): libsodium through
//!   `libsodium-sys-stable`, which is about three times faster at sealing on x86-64. The only
//!   `unsafe` code of the crate lives in its module.
//!
//! The choice is made at run time per node or handshake ([`LocalConfig::crypto_backend`]), so a
//! build with the feature can talk to itself across backends (the cross-backend tests do);
//! [`CryptoBackend::default`] is the fastest one compiled in. (Cargo unifies features: if any
//! crate in a dependency graph enables `sodium`, the default becomes libsodium for every user of
//! this crate in that build; the bytes on the wire are the same either way.) Both backends give identical bytes
//! and identical errors: the seam reports a degenerate shared secret as "no key" and
//! [`ChannelKey`](super::ChannelKey) turns that into the one typed error.
//!
//! [`LocalConfig::crypto_backend`]: crate::handshake::LocalConfig::crypto_backend

use std::fmt;
use std::str::FromStr;

pub(super) mod rust_crypto;
#[cfg(feature = "sodium")]
pub(super) mod sodium;

/// Size of a Poly1305 tag.
const TAG: usize = 16;

/// What a backend provides. Keys in and out are raw bytes so the seam stays independent of the
/// types above it; errors are reduced to what the caller must distinguish.
pub(super) trait Backend {
    /// A precomputed channel key in the backend's preferred form; it wipes its key bytes when
    /// dropped (the bound says so, the backends' tests rely on `Zeroizing`).
    type Key: Clone + zeroize::ZeroizeOnDrop;

    /// `X25519(secret, 9)`: the public key of a secret key.
    fn public_key(secret: &[u8; 32]) -> [u8; 32];

    /// `HSalsa20(X25519(local, remote), 0)`; `None` when the X25519 output is all zero
    /// (the peer's key is of low order).
    fn precompute(remote: &[u8; 32], local: &[u8; 32]) -> Option<Self::Key>;

    /// Wraps an already computed channel key.
    fn key_from_bytes(bytes: &[u8; 32]) -> Self::Key;

    /// The raw channel key (known-answer tests).
    fn key_bytes(key: &Self::Key) -> &[u8; 32];

    /// XSalsa20-Poly1305 encryption of `buf` in place; returns the tag, or `None` if the buffer
    /// is beyond what the cipher may encrypt under one nonce.
    fn seal_detached(key: &Self::Key, nonce: &[u8; 24], buf: &mut [u8]) -> Option<[u8; TAG]>;

    /// Verifies `tag` and, only if it holds, decrypts `buf` in place. Returns whether it held;
    /// `buf` is untouched when it did not.
    fn open_detached(key: &Self::Key, nonce: &[u8; 24], buf: &mut [u8], tag: &[u8; TAG]) -> bool;
}

/// Which implementation computes the channel crypto (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CryptoBackend {
    /// Pure Rust: curve25519-dalek, salsa20 and crypto_secretbox (what `crypto_box` is built on).
    RustCrypto,
    /// libsodium (cargo feature `sodium`).
    #[cfg(feature = "sodium")]
    Sodium,
}

impl CryptoBackend {
    /// Every backend compiled into this build, the default first.
    pub const ALL: &'static [CryptoBackend] = &[
        #[cfg(feature = "sodium")]
        CryptoBackend::Sodium,
        CryptoBackend::RustCrypto,
    ];

    /// A short stable name: `rust-crypto` or `sodium`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RustCrypto => "rust-crypto",
            #[cfg(feature = "sodium")]
            Self::Sodium => "sodium",
        }
    }

    /// A one-line description of the implementation behind the name (with libsodium's version).
    pub fn description(self) -> String {
        match self {
            Self::RustCrypto => {
                "RustCrypto (curve25519-dalek, salsa20, crypto_secretbox: the crates of crypto_box)".to_string()
            }
            #[cfg(feature = "sodium")]
            Self::Sodium => format!("libsodium {} (libsodium-sys-stable)", sodium::version()),
        }
    }
}

impl Default for CryptoBackend {
    /// The fastest backend compiled in: libsodium with the `sodium` feature, else RustCrypto.
    fn default() -> Self {
        Self::ALL[0]
    }
}

impl fmt::Display for CryptoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name that is unknown or not compiled into this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown or unavailable crypto backend {given:?} (this build has: {available})")]
pub struct UnknownBackend {
    /// The name given.
    pub given: String,
    /// The names this build accepts, comma-separated.
    pub available: String,
}

impl FromStr for CryptoBackend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|b| b.name() == s).ok_or_else(|| UnknownBackend {
            given: s.to_string(),
            available: Self::ALL.iter().map(|b| b.name()).collect::<Vec<_>>().join(", "),
        })
    }
}

/// A channel key held by whichever backend computed it. Dispatch is one `match` per chunk.
#[derive(Clone)]
pub(super) enum AnyKey {
    RustCrypto(<rust_crypto::RustCrypto as Backend>::Key),
    #[cfg(feature = "sodium")]
    Sodium(<sodium::Sodium as Backend>::Key),
}

/// Runs `$body` with `B` bound to the backend type of `$key` and `$k` to its key.
macro_rules! dispatch {
    ($key:expr, |$k:ident, $b:ident| $body:expr) => {
        match $key {
            AnyKey::RustCrypto($k) => {
                type $b = rust_crypto::RustCrypto;
                $body
            }
            #[cfg(feature = "sodium")]
            AnyKey::Sodium($k) => {
                type $b = sodium::Sodium;
                $body
            }
        }
    };
}

impl AnyKey {
    pub(super) fn precompute(backend: CryptoBackend, remote: &[u8; 32], local: &[u8; 32]) -> Option<Self> {
        match backend {
            CryptoBackend::RustCrypto => rust_crypto::RustCrypto::precompute(remote, local).map(Self::RustCrypto),
            #[cfg(feature = "sodium")]
            CryptoBackend::Sodium => sodium::Sodium::precompute(remote, local).map(Self::Sodium),
        }
    }

    pub(super) fn from_bytes(backend: CryptoBackend, bytes: &[u8; 32]) -> Self {
        match backend {
            CryptoBackend::RustCrypto => Self::RustCrypto(rust_crypto::RustCrypto::key_from_bytes(bytes)),
            #[cfg(feature = "sodium")]
            CryptoBackend::Sodium => Self::Sodium(sodium::Sodium::key_from_bytes(bytes)),
        }
    }

    pub(super) fn backend(&self) -> CryptoBackend {
        match self {
            Self::RustCrypto(_) => CryptoBackend::RustCrypto,
            #[cfg(feature = "sodium")]
            Self::Sodium(_) => CryptoBackend::Sodium,
        }
    }

    pub(super) fn bytes(&self) -> &[u8; 32] {
        dispatch!(self, |k, B| B::key_bytes(k))
    }

    #[inline]
    pub(super) fn seal_detached(&self, nonce: &[u8; 24], buf: &mut [u8]) -> Option<[u8; TAG]> {
        dispatch!(self, |k, B| B::seal_detached(k, nonce, buf))
    }

    #[inline]
    pub(super) fn open_detached(&self, nonce: &[u8; 24], buf: &mut [u8], tag: &[u8; TAG]) -> bool {
        dispatch!(self, |k, B| B::open_detached(k, nonce, buf, tag))
    }
}

/// `X25519(secret, 9)` computed by `backend`.
pub(super) fn public_key(backend: CryptoBackend, secret: &[u8; 32]) -> [u8; 32] {
    match backend {
        CryptoBackend::RustCrypto => rust_crypto::RustCrypto::public_key(secret),
        #[cfg(feature = "sodium")]
        CryptoBackend::Sodium => sodium::Sodium::public_key(secret),
    }
}
