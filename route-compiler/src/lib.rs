//! Sluice's route compiler: Kubernetes Gateway API routes in, one DFA route
//! table out.
//!
//! # Contents
//!
//! * [Pipeline](#pipeline) — the stages and their modules
//! * [Example](#example) — compile YAML and route a request
//! * [Guarantees](#guarantees)
//!
//! # Pipeline
//!
//! | stage | module | in → out |
//! | --- | --- | --- |
//! | read | [`source`], [`yaml`] | files → documents with positions |
//! | decode | [`model`] | documents → typed Gateway API objects (unknown fields collected) |
//! | validate | [`validate`] | objects → [`ir::RouteSet`] + [`diag::Diagnostic`]s |
//! | order | [`precedence`] | Gateway API precedence as one sort key |
//! | build | [`compile`], [`automaton`], [`format`] | route set → table file bytes (one multi-pattern DFA per listener and hostname) |
//! | load | [`table`] | bytes → [`table::Table`] (zero-copy, validated) |
//! | look up | [`table::Table::lookup`] | borrowed request → [`table::Decision`] |
//! | lint | [`lint`] | route set + table → warnings |
//! | explain | [`explain`] | decision → JSON |
//!
//! [`reference`] is a deliberately simple matcher that the tests hold the
//! table to.
//!
//! # Example
//!
//! ```
//! use route_compiler::{Build, table::{Decision, RequestView}};
//!
//! let yaml = r#"
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: Gateway
//! metadata: {name: gw, namespace: default}
//! spec:
//!   gatewayClassName: sluice
//!   listeners: [{name: http, port: 8080, protocol: HTTP}]
//! ---
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: HTTPRoute
//! metadata: {name: api, namespace: default}
//! spec:
//!   parentRefs: [{name: gw}]
//!   rules:
//!   - matches: [{path: {type: PathPrefix, value: /api}}]
//!     backendRefs: [{name: api, port: 80}]
//! "#;
//! let build = Build::from_text(&[("routes.yaml", yaml)]).unwrap();
//!
//! struct Get(&'static str);
//! impl RequestView for Get {
//!     fn method(&self) -> &[u8] { b"GET" }
//!     fn host(&self) -> &[u8] { b"example.com" }
//!     fn target(&self) -> &[u8] { self.0.as_bytes() }
//!     fn header(&self, _: &str) -> Option<&[u8]> { None }
//! }
//! let mut scratch = build.table.scratch();
//! match build.table.lookup(8080, &Get("/api/tasks?x=1"), &mut scratch) {
//!     Decision::Matched(m) => assert_eq!(m.route.name.name, "api"),
//!     other => panic!("{other:?}"),
//! }
//! assert!(matches!(build.table.lookup(8080, &Get("/apis"), &mut scratch), Decision::NoRoute { .. }));
//! ```
//!
//! # Guarantees
//!
//! * Bad input never panics and never half-loads: [`Build`] is all or
//!   nothing, and every problem found is reported at once.
//! * A lookup allocates nothing and its cost does not grow with the number
//!   of routes.
//! * A table file from another build, another endianness or with a flipped
//!   bit is rejected with an error that says so.
#![forbid(unsafe_code)]
#![expect(
    clippy::useless_vec,
    reason = "`path!` builds owned document paths for diagnostics, off the lookup path"
)]

pub mod automaton;
pub mod compile;
pub mod diag;
pub mod explain;
pub mod format;
pub mod ir;
pub mod lint;
pub mod model;
pub mod precedence;
pub mod reference;
pub mod route;
pub mod source;
pub mod table;
pub mod template;
pub mod validate;
pub mod yaml;

use std::path::PathBuf;

pub use compile::Options;
pub use diag::{Diagnostic, Severity};

/// A route set compiled from YAML: the table plus everything that explains
/// it.
#[derive(Debug)]
pub struct Build {
    /// The files it was read from.
    pub sources: source::Sources,
    /// The validated route set.
    pub set: ir::RouteSet,
    /// The table file bytes.
    pub bytes: Vec<u8>,
    /// The loaded table.
    pub table: table::Table,
    /// What table building reported.
    pub report: compile::Report,
    /// Warnings (a `Build` has no errors), sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Build {
    /// Reads, validates, compiles and lints route files or directories.
    ///
    /// # Errors
    ///
    /// Every diagnostic, sorted, when any of them is an error: nothing is
    /// half-loaded.
    pub fn from_paths(paths: &[PathBuf], options: Options) -> Result<Build, Vec<Diagnostic>> {
        let (sources, diagnostics) = source::Sources::load(paths);
        Build::from_sources(sources, diagnostics, options)
    }

    /// Like [`Build::from_paths`], from `(file name, text)` pairs.
    ///
    /// # Errors
    ///
    /// As [`Build::from_paths`].
    pub fn from_text(files: &[(&str, &str)]) -> Result<Build, Vec<Diagnostic>> {
        let mut sources = source::Sources::default();
        let diagnostics = files
            .iter()
            .filter_map(|(name, text)| sources.add(*name, text))
            .collect();
        Build::from_sources(sources, diagnostics, Options::default())
    }

    /// Validates, compiles and lints already-read sources.
    ///
    /// # Errors
    ///
    /// As [`Build::from_paths`].
    pub fn from_sources(
        sources: source::Sources,
        mut diagnostics: Vec<Diagnostic>,
        options: Options,
    ) -> Result<Build, Vec<Diagnostic>> {
        let (set, found) = validate::validate(&sources);
        diagnostics.extend(found);
        if diagnostics.iter().any(Diagnostic::is_error) {
            diag::sort(&mut diagnostics);
            return Err(diagnostics);
        }
        let internal = |message: String| {
            Diagnostic::new(
                Severity::Error,
                "internal",
                "(route table)",
                yaml::Span { line: 1, column: 1 },
                message,
            )
        };
        let (bytes, report) = match compile::compile(&set, options) {
            Ok(built) => built,
            Err(e) => {
                diagnostics.push(internal(e.to_string()));
                return Err(diagnostics);
            }
        };
        let table = match table::Table::from_bytes(&bytes) {
            Ok(table) => table,
            Err(e) => {
                diagnostics.push(internal(format!("the table just built does not load: {e}")));
                return Err(diagnostics);
            }
        };
        for lazy in &report.lazy {
            diagnostics.push(lazy_warning(&set, &sources, lazy));
        }
        diagnostics.extend(lint::lint(&set, &sources, &table, &report));
        diag::sort(&mut diagnostics);
        Ok(Build {
            sources,
            set,
            bytes,
            table,
            report,
            diagnostics,
        })
    }
}

fn lazy_warning(
    set: &ir::RouteSet,
    sources: &source::Sources,
    lazy: &compile::LazyFallback,
) -> Diagnostic {
    let listener = &set.listeners[lazy.listener];
    let culprits: Vec<String> = lazy
        .culprits
        .iter()
        .map(|&(route, rule, m)| {
            let entry = &set.routes[route];
            let span = sources.locate(entry.origin, &lint::match_path(entry.kind(), rule, m));
            format!(
                "{} ({} {} rules[{rule}].matches[{m}], {}:{})",
                entry.matches[rule][m].path,
                entry.kind(),
                entry.route.name,
                sources.file_name(entry.origin),
                span.line
            )
        })
        .collect();
    sources
        .diagnostic(
            Severity::Warning,
            "lazy-dfa",
            listener.origin,
            &path!["spec", "listeners", listener.index],
            format!(
                "the path automaton of listener `{}` (host {}) is larger than the dense DFA limit, so it runs as a lazy DFA (slower first lookups, per-worker cache); largest regexes: {}",
                listener.name,
                lazy.hostname,
                culprits.join(", ")
            ),
        )
        .object(format!("Gateway {}", listener.gateway))
        .help("simplify those regexes (bounded repetitions such as {1,64} and `.*` in the middle multiply states), or raise --dfa-limit")
}
