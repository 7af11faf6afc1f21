//! Access logs: one record per request (HTTP/1.1, HTTP/2, gRPC) or connection (TCP), with the
//! fields ECS Service Connect's Envoy access logs carry.
//!
//! The request path only fills a [`Record`] and offers it to a bounded queue ([`AccessLog::log`]:
//! never blocks, never formats); the `weft-access-log` writer thread formats and writes. When the
//! queue is full, or the destination fails (a full or read-only disk), records are dropped and
//! counted in [`AccessFigures`] — a slow disk never slows requests.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// `[access_log]`: the node's access log. Off unless `enabled` (every service) or a service sets
/// `access_log = true`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Log every service's requests unless the service says `access_log = false`.
    pub enabled: bool,
    /// A file (appended to), or `-` for standard output.
    pub path: PathBuf,
    pub format: AccessFormat,
    /// The share of requests logged, 0.0..=1.0.
    pub sample: f64,
    /// Records waiting for the writer; beyond this they are dropped (and counted).
    pub queue: usize,
    /// Add an `x-request-id` to logged requests that come without one, so the logs of the
    /// calling and the called node join up (an id the client sent is kept as it is).
    pub request_id: bool,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig { enabled: false, path: PathBuf::from("-"), format: AccessFormat::Json, sample: 1.0, queue: 8192, request_id: true }
    }
}

impl AccessLogConfig {
    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        if !(0.0..=1.0).contains(&self.sample) {
            return Some(format!("sample = {}: must be between 0.0 and 1.0", self.sample));
        }
        if self.queue == 0 {
            return Some("queue = 0: must be at least 1".into());
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    /// One JSON object a line.
    #[default]
    Json,
    /// Envoy's default text format, space-separated.
    Text,
}

/// The log's own figures, read by the admin API.
#[derive(Default, Debug)]
pub struct AccessFigures {
    pub written: AtomicU64,
    /// Records lost: queue full, or the destination failed.
    pub dropped: AtomicU64,
    /// Requests not logged by sampling.
    pub sampled_out: AtomicU64,
}

/// [`AccessFigures`] as read at one moment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessReport {
    pub written: u64,
    pub dropped: u64,
    pub sampled_out: u64,
}

impl AccessFigures {
    pub fn report(&self) -> AccessReport {
        AccessReport { written: self.written.load(Relaxed), dropped: self.dropped.load(Relaxed), sampled_out: self.sampled_out.load(Relaxed) }
    }
}

/// One request or connection, as the request path hands it over: no formatting done yet.
#[derive(Debug)]
pub struct Record {
    /// Unix time in microseconds when the request (connection) began.
    pub start_us: u64,
    pub duration: Duration,
    pub protocol: &'static str,
    pub namespace: Arc<str>,
    pub service: Arc<str>,
    pub method: String,
    pub path: String,
    /// 0 for a TCP connection or a request that got no response.
    pub status: u16,
    /// The weft error class (`x-weft-error`), `-` when none.
    pub flags: &'static str,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The endpoint that answered: id, node, address.
    pub upstream: Option<(String, String, std::net::SocketAddr)>,
    pub attempts: u32,
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
    /// The client's address (ip:port), as the listener saw it.
    pub downstream: Option<std::net::SocketAddr>,
}

/// The handle the request path holds (through each service's route).
pub struct AccessLog {
    tx: SyncSender<Record>,
    figures: Arc<AccessFigures>,
    /// Log one in every `every` requests (1 = all).
    every: u64,
    seen: AtomicU64,
    pub default_on: bool,
    pub request_id: bool,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("every", &self.every).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error("access log {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("starting the access log writer thread: {0}")]
    Thread(std::io::Error),
}

impl AccessLog {
    /// Opens the destination and starts the writer thread. An unopenable file is an error here
    /// (the operator should know at start); a destination that fails later only drops records.
    pub fn start(cfg: &AccessLogConfig, figures: Arc<AccessFigures>) -> Result<Arc<AccessLog>, AccessLogError> {
        let out: Box<dyn Write + Send> = if cfg.path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&cfg.path).map_err(|source| AccessLogError::Open { path: cfg.path.clone(), source })?;
            Box::new(f)
        };
        let (tx, rx) = sync_channel(cfg.queue.max(1));
        let (format, fig) = (cfg.format, figures.clone());
        std::thread::Builder::new().name("weft-access-log".into()).spawn(move || writer(rx, out, format, &fig)).map_err(AccessLogError::Thread)?;
        let every = if cfg.sample <= 0.0 { u64::MAX } else { (1.0 / cfg.sample).round().max(1.0) as u64 };
        Ok(Arc::new(AccessLog { tx, figures, every, seen: AtomicU64::new(0), default_on: cfg.enabled, request_id: cfg.request_id }))
    }

    /// Whether this request is to be logged (sampling); decide before building the record.
    pub fn wants(&self) -> bool {
        if self.every == 1 {
            return true;
        }
        let n = self.seen.fetch_add(1, Relaxed);
        let keep = self.every != u64::MAX && n.is_multiple_of(self.every);
        if !keep {
            self.figures.sampled_out.fetch_add(1, Relaxed);
        }
        keep
    }

    /// Offers a record to the writer; never waits.
    pub fn log(&self, r: Record) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(r) {
            self.figures.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// A service's way into the log: the writer's queue and the service's names, shared by its
/// records without copying them.
#[derive(Debug, Clone)]
pub struct ServiceLog {
    pub log: Arc<AccessLog>,
    pub namespace: Arc<str>,
    pub service: Arc<str>,
}

/// A random request id, UUID-v4 shaped (what Envoy generates).
pub fn new_request_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = (u128::from_be_bytes(b) & !(0xfu128 << 76) & !(0x3u128 << 62)) | (0x4u128 << 76) | (0x2u128 << 62);
    let s = format!("{h:032x}");
    format!("{}-{}-{}-{}-{}", &s[..8], &s[8..12], &s[12..16], &s[16..20], &s[20..])
}

/// Unix microseconds of an instant of the tokio clock.
pub fn unix_us(at: tokio::time::Instant) -> u64 {
    let ago = at.elapsed();
    SystemTime::now().checked_sub(ago).and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_micros() as u64)
}

/// The writer thread: formats each record and writes it; a failed write drops the record (and
/// the ones batched with it) and counts them.
fn writer(rx: Receiver<Record>, mut out: Box<dyn Write + Send>, format: AccessFormat, fig: &AccessFigures) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv() {
        let mut n = 0u64;
        let mut next = Some(first);
        // Batch what is already queued into one write.
        while let Some(r) = next {
            format_record(&mut buf, &r, format);
            n += 1;
            next = if buf.len() < 60 * 1024 { rx.try_recv().ok() } else { None };
        }
        match out.write_all(&buf).and_then(|()| out.flush()) {
            Ok(()) => fig.written.fetch_add(n, Relaxed),
            Err(_) => fig.dropped.fetch_add(n, Relaxed),
        };
        buf.clear();
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    start_time: String,
    method: &'a str,
    path: &'a str,
    protocol: &'a str,
    namespace: &'a str,
    service: &'a str,
    response_code: u16,
    response_flags: &'a str,
    bytes_received: u64,
    bytes_sent: u64,
    duration_ms: f64,
    upstream_host: Option<String>,
    upstream_endpoint: Option<&'a str>,
    upstream_node: Option<&'a str>,
    attempts: u32,
    x_request_id: Option<&'a str>,
    traceparent: Option<&'a str>,
    downstream_address: Option<String>,
}

pub fn format_record(buf: &mut Vec<u8>, r: &Record, format: AccessFormat) {
    let start = rfc3339_us(r.start_us);
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    match format {
        AccessFormat::Json => {
            let line = JsonLine {
                start_time: start,
                method: &r.method,
                path: &r.path,
                protocol: r.protocol,
                namespace: &r.namespace,
                service: &r.service,
                response_code: r.status,
                response_flags: r.flags,
                bytes_received: r.bytes_in,
                bytes_sent: r.bytes_out,
                duration_ms: r.duration.as_secs_f64() * 1000.0,
                upstream_host: r.upstream.as_ref().map(|u| u.2.to_string()),
                upstream_endpoint: r.upstream.as_ref().map(|u| &*u.0),
                upstream_node: r.upstream.as_ref().map(|u| &*u.1),
                attempts: r.attempts,
                x_request_id: r.request_id.as_deref(),
                traceparent: r.traceparent.as_deref(),
                downstream_address: r.downstream.map(|a| a.to_string()),
            };
            let _ = serde_json::to_writer(&mut *buf, &line);
            buf.push(b'\n');
        }
        AccessFormat::Text => {
            let (host, ep, node) = match &r.upstream {
                Some((id, node, addr)) => (addr.to_string(), id.to_string(), node.to_string()),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let method = if r.method.is_empty() { "-" } else { &r.method };
            let path = if r.path.is_empty() { "-" } else { &r.path };
            let _ = writeln!(
                buf,
                "[{start}] \"{method} {path} {}\" {} {} {} {} {} {host} {ep} {node} {} {}/{} \"{}\" \"{}\" {}",
                r.protocol,
                r.status,
                r.flags,
                r.bytes_in,
                r.bytes_out,
                r.duration.as_millis(),
                r.attempts,
                r.namespace,
                r.service,
                dash(&r.request_id),
                dash(&r.traceparent),
                r.downstream.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            );
        }
    }
}

/// `2026-12-05T04:55:00.123456Z` from Unix microseconds (civil-from-days, proleptic Gregorian).
fn rfc3339_us(us: u64) -> String {
    let secs = us / 1_000_000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, rem % 3600 / 60, rem % 60, us % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_us(1_796_446_500_000_001), "2026-12-05T04:55:00.000001Z");
    }
}
