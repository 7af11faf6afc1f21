//! A deterministic in-memory network for [`Core`]s, for tests and experiments: one seeded RNG,
//! simulated time in microseconds, a priority queue of deliveries with random latency, datagram
//! and message loss, partitions, crashes and restarts. Same seed, same run.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use rand_pcg::Pcg64Mcg;
use rand_pcg::rand_core::{Rng, SeedableRng};

use super::{Core, GossipConfig, Input, MemReplica, MemberState, MemberView, NodeId, Output, Role, TimerId};
use crate::catalog::{Key, Record};

pub type Micros = u64;

#[derive(Clone, Debug)]
pub struct SimConfig {
    /// One-way latency, uniform in this range.
    pub latency_us: (Micros, Micros),
    pub datagram_loss: f64,
    pub message_loss: f64,
    pub gossip: GossipConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { latency_us: (200, 2_000), datagram_loss: 0.0, message_loss: 0.0, gossip: GossipConfig::default() }
    }
}

pub struct SimNode {
    /// None while crashed.
    pub core: Option<Core<MemReplica>>,
    pub id: NodeId,
    /// The replica survives a crash, as the store on disk would.
    disk: Option<MemReplica>,
    /// What the driver persisted from `members()`; taken at the crash (a driver persists on
    /// MembersChanged, debounced; copying 1000 members per change would dominate the sim).
    persisted: Vec<MemberView>,
    epoch: u32,
    /// The namespaces its certificate would name (`scope`); `None`: every namespace.
    pub grants: super::Grants,
}

enum Event {
    Deliver { to: usize, input: Input },
    Timer { node: usize, epoch: u32, id: TimerId },
}

pub struct Sim {
    pub now: Micros,
    pub nodes: Vec<SimNode>,
    pub cfg: SimConfig,
    /// Pending events by (time, sequence): a BTreeMap pops the earliest, ties in send order.
    queue: BTreeMap<(Micros, u64), Event>,
    seq: u64,
    rng: Pcg64Mcg,
    by_addr: HashMap<SocketAddr, usize>,
    /// Partition group per node: deliveries cross no group boundary.
    group: Vec<u32>,
    /// First time each node held the watched record version.
    pub reached: Vec<Option<Micros>>,
    watched: Option<(Key, u64)>,
    /// First time each node saw the watched member Suspect or Down (no longer routable).
    pub suspected_at: Vec<Option<Micros>>,
    /// First time each node saw the watched member Down.
    pub down_at: Vec<Option<Micros>>,
    member_watch: Option<String>,
    pub sent: u64,
    pub dropped: u64,
}

pub fn addr_of(i: usize, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, (i / 250) as u8, (i % 250) as u8, 1), port))
}

impl Sim {
    /// `n` nodes named `n0..`, generation 1, not yet knowing each other.
    pub fn new(n: usize, cfg: SimConfig, seed: u64, role: impl Fn(usize) -> Role) -> Sim {
        let mut sim = Sim {
            now: 0,
            nodes: Vec::with_capacity(n),
            cfg,
            queue: BTreeMap::new(),
            seq: 0,
            rng: Pcg64Mcg::seed_from_u64(seed),
            by_addr: HashMap::new(),
            group: vec![0; n],
            reached: vec![None; n],
            watched: None,
            suspected_at: vec![None; n],
            down_at: vec![None; n],
            member_watch: None,
            sent: 0,
            dropped: 0,
        };
        for i in 0..n {
            let id = NodeId::new(format!("n{i}"), 1, addr_of(i, 7946), role(i));
            sim.by_addr.insert(id.addr, i);
            sim.nodes.push(SimNode { core: None, id, disk: Some(MemReplica::default()), persisted: Vec::new(), epoch: 0, grants: None });
            sim.boot(i);
        }
        sim
    }

    fn boot(&mut self, i: usize) {
        let seed = self.rng.next_u64();
        let node = &mut self.nodes[i];
        node.epoch += 1;
        let replica = node.disk.take().unwrap_or_default();
        let mut core = Core::new(node.id.clone(), self.cfg.gossip.clone(), replica, seed, self.now / 1000);
        core.set_own_grants(node.grants.clone());
        node.core = Some(core);
        self.flush(i);
    }

    /// Gives node `i` a certificate naming only `namespaces`, as of now.
    pub fn scope(&mut self, i: usize, namespaces: &[&str]) {
        let grants: super::Grants = Some(std::sync::Arc::new(namespaces.iter().map(|n| n.to_string()).collect()));
        self.nodes[i].grants = grants.clone();
        if let Some(c) = self.nodes[i].core.as_mut() {
            c.set_own_grants(grants);
        }
    }

    pub fn core(&self, i: usize) -> &Core<MemReplica> {
        self.nodes[i].core.as_ref().expect("node is up")
    }

    /// Gives every node a converged membership through `restore`: all other nodes, or a random
    /// *symmetric* view of about `view` peers (if a knows b, b knows a). Restoring all 999 peers
    /// into each of 1000 foca tables is O(n²) scans, too slow for a debug build; a one-way
    /// partial view would make every probe teach its target a new member, and foca broadcasts
    /// each one: an O(n²) learning storm that also skews who is in whose view.
    /// The restores are spread over one probe period, so probe cycles are not in lockstep.
    pub fn converge_membership(&mut self, view: Option<usize>) {
        let n = self.nodes.len();
        let mut peers: Vec<std::collections::BTreeSet<usize>> = vec![Default::default(); n];
        for i in 0..n {
            match view {
                None => peers[i] = (0..n).filter(|&j| j != i).collect(),
                Some(k) => {
                    for _ in 0..k / 2 {
                        let j = self.below(n);
                        if j != i {
                            peers[i].insert(j);
                            peers[j].insert(i);
                        }
                    }
                }
            }
        }
        let step = self.cfg.gossip.probe_period.as_micros() as Micros / n.max(1) as Micros;
        for (i, mine) in peers.into_iter().enumerate() {
            self.run_for(step);
            let members = mine.into_iter().map(|j| alive_view(&self.nodes[j].id)).collect();
            let now = self.now / 1000;
            if let Some(core) = self.nodes[i].core.as_mut() {
                core.restore(members, now);
            }
            self.flush(i);
        }
    }

    /// Delivers an input to node `i` now and routes what it produced.
    pub fn handle(&mut self, i: usize, input: Input) {
        let now = self.now / 1000;
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.handle(input, now);
        }
        self.flush(i);
    }

    /// A local write on node `i`: into its replica, then pushed.
    pub fn write(&mut self, i: usize, r: Record) {
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.replica_mut().put(r.clone());
        }
        self.handle(i, Input::LocalChange(vec![r]));
    }

    pub fn watch_record(&mut self, key: Key, hlc: u64) {
        self.watched = Some((key, hlc));
        self.reached = vec![None; self.nodes.len()];
        for i in 0..self.nodes.len() {
            self.check_record(i);
        }
    }

    pub fn watch_member(&mut self, name: &str) {
        self.member_watch = Some(name.to_string());
        self.suspected_at = vec![None; self.nodes.len()];
        self.down_at = vec![None; self.nodes.len()];
    }

    /// Drops all of node `i`'s state but its replica and persisted members.
    pub fn crash(&mut self, i: usize) {
        if let Some(core) = self.nodes[i].core.take() {
            self.nodes[i].persisted = core.members();
            self.nodes[i].disk = Some(core.into_replica());
        }
    }

    /// Starts node `i` again with generation + 1 (optionally on a new address), restoring the
    /// members it had persisted.
    pub fn restart(&mut self, i: usize, addr: Option<SocketAddr>) {
        self.crash(i);
        let node = &mut self.nodes[i];
        node.id.generation += 1;
        if let Some(a) = addr {
            self.by_addr.retain(|_, n| *n != i);
            node.id.addr = a;
            self.by_addr.insert(a, i);
        }
        let persisted = node.persisted.clone();
        self.boot(i);
        let now = self.now / 1000;
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.restore(persisted, now);
        }
        self.flush(i);
    }

    /// Nodes in different groups cannot talk (both channels); `heal` puts everyone back in one.
    pub fn partition(&mut self, group: impl Fn(usize) -> u32) {
        self.group = (0..self.nodes.len()).map(group).collect();
    }

    pub fn heal(&mut self) {
        self.group = vec![0; self.nodes.len()];
    }

    pub fn run_for(&mut self, us: Micros) {
        self.run_until(self.now + us, |_| false);
    }

    /// Runs events up to `end`, or until `stop` says so (checked after each event); returns
    /// whether `stop` fired.
    pub fn run_until(&mut self, end: Micros, mut stop: impl FnMut(&Sim) -> bool) -> bool {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > end {
                break;
            }
            let ((at, _), event) = entry.remove_entry();
            self.now = at;
            match event {
                Event::Deliver { to, input } => {
                    self.handle(to, input);
                    self.check_record(to);
                }
                Event::Timer { node, epoch, id } => {
                    if self.nodes[node].epoch == epoch {
                        self.handle(node, Input::Timer(id));
                    }
                }
            }
            if stop(self) {
                return true;
            }
        }
        self.now = self.now.max(end);
        false
    }

    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.rng.next_u64()) * n as u128) >> 64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    fn push(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    fn flush(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_mut() else { return };
        let outputs = core.drain();
        let (from, peer, epoch) = (self.nodes[i].id.addr, self.nodes[i].id.name.clone(), self.nodes[i].epoch);
        let grants = self.nodes[i].grants.clone();
        let (dg_loss, msg_loss) = (self.cfg.datagram_loss, self.cfg.message_loss);
        for o in outputs {
            match o {
                Output::Datagram { to, bytes } => self.send(i, to, dg_loss, |b| Input::Datagram { peer: peer.clone(), from, bytes: b }, bytes),
                Output::Message { to, bytes } => self.send(i, to, msg_loss, |b| Input::Message { peer: peer.clone(), from, bytes: b, grants: grants.clone() }, bytes),
                Output::Timer { after, id } => self.push(self.now + after.as_micros() as Micros, Event::Timer { node: i, epoch, id }),
                Output::MembersChanged => self.members_changed(i),
                Output::Merged(_) => {}
            }
        }
    }

    fn send(&mut self, from: usize, to: SocketAddr, loss: f64, input: impl FnOnce(Bytes) -> Input, bytes: Bytes) {
        self.sent += 1;
        let Some(&j) = self.by_addr.get(&to) else {
            self.dropped += 1;
            return;
        };
        if self.group[from] != self.group[j] || self.chance(loss) {
            self.dropped += 1;
            return;
        }
        let (lo, hi) = self.cfg.latency_us;
        let at = self.now + lo + self.below((hi - lo + 1) as usize) as Micros;
        self.push(at, Event::Deliver { to: j, input: input(bytes) });
    }

    fn members_changed(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_ref() else { return };
        let Some(state) = self.member_watch.as_ref().and_then(|name| core.member(name)).map(|m| m.state) else { return };
        if state != MemberState::Alive {
            self.suspected_at[i].get_or_insert(self.now);
        }
        if state == MemberState::Down {
            self.down_at[i].get_or_insert(self.now);
        }
    }

    fn check_record(&mut self, i: usize) {
        let (Some((key, hlc)), Some(core)) = (&self.watched, self.nodes[i].core.as_ref()) else { return };
        if self.reached[i].is_none() && core.replica().get(key).is_some_and(|r| r.version.hlc >= *hlc) {
            self.reached[i] = Some(self.now);
        }
    }
}

pub fn alive_view(id: &NodeId) -> MemberView {
    MemberView {
        name: id.name.clone(),
        generation: id.generation,
        addr: id.addr,
        role: id.role,
        state: MemberState::Alive,
        since: 0,
        renewal: id.renewal,
        incarnation: 0,
        admin: id.admin,
    }
}
