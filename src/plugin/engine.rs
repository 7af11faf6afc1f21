//! Turning bytes into a component: one `Engine` for the process, compilation with a cache of
//! precompiled artifacts under the data dir (a restart loads in ~0.2 ms what took ~30 ms to
//! compile), and the checks that name what is wrong with a file that is not a plugin.
//!
//! Everything here blocks (compiling, files): callers run it off the runtime threads.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::PluginError;
use super::wasm::{self, Prepared};

pub use crate::catalog::MAX_COMPONENT_BYTES;

/// The time bound of a call, besides fuel. Fuel counts instructions, and a plugin can spend time
/// with few of them: the memory-bomb fixture writes 4,096 pages (≈ 40 k fuel) to fill its 16 MiB,
/// and those page faults took 10–300 ms a call on a busy 2-core machine — a request that met two
/// failing hooks waited up to 400 ms. So the engine's epoch advances every `EPOCH_TICK` (a thread
/// of its own) and a call that is still running at a tick has its thread's CPU time checked
/// (`deadline`): once it has used `CALL_CPU` (user and system time: its page faults count) since
/// that first tick, it is interrupted (`Trap::Interrupt`) and answered by the built-in hook like
/// any failed call — 2–6 ms after it started on an idle CPU. CPU time, not wall time: a call whose
/// thread merely waited for a CPU is not cut short (a wall-clock deadline failed one call in 10 k
/// of a well-behaved plugin under tests/plugin_reload.rs's 100 clients). 2 ms of CPU is ≈ 50 M
/// fuel of plain computation: only a `fuel` set above that meets this bound first.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(2);
pub const CALL_CPU: std::time::Duration = std::time::Duration::from_millis(2);
/// The time bound of the manifest call made once when a plugin loads (off the runtime threads):
/// a fresh instance's first call also sets up the guest's heap, and under callgrind (≈ 50× slower)
/// that alone passed 2 ms of CPU and the canary router was refused at load.
pub const LOAD_CPU: std::time::Duration = std::time::Duration::from_millis(100);

/// What to do when a call is still running at an epoch tick. `mark`: the thread's CPU time at the
/// call's first tick (reset to `None` before each call); `limit`: the call's CPU bound.
pub fn deadline(mark: &mut Option<std::time::Duration>, limit: std::time::Duration) -> wasmtime::UpdateDeadline {
    let now = thread_cpu();
    match *mark {
        None => {
            *mark = Some(now);
            wasmtime::UpdateDeadline::Continue(1)
        }
        Some(m) if now.saturating_sub(m) >= limit => wasmtime::UpdateDeadline::Interrupt,
        Some(_) => wasmtime::UpdateDeadline::Continue(1),
    }
}

/// The calling thread's CPU time. glibc's `clock_gettime`, not rustix's: rustix finds the vDSO
/// itself on first use by parsing the ELF auxiliary vector, and callgrind aborted there (an
/// assertion on a signal, twice in a row) when a plugin call under it reached its first epoch
/// tick — benches/plugin.sh measures instructions per request under callgrind.
#[allow(unsafe_code)]
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the call writes it and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub fn engine() -> Engine {
    let mut c = Config::new();
    // Fuel bounds every call (deterministic, unlike an epoch deadline that needs a ticker thread).
    c.consume_fuel(true);
    // …and the epoch its time (`EPOCH_TICK`, `deadline`).
    c.epoch_interruption(true);
    // A plugin runs on the caller's stack: keep its share small.
    c.max_wasm_stack(256 << 10);
    // The on-demand allocator: weft keeps a few warm instances per plugin and instantiates only
    // after a failed call, so the pooling allocator's faster instantiation (6–16 µs against
    // 10–30 µs) does not pay for the address space it reserves up front.
    Engine::new(&c).expect("a plain cranelift engine configuration is valid")
}

/// Starts the epoch thread the first time a component is compiled, so a node without plugins has
/// no such thread. One per process: a node has one engine (and `weft plugin check` its own
/// process); an engine that never gets ticks has calls bounded by fuel alone.
fn ticking(engine: &Engine) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| tick(engine));
}

/// Advances the engine's epoch every `EPOCH_TICK` until the engine is dropped.
fn tick(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
        while let Some(e) = weak.upgrade() {
            e.increment_epoch();
            drop(e);
            std::thread::sleep(EPOCH_TICK);
        }
    });
    if let Err(e) = spawned {
        // Without the ticker no deadline passes: calls stay bounded by fuel alone.
        tracing::warn!(error = %e, "cannot start the plugin epoch thread; plugin calls are bounded by fuel only");
    }
}

/// sha256 of the bytes, hex: a plugin version's identity (and its cache key).
pub fn content_hash(bytes: &[u8]) -> String {
    crate::catalog::sha256_hex(bytes)
}

/// The first check, before the compiler sees the bytes: a clear reason for common mistakes.
fn sniff(bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(format!("{} bytes: larger than the {} MiB a plugin may be", bytes.len(), MAX_COMPONENT_BYTES >> 20));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not WebAssembly (bad magic number)".into());
    }
    // Core modules have version 1; components carry layer 1 in the upper half of the version.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err("a core WebAssembly module, not a component (build for wasm32-wasip2, or run `wasm-tools component new`)".into());
    }
    Ok(())
}

/// The cached artifact for these bytes on this engine: the file name changes with the content
/// and with anything that makes an artifact unusable (wasmtime version, target, settings).
fn artifact_path(dir: &Path, engine: &Engine, hash: &str) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{hash}-{:016x}.cwasm", h.finish()))
}

/// Compiles (or loads from the cache) and checks a component against the WIT.
pub fn compile(engine: &Engine, bytes: &[u8], cache: Option<&Path>) -> Result<(Prepared, String), String> {
    sniff(bytes)?;
    ticking(engine);
    let hash = content_hash(bytes);
    let cached = cache.map(|d| artifact_path(d, engine, &hash));
    let component = match cached.as_deref().and_then(|p| load_artifact(engine, p)) {
        Some(c) => c,
        None => {
            let c = Component::new(engine, bytes).map_err(|e| format!("{e:#}"))?;
            if let Some(p) = &cached {
                store_artifact(&c, p);
            }
            c
        }
    };
    let prepared = wasm::prepare(engine, &component).map_err(|e| e.to_string())?;
    Ok((prepared, hash))
}

#[allow(unsafe_code)]
fn load_artifact(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.exists() {
        return None;
    }
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output. It is: only
    // `store_artifact` writes this directory (under weft's data dir, written to a temporary
    // name and renamed, so never half-written), and the name carries the engine's
    // compatibility hash; wasmtime still checks version and settings and refuses a mismatch.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cached plugin artifact unusable; compiling");
            None
        }
    }
}

fn store_artifact(c: &Component, path: &Path) {
    let write = || -> std::io::Result<()> {
        let bytes = c.serialize().map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "cannot cache the compiled plugin; it is compiled again at the next start");
    }
}

/// Reads a plugin file with the checks that give a clear error.
pub fn read(path: &Path) -> Result<Vec<u8>, PluginError> {
    let meta = std::fs::metadata(path).map_err(|e| PluginError::Read { path: path.to_path_buf(), source: e })?;
    if meta.len() > MAX_COMPONENT_BYTES as u64 {
        return Err(PluginError::Refused { file: path.display().to_string(), reason: format!("{} bytes: larger than the {} MiB a plugin may be", meta.len(), MAX_COMPONENT_BYTES >> 20) });
    }
    std::fs::read(path).map_err(|e| PluginError::Read { path: path.to_path_buf(), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Why `weft plugin check` (load, match against the WIT, instantiate) refuses a fixture.
    fn refusal(fixture: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/fixtures").join(fixture);
        match super::super::PluginHost::check_file(&path, "") {
            Ok(_) => panic!("{fixture} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_component_of_another_wit_version_is_refused_naming_both() {
        let e = refusal("wrong-version.wasm");
        assert!(e.contains("wrong-version.wasm") && e.contains("no hook of weft:policy@0.4.0") && e.contains("built against weft:policy@0.3.0"), "{e}");
    }

    #[test]
    fn a_hook_of_another_type_is_refused() {
        let e = refusal("wrong-signature.wasm");
        assert!(e.contains("wrong-signature.wasm") && e.contains("does not match weft:policy@0.4.0"), "{e}");
    }
}
