//! `weft ca init` / `weft ca issue`: a cluster CA and node certificates that a real TLS stack
//! (openssl) accepts against that CA and rejects against another.

mod common;

use std::process::Command;

use common::*;

fn openssl_verify(ca: &std::path::Path, cert: &std::path::Path) -> CmdOut {
    run_cmd(Command::new("openssl").arg("verify").arg("-CAfile").arg(ca).arg(cert), None, std::time::Duration::from_secs(10))
}

#[test]
fn issued_certificates_verify_against_their_ca_only() {
    if !require_program("issued_certificates_verify_against_their_ca_only", "openssl") {
        return;
    }
    let tmp = TempDir::new("ca");
    let (ca, other) = (tmp.join("ca"), tmp.join("other"));
    weft_cmd(&["ca", "init", "--dir", ca.to_str().unwrap()]).expect_ok();
    weft_cmd(&["ca", "init", "--dir", other.to_str().unwrap(), "--cluster", "elsewhere"]).expect_ok();
    let again = weft_cmd(&["ca", "init", "--dir", ca.to_str().unwrap()]);
    assert!(!again.ok() && again.stderr().contains("already exists"), "{}", again.both());

    let out = weft_cmd(&["ca", "issue", "--dir", ca.to_str().unwrap(), "--node", "host-a", "--san", "127.0.0.9"]);
    out.expect_ok();
    let cert = ca.join("host-a.pem");
    let v = openssl_verify(&ca.join("ca.pem"), &cert);
    assert!(v.ok() && v.stdout().contains(": OK"), "{}", v.both());
    let v = openssl_verify(&other.join("ca.pem"), &cert);
    assert!(!v.ok(), "a certificate from one CA must not verify against another: {}", v.both());

    let text = run_cmd(Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(&cert), None, std::time::Duration::from_secs(10));
    assert!(text.stdout().contains("DNS:host-a") && text.stdout().contains("IP Address:127.0.0.9"), "{}", text.stdout());
    assert!(text.stdout().contains("TLS Web Client Authentication") && text.stdout().contains("TLS Web Server Authentication"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ca.join("host-a-key.pem")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private keys are readable by their owner only");

    let bad = weft_cmd(&["ca", "issue", "--dir", tmp.join("missing").to_str().unwrap(), "--node", "x"]);
    assert!(!bad.ok() && bad.stderr().contains("weft ca init"), "{}", bad.both());
}

/// `weft ca issue --out DIR` writes a node's whole bundle (CA, certificate, key) in DIR; a node
/// whose certificate expires within 30 days says so in its log, `weft status` and a metric.
/// VIP net 99.
#[test]
fn a_bundle_in_one_directory_and_expiry_warned_30_days_ahead() {
    let tmp = TempDir::new("ca-expiry");
    let (ca, bundle) = (tmp.join("ca"), tmp.join("bundle"));
    weft_cmd(&["ca", "init", "--dir", ca.to_str().unwrap()]).expect_ok();
    let out = weft_cmd(&["ca", "issue", "--dir", ca.to_str().unwrap(), "--node", "soon", "--out", bundle.to_str().unwrap(), "--days", "10"]);
    assert!(out.stdout().contains("bundle"), "{}", out.both());
    for f in ["ca.pem", "soon.pem", "soon-key.pem"] {
        assert!(bundle.join(f).exists(), "{f} missing from the bundle: {}", out.both());
    }
    let tls = NodeTls { ca: bundle.join("ca.pem"), cert: bundle.join("soon.pem"), key: bundle.join("soon-key.pem") };
    let w = Weft::start_mesh(&MeshNode::new("soon", "combined", 99, "127.1.99.1", tls));
    let cert = w.get_json("/v1/status")["mesh"]["certificate"].clone();
    assert!((8..=10).contains(&cert["days_left"].as_i64().unwrap_or(-1)), "{cert}");
    assert!(cert["warning"].as_str().is_some_and(|t| t.contains("weft ca issue")), "{cert}");
    let status = w.cli(&["status"]);
    assert!(status.stderr().contains("warning: this node's mesh certificate expires in"), "{}", status.both());
    assert!(w.log().contains("certificate expires in"), "{}", w.log());
    let metrics = w.get("/metrics").unwrap().text();
    let left: f64 = metrics.lines().find_map(|l| l.strip_prefix("weft_tls_certificate_remaining_seconds ")).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("{metrics}"));
    assert!(left > 8.0 * 86_400.0 && left <= 10.0 * 86_400.0, "{left}");

    // A certificate of the default lifetime: no warning.
    let ca2 = MeshCa::new("long");
    let w2 = Weft::start_mesh(&MeshNode::new("long", "combined", 100, "127.1.100.1", ca2.issue("long")));
    let cert = w2.get_json("/v1/status")["mesh"]["certificate"].clone();
    assert!(cert["warning"].is_null() && cert["days_left"].as_i64().unwrap_or(0) > 30, "{cert}");
}
