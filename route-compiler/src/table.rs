//! The route table: a compiled, immutable, shareable routing decision
//! procedure, and its lookup.
//!
//! A [`Table`] is what the proxy executes. It is built from a validated
//! [`RouteSet`](crate::ir::RouteSet) by [`crate::compile`], written to a
//! file (see [`crate::format`] for the container layout), and loaded back
//! with [`Table::from_bytes`] or [`Table::load`]. Loading validates every
//! section and never panics; the path automata are used *in place* from the
//! loaded bytes (`dense::DFA::from_bytes`, zero-copy).
//!
//! # Lookup
//!
//! [`Table::lookup`] takes a borrowed [`RequestView`] and:
//!
//! 1. picks the listener by port, then by Host (exact hostname beats the
//!    longest wildcard beats a listener without hostname; no fall-through);
//! 2. picks the virtual host within the listener the same way, from the
//!    hostnames the attached routes serve;
//! 3. runs that virtual host's path automaton — ONE automaton over every
//!    path condition of every route there — over the path, getting every
//!    match whose path condition holds, numbered in precedence order;
//! 4. returns the first candidate whose method, header and query
//!    conditions hold.
//!
//! Its cost depends on the request (path length, number of candidates whose
//! path matches), not on the number of routes, and it allocates nothing.
//!
//! # Invariants
//!
//! * Every match of a virtual host has a *rank*, its position in precedence
//!   order. Pattern ids of a path automaton increase with rank, and the
//!   matches left out of the automaton (those whose path matches every
//!   path) are kept in rank order beside it.
//! * Every index stored in the metadata (listener, virtual host, automaton,
//!   entry, route, rule) is checked at load time, so lookups can index
//!   without panicking on a hostile file.

use std::collections::HashMap;
use std::path::Path;

use regex_automata::dfa::dense;
use serde::{Deserialize, Serialize};

use crate::automaton::{self, Automaton, Scratch};
use crate::format::{AlignedBytes, Container, FormatError, SectionKind};
use crate::route::{ObjectName, Route, RouteKind, Rule};

/// A request as the router sees it: borrowed views of what it matches on.
pub trait RequestView {
    /// The method, e.g. `GET`.
    fn method(&self) -> &[u8];
    /// The Host header (HTTP/1.1) or `:authority` (HTTP/2), possibly with a
    /// port; empty when absent.
    fn host(&self) -> &[u8];
    /// The origin-form request target: path and optional `?query`.
    fn target(&self) -> &[u8];
    /// The first value of a header; `name` is lower-case.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

/// Errors loading a table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read route table {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The reason.
        source: std::io::Error,
    },
    /// The container is not a valid table file.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The metadata section does not decode.
    #[error("route table is corrupt: metadata does not decode ({0}); recompile it")]
    Meta(String),
    /// A DFA section fails regex-automata's validation.
    #[error("route table is corrupt: automaton {index} is invalid ({reason}); recompile it")]
    Automaton {
        /// Which automaton.
        index: usize,
        /// regex-automata's reason.
        reason: String,
    },
    /// An index in the metadata points nowhere.
    #[error("route table is corrupt: {0}; recompile it")]
    Dangling(&'static str),
}

// === serialized metadata ===

/// A listener as the table knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerInfo {
    /// The Gateway it belongs to.
    pub gateway: ObjectName,
    /// `listeners[].name`.
    pub name: String,
    /// The port it binds.
    pub port: u16,
    /// Its hostname, if any.
    pub hostname: Option<String>,
    /// Its virtual hosts (indexes into the table's virtual hosts).
    pub(crate) vhosts: Vec<u32>,
}

/// The routes of one listener that serve one hostname.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct VirtualHost {
    /// Exact hostname, `*.suffix`, or `*` for every host.
    pub hostname: String,
    /// Path matcher for HTTPRoutes.
    pub http: Option<u32>,
    /// Path matcher for GRPCRoutes.
    pub grpc: Option<u32>,
}

/// Where an automaton's bytes come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum AutomatonSource {
    /// A dense DFA stored in section `n` of the file.
    Dense(u32),
    /// A lazy DFA rebuilt from these patterns at load time.
    Lazy(Vec<String>),
}

/// A candidate: its precedence rank within the matcher (lower wins) and
/// its index into the table's match entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Candidate {
    pub rank: u32,
    pub entry: u32,
}

/// The matches of one virtual host and route kind: a path automaton, plus
/// the matches whose path condition accepts every path, which stay out of
/// it (see [`crate::automaton::is_universal`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PathMatcher {
    pub automaton: u32,
    /// Pattern id → candidate; ranks increase with the pattern id.
    pub patterns: Vec<Candidate>,
    /// Candidates whose path condition holds for every [normal
    /// path](is_normal_path), by increasing rank.
    pub universal: Vec<Candidate>,
    /// An automaton over the universal candidates' own patterns (pattern
    /// `i` is `universal[i]`), for the paths that are not normal.
    pub universal_automaton: Option<u32>,
}

/// Whether `path` starts with `/` and holds only bytes of
/// [`Alphabet::Path`](crate::automaton::Alphabet::Path) — every path a
/// request can actually have. Universal candidates hold for every normal
/// path; other paths are decided by their automaton.
fn is_normal_path(path: &[u8]) -> bool {
    path.first() == Some(&b'/')
        && path
            .iter()
            .all(|&b| crate::automaton::Alphabet::Path.contains(b))
}

impl Loaded<'_> {
    /// Calls `each` with every universal candidate of `matcher` whose path
    /// condition holds for `path`, by increasing rank, until it returns
    /// `false`.
    fn for_each_universal(
        &self,
        matcher: &PathMatcher,
        path: &[u8],
        caches: &mut [regex_automata::hybrid::dfa::Cache],
        mut each: impl FnMut(Candidate) -> bool,
    ) {
        if matcher.universal.is_empty() {
            return;
        }
        if is_normal_path(path) {
            for &candidate in &matcher.universal {
                if !each(candidate) {
                    return;
                }
            }
        } else if let Some(a) = matcher.universal_automaton {
            self.automata[a as usize].for_each_full_match(path, caches, |p| {
                matcher
                    .universal
                    .get(p.as_usize())
                    .is_none_or(|&candidate| each(candidate))
            });
        }
    }
}

/// How a header or query value is tested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ValueTest {
    Exact(String),
    /// Full match of a single-pattern automaton.
    Regex(u32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PredicateEntry {
    pub name: String,
    pub test: ValueTest,
}

/// One match of one rule, with the conditions the path automaton does not
/// decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MatchEntry {
    pub route: u32,
    pub rule: u32,
    pub match_index: u32,
    pub method: Option<String>,
    pub headers: Vec<PredicateEntry>,
    pub query: Vec<PredicateEntry>,
}

/// Everything but the dense automata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub listeners: Vec<ListenerInfo>,
    pub vhosts: Vec<VirtualHost>,
    pub automata: Vec<AutomatonSource>,
    pub matchers: Vec<PathMatcher>,
    pub entries: Vec<MatchEntry>,
    pub routes: Vec<Route>,
}

// === host selection ===

/// Exact, wildcard and catch-all hostnames, for picking the most specific
/// one for a request's host without allocating.
#[derive(Debug, Clone, Default)]
struct HostIndex {
    exact: HashMap<Box<str>, u32>,
    /// Keyed by the suffix after `*`, dot included (`.example.com`).
    wildcard: HashMap<Box<str>, u32>,
    any: Option<u32>,
}

/// Longest hostname we compare (DNS names are at most 253 bytes).
const MAX_HOST: usize = 255;

impl HostIndex {
    fn insert(&mut self, hostname: Option<&str>, value: u32) {
        match hostname {
            None | Some("*") => {
                self.any.get_or_insert(value);
            }
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => {
                    self.wildcard.entry(suffix.into()).or_insert(value);
                }
                None => {
                    self.exact.entry(h.into()).or_insert(value);
                }
            },
        }
    }

    /// The most specific entry for `host` (already without port).
    fn get(&self, host: &[u8]) -> Option<u32> {
        let mut buf = [0u8; MAX_HOST];
        if !host.is_empty() && host.len() <= MAX_HOST {
            let lower = &mut buf[..host.len()];
            lower.copy_from_slice(host);
            lower.make_ascii_lowercase();
            if let Ok(lower) = std::str::from_utf8(lower) {
                if let Some(&v) = self.exact.get(lower) {
                    return Some(v);
                }
                if !self.wildcard.is_empty() {
                    // Longest suffix first: the first dot gives the longest.
                    for (i, _) in lower.match_indices('.') {
                        if i == 0 {
                            continue;
                        }
                        if let Some(&v) = self.wildcard.get(&lower[i..]) {
                            return Some(v);
                        }
                    }
                }
            }
        }
        self.any
    }
}

/// Strips the port from a Host header value (`host:port`, `[v6]:port`).
fn host_without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
        _ => host,
    }
}

/// The first value of query parameter `name` (names are case-sensitive,
/// values compared as sent, without percent-decoding).
fn query_param<'q>(query: &'q [u8], name: &str) -> Option<&'q [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (key == name.as_bytes()).then_some(value)
    })
}

// === the loaded table ===

#[derive(Debug)]
struct Loaded<'a> {
    meta: Meta,
    automata: Vec<Automaton<'a>>,
    /// Lazy path automata, in the order of [`Scratch::path`].
    lazy_path: Vec<usize>,
    /// Lazy value automata, in the order of [`Scratch::value`].
    lazy_value: Vec<usize>,
    /// Port → listener index.
    ports: HashMap<u16, HostIndex>,
    /// Listener → virtual host index.
    vhosts: Vec<HostIndex>,
}

self_cell::self_cell!(
    struct TableCell {
        owner: AlignedBytes,
        #[covariant]
        dependent: Loaded,
    }
    impl {Debug}
);

/// A loaded route table. Immutable, `Send + Sync`: share one per snapshot
/// across every worker (each worker keeps its own [`Scratch`]).
#[derive(Debug)]
pub struct Table {
    cell: TableCell,
}

/// What a request gets.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'t> {
    /// No listener accepts this port and host: the proxy answers 404.
    NoListener,
    /// A listener accepted it but no route matched: 404 (gRPC: status 12).
    NoRoute {
        /// The listener.
        listener: &'t ListenerInfo,
        /// Which kind of route was looked for.
        kind: RouteKind,
    },
    /// A route matched.
    Matched(Matched<'t>),
}

/// The winning match.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'t> {
    /// The listener.
    pub listener: &'t ListenerInfo,
    /// The route.
    pub route: &'t Route,
    /// The rule (`route.rules[rule_index]`).
    pub rule: &'t Rule,
    /// 0-based index of the rule in the route.
    pub rule_index: usize,
    /// 0-based index of the match in the rule.
    pub match_index: usize,
}

/// Whether a request is gRPC (routed by GRPCRoutes where a virtual host has
/// any): `content-type: application/grpc` or `application/grpc+…`.
pub fn is_grpc(request: &impl RequestView) -> bool {
    request.header("content-type").is_some_and(|ct| {
        ct.len() >= 16
            && ct[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(ct.get(16), None | Some(b'+' | b';' | b' ' | b'\t'))
    })
}

impl Table {
    /// Loads and validates a table file.
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the file cannot be read or is not a valid table.
    pub fn load(path: &Path) -> Result<Table, LoadError> {
        let bytes = AlignedBytes::read_file(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Table::from_aligned(bytes)
    }

    /// Validates and loads a table from bytes (copied once, to align them).
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the bytes are not a valid table.
    pub fn from_bytes(bytes: &[u8]) -> Result<Table, LoadError> {
        Table::from_aligned(AlignedBytes::copy_from(bytes))
    }

    fn from_aligned(bytes: AlignedBytes) -> Result<Table, LoadError> {
        let cell = TableCell::try_new(bytes, |bytes| Loaded::parse(bytes.as_bytes()))?;
        Ok(Table { cell })
    }

    fn loaded(&self) -> &Loaded<'_> {
        self.cell.borrow_dependent()
    }

    /// Fresh per-worker lookup state.
    pub fn scratch(&self) -> Scratch {
        let loaded = self.loaded();
        let caches = |indexes: &[usize]| {
            indexes
                .iter()
                .filter_map(|&i| match loaded.automata.get(i) {
                    Some(Automaton::Lazy { dfa, .. }) => Some(dfa.create_cache()),
                    _ => None,
                })
                .collect()
        };
        Scratch {
            path: caches(&loaded.lazy_path),
            value: caches(&loaded.lazy_value),
        }
    }

    /// Every listener, in the order the Gateways list them.
    pub fn listeners(&self) -> &[ListenerInfo] {
        &self.loaded().meta.listeners
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.loaded().meta.routes
    }

    /// The distinct ports the proxy must bind.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.loaded().ports.keys().copied().collect();
        ports.sort_unstable();
        ports
    }

    /// Calls `each` with the rank (see [`crate::compile::Group`]) of every
    /// match of path matcher `matcher` whose path condition holds for
    /// `path`.
    pub(crate) fn matcher_full_matches(
        &self,
        matcher: u32,
        path: &[u8],
        scratch: &mut Scratch,
        mut each: impl FnMut(u32),
    ) {
        let loaded = self.loaded();
        if let Some(m) = loaded.meta.matchers.get(matcher as usize) {
            loaded.automata[m.automaton as usize].for_each_full_match(
                path,
                &mut scratch.path,
                |p| {
                    if let Some(c) = m.patterns.get(p.as_usize()) {
                        each(c.rank);
                    }
                    true
                },
            );
            loaded.for_each_universal(m, path, &mut scratch.path, |c| {
                each(c.rank);
                true
            });
        }
    }

    /// Routes a request that arrived on `port`. Allocates nothing.
    pub fn lookup<'t>(
        &'t self,
        port: u16,
        request: &impl RequestView,
        scratch: &mut Scratch,
    ) -> Decision<'t> {
        self.loaded().lookup(port, request, scratch)
    }
}

impl<'a> Loaded<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Loaded<'a>, LoadError> {
        let container = Container::parse(bytes)?;
        let (kind, meta_bytes) = container.section(0)?;
        if kind != SectionKind::META {
            return Err(LoadError::Dangling("first section is not the metadata"));
        }
        let meta: Meta =
            postcard::from_bytes(meta_bytes).map_err(|e| LoadError::Meta(e.to_string()))?;

        let is_path: std::collections::HashSet<u32> = meta
            .matchers
            .iter()
            .flat_map(|m| std::iter::once(m.automaton).chain(m.universal_automaton))
            .collect();
        let mut automata = Vec::with_capacity(meta.automata.len());
        let mut lazy_path = Vec::new();
        let mut lazy_value = Vec::new();
        for (index, source) in meta.automata.iter().enumerate() {
            let automaton = match source {
                AutomatonSource::Dense(section) => {
                    let (kind, dfa_bytes) = container.section(*section as usize)?;
                    if kind != SectionKind::DFA {
                        return Err(LoadError::Dangling("automaton section has the wrong kind"));
                    }
                    let (dfa, _) =
                        dense::DFA::from_bytes(dfa_bytes).map_err(|e| LoadError::Automaton {
                            index,
                            reason: e.to_string(),
                        })?;
                    Automaton::Dense(dfa)
                }
                AutomatonSource::Lazy(patterns) => {
                    let dfa =
                        automaton::build_lazy(patterns).map_err(|e| LoadError::Automaton {
                            index,
                            reason: e.to_string(),
                        })?;
                    let class = if is_path.contains(&(index as u32)) {
                        &mut lazy_path
                    } else {
                        &mut lazy_value
                    };
                    let cache = class.len();
                    class.push(index);
                    Automaton::Lazy {
                        dfa: Box::new(dfa),
                        cache,
                    }
                }
            };
            automata.push(automaton);
        }
        validate_indexes(&meta, &automata)?;

        let mut ports: HashMap<u16, HostIndex> = HashMap::new();
        let mut vhosts = Vec::with_capacity(meta.listeners.len());
        for (i, listener) in meta.listeners.iter().enumerate() {
            ports
                .entry(listener.port)
                .or_default()
                .insert(listener.hostname.as_deref(), i as u32);
            let mut index = HostIndex::default();
            for &v in &listener.vhosts {
                let hostname = meta.vhosts[v as usize].hostname.as_str();
                index.insert(Some(hostname), v);
            }
            vhosts.push(index);
        }
        Ok(Loaded {
            meta,
            automata,
            lazy_path,
            lazy_value,
            ports,
            vhosts,
        })
    }

    fn lookup<'t>(
        &'t self,
        port: u16,
        request: &impl RequestView,
        scratch: &mut Scratch,
    ) -> Decision<'t> {
        let host = host_without_port(request.host());
        let Some(listener_index) = self.ports.get(&port).and_then(|hosts| hosts.get(host)) else {
            return Decision::NoListener;
        };
        let listener = &self.meta.listeners[listener_index as usize];
        let grpc = is_grpc(request);
        let vhost = self.vhosts[listener_index as usize]
            .get(host)
            .map(|v| &self.meta.vhosts[v as usize]);
        let (kind, matcher) = match vhost {
            Some(VirtualHost { grpc: Some(m), .. }) if grpc => (RouteKind::Grpc, Some(*m)),
            Some(v) => (RouteKind::Http, v.http),
            None => (RouteKind::Http, None),
        };
        let no_route = Decision::NoRoute { listener, kind };
        let Some(matcher) = matcher.map(|m| &self.meta.matchers[m as usize]) else {
            return no_route;
        };

        let target = request.target();
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(q) => (&target[..q], &target[q + 1..]),
            None => (target, &target[target.len()..]),
        };
        let automaton = &self.automata[matcher.automaton as usize];
        let mut best: Option<(u32, &MatchEntry)> = None;
        let Scratch {
            path: path_caches,
            value: value_caches,
        } = scratch;
        automaton.for_each_full_match(path, path_caches, |pattern| {
            let Some(candidate) = matcher.patterns.get(pattern.as_usize()) else {
                return true;
            };
            if best.is_some_and(|(rank, _)| rank <= candidate.rank) {
                return true;
            }
            let entry = &self.meta.entries[candidate.entry as usize];
            if self.conditions_hold(entry, request, query, value_caches) {
                best = Some((candidate.rank, entry));
            }
            true
        });
        self.for_each_universal(matcher, path, path_caches, |candidate| {
            if best.is_some_and(|(rank, _)| rank <= candidate.rank) {
                return true;
            }
            let entry = &self.meta.entries[candidate.entry as usize];
            if self.conditions_hold(entry, request, query, value_caches) {
                best = Some((candidate.rank, entry));
            }
            true
        });
        let Some((_, entry)) = best else {
            return no_route;
        };
        let route = &self.meta.routes[entry.route as usize];
        Decision::Matched(Matched {
            listener,
            route,
            rule: &route.rules[entry.rule as usize],
            rule_index: entry.rule as usize,
            match_index: entry.match_index as usize,
        })
    }

    fn conditions_hold(
        &self,
        entry: &MatchEntry,
        request: &impl RequestView,
        query: &[u8],
        caches: &mut [regex_automata::hybrid::dfa::Cache],
    ) -> bool {
        if let Some(method) = &entry.method
            && request.method() != method.as_bytes()
        {
            return false;
        }
        let value_ok = |value: &[u8], test: &ValueTest, caches: &mut [_]| match test {
            ValueTest::Exact(v) => value == v.as_bytes(),
            ValueTest::Regex(a) => self.automata[*a as usize].is_full_match(value, caches),
        };
        for predicate in &entry.headers {
            match request.header(&predicate.name) {
                Some(value) if value_ok(value, &predicate.test, caches) => {}
                _ => return false,
            }
        }
        for predicate in &entry.query {
            match query_param(query, &predicate.name) {
                Some(value) if value_ok(value, &predicate.test, caches) => {}
                _ => return false,
            }
        }
        true
    }
}

/// Checks every index stored in the metadata so that lookups never index
/// out of bounds.
fn validate_indexes(meta: &Meta, automata: &[Automaton<'_>]) -> Result<(), LoadError> {
    let in_range = |i: u32, len: usize| (i as usize) < len;
    for listener in &meta.listeners {
        if !listener
            .vhosts
            .iter()
            .all(|&v| in_range(v, meta.vhosts.len()))
        {
            return Err(LoadError::Dangling(
                "listener points at a missing virtual host",
            ));
        }
    }
    for vhost in &meta.vhosts {
        for m in [vhost.http, vhost.grpc].into_iter().flatten() {
            if !in_range(m, meta.matchers.len()) {
                return Err(LoadError::Dangling(
                    "virtual host points at a missing matcher",
                ));
            }
        }
    }
    for matcher in &meta.matchers {
        if !in_range(matcher.automaton, automata.len())
            || matcher
                .universal_automaton
                .is_some_and(|a| !in_range(a, automata.len()))
        {
            return Err(LoadError::Dangling("matcher points at a missing automaton"));
        }
        let mut candidates = matcher.patterns.iter().chain(&matcher.universal);
        if !candidates.all(|c| in_range(c.entry, meta.entries.len())) {
            return Err(LoadError::Dangling("matcher points at a missing entry"));
        }
    }
    for entry in &meta.entries {
        let Some(route) = meta.routes.get(entry.route as usize) else {
            return Err(LoadError::Dangling("match points at a missing route"));
        };
        if !in_range(entry.rule, route.rules.len()) {
            return Err(LoadError::Dangling("match points at a missing rule"));
        }
        for predicate in entry.headers.iter().chain(&entry.query) {
            if let ValueTest::Regex(a) = predicate.test
                && !in_range(a, automata.len())
            {
                return Err(LoadError::Dangling(
                    "predicate points at a missing automaton",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_ignored() {
        assert_eq!(host_without_port(b"example.com:8080"), b"example.com");
        assert_eq!(host_without_port(b"example.com"), b"example.com");
        assert_eq!(host_without_port(b"[::1]:80"), b"[::1]");
        assert_eq!(host_without_port(b"a:b"), b"a:b");
    }

    #[test]
    fn query_takes_first_value_case_sensitive() {
        assert_eq!(query_param(b"a=1&a=2", "a"), Some(&b"1"[..]));
        assert_eq!(query_param(b"A=1", "a"), None);
        assert_eq!(query_param(b"flag&x=1", "flag"), Some(&b""[..]));
        assert_eq!(query_param(b"", "a"), None);
    }

    #[test]
    fn host_index_prefers_exact_then_longest_wildcard() {
        let mut index = HostIndex::default();
        index.insert(None, 0);
        index.insert(Some("*.example.com"), 1);
        index.insert(Some("*.b.example.com"), 2);
        index.insert(Some("a.b.example.com"), 3);
        assert_eq!(index.get(b"A.B.Example.com"), Some(3));
        assert_eq!(index.get(b"x.b.example.com"), Some(2));
        assert_eq!(index.get(b"x.example.com"), Some(1));
        assert_eq!(index.get(b"example.com"), Some(0));
        assert_eq!(index.get(b""), Some(0));
    }

    #[test]
    fn grpc_content_types() {
        struct Ct(&'static [u8]);
        impl RequestView for Ct {
            fn method(&self) -> &[u8] {
                b"POST"
            }
            fn host(&self) -> &[u8] {
                b""
            }
            fn target(&self) -> &[u8] {
                b"/"
            }
            fn header(&self, _: &str) -> Option<&[u8]> {
                Some(self.0)
            }
        }
        assert!(is_grpc(&Ct(b"application/grpc")));
        assert!(is_grpc(&Ct(b"application/grpc+proto")));
        assert!(!is_grpc(&Ct(b"application/grpc-web")));
        assert!(!is_grpc(&Ct(b"application/json")));
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn table_is_send_and_sync() {
        assert_send_sync::<Table>();
    }
}
