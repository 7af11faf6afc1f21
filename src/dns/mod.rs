//! DNS side of the mesh: a small responder that answers alias names with their VIPs and forwards
//! everything else, plus management of a marked block in a hosts file.

pub mod hosts;
pub mod responder;
mod upstream;

pub use hosts::HostsBlock;
pub use responder::DnsResponder;
pub use upstream::system_upstreams;

use std::net::SocketAddr;
use std::path::PathBuf;

/// Alias name (lowercase, no trailing dot) -> VIP. The lead's routing-table builder replaces it whenever aliases change.
pub type NameTable =
    std::sync::Arc<arc_swap::ArcSwap<std::collections::HashMap<String, std::net::Ipv4Addr>>>;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot bind DNS {proto} socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("DNS responder on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read hosts file {}: {source}", path.display())]
    HostsRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write hosts file {}: {source}", path.display())]
    HostsWrite {
        path: PathBuf,
        source: std::io::Error,
    },
}
