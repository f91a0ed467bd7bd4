//! The pure-Rust backend.
//!
//! `crypto_box::SalsaBox` implements the same NaCl construction, but it offers no way to see the
//! shared secret (so no low-order rejection) and it reduces the clamped scalar modulo the group
//! order before multiplying, which differs from X25519 for public keys with a torsion component.
//! We therefore assemble the channel key from the very crates `crypto_box` is built on:
//! X25519 from `curve25519-dalek` (`mul_clamped`, the RFC 7748 function), HSalsa20 from `salsa20`,
//! and XSalsa20-Poly1305 from `crypto_secretbox`. A test in `channel.rs` checks that the result
//! is byte-identical to `SalsaBox` for honest keys.

use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use curve25519_dalek::montgomery::MontgomeryPoint;
use salsa20::cipher::consts::U10;
use zeroize::{Zeroize, Zeroizing};

use super::{Backend, TAG};

/// The RustCrypto backend (a marker type for the seam).
pub(in crate::crypto) struct RustCrypto;

/// The key bytes (for [`Backend::key_bytes`]) and the keyed cipher, boxed so the secret has one
/// home while the key is moved around; `crypto_secretbox` wipes the cipher's copy on drop,
/// `Zeroizing` ours.
#[derive(Clone)]
pub(in crate::crypto) struct Key(Box<KeyInner>);

#[derive(Clone)]
struct KeyInner {
    bytes: Zeroizing<[u8; 32]>,
    cipher: XSalsa20Poly1305,
}

// Both fields wipe themselves when dropped (see above).
impl zeroize::ZeroizeOnDrop for Key {}

impl Backend for RustCrypto {
    type Key = Key;

    fn public_key(secret: &[u8; 32]) -> [u8; 32] {
        // (curve25519-dalek takes the scalar by value: that stack copy is not ours to wipe.)
        MontgomeryPoint::mul_base_clamped(*secret).to_bytes()
    }

    fn precompute(remote: &[u8; 32], local: &[u8; 32]) -> Option<Key> {
        let mut shared = MontgomeryPoint(*remote).mul_clamped(*local).to_bytes();
        // Not constant-time on purpose: whether the peer's key is degenerate is not a secret.
        if shared == [0u8; 32] {
            return None;
        }
        let mut shared_ga = shared.into();
        shared.zeroize();
        let mut key = salsa20::hsalsa::<U10>(&shared_ga, &Default::default());
        shared_ga.zeroize();
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&key);
        key.zeroize();
        // (curve25519-dalek takes the scalar by value, so one stack copy of it is not ours to wipe.)
        Some(key_from(bytes))
    }

    fn key_from_bytes(bytes: &[u8; 32]) -> Key {
        key_from(Zeroizing::new(*bytes))
    }

    fn key_bytes(key: &Key) -> &[u8; 32] {
        &key.0.bytes
    }

    #[inline]
    fn seal_detached(key: &Key, nonce: &[u8; 24], buf: &mut [u8]) -> Option<[u8; TAG]> {
        key.0.cipher.encrypt_in_place_detached(nonce.into(), &[], buf).ok().map(Into::into)
    }

    #[inline]
    fn open_detached(key: &Key, nonce: &[u8; 24], buf: &mut [u8], tag: &[u8; TAG]) -> bool {
        key.0.cipher.decrypt_in_place_detached(nonce.into(), &[], buf, tag.into()).is_ok()
    }
}

fn key_from(bytes: Zeroizing<[u8; 32]>) -> Key {
    let cipher = XSalsa20Poly1305::new((&*bytes).into());
    Key(Box::new(KeyInner { bytes, cipher }))
}
