//! End-to-end: the real `sluice` binary between a raw HTTP/1.1 client and
//! real backend servers, on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: panics are failures"
)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_yaml::Value;
use support::{
    Backend, Blackhole, Client, Proxy, RawBackend, Silent, WAIT, WsBackend, assert_split,
    backend_names, case_headers, endpoint_slice, free_port, seed_dir, temp_dir,
};

/// A proxy started on the seed gateway (its port 80 replaced by a free
/// port) plus one route file, with a backend for every backend name.
struct Setup {
    proxy: Proxy,
    port: u16,
    backends: BTreeMap<String, Backend>,
}

/// `dead` services get an EndpointSlice at a port nobody listens on.
fn setup(tag: &str, routes: &str, dead: &[&str], workers: usize) -> Setup {
    setup_with(tag, routes, dead, &[], workers, &[])
}

/// As [`setup`]; `special` services point at servers the test started
/// itself, and `extra` goes on sluice's command line.
fn setup_with(
    tag: &str,
    routes: &str,
    dead: &[&str],
    special: &[(&str, u16)],
    workers: usize,
    extra: &[&str],
) -> Setup {
    let dir = temp_dir(tag);
    let port = free_port();
    let gateway = std::fs::read_to_string(seed_dir().join("gateway.yaml"))
        .unwrap()
        .replace("port: 80\n", &format!("port: {port}\n"))
        .replace("port: 50051", &format!("port: {}", free_port()));
    let names = backend_names(routes);
    let mut backends = BTreeMap::new();
    let mut slices = String::new();
    for name in &names {
        if dead.contains(&name.as_str()) {
            slices.push_str(&endpoint_slice("task-api", name, free_port()));
        } else if let Some((_, port)) = special.iter().find(|(n, _)| n == name) {
            slices.push_str(&endpoint_slice("task-api", name, *port));
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
    let proxy = Proxy::start_with(&files, port, workers, extra);
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
        let headers = case_headers(case);
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
            assert_split(case, got, &context);
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
        if let Some(mirror) = case["mirrored_to"].as_str() {
            let primary = case["backend"].as_str().map(|b| &s.backends[b]);
            let request = (method, target, body);
            support::assert_mirrored(&s.backends[mirror], primary, request, &headers, context);
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
    seed_11_mirror => "11-mirror.yaml",
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

/// Bodies stream through 64 KiB body buffers; the head bound (431 past the
/// 16 KiB full buffer) holds on a connection that still holds one — here a
/// pipelined oversized head right behind a large body — and large bodies
/// both ways keep the connection usable.
#[test]
fn head_bound_holds_behind_a_streamed_body() {
    let s = misc("body-buffer");
    let mut c = Client::new(s.port);
    let body = "b".repeat(300 * 1024);
    let r = c.request("POST", "/echo/upload", &[], body.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("body"), vec![body.clone()]);
    assert_eq!(c.request("GET", "/echo/small", &[], b"").status, 200);
    assert_eq!(c.connections, 1);

    let big = "a".repeat(20 * 1024);
    let mut pipelined = format!(
        "POST /echo/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    pipelined.extend_from_slice(body.as_bytes());
    pipelined.extend_from_slice(
        format!("GET /echo/next HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    c.send(&pipelined);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("body"), vec![body]);
    assert_eq!(c.read_response(false).status, 431);
    let targets: Vec<String> = s.backends["echo"]
        .received()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert!(
        !targets.iter().any(|t| t == "/echo/next"),
        "forwarded: {targets:?}"
    );
}

/// An idle client connection reads into a small buffer: a head larger than
/// it, a body that arrives in parts and pipelined requests still go
/// through, and the connection stays usable for small requests after them.
#[test]
fn heads_and_bodies_larger_than_the_idle_buffer() {
    let s = misc("grow");
    let mut c = Client::new(s.port);
    let value = "v".repeat(6 * 1024);
    let r = c.request("GET", "/echo/big-head", &[("x-big", &value)], b"");
    assert_eq!(r.status, 200);
    assert!(r.echoed("header").contains(&format!("x-big: {value}")));
    let r = c.request("GET", "/echo/small", &[], b"");
    assert_eq!(r.status, 200);

    // A body sent in three parts, the first with the head.
    let body: Vec<u8> = (0..40 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let head = format!(
        "POST /echo/parts HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut first = head.into_bytes();
    first.extend_from_slice(&body[..100]);
    c.send(&first);
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(&body[100..20_000]);
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(&body[20_000..]);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("body-len"), vec![body.len().to_string()]);

    // A chunked body split inside a chunk, then two pipelined requests.
    c.send(b"POST /echo/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(b"lo\r\n0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("body-len"), vec!["5".to_string()]);
    c.send(b"GET /echo/p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/p2 HTTP/1.1\r\nHost: x\r\n\r\n");
    let r1 = c.read_response(false);
    let r2 = c.read_response(false);
    assert_eq!((r1.status, r2.status), (200, 200));
    assert!(r1.text().contains("/echo/p1") && r2.text().contains("/echo/p2"));
    assert_eq!(c.connections, 1);
}

// === mirrors, upgrades, HTTP/1.0, failures ===

const DATA_PATH: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: data-path, namespace: task-api}
spec:
  parentRefs: [{name: task-api-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /mirror/two}}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 8000}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: shadow2, port: 8000}, percent: 100}}
    backendRefs: [{name: echo, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /mirror/rewrite}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-added, value: a}]}
    - {type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 8000}}}
    backendRefs: [{name: echo, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /mirror/zero}}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 8000}, percent: 0}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow2, port: 8000}, fraction: {numerator: 0, denominator: 1}}
    backendRefs: [{name: echo, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /mirror/dead}}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: dead, port: 8000}}}
    backendRefs: [{name: echo, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /mirror/hole}}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: hole, port: 8000}}}
    backendRefs: [{name: echo, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /silent}}]
    timeouts: {request: 300ms}
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: silent, port: 8000}}}
    backendRefs: [{name: silent, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /ws}}]
    backendRefs: [{name: ws, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /bad}}]
    backendRefs: [{name: bad, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /badlen}}]
    backendRefs: [{name: badlen, port: 8000}]
  - matches: [{path: {type: PathPrefix, value: /echo}}]
    backendRefs: [{name: echo, port: 8000}]
"#;

/// Servers the data-path routes point at besides the echo backends.
struct Specials {
    hole: Blackhole,
    silent: Silent,
    _ws: WsBackend,
    _bad: RawBackend,
    _badlen: RawBackend,
}

/// One worker, so that per-worker bounds are exact; the admin listener on
/// `admin` when given.
fn data_path(tag: &str, admin: Option<u16>) -> (Setup, Specials) {
    let specials = Specials {
        hole: Blackhole::start(),
        silent: Silent::start(),
        _ws: WsBackend::start(),
        _bad: RawBackend::start(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nBad Header\r\n\r\nhello"),
        _badlen: RawBackend::start(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        ),
    };
    let ports = [
        ("hole", specials.hole.port),
        ("silent", specials.silent.port),
        ("ws", specials._ws.port),
        ("bad", specials._bad.port),
        ("badlen", specials._badlen.port),
    ];
    let admin = admin.map(|p| format!("127.0.0.1:{p}"));
    let extra: Vec<&str> = admin.iter().flat_map(|a| ["--admin", a.as_str()]).collect();
    let s = setup_with(tag, DATA_PATH, &["dead"], &ports, 1, &extra);
    (s, specials)
}

/// `sluice_mirror_dropped_total` as the admin listener reports it.
fn mirror_dropped(admin: u16) -> u64 {
    let mut c = Client::new(admin);
    let r = c.request("GET", "/metrics", &[], b"");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix("sluice_mirror_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `f` holds (metrics are published every 100 ms).
fn eventually(f: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn mirrors_get_a_full_copy_of_every_request() {
    let (s, _sp) = data_path("mirror-copy", None);
    let mut c = Client::new(s.port);
    let big: Vec<u8> = (0..4 * 1024 * 1024)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let r = c.request(
        "POST",
        "/mirror/two/big",
        &[("x-test-quiet", "1"), ("x-k", "v")],
        &big,
    );
    assert_eq!(r.status, 200, "{}", s.proxy.log_text());
    assert_eq!(r.echoed("body-len"), vec![big.len().to_string()]);
    // A chunked body, streamed.
    c.send(b"PUT /mirror/two/chunked?q=1 HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n");
    assert_eq!(c.read_response(false).status, 200);
    for name in ["shadow", "shadow2"] {
        let shadow = &s.backends[name];
        let copy = shadow
            .wait_received(|r| r.target == "/mirror/two/big")
            .unwrap_or_else(|| panic!("{name} got no copy\n{}", s.proxy.log_text()));
        assert_eq!(copy.method, "POST");
        assert!(
            copy.body == big,
            "{name}: body differs ({} bytes)",
            copy.body.len()
        );
        assert!(copy.headers.contains(&("x-k".into(), "v".into())));
        let copy = shadow
            .wait_received(|r| r.target == "/mirror/two/chunked?q=1")
            .unwrap_or_else(|| panic!("{name} got no chunked copy"));
        assert_eq!(copy.method, "PUT");
        assert_eq!(copy.body, b"firstsecond");
        assert!(
            copy.headers
                .contains(&("transfer-encoding".into(), "chunked".into()))
        );
    }
    // The copy is made after the request filters: same target, headers and
    // Host as the primary (no `-shadow` suffix), X-Forwarded-For included.
    let r = c.request(
        "GET",
        "/mirror/rewrite/x?y=1",
        &[("x-forwarded-for", "10.1.1.1")],
        b"",
    );
    assert_eq!(r.echoed("target"), vec!["/v2/x?y=1".to_string()]);
    let copy = s.backends["shadow"]
        .wait_received(|r| r.target == "/v2/x?y=1")
        .expect("rewritten copy");
    let primary = s.backends["echo"]
        .wait_received(|r| r.target == "/v2/x?y=1")
        .unwrap();
    assert_eq!(copy.headers, primary.headers);
    for field in [
        ("host", "example.com"),
        ("x-added", "a"),
        ("x-forwarded-for", "10.1.1.1, 127.0.0.1"),
    ] {
        assert!(
            copy.headers.contains(&(field.0.into(), field.1.into())),
            "{field:?}: {copy:?}"
        );
    }
    // The client only ever sees the primary.
    assert_eq!(r.backend().as_deref(), Some("echo"));
    assert_eq!(c.connections, 1);
}

#[test]
fn mirror_share_zero_mirrors_nothing() {
    let (s, _sp) = data_path("mirror-zero", None);
    let mut c = Client::new(s.port);
    for i in 0..50 {
        let r = c.request("GET", &format!("/mirror/zero/{i}"), &[], b"");
        assert_eq!(r.status, 200);
    }
    // A mirrored request afterwards: once its copies are in, the earlier
    // ones would have been too.
    assert_eq!(
        c.request("GET", "/mirror/two/barrier", &[], b"").status,
        200
    );
    for name in ["shadow", "shadow2"] {
        let shadow = &s.backends[name];
        assert!(
            shadow
                .wait_received(|r| r.target == "/mirror/two/barrier")
                .is_some()
        );
        std::thread::sleep(Duration::from_millis(100));
        let zero: Vec<_> = shadow
            .received()
            .into_iter()
            .filter(|r| r.target.starts_with("/mirror/zero"))
            .collect();
        assert!(zero.is_empty(), "{name} mirrored at share 0: {zero:?}");
    }
}

#[test]
fn dead_or_slow_mirrors_never_delay_or_fail_the_primary() {
    let admin = free_port();
    let (s, sp) = data_path("mirror-slow", Some(admin));
    let mut c = Client::new(s.port);
    let timed = |c: &mut Client, target: &str, body: &[u8]| {
        let start = Instant::now();
        let r = c.request(
            if body.is_empty() { "GET" } else { "POST" },
            target,
            &[("x-test-quiet", "1")],
            body,
        );
        assert_eq!(r.status, 200, "{target}\n{}", s.proxy.log_text());
        start.elapsed()
    };
    // Baselines without mirrors.
    let big = vec![b'x'; 16 * 1024 * 1024];
    let base_big = timed(&mut c, "/echo/big", &big);
    let base = (0..20)
        .map(|i| timed(&mut c, &format!("/echo/{i}"), b""))
        .max()
        .unwrap();

    // A mirror that never reads: a large body overflows its queue, the
    // mirror is abandoned and counted, the primary goes on at full speed.
    let slow_big = timed(&mut c, "/mirror/hole/big", &big);
    assert!(
        slow_big < base_big * 3 + Duration::from_millis(500),
        "{slow_big:?} vs {base_big:?}"
    );
    assert!(
        eventually(|| mirror_dropped(admin) >= 1),
        "queue overflow not counted"
    );

    // Mirrors that never answer pile up to the in-flight bound; beyond it
    // they are dropped and counted. The primaries do not notice.
    let bound = 64; // sluice::mirror::DEFAULT_MIRROR_IN_FLIGHT, one worker
    let slowest = (0..bound + 36)
        .map(|i| timed(&mut c, &format!("/mirror/hole/{i}"), b""))
        .max()
        .unwrap();
    assert!(
        slowest < base + Duration::from_millis(300),
        "{slowest:?} vs {base:?}"
    );
    assert!(
        // One queue overflow plus 36 over the in-flight bound.
        eventually(|| mirror_dropped(admin) > 36),
        "dropped: {}",
        mirror_dropped(admin)
    );
    let accepted = sp.hole.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(accepted <= bound + 1, "{accepted} mirror connections");

    // A mirror whose backend refuses connections.
    let slowest = (0..20)
        .map(|i| timed(&mut c, &format!("/mirror/dead/{i}"), b"x"))
        .max()
        .unwrap();
    assert!(
        slowest < base + Duration::from_millis(300),
        "{slowest:?} vs {base:?}"
    );
    assert_eq!(c.connections, 1);
}

/// Sends a WebSocket upgrade request (and `early` right behind it) and
/// reads the response head byte by byte, so nothing after it is consumed.
fn upgrade(port: u16, target: &str, early: &[u8]) -> (TcpStream, u16, Vec<(String, String)>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(early);
    stream.write_all(&request).unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (stream, status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn websocket_upgrade_is_tunnelled_both_ways_with_half_close() {
    let (s, _sp) = data_path("ws", None);
    let (mut stream, status, headers) = upgrade(s.port, "/ws/chat", b"early");
    assert_eq!(status, 101, "{headers:?}\n{}", s.proxy.log_text());
    assert_eq!(header(&headers, "upgrade"), Some("websocket"));
    assert!(header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));
    assert_eq!(header(&headers, "content-length"), None);
    // The backend got the two upgrade fields.
    assert!(
        header(&headers, "x-got-connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{headers:?}"
    );
    assert_eq!(header(&headers, "x-got-upgrade"), Some("websocket"));

    // Bytes sent right behind the request head are tunnelled too.
    let mut got = [0; 5];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"early");

    // A few KB, then ~8 MB both ways at once (streamed, not buffered).
    for size in [3 * 1024, 8 * 1024 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let mut writer = stream.try_clone().unwrap();
        let sent = data.clone();
        let t = std::thread::spawn(move || writer.write_all(&sent).unwrap());
        let mut echoed = vec![0; size];
        stream.read_exact(&mut echoed).unwrap();
        t.join().unwrap();
        assert!(echoed == data, "echo of {size} bytes differs");
    }

    // Half-close: the client stops sending; the backend sees the end, and
    // what it sends afterwards still reaches the client, then the end.
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"bye");
}

#[test]
fn refused_upgrade_is_an_ordinary_response() {
    let (s, _sp) = data_path("ws-refused", None);
    let (stream, status, headers) = upgrade(s.port, "/ws/refuse", b"");
    assert_eq!(status, 403, "{headers:?}");
    assert_eq!(header(&headers, "content-length"), Some("7"));
    let mut reader = BufReader::new(stream);
    let mut body = [0; 7];
    reader.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"refused");
    // The connection goes on as HTTP/1.1.
    reader
        .get_mut()
        .write_all(b"GET /echo/after HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
}

#[test]
fn http10_clients_get_close_delimited_or_opt_in_keep_alive() {
    let (s, _sp) = data_path("http10", None);
    // No keep-alive asked: answered, then closed. No Host: the backend still
    // gets one (HTTP/1.1 needs it).
    let mut c = Client::new(s.port);
    c.send(b"GET /echo/a HTTP/1.0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        r.echoed("header")
            .iter()
            .any(|h| h.starts_with("host: 127.0.0.1:")),
        "{:?}",
        r.echoed("header")
    );
    assert!(c.is_closed_by_server());

    // `Connection: keep-alive` opts in; a body with Content-Length.
    let mut c = Client::new(s.port);
    c.send(b"POST /echo/b HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(r.echoed("body"), vec!["abc".to_string()]);
    c.send(b"GET /echo/c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        c.read_response(false).echoed("target"),
        vec!["/echo/c".to_string()]
    );
    // A response without length (close-delimited, or chunked from the
    // backend) is sent raw and delimited by the close.
    c.send(b"GET /echo/d HTTP/1.0\r\nConnection: keep-alive\r\nx-test-close-delimited: 1\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.echoed("target"), vec!["/echo/d".to_string()]);
    assert_eq!(c.connections, 1);

    // The same backend answer to an HTTP/1.1 client is re-chunked and the
    // connection stays open.
    let mut c = Client::new(s.port);
    let r = c.request("GET", "/echo/e", &[("x-test-close-delimited", "1")], b"");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.echoed("target"), vec!["/echo/e".to_string()]);
    assert_eq!(c.request("GET", "/echo/f", &[], b"").status, 200);
    assert_eq!(c.connections, 1);
}

#[test]
fn client_gone_mid_body_aborts_the_upstream_request() {
    let (s, _sp) = data_path("vanish", None);
    let echo = &s.backends["echo"];
    // A pooled backend connection first.
    let mut c = Client::new(s.port);
    let first = c.request("GET", "/echo/first", &[], b"");
    let pooled: u16 = first.echoed("peer-port")[0].parse().unwrap();
    // The request reuses it, and its client goes away mid-body.
    let mut v = Client::new(s.port);
    v.send(b"POST /echo/vanish HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789");
    let port = echo
        .wait_event_prefix("head:/echo/vanish:")
        .expect("request head forwarded");
    assert_eq!(port, pooled.to_string());
    v.disconnect();
    // The backend sees its connection closed: nothing more will come.
    assert!(
        echo.wait_event(&format!("closed:{port}")),
        "upstream connection kept open\n{}",
        s.proxy.log_text()
    );
    assert!(echo.received().iter().all(|r| r.target != "/echo/vanish"));
    // The next request gets a fresh connection and succeeds.
    let r = c.request("GET", "/echo/next", &[], b"");
    assert_eq!(r.status, 200);
    assert_ne!(r.echoed("peer-port")[0], port);
}

#[test]
fn malformed_backend_response_is_502() {
    let (s, _sp) = data_path("malformed", None);
    let mut c = Client::new(s.port);
    let r = c.request("GET", "/bad", &[], b"");
    assert_eq!(r.status, 502, "{}", s.proxy.log_text());
    // The client connection survives a backend's fault.
    assert_eq!(c.request("GET", "/echo/ok", &[], b"").status, 200);
    assert_eq!(c.connections, 1);
    let r = c.request("GET", "/badlen", &[], b"");
    assert_eq!(r.status, 502);
    assert_eq!(
        Client::new(s.port)
            .request("GET", "/echo/ok", &[], b"")
            .status,
        200
    );
}

#[test]
fn timed_out_backend_and_mirror_connections_are_closed_at_once() {
    let (s, sp) = data_path("timeout-close", None);
    let mut c = Client::new(s.port);
    let start = Instant::now();
    let r = c.request("GET", "/silent/x", &[], b"");
    assert_eq!(r.status, 504, "{}", s.proxy.log_text());
    assert!(start.elapsed() < Duration::from_secs(2));
    // The primary and its mirror both went to the silent backend; both
    // connections are closed when their time is up, not left open.
    let closed = || sp.silent.closed.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        eventually(|| closed() == 2),
        "closed {} of {}",
        closed(),
        sp.silent.accepted.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(c.request("GET", "/echo/after", &[], b"").status, 200);
}
