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
//!   frozen or cut: nothing can serve it), nor TCP exchanges that had reached a backend on a node
//!   before that node's fault broke them (a byte stream cannot be replayed). Goal 0.
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
// pollers, registrar, clients
// ---------------------------------------------------------------------------------------------

fn parse_members(body: &[u8]) -> Option<Vec<Member>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(
        as_list(&v)
            .iter()
            .filter(|m| m["myself"] != json!(true))
            .map(|m| Member {
                name: m["name"].as_str().unwrap_or("?").to_string(),
                state: m["state"].as_str().unwrap_or("?").to_string(),
                generation: m["generation"].as_u64().unwrap_or(0),
            })
            .collect(),
    )
}

fn parse_endpoints(body: &[u8]) -> Option<BTreeSet<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(
        as_list(&v)
            .iter()
            .map(|e| format!("{}/{}", e["service"].as_str().unwrap_or("?"), e["id"].as_str().unwrap_or("?")))
            .collect(),
    )
}

/// Polls node `i`'s `/v1/members` every 250 ms and `/v1/endpoints` every 500 ms, and its VmHWM.
fn poller(sh: &Shared, i: usize) {
    let rt = &sh.nodes[i];
    enter_netns(&rt.ns);
    let mut round = 0u64;
    while !sh.stop_poll.load(SeqCst) {
        let began = Instant::now();
        let t = Duration::from_millis(1000);
        let members = admin(rt.admin_port, "GET", "/v1/members", None, t).ok().filter(|r| r.0 == 200).and_then(|r| parse_members(&r.1));
        let endpoints = if round % 2 == 0 {
            admin(rt.admin_port, "GET", "/v1/endpoints", None, t).ok().filter(|r| r.0 == 200).and_then(|r| parse_endpoints(&r.1))
        } else {
            None
        };
        let at = now_us();
        if let Some(kb) = vm_hwm_kb(rt.pid.load(SeqCst)) {
            rt.note_hwm(kb);
        }
        sh.samples.lock().unwrap().push(Sample { node: i, at, members, endpoints });
        round += 1;
        if let Some(rest) = Duration::from_millis(250).checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// Creates (70 %) and deletes (30 %) endpoints of service `reg` on proxies that are up or cut
/// off (a partitioned node takes local writes), one operation every `reg_every`.
fn registrar(sh: &Shared) {
    let mut rng = StdRng::seed_from_u64(sh.s.seed ^ 0x5eed);
    let mut live: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut n = 0u64;
    while !sh.stop_reg.load(SeqCst) {
        std::thread::sleep(sh.s.reg_every);
        if sh.stop_reg.load(SeqCst) {
            break;
        }
        let open: Vec<usize> = PROXIES.iter().copied().filter(|&p| matches!(sh.nodes[p].state.load(SeqCst), UP | CUT)).collect();
        if open.is_empty() {
            continue;
        }
        let node = open[rng.random_range(0..open.len())];
        let mine = live.entry(node).or_default();
        let create = mine.is_empty() || rng.random_bool(0.7);
        let id = if create {
            n += 1;
            format!("reg-{}-{n}", NAMES[node])
        } else {
            mine.remove(rng.random_range(0..mine.len()))
        };
        enter_netns(&sh.nodes[node].ns);
        let sent = now_us();
        let port = sh.nodes[node].admin_port;
        let t = Duration::from_secs(3);
        let r = if create {
            let body = json!({"namespace": "default", "service": "reg", "id": id, "address": format!("127.0.0.1:{H1_PORT}")}).to_string();
            admin(port, "POST", "/v1/endpoints", Some(&body), t)
        } else {
            admin(port, "DELETE", &format!("/v1/endpoints/default/reg/{id}"), None, t)
        };
        let done = now_us();
        let (outcome, detail) = match &r {
            Ok((st, _)) if (200..300).contains(st) => (Outcome::Acked, st.to_string()),
            Ok((st, b)) if (400..500).contains(st) => (Outcome::Refused, format!("{st} {}", String::from_utf8_lossy(b))),
            Ok((st, b)) => (Outcome::Unknown, format!("{st} {}", String::from_utf8_lossy(b))),
            Err(e) => (Outcome::Unknown, e.clone()),
        };
        if create && outcome == Outcome::Acked {
            live.entry(node).or_default().push(id.clone());
        }
        if !create && outcome == Outcome::Refused {
            live.entry(node).or_default().push(id.clone());
        }
        sh.regs.lock().unwrap().push(RegOp { create, node, id, sent, done, outcome, detail });
    }
}

#[derive(Clone)]
struct ClientSpec {
    proto: Proto,
    post: bool,
    no: usize,
    node: usize,
    addr: SocketAddr,
    authority: String,
}

type H1 = http1::SendRequest<Full<Bytes>>;
type H2 = http2::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<TokioIo<tokio::net::TcpStream>, String> {
    let s = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(TokioIo::new(s))
}

/// One request of client `c`: the answering backend, or why it failed.
async fn one(c: &ClientSpec, id: &str, h1c: &mut Option<H1>, h2c: &mut Option<H2>) -> Result<String, String> {
    let method = if c.post { "POST" } else { "GET" };
    let body = if c.post { Bytes::from(format!("{{\"order\":\"{id}\"}}")) } else { Bytes::new() };
    let resp = match c.proto {
        Proto::Tcp => {
            let s = tokio::net::TcpStream::connect(c.addr).await.map_err(|e| format!("connect: {e}"))?;
            let (r, mut w) = s.into_split();
            w.write_all(format!("{id}\n").as_bytes()).await.map_err(|e| format!("write: {e}"))?;
            let mut line = String::new();
            let n = tokio::io::BufReader::new(r).read_line(&mut line).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("eof before the echo".into());
            }
            let mut it = line.split_whitespace();
            let (name, echoed) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            if echoed != id {
                return Err(format!("wrong echo {line:?}"));
            }
            return Ok(name.to_string());
        }
        Proto::H1 => {
            if h1c.as_ref().is_none_or(|s| s.is_closed()) {
                let (s, conn) = http1::handshake(connect(c.addr).await?).await.map_err(|e| format!("handshake: {e}"))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                *h1c = Some(s);
            }
            let s = h1c.as_mut().unwrap();
            s.ready().await.map_err(|e| format!("ready: {e}"))?;
            let req = http::Request::builder()
                .method(method)
                .uri(format!("/chaos/{id}"))
                .header("host", &c.authority)
                .header("x-chaos-id", id)
                .header("content-type", "application/json")
                .body(Full::new(body))
                .unwrap();
            s.send_request(req).await.map_err(|e| format!("h1: {e}"))?
        }
        Proto::H2 => {
            if h2c.as_ref().is_none_or(|s| s.is_closed()) {
                let (s, conn) = http2::handshake(TokioExecutor::new(), connect(c.addr).await?).await.map_err(|e| format!("handshake: {e}"))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                *h2c = Some(s);
            }
            let s = h2c.as_mut().unwrap();
            s.ready().await.map_err(|e| format!("ready: {e}"))?;
            let req = http::Request::builder()
                .method(method)
                .uri(format!("http://{}/chaos/{id}", c.authority))
                .header("x-chaos-id", id)
                .header("content-type", "application/json")
                .body(Full::new(body))
                .unwrap();
            s.send_request(req).await.map_err(|e| format!("h2: {e}"))?
        }
    };
    let status = resp.status().as_u16();
    let hv = |k: &str| resp.headers().get(k).and_then(|v| v.to_str().ok()).map(|s| s.to_string());
    let (weft_error, backend) = (hv("x-weft-error"), hv("x-backend"));
    resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
    if status != 200 {
        return Err(format!("status {status}{}", weft_error.map(|e| format!(" ({e})")).unwrap_or_default()));
    }
    Ok(backend.unwrap_or_else(|| "?".into()))
}

async fn run_client(sh: &Shared, c: ClientSpec) {
    let mut rng = StdRng::seed_from_u64(sh.s.seed.wrapping_mul(1_000_003).wrapping_add(c.no as u64));
    let mean = sh.s.clients as f64 / sh.s.rate;
    let (mut h1c, mut h2c) = (None, None);
    let method = if c.post { "POST" } else { "GET" };
    let mut n = 0u64;
    loop {
        tokio::time::sleep(Duration::from_secs_f64(rng.random_range(0.0..2.0 * mean))).await;
        if sh.stop_load.load(SeqCst) {
            break;
        }
        n += 1;
        let id = format!("{}-{method}-{}-c{}-{n}", c.proto.name(), NAMES[c.node], c.no);
        let start = now_us();
        let out = tokio::time::timeout(sh.s.client_timeout, one(&c, &id, &mut h1c, &mut h2c)).await;
        let end = now_us();
        let (ok, err, backend) = match out {
            Ok(Ok(b)) => (true, String::new(), Some(b)),
            Ok(Err(e)) => (false, e, None),
            Err(_) => (false, format!("client gave up after {:?}", sh.s.client_timeout), None),
        };
        if !ok {
            // a real client drops a connection that failed it
            h1c = None;
            h2c = None;
        }
        sh.recs.lock().unwrap().push(Rec { proto: c.proto, post: c.post, node: c.node, id, start, end, ok, err, backend });
    }
}

/// The clients of one proxy node, on a single-threaded runtime inside the node's namespace.
fn client_thread(sh: &Shared, node: usize, clients: Vec<ClientSpec>) {
    enter_netns(&sh.nodes[node].ns);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(futures_util::future::join_all(clients.into_iter().map(|c| run_client(sh, c))));
}

/// 100 clients split (in this order) as HTTP/1.1 GET 36 %, POST 18 %; HTTP/2 GET 24 %, POST 12 %;
/// TCP 10 %, dealt round-robin over the proxies.
fn client_specs(total: usize, vips: &BTreeMap<(usize, &str), String>) -> Vec<ClientSpec> {
    let mix = [(Proto::H1, false, 36), (Proto::H1, true, 18), (Proto::H2, false, 24), (Proto::H2, true, 12), (Proto::Tcp, false, 10)];
    let mut out = Vec::new();
    for (proto, post, pct) in mix {
        let n = (total * pct).div_ceil(100);
        for _ in 0..n {
            if out.len() == total {
                break;
            }
            let no = out.len();
            let node = PROXIES[no % PROXIES.len()];
            let (dns, port) = match proto {
                Proto::H1 => WEB,
                Proto::H2 => WEB2,
                Proto::Tcp => ECHO,
            };
            let vip = &vips[&(node, dns)];
            out.push(ClientSpec { proto, post, no, node, addr: format!("{vip}:{port}").parse().unwrap(), authority: format!("{dns}:{port}") });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// the mesh
// ---------------------------------------------------------------------------------------------

fn services_toml() -> String {
    let svc = |name: &str, proto: &str, (dns, port): (&str, u16)| {
        format!("[[service]]\nnamespace = \"default\"\nname = \"{name}\"\nprotocol = \"{proto}\"\naliases = [{{ dns_name = \"{dns}\", port = {port} }}]\n\n")
    };
    svc("web", "http", WEB)
        + &svc("web2", "http2", WEB2)
        + &svc("echo", "tcp", ECHO)
        + "[[service]]\nnamespace = \"default\"\nname = \"reg\"\nprotocol = \"http\"\n[service.health_check]\nkind = \"none\"\n\n"
}

fn endpoints_toml(node: &str) -> String {
    [("web", H1_PORT), ("web2", H2_PORT), ("echo", ECHO_PORT)]
        .iter()
        .map(|(svc, port)| format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"{svc}\"\nid = \"{svc}-{node}\"\naddress = \"127.0.0.1:{port}\"\n\n"))
        .collect()
}

fn nginx_conf(dir: &Path, node: &str) -> String {
    let server = |listen: &str| {
        format!(
            "  server {{\n    listen {listen};\n    access_log {d}/access.log chaos;\n    location / {{\n      add_header x-backend {node} always;\n      return 200 \"backend={node}\\n\";\n    }}\n  }}\n",
            d = dir.display()
        )
    };
    format!(
        "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d};\n  keepalive_requests 100000;\n  \
         log_format chaos '$msec $request_time $request_method $http_x_chaos_id $status';\n{}{}}}\n",
        server(&format!("127.0.0.1:{H1_PORT}")),
        server(&format!("127.0.0.1:{H2_PORT} http2")),
        d = dir.display()
    )
}

/// Every node lists every other alive, each once.
fn all_alive(nodes: &[Weft]) -> bool {
    nodes.iter().all(|w| w.sees_all_alive(&NAMES))
}

// ---------------------------------------------------------------------------------------------
// the faults
// ---------------------------------------------------------------------------------------------

struct Active {
    fault: usize,
    heal_at: Instant,
}

fn inflict(sh: &Shared, net: &Net, nodes: &mut [Weft], i: usize, kind: Kind) -> u64 {
    let rt = &sh.nodes[i];
    let pid = nodes[i].pid();
    let t = now_us();
    match kind {
        Kind::Kill => {
            if let Some(kb) = vm_hwm_kb(pid) {
                rt.note_hwm(kb);
            }
            rt.state.store(KILLED, SeqCst);
            nodes[i].kill9();
        }
        Kind::Stop => {
            rt.state.store(FROZEN, SeqCst);
            let st = Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap();
            assert!(st.success(), "kill -STOP {pid}");
        }
        Kind::Cut => {
            rt.state.store(CUT, SeqCst);
            net.link(i, false);
        }
    }
    t
}

/// Undo the fault; returns (heal time, ready time).
fn heal(sh: &Shared, net: &Net, nodes: &mut [Weft], i: usize, kind: Kind) -> (u64, u64) {
    let rt = &sh.nodes[i];
    let t = now_us();
    match kind {
        Kind::Kill => {
            nodes[i].restart();
            let ready = now_us();
            rt.pid.store(nodes[i].pid(), SeqCst);
            rt.gens.lock().unwrap().push((ready, nodes[i].generation()));
            rt.state.store(UP, SeqCst);
            return (t, ready);
        }
        Kind::Stop => {
            let pid = nodes[i].pid();
            let st = Command::new("kill").args(["-CONT", &pid.to_string()]).status().unwrap();
            assert!(st.success(), "kill -CONT {pid}");
        }
        Kind::Cut => net.link(i, true),
    }
    rt.state.store(UP, SeqCst);
    (t, t)
}

/// Runs the fault schedule for `secs`, then heals what is still broken; returns when all is healed.
fn fault_loop(sh: &Shared, net: &Net, nodes: &mut [Weft], t_begin: Instant) {
    let s = &sh.s;
    let mut rng = StdRng::seed_from_u64(s.seed);
    let end = t_begin + Duration::from_secs(s.secs);
    let mut next = t_begin + Duration::from_secs(s.every_s);
    let mut active: Vec<Active> = Vec::new();
    loop {
        let now = Instant::now();
        if let Some(k) = active.iter().position(|a| a.heal_at <= now) {
            let a = active.remove(k);
            let (i, kind) = {
                let f = &sh.faults.lock().unwrap()[a.fault];
                (f.node, f.kind)
            };
            let (t, ready) = heal(sh, net, nodes, i, kind);
            let mut faults = sh.faults.lock().unwrap();
            faults[a.fault].heal = t;
            faults[a.fault].ready = ready;
            loud_line(&format!("  {:>6.1}s heal   {} ({})", secs_since(sh, t), NAMES[i], kind.name()));
            continue;
        }
        if next <= now && now < end {
            next += Duration::from_secs(s.every_s);
            // a node neither faulted nor within its grace after a heal
            let t = now_us();
            let busy: BTreeSet<usize> = {
                let faults = sh.faults.lock().unwrap();
                faults.iter().filter(|f| f.heal == 0 || t < f.heal + s.heal_grace_us).map(|f| f.node).collect()
            };
            let free: Vec<usize> = (0..NAMES.len()).filter(|i| !busy.contains(i)).collect();
            if free.is_empty() {
                loud_line("  (no undisturbed node to fault this round)");
                continue;
            }
            let i = free[rng.random_range(0..free.len())];
            let kind = [Kind::Kill, Kind::Stop, Kind::Cut][rng.random_range(0..3)];
            let dur = Duration::from_millis(rng.random_range(s.fault_min_s * 1000..=s.fault_max_s * 1000));
            let start = inflict(sh, net, nodes, i, kind);
            let mut faults = sh.faults.lock().unwrap();
            faults.push(Fault { node: i, kind, start, heal: 0, ready: 0 });
            active.push(Active { fault: faults.len() - 1, heal_at: Instant::now() + dur });
            loud_line(&format!("  {:>6.1}s fault  {} ({}, {:.1} s)", secs_since(sh, start), NAMES[i], kind.name(), dur.as_secs_f64()));
            continue;
        }
        if now >= end && active.is_empty() {
            return;
        }
        let mut wake = active.iter().map(|a| a.heal_at).min().unwrap_or(end);
        if now < end {
            wake = wake.min(next).min(end);
        }
        std::thread::sleep(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
    }
}

static T0: AtomicU64 = AtomicU64::new(0);

fn secs_since(_sh: &Shared, t: u64) -> f64 {
    (t as f64 - T0.load(SeqCst) as f64) / 1e6
}

fn rel(t: u64) -> f64 {
    (t as f64 - T0.load(SeqCst) as f64) / 1e6
}

fn loud_line(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// analysis
// ---------------------------------------------------------------------------------------------

struct Windows {
    /// per node: (fault start, heal, heal + grace)
    w: Vec<Vec<(u64, u64, u64)>>,
}

impl Windows {
    fn new(faults: &[Fault], n: usize, grace: u64, end: u64) -> Windows {
        let mut w = vec![Vec::new(); n];
        for f in faults {
            let heal = if f.heal == 0 { end } else { f.heal };
            w[f.node].push((f.start, heal, heal + grace));
        }
        Windows { w }
    }
    /// Faulted, or within the grace after a heal, at `t`.
    fn disturbed(&self, i: usize, t: u64) -> bool {
        self.w[i].iter().any(|&(a, _, g)| a <= t && t <= g)
    }
    /// Faulted (no grace) at `t`.
    fn faulted(&self, i: usize, t: u64) -> bool {
        self.w[i].iter().any(|&(a, h, _)| a <= t && t < h)
    }
    /// Disturbed at any time within [a, b].
    fn disturbed_during(&self, i: usize, a: u64, b: u64) -> bool {
        self.w[i].iter().any(|&(s, _, g)| s <= b && g >= a)
    }
}

/// node, arrival (µs) of each request id at the backends.
type Arrivals = HashMap<String, Vec<(usize, u64)>>;

fn read_arrivals(dirs: &[(usize, PathBuf)]) -> Arrivals {
    let mut a: Arrivals = HashMap::new();
    for (node, dir) in dirs {
        // nginx: $msec $request_time $request_method $http_x_chaos_id $status
        for line in fs::read_to_string(dir.join("access.log")).unwrap_or_default().lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 || f[3] == "-" {
                continue;
            }
            let (Ok(msec), Ok(rt)) = (f[0].parse::<f64>(), f[1].parse::<f64>()) else { continue };
            a.entry(f[3].to_string()).or_default().push((*node, ((msec - rt) * 1e6) as u64));
        }
        // echo: UNIX_SECONDS ID
        for line in fs::read_to_string(dir.join("echo.log")).unwrap_or_default().lines() {
            let mut it = line.split_whitespace();
            let (Some(t), Some(id)) = (it.next().and_then(|t| t.parse::<f64>().ok()), it.next()) else { continue };
            a.entry(id.to_string()).or_default().push((*node, (t * 1e6) as u64));
        }
    }
    a
}

#[derive(Default)]
struct ClassFig {
    total: u64,
    ok: u64,
    failed: u64,
    failed_exempt: u64,
    tcp_in_flight: u64,
    late: u64,
    /// an attempt that ran after the request had been answered (a retried attempt, late)
    late_answered: u64,
    /// counted failures that reached no backend at all
    failed_unreached: u64,
    twice: u64,
    lat_us: Vec<u64>,
}

fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

struct Episode {
    observer: usize,
    subject: usize,
    states: BTreeSet<String>,
    first: u64,
    last: u64,
    samples: u64,
}

/// Member state of `subject` in `s` (as seen by `s.node`): alive / suspect / down / left / missing.
fn seen_state(s: &Sample, subject: &str) -> Option<String> {
    let m = s.members.as_ref()?;
    let entries: Vec<&Member> = m.iter().filter(|e| e.name == subject).collect();
    if entries.iter().any(|e| e.state == "alive") {
        return Some("alive".into());
    }
    Some(entries.iter().max_by_key(|e| e.generation).map(|e| e.state.clone()).unwrap_or_else(|| "missing".into()))
}

fn episodes(events: &[(usize, usize, String, u64)]) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    let mut open: HashMap<(usize, usize), usize> = HashMap::new();
    for (o, m, st, t) in events {
        if let Some(&k) = open.get(&(*o, *m))
            && t.saturating_sub(out[k].last) <= 1_500_000
        {
            out[k].last = *t;
            out[k].samples += 1;
            out[k].states.insert(st.clone());
            continue;
        }
        out.push(Episode { observer: *o, subject: *m, states: BTreeSet::from([st.clone()]), first: *t, last: *t, samples: 1 });
        open.insert((*o, *m), out.len() - 1);
    }
    out
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
        n = if MODES[i] == "registry" { n.extra(&services_toml()) } else { n.extra(&endpoints_toml(NAMES[i])) };
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

    let report = analyse(&sh, &arrivals, t_last_heal, final_converged, t_end, &out_dir);
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
    }
    drop(backends);
    assert!(report.is_empty(), "chaos soak missed its goals (details in {}):\n{}", out_dir.display(), report.join("\n"));
}

/// (ids expected present at the end, ids expected absent, ids of uncertain outcome)
fn final_regs(ops: &[RegOp]) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let mut by_id: BTreeMap<&str, Vec<&RegOp>> = BTreeMap::new();
    for op in ops {
        by_id.entry(&op.id).or_default().push(op);
    }
    let (mut present, mut absent, mut unsure) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (id, ops) in by_id {
        let created = ops.iter().find(|o| o.create).map(|o| o.outcome);
        let deleted = ops.iter().find(|o| !o.create).map(|o| o.outcome);
        match (created, deleted) {
            (Some(Outcome::Acked), None | Some(Outcome::Refused)) => present.insert(id.to_string()),
            (Some(Outcome::Acked), Some(Outcome::Acked)) => absent.insert(id.to_string()),
            (Some(Outcome::Refused), _) => absent.insert(id.to_string()),
            _ => unsure.insert(id.to_string()),
        };
    }
    (present, absent, unsure)
}

/// Computes the figures, prints the table, writes the details; returns the goals missed.
fn analyse(sh: &Shared, arrivals: &Arrivals, t_last_heal: u64, final_converged: Option<u64>, t_end: u64, out: &Path) -> Vec<String> {
    let s = &sh.s;
    let faults = sh.faults.lock().unwrap().clone();
    let samples = sh.samples.lock().unwrap().clone();
    let mut recs = sh.recs.lock().unwrap().clone();
    recs.sort_by_key(|r| r.start);
    let regs = sh.regs.lock().unwrap().clone();
    let win = Windows::new(&faults, NAMES.len(), s.heal_grace_us, t_end);
    let mut details = String::new();
    let t0 = T0.load(SeqCst);

    let _ = writeln!(details, "seed {}; t=0 at unix {:.3}\n\n== faults", s.seed, t0 as f64 / 1e6);
    for f in &faults {
        let _ = writeln!(
            details,
            "{:>7.1}s {:<3} {:<10} healed {:>7.1}s{}",
            rel(f.start),
            NAMES[f.node],
            f.kind.name(),
            rel(f.heal),
            if f.kind == Kind::Kill { format!(" (ready {:.1}s)", rel(f.ready)) } else { String::new() }
        );
    }

    // ---- requests
    let mut figs: BTreeMap<(Proto, bool), ClassFig> = BTreeMap::new();
    let mut late: Vec<String> = Vec::new();
    let mut late_answered: Vec<String> = Vec::new();
    let mut twice: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut fail_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok_unlogged = 0u64;
    for r in &recs {
        let f = figs.entry((r.proto, r.post)).or_default();
        f.total += 1;
        let arr = arrivals.get(&r.id).cloned().unwrap_or_default();
        if arr.len() > 1 {
            f.twice += 1;
            twice.push(format!(
                "{} {} {:.3}s..{:.3}s ok={} arrivals {:?}",
                r.id,
                NAMES[r.node],
                rel(r.start),
                rel(r.end),
                r.ok,
                arr.iter().map(|(n, t)| format!("{}@{:.3}s", NAMES[*n], rel(*t))).collect::<Vec<_>>()
            ));
        }
        if r.ok {
            f.ok += 1;
            f.lat_us.push(r.end - r.start);
            if arr.is_empty() {
                ok_unlogged += 1;
            }
            for (n, t) in &arr {
                if *t > r.end + LATE_TOLERANCE_US {
                    f.late_answered += 1;
                    late_answered.push(format!(
                        "{} (client on {}) answered by {} at {:.3}s, an attempt ran on {}'s backend at {:.3}s, {:.3} s after",
                        r.id,
                        NAMES[r.node],
                        r.backend.as_deref().unwrap_or("?"),
                        rel(r.end),
                        NAMES[*n],
                        rel(*t),
                        (*t - r.end) as f64 / 1e6
                    ));
                }
            }
            continue;
        }
        for (n, t) in &arr {
            if *t > r.end + LATE_TOLERANCE_US {
                f.late += 1;
                late.push(format!(
                    "{} (client on {}) failed at {:.3}s [{}], ran on {}'s backend at {:.3}s, {:.3} s after",
                    r.id,
                    NAMES[r.node],
                    rel(r.end),
                    r.err,
                    NAMES[*n],
                    rel(*t),
                    (*t - r.end) as f64 / 1e6
                ));
            }
        }
        let exempt = win.disturbed_during(r.node, r.start, r.end);
        // a TCP exchange that reached node F's backend before F's fault began (while in flight)
        let in_flight_at_fault = r.proto == Proto::Tcp
            && arr.iter().any(|(n, t)| faults.iter().any(|fl| fl.node == *n && *t < fl.start && fl.start <= r.end));
        let class = if exempt {
            f.failed_exempt += 1;
            "own node disturbed"
        } else if in_flight_at_fault {
            f.tcp_in_flight += 1;
            "tcp in flight at a fault"
        } else {
            f.failed += 1;
            if arr.is_empty() {
                f.failed_unreached += 1;
            }
            *fail_kinds.entry(format!("{} {}: {}", r.proto.name(), if r.post { "POST" } else { "GET" }, r.err)).or_default() += 1;
            "COUNTED"
        };
        failures.push(format!(
            "{:>8.3}s..{:>8.3}s {:<28} {:<26} {} (reached: {:?})",
            rel(r.start),
            rel(r.end),
            r.id,
            class,
            r.err,
            arr.iter().map(|(n, t)| format!("{}@{:.3}s", NAMES[*n], rel(*t))).collect::<Vec<_>>()
        ));
    }
    for f in figs.values_mut() {
        f.lat_us.sort_unstable();
    }
    let sum = |p: &dyn Fn(&(Proto, bool)) -> bool, g: &dyn Fn(&ClassFig) -> u64| figs.iter().filter(|(k, _)| p(k)).map(|(_, f)| g(f)).sum::<u64>();
    let idem = |k: &(Proto, bool)| !k.1;
    let nonidem = |k: &(Proto, bool)| k.1;
    let failed_idem = sum(&idem, &|f| f.failed);
    let failed_nonidem = sum(&nonidem, &|f| f.failed);
    let twice_nonidem = sum(&nonidem, &|f| f.twice);
    let twice_idem = sum(&idem, &|f| f.twice);
    let late_all = sum(&|_| true, &|f| f.late);
    let late_answered_all = sum(&|_| true, &|f| f.late_answered);
    let unreached_nonidem = sum(&nonidem, &|f| f.failed_unreached);
    let known: std::collections::HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();
    let orphans = arrivals.keys().filter(|id| !known.contains(id.as_str())).count();

    // ---- registrations
    let (expect_present, expect_absent, unsure) = final_regs(&regs);
    let mut lost: Vec<String> = Vec::new();
    let mut zombies: Vec<String> = Vec::new();
    for i in 0..NAMES.len() {
        let Some(last) = samples.iter().rev().find(|x| x.node == i && x.endpoints.is_some()) else {
            lost.push(format!("{}: no endpoint list at all", NAMES[i]));
            continue;
        };
        let eps = last.endpoints.as_ref().unwrap();
        for id in &expect_present {
            if !eps.contains(&format!("reg/{id}")) {
                lost.push(format!("{} lacks {id} (at {:.1}s)", NAMES[i], rel(last.at)));
            }
        }
        for id in &expect_absent {
            if eps.contains(&format!("reg/{id}")) {
                zombies.push(format!("{} still lists deleted {id}", NAMES[i]));
            }
        }
        for e in STATIC_EPS {
            if !eps.contains(e) {
                lost.push(format!("{} lacks traffic endpoint {e}", NAMES[i]));
            }
        }
    }
    let acked_creates = regs.iter().filter(|o| o.create && o.outcome == Outcome::Acked).count();
    let acked_deletes = regs.iter().filter(|o| !o.create && o.outcome == Outcome::Acked).count();
    let refused: Vec<&RegOp> = regs.iter().filter(|o| o.outcome == Outcome::Refused).collect();

    // ---- false deaths: O (undisturbed) lists M (undisturbed) as anything but alive
    let mut events: Vec<(usize, usize, String, u64)> = Vec::new();
    let mut missing: Vec<(usize, usize, String, u64)> = Vec::new();
    for x in &samples {
        if x.members.is_none() || win.disturbed(x.node, x.at) {
            continue;
        }
        for m in 0..NAMES.len() {
            if m == x.node || win.disturbed(m, x.at) {
                continue;
            }
            match seen_state(x, NAMES[m]).as_deref() {
                Some("alive") | None => {}
                Some("missing") => missing.push((x.node, m, "missing".into(), x.at)),
                Some(st) => events.push((x.node, m, st.to_string(), x.at)),
            }
        }
    }
    let false_deaths = episodes(&events);
    let missing_eps = episodes(&missing);
    let false_down = false_deaths.iter().filter(|e| e.states.iter().any(|s| s != "suspect")).count();

    // ---- convergence after each heal
    struct RegLife {
        key: String,
        owner: usize,
        created: u64,
        delete_sent: Option<u64>,
    }
    let lives: Vec<RegLife> = regs
        .iter()
        .filter(|o| o.create && o.outcome == Outcome::Acked)
        .map(|o| RegLife {
            key: format!("reg/{}", o.id),
            owner: o.node,
            created: o.done,
            delete_sent: regs.iter().find(|d| !d.create && d.id == o.id).map(|d| d.sent),
        })
        .collect();
    // per node: samples with members, samples with endpoints, by time
    let by_node = |want_eps: bool| -> Vec<Vec<&Sample>> {
        (0..NAMES.len())
            .map(|i| samples.iter().filter(|x| x.node == i && if want_eps { x.endpoints.is_some() } else { x.members.is_some() }).collect())
            .collect()
    };
    let (m_by, e_by) = (by_node(false), by_node(true));
    fn latest<'a>(v: &[&'a Sample], h: u64, t: u64) -> Option<&'a Sample> {
        let k = v.partition_point(|x| x.at <= t);
        (k > 0 && v[k - 1].at >= h).then(|| v[k - 1])
    }
    let mut conv: Vec<(usize, Kind, Option<u64>, String)> = Vec::new();
    for f in &faults {
        let h = f.heal;
        let mut result = None;
        let mut why = String::from("not within 60 s");
        let mut t = h;
        while t <= h + 60_000_000 && t <= t_end {
            t += 250_000;
            let set: BTreeSet<usize> = (0..NAMES.len()).filter(|&i| !win.faulted(i, t)).collect();
            if !set.contains(&f.node) {
                why = "faulted again first".into();
                break;
            }
            let ok = set.iter().all(|&i| {
                let (Some(m), Some(e)) = (latest(&m_by[i], h, t), latest(&e_by[i], h, t)) else { return false };
                let members_ok = set.iter().filter(|&&j| j != i).all(|&j| {
                    let g = sh.nodes[j].generation_at(t);
                    m.members.as_ref().unwrap().iter().any(|x| x.name == NAMES[j] && x.state == "alive" && x.generation >= g)
                });
                let eps = e.endpoints.as_ref().unwrap();
                let x = e.at.saturating_sub(REG_SLACK_US);
                members_ok
                    && STATIC_EPS.iter().all(|k| eps.contains(*k))
                    && lives
                        .iter()
                        .filter(|l| set.contains(&l.owner) && l.created <= x && l.delete_sent.is_none_or(|d| d > x))
                        .all(|l| eps.contains(&l.key))
            });
            if ok {
                result = Some(t - h);
                break;
            }
        }
        conv.push((f.node, f.kind, result, why));
    }
    let mut conv_times: Vec<u64> = conv.iter().filter_map(|c| c.2).collect();
    conv_times.sort_unstable();
    let not_conv = conv.iter().filter(|c| c.2.is_none() && c.3 != "faulted again first").count();

    // ---- the table
    let mut t = String::new();
    let kinds = |k: Kind| faults.iter().filter(|f| f.kind == k).count();
    let _ = writeln!(
        t,
        "\nchaos soak: {} s, {} faults ({} kill -9, {} SIGSTOP, {} link down), {} clients at ~{} req/s, seed {}\n",
        s.secs,
        faults.len(),
        kinds(Kind::Kill),
        kinds(Kind::Stop),
        kinds(Kind::Cut),
        s.clients,
        s.rate,
        s.seed
    );
    let _ = writeln!(
        t,
        "{:<9} {:>7} {:>7} {:>7} {:>10} {:>9} {:>5} {:>6} {:>7} {:>7} {:>8}",
        "requests", "total", "ok", "failed", "own-node*", "tcp-fly*", "late", "twice", "p50 ms", "p99 ms", "max ms"
    );
    for ((p, post), f) in &figs {
        let _ = writeln!(
            t,
            "{:<9} {:>7} {:>7} {:>7} {:>10} {:>9} {:>5} {:>6} {:>7.1} {:>7.1} {:>8.1}",
            if *p == Proto::Tcp { "tcp".to_string() } else { format!("{} {}", p.name(), if *post { "POST" } else { "GET" }) },
            f.total,
            f.ok,
            f.failed,
            f.failed_exempt,
            f.tcp_in_flight,
            f.late,
            f.twice,
            pct(&f.lat_us, 0.5),
            pct(&f.lat_us, 0.99),
            pct(&f.lat_us, 1.0)
        );
    }
    let _ = writeln!(
        t,
        "  * not counted as failures: own-node = the client's own proxy was faulted (or within {} s of its heal) during the request; tcp-fly = a TCP exchange that had reached a backend on a node before that node's fault broke it",
        s.heal_grace_us / 1_000_000
    );
    let conv_s = |v: Option<&u64>| v.map(|x| format!("{:.1} s", *x as f64 / 1e6)).unwrap_or_else(|| "-".into());
    let rss: Vec<String> = (0..NAMES.len()).map(|i| format!("{} {:.0}", NAMES[i], sh.nodes[i].peak_hwm_kb.load(SeqCst) as f64 / 1024.0)).collect();
    let rows: Vec<(String, String, &str)> = vec![
        ("failed idempotent requests (GET h1+h2, TCP)".into(), failed_idem.to_string(), "0"),
        ("failed non-idempotent requests (POST h1+h2)".into(), failed_nonidem.to_string(), "-"),
        ("  of which reached no backend (502 where a retry was safe)".into(), unreached_nonidem.to_string(), "-"),
        ("non-idempotent requests executed twice".into(), twice_nonidem.to_string(), "0"),
        ("idempotent requests executed twice".into(), twice_idem.to_string(), "-"),
        ("requests executed after their caller gave up".into(), late_all.to_string(), "0"),
        ("attempts executed after their request was answered (late retries)".into(), late_answered_all.to_string(), "-"),
        (
            format!("registrations lost (of {acked_creates} acked creates, {acked_deletes} acked deletes, {} uncertain)", unsure.len()),
            lost.len().to_string(),
            "0",
        ),
        ("deleted registrations still listed".into(), zombies.len().to_string(), "-"),
        (
            "false down/suspect declarations (episodes; down or left)".into(),
            format!("{} ({} samples); {false_down}", false_deaths.len(), events.len()),
            "0",
        ),
        ("live node missing from a member list (episodes)".into(), missing_eps.len().to_string(), "-"),
        (
            format!("convergence after heal ({} heals): median / max", conv_times.len()),
            format!("{} / {}", conv_s(conv_times.get(conv_times.len() / 2)), conv_s(conv_times.last())),
            "-",
        ),
        ("heals not converged within 60 s".into(), not_conv.to_string(), "-"),
        (
            "all nodes converged after the last heal (polled every 250 ms)".into(),
            final_converged.map(|c| format!("{:.1} s", (c - t_last_heal) as f64 / 1e6)).unwrap_or_else(|| "NO (60 s)".into()),
            "-",
        ),
        ("peak RSS per node (MiB)".into(), rss.join(", "), "-"),
        ("OK answers with no backend record (harness check)".into(), ok_unlogged.to_string(), "0"),
        ("backend arrivals of ids no client sent (harness check)".into(), orphans.to_string(), "0"),
    ];
    let _ = writeln!(t, "\n{:<72} {:>24} {:>5}", "figure", "value", "goal");
    for (k, v, g) in &rows {
        let _ = writeln!(t, "{k:<72} {v:>24} {g:>5}");
    }
    loud_line(&t);

    // ---- details
    let _ = writeln!(details, "\n== convergence after each heal");
    for (n, k, r, why) in &conv {
        let _ = writeln!(details, "{:<3} {:<10} {}", NAMES[*n], k.name(), r.map(|x| format!("{:.2} s", x as f64 / 1e6)).unwrap_or_else(|| why.clone()));
    }
    let _ = writeln!(details, "\n== false down/suspect declarations (observer: subject state, from..to, samples)");
    for e in &false_deaths {
        let _ = writeln!(
            details,
            "{} saw {} {:?} from {:.2}s to {:.2}s ({} samples)",
            NAMES[e.observer],
            NAMES[e.subject],
            e.states,
            rel(e.first),
            rel(e.last),
            e.samples
        );
    }
    let _ = writeln!(details, "\n== live node missing from a member list");
    for e in &missing_eps {
        let _ = writeln!(details, "{} did not list {} from {:.2}s to {:.2}s ({} samples)", NAMES[e.observer], NAMES[e.subject], rel(e.first), rel(e.last), e.samples);
    }
    let _ = writeln!(details, "\n== requests executed after their caller gave up");
    for l in &late {
        let _ = writeln!(details, "{l}");
    }
    let _ = writeln!(details, "\n== attempts executed after their request had been answered");
    for l in &late_answered {
        let _ = writeln!(details, "{l}");
    }
    let _ = writeln!(details, "\n== requests executed more than once");
    for l in &twice {
        let _ = writeln!(details, "{l}");
    }
    let _ = writeln!(details, "\n== counted failures by kind");
    for (k, n) in &fail_kinds {
        let _ = writeln!(details, "{n:>6} {k}");
    }
    let _ = writeln!(details, "\n== registrations lost / deleted but listed / refused");
    for l in lost.iter().chain(zombies.iter()) {
        let _ = writeln!(details, "{l}");
    }
    for o in &refused {
        let _ = writeln!(details, "refused {} {} on {}: {}", if o.create { "create" } else { "delete" }, o.id, NAMES[o.node], o.detail);
    }
    for o in regs.iter().filter(|o| o.outcome == Outcome::Unknown) {
        let _ = writeln!(
            details,
            "uncertain {} {} on {} at {:.2}s: {}",
            if o.create { "create" } else { "delete" },
            o.id,
            NAMES[o.node],
            rel(o.sent),
            o.detail
        );
    }
    let _ = writeln!(details, "\n== every failed request (counted or not)");
    for l in &failures {
        let _ = writeln!(details, "{l}");
    }
    fs::write(out.join("report.txt"), &t).unwrap();
    fs::write(out.join("details.txt"), &details).unwrap();
    let mut reqlog = String::new();
    for r in &recs {
        let _ = writeln!(reqlog, "{:.6} {:.6} {} {} {} {}", rel(r.start), rel(r.end), r.id, r.ok, r.backend.as_deref().unwrap_or("-"), r.err);
    }
    fs::write(out.join("requests.txt"), reqlog).unwrap();

    // ---- goals
    let mut missed = Vec::new();
    let total: u64 = figs.values().map(|f| f.total).sum();
    if total < s.secs * (s.rate as u64) / 4 {
        missed.push(format!("harness: only {total} requests in {} s (load far below ~{} req/s)", s.secs, s.rate));
    }
    if faults.len() as u64 + 1 < s.secs / s.every_s {
        missed.push(format!("harness: only {} faults in {} s", faults.len(), s.secs));
    }
    if orphans > 0 {
        missed.push(format!("harness: {orphans} backend arrivals of ids no client sent"));
    }
    if ok_unlogged > 0 {
        missed.push(format!("harness: {ok_unlogged} OK answers without a backend record"));
    }
    if failed_idem > 0 {
        missed.push(format!("failed idempotent requests: {failed_idem} (by kind: {fail_kinds:?})"));
    }
    if twice_nonidem > 0 {
        missed.push(format!("non-idempotent requests executed twice: {twice_nonidem}: {:?}", twice.iter().take(5).collect::<Vec<_>>()));
    }
    if late_all > 0 {
        missed.push(format!("requests executed after their caller gave up: {late_all}, e.g. {:?}", late.iter().take(5).collect::<Vec<_>>()));
    }
    if !lost.is_empty() {
        missed.push(format!("registrations lost: {}: {:?}", lost.len(), lost.iter().take(10).collect::<Vec<_>>()));
    }
    let downs: Vec<&Episode> = false_deaths.iter().filter(|e| e.states.iter().any(|s| s != "suspect")).collect();
    if !downs.is_empty() {
        let ex: Vec<String> = downs
            .iter()
            .take(10)
            .map(|e| format!("{} saw {} {:?} {:.1}s..{:.1}s", NAMES[e.observer], NAMES[e.subject], e.states, rel(e.first), rel(e.last)))
            .collect();
        missed.push(format!("false down declarations of live nodes: {} episodes, e.g. {ex:?}", downs.len()));
    }
    missed
}
