//! The phases of one proxied request, named as pingora names them.
//!
//! ```text
//! read head ─▶ request_filter ─▶ route ─┬─▶ (answer: 404/500/503/3xx) ─────────────┐
//!                                       └─▶ upstream_request_filter ─▶ exchange ─┬─▶ response_filter ─▶ body ─▶ logging
//!                                                      fail_to_connect / error_while_proxy ─┴─▶ fail_to_proxy ─▶ logging
//! ```
//!
//! State of a request lives in [`Ctx`]. Each phase is a plain function of
//! the context and the parsed head: the connection loop in
//! [`crate::proto::h1`] calls them in order.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use route_compiler::route::{Filter, Rule};
use route_compiler::table::{Decision, Matched, RequestView, Table};

use crate::codec::h1::{self, Framing, Head, Request};
use crate::error::{Error, Kind};
use crate::filter::{self, Fields};
use crate::upstream;

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
    /// The backend endpoint chosen.
    pub upstream: Option<SocketAddr>,
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
            upstream: None,
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
/// backend endpoint, or decides the proxy's own answer.
pub fn route<'t>(
    ctx: &mut Ctx<'t>,
    table: &'t Table,
    req: Request<'_>,
    scratch: &mut route_compiler::automaton::Scratch,
    rng: &mut impl Rng,
) -> Action<'t> {
    let respond = |status| Action::Respond {
        status,
        location: None,
    };
    let matched = match table.lookup(ctx.port, &req, scratch) {
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
        Ok(addr) => {
            ctx.upstream = Some(addr);
            Action::Forward { rule, addr }
        }
        Err(upstream::NoEndpoint(status)) => respond(status),
    }
}

fn write_fields(out: &mut Vec<u8>, fields: &Fields<'_>) {
    for (name, value) in fields {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// `upstream_request_filter`: writes the head forwarded to the backend into
/// `out`: hop-by-hop fields dropped (except `Connection: upgrade` and
/// `Upgrade` of a WebSocket upgrade, see [`Ctx::upgrade`]),
/// `X-Forwarded-For` appended, `X-Forwarded-Proto` set, `Host` added when
/// an HTTP/1.0 client sent none (the backend's address), the rule's request
/// filters applied in listed order, framing written by the proxy. Mirrors
/// get the same head.
pub fn upstream_request_filter(
    ctx: &Ctx<'_>,
    rule: &Rule,
    req: Request<'_>,
    framing: Framing,
    out: &mut Vec<u8>,
) {
    let (head, buf) = (req.head, req.buf);
    let mut forwarded_for: Vec<u8> = Vec::new();
    let mut fields: Fields<'_> = Vec::with_capacity(head.headers.len() + 4);
    for (name, value) in head.fields(buf) {
        if h1::is_hop_by_hop(head, buf, name)
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"x-forwarded-proto")
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            forwarded_for.extend_from_slice(value);
            forwarded_for.extend_from_slice(b", ");
            continue;
        }
        fields.push((Cow::Borrowed(name), Cow::Borrowed(value)));
    }
    if head.minor == 0
        && !fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"host"))
        && let Some(addr) = ctx.upstream
    {
        fields.push((
            Cow::Borrowed(b"Host"),
            Cow::Owned(addr.to_string().into_bytes()),
        ));
    }
    forwarded_for.extend_from_slice(ctx.client.ip().to_string().as_bytes());
    fields.push((Cow::Borrowed(b"X-Forwarded-For"), Cow::Owned(forwarded_for)));
    fields.push((Cow::Borrowed(b"X-Forwarded-Proto"), Cow::Borrowed(b"http")));

    let (path, query) = filter::split_target(req.target());
    let mut new_path: Option<Vec<u8>> = None;
    for f in &rule.filters {
        match f {
            Filter::RequestHeaderModifier(m) => filter::modify_headers(&mut fields, m),
            Filter::UrlRewrite(rewrite) => {
                if let Some(host) = &rewrite.hostname {
                    filter::set_header(&mut fields, "host", Cow::Owned(host.as_bytes().to_vec()));
                }
                if let Some(m) = &rewrite.path {
                    new_path = Some(filter::modify_path(new_path.as_deref().unwrap_or(path), m));
                }
            }
            _ => {}
        }
    }

    out.extend_from_slice(req.method());
    out.push(b' ');
    out.extend_from_slice(new_path.as_deref().unwrap_or(path));
    out.extend_from_slice(query);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, &fields);
    if ctx.upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: ");
        out.extend_from_slice(req.header("upgrade").unwrap_or(b"websocket"));
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty | Framing::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
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

/// `response_filter`: writes the head sent to the client into `out`:
/// hop-by-hop fields dropped, the rule's ResponseHeaderModifiers applied,
/// framing chosen for the client. A `101 Switching Protocols` answer to a
/// WebSocket upgrade ([`Ctx::upgrade`]) keeps `Connection: Upgrade` and the
/// backend's `Upgrade`; the connection then becomes a tunnel.
pub fn response_filter(
    ctx: &mut Ctx<'_>,
    head: &Head,
    buf: &[u8],
    framing: Framing,
    out: &mut Vec<u8>,
) -> ClientFraming {
    let client_framing = match framing {
        Framing::Empty => ClientFraming::Empty,
        Framing::Length(_) => ClientFraming::Length,
        Framing::Chunked | Framing::UntilClose if ctx.client_minor >= 1 => ClientFraming::Chunked,
        Framing::Chunked | Framing::UntilClose => {
            ctx.keep_alive = false;
            ClientFraming::Raw
        }
    };
    // A HEAD or 304 answer keeps the Content-Length of the body it stands
    // for; every other body is framed by the proxy.
    let keep_length = ctx.head_request || head.status == 304;
    let mut fields: Fields<'_> = Vec::with_capacity(head.headers.len() + 2);
    for (name, value) in head.fields(buf) {
        let is_length = name.eq_ignore_ascii_case(b"content-length");
        if h1::is_hop_by_hop(head, buf, name) || (is_length && !keep_length) {
            continue;
        }
        fields.push((Cow::Borrowed(name), Cow::Borrowed(value)));
    }
    if let Some(m) = ctx.matched {
        for f in &m.rule.filters {
            if let Filter::ResponseHeaderModifier(m) = f {
                filter::modify_headers(&mut fields, m);
            }
        }
    }
    ctx.status = head.status;
    write_status_line(out, head.status);
    write_fields(out, &fields);
    match (framing, client_framing) {
        (Framing::Length(n), _) => {
            out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes())
        }
        (_, ClientFraming::Chunked) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        (Framing::Empty, _)
            if !keep_length && !(100..200).contains(&head.status) && head.status != 204 =>
        {
            out.extend_from_slice(b"Content-Length: 0\r\n");
        }
        _ => {}
    }
    if head.status == 101 && ctx.upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: ");
        out.extend_from_slice(head.values(buf, "upgrade").next().unwrap_or(b"websocket"));
        out.extend_from_slice(b"\r\n");
    } else if !ctx.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if ctx.client_minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    client_framing
}

/// `fail_to_proxy`, and the proxy's own answers: writes a complete small
/// response with `status` (and `Location`) into `out`.
pub fn respond(ctx: &mut Ctx<'_>, status: u16, location: Option<&[u8]>, out: &mut Vec<u8>) {
    ctx.status = status;
    write_status_line(out, status);
    let body = format!("{status} {}\n", reason(status));
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
/// (tracing target `access`: method, target, status, route, backend,
/// duration).
pub fn logging(ctx: &Ctx<'_>, access_log: bool) {
    let duration = ctx.start.elapsed();
    let backend = ctx
        .matched
        .zip(ctx.upstream)
        .and_then(|(m, addr)| m.rule.backends.iter().find(|b| b.endpoints.contains(&addr)));
    crate::metrics::record(&crate::metrics::Request {
        listener: ctx.matched.map(|m| m.listener.name.as_str()),
        port: ctx.port,
        route: ctx.matched.map(|m| &m.route.name),
        rule: ctx.matched.map(|m| m.rule_index),
        backend,
        status: ctx.status,
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
    tracing::info!(
        target: "access",
        client = %ctx.client,
        method,
        target,
        status = ctx.status,
        route,
        backend,
        upstream,
        duration_ms = duration.as_secs_f64() * 1000.0,
        error,
    );
}

fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
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
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}
