//! Faults and limits through the real `sluice` binary: a URI too long, a
//! client too slow to send its head, a backend process killed under load.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: panics are failures"
)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Backend, Client, Proxy, endpoint_slice, free_port, temp_dir};

fn gateway(port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: t}}\nspec:\n  gatewayClassName: sluice\n  listeners: [{{name: http, port: {port}, protocol: HTTP}}]\n"
    )
}

fn route(backends: &[(&str, u32)]) -> String {
    let refs: Vec<String> = backends
        .iter()
        .map(|(name, weight)| format!("{{name: {name}, port: 80, weight: {weight}}}"))
        .collect();
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: t}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - backendRefs: [{}]\n",
        refs.join(", ")
    )
}

/// Writes the route set and starts sluice on it.
fn start(tag: &str, backends: &[(&str, u32, u16)], extra: &[&str]) -> (Proxy, u16) {
    let dir = temp_dir(tag);
    let port = free_port();
    let mut yaml = gateway(port);
    let weights: Vec<(&str, u32)> = backends.iter().map(|(n, w, _)| (*n, *w)).collect();
    yaml.push_str(&route(&weights));
    for (name, _, backend_port) in backends {
        yaml.push_str(&endpoint_slice("t", name, *backend_port));
    }
    let file: PathBuf = dir.join("routes.yaml");
    std::fs::write(&file, yaml).unwrap();
    (Proxy::start_with(&[file], port, 1, extra), port)
}

#[test]
fn uri_longer_than_the_limit_is_414() {
    let echo = Backend::start("echo");
    let (proxy, port) = start("uri", &[("echo", 1, echo.port)], &[]);
    let mut c = Client::new(port);
    let long = format!("/{}", "a".repeat(sluice::codec::h1::DEFAULT_MAX_URI + 1));
    c.send(format!("GET {long} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let r = c.read_response(false);
    assert_eq!(r.status, 414, "{}", proxy.log_text());
    assert!(echo.received().is_empty(), "nothing reaches the backend");
    // Just under the limit is fine.
    let mut c = Client::new(port);
    let ok = format!("/{}", "a".repeat(sluice::codec::h1::DEFAULT_MAX_URI - 10));
    let r = c.request("GET", &ok, &[], b"");
    assert_eq!(r.status, 200, "{}", proxy.log_text());
}

#[test]
fn a_head_not_sent_in_time_is_408_and_closed() {
    let echo = Backend::start("echo");
    let (proxy, port) = start(
        "slowloris",
        &[("echo", 1, echo.port)],
        &["--header-timeout", "1"],
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Half a head, then nothing: the slowloris shape.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{answer:?}\n{}",
        proxy.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after the timeout, not later"
    );
    assert!(echo.received().is_empty());
}

/// A backend in its own process (Python's http.server), so that it can be
/// killed for real.
struct ProcessBackend {
    child: Child,
    port: u16,
}

impl ProcessBackend {
    fn start() -> ProcessBackend {
        let port = free_port();
        let dir = temp_dir("pybackend");
        std::fs::write(dir.join("index.html"), "ok\n").unwrap();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "backend did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ProcessBackend { child, port }
    }
}

impl Drop for ProcessBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one request of the load in [`a_backend_killed_under_load_costs_only_its_own_requests`]
/// came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A whole response with this status.
    Status(u16),
    /// The head arrived, then the connection closed before the body ended:
    /// the backend died between its head and its body (Python's http.server
    /// writes them separately). Once the head is forwarded a proxy can only
    /// close — nginx and HAProxy do the same.
    CutAfterHead(u16),
}

#[test]
fn a_backend_killed_under_load_costs_only_its_own_requests() {
    let mut doomed = ProcessBackend::start();
    let survivor = ProcessBackend::start();
    let (proxy, port) = start(
        "killed",
        &[("doomed", 1, doomed.port), ("survivor", 1, survivor.port)],
        &[],
    );
    let load = std::thread::spawn(move || {
        let mut outcomes = Vec::new();
        let mut c = Client::new(port);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            outcomes.push(match c.get_or_cut("/") {
                Ok(r) => Outcome::Status(r.status),
                Err(status) => Outcome::CutAfterHead(status),
            });
        }
        outcomes
    });
    std::thread::sleep(Duration::from_millis(1000));
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    let outcomes = load.join().expect("no request hung or failed to parse");
    assert!(outcomes.len() > 50, "load ran: {} requests", outcomes.len());
    let cut = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::CutAfterHead(_)))
        .count();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Status(200 | 502) | Outcome::CutAfterHead(200))),
        "only 200 or 502 (or a 200 cut by the kill): {outcomes:?}\n{}",
        proxy.log_text()
    );
    assert!(
        cut <= 1,
        "only the one response in flight at the kill is cut: {outcomes:?}"
    );
    assert!(
        outcomes.contains(&Outcome::Status(502)),
        "the dead backend's share failed"
    );
    // The proxy is still up, and the survivor still answers its share.
    let mut c = Client::new(port);
    let after: Vec<u16> = (0..40)
        .map(|_| c.request("GET", "/", &[], b"").status)
        .collect();
    assert!(after.contains(&200), "{after:?}\n{}", proxy.log_text());
    assert!(after.iter().all(|s| *s == 200 || *s == 502), "{after:?}");
}
