//! The routing table: what the listeners need from a catalog snapshot, precomputed so the request
//! path does one atomic load and no lookups by name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::budget::RetryBudget;
use crate::catalog::{Health, LbKind, Protocol, RetryConfig, RouteRule, Service, Snapshot};
use crate::policy::{Plugin, PluginSource, ServicePolicy};
use crate::policy::Target;
use crate::telemetry::access::{AccessLog, ServiceLog};
use crate::telemetry::{EjectionRule, ServiceStats, Stats, now_us};

type ServiceKey = (String, String);

/// Everything needed to carry one request or connection of a service.
#[derive(Debug)]
pub struct ServiceRoute {
    pub namespace: String,
    pub service: String,
    pub protocol: Protocol,
    pub connect_timeout: Duration,
    pub request_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub targets: Vec<Arc<Target>>,
    pub cursor: Arc<AtomicUsize>,
    pub stats: Arc<ServiceStats>,
    pub lb: LbKind,
    pub retry: RetryConfig,
    pub ejection: EjectionRule,
    pub max_ejected_percent: u32,
    pub budget: Arc<RetryBudget>,
    /// The service's setting rules with their settings worked out, in match order.
    pub rules: Vec<RuleRoute>,
    /// Its hooks: the built-in ones, with its plugin's where it exports them.
    pub policy: ServicePolicy,
    /// The node's access log, when this service's requests go to it.
    pub access: Option<ServiceLog>,
    /// Whether the service admits this node as a caller (`crate::authz`); when not, every request
    /// is refused here, before any endpoint is picked.
    pub permitted: bool,
    /// This node's name, for a refusal's message.
    pub caller: Arc<str>,
}

/// One route rule, ready for the request path.
#[derive(Debug)]
pub struct RuleRoute {
    pub rule: RouteRule,
    pub retry: RetryConfig,
    pub request_timeout: Option<Duration>,
}

/// What governs one request: the first matching rule's settings, or the service's.
#[derive(Clone, Copy, Debug)]
pub struct Settings<'a> {
    pub retry: &'a RetryConfig,
    pub request_timeout: Option<Duration>,
    /// A rule's word on whether the request may be repeated; `None`: its method decides.
    pub idempotent: Option<bool>,
}

impl ServiceRoute {
    /// The settings for a request with this method, path (no query) and headers.
    pub fn settings<'h>(&self, method: &str, path: &str, header: impl Fn(&str) -> Option<&'h [u8]> + Copy) -> Settings<'_> {
        match self.rules.iter().find(|r| r.rule.matches(method, path, header)) {
            Some(r) => Settings { retry: &r.retry, request_timeout: r.request_timeout, idempotent: r.rule.idempotent },
            None => self.defaults(),
        }
    }

    /// The service's own settings (no rule matched, or the service has none).
    pub fn defaults(&self) -> Settings<'_> {
        Settings { retry: &self.retry, request_timeout: self.request_timeout, idempotent: None }
    }

    pub fn label(&self) -> String {
        format!("{}/{}", self.namespace, self.service)
    }

    /// Whether one more endpoint may be ejected: at most `max_ejected_percent` of them (but at
    /// least one, as in Envoy), so detection cannot empty a service.
    pub fn may_eject(&self) -> bool {
        let now = now_us();
        let ejected = self.targets.iter().filter(|t| t.ejected(now)).count();
        let cap = (self.targets.len() * self.max_ejected_percent as usize / 100).max(usize::from(self.max_ejected_percent > 0));
        ejected < cap
    }
}

/// One alias listener: `VIP:port` → service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    pub dns_name: String,
    pub service: ServiceKey,
    pub protocol: Protocol,
}

#[derive(Debug, Default)]
pub struct RoutingTable {
    pub services: HashMap<ServiceKey, Arc<ServiceRoute>>,
    /// The same routes by namespace, then name: what a request's route phase looks up by
    /// borrowed names (a `(String, String)` key cost two allocations per rerouted request).
    by_namespace: HashMap<String, HashMap<String, Arc<ServiceRoute>>>,
    pub listeners: BTreeMap<SocketAddr, ListenerSpec>,
    /// Alias name → VIP, for the DNS responder and the hosts file.
    pub names: HashMap<String, Ipv4Addr>,
}

impl RoutingTable {
    /// A service's route, by borrowed names.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Arc<ServiceRoute>> {
        self.by_namespace.get(namespace)?.get(name)
    }
}

/// How this node sees another node of the mesh, as far as routing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    Alive,
    /// Missed probes: its endpoints get traffic only when no other endpoint is left.
    Suspect,
    /// Declared down: its endpoints get no new traffic at all.
    Down,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub state: PeerState,
}

/// The mesh as routing sees it: every other node by name. `None` when this node is not part of
/// a mesh, and every endpoint is reached directly.
pub type Peers = Option<Arc<HashMap<String, Peer>>>;

/// The plugin a service names, if it is loaded; a missing one leaves the built-in hooks (and is
/// reported by `weft plugin list` and the log).
fn policy_of(svc: &Service, plugins: &dyn PluginSource) -> Option<Arc<dyn Plugin>> {
    let name = svc.policy.as_deref()?;
    let found = plugins.plugin(name);
    if found.is_none() {
        tracing::warn!(service = %format!("{}/{}", svc.namespace, svc.name), plugin = name, "the service's policy plugin is not loaded on this node; it runs with the built-in policy");
    }
    found
}

fn secs(s: u64) -> Option<Duration> {
    (s > 0).then(|| Duration::from_secs(s))
}

/// What a service's route keeps across table rebuilds.
#[derive(Default)]
struct Kept {
    cursor: Arc<AtomicUsize>,
    budget: Arc<RetryBudget>,
}

/// Builds tables and keeps what must outlive one table (round-robin positions, retry budgets).
#[derive(Default)]
pub struct TableBuilder {
    /// The node's access log writer (services that want it get a handle).
    pub access: Option<Arc<AccessLog>>,
    kept: HashMap<ServiceKey, Kept>,
}

impl TableBuilder {
    pub fn with_access(access: Option<Arc<AccessLog>>) -> TableBuilder {
        TableBuilder { access, ..TableBuilder::default() }
    }

    /// `clients`: when not empty, only these namespaces get listeners and names on this host.
    /// `me` is this node (its name and certificate grants): its endpoints are dialled directly,
    /// others through their node; a service that does not admit it gets no traffic from here.
    /// `plugins`: where a service's `policy` is found.
    pub fn build(&mut self, snap: &Snapshot, stats: &Stats, clients: &HashSet<String>, me: &crate::authz::Identity, peers: &Peers, plugins: &dyn PluginSource) -> RoutingTable {
        let mut table = RoutingTable::default();
        let caller: Arc<str> = me.node.as_str().into();
        let identity = me;
        let me = identity.node.as_str();
        for (key, svc) in &snap.services {
            let targets = snap
                .endpoints_of(&svc.namespace, &svc.name)
                .iter()
                .filter_map(|e| {
                    // A node we cannot reach (down, or never heard of) gets no traffic; a suspect
                    // one only if nothing better is left (the policy prefers healthy endpoints).
                    let (via, reachable) = match peers {
                        Some(peers) if e.node != me => match peers.get(&e.node) {
                            Some(p) if p.state != PeerState::Down => (Some(p.addr), p.state == PeerState::Alive),
                            _ => {
                                // Out of service like an unhealthy one, so that when its node is
                                // back it starts afresh (below) rather than still ejected.
                                stats.endpoint(&e.namespace, &e.service, &e.id).routable.store(false, std::sync::atomic::Ordering::Relaxed);
                                return None;
                            }
                        },
                        _ => (None, true),
                    };
                    Some((e, via, reachable))
                })
                .enumerate()
                .map(|(i, (e, via, reachable))| {
                    let stats = stats.endpoint(&e.namespace, &e.service, &e.id);
                    let healthy = e.routable() && reachable;
                    // Back in service (healthy again, node back, drain undone): it starts afresh,
                    // not ejected and priced like the others, instead of paying for the failures
                    // that took it out.
                    if healthy && !stats.routable.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        stats.ejection.clear();
                        stats.load.clear();
                    } else if !healthy {
                        stats.routable.store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                    Arc::new(Target {
                        index: i as u32,
                        id: e.id.clone(),
                        node: e.node.clone(),
                        zone: e.zone.clone(),
                        address: e.address,
                        via,
                        attributes: e.attributes.clone(),
                        healthy,
                        unchecked: e.health == Health::Unknown,
                        stats,
                        texts: Default::default(),
                    })
                })
                .collect();
            let kept = self.kept.entry(key.clone()).or_default();
            let o = &svc.outlier;
            let route = ServiceRoute {
                namespace: svc.namespace.clone(),
                service: svc.name.clone(),
                protocol: svc.protocol,
                connect_timeout: Duration::from_millis(svc.timeouts.connect_ms()),
                request_timeout: secs(svc.timeouts.request_s(svc.protocol)),
                idle_timeout: secs(svc.timeouts.idle_s(svc.protocol)),
                targets,
                cursor: kept.cursor.clone(),
                stats: stats.service(&svc.namespace, &svc.name),
                lb: svc.lb,
                retry: svc.retry.clone(),
                ejection: EjectionRule {
                    consecutive_failures: o.consecutive_failures,
                    base: Duration::from_secs(o.base_ejection_s),
                    max: Duration::from_secs(o.max_ejection_s),
                },
                max_ejected_percent: o.max_ejected_percent,
                budget: kept.budget.clone(),
                policy: ServicePolicy::new(&svc.rules, policy_of(svc, plugins)),
                permitted: crate::authz::permits(&svc.namespace, svc.allow.as_ref(), identity),
                caller: caller.clone(),
                access: self.access.as_ref().filter(|l| svc.access_log.unwrap_or(l.default_on)).map(|l| ServiceLog { log: l.clone(), namespace: svc.namespace.as_str().into(), service: svc.name.as_str().into() }),
                rules: svc
                    .rules
                    .iter()
                    .filter(|r| !r.routes())
                    .map(|r| RuleRoute {
                        rule: r.clone(),
                        retry: r.retry.apply(&svc.retry),
                        request_timeout: match r.request_s {
                            Some(s) => secs(s),
                            None => secs(svc.timeouts.request_s(svc.protocol)),
                        },
                    })
                    .collect(),
            };
            let route = Arc::new(route);
            table.by_namespace.entry(key.0.clone()).or_default().insert(key.1.clone(), route.clone());
            table.services.insert(key.clone(), route);
            if !clients.is_empty() && !clients.contains(&svc.namespace) {
                continue;
            }
            for a in &svc.aliases {
                let Some(vip) = snap.vips.get(&a.dns_name) else { continue };
                table.names.insert(a.dns_name.clone(), *vip);
                let addr = SocketAddr::V4(SocketAddrV4::new(*vip, a.port));
                table.listeners.insert(addr, ListenerSpec { dns_name: a.dns_name.clone(), service: key.clone(), protocol: svc.protocol });
            }
        }
        self.kept.retain(|k, _| table.services.contains_key(k));
        table
    }
}
