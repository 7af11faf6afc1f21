//! Shared harness for weft's integration tests.
//!
//! Every test starts the real `weft` binary (env!("CARGO_BIN_EXE_weft")) with its own temp data dir,
//! its own admin port, its own DNS port and its own `[dns] vip_cidr` /24 (127.255.N.0/24), so tests
//! can run in parallel. External peers are real programs (curl, redis-server, python3, ip netns).
//!
//! Nothing here sleeps as an assertion: waits are bounded polls (`wait_until`).
#![allow(dead_code)]

/// The HTTP/1.1 load client of the zero-dropped-requests tests (std only; benches include it by path).
pub mod load;
/// Plugin files, RSS and latency figures for the plugin tests (tests/plugin_*.rs).
pub mod plugin;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[allow(unused_imports)]
pub use serde_json::{Value, json};

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");
pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Exit code of `weft validate` / `weft run` on a bad config (EX_CONFIG).
pub const EX_CONFIG: i32 = 78;

// ---------------------------------------------------------------------------------------------
// small utilities
// ---------------------------------------------------------------------------------------------

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}-{}-{:x}", std::process::id(), n, nanos)
}

/// A temporary directory removed on drop (kept when WEFT_KEEP_TMP is set, for debugging).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("weft-test-{prefix}-{}", unique_suffix()));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("WEFT_KEEP_TMP").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A loopback port that is free for both TCP and UDP right now.
///
/// Ports come from below the kernel's ephemeral range and each is handed out once per test
/// process. A port from `bind(0)` is an ephemeral one: between the test learning it and its
/// server binding it, any outgoing connection (a weft node's health check, a client) could take
/// it as its local port, and the server then fails to start.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let ephemeral_low: u64 = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, span) = (10_000u64, ephemeral_low.saturating_sub(10_000).max(1_000));
    // Test binaries that follow one another start at different places, away from ports the
    // previous one's processes may still hold.
    let start = (u64::from(std::process::id()) * 7_919) % span;
    for _ in 0..2_000 {
        let port = (low + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found below {ephemeral_low}");
}

/// The VIP range for test number `n`: each test uses its own /24 so weft instances never collide.
pub fn vip_cidr(n: u8) -> String {
    format!("127.255.{n}.0/24")
}

/// Poll `f` every `every` until it returns true or `timeout` passes. Returns whether it became true.
pub fn wait_until(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Poll `f` until it yields Some, panicking with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// Some tests need root (network namespaces). Under CI=true a missing root is a failure, never a skip.
/// Returns false (after a loud SKIP line) when the test should return early.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if ci() {
        panic!("needs root: {test} creates network namespaces (ip netns) and binds port 53; CI=true forbids skipping");
    }
    loud(&format!("*** SKIP {test}: needs root (ip netns, port 53). Run as root; CI=true turns this into a failure. ***"));
    false
}

/// Write straight to the process's stderr, past libtest's output capture, so a SKIP is always seen.
pub fn loud(msg: &str) {
    let _ = writeln!(std::io::stderr(), "\n{msg}\n");
}

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Panic (CI) or skip when a required external program is missing.
pub fn require_program(test: &str, program: &str) -> bool {
    if have(program) {
        return true;
    }
    if ci() {
        panic!("{test} needs `{program}` on PATH (.ci/run installs it)");
    }
    loud(&format!("*** SKIP {test}: `{program}` not found on PATH ***"));
    false
}

pub fn support_path(rel: &str) -> String {
    Path::new(MANIFEST_DIR).join("tests").join(rel).to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// running commands
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct CmdOut {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub cmdline: String,
}

impl CmdOut {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn both(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// Panics with full output unless exit code 0.
    pub fn expect_ok(&self) -> &CmdOut {
        assert!(
            self.ok(),
            "command failed ({:?}): {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.cmdline,
            self.stdout(),
            self.stderr()
        );
        self
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!("`{}` did not print JSON ({e}):\n{}\n--- stderr ---\n{}", self.cmdline, self.stdout(), self.stderr())
        })
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run a command to completion with a timeout (killed and panics on timeout), optional stdin.
pub fn run_cmd(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> CmdOut {
    let cmdline = describe(cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn `{cmdline}`: {e}"));
    let writer = stdin.map(|data| {
        let mut w = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        })
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let so = t_out.join().unwrap_or_default();
            let se = t_err.join().unwrap_or_default();
            panic!(
                "command timed out after {timeout:?}: {cmdline}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&so),
                String::from_utf8_lossy(&se)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    CmdOut { code: status.code(), stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap(), cmdline }
}

/// `Command` for `program args`, optionally inside network namespace `netns`.
pub fn command(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// Run curl (optionally in a netns) with the given args; 20 s timeout; never panics on curl failure.
pub fn curl(netns: Option<&str>, args: &[&str]) -> CmdOut {
    let mut c = command(netns, "curl");
    c.args(["-sS", "--noproxy", "*", "--max-time", "10"]).args(args);
    c.env_remove("http_proxy").env_remove("HTTP_PROXY").env_remove("all_proxy").env_remove("ALL_PROXY");
    run_cmd(&mut c, None, Duration::from_secs(20))
}

/// GET `url` with curl; returns (http status, body). Status 0 when the transfer failed.
pub fn curl_get(netns: Option<&str>, url: &str) -> (u16, String, String) {
    let out = curl(netns, &["-o", "-", "-w", "\n%{http_code}", url]);
    let text = out.stdout();
    let (body, code) = match text.rfind('\n') {
        Some(i) => (text[..i].to_string(), text[i + 1..].trim().to_string()),
        None => (String::new(), text.trim().to_string()),
    };
    (code.parse().unwrap_or(0), body, out.stderr())
}

/// A background process killed (SIGKILL) and reaped on drop.
pub struct Bg {
    pub child: Child,
    pub name: String,
    pub log: Option<PathBuf>,
}

impl Bg {
    /// Spawn with stdout+stderr going to `log` (a file) or /dev/null.
    pub fn spawn(name: &str, cmd: &mut Command, log: Option<PathBuf>) -> Bg {
        match &log {
            Some(p) => {
                let f = fs::File::create(p).expect("create log");
                cmd.stdout(Stdio::from(f.try_clone().unwrap())).stderr(Stdio::from(f));
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        cmd.stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name} ({}): {e}", describe(cmd)));
        Bg { child, name: name.to_string(), log }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn log_text(&self) -> String {
        self.log.as_ref().and_then(|p| fs::read_to_string(p).ok()).unwrap_or_default()
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            if !log.is_empty() {
                eprintln!("--- log of {} ---\n{}", self.name, tail(&log, 4000));
            }
        }
        self.kill();
    }
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        s
    } else {
        let mut i = s.len() - n;
        while !s.is_char_boundary(i) {
            i += 1;
        }
        &s[i..]
    }
}

/// Wait until something accepts TCP connections on `addr` (host network namespace).
pub fn wait_tcp(addr: &str, timeout: Duration) {
    let ok = wait_until(timeout, Duration::from_millis(25), || {
        let sa = addr.to_socket_addrs().unwrap().next().unwrap();
        TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_ok()
    });
    assert!(ok, "nothing listening on {addr} after {timeout:?}");
}

/// Start tests/support/http_backend.py NAME on 127.0.0.1:PORT (optionally inside a netns) and wait for it.
pub fn http_backend(netns: Option<&str>, name: &str, port: u16) -> Bg {
    let script = support_path("support/http_backend.py");
    let mut c = command(netns, "python3");
    c.args([script.as_str(), name, &port.to_string()]);
    let mut bg = Bg::spawn(&format!("backend {name}"), &mut c, None);
    let url = format!("http://127.0.0.1:{port}/ready");
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        match netns {
            None => http("127.0.0.1", port, "GET", "/ready", None).map(|r| r.status == 200).unwrap_or(false),
            Some(_) => curl_get(netns, &url).0 == 200,
        }
    });
    assert!(ok && bg.alive(), "backend {name} on port {port} did not come up");
    bg
}

/// An nginx process (one worker, in the foreground) with `http` directives and `servers` (whole
/// `server { … }` blocks) inside its `http` block; every port a `listen` names answers before
/// this returns. For tests whose backend must keep a short tail under 100 clients: the Python
/// backends serialise on the GIL and take 0.4–1.7 s on their slowest request there (measured
/// with `hey -c 100` against counter_backend.py).
pub fn nginx(test: &str, tmp: &TempDir, http: &str, servers: &str, ports: &[u16]) -> Option<Bg> {
    if !require_program(test, "nginx") {
        return None;
    }
    let conf = format!(
        "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir};\n{http}\n{servers}\n}}\n",
        dir = tmp.path().display()
    );
    fs::write(tmp.join("nginx.conf"), conf).unwrap();
    let (c, p) = (tmp.join("nginx.conf").display().to_string(), tmp.path().display().to_string());
    let bg = Bg::spawn("nginx", Command::new("nginx").args(["-c", &c, "-p", &p]), Some(tmp.join("nginx.out")));
    for port in ports {
        wait_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(10));
    }
    Some(bg)
}

/// Start tests/support/counter_backend.py NAME on 127.0.0.1:PORT with extra `args` (`--mode …`,
/// `--healthz-fail-s …`) and wait until its `/_count` answers. Its log goes to `log`.
pub fn counter_backend(name: &str, port: u16, args: &[&str], log: Option<PathBuf>) -> Bg {
    let mut c = Command::new("python3");
    c.arg(support_path("support/counter_backend.py")).arg(name).arg(port.to_string()).args(args);
    let mut bg = Bg::spawn(&format!("counter backend {name}"), &mut c, log);
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(25), || {
        http("127.0.0.1", port, "GET", "/_count", None).map(|r| r.status == 200).unwrap_or(false)
    });
    assert!(ok && bg.alive(), "counter backend {name} on port {port} did not come up: {}", bg.log_text());
    bg
}

/// `GET /_count` of a counter backend (requests, by_method, requests_while_healthz_failing …).
pub fn backend_counts(port: u16) -> Value {
    let r = http("127.0.0.1", port, "GET", "/_count", None).unwrap_or_else(|e| panic!("GET /_count on 127.0.0.1:{port}: {e}"));
    assert_eq!(r.status, 200, "GET /_count on 127.0.0.1:{port}: {}", r.text());
    r.json()
}

/// Requests a counter backend has seen (control paths excluded).
pub fn backend_requests(port: u16) -> u64 {
    backend_counts(port)["requests"].as_u64().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// a tiny HTTP/1.1 client (std only)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response (status {}) is not JSON ({e}): {}", self.status, self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
pub fn http(host: &str, port: u16, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<Resp> {
    http_with(host, port, method, path, &[], body)
}

/// [`http`] with extra request headers.
pub fn http_with(host: &str, port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> std::io::Result<Resp> {
    let sa = (host, port).to_socket_addrs()?.next().unwrap();
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.set_write_timeout(Some(Duration::from_secs(15)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nAccept: */*\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    } else if method == "POST" || method == "PUT" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    s.write_all(&bytes)?;
    let mut raw = Vec::new();
    // Read until EOF, or until a complete response has arrived (some servers linger).
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if let Some(r) = try_parse(&raw, method == "HEAD") {
                    return Ok(r);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    try_parse(&raw, method == "HEAD").or_else(|| parse_eof(&raw)).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad HTTP response: {:?}", String::from_utf8_lossy(&raw)),
        )
    })
}

/// Status, fields, and where the body starts.
type ParsedHead = (u16, Vec<(String, String)>, usize);

fn parse_head(raw: &[u8]) -> Option<ParsedHead> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((status, headers, end + 4))
}

/// A complete response (content-length or chunked), or None if more bytes are needed.
fn try_parse(raw: &[u8], head_only: bool) -> Option<Resp> {
    let (status, headers, start) = parse_head(raw)?;
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let rest = &raw[start..];
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Some(Resp { status, headers, body: Vec::new() });
    }
    if get("transfer-encoding").map(|v| v.to_ascii_lowercase().contains("chunked")).unwrap_or(false) {
        let body = dechunk(rest)?;
        return Some(Resp { status, headers, body });
    }
    if let Some(cl) = get("content-length") {
        let n: usize = cl.parse().ok()?;
        if rest.len() >= n {
            return Some(Resp { status, headers, body: rest[..n].to_vec() });
        }
        return None;
    }
    None
}

fn parse_eof(raw: &[u8]) -> Option<Resp> {
    let (status, headers, start) = parse_head(raw)?;
    Some(Resp { status, headers, body: raw[start..].to_vec() })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------------
// weft
// ---------------------------------------------------------------------------------------------

/// How to start a weft node.
#[derive(Clone, Debug)]
pub struct WeftOpts {
    /// third octet of the VIP /24: 127.255.N.0/24
    pub vip_net: u8,
    /// run inside this network namespace (`ip netns exec`)
    pub netns: Option<String>,
    /// admin port; None = a free port
    pub admin_port: Option<u16>,
    /// DNS listen address; None = 127.0.0.1:<free port>
    pub dns_listen: Option<String>,
    pub dns_enabled: bool,
    pub hosts_file: Option<String>,
    /// extra lines for the [dns] table (e.g. `upstream = [...]`)
    pub dns_extra: String,
    /// extra lines for the [node] table (e.g. `zone = "a"`)
    pub node_extra: String,
    /// TOML appended after the generated tables ([[namespace]], [[service]], [[endpoint]] ...)
    pub extra: String,
    /// also write `[[namespace]] name = "default"` (not needed: "default" is implicitly defined)
    pub declare_default: bool,
    /// run on one CPU (`taskset -c 0`), which makes weft pick its single-threaded runtime
    pub one_cpu: bool,
    /// weft's log filter (`WEFT_LOG`); None: $WEFT_TEST_LOG, else `info`
    pub log_filter: Option<String>,
    /// more environment variables for `weft run`
    pub env: Vec<(String, String)>,
}

impl WeftOpts {
    pub fn new(vip_net: u8) -> WeftOpts {
        WeftOpts {
            vip_net,
            netns: None,
            admin_port: None,
            dns_listen: None,
            dns_enabled: true,
            hosts_file: None,
            dns_extra: String::new(),
            node_extra: String::new(),
            extra: String::new(),
            declare_default: false,
            one_cpu: false,
            log_filter: None,
            env: Vec::new(),
        }
    }
    pub fn env(mut self, key: &str, value: &str) -> WeftOpts {
        self.env.push((key.into(), value.into()));
        self
    }
    pub fn extra(mut self, toml: &str) -> WeftOpts {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }
}

/// A running weft node (`weft run -c <generated toml>`), killed on drop.
pub struct Weft {
    pub opts: WeftOpts,
    pub dir: TempDir,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub admin: String,
    pub admin_port: u16,
    pub dns_listen: String,
    child: Option<Child>,
    runs: u32,
}

/// The TOML text `Weft::start` writes for these options.
/// TOML for one service in namespace `default` with one alias and one endpoint.
pub fn one_service_toml(name: &str, protocol: &str, dns_name: &str, port: u16, endpoint: &str) -> String {
    format!(
        r#"
[[service]]
namespace = "default"
name = "{name}"
protocol = "{protocol}"
aliases = [{{ dns_name = "{dns_name}", port = {port} }}]

[[endpoint]]
namespace = "default"
service = "{name}"
id = "{name}-1"
address = "{endpoint}"
"#
    )
}

impl Weft {
    /// Starts weft with one service (see `one_service_toml`) and waits until its alias listens;
    /// returns the node and the alias VIP.
    pub fn start_one_service(vip_net: u8, name: &str, protocol: &str, dns_name: &str, port: u16, endpoint: &str) -> (Weft, String) {
        let w = Weft::start(WeftOpts::new(vip_net).extra(&one_service_toml(name, protocol, dns_name, port, endpoint)));
        let vip = w.vip(dns_name, port);
        let route = w.wait_route(dns_name, port, Duration::from_secs(5));
        assert_eq!(route["protocol"].as_str(), Some(protocol), "{route}");
        wait_tcp(&format!("{vip}:{port}"), Duration::from_secs(5));
        (w, vip)
    }
}

pub fn weft_toml(opts: &WeftOpts, data_dir: &Path, admin_port: u16, dns_listen: &str) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "[node]\nname = \"test-node-{}\"\ndata_dir = \"{}\"\n{}\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n",
        opts.vip_net,
        data_dir.display(),
        opts.node_extra
    ));
    t.push_str(&format!(
        "[dns]\nenabled = {}\nlisten = \"{dns_listen}\"\nvip_cidr = \"{}\"\n",
        opts.dns_enabled,
        vip_cidr(opts.vip_net)
    ));
    if let Some(h) = &opts.hosts_file {
        t.push_str(&format!("hosts_file = \"{h}\"\n"));
    }
    t.push_str(&opts.dns_extra);
    t.push_str("\n\n");
    if opts.declare_default {
        t.push_str("[[namespace]]\nname = \"default\"\n\n");
    }
    t.push_str(&opts.extra);
    t
}

impl Weft {
    /// Write the config, start weft, wait for GET /v1/status to answer 200. Ports come from
    /// `free_port`, which another test running in parallel may take between the pick and weft's
    /// bind: a start that fails on "Address already in use" is tried again with fresh ports.
    pub fn start(opts: WeftOpts) -> Weft {
        let fixed_ports = opts.admin_port.is_some() || opts.dns_listen.is_some();
        for attempt in 1..=3 {
            let mut w = Weft::spawn_only(opts.clone());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && w.try_exit().is_none() && w.get("/v1/status").map(|r| r.status != 200).unwrap_or(true) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !fixed_ports && attempt < 3 && w.try_exit().is_some() && w.log().contains("Address already in use") {
                loud(&format!("weft start attempt {attempt}: a port picked for it was taken meanwhile; retrying with fresh ports"));
                continue;
            }
            w.wait_ready();
            return w;
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Write the config and start weft without waiting.
    pub fn spawn_only(opts: WeftOpts) -> Weft {
        let dir = TempDir::new(&format!("weft{}", opts.vip_net));
        let data_dir = dir.join("data");
        let admin_port = opts.admin_port.unwrap_or_else(free_port);
        let dns_listen = opts.dns_listen.clone().unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let config = dir.join("weft.toml");
        fs::write(&config, weft_toml(&opts, &data_dir, admin_port, &dns_listen)).unwrap();
        let mut w = Weft {
            opts,
            dir,
            config,
            data_dir,
            admin: format!("127.0.0.1:{admin_port}"),
            admin_port,
            dns_listen,
            child: None,
            runs: 0,
        };
        w.spawn();
        w
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(&format!("weft-run{}.log", self.runs))
    }

    /// Everything weft printed (stdout+stderr) in its current/last run.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let log = fs::File::create(self.log_path()).unwrap();
        let mut c = if self.opts.one_cpu {
            assert!(self.opts.netns.is_none(), "one_cpu is for nodes outside network namespaces");
            let mut c = Command::new("taskset");
            c.args(["-c", "0", WEFT]);
            c
        } else {
            command(self.opts.netns.as_deref(), WEFT)
        };
        c.arg("run").arg("-c").arg(&self.config);
        c.envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        c.env_remove("WEFT_ADMIN")
            .env("XDG_STATE_HOME", self.dir.join("xdg-state"))
            .env("WEFT_LOG", self.opts.log_filter.clone().or_else(|| std::env::var("WEFT_TEST_LOG").ok()).unwrap_or_else(|| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        self.child = Some(c.spawn().expect("spawn weft"));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("weft not running").id()
    }

    /// Has the process exited? Returns its status if so.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    pub fn wait_ready(&mut self) {
        // Ready = the admin API answers AND stderr has the `weft ready` line naming our admin
        // address. Both within one deadline: under a parallel suite the line can trail the
        // first answer, and a port another test's weft briefly answered on must not count.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.try_exit() {
                panic!("weft exited before becoming ready ({st}); log:\n{}", self.log());
            }
            let answered = self.get("/v1/status").is_ok_and(|r| r.status == 200);
            if answered && self.log().lines().any(|l| l.contains("weft ready") && l.contains(&self.admin)) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("weft not ready within 30 s (admin answered: {answered}; spec: a `weft ready ... {}` line on stderr); log:\n{}", self.admin, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for exit.
    pub fn sigterm(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("weft not running");
        let pid = c.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("weft did not exit within {timeout:?} of SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again with the same config and data dir, and wait until ready.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs the previous process stopped");
        self.spawn();
        self.wait_ready();
    }

    // ---- admin API ------------------------------------------------------------------------

    /// One admin API request. Inside a netns the request is made with curl inside that netns.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Resp> {
        let body_bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        match &self.opts.netns {
            None => http("127.0.0.1", self.admin_port, method, path, body_bytes.as_deref()),
            Some(ns) => {
                let url = format!("http://{}{}", self.admin, path);
                let mut args: Vec<String> =
                    vec!["-X".into(), method.into(), "-o".into(), "-".into(), "-w".into(), "\n%{http_code}".into()];
                if let Some(b) = &body_bytes {
                    args.push("-H".into());
                    args.push("content-type: application/json".into());
                    args.push("--data-binary".into());
                    args.push(String::from_utf8(b.clone()).unwrap());
                }
                args.push(url);
                let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
                let out = curl(Some(ns), &a);
                let text = out.stdout();
                let i = text.rfind('\n').unwrap_or(0);
                let status: u16 = text[i..].trim().parse().unwrap_or(0);
                if status == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, out.stderr()));
                }
                Ok(Resp { status, headers: vec![], body: text.as_bytes()[..i].to_vec() })
            }
        }
    }

    pub fn get(&self, path: &str) -> std::io::Result<Resp> {
        self.request("GET", path, None)
    }
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.request("POST", path, Some(body)).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None).unwrap_or_else(|e| panic!("DELETE {path}: {e}"))
    }

    /// GET returning JSON, asserting 200.
    pub fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "GET {path} -> {} {}", r.status, r.text());
        r.json()
    }

    /// POST asserting a 2xx status.
    pub fn post_ok(&self, path: &str, body: &Value) -> Value {
        let r = self.post(path, body);
        assert!((200..300).contains(&r.status), "POST {path} {body} -> {} {}", r.status, r.text());
        if r.body.is_empty() { Value::Null } else { r.json() }
    }

    /// GET /v1/routes as a list.
    pub fn routes(&self) -> Vec<Value> {
        as_list(&self.get_json("/v1/routes"))
    }

    /// The route entry for alias `dns_name:port` once it exists (waits up to `timeout`).
    pub fn wait_route(&self, dns_name: &str, port: u16, timeout: Duration) -> Value {
        wait_for(&format!("route {dns_name}:{port} in GET /v1/routes"), timeout, || {
            self.get("/v1/routes")
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .and_then(|v| {
                    as_list(&v).into_iter().find(|r| {
                        r["dns_name"].as_str() == Some(dns_name) && r["port"].as_u64() == Some(port as u64)
                    })
                })
        })
    }

    /// The VIP (without port) of alias `dns_name:port`, checked to lie in this node's /24.
    pub fn vip(&self, dns_name: &str, port: u16) -> String {
        let r = self.wait_route(dns_name, port, Duration::from_secs(10));
        let vip = r["vip"].as_str().unwrap_or_else(|| panic!("route without vip: {r}")).to_string();
        // tolerate "ip:port" in the vip field
        let vip = vip.split(':').next().unwrap().to_string();
        assert!(
            vip.starts_with(&format!("127.255.{}.", self.opts.vip_net)),
            "VIP {vip} of {dns_name}:{port} is outside vip_cidr {}",
            vip_cidr(self.opts.vip_net)
        );
        vip
    }

    // ---- CLI ------------------------------------------------------------------------------

    /// `weft --admin ADDR <args>` (inside the netns if any).
    pub fn cli(&self, args: &[&str]) -> CmdOut {
        let mut c = command(self.opts.netns.as_deref(), WEFT);
        c.arg("--admin").arg(&self.admin).args(args).env_remove("WEFT_ADMIN");
        run_cmd(&mut c, None, Duration::from_secs(30))
    }

    /// `weft -c CONFIG <args>`: the CLI finds the admin API through the same config file.
    pub fn cli_c(&self, args: &[&str]) -> CmdOut {
        let mut c = command(self.opts.netns.as_deref(), WEFT);
        c.arg("-c").arg(&self.config).args(args).env_remove("WEFT_ADMIN");
        run_cmd(&mut c, None, Duration::from_secs(30))
    }
}

impl Drop for Weft {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- weft log ({}) ---\n{}", self.log_path().display(), tail(&self.log(), 6000));
        }
        self.kill9();
    }
}

/// Run the weft binary with `args` (no daemon involved), e.g. `weft validate FILE`.
pub fn weft_cmd(args: &[&str]) -> CmdOut {
    let mut c = Command::new(WEFT);
    c.args(args).env_remove("WEFT_ADMIN");
    run_cmd(&mut c, None, Duration::from_secs(30))
}

/// Accept a JSON list either bare (`[...]`) or wrapped in an object with one array field
/// (`{"services": [...]}`).
pub fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Object(m) => {
            let arrays: Vec<&Vec<Value>> = m.values().filter_map(|x| x.as_array()).collect();
            assert_eq!(arrays.len(), 1, "expected a JSON list (or an object holding one list), got {v}");
            arrays[0].clone()
        }
        _ => panic!("expected a JSON list, got {v}"),
    }
}

/// Count values by key (e.g. which backend answered).
pub fn tally<I: IntoIterator<Item = String>>(items: I) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

/// Extract `NAME` from a backend body `backend=NAME path=...`.
pub fn backend_name(body: &str) -> Option<String> {
    body.split_whitespace().find_map(|w| w.strip_prefix("backend=")).map(|s| s.to_string())
}

// ---------------------------------------------------------------------------------------------
// network namespaces
// ---------------------------------------------------------------------------------------------

/// A network namespace with lo up, /etc/netns/NAME/{resolv.conf,hosts}; removed on drop along with
/// every process still inside it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("wt-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let st = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(st.success(), "ip netns add {name} failed");
        let ns = Netns { name };
        let st = Command::new("ip")
            .args(["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(st.success(), "lo up in {}", ns.name);
        fs::create_dir_all(ns.etc_dir()).unwrap();
        ns.write_etc("resolv.conf", "nameserver 127.0.0.1\n");
        ns.write_etc("hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n");
        ns
    }
    pub fn etc_dir(&self) -> PathBuf {
        PathBuf::from(format!("/etc/netns/{}", self.name))
    }
    pub fn etc_file(&self, f: &str) -> PathBuf {
        self.etc_dir().join(f)
    }
    pub fn write_etc(&self, f: &str, content: &str) {
        fs::write(self.etc_file(f), content).unwrap();
    }
    pub fn read_etc(&self, f: &str) -> String {
        fs::read_to_string(self.etc_file(f)).unwrap_or_default()
    }
    pub fn ns(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // kill the processes we started in there (by pid), then delete the namespace
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = fs::remove_dir_all(self.etc_dir());
    }
}

// ---------------------------------------------------------------------------------------------
// multi-host mesh (tests/mesh.rs, tests/mesh_vpc.rs): a cluster CA, node configs with [tls] and
// [gossip], and reads of the mesh's admin views
// ---------------------------------------------------------------------------------------------

/// A node's certificate files, as `[tls]` names them.
#[derive(Clone, Debug)]
pub struct NodeTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A cluster CA made with `weft ca init` (in its own temp dir); `issue` signs node certificates
/// with `weft ca issue`.
pub struct MeshCa {
    pub tmp: TempDir,
    pub dir: PathBuf,
}

impl MeshCa {
    pub fn new(cluster: &str) -> MeshCa {
        let tmp = TempDir::new(&format!("ca-{cluster}"));
        let dir = tmp.join("ca");
        weft_cmd(&["ca", "init", "--dir", dir.to_str().unwrap(), "--cluster", cluster]).expect_ok();
        assert!(dir.join("ca.pem").exists() && dir.join("ca-key.pem").exists(), "weft ca init wrote no ca.pem/ca-key.pem in {}", dir.display());
        MeshCa { tmp, dir }
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `weft ca issue --dir CA --node NAME --out CA/nodes` → the node's `[tls]` files.
    pub fn issue(&self, node: &str) -> NodeTls {
        self.issue_with(node, &[])
    }

    /// [`MeshCa::issue`] with more arguments, e.g. `--namespace pay --group billing`.
    pub fn issue_with(&self, node: &str, args: &[&str]) -> NodeTls {
        let out = self.tmp.join("nodes");
        let mut all = vec!["ca", "issue", "--dir", self.dir.to_str().unwrap(), "--node", node, "--out", out.to_str().unwrap()];
        all.extend_from_slice(args);
        weft_cmd(&all).expect_ok();
        let t = NodeTls { ca: self.ca_pem(), cert: out.join(format!("{node}.pem")), key: out.join(format!("{node}-key.pem")) };
        assert!(t.cert.exists() && t.key.exists(), "weft ca issue wrote no {} / {}", t.cert.display(), t.key.display());
        t
    }
}

/// A UDP port free on `ip` right now (for a node's gossip listen address).
pub fn free_udp_port(ip: &str) -> u16 {
    let s = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind UDP {ip}:0: {e}"));
    s.local_addr().unwrap().port()
}

/// One node of a mesh: its name (= its certificate's), mode, gossip address and seeds.
#[derive(Clone, Debug)]
pub struct MeshNode {
    pub name: String,
    /// registry | proxy | combined
    pub mode: String,
    /// VIP /24 of this node: 127.255.N.0/24 (each node of a loopback mesh binds its own VIPs)
    pub vip_net: u8,
    /// gossip (QUIC, UDP) listen IP
    pub ip: String,
    /// gossip port; None = a free UDP port on `ip`, picked at each start attempt
    pub port: Option<u16>,
    pub join: Vec<String>,
    pub tls: NodeTls,
    pub netns: Option<String>,
    /// extra lines for the [gossip] table
    pub gossip_extra: String,
    /// extra lines for the [node] table (e.g. `drain_timeout_s = 3`)
    pub node_extra: String,
    /// TOML appended after the generated tables ([[service]], [[endpoint]] ...)
    pub extra: String,
    /// more environment variables for `weft run`
    pub env: Vec<(String, String)>,
    /// run on one CPU (`taskset -c 0`): weft's single-threaded runtime plus its control plane's
    pub one_cpu: bool,
}

impl MeshNode {
    pub fn new(name: &str, mode: &str, vip_net: u8, ip: &str, tls: NodeTls) -> MeshNode {
        MeshNode {
            name: name.into(),
            mode: mode.into(),
            vip_net,
            ip: ip.into(),
            port: None,
            join: Vec::new(),
            tls,
            netns: None,
            gossip_extra: String::new(),
            node_extra: String::new(),
            extra: String::new(),
            env: Vec::new(),
            one_cpu: false,
        }
    }
    pub fn one_cpu(mut self) -> MeshNode {
        self.one_cpu = true;
        self
    }
    pub fn env(mut self, key: &str, value: &str) -> MeshNode {
        self.env.push((key.into(), value.into()));
        self
    }
    /// Lines for the `[node]` table.
    pub fn node_extra(mut self, toml: &str) -> MeshNode {
        self.node_extra.push_str(toml);
        self.node_extra.push('\n');
        self
    }
    pub fn join(mut self, seed: &str) -> MeshNode {
        self.join.push(seed.to_string());
        self
    }
    pub fn port(mut self, port: u16) -> MeshNode {
        self.port = Some(port);
        self
    }
    pub fn netns(mut self, ns: &str) -> MeshNode {
        self.netns = Some(ns.to_string());
        self
    }
    pub fn extra(mut self, toml: &str) -> MeshNode {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }
}

/// The TOML of a mesh node (DNS responder off: the tests call VIPs directly).
pub fn mesh_toml(n: &MeshNode, listen: &str, data_dir: &Path, admin_port: u16) -> String {
    let join: Vec<String> = n.join.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[node]\nname = \"{}\"\nmode = \"{}\"\ndata_dir = \"{}\"\n{}\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n\
         [dns]\nenabled = false\nvip_cidr = \"{}\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [gossip]\nlisten = \"{listen}\"\njoin = [{}]\n{}\n\n{}",
        n.name,
        n.mode,
        data_dir.display(),
        n.node_extra,
        vip_cidr(n.vip_net),
        n.tls.ca.display(),
        n.tls.cert.display(),
        n.tls.key.display(),
        join.join(", "),
        n.gossip_extra,
        n.extra
    )
}

impl Weft {
    /// Start one mesh node and wait until it is ready (retrying with fresh ports, like `start`,
    /// when a picked port was taken meanwhile).
    pub fn start_mesh(n: &MeshNode) -> Weft {
        for attempt in 1..=3 {
            let mut w = Weft::spawn_mesh(n);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && w.try_exit().is_none() && w.get("/v1/status").map(|r| r.status != 200).unwrap_or(true) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if attempt < 3 && w.try_exit().is_some() && w.log().contains("Address already in use") {
                loud(&format!("mesh node {} start attempt {attempt}: a port picked for it was taken meanwhile; retrying", n.name));
                continue;
            }
            w.wait_ready();
            return w;
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Write a mesh node's config and start it without waiting.
    pub fn spawn_mesh(n: &MeshNode) -> Weft {
        let mut opts = WeftOpts::new(n.vip_net);
        opts.netns = n.netns.clone();
        opts.env = n.env.clone();
        opts.one_cpu = n.one_cpu;
        opts.dns_enabled = false;
        let dir = TempDir::new(&format!("mesh-{}", n.name));
        let data_dir = dir.join("data");
        let admin_port = free_port();
        let port = n.port.unwrap_or_else(|| free_udp_port(&n.ip));
        let listen = format!("{}:{port}", n.ip);
        let config = dir.join("weft.toml");
        fs::write(&config, mesh_toml(n, &listen, &data_dir, admin_port)).unwrap();
        let mut w = Weft {
            opts,
            dir,
            config,
            data_dir,
            admin: format!("127.0.0.1:{admin_port}"),
            admin_port,
            dns_listen: String::new(),
            child: None,
            runs: 0,
        };
        w.spawn();
        w
    }

    /// Is the process still running?
    pub fn running(&mut self) -> bool {
        self.child.is_some() && self.try_exit().is_none()
    }

    /// The gossip address this node advertises (GET /v1/status `mesh.address`).
    pub fn gossip_addr(&self) -> String {
        let st = self.get_json("/v1/status");
        st["mesh"]["address"].as_str().unwrap_or_else(|| panic!("GET /v1/status has no mesh.address: {st}")).to_string()
    }

    /// GET /v1/status `node.generation`.
    pub fn generation(&self) -> u64 {
        let st = self.get_json("/v1/status");
        st["node"]["generation"].as_u64().unwrap_or_else(|| panic!("GET /v1/status has no node.generation: {st}"))
    }

    /// GET /v1/members, or None when the node does not answer 200 (yet).
    pub fn try_members(&self) -> Option<Vec<Value>> {
        let r = self.get("/v1/members").ok().filter(|r| r.status == 200)?;
        serde_json::from_slice::<Value>(&r.body).ok().map(|v| as_list(&v))
    }

    pub fn members(&self) -> Vec<Value> {
        as_list(&self.get_json("/v1/members"))
    }

    /// The entries named `name` in this node's member list (a healthy mesh has exactly one).
    pub fn member_entries(&self, name: &str) -> Vec<Value> {
        self.try_members().unwrap_or_default().into_iter().filter(|m| m["name"].as_str() == Some(name)).collect()
    }

    /// `state` of member `name` as this node sees it (None: not listed, or no answer).
    pub fn member_state(&self, name: &str) -> Option<String> {
        let e = self.member_entries(name);
        e.first().and_then(|m| m["state"].as_str()).map(|s| s.to_string())
    }

    /// True when this node lists exactly `names`, each once and alive.
    pub fn sees_all_alive(&self, names: &[&str]) -> bool {
        let Some(list) = self.try_members() else { return false };
        let mut got: Vec<(String, String)> =
            list.iter().map(|m| (m["name"].as_str().unwrap_or("").to_string(), m["state"].as_str().unwrap_or("").to_string())).collect();
        got.sort();
        let mut want: Vec<(String, String)> = names.iter().map(|n| (n.to_string(), "alive".to_string())).collect();
        want.sort();
        got == want
    }

    /// A `mesh.counters` figure from GET /v1/status.
    pub fn mesh_counter(&self, counter: &str) -> u64 {
        let st = self.get_json("/v1/status");
        st["mesh"]["counters"][counter].as_u64().unwrap_or_else(|| panic!("GET /v1/status has no mesh.counters.{counter}: {st}"))
    }

    /// `namespace/name` of every service this node knows, sorted.
    pub fn service_names(&self) -> Vec<String> {
        let Some(r) = self.get("/v1/services").ok().filter(|r| r.status == 200) else { return Vec::new() };
        let mut v: Vec<String> = as_list(&r.json())
            .iter()
            .map(|s| format!("{}/{}", s["namespace"].as_str().unwrap_or("?"), s["name"].as_str().unwrap_or("?")))
            .collect();
        v.sort();
        v
    }

    /// Endpoints of one service as this node knows them.
    pub fn endpoints_of(&self, ns: &str, svc: &str) -> Vec<Value> {
        let Some(r) = self.get(&format!("/v1/endpoints?namespace={ns}&service={svc}")).ok().filter(|r| r.status == 200) else {
            return Vec::new();
        };
        as_list(&r.json())
    }

    /// Sorted ids of a service's endpoints as this node knows them.
    pub fn endpoint_ids(&self, ns: &str, svc: &str) -> Vec<String> {
        let mut v: Vec<String> = self.endpoints_of(ns, svc).iter().filter_map(|e| e["id"].as_str().map(|s| s.to_string())).collect();
        v.sort();
        v
    }

    /// A figure of one endpoint in GET /v1/stats (`connections`, `requests`, `failures`); 0 when
    /// the endpoint has no figures yet.
    pub fn endpoint_stat(&self, ns: &str, svc: &str, id: &str, field: &str) -> u64 {
        let stats = self.get_json("/v1/stats");
        stats[format!("{ns}/{svc}")]["endpoints"]
            .as_array()
            .and_then(|eps| eps.iter().find(|e| e["id"].as_str() == Some(id)))
            .and_then(|e| e[field].as_u64())
            .unwrap_or(0)
    }

    /// The route of alias `dns_name:port` right now, if any.
    pub fn route_now(&self, dns_name: &str, port: u16) -> Option<Value> {
        let r = self.get("/v1/routes").ok().filter(|r| r.status == 200)?;
        as_list(&r.json()).into_iter().find(|r| r["dns_name"].as_str() == Some(dns_name) && r["port"].as_u64() == Some(port as u64))
    }

    /// `healthy_endpoints` of alias `dns_name:port` right now (None: no such route).
    pub fn healthy_endpoints(&self, dns_name: &str, port: u16) -> Option<u64> {
        self.route_now(dns_name, port).and_then(|r| r["healthy_endpoints"].as_u64())
    }
}

/// Polls `f` for the whole of `period` and panics (with `what` and the last detail `f` gave) the
/// first time it does not hold: for "X stays true / never happens" checks.
pub fn holds_for(what: &str, period: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + period;
    loop {
        if let Err(detail) = f() {
            panic!("{what} stopped holding: {detail}");
        }
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Weft {
    /// The `[gossip] listen` address written in this node's config file.
    pub fn gossip_addr_from_config(&self) -> String {
        let config = fs::read_to_string(&self.config).unwrap();
        let gossip = config.split("[gossip]").nth(1).unwrap_or_else(|| panic!("no [gossip] table in {}", self.config.display()));
        let line = gossip.lines().find(|l| l.trim_start().starts_with("listen")).expect("[gossip] listen");
        line.split('"').nth(1).expect("quoted listen address").to_string()
    }

    /// Rewrite `[gossip] listen` (for the next `restart`).
    pub fn set_gossip_listen(&self, old: &str, new: &str) {
        let config = fs::read_to_string(&self.config).unwrap();
        let (from, to) = (format!("listen = \"{old}\""), format!("listen = \"{new}\""));
        assert!(config.contains(&from), "{} has no `{from}`:\n{config}", self.config.display());
        fs::write(&self.config, config.replace(&from, &to)).unwrap();
    }
}

impl Weft {
    /// `node.name` from GET /v1/status, with the admin address (for messages).
    pub fn node_name(&self) -> String {
        let name = self.get("/v1/status").ok().and_then(|r| r.json()["node"]["name"].as_str().map(|s| s.to_string()));
        format!("{} ({})", name.unwrap_or_else(|| "?".into()), self.admin)
    }
}
