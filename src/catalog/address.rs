//! An endpoint's address as people write it (`--address`, the API's `address`, `[[endpoint]]
//! address`): `IP:PORT`, or `HOST:PORT`, which the node resolves once, when it registers the
//! endpoint. The record keeps the resolved `IP:PORT`: every node routes to the same address, and
//! the data path never waits for a resolver. A host that moves is registered again.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a registration waits for the resolver (glibc's own default is 5 s per try).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EndpointAddress {
    Ip(SocketAddr),
    Host { host: String, port: u16 },
}

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("cannot resolve host `{host}`: {source}")]
    Lookup { host: String, source: std::io::Error },
    #[error("host `{host}` resolves to no address")]
    NoAddress { host: String },
    #[error("host `{host}` did not resolve within {}s", RESOLVE_TIMEOUT.as_secs())]
    Timeout { host: String },
}

impl EndpointAddress {
    /// The port, known without resolving.
    pub fn port(&self) -> u16 {
        match self {
            EndpointAddress::Ip(a) => a.port(),
            EndpointAddress::Host { port, .. } => *port,
        }
    }

    /// The address to register. A host's IPv4 address is preferred when it has both kinds:
    /// `localhost` is `::1` first for glibc, while most servers (Python's, Node's by default on
    /// `0.0.0.0`, anything bound to `127.0.0.1`) listen on IPv4 only. `tokio::net::lookup_host` runs
    /// the lookup on the blocking pool, never on a runtime thread.
    pub async fn resolve(&self) -> Result<SocketAddr, AddressError> {
        let (host, port) = match self {
            EndpointAddress::Ip(a) => return Ok(*a),
            EndpointAddress::Host { host, port } => (host, *port),
        };
        let lookup = tokio::net::lookup_host((host.as_str(), port));
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Err(_) => return Err(AddressError::Timeout { host: host.clone() }),
            Ok(Err(source)) => return Err(AddressError::Lookup { host: host.clone(), source }),
            Ok(Ok(addrs)) => addrs.collect(),
        };
        addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(|| AddressError::NoAddress { host: host.clone() })
    }
}

impl FromStr for EndpointAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(EndpointAddress::Ip(a));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!("`{s}` has no port; give HOST:PORT or IP:PORT (e.g. 127.0.0.1:8080, localhost:8080)"));
        };
        if host.contains(':') || host.starts_with('[') {
            return Err(format!("`{s}` is not an address; an IPv6 address goes in brackets: [::1]:8080"));
        }
        let port: u16 = port.parse().map_err(|_| format!("`{s}`: `{port}` is not a port (1-65535)"))?;
        if port == 0 {
            return Err(format!("`{s}` needs a port between 1 and 65535"));
        }
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        if !valid {
            return Err(format!("`{s}`: `{host}` is neither an IP address nor a host name"));
        }
        Ok(EndpointAddress::Host { host: host.to_string(), port })
    }
}

impl TryFrom<String> for EndpointAddress {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<EndpointAddress> for String {
    fn from(a: EndpointAddress) -> String {
        a.to_string()
    }
}

impl From<SocketAddr> for EndpointAddress {
    fn from(a: SocketAddr) -> Self {
        EndpointAddress::Ip(a)
    }
}

impl fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointAddress::Ip(a) => write!(f, "{a}"),
            EndpointAddress::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ips_and_host_names() {
        assert_eq!("127.0.0.1:80".parse::<EndpointAddress>(), Ok(EndpointAddress::Ip("127.0.0.1:80".parse().unwrap())));
        assert_eq!("[::1]:80".parse::<EndpointAddress>(), Ok(EndpointAddress::Ip("[::1]:80".parse().unwrap())));
        assert_eq!("localhost:18081".parse::<EndpointAddress>(), Ok(EndpointAddress::Host { host: "localhost".into(), port: 18081 }));
        assert_eq!("db-1.internal:5432".parse::<EndpointAddress>().map(|a| a.to_string()), Ok("db-1.internal:5432".into()));
        for bad in ["localhost", "localhost:0", "localhost:http", ":80", "::1:80", "a b:80", "a..b:80", "x:99999"] {
            assert!(bad.parse::<EndpointAddress>().is_err(), "{bad} must be refused");
        }
    }

    #[tokio::test]
    async fn resolves_localhost_to_ipv4_and_names_a_host_that_does_not_resolve() {
        let a: EndpointAddress = "localhost:18081".parse().unwrap();
        assert_eq!(a.resolve().await.unwrap(), "127.0.0.1:18081".parse::<SocketAddr>().unwrap());
        let bad: EndpointAddress = "no-such-host.invalid:80".parse().unwrap();
        let e = bad.resolve().await.unwrap_err().to_string();
        assert!(e.contains("no-such-host.invalid"), "{e}");
    }
}
