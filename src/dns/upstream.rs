//! The resolvers weft forwards names it does not own to: found in /etc/resolv.conf, asked with
//! the client's own bytes over UDP, and over TCP again when a TCP client's answer came back
//! truncated.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::warn;

fn is_response_to(b: &[u8], id: u16) -> bool {
    b.len() >= 12 && b[..2] == id.to_be_bytes() && b[2] & 0x80 != 0
}

pub(super) async fn udp_exchange(up: SocketAddr, raw: &[u8], id: u16) -> io::Result<Vec<u8>> {
    // A fresh socket per query: random source port for spoofing resistance, and connect() makes
    // the kernel drop datagrams from anyone but `up` (and report ICMP refusals promptly).
    let local = match up {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(raw).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        if is_response_to(&buf[..n], id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

pub(super) async fn tcp_exchange(up: SocketAddr, raw: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let len = u16::try_from(raw.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut stream = TcpStream::connect(up).await?;
    let mut out = Vec::with_capacity(raw.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(raw);
    stream.write_all(&out).await?;
    loop {
        let mut resp = vec![0u8; usize::from(stream.read_u16().await?)];
        stream.read_exact(&mut resp).await?;
        if is_response_to(&resp, id) {
            return Ok(resp);
        }
    }
}

/// Nameservers from /etc/resolv.conf (port 53), minus `exclude` (our own listen address, so that inside a
/// network namespace whose resolv.conf points at us we never forward to ourselves) and minus any address equal to listen ip:53.
/// Reads a small file synchronously; meant to be called once at startup.
pub fn system_upstreams(exclude: SocketAddr) -> Vec<SocketAddr> {
    match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(text) => parse_resolv_conf(&text, exclude),
        Err(e) => {
            warn!(error = %e, "cannot read /etc/resolv.conf; DNS has no upstreams");
            Vec::new()
        }
    }
}

fn parse_resolv_conf(text: &str, exclude: SocketAddr) -> Vec<SocketAddr> {
    let ours = |a: &SocketAddr| {
        *a == exclude
            || a.ip() == exclude.ip()
            // Listening on 0.0.0.0/[::] means loopback nameservers on our port reach us too.
            || (exclude.ip().is_unspecified() && a.ip().is_loopback() && a.port() == exclude.port())
    };
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // Scoped link-local addresses ("fe80::1%eth0") fail to parse and are skipped on purpose:
        // they are unusable without the interface index.
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        let addr = SocketAddr::new(ip, 53);
        if !ours(&addr) && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_excludes_ourselves() {
        let text = "# c\nsearch x\nnameserver 127.0.0.1\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n\
                    nameserver 10.0.0.2\nnameserver ::1\n";
        let ours: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let got = parse_resolv_conf(text, ours);
        let want: Vec<SocketAddr> =
            vec!["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()];
        assert_eq!(got, want);
        let wild: SocketAddr = "0.0.0.0:53".parse().unwrap();
        assert_eq!(
            parse_resolv_conf(text, wild),
            vec!["10.0.0.2:53".parse::<SocketAddr>().unwrap()]
        );
    }
}
