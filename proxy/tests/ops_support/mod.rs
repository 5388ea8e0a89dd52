//! Support for `tests/ops.rs`: a `sluice` process started with operations
//! flags (admin listener, watch, drain timeout), signals, admin requests,
//! and route files written atomically.
#![allow(dead_code, reason = "not every test uses every helper")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: panics are test failures"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{WAIT, endpoint_slice, free_port};

/// The namespace every ops test object lives in.
pub const NS: &str = "ops";

/// A Gateway with one HTTP listener on `port`.
pub fn gateway(port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: {NS}}}\nspec:\n  gatewayClassName: eg\n  listeners: [{{name: http, protocol: HTTP, port: {port}}}]\n"
    )
}

/// An HTTPRoute `app` whose one rule sends everything to `backends`
/// (`(service, weight)`), plus a rule for `/dead` to service `dead`.
pub fn route(backends: &[(&str, u32)]) -> String {
    let refs: Vec<String> = backends
        .iter()
        .map(|(name, weight)| format!("{{name: {name}, port: 80, weight: {weight}}}"))
        .collect();
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: {NS}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /dead}}}}]\n    backendRefs: [{{name: dead, port: 80}}]\n  - backendRefs: [{}]\n",
        refs.join(", ")
    )
}

/// EndpointSlices for `(service, port)` pairs, plus `dead` at port 1
/// (privileged, so no test backend can take it; nothing listens there).
pub fn slices(services: &[(&str, u16)]) -> String {
    let mut out = String::new();
    for (name, port) in services {
        out.push_str(&endpoint_slice(NS, name, *port));
    }
    out.push_str(&endpoint_slice(NS, "dead", 1));
    out
}

/// Writes `text` to `path` atomically (a temp file renamed over it), as
/// a config management tool would.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A running `sluice` with an admin listener; killed on drop.
#[derive(Debug)]
pub struct Sluice {
    child: Child,
    pub port: u16,
    pub admin: u16,
    pub log: PathBuf,
}

impl Sluice {
    /// Starts sluice on `inputs` with `extra` flags; waits until the proxy
    /// port and the admin port accept connections.
    pub fn start(inputs: &[PathBuf], port: u16, workers: usize, extra: &[&str]) -> Sluice {
        let dir = inputs[0].parent().unwrap().to_path_buf();
        let log = dir.join("sluice.log");
        let admin = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(inputs)
            .args([
                "--bind",
                "127.0.0.1",
                "--workers",
                &workers.to_string(),
                "--admin",
                &format!("127.0.0.1:{admin}"),
            ])
            // SLUICE_TEST_EBPF=on|off|auto runs the suite with `--ebpf`,
            // unless the test chose a mode itself.
            .args(
                std::env::var("SLUICE_TEST_EBPF")
                    .ok()
                    .filter(|_| !extra.contains(&"--ebpf"))
                    .map(|m| vec!["--ebpf".to_string(), m])
                    .unwrap_or_default(),
            )
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut sluice = Sluice {
            child,
            port,
            admin,
            log,
        };
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && TcpStream::connect(("127.0.0.1", admin)).is_ok()
            {
                return sluice;
            }
            if let Ok(Some(status)) = sluice.child.try_wait() {
                panic!("sluice exited with {status}:\n{}", sluice.log_text());
            }
            assert!(
                start.elapsed() < WAIT,
                "sluice did not listen:\n{}",
                sluice.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`HUP`, `TERM`, `INT`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits up to `limit` for the process to exit successfully; panics
    /// with its log otherwise.
    pub fn wait_clean_exit(&mut self, limit: Duration) {
        let status = self.wait_exit(limit);
        let status = status.unwrap_or_else(|| panic!("sluice did not exit:\n{}", self.log_text()));
        assert!(status.success(), "{status}:\n{}", self.log_text());
    }

    /// `GET path` on the admin listener: status and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        admin_request(self.admin, "GET", path)
    }

    /// The current `/metrics` text.
    pub fn metrics(&self) -> String {
        let (status, body) = self.admin_get("/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until `/metrics` satisfies `ok`; returns the last text.
    pub fn wait_metrics(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.metrics();
            if ok(&text) {
                return text;
            }
            assert!(
                start.elapsed() < WAIT,
                "metrics never showed {what}:\n{text}\n--- sluice log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a fresh connection to the admin port.
pub fn admin_request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad admin response {text:?}"));
    (status, body.to_string())
}

/// The value of the sample whose line starts with `series` (name and
/// labels exactly as printed), or 0.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every sample of `name` whose labels contain all of
/// `labels` (`key="value"` strings).
pub fn sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            if !(rest.is_empty() || rest.starts_with('{')) {
                return None;
            }
            labels
                .iter()
                .all(|want| rest.contains(want))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
