//! Types shared by several kinds: object metadata, references, header
//! modifiers, mirrors, session persistence, label selectors.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use super::null_as_default;

/// A Gateway API `Duration`: a string such as `"1h"`, `"10s"`, `"500ms"`
/// (GEP-2257: one or more `<number><unit>` pairs, units `h`, `m`, `s`, `ms`).
/// Kept as written; parsed and validated later.
pub type Duration = String;

/// Kubernetes `ObjectMeta` (`metadata`): the parts the compiler reads are
/// typed, server-managed bookkeeping fields are kept as opaque values so that
/// they are not reported as unknown.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Name of the object, unique within its namespace. Optional in the
    /// Kubernetes schema (`generateName` may stand in for it on create), but
    /// every object the compiler resolves by reference needs one.
    pub name: Option<String>,
    /// Prefix the API server uses to generate a name when `name` is empty.
    pub generate_name: Option<String>,
    /// Namespace of the object. No default here: an unset namespace means
    /// "the namespace the manifest is applied to" (usually `default`), which
    /// the loader decides.
    pub namespace: Option<String>,
    /// Labels (key/value pairs used by selectors). Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (non-identifying metadata). Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 time the object was created (server-set). Used for
    /// tie-breaking between conflicting routes (oldest wins).
    pub creation_timestamp: Option<String>,
    /// Unique id set by the API server (opaque).
    pub uid: Option<Value>,
    /// Opaque version for optimistic concurrency (server-set).
    pub resource_version: Option<Value>,
    /// Sequence number of the desired state (server-set).
    pub generation: Option<Value>,
    /// Deprecated URL of the object (server-set; opaque).
    pub self_link: Option<Value>,
    /// Time the object will be deleted (server-set; opaque).
    pub deletion_timestamp: Option<Value>,
    /// Seconds allowed for graceful termination (server-set; opaque).
    pub deletion_grace_period_seconds: Option<Value>,
    /// Objects this one depends on (opaque).
    pub owner_references: Option<Value>,
    /// Finalizers that must run before deletion (opaque).
    pub finalizers: Option<Value>,
    /// Server-side-apply field ownership (opaque).
    pub managed_fields: Option<Value>,
    /// Removed field that old manifests may still carry (opaque).
    pub cluster_name: Option<Value>,
}

/// Gateway API `ParentReference`: the Gateway (or listener of it) a route
/// wants to attach to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group of the parent. Default: `gateway.networking.k8s.io`.
    pub group: Option<String>,
    /// Kind of the parent. Default: `Gateway`.
    pub kind: Option<String>,
    /// Namespace of the parent. Default: the route's own namespace.
    pub namespace: Option<String>,
    /// Name of the parent (required).
    pub name: String,
    /// Name of a listener (Gateway) to attach to. Default: all listeners
    /// that allow the route.
    pub section_name: Option<String>,
    /// Port of the listener(s) to attach to (extended support). Default:
    /// all ports.
    pub port: Option<i64>,
}

/// Gateway API `BackendObjectReference`: a reference to a backend without a
/// weight (used by `requestMirror`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendObjectReference {
    /// API group of the referent. Default: `""` (the core group).
    pub group: Option<String>,
    /// Kind of the referent. Default: `Service`.
    pub kind: Option<String>,
    /// Name of the referent (required).
    pub name: String,
    /// Namespace of the referent. Default: the route's namespace; another
    /// namespace needs a ReferenceGrant.
    pub namespace: Option<String>,
    /// Destination port. Required when the referent is a Kubernetes Service
    /// (checked later, not by the decoder).
    pub port: Option<i64>,
}

/// Gateway API `BackendRef`: a [`BackendObjectReference`] plus a weight.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// API group of the referent. Default: `""` (the core group).
    pub group: Option<String>,
    /// Kind of the referent. Default: `Service`.
    pub kind: Option<String>,
    /// Name of the referent (required).
    pub name: String,
    /// Namespace of the referent. Default: the route's namespace.
    pub namespace: Option<String>,
    /// Destination port (required for Services, checked later).
    pub port: Option<i64>,
    /// Proportion of requests sent to this backend, relative to the sum of
    /// the rule's weights (0..=1000000). Default: 1. `0` means no traffic.
    pub weight: Option<i64>,
}

/// Gateway API `HTTPHeader`: one header name/value pair.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    /// Header name (case-insensitive; required).
    pub name: String,
    /// Header value (required).
    pub value: String,
}

/// Gateway API `HTTPHeaderFilter` (`requestHeaderModifier` /
/// `responseHeaderModifier`): edits headers in the order set, add, remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeaderFilter {
    /// Headers to overwrite (or create). Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub set: Vec<HttpHeader>,
    /// Headers to append to (or create). Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub add: Vec<HttpHeader>,
    /// Header names to remove. Default: none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub remove: Vec<String>,
}

/// Gateway API `HTTPRequestMirrorFilter` (`requestMirror`), also used by
/// GRPCRoute: copies requests to another backend, ignoring its responses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestMirrorFilter {
    /// Backend to mirror to (required).
    pub backend_ref: BackendObjectReference,
    /// Percentage (0..=100) of requests to mirror (experimental). Default:
    /// all requests. Mutually exclusive with `fraction`.
    pub percent: Option<i64>,
    /// Fraction of requests to mirror (experimental). Default: all
    /// requests. Mutually exclusive with `percent`.
    pub fraction: Option<Fraction>,
}

/// Gateway API `Fraction`: `numerator / denominator`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fraction {
    /// Numerator (required, >= 0, <= denominator).
    pub numerator: i64,
    /// Denominator (> 0). Default: 100.
    pub denominator: Option<i64>,
}

/// Gateway API `LocalObjectReference` (`extensionRef`): an object in the
/// route's namespace, here an implementation-specific filter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// API group of the referent (required; may be `""` for core).
    pub group: String,
    /// Kind of the referent (required), e.g. Envoy Gateway's `HTTPRouteFilter`.
    pub kind: String,
    /// Name of the referent (required).
    pub name: String,
}

/// Gateway API `SessionPersistence` (experimental): sticky sessions for a
/// rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    /// Name of the cookie or header carrying the session. Default:
    /// implementation-specific.
    pub session_name: Option<String>,
    /// Maximum lifetime of a session. Default: none.
    pub absolute_timeout: Option<Duration>,
    /// Idle time after which a session expires. Default: none.
    pub idle_timeout: Option<Duration>,
    /// `Cookie` or `Header`. Default: `Cookie`.
    pub r#type: Option<String>,
    /// Cookie settings when `type` is `Cookie`. Default: none.
    pub cookie_config: Option<CookieConfig>,
}

/// Gateway API `CookieConfig` of [`SessionPersistence`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CookieConfig {
    /// `Permanent` or `Session`. Default: `Session`.
    pub lifetime_type: Option<String>,
}

/// Kubernetes `LabelSelector`: the two parts are ANDed; an empty selector
/// matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must all be present with these values. Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements, all of which must hold. Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// Kubernetes `LabelSelectorRequirement`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// Label key the requirement applies to (required).
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist` (required).
    pub operator: String,
    /// Values for `In`/`NotIn` (must be empty for `Exists`/`DoesNotExist`).
    /// Default: empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<String>,
}
