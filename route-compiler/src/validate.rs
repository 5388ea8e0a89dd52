//! Validation: decoded Gateway API objects in, a [`RouteSet`] and
//! diagnostics out.
//!
//! The rules are Gateway API's own (its CRD validation and CEL rules, and
//! the conformance behaviour of Envoy Gateway where the spec leaves room),
//! plus what Sluice cannot honour, which is said out loud instead of being
//! dropped:
//!
//! * an *error* where ignoring the input would change which backend a
//!   request reaches or what it gets (an unknown field under `spec`, an
//!   unsupported filter, a listener protocol other than HTTP);
//! * a *warning* where routing stays as written (a `retry` policy sluice
//!   does not run, a backendRef that does not resolve and so gets 500, a
//!   route that attaches to nothing).
//!
//! Validation never stops at the first problem: every object is checked and
//! every problem reported, and the route set is used only when there is no
//! error at all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::automaton;
use crate::diag::{Diagnostic, Severity};
use crate::ir::{
    Attachment, GrpcMethod, Listener, Match, Origin, PathMatch, Predicate, RouteEntry, RouteSet,
    ValueMatch,
};
use crate::model::{
    self, BackendObjectReference, DecodeError, EndpointSlice, Gateway, GrpcRoute, HttpHeaderFilter,
    HttpPathModifier, HttpRequestMirrorFilter, HttpRoute, LabelSelector, Object, ObjectMeta,
    ParentReference, ReferenceGrant,
};
use crate::path;
use crate::route::{
    Backend, Filter, HeaderModifier, HeaderValue, Mirror, ObjectName, PathModifier, Redirect,
    Rewrite, Route, RouteKind, Rule, Timeouts, Unresolved, UpstreamProtocol,
};
use crate::source::Sources;
use crate::yaml::Seg;

/// Gateway API limit: rules per route.
pub const MAX_RULES: usize = 16;
/// Gateway API limit: matches per rule.
pub const MAX_MATCHES: usize = 64;
/// Gateway API limit: backendRef weight.
pub const MAX_WEIGHT: i64 = 1_000_000;
/// Gateway API limit: length of a path value or regex.
pub const MAX_PATH_LEN: usize = 1024;
/// Gateway API limit: header/query conditions per match.
pub const MAX_PREDICATES: usize = 16;

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Validates every document of `sources`.
///
/// The route set is complete only when no diagnostic is an error.
pub fn validate(sources: &Sources) -> (RouteSet, Vec<Diagnostic>) {
    let mut v = Validator {
        sources,
        diagnostics: Vec::new(),
        gateways: Vec::new(),
        http_routes: Vec::new(),
        grpc_routes: Vec::new(),
        slices: HashMap::new(),
        grants: Vec::new(),
        namespaces: HashMap::new(),
        seen: HashMap::new(),
    };
    v.decode_all();
    let set = v.build();
    (set, v.diagnostics)
}

struct Validator<'s> {
    sources: &'s Sources,
    diagnostics: Vec<Diagnostic>,
    gateways: Vec<(Origin, Gateway)>,
    http_routes: Vec<(Origin, HttpRoute)>,
    grpc_routes: Vec<(Origin, GrpcRoute)>,
    /// (namespace, service) → slices.
    slices: HashMap<(String, String), Vec<(Origin, EndpointSlice)>>,
    grants: Vec<ReferenceGrant>,
    /// namespace → labels.
    namespaces: HashMap<String, BTreeMap<String, String>>,
    /// (kind, ns, name) → where first seen.
    seen: HashMap<(String, String, String), Origin>,
}

fn namespace_of(meta: &ObjectMeta) -> String {
    meta.namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// Context for diagnostics about one object.
#[derive(Clone)]
struct At {
    origin: Origin,
    object: String,
}

impl Validator<'_> {
    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        at: &At,
        path: &[Seg],
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let mut d = self
            .sources
            .diagnostic(severity, code, at.origin, path, message)
            .help(help);
        if !at.object.is_empty() {
            d = d.object(at.object.clone());
        }
        self.diagnostics.push(d);
    }

    fn error(
        &mut self,
        code: &'static str,
        at: &At,
        path: &[Seg],
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(Severity::Error, code, at, path, message, help);
    }

    fn warning(
        &mut self,
        code: &'static str,
        at: &At,
        path: &[Seg],
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(Severity::Warning, code, at, path, message, help);
    }

    // === decoding ===

    fn decode_all(&mut self) {
        for (file_index, file) in self.sources.files.iter().enumerate() {
            for (document_index, document) in file.documents.iter().enumerate() {
                let origin = Origin {
                    file: file_index,
                    document: document_index,
                };
                self.decode_one(origin, document.to_value());
            }
        }
    }

    fn decode_one(&mut self, origin: Origin, value: serde_yaml::Value) {
        // Name the object in decode errors as far as the document says.
        let text = |v: Option<&serde_yaml::Value>| {
            v.and_then(serde_yaml::Value::as_str).map(str::to_string)
        };
        let at = At {
            origin,
            object: match (text(value.get("kind")), value.get("metadata")) {
                (Some(kind), Some(meta)) => match text(meta.get("name")) {
                    Some(name) => format!(
                        "{kind} {}/{name}",
                        text(meta.get("namespace"))
                            .filter(|ns| !ns.is_empty())
                            .unwrap_or_else(|| "default".into())
                    ),
                    None => kind,
                },
                (Some(kind), None) => kind,
                (None, _) => String::new(),
            },
        };
        let decoded = match model::decode(value) {
            Ok(decoded) => decoded,
            Err(DecodeError::UnsupportedKind { api_version, kind }) => {
                let routing = api_version.starts_with(model::GATEWAY_API_GROUP)
                    && !matches!(kind.as_str(), "GatewayClass");
                let severity = if routing {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                let message =
                    format!("sluice does not read `{kind}` objects of apiVersion `{api_version}`");
                let help = if routing {
                    "sluice serves Gateway, HTTPRoute and GRPCRoute (gateway.networking.k8s.io/v1), EndpointSlice (discovery.k8s.io/v1), ReferenceGrant and Namespace; remove this object or serve it with another gateway"
                } else {
                    "this object is ignored; remove it from the route files to silence this warning"
                };
                self.push(
                    severity,
                    "unsupported-kind",
                    &at,
                    &path!["kind"],
                    message,
                    help,
                );
                return;
            }
            Err(DecodeError::MissingTypeMeta { path }) => {
                self.error("schema", &at, &path, "document has no `apiVersion` and `kind`", "start every document with e.g. `apiVersion: gateway.networking.k8s.io/v1` and `kind: HTTPRoute`");
                return;
            }
            Err(DecodeError::Schema { path, message }) => {
                self.error("schema", &at, &path, format!("does not fit the Gateway API schema: {message}"), "fix the field's type or add the missing field; quote values that must be strings (e.g. `value: \"2\"`)");
                return;
            }
        };
        let object = decoded.object;
        let meta = object.metadata().clone();
        let kind = kind_name(&object);
        let Some(name) = meta.name.clone() else {
            self.error(
                "schema",
                &at,
                &path!["metadata"],
                format!("{kind} has no `metadata.name`"),
                "give the object a name",
            );
            return;
        };
        let namespace = namespace_of(&meta);
        let at = At {
            origin,
            object: format!("{kind} {namespace}/{name}"),
        };
        for unknown in &decoded.unknown_fields {
            let field = unknown
                .iter()
                .map(|s| match s {
                    Seg::Key(k) => k.clone(),
                    Seg::Index(i) => format!("[{i}]"),
                })
                .collect::<Vec<_>>()
                .join(".")
                .replace(".[", "[");
            let routing = matches!(unknown.first(), Some(Seg::Key(k)) if k == "spec")
                && matches!(
                    object,
                    Object::Gateway(_) | Object::HttpRoute(_) | Object::GrpcRoute(_)
                );
            if routing {
                self.error("unknown-field", &at, unknown, format!("unknown field `{field}`: Gateway API does not define it for {kind}, and ignoring it could change routing"), "check the spelling against the Gateway API reference (fields are camelCase), or remove it");
            } else {
                self.warning(
                    "unknown-field",
                    &at,
                    unknown,
                    format!("unknown field `{field}` is ignored"),
                    "check the spelling against the Kubernetes API reference, or remove it",
                );
            }
        }
        let key = (kind.to_string(), namespace.clone(), name.clone());
        if let Some(first) = self.seen.get(&key) {
            let first = format!(
                "{}:{}",
                self.sources.file_name(*first),
                self.sources.locate(*first, &[]).line
            );
            self.error(
                "duplicate-object",
                &at,
                &path!["metadata", "name"],
                format!("{kind} {namespace}/{name} is defined twice (first at {first})"),
                "rename one of them or remove the duplicate",
            );
            return;
        }
        self.seen.insert(key, origin);
        match object {
            Object::Gateway(g) => self.gateways.push((origin, g)),
            Object::HttpRoute(r) => self.http_routes.push((origin, r)),
            Object::GrpcRoute(r) => self.grpc_routes.push((origin, r)),
            Object::EndpointSlice(s) => match s.service_name().map(str::to_string) {
                Some(service) => self.slices.entry((namespace, service)).or_default().push((origin, s)),
                None => self.warning("endpointslice-label", &at, &path!["metadata", "labels"], "EndpointSlice has no `kubernetes.io/service-name` label, so no backendRef can use it", "label it with the name of the Service whose endpoints it lists"),
            },
            Object::ReferenceGrant(g) => self.grants.push(g),
            Object::Namespace(_) => {
                self.namespaces.insert(name, meta.labels);
            }
        }
    }

    // === building ===

    fn build(&mut self) -> RouteSet {
        let mut set = RouteSet::default();
        let gateways = std::mem::take(&mut self.gateways);
        for (origin, gateway) in &gateways {
            self.gateway(*origin, gateway, &mut set.listeners);
        }
        let http = std::mem::take(&mut self.http_routes);
        for (origin, route) in &http {
            if let Some(entry) = self.http_route(*origin, route, &set.listeners, &gateways) {
                set.routes.push(entry);
            }
        }
        let grpc = std::mem::take(&mut self.grpc_routes);
        for (origin, route) in &grpc {
            if let Some(entry) = self.grpc_route(*origin, route, &set.listeners, &gateways) {
                set.routes.push(entry);
            }
        }
        self.check_listener_conflicts(&set);
        set
    }

    fn gateway(&mut self, origin: Origin, gateway: &Gateway, listeners: &mut Vec<Listener>) {
        let name = ObjectName {
            namespace: namespace_of(&gateway.metadata),
            name: gateway.metadata.name.clone().unwrap_or_default(),
        };
        let at = At {
            origin,
            object: format!("Gateway {name}"),
        };
        if !gateway.spec.addresses.is_empty() {
            self.warning("unsupported-field", &at, &path!["spec", "addresses"], "`addresses` is not honoured: sluice binds every listener on the address given by --bind (default 0.0.0.0)", "remove `addresses`, or use --bind");
        }
        for (field, set) in [
            ("tls", gateway.spec.tls.is_some()),
            ("backendTLS", gateway.spec.backend_tls.is_some()),
        ] {
            if set {
                self.error(
                    "unsupported-field",
                    &at,
                    &path!["spec", field],
                    format!("`{field}` is not supported: sluice serves plain HTTP/1.1 and h2c, to clients and to backends"),
                    "terminate TLS in front of sluice, and remove the TLS settings",
                );
            }
        }
        let mut names = HashSet::new();
        for (index, listener) in gateway.spec.listeners.iter().enumerate() {
            let p = path!["spec", "listeners", index];
            if !names.insert(listener.name.clone()) {
                self.error(
                    "duplicate-listener",
                    &at,
                    &[p.clone(), path!["name"]].concat(),
                    format!("listener name `{}` is used twice", listener.name),
                    "give every listener of a Gateway its own name",
                );
                continue;
            }
            let Ok(port) = u16::try_from(listener.port) else {
                self.error(
                    "invalid-port",
                    &at,
                    &[p.clone(), path!["port"]].concat(),
                    format!("listener port {} is out of range", listener.port),
                    "use a port from 1 to 65535",
                );
                continue;
            };
            if port == 0 {
                self.error(
                    "invalid-port",
                    &at,
                    &[p.clone(), path!["port"]].concat(),
                    "listener port 0 is not allowed",
                    "use a port from 1 to 65535",
                );
                continue;
            }
            if listener.protocol != "HTTP" {
                self.error("unsupported-protocol", &at, &[p.clone(), path!["protocol"]].concat(), format!("listener protocol `{}` is not supported: sluice serves `HTTP` listeners (HTTP/1.1 and h2c on the same port)", listener.protocol), "use `protocol: HTTP`, and terminate TLS in front of sluice");
                continue;
            }
            if listener.tls.is_some() {
                self.error(
                    "unsupported-field",
                    &at,
                    &[p.clone(), path!["tls"]].concat(),
                    "listener `tls` is not supported with protocol HTTP",
                    "remove `tls`",
                );
            }
            let hostname = match &listener.hostname {
                Some(h) => match check_hostname(h, true) {
                    Ok(h) => Some(h),
                    Err(why) => {
                        self.error("invalid-hostname", &at, &[p.clone(), path!["hostname"]].concat(), format!("listener hostname `{h}` {why}"), "use a DNS name such as `api.example.com`, or `*.example.com` for a wildcard");
                        continue;
                    }
                },
                None => None,
            };
            if let Some(allowed) = &listener.allowed_routes {
                if let Some(namespaces) = &allowed.namespaces {
                    match namespaces.from.as_deref() {
                        None | Some("Same") | Some("All") => {}
                        Some("Selector") if namespaces.selector.is_some() => {}
                        Some("Selector") => self.error(
                            "invalid-allowed-routes",
                            &at,
                            &[p.clone(), path!["allowedRoutes", "namespaces"]].concat(),
                            "`from: Selector` needs a `selector`",
                            "add `selector: {matchLabels: {...}}`",
                        ),
                        Some(other) => self.error(
                            "invalid-allowed-routes",
                            &at,
                            &[p.clone(), path!["allowedRoutes", "namespaces", "from"]].concat(),
                            format!("`from: {other}` is not one of Same, All, Selector"),
                            "use Same, All or Selector",
                        ),
                    }
                }
                for (k, kind) in allowed.kinds.iter().enumerate() {
                    if !matches!(kind.kind.as_str(), "HTTPRoute" | "GRPCRoute") {
                        self.warning("unsupported-kind", &at, &[p.clone(), path!["allowedRoutes", "kinds", k]].concat(), format!("route kind `{}` is not served by sluice; only HTTPRoute and GRPCRoute attach", kind.kind), "remove it from `kinds`");
                    }
                }
            }
            listeners.push(Listener {
                gateway: name.clone(),
                name: listener.name.clone(),
                port,
                hostname,
                origin,
                index,
            });
        }
    }

    fn check_listener_conflicts(&mut self, set: &RouteSet) {
        let mut seen: HashMap<(u16, Option<&str>), &Listener> = HashMap::new();
        for listener in &set.listeners {
            if let Some(first) =
                seen.insert((listener.port, listener.hostname.as_deref()), listener)
            {
                let at = At {
                    origin: listener.origin,
                    object: format!("Gateway {}", listener.gateway),
                };
                let message = format!(
                    "listener `{}` conflicts with listener `{}` of Gateway {}: same port {} and hostname {}",
                    listener.name,
                    first.name,
                    first.gateway,
                    listener.port,
                    listener.hostname.as_deref().unwrap_or("(any)")
                );
                self.error(
                    "listener-conflict",
                    &at,
                    &path!["spec", "listeners", listener.index],
                    message,
                    "give one of them another port or another hostname",
                );
            }
        }
    }

    // === routes ===

    fn route_header(
        &mut self,
        kind: RouteKind,
        origin: Origin,
        meta: &ObjectMeta,
    ) -> (ObjectName, At, Option<i64>) {
        let name = ObjectName {
            namespace: namespace_of(meta),
            name: meta.name.clone().unwrap_or_default(),
        };
        let at = At {
            origin,
            object: format!("{kind} {name}"),
        };
        let created = match &meta.creation_timestamp {
            None => None,
            Some(ts) => match parse_timestamp(ts) {
                Some(t) => Some(t),
                None => {
                    self.error(
                        "invalid-timestamp",
                        &at,
                        &path!["metadata", "creationTimestamp"],
                        format!("`{ts}` is not an RFC 3339 timestamp"),
                        "write it like 2024-05-01T12:00:00Z, or remove it",
                    );
                    None
                }
            },
        };
        (name, at, created)
    }

    fn http_route(
        &mut self,
        origin: Origin,
        route: &HttpRoute,
        listeners: &[Listener],
        gateways: &[(Origin, Gateway)],
    ) -> Option<RouteEntry> {
        let rules = route
            .spec
            .rules
            .iter()
            .map(|rule| RuleView {
                name: rule.name.as_deref(),
                matches: Matches::Http(&rule.matches),
                filters: rule.filters.clone(),
                backends: rule.backend_refs.iter().map(|b| backend_view!(b)).collect(),
                timeouts: rule.timeouts.as_ref(),
                retry: rule.retry.is_some(),
                session_persistence: rule.session_persistence.is_some(),
            })
            .collect();
        let view = RouteView {
            kind: RouteKind::Http,
            origin,
            meta: &route.metadata,
            parent_refs: &route.spec.parent_refs,
            hostnames: &route.spec.hostnames,
            rules,
        };
        self.route(view, listeners, gateways)
    }

    fn grpc_route(
        &mut self,
        origin: Origin,
        route: &GrpcRoute,
        listeners: &[Listener],
        gateways: &[(Origin, Gateway)],
    ) -> Option<RouteEntry> {
        let rules = route
            .spec
            .rules
            .iter()
            .map(|rule| RuleView {
                name: rule.name.as_deref(),
                matches: Matches::Grpc(&rule.matches),
                // GRPCRoute filters are a subset of HTTPRoute's, with the
                // same shapes: validate them as one.
                filters: rule
                    .filters
                    .iter()
                    .map(|f| model::HttpRouteFilter {
                        r#type: f.r#type.clone(),
                        request_header_modifier: f.request_header_modifier.clone(),
                        response_header_modifier: f.response_header_modifier.clone(),
                        request_mirror: f.request_mirror.clone(),
                        request_redirect: None,
                        url_rewrite: None,
                        extension_ref: f.extension_ref.clone(),
                        cors: None,
                        external_auth: None,
                    })
                    .collect(),
                backends: rule.backend_refs.iter().map(|b| backend_view!(b)).collect(),
                timeouts: None,
                retry: false,
                session_persistence: rule.session_persistence.is_some(),
            })
            .collect();
        let view = RouteView {
            kind: RouteKind::Grpc,
            origin,
            meta: &route.metadata,
            parent_refs: &route.spec.parent_refs,
            hostnames: &route.spec.hostnames,
            rules,
        };
        self.route(view, listeners, gateways)
    }

    /// Validates a route of either kind.
    fn route(
        &mut self,
        view: RouteView<'_>,
        listeners: &[Listener],
        gateways: &[(Origin, Gateway)],
    ) -> Option<RouteEntry> {
        let errors_before = self.error_count();
        let kind = view.kind;
        let (name, at, created) = self.route_header(kind, view.origin, view.meta);
        if view.rules.len() > MAX_RULES {
            self.error(
                "too-many-rules",
                &at,
                &path!["spec", "rules"],
                format!(
                    "{} rules; Gateway API allows at most {MAX_RULES} per route",
                    view.rules.len()
                ),
                "split the route into several routes",
            );
        }
        self.check_rule_names(&at, view.rules.iter().map(|r| r.name));
        let mut rules = Vec::new();
        let mut matches = Vec::new();
        for (rule_index, rule) in view.rules.iter().enumerate() {
            let rp = path!["spec", "rules", rule_index];
            let (rule_matches, http_matches) = self.rule_matches(&at, &rp, &rule.matches);
            if rule.retry {
                self.warning(
                    "unsupported-field",
                    &at,
                    &[rp.clone(), path!["retry"]].concat(),
                    "`retry` is not honoured: sluice does not retry requests",
                    "remove `retry`; failed requests get 502/503/504 as they happen",
                );
            }
            if rule.session_persistence {
                self.warning(
                    "unsupported-field",
                    &at,
                    &[rp.clone(), path!["sessionPersistence"]].concat(),
                    "`sessionPersistence` is not honoured: every request is balanced on its own",
                    "remove `sessionPersistence`",
                );
            }
            let timeouts = self.timeouts(&at, &rp, rule.timeouts);
            let mut filters = Vec::new();
            for (filter_index, filter) in rule.filters.iter().enumerate() {
                let fp = [rp.clone(), path!["filters", filter_index]].concat();
                if let Some(f) =
                    self.http_filter(&at, &fp, &name.namespace, kind, filter, http_matches)
                {
                    filters.push(f);
                }
            }
            self.check_filter_combination(&at, &rp, &filters, !rule.backends.is_empty());
            let mut backends = Vec::new();
            for (backend_index, backend) in rule.backends.iter().enumerate() {
                let bp = [rp.clone(), path!["backendRefs", backend_index]].concat();
                if backend.has_filters {
                    self.error(
                        "unsupported-filter",
                        &at,
                        &[bp.clone(), path!["filters"]].concat(),
                        "filters on a single backendRef are not supported",
                        "move the filters to the rule's `filters`",
                    );
                }
                if let Some(b) = self.backend(
                    &at,
                    &bp,
                    &name.namespace,
                    kind,
                    &backend.reference,
                    backend.weight,
                ) {
                    backends.push(b);
                }
            }
            rules.push(rule_with(
                rule.name.map(str::to_string),
                filters,
                backends,
                timeouts,
            ));
            matches.push(rule_matches);
        }
        if view.rules.is_empty() {
            // Gateway API defaults `rules` to one rule matching everything,
            // with no backends (so 500).
            rules.push(rule_with(None, Vec::new(), Vec::new(), Timeouts::default()));
            matches.push(vec![default_match(kind)]);
        }
        let attachments = self.attach(
            &at,
            kind,
            &name,
            view.parent_refs,
            view.hostnames,
            listeners,
            gateways,
        );
        (self.error_count() == errors_before).then_some(RouteEntry {
            route: Route { kind, name, rules },
            matches,
            created,
            attachments,
            origin: view.origin,
        })
    }

    /// The validated matches of a rule (the default match when it has
    /// none), and the HTTP matches as written (for ReplacePrefixMatch).
    fn rule_matches<'m>(
        &mut self,
        at: &At,
        rp: &[Seg],
        matches: &Matches<'m>,
    ) -> (Vec<Match>, &'m [model::HttpRouteMatch]) {
        let count = match matches {
            Matches::Http(m) => m.len(),
            Matches::Grpc(m) => m.len(),
        };
        if count > MAX_MATCHES {
            self.error(
                "too-many-matches",
                at,
                &[rp.to_vec(), path!["matches"]].concat(),
                format!("{count} matches; Gateway API allows at most {MAX_MATCHES} per rule"),
                "split the rule",
            );
        }
        let mut out = Vec::new();
        let http = match matches {
            Matches::Http(list) => {
                if list.is_empty() {
                    out.push(default_match(RouteKind::Http));
                }
                for (match_index, m) in list.iter().enumerate() {
                    let mp = [rp.to_vec(), path!["matches", match_index]].concat();
                    out.extend(self.http_match(at, &mp, m));
                }
                *list
            }
            Matches::Grpc(list) => {
                if list.is_empty() {
                    out.push(default_match(RouteKind::Grpc));
                }
                for (match_index, m) in list.iter().enumerate() {
                    let mp = [rp.to_vec(), path!["matches", match_index]].concat();
                    let method = match &m.method {
                        None => Some(GrpcMethod::default()),
                        Some(method) => {
                            self.grpc_method(at, &[mp.clone(), path!["method"]].concat(), method)
                        }
                    };
                    let headers = self.predicates(
                        at,
                        &mp,
                        "headers",
                        m.headers
                            .iter()
                            .map(|h| (h.r#type.as_deref(), h.name.as_str(), h.value.as_str())),
                        true,
                    );
                    if let (Some(method), Some(headers)) = (method, headers) {
                        out.push(Match {
                            path: PathMatch::Grpc(method),
                            method: None,
                            headers,
                            query: Vec::new(),
                        });
                    }
                }
                &[]
            }
        };
        (out, http)
    }

    fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    fn check_rule_names<'a>(&mut self, at: &At, names: impl Iterator<Item = Option<&'a str>>) {
        let mut seen = HashSet::new();
        for (index, name) in names.enumerate() {
            if let Some(name) = name
                && !seen.insert(name)
            {
                self.error(
                    "duplicate-rule-name",
                    at,
                    &path!["spec", "rules", index, "name"],
                    format!("rule name `{name}` is used twice in this route"),
                    "give every rule its own name",
                );
            }
        }
    }

    // === matches ===

    fn http_match(&mut self, at: &At, mp: &[Seg], m: &model::HttpRouteMatch) -> Option<Match> {
        let path = match &m.path {
            None => Some(PathMatch::Prefix(String::new())),
            Some(p) => self.path_match(
                at,
                &[mp.to_vec(), path!["path"]].concat(),
                p.r#type.as_deref(),
                p.value.as_deref(),
            ),
        };
        let method = match &m.method {
            None => Some(None),
            Some(method) if METHODS.contains(&method.as_str()) => Some(Some(method.clone())),
            Some(method) => {
                self.error(
                    "invalid-method",
                    at,
                    &[mp.to_vec(), path!["method"]].concat(),
                    format!("`{method}` is not an HTTP method Gateway API allows"),
                    format!("use one of {}", METHODS.join(", ")),
                );
                None
            }
        };
        let headers = self.predicates(
            at,
            mp,
            "headers",
            m.headers
                .iter()
                .map(|h| (h.r#type.as_deref(), h.name.as_str(), h.value.as_str())),
            true,
        );
        let query = self.predicates(
            at,
            mp,
            "queryParams",
            m.query_params
                .iter()
                .map(|q| (q.r#type.as_deref(), q.name.as_str(), q.value.as_str())),
            false,
        );
        Some(Match {
            path: path?,
            method: method?,
            headers: headers?,
            query: query?,
        })
    }

    fn path_match(
        &mut self,
        at: &At,
        p: &[Seg],
        kind: Option<&str>,
        value: Option<&str>,
    ) -> Option<PathMatch> {
        let value = value.unwrap_or("/");
        let vp = [p.to_vec(), path!["value"]].concat();
        if !value.starts_with('/') {
            self.error(
                "invalid-path",
                at,
                &vp,
                format!("path `{value}` does not start with `/`"),
                "write the path from the root, e.g. `/api`",
            );
            return None;
        }
        if value.len() > MAX_PATH_LEN {
            self.error(
                "invalid-path",
                at,
                &vp,
                format!(
                    "path is {} bytes long; Gateway API allows {MAX_PATH_LEN}",
                    value.len()
                ),
                "shorten it",
            );
            return None;
        }
        match kind.unwrap_or("PathPrefix") {
            kind @ ("Exact" | "PathPrefix") => {
                if let Err(why) = check_literal_path(value) {
                    self.error("invalid-path", at, &vp, format!("{kind} path `{value}` {why}"), "Gateway API requires a normalized path: no `//`, `/./`, `/../`, `%2f`, `#` or characters outside RFC 3986's path characters");
                    return None;
                }
                Some(if kind == "Exact" {
                    PathMatch::Exact(value.to_string())
                } else {
                    PathMatch::Prefix(value.trim_end_matches('/').to_string())
                })
            }
            "RegularExpression" => match automaton::check_syntax(value) {
                Ok(()) => Some(PathMatch::Regex(value.to_string())),
                Err(why) => {
                    self.error("invalid-regex", at, &vp, format!("regular expression does not compile: {why}"), "use RE2 syntax (no look-around or backreferences); escape `.`, `?`, `+`, `*` that are meant literally");
                    None
                }
            },
            other => {
                self.error("invalid-path", at, &[p.to_vec(), path!["type"]].concat(), format!("path match type `{other}` is not one of Exact, PathPrefix, RegularExpression"), "use Exact, PathPrefix or RegularExpression");
                None
            }
        }
    }

    fn predicates<'a>(
        &mut self,
        at: &At,
        mp: &[Seg],
        field: &str,
        items: impl Iterator<Item = (Option<&'a str>, &'a str, &'a str)>,
        header: bool,
    ) -> Option<Vec<Predicate>> {
        let mut out: Vec<Predicate> = Vec::new();
        let mut ok = true;
        let what = if header { "header" } else { "query parameter" };
        for (index, (kind, name, value)) in items.enumerate() {
            let ip = [mp.to_vec(), path![field, index]].concat();
            if index >= MAX_PREDICATES {
                self.error(
                    "too-many-conditions",
                    at,
                    &ip,
                    format!("more than {MAX_PREDICATES} {what} conditions in one match"),
                    "Gateway API allows 16; split the match",
                );
                return None;
            }
            if !is_token(name) {
                self.error(
                    "invalid-name",
                    at,
                    &[ip.clone(), path!["name"]].concat(),
                    format!("{what} name `{name}` is not a valid HTTP token"),
                    "use letters, digits and !#$%&'*+-.^_`|~ only",
                );
                ok = false;
                continue;
            }
            let name = if header {
                name.to_ascii_lowercase()
            } else {
                name.to_string()
            };
            let matcher = match kind.unwrap_or("Exact") {
                "Exact" => ValueMatch::Exact(value.to_string()),
                "RegularExpression" => match automaton::check_syntax(value) {
                    Ok(()) => ValueMatch::Regex(value.to_string()),
                    Err(why) => {
                        self.error(
                            "invalid-regex",
                            at,
                            &[ip.clone(), path!["value"]].concat(),
                            format!("regular expression does not compile: {why}"),
                            "use RE2 syntax",
                        );
                        ok = false;
                        continue;
                    }
                },
                other => {
                    self.error(
                        "invalid-match-type",
                        at,
                        &[ip.clone(), path!["type"]].concat(),
                        format!("match type `{other}` is not one of Exact, RegularExpression"),
                        "use Exact or RegularExpression",
                    );
                    ok = false;
                    continue;
                }
            };
            if out.iter().any(|p| p.name == name) {
                // Gateway API: only the first entry with an equivalent name counts.
                self.warning("duplicate-condition", at, &ip, format!("second condition on {what} `{name}` is ignored (Gateway API considers only the first)"), "merge the two conditions into one");
                continue;
            }
            out.push(Predicate {
                name,
                value: matcher,
            });
        }
        ok.then_some(out)
    }

    fn grpc_method(
        &mut self,
        at: &At,
        p: &[Seg],
        m: &model::GrpcMethodMatch,
    ) -> Option<GrpcMethod> {
        let regex = match m.r#type.as_deref().unwrap_or("Exact") {
            "Exact" => false,
            "RegularExpression" => true,
            other => {
                self.error(
                    "invalid-match-type",
                    at,
                    &[p.to_vec(), path!["type"]].concat(),
                    format!("method match type `{other}` is not one of Exact, RegularExpression"),
                    "use Exact or RegularExpression",
                );
                return None;
            }
        };
        if m.service.is_none() && m.method.is_none() {
            self.error(
                "invalid-grpc-match",
                at,
                p,
                "a gRPC method match needs `service`, `method` or both",
                "add `service: pkg.Service` and/or `method: Name`",
            );
            return None;
        }
        let mut ok = true;
        for (field, value) in [("service", &m.service), ("method", &m.method)] {
            let Some(value) = value else { continue };
            let fp = [p.to_vec(), path![field]].concat();
            if regex {
                if let Err(why) = automaton::check_syntax(value) {
                    self.error(
                        "invalid-regex",
                        at,
                        &fp,
                        format!("regular expression does not compile: {why}"),
                        "use RE2 syntax",
                    );
                    ok = false;
                }
            } else {
                let valid = if field == "service" {
                    is_grpc_service(value)
                } else {
                    is_grpc_method(value)
                };
                if !valid {
                    self.error(
                        "invalid-grpc-match",
                        at,
                        &fp,
                        format!("`{value}` is not a valid gRPC {field} name"),
                        if field == "service" {
                            "write a fully qualified service such as `pkg.Service`"
                        } else {
                            "write a method name such as `GetTask`"
                        },
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| GrpcMethod {
            regex,
            service: m.service.clone(),
            method: m.method.clone(),
        })
    }

    // === filters ===

    fn header_modifier(
        &mut self,
        at: &At,
        fp: &[Seg],
        m: &HttpHeaderFilter,
    ) -> Option<HeaderModifier> {
        let mut ok = true;
        for (field, names) in [
            (
                "set",
                m.set.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            ),
            ("add", m.add.iter().map(|h| h.name.as_str()).collect()),
            ("remove", m.remove.iter().map(String::as_str).collect()),
        ] {
            let mut seen = HashSet::new();
            for (i, name) in names.iter().enumerate() {
                if !is_token(name) {
                    self.error(
                        "invalid-name",
                        at,
                        &[fp.to_vec(), path![field, i]].concat(),
                        format!("header name `{name}` is not a valid HTTP token"),
                        "use letters, digits and !#$%&'*+-.^_`|~ only",
                    );
                    ok = false;
                } else if !seen.insert(name.to_ascii_lowercase()) {
                    self.error(
                        "duplicate-header",
                        at,
                        &[fp.to_vec(), path![field, i]].concat(),
                        format!("header `{name}` appears twice in `{field}`"),
                        "list each header once",
                    );
                    ok = false;
                }
            }
        }
        let values = |list: &[model::HttpHeader]| {
            list.iter()
                .map(|h| HeaderValue {
                    name: h.name.to_ascii_lowercase(),
                    value: h.value.clone(),
                })
                .collect()
        };
        ok.then(|| HeaderModifier {
            set: values(&m.set),
            add: values(&m.add),
            remove: m.remove.iter().map(|n| n.to_ascii_lowercase()).collect(),
        })
    }

    fn path_modifier(
        &mut self,
        at: &At,
        pp: &[Seg],
        m: &HttpPathModifier,
        matches: &[model::HttpRouteMatch],
    ) -> Option<PathModifier> {
        match (
            m.r#type.as_str(),
            &m.replace_full_path,
            &m.replace_prefix_match,
        ) {
            ("ReplaceFullPath", Some(full), None) => {
                if !full.starts_with('/') {
                    self.error(
                        "invalid-path",
                        at,
                        &[pp.to_vec(), path!["replaceFullPath"]].concat(),
                        format!("`{full}` does not start with `/`"),
                        "write the new path from the root",
                    );
                    return None;
                }
                Some(PathModifier::ReplaceFullPath(full.clone()))
            }
            ("ReplacePrefixMatch", None, Some(with)) => {
                if !with.starts_with('/') {
                    self.error(
                        "invalid-path",
                        at,
                        &[pp.to_vec(), path!["replacePrefixMatch"]].concat(),
                        format!("`{with}` does not start with `/`"),
                        "write the new prefix from the root",
                    );
                    return None;
                }
                let prefixes: Vec<Option<String>> = if matches.is_empty() {
                    vec![Some(String::new())]
                } else {
                    matches
                        .iter()
                        .map(|m| match &m.path {
                            None => Some(String::new()),
                            Some(p)
                                if p.r#type.as_deref().unwrap_or("PathPrefix") == "PathPrefix" =>
                            {
                                Some(
                                    p.value
                                        .as_deref()
                                        .unwrap_or("/")
                                        .trim_end_matches('/')
                                        .to_string(),
                                )
                            }
                            Some(_) => None,
                        })
                        .collect()
                };
                let first = prefixes.first().cloned().flatten();
                if prefixes.iter().any(Option::is_none)
                    || prefixes.iter().any(|p| p.as_ref() != first.as_ref())
                {
                    self.error("invalid-filter", at, &[pp.to_vec(), path!["replacePrefixMatch"]].concat(), "ReplacePrefixMatch needs every match of the rule to be the same PathPrefix", "use one PathPrefix match in this rule, or ReplaceFullPath");
                    return None;
                }
                Some(PathModifier::ReplacePrefixMatch {
                    prefix: first.unwrap_or_default(),
                    with: with.clone(),
                })
            }
            (kind, _, _) => {
                self.error("invalid-filter", at, pp, format!("path modifier of type `{kind}` needs exactly its own field (`replaceFullPath` for ReplaceFullPath, `replacePrefixMatch` for ReplacePrefixMatch)"), "set `type` and the one matching field");
                None
            }
        }
    }

    fn http_filter(
        &mut self,
        at: &At,
        fp: &[Seg],
        namespace: &str,
        kind: RouteKind,
        filter: &model::HttpRouteFilter,
        matches: &[model::HttpRouteMatch],
    ) -> Option<Filter> {
        let set_fields: Vec<&str> = [
            (
                "requestHeaderModifier",
                filter.request_header_modifier.is_some(),
            ),
            (
                "responseHeaderModifier",
                filter.response_header_modifier.is_some(),
            ),
            ("requestMirror", filter.request_mirror.is_some()),
            ("requestRedirect", filter.request_redirect.is_some()),
            ("urlRewrite", filter.url_rewrite.is_some()),
            ("extensionRef", filter.extension_ref.is_some()),
            ("cors", filter.cors.is_some()),
            ("externalAuth", filter.external_auth.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        let expected = match filter.r#type.as_str() {
            "RequestHeaderModifier" => "requestHeaderModifier",
            "ResponseHeaderModifier" => "responseHeaderModifier",
            "RequestMirror" => "requestMirror",
            "RequestRedirect" => "requestRedirect",
            "URLRewrite" => "urlRewrite",
            "ExtensionRef" => "extensionRef",
            "CORS" => "cors",
            "ExternalAuth" => "externalAuth",
            other => {
                self.error("invalid-filter", at, &[fp.to_vec(), path!["type"]].concat(), format!("filter type `{other}` is not a Gateway API filter"), "use RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, RequestRedirect or URLRewrite");
                return None;
            }
        };
        if set_fields != [expected] {
            self.error(
                "invalid-filter",
                at,
                fp,
                format!(
                    "a `{}` filter must set `{expected}` and nothing else (it sets: {})",
                    filter.r#type,
                    if set_fields.is_empty() {
                        "nothing".to_string()
                    } else {
                        set_fields.join(", ")
                    }
                ),
                format!("put the settings under `{expected}`"),
            );
            return None;
        }
        let sp = [fp.to_vec(), path![expected]].concat();
        match filter.r#type.as_str() {
            "RequestHeaderModifier" => self
                .header_modifier(at, &sp, filter.request_header_modifier.as_ref()?)
                .map(Filter::RequestHeaderModifier),
            "ResponseHeaderModifier" => self
                .header_modifier(at, &sp, filter.response_header_modifier.as_ref()?)
                .map(Filter::ResponseHeaderModifier),
            "RequestMirror" => self
                .mirror(at, &sp, namespace, kind, filter.request_mirror.as_ref()?)
                .map(Filter::RequestMirror),
            "RequestRedirect" => {
                let r = filter.request_redirect.as_ref()?;
                let mut ok = true;
                if let Some(scheme) = &r.scheme
                    && scheme != "http"
                    && scheme != "https"
                {
                    self.error(
                        "invalid-filter",
                        at,
                        &[sp.clone(), path!["scheme"]].concat(),
                        format!("scheme `{scheme}` is not http or https"),
                        "use http or https",
                    );
                    ok = false;
                }
                let port = match r.port {
                    None => None,
                    Some(p) => match u16::try_from(p) {
                        Ok(p) if p > 0 => Some(p),
                        _ => {
                            self.error(
                                "invalid-port",
                                at,
                                &[sp.clone(), path!["port"]].concat(),
                                format!("redirect port {p} is out of range"),
                                "use a port from 1 to 65535",
                            );
                            ok = false;
                            None
                        }
                    },
                };
                let status_code = match r.status_code.unwrap_or(302) {
                    code @ (301 | 302 | 303 | 307 | 308) => code as u16,
                    other => {
                        self.error(
                            "invalid-filter",
                            at,
                            &[sp.clone(), path!["statusCode"]].concat(),
                            format!("redirect status {other} is not a redirect Gateway API allows"),
                            "use 301, 302, 303, 307 or 308",
                        );
                        ok = false;
                        302
                    }
                };
                let target = self.new_target(at, &sp, "redirect", &r.hostname, &r.path, matches);
                let (hostname, path) = target?;
                ok.then(|| {
                    Filter::RequestRedirect(Redirect {
                        scheme: r.scheme.clone(),
                        hostname,
                        path,
                        port,
                        status_code,
                    })
                })
            }
            "URLRewrite" => {
                let r = filter.url_rewrite.as_ref()?;
                let (hostname, path) =
                    self.new_target(at, &sp, "rewrite", &r.hostname, &r.path, matches)?;
                Some(Filter::UrlRewrite(Rewrite { hostname, path }))
            }
            other => {
                self.error("unsupported-filter", at, &[fp.to_vec(), path!["type"]].concat(), format!("sluice does not implement the `{other}` filter; ignoring it would change what requests get"), "remove the filter, or serve this route with a gateway that implements it");
                None
            }
        }
    }

    /// The new hostname and path of a redirect or rewrite (`what`); `None`
    /// after reporting an invalid one.
    fn new_target(
        &mut self,
        at: &At,
        sp: &[Seg],
        what: &str,
        hostname: &Option<String>,
        path: &Option<HttpPathModifier>,
        matches: &[model::HttpRouteMatch],
    ) -> Option<(Option<String>, Option<PathModifier>)> {
        let hostname = match hostname {
            Some(h) => match check_hostname(h, false) {
                Ok(h) => Some(Some(h)),
                Err(why) => {
                    self.error(
                        "invalid-hostname",
                        at,
                        &[sp.to_vec(), path!["hostname"]].concat(),
                        format!("{what} hostname `{h}` {why}"),
                        "use a DNS name without wildcard",
                    );
                    None
                }
            },
            None => Some(None),
        };
        let path = match path {
            Some(p) => self
                .path_modifier(at, &[sp.to_vec(), path!["path"]].concat(), p, matches)
                .map(Some),
            None => Some(None),
        };
        Some((hostname?, path?))
    }

    fn check_filter_combination(
        &mut self,
        at: &At,
        rp: &[Seg],
        filters: &[Filter],
        has_backends: bool,
    ) {
        let count = |name: &str| filters.iter().filter(|f| f.type_name() == name).count();
        for once in [
            "RequestHeaderModifier",
            "ResponseHeaderModifier",
            "RequestRedirect",
            "URLRewrite",
        ] {
            if count(once) > 1 {
                self.error(
                    "invalid-filter",
                    at,
                    &[rp.to_vec(), path!["filters"]].concat(),
                    format!(
                        "`{once}` is listed more than once; Gateway API allows it once per rule"
                    ),
                    "merge them into one filter",
                );
            }
        }
        if count("RequestRedirect") > 0 && count("URLRewrite") > 0 {
            self.error("invalid-filter", at, &[rp.to_vec(), path!["filters"]].concat(), "RequestRedirect and URLRewrite cannot be used together in one rule", "keep one of them: a redirect answers the client, a rewrite changes what is forwarded");
        }
        if count("RequestRedirect") > 0 && has_backends {
            self.error("invalid-filter", at, &[rp.to_vec(), path!["backendRefs"]].concat(), "a rule with a RequestRedirect filter cannot have backendRefs (the redirect answers every request)", "remove the backendRefs, or the redirect");
        }
    }

    fn mirror(
        &mut self,
        at: &At,
        sp: &[Seg],
        namespace: &str,
        kind: RouteKind,
        m: &HttpRequestMirrorFilter,
    ) -> Option<Mirror> {
        let (numerator, denominator) = match (m.percent, &m.fraction) {
            (Some(_), Some(_)) => {
                self.error(
                    "invalid-filter",
                    at,
                    sp,
                    "`percent` and `fraction` are exclusive",
                    "keep one of them",
                );
                return None;
            }
            (Some(p), None) if (0..=100).contains(&p) => (p as u32, 100),
            (Some(p), None) => {
                self.error(
                    "invalid-filter",
                    at,
                    &[sp.to_vec(), path!["percent"]].concat(),
                    format!("percent {p} is not within 0..100"),
                    "use 0 to 100",
                );
                return None;
            }
            (None, Some(f)) => {
                let d = f.denominator.unwrap_or(100);
                if d <= 0 || f.numerator < 0 || f.numerator > d || d > i64::from(u32::MAX) {
                    self.error(
                        "invalid-filter",
                        at,
                        &[sp.to_vec(), path!["fraction"]].concat(),
                        format!(
                            "fraction {}/{d} is not a share between 0 and 1",
                            f.numerator
                        ),
                        "use 0 <= numerator <= denominator, denominator > 0",
                    );
                    return None;
                }
                (f.numerator as u32, d as u32)
            }
            (None, None) => (1, 1),
        };
        let backend = self.backend(
            at,
            &[sp.to_vec(), path!["backendRef"]].concat(),
            namespace,
            kind,
            &m.backend_ref,
            Some(1),
        )?;
        Some(Mirror {
            backend,
            numerator,
            denominator,
        })
    }

    fn timeouts(&mut self, at: &At, rp: &[Seg], t: Option<&model::HttpRouteTimeouts>) -> Timeouts {
        let Some(t) = t else {
            return Timeouts::default();
        };
        let mut parse = |field: &str, value: &Option<String>| -> Option<u64> {
            let value = value.as_ref()?;
            match parse_duration(value) {
                Some(0) => None,
                Some(ms) => Some(ms),
                None => {
                    self.error(
                        "invalid-duration",
                        at,
                        &[rp.to_vec(), path!["timeouts", field]].concat(),
                        format!("`{value}` is not a Gateway API duration"),
                        "write it like 10s, 500ms or 1m30s (units h, m, s, ms)",
                    );
                    None
                }
            }
        };
        let request_ms = parse("request", &t.request);
        let backend_request_ms = parse("backendRequest", &t.backend_request);
        if let (Some(r), Some(b)) = (request_ms, backend_request_ms)
            && b > r
        {
            self.error(
                "invalid-duration",
                at,
                &[rp.to_vec(), path!["timeouts", "backendRequest"]].concat(),
                "backendRequest is longer than request",
                "make backendRequest at most the request timeout",
            );
        }
        Timeouts {
            request_ms,
            backend_request_ms,
        }
    }

    // === backends ===

    fn backend(
        &mut self,
        at: &At,
        bp: &[Seg],
        route_namespace: &str,
        route_kind: RouteKind,
        r: &BackendObjectReference,
        weight: Option<i64>,
    ) -> Option<Backend> {
        let weight = match weight.unwrap_or(1) {
            w @ 0..=MAX_WEIGHT => w as u32,
            w => {
                self.error(
                    "invalid-weight",
                    at,
                    &[bp.to_vec(), path!["weight"]].concat(),
                    format!("weight {w} is outside 0..{MAX_WEIGHT}"),
                    "use a weight from 0 to 1000000",
                );
                return None;
            }
        };
        let namespace = r
            .namespace
            .clone()
            .unwrap_or_else(|| route_namespace.to_string());
        let service = ObjectName {
            namespace: namespace.clone(),
            name: r.name.clone(),
        };
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Service");
        let mut backend = Backend {
            service,
            port: 0,
            weight,
            protocol: UpstreamProtocol::Inherit,
            endpoints: Vec::new(),
            unresolved: None,
        };
        if !(group.is_empty() || group == "core") || kind != "Service" {
            self.warning("unresolved-backend", at, bp, format!("backend kind `{kind}` (group `{group}`) is not supported: requests sent to it get 500"), "reference a core Service");
            backend.unresolved = Some(Unresolved::UnsupportedKind(kind.to_string()));
            return Some(backend);
        }
        let port = match r.port.map(u16::try_from) {
            Some(Ok(p)) if p > 0 => p,
            Some(_) => {
                self.error(
                    "invalid-port",
                    at,
                    &[bp.to_vec(), path!["port"]].concat(),
                    format!("port {} is out of range", r.port.unwrap_or_default()),
                    "use a port from 1 to 65535",
                );
                return None;
            }
            None => {
                self.error(
                    "missing-port",
                    at,
                    bp,
                    format!("backendRef to Service `{}` has no `port`", r.name),
                    "add the Service port, e.g. `port: 8080`",
                );
                return None;
            }
        };
        backend.port = port;
        if namespace != route_namespace
            && !self.granted(route_namespace, route_kind, &namespace, &r.name)
        {
            self.warning("ref-not-permitted", at, &[bp.to_vec(), path!["namespace"]].concat(), format!("reference to Service {namespace}/{} in another namespace is not allowed by any ReferenceGrant: requests sent to it get 500", r.name), format!("add a ReferenceGrant in namespace `{namespace}` from {route_kind} in `{route_namespace}` to Service `{}`", r.name));
            backend.unresolved = Some(Unresolved::NotPermitted);
            return Some(backend);
        }
        let Some(slices) = self.slices.get(&(namespace.clone(), r.name.clone())) else {
            self.warning("unresolved-backend", at, bp, format!("Service {namespace}/{} has no EndpointSlice: requests sent to it get 500", r.name), format!("add an EndpointSlice labelled `kubernetes.io/service-name: {}` in namespace `{namespace}`", r.name));
            backend.unresolved = Some(Unresolved::NoService);
            return Some(backend);
        };
        let mut found_port = false;
        let mut endpoints = Vec::new();
        let mut h2c = false;
        let mut notes = Vec::new();
        for (slice_origin, slice) in slices {
            let slice_port = slice
                .ports
                .iter()
                .find(|p| p.port == Some(i64::from(port)))
                .or_else(|| (slice.ports.len() == 1).then(|| &slice.ports[0]));
            let Some(slice_port) = slice_port else {
                continue;
            };
            let Some(target) = slice_port.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            found_port = true;
            h2c |= slice_port.app_protocol.as_deref() == Some("kubernetes.io/h2c");
            if slice.address_type == "FQDN" {
                notes.push((
                    *slice_origin,
                    slice.metadata.name.clone().unwrap_or_default(),
                ));
                continue;
            }
            for endpoint in &slice.endpoints {
                if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                for address in &endpoint.addresses {
                    match address.parse::<IpAddr>() {
                        Ok(ip) => {
                            let addr = SocketAddr::new(ip, target);
                            if !endpoints.contains(&addr) {
                                endpoints.push(addr);
                            }
                        }
                        Err(_) => notes.push((
                            *slice_origin,
                            slice.metadata.name.clone().unwrap_or_default(),
                        )),
                    }
                }
            }
        }
        notes.dedup();
        for (origin, slice_name) in notes {
            let slice_at = At {
                origin,
                object: format!("EndpointSlice {namespace}/{slice_name}"),
            };
            self.warning(
                "unsupported-address",
                &slice_at,
                &path!["endpoints"],
                "endpoint addresses that are not IP addresses (FQDN slices) are skipped",
                "list IPv4 or IPv6 addresses",
            );
        }
        if !found_port {
            self.warning("unresolved-backend", at, &[bp.to_vec(), path!["port"]].concat(), format!("no EndpointSlice of Service {namespace}/{} has port {port} (or a single port): requests sent to it get 500", r.name), "make the backendRef port match a port of the EndpointSlice");
            backend.unresolved = Some(Unresolved::NoPort);
            return Some(backend);
        }
        backend.endpoints = endpoints;
        if h2c {
            backend.protocol = UpstreamProtocol::H2c;
        }
        Some(backend)
    }

    fn granted(
        &self,
        from_namespace: &str,
        from_kind: RouteKind,
        to_namespace: &str,
        to_name: &str,
    ) -> bool {
        self.grants.iter().any(|g| {
            namespace_of(&g.metadata) == to_namespace
                && g.spec.from.iter().any(|f| {
                    f.group == model::GATEWAY_API_GROUP
                        && f.kind == from_kind.as_str()
                        && f.namespace == from_namespace
                })
                && g.spec.to.iter().any(|t| {
                    t.group.is_empty()
                        && t.kind == "Service"
                        && t.name.as_deref().is_none_or(|n| n == to_name)
                })
        })
    }

    // === attachment ===

    #[expect(
        clippy::too_many_arguments,
        reason = "attachment joins a route with every Gateway"
    )]
    fn attach(
        &mut self,
        at: &At,
        kind: RouteKind,
        name: &ObjectName,
        parents: &[ParentReference],
        hostnames: &[String],
        listeners: &[Listener],
        gateways: &[(Origin, Gateway)],
    ) -> Vec<Attachment> {
        let mut route_hosts = Vec::new();
        for (i, h) in hostnames.iter().enumerate() {
            match check_hostname(h, true) {
                Ok(h) => route_hosts.push(h),
                Err(why) => self.error(
                    "invalid-hostname",
                    at,
                    &path!["spec", "hostnames", i],
                    format!("hostname `{h}` {why}"),
                    "use a DNS name such as `api.example.com`, or `*.example.com`",
                ),
            }
        }
        let mut attachments: Vec<Attachment> = Vec::new();
        if parents.is_empty() {
            self.warning(
                "unattached-route",
                at,
                &path!["spec"],
                format!("{kind} has no parentRefs, so it attaches to no listener"),
                "add `parentRefs: [{name: <gateway>}]`",
            );
            return attachments;
        }
        for (p_index, parent) in parents.iter().enumerate() {
            let pp = path!["spec", "parentRefs", p_index];
            let group = parent.group.as_deref().unwrap_or(model::GATEWAY_API_GROUP);
            let parent_kind = parent.kind.as_deref().unwrap_or("Gateway");
            if group != model::GATEWAY_API_GROUP || parent_kind != "Gateway" {
                self.warning("unattached-route", at, &pp, format!("parentRef to `{parent_kind}` (group `{group}`) is not a Gateway; it attaches to nothing"), "reference a Gateway");
                continue;
            }
            let gateway_namespace = parent
                .namespace
                .clone()
                .unwrap_or_else(|| name.namespace.clone());
            let Some((_, gateway)) = gateways.iter().find(|(_, g)| {
                g.metadata.name.as_deref() == Some(parent.name.as_str())
                    && namespace_of(&g.metadata) == gateway_namespace
            }) else {
                self.warning("unattached-route", at, &pp, format!("parentRef names Gateway {gateway_namespace}/{}, which is not in the route set: it attaches to nothing", parent.name), "load the Gateway's file too, or fix the name/namespace");
                continue;
            };
            let mut reasons = Vec::new();
            let mut attached_here = false;
            for (l_index, listener) in listeners.iter().enumerate() {
                if listener.gateway.name != parent.name
                    || listener.gateway.namespace != gateway_namespace
                {
                    continue;
                }
                if parent
                    .section_name
                    .as_ref()
                    .is_some_and(|s| *s != listener.name)
                {
                    continue;
                }
                if parent.port.is_some_and(|p| p != i64::from(listener.port)) {
                    continue;
                }
                let spec_listener = gateway.spec.listeners.get(listener.index);
                if let Err(why) =
                    self.allowed(spec_listener, kind, &name.namespace, &gateway_namespace)
                {
                    reasons.push(format!("listener `{}`: {why}", listener.name));
                    continue;
                }
                let effective = intersect_hostnames(listener.hostname.as_deref(), &route_hosts);
                if effective.is_empty() {
                    reasons.push(format!(
                        "listener `{}`: no route hostname intersects its hostname `{}`",
                        listener.name,
                        listener.hostname.as_deref().unwrap_or("*")
                    ));
                    continue;
                }
                attached_here = true;
                match attachments.iter_mut().find(|a| a.listener == l_index) {
                    Some(a) => {
                        for h in effective {
                            if !a.hostnames.contains(&h) {
                                a.hostnames.push(h);
                            }
                        }
                    }
                    None => attachments.push(Attachment {
                        listener: l_index,
                        hostnames: effective,
                    }),
                }
            }
            if !attached_here {
                let why = if reasons.is_empty() {
                    match (&parent.section_name, parent.port) {
                        (Some(s), _) => format!(
                            "Gateway {gateway_namespace}/{} has no listener named `{s}`",
                            parent.name
                        ),
                        (None, Some(p)) => format!(
                            "Gateway {gateway_namespace}/{} has no listener on port {p}",
                            parent.name
                        ),
                        _ => format!(
                            "Gateway {gateway_namespace}/{} has no usable listener",
                            parent.name
                        ),
                    }
                } else {
                    reasons.join("; ")
                };
                self.warning(
                    "unattached-route",
                    at,
                    &pp,
                    format!("parentRef attaches to nothing: {why}"),
                    "fix sectionName/port, the listener's allowedRoutes, or the hostnames",
                );
            }
        }
        attachments
    }

    fn allowed(
        &self,
        listener: Option<&model::Listener>,
        kind: RouteKind,
        route_namespace: &str,
        gateway_namespace: &str,
    ) -> Result<(), String> {
        let Some(allowed) = listener.and_then(|l| l.allowed_routes.as_ref()) else {
            return if route_namespace == gateway_namespace {
                Ok(())
            } else {
                Err(format!(
                    "allowedRoutes defaults to the Gateway's own namespace `{gateway_namespace}`"
                ))
            };
        };
        if !allowed.kinds.is_empty()
            && !allowed.kinds.iter().any(|k| {
                k.kind == kind.as_str()
                    && k.group
                        .as_deref()
                        .is_none_or(|g| g == model::GATEWAY_API_GROUP)
            })
        {
            return Err(format!("allowedRoutes.kinds does not list {kind}"));
        }
        let namespaces = allowed.namespaces.as_ref();
        match namespaces.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
            "All" => Ok(()),
            "Selector" => {
                let labels = self
                    .namespaces
                    .get(route_namespace)
                    .cloned()
                    .unwrap_or_default();
                match namespaces.and_then(|n| n.selector.as_ref()) {
                    Some(selector) if selector_matches(selector, &labels) => Ok(()),
                    Some(_) => Err(format!(
                        "the namespace selector does not select namespace `{route_namespace}` (its labels come from a Namespace document)"
                    )),
                    None => Err("`from: Selector` has no selector".to_string()),
                }
            }
            _ if route_namespace == gateway_namespace => Ok(()),
            _ => Err(format!(
                "allowedRoutes admits routes from the Gateway's namespace `{gateway_namespace}` only"
            )),
        }
    }
}

fn kind_name(object: &Object) -> &'static str {
    match object {
        Object::Gateway(_) => "Gateway",
        Object::HttpRoute(_) => "HTTPRoute",
        Object::GrpcRoute(_) => "GRPCRoute",
        Object::EndpointSlice(_) => "EndpointSlice",
        Object::ReferenceGrant(_) => "ReferenceGrant",
        Object::Namespace(_) => "Namespace",
    }
}

/// The match of a rule written without `matches`: every request (of its
/// kind).
fn default_match(kind: RouteKind) -> Match {
    Match {
        path: match kind {
            RouteKind::Http => PathMatch::Prefix(String::new()),
            RouteKind::Grpc => PathMatch::Grpc(GrpcMethod::default()),
        },
        method: None,
        headers: Vec::new(),
        query: Vec::new(),
    }
}

fn rule_with(
    name: Option<String>,
    filters: Vec<Filter>,
    backends: Vec<Backend>,
    timeouts: Timeouts,
) -> Rule {
    let total_weight = backends.iter().map(|b| u64::from(b.weight)).sum();
    Rule {
        name,
        filters,
        backends,
        total_weight,
        timeouts,
    }
}

/// A route of either kind, in the shape validation needs.
struct RouteView<'a> {
    kind: RouteKind,
    origin: Origin,
    meta: &'a ObjectMeta,
    parent_refs: &'a [ParentReference],
    hostnames: &'a [String],
    rules: Vec<RuleView<'a>>,
}

/// The matches of a rule, as written.
enum Matches<'a> {
    Http(&'a [model::HttpRouteMatch]),
    Grpc(&'a [model::GrpcRouteMatch]),
}

/// A rule of either kind.
struct RuleView<'a> {
    name: Option<&'a str>,
    matches: Matches<'a>,
    filters: Vec<model::HttpRouteFilter>,
    backends: Vec<BackendView>,
    timeouts: Option<&'a model::HttpRouteTimeouts>,
    retry: bool,
    session_persistence: bool,
}

/// The [`BackendView`] of an HTTPRoute or GRPCRoute backendRef (the two
/// types have the same fields but no common trait).
macro_rules! backend_view {
    ($b:expr) => {
        BackendView {
            reference: BackendObjectReference {
                group: $b.group.clone(),
                kind: $b.kind.clone(),
                name: $b.name.clone(),
                namespace: $b.namespace.clone(),
                port: $b.port,
            },
            weight: $b.weight,
            has_filters: !$b.filters.is_empty(),
        }
    };
}
use backend_view;

/// A backendRef of either kind.
struct BackendView {
    reference: BackendObjectReference,
    weight: Option<i64>,
    has_filters: bool,
}

/// Whether a label selector selects these labels.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| e.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !e.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The hostnames a route serves on a listener: route ∩ listener.
pub fn intersect_hostnames(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let Some(listener) = listener else {
        return if route.is_empty() {
            vec!["*".to_string()]
        } else {
            route.to_vec()
        };
    };
    if route.is_empty() {
        return vec![listener.to_string()];
    }
    let covers = |wildcard: &str, host: &str| {
        wildcard
            .strip_prefix('*')
            .is_some_and(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
    };
    let mut out = Vec::new();
    for r in route {
        let both_wild = r.starts_with('*') && listener.starts_with('*');
        let h = if r == listener {
            Some(r.as_str())
        } else if both_wild {
            if r.ends_with(&listener[1..]) {
                Some(r.as_str())
            } else if listener.ends_with(&r[1..]) {
                Some(listener)
            } else {
                None
            }
        } else if covers(listener, r) {
            Some(r.as_str())
        } else if covers(r, listener) {
            Some(listener)
        } else {
            None
        };
        if let Some(h) = h
            && !out.iter().any(|o| o == h)
        {
            out.push(h.to_string());
        }
    }
    out
}

/// Checks a Gateway API hostname; returns it lower-cased.
pub fn check_hostname(h: &str, wildcard_ok: bool) -> Result<String, &'static str> {
    let lower = h.to_ascii_lowercase();
    let name = match lower.strip_prefix("*.") {
        Some(rest) if wildcard_ok => rest,
        Some(_) => return Err("may not be a wildcard here"),
        None => lower.as_str(),
    };
    if name.is_empty() || lower.len() > 253 {
        return Err("is empty or longer than 253 characters");
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err("is an IP address; Gateway API hostnames are DNS names");
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err("is not a valid DNS name (RFC 1123 labels: letters, digits, `-`)");
        }
    }
    Ok(lower)
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_grpc_service(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    !s.is_empty()
        && s.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

fn is_grpc_method(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks an Exact or PathPrefix value the way Gateway API's CEL rules do.
fn check_literal_path(value: &str) -> Result<(), &'static str> {
    if value.contains("//") {
        return Err("contains `//`");
    }
    let lower = value.to_ascii_lowercase();
    if lower.contains("%2f") {
        return Err("contains an encoded `/` (`%2f`)");
    }
    if value.contains('#') {
        return Err("contains `#`");
    }
    if value.contains("/./")
        || value.contains("/../")
        || value.ends_with("/.")
        || value.ends_with("/..")
    {
        return Err("contains a `.` or `..` segment");
    }
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |o: usize| bytes.get(i + o).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(1) && hex(2)) {
                return Err("contains `%` not followed by two hex digits");
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-/._~!$&'()*+,;=:@".contains(&b)) {
            return Err("contains a character that is not allowed in a path (RFC 3986)");
        }
        i += 1;
    }
    Ok(())
}

/// Parses a Gateway API duration (GEP-2257: e.g. `1h2m3s4ms`) to
/// milliseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s;
    let mut parts = 0;
    if s.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
        parts += 1;
        if parts > 4 {
            return None;
        }
    }
    Some(total)
}

/// Parses an RFC 3339 timestamp to Unix seconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.get(3..4) != Some(":") {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(10_000));
        assert_eq!(parse_duration("1h2m3s4ms"), Some(3_723_004));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("0s"), Some(0));
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("123456s"), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2024-01-02T03:04:05Z"), Some(1_704_164_645));
        assert_eq!(
            parse_timestamp("2024-01-02T04:04:05+01:00"),
            Some(1_704_164_645)
        );
        assert_eq!(
            parse_timestamp("2024-01-02T03:04:05.123Z"),
            Some(1_704_164_645)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn hostname_intersection() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(intersect_hostnames(None, &[]), s(&["*"]));
        assert_eq!(
            intersect_hostnames(Some("*.example.com"), &s(&["a.example.com", "b.other.com"])),
            s(&["a.example.com"])
        );
        assert_eq!(
            intersect_hostnames(Some("a.example.com"), &s(&["*.example.com"])),
            s(&["a.example.com"])
        );
        assert_eq!(
            intersect_hostnames(Some("*.example.com"), &s(&["*.a.example.com"])),
            s(&["*.a.example.com"])
        );
        assert_eq!(
            intersect_hostnames(Some("*.a.example.com"), &s(&["*.example.com"])),
            s(&["*.a.example.com"])
        );
        assert!(intersect_hostnames(Some("example.com"), &s(&["*.example.com"])).is_empty());
    }

    #[test]
    fn literal_paths() {
        assert!(check_literal_path("/api/v1").is_ok());
        assert!(check_literal_path("/a%20b").is_ok());
        for bad in ["/a//b", "/a/%2F", "/a#b", "/a/./b", "/a/..", "/a b", "/%zz"] {
            assert!(check_literal_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames() {
        assert_eq!(
            check_hostname("API.Example.com", false).as_deref(),
            Ok("api.example.com")
        );
        assert!(check_hostname("*.example.com", true).is_ok());
        assert!(check_hostname("*.example.com", false).is_err());
        assert!(check_hostname("10.0.0.1", true).is_err());
        assert!(check_hostname("a_b.com", true).is_err());
    }
}
