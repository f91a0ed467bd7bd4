//! The precomputed channel key and the per-chunk box (protocol.md §4.1–4.2).
//!
//! `crypto_box::SalsaBox` implements the same NaCl construction, but it offers no way to see the
//! shared secret (so no low-order rejection) and it reduces the clamped scalar modulo the group
//! order before multiplying, which differs from X25519 for public keys with a torsion component.
//! We therefore assemble the channel key from the very crates `crypto_box` is built on:
//! X25519 from `curve25519-dalek` (`mul_clamped`, the RFC 7748 function), HSalsa20 from `salsa20`,
//! and XSalsa20-Poly1305 from `crypto_secretbox`. The test at the bottom checks that the result
//! is byte-identical to `SalsaBox` for honest keys.

use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use curve25519_dalek::montgomery::MontgomeryPoint;
use salsa20::cipher::consts::U10;
use zeroize::{Zeroize, Zeroizing};

use super::{CryptoError, Nonce, PublicKey, SecretKey};

/// Size in bytes of the Poly1305 tag that opens every chunk.
pub const TAG_SIZE: usize = 16;

/// The session key both ends share: `crypto_box_beforenm(remote_pk, local_sk)`.
///
/// One key serves both directions; the directions differ only by nonce. The key bytes are wiped
/// on drop (by `crypto_secretbox`, and by us for our copy); there is no `Debug`.
#[derive(Clone)]
pub struct ChannelKey {
    key: Zeroizing<[u8; 32]>,
    cipher: XSalsa20Poly1305,
}

impl ChannelKey {
    /// X25519(local_sk, remote_pk) then HSalsa20 with a zero input (NaCl `beforenm`).
    ///
    /// Fails with [`CryptoError::LowOrderPublicKey`] when the shared secret is all zero.
    pub fn precompute(remote: &PublicKey, local: &SecretKey) -> Result<Self, CryptoError> {
        let mut shared = MontgomeryPoint(*remote.as_bytes()).mul_clamped(*local.expose_secret()).to_bytes();
        // Not constant-time on purpose: whether the peer's key is degenerate is not a secret.
        if shared == [0u8; 32] {
            return Err(CryptoError::LowOrderPublicKey { public_key: *remote });
        }
        let mut shared_ga = shared.into();
        shared.zeroize();
        let mut key = salsa20::hsalsa::<U10>(&shared_ga, &Default::default());
        shared_ga.zeroize();
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&key);
        key.zeroize();
        // (curve25519-dalek takes the scalar by value, so one stack copy of it is not ours to wipe.)
        Ok(Self::from_bytes_inner(bytes))
    }

    /// Wraps an already computed key (known-answer tests, replay of captures).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self::from_bytes_inner(Zeroizing::new(bytes))
    }

    fn from_bytes_inner(key: Zeroizing<[u8; 32]>) -> Self {
        let cipher = XSalsa20Poly1305::new((&*key).into());
        Self { key, cipher }
    }

    /// The raw key. Secret: exposed only for known-answer tests and diagnostics.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.key
    }

    /// Encrypts `buf` in place and returns the detached tag.
    ///
    /// Fails only for buffers beyond the cipher's 2^38-byte limit (chunks are at most 65519).
    pub fn seal_detached(&self, nonce: &Nonce, buf: &mut [u8]) -> Result<[u8; TAG_SIZE], CryptoError> {
        self.cipher
            .encrypt_in_place_detached(nonce.as_bytes().into(), &[], buf)
            .map(Into::into)
            .map_err(|_| CryptoError::SealFailed { len: buf.len() })
    }

    /// Decrypts `buf` in place if `tag` verifies; leaves it untouched otherwise.
    pub fn open_detached(&self, nonce: &Nonce, buf: &mut [u8], tag: &[u8; TAG_SIZE]) -> Result<(), CryptoError> {
        self.cipher
            .decrypt_in_place_detached(nonce.as_bytes().into(), &[], buf, tag.into())
            .map_err(|_| CryptoError::DecipherError)
    }

    /// Seals in place in the octez layout: `buf` is `[16 bytes of room][plaintext]` on entry and
    /// `[tag][ciphertext]` on return (what `crypto_box_afternm` produces). No allocation.
    pub fn seal_in_place(&self, nonce: &Nonce, buf: &mut [u8]) -> Result<(), CryptoError> {
        let len = buf.len();
        let (tag_room, body) = buf.split_first_chunk_mut::<TAG_SIZE>().ok_or(CryptoError::BufferTooShort { len })?;
        *tag_room = self.seal_detached(nonce, body)?;
        Ok(())
    }

    /// Opens `[tag][ciphertext]` in place; on success the plaintext is `buf[16..]`.
    pub fn open_in_place(&self, nonce: &Nonce, buf: &mut [u8]) -> Result<(), CryptoError> {
        let len = buf.len();
        let (tag, body) = buf.split_first_chunk_mut::<TAG_SIZE>().ok_or(CryptoError::BufferTooShort { len })?;
        let tag = *tag;
        self.open_detached(nonce, body, &tag)
    }
}

/// The sending half of a session: the channel key and our next nonce.
///
/// Every sealed chunk consumes one nonce, so chunks must go on the wire in sealing order.
#[derive(Clone)]
pub struct Sealer {
    key: ChannelKey,
    nonce: Nonce,
}

impl Sealer {
    /// A sealer whose next chunk uses `nonce`.
    pub fn new(key: ChannelKey, nonce: Nonce) -> Self {
        Self { key, nonce }
    }

    /// The nonce the next chunk will use.
    pub fn next_nonce(&self) -> Nonce {
        self.nonce
    }

    /// Seals `[16 bytes of room][plaintext]` in place with the next nonce, then advances it.
    pub fn seal_in_place(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        let nonce = self.nonce.take_and_increment();
        self.key.seal_in_place(&nonce, buf)
    }
}

/// The receiving half of a session: the channel key and the peer's next nonce.
#[derive(Clone)]
pub struct Opener {
    key: ChannelKey,
    nonce: Nonce,
}

impl Opener {
    /// An opener whose next chunk uses `nonce`.
    pub fn new(key: ChannelKey, nonce: Nonce) -> Self {
        Self { key, nonce }
    }

    /// The nonce the next chunk must have been sealed with.
    pub fn next_nonce(&self) -> Nonce {
        self.nonce
    }

    /// Opens `[tag][ciphertext]` in place with the next nonce, then advances it (even on
    /// failure, as octez does: a failed chunk is fatal for the connection anyway).
    pub fn open_in_place(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        let nonce = self.nonce.take_and_increment();
        self.key.open_in_place(&nonce, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_crypto_box_salsabox_for_honest_keys() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        let ours = ChannelKey::precompute(&b.public_key(), &a).unwrap();
        let theirs = ChannelKey::precompute(&a.public_key(), &b).unwrap();
        assert_eq!(ours.expose_secret(), theirs.expose_secret());

        let salsa = crypto_box::SalsaBox::new(
            &crypto_box::PublicKey::from(*b.public_key().as_bytes()),
            &crypto_box::SecretKey::from(*a.expose_secret()),
        );
        let nonce = Nonce::from_bytes([3; 24]);
        let mut x = b"hello tezos".to_vec();
        let mut y = x.clone();
        let t1 = ours.seal_detached(&nonce, &mut x).unwrap();
        let t2 = salsa.encrypt_in_place_detached(nonce.as_bytes().into(), &[], &mut y).unwrap();
        assert_eq!((x, t1.to_vec()), (y, t2.to_vec()));
    }

    #[test]
    fn low_order_keys_are_refused() {
        let sk = SecretKey::generate();
        // 0 and 1 and the order-8 point u=325606250916557431795983626356110631294008115727848805560023387167927233504.
        let mut order8 = [0u8; 32];
        hex::decode_to_slice("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", &mut order8).unwrap();
        let mut one = [0u8; 32];
        one[0] = 1;
        for pk in [[0u8; 32], one, order8] {
            assert!(matches!(
                ChannelKey::precompute(&PublicKey::from_bytes(pk), &sk),
                Err(CryptoError::LowOrderPublicKey { .. })
            ));
        }
    }

    #[test]
    fn tampering_and_nonce_reuse_are_detected() {
        let key = ChannelKey::from_bytes([9; 32]);
        let mut s = Sealer::new(key.clone(), Nonce::from_bytes([0; 24]));
        let mut o = Opener::new(key, Nonce::from_bytes([0; 24]));
        let mut c1 = [0u8; 16 + 4];
        c1[16..].copy_from_slice(b"abcd");
        s.seal_in_place(&mut c1).unwrap();
        let mut bad = c1;
        bad[17] ^= 1;
        assert_eq!(o.clone().open_in_place(&mut bad), Err(CryptoError::DecipherError));
        let mut ok = c1;
        o.open_in_place(&mut ok).unwrap();
        assert_eq!(&ok[16..], b"abcd");
        // Replaying the same chunk fails: the opener moved to the next nonce.
        let mut replay = c1;
        assert_eq!(o.open_in_place(&mut replay), Err(CryptoError::DecipherError));
        assert!(matches!(o.open_in_place(&mut [0u8; 15]), Err(CryptoError::BufferTooShort { len: 15 })));
    }
}
