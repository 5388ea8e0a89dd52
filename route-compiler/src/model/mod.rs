//! Typed data model of the Kubernetes objects the route compiler reads, and
//! the [`decode`] entry point that turns one parsed YAML document into one of
//! them.
//!
//! The model follows Gateway API v1 (standard and experimental channel,
//! v1.2/v1.3) as Envoy Gateway users write it:
//!
//! * field names are the Kubernetes (camelCase) names;
//! * every field the API marks optional is an `Option` (or a list/map that
//!   defaults to empty, and also accepts an explicit `null`), every required
//!   field is non-optional, so leaving it out is a [`DecodeError::Schema`];
//! * enum-like strings (`type`, `protocol`, `mode`, ...) stay `String`: their
//!   values are checked later, where better diagnostics are possible;
//! * defaults that Gateway API applies (e.g. `weight: 1`) are **not** filled
//!   in here: `None` means "not written", and each field's doc says what the
//!   default is.
//!
//! Unknown fields are not an error: [`decode`] collects their paths in
//! [`Decoded::unknown_fields`] so that the caller can warn about typos.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_yaml::Value;

mod common;
mod endpoint_slice;
mod gateway;
mod grpc_route;
mod http_route;
mod namespace;
mod reference_grant;

pub use common::{
    BackendObjectReference, BackendRef, CookieConfig, Duration, Fraction, HttpHeader,
    HttpHeaderFilter, HttpRequestMirrorFilter, LabelSelector, LabelSelectorRequirement,
    LocalObjectReference, ObjectMeta, ParentReference, SessionPersistence,
};
pub use endpoint_slice::{
    Endpoint, EndpointConditions, EndpointPort, EndpointSlice, SERVICE_NAME_LABEL,
};
pub use gateway::{
    AllowedListeners, AllowedRoutes, FrontendTlsValidation, Gateway, GatewayBackendTls,
    GatewayInfrastructure, GatewaySpec, GatewaySpecAddress, GatewayTlsConfig, Listener,
    ListenerNamespaces, LocalParametersReference, ObjectReference, RouteGroupKind, RouteNamespaces,
    SecretObjectReference,
};
pub use grpc_route::{
    GrpcBackendRef, GrpcHeaderMatch, GrpcMethodMatch, GrpcRoute, GrpcRouteFilter, GrpcRouteMatch,
    GrpcRouteRule, GrpcRouteSpec,
};
pub use http_route::{
    HttpBackendRef, HttpCorsFilter, HttpHeaderMatch, HttpPathMatch, HttpPathModifier,
    HttpQueryParamMatch, HttpRequestRedirectFilter, HttpRoute, HttpRouteFilter, HttpRouteMatch,
    HttpRouteRetry, HttpRouteRule, HttpRouteSpec, HttpRouteTimeouts, HttpUrlRewriteFilter,
};
pub use namespace::Namespace;
pub use reference_grant::{
    ReferenceGrant, ReferenceGrantFrom, ReferenceGrantSpec, ReferenceGrantTo,
};

/// API group of the Gateway API kinds (`gateway.networking.k8s.io`).
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

pub use crate::yaml::Seg;

/// Every kind the compiler reads.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "decoded once per document and moved into per-kind tables; the shape is the integration contract"
)]
pub enum Object {
    /// `gateway.networking.k8s.io/v1` (or `v1beta1`) `Gateway`.
    Gateway(Gateway),
    /// `gateway.networking.k8s.io/v1` (or `v1beta1`) `HTTPRoute`.
    HttpRoute(HttpRoute),
    /// `gateway.networking.k8s.io/v1` (or `v1beta1`) `GRPCRoute`.
    GrpcRoute(GrpcRoute),
    /// `discovery.k8s.io/v1` `EndpointSlice`.
    EndpointSlice(EndpointSlice),
    /// `gateway.networking.k8s.io/v1beta1` (or `v1`) `ReferenceGrant`.
    ReferenceGrant(ReferenceGrant),
    /// Core `v1` `Namespace` (only its metadata/labels matter).
    Namespace(Namespace),
}

impl Object {
    /// The object's metadata, whatever its kind.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Gateway(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::GrpcRoute(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::ReferenceGrant(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
        }
    }
}

/// A successfully decoded document.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The typed object.
    pub object: Object,
    /// Paths (root to leaf) of every field the schema does not know, in
    /// document order. `apiVersion`, `kind` and `status` are never listed.
    pub unknown_fields: Vec<Vec<Seg>>,
}

/// Why a document could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// apiVersion/kind missing or not strings.
    #[error("{}: missing or non-string `apiVersion`/`kind` (every object needs both, e.g. `apiVersion: gateway.networking.k8s.io/v1` and `kind: HTTPRoute`)", display_path(.path))]
    MissingTypeMeta {
        /// Where the problem is: empty when the document is not a mapping,
        /// `[apiVersion]` or `[kind]` otherwise.
        path: Vec<Seg>,
    },
    /// A kind or apiVersion this compiler does not read.
    #[error(
        "unsupported object `{kind}` of apiVersion `{api_version}` (supported: Gateway, HTTPRoute, GRPCRoute, ReferenceGrant in gateway.networking.k8s.io/v1 or v1beta1; EndpointSlice in discovery.k8s.io/v1; Namespace in v1)"
    )]
    UnsupportedKind {
        /// The document's `apiVersion`.
        api_version: String,
        /// The document's `kind`.
        kind: String,
    },
    /// The document does not fit the kind's schema (wrong type, missing required field).
    #[error("{}: {message}", display_path(.path))]
    Schema {
        /// Path to the offending value (for a missing field: to the mapping
        /// that lacks it).
        path: Vec<Seg>,
        /// serde's description of the problem, e.g.
        /// ``invalid type: string "eighty", expected i64``.
        message: String,
    },
}

/// The kinds `decode` dispatches to.
#[derive(Debug, Clone, Copy)]
enum Target {
    Gateway,
    HttpRoute,
    GrpcRoute,
    EndpointSlice,
    ReferenceGrant,
    Namespace,
}

impl Target {
    fn of(api_version: &str, kind: &str) -> Option<Target> {
        match (api_version, kind) {
            ("gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1", kind) => {
                match kind {
                    "Gateway" => Some(Target::Gateway),
                    "HTTPRoute" => Some(Target::HttpRoute),
                    "GRPCRoute" => Some(Target::GrpcRoute),
                    "ReferenceGrant" => Some(Target::ReferenceGrant),
                    _ => None,
                }
            }
            ("discovery.k8s.io/v1", "EndpointSlice") => Some(Target::EndpointSlice),
            ("v1", "Namespace") => Some(Target::Namespace),
            _ => None,
        }
    }
}

/// Decodes one parsed YAML document into a typed [`Object`].
///
/// Reads `apiVersion` and `kind` first (both must be strings, else
/// [`DecodeError::MissingTypeMeta`]), picks the kind (else
/// [`DecodeError::UnsupportedKind`]), then deserializes strictly: a value of
/// the wrong type or a missing required field is a [`DecodeError::Schema`]
/// carrying the path. Fields the schema does not know are not errors; their
/// paths are returned in [`Decoded::unknown_fields`].
pub fn decode(value: Value) -> Result<Decoded, DecodeError> {
    let (api_version, kind) = type_meta(&value)?;
    let target = Target::of(api_version, kind).ok_or_else(|| DecodeError::UnsupportedKind {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    })?;
    let mut unknown_fields = Vec::new();
    let object = match target {
        Target::Gateway => Object::Gateway(deserialize_tracked(value, &mut unknown_fields)?),
        Target::HttpRoute => Object::HttpRoute(deserialize_tracked(value, &mut unknown_fields)?),
        Target::GrpcRoute => Object::GrpcRoute(deserialize_tracked(value, &mut unknown_fields)?),
        Target::EndpointSlice => {
            Object::EndpointSlice(deserialize_tracked(value, &mut unknown_fields)?)
        }
        Target::ReferenceGrant => {
            Object::ReferenceGrant(deserialize_tracked(value, &mut unknown_fields)?)
        }
        Target::Namespace => Object::Namespace(deserialize_tracked(value, &mut unknown_fields)?),
    };
    Ok(Decoded {
        object,
        unknown_fields,
    })
}

/// Reads `apiVersion` and `kind` as strings.
fn type_meta(value: &Value) -> Result<(&str, &str), DecodeError> {
    let Value::Mapping(map) = value else {
        return Err(DecodeError::MissingTypeMeta { path: Vec::new() });
    };
    let field = |name: &str| {
        map.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| DecodeError::MissingTypeMeta {
                path: vec![Seg::Key(name.to_owned())],
            })
    };
    Ok((field("apiVersion")?, field("kind")?))
}

/// Deserializes `T` from `value`, pushing the path of every ignored field
/// into `unknown` and turning a failure into [`DecodeError::Schema`].
fn deserialize_tracked<T: DeserializeOwned>(
    value: Value,
    unknown: &mut Vec<Vec<Seg>>,
) -> Result<T, DecodeError> {
    let mut on_ignored = |path: serde_ignored::Path<'_>| {
        let mut segs = Vec::new();
        ignored_path(&path, &mut segs);
        unknown.push(segs);
    };
    let de = serde_ignored::Deserializer::new(value, &mut on_ignored);
    serde_path_to_error::deserialize(de).map_err(|err| DecodeError::Schema {
        path: error_path(err.path()),
        message: err.into_inner().to_string(),
    })
}

/// Converts a `serde_ignored` path (leaf to root links) into root-to-leaf segments.
fn ignored_path(path: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
    match path {
        serde_ignored::Path::Root => {}
        serde_ignored::Path::Seq { parent, index } => {
            ignored_path(parent, out);
            out.push(Seg::Index(*index));
        }
        serde_ignored::Path::Map { parent, key } => {
            ignored_path(parent, out);
            out.push(Seg::Key(key.clone()));
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => ignored_path(parent, out),
    }
}

/// Converts a `serde_path_to_error` path into segments (enum variants and
/// unknown steps carry no position in the document and are dropped).
fn error_path(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {
                None
            }
        })
        .collect()
}

/// Renders a path as `spec.rules[0].backendRefs[0].port` (keys that are not
/// plain identifiers are quoted: `metadata.labels["app.kubernetes.io/name"]`;
/// the empty path is `<document>`).
fn display_path(path: &[Seg]) -> String {
    if path.is_empty() {
        return "<document>".to_owned();
    }
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key)
                if !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Key(key) => out.push_str(&format!("[{key:?}]")),
            Seg::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// `deserialize_with` helper for lists and maps: Kubernetes treats an
/// explicit `null` (or an empty YAML value, `hostnames:`) like an absent
/// field, so map it to the empty default instead of failing.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Parses YAML text into a Value.
    pub(crate) fn yaml(text: &str) -> Value {
        serde_yaml::from_str::<Value>(text).unwrap()
    }

    /// Builds a path from a dotted string with `[n]` indices.
    pub(crate) fn path(text: &str) -> Vec<Seg> {
        let mut out = Vec::new();
        for part in text.split('.') {
            let mut rest = part;
            if let Some(open) = rest.find('[') {
                let key = &rest[..open];
                if !key.is_empty() {
                    out.push(Seg::Key(key.to_owned()));
                }
                rest = &rest[open..];
                while let Some(stripped) = rest.strip_prefix('[') {
                    let close = stripped.find(']').unwrap();
                    out.push(Seg::Index(stripped[..close].parse().unwrap()));
                    rest = &stripped[close + 1..];
                }
            } else {
                out.push(Seg::Key(rest.to_owned()));
            }
        }
        out
    }

    #[test]
    fn missing_kind() {
        let err = decode(yaml(
            "apiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: x}\n",
        ))
        .unwrap_err();
        match &err {
            DecodeError::MissingTypeMeta { path: p } => assert_eq!(p, &path("kind")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with("kind: missing"), "{err}");
    }

    #[test]
    fn missing_api_version_and_non_string() {
        let err = decode(yaml("kind: HTTPRoute\n")).unwrap_err();
        assert!(
            matches!(&err, DecodeError::MissingTypeMeta { path: p } if p == &path("apiVersion"))
        );
        let err = decode(yaml("apiVersion: v1\nkind: 3\n")).unwrap_err();
        assert!(matches!(&err, DecodeError::MissingTypeMeta { path: p } if p == &path("kind")));
        let err = decode(yaml("- a\n- b\n")).unwrap_err();
        assert!(matches!(&err, DecodeError::MissingTypeMeta { path: p } if p.is_empty()));
        assert!(err.to_string().starts_with("<document>:"), "{err}");
    }

    #[test]
    fn unsupported_kind() {
        let err = decode(yaml("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")).unwrap_err();
        match &err {
            DecodeError::UnsupportedKind { api_version, kind } => {
                assert_eq!(api_version, "v1");
                assert_eq!(kind, "Service");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("`Service`"), "{err}");
        // A known kind in a version we do not read.
        let err = decode(yaml(
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: HTTPRoute\nspec: {}\n",
        ))
        .unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedKind { .. }));
        // TLSRoute is a Gateway API kind the compiler does not read.
        let err = decode(yaml(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\n",
        ))
        .unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedKind { .. }));
    }

    #[test]
    fn schema_error_path_for_string_port() {
        let err = decode(yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - backendRefs:
    - name: svc
      port: "eighty"
"#,
        ))
        .unwrap_err();
        match &err {
            DecodeError::Schema { path: p, message } => {
                assert_eq!(p, &path("spec.rules[0].backendRefs[0].port"));
                assert!(
                    message.contains("invalid type: string \"eighty\""),
                    "{message}"
                );
                assert!(message.contains("i64"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("spec.rules[0].backendRefs[0].port: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn schema_error_missing_required_field() {
        let err = decode(yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - backendRefs:
    - port: 80
"#,
        ))
        .unwrap_err();
        match err {
            DecodeError::Schema { path: p, message } => {
                assert_eq!(p, path("spec.rules[0].backendRefs[0]"));
                assert_eq!(message, "missing field `name`");
            }
            other => panic!("unexpected {other:?}"),
        }
        // `spec` itself is required on routes.
        let err = decode(yaml(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n",
        ))
        .unwrap_err();
        assert!(
            matches!(err, DecodeError::Schema { ref path, ref message } if path.is_empty() && message == "missing field `spec`")
        );
    }

    #[test]
    fn string_fields_are_strict() {
        let err = decode(yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - matches:
    - headers:
      - name: x-version
        value: 2
"#,
        ))
        .unwrap_err();
        match err {
            DecodeError::Schema { path: p, message } => {
                assert_eq!(p, path("spec.rules[0].matches[0].headers[0].value"));
                assert!(message.contains("expected a string"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_with_exact_paths() {
        let decoded = decode(yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
  uid: 1234
  resourceVersion: "99"
  generation: 3
  managedFields: [{manager: kubectl}]
  colour: blue
spec:
  parentRefs: [{name: gw, sectionNmae: http}]
  rules:
  - matchs:
    - path: {type: PathPrefix, value: /}
    backendRefs:
    - name: svc
      port: 80
      wieght: 3
status:
  parents: []
"#,
        ))
        .unwrap();
        assert_eq!(
            decoded.unknown_fields,
            vec![
                path("metadata.colour"),
                path("spec.parentRefs[0].sectionNmae"),
                path("spec.rules[0].matchs"),
                path("spec.rules[0].backendRefs[0].wieght"),
            ]
        );
    }

    #[test]
    fn type_meta_and_status_are_not_unknown() {
        for text in [
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\nstatus: {phase: Active}\n",
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: a}\nspec: {from: [{group: g, kind: K, namespace: n}], to: [{group: '', kind: Service}]}\nstatus: {}\n",
        ] {
            let decoded = decode(yaml(text)).unwrap();
            assert!(
                decoded.unknown_fields.is_empty(),
                "{:?}",
                decoded.unknown_fields
            );
        }
    }

    #[test]
    fn null_lists_and_maps_are_empty() {
        let decoded = decode(yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
  labels:
  annotations: null
spec:
  hostnames:
  parentRefs: null
  rules:
"#,
        ))
        .unwrap();
        let Object::HttpRoute(route) = decoded.object else {
            panic!("not a route")
        };
        assert!(route.metadata.labels.is_empty());
        assert!(route.metadata.annotations.is_empty());
        assert!(route.spec.hostnames.is_empty());
        assert!(route.spec.parent_refs.is_empty());
        assert!(route.spec.rules.is_empty());
    }

    #[test]
    fn display_path_quotes_odd_keys() {
        let p = vec![
            Seg::Key("metadata".into()),
            Seg::Key("labels".into()),
            Seg::Key("app.kubernetes.io/name".into()),
        ];
        assert_eq!(
            display_path(&p),
            r#"metadata.labels["app.kubernetes.io/name"]"#
        );
        assert_eq!(
            display_path(&path("spec.rules[0].backendRefs[1]")),
            "spec.rules[0].backendRefs[1]"
        );
    }

    #[test]
    fn metadata_accessor() {
        let decoded = decode(yaml(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        ))
        .unwrap();
        assert_eq!(decoded.object.metadata().name.as_deref(), Some("a"));
    }
}
