//! A deterministic in-memory network for [`Core`]s, for tests and experiments: one seeded RNG,
//! simulated time in microseconds, a priority queue of deliveries with random latency, datagram
//! and message loss, partitions, crashes and restarts. Same seed, same run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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
}

enum Event {
    Deliver { to: usize, input: Input },
    Timer { node: usize, epoch: u32, id: TimerId },
}

struct Queued {
    at: Micros,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

pub struct Sim {
    pub now: Micros,
    pub nodes: Vec<SimNode>,
    pub cfg: SimConfig,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    rng: Pcg64Mcg,
    by_addr: HashMap<SocketAddr, usize>,
    /// Partition group per node: deliveries cross no group boundary.
    group: Vec<u32>,
    /// First time each node held the watched record version.
    pub reached: Vec<Option<Micros>>,
    watched: Option<(Key, u64)>,
    /// First time each node saw the watched member in one of the watched states.
    pub member_seen: Vec<Option<Micros>>,
    member_watch: Option<(String, Vec<MemberState>)>,
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
            queue: BinaryHeap::new(),
            seq: 0,
            rng: Pcg64Mcg::seed_from_u64(seed),
            by_addr: HashMap::new(),
            group: vec![0; n],
            reached: vec![None; n],
            watched: None,
            member_seen: vec![None; n],
            member_watch: None,
            sent: 0,
            dropped: 0,
        };
        for i in 0..n {
            let id = NodeId::new(format!("n{i}"), 1, addr_of(i, 7946), role(i));
            sim.by_addr.insert(id.addr, i);
            sim.nodes.push(SimNode { core: None, id, disk: Some(MemReplica::default()), persisted: Vec::new(), epoch: 0 });
            sim.boot(i);
        }
        sim
    }

    fn boot(&mut self, i: usize) {
        let seed = self.rng.next_u64();
        let node = &mut self.nodes[i];
        node.epoch += 1;
        let replica = node.disk.take().unwrap_or_default();
        node.core = Some(Core::new(node.id.clone(), self.cfg.gossip.clone(), replica, seed, self.now / 1000));
        self.flush(i);
    }

    pub fn core(&self, i: usize) -> &Core<MemReplica> {
        self.nodes[i].core.as_ref().expect("node is up")
    }

    /// Gives every up node a converged membership through `restore`: all other nodes, or `view`
    /// random ones (restoring all 999 peers into each of 1000 foca tables is O(n²) in foca).
    pub fn converge_membership(&mut self, view: Option<usize>) {
        let all: Vec<MemberView> = self.nodes.iter().map(|n| alive_view(&n.id)).collect();
        for i in 0..self.nodes.len() {
            let mut members: Vec<MemberView> = match view {
                None => all.clone(),
                Some(k) => (0..k).map(|_| all[self.below(all.len())].clone()).collect(),
            };
            members.retain(|m| m.name != self.nodes[i].id.name);
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

    pub fn watch_member(&mut self, name: &str, states: &[MemberState]) {
        self.member_watch = Some((name.to_string(), states.to_vec()));
        self.member_seen = vec![None; self.nodes.len()];
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
        while let Some(Reverse(q)) = self.queue.peek() {
            if q.at > end {
                break;
            }
            let Some(Reverse(q)) = self.queue.pop() else { break };
            self.now = q.at;
            match q.event {
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
        self.queue.push(Reverse(Queued { at, seq: self.seq, event }));
    }

    fn flush(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_mut() else { return };
        let outputs = core.drain();
        let (from, peer, epoch) = (self.nodes[i].id.addr, self.nodes[i].id.name.clone(), self.nodes[i].epoch);
        let (dg_loss, msg_loss) = (self.cfg.datagram_loss, self.cfg.message_loss);
        for o in outputs {
            match o {
                Output::Datagram { to, bytes } => self.send(i, to, dg_loss, |b| Input::Datagram { peer: peer.clone(), from, bytes: b }, bytes),
                Output::Message { to, bytes } => self.send(i, to, msg_loss, |b| Input::Message { peer: peer.clone(), from, bytes: b }, bytes),
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
        if let Some((name, states)) = &self.member_watch
            && self.member_seen[i].is_none()
            && core.member(name).is_some_and(|m| states.contains(&m.state))
        {
            self.member_seen[i] = Some(self.now);
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
    }
}
