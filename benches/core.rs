//! Criterion micro-benchmarks of the protocol core: seal/open of one chunk, the handshake state
//! machine, the message codec, typed octez messages, and the writer's and reader's paths.
//! `cargo bench` (CI compiles them with `cargo bench --no-run`).
#![allow(missing_docs)] // criterion_group! generates undocumented items

#[path = "../src/bin/cli/benchkit.rs"]
mod benchkit;

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tezos_p2p::crypto::{ChannelKey, CryptoBackend, Nonce, Opener, Sealer, SecretKey};
use tezos_p2p::message::{Encoding, MessageDecoder, RawMessage};
use tezos_p2p::wire::{seal_chunks, ChunkDecoder, ChunkSize, MAX_CONTENT_LENGTH};

fn chunk(c: &mut Criterion) {
    let nonce = Nonce::from_bytes([2; 24]);
    let mut g = c.benchmark_group("chunk");
    // Every backend compiled in (`--features sodium` adds libsodium beside the pure-Rust one).
    for &backend in CryptoBackend::ALL {
        let key = ChannelKey::from_bytes_with(backend, [1; 32]);
        for len in [100usize, 1024, MAX_CONTENT_LENGTH] {
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

/// Decoding typed octez messages, each beside a plain copy of the same bytes (the ceiling a
/// zero-copy decoder approaches: it reads every length and hash, but copies no payload).
fn db(c: &mut Criterion) {
    use tezos_p2p::message::db::{DbMessage, OctezMessage, OperationsForBlock};
    use tezos_p2p::message::P2pMessage;
    use tezos_p2p::shell::{
        BlockHash, BlockHeader, ContextHash, Fitness, Mempool, Operation, OperationHash, OperationHashesPath,
        OperationListListHash, PathStep, Timestamp,
    };
    let header = BlockHeader {
        level: 5_000_000,
        proto: 20,
        predecessor: BlockHash::from_bytes([1; 32]),
        timestamp: Timestamp(1_700_000_000),
        validation_pass: 4,
        operations_hash: OperationListListHash::from_bytes([2; 32]),
        fitness: Fitness(vec![Bytes::from_static(&[2]), Bytes::from(vec![0; 4]), Bytes::from(vec![0; 4])]),
        context: ContextHash::from_bytes([3; 32]),
        protocol_data: Bytes::from(vec![7; 200]),
    };
    let hashes = |n: usize| (0..n).map(|i| OperationHash::from_bytes([(i % 251) as u8; 32])).collect::<Vec<_>>();
    let messages: Vec<(&str, OctezMessage)> = vec![
        (
            "Current_head, 3999-hash mempool",
            P2pMessage::Message(DbMessage::CurrentHead {
                chain_id: "NetXdQprcVkpaWU".parse().unwrap(),
                current_block_header: header,
                current_mempool: Mempool { known_valid: hashes(3000), pending: hashes(999) },
            }),
        ),
        (
            "Operations_for_blocks, 200 operations (1 MiB)",
            P2pMessage::Message(DbMessage::OperationsForBlocks {
                operations_for_block: OperationsForBlock { hash: BlockHash::from_bytes([4; 32]), validation_pass: 3 },
                operation_hashes_path: OperationHashesPath(vec![
                    PathStep::Right { left: OperationListListHash::from_bytes([5; 32]) },
                    PathStep::Left { right: OperationListListHash::from_bytes([6; 32]) },
                ]),
                operations: (0..200)
                    .map(|i| Operation {
                        branch: BlockHash::from_bytes([i as u8; 32]),
                        data: Bytes::from(vec![8; 5100]),
                    })
                    .collect(),
            }),
        ),
    ];
    let mut g = c.benchmark_group("db");
    for (name, m) in messages {
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        let frame = Bytes::from(out);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(format!("decode {name}"), |b| {
            b.iter(|| OctezMessage::decode(black_box(frame.clone())).unwrap())
        });
        g.bench_function(format!("copy {name}"), |b| b.iter(|| Bytes::copy_from_slice(black_box(&frame[..]))));
    }
    g.finish();
}

/// The two paths the scale figures show hot: the writer sealing many small queued messages into
/// one coalesced buffer (a relay's heads and operations), and the reader taking them apart
/// again from one read (chunk open + message reassembly). Per message, against the seal+open
/// of the same bytes as the ceiling (`chunk` group).
fn paths(c: &mut Criterion) {
    const COUNT: usize = 512;
    let key = ChannelKey::from_bytes([3; 32]);
    let mut g = c.benchmark_group("paths");
    for len in [100usize, 1024] {
        let encoded: Vec<Vec<u8>> = (0..COUNT)
            .map(|i| {
                let mut enc = Vec::with_capacity(len + 4);
                RawMessage(Bytes::from(vec![i as u8; len])).encode(&mut enc).unwrap();
                enc
            })
            .collect();
        g.throughput(Throughput::Elements(COUNT as u64));
        g.bench_function(format!("writer: coalesce {COUNT} x {len} B"), |b| {
            let mut out = BytesMut::with_capacity(COUNT * (len + 64));
            b.iter(|| {
                let mut sealer = Sealer::new(key.clone(), Nonce::from_bytes([0; 24]));
                out.clear();
                for m in &encoded {
                    seal_chunks(&mut sealer, m, ChunkSize::default(), &mut out);
                }
                black_box(out.len())
            })
        });
        let mut wire = BytesMut::new();
        let mut sealer = Sealer::new(key.clone(), Nonce::from_bytes([0; 24]));
        for m in &encoded {
            seal_chunks(&mut sealer, m, ChunkSize::default(), &mut wire);
        }
        g.bench_function(format!("reader: reassemble {COUNT} x {len} B from one buffer"), |b| {
            b.iter(|| {
                let mut buf = wire.clone();
                let mut chunks = ChunkDecoder::new(Opener::new(key.clone(), Nonce::from_bytes([0; 24])));
                let mut msgs = MessageDecoder::<RawMessage>::new(1 << 20);
                let mut n = 0;
                while let Some(p) = chunks.decode(&mut buf).unwrap() {
                    msgs.push(p);
                    while let Some(m) = msgs.next_message().unwrap() {
                        black_box(m);
                        n += 1;
                    }
                }
                assert_eq!(n, COUNT);
            })
        });
    }
    // One large message over many chunks: the reassembly's gathering copy.
    let len = 1 << 20;
    let mut enc = Vec::with_capacity(len + 4);
    RawMessage(Bytes::from(vec![9u8; len])).encode(&mut enc).unwrap();
    let mut wire = BytesMut::new();
    seal_chunks(&mut Sealer::new(key.clone(), Nonce::from_bytes([0; 24])), &enc, ChunkSize::default(), &mut wire);
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("reader: reassemble one 1 MiB message", |b| {
        b.iter(|| {
            let mut buf = wire.clone();
            let mut chunks = ChunkDecoder::new(Opener::new(key.clone(), Nonce::from_bytes([0; 24])));
            let mut msgs = MessageDecoder::<RawMessage>::new(2 << 20);
            let mut out = None;
            while let Some(p) = chunks.decode(&mut buf).unwrap() {
                msgs.push(p);
                if let Some(m) = msgs.next_message().unwrap() {
                    out = Some(m);
                }
            }
            black_box(out.unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, chunk, handshake, codec, db, paths);
criterion_main!(benches);
