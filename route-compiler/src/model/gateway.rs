//! `Gateway` (`gateway.networking.k8s.io/v1`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use super::common::{LabelSelector, ObjectMeta};
use super::null_as_default;

/// A Gateway: a set of listeners bound to addresses, implemented by the
/// controller of its GatewayClass.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// `gateway.networking.k8s.io/v1` (or `v1beta1`).
    pub api_version: String,
    /// `Gateway`.
    pub kind: String,
    /// Object metadata. Default: empty.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state (required).
    pub spec: GatewaySpec,
    /// Status written by the controller; never read by the compiler.
    pub status: Option<Value>,
}

/// Gateway API `GatewaySpec`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Name of the GatewayClass this Gateway belongs to (required).
    pub gateway_class_name: String,
    /// Listeners (required, 1..=64, names unique).
    pub listeners: Vec<Listener>,
    /// Addresses requested for the Gateway (extended). Default: chosen by
    /// the implementation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub addresses: Vec<GatewaySpecAddress>,
    /// Infrastructure labels/annotations/parameters (extended). Default: none.
    pub infrastructure: Option<GatewayInfrastructure>,
    /// Client certificate the Gateway presents to backends (experimental,
    /// v1.2/v1.3). Default: none.
    #[serde(rename = "backendTLS")]
    pub backend_tls: Option<GatewayBackendTls>,
    /// Which ListenerSets may attach to this Gateway (experimental, v1.3).
    /// Default: `{namespaces: {from: None}}`.
    pub allowed_listeners: Option<AllowedListeners>,
    /// Gateway-wide TLS settings of newer (v1.4+) experimental CRDs; kept
    /// opaque so such manifests do not warn. Default: none.
    pub tls: Option<Value>,
}

/// Gateway API `Listener`: a logical endpoint (port, protocol, hostname)
/// that routes attach to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Name, unique within the Gateway; routes target it via `sectionName`
    /// (required).
    pub name: String,
    /// Hostname (may start with `*.`) requests must match. Default: all
    /// hostnames. Must be unset for TCP/UDP.
    pub hostname: Option<String>,
    /// Network port (required, 1..=65535).
    pub port: i64,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP` or a domain-prefixed custom
    /// protocol (required).
    pub protocol: String,
    /// TLS settings; required for HTTPS/TLS, forbidden for HTTP/TCP/UDP.
    /// Default: none.
    pub tls: Option<GatewayTlsConfig>,
    /// Which routes may attach. Default: `{namespaces: {from: Same}}` with
    /// the kinds implied by the protocol.
    pub allowed_routes: Option<AllowedRoutes>,
}

/// Gateway API `GatewayTLSConfig` of a listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTlsConfig {
    /// `Terminate` or `Passthrough`. Default: `Terminate`.
    pub mode: Option<String>,
    /// Certificates (Secrets of type `kubernetes.io/tls`) to serve; at least
    /// one when terminating. Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub certificate_refs: Vec<SecretObjectReference>,
    /// Client-certificate validation (experimental). Default: none.
    pub frontend_validation: Option<FrontendTlsValidation>,
    /// Implementation-specific TLS options. Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

/// Gateway API `SecretObjectReference`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// API group of the referent. Default: `""` (core).
    pub group: Option<String>,
    /// Kind of the referent. Default: `Secret`.
    pub kind: Option<String>,
    /// Name of the referent (required).
    pub name: String,
    /// Namespace of the referent. Default: the Gateway's namespace; another
    /// namespace needs a ReferenceGrant.
    pub namespace: Option<String>,
}

/// Gateway API `FrontendTLSValidation` (experimental): how a listener
/// validates client certificates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTlsValidation {
    /// CA certificates (usually ConfigMaps) to validate client certificates
    /// against. Default: empty (required 1..=8 by the CRD; checked later).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ca_certificate_refs: Vec<ObjectReference>,
    /// `AllowValidOnly` or `AllowInsecureFallback` (added after v1.3; kept so
    /// newer manifests do not warn). Default: `AllowValidOnly`.
    pub mode: Option<String>,
}

/// Gateway API `ObjectReference`: a reference with explicit group and kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// API group of the referent (required; `""` for core).
    pub group: String,
    /// Kind of the referent, e.g. `ConfigMap` (required).
    pub kind: String,
    /// Name of the referent (required).
    pub name: String,
    /// Namespace of the referent. Default: the referring object's namespace.
    pub namespace: Option<String>,
}

/// Gateway API `AllowedRoutes` of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Namespaces routes may come from. Default: `{from: Same}`.
    pub namespaces: Option<RouteNamespaces>,
    /// Route kinds allowed. Default: empty, meaning the kinds implied by the
    /// listener's protocol (HTTPRoute/GRPCRoute for HTTP(S)).
    #[serde(default, deserialize_with = "null_as_default")]
    pub kinds: Vec<RouteGroupKind>,
}

/// Gateway API `RouteNamespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `All`, `Same` or `Selector`. Default: `Same`.
    pub from: Option<String>,
    /// Namespace label selector, used when `from` is `Selector`. Default:
    /// none.
    pub selector: Option<LabelSelector>,
}

/// Gateway API `RouteGroupKind`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// API group of the route kind. Default: `gateway.networking.k8s.io`.
    pub group: Option<String>,
    /// Route kind, e.g. `HTTPRoute` (required).
    pub kind: String,
}

/// Gateway API `GatewaySpecAddress` (`GatewayAddress` before v1.3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpecAddress {
    /// `IPAddress`, `Hostname`, `NamedAddress` or domain-prefixed. Default:
    /// `IPAddress`.
    pub r#type: Option<String>,
    /// The address. Required before v1.3; v1.3 allows leaving it empty to
    /// ask for a dynamically assigned address of `type`. Default: none.
    pub value: Option<String>,
}

/// Gateway API `GatewayInfrastructure`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    /// Labels to put on generated resources. Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Annotations to put on generated resources. Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// Implementation-specific parameters object (e.g. Envoy Gateway's
    /// `EnvoyProxy`). Default: none.
    pub parameters_ref: Option<LocalParametersReference>,
}

/// Gateway API `LocalParametersReference`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalParametersReference {
    /// API group of the referent (required).
    pub group: String,
    /// Kind of the referent (required).
    pub kind: String,
    /// Name of the referent (required).
    pub name: String,
}

/// Gateway API `GatewayBackendTLS` (experimental `spec.backendTLS`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayBackendTls {
    /// Client certificate presented to backends that ask for one. Default:
    /// none.
    pub client_certificate_ref: Option<SecretObjectReference>,
}

/// Gateway API `AllowedListeners` (experimental, ListenerSet attachment).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedListeners {
    /// Namespaces ListenerSets may come from. Default: `{from: None}`.
    pub namespaces: Option<ListenerNamespaces>,
}

/// Gateway API `ListenerNamespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerNamespaces {
    /// `All`, `Same`, `Selector` or `None`. Default: `None`.
    pub from: Option<String>,
    /// Namespace selector used when `from` is `Selector`. Default: none.
    pub selector: Option<LabelSelector>,
}

#[cfg(test)]
mod tests {
    use crate::model::tests::{path, yaml};
    use crate::model::{Object, decode};

    #[test]
    fn gateway_with_selector() {
        let decoded = decode(yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: eg
  namespace: infra
  creationTimestamp: "2024-01-01T00:00:00Z"
spec:
  gatewayClassName: eg
  addresses:
  - type: IPAddress
    value: 10.0.0.1
  - type: Hostname
  infrastructure:
    labels: {team: net}
    annotations: {a: b}
    parametersRef: {group: gateway.envoyproxy.io, kind: EnvoyProxy, name: custom}
  backendTLS:
    clientCertificateRef: {name: client-cert}
  allowedListeners:
    namespaces: {from: Same}
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels: {expose: "true"}
          matchExpressions:
          - {key: env, operator: In, values: [prod, staging]}
          - {key: legacy, operator: DoesNotExist}
      kinds:
      - kind: HTTPRoute
      - {group: gateway.networking.k8s.io, kind: GRPCRoute}
  - name: https
    hostname: "*.example.com"
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs:
      - {kind: Secret, name: wildcard, namespace: certs}
      frontendValidation:
        caCertificateRefs:
        - {group: "", kind: ConfigMap, name: ca}
      options:
        gateway.envoyproxy.io/min-version: "1.3"
status:
  conditions: []
"#,
        ))
        .unwrap();
        assert!(
            decoded.unknown_fields.is_empty(),
            "{:?}",
            decoded.unknown_fields
        );
        let Object::Gateway(gw) = decoded.object else {
            panic!("not a Gateway")
        };
        assert_eq!(gw.metadata.namespace.as_deref(), Some("infra"));
        assert_eq!(gw.spec.gateway_class_name, "eg");
        assert_eq!(gw.spec.addresses.len(), 2);
        assert_eq!(gw.spec.addresses[1].value, None);
        assert_eq!(
            gw.spec
                .infrastructure
                .as_ref()
                .unwrap()
                .parameters_ref
                .as_ref()
                .unwrap()
                .kind,
            "EnvoyProxy"
        );
        let http = &gw.spec.listeners[0];
        assert_eq!(http.port, 80);
        assert!(http.tls.is_none());
        let allowed = http.allowed_routes.as_ref().unwrap();
        let ns = allowed.namespaces.as_ref().unwrap();
        assert_eq!(ns.from.as_deref(), Some("Selector"));
        let sel = ns.selector.as_ref().unwrap();
        assert_eq!(
            sel.match_labels.get("expose").map(String::as_str),
            Some("true")
        );
        assert_eq!(sel.match_expressions[0].values, vec!["prod", "staging"]);
        assert!(sel.match_expressions[1].values.is_empty());
        assert_eq!(allowed.kinds[0].group, None);
        assert_eq!(allowed.kinds[1].kind, "GRPCRoute");
        let https = &gw.spec.listeners[1];
        assert_eq!(https.hostname.as_deref(), Some("*.example.com"));
        let tls = https.tls.as_ref().unwrap();
        assert_eq!(tls.certificate_refs[0].namespace.as_deref(), Some("certs"));
        assert_eq!(
            tls.frontend_validation
                .as_ref()
                .unwrap()
                .ca_certificate_refs[0]
                .kind,
            "ConfigMap"
        );
        assert_eq!(tls.options.len(), 1);
    }

    #[test]
    fn gateway_requires_listener_fields() {
        let err = decode(yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: eg}
spec:
  gatewayClassName: eg
  listeners:
  - {name: http, protocol: HTTP}
"#,
        ))
        .unwrap_err();
        match err {
            crate::model::DecodeError::Schema { path: p, message } => {
                assert_eq!(p, path("spec.listeners[0]"));
                assert_eq!(message, "missing field `port`");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
