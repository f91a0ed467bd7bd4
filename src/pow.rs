//! Proof of work: the target rule, the check, and a multi-threaded stamp search
//! (protocol.md §5.2–5.4).
//!
//! The check and the target are pure. [`generate`] spawns plain OS threads because it is a
//! CPU-bound one-off; callers on an async runtime should run it on a blocking pool.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::crypto::{blake2b_256, increment_be, PublicKey};

/// Size in bytes of a proof-of-work stamp.
pub const STAMP_SIZE: usize = 24;

/// A proof-of-work stamp: 24 bytes hashed after the public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp([u8; STAMP_SIZE]);

impl Stamp {
    /// Wraps 24 raw bytes.
    pub const fn from_bytes(bytes: [u8; STAMP_SIZE]) -> Self {
        Self(bytes)
    }

    /// The raw 24 bytes.
    pub const fn as_bytes(&self) -> &[u8; STAMP_SIZE] {
        &self.0
    }

    /// A random stamp (the starting point of a search; valid at difficulty 0).
    pub fn random() -> Self {
        Self(*crate::crypto::Nonce::random().as_bytes())
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stamp({})", hex::encode(self.0))
    }
}

/// Errors of the proof-of-work layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PowError {
    /// The difficulty is not a number in `[0, 256]` (octez raises `Invalid_argument`).
    #[error("invalid proof-of-work difficulty {0}: expected a number between 0 and 256")]
    InvalidDifficulty(f64),
}

/// A proof-of-work target: a 256-bit integer the little-endian hash must not exceed.
///
/// Built only by [`PowTarget::new`], so a value of this type is always valid.
#[derive(Clone, Copy, PartialEq)]
pub struct PowTarget {
    /// Little-endian 256-bit integer, as four 64-bit limbs, least significant first.
    limbs: [u64; 4],
    difficulty: f64,
}

impl fmt::Debug for PowTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PowTarget({})", self.difficulty)
    }
}

impl PowTarget {
    /// octez `Crypto_box.make_pow_target f`.
    ///
    /// For integer `f` this is `2^(256 − f) − 1`; fractional levels put the 54-bit mantissa
    /// `trunc(2^(54 − frac))` just below the all-ones tail, exactly as octez does.
    pub fn new(difficulty: f64) -> Result<Self, PowError> {
        if !(0.0..=256.0).contains(&difficulty) {
            return Err(PowError::InvalidDifficulty(difficulty));
        }
        let whole = difficulty.trunc();
        let frac = difficulty - whole;
        // In [0, 256] by the check above.
        let shift = whole as u32;
        let mantissa: u64 = if frac == 0.0 {
            (1u64 << 54) - 1
        } else {
            // OCaml `Int64.of_float (2. ** (54. -. frac))`: truncation toward zero.
            2f64.powf(54.0 - frac) as u64
        };
        let mut limbs = [0u64; 4];
        if shift < 202 {
            let low_ones = 202 - shift;
            for bit in 0..low_ones {
                set_bit(&mut limbs, bit);
            }
            for j in 0..64 {
                if mantissa >> j & 1 == 1 && low_ones + j < 256 {
                    set_bit(&mut limbs, low_ones + j);
                }
            }
        } else {
            // shift − 202 ≤ 54 since shift ≤ 256.
            limbs[0] = mantissa >> (shift - 202);
        }
        Ok(Self { limbs, difficulty })
    }

    /// The difficulty this target was made from.
    pub fn difficulty(&self) -> f64 {
        self.difficulty
    }

    /// The target as 32 big-endian bytes (for display and known-answer tests).
    pub fn to_be_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, limb) in self.limbs.iter().rev().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    /// Whether a 32-byte hash, read as a little-endian integer, is at most this target.
    pub fn accepts_hash(&self, hash: &[u8; 32]) -> bool {
        let h = le_limbs(hash);
        for i in (0..4).rev() {
            if h[i] != self.limbs[i] {
                return h[i] < self.limbs[i];
            }
        }
        true
    }
}

fn set_bit(limbs: &mut [u64; 4], bit: u32) {
    limbs[(bit / 64) as usize] |= 1u64 << (bit % 64);
}

fn le_limbs(hash: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (limb, bytes) in out.iter_mut().zip(hash.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        *limb = u64::from_le_bytes(b);
    }
    out
}

/// `BLAKE2b-256(pk ‖ stamp)`, the hash the target is compared with.
pub fn pow_hash(public_key: &PublicKey, stamp: &Stamp) -> [u8; 32] {
    blake2b_256(&[public_key.as_bytes(), stamp.as_bytes()])
}

/// octez `Crypto_box.check_proof_of_work pk stamp target`.
pub fn check_proof_of_work(public_key: &PublicKey, stamp: &Stamp, target: &PowTarget) -> bool {
    target.accepts_hash(&pow_hash(public_key, stamp))
}

/// The number of leading zero bits of the little-endian hash integer: the highest integer
/// difficulty this stamp meets (a stamp meets level `f` for every `f` up to this value).
pub fn pow_level(public_key: &PublicKey, stamp: &Stamp) -> u32 {
    let h = le_limbs(&pow_hash(public_key, stamp));
    let mut bits = 0;
    for limb in h.iter().rev() {
        if *limb == 0 {
            bits += 64;
        } else {
            return bits + limb.leading_zeros();
        }
    }
    bits
}

/// How often (in attempts) a search thread publishes its count and looks at the stop flags.
/// octez yields every 10 000 attempts; the same granularity keeps the shared counter cold.
const BATCH: u64 = 10_000;

/// Options of [`generate`].
pub struct GenerateOptions<'a> {
    /// Number of search threads (at least 1).
    pub threads: usize,
    /// Set to `true` from elsewhere (e.g. a Ctrl-C handler) to abandon the search.
    pub cancel: &'a AtomicBool,
    /// Called about every `progress_interval` with the total number of attempts so far.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// How often `progress` is called.
    pub progress_interval: Duration,
}

/// Searches a stamp meeting `target` for `public_key` on `options.threads` threads.
///
/// Each thread starts from its own random stamp and counts up (§5.4). Returns `None` if
/// cancelled. Difficulty 0 returns the first random stamp at once, like octez.
pub fn generate(public_key: &PublicKey, target: &PowTarget, options: &GenerateOptions<'_>) -> Option<Stamp> {
    let attempts = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let found: Mutex<Option<Stamp>> = Mutex::new(None);
    let threads = options.threads.max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut stamp = Stamp::random();
                loop {
                    for _ in 0..BATCH {
                        if check_proof_of_work(public_key, &stamp, target) {
                            if let Ok(mut slot) = found.lock() {
                                slot.get_or_insert(stamp);
                            }
                            done.store(true, Ordering::Relaxed);
                            return;
                        }
                        increment_be(&mut stamp.0);
                    }
                    attempts.fetch_add(BATCH, Ordering::Relaxed);
                    if done.load(Ordering::Relaxed) || options.cancel.load(Ordering::Relaxed) {
                        return;
                    }
                }
            });
        }
        // The calling thread reports progress and relays cancellation until a worker is done.
        while !done.load(Ordering::Relaxed) && !options.cancel.load(Ordering::Relaxed) {
            std::thread::park_timeout(options.progress_interval);
            (options.progress)(attempts.load(Ordering::Relaxed));
        }
        done.store(true, Ordering::Relaxed);
    });
    found.into_inner().ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn invalid_difficulties_are_refused() {
        for f in [-1.0, 256.5, f64::NAN, f64::INFINITY] {
            assert!(PowTarget::new(f).is_err(), "{f}");
        }
    }

    #[test]
    fn integer_targets_are_all_ones_below_the_level() {
        for level in [0u32, 1, 8, 24, 26, 100, 202, 255, 256] {
            let t = PowTarget::new(f64::from(level)).unwrap().to_be_bytes();
            // Count leading zero bits of the big-endian target: must equal the level.
            let zeros: u32 = {
                let mut z = 0;
                for b in t {
                    if b == 0 {
                        z += 8;
                    } else {
                        z += b.leading_zeros();
                        break;
                    }
                }
                z
            };
            assert_eq!(zeros, level);
            let ones: u32 = t.iter().map(|b| b.count_ones()).sum();
            assert_eq!(ones, 256 - level);
        }
    }

    #[test]
    fn generated_stamps_meet_their_target() {
        let pk = SecretKey::generate().public_key();
        let target = PowTarget::new(10.0).unwrap();
        let cancel = AtomicBool::new(false);
        let opts = GenerateOptions {
            threads: 2,
            cancel: &cancel,
            progress: &|_| {},
            progress_interval: Duration::from_millis(5),
        };
        let stamp = generate(&pk, &target, &opts).unwrap();
        assert!(check_proof_of_work(&pk, &stamp, &target));
        assert!(pow_level(&pk, &stamp) >= 10);
    }

    #[test]
    fn cancelled_search_returns_none() {
        let pk = SecretKey::generate().public_key();
        let target = PowTarget::new(200.0).unwrap();
        let cancel = AtomicBool::new(true);
        let opts = GenerateOptions {
            threads: 1,
            cancel: &cancel,
            progress: &|_| {},
            progress_interval: Duration::from_millis(1),
        };
        assert_eq!(generate(&pk, &target, &opts), None);
    }
}
