//! Real processes for the end-to-end tests: the `sluice` binary, small
//! backends on std threads that echo what they received, and a raw
//! keep-alive HTTP/1.1 client.
#![allow(dead_code, reason = "each test file uses a part of the support code")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: panics are test failures"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    // A port for sluice to listen on: outside the kernel's ephemeral range
    // (32768–60999 by default), so that no outgoing connection of this or
    // another test can take it between this check and sluice's bind; and
    // spread over the range by a per-process sequence, so that test
    // processes running side by side rarely try the same one.
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(101)) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Every `backendRefs[].name` and `backendRef.name` (mirrors) in `yaml`.
pub fn backend_names(routes: &str) -> Vec<String> {
    fn walk(value: &serde_yaml::Value, names: &mut Vec<String>) {
        match value {
            serde_yaml::Value::Mapping(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        (Some("backendRefs"), serde_yaml::Value::Sequence(refs)) => {
                            for r in refs {
                                if let Some(name) =
                                    r.get("name").and_then(serde_yaml::Value::as_str)
                                {
                                    names.push(name.to_string());
                                }
                            }
                        }
                        (Some("backendRef"), r) => {
                            if let Some(name) = r.get("name").and_then(serde_yaml::Value::as_str) {
                                names.push(name.to_string());
                            }
                        }
                        _ => walk(v, names),
                    }
                }
            }
            serde_yaml::Value::Sequence(seq) => seq.iter().for_each(|v| walk(v, names)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(routes) {
        walk(
            &<serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap(),
            &mut names,
        );
    }
    names.sort();
    names.dedup();
    names
}

/// The `headers` of a cases.yaml case, as `(name, value)` pairs.
pub fn case_headers(case: &serde_yaml::Value) -> Vec<(String, String)> {
    case["headers"]
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
        .unwrap_or_default()
}

/// Checks a cases.yaml `split` case: the share of each backend among `got`
/// (backend names, one per request) is within the case's tolerance.
pub fn assert_split(case: &serde_yaml::Value, got: Vec<String>, context: &dyn Fn() -> String) {
    let repeat = got.len() as f64;
    let counts = tally(got);
    let tolerance = case["tolerance"].as_f64().unwrap();
    for (name, share) in case["split"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let want = share.as_f64().unwrap();
        let have = *counts.get(name).unwrap_or(&0) as f64 / repeat;
        assert!(
            (have - want).abs() <= tolerance,
            "{name}: {have} vs {want}; {counts:?}\n{}",
            context()
        );
    }
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-e2e-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where the seed fixtures live.
pub fn seed_dir() -> PathBuf {
    std::env::var_os("SLUICE_SEED_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples/seed"),
        PathBuf::from,
    )
}

/// The EndpointSlice that points Service `name` (namespace `ns`) at
/// 127.0.0.1:`port`.
pub fn endpoint_slice(ns: &str, name: &str, port: u16) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-test\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: http, port: {port}, protocol: TCP}}]\nendpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]\n"
    )
}

// === backends ===

/// A request as a backend received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer_port: u16,
}

#[derive(Debug, Default)]
struct Shared {
    received: Vec<Received>,
    events: Vec<String>,
    released: bool,
}

/// A test backend: answers every request with its name and an echo of
/// what it got. Special request headers:
/// `x-test-stream: 1` — answer chunked, send `hello `, wait for
/// [`Backend::release`], then send `world`; `x-test-delay-ms: N` — sleep
/// before answering; `x-test-close-delimited: 1` — answer without
/// Content-Length and close; `x-test-quiet: 1` — echo the body's length
/// (`body-len: N`) but not the body.
///
/// Events ([`Backend::wait_event`]): `head:TARGET:PEER_PORT` when a head was
/// read, `chunk:DATA` per request body chunk, `closed:PEER_PORT` when a
/// connection ended.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub port: u16,
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = Backend {
            name: name.to_string(),
            port: listener.local_addr().unwrap().port(),
            shared: Arc::default(),
        };
        let b = backend.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let b = b.clone();
                std::thread::spawn(move || b.serve(stream));
            }
        });
        backend
    }

    /// Requests fully received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.0.lock().unwrap().received.clone()
    }

    /// Waits until a received request satisfies `pred`.
    pub fn wait_received(&self, pred: impl Fn(&Received) -> bool) -> Option<Received> {
        let (lock, cv) = &*self.shared;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, WAIT, |s| !s.received.iter().any(&pred))
            .unwrap();
        guard.received.iter().find(|r| pred(r)).cloned()
    }

    /// Waits until an event starting with `prefix` was recorded; returns
    /// the rest of it.
    pub fn wait_event_prefix(&self, prefix: &str) -> Option<String> {
        let (lock, cv) = &*self.shared;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, WAIT, |s| {
                !s.events.iter().any(|e| e.starts_with(prefix))
            })
            .unwrap();
        let found = guard.events.iter().find(|e| e.starts_with(prefix));
        found.map(|e| e[prefix.len()..].to_string())
    }

    /// Whether `event` was recorded already.
    pub fn has_event(&self, event: &str) -> bool {
        self.shared
            .0
            .lock()
            .unwrap()
            .events
            .iter()
            .any(|e| e == event)
    }

    /// Waits until `event` has been recorded (e.g. `chunk:abc`).
    pub fn wait_event(&self, event: &str) -> bool {
        let (lock, cv) = &*self.shared;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, WAIT, |s| !s.events.iter().any(|e| e == event))
            .unwrap();
        guard.events.iter().any(|e| e == event)
    }

    /// Lets a streaming response finish.
    pub fn release(&self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap().released = true;
        cv.notify_all();
    }

    fn event(&self, event: String) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap().events.push(event);
        cv.notify_all();
    }

    fn serve(&self, stream: TcpStream) {
        let peer_port = stream.peer_addr().map(|a| a.port()).unwrap_or(0);
        self.serve_requests(stream, peer_port);
        self.event(format!("closed:{peer_port}"));
    }

    fn serve_requests(&self, stream: TcpStream, peer_port: u16) {
        let _ = stream.set_nodelay(true);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let Some((method, target, headers)) = read_head(&mut reader) else {
                return;
            };
            self.event(format!("head:{target}:{peer_port}"));
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            let body = if header("transfer-encoding").is_some_and(|v| v == "chunked") {
                let mut body = Vec::new();
                let ok = read_chunked(&mut reader, |chunk| {
                    self.event(format!("chunk:{}", String::from_utf8_lossy(chunk)));
                    body.extend_from_slice(chunk);
                });
                if !ok {
                    return;
                }
                body
            } else {
                let n: usize = header("content-length").map_or(0, |v| v.parse().unwrap_or(0));
                let mut body = vec![0; n];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                body
            };
            let delay: Option<u64> = header("x-test-delay-ms").and_then(|v| v.parse().ok());
            let stream = header("x-test-stream").is_some();
            let received = Received {
                method,
                target,
                headers: headers.clone(),
                body,
                peer_port,
            };
            {
                let (lock, cv) = &*self.shared;
                lock.lock().unwrap().received.push(received.clone());
                cv.notify_all();
            }
            if let Some(ms) = delay {
                std::thread::sleep(Duration::from_millis(ms));
            }
            if header("x-test-close-delimited").is_some() {
                let echo = self.echo(&received);
                let head = format!("HTTP/1.1 200 OK\r\nX-Backend: {}\r\n\r\n", self.name);
                let _ = writer.write_all((head + &echo).as_bytes());
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            let ok = if stream {
                self.stream_response(&mut writer)
            } else {
                let echo = self.echo(&received);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: {}\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, x-hop\r\nX-Hop: secret\r\n\r\n",
                    echo.len(),
                    self.name
                );
                writer.write_all((head + &echo).as_bytes()).is_ok()
            };
            if !ok {
                return;
            }
        }
    }

    fn stream_response(&self, writer: &mut TcpStream) -> bool {
        let first = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend: {}\r\n\r\n6\r\nhello \r\n",
            self.name
        );
        if writer.write_all(first.as_bytes()).is_err() {
            return false;
        }
        let (lock, cv) = &*self.shared;
        let guard = lock.lock().unwrap();
        let (mut guard, _) = cv.wait_timeout_while(guard, WAIT, |s| !s.released).unwrap();
        guard.released = false;
        drop(guard);
        writer.write_all(b"5\r\nworld\r\n0\r\n\r\n").is_ok()
    }

    fn echo(&self, r: &Received) -> String {
        let mut out = format!(
            "backend: {}\nmethod: {}\ntarget: {}\npeer-port: {}\n",
            self.name, r.method, r.target, r.peer_port
        );
        for (n, v) in &r.headers {
            out.push_str(&format!("header: {n}: {v}\n"));
        }
        out.push_str(&format!("body-len: {}\n", r.body.len()));
        let quiet = r.headers.iter().any(|(n, _)| n == "x-test-quiet");
        if !quiet {
            out.push_str(&format!("body: {}\n", String::from_utf8_lossy(&r.body)));
        }
        out
    }
}

/// A backend that accepts connections and never reads from them nor
/// answers (the slowest possible mirror).
#[derive(Debug, Clone)]
pub struct Blackhole {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let hole = Blackhole {
            port: listener.local_addr().unwrap().port(),
            accepted: Arc::default(),
        };
        let accepted = hole.accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        hole
    }
}

/// A backend that reads everything it is sent but never answers; counts
/// connections accepted and closed by the proxy.
#[derive(Debug, Clone)]
pub struct Silent {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
    pub closed: Arc<AtomicUsize>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = Silent {
            port: listener.local_addr().unwrap().port(),
            accepted: Arc::default(),
            closed: Arc::default(),
        };
        let s = silent.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let closed = s.closed.clone();
                std::thread::spawn(move || {
                    let mut buf = [0; 4096];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        silent
    }
}

/// A backend that reads one request head per connection, then writes
/// `answer` as is and closes.
#[derive(Debug, Clone)]
pub struct RawBackend {
    pub port: u16,
}

impl RawBackend {
    pub fn start(answer: &'static [u8]) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    if read_head(&mut reader).is_some() {
                        let mut writer = stream;
                        let _ = writer.write_all(answer);
                        let _ = writer.shutdown(Shutdown::Both);
                    }
                });
            }
        });
        RawBackend { port }
    }
}

/// A WebSocket-style backend. A request with `Upgrade: websocket` is
/// answered `101 Switching Protocols` (with `X-Got-Connection` and
/// `X-Got-Upgrade` echoing what arrived), then every byte is echoed until
/// the proxy half-closes; then `bye` is sent and the connection closed. A
/// request to `/ws/refuse` (or without Upgrade) gets an ordinary `403`
/// with a `Content-Length` body, keep-alive.
#[derive(Debug, Clone)]
pub struct WsBackend {
    pub port: u16,
}

impl WsBackend {
    pub fn start() -> WsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || Self::serve(stream));
            }
        });
        WsBackend { port }
    }

    fn serve(stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let Some((_, target, headers)) = read_head(&mut reader) else {
                return;
            };
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(String::new(), |(_, v)| v.clone())
            };
            if target.starts_with("/ws/refuse") || header("upgrade").is_empty() {
                let answer = "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\nrefused";
                if writer.write_all(answer.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Got-Connection: {}\r\nX-Got-Upgrade: {}\r\n\r\n",
                header("connection"),
                header("upgrade")
            );
            writer.write_all(head.as_bytes()).unwrap();
            // Echo: what the reader already buffered first, then the rest.
            let mut buf = vec![0; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if writer.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = writer.write_all(b"bye");
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

type HeadLine = (String, String, Vec<(String, String)>);

/// Reads a request head; header names lower-cased.
fn read_head(reader: &mut impl BufRead) -> Option<HeadLine> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let headers = read_fields(reader)?;
    Some((method, target, headers))
}

fn read_fields(reader: &mut impl BufRead) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Some(headers);
        }
        let (n, v) = line.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// Reads a chunked body, calling `each` with every chunk.
fn read_chunked(reader: &mut impl BufRead, mut each: impl FnMut(&[u8])) -> bool {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        let size = line.trim_end().split(';').next().unwrap_or("");
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return false;
        };
        if size == 0 {
            return read_fields(reader).is_some();
        }
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            return false;
        }
        each(&chunk[..size]);
    }
}

// === the proxy ===

/// A running `sluice` process, killed on drop.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    pub log: PathBuf,
}

impl Proxy {
    /// Starts sluice on `files` and waits until `port` accepts connections.
    pub fn start(files: &[PathBuf], port: u16, workers: usize) -> Proxy {
        Proxy::start_with(files, port, workers, &[])
    }

    /// As [`Proxy::start`], with more command-line arguments.
    pub fn start_with(files: &[PathBuf], port: u16, workers: usize, extra: &[&str]) -> Proxy {
        let dir = files[0].parent().unwrap().to_path_buf();
        let log = dir.join("sluice.log");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(files)
            .args([
                "--bind",
                "127.0.0.1",
                "--workers",
                &workers.to_string(),
                "--access-log",
            ])
            // === eBPF (issue 5): SLUICE_TEST_EBPF=on|off|auto runs the suite with `--ebpf` ===
            .args(
                std::env::var("SLUICE_TEST_EBPF")
                    .map(|m| vec!["--ebpf".to_string(), m])
                    .unwrap_or_default(),
            )
            // More eBPF flags for a manual run of the suite, e.g.
            // SLUICE_TEST_EBPF_FLAGS='--ebpf-local-clients true'.
            .args(
                std::env::var("SLUICE_TEST_EBPF_FLAGS")
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            )
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut proxy = Proxy { child, log };
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return proxy;
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("sluice exited with {status}:\n{}", proxy.log_text());
            }
            assert!(
                start.elapsed() < WAIT,
                "sluice did not listen:\n{}",
                proxy.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === the client ===

/// A response as the client read it; header names lower-cased.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `key: value` lines a test backend echoed for `key`.
    pub fn echoed(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}: ");
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    pub fn backend(&self) -> Option<String> {
        self.echoed("backend").into_iter().next()
    }
}

/// A raw HTTP/1.1 client that keeps its connection open while the server
/// does.
#[derive(Debug)]
pub struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
    /// The server said it closes: the next request reconnects.
    closing: bool,
    pub connections: usize,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client {
            port,
            conn: None,
            closing: false,
            connections: 0,
        }
    }

    fn conn(&mut self) -> &mut BufReader<TcpStream> {
        if std::mem::take(&mut self.closing) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            stream.set_nodelay(true).unwrap();
            self.connections += 1;
            self.conn = Some(BufReader::new(stream));
        }
        self.conn.as_mut().unwrap()
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.conn().get_mut().write_all(bytes).unwrap();
    }

    /// Sends a request with Content-Length framing and reads the response.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: example.com\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes);
        self.read_response(method == "HEAD")
    }

    /// Reads the response head only.
    pub fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        let reader = self.conn();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let headers = read_fields(reader).expect("response head");
        (status, headers)
    }

    /// Reads one chunk of a chunked body (`None` at the last chunk).
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let reader = self.conn();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
        if size == 0 {
            read_fields(reader).unwrap();
            return None;
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).unwrap();
        chunk.truncate(size);
        Some(chunk)
    }

    /// Reads a chunked body to its end: the data and the trailer fields.
    pub fn read_chunked_body(&mut self) -> (Vec<u8>, Vec<(String, String)>) {
        let reader = self.conn();
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
            if size == 0 {
                return (body, read_fields(reader).unwrap());
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            reader.read_exact(&mut body[start..]).unwrap();
            body.truncate(start + size);
        }
    }

    /// Sends `GET target` like [`Client::request`], for a Content-Length
    /// response whose body may be cut short: the server closing before the
    /// body's end is `Err(status)` (the head was forwarded before its
    /// backend died), not a panic; the next request reconnects. A read that
    /// times out (a request that hung) still panics.
    pub fn get_or_cut(&mut self, target: &str) -> Result<Response, u16> {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: example.com\r\n\r\n").as_bytes());
        let (status, headers) = self.read_head();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        match self.conn().read_exact(&mut body) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.conn = None;
                return Err(status);
            }
            Err(e) => panic!("no request hangs: {e}"),
        }
        if headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"))
        {
            self.closing = true;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Reads a whole response.
    pub fn read_response(&mut self, head_request: bool) -> Response {
        let (status, headers) = self.read_head();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if head_request || status == 204 || status == 304 {
        } else if get("transfer-encoding").is_some_and(|v| v == "chunked") {
            while let Some(chunk) = self.read_chunk() {
                body.extend_from_slice(&chunk);
            }
        } else if let Some(n) = get("content-length") {
            body = vec![0; n.parse().unwrap()];
            self.conn().read_exact(&mut body).unwrap();
        } else {
            self.conn().read_to_end(&mut body).unwrap();
            self.conn = None;
        }
        if get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            self.closing = true;
        }
        Response {
            status,
            headers,
            body,
        }
    }

    /// Whether the server closed the connection (reads EOF).
    pub fn is_closed_by_server(&mut self) -> bool {
        self.closing = false;
        let reader = self.conn();
        let mut rest = Vec::new();
        let closed = reader.read_to_end(&mut rest).is_ok();
        self.conn = None;
        closed && rest.is_empty()
    }

    /// The connection's socket (connecting first if needed).
    pub fn stream(&mut self) -> &mut TcpStream {
        self.conn().get_mut()
    }

    /// Drops the connection without reading anything more.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    pub fn shutdown_write(&mut self) {
        let _ = self.conn().get_mut().shutdown(Shutdown::Write);
    }
}

/// Checks a RequestMirror copy: `shadow` received `method target` with
/// `body`, every field of `headers` and `Host: example.com`, and `primary`
/// (when given) received the very same head.
pub fn assert_mirrored(
    shadow: &Backend,
    primary: Option<&Backend>,
    (method, target, body): (&str, &str, &[u8]),
    headers: &[(&str, &str)],
    context: impl Fn() -> String,
) {
    let same = |m: &Received| m.method == method && m.target == target && m.body == body;
    // The copy arrives on its own time: wait for it.
    let copy = shadow.wait_received(same);
    let copy = copy.unwrap_or_else(|| panic!("not mirrored; {}", context()));
    for (k, v) in headers {
        let field = (k.to_ascii_lowercase(), (*v).to_string());
        assert!(copy.headers.contains(&field), "{field:?}; {}", context());
    }
    let host = ("host".to_string(), "example.com".to_string());
    assert!(copy.headers.contains(&host), "{copy:?}");
    if let Some(primary) = primary {
        let primary = primary.wait_received(same).unwrap();
        assert_eq!(primary.headers, copy.headers, "{}", context());
    }
}

/// Counts per value.
pub fn tally(values: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for v in values {
        *map.entry(v).or_insert(0) += 1;
    }
    map
}
