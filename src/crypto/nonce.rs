//! The 24-byte nonce, its increment and its derivation from the two connection messages
//! (protocol.md §3).

use std::fmt;

use rand::RngCore;

use super::blake2b_256;

/// Size in bytes of a crypto_box nonce.
pub const NONCE_SIZE: usize = 24;

/// Adds one to a big-endian unsigned integer in place, wrapping to zero on overflow.
///
/// Used for nonces (§3.2) and for proof-of-work stamps (§5.4), which share the rule.
pub fn increment_be(bytes: &mut [u8]) {
    for b in bytes.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            return;
        }
    }
}

/// A crypto_box nonce: a 192-bit big-endian counter.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce([u8; NONCE_SIZE]);

impl Nonce {
    /// Wraps 24 raw bytes.
    pub const fn from_bytes(bytes: [u8; NONCE_SIZE]) -> Self {
        Self(bytes)
    }

    /// A fresh random nonce (the `message_nonce` of a connection message).
    pub fn random() -> Self {
        let mut b = [0u8; NONCE_SIZE];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self(b)
    }

    /// The raw 24 bytes.
    pub const fn as_bytes(&self) -> &[u8; NONCE_SIZE] {
        &self.0
    }

    /// This nonce plus one, modulo 2^192.
    #[must_use]
    pub fn incremented(mut self) -> Self {
        increment_be(&mut self.0);
        self
    }

    /// Returns the current value and advances the counter (the value a chunk uses).
    pub fn take_and_increment(&mut self) -> Self {
        let current = *self;
        increment_be(&mut self.0);
        current
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", hex::encode(self.0))
    }
}

/// The pair of initial nonces of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nonces {
    /// Nonce of the first chunk we send (our metadata chunk).
    pub local: Nonce,
    /// Nonce of the first chunk we receive (the peer's metadata chunk).
    pub remote: Nonce,
}

/// Label hashed for the nonce of bytes flowing from the initiator to the responder.
const INIT_TO_RESP: &[u8] = b"Init -> Resp";
/// Label hashed for the nonce of bytes flowing from the responder to the initiator.
const RESP_TO_INIT: &[u8] = b"Resp -> Init";

/// octez `Crypto_box.generate_nonces`: derives both initial nonces from the raw connection
/// messages, **length prefixes included** (§3.1).
///
/// The initiator is the side that opened the TCP connection (`incoming == false`). Bytes flowing
/// initiator → responder use `BLAKE2b-256(init ‖ resp ‖ "Init -> Resp")[..24]`; the other
/// direction uses the `"Resp -> Init"` label. So the incoming side's *local* nonce carries the
/// `Init -> Resp` label and the outgoing side's local nonce the `Resp -> Init` label.
pub fn generate_nonces(incoming: bool, sent_msg: &[u8], recv_msg: &[u8]) -> Nonces {
    let (init, resp) = if incoming { (recv_msg, sent_msg) } else { (sent_msg, recv_msg) };
    let derive = |label: &[u8]| {
        let h = blake2b_256(&[init, resp, label]);
        let mut n = [0u8; NONCE_SIZE];
        n.copy_from_slice(&h[..NONCE_SIZE]);
        Nonce(n)
    };
    let init_to_resp = derive(INIT_TO_RESP);
    let resp_to_init = derive(RESP_TO_INIT);
    if incoming {
        Nonces { local: init_to_resp, remote: resp_to_init }
    } else {
        Nonces { local: resp_to_init, remote: init_to_resp }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_carries_across_bytes_and_wraps() {
        let mut n = [0u8; 24];
        n[22] = 0;
        n[23] = 0xff;
        let n = Nonce(n).incremented();
        assert_eq!(&n.0[22..], &[1, 0]);
        assert_eq!(Nonce([0xff; 24]).incremented(), Nonce([0; 24]));
    }

    #[test]
    fn both_roles_agree_on_each_direction() {
        let a = b"\x00\x03abc";
        let b = b"\x00\x02de";
        let out = generate_nonces(false, a, b);
        let inc = generate_nonces(true, b, a);
        assert_eq!(out.local, inc.remote);
        assert_eq!(out.remote, inc.local);
        assert_ne!(out.local, out.remote);
    }
}
