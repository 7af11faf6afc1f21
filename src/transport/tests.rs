use std::path::Path;

use super::*;

struct NoEndpoints;

impl LocalEndpoints for NoEndpoints {
    fn resolve(&self, _: &RelayRequest, _: &crate::authz::Identity) -> Option<LocalEndpoint> {
        None
    }
}

fn node(dir: &Path, name: &str, listen: SocketAddr) -> Arc<Transport> {
    let issued = pki::ca_issue(dir, dir, name, &[], &pki::Grants::default(), 1).unwrap();
    let files = TlsFiles { ca: dir.join(pki::CA_CERT), cert: issued.cert, key: issued.key };
    let (t, _incoming) = Transport::bind(listen, files, name, Arc::new(NoEndpoints), CancellationToken::new()).unwrap();
    t
}

/// A caller that stops waiting (the data path's connect timeout) must not abort the handshake:
/// when the peer was not up for the first packet, the dial completes on quinn's retransmission,
/// and the next caller finds the connection made.
#[tokio::test]
async fn a_dial_outlives_the_caller_that_gave_up() {
    let dir = std::env::temp_dir().join(format!("weft-transport-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    pki::ca_init(&dir, "test", false).unwrap();
    let a = node(&dir, "a", "127.0.0.1:0".parse().unwrap());
    // A port nothing listens on yet: b takes it after a's first packet went nowhere.
    let b_addr = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let early = tokio::time::timeout(Duration::from_millis(200), a.connection(b_addr, Some("b"))).await;
    assert!(early.is_err(), "nothing listens at {b_addr} yet, but the dial ended: {early:?}");
    let _b = node(&dir, "b", b_addr);
    // Nobody asks again: the first caller's dial finishes by itself.
    let mut made = None;
    for _ in 0..100 {
        made = a.cached(b_addr);
        if made.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conn = made.expect("the dial was dropped with the caller that gave up");
    assert_eq!(tls::peer_name(&conn).as_deref(), Some("b"));
    // A caller expecting another node at that address is refused, not handed b's connection.
    let other = a.connection(b_addr, Some("c")).await;
    assert!(matches!(&other, Err(TransportError::Connect { message, .. }) if message.contains("`b`, not `c`")), "{:?}", other.map(|_| ()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn relay_preface_carries_a_deadline_an_older_node_ignores() {
    use super::relay::RelayRequest;
    let mut req = RelayRequest { namespace: "default".into(), service: "pay".into(), endpoint: "p1".into(), deadline_ms: None };
    let plain = req.encode().unwrap();
    assert_eq!(RelayRequest::decode(&plain).unwrap(), req);
    req.deadline_ms = Some(1_790_000_000_123);
    let with = req.encode().unwrap();
    assert_eq!(with.len(), plain.len() + 8);
    assert_eq!(RelayRequest::decode(&with).unwrap(), req);
    // What a node of an earlier version does with it: reads the fields, ignores the rest.
    let old: RelayRequest = postcard::from_bytes(&with).unwrap();
    assert_eq!((old.endpoint.as_str(), old.deadline_ms), ("p1", None));
    // Anything else after the fields is refused.
    assert!(RelayRequest::decode(&[plain.as_slice(), &[1, 2, 3]].concat()).is_none());
}

/// Counts until `f` holds or 15 s pass.
async fn eventually(f: impl Fn() -> bool) -> bool {
    for _ in 0..300 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Only a TLS refusal counts as a rejected handshake (the counter that should flag an attack);
/// a peer that goes quiet mid-handshake (frozen, cut off: what a partition and its heal cause) is
/// counted as timed out.
#[tokio::test]
async fn failed_handshakes_are_told_apart() {
    let dir = std::env::temp_dir().join(format!("weft-transport-hs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ours, theirs) = (dir.join("ours"), dir.join("theirs"));
    pki::ca_init(&ours, "ours", false).unwrap();
    pki::ca_init(&theirs, "theirs", false).unwrap();
    let a = node(&ours, "a", "127.0.0.1:0".parse().unwrap());
    let a_addr = a.local_addr();

    // A node of another CA: refused in the TLS handshake.
    let stranger = node(&theirs, "x", "127.0.0.1:0".parse().unwrap());
    let _ = tokio::time::timeout(Duration::from_secs(5), stranger.connection(a_addr, Some("a"))).await;
    assert!(eventually(|| a.stats.handshakes_rejected.load(Relaxed) == 1).await, "a foreign certificate was not counted as rejected");

    // A node of the cluster whose packets stop after its first one: a UDP forwarder passes the
    // first datagram to `a` and drops everything after, both ways.
    let cut = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cut_addr = cut.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        if let Ok((n, _)) = cut.recv_from(&mut buf).await {
            let _ = cut.send_to(&buf[..n], a_addr).await;
        }
        while cut.recv_from(&mut buf).await.is_ok() {}
    });
    let quiet = node(&ours, "q", "127.0.0.1:0".parse().unwrap());
    let _ = tokio::time::timeout(Duration::from_secs(2), quiet.connection(cut_addr, Some("a"))).await;
    // `a` gives up on it after its idle timeout (10 s).
    assert!(eventually(|| a.stats.handshakes_timed_out.load(Relaxed) == 1).await, "the quiet peer's handshake was not counted as timed out (aborted: {})", a.stats.handshakes_aborted.load(Relaxed));
    assert_eq!(a.stats.handshakes_rejected.load(Relaxed), 1, "a quiet peer was counted as a trust failure");
    std::fs::remove_dir_all(&dir).unwrap();
}
