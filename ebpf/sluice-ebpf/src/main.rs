//! Sluice's kernel-side programs (loaded by `sluice::bpf`):
//!
//! | program | type | attached to | does |
//! | --- | --- | --- | --- |
//! | `sluice_sockops` | sockops | a cgroup v2 | records sluice's established TCP sockets in [`SOCKS`] |
//! | `sluice_sk_msg` | sk_msg | [`SOCKS`] | loopback bypass: a message goes straight to the peer socket's ingress |
//! | `sluice_sk_skb` | sk_skb stream verdict | [`SPLICE`] | splice: an skb received on a spliced socket goes to its partner's egress (a tunnel's partner in [`SOCKS`], a response body's client socket in [`TARGETS`]), within the socket's budget ([`BUDGET`]: a response body's length) |
//!
//! Which sockets are recorded (nothing else is ever touched):
//!
//! * passive: local port is a sluice listener ([`LISTEN`]): sluice's
//!   client-side sockets, when the client leg is on (below);
//! * active: remote end is a backend endpoint on 127.0.0.0/8 that sluice
//!   registered ([`BACKENDS`]): sluice's upstream sockets;
//! * passive: local end is such a backend and the peer socket (the other
//!   end, sluice's upstream socket) was recorded ([`UPSTREAMS`]): the backend's
//!   socket, so both directions can skip the TCP/IP stack. (On loopback
//!   the active side is established first: its ACK is sent after its own
//!   callback.)
//! * active: both ends on 127.0.0.0/8 and the remote port is a sluice
//!   listener: a local client's socket (remembered in [`CLIENTS`]), so the
//!   client leg skips the stack too (its peer, sluice's passive socket, is
//!   recorded by the first rule just after). Off when the loader sets
//!   [`SLUICE_LOCAL_CLIENTS`] to 0 (`--ebpf-local-clients false`).
//!
//! The bypass keeps bytes in order: a socket that ever sent a message
//! through the TCP stack (its peer was not recorded yet) is remembered in
//! [`PASSED`] and never switches to the bypass, so nothing redirected can
//! overtake bytes still in flight through the stack.
//!
//! The splice (a tunnel's client socket and upstream socket, or a
//! response's upstream socket alone, inserted by the loader with their
//! [`SPLICED`] entries, each into [`SPLICE`] once its own direction is
//! drained): the stream verdict redirects every skb received on one to the
//! other's egress (through [`SOCKS`], which holds both from the start) and
//! counts it in the socket's entry — as long as the bytes redirected stay
//! within the socket's [`BUDGET`] (a response body's length; tunnels have
//! none). An skb over the budget, or one whose partner is gone, is passed
//! to the socket's own receive path, and so is every later one
//! ([`SpliceState::passed_bytes`]): the proxy copies what it must of
//! them, after the kernel has written what it redirected. The bypass
//! must not feed a spliced socket's ingress message queue (the verdict
//! never sees it): `sluice_sk_msg` passes a message through the TCP stack
//! when its peer is spliced (and for good, [`PASSED`]), and counts the
//! bytes sent on a spliced socket (what the partner's redirects became), so
//! the loader knows when nothing is left in flight.
//!
//! Logging goes through aya-log, filtered by `AYA_LOG_LEVEL` (the loader
//! sets it to warnings) and never per message: warnings are at most one
//! per second per CPU.
#![no_std]
#![no_main]

use aya_ebpf::bindings::{
    BPF_ANY, BPF_F_INGRESS, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB,
    BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, sk_action,
};
use aya_ebpf::Global;
use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::macros::{map, sk_msg, sock_ops, stream_verdict};
use aya_ebpf::maps::{HashMap, LruHashMap, PerCpuArray, SockHash};
use aya_ebpf::programs::{SkBuffContext, SkMsgContext, SockOpsContext};
use aya_log_ebpf::{debug, warn};
use sluice_ebpf_common::{self as common, Counter, Endpoint, SockKey, SpliceState};

const AF_INET: u32 = 2;

/// Whether local clients' sockets are recorded (the loader sets it: 0 with
/// `--ebpf-local-clients false`).
#[unsafe(no_mangle)]
static SLUICE_LOCAL_CLIENTS: Global<u8> = Global::new(1);
use SLUICE_LOCAL_CLIENTS as LOCAL_CLIENTS;

/// Whether the backend's end of sluice's upstream connections is recorded,
/// so that the backend's replies bypass the stack too (the loader sets it
/// to 0 with `--ebpf-splice-responses`: a reply redirected into the
/// upstream socket's ingress queue, which the stream verdict never sees,
/// could not be spliced — a backend writing a whole body at once put all
/// of it there before the head was parsed; one writing in pages was
/// redirected page by page, whatever the threshold on a message's size).
#[unsafe(no_mangle)]
static SLUICE_BACKEND_REPLIES: Global<u8> = Global::new(1);
use SLUICE_BACKEND_REPLIES as BACKEND_REPLIES;

/// Whether the splice may be used (the loader sets it to 0 without
/// `--ebpf-splice`): then no socket is ever in [`SPLICED`], and sk_msg
/// skips looking there (two hash lookups per message).
#[unsafe(no_mangle)]
static SLUICE_SPLICE_ON: Global<u8> = Global::new(1);
use SLUICE_SPLICE_ON as SPLICE_ON;
const LOG_INTERVAL_NS: u64 = 1_000_000_000;

// === maps ===

#[map(name = "SLUICE_SOCKS")]
static SOCKS: SockHash<SockKey> = SockHash::with_max_entries(common::SOCKS_MAX_ENTRIES, 0);
#[map(name = "SLUICE_LISTEN")]
static LISTEN: HashMap<u32, u32> = HashMap::with_max_entries(common::LISTEN_MAX_ENTRIES, 0);
#[map(name = "SLUICE_BACKENDS")]
static BACKENDS: HashMap<Endpoint, u32> =
    HashMap::with_max_entries(common::BACKENDS_MAX_ENTRIES, 0);
#[map(name = "SLUICE_PASSED")]
static PASSED: LruHashMap<SockKey, u32> =
    LruHashMap::with_max_entries(common::PASSED_MAX_ENTRIES, 0);
/// sluice's upstream sockets (recorded by the active callback), so that
/// the backend's end is recorded only when it is the peer of one; LRU, so
/// closed connections age out.
#[map(name = "SLUICE_UPSTREAMS")]
static UPSTREAMS: LruHashMap<SockKey, u32> =
    LruHashMap::with_max_entries(common::SOCKS_MAX_ENTRIES, 0);
/// Local clients' sockets (the active end of a connection from
/// 127.0.0.0/8 to a sluice listener, recorded by the active callback), so
/// that the loader knows which of sluice's client sockets the bypass may
/// feed; LRU, so closed connections age out.
#[map(name = "SLUICE_CLIENTS")]
static CLIENTS: LruHashMap<SockKey, u32> =
    LruHashMap::with_max_entries(common::SOCKS_MAX_ENTRIES, 0);
#[map(name = "SLUICE_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::LEN, 0);
/// Spliced sockets (inserted by the loader); the stream verdict is
/// attached here.
#[map(name = "SLUICE_SPLICE")]
static SPLICE: SockHash<SockKey> = SockHash::with_max_entries(common::SPLICE_MAX_ENTRIES, 0);
/// A spliced socket → its partner and counters (written by the loader).
#[map(name = "SLUICE_SPLICED")]
static SPLICED: HashMap<SockKey, SpliceState> =
    HashMap::with_max_entries(common::SPLICE_MAX_ENTRIES, 0);
/// Client sockets a response body is redirected to (inserted by the
/// loader). No program is attached, so the kernel writes the body on them
/// through the plain TCP send path; [`SOCKS`] would run sk_msg on every
/// write (and copy it).
#[map(name = "SLUICE_TARGETS")]
static TARGETS: SockHash<SockKey> = SockHash::with_max_entries(common::SPLICE_MAX_ENTRIES, 0);
/// A spliced socket → the most bytes the verdict may redirect from it
/// (written by the loader before the socket enters `SPLICE`; no entry: no
/// bound).
#[map(name = "SLUICE_BUDGET")]
static BUDGET: HashMap<SockKey, u64> = HashMap::with_max_entries(common::SPLICE_MAX_ENTRIES, 0);
/// Per CPU: when a warning was last logged (rate limit).
#[map(name = "SLUICE_LOG_AT")]
static LOG_AT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

// The names above are the ones the loader looks up.
const _: () = assert!(common::str_eq(common::MAP_SOCKS, "SLUICE_SOCKS"));
const _: () = assert!(common::str_eq(common::MAP_LISTEN_PORTS, "SLUICE_LISTEN"));
const _: () = assert!(common::str_eq(common::MAP_BACKENDS, "SLUICE_BACKENDS"));
const _: () = assert!(common::str_eq(common::MAP_PASSED, "SLUICE_PASSED"));
const _: () = assert!(common::str_eq(common::MAP_COUNTERS, "SLUICE_COUNTERS"));
const _: () = assert!(common::str_eq(common::MAP_SPLICE, "SLUICE_SPLICE"));
const _: () = assert!(common::str_eq(common::MAP_UPSTREAMS, "SLUICE_UPSTREAMS"));
const _: () = assert!(common::str_eq(common::MAP_SPLICED, "SLUICE_SPLICED"));
const _: () = assert!(common::str_eq(common::MAP_CLIENTS, "SLUICE_CLIENTS"));
const _: () = assert!(common::str_eq(common::MAP_BUDGET, "SLUICE_BUDGET"));
const _: () = assert!(common::str_eq(common::MAP_TARGETS, "SLUICE_TARGETS"));

/// Adds `n` to a counter of a [`SpliceState`]. Not atomic, and need not
/// be: each field has one writer at a time, the program running for that
/// socket under its socket lock (the verdict from the receive path, which
/// holds it or defers to the backlog while the socket is owned; sk_msg
/// from `sendmsg`, which owns it).
#[inline(always)]
fn add(p: *mut u64, n: u64) {
    // SAFETY: `p` points into a map value the kernel keeps alive for the
    // program's run, 8-byte aligned (`#[repr(C)]`, `u64` fields).
    unsafe { p.write_volatile(p.read_volatile().wrapping_add(n)) };
}

#[inline(always)]
fn count(counter: Counter, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(counter.index()) {
        // SAFETY: a per-CPU slot, only this CPU writes it while the program
        // runs (programs are not preempted on their CPU).
        unsafe { *p += n };
    }
}

/// Whether a warning may be logged now (at most one per second per CPU).
#[inline(always)]
fn may_log() -> bool {
    let Some(p) = LOG_AT.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: no arguments; reads the monotonic clock.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: per-CPU slot, as in `count`.
    unsafe {
        if now.wrapping_sub(*p) < LOG_INTERVAL_NS && *p != 0 {
            return false;
        }
        *p = now;
    }
    true
}

// === sockops ===

#[sock_ops]
pub fn sluice_sockops(ctx: SockOpsContext) -> u32 {
    match try_sluice_sockops(&ctx) {
        Ok(()) | Err(()) => 1,
    }
}

fn try_sluice_sockops(ctx: &SockOpsContext) -> Result<(), ()> {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        return Ok(());
    }
    if ctx.family() != AF_INET {
        return Ok(());
    }
    let key = SockKey {
        local_ip4: ctx.local_ip4(),
        remote_ip4: ctx.remote_ip4(),
        local_port: ctx.local_port(),
        remote_port: common::remote_port(ctx.remote_port()),
    };
    let counter = if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        if BACKENDS.get_ptr(key.remote()).is_some() {
            if UPSTREAMS.insert(key, 1, u64::from(BPF_ANY)).is_err() && may_log() {
                warn!(ctx, "cannot remember an upstream socket");
            }
            Counter::SockopsActive
        } else if LOCAL_CLIENTS.load() != 0
            && LISTEN.get_ptr(key.remote_port).is_some()
            && key.remote().is_loopback()
            && key.local().is_loopback()
        {
            // A local client of one of sluice's listeners: its end of the
            // connection (sluice's end is recorded by the passive callback,
            // which on loopback runs after this one).
            if CLIENTS.insert(key, 1, u64::from(BPF_ANY)).is_err() && may_log() {
                warn!(ctx, "cannot remember a local client socket");
            }
            Counter::SockopsLocalClient
        } else {
            return Ok(());
        }
    } else if LOCAL_CLIENTS.load() != 0 && LISTEN.get_ptr(key.local_port).is_some() {
        // Sluice's end of a client connection: only the client leg's
        // bypass redirects into it. Without that leg, recording it would
        // only put sluice's own writes through sk_msg (and its copy).
        Counter::SockopsPassive
    } else if BACKEND_REPLIES.load() != 0
        && BACKENDS.get_ptr(key.local()).is_some()
        && UPSTREAMS.get_ptr(key.peer()).is_some()
    {
        // The backend's end of one of sluice's upstream connections.
        Counter::SockopsBackend
    } else {
        return Ok(());
    };
    // A new connection may reuse a tuple: forget the old one's history.
    let _ = PASSED.remove(key);
    // SAFETY: the context's pointer is the kernel's, valid for this call.
    let ops = unsafe { &mut *ctx.ops };
    let mut k = key;
    match SOCKS.update(&mut k, ops, u64::from(BPF_ANY)) {
        Ok(()) => {
            count(counter, 1);
            debug!(
                ctx,
                "recorded {}:{} -> {}:{}",
                u32::from_be(key.local_ip4),
                key.local_port,
                u32::from_be(key.remote_ip4),
                key.remote_port
            );
            Ok(())
        }
        Err(e) => {
            count(Counter::SockopsErrors, 1);
            if may_log() {
                warn!(ctx, "cannot record a socket in the sockhash: {}", e);
            }
            Err(())
        }
    }
}

// === sk_msg ===

#[sk_msg]
pub fn sluice_sk_msg(ctx: SkMsgContext) -> u32 {
    try_sluice_sk_msg(&ctx).unwrap_or(sk_action::SK_PASS)
}

fn try_sluice_sk_msg(ctx: &SkMsgContext) -> Result<u32, u32> {
    // SAFETY: the context's pointer is the kernel's, valid for this call.
    let md = unsafe { &*ctx.msg };
    let size = u64::from(ctx.size());
    if md.family != AF_INET {
        return Err(sk_action::SK_PASS);
    }
    let key = SockKey {
        local_ip4: md.local_ip4,
        remote_ip4: md.remote_ip4,
        local_port: md.local_port,
        remote_port: common::remote_port(md.remote_port),
    };
    let splice_on = SPLICE_ON.load() != 0;
    let spliced = if splice_on {
        SPLICED.get_ptr_mut(key)
    } else {
        None
    };
    if let Some(state) = spliced {
        // A spliced socket: what it sends is its partner's redirected bytes
        // (and, while entering, the loader's last copies).
        // SAFETY: a map value, valid for this run.
        add(unsafe { &raw mut (*state).sent_bytes }, size);
    }
    if spliced.is_some()
        || (splice_on
            && SPLICED.get_ptr(key.peer()).is_some())
    {
        // A spliced socket sends through the stack: the kernel writes its
        // partner's bytes from a work queue with MSG_DONTWAIT, and a
        // redirect to a peer's ingress that finds no room fails for good
        // (the bytes are dropped), where the TCP stack says "again".
        // The peer is spliced (a tunnel, or an upstream socket whose
        // response body is): its stream verdict only sees its TCP
        // receive queue, never its ingress message queue. Either way, through the
        // stack, now and for good (bytes already redirected to the peer's
        // ingress are read before its receive queue, so order holds).
        // Looked up first: an LRU update per message costs more than the
        // rest of the program.
        if PASSED.get_ptr(key).is_none()
            && PASSED.insert(key, 1, u64::from(BPF_ANY)).is_err()
            && may_log()
        {
            warn!(ctx, "cannot remember a passed socket");
        }
        count(Counter::SkMsgPassedMsgs, 1);
        count(Counter::SkMsgPassedBytes, size);
        return Ok(sk_action::SK_PASS);
    }
    if PASSED.get_ptr(key).is_some() {
        count(Counter::SkMsgPassedMsgs, 1);
        count(Counter::SkMsgPassedBytes, size);
        return Ok(sk_action::SK_PASS);
    }
    let mut peer = key.peer();
    // The redirect fails (and sets nothing) when the peer is not recorded:
    // then the message takes the TCP stack, now and for good.
    let verdict = SOCKS.redirect_msg(ctx, &mut peer, u64::from(BPF_F_INGRESS));
    if verdict == i64::from(sk_action::SK_PASS) {
        count(Counter::SkMsgRedirectedMsgs, 1);
        count(Counter::SkMsgRedirectedBytes, size);
    } else {
        if PASSED.insert(key, 1, u64::from(BPF_ANY)).is_err() && may_log() {
            warn!(ctx, "cannot remember a passed socket");
        }
        count(Counter::SkMsgPassedMsgs, 1);
        count(Counter::SkMsgPassedBytes, size);
    }
    Ok(sk_action::SK_PASS)
}

// === sk_skb stream verdict ===

#[stream_verdict]
pub fn sluice_sk_skb(ctx: SkBuffContext) -> u32 {
    let skb = &ctx.skb;
    let len = u64::from(ctx.len());
    let key = SockKey {
        local_ip4: skb.local_ipv4(),
        remote_ip4: skb.remote_ipv4(),
        local_port: skb.local_port(),
        remote_port: common::remote_port(skb.remote_port()),
    };
    if len == 0 {
        // The FIN's empty skb (the receive path hands it over too). Never
        // redirect it: the partner's work queue takes a 0-byte send for a
        // broken pipe and stops sending for good. The FIN itself is the
        // loader's business (it sees the EOF and shuts the partner down).
        return sk_action::SK_DROP;
    }
    if let Some(state) = SPLICED.get_ptr_mut(key) {
        // SAFETY: a map value, valid for this run; only this program
        // writes `redirected_*` and `passed_bytes`, for one socket at a
        // time (under the socket's lock).
        let (mut partner, redirected, passed) = unsafe {
            (
                (*state).partner,
                (*state).redirected_bytes,
                (*state).passed_bytes,
            )
        };
        // Once anything was passed, everything is: the proxy copies those
        // bytes in order, and nothing redirected may overtake them.
        let budget = BUDGET.get_ptr(key);
        let redirect = passed == 0
            && match budget {
                // SAFETY: a map value, valid for this run, written before
                // the socket entered `SPLICE` and never after.
                Some(budget) => redirected.wrapping_add(len) <= unsafe { *budget },
                None => true,
            };
        if redirect {
            // A response body (it has a budget) goes to a client socket in
            // `TARGETS`; a tunnel's bytes through `SOCKS`, where the
            // partner always is: a socket enters `SPLICE` when its own
            // direction is ready, which may be before its partner's.
            let verdict = if budget.is_some() {
                TARGETS.redirect_skb(&ctx, &mut partner, 0)
            } else {
                SOCKS.redirect_skb(&ctx, &mut partner, 0)
            };
            if verdict == i64::from(sk_action::SK_PASS) {
                // SAFETY: as above.
                unsafe {
                    add(&raw mut (*state).redirected_bytes, len);
                    add(&raw mut (*state).redirected_msgs, 1);
                }
                count(Counter::SkSkbRedirectedMsgs, 1);
                count(Counter::SkSkbRedirectedBytes, len);
                return sk_action::SK_PASS;
            }
        }
        // SAFETY: as above.
        unsafe { add(&raw mut (*state).passed_bytes, len) };
    }
    // Over the budget, no partner (any more), or passing already: the
    // bytes stay on this socket, where the loader reads them in userspace.
    count(Counter::SkSkbPassedMsgs, 1);
    count(Counter::SkSkbPassedBytes, len);
    sk_action::SK_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
