//! Table building: a validated [`RouteSet`] in, table file bytes out.
//!
//! For every listener, the attached routes are grouped by the hostname they
//! serve there (a *virtual host*). For every virtual host and route kind,
//! every match of every rule is sorted by [`precedence::Key`] and its path
//! condition becomes one pattern of ONE multi-pattern automaton, pattern `i`
//! being the `i`-th in precedence order. Header and query regexes get a
//! single-pattern automaton each (deduplicated).
//!
//! Automata are dense DFAs serialized into the file. Where a dense DFA would
//! pass the size cap, that automaton is stored as its patterns and rebuilt
//! as a lazy DFA at load time instead: a valid route set is never rejected
//! for size. [`Report`] says where that happened and which regexes were the
//! cause, so the compiler's front end can warn.

use std::collections::{BTreeMap, HashMap};

use crate::automaton;
use crate::format::{MAX_SECTIONS, SectionKind, Writer};
use crate::ir::{Match, PathMatch, Predicate, RouteSet, ValueMatch};
use crate::precedence::Key;
use crate::route::RouteKind;
use crate::table::{
    AutomatonSource, Candidate, ListenerInfo, MatchEntry, Meta, PathMatcher, PredicateEntry,
    ValueTest, VirtualHost,
};

/// Knobs for table building.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Size cap for one dense DFA, in bytes.
    pub dense_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dense_limit: automaton::DEFAULT_DENSE_LIMIT,
        }
    }
}

/// A path automaton that fell back to the lazy DFA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LazyFallback {
    /// Index of the listener in the route set.
    pub listener: usize,
    /// The virtual host's hostname.
    pub hostname: String,
    /// The regex conditions most responsible (largest alone), as
    /// `(route index, rule, match)`.
    pub culprits: Vec<(usize, usize, usize)>,
}

/// The matches of one virtual host and route kind, in precedence order:
/// `matches[i]` has rank `i` in path matcher `matcher`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Index of the listener in the route set.
    pub listener: usize,
    /// The virtual host's hostname.
    pub hostname: String,
    /// HTTPRoute or GRPCRoute matches.
    pub kind: RouteKind,
    /// The path matcher in the table.
    pub matcher: u32,
    /// `(route index, rule, match)` in precedence order.
    pub matches: Vec<(usize, usize, usize)>,
}

/// What table building found worth telling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Automata built lazily because the dense DFA was too large.
    pub lazy: Vec<LazyFallback>,
    /// Every virtual host's matches in precedence order.
    pub groups: Vec<Group>,
    /// Total bytes of the table file.
    pub table_bytes: usize,
}

/// Errors building a table (input was validated, so these are limits).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// Even the lazy DFA cannot be built (e.g. the NFA passes its limit).
    #[error("cannot build the path automaton for listener {listener} host {hostname}: {reason}")]
    Automaton {
        /// The listener's name.
        listener: String,
        /// The virtual host.
        hostname: String,
        /// regex-automata's reason.
        reason: String,
    },
    /// The metadata does not serialize.
    #[error("cannot serialize the route table: {0}")]
    Serialize(String),
}

/// A match of the route set: `(route index, rule, match)`.
type MatchId = (usize, usize, usize);

struct Builder<'s> {
    set: &'s RouteSet,
    options: Options,
    /// Serialized dense DFAs; DFA `n` becomes file section `n + 1`.
    dfas: Vec<Vec<u8>>,
    meta: Meta,
    entry_ids: HashMap<(usize, usize, usize), u32>,
    value_automata: HashMap<String, u32>,
    report: Report,
}

/// Builds the table file for `set`.
///
/// # Errors
///
/// [`CompileError`] when an automaton cannot be built at all.
pub fn compile(set: &RouteSet, options: Options) -> Result<(Vec<u8>, Report), CompileError> {
    let mut builder = Builder {
        set,
        options,
        dfas: Vec::new(),
        meta: Meta {
            listeners: Vec::new(),
            vhosts: Vec::new(),
            automata: Vec::new(),
            matchers: Vec::new(),
            entries: Vec::new(),
            routes: set.routes.iter().map(|r| r.route.clone()).collect(),
        },
        entry_ids: HashMap::new(),
        value_automata: HashMap::new(),
        report: Report::default(),
    };
    builder.build()?;
    let Builder {
        dfas,
        meta,
        mut report,
        ..
    } = builder;
    let meta_bytes =
        postcard::to_allocvec(&meta).map_err(|e| CompileError::Serialize(e.to_string()))?;
    let mut file = Writer::new();
    file.push(SectionKind::META, &meta_bytes);
    for dfa in &dfas {
        file.push(SectionKind::DFA, dfa);
    }
    let bytes = file.finish();
    report.table_bytes = bytes.len();
    Ok((bytes, report))
}

impl Builder<'_> {
    fn build(&mut self) -> Result<(), CompileError> {
        for (listener_index, listener) in self.set.listeners.iter().enumerate() {
            // hostname → kind → matches (route, rule, match)
            let mut vhosts: BTreeMap<&str, BTreeMap<RouteKind, Vec<MatchId>>> = BTreeMap::new();
            for (route_index, route) in self.set.routes.iter().enumerate() {
                for attachment in &route.attachments {
                    if attachment.listener != listener_index {
                        continue;
                    }
                    for hostname in &attachment.hostnames {
                        let by_kind = vhosts.entry(hostname.as_str()).or_default();
                        let list = by_kind.entry(route.kind()).or_default();
                        for (rule, matches) in route.matches.iter().enumerate() {
                            for m in 0..matches.len() {
                                list.push((route_index, rule, m));
                            }
                        }
                    }
                }
            }
            let mut info = ListenerInfo {
                gateway: listener.gateway.clone(),
                name: listener.name.clone(),
                port: listener.port,
                hostname: listener.hostname.clone(),
                vhosts: Vec::new(),
            };
            for (hostname, by_kind) in vhosts {
                let mut vhost = VirtualHost {
                    hostname: hostname.to_string(),
                    http: None,
                    grpc: None,
                };
                for (kind, mut matches) in by_kind {
                    matches.sort_by(|a, b| self.key(*a).cmp(&self.key(*b)));
                    matches.dedup();
                    let matcher = self.path_matcher(listener_index, hostname, &matches)?;
                    self.report.groups.push(Group {
                        listener: listener_index,
                        hostname: hostname.to_string(),
                        kind,
                        matcher,
                        matches,
                    });
                    match kind {
                        RouteKind::Http => vhost.http = Some(matcher),
                        RouteKind::Grpc => vhost.grpc = Some(matcher),
                    }
                }
                info.vhosts.push(self.meta.vhosts.len() as u32);
                self.meta.vhosts.push(vhost);
            }
            self.meta.listeners.push(info);
        }
        Ok(())
    }

    fn key(&self, (route, rule, m): (usize, usize, usize)) -> Key<'_> {
        Key::new(&self.set.routes[route], rule, m)
    }

    fn condition(&self, (route, rule, m): (usize, usize, usize)) -> &Match {
        &self.set.routes[route].matches[rule][m]
    }

    fn path_matcher(
        &mut self,
        listener: usize,
        hostname: &str,
        matches: &[(usize, usize, usize)],
    ) -> Result<u32, CompileError> {
        // Matches whose path condition accepts every path stay out of the
        // automaton (see `automaton::is_universal`).
        let mut in_automaton = Vec::new();
        let mut universal = Vec::new();
        for (rank, &id) in matches.iter().enumerate() {
            let path = &self.condition(id).path;
            let everything = match path {
                PathMatch::Prefix(p) => p.is_empty(),
                PathMatch::Regex(_) => automaton::is_universal(&path.to_pattern()),
                PathMatch::Exact(_) | PathMatch::Grpc(_) => false,
            };
            if everything {
                universal.push((rank, id));
            } else {
                in_automaton.push((rank, id));
            }
        }
        let automaton = self.automaton(listener, hostname, &in_automaton, matches)?;
        let universal_automaton = if universal.is_empty() {
            None
        } else {
            Some(self.automaton(listener, hostname, &universal, matches)?)
        };
        let mut candidates = |list: Vec<(usize, MatchId)>| {
            list.into_iter()
                .map(|(rank, id)| {
                    Ok(Candidate {
                        rank: rank as u32,
                        entry: self.entry(id)?,
                    })
                })
                .collect::<Result<Vec<_>, CompileError>>()
        };
        let patterns = candidates(in_automaton)?;
        let universal = candidates(universal)?;
        self.meta.matchers.push(PathMatcher {
            automaton,
            patterns,
            universal,
            universal_automaton,
        });
        Ok(self.meta.matchers.len() as u32 - 1)
    }

    /// Adds an automaton over the path patterns of `ranked` (pattern `i` is
    /// `ranked[i]`): dense when it fits the cap, lazy otherwise.
    fn automaton(
        &mut self,
        listener: usize,
        hostname: &str,
        ranked: &[(usize, MatchId)],
        all: &[MatchId],
    ) -> Result<u32, CompileError> {
        let patterns: Vec<String> = ranked
            .iter()
            .map(|&(_, id)| self.condition(id).path.to_pattern())
            .collect();
        let source = match self.dense_section(&patterns) {
            Some(section) => AutomatonSource::Dense(section),
            None => {
                automaton::build_lazy(&patterns).map_err(|e| CompileError::Automaton {
                    listener: self.set.listeners[listener].name.clone(),
                    hostname: hostname.to_string(),
                    reason: e.to_string(),
                })?;
                let culprits = self.culprits(all);
                self.report.lazy.push(LazyFallback {
                    listener,
                    hostname: hostname.to_string(),
                    culprits,
                });
                AutomatonSource::Lazy(patterns)
            }
        };
        self.meta.automata.push(source);
        Ok(self.meta.automata.len() as u32 - 1)
    }

    /// Serializes a dense DFA over `patterns` as a new section, or `None`
    /// when it would pass the size cap (or the file has no room for more
    /// sections).
    fn dense_section(&mut self, patterns: &[String]) -> Option<u32> {
        if self.dfas.len() + 1 >= MAX_SECTIONS as usize {
            return None;
        }
        let dfa = automaton::build_dense(patterns, self.options.dense_limit).ok()?;
        let (mut bytes, pad) = dfa.to_bytes_native_endian();
        bytes.drain(..pad);
        self.dfas.push(bytes);
        Some(self.dfas.len() as u32)
    }

    /// The regex conditions whose own DFA is largest: what made the
    /// combined one too big.
    fn culprits(&self, matches: &[(usize, usize, usize)]) -> Vec<(usize, usize, usize)> {
        let mut sized: Vec<(usize, (usize, usize, usize))> = matches
            .iter()
            .filter(|&&id| {
                matches!(
                    self.condition(id).path,
                    crate::ir::PathMatch::Regex(_) | crate::ir::PathMatch::Grpc(_)
                )
            })
            .map(|&id| {
                let pattern = self.condition(id).path.to_pattern();
                let size = automaton::build_dense(&[pattern], self.options.dense_limit)
                    .map_or(usize::MAX, |dfa| dfa.memory_usage());
                (size, id)
            })
            .collect();
        sized.sort_by_key(|&(size, _)| std::cmp::Reverse(size));
        sized.into_iter().take(3).map(|(_, id)| id).collect()
    }

    fn entry(&mut self, id: (usize, usize, usize)) -> Result<u32, CompileError> {
        if let Some(&e) = self.entry_ids.get(&id) {
            return Ok(e);
        }
        let m = self.condition(id).clone();
        let headers = self.predicates(&m.headers)?;
        let query = self.predicates(&m.query)?;
        let entry = MatchEntry {
            route: id.0 as u32,
            rule: id.1 as u32,
            match_index: id.2 as u32,
            method: m.method.clone(),
            headers,
            query,
        };
        let index = self.meta.entries.len() as u32;
        self.meta.entries.push(entry);
        self.entry_ids.insert(id, index);
        Ok(index)
    }

    fn predicates(
        &mut self,
        predicates: &[Predicate],
    ) -> Result<Vec<PredicateEntry>, CompileError> {
        predicates
            .iter()
            .map(|p| {
                let test = match &p.value {
                    ValueMatch::Exact(v) => ValueTest::Exact(v.clone()),
                    ValueMatch::Regex(r) => ValueTest::Regex(self.value_automaton(r)?),
                };
                Ok(PredicateEntry {
                    name: p.name.clone(),
                    test,
                })
            })
            .collect()
    }

    fn value_automaton(&mut self, regex: &str) -> Result<u32, CompileError> {
        if let Some(&a) = self.value_automata.get(regex) {
            return Ok(a);
        }
        let patterns = [format!("(?:{regex})")];
        let source = match self.dense_section(&patterns) {
            Some(section) => AutomatonSource::Dense(section),
            None => {
                automaton::build_lazy(&patterns).map_err(|e| CompileError::Automaton {
                    listener: String::new(),
                    hostname: String::new(),
                    reason: e.to_string(),
                })?;
                AutomatonSource::Lazy(patterns.to_vec())
            }
        };
        let index = self.meta.automata.len() as u32;
        self.meta.automata.push(source);
        self.value_automata.insert(regex.to_string(), index);
        Ok(index)
    }
}
