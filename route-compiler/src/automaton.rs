//! The automata a table runs: a precompiled dense DFA, or a lazy DFA where
//! the dense one would be too large.
//!
//! Every automaton here is *anchored* and answers *full* matches: it is run
//! over the whole haystack and then given the end-of-input transition; the
//! patterns reported by the state it ends in are exactly those that match
//! the whole haystack. With [`MatchKind::All`] every such pattern is
//! reported, not just the leftmost-first one, which is what lets one
//! automaton stand for every path condition of a listener: the candidates
//! come out together and precedence picks among them.
//!
//! Syntax is RE2's: Unicode-aware classes are off, so `\d`, `\w`, `\s` and
//! `\b` are ASCII, as in RE2, and `.` matches any byte but `\n`; literal
//! non-ASCII characters in a pattern match their UTF-8 bytes.

use regex_automata::dfa::{Automaton as _, StartKind, dense};
use regex_automata::hybrid;
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, PatternID};

/// Default cap on one dense DFA's size; past it the lazy DFA takes over.
pub const DEFAULT_DENSE_LIMIT: usize = 48 << 20;

/// Memory the lazy DFA may use for its cache, per automaton and worker.
pub const DEFAULT_LAZY_CACHE: usize = 2 << 20;

fn syntax_config() -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false)
}

fn thompson_config() -> thompson::Config {
    thompson::Config::new().utf8(false).shrink(false)
}

/// Checks that `pattern` compiles with the table's syntax; the error text is
/// regex-syntax's, which points at the offending part.
pub fn check_syntax(pattern: &str) -> Result<(), String> {
    regex_automata::util::syntax::parse_with(pattern, &syntax_config())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Builds a dense DFA over `patterns`, or reports that it passes `limit`.
pub(crate) fn build_dense(
    patterns: &[String],
    limit: usize,
) -> Result<dense::DFA<Vec<u32>>, Box<regex_automata::dfa::dense::BuildError>> {
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(limit))
                .determinize_size_limit(Some(limit)),
        )
        .syntax(syntax_config())
        .thompson(thompson_config())
        .build_many(patterns)
        .map_err(Box::new)
}

/// Builds a lazy DFA over `patterns`.
pub(crate) fn build_lazy(patterns: &[String]) -> Result<hybrid::dfa::DFA, Box<hybrid::BuildError>> {
    hybrid::dfa::Builder::new()
        .configure(
            hybrid::dfa::Config::new()
                .match_kind(MatchKind::All)
                .starts_for_each_pattern(false)
                .cache_capacity(DEFAULT_LAZY_CACHE)
                .skip_cache_capacity_check(true)
                .minimum_cache_clear_count(None),
        )
        .syntax(syntax_config())
        .thompson(thompson_config())
        .build_many(patterns)
        .map_err(Box::new)
}

/// Bytes that can occur where a condition is tested: inclusion and
/// witnesses are decided over these only, so that e.g. `.` (which does not
/// match `\n`) still covers every path a request can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// A request path: visible ASCII but `?` and `#`, and non-ASCII bytes
    /// (httparse rejects controls and spaces in the target).
    Path,
    /// A header or query value: visible ASCII, space, tab, non-ASCII.
    Value,
}

impl Alphabet {
    /// The bytes of the alphabet, ascending.
    pub fn bytes(self) -> impl Iterator<Item = u8> {
        (0u8..=255).filter(move |&b| self.contains(b))
    }

    /// Whether `byte` is in the alphabet.
    pub fn contains(self, byte: u8) -> bool {
        let path = self == Alphabet::Path;
        match byte {
            b'?' | b'#' if path => false,
            b' ' | b'\t' => !path,
            0x21..=0x7e | 0x80..=0xff => true,
            _ => false,
        }
    }
}

/// Whether `pattern` matches every path a request can have (every `/…`
/// over [`Alphabet::Path`]), like `PathPrefix /` or `/.*`.
///
/// Such patterns are kept out of the multi-pattern DFA: they would make
/// nearly every state a match state, which regex-automata's match-state
/// shuffling handles in quadratic time (seconds at 10,000 routes), and they
/// need no automaton to be tested. Returns `false` when unsure.
pub fn is_universal(pattern: &str) -> bool {
    let Ok(dfa) = build_dense(&[pattern.to_string()], DEFAULT_DENSE_LIMIT / 64) else {
        return false;
    };
    let Ok(start) = dfa.start_state_forward(&Input::new("").anchored(Anchored::Yes)) else {
        return false;
    };
    let first = dfa.next_state(start, b'/');
    let mut seen = std::collections::HashSet::from([first]);
    let mut pending = vec![first];
    while let Some(state) = pending.pop() {
        if !dfa.is_match_state(dfa.next_eoi_state(state)) || seen.len() > 100_000 {
            return false;
        }
        for byte in Alphabet::Path.bytes() {
            let next = dfa.next_state(state, byte);
            if seen.insert(next) {
                pending.push(next);
            }
        }
    }
    true
}

/// A loaded automaton.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "the dense DFA is read on every lookup; keeping it inline saves an indirection"
)]
pub(crate) enum Automaton<'a> {
    /// Zero-copy view of a dense DFA in the table file.
    Dense(dense::DFA<&'a [u32]>),
    /// A lazy DFA rebuilt from its patterns at load time; it needs a cache
    /// from the caller's [`Scratch`]: `cache` indexes [`Scratch::path`] for
    /// path automata and [`Scratch::value`] for header/query ones.
    Lazy {
        dfa: Box<hybrid::dfa::DFA>,
        cache: usize,
    },
}

/// Per-worker mutable state for lookups: one cache per lazy automaton.
/// Dense automata need none, so for most tables both are empty.
///
/// Path and value automata keep their caches apart because a lookup runs
/// value automata (header and query predicates) while a path automaton is
/// still reporting its matches.
#[derive(Debug, Clone)]
pub struct Scratch {
    pub(crate) path: Vec<hybrid::dfa::Cache>,
    pub(crate) value: Vec<hybrid::dfa::Cache>,
}

impl Automaton<'_> {
    /// Calls `each` with every pattern that matches all of `haystack`, in the
    /// order the automaton reports them, until it returns `false`.
    pub(crate) fn for_each_full_match(
        &self,
        haystack: &[u8],
        caches: &mut [hybrid::dfa::Cache],
        mut each: impl FnMut(PatternID) -> bool,
    ) {
        let input = Input::new(haystack).anchored(Anchored::Yes);
        match self {
            Automaton::Dense(dfa) => {
                let Ok(mut state) = dfa.start_state_forward(&input) else {
                    return;
                };
                for &byte in haystack {
                    state = dfa.next_state(state, byte);
                    if dfa.is_dead_state(state) {
                        return;
                    }
                }
                state = dfa.next_eoi_state(state);
                if dfa.is_match_state(state) {
                    for i in 0..dfa.match_len(state) {
                        if !each(dfa.match_pattern(state, i)) {
                            return;
                        }
                    }
                }
            }
            Automaton::Lazy { dfa, cache } => {
                let Some(cache) = caches.get_mut(*cache) else {
                    return;
                };
                let Ok(mut state) = dfa.start_state_forward(cache, &input) else {
                    return;
                };
                for &byte in haystack {
                    // With `minimum_cache_clear_count(None)` the lazy DFA
                    // never gives up, so this error cannot happen; treat it
                    // as "no match" rather than panic.
                    let Ok(next) = dfa.next_state(cache, state, byte) else {
                        return;
                    };
                    state = next;
                    if state.is_dead() {
                        return;
                    }
                }
                let Ok(end) = dfa.next_eoi_state(cache, state) else {
                    return;
                };
                if end.is_match() {
                    for i in 0..dfa.match_len(cache, end) {
                        if !each(dfa.match_pattern(cache, end, i)) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Whether the single-pattern automaton matches all of `haystack`.
    pub(crate) fn is_full_match(&self, haystack: &[u8], caches: &mut [hybrid::dfa::Cache]) -> bool {
        let mut matched = false;
        self.for_each_full_match(haystack, caches, |_| {
            matched = true;
            false
        });
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_matches(patterns: &[&str], haystack: &str) -> Vec<usize> {
        let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        let dfa = build_dense(&patterns, DEFAULT_DENSE_LIMIT).unwrap();
        let (bytes, pad) = dfa.to_bytes_native_endian();
        let (dfa, _) = dense::DFA::from_bytes(&bytes[pad..]).unwrap();
        let auto = Automaton::Dense(dfa);
        let mut out = vec![];
        auto.for_each_full_match(haystack.as_bytes(), &mut [], |p| {
            out.push(p.as_usize());
            true
        });
        out
    }

    fn lazy_matches(patterns: &[&str], haystack: &str) -> Vec<usize> {
        let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        let dfa = build_lazy(&patterns).unwrap();
        let mut caches = vec![dfa.create_cache()];
        let auto = Automaton::Lazy {
            dfa: Box::new(dfa),
            cache: 0,
        };
        let mut out = vec![];
        auto.for_each_full_match(haystack.as_bytes(), &mut caches, |p| {
            out.push(p.as_usize());
            true
        });
        out
    }

    #[test]
    fn reports_every_full_match_and_nothing_partial() {
        let patterns = [
            "/(?s:.*)",
            "/api(?:/(?s:.*))?",
            "/api/v[0-9]+/tasks",
            r"/x\d",
        ];
        assert_eq!(dense_matches(&patterns, "/api/v1/tasks"), [0, 1, 2]);
        assert_eq!(dense_matches(&patterns, "/api/v1/tasks/1"), [0, 1]);
        assert_eq!(dense_matches(&patterns, "/apis"), [0]);
        assert_eq!(lazy_matches(&patterns, "/api/v1/tasks"), [0, 1, 2]);
        assert_eq!(lazy_matches(&patterns, "/apis"), [0]);
    }

    #[test]
    fn perl_classes_are_ascii_as_in_re2() {
        assert_eq!(dense_matches(&[r"/x\d"], "/x3"), [0]);
        assert!(dense_matches(&[r"/x\d"], "/x\u{663}").is_empty());
        assert_eq!(dense_matches(&["/é"], "/é"), [0]);
    }

    #[test]
    fn universal_patterns_are_recognised() {
        assert!(is_universal("/(?s:.*)"));
        assert!(is_universal("(?:/.*)"));
        assert!(is_universal("(?:.*)"));
        assert!(is_universal("(?:/[^?#]*)"));
        assert!(!is_universal("(?:/api(?:/.*)?)"));
        assert!(!is_universal("(?:/[a-z]*)"));
    }

    #[test]
    fn size_limit_is_reported_not_panicked() {
        let patterns = vec!["(?:[a-z]*a[a-z]{14})".to_string()];
        assert!(build_dense(&patterns, 1 << 12).is_err());
        assert!(build_lazy(&patterns).is_ok());
    }
}
