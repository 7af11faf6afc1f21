//! Threads that work for the control plane (the catalog's publisher, the store's writer, the
//! routing-table builder) run at a lower CPU priority than the runtime threads that carry traffic.
//!
//! On a one-CPU node those threads share the core with the runtime's single worker, and the
//! scheduler gives equal threads equal turns: a snapshot built during a burst of catalog writes
//! held requests back for as long as it ran (`benches/catalog_writes.sh`). Two classes:
//!
//! - [`Class::Idle`] (`SCHED_IDLE`) for work nothing on the data path waits for: the store's
//!   writer (durable copies of what is already in memory). A runtime thread that wakes takes the core from such a
//!   thread at once. At nice 10 it did not: the kernel's scheduler (EEVDF) lets a running thread
//!   finish its slice (≈ 1–3 ms), and the store writer, 6.5 % of the proxy's CPU during a burst
//!   of 1,000 writes, lifted the proxied p99 from 0.3 to 1.7 ms (`perf` over the bench).
//!   An idle-class thread still gets the core whenever the runtime waits, and a sliver (≈ 0.3 %)
//!   when it never does, so on a saturated core a durable write waits longer.
//! - [`Class::Low`] (nice 10) for the catalog's publisher and the routing-table builder: a new
//!   snapshot and table are how a dead endpoint leaves rotation, so they keep about a tenth of a
//!   saturated core.

/// The nice value of [`Class::Low`] threads (the runtime's threads keep the process's own).
pub const NICE: i32 = 10;

#[derive(Clone, Copy, Debug)]
pub enum Class {
    /// `SCHED_IDLE`: runs when no normal thread wants the core.
    Idle,
    /// nice [`NICE`]: a smaller share of a contended core.
    Low,
}

/// Lowers the calling thread's priority to `class` (Linux). A failure is logged, not fatal: the
/// thread then runs at the normal priority (or at nice 10, when `SCHED_IDLE` is refused).
pub fn lower_this_thread(what: &str, class: Class) {
    if let Class::Idle = class {
        match set_idle_policy() {
            Ok(()) => return,
            Err(e) => tracing::debug!(thread = what, error = %e, "cannot give the thread the idle scheduling class; lowering its nice value"),
        }
    }
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
        tracing::debug!(thread = what, error = %e, "cannot lower the thread's priority");
    }
}

#[allow(unsafe_code)]
fn set_idle_policy() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` reads `param` only; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
