//! Metrics: recorded by each worker on its own, aggregated when scraped.
//!
//! # Recording (the request path)
//!
//! Each worker owns one [`WorkerMetrics`]: plain `Cell`/`RefCell` counters
//! keyed by small integer label ids, so recording a request is a few hash
//! lookups in memory no other core touches — no lock, no atomic. The worker
//! installs it as its thread's current metrics ([`install`]), which is how
//! [`crate::phase::logging`] reaches it ([`record`]) without a handle. Other
//! request-path code that has the [`crate::runtime::Worker`] uses
//! `worker.metrics` directly, e.g. the mirror's drop counter:
//!
//! ```ignore
//! worker.metrics.mirror_dropped(); // one mirror request dropped (over its bound)
//! ```
//!
//! # Publishing and scraping
//!
//! Every [`DEFAULT_PUBLISH_INTERVAL`] (and when it stops) a worker whose
//! numbers changed copies them into its [`Slot`], an `ArcSwap` that only
//! that worker stores into. The admin thread loads every slot and adds them
//! up ([`Registry::encode`]), so a scrape sees each worker's numbers as of at
//! most one interval ago. Label ids are per worker; the published copy
//! carries the worker's id → name list.
//!
//! # Extending: [`Source`]
//!
//! Another module (the eBPF loader) appends its own families at scrape time
//! by registering a [`Source`] once with [`register_source`]; each scrape
//! calls [`Source::collect`] with a [`Families`] to add counters and gauges
//! to.
//!
//! # Families
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `sluice_requests_total` | counter | `listener`, `route`, `rule`, `backend`, `status` |
//! | `sluice_request_duration_seconds` | histogram | `listener`, `route` |
//! | `sluice_grpc_responses_total` | counter | `route`, `grpc_status` |
//! | `sluice_upstream_connect_errors_total` | counter | `backend` |
//! | `sluice_mirror_dropped_total` | counter | |
//! | `sluice_active_connections` | gauge | |
//! | `sluice_reloads_total` | counter | `result` (`ok`, `error`) |
//! | `sluice_route_table_generation` | gauge | |
//!
//! Label values: `listener` is the Gateway listener's name, or `:PORT` when
//! no route matched; `route` is `namespace/name` of the route (empty when
//! none matched); `rule` is the 0-based rule index (empty when none
//! matched); `backend` is `namespace/name:port` of the backendRef the
//! request went to (empty when the proxy answered by itself); `status` is
//! the status sent to the client (`0` when the client went away first);
//! `grpc_status` is the gRPC status code of a gRPC answer (the backend's
//! `grpc-status`, or the proxy's own), counted only for gRPC answers.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use route_compiler::route::{Backend, ObjectName};

/// How often a worker publishes its numbers for scrapes.
pub const DEFAULT_PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// Upper bounds (seconds) of the request duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `Content-Type` of [`Registry::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// No label (an unmatched route or rule, no backend).
const NONE: u32 = u32::MAX;

// === impl Histogram ===

/// A latency histogram: per-bucket (not cumulative) counts, the last one
/// for observations above every bound.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let i = DURATION_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum += seconds;
    }

    fn add(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
    }
}

// === impl WorkerMetrics ===

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey {
    listener: u32,
    route: u32,
    rule: u32,
    backend: u32,
    status: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RouteKey {
    listener: u32,
    route: u32,
}

/// What one finished request reports to [`record`].
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The listener's name, when a route matched.
    pub listener: Option<&'a str>,
    /// The port the request came in on.
    pub port: u16,
    /// The matched route.
    pub route: Option<&'a ObjectName>,
    /// The matched rule's index.
    pub rule: Option<usize>,
    /// The backendRef the request went to.
    pub backend: Option<&'a Backend>,
    /// The status sent (0 when none was).
    pub status: u16,
    /// The gRPC status of a gRPC answer.
    pub grpc_status: Option<u32>,
    /// From head read to the end of the response.
    pub duration: Duration,
    /// The backend could not be connected to.
    pub connect_error: bool,
}

/// The worker-local maps: keyed by the proxy's own ids, so a fast hasher.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Most entries a [`Local`] label memo holds before it starts over.
const MEMO_LIMIT: usize = 4096;

#[derive(Debug, Default)]
struct Local {
    ids: HashMap<Box<str>, u32>,
    names: Arc<Vec<Arc<str>>>,
    requests: HashMap<SeriesKey, u64>,
    durations: HashMap<RouteKey, Histogram>,
    connect_errors: HashMap<u32, u64>,
    grpc: HashMap<(u32, u32), u64>,
    scratch: String,
    /// Label ids by the address of the table object they name (listener
    /// name, route, backend): a hit is checked against the label's text
    /// (an address can be reused by the next table after a reload), so the
    /// label is not formatted and hashed for every request.
    memo: HashMap<(u8, usize), u32>,
}

/// The parts a label is the concatenation of.
fn label_is(label: &str, parts: &[&str]) -> bool {
    let mut rest = label.as_bytes();
    for part in parts {
        match rest.strip_prefix(part.as_bytes()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

impl Local {
    /// The id of the label made of `parts`, for the table object at
    /// `addr` of kind `kind`.
    fn intern_parts(&mut self, kind: u8, addr: usize, parts: &[&str]) -> u32 {
        if let Some(&id) = self.memo.get(&(kind, addr))
            && self
                .names
                .get(id as usize)
                .is_some_and(|label| label_is(label, parts))
        {
            return id;
        }
        let id = self.intern(|s| parts.iter().for_each(|p| s.push_str(p)));
        if self.memo.len() >= MEMO_LIMIT {
            self.memo.clear();
        }
        self.memo.insert((kind, addr), id);
        id
    }

    /// The id of the label value in `self.scratch`.
    fn intern_scratch(&mut self) -> u32 {
        if let Some(&id) = self.ids.get(self.scratch.as_str()) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(NONE - 1);
        self.ids.insert(self.scratch.as_str().into(), id);
        Arc::make_mut(&mut self.names).push(self.scratch.as_str().into());
        id
    }

    fn intern(&mut self, write: impl FnOnce(&mut String)) -> u32 {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        write(&mut scratch);
        self.scratch = scratch;
        self.intern_scratch()
    }
}

/// One worker's metrics; see the [module docs](self).
#[derive(Debug)]
pub struct WorkerMetrics {
    local: RefCell<Local>,
    active: Cell<u64>,
    mirror_dropped: Cell<u64>,
    dirty: Cell<bool>,
    slot: Arc<Slot>,
}

impl WorkerMetrics {
    /// Metrics that publish into `slot`.
    pub fn new(slot: Arc<Slot>) -> WorkerMetrics {
        WorkerMetrics {
            local: RefCell::default(),
            active: Cell::new(0),
            mirror_dropped: Cell::new(0),
            dirty: Cell::new(false),
            slot,
        }
    }

    /// Counts one finished request.
    pub fn request(&self, r: &Request<'_>) {
        let Ok(mut local) = self.local.try_borrow_mut() else {
            return;
        };
        let local = &mut *local;
        let listener = match r.listener {
            Some(name) => local.intern_parts(0, name.as_ptr() as usize, &[name]),
            None => local.intern(|s| {
                let _ = write!(s, ":{}", r.port);
            }),
        };
        let route = match r.route {
            Some(n) => {
                let addr = std::ptr::from_ref(n) as usize;
                local.intern_parts(1, addr, &[&n.namespace, "/", &n.name])
            }
            None => NONE,
        };
        let backend = match r.backend {
            Some(b) => {
                let addr = std::ptr::from_ref(b) as usize;
                let mut port = itoa::Buffer::new();
                let parts = [
                    &b.service.namespace,
                    "/",
                    &b.service.name,
                    ":",
                    port.format(b.port),
                ];
                local.intern_parts(2, addr, &parts)
            }
            None => NONE,
        };
        let rule = r
            .rule
            .map_or(NONE, |i| u32::try_from(i).unwrap_or(NONE - 1));
        let key = SeriesKey {
            listener,
            route,
            rule,
            backend,
            status: r.status,
        };
        *local.requests.entry(key).or_insert(0) += 1;
        local
            .durations
            .entry(RouteKey { listener, route })
            .or_default()
            .observe(r.duration.as_secs_f64());
        if r.connect_error {
            *local.connect_errors.entry(backend).or_insert(0) += 1;
        }
        if let Some(code) = r.grpc_status {
            *local.grpc.entry((route, code)).or_insert(0) += 1;
        }
        self.dirty.set(true);
    }

    /// Counts one mirror request dropped because the mirror's in-flight
    /// bound was reached (`sluice_mirror_dropped_total`).
    pub fn mirror_dropped(&self) {
        self.mirror_dropped.set(self.mirror_dropped.get() + 1);
        self.dirty.set(true);
    }

    /// Counts a client connection as open until the guard is dropped
    /// (`sluice_active_connections`).
    pub fn connection(self: &Rc<Self>) -> ConnectionGuard {
        self.active.set(self.active.get() + 1);
        self.dirty.set(true);
        ConnectionGuard(Rc::clone(self))
    }

    /// Client connections open on this worker.
    pub fn active_connections(&self) -> u64 {
        self.active.get()
    }

    /// Publishes this worker's numbers if they changed since the last time.
    pub fn publish(&self) {
        if !self.dirty.replace(false) {
            return;
        }
        let Ok(local) = self.local.try_borrow() else {
            self.dirty.set(true);
            return;
        };
        let published = Published {
            names: Arc::clone(&local.names),
            requests: local.requests.iter().map(|(k, v)| (*k, *v)).collect(),
            durations: local
                .durations
                .iter()
                .map(|(k, h)| (*k, h.clone()))
                .collect(),
            connect_errors: local.connect_errors.iter().map(|(k, v)| (*k, *v)).collect(),
            grpc: local.grpc.iter().map(|(k, v)| (*k, *v)).collect(),
            mirror_dropped: self.mirror_dropped.get(),
            active: self.active.get(),
        };
        self.slot.0.store(Arc::new(published));
    }
}

/// Keeps a connection counted in `sluice_active_connections`.
#[derive(Debug)]
pub struct ConnectionGuard(Rc<WorkerMetrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let m = &self.0;
        m.active.set(m.active.get().saturating_sub(1));
        m.dirty.set(true);
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<WorkerMetrics>>> = const { RefCell::new(None) };
}

/// Makes `metrics` the current thread's metrics (a worker does this once).
pub fn install(metrics: Rc<WorkerMetrics>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(metrics));
}

/// Calls `f` with the current thread's metrics, if it has any.
pub fn with_current(f: impl FnOnce(&WorkerMetrics)) {
    CURRENT.with(|c| {
        if let Ok(current) = c.try_borrow()
            && let Some(m) = current.as_ref()
        {
            f(m);
        }
    });
}

/// Counts a finished request in the current thread's metrics (a no-op on
/// a thread that is not a worker).
pub fn record(r: &Request<'_>) {
    with_current(|m| m.request(r));
}

// === impl Slot ===

/// What a worker published.
#[derive(Debug, Default)]
struct Published {
    names: Arc<Vec<Arc<str>>>,
    requests: Vec<(SeriesKey, u64)>,
    durations: Vec<(RouteKey, Histogram)>,
    connect_errors: Vec<(u32, u64)>,
    grpc: Vec<((u32, u32), u64)>,
    mirror_dropped: u64,
    active: u64,
}

impl Published {
    fn name(&self, id: u32) -> Arc<str> {
        if id == NONE {
            return Arc::from("");
        }
        usize::try_from(id)
            .ok()
            .and_then(|i| self.names.get(i))
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }
}

/// Where one worker publishes its numbers; read by scrapes.
#[derive(Debug, Default)]
pub struct Slot(ArcSwap<Published>);

// === impl Registry ===

/// The process-wide metrics: every worker's slot and the process-level
/// counters (reloads), written off the request path.
#[derive(Debug, Default)]
pub struct Registry {
    slots: Vec<Arc<Slot>>,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
}

impl Registry {
    /// A registry for `workers` workers.
    pub fn new(workers: usize) -> Registry {
        Registry {
            slots: (0..workers).map(|_| Arc::default()).collect(),
            ..Registry::default()
        }
    }

    /// Worker `index`'s slot (a fresh unregistered one past the end).
    pub fn slot(&self, index: usize) -> Arc<Slot> {
        self.slots.get(index).cloned().unwrap_or_default()
    }

    /// Counts a reload (`sluice_reloads_total{result}`).
    pub fn reloaded(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads so far: `(ok, error)`.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_error.load(Ordering::Relaxed),
        )
    }

    /// Adds up every worker's published numbers and the registered
    /// [`Source`]s, and encodes them in the Prometheus text format
    /// ([`CONTENT_TYPE`]). `generation` is the route table's.
    pub fn encode(&self, generation: u64) -> String {
        let mut scrape = Scrape {
            generation,
            reloads: self.reloads(),
            ..Scrape::default()
        };
        for slot in &self.slots {
            let p = slot.0.load();
            for (k, v) in &p.requests {
                let labels = [
                    p.name(k.listener),
                    p.name(k.route),
                    if k.rule == NONE {
                        Arc::from("")
                    } else {
                        Arc::from(k.rule.to_string())
                    },
                    p.name(k.backend),
                ];
                *scrape.requests.entry((labels, k.status)).or_insert(0) += v;
            }
            for (k, h) in &p.durations {
                scrape
                    .durations
                    .entry([p.name(k.listener), p.name(k.route)])
                    .or_default()
                    .add(h);
            }
            for (b, v) in &p.connect_errors {
                *scrape.connect_errors.entry(p.name(*b)).or_insert(0) += v;
            }
            for ((route, code), v) in &p.grpc {
                *scrape.grpc.entry((p.name(*route), *code)).or_insert(0) += v;
            }
            scrape.mirror_dropped += p.mirror_dropped;
            scrape.active += p.active;
        }
        let mut families = Families::default();
        let sources = SOURCES.read().unwrap_or_else(PoisonError::into_inner);
        for source in sources.iter() {
            source.collect(&mut families);
        }
        drop(sources);
        scrape.extra = families;

        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            tracing::error!("cannot encode metrics: {e}");
        }
        out
    }
}

/// Everything one scrape shows, added up across workers.
#[derive(Debug, Default)]
struct Scrape {
    requests: BTreeMap<([Arc<str>; 4], u16), u64>,
    durations: BTreeMap<[Arc<str>; 2], Histogram>,
    connect_errors: BTreeMap<Arc<str>, u64>,
    grpc: BTreeMap<(Arc<str>, u32), u64>,
    mirror_dropped: u64,
    active: u64,
    generation: u64,
    reloads: (u64, u64),
    extra: Families,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut e = encoder.encode_descriptor(
            "sluice_requests",
            "Requests answered, by listener, route, rule, backend and status.",
            None,
            MetricType::Counter,
        )?;
        for (([listener, route, rule, backend], status), v) in &self.requests {
            let status = status.to_string();
            let labels = [
                ("listener", &**listener),
                ("route", &**route),
                ("rule", &**rule),
                ("backend", &**backend),
                ("status", status.as_str()),
            ];
            ConstCounter::new(*v).encode(e.encode_family(&labels)?)?;
        }

        let mut e = encoder.encode_descriptor(
            "sluice_request_duration_seconds",
            "Time from request head to the end of the response, by listener and route.",
            None,
            MetricType::Histogram,
        )?;
        for ([listener, route], h) in &self.durations {
            let labels = [("listener", &**listener), ("route", &**route)];
            let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(h.buckets.iter().copied())
                .collect();
            e.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
        }

        let mut e = encoder.encode_descriptor(
            "sluice_grpc_responses",
            "gRPC answers, by route and gRPC status code (the backend's or the proxy's own).",
            None,
            MetricType::Counter,
        )?;
        for ((route, code), v) in &self.grpc {
            let code = code.to_string();
            let labels = [("route", &**route), ("grpc_status", code.as_str())];
            ConstCounter::new(*v).encode(e.encode_family(&labels)?)?;
        }

        let mut e = encoder.encode_descriptor(
            "sluice_upstream_connect_errors",
            "Backend connections that could not be established, by backend.",
            None,
            MetricType::Counter,
        )?;
        for (backend, v) in &self.connect_errors {
            ConstCounter::new(*v).encode(e.encode_family(&[("backend", &**backend)])?)?;
        }

        let e = encoder.encode_descriptor(
            "sluice_mirror_dropped",
            "Mirror requests dropped because too many were in flight.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.mirror_dropped).encode(e)?;

        let e = encoder.encode_descriptor(
            "sluice_active_connections",
            "Client connections open.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(self.active).unwrap_or(i64::MAX)).encode(e)?;

        let mut e = encoder.encode_descriptor(
            "sluice_reloads",
            "Route table reloads, by result.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.reloads.0).encode(e.encode_family(&[("result", "ok")])?)?;
        ConstCounter::new(self.reloads.1).encode(e.encode_family(&[("result", "error")])?)?;

        let e = encoder.encode_descriptor(
            "sluice_route_table_generation",
            "Generation of the route table being served (0 at start, +1 per successful reload).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(self.generation).unwrap_or(i64::MAX)).encode(e)?;

        self.extra.encode(&mut encoder)
    }
}

// === impl Families ===

/// A metric family a [`Source`] adds.
#[derive(Debug, Default)]
struct Family {
    help: String,
    gauge: bool,
    samples: Vec<(Vec<(String, String)>, Sample)>,
}

/// One value a [`Source`] reports.
#[derive(Debug, Clone, Copy)]
enum Sample {
    Counter(u64),
    Gauge(f64),
}

/// The families [`Source`]s add during one scrape.
#[derive(Debug, Default)]
pub struct Families {
    families: BTreeMap<String, Family>,
}

impl Families {
    /// Adds one sample of counter `name` (written with a `_total` suffix;
    /// a trailing `_total` in `name` is ignored). Samples of one name form
    /// one family; the first `help` given for it is used.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        let name = name.strip_suffix("_total").unwrap_or(name);
        self.add(name, help, false, labels, Sample::Counter(value));
    }

    /// Adds one sample of gauge `name`.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, help, true, labels, Sample::Gauge(value));
    }

    fn add(&mut self, name: &str, help: &str, gauge: bool, labels: &[(&str, &str)], value: Sample) {
        let family = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                help: help.to_string(),
                gauge,
                samples: Vec::new(),
            });
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        family.samples.push((labels, value));
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, family) in &self.families {
            let kind = if family.gauge {
                MetricType::Gauge
            } else {
                MetricType::Counter
            };
            let mut e = encoder.encode_descriptor(name, &family.help, None, kind)?;
            for (labels, value) in &family.samples {
                let mut family_encoder = e.encode_family(labels)?;
                match value {
                    Sample::Gauge(v) => family_encoder.encode_gauge(v)?,
                    Sample::Counter(v) => {
                        family_encoder.encode_counter::<NoLabelSet, _, f64>(v, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A provider of extra metric families, asked at every scrape (the eBPF
/// loader's map counters, for instance).
///
/// ```ignore
/// struct Bpf { /* map handles */ }
/// impl sluice::metrics::Source for Bpf {
///     fn collect(&self, out: &mut sluice::metrics::Families) {
///         out.counter("sluice_ebpf_redirected_bytes", "Bytes redirected in the kernel.", &[], 42);
///     }
/// }
/// sluice::metrics::register_source(std::sync::Arc::new(Bpf { /* … */ }));
/// ```
///
/// `collect` runs on the admin thread, never on a worker: it may read
/// kernel maps or take locks.
pub trait Source: Send + Sync + 'static {
    /// Adds this source's samples to `out`.
    fn collect(&self, out: &mut Families);
}

static SOURCES: RwLock<Vec<Arc<dyn Source>>> = RwLock::new(Vec::new());

/// Registers `source` for every later scrape, process-wide.
pub fn register_source(source: Arc<dyn Source>) {
    SOURCES
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .push(source);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str) -> Backend {
        Backend {
            service: ObjectName {
                namespace: "ns".into(),
                name: name.into(),
            },
            port: 80,
            weight: 1,
            protocol: route_compiler::route::UpstreamProtocol::Inherit,
            endpoints: Vec::new(),
            unresolved: None,
        }
    }

    #[test]
    fn counts_add_up_across_workers() {
        let registry = Registry::new(2);
        let route = ObjectName {
            namespace: "ns".into(),
            name: "r".into(),
        };
        let (a, b) = (backend("a"), backend("b"));
        let workers = [
            WorkerMetrics::new(registry.slot(0)),
            WorkerMetrics::new(registry.slot(1)),
        ];
        for (worker, backend, n) in [(0, &a, 3), (1, &a, 2), (1, &b, 4)] {
            for _ in 0..n {
                workers[worker].request(&Request {
                    listener: Some("http"),
                    port: 80,
                    route: Some(&route),
                    rule: Some(0),
                    backend: Some(backend),
                    status: 200,
                    grpc_status: (worker == 1).then_some(14),
                    duration: Duration::from_millis(3),
                    connect_error: false,
                });
            }
        }
        for m in &workers {
            m.mirror_dropped();
            m.publish();
        }
        registry.reloaded(false);
        let text = registry.encode(7);
        assert!(text.contains(
            "sluice_requests_total{listener=\"http\",route=\"ns/r\",rule=\"0\",backend=\"ns/a:80\",status=\"200\"} 5\n"
        ), "{text}");
        assert!(
            text.contains("backend=\"ns/b:80\",status=\"200\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("sluice_mirror_dropped_total 2\n"), "{text}");
        assert!(
            text.contains("sluice_grpc_responses_total{route=\"ns/r\",grpc_status=\"14\"} 6\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_reloads_total{result=\"error\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("sluice_route_table_generation 7\n"), "{text}");
        assert!(
            text.contains(
                "sluice_request_duration_seconds_count{listener=\"http\",route=\"ns/r\"} 9\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_request_duration_seconds_bucket{listener=\"http\",route=\"ns/r\",le=\"0.005\"} 9\n"),
            "{text}"
        );
    }

    #[test]
    fn sources_add_families() {
        struct Fixed;
        impl Source for Fixed {
            fn collect(&self, out: &mut Families) {
                out.counter("sluice_test_source_total", "A test.", &[("k", "v")], 3);
            }
        }
        register_source(Arc::new(Fixed));
        let text = Registry::new(1).encode(0);
        assert!(
            text.contains("# TYPE sluice_test_source_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_test_source_total{k=\"v\"} 3\n"),
            "{text}"
        );
    }
}
