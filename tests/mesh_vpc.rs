//! Two VPCs joined by a router, in network namespaces (needs root): vpc-a 10.123.1.0/24 with a
//! combined (registry+proxy) weft, vpc-b 10.124.2.0/24 with a proxy weft, a router namespace with
//! a veth into each and IP forwarding. A client in vpc-a reaches an endpoint in vpc-b through its
//! own weft (the endpoint is on vpc-b's loopback, so only the mesh can carry it). Then the
//! router's veth into vpc-b goes down: each side keeps serving its own endpoints, writes made on
//! one side stay invisible to the other, and once the link is back both sides converge.
//!
//! VIP nets 123 (vpc-a) and 124 (vpc-b).
mod common;
use common::*;
use std::time::{Duration, Instant};

const A_NET: &str = "10.123.1";
const B_NET: &str = "10.124.2";

fn ip(ns: Option<&str>, args: &[&str]) {
    let mut c = command(ns, "ip");
    c.args(args);
    run_cmd(&mut c, None, Duration::from_secs(10)).expect_ok();
}

/// The router and two VPC namespaces; the namespaces (and every process left in them, and the
/// veths with them) go away on drop.
struct Vpcs {
    a: Netns,
    b: Netns,
    router: Netns,
}

impl Vpcs {
    fn new() -> Vpcs {
        let v = Vpcs { a: Netns::new("vpca"), b: Netns::new("vpcb"), router: Netns::new("vrtr") };
        let r = v.router.ns();
        // veths are created inside the router namespace with their peer end in the VPC, so their
        // names never meet the host's (or a parallel test's) interfaces
        ip(r, &["link", "add", "ra", "type", "veth", "peer", "name", "eth0", "netns", &v.a.name]);
        ip(r, &["link", "add", "rb", "type", "veth", "peer", "name", "eth0", "netns", &v.b.name]);
        ip(r, &["addr", "add", &format!("{A_NET}.1/24"), "dev", "ra"]);
        ip(r, &["addr", "add", &format!("{B_NET}.1/24"), "dev", "rb"]);
        ip(r, &["link", "set", "ra", "up"]);
        ip(r, &["link", "set", "rb", "up"]);
        let mut c = command(r, "sysctl");
        c.args(["-w", "net.ipv4.ip_forward=1"]);
        run_cmd(&mut c, None, Duration::from_secs(10)).expect_ok();
        for (ns, net, other) in [(v.a.ns(), A_NET, B_NET), (v.b.ns(), B_NET, A_NET)] {
            ip(ns, &["addr", "add", &format!("{net}.2/24"), "dev", "eth0"]);
            ip(ns, &["link", "set", "eth0", "up"]);
            ip(ns, &["route", "add", &format!("{other}.0/24"), "via", &format!("{net}.1")]);
        }
        v
    }

    fn link_b(&self, up: bool) {
        ip(self.router.ns(), &["link", "set", "rb", if up { "up" } else { "down" }]);
    }
}

fn svc_toml(name: &str) -> String {
    format!("[[service]]\nnamespace = \"default\"\nname = \"{name}\"\nprotocol = \"http\"\naliases = [{{ dns_name = \"{name}.vpc\", port = 8080 }}]\n")
}

fn ep_toml(svc: &str, id: &str, port: u16) -> String {
    format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"{svc}\"\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\n")
}

/// GET through a node's alias from inside its VPC: (status, answering backend).
fn call(ns: &Netns, w: &Weft, alias: &str) -> (u16, String) {
    let vip = w.vip(alias, 8080);
    let (code, body, err) = curl_get(ns.ns(), &format!("http://{vip}:8080/x"));
    (code, backend_name(&body).unwrap_or_else(|| format!("<{body}{err}>")))
}

fn endpoint_json(svc: &str, id: &str, port: u16) -> Value {
    json!({"namespace": "default", "service": svc, "id": id, "address": format!("127.0.0.1:{port}")})
}

#[test]
fn two_vpcs_partition_and_heal() {
    if !require_root("mesh_vpc") || !require_program("mesh_vpc", "python3") {
        return;
    }
    let t_start = Instant::now();
    let vpcs = Vpcs::new();
    let ca = MeshCa::new("vpc");
    // backends on each VPC's own loopback
    let (pa, pb_shop, pb_home) = (free_port(), free_port(), free_port());
    let _home_a = http_backend(vpcs.a.ns(), "home-a-1", pa);
    let _shop_b = http_backend(vpcs.b.ns(), "shop-b-1", pb_shop);
    let _home_b = http_backend(vpcs.b.ns(), "home-b-1", pb_home);

    let a_addr = format!("{A_NET}.2:7946");
    let b_addr = format!("{B_NET}.2:7946");
    let a_node = MeshNode::new("a1", "combined", 123, &format!("{A_NET}.2"), ca.issue("a1"))
        .port(7946)
        .netns(&vpcs.a.name)
        .join(&b_addr)
        .extra(&svc_toml("shop"))
        .extra(&svc_toml("home-a"))
        .extra(&svc_toml("home-b"))
        .extra(&ep_toml("home-a", "home-a-1", pa));
    let b_node = MeshNode::new("b1", "proxy", 124, &format!("{B_NET}.2"), ca.issue("b1"))
        .port(7946)
        .netns(&vpcs.b.name)
        .join(&a_addr)
        .extra(&ep_toml("shop", "shop-b-1", pb_shop))
        .extra(&ep_toml("home-b", "home-b-1", pb_home));
    let a1 = Weft::start_mesh(&a_node);
    let b1 = Weft::start_mesh(&b_node);
    assert_eq!(a1.gossip_addr(), a_addr);
    assert_eq!(b1.gossip_addr(), b_addr);

    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        a1.sees_all_alive(&["a1", "b1"]) && b1.sees_all_alive(&["a1", "b1"])
    });
    assert!(ok, "the VPCs did not form one mesh: a1 {:?} / b1 {:?}", a1.try_members(), b1.try_members());

    // Cross-host: shop's only endpoint is on vpc-b's loopback.
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || a1.healthy_endpoints("shop.vpc", 8080) == Some(1));
    assert!(ok, "a1 never routed shop to b1's endpoint: {:?}", a1.route_now("shop.vpc", 8080));
    let relayed = b1.mesh_counter("relayed_streams");
    assert_eq!(call(&vpcs.a, &a1, "shop.vpc"), (200, "shop-b-1".to_string()), "vpc-a -> a1 -> QUIC -> b1 -> shop-b-1");
    // GET /v1/status counters are a snapshot the gossip task refreshes about once a second
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(100), || b1.mesh_counter("relayed_streams") > relayed);
    assert!(ok, "b1 carried no relayed stream ({relayed} -> {})", b1.mesh_counter("relayed_streams"));
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || b1.healthy_endpoints("home-b.vpc", 8080) == Some(1));
    assert!(ok, "b1 never routed home-b to its own endpoint: {:?}", b1.route_now("home-b.vpc", 8080));
    assert_eq!(call(&vpcs.a, &a1, "home-a.vpc"), (200, "home-a-1".to_string()));
    assert_eq!(call(&vpcs.b, &b1, "home-b.vpc"), (200, "home-b-1".to_string()));

    // Partition.
    vpcs.link_b(false);
    let ok = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        a1.member_state("b1").as_deref() == Some("down") && b1.member_state("a1").as_deref() == Some("down")
    });
    assert!(ok, "partition not noticed: a1 sees b1 {:?}, b1 sees a1 {:?}", a1.member_state("b1"), b1.member_state("a1"));
    // each side serves its own endpoints, and takes writes
    assert_eq!(call(&vpcs.a, &a1, "home-a.vpc"), (200, "home-a-1".to_string()), "a1 serves its own endpoint during the partition");
    assert_eq!(call(&vpcs.b, &b1, "home-b.vpc"), (200, "home-b-1".to_string()), "b1 serves its own endpoint during the partition");
    a1.post_ok("/v1/endpoints", &endpoint_json("home-a", "home-a-2", pa));
    b1.post_ok("/v1/endpoints", &endpoint_json("home-b", "home-b-2", pb_home));
    assert_eq!(a1.endpoint_ids("default", "home-a"), vec!["home-a-1", "home-a-2"]);
    assert_eq!(b1.endpoint_ids("default", "home-b"), vec!["home-b-1", "home-b-2"]);
    // 12 s: longer than the nodes' QUIC idle timeout (10 s), so the connections between the
    // sides are gone and healing needs fresh handshakes, as after any real outage
    holds_for("writes stay on their side of the partition", Duration::from_secs(12), || {
        let (seen_by_b, seen_by_a) = (b1.endpoint_ids("default", "home-a"), a1.endpoint_ids("default", "home-b"));
        if seen_by_b.contains(&"home-a-2".to_string()) || seen_by_a.contains(&"home-b-2".to_string()) {
            return Err(format!("b1 sees home-a {seen_by_b:?}, a1 sees home-b {seen_by_a:?}"));
        }
        Ok(())
    });
    assert_eq!(call(&vpcs.b, &b1, "home-b.vpc").0, 200, "b1 still serves after the writes");

    // Heal.
    vpcs.link_b(true);
    let t_heal = Instant::now();
    let converged = || {
        a1.sees_all_alive(&["a1", "b1"])
            && b1.sees_all_alive(&["a1", "b1"])
            && ["shop", "home-a", "home-b"].iter().all(|s| a1.endpoint_ids("default", s) == b1.endpoint_ids("default", s))
            && a1.endpoint_ids("default", "home-b") == vec!["home-b-1", "home-b-2"]
            && b1.endpoint_ids("default", "home-a") == vec!["home-a-1", "home-a-2"]
    };
    let ok = wait_until(Duration::from_secs(30), Duration::from_millis(200), converged);
    assert!(
        ok,
        "no convergence 30 s after healing: a1 members {:?} home-b {:?} / b1 members {:?} home-a {:?}",
        a1.try_members(),
        a1.endpoint_ids("default", "home-b"),
        b1.try_members(),
        b1.endpoint_ids("default", "home-a")
    );
    eprintln!("converged {:?} after the link came back", t_heal.elapsed());
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(100), || a1.healthy_endpoints("shop.vpc", 8080) == Some(1));
    assert!(ok, "a1 does not route shop to b1 again: {:?}", a1.route_now("shop.vpc", 8080));
    assert_eq!(call(&vpcs.a, &a1, "shop.vpc"), (200, "shop-b-1".to_string()), "cross-host again after healing");
    eprintln!("mesh_vpc took {:?}", t_start.elapsed());
}
