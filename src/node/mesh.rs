//! The gossip task: the one place the sans-IO gossip core meets the world. It feeds the core
//! what the transport receives, the catalog's own writes and timer expiries, and carries out
//! what the core asks (datagrams, messages, timers); it publishes membership to routing and the
//! admin API and persists it. Nothing in the loop waits on the network.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admin::{MemberReport, MeshView};
use crate::catalog::{Body, Catalog, Key, Record};
use crate::gossip::{Core, Input, MemberState, MemberView, Output, Replica, Role, TimerId};
use crate::proxy::{Peer, PeerState, Peers};
use crate::transport::{Incoming, Transport};

const MEMBERS_BLOB: &str = "members";

pub fn role_str(r: Role) -> &'static str {
    match r {
        Role::Registry => "registry",
        Role::Proxy => "proxy",
        Role::Combined => "combined",
    }
}

/// The catalog as the gossip core's replica. Merges enforce the part of the authority rules that
/// needs the record being replaced, and a node re-asserts its own endpoints if a peer removed
/// them while it was unreachable (it is alive, so they are not stale).
pub struct CatalogReplica {
    pub catalog: Arc<Catalog>,
    /// Gets the replication lag of what is merged.
    pub stats: Arc<crate::telemetry::Registry>,
}

impl Replica for CatalogReplica {
    fn totals(&self, grants: &crate::gossip::Grants) -> crate::gossip::Digest {
        let totals = self.catalog.writer_totals(grants.as_deref());
        totals.into_iter().map(|(w, t)| (w, crate::gossip::WriterSummary { max_hlc: t.max_hlc, count: t.count, hash: t.hash, marks: Vec::new() })).collect()
    }

    fn walk_newest(&self, writer: &str, grants: &crate::gossip::Grants, visit: &mut dyn FnMut(u64, u64) -> bool) {
        self.catalog.walk_newest(writer, grants.as_deref(), visit)
    }

    fn records_by(&self, writer: &str, above: u64, grants: &crate::gossip::Grants) -> Vec<Record> {
        self.catalog.records_by(writer, above, grants.as_deref())
    }

    fn holds(&self, key: &crate::catalog::Key, version: &crate::catalog::Version) -> bool {
        self.catalog.holds(key, version)
    }

    fn merge(&mut self, records: Vec<Record>, authority: &dyn Fn(&str) -> Option<Role>) -> Vec<Record> {
        let me = self.catalog.node().to_string();
        let reassert = std::cell::RefCell::new(Vec::new());
        let accept = |r: &Record, current: Option<&Record>| {
            if !crate::gossip::may_replace(r, current, authority) {
                return false;
            }
            // A registry removing our own live endpoint: we are alive, so write it back below.
            if let (None, Some(Body::Endpoint(owned))) = (&r.body, current.and_then(|c| c.body.as_ref()))
                && owned.node == me
                && r.version.writer != me
            {
                reassert.borrow_mut().push(owned.clone());
            }
            true
        };
        let merged = match self.catalog.merge_many(records, accept) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot store replicated records");
                return Vec::new();
            }
        };
        for r in &merged {
            tracing::debug!(key = %r.key, writer = %r.version.writer, hlc = r.version.hlc, "merged");
        }
        // The version's clock is its writer's wall time (ms in the high 48 bits).
        if let Some(newest) = merged.iter().filter(|r| r.version.writer != me).map(|r| r.version.hlc >> 16).max() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            self.stats.node.replication_lag_ms.store(now.saturating_sub(newest), Relaxed);
        }
        // We are alive, so our own endpoints are not stale: write them back (a newer version).
        for ep in reassert.into_inner() {
            tracing::info!(endpoint = %ep.id, "re-registering an endpoint a registry removed while this node looked down");
            if let Err(e) = self.catalog.write_background(Body::Endpoint(ep), crate::catalog::Origin::Api) {
                tracing::warn!(error = %e, "cannot re-register endpoint");
            }
        }
        merged
    }
}

fn millis(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

pub struct MeshParts {
    /// This node as `weft members` lists it.
    pub me: MemberView,
    pub core: Core<CatalogReplica>,
    pub transport: Arc<Transport>,
    pub incoming: mpsc::Receiver<Incoming>,
    pub catalog: Arc<Catalog>,
    pub seeds: Vec<SocketAddr>,
    pub peers: watch::Sender<Peers>,
    pub view: watch::Sender<MeshView>,
    pub start: Instant,
    pub endpoint_grace: Duration,
    pub shutdown: CancellationToken,
    /// Cancelled by this task once its goodbye is out: stops the transport.
    pub transport_stop: CancellationToken,
    /// The telemetry registry, which gets the membership and peer figures.
    pub stats: Arc<crate::telemetry::Registry>,
}

/// Members saved by a previous run, to announce to at start (static stability: a node that comes
/// back with no seed reachable still knows where everyone was).
pub fn restore_members(catalog: &Catalog) -> Vec<MemberView> {
    match catalog.load_blob(MEMBERS_BLOB) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "saved member list unreadable; starting from the seeds");
            Vec::new()
        }),
        _ => Vec::new(),
    }
}

/// Routing and the admin API see the restored membership before the first listener binds.
pub fn publish_initial(p: &MeshParts) {
    publish_peers(p);
    publish_members(p);
}

pub async fn run(mut p: MeshParts) {
    let mut timers: BinaryHeap<Reverse<(Instant, TimerId)>> = BinaryHeap::new();
    let mut local = p.catalog.local_changes();
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    let mut gone_since: HashMap<String, Instant> = HashMap::new();
    let mut members_dirty = true;
    p.core.handle(Input::Join(p.seeds.clone()), millis(p.start));
    loop {
        let next_timer = timers.peek().map(|Reverse((at, _))| *at);
        let now;
        tokio::select! {
            _ = p.shutdown.cancelled() => {
                p.core.handle(Input::Leave, millis(p.start));
                carry_out(&mut p, &mut timers, &mut members_dirty);
                // Give the leave notice a moment to go out before the endpoint closes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                save_members(&p);
                p.transport_stop.cancel();
                return;
            }
            Some(inc) = p.incoming.recv() => {
                now = millis(p.start);
                let input = match inc {
                    Incoming::Datagram { peer, from, bytes } => Input::Datagram { peer, from, bytes },
                    Incoming::Message { peer, from, bytes, grants } => Input::Message { peer, from, bytes, grants },
                };
                p.core.handle(input, now);
            }
            Some(first) = local.recv() => {
                let mut batch = vec![first];
                while let Ok(r) = local.try_recv() {
                    batch.push(r);
                }
                p.core.handle(Input::LocalChange(batch), millis(p.start));
            }
            _ = async { tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)).await }, if next_timer.is_some() => {
                now = millis(p.start);
                let due = Instant::now();
                while let Some(Reverse((at, id))) = timers.peek().cloned() {
                    if at > due {
                        break;
                    }
                    timers.pop();
                    p.core.handle(Input::Timer(id), now);
                }
            }
            _ = housekeeping.tick() => {
                let catalog = p.catalog.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = catalog.flush() {
                        tracing::error!(error = %e, "cannot flush replicated records to disk");
                    }
                });
                publish_members(&p);
                remove_stale_endpoints(&p, &mut gone_since);
                if members_dirty {
                    save_members(&p);
                    members_dirty = false;
                }
            }
        }
        carry_out(&mut p, &mut timers, &mut members_dirty);
    }
}

fn carry_out(p: &mut MeshParts, timers: &mut BinaryHeap<Reverse<(Instant, TimerId)>>, dirty: &mut bool) {
    let mut changed = false;
    for out in p.core.drain() {
        match out {
            Output::Datagram { to, bytes } => p.transport.send_datagram(to, bytes),
            Output::Message { to, bytes } => p.transport.send_message(to, bytes),
            Output::Timer { after, id } => timers.push(Reverse((Instant::now() + after, id))),
            Output::MembersChanged => changed = true,
            Output::Merged(n) => tracing::debug!(records = n, "merged records from peers"),
        }
    }
    if changed {
        *dirty = true;
        publish_peers(p);
        publish_members(p);
    }
}

fn peer_state(s: MemberState) -> PeerState {
    match s {
        MemberState::Alive => PeerState::Alive,
        MemberState::Suspect => PeerState::Suspect,
        MemberState::Down | MemberState::Left => PeerState::Down,
    }
}

/// How a user reaches a registry's admin API, for the error a write on a proxy gets.
fn registry_hint(m: &MemberView, me: SocketAddr) -> String {
    match m.admin {
        // Loopback on another host: the address is right but only works over there.
        Some(a) if a.ip().is_loopback() && !m.addr.ip().is_loopback() && m.addr.ip() != me.ip() => {
            format!("{} (weft --admin {a}, on {}'s host: its admin API listens on loopback only)", m.name, m.name)
        }
        Some(a) => format!("{} (weft --admin {a})", m.name),
        None => format!("{} (gossip address {}; it did not announce an admin address)", m.name, m.addr),
    }
}

fn publish_peers(p: &MeshParts) {
    let me = p.catalog.node();
    let members = p.core.members();
    let registries: Vec<String> = members
        .iter()
        .chain(std::iter::once(&p.me))
        .filter(|m| m.role.writes_definitions() && m.state == MemberState::Alive)
        .map(|m| registry_hint(m, p.me.addr))
        .collect();
    p.catalog.update_registries(registries);
    let peers: HashMap<String, Peer> =
        members.into_iter().filter(|m| m.name != me).map(|m| (m.name, Peer { addr: m.addr, state: peer_state(m.state) })).collect();
    let before = p.peers.borrow().clone();
    for (name, peer) in peers.iter().filter(|(_, peer)| peer.state == PeerState::Down) {
        let was_down = before.as_ref().and_then(|b| b.get(name)).is_some_and(|b| b.state == PeerState::Down);
        // A verdict from others about a peer we heard from just now is not our evidence: its
        // connection may carry requests in flight (`gossip::local_health`).
        if !was_down && p.core.quiet(name) {
            p.transport.disconnect(peer.addr);
        }
    }
    p.peers.send_replace(Some(Arc::new(peers)));
}

fn publish_members(p: &MeshParts) {
    let me = p.catalog.node();
    let list = std::iter::once(p.me.clone())
        .chain(p.core.members())
        .map(|m| MemberReport {
            state: m.state.as_str(),
            address: m.addr,
            admin: m.admin,
            generation: m.generation,
            role: role_str(m.role),
            rtt_ms: (m.name != me).then(|| p.transport.rtt(m.addr)).flatten().map(|d| (d.as_secs_f64() * 100_000.0).round() / 100.0),
            myself: m.name == me,
            name: m.name,
        })
        .collect();
    let t = &p.transport.stats;
    let c = p.core.stats();
    let counters = [
        ("handshakes_rejected", t.handshakes_rejected.load(Relaxed)),
        ("handshakes_timed_out", t.handshakes_timed_out.load(Relaxed)),
        ("handshakes_aborted", t.handshakes_aborted.load(Relaxed)),
        ("handshakes_failed", t.handshakes_failed.load(Relaxed)),
        ("bad_streams", t.bad_streams.load(Relaxed)),
        ("datagrams_dropped", t.dropped_datagrams.load(Relaxed)),
        ("relayed_streams", t.relayed_streams.load(Relaxed)),
        ("bad_datagrams", c.bad_datagrams),
        ("bad_messages", c.bad_messages),
        ("rejected_records", c.rejected_records),
        ("corrupt_plugins", c.corrupt_plugins),
        ("invalid_records", c.invalid_records),
        ("records_merged", c.records_merged),
    ];
    p.stats.node.set_mesh(mesh_figures(p, &counters));
    let alive = std::iter::once(p.me.name.clone()).chain(p.core.members().into_iter().filter(|m| m.state == MemberState::Alive).map(|m| m.name)).collect();
    p.view.send_replace(MeshView { members: list, counters: counters.into_iter().collect(), alive, cert_expires: p.transport.cert_expires() });
}

/// What the telemetry registry keeps of the mesh: members by state, events, each peer's path.
fn mesh_figures(p: &MeshParts, counters: &[(&'static str, u64)]) -> crate::telemetry::MeshFigures {
    let mut f = crate::telemetry::MeshFigures::default();
    for s in ["alive", "suspect", "down"] {
        f.members.insert(s, 0);
    }
    *f.members.entry("alive").or_default() += 1;
    let me = p.catalog.node();
    for m in p.core.members().into_iter().filter(|m| m.name != me) {
        *f.members.entry(m.state.as_str()).or_default() += 1;
        if m.state != MemberState::Down
            && let Some(path) = p.transport.path(m.addr)
        {
            f.peers.insert(m.name.clone(), crate::telemetry::PeerFigures { rtt_s: Some(path.rtt.as_secs_f64()), lost_packets: path.lost_packets, sent_packets: path.sent_packets });
        }
    }
    f.events = counters.iter().copied().collect();
    let t = &p.transport.stats;
    f.tls_errors_target = t.handshakes_rejected.load(Relaxed);
    f.tls_errors_client = t.handshakes_failed.load(Relaxed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    f.cert_remaining_s = p.transport.cert_expires().map(|t| t as f64 - now);
    f.active_relays = t.active_relays.load(Relaxed);
    f.alias_conflicts = p.catalog.latest().alias_conflicts.len() as u64;
    let lag = p.stats.node.replication_lag_ms.load(Relaxed);
    f.replication_lag_s = (lag != u64::MAX).then(|| lag as f64 / 1000.0);
    f
}

fn save_members(p: &MeshParts) {
    let me = p.catalog.node();
    let list: Vec<MemberView> = p.core.members().into_iter().filter(|m| m.name != me).collect();
    match serde_json::to_vec(&list) {
        // On the gossip task (a runtime thread): queued, never waited for.
        Ok(bytes) => p.catalog.save_blob_background(MEMBERS_BLOB, &bytes),
        Err(e) => tracing::warn!(error = %e, "cannot encode the member list"),
    }
}

/// On registry nodes: endpoints of a node that has not been up (alive or suspect) for the grace
/// period are removed, as tombstones that replicate. Until then they only get no traffic, so a
/// node that comes back quickly keeps its registrations. "Not up" is down, left, or not listed
/// at all: foca forgets a down member after `remove_down_after` (60 s, like the grace), so a
/// clock kept per member entry was dropped with the entry and the endpoints stayed for good.
/// The clock is kept per owner name instead, for as long as that name owns endpoints here.
fn remove_stale_endpoints(p: &MeshParts, gone_since: &mut HashMap<String, Instant>) {
    if !p.me.role.writes_definitions() {
        return;
    }
    let me = p.catalog.node();
    let up: HashSet<String> = p.core.members().into_iter().filter(|m| m.state.is_up()).map(|m| m.name).collect();
    let snap = p.catalog.snapshot();
    let gone: HashSet<&str> = snap.endpoints.values().flatten().map(|e| e.node.as_str()).filter(|n| *n != me && !up.contains(*n)).collect();
    gone_since.retain(|name, _| gone.contains(name.as_str()));
    for name in &gone {
        gone_since.entry(name.to_string()).or_insert_with(Instant::now);
    }
    let expired: HashSet<&str> = gone_since.iter().filter(|(_, since)| since.elapsed() >= p.endpoint_grace).map(|(n, _)| n.as_str()).collect();
    if expired.is_empty() {
        return;
    }
    for ep in snap.endpoints.values().flatten().filter(|e| expired.contains(e.node.as_str())) {
        let key = Key::Endpoint(ep.namespace.clone(), ep.service.clone(), ep.id.clone());
        let state = p.core.member(&ep.node).map_or("no longer a member", |m| m.state.as_str());
        match p.catalog.delete_background(&key) {
            Ok(()) => tracing::info!(%key, node = %ep.node, node_state = state, "removed: its node has been down longer than the grace period"),
            Err(e) => tracing::warn!(%key, error = %e, "cannot remove endpoint of a down node"),
        }
    }
}
