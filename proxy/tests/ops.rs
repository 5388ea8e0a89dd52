//! Operations, against the real `sluice` binary: the admin listener
//! (`/metrics`, `/routes`, `/healthz`), reloads (SIGHUP, `--watch`, a broken
//! route set, under load), draining on SIGTERM, and a compiled table as
//! input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: panics are failures"
)]

#[path = "support/mod.rs"]
mod support;

mod ops_support;

#[path = "h2_support/frames.rs"]
#[allow(dead_code, reason = "the drain tests use a part of the frames")]
mod frames;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ops_support::{NS, Sluice, gateway, route, sample, slices, sum, write_atomic};
use support::{Backend, Client, WAIT, free_port, temp_dir};

/// Route inputs in a temp dir: `gateway.yaml`, `routes.yaml` (rewritten by
/// reload tests) and `slices.yaml` for backends `a` and `b`.
struct Files {
    dir: PathBuf,
    port: u16,
    a: Backend,
    b: Backend,
}

impl Files {
    fn new(tag: &str, backends: &[(&str, u32)]) -> Files {
        let dir = temp_dir(tag);
        let port = free_port();
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        std::fs::write(dir.join("gateway.yaml"), gateway(port)).unwrap();
        std::fs::write(dir.join("routes.yaml"), route(backends)).unwrap();
        std::fs::write(
            dir.join("slices.yaml"),
            slices(&[("a", a.port), ("b", b.port)]),
        )
        .unwrap();
        Files { dir, port, a, b }
    }

    fn paths(&self) -> Vec<PathBuf> {
        ["gateway.yaml", "routes.yaml", "slices.yaml"]
            .iter()
            .map(|f| self.dir.join(f))
            .collect()
    }

    fn set_routes(&self, text: &str) {
        write_atomic(&self.dir.join("routes.yaml"), text);
    }

    fn start(&self, workers: usize, extra: &[&str]) -> Sluice {
        Sluice::start(&self.paths(), self.port, workers, extra)
    }
}

/// The backend that answered `GET path` on a fresh connection.
fn backend_of(port: u16, path: &str) -> Option<String> {
    let r = Client::new(port).request("GET", path, &[], b"");
    if r.status == 200 { r.backend() } else { None }
}

/// Waits until requests go to `backend`.
fn wait_routing(sluice: &Sluice, backend: &str) {
    let start = Instant::now();
    while backend_of(sluice.port, "/").as_deref() != Some(backend) {
        assert!(
            start.elapsed() < WAIT,
            "requests never went to {backend}:\n{}",
            sluice.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn requests_total(metrics: &str, labels: &[&str]) -> f64 {
    sum(metrics, "sluice_requests_total", labels)
}

#[test]
fn metrics_count_requests_per_backend_across_workers() {
    let files = Files::new("metrics", &[("a", 1), ("b", 1)]);
    let sluice = files.start(2, &[]);
    let n = 60;
    // A fresh connection per request, so the kernel spreads them over both
    // workers.
    for _ in 0..n {
        let r = Client::new(files.port).request("GET", "/x", &[("Connection", "close")], b"");
        assert_eq!(r.status, 200);
    }
    let r = Client::new(files.port).request("GET", "/dead", &[], b"");
    assert_eq!(r.status, 502, "{}\n{}", r.text(), sluice.log_text());

    let text = sluice.wait_metrics("every request", |t| {
        requests_total(t, &["route=\"ops/app\""]) >= f64::from(n + 1)
    });
    let (got_a, got_b) = (files.a.received().len(), files.b.received().len());
    assert_eq!(got_a + got_b, n as usize);
    assert!(
        got_a > 0 && got_b > 0,
        "weights 1:1 but a={got_a} b={got_b}"
    );
    let labels = |backend: &str| {
        format!(
            "sluice_requests_total{{listener=\"http\",route=\"{NS}/app\",rule=\"1\",backend=\"{NS}/{backend}:80\",status=\"200\"}}"
        )
    };
    assert_eq!(sample(&text, &labels("a")), got_a as f64, "{text}");
    assert_eq!(sample(&text, &labels("b")), got_b as f64, "{text}");
    assert_eq!(
        requests_total(&text, &["backend=\"ops/dead:80\"", "status=\"502\""]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sluice_upstream_connect_errors_total{backend=\"ops/dead:80\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sluice_request_duration_seconds_count{listener=\"http\",route=\"ops/app\"}"
        ),
        f64::from(n + 1),
        "{text}"
    );
    for family in [
        "# TYPE sluice_request_duration_seconds histogram",
        "# TYPE sluice_mirror_dropped_total counter",
        "# TYPE sluice_active_connections gauge",
        "sluice_reloads_total{result=\"ok\"} 0",
        "sluice_route_table_generation 0",
    ] {
        assert!(text.contains(family), "no {family:?} in:\n{text}");
    }

    // An open connection shows as active.
    let mut open = Client::new(files.port);
    assert_eq!(open.request("GET", "/", &[], b"").status, 200);
    sluice.wait_metrics("an active connection", |t| {
        sample(t, "sluice_active_connections") >= 1.0
    });
}

#[test]
fn admin_serves_routes_and_healthz() {
    let files = Files::new("admin", &[("a", 90), ("b", 10)]);
    let sluice = files.start(1, &[]);
    let (status, body) = sluice.admin_get("/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));

    let (status, body) = sluice.admin_get("/routes");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["generation"], 0);
    assert_eq!(doc["listeners"][0]["name"], "http");
    assert_eq!(doc["listeners"][0]["port"], files.port);
    let app = &doc["routes"][0];
    assert_eq!(
        (&app["kind"], &app["namespace"], &app["name"]),
        (
            &serde_json::json!("HTTPRoute"),
            &serde_json::json!(NS),
            &serde_json::json!("app")
        )
    );
    let backends = &app["rules"][1]["backends"];
    assert_eq!(backends[0]["name"], "a");
    assert_eq!(backends[0]["weight"], 90);
    assert_eq!(backends[1]["name"], "b");
    assert_eq!(backends[1]["weight"], 10);
    assert_eq!(
        backends[0]["endpoints"][0],
        format!("127.0.0.1:{}", files.a.port)
    );

    assert_eq!(sluice.admin_get("/nope").0, 404);
    assert_eq!(
        ops_support::admin_request(sluice.admin, "POST", "/healthz").0,
        405
    );
}

#[test]
fn sighup_switches_routing() {
    let files = Files::new("sighup", &[("a", 1)]);
    let sluice = files.start(2, &["--access-log"]);
    assert_eq!(backend_of(files.port, "/").as_deref(), Some("a"));
    files.set_routes(&route(&[("b", 1)]));
    sluice.signal("HUP");
    wait_routing(&sluice, "b");
    let text = sluice.wait_metrics("the reload", |t| {
        sample(t, "sluice_reloads_total{result=\"ok\"}") == 1.0
    });
    assert_eq!(sample(&text, "sluice_route_table_generation"), 1.0);
    let (_, routes) = sluice.admin_get("/routes");
    assert!(routes.contains("\"generation\": 1"), "{routes}");
    assert!(sluice.log_text().contains("route table reloaded"));
    assert!(sluice.log_text().contains("access"), "no access log line");
}

#[test]
fn broken_reload_keeps_old_routing() {
    let files = Files::new("broken", &[("a", 1)]);
    let sluice = files.start(1, &[]);
    assert_eq!(backend_of(files.port, "/").as_deref(), Some("a"));
    files.set_routes("---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: app\nspec: [\n");
    sluice.signal("HUP");
    let text = sluice.wait_metrics("the failed reload", |t| {
        sample(t, "sluice_reloads_total{result=\"error\"}") == 1.0
    });
    assert_eq!(sample(&text, "sluice_reloads_total{result=\"ok\"}"), 0.0);
    assert_eq!(sample(&text, "sluice_route_table_generation"), 0.0);
    for _ in 0..5 {
        assert_eq!(backend_of(files.port, "/").as_deref(), Some("a"));
    }
    let log = sluice.log_text();
    assert!(log.contains("reload failed"), "{log}");
    assert!(
        log.contains("routes.yaml"),
        "the diagnostic names the file:\n{log}"
    );

    // Fixed again: the next reload works.
    files.set_routes(&route(&[("b", 1)]));
    sluice.signal("HUP");
    wait_routing(&sluice, "b");
}

#[test]
fn watch_picks_up_a_change() {
    let files = Files::new("watch", &[("a", 1)]);
    let sluice = files.start(1, &["--watch"]);
    assert_eq!(backend_of(files.port, "/").as_deref(), Some("a"));
    files.set_routes(&route(&[("b", 1)]));
    wait_routing(&sluice, "b");
    sluice.wait_metrics("the reload", |t| {
        sample(t, "sluice_reloads_total{result=\"ok\"}") == 1.0
    });
}

#[test]
fn reload_under_load_has_no_failed_requests() {
    let files = Files::new("load", &[("a", 1)]);
    let sluice = files.start(2, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let port = files.port;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = Client::new(port);
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = client.request("GET", "/load", &[], b"");
                    seen.push((r.status, r.backend()));
                }
                (seen, client.connections)
            })
        })
        .collect();
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(150));
        let backends: &[(&str, u32)] = if i % 2 == 0 {
            &[("b", 1)]
        } else {
            &[("a", 1), ("b", 1)]
        };
        files.set_routes(&route(backends));
        sluice.signal("HUP");
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut backends = BTreeSet::new();
    for client in clients {
        let (seen, connections) = client.join().unwrap();
        assert_eq!(connections, 1, "a keep-alive connection was closed");
        for (status, backend) in seen {
            assert_eq!(status, 200, "{}", sluice.log_text());
            let backend = backend.unwrap();
            assert!(backend == "a" || backend == "b", "{backend}");
            backends.insert(backend);
            total += 1;
        }
    }
    assert!(total > 100, "only {total} requests under load");
    assert_eq!(backends.len(), 2, "{backends:?}");
    sluice.wait_metrics("8 reloads", |t| {
        sample(t, "sluice_reloads_total{result=\"ok\"}") == 8.0
    });
}

/// Waits until `backend` has received a request for `target`, then sends
/// SIGTERM; when it was sent.
fn terminate_once_arrived(sluice: &Sluice, backend: &Backend, target: &str) -> Instant {
    let start = Instant::now();
    while !backend.received().iter().any(|r| r.target == target) {
        assert!(start.elapsed() < WAIT, "{target} never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    let signalled = Instant::now();
    sluice.signal("TERM");
    signalled
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    let files = Files::new("drain", &[("a", 1)]);
    let mut sluice = files.start(2, &["--drain-timeout", "5"]);
    // An idle keep-alive connection: closed by the drain.
    let mut idle = Client::new(files.port);
    assert_eq!(idle.request("GET", "/", &[], b"").status, 200);
    // A slow request with a second one pipelined behind it.
    let port = files.port;
    let slow = std::thread::spawn(move || {
        let mut client = Client::new(port);
        client.send(
            b"GET /slow HTTP/1.1\r\nHost: x\r\nx-test-delay-ms: 1500\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let first = client.read_response(false);
        let second = client.read_response(false);
        (first, second, client.is_closed_by_server())
    });
    let signalled = terminate_once_arrived(&sluice, &files.a, "/slow");

    // Health turns 503 and the listeners close while the request runs.
    let start = Instant::now();
    while sluice.admin_get("/healthz").0 != 503 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "healthz never said draining"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", files.port)).is_err(),
        "still accepting while draining"
    );
    assert!(
        idle.is_closed_by_server(),
        "the idle connection stayed open"
    );

    let (first, second, closed) = slow.join().unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.backend().as_deref(), Some("a"));
    assert_eq!(second.status, 200);
    assert_eq!(second.header("connection"), Some("close"));
    assert!(closed);

    sluice.wait_clean_exit(Duration::from_secs(5));
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert!(sluice.log_text().contains("drained"));
}

#[test]
fn sigterm_closes_a_silent_connection_at_once() {
    let files = Files::new("drain-silent", &[("a", 1)]);
    let mut sluice = files.start(1, &["--drain-timeout", "10"]);
    // Connected, but not a byte sent: the proxy waits for the first bytes
    // to tell HTTP/1.1 from HTTP/2.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", files.port)).unwrap();
    sluice.wait_metrics("the silent connection", |t| {
        sample(t, "sluice_active_connections") >= 1.0
    });
    let signalled = Instant::now();
    sluice.signal("TERM");
    sluice.wait_clean_exit(Duration::from_secs(9));
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "the silent connection held the drain for {:?}",
        signalled.elapsed()
    );
    silent
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut silent, &mut byte).unwrap_or(0), 0);
}

#[test]
fn sigterm_lets_an_h2_stream_finish_after_goaway() {
    use frames::{ACK, DATA, END_STREAM, GOAWAY, HEADERS, NO_ERROR, PING, Raw, Received, SETTINGS};
    let files = Files::new("drain-h2", &[("a", 1)]);
    let mut sluice = files.start(1, &["--drain-timeout", "10"]);
    let mut raw = Raw::connect(files.port);
    let mut fields = frames::get("/slow");
    fields.push(("x-test-delay-ms", "1500"));
    raw.send(&frames::headers(1, &fields, true));
    let signalled = terminate_once_arrived(&sluice, &files.a, "/slow");

    // GOAWAY(NO_ERROR) comes at once; the stream still gets its whole
    // response afterwards.
    let (mut goaway, mut headers, mut body, mut ended) = (None, false, Vec::new(), false);
    let mut goaway_first = false;
    while !ended {
        match raw.read_frame(Duration::from_secs(5)) {
            Received::Frame(GOAWAY, _, 0, p) if p.len() >= 8 => {
                goaway = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
                goaway_first |= !headers;
            }
            Received::Frame(HEADERS, flags, 1, _) => {
                headers = true;
                ended = flags & END_STREAM != 0;
            }
            Received::Frame(DATA, flags, 1, p) => {
                body.extend_from_slice(&p);
                ended = flags & END_STREAM != 0;
            }
            Received::Frame(PING, flags, 0, p) if flags & ACK == 0 => {
                raw.send(&frames::frame(PING, ACK, 0, &p));
            }
            Received::Frame(SETTINGS, flags, 0, _) if flags & ACK == 0 => {
                raw.send(&frames::settings_ack());
            }
            Received::Frame(..) => {}
            other => panic!("{other:?} before the stream ended:\n{}", sluice.log_text()),
        }
    }
    assert_eq!(goaway, Some(NO_ERROR), "{}", sluice.log_text());
    assert!(goaway_first, "GOAWAY came only after the response");
    assert!(headers);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("backend: a"), "{body}");

    sluice.wait_clean_exit(Duration::from_secs(9));
    assert!(signalled.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_compiled_table_is_an_input() {
    let files = Files::new("table", &[("a", 1)]);
    let table = files.dir.join("routes.tbl");
    let compile = |files: &Files| {
        let build =
            route_compiler::Build::from_paths(&files.paths(), route_compiler::Options::default())
                .unwrap_or_else(|d| panic!("{d:?}"));
        std::fs::write(table.with_extension("tmp"), &build.bytes).unwrap();
        std::fs::rename(table.with_extension("tmp"), &table).unwrap();
    };
    compile(&files);
    let sluice = Sluice::start(std::slice::from_ref(&table), files.port, 1, &[]);
    assert_eq!(backend_of(files.port, "/").as_deref(), Some("a"));
    // A table reloads like route files.
    files.set_routes(&route(&[("b", 1)]));
    compile(&files);
    sluice.signal("HUP");
    wait_routing(&sluice, "b");
    // A table that does not load is reported; the old one keeps serving.
    std::fs::write(&table, b"SLUICERT but not a table").unwrap();
    sluice.signal("HUP");
    sluice.wait_metrics("the failed reload", |t| {
        sample(t, "sluice_reloads_total{result=\"error\"}") == 1.0
    });
    assert_eq!(backend_of(files.port, "/").as_deref(), Some("b"));
}
