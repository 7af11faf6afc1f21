//! Issue 16, item 8: "requests run after their caller gave up". A POST relayed to a node that is
//! frozen (SIGSTOP) waits in transit; its caller times out and answers an error; when the node
//! resumes, the POST must not reach the endpoint (a client that retried would have it executed
//! twice). Before the fix the POST rode an idle pooled relay stream, its bytes sat in the frozen
//! node's socket buffer and were spliced to the endpoint on resume.
//!
//! Two weft hosts on loopback like tests/failover.rs: A (combined) holds the service, B (proxy)
//! its only endpoint, a tests/support/counter_backend.py that counts POSTs. VIP nets 236-237.
mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn ip(n: u8) -> String {
    format!("127.1.{n}.1")
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// SIGCONTs the process when dropped, so a failing test leaves nothing stopped.
struct Frozen(u32);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-CONT").arg(self.0.to_string()).status();
    }
}

fn posts(port: u16) -> u64 {
    backend_counts(port).pointer("/by_method/POST").and_then(|v| v.as_u64()).unwrap_or(0)
}

#[test]
fn a_post_relayed_to_a_frozen_node_does_not_run_after_its_caller_gave_up() {
    let tmp = TempDir::new("relay-deadline");
    let ca = MeshCa::new("relay-deadline");
    let port = free_port();
    let _backend = counter_backend("p1", port, &[], Some(tmp.join("p1.log")));
    let service = "[[service]]\nnamespace = \"default\"\nname = \"pay\"\nprotocol = \"http\"\naliases = [{ dns_name = \"pay.rd\", port = 8080 }]\n[service.timeouts]\nrequest_s = 2\nconnect_ms = 500\n";
    let endpoint = format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"pay\"\nid = \"p1\"\naddress = \"127.0.0.1:{port}\"\n");
    let a = Weft::start_mesh(&MeshNode::new("a", "combined", 236, &ip(236), ca.issue("a")).extra(service));
    let b = Weft::start_mesh(&MeshNode::new("b", "proxy", 237, &ip(237), ca.issue("b")).join(&a.gossip_addr()).extra(&endpoint));
    let vip = a.vip("pay.rd", 8080);
    let served = wait_until(Duration::from_secs(20), Duration::from_millis(200), || http(&vip, 8080, "POST", "/warm", Some(b"{}")).is_ok_and(|r| r.status == 200));
    assert!(served, "the POST through A never reached B's endpoint");
    // Two more: the relay streams they used are idle now (before the fix: pooled for reuse).
    for i in 0..2 {
        let r = http(&vip, 8080, "POST", &format!("/warm/{i}"), Some(b"{}")).expect("POST via A");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let before = posts(port);

    let frozen = Frozen(b.pid());
    signal(frozen.0, "STOP");
    let sent = Instant::now();
    let r = http(&vip, 8080, "POST", "/charge", Some(b"{\"amount\": 100}"));
    let gave_up = sent.elapsed();
    let status = r.as_ref().map(|r| r.status).unwrap_or(0);
    assert!(status >= 500 || status == 0, "the POST to a frozen node got {status}");
    assert!(gave_up < Duration::from_secs(4), "the caller waited {gave_up:?} (request_s = 2)");
    std::thread::sleep(Duration::from_secs(1));
    signal(frozen.0, "CONT");
    drop(frozen);
    // B catches up with what waited in its socket buffer; give it time to (wrongly) deliver.
    std::thread::sleep(Duration::from_secs(3));
    let after = posts(port);
    let late = b.get_json("/v1/stats");
    assert_eq!(after, before, "the POST answered {status} after {gave_up:?} reached the endpoint when B resumed; B's stats: {late}");

    // B serves again, and a new POST runs once.
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(200), || http(&vip, 8080, "POST", "/again", Some(b"{}")).is_ok_and(|r| r.status == 200));
    assert!(ok, "no POST got through after B resumed");
    assert_eq!(posts(port), before + 1);
    let log = b.log();
    assert!(!log.contains("panicked"), "{log}");
}
