//! The validated route set: what the table builder, the lints and the
//! reference matcher work on.
//!
//! Validation ([`crate::validate`]) turns decoded Gateway API objects into a
//! [`RouteSet`]. Everything here is already checked: paths start with `/`,
//! regexes compile, listeners exist, attachments respect `allowedRoutes` and
//! hostnames intersect. Nothing here points back into YAML except
//! [`Origin`], which lets diagnostics name the file and line.

use std::fmt;

use crate::route::{Route, RouteKind};

/// Where an object was written: which loaded file and which document of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Origin {
    /// Index into [`crate::source::Sources::files`].
    pub file: usize,
    /// Index of the document within the file.
    pub document: usize,
}

/// A Gateway listener that accepts HTTP/1.1 and h2c.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The Gateway that owns it.
    pub gateway: crate::route::ObjectName,
    /// `listeners[].name`.
    pub name: String,
    /// `listeners[].port`.
    pub port: u16,
    /// `listeners[].hostname`, lower-case; `None` matches every host.
    pub hostname: Option<String>,
    /// Where it was written (the Gateway document) and its index in
    /// `spec.listeners`.
    pub origin: Origin,
    /// Index in `spec.listeners`.
    pub index: usize,
}

/// How a path condition matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// The path equals the value byte for byte.
    Exact(String),
    /// The path starts with the value, compared element by element; the
    /// value is stored without its trailing `/` (so `/` is stored as ``).
    Prefix(String),
    /// The whole path matches the RE2 expression.
    Regex(String),
    /// A GRPCRoute method match over `:path` `/<service>/<method>`.
    Grpc(GrpcMethod),
}

/// A GRPCRoute `method` match.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GrpcMethod {
    /// Whether `service`/`method` are regular expressions.
    pub regex: bool,
    /// `method.service`, if given.
    pub service: Option<String>,
    /// `method.method`, if given.
    pub method: Option<String>,
}

impl PathMatch {
    /// The pattern that the path automaton compiles for this condition: it
    /// must match exactly the paths this condition accepts (full match).
    pub fn to_pattern(&self) -> String {
        match self {
            PathMatch::Exact(value) => regex_syntax::escape(value),
            PathMatch::Prefix(prefix) if prefix.is_empty() => "/(?s:.*)".to_string(),
            PathMatch::Prefix(prefix) => {
                format!("{}(?:/(?s:.*))?", regex_syntax::escape(prefix))
            }
            PathMatch::Regex(regex) => format!("(?:{regex})"),
            PathMatch::Grpc(grpc) => {
                let part = |value: &Option<String>| match value {
                    None => "[^/]+".to_string(),
                    Some(v) if grpc.regex => format!("(?:{v})"),
                    Some(v) => regex_syntax::escape(v),
                };
                format!("/{}/{}", part(&grpc.service), part(&grpc.method))
            }
        }
    }

    /// The Gateway API `type` of the condition.
    pub fn type_name(&self) -> &'static str {
        match self {
            PathMatch::Exact(_) => "Exact",
            PathMatch::Prefix(_) => "PathPrefix",
            PathMatch::Regex(_) => "RegularExpression",
            PathMatch::Grpc(g) if g.regex => "RegularExpression",
            PathMatch::Grpc(_) => "Exact",
        }
    }
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMatch::Exact(v) => write!(f, "Exact {v}"),
            PathMatch::Prefix(v) if v.is_empty() => f.write_str("PathPrefix /"),
            PathMatch::Prefix(v) => write!(f, "PathPrefix {v}"),
            PathMatch::Regex(v) => write!(f, "RegularExpression {v}"),
            PathMatch::Grpc(g) => write!(
                f,
                "{} {}/{}",
                self.type_name(),
                g.service.as_deref().unwrap_or("*"),
                g.method.as_deref().unwrap_or("*")
            ),
        }
    }
}

/// How a header or query value matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueMatch {
    /// Byte-for-byte equality.
    Exact(String),
    /// Full match of an RE2 expression.
    Regex(String),
}

/// A header (name lower-case) or query parameter (name as written)
/// condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Predicate {
    /// The header or parameter name.
    pub name: String,
    /// How its value matches.
    pub value: ValueMatch,
}

/// One `matches[]` entry: every condition must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Match {
    /// The path (or gRPC method) condition.
    pub path: PathMatch,
    /// `method`, upper-case, if given.
    pub method: Option<String>,
    /// Header conditions, one per distinct name.
    pub headers: Vec<Predicate>,
    /// Query parameter conditions, one per distinct name.
    pub query: Vec<Predicate>,
}

/// Where a route attaches: one listener, with the hostnames it serves there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Index into [`RouteSet::listeners`].
    pub listener: usize,
    /// The effective hostnames (route ∩ listener), lower-case, possibly
    /// wildcards; `*` alone when the route serves every host the listener
    /// accepts.
    pub hostnames: Vec<String>,
}

/// A validated route: the resolved [`Route`] plus what is needed to match
/// and order it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteEntry {
    /// Identity, rules, filters, backends.
    pub route: Route,
    /// The matches of each rule (`matches[rule][match]`); a rule written
    /// without matches gets the default match.
    pub matches: Vec<Vec<Match>>,
    /// `metadata.creationTimestamp` as Unix seconds, if given.
    pub created: Option<i64>,
    /// Where the route attaches.
    pub attachments: Vec<Attachment>,
    /// Where it was written.
    pub origin: Origin,
}

impl RouteEntry {
    /// HTTPRoute or GRPCRoute.
    pub fn kind(&self) -> RouteKind {
        self.route.kind
    }
}

/// Everything the table is built from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteSet {
    /// Every listener of every Gateway, in input order.
    pub listeners: Vec<Listener>,
    /// Every route, in input order.
    pub routes: Vec<RouteEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_pattern_matches_whole_elements() {
        let re = regex_automata::meta::Regex::new(&format!(
            "^{}$",
            PathMatch::Prefix("/api".into()).to_pattern()
        ))
        .unwrap();
        for path in ["/api", "/api/", "/api/x/y"] {
            assert!(re.is_match(path), "{path}");
        }
        for path in ["/apis", "/ap", "/"] {
            assert!(!re.is_match(path), "{path}");
        }
    }

    #[test]
    fn grpc_pattern_defaults_to_any_element() {
        let grpc = PathMatch::Grpc(GrpcMethod {
            regex: false,
            service: Some("task.TaskService".into()),
            method: None,
        });
        assert_eq!(grpc.to_pattern(), r"/task\.TaskService/[^/]+");
    }
}
