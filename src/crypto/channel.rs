//! The precomputed channel key and the per-chunk box (protocol.md §4.1–4.2), on top of the
//! crypto-backend seam ([`super::backend`]).

use super::backend::{AnyKey, CryptoBackend};
use super::{CryptoError, Nonce, PublicKey, SecretKey};

/// Size in bytes of the Poly1305 tag that opens every chunk.
pub const TAG_SIZE: usize = 16;

/// The session key both ends share: `crypto_box_beforenm(remote_pk, local_sk)`.
///
/// One key serves both directions; the directions differ only by nonce. It is computed and used
/// by one [`CryptoBackend`]; both give the same bytes. The key bytes are wiped on drop by
/// whichever backend holds them; there is no `Debug`.
#[derive(Clone)]
pub struct ChannelKey {
    key: AnyKey,
}

impl ChannelKey {
    /// X25519(local_sk, remote_pk) then HSalsa20 with a zero input (NaCl `beforenm`), by the
    /// default backend ([`CryptoBackend::default`]).
    ///
    /// Fails with [`CryptoError::LowOrderPublicKey`] when the shared secret is all zero.
    pub fn precompute(remote: &PublicKey, local: &SecretKey) -> Result<Self, CryptoError> {
        Self::precompute_with(CryptoBackend::default(), remote, local)
    }

    /// [`ChannelKey::precompute`] by a chosen backend. Every backend refuses the same keys with
    /// the same error.
    pub fn precompute_with(backend: CryptoBackend, remote: &PublicKey, local: &SecretKey) -> Result<Self, CryptoError> {
        AnyKey::precompute(backend, remote.as_bytes(), local.expose_secret())
            .map(|key| Self { key })
            .ok_or(CryptoError::LowOrderPublicKey { public_key: *remote })
    }

    /// Wraps an already computed key (known-answer tests, replay of captures), for the default
    /// backend. The argument is taken by value and wiped; any other copy is the caller's to wipe.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self::from_bytes_with(CryptoBackend::default(), bytes)
    }

    /// [`ChannelKey::from_bytes`] for a chosen backend.
    pub fn from_bytes_with(backend: CryptoBackend, mut bytes: [u8; 32]) -> Self {
        let key = AnyKey::from_bytes(backend, &bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        Self { key }
    }

    /// The backend that computes with this key.
    pub fn backend(&self) -> CryptoBackend {
        self.key.backend()
    }

    /// The raw key. Secret: exposed only for known-answer tests and diagnostics.
    pub fn expose_secret(&self) -> &[u8; 32] {
        self.key.bytes()
    }

    /// Encrypts `buf` in place and returns the detached tag.
    ///
    /// Neither backend fails for a buffer a slice can hold (XSalsa20 has a 64-bit block
    /// counter); the error keeps the seam honest should a backend ever refuse.
    #[inline]
    pub fn seal_detached(&self, nonce: &Nonce, buf: &mut [u8]) -> Result<[u8; TAG_SIZE], CryptoError> {
        self.key.seal_detached(nonce.as_bytes(), buf).ok_or(CryptoError::SealFailed { len: buf.len() })
    }

    /// Decrypts `buf` in place if `tag` verifies; leaves it untouched otherwise.
    #[inline]
    pub fn open_detached(&self, nonce: &Nonce, buf: &mut [u8], tag: &[u8; TAG_SIZE]) -> Result<(), CryptoError> {
        if self.key.open_detached(nonce.as_bytes(), buf, tag) {
            Ok(())
        } else {
            Err(CryptoError::DecipherError)
        }
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

    /// The backend that seals.
    pub fn backend(&self) -> CryptoBackend {
        self.key.backend()
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

    /// The backend that opens.
    pub fn backend(&self) -> CryptoBackend {
        self.key.backend()
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
    use crypto_secretbox::aead::AeadInPlace;

    /// Low-order points, as canonical encodings, non-canonical ones (u + p) and with the ignored
    /// top bit set: every backend must refuse all of them the same way.
    fn low_order_keys() -> Vec<[u8; 32]> {
        let mut keys = Vec::new();
        let hex_keys = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p - 1
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p (= 0)
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p + 1 (= 1)
        ];
        for h in hex_keys {
            let mut k = [0u8; 32];
            hex::decode_to_slice(h, &mut k).unwrap();
            keys.push(k);
            k[31] |= 0x80;
            keys.push(k);
        }
        keys
    }

    #[test]
    fn matches_crypto_box_salsabox_for_honest_keys() {
        for &backend in CryptoBackend::ALL {
            let a = SecretKey::generate();
            let b = SecretKey::generate();
            let ours = ChannelKey::precompute_with(backend, &b.public_key_with(backend), &a).unwrap();
            let theirs = ChannelKey::precompute_with(backend, &a.public_key_with(backend), &b).unwrap();
            assert_eq!(ours.expose_secret(), theirs.expose_secret(), "{backend}");
            assert_eq!(ours.backend(), backend);

            let salsa = crypto_box::SalsaBox::new(
                &crypto_box::PublicKey::from(*b.public_key().as_bytes()),
                &crypto_box::SecretKey::from(*a.expose_secret()),
            );
            let nonce = Nonce::from_bytes([3; 24]);
            let mut x = b"hello tezos".to_vec();
            let mut y = x.clone();
            let t1 = ours.seal_detached(&nonce, &mut x).unwrap();
            let t2 = salsa.encrypt_in_place_detached(nonce.as_bytes().into(), &[], &mut y).unwrap();
            assert_eq!((x, t1.to_vec()), (y, t2.to_vec()), "{backend}");
        }
    }

    #[test]
    fn backends_agree_byte_for_byte() {
        let first = CryptoBackend::ALL[0];
        for round in 0..64u8 {
            let sk = SecretKey::generate();
            // Arbitrary 32 bytes (not only points of the prime-order subgroup), top bit varied.
            let mut remote = *SecretKey::generate().expose_secret();
            remote[31] ^= (round & 1) << 7;
            let remote = PublicKey::from_bytes(remote);
            let len = [0usize, 1, 15, 16, 63, 64, 65, 1000, 65519][round as usize % 9];
            let nonce = Nonce::from_bytes([round; 24]);
            let plain: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ round).collect();
            let reference = ChannelKey::precompute_with(first, &remote, &sk).unwrap();
            let mut sealed = plain.clone();
            let tag = reference.seal_detached(&nonce, &mut sealed).unwrap();
            for &backend in CryptoBackend::ALL {
                assert_eq!(sk.public_key_with(backend), sk.public_key_with(first), "{backend}");
                let key = ChannelKey::precompute_with(backend, &remote, &sk).unwrap();
                assert_eq!(key.expose_secret(), reference.expose_secret(), "{backend} round {round}");
                let mut mine = plain.clone();
                assert_eq!(key.seal_detached(&nonce, &mut mine).unwrap(), tag, "{backend}");
                assert_eq!(mine, sealed, "{backend}");
                // Each opens what the other sealed.
                let mut opened = sealed.clone();
                key.open_detached(&nonce, &mut opened, &tag).unwrap();
                assert_eq!(opened, plain, "{backend}");
            }
        }
    }

    #[test]
    fn backends_agree_on_non_canonical_keys_that_are_not_low_order() {
        // u = p + 2 ... p + 18 and 2^255 - 1 (all ones): reduced mod p by both backends.
        let mut keys = Vec::new();
        for k in 2..=18u8 {
            let mut u = [0xff; 32];
            u[0] = 0xed + k;
            u[31] = 0x7f;
            keys.push(u);
            u[31] = 0xff;
            keys.push(u);
        }
        keys.push([0xff; 32]);
        let sk = SecretKey::generate();
        for pk in keys {
            let pk = PublicKey::from_bytes(pk);
            let results: Vec<_> = CryptoBackend::ALL
                .iter()
                .map(|&b| ChannelKey::precompute_with(b, &pk, &sk).map(|k| *k.expose_secret()))
                .collect();
            assert!(results.iter().all(|r| *r == results[0]), "{pk:?}: backends disagree");
            assert!(results[0].is_ok(), "{pk:?} is not of low order");
        }
    }

    #[test]
    fn low_order_keys_are_refused_by_every_backend() {
        let sk = SecretKey::generate();
        for &backend in CryptoBackend::ALL {
            for pk in low_order_keys() {
                let pk = PublicKey::from_bytes(pk);
                match ChannelKey::precompute_with(backend, &pk, &sk) {
                    Err(CryptoError::LowOrderPublicKey { public_key }) => assert_eq!(public_key, pk),
                    Err(e) => panic!("{backend}: {pk:?} gave {e}"),
                    Ok(_) => panic!("{backend}: {pk:?} was accepted"),
                }
            }
        }
    }

    #[test]
    fn tampering_and_nonce_reuse_are_detected() {
        for &backend in CryptoBackend::ALL {
            let key = ChannelKey::from_bytes_with(backend, [9; 32]);
            let mut s = Sealer::new(key.clone(), Nonce::from_bytes([0; 24]));
            let mut o = Opener::new(key, Nonce::from_bytes([0; 24]));
            let mut c1 = [0u8; 16 + 4];
            c1[16..].copy_from_slice(b"abcd");
            s.seal_in_place(&mut c1).unwrap();
            let mut bad = c1;
            bad[17] ^= 1;
            assert_eq!(o.clone().open_in_place(&mut bad), Err(CryptoError::DecipherError));
            // A failed open leaves the buffer as it was.
            let mut expected = c1;
            expected[17] ^= 1;
            assert_eq!(bad, expected, "{backend}");
            let mut ok = c1;
            o.open_in_place(&mut ok).unwrap();
            assert_eq!(&ok[16..], b"abcd");
            // Replaying the same chunk fails: the opener moved to the next nonce.
            let mut replay = c1;
            assert_eq!(o.open_in_place(&mut replay), Err(CryptoError::DecipherError));
            assert!(matches!(o.open_in_place(&mut [0u8; 15]), Err(CryptoError::BufferTooShort { len: 15 })));
            // An empty payload still carries (and checks) a tag.
            let key = ChannelKey::from_bytes_with(backend, [9; 32]);
            let mut s = Sealer::new(key.clone(), Nonce::from_bytes([7; 24]));
            let mut o = Opener::new(key, Nonce::from_bytes([7; 24]));
            let mut empty = [0u8; 16];
            s.seal_in_place(&mut empty).unwrap();
            let mut wrong = empty;
            wrong[0] ^= 1;
            assert_eq!(o.clone().open_in_place(&mut wrong), Err(CryptoError::DecipherError));
            o.open_in_place(&mut empty).unwrap();
        }
    }

    #[test]
    fn backend_names_round_trip() {
        for &backend in CryptoBackend::ALL {
            assert_eq!(backend.name().parse::<CryptoBackend>(), Ok(backend));
            assert!(!backend.description().is_empty());
        }
        let want = if cfg!(feature = "sodium") { "sodium" } else { "rust-crypto" };
        assert_eq!(CryptoBackend::default().name(), want);
        let err = "openssl".parse::<CryptoBackend>().unwrap_err();
        assert!(err.to_string().contains("rust-crypto"), "{err}");
    }
}
