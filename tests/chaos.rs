//! Chaos soak (issue 16 item 6): five weft nodes, each in its own network namespace on one bridge
//! — two registries (r1, r2) and three proxies (p1, p2, p3) — under 100 concurrent clients over
//! HTTP/1.1, HTTP/2 and TCP, while every `WEFT_CHAOS_EVERY_S` (10) seconds a random node that is
//! not already disturbed is killed (SIGKILL, then restarted on the same data dir), frozen
//! (SIGSTOP, then SIGCONT) or cut off (its bridge port down, then up), for 5–15 s. The soak lasts
//! `WEFT_CHAOS_SECS` (120 here; `benches/chaos.sh` runs 600 and prints the same table).
//!
//! Every proxy has one endpoint of each traffic service on its own loopback: nginx (HTTP/1.1 and
//! h2c, answering any method with 200) and tests/support/chaos_echo.py (TCP line echo). Clients
//! run on the proxies (threads of this process switched into the node's namespace with setns(2)),
//! call their own node's aliases, and log each request's id (header `x-chaos-id`, or the TCP line),
//! start, and end (answer, error or give-up, 20 s). The backends log the arrival time of every id,
//! so the harness can tell which requests ran twice and which ran after their caller gave up.
//! A registrar creates and deletes endpoints of service `reg` through the proxies' admin APIs
//! (once a second); each node's `/v1/members` and `/v1/endpoints` are polled every 250 / 500 ms
//! for the whole soak, and VmHWM of every weft process is read each round.
//!
//! Figures (printed as one table; details in `$CARGO_TARGET_TMPDIR/chaos/`, see `WEFT_CHAOS_OUT`):
//! - failed idempotent requests (GET over HTTP/1.1 and HTTP/2, TCP echo exchanges), not counting
//!   requests from a client whose own node was disturbed during the request (its proxy was dead,
//!   frozen or cut: nothing can serve it), nor TCP exchanges routed to a node before that node's
//!   fault broke them (a byte stream cannot be replayed): the node is the backend the line
//!   reached, or, when it reached none, the `upstream_node` of weft's access-log record for the
//!   client's port (the echo service alone logs its connections). Goal 0.
//! - failed non-idempotent requests (POST), and POSTs executed twice. Goal: 0 twice.
//! - requests executed after their caller gave up: a backend arrival later than the end of the
//!   failed request (10 ms tolerance for nginx's millisecond clock). Goal 0.
//! - registrations lost: an acknowledged create with no acknowledged or uncertain delete, missing
//!   from any node once the mesh has converged after the last heal. Goal 0.
//! - false "down" declarations: node O (not disturbed) listing node M (not disturbed, i.e.
//!   neither faulted nor within `WEFT_CHAOS_HEAL_GRACE_S` (5) after its heal) as down or left, in
//!   any poll of the soak. Goal 0. Suspect-only episodes are counted and shown, not failed: a
//!   suspicion is SWIM asking (the member refutes it), not a verdict, and routing-wise a suspect
//!   only gets no new requests until it refutes.
//! - convergence after each heal: until every undisturbed node sees every other alive (current
//!   generation) and holds every registration older than 2 s; peak RSS per node.
//!
//! Needs root (network namespaces), nginx and python3; CI=true turns a missing one into a failure.
//! VIP nets 181-185 (this file owns 180-189).
#![allow(unsafe_code)] // setns(2): client, poller and registrar threads enter the nodes' namespaces

mod common;
use common::*;

#[path = "chaos/analysis.rs"]
mod analysis;
#[path = "chaos/faults.rs"]
mod faults;
#[path = "chaos/load.rs"]
mod load;
#[path = "chaos/logs.rs"]
mod logs;
#[path = "chaos/setup.rs"]
mod setup;
use analysis::*;
use faults::*;
use load::*;
use logs::*;
use setup::*;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const NAMES: [&str; 5] = ["r1", "r2", "p1", "p2", "p3"];
const MODES: [&str; 5] = ["registry", "registry", "proxy", "proxy", "proxy"];
const PROXIES: [usize; 3] = [2, 3, 4];
const H1_PORT: u16 = 8001;
const H2_PORT: u16 = 8002;
const ECHO_PORT: u16 = 8003;
const WEB: (&str, u16) = ("web.chaos", 8080);
const WEB2: (&str, u16) = ("web2.chaos", 8081);
const ECHO: (&str, u16) = ("echo.chaos", 9000);
/// The traffic services' endpoints: present on every node throughout (a down node's endpoints
/// stay catalogued for `endpoint_grace_s`, 60 s, longer than any fault here).
const STATIC_EPS: [&str; 9] = [
    "web/web-p1", "web/web-p2", "web/web-p3", "web2/web2-p1", "web2/web2-p2", "web2/web2-p3", "echo/echo-p1", "echo/echo-p2", "echo/echo-p3",
];
/// nginx's $msec has millisecond resolution (and is the time cached for its event loop turn).
const LATE_TOLERANCE_US: u64 = 10_000;
/// A registration must be visible on every node this long after it was acknowledged for the mesh
/// to count as converged.
const REG_SLACK_US: u64 = 2_000_000;

fn node_ip(i: usize) -> String {
    format!("10.180.0.{}", 11 + i)
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Settings {
    secs: u64,
    every_s: u64,
    fault_min_s: u64,
    fault_max_s: u64,
    clients: usize,
    rate: f64,
    heal_grace_us: u64,
    seed: u64,
    client_timeout: Duration,
    reg_every: Duration,
    out: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            secs: env_u64("WEFT_CHAOS_SECS", 120),
            every_s: env_u64("WEFT_CHAOS_EVERY_S", 10),
            fault_min_s: env_u64("WEFT_CHAOS_FAULT_MIN_S", 5),
            fault_max_s: env_u64("WEFT_CHAOS_FAULT_MAX_S", 15),
            clients: env_u64("WEFT_CHAOS_CLIENTS", 100) as usize,
            rate: env_u64("WEFT_CHAOS_RATE", 200) as f64,
            heal_grace_us: env_u64("WEFT_CHAOS_HEAL_GRACE_S", 5) * 1_000_000,
            seed: env_u64("WEFT_CHAOS_SEED", now_us() % 1_000_000),
            client_timeout: Duration::from_secs(env_u64("WEFT_CHAOS_CLIENT_TIMEOUT_S", 20)),
            reg_every: Duration::from_millis(env_u64("WEFT_CHAOS_REG_EVERY_MS", 1000)),
            out: std::env::var_os("WEFT_CHAOS_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaos")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// namespaces: a hub with a bridge, one namespace per node with eth0 on it
// ---------------------------------------------------------------------------------------------

fn ip(ns: Option<&str>, args: &[&str]) {
    let mut c = command(ns, "ip");
    c.args(args);
    run_cmd(&mut c, None, Duration::from_secs(10)).expect_ok();
}

struct Net {
    hub: Netns,
    nodes: Vec<Netns>,
}

impl Net {
    fn new() -> Net {
        let hub = Netns::new("chub");
        let nodes: Vec<Netns> = (0..NAMES.len()).map(|i| Netns::new(&format!("c{}", NAMES[i]))).collect();
        ip(hub.ns(), &["link", "add", "br0", "type", "bridge"]);
        ip(hub.ns(), &["link", "set", "br0", "up"]);
        for (i, n) in nodes.iter().enumerate() {
            let port = format!("h{i}");
            ip(hub.ns(), &["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &n.name]);
            ip(hub.ns(), &["link", "set", &port, "master", "br0"]);
            ip(hub.ns(), &["link", "set", &port, "up"]);
            ip(n.ns(), &["addr", "add", &format!("{}/24", node_ip(i)), "dev", "eth0"]);
            ip(n.ns(), &["link", "set", "eth0", "up"]);
        }
        Net { hub, nodes }
    }

    /// Node `i`'s bridge port up or down (its link to every other node).
    fn link(&self, i: usize, up: bool) {
        ip(self.hub.ns(), &["link", "set", &format!("h{i}"), if up { "up" } else { "down" }]);
    }
}

/// Moves the calling thread (only it) into network namespace `name`.
fn enter_netns(name: &str) {
    let f = fs::File::open(format!("/var/run/netns/{name}")).unwrap_or_else(|e| panic!("open netns {name}: {e}"));
    // SAFETY: setns(2) on an open namespace file descriptor; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns into {name}: {}", std::io::Error::last_os_error());
}

/// Waits (from a thread inside `ns`) until 127.0.0.1:`port` accepts connections.
fn wait_port_in(ns: &str, port: u16, what: &str) {
    let ns = ns.to_string();
    let ok = std::thread::spawn(move || {
        enter_netns(&ns);
        wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok()
        })
    })
    .join()
    .unwrap();
    assert!(ok, "{what} did not listen on 127.0.0.1:{port}");
}

/// One admin API request over a fresh connection from the calling thread's namespace:
/// (status, body), or an error (refused, timed out, unparsable).
fn admin(port: u16, method: &str, path: &str, body: Option<&str>, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout.min(Duration::from_millis(500)))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(b) = body {
        let _ = write!(req, "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len());
    } else {
        req.push_str("Content-Length: 0\r\n\r\n");
    }
    s.write_all(req.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if Instant::now() >= deadline {
            return Err("timed out".into());
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no response head")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body).ok_or("bad chunked body")?;
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..i]).ok()?.split(';').next()?.trim(), 16).ok()?;
        b = &b[i + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// VmHWM (peak resident set) of a process, in KiB.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// shared state of a run
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Kill,
    Stop,
    Cut,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill -9",
            Kind::Stop => "SIGSTOP",
            Kind::Cut => "link down",
        }
    }
}

#[derive(Clone, Debug)]
struct Fault {
    node: usize,
    kind: Kind,
    start: u64,
    heal: u64,
    /// kill: when the restarted node answered ready
    ready: u64,
}

#[derive(Clone, Debug)]
struct Member {
    name: String,
    state: String,
    generation: u64,
}

#[derive(Clone, Debug)]
struct Sample {
    node: usize,
    /// when the answer arrived
    at: u64,
    members: Option<Vec<Member>>,
    /// `service/id` of every endpoint the node lists (polled every other round: None between)
    endpoints: Option<BTreeSet<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    H1,
    H2,
    Tcp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H2 => "h2",
            Proto::Tcp => "tcp",
        }
    }
}

#[derive(Clone, Debug)]
struct Rec {
    proto: Proto,
    post: bool,
    node: usize,
    id: String,
    start: u64,
    end: u64,
    ok: bool,
    err: String,
    backend: Option<String>,
    /// A TCP exchange's client port, to find the endpoint weft chose in its access log.
    client_port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Acked,
    Refused,
    Unknown,
}

#[derive(Clone, Debug)]
struct RegOp {
    create: bool,
    node: usize,
    id: String,
    sent: u64,
    done: u64,
    outcome: Outcome,
    detail: String,
}

/// Node states the faulter publishes for the registrar.
const UP: u8 = 0;
const KILLED: u8 = 1;
const FROZEN: u8 = 2;
const CUT: u8 = 3;

struct NodeRt {
    ns: String,
    admin_port: u16,
    pid: AtomicU32,
    state: AtomicU8,
    /// (from when, generation)
    gens: Mutex<Vec<(u64, u64)>>,
    peak_hwm_kb: AtomicU64,
}

impl NodeRt {
    fn note_hwm(&self, kb: u64) {
        self.peak_hwm_kb.fetch_max(kb, SeqCst);
    }
    fn generation_at(&self, t: u64) -> u64 {
        self.gens.lock().unwrap().iter().filter(|(from, _)| *from <= t).map(|(_, g)| *g).last().unwrap_or(0)
    }
}

struct Shared {
    s: Settings,
    nodes: Vec<NodeRt>,
    stop_load: AtomicBool,
    stop_reg: AtomicBool,
    stop_poll: AtomicBool,
    faults: Mutex<Vec<Fault>>,
    samples: Mutex<Vec<Sample>>,
    recs: Mutex<Vec<Rec>>,
    regs: Mutex<Vec<RegOp>>,
}

/// Sets every stop flag when dropped, so that a panic in the driving thread ends the others.
struct StopAll<'a>(&'a Shared);

impl Drop for StopAll<'_> {
    fn drop(&mut self) {
        self.0.stop_load.store(true, SeqCst);
        self.0.stop_reg.store(true, SeqCst);
        self.0.stop_poll.store(true, SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// the mesh
// ---------------------------------------------------------------------------------------------

/// Every node lists every other alive, each once.
fn all_alive(nodes: &[Weft]) -> bool {
    nodes.iter().all(|w| w.sees_all_alive(&NAMES))
}

// ---------------------------------------------------------------------------------------------
// the test
// ---------------------------------------------------------------------------------------------

#[test]
fn chaos_soak() {
    if !require_root("chaos") || !require_program("chaos", "nginx") || !require_program("chaos", "python3") {
        return;
    }
    let settings = Settings::from_env();
    let out_dir = settings.out.clone();
    let _ = fs::remove_dir_all(&out_dir);
    fs::create_dir_all(&out_dir).unwrap();
    loud(&format!(
        "chaos soak: {} s, a fault every {} s lasting {}-{} s, {} clients at ~{} req/s, seed {} (WEFT_CHAOS_SEED), details in {}",
        settings.secs,
        settings.every_s,
        settings.fault_min_s,
        settings.fault_max_s,
        settings.clients,
        settings.rate,
        settings.seed,
        out_dir.display()
    ));

    let net = Net::new();
    let tmp = TempDir::new("chaos");
    // backends on every proxy's own loopback
    let mut backends = Vec::new();
    let mut backend_dirs = Vec::new();
    for &p in &PROXIES {
        let dir = tmp.join(NAMES[p]);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("nginx.conf"), nginx_conf(&dir, NAMES[p])).unwrap();
        let mut c = command(net.nodes[p].ns(), "nginx");
        c.args(["-c", &dir.join("nginx.conf").display().to_string(), "-p", &dir.display().to_string()]);
        backends.push(Bg::spawn(&format!("nginx {}", NAMES[p]), &mut c, Some(dir.join("nginx.out"))));
        let mut c = command(net.nodes[p].ns(), "python3");
        c.args([support_path("support/chaos_echo.py"), NAMES[p].to_string(), ECHO_PORT.to_string(), dir.join("echo.log").display().to_string()]);
        backends.push(Bg::spawn(&format!("echo {}", NAMES[p]), &mut c, Some(dir.join("echo.out"))));
        for port in [H1_PORT, H2_PORT, ECHO_PORT] {
            wait_port_in(&net.nodes[p].name, port, &format!("backend on {}", NAMES[p]));
        }
        backend_dirs.push((p, dir));
    }

    // the mesh: r1, r2 define the services; each proxy owns one endpoint per traffic service
    let ca = MeshCa::new("chaos");
    let seeds = [format!("{}:7946", node_ip(0)), format!("{}:7946", node_ip(1))];
    let mut nodes: Vec<Weft> = Vec::new();
    for i in 0..NAMES.len() {
        let mut n = MeshNode::new(NAMES[i], MODES[i], 181 + i as u8, &node_ip(i), ca.issue(NAMES[i])).port(7946).netns(&net.nodes[i].name);
        for (k, seed) in seeds.iter().enumerate() {
            if k != i {
                n = n.join(seed);
            }
        }
        n = if MODES[i] == "registry" {
            n.extra(&services_toml())
        } else {
            // The echo service's connections are logged (it alone says access_log = true): a
            // TCP exchange that reached no backend is attributed to the node weft chose.
            let log = tmp.join(NAMES[i]).join("weft-access.log");
            n.extra(&format!("[access_log]\nenabled = false\npath = \"{}\"\nformat = \"json\"\n\n{}", log.display(), endpoints_toml(NAMES[i])))
        };
        nodes.push(Weft::start_mesh(&n));
    }
    let ok = wait_until(Duration::from_secs(30), Duration::from_millis(200), || all_alive(&nodes));
    assert!(ok, "the five nodes did not form one mesh: {:?}", nodes.iter().map(|w| w.try_members()).collect::<Vec<_>>());
    let mut vips = BTreeMap::new();
    for &p in &PROXIES {
        for (dns, port) in [WEB, WEB2, ECHO] {
            let ok = wait_until(Duration::from_secs(30), Duration::from_millis(200), || nodes[p].healthy_endpoints(dns, port) == Some(3));
            assert!(ok, "{} never routed {dns}:{port} to 3 healthy endpoints: {:?}", NAMES[p], nodes[p].route_now(dns, port));
            vips.insert((p, dns), nodes[p].vip(dns, port));
        }
    }

    let sh = Shared {
        nodes: (0..NAMES.len())
            .map(|i| NodeRt {
                ns: net.nodes[i].name.clone(),
                admin_port: nodes[i].admin_port,
                pid: AtomicU32::new(nodes[i].pid()),
                state: AtomicU8::new(UP),
                gens: Mutex::new(vec![(0, nodes[i].generation())]),
                peak_hwm_kb: AtomicU64::new(0),
            })
            .collect(),
        s: settings,
        stop_load: AtomicBool::new(false),
        stop_reg: AtomicBool::new(false),
        stop_poll: AtomicBool::new(false),
        faults: Mutex::new(Vec::new()),
        samples: Mutex::new(Vec::new()),
        recs: Mutex::new(Vec::new()),
        regs: Mutex::new(Vec::new()),
    };
    let specs = client_specs(sh.s.clients, &vips);

    let t_begin = Instant::now();
    T0.store(now_us(), SeqCst);
    let mut t_last_heal = 0;
    let mut final_converged: Option<u64> = None;
    std::thread::scope(|scope| {
        let stop_all = StopAll(&sh);
        for i in 0..NAMES.len() {
            let sh = &sh;
            scope.spawn(move || poller(sh, i));
        }
        for &p in &PROXIES {
            let mine: Vec<ClientSpec> = specs.iter().filter(|c| c.node == p).cloned().collect();
            let sh = &sh;
            scope.spawn(move || client_thread(sh, p, mine));
        }
        let reg = {
            let sh = &sh;
            scope.spawn(move || registrar(sh))
        };

        fault_loop(&sh, &net, &mut nodes, t_begin);
        t_last_heal = sh.faults.lock().unwrap().iter().map(|f| f.heal).max().unwrap_or(0);
        sh.stop_reg.store(true, SeqCst);
        reg.join().unwrap();
        loud_line(&format!("  {:>6.1}s all healed; registrar stopped; load goes on for at least 10 s", rel(now_us())));
        let tail_until = Instant::now() + Duration::from_secs(10);

        // After the last heal: every node sees every other alive and holds exactly the expected
        // registrations (read from the pollers' samples).
        let (expect, _, _) = final_regs(&sh.regs.lock().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let samples = sh.samples.lock().unwrap();
            let done = (0..NAMES.len()).all(|i| {
                let Some(m) = samples.iter().rev().find(|s| s.node == i && s.members.is_some()) else { return false };
                let Some(e) = samples.iter().rev().find(|s| s.node == i && s.endpoints.is_some()) else { return false };
                m.at > t_last_heal
                    && e.at > t_last_heal
                    && NAMES.iter().filter(|n| **n != NAMES[i]).all(|n| seen_state(m, n).as_deref() == Some("alive"))
                    && expect.iter().all(|id| e.endpoints.as_ref().unwrap().contains(&format!("reg/{id}")))
            });
            drop(samples);
            if done {
                final_converged = Some(now_us());
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        std::thread::sleep(tail_until.saturating_duration_since(Instant::now()));
        sh.stop_load.store(true, SeqCst);
        // one more full poll round after convergence (or the deadline) for the final figures
        std::thread::sleep(Duration::from_millis(600));
        drop(stop_all);
    });
    let t_end = now_us();
    std::thread::sleep(Duration::from_millis(300)); // nginx / echo logs written
    let arrivals = read_arrivals(&backend_dirs);
    let tcp_routes = read_tcp_routes(&backend_dirs);

    let report = analyse(&sh, &arrivals, &tcp_routes, t_last_heal, final_converged, t_end, &out_dir);
    // evidence: every weft log, and the backends' logs
    for (i, w) in nodes.iter().enumerate() {
        if let Ok(rd) = fs::read_dir(w.dir.path()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("weft-run") {
                    let _ = fs::copy(e.path(), out_dir.join(format!("{}-{name}", NAMES[i])));
                }
            }
        }
    }
    for (p, dir) in &backend_dirs {
        let _ = fs::copy(dir.join("access.log"), out_dir.join(format!("{}-nginx-access.log", NAMES[*p])));
        let _ = fs::copy(dir.join("echo.log"), out_dir.join(format!("{}-echo.log", NAMES[*p])));
        let _ = fs::copy(dir.join("weft-access.log"), out_dir.join(format!("{}-weft-access.log", NAMES[*p])));
    }
    drop(backends);
    assert!(report.is_empty(), "chaos soak missed its goals (details in {}):\n{}", out_dir.display(), report.join("\n"));
}

