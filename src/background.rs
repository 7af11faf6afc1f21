//! Threads that work for the control plane (the catalog's publisher, the store's writer) run at
//! a lower CPU priority than the runtime threads that carry traffic.
//!
//! On a one-CPU node those threads share the core with the runtime's single worker, and the
//! scheduler gives equal threads equal turns: a snapshot built during a burst of catalog writes
//! held requests back for as long as it ran (`benches/catalog_writes.sh`). At nice 10 a runnable
//! background thread gets about a tenth of the core while the data plane wants it, and all of it
//! when the data plane is idle, so the work still finishes promptly.

/// The nice value background threads take (the runtime's threads keep the process's own).
pub const NICE: i32 = 10;

/// Lowers the calling thread's priority to [`NICE`] (Linux: `setpriority` on the thread id).
/// A failure is logged, not fatal: the thread then runs at the normal priority.
pub fn lower_this_thread(what: &str) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
        tracing::debug!(thread = what, error = %e, "cannot lower the thread's priority");
    }
}
