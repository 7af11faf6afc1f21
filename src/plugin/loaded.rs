//! One loaded version of a plugin, as the data path calls it: warm instances reused call after
//! call, each call bounded by fuel and the memory cap, failures counted and answered by the
//! built-in hook (see `crate::policy::ServicePolicy`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::engine::{CALL_CPU, LOAD_CPU};
use super::guard::{Guard, Hook};
use super::shared::Shared;
use super::wasm::{self, Prepared, Warm};
use super::{Fail, PluginSpec};
use crate::policy::{Candidates, HookFailed, Hooks, Outcome, PickDecision, Plugin, RequestInfo, RetryDecision, Reused, RouteDecision, WantedHeader, MAX_WANTED};

/// Warm instances kept per plugin: enough for every worker thread to have one at a time.
const POOL_MAX: usize = 16;

pub struct Loaded {
    pub spec: PluginSpec,
    /// sha256 of the component, hex.
    pub hash: String,
    pub size: usize,
    pub hooks: Hooks,
    /// Lower-case request headers the manifest asked for.
    pub wanted: Vec<WantedHeader>,
    pub loaded_at: std::time::SystemTime,
    prepared: Prepared,
    pub shared: Arc<Shared>,
    /// Boxed: a warm instance is a few hundred bytes, moved in and out of the pool every call.
    pool: Mutex<Vec<Box<Warm>>>,
    pub guard: Guard,
    /// Answers given again without a call (`policy::Kept`).
    pub reused: Reused,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("name", &self.spec.name).field("hash", &self.hash).finish()
    }
}

impl Loaded {
    /// Makes the first instance and asks it for its manifest: a plugin that cannot do that
    /// within its limits is refused at load, not discovered broken on the first request.
    pub fn new(spec: PluginSpec, hash: String, size: usize, prepared: Prepared, registry: Option<Arc<crate::telemetry::Registry>>) -> Result<Loaded, String> {
        let shared = Arc::new(Shared::new(&spec.name, &spec.config, registry));
        let e = &prepared.exports;
        let hooks = Hooks { route: e.router.is_some(), pick: e.balancer.is_some(), retry: e.retrier.is_some() };
        let mut loaded = Loaded {
            spec,
            hash,
            size,
            hooks,
            wanted: Vec::new(),
            loaded_at: std::time::SystemTime::now(),
            prepared,
            shared,
            pool: Mutex::default(),
            guard: Guard::default(),
            reused: Reused::default(),
        };
        let mut warm = loaded.instantiate().map_err(|e| match describe(&e, CALL_CPU) {
            d if d.contains("type mismatch") => format!("a hook's type does not match weft:policy@{}: {d}", wasm::WIT_VERSION),
            d => format!("cannot instantiate it: {d}"),
        })?;
        warm.set_cpu_limit(LOAD_CPU);
        if let Some(m) = &warm.manifest {
            let names = m.call_wanted_headers(&mut warm.store).map_err(|e| format!("its manifest (wanted-headers) failed: {}", describe(&e, LOAD_CPU)))?;
            loaded.wanted = names.iter().map(|n| WantedHeader::new(n)).collect();
            if loaded.wanted.len() > MAX_WANTED {
                tracing::warn!(plugin = %loaded.spec.name, headers = loaded.wanted.len(), "its manifest names more than {MAX_WANTED} wanted headers: none of its answers can be kept, every request calls it");
            }
        }
        warm.set_cpu_limit(CALL_CPU);
        loaded.shared.set_wanted(loaded.wanted.clone());
        loaded.pool.get_mut().unwrap_or_else(|e| e.into_inner()).push(Box::new(warm));
        Ok(loaded)
    }

    fn instantiate(&self) -> wasmtime::Result<Warm> {
        self.guard.instances.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.prepared.instantiate(&self.shared, self.spec.memory_bytes(), self.spec.fuel)
    }

    /// One hook call on a warm instance, for `req` (its strings are what the host imports answer
    /// during the call). A failed call drops its instance (a trapped instance refuses further
    /// calls); the next call instantiates afresh from the `InstancePre`.
    fn call<R>(&self, hook: Hook, req: &RequestInfo<'_>, f: impl FnOnce(&mut Warm, wasm::RequestInfo<'_>) -> wasmtime::Result<R>) -> Result<R, HookFailed> {
        let start = Instant::now();
        if self.guard.suspended(start) {
            self.guard.skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(HookFailed(format!("suspended after repeated failures ({})", self.guard.last_error().unwrap_or_default())));
        }
        let warm = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let result = match warm {
            Some(w) => Ok(w),
            None => self.instantiate().map(Box::new),
        }
        .and_then(|mut w| {
            w.arm(self.spec.fuel)?;
            let [service, namespace, zone] = &mut w.ids;
            let info = wasm::RequestInfo {
                service: service.id(req.service),
                namespace: namespace.id(req.namespace),
                method: wit_method(req.method),
                attempt: req.attempt,
                idempotent: req.idempotent,
                source_zone: zone.id(req.source_zone),
            };
            w.store.data_mut().request = wasm::CallRequest::lend(req);
            let r = f(&mut w, info);
            w.store.data_mut().request.end();
            r.map(|r| (r, w))
        });
        match result {
            Ok((r, w)) => {
                self.guard.record(hook, start, true);
                let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < POOL_MAX {
                    pool.push(w);
                }
                Ok(r)
            }
            Err(e) => {
                self.guard.record(hook, start, false);
                let reason = describe(&e, CALL_CPU);
                if let Some(backoff) = self.guard.failed(&reason, start) {
                    tracing::warn!(plugin = %self.spec.name, error = %reason, backoff_s = backoff.as_secs(), "plugin keeps failing: suspended; its services use the built-in policy meanwhile");
                } else {
                    tracing::debug!(plugin = %self.spec.name, hook = hook.name(), error = %reason, "plugin call failed");
                }
                Err(HookFailed(reason))
            }
        }
    }
}

/// A plugin error in one line: traps by name, fuel and memory in words; `limit`: the call's CPU
/// bound.
pub fn describe(e: &wasmtime::Error, limit: std::time::Duration) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => "ran out of fuel (an endless or too long computation)".into(),
        Some(wasmtime::Trap::Interrupt) => format!("ran past its time limit ({} ms of CPU)", limit.as_millis()),
        Some(t) => format!("trapped: {t}"),
        None => {
            // wasmtime puts a multi-line wasm backtrace in the chain: keep the causes, one line.
            let s = e.chain().map(|c| c.to_string()).filter(|c| !c.contains("wasm backtrace")).collect::<Vec<_>>().join(": ");
            let s = if s.is_empty() { e.root_cause().to_string() } else { s };
            if s.contains("unknown import") && s.contains("wasi:") {
                // A Rust guest's panic handler writes to stderr and reads the environment.
                return format!("it called WASI, which plugins do not get (a Rust guest does this when it panics): {s}");
            }
            if s.contains("memory") && (s.contains("grow") || s.contains("limit")) {
                format!("exceeded its memory cap: {s}")
            } else {
                s
            }
        }
    }
}

fn wit_method(m: &str) -> wasm::Method<'_> {
    match m {
        "" => wasm::Method::None,
        "GET" => wasm::Method::Get,
        "HEAD" => wasm::Method::Head,
        "POST" => wasm::Method::Post,
        "PUT" => wasm::Method::Put,
        "DELETE" => wasm::Method::Delete,
        "CONNECT" => wasm::Method::Connect,
        "OPTIONS" => wasm::Method::Options,
        "TRACE" => wasm::Method::Trace,
        "PATCH" => wasm::Method::Patch,
        other => wasm::Method::Other(other),
    }
}

fn wit_outcome(o: Outcome) -> wasm::Outcome {
    match o {
        Outcome::ConnectFailed => wasm::Outcome::ConnectFailed,
        Outcome::Refused => wasm::Outcome::Refused,
        Outcome::Reset => wasm::Outcome::Reset,
        Outcome::Timeout => wasm::Outcome::Timeout,
        Outcome::Status(s) => wasm::Outcome::Status(s),
        Outcome::GrpcStatus(s) => wasm::Outcome::GrpcStatus(s),
    }
}

impl Plugin for Loaded {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn hooks(&self) -> Hooks {
        self.hooks
    }

    fn fail_closed(&self) -> bool {
        self.spec.fail == Fail::Closed
    }

    fn wanted_headers(&self) -> &[WantedHeader] {
        &self.wanted
    }

    fn reused(&self) -> &Reused {
        &self.reused
    }

    fn route(&self, req: &RequestInfo<'_>) -> Result<RouteDecision, HookFailed> {
        self.call(Hook::Route, req, |w, info| w.route(info))
    }

    fn pick_endpoint(&self, req: &RequestInfo<'_>, c: &Candidates<'_>) -> Result<PickDecision, HookFailed> {
        let now = c.now_us;
        self.call(Hook::Pick, req, |w, info| {
            if !w.has_pick() {
                return Ok(PickDecision::any());
            }
            w.candidates.clear();
            w.attributes.clear();
            for t in c.targets.iter().enumerate().filter(|(i, _)| c.untried(*i)).map(|(_, t)| t) {
                let ids = t.text_ids();
                w.candidates.push(wasm::Endpoint {
                    id: t.index,
                    node: ids.node,
                    zone: ids.zone,
                    healthy: t.healthy && !t.unchecked,
                    ejected: t.ejected(now) || t.refusing(now),
                    in_flight: t.in_flight(),
                    ewma_latency_us: t.latency_us_at(now).map_or(0, |l| l.min(u32::MAX as f64) as u32),
                });
                w.attributes.extend(ids.attributes.iter().map(|&(name, value)| wasm::Attribute { endpoint: t.index, name, value }));
            }
            w.pick(info)
        })
    }

    fn should_retry(&self, req: &RequestInfo<'_>, outcome: Outcome, elapsed: Duration) -> Result<RetryDecision, HookFailed> {
        let ms = elapsed.as_millis().min(u32::MAX as u128) as u32;
        let d = self.call(Hook::Retry, req, |w, info| match &w.retrier {
            Some(r) => r.call_should_retry(&mut w.store, info, wit_outcome(outcome), ms),
            None => Ok(wasm::RetryDecision::GiveUp),
        })?;
        Ok(match d {
            wasm::RetryDecision::GiveUp => RetryDecision::GiveUp,
            wasm::RetryDecision::Retry(ms) => RetryDecision::Retry { backoff_ms: ms },
        })
    }
}
