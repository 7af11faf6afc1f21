//! Hand-rolled UDP+TCP DNS responder. hickory-server's handler stack is built around zones and
//! authorities; we need one lookup table plus raw forwarding, so parsing with hickory-proto and
//! relaying the client's original bytes upstream is both smaller and keeps EDNS/DNSSEC bits intact.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::telemetry::DnsAnswer;
use hickory_proto::op::{Edns, Message, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, trace, warn};

use super::upstream::{tcp_exchange, udp_exchange};
use super::{DnsError, NameTable};

/// Caps memory/FD use under a query flood; excess UDP queries are dropped (clients retry).
const MAX_UDP_INFLIGHT: usize = 512;
const MAX_TCP_CONNS: usize = 128;
/// Per-upstream wait, and the total forwarding budget: kept under glibc's 5 s resolver timeout
/// so the client gets our SERVFAIL rather than timing out itself.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1500);
const FORWARD_BUDGET: Duration = Duration::from_secs(4);
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Advertised in our own answers; the usual fragmentation-safe size.
const EDNS_PAYLOAD: u16 = 1232;

pub struct DnsResponder {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    addr: SocketAddr,
    ctx: Arc<Ctx>,
}

struct Ctx {
    /// Where answers are counted (the node's telemetry registry, or one of its own).
    stats: Arc<crate::telemetry::Registry>,
    upstream: Vec<SocketAddr>,
    ttl: u32,
    names: NameTable,
}

impl DnsResponder {
    /// Binds UDP and TCP on `listen` now (so bind errors surface before the node reports ready).
    pub async fn bind(
        listen: SocketAddr,
        mut upstream: Vec<SocketAddr>,
        ttl: u32,
        names: NameTable,
    ) -> Result<Self, DnsError> {
        let (udp, tcp, addr) = bind_pair(listen).await?;
        // Forwarding to ourselves would loop until the budget runs out.
        upstream.retain(|u| *u != addr);
        if upstream.is_empty() {
            info!(%addr, "DNS responder has no upstreams; unknown names get NXDOMAIN");
        }
        let ctx = Arc::new(Ctx {
            stats: Arc::default(),
            upstream,
            ttl,
            names,
        });
        Ok(Self {
            udp: Arc::new(udp),
            tcp,
            addr,
            ctx,
        })
    }

    /// Counts answers into the node's telemetry registry.
    pub fn count_into(mut self, stats: Arc<crate::telemetry::Registry>) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.stats = stats;
        }
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DnsError> {
        let Self {
            udp,
            tcp,
            addr,
            ctx,
        } = self;
        let udp_permits = Arc::new(Semaphore::new(MAX_UDP_INFLIGHT));
        let tcp_permits = Arc::new(Semaphore::new(MAX_TCP_CONNS));
        // Every query runs in its own task so a slow upstream or a panic can't stall the loop.
        let mut tasks = JoinSet::new();
        let mut buf = vec![0u8; 65535];
        info!(%addr, upstream = ?ctx.upstream, "DNS responder listening (UDP+TCP)");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = udp.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => {
                        let Ok(permit) = udp_permits.clone().try_acquire_owned() else {
                            debug!(%peer, "DNS: too many queries in flight, dropping one");
                            continue;
                        };
                        let (udp, ctx, query) = (udp.clone(), ctx.clone(), buf[..n].to_vec());
                        tasks.spawn(async move {
                            let _permit = permit;
                            if let Some(resp) = ctx.handle(&query, false).await
                                && let Err(e) = udp.send_to(&resp, peer).await
                            {
                                debug!(%peer, error = %e, "DNS: UDP send failed");
                            }
                        });
                    }
                    // Includes ICMP-induced errors from earlier sends; they don't affect the socket.
                    Err(e) => debug!(error = %e, "DNS: UDP receive failed"),
                },
                r = tcp.accept() => match r {
                    Ok((stream, peer)) => {
                        let Ok(permit) = tcp_permits.clone().try_acquire_owned() else {
                            debug!(%peer, "DNS: too many TCP connections, refusing one");
                            continue;
                        };
                        let ctx = ctx.clone();
                        tasks.spawn(async move {
                            let _permit = permit;
                            serve_tcp(&ctx, stream).await;
                        });
                    }
                    Err(e) => {
                        // Typically EMFILE; back off instead of spinning on the error.
                        warn!(%addr, error = %e, "DNS: TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(res) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = res && e.is_panic() {
                        error!("DNS query handler panicked");
                    }
                }
            }
        }
        // Abort in-flight forwards so the sockets are really closed when we return.
        tasks.shutdown().await;
        info!(%addr, "DNS responder stopped");
        Ok(())
    }
}

async fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DnsError> {
    // With port 0 the kernel picks a UDP port that may be taken for TCP; retry a few times.
    let mut attempts = if listen.port() == 0 { 8 } else { 1 };
    loop {
        attempts -= 1;
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|source| DnsError::Bind {
                addr: listen,
                proto: "UDP",
                source,
            })?;
        let addr = udp.local_addr().map_err(|source| DnsError::Bind {
            addr: listen,
            proto: "UDP",
            source,
        })?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp, addr)),
            Err(e) if attempts > 0 && e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(source) => {
                return Err(DnsError::Bind {
                    addr,
                    proto: "TCP",
                    source,
                });
            }
        }
    }
}

async fn serve_tcp(ctx: &Ctx, mut stream: TcpStream) {
    loop {
        let Ok(Ok(len)) = timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        let Ok(Ok(_)) = timeout(TCP_IDLE, stream.read_exact(&mut query)).await else {
            return;
        };
        let Some(resp) = ctx.handle(&query, true).await else {
            return;
        };
        let Ok(len) = u16::try_from(resp.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(resp.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&resp);
        let Ok(Ok(())) = timeout(TCP_IDLE, stream.write_all(&out)).await else {
            return;
        };
    }
}

impl Ctx {
    /// Returns the wire response, or None when the datagram deserves no answer; counts the answer.
    async fn handle(&self, raw: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let (out, answer) = self.answer(raw, tcp).await;
        if let Some(a) = answer {
            self.stats.node.dns_answer(a);
        }
        out
    }

    async fn answer(&self, raw: &[u8], tcp: bool) -> (Option<Vec<u8>>, Option<DnsAnswer>) {
        // Never answer responses or ID-less fragments: that is how reflection loops start.
        if raw.len() < 12 || raw[2] & 0x80 != 0 {
            return (None, None);
        }
        let id = u16::from_be_bytes([raw[0], raw[1]]);
        let req = match Message::from_vec(raw) {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "DNS: malformed query");
                return (encode(&Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)), Some(DnsAnswer::FormErr));
            }
        };
        if req.metadata.op_code != OpCode::Query {
            return (encode(&reply(&req, ResponseCode::NotImp)), Some(DnsAnswer::NotImp));
        }
        if let [q] = req.queries.as_slice()
            && let Some(vip) = self.lookup(q.name())
        {
            trace!(name = %q.name(), qtype = %q.query_type(), %vip, "DNS: local answer");
            return (encode(&self.local_answer(&req, q, vip)), Some(DnsAnswer::Local));
        }
        if self.upstream.is_empty() {
            return (encode(&reply(&req, ResponseCode::NXDomain)), Some(DnsAnswer::NxDomain));
        }
        match self.forward(raw, id, tcp).await {
            Some(resp) => (Some(resp), Some(DnsAnswer::Forwarded)),
            None => (encode(&reply(&req, ResponseCode::ServFail)), Some(DnsAnswer::ServFail)),
        }
    }

    fn lookup(&self, name: &Name) -> Option<Ipv4Addr> {
        // Built from raw label bytes: case-folding ASCII only, and no IDNA conversion that could fail.
        let mut key = String::with_capacity(name.len());
        for label in name.iter() {
            let label = std::str::from_utf8(label).ok()?;
            if label.contains('.') {
                return None;
            }
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(&label.to_ascii_lowercase());
        }
        self.names.load().get(&key).copied()
    }

    fn local_answer(&self, req: &Message, q: &Query, vip: Ipv4Addr) -> Message {
        let mut resp = reply(req, ResponseCode::NoError);
        resp.metadata.authoritative = true;
        // Other types get NOERROR with no records so glibc's parallel A/AAAA lookup settles on A.
        let a_wanted = matches!(q.query_type(), RecordType::A | RecordType::ANY)
            && matches!(q.query_class(), DNSClass::IN | DNSClass::ANY);
        if a_wanted {
            resp.answers.push(Record::from_rdata(
                q.name().clone(),
                self.ttl,
                RData::A(A(vip)),
            ));
        }
        resp
    }

    /// Relays the client's bytes verbatim to each upstream in turn until one answers.
    async fn forward(&self, raw: &[u8], id: u16, tcp: bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + FORWARD_BUDGET;
        for &up in &self.upstream {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let resp = match timeout(left.min(UPSTREAM_TIMEOUT), udp_exchange(up, raw, id)).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => {
                    debug!(%up, error = %e, "DNS: upstream UDP exchange failed");
                    continue;
                }
                Err(_) => {
                    debug!(%up, "DNS: upstream timed out");
                    continue;
                }
            };
            // A truncated answer is fine for a UDP client (it retries over TCP to us), but a TCP
            // client must get the full answer, so fetch it over TCP.
            if !tcp || resp[2] & 0x02 == 0 {
                return Some(resp);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, tcp_exchange(up, raw, id)).await {
                Ok(Ok(full)) => return Some(full),
                Ok(Err(e)) => debug!(%up, error = %e, "DNS: upstream TCP exchange failed"),
                Err(_) => debug!(%up, "DNS: upstream TCP timed out"),
            }
        }
        warn!(upstream = ?self.upstream, "DNS: no upstream answered");
        None
    }
}

/// One request datagram answered as the responder answers it, without sockets and with no
/// upstream (a name that is no alias gets NXDOMAIN): what the fuzz targets run
/// (`crate::fuzzing`). The answer is counted in a registry of its own.
pub(crate) fn answer_offline(raw: &[u8], tcp: bool, names: NameTable, ttl: u32) -> Option<Vec<u8>> {
    let ctx = Ctx { stats: Default::default(), upstream: Vec::new(), ttl, names };
    // With no upstream `answer` never waits on anything, so one poll completes it.
    let mut answer = std::pin::pin!(ctx.handle(raw, tcp));
    match answer.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a DNS answer without upstream waited"),
    }
}

/// A response skeleton echoing the question, with EDNS echoed as RFC 6891 requires.
fn reply(req: &Message, code: ResponseCode) -> Message {
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata = Metadata::response_from_request(&req.metadata);
    resp.metadata.recursion_available = true;
    resp.metadata.response_code = code;
    resp.queries = req.queries.clone();
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        resp.edns = Some(edns);
    }
    resp
}

fn encode(msg: &Message) -> Option<Vec<u8>> {
    msg.to_vec()
        .inspect_err(|e| warn!(error = %e, "DNS: cannot encode response"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn table(entries: &[(&str, Ipv4Addr)]) -> NameTable {
        let map: HashMap<String, Ipv4Addr> =
            entries.iter().map(|(n, ip)| (n.to_string(), *ip)).collect();
        Arc::new(arc_swap::ArcSwap::from_pointee(map))
    }

    async fn start(upstream: Vec<SocketAddr>, names: NameTable) -> (SocketAddr, CancellationToken) {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let r = DnsResponder::bind(any, upstream, 7, names).await.unwrap();
        let addr = r.local_addr();
        let stop = CancellationToken::new();
        tokio::spawn(r.run(stop.clone()));
        (addr, stop)
    }

    fn query(name: &str, qtype: RecordType, edns: bool) -> (u16, Vec<u8>) {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if edns {
            m.set_edns(Edns::new());
        }
        (m.metadata.id, m.to_vec().unwrap())
    }

    async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
        let (id, q) = query(name, qtype, true);
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(&q, server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.id, id);
        m
    }

    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    const VIP: Ipv4Addr = Ipv4Addr::new(127, 255, 0, 3);

    #[tokio::test]
    async fn answers_known_names_and_empty_aaaa() {
        let (addr, stop) = start(vec![], table(&[("app.shop.internal", VIP)])).await;

        for name in [
            "app.shop.internal",
            "APP.Shop.Internal.",
            "app.shop.internal.",
        ] {
            let m = ask_udp(addr, name, RecordType::A).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert_eq!(a_records(&m), vec![VIP], "{name}");
            assert_eq!(m.answers[0].ttl, 7);
            assert!(m.edns.is_some(), "EDNS must be echoed");
        }

        let m = ask_udp(addr, "app.shop.internal", RecordType::AAAA).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());

        // Unknown name with no upstream: a prompt NXDOMAIN, not a hang.
        let m = ask_udp(addr, "nope.example", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        stop.cancel();
    }

    #[tokio::test]
    async fn garbage_does_not_kill_server() {
        let (addr, stop) = start(vec![], table(&[("svc", VIP)])).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Too short, a fake response, and a header claiming records that aren't there.
        sock.send_to(b"\x01", addr).await.unwrap();
        sock.send_to(&[0xab, 0xcd, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0], addr)
            .await
            .unwrap();
        sock.send_to(
            &[0x12, 0x34, 0x01, 0, 0, 9, 0, 9, 0, 0, 0, 0, 0xff, 0xff],
            addr,
        )
        .await
        .unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(
            (m.metadata.id, m.metadata.response_code),
            (0x1234, ResponseCode::FormErr)
        );

        // Half a TCP frame, then hang up.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0, 40, 1, 2, 3]).await.unwrap();
        drop(s);

        assert_eq!(
            a_records(&ask_udp(addr, "svc", RecordType::A).await),
            vec![VIP]
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn forwards_unknown_names_over_udp_and_tcp() {
        let (upstream, stop_up) = start(vec![], table(&[("far.away", VIP)])).await;
        // A dead upstream first: the ICMP refusal should make us move on quickly.
        let dead = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (addr, stop) = start(vec![dead, upstream], table(&[])).await;
        assert_eq!(
            a_records(&ask_udp(addr, "far.away", RecordType::A).await),
            vec![VIP]
        );

        let (id, q) = query("far.away", RecordType::A, false);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        s.write_all(&q).await.unwrap();
        let mut resp = vec![0u8; usize::from(s.read_u16().await.unwrap())];
        s.read_exact(&mut resp).await.unwrap();
        let m = Message::from_vec(&resp).unwrap();
        assert_eq!(m.metadata.id, id);
        assert_eq!(a_records(&m), vec![VIP]);

        // Shutdown must release the port.
        stop.cancel();
        stop_up.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        UdpSocket::bind(addr).await.unwrap();
    }

    #[tokio::test]
    async fn silent_upstream_gives_servfail_not_a_hang() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (addr, stop) = start(vec![silent.local_addr().unwrap()], table(&[])).await;
        let started = std::time::Instant::now();
        let m = ask_udp(addr, "unknown.example", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(started.elapsed() < Duration::from_millis(2500));
        stop.cancel();
    }
}
