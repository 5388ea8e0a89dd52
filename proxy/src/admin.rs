//! The admin listener (`--admin ADDR`): a small blocking HTTP/1.1 server on
//! its own threads, away from the workers.
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text exposition ([`crate::metrics`]) |
//! | `GET /routes` | the current table's listeners and routes, as JSON |
//! | `GET /healthz` | `200 ok`, or `503 draining` once a drain started |
//!
//! Anything else is 404 (an unknown path) or 405 (a method other than
//! `GET`). Every response closes its connection. A request head larger
//! than [`DEFAULT_MAX_REQUEST`] is answered 431, a client slower than
//! [`DEFAULT_IO_TIMEOUT`] is dropped, and at most
//! [`DEFAULT_MAX_CONNECTIONS`] are served at once (503 beyond).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use route_compiler::route::{Backend, Route, Rule};
use route_compiler::table::{ListenerInfo, Table};
use serde_json::{Value, json};

use crate::metrics::{self, Registry};
use crate::runtime::Control;
use crate::snapshot::Shared;

/// Largest admin request head, in bytes.
pub const DEFAULT_MAX_REQUEST: usize = 8 * 1024;

/// Read and write timeout of an admin connection.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Admin connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// What the admin endpoints read.
#[derive(Debug)]
pub struct State {
    /// The route table.
    pub shared: Arc<Shared>,
    /// The metrics.
    pub registry: Arc<Registry>,
    /// Draining or not.
    pub control: Arc<Control>,
}

/// A complete admin response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            crate::phase::reason(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

/// What a request head says: `Ok(None)` while it is incomplete.
///
/// # Errors
///
/// The status to answer a malformed (400) or oversized (431) head with.
pub fn parse_request(buf: &[u8]) -> Result<Option<(String, String)>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {
            let method = req.method.unwrap_or_default().to_string();
            let path = req.path.unwrap_or_default().to_string();
            Ok(Some((method, path)))
        }
        Ok(httparse::Status::Partial) if buf.len() >= DEFAULT_MAX_REQUEST => Err(431),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(431),
        Err(_) => Err(400),
    }
}

/// Answers `method path`.
pub fn answer(state: &State, method: &str, path: &str) -> Response {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let known = matches!(path, "/metrics" | "/routes" | "/healthz");
    if !known {
        return Response::text(404, "not found");
    }
    if method != "GET" {
        return Response::text(405, "method not allowed");
    }
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: metrics::CONTENT_TYPE,
            body: state.registry.encode(state.shared.generation()),
        },
        "/routes" => {
            let table = state.shared.table();
            let body = routes_json(&table, state.shared.generation());
            Response {
                status: 200,
                content_type: "application/json",
                body: format!("{body:#}\n"),
            }
        }
        _ if state.control.is_draining() => Response::text(503, "draining"),
        _ => Response::text(200, "ok"),
    }
}

fn listener_json(l: &ListenerInfo) -> Value {
    json!({
        "gateway": { "namespace": l.gateway.namespace, "name": l.gateway.name },
        "name": l.name,
        "port": l.port,
        "hostname": l.hostname,
    })
}

fn backend_json(b: &Backend) -> Value {
    json!({
        "namespace": b.service.namespace,
        "name": b.service.name,
        "port": b.port,
        "weight": b.weight,
        "endpoints": b.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "unresolved": b.unresolved.as_ref().map(ToString::to_string),
    })
}

fn rule_json(index: usize, rule: &Rule) -> Value {
    json!({
        "index": index,
        "name": rule.name,
        "backends": rule.backends.iter().map(backend_json).collect::<Vec<_>>(),
        "filters": rule.filters.iter().map(|f| f.type_name()).collect::<Vec<_>>(),
        "timeouts": {
            "request_ms": rule.timeouts.request_ms,
            "backend_request_ms": rule.timeouts.backend_request_ms,
        },
    })
}

fn route_json(route: &Route) -> Value {
    json!({
        "kind": route.kind.as_str(),
        "namespace": route.name.namespace,
        "name": route.name.name,
        "rules": route.rules.iter().enumerate().map(|(i, r)| rule_json(i, r)).collect::<Vec<_>>(),
    })
}

/// The `/routes` document for `table`.
pub fn routes_json(table: &Table, generation: u64) -> Value {
    json!({
        "generation": generation,
        "listeners": table.listeners().iter().map(listener_json).collect::<Vec<_>>(),
        "routes": table.routes().iter().map(route_json).collect::<Vec<_>>(),
    })
}

/// Binds the admin listener.
///
/// # Errors
///
/// The bind error.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} (admin): {e}")))
}

/// Serves `listener` on a new thread (and one short-lived thread per
/// connection) for the life of the process.
///
/// # Errors
///
/// The thread spawn error.
pub fn spawn(listener: TcpListener, state: Arc<State>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sluice-admin".into())
        .spawn(move || {
            let open = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming() {
                let mut stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("admin accept: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                if open.fetch_add(1, Ordering::AcqRel) >= DEFAULT_MAX_CONNECTIONS {
                    open.fetch_sub(1, Ordering::AcqRel);
                    let _ = stream.set_write_timeout(Some(DEFAULT_IO_TIMEOUT));
                    let _ = stream.write_all(&Response::text(503, "busy").to_bytes());
                    continue;
                }
                let state = state.clone();
                let count = open.clone();
                let spawned = std::thread::Builder::new()
                    .name("sluice-admin-conn".into())
                    .spawn(move || {
                        serve(stream, &state);
                        count.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    open.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!("admin: cannot spawn a connection thread: {e}");
                }
            }
        })
}

fn serve(mut stream: TcpStream, state: &State) {
    let _ = stream.set_read_timeout(Some(DEFAULT_IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(DEFAULT_IO_TIMEOUT));
    let mut buf = vec![0u8; DEFAULT_MAX_REQUEST];
    let mut len = 0;
    let response = loop {
        match parse_request(&buf[..len]) {
            Ok(Some((method, path))) => break answer(state, &method, &path),
            Ok(None) => {}
            Err(status) => break Response::text(status, crate::phase::reason(status)),
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
    };
    let _ = stream.write_all(&response.to_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let the client read the answer before the socket closes (a close with
    // unread request bytes would reset it).
    let _ = stream.read(&mut buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Option<State> {
        let build = route_compiler::Build::from_text(&[(
            "gw.yaml",
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: ns}\nspec:\n  gatewayClassName: eg\n  listeners: [{name: http, protocol: HTTP, port: 8080}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns}\nspec:\n  parentRefs: [{name: gw}]\n  rules: [{backendRefs: [{name: svc, port: 80, weight: 3}]}]\n",
        )])
        .ok()?;
        Some(State {
            shared: Arc::new(Shared::new(Arc::new(build.table))),
            registry: Arc::new(Registry::new(1)),
            control: Arc::default(),
        })
    }

    #[test]
    fn requests_are_parsed_strictly_and_bounded() {
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\n"), Ok(None));
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(("GET".into(), "/metrics".into())))
        );
        assert_eq!(parse_request(b"GET /\x01 HTTP/1.1\r\n\r\n"), Err(400));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(DEFAULT_MAX_REQUEST, b'a');
        assert_eq!(parse_request(&big), Err(431));
    }

    #[test]
    fn endpoints_answer() {
        let Some(state) = state() else {
            panic!("the test route set does not build");
        };
        assert_eq!(answer(&state, "GET", "/healthz").status, 200);
        assert_eq!(answer(&state, "POST", "/healthz").status, 405);
        assert_eq!(answer(&state, "GET", "/nope").status, 404);
        let routes = answer(&state, "GET", "/routes?pretty");
        assert_eq!(routes.status, 200);
        let v: Value = serde_json::from_str(&routes.body).unwrap_or_default();
        assert_eq!(v["routes"][0]["name"], "r");
        assert_eq!(v["routes"][0]["kind"], "HTTPRoute");
        assert_eq!(v["routes"][0]["rules"][0]["backends"][0]["weight"], 3);
        assert_eq!(v["listeners"][0]["port"], 8080);
        let metrics = answer(&state, "GET", "/metrics");
        assert!(metrics.body.contains("sluice_route_table_generation 0"));
        state.control.drain();
        assert_eq!(answer(&state, "GET", "/healthz").status, 503);
    }
}
