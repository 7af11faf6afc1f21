//! Where the control plane's tasks run.
//!
//! On a node with more than one CPU, on the node's own (work-stealing) runtime. On a one-CPU node
//! the node's runtime is a single thread, and every task took turns with the requests on it: a
//! burst of catalog writes meant admin API requests (hyper, JSON, the write), gossip merges and
//! anti-entropy exchanges, health probes being started and the registry's series being pruned,
//! each poll of them a stretch of 50–300 µs during which no request moved
//! (`benches/catalog_writes.sh`). There they run on a second current-thread runtime, on a thread
//! of its own (`weft-control`) at nice 10 with the kernel's default slice, while the data plane's
//! thread asks for the shortest one (`crate::background`): the kernel then preempts a control
//! poll the moment a request's socket wakes the data plane, and gives the control plane the
//! whole CPU whenever the data plane waits. It keeps its fair share (nice, not the idle class),
//! so a saturated proxy still answers its admin API and gossips.
//!
//! Sockets belong to the runtime whose reactor registered them, so the tasks that run here bind
//! their own (the admin listener is handed over as a std listener); the QUIC transport stays on
//! the data plane's runtime (it carries the relayed requests too) and the gossip task talks to it
//! through channels and quinn's handles, which work from any runtime.

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio_util::sync::CancellationToken;

/// The runtime the control plane's tasks are spawned on; stops its thread when dropped.
pub(super) struct ControlPlane {
    handle: Handle,
    /// Set when the control plane has a thread of its own: cancelled on drop, ending it.
    own: Option<CancellationToken>,
}

impl ControlPlane {
    /// A thread of its own when the calling runtime is single-threaded, else the calling runtime.
    /// Falls back to the calling runtime (logged) if the thread cannot start.
    pub(super) fn start() -> Self {
        let current = Handle::current();
        if current.runtime_flavor() != RuntimeFlavor::CurrentThread {
            return ControlPlane { handle: current, own: None };
        }
        match spawn_thread() {
            Ok((handle, stop)) => ControlPlane { handle, own: Some(stop) },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the control plane's thread; it shares the data plane's");
                ControlPlane { handle: current, own: None }
            }
        }
    }

    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(stop) = &self.own {
            stop.cancel();
        }
    }
}

fn spawn_thread() -> std::io::Result<(Handle, CancellationToken)> {
    let runtime = crate::background::lower_blocking_pool(&mut tokio::runtime::Builder::new_current_thread()).enable_all().build()?;
    let handle = runtime.handle().clone();
    let stop = CancellationToken::new();
    let done = stop.clone();
    std::thread::Builder::new().name("weft-control".into()).spawn(move || {
        crate::background::lower_this_thread("weft-control");
        runtime.block_on(done.cancelled());
        // Whatever is still spawned here is dropped with the runtime, on this thread.
    })?;
    Ok((handle, stop))
}
