//! Issue 13: the policy resolved per service, and the built-in `route` hook's routing rules —
//! the canary without code: requests carrying a header, or a weighted share of them, go to another
//! service of the namespace.
//!
//! VIP nets 210-219.
mod common;
use common::*;

fn services(rules: &str, api: u16, v2: u16) -> String {
    format!(
        "[[service]]\nnamespace = \"default\"\nname = \"api\"\naliases = [{{ dns_name = \"api.pol\", port = 8080 }}]\n{rules}\n\
         [[service]]\nnamespace = \"default\"\nname = \"api-v2\"\n\n\
         [[endpoint]]\nnamespace = \"default\"\nservice = \"api\"\nid = \"v1\"\naddress = \"127.0.0.1:{api}\"\n\
         [[endpoint]]\nnamespace = \"default\"\nservice = \"api-v2\"\nid = \"v2\"\naddress = \"127.0.0.1:{v2}\"\n"
    )
}

fn backend_of(r: &Resp) -> String {
    r.header("x-backend").unwrap_or("?").to_string()
}

fn ready(w: &Weft) -> String {
    for svc in ["api", "api-v2"] {
        let ok = wait_until(std::time::Duration::from_secs(15), std::time::Duration::from_millis(50), || w.endpoints_of("default", svc).iter().any(|e| e["health"] == "HEALTHY"));
        assert!(ok, "{svc} never had a healthy endpoint");
    }
    let vip = w.vip("api.pol", 8080);
    wait_tcp(&format!("{vip}:8080"), std::time::Duration::from_secs(5));
    vip
}

/// `header=x-canary:1 to=api-v2`: every request with the header reaches api-v2's endpoint, every
/// other one api's. Then the same rule list changed live (API) to `to=api-v2 percent=10`: 1,000
/// requests land 10 ± 3 % on api-v2.
#[test]
fn builtin_canary_by_header_and_by_share() {
    let (api, v2) = (free_port(), free_port());
    let _a = counter_backend("v1", api, &[], None);
    let _b = counter_backend("v2", v2, &[], None);
    let rules = "[[service.rules]]\nheader = { name = \"x-canary\", value = \"1\" }\nto = \"api-v2\"\n";
    let w = Weft::start(WeftOpts::new(210).extra(&services(rules, api, v2)));
    let vip = ready(&w);
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..200 {
        let canary = i % 2 == 0;
        let r = if canary { http_with(&vip, 8080, "GET", "/x", &[("x-canary", "1")], None).unwrap() } else { http(&vip, 8080, "GET", "/x", None).unwrap() };
        assert_eq!(r.status, 200, "{}", r.text());
        *seen.entry((canary, backend_of(&r))).or_insert(0) += 1;
    }
    assert_eq!(seen.get(&(true, "v2".to_string())), Some(&100), "{seen:?}");
    assert_eq!(seen.get(&(false, "v1".to_string())), Some(&100), "{seen:?}");

    // The share, through the CLI's one-line form (the service update is a patch: only the rules change).
    w.cli(&["service", "update", "api", "--rule", "* /** to=api-v2 percent=10"]).expect_ok();
    let routed = wait_until(std::time::Duration::from_secs(5), std::time::Duration::from_millis(50), || {
        (0..50).any(|_| http_with(&vip, 8080, "GET", "/y", &[("x-canary", "1")], None).unwrap().header("x-backend") == Some("v1"))
    });
    assert!(routed, "the header rule still sent everything to v2 after the update");
    let v2_share = (0..1000).filter(|_| backend_of(&http(&vip, 8080, "GET", "/z", None).unwrap()) == "v2").count();
    eprintln!("10 % split: {v2_share} of 1,000 on api-v2");
    assert!((70..=130).contains(&v2_share), "{v2_share} of 1,000 requests went to api-v2 at 10 %");
    let describe = w.cli(&["service", "describe", "api", "-o", "json"]).expect_ok().json();
    assert_eq!(describe["rules"][0]["to"], "api-v2", "{describe}");
}


/// The route phase of the HTTP/2 codec: the same header rule on an `http2` service sends the
/// streams carrying the header to api-v2's endpoint and the others to api's (nginx endpoints
/// speaking h2c, `nghttp` as the client).
#[test]
fn builtin_canary_over_http2() {
    const TEST: &str = "builtin_canary_over_http2";
    if !require_program(TEST, "nghttp") {
        return;
    }
    let tmp = TempDir::new("policy-h2");
    let (api, v2) = (free_port(), free_port());
    let servers = format!(
        "server {{ listen 127.0.0.1:{api} http2; location / {{ return 200 \"v1\\n\"; }} }}\n\
         server {{ listen 127.0.0.1:{v2} http2; location / {{ return 200 \"v2\\n\"; }} }}"
    );
    let Some(_nginx) = nginx(TEST, &tmp, "", &servers, &[api, v2]) else { return };
    let rules = "[[service.rules]]\nheader = { name = \"x-canary\", value = \"1\" }\nto = \"api-v2\"\n";
    let toml = services(rules, api, v2).replace("name = \"api\"\n", "name = \"api\"\nprotocol = \"http2\"\n").replace("name = \"api-v2\"\n", "name = \"api-v2\"\nprotocol = \"http2\"\n");
    let w = Weft::start(WeftOpts::new(211).extra(&toml));
    let vip = ready(&w);
    let get = |canary: bool| {
        let mut c = std::process::Command::new("nghttp");
        if canary {
            c.args(["-H", "x-canary: 1"]);
        }
        c.arg(format!("http://{vip}:8080/x"));
        let out = run_cmd(&mut c, None, std::time::Duration::from_secs(10));
        out.expect_ok();
        out.stdout().trim().to_string()
    };
    for i in 0..20 {
        let canary = i % 2 == 0;
        assert_eq!(get(canary), if canary { "v2" } else { "v1" }, "request {i} (x-canary: {canary})\nweft's log:\n{}", w.log());
    }
}
