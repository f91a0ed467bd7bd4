//! Property tests: decode(encode(x)) == x for every wire type, and every decoder returns an
//! error (never panics) on arbitrary bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tezos_p2p::crypto::{ChannelKey, Nonce, Opener, PeerId, PublicKey, Sealer};
use tezos_p2p::message::{Encoding, OpaqueMessage, P2pMessage, RawMessage};
use tezos_p2p::pow::Stamp;
use tezos_p2p::wire::{
    seal_chunks, AckMessage, ChainName, ChunkDecoder, ChunkSize, ConnectionMessage, ConnectionMetadata, Metadata,
    NackMotive, NetworkVersion,
};

fn point() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_filter("mapped v4 addresses print as v4", |(ip, _)| Ipv6Addr::from(*ip).to_ipv4_mapped().is_none())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn connection_message() -> impl Strategy<Value = ConnectionMessage> {
    (
        proptest::option::of(1u16..),
        any::<[u8; 32]>(),
        any::<[u8; 24]>(),
        any::<[u8; 24]>(),
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(port, pk, stamp, nonce, name, ddb, p2p)| ConnectionMessage {
            port,
            public_key: PublicKey::from_bytes(pk),
            proof_of_work_stamp: Stamp::from_bytes(stamp),
            message_nonce: Nonce::from_bytes(nonce),
            version: NetworkVersion { chain_name: ChainName::new(name), distributed_db_version: ddb, p2p_version: p2p },
        })
}

fn ack() -> impl Strategy<Value = AckMessage> {
    prop_oneof![
        Just(AckMessage::Ack),
        Just(AckMessage::NackV0),
        (any::<i16>(), proptest::collection::vec(point(), 0..=100)).prop_map(|(code, alternative_points)| {
            AckMessage::Nack { motive: NackMotive::from_code(code), alternative_points }
        }),
    ]
}

fn p2p_message() -> impl Strategy<Value = P2pMessage> {
    prop_oneof![
        Just(P2pMessage::Disconnect),
        Just(P2pMessage::Bootstrap),
        proptest::collection::vec(point(), 0..=100).prop_map(P2pMessage::Advertise),
        (point(), any::<[u8; 16]>())
            .prop_map(|(point, id)| P2pMessage::SwapRequest { point, peer_id: PeerId::from_bytes(id) }),
        (point(), any::<[u8; 16]>())
            .prop_map(|(point, id)| P2pMessage::SwapAck { point, peer_id: PeerId::from_bytes(id) }),
        (
            prop::sample::select(vec![
                0x10u16, 0x11, 0x12, 0x13, 0x14, 0x20, 0x21, 0x30, 0x31, 0x40, 0x41, 0x60, 0x61, 0x70, 0x71, 0x80,
                0x81, 0x90, 0x91
            ]),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(tag, body)| P2pMessage::Message(OpaqueMessage { tag, body: Bytes::from(body) })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn connection_message_round_trips(m in connection_message()) {
        let bytes = m.encode().unwrap();
        prop_assert_eq!(ConnectionMessage::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn metadata_round_trips(disable_mempool in any::<bool>(), private_node in any::<bool>()) {
        let m = ConnectionMetadata { disable_mempool, private_node };
        let mut out = Vec::new();
        m.encode(&mut out);
        prop_assert_eq!(ConnectionMetadata::decode(&out).unwrap(), m);
    }

    #[test]
    fn any_non_zero_metadata_byte_reads_true(a in any::<u8>(), b in any::<u8>()) {
        let m = ConnectionMetadata::decode(&[a, b]).unwrap();
        prop_assert_eq!((m.disable_mempool, m.private_node), (a != 0, b != 0));
    }

    #[test]
    fn ack_round_trips(m in ack()) {
        let bytes = m.encode().unwrap();
        prop_assert_eq!(AckMessage::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn p2p_message_round_trips(m in p2p_message()) {
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        prop_assert_eq!(<P2pMessage>::frame_size(&out).unwrap(), Some(out.len()));
        prop_assert_eq!(<P2pMessage>::decode(out.clone().into()).unwrap(), m);
    }

    #[test]
    fn raw_message_round_trips(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let m = RawMessage(Bytes::from(body));
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        prop_assert_eq!(RawMessage::decode(out.clone().into()).unwrap(), m);
    }

    #[test]
    fn chunks_round_trip_for_any_size_and_split(
        len in prop_oneof![0usize..200, 65_500usize..65_540, 131_000usize..131_100],
        size in prop_oneof![Just(65_535usize), 19usize..400],
        split in 1usize..70_000,
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let key = ChannelKey::from_bytes([3; 32]);
        let n = Nonce::from_bytes([0xff; 24]); // wraps during the test
        let mut sealer = Sealer::new(key.clone(), n);
        let mut wire = BytesMut::new();
        let chunks = seal_chunks(&mut sealer, &payload, ChunkSize::new(size).unwrap(), &mut wire);
        prop_assert_eq!(chunks, len.div_ceil(size - 18).max(1));
        let mut d = ChunkDecoder::new(Opener::new(key, n));
        let mut got = Vec::new();
        let mut src = BytesMut::new();
        for piece in wire.chunks(split) {
            src.extend_from_slice(piece);
            while let Some(p) = d.decode(&mut src).unwrap() {
                got.extend_from_slice(&p);
            }
        }
        prop_assert_eq!(got, payload);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        tezos_p2p::fuzzing::connection_message(&data);
        tezos_p2p::fuzzing::metadata(&data);
        tezos_p2p::fuzzing::ack(&data);
        tezos_p2p::fuzzing::messages(&data);
        tezos_p2p::fuzzing::chunk_stream(&data);
    }

    #[test]
    fn prefixed_arbitrary_bytes_reach_deeper_decoder_paths(tag in 0u8..=255, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        // A valid-looking header makes the decoders look at the body too.
        let mut ack = vec![tag];
        ack.extend_from_slice(&body);
        tezos_p2p::fuzzing::ack(&ack);
        let mut msg = (body.len() as u32 + 2).to_be_bytes().to_vec();
        msg.extend_from_slice(&[0, tag % 8]);
        msg.extend_from_slice(&body);
        tezos_p2p::fuzzing::messages(&msg);
        let mut cm = (body.len() as u16).to_be_bytes().to_vec();
        cm.extend_from_slice(&body);
        tezos_p2p::fuzzing::connection_message(&cm);
    }
}

#[test]
fn unknown_p2p_message_tags_are_refused_both_ways() {
    for tag in [0u16, 6, 0x15, 0x50, 0xffff] {
        let bytes = [0, 0, 0, 2, (tag >> 8) as u8, tag as u8];
        assert!(<P2pMessage>::decode(bytes.to_vec().into()).is_err(), "{tag:#x}");
        let m: P2pMessage = P2pMessage::Message(OpaqueMessage { tag, body: Bytes::new() });
        assert!(m.encode(&mut Vec::new()).is_err(), "{tag:#x}");
    }
}

#[test]
fn a_nack_with_101_points_does_not_decode() {
    let mut body = Vec::new();
    for _ in 0..101 {
        let t = b"1.2.3.4:5";
        body.extend_from_slice(&(t.len() as u32).to_be_bytes());
        body.extend_from_slice(t);
    }
    let mut bytes = vec![0x01, 0x00, 0x01];
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    assert!(AckMessage::decode(&bytes).is_err());
    // 100 is fine.
    let hundred = 100 * (4 + 9);
    let mut ok = vec![0x01, 0x00, 0x01];
    ok.extend_from_slice(&(hundred as u32).to_be_bytes());
    ok.extend_from_slice(&body[..hundred]);
    assert!(
        matches!(AckMessage::decode(&ok), Ok(AckMessage::Nack { alternative_points, .. }) if alternative_points.len() == 100)
    );
}

proptest! {
    /// Every compiled backend computes the same channel key (or the same refusal) for any 32-byte
    /// peer key, the same public key for any secret, and the same ciphertext and tag for any key,
    /// nonce and plaintext; a flipped bit is refused by all of them. (Without `sodium` there is one
    /// backend and this checks it against itself; CI runs both builds.)
    #[test]
    fn backends_agree(
        secret in any::<[u8; 32]>(),
        peer in any::<[u8; 32]>(),
        nonce in any::<[u8; 24]>(),
        plain in proptest::collection::vec(any::<u8>(), 0..3000),
        flip in any::<usize>(),
    ) {
        use tezos_p2p::crypto::{CryptoBackend, SecretKey};
        let sk = SecretKey::from_bytes(secret);
        let nonce = Nonce::from_bytes(nonce);
        let first = CryptoBackend::ALL[0];
        let reference = ChannelKey::precompute_with(first, &PublicKey::from_bytes(peer), &sk).map(|k| *k.expose_secret());
        let key = ChannelKey::from_bytes_with(first, [1; 32]);
        let mut sealed = vec![0u8; 16];
        sealed.extend_from_slice(&plain);
        key.seal_in_place(&nonce, &mut sealed).unwrap();
        let mut tampered = sealed.clone();
        let i = flip % tampered.len();
        tampered[i] ^= 1 << (flip % 8);
        for &backend in CryptoBackend::ALL {
            prop_assert_eq!(sk.public_key_with(backend), sk.public_key_with(first));
            let got = ChannelKey::precompute_with(backend, &PublicKey::from_bytes(peer), &sk).map(|k| *k.expose_secret());
            prop_assert_eq!(&got, &reference);
            let key = ChannelKey::from_bytes_with(backend, [1; 32]);
            let mut mine = vec![0u8; 16];
            mine.extend_from_slice(&plain);
            key.seal_in_place(&nonce, &mut mine).unwrap();
            prop_assert_eq!(&mine, &sealed);
            let mut opened = sealed.clone();
            key.open_in_place(&nonce, &mut opened).unwrap();
            prop_assert_eq!(&opened[16..], &plain[..]);
            let mut bad = tampered.clone();
            prop_assert!(key.open_in_place(&nonce, &mut bad).is_err());
            prop_assert_eq!(&bad, &tampered, "a refused chunk is left as it was");
        }
    }
}
