//! Gateway API precedence, as one sort key.
//!
//! Gateway API does not take "the first rule that matches": across every
//! rule of every route attached to a listener (and hostname), the match
//! that wins is the one with the highest precedence among those that match.
//! [`Key`] encodes that order so that sorting ascending puts the winner
//! first; the table numbers its automaton's patterns in that order, and a
//! lookup takes the lowest-numbered candidate whose other conditions hold.
//!
//! HTTPRoute (Gateway API `HTTPRouteRule` docs, SPEC §3.5):
//!
//! 1. path type: `Exact` > `RegularExpression` > `PathPrefix`;
//! 2. longer path value first (a prefix's trailing `/` does not count);
//! 3. a `method` condition first;
//! 4. more header conditions first;
//! 5. more query-parameter conditions first;
//! 6. older `creationTimestamp` first (a route without one counts as newest);
//! 7. `namespace/name` alphabetically;
//! 8. rule order, then match order within the rule.
//!
//! GRPCRoute (`GRPCRouteRule` docs, SPEC §3.6; hostname precedence is
//! applied before, by choosing the virtual host): more characters in the
//! service, then in the method, then `Exact` before `RegularExpression`,
//! then more header conditions, then 6–8 as above.

use std::cmp::Reverse;

use crate::ir::{Match, PathMatch, RouteEntry};

/// The sort key of one match: smaller is higher precedence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key<'a> {
    specificity: Specificity,
    created: (bool, i64),
    name: (&'a str, &'a str),
    rule: usize,
    match_index: usize,
}

/// The part of the key that depends on the match's conditions only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Specificity {
    /// HTTPRoute ordering.
    Http {
        path_type: u8,
        path_len: Reverse<usize>,
        no_method: bool,
        headers: Reverse<usize>,
        query: Reverse<usize>,
    },
    /// GRPCRoute ordering.
    Grpc {
        service_len: Reverse<usize>,
        method_len: Reverse<usize>,
        regex: bool,
        headers: Reverse<usize>,
    },
}

impl Specificity {
    /// The specificity of a match.
    pub(crate) fn of(m: &Match) -> Specificity {
        let len = |s: &Option<String>| s.as_ref().map_or(0, |s| s.chars().count());
        let (path_type, path_len) = match &m.path {
            PathMatch::Exact(v) => (0, v.chars().count()),
            PathMatch::Regex(v) => (1, v.chars().count()),
            PathMatch::Prefix(v) => (2, v.chars().count()),
            PathMatch::Grpc(g) => {
                return Specificity::Grpc {
                    service_len: Reverse(len(&g.service)),
                    method_len: Reverse(len(&g.method)),
                    regex: g.regex,
                    headers: Reverse(m.headers.len()),
                };
            }
        };
        Specificity::Http {
            path_type,
            path_len: Reverse(path_len),
            no_method: m.method.is_none(),
            headers: Reverse(m.headers.len()),
            query: Reverse(m.query.len()),
        }
    }
}

impl<'a> Key<'a> {
    /// The key of `route.matches[rule][match_index]`.
    ///
    /// # Panics
    ///
    /// Panics if the indexes are out of range (a bug in the caller, never
    /// input-dependent: callers iterate the route's own matches).
    pub fn new(route: &'a RouteEntry, rule: usize, match_index: usize) -> Key<'a> {
        let m = &route.matches[rule][match_index];
        Key {
            specificity: Specificity::of(m),
            created: (route.created.is_none(), route.created.unwrap_or(0)),
            name: (&route.route.name.namespace, &route.route.name.name),
            rule,
            match_index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Predicate, ValueMatch};
    use crate::route::{ObjectName, Route, RouteKind};

    fn m(path: PathMatch) -> Match {
        Match {
            path,
            method: None,
            headers: vec![],
            query: vec![],
        }
    }

    fn entry(name: &str, created: Option<i64>, matches: Vec<Match>) -> RouteEntry {
        RouteEntry {
            route: Route {
                kind: RouteKind::Http,
                name: ObjectName {
                    namespace: "ns".into(),
                    name: name.into(),
                },
                rules: vec![],
            },
            matches: matches.into_iter().map(|m| vec![m]).collect(),
            created,
            attachments: vec![],
            origin: Default::default(),
        }
    }

    #[test]
    fn exact_beats_regex_beats_prefix() {
        let e = entry(
            "r",
            None,
            vec![
                m(PathMatch::Prefix("/api/v1/tasks".into())),
                m(PathMatch::Regex("/api/v1/tasks/[0-9]+".into())),
                m(PathMatch::Exact("/a".into())),
            ],
        );
        let mut keys: Vec<_> = (0..3).map(|r| Key::new(&e, r, 0)).collect();
        keys.sort();
        let order: Vec<_> = keys.iter().map(|k| k.rule).collect();
        assert_eq!(order, [2, 1, 0]);
    }

    #[test]
    fn method_then_headers_then_query() {
        let mut with_method = m(PathMatch::Prefix("/api".into()));
        with_method.method = Some("GET".into());
        let mut with_header = m(PathMatch::Prefix("/api".into()));
        with_header.headers.push(Predicate {
            name: "x".into(),
            value: ValueMatch::Exact("1".into()),
        });
        let plain = m(PathMatch::Prefix("/api".into()));
        let e = entry("r", None, vec![plain, with_header, with_method]);
        let mut keys: Vec<_> = (0..3).map(|r| Key::new(&e, r, 0)).collect();
        keys.sort();
        let order: Vec<_> = keys.iter().map(|k| k.rule).collect();
        assert_eq!(order, [2, 1, 0]);
    }

    #[test]
    fn older_route_then_name_break_ties() {
        let same = || vec![m(PathMatch::Prefix("/".into()))];
        let old = entry("zzz", Some(10), same());
        let new = entry("aaa", Some(20), same());
        let undated = entry("000", None, same());
        assert!(Key::new(&old, 0, 0) < Key::new(&new, 0, 0));
        assert!(Key::new(&new, 0, 0) < Key::new(&undated, 0, 0));
        let a = entry("a", None, same());
        let b = entry("b", None, same());
        assert!(Key::new(&a, 0, 0) < Key::new(&b, 0, 0));
    }
}
