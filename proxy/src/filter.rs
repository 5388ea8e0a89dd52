//! Gateway API filters applied to a head: header modifiers, URL rewrite and
//! redirect.
//!
//! Headers are handled as a list of borrowed-or-owned `(name, value)`
//! fields, so a request that no filter touches is forwarded without
//! copying its fields.

use std::borrow::Cow;

use route_compiler::route::{HeaderModifier, PathModifier, Redirect};

/// A head's fields as they will be written.
pub type Fields<'a> = Vec<(Cow<'a, [u8]>, Cow<'a, [u8]>)>;

/// Applies a RequestHeaderModifier or ResponseHeaderModifier: `set`
/// replaces every field of that name, `add` appends one, `remove` drops
/// them (names are case-insensitive).
pub fn modify_headers(fields: &mut Fields<'_>, modifier: &HeaderModifier) {
    for set in &modifier.set {
        fields.retain(|(n, _)| !n.eq_ignore_ascii_case(set.name.as_bytes()));
        fields.push((owned(&set.name), owned(&set.value)));
    }
    for add in &modifier.add {
        fields.push((owned(&add.name), owned(&add.value)));
    }
    for remove in &modifier.remove {
        fields.retain(|(n, _)| !n.eq_ignore_ascii_case(remove.as_bytes()));
    }
}

fn owned(s: &str) -> Cow<'static, [u8]> {
    Cow::Owned(s.as_bytes().to_vec())
}

/// Replaces every field named `name` with one field `value`.
pub fn set_header<'a>(fields: &mut Fields<'a>, name: &'static str, value: Cow<'a, [u8]>) {
    fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_bytes()));
    fields.push((Cow::Borrowed(name.as_bytes()), value));
}

/// Splits an origin-form target into path and `?query` (query keeps its
/// `?`, empty when absent).
pub fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    match target.iter().position(|&b| b == b'?') {
        Some(q) => target.split_at(q),
        None => (target, &[]),
    }
}

/// The path after a URLRewrite or RequestRedirect path modifier.
/// `ReplacePrefixMatch` replaces the matched prefix element-wise
/// (`/foo` → `/xyz`: `/foo/bar` → `/xyz/bar`, `/foo` → `/xyz`; with `/`:
/// `/foo/bar` → `/bar`).
pub fn modify_path(path: &[u8], modifier: &PathModifier) -> Vec<u8> {
    match modifier {
        PathModifier::ReplaceFullPath(full) => full.as_bytes().to_vec(),
        PathModifier::ReplacePrefixMatch { prefix, with } => {
            let prefix = prefix.trim_end_matches('/');
            let Some(rest) = path.strip_prefix(prefix.as_bytes()) else {
                return path.to_vec();
            };
            let mut out = with.trim_end_matches('/').as_bytes().to_vec();
            out.extend_from_slice(rest);
            if out.first() != Some(&b'/') {
                out.insert(0, b'/');
            }
            out
        }
    }
}

/// The `Location` of a RequestRedirect for a request to `host` (Host
/// header, port stripped) with `target`, received on `listener_port`.
///
/// As Gateway API says: scheme defaults to the request's (`http`); port to
/// the scheme's well-known port when a scheme is given, else the listener's;
/// a well-known port is not written.
pub fn redirect_location(
    redirect: &Redirect,
    host: &[u8],
    listener_port: u16,
    target: &[u8],
) -> Vec<u8> {
    let scheme = redirect.scheme.as_deref().unwrap_or("http");
    let well_known = if scheme == "https" { 443 } else { 80 };
    let port = redirect.port.unwrap_or(if redirect.scheme.is_some() {
        well_known
    } else {
        listener_port
    });
    let (path, query) = split_target(target);
    let mut out = Vec::with_capacity(64 + target.len());
    out.extend_from_slice(scheme.as_bytes());
    out.extend_from_slice(b"://");
    match &redirect.hostname {
        Some(h) => out.extend_from_slice(h.as_bytes()),
        None => out.extend_from_slice(host_without_port(host)),
    }
    if port != well_known {
        out.extend_from_slice(format!(":{port}").as_bytes());
    }
    match &redirect.path {
        Some(m) => out.extend_from_slice(&modify_path(path, m)),
        None => out.extend_from_slice(path),
    }
    out.extend_from_slice(query);
    out
}

/// `host` without a `:port` suffix (`[v6]:port` aware).
pub fn host_without_port(host: &[u8]) -> &[u8] {
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

#[cfg(test)]
mod tests {
    use super::*;
    use route_compiler::route::HeaderValue;

    fn hv(name: &str, value: &str) -> HeaderValue {
        HeaderValue {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn header_modifier_sets_adds_removes() {
        let mut fields: Fields<'_> = vec![
            (Cow::Borrowed(&b"X-A"[..]), Cow::Borrowed(&b"1"[..])),
            (Cow::Borrowed(&b"x-b"[..]), Cow::Borrowed(&b"2"[..])),
            (Cow::Borrowed(&b"X-C"[..]), Cow::Borrowed(&b"3"[..])),
        ];
        modify_headers(
            &mut fields,
            &HeaderModifier {
                set: vec![hv("x-a", "one")],
                add: vec![hv("x-b", "two")],
                remove: vec!["x-c".into()],
            },
        );
        let got: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        assert_eq!(
            got,
            vec![(&b"x-b"[..], &b"2"[..]), (b"x-a", b"one"), (b"x-b", b"two")]
        );
    }

    #[test]
    fn prefix_replacement_is_element_wise() {
        let m = |prefix: &str, with: &str| PathModifier::ReplacePrefixMatch {
            prefix: prefix.into(),
            with: with.into(),
        };
        assert_eq!(modify_path(b"/foo/bar", &m("/foo", "/xyz")), b"/xyz/bar");
        assert_eq!(modify_path(b"/foo", &m("/foo", "/xyz")), b"/xyz");
        assert_eq!(modify_path(b"/foo/bar", &m("/foo", "/")), b"/bar");
        assert_eq!(modify_path(b"/foo", &m("/foo", "/")), b"/");
        assert_eq!(modify_path(b"/foo/", &m("/foo", "/xyz/")), b"/xyz/");
        assert_eq!(modify_path(b"/a", &m("", "/b")), b"/b/a");
    }

    #[test]
    fn redirect_location_ports() {
        let r = |scheme: Option<&str>, port: Option<u16>| Redirect {
            scheme: scheme.map(Into::into),
            hostname: None,
            path: None,
            port,
            status_code: 302,
        };
        assert_eq!(
            redirect_location(&r(None, None), b"a.com:8080", 8080, b"/p?q=1"),
            b"http://a.com:8080/p?q=1"
        );
        assert_eq!(
            redirect_location(&r(None, None), b"a.com", 80, b"/p"),
            b"http://a.com/p"
        );
        assert_eq!(
            redirect_location(&r(Some("https"), None), b"a.com:8080", 8080, b"/p"),
            b"https://a.com/p"
        );
        assert_eq!(
            redirect_location(&r(Some("https"), Some(8443)), b"a.com", 80, b"/"),
            b"https://a.com:8443/"
        );
    }
}
