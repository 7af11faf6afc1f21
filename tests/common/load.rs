//! A std-only HTTP/1.1 load client for the zero-dropped-requests tests (tests/failover.rs,
//! tests/resilience.rs) and for benches (`#[path = "../tests/common/load.rs"] mod load;`), so it
//! depends on nothing else in tests/common.
//!
//! `workers` threads each keep one keep-alive connection per target and issue requests back to
//! back (closed loop; optionally paced to a total `rate`). With one target that is "through weft";
//! with several, each worker round-robins its requests over the list, the way a client that got a
//! static address list from DNS would. Failures are not retried (a client-visible failure is what
//! we count): an I/O error or a status outside `accept` is one failed request, the connection is
//! dropped, and the next request reconnects.
//!
//! `Load::start` returns at once so the calling thread can trigger events (kill, stop, restart)
//! while the load runs, watching live figures (`total`, `failed`); `Load::join` waits for the end
//! (`duration`, or `stop()`) and returns a `Report`. Dropping a `Load` stops it, so a test that
//! panics mid-run does not leave 100 threads hammering a port.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to send, where, how hard and for how long.
#[derive(Clone, Debug)]
pub struct Spec {
    /// `host:port` targets; each worker round-robins its requests over them.
    pub targets: Vec<String>,
    /// concurrent connections (threads)
    pub workers: usize,
    pub duration: Duration,
    pub method: String,
    pub path: String,
    /// request body (sent with Content-Length; empty = none, or `Content-Length: 0` for POST/PUT/PATCH)
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// whole-request timeout: connect + send + full response
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// accepted statuses, inclusive ranges; default 200..=299
    pub accept: Vec<(u16, u16)>,
    /// total requests per second over all workers (None: as fast as answers come)
    pub rate: Option<f64>,
    /// pause of a worker after a failure, so a refused port does not turn into a busy loop that
    /// counts a million failures a second (a real client backs off too)
    pub fail_pause: Duration,
    /// count the values of this response header (e.g. `x-backend`) in `Report::tally`
    pub tally_header: Option<String>,
    /// `header: prefix`: sent with `-w{worker}-{n}` appended, a value unique to each request, so a
    /// backend can log which requests it saw
    pub id_header: Option<String>,
}

impl Spec {
    pub fn new(targets: &[&str]) -> Spec {
        Spec {
            targets: targets.iter().map(|s| s.to_string()).collect(),
            workers: 100,
            duration: Duration::from_secs(20),
            method: "GET".into(),
            path: "/".into(),
            body: Vec::new(),
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            accept: vec![(200, 299)],
            rate: None,
            fail_pause: Duration::from_millis(10),
            tally_header: None,
            id_header: None,
        }
    }
    pub fn workers(mut self, n: usize) -> Spec {
        self.workers = n;
        self
    }
    pub fn duration(mut self, d: Duration) -> Spec {
        self.duration = d;
        self
    }
    pub fn method(mut self, m: &str) -> Spec {
        self.method = m.into();
        self
    }
    pub fn path(mut self, p: &str) -> Spec {
        self.path = p.into();
        self
    }
    pub fn body(mut self, b: &[u8]) -> Spec {
        self.body = b.to_vec();
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Spec {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn timeout(mut self, d: Duration) -> Spec {
        self.timeout = d;
        self
    }
    /// Accept exactly these statuses (replaces the default 2xx).
    pub fn accept(mut self, statuses: &[u16]) -> Spec {
        self.accept = statuses.iter().map(|&s| (s, s)).collect();
        self
    }
    pub fn rate(mut self, per_s: f64) -> Spec {
        self.rate = Some(per_s);
        self
    }
    pub fn tally(mut self, header: &str) -> Spec {
        self.tally_header = Some(header.to_ascii_lowercase());
        self
    }
    /// Each request carries `header: {prefix}-w{worker}-{n}`.
    pub fn request_ids(mut self, header: &str, prefix: &str) -> Spec {
        self.id_header = Some(format!("{header}: {prefix}"));
        self
    }
    fn accepted(&self, status: u16) -> bool {
        self.accept.iter().any(|&(lo, hi)| status >= lo && status <= hi)
    }
}

/// The figures of one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub total: u64,
    pub failed: u64,
    /// failures by kind, e.g. `status 502 (x-weft-error: connect-failed)`, `read: eof`
    pub errors: BTreeMap<String, u64>,
    /// latencies of accepted responses, in microseconds, sorted
    pub latencies_us: Vec<u64>,
    /// per second since the start (by request start): (requests, failures)
    pub timeline: Vec<(u64, u64)>,
    /// the first failures, with the second they started at
    pub first_failures: Vec<(f64, String)>,
    /// values of `Spec::tally_header` in responses (accepted or not)
    pub tally: BTreeMap<String, u64>,
    /// TCP connections opened
    pub connects: u64,
    pub elapsed: Duration,
}

impl Report {
    /// Latency at percentile `p` (0..=100) of accepted responses.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let n = self.latencies_us.len();
        let i = ((p / 100.0) * n as f64).ceil() as usize;
        Duration::from_micros(self.latencies_us[i.clamp(1, n) - 1])
    }
    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }
    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.latencies_us.last().copied().unwrap_or(0))
    }
    pub fn rps(&self) -> f64 {
        self.total as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line of figures (and the error kinds, failing seconds and first failures when there
    /// are failures).
    pub fn summary(&self, label: &str) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let pct = if self.total > 0 { 100.0 * self.failed as f64 / self.total as f64 } else { 0.0 };
        let mut s = format!(
            "{label}: total={} failed={} ({pct:.3}%) rps={:.0} p50={:.2}ms p99={:.2}ms max={:.2}ms connects={} over {:.1}s",
            self.total,
            self.failed,
            self.rps(),
            ms(self.p50()),
            ms(self.p99()),
            ms(self.max()),
            self.connects,
            self.elapsed.as_secs_f64()
        );
        if !self.tally.is_empty() {
            s.push_str(&format!("\n  by {}: {:?}", "tally header", self.tally));
        }
        if !self.errors.is_empty() {
            let kinds: Vec<String> = self.errors.iter().map(|(k, v)| format!("{k} x{v}")).collect();
            s.push_str(&format!("\n  errors: {}", kinds.join(", ")));
            let secs: Vec<String> =
                self.timeline.iter().enumerate().filter(|(_, (_, f))| *f > 0).map(|(i, (_, f))| format!("{i}s:{f}")).collect();
            s.push_str(&format!("\n  failures by second: {}", secs.join(" ")));
            let first: Vec<String> = self.first_failures.iter().take(5).map(|(t, e)| format!("{t:.3}s {e}")).collect();
            s.push_str(&format!("\n  first failures: {}", first.join("; ")));
        }
        s
    }

    /// Prints `label: total=… failed=… p50=…ms p99=…ms max=…ms` (+ error kinds) to stderr.
    pub fn print(&self, label: &str) {
        eprintln!("{}", self.summary(label));
    }

    /// Requests (and failures) per second, one line: `0s:4512 1s:4620 2s:4480/3 …`.
    pub fn timeline_line(&self) -> String {
        let v: Vec<String> = self
            .timeline
            .iter()
            .enumerate()
            .map(|(i, (n, f))| if *f > 0 { format!("{i}s:{n}/{f}") } else { format!("{i}s:{n}") })
            .collect();
        v.join(" ")
    }

    /// Requests started in seconds [from, to) of the run.
    pub fn requests_between(&self, from: usize, to: usize) -> u64 {
        self.timeline.iter().skip(from).take(to.saturating_sub(from)).map(|(n, _)| n).sum()
    }
}

/// Live figures shared by the workers and the controlling thread.
struct Shared {
    stop: Arc<AtomicBool>,
    total: AtomicU64,
    failed: AtomicU64,
    first_failures: Mutex<Vec<(f64, String)>>,
}

/// What one worker hands back.
#[derive(Default)]
struct WorkerOut {
    total: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
    timeline: Vec<(u64, u64)>,
    tally: BTreeMap<String, u64>,
    connects: u64,
}

/// A run in progress.
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<WorkerOut>>,
    started: Instant,
}

impl Load {
    /// Starts the workers and returns at once.
    pub fn start(spec: Spec) -> Load {
        assert!(!spec.targets.is_empty(), "load: no targets");
        assert!(spec.workers > 0, "load: no workers");
        let addrs: Vec<SocketAddr> = spec
            .targets
            .iter()
            .map(|t| t.to_socket_addrs().ok().and_then(|mut a| a.next()).unwrap_or_else(|| panic!("load: bad target {t}")))
            .collect();
        let shared = Arc::new(Shared {
            stop: Arc::new(AtomicBool::new(false)),
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_failures: Mutex::new(Vec::new()),
        });
        let spec = Arc::new(spec);
        let addrs = Arc::new(addrs);
        let started = Instant::now();
        let threads = (0..spec.workers)
            .map(|i| {
                let (spec, addrs, shared) = (spec.clone(), addrs.clone(), shared.clone());
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .stack_size(256 * 1024)
                    .spawn(move || worker(i, &spec, &addrs, &shared, started))
                    .expect("spawn load worker")
            })
            .collect();
        Load { shared, threads, started }
    }

    /// Requests completed so far (accepted or not).
    pub fn total(&self) -> u64 {
        self.shared.total.load(Ordering::Relaxed)
    }
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
    /// Ends the run early (workers finish the request they are in).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
    /// The stop flag, for another thread or a callback.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.shared.stop.clone()
    }
    /// Waits (bounded) until `n` requests have completed; false on timeout.
    pub fn wait_total(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.total() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
    /// Sleeps until `at` after the start of the run (for scheduling events at fixed offsets).
    pub fn sleep_until(&self, at: Duration) {
        let now = self.started.elapsed();
        if at > now {
            std::thread::sleep(at - now);
        }
    }

    /// Waits for the end of the run and merges the workers' figures.
    pub fn join(mut self) -> Report {
        let threads = std::mem::take(&mut self.threads);
        let mut r = Report::default();
        let mut lat: Vec<Vec<u64>> = Vec::new();
        for t in threads {
            let w = t.join().expect("load worker panicked");
            r.total += w.total;
            r.failed += w.failed;
            r.connects += w.connects;
            for (k, v) in w.errors {
                *r.errors.entry(k).or_insert(0) += v;
            }
            for (k, v) in w.tally {
                *r.tally.entry(k).or_insert(0) += v;
            }
            if r.timeline.len() < w.timeline.len() {
                r.timeline.resize(w.timeline.len(), (0, 0));
            }
            for (i, (n, f)) in w.timeline.into_iter().enumerate() {
                r.timeline[i].0 += n;
                r.timeline[i].1 += f;
            }
            lat.push(w.latencies_us);
        }
        r.elapsed = self.started.elapsed();
        r.latencies_us = lat.concat();
        r.latencies_us.sort_unstable();
        r.first_failures = self.shared.first_failures.lock().unwrap().clone();
        r
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }
}

/// Runs `spec` to its end.
pub fn run(spec: Spec) -> Report {
    Load::start(spec).join()
}

/// Runs `spec`, calling `events` on this thread while the load runs (it may `stop()` early), then
/// waits for the end.
pub fn run_with(spec: Spec, events: impl FnOnce(&Load)) -> Report {
    let load = Load::start(spec);
    events(&load);
    load.join()
}

// ---------------------------------------------------------------------------------------------
// the worker
// ---------------------------------------------------------------------------------------------

fn worker(index: usize, spec: &Spec, addrs: &[SocketAddr], shared: &Shared, started: Instant) -> WorkerOut {
    let mut out = WorkerOut::default();
    let mut conns: Vec<Option<Conn>> = addrs.iter().map(|_| None).collect();
    let mut next_target = index % addrs.len();
    let head_only = spec.method.eq_ignore_ascii_case("HEAD");
    let requests: Vec<Vec<u8>> = spec.targets.iter().map(|t| request_bytes(spec, t)).collect();
    // pacing: this worker's share of `rate`, starting at a staggered offset
    let interval = spec.rate.map(|r| Duration::from_secs_f64(spec.workers as f64 / r.max(1e-6)));
    let mut next_at = started + interval.map(|iv| iv.mul_f64(index as f64 / spec.workers as f64)).unwrap_or_default();
    loop {
        if shared.stop.load(Ordering::Relaxed) || started.elapsed() >= spec.duration {
            break;
        }
        if let Some(iv) = interval {
            let now = Instant::now();
            if next_at > now {
                std::thread::sleep(next_at - now);
            }
            next_at = next_at.max(now) + iv;
        }
        let t = next_target;
        next_target = (next_target + 1) % addrs.len();
        let begin = Instant::now();
        let second = begin.duration_since(started).as_secs() as usize;
        let deadline = begin + spec.timeout;
        let unique;
        let req = match &spec.id_header {
            Some(h) => {
                let mut r = request_bytes(spec, &spec.targets[t]);
                let line = format!("{h}-w{index}-{}\r\n", out.total);
                let at = r.windows(2).position(|w| w == b"\r\n").map_or(0, |p| p + 2);
                r.splice(at..at, line.into_bytes());
                unique = r;
                &unique
            }
            None => &requests[t],
        };
        let result = exchange(&mut conns[t], &mut out.connects, addrs[t], spec, req, head_only, deadline);
        out.total += 1;
        if out.timeline.len() <= second {
            out.timeline.resize(second + 1, (0, 0));
        }
        out.timeline[second].0 += 1;
        shared.total.fetch_add(1, Ordering::Relaxed);
        let failure = match result {
            Ok(resp) => {
                if let Some(v) = resp.tally {
                    *out.tally.entry(v).or_insert(0) += 1;
                }
                if !resp.keep_alive {
                    conns[t] = None;
                }
                if spec.accepted(resp.status) {
                    out.latencies_us.push(begin.elapsed().as_micros() as u64);
                    None
                } else {
                    Some(match resp.weft_error {
                        Some(e) => format!("status {} (x-weft-error: {e})", resp.status),
                        None => format!("status {}", resp.status),
                    })
                }
            }
            Err(e) => {
                conns[t] = None;
                Some(e)
            }
        };
        if let Some(kind) = failure {
            out.failed += 1;
            out.timeline[second].1 += 1;
            shared.failed.fetch_add(1, Ordering::Relaxed);
            {
                let mut ff = shared.first_failures.lock().unwrap();
                if ff.len() < 20 {
                    ff.push((begin.duration_since(started).as_secs_f64(), format!("{} {kind}", spec.targets[t])));
                }
            }
            *out.errors.entry(kind).or_insert(0) += 1;
            std::thread::sleep(spec.fail_pause);
        }
    }
    out
}

fn request_bytes(spec: &Spec, target: &str) -> Vec<u8> {
    let mut req = format!("{} {} HTTP/1.1\r\nHost: {target}\r\n", spec.method, spec.path);
    for (k, v) in &spec.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let m = spec.method.to_ascii_uppercase();
    if !spec.body.is_empty() || m == "POST" || m == "PUT" || m == "PATCH" {
        req.push_str(&format!("Content-Length: {}\r\n", spec.body.len()));
    }
    req.push_str("\r\n");
    let mut b = req.into_bytes();
    b.extend_from_slice(&spec.body);
    b
}

/// What we keep of a response.
struct Answer {
    status: u16,
    keep_alive: bool,
    weft_error: Option<String>,
    tally: Option<String>,
}

/// One request on the worker's connection to this target (connecting first when there is none).
/// Errors are returned as their kind, e.g. `connect: refused`, `read: eof`.
fn exchange(
    slot: &mut Option<Conn>,
    connects: &mut u64,
    addr: SocketAddr,
    spec: &Spec,
    req: &[u8],
    head_only: bool,
    deadline: Instant,
) -> Result<Answer, String> {
    if slot.is_none() {
        let ct = spec.connect_timeout.min(deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(1));
        let s = TcpStream::connect_timeout(&addr, ct).map_err(|e| format!("connect: {}", kind(&e)))?;
        let _ = s.set_nodelay(true);
        *connects += 1;
        *slot = Some(Conn { s, buf: Vec::with_capacity(16 * 1024), reused: false });
    }
    let conn = slot.as_mut().unwrap();
    let reused = conn.reused;
    conn.reused = true;
    let tag = if reused { " (reused connection)" } else { "" };
    conn.s.set_write_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))).ok();
    conn.s.write_all(req).map_err(|e| format!("write: {}{tag}", kind(&e)))?;
    conn.read_response(head_only, deadline, spec.tally_header.as_deref()).map_err(|e| format!("read: {}{tag}", kind(&e)))
}

fn kind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout".into(),
        io::ErrorKind::UnexpectedEof => "eof".into(),
        io::ErrorKind::ConnectionRefused => "refused".into(),
        io::ErrorKind::ConnectionReset => "reset".into(),
        io::ErrorKind::ConnectionAborted => "aborted".into(),
        io::ErrorKind::BrokenPipe => "broken pipe".into(),
        io::ErrorKind::InvalidData => format!("bad response ({e})"),
        k => format!("{k:?}"),
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "eof")
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

struct Conn {
    s: TcpStream,
    /// bytes read but not consumed yet
    buf: Vec<u8>,
    reused: bool,
}

impl Conn {
    /// Reads more bytes into `buf` before `deadline`; Err(eof) when the peer closed.
    fn fill(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request timeout"));
        }
        self.s.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return Err(eof()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes sure `buf` holds at least `n` bytes.
    fn need(&mut self, n: usize, deadline: Instant) -> io::Result<()> {
        while self.buf.len() < n {
            self.fill(deadline)?;
        }
        Ok(())
    }

    /// Position of the first CRLF at or after `from`, reading more as needed.
    fn line_end(&mut self, from: usize, deadline: Instant) -> io::Result<usize> {
        loop {
            if let Some(i) = self.buf[from.min(self.buf.len())..].windows(2).position(|w| w == b"\r\n") {
                return Ok(from + i);
            }
            if self.buf.len() - from > 64 * 1024 {
                return Err(bad("line over 64 KiB"));
            }
            self.fill(deadline)?;
        }
    }

    fn read_response(&mut self, head_only: bool, deadline: Instant, tally: Option<&str>) -> io::Result<Answer> {
        loop {
            // the head
            let end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
                if self.buf.len() > 64 * 1024 {
                    return Err(bad("response head over 64 KiB"));
                }
                self.fill(deadline)?;
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or("");
            let mut parts = status_line.split_whitespace();
            let version = parts.next().unwrap_or("");
            let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad(&format!("status line {status_line:?}")))?;
            let (mut length, mut chunked, mut close, mut weft_error, mut tallied) = (None, false, version == "HTTP/1.0", None, None);
            for l in lines {
                let Some((k, v)) = l.split_once(':') else { continue };
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = Some(v.parse::<usize>().map_err(|_| bad("content-length"))?),
                    "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                    "connection" => {
                        let v = v.to_ascii_lowercase();
                        if v.contains("close") {
                            close = true;
                        } else if v.contains("keep-alive") {
                            close = false;
                        }
                    }
                    "x-weft-error" => weft_error = Some(v.to_string()),
                    _ => {}
                }
                if Some(k.as_str()) == tally {
                    tallied = Some(v.to_string());
                }
            }
            // interim responses (100 Continue, 103) are followed by the real one
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let mut keep_alive = !close;
            if !(head_only || status == 204 || status == 304 || (100..200).contains(&status)) {
                if chunked {
                    self.skip_chunked(deadline)?;
                } else if let Some(n) = length {
                    self.need(n, deadline)?;
                    self.buf.drain(..n);
                } else {
                    // delimited by the close of the connection
                    loop {
                        match self.fill(deadline) {
                            Ok(()) => self.buf.clear(),
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                            Err(e) => return Err(e),
                        }
                    }
                    keep_alive = false;
                }
            }
            return Ok(Answer { status, keep_alive, weft_error, tally: tallied });
        }
    }

    /// Consumes a chunked body (and its trailers).
    fn skip_chunked(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            let le = self.line_end(0, deadline)?;
            let line = String::from_utf8_lossy(&self.buf[..le]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).map_err(|_| bad("chunk size"))?;
            self.buf.drain(..le + 2);
            if size == 0 {
                // trailers, up to an empty line
                loop {
                    let le = self.line_end(0, deadline)?;
                    self.buf.drain(..le + 2);
                    if le == 0 {
                        return Ok(());
                    }
                }
            }
            self.need(size + 2, deadline)?;
            self.buf.drain(..size + 2);
        }
    }
}
