//! One loaded version of a plugin, as the data path calls it: warm instances reused call after
//! call, each call bounded by fuel and the memory cap, failures counted and answered by the
//! built-in hook (see `crate::policy::ServicePolicy`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::guard::{Guard, Hook};
use super::shared::Shared;
use super::wasm::{self, Prepared, Warm};
use super::{Fail, PluginSpec};
use crate::policy::{Candidates, HookFailed, Hooks, Outcome, Plugin, RequestInfo, RetryDecision};

/// Warm instances kept per plugin: enough for every worker thread to have one at a time.
const POOL_MAX: usize = 16;

pub struct Loaded {
    pub spec: PluginSpec,
    /// sha256 of the component, hex.
    pub hash: String,
    pub size: usize,
    pub hooks: Hooks,
    /// Lower-case request headers the manifest asked for.
    pub wanted: Vec<String>,
    pub loaded_at: std::time::SystemTime,
    prepared: Prepared,
    pub shared: Arc<Shared>,
    pool: Mutex<Vec<Warm>>,
    pub guard: Guard,
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
        };
        let mut warm = loaded.instantiate().map_err(|e| match describe(&e) {
            d if d.contains("type mismatch") => format!("a hook's type does not match weft:policy@0.2.0: {d}"),
            d => format!("cannot instantiate it: {d}"),
        })?;
        if let Some(m) = &warm.manifest {
            let names = m.call_wanted_headers(&mut warm.store).map_err(|e| format!("its manifest (wanted-headers) failed: {}", describe(&e)))?;
            loaded.wanted = names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        }
        loaded.pool.get_mut().unwrap_or_else(|e| e.into_inner()).push(warm);
        Ok(loaded)
    }

    fn instantiate(&self) -> wasmtime::Result<Warm> {
        self.guard.instances.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.prepared.instantiate(&self.shared, self.spec.memory_bytes(), self.spec.fuel)
    }

    /// One hook call on a warm instance. A failed call drops its instance (a trapped instance
    /// refuses further calls); the next call instantiates afresh from the `InstancePre`.
    fn call<R>(&self, hook: Hook, f: impl FnOnce(&mut Warm) -> wasmtime::Result<R>) -> Result<R, HookFailed> {
        let start = Instant::now();
        if self.guard.suspended(start) {
            self.guard.skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(HookFailed(format!("suspended after repeated failures ({})", self.guard.last_error().unwrap_or_default())));
        }
        let warm = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let result = match warm {
            Some(w) => Ok(w),
            None => self.instantiate(),
        }
        .and_then(|mut w| {
            w.arm(self.spec.fuel)?;
            f(&mut w).map(|r| (r, w))
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
                let reason = describe(&e);
                if let Some(backoff) = self.guard.failed(&reason, start) {
                    tracing::warn!(plugin = %self.spec.name, error = %reason, backoff_s = backoff.as_secs(), "plugin keeps failing: suspended; its services use the built-in policy meanwhile");
                } else {
                    tracing::debug!(plugin = %self.spec.name, hook = hook.name(), error = %reason, "plugin call failed");
                }
                Err(HookFailed(reason))
            }
        }
    }

    /// The wanted headers of the request, as the WIT's `request-info` carries them: the names
    /// as the manifest gave them (lower-case), values borrowed from the request.
    fn headers<'b>(&'b self, req: &RequestInfo<'b>) -> Vec<(&'b str, &'b str)> {
        self.wanted.iter().filter_map(|n| Some((n.as_str(), std::str::from_utf8(req.headers.get(n)?).ok()?))).collect()
    }
}

/// A plugin error in one line: traps by name, fuel and memory in words.
pub fn describe(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => "ran out of fuel (an endless or too long computation)".into(),
        Some(wasmtime::Trap::Interrupt) => format!("ran past its time limit ({} ms of CPU)", super::engine::CALL_CPU.as_millis()),
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

fn wit_request<'a>(req: &RequestInfo<'a>, headers: &'a [(&'a str, &'a str)]) -> wasm::RequestInfo<'a> {
    wasm::RequestInfo {
        service: req.service,
        namespace: req.namespace,
        method: req.method,
        authority: req.authority,
        path: req.path,
        headers,
        attempt: req.attempt,
        idempotent: req.idempotent,
        source_zone: req.source_zone,
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

    fn reads_headers(&self) -> bool {
        !self.wanted.is_empty()
    }

    fn route(&self, req: &RequestInfo<'_>) -> Result<Option<String>, HookFailed> {
        let headers = self.headers(req);
        let info = wit_request(req, &headers);
        self.call(Hook::Route, |w| match &w.router {
            Some(r) => r.call_route(&mut w.store, info),
            None => Ok(None),
        })
    }

    fn pick_endpoint(&self, req: &RequestInfo<'_>, c: &Candidates<'_>) -> Result<Option<u32>, HookFailed> {
        let headers = self.headers(req);
        let info = wit_request(req, &headers);
        let shown: Vec<_> = c.targets.iter().enumerate().filter(|(i, _)| c.untried(*i)).map(|(_, t)| t).collect();
        let attrs: Vec<Vec<(&str, &str)>> = shown.iter().map(|t| t.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()).collect();
        let now = c.now_us;
        let candidates: Vec<wasm::EndpointInfo<'_>> = shown
            .iter()
            .zip(&attrs)
            .map(|(t, a)| wasm::EndpointInfo {
                id: t.index,
                node: &t.node,
                zone: &t.zone,
                healthy: t.healthy && !t.unchecked,
                ejected: t.ejected(now) || t.refusing(now),
                in_flight: t.in_flight(),
                ewma_latency_us: t.latency_us_at(now).map_or(0, |l| l.min(u32::MAX as f64) as u32),
                attributes: a,
            })
            .collect();
        self.call(Hook::Pick, |w| match &w.balancer {
            Some(b) => b.call_pick_endpoint(&mut w.store, info, &candidates),
            None => Ok(None),
        })
    }

    fn should_retry(&self, req: &RequestInfo<'_>, outcome: Outcome, elapsed: Duration) -> Result<RetryDecision, HookFailed> {
        let headers = self.headers(req);
        let info = wit_request(req, &headers);
        let ms = elapsed.as_millis().min(u32::MAX as u128) as u32;
        let d = self.call(Hook::Retry, |w| match &w.retrier {
            Some(r) => r.call_should_retry(&mut w.store, info, wit_outcome(outcome), ms),
            None => Ok(wasm::RetryDecision::GiveUp),
        })?;
        Ok(match d {
            wasm::RetryDecision::GiveUp => RetryDecision::GiveUp,
            wasm::RetryDecision::Retry(ms) => RetryDecision::Retry { backoff_ms: ms },
        })
    }
}
