//! End-to-end: the real `sluice` binary between a raw HTTP/1.1 client and
//! real backend servers, on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: panics are failures"
)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml::Value;
use support::{Backend, Client, Proxy, endpoint_slice, free_port, seed_dir, tally, temp_dir};

/// A proxy started on the seed gateway (its port 80 replaced by a free
/// port) plus one route file, with a backend for every backend name.
struct Setup {
    proxy: Proxy,
    port: u16,
    backends: BTreeMap<String, Backend>,
}

/// Every `backendRefs[].name` and `backendRef.name` in `yaml`.
fn backend_names(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    (Some("backendRefs"), Value::Sequence(refs)) => {
                        for r in refs {
                            if let Some(name) = r.get("name").and_then(Value::as_str) {
                                names.push(name.to_string());
                            }
                        }
                    }
                    (Some("backendRef"), r) => {
                        if let Some(name) = r.get("name").and_then(Value::as_str) {
                            names.push(name.to_string());
                        }
                    }
                    _ => backend_names(v, names),
                }
            }
        }
        Value::Sequence(seq) => seq.iter().for_each(|v| backend_names(v, names)),
        _ => {}
    }
}

/// `dead` services get an EndpointSlice at a port nobody listens on.
fn setup(tag: &str, routes: &str, dead: &[&str], workers: usize) -> Setup {
    let dir = temp_dir(tag);
    let port = free_port();
    let gateway = std::fs::read_to_string(seed_dir().join("gateway.yaml"))
        .unwrap()
        .replace("port: 80\n", &format!("port: {port}\n"))
        .replace("port: 50051", &format!("port: {}", free_port()));
    let mut names = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(routes) {
        backend_names(&Value::deserialize(doc).unwrap(), &mut names);
    }
    names.sort();
    names.dedup();
    let mut backends = BTreeMap::new();
    let mut slices = String::new();
    for name in &names {
        if dead.contains(&name.as_str()) {
            slices.push_str(&endpoint_slice("task-api", name, free_port()));
        } else {
            let backend = Backend::start(name);
            slices.push_str(&endpoint_slice("task-api", name, backend.port));
            backends.insert(name.clone(), backend);
        }
    }
    let files: Vec<PathBuf> = [
        ("gateway.yaml", gateway),
        ("routes.yaml", routes.to_string()),
        ("endpoints.yaml", slices),
    ]
    .into_iter()
    .map(|(name, text)| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    })
    .collect();
    let proxy = Proxy::start(&files, port, workers);
    Setup {
        proxy,
        port,
        backends,
    }
}

// === seed cases ===

fn run_seed_file(file: &str) {
    let cases: Value =
        serde_yaml::from_str(&std::fs::read_to_string(seed_dir().join("cases.yaml")).unwrap())
            .unwrap();
    let cases = cases["files"][file]
        .as_sequence()
        .unwrap_or_else(|| panic!("no cases for {file}"));
    let routes = std::fs::read_to_string(seed_dir().join(file)).unwrap();
    let s = setup(file, &routes, &[], 2);
    let mut client = Client::new(s.port);
    for case in cases {
        let request = case["request"].as_str().unwrap();
        let (method, target) = request.split_once(' ').unwrap();
        let headers: Vec<(String, String)> = case["headers"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().unwrap().to_string(),
                            v.as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = case["body"].as_str().unwrap_or("").as_bytes();
        let context = || format!("{file}: {case:?}\n--- sluice log:\n{}", s.proxy.log_text());

        if let Some(repeat) = case["repeat"].as_u64() {
            let got: Vec<String> = (0..repeat)
                .map(|_| {
                    let r = client.request(method, target, &headers, body);
                    assert_eq!(r.status, 200, "{}", context());
                    r.header("x-backend").unwrap().to_string()
                })
                .collect();
            let counts = tally(got);
            let tolerance = case["tolerance"].as_f64().unwrap();
            for (name, share) in case["split"].as_mapping().unwrap() {
                let name = name.as_str().unwrap();
                let want = share.as_f64().unwrap();
                let have = *counts.get(name).unwrap_or(&0) as f64 / repeat as f64;
                assert!(
                    (have - want).abs() <= tolerance,
                    "{name}: {have} vs {want}; {counts:?}\n{}",
                    context()
                );
            }
            assert_eq!(client.connections, 1, "keep-alive across {repeat} requests");
            continue;
        }

        let r = client.request(method, target, &headers, body);
        if let Some(backend) = case["backend"].as_str() {
            assert_eq!(r.status, 200, "{}", context());
            assert_eq!(r.backend().as_deref(), Some(backend), "{}", context());
            assert_eq!(r.header("x-backend"), Some(backend), "{}", context());
            assert_eq!(
                r.echoed("method"),
                vec![method.to_string()],
                "{}",
                context()
            );
            assert_eq!(
                r.echoed("target"),
                vec![target.to_string()],
                "{}",
                context()
            );
            assert_eq!(
                r.echoed("body"),
                vec![String::from_utf8_lossy(body).into_owned()],
                "{}",
                context()
            );
            for (k, v) in &headers {
                let line = format!("{}: {v}", k.to_ascii_lowercase());
                assert!(
                    r.echoed("header").contains(&line),
                    "{line} not forwarded; {}",
                    context()
                );
            }
        }
        if let Some(status) = case["status"].as_u64() {
            assert_eq!(u64::from(r.status), status, "{}", context());
        }
    }
    // Every backend that answered was reached through the proxy only.
    for backend in s.backends.values() {
        for r in backend.received() {
            assert!(
                r.headers.iter().any(|(n, _)| n == "x-forwarded-for"),
                "{r:?}"
            );
        }
    }
}

macro_rules! seed_tests {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $name() {
                run_seed_file($file);
            }
        )*
    };
}

seed_tests! {
    seed_01_exact => "01-exact.yaml",
    seed_02_prefix => "02-prefix.yaml",
    seed_03_regex => "03-regex.yaml",
    seed_04_header_version => "04-header-version.yaml",
    seed_05_header_regex => "05-header-regex.yaml",
    seed_06_beta => "06-beta.yaml",
    seed_07_query => "07-query.yaml",
    seed_08_path_and_query => "08-path-and-query.yaml",
    seed_09_method => "09-method.yaml",
    seed_10_canary => "10-canary.yaml",
    seed_12_ordered => "12-ordered.yaml",
    seed_13_listed_general_first => "13-listed-general-first.yaml",
}

// === behaviour beyond the seed cases ===

const MISC: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: misc, namespace: task-api}
spec:
  parentRefs: [{name: task-api-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /echo}}]
    backendRefs: [{name: echo, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /dead}}]
    backendRefs: [{name: dead, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: echo, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /rewrite}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: internal.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-set, value: s}], add: [{name: x-add, value: a}], remove: [x-remove]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: x-resp, value: r}], remove: [x-backend]}
    backendRefs: [{name: echo, port: 8000}]
"#;

fn misc(tag: &str) -> Setup {
    setup(tag, MISC, &["dead"], 1)
}

#[test]
fn forwarded_head_drops_hop_by_hop_and_adds_forwarding_headers() {
    let s = misc("hop");
    let mut c = Client::new(s.port);
    let r = c.request(
        "GET",
        "/echo/a?b=1",
        &[
            ("Connection", "keep-alive, x-private"),
            ("X-Private", "p"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("Proxy-Connection", "keep-alive"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-Proto", "https"),
            ("X-Kept", "yes"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", s.proxy.log_text());
    let headers = r.echoed("header");
    for gone in [
        "connection",
        "x-private",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
    ] {
        assert!(
            !headers.iter().any(|h| h.starts_with(&format!("{gone}:"))),
            "{gone} forwarded: {headers:?}"
        );
    }
    assert!(
        headers.contains(&"x-forwarded-for: 10.0.0.1, 127.0.0.1".to_string()),
        "{headers:?}"
    );
    assert!(
        headers.contains(&"x-forwarded-proto: http".to_string()),
        "{headers:?}"
    );
    assert!(headers.contains(&"x-kept: yes".to_string()), "{headers:?}");
    assert!(
        headers.contains(&"host: example.com".to_string()),
        "{headers:?}"
    );
    // The backend's own hop-by-hop fields do not reach the client.
    assert_eq!(r.header("keep-alive"), None);
    assert_eq!(r.header("x-hop"), None);
    assert_eq!(r.header("connection"), None);
}

#[test]
fn filters_rewrite_modify_and_redirect() {
    let s = misc("filters");
    let mut c = Client::new(s.port);
    let r = c.request(
        "GET",
        "/rewrite/x?q=1",
        &[("X-Remove", "1"), ("X-Set", "old")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", s.proxy.log_text());
    assert_eq!(r.echoed("target"), vec!["/v2/x?q=1".to_string()]);
    let headers = r.echoed("header");
    assert!(
        headers.contains(&"host: internal.example".to_string()),
        "{headers:?}"
    );
    assert!(headers.contains(&"x-set: s".to_string()), "{headers:?}");
    assert!(!headers.contains(&"x-set: old".to_string()), "{headers:?}");
    assert!(headers.contains(&"x-add: a".to_string()), "{headers:?}");
    assert!(
        !headers.iter().any(|h| h.starts_with("x-remove")),
        "{headers:?}"
    );
    assert_eq!(r.header("x-resp"), Some("r"));
    assert_eq!(r.header("x-backend"), None);

    let r = c.request("GET", "/old/page?x=1", &[], b"");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("http://example.com:{}/new/page?x=1", s.port).as_str())
    );
    assert!(
        s.backends["echo"]
            .received()
            .iter()
            .all(|r| !r.target.starts_with("/old"))
    );
    assert_eq!(c.connections, 1);
}

#[test]
fn dead_backend_is_502_and_connection_stays_open() {
    let s = misc("dead");
    let mut c = Client::new(s.port);
    assert_eq!(c.request("GET", "/dead", &[], b"").status, 502);
    assert_eq!(c.request("GET", "/echo", &[], b"").status, 200);
    assert_eq!(c.request("GET", "/nothing-here", &[], b"").status, 404);
    assert_eq!(c.connections, 1);
}

#[test]
fn slow_backend_is_504() {
    let s = misc("slow");
    let mut c = Client::new(s.port);
    let r = c.request("GET", "/slow", &[("x-test-delay-ms", "2000")], b"");
    assert_eq!(r.status, 504, "{}", s.proxy.log_text());
    let r = c.request("GET", "/slow", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn keep_alive_reuses_client_and_backend_connections() {
    let s = misc("keepalive");
    let mut c = Client::new(s.port);
    let ports: Vec<String> = (0..5)
        .map(|i| {
            let r = c.request("GET", &format!("/echo/{i}"), &[], b"");
            assert_eq!(r.status, 200);
            r.echoed("peer-port").remove(0)
        })
        .collect();
    assert_eq!(c.connections, 1);
    assert!(
        ports.iter().all(|p| *p == ports[0]),
        "backend connection not reused: {ports:?}"
    );
    // A pipelined pair on the same connection.
    c.send(b"GET /echo/p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/p2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        c.read_response(false).echoed("target"),
        vec!["/echo/p1".to_string()]
    );
    assert_eq!(
        c.read_response(false).echoed("target"),
        vec!["/echo/p2".to_string()]
    );
}

#[test]
fn chunked_request_body_is_streamed() {
    let s = misc("chunked-req");
    let echo = &s.backends["echo"];
    let mut c = Client::new(s.port);
    c.send(b"POST /echo/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
    // The backend sees the first chunk while the client has not finished.
    assert!(
        echo.wait_event("chunk:first"),
        "first chunk not streamed\n{}",
        s.proxy.log_text()
    );
    c.send(b"6;ext=1\r\nsecond\r\n0\r\nX-Trailer: t\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("body"), vec!["firstsecond".to_string()]);
    assert!(
        r.echoed("header")
            .contains(&"transfer-encoding: chunked".to_string())
    );
    // Content-Length body on the same connection afterwards.
    let r = c.request("PUT", "/echo/cl", &[], b"0123456789");
    assert_eq!(r.echoed("body"), vec!["0123456789".to_string()]);
    assert_eq!(c.connections, 1);
}

#[test]
fn chunked_response_body_is_streamed() {
    let s = misc("chunked-resp");
    let echo = &s.backends["echo"];
    let mut c = Client::new(s.port);
    c.send(b"GET /echo/stream HTTP/1.1\r\nHost: x\r\nx-test-stream: 1\r\n\r\n");
    let (status, headers) = c.read_head();
    assert_eq!(status, 200);
    assert!(headers.contains(&("transfer-encoding".to_string(), "chunked".to_string())));
    // The first chunk arrives while the backend is still holding the rest.
    assert_eq!(c.read_chunk().as_deref(), Some(&b"hello "[..]));
    echo.release();
    let mut rest = Vec::new();
    while let Some(chunk) = c.read_chunk() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"world");
    assert_eq!(c.request("GET", "/echo/after", &[], b"").status, 200);
    assert_eq!(c.connections, 1);
}

#[test]
fn smuggling_shapes_are_refused_with_400_and_close() {
    let s = misc("smuggle");
    let shapes: &[&[u8]] = &[
        b"POST /echo/s1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo/s2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST /echo/s3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"GET /echo/s4 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET /echo/s5 HTTP/1.1\nHost: x\n\n",
        b"GET /echo/s6 HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
        b"POST /echo/s7 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"GET /echo/s8 HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
    ];
    for shape in shapes {
        let mut c = Client::new(s.port);
        c.send(shape);
        let r = c.read_response(false);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(shape));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed_by_server());
    }
    let received = s.backends["echo"].received();
    assert!(received.is_empty(), "forwarded: {received:?}");
}

#[test]
fn oversized_head_is_431() {
    let s = misc("large");
    let mut c = Client::new(s.port);
    let big = "a".repeat(20 * 1024);
    c.send(format!("GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let r = c.read_response(false);
    assert_eq!(r.status, 431);
    assert!(s.backends["echo"].received().is_empty());
}
