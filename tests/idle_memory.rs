//! Heap held by idle authenticated connections: no per-connection 64 KiB buffers survive a burst.
//! Measured with a counting global allocator, so the figure is exact, not timing-dependent.
// A global allocator cannot be written without `unsafe`; the library itself forbids it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tezos_p2p::actor::{self, ConnectionConfig};
use tezos_p2p::handshake::LocalConfig;
use tezos_p2p::identity::Identity;
use tezos_p2p::message::RawMessage;
use tezos_p2p::pow::PowTarget;
use tezos_p2p::wire::{ConnectionMetadata, NetworkVersion};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Documented bound on the heap of one idle authenticated connection (one end), in bytes.
const IDLE_HEAP_BOUND: isize = 16 * 1024;

#[actix::test]
async fn an_idle_connection_holds_no_burst_buffers() {
    let local = |id: Identity| {
        Arc::new(LocalConfig {
            identity: Arc::new(id),
            advertised_port: None,
            version: NetworkVersion::current("TEZOS_MAINNET"),
            metadata: ConnectionMetadata::default(),
            expected_pow: PowTarget::new(0.0).unwrap(),
            crypto_backend: tezos_p2p::crypto::CryptoBackend::default(),
        })
    };
    let (la, lb) = (local(Identity::ephemeral()), local(Identity::ephemeral()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    const PAIRS: usize = 100;
    let mut conns = Vec::new();
    // Warm up lazily-initialised globals (runtime, allocator arenas) with one pair first.
    for round in 0..2 {
        let before = LIVE.load(Ordering::SeqCst);
        let n = if round == 0 { 1 } else { PAIRS };
        let mut batch = Vec::new();
        for _ in 0..n {
            let server = async {
                let (s, _) = listener.accept().await.unwrap();
                actor::authenticate(s, lb.clone(), true, Duration::from_secs(10)).await.unwrap()
            };
            let (a, b) = tokio::join!(actor::connect(addr, la.clone(), Duration::from_secs(10)), server);
            let (a, b) = tokio::join!(
                a.unwrap().accept::<RawMessage>(ConnectionConfig::default()),
                b.accept::<RawMessage>(ConnectionConfig::default())
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            // A burst of full chunks both ways, then idle.
            let big = RawMessage(Bytes::from(vec![1u8; 200_000]));
            a.write(&big).await.unwrap();
            b.write(&big).await.unwrap();
            assert_eq!(b.read().await.unwrap().1, big);
            assert_eq!(a.read().await.unwrap().1, big);
            batch.push((a, b));
        }
        // Let the writers observe their empty queues and the readers their drained buffers.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        let per_conn = (LIVE.load(Ordering::SeqCst) - before) / (2 * n as isize);
        if round == 1 {
            println!("heap per idle authenticated connection: {per_conn} bytes ({PAIRS} pairs)");
            assert!(per_conn <= IDLE_HEAP_BOUND, "{per_conn} bytes per idle connection");
        }
        conns.extend(batch);
    }
    drop(conns);
}
