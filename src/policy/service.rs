//! A service's policy: the built-in hooks, with a plugin's in place of those it exports. Resolved
//! once per routing-table build, so a request finds its service's hooks without a lookup.
//!
//! A plugin hook may fail (trap, fuel, memory, suspended after repeated failures). Its plugin
//! counts the failure; the request then gets the built-in hook's answer (`fail = "open"`, the
//! default), or is refused with 503 `x-weft-error: policy` (`fail = "closed"`).

use std::sync::Arc;
use std::time::Duration;

use super::builtin::Builtin;
use super::decision::{Kept, PickDecision, Reused, RouteDecision, drawn};
use super::{Candidates, Headers, Outcome, Policy, RequestInfo, RetryDecision, WantedHeader};
use crate::catalog::RouteRule;

/// Which hooks a plugin exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub route: bool,
    pub pick: bool,
    pub retry: bool,
}

/// A plugin call that did not answer; the plugin has counted it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HookFailed(pub String);

/// What the data path needs of a loaded policy plugin (implemented by `crate::plugin`).
pub trait Plugin: Send + Sync {
    fn name(&self) -> &str;
    fn hooks(&self) -> Hooks;
    /// `fail = "closed"`: a failed call refuses the request instead of falling back.
    fn fail_closed(&self) -> bool;
    /// The request headers its hooks read (its manifest names them), lower-case: what a kept
    /// answer is kept by.
    fn wanted_headers(&self) -> &[WantedHeader];
    /// Where the answers given again from [`Kept`] are counted, beside its calls.
    fn reused(&self) -> &Reused;
    fn route(&self, req: &RequestInfo<'_>) -> Result<RouteDecision, HookFailed>;
    fn pick_endpoint(&self, req: &RequestInfo<'_>, c: &Candidates<'_>) -> Result<PickDecision, HookFailed>;
    fn should_retry(&self, req: &RequestInfo<'_>, outcome: Outcome, elapsed: Duration) -> Result<RetryDecision, HookFailed>;
}

/// Finds plugins by name when a routing table is built.
pub trait PluginSource: Send + Sync {
    fn plugin(&self, name: &str) -> Option<Arc<dyn Plugin>>;
}

/// No plugins at all.
pub struct NoPlugins;

impl PluginSource for NoPlugins {
    fn plugin(&self, _name: &str) -> Option<Arc<dyn Plugin>> {
        None
    }
}

/// A fail-closed plugin's hook failed: the request is refused.
#[derive(Debug, thiserror::Error)]
#[error("policy plugin {plugin} failed ({hook}): {reason}")]
pub struct PolicyRefused {
    pub plugin: String,
    pub hook: &'static str,
    pub reason: String,
}

/// The hooks one service's requests go through.
#[derive(Default)]
pub struct ServicePolicy {
    /// The service's routing rules (those with a destination), for the built-in `route`.
    routing: Vec<RoutingRule>,
    plugin: Option<Arc<dyn Plugin>>,
    /// The hooks the plugin exports (none without one), asked once: they are checked for
    /// every request.
    hooks: Hooks,
    /// The plugin's answers that hold for more than one request (made with the plugin: this
    /// policy lives as long as one routing table, so nothing kept outlives an endpoint change).
    kept: Option<Box<Kept>>,
}

impl std::fmt::Debug for ServicePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePolicy").field("routing", &self.routing.len()).field("plugin", &self.plugin.as_ref().map(|p| p.name().to_string())).finish()
    }
}

impl ServicePolicy {
    pub fn new(rules: &[RouteRule], plugin: Option<Arc<dyn Plugin>>) -> ServicePolicy {
        let hooks = plugin.as_ref().map(|p| p.hooks()).unwrap_or_default();
        let kept = (hooks.route || hooks.pick).then(Box::default);
        ServicePolicy { routing: rules.iter().filter_map(RoutingRule::of).collect(), plugin, hooks, kept }
    }

    fn plugin_with(&self, has: impl Fn(Hooks) -> bool) -> Option<&Arc<dyn Plugin>> {
        self.plugin.as_ref().filter(|_| has(self.hooks))
    }

    /// Whether `route` may ever send a request elsewhere; when not, the data path skips it.
    pub fn routes(&self) -> bool {
        !self.routing.is_empty() || self.plugin_with(|h| h.route).is_some()
    }

    /// Whether a hook after the route phase (`pick-endpoint`, `should-retry`) may read the
    /// request's authority, path or headers: a plugin's may (through host calls), the built-in
    /// ones do not. When not, the data path leaves them out of [`RequestInfo`]; the route phase
    /// describes the request for itself. (Describing every request was ~3 % of its work when
    /// authority and path were checked eagerly; with [`super::RawText`] a plugin that is never
    /// called adds ~50 instructions, +0.4 %: benches/plugin.sh, the retry-policy row.)
    pub fn tries_read_requests(&self) -> bool {
        self.hooks.pick || self.hooks.retry
    }

    /// Another service of the namespace for this request, or `None` to keep it. `headers`: what
    /// a kept answer is found by; `describe`: the whole request, made only when a hook needs it
    /// (made for every request, it was ~90 of the ~480 instructions a kept route added to an
    /// HTTP/1.1 request: callgrind, benches/plugin.sh).
    pub fn route<'a>(&self, headers: &Headers<'a>, describe: impl Fn() -> RequestInfo<'a>) -> Result<Option<Arc<str>>, PolicyRefused> {
        if let (Some(p), Some(kept)) = (self.plugin_with(|h| h.route), &self.kept) {
            match kept.route(p.wanted_headers(), headers, &p.reused().route, || p.route(&describe())) {
                Ok(r) => return Ok(r),
                Err(e) => fallback(p, "route", e)?,
            }
        }
        if self.routing.is_empty() {
            return Ok(None);
        }
        Ok(route_by_rules(&self.routing, &describe()))
    }

    pub fn pick_endpoint(&self, req: &RequestInfo<'_>, c: &Candidates<'_>) -> Result<Option<u32>, PolicyRefused> {
        if let (Some(p), Some(kept)) = (self.plugin_with(|h| h.pick), &self.kept) {
            let builtin = |c: &Candidates<'_>| Builtin.pick_endpoint(req, c);
            match kept.pick(p.wanted_headers(), req, c, &p.reused().pick, || p.pick_endpoint(req, c), builtin) {
                Ok(Some(i)) => return Ok(Some(i)),
                Ok(None) => {}
                Err(e) => fallback(p, "pick-endpoint", e)?,
            }
        }
        Ok(Builtin.pick_endpoint(req, c))
    }

    pub fn should_retry(&self, req: &RequestInfo<'_>, outcome: Outcome, elapsed: Duration) -> Result<RetryDecision, PolicyRefused> {
        if let Some(p) = self.plugin_with(|h| h.retry) {
            match p.should_retry(req, outcome, elapsed) {
                Ok(d) => return Ok(d),
                Err(e) => fallback(p, "should-retry", e)?,
            }
        }
        Ok(Builtin.should_retry(req, outcome, elapsed))
    }
}

/// A failed plugin call: fall back to the built-in hook, or refuse when the plugin says so.
fn fallback(p: &Arc<dyn Plugin>, hook: &'static str, e: HookFailed) -> Result<(), PolicyRefused> {
    if p.fail_closed() {
        return Err(PolicyRefused { plugin: p.name().to_string(), hook, reason: e.0 });
    }
    tracing::debug!(plugin = p.name(), hook, error = %e, "plugin hook failed; the built-in hook answers");
    Ok(())
}

/// A routing rule and its destination, shared with the requests it sends there.
#[derive(Clone, Debug)]
pub struct RoutingRule {
    rule: RouteRule,
    to: Arc<str>,
}

impl RoutingRule {
    fn of(rule: &RouteRule) -> Option<RoutingRule> {
        Some(RoutingRule { to: rule.to.as_deref()?.into(), rule: rule.clone() })
    }
}

/// The built-in `route`: the first routing rule that matches decides; a weighted one sends its
/// share (`percent`) there and keeps the rest.
pub fn route_by_rules(rules: &[RoutingRule], req: &RequestInfo<'_>) -> Option<Arc<str>> {
    let r = rules.iter().find(|r| r.rule.matches(req.method, req.path.as_str(), |n| req.headers.get(n)))?;
    drawn(r.rule.share()).then(|| r.to.clone())
}
