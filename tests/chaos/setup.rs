//! The soak's mesh: its services and endpoints, and the nginx backends' configuration.

use super::*;

pub(super) fn services_toml() -> String {
    let svc = |name: &str, proto: &str, (dns, port): (&str, u16)| {
        format!("[[service]]\nnamespace = \"default\"\nname = \"{name}\"\nprotocol = \"{proto}\"\naliases = [{{ dns_name = \"{dns}\", port = {port} }}]\n\n")
    };
    svc("web", "http", WEB)
        + &svc("web2", "http2", WEB2)
        + &svc("echo", "tcp", ECHO).replace("protocol = \"tcp\"\n", "protocol = \"tcp\"\naccess_log = true\n")
        + "[[service]]\nnamespace = \"default\"\nname = \"reg\"\nprotocol = \"http\"\n[service.health_check]\nkind = \"none\"\n\n"
}

pub(super) fn endpoints_toml(node: &str) -> String {
    [("web", H1_PORT), ("web2", H2_PORT), ("echo", ECHO_PORT)]
        .iter()
        .map(|(svc, port)| format!("[[endpoint]]\nnamespace = \"default\"\nservice = \"{svc}\"\nid = \"{svc}-{node}\"\naddress = \"127.0.0.1:{port}\"\n\n"))
        .collect()
}

pub(super) fn nginx_conf(dir: &Path, node: &str) -> String {
    let server = |listen: &str| {
        format!(
            "  server {{\n    listen {listen};\n    access_log {d}/access.log chaos;\n    location / {{\n      add_header x-backend {node} always;\n      return 200 \"backend={node}\\n\";\n    }}\n  }}\n",
            d = dir.display()
        )
    };
    format!(
        "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d};\n  keepalive_requests 100000;\n  \
         log_format chaos '$msec $request_time $request_method $http_x_chaos_id $status';\n{}{}}}\n",
        server(&format!("127.0.0.1:{H1_PORT}")),
        server(&format!("127.0.0.1:{H2_PORT} http2")),
        d = dir.display()
    )
}
