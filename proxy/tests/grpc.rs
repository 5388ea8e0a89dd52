//! End-to-end gRPC: tonic clients through the real `sluice` binary to tonic
//! servers (h2c backends), routed by GRPCRoutes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: panics are failures"
)]

mod h2_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use h2_support::grpc::{call_path, channel, client, runtime};
use h2_support::task::{CreateTaskRequest, GetTaskRequest, ListTasksRequest, Task};
use h2_support::{H2Client, Kind, Setup};
use serde_yaml::Value;
use support::{seed_dir, tally};
use tokio_stream::StreamExt;
use tonic::{Code, Request};

fn get(id: &str) -> GetTaskRequest {
    GetTaskRequest {
        id: id.into(),
        fail_with: 0,
        delay_ms: 0,
    }
}

// === the seed cases ===

#[test]
fn seed_14_grpc() {
    let file = "14-grpc.yaml";
    let cases: Value =
        serde_yaml::from_str(&std::fs::read_to_string(seed_dir().join("cases.yaml")).unwrap())
            .unwrap();
    let cases = cases["files"][file].as_sequence().unwrap().clone();
    let routes = std::fs::read_to_string(seed_dir().join(file)).unwrap();
    let s = Setup::start("grpc-seed", &routes, |_| Kind::Grpc, 2);
    let rt = runtime();
    for case in &cases {
        let method = case["grpc"].as_str().unwrap();
        let path: &'static str = Box::leak(format!("/{method}").into_boxed_str());
        let context = || format!("{case:?}\n--- sluice log:\n{}", s.proxy.log_text());
        let result = rt.block_on(async {
            let mut c = client(s.grpc_port);
            match method {
                "task.TaskService/CreateTask" => c
                    .create_task(CreateTaskRequest { title: "t".into() })
                    .await
                    .map(|r| r.into_inner().server),
                "task.TaskService/GetTask" => {
                    c.get_task(get("1")).await.map(|r| r.into_inner().server)
                }
                "task.TaskService/ListTasks" => {
                    let mut stream = c
                        .list_tasks(ListTasksRequest {
                            count: 2,
                            payload_size: 1,
                        })
                        .await?
                        .into_inner();
                    let mut server = String::new();
                    while let Some(task) = stream.next().await {
                        server = task?.server;
                    }
                    Ok(server)
                }
                _ => call_path(
                    channel(s.grpc_port, "grpc.test"),
                    path,
                    Request::new(get("1")),
                )
                .await
                .map(|r| r.into_inner().server),
            }
        });
        if let Some(backend) = case["backend"].as_str() {
            assert_eq!(result.as_deref().ok(), Some(backend), "{}", context());
        }
        if let Some(code) = case["grpc_status"].as_i64() {
            let status = result.expect_err("an error status");
            assert_eq!(i64::from(i32::from(status.code())), code, "{}", context());
        }
    }
}

// === precedence, headers, weights ===

const PRECEDENCE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: general, namespace: task-api}
spec:
  parentRefs: [{name: task-api-gateway, sectionName: grpc}]
  rules:
  - matches: [{method: {service: task.TaskService}}]
    backendRefs: [{name: svc, port: 50051}]
  - matches: [{method: {service: task.TaskService, method: GetTask}}]
    backendRefs: [{name: get, port: 50051}]
  - matches:
    - method: {service: task.TaskService, method: GetTask}
      headers: [{name: x-tenant, value: gold}]
    backendRefs: [{name: gold, port: 50051}]
  - matches:
    - method: {service: task.TaskService, method: GetTask}
      headers: [{name: x-tenant, type: RegularExpression, value: "silver-[0-9]+"}]
    backendRefs: [{name: silver, port: 50051}]
  - matches: [{method: {service: task.TaskService, method: CreateTask}}]
    backendRefs: [{name: heavy, port: 50051, weight: 3}, {name: light, port: 50051, weight: 1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: by-host, namespace: task-api}
spec:
  parentRefs: [{name: task-api-gateway, sectionName: grpc}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: task.TaskService}}]
    backendRefs: [{name: host, port: 50051}]
"#;

#[test]
fn grpc_route_precedence_and_header_matching() {
    let s = Setup::start("grpc-precedence", PRECEDENCE, |_| Kind::Grpc, 1);
    let rt = runtime();
    let server_of = |authority: &str, tenant: Option<&str>| {
        rt.block_on(async {
            let mut c = h2_support::task::task_service_client::TaskServiceClient::new(channel(
                s.grpc_port,
                authority,
            ));
            let mut req = Request::new(get("1"));
            if let Some(t) = tenant {
                req.metadata_mut().insert("x-tenant", t.parse().unwrap());
            }
            let task = c.get_task(req).await.unwrap().into_inner();
            if let Some(t) = tenant {
                // Request metadata reaches the backend.
                assert_eq!(task.title, t);
            }
            task.server
        })
    };
    // Method beats service; more header matches beat fewer.
    assert_eq!(server_of("grpc.test", None), "get");
    assert_eq!(server_of("grpc.test", Some("gold")), "gold");
    assert_eq!(server_of("grpc.test", Some("silver-42")), "silver");
    assert_eq!(server_of("grpc.test", Some("silver-x")), "get");
    assert_eq!(server_of("grpc.test", Some("Gold")), "get");
    // A longer matching hostname beats everything else.
    assert_eq!(server_of("grpc.example.com", Some("gold")), "host");
    // The service-only match takes the rest.
    let server = rt.block_on(async {
        let mut c = client(s.grpc_port);
        let mut stream = c
            .list_tasks(ListTasksRequest {
                count: 1,
                payload_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        stream.next().await.unwrap().unwrap().server
    });
    assert_eq!(server, "svc");
}

#[test]
fn grpc_weights_split_calls() {
    let s = Setup::start("grpc-weights", PRECEDENCE, |_| Kind::Grpc, 2);
    let rt = runtime();
    let servers: Vec<String> = rt.block_on(async {
        let mut c = client(s.grpc_port);
        let mut out = Vec::new();
        for _ in 0..400 {
            let r = c
                .create_task(CreateTaskRequest { title: "w".into() })
                .await
                .unwrap();
            assert_eq!(
                r.metadata().get("x-server").unwrap().to_str().unwrap(),
                r.get_ref().server
            );
            out.push(r.into_inner().server);
        }
        out
    });
    let counts = tally(servers);
    let heavy = *counts.get("heavy").unwrap_or(&0) as f64 / 400.0;
    assert!((heavy - 0.75).abs() < 0.1, "{counts:?}");
    assert_eq!(counts.len(), 2, "{counts:?}");
}

// === RPC kinds, trailers ===

const SINGLE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: single, namespace: task-api}
spec:
  parentRefs: [{name: task-api-gateway, sectionName: grpc}]
  rules:
  - matches: [{method: {service: task.TaskService}}]
    backendRefs: [{name: tasks, port: 50051}]
  - matches: [{method: {service: dead.Service}}]
    backendRefs: [{name: dead, port: 50051}]
  - matches: [{method: {service: empty.Service}}]
    backendRefs: [{name: tasks, port: 50051, weight: 0}]
  - matches: [{method: {service: missing.Service}}]
    backendRefs: [{name: missing, port: 50051}]
"#;

fn single(tag: &str) -> Setup {
    Setup::start(
        tag,
        SINGLE,
        |name| match name {
            "dead" => Kind::DeadGrpc,
            "missing" => Kind::Missing,
            _ => Kind::Grpc,
        },
        1,
    )
}

#[test]
fn grpc_unary_and_streaming_rpcs() {
    let s = single("grpc-kinds");
    let rt = runtime();
    rt.block_on(async {
        let mut c = client(s.grpc_port);
        // Unary.
        let task = c
            .create_task(CreateTaskRequest { title: "x".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((task.title.as_str(), task.server.as_str()), ("x", "tasks"));
        // Server streaming.
        let mut stream = c
            .list_tasks(ListTasksRequest {
                count: 50,
                payload_size: 1000,
            })
            .await
            .unwrap()
            .into_inner();
        let mut n = 0;
        while let Some(task) = stream.next().await {
            let task = task.unwrap();
            assert_eq!(task.id, n.to_string());
            assert_eq!(task.payload.len(), 1000);
            n += 1;
        }
        assert_eq!(n, 50);
        // Client streaming.
        let tasks = (0..20).map(|i| Task {
            id: i.to_string(),
            title: String::new(),
            payload: vec![1; 500],
            server: String::new(),
        });
        let summary = c
            .upload_tasks(tokio_stream::iter(tasks))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((summary.count, summary.bytes), (20, 10_000));
        assert_eq!(summary.server, "tasks");
        // Bidirectional: each answer arrives before the next request is sent.
        let (tx, rx) = tokio::sync::mpsc::channel::<Task>(1);
        let mut answers = c
            .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for i in 0..10 {
            tx.send(Task {
                id: i.to_string(),
                title: "ping".into(),
                payload: Vec::new(),
                server: String::new(),
            })
            .await
            .unwrap();
            let answer = tokio::time::timeout(Duration::from_secs(5), answers.next())
                .await
                .expect("answer before the stream ends")
                .unwrap()
                .unwrap();
            assert_eq!((answer.id, answer.server), (i.to_string(), "tasks".into()));
        }
        drop(tx);
        assert!(answers.next().await.is_none());
    });
}

#[test]
fn grpc_trailers_pass_through() {
    let s = single("grpc-trailers");
    let rt = runtime();
    let status = rt.block_on(async {
        let mut c = client(s.grpc_port);
        let mut req = get("1");
        req.fail_with = Code::NotFound as i32;
        c.get_task(req).await.unwrap_err()
    });
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "requested failure");
    assert_eq!(
        status
            .metadata()
            .get("x-trailer-server")
            .unwrap()
            .to_str()
            .unwrap(),
        "tasks"
    );
    // The same over a raw h2 client: grpc-status and grpc-message are in
    // the trailers of a successful call, after the DATA.
    let mut h2 = H2Client::connect_as(s.grpc_port, "grpc.test");
    let body = [0u8, 0, 0, 0, 3, 0x0a, 0x01, b'7'];
    let r = h2.request(
        "POST",
        "/task.TaskService/GetTask",
        &[("content-type", "application/grpc"), ("te", "trailers")],
        &body,
    );
    assert_eq!(r.status, 200);
    assert!(!r.body.is_empty());
    let trailers = r.trailers.expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
}

// === errors in gRPC form ===

/// An empty message, as a gRPC length-prefixed frame.
const EMPTY: [u8; 5] = [0, 0, 0, 0, 0];

/// Calls `path` with a raw h2 client and checks the trailers-only gRPC
/// form: HTTP 200, content-type application/grpc, grpc-status in the
/// HEADERS frame that ends the stream.
fn raw_grpc_status(s: &Setup, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    let mut h2 = H2Client::connect_as(s.grpc_port, "grpc.test");
    let mut all = vec![("content-type", "application/grpc"), ("te", "trailers")];
    all.extend_from_slice(headers);
    let r = h2.request("POST", path, &all, body);
    assert_eq!(r.status, 200, "{}", s.proxy.log_text());
    assert!(r.end_at_headers, "not trailers-only: {r:?}");
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    r.header("grpc-status").unwrap().to_string()
}

#[test]
fn grpc_errors_have_grpc_status() {
    let s = single("grpc-errors");
    // No route: UNIMPLEMENTED.
    assert_eq!(raw_grpc_status(&s, "/other.Service/Get", &[], &EMPTY), "12");
    // Nobody listening: UNAVAILABLE.
    assert_eq!(raw_grpc_status(&s, "/dead.Service/Get", &[], &EMPTY), "14");
    // Every weight zero (503): UNAVAILABLE.
    assert_eq!(raw_grpc_status(&s, "/empty.Service/Get", &[], &EMPTY), "14");
    // A backend that does not resolve (500): INTERNAL.
    assert_eq!(
        raw_grpc_status(&s, "/missing.Service/Get", &[], &EMPTY),
        "13"
    );

    let rt = runtime();
    rt.block_on(async {
        let ch = channel(s.grpc_port, "grpc.test");
        let code = |r: Result<tonic::Response<Task>, tonic::Status>| r.unwrap_err().code();
        assert_eq!(
            code(call_path(ch.clone(), "/other.Service/Get", Request::new(get("1"))).await),
            Code::Unimplemented
        );
        assert_eq!(
            code(call_path(ch.clone(), "/dead.Service/Get", Request::new(get("1"))).await),
            Code::Unavailable
        );
        let mut c = client(s.grpc_port);
        // The connection and backend still work afterwards.
        assert_eq!(
            c.get_task(get("2")).await.unwrap().into_inner().server,
            "tasks"
        );
    });
    // grpc-timeout shorter than the backend takes: DEADLINE_EXCEEDED, from
    // the proxy (the backend is still sleeping). Sent raw: tonic clients
    // enforce their own deadline too. The body is GetTaskRequest{delay_ms: 3000}.
    let started = std::time::Instant::now();
    let slow = [0u8, 0, 0, 0, 3, 0x18, 0xb8, 0x17];
    assert_eq!(
        raw_grpc_status(
            &s,
            "/task.TaskService/GetTask",
            &[("grpc-timeout", "300m")],
            &slow
        ),
        "4"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

// === 100 MB through the proxy, with bounded memory ===

/// Samples the proxy's RSS until `done`, returning the largest in KiB.
fn watch_rss(pid: u32, done: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut max = 0;
        while !done.load(Ordering::SeqCst) {
            max = max.max(h2_support::rss_kib(pid).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(20));
        }
        max
    })
}

const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn grpc_streams_100_mb_each_way_with_bounded_memory() {
    let s = single("grpc-100mb");
    let pid = s.pid();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch_rss(pid, done.clone());
    let rt = runtime();
    let received = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let mut c = client(s.grpc_port);
        // Download: 100 messages of 1 MiB, read slowly at first so that
        // the backend is faster than the client.
        let mut stream = c
            .list_tasks(ListTasksRequest {
                count: 100,
                payload_size: 1 << 20,
            })
            .await
            .unwrap()
            .into_inner();
        let mut n = 0u32;
        while let Some(task) = stream.next().await {
            let task = task.unwrap();
            received.fetch_add(task.payload.len() as u64, Ordering::SeqCst);
            if n < 20 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n += 1;
        }
        assert_eq!(n, 100);
        // Upload: 100 messages of 1 MiB.
        let tasks = (0..100).map(|i| Task {
            id: i.to_string(),
            title: String::new(),
            payload: vec![7; 1 << 20],
            server: String::new(),
        });
        let summary = c
            .upload_tasks(tokio_stream::iter(tasks))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((summary.count, summary.bytes), (100, 100 << 20));
    });
    done.store(true, Ordering::SeqCst);
    let max = watcher.join().unwrap();
    assert_eq!(received.load(Ordering::SeqCst), 100 << 20);
    eprintln!("proxy max RSS during 100 MB each way: {max} KiB");
    assert!(max > 0, "no RSS samples");
    assert!(
        max < RSS_LIMIT_KIB,
        "proxy RSS reached {max} KiB (limit {RSS_LIMIT_KIB})"
    );
}

#[test]
fn h2_streams_100_mb_to_http1_backend_with_bounded_memory() {
    // An h2 client uploading 100 MB to an HTTP/1.1 backend that reads it
    // all: the proxy translates without buffering the body.
    let s = Setup::start(
        "h2-100mb",
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: up, namespace: task-api}
spec:
  parentRefs: [{name: task-api-gateway, sectionName: http}]
  rules:
  - backendRefs: [{name: sink, port: 8000}]
"#,
        |_| Kind::Http1,
        1,
    );
    let pid = s.pid();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch_rss(pid, done.clone());
    let mut c = H2Client::connect(s.port);
    let status = c.with(|send, authority| async move {
        let req = http::Request::post(format!("http://{authority}/upload"))
            .header("content-length", (100u64 << 20).to_string())
            .body(())
            .unwrap();
        let mut send = send.ready().await.unwrap();
        let (resp, mut body) = send.send_request(req, false).unwrap();
        let chunk = bytes::Bytes::from(vec![b'z'; 1 << 16]);
        for i in 0..1600 {
            body.reserve_capacity(chunk.len());
            let mut sent = 0;
            while sent < chunk.len() {
                let cap = std::future::poll_fn(|cx| body.poll_capacity(cx))
                    .await
                    .unwrap()
                    .unwrap();
                let n = cap.min(chunk.len() - sent);
                body.send_data(
                    chunk.slice(sent..sent + n),
                    i == 1599 && sent + n == chunk.len(),
                )
                .unwrap();
                sent += n;
            }
        }
        let r = h2_support::read_response(resp.await.unwrap()).await;
        r.status
    });
    done.store(true, Ordering::SeqCst);
    let max = watcher.join().unwrap();
    assert_eq!(status, 200, "{}", s.proxy.log_text());
    let got = s.http["sink"].received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.len(), 100 << 20);
    eprintln!("proxy max RSS during 100 MB h2 → HTTP/1.1: {max} KiB");
    assert!(max < RSS_LIMIT_KIB, "proxy RSS reached {max} KiB");
}

#[test]
fn grpc_server_side_counts_calls() {
    // The backends named in a setup are the ones the calls reached.
    let s = single("grpc-count");
    let rt = runtime();
    rt.block_on(async {
        let mut c = client(s.grpc_port);
        for _ in 0..5 {
            c.get_task(get("1")).await.unwrap();
        }
    });
    assert_eq!(s.grpc["tasks"].calls(), 5);
}

// === gRPC status in metrics and the access log ===

#[test]
fn grpc_metrics_count_grpc_status_per_route() {
    let admin = support::free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let kinds = |name: &str| match name {
        "dead" => Kind::DeadGrpc,
        "missing" => Kind::Missing,
        _ => Kind::Grpc,
    };
    let s = Setup::start_with("grpc-metrics", SINGLE, kinds, 1, &["--admin", &admin_addr]);
    let rt = runtime();
    rt.block_on(async {
        let mut c = client(s.grpc_port);
        // OK twice, from the backend.
        c.get_task(get("1")).await.unwrap();
        c.get_task(get("2")).await.unwrap();
        // NOT_FOUND, from the backend.
        let mut req = get("3");
        req.fail_with = Code::NotFound as i32;
        assert_eq!(c.get_task(req).await.unwrap_err().code(), Code::NotFound);
        let ch = channel(s.grpc_port, "grpc.test");
        // The proxy's own answers: no route, no backend.
        let r = call_path(ch.clone(), "/other.Service/Get", Request::new(get("1"))).await;
        assert_eq!(r.unwrap_err().code(), Code::Unimplemented);
        let r = call_path(ch, "/dead.Service/Get", Request::new(get("1"))).await;
        assert_eq!(r.unwrap_err().code(), Code::Unavailable);
    });
    let series = |route: &str, code: u32| {
        format!("sluice_grpc_responses_total{{route=\"{route}\",grpc_status=\"{code}\"}} ")
    };
    let want = [
        (series("task-api/single", 0), "2"),
        (series("task-api/single", 5), "1"),
        (series("task-api/single", 14), "1"),
        (series("", 12), "1"),
    ];
    let start = std::time::Instant::now();
    let text = loop {
        let text = support::Client::new(admin)
            .request("GET", "/metrics", &[], b"")
            .text();
        if want
            .iter()
            .all(|(series, n)| text.contains(&format!("{series}{n}\n")))
        {
            break text;
        }
        assert!(
            start.elapsed() < support::WAIT,
            "want {want:?} in:\n{text}\n--- sluice log:\n{}",
            s.proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("# TYPE sluice_grpc_responses_total counter"));
    // The access log names the protocol and the gRPC status.
    let log = s.proxy.log_text();
    let access: Vec<&str> = log.lines().filter(|l| l.contains("access")).collect();
    assert!(
        access
            .iter()
            .any(|l| l.contains("HTTP/2") && l.contains("grpc_status") && l.contains("14")),
        "{log}"
    );
}
