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
