//! The resolved routing model: what a matched request gets.
//!
//! These are the types the compiler produces from validated Gateway API
//! objects and the route table carries to the proxy. They are plain data:
//! every reference to another Kubernetes object has already been resolved
//! (backendRefs to endpoints, ReferenceGrants checked), every duration parsed
//! and every filter checked, so the proxy never re-validates anything.
//!
//! # Invariants
//!
//! * A [`Rule`] whose `redirect` is set has no backends the proxy will use:
//!   the redirect is answered by the proxy itself.
//! * [`Rule::total_weight`] is the sum of the weights of its backends, and
//!   [`Rule::pick`] maps `0..total_weight` onto them proportionally.
//! * Header names in filters and predicates are lower-case.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Which Gateway API route kind an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RouteKind {
    /// `HTTPRoute`.
    Http,
    /// `GRPCRoute`.
    Grpc,
}

impl RouteKind {
    /// The Kubernetes `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        }
    }
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A namespaced object name, `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectName {
    /// `metadata.namespace` (defaults to `default`).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A route object as the table remembers it: identity plus its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// HTTPRoute or GRPCRoute.
    pub kind: RouteKind,
    /// `namespace/name` of the route.
    pub name: ObjectName,
    /// The rules, in the order they are written.
    pub rules: Vec<Rule>,
}

/// One rule of a route: what every request matched by one of its matches gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// `rules[].name`, where given.
    pub name: Option<String>,
    /// Filters, in the order they are listed; redirect and rewrite are
    /// mutually exclusive (validated).
    pub filters: Vec<Filter>,
    /// Weighted backends, in the order they are listed.
    pub backends: Vec<Backend>,
    /// Sum of the backends' weights.
    pub total_weight: u64,
    /// `timeouts.request` and `timeouts.backendRequest`.
    pub timeouts: Timeouts,
}

impl Rule {
    /// Whether the rule answers with a redirect instead of forwarding.
    pub fn redirect(&self) -> Option<&Redirect> {
        self.filters.iter().find_map(|f| match f {
            Filter::RequestRedirect(r) => Some(r),
            _ => None,
        })
    }

    /// The backend that a uniformly random `roll` in `0..total_weight`
    /// selects, or `None` when every weight is zero.
    ///
    /// Weighted random choice is done by the caller drawing `roll` from its
    /// own generator, so that no generator is shared between workers.
    pub fn pick(&self, roll: u64) -> Option<&Backend> {
        if self.total_weight == 0 {
            return None;
        }
        let mut roll = roll % self.total_weight;
        for backend in &self.backends {
            let weight = u64::from(backend.weight);
            if roll < weight {
                return Some(backend);
            }
            roll -= weight;
        }
        None
    }

    /// The status the proxy answers by itself for every request this rule
    /// takes, if that does not depend on the random backend choice: a
    /// redirect's code, 500 when no backend is usable because none resolves,
    /// 503 when every weight is zero or no chosen backend has a ready
    /// endpoint. `None` when the request is forwarded (or may be).
    pub fn fixed_status(&self) -> Option<u16> {
        if let Some(redirect) = self.redirect() {
            return Some(redirect.status_code);
        }
        if self.backends.is_empty() {
            return Some(500);
        }
        if self.total_weight == 0 {
            return Some(503);
        }
        let weighted = || self.backends.iter().filter(|b| b.weight > 0);
        if weighted().all(|b| !b.is_resolved()) {
            return Some(500);
        }
        if weighted().all(|b| b.endpoints.is_empty()) {
            return Some(503);
        }
        None
    }
}

/// How the proxy speaks to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpstreamProtocol {
    /// In the client's protocol (gRPC always over HTTP/2).
    Inherit,
    /// HTTP/2 with prior knowledge (`appProtocol: kubernetes.io/h2c`).
    H2c,
}

/// Why a backendRef does not resolve to endpoints (the share of requests it
/// would get is answered with 500, as in Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unresolved {
    /// No EndpointSlice is labelled with the Service's name.
    NoService,
    /// The slices have no port that matches the backendRef's port.
    NoPort,
    /// A reference into another namespace without a ReferenceGrant.
    NotPermitted,
    /// A kind other than a core `Service`.
    UnsupportedKind(String),
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unresolved::NoService => f.write_str("no EndpointSlice for this Service"),
            Unresolved::NoPort => f.write_str("no EndpointSlice port matches"),
            Unresolved::NotPermitted => {
                f.write_str("cross-namespace reference not allowed by a ReferenceGrant")
            }
            Unresolved::UnsupportedKind(kind) => write!(f, "unsupported backend kind {kind}"),
        }
    }
}

/// A weighted backend (a Kubernetes Service port) and its ready endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// The Service's `namespace/name`.
    pub service: ObjectName,
    /// The backendRef's port.
    pub port: u16,
    /// Relative weight (0 gets nothing).
    pub weight: u32,
    /// How to speak to it.
    pub protocol: UpstreamProtocol,
    /// Ready endpoints, in slice order, deduplicated.
    pub endpoints: Vec<SocketAddr>,
    /// Set when the reference does not resolve.
    pub unresolved: Option<Unresolved>,
}

impl Backend {
    /// Whether the backendRef resolved to a Service.
    pub fn is_resolved(&self) -> bool {
        self.unresolved.is_none()
    }
}

/// Timeouts of a rule, in milliseconds; `None` means no timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// `timeouts.request`: the whole exchange with the client.
    pub request_ms: Option<u64>,
    /// `timeouts.backendRequest`: one request to a backend.
    pub backend_request_ms: Option<u64>,
}

/// A header to set or add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderValue {
    /// Lower-case header name.
    pub name: String,
    /// The value, as written.
    pub value: String,
}

/// RequestHeaderModifier / ResponseHeaderModifier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderModifier {
    /// Replace (or add) these headers.
    pub set: Vec<HeaderValue>,
    /// Append these headers.
    pub add: Vec<HeaderValue>,
    /// Remove these headers (lower-case names).
    pub remove: Vec<String>,
}

/// How a redirect or rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathModifier {
    /// Replace the whole path.
    ReplaceFullPath(String),
    /// Replace the matched `PathPrefix` (given here as `prefix`) with `with`.
    ReplacePrefixMatch {
        /// The matched prefix, without a trailing `/`.
        prefix: String,
        /// What it is replaced with.
        with: String,
    },
}

/// RequestRedirect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// `http` or `https`, where given.
    pub scheme: Option<String>,
    /// New host, where given.
    pub hostname: Option<String>,
    /// New path, where given.
    pub path: Option<PathModifier>,
    /// New port, where given.
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308 (default 302).
    pub status_code: u16,
}

/// URLRewrite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewrite {
    /// New Host header, where given.
    pub hostname: Option<String>,
    /// New path, where given.
    pub path: Option<PathModifier>,
}

/// RequestMirror: a copy of each request (a `percent` of them) goes to
/// another backend, whose answer is discarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mirror {
    /// Where the copy goes.
    pub backend: Backend,
    /// Share of requests mirrored, as numerator/denominator.
    pub numerator: u32,
    /// Denominator of the share (`percent` becomes n/100).
    pub denominator: u32,
}

/// A rule's filter, in listed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    /// RequestHeaderModifier.
    RequestHeaderModifier(HeaderModifier),
    /// ResponseHeaderModifier.
    ResponseHeaderModifier(HeaderModifier),
    /// RequestRedirect.
    RequestRedirect(Redirect),
    /// URLRewrite.
    UrlRewrite(Rewrite),
    /// RequestMirror.
    RequestMirror(Mirror),
}

impl Filter {
    /// The Gateway API filter type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Filter::RequestHeaderModifier(_) => "RequestHeaderModifier",
            Filter::ResponseHeaderModifier(_) => "ResponseHeaderModifier",
            Filter::RequestRedirect(_) => "RequestRedirect",
            Filter::UrlRewrite(_) => "URLRewrite",
            Filter::RequestMirror(_) => "RequestMirror",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, weight: u32) -> Backend {
        Backend {
            service: ObjectName {
                namespace: "ns".into(),
                name: name.into(),
            },
            port: 80,
            weight,
            protocol: UpstreamProtocol::Inherit,
            endpoints: vec![SocketAddr::from(([127, 0, 0, 1], 80))],
            unresolved: None,
        }
    }

    fn rule(backends: Vec<Backend>) -> Rule {
        let total_weight = backends.iter().map(|b| u64::from(b.weight)).sum();
        Rule {
            name: None,
            filters: vec![],
            backends,
            total_weight,
            timeouts: Timeouts::default(),
        }
    }

    #[test]
    fn pick_is_proportional_to_weight() {
        let r = rule(vec![backend("a", 90), backend("zero", 0), backend("b", 10)]);
        let mut counts = [0u32; 2];
        for roll in 0..100 {
            match r.pick(roll).map(|b| b.service.name.as_str()) {
                Some("a") => counts[0] += 1,
                Some("b") => counts[1] += 1,
                other => panic!("unexpected pick {other:?}"),
            }
        }
        assert_eq!(counts, [90, 10]);
    }

    #[test]
    fn fixed_status_follows_gateway_api() {
        assert_eq!(rule(vec![]).fixed_status(), Some(500));
        assert_eq!(rule(vec![backend("a", 0)]).fixed_status(), Some(503));
        let mut unresolved = backend("a", 1);
        unresolved.unresolved = Some(Unresolved::NoService);
        unresolved.endpoints.clear();
        assert_eq!(rule(vec![unresolved.clone()]).fixed_status(), Some(500));
        let mut empty = backend("a", 1);
        empty.endpoints.clear();
        assert_eq!(rule(vec![empty]).fixed_status(), Some(503));
        assert_eq!(rule(vec![unresolved, backend("b", 1)]).fixed_status(), None);
    }
}
