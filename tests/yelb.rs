//! Issue 15 acceptance: the Yelb migration walkthrough (config/examples/yelb/README.md) runs as
//! written. The test takes the README's `sh` blocks marked `<!-- ci: … -->` and runs them with
//! bash, unchanged, with this build's `weft` first on PATH, in a mount namespace whose /etc/hosts
//! is a copy (weft manages a block in it; the machine's file is not touched). PostgreSQL and Redis
//! are the Debian ones, the app server is config/examples/yelb/appserver.py (psycopg2, redis-py),
//! the UI is nginx. Then it checks what the walkthrough claims:
//! - the vote made through the UI's API path (`/api/ihop`) is in PostgreSQL;
//! - the app server reached PostgreSQL and Redis through weft (the endpoints' connection counts)
//!   and only through weft: with weft stopped its names are gone and it answers 503;
//! - weft removed its /etc/hosts block on the way out.
//!
//! The walkthrough uses the ports a user would see (5432, 6379, 4567, 18080, the admin API on
//! 9901, DNS on 5353); they must be free. Needs root (mount namespace, PostgreSQL as `postgres`).
mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PORTS: [u16; 6] = [5432, 6379, 4567, 18080, 9901, 5353];

/// The README's blocks marked for CI, in order.
fn walkthrough(readme: &str) -> String {
    let mut script = String::from("set -euo pipefail\nset -x\n");
    let mut rest = readme;
    while let Some(i) = rest.find("<!-- ci:") {
        let after = &rest[i..];
        let start = after.find("```sh\n").expect("a ci marker is followed by an sh block") + 6;
        let end = after[start..].find("```").expect("the sh block ends") + start;
        script.push_str(&after[start..end]);
        rest = &after[end..];
    }
    script
}

/// Stops what the walkthrough started if it failed half-way.
struct Cleanup<'a> {
    example: &'a Path,
    state: &'a Path,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(self.example.join("yelb.sh")).arg("stop").env("YELB_STATE", self.state).status();
        let _ = Command::new("pkill").args(["-TERM", "-f", &format!("^{WEFT} run -c conf$")]).status();
        let _ = std::fs::remove_dir_all(self.example.join("conf"));
    }
}

#[test]
fn the_yelb_walkthrough_runs_as_written() {
    let test = "the_yelb_walkthrough_runs_as_written";
    if !require_root(test) {
        return;
    }
    for p in ["psql", "redis-server", "nginx", "unshare", "getent", "curl"] {
        if !require_program(test, p) {
            return;
        }
    }
    for port in PORTS {
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "{test}: 127.0.0.1:{port} is taken; the walkthrough uses it (stop a system PostgreSQL/Redis)");
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = repo.join("config/examples/yelb");
    let script = walkthrough(&std::fs::read_to_string(example.join("README.md")).unwrap());
    assert!(script.contains("weft import ecs") && script.contains("kill %1"), "both marked blocks: {script}");

    let tmp = TempDir::new("yelb");
    // PostgreSQL runs as `postgres`, which must reach its data dir inside.
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let state = tmp.join("state");
    let hosts = tmp.join("hosts");
    std::fs::copy("/etc/hosts", &hosts).unwrap();
    std::fs::write(tmp.join("walkthrough.sh"), &script).unwrap();
    let _ = std::fs::remove_dir_all(example.join("conf"));
    let _cleanup = Cleanup { example: &example, state: &state };

    let out = tmp.join("out.txt");
    let inner = format!("mount --bind {} /etc/hosts && bash {} > {} 2>&1", hosts.display(), tmp.join("walkthrough.sh").display(), out.display());
    let bin = Path::new(WEFT).parent().unwrap().display().to_string();
    let r = run_cmd(
        Command::new("unshare")
            .args(["-m", "bash", "-c", &inner])
            .current_dir(repo)
            .env("PATH", format!("{bin}:{}", std::env::var("PATH").unwrap_or_default()))
            .env("HOME", tmp.path())
            .env_remove("XDG_STATE_HOME")
            .env("YELB_STATE", &state),
        None,
        Duration::from_secs(240),
    );
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let logs = || {
        ["appserver.log", "postgres.log", "nginx-error.log"]
            .iter()
            .map(|f| format!("--- {f}\n{}", std::fs::read_to_string(state.join(f)).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
            + &format!("\n--- weft.log\n{}", std::fs::read_to_string(example.join("weft.log")).unwrap_or_default())
    };
    eprintln!("{text}");
    assert_eq!(r.code, Some(0), "the walkthrough failed ({}):\n{text}\n{}", r.both(), logs());

    // The vote went through the UI and the app server into PostgreSQL.
    assert!(text.contains(r#"{"name": "ihop", "value": 1}"#), "getvotes after one vote:\n{text}");
    let row = text.lines().find(|l| l.trim_start().starts_with("ihop ")).unwrap_or_else(|| panic!("no psql row for ihop:\n{text}"));
    assert_eq!(row.split('|').nth(1).map(str::trim), Some("1"), "PostgreSQL's own count: {row}");
    // …through weft: the database and cache endpoints carried the app server's connections.
    for endpoint in ["yelb-db-1", "yelb-redis-server-1"] {
        let line = text.lines().find(|l| l.split_whitespace().nth(1) == Some(endpoint)).unwrap_or_else(|| panic!("no stats line for {endpoint}:\n{text}"));
        let conns: u64 = line.split_whitespace().nth(4).and_then(|c| c.parse().ok()).unwrap_or(0);
        assert!(conns >= 1, "{endpoint} carried no connection: {line}");
    }
    // …and only through weft: stopped, its names are gone and the app server cannot reach them.
    assert!(text.contains("yelb-db.yelb.cloudmap.internal: back to DNS"), "{text}");
    assert!(text.contains("backend unavailable"), "the app server without weft:\n{text}");
    let hosts_after = std::fs::read_to_string(&hosts).unwrap();
    assert!(!hosts_after.contains("yelb-db.yelb.cloudmap.internal"), "weft left its block in /etc/hosts:\n{hosts_after}");
    let log = std::fs::read_to_string(example.join("weft.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

/// The two-host configs of the walkthrough are valid with a real cluster CA's certificates, and
/// host A carries the services `weft import ecs` makes of the ECS files (they cannot drift apart).
#[test]
fn the_two_host_yelb_configs_validate_and_match_the_import() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = repo.join("config/examples/yelb");
    let tmp = TempDir::new("yelb-two");
    let pki = tmp.join("pki");
    weft_cmd(&["ca", "init", "--dir", pki.to_str().unwrap()]).expect_ok();
    for host in ["host-a", "host-b"] {
        weft_cmd(&["ca", "issue", "--dir", pki.to_str().unwrap(), "--node", host]).expect_ok();
        let text = std::fs::read_to_string(example.join(format!("two-hosts/{host}.toml"))).unwrap().replace("/etc/weft/pki", pki.to_str().unwrap());
        let path = tmp.join(&format!("{host}.toml"));
        std::fs::write(&path, text).unwrap();
        weft_cmd(&["validate", path.to_str().unwrap()]).expect_ok();
    }
    let files: Vec<String> = std::fs::read_dir(example.join("ecs")).unwrap().map(|e| e.unwrap().path().display().to_string()).collect();
    let mut args = vec!["import", "ecs"];
    args.extend(files.iter().map(String::as_str));
    let imported = weft_cmd(&args).expect_ok().stdout();
    let host_a = std::fs::read_to_string(example.join("two-hosts/host-a.toml")).unwrap();
    let services: Vec<&str> = imported.split("\n\n").filter(|b| b.starts_with("[[service]]")).collect();
    assert_eq!(services.len(), 3, "{imported}");
    for block in services {
        assert!(host_a.contains(block), "two-hosts/host-a.toml lacks the imported\n{block}");
    }
}
