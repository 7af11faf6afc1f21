use std::path::PathBuf;

use super::*;

fn dir(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-cfg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for (name, text) in files {
        std::fs::write(d.join(name), text).unwrap();
    }
    d
}

#[test]
fn directory_merges_in_lexical_order() {
    let d = dir(
        "merge",
        &[
            ("20-override.toml", "[dns]\nttl = 9\n[[service]]\nnamespace = \"a\"\nname = \"s2\"\n"),
            ("10-base.toml", "[dns]\nttl = 3\nlisten = \"127.0.0.1:5454\"\n[[namespace]]\nname = \"a\"\n[[service]]\nnamespace = \"a\"\nname = \"s1\"\n"),
            ("notes.txt", "not toml"),
        ],
    );
    let c = load(&d).unwrap();
    assert_eq!(c.dns.ttl, 9);
    assert_eq!(c.dns.listen.port(), 5454);
    assert_eq!(c.services.iter().map(|s| s.value.name.as_str()).collect::<Vec<_>>(), ["s1", "s2"]);
    assert!(c.services[1].at.path.ends_with("20-override.toml"));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn every_problem_is_reported_with_its_place() {
    let d = dir(
        "errors",
        &[
            ("a.toml", "[node]\nmode = \"router\"\n"),
            ("b.toml", "[[namespace]]\nname = \"a\"\n[[endpoint]]\nnamespace = \"a\"\nservice = \"nope\"\nid = \"e\"\naddress = \"127.0.0.1:1\"\n"),
        ],
    );
    let err = load(&d).unwrap_err().to_string();
    assert!(err.contains("a.toml:2:8: `mode`: unknown variant `router`"), "{err}");
    // b.toml parsed fine on its own; its reference problem shows once a.toml is fixed.
    std::fs::write(d.join("a.toml"), "[node]\nmode = \"combined\"\n").unwrap();
    let err = load(&d).unwrap_err().to_string();
    assert!(err.contains("b.toml:3:1") && err.contains("service `a/nope` is not defined"), "{err}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn bad_vip_range_points_at_the_key() {
    let d = dir("vip", &[("w.toml", "[admin]\nlisten = \"127.0.0.1:9\"\n\n[dns]\nvip_cidr = \"10.0.0.0/8\"\n")]);
    let err = load(&d).unwrap_err().to_string();
    assert!(err.contains("w.toml:5:1: `vip_cidr`") && err.contains("loopback"), "{err}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn field_errors_point_at_the_key_inside_the_entry() {
    let text = "[[namespace]]\nname = \"shop\"\n\n[[service]]\nnamespace = \"shop\"\nname = \"db\"\nprotocol = \"tcp\"\ntimeouts = { request_s = 5 }\n\n[[service]]\nnamespace = \"shop\"\nname = \"x\"\n";
    let d = dir("field", &[("f.toml", text)]);
    let err = load(&d).unwrap_err().to_string();
    assert!(err.contains("f.toml:8:14: service `shop/db`: `timeouts.request_s`"), "{err}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn mesh_sections_are_checked_where_they_are() {
    let d = dir("mesh", &[("a.toml", "[node]\nname = \"n1\"\n\n[gossip]\njoin = [\"10.0.0.1:notaport\", \"seed.example\"]\n")]);
    let msg = load(&d).unwrap_err().to_string();
    assert!(msg.contains("a.toml:4:1: [gossip] needs [tls]"), "{msg}");
    assert!(msg.contains("`join`[0] `10.0.0.1:notaport`: port `notaport`"), "{msg}");
    assert!(!msg.contains("seed.example"), "a bare host name is a valid seed: {msg}");
    std::fs::write(d.join("a.toml"), "[tls]\nca = \"ca.pem\"\n").unwrap();
    let msg = load(&d).unwrap_err().to_string();
    assert!(msg.contains("a.toml:1:1: [tls] needs `ca`, `cert` and `key` together; missing cert, key"), "{msg}");
    std::fs::write(d.join("a.toml"), "[tls]\nca = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"n-key.pem\"\n[gossip]\nlisten = \"10.1.2.3:7000\"\n").unwrap();
    let c = load(&d).unwrap();
    assert_eq!(c.tls_files().unwrap().cert, PathBuf::from("n.pem"));
    assert_eq!(c.gossip.listen.port(), 7000);
    assert_eq!(validate::parse_seed("db-1").unwrap(), ("db-1".to_string(), DEFAULT_GOSSIP_PORT));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_bad_allow_entry_is_named() {
    let d = dir("allow", &[("a.toml", "[[service]]\nnamespace = \"default\"\nname = \"pay\"\nallow = { nodes = [\"web/1\"] }\n")]);
    let err = load(&d).unwrap_err().to_string();
    assert!(err.contains("service `default/pay`: `allow.nodes[0]` `web/1` contains '/'"), "{err}");
    let d = dir("allow2", &[("b.toml", "[[service]]\nnamespace = \"default\"\nname = \"ledger\"\nallow = { groups = [\"billing\"], roles = [\"x\"] }\n")]);
    let err = load(&d).unwrap_err().to_string();
    assert!(err.contains("b.toml:4:") && err.contains("unknown field `roles`, expected one of `namespaces`, `nodes`, `groups`"), "{err}");
}
