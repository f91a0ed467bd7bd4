//! The handshake state machine, two parties in memory (quinn-proto `Pair` style), and
//! properties over arbitrary and tampered peer bytes.

use std::net::SocketAddr;
use std::sync::Arc;

use proptest::prelude::*;
use tezos_p2p::crypto::Nonce;
use tezos_p2p::handshake::{AuthError, Handshake, LocalConfig, Status};
use tezos_p2p::identity::Identity;
use tezos_p2p::pow::{PowTarget, Stamp};
use tezos_p2p::wire::{ConnectionMetadata, NackMotive, NetworkVersion};

fn config(identity: &Identity, pow: f64, p2p_version: u16) -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(identity.clone()),
        advertised_port: Some(9732),
        version: NetworkVersion { p2p_version, ..NetworkVersion::current("TEZOS_MAINNET") },
        metadata: ConnectionMetadata { disable_mempool: false, private_node: p2p_version == 0 },
        expected_pow: PowTarget::new(pow).unwrap(),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    })
}

/// What each side does once authenticated.
#[derive(Clone)]
enum Decision {
    Accept,
    Nack(NackMotive, Vec<SocketAddr>),
}

/// Delivers everything `from` has to send to `to`, taking `to`'s steps on the way.
fn deliver(
    from: &mut Handshake<ConnectionMetadata>,
    to: &mut Handshake<ConnectionMetadata>,
    res: &mut Result<(), AuthError>,
    decision: &Decision,
    to_closed: &mut bool,
) {
    let bytes = from.take_output();
    let mut rest = &bytes[..];
    while !rest.is_empty() && res.is_ok() {
        match to.read(rest) {
            Ok(0) => break,
            Ok(n) => rest = &rest[n..],
            Err(e) => *res = Err(e),
        }
        if res.is_ok() {
            let step = match to.status() {
                Status::PeerAnnounced(_) => to.derive_keys(),
                Status::Authenticated(_) => match decision {
                    Decision::Accept => to.accept(),
                    Decision::Nack(m, p) => {
                        *to_closed = true;
                        to.nack(*m, p.clone())
                    }
                },
                _ => Ok(()),
            };
            if let Err(e) = step {
                *res = Err(e);
            }
        }
    }
}

type Outcome = Result<Handshake<ConnectionMetadata>, AuthError>;

/// Runs both machines against each other until neither makes progress; returns each side's
/// error, or its machine.
fn run(
    mut a: Handshake<ConnectionMetadata>,
    mut b: Handshake<ConnectionMetadata>,
    da: Decision,
    db: Decision,
) -> (Outcome, Outcome) {
    let (mut ra, mut rb) = (Ok(()), Ok(()));
    let (mut a_closed, mut b_closed) = (false, false);
    for _ in 0..10 {
        deliver(&mut a, &mut b, &mut rb, &db, &mut b_closed);
        deliver(&mut b, &mut a, &mut ra, &da, &mut a_closed);
    }
    // A side that nacked (or failed) closes its socket: the other sees EOF if still waiting.
    if (b_closed || rb.is_err()) && ra.is_ok() && matches!(a.status(), Status::NeedInput) {
        ra = Err(a.eof());
    }
    if (a_closed || ra.is_err()) && rb.is_ok() && matches!(b.status(), Status::NeedInput) {
        rb = Err(b.eof());
    }
    (ra.map(|()| a), rb.map(|()| b))
}

fn start(id: &Identity, pow: f64, p2p: u16, incoming: bool) -> Handshake<ConnectionMetadata> {
    let addr: SocketAddr = if incoming { "127.0.0.1:50000" } else { "127.0.0.1:9732" }.parse().unwrap();
    Handshake::new(config(id, pow, p2p), incoming, Nonce::random(), Some(addr)).unwrap()
}

#[test]
fn both_roles_establish_a_session_that_carries_chunks() {
    let (x, y) = (Identity::ephemeral(), Identity::ephemeral());
    let (a, b) = run(start(&x, 0.0, 1, false), start(&y, 0.0, 1, true), Decision::Accept, Decision::Accept);
    let (mut sa, mut sb) = (a.unwrap().into_session().unwrap(), b.unwrap().into_session().unwrap());
    assert_eq!(sa.info.peer_id, y.peer_id);
    assert_eq!(sb.info.peer_id, x.peer_id);
    assert!(!sa.info.incoming && sb.info.incoming);
    // Outgoing side: the point is the dialled one; incoming side: the announced port.
    assert_eq!(sa.info.id_point.unwrap().port, Some(9732));
    assert_eq!(sb.info.id_point.unwrap().port, Some(9732));
    assert_eq!(sb.info.remote_socket_port, Some(50000));
    for (s, o) in [(&mut sa.sealer, &mut sb.opener), (&mut sb.sealer, &mut sa.opener)] {
        let mut c = *b"................payload";
        s.seal_in_place(&mut c).unwrap();
        o.open_in_place(&mut c).unwrap();
        assert_eq!(&c[16..], b"payload");
    }
}

#[test]
fn insufficient_pow_fails_on_the_checking_side_only() {
    let (x, y) = (Identity::ephemeral(), Identity::ephemeral());
    // b expects 30 bits; x has (almost surely) fewer.
    let (a, b) = run(start(&x, 0.0, 1, false), start(&y, 30.0, 1, true), Decision::Accept, Decision::Accept);
    assert!(matches!(b.err(), Some(AuthError::NotEnoughProofOfWork { peer_id, .. }) if peer_id == x.peer_id));
    // a sent its metadata and waited for b's, which never came: b closed.
    assert_eq!(a.err(), Some(AuthError::ConnectionClosed));
}

#[test]
fn connecting_to_ourselves_is_myself_after_the_metadata_exchange() {
    let x = Identity::ephemeral();
    let (a, b) = run(start(&x, 0.0, 1, false), start(&x, 0.0, 1, true), Decision::Accept, Decision::Accept);
    assert!(matches!(a.err(), Some(AuthError::Myself { .. })));
    assert!(matches!(b.err(), Some(AuthError::Myself { .. })));
}

#[test]
fn a_replayed_public_key_fails_with_decipher_error_not_myself() {
    // octez tezt "self peer id": the peer announces our public key with its own stamp; it cannot
    // seal metadata under that key, so we see DecipherError.
    let victim = Identity::ephemeral();
    let attacker = Identity { secret_key: Identity::ephemeral().secret_key, ..victim.clone() };
    let (_, b) = run(start(&attacker, 0.0, 1, false), start(&victim, 0.0, 1, true), Decision::Accept, Decision::Accept);
    assert_eq!(b.err(), Some(AuthError::DecipherError));
}

#[test]
fn nack_with_100_points_reaches_the_peer() {
    let (x, y) = (Identity::ephemeral(), Identity::ephemeral());
    let points: Vec<SocketAddr> =
        (0..100).map(|i| format!("10.0.{}.{}:9732", i / 250, i % 250).parse().unwrap()).collect();
    let (a, b) = run(
        start(&x, 0.0, 1, false),
        start(&y, 0.0, 1, true),
        Decision::Accept,
        Decision::Nack(NackMotive::TooManyConnections, points.clone()),
    );
    assert_eq!(
        a.err(),
        Some(AuthError::RejectedByNack { motive: NackMotive::TooManyConnections, alternative_points: Some(points) })
    );
    assert!(b.is_ok());
}

#[test]
fn a_p2p_version_0_peer_gets_nack_v0() {
    let (x, y) = (Identity::ephemeral(), Identity::ephemeral());
    let (a, _) = run(
        start(&x, 0.0, 0, false),
        start(&y, 0.0, 1, true),
        Decision::Accept,
        Decision::Nack(NackMotive::AlreadyConnected, vec!["1.2.3.4:5".parse().unwrap()]),
    );
    assert_eq!(a.err(), Some(AuthError::RejectedByNack { motive: NackMotive::NoMotive, alternative_points: None }));
}

#[test]
fn a_peer_that_closes_instead_of_acking_is_rejected_socket_connection() {
    let (x, y) = (Identity::ephemeral(), Identity::ephemeral());
    let (mut a, mut b) = (start(&x, 0.0, 1, false), start(&y, 0.0, 1, true));
    // Exchange up to authentication by hand, then b vanishes.
    let a0 = a.take_output();
    b.read(&a0).unwrap();
    b.derive_keys().unwrap();
    let b0 = b.take_output();
    let n = a.read(&b0).unwrap();
    a.derive_keys().unwrap();
    a.read(&b0[n..]).unwrap();
    assert!(matches!(a.status(), Status::Authenticated(_)));
    a.accept().unwrap();
    assert_eq!(a.eof(), AuthError::RejectedSocketConnection);
}

#[test]
fn over_100_points_cannot_be_sent() {
    let (x, y) = (Identity::ephemeral(), Identity::ephemeral());
    let points: Vec<SocketAddr> = (0..101).map(|i| format!("10.0.0.{}:1", i % 250).parse().unwrap()).collect();
    let (_, b) = run(
        start(&x, 0.0, 1, false),
        start(&y, 0.0, 1, true),
        Decision::Accept,
        Decision::Nack(NackMotive::NoMotive, points),
    );
    assert!(matches!(b.err(), Some(AuthError::Encoding(_))));
}

#[test]
fn bytes_after_the_peer_ack_are_left_to_the_caller() {
    let (x, y) = (Identity::ephemeral(), Identity::ephemeral());
    let (mut a, mut b) = (start(&x, 0.0, 1, false), start(&y, 0.0, 1, true));
    let a0 = a.take_output();
    b.read(&a0).unwrap();
    b.derive_keys().unwrap();
    let mut b_out = b.take_output();
    let mut used = a.read(&b_out).unwrap();
    a.derive_keys().unwrap();
    used += a.read(&b_out[used..]).unwrap();
    assert_eq!(used, b_out.len());
    a.accept().unwrap();
    let a1 = a.take_output();
    let mut rest = &a1[..];
    while !rest.is_empty() {
        rest = &rest[b.read(rest).unwrap()..];
        if let Status::Authenticated(_) = b.status() {
            b.accept().unwrap();
        }
    }
    b_out = b.take_output();
    b_out.extend_from_slice(b"first message bytes");
    let n = a.read(&b_out).unwrap();
    assert_eq!(&b_out[n..], b"first message bytes");
    assert!(matches!(a.status(), Status::Established(_)));
}

/// The full transcript one honest peer (the incoming side) sends to `us` (outgoing).
fn honest_transcript() -> (Handshake<ConnectionMetadata>, Vec<u8>) {
    let (x, y) = (Identity::ephemeral(), Identity::ephemeral());
    let (mut a, mut b) = (start(&x, 0.0, 1, false), start(&y, 0.0, 1, true));
    let mut transcript = Vec::new();
    let a0 = a.take_output();
    b.read(&a0).unwrap();
    b.derive_keys().unwrap();
    // Record b's metadata step, then feed a clone of `a` (fresh) later: we need a's state to
    // depend on the transcript, so we return a new `a` built on the same nonce instead.
    transcript.extend(b.take_output());
    let mut a2 = a;
    let mut rest = &transcript[..];
    while !rest.is_empty() {
        rest = &rest[a2.read(rest).unwrap()..];
        match a2.status() {
            Status::PeerAnnounced(_) => a2.derive_keys().unwrap(),
            Status::Authenticated(_) => a2.accept().unwrap(),
            _ => {}
        }
    }
    let a_out = a2.take_output();
    let mut rest = &a_out[..];
    while !rest.is_empty() {
        rest = &rest[b.read(rest).unwrap()..];
        if let Status::Authenticated(_) = b.status() {
            b.accept().unwrap();
        }
    }
    transcript.extend(b.take_output());
    // Rebuild our side with the same identity and nonce, ready to replay the transcript.
    let fresh = Handshake::new(config(&x, 0.0, 1), false, Nonce::from_bytes(*nonce_of(&a0)), None).unwrap();
    (fresh, transcript)
}

fn nonce_of(conn_msg: &[u8]) -> &[u8; 24] {
    conn_msg[2 + 2 + 32 + 24..2 + 2 + 32 + 24 + 24].try_into().unwrap()
}

/// Feeds `bytes` to `hs`, taking every step; returns the final outcome.
fn feed(mut hs: Handshake<ConnectionMetadata>, bytes: &[u8], split: usize) -> Result<bool, AuthError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let piece = &rest[..rest.len().min(split.max(1))];
        let n = hs.read(piece)?;
        if n == 0 {
            break;
        }
        rest = &rest[n..];
        match hs.status() {
            Status::PeerAnnounced(_) => hs.derive_keys()?,
            Status::Authenticated(_) => hs.accept()?,
            _ => {}
        }
    }
    Ok(matches!(hs.status(), Status::Established(_)))
}

#[test]
fn the_honest_transcript_establishes_at_every_split() {
    let (hs, t) = honest_transcript();
    let _ = hs;
    for split in [1, 2, 3, 7, 50, 105, 1000] {
        let (fresh, t2) = honest_transcript();
        assert_eq!(feed(fresh, &t2, split), Ok(true), "split {split}");
    }
    assert!(!t.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_peer_bytes_never_panic_in_either_role(data in proptest::collection::vec(any::<u8>(), 0..600), incoming in any::<bool>()) {
        tezos_p2p::fuzzing::handshake(&data, incoming);
    }

    #[test]
    fn any_single_byte_change_in_the_peer_transcript_prevents_the_session(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (hs, mut t) = honest_transcript();
        let i = pos.index(t.len());
        t[i] ^= flip;
        // Either an error, or still waiting for bytes that never come: never Established.
        prop_assert_ne!(feed(hs, &t, 64), Ok(true));
    }
}

#[test]
fn a_stamp_exactly_at_the_level_passes() {
    // Sanity of the PoW direction in the handshake: an identity whose level is L passes L.
    let mut id = Identity::ephemeral();
    let level = id.pow_level();
    id.proof_of_work_stamp = Stamp::from_bytes(*id.proof_of_work_stamp.as_bytes());
    let y = Identity::ephemeral();
    let (_, b) =
        run(start(&id, 0.0, 1, false), start(&y, f64::from(level), 1, true), Decision::Accept, Decision::Accept);
    assert!(b.is_ok());
}
