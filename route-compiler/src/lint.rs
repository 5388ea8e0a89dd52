//! Lints: route sets that load, but probably do not do what was meant.
//!
//! * `shadowed-match`: a match that can never win, because every request it
//!   matches is matched by a match of higher precedence in another rule.
//!   Decided on the automata: path languages are compared by a product
//!   construction over their DFAs (`L(lower) ⊆ L(higher)`, over the bytes a
//!   request path can hold), and header and query conditions by the same
//!   inclusion on their values, so `/a/\d\d` shadowed by `/a/[0-9]+`, or
//!   `PathPrefix /api/v1` by `RegularExpression /api(/.*)?`, is found
//!   although the strings differ.
//! * `glob-regex`: a regular expression that reads like a shell glob
//!   (`Get*`, `/static/*`).
//! * `zero-weights`: every backend of a rule has weight 0 (503 for all).
//! * `idle-listener`: a listener no route attaches to. (Routes that attach
//!   to nothing are reported by validation, which knows why.)

use std::collections::{HashSet, VecDeque};

use regex_automata::dfa::{Automaton as _, dense};
use regex_automata::{Anchored, Input};

use crate::automaton::{self, Alphabet, DEFAULT_DENSE_LIMIT};
use crate::compile::Report;
use crate::diag::{Diagnostic, Severity};
use crate::ir::{Match, PathMatch, Predicate, RouteEntry, RouteSet, ValueMatch};
use crate::path;
use crate::precedence::Key;
use crate::route::RouteKind;
use crate::source::Sources;
use crate::table::Table;
use crate::yaml::Seg;

/// How many state pairs an inclusion check may visit before giving up
/// (giving up never reports anything).
const MAX_PRODUCT_STATES: usize = 200_000;

/// Runs every lint.
pub fn lint(set: &RouteSet, sources: &Sources, table: &Table, report: &Report) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    shadowed(set, sources, table, report, &mut out);
    for route in &set.routes {
        glob_regexes(route, sources, &mut out);
        zero_weights(route, sources, &mut out);
    }
    idle_listeners(set, sources, &mut out);
    out
}

fn object(route: &RouteEntry) -> String {
    format!("{} {}", route.route.kind, route.route.name)
}

/// The YAML path of a match's path condition.
pub(crate) fn match_path(kind: RouteKind, rule: usize, m: usize) -> Vec<Seg> {
    match kind {
        RouteKind::Http => path!["spec", "rules", rule, "matches", m],
        RouteKind::Grpc => path!["spec", "rules", rule, "matches", m],
    }
}

// === shadowed matches ===

type MatchId = (usize, usize, usize);

fn shadowed(
    set: &RouteSet,
    sources: &Sources,
    table: &Table,
    report: &Report,
    out: &mut Vec<Diagnostic>,
) {
    let mut scratch = table.scratch();
    let mut seen: HashSet<(MatchId, MatchId)> = HashSet::new();
    let mut dfas = DfaCache::default();
    for group in &report.groups {
        for (position, &lower) in group.matches.iter().enumerate() {
            let Some(witness) = dfas.witness(&condition(set, lower).path.to_pattern()) else {
                continue;
            };
            // Every higher-precedence match whose path accepts the witness
            // is a candidate; only those can cover `lower`.
            let mut candidates = Vec::new();
            table.matcher_full_matches(group.matcher, &witness, &mut scratch, |rank| {
                if (rank as usize) < position {
                    candidates.push(rank as usize);
                }
            });
            candidates.sort_unstable();
            for higher in candidates.into_iter().filter_map(|i| group.matches.get(i)) {
                if covers(set, *higher, lower, &mut dfas) {
                    if seen.insert((*higher, lower)) {
                        out.push(shadow_diagnostic(set, sources, *higher, lower));
                    }
                    break;
                }
            }
        }
    }
    // Routes attached nowhere are not in any group; lint each on its own so
    // that `routec check route.yaml` says the same with or without its
    // Gateway.
    for (route_index, route) in set.routes.iter().enumerate() {
        if !route.attachments.is_empty() {
            continue;
        }
        let mut ids: Vec<MatchId> = route
            .matches
            .iter()
            .enumerate()
            .flat_map(|(rule, ms)| (0..ms.len()).map(move |m| (route_index, rule, m)))
            .collect();
        ids.sort_by(|a, b| key(set, *a).cmp(&key(set, *b)));
        for (position, &lower) in ids.iter().enumerate() {
            if let Some(&higher) = ids[..position]
                .iter()
                .find(|&&higher| covers(set, higher, lower, &mut dfas))
                && seen.insert((higher, lower))
            {
                out.push(shadow_diagnostic(set, sources, higher, lower));
            }
        }
    }
}

fn key(set: &RouteSet, (route, rule, m): MatchId) -> Key<'_> {
    Key::new(&set.routes[route], rule, m)
}

fn condition(set: &RouteSet, (route, rule, m): MatchId) -> &Match {
    &set.routes[route].matches[rule][m]
}

/// Whether every request `lower` matches is matched by `higher`, which has
/// higher precedence. Matches of the same rule do not count: they lead to
/// the same place.
fn covers(set: &RouteSet, higher: MatchId, lower: MatchId, dfas: &mut DfaCache) -> bool {
    if higher.0 == lower.0 && higher.1 == lower.1 {
        return false;
    }
    let (h, l) = (condition(set, higher), condition(set, lower));
    if h.method.is_some() && h.method != l.method {
        return false;
    }
    predicates_implied(&h.headers, &l.headers, dfas)
        && predicates_implied(&h.query, &l.query, dfas)
        && dfas.includes(&h.path.to_pattern(), &l.path.to_pattern(), Alphabet::Path) == Some(true)
}

/// Whether every request satisfying `lower`'s predicates satisfies
/// `higher`'s: each of `higher`'s names must be constrained in `lower` to a
/// subset of values.
fn predicates_implied(higher: &[Predicate], lower: &[Predicate], dfas: &mut DfaCache) -> bool {
    higher.iter().all(|h| {
        lower.iter().any(|l| {
            l.name == h.name
                && dfas.includes(
                    &value_pattern(&h.value),
                    &value_pattern(&l.value),
                    Alphabet::Value,
                ) == Some(true)
        })
    })
}

fn value_pattern(value: &ValueMatch) -> String {
    match value {
        ValueMatch::Exact(v) => regex_syntax::escape(v),
        ValueMatch::Regex(r) => format!("(?:{r})"),
    }
}

fn shadow_diagnostic(
    set: &RouteSet,
    sources: &Sources,
    higher: MatchId,
    lower: MatchId,
) -> Diagnostic {
    let lower_route = &set.routes[lower.0];
    let higher_route = &set.routes[higher.0];
    let higher_span = sources.locate(higher_route.origin, &path!["spec", "rules", higher.1]);
    let same_route = higher.0 == lower.0;
    let by = if same_route {
        format!(
            "rules[{}].matches[{}] (line {})",
            higher.1, higher.2, higher_span.line
        )
    } else {
        format!(
            "rules[{}].matches[{}] of {} ({}:{})",
            higher.1,
            higher.2,
            object(higher_route),
            sources.file_name(higher_route.origin),
            higher_span.line
        )
    };
    sources
        .diagnostic(
            Severity::Warning,
            "shadowed-match",
            lower_route.origin,
            &match_path(lower_route.kind(), lower.1, lower.2),
            format!(
                "rules[{}].matches[{}] ({}) can never win: every request it matches is taken first by {by}, which has higher precedence",
                lower.1,
                lower.2,
                condition(set, lower).path,
            ),
        )
        .object(object(lower_route))
        .help("remove this match, or make it more specific than the one that shadows it (a longer path, a method, or more header or query conditions)")
}

/// Single-pattern DFAs, built once per pattern.
#[derive(Default)]
struct DfaCache {
    dfas: std::collections::HashMap<String, Option<dense::DFA<Vec<u32>>>>,
}

impl DfaCache {
    fn get(&mut self, pattern: &str) -> Option<&dense::DFA<Vec<u32>>> {
        self.dfas
            .entry(pattern.to_string())
            .or_insert_with(|| {
                automaton::build_dense(&[pattern.to_string()], DEFAULT_DENSE_LIMIT / 8).ok()
            })
            .as_ref()
    }

    /// A shortest string the pattern matches in full, if any.
    fn witness(&mut self, pattern: &str) -> Option<Vec<u8>> {
        let dfa = self.get(pattern)?;
        let start = dfa
            .start_state_forward(&Input::new("").anchored(Anchored::Yes))
            .ok()?;
        let mut parents = std::collections::HashMap::new();
        parents.insert(start, None);
        let mut queue = VecDeque::from([start]);
        while let Some(state) = queue.pop_front() {
            if dfa.is_match_state(dfa.next_eoi_state(state)) {
                let mut bytes = Vec::new();
                let mut at = state;
                while let Some(Some((parent, byte))) = parents.get(&at) {
                    bytes.push(*byte);
                    at = *parent;
                }
                bytes.reverse();
                return Some(bytes);
            }
            if parents.len() > MAX_PRODUCT_STATES {
                return None;
            }
            for byte in Alphabet::Path.bytes() {
                let next = dfa.next_state(state, byte);
                if dfa.is_dead_state(next) || parents.contains_key(&next) {
                    continue;
                }
                parents.insert(next, Some((state, byte)));
                queue.push_back(next);
            }
        }
        None
    }

    /// Whether `L(lower) ⊆ L(higher)` (full matches); `None` when unknown
    /// (a DFA too big, or too many state pairs).
    fn includes(&mut self, higher: &str, lower: &str, alphabet: Alphabet) -> Option<bool> {
        if higher == lower {
            return Some(true);
        }
        self.get(higher)?;
        self.get(lower)?;
        let h = self.dfas.get(higher)?.as_ref()?;
        let l = self.dfas.get(lower)?.as_ref()?;
        let input = Input::new("").anchored(Anchored::Yes);
        let start = (
            l.start_state_forward(&input).ok()?,
            h.start_state_forward(&input).ok()?,
        );
        let mut seen = HashSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some((ls, hs)) = queue.pop_front() {
            if l.is_match_state(l.next_eoi_state(ls)) && !h.is_match_state(h.next_eoi_state(hs)) {
                return Some(false);
            }
            if seen.len() > MAX_PRODUCT_STATES {
                return None;
            }
            for byte in alphabet.bytes() {
                let next = (l.next_state(ls, byte), h.next_state(hs, byte));
                if l.is_dead_state(next.0) {
                    continue;
                }
                if seen.insert(next) {
                    queue.push_back(next);
                }
            }
        }
        Some(true)
    }
}

// === glob-looking regexes ===

/// If `regex` reads like a shell glob, the regex that was probably meant.
pub fn glob_suggestion(regex: &str) -> Option<String> {
    let bytes = regex.as_bytes();
    let mut suggestion = String::with_capacity(regex.len() + 4);
    let mut globby = false;
    let mut escaped = false;
    for (i, c) in regex.char_indices() {
        if escaped {
            escaped = false;
            suggestion.push(c);
            continue;
        }
        if c == '\\' {
            escaped = true;
            suggestion.push(c);
            continue;
        }
        if c == '*' {
            let previous = i.checked_sub(1).and_then(|p| bytes.get(p)).copied();
            let after_literal = previous
                .is_some_and(|p| p.is_ascii_alphanumeric() || p == b'/' || p == b'-' || p == b'_');
            if after_literal
                && (i + 1 == bytes.len()
                    || bytes.get(i + 1) == Some(&b'/')
                    || bytes.get(i + 1) == Some(&b'.'))
            {
                globby = true;
                suggestion.push_str(".*");
                continue;
            }
        }
        suggestion.push(c);
    }
    globby.then_some(suggestion)
}

fn glob_regexes(route: &RouteEntry, sources: &Sources, out: &mut Vec<Diagnostic>) {
    let mut check = |regex: &str, path: Vec<Seg>| {
        if let Some(meant) = glob_suggestion(regex) {
            out.push(
                sources
                    .diagnostic(
                        Severity::Warning,
                        "glob-regex",
                        route.origin,
                        &path,
                        format!(
                            "regular expression `{regex}` looks like a glob: as a regex, `*` repeats the character before it (did you mean `{meant}`?)"
                        ),
                    )
                    .object(object(route))
                    .help(format!("if a wildcard was meant, write `{meant}`; if the repetition was meant, write it as `{{0,}}` to say so")),
            );
        }
    };
    for (rule, matches) in route.matches.iter().enumerate() {
        for (m, condition) in matches.iter().enumerate() {
            let base = path!["spec", "rules", rule, "matches", m];
            match &condition.path {
                PathMatch::Regex(r) => check(r, [base.clone(), path!["path", "value"]].concat()),
                PathMatch::Grpc(g) if g.regex => {
                    if let Some(s) = &g.service {
                        check(s, [base.clone(), path!["method", "service"]].concat());
                    }
                    if let Some(method) = &g.method {
                        check(method, [base.clone(), path!["method", "method"]].concat());
                    }
                }
                _ => {}
            }
            for (field, predicates) in [
                ("headers", &condition.headers),
                ("queryParams", &condition.query),
            ] {
                for (i, p) in predicates.iter().enumerate() {
                    if let ValueMatch::Regex(r) = &p.value {
                        check(r, [base.clone(), path![field, i, "value"]].concat());
                    }
                }
            }
        }
    }
}

// === zero weights ===

fn zero_weights(route: &RouteEntry, sources: &Sources, out: &mut Vec<Diagnostic>) {
    for (rule_index, rule) in route.route.rules.iter().enumerate() {
        if !rule.backends.is_empty() && rule.total_weight == 0 && rule.redirect().is_none() {
            out.push(
                sources
                    .diagnostic(
                        Severity::Warning,
                        "zero-weights",
                        route.origin,
                        &path!["spec", "rules", rule_index, "backendRefs"],
                        format!(
                            "every backendRef of rules[{rule_index}] has weight 0: every request this rule matches gets 503 Service Unavailable"
                        ),
                    )
                    .object(object(route))
                    .help("give at least one backend a weight above 0, or remove the rule if it is meant to be drained"),
            );
        }
    }
}

// === idle listeners ===

fn idle_listeners(set: &RouteSet, sources: &Sources, out: &mut Vec<Diagnostic>) {
    for (index, listener) in set.listeners.iter().enumerate() {
        let used = set
            .routes
            .iter()
            .any(|r| r.attachments.iter().any(|a| a.listener == index));
        if !used {
            out.push(
                sources
                    .diagnostic(
                        Severity::Warning,
                        "idle-listener",
                        listener.origin,
                        &path!["spec", "listeners", listener.index],
                        format!(
                            "listener `{}` (port {}) has no route attached: every request to it gets 404",
                            listener.name, listener.port
                        ),
                    )
                    .object(format!("Gateway {}", listener.gateway))
                    .help("attach a route with a parentRef to this Gateway (sectionName or port to pick this listener), or remove the listener"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_detection() {
        assert_eq!(glob_suggestion("Get*").as_deref(), Some("Get.*"));
        assert_eq!(glob_suggestion("/static/*").as_deref(), Some("/static/.*"));
        assert_eq!(
            glob_suggestion("/files/*.json").as_deref(),
            Some("/files/.*.json")
        );
        assert_eq!(glob_suggestion("Get.*"), None);
        assert_eq!(glob_suggestion("/api/v[0-9]*"), None);
        assert_eq!(glob_suggestion(r"a\*"), None);
        assert_eq!(glob_suggestion("(ab)*"), None);
    }

    #[test]
    fn inclusion_is_decided_on_languages() {
        let mut dfas = DfaCache::default();
        let prefix = |p: &str| PathMatch::Prefix(p.into()).to_pattern();
        let p = Alphabet::Path;
        let yes = Some(true);
        assert_eq!(dfas.includes(&prefix("/api"), &prefix("/api/v1"), p), yes);
        assert_eq!(
            dfas.includes(&prefix("/api/v1"), &prefix("/api"), p),
            Some(false)
        );
        assert_eq!(dfas.includes(r"(?:/a/\d+)", "(?:/a/[0-9]+)", p), yes);
        assert_eq!(dfas.includes("(?:/a/[0-9]+)", r"/a/12", p), yes);
        assert_eq!(dfas.includes(r"/a/12", "(?:/a/[0-9]+)", p), Some(false));
        // `.` does not match `\n`, but no path holds one.
        assert_eq!(dfas.includes("(?:/api(/.*)?)", &prefix("/api/v1"), p), yes);
        assert_eq!(dfas.witness(&prefix("/api")).as_deref(), Some(&b"/api"[..]));
    }
}
