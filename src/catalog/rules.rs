//! Per-service route rules: an ordered list matched on method and path, the first match applies.
//! A rule says what HTTP's method semantics cannot: that a GET has side effects (`idempotent =
//! false`: never sent again once it may have reached the application), or that one route needs
//! other retries or a longer timeout than the rest of the service (DESIGN.md §10).

use serde::{Deserialize, Serialize};

use super::CatalogError;
use super::settings::RetryConfig;

/// At most this many rules per service: they are matched in order on every request.
pub const MAX_RULES: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Methods this rule applies to (`GET`, `POST` …); empty: every method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// A path pattern: `*` matches within one segment, `**` across segments (`/api/vote/*`,
    /// `/static/**`); without either it must match the whole path. The query is not part of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Paths starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Only requests carrying this header (with this value, when one is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// A routing rule: matching requests go to this other service of the namespace (a canary, a
    /// new version) instead. Routing rules and setting rules are looked up separately: the first
    /// matching routing rule decides where a request goes, then the first matching setting rule
    /// of the service that carries it decides how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// With `to`: only this percentage of the matching requests go there (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// `false`: the request has side effects whatever its method says, so it is never sent again
    /// after it may have reached the application (connect failures and refused streams are still
    /// retried: nothing was processed). `true`: safe to repeat, even a POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    /// Retry settings for matching requests, over the service's own.
    #[serde(default, skip_serializing_if = "RetryOverride::is_empty")]
    pub retry: RetryOverride,
    /// Time allowed until the response head arrives, instead of the service's `timeouts.request_s`
    /// (0 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_s: Option<u64>,
}

/// A header condition: the header is present (with this value, compared exactly, when given).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The retry settings a rule may change; the retry budget stays the service's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_base_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u32>,
}

impl RetryOverride {
    pub fn is_empty(&self) -> bool {
        *self == RetryOverride::default()
    }

    /// The service's retry settings with this rule's changes.
    pub fn apply(&self, base: &RetryConfig) -> RetryConfig {
        RetryConfig {
            max_retries: self.max_retries.unwrap_or(base.max_retries),
            per_try_timeout_ms: self.per_try_timeout_ms.unwrap_or(base.per_try_timeout_ms),
            backoff_base_ms: self.backoff_base_ms.unwrap_or(base.backoff_base_ms),
            backoff_max_ms: self.backoff_max_ms.unwrap_or(base.backoff_max_ms),
            ..base.clone()
        }
    }
}

impl RouteRule {
    /// Whether a request with this method, path (no query) and headers (`header(name)`: the
    /// first value of a header, by case-insensitive name) is one of this rule's.
    pub fn matches<'h>(&self, method: &str, path: &str, header: impl Fn(&str) -> Option<&'h [u8]>) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.path_prefix.as_ref().is_none_or(|p| path.starts_with(p.as_str()))
            && self.path.as_ref().is_none_or(|g| glob(g.as_bytes(), path.as_bytes()))
            && self.header.as_ref().is_none_or(|h| header(&h.name).is_some_and(|v| h.value.as_ref().is_none_or(|want| want.as_bytes() == v)))
    }

    /// A routing rule (it has a destination) rather than a setting rule.
    pub fn routes(&self) -> bool {
        self.to.is_some()
    }

    /// The share of the matching requests that go to the destination, in hundredths of a
    /// percent (10,000: all), as a plugin's `route-decision` gives it.
    pub fn share(&self) -> u16 {
        self.percent.map_or(10_000, |p| (p.min(100) * 100) as u16)
    }
}

/// `*` matches any run of bytes without '/', `**` any run at all; everything else itself.
fn glob(pattern: &[u8], path: &[u8]) -> bool {
    match pattern {
        [] => path.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=path.len()).any(|i| glob(rest, &path[i..])),
        [b'*', rest @ ..] => {
            let segment = path.iter().position(|&b| b == b'/').unwrap_or(path.len());
            (0..=segment).any(|i| glob(rest, &path[i..]))
        }
        [c, rest @ ..] => path.first() == Some(c) && glob(rest, &path[1..]),
    }
}

fn invalid(field: String, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid { field, message: message.into() }
}

/// The checks every writer's rules go through (config, API, CLI, replicated records).
pub fn validate(rules: &[RouteRule]) -> Result<(), CatalogError> {
    if rules.len() > MAX_RULES {
        return Err(invalid("rules".into(), format!("has {} rules; the limit is {MAX_RULES}", rules.len())));
    }
    for (i, r) in rules.iter().enumerate() {
        let field = |f: &str| format!("rules[{i}].{f}");
        for m in &r.methods {
            if m.is_empty() || m.len() > 32 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(field("methods"), format!("`{m}` is not a method name (upper-case letters, e.g. GET)")));
            }
        }
        for (name, p) in [("path", &r.path), ("path_prefix", &r.path_prefix)] {
            if let Some(p) = p
                && (!p.starts_with('/') || p.len() > 1024 || p.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'?'))
            {
                return Err(invalid(field(name), format!("`{p}` must start with '/', have no spaces, control characters or '?', and be at most 1024 bytes")));
            }
        }
        if r.path_prefix.as_ref().is_some_and(|p| p.contains('*')) {
            return Err(invalid(field("path_prefix"), "takes no '*' (a pattern goes in `path`)"));
        }
        if r.path.as_ref().is_some_and(|p| p.contains("***")) {
            return Err(invalid(field("path"), "`***` means nothing: use `*` (one segment) or `**` (any)"));
        }
        let retry = &r.retry;
        if let (Some(base), Some(max)) = (retry.backoff_base_ms, retry.backoff_max_ms)
            && base > max
        {
            return Err(invalid(field("retry.backoff_base_ms"), format!("is {base}, above retry.backoff_max_ms ({max})")));
        }
        if retry.max_retries.is_some_and(|n| n > 10) {
            return Err(invalid(field("retry.max_retries"), "is above 10"));
        }
        if let Some(h) = &r.header
            && (h.name.is_empty() || h.name.len() > 256 || !h.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(invalid(field("header.name"), format!("`{}` is not a header name", h.name)));
        }
        match (&r.to, r.percent) {
            (None, Some(_)) => return Err(invalid(field("percent"), "goes with `to` (the service a share of requests goes to)")),
            (Some(_), Some(p)) if !(1..=100).contains(&p) => return Err(invalid(field("percent"), format!("is {p}; it is a percentage, 1 to 100"))),
            _ => {}
        }
        if let Some(to) = &r.to {
            if to.is_empty() || to.len() > 127 || !to.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                return Err(invalid(field("to"), format!("`{to}` is not a service name")));
            }
            if r.idempotent.is_some() || !r.retry.is_empty() || r.request_s.is_some() {
                return Err(invalid(field("to"), "a routing rule (with `to`) sets nothing else: put idempotent, retry and request_s in a rule of its own (the destination service's rules apply to what it carries)"));
            }
        }
    }
    Ok(())
}

/// A rule as one line, for the CLI's `describe` and the log: `GET /api/vote/* idempotent=false`.
pub fn describe(r: &RouteRule) -> String {
    let mut s = if r.methods.is_empty() { "*".to_string() } else { r.methods.join(",") };
    match (&r.path, &r.path_prefix) {
        (Some(p), _) => s.push_str(&format!(" {p}")),
        (None, Some(p)) => s.push_str(&format!(" prefix:{p}")),
        (None, None) => s.push_str(" /**"),
    }
    if let Some(h) = &r.header {
        match &h.value {
            Some(v) => s.push_str(&format!(" header={}:{v}", h.name)),
            None => s.push_str(&format!(" header={}", h.name)),
        }
    }
    if let Some(to) = &r.to {
        s.push_str(&format!(" to={to}"));
    }
    if let Some(p) = r.percent {
        s.push_str(&format!(" percent={p}"));
    }
    if let Some(i) = r.idempotent {
        s.push_str(&format!(" idempotent={i}"));
    }
    let o = &r.retry;
    for (k, v) in [("max_retries", o.max_retries.map(u64::from)), ("per_try_timeout_ms", o.per_try_timeout_ms), ("backoff_base_ms", o.backoff_base_ms.map(u64::from)), ("backoff_max_ms", o.backoff_max_ms.map(u64::from)), ("request_s", r.request_s)] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    s
}

/// Parses the CLI's one-line form (what [`describe`] prints): `METHODS PATH [key=value …]`, where
/// METHODS is `*` or a comma list, PATH a pattern or `prefix:/path`, and the keys are
/// `idempotent`, `max_retries`, `per_try_timeout_ms`, `backoff_base_ms`, `backoff_max_ms`,
/// `request_s`, and for a routing rule `to`, `percent` and `header=NAME[:VALUE]` (a condition).
pub fn parse(line: &str) -> Result<RouteRule, String> {
    let mut words = line.split_whitespace();
    let (Some(methods), Some(path)) = (words.next(), words.next()) else {
        return Err(format!("`{line}`: a rule is `METHODS PATH [key=value …]`, e.g. `GET /api/vote/* idempotent=false`"));
    };
    let mut r = RouteRule::default();
    if methods != "*" {
        r.methods = methods.split(',').map(|m| m.to_ascii_uppercase()).collect();
    }
    match path.strip_prefix("prefix:") {
        Some(p) => r.path_prefix = Some(p.to_string()),
        None if path == "/**" => {}
        None => r.path = Some(path.to_string()),
    }
    for kv in words {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("`{kv}` in rule `{line}` is not key=value"))?;
        let num = || v.parse::<u64>().map_err(|_| format!("`{kv}` in rule `{line}`: {k} takes a whole number"));
        let small = || num().and_then(|n| u32::try_from(n).map_err(|_| format!("`{kv}` in rule `{line}` is too large")));
        match k {
            "idempotent" => r.idempotent = Some(v.parse().map_err(|_| format!("`{kv}` in rule `{line}`: idempotent is true or false"))?),
            "max_retries" => r.retry.max_retries = Some(small()?),
            "per_try_timeout_ms" => r.retry.per_try_timeout_ms = Some(num()?),
            "backoff_base_ms" => r.retry.backoff_base_ms = Some(small()?),
            "backoff_max_ms" => r.retry.backoff_max_ms = Some(small()?),
            "request_s" => r.request_s = Some(num()?),
            "header" => {
                let (name, value) = match v.split_once(':') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (v, None),
                };
                r.header = Some(HeaderMatch { name: name.to_ascii_lowercase(), value });
            }
            "to" => r.to = Some(v.to_string()),
            "percent" => r.percent = Some(small()?),
            _ => return Err(format!("`{k}` in rule `{line}` is not a rule setting (idempotent, max_retries, per_try_timeout_ms, backoff_base_ms, backoff_max_ms, request_s, header, to, percent)")),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_segments() {
        assert!(glob(b"/api/vote/*", b"/api/vote/sushi"));
        assert!(!glob(b"/api/vote/*", b"/api/vote/sushi/extra"));
        assert!(glob(b"/api/vote/*", b"/api/vote/"));
        assert!(glob(b"/static/**", b"/static/css/site.css"));
        assert!(glob(b"/*/health", b"/app/health"));
        assert!(!glob(b"/*/health", b"/a/b/health"));
        assert!(glob(b"/api", b"/api") && !glob(b"/api", b"/api/x"));
        assert!(glob(b"/v*/items", b"/v2/items"));
    }

    fn none(_: &str) -> Option<&'static [u8]> {
        None
    }

    #[test]
    fn routing_rules_match_headers_and_draw_a_share() {
        let canary = parse("* /** header=x-canary:1 to=api-v2").unwrap();
        assert!(canary.routes() && validate(std::slice::from_ref(&canary)).is_ok());
        let with = |n: &str| (n == "x-canary").then_some(&b"1"[..]);
        let other = |n: &str| (n == "x-canary").then_some(&b"0"[..]);
        assert!(canary.matches("GET", "/x", with) && !canary.matches("GET", "/x", other) && !canary.matches("GET", "/x", none));
        let any_value = parse("* /** header=x-canary to=api-v2").unwrap();
        assert!(any_value.matches("GET", "/x", other));
        let share = parse("* /** to=api-v2 percent=10").unwrap();
        assert_eq!((share.share(), canary.share()), (1_000, 10_000));
        assert_eq!(parse(&describe(&canary)).unwrap(), canary);
        assert_eq!(parse(&describe(&share)).unwrap(), share);
        let e = |line: &str| validate(&[parse(line).unwrap()]).unwrap_err().to_string();
        assert!(e("* /** percent=10").contains("goes with `to`"));
        assert!(e("* /** to=api-v2 percent=0").contains("1 to 100"));
        assert!(e("* /** to=api-v2 idempotent=false").contains("sets nothing else"));
        assert!(e("* /** to=a/b").contains("not a service name"));
    }

    #[test]
    fn rules_match_method_and_path() {
        let r = parse("GET /api/vote/* idempotent=false max_retries=0 request_s=30").unwrap();
        assert!(r.matches("GET", "/api/vote/ihop", none));
        assert!(r.matches("get", "/api/vote/ihop", none), "methods compare without case");
        assert!(!r.matches("POST", "/api/vote/ihop", none));
        assert!(!r.matches("GET", "/api/getvotes", none));
        assert_eq!((r.idempotent, r.retry.max_retries, r.request_s), (Some(false), Some(0), Some(30)));
        let p = parse("* prefix:/reports/").unwrap();
        assert!(p.matches("DELETE", "/reports/2026", none) && !p.matches("GET", "/report", none));
        assert_eq!(parse(&describe(&r)).unwrap(), r, "describe and parse round-trip");
        assert!(validate(&[r, p]).is_ok());
    }

    #[test]
    fn bad_rules_name_the_field() {
        let e = |line: &str| validate(&[parse(line).unwrap()]).unwrap_err().to_string();
        assert!(e("GET api/vote").contains("rules[0].path"), "{}", e("GET api/vote"));
        assert!(e("G3T /x").contains("rules[0].methods"));
        assert!(e("GET /x backoff_base_ms=500 backoff_max_ms=100").contains("backoff_base_ms"));
        assert!(parse("GET").unwrap_err().contains("METHODS PATH"));
        assert!(parse("GET /x retries=2").unwrap_err().contains("not a rule setting"));
        assert!(parse("GET /x idempotent=maybe").unwrap_err().contains("true or false"));
        let too_many = vec![RouteRule::default(); MAX_RULES + 1];
        assert!(validate(&too_many).unwrap_err().to_string().contains("limit is 64"));
    }

    #[test]
    fn a_rule_overrides_only_what_it_sets() {
        let base = RetryConfig { max_retries: 2, budget_percent: 20, ..RetryConfig::default() };
        let o = RetryOverride { max_retries: Some(0), ..Default::default() };
        let r = o.apply(&base);
        assert_eq!((r.max_retries, r.budget_percent, r.backoff_max_ms), (0, 20, base.backoff_max_ms));
    }
}
