//! The data plane's thread first: on a one-CPU node the runtime's single worker shares the core
//! with the threads that work for the control plane (the catalog's publisher, the store's writer,
//! the routing-table builder, the blocking pool's threads running API writes and file work), and
//! the scheduler gave equal threads equal turns: a snapshot built during a burst of catalog writes
//! held requests back for as long as it ran (`benches/catalog_writes.sh`). Two settings:
//!
//! - Background threads run at nice 10 ([`lower_this_thread`]): about a tenth of the core while the
//!   data plane wants it, all of it when the data plane waits, so their work still finishes
//!   promptly and a saturated proxy still gets new routing tables.
//! - The runtime's thread asks for a short scheduler slice ([`shorten_this_threads_slice`]): on
//!   Linux's EEVDF scheduler a thread that wakes preempts the running one only if its slice is
//!   shorter; with equal slices it waited for the running thread's slice (≈ 1–3 ms) to end, even
//!   behind a nice-10 thread. `perf sched` on a burst of writes: the runtime's thread preempted
//!   638 times by the blocking pool's threads. With the 100 µs slice (and the bench's other
//!   processes moved off the proxy's core) the burst's p99 by round read 0.57, 0.88, 2.4, 2.1,
//!   3.7 ms against 1.7, 3.4, 10.8, 13.8, 20.3 before (BENCHMARKS.md).
//!
//! Both keep every thread's fair share: nothing starves when the host's CPU is saturated (the
//! idle scheduling class would have let an application's busy threads stall weft's store writer
//! and API writes indefinitely).

/// The nice value background threads take (the runtime's threads keep the process's own).
pub const NICE: i32 = 10;

/// The slice the runtime's thread asks for (the smallest the kernel grants).
pub const RUNTIME_SLICE: std::time::Duration = std::time::Duration::from_micros(100);

/// Lowers the calling thread's priority to [`NICE`] with the kernel's default slice (a thread
/// started by the runtime's thread would inherit its short one). A failure is logged, not fatal:
/// the thread then runs at the normal priority.
pub fn lower_this_thread(what: &str) {
    if let Err(e) = set_this_thread(NICE, 0) {
        tracing::debug!(thread = what, error = %e, "cannot lower the thread's priority");
        let tid = rustix::thread::gettid();
        let _ = rustix::process::setpriority_process(Some(tid), NICE);
    }
}

/// Names a runtime's blocking-pool threads `weft-blocking` and lowers each as it starts: on a
/// one-CPU node they run API writes and file work, control-plane work.
pub fn lower_blocking_pool(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    builder.thread_name("weft-blocking").on_thread_start(|| lower_this_thread("weft-blocking"))
}

/// Asks the scheduler for a [`RUNTIME_SLICE`] slice for the calling thread, keeping its nice
/// value (Linux 6.12 and later: EEVDF's per-task slice, `sched_attr.sched_runtime`; earlier
/// kernels accept and ignore it).
pub fn shorten_this_threads_slice(what: &str) {
    let nice = rustix::process::getpriority_process(None).unwrap_or(0);
    if let Err(e) = set_this_thread(nice, RUNTIME_SLICE.as_nanos() as u64) {
        tracing::debug!(thread = what, error = %e, "cannot shorten the thread's scheduler slice");
    }
}

/// `sched_setattr` on the calling thread: the normal policy, `nice`, and a slice of `slice_ns`
/// (0: the kernel's default).
#[allow(unsafe_code)]
fn set_this_thread(nice: i32, slice_ns: u64) -> std::io::Result<()> {
    // SAFETY: an all-zero `sched_attr` is valid (plain integers).
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    attr.size = std::mem::size_of::<libc::sched_attr>() as u32;
    attr.sched_policy = libc::SCHED_OTHER as u32;
    attr.sched_nice = nice;
    attr.sched_runtime = slice_ns;
    // SAFETY: `sched_setattr(0, &attr, 0)` reads `attr.size` bytes of `attr`; pid 0 is the
    // calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0u32) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Frees `value` on a background thread (`weft-reaper`, at nice 10) instead of the caller's:
/// for large structures whose last reference may go on the runtime's thread. A catalog snapshot
/// of 5,000 records took 0.3–1 ms to free, and the task that happened to hold it last (the
/// proxy, the health supervisor, the plugin watcher) freed it there, between two requests.
pub fn drop_later<T: Send + 'static>(value: T) {
    static REAPER: std::sync::OnceLock<Option<std::sync::Mutex<std::sync::mpsc::Sender<Box<dyn Send>>>>> = std::sync::OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Send>>();
        let spawned = std::thread::Builder::new().name("weft-reaper".into()).spawn(move || {
            lower_this_thread("weft-reaper");
            for garbage in rx {
                drop(garbage);
            }
        });
        spawned.ok().map(|_| std::sync::Mutex::new(tx))
    });
    if let Some(tx) = reaper {
        // On failure the value comes back in the error and is freed here.
        let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(Box::new(value));
    }
}
