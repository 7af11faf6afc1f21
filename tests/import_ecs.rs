//! `weft import ecs` on fixtures written from the documented shapes (tests/fixtures/ecs): the
//! four-tier app's service-connect files and task definitions become a config `weft validate`
//! accepts, whose aliases are exactly the old DNS names, that a real node runs (the service list
//! round-trips); what has no weft equivalent is warned about with its file and JSON path; broken
//! JSON gets file:line:col; a CloudFormation template's `Ref`/`GetAtt` namespace is resolved.
//! VIP net 97.
mod common;
use common::*;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/ecs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The Yelb walkthrough's ECS files (config/examples/yelb/ecs), the service-connect JSON and the
/// task definitions.
fn yelb(name: &str) -> String {
    format!("{}/config/examples/yelb/ecs/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_voting_app_imports_validates_and_runs_with_its_old_names() {
    let tmp = TempDir::new("import-ecs");
    let out = tmp.join("conf");
    let files = ["svc-ui.json", "svc-appserver.json", "svc-db.json", "svc-redis.json", "td-appserver.json", "td-db.json", "td-redis.json"].map(yelb);
    let mut args = vec!["import", "ecs", "--out-dir", out.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    let r = weft_cmd(&args);
    r.expect_ok();
    let err = r.stderr();
    for (file, path) in [
        ("svc-db.json", "$.services[0].tls"),
        ("svc-appserver.json", "$.serviceConnectConfiguration.services[0].ingressPortOverride"),
        ("svc-appserver.json", "$.serviceConnectConfiguration.logConfiguration"),
        ("svc-appserver.json", "$: ECS scheduling fields not carried over"),
    ] {
        assert!(err.lines().any(|l| l.starts_with("warning: ") && l.contains(file) && l.contains(path)), "no warning for {file} {path}:\n{err}");
    }
    let toml_path = out.join("weft.toml");
    weft_cmd(&["validate", toml_path.to_str().unwrap()]).expect_ok();
    let toml = std::fs::read_to_string(&toml_path).unwrap();

    // A real node runs it: the services, their protocols and aliases are the ones imported.
    let w = Weft::start(WeftOpts::new(97).extra(&toml));
    let listed = as_list(&w.cli(&["service", "list", "-o", "json"]).expect_ok().json());
    let mut got: Vec<(String, String, String)> = listed
        .iter()
        .map(|s| {
            let aliases: Vec<String> = as_list(&s["aliases"]).iter().map(|a| format!("{}:{}", a["dns_name"].as_str().unwrap(), a["port"])).collect();
            (s["name"].as_str().unwrap().to_string(), s["protocol"].as_str().unwrap().to_string(), aliases.join(","))
        })
        .collect();
    got.sort();
    let want = vec![
        ("yelb-appserver".to_string(), "http".to_string(), "yelb-appserver.yelb.lb.internal:4567".to_string()),
        ("yelb-db".into(), "tcp".into(), "yelb-db.yelb.cloudmap.internal:5432".into()),
        ("yelb-redis".into(), "tcp".into(), "yelb-redis.yelb.cloudmap.internal:6379".into()),
    ];
    assert_eq!(got, want, "{toml}");
    let app = listed.iter().find(|s| s["name"] == "yelb-appserver").unwrap();
    assert_eq!((app["timeouts"]["idle_s"].as_u64(), app["timeouts"]["request_s"].as_u64()), (Some(120), Some(30)), "{app}");
    // The old names resolve to VIPs on this node.
    for (name, port) in [("yelb-db.yelb.cloudmap.internal", 5432), ("yelb-redis.yelb.cloudmap.internal", 6379), ("yelb-appserver.yelb.lb.internal", 4567)] {
        w.vip(name, port);
    }
}

#[test]
fn broken_json_unknown_shapes_and_missing_ports_are_named() {
    let r = weft_cmd(&["import", "ecs", &fixture("broken.json")]);
    assert!(!r.ok() && r.stderr().contains("broken.json:3:15: not valid JSON"), "{}", r.both());
    // Not JSON-looking: read as YAML (CloudFormation), and its syntax error is placed the same way.
    let r = weft_cmd(&["import", "ecs", &fixture("broken.yaml")]);
    assert!(!r.ok() && r.stderr().contains("broken.yaml:6:3: not valid YAML: did not find expected ',' or ']'"), "{}", r.both());
    let r = weft_cmd(&["import", "ecs", &yelb("svc-db.json")]);
    assert!(!r.ok() && r.stderr().contains("$.services[0].portName: no task definition given names a port `yelb-db`"), "{}", r.both());
    let r = weft_cmd(&["import", "ecs", &yelb("td-db.json")]);
    assert!(!r.ok() && r.stderr().contains("no service-connect configuration"), "{}", r.both());
}

#[test]
fn a_cloudformation_template_resolves_its_namespace_reference() {
    let r = weft_cmd(&["import", "ecs", &fixture("template.json")]);
    r.expect_ok();
    let toml = r.stdout();
    assert!(toml.contains("[[namespace]]\nname = \"shop.internal\""), "{toml}");
    assert!(toml.contains("protocol = \"grpc\"") && toml.contains("aliases = [{ dns_name = \"api.shop.internal\", port = 50051 }]"), "{toml}");
    let tmp = TempDir::new("import-cfn");
    let path = tmp.join("weft.toml");
    std::fs::write(&path, &toml).unwrap();
    weft_cmd(&["validate", path.to_str().unwrap()]).expect_ok();
}

/// The same app before service connect, as a YAML template: Cloud Map DNS names
/// (`ServiceRegistries`, a name from a parameter's default) and an internal load balancer named by
/// a Route 53 alias record (`!Join`) become the aliases; the internet-facing load balancer and the
/// resources weft has no use for are warned about by path.
#[test]
fn a_yaml_template_before_service_connect_gives_the_old_names() {
    let r = weft_cmd(&["import", "ecs", &fixture("voting-app.yaml")]);
    r.expect_ok();
    let toml = r.stdout();
    for (name, protocol, alias) in [
        ("yelb-appserver", "http", "{ dns_name = \"yelb-appserver.yelb.lb.internal\", port = 4567 }"),
        ("yelb-db", "tcp", "{ dns_name = \"yelb-db.yelb.cloudmap.internal\", port = 5432 }"),
        ("yelb-redis", "tcp", "{ dns_name = \"yelb-redis.yelb.cloudmap.internal\", port = 6379 }"),
    ] {
        let want = format!("name = \"{name}\"\nprotocol = \"{protocol}\"\naliases = [{alias}]\n");
        assert!(toml.contains(&want), "no {want} in:\n{toml}");
    }
    assert_eq!(toml.matches("dns_name").count(), 3, "exactly the three old names:\n{toml}");
    assert!(toml.contains("# yelb-ui: a client of namespace yelb.cloudmap.internal"), "{toml}");
    let err = r.stderr();
    for want in [
        "voting-app.yaml: $.Resources.UiService.Properties.LoadBalancers[0]: load balancer PublicLoadBalancer faces the internet",
        "voting-app.yaml: $.Resources.{Vpc}: AWS::EC2::VPC: no weft equivalent",
        "voting-app.yaml: $.Resources.{Cluster}: AWS::ECS::Cluster: no weft equivalent",
    ] {
        assert!(err.contains(want), "no warning `{want}`:\n{err}");
    }
    let tmp = TempDir::new("import-cfn-yaml");
    let path = tmp.join("weft.toml");
    std::fs::write(&path, &toml).unwrap();
    weft_cmd(&["validate", path.to_str().unwrap()]).expect_ok();
}
