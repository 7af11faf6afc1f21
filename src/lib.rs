//! weft: a service-connect mesh and service registry in one binary.
//!
//! Data flows one way: configuration and the admin API write the [`catalog`], which persists every
//! record in the [`store`] and publishes snapshots; the [`proxy`] turns each snapshot into a routing
//! table and listeners; [`dns`] answers alias names with the VIPs the catalog assigned.

pub mod admin;
pub mod authz;
pub mod background;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod dns;
/// For the fuzz targets in `fuzz/` only.
#[doc(hidden)]
pub mod fuzzing;
pub mod gossip;
pub mod health;
pub mod import;
pub mod node;
pub mod plugin;
pub mod policy;
pub mod proxy;
pub mod store;
pub mod telemetry;
pub mod transport;
