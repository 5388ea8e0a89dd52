//! `EndpointSlice` (`discovery.k8s.io/v1`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use super::common::ObjectMeta;
use super::null_as_default;

/// Label on an EndpointSlice naming the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An EndpointSlice: a subset of a Service's endpoints. Unlike the Gateway
/// API kinds its fields sit at the top level, not under `spec`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// `discovery.k8s.io/v1`.
    pub api_version: String,
    /// `EndpointSlice`.
    pub kind: String,
    /// Object metadata; `labels["kubernetes.io/service-name"]`
    /// ([`SERVICE_NAME_LABEL`]) names the owning Service. Default: empty.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN` (required).
    pub address_type: String,
    /// Endpoints (required by the schema, at most 1000; an empty slice is
    /// written `endpoints: null` or `[]`, both accepted). Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub endpoints: Vec<Endpoint>,
    /// Ports every endpoint exposes (at most 100). Default: empty, meaning
    /// no ports are defined.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<EndpointPort>,
}

impl EndpointSlice {
    /// The owning Service's name, from the `kubernetes.io/service-name` label.
    pub fn service_name(&self) -> Option<&str> {
        self.metadata
            .labels
            .get(SERVICE_NAME_LABEL)
            .map(String::as_str)
    }
}

/// Kubernetes `Endpoint`: one backend, possibly with several addresses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Addresses of the endpoint, of the slice's `addressType` (required,
    /// 1..=100; consumers use the first).
    pub addresses: Vec<String>,
    /// Readiness. Default: all unknown (treated as ready).
    pub conditions: Option<EndpointConditions>,
    /// DNS hostname of the endpoint. Default: none.
    pub hostname: Option<String>,
    /// Object (usually a Pod) backing the endpoint; opaque. Default: none.
    pub target_ref: Option<Value>,
    /// Node hosting the endpoint. Default: none.
    pub node_name: Option<String>,
    /// Zone of the endpoint. Default: none.
    pub zone: Option<String>,
    /// Topology-aware routing hints; opaque. Default: none.
    pub hints: Option<Value>,
    /// Deprecated topology labels (v1beta1 leftover). Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub deprecated_topology: BTreeMap<String, String>,
}

/// Kubernetes `EndpointConditions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Ready to receive traffic. Default: unknown, to be read as ready.
    pub ready: Option<bool>,
    /// Serving (may be true while terminating). Default: unknown, read as
    /// the value of `ready`.
    pub serving: Option<bool>,
    /// Terminating. Default: unknown, read as false.
    pub terminating: Option<bool>,
}

/// Kubernetes `EndpointPort`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    /// Port name, matching the Service port's name. Default: `""`.
    pub name: Option<String>,
    /// Port number. Default: none (any port).
    pub port: Option<i64>,
    /// `TCP`, `UDP` or `SCTP`. Default: `TCP`.
    pub protocol: Option<String>,
    /// Application protocol, e.g. `kubernetes.io/h2c`. Default: none.
    pub app_protocol: Option<String>,
}

#[cfg(test)]
mod tests {
    use crate::model::tests::{path, yaml};
    use crate::model::{DecodeError, Object, decode};

    #[test]
    fn endpoint_slice() {
        let decoded = decode(yaml(
            r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: apps
  labels:
    kubernetes.io/service-name: web
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
  ownerReferences: [{apiVersion: v1, kind: Service, name: web, uid: x}]
addressType: IPv4
endpoints:
- addresses: ["10.1.0.5"]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: node-a
  zone: us-east-1a
  targetRef: {kind: Pod, name: web-1, namespace: apps}
  hints: {forZones: [{name: us-east-1a}]}
- addresses: ["10.1.0.6"]
  conditions: {ready: false}
  hostname: web-2
  deprecatedTopology: {kubernetes.io/hostname: node-b}
- addresses: ["10.1.0.7"]
ports:
- {name: http, port: 8080, protocol: TCP, appProtocol: http}
- {name: grpc, port: 9000}
"#,
        ))
        .unwrap();
        assert!(
            decoded.unknown_fields.is_empty(),
            "{:?}",
            decoded.unknown_fields
        );
        let Object::EndpointSlice(slice) = decoded.object else {
            panic!("not an EndpointSlice")
        };
        assert_eq!(slice.service_name(), Some("web"));
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(slice.endpoints.len(), 3);
        let e0 = &slice.endpoints[0];
        assert_eq!(e0.addresses, vec!["10.1.0.5"]);
        let c = e0.conditions.as_ref().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(e0.node_name.as_deref(), Some("node-a"));
        assert!(e0.target_ref.is_some() && e0.hints.is_some());
        let c1 = slice.endpoints[1].conditions.as_ref().unwrap();
        assert_eq!((c1.ready, c1.serving), (Some(false), None));
        assert_eq!(slice.endpoints[1].deprecated_topology.len(), 1);
        assert!(slice.endpoints[2].conditions.is_none());
        assert_eq!(slice.ports[0].port, Some(8080));
        assert_eq!(slice.ports[0].app_protocol.as_deref(), Some("http"));
        assert_eq!(slice.ports[1].protocol, None);
    }

    #[test]
    fn empty_slice_with_null_endpoints() {
        let decoded = decode(yaml(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\nendpoints: null\nports: null\n",
        ))
        .unwrap();
        let Object::EndpointSlice(slice) = decoded.object else {
            panic!("not an EndpointSlice")
        };
        assert!(slice.endpoints.is_empty() && slice.ports.is_empty());
        assert_eq!(slice.service_name(), None);
    }

    #[test]
    fn endpoint_addresses_required_and_ports_are_ints() {
        let err = decode(yaml(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\nendpoints: [{conditions: {}}]\n",
        ))
        .unwrap_err();
        assert!(
            matches!(err, DecodeError::Schema { ref path, ref message } if *path == super::super::tests::path("endpoints[0]") && message == "missing field `addresses`"),
            "{err:?}"
        );
        let err = decode(yaml(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\nendpoints: []\nports: [{port: '80'}]\n",
        ))
        .unwrap_err();
        match err {
            DecodeError::Schema { path: p, message } => {
                assert_eq!(p, path("ports[0].port"));
                assert!(message.contains("expected i64"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
