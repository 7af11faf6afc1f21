//! `weft run` with no config at all: combined node, admin API on 127.0.0.1:9901, DNS responder on
//! 127.0.0.1:5353 (UDP+TCP), data under $XDG_STATE_HOME/weft, namespace "default" ensured, and client
//! commands that find the daemon with no flags. Fixed ports, so it runs in its own network namespace
//! (needs root; fails loudly under CI=true).
mod common;
use common::*;
use std::time::Duration;

#[test]
fn no_config_uses_documented_defaults() {
    if !require_root("defaults::no_config_uses_documented_defaults") {
        return;
    }
    let ns = Netns::new("defaults");
    let tmp = TempDir::new("defaults");
    let state = tmp.join("state");
    let mut c = command(ns.ns(), WEFT);
    c.arg("run").env_remove("WEFT_ADMIN").env("XDG_STATE_HOME", &state).env("HOME", tmp.path());
    let mut weft = Bg::spawn("weft run (no config)", &mut c, Some(tmp.join("weft.log")));

    let up = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        curl_get(ns.ns(), "http://127.0.0.1:9901/v1/status").0 == 200
    });
    assert!(up && weft.alive(), "admin API not on 127.0.0.1:9901:\n{}", weft.log_text());
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        weft.log_text().lines().any(|l| l.contains("weft ready") && l.contains("127.0.0.1:9901"))
    });
    assert!(ok, "no `weft ready` line naming 127.0.0.1:9901:\n{}", weft.log_text());

    // the dashboard
    let (code, body, _) = curl_get(ns.ns(), "http://127.0.0.1:9901/");
    assert_eq!(code, 200);
    assert!(body.to_ascii_lowercase().contains("<html") || body.to_ascii_lowercase().contains("<!doctype"), "{body}");

    // client commands with no flags find 127.0.0.1:9901
    let mut c = command(ns.ns(), WEFT);
    c.args(["namespace", "list", "-o", "json"]).env_remove("WEFT_ADMIN");
    let out = run_cmd(&mut c, None, Duration::from_secs(20));
    out.expect_ok();
    let list = as_list(&out.json());
    assert!(list.iter().any(|n| n["name"] == "default"), "namespace default ensured: {list:?}");

    // DNS responder on 127.0.0.1:5353, UDP and TCP (ss inside the netns)
    let mut c = command(ns.ns(), "ss");
    c.args(["-Hlnu", "sport", "= :5353"]);
    let udp = run_cmd(&mut c, None, Duration::from_secs(10));
    assert!(udp.stdout().contains("127.0.0.1:5353"), "no UDP listener on 127.0.0.1:5353: {}", udp.both());
    let mut c = command(ns.ns(), "ss");
    c.args(["-Hlnt", "sport", "= :5353"]);
    let tcp = run_cmd(&mut c, None, Duration::from_secs(10));
    assert!(tcp.stdout().contains("127.0.0.1:5353"), "no TCP listener on 127.0.0.1:5353: {}", tcp.both());

    // data dir under $XDG_STATE_HOME/weft
    let data = state.join("weft");
    assert!(
        data.is_dir() && std::fs::read_dir(&data).map(|mut d| d.next().is_some()).unwrap_or(false),
        "data dir {} missing or empty",
        data.display()
    );

    // SIGTERM: clean exit 0
    let _ = std::process::Command::new("kill").args(["-TERM", &weft.pid().to_string()]).status();
    let exited = wait_until(Duration::from_secs(30), Duration::from_millis(20), || !weft.alive());
    assert!(exited, "weft did not exit on SIGTERM");
    let st = weft.child.try_wait().unwrap().unwrap();
    assert!(st.success(), "SIGTERM exit status {st}:\n{}", weft.log_text());
}
