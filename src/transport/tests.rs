use std::path::Path;

use super::*;

struct NoEndpoints;

impl LocalEndpoints for NoEndpoints {
    fn resolve(&self, _: &RelayRequest) -> Option<LocalEndpoint> {
        None
    }
}

fn node(dir: &Path, name: &str, listen: SocketAddr) -> Arc<Transport> {
    let issued = pki::ca_issue(dir, dir, name, &[], 1).unwrap();
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
