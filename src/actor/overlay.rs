//! The overlay actor: a node's P2P layer (octez `P2p_protocol`, `P2p_maintenance`), a thin
//! shell over the pure policies in [`crate::overlay`], [`crate::maintenance`] and
//! [`crate::peers`].
//!
//! Connections' readers hand it the P2P-layer messages they receive (after the per-connection
//! throttle), through its bounded mailbox: it answers `Bootstrap` with `Advertise`, learns
//! advertised points, and performs swaps. The maintenance loop runs beside it as a task of the
//! node: it wakes on a timer and whenever a connection comes or goes, and dials, asks for
//! points, or closes connections as [`crate::maintenance`] says.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Instant;

use actix::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng as _;

use super::node::{Inner, Node};
use super::registry::NodeEvent;
use crate::crypto::PeerId;
use crate::maintenance::{candidates, step, swap_proposal, victims, DialBudget, Running, Step};
use crate::message::{Control, Encoding};
use crate::overlay::{swap_answer, swap_point_usable, SwapState};
use crate::peers::PointState;
use crate::telemetry;
use crate::wire::Metadata;

/// Mailbox capacity of the overlay: P2P-layer messages are small and throttled per connection;
/// when even so it is full, readers drop (and count) rather than wait.
const MAILBOX: usize = 1024;

/// A P2P-layer message a connection received (sent by its reader).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ControlIn {
    /// The connection's id.
    pub connection: u64,
    /// The peer.
    pub peer_id: PeerId,
    /// The message.
    pub control: Control,
}

/// Maintenance is satisfied: propose one swap (octez does after every run within bounds).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct ProposeSwap;

/// A swap's dial finished.
#[derive(Message)]
#[rtype(result = "()")]
struct SwapDone {
    point: SocketAddr,
    /// The peer given up, when the swap succeeded.
    replaced: Option<PeerId>,
}

/// The overlay actor of a node.
pub struct OverlayActor<E: Encoding, M: Metadata> {
    inner: Weak<Inner<E, M>>,
    swap: SwapState,
    /// Swap requests we sent, by connection: the peer we proposed to give up.
    sent_swaps: HashMap<u64, PeerId>,
    rng: StdRng,
}

impl<E: Encoding, M: Metadata> OverlayActor<E, M> {
    pub(super) fn new(inner: Weak<Inner<E, M>>) -> Self {
        Self { inner, swap: SwapState::default(), sent_swaps: HashMap::new(), rng: StdRng::from_entropy() }
    }
}

impl<E: Encoding, M: Metadata> Actor for OverlayActor<E, M> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

/// The running connections as maintenance sees them.
pub(super) fn running<E: Encoding, M: Metadata>(inner: &Inner<E, M>) -> Vec<Running> {
    let conns: Vec<_> = inner.connections.iter().map(|c| c.value().clone()).filter(|c| !c.is_closed()).collect();
    let t = inner.registry.table();
    conns
        .iter()
        .map(|c| {
            let info = c.info();
            let point = info.id_point.and_then(|p| p.port.map(|port| SocketAddr::new(p.addr, port)));
            Running {
                peer_id: info.peer_id,
                point,
                private: info.private_node,
                trusted: t.is_trusted(&info.peer_id) || point.and_then(|p| t.point(&p)).is_some_and(|p| p.trusted),
            }
        })
        .collect()
}

fn send<E: Encoding, M: Metadata>(conn: &super::Connection<E, M>, control: Control) -> bool {
    E::from_control(control).is_some_and(|m| conn.write_now(&m).unwrap_or(false))
}

impl<E: Encoding, M: Metadata> Handler<ControlIn> for OverlayActor<E, M> {
    type Result = ();

    fn handle(&mut self, msg: ControlIn, ctx: &mut Self::Context) {
        let Some(inner) = self.inner.upgrade() else { return };
        let Some(conn) = inner.connections.get(&msg.peer_id).map(|c| c.value().clone()) else { return };
        if conn.id() != msg.connection || conn.is_closed() {
            return;
        }
        let now = Instant::now();
        let private_mode = inner.config.private_mode;
        let asker_point = conn.info().id_point.and_then(|p| p.port.map(|port| SocketAddr::new(p.addr, port)));
        let event = |kind, ignored, points, new_points, point| NodeEvent::P2p {
            peer_id: msg.peer_id,
            kind,
            sent: false,
            points,
            new_points,
            point,
            ignored,
        };
        match msg.control {
            Control::Bootstrap => {
                // octez ignores private peers' Bootstrap, and answers nothing in private mode.
                let ignored = private_mode || conn.private_node();
                inner.registry.publish(event("Bootstrap", ignored, 0, 0, None));
                if ignored {
                    return;
                }
                let size = inner.config.overlay.advertise_size.min(crate::message::MAX_ADVERTISED_POINTS);
                let points = inner.registry.table().advertisable_points(size, asker_point, now, &mut self.rng);
                let n = points.len();
                if n > 0 && send(&conn, Control::Advertise(points)) {
                    inner.registry.publish(NodeEvent::P2p {
                        peer_id: msg.peer_id,
                        kind: "Advertise",
                        sent: true,
                        points: n,
                        new_points: 0,
                        point: None,
                        ignored: false,
                    });
                }
            }
            Control::Advertise(points) => {
                let ignored = private_mode || conn.private_node();
                let mut new = 0;
                if !ignored {
                    let mut t = inner.registry.table();
                    for p in &points {
                        new += usize::from(t.register_point(*p, now));
                    }
                }
                metrics::counter!(telemetry::ADVERTISED_POINTS, "result" => "new").increment(new as u64);
                metrics::counter!(telemetry::ADVERTISED_POINTS, "result" => "known")
                    .increment((points.len() - new) as u64);
                inner.registry.publish(event("Advertise", ignored, points.len(), new, None));
                if new > 0 {
                    inner.new_point.notify_waiters();
                }
            }
            Control::SwapRequest { point, .. } => {
                let usable = !private_mode
                    && self.swap.may_swap(now, &inner.config.overlay)
                    && swap_point_usable(&inner.registry.table(), &point);
                let answer = if usable { swap_answer(&running(&inner), &msg.peer_id, &mut self.rng) } else { None };
                inner.registry.publish(event("Swap_request", answer.is_none(), 1, 0, Some(point)));
                let Some((ack_point, ack_peer)) = answer else {
                    metrics::counter!(telemetry::SWAPS, "result" => "ignored").increment(1);
                    return;
                };
                if !send(&conn, Control::SwapAck { point: ack_point, peer_id: ack_peer }) {
                    return;
                }
                inner.registry.publish(NodeEvent::P2p {
                    peer_id: msg.peer_id,
                    kind: "Swap_ack",
                    sent: true,
                    points: 1,
                    new_points: 0,
                    point: Some(ack_point),
                    ignored: false,
                });
                metrics::counter!(telemetry::SWAPS, "result" => "accepted").increment(1);
                self.swap.accepted(now);
                self.do_swap(ctx, Node { inner: inner.clone() }, point, ack_peer);
            }
            Control::SwapAck { point, .. } => {
                let proposed = self.sent_swaps.remove(&conn.id());
                let running_here =
                    inner.registry.table().point(&point).is_some_and(|p| matches!(p.state, PointState::Running(_)));
                let ok = !private_mode && inner.config.overlay.swap_linger.is_some() && !running_here;
                let proposed = proposed.filter(|_| ok);
                inner.registry.publish(event("Swap_ack", proposed.is_none(), 1, 0, Some(point)));
                match proposed {
                    Some(replaced) => self.do_swap(ctx, Node { inner: inner.clone() }, point, replaced),
                    None => metrics::counter!(telemetry::SWAPS, "result" => "ignored").increment(1),
                }
            }
            // Ended in the reader, which closes the connection with `CloseReason::Disconnect`.
            Control::Disconnect => {}
        }
    }
}

impl<E: Encoding, M: Metadata> OverlayActor<E, M> {
    /// Dials `point`; once connected, closes the connection with `replaced` — unless that peer
    /// has become trusted meanwhile (a swap never gives up a trusted peer).
    fn do_swap(&mut self, ctx: &mut Context<Self>, node: Node<E, M>, point: SocketAddr, replaced: PeerId) {
        let me = ctx.address();
        actix::spawn(async move {
            let ok = node.connect(point).await.is_ok();
            let give_up = ok && !node.inner.registry.table().is_trusted(&replaced);
            if give_up {
                node.disconnect(&replaced, true).await;
            }
            me.do_send(SwapDone { point, replaced: give_up.then_some(replaced) });
        });
    }
}

impl<E: Encoding, M: Metadata> Handler<SwapDone> for OverlayActor<E, M> {
    type Result = ();

    fn handle(&mut self, msg: SwapDone, _: &mut Self::Context) {
        match msg.replaced {
            Some(replaced) => {
                self.swap.succeeded(Instant::now());
                metrics::counter!(telemetry::SWAPS, "result" => "succeeded").increment(1);
                if let Some(inner) = self.inner.upgrade() {
                    inner.registry.publish(NodeEvent::Swapped { point: msg.point, replaced });
                }
            }
            None => {
                self.swap.failed();
                metrics::counter!(telemetry::SWAPS, "result" => "failed").increment(1);
            }
        }
    }
}

impl<E: Encoding, M: Metadata> Handler<ProposeSwap> for OverlayActor<E, M> {
    type Result = ();

    fn handle(&mut self, _: ProposeSwap, _: &mut Self::Context) {
        let Some(inner) = self.inner.upgrade() else { return };
        if inner.config.private_mode {
            return;
        }
        let Some((to, point, proposed)) = swap_proposal(&running(&inner), &mut self.rng) else { return };
        let Some(conn) = inner.connections.get(&to).map(|c| c.value().clone()) else { return };
        if send(&conn, Control::SwapRequest { point, peer_id: proposed }) {
            // Forget requests to connections that have gone: the map stays as small as the
            // connection count.
            self.sent_swaps.retain(|id, _| inner.connections.iter().any(|c| c.value().id() == *id));
            self.sent_swaps.insert(conn.id(), proposed);
            metrics::counter!(telemetry::SWAPS, "result" => "requested").increment(1);
            inner.registry.publish(NodeEvent::P2p {
                peer_id: to,
                kind: "Swap_request",
                sent: true,
                points: 1,
                new_points: 0,
                point: Some(point),
                ignored: false,
            });
        }
    }
}

/// The maintenance loop: one run at start, then one per wake-up (a connection came or went,
/// [`Node::maintain`]) or every `idle_time`. Ends with the node.
pub(super) async fn maintenance_loop<E: Encoding, M: Metadata>(weak: Weak<Inner<E, M>>) {
    let mut rng = StdRng::from_entropy();
    let mut first = true;
    let mut budget = {
        let Some(inner) = weak.upgrade() else { return };
        let Some(cfg) = &inner.config.maintenance else { return };
        let capacity = cfg.dial_budget.unwrap_or(inner.config.limits.bounds().max_target);
        DialBudget::new(capacity, cfg.looking_for_peers, Instant::now())
    };
    let mut last_bootstrap = None;
    loop {
        let (wake, shutdown, idle) = {
            let Some(inner) = weak.upgrade() else { return };
            let Some(cfg) = &inner.config.maintenance else { return };
            (inner.wake.clone(), inner.shutdown.clone(), cfg.idle_time)
        };
        if !first {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
        first = false;
        maintain(&weak, &mut rng, &mut budget, &mut last_bootstrap).await;
    }
}

/// Resolves the bootstrap peers given by name and trusts what they resolve to (at every run,
/// as octez resolves its bootstrap peers at each attempt).
async fn resolve_bootstrap<E: Encoding, M: Metadata>(inner: &Inner<E, M>, names: &[String]) {
    for name in names {
        let lookup = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host(name.as_str()));
        match lookup.await {
            Ok(Ok(addrs)) => {
                let mut t = inner.registry.table();
                for a in addrs {
                    t.set_point_trusted(a, true, Instant::now());
                }
            }
            Ok(Err(e)) => {
                tracing::warn!("cannot resolve bootstrap peer {name}: {e}");
                inner.registry.publish(NodeEvent::ResolveFailed { name: name.clone(), error: e.to_string() });
            }
            Err(_) => {
                tracing::warn!("cannot resolve bootstrap peer {name}: timed out");
                inner.registry.publish(NodeEvent::ResolveFailed { name: name.clone(), error: "timed out".into() });
            }
        }
    }
}

/// Dials `points`, at most `limit` at a time; returns how many connected.
async fn dial_all<E: Encoding, M: Metadata>(node: &Node<E, M>, points: Vec<SocketAddr>, limit: usize) -> usize {
    let mut ok = 0;
    let mut todo = points.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < limit.max(1) {
            let Some(p) = todo.next() else { break };
            let node = node.clone();
            running.spawn(async move { node.connect(p).await.is_ok() });
        }
        match running.join_next().await {
            Some(Ok(true)) => ok += 1,
            Some(_) => {}
            None => return ok,
        }
    }
}

/// One maintenance run (octez `maintain` / `do_maintain`): repeats until the count is within
/// the thresholds (or the node stops).
async fn maintain<E: Encoding, M: Metadata>(
    weak: &Weak<Inner<E, M>>,
    rng: &mut StdRng,
    budget: &mut DialBudget,
    last_bootstrap: &mut Option<Instant>,
) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.shutdown.is_cancelled() {
            return;
        }
        let Some(cfg) = inner.config.maintenance.clone() else { return };
        let node = Node { inner: inner.clone() };
        resolve_bootstrap(&inner, &cfg.bootstrap_peers).await;
        let private_mode = inner.config.private_mode;
        let bounds = inner.config.limits.bounds();
        // Closed connections leave `connections()` at once (the registry follows shortly).
        let n = node.connections().len();
        match step(n, &bounds) {
            Step::Satisfied => {
                metrics::counter!(telemetry::MAINTENANCE_RUNS, "outcome" => "satisfied").increment(1);
                if let Some(overlay) = inner.overlay_addr() {
                    overlay.do_send(ProposeSwap);
                }
                return;
            }
            Step::TooMany { kill } => {
                metrics::counter!(telemetry::MAINTENANCE_RUNS, "outcome" => "too_many").increment(1);
                for peer in victims(&running(&inner), kill, rng) {
                    node.disconnect(&peer, false).await;
                }
            }
            Step::TooFew { min_to_contact, max_to_contact } => {
                metrics::counter!(telemetry::MAINTENANCE_RUNS, "outcome" => "too_few").increment(1);
                let start = Instant::now();
                let mut seen = HashSet::new();
                let (mut min_c, mut max_c) = (min_to_contact, max_to_contact);
                let mut enough = false;
                let mut deferred = false;
                while !inner.shutdown.is_cancelled() {
                    if min_c == 0 || max_c == 0 {
                        enough = true;
                        break;
                    }
                    // What the dial budget allows now (a flood of advertised points cannot
                    // make the node dial faster than this).
                    let allowed = budget.take(max_c, Instant::now());
                    if allowed == 0 {
                        metrics::counter!(telemetry::DIALS, "result" => "deferred").increment(1);
                        deferred = true;
                        break;
                    }
                    let cands = {
                        let mut t = inner.registry.table();
                        candidates(&mut t, allowed, &mut seen, start, Instant::now(), private_mode, rng)
                    };
                    // Unused dials go back.
                    budget.refund(allowed - cands.len());
                    if cands.is_empty() {
                        break;
                    }
                    let ok = dial_all(&node, cands, cfg.max_concurrent_dials).await;
                    min_c = min_c.saturating_sub(ok);
                    max_c = max_c.saturating_sub(ok);
                }
                if deferred {
                    // Out of dials: wait for the budget, not for new points (a peer advertising
                    // points as fast as it may must not set the pace).
                    let (shutdown, at) = (inner.shutdown.clone(), budget.next_dial(Instant::now()));
                    drop(node);
                    drop(inner);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep_until(at.into()) => {}
                    }
                } else if !enough {
                    // Ask the peers for points (never in private mode, at most once per
                    // `looking_for_peers`), then wait for one.
                    let now = Instant::now();
                    let ask =
                        !private_mode && last_bootstrap.is_none_or(|t| now.duration_since(t) >= cfg.looking_for_peers);
                    if ask {
                        *last_bootstrap = Some(now);
                        let mut asked = 0;
                        for c in node.connections().iter().filter(|c| !c.private_node()) {
                            if send(c, Control::Bootstrap) {
                                asked += 1;
                                inner.registry.publish(NodeEvent::P2p {
                                    peer_id: c.info().peer_id,
                                    kind: "Bootstrap",
                                    sent: true,
                                    points: 0,
                                    new_points: 0,
                                    point: None,
                                    ignored: false,
                                });
                            }
                        }
                        tracing::debug!(asked, "too few connections and no point to dial: asked for points");
                    }
                    let (new_point, shutdown) = (inner.new_point.clone(), inner.shutdown.clone());
                    drop(node);
                    drop(inner);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = new_point.notified() => {}
                        () = tokio::time::sleep(cfg.looking_for_peers) => {}
                    }
                }
            }
        }
    }
}
