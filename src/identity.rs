//! octez identities: `identity.json` read/write and validation (protocol.md §5.5).
//!
//! Files are written atomically (a temporary file in the same directory, then a rename) with
//! mode 0600, so a crash or Ctrl-C never leaves a partial identity behind.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::crypto::{PeerId, PublicKey, SecretKey};
use crate::pow::{self, PowTarget, Stamp};

/// Errors of the identity layer; each names the check that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The file cannot be read or written.
    #[error("unreadable identity file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Refusing to replace an existing file (use `--force`).
    #[error("{path} already exists (use --force to overwrite it)")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// Not a JSON object of the expected shape.
    #[error("bad JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is not valid hex of the right length, or not a peer id.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// JSON field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `peer_id` is not the hash of `public_key` (octez `Identity_mismatch`).
    #[error("peer id mismatch: the file says {file} but the public key hashes to {computed}")]
    IdentityMismatch {
        /// The peer id written in the file.
        file: PeerId,
        /// BLAKE2b-128 of the public key.
        computed: PeerId,
    },
    /// `public_key` is not `X25519(secret_key, 9)` (octez `Identity_keys_mismatch`).
    #[error("key mismatch: the secret key does not belong to public key {public_key}")]
    IdentityKeysMismatch {
        /// The public key written in the file.
        public_key: PublicKey,
    },
    /// The stamp does not meet the expected difficulty (octez `Insufficient_proof_of_work`).
    #[error("proof of work below the expected level: expected {expected}, the stamp reaches {reached}")]
    InsufficientProofOfWork {
        /// Required difficulty.
        expected: f64,
        /// Leading zero bits the stamp achieves.
        reached: u32,
    },
}

/// A node identity: X25519 key pair, proof-of-work stamp and the derived peer id.
#[derive(Clone)]
pub struct Identity {
    /// BLAKE2b-128 of the public key.
    pub peer_id: PeerId,
    /// X25519 public key.
    pub public_key: PublicKey,
    /// X25519 secret key (zeroized on drop).
    pub secret_key: SecretKey,
    /// Proof-of-work stamp for `public_key`.
    pub proof_of_work_stamp: Stamp,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .field("public_key", &self.public_key)
            .field("secret_key", &self.secret_key)
            .field("proof_of_work_stamp", &self.proof_of_work_stamp)
            .finish()
    }
}

/// The JSON shape octez writes; `peer_id` is optional on read (recomputed when absent).
#[derive(Deserialize)]
struct IdentityJson {
    peer_id: Option<String>,
    public_key: String,
    secret_key: Zeroizing<String>,
    proof_of_work_stamp: String,
}

fn hex_field<const N: usize>(field: &'static str, text: &str) -> Result<[u8; N], IdentityError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| IdentityError::InvalidField {
        field,
        reason: format!("expected {} hex characters: {e}", 2 * N),
    })?;
    Ok(out)
}

impl Identity {
    /// Builds an identity from a secret key and a stamp.
    pub fn from_secret_key(secret_key: SecretKey, proof_of_work_stamp: Stamp) -> Self {
        let public_key = secret_key.public_key();
        Self { peer_id: public_key.peer_id(), public_key, secret_key, proof_of_work_stamp }
    }

    /// A throw-away identity at difficulty 0 (a random stamp), for tests and ephemeral peers.
    pub fn ephemeral() -> Self {
        Self::from_secret_key(SecretKey::generate(), Stamp::random())
    }

    /// Generates a key pair and searches a stamp meeting `target`. `None` if cancelled.
    pub fn generate(target: &PowTarget, options: &pow::GenerateOptions<'_>) -> Option<Self> {
        let secret_key = SecretKey::generate();
        let stamp = pow::generate(&secret_key.public_key(), target, options)?;
        Some(Self::from_secret_key(secret_key, stamp))
    }

    /// The highest integer difficulty the stamp meets (leading zero bits of the hash).
    pub fn pow_level(&self) -> u32 {
        pow::pow_level(&self.public_key, &self.proof_of_work_stamp)
    }

    /// Checks the stamp against `target` (octez `Insufficient_proof_of_work`).
    pub fn check_pow(&self, target: &PowTarget) -> Result<(), IdentityError> {
        if pow::check_proof_of_work(&self.public_key, &self.proof_of_work_stamp, target) {
            Ok(())
        } else {
            Err(IdentityError::InsufficientProofOfWork { expected: target.difficulty(), reached: self.pow_level() })
        }
    }

    /// Parses and validates `identity.json` text, in octez's order: peer id matches the key,
    /// then the key pair matches. The PoW level is checked separately ([`Identity::check_pow`]).
    pub fn from_json(text: &str) -> Result<Self, IdentityError> {
        let raw: IdentityJson = serde_json::from_str(text)?;
        let public_key = PublicKey::from_bytes(hex_field("public_key", &raw.public_key)?);
        let secret = Zeroizing::new(hex_field::<32>("secret_key", &raw.secret_key)?);
        let secret_key = SecretKey::from_bytes(*secret);
        let proof_of_work_stamp = Stamp::from_bytes(hex_field("proof_of_work_stamp", &raw.proof_of_work_stamp)?);
        let computed = public_key.peer_id();
        if let Some(text) = raw.peer_id {
            let file: PeerId =
                text.parse().map_err(|e| IdentityError::InvalidField { field: "peer_id", reason: format!("{e}") })?;
            if file != computed {
                return Err(IdentityError::IdentityMismatch { file, computed });
            }
        }
        if secret_key.public_key() != public_key {
            return Err(IdentityError::IdentityKeysMismatch { public_key });
        }
        Ok(Self { peer_id: computed, public_key, secret_key, proof_of_work_stamp })
    }

    /// The octez JSON text (fields in octez's order, lowercase hex). Contains the secret key:
    /// the returned buffer is wiped on drop.
    pub fn to_json(&self) -> Zeroizing<String> {
        use std::fmt::Write as _;
        // Sized up front so the buffer holding the secret never reallocates (a reallocation
        // would leave an unwiped copy behind).
        let mut out = Zeroizing::new(String::with_capacity(512));
        let secret = Zeroizing::new(hex::encode(self.secret_key.expose_secret()));
        let _ = write!(
            out,
            "{{\n  \"peer_id\": \"{}\",\n  \"public_key\": \"{}\",\n  \"secret_key\": \"{}\",\n  \"proof_of_work_stamp\": \"{}\"\n}}\n",
            self.peer_id,
            self.public_key.to_hex(),
            secret.as_str(),
            hex::encode(self.proof_of_work_stamp.as_bytes()),
        );
        out
    }

    /// Reads and validates an identity file (without a PoW requirement).
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = Zeroizing::new(
            fs::read_to_string(path).map_err(|source| IdentityError::Io { path: path.to_owned(), source })?,
        );
        Self::from_json(&text)
    }

    /// Writes the identity atomically with mode 0600. Without `overwrite`, an existing file is
    /// left alone and [`IdentityError::AlreadyExists`] returned.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io { path: path.to_owned(), source };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // tempfile creates the file with mode 0600 on Unix.
        let mut tmp = tempfile::Builder::new().prefix(".identity").suffix(".tmp").tempfile_in(dir).map_err(io)?;
        tmp.write_all(self.to_json().as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        if overwrite {
            tmp.persist(path).map_err(|e| io(e.error))?;
        } else {
            // `persist_noclobber` is an atomic link-then-unlink: no window where a racing
            // writer's file could be replaced.
            tmp.persist_noclobber(path).map_err(|e| {
                if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                    IdentityError::AlreadyExists { path: path.to_owned() }
                } else {
                    io(e.error)
                }
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn save_load_round_trip_with_mode_0600_and_no_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.json");
        let id = Identity::ephemeral();
        id.save(&path, false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Identity::load(&path).unwrap();
        assert_eq!(back.peer_id, id.peer_id);
        assert_eq!(back.secret_key.expose_secret(), id.secret_key.expose_secret());
        assert!(matches!(Identity::ephemeral().save(&path, false), Err(IdentityError::AlreadyExists { .. })));
        // Nothing but the identity is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        Identity::ephemeral().save(&path, true).unwrap();
        assert_ne!(Identity::load(&path).unwrap().peer_id, id.peer_id);
    }

    #[test]
    fn each_tampering_is_named() {
        let id = Identity::ephemeral();
        let json = id.to_json();
        let other = Identity::ephemeral();
        let swap_pid = json.replace(&id.peer_id.to_string(), &other.peer_id.to_string());
        assert!(matches!(Identity::from_json(&swap_pid), Err(IdentityError::IdentityMismatch { .. })));
        let swap_sk =
            json.replace(&hex::encode(id.secret_key.expose_secret()), &hex::encode(other.secret_key.expose_secret()));
        assert!(matches!(Identity::from_json(&swap_sk), Err(IdentityError::IdentityKeysMismatch { .. })));
        assert!(matches!(Identity::from_json("{"), Err(IdentityError::Json(_))));
        let short = json.replace(&id.public_key.to_hex(), "abcd");
        assert!(matches!(Identity::from_json(&short), Err(IdentityError::InvalidField { field: "public_key", .. })));
    }
}
