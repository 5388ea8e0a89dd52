//! Route-lookup benchmark: does a lookup cost the same with 10 routes or
//! 10,000?
//!
//! For N in 10, 100, 1,000 and 10,000 a realistic route set is generated
//! directly as an [`ir::RouteSet`] (one listener on port 80 without
//! hostname; every route attached with hostname `*`): N HTTPRoutes with one
//! rule and one match each, mixing Exact (`/api/v1/svc{i}/items`, 50%),
//! PathPrefix (`/svc{i}/v2`, 35%) and RegularExpression
//! (`/api/v[0-9]+/svc{i}/items/[0-9]+`, 15%) paths, 10% of them with an
//! `x-tenant: t{i}` header condition, plus a catch-all `PathPrefix /`.
//!
//! Groups (each for every N):
//!
//! * `table_lookup/N`: [`Table::lookup`] over a fixed mix of four requests
//!   (an Exact in the middle of the set, a regex near its end, a prefix,
//!   and a miss that falls to the catch-all). One iteration is the whole
//!   mix, i.e. four lookups.
//! * `list_baseline/N`: the classic route list (Envoy's): one anchored
//!   `meta::Regex` per match plus its predicates, sorted by Gateway API
//!   precedence, tried one by one, first match wins. Same mix.
//! * `compile/N`: [`compile::compile`] of the route set.
//!
//! Table sizes (and a one-shot compile time) go to stderr and to a JSON
//! file read by `bench/route-lookup.sh`: `$ROUTE_BENCH_SIZES` if set, else
//! `<target>/criterion/table-sizes.json`.
#![allow(
    clippy::expect_used,
    reason = "a benchmark fixture that cannot be built is a bug worth a panic"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use route_compiler::compile::{self, Options};
use route_compiler::ir::{
    Attachment, Listener, Match, Origin, PathMatch, Predicate, RouteEntry, RouteSet, ValueMatch,
};
use route_compiler::precedence::Key;
use route_compiler::reference;
use route_compiler::route::{
    Backend, ObjectName, Route, RouteKind, Rule, Timeouts, UpstreamProtocol,
};
use route_compiler::table::{Decision, RequestView, Table};

/// The route counts measured.
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// Requests in the mix, i.e. lookups per iteration of `table_lookup` and
/// `list_baseline`.
const MIX_LEN: usize = 4;

/// The listener port.
const PORT: u16 = 80;

// === route set generator ===

/// The path type of generated route `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Regex,
}

/// Path types over a block of 20 routes: 10 Exact, 7 PathPrefix, 3 regex
/// (50/35/15%), interleaved so that even N = 10 has all three.
const KINDS: &[u8; 20] = b"EPEREPEPEREPEPEPEREP";

fn kind(i: usize) -> Kind {
    match KINDS[i % KINDS.len()] {
        b'E' => Kind::Exact,
        b'P' => Kind::Prefix,
        _ => Kind::Regex,
    }
}

/// Whether route `i` has an `x-tenant` header condition (10%, rotating
/// across path types from one block of 20 to the next).
fn has_header(i: usize) -> bool {
    (i + i / KINDS.len()) % 10 == 6
}

fn path_of(i: usize) -> PathMatch {
    match kind(i) {
        Kind::Exact => PathMatch::Exact(format!("/api/v1/svc{i}/items")),
        Kind::Prefix => PathMatch::Prefix(format!("/svc{i}/v2")),
        Kind::Regex => PathMatch::Regex(format!("/api/v[0-9]+/svc{i}/items/[0-9]+")),
    }
}

fn object(name: String) -> ObjectName {
    ObjectName {
        namespace: "default".to_string(),
        name,
    }
}

fn entry(name: String, service: String, path: PathMatch, headers: Vec<Predicate>) -> RouteEntry {
    let backend = Backend {
        service: object(service),
        port: 9000,
        weight: 1,
        protocol: UpstreamProtocol::Inherit,
        endpoints: vec![SocketAddr::from(([127, 0, 0, 1], 9000))],
        unresolved: None,
    };
    RouteEntry {
        route: Route {
            kind: RouteKind::Http,
            name: object(name),
            rules: vec![Rule {
                name: None,
                filters: vec![],
                backends: vec![backend],
                total_weight: 1,
                timeouts: Timeouts::default(),
            }],
        },
        matches: vec![vec![Match {
            path,
            method: None,
            headers,
            query: vec![],
        }]],
        created: None,
        attachments: vec![Attachment {
            listener: 0,
            hostnames: vec!["*".to_string()],
        }],
        origin: Origin::default(),
    }
}

fn route_name(i: usize) -> String {
    format!("route-{i}")
}

/// `n` generated routes plus the catch-all (which is route `n`).
fn route_set(n: usize) -> RouteSet {
    let mut routes: Vec<RouteEntry> = (0..n)
        .map(|i| {
            let headers = if has_header(i) {
                vec![Predicate {
                    name: "x-tenant".to_string(),
                    value: ValueMatch::Exact(format!("t{i}")),
                }]
            } else {
                vec![]
            };
            entry(route_name(i), format!("svc{i}"), path_of(i), headers)
        })
        .collect();
    routes.push(entry(
        "catch-all".to_string(),
        "default-backend".to_string(),
        PathMatch::Prefix(String::new()),
        vec![],
    ));
    RouteSet {
        listeners: vec![Listener {
            gateway: object("gw".to_string()),
            name: "http".to_string(),
            port: PORT,
            hostname: None,
            origin: Origin::default(),
            index: 0,
        }],
        routes,
    }
}

// === requests ===

/// A request with pre-built byte slices; `x-tenant` is its only header.
#[derive(Debug, Clone)]
struct Req {
    target: Vec<u8>,
    tenant: Option<Vec<u8>>,
    /// The route name that must win.
    expect: String,
}

impl RequestView for Req {
    fn method(&self) -> &[u8] {
        b"GET"
    }
    fn host(&self) -> &[u8] {
        b"shop.example.com"
    }
    fn target(&self) -> &[u8] {
        &self.target
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        match name {
            "x-tenant" => self.tenant.as_deref(),
            _ => None,
        }
    }
}

/// Route `i` of kind `kind` closest to `near`, preferring lower indexes on
/// ties.
fn pick(n: usize, kind_wanted: Kind, near: usize) -> usize {
    (0..n)
        .filter(|&i| kind(i) == kind_wanted)
        .min_by_key(|&i| i.abs_diff(near))
        .expect("every N has routes of every kind")
}

/// The mix: Exact in the middle, regex near the end, a prefix, a miss.
fn requests(n: usize) -> Vec<Req> {
    let tenant = |i: usize| Some(format!("t{i}").into_bytes());
    let exact = pick(n, Kind::Exact, n / 2);
    let regex = pick(n, Kind::Regex, n - 1);
    let prefix = pick(n, Kind::Prefix, n / 4);
    let mix = vec![
        Req {
            target: format!("/api/v1/svc{exact}/items").into_bytes(),
            tenant: tenant(exact),
            expect: route_name(exact),
        },
        Req {
            target: format!("/api/v3/svc{regex}/items/12345").into_bytes(),
            tenant: tenant(regex),
            expect: route_name(regex),
        },
        Req {
            target: format!("/svc{prefix}/v2/orders/42?page=2").into_bytes(),
            tenant: tenant(prefix),
            expect: route_name(prefix),
        },
        Req {
            target: b"/static/app.3f9c2b.js".to_vec(),
            tenant: None,
            expect: "catch-all".to_string(),
        },
    ];
    assert_eq!(mix.len(), MIX_LEN);
    mix
}

fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &target[target.len()..]),
    }
}

// === the classic route list ===

#[derive(Debug)]
enum ValueTest {
    Exact(Vec<u8>),
    Regex(Regex),
}

impl ValueTest {
    fn holds(&self, value: &[u8]) -> bool {
        match self {
            ValueTest::Exact(v) => value == v.as_slice(),
            ValueTest::Regex(re) => re.is_match(value),
        }
    }
}

/// One match of the list: a full-match regex and the other conditions.
#[derive(Debug)]
struct ListEntry {
    path: Regex,
    method: Option<Vec<u8>>,
    headers: Vec<(String, ValueTest)>,
    route: usize,
}

/// Every match in precedence order, tried one by one.
#[derive(Debug)]
struct RouteList {
    entries: Vec<ListEntry>,
}

fn full_match_regex(pattern: &str) -> Regex {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(&format!("^(?:{pattern})$"))
        .expect("validated patterns compile")
}

impl RouteList {
    fn new(set: &RouteSet) -> RouteList {
        let mut ids: Vec<(usize, usize, usize)> = Vec::new();
        for (r, route) in set.routes.iter().enumerate() {
            for (rule, matches) in route.matches.iter().enumerate() {
                for m in 0..matches.len() {
                    ids.push((r, rule, m));
                }
            }
        }
        ids.sort_by(|a, b| {
            Key::new(&set.routes[a.0], a.1, a.2).cmp(&Key::new(&set.routes[b.0], b.1, b.2))
        });
        let entries = ids
            .into_iter()
            .map(|(r, rule, m)| {
                let condition = &set.routes[r].matches[rule][m];
                assert!(condition.query.is_empty(), "generator makes no query match");
                ListEntry {
                    path: full_match_regex(&condition.path.to_pattern()),
                    method: condition.method.as_ref().map(|m| m.as_bytes().to_vec()),
                    headers: condition
                        .headers
                        .iter()
                        .map(|p| {
                            let test = match &p.value {
                                ValueMatch::Exact(v) => ValueTest::Exact(v.as_bytes().to_vec()),
                                ValueMatch::Regex(re) => ValueTest::Regex(full_match_regex(re)),
                            };
                            (p.name.clone(), test)
                        })
                        .collect(),
                    route: r,
                }
            })
            .collect();
        RouteList { entries }
    }

    fn lookup(&self, request: &impl RequestView) -> Option<usize> {
        let (path, _query) = split_target(request.target());
        self.entries
            .iter()
            .find(|e| {
                e.path.is_match(path)
                    && e.method.as_deref().is_none_or(|m| m == request.method())
                    && e.headers
                        .iter()
                        .all(|(name, test)| request.header(name).is_some_and(|v| test.holds(v)))
            })
            .map(|e| e.route)
    }
}

// === fixtures ===

struct Fixture {
    set: RouteSet,
    table: Table,
    list: RouteList,
    requests: Vec<Req>,
}

fn build_fixture(n: usize) -> Fixture {
    let set = route_set(n);
    let started = Instant::now();
    let (bytes, report) = compile::compile(&set, Options::default()).expect("route set compiles");
    let compile_time = started.elapsed();
    record(n, &report, compile_time);
    let table = Table::from_bytes(&bytes).expect("fresh table loads");
    let started = Instant::now();
    let list = RouteList::new(&set);
    eprintln!(
        "list_baseline/{n}: {} regexes built in {:.2?}",
        list.entries.len(),
        started.elapsed()
    );
    let fixture = Fixture {
        requests: requests(n),
        set,
        table,
        list,
    };
    check(n, &fixture);
    fixture
}

/// The table, the list and (for small N) the reference matcher agree with
/// the expected winner of every request.
fn check(n: usize, f: &Fixture) {
    let mut scratch = f.table.scratch();
    for request in &f.requests {
        let table_route = match f.table.lookup(PORT, request, &mut scratch) {
            Decision::Matched(m) => m.route.name.name.clone(),
            other => panic!("N={n}: table gives {other:?} for {request:?}"),
        };
        let list_route = f
            .list
            .lookup(request)
            .map(|r| f.set.routes[r].route.name.name.clone());
        assert_eq!(table_route, request.expect, "N={n}: table, {request:?}");
        assert_eq!(
            list_route.as_deref(),
            Some(request.expect.as_str()),
            "N={n}: list, {request:?}"
        );
        if n <= 100 {
            let (path, query) = split_target(&request.target);
            let owned = reference::Request {
                port: PORT,
                method: "GET".to_string(),
                host: String::from_utf8_lossy(request.host()).into_owned(),
                path: String::from_utf8_lossy(path).into_owned(),
                query: String::from_utf8_lossy(query).into_owned(),
                headers: request
                    .tenant
                    .iter()
                    .map(|t| {
                        (
                            "x-tenant".to_string(),
                            String::from_utf8_lossy(t).into_owned(),
                        )
                    })
                    .collect(),
            };
            let decided = reference::decide(&f.set, &owned)
                .map(|(r, _, _)| f.set.routes[r].route.name.name.as_str());
            assert_eq!(
                decided,
                Some(request.expect.as_str()),
                "N={n}: reference, {request:?}"
            );
        }
    }
}

fn fixture(n: usize) -> &'static Fixture {
    static FIXTURES: [OnceLock<Fixture>; SIZES.len()] = [const { OnceLock::new() }; SIZES.len()];
    let slot = SIZES
        .iter()
        .position(|&s| s == n)
        .expect("N is one of SIZES");
    FIXTURES[slot].get_or_init(|| build_fixture(n))
}

// === table sizes, for bench/route-lookup.sh ===

fn sizes_path() -> PathBuf {
    if let Some(path) = std::env::var_os("ROUTE_BENCH_SIZES") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion").join("table-sizes.json")
}

static SIZES_SEEN: Mutex<BTreeMap<usize, serde_json::Value>> = Mutex::new(BTreeMap::new());

/// Whether the table size for `n` was recorded by this run.
fn recorded(n: usize) -> bool {
    SIZES_SEEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&n)
}

/// Prints the table size for `n` (once) and rewrites the sizes file.
fn record(n: usize, report: &compile::Report, compile_time: Duration) {
    let mut seen = SIZES_SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.contains_key(&n) {
        return;
    }
    let dense = report.lazy.is_empty();
    eprintln!(
        "table/{n}: {} bytes ({:.2} MiB), {} automaton, one-shot compile {:.2?}",
        report.table_bytes,
        report.table_bytes as f64 / (1024.0 * 1024.0),
        if dense {
            "dense"
        } else {
            "LAZY (dense DFA over the limit)"
        },
        compile_time
    );
    seen.insert(
        n,
        serde_json::json!({
            "routes": n + 1,
            "table_bytes": report.table_bytes,
            "dense": dense,
            "compile_once_ns": compile_time.as_nanos() as u64,
            "requests_per_iteration": MIX_LEN,
        }),
    );
    let path = sizes_path();
    // Keep entries of earlier runs (e.g. with a filter) for the other N.
    let mut all: BTreeMap<String, serde_json::Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for (k, v) in seen.iter() {
        all.insert(k.to_string(), v.clone());
    }
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&all).unwrap_or_default()));
    if let Err(e) = written {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

// === benchmarks ===

fn table_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("table_lookup");
    for n in SIZES {
        // Fixtures are built on first use, so a filtered run builds only
        // what it measures.
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let f = fixture(n);
            let mut scratch = f.table.scratch();
            b.iter(|| {
                for request in &f.requests {
                    black_box(f.table.lookup(PORT, black_box(request), &mut scratch));
                }
            });
        });
    }
    group.finish();
}

fn list_baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("list_baseline");
    for n in SIZES {
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let f = fixture(n);
            b.iter(|| {
                for request in &f.requests {
                    black_box(f.list.lookup(black_box(request)));
                }
            });
        });
    }
    group.finish();
}

fn compile_set(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let set = route_set(n);
            // Records the size even when this group runs alone.
            if !recorded(n) {
                let started = Instant::now();
                let (_, report) =
                    compile::compile(&set, Options::default()).expect("route set compiles");
                record(n, &report, started.elapsed());
            }
            b.iter(|| compile::compile(black_box(&set), Options::default()));
        });
    }
    group.finish();
}

/// Runs every group (what `criterion_group!`/`criterion_main!` expand to,
/// without their undocumented `pub fn`).
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    table_lookup(&mut criterion);
    list_baseline(&mut criterion);
    compile_set(&mut criterion);
    criterion.final_summary();
}
