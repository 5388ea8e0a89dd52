//! `GRPCRoute` (`gateway.networking.k8s.io/v1`).

use serde::Deserialize;
use serde_yaml::Value;

use super::common::{
    HttpHeaderFilter, HttpRequestMirrorFilter, LocalObjectReference, ObjectMeta, ParentReference,
    SessionPersistence,
};
use super::null_as_default;

/// A GRPCRoute: gRPC routing rules attached to Gateway listeners.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRoute {
    /// `gateway.networking.k8s.io/v1` (or `v1beta1` as accepted here).
    pub api_version: String,
    /// `GRPCRoute`.
    pub kind: String,
    /// Object metadata. Default: empty.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state (required).
    pub spec: GrpcRouteSpec,
    /// Status written by the controller; never read by the compiler.
    pub status: Option<Value>,
}

/// Gateway API `GRPCRouteSpec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    /// Gateways/listeners to attach to (0..=32). Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub parent_refs: Vec<ParentReference>,
    /// Hostnames matched against `:authority` (0..=16). Default: empty,
    /// meaning the listener's hostname(s).
    #[serde(default, deserialize_with = "null_as_default")]
    pub hostnames: Vec<String>,
    /// Rules (0..=16). Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<GrpcRouteRule>,
}

/// Gateway API `GRPCRouteRule`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRule {
    /// Rule name (experimental since v1.2). Default: none.
    pub name: Option<String>,
    /// Conditions, ORed (0..=64). Default: empty, meaning all gRPC traffic.
    #[serde(default, deserialize_with = "null_as_default")]
    pub matches: Vec<GrpcRouteMatch>,
    /// Filters applied to matching requests, in order (0..=16). Default:
    /// none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub filters: Vec<GrpcRouteFilter>,
    /// Weighted backends (0..=16). Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backend_refs: Vec<GrpcBackendRef>,
    /// Session persistence (experimental). Default: none.
    pub session_persistence: Option<SessionPersistence>,
}

/// Gateway API `GRPCRouteMatch`: all present conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteMatch {
    /// Service/method condition. Default: any method.
    pub method: Option<GrpcMethodMatch>,
    /// Header conditions, ANDed (0..=16). Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: Vec<GrpcHeaderMatch>,
}

/// Gateway API `GRPCMethodMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcMethodMatch {
    /// `Exact` or `RegularExpression`. Default: `Exact`.
    pub r#type: Option<String>,
    /// Fully-qualified service name, e.g. `foo.bar.Svc`. Default: any
    /// service (at least one of `service`/`method` must be set).
    pub service: Option<String>,
    /// Method name. Default: any method.
    pub method: Option<String>,
}

/// Gateway API `GRPCHeaderMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcHeaderMatch {
    /// `Exact` or `RegularExpression`. Default: `Exact`.
    pub r#type: Option<String>,
    /// Header (metadata) name, case-insensitive (required).
    pub name: String,
    /// Value to match (required).
    pub value: String,
}

/// Gateway API `GRPCRouteFilter`: `type` says which other field must be set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteFilter {
    /// `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestMirror` or
    /// `ExtensionRef` (required).
    pub r#type: String,
    /// Request header edits. Default: none.
    pub request_header_modifier: Option<HttpHeaderFilter>,
    /// Response header edits. Default: none.
    pub response_header_modifier: Option<HttpHeaderFilter>,
    /// Request mirroring. Default: none.
    pub request_mirror: Option<HttpRequestMirrorFilter>,
    /// Implementation-specific filter object. Default: none.
    pub extension_ref: Option<LocalObjectReference>,
}

/// Gateway API `GRPCBackendRef`: a weighted backend with per-backend filters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcBackendRef {
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
    /// Filters applied only to requests sent to this backend. Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub filters: Vec<GrpcRouteFilter>,
}

#[cfg(test)]
mod tests {
    use crate::model::tests::{path, yaml};
    use crate::model::{Object, decode};

    #[test]
    fn grpc_route() {
        let decoded = decode(yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: apps}
spec:
  parentRefs: [{name: eg, sectionName: grpc}]
  hostnames: [grpc.example.com]
  rules:
  - name: echo
    matches:
    - method: {service: echo.Echo, method: Say}
      headers:
      - {name: x-tenant, value: acme}
    - method: {type: RegularExpression, service: "echo\\..*"}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-a, value: "1"}]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {remove: [x-b]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 9000}}
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: Thing, name: t}
    backendRefs:
    - name: echo
      port: 9000
      weight: 0
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {add: [{name: x-b, value: b}]}
    sessionPersistence: {type: Header, sessionName: x-session}
  - backendRefs: [{name: fallback, port: 9001}]
    extra: 1
"#,
        ))
        .unwrap();
        assert_eq!(decoded.unknown_fields, vec![path("spec.rules[1].extra")]);
        let Object::GrpcRoute(route) = decoded.object else {
            panic!("not a GRPCRoute")
        };
        let rule = &route.spec.rules[0];
        assert_eq!(rule.name.as_deref(), Some("echo"));
        let m = rule.matches[0].method.as_ref().unwrap();
        assert_eq!(m.r#type, None);
        assert_eq!(m.service.as_deref(), Some("echo.Echo"));
        assert_eq!(m.method.as_deref(), Some("Say"));
        assert_eq!(rule.matches[0].headers[0].name, "x-tenant");
        assert_eq!(
            rule.matches[1].method.as_ref().unwrap().r#type.as_deref(),
            Some("RegularExpression")
        );
        assert_eq!(rule.filters.len(), 4);
        assert_eq!(
            rule.filters[2]
                .request_mirror
                .as_ref()
                .unwrap()
                .backend_ref
                .port,
            Some(9000)
        );
        assert_eq!(rule.filters[3].extension_ref.as_ref().unwrap().name, "t");
        assert_eq!(rule.backend_refs[0].weight, Some(0));
        assert_eq!(rule.backend_refs[0].filters.len(), 1);
        assert_eq!(
            rule.session_persistence.as_ref().unwrap().r#type.as_deref(),
            Some("Header")
        );
        assert!(route.spec.rules[1].matches.is_empty());
    }

    #[test]
    fn grpc_filter_type_required() {
        let err = decode(yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc}
spec:
  rules:
  - filters:
    - requestHeaderModifier: {}
"#,
        ))
        .unwrap_err();
        match err {
            crate::model::DecodeError::Schema { path: p, message } => {
                assert_eq!(p, path("spec.rules[0].filters[0]"));
                assert_eq!(message, "missing field `type`");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
