//! RequestMirror: a full copy of a request (head after filters, and body)
//! sent to another backend, whose response is read and discarded.
//!
//! A mirror never delays or fails the request it copies. Each mirrored
//! request runs as its own task on the worker's runtime, over the worker's
//! upstream [pool](crate::upstream::pool); the primary request only hands it
//! bytes through a [`Tee`], which never waits.
//!
//! ```text
//!                       ┌──────────────▶ primary backend (awaited)
//! client body ─▶ proxy ─┤
//!                       └─ Tee::push ─▶ bounded queue ─▶ mirror task ─▶ mirror backend
//!                          (never waits)                (own task; response discarded)
//! ```
//!
//! # Bounds and back-pressure
//!
//! * **In flight, per worker:** at most [`DEFAULT_MIRROR_IN_FLIGHT`] mirror
//!   requests run at once on one worker. A mirror that would exceed the
//!   bound is not started; it is *dropped* and counted
//!   (`sluice_mirror_dropped_total`, via the worker's metrics).
//! * **Queued body, per mirror:** the body is streamed to the primary and
//!   never buffered whole. Each chunk the primary forwards is copied once
//!   and queued for every mirror of the request; a mirror's queue holds at
//!   most [`DEFAULT_MIRROR_QUEUE_BYTES`]. When a chunk does not fit, the
//!   mirror cannot keep up: it is *abandoned* (its queue is emptied, its
//!   task closes its backend connection without returning it to the pool)
//!   and counted as dropped. The primary is never slowed down to wait for a
//!   mirror.
//! * **Time:** a mirror request gets the rule's backend timeout, or
//!   [`DEFAULT_MIRROR_TIMEOUT`] when the rule has none, from start to the
//!   end of its response; a mirror that runs out of time is closed, which
//!   also bounds how long it holds its in-flight slot.
//!
//! A primary request that does not finish sending its body (the client went
//! away) abandons its mirrors too: a mirror never sends a truncated body as
//! if it were whole.
//!
//! Mirrors speak HTTP/1.1 to their backend and get the same head the
//! primary backend gets: method, target after URLRewrite, headers after the
//! request filters, `X-Forwarded-For`, and the same `Host` (unlike Envoy,
//! no `-shadow` suffix).
//!
//! # Invariants
//!
//! * The in-flight count of a worker is the number of live [`InFlight`]
//!   guards on its thread; a guard lives exactly as long as its task.
//! * A [`Channel`] is written only by its [`Tee`] and read only by its task
//!   (one thread, no lock); once `Abandoned` it stays so and holds no data.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use route_compiler::route::{Filter, Rule};
use tokio_uring::net::TcpStream;

use crate::codec::h1::{self, ChunkedDecoder, Framing, Head};
use crate::io::{self, Conn};
use crate::runtime::Worker;

/// Most mirror requests in flight at once on one worker; over it, a mirror
/// is dropped and counted. 64 keeps the sockets and buffers a slow mirror
/// backend can pin down small next to what the primary traffic uses.
pub const DEFAULT_MIRROR_IN_FLIGHT: usize = 64;

/// Most body bytes queued for one mirror request (the mirror's backend or
/// connection is slower than the primary's); over it, the mirror request is
/// abandoned and counted as dropped.
pub const DEFAULT_MIRROR_QUEUE_BYTES: usize = 1024 * 1024;

/// How long a mirror request may take when its rule sets no timeout.
pub const DEFAULT_MIRROR_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    /// Mirror requests in flight on this worker (a worker is one thread).
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// Mirror requests in flight on the current worker (for tests and metrics).
pub fn in_flight() -> usize {
    IN_FLIGHT.with(Cell::get)
}

/// Chooses the mirrors of one request: for every RequestMirror filter of
/// `rule` that the worker's generator rolls into its share
/// (`numerator/denominator`; `0/n` never), one ready endpoint of its
/// backend, uniformly. Mirrors whose backend does not resolve or has no
/// ready endpoint are skipped. Usable from any protocol's driver.
pub fn select(rule: &Rule, rng: &mut impl Rng, out: &mut Vec<SocketAddr>) {
    out.clear();
    for filter in &rule.filters {
        let Filter::RequestMirror(m) = filter else {
            continue;
        };
        if m.numerator == 0 || m.denominator == 0 {
            continue;
        }
        if m.numerator < m.denominator && rng.random_range(0..m.denominator) >= m.numerator {
            continue;
        }
        let backend = &m.backend;
        if !backend.is_resolved() {
            continue;
        }
        out.extend(crate::upstream::endpoint(backend, rng));
    }
}

// === impl InFlight ===

/// One slot of the worker's in-flight bound, released on drop.
#[derive(Debug)]
struct InFlight(());

impl InFlight {
    /// A slot, unless [`DEFAULT_MIRROR_IN_FLIGHT`] are taken.
    fn acquire() -> Option<InFlight> {
        IN_FLIGHT.with(|n| {
            if n.get() >= DEFAULT_MIRROR_IN_FLIGHT {
                return None;
            }
            n.set(n.get() + 1);
            Some(InFlight(()))
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

// === impl Channel ===

/// Where a mirror's body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// More body may come.
    Open,
    /// The whole body has been queued.
    Finished,
    /// Given up (queue full, primary failed, or the mirror's task ended).
    Abandoned,
}

#[derive(Debug)]
struct Queue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    state: State,
    waker: Option<Waker>,
}

/// A bounded single-thread queue of body chunks from a [`Tee`] to one
/// mirror task.
#[derive(Debug)]
struct Channel {
    queue: RefCell<Queue>,
    limit: usize,
}

/// What the mirror task gets next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Chunk(Bytes),
    End,
    Abandoned,
}

impl Channel {
    fn new(limit: usize, state: State) -> Channel {
        Channel {
            queue: RefCell::new(Queue {
                chunks: VecDeque::new(),
                bytes: 0,
                state,
                waker: None,
            }),
            limit,
        }
    }

    fn wake(q: &mut Queue) {
        if let Some(w) = q.waker.take() {
            w.wake();
        }
    }

    /// Queues `chunk`; `false` when the mirror is (now) abandoned, either
    /// because `chunk` does not fit or because it was before.
    fn offer(&self, chunk: &Bytes) -> bool {
        let mut q = self.queue.borrow_mut();
        if q.state != State::Open {
            return false;
        }
        if q.bytes + chunk.len() > self.limit {
            drop(q);
            self.abandon();
            return false;
        }
        q.bytes += chunk.len();
        q.chunks.push_back(chunk.clone());
        Self::wake(&mut q);
        true
    }

    fn finish(&self) {
        let mut q = self.queue.borrow_mut();
        if q.state == State::Open {
            q.state = State::Finished;
            Self::wake(&mut q);
        }
    }

    fn abandon(&self) {
        let mut q = self.queue.borrow_mut();
        q.state = State::Abandoned;
        q.chunks.clear();
        q.bytes = 0;
        Self::wake(&mut q);
    }

    fn is_abandoned(&self) -> bool {
        self.queue.borrow().state == State::Abandoned
    }

    /// The next chunk, waiting while the queue is empty and open.
    async fn next(&self) -> Next {
        poll_fn(|cx| {
            let mut q = self.queue.borrow_mut();
            if q.state == State::Abandoned {
                return Poll::Ready(Next::Abandoned);
            }
            if let Some(chunk) = q.chunks.pop_front() {
                q.bytes -= chunk.len();
                return Poll::Ready(Next::Chunk(chunk));
            }
            if q.state == State::Finished {
                return Poll::Ready(Next::End);
            }
            q.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

// === impl Tee ===

/// The primary request's side of its mirrors: copies of the body chunks go
/// in, never waiting. Dropping a `Tee` that was not [finished](Tee::finish)
/// abandons its mirrors (the body is incomplete).
#[derive(Debug, Default)]
pub struct Tee {
    mirrors: Vec<Rc<Channel>>,
    worker: Option<Rc<Worker>>,
    /// Pushes are body data to be chunk-encoded (see [`Tee::start_body`]),
    /// not bytes as forwarded.
    chunked: bool,
}

impl Tee {
    /// A tee with no mirrors: every call is a no-op.
    pub fn none() -> Tee {
        Tee::default()
    }

    /// Starts one mirror task per address in `addrs`, each sending
    /// `request_head` (the head forwarded to the primary backend, framing
    /// included) and then the body pushed into the returned tee. `has_body`
    /// says whether a body follows (else the mirrors start finished).
    /// Mirrors over the worker's in-flight bound are dropped and counted.
    pub fn start(
        worker: &Rc<Worker>,
        addrs: &[SocketAddr],
        request_head: &[u8],
        has_body: bool,
        timeout: Option<Duration>,
    ) -> Tee {
        let mut tee = Tee::none();
        if addrs.is_empty() {
            return tee;
        }
        let timeout = timeout.unwrap_or(DEFAULT_MIRROR_TIMEOUT);
        let head_request = request_head.starts_with(b"HEAD ");
        let state = if has_body {
            State::Open
        } else {
            State::Finished
        };
        for &addr in addrs {
            let Some(slot) = InFlight::acquire() else {
                worker.metrics.mirror_dropped();
                continue;
            };
            let channel = Rc::new(Channel::new(DEFAULT_MIRROR_QUEUE_BYTES, state));
            let task = Task {
                worker: Rc::clone(worker),
                addr,
                head: request_head.to_vec(),
                head_request,
                channel: Rc::clone(&channel),
            };
            tokio_uring::spawn(task.run(timeout, slot));
            tee.mirrors.push(channel);
        }
        tee.worker = Some(Rc::clone(worker));
        tee
    }

    /// As [`Tee::start`], for a driver that pushes body *data* rather
    /// than the bytes it forwarded (HTTP/2 streams): with `framing`
    /// [`Framing::Chunked`] each push is written as one chunk and
    /// [`Tee::finish`] adds the last chunk, so that the mirrors' HTTP/1.1
    /// body matches `request_head`'s framing.
    pub fn start_body(
        worker: &Rc<Worker>,
        addrs: &[SocketAddr],
        request_head: &[u8],
        framing: Framing,
        timeout: Option<Duration>,
    ) -> Tee {
        let has_body = framing != Framing::Empty;
        let mut tee = Tee::start(worker, addrs, request_head, has_body, timeout);
        tee.chunked = framing == Framing::Chunked;
        tee
    }

    /// Whether no mirror is (still) fed.
    pub fn is_empty(&self) -> bool {
        self.mirrors.is_empty()
    }

    /// Queues a copy of `data` (the next bytes of the body as forwarded,
    /// framing included) for every mirror. A mirror whose queue is full is
    /// abandoned and counted as dropped.
    pub fn push(&mut self, data: &[u8]) {
        if self.mirrors.is_empty() || data.is_empty() {
            return;
        }
        let chunk = if self.chunked {
            let mut encoded = Vec::with_capacity(data.len() + 12);
            h1::encode_chunk(&mut encoded, data);
            Bytes::from(encoded)
        } else {
            Bytes::copy_from_slice(data)
        };
        self.offer(&chunk);
    }

    fn offer(&mut self, chunk: &Bytes) {
        let worker = self.worker.as_ref();
        self.mirrors.retain(|channel| {
            if channel.is_abandoned() {
                // The task gave up by itself (its backend failed).
                return false;
            }
            let kept = channel.offer(chunk);
            if !kept && let Some(w) = worker {
                w.metrics.mirror_dropped();
            }
            kept
        });
    }

    /// Marks the body complete: the mirrors send what is queued, then read
    /// their response.
    pub fn finish(&mut self) {
        if self.chunked && !self.mirrors.is_empty() {
            self.offer(&Bytes::from_static(h1::CHUNKED_END));
        }
        for channel in self.mirrors.drain(..) {
            channel.finish();
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        for channel in self.mirrors.drain(..) {
            channel.abandon();
        }
    }
}

// === impl Task ===

/// Why a mirror request ended early (nothing is reported to anyone: the
/// task only needs to know whether its connection can be pooled).
#[derive(Debug)]
struct Failed;

/// One mirror request.
struct Task {
    worker: Rc<Worker>,
    addr: SocketAddr,
    head: Vec<u8>,
    head_request: bool,
    channel: Rc<Channel>,
}

impl Task {
    async fn run(mut self, timeout: Duration, slot: InFlight) {
        // The connection lives out here so that it can still be reached
        // when the exchange is cut short by the timeout.
        let mut conn = None;
        let result = tokio::time::timeout(timeout, self.exchange(&mut conn)).await;
        match (result, conn) {
            (Ok(Ok(true)), Some(conn)) => {
                crate::upstream::h1::checkin(&self.worker, self.addr, conn)
            }
            // Abandoned, failed or out of time: the connection is closed.
            // A read or write may still be in flight on it (its socket
            // would stay open until that completes): shutting the socket
            // down completes it now.
            (_, Some(conn)) => {
                let _ = conn.stream().shutdown(Shutdown::Both);
                self.worker.bufs.put(conn.into_buffer());
            }
            (_, None) => {}
        }
        // Nothing more is read from the queue.
        self.channel.abandon();
        drop(slot);
    }

    /// Sends the request and reads the response, on the connection it
    /// leaves in `slot`; whether that connection can be reused.
    async fn exchange(&mut self, slot: &mut Option<Conn>) -> Result<bool, Failed> {
        let mut retried = false;
        loop {
            if let Some(stale) = slot.take() {
                let _ = stale.stream().shutdown(Shutdown::Both);
            }
            let (conn, reused) = match self.worker.pool.take(self.addr) {
                Some(c) if !retried => (c, true),
                _ => {
                    let stream = TcpStream::connect(self.addr).await.map_err(|_| Failed)?;
                    let _ = stream.set_nodelay(true);
                    (Conn::new(stream, self.worker.bufs.get()), false)
                }
            };
            let conn = slot.insert(conn);
            match self.attempt(conn).await {
                Ok(keep) => return Ok(keep),
                // A pooled connection the backend had closed: try once more
                // on a fresh one, as long as no body went out on it.
                Err(Attempt::Stale) if reused => retried = true,
                Err(_) => return Err(Failed),
            }
        }
    }

    /// One try on `conn`: whether `conn` may be pooled afterwards.
    async fn attempt(&mut self, conn: &mut Conn) -> Result<bool, Attempt> {
        let mut head = std::mem::take(&mut self.head);
        let written = io::write_all(conn.stream(), &mut head).await;
        self.head = head;
        written.map_err(|_| Attempt::Stale)?;
        let mut sent_body = false;
        loop {
            match self.channel.next().await {
                Next::Chunk(chunk) => {
                    sent_body = true;
                    let (result, _) = conn.stream().write_all(chunk).await;
                    result.map_err(|_| Attempt::Failed)?;
                }
                Next::End => break,
                Next::Abandoned => return Err(Attempt::Failed),
            }
        }
        let mut resp = Head::default();
        loop {
            match h1::parse_response(conn.pending(), &mut resp) {
                Ok(true) if resp.status == 101 => return Err(Attempt::Failed),
                Ok(true) if resp.status < 200 => conn.consume(resp.len),
                Ok(true) => break,
                Ok(false) if conn.is_full() => return Err(Attempt::Failed),
                Ok(false) => {}
                Err(_) => return Err(Attempt::Failed),
            }
            let nothing_yet = conn.pending().is_empty();
            match conn.fill().await {
                Ok(0) | Err(_) if nothing_yet && !sent_body => return Err(Attempt::Stale),
                Ok(0) | Err(_) => return Err(Attempt::Failed),
                Ok(_) => {}
            }
        }
        let framing = h1::response_framing(&resp, conn.pending(), self.head_request)
            .map_err(|_| Attempt::Failed)?;
        let keep = h1::keep_alive(&resp, conn.pending()) && framing != Framing::UntilClose;
        conn.consume(resp.len);
        discard_body(conn, framing).await?;
        Ok(keep)
    }
}

/// How one try of a mirror request failed.
#[derive(Debug)]
enum Attempt {
    /// Nothing came back from a connection that may have been closed while
    /// pooled, and no body was sent: may be retried once.
    Stale,
    /// Anything else.
    Failed,
}

/// Reads and drops a response body.
async fn discard_body(conn: &mut Conn, framing: Framing) -> Result<(), Attempt> {
    match framing {
        Framing::Empty => Ok(()),
        Framing::Length(mut n) => {
            while n > 0 {
                if conn.pending().is_empty() {
                    fill(conn).await?;
                }
                let take = conn
                    .pending()
                    .len()
                    .min(usize::try_from(n).unwrap_or(usize::MAX));
                conn.consume(take);
                n -= take as u64;
            }
            Ok(())
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            while !decoder.is_done() {
                if conn.pending().is_empty() {
                    fill(conn).await?;
                }
                let step = decoder
                    .decode(conn.pending())
                    .map_err(|_| Attempt::Failed)?;
                conn.consume(step.consumed);
            }
            Ok(())
        }
        Framing::UntilClose => loop {
            let n = conn.pending().len();
            conn.consume(n);
            match conn.fill().await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(_) => return Err(Attempt::Failed),
            }
        },
    }
}

async fn fill(conn: &mut Conn) -> Result<(), Attempt> {
    match conn.fill().await {
        Ok(0) | Err(_) => Err(Attempt::Failed),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Waker};

    fn poll_next(channel: &Channel) -> Poll<Next> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut fut = std::pin::pin!(channel.next());
        fut.as_mut().poll(&mut cx)
    }

    #[test]
    fn queue_is_bounded_in_bytes_and_abandons_when_full() {
        let channel = Channel::new(10, State::Open);
        assert_eq!(poll_next(&channel), Poll::Pending);
        assert!(channel.offer(&Bytes::from_static(b"hello")));
        assert!(channel.offer(&Bytes::from_static(b"world")));
        // Full: the next chunk abandons the mirror and empties the queue.
        assert!(!channel.offer(&Bytes::from_static(b"!")));
        assert_eq!(poll_next(&channel), Poll::Ready(Next::Abandoned));
        assert!(!channel.offer(&Bytes::from_static(b"x")));
    }

    #[test]
    fn finished_queue_drains_then_ends() {
        let channel = Channel::new(10, State::Open);
        assert!(channel.offer(&Bytes::from_static(b"abc")));
        channel.finish();
        assert_eq!(
            poll_next(&channel),
            Poll::Ready(Next::Chunk(Bytes::from_static(b"abc")))
        );
        assert_eq!(poll_next(&channel), Poll::Ready(Next::End));
        // Draining made room again, but a finished body takes no more.
        assert!(!channel.offer(&Bytes::from_static(b"late")));
    }

    #[test]
    fn dropping_an_unfinished_tee_abandons_its_mirrors() {
        let channel = Rc::new(Channel::new(10, State::Open));
        let tee = Tee {
            mirrors: vec![Rc::clone(&channel)],
            worker: None,
            chunked: false,
        };
        drop(tee);
        assert!(channel.is_abandoned());
    }

    #[test]
    fn in_flight_is_bounded_per_worker() {
        let slots: Vec<InFlight> = (0..DEFAULT_MIRROR_IN_FLIGHT)
            .map(|_| InFlight::acquire().unwrap())
            .collect();
        assert_eq!(in_flight(), DEFAULT_MIRROR_IN_FLIGHT);
        assert!(InFlight::acquire().is_none());
        drop(slots);
        assert_eq!(in_flight(), 0);
        assert!(InFlight::acquire().is_some());
    }

    #[test]
    fn select_honours_the_share() {
        use rand::SeedableRng;
        use route_compiler::route::{Backend, Mirror, ObjectName, Timeouts, UpstreamProtocol};
        let mirror = |numerator, denominator, port| {
            Filter::RequestMirror(Mirror {
                backend: Backend {
                    service: ObjectName {
                        namespace: "ns".into(),
                        name: "shadow".into(),
                    },
                    port: 80,
                    weight: 1,
                    protocol: UpstreamProtocol::Inherit,
                    endpoints: vec![SocketAddr::from(([127, 0, 0, 1], port))],
                    unresolved: None,
                },
                numerator,
                denominator,
            })
        };
        let mut rule = Rule {
            name: None,
            filters: Vec::new(),
            backends: Vec::new(),
            total_weight: 0,
            timeouts: Timeouts::default(),
        };
        rule.filters = vec![mirror(1, 1, 1), mirror(0, 100, 2), mirror(1, 4, 3)];
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut out = Vec::new();
        let mut third = 0;
        for _ in 0..4000 {
            select(&rule, &mut rng, &mut out);
            assert_eq!(out[0].port(), 1);
            assert!(out.iter().all(|a| a.port() != 2));
            third += out.iter().filter(|a| a.port() == 3).count();
        }
        assert!((800..1200).contains(&third), "{third}");
    }
}
