//! `weft run`: the command line's settings over the files', the runtime (one thread on one
//! CPU), and the node until it stops.

use std::process::ExitCode;

use super::{Cli, RunArgs, EXIT_CONFIG, init_logging, load_or_exit};
use crate::config;
use crate::config::Config;

impl RunArgs {
    /// The command line's settings win over the files', at startup and on every reload.
    fn apply(&self, config: &mut Config) {
        if let Some(m) = self.mode {
            config.node.mode = m;
        }
        if let Some(d) = &self.data_dir {
            config.node.data_dir = Some(d.clone());
        }
        if let Some(a) = self.listen_admin {
            config.admin.listen = a;
        }
        if let Some(a) = self.listen_dns {
            config.dns.listen = a;
        }
        if self.no_dns {
            config.dns.enabled = false;
        }
    }
}

pub(super) fn run(cli: &Cli, args: &RunArgs) -> ExitCode {
    let mut config = match load_or_exit(cli.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    args.apply(&mut config);
    // SIGHUP reads the same files again, with the same flags.
    let reload: Option<crate::node::ConfigLoader> = cli.config.clone().map(|path| {
        let overrides = args.clone();
        std::sync::Arc::new(move || {
            let mut c = config::load(&path)?;
            overrides.apply(&mut c);
            Ok(c)
        }) as crate::node::ConfigLoader
    });
    init_logging();
    // On a single CPU (a container limit, `taskset`, a small VM) the work-stealing scheduler only
    // adds hand-offs and atomics; one thread runs everything with less per-request CPU
    // (BENCHMARKS.md). Blocking work still goes to `spawn_blocking` threads either way.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu { tokio::runtime::Builder::new_current_thread() } else { tokio::runtime::Builder::new_multi_thread() };
    if one_cpu {
        // The runtime's only worker is this thread; the others are the blocking pool's (API
        // writes, file work), control-plane work that must not take turns with the requests.
        crate::background::lower_blocking_pool(&mut builder);
    } else {
        builder.thread_name("weft");
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if one_cpu {
        crate::background::shorten_this_threads_slice("weft");
    }
    match runtime.block_on(crate::node::run(config, crate::node::Launch { reload, takeover: args.takeover })) {
        Ok(()) => ExitCode::SUCCESS,
        // The same problems `weft validate` reports with EX_CONFIG.
        Err(e @ (crate::node::NodeError::Config(_) | crate::node::NodeError::Transport(crate::transport::TransportError::Tls(_)))) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

