//! # tezos-p2p
//!
//! Typed, authenticated and encrypted connections speaking the Tezos (octez) peer-to-peer
//! session protocol (`P2p_socket`) byte for byte.
//!
//! The protocol core is IO-free (no sockets, no clock), tested against known answers from octez,
//! tezedge and real captures; [`actor`] and [`handshake::authenticate`] are the IO shell: each
//! connection is an actix actor with a reader and a writer child actor and bounded queues.
//!
//! ```
//! use std::sync::Arc;
//! use tezos_p2p::crypto::{CryptoBackend, Nonce};
//! use tezos_p2p::handshake::{Handshake, LocalConfig, Status};
//! use tezos_p2p::identity::Identity;
//! use tezos_p2p::pow::PowTarget;
//! use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};
//!
//! let config = |identity: &Identity| Arc::new(LocalConfig {
//!     identity: Arc::new(identity.clone()),
//!     advertised_port: Some(9732),
//!     version: NetworkVersion::current("TEZOS_MAINNET"),
//!     metadata: ConnectionMetadata::default(),
//!     expected_pow: PowTarget::new(0.0).unwrap(),
//!     crypto_backend: CryptoBackend::default(),
//! });
//! /// Hands everything `from` wants to send to `to`, taking `to`'s decisions on the way.
//! fn deliver(from: &mut Handshake<ConnectionMetadata>, to: &mut Handshake<ConnectionMetadata>) {
//!     let bytes = from.take_output();
//!     let mut rest = &bytes[..];
//!     while !rest.is_empty() {
//!         rest = &rest[to.read(rest).unwrap()..];
//!         match to.status() {
//!             // PoW held; an ACL could refuse this peer id here, before any X25519 work.
//!             Status::PeerAnnounced(_) => to.derive_keys().unwrap(),
//!             // octez `authenticate` returned: accept (or `nack`).
//!             Status::Authenticated(_) => to.accept().unwrap(),
//!             _ => {}
//!         }
//!     }
//! }
//!
//! let (alice, bob) = (Identity::ephemeral(), Identity::ephemeral());
//! let mut a = Handshake::new(config(&alice), false, Nonce::random(), None).unwrap();
//! let mut b = Handshake::new(config(&bob), true, Nonce::random(), None).unwrap();
//! // Each side writes, then reads, at every step.
//! while !matches!((a.status(), b.status()), (Status::Established(_), Status::Established(_))) {
//!     deliver(&mut a, &mut b);
//!     deliver(&mut b, &mut a);
//! }
//! let (mut sa, mut sb) = (a.into_session().unwrap(), b.into_session().unwrap());
//! assert_eq!((sa.info.peer_id, sb.info.peer_id), (bob.peer_id, alice.peer_id));
//!
//! // A chunk sealed by one side opens on the other.
//! let mut chunk = [0u8; 16 + 5];
//! chunk[16..].copy_from_slice(b"hello");
//! sa.sealer.seal_in_place(&mut chunk).unwrap();
//! sb.opener.open_in_place(&mut chunk).unwrap();
//! assert_eq!(&chunk[16..], b"hello");
//! ```
//!
//! # Layout
//! - [`crypto`]: keys, peer ids, nonces, the channel key and per-chunk seal/open (§§3–5.1).
//! - [`pow`]: the proof-of-work target, check and stamp search (§5.2–5.4).
//! - [`identity`]: octez `identity.json` (§5.5).
//! - [`wire`]: connection message, metadata, Ack/Nack, chunks (§§2, 4, 6, 7).
//! - [`handshake`]: the session handshake as a sans-IO state machine (§§1, 8).
//! - [`message`]: typed message encodings carried over a session (§9): the octez P2P envelope,
//!   and [`message::db`], octez's distributed_db messages, typed.
//! - [`shell`]: octez shell types (hashes, block headers, operations, mempools) and their bounds.
//! - [`codec`]: every wire type by name, binary ↔ JSON (`tezos-p2p codec`).
//! - [`stat`]: octez `P2p_stat` and its moving average (§11.4).
//! - [`bandwidth`], [`peers`], [`maintenance`], [`overlay`]: the pure policies under the
//!   scheduler, the registry and the overlay (fair-share quotas; points, peers and greylists;
//!   octez's maintenance; the P2P-layer message rules); [`peers_file`]: what a node keeps across
//!   restarts.
//! - [`actor`]: connections as actix actors, `authenticate` / `accept` / `nack` over TCP, and
//!   `Node`: a connection manager in octez's sense, with its `/network` admin API.
//!
//! Section numbers refer to the protocol specification the project is written against.

#![deny(missing_docs)]
// No unsafe code in the default build; with `sodium`, the libsodium backend
// (`crypto::backend::sodium`) is the one module that opts out, with a SAFETY comment on every
// block (enforced by clippy there).
#![cfg_attr(not(feature = "sodium"), forbid(unsafe_code))]
#![cfg_attr(feature = "sodium", deny(unsafe_code))]
#![doc(test(attr(deny(warnings))))]

pub mod actor;
pub mod admission;
pub mod bandwidth;
pub mod codec;
pub mod crypto;
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod identity;
pub mod maintenance;
pub mod message;
pub mod overlay;
pub mod peers;
pub mod peers_file;
pub mod pow;
pub mod shell;
pub mod stat;
pub mod telemetry;
pub mod wire;
