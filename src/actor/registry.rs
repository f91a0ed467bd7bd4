//! The registry actor: a thin shell over [`crate::peers::PeerTable`] that follows connection
//! lifecycles (greylisting on the failures octez greylists) and publishes node events.
//!
//! Admission checks on the handshake path read the table directly under a short lock (once
//! per connection, never per message), so the ACL can refuse a socket before any handshake work
//! without a mailbox round trip.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use actix::prelude::*;

use super::connection::Closed;
use crate::crypto::PeerId;
use crate::peers::PeerTable;
use crate::stat::Stat;
use crate::telemetry;

/// What a node tells its subscribers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum NodeEvent {
    /// A connection is running.
    Connected {
        /// The peer.
        peer_id: PeerId,
        /// The connection's id.
        connection: u64,
        /// Its point, when known.
        point: Option<SocketAddr>,
        /// Whether the peer dialled us.
        incoming: bool,
    },
    /// A connection ended.
    Disconnected {
        /// The peer.
        peer_id: PeerId,
        /// The connection's id.
        connection: u64,
        /// Why (a `CloseReason` name).
        reason: &'static str,
        /// The connection's final statistics.
        stat: Stat,
    },
    /// A socket or a peer was turned away.
    Rejected {
        /// The remote address.
        addr: Option<SocketAddr>,
        /// The peer, if it got far enough to be known.
        peer_id: Option<PeerId>,
        /// Why: an octez error or Nack motive name, or an ACL cause (`Banned`, `Greylisted`,
        /// `TooManyPendingHandshakes`, `Evicted`).
        reason: &'static str,
    },
    /// The node starts dialling a point.
    Dialing {
        /// The point.
        point: SocketAddr,
    },
    /// A dial failed (before or during the handshake, or refused by the peer).
    DialFailed {
        /// The point.
        point: SocketAddr,
        /// The octez-style error name.
        reason: &'static str,
    },
    /// A bootstrap peer given by name (`HOST:PORT`) did not resolve at this maintenance run; it
    /// is tried again at the next.
    ResolveFailed {
        /// The name, as configured.
        name: String,
        /// What the resolver said.
        error: String,
    },
    /// A P2P-layer message was received and handled, or sent.
    P2p {
        /// The peer.
        peer_id: PeerId,
        /// octez's case name: `Bootstrap`, `Advertise`, `Swap_request`, `Swap_ack`.
        kind: &'static str,
        /// Sent by us (`false`: received).
        sent: bool,
        /// Points carried (Advertise: the count; Swap: 1).
        points: usize,
        /// Points we did not know (received Advertise).
        new_points: usize,
        /// The point proposed in a swap.
        point: Option<SocketAddr>,
        /// Whether the node ignored it (private mode, private peer, swap linger, …).
        ignored: bool,
    },
    /// A swap completed: we connected to `point` and closed our connection with `replaced`.
    Swapped {
        /// The new point.
        point: SocketAddr,
        /// The peer given up.
        replaced: PeerId,
    },
    /// The peers file was written.
    PeersSaved {
        /// Peers in it.
        peers: usize,
        /// Points in it.
        points: usize,
    },
}

/// Whether a `Rejected` reason is a refusal by policy (ACL, Nack motive, no common protocol)
/// rather than a failure of the peer's handshake.
pub fn is_refusal(reason: &str) -> bool {
    matches!(
        reason,
        "RejectedNoCommonProtocol"
            | "PeerBanned"
            | "Banned"
            | "Greylisted"
            | "Evicted"
            | "TooManyPendingHandshakes"
            | "PrivateMode"
            | "IdentityCheckFailure"
            | "TooManyPendingFromAddress"
            | "TooManyPendingFromNetwork"
            | "TooManyConnectionsFromAddress"
            | "TooManyConnectionsFromNetwork"
    ) || reason.contains('_') // octez Nack motives: Too_many_connections, Already_connected, …
}

/// A handle on the registry: the shared table and the actor.
#[derive(Clone)]
pub struct Registry {
    table: Arc<Mutex<PeerTable>>,
    addr: Addr<RegistryActor>,
    dropped: Arc<AtomicU64>,
}

impl Registry {
    /// Starts the registry actor on the current arbiter.
    pub fn start(table: PeerTable) -> Self {
        let table = Arc::new(Mutex::new(table));
        let dropped = Arc::new(AtomicU64::new(0));
        let addr = RegistryActor { table: table.clone(), subscribers: Vec::new(), dropped: dropped.clone() }.start();
        Self { table, addr, dropped }
    }

    /// The table, locked (briefly: never hold it across an await).
    pub fn table(&self) -> MutexGuard<'_, PeerTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The actor (it receives connections' [`Closed`] events).
    pub fn addr(&self) -> Addr<RegistryActor> {
        self.addr.clone()
    }

    /// Publishes an event to the subscribers (and counts handshakes and rejections).
    pub fn publish(&self, event: NodeEvent) {
        match &event {
            NodeEvent::Connected { .. } => {
                metrics::counter!(telemetry::HANDSHAKES, "result" => "accepted").increment(1)
            }
            NodeEvent::Rejected { reason, .. } => {
                metrics::counter!(telemetry::REJECTIONS, "reason" => *reason).increment(1);
                let result = if is_refusal(reason) { "rejected" } else { "failed" };
                metrics::counter!(telemetry::HANDSHAKES, "result" => result).increment(1);
            }
            NodeEvent::P2p { kind, sent, .. } => {
                let direction = if *sent { "sent" } else { "received" };
                metrics::counter!(telemetry::OVERLAY_MESSAGES, "kind" => *kind, "direction" => direction).increment(1);
            }
            _ => {}
        }
        // Control plane: one message per connection event; the actor applies the drop policy.
        self.addr.do_send(Publish(event));
    }

    /// Events dropped because a subscriber's mailbox was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The registry actor.
pub struct RegistryActor {
    table: Arc<Mutex<PeerTable>>,
    subscribers: Vec<Recipient<NodeEvent>>,
    dropped: Arc<AtomicU64>,
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Events are small and rare; a roomy mailbox absorbs bursts (e.g. a flood of refusals).
        ctx.set_mailbox_capacity(4096);
    }
}

impl RegistryActor {
    fn publish(&mut self, event: NodeEvent) {
        // Policy: a subscriber whose mailbox is full misses the event (counted); one that
        // stopped is removed. Events never queue up without bound here.
        self.subscribers.retain(|s| match s.try_send(event.clone()) {
            Ok(()) => true,
            Err(SendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(SendError::Closed(_)) => false,
        });
    }
}

/// Publishes an event (internal).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Publish(pub(crate) NodeEvent);

impl Handler<Publish> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: Publish, _: &mut Self::Context) {
        self.publish(msg.0);
    }
}

/// Subscribes a recipient to [`NodeEvent`]s.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeEvents(pub Recipient<NodeEvent>);

impl Handler<SubscribeEvents> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: SubscribeEvents, _: &mut Self::Context) {
        self.subscribers.push(msg.0);
    }
}

impl Handler<Closed> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: Closed, _: &mut Self::Context) {
        let now = Instant::now();
        {
            let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            if msg.reason.greylists() {
                // octez greylists a peer whose messages do not decode (and, with us, whose
                // chunks do not open): the peer id and its address.
                if let Some(addr) = t.peer(&msg.peer_id).map(|p| p.addr) {
                    t.greylist_peer(msg.peer_id, addr, now);
                }
            }
            if msg.reason == crate::actor::CloseReason::Disconnect && t.peer_sent_disconnect(msg.peer_id, now) {
                tracing::info!(peer = %msg.peer_id, "greylisted: connect-disconnect loop");
            }
            t.disconnected(msg.peer_id, Some(msg.reason.name().to_owned()), now);
        }
        self.publish(NodeEvent::Disconnected {
            peer_id: msg.peer_id,
            connection: msg.connection,
            reason: msg.reason.name(),
            stat: msg.stat,
        });
    }
}
