//! The HTTP/1.1 connection loop: keep-alive on both sides, bodies streamed
//! through one bounded buffer per connection.
//!
//! A request is read, checked, routed and forwarded; its body is streamed to
//! the backend, then the response is streamed back. The request body is sent
//! entirely before the response is read (a backend that answers early
//! without reading the body makes the proxy wait for the body first).
//!
//! * **Mirrors** ([`crate::mirror`]): the request head and every body chunk
//!   forwarded to the primary backend are also handed to the request's
//!   mirrors through a [`Tee`], which never waits.
//! * **Upgrades:** a WebSocket upgrade request keeps its `Connection:
//!   upgrade` and `Upgrade` fields; a `101` answer is forwarded and the two
//!   connections are joined by [`tunnel`] until both sides have closed. The
//!   backend connection is then closed, never pooled. Any other answer is an
//!   ordinary response.
//! * **h2c backends** (`appProtocol: kubernetes.io/h2c`): the request is
//!   translated ([`proxy_h2`]): its head becomes an HTTP/2 request on the
//!   worker's multiplexed connection ([`crate::upstream::h2`]), its body is
//!   streamed into the stream within the backend's flow-control window
//!   while the response is awaited, and the response body is streamed back
//!   with the backend's `content-length`, else chunked (close-delimited for
//!   HTTP/1.0 clients); trailers become chunked trailer fields, or are
//!   dropped when the body is not chunked. Upgrades are not offered to h2c
//!   backends (the request is forwarded as a plain request).
//! * **Failures:** a backend connection that failed, or whose request was
//!   cut short (the client went away mid-body), is closed, never pooled.

use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;

use std::borrow::Cow;

use bytes::Bytes;
use h2::Reason;
use route_compiler::route::{Rule, UpstreamProtocol};
use route_compiler::table::RequestView;
use tokio_uring::net::TcpStream;

use crate::clock::{LazyTimer, TimedOut};
use crate::codec::h1::{self, CHUNKED_END, ChunkedDecoder, CodecError, Framing, Head, Request};
use crate::error::{Error, Kind, Side};
use crate::filter::Fields;
use crate::io::{self, Arrival, BufPool, Conn};
use crate::mirror::{self, Tee};
use crate::phase::{self, Action, ClientFraming, Ctx};
use crate::proto::bridge::{self, CopyError, FROM_CLIENT, H1Body};
use crate::runtime::Worker;
use crate::upstream;

/// Serves one client connection until it closes or must be closed.
pub async fn serve(worker: Rc<Worker>, stream: TcpStream, client: SocketAddr, port: u16) {
    let _ = stream.set_nodelay(true);
    let conn = Conn::new(stream, worker.bufs.get_small());
    serve_conn(worker, conn, client, port).await;
}

/// Serves a client connection whose first bytes may already be pending in
/// `conn` (read while sniffing the protocol).
///
/// Between requests the connection holds only a small read buffer
/// ([`Conn::shrink`]) and no write buffer: `out` is taken from the
/// worker's pool once a head is in and given back after the answer.
pub async fn serve_conn(worker: Rc<Worker>, mut conn: Conn, client: SocketAddr, port: u16) {
    let mut head = Head::default();
    // One header timer for the connection, moved on by each request rather
    // than one timer a request (see `clock`).
    let mut header_timer = LazyTimer::new(worker.config.header_timeout);
    loop {
        let mut started = false;
        header_timer.restart();
        let read = {
            let read = std::pin::pin!(read_head(&worker, &mut conn, &mut head, &mut started));
            let read = header_timer.bound(read);
            worker.unless_draining(read, Ok(Ok(false))).await // idle: close on drain
        };
        let mut out = worker.bufs.get_small();
        let read = Read {
            result: read,
            started,
        };
        // Boxed: the state of a request in progress is not carried by an
        // idle connection's task.
        let serve = serve_one(&worker, &mut conn, &head, read, &mut out, client, port);
        let keep = Box::pin(serve).await;
        worker.bufs.put(out);
        if !keep {
            break;
        }
        conn.shrink(&worker.bufs);
    }
    worker.bufs.put(conn.into_buffer());
}

/// Reads one request head into `head`: `Ok(false)` on a clean close
/// between requests. `started` is set once a byte of the head is in. A
/// head that does not fit the connection's small buffer moves it to a
/// full-size one; one that does not fit that is too large.
async fn read_head(
    worker: &Worker,
    conn: &mut Conn,
    head: &mut Head,
    started: &mut bool,
) -> Result<bool, Error> {
    loop {
        *started |= !conn.pending().is_empty();
        match h1::parse_request(conn.pending(), head) {
            // A body buffer can hold a whole head larger than the bound.
            Ok(true) if head.len > worker.bufs.size() => {
                return Err(Error::new(Kind::DownstreamHeadTooLarge));
            }
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(e) => return Err(Error::new(Kind::DownstreamMalformedHead(e))),
        }
        // The bound is the full buffer size, whatever buffer the
        // connection holds (a body buffer, after a streamed request body).
        if conn.pending().len() >= worker.bufs.size() {
            return Err(Error::new(Kind::DownstreamHeadTooLarge));
        }
        if conn.is_full() {
            conn.grow(&worker.bufs);
        }
        match conn.fill_head(Arrival::Later).await {
            Ok(0) if conn.pending().is_empty() => return Ok(false),
            Ok(0) => return Err(Error::new(Kind::DownstreamIo)),
            Ok(_) => {}
            Err(e) => return Err(Error::new_io(Kind::DownstreamIo, e)),
        }
    }
}

/// How waiting for a request head ended: the head read (or its error,
/// or the header timeout), and whether a byte of it had arrived.
struct Read {
    result: Result<Result<bool, Error>, TimedOut>,
    started: bool,
}

/// Serves one request whose head was waited for (`read`); whether the
/// connection stays open.
async fn serve_one(
    worker: &Rc<Worker>,
    conn: &mut Conn,
    head: &Head,
    read: Read,
    out: &mut Vec<u8>,
    client: SocketAddr,
    port: u16,
) -> bool {
    let log = worker.config.access_log;
    let started = read.started;
    // Held until the request ends: it finishes on the table it started with.
    let snapshot = worker.snapshot.current();
    let table = &snapshot.table;
    let mut ctx = Ctx::new(client, port);
    match read.result {
        Ok(Ok(true)) => {}
        // A head begun but not finished in time (slowloris): 408. The read
        // still in flight completes when the socket is shut down.
        Err(_) if started => {
            let e = Error::new(Kind::DownstreamTimeout);
            fail_to_proxy(&mut ctx, conn.stream(), e, out, log).await;
            let _ = conn.stream().shutdown(Shutdown::Both);
            return false;
        }
        Err(_) => {
            let _ = conn.stream().shutdown(Shutdown::Both);
            return false;
        }
        Ok(Ok(false)) => return false,
        Ok(Err(e)) => {
            fail_to_proxy(&mut ctx, conn.stream(), e, out, log).await;
            return false;
        }
    }

    let mut mirrors = Vec::new();
    let mut h2_request = None;
    let (framing, action) = {
        let buf = conn.pending();
        let framing = match phase::request_filter(&mut ctx, head, buf, log) {
            Ok(f) => f,
            Err(e) => {
                fail_to_proxy(&mut ctx, conn.stream(), e, out, log).await;
                return false;
            }
        };
        ctx.keep_alive &= !worker.draining(); // draining: answer, then close
        let req = Request { head, buf };
        let action = {
            let mut scratch = snapshot.scratch.borrow_mut();
            let mut rng = worker.rng.borrow_mut();
            let action = phase::route(&mut ctx, table, &req, &mut scratch, &mut *rng);
            if let Action::Forward { backend, .. } = action
                && backend.protocol == UpstreamProtocol::H2c
            {
                // No upgrade over h2c: forwarded as a plain request.
                ctx.upgrade = false;
            }
            if let Action::Forward { rule, .. } = action
                && !ctx.upgrade
            {
                mirror::select(rule, &mut *rng, &mut mirrors);
            }
            action
        };
        out.clear();
        if let Action::Forward {
            rule,
            backend,
            addr,
        } = action
        {
            // The HTTP/1.1 head: the backend's, or the mirrors' when the
            // backend speaks h2c.
            phase::upstream_request_filter(&ctx, rule, req, framing, out);
            if backend.protocol == UpstreamProtocol::H2c {
                h2_request = Some(h2_request_of(&ctx, rule, req, framing, addr));
            }
        }
        (framing, action)
    };
    conn.consume(head.len);
    // A malformed chunked body already in the buffer (the usual shape of a
    // smuggling attempt: one packet) is refused before anything is sent.
    let body_buffered = match framing {
        Framing::Empty | Framing::UntilClose => true,
        Framing::Length(n) => conn.pending().len() as u64 >= n,
        Framing::Chunked => match prevalidate_chunked(conn.pending()) {
            Ok(done) => done,
            Err(_) => {
                let e = Error::new(Kind::DownstreamMalformedBody);
                fail_to_proxy(&mut ctx, conn.stream(), e, out, log).await;
                return false;
            }
        },
    };
    // A body still to be read streams through a full-size buffer.
    if !body_buffered && matches!(action, Action::Forward { .. }) {
        conn.grow(&worker.bufs);
    }

    match action {
        Action::Respond { status, location } => {
            // The body was not read: the connection cannot be reused.
            ctx.keep_alive &= framing == Framing::Empty;
            out.clear();
            phase::respond(&mut ctx, status, location.as_deref(), out);
            let written = conn.write_all(out).await.is_ok();
            phase::logging(&ctx, log);
            written && ctx.keep_alive
        }
        Action::Forward { addr, .. } => match h2_request {
            Some(request) => {
                let request = (request, addr);
                // Boxed: a request to an h2c backend from an HTTP/1.1
                // client is rare; its state is not carried by every request.
                Box::pin(proxy_h2(
                    worker, &mut ctx, conn, framing, request, &mirrors, out,
                ))
                .await
            }
            None => proxy(worker, &mut ctx, conn, framing, addr, &mirrors, out).await,
        },
    }
}

/// Runs a throw-away decoder over the body bytes already read: whether
/// they hold the whole body.
fn prevalidate_chunked(mut pending: &[u8]) -> Result<bool, h1::CodecError> {
    let mut decoder = ChunkedDecoder::default();
    while !pending.is_empty() && !decoder.is_done() {
        let step = decoder.decode(pending)?;
        pending = &pending[step.consumed..];
    }
    Ok(decoder.is_done())
}

/// `fail_to_proxy`: answers an error's status (if it has one) and closes.
async fn fail_to_proxy(
    ctx: &mut Ctx<'_>,
    stream: &TcpStream,
    e: Error,
    out: &mut Vec<u8>,
    log: bool,
) {
    ctx.error = Some(e.kind());
    ctx.keep_alive = false;
    if let Some(status) = e.status() {
        out.clear();
        phase::respond(ctx, status, None, out);
        let _ = io::write_all(stream, out).await;
    }
    phase::logging(ctx, log);
}

async fn proxy(
    worker: &Rc<Worker>,
    ctx: &mut Ctx<'_>,
    conn: &mut Conn,
    framing: Framing,
    addr: SocketAddr,
    mirrors: &[SocketAddr],
    out: &mut Vec<u8>,
) -> bool {
    let log = worker.config.access_log;
    if ctx.expect_continue && framing != Framing::Empty {
        let mut cont = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        if conn.write_all(&mut cont).await.is_err() {
            return false;
        }
    }
    // `out` holds the forwarded head: the mirrors get the same.
    let has_body = framing != Framing::Empty;
    let mut tee = Tee::start(worker, mirrors, out, has_body, ctx.backend_timeout());
    let mut resp = Head::default();
    let upgrade = ctx.upgrade;
    // The backend connection is kept out here so that it can still be
    // closed properly when the exchange is cut short by the timeout.
    let mut slot = None;
    // Built in each arm: a future moved into a `timeout` would keep a
    // second slot in this function's state (see `serve_conn`'s box).
    let (r, t, s) = (&mut resp, &mut tee, &mut slot);
    let result = match ctx.backend_timeout() {
        Some(limit) => {
            let exchange = exchange(worker, conn, framing, addr, out, r, upgrade, t, s);
            match tokio::time::timeout(limit, exchange).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(Kind::UpstreamTimeout)),
            }
        }
        None => exchange(worker, conn, framing, addr, out, r, upgrade, t, s).await,
    };
    let mut upstream = match (result, slot.take()) {
        (Ok(()), Some(u)) => u,
        (result, upstream) => {
            if let Some(upstream) = upstream {
                abort_upstream(worker, upstream);
            }
            let e = result.err().unwrap_or_else(|| Error::new(Kind::UpstreamIo));
            return error_while_proxy(ctx, conn, framing, e, out, log).await;
        }
    };

    drop(tee);
    if resp.status == 101 {
        // Boxed: a tunnel's state is not carried by every request.
        return Box::pin(switch_protocols(worker, ctx, conn, upstream, &resp, out)).await;
    }
    let buf = upstream.pending();
    let Ok(rframing) = h1::response_framing(&resp, buf, ctx.head_request) else {
        fail_to_proxy(
            ctx,
            conn.stream(),
            Error::new(Kind::UpstreamMalformed),
            out,
            log,
        )
        .await;
        return false;
    };
    let mut upstream_keep = h1::keep_alive(&resp, buf) && rframing != Framing::UntilClose;
    out.clear();
    let client_framing = phase::response_filter(ctx, &resp, buf, rframing, out);
    upstream.consume(resp.len);
    // The head goes out in one write with the body bytes already read
    // (a small response: head and whole body in one send).
    let to = conn.stream();
    let head = out.len();
    let body = match (client_framing, rframing) {
        (ClientFraming::Empty, _) => write_head(to, out).await,
        (_, Framing::Length(n)) => {
            let take = upstream
                .pending()
                .len()
                .min(usize::try_from(n).unwrap_or(usize::MAX));
            out.extend_from_slice(&upstream.pending()[..take]);
            upstream.consume(take);
            match write_head(to, out).await {
                Ok(()) if n > take as u64 => {
                    let rest = n - take as u64;
                    copy_response_body(worker, &mut upstream, to, rest)
                        .await
                        .map(|reusable| upstream_keep &= reusable)
                }
                r => r,
            }
        }
        (ClientFraming::Chunked, Framing::Chunked) => {
            copy_chunked(
                &worker.bufs,
                &mut upstream,
                to,
                out,
                head,
                true,
                RESPONSE,
                &mut Tee::none(),
            )
            .await
        }
        (_, Framing::Chunked) => {
            copy_chunked(
                &worker.bufs,
                &mut upstream,
                to,
                out,
                head,
                false,
                RESPONSE,
                &mut Tee::none(),
            )
            .await
        }
        (framing, _) => match write_head(to, out).await {
            Ok(()) => {
                copy_until_close(
                    &worker.bufs,
                    &mut upstream,
                    to,
                    out,
                    framing == ClientFraming::Chunked,
                )
                .await
            }
            r => r,
        },
    };
    if let Err(e) = body {
        abort_upstream(worker, upstream);
        ctx.error = Some(e.kind());
        phase::logging(ctx, log);
        return false;
    }
    if upstream_keep {
        upstream::h1::checkin(worker, addr, upstream);
    } else {
        worker.bufs.put(upstream.into_buffer());
    }
    phase::logging(ctx, log);
    ctx.keep_alive
}

/// Moves the last `rest` bytes of a Content-Length response body from the
/// backend to the client: through the kernel when the response splice
/// takes them ([`bpf::splice_response`](crate::bpf::splice_response)),
/// else (and for what it leaves) in userspace. `Ok(false)` when the kernel
/// took part of it: the backend connection must then be closed.
async fn copy_response_body(
    worker: &Worker,
    upstream: &mut Conn,
    to: &TcpStream,
    rest: u64,
) -> Result<bool, Error> {
    use crate::bpf::{BodySplice, response};
    let (userspace, reusable) = match crate::bpf::splice_response(upstream, to, rest).await {
        BodySplice::NotTaken => (rest, true),
        BodySplice::Copied => return Ok(true),
        BodySplice::Done => return Ok(false),
        BodySplice::Rest(n) => (n, false),
        BodySplice::UpstreamFailed(e) => return Err(Error::new_io(RESPONSE.read, e)),
        BodySplice::ClientFailed(e) => return Err(Error::new_io(RESPONSE.write, e)),
    };
    if rest >= response::RESPONSE_SPLICE_MIN {
        response::count_userspace(userspace);
    }
    copy_length(
        &worker.bufs,
        upstream,
        to,
        userspace,
        RESPONSE,
        &mut Tee::none(),
    )
    .await
    .map(|()| reusable)
}

/// Writes the response head in `out` (and the body bytes after it) to the
/// client.
async fn write_head(to: &TcpStream, out: &mut Vec<u8>) -> Result<(), Error> {
    io::write_all(to, out)
        .await
        .map_err(|e| Error::new_io(Kind::DownstreamIo, e))
}

/// `fail_to_connect` / `error_while_proxy`: the exchange failed before a
/// response head reached the client: answers the error's status. Without
/// a request body nothing of the client connection was touched, so it can
/// stay open after a backend failure; else it is closed.
async fn error_while_proxy(
    ctx: &mut Ctx<'_>,
    conn: &mut Conn,
    framing: Framing,
    e: Error,
    out: &mut Vec<u8>,
    log: bool,
) -> bool {
    let reusable = framing == Framing::Empty && e.side() == Side::Upstream;
    if !reusable {
        fail_to_proxy(ctx, conn.stream(), e, out, log).await;
        return false;
    }
    ctx.error = Some(e.kind());
    out.clear();
    phase::respond(ctx, e.status().unwrap_or(502), None, out);
    let written = conn.write_all(out).await.is_ok();
    phase::logging(ctx, log);
    written && ctx.keep_alive
}

/// Closes a backend connection whose exchange failed, was cut short (the
/// client went away mid-body) or timed out: it is never pooled. A read or
/// write may still be in flight on it (its socket would stay open until
/// that completes); shutting the socket down completes it now, and the
/// backend sees the close at once.
fn abort_upstream(worker: &Worker, upstream: Conn) {
    let _ = upstream.stream().shutdown(Shutdown::Both);
    worker.bufs.put(upstream.into_buffer());
}

/// Connects (or reuses a pooled connection), sends the request and reads
/// the response head into `resp`, on the connection it leaves in `slot`. A
/// pooled connection that turns out to be closed is replaced by another as
/// long as nothing of the request body was consumed.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the arguments are the request's state"
)]
async fn exchange(
    worker: &Worker,
    conn: &mut Conn,
    framing: Framing,
    addr: SocketAddr,
    request_head: &mut Vec<u8>,
    resp: &mut Head,
    upgrade: bool,
    tee: &mut Tee,
    slot: &mut Option<Conn>,
) -> Result<(), Error> {
    loop {
        let (upstream, reused) = upstream::h1::checkout(worker, addr).await?;
        let upstream = slot.insert(upstream);
        let sent = send_and_receive(
            &worker.bufs,
            upstream,
            conn,
            framing,
            request_head,
            resp,
            upgrade,
            tee,
        );
        match sent.await {
            Ok(()) => return Ok(()),
            Err(e) if reused && e.is_retryable() => {
                if let Some(stale) = slot.take() {
                    abort_upstream(worker, stale);
                }
            }
            // The caller closes the connection left in `slot`: one whose
            // request was cut short (client gone mid-body) or that failed
            // is never pooled; the backend sees the close.
            Err(e) => return Err(e),
        }
    }
}

/// Sends the head and body (teeing the body to the mirrors) and reads the
/// final response head; a `101` is final only for an `upgrade` request.
///
/// The head goes out in one write with the body bytes already read; they
/// are consumed only once that write succeeded, so that a failed first
/// write ([retryable](Error::retryable)) leaves `request_head` and the
/// client's buffer as they were.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the arguments are the request's state"
)]
async fn send_and_receive(
    bufs: &BufPool,
    upstream: &mut Conn,
    conn: &mut Conn,
    framing: Framing,
    request_head: &mut Vec<u8>,
    resp: &mut Head,
    upgrade: bool,
    tee: &mut Tee,
) -> Result<(), Error> {
    let to = upstream.stream();
    match framing {
        Framing::Empty | Framing::UntilClose => io::write_all(to, request_head)
            .await
            .map_err(|e| Error::new_io(Kind::UpstreamIo, e).retryable())?,
        Framing::Length(n) => {
            let head = request_head.len();
            let take = conn
                .pending()
                .len()
                .min(usize::try_from(n).unwrap_or(usize::MAX));
            request_head.extend_from_slice(&conn.pending()[..take]);
            let written = io::write_all(to, request_head).await;
            request_head.truncate(head);
            written.map_err(|e| Error::new_io(Kind::UpstreamIo, e).retryable())?;
            tee.push(&conn.pending()[..take]);
            conn.consume(take);
            if n > take as u64 {
                copy_length(bufs, conn, to, n - take as u64, REQUEST, tee).await?;
            }
        }
        Framing::Chunked => {
            let mut scratch = request_head.clone();
            let head = scratch.len();
            copy_chunked(bufs, conn, to, &mut scratch, head, true, REQUEST, tee).await?;
        }
    }
    tee.finish();
    let retryable = framing == Framing::Empty;
    upstream::h1::read_head(upstream, resp, upgrade, retryable, Arrival::Later).await
}

// === h2c backends ===

/// `upstream_request_filter` towards an h2c backend: the forwarded fields
/// (as for an HTTP/1.1 backend, with the client's `Content-Length`) as an
/// HTTP/2 request head for `addr`.
fn h2_request_of(
    ctx: &Ctx<'_>,
    rule: &Rule,
    req: Request<'_>,
    framing: Framing,
    addr: SocketAddr,
) -> Result<http::Request<()>, Error> {
    let mut forwarded = phase::forward_h1_fields(ctx, rule, req);
    if let Framing::Length(n) = framing {
        let n = n.to_string().into_bytes();
        forwarded
            .fields
            .push((Cow::Borrowed(b"content-length"), Cow::Owned(n)));
    }
    let malformed = || Error::new(Kind::DownstreamMalformedHead(CodecError::BadHostOrTarget));
    let method = http::Method::from_bytes(req.method()).map_err(|_| malformed())?;
    let target = forwarded.target(req.target());
    upstream::h2::request(method, target, forwarded.fields, addr)
}

/// Forwards a request to an h2c backend and its response back (see the
/// [module docs](self)); whether the client connection stays open. `out`
/// holds the HTTP/1.1 head the mirrors get.
async fn proxy_h2(
    worker: &Rc<Worker>,
    ctx: &mut Ctx<'_>,
    conn: &mut Conn,
    framing: Framing,
    (request, addr): (Result<http::Request<()>, Error>, SocketAddr),
    mirrors: &[SocketAddr],
    out: &mut Vec<u8>,
) -> bool {
    let log = worker.config.access_log;
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            fail_to_proxy(ctx, conn.stream(), e, out, log).await;
            return false;
        }
    };
    if ctx.expect_continue && framing != Framing::Empty {
        let mut cont = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        if conn.write_all(&mut cont).await.is_err() {
            return false;
        }
    }
    let mut tee = Tee::start_body(worker, mirrors, out, framing, ctx.backend_timeout());
    let exchange = exchange_h2(&worker.bufs, conn, framing, request, addr, &mut tee);
    let result = match ctx.backend_timeout() {
        Some(limit) => tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or_else(|_| Err(Error::new(Kind::UpstreamTimeout))),
        None => exchange.await,
    };
    drop(tee);
    let (response, body_read) = match result {
        Ok(r) => r,
        Err(e) => return error_while_proxy(ctx, conn, framing, e, out, log).await,
    };
    // The backend answered before reading the whole body: the rest of it
    // is still on the client connection.
    ctx.keep_alive &= body_read;

    let (head, mut recv) = response.into_parts();
    ctx.grpc_status = bridge::grpc_status(&head.headers);
    let status = head.status.as_u16();
    let keep_length = ctx.head_request || status == 304;
    let length = head
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let rframing = match length {
        _ if keep_length || status == 204 || recv.is_end_stream() => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    };
    let fields: Fields<'_> = head
        .headers
        .iter()
        .filter(|(n, _)| {
            let n = n.as_str();
            !h1::HOP_BY_HOP.contains(&n) && (n != "content-length" || keep_length)
        })
        .map(|(n, v)| {
            (
                Cow::Borrowed(n.as_str().as_bytes()),
                Cow::Borrowed(v.as_bytes()),
            )
        })
        .collect();
    out.clear();
    let client_framing = phase::response_head(ctx, status, fields, rframing, None, out);
    if conn.write_all(out).await.is_err() {
        ctx.error = Some(Kind::DownstreamIo);
        phase::logging(ctx, log);
        return false;
    }
    let to = conn.stream();
    let copied = match client_framing {
        ClientFraming::Empty => Ok(None),
        ClientFraming::Chunked => bridge::copy_to_h1(&mut recv, to, H1Body::Chunked, out).await,
        ClientFraming::Length | ClientFraming::Raw => {
            bridge::copy_to_h1(&mut recv, to, H1Body::Raw, out).await
        }
    };
    match copied {
        Ok(status) => ctx.grpc_status = status.or(ctx.grpc_status),
        Err(CopyError::Read(e)) => {
            ctx.error = Some(e.kind());
            ctx.keep_alive = false;
        }
        Err(CopyError::Write) => {
            ctx.error = Some(Kind::DownstreamIo);
            ctx.keep_alive = false;
        }
    }
    phase::logging(ctx, log);
    ctx.keep_alive
}

/// Opens the stream, streams the request body of `conn` into it (and to
/// `tee`) while the response head is awaited; the response and whether the
/// whole request body was read.
async fn exchange_h2(
    bufs: &BufPool,
    conn: &mut Conn,
    framing: Framing,
    request: http::Request<()>,
    addr: SocketAddr,
    tee: &mut Tee,
) -> Result<(http::Response<h2::RecvStream>, bool), Error> {
    let end_of_stream = framing == Framing::Empty;
    let (response, mut send) = upstream::h2::send_request(addr, request, end_of_stream).await?;
    let upload = async {
        let copied = match framing {
            Framing::Length(n) => {
                bridge::copy_length(bufs, conn, &mut send, n, FROM_CLIENT, tee, false).await
            }
            Framing::Chunked => bridge::copy_chunked(bufs, conn, &mut send, FROM_CLIENT, tee).await,
            Framing::Empty | Framing::UntilClose => return Ok(true),
        };
        match copied {
            Ok(()) => {
                tee.finish();
                let _ = send.send_data(Bytes::new(), true);
                Ok(true)
            }
            Err(CopyError::Read(e)) => {
                send.send_reset(Reason::CANCEL);
                Err(e)
            }
            // The backend stopped reading: its answer says why.
            Err(CopyError::Write) => Ok(false),
        }
    };
    let (uploaded, response) = tokio::join!(upload, response);
    let body_read = uploaded?;
    let response = response.map_err(|_| Error::new(Kind::UpstreamIo))?;
    Ok((response, body_read))
}

// === body copying ===

/// Who is blamed for what while copying a body.
#[derive(Debug, Clone, Copy)]
struct Sides {
    read: Kind,
    malformed: Kind,
    write: Kind,
}

const REQUEST: Sides = Sides {
    read: Kind::DownstreamIo,
    malformed: Kind::DownstreamMalformedBody,
    write: Kind::UpstreamIo,
};

const RESPONSE: Sides = Sides {
    read: Kind::UpstreamIo,
    malformed: Kind::UpstreamMalformed,
    write: Kind::DownstreamIo,
};

/// Reads more of a body (through a body buffer of `bufs`).
async fn fill(from: &mut Conn, sides: Sides, bufs: &BufPool) -> Result<(), Error> {
    match from.fill_body(bufs).await {
        Ok(0) => Err(Error::new(sides.read)),
        Ok(_) => Ok(()),
        Err(e) => Err(Error::new_io(sides.read, e)),
    }
}

/// Copies exactly `n` bytes, straight from the read buffer (and a copy to
/// `tee`'s mirrors).
async fn copy_length(
    bufs: &BufPool,
    from: &mut Conn,
    to: &TcpStream,
    mut n: u64,
    sides: Sides,
    tee: &mut Tee,
) -> Result<(), Error> {
    while n > 0 {
        if from.pending().is_empty() {
            fill(from, sides, bufs).await?;
        }
        let take = from
            .pending()
            .len()
            .min(usize::try_from(n).unwrap_or(usize::MAX));
        tee.push(&from.pending()[..take]);
        from.forward_pending(take, to)
            .await
            .map_err(|e| Error::new_io(sides.write, e))?;
        n -= take as u64;
    }
    Ok(())
}

/// Decodes a chunked body and writes its data, re-encoded as chunks (each
/// read batch becomes at most one write) or raw; `tee`'s mirrors get a copy
/// of what is written (not of the head).
///
/// The first `head` bytes of `out` (a message head) go out with the first
/// body bytes, in one write, or alone before waiting for body bytes. Input
/// is consumed only once its write succeeded: an error on the first write
/// is [retryable](Error::retryable) when nothing of `from` was consumed.
#[expect(
    clippy::too_many_arguments,
    reason = "source, sink, scratch and framing of one copy; a struct would only be unpacked again"
)]
async fn copy_chunked(
    bufs: &BufPool,
    from: &mut Conn,
    to: &TcpStream,
    out: &mut Vec<u8>,
    mut head: usize,
    encode: bool,
    sides: Sides,
    tee: &mut Tee,
) -> Result<(), Error> {
    // Nothing written or consumed yet: a failed write may be retried.
    let mut untouched = head > 0;
    let write_error = |e, untouched: bool| {
        let e = Error::new_io(sides.write, e);
        if untouched { e.retryable() } else { e }
    };
    let mut decoder = ChunkedDecoder::default();
    loop {
        if from.pending().is_empty() {
            if head > 0 {
                out.truncate(head);
                io::write_all(to, out)
                    .await
                    .map_err(|e| write_error(e, untouched))?;
                head = 0;
                untouched = false;
            }
            fill(from, sides, bufs).await?;
        }
        out.truncate(head);
        let mut consumed = 0;
        let input = from.pending();
        while consumed < input.len() && !decoder.is_done() {
            let step = decoder
                .decode(&input[consumed..])
                .map_err(|_| Error::new(sides.malformed))?;
            let data = &input[consumed..][step.data];
            if encode {
                h1::encode_chunk(out, data);
            } else {
                out.extend_from_slice(data);
            }
            consumed += step.consumed;
        }
        if decoder.is_done() && encode {
            out.extend_from_slice(CHUNKED_END);
        }
        if out.len() > head {
            io::write_all(to, out)
                .await
                .map_err(|e| write_error(e, untouched))?;
            tee.push(&out[head..]);
            head = 0;
            untouched = false;
        }
        from.consume(consumed);
        untouched &= consumed == 0;
        if decoder.is_done() {
            return Ok(());
        }
    }
}

/// Copies a close-delimited response body, as chunks or raw.
async fn copy_until_close(
    bufs: &BufPool,
    from: &mut Conn,
    to: &TcpStream,
    out: &mut Vec<u8>,
    encode: bool,
) -> Result<(), Error> {
    let sides = RESPONSE;
    loop {
        if from.pending().is_empty() {
            match from.fill_body(bufs).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(Error::new_io(sides.read, e)),
            }
        }
        let n = from.pending().len();
        if encode {
            out.clear();
            h1::encode_chunk(out, from.pending());
            from.consume(n);
            io::write_all(to, out).await
        } else {
            from.forward_pending(n, to).await
        }
        .map_err(|e| Error::new_io(sides.write, e))?;
    }
    if encode {
        out.clear();
        out.extend_from_slice(CHUNKED_END);
        io::write_all(to, out)
            .await
            .map_err(|e| Error::new_io(sides.write, e))?;
    }
    Ok(())
}

// === upgrades ===

/// Forwards a `101 Switching Protocols` head to the client, then tunnels
/// the two connections until both sides have closed. The client connection
/// is not reused and the backend connection is closed, never pooled.
async fn switch_protocols(
    worker: &Worker,
    ctx: &mut Ctx<'_>,
    conn: &mut Conn,
    mut upstream: Conn,
    resp: &Head,
    out: &mut Vec<u8>,
) -> bool {
    let log = worker.config.access_log;
    out.clear();
    phase::response_filter(ctx, resp, upstream.pending(), Framing::Empty, out);
    upstream.consume(resp.len);
    if conn.write_all(out).await.is_ok() {
        // The tunnel reads through full-size buffers on both sides.
        conn.grow(&worker.bufs);
        tunnel(conn, &mut upstream).await;
    } else {
        ctx.error = Some(Kind::DownstreamIo);
    }
    worker.bufs.put(upstream.into_buffer());
    phase::logging(ctx, log);
    false
}

/// What a [`tunnel`] carried, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tunnelled {
    /// From the client to the backend (bytes pending in the client's buffer
    /// included).
    pub to_upstream: u64,
    /// From the backend to the client.
    pub to_client: u64,
}

/// Joins an upgraded client connection and its backend connection: first
/// the bytes already read on either side (pending in its buffer), then
/// every byte read on one side is written to the other, both ways at once,
/// each through its connection's own buffer.
///
/// When one side closes its sending half, the other side's sending half is
/// shut down (`shutdown(Write)`) and the opposite direction goes on until it
/// closes too: half-closes are propagated. A read or write error ends both
/// directions (both sockets are shut down). Returns when both directions
/// are done; the caller then drops (closes) both connections.
///
/// This is the one place where tunnelled bytes are copied in user space;
/// a kernel splice (sockmap) can take its place.
pub async fn tunnel(client: &mut Conn, upstream: &mut Conn) -> Tunnelled {
    let (client_stream, client_buf) = client.parts_mut();
    let (upstream_stream, upstream_buf) = upstream.parts_mut();
    let mut flushed = Tunnelled::default();
    if crate::bpf::splice_loaded() {
        // The kernel splice (`crate::bpf`, "Handover protocol"): first the
        // bytes already read on either side, so nothing of the tunnel stays
        // in userspace; then, if the kernel takes the pair, only wait for
        // its end. A tunnel is never taken back before it closes.
        for (buf, to, n) in [
            (&mut *client_buf, upstream_stream, &mut flushed.to_upstream),
            (&mut *upstream_buf, client_stream, &mut flushed.to_client),
        ] {
            if !buf.is_empty() {
                *n = buf.len() as u64;
                if io::write_all(to, buf).await.is_err() {
                    let _ = client_stream.shutdown(Shutdown::Both);
                    let _ = upstream_stream.shutdown(Shutdown::Both);
                }
                buf.clear();
            }
        }
        crate::bpf::count_tunnel_userspace(flushed.to_upstream + flushed.to_client);
        match crate::bpf::splice(
            client_stream,
            upstream_stream,
            (&mut *client_buf, &mut *upstream_buf),
        )
        .await
        {
            Ok(spliced) => {
                let carried = spliced.run(client_stream, upstream_stream).await;
                return Tunnelled {
                    to_upstream: flushed.to_upstream + carried.to_upstream,
                    to_client: flushed.to_client + carried.to_client,
                };
            }
            // Entering copied these; what it read and could not write yet
            // is in the buffers, which the copy below writes first.
            Err((to_upstream, to_client)) => {
                flushed.to_upstream += to_upstream;
                flushed.to_client += to_client;
            }
        }
    }
    let (to_upstream, to_client) = tokio::join!(
        copy_half(client_stream, upstream_stream, client_buf),
        copy_half(upstream_stream, client_stream, upstream_buf),
    );
    crate::bpf::count_tunnel_userspace(to_upstream + to_client);
    Tunnelled {
        to_upstream: flushed.to_upstream + to_upstream,
        to_client: flushed.to_client + to_client,
    }
}

/// One direction of a [`tunnel`]: copies until `from` closes (then shuts
/// `to`'s sending half) or an error (then shuts both sockets down, which
/// also ends the other direction). `buf` holds the bytes already read.
async fn copy_half(from: &TcpStream, to: &TcpStream, buf: &mut Vec<u8>) -> u64 {
    let abort = || {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    };
    if buf.capacity() == 0 {
        buf.reserve(io::DEFAULT_BUFFER_SIZE);
    }
    let mut total = 0;
    loop {
        if !buf.is_empty() {
            let n = buf.len() as u64;
            if io::write_all(to, buf).await.is_err() {
                abort();
                return total;
            }
            total += n;
        }
        buf.clear();
        let (result, owned) = from.read(std::mem::take(buf)).await;
        *buf = owned;
        match result {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return total;
            }
            Ok(_) => {}
            Err(_) => {
                abort();
                return total;
            }
        }
    }
}
