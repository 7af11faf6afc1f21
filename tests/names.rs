//! Name resolution inside a network namespace, through the real glibc resolver (curl, getent):
//! (a) weft's DNS responder on 127.0.0.1:53, (b) the managed block in a hosts file.
//!
//! Needs root (ip netns, port 53). Under CI=true it fails loudly instead of skipping.
//! `ip netns exec NS` bind-mounts /etc/netns/NS/{resolv.conf,hosts} over /etc/..., so the host's own
//! files are never touched.
mod common;
use common::*;
use std::time::Duration;

const BACKENDS: [(&str, u16); 3] = [("app-1", 8081), ("app-2", 8082), ("app-3", 8083)];

fn appserver_toml() -> String {
    let mut t = String::from(
        "[[namespace]]\nname = \"shop.internal\"\n\n[[service]]\nnamespace = \"shop.internal\"\nname = \"appserver\"\n\
         protocol = \"http\"\naliases = [{ dns_name = \"appserver\", port = 4567 }, { dns_name = \"app.shop.internal\", port = 80 }]\n\n",
    );
    for (id, port) in BACKENDS {
        t.push_str(&format!(
            "[[endpoint]]\nnamespace = \"shop.internal\"\nservice = \"appserver\"\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\n\n"
        ));
    }
    t
}

fn start_backends(ns: &Netns) -> Vec<Bg> {
    BACKENDS.iter().map(|(id, port)| http_backend(ns.ns(), id, *port)).collect()
}

/// curl `url` `n` times inside the netns (a new process, so a new glibc lookup, each time);
/// asserts all 200 and returns the backends that answered.
fn curl_many(ns: &Netns, url: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut names = Vec::new();
    for i in 0..n {
        let (code, body, err) = curl_get(ns.ns(), url);
        assert_eq!(code, 200, "curl {url} #{i} inside {}: status {code}, body {body:?}, stderr {err}", ns.name);
        names.push(backend_name(&body).unwrap_or_else(|| panic!("no backend name in {body:?}")));
    }
    tally(names)
}

fn getent(ns: &Netns, name: &str) -> CmdOut {
    let mut c = command(ns.ns(), "getent");
    c.args(["hosts", name]);
    run_cmd(&mut c, None, Duration::from_secs(30))
}

#[test]
fn dns_responder_resolves_aliases_for_glibc_clients() {
    if !require_root("names::dns_responder_resolves_aliases_for_glibc_clients") {
        return;
    }
    let ns = Netns::new("dns");
    ns.write_etc("resolv.conf", "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n");
    let _backends = start_backends(&ns);
    let mut opts = WeftOpts::new(10).extra(&appserver_toml());
    opts.netns = Some(ns.name.clone());
    opts.admin_port = Some(9901);
    opts.dns_listen = Some("127.0.0.1:53".into());
    let w = Weft::start(opts);
    let vip = w.vip("appserver", 4567);
    let vip2 = w.vip("app.shop.internal", 80);

    let g = getent(&ns, "appserver");
    assert!(g.ok(), "getent hosts appserver (via weft DNS) failed: {}", g.both());
    assert_eq!(g.stdout().split_whitespace().next(), Some(vip.as_str()), "getent: {}", g.stdout());
    let g = getent(&ns, "app.shop.internal");
    assert!(g.ok(), "getent hosts app.shop.internal failed: {}", g.both());
    assert_eq!(g.stdout().split_whitespace().next(), Some(vip2.as_str()), "getent: {}", g.stdout());
    let g = getent(&ns, "not-an-alias.shop.internal");
    assert!(!g.ok(), "a name that is not an alias must not resolve: {}", g.stdout());

    let t = curl_many(&ns, "http://appserver:4567/", 30);
    eprintln!("DNS path, appserver:4567: {t:?}");
    assert_eq!(t.len(), 3, "all 3 backends must be seen: {t:?}");
    let t = curl_many(&ns, "http://app.shop.internal/", 12);
    assert!(t.len() >= 2, "second alias spreads too: {t:?}");

    // A and AAAA both answered at once (an unanswered AAAA costs glibc its 2 s timeout)
    let t0 = std::time::Instant::now();
    let g = {
        let mut c = command(ns.ns(), "getent");
        c.args(["ahosts", "appserver"]);
        run_cmd(&mut c, None, Duration::from_secs(30))
    };
    let took = t0.elapsed();
    assert!(g.ok() && g.stdout().contains(&vip), "getent ahosts appserver: {}", g.both());
    assert!(took < Duration::from_millis(1500), "getent ahosts took {took:?}: A/AAAA not both answered promptly");

    // DNS over TCP: glibc with `options use-vc`
    ns.write_etc("resolv.conf", "nameserver 127.0.0.1\noptions use-vc timeout:2 attempts:1\n");
    let g = getent(&ns, "appserver");
    assert!(g.ok(), "getent over TCP (use-vc) failed: {}", g.both());
    assert_eq!(g.stdout().split_whitespace().next(), Some(vip.as_str()));
    let t = curl_many(&ns, "http://appserver:4567/", 6);
    assert!(!t.is_empty());
}

#[test]
fn dns_responder_forwards_other_names_upstream() {
    if !require_root("names::dns_responder_forwards_other_names_upstream") {
        return;
    }
    let ns = Netns::new("fwd");
    ns.write_etc("resolv.conf", "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n");
    // upstream: a second weft whose DNS answers for its own alias; its own upstream goes nowhere
    // (127.0.0.1:9 refuses) so there is no forwarding loop
    let mut up = WeftOpts::new(12).extra(
        "[[namespace]]\nname = \"far.internal\"\n\n[[service]]\nnamespace = \"far.internal\"\nname = \"far\"\nprotocol = \"tcp\"\naliases = [{ dns_name = \"far.example\", port = 7000 }]\n",
    );
    up.netns = Some(ns.name.clone());
    up.admin_port = Some(9902);
    up.dns_listen = Some("127.0.0.1:5300".into());
    up.dns_extra = "upstream = [\"127.0.0.1:9\"]\n".into();
    let upstream = Weft::start(up);
    let far_vip = upstream.vip("far.example", 7000);

    let mut opts = WeftOpts::new(13).extra(&appserver_toml());
    opts.netns = Some(ns.name.clone());
    opts.admin_port = Some(9901);
    opts.dns_listen = Some("127.0.0.1:53".into());
    opts.dns_extra = "upstream = [\"127.0.0.1:5300\"]\n".into();
    let w = Weft::start(opts);
    let vip = w.vip("appserver", 4567);

    let g = getent(&ns, "appserver");
    assert_eq!(g.stdout().split_whitespace().next(), Some(vip.as_str()), "own alias: {}", g.both());
    let g = getent(&ns, "far.example");
    assert!(g.ok(), "far.example must be forwarded to the upstream and answered: {}", g.both());
    assert_eq!(g.stdout().split_whitespace().next(), Some(far_vip.as_str()), "{}", g.stdout());
}

#[test]
fn hosts_file_block_resolves_aliases_and_is_removed_on_sigterm() {
    if !require_root("names::hosts_file_block_resolves_aliases_and_is_removed_on_sigterm") {
        return;
    }
    let ns = Netns::new("hosts");
    // DNS points at an address nobody answers: names can only come from the hosts file
    ns.write_etc("resolv.conf", "nameserver 192.0.2.53\noptions timeout:1 attempts:1\n");
    let original_hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n# kept by the test\n10.9.8.7 unrelated.example\n";
    ns.write_etc("hosts", original_hosts);
    let hosts_path = ns.etc_file("hosts").to_string_lossy().into_owned();
    let _backends = start_backends(&ns);
    let mut opts = WeftOpts::new(11).extra(&appserver_toml());
    opts.netns = Some(ns.name.clone());
    opts.admin_port = Some(9901);
    opts.dns_enabled = false;
    opts.hosts_file = Some(hosts_path.clone());
    let mut w = Weft::start(opts);
    let vip = w.vip("appserver", 4567);

    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(50), || ns.read_etc("hosts").contains("appserver"));
    assert!(ok, "managed block never appeared in {hosts_path}:\n{}", ns.read_etc("hosts"));
    let content = ns.read_etc("hosts");
    for line in original_hosts.lines() {
        assert!(content.lines().any(|l| l == line), "original line {line:?} lost while running:\n{content}");
    }
    // nothing is listening on 53 in the netns (DNS disabled)
    let g = getent(&ns, "appserver");
    assert!(g.ok(), "getent hosts appserver (via hosts file) failed: {}\nhosts:\n{content}", g.both());
    assert_eq!(g.stdout().split_whitespace().next(), Some(vip.as_str()), "getent: {}", g.stdout());
    let g = getent(&ns, "app.shop.internal");
    assert!(g.ok(), "{}", g.both());

    let t = curl_many(&ns, "http://appserver:4567/", 30);
    eprintln!("hosts path, appserver:4567: {t:?}");
    assert_eq!(t.len(), 3, "all 3 backends must be seen: {t:?}");

    // a service created while running appears in the hosts file live (no restart)
    w.cli(&["service", "create", "late", "--namespace", "shop.internal", "--alias", "late-svc:5000"]).expect_ok();
    w.cli(&["endpoint", "create", "late-1", "--service", "late", "--namespace", "shop.internal", "--address", "127.0.0.1:8081"])
        .expect_ok();
    let late_vip = w.vip("late-svc", 5000);
    let ok = wait_until(Duration::from_secs(2), Duration::from_millis(50), || {
        getent(&ns, "late-svc").stdout().split_whitespace().next() == Some(late_vip.as_str())
    });
    assert!(ok, "late-svc did not resolve via the hosts file within 2 s:\n{}", ns.read_etc("hosts"));
    // The endpoint routes once its first health check passed and the catalog published that
    // (at most 100 ms later: snapshots are coalesced), not the instant `endpoint create` returns.
    let healthy = wait_until(Duration::from_secs(2), Duration::from_millis(50), || w.healthy_endpoints("late-svc", 5000) == Some(1));
    assert!(healthy, "late-1 never became routable: {:?}", w.route_now("late-svc", 5000));
    let (code, body, err) = curl_get(ns.ns(), "http://late-svc:5000/late");
    assert_eq!((code, backend_name(&body)), (200, Some("app-1".to_string())), "{body} {err}");

    let st = w.sigterm(Duration::from_secs(30));
    assert!(st.success(), "SIGTERM must exit 0, got {st}; log:\n{}", w.log());
    let after = ns.read_etc("hosts");
    assert!(!after.contains("appserver") && !after.contains("late-svc") && !after.contains("127.255."), "managed block left behind after SIGTERM:\n{after}");
    assert_eq!(
        after.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>(),
        original_hosts.lines().collect::<Vec<_>>(),
        "hosts file must be restored to its original lines"
    );
    let g = getent(&ns, "appserver");
    assert!(!g.ok(), "appserver still resolves after shutdown: {}", g.stdout());
}

/// A resolver loop as a long-running application has it: every 100 ms, `getaddrinfo` (glibc,
/// reading the hosts file afresh) for each name, one `NAME ADDRESS` line per answer (`-` when the
/// name does not resolve).
const RESOLVER_LOOP: &str = r#"
import socket, sys, time
while True:
    for name in sys.argv[1:]:
        try:
            addr = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        except socket.gaierror:
            addr = "-"
        print(name, addr, flush=True)
    time.sleep(0.1)
"#;

/// The last answer the resolver loop printed for `name`.
fn last_answer(resolver: &Bg, name: &str) -> Option<String> {
    resolver.log_text().lines().rev().find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
}

/// `ip netns exec` bind-mounts /etc/netns/NS/hosts over /etc/hosts in a mount namespace of the
/// process it starts: that process holds the file's inode from then on. weft must change that
/// file in place, or a process that started before it never sees an alias (issue 12).
#[test]
fn hosts_file_reaches_a_process_that_started_before_weft() {
    if !require_root("names::hosts_file_reaches_a_process_that_started_before_weft") {
        return;
    }
    let ns = Netns::new("hostsold");
    // DNS points at an address nobody answers: names can only come from the hosts file
    ns.write_etc("resolv.conf", "nameserver 192.0.2.53\noptions timeout:1 attempts:1\n");
    let tmp = TempDir::new("resolver");
    let mut c = command(ns.ns(), "python3");
    c.args(["-u", "-c", RESOLVER_LOOP, "appserver", "late-svc", "localhost"]);
    let mut resolver = Bg::spawn("resolver loop", &mut c, Some(tmp.join("resolver.log")));
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || last_answer(&resolver, "appserver").is_some());
    assert!(ok && resolver.alive(), "the resolver loop did not start:\n{}", resolver.log_text());
    assert_eq!(last_answer(&resolver, "appserver").as_deref(), Some("-"), "appserver resolves before weft runs");

    let _backends = start_backends(&ns);
    let hosts_path = ns.etc_file("hosts").to_string_lossy().into_owned();
    let mut opts = WeftOpts::new(14).extra(&appserver_toml());
    opts.netns = Some(ns.name.clone());
    opts.admin_port = Some(9901);
    opts.dns_enabled = false;
    opts.hosts_file = Some(hosts_path.clone());
    let mut w = Weft::start(opts);
    let vip = w.vip("appserver", 4567);

    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(50), || last_answer(&resolver, "appserver").as_deref() == Some(vip.as_str()));
    assert!(
        ok,
        "a process started before weft never resolved appserver to {vip} (last answer {:?}); {hosts_path}:\n{}",
        last_answer(&resolver, "appserver"),
        ns.read_etc("hosts")
    );
    assert_eq!(last_answer(&resolver, "localhost").as_deref(), Some("127.0.0.1"), "the file's own lines must stay readable");

    // an alias added while both run reaches it too
    w.cli(&["service", "create", "late", "--namespace", "shop.internal", "--alias", "late-svc:5000"]).expect_ok();
    let late_vip = w.vip("late-svc", 5000);
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(50), || last_answer(&resolver, "late-svc").as_deref() == Some(late_vip.as_str()));
    assert!(ok, "late-svc never resolved to {late_vip} in the running process (last {:?})", last_answer(&resolver, "late-svc"));

    // and the block's removal at shutdown
    let st = w.sigterm(Duration::from_secs(30));
    assert!(st.success(), "SIGTERM must exit 0, got {st}; log:\n{}", w.log());
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(50), || last_answer(&resolver, "appserver").as_deref() == Some("-"));
    assert!(ok, "appserver still resolves in the running process after weft stopped:\n{}", ns.read_etc("hosts"));
    assert_eq!(last_answer(&resolver, "localhost").as_deref(), Some("127.0.0.1"));
    assert!(resolver.alive(), "the resolver loop died:\n{}", resolver.log_text());
}
