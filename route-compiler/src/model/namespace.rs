//! `Namespace` (core `v1`): only its labels matter, for listeners'
//! `allowedRoutes.namespaces.selector`.

use serde::Deserialize;
use serde_yaml::Value;

use super::common::ObjectMeta;

/// A Namespace.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    /// `v1`.
    pub api_version: String,
    /// `Namespace`.
    pub kind: String,
    /// Object metadata: `name` and `labels` are what the compiler reads
    /// (Kubernetes also sets `kubernetes.io/metadata.name`). Default: empty.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Namespace spec (`finalizers`); opaque, never read. Default: none.
    pub spec: Option<Value>,
    /// Status (`phase`); never read by the compiler.
    pub status: Option<Value>,
}

#[cfg(test)]
mod tests {
    use crate::model::tests::{path, yaml};
    use crate::model::{Object, decode};

    #[test]
    fn namespace() {
        let decoded = decode(yaml(
            r#"
apiVersion: v1
kind: Namespace
metadata:
  name: apps
  labels:
    kubernetes.io/metadata.name: apps
    expose: "true"
spec: {finalizers: [kubernetes]}
status: {phase: Active}
data: {}
"#,
        ))
        .unwrap();
        assert_eq!(decoded.unknown_fields, vec![path("data")]);
        let Object::Namespace(ns) = decoded.object else {
            panic!("not a Namespace")
        };
        assert_eq!(ns.metadata.name.as_deref(), Some("apps"));
        assert_eq!(ns.metadata.labels["expose"], "true");
        assert_eq!(ns.metadata.labels.len(), 2);
    }

    #[test]
    fn label_values_must_be_strings() {
        let err = decode(yaml(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {expose: true}}\n",
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata.labels.expose: invalid type: boolean `true`, expected a string"
        );
    }
}
