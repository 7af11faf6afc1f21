//! Live change: with weft running, `weft service create --alias` and `weft endpoint create` through the
//! CLI (`-c` = the running node's config) make the alias answer within 1 s, no restart.
mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn alias_created_by_cli_answers_within_one_second() {
    let port = free_port();
    let _b = http_backend(None, "live", port);
    let w = Weft::start(WeftOpts::new(50));
    assert!(w.routes().is_empty(), "fresh node has no routes");

    let out = w.cli_c(&["namespace", "create", "live.test", "--description", "live change"]);
    out.expect_ok();
    let out = w.cli_c(&[
        "service", "create", "shop", "--namespace", "live.test", "--protocol", "http", "--alias", "shop.live:7070",
    ]);
    out.expect_ok();
    let addr = format!("127.0.0.1:{port}");
    let out = w.cli_c(&[
        "endpoint", "create", "shop-1", "--service", "shop", "--namespace", "live.test", "--address", &addr,
    ]);
    out.expect_ok();
    let t0 = Instant::now();

    // the VIP comes from `weft routes -o json`
    let routes = w.cli_c(&["routes", "-o", "json"]);
    routes.expect_ok();
    let list = as_list(&routes.json());
    let r = list
        .iter()
        .find(|r| r["dns_name"] == "shop.live" && r["port"] == 7070)
        .unwrap_or_else(|| panic!("`weft routes -o json` lacks shop.live:7070: {list:?}"))
        .clone();
    assert_eq!(r["service"], "shop", "{r}");
    assert_eq!(r["namespace"], "live.test", "{r}");
    let vip = r["vip"].as_str().unwrap().split(':').next().unwrap().to_string();
    assert!(vip.starts_with("127.255.50."), "VIP {vip} outside vip_cidr");

    let mut last = String::new();
    let ok = wait_until(Duration::from_millis(1000), Duration::from_millis(20), || {
        match http(&vip, 7070, "GET", "/live", None) {
            Ok(resp) if resp.status == 200 && backend_name(&resp.text()).as_deref() == Some("live") => true,
            Ok(resp) => {
                last = format!("{} {}", resp.status, resp.text());
                false
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    assert!(ok, "alias shop.live:7070 ({vip}) did not answer within 1 s of `endpoint create` (last: {last})");
    eprintln!("alias answered {:?} after endpoint create", t0.elapsed());

    // the table view lists it too
    let table = w.cli_c(&["routes"]);
    table.expect_ok();
    assert!(table.stdout().contains("shop.live") && table.stdout().contains(&vip), "{}", table.stdout());

    // deleting the service removes the alias live as well
    w.cli_c(&["endpoint", "delete", "shop-1", "--service", "shop", "--namespace", "live.test"]).expect_ok();
    w.cli_c(&["service", "delete", "shop", "--namespace", "live.test"]).expect_ok();
    let gone = wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
        w.routes().iter().all(|r| r["dns_name"] != "shop.live")
    });
    assert!(gone, "route still listed after service delete: {:?}", w.routes());
    let closed = wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
        std::net::TcpStream::connect((vip.as_str(), 7070)).is_err()
    });
    assert!(closed, "{vip}:7070 still accepting after the service was deleted");
}
