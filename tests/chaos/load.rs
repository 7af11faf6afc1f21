//! The soak's load: member and endpoint pollers, the registrar, the clients.

use super::*;

// ---------------------------------------------------------------------------------------------
// pollers, registrar, clients
// ---------------------------------------------------------------------------------------------

pub(super) fn parse_members(body: &[u8]) -> Option<Vec<Member>> {
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

pub(super) fn parse_endpoints(body: &[u8]) -> Option<BTreeSet<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(
        as_list(&v)
            .iter()
            .map(|e| format!("{}/{}", e["service"].as_str().unwrap_or("?"), e["id"].as_str().unwrap_or("?")))
            .collect(),
    )
}

/// Polls node `i`'s `/v1/members` every 250 ms and `/v1/endpoints` every 500 ms, and its VmHWM.
pub(super) fn poller(sh: &Shared, i: usize) {
    let rt = &sh.nodes[i];
    enter_netns(&rt.ns);
    let mut round = 0u64;
    while !sh.stop_poll.load(SeqCst) {
        let began = Instant::now();
        let t = Duration::from_millis(1000);
        let members = admin(rt.admin_port, "GET", "/v1/members", None, t).ok().filter(|r| r.0 == 200).and_then(|r| parse_members(&r.1));
        let endpoints = if round.is_multiple_of(2) {
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
pub(super) fn registrar(sh: &Shared) {
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
pub(super) struct ClientSpec {
    pub(super) proto: Proto,
    pub(super) post: bool,
    pub(super) no: usize,
    pub(super) node: usize,
    pub(super) addr: SocketAddr,
    pub(super) authority: String,
}

pub(super) type H1 = http1::SendRequest<Full<Bytes>>;
pub(super) type H2 = http2::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<TokioIo<tokio::net::TcpStream>, String> {
    let s = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(TokioIo::new(s))
}

/// One request of client `c`: the answering backend, or why it failed.
/// `port`: set to a TCP exchange's client port.
async fn one(c: &ClientSpec, id: &str, h1c: &mut Option<H1>, h2c: &mut Option<H2>, port: &mut u16) -> Result<String, String> {
    let method = if c.post { "POST" } else { "GET" };
    let body = if c.post { Bytes::from(format!("{{\"order\":\"{id}\"}}")) } else { Bytes::new() };
    let resp = match c.proto {
        Proto::Tcp => {
            let s = tokio::net::TcpStream::connect(c.addr).await.map_err(|e| format!("connect: {e}"))?;
            *port = s.local_addr().map(|a| a.port()).unwrap_or(0);
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
        let mut client_port = 0;
        let out = tokio::time::timeout(sh.s.client_timeout, one(&c, &id, &mut h1c, &mut h2c, &mut client_port)).await;
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
        sh.recs.lock().unwrap().push(Rec { proto: c.proto, post: c.post, node: c.node, id, start, end, ok, err, backend, client_port });
    }
}

/// The clients of one proxy node, on a single-threaded runtime inside the node's namespace.
pub(super) fn client_thread(sh: &Shared, node: usize, clients: Vec<ClientSpec>) {
    enter_netns(&sh.nodes[node].ns);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(futures_util::future::join_all(clients.into_iter().map(|c| run_client(sh, c))));
}

/// 100 clients split (in this order) as HTTP/1.1 GET 36 %, POST 18 %; HTTP/2 GET 24 %, POST 12 %;
/// TCP 10 %, dealt round-robin over the proxies.
pub(super) fn client_specs(total: usize, vips: &BTreeMap<(usize, &str), String>) -> Vec<ClientSpec> {
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
