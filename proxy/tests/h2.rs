//! End-to-end HTTP/2: the real `sluice` binary between h2c clients (the
//! `h2` crate, h2load, hand-built frames) and real HTTP/1.1 backends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: panics are failures"
)]

mod h2_support;
mod support;

use std::time::Duration;

use h2_support::frames::{self, Outcome, Raw};
use h2_support::{H2Client, Kind, Setup};
use serde_yaml::Value;
use support::{Client, assert_split, case_headers, seed_dir};

// === every HTTP seed case, over h2c ===

fn run_seed_file(file: &str) {
    let cases: Value =
        serde_yaml::from_str(&std::fs::read_to_string(seed_dir().join("cases.yaml")).unwrap())
            .unwrap();
    let cases = cases["files"][file]
        .as_sequence()
        .unwrap_or_else(|| panic!("no cases for {file}"));
    let routes = std::fs::read_to_string(seed_dir().join(file)).unwrap();
    let s = Setup::start(file, &routes, |_| Kind::Http1, 2);
    let mut client = H2Client::connect(s.port);
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
            let echoed = r.echoed("header");
            for (k, v) in &headers {
                let line = format!("{}: {v}", k.to_ascii_lowercase());
                assert!(
                    echoed.contains(&line),
                    "{line} not forwarded; {}",
                    context()
                );
            }
            assert!(
                echoed.contains(&"host: example.com".to_string()),
                "{}",
                context()
            );
            // HTTP/1.1 hop-by-hop fields of the backend do not reach an h2 client.
            assert_eq!(r.header("connection"), None, "{}", context());
            assert_eq!(r.header("keep-alive"), None, "{}", context());
            assert_eq!(r.header("x-hop"), None, "{}", context());
        }
        if let Some(status) = case["status"].as_u64() {
            assert_eq!(u64::from(r.status), status, "{}", context());
        }
        if let Some(mirror) = case["mirrored_to"].as_str() {
            let primary = case["backend"].as_str().map(|b| &s.http[b]);
            let request = (method, target, body);
            support::assert_mirrored(&s.http[mirror], primary, request, &headers, context);
        }
    }
    for backend in s.http.values() {
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
    h2_seed_01_exact => "01-exact.yaml",
    h2_seed_02_prefix => "02-prefix.yaml",
    h2_seed_03_regex => "03-regex.yaml",
    h2_seed_04_header_version => "04-header-version.yaml",
    h2_seed_05_header_regex => "05-header-regex.yaml",
    h2_seed_06_beta => "06-beta.yaml",
    h2_seed_07_query => "07-query.yaml",
    h2_seed_08_path_and_query => "08-path-and-query.yaml",
    h2_seed_09_method => "09-method.yaml",
    h2_seed_10_canary => "10-canary.yaml",
    h2_seed_11_mirror => "11-mirror.yaml",
    h2_seed_12_ordered => "12-ordered.yaml",
    h2_seed_13_listed_general_first => "13-listed-general-first.yaml",
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
    Setup::start(
        tag,
        MISC,
        |name| {
            if name == "dead" {
                Kind::Dead
            } else {
                Kind::Http1
            }
        },
        1,
    )
}

#[test]
fn h2_filters_redirects_and_errors_match_http1() {
    let s = misc("h2-misc");
    let mut c = H2Client::connect(s.port);
    let r = c.request(
        "GET",
        "/rewrite/x?q=1",
        &[("x-remove", "1"), ("x-set", "old")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", s.proxy.log_text());
    assert_eq!(r.echoed("target"), vec!["/v2/x?q=1".to_string()]);
    let headers = r.echoed("header");
    for want in [
        "host: internal.example",
        "x-set: s",
        "x-add: a",
        "x-forwarded-proto: http",
    ] {
        assert!(headers.contains(&want.to_string()), "{want}: {headers:?}");
    }
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
    assert_eq!(c.request("GET", "/dead", &[], b"").status, 502);
    assert_eq!(c.request("GET", "/nothing-here", &[], b"").status, 404);
    let r = c.request("GET", "/slow", &[("x-test-delay-ms", "2000")], b"");
    assert_eq!(r.status, 504, "{}", s.proxy.log_text());
    // The connection survived every error.
    assert_eq!(c.request("GET", "/echo", &[], b"").status, 200);
}

#[test]
fn h2_request_bodies_reach_http1_backends() {
    let s = misc("h2-bodies");
    let mut c = H2Client::connect(s.port);
    // Without content-length: chunked towards the backend.
    let r = c.request("POST", "/echo/chunked", &[], b"hello h2");
    assert_eq!(r.echoed("body"), vec!["hello h2".to_string()]);
    assert!(
        r.echoed("header")
            .contains(&"transfer-encoding: chunked".to_string()),
        "{:?}",
        r.echoed("header")
    );
    // With content-length: forwarded as is.
    let r = c.request("PUT", "/echo/length", &[("content-length", "5")], b"12345");
    assert_eq!(r.echoed("body"), vec!["12345".to_string()]);
    assert!(
        r.echoed("header")
            .contains(&"content-length: 5".to_string())
    );
    // A streamed (chunked) response arrives as DATA.
    let echo = s.http["echo"].clone();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        echo.release();
    });
    let r = c.request("GET", "/echo/stream", &[("x-test-stream", "1")], b"");
    releaser.join().unwrap();
    assert_eq!(r.text(), "hello world");
    assert_eq!(s.http["echo"].received().len(), 3);
}

#[test]
fn h2_many_concurrent_streams_on_one_connection() {
    let s = misc("h2-concurrent");
    let mut c = H2Client::connect(s.port);
    let results = c.with(|send, authority| async move {
        let mut tasks = Vec::new();
        for i in 0..100 {
            let send = send.clone();
            let authority = authority.clone();
            tasks.push(tokio::spawn(async move {
                let req = http::Request::get(format!("http://{authority}/echo/{i}"))
                    .body(())
                    .unwrap();
                let mut send = send.ready().await.unwrap();
                let (resp, _) = send.send_request(req, true).unwrap();
                let r = h2_support::read_response(resp.await.unwrap()).await;
                (i, r)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for (i, r) in results {
        assert_eq!(r.status, 200);
        assert_eq!(r.echoed("target"), vec![format!("/echo/{i}")]);
    }
}

#[test]
fn h2load_smoke_has_no_errors() {
    let s = misc("h2load");
    let out = std::process::Command::new("h2load")
        .args(["-n", "2000", "-c", "4", "-m", "8"])
        .arg(format!("http://127.0.0.1:{}/echo/load", s.port))
        .output()
        .expect("h2load (run scripts/setup.sh: nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    assert!(
        line.contains("2000 succeeded, 0 failed, 0 errored, 0 timeout"),
        "{line}\n{text}\n{}",
        s.proxy.log_text()
    );
    assert!(text.contains("2000 2xx"), "{text}");
}

// === conformance: RFC 9113 rules, with hand-built frames ===

/// After a protocol error, the proxy still serves a normal h2 request.
fn still_serves(s: &Setup) {
    let mut c = H2Client::connect(s.port);
    let r = c.request("GET", "/echo/after", &[], b"");
    assert_eq!(r.status, 200, "{}", s.proxy.log_text());
}

#[test]
fn bad_preface_gets_goaway_protocol_error() {
    let s = misc("conf-preface");
    let mut raw = Raw::connect_bare(s.port);
    raw.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n");
    assert_eq!(raw.goaway(), Some(frames::PROTOCOL_ERROR));
    assert_eq!(raw.outcome(), Outcome::Closed);
    still_serves(&s);
}

#[test]
fn a_normal_raw_request_gets_a_response() {
    let s = misc("conf-normal");
    let mut raw = Raw::connect(s.port);
    raw.send(&frames::headers(1, &frames::get("/echo/raw"), true));
    assert_eq!(raw.outcome(), Outcome::Response(1));
}

#[test]
fn frames_on_closed_streams_are_stream_closed() {
    let s = misc("conf-closed");
    let mut raw = Raw::connect(s.port);
    raw.send(&frames::headers(1, &frames::get("/echo/closed"), true));
    assert_eq!(raw.outcome(), Outcome::Response(1));
    // Let the response finish, then send DATA on the closed stream.
    std::thread::sleep(Duration::from_millis(200));
    raw.send(&frames::frame(frames::DATA, 0, 1, b"late"));
    match raw.outcome() {
        Outcome::Reset(1, code) | Outcome::GoAway(code) => {
            assert_eq!(code, frames::STREAM_CLOSED);
        }
        other => panic!("{other:?}"),
    }
    // A stream id lower than one already used is a connection error.
    let mut raw = Raw::connect(s.port);
    raw.send(&frames::headers(5, &frames::get("/echo/a"), true));
    assert_eq!(raw.outcome(), Outcome::Response(5));
    raw.send(&frames::headers(3, &frames::get("/echo/b"), true));
    assert_eq!(raw.goaway(), Some(frames::PROTOCOL_ERROR));
    // Even stream ids belong to the server.
    let mut raw = Raw::connect(s.port);
    raw.send(&frames::headers(2, &frames::get("/echo/c"), true));
    assert_eq!(raw.goaway(), Some(frames::PROTOCOL_ERROR));
    still_serves(&s);
}

/// Sends one malformed request on a fresh connection; the stream must be
/// refused with RST_STREAM(PROTOCOL_ERROR) (RFC 9113 §8.1.1) or the
/// connection with GOAWAY(PROTOCOL_ERROR), and nothing reaches a backend.
fn assert_malformed(s: &Setup, list: &[(&str, &str)]) {
    let mut raw = Raw::connect(s.port);
    raw.send(&frames::headers(1, list, true));
    match raw.outcome() {
        Outcome::Reset(1, code) | Outcome::GoAway(code) => {
            assert_eq!(code, frames::PROTOCOL_ERROR, "{list:?}");
        }
        other => panic!("{list:?}: {other:?}"),
    }
}

#[test]
fn invalid_pseudo_headers_are_protocol_errors() {
    let s = misc("conf-pseudo");
    let base = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "example.com"),
        (":path", "/echo/p"),
    ];
    // Missing :path, :method, :scheme.
    for skip in [":path", ":method", ":scheme"] {
        let list: Vec<_> = base.iter().copied().filter(|(n, _)| *n != skip).collect();
        assert_malformed(&s, &list);
    }
    // Unknown pseudo-header, a response pseudo-header, a duplicate.
    for extra in [(":foo", "x"), (":status", "200"), (":path", "/again")] {
        let mut list = base.to_vec();
        list.push(extra);
        assert_malformed(&s, &list);
    }
    // A pseudo-header after a regular field.
    let list = [
        (":method", "GET"),
        (":scheme", "http"),
        ("x-a", "1"),
        (":authority", "example.com"),
        (":path", "/echo/p"),
    ];
    assert_malformed(&s, &list);
    // An empty :path.
    let mut list = base.to_vec();
    list[3] = (":path", "");
    assert_malformed(&s, &list);
    assert!(s.http["echo"].received().is_empty());
    still_serves(&s);
}

#[test]
fn uppercase_header_names_are_protocol_errors() {
    let s = misc("conf-upper");
    let mut list = frames::get("/echo/u");
    list.push(("X-Upper", "1"));
    assert_malformed(&s, &list);
    assert!(s.http["echo"].received().is_empty());
    still_serves(&s);
}

#[test]
fn connection_specific_headers_are_protocol_errors() {
    let s = misc("conf-conn");
    for extra in [
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
    ] {
        let mut list = frames::get("/echo/c");
        list.push(extra);
        assert_malformed(&s, &list);
    }
    assert!(s.http["echo"].received().is_empty());
    // `te: trailers` is the one allowed TE.
    let mut raw = Raw::connect(s.port);
    let mut list = frames::get("/echo/te");
    list.push(("te", "trailers"));
    raw.send(&frames::headers(1, &list, true));
    assert_eq!(raw.outcome(), Outcome::Response(1));
    still_serves(&s);
}

#[test]
fn settings_errors_get_goaway() {
    let s = misc("conf-settings");
    let cases: Vec<(Vec<u8>, u32)> = vec![
        // Length not a multiple of 6.
        (
            frames::frame(frames::SETTINGS, 0, 0, &[0, 2, 0, 0, 0]),
            frames::FRAME_SIZE_ERROR,
        ),
        // ACK with a payload.
        (
            frames::frame(frames::SETTINGS, frames::ACK, 0, &[0, 2, 0, 0, 0, 0]),
            frames::FRAME_SIZE_ERROR,
        ),
        // On a stream.
        (
            frames::frame(frames::SETTINGS, 0, 1, &[]),
            frames::PROTOCOL_ERROR,
        ),
        // ENABLE_PUSH other than 0 or 1.
        (frames::settings(&[(0x2, 2)]), frames::PROTOCOL_ERROR),
        // INITIAL_WINDOW_SIZE above 2^31-1.
        (
            frames::settings(&[(0x4, 1 << 31)]),
            frames::FLOW_CONTROL_ERROR,
        ),
        // MAX_FRAME_SIZE below 2^14 and above 2^24-1.
        (frames::settings(&[(0x5, 100)]), frames::PROTOCOL_ERROR),
        (frames::settings(&[(0x5, 1 << 24)]), frames::PROTOCOL_ERROR),
    ];
    for (frame, code) in cases {
        let mut raw = Raw::connect(s.port);
        raw.send(&frame);
        assert_eq!(raw.goaway(), Some(code), "{frame:?}");
    }
    still_serves(&s);
}

#[test]
fn window_update_errors() {
    let s = misc("conf-window");
    // A zero increment on the connection.
    let mut raw = Raw::connect(s.port);
    raw.send(&frames::window_update(0, 0));
    assert_eq!(raw.goaway(), Some(frames::PROTOCOL_ERROR));
    // Overflowing the connection window.
    let mut raw = Raw::connect(s.port);
    raw.send(&frames::window_update(0, 0x7fff_ffff));
    assert_eq!(raw.goaway(), Some(frames::FLOW_CONTROL_ERROR));
    // A payload that is not 4 bytes.
    let mut raw = Raw::connect(s.port);
    raw.send(&frames::frame(frames::WINDOW_UPDATE, 0, 0, &[0, 0, 1]));
    assert_eq!(raw.goaway(), Some(frames::FRAME_SIZE_ERROR));
    // A zero increment on an open stream is a stream error.
    let mut raw = Raw::connect(s.port);
    let mut list = frames::get("/echo/w");
    list[0] = (":method", "POST");
    raw.send(&frames::headers(1, &list, false));
    raw.send(&frames::window_update(1, 0));
    match raw.outcome() {
        Outcome::Reset(1, code) | Outcome::GoAway(code) => {
            assert_eq!(code, frames::PROTOCOL_ERROR);
        }
        other => panic!("{other:?}"),
    }
    still_serves(&s);
}

#[test]
fn oversized_frames_are_frame_size_errors() {
    let s = misc("conf-size");
    // DATA larger than SETTINGS_MAX_FRAME_SIZE (16 KiB).
    let mut raw = Raw::connect(s.port);
    let mut list = frames::get("/echo/big");
    list[0] = (":method", "POST");
    raw.send(&frames::headers(1, &list, false));
    raw.send(&frames::frame(frames::DATA, 0, 1, &vec![b'x'; 20_000]));
    assert_eq!(raw.goaway(), Some(frames::FRAME_SIZE_ERROR));
    // A header list beyond SETTINGS_MAX_HEADER_LIST_SIZE, split over
    // CONTINUATION frames: refused without the proxy going down.
    let mut raw = Raw::connect(s.port);
    let big = "v".repeat(4000);
    let mut list = frames::get("/echo/many");
    let names: Vec<String> = (0..10).map(|i| format!("x-big-{i}")).collect();
    for n in &names {
        list.push((n.as_str(), big.as_str()));
    }
    let block = frames::header_block(&list);
    let (first, rest) = block.split_at(10_000);
    raw.send(&frames::frame(
        frames::HEADERS,
        frames::END_STREAM,
        1,
        first,
    ));
    for (i, piece) in rest.chunks(10_000).enumerate() {
        let last = (i + 1) * 10_000 >= rest.len();
        let flags = if last { frames::END_HEADERS } else { 0 };
        raw.send(&frames::frame(frames::CONTINUATION, flags, 1, piece));
    }
    match raw.outcome() {
        // h2 answers 431 on the stream, or refuses it, or the connection.
        Outcome::Response(1) | Outcome::Reset(1, _) | Outcome::GoAway(_) => {}
        other => panic!("{other:?}"),
    }
    assert!(s.http["echo"].received().is_empty());
    still_serves(&s);
}

#[test]
fn rapid_reset_flood_gets_enhance_your_calm() {
    let s = misc("conf-reset");
    let mut raw = Raw::connect(s.port);
    let list = frames::get("/echo/flood");
    let mut batch = Vec::new();
    let mut stream = 1u32;
    let mut code = None;
    for _ in 0..50 {
        batch.clear();
        for _ in 0..100 {
            batch.extend_from_slice(&frames::headers(stream, &list, true));
            batch.extend_from_slice(&frames::rst_stream(stream, frames::CANCEL));
            stream += 2;
        }
        raw.send(&batch);
        // Drain what came back so far without blocking for long.
        loop {
            match raw.read_frame(Duration::from_millis(1)) {
                frames::Received::Frame(frames::GOAWAY, _, _, p) if p.len() >= 8 => {
                    code = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
                    break;
                }
                frames::Received::Frame(..) => {}
                _ => break,
            }
        }
        if code.is_some() {
            break;
        }
    }
    let code = code.or_else(|| raw.goaway());
    assert_eq!(
        code,
        Some(frames::ENHANCE_YOUR_CALM),
        "{}",
        s.proxy.log_text()
    );
    still_serves(&s);
}

// === HTTP/1.1 clients to h2c backends ===

const H2C_ONLY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: h2c, namespace: task-api}
spec:
  parentRefs: [{name: task-api-gateway, sectionName: http}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-added, value: a}]}
    backendRefs: [{name: h2only, port: 8000}]
"#;

#[test]
fn http1_client_to_h2c_backend_streams_large_bodies_both_ways() {
    let s = Setup::start("h1-to-h2c", H2C_ONLY, |_| Kind::H2c, 1);
    let backend = &s.h2c["h2only"];
    let big: Vec<u8> = (0..8 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mut c = Client::new(s.port);

    // A Content-Length body up; the answer has no content-length: chunked
    // down, the backend's trailers as chunked trailer fields.
    let head = format!(
        "POST /up?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: {}\r\nConnection: keep-alive, x-hop\r\nX-Hop: secret\r\nX-K: v\r\n\r\n",
        big.len()
    );
    c.send(head.as_bytes());
    c.send(&big);
    let (status, headers) = c.read_head();
    let field = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(status, 200, "{}", s.proxy.log_text());
    assert_eq!(field("x-backend"), Some("h2only"));
    assert_eq!(field("transfer-encoding"), Some("chunked"));
    assert_eq!(field("x-body-len"), Some(big.len().to_string().as_str()));
    let (body, trailers) = c.read_chunked_body();
    assert!(body == big, "body differs ({} bytes)", body.len());
    assert!(
        trailers.contains(&("x-trailer".into(), "done".into())),
        "{trailers:?}"
    );
    let got = backend.received();
    let got = &got[0];
    assert_eq!(
        (got.method.as_str(), got.path.as_str()),
        ("POST", "/up?x=1")
    );
    assert_eq!(got.authority, "example.com");
    let has = |n: &str, v: &str| got.headers.contains(&(n.into(), v.into()));
    assert!(has("x-k", "v") && has("x-added", "a"), "{:?}", got.headers);
    assert!(has("x-forwarded-for", "127.0.0.1"), "{:?}", got.headers);
    assert!(has("content-length", &big.len().to_string()));
    assert!(
        !got.headers
            .iter()
            .any(|(n, _)| n == "x-hop" || n == "connection" || n == "host"),
        "{:?}",
        got.headers
    );

    // A chunked body up, on the same connection; the answer has a
    // content-length, which the client gets.
    let mut request =
        b"PUT /down HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nX-Test-Length: 1\r\n\r\n"
            .to_vec();
    for chunk in big.chunks(1 << 20) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    c.send(&request);
    let r = c.read_response(false);
    assert_eq!(r.status, 200, "{}", s.proxy.log_text());
    assert_eq!(
        r.header("content-length"),
        Some(big.len().to_string().as_str())
    );
    assert_eq!(r.header("transfer-encoding"), None);
    assert!(r.body == big, "body differs ({} bytes)", r.body.len());
    assert_eq!(backend.received()[1].body.len(), big.len());

    // A bodiless GET, then the keep-alive connection is still the first.
    let r = c.request("GET", "/empty", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-method"), Some("GET"));
    assert_eq!(c.connections, 1);
    let log = s.proxy.log_text();
    assert!(
        log.contains("HTTP/1.1"),
        "no protocol in the access log:\n{log}"
    );
}
