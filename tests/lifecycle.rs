//! The node's lifecycle under signals, with real processes: SIGHUP reloads the configuration,
//! and SIGTERM drains a standalone node without refusing its clients before the drain window
//! ends.
mod common;
use common::load::{Load, Spec};
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Rewrites the node's config file for `opts`, keeping its ports and data dir.
fn write_config(w: &Weft, opts: &WeftOpts) {
    std::fs::write(&w.config, weft_toml(opts, &w.data_dir, w.admin_port, &w.dns_listen)).expect("write config");
}

/// A service with one alias and one endpoint, with optional extra service settings.
fn service(name: &str, alias: &str, port: u16, backend: u16, settings: &str) -> String {
    format!(
        r#"
[[service]]
namespace = "default"
name = "{name}"
protocol = "http"
aliases = [{{ dns_name = "{alias}", port = {port} }}]
{settings}

[[endpoint]]
namespace = "default"
service = "{name}"
id = "{name}-1"
address = "127.0.0.1:{backend}"
"#
    )
}

/// Waits for a log line containing every one of `needles` (a reload is logged when done).
fn wait_log(w: &Weft, needles: &[&str], what: &str) -> String {
    let mut line = String::new();
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        match w.log().lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            Some(l) => {
                line = l.to_string();
                true
            }
            None => false,
        }
    });
    assert!(ok, "no log line with {needles:?} ({what}); log:\n{}", w.log());
    line
}

fn get_via(vip: &str, port: u16, path: &str) -> Resp {
    http(vip, port, "GET", path, None).unwrap_or_else(|e| panic!("GET http://{vip}:{port}{path}: {e}"))
}

/// "A config edited twice": a service is added by editing the file and sending SIGHUP, then a
/// setting is changed and the first service removed the same way, then a broken file is refused
/// while the node keeps serving (and keeps its hosts file block: SIGHUP used to kill weft).
#[test]
fn sighup_reloads_a_config_edited_twice() {
    let (pa, pb) = (free_port(), free_port());
    let _a = http_backend(None, "alpha-be", pa);
    let _b = http_backend(None, "beta-be", pb);
    let tmp = TempDir::new("reload-hosts");
    let hosts = tmp.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let mut opts = WeftOpts::new(60).extra(&service("alpha", "alpha.reload", 8080, pa, ""));
    opts.hosts_file = Some(hosts.display().to_string());
    let mut w = Weft::start(opts.clone());
    let alpha = w.vip("alpha.reload", 8080);
    wait_tcp(&format!("{alpha}:8080"), Duration::from_secs(5));
    assert_eq!(backend_name(&get_via(&alpha, 8080, "/a").text()).as_deref(), Some("alpha-be"));

    // First edit: a second service with an alias and an endpoint.
    let mut edit1 = opts.clone().extra(&service("beta", "beta.reload", 8080, pb, ""));
    write_config(&w, &edit1);
    signal(w.pid(), "HUP");
    let line = wait_log(&w, &["configuration reloaded"], "first reload");
    assert!(line.contains("added=2"), "the service and its endpoint are new: {line}");
    assert!(w.try_exit().is_none(), "weft exited on SIGHUP; log:\n{}", w.log());
    let beta = w.vip("beta.reload", 8080);
    wait_tcp(&format!("{beta}:8080"), Duration::from_secs(5));
    let r = wait_for("beta.reload answers through its alias", Duration::from_secs(10), || {
        http(&beta, 8080, "GET", "/b", None).ok().filter(|r| r.status == 200)
    });
    assert_eq!(backend_name(&r.text()).as_deref(), Some("beta-be"));
    assert_eq!(get_via(&alpha, 8080, "/a").status, 200, "alpha must keep serving across the reload");

    // Second edit: alpha goes, beta's connect timeout and the drain timeout change (live), and the
    // zone (restart only: logged, not applied).
    edit1.extra = service("beta", "beta.reload", 8080, pb, "timeouts = { connect_ms = 1500 }");
    edit1.node_extra = "zone = \"z-edited\"\ndrain_timeout_s = 7".into();
    write_config(&w, &edit1);
    signal(w.pid(), "HUP");
    let line = wait_log(&w, &["configuration reloaded", "removed=2"], "second reload");
    assert!(line.contains("changed=1") && line.contains("restart_needed=1"), "{line}");
    wait_log(&w, &["node.zone", "after a restart"], "the zone needs a restart");
    assert!(w.try_exit().is_none(), "weft exited on the second SIGHUP; log:\n{}", w.log());
    let svc = w.get_json("/v1/services/default/beta");
    assert_eq!(svc["timeouts"]["connect_ms"], 1500, "beta's changed setting holds: {svc}");
    assert!(w.get("/v1/services/default/alpha").map(|r| r.status).unwrap_or(0) == 404, "alpha must be gone");
    let gone = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        !w.routes().iter().any(|r| r["dns_name"] == "alpha.reload")
            && std::net::TcpStream::connect_timeout(&format!("{alpha}:8080").parse().unwrap(), Duration::from_millis(200)).is_err()
    });
    assert!(gone, "alpha's route and listener must be gone: {:?}", w.routes());
    let endpoints = as_list(&w.get_json("/v1/endpoints?namespace=default"));
    assert!(endpoints.iter().all(|e| e["id"] != "alpha-1"), "alpha's endpoint must be gone: {endpoints:?}");
    assert!(endpoints.iter().any(|e| e["id"] == "beta-1" && e["zone"] == ""), "the zone is not applied live: {endpoints:?}");
    assert_eq!(get_via(&beta, 8080, "/b2").status, 200);
    let block = std::fs::read_to_string(&hosts).unwrap();
    assert!(block.contains("beta.reload") && !block.contains("alpha.reload"), "hosts block follows the config:\n{block}");

    // A broken file: refused, logged with its place; the node serves on with what it had.
    let mut broken = weft_toml(&edit1, &w.data_dir, w.admin_port, &w.dns_listen);
    broken.push_str("\n[[service]]\nname = \"gamma\"\nprotocol = \"carrier-pigeon\"\n");
    std::fs::write(&w.config, &broken).unwrap();
    let first_broken = broken.lines().count() - 2;
    signal(w.pid(), "HUP");
    wait_log(&w, &["reload refused"], "the broken file");
    // `path:line:col: message`, pointing into the lines just added.
    let log = w.log();
    let prefix = format!("{}:", w.config.display());
    let place = log.split(&prefix).skip(1).find_map(|rest| {
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts.next()?.parse().ok()?;
        let _col: usize = parts.next()?.parse().ok()?;
        Some(line)
    });
    assert!(place.is_some_and(|l| l >= first_broken), "the log must name the error's file:line:col (line >= {first_broken}); log:\n{log}");
    assert!(w.try_exit().is_none(), "weft exited on a broken config; log:\n{}", w.log());
    let r = get_via(&beta, 8080, "/b3");
    assert_eq!((r.status, backend_name(&r.text()).as_deref()), (200, Some("beta-be")));
    assert_eq!(w.get_json("/v1/services/default/beta")["timeouts"]["connect_ms"], 1500);
    let block = std::fs::read_to_string(&hosts).unwrap();
    assert!(block.contains("beta.reload"), "the hosts block must still be there:\n{block}");

    // The drain timeout changed live: a clean stop says so.
    let st = w.sigterm(Duration::from_secs(15));
    assert!(st.success(), "SIGTERM after the reloads: {st}; log:\n{}", w.log());
    assert!(w.log().contains("timeout_s=7"), "the reloaded drain_timeout_s is the one in force; log:\n{}", w.log());
}

/// 100 HTTP/1.1 clients through a standalone node (combined, no mesh); SIGTERM mid-run. Until
/// the drain window ends (three quarters of `drain_timeout_s = 8`, 6 s) no request fails: the
/// node keeps accepting, and every response says `Connection: close`, so clients reconnect.
/// A TCP alias accepts during the window too. What happens once the listeners close is counted
/// and printed on its own.
#[test]
fn standalone_drain_under_load_refuses_nothing_before_the_window_ends() {
    let port = free_port();
    let _be = http_backend(None, "drain-be", port);
    let mut opts = WeftOpts::new(61).extra(&service("web", "web.drain", 8080, port, ""));
    opts.extra.push_str(&format!(
        r#"
[[service]]
namespace = "default"
name = "raw"
protocol = "tcp"
aliases = [{{ dns_name = "raw.drain", port = 9000 }}]

[[endpoint]]
namespace = "default"
service = "raw"
id = "raw-1"
address = "127.0.0.1:{port}"
"#
    ));
    opts.node_extra = "drain_timeout_s = 8".into();
    let mut w = Weft::start(opts);
    let vip = w.vip("web.drain", 8080);
    let raw = w.vip("raw.drain", 9000);
    wait_tcp(&format!("{vip}:8080"), Duration::from_secs(5));
    wait_for("web.drain serving", Duration::from_secs(10), || http(&vip, 8080, "GET", "/", None).ok().filter(|r| r.status == 200));
    wait_for("raw.drain serving", Duration::from_secs(10), || http(&raw, 9000, "GET", "/", None).ok().filter(|r| r.status == 200));

    let spec = Spec::new(&[&format!("{vip}:8080")]).workers(100).rate(1000.0).duration(Duration::from_secs(14)).timeout(Duration::from_secs(5));
    let load = Load::start(spec);
    load.sleep_until(Duration::from_secs(3));
    let term_at = load.elapsed().as_secs_f64();
    let term = Instant::now();
    signal(w.pid(), "TERM");
    // Inside the window: fresh connections are accepted and served, HTTP and TCP.
    std::thread::sleep(Duration::from_millis(1500));
    let r = http(&vip, 8080, "GET", "/during", None).expect("new HTTP connection during the drain");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http(&raw, 9000, "GET", "/during-tcp", None).expect("new TCP connection during the drain");
    assert_eq!((r.status, backend_name(&r.text()).as_deref()), (200, Some("drain-be")));
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(20), || w.try_exit().is_some());
    assert!(ok, "weft did not exit within 15 s of SIGTERM (drain_timeout_s = 8); log:\n{}", w.log());
    let took = term.elapsed();
    let st = w.try_exit().unwrap();
    let r = load.join();
    r.print("drain under load");
    eprintln!("timeline: {}\nSIGTERM at {term_at:.2}s, exit {took:?} later", r.timeline_line());
    assert!(st.success(), "exit status {st}; log:\n{}", w.log());
    // Counted from the second of the SIGTERM: 100 clients starting at once overflow the Python
    // backend's listen backlog (5), and the connect timeouts that follow (section 1 of issue 12)
    // are not this test's business. The window ends 6 s after the SIGTERM; a second of margin
    // before that, because a connection the kernel queued as the listener closed is reset, and
    // that belongs to the count after the window.
    let window_end = (term_at + 5.0).floor() as usize;
    let start = term_at.floor() as usize;
    let early: u64 = r.timeline.iter().take(start).map(|(_, f)| f).sum();
    let before: u64 = r.timeline.iter().skip(start).take(window_end - start).map(|(_, f)| f).sum();
    let served: u64 = r.timeline.iter().skip(term_at.ceil() as usize).take(window_end.saturating_sub(term_at.ceil() as usize)).map(|(n, _)| n).sum();
    let after: u64 = r.timeline.iter().skip(window_end).map(|(_, f)| f).sum();
    eprintln!("failures before the SIGTERM second: {early}; failures from {start}s to {window_end}s: {before}; requests in the window after SIGTERM: {served}; failures after (listeners closed, process gone): {after}");
    assert_eq!(before, 0, "requests failed during the drain window: {}", r.summary("drain"));
    assert!(served > 1000, "the node must keep serving through the window: {served} requests");
    assert!(r.connects > 500, "clients reconnect after Connection: close ({} connections)", r.connects);
    assert!(took >= Duration::from_secs(5), "the listeners stayed open under load ({took:?})");
}

/// Refusals counted by the prober, with the first and the last (since its `t0`).
type Refusals = (u64, Option<Duration>, Option<Duration>);

/// Refused connection attempts seen by a prober that connects every millisecond.
struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Refusals>>,
}

impl Prober {
    fn start(addr: std::net::SocketAddr, t0: Instant) -> Prober {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut refused, mut first, mut last) = (0, None, None);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                // An attempt is placed at its start: one begun in the gap can take its whole
                // 500 ms timeout to fail (CI saw one end 400 ms after the new process was ready).
                let at = t0.elapsed();
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
                    refused += 1;
                    first.get_or_insert(at);
                    last = Some(at);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (refused, first, last)
        });
        Prober { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> Refusals {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// What a restart costs (stop, then start again as soon as the old process is gone, as systemd's
/// `Restart` does) under 100 clients: the refusals fall only in the gap between the old process
/// closing its listeners and the new one binding them, and they are clean refusals, not resets
/// or errors. The gap is printed (ARCHITECTURE.md "Draining" records it).
#[test]
fn restart_under_load_refuses_only_in_the_gap() {
    let port = free_port();
    let _be = http_backend(None, "restart-be", port);
    let mut opts = WeftOpts::new(62).extra(&service("web", "web.restart", 8080, port, ""));
    opts.node_extra = "drain_timeout_s = 4".into();
    let mut w = Weft::start(opts);
    let vip = w.vip("web.restart", 8080);
    wait_for("web.restart serving", Duration::from_secs(10), || http(&vip, 8080, "GET", "/", None).ok().filter(|r| r.status == 200));
    let spec = Spec::new(&[&format!("{vip}:8080")]).workers(100).rate(1000.0).duration(Duration::from_secs(12)).timeout(Duration::from_secs(5));
    let load = Load::start(spec);
    load.sleep_until(Duration::from_secs(2));
    let t0 = Instant::now();
    let prober = Prober::start(format!("{vip}:8080").parse().unwrap(), t0);
    signal(w.pid(), "TERM");
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(1), || w.try_exit().is_some());
    assert!(ok, "weft did not exit within 10 s of SIGTERM; log:\n{}", w.log());
    let exited = t0.elapsed();
    w.kill9(); // reaped already: clears the handle
    w.restart();
    let ready = t0.elapsed();
    let (refused, first, last) = prober.finish();
    let r = load.join();
    r.print("restart under load");
    eprintln!("timeline: {}", r.timeline_line());
    let ms = |d: Option<Duration>| d.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0)).unwrap_or_else(|| "-".into());
    eprintln!(
        "restart: old process exited {} after SIGTERM, new one ready {} after; prober refusals: {refused}, first {} last {} (gap {})",
        ms(Some(exited)),
        ms(Some(ready)),
        ms(first),
        ms(last),
        ms(first.zip(last).map(|(f, l)| l - f))
    );
    // Allowed: refusals in the gap, a reset of a connection the kernel had queued when the old
    // listener closed, and connect timeouts to the Python backend (its listen backlog of 5
    // overflows when the new process's empty pool connects for 100 waiting clients at once).
    let allowed = |k: &str| k.starts_with("connect: refused") || k.starts_with("read: reset") || k.starts_with("read: eof") || k.contains("connect-timeout");
    let other: Vec<_> = r.errors.iter().filter(|(k, _)| !allowed(k)).collect();
    assert!(other.is_empty(), "a restart may refuse connections in its gap, nothing else: {}", r.summary("restart"));
    let (first, last) = (first.expect("a restart without handover refuses"), last.unwrap());
    assert!(first + Duration::from_millis(500) >= exited, "refusals began long before the old process exited ({first:?}, exit {exited:?})");
    assert!(last <= ready + Duration::from_millis(100), "refusals went on after the new process was ready ({last:?}, ready {ready:?})");
    assert!(r.total > r.failed * 2, "the new process serves: {}", r.summary("restart"));
}

/// A binary upgrade under 100 clients: `weft run --takeover` on the same config and data dir
/// takes the alias listening sockets of the running process, which stops accepting, finishes
/// its connections and exits. No request fails and no connection is refused; the hosts block
/// stays. The backend is nginx: the new process starts with an empty upstream pool, and a
/// Python backend's listen backlog of 5 would drop its first connections (see the restart test).
#[test]
fn takeover_under_load_refuses_nothing() {
    let tmp = TempDir::new("takeover");
    let port = free_port();
    let server = format!("server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"backend=nginx\\n\"; }} }}");
    let Some(_nginx) = nginx("takeover_under_load_refuses_nothing", &tmp, "", &server, &[port]) else { return };
    let hosts = tmp.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let mut opts = WeftOpts::new(63).extra(&service("web", "web.takeover", 8080, port, ""));
    opts.node_extra = "drain_timeout_s = 4".into();
    opts.hosts_file = Some(hosts.display().to_string());
    let mut w = Weft::start(opts);
    let vip = w.vip("web.takeover", 8080);
    wait_for("web.takeover serving", Duration::from_secs(10), || http(&vip, 8080, "GET", "/", None).ok().filter(|r| r.status == 200));

    let spec = Spec::new(&[&format!("{vip}:8080")]).workers(100).rate(1000.0).duration(Duration::from_secs(8)).timeout(Duration::from_secs(5));
    let load = Load::start(spec);
    load.sleep_until(Duration::from_secs(2));
    let t0 = Instant::now();
    let prober = Prober::start(format!("{vip}:8080").parse().unwrap(), t0);
    let mut c = Command::new(WEFT);
    c.arg("run").arg("-c").arg(&w.config).arg("--takeover").env_remove("WEFT_ADMIN").env("WEFT_LOG", "info");
    let log = w.dir.join("takeover.log");
    let mut new = Bg::spawn("weft --takeover", &mut c, Some(log.clone()));
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(5), || w.try_exit().is_some());
    assert!(ok, "the old process did not exit within 15 s of the takeover; log:\n{}\n--- new ---\n{}", w.log(), new.log_text());
    let exited = t0.elapsed();
    let st = w.try_exit().unwrap();
    assert!(st.success(), "the old process exited with {st}; log:\n{}", w.log());
    assert!(w.log().contains("handed its listeners"), "old log:\n{}", w.log());
    let ready = wait_for("the new process ready", Duration::from_secs(10), || {
        (new.log_text().contains("weft ready") && w.get("/v1/status").is_ok_and(|r| r.status == 200)).then(|| t0.elapsed())
    });
    let (refused, _, _) = prober.finish();
    let r = load.join();
    r.print("takeover under load");
    eprintln!("timeline: {}\ntakeover: old process exited {exited:?} after the new one started, new one ready {ready:?} after; refused probes: {refused}", r.timeline_line());
    assert!(new.alive(), "the new process died; log:\n{}", new.log_text());
    assert_eq!(refused, 0, "connections refused during the takeover; new log:\n{}", new.log_text());
    assert_eq!(r.failed, 0, "requests failed during the takeover: {}", r.summary("takeover"));
    assert!(r.total > 5000, "{}", r.summary("takeover"));
    let block = std::fs::read_to_string(&hosts).unwrap();
    assert!(block.contains("web.takeover"), "the hosts block must stay across a takeover:\n{block}");
    let r = http(&vip, 8080, "GET", "/after", None).expect("the new process serves");
    assert_eq!(r.status, 200);
    new.kill();
}
