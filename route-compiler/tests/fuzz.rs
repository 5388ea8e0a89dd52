//! Fuzz-style robustness: whatever the YAML or the table bytes, the
//! compiler and the loader answer `Ok` or `Err`, never panic.
//!
//! Deterministic (xorshift), a few thousand inputs per test, fast in debug
//! builds. When an input panics, it is printed before the test fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failure with its message"
)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use route_compiler::Build;
use route_compiler::table::{Decision, RequestView, Table};

// === generator ===

/// xorshift64*: small, deterministic, good enough for mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

// === inputs ===

/// A Gateway for the inline documents (and the seeds' gateway, when the
/// seed directory is missing).
const GATEWAY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: task-api-gateway, namespace: task-api}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - name: grpc
    protocol: HTTP
    port: 50051
  - name: wild
    protocol: HTTP
    port: 8080
    hostname: "*.example.com"
    allowedRoutes:
      namespaces: {from: All}
"#;

const INLINE: &[&str] = &[
    r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: everything
  namespace: task-api
  creationTimestamp: "2024-01-02T03:04:05Z"
spec:
  parentRefs:
  - name: task-api-gateway
  - {name: task-api-gateway, sectionName: wild}
  hostnames: ["a.example.com", "*.example.com"]
  rules:
  - name: first
    matches:
    - path: {type: Exact, value: /api/v1/tasks}
      method: GET
      headers:
      - {name: X-Version, value: "2"}
      - {name: x-env, type: RegularExpression, value: "beta|canary"}
      queryParams:
      - {name: debug, value: "true"}
    - path: {type: RegularExpression, value: "/api/v[0-9]+/tasks/[0-9]+"}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-a, value: b}]
        remove: [x-b]
    - type: URLRewrite
      urlRewrite:
        path: {type: ReplaceFullPath, replaceFullPath: /v2}
    backendRefs:
    - {name: task-api, port: 8000, weight: 3}
    - {name: task-api-canary, port: 8000, weight: 1}
    timeouts: {request: 10s, backendRequest: 2s}
  - matches:
    - path: {type: PathPrefix, value: /old}
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /new}}
"#,
    r#"# anchors, aliases and flow style
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: &meta {name: anchored, namespace: task-api}
spec:
  parentRefs: [&gw {name: task-api-gateway}]
  rules:
  - matches: &m [{path: {type: PathPrefix, value: /a}}, {path: {value: /b}}]
    backendRefs: &b [{name: svc, port: 80}]
  - matches: *m
    backendRefs: *b
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: task-api}
spec:
  parentRefs: [{name: task-api-gateway, sectionName: grpc}]
  rules:
  - matches:
    - method: {service: task.TaskService, method: "Get.*", type: RegularExpression}
      headers: [{name: x-tenant, value: a}]
    backendRefs: [{name: task-grpc, port: 50051}]
  - backendRefs: [{name: task-grpc-default, port: 50051}]
"#,
    r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-abc
  namespace: task-api
  labels: {kubernetes.io/service-name: svc}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["10.0.0.1", "10.0.0.2"]
  conditions: {ready: true}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: grant, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: task-api}]
  to: [{group: "", kind: Service}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross, namespace: task-api}
spec:
  parentRefs: [{name: task-api-gateway, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: svc, namespace: other, port: 80}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: svc, port: 80}, percent: 50}
"#,
    "",
    "---\n---\n...\n",
    "# only a comment\n",
];

/// Tokens inserted by the mutator: YAML structure, tags, anchors, numbers,
/// Gateway API words, unicode.
const TOKENS: &[&str] = &[
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "*nope",
    "!!int ",
    "!!str ",
    "!!binary ",
    "!custom ",
    "~",
    "null",
    "\"",
    "'",
    "#",
    "|",
    ">-",
    "\t",
    "? ",
    "<<: *a",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "\n",
    "\r\n",
    "\r",
    "\0",
    "\u{feff}",
    "é",
    "\u{202e}",
    "😀",
    "\u{10ffff}",
    "0x1F",
    "1e999",
    "-1",
    "65536",
    "99999999999999999999",
    "0.5",
    "true",
    "''",
    "\\",
    "\\u",
    "/api",
    "/",
    "*.example.com",
    "..",
    "Exact",
    "PathPrefix",
    "RegularExpression",
    "(",
    ")",
    "[0-9]+",
    "(?P<x>",
    "\\p{Greek}",
    "a{0,40}",
    "kind: Gateway",
    "kind: HTTPRoute",
    "kind: GRPCRoute",
    "apiVersion: v1",
    "name: ",
    "matches: ",
    "value: ",
    "weight: ",
    "port: ",
    "sectionName: x",
    "namespace: other",
];

/// Seed documents: `/work/shared/examples/seed/*.yaml` (via
/// `CARGO_MANIFEST_DIR/../../shared/examples/seed`) plus the inline ones,
/// as `(name, text)`, with the gateway text to load beside them.
fn seeds() -> (String, Vec<(String, String)>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples/seed");
    let mut files: Vec<(String, String)> = Vec::new();
    let mut gateway = GATEWAY.to_string();
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect();
            paths.sort();
            for path in paths {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                if name == "gateway.yaml" {
                    gateway = text;
                } else {
                    files.push((name, text));
                }
            }
        }
        Err(e) => eprintln!(
            "note: seed directory {} not readable ({e}); fuzzing inline documents only",
            dir.display()
        ),
    }
    for (i, text) in INLINE.iter().enumerate() {
        files.push((format!("inline-{i}.yaml"), text.to_string()));
    }
    (gateway, files)
}

/// The byte offsets of `text`'s char boundaries (0 and `len` included).
fn boundaries(text: &str) -> Vec<usize> {
    text.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect()
}

/// One random edit of `text`.
fn mutate_once(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let n = lines.len();
    match rng.below(11) {
        // delete a line
        0 if n > 1 => {
            lines.remove(rng.below(n));
        }
        // duplicate a line
        1 => {
            let i = rng.below(n);
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        // swap two lines
        2 => {
            let (a, b) = (rng.below(n), rng.below(n));
            lines.swap(a, b);
        }
        // indent or dedent a line
        3 => {
            let i = rng.below(n);
            if rng.chance(2) {
                let pad = " ".repeat(1 + rng.below(4));
                lines[i] = format!("{pad}{}", lines[i]);
            } else {
                let trimmed = lines[i].trim_start();
                let indent = lines[i].len() - trimmed.len();
                lines[i] = format!(
                    "{}{trimmed}",
                    " ".repeat(indent.saturating_sub(1 + rng.below(4)))
                );
            }
        }
        // replace the value after `: ` with a token
        4 => {
            let i = rng.below(n);
            if let Some(colon) = lines[i].find(": ") {
                let token = rng.pick(TOKENS);
                lines[i] = format!("{}: {token}", &lines[i][..colon]);
            }
        }
        // truncate the whole text
        5 => {
            let cuts = boundaries(text);
            return text[..*rng.pick(&cuts)].to_string();
        }
        // random printable garbage in a line
        6 => {
            let i = rng.below(n);
            let garbage: String = (0..1 + rng.below(8))
                .map(|_| char::from(b' ' + (rng.below(95) as u8)))
                .collect();
            let cuts = boundaries(&lines[i]);
            let at = *rng.pick(&cuts);
            lines[i].insert_str(at, &garbage);
        }
        // move a line elsewhere
        7 if n > 1 => {
            let line = lines.remove(rng.below(n));
            let to = rng.below(lines.len() + 1);
            lines.insert(to, line);
        }
        // delete a char range
        8 => {
            let cuts = boundaries(text);
            let a = *rng.pick(&cuts);
            let b = *rng.pick(&cuts);
            let (a, b) = (a.min(b), a.max(b));
            return format!("{}{}", &text[..a], &text[b..]);
        }
        // insert a token at a random char boundary (the default)
        _ => {
            let cuts = boundaries(text);
            let at = *rng.pick(&cuts);
            return format!("{}{}{}", &text[..at], rng.pick(TOKENS), &text[at..]);
        }
    }
    lines.join("\n")
}

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut out = text.to_string();
    for _ in 0..1 + rng.below(4) {
        out = mutate_once(rng, &out);
    }
    out
}

// === checks ===

struct Get<'a> {
    target: &'a [u8],
    host: &'a [u8],
    content_type: Option<&'a [u8]>,
}

impl RequestView for Get<'_> {
    fn method(&self) -> &[u8] {
        b"GET"
    }
    fn host(&self) -> &[u8] {
        self.host
    }
    fn target(&self) -> &[u8] {
        self.target
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        match name {
            "content-type" => self.content_type,
            "x-version" => Some(b"2"),
            _ => None,
        }
    }
}

const HOSTS: &[&[u8]] = &[b"", b"a.example.com:80", b"X.EXAMPLE.COM", b"[::1]:8"];

const TARGETS: &[&[u8]] = &[
    b"/",
    b"",
    b"/api/v1/tasks",
    b"/api/v1/tasks/12?debug=true&tier=premium",
    b"/a/b",
    b"/task.TaskService/GetTask",
    b"/\xff\xfe",
    b"?",
    b"/old",
];

/// Looks a few requests up on every port of `table`: must not panic.
fn exercise(table: &Table, rng: &mut Rng) {
    let mut scratch = table.scratch();
    let mut ports = table.ports();
    ports.push(1);
    for port in ports {
        for _ in 0..3 {
            let request = Get {
                target: rng.pick::<&[u8]>(TARGETS),
                host: rng.pick::<&[u8]>(HOSTS),
                content_type: rng.chance(2).then_some(&b"application/grpc"[..]),
            };
            match table.lookup(port, &request, &mut scratch) {
                Decision::Matched(m) => {
                    assert!(m.rule_index < m.route.rules.len());
                }
                Decision::NoRoute { .. } | Decision::NoListener => {}
            }
        }
    }
}

/// Builds `files`; on a panic, prints the input and fails.
fn build_checked(files: &[(&str, &str)], rng: &mut Rng) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut local = Rng::new(rng.next());
        match Build::from_text(files) {
            Ok(build) => {
                check_diagnostics(&build.diagnostics, files);
                exercise(&build.table, &mut local);
                true
            }
            Err(diagnostics) => {
                assert!(!diagnostics.is_empty(), "Err without diagnostics");
                check_diagnostics(&diagnostics, files);
                false
            }
        }
    }));
    match outcome {
        Ok(ok) => ok,
        Err(panic) => {
            for (name, text) in files {
                eprintln!("=== {name} ===\n{text:?}");
            }
            std::panic::resume_unwind(panic)
        }
    }
}

fn check_diagnostics(diagnostics: &[route_compiler::Diagnostic], files: &[(&str, &str)]) {
    for d in diagnostics {
        assert!(d.line >= 1, "diagnostic with line 0: {d:?}");
        assert!(d.column >= 1, "diagnostic with column 0: {d:?}");
        assert!(!d.message.trim().is_empty(), "empty message: {d:?}");
        if let Some((_, text)) = files.iter().find(|(name, _)| *name == d.file) {
            // YAML breaks lines at \r\n, \r and \n; one past the last
            // line is where end-of-input errors may point.
            let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count() as u32;
            assert!(
                d.line <= lines + 1,
                "diagnostic past the end of {} ({lines} lines): {d:?}",
                d.file
            );
        }
    }
}

// === tests ===

#[test]
fn seeds_build() {
    let (gateway, files) = seeds();
    let mut rng = Rng::new(1);
    for (name, text) in &files {
        if name.starts_with("cases") {
            continue;
        }
        assert!(
            build_checked(&[("gateway.yaml", &gateway), (name, text)], &mut rng)
                || name.starts_with("inline"),
            "seed {name} does not build"
        );
    }
    let inline_ok = INLINE
        .iter()
        .filter(|text| {
            build_checked(
                &[("gateway.yaml", GATEWAY), ("inline.yaml", text)],
                &mut rng,
            )
        })
        .count();
    assert!(
        inline_ok >= 1,
        "no inline document builds: the fuzz seeds are stale"
    );
}

#[test]
fn mutated_yaml_never_panics() {
    let (gateway, files) = seeds();
    let mut rng = Rng::new(0x5eed_0001);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..2500 {
        let (name, text) = rng.pick(&files);
        let text = mutate(&mut rng, text);
        let built = if rng.chance(5) {
            // Break the gateway too, or load the route alone.
            let gw = if rng.chance(2) {
                mutate(&mut rng, &gateway)
            } else {
                String::new()
            };
            build_checked(&[("gateway.yaml", &gw), (name, &text)], &mut rng)
        } else if rng.chance(6) {
            // Everything in one file, with document separators mutated too.
            let joined = format!("{gateway}\n---\n{text}");
            let joined = if rng.chance(2) {
                mutate(&mut rng, &joined)
            } else {
                joined
            };
            build_checked(&[("all.yaml", &joined)], &mut rng)
        } else {
            build_checked(&[("gateway.yaml", &gateway), (name, &text)], &mut rng)
        };
        if built { ok += 1 } else { err += 1 }
    }
    eprintln!("mutated YAML: {ok} built, {err} rejected");
    assert!(
        ok > 0 && err > 0,
        "mutations should both keep and break documents"
    );
}

#[test]
fn random_bytes_as_yaml_never_panic() {
    let mut rng = Rng::new(0x5eed_0002);
    let alphabet: Vec<char> = ":-{}[],&*!|>'\"#?% \n\t\r\0aZ09.é😀\u{feff}"
        .chars()
        .collect();
    for i in 0..1500 {
        let text = if i % 2 == 0 {
            let len = rng.below(200);
            let bytes = rng.bytes(len);
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            (0..rng.below(200)).map(|_| *rng.pick(&alphabet)).collect()
        };
        build_checked(
            &[("gateway.yaml", GATEWAY), ("random.yaml", &text)],
            &mut rng,
        );
    }
}

#[test]
fn pathological_yaml_is_rejected_not_fatal() {
    let mut rng = Rng::new(3);
    let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        laughs.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    let deep_flow = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_block: String = (0..400)
        .map(|i| format!("{}- \n", " ".repeat(i * 2)))
        .collect();
    let recursive = "a: &a\n  b: *a\n".to_string();
    let long_line = format!("kind: {}\n", "x".repeat(1 << 20));
    let many_docs = "---\n".repeat(20_000);
    for text in [
        laughs, deep_flow, deep_block, recursive, long_line, many_docs,
    ] {
        build_checked(&[("gateway.yaml", GATEWAY), ("bad.yaml", &text)], &mut rng);
    }
}

/// A real table to mutate.
fn real_table() -> Vec<u8> {
    let files = [
        ("gateway.yaml", GATEWAY),
        ("a.yaml", INLINE[0]),
        ("b.yaml", INLINE[1]),
        ("c.yaml", INLINE[2]),
    ];
    match Build::from_text(&files) {
        Ok(build) => build.bytes,
        Err(diagnostics) => panic!("the inline documents do not build: {diagnostics:#?}"),
    }
}

fn load_checked(bytes: &[u8], rng: &mut Rng) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| match Table::from_bytes(bytes) {
        Ok(table) => {
            let mut local = Rng::new(rng.next());
            exercise(&table, &mut local);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }));
    match outcome {
        Ok(ok) => ok,
        Err(panic) => {
            eprintln!(
                "table bytes that panicked ({} bytes): {bytes:02x?}",
                bytes.len()
            );
            std::panic::resume_unwind(panic)
        }
    }
}

#[test]
fn table_truncations_and_flips_are_rejected() {
    let bytes = real_table();
    let mut rng = Rng::new(4);
    assert!(load_checked(&bytes, &mut rng), "the real table loads");
    eprintln!("table of {} bytes", bytes.len());
    // Truncations: every length inside the header and directory, a sample
    // past it (the length field catches them all).
    let head = 32 + 24 * 4;
    let positions: Vec<usize> = (0..bytes.len().min(head))
        .chain((0..1500).map(|_| rng.below(bytes.len())))
        .collect();
    for &len in &positions {
        assert!(
            !load_checked(&bytes[..len], &mut rng),
            "truncated to {len} loads"
        );
    }
    // Trailing garbage.
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 8]);
    assert!(!load_checked(&longer, &mut rng), "extended table loads");
    // Single-byte changes at the same positions, random non-zero xor
    // (CRC-32 catches every burst up to 32 bits, the header fields are
    // checked on their own).
    for &at in &positions {
        let mut flipped = bytes.clone();
        flipped[at] ^= 1 + rng.below(255) as u8;
        assert!(
            !load_checked(&flipped, &mut rng),
            "byte {at} changed and the table loads"
        );
    }
}

/// Offset of the checksum and first byte it covers (see `format` docs).
const CRC_OFFSET: usize = 24;
const CRC_START: usize = 28;

fn fix_crc(bytes: &mut [u8]) {
    if bytes.len() >= CRC_START {
        let crc = crc32fast::hash(&bytes[CRC_START..]);
        bytes[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_ne_bytes());
    }
}

#[test]
fn mutated_tables_with_valid_checksums_never_panic() {
    // Past the checksum: the metadata decoder, the DFA validation and the
    // index checks must hold on their own.
    let bytes = real_table();
    let mut rng = Rng::new(5);
    let mut loaded = 0;
    for _ in 0..3000 {
        let mut m = bytes.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len());
            match rng.below(4) {
                0 => m[at] ^= 1 << rng.below(8),
                1 => m[at] = rng.next() as u8,
                2 => m[at] = *rng.pick(&[0, 1, 0x7f, 0x80, 0xff]),
                _ => {
                    // Overwrite a little-endian-ish small integer.
                    let v = rng.below(300) as u8;
                    m[at] = v;
                }
            }
        }
        fix_crc(&mut m);
        if load_checked(&m, &mut rng) {
            loaded += 1;
        }
    }
    eprintln!("checksum-fixed mutations: {loaded} of 3000 loaded");
}

#[test]
fn random_bytes_as_table_never_panic() {
    let mut rng = Rng::new(6);
    let real = real_table();
    for i in 0..3000 {
        let mut bytes = match i % 3 {
            0 => {
                let len = rng.below(256);
                rng.bytes(len)
            }
            // A valid header, then garbage.
            1 => {
                let mut b = real[..32.min(real.len())].to_vec();
                let len = rng.below(512);
                b.extend(rng.bytes(len));
                let total = b.len() as u64;
                b[16..24].copy_from_slice(&total.to_ne_bytes());
                b
            }
            // A valid header and directory, garbage payloads.
            _ => {
                let mut b = real.clone();
                let from = 32 + rng.below(b.len() - 32);
                for byte in &mut b[from..] {
                    *byte = rng.next() as u8;
                }
                b
            }
        };
        if i % 2 == 0 {
            fix_crc(&mut bytes);
        }
        load_checked(&bytes, &mut rng);
    }
}
