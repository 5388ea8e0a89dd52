//! The response splice: the body of an HTTP/1.1 response that no filter
//! touches goes from the backend connection to the client connection in
//! the kernel (sk_skb stream verdict), never through userspace.
//!
//! # Why offsets
//!
//! A response body starts right after a head the proxy must read and
//! parse, on a connection whose next response the proxy must read again.
//! So the kernel has to take exactly the body's bytes — no earlier byte
//! (the proxy has it), no later one (the next head) — and the proxy has to
//! learn where the kernel stopped, without stopping the backend. Both
//! sides count the upstream socket's byte stream from its first byte:
//!
//! * [`prepare_upstream`] puts a new backend connection in `SLUICE_SPLICE`
//!   with a zeroed `SLUICE_RSP_SEEN` entry right after it connects, before
//!   the request that makes the backend speak; from then on the stream
//!   verdict sees every byte and keeps the offset of the next one
//!   ([`ResponseSeen::seen`]). With nothing armed it passes every skb to
//!   the socket's own receive path, where the proxy reads as usual (its
//!   [`Conn`] counts what it reads).
//! * The proxy's offset of the next unread byte is what its `Conn` read
//!   plus what the kernel took in earlier responses
//!   ([`UpstreamSplice::kernel_bytes`]).
//!
//! # Handover protocol
//!
//! 1. *Entering* ([`splice_response`]), after the head and the body bytes
//!    already read were written to the client: nothing of the body is in
//!    userspace; its unread part is the stream's `[a, end)`. The proxy
//!    notes how many bytes the client socket has taken so far (`TCP_INFO`'s
//!    bytes acked plus `SIOCOUTQ`: every byte ever queued on it, [`queued`])
//!    and writes `SLUICE_RSP_ARM` = (client socket, `a`, `end`).
//! 2. *Staying*: the verdict redirects an skb `[at, at + len)` to the client
//!    socket's egress only if it lies in the body, ends before `end`, and
//!    starts at `a` or where the previous redirect ended (the rule on
//!    [`ResponseArm`]). The skb holding the body's last byte is never
//!    redirected, nor is one that arrives after a passed one: those go to
//!    the proxy, so it is woken when the body ends, and whenever the kernel
//!    stopped early (an skb already queued when the body was armed, or a
//!    redirect the kernel refused). The proxy waits on an epoll set of its
//!    own: the upstream socket readable, or the client socket failed.
//! 3. *Taking back*: when the upstream socket has bytes, the kernel has
//!    redirected `[a, r)` (`r` = `redirect_end`, or `a` if nothing) and
//!    passed everything from `r` on. The proxy first waits until the
//!    client socket has queued every redirected byte (the kernel writes
//!    them from a work queue; [`queued`] reaching the count), then *peeks*
//!    the passed bytes, writes them to the client itself, arms the rest
//!    from the offset after them, and only then consumes them: consuming is
//!    what reopens the backend's window, so the next bytes find the verdict
//!    armed at exactly their offset (a backend held by its window has
//!    nothing in flight). No byte overtakes another. If the body is
//!    complete, the entry is removed and the connection is the proxy's
//!    again (back to the pool); after [`MAX_REARMS`] rounds, or with less
//!    than [`RESPONSE_SPLICE_MIN`] left, the rest is copied in userspace.
//! 4. *A slow client*: the kernel gives a redirect no back-pressure from the
//!    client socket (the verdict takes the bytes off the backend socket at
//!    once, so the backend's window stays open). The proxy checks, at an
//!    interval fitted to the rate, how many redirected bytes are not yet
//!    on the client socket; past [`MAX_KERNEL_BACKLOG`] it disarms, the
//!    verdict passes what comes, the backend socket's window fills and
//!    holds the backend, and step 3 resumes once the client caught up.
//! 5. *Failures*: the backend closing before the end, or the client socket
//!    failing, ends both connections, as in the userspace copy. A body that
//!    makes no progress for [`STALL_TIMEOUT`] does too.
//!
//! # Known bug: disabled
//!
//! With both CPUs loaded (a busy loop on each), 3 of 10 runs of
//! `on_splices_64mib_responses_in_the_kernel` delivered a body's bytes out
//! of order or stalled it (quiet runs pass; the cause is not found). So
//! `--ebpf-splice-responses` is refused unless
//! `SLUICE_UNSAFE_RESPONSE_SPLICE=1` is set, for investigating it, and the
//! test is ignored. A redesign that enters `SLUICE_SPLICE` only when a
//! body is armed (as tunnels now do) meets a kernel 6.18 behaviour: a
//! socket taken out of the verdict's map after the verdict redirected
//! bytes can keep received data that `recv` never returns
//! (docs/benchmarks.md, fifth session).
//!
//! # Does it pay off?
//!
//! Not on the kernel measured (6.18, docs/benchmarks.md): a local backend
//! sends most of a 1 MiB body before the head has been parsed (1.22× the
//! CPU per GB of the userspace copy); a 64 MiB body is mostly redirected
//! and costs the proxy's core 0.56–0.86× per GB, but is delivered at 0.6×
//! the rate. So it is opt-in (`--ebpf-splice-responses`) and marked
//! experimental.
//!
//! Not taken: a client connection whose local client's leg is bypassed by
//! sk_msg (the kernel's writes on it would be redirected again, into a
//! socket whose queue may be full), a body below
//! [`RESPONSE_SPLICE_MIN`], or a registration found inconsistent once.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use sluice_ebpf_common::{ResponseArm, ResponseSeen, SockKey};
use tokio_uring::net::TcpStream;

use super::{EpollSet, SPLICER, Splicer, recv_upto, sock_key};
use crate::io::Conn;

/// Smallest body (after what the first read brought) given to the kernel:
/// below it a userspace copy is one or two reads and writes, cheaper than
/// arming and the wake-up.
pub const RESPONSE_SPLICE_MIN: u64 = 64 * 1024;

/// How often a body that stopped early is armed again before the rest is
/// copied in userspace.
pub const MAX_REARMS: u32 = 64;

/// A body whose offsets do not move for this long fails (a stalled backend
/// or client; the userspace copy has no shorter bound either).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Most bytes of a body the kernel may hold for a slow client (redirected,
/// not yet on the client socket's send queue) before the body is disarmed
/// and the backend held by its window again.
pub const MAX_KERNEL_BACKLOG: u64 = 4 << 20;

/// Most bytes copied back in one round (a receive window's worth is
/// usual).
const MAX_TAKE_BACK: u64 = 8 << 20;

/// Bounds of the interval between two checks of that backlog.
const CHECK_MIN: Duration = Duration::from_millis(1);
const CHECK_MAX: Duration = Duration::from_millis(250);

/// Whether new backend connections are registered (`--ebpf-splice-responses`).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the response splice on or off for backend connections made from
/// now on (the loader, once the splice is loaded).
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Release);
}

/// Response body bytes moved by the kernel (the verdict's redirects).
static KERNEL_BYTES: AtomicU64 = AtomicU64::new(0);
/// Response body bytes of large responses copied in userspace.
static USERSPACE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts the body bytes of a response of at least
/// [`RESPONSE_SPLICE_MIN`] that the proxy copied itself
/// (`sluice_response_body_bytes_total{path="userspace"}`).
pub fn count_userspace(bytes: u64) {
    USERSPACE_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// `(kernel, userspace)` body bytes of large responses so far.
pub fn body_bytes() -> (u64, u64) {
    (
        KERNEL_BYTES.load(Ordering::Relaxed),
        USERSPACE_BYTES.load(Ordering::Relaxed),
    )
}

/// A backend connection registered for the response splice (see the
/// module docs): in `SLUICE_SPLICE` and `SLUICE_RSP_SEEN` since before its
/// first byte. Dropping it removes its entries (the socket leaves the
/// SockHash when it closes).
pub struct UpstreamSplice {
    splicer: Arc<Splicer>,
    key: SockKey,
    /// Bytes of the stream the kernel took in earlier responses.
    kernel_bytes: u64,
    /// Something did not add up once: never armed again.
    broken: bool,
}

impl std::fmt::Debug for UpstreamSplice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSplice")
            .field("key", &self.key)
            .field("kernel_bytes", &self.kernel_bytes)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Drop for UpstreamSplice {
    fn drop(&mut self) {
        self.splicer.disarm(&self.key);
        let _ = self
            .splicer
            .rsp_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Registers a backend connection that has just connected (nothing
/// received yet) for the response splice. `None` when the splice is not
/// loaded or the kernel refuses the socket: its responses are then copied
/// in userspace.
pub fn prepare_upstream(stream: &TcpStream) -> Option<Box<UpstreamSplice>> {
    if !ENABLED.load(Ordering::Acquire) {
        return None;
    }
    let splicer = SPLICER
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()?;
    let fd = stream.as_raw_fd();
    let key = sock_key(fd)?;
    {
        let mut seen = splicer
            .rsp_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // BPF_ANY: a previous connection with the same tuple may have left
        // its entry (a crash between close and drop); start from zero.
        if let Err(e) = seen.insert(key, ResponseSeen::default(), 0) {
            tracing::debug!(target: "sluice::bpf", "eBPF response splice: cannot register an upstream socket: {e}");
            return None;
        }
    }
    splicer.disarm(&key);
    let added = splicer
        .splice
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, fd, 0);
    if let Err(e) = added {
        let _ = splicer
            .rsp_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        tracing::debug!(target: "sluice::bpf", "eBPF response splice: cannot add an upstream socket to SLUICE_SPLICE: {e}");
        return None;
    }
    Some(Box::new(UpstreamSplice {
        splicer,
        key,
        kernel_bytes: 0,
        broken: false,
    }))
}

/// What became of a response body offered to the kernel.
#[derive(Debug)]
pub enum BodySplice {
    /// Not taken: the caller copies all of it.
    NotTaken,
    /// Every byte is on the client socket; the backend connection is
    /// reusable.
    Done,
    /// The first bytes are on the client socket; the caller copies the
    /// last `n`.
    Rest(u64),
    /// The backend connection failed or closed before the end.
    UpstreamFailed(io::Error),
    /// The client connection failed.
    ClientFailed(io::Error),
}

/// Offers the next `rest` bytes of `upstream` — the unread part of a
/// response body, nothing of which is buffered — to the kernel, to be
/// written on `client` (see the module docs for the protocol). Call it with
/// no read or write in flight on either socket.
pub async fn splice_response(upstream: &mut Conn, client: &TcpStream, rest: u64) -> BodySplice {
    if rest < RESPONSE_SPLICE_MIN || !upstream.pending().is_empty() {
        return BodySplice::NotTaken;
    }
    let ufd = upstream.stream().as_raw_fd();
    let Some((reg, received)) = upstream.kernel_splice_mut() else {
        return BodySplice::NotTaken;
    };
    if reg.broken {
        return BodySplice::NotTaken;
    }
    let splicer = reg.splicer.clone();
    let ukey = reg.key;
    let cfd = client.as_raw_fd();
    let Some(ckey) = sock_key(cfd) else {
        return BodySplice::NotTaken;
    };
    if splicer.bypass_fed(&ckey) {
        return BodySplice::NotTaken;
    }
    let start = received + reg.kernel_bytes;
    let end = start + rest;
    // The verdict has seen at least what the proxy read; if not, the two
    // counts disagree (the socket missed the verdict): never again.
    if splicer.seen(&ukey).is_none_or(|s| s.seen < start) {
        reg.broken = true;
        return BodySplice::NotTaken;
    }
    let Some(queued_at_start) = queued(cfd) else {
        return BodySplice::NotTaken;
    };
    if !splicer.arm(&ukey, ResponseArm::new(ckey, start, end)) {
        return BodySplice::NotTaken;
    }
    let mut watch = match Watch::new(ufd, cfd) {
        Ok(w) => w,
        Err(e) => {
            splicer.disarm(&ukey);
            tracing::debug!(target: "sluice::bpf", "eBPF response splice: cannot watch the sockets: {e}");
            return BodySplice::NotTaken;
        }
    };
    let mut session = Session {
        splicer: &splicer,
        ukey,
        ckey,
        ufd,
        cfd,
        start,
        end,
        queued_at_start,
        armed_at: start,
        offset: start,
        rearms: 0,
        buf: Vec::new(),
        userspace: 0,
    };
    let outcome = session.run(&mut watch, client).await;
    splicer.disarm(&ukey);
    let (kernel, userspace) = (
        session.offset - start - session.userspace,
        session.userspace,
    );
    KERNEL_BYTES.fetch_add(kernel, Ordering::Relaxed);
    USERSPACE_BYTES.fetch_add(userspace, Ordering::Relaxed);
    upstream.count_received(userspace);
    if let Some((reg, _)) = upstream.kernel_splice_mut() {
        reg.kernel_bytes += kernel;
    }
    outcome
}

/// One body in the kernel's hands.
struct Session<'a> {
    splicer: &'a Splicer,
    ukey: SockKey,
    ckey: SockKey,
    ufd: RawFd,
    cfd: RawFd,
    /// The body's unread part when entering: `[start, end)`.
    start: u64,
    end: u64,
    /// [`queued`] on the client socket when entering.
    queued_at_start: u64,
    /// The offset last armed from.
    armed_at: u64,
    /// Every byte before it is on its way to the client (redirected, or
    /// written by the proxy).
    offset: u64,
    rearms: u32,
    buf: Vec<u8>,
    /// Bytes the proxy read and wrote itself.
    userspace: u64,
}

impl Session<'_> {
    async fn run(&mut self, watch: &mut Watch, client: &TcpStream) -> BodySplice {
        let mut last = (0u64, Instant::now());
        let mut check = CHECK_MIN;
        loop {
            let ready = match tokio::time::timeout(check, watch.wait()).await {
                Ok(Ok(ready)) => ready,
                Ok(Err(e)) => return BodySplice::ClientFailed(e),
                Err(_) => Ready::default(),
            };
            if ready.client_failed {
                return BodySplice::ClientFailed(io::Error::from(io::ErrorKind::ConnectionReset));
            }
            let Some(seen) = self.splicer.seen(&self.ukey) else {
                return BodySplice::UpstreamFailed(io::Error::other(
                    "the response splice's entry is gone",
                ));
            };
            if ready.upstream_readable {
                if let Some(outcome) = self.take_back(client, &seen).await {
                    return outcome;
                }
            } else {
                check = self.bound_backlog(&seen, last.0, check);
            }
            if seen.seen != last.0 {
                last = (seen.seen, Instant::now());
            } else if last.1.elapsed() >= STALL_TIMEOUT {
                return BodySplice::UpstreamFailed(io::Error::from(io::ErrorKind::TimedOut));
            }
        }
    }

    /// Keeps what the kernel holds for a slow client bounded: bytes the
    /// verdict redirected wait in the client socket's queue until the
    /// kernel can write them, and nothing slows the backend meanwhile (its
    /// window stays open). Past [`MAX_KERNEL_BACKLOG`] the body is disarmed:
    /// the verdict then passes what comes to the upstream socket, whose
    /// window fills and holds the backend; once the client has caught up the
    /// proxy copies that back and arms again ([`Self::take_back`]). Returns
    /// when to check next: about when the backlog could reach the bound at
    /// the rate seen since the last check.
    fn bound_backlog(
        &mut self,
        seen: &ResponseSeen,
        seen_before: u64,
        check: Duration,
    ) -> Duration {
        let handed = seen
            .redirect_end
            .max(self.offset)
            .saturating_sub(self.start);
        let Some(on_client) = queued(self.cfd).map(|q| q.saturating_sub(self.queued_at_start))
        else {
            return CHECK_MIN;
        };
        let backlog = handed.saturating_sub(on_client);
        if backlog > MAX_KERNEL_BACKLOG {
            self.splicer.disarm(&self.ukey);
            return CHECK_MIN;
        }
        let grown = seen.seen.saturating_sub(seen_before).max(1);
        let room = MAX_KERNEL_BACKLOG - backlog;
        // At the last interval's rate, `room` lasts room / grown intervals.
        let next = check.mul_f64((room as f64 / grown as f64).min(64.0) / 2.0);
        next.clamp(CHECK_MIN, CHECK_MAX)
    }

    /// Waits until the client socket has queued every body byte before
    /// [`Self::offset`] (the kernel writes redirected bytes from a work
    /// queue, soon after the verdict).
    async fn flushed(&self, client: &TcpStream) -> io::Result<()> {
        let want = self.queued_at_start + (self.offset - self.start);

        let mut spins = 0u32;
        let mut last = (0u64, Instant::now());
        loop {
            let Some(now) = queued(self.cfd) else {
                return Err(io::Error::last_os_error());
            };
            if now >= want {
                return Ok(());
            }
            if super::tcp_state(client.as_raw_fd()).is_none_or(|s| s == super::TCP_CLOSE) {
                return Err(io::Error::from(io::ErrorKind::ConnectionReset));
            }
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() >= STALL_TIMEOUT {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            // Usually a few microseconds: yield first, sleep if it drags.
            spins += 1;
            if spins < 64 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// The kernel stopped redirecting and passes what arrives to the
    /// proxy: copies that back to the client and arms again from after it
    /// (or ends the body). `Some` when the body is through or the
    /// splice is over.
    ///
    /// The passed bytes are *peeked* and written to the client before the
    /// verdict is armed again, and consumed only after: consuming them is
    /// what opens the backend's receive window, so bytes that arrive after
    /// it find the verdict armed at exactly their offset (a backend held by
    /// the window has nothing in flight; one that is not may still get an
    /// skb passed first, which only means one more round).
    async fn take_back(&mut self, client: &TcpStream, seen: &ResponseSeen) -> Option<BodySplice> {
        // The kernel redirected up to `r` and passed everything after.
        let r = seen.redirect_end.max(self.armed_at);
        if r > self.end || r < self.offset {
            return Some(BodySplice::UpstreamFailed(io::Error::other(
                "the response splice's offsets disagree",
            )));
        }
        self.offset = r;
        // Redirected bytes first: the kernel writes them from a work queue.
        if let Err(e) = self.flushed(client).await {
            return Some(BodySplice::ClientFailed(e));
        }
        let upto = seen.seen.clamp(self.offset, self.end);
        let want = usize::try_from(upto - self.offset)
            .unwrap_or(usize::MAX)
            .max(1);
        // All of it in one round: arming after part of it would find the
        // rest already passed, and the round would be lost.
        self.buf
            .reserve(want.min(usize::try_from(MAX_TAKE_BACK).unwrap_or(usize::MAX)));
        // Never past the body: the next response's head is the proxy's,
        // read through its `Conn`.
        let n = match recv_upto(self.ufd, &mut self.buf, want, libc::MSG_PEEK) {
            Ok(0) => {
                return Some(BodySplice::UpstreamFailed(io::Error::from(
                    io::ErrorKind::UnexpectedEof,
                )));
            }
            Ok(n) => n,
            // Woken for nothing (the bytes were read in an earlier round).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => return Some(BodySplice::UpstreamFailed(e)),
        };
        if let Err(e) = crate::io::write_all(client, &mut self.buf).await {
            return Some(BodySplice::ClientFailed(e));
        }
        let next = self.offset + n as u64;
        let rearm = next < self.end
            && self.end - next >= RESPONSE_SPLICE_MIN
            && self.rearms < MAX_REARMS
            && self
                .splicer
                .arm(&self.ukey, ResponseArm::new(self.ckey, next, self.end));
        if rearm {
            self.rearms += 1;
            self.armed_at = next;
        }
        // Now consume what was peeked (and written).
        let mut left = n;
        while left > 0 {
            match recv_upto(self.ufd, &mut self.buf, left, 0) {
                Ok(0) => {
                    return Some(BodySplice::UpstreamFailed(io::Error::from(
                        io::ErrorKind::UnexpectedEof,
                    )));
                }
                Ok(m) => left -= m,
                Err(e) => return Some(BodySplice::UpstreamFailed(e)),
            }
        }
        self.offset = next;
        self.userspace += n as u64;
        if next == self.end {
            return Some(BodySplice::Done);
        }
        if !rearm {
            self.splicer.disarm(&self.ukey);
            return Some(BodySplice::Rest(self.end - next));
        }
        None
    }
}

/// Every byte ever queued on `fd`'s TCP send side: bytes acknowledged
/// (`TCP_INFO`) plus bytes not yet acknowledged (`SIOCOUTQ`), read in that
/// order so that an acknowledgement in between can only make the sum
/// smaller, never larger than the truth.
fn queued(fd: RawFd) -> Option<u64> {
    let info = super::tcp_info(fd)?;
    let mut outq: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one c_int.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &raw mut outq) } != 0 {
        return None;
    }
    Some(info.tcpi_bytes_acked + u64::try_from(outq).ok()?)
}

/// What the epoll set reported.
#[derive(Debug, Default, Clone, Copy)]
struct Ready {
    upstream_readable: bool,
    client_failed: bool,
}

/// The sockets a body waits on: the upstream socket for input (the kernel
/// passed bytes back, or the backend closed), the client socket for errors
/// and hang-ups only (the kernel's writes on it wake nothing).
struct Watch(EpollSet);

/// Indexes in the [`Watch`]'s set.
const UPSTREAM: usize = 0;

impl Watch {
    fn new(upstream: RawFd, client: RawFd) -> io::Result<Watch> {
        EpollSet::new(&[(upstream, libc::EPOLLIN as u32), (client, 0)]).map(Watch)
    }

    /// Waits until either socket reports something.
    async fn wait(&mut self) -> io::Result<Ready> {
        let mut ready = Ready::default();
        for (index, mask) in self.0.wait().await? {
            if index == UPSTREAM {
                ready.upstream_readable = true;
            } else if mask & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                ready.client_failed = true;
            }
        }
        Ok(ready)
    }
}

impl Splicer {
    /// The verdict's progress on `key`.
    fn seen(&self, key: &SockKey) -> Option<ResponseSeen> {
        self.rsp_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key, 0)
            .ok()
    }

    /// Arms `key` (a whole, sealed value).
    fn arm(&self, key: &SockKey, arm: ResponseArm) -> bool {
        match self
            .rsp_arm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, arm, 0)
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(target: "sluice::bpf", "eBPF response splice: cannot arm: {e}");
                false
            }
        }
    }

    /// Disarms `key`: the verdict passes everything again.
    fn disarm(&self, key: &SockKey) {
        let _ = self
            .rsp_arm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}
