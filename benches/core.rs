//! Criterion micro-benchmarks of the protocol core: seal/open of one chunk, the handshake state
//! machine, and the message codec. `cargo bench` (CI compiles them with `cargo bench --no-run`).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tezos_p2p::benchkit;
use tezos_p2p::crypto::{ChannelKey, CryptoBackend, Nonce, Opener, Sealer, SecretKey};
use tezos_p2p::message::{Encoding, MessageDecoder, RawMessage};
use tezos_p2p::wire::{seal_chunks, ChunkDecoder, ChunkSize, MAX_CONTENT_LENGTH};

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

fn handshake(c: &mut Criterion) {
    let (a_cfg, b_cfg) = (benchkit::local(), benchkit::local());
    c.bench_function("handshake, both roles, in memory", |b| {
        b.iter(|| benchkit::establish(a_cfg.clone(), b_cfg.clone()).expect("handshake completes"))
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
