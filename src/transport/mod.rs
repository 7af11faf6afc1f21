//! Everything between nodes: the cluster CA and node identities now; the QUIC endpoint (one UDP
//! port, mutual TLS) that will carry gossip and the cross-host data path arrives next. Until
//! then every endpoint a node routes to is reached directly over TCP.

pub mod pki;
