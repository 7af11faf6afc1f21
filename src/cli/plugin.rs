//! `weft plugin check` (local: compiles the file here), the body of `weft plugin push` and the
//! table of `weft plugin list`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

use super::output::{say, table};
use crate::plugin::{PluginHost, hook_names, hook_wit};

/// Compiles and checks a component as a node would load it; prints its hooks and their WIT.
pub fn check(file: &Path, config: &str) -> ExitCode {
    match PluginHost::check_file(file, config) {
        Ok((hooks, wanted, hash)) => {
            say(format!("OK: {} is a weft:policy@0.4.0 plugin (sha256 {hash})", file.display()));
            let names = hook_names(hooks);
            say(format!("hooks: {} (the others stay built-in)", names.join(", ")));
            if wanted.is_empty() {
                say("reads no request headers");
            } else {
                say(format!("reads request headers: {}", wanted.join(", ")));
            }
            for (on, iface) in [(hooks.route, "router"), (hooks.pick, "balancer"), (hooks.retry, "retrier")] {
                if let Some(wit) = hook_wit(iface).filter(|_| on) {
                    say(format!("\n{wit}"));
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One row per plugin and hook: what it is, where it runs, how its calls went.
pub fn list_table(v: &Value) {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let mut rows = Vec::new();
    for p in v.as_array().into_iter().flatten() {
        let hash = p.get("hash").and_then(Value::as_str).map(|h| h[..h.len().min(12)].to_string()).unwrap_or_else(|| "-".into());
        let services = p.get("services").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")).filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into());
        let status = match p.get("last_refusal").and_then(Value::as_str) {
            Some(_) => format!("{} (last load refused)", s(p, "status")),
            None => s(p, "status"),
        };
        let calls = p.get("calls").and_then(Value::as_object).cloned().unwrap_or_default();
        if calls.is_empty() {
            rows.push(vec![s(p, "name"), status.clone(), hash.clone(), services.clone(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into()]);
        }
        for (i, (hook, f)) in calls.iter().enumerate() {
            let n = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
            let first = i == 0;
            let cell = |x: String| if first { x } else { String::new() };
            rows.push(vec![
                cell(s(p, "name")),
                cell(status.clone()),
                cell(hash.clone()),
                cell(services.clone()),
                hook.clone(),
                n("calls").to_string(),
                n("reused").to_string(),
                n("failures").to_string(),
                format!("{:.2}", n("mean_ns") as f64 / 1000.0),
            ]);
        }
    }
    table(&["NAME", "STATUS", "SHA256", "SERVICES", "HOOK", "CALLS", "REUSED", "FAILURES", "µS/CALL"], &rows);
    for p in v.as_array().into_iter().flatten() {
        if let Some(r) = p.get("last_refusal").and_then(Value::as_str) {
            say(format!("{}: {r}", s(p, "name")));
        } else if let Some(e) = p.get("last_error").and_then(Value::as_str) {
            say(format!("{}: last failure: {e}", s(p, "name")));
        }
    }
}

/// The `PUT /v1/plugins/NAME` body for `weft plugin push`: the file (base64) and its settings.
pub fn push_body(p: &PushArgs) -> Result<Value, String> {
    use base64::Engine as _;
    let bytes = std::fs::read(&p.file).map_err(|e| format!("cannot read {}: {e}", p.file.display()))?;
    if bytes.len() > crate::catalog::MAX_COMPONENT_BYTES {
        return Err(format!("{}: {} bytes, larger than the {} MiB a plugin may be", p.file.display(), bytes.len(), crate::catalog::MAX_COMPONENT_BYTES >> 20));
    }
    let mut body = serde_json::json!({
        "component": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "config": p.plugin_config,
        "fail": p.fail,
    });
    if let Some(f) = p.fuel {
        body["fuel"] = f.into();
    }
    if let Some(m) = p.memory_mb {
        body["memory_mb"] = m.into();
    }
    Ok(body)
}

#[derive(clap::Subcommand, Debug)]
pub enum PluginCmd {
    /// Check a component against weft's WIT (no node needed): prints the hooks it exports, their
    /// WIT, and the request headers it reads; exits non-zero with the reason when it is refused.
    Check {
        file: PathBuf,
        /// The configuration to hand the plugin (`[[plugin]] config`), for plugins that check
        /// theirs when they load.
        #[arg(long = "plugin-config", value_name = "TEXT", default_value = "")]
        plugin_config: String,
    },
    /// The node's plugins: status, hash, hooks, services using them, calls, failures and time
    /// per call.
    List,
    /// Read a plugin's file again now (the node also notices a replaced file within 0.5 s).
    Reload { name: String },
    /// Store a component on the mesh (on a registry node): it replicates to every node and goes
    /// live wherever a service names it (`policy = "NAME"`). Pushing again replaces it.
    Push(PushArgs),
    /// Delete a plugin from the mesh (refused while a service names it).
    Rm { name: String },
}

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    pub file: PathBuf,
    /// The plugin's name, as services name it in `policy`.
    #[arg(long)]
    pub name: String,
    /// Handed to the plugin by `host.config()` (e.g. JSON).
    #[arg(long = "plugin-config", value_name = "TEXT", default_value = "")]
    pub plugin_config: String,
    /// Fuel per call (default 1000000).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Memory cap per instance, MiB (default 16).
    #[arg(long = "memory-mb")]
    pub memory_mb: Option<u32>,
    /// What a failed call does: `open` (the built-in hook answers) or `closed` (503).
    #[arg(long, default_value = "open", value_parser = ["open", "closed"])]
    pub fail: String,
}
