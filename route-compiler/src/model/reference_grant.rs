//! `ReferenceGrant` (`gateway.networking.k8s.io/v1beta1`, also `v1`).

use serde::Deserialize;
use serde_yaml::Value;

use super::common::ObjectMeta;

/// A ReferenceGrant: allows objects of the listed kinds in other namespaces
/// (`from`) to reference objects in this grant's namespace (`to`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrant {
    /// `gateway.networking.k8s.io/v1beta1` (or `v1`).
    pub api_version: String,
    /// `ReferenceGrant`.
    pub kind: String,
    /// Object metadata; its namespace is the target namespace. Default:
    /// empty.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state (required).
    pub spec: ReferenceGrantSpec,
    /// Status (the kind defines none); never read by the compiler.
    pub status: Option<Value>,
}

/// Gateway API `ReferenceGrantSpec`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// Who may refer (required, 1..=16).
    pub from: Vec<ReferenceGrantFrom>,
    /// What may be referred to (required, 1..=16).
    pub to: Vec<ReferenceGrantTo>,
}

/// Gateway API `ReferenceGrantFrom`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    /// API group of the referring kind (required; `""` for core).
    pub group: String,
    /// Referring kind, e.g. `HTTPRoute` (required).
    pub kind: String,
    /// Namespace of the referring objects (required).
    pub namespace: String,
}

/// Gateway API `ReferenceGrantTo`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    /// API group of the referenced kind (required; `""` for core, e.g.
    /// Services and Secrets).
    pub group: String,
    /// Referenced kind, e.g. `Service` (required).
    pub kind: String,
    /// Name of the one object allowed. Default: all objects of the kind in
    /// the namespace.
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use crate::model::tests::{path, yaml};
    use crate::model::{DecodeError, Object, decode};

    #[test]
    fn reference_grant() {
        for api_version in [
            "gateway.networking.k8s.io/v1beta1",
            "gateway.networking.k8s.io/v1",
        ] {
            let text = format!(
                r#"
apiVersion: {api_version}
kind: ReferenceGrant
metadata: {{name: allow-routes, namespace: backends}}
spec:
  from:
  - {{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}}
  - {{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}}
  to:
  - {{group: "", kind: Service}}
  - {{group: "", kind: Secret, name: tls-cert}}
"#
            );
            let decoded = decode(yaml(&text)).unwrap();
            assert!(decoded.unknown_fields.is_empty());
            let Object::ReferenceGrant(grant) = decoded.object else {
                panic!("not a ReferenceGrant")
            };
            assert_eq!(grant.api_version, api_version);
            assert_eq!(grant.metadata.namespace.as_deref(), Some("backends"));
            assert_eq!(grant.spec.from[0].kind, "HTTPRoute");
            assert_eq!(grant.spec.from[1].namespace, "infra");
            assert_eq!(grant.spec.to[0].group, "");
            assert_eq!(grant.spec.to[0].name, None);
            assert_eq!(grant.spec.to[1].name.as_deref(), Some("tls-cert"));
        }
    }

    #[test]
    fn from_namespace_required() {
        let err = decode(yaml(
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nspec: {from: [{group: g, kind: K}], to: []}\n",
        ))
        .unwrap_err();
        match err {
            DecodeError::Schema { path: p, message } => {
                assert_eq!(p, path("spec.from[0]"));
                assert_eq!(message, "missing field `namespace`");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
