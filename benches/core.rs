//! Criterion micro-benchmarks of the protocol core: seal/open of one chunk, the handshake state
//! machine, and the message codec. `cargo bench` (CI compiles them with `cargo bench --no-run`).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tezos_p2p::crypto::{ChannelKey, CryptoBackend, Nonce, Opener, Sealer, SecretKey};
use tezos_p2p::handshake::{Handshake, LocalConfig, Status};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::{Encoding, MessageDecoder, RawMessage};
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{seal_chunks, ChunkDecoder, ChunkSize, ConnectionMetadata, NetworkVersion, MAX_CONTENT_LENGTH};

fn chunk(c: &mut Criterion) {
    let nonce = Nonce::from_bytes([2; 24]);
    let mut g = c.benchmark_group("chunk");
    // Every backend compiled in (`--features sodium` adds libsodium beside the pure-Rust one).
    for &backend in CryptoBackend::ALL {
        let key = ChannelKey::from_bytes_with(backend, [1; 32]);
        for len in [1024usize, MAX_CONTENT_LENGTH] {
            let mut buf = vec![0u8; 16 + len];
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_function(format!("{backend} seal {len}"), |b| {
                b.iter(|| key.seal_in_place(&nonce, black_box(&mut buf)))
            });
            g.bench_function(format!("{backend} seal+open {len}"), |b| {
                b.iter(|| {
                    let _ = key.seal_in_place(&nonce, &mut buf);
                    key.open_in_place(&nonce, black_box(&mut buf))
                })
            });
        }
        g.bench_function(format!("{backend} precompute"), |b| {
            let (sk, pk) = (SecretKey::generate(), SecretKey::generate().public_key());
            b.iter(|| ChannelKey::precompute_with(backend, black_box(&pk), &sk))
        });
    }
    g.finish();
}

fn local() -> Arc<LocalConfig<ConnectionMetadata>> {
    Arc::new(LocalConfig {
        identity: Arc::new(Identity::ephemeral()),
        advertised_port: Some(9732),
        version: NetworkVersion::current("TEZOS_MAINNET"),
        metadata: ConnectionMetadata::default(),
        expected_pow: PowTarget::new(0.0).unwrap(),
        crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
    })
}

fn deliver(from: &mut Handshake<ConnectionMetadata>, to: &mut Handshake<ConnectionMetadata>) {
    let bytes = from.take_output();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        rest = &rest[to.read(rest).unwrap()..];
        match to.status() {
            Status::PeerAnnounced(_) => to.derive_keys().unwrap(),
            Status::Authenticated(_) => to.accept().unwrap(),
            _ => {}
        }
    }
}

fn handshake(c: &mut Criterion) {
    let (a_cfg, b_cfg) = (local(), local());
    c.bench_function("handshake, both roles, in memory", |b| {
        b.iter(|| {
            let mut a = Handshake::new(a_cfg.clone(), false, Nonce::random(), None).unwrap();
            let mut x = Handshake::new(b_cfg.clone(), true, Nonce::random(), None).unwrap();
            for _ in 0..3 {
                deliver(&mut a, &mut x);
                deliver(&mut x, &mut a);
            }
            assert!(matches!(a.status(), Status::Established(_)));
        })
    });
}

fn codec(c: &mut Criterion) {
    let key = ChannelKey::from_bytes([3; 32]);
    let mut g = c.benchmark_group("codec");
    for len in [1024usize, 64 * 1024] {
        let msg = RawMessage(Bytes::from(vec![5u8; len]));
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("encode+chunk+seal+open+decode {len}"), |b| {
            b.iter(|| {
                let mut enc = Vec::with_capacity(len + 4);
                msg.encode(&mut enc).unwrap();
                let mut sealer = Sealer::new(key.clone(), Nonce::from_bytes([0; 24]));
                let mut wire = BytesMut::new();
                seal_chunks(&mut sealer, &enc, ChunkSize::default(), &mut wire);
                let mut chunks = ChunkDecoder::new(Opener::new(key.clone(), Nonce::from_bytes([0; 24])));
                let mut msgs = MessageDecoder::<RawMessage>::new(1 << 20);
                let mut out = None;
                while let Some(p) = chunks.decode(&mut wire).unwrap() {
                    msgs.push(p);
                    if let Some(m) = msgs.next_message().unwrap() {
                        out = Some(m);
                    }
                }
                black_box(out.unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, chunk, handshake, codec);
criterion_main!(benches);
