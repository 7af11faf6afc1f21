//! One reading of the whole registry: what every reader (admin API, dashboard, `weft stats`,
//! Prometheus, OTLP) works from, so all of them show the same figures.

use serde::Serialize;

use super::node::NodeReport;
use super::{PluginCounter, Registry, ServiceReport};

#[derive(Serialize)]
pub struct Snapshot {
    pub services: Vec<ServiceReport>,
    pub node: NodeReport,
    pub plugins: Vec<PluginCounter>,
}

impl Registry {
    /// Reads every figure once. Endpoints' `node` is left empty (the caller knows the catalog).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { services: self.report(), node: self.node.report(), plugins: self.plugin_report() }
    }
}
