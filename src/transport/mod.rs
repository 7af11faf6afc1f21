//! The QUIC endpoint (one UDP port, mutual TLS) that will carry gossip and the cross-host data path.
//! Until it lands, every endpoint a node routes to is reached directly over TCP.
