//! Fixed-size hash newtypes with octez's Base58Check prefixes (`src/lib_crypto/base58.ml`).

use std::fmt;
use std::str::FromStr;

/// Why a Base58Check hash did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashParseError {
    /// Not Base58, or the 4-byte checksum does not match.
    #[error("{kind}: invalid Base58Check: {reason}")]
    Base58 {
        /// The hash type.
        kind: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The prefix or the length is not this type's (e.g. an operation hash given as a block hash).
    #[error("{kind}: {input:?} is not a {kind} (expected a {size}-byte hash starting with {start:?})")]
    WrongType {
        /// The hash type.
        kind: &'static str,
        /// The text given.
        input: String,
        /// Bytes of hash expected.
        size: usize,
        /// How this type's Base58 forms start.
        start: &'static str,
    },
}

fn b58_encode(prefix: &[u8], payload: &[u8]) -> String {
    let mut buf = Vec::with_capacity(prefix.len() + payload.len());
    buf.extend_from_slice(prefix);
    buf.extend_from_slice(payload);
    bs58::encode(buf).with_check().into_string()
}

fn b58_decode<const N: usize>(
    kind: &'static str,
    prefix: &[u8],
    start: &'static str,
    s: &str,
) -> Result<[u8; N], HashParseError> {
    // A hash's text is at most ~55 characters: refuse long input before decoding it.
    if s.len() > 128 {
        return Err(HashParseError::WrongType {
            kind,
            input: format!("{}…", s.chars().take(32).collect::<String>()),
            size: N,
            start,
        });
    }
    let raw = bs58::decode(s)
        .with_check(None)
        .into_vec()
        .map_err(|e| HashParseError::Base58 { kind, reason: e.to_string() })?;
    let wrong = || HashParseError::WrongType { kind, input: s.to_owned(), size: N, start };
    let body = raw.strip_prefix(prefix).ok_or_else(wrong)?;
    body.try_into().map_err(|_| wrong())
}

macro_rules! hash_type {
    ($(#[$doc:meta])* $name:ident, $size:expr, $prefix:expr, $start:literal, $octez:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $size]);

        impl $name {
            /// Size of the hash in bytes.
            pub const SIZE: usize = $size;
            /// The Base58Check version prefix octez gives this type.
            pub const PREFIX: &'static [u8] = $prefix;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $size]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $size] {
                &self.0
            }

            /// The Base58Check form (what octez prints).
            pub fn to_b58check(&self) -> String {
                b58_encode(Self::PREFIX, &self.0)
            }

            /// Parses the Base58Check form, checking checksum, prefix and length.
            pub fn from_b58check(s: &str) -> Result<Self, HashParseError> {
                b58_decode::<$size>($octez, Self::PREFIX, $start, s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_b58check())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_b58check())
            }
        }

        impl FromStr for $name {
            type Err = HashParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_b58check(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_b58check())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_b58check(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

hash_type!(
    /// A chain id (octez `Chain_id`): 4 bytes, `Net…` (mainnet: `NetXdQprcVkpaWU`).
    ChainId, 4, &[87, 82, 0], "Net", "chain id"
);
hash_type!(
    /// A block hash (octez `Block_hash`): BLAKE2b-256 of the encoded header, `B…`.
    BlockHash, 32, &[1, 52], "B", "block hash"
);
hash_type!(
    /// An operation hash (octez `Operation_hash`): BLAKE2b-256 of the encoded operation, `o…`.
    OperationHash, 32, &[5, 116], "o", "operation hash"
);
hash_type!(
    /// A Merkle root over a block's operation lists (octez `Operation_list_list_hash`), `LLo…`.
    OperationListListHash, 32, &[29, 159, 109], "LLo", "operation list list hash"
);
hash_type!(
    /// A context hash (octez `Context_hash`), `Co…`.
    ContextHash, 32, &[79, 199], "Co", "context hash"
);
hash_type!(
    /// A protocol hash (octez `Protocol_hash`): BLAKE2b-256 of the encoded protocol, `P…`.
    ProtocolHash, 32, &[2, 170], "P", "protocol hash"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_forms_round_trip() {
        let mainnet = ChainId::from_bytes([0x7a, 0x06, 0xa7, 0x70]);
        assert_eq!(mainnet.to_string(), "NetXdQprcVkpaWU");
        assert_eq!("NetXdQprcVkpaWU".parse::<ChainId>().unwrap(), mainnet);
        let b = "BKtKWtqPoR4RauWDA17sCu8akbcGuGzn2CshpAemQDHUPRxiE7P".parse::<BlockHash>().unwrap();
        assert_eq!(hex::encode(b.as_bytes()), "16caa5bebae6c1997498bd90b2d2d6dcb14e2cc3a83b38067c784a0b485a4763");
        assert_eq!(b.to_string(), "BKtKWtqPoR4RauWDA17sCu8akbcGuGzn2CshpAemQDHUPRxiE7P");
    }

    #[test]
    fn a_hash_of_another_type_or_a_bad_checksum_is_refused() {
        let op = "op94YRm1eaKKdYTXHmw2wA1mQAJgQQCK1GYq6UQYDvfVJ8DttzW";
        assert!(op.parse::<OperationHash>().is_ok());
        assert!(matches!(op.parse::<BlockHash>(), Err(HashParseError::WrongType { .. })));
        let mut bad = op.to_owned();
        bad.replace_range(10..11, if &op[10..11] == "a" { "b" } else { "a" });
        assert!(matches!(bad.parse::<OperationHash>(), Err(HashParseError::Base58 { .. })));
        assert!("x".repeat(10_000).parse::<OperationHash>().is_err());
    }
}
