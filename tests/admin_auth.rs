//! Issue 16, "a protected admin API" (the bearer-token half): a node whose admin API listens
//! beyond loopback must have `[admin] token_file` (validate and run refuse it without), answers a
//! request without the token or with a wrong one 401 naming what is missing, serves one with it,
//! and the CLI sends it (`--token-file`). The node runs in a network namespace with a veth
//! interface (10.77.0.1), so the caller's address is not loopback. Needs root.
mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "3f9c1e7a5b2d4c6e8f0a1b3c5d7e9f21";

fn in_ns(ns: &Netns, args: &[&str]) -> CmdOut {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name]).args(args).env_remove("WEFT_ADMIN").env_remove("WEFT_CONFIG");
    run_cmd(&mut c, None, Duration::from_secs(30))
}

/// `curl` in the namespace: the status code.
fn status(ns: &Netns, extra: &[&str]) -> String {
    let mut args = vec!["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"];
    args.extend(extra);
    args.push("http://10.77.0.1:9901/v1/status");
    in_ns(ns, &args).stdout()
}

#[test]
fn a_non_loopback_admin_api_needs_its_token() {
    let test = "a_non_loopback_admin_api_needs_its_token";
    if !require_root(test) || !require_program(test, "curl") {
        return;
    }
    let ns = Netns::new("adm");
    for args in [&["ip", "link", "add", "a0", "type", "veth", "peer", "name", "a1"][..], &["ip", "addr", "add", "10.77.0.1/24", "dev", "a0"], &["ip", "link", "set", "a0", "up"], &["ip", "link", "set", "a1", "up"]] {
        in_ns(&ns, args).expect_ok();
    }
    let tmp = TempDir::new("admin-auth");
    let token = tmp.join("admin-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let base = format!("[node]\nname = \"adm\"\ndata_dir = \"{}\"\n\n[dns]\nenabled = false\n\n[admin]\nlisten = \"10.77.0.1:9901\"\n", tmp.join("data").display());

    // Without a token file the config is refused, by validate and by run.
    let open = tmp.join("open.toml");
    std::fs::write(&open, &base).unwrap();
    let r = weft_cmd(&["validate", open.to_str().unwrap()]);
    assert!(!r.ok() && r.stderr().contains("admin API needs `token_file`"), "{}", r.both());
    let r = in_ns(&ns, &[WEFT, "run", "-c", open.to_str().unwrap()]);
    assert!(!r.ok() && r.both().contains("admin API needs `token_file`"), "{}", r.both());
    // A token too short to be one is refused too.
    let short = tmp.join("short-token");
    std::fs::write(&short, "abc\n").unwrap();
    let weak = tmp.join("weak.toml");
    std::fs::write(&weak, format!("{base}token_file = \"{}\"\n", short.display())).unwrap();
    let r = weft_cmd(&["validate", weak.to_str().unwrap()]);
    assert!(!r.ok() && r.stderr().contains("`token_file`") && r.stderr().contains("at least 16"), "{}", r.both());

    let conf = tmp.join("weft.toml");
    std::fs::write(&conf, format!("{base}token_file = \"{}\"\n", token.display())).unwrap();
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name, WEFT, "run", "-c", conf.to_str().unwrap()]);
    let _node = Bg::spawn("weft", &mut c, Some(tmp.join("weft.log")));
    let up = wait_until(Duration::from_secs(15), Duration::from_millis(100), || status(&ns, &[]) == "401");
    assert!(up, "the node never answered 401 without a token: {}", std::fs::read_to_string(tmp.join("weft.log")).unwrap_or_default());

    assert_eq!(status(&ns, &["-H", "Authorization: Bearer wrong-token-wrong-token"]), "401");
    assert_eq!(status(&ns, &["-H", &format!("Authorization: Bearer {TOKEN}")]), "200");
    let body = in_ns(&ns, &["curl", "-s", "http://10.77.0.1:9901/v1/services"]).stdout();
    assert!(body.contains("Authorization: Bearer") && body.contains("token_file"), "the refusal says what is missing: {body}");

    // The CLI: refused without the token, works with it.
    let r = in_ns(&ns, &[WEFT, "--admin", "10.77.0.1:9901", "status"]);
    assert!(!r.ok() && r.stderr().contains("Bearer"), "{}", r.both());
    let r = in_ns(&ns, &[WEFT, "--admin", "10.77.0.1:9901", "--token-file", token.to_str().unwrap(), "service", "create", "web", "--alias", "web.auth:8080"]);
    r.expect_ok();
    let r = in_ns(&ns, &[WEFT, "-c", conf.to_str().unwrap(), "service", "list", "-o", "json"]);
    assert!(r.ok() && r.stdout().contains("\"web\""), "the CLI takes the token from the config's token_file: {}", r.both());
    let log = std::fs::read_to_string(tmp.join("weft.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
