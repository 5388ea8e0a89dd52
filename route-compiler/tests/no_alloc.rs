//! Proof that a route lookup allocates nothing: a counting global allocator
//! wraps the system one, and the count must not move across thousands of
//! lookups of every kind (match, miss, header and query predicates, regex
//! paths, gRPC, wildcard hosts).
#![allow(
    unsafe_code,
    reason = "a GlobalAlloc impl is unsafe by definition; it only forwards to System"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failure with its message"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use route_compiler::Build;
use route_compiler::table::{Decision, RequestView};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counter has no effect on
// memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged, see above.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged, see above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged, see above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: wild, port: 81, protocol: HTTP, hostname: "*.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  hostnames: [api.example.com, "*.example.com"]
  rules:
  - matches:
    - path: {type: Exact, value: /api/v1/tasks}
    - path: {type: RegularExpression, value: "/api/v[0-9]+/tasks/[0-9]+"}
      headers: [{name: x-tenant, type: RegularExpression, value: "t[0-9]+"}]
    backendRefs: [{name: svc, port: 80}]
  - matches:
    - path: {type: PathPrefix, value: /api}
      method: POST
      queryParams: [{name: debug, value: "true"}]
    backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  hostnames: [api.example.com]
  rules:
  - matches: [{method: {service: pkg.Tasks, method: "Get.*", type: RegularExpression}}]
    backendRefs: [{name: svc, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc-1, namespace: ns, labels: {kubernetes.io/service-name: svc}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [127.0.0.1]}]
"#;

struct Req {
    method: &'static [u8],
    host: &'static [u8],
    target: &'static [u8],
    headers: &'static [(&'static str, &'static [u8])],
}

impl RequestView for Req {
    fn method(&self) -> &[u8] {
        self.method
    }
    fn host(&self) -> &[u8] {
        self.host
    }
    fn target(&self) -> &[u8] {
        self.target
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

#[test]
fn lookup_allocates_nothing() {
    let build = Build::from_text(&[("routes.yaml", ROUTES)]).expect("routes compile");
    let table = &build.table;
    let mut scratch = table.scratch();
    let requests = [
        (
            80,
            Req {
                method: b"GET",
                host: b"API.example.com:80",
                target: b"/api/v1/tasks",
                headers: &[],
            },
        ),
        (
            80,
            Req {
                method: b"GET",
                host: b"api.example.com",
                target: b"/api/v2/tasks/42",
                headers: &[("x-tenant", b"t7")],
            },
        ),
        (
            80,
            Req {
                method: b"POST",
                host: b"x.example.com",
                target: b"/api/x?a=1&debug=true",
                headers: &[],
            },
        ),
        (
            80,
            Req {
                method: b"GET",
                host: b"other.org",
                target: b"/nothing",
                headers: &[],
            },
        ),
        (
            81,
            Req {
                method: b"GET",
                host: b"a.b.example.com",
                target: b"/api/v1/tasks",
                headers: &[],
            },
        ),
        (
            80,
            Req {
                method: b"POST",
                host: b"api.example.com",
                target: b"/pkg.Tasks/GetTask",
                headers: &[("content-type", b"application/grpc")],
            },
        ),
        (
            99,
            Req {
                method: b"GET",
                host: b"",
                target: b"/",
                headers: &[],
            },
        ),
    ];
    let mut matched = 0;
    // Warm up, then count.
    for (port, request) in &requests {
        let _ = table.lookup(*port, request, &mut scratch);
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..1000 {
        for (port, request) in &requests {
            if let Decision::Matched(_) = table.lookup(*port, request, &mut scratch) {
                matched += 1;
            }
        }
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(
        after - before,
        0,
        "lookups allocated {} times",
        after - before
    );
    assert_eq!(matched, 5000, "five of the seven requests match");
}
