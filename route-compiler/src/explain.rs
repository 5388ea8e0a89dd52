//! `routec explain`: what a request gets, as JSON.
//!
//! The request is written the way a person says it: `'GET
//! http://host:port/path?q=1'` plus headers. It is routed by the same
//! [`Table::lookup`] the proxy runs, so what `explain` prints is what the
//! proxy does (the backend among several is the proxy's random choice, so
//! `explain` lists them all with their weights).

use serde_json::{Value, json};

use crate::route::{Backend, Filter, PathModifier, RouteKind};
use crate::table::{Decision, RequestView, Table};

/// A request parsed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliRequest {
    /// Method.
    pub method: String,
    /// Host (without port).
    pub host: String,
    /// Listener port (default 80).
    pub port: u16,
    /// Path and query.
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

/// Errors in the request given to `explain`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Not `METHOD URL`.
    #[error("expected 'METHOD http://host[:port]/path[?query]', got {0:?}")]
    Shape(String),
    /// The URL is not `http://…`.
    #[error("the URL must start with http:// (got {0:?})")]
    Scheme(String),
    /// The port does not parse.
    #[error("bad port in {0:?}")]
    Port(String),
    /// A header is not `name: value`.
    #[error("header {0:?} is not 'name: value'")]
    Header(String),
}

impl CliRequest {
    /// Parses `'GET http://host:port/path?q'` and `name: value` headers.
    ///
    /// # Errors
    ///
    /// [`RequestError`] saying what is malformed.
    pub fn parse(request: &str, headers: &[String]) -> Result<CliRequest, RequestError> {
        let mut parts = request.split_whitespace();
        let (Some(method), Some(url), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(RequestError::Shape(request.to_string()));
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| RequestError::Scheme(url.to_string()))?;
        let (authority, target) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => match rest.find('?') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            },
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_string()
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => (
                host,
                port.parse()
                    .map_err(|_| RequestError::Port(authority.to_string()))?,
            ),
            _ => (authority, 80),
        };
        let headers = headers
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .filter(|(n, _)| !n.is_empty())
                    .ok_or_else(|| RequestError::Header(h.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(CliRequest {
            method: method.to_string(),
            host: host.to_string(),
            port,
            target,
            headers,
        })
    }
}

impl RequestView for CliRequest {
    fn method(&self) -> &[u8] {
        self.method.as_bytes()
    }
    fn host(&self) -> &[u8] {
        self.header("host").unwrap_or(self.host.as_bytes())
    }
    fn target(&self) -> &[u8] {
        self.target.as_bytes()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_bytes())
    }
}

fn backend_json(b: &Backend) -> Value {
    let mut v = json!({
        "name": b.service.name,
        "namespace": b.service.namespace,
        "port": b.port,
        "weight": b.weight,
        "endpoints": b.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    });
    if let Some(why) = &b.unresolved {
        v["unresolved"] = json!(why.to_string());
    }
    v
}

fn path_json(p: &Option<PathModifier>) -> Value {
    match p {
        None => Value::Null,
        Some(PathModifier::ReplaceFullPath(path)) => {
            json!({"type": "ReplaceFullPath", "replaceFullPath": path})
        }
        Some(PathModifier::ReplacePrefixMatch { prefix, with }) => {
            json!({"type": "ReplacePrefixMatch", "prefix": prefix, "replacePrefixMatch": with})
        }
    }
}

/// A filter as JSON, in Gateway API's shape.
pub fn filter_json(f: &Filter) -> Value {
    let headers = |m: &crate::route::HeaderModifier| {
        json!({
            "set": m.set.iter().map(|h| json!({"name": h.name, "value": h.value})).collect::<Vec<_>>(),
            "add": m.add.iter().map(|h| json!({"name": h.name, "value": h.value})).collect::<Vec<_>>(),
            "remove": m.remove,
        })
    };
    match f {
        Filter::RequestHeaderModifier(m) => {
            json!({"type": f.type_name(), "requestHeaderModifier": headers(m)})
        }
        Filter::ResponseHeaderModifier(m) => {
            json!({"type": f.type_name(), "responseHeaderModifier": headers(m)})
        }
        Filter::RequestRedirect(r) => json!({"type": f.type_name(), "requestRedirect": {
            "scheme": r.scheme, "hostname": r.hostname, "port": r.port,
            "statusCode": r.status_code, "path": path_json(&r.path),
        }}),
        Filter::UrlRewrite(r) => json!({"type": f.type_name(), "urlRewrite": {
            "hostname": r.hostname, "path": path_json(&r.path),
        }}),
        Filter::RequestMirror(m) => json!({"type": f.type_name(), "requestMirror": {
            "backendRef": backend_json(&m.backend),
            "fraction": {"numerator": m.numerator, "denominator": m.denominator},
        }}),
    }
}

/// Routes `request` and describes the decision. Returns the JSON and
/// whether a route matched.
pub fn explain(table: &Table, request: &CliRequest) -> (Value, bool) {
    let mut scratch = table.scratch();
    let decision = table.lookup(request.port, request, &mut scratch);
    let grpc = crate::table::is_grpc(request);
    let mut out = json!({
        "request": {
            "method": request.method,
            "host": request.host,
            "port": request.port,
            "target": request.target,
            "grpc": grpc,
        },
        "listener": null, "route": null, "rule": null, "match": null,
        "backends": [], "filters": [], "status": null,
    });
    let matched = match decision {
        Decision::NoListener => {
            out["status"] = json!(404);
            out["reason"] = json!(format!(
                "no listener on port {} accepts host {:?}",
                request.port, request.host
            ));
            false
        }
        Decision::NoRoute { listener, kind } => {
            out["listener"] = json!({"name": listener.name, "port": listener.port, "gateway": listener.gateway.to_string()});
            if kind == RouteKind::Grpc {
                out["status"] = json!(200);
                out["grpc_status"] = json!(12);
                out["reason"] = json!("no GRPCRoute matches: gRPC status 12 UNIMPLEMENTED");
            } else {
                out["status"] = json!(404);
                out["reason"] = json!("no route matches");
            }
            false
        }
        Decision::Matched(m) => {
            out["listener"] = json!({"name": m.listener.name, "port": m.listener.port, "gateway": m.listener.gateway.to_string()});
            out["route"] = json!({
                "kind": m.route.kind.as_str(),
                "namespace": m.route.name.namespace,
                "name": m.route.name.name,
            });
            out["rule"] = json!(m.rule_index);
            out["match"] = json!(m.match_index);
            if let Some(name) = &m.rule.name {
                out["rule_name"] = json!(name);
            }
            out["backends"] = m.rule.backends.iter().map(backend_json).collect();
            out["filters"] = m.rule.filters.iter().map(filter_json).collect();
            out["status"] = json!(m.rule.fixed_status());
            if m.rule.timeouts.request_ms.is_some() || m.rule.timeouts.backend_request_ms.is_some()
            {
                out["timeouts"] = json!({
                    "request_ms": m.rule.timeouts.request_ms,
                    "backend_request_ms": m.rule.timeouts.backend_request_ms,
                });
            }
            true
        }
    };
    (out, matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_like_curl() {
        let r = CliRequest::parse(
            "GET http://api.example.com:8080/a/b?x=1",
            &["X-Version: 2".into()],
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.host, "api.example.com");
        assert_eq!(r.port, 8080);
        assert_eq!(r.target, "/a/b?x=1");
        assert_eq!(r.headers, [("x-version".to_string(), "2".to_string())]);
        let r = CliRequest::parse("POST http://h", &[]).unwrap();
        assert_eq!((r.port, r.target.as_str()), (80, "/"));
        assert!(CliRequest::parse("GET /path", &[]).is_err());
        assert!(CliRequest::parse("GET http://h:x/", &[]).is_err());
        assert!(CliRequest::parse("GET http://h/", &["nocolon".into()]).is_err());
    }
}
