//! The HTTP/2 (h2c, prior knowledge) connection loop: the `h2` crate's
//! server over [`crate::io::compat::Stream`]; the streams run in the
//! connection's task ([`crate::subtasks`]).
//!
//! Each stream is routed on its own with the route table (GRPCRoutes for
//! gRPC requests, HTTPRoutes for the rest) by the same phase functions as
//! an HTTP/1.1 request ([`crate::phase::route`],
//! [`crate::phase::upstream_fields`], [`crate::phase::apply_response_filters`]),
//! and is forwarded:
//!
//! * to an HTTP/1.1 backend (the default for non-gRPC requests): the
//!   stream's head becomes an HTTP/1.1 request head, its DATA is written as a
//!   Content-Length or chunked body on a pooled keep-alive connection, and
//!   the response is read with [`crate::codec::h1`] and sent back as
//!   HEADERS + DATA;
//! * to an h2c backend (gRPC requests, and backends whose port says
//!   `appProtocol: kubernetes.io/h2c`): over the worker's multiplexed
//!   connection from [`crate::upstream::h2`], both directions at once
//!   (bidirectional streaming), trailers passed through.
//!
//! RequestMirror filters are honoured as for HTTP/1.1 ([`crate::mirror`]):
//! the mirrors get the HTTP/1.1 form of the forwarded head and a copy of
//! every DATA frame as it is forwarded (chunked when the client sent no
//! `content-length`), through a [`Tee`] that never waits.
//!
//! On a drain ([`Worker::drained`]) a connection sends GOAWAY and its open
//! streams finish.
//!
//! ```text
//! accept ─▶ route ─┬─▶ (answer: 404/500/503/3xx, gRPC: trailers-only status) ─────────┐
//!                  ├─▶ forward_h1: head ─▶ body ─▶ response head ─▶ body ─────────────┤
//!                  └─▶ forward_h2: request ⇄ upstream stream ⇄ response (+ trailers) ─┴─▶ logging
//! ```
//!
//! # Flow control and memory
//!
//! Bodies are never buffered beyond the HTTP/2 windows: request DATA is
//! acknowledged to the client (`release_capacity`) only once it has been
//! handed to the backend, and response DATA is only read from the backend
//! once the client's stream has capacity for it (`poll_capacity`). So the
//! proxy holds at most about one window per direction per stream, and the
//! connection window bounds the sum over a connection's streams.
//!
//! # Protection
//!
//! Limits are set explicitly (see the `DEFAULT_*` constants): concurrent
//! streams, header list size (which also bounds CONTINUATION floods), frame
//! size, windows, the `h2` crate's bounds on streams reset before they were
//! accepted and on resets the proxy is forced to send (CVE-2023-44487), plus
//! a per-connection bound on streams the client resets after they were
//! accepted ([`DEFAULT_MAX_CLIENT_RESETS_PER_SECOND`]), and an idle timeout.
//!
//! # gRPC
//!
//! Errors the proxy produces itself for a gRPC request are answered in gRPC
//! form: HTTP 200, `content-type: application/grpc`, and a trailers-only
//! HEADERS frame with `grpc-status`: no route → 12 UNIMPLEMENTED, no
//! reachable backend (502/503) → 14 UNAVAILABLE, timeout → 4
//! DEADLINE_EXCEEDED, an invalid backend (500) → 13 INTERNAL. `grpc-timeout`
//! bounds the whole call, together with the rule's timeouts.

use std::borrow::Cow;
use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::{self, SendResponse};
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use route_compiler::route::{Rule, UpstreamProtocol};
use route_compiler::table::{RequestView, is_grpc};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_uring::net::TcpStream;

use crate::codec::h1::{self, CHUNKED_END, Framing, Head};
use crate::codec::h2::FrameCheck;
use crate::error::{Error, Kind};
use crate::filter::Fields;
use crate::io::{self, Arrival, Conn, compat};
use crate::mirror::{self, Tee};
use crate::phase::{self, Action, Ctx, Protocol};
use crate::proto::bridge::{self, CopyError, FROM_BACKEND, PumpError};
use crate::runtime::Worker;
use crate::subtasks::SubTasks;
use crate::upstream;

/// Most streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS,
/// RFC 9113 §6.5.2).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;

/// Largest header list accepted from a client (SETTINGS_MAX_HEADER_LIST_SIZE,
/// RFC 9113 §6.5.2), the HTTP/1.1 head limit's counterpart. A HEADERS +
/// CONTINUATION sequence beyond it is refused, which also bounds
/// CONTINUATION floods.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// Largest frame payload accepted (SETTINGS_MAX_FRAME_SIZE, RFC 9113
/// §4.2: the minimum every peer must accept).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16 * 1024;

/// Initial stream window advertised to clients (SETTINGS_INITIAL_WINDOW_SIZE,
/// RFC 9113 §6.9.2): what one request stream can have in flight towards the
/// proxy.
pub const DEFAULT_STREAM_WINDOW: u32 = 256 * 1024;

/// Connection window advertised to clients (RFC 9113 §6.9.1): what all the
/// streams of one connection can have in flight towards the proxy.
pub const DEFAULT_CONNECTION_WINDOW: u32 = 1024 * 1024;

/// Most bytes queued for sending on one stream to a client.
pub const DEFAULT_MAX_SEND_BUFFER: usize = 64 * 1024;

/// Streams the client may open and reset before the proxy accepts them,
/// queued at once; beyond it the connection gets GOAWAY(ENHANCE_YOUR_CALM)
/// (the `h2` crate's CVE-2023-44487 bound).
pub const DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// Resets the proxy may be forced to send for a client's protocol errors
/// before the connection gets GOAWAY(ENHANCE_YOUR_CALM).
pub const DEFAULT_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;

/// Streams a client may reset after they were accepted, per second of a
/// connection, before the connection gets GOAWAY(ENHANCE_YOUR_CALM): each
/// such stream may already have cost a backend request (rapid reset).
pub const DEFAULT_MAX_CLIENT_RESETS_PER_SECOND: u32 = 200;

// === connection ===

/// Per-connection state shared by its stream tasks.
#[derive(Debug)]
struct ConnState {
    /// Start of the current one-second reset window.
    window: Cell<Instant>,
    /// Client resets of accepted streams in the current window.
    resets: Cell<u32>,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            window: Cell::new(Instant::now()),
            resets: Cell::new(0),
        }
    }

    /// Records that the client reset an accepted stream.
    fn note_reset(&self) {
        if self.window.get().elapsed() >= Duration::from_secs(1) {
            self.window.set(Instant::now());
            self.resets.set(0);
        }
        self.resets.set(self.resets.get().saturating_add(1));
    }

    /// Whether the client resets streams faster than allowed.
    fn too_many_resets(&self) -> bool {
        self.window.get().elapsed() < Duration::from_secs(1)
            && self.resets.get() > DEFAULT_MAX_CLIENT_RESETS_PER_SECOND
    }
}

/// The server settings every h2c connection gets.
fn builder() -> server::Builder {
    let mut b = server::Builder::new();
    b.max_concurrent_streams(DEFAULT_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(DEFAULT_MAX_HEADER_LIST_SIZE)
        .max_frame_size(DEFAULT_MAX_FRAME_SIZE)
        .initial_window_size(DEFAULT_STREAM_WINDOW)
        .initial_connection_window_size(DEFAULT_CONNECTION_WINDOW)
        .max_send_buffer_size(DEFAULT_MAX_SEND_BUFFER)
        .max_pending_accept_reset_streams(DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(Some(DEFAULT_MAX_LOCAL_ERROR_RESET_STREAMS));
    b
}

/// Serves one h2c client connection whose first bytes (the preface, and
/// maybe more) are in `initial`, until it closes, fails, or has been idle
/// (no open stream) for the runtime's header timeout.
pub async fn serve(
    worker: Rc<Worker>,
    stream: TcpStream,
    initial: Vec<u8>,
    client: SocketAddr,
    port: u16,
) {
    let idle = worker.config.header_timeout;
    let io = compat::Stream::new(stream, initial);
    let socket = io.socket_handle();
    let verdict = Rc::new(Cell::new(Verdict::None));
    let io = Guarded {
        inner: io,
        check: FrameCheck::new(DEFAULT_MAX_FRAME_SIZE),
        preface_left: crate::proto::H2_PREFACE.len(),
        verdict: verdict.clone(),
        goaway: None,
    };
    let handshake = tokio::time::timeout(idle, builder().handshake::<_, Bytes>(io)).await;
    let Ok(Ok(mut conn)) = handshake else {
        goaway_on_violation(&socket, &verdict).await;
        return;
    };
    let state = Rc::new(ConnState::new());
    let new_stream = |request, respond| {
        serve_stream(
            worker.clone(),
            state.clone(),
            request,
            respond,
            client,
            port,
        )
    };
    let mut streams = SubTasks::with_capacity(DEFAULT_MAX_CONCURRENT_STREAMS as usize);
    let ended = drive(&mut conn, &mut streams, new_stream, &state, &worker, idle).await;
    if ended {
        drop(conn);
        goaway_on_violation(&socket, &verdict).await;
    } else {
        // Flush the GOAWAY and let open streams finish.
        let closing = poll_fn(|cx| streams.poll_with(cx, |own| conn.poll_closed(own)));
        let _ = tokio::time::timeout(idle, closing).await;
        drop(conn);
    }
    // Streams still running end on their own (the connection is gone, so
    // they only finish their backend side, metrics and access log).
    streams.finish().await;
}

/// A GOAWAY frame (RFC 9113 §6.8) without debug data.
fn goaway_frame(code: u32, last_stream: u32) -> Vec<u8> {
    let mut frame = vec![0, 0, 8, 0x7, 0, 0, 0, 0, 0];
    frame.extend_from_slice(&last_stream.to_be_bytes());
    frame.extend_from_slice(&code.to_be_bytes());
    frame
}

/// Writes GOAWAY with the code of a frame-size violation the guard found,
/// if `h2` did not write it while closing.
async fn goaway_on_violation(socket: &TcpStream, verdict: &Cell<Verdict>) {
    if let Verdict::Pending { code, last_stream } = verdict.get() {
        verdict.set(Verdict::Sent);
        let _ = io::write_all(socket, &mut goaway_frame(code, last_stream)).await;
    }
}

/// Accepts streams until the connection ends (`true`: it is over) or is
/// being shut down by the proxy for being idle (`false`: drive it to its
/// close). When the worker drains, the connection is shut down gracefully
/// (GOAWAY, RFC 9113 §6.8) and streams are still accepted and served until
/// the client has seen the final GOAWAY and every open stream has ended.
async fn drive<F: Future<Output = ()> + 'static>(
    conn: &mut server::Connection<Guarded, Bytes>,
    streams: &mut SubTasks<F>,
    new_stream: impl Fn(http::Request<RecvStream>, SendResponse<Bytes>) -> F,
    state: &Rc<ConnState>,
    worker: &Rc<Worker>,
    idle: Duration,
) -> bool {
    let mut draining = false;
    // One idle timer for the connection, not one per stream: when it fires
    // after streams were accepted it is pushed back instead (so an idle
    // connection closes between `idle` and twice that after its last
    // stream began, and the request path never touches the timer wheel).
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let mut drain = worker.drain_signal();
    let mut accepted: u64 = 0;
    let mut accepted_when_armed: u64 = 0;
    loop {
        // The connection's own work, polled only when its waker fired (the
        // streams run in between, see `SubTasks::poll_with`). A stream
        // already received is taken before the drain is looked at.
        let event = poll_fn(|cx| {
            streams.poll_with(cx, |own| {
                if let Poll::Ready(next) = conn.poll_accept(own) {
                    return Poll::Ready(Event::Next(next));
                }
                if !draining && Pin::new(&mut drain).poll(own).is_ready() {
                    return Poll::Ready(Event::Drain);
                }
                if idle_timer.as_mut().poll(own).is_ready() {
                    return Poll::Ready(Event::Idle);
                }
                Poll::Pending
            })
        })
        .await;
        match event {
            Event::Next(Some(Ok((request, respond)))) => {
                accepted += 1;
                if state.too_many_resets() {
                    conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                    return false;
                }
                streams.push(new_stream(request, respond));
            }
            // A connection error (the crate has sent GOAWAY) or the end.
            Event::Next(Some(Err(_)) | None) => return true,
            Event::Drain => {
                // GOAWAY; streams already open run to their end, and
                // accept() ends once they have.
                conn.graceful_shutdown();
                draining = true;
            }
            Event::Idle if conn.has_streams() || accepted != accepted_when_armed => {
                accepted_when_armed = accepted;
                if streams.is_empty() {
                    streams.trim();
                }
                idle_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + idle);
            }
            Event::Idle => {
                streams.trim();
                conn.graceful_shutdown();
                return false;
            }
        }
    }
}

/// A stream `h2` accepted: its request and where its response goes.
type Accepted = (http::Request<RecvStream>, SendResponse<Bytes>);

/// What woke [`drive`]'s connection.
#[expect(
    clippy::large_enum_variant,
    reason = "made and matched once per event; boxing would allocate per stream"
)]
enum Event {
    /// `h2`'s next stream, a connection error, or the end.
    Next(Option<Result<Accepted, h2::Error>>),
    /// The worker started draining.
    Drain,
    /// The idle timer fired.
    Idle,
}

// === impl Guarded ===

/// What the frame guard found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing wrong so far.
    None,
    /// A frame broke a size rule; GOAWAY with `code` is owed.
    Pending { code: u32, last_stream: u32 },
    /// The GOAWAY is written (or being written).
    Sent,
}

/// The client's byte stream with a [`FrameCheck`] in its read path: bytes
/// from the first frame whose size breaks RFC 9113 on are withheld from
/// `h2` (it sees the end of the stream), and the GOAWAY owed is written
/// when `h2` shuts the stream down (or by [`serve`] after it).
struct Guarded {
    inner: compat::Stream,
    check: FrameCheck,
    preface_left: usize,
    verdict: Rc<Cell<Verdict>>,
    /// The GOAWAY being written on shutdown, and how much of it is out.
    goaway: Option<(Vec<u8>, usize)>,
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.verdict.get() != Verdict::None {
            return Poll::Ready(Ok(()));
        }
        let before = out.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
        let new = &out.filled()[before..];
        let preface = this.preface_left.min(new.len());
        this.preface_left -= preface;
        if let Err(v) = this.check.feed(&new[preface..]) {
            this.verdict.set(Verdict::Pending {
                code: v.code,
                last_stream: this.check.last_stream(),
            });
            out.set_filled(before + preface + v.at);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Verdict::Pending { code, last_stream } = this.verdict.get() {
            this.verdict.set(Verdict::Sent);
            this.goaway = Some((goaway_frame(code, last_stream), 0));
        }
        while let Some((frame, written)) = this.goaway.as_mut() {
            if *written == frame.len() {
                this.goaway = None;
                break;
            }
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &frame[*written..]))?;
            *written += n;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

// === the request as the router sees it ===

/// An HTTP/2 request head as a [`RequestView`]: `:method`, `:authority`
/// (else the `host` field) as host, `:path` as target.
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    parts: &'a Parts,
}

impl RequestView for View<'_> {
    fn method(&self) -> &[u8] {
        self.parts.method.as_str().as_bytes()
    }

    fn host(&self) -> &[u8] {
        host_of(self.parts)
    }

    fn target(&self) -> &[u8] {
        target_of(self.parts)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        let headers = &self.parts.headers;
        // Asked for every stream (is it gRPC?): looked up by the parsed
        // name, without parsing the string again.
        let value = match name {
            "content-type" => headers.get(header::CONTENT_TYPE),
            _ => headers.get(name),
        };
        value.map(HeaderValue::as_bytes)
    }
}

/// `:authority`, else the `host` field, else empty.
fn host_of(parts: &Parts) -> &[u8] {
    match parts.uri.authority() {
        Some(a) => a.as_str().as_bytes(),
        None => parts
            .headers
            .get("host")
            .map_or(&b""[..], HeaderValue::as_bytes),
    }
}

/// `:path` (`/` when absent).
fn target_of(parts: &Parts) -> &[u8] {
    parts
        .uri
        .path_and_query()
        .map_or(&b"/"[..], |pq| pq.as_str().as_bytes())
}

// === one stream ===

/// How a forwarded stream ended badly.
#[derive(Debug)]
enum Failure {
    /// Nothing was sent to the client yet: answer this error.
    BeforeResponse(Error),
    /// The response head was sent: end the stream abruptly.
    AfterResponse(Error),
    /// The client reset the stream: nothing more to send.
    ClientReset,
}

/// The phases of one stream: `route` ([`phase::route`]), mirrors chosen
/// ([`mirror::select`]), `upstream_request_filter` ([`forwarded_fields`]),
/// the exchange with an HTTP/1.1 ([`forward_h1`]) or h2c ([`forward_h2`])
/// backend with the body teed to the mirrors, `logging`.
async fn serve_stream(
    worker: Rc<Worker>,
    conn: Rc<ConnState>,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    client: SocketAddr,
    port: u16,
) {
    let log = worker.config.access_log;
    // Held until the stream ends: it finishes on the table it started with.
    let snapshot = worker.snapshot.current();
    let table = &snapshot.table;
    let mut ctx = Ctx::new(client, port);
    ctx.protocol = Protocol::Http2;
    let (parts, body) = request.into_parts();
    let view = View { parts: &parts };
    let grpc = is_grpc(&view);
    ctx.head_request = parts.method == http::Method::HEAD;
    if log {
        ctx.request_line = Some(format!(
            "{} {}",
            parts.method,
            String::from_utf8_lossy(view.target())
        ));
    }
    let target = view.target();
    if parts.method == http::Method::CONNECT || !(target.starts_with(b"/") || target == b"*") {
        ctx.error = Some(Kind::DownstreamMalformedHead(
            h1::CodecError::BadHostOrTarget,
        ));
        answer(&mut ctx, &mut respond, grpc, 400, None);
        phase::logging(&ctx, log);
        return;
    }

    let mut mirrors = Vec::new();
    let action = {
        let mut scratch = snapshot.scratch.borrow_mut();
        let mut rng = worker.rng.borrow_mut();
        let action = phase::route(&mut ctx, table, &view, &mut scratch, &mut *rng);
        if let Action::Forward { rule, .. } = action {
            mirror::select(rule, &mut *rng, &mut mirrors);
        }
        action
    };
    let (rule, backend, addr) = match action {
        Action::Respond { status, location } => {
            answer(&mut ctx, &mut respond, grpc, status, location.as_deref());
            phase::logging(&ctx, log);
            return;
        }
        Action::Forward {
            rule,
            backend,
            addr,
        } => (rule, backend, addr),
    };
    // gRPC always goes over h2c.
    let h2 = grpc || backend.protocol == UpstreamProtocol::H2c;
    let framing = request_framing(&parts, &body);
    // The HTTP/1.1 head: what an HTTP/1.1 backend and the mirrors get.
    let mut h1_head = Vec::new();
    if !h2 || !mirrors.is_empty() {
        h1_head = worker.bufs.get_small();
        if phase::rewrites_request(rule) {
            let forwarded = forwarded_fields(&ctx, rule, &parts, false);
            phase::write_request_head(&mut h1_head, view.method(), target, &forwarded, framing);
        } else {
            write_h1_request_head(&ctx, &parts, framing, &mut h1_head);
        }
    }
    let mut tee = Tee::start_body(&worker, &mirrors, &h1_head, framing, ctx.backend_timeout());

    let deadline = deadline(&ctx, &parts.headers, grpc);
    let mut sent: Option<SendStream<Bytes>> = None;
    let result = {
        let stream = Stream {
            respond: &mut respond,
            sent: &mut sent,
            tee: &mut tee,
        };
        if h2 {
            // Boxed: the h2c exchange's state is not carried by every
            // stream's task (the HTTP/1.1 one is the common case).
            let forward = Box::pin(forward_h2(&mut ctx, rule, addr, &parts, body, stream));
            match deadline {
                Some(limit) => tokio::time::timeout(limit, forward).await.ok(),
                None => Some(forward.await),
            }
        } else {
            // The HTTP/1.1 path applies the deadline to the response head
            // itself, as the HTTP/1.1 loop does.
            let forward = forward_h1(
                &worker, &mut ctx, addr, h1_head, framing, body, stream, deadline,
            );
            Some(forward.await)
        }
    };
    drop(tee);
    let result = result.unwrap_or_else(|| {
        let e = Error::new(Kind::UpstreamTimeout);
        Err(if sent.is_none() {
            Failure::BeforeResponse(e)
        } else {
            Failure::AfterResponse(e)
        })
    });
    match result {
        Ok(()) => {}
        Err(Failure::ClientReset) => {
            conn.note_reset();
            ctx.error = Some(Kind::DownstreamIo);
        }
        Err(Failure::BeforeResponse(e)) => {
            ctx.error = Some(e.kind());
            let status = e.status().unwrap_or(502);
            answer(&mut ctx, &mut respond, grpc, status, None);
        }
        Err(Failure::AfterResponse(e)) => {
            ctx.error = Some(e.kind());
            if let Some(send) = sent.as_mut() {
                if grpc {
                    let (code, message) = grpc_status(e.status().unwrap_or(502));
                    ctx.grpc_status = Some(code);
                    let _ = send.send_trailers(grpc_trailers(code, message));
                } else {
                    send.send_reset(Reason::INTERNAL_ERROR);
                }
            }
        }
    }
    phase::logging(&ctx, log);
}

/// The client's side of a stream being forwarded: where the response goes
/// and where the request body is teed.
struct Stream<'s> {
    respond: &'s mut SendResponse<Bytes>,
    /// The response body stream, once the response head was sent.
    sent: &'s mut Option<SendStream<Bytes>>,
    tee: &'s mut Tee,
}

/// How the request body is framed towards an HTTP/1.1 backend (and the
/// mirrors): none when the HEADERS frame ended the stream, the client's
/// `content-length` when it sent one, else chunked.
fn request_framing(parts: &Parts, body: &RecvStream) -> Framing {
    if body.is_end_stream() {
        return Framing::Empty;
    }
    match parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

/// The time the exchange may take: the rule's timeouts and, for gRPC, the
/// client's `grpc-timeout`, whichever is shortest.
fn deadline(ctx: &Ctx<'_>, headers: &HeaderMap, grpc: bool) -> Option<Duration> {
    let rule = ctx.backend_timeout();
    let client = if grpc {
        headers
            .get("grpc-timeout")
            .and_then(|v| parse_grpc_timeout(v.as_bytes()))
    } else {
        None
    };
    match (rule, client) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`,
/// `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status (code, message) the proxy answers for what would be
/// `status` over HTTP.
pub fn grpc_status(status: u16) -> (u32, &'static str) {
    match status {
        404 => (12, "no route for this service or method"),
        500 => (13, "backend is invalid"),
        502 | 503 => (14, "no backend available"),
        504 => (4, "backend did not answer in time"),
        400 => (13, "malformed request"),
        401 => (16, "unauthenticated"),
        403 => (7, "permission denied"),
        429 => (14, "too many requests"),
        _ => (2, "proxy answered without a backend"),
    }
}

fn grpc_trailers(code: u32, message: &str) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(2);
    map.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(message) {
        map.insert("grpc-message", v);
    }
    map
}

/// The proxy's own answer: a small text response, or for gRPC a
/// trailers-only response with the status's gRPC code.
fn answer(
    ctx: &mut Ctx<'_>,
    respond: &mut SendResponse<Bytes>,
    grpc: bool,
    status: u16,
    location: Option<&[u8]>,
) {
    if grpc {
        ctx.status = 200;
        let (code, message) = grpc_status(status);
        ctx.grpc_status = Some(code);
        let mut response = http::Response::new(());
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.extend(grpc_trailers(code, message));
        let _ = respond.send_response(response, true);
        return;
    }
    ctx.status = status;
    let body = phase::answer_body(status);
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    headers.insert("content-length", HeaderValue::from(body.len()));
    if let Some(v) = location.and_then(|l| HeaderValue::from_bytes(l).ok()) {
        headers.insert("location", v);
    }
    let end = ctx.head_request;
    if let Ok(mut send) = respond.send_response(response, end)
        && !end
    {
        let _ = send.send_data(Bytes::from(body), true);
    }
}

// === request and response heads ===

/// Header fields of a client's request that are never forwarded as they
/// are: HTTP/2 has rejected connection-specific ones already; `host` is
/// the authority; split `cookie` fields are joined; framing is the proxy's
/// (an h2c backend gets `content-length` and `te: trailers`).
fn is_dropped_request_field(name: &str, to_h2: bool) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "cookie"
    ) || (matches!(name, "te" | "content-length") && !to_h2)
}

/// `upstream_request_filter` for a stream: `host` (the authority) first,
/// the fields, split `cookie` fields joined, then
/// [`phase::upstream_fields`] as for HTTP/1.1.
fn forwarded_fields<'a>(
    ctx: &Ctx<'_>,
    rule: &Rule,
    parts: &'a Parts,
    to_h2: bool,
) -> phase::Forwarded<'a> {
    let headers = &parts.headers;
    let mut cookie: Vec<u8> = Vec::new();
    for value in headers.get_all("cookie") {
        if !cookie.is_empty() {
            cookie.extend_from_slice(b"; ");
        }
        cookie.extend_from_slice(value.as_bytes());
    }
    let host = (Cow::Borrowed(&b"host"[..]), Cow::Borrowed(host_of(parts)));
    let fields = headers
        .iter()
        .filter(|(n, _)| !is_dropped_request_field(n.as_str(), to_h2))
        .map(|(n, v)| {
            (
                Cow::Borrowed(n.as_str().as_bytes()),
                Cow::Borrowed(v.as_bytes()),
            )
        });
    let cookie = (!cookie.is_empty()).then(|| (Cow::Borrowed(&b"cookie"[..]), Cow::Owned(cookie)));
    let fields = std::iter::once(host).chain(fields).chain(cookie);
    phase::upstream_fields(ctx, rule, target_of(parts), fields, None)
}

/// `x-forwarded-for`, parsed once.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// [`forwarded_fields`] and [`phase::write_request_head`] in one pass for
/// the common case, a rule without request filters: the HTTP/1.1 head of a
/// stream, written straight from its `HeaderMap` (`host` first, the
/// fields, split `cookie` fields joined, `X-Forwarded-For` with the
/// client's address appended, `X-Forwarded-Proto`, the framing).
fn write_h1_request_head(ctx: &Ctx<'_>, parts: &Parts, framing: Framing, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target_of(parts));
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host_of(parts));
    out.extend_from_slice(b"\r\n");
    let headers = &parts.headers;
    for (name, value) in headers {
        let name = name.as_str();
        if is_dropped_request_field(name, false)
            || matches!(name, "expect" | "x-forwarded-proto" | "x-forwarded-for")
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if let Some(first) = cookies.next() {
        out.extend_from_slice(b"cookie: ");
        out.extend_from_slice(first.as_bytes());
        for value in cookies {
            out.extend_from_slice(b"; ");
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for value in headers.get_all(&X_FORWARDED_FOR) {
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b", ");
    }
    phase::write_ip(out, ctx.client.ip());
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\n");
    phase::write_request_framing(out, framing);
    out.extend_from_slice(b"\r\n");
}

/// [`client_response`] for the common case, a rule without response
/// filters, from an HTTP/1.1 backend's head (`resp` in `buf`): the head's
/// bytes are copied once into a shared buffer and every field value is a
/// view of it, instead of one allocation per field.
fn client_response_from_h1(
    ctx: &mut Ctx<'_>,
    resp: &Head,
    buf: &[u8],
    shared: &Bytes,
    keep_length: bool,
) -> http::Response<()> {
    ctx.status = resp.status;
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    headers.reserve(resp.headers.len());
    let hop = h1::HopByHop::new(resp, buf);
    for field in &resp.headers {
        let name = field.name.get(buf);
        let keep = keep_length && name.eq_ignore_ascii_case(b"content-length");
        if !keep && hop.contains(name) {
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(name) else {
            continue;
        };
        if h1::HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        let range = field.value.range();
        if range.end > shared.len() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_maybe_shared(shared.slice(range)) {
            headers.append(name, value);
        }
    }
    response
}

/// `response_filter` for a stream: the rule's ResponseHeaderModifiers
/// applied to `fields`, the result as an HTTP/2 response head (fields that
/// HTTP/2 forbids, or that are not valid, are dropped).
fn client_response(ctx: &mut Ctx<'_>, status: u16, mut fields: Fields<'_>) -> http::Response<()> {
    phase::apply_response_filters(ctx, &mut fields);
    ctx.status = status;
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in &fields {
        let Ok(name) = HeaderName::from_bytes(name) else {
            continue;
        };
        if h1::HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    response
}

// === forwarding over h2c ===

async fn forward_h2(
    ctx: &mut Ctx<'_>,
    rule: &Rule,
    addr: SocketAddr,
    parts: &Parts,
    mut body: RecvStream,
    stream: Stream<'_>,
) -> Result<(), Failure> {
    let Stream { respond, sent, tee } = stream;
    let forwarded = forwarded_fields(ctx, rule, parts, true);
    let target = forwarded.target(target_of(parts));
    let request = upstream::h2::request(parts.method.clone(), target, forwarded.fields, addr)
        .map_err(Failure::BeforeResponse)?;
    let end_of_stream = body.is_end_stream();
    let (response, mut upstream_send) = upstream::h2::send_request(addr, request, end_of_stream)
        .await
        .map_err(Failure::BeforeResponse)?;

    let upload = async {
        if end_of_stream {
            return Ok(());
        }
        match bridge::pump(&mut body, &mut upstream_send, tee).await {
            Ok(_) => Ok(()),
            Err(PumpError::Read(e)) if bridge::is_client_gone(&e) => {
                upstream_send.send_reset(Reason::CANCEL);
                Err(Failure::ClientReset)
            }
            Err(PumpError::Read(_)) => {
                upstream_send.send_reset(Reason::CANCEL);
                Err(Failure::BeforeResponse(Error::new(
                    Kind::DownstreamMalformedBody,
                )))
            }
            // The backend stopped reading (it may have answered already).
            Err(PumpError::Write) => Ok(()),
        }
    };
    let download = async {
        let response = tokio::select! {
            biased;
            r = response => r.map_err(|_| Failure::BeforeResponse(Error::new(Kind::UpstreamIo)))?,
            _ = poll_fn(|cx| respond.poll_reset(cx)) => return Err(Failure::ClientReset),
        };
        let (head, mut recv) = response.into_parts();
        // A trailers-only answer has its grpc-status here.
        ctx.grpc_status = bridge::grpc_status(&head.headers);
        let fields: Fields<'_> = head
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    Cow::Borrowed(n.as_str().as_bytes()),
                    Cow::Borrowed(v.as_bytes()),
                )
            })
            .collect();
        let client_head = client_response(ctx, head.status.as_u16(), fields);
        let end = recv.is_end_stream();
        let send = respond
            .send_response(client_head, end)
            .map_err(|_| Failure::ClientReset)?;
        if end {
            return Ok(());
        }
        let send = sent.insert(send);
        match bridge::pump(&mut recv, send, &mut Tee::none()).await {
            Ok(status) => {
                ctx.grpc_status = status.or(ctx.grpc_status);
                Ok(())
            }
            Err(PumpError::Write) => Err(Failure::ClientReset),
            Err(PumpError::Read(_)) => Err(Failure::AfterResponse(Error::new(Kind::UpstreamIo))),
        }
    };
    tokio::pin!(upload, download);
    let mut uploading = true;
    loop {
        tokio::select! {
            r = &mut upload, if uploading => {
                uploading = false;
                r?;
            }
            r = &mut download => return r,
        }
    }
}

// === forwarding to HTTP/1.1 ===

/// Sends `head` (built by [`phase::write_request_head`]) and the body to
/// an HTTP/1.1 backend, then its response back as HEADERS + DATA.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the pieces of one stream"
)]
async fn forward_h1(
    worker: &Worker,
    ctx: &mut Ctx<'_>,
    addr: SocketAddr,
    mut head: Vec<u8>,
    framing: Framing,
    mut body: RecvStream,
    stream: Stream<'_>,
    deadline: Option<Duration>,
) -> Result<(), Failure> {
    let Stream { respond, sent, tee } = stream;
    let mut resp = Head::default();
    // The exchange future is built inside each arm: a future moved into a
    // `timeout` keeps its own slot in the caller's state too, and this
    // state is part of every stream's task.
    let (h, b, r) = (&mut head, &mut body, &mut resp);
    let mut upstream = match deadline {
        // Biased: the exchange first (no per-poll random draw); a reset
        // is still seen at the next wake.
        Some(limit) => tokio::select! {
            biased;
            r = tokio::time::timeout(limit, exchange_h1(worker, addr, h, framing, b, r, tee)) => {
                r.unwrap_or_else(|_| Err(Failure::BeforeResponse(Error::new(Kind::UpstreamTimeout))))?
            }
            _ = poll_fn(|cx| respond.poll_reset(cx)) => return Err(Failure::ClientReset),
        },
        None => tokio::select! {
            biased;
            r = exchange_h1(worker, addr, h, framing, b, r, tee) => r?,
            _ = poll_fn(|cx| respond.poll_reset(cx)) => return Err(Failure::ClientReset),
        },
    };
    worker.bufs.put(head);

    let buf = upstream.pending();
    let Ok(rframing) = h1::response_framing(&resp, buf, ctx.head_request) else {
        return Err(Failure::BeforeResponse(Error::new(Kind::UpstreamMalformed)));
    };
    let upstream_keep = h1::keep_alive(&resp, buf) && rframing != Framing::UntilClose;
    // A HEAD or 304 answer keeps the Content-Length of the body it stands
    // for; a Length body keeps its own; others are framed by DATA frames.
    let keep_length =
        ctx.head_request || resp.status == 304 || matches!(rframing, Framing::Length(_));
    // A small response's head and whole body, already read, are copied
    // once: the header values and the one DATA frame are views of it.
    let mut shared = Bytes::new();
    let client_head = if phase::rewrites_response(ctx) {
        let hop = h1::HopByHop::new(&resp, buf);
        let fields: Fields<'_> = resp
            .fields(buf)
            .filter(|(name, _)| {
                !(hop.contains(name)
                    && !(keep_length && name.eq_ignore_ascii_case(b"content-length")))
            })
            .map(|(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v)))
            .collect();
        client_response(ctx, resp.status, fields)
    } else {
        let whole = match rframing {
            Framing::Length(n) if n <= (buf.len() - resp.len.min(buf.len())) as u64 => {
                resp.len + n as usize
            }
            _ => resp.len,
        };
        shared = Bytes::copy_from_slice(buf.get(..whole).unwrap_or_default());
        client_response_from_h1(ctx, &resp, buf, &shared, keep_length)
    };
    upstream.consume(resp.len);
    let body_in_shared = shared.len().saturating_sub(resp.len);
    let end = rframing == Framing::Empty;
    let send = respond
        .send_response(client_head, end)
        .map_err(|_| Failure::ClientReset)?;
    if !end {
        let send = sent.insert(send);
        let none = &mut Tee::none();
        // A Length body's last DATA frame ends the stream; the others
        // end with an empty DATA frame.
        let copied = match rframing {
            Framing::Length(n) if n > 0 && body_in_shared as u64 == n => {
                upstream.consume(body_in_shared);
                // The whole body is in memory already (it came with the
                // head, within one read buffer): queued at once, without
                // asking for capacity first; h2 still sends no more than the
                // client's window allows.
                let body = shared.slice(resp.len..);
                send.send_data(body, true).map_err(|_| CopyError::Write)
            }
            Framing::Length(n) => {
                bridge::copy_length(
                    &worker.bufs,
                    &mut upstream,
                    send,
                    n,
                    FROM_BACKEND,
                    none,
                    true,
                )
                .await
            }
            Framing::Chunked => {
                bridge::copy_chunked(&worker.bufs, &mut upstream, send, FROM_BACKEND, none).await
            }
            _ => bridge::copy_until_close(&worker.bufs, &mut upstream, send, FROM_BACKEND).await,
        };
        match copied {
            Ok(()) => {}
            Err(CopyError::Write) => return Err(Failure::ClientReset),
            Err(CopyError::Read(e)) => return Err(Failure::AfterResponse(e)),
        }
        if !matches!(rframing, Framing::Length(_)) && send.send_data(Bytes::new(), true).is_err() {
            return Err(Failure::ClientReset);
        }
    }
    if upstream_keep {
        upstream::h1::checkin(worker, addr, upstream);
    } else {
        worker.bufs.put(upstream.into_buffer());
    }
    Ok(())
}

/// Connects (or reuses a pooled connection), sends the head and the body,
/// and reads the response head into `resp`. A pooled connection that turns
/// out to be closed is replaced while nothing of the body was consumed.
async fn exchange_h1(
    worker: &Worker,
    addr: SocketAddr,
    head: &mut Vec<u8>,
    framing: Framing,
    body: &mut RecvStream,
    resp: &mut Head,
    tee: &mut Tee,
) -> Result<Conn, Failure> {
    loop {
        let (mut upstream, reused) = upstream::h1::checkout(worker, addr)
            .await
            .map_err(Failure::BeforeResponse)?;
        match send_and_receive(&mut upstream, head, framing, body, resp, tee).await {
            Ok(()) => return Ok(upstream),
            Err(Failure::BeforeResponse(e)) if reused && e.is_retryable() => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sends the head and the stream's DATA (teed to the mirrors) as the
/// HTTP/1.1 body, then reads the response head.
async fn send_and_receive(
    upstream: &mut Conn,
    head: &mut Vec<u8>,
    framing: Framing,
    body: &mut RecvStream,
    resp: &mut Head,
    tee: &mut Tee,
) -> Result<(), Failure> {
    let upstream_io = |e| Failure::BeforeResponse(Error::new_io(Kind::UpstreamIo, e));
    upstream
        .write_all(head)
        .await
        .map_err(|e| Failure::BeforeResponse(Error::new_io(Kind::UpstreamIo, e).retryable()))?;
    if framing != Framing::Empty {
        let chunked = framing == Framing::Chunked;
        let mut scratch = Vec::new();
        while let Some(data) = body.data().await {
            let data = match data {
                Ok(d) => d,
                Err(e) if bridge::is_client_gone(&e) => return Err(Failure::ClientReset),
                Err(_) => {
                    return Err(Failure::BeforeResponse(Error::new(
                        Kind::DownstreamMalformedBody,
                    )));
                }
            };
            let n = data.len();
            tee.push(&data);
            let written = if chunked {
                scratch.clear();
                h1::encode_chunk(&mut scratch, &data);
                io::write_all(upstream.stream(), &mut scratch).await
            } else {
                upstream.stream().write_all(data).await.0
            };
            written.map_err(upstream_io)?;
            let _ = body.flow_control().release_capacity(n);
        }
        if chunked {
            scratch.clear();
            scratch.extend_from_slice(CHUNKED_END);
            io::write_all(upstream.stream(), &mut scratch)
                .await
                .map_err(upstream_io)?;
        }
    }
    tee.finish();
    let retryable = framing == Framing::Empty;
    upstream::h1::read_head(upstream, resp, false, retryable, Arrival::Soon)
        .await
        .map_err(Failure::BeforeResponse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_grpc_timeout(b"100m"),
            Some(Duration::from_millis(100))
        );
        assert_eq!(parse_grpc_timeout(b"5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout(b"7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_grpc_timeout(b"123456789S"), None);
        assert_eq!(parse_grpc_timeout(b"S"), None);
        assert_eq!(parse_grpc_timeout(b"1x"), None);
        assert_eq!(parse_grpc_timeout(b"-1S"), None);
    }

    #[test]
    fn grpc_status_follows_the_http_mapping() {
        assert_eq!(grpc_status(404).0, 12);
        assert_eq!(grpc_status(503).0, 14);
        assert_eq!(grpc_status(502).0, 14);
        assert_eq!(grpc_status(504).0, 4);
        assert_eq!(grpc_status(500).0, 13);
    }
}
