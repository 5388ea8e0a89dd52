//! `HTTPRoute` (`gateway.networking.k8s.io/v1`).

use serde::Deserialize;
use serde_yaml::Value;

use super::common::{
    Duration, HttpHeaderFilter, HttpRequestMirrorFilter, LocalObjectReference, ObjectMeta,
    ParentReference, SessionPersistence,
};
use super::null_as_default;

/// An HTTPRoute: HTTP routing rules attached to Gateway listeners.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// `gateway.networking.k8s.io/v1` (or `v1beta1`).
    pub api_version: String,
    /// `HTTPRoute`.
    pub kind: String,
    /// Object metadata. Default: empty.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state (required, though all its fields are optional).
    pub spec: HttpRouteSpec,
    /// Status written by the controller; never read by the compiler.
    pub status: Option<Value>,
}

/// Gateway API `HTTPRouteSpec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// Gateways/listeners to attach to (0..=32). Default: none (the route
    /// attaches nowhere).
    #[serde(default, deserialize_with = "null_as_default")]
    pub parent_refs: Vec<ParentReference>,
    /// Hostnames (may start with `*.`) matched against the Host header
    /// (0..=16). Default: empty, meaning the listener's hostname(s).
    #[serde(default, deserialize_with = "null_as_default")]
    pub hostnames: Vec<String>,
    /// Rules (0..=16). Default in the CRD: one rule matching path prefix `/`
    /// with no backends (not filled in here: empty means "not written").
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<HttpRouteRule>,
}

/// Gateway API `HTTPRouteRule`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Rule name, usable as a `sectionName` by policies (experimental since
    /// v1.2). Default: none.
    pub name: Option<String>,
    /// Conditions, ORed (0..=64). Default: empty, meaning one match on path
    /// prefix `/`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub matches: Vec<HttpRouteMatch>,
    /// Filters applied to matching requests, in order (0..=16). Default:
    /// none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub filters: Vec<HttpRouteFilter>,
    /// Weighted backends (0..=16). Default: none; a rule without backends
    /// and without a redirect answers 500.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backend_refs: Vec<HttpBackendRef>,
    /// Timeouts (extended). Default: none (implementation defaults).
    pub timeouts: Option<HttpRouteTimeouts>,
    /// Retry policy (experimental since v1.2). Default: none.
    pub retry: Option<HttpRouteRetry>,
    /// Session persistence (experimental). Default: none.
    pub session_persistence: Option<SessionPersistence>,
}

/// Gateway API `HTTPRouteMatch`: all present conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// Path condition. Default: `{type: PathPrefix, value: /}`.
    pub path: Option<HttpPathMatch>,
    /// Header conditions, ANDed (0..=16). Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: Vec<HttpHeaderMatch>,
    /// Query parameter conditions, ANDed (0..=16). Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub query_params: Vec<HttpQueryParamMatch>,
    /// HTTP method (`GET`, `POST`, ...). Default: any method.
    pub method: Option<String>,
}

/// Gateway API `HTTPPathMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` or `RegularExpression`. Default: `PathPrefix`.
    pub r#type: Option<String>,
    /// Path to match (starts with `/`). Default: `/`.
    pub value: Option<String>,
}

/// Gateway API `HTTPHeaderMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeaderMatch {
    /// `Exact` or `RegularExpression`. Default: `Exact`.
    pub r#type: Option<String>,
    /// Header name, case-insensitive (required).
    pub name: String,
    /// Value to match (required).
    pub value: String,
}

/// Gateway API `HTTPQueryParamMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpQueryParamMatch {
    /// `Exact` or `RegularExpression`. Default: `Exact`.
    pub r#type: Option<String>,
    /// Parameter name, case-sensitive (required).
    pub name: String,
    /// Value to match (required).
    pub value: String,
}

/// Gateway API `HTTPRouteFilter`: `type` says which one of the other fields
/// must be set (checked later).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    /// `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestMirror`,
    /// `RequestRedirect`, `URLRewrite`, `ExtensionRef`, `CORS` or
    /// `ExternalAuth` (required).
    pub r#type: String,
    /// Request header edits (core). Default: none.
    pub request_header_modifier: Option<HttpHeaderFilter>,
    /// Response header edits (extended). Default: none.
    pub response_header_modifier: Option<HttpHeaderFilter>,
    /// Request mirroring (extended). Default: none.
    pub request_mirror: Option<HttpRequestMirrorFilter>,
    /// Redirect response (core). Default: none.
    pub request_redirect: Option<HttpRequestRedirectFilter>,
    /// Host/path rewrite (extended). Default: none.
    #[serde(rename = "urlRewrite")]
    pub url_rewrite: Option<HttpUrlRewriteFilter>,
    /// Implementation-specific filter object. Default: none.
    pub extension_ref: Option<LocalObjectReference>,
    /// CORS policy (experimental). Default: none.
    pub cors: Option<HttpCorsFilter>,
    /// External authorization (experimental, v1.3); kept opaque. Default:
    /// none.
    pub external_auth: Option<Value>,
}

/// Gateway API `HTTPRequestRedirectFilter`: the parts of the redirect
/// `Location`; unset parts are copied from the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestRedirectFilter {
    /// `http` or `https`. Default: the request's scheme.
    pub scheme: Option<String>,
    /// Hostname. Default: the request's Host.
    pub hostname: Option<String>,
    /// Path rewrite. Default: the request's path.
    pub path: Option<HttpPathModifier>,
    /// Port. Default: derived from the scheme, or the listener's port when
    /// the scheme is unset.
    pub port: Option<i64>,
    /// `301`, `302` (also `303`, `307`, `308` in the experimental channel).
    /// Default: 302.
    pub status_code: Option<i64>,
}

/// Gateway API `HTTPPathModifier`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch` (required).
    pub r#type: String,
    /// New path, for `ReplaceFullPath`. Default: none.
    pub replace_full_path: Option<String>,
    /// Replacement for the matched prefix, for `ReplacePrefixMatch` (only
    /// with a `PathPrefix` match). Default: none.
    pub replace_prefix_match: Option<String>,
}

/// Gateway API `HTTPURLRewriteFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpUrlRewriteFilter {
    /// New Host header. Default: unchanged.
    pub hostname: Option<String>,
    /// Path rewrite. Default: unchanged.
    pub path: Option<HttpPathModifier>,
}

/// Gateway API `HTTPCORSFilter` (experimental).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpCorsFilter {
    /// Allowed origins (`scheme://host[:port]`, wildcards allowed, or `*`).
    /// Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow_origins: Vec<String>,
    /// Whether credentials are allowed (`Access-Control-Allow-Credentials`).
    /// Default: unset (false).
    pub allow_credentials: Option<bool>,
    /// Allowed methods, or `*`. Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers, or `*`. Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to the client, or `*`. Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub expose_headers: Vec<String>,
    /// Seconds a preflight result may be cached. Default: 5.
    pub max_age: Option<i64>,
}

/// Gateway API `HTTPRouteTimeouts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    /// Whole-request timeout, from receiving the request to the end of the
    /// response (`0s` disables). Default: implementation-specific.
    pub request: Option<Duration>,
    /// Timeout of one request to a backend, including retries' individual
    /// attempts (must be <= `request`). Default: none.
    pub backend_request: Option<Duration>,
}

/// Gateway API `HTTPRouteRetry` (experimental).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRetry {
    /// HTTP status codes (400..=599) that trigger a retry. Default:
    /// implementation-specific.
    #[serde(default, deserialize_with = "null_as_default")]
    pub codes: Vec<i64>,
    /// Maximum number of retries (`0` disables). Default:
    /// implementation-specific.
    pub attempts: Option<i64>,
    /// Minimum backoff between retries. Default: implementation-specific.
    pub backoff: Option<Duration>,
}

/// Gateway API `HTTPBackendRef`: a weighted backend with per-backend filters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBackendRef {
    /// API group of the referent. Default: `""` (core).
    pub group: Option<String>,
    /// Kind of the referent. Default: `Service`.
    pub kind: Option<String>,
    /// Name of the referent (required).
    pub name: String,
    /// Namespace of the referent. Default: the route's namespace.
    pub namespace: Option<String>,
    /// Destination port (required for Services, checked later).
    pub port: Option<i64>,
    /// Relative weight (0..=1000000). Default: 1. `0` means no traffic.
    pub weight: Option<i64>,
    /// Filters applied only to requests sent to this backend (extended).
    /// Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub filters: Vec<HttpRouteFilter>,
}

#[cfg(test)]
mod tests {
    use crate::model::tests::yaml;
    use crate::model::{Object, decode};

    const FULL: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  namespace: apps
  labels: {app: web}
  annotations: {note: "x"}
spec:
  parentRefs:
  - name: eg
    namespace: infra
    sectionName: https
    port: 443
  - {group: gateway.networking.k8s.io, kind: Gateway, name: other}
  hostnames: ["www.example.com", "*.example.org"]
  rules:
  - name: main
    matches:
    - path: {type: PathPrefix, value: /api}
      headers:
      - {type: Exact, name: x-env, value: "2"}
      - {name: x-re, type: RegularExpression, value: "^a.*"}
      queryParams:
      - {name: debug, value: "true"}
      method: GET
    - path: {type: Exact, value: /}
    - {}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-a, value: a}]
        add: [{name: x-b, value: b}]
        remove: [x-c]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        remove: [server]
    - type: RequestMirror
      requestMirror:
        backendRef: {name: shadow, port: 8080}
        percent: 10
    - type: RequestMirror
      requestMirror:
        backendRef: {kind: Service, name: shadow2, namespace: other, port: 8081}
        fraction: {numerator: 1, denominator: 3}
    - type: URLRewrite
      urlRewrite:
        hostname: internal.example.com
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
    - type: ExtensionRef
      extensionRef: {group: gateway.envoyproxy.io, kind: HTTPRouteFilter, name: direct}
    - type: CORS
      cors:
        allowOrigins: ["https://a.example.com", "https://*.example.org"]
        allowCredentials: true
        allowMethods: [GET, POST]
        allowHeaders: [x-token]
        exposeHeaders: [x-trace]
        maxAge: 600
    - type: ExternalAuth
      externalAuth:
        protocol: GRPC
        backendRef: {name: authz, port: 9000}
    backendRefs:
    - name: web
      port: 80
      weight: 0
    - name: web-canary
      namespace: canary
      port: 80
      weight: 5
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          add: [{name: x-canary, value: "1"}]
    - {group: "", kind: Service, name: plain}
    timeouts: {request: 10s, backendRequest: 2s}
    retry: {codes: [500, 503], attempts: 3, backoff: 100ms}
    sessionPersistence:
      sessionName: sid
      absoluteTimeout: 1h
      idleTimeout: 10m
      type: Cookie
      cookieConfig: {lifetimeType: Permanent}
  - matches:
    - path: {type: PathPrefix, value: /old}
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        hostname: new.example.com
        path: {type: ReplaceFullPath, replaceFullPath: /new}
        port: 8443
        statusCode: 301
"#;

    #[test]
    fn full_http_route() {
        let decoded = decode(yaml(FULL)).unwrap();
        assert!(
            decoded.unknown_fields.is_empty(),
            "{:?}",
            decoded.unknown_fields
        );
        let Object::HttpRoute(route) = decoded.object else {
            panic!("not an HTTPRoute")
        };
        assert_eq!(route.api_version, "gateway.networking.k8s.io/v1");
        assert_eq!(route.kind, "HTTPRoute");
        assert_eq!(route.metadata.name.as_deref(), Some("web"));
        assert_eq!(route.metadata.labels["app"], "web");
        let spec = &route.spec;
        assert_eq!(spec.parent_refs[0].section_name.as_deref(), Some("https"));
        assert_eq!(spec.parent_refs[0].port, Some(443));
        assert_eq!(spec.parent_refs[1].kind.as_deref(), Some("Gateway"));
        assert_eq!(spec.hostnames, vec!["www.example.com", "*.example.org"]);

        let rule = &spec.rules[0];
        assert_eq!(rule.name.as_deref(), Some("main"));
        assert_eq!(rule.matches.len(), 3);
        let m = &rule.matches[0];
        let p = m.path.as_ref().unwrap();
        assert_eq!(p.r#type.as_deref(), Some("PathPrefix"));
        assert_eq!(p.value.as_deref(), Some("/api"));
        assert_eq!(m.headers[0].value, "2");
        assert_eq!(m.headers[1].r#type.as_deref(), Some("RegularExpression"));
        assert_eq!(m.query_params[0].r#type, None);
        assert_eq!(m.method.as_deref(), Some("GET"));
        assert_eq!(rule.matches[2], Default::default());

        let f = &rule.filters;
        assert_eq!(f.len(), 8);
        let rhm = f[0].request_header_modifier.as_ref().unwrap();
        assert_eq!(rhm.set[0].name, "x-a");
        assert_eq!(rhm.add[0].value, "b");
        assert_eq!(rhm.remove, vec!["x-c"]);
        assert_eq!(
            f[1].response_header_modifier.as_ref().unwrap().remove,
            vec!["server"]
        );
        let mirror = f[2].request_mirror.as_ref().unwrap();
        assert_eq!(mirror.backend_ref.name, "shadow");
        assert_eq!(mirror.percent, Some(10));
        let frac = f[3]
            .request_mirror
            .as_ref()
            .unwrap()
            .fraction
            .as_ref()
            .unwrap();
        assert_eq!((frac.numerator, frac.denominator), (1, Some(3)));
        let rw = f[4].url_rewrite.as_ref().unwrap();
        assert_eq!(rw.hostname.as_deref(), Some("internal.example.com"));
        assert_eq!(
            rw.path.as_ref().unwrap().replace_prefix_match.as_deref(),
            Some("/v2")
        );
        assert_eq!(f[5].extension_ref.as_ref().unwrap().kind, "HTTPRouteFilter");
        let cors = f[6].cors.as_ref().unwrap();
        assert_eq!(cors.allow_credentials, Some(true));
        assert_eq!(cors.max_age, Some(600));
        assert_eq!(cors.expose_headers, vec!["x-trace"]);
        assert!(f[7].external_auth.is_some());

        assert_eq!(rule.backend_refs[0].weight, Some(0));
        assert_eq!(rule.backend_refs[1].weight, Some(5));
        assert_eq!(rule.backend_refs[1].filters.len(), 1);
        assert_eq!(rule.backend_refs[2].weight, None);
        assert_eq!(rule.backend_refs[2].port, None);
        assert_eq!(rule.backend_refs[2].group.as_deref(), Some(""));
        let t = rule.timeouts.as_ref().unwrap();
        assert_eq!(t.request.as_deref(), Some("10s"));
        assert_eq!(t.backend_request.as_deref(), Some("2s"));
        let retry = rule.retry.as_ref().unwrap();
        assert_eq!(retry.codes, vec![500, 503]);
        assert_eq!(retry.attempts, Some(3));
        let sp = rule.session_persistence.as_ref().unwrap();
        assert_eq!(sp.session_name.as_deref(), Some("sid"));
        assert_eq!(
            sp.cookie_config.as_ref().unwrap().lifetime_type.as_deref(),
            Some("Permanent")
        );

        let redirect = spec.rules[1].filters[0].request_redirect.as_ref().unwrap();
        assert_eq!(redirect.scheme.as_deref(), Some("https"));
        assert_eq!(redirect.port, Some(8443));
        assert_eq!(redirect.status_code, Some(301));
        assert_eq!(redirect.path.as_ref().unwrap().r#type, "ReplaceFullPath");
    }

    #[test]
    fn v1beta1_http_route_is_accepted() {
        let text = FULL.replace(
            "gateway.networking.k8s.io/v1\nkind",
            "gateway.networking.k8s.io/v1beta1\nkind",
        );
        let decoded = decode(yaml(&text)).unwrap();
        assert!(matches!(decoded.object, Object::HttpRoute(_)));
    }

    #[test]
    fn empty_spec() {
        let decoded = decode(yaml(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {}\n",
        ))
        .unwrap();
        let Object::HttpRoute(route) = decoded.object else {
            panic!("not an HTTPRoute")
        };
        assert_eq!(route.spec, Default::default());
    }
}
