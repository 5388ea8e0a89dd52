//! A route set whose automata pass the dense-DFA size cap still compiles:
//! those automata run as lazy DFAs, with a warning that names the regexes
//! responsible, and every decision is the same as with dense DFAs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failure with its message"
)]

use std::path::PathBuf;

use route_compiler::table::{Decision, RequestView, Table};
use route_compiler::{Build, Options};

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: sluice
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches:
    - path: {type: RegularExpression, value: "/files/[a-z]*a[a-z]{12}/.*"}
    backendRefs: [{name: svc, port: 80}]
  - matches:
    - path: {type: Exact, value: /api/v1/tasks}
    - path: {type: RegularExpression, value: "/api/v[0-9]+/tasks/[0-9]+"}
      headers: [{name: x-tenant, type: RegularExpression, value: "t[0-9]+"}]
    backendRefs: [{name: svc, port: 80}]
  - matches:
    - path: {type: PathPrefix, value: /api}
    backendRefs: [{name: svc, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc-1, namespace: ns, labels: {kubernetes.io/service-name: svc}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [127.0.0.1]}]
"#;

struct Req(&'static str, Option<&'static str>);

impl RequestView for Req {
    fn method(&self) -> &[u8] {
        b"GET"
    }
    fn host(&self) -> &[u8] {
        b"h"
    }
    fn target(&self) -> &[u8] {
        self.0.as_bytes()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        (name == "x-tenant").then_some(self.1?.as_bytes())
    }
}

fn decide(table: &Table, request: &Req) -> Option<(String, usize, usize)> {
    let mut scratch = table.scratch();
    match table.lookup(80, request, &mut scratch) {
        Decision::Matched(m) => Some((m.route.name.name.clone(), m.rule_index, m.match_index)),
        _ => None,
    }
}

fn build(dense_limit: usize) -> Build {
    let dir =
        std::env::temp_dir().join(format!("routec-lazy-{}-{dense_limit}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("routes.yaml");
    std::fs::write(&file, ROUTES).expect("write routes");
    let built = Build::from_paths(&[PathBuf::from(&file)], Options { dense_limit });
    let _ = std::fs::remove_dir_all(&dir);
    built.expect("route set is valid")
}

#[test]
fn oversized_automata_fall_back_to_lazy_and_decide_the_same() {
    let dense = build(Options::default().dense_limit);
    let lazy = build(4096);
    assert!(dense.report.lazy.is_empty());
    assert!(
        !lazy.report.lazy.is_empty(),
        "the tiny cap must force the lazy DFA"
    );
    let warning = lazy
        .diagnostics
        .iter()
        .find(|d| d.code == "lazy-dfa")
        .expect("a lazy-dfa warning");
    assert!(
        warning.message.contains("/files/[a-z]*a[a-z]{12}/.*"),
        "{warning}"
    );
    let requests = [
        Req("/files/xxabcdefghijklm/x", None),
        Req("/files/abc/x", None),
        Req("/api/v1/tasks", None),
        Req("/api/v2/tasks/7", Some("t1")),
        Req("/api/v2/tasks/7", Some("x1")),
        Req("/api/other", None),
        Req("/nothing", None),
    ];
    for request in &requests {
        assert_eq!(
            decide(&dense.table, request),
            decide(&lazy.table, request),
            "{}",
            request.0
        );
    }
    // Round trip through bytes: the lazy automaton is rebuilt at load time.
    let reloaded = Table::from_bytes(&lazy.bytes).expect("lazy table loads");
    for request in &requests {
        assert_eq!(
            decide(&dense.table, request),
            decide(&reloaded, request),
            "{}",
            request.0
        );
    }
}
