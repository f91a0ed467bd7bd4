//! Property tests for the typed octez messages: `decode(encode(x)) == x` (and through the
//! codec's JSON) for every shell type and every message, and arbitrary bytes never panic the
//! decoders nor make them allocate beyond what the input holds (a counting allocator watches).

// The counting allocator forwards to the system allocator: the only unsafe code, test-only.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use proptest::prelude::*;
use tezos_p2p::crypto::PeerId;
use tezos_p2p::message::db::{self, DbMessage, OctezMessage, OperationsForBlock};
use tezos_p2p::message::{Encoding, P2pMessage};
use tezos_p2p::shell::{
    BlockHash, BlockHeader, BlockLocator, ChainId, ContextHash, Fitness, Mempool, Operation, OperationHash,
    OperationHashesPath, OperationListListHash, PathStep, Protocol, ProtocolComponent, ProtocolHash, Timestamp,
};
use tezos_p2p::wire::Cursor;

/// Tracks the largest single allocation made by this thread while it watches (per thread:
/// other tests allocate concurrently).
struct Counting;

thread_local! {
    static WATCH: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator may run while the thread's locals are being torn down.
    let _ = WATCH.try_with(|w| {
        if w.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The largest allocation made while decoding `frame` (the frame itself is allocated before).
fn largest_allocation_decoding(frame: &Bytes) -> usize {
    LARGEST.with(|l| l.set(0));
    WATCH.with(|w| w.set(true));
    let r = OctezMessage::decode(frame.clone());
    WATCH.with(|w| w.set(false));
    drop(r);
    LARGEST.with(|l| l.get())
}

fn h32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        (any::<i32>(), any::<u8>(), h32(), any::<i64>(), any::<u8>()),
        (h32(), proptest::collection::vec(bytes(12), 0..4), h32(), bytes(200)),
    )
        .prop_map(|((level, proto, pred, ts, vp), (ops, fitness, ctx, data))| BlockHeader {
            level,
            proto,
            predecessor: BlockHash::from_bytes(pred),
            timestamp: Timestamp(ts),
            validation_pass: vp,
            operations_hash: OperationListListHash::from_bytes(ops),
            fitness: Fitness(fitness),
            context: ContextHash::from_bytes(ctx),
            protocol_data: data,
        })
}

fn operation() -> impl Strategy<Value = Operation> {
    (h32(), bytes(300)).prop_map(|(b, data)| Operation { branch: BlockHash::from_bytes(b), data })
}

fn hashes<T: std::fmt::Debug>(max: usize, f: fn([u8; 32]) -> T) -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(h32().prop_map(f), 0..=max)
}

fn mempool() -> impl Strategy<Value = Mempool> {
    (hashes(30, OperationHash::from_bytes), hashes(30, OperationHash::from_bytes))
        .prop_map(|(known_valid, pending)| Mempool { known_valid, pending })
}

fn locator() -> impl Strategy<Value = BlockLocator> {
    (header(), hashes(40, BlockHash::from_bytes))
        .prop_map(|(current_head, history)| BlockLocator { current_head, history })
}

fn path() -> impl Strategy<Value = OperationHashesPath> {
    let step = (any::<bool>(), h32()).prop_map(|(left, h)| {
        let h = OperationListListHash::from_bytes(h);
        if left {
            PathStep::Left { right: h }
        } else {
            PathStep::Right { left: h }
        }
    });
    proptest::collection::vec(step, 0..=3).prop_map(OperationHashesPath)
}

fn protocol() -> impl Strategy<Value = Protocol> {
    let comp = (bytes(20), proptest::option::of(bytes(50)), bytes(100))
        .prop_map(|(name, interface, implementation)| ProtocolComponent { name, interface, implementation });
    (0u16..=17, proptest::collection::vec(comp, 0..4))
        .prop_map(|(expected_env_version, components)| Protocol { expected_env_version, components })
}

fn chain() -> impl Strategy<Value = ChainId> {
    any::<[u8; 4]>().prop_map(ChainId::from_bytes)
}

fn ofb() -> impl Strategy<Value = OperationsForBlock> {
    (h32(), any::<i8>()).prop_map(|(h, vp)| OperationsForBlock { hash: BlockHash::from_bytes(h), validation_pass: vp })
}

fn db_message() -> impl Strategy<Value = DbMessage> {
    prop_oneof![
        chain().prop_map(|chain_id| DbMessage::GetCurrentBranch { chain_id }),
        (chain(), locator())
            .prop_map(|(chain_id, current_branch)| DbMessage::CurrentBranch { chain_id, current_branch }),
        chain().prop_map(|chain_id| DbMessage::Deactivate { chain_id }),
        chain().prop_map(|chain_id| DbMessage::GetCurrentHead { chain_id }),
        (chain(), header(), mempool()).prop_map(|(chain_id, current_block_header, current_mempool)| {
            DbMessage::CurrentHead { chain_id, current_block_header, current_mempool }
        }),
        hashes(10, BlockHash::from_bytes)
            .prop_map(|get_block_headers| DbMessage::GetBlockHeaders { get_block_headers }),
        header().prop_map(|block_header| DbMessage::BlockHeader { block_header }),
        hashes(10, OperationHash::from_bytes).prop_map(|get_operations| DbMessage::GetOperations { get_operations }),
        operation().prop_map(|operation| DbMessage::Operation { operation }),
        hashes(10, ProtocolHash::from_bytes).prop_map(|get_protocols| DbMessage::GetProtocols { get_protocols }),
        protocol().prop_map(|protocol| DbMessage::Protocol { protocol }),
        proptest::collection::vec(ofb(), 0..=10)
            .prop_map(|get_operations_for_blocks| DbMessage::GetOperationsForBlocks { get_operations_for_blocks }),
        (ofb(), path(), proptest::collection::vec(operation(), 0..5)).prop_map(
            |(operations_for_block, operation_hashes_path, operations)| DbMessage::OperationsForBlocks {
                operations_for_block,
                operation_hashes_path,
                operations
            }
        ),
        chain().prop_map(|chain_id| DbMessage::GetCheckpoint { chain_id }),
        (chain(), header()).prop_map(|(chain_id, header)| DbMessage::Checkpoint { chain_id, header }),
        (chain(), any::<u8>()).prop_map(|(chain, proto_level)| DbMessage::GetProtocolBranch { chain, proto_level }),
        (chain(), any::<u8>(), locator()).prop_map(|(chain, proto_level, locator)| DbMessage::ProtocolBranch {
            chain,
            proto_level,
            locator
        }),
        (h32(), any::<i32>())
            .prop_map(|(b, offset)| DbMessage::GetPredecessorHeader { block: BlockHash::from_bytes(b), offset }),
        (h32(), any::<i32>(), header()).prop_map(|(b, offset, header)| DbMessage::PredecessorHeader {
            block: BlockHash::from_bytes(b),
            offset,
            header
        }),
    ]
}

fn octez_message() -> impl Strategy<Value = OctezMessage> {
    let point = (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port));
    prop_oneof![
        Just(P2pMessage::Disconnect),
        Just(P2pMessage::Bootstrap),
        proptest::collection::vec(point.clone(), 0..=100).prop_map(P2pMessage::Advertise),
        (point.clone(), any::<[u8; 16]>())
            .prop_map(|(point, id)| P2pMessage::SwapRequest { point, peer_id: PeerId::from_bytes(id) }),
        (point, any::<[u8; 16]>())
            .prop_map(|(point, id)| P2pMessage::SwapAck { point, peer_id: PeerId::from_bytes(id) }),
        db_message().prop_map(P2pMessage::Message),
    ]
}

/// Encodes with `encode`, decodes the whole buffer with `decode`.
fn round_trip<T: PartialEq + std::fmt::Debug>(
    x: &T,
    encode: impl Fn(&T, &mut Vec<u8>) -> Result<(), tezos_p2p::wire::EncodeError>,
    decode: impl Fn(&mut Cursor<'_>) -> Result<T, tezos_p2p::wire::DecodeError>,
) -> Result<(), TestCaseError> {
    let mut out = Vec::new();
    encode(x, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let frame = Bytes::from(out);
    let mut c = Cursor::new(&frame);
    let back = decode(&mut c).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(c.remaining(), 0);
    prop_assert_eq!(&back, x);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn shell_types_round_trip(h in header(), o in operation(), m in mempool(), l in locator(), p in path(), pr in protocol()) {
        round_trip(&h, BlockHeader::encode, BlockHeader::decode)?;
        round_trip(&o, Operation::encode, Operation::decode)?;
        round_trip(&m, Mempool::encode, Mempool::decode)?;
        round_trip(&l, BlockLocator::encode, BlockLocator::decode)?;
        round_trip(&p, OperationHashesPath::encode, OperationHashesPath::decode)?;
        round_trip(&pr, Protocol::encode, Protocol::decode)?;
    }

    #[test]
    fn every_message_round_trips_through_bytes_and_json(m in octez_message()) {
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        prop_assert_eq!(OctezMessage::frame_size(&out).unwrap(), Some(out.len()));
        prop_assert_eq!(&OctezMessage::decode(Bytes::from(out.clone())).unwrap(), &m);
        let j = db::to_json(&m);
        prop_assert_eq!(&db::from_json(&j).unwrap(), &m);
        // The codec's JSON, as text, reads back too (hashes, hex, RFC 3339 dates).
        let text = serde_json::to_string(&j).unwrap();
        prop_assert_eq!(db::from_json(&serde_json::from_str(&text).unwrap()).unwrap(), m);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_allocate_beyond_the_input(tag in 0u16..0x100, body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut f = ((body.len() + 2) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&tag.to_be_bytes());
        f.extend_from_slice(&body);
        let frame = Bytes::from(f);
        let largest = largest_allocation_decoding(&frame);
        // Vectors grow by doubling from what was decoded: at most about twice the input (in
        // elements of at most 32 + 8 bytes per 32 input bytes), plus error messages.
        prop_assert!(largest <= 4 * frame.len() + 1024, "{} bytes allocated for a {}-byte frame", largest, frame.len());
    }

    #[test]
    fn mutated_valid_messages_never_panic(m in octez_message(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        let i = at.index(out.len());
        out[i] = byte;
        let frame = Bytes::from(out);
        let largest = largest_allocation_decoding(&frame);
        prop_assert!(largest <= 4 * frame.len() + 1024, "{} bytes allocated for a {}-byte frame", largest, frame.len());
    }
}

#[test]
fn claimed_sizes_never_drive_allocation() {
    // Every tag, with bodies claiming 4 GiB lists, headers, operations and strings (some of
    // these bodies are valid — an operation's data is any bytes — most are not: either way the
    // claims allocate nothing).
    for tag in [0x03u16, 0x11, 0x14, 0x20, 0x21, 0x30, 0x31, 0x40, 0x41, 0x60, 0x61, 0x71, 0x81, 0x91] {
        for claim in [[0xff; 4], [0x7f, 0xff, 0xff, 0xff], [0, 0x10, 0, 0]] {
            let mut body = vec![0u8; 4];
            for _ in 0..8 {
                body.extend_from_slice(&claim);
            }
            let mut f = ((body.len() + 2) as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&tag.to_be_bytes());
            f.extend_from_slice(&body);
            let frame = Bytes::from(f);
            let largest = largest_allocation_decoding(&frame);
            assert!(largest <= 1024, "tag {tag:#x}: {largest} bytes allocated");
        }
    }
}
