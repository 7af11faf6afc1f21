//! Membership and record dissemination between nodes (SWIM over QUIC) arrive here in the next
//! milestone. The seam is already in place: the catalog merges versioned records last-writer-wins
//! ([`crate::catalog::Catalog::merge`]), which is all the gossip layer needs to replicate them.
