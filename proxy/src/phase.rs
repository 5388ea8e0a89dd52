//! The phases of one proxied request, named as pingora names them, shared
//! by the HTTP/1.1 and HTTP/2 connection drivers.
//!
//! ```text
//! read head ─▶ request_filter ─▶ route ─┬─▶ (answer: 404/500/503/3xx) ─────────────┐
//!                                       └─▶ upstream_request_filter ─▶ exchange ─┬─▶ response_filter ─▶ body ─▶ logging
//!                                                      fail_to_connect / error_while_proxy ─┴─▶ fail_to_proxy ─▶ logging
//! ```
//!
//! The full chart, for both protocols, with the function behind every
//! phase, is in `docs/phases.md`.
//!
//! State of a request lives in [`Ctx`]. Each phase is a plain function of
//! the context and the request: [`route`] takes any [`RequestView`], and the
//! field-level parts of `upstream_request_filter` ([`upstream_fields`]) and
//! `response_filter` ([`response_head`], [`apply_response_filters`]) take
//! header fields as a list, so that [`crate::proto::h1`] and
//! [`crate::proto::h2`] call the same code.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;
use route_compiler::route::{Backend, Filter, Rule};
use route_compiler::table::{Decision, Matched, RequestView, Table};

use crate::codec::h1::{self, Framing, Head, Request};
use crate::error::{Error, Kind};
use crate::filter::{self, Fields};
use crate::upstream;

/// The protocol a client spoke for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2 (h2c, prior knowledge).
    Http2,
}

impl Protocol {
    /// As written on a request line (`HTTP/1.1`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http10 => "HTTP/1.0",
            Protocol::Http11 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one request carries through its phases.
#[derive(Debug)]
pub struct Ctx<'t> {
    /// The client's address.
    pub client: SocketAddr,
    /// The listener port the request came in on.
    pub port: u16,
    /// When the head was read.
    pub start: Instant,
    /// The winning route, once routed.
    pub matched: Option<Matched<'t>>,
    /// The backendRef chosen.
    pub backend: Option<&'t Backend>,
    /// The backend endpoint chosen.
    pub upstream: Option<SocketAddr>,
    /// The protocol the client spoke.
    pub protocol: Protocol,
    /// The gRPC status of the answer: the backend's `grpc-status` (trailers
    /// or trailers-only headers), or the proxy's own; `None` when not gRPC.
    pub grpc_status: Option<u32>,
    /// The status sent to the client (0 until sent).
    pub status: u16,
    /// Whether the request is `HEAD` (its response has no body).
    pub head_request: bool,
    /// The client's HTTP minor version.
    pub client_minor: u8,
    /// Whether the client connection stays open after this request.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (answered by the proxy).
    pub expect_continue: bool,
    /// The client asks to switch to WebSocket (`Connection: upgrade` and
    /// `Upgrade: websocket` on a bodiless HTTP/1.1 request): the two fields
    /// are forwarded and a `101` answer turns the connection into a tunnel.
    pub upgrade: bool,
    /// The error that ended the request, if any.
    pub error: Option<Kind>,
    /// `METHOD target`, kept only when access logging.
    pub request_line: Option<String>,
}

impl<'t> Ctx<'t> {
    /// A fresh context for a request from `client` on `port`.
    pub fn new(client: SocketAddr, port: u16) -> Ctx<'t> {
        Ctx {
            client,
            port,
            start: Instant::now(),
            matched: None,
            backend: None,
            upstream: None,
            protocol: Protocol::Http11,
            grpc_status: None,
            status: 0,
            head_request: false,
            client_minor: 1,
            keep_alive: true,
            expect_continue: false,
            upgrade: false,
            error: None,
            request_line: None,
        }
    }

    /// The timeout for the exchange with the backend: the shorter of the
    /// rule's `timeouts.request` and `timeouts.backendRequest`.
    pub fn backend_timeout(&self) -> Option<Duration> {
        let t = self.matched?.rule.timeouts;
        let ms = match (t.request_ms, t.backend_request_ms) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        Some(Duration::from_millis(ms))
    }
}

/// What [`route`] decided.
#[derive(Debug)]
pub enum Action<'t> {
    /// The proxy answers by itself.
    Respond {
        /// The status.
        status: u16,
        /// `Location`, for redirects.
        location: Option<Vec<u8>>,
    },
    /// Forward to this endpoint under this rule.
    Forward {
        /// The matched rule.
        rule: &'t Rule,
        /// The chosen backendRef (its `protocol` says how to speak to it).
        backend: &'t Backend,
        /// The chosen endpoint.
        addr: SocketAddr,
    },
}

/// `request_filter`: checks the head for smuggling shapes and records what
/// the later phases need to know about it.
///
/// # Errors
///
/// [`Kind::DownstreamMalformedHead`] (answered 400, connection closed).
pub fn request_filter(
    ctx: &mut Ctx<'_>,
    head: &Head,
    buf: &[u8],
    log: bool,
) -> Result<Framing, Error> {
    let framing =
        h1::request_framing(head, buf).map_err(|e| Error::new(Kind::DownstreamMalformedHead(e)))?;
    let req = Request { head, buf };
    ctx.head_request = req.method() == b"HEAD";
    ctx.client_minor = head.minor;
    ctx.protocol = if head.minor == 0 {
        Protocol::Http10
    } else {
        Protocol::Http11
    };
    ctx.keep_alive = h1::keep_alive(head, buf);
    ctx.expect_continue = req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    ctx.upgrade = framing == Framing::Empty
        && head.minor == 1
        && h1::connection_tokens(head, buf).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
        && req
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
    if log {
        ctx.request_line = Some(format!(
            "{} {}",
            String::from_utf8_lossy(req.method()),
            String::from_utf8_lossy(req.target())
        ));
    }
    Ok(framing)
}

/// `route` (pingora's `upstream_peer`): looks the request up and picks a
/// backend and one of its endpoints ([`upstream::select`]), or decides the
/// proxy's own answer. Any protocol's request head is a [`RequestView`].
pub fn route<'t>(
    ctx: &mut Ctx<'t>,
    table: &'t Table,
    req: &impl RequestView,
    scratch: &mut route_compiler::automaton::Scratch,
    rng: &mut impl Rng,
) -> Action<'t> {
    let respond = |status| Action::Respond {
        status,
        location: None,
    };
    let matched = match table.lookup(ctx.port, req, scratch) {
        Decision::Matched(m) => m,
        Decision::NoListener | Decision::NoRoute { .. } => return respond(404),
    };
    ctx.matched = Some(matched);
    let rule = matched.rule;
    if let Some(redirect) = rule.redirect() {
        return Action::Respond {
            status: redirect.status_code,
            location: Some(filter::redirect_location(
                redirect,
                req.host(),
                ctx.port,
                req.target(),
            )),
        };
    }
    if let Some(status) = rule.fixed_status() {
        return respond(status);
    }
    match upstream::select(rule, rng) {
        Ok((backend, addr)) => {
            ctx.backend = Some(backend);
            ctx.upstream = Some(addr);
            Action::Forward {
                rule,
                backend,
                addr,
            }
        }
        Err(upstream::NoEndpoint(status)) => respond(status),
    }
}

/// Writes `name: value\r\n` per field.
pub fn write_fields(out: &mut Vec<u8>, fields: &Fields<'_>) {
    for (name, value) in fields {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// The request head forwarded to a backend, protocol-neutral: what
/// [`upstream_fields`] made of the client's.
#[derive(Debug)]
pub struct Forwarded<'a> {
    /// The fields, in order (the proxy writes framing itself).
    pub fields: Fields<'a>,
    /// The path after a URLRewrite, if the rule has one.
    pub path: Option<Vec<u8>>,
}

impl Forwarded<'_> {
    /// The forwarded origin-form target: the (rewritten) path and the
    /// client's query.
    pub fn target(&self, client_target: &[u8]) -> Vec<u8> {
        let (path, query) = filter::split_target(client_target);
        let mut target = self.path.clone().unwrap_or_else(|| path.to_vec());
        target.extend_from_slice(query);
        target
    }
}

/// The protocol-neutral part of `upstream_request_filter`: from the
/// client's `fields` (the caller has dropped its protocol's hop-by-hop
/// fields), `Expect` and `X-Forwarded-Proto` are dropped,
/// `X-Forwarded-For` gets the client's address appended, `X-Forwarded-Proto:
/// http` is set, `host` (when no field is named so) is added, and the
/// rule's request filters (RequestHeaderModifier, URLRewrite) are applied
/// in listed order. `target` is the client's request target.
pub fn upstream_fields<'a>(
    ctx: &Ctx<'_>,
    rule: &Rule,
    target: &[u8],
    fields: impl IntoIterator<Item = (Cow<'a, [u8]>, Cow<'a, [u8]>)>,
    host: Option<Cow<'a, [u8]>>,
) -> Forwarded<'a> {
    let fields = fields.into_iter();
    let mut forwarded_for: Vec<u8> = Vec::new();
    let mut out: Fields<'a> = Vec::with_capacity(fields.size_hint().0 + 4);
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(b"expect") || name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            forwarded_for.extend_from_slice(&value);
            forwarded_for.extend_from_slice(b", ");
            continue;
        }
        out.push((name, value));
    }
    if let Some(host) = host
        && !out.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"host"))
    {
        out.push((Cow::Borrowed(b"Host"), host));
    }
    write_ip(&mut forwarded_for, ctx.client.ip());
    out.push((Cow::Borrowed(b"X-Forwarded-For"), Cow::Owned(forwarded_for)));
    out.push((Cow::Borrowed(b"X-Forwarded-Proto"), Cow::Borrowed(b"http")));

    let (path, _) = filter::split_target(target);
    let mut new_path: Option<Vec<u8>> = None;
    for f in &rule.filters {
        match f {
            Filter::RequestHeaderModifier(m) => filter::modify_headers(&mut out, m),
            Filter::UrlRewrite(rewrite) => {
                if let Some(host) = &rewrite.hostname {
                    filter::set_header(&mut out, "host", Cow::Owned(host.as_bytes().to_vec()));
                }
                if let Some(m) = &rewrite.path {
                    new_path = Some(filter::modify_path(new_path.as_deref().unwrap_or(path), m));
                }
            }
            _ => {}
        }
    }
    Forwarded {
        fields: out,
        path: new_path,
    }
}

/// Writes an HTTP/1.1 request head: request line with the forwarded
/// target, the fields, the framing fields for `framing`, the blank line.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &[u8],
    client_target: &[u8],
    forwarded: &Forwarded<'_>,
    framing: Framing,
) {
    let (path, query) = filter::split_target(client_target);
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(forwarded.path.as_deref().unwrap_or(path));
    out.extend_from_slice(query);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, &forwarded.fields);
    write_request_framing(out, framing);
    out.extend_from_slice(b"\r\n");
}

/// Writes the framing field of a forwarded request body.
pub(crate) fn write_request_framing(out: &mut Vec<u8>, framing: Framing) {
    match framing {
        Framing::Length(n) => write_content_length(out, n),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty | Framing::UntilClose => {}
    }
}

/// Writes `Content-Length: n`.
fn write_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the textual form of `ip`, IPv4 without `core::fmt` (it is
/// written for every forwarded request).
pub(crate) fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Copies the lines of `head`'s fields that `keep` accepts (by name) from
/// `buf` to `out` as they were received, neighbouring lines in one copy.
fn copy_field_lines(out: &mut Vec<u8>, head: &Head, buf: &[u8], keep: impl Fn(&[u8]) -> bool) {
    let mut run: Option<std::ops::Range<usize>> = None;
    for (field, line) in head.field_lines() {
        if keep(field.name.get(buf)) {
            run = Some(run.map_or(line.clone(), |r| r.start..line.end));
        } else if let Some(r) = run.take() {
            out.extend_from_slice(buf.get(r).unwrap_or_default());
        }
    }
    if let Some(r) = run {
        out.extend_from_slice(buf.get(r).unwrap_or_default());
    }
}

/// Whether the rule's filters change the request head.
pub(crate) fn rewrites_request(rule: &Rule) -> bool {
    rule.filters
        .iter()
        .any(|f| matches!(f, Filter::RequestHeaderModifier(_) | Filter::UrlRewrite(_)))
}

/// Whether the matched rule's filters change the response head.
pub(crate) fn rewrites_response(ctx: &Ctx<'_>) -> bool {
    ctx.matched.is_some_and(|m| {
        m.rule
            .filters
            .iter()
            .any(|f| matches!(f, Filter::ResponseHeaderModifier(_)))
    })
}

/// `upstream_request_filter` for the common case — an HTTP/1.1 request,
/// no filter that changes its head, no upgrade — from the bytes the client
/// sent: the request line and every field line that stays go out as
/// received; only what the proxy owns is written (`X-Forwarded-For` with
/// the client's address appended, `X-Forwarded-Proto`, the framing). The
/// same fields, in the same order, as [`upstream_fields`] gives.
fn write_verbatim_request(ctx: &Ctx<'_>, req: Request<'_>, framing: Framing, out: &mut Vec<u8>) {
    let (head, buf) = (req.head, req.buf);
    out.extend_from_slice(buf.get(head.start_line()).unwrap_or_default());
    let hop = h1::HopByHop::new(head, buf);
    copy_field_lines(out, head, buf, |name| {
        !(name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"x-forwarded-proto")
            || name.eq_ignore_ascii_case(b"x-forwarded-for")
            || hop.contains(name))
    });
    out.extend_from_slice(b"X-Forwarded-For: ");
    for value in head.values(buf, "x-forwarded-for") {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    write_ip(out, ctx.client.ip());
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\n");
    write_request_framing(out, framing);
    out.extend_from_slice(b"\r\n");
}

/// `upstream_request_filter` for HTTP/1.1: the client's fields without its
/// hop-by-hop ones (except `Connection: upgrade` and `Upgrade` of a
/// WebSocket upgrade, see [`Ctx::upgrade`]) through [`upstream_fields`],
/// `Host` added when an HTTP/1.0 client sent none (the backend's address),
/// written by [`write_request_head`] with the proxy's framing into `out`.
/// Mirrors get the same head.
pub fn upstream_request_filter(
    ctx: &Ctx<'_>,
    rule: &Rule,
    req: Request<'_>,
    framing: Framing,
    out: &mut Vec<u8>,
) {
    if req.head.minor == 1 && !ctx.upgrade && !rewrites_request(rule) {
        return write_verbatim_request(ctx, req, framing, out);
    }
    let mut forwarded = forward_h1_fields(ctx, rule, req);
    if ctx.upgrade {
        let upgrade = req.header("upgrade").unwrap_or(b"websocket");
        forwarded
            .fields
            .push((Cow::Borrowed(b"Connection"), Cow::Borrowed(b"Upgrade")));
        forwarded
            .fields
            .push((Cow::Borrowed(b"Upgrade"), Cow::Borrowed(upgrade)));
    }
    write_request_head(out, req.method(), req.target(), &forwarded, framing);
}

/// An HTTP/1.1 request's fields as forwarded (see
/// [`upstream_request_filter`]); `Content-Length` and every hop-by-hop
/// field are left out.
pub fn forward_h1_fields<'a>(ctx: &Ctx<'_>, rule: &Rule, req: Request<'a>) -> Forwarded<'a> {
    let (head, buf) = (req.head, req.buf);
    let hop = h1::HopByHop::new(head, buf);
    let fields = head
        .fields(buf)
        .filter(move |(name, _)| !hop.contains(name))
        .map(|(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v)));
    let host = match (head.minor, ctx.upstream) {
        (0, Some(addr)) => Some(Cow::Owned(addr.to_string().into_bytes())),
        _ => None,
    };
    upstream_fields(ctx, rule, req.target(), fields, host)
}

/// How the proxy frames a response body towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body.
    Empty,
    /// Copy the backend's Content-Length body as is.
    Length,
    /// Re-encode as chunked (the backend's chunks are validated, or its
    /// close-delimited body is chunked).
    Chunked,
    /// Copy until the backend closes, then close (HTTP/1.0 clients).
    Raw,
}

/// `response_filter` for an HTTP/1.1 backend: writes the head sent to the
/// client into `out` (see [`response_head`]), from the backend's head
/// without its hop-by-hop fields.
pub fn response_filter(
    ctx: &mut Ctx<'_>,
    head: &Head,
    buf: &[u8],
    framing: Framing,
    out: &mut Vec<u8>,
) -> ClientFraming {
    // No filter touches the head: its field lines go out as received.
    let hop = h1::HopByHop::new(head, buf);
    if head.status != 101 && !rewrites_response(ctx) {
        let client_framing = client_framing(ctx, framing);
        ctx.status = head.status;
        write_status_line(out, head.status);
        copy_field_lines(out, head, buf, |name| !hop.contains(name));
        write_response_tail(ctx, head.status, framing, client_framing, None, out);
        return client_framing;
    }
    let fields: Fields<'_> = head
        .fields(buf)
        .filter(|(name, _)| !hop.contains(name))
        .map(|(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v)))
        .collect();
    let upgrade = head.values(buf, "upgrade").next();
    response_head(ctx, head.status, fields, framing, upgrade, out)
}

/// Applies the matched rule's ResponseHeaderModifiers to `fields`.
pub fn apply_response_filters(ctx: &Ctx<'_>, fields: &mut Fields<'_>) {
    if let Some(m) = ctx.matched {
        for f in &m.rule.filters {
            if let Filter::ResponseHeaderModifier(m) = f {
                filter::modify_headers(fields, m);
            }
        }
    }
}

/// `response_filter` towards an HTTP/1.1 client, for any backend: writes
/// the status line, `fields` (the backend's, hop-by-hop and framing fields
/// already dropped) after the rule's ResponseHeaderModifiers, and the
/// framing chosen for the client from the backend's `framing`, into `out`.
/// A `101 Switching Protocols` answer to a WebSocket upgrade
/// ([`Ctx::upgrade`]) keeps `Connection: Upgrade` and the backend's
/// `upgrade`; the connection then becomes a tunnel.
pub fn response_head(
    ctx: &mut Ctx<'_>,
    status: u16,
    mut fields: Fields<'_>,
    framing: Framing,
    upgrade: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> ClientFraming {
    let client_framing = client_framing(ctx, framing);
    apply_response_filters(ctx, &mut fields);
    ctx.status = status;
    write_status_line(out, status);
    write_fields(out, &fields);
    write_response_tail(ctx, status, framing, client_framing, upgrade, out);
    client_framing
}

/// How the body of a response with the backend's `framing` goes to the
/// client (an HTTP/1.0 client gets a close-delimited one: the connection
/// will close).
fn client_framing(ctx: &mut Ctx<'_>, framing: Framing) -> ClientFraming {
    match framing {
        Framing::Empty => ClientFraming::Empty,
        Framing::Length(_) => ClientFraming::Length,
        Framing::Chunked | Framing::UntilClose if ctx.client_minor >= 1 => ClientFraming::Chunked,
        Framing::Chunked | Framing::UntilClose => {
            ctx.keep_alive = false;
            ClientFraming::Raw
        }
    }
}

/// The end of a response head towards an HTTP/1.1 client: the framing
/// field, the connection fields, the blank line.
fn write_response_tail(
    ctx: &Ctx<'_>,
    status: u16,
    framing: Framing,
    client_framing: ClientFraming,
    upgrade: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    // A HEAD or 304 answer keeps the Content-Length of the body it stands
    // for; every other body is framed by the proxy.
    let keep_length = ctx.head_request || status == 304;
    match (framing, client_framing) {
        (Framing::Length(n), _) => write_content_length(out, n),
        (_, ClientFraming::Chunked) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        (Framing::Empty, _) if !keep_length && !(100..200).contains(&status) && status != 204 => {
            out.extend_from_slice(b"Content-Length: 0\r\n");
        }
        _ => {}
    }
    if status == 101 && ctx.upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: ");
        out.extend_from_slice(upgrade.unwrap_or(b"websocket"));
        out.extend_from_slice(b"\r\n");
    } else if !ctx.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if ctx.client_minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The body of the proxy's own text answers (`404 Not Found\n`).
pub fn answer_body(status: u16) -> String {
    format!("{status} {}\n", reason(status))
}

/// `fail_to_proxy`, and the proxy's own answers: writes a complete small
/// response with `status` (and `Location`) into `out`.
pub fn respond(ctx: &mut Ctx<'_>, status: u16, location: Option<&[u8]>, out: &mut Vec<u8>) {
    ctx.status = status;
    write_status_line(out, status);
    let body = answer_body(status);
    if let Some(location) = location {
        out.extend_from_slice(b"Location: ");
        out.extend_from_slice(location);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    if !ctx.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !ctx.head_request {
        out.extend_from_slice(body.as_bytes());
    }
}

/// `logging`: counts the request in the worker's metrics
/// ([`crate::metrics::record`]) and, when asked, logs one access-log line
/// (tracing target `access`: method, target, protocol, status, gRPC
/// status, route, backend, duration).
pub fn logging(ctx: &Ctx<'_>, access_log: bool) {
    let duration = ctx.start.elapsed();
    let backend = ctx.backend;
    crate::metrics::record(&crate::metrics::Request {
        listener: ctx.matched.map(|m| m.listener.name.as_str()),
        port: ctx.port,
        route: ctx.matched.map(|m| &m.route.name),
        rule: ctx.matched.map(|m| m.rule_index),
        backend,
        status: ctx.status,
        grpc_status: ctx.grpc_status,
        duration,
        connect_error: ctx.error == Some(Kind::UpstreamConnect),
    });
    if !access_log {
        return;
    }
    let (method, target) = ctx
        .request_line
        .as_deref()
        .and_then(|l| l.split_once(' '))
        .unwrap_or(("-", "-"));
    let route = ctx.matched.map_or_else(
        || "-".to_string(),
        |m| {
            format!(
                "{}/{}/{}#{}",
                m.route.kind, m.route.name.namespace, m.route.name.name, m.rule_index
            )
        },
    );
    let backend = backend.map_or_else(
        || "-".to_string(),
        |b| format!("{}/{}:{}", b.service.namespace, b.service.name, b.port),
    );
    let upstream = ctx
        .upstream
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    let error = ctx.error.map_or_else(|| "-".to_string(), |e| e.to_string());
    let grpc_status = ctx
        .grpc_status
        .map_or_else(|| "-".to_string(), |c| c.to_string());
    tracing::info!(
        target: "access",
        client = %ctx.client,
        method,
        target,
        protocol = ctx.protocol.as_str(),
        status = ctx.status,
        grpc_status,
        route,
        backend,
        upstream,
        duration_ms = duration.as_secs_f64() * 1000.0,
        error,
    );
}

fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The canonical reason phrase of `status` (empty when unknown).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use route_compiler::Build;

    const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: t}
spec:
  gatewayClassName: sluice
  listeners: [{name: http, protocol: HTTP, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: t}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: b, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: b-1, namespace: t, labels: {kubernetes.io/service-name: b}}
addressType: IPv4
ports: [{port: 9000}]
endpoints: [{addresses: [127.0.0.1]}]
"#;

    /// A parsed head's fields with the values as a parser sees them.
    fn fields_of(head: &Head, buf: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        head.fields(buf)
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
            .collect()
    }

    /// `bytes` parsed as one whole head by `parse`.
    fn parsed(bytes: &[u8], parse: fn(&[u8], &mut Head) -> Result<bool, h1::CodecError>) -> Head {
        let mut head = Head::default();
        assert!(parse(bytes, &mut head).unwrap());
        assert_eq!(head.len, bytes.len());
        head
    }

    /// The verbatim paths write what the general ones (every field
    /// re-serialized) write, but for the fields' optional whitespace.
    #[test]
    fn verbatim_heads_equal_the_rebuilt_ones() {
        let build = Build::from_text(&[("r.yaml", ROUTES)]).unwrap();
        let client: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let requests: &[&[u8]] = &[
            b"GET /a?q=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
            b"POST /p HTTP/1.1\r\nHost:h \r\nX-Forwarded-For: 1.1.1.1\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nContent-Length: 3\r\nExpect: 100-continue\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 2.2.2.2\r\nX-Last:  v \r\n\r\nabc",
            b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: h\r\nTE: trailers\r\n\r\n",
        ];
        for bytes in requests {
            let mut head = Head::default();
            assert!(h1::parse_request(bytes, &mut head).unwrap());
            let req = Request {
                head: &head,
                buf: bytes,
            };
            let mut ctx = Ctx::new(client, 8080);
            let framing = request_filter(&mut ctx, &head, bytes, false).unwrap();
            let mut scratch = build.table.scratch();
            let mut rng = rand::rng();
            let Action::Forward { rule, .. } =
                route(&mut ctx, &build.table, &req, &mut scratch, &mut rng)
            else {
                panic!("no route");
            };
            let mut verbatim = Vec::new();
            upstream_request_filter(&ctx, rule, req, framing, &mut verbatim);
            let mut rebuilt = Vec::new();
            let forwarded = forward_h1_fields(&ctx, rule, req);
            write_request_head(
                &mut rebuilt,
                req.method(),
                req.target(),
                &forwarded,
                framing,
            );

            let a = parsed(&verbatim, h1::parse_request);
            let b = parsed(&rebuilt, h1::parse_request);
            assert_eq!(verbatim[a.start_line()], rebuilt[b.start_line()]);
            assert_eq!(fields_of(&a, &verbatim), fields_of(&b, &rebuilt));
            let forwarded_for = a.values(&verbatim, "x-forwarded-for").collect::<Vec<_>>();
            assert_eq!(forwarded_for.len(), 1);
            assert!(forwarded_for[0].ends_with(b"10.1.2.3"));
        }

        let responses: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: s\r\n\r\nok",
            b"HTTP/1.0 404 Nope\r\nConnection: close, x-a\r\nX-A: 1\r\nX-B:  2 \r\n\r\n",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n",
        ];
        for bytes in responses {
            let mut head = Head::default();
            assert!(h1::parse_response(bytes, &mut head).unwrap());
            let framing = h1::response_framing(&head, bytes, false).unwrap();
            let mut ctx = Ctx::new(client, 8080);
            let mut verbatim = Vec::new();
            let v = response_filter(&mut ctx, &head, bytes, framing, &mut verbatim);
            let hop = h1::HopByHop::new(&head, bytes);
            let fields: Fields<'_> = head
                .fields(bytes)
                .filter(|(name, _)| !hop.contains(name))
                .map(|(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v)))
                .collect();
            let mut ctx = Ctx::new(client, 8080);
            let mut rebuilt = Vec::new();
            let r = response_head(&mut ctx, head.status, fields, framing, None, &mut rebuilt);
            assert_eq!(v, r);
            let a = parsed(&verbatim, h1::parse_response);
            let b = parsed(&rebuilt, h1::parse_response);
            assert_eq!(a.status, b.status);
            assert_eq!(fields_of(&a, &verbatim), fields_of(&b, &rebuilt));
        }
    }

    #[test]
    fn addresses_and_lengths_are_written_without_fmt() {
        let mut out = Vec::new();
        write_ip(&mut out, "192.168.0.255".parse().unwrap());
        out.push(b' ');
        write_ip(&mut out, "::1".parse().unwrap());
        assert_eq!(out, b"192.168.0.255 ::1");
        out.clear();
        write_content_length(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(out, b"Content-Length: 18446744073709551615\r\n");
        out.clear();
        write_status_line(&mut out, 299);
        assert_eq!(out, b"HTTP/1.1 299 \r\n");
    }
}
