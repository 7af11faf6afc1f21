//! Bad input is rejected precisely: `weft validate` exits 78 with `file:line:col` and the key named;
//! the admin API answers 4xx naming the field and leaves state unchanged; `weft run` on a bad config
//! exits 78 naming the problem.
mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Does `text` contain `PATH:LINE:COL` for this path and line (any column number)?
fn has_location(text: &str, path: &Path, line: u32) -> bool {
    let needle = format!("{}:{line}:", path.display());
    text.match_indices(&needle).any(|(i, m)| {
        let rest = &text[i + m.len()..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        !digits.is_empty() && digits.parse::<u32>().unwrap() >= 1
    })
}

fn assert_config_error(out: &CmdOut, path: &Path, lines: &[u32], words: &[&str]) {
    let text = out.both();
    assert_eq!(out.code, Some(EX_CONFIG), "`{}` should exit 78 (EX_CONFIG); output:\n{text}", out.cmdline);
    assert!(
        lines.iter().any(|l| has_location(&text, path, *l)),
        "`{}` should name {}:<line {lines:?}>:<col>; output:\n{text}",
        out.cmdline,
        path.display()
    );
    for w in words {
        assert!(text.contains(w), "`{}` output should mention `{w}`:\n{text}", out.cmdline);
    }
    assert!(!text.lines().any(|l| l.trim() == "OK"), "a bad config must not print OK:\n{text}");
}

const VALID: &str = r#"[node]
name = "host-a"
mode = "combined"
zone = "zone-a"

[admin]
listen = "127.0.0.1:9901"

[dns]
enabled = true
listen = "127.0.0.1:5353"
vip_cidr = "127.255.0.0/16"
ttl = 5

[[namespace]]
name = "shop.internal"
description = "the shop"

[[service]]
namespace = "shop.internal"
name = "appserver"
protocol = "http"
aliases = [{ dns_name = "appserver", port = 4567 }, { dns_name = "app.shop.internal", port = 80 }]
timeouts = { connect_ms = 1000, request_s = 15, idle_s = 300 }

[[service]]
namespace = "shop.internal"
name = "db"
protocol = "tcp"
aliases = [{ dns_name = "db.shop.internal", port = 5432 }]
timeouts = { idle_s = 3600 }

[[endpoint]]
namespace = "shop.internal"
service = "appserver"
id = "app-1"
address = "127.0.0.1:8081"
zone = "zone-a"
attributes = { version = "v1" }

[[client]]
namespace = "shop.internal"
"#;

#[test]
fn validate_reports_file_line_col_and_exits_78() {
    let tmp = TempDir::new("validate");

    // valid: the spec's example
    let good = tmp.join("good.toml");
    fs::write(&good, VALID).unwrap();
    let out = weft_cmd(&["validate", good.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "valid config must validate: {}", out.both());
    assert!(out.stdout().contains("OK"), "validate prints OK: {}", out.both());

    // (a) typo'd key on line 5
    let typo = tmp.join("typo.toml");
    fs::write(&typo, "[node]\nname = \"bad\"\n\n[admin]\nlistn = \"127.0.0.1:9901\"\n").unwrap();
    assert_config_error(&weft_cmd(&["validate", typo.to_str().unwrap()]), &typo, &[5], &["listn"]);

    // a typo inside an array-of-tables entry
    let typo2 = tmp.join("typo2.toml");
    fs::write(
        &typo2,
        "[[service]]\nnamespace = \"default\"\nname = \"a\"\nprotocl = \"http\"\n",
    )
    .unwrap();
    assert_config_error(&weft_cmd(&["validate", typo2.to_str().unwrap()]), &typo2, &[4], &["protocl"]);

    // (b) wrong type on line 3
    let wrong = tmp.join("wrongtype.toml");
    fs::write(&wrong, "[dns]\nenabled = true\nttl = \"five\"\n").unwrap();
    assert_config_error(&weft_cmd(&["validate", wrong.to_str().unwrap()]), &wrong, &[3], &["ttl"]);

    // (c) duplicate alias: the same dns_name+port claimed twice (lines 4 and 9)
    let dup = tmp.join("dup.toml");
    fs::write(
        &dup,
        "[[service]]\nnamespace = \"default\"\nname = \"a\"\naliases = [{ dns_name = \"dup.test\", port = 80 }]\n\n\
         [[service]]\nnamespace = \"default\"\nname = \"b\"\naliases = [{ dns_name = \"dup.test\", port = 80 }]\n",
    )
    .unwrap();
    assert_config_error(&weft_cmd(&["validate", dup.to_str().unwrap()]), &dup, &[4, 9], &["dup.test"]);

    // (d) request_s is not allowed for tcp services (line 5; the service's own line 1 is accepted)
    let tcpto = tmp.join("tcp-timeout.toml");
    fs::write(
        &tcpto,
        "[[service]]\nnamespace = \"default\"\nname = \"db\"\nprotocol = \"tcp\"\ntimeouts = { request_s = 5 }\n",
    )
    .unwrap();
    assert_config_error(&weft_cmd(&["validate", tcpto.to_str().unwrap()]), &tcpto, &[1, 5], &["request_s"]);

    // (e) a bad enum value names the key
    let proto = tmp.join("proto.toml");
    fs::write(&proto, "[[service]]\nnamespace = \"default\"\nname = \"x\"\nprotocol = \"htp\"\n").unwrap();
    assert_config_error(&weft_cmd(&["validate", proto.to_str().unwrap()]), &proto, &[4], &["htp"]);

    // "default" is always ensured by `weft run`, so a config may use it without declaring it
    let dflt = tmp.join("default-ns.toml");
    fs::write(&dflt, "[[service]]\nnamespace = \"default\"\nname = \"web\"\naliases = [{ dns_name = \"web.test\", port = 80 }]\n").unwrap();
    let out = weft_cmd(&["validate", dflt.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "a service in namespace `default` needs no [[namespace]]: {}", out.both());
}

#[test]
fn config_directory_is_merged_in_lexical_order() {
    let tmp = TempDir::new("confdir");
    let dir = tmp.join("conf.d");
    fs::create_dir_all(&dir).unwrap();
    let admin_port = free_port();
    let dns_port = free_port();
    let backend_port = free_port();
    let _b = http_backend(None, "merged", backend_port);
    fs::write(
        dir.join("10-base.toml"),
        format!(
            "[node]\nname = \"merge-node\"\ndata_dir = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n\
             [dns]\nlisten = \"127.0.0.1:{dns_port}\"\nvip_cidr = \"{}\"\n\n[[namespace]]\nname = \"merge.test\"\n",
            tmp.join("data").display(),
            vip_cidr(60)
        ),
    )
    .unwrap();
    fs::write(
        dir.join("20-services.toml"),
        format!(
            "[[service]]\nnamespace = \"merge.test\"\nname = \"api\"\nprotocol = \"http\"\n\
             aliases = [{{ dns_name = \"api.merge\", port = 8000 }}]\n\n\
             [[endpoint]]\nnamespace = \"merge.test\"\nservice = \"api\"\nid = \"api-1\"\naddress = \"127.0.0.1:{backend_port}\"\n"
        ),
    )
    .unwrap();
    fs::write(dir.join("README.txt"), "not toml, must be ignored {{{").unwrap();

    let out = weft_cmd(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "config dir must validate: {}", out.both());
    assert!(out.stdout().contains("OK"), "{}", out.both());

    // run from the directory: the admin address comes from file 1, the service from file 2
    let mut c = Command::new(WEFT);
    c.args(["run", "-c", dir.to_str().unwrap()]).env_remove("WEFT_ADMIN").env("XDG_STATE_HOME", tmp.join("xdg"));
    let mut weft = Bg::spawn("weft (conf.d)", &mut c, Some(tmp.join("weft.log")));
    let ready = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        http("127.0.0.1", admin_port, "GET", "/v1/status", None).map(|r| r.status == 200).unwrap_or(false)
    });
    assert!(ready && weft.alive(), "weft -c DIR did not come up on file 1's admin address:\n{}", weft.log_text());
    let routes = as_list(&http("127.0.0.1", admin_port, "GET", "/v1/routes", None).unwrap().json());
    let r = routes.iter().find(|r| r["dns_name"] == "api.merge").unwrap_or_else(|| panic!("{routes:?}"));
    assert_eq!(r["namespace"], "merge.test");
    assert_eq!(r["endpoints"], 1);
    let vip = r["vip"].as_str().unwrap().split(':').next().unwrap().to_string();
    wait_tcp(&format!("{vip}:8000"), Duration::from_secs(5));
    let resp = http(&vip, 8000, "GET", "/m", None).unwrap();
    assert_eq!((resp.status, backend_name(&resp.text())), (200, Some("merged".to_string())));
    weft.kill();

    // an error in the second file is reported against that file
    let bad = dir.join("30-bad.toml");
    fs::write(&bad, "[[endpoint]]\nnamespace = \"merge.test\"\nservice = \"api\"\nid = \"api-2\"\nadress = \"127.0.0.1:1\"\n")
        .unwrap();
    assert_config_error(&weft_cmd(&["validate", dir.to_str().unwrap()]), &bad, &[5], &["adress"]);
}

#[test]
fn weft_run_with_bad_config_exits_78_and_names_the_problem() {
    let tmp = TempDir::new("badrun");
    let cfg = tmp.join("bad.toml");
    let admin_port = free_port();
    fs::write(
        &cfg,
        format!(
            "[node]\ndata_dir = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n[dns]\nvip_cidr = \"{}\"\ntll = 5\n",
            tmp.join("data").display(),
            vip_cidr(62)
        ),
    )
    .unwrap();
    let mut c = Command::new(WEFT);
    c.args(["run", "-c", cfg.to_str().unwrap()]).env_remove("WEFT_ADMIN").env("XDG_STATE_HOME", tmp.join("xdg"));
    let out = run_cmd(&mut c, None, Duration::from_secs(20));
    assert_config_error(&out, &cfg, &[9], &["tll"]);
    assert!(
        http("127.0.0.1", admin_port, "GET", "/v1/status", None).is_err(),
        "nothing may be serving the admin API of a rejected config"
    );
}

fn assert_api_error(r: &Resp, what: &str, field: &str, status: std::ops::Range<u16>) {
    assert!(status.contains(&r.status), "{what}: expected status in {status:?}, got {} {}", r.status, r.text());
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| panic!("{what}: error body must be JSON {{\"error\": ...}}, got: {}", r.text()));
    let msg = v["error"].as_str().unwrap_or_else(|| panic!("{what}: no \"error\" string in {v}"));
    assert!(msg.contains(field), "{what}: error message should name `{field}`: {msg}");
}

#[test]
fn api_rejects_bad_fields_with_4xx_and_leaves_state_unchanged() {
    let w = Weft::start(WeftOpts::new(61).extra(
        "[[service]]\nnamespace = \"default\"\nname = \"taken\"\nprotocol = \"http\"\naliases = [{ dns_name = \"taken.test\", port = 80 }]\n",
    ));
    let snapshot = |w: &Weft| {
        (
            w.get_json("/v1/namespaces"),
            w.get_json("/v1/services"),
            w.get_json("/v1/endpoints"),
            w.get_json("/v1/routes"),
        )
    };
    let before = snapshot(&w);

    let cases: Vec<(&str, Value, &str, std::ops::Range<u16>)> = vec![
        ("protocol htp", json!({"namespace": "default", "name": "s1", "protocol": "htp"}), "protocol", 400..401),
        (
            "alias port 70000",
            json!({"namespace": "default", "name": "s2", "aliases": [{"dns_name": "s2.test", "port": 70000}]}),
            "port",
            400..401,
        ),
        ("missing name", json!({"namespace": "default", "protocol": "http"}), "name", 400..401),
        ("unknown field", json!({"namespace": "default", "name": "s3", "protocl": "http"}), "protocl", 400..401),
        (
            "tcp with request_s",
            json!({"namespace": "default", "name": "s4", "protocol": "tcp", "timeouts": {"request_s": 5}}),
            "request_s",
            400..401,
        ),
        ("unknown namespace", json!({"namespace": "no-such-ns", "name": "s5"}), "no-such-ns", 400..405),
        (
            "alias already taken",
            json!({"namespace": "default", "name": "s6", "aliases": [{"dns_name": "taken.test", "port": 80}]}),
            "taken.test",
            409..410,
        ),
    ];
    for (what, body, field, status) in &cases {
        let r = w.post("/v1/services", body);
        assert_api_error(&r, what, field, status.clone());
    }
    let r = w.request("POST", "/v1/services", None).unwrap();
    assert!((400..500).contains(&r.status), "empty body: {} {}", r.status, r.text());
    let raw = http("127.0.0.1", w.admin_port, "POST", "/v1/services", Some(b"{not json")).unwrap();
    assert!((400..500).contains(&raw.status), "malformed JSON: {} {}", raw.status, raw.text());

    let ep_cases: Vec<(&str, Value, &str, std::ops::Range<u16>)> = vec![
        (
            "bad address",
            json!({"namespace": "default", "service": "taken", "id": "e1", "address": "not-an-address"}),
            "address",
            400..401,
        ),
        (
            "bad health",
            json!({"namespace": "default", "service": "taken", "id": "e2", "address": "127.0.0.1:1", "health": "SICK"}),
            "health",
            400..401,
        ),
        (
            "unknown service",
            json!({"namespace": "default", "service": "ghost", "id": "e3", "address": "127.0.0.1:1"}),
            "ghost",
            400..405,
        ),
    ];
    for (what, body, field, status) in &ep_cases {
        let r = w.post("/v1/endpoints", body);
        assert_api_error(&r, what, field, status.clone());
    }
    let r = w.post("/v1/namespaces", &json!({"description": "no name"}));
    assert_api_error(&r, "namespace without name", "name", 400..401);
    let r = w.get("/v1/services/default/ghost").unwrap();
    assert_eq!(r.status, 404, "unknown service -> 404: {}", r.text());

    assert_eq!(snapshot(&w), before, "rejected requests must not change any state");
}

/// `weft validate` refuses what `weft run` would refuse at start: TLS files that are missing, do
/// not parse, do not match, or name another node — each at the key naming the file, in the words
/// `run` uses; a proxy node with no way to a registry is a warning (exit 0).
#[test]
fn validate_checks_tls_files_as_run_does_and_warns_about_a_lone_proxy() {
    let tmp = TempDir::new("validate-tls");
    let ca = MeshCa::new("validate");
    let n1 = ca.issue("n1");
    let other = ca.issue("other");
    let garbage = tmp.join("garbage.pem");
    fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = tmp.join("missing/ca.pem");
    let conf = |name: &str, mode: &str, ca: &Path, cert: &Path, key: &Path, extra: &str| {
        let p = tmp.join(&format!("{name}.toml"));
        fs::write(
            &p,
            format!(
                "[node]\nname = \"n1\"\nmode = \"{mode}\"\ndata_dir = \"{}\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
                tmp.join(&format!("data-{name}")).display(),
                ca.display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        p
    };
    let validate = |p: &Path| weft_cmd(&["validate", p.to_str().unwrap()]);
    let gossip = format!("\n[gossip]\nlisten = \"127.0.0.1:{}\"\njoin = [\"127.0.0.1:7946\"]\n", free_port());

    // every TLS setting is right: OK, no warning
    let good = conf("good", "proxy", &n1.ca, &n1.cert, &n1.key, &gossip);
    let out = validate(&good);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(!out.stderr().contains("warning"), "{}", out.both());

    // (a) a missing CA file (line 7) and a key that is not there either (line 9): both reported
    let nokey = tmp.join("nokey.pem");
    let p = conf("missing", "combined", &missing, &n1.cert, &nokey, "");
    let out = validate(&p);
    assert_config_error(&out, &p, &[7], &[missing.to_str().unwrap(), "No such file", "`ca`"]);
    assert!(has_location(&out.stderr(), &p, 9) && out.stderr().contains(nokey.to_str().unwrap()), "the key file too:\n{}", out.both());

    // (b) a certificate file that does not parse (line 8)
    let p = conf("garbage", "combined", &n1.ca, &garbage, &n1.key, "");
    assert_config_error(&validate(&p), &p, &[8], &[garbage.to_str().unwrap(), "no certificate"]);

    // (c) a key that is not the certificate's (line 9)
    let p = conf("mismatch", "combined", &n1.ca, &n1.cert, &other.key, "");
    assert_config_error(&validate(&p), &p, &[9], &[other.key.to_str().unwrap(), "not the key"]);

    // (d) a certificate issued to another node; `weft run` says the same, with the same exit code
    let p = conf("othernode", "combined", &n1.ca, &other.cert, &other.key, &gossip);
    let v = validate(&p);
    assert_config_error(&v, &p, &[8], &["issued to node `other`", "`n1`"]);
    let mut c = Command::new(WEFT);
    c.args(["run", "-c", p.to_str().unwrap(), "--listen-admin", &format!("127.0.0.1:{}", free_port()), "--no-dns"]).env_remove("WEFT_ADMIN");
    let run = run_cmd(&mut c, None, Duration::from_secs(20));
    assert_eq!(run.code, Some(EX_CONFIG), "weft run on the same config: {}", run.both());
    let said = v.stderr().lines().next().and_then(|l| l.split_once("[tls] `cert`: ")).map(|(_, m)| m.to_string()).unwrap_or_default();
    assert!(!said.is_empty() && run.stderr().contains(&said), "run and validate must say the same: validate {:?}, run {:?}", v.stderr(), run.stderr());

    // (e) a proxy with no mesh: a warning naming the mode line (3), exit 0
    let p = tmp.join("lone-proxy.toml");
    fs::write(&p, "[node]\nname = \"p\"\nmode = \"proxy\"\n").unwrap();
    let out = validate(&p);
    assert_eq!(out.code, Some(0), "a warning must not fail validate: {}", out.both());
    assert!(out.stdout().contains("OK"), "{}", out.both());
    assert!(out.stderr().contains("warning") && has_location(&out.stderr(), &p, 3) && out.stderr().contains("registry"), "{}", out.both());
    // a proxy with TLS but no seed to join
    let p = conf("nojoin", "proxy", &n1.ca, &n1.cert, &n1.key, "");
    let out = validate(&p);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(out.stderr().contains("warning") && out.stderr().contains("join"), "{}", out.both());
}
