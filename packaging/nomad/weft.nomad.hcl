# weft on every client node of a Nomad cluster: a system job, host networking, the config as a
# template, each node's certificate from its own directory on the host (issued with
# `weft ca issue --node <node name> --out /etc/weft/pki` there; the node name is the host name).
#
#   nomad job run packaging/nomad/weft.nomad.hcl
job "weft" {
  type = "system"

  group "weft" {
    network {
      mode = "host"
    }

    task "weft" {
      driver = "raw_exec"   # weft installed on the host by its .deb

      config {
        command = "/usr/bin/weft"
        args    = ["run", "-c", "${NOMAD_TASK_DIR}/weft.toml", "--data-dir", "/var/lib/weft"]
      }

      template {
        destination = "local/weft.toml"
        data        = <<-TOML
          [node]
          mode = "proxy"
          drain_timeout_s = 20

          [admin]
          listen = "127.0.0.1:9901"

          [dns]
          listen = "127.0.0.1:5353"

          [tls]
          ca = "/etc/weft/pki/ca.pem"
          cert = "/etc/weft/pki/{{ env "attr.unique.hostname" }}.pem"
          key = "/etc/weft/pki/{{ env "attr.unique.hostname" }}-key.pem"

          [gossip]
          listen = "0.0.0.0:7946"
          join = ["registry-1.example.internal:7946"]
        TOML
      }

      # SIGTERM drains (endpoints marked, requests in flight finish) within drain_timeout_s.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      # The admin API listens on loopback only: the check asks it from the node itself.
      service {
        name     = "weft"
        provider = "nomad"
        check {
          type     = "script"
          command  = "/usr/bin/weft"
          args     = ["--admin", "127.0.0.1:9901", "status"]
          interval = "10s"
          timeout  = "3s"
        }
      }

      resources {
        cpu    = 200
        memory = 64
      }
    }
  }
}
