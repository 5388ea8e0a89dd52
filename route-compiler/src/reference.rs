//! A deliberately simple reference matcher.
//!
//! It decides requests the slow, obvious way: take every match of every
//! route attached to the request's listener and host, keep those whose
//! conditions hold (each path condition compiled on its own as a regex),
//! sort them by [`precedence::Key`], take the first. No automaton is shared,
//! nothing is precomputed. Tests check the compiled [`Table`] against it on
//! random route sets and requests; the benchmark uses it as the "one regex
//! per route, checked in a list" baseline.
//!
//! [`Table`]: crate::table::Table

use regex_automata::meta::Regex;
use regex_automata::util::syntax;

use crate::ir::{Match, RouteSet, ValueMatch};
use crate::precedence::Key;
use crate::route::RouteKind;

/// A request, owned and simple.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Listener port.
    pub port: u16,
    /// Method.
    pub method: String,
    /// Host, without port.
    pub host: String,
    /// Path.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// Headers, names in any case.
    pub headers: Vec<(String, String)>,
}

/// What the reference matcher decided: `(route index, rule, match)`.
pub type Decision = Option<(usize, usize, usize)>;

fn full_match(pattern: &str, haystack: &str) -> bool {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(&format!("^(?:{pattern})$"))
        .map(|re| re.is_match(haystack.as_bytes()))
        .unwrap_or(false)
}

fn value_holds(value: &ValueMatch, actual: &str) -> bool {
    match value {
        ValueMatch::Exact(v) => v == actual,
        ValueMatch::Regex(r) => full_match(r, actual),
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        _ if pattern == "*" => true,
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// How specific a hostname pattern is for a host it matches: exact first,
/// then longer wildcards, then `*`.
fn host_rank(pattern: &str) -> (u8, usize) {
    if pattern == "*" {
        (2, 0)
    } else if pattern.starts_with('*') {
        (1, usize::MAX - pattern.len())
    } else {
        (0, 0)
    }
}

fn conditions_hold(m: &Match, request: &Request) -> bool {
    if !full_match(&m.path.to_pattern(), &request.path) {
        return false;
    }
    if m.method
        .as_deref()
        .is_some_and(|method| method != request.method)
    {
        return false;
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if !m
        .headers
        .iter()
        .all(|p| header(&p.name).is_some_and(|v| value_holds(&p.value, v)))
    {
        return false;
    }
    let query = |name: &str| {
        request.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    };
    m.query
        .iter()
        .all(|p| query(&p.name).is_some_and(|v| value_holds(&p.value, v)))
}

/// Decides `request` against `set`.
pub fn decide(set: &RouteSet, request: &Request) -> Decision {
    let host = request.host.to_ascii_lowercase();
    // Listener: on the port, most specific hostname.
    let listener = set
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.port == request.port)
        .filter(|(_, l)| host_matches(l.hostname.as_deref().unwrap_or("*"), &host))
        .min_by_key(|(i, l)| (host_rank(l.hostname.as_deref().unwrap_or("*")), *i))?
        .0;
    // Virtual host: the most specific hostname the attached routes serve.
    let attached = || {
        set.routes.iter().enumerate().flat_map(move |(r, route)| {
            route
                .attachments
                .iter()
                .filter(move |a| a.listener == listener)
                .flat_map(move |a| a.hostnames.iter().map(move |h| (r, h.as_str())))
        })
    };
    let vhost = attached()
        .map(|(_, h)| h)
        .filter(|h| host_matches(h, &host))
        .min_by_key(|h| host_rank(h))?;
    let routes: Vec<usize> = attached()
        .filter(|(_, h)| *h == vhost)
        .map(|(r, _)| r)
        .collect();
    // The first content-type decides; media types are case-insensitive and
    // may carry parameters.
    let grpc_request = request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .is_some_and(|(_, v)| {
            let media = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            media == "application/grpc" || media.starts_with("application/grpc+")
        });
    let has_grpc = routes
        .iter()
        .any(|&r| set.routes[r].kind() == RouteKind::Grpc);
    let kind = if grpc_request && has_grpc {
        RouteKind::Grpc
    } else {
        RouteKind::Http
    };
    let mut candidates = Vec::new();
    for &r in &routes {
        let route = &set.routes[r];
        if route.kind() != kind {
            continue;
        }
        for (rule, matches) in route.matches.iter().enumerate() {
            for (m, condition) in matches.iter().enumerate() {
                if conditions_hold(condition, request) {
                    candidates.push((Key::new(route, rule, m), (r, rule, m)));
                }
            }
        }
    }
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    candidates.first().map(|(_, id)| *id)
}
