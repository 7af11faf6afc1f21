//! Authorization between services: who a node is (its certificate's grants) and which callers a
//! service admits (its `allow`). A leaf: the catalog stores [`Allow`], the transport reads
//! [`Identity`] from certificates, the proxy and the relay ask [`permits`].
//!
//! A node's certificate names the node and, as URI subject alternative names, the namespaces it
//! belongs to (`weft://namespace/<name>`) and its client groups (`weft://group/<name>`), all signed
//! by the cluster CA (`weft ca issue --namespace … --group …`). A certificate that names no
//! namespace is cluster-wide: the node belongs to every namespace (registries usually are, and
//! every certificate issued before namespaces existed is).
//!
//! A service without `allow` admits callers that belong to its namespace (ECS Service Connect's
//! rule: services of one namespace reach each other) and no others. With `allow`, it admits
//! exactly the callers that match an entry: a namespace they belong to, a node-name glob, or a
//! group of theirs. Both the caller's node and the endpoint's node check (`proxy::pipeline`,
//! `transport::relay`): a caller's node that has been tampered with is still refused at the
//! target.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The prefix of a namespace grant among a certificate's URI SANs.
pub const NAMESPACE_URI: &str = "weft://namespace/";
/// The prefix of a group grant among a certificate's URI SANs.
pub const GROUP_URI: &str = "weft://group/";

/// A node as its certificate proves it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub node: String,
    /// The namespaces it belongs to; `None`: every namespace (a cluster-wide certificate).
    pub namespaces: Option<BTreeSet<String>>,
    pub groups: BTreeSet<String>,
}

impl Identity {
    /// A node whose certificate grants every namespace, or a node without `[tls]` (one host: no
    /// certificates, nothing to tell nodes apart by).
    pub fn cluster_wide(node: &str) -> Identity {
        Identity { node: node.to_string(), namespaces: None, groups: BTreeSet::new() }
    }

    /// From a certificate's common name and URI SANs; other URIs are ignored.
    pub fn from_grants<'a>(node: &str, uris: impl IntoIterator<Item = &'a str>) -> Identity {
        let mut id = Identity::cluster_wide(node);
        let mut namespaces = BTreeSet::new();
        for uri in uris {
            if let Some(ns) = uri.strip_prefix(NAMESPACE_URI) {
                namespaces.insert(ns.to_string());
            } else if let Some(g) = uri.strip_prefix(GROUP_URI) {
                id.groups.insert(g.to_string());
            }
        }
        id.namespaces = (!namespaces.is_empty()).then_some(namespaces);
        id
    }

    /// Whether the node belongs to namespace `ns`: it may register endpoints there, learn its
    /// records, and call its services by default.
    pub fn belongs_to(&self, ns: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|set| set.contains(ns))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.node)?;
        match &self.namespaces {
            None => write!(f, " (every namespace")?,
            Some(set) => write!(f, " (namespaces {}", set.iter().cloned().collect::<Vec<_>>().join(", "))?,
        }
        if !self.groups.is_empty() {
            write!(f, "; groups {}", self.groups.iter().cloned().collect::<Vec<_>>().join(", "))?;
        }
        f.write_str(")")
    }
}

/// A service's callers, when not only its own namespace's: any entry that matches admits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Callers that belong to one of these namespaces (list the service's own to keep it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Callers whose node name matches one of these globs (`*` matches any run of characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Callers whose certificate names one of these groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// The most entries an `allow` may hold in all: it is checked on every denied connection.
pub const MAX_ALLOW_ENTRIES: usize = 64;

/// Whether a service of `namespace` with `allow` admits `caller`.
pub fn permits(namespace: &str, allow: Option<&Allow>, caller: &Identity) -> bool {
    let Some(a) = allow else { return caller.belongs_to(namespace) };
    a.namespaces.iter().any(|ns| caller.belongs_to(ns)) || a.nodes.iter().any(|g| glob(g, &caller.node)) || a.groups.iter().any(|g| caller.groups.contains(g))
}

/// `*` matches any run of characters (none included); everything else matches itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(node: &str, uris: &[&str]) -> Identity {
        Identity::from_grants(node, uris.iter().copied())
    }

    #[test]
    fn globs_match_runs() {
        for (p, n, want) in [
            ("web-*", "web-1", true),
            ("web-*", "web-", true),
            ("web-*", "api-1", false),
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a*c", "ab", false),
            ("*-eu-*", "web-eu-3", true),
            ("exact", "exact", true),
            ("exact", "exact2", false),
            ("a*a", "a", false),
        ] {
            assert_eq!(glob(p, n), want, "{p} ~ {n}");
        }
    }

    #[test]
    fn default_is_the_namespace_and_allow_replaces_it() {
        let shop = id("p1", &["weft://namespace/shop", "weft://group/billing", "https://example.invalid/x"]);
        let wide = id("r1", &[]);
        assert_eq!(shop.groups.len(), 1);
        assert!(permits("shop", None, &shop) && !permits("pay", None, &shop));
        assert!(permits("pay", None, &wide), "a cluster-wide node belongs to every namespace");
        let groups = Allow { groups: vec!["billing".into()], ..Allow::default() };
        assert!(permits("pay", Some(&groups), &shop));
        let nodes = Allow { nodes: vec!["edge-*".into()], ..Allow::default() };
        assert!(!permits("shop", Some(&nodes), &shop), "an allow list replaces the namespace default");
        assert!(permits("shop", Some(&nodes), &id("edge-2", &["weft://namespace/pay"])));
        let ns = Allow { namespaces: vec!["shop".into()], ..Allow::default() };
        assert!(permits("pay", Some(&ns), &shop) && permits("pay", Some(&ns), &wide));
        assert_eq!(shop.to_string(), "node p1 (namespaces shop; groups billing)");
    }
}
