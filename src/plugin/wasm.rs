//! The component side of a plugin: bindings generated from `wit/policy.wit`, the host imports
//! (log, config, counters), and one warm instance with its own `Store`.
//!
//! Only the hooks a component exports are looked up (`Exports`); the host calls nothing else.

use std::sync::Arc;

use wasmtime::component::{Component, HasSelf, Instance, InstancePre, Linker};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

use super::shared::Shared;

wasmtime::component::bindgen!({
    path: "wit",
    world: "policy",
    ownership: Borrowing { duplicate_if_necessary: false },
});

pub use exports::weft::policy::{balancer, manifest, retrier, router};
pub use self::weft::policy::types::{EndpointInfo, Outcome, RequestInfo, RetryDecision};

/// What a store carries: the memory cap and the plugin's shared state for host calls.
pub struct State {
    limits: StoreLimits,
    shared: Arc<Shared>,
    /// The thread's CPU time at the current call's first epoch tick (`engine::deadline`).
    cpu_mark: Option<std::time::Duration>,
}

impl self::weft::policy::types::Host for State {}

impl self::weft::policy::host::Host for State {
    fn log(&mut self, level: self::weft::policy::host::Level, message: String) {
        self.shared.log(level, &message);
    }

    fn config(&mut self) -> String {
        self.shared.config.clone()
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        self.shared.counter_add(&name, delta);
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
}

/// Why a component cannot be a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("it exports no hook of weft:policy@0.2.0 (router, balancer or retrier){}", found(.0))]
    NoHooks(Vec<String>),
    #[error("{0}")]
    Mismatch(String),
}

fn found(exports: &[String]) -> String {
    if exports.is_empty() { String::new() } else { format!("; it exports {}", exports.join(", ")) }
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
    };
    if exports.router.is_none() && exports.balancer.is_none() && exports.retrier.is_none() {
        let names = component.component_type().exports(engine).map(|(n, _)| n.to_string()).collect();
        return Err(PrepareError::NoHooks(names));
    }
    Ok(Prepared { pre, exports })
}

/// `None` when the interface is not exported at all; an error when it is, with other types.
fn lookup<T>(pre: &InstancePre<State>, hook: &str, r: wasmtime::Result<T>) -> Result<Option<T>, PrepareError> {
    let name = format!("weft:policy/{hook}@0.2.0");
    match r {
        Ok(i) => Ok(Some(i)),
        Err(_) if pre.component().get_export_index(None, &name).is_none() => Ok(None),
        Err(e) => Err(PrepareError::Mismatch(format!("`{name}` does not match the WIT: {e:#}"))),
    }
}

/// One instance and its store, reused call after call.
pub struct Warm {
    pub store: Store<State>,
    pub router: Option<router::Guest>,
    pub balancer: Option<balancer::Guest>,
    pub retrier: Option<retrier::Guest>,
    pub manifest: Option<manifest::Guest>,
}

impl Warm {
    /// Before a call: its fuel, and its time bound from now (`engine::deadline`).
    pub fn arm(&mut self, fuel: u64) -> wasmtime::Result<()> {
        self.store.set_fuel(fuel)?;
        self.store.data_mut().cpu_mark = None;
        self.store.set_epoch_deadline(1);
        Ok(())
    }
}

impl Prepared {
    /// A fresh instance with its own store: memory capped at `memory_bytes`; each call gets
    /// `fuel` (set before the call by the caller).
    pub fn instantiate(&self, shared: &Arc<Shared>, memory_bytes: usize, fuel: u64) -> wasmtime::Result<Warm> {
        let limits = StoreLimitsBuilder::new().memory_size(memory_bytes).instances(8).tables(8).memories(4).trap_on_grow_failure(true).build();
        let mut store = Store::new(self.pre.engine(), State { limits, shared: shared.clone(), cpu_mark: None });
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|mut ctx| Ok(super::engine::deadline(&mut ctx.data_mut().cpu_mark)));
        store.set_fuel(fuel)?;
        store.set_epoch_deadline(1);
        let instance: Instance = self.pre.instantiate(&mut store)?;
        let e = &self.exports;
        Ok(Warm {
            router: e.router.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
            balancer: e.balancer.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
            retrier: e.retrier.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
            manifest: e.manifest.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
            store,
        })
    }
}
