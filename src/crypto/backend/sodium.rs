//! The libsodium backend (cargo feature `sodium`), through `libsodium-sys-stable`.
//!
//! This is the only module of the crate allowed `unsafe` code: each call crosses into C. The
//! functions used are libsodium's documented NaCl API:
//! `crypto_scalarmult_base`, `crypto_box_beforenm` (X25519 then HSalsa20; returns -1 when the
//! X25519 output is all zero, which is how libsodium reports a low-order peer key), and
//! `crypto_secretbox_detached` / `crypto_secretbox_open_detached` (XSalsa20-Poly1305 with a
//! detached tag; both documented to work in place, and the open verifies before it writes).
//!
//! `sodium_init` runs once, before the first key is made: it selects the fastest
//! implementations for this CPU (AVX2 Salsa20, SSE Poly1305, ...). Without it libsodium still
//! computes the same bytes with its portable code, so a failed init is logged, not fatal.
#![allow(unsafe_code)]
// Every block must carry its SAFETY argument and do one unsafe thing.
#![deny(clippy::undocumented_unsafe_blocks, clippy::multiple_unsafe_ops_per_block)]

use std::ffi::CStr;
use std::sync::Once;

use libsodium_sys as ffi;
use zeroize::Zeroizing;

use super::{Backend, TAG};

/// The libsodium backend (a marker type for the seam).
pub(in crate::crypto) struct Sodium;

/// libsodium keeps no key state: the 32 key bytes are the whole key. Boxed so the key has one
/// fixed home that libsodium writes into directly (moving the key around moves a pointer, not
/// copies of the secret); wiped on drop.
#[derive(Clone)]
pub(in crate::crypto) struct Key(Box<Zeroizing<[u8; 32]>>);

// The one field wipes itself when dropped.
impl zeroize::ZeroizeOnDrop for Key {}

impl Key {
    fn zeroed() -> Self {
        Self(Box::new(Zeroizing::new([0u8; 32])))
    }
}

/// Initialises libsodium once per process.
fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: `sodium_init` takes no arguments, is documented as thread-safe and idempotent
        // (it returns 1 when already initialised), and only touches libsodium's own globals.
        let rc = unsafe { ffi::sodium_init() };
        if rc < 0 {
            tracing::warn!("sodium_init failed ({rc}); libsodium falls back to its portable code");
        }
    });
}

/// libsodium's version string, e.g. `1.0.20`.
pub(super) fn version() -> String {
    // SAFETY: takes no arguments and returns a pointer to libsodium's static NUL-terminated
    // `SODIUM_VERSION_STRING`.
    let ptr = unsafe { ffi::sodium_version_string() };
    // SAFETY: `ptr` is non-null, NUL-terminated and valid for the whole program (a static
    // string), and nothing writes to it; we copy it out at once.
    let raw = unsafe { CStr::from_ptr(ptr) };
    raw.to_string_lossy().into_owned()
}

/// A non-null pointer to at least `buf.len()` bytes. libsodium reads/writes nothing when the
/// length is 0, but C forbids null or dangling pointers even then; an empty Rust slice's pointer
/// is dangling, so empty buffers get a real (one-byte) one.
fn ptr_or_scratch(buf: &mut [u8], scratch: &mut [u8; 1]) -> *mut u8 {
    if buf.is_empty() {
        scratch.as_mut_ptr()
    } else {
        buf.as_mut_ptr()
    }
}

impl Backend for Sodium {
    type Key = Key;

    fn public_key(secret: &[u8; 32]) -> [u8; 32] {
        init();
        let mut pk = [0u8; 32];
        // SAFETY: `crypto_scalarmult_base(q, n)` writes exactly crypto_scalarmult_BYTES (32)
        // bytes to `q` and reads crypto_scalarmult_SCALARBYTES (32) bytes from `n`; both are
        // 32-byte arrays that do not overlap.
        let rc = unsafe { ffi::crypto_scalarmult_base(pk.as_mut_ptr(), secret.as_ptr()) };
        if rc != 0 {
            // Cannot happen for a clamped scalar (the base point has prime order); should a
            // libsodium version ever refuse, the pure-Rust function gives the same bytes.
            return super::rust_crypto::RustCrypto::public_key(secret);
        }
        pk
    }

    fn precompute(remote: &[u8; 32], local: &[u8; 32]) -> Option<Key> {
        init();
        let mut key = Key::zeroed();
        // SAFETY: `crypto_box_beforenm(k, pk, sk)` writes crypto_box_BEFORENMBYTES (32) bytes to
        // `k` and reads 32 bytes from each of `pk` and `sk` (crypto_box_PUBLICKEYBYTES and
        // SECRETKEYBYTES); all three are distinct 32-byte arrays. (libsodium wipes the X25519
        // output it keeps on its stack; the ladder's and HSalsa20's working state stay there
        // until overwritten, as the pure-Rust backend's by-value scalar copies do.)
        let rc = unsafe { ffi::crypto_box_beforenm(key.0.as_mut_ptr(), remote.as_ptr(), local.as_ptr()) };
        // -1: the X25519 output was all zero (low-order key); `key` is wiped on drop anyway.
        (rc == 0).then_some(key)
    }

    fn key_from_bytes(bytes: &[u8; 32]) -> Key {
        init();
        let mut key = Key::zeroed();
        key.0.copy_from_slice(bytes);
        key
    }

    fn key_bytes(key: &Key) -> &[u8; 32] {
        &key.0
    }

    #[inline]
    fn seal_detached(key: &Key, nonce: &[u8; 24], buf: &mut [u8]) -> Option<[u8; TAG]> {
        // (No length check: `crypto_secretbox_detached` accepts any length a slice can have; only
        // the `_easy` variants call `sodium_misuse()` on lengths near SIZE_MAX.)
        let mut tag = [0u8; TAG];
        let mut scratch = [0u8; 1];
        let len = buf.len() as u64;
        let p = ptr_or_scratch(buf, &mut scratch);
        // SAFETY: `crypto_secretbox_detached(c, mac, m, mlen, n, k)` reads `mlen` bytes at `m`,
        // writes `mlen` bytes at `c` and 16 (crypto_secretbox_MACBYTES) at `mac`, and reads 24
        // (NONCEBYTES) at `n` and 32 (KEYBYTES) at `k`. `c` and `m` are the same pointer, valid
        // for `len` bytes (a one-byte scratch when `len` is 0); libsodium documents in-place use
        // (it handles c == m). `tag`, `nonce` and `key` are separate arrays of the right sizes.
        let rc = unsafe { ffi::crypto_secretbox_detached(p, tag.as_mut_ptr(), p, len, nonce.as_ptr(), key.0.as_ptr()) };
        (rc == 0).then_some(tag)
    }

    #[inline]
    fn open_detached(key: &Key, nonce: &[u8; 24], buf: &mut [u8], tag: &[u8; TAG]) -> bool {
        let mut scratch = [0u8; 1];
        let len = buf.len() as u64;
        let p = ptr_or_scratch(buf, &mut scratch);
        // SAFETY: `crypto_secretbox_open_detached(m, c, mac, clen, n, k)` reads `clen` bytes at
        // `c`, 16 at `mac`, 24 at `n` and 32 at `k`, verifies the tag, and only then writes `clen`
        // bytes at `m` (returning -1 without writing when it fails). `m` and `c` are the same
        // pointer valid for `len` bytes (scratch when 0), which libsodium supports; the others
        // are separate arrays of the right sizes.
        let rc =
            unsafe { ffi::crypto_secretbox_open_detached(p, p, tag.as_ptr(), len, nonce.as_ptr(), key.0.as_ptr()) };
        rc == 0
    }
}
