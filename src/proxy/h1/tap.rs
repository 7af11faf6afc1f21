//! The target side's view of relayed HTTP/1.1: on the node that runs an endpoint, requests from
//! other hosts arrive as a relayed byte stream that is spliced to the endpoint unchanged
//! (`transport::relay`). A [`Tap`] reads along both directions — it never changes, holds back or
//! reorders a byte — and finds each request head and the response head that answers it, so the
//! target node counts responses by status class and their time (request head written to the
//! endpoint → response head read back), like the client node does for the same requests.
//!
//! Only heads are buffered (bodies are skipped by length or chunk framing, never copied). What
//! the tap cannot follow — a head larger than [`MAX_HEAD`], malformed framing, an upgrade (101 or
//! CONNECT), a response nobody asked for — turns it off for the rest of the connection: the
//! bytes keep flowing, only the counting stops. When the service's access log is on, each relayed
//! request also gets a line on this node (flags `relayed`), carrying the `x-request-id` the
//! calling node added, so the two hosts' lines join up.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::time::Instant;

use super::chunked::ChunkedScanner;
use super::head::{BodyKind, Head, MAX_HEAD};
use crate::policy::Headers;
use crate::telemetry::access::{Record, ServiceLog, unix_us};
use crate::telemetry::{EndpointStats, status_class};

/// Where one direction's parser is: in a head (bytes buffered) or skipping a body.
#[derive(Debug, Default)]
enum Framing {
    #[default]
    Head,
    Length(u64),
    Chunked(ChunkedScanner),
    /// A response body that runs to the close: nothing more to find on this connection.
    UntilClose,
}

#[derive(Default)]
struct Direction {
    framing: Framing,
    head: Vec<u8>,
    /// Bytes of the message being read so far (head and body).
    bytes: u64,
}

/// A request sent to the endpoint and not fully answered yet.
struct Exchange {
    sent: Instant,
    head_method: bool,
    /// What the access log needs of the request, when the service's log is on.
    logged: Option<Logged>,
    bytes_in: u64,
    /// The final status, once its head was read.
    status: u16,
}

struct Logged {
    method: String,
    path: String,
    request_id: Option<String>,
    traceparent: Option<String>,
}

/// The service's access log, when it is on, and the endpoint its lines name.
pub struct TapLog {
    pub log: ServiceLog,
    pub endpoint: String,
    pub node: String,
    pub address: std::net::SocketAddr,
}

pub struct Tap {
    stats: Arc<EndpointStats>,
    /// One line per relayed request, target side.
    log: Option<TapLog>,
    requests: Direction,
    responses: Direction,
    waiting: VecDeque<Exchange>,
    off: bool,
}

/// What a head in one direction means for the tap.
enum Seen {
    Body(BodyKind),
    /// Stop following this connection.
    Off,
}

type OnHead = fn(&mut Tap, &[u8]) -> Option<(usize, Seen)>;
type OnDone = fn(&mut Tap, u64);

impl Tap {
    pub fn new(stats: Arc<EndpointStats>, log: Option<TapLog>) -> Tap {
        Tap { stats, log, requests: Direction::default(), responses: Direction::default(), waiting: VecDeque::new(), off: false }
    }

    /// Bytes written to the endpoint (requests).
    pub fn to_endpoint(&mut self, bytes: &[u8]) {
        if !self.off {
            let mut d = std::mem::take(&mut self.requests);
            self.off = !self.follow(&mut d, bytes, Self::on_request, Self::request_done);
            self.requests = d;
        }
    }

    /// Bytes read back from the endpoint (responses).
    pub fn from_endpoint(&mut self, bytes: &[u8]) {
        if !self.off {
            let mut d = std::mem::take(&mut self.responses);
            self.off = !self.follow(&mut d, bytes, Self::on_response, Self::response_done);
            self.responses = d;
        }
    }

    /// Walks `bytes` through one direction's framing, calling `on_head` for each complete head
    /// and `on_done` with its size when a message ends. Returns false when the tap must turn off.
    fn follow(&mut self, d: &mut Direction, mut bytes: &[u8], on_head: OnHead, on_done: OnDone) -> bool {
        while !bytes.is_empty() {
            let before = bytes.len();
            match &mut d.framing {
                Framing::Length(left) => {
                    let take = (*left).min(bytes.len() as u64);
                    *left -= take;
                    bytes = &bytes[take as usize..];
                    if *left == 0 {
                        d.framing = Framing::Head;
                    }
                }
                Framing::Chunked(scanner) => {
                    let Ok(used) = scanner.scan(bytes) else { return false };
                    bytes = &bytes[used..];
                    if scanner.is_done() {
                        d.framing = Framing::Head;
                    }
                }
                Framing::UntilClose => return true,
                Framing::Head => {
                    let held = d.head.len();
                    d.head.extend_from_slice(&bytes[..bytes.len().min(MAX_HEAD + 1 - held)]);
                    let Some((len, seen)) = on_head(self, &d.head) else {
                        // More bytes needed, unless the head is already too large to follow.
                        d.bytes += bytes.len() as u64;
                        return d.head.len() <= MAX_HEAD;
                    };
                    bytes = &bytes[len - held..];
                    d.head.clear();
                    d.framing = match seen {
                        Seen::Off => return false,
                        Seen::Body(BodyKind::Empty) | Seen::Body(BodyKind::Length(0)) => Framing::Head,
                        Seen::Body(BodyKind::Length(n)) => Framing::Length(n),
                        Seen::Body(BodyKind::Chunked) => Framing::Chunked(ChunkedScanner::default()),
                        Seen::Body(BodyKind::UntilClose) => Framing::UntilClose,
                    };
                }
            }
            d.bytes += (before - bytes.len()) as u64;
            if matches!(d.framing, Framing::Head) && d.head.is_empty() {
                on_done(self, std::mem::take(&mut d.bytes));
            }
        }
        true
    }

    /// A request head: its clock starts. `None`: incomplete.
    fn on_request(&mut self, buf: &[u8]) -> Option<(usize, Seen)> {
        match Head::request(buf) {
            Ok(Some(h)) => {
                let method = h.method(buf);
                if method == "CONNECT" {
                    return Some((h.len, Seen::Off));
                }
                let logged = self.log.as_ref().map(|_| {
                    let headers = Headers::Raw { buf, fields: &h.fields };
                    let text = |n| headers.get(n).map(|v| String::from_utf8_lossy(v).into_owned());
                    Logged { method: method.to_string(), path: h.target(buf).to_string(), request_id: text("x-request-id"), traceparent: text("traceparent") }
                });
                self.waiting.push_back(Exchange { sent: Instant::now(), head_method: method == "HEAD", logged, bytes_in: 0, status: 0 });
                Some((h.len, Seen::Body(h.body)))
            }
            Ok(None) => None,
            Err(_) => Some((buf.len(), Seen::Off)),
        }
    }

    fn request_done(&mut self, bytes: u64) {
        if let Some(x) = self.waiting.back_mut() {
            x.bytes_in = bytes;
        }
    }

    /// A response head: the oldest waiting request is answered (an interim 1xx answers nothing).
    fn on_response(&mut self, buf: &[u8]) -> Option<(usize, Seen)> {
        let Some(x) = self.waiting.front_mut() else { return Some((buf.len(), Seen::Off)) };
        match Head::response(buf, if x.head_method { b"HEAD" } else { b"GET" }) {
            Ok(Some(h)) => {
                if (100..200).contains(&h.status) && h.status != 101 {
                    return Some((h.len, Seen::Body(BodyKind::Empty)));
                }
                x.status = h.status;
                self.stats.served[status_class(h.status)].fetch_add(1, Relaxed);
                self.stats.served_time.record(x.sent.elapsed());
                Some((h.len, if h.status == 101 { Seen::Off } else { Seen::Body(h.body) }))
            }
            Ok(None) => None,
            Err(_) => Some((buf.len(), Seen::Off)),
        }
    }

    /// A response ended (an interim one is not an answer): its request is done, and logged.
    fn response_done(&mut self, bytes: u64) {
        if self.waiting.front().is_none_or(|x| x.status == 0) {
            return;
        }
        let Some(x) = self.waiting.pop_front() else { return };
        let (Some(t), Some(l)) = (self.log.as_ref(), x.logged) else { return };
        let log = &t.log;
        log.log.log(Record {
            start_us: unix_us(x.sent),
            duration: x.sent.elapsed(),
            protocol: "HTTP/1.1",
            namespace: log.namespace.clone(),
            service: log.service.clone(),
            method: l.method,
            path: l.path,
            status: x.status,
            // Target side: the request came from another node, which logs the client's view.
            flags: "relayed",
            bytes_in: x.bytes_in,
            bytes_out: bytes,
            upstream: Some((t.endpoint.clone(), t.node.clone(), t.address)),
            attempts: 1,
            request_id: l.request_id,
            traceparent: l.traceparent,
            // The client is on the calling node, whose record names it.
            downstream: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(t: &Tap) -> [u64; 6] {
        std::array::from_fn(|i| t.stats.served[i].load(Relaxed))
    }

    /// Feeds `bytes` in pieces of `step` bytes, as a socket might deliver them.
    fn feed(t: &mut Tap, bytes: &[u8], step: usize, to_endpoint: bool) {
        for piece in bytes.chunks(step) {
            if to_endpoint { t.to_endpoint(piece) } else { t.from_endpoint(piece) }
        }
    }

    #[test]
    fn counts_pipelined_requests_with_bodies_in_any_split() {
        let requests = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nhost: x\r\n\r\n\
            PUT /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHEAD /d HTTP/1.1\r\nhost: x\r\n\r\n";
        let responses = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 503 No\r\ntransfer-encoding: chunked\r\n\r\n\
            2\r\nno\r\n0\r\n\r\nHTTP/1.1 404 Missing\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n";
        for step in [1, 2, 7, 64, 4096] {
            let mut t = Tap::new(Arc::default(), None);
            feed(&mut t, requests, step, true);
            feed(&mut t, responses, step, false);
            assert_eq!(served(&t), [0, 0, 2, 0, 1, 1], "step {step}");
            assert!(!t.off, "step {step}");
            assert_eq!(t.stats.served_time.snapshot().count(), 4);
        }
    }

    #[test]
    fn stops_at_what_it_cannot_follow() {
        // A response nobody asked for.
        let mut t = Tap::new(Arc::default(), None);
        t.from_endpoint(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(t.off);
        // An upgrade: the bytes after 101 are not HTTP.
        let mut t = Tap::new(Arc::default(), None);
        t.to_endpoint(b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n");
        t.from_endpoint(b"HTTP/1.1 101 Switching\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n\x81\x05hello");
        assert!(t.off);
        assert_eq!(served(&t)[1], 1);
        // Garbage, and a head that never ends.
        let mut t = Tap::new(Arc::default(), None);
        t.to_endpoint(b"\x16\x03\x01 not http\r\n\r\n");
        assert!(t.off);
        let mut t = Tap::new(Arc::default(), None);
        t.to_endpoint(b"GET / HTTP/1.1\r\nhost: x\r\nx-long: ");
        for _ in 0..100 {
            t.to_endpoint(&[b'a'; 1024]);
        }
        assert!(t.off);
    }
}
