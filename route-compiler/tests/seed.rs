//! The acceptance fixtures (`shared/examples/seed/cases.yaml`), decided by
//! the real `routec` binary: every request case through `routec explain`,
//! every lint through `routec check`.
//!
//! The proxy's end-to-end tests run the same cases through real traffic;
//! this test pins what the route table decides.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failure with its message"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn seed_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SLUICE_SEED_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples/seed")
}

fn routec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_routec"))
}

/// Every backend name a route file mentions (`name:` under backendRefs or
/// backendRef), so each gets an EndpointSlice as cases.yaml asks.
fn backend_names(route_file: &str) -> Vec<String> {
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(route_file)
        .map(|d| serde::Deserialize::deserialize(d).expect("seed file is YAML"))
        .collect();
    let mut names = Vec::new();
    fn walk(v: &serde_yaml::Value, in_backend: bool, names: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m {
                    let key = k.as_str().unwrap_or("");
                    if let (true, "name", Some(name)) = (in_backend, key, v.as_str()) {
                        names.push(name.to_string());
                    }
                    walk(v, key == "backendRefs" || key == "backendRef", names);
                }
            }
            serde_yaml::Value::Sequence(s) => {
                for item in s {
                    walk(item, in_backend, names);
                }
            }
            _ => {}
        }
    }
    for doc in &docs {
        walk(doc, false, &mut names);
    }
    names.sort();
    names.dedup();
    names
}

fn endpoint_slices(names: &[String]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-x\n  namespace: task-api\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{port: {}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n",
                20000 + i
            )
        })
        .collect()
}

struct Fixture {
    _dir: tempdir::TempDir,
    files: Vec<PathBuf>,
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "routec-seed-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn fixture(seed: &Path, route_file: &str) -> Fixture {
    let text = std::fs::read_to_string(seed.join(route_file)).expect("read seed route file");
    let dir = tempdir::TempDir::new(route_file);
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(&endpoints, endpoint_slices(&backend_names(&text))).expect("write endpoints");
    Fixture {
        files: vec![seed.join("gateway.yaml"), seed.join(route_file), endpoints],
        _dir: dir,
    }
}

fn explain(
    files: &[PathBuf],
    request: &str,
    headers: &BTreeMap<String, String>,
    grpc: bool,
) -> (Value, bool) {
    let mut cmd = routec();
    cmd.arg("explain").args(files).arg(request);
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    if grpc {
        cmd.arg("--grpc");
    }
    let out = cmd.output().expect("run routec explain");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "explain printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let code = out.status.code();
    assert!(matches!(code, Some(0 | 1)), "explain failed: {json}");
    (json, code == Some(0))
}

#[test]
fn every_request_case_is_decided_as_cases_yaml_says() {
    let seed = seed_dir();
    let cases_text = match std::fs::read_to_string(seed.join("cases.yaml")) {
        Ok(text) => text,
        Err(e) => panic!("cannot read {}: {e} (set SLUICE_SEED_DIR)", seed.display()),
    };
    let cases: Value = serde_yaml::from_str(&cases_text).expect("cases.yaml");
    let files = cases["files"].as_object().expect("files");
    let mut checked = 0;
    for (route_file, list) in files {
        let fixture = fixture(&seed, route_file);
        for case in list.as_array().expect("case list") {
            let headers: BTreeMap<String, String> = case["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let (request, grpc) = match (case["request"].as_str(), case["grpc"].as_str()) {
                (Some(r), _) => {
                    let (method, target) = r.split_once(' ').expect("METHOD /path");
                    let port = case["port"].as_u64().unwrap_or(80);
                    (
                        format!("{method} http://task-api.example:{port}{target}"),
                        false,
                    )
                }
                (None, Some(call)) => {
                    let port = case["port"].as_u64().unwrap_or(50051);
                    (format!("POST http://task-api.example:{port}/{call}"), true)
                }
                _ => panic!("case without request: {case}"),
            };
            let (json, matched) = explain(&fixture.files, &request, &headers, grpc);
            let context = format!("{route_file}: {case} -> {json:#}");
            if let Some(backend) = case["backend"].as_str() {
                assert!(matched, "{context}");
                assert_eq!(json["status"], Value::Null, "{context}");
                let backends = json["backends"].as_array().expect("backends");
                assert_eq!(backends.len(), 1, "{context}");
                assert_eq!(backends[0]["name"], backend, "{context}");
            }
            if let Some(status) = case["status"].as_u64() {
                assert!(!matched, "{context}");
                assert_eq!(json["status"], status, "{context}");
            }
            if let Some(status) = case["grpc_status"].as_u64() {
                assert_eq!(json["grpc_status"], status, "{context}");
            }
            if let Some(split) = case["split"].as_object() {
                let backends = json["backends"].as_array().expect("backends");
                let total: f64 = backends
                    .iter()
                    .map(|b| b["weight"].as_f64().unwrap_or(0.0))
                    .sum();
                for (name, share) in split {
                    let weight = backends
                        .iter()
                        .find(|b| b["name"] == name.as_str())
                        .and_then(|b| b["weight"].as_f64())
                        .unwrap_or_else(|| panic!("no backend {name}: {context}"));
                    assert!(
                        (weight / total - share.as_f64().unwrap_or(0.0)).abs() < 1e-9,
                        "{context}"
                    );
                }
            }
            if let Some(shadow) = case["mirrored_to"].as_str() {
                let mirrors: Vec<&Value> = json["filters"]
                    .as_array()
                    .expect("filters")
                    .iter()
                    .filter(|f| f["type"] == "RequestMirror")
                    .collect();
                assert_eq!(mirrors.len(), 1, "{context}");
                assert_eq!(
                    mirrors[0]["requestMirror"]["backendRef"]["name"], shadow,
                    "{context}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} cases checked");
}

#[test]
fn every_lint_case_is_printed_with_file_and_line() {
    let seed = seed_dir();
    let cases: Value = serde_yaml::from_str(
        &std::fs::read_to_string(seed.join("cases.yaml")).expect("cases.yaml"),
    )
    .expect("cases");
    for lint in cases["lints"].as_array().expect("lints") {
        let file = lint["file"].as_str().expect("file");
        for with_gateway in [true, false] {
            let mut cmd = routec();
            cmd.arg("check");
            if with_gateway {
                cmd.arg(seed.join("gateway.yaml"));
            }
            let out = cmd.arg(seed.join(file)).output().expect("run routec check");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "warnings only, exit 0: {stdout}"
            );
            let lines: Vec<u64> = lint["line"]
                .as_array()
                .expect("line")
                .iter()
                .filter_map(Value::as_u64)
                .collect();
            let found = stdout.lines().any(|l| {
                let Some((location, message)) = l.split_once(": warning") else {
                    return false;
                };
                let mut parts = location.rsplitn(3, ':');
                let (_column, line, path) = (parts.next(), parts.next(), parts.next());
                path.is_some_and(|p| p.ends_with(file))
                    && line
                        .and_then(|n| n.parse::<u64>().ok())
                        .is_some_and(|n| lines.contains(&n))
                    && lint["must_mention"]
                        .as_array()
                        .expect("must_mention")
                        .iter()
                        .all(|group| {
                            group
                                .as_array()
                                .expect("group")
                                .iter()
                                .any(|word| message.contains(word.as_str().unwrap_or("\u{0}")))
                        })
            });
            assert!(
                found,
                "{file} (gateway: {with_gateway}): no warning at {lines:?} mentioning {}:\n{stdout}",
                lint["must_mention"]
            );
        }
    }
}

#[test]
fn a_compiled_table_explains_the_same_as_the_yaml() {
    let seed = seed_dir();
    let fixture = fixture(&seed, "12-ordered.yaml");
    let table = fixture._dir.path().join("routes.tbl");
    let status = routec()
        .arg("compile")
        .args(&fixture.files)
        .arg("-o")
        .arg(&table)
        .status()
        .expect("compile");
    assert!(status.success());
    for path in [
        "/api/v1/tasks/urgent",
        "/api/v1/tasks/123",
        "/api/v1/tasks/new",
        "/health",
    ] {
        let request = format!("GET http://h{path}");
        let from_yaml = explain(&fixture.files, &request, &BTreeMap::new(), false);
        let from_table = explain(
            std::slice::from_ref(&table),
            &request,
            &BTreeMap::new(),
            false,
        );
        assert_eq!(from_yaml, from_table, "{path}");
    }
}

#[test]
fn a_corrupt_table_is_a_clear_error() {
    let dir = tempdir::TempDir::new("corrupt");
    let seed = seed_dir();
    let table = dir.path().join("routes.tbl");
    assert!(
        routec()
            .arg("compile")
            .arg(seed.join("gateway.yaml"))
            .arg(seed.join("01-exact.yaml"))
            .arg("-o")
            .arg(&table)
            .status()
            .expect("compile")
            .success()
    );
    let mut bytes = std::fs::read(&table).expect("read table");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&table, &bytes).expect("write");
    let out = routec()
        .arg("explain")
        .arg(&table)
        .arg("GET http://h/")
        .output()
        .expect("explain");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corrupt") && stderr.contains("recompile"),
        "{stderr}"
    );
}
