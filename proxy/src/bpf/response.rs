//! The response splice: the body of an HTTP/1.1 response that no filter
//! touches goes from the backend connection to the client connection in
//! the kernel (sk_skb stream verdict), never through userspace
//! (`--ebpf-splice-responses`).
//!
//! # The backend connection is given up
//!
//! A body starts right after a head the proxy must read and parse, and the
//! client connection's next response must be written by the proxy again.
//! The kernel therefore has to take exactly the body's bytes — none of the
//! head, none after the body — and hand the client connection back once
//! it has written them.
//!
//! The upstream socket U is the one the verdict reads from, so it enters
//! the verdict's map `SLUICE_SPLICE`. It never leaves it: on kernel 6.18 a
//! socket taken out of that map after the verdict redirected bytes can keep
//! received data that `recv` never returns (docs/benchmarks.md, fifth
//! session). So the body's backend connection is closed after the body
//! instead of going back to the pool: one new backend connection per
//! spliced body, which is why only bodies of at least
//! [`RESPONSE_SPLICE_MIN`] are taken. The client socket C is only the
//! target of redirects and never enters `SLUICE_SPLICE`: it stays the
//! proxy's.
//!
//! # Handover protocol
//!
//! 1. *Entering* ([`splice_response`], after the head and the body bytes
//!    already read were written to C; nothing of the body is buffered and
//!    `rest` bytes of it are unread):
//!    - (a) `rest` reserved against [`MAX_KERNEL_BYTES`] (see "A slow
//!      client"); none left: the body is copied in userspace;
//!    - (b) C in `SLUICE_TARGETS`, a SockHash with no program (the kernel's
//!      writes on C then take the plain TCP send path; in `SLUICE_SOCKS`
//!      each would run sk_msg and be copied once more), and U's
//!      `SLUICE_SPLICED` entry naming C;
//!    - (c) U given a wide receive buffer ([`widen_receive_buffer`] says
//!      why), then drained as a tunnel's direction is (`super::Direction`):
//!      non-blocking reads sized by `FIONREAD` plus 256 KiB, never past
//!      the body's end, each written to C, until a read comes back short
//!      (no skb is left half read). A body that ends while draining was
//!      copied whole: U never entered, its entry goes, and the connection
//!      goes back to the pool as usual;
//!    - (d) what C has queued so far noted ([`queued`]: `TCP_INFO`'s bytes
//!      acknowledged plus `SIOCOUTQ`), `SLUICE_BUDGET[U]` = what is left of
//!      the body (`left`), then U into `SLUICE_SPLICE`, kicked
//!      (`SO_RCVLOWAT` runs its data-ready callback, so bytes that arrived
//!      since the short read go through the verdict now, in order).
//! 2. *Staying*: the verdict redirects each skb of U to C's egress while
//!    the bytes redirected stay within `left`. The proxy waits on an epoll
//!    set (U readable: the verdict passed bytes, or the backend closed; C
//!    failed), with a timeout fitted to the rate at which the body moves,
//!    and acknowledges on U at each look ([`ack_now`] says why).
//! 3. *Leaving*: once `left` bytes are redirected and C has queued them
//!    on top of what it had (the kernel writes redirected bytes from a work
//!    queue, so the proxy waits for them to be on C before it writes
//!    anything else there), U's entries go, the reservation is released,
//!    and the caller closes U ([`BodySplice::Done`]). An skb that reaches
//!    past the body (bytes the backend sent without a request) is passed
//!    instead, and every later one too: the proxy waits until C has every
//!    redirected byte, and the caller copies from U what is left of the
//!    body ([`BodySplice::Rest`]), then closes U the same way.
//! 4. *Failures*: the backend closing before the end, or C failing, ends
//!    both connections, as in the userspace copy; so does a body whose bytes
//!    make no progress for [`STALL_TIMEOUT`].
//!
//! # A slow client
//!
//! The kernel gives a redirect no back-pressure from C: the verdict takes
//! each skb off U at once (U's receive window stays open), and what C
//! cannot take yet waits in C's socket map queue. So a slow client makes
//! the kernel hold up to the rest of its body, as nginx buffers a response
//! for a slow client (to disk, by default up to 1 GB). Bounding it per body
//! would need the verdict to hold bytes back, and it cannot: it can only
//! redirect, drop or pass them, and passing them (so that U's window
//! closes) and taking the passed bytes back was tried — under load the
//! proxy chased the passed bytes for good, and on kernel 6.18 passed bytes
//! could stay queued where `recv` never returned them. So the bound is
//! global: at most [`MAX_KERNEL_BYTES`] of bodies are in the kernel's hands
//! at once (bodies beyond it are copied in userspace, with back-pressure),
//! and a client that takes nothing for [`STALL_TIMEOUT`] loses its
//! connection, which frees what the kernel held for it.
//!
//! Not taken: a client connection whose local client's leg is bypassed by
//! sk_msg (the kernel's writes on C would be redirected again, into a
//! socket whose queue may be full), a body below [`RESPONSE_SPLICE_MIN`],
//! or sockets that are not IPv4. With `--ebpf-splice-responses` the
//! backend's end of sluice's upstream connections is not recorded by
//! sockops (`SLUICE_BACKEND_REPLIES`): a reply redirected by sk_msg into U's
//! ingress queue would never reach the verdict (a backend writing a whole
//! body at once put all of it there before the head was parsed; nginx's
//! sendfile put it there page by page, so no threshold on a message's size
//! keeps bodies out of the bypass). So no bypass feeds U, and entering
//! needs no pause for a redirect under way.
//!
//! # Does it pay off?
//!
//! See docs/benchmarks.md: the splice is opt-in because it gives up the
//! backend connection and the backend leg's bypass, and because how much it
//! saves depends on how much of the body the backend has queued before the
//! head is parsed (that part is copied while draining).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_ebpf_common::{SockKey, SpliceState};
use tokio_uring::net::TcpStream;

use super::{
    EpollSet, SPLICE_DRAIN_READ, SPLICE_DRAIN_READ_MAX, SPLICER, Splicer, kick, receive_queued,
    recv_upto, set_int_option, sock_key,
};
use crate::io::Conn;

/// Smallest body (after what came with the head) given to the kernel:
/// below it the new backend connection the splice costs, and the wake-ups,
/// are more than the copy they save.
pub const RESPONSE_SPLICE_MIN: u64 = 256 * 1024;

/// Most body bytes handed to the kernel at once, over all spliced bodies
/// (what the kernel may have to hold for slow clients).
pub const MAX_KERNEL_BYTES: u64 = 256 << 20;

/// Body bytes handed to the kernel and not yet on a client socket (an
/// upper bound: each body's whole kernel part, until it is through).
static KERNEL_HELD: AtomicU64 = AtomicU64::new(0);

/// A body whose bytes make no progress for this long fails (a stalled
/// backend or client; the userspace copy has no shorter bound either).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The receive buffer a body's upstream socket gets before it is drained
/// (see [`widen_receive_buffer`]).
const SPLICE_RCVBUF: usize = 4 << 20;

/// Bounds of the interval between two looks at the body's progress
/// (tokio's timer has a millisecond resolution).
const CHECK_MIN: Duration = Duration::from_millis(1);
const CHECK_MAX: Duration = Duration::from_millis(100);

/// Whether bodies are offered to the kernel (`--ebpf-splice-responses`).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the response splice on or off (the loader, once the splice is
/// loaded).
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

/// What became of a response body offered to the kernel.
#[derive(Debug)]
pub enum BodySplice {
    /// Not taken: the caller copies all of it.
    NotTaken,
    /// Every byte is on the client socket, all copied in userspace while
    /// entering: the backend connection is the proxy's as before.
    Copied,
    /// Every byte is on the client socket; the backend connection must be
    /// closed (it stays in the verdict's map).
    Done,
    /// The first bytes are on the client socket (through the kernel, or
    /// copied while entering when U could not enter after all); the caller
    /// copies the last `n` from the backend connection (its reads return
    /// what the verdict passed, in order), then closes it.
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
    if rest < RESPONSE_SPLICE_MIN
        || !upstream.pending().is_empty()
        || !ENABLED.load(Ordering::Acquire)
    {
        return BodySplice::NotTaken;
    }
    let Some(splicer) = SPLICER
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
    else {
        return BodySplice::NotTaken;
    };
    let (ufd, cfd) = (upstream.stream().as_raw_fd(), client.as_raw_fd());
    let (Some(ukey), Some(ckey)) = (sock_key(ufd), sock_key(cfd)) else {
        return BodySplice::NotTaken;
    };
    if splicer.bypass_fed(&ckey) {
        // A local client's leg bypassed by sk_msg: see the module docs.
        return BodySplice::NotTaken;
    }
    // 1 (a), (b).
    let Some(_held) = Reservation::take(rest) else {
        return BodySplice::NotTaken;
    };
    if !splicer.register_response((ckey, cfd), ukey) {
        splicer.forget_entries(&[ukey]);
        return BodySplice::NotTaken;
    }
    let mut body = Body {
        splicer: &splicer,
        ukey,
        ufd,
        cfd,
        left: rest,
        drained: 0,
        base: 0,
    };
    let t0 = Instant::now();
    let entered = body.enter(client).await;
    let t1 = Instant::now();
    let outcome = match entered {
        Ok(true) => body.stay().await,
        Ok(false) => BodySplice::Copied,
        Err(outcome) => outcome,
    };
    tracing::debug!(target: "sluice::bpf", enter_us = (t1 - t0).as_micros() as u64, stay_us = t1.elapsed().as_micros() as u64, drained = body.drained, left = body.left, ?outcome, "eBPF response splice: body");
    splicer.forget_entries(&[ukey]);
    let kernel = match outcome {
        BodySplice::Done => body.left,
        BodySplice::Rest(n) => body.left - n,
        _ => 0,
    };
    KERNEL_BYTES.fetch_add(kernel, Ordering::Relaxed);
    USERSPACE_BYTES.fetch_add(body.drained, Ordering::Relaxed);
    outcome
}

/// Gives U a receive buffer of [`SPLICE_RCVBUF`] (`SO_RCVBUFFORCE`, else
/// `SO_RCVBUF` up to `net.core.rmem_max`).
///
/// Why: bytes that arrive between the drain's last read and U entering
/// the splice fill U's receive queue, and the window U advertises shrinks
/// with it — to almost nothing with a new connection's small buffer. The
/// verdict then takes those bytes off the queue when U enters, but on
/// kernel 6.18 that sends no window update (reading through `recv` would),
/// so the backend waits for its zero-window probe: about 200 ms per body,
/// seen with nginx and 1 MiB bodies. With room to spare, the window never
/// closes. U is never pooled again once spliced, and a body copied whole
/// while draining leaves it with a larger buffer, nothing worse.
fn widen_receive_buffer(fd: RawFd) {
    let size = libc::c_int::try_from(SPLICE_RCVBUF).unwrap_or(libc::c_int::MAX);
    let _ = set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size)
        .or_else(|_| set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size));
}

/// Sends U's delayed acknowledgement now, if one is pending
/// (`TCP_QUICKACK`: with nothing left unread on U, the kernel acknowledges
/// at once).
///
/// Why: a backend with Nagle's algorithm (or `TCP_CORK`) holds a body's
/// last, short segment until its earlier bytes are acknowledged. Reading
/// through `recv` acknowledges them when the queue empties; the verdict
/// taking them does not, so U's delayed acknowledgement (40 ms) would hold
/// the end of every body.
fn ack_now(fd: RawFd) {
    let _ = set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1);
}

/// A body's share of [`MAX_KERNEL_BYTES`], given back when dropped.
struct Reservation(u64);

impl Reservation {
    /// `None` when `n` more bytes would pass the bound.
    fn take(n: u64) -> Option<Reservation> {
        KERNEL_HELD
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&h| h <= MAX_KERNEL_BYTES)
            })
            .ok()
            .map(|_| Reservation(n))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        KERNEL_HELD.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// One body on its way to the kernel.
struct Body<'a> {
    splicer: &'a Splicer,
    ukey: SockKey,
    ufd: RawFd,
    cfd: RawFd,
    /// Body bytes not copied while entering: the kernel's part (less what
    /// the caller copies if the verdict passes bytes).
    left: u64,
    /// Body bytes copied while entering.
    drained: u64,
    /// [`queued`] on C when U entered the splice.
    base: u64,
}

/// How far the kernel is with a body.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Bytes the verdict redirected from U.
    redirected: u64,
    /// Bytes written on C since entering (the kernel's redirected ones).
    on_client: u64,
    /// Bytes the verdict passed to U's own receive path.
    passed: u64,
}

impl Body<'_> {
    /// Steps 1 (c) and (d): drains U into C until a read comes back short,
    /// then puts U in the splice. `Ok(false)`: the body was copied whole
    /// while draining.
    async fn enter(&mut self, client: &TcpStream) -> Result<bool, BodySplice> {
        // No bypass feeds U: with the response splice the backends' sockets
        // are not recorded (`SLUICE_BACKEND_REPLIES`).
        widen_receive_buffer(self.ufd);
        let mut buf = Vec::new();
        loop {
            let room = receive_queued(self.ufd)
                .saturating_add(SPLICE_DRAIN_READ)
                .min(SPLICE_DRAIN_READ_MAX);
            let want = room.min(usize::try_from(self.left).unwrap_or(usize::MAX));
            if buf.capacity() < want {
                buf = Vec::with_capacity(want);
            }
            let n = match recv_upto(self.ufd, &mut buf, want, 0) {
                Ok(0) => {
                    return Err(BodySplice::UpstreamFailed(io::Error::from(
                        io::ErrorKind::UnexpectedEof,
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(BodySplice::UpstreamFailed(e)),
            };
            if n > 0 {
                if let Err(e) = crate::io::write_all(client, &mut buf).await {
                    return Err(BodySplice::ClientFailed(e));
                }
                self.left -= n as u64;
                self.drained += n as u64;
                if self.left == 0 {
                    return Ok(false);
                }
            }
            if n < want {
                break;
            }
        }
        // 1 (d): the budget before the verdict can see anything.
        let budget = self
            .splicer
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.ukey, self.left, 0);
        if let Err(e) = budget {
            tracing::debug!(target: "sluice::bpf", "eBPF response splice: cannot set a budget: {e}");
            return Err(self.not_entered());
        }
        // Every write so far has completed: C has queued all of it.
        let Some(base) = queued(self.cfd) else {
            return Err(self.not_entered());
        };
        self.base = base;
        if !self.splicer.enter(self.ukey, self.ufd) {
            return Err(self.not_entered());
        }
        kick(self.ufd);
        Ok(true)
    }

    /// The answer when U cannot enter the splice after the drain: the body
    /// is the caller's again, less what the drain already wrote on C (then
    /// the caller copies the rest and closes U, as after a splice).
    fn not_entered(&self) -> BodySplice {
        if self.drained == 0 {
            BodySplice::NotTaken
        } else {
            BodySplice::Rest(self.left)
        }
    }

    /// Reads U's entry and what C has queued.
    fn progress(&self) -> Option<Progress> {
        let u: SpliceState = self.splicer.state(&self.ukey)?;
        Some(Progress {
            redirected: u.redirected_bytes,
            on_client: queued(self.cfd)?.saturating_sub(self.base),
            passed: u.passed_bytes,
        })
    }

    /// Steps 2 to 4: waits for the kernel to carry the body.
    async fn stay(&mut self) -> BodySplice {
        /// Index of U in the epoll set.
        const UPSTREAM: usize = 0;
        let mut watch = match EpollSet::new(&[(self.ufd, libc::EPOLLIN as u32), (self.cfd, 0)]) {
            Ok(w) => Some(w),
            Err(e) => {
                // U is in the splice already and the kernel carries the
                // body; only the wake-ups are missing: look at intervals.
                tracing::debug!(target: "sluice::bpf", "eBPF response splice: cannot watch the sockets: {e}");
                None
            }
        };
        let mut check = CHECK_MIN;
        let mut last = (Progress::default(), Instant::now());
        loop {
            let ready = match watch.as_mut() {
                Some(w) => match tokio::time::timeout(check, w.wait()).await {
                    Ok(Ok(ready)) => ready,
                    Ok(Err(e)) => return BodySplice::ClientFailed(e),
                    Err(_) => Vec::new(),
                },
                None => {
                    tokio::time::sleep(check).await;
                    Vec::new()
                }
            };
            let mut upstream_readable = false;
            for (index, mask) in ready {
                if index == UPSTREAM {
                    upstream_readable = true;
                } else if mask & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                    return BodySplice::ClientFailed(io::Error::from(
                        io::ErrorKind::ConnectionReset,
                    ));
                }
            }
            ack_now(self.ufd);
            let Some(p) = self.progress() else {
                return BodySplice::UpstreamFailed(io::Error::other(
                    "the response splice's entries are gone",
                ));
            };
            tracing::trace!(target: "sluice::bpf", ?p, left = self.left, upstream_readable, ?check, "eBPF response splice: progress");
            if p.redirected == self.left && p.on_client >= self.left {
                return BodySplice::Done;
            }
            if p.passed > 0 {
                // An skb past the body's budget (step 3): `p.redirected` is
                // final, and the rest is the caller's once C has every
                // redirected byte.
                return match self.flushed(p.redirected).await {
                    Ok(()) => BodySplice::Rest(self.left - p.redirected),
                    Err(e) => BodySplice::ClientFailed(e),
                };
            }
            if upstream_readable && p.redirected < self.left {
                // Nothing passed: the backend's FIN (or an error) before
                // the end of the body.
                match recv_upto(self.ufd, &mut Vec::with_capacity(1), 1, libc::MSG_PEEK) {
                    Ok(0) => {
                        return BodySplice::UpstreamFailed(io::Error::from(
                            io::ErrorKind::UnexpectedEof,
                        ));
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return BodySplice::UpstreamFailed(e),
                }
            } else if upstream_readable && let Some(w) = watch.as_mut() {
                // The backend's FIN after the whole body: U has nothing
                // more to say (level-triggered, it would stay ready).
                w.forget(UPSTREAM);
            }
            let now = Instant::now();
            let moved = (p.redirected - last.0.redirected).max(p.on_client - last.0.on_client);
            if moved > 0 {
                let rate = moved as f64 / (now - last.1).as_secs_f64().max(1e-6);
                // Half the time the rest needs at this rate: the checks
                // close in on the end.
                let rest = (self.left - p.redirected).max(self.left - p.on_client);
                check =
                    Duration::from_secs_f64(rest as f64 / rate / 2.0).clamp(CHECK_MIN, CHECK_MAX);
                last = (p, now);
            } else if now - last.1 >= STALL_TIMEOUT {
                return BodySplice::UpstreamFailed(io::Error::from(io::ErrorKind::TimedOut));
            } else {
                check = (check * 2).min(CHECK_MAX);
            }
        }
    }

    /// Waits until C has taken the first `handed` bytes since entering (the
    /// kernel writes redirected bytes from a work queue, soon after the
    /// verdict).
    async fn flushed(&self, handed: u64) -> io::Result<()> {
        let mut spins = 0u32;
        let mut last = (0u64, Instant::now());
        loop {
            let Some(p) = self.progress() else {
                return Err(io::Error::other("the response splice's entries are gone"));
            };
            if p.on_client >= handed {
                return Ok(());
            }
            if super::tcp_state(self.cfd).is_none_or(|s| s == super::TCP_CLOSE) {
                return Err(io::Error::from(io::ErrorKind::ConnectionReset));
            }
            if p.on_client != last.0 {
                last = (p.on_client, Instant::now());
            } else if last.1.elapsed() >= STALL_TIMEOUT {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            // Usually a few microseconds: yield first, sleep if it drags.
            spins += 1;
            if spins < 64 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(CHECK_MIN).await;
            }
        }
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

impl Splicer {
    /// Step 1 (b): C in `SLUICE_TARGETS` (where the verdict finds it; it may
    /// be there from an earlier body) and U's `SLUICE_SPLICED` entry naming
    /// it. `false` when the kernel refused either.
    fn register_response(&self, (ckey, cfd): (SockKey, RawFd), ukey: SockKey) -> bool {
        let added = self
            .targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ckey, cfd, super::BPF_NOEXIST);
        match added {
            Ok(()) => {}
            Err(e) if matches!(super::map_errno(&e), Some(libc::EEXIST)) => {}
            Err(e) => {
                tracing::debug!(target: "sluice::bpf", "eBPF response splice: cannot add a client socket to SLUICE_TARGETS: {e}");
                return false;
            }
        }
        let entry = SpliceState {
            partner: ckey,
            ..SpliceState::default()
        };
        match self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ukey, entry, 0)
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(target: "sluice::bpf", "eBPF response splice: cannot record an upstream socket: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's share is bounded over all bodies and given back when a
    /// body is through (one test: the counter is process-wide).
    #[test]
    fn reservations_are_bounded_and_given_back() {
        let half = MAX_KERNEL_BYTES / 2;
        let a = Reservation::take(half).expect("half of the bound fits");
        let b = Reservation::take(half).expect("the other half fits");
        assert!(Reservation::take(1).is_none(), "the bound is full");
        drop(a);
        let c = Reservation::take(half).expect("what a dropped one gave back fits");
        assert!(Reservation::take(u64::MAX).is_none(), "no overflow");
        drop((b, c));
        assert_eq!(KERNEL_HELD.load(Ordering::Acquire), 0);
    }
}
