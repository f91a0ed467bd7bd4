//! The reader and writer child actors and the loops they run (protocol.md §9).
//!
//! Each actor owns one socket half and one direction's crypto state, and runs one loop in its
//! context; when the loop ends it tells the connection actor why and stops. The hot path is a
//! plain loop, with no actor message per chunk or per message.

use std::io::ErrorKind;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use bytes::{Buf as _, BufMut as _, BytesMut};
// `catch_unwind` on the loops: a panic in one (a bug, or the application's code on the
// connection's path) ends that connection, not the arbiter thread and its other connections.
use futures_util::FutureExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};

use super::connection::{
    ChildStopped, ConnectionActor, ControlSink, Inbound, ReadItem, Shared, Subscribers, WriteCmd, QUEUE_OVERHEAD,
};
use super::overlay::ControlIn;
use super::scheduler::MIN_UNIT;
use super::{CloseReason, Meter};
use crate::crypto::Sealer;
use crate::message::Control;
use crate::message::{Encoding, MessageDecoder};
use crate::overlay::Throttle;
use crate::telemetry;
use crate::wire::{seal_chunks, ChunkDecoder, ChunkError, Metadata};

/// Most queued messages the writer takes per round; together with [`COALESCE_BYTES`] this is
/// what turns many small messages into few socket writes.
const BATCH_MESSAGES: usize = 256;
/// Sealed bytes gathered before a socket write (a few chunks: large enough to amortise the
/// system call, small enough to stay in cache).
const COALESCE_BYTES: usize = BYTES_PER_SLICE;
/// Socket reads per wake-up before yielding to the other actors on this arbiter, so that a
/// peer flooding at line rate cannot monopolise the thread.
const READS_PER_WAKEUP: usize = 8;
/// Bytes a reader takes from its socket per wake-up, and a writer seals between two yields: about
/// 100 µs of crypto each, so a connection streaming at full speed delays the others on its
/// arbiter (a small message's round trip) by that much at most. Measured: with 512 KiB slices a
/// 100-byte round trip beside a saturated connection took 22 ms at p50, at 128 KiB 0.32 ms, at
/// 64 KiB 0.18 ms; 100 connections' aggregate rate was the same at 64 and 128 KiB within this
/// machine's noise (yielding to no one is nearly free).
const BYTES_PER_SLICE: usize = 64 * 1024;

fn io_reason(e: &std::io::Error) -> CloseReason {
    match e.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::BrokenPipe
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted => CloseReason::ConnectionClosed,
        // TCP_USER_TIMEOUT or keepalive gave up on the peer.
        ErrorKind::TimedOut => CloseReason::TimedOut,
        _ => CloseReason::Io(e.to_string()),
    }
}

/// How long a connection whose last handle was dropped may take to write what was queued.
const ORPHAN_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// The loop a child actor runs; it returns why the connection must end (`None`: cancelled).
pub(super) trait ChildLoop<E: Encoding, M: Metadata>: Sized + Unpin + 'static {
    /// Names the loop in the close reason of a panic inside it.
    const ROLE: &'static str;

    /// The connection state the loop shares with its parent and sibling.
    fn shared(&self) -> &Arc<Shared<E, M>>;

    /// Runs until the socket fails, the peer misbehaves, or the connection is cancelled.
    fn body(&mut self) -> impl std::future::Future<Output = Option<CloseReason>>;

    /// Runs [`body`](Self::body) with the connection's end recorded and panics contained: user
    /// code (`Encoding` impls) runs inside the loop, and a panic there must close this
    /// connection with a reason that says so, not unwind through the arbiter's other
    /// connections.
    fn run(self) -> impl std::future::Future<Output = Option<CloseReason>> + 'static {
        let shared = self.shared().clone();
        let mut me = self;
        let run = async move {
            let reason = me.body().await;
            // Recorded (first reason wins) while this half's queue is still open: e.g. a `read`
            // that then fails and closes the connection must not record `LocalClose` first.
            if let Some(r) = &reason {
                me.shared().shutdown(r.clone());
            }
            drop(me);
            reason
        };
        // Combinators, not an `async` block around `run`: a block would hold `run` twice (as
        // its capture and as the awaited future), doubling each idle connection's state.
        AssertUnwindSafe(run).catch_unwind().map(move |r| match r {
            Ok(reason) => reason,
            Err(payload) => {
                let r = CloseReason::panic(Self::ROLE, payload.as_ref());
                shared.shutdown(r.clone());
                Some(r)
            }
        })
    }
}

/// A child of the connection actor that owns one socket half and runs one loop in its context;
/// when the loop ends it tells the parent why, then stops.
pub(super) struct ChildActor<P, E: Encoding, M: Metadata> {
    parts: Option<P>,
    parent: Addr<ConnectionActor<E, M>>,
}

/// Reads the socket, opens chunks, decodes messages, and hands them to the subscribers or the
/// read queue. Waiting on a full read queue (or a slow subscriber) stops the reading, so the
/// peer's TCP window closes: that is the backpressure.
pub(super) type ReaderActor<E, M> = ChildActor<ReaderParts<E, M>, E, M>;

/// Takes encoded messages from the write queue in order, seals them into chunks (one nonce per
/// chunk, in queue order) and writes as many as are queued in one system call.
pub(super) type WriterActor<E, M> = ChildActor<WriterParts<E, M>, E, M>;

impl<P: ChildLoop<E, M>, E: Encoding, M: Metadata> ChildActor<P, E, M> {
    pub(super) fn new(parts: P, parent: Addr<ConnectionActor<E, M>>) -> Self {
        Self { parts: Some(parts), parent }
    }
}

impl<P: ChildLoop<E, M>, E: Encoding, M: Metadata> Actor for ChildActor<P, E, M> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(parts) = self.parts.take() {
            ctx.spawn(parts.run().into_actor(self).map(|reason, act, ctx| {
                // Control plane: one message per child lifetime.
                act.parent.do_send(ChildStopped(reason));
                ctx.stop();
            }));
        }
    }
}

pub(super) struct ReaderParts<E: Encoding, M: Metadata> {
    pub(super) meter: Option<Arc<Meter>>,
    pub(super) rd: OwnedReadHalf,
    pub(super) chunks: ChunkDecoder,
    pub(super) messages: MessageDecoder<E>,
    pub(super) tx: mpsc::Sender<ReadItem<E>>,
    pub(super) subs: watch::Receiver<Subscribers<E>>,
    pub(super) shared: Arc<Shared<E, M>>,
}

impl<E: Encoding, M: Metadata> ChildLoop<E, M> for ReaderParts<E, M> {
    const ROLE: &'static str = "reader";

    fn shared(&self) -> &Arc<Shared<E, M>> {
        &self.shared
    }

    fn body(&mut self) -> impl std::future::Future<Output = Option<CloseReason>> {
        self.read_loop()
    }
}

impl<E: Encoding, M: Metadata> ReaderParts<E, M> {
    /// Returns the reason the connection must end, or `None` if it was cancelled.
    async fn read_loop(&mut self) -> Option<CloseReason> {
        let cancel = self.shared.cancel.clone();
        // Metric handles taken once: recording is then an atomic add (a no-op without recorder).
        let (bytes_in, msgs_in) = if telemetry::per_peer() {
            let peer = self.shared.info.peer_id.to_string();
            (
                metrics::counter!(telemetry::RECEIVED_BYTES, "peer" => peer.clone()),
                metrics::counter!(telemetry::RECEIVED_MESSAGES, "peer" => peer),
            )
        } else {
            (metrics::counter!(telemetry::RECEIVED_BYTES), metrics::counter!(telemetry::RECEIVED_MESSAGES))
        };
        let mut subscribers = self.subs.borrow_and_update().clone();
        let mut throttle = Throttle::default();
        let read_size = self.shared.config.read_buffer_size.max(1);
        // Allocated on demand and dropped when drained, so an idle connection holds no buffer.
        let mut buf = BytesMut::new();
        loop {
            // Download quota first: a throttled connection leaves its bytes in the kernel, so
            // TCP slows the sender down.
            let mut allowed = match &self.meter {
                None => usize::MAX,
                Some(m) => tokio::select! {
                    biased;
                    () = cancel.cancelled() => return None,
                    n = m.available() => n,
                },
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => return None,
                r = self.rd.readable() => if let Err(e) = r { return Some(io_reason(&e)) },
            }
            let mut taken = 0;
            for _ in 0..READS_PER_WAKEUP {
                if allowed == 0 || taken >= BYTES_PER_SLICE {
                    break;
                }
                buf.reserve(read_size);
                match self.rd.try_read_buf(&mut (&mut buf).limit(allowed.min(read_size))) {
                    Ok(0) => return Some(CloseReason::ConnectionClosed),
                    Ok(n) => {
                        taken += n;
                        self.shared.recv.fetch_add(n as u64, Ordering::Relaxed);
                        bytes_in.increment(n as u64);
                        if let Some(m) = &self.meter {
                            m.consume(n);
                            allowed = allowed.saturating_sub(n);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Some(io_reason(&e)),
                }
                loop {
                    let plaintext = match self.chunks.decode(&mut buf) {
                        Ok(Some(p)) => p,
                        Ok(None) => break,
                        Err(ChunkError::DecipherError) => {
                            metrics::counter!(telemetry::DECIPHER_FAILURES, "stage" => "message").increment(1);
                            return Some(CloseReason::DecipherError);
                        }
                        Err(ChunkError::InvalidIncomingCiphertextSize { size }) => {
                            return Some(CloseReason::InvalidIncomingCiphertextSize { size })
                        }
                    };
                    self.messages.push(plaintext);
                    loop {
                        // The encoding is the application's code: a panic in its `frame_size` or
                        // `decode` closes this connection, recorded before anything unwinds.
                        let next =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.messages.next_message()));
                        let next = match next {
                            Ok(n) => n,
                            Err(payload) => return Some(CloseReason::panic("decode", payload.as_ref())),
                        };
                        match next {
                            Ok(Some((size, msg))) => {
                                msgs_in.increment(1);
                                if self.subs.has_changed().unwrap_or(false) {
                                    subscribers = self.subs.borrow_and_update().clone();
                                }
                                match &self.shared.control {
                                    Some(sink) if msg.is_control() => {
                                        let sink = sink.clone();
                                        if let Err(end) =
                                            Box::pin(self.control(&sink, &mut throttle, &subscribers, size, msg)).await
                                        {
                                            return end;
                                        }
                                    }
                                    _ => self.deliver(&subscribers, size, msg, false).await?,
                                }
                            }
                            Ok(None) => break,
                            Err(e) => return Some(CloseReason::Decoding(e)),
                        }
                    }
                }
            }
            if buf.is_empty() {
                buf = BytesMut::new();
            }
            tokio::task::yield_now().await;
        }
    }

    /// A P2P-layer message on a node's connection: held per the throttle (the reader waits, so
    /// a flooding peer is slowed down by TCP), handed to the node's overlay, then to the
    /// subscribers that asked for such messages. `Disconnect` ends the connection. `Err` carries
    /// how the reader must end (`None`: cancelled).
    async fn control(
        &self,
        sink: &ControlSink,
        throttle: &mut Throttle,
        subscribers: &Subscribers<E>,
        size: usize,
        msg: E,
    ) -> Result<(), Option<CloseReason>> {
        let copy = subscribers.iter().any(|s| s.p2p).then(|| msg.clone());
        let Ok(control) = msg.into_control() else { return Ok(()) };
        if control == Control::Disconnect {
            metrics::counter!(telemetry::OVERLAY_MESSAGES, "kind" => "Disconnect", "direction" => "received")
                .increment(1);
            if let Some(m) = copy {
                self.deliver(subscribers, size, m, true).await.ok_or(None)?;
            }
            return Err(Some(CloseReason::Disconnect));
        }
        let hold = throttle.hold(&control, std::time::Instant::now(), &sink.config);
        if !hold.is_zero() {
            metrics::counter!(telemetry::OVERLAY_HELD, "kind" => control.name()).increment(1);
            tokio::select! {
                biased;
                () = self.shared.cancel.cancelled() => return Err(None),
                () = tokio::time::sleep(hold) => {}
            }
        }
        let event = ControlIn { connection: self.shared.id, peer_id: self.shared.info.peer_id, control };
        // The overlay's mailbox is bounded: when it is full the message is dropped and counted
        // (the throttle above already bounds what one peer can send it).
        if sink.recipient.try_send(event).is_err() {
            metrics::counter!(telemetry::OVERLAY_DROPPED).increment(1);
        }
        if let Some(m) = copy {
            self.deliver(subscribers, size, m, true).await.ok_or(None)?;
        }
        Ok(())
    }

    /// Hands one message on; `None` (as an early return) when the connection was cancelled.
    /// `p2p_only`: a P2P-layer message the node handled, for the subscribers that asked for
    /// those (never for the read queue).
    async fn deliver(&self, subscribers: &Subscribers<E>, size: usize, msg: E, p2p_only: bool) -> Option<()> {
        let cancel = &self.shared.cancel;
        let wanted = |s: &&super::connection::Subscriber<E>| !p2p_only || s.p2p;
        let mut left = subscribers.iter().filter(wanted).count();
        if left > 0 {
            // Clones for all but the last, which takes the message itself.
            for s in subscribers.iter().filter(wanted) {
                left -= 1;
                if left == 0 {
                    return self.send_to(&s.recipient, size, msg).await;
                }
                self.send_to(&s.recipient, size, msg.clone()).await?;
            }
        }
        if p2p_only {
            return Some(());
        }
        let units =
            u32::try_from(size.saturating_add(QUEUE_OVERHEAD).min(self.shared.config.incoming_queue_bytes).max(1))
                .unwrap_or(u32::MAX);
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => return None,
            p = self.shared.read_budget.clone().acquire_many_owned(units) => p.ok()?,
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            r = self.tx.send(ReadItem { size, msg, _permit: permit }) => r.ok(),
        }
    }

    async fn send_to(&self, s: &Recipient<Inbound<E>>, size: usize, message: E) -> Option<()> {
        let event = Inbound { connection: self.shared.id, peer_id: self.shared.info.peer_id, size, message };
        tokio::select! {
            biased;
            () = self.shared.cancel.cancelled() => None,
            // A stopped subscriber is skipped; the others still get the message.
            _ = s.send(event) => Some(()),
        }
    }
}

pub(super) struct WriterParts<E: Encoding, M: Metadata> {
    /// Sent-bytes counter handle (see `telemetry`).
    pub(super) bytes_out: metrics::Counter,
    pub(super) meter: Option<Arc<Meter>>,
    pub(super) wr: OwnedWriteHalf,
    pub(super) sealer: Sealer,
    pub(super) rx: mpsc::Receiver<WriteCmd>,
    pub(super) shared: Arc<Shared<E, M>>,
}

impl<E: Encoding, M: Metadata> ChildLoop<E, M> for WriterParts<E, M> {
    const ROLE: &'static str = "writer";

    fn shared(&self) -> &Arc<Shared<E, M>> {
        &self.shared
    }

    fn body(&mut self) -> impl std::future::Future<Output = Option<CloseReason>> {
        self.write_loop()
    }
}

/// Completes commands whose bytes reached the socket: releases their budget (dropping the
/// permits) and wakes `write_sync` / `close`.
fn complete(sealed: &mut Vec<WriteCmd>, msgs_out: &metrics::Counter) {
    for cmd in sealed.drain(..) {
        match cmd {
            WriteCmd::Message { done, .. } => {
                msgs_out.increment(1);
                if let Some(tx) = done {
                    let _ = tx.send(());
                }
            }
            WriteCmd::Flush(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

impl<E: Encoding, M: Metadata> WriterParts<E, M> {
    async fn write_loop(&mut self) -> Option<CloseReason> {
        let cancel = self.shared.cancel.clone();
        let msgs_out = if telemetry::per_peer() {
            metrics::counter!(telemetry::SENT_MESSAGES, "peer" => self.shared.info.peer_id.to_string())
        } else {
            metrics::counter!(telemetry::SENT_MESSAGES)
        };
        let chunk_size = self.shared.config.binary_chunks_size;
        let step = (COALESCE_BYTES / chunk_size.plaintext_len()).max(1) * chunk_size.plaintext_len();
        let mut batch = Vec::new();
        // Allocated on demand and dropped when the queue is drained (no idle 64 KiB buffers).
        let mut out = BytesMut::new();
        let orphaned = self.shared.orphaned.clone();
        // Set once the last handle is gone: write what is queued, until then at the latest.
        // Boxed and created only then, so an idle writer does not carry a timer in its state.
        let mut flush_until: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        // Sealed commands waiting for the flush that completes them (see below).
        let mut sealed: Vec<WriteCmd> = Vec::new();
        let reason = loop {
            let n = tokio::select! {
                biased;
                () = cancel.cancelled() => break None,
                () = orphaned.cancelled(), if flush_until.is_none() => {
                    // No handle can write any more: drain the queue, then close.
                    self.shared.write_budget.close();
                    flush_until = Some(Box::pin(tokio::time::sleep(ORPHAN_FLUSH)));
                    if self.rx.is_empty() {
                        break Some(CloseReason::LocalClose);
                    }
                    continue;
                }
                () = async {
                    match flush_until.as_mut() {
                        Some(t) => t.as_mut().await,
                        None => std::future::pending().await,
                    }
                } => break Some(CloseReason::LocalClose),
                n = self.rx.recv_many(&mut batch, BATCH_MESSAGES) => n,
            };
            if n == 0 {
                break None;
            }
            // Commands whose bytes are all sealed into `out`: each is completed (its budget
            // released, `write_sync` / `close` woken) by the flush that hands those bytes to the
            // socket, not at the end of the batch. A writer that drains a full 8 MiB queue thus
            // gives the budget back 64 KiB at a time: the application refills the queue as it
            // drains, instead of in one burst of ~128 encodings that held the arbiter for a
            // millisecond (what a small message's round trip beside it waited for, at p99).
            let mut failed = None;
            'batch: for cmd in batch.drain(..) {
                if let WriteCmd::Message { bytes, .. } = &cmd {
                    // A large message is sealed and written a whole number of chunks at a time
                    // (the same chunks as sealing it at once), so `out` stays near COALESCE_BYTES.
                    // An empty message is one empty chunk: the loop runs at least once.
                    let mut rest: &[u8] = bytes;
                    loop {
                        let (part, tail) = rest.split_at(rest.len().min(step));
                        seal_chunks(&mut self.sealer, part, chunk_size, &mut out);
                        rest = tail;
                        if out.len() >= COALESCE_BYTES {
                            if let Err(r) = self.flush(&mut out).await {
                                failed = Some(r);
                                break 'batch;
                            }
                            complete(&mut sealed, &msgs_out);
                            // A long batch leaves the arbiter to the other connections between
                            // slices (see BYTES_PER_SLICE).
                            tokio::task::yield_now().await;
                        }
                        if rest.is_empty() {
                            break;
                        }
                    }
                }
                sealed.push(cmd);
            }
            if failed.is_none() {
                match self.flush(&mut out).await {
                    Ok(()) => complete(&mut sealed, &msgs_out),
                    Err(r) => failed = Some(r),
                }
            }
            if let Some(r) = failed {
                break r;
            }
            if self.rx.is_empty() || out.capacity() > 2 * COALESCE_BYTES {
                out = BytesMut::new();
            }
            if self.rx.is_empty() {
                sealed = Vec::new();
            }
            if flush_until.is_some() && self.rx.is_empty() {
                break Some(CloseReason::LocalClose);
            }
        };
        // Best effort FIN; dropping the half would do it too.
        let _ = self.wr.shutdown().await;
        reason
    }

    /// Writes `out` entirely; `Err(None)` if cancelled meanwhile.
    async fn flush(&mut self, out: &mut BytesMut) -> Result<(), Option<CloseReason>> {
        let cancel = self.shared.cancel.clone();
        while !out.is_empty() {
            // Upload quota: unlimited writes everything at once; a throttled writer writes what
            // its tokens allow (at least MIN_UNIT; the overshoot is repaid next period).
            let n = match &self.meter {
                None => out.len(),
                Some(m) => tokio::select! {
                    biased;
                    () = cancel.cancelled() => return Err(None),
                    n = m.available() => out.len().min(n.max(MIN_UNIT)),
                },
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(None),
                r = self.wr.write_all(&out[..n]) => r.map_err(|e| Some(io_reason(&e)))?,
            }
            self.shared.sent.fetch_add(n as u64, Ordering::Relaxed);
            self.bytes_out.increment(n as u64);
            if let Some(m) = &self.meter {
                m.consume(n);
            }
            out.advance(n);
        }
        out.clear();
        Ok(())
    }
}
