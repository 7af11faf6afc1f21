//! A plugin's answers as the data path applies them, and the answers it keeps.
//!
//! A call into a WebAssembly plugin costs ~0.5–1 µs hot and ~2 µs in a busy node (its code and
//! the proxy's evict each other from the caches), against ~8 µs of CPU for a whole proxied
//! HTTP/1.1 request: a plugin called on every request cost 11–15 % of the throughput
//! (BENCHMARKS.md, "Plugins"). So a hook may say its answer holds for every request of the
//! service with the same values of the headers it reads (`reuse = same-headers`); the service's
//! policy keeps such answers ([`Kept`]) and applies them again — the weighted draw and the
//! plugin's counters done by the host — without calling the plugin. The policy is rebuilt with
//! every routing table, so a kept answer never outlives a change of the service's endpoints,
//! their health or the plugin.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::{Candidates, Headers, RequestInfo, WantedHeader};

/// A plugin counter the host bumps for the plugin.
pub type Counter = Arc<AtomicU64>;

/// Answers a plugin's hooks gave again from [`Kept`] without being called.
#[derive(Debug, Default)]
pub struct Reused {
    pub route: AtomicU64,
    pub pick: AtomicU64,
}

/// For which requests an answer holds (the WIT's `reuse`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// This request only.
    Request,
    /// Every request of the service with the same values of the plugin's wanted headers.
    SameHeaders,
}

/// `route`'s answer.
#[derive(Clone, Debug)]
pub struct RouteDecision {
    /// Another service of the namespace; `None` keeps the request's.
    pub to: Option<Arc<str>>,
    /// The share of requests sent to `to`, in hundredths of a percent (10,000: all).
    pub share: u16,
    pub count_to: Option<Counter>,
    pub count_kept: Option<Counter>,
    pub reuse: Reuse,
}

impl RouteDecision {
    /// Keeps the service, counting nothing: what a plugin that routes nothing answers.
    pub fn keep() -> RouteDecision {
        RouteDecision { to: None, share: 0, count_to: None, count_kept: None, reuse: Reuse::Request }
    }

    /// This request's destination: drawn against `share`, counted. Shared, not copied: a
    /// kept answer applies to every request with its header values.
    pub fn apply(&self) -> Option<Arc<str>> {
        let to = self.to.as_ref().filter(|_| drawn(self.share));
        let counter = if to.is_some() { &self.count_to } else { &self.count_kept };
        if let Some(c) = counter {
            c.fetch_add(1, Relaxed);
        }
        to.cloned()
    }
}

/// Whether a request goes to a route's destination, by a random draw against its share (in
/// hundredths of a percent): the one draw of the built-in routing rules and plugins' decisions.
pub fn drawn(share: u16) -> bool {
    share >= 10_000 || (share > 0 && rand::random_range(0..10_000u16) < share)
}

/// `pick-endpoint`'s choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    /// The built-in balancer over all candidates.
    Any,
    /// This candidate (`Target::index`).
    One(u32),
    /// The built-in balancer over these candidates, or over all when none of them is eligible.
    Among(Vec<u32>),
}

#[derive(Clone, Debug)]
pub struct PickDecision {
    pub pick: Pick,
    pub count: Option<Counter>,
    pub reuse: Reuse,
}

impl PickDecision {
    pub fn any() -> PickDecision {
        PickDecision { pick: Pick::Any, count: None, reuse: Reuse::Request }
    }

    /// The endpoint chosen for this request, or `None` to leave the choice to the built-in
    /// balancer over all candidates; `builtin` is that balancer, asked here over a subset.
    pub fn apply(&self, c: &Candidates<'_>, builtin: impl Fn(&Candidates<'_>) -> Option<u32>) -> Option<u32> {
        if let Some(counter) = &self.count {
            counter.fetch_add(1, Relaxed);
        }
        match &self.pick {
            Pick::Any => None,
            // A plugin may only choose among the candidates it was shown.
            Pick::One(i) => c.targets.iter().any(|t| t.index == *i && !c.excluded.contains(i)).then_some(*i),
            // Every candidate listed: the built-in choice as it is (no subset to make).
            Pick::Among(ids) if c.targets.iter().all(|t| ids.contains(&t.index)) => builtin(c),
            Pick::Among(ids) => {
                let listed = |i: usize| ids.contains(&c.targets[i].index);
                if !(0..c.targets.len()).any(|i| listed(i) && c.eligible(i)) {
                    return None;
                }
                // The others are excluded for this choice: the built-in balancer, with its ranks,
                // zone preference and load, chooses among the listed ones. On the stack for the
                // usual few endpoints (this runs for every request a kept answer decides).
                let others = c.targets.iter().filter(|t| !ids.contains(&t.index)).map(|t| t.index);
                let mut small = [0u32; 32];
                let n = c.excluded.len() + c.targets.len();
                let mut large = Vec::new();
                let excluded: &[u32] = if n <= small.len() {
                    let mut len = 0;
                    for (slot, i) in small.iter_mut().zip(c.excluded.iter().copied().chain(others)) {
                        *slot = i;
                        len += 1;
                    }
                    &small[..len]
                } else {
                    large.extend(c.excluded.iter().copied().chain(others));
                    &large
                };
                builtin(&Candidates { excluded, ..*c })
            }
        }
    }
}

/// Kept answers per shard; past this a shard starts afresh (a header with many values, e.g. a
/// user id, then calls the plugin for most requests instead of growing the memory).
const SHARD_ENTRIES: usize = 256;
/// Header values longer than this together are not kept (the key would be as long).
const MAX_KEY: usize = 512;
/// Shards, so that worker threads do not share a lock: each thread uses its own.
const SHARDS: usize = 8;
/// Answers are kept by the values of at most this many wanted headers; a plugin that names more
/// is called for every request (`Loaded` warns when it loads one).
pub const MAX_WANTED: usize = 8;

/// The answers a service's policy keeps, by hook and the wanted headers' values.
#[derive(Default)]
pub struct Kept {
    shards: [Shard; SHARDS],
}

#[derive(Default)]
#[repr(align(128))]
struct Shard {
    route: Mutex<Answers<RouteDecision>>,
    pick: Mutex<Answers<PickDecision>>,
}

/// A request's values of the wanted headers, in the manifest's order (`None`: absent), borrowed
/// from the request: looking a kept answer up copies nothing. (A key written into a per-thread
/// buffer and the thread-local `RefCell` holding it were ~170 of the ~640 instructions a kept
/// route added to an HTTP/1.1 request: callgrind, benches/plugin.sh. Filled in place: returned
/// by value, these 136 bytes were copied twice.)
struct Values<'a> {
    v: [Option<&'a [u8]>; MAX_WANTED],
    n: usize,
}

impl<'a> Values<'a> {
    /// Reads the values into `self`; false when the answer cannot be kept: more than
    /// [`MAX_WANTED`] headers, or values longer than [`MAX_KEY`] together.
    fn read(&mut self, wanted: &[WantedHeader], headers: &Headers<'a>) -> bool {
        if wanted.len() > MAX_WANTED {
            return false;
        }
        let mut len = 0;
        for (slot, w) in self.v.iter_mut().zip(wanted) {
            *slot = headers.wanted(w);
            len += slot.map_or(0, <[u8]>::len);
        }
        self.n = wanted.len();
        len <= MAX_KEY
    }

    fn get(&self) -> &[Option<&'a [u8]>] {
        &self.v[..self.n]
    }

    fn is(&self, key: &[Option<Box<[u8]>>]) -> bool {
        key.len() == self.n && key.iter().zip(self.get()).all(|(k, v)| k.as_deref() == *v)
    }

    fn owned(&self) -> Key {
        self.get().iter().map(|v| v.map(Box::from)).collect()
    }

    /// The values as one map key: each present value length-prefixed, an absent one a 0.
    fn encoded(&self) -> Box<[u8]> {
        let mut key = Vec::with_capacity(self.get().iter().map(|v| 5 + v.map_or(0, <[u8]>::len)).sum());
        for v in self.get() {
            match v {
                None => key.push(0),
                Some(v) => {
                    key.push(1);
                    key.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    key.extend_from_slice(v);
                }
            }
        }
        key.into()
    }
}

/// Kept answers by their headers' values: the first few in a list scanned in order (a plugin
/// usually has a handful of header values to tell apart, and comparing a few short values costs
/// less than hashing them), the rest in a map.
struct Answers<D> {
    few: Vec<(Key, D)>,
    map: Map<D>,
}

/// A kept answer's header values, owned.
type Key = Box<[Option<Box<[u8]>>]>;

/// How many answers the list holds before the map takes the rest.
const FEW: usize = 8;

/// foldhash, not SipHash: a kept answer is looked up on every request and its key is a few bytes
/// (a kept route, in-process: 90 ns with SipHash, 86 with foldhash). Seeded per process; a shard
/// holds at most [`SHARD_ENTRIES`], so even colliding keys cost a bounded scan. Keyed by the
/// encoded values, so a lookup there allocates its key: only a service whose requests carry more
/// than [`FEW`] different values pays that.
type Map<D> = HashMap<Box<[u8]>, D, foldhash::fast::RandomState>;

impl<D> Default for Answers<D> {
    fn default() -> Self {
        Answers { few: Vec::new(), map: Map::default() }
    }
}

impl<D> Answers<D> {
    fn get(&self, values: &Values<'_>) -> Option<&D> {
        match self.few.iter().find(|(k, _)| values.is(k)) {
            Some((_, d)) => Some(d),
            None if self.map.is_empty() => None,
            None => self.map.get(&values.encoded()),
        }
    }

    fn len(&self) -> usize {
        self.few.len() + self.map.len()
    }

    fn insert(&mut self, values: &Values<'_>, d: D) {
        if self.len() >= SHARD_ENTRIES {
            self.few.clear();
            self.map.clear();
        }
        if let Some(slot) = self.few.iter_mut().find(|(k, _)| values.is(k)) {
            slot.1 = d;
        } else if self.few.len() < FEW {
            self.few.push((values.owned(), d));
        } else {
            self.map.insert(values.encoded(), d);
        }
    }
}

thread_local! {
    /// This thread's shard (`usize::MAX` until its first use). A const thread-local: reading
    /// it is one load, with no lazy initialisation to check.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl Kept {
    /// The route for this request: a kept answer applied, or `call`'s (kept when it says so).
    /// An error is `call`'s: a failed call keeps nothing.
    pub fn route<E>(&self, wanted: &[WantedHeader], headers: &Headers<'_>, reused: &AtomicU64, call: impl FnOnce() -> Result<RouteDecision, E>) -> Result<Option<Arc<str>>, E> {
        self.answer(|s| &s.route, wanted, headers, reused, call, |d| d.reuse, RouteDecision::apply)
    }

    /// The endpoint for this request's first try: as [`Kept::route`], for `pick-endpoint`. A
    /// later try (some candidates excluded) always calls the plugin.
    pub fn pick<E>(&self, wanted: &[WantedHeader], req: &RequestInfo<'_>, c: &Candidates<'_>, reused: &AtomicU64, call: impl FnOnce() -> Result<PickDecision, E>, builtin: impl Fn(&Candidates<'_>) -> Option<u32>) -> Result<Option<u32>, E> {
        if !c.excluded.is_empty() {
            return Ok(call()?.apply(c, builtin));
        }
        self.answer(|s| &s.pick, wanted, &req.headers, reused, call, |d| d.reuse, |d| d.apply(c, &builtin))
    }

    /// A kept answer of this thread's shard applied (under the lock: nobody else uses the
    /// shard, so nobody waits on it), or `call`'s, kept when it says so.
    #[allow(clippy::too_many_arguments)]
    fn answer<D, R, E>(&self, answers: impl Fn(&Shard) -> &Mutex<Answers<D>>, wanted: &[WantedHeader], headers: &Headers<'_>, reused: &AtomicU64, call: impl FnOnce() -> Result<D, E>, reuse: impl Fn(&D) -> Reuse, apply: impl Fn(&D) -> R) -> Result<R, E> {
        let (answers, mut values) = (answers(self.shard()), Values { v: [None; MAX_WANTED], n: 0 });
        let keep = values.read(wanted, headers);
        if keep && let Some(d) = lock(answers).get(&values) {
            reused.fetch_add(1, Relaxed);
            return Ok(apply(d));
        }
        let d = call()?;
        let r = apply(&d);
        if keep && reuse(&d) == Reuse::SameHeaders {
            lock(answers).insert(&values, d);
        }
        Ok(r)
    }

    /// This thread's shard: threads take shards in turn at their first use.
    fn shard(&self) -> &Shard {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let i = SHARD.with(|s| match s.get() {
            usize::MAX => {
                let i = NEXT.fetch_add(1, Relaxed) % SHARDS;
                s.set(i);
                i
            }
            i => i,
        });
        &self.shards[i % SHARDS]
    }
}

/// A shard's answers, locked (a panic elsewhere while one was held left nothing half-written:
/// insert and lookups do not unwind midway).
fn lock<D>(answers: &Mutex<Answers<D>>) -> std::sync::MutexGuard<'_, Answers<D>> {
    answers.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::catalog::{LbKind, RetryConfig};
    use crate::policy::{Builtin, Headers, Policy, Target};

    static RETRY: std::sync::LazyLock<RetryConfig> = std::sync::LazyLock::new(RetryConfig::default);

    fn req<'a>(headers: Headers<'a>) -> RequestInfo<'a> {
        RequestInfo { namespace: "ns", service: "api", method: "GET", authority: "".into(), path: "/".into(), headers, attempt: 1, idempotent: true, source_zone: "", retry: &RETRY }
    }

    fn targets(n: u32) -> Vec<Arc<Target>> {
        (0..n)
            .map(|i| {
                Arc::new(Target {
                    index: i,
                    id: format!("e{i}"),
                    node: "n".into(),
                    zone: String::new(),
                    address: "127.0.0.1:1".parse().unwrap(),
                    via: None,
                    attributes: BTreeMap::new(),
                    healthy: i != 3,
                    unchecked: false,
                    stats: Default::default(),
                    texts: Default::default(),
                })
            })
            .collect()
    }

    fn kept_route(share: u16, reuse: Reuse, counter: &Counter) -> RouteDecision {
        RouteDecision { to: Some("api-v2".into()), share, count_to: Some(counter.clone()), count_kept: None, reuse }
    }

    #[test]
    fn a_share_is_drawn_in_hundredths_of_a_percent() {
        let hits = |share| (0..10_000).filter(|_| drawn(share)).count();
        let tenth = hits(1_000);
        assert!((700..=1300).contains(&tenth), "{tenth} of 10,000 at 10 %");
        assert_eq!((hits(0), hits(10_000), hits(u16::MAX)), (0, 10_000, 10_000));
    }

    #[test]
    fn a_kept_route_is_applied_without_a_call_per_header_value() {
        let (kept, reused, counter) = (Kept::default(), AtomicU64::new(0), Counter::default());
        let wanted = [WantedHeader::new("x-canary")];
        let mut h = http::HeaderMap::new();
        let mut calls = 0;
        for _ in 0..100 {
            let to = kept.route::<()>(&wanted, &Headers::Map(&h), &reused, || {
                calls += 1;
                Ok(kept_route(10_000, Reuse::SameHeaders, &counter))
            });
            assert_eq!(to, Ok(Some("api-v2".into())));
        }
        h.insert("x-canary", "1".parse().unwrap());
        let other = kept.route::<()>(&wanted, &Headers::Map(&h), &reused, || {
            calls += 1;
            Ok(RouteDecision { reuse: Reuse::SameHeaders, ..RouteDecision::keep() })
        });
        assert_eq!((other, calls), (Ok(None), 2), "a new header value is a new question");
        assert_eq!((reused.load(Relaxed), counter.load(Relaxed)), (99, 100), "the host counts every request it routes");
    }

    #[test]
    fn an_answer_for_one_request_or_a_failed_call_is_not_kept() {
        let (kept, reused, counter) = (Kept::default(), AtomicU64::new(0), Counter::default());
        let mut calls = 0;
        for _ in 0..5 {
            let _ = kept.route::<()>(&[], &Headers::None, &reused, || {
                calls += 1;
                Ok(kept_route(10_000, Reuse::Request, &counter))
            });
            assert_eq!(kept.route(&[], &Headers::None, &reused, || Err("trap")), Err("trap"));
        }
        assert_eq!((calls, reused.load(Relaxed)), (5, 0));
    }

    #[test]
    fn the_share_is_drawn_for_each_request() {
        let (kept, reused, counter) = (Kept::default(), AtomicU64::new(0), Counter::default());
        let routed = (0..10_000).filter(|_| kept.route::<()>(&[], &Headers::None, &reused, || Ok(kept_route(1_000, Reuse::SameHeaders, &counter))).unwrap().is_some()).count();
        assert!((850..1150).contains(&routed), "10 % of 10,000: {routed}");
        assert_eq!(counter.load(Relaxed), routed as u64);
    }

    #[test]
    fn among_lets_the_balancer_choose_within_the_list_or_among_all() {
        let ts = targets(4);
        let cursor = AtomicUsize::new(0);
        let c = Candidates { targets: &ts, excluded: &[], timed_out: &[], cursor: &cursor, lb: LbKind::RoundRobin, now_us: crate::telemetry::now_us() };
        let builtin = |c: &Candidates<'_>| Builtin.pick_endpoint(&req(Headers::None), c);
        let among = |ids: Vec<u32>| PickDecision { pick: Pick::Among(ids), count: None, reuse: Reuse::SameHeaders };
        let picks: Vec<_> = (0..6).map(|_| among(vec![1, 2]).apply(&c, builtin)).collect();
        assert!(picks.iter().all(|p| *p == Some(1) || *p == Some(2)) && picks.contains(&Some(1)) && picks.contains(&Some(2)), "{picks:?}");
        assert_eq!(among(vec![3]).apply(&c, builtin), None, "the only listed endpoint is unhealthy: the built-in choice over all");
        let c2 = Candidates { excluded: &[1], ..c };
        assert!((0..4).all(|_| among(vec![1, 2]).apply(&c2, builtin) == Some(2)), "an endpoint already tried stays excluded");
        let one = PickDecision { pick: Pick::One(1), count: None, reuse: Reuse::Request };
        assert_eq!((one.apply(&c, builtin), one.apply(&c2, builtin)), (Some(1), None));
    }

    #[test]
    fn a_kept_pick_serves_first_tries_only() {
        let ts = targets(4);
        let cursor = AtomicUsize::new(0);
        let (kept, reused) = (Kept::default(), AtomicU64::new(0));
        let c = Candidates { targets: &ts, excluded: &[], timed_out: &[], cursor: &cursor, lb: LbKind::RoundRobin, now_us: crate::telemetry::now_us() };
        let builtin = |c: &Candidates<'_>| Builtin.pick_endpoint(&req(Headers::None), c);
        let mut calls = 0;
        let mut call = || -> Result<PickDecision, ()> {
            calls += 1;
            Ok(PickDecision { pick: Pick::Among(vec![0, 2]), count: None, reuse: Reuse::SameHeaders })
        };
        for _ in 0..10 {
            let p = kept.pick(&[], &req(Headers::None), &c, &reused, &mut call, builtin).unwrap();
            assert!(p == Some(0) || p == Some(2), "{p:?}");
        }
        let retry = Candidates { excluded: &[0], ..c };
        assert_eq!(kept.pick(&[], &req(Headers::None), &retry, &reused, &mut call, builtin).unwrap(), Some(2));
        assert_eq!((calls, reused.load(Relaxed)), (2, 9));
    }

    #[test]
    fn a_shard_is_bounded() {
        let (kept, reused) = (Kept::default(), AtomicU64::new(0));
        let wanted = [WantedHeader::new("x-user")];
        for i in 0..(3 * SHARD_ENTRIES) {
            let mut h = http::HeaderMap::new();
            h.insert("x-user", i.to_string().parse().unwrap());
            let _ = kept.route::<()>(&wanted, &Headers::Map(&h), &reused, || Ok(RouteDecision { reuse: Reuse::SameHeaders, ..RouteDecision::keep() }));
        }
        let most = kept.shards.iter().map(|s| s.route.lock().unwrap().len()).max().unwrap();
        assert!(most > FEW, "the map holds what the list does not: {most}");
        assert!(most <= SHARD_ENTRIES, "{most}");
        let long = "x".repeat(MAX_KEY + 1);
        let mut h = http::HeaderMap::new();
        h.insert("x-user", long.parse().unwrap());
        let mut calls = 0;
        for _ in 0..3 {
            let _ = kept.route::<()>(&wanted, &Headers::Map(&h), &reused, || {
                calls += 1;
                Ok(RouteDecision { reuse: Reuse::SameHeaders, ..RouteDecision::keep() })
            });
        }
        assert_eq!(calls, 3, "a key longer than {MAX_KEY} bytes is not kept");
    }

    #[test]
    fn answers_are_told_apart_by_every_wanted_value_and_kept_for_at_most_max_wanted() {
        let (kept, reused) = (Kept::default(), AtomicU64::new(0));
        let wanted = [WantedHeader::new("x-a"), WantedHeader::new("X-B")];
        let mut calls = 0;
        let mut ask = |a: Option<&str>, b: Option<&str>| {
            let mut h = http::HeaderMap::new();
            for (n, v) in [("x-a", a), ("x-b", b)] {
                if let Some(v) = v {
                    h.insert(n, v.parse().unwrap());
                }
            }
            kept.route::<()>(&wanted, &Headers::Map(&h), &reused, || {
                calls += 1;
                Ok(RouteDecision { to: Some(format!("{a:?}{b:?}").into()), share: 10_000, count_to: None, count_kept: None, reuse: Reuse::SameHeaders })
            })
            .unwrap()
        };
        for _ in 0..2 {
            for (a, b) in [(Some("1"), None), (None, Some("1")), (Some("1"), Some("1")), (None, None), (Some(""), None)] {
                assert_eq!(ask(a, b).as_deref(), Some(format!("{a:?}{b:?}").as_str()));
            }
        }
        drop(ask);
        assert_eq!((calls, reused.load(Relaxed)), (5, 5), "absent, empty and present values are different answers");
        let many: Vec<_> = (0..=MAX_WANTED).map(|i| WantedHeader::new(&format!("x-{i}"))).collect();
        let mut calls = 0;
        for _ in 0..3 {
            let _ = kept.route::<()>(&many, &Headers::None, &reused, || {
                calls += 1;
                Ok(RouteDecision { reuse: Reuse::SameHeaders, ..RouteDecision::keep() })
            });
        }
        assert_eq!(calls, 3, "more than {MAX_WANTED} wanted headers: not kept");
    }
}
