//! `sluice demo`: the proxy on bundled example routes, with built-in
//! backends that answer with their own name.
//!
//! The routes (`examples/demo/routes.yaml`, compiled into the binary) show
//! the common patterns: a weighted canary split, header-based version
//! routing, method-based routing and a mirror. Each backend Service named
//! there gets a small HTTP/1.1 server on 127.0.0.1 (an ephemeral port) and an
//! EndpointSlice pointing at it, generated at start-up; then the proxy runs
//! as it would on any route set, and the curl lines to try are printed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// The demo's route files: Gateway and HTTPRoutes.
pub const ROUTES: &str = include_str!("../../examples/demo/routes.yaml");

/// The backend Services the demo routes name, each started locally.
pub const BACKENDS: [&str; 7] = [
    "stable", "canary", "api-v1", "api-v2", "reader", "writer", "shadow",
];

/// The listener port of the demo Gateway.
pub const PORT: u16 = 8080;

/// Largest request head a demo backend reads.
const MAX_HEAD: usize = 16 * 1024;

/// Starts one demo backend; returns its address.
///
/// # Errors
///
/// The bind error.
pub fn start_backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name(format!("demo-{name}"))
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = std::thread::Builder::new()
                    .name(format!("demo-{name}-conn"))
                    .spawn(move || serve(name, stream));
            }
        })?;
    Ok(addr)
}

/// Serves one keep-alive connection: every request is answered with a
/// small JSON object naming this backend and echoing what it received.
fn serve(name: &str, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut writer = writer;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut content_length = 0usize;
        let mut chunked = false;
        let mut close = false;
        let mut head_size = request_line.len();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(n) => head_size += n,
            }
            if head_size > MAX_HEAD {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((field, value)) = line.split_once(':') {
                let value = value.trim();
                match field.to_ascii_lowercase().as_str() {
                    "content-length" => content_length = value.parse().unwrap_or(0),
                    "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let body_len = if chunked {
            match drain_chunked(&mut reader) {
                Some(n) => n,
                None => return,
            }
        } else {
            let mut body = reader.by_ref().take(content_length as u64);
            match std::io::copy(&mut body, &mut std::io::sink()) {
                Ok(n) => n as usize,
                Err(_) => return,
            }
        };
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("");
        let body = format!(
            "{{\"backend\":\"{name}\",\"method\":\"{}\",\"target\":\"{}\",\"body_bytes\":{body_len}}}\n",
            escape(method),
            escape(target)
        );
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-backend: {name}\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// Reads a chunked body to its end; its decoded length.
fn drain_chunked(reader: &mut impl BufRead) -> Option<usize> {
    let mut total = 0;
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
                    return Some(total);
                }
            }
        }
        std::io::copy(&mut reader.by_ref().take(size as u64), &mut std::io::sink()).ok()?;
        total += size;
        let mut crlf = String::new();
        reader.read_line(&mut crlf).ok()?;
    }
}

fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c if c.is_control() => vec!['?'],
            c => vec![c],
        })
        .collect()
}

/// One EndpointSlice document per backend, pointing at its address.
pub fn endpoint_slices(backends: &[(&str, SocketAddr)]) -> String {
    backends
        .iter()
        .map(|(name, addr)| {
            format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-demo\n  namespace: demo\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{port: {}}}]\nendpoints: [{{addresses: [\"{}\"]}}]\n",
                addr.port(),
                addr.ip()
            )
        })
        .collect()
}

/// The curl lines the demo prints.
pub fn curl_lines(port: u16) -> String {
    let base = format!("http://127.0.0.1:{port}");
    format!(
        "Try:
  curl -s {base}/                                   # canary: ~90% stable, ~10% canary
  for i in $(seq 20); do curl -s {base}/; done | sort | uniq -c
  curl -s {base}/api/tasks                          # header routing: api-v1
  curl -s -H 'x-version: 2' {base}/api/tasks        # header routing: api-v2
  curl -s {base}/store/items                        # method routing: GET -> reader
  curl -s -X POST -d '{{\"title\":\"x\"}}' {base}/store/items   # POST -> writer
  curl -s {base}/audit/login                        # mirrored: the shadow gets a copy
"
    )
}

/// Starts every demo backend and compiles the demo routes with their
/// EndpointSlices.
///
/// # Errors
///
/// A backend that cannot bind, or diagnostics if the bundled routes do not
/// compile (a bug).
pub fn build() -> Result<route_compiler::Build, String> {
    let mut backends = Vec::with_capacity(BACKENDS.len());
    for name in BACKENDS {
        let addr = start_backend(name).map_err(|e| format!("demo backend {name}: {e}"))?;
        backends.push((name, addr));
    }
    let endpoints = endpoint_slices(&backends);
    route_compiler::Build::from_text(&[
        ("examples/demo/routes.yaml", ROUTES),
        ("(demo endpoints)", &endpoints),
    ])
    .map_err(|diagnostics| {
        diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_routes_compile_cleanly_and_backends_answer() {
        let build = build().expect("demo routes compile");
        assert!(build.diagnostics.is_empty(), "{:?}", build.diagnostics);
        assert_eq!(build.table.ports(), [PORT]);
        let addr = start_backend("probe").expect("bind");
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .write_all(
                b"POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
            )
            .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("\"backend\":\"probe\""), "{response}");
        assert!(response.contains("\"body_bytes\":3"), "{response}");
    }
}
