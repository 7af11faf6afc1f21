//! Routing tables are built on a thread of their own, at background priority, never on a runtime
//! thread.
//!
//! A table is built from the whole catalog: with 1,000 services that took 5–10 ms (quick-release
//! build), and on a one-CPU node the runtime's single worker served no request meanwhile. During
//! a burst of 1,000 catalog writes the tables were rebuilt ten times a second (the catalog
//! publishes at most every 100 ms), and the proxied p99 rose from 0.6 ms to 6.8 ms
//! (`benches/catalog_writes.sh`). Built here, at nice 10 (`crate::background`), the data plane
//! preempts the build instead of waiting for it.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::table::{Peers, RoutingTable, TableBuilder};
use crate::catalog::Snapshot;
use crate::policy::PluginSource;
use crate::telemetry::Stats;
use crate::telemetry::access::AccessLog;

/// What one table is built from.
pub struct Build {
    pub snap: Arc<Snapshot>,
    pub stats: Arc<Stats>,
    pub clients: HashSet<String>,
    pub me: Arc<crate::authz::Identity>,
    pub peers: Peers,
    pub plugins: Arc<dyn PluginSource>,
}

enum Job {
    Build(Build, Option<Arc<AccessLog>>, oneshot::Sender<RoutingTable>),
    /// A table taken out of service: freed here, not on the runtime (with 1,000 services its
    /// routes, targets and strings are thousands of allocations, ≈ 1 ms of a worker's time).
    Retire(Arc<RoutingTable>),
}

/// The proxy manager's handle on the thread that owns the [`TableBuilder`].
pub struct TableWorker {
    jobs: std::sync::mpsc::Sender<Job>,
    /// The node's access log writer, once started; handed to the builder with every job.
    pub access: Option<Arc<AccessLog>>,
}

impl TableWorker {
    /// Starts the thread `weft-routing`; it ends when the worker is dropped.
    pub fn start(mut builder: TableBuilder) -> TableWorker {
        let access = builder.access.clone();
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("weft-routing".into()).spawn(move || {
            crate::background::lower_this_thread("weft-routing");
            while let Ok(job) = rx.recv() {
                match job {
                    Job::Build(b, access, reply) => {
                        builder.access = access;
                        let table = builder.build(&b.snap, &b.stats, &b.clients, &b.me, &b.peers, &*b.plugins);
                        let _ = reply.send(table);
                    }
                    Job::Retire(old) => drop(old),
                }
            }
        });
        if let Err(e) = spawned {
            // Not fatal to the process, but nothing would route: say so loudly.
            tracing::error!(error = %e, "cannot start the routing-table thread; no routes will be built");
        }
        TableWorker { jobs, access }
    }

    /// The table for `b`; `None` if the thread is gone (logged at its start).
    pub async fn build(&self, b: Build) -> Option<RoutingTable> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(Job::Build(b, self.access.clone(), tx)).ok()?;
        rx.await.ok()
    }

    /// Frees `old` on the builder's thread (dropped here if that thread is gone). Requests still
    /// holding one of its routes free that route themselves when they end.
    pub fn retire(&self, old: Arc<RoutingTable>) {
        let _ = self.jobs.send(Job::Retire(old));
    }
}
