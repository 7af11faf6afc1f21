//! The component side of a plugin: bindings generated from `wit/policy.wit`, the host imports
//! (log, config, counters, texts, the request's strings), and one warm instance with its own
//! `Store`.
//!
//! Only the hooks a component exports are looked up (`Exports`); the host calls nothing else.

use std::sync::Arc;

use std::mem::MaybeUninit;

use wasmtime::component::__internal::{InterfaceType, LowerContext};
use wasmtime::component::{Component, ComponentExportIndex, ComponentType, Func, HasSelf, Instance, InstancePre, Linker, Lower, TypedFunc};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

use super::shared::Shared;

wasmtime::component::bindgen!({
    path: "wit",
    world: "policy",
    ownership: Borrowing { duplicate_if_necessary: false },
});

pub use exports::weft::policy::{balancer, manifest, retrier, router};
pub use self::weft::policy::types::{Method, Outcome, RequestInfo, RetryDecision};
use self::weft::policy::types::Reuse;

/// The WIT package version this host implements; a component built against another is refused.
pub const WIT_VERSION: &str = "0.4.0";

/// What a store carries: the memory cap, the plugin's shared state for host calls, and the
/// request of the hook call under way.
pub struct State {
    limits: StoreLimits,
    shared: Arc<Shared>,
    /// The thread's CPU time at the current call's first epoch tick (`engine::deadline`).
    cpu_mark: Option<std::time::Duration>,
    /// The CPU bound of a call: `engine::CALL_CPU`, more for the manifest call at load.
    cpu_limit: std::time::Duration,
    /// The plugin's counters this instance asked for, by handle (a lock-free `counter-add`).
    counters: Vec<Arc<std::sync::atomic::AtomicU64>>,
    pub request: CallRequest,
}

/// The request a hook is called for, during the call: what `host.header`, `host.header-id`,
/// `host.authority` and `host.path` answer (nothing outside a call).
#[derive(Default)]
pub struct CallRequest(Option<std::ptr::NonNull<crate::policy::RequestInfo<'static>>>);

// SAFETY: the pointer is set by `Loaded::call` on the thread making the hook call and cleared
// before that call returns (the instance is dropped if it unwinds); nothing reads it otherwise.
#[allow(unsafe_code)]
unsafe impl Send for CallRequest {}

impl CallRequest {
    /// `req`, readable by the host imports until [`CallRequest::end`]. Borrowed, not copied:
    /// copying its authority, path and wanted headers into the store before every call was
    /// ≈ 540 of the ≈ 6,300 instructions of a `route` call (callgrind), and most calls read one
    /// header or none.
    pub fn lend(req: &crate::policy::RequestInfo<'_>) -> CallRequest {
        CallRequest(Some(std::ptr::NonNull::from(req).cast()))
    }

    pub fn end(&mut self) {
        self.0 = None;
    }

    #[allow(unsafe_code)]
    fn get<'s>(&'s self) -> Option<&'s crate::policy::RequestInfo<'s>> {
        // SAFETY: see `lend`: while set, the pointer is to a `RequestInfo` that outlives the call
        // under way, and host imports run only inside that call.
        self.0.map(|p| unsafe { p.as_ref() })
    }
}

impl State {
    /// A counter by the handle `host.counter` gave (none for a handle it never gave).
    fn counter_of(&mut self, handle: u32) -> Option<&Arc<std::sync::atomic::AtomicU64>> {
        let i = handle as usize;
        if i >= self.counters.len() {
            self.counters = self.shared.counter_handles();
        }
        self.counters.get(i)
    }

    /// `route`'s answer as the data path applies it: the service's name, the counters.
    pub fn route_decision(&mut self, d: router::RouteDecision) -> crate::policy::RouteDecision {
        crate::policy::RouteDecision {
            // An id the host never gave names no service: the request keeps its own.
            to: d.to.and_then(crate::policy::texts::text).filter(|t| !t.is_empty()),
            share: d.share.min(10_000),
            count_to: d.count_to.and_then(|h| self.counter_of(h).cloned()),
            count_kept: d.count_kept.and_then(|h| self.counter_of(h).cloned()),
            reuse: reuse(d.reuse),
        }
    }

    /// `pick-endpoint`'s answer as the data path applies it.
    pub fn pick_decision(&mut self, d: balancer::PickDecision) -> crate::policy::PickDecision {
        use crate::policy::Pick;
        let pick = match d.pick {
            balancer::Pick::Any => Pick::Any,
            balancer::Pick::One(i) => Pick::One(i),
            balancer::Pick::Among(ids) if ids.is_empty() => Pick::Any,
            balancer::Pick::Among(ids) => Pick::Among(ids),
        };
        crate::policy::PickDecision { pick, count: d.count.and_then(|h| self.counter_of(h).cloned()), reuse: reuse(d.reuse) }
    }

    /// The value of a wanted header of the request under way.
    fn header_value(&self, name: &str) -> Option<&str> {
        let req = self.request.get()?;
        let wanted = self.shared.wanted().iter().find(|w| w.text.eq_ignore_ascii_case(name))?;
        req.headers.wanted(wanted).and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl self::weft::policy::types::Host for State {}

impl self::weft::policy::host::Host for State {
    fn log(&mut self, level: self::weft::policy::host::Level, message: String) {
        self.shared.log(level, &message);
    }

    fn config(&mut self) -> String {
        self.shared.config.clone()
    }

    fn counter(&mut self, name: String) -> u32 {
        self.shared.counter(&name)
    }

    fn counter_add(&mut self, counter: u32, delta: u64) {
        if let Some(c) = self.counter_of(counter) {
            c.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn text(&mut self, id: u32) -> String {
        crate::policy::texts::text(id).map(|t| t.to_string()).unwrap_or_default()
    }

    fn intern(&mut self, name: String) -> Option<u32> {
        self.shared.intern(&name)
    }

    fn find(&mut self, name: String) -> Option<u32> {
        crate::policy::texts::find(&name)
    }

    fn header(&mut self, name: String) -> Option<String> {
        self.header_value(&name).map(str::to_string)
    }

    fn header_id(&mut self, name: String) -> Option<Option<u32>> {
        let value = self.header_value(&name)?;
        Some(crate::policy::texts::find(value))
    }

    fn authority(&mut self) -> String {
        self.request.get().map_or_else(String::new, |r| r.authority.as_str().to_string())
    }

    fn path(&mut self) -> String {
        self.request.get().map_or_else(String::new, |r| r.path.as_str().to_string())
    }
}

/// A compiled component ready to instantiate: imports resolved once, exports located once.
pub struct Prepared {
    pre: InstancePre<State>,
    pub exports: Exports,
}

/// The hook interfaces a component exports (`None`: not exported, stays built-in).
#[derive(Clone)]
pub struct Exports {
    pub manifest: Option<manifest::GuestIndices>,
    pub router: Option<router::GuestIndices>,
    pub balancer: Option<balancer::GuestIndices>,
    pub retrier: Option<retrier::GuestIndices>,
    /// `pick-endpoint`, called through [`Endpoint`] and [`Attribute`] (not `balancer::Guest`).
    pick: Option<ComponentExportIndex>,
}

/// Why a component cannot be a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("it exports no hook of weft:policy@{WIT_VERSION} (router, balancer or retrier){}{}", found(.0), other_version(.0))]
    NoHooks(Vec<String>),
    #[error("{0}")]
    Mismatch(String),
}

fn found(exports: &[String]) -> String {
    if exports.is_empty() { String::new() } else { format!("; it exports {}", exports.join(", ")) }
}

/// A hint when the component exports weft's hooks of another version of the WIT.
fn other_version(exports: &[String]) -> String {
    let other = exports.iter().find_map(|e| e.strip_prefix("weft:policy/").and_then(|e| e.split_once('@')).map(|(_, v)| v).filter(|v| *v != WIT_VERSION));
    match other {
        Some(v) => format!(" (it was built against weft:policy@{v}: rebuild it against this weft's wit/policy.wit, @{WIT_VERSION})"),
        None => String::new(),
    }
}

/// Checks a component against the WIT: each hook interface it exports must match exactly.
pub fn prepare(engine: &Engine, component: &Component) -> Result<Prepared, PrepareError> {
    let mut linker: Linker<State> = Linker::new(engine);
    self::weft::policy::host::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
        .map_err(|e| PrepareError::Mismatch(format!("{e:#}")))?;
    // A std guest imports WASI (stderr for its panic message, the clock, random) whether it uses
    // it or not. Plugins get none of it: such an import links, and traps if called.
    linker.define_unknown_imports_as_traps(component).map_err(|e| PrepareError::Mismatch(format!("{e:#}")))?;
    let pre = linker.instantiate_pre(component).map_err(|e| PrepareError::Mismatch(format!("{e:#}")))?;
    let exports = Exports {
        manifest: lookup(&pre, "manifest", manifest::GuestIndices::new(&pre))?,
        router: lookup(&pre, "router", router::GuestIndices::new(&pre))?,
        balancer: lookup(&pre, "balancer", balancer::GuestIndices::new(&pre))?,
        retrier: lookup(&pre, "retrier", retrier::GuestIndices::new(&pre))?,
        pick: None,
    };
    let exports = Exports { pick: exports.balancer.as_ref().and_then(|_| pick_index(component)), ..exports };
    if exports.router.is_none() && exports.balancer.is_none() && exports.retrier.is_none() {
        let names = component.component_type().exports(engine).map(|(n, _)| n.to_string()).collect();
        return Err(PrepareError::NoHooks(names));
    }
    Ok(Prepared { pre, exports })
}

fn pick_index(component: &Component) -> Option<ComponentExportIndex> {
    let iface = component.get_export_index(None, &format!("weft:policy/balancer@{WIT_VERSION}"))?;
    component.get_export_index(Some(&iface), "pick-endpoint")
}

/// `None` when the interface is not exported at all; an error when it is, with other types.
fn lookup<T>(pre: &InstancePre<State>, hook: &str, r: wasmtime::Result<T>) -> Result<Option<T>, PrepareError> {
    let name = format!("weft:policy/{hook}@{WIT_VERSION}");
    match r {
        Ok(i) => Ok(Some(i)),
        Err(_) if pre.component().get_export_index(None, &name).is_none() => Ok(None),
        Err(e) => Err(PrepareError::Mismatch(format!("`{name}` does not match the WIT: {e:#}"))),
    }
}

/// One instance and its store, reused call after call, with the buffers its calls fill.
pub struct Warm {
    pub store: Store<State>,
    pub router: Option<router::Guest>,
    /// `pick-endpoint`, type-checked as [`PickParams`] when the instance was made.
    pick: Option<Func>,
    pub retrier: Option<retrier::Guest>,
    pub manifest: Option<manifest::Guest>,
    /// The ids of the last request's service, namespace and source zone.
    pub ids: [crate::policy::texts::LastText; 3],
    pub candidates: Vec<Endpoint>,
    pub attributes: Vec<Attribute>,
}

type PickParams<'a> = (RequestInfo<'a>, &'a [Endpoint], &'a [Attribute]);
type PickResults = (balancer::PickDecision,);

fn reuse(r: Reuse) -> crate::policy::Reuse {
    match r {
        Reuse::None => crate::policy::Reuse::Request,
        Reuse::SameHeaders => crate::policy::Reuse::SameHeaders,
    }
}

impl Warm {
    pub fn has_pick(&self) -> bool {
        self.pick.is_some()
    }

    /// `pick-endpoint` over the candidates and attributes filled in beforehand.
    #[allow(unsafe_code)]
    pub fn pick(&mut self, req: RequestInfo<'_>) -> wasmtime::Result<crate::policy::PickDecision> {
        let Some(f) = self.pick else { return Ok(crate::policy::PickDecision::any()) };
        // SAFETY: `instantiate` checked the function against exactly these types (`typed`).
        let typed = unsafe { TypedFunc::<PickParams<'_>, PickResults>::new_unchecked(f) };
        let (d,) = typed.call(&mut self.store, (req, &self.candidates, &self.attributes))?;
        Ok(self.store.data_mut().pick_decision(d))
    }

    /// `route` on this instance.
    pub fn route(&mut self, req: RequestInfo<'_>) -> wasmtime::Result<crate::policy::RouteDecision> {
        let Some(r) = &self.router else { return Ok(crate::policy::RouteDecision::keep()) };
        let d = r.call_route(&mut self.store, req)?;
        Ok(self.store.data_mut().route_decision(d))
    }
}

impl Warm {
    /// Before a call: its fuel, and its time bound from now (`engine::deadline`).
    pub fn arm(&mut self, fuel: u64) -> wasmtime::Result<()> {
        self.store.set_fuel(fuel)?;
        self.store.data_mut().cpu_mark = None;
        self.store.set_epoch_deadline(1);
        Ok(())
    }

    /// The CPU bound of the calls from now on (`engine::CALL_CPU` unless set).
    pub fn set_cpu_limit(&mut self, limit: std::time::Duration) {
        self.store.data_mut().cpu_limit = limit;
    }
}

impl Prepared {
    /// A fresh instance with its own store: memory capped at `memory_bytes`; each call gets
    /// `fuel` (set before the call by the caller).
    pub fn instantiate(&self, shared: &Arc<Shared>, memory_bytes: usize, fuel: u64) -> wasmtime::Result<Warm> {
        let limits = StoreLimitsBuilder::new().memory_size(memory_bytes).instances(8).tables(8).memories(4).trap_on_grow_failure(true).build();
        let state = State { limits, shared: shared.clone(), counters: Vec::new(), request: CallRequest::default(), cpu_mark: None, cpu_limit: super::engine::CALL_CPU };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            Ok(super::engine::deadline(&mut s.cpu_mark, s.cpu_limit))
        });
        store.set_fuel(fuel)?;
        store.set_epoch_deadline(1);
        let instance: Instance = self.pre.instantiate(&mut store)?;
        let e = &self.exports;
        Ok(Warm {
            router: e.router.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
            pick: match e.pick {
                Some(i) => {
                    let f = instance.get_func(&mut store, i).ok_or_else(|| wasmtime::format_err!("pick-endpoint is not a function"))?;
                    f.typed::<PickParams<'static>, PickResults>(&store)?;
                    Some(f)
                }
                None => None,
            },
            retrier: e.retrier.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
            manifest: e.manifest.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
            store,
            ids: Default::default(),
            candidates: Vec::new(),
            attributes: Vec::new(),
        })
    }
}

/// One `endpoint-info`, lowered by hand: a list of them (every `pick-endpoint` call) is written
/// into the guest's memory in one pass, where the derived lowering looks the memory up again for
/// each field of each element (~90 instructions a field). The field names and types are checked
/// against the WIT when the instance is made (`typed`); the layout below is the canonical ABI's.
#[derive(ComponentType, Clone, Copy, Debug, Default)]
#[component(record)]
pub struct Endpoint {
    #[component(name = "id")]
    pub id: u32,
    #[component(name = "node")]
    pub node: u32,
    #[component(name = "zone")]
    pub zone: u32,
    #[component(name = "healthy")]
    pub healthy: bool,
    #[component(name = "ejected")]
    pub ejected: bool,
    #[component(name = "in-flight")]
    pub in_flight: u32,
    #[component(name = "ewma-latency-us")]
    pub ewma_latency_us: u32,
}

/// One `attribute` (endpoint, name, value), lowered by hand like [`Endpoint`].
#[derive(ComponentType, Clone, Copy, Debug, Default)]
#[component(record)]
pub struct Attribute {
    #[component(name = "endpoint")]
    pub endpoint: u32,
    #[component(name = "name")]
    pub name: u32,
    #[component(name = "value")]
    pub value: u32,
}

impl Endpoint {
    /// Canonical ABI: u32 at 0, 4, 8; bools (one byte) at 12, 13; u32 at 16, 20; 24 bytes.
    fn store(&self, d: &mut [u8]) {
        d[0..4].copy_from_slice(&self.id.to_le_bytes());
        d[4..8].copy_from_slice(&self.node.to_le_bytes());
        d[8..12].copy_from_slice(&self.zone.to_le_bytes());
        d[12] = self.healthy.into();
        d[13] = self.ejected.into();
        d[14..16].fill(0);
        d[16..20].copy_from_slice(&self.in_flight.to_le_bytes());
        d[20..24].copy_from_slice(&self.ewma_latency_us.to_le_bytes());
    }
}

impl Attribute {
    /// Canonical ABI: three u32, 12 bytes.
    fn store(&self, d: &mut [u8]) {
        d[0..4].copy_from_slice(&self.endpoint.to_le_bytes());
        d[4..8].copy_from_slice(&self.name.to_le_bytes());
        d[8..12].copy_from_slice(&self.value.to_le_bytes());
    }
}

const _: () = assert!(Endpoint::SIZE32 == 24 && Attribute::SIZE32 == 12);

macro_rules! lowered_by_hand {
    ($t:ty) => {
        // SAFETY: `store` writes exactly the canonical ABI layout of the record `ComponentType`
        // derives (size and alignment asserted above), within the bounds the slices check.
        #[allow(unsafe_code)]
        unsafe impl Lower for $t {
            fn linear_lower_to_flat<T>(&self, _cx: &mut LowerContext<'_, T>, _ty: InterfaceType, _dst: &mut MaybeUninit<Self::Lower>) -> wasmtime::Result<()> {
                // The WIT passes these records in lists only, never as flat parameters.
                wasmtime::bail!("{} is passed in a list only", stringify!($t))
            }

            fn linear_lower_to_memory<T>(&self, cx: &mut LowerContext<'_, T>, _ty: InterfaceType, offset: usize) -> wasmtime::Result<()> {
                self.store(&mut cx.as_slice_mut()[offset..][..Self::SIZE32]);
                Ok(())
            }

            fn linear_store_list_to_memory<T>(cx: &mut LowerContext<'_, T>, _ty: InterfaceType, offset: usize, items: &[Self]) -> wasmtime::Result<()> {
                let dst = &mut cx.as_slice_mut()[offset..][..items.len() * Self::SIZE32];
                for (d, item) in dst.chunks_exact_mut(Self::SIZE32).zip(items) {
                    item.store(d);
                }
                Ok(())
            }
        }
    };
}

lowered_by_hand!(Endpoint);
lowered_by_hand!(Attribute);
