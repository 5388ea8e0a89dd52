//! The eBPF loader: loads `ebpf/sluice-ebpf` (embedded at build time by
//! `build.rs`) with aya, attaches it, feeds it the proxy's ports and
//! backends, reads its counters for `/metrics` and its logs (aya-log) into
//! `tracing`.
//!
//! # Contents
//!
//! * [`Mode`]: `--ebpf auto|on|off`.
//! * [`start`]: loads and attaches per the mode, logs the one line that
//!   says which accelerations are active and why any is not.
//! * [`Accel`]: the loaded programs; dropping it (or [`Accel::shutdown`])
//!   detaches them.
//!
//! # What runs in the kernel
//!
//! | acceleration | programs | state |
//! | --- | --- | --- |
//! | loopback bypass, backend leg and local clients' leg | sockops on the proxy's cgroup v2, sk_msg on the `SLUICE_SOCKS` SockHash | implemented; client leg opt-in with `--ebpf-local-clients true` |
//! | splice of tunnelled connections | sk_skb stream verdict on the `SLUICE_SPLICE` SockHash, sk_msg counting | implemented (see "Handover protocol"), on whenever eBPF is active (`--ebpf-splice false` turns it off) |
//! | splice of response bodies | the same verdict, bounded by `SLUICE_BUDGET` | opt-in (`--ebpf-splice-responses`): it pays off on large bodies only; protocol in [`response`] |
//!
//! **Loopback bypass.** The sockops program records, by 4-tuple,
//! sluice's connections to backends on 127.0.0.0/8 (active, remote end in
//! `SLUICE_BACKENDS`), the backend's end of those (passive, local end a
//! registered backend whose peer is one of sluice's upstream sockets; not
//! with `--ebpf-splice-responses`, whose verdict must see the backends'
//! replies), and — the client leg, only with `--ebpf-local-clients true`
//! (see below for why it is opt-in) — the established TCP sockets of
//! sluice's listeners (passive, local port in `SLUICE_LISTEN`) and the
//! local client's end of a connection to sluice (active, both ends on
//! 127.0.0.0/8, remote port in `SLUICE_LISTEN`; remembered in
//! `SLUICE_CLIENTS`). Without the client leg sluice's client sockets are
//! not recorded: that would only run sk_msg (and its copy) on each of
//! sluice's writes to its clients. Nothing else is recorded, so other
//! processes' connections are never touched — except that another process
//! connecting to a registered loopback backend, or to a sluice listener
//! port on 127.0.0.0/8 where something else listens, while sluice runs is
//! recorded like sluice's own sockets (sockops cannot tell which process
//! connects; such a socket's peer is not recorded, so its messages take
//! the TCP stack, see below). Only sockets of processes in sluice's cgroup
//! v2 (or below it) are seen at all: the program is attached there. The
//! sk_msg program sends each message written on a recorded socket straight
//! to the peer socket's receive queue (`BPF_F_INGRESS`) when the peer is
//! recorded, otherwise through the TCP stack; a socket that once used the
//! TCP stack keeps using it (`SLUICE_PASSED`), so bytes cannot overtake
//! each other.
//!
//! *Ordering on the client leg.* On loopback the client's (active) end is
//! established first: its callback runs on the SYN-ACK, before it sends
//! the ACK that establishes sluice's (passive) end. So sluice's end always
//! finds the client's recorded and its first byte is redirected; a client
//! that writes before sluice's end is recorded (its ACK not yet processed)
//! finds no peer, sends through the stack and keeps doing so for that
//! connection (`SLUICE_PASSED`): correct, just not accelerated in that
//! direction. Bytes redirected into a socket's ingress queue are read
//! before its TCP receive queue, so a direction that moved from the bypass
//! to the stack (the peer closed and left the map) keeps its order too.
//!
//! *What a user sees.* The proxy's data path sees ordinary sockets:
//! reads, writes, half-close and close behave the same with and without the
//! bypass, and the bytes are identical. A recorded socket of another
//! process (a local client, a loopback backend) gets the kernel's sockmap
//! receive path (`tcp_bpf_recvmsg`) for its life. One difference shows on
//! this kernel (6.18): a *blocking* `recv` with no data may return `EAGAIN`
//! after a wake-up that brought none. Request/response clients never saw
//! it (20,000 sequential keep-alive requests from a blocking Python
//! client; wrk, curl, the proxy suites); a client that reads in one thread
//! while another thread streams writes on the same blocking socket did
//! (`bench/ws_echo.py` before it set a timeout: 2–3 of 4 full-duplex 64
//! MiB tunnels per run); a backend doing the same was not seen to. Such a
//! client should retry `EAGAIN` (CPython does when the socket has a
//! timeout; non-blocking and event-driven clients are unaffected), or run
//! sluice with `--ebpf-local-clients false` (backend leg only) or outside
//! the client's cgroup. Because a proxy must not change what its clients'
//! sockets do, the client leg is **off by default** (`--ebpf-local-clients
//! true` turns it on, for clients known to be event-driven, and for the
//! benchmarks).
//!
//! # Handover protocol (splice of tunnelled connections)
//!
//! Here [`crate::proto::h1::tunnel`] (after a `101 Switching Protocols`)
//! hands a connection to the kernel for good: nothing after a `101` is
//! HTTP, so the proxy has nothing to see until the end. A response body is
//! handed over for its length only: the client connection comes back to
//! the proxy after it and the backend connection is closed ([`response`]
//! has that protocol); the next request on a keep-alive client connection
//! is always read, parsed and routed in userspace, and a response head is
//! always read and filtered there.
//!
//! *Maps and programs.* `SLUICE_SPLICE`, a SockHash keyed by [`SockKey`],
//! carries the sk_skb stream verdict `sluice_sk_skb`; `SLUICE_SPLICED` maps
//! each spliced socket to its partner (client socket C ↔ sluice's upstream
//! socket U) and three counters: `redirected_bytes`/`redirected_msgs` (the
//! verdict, per skb redirected from this socket to the partner's egress)
//! and `sent_bytes` (sk_msg, per message sent on this socket — a spliced
//! socket is always in `SLUICE_SOCKS`, added by the loader if sockops did
//! not). The loader writes an entry once and only removes it; the programs
//! only add.
//!
//! *The conflict with the loopback bypass.* A backend's bytes redirected by
//! sk_msg into U's ingress message queue never pass U's stream verdict.
//! So `sluice_sk_msg` passes through the TCP stack, for good
//! (`SLUICE_PASSED`), every message whose peer is spliced, and every message
//! sent on a spliced socket (the kernel sends those from a work queue with
//! `MSG_DONTWAIT`; a redirect into a full ingress queue fails for good and
//! drops the bytes, where the TCP stack says "again").
//!
//! 1. *Entering* ([`splice`], called by `tunnel` once the bytes already in
//!    both connection buffers were written to the other side, with no read
//!    or write in flight):
//!    - (a) both sockets in `SLUICE_SOCKS` (EBUSY/EEXIST: sockops did), so
//!      that sk_msg counts what is sent on them;
//!    - (b) the `SLUICE_SPLICED` entries of C and U: from now on no bypass
//!      message goes to either socket's ingress queue;
//!    - (c) if the bypass may have fed either socket (U is one of sockops'
//!      `SLUICE_UPSTREAMS`, or its peer is), wait 1 ms for a redirect
//!      decided before (b) to land;
//!    - (d) each direction on its own (C → U and U → C): read the source
//!      without blocking, with room for what `FIONREAD` reports plus
//!      256 KiB, until a read comes back short; write what was read to the
//!      other side without blocking; once nothing is owed, insert the
//!      source in `SLUICE_SPLICE` and set `SO_RCVLOWAT` on it (that runs
//!      its data-ready callback, so bytes that arrived since the short read
//!      go through the verdict now, in order, after everything written).
//!      A short read is the condition because it leaves no skb half read
//!      (the verdict would see a half-read skb whole again) and empties the
//!      ingress queue, which is read before the receive queue; a read sized
//!      by `FIONREAD` alone was verified not to be enough (it counts the
//!      TCP queue only). The verdict redirects into the partner's egress
//!      through `SLUICE_SOCKS`, so one socket may enter while the other
//!      direction is still being drained; and no write waits, so an
//!      echoing backend — which stops reading U while its own writes to U
//!      wait for sluice to read U — cannot deadlock the pair. Until one
//!      socket has entered, a side that closes or fails, or more than
//!      64 MiB that keep coming, and the tunnel stays in userspace
//!      (entries removed; the copy first writes what was read and not yet
//!      written, and reads the EOF again); after that, a side that closes
//!      simply has nothing more to carry (step 3 handles its FIN).
//! 2. *Staying* ([`Spliced::run`]): no byte enters userspace. The task
//!    waits on an epoll set of its own holding C and U for `EPOLLRDHUP`
//!    only (errors and hang-ups are always reported), so the data the
//!    kernel moves wakes nothing.
//! 3. *Close and half-close.* A FIN is not data: the verdict drops the
//!    FIN's empty skb (redirected, a 0-byte send breaks the partner's
//!    pipe for good). When X (C or U) reports its peer's FIN:
//!    - TCP_INFO on X (it takes X's socket lock, so the receive path that
//!      saw the FIN, verdict included, has finished: X's `redirected_bytes`
//!      is final);
//!    - wait until the partner's `sent_bytes` reaches X's
//!      `redirected_bytes` plus what step 1 (d) wrote on the partner: every byte
//!      before the FIN has been written by the kernel (polled, 50 µs to
//!      5 ms; after 60 s without progress the FIN goes anyway);
//!    - read X until EAGAIN/EOF in userspace: a socket that reached
//!      TCP_CLOSE (both FINs) has left every sockmap, so bytes that came
//!      with the FIN in that state are in its plain receive queue, after
//!      everything redirected (the backend's last "bye" in the tests);
//!    - `shutdown(SHUT_WR)` on the partner. The other direction goes on,
//!      spliced, until it ends the same way.
//!
//!    An error on either socket (EPOLLERR, or the partner reached
//!    TCP_CLOSE while bytes were still due) shuts both down, as the
//!    userspace copy does.
//! 4. *Taking back.* Never before the end: when both directions are done,
//!    both sockets leave `SLUICE_SPLICE` and their entries are removed;
//!    `tunnel` returns and the caller closes both connections.
//!
//! The tunnel's byte counts ([`crate::proto::h1::Tunnelled`]) are the
//! bytes copied in userspace plus the verdict's `redirected_bytes`.
//! The splice is loaded whenever eBPF is active, unless `--ebpf-splice
//! false` (docs/benchmarks.md has the figures); the bypass does not depend
//! on it.
//!
//! Entering used to drain both sockets one after the other until
//! `EAGAIN`, with blocking writes: under concurrent tunnels streaming at
//! full speed towards an echoing backend that deadlocked (8 of 18 runs of
//! 4 × 256 MiB) or, when the peers never paused, left the tunnel in
//! userspace (3 of 8 runs copied all 2 GiB in userspace). With step (d)
//! as it is now, 40 runs of 4 × 256 MiB, 16 × 64 MiB and 64 × 1 MiB
//! echoes (with and without the client leg)
//! completed with every byte checked in order, each tunnel entering after
//! at most a few hundred KiB copied in userspace (`bench/ws_echo.py`
//! checks the echoed bytes, not only their count).
//! With the client leg, the local client's socket C' (the peer of C) is in
//! `SLUICE_CLIENTS`: [`splice`] treats C as bypass-fed (C' may have
//! redirected into C's ingress queue), so it waits for redirects under way
//! and drains C before inserting it; from (a) on, C' finds its peer
//! spliced and sends through the stack, into C's receive queue, which the
//! verdict sees. What C sends (spliced) goes through the stack into C''s
//! receive queue, after anything redirected there before (read first).
//!
//! Known limit: two sluice processes chained on loopback (one's backend is
//! the other's listener): both record the socket between them (one as its
//! upstream, the other as a local client) and only one sk_msg program can
//! own a socket (the other's insert fails, counted in
//! `sluice_ebpf_socket_errors_total`); the bytes stay correct, and its
//! bypass ignores the other process's splice entries, so such a chain
//! should run the downstream process with `--ebpf-splice false`.
//!
//! # Pins, several processes, crashes
//!
//! Programs and the SockHash are held by file descriptors only, so they
//! go away with the process, crash included. The counters and the port and
//! backend maps are pinned under `/sys/fs/bpf/sluice/<pid>/` for
//! inspection (`bpftool map dump pinned …`); the directory is removed on
//! exit, and directories of dead pids are removed at start. sockops is
//! attached with `BPF_F_ALLOW_MULTI`, so two sluice processes each run
//! their own programs and maps and never replace each other's.
#![expect(unsafe_code, reason = "mount(2), setrlimit(2), geteuid(2)")]

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData, PerCpuArray, SockHash};
use aya::programs::{CgroupAttachMode, SkMsg, SkSkb, SockOps};
use aya::{Ebpf, EbpfLoader};
use route_compiler::table::Table;
use sluice_ebpf_common::{self as common, Counter, Endpoint, SockKey, SpliceState};
use tokio_uring::net::TcpStream;

use crate::metrics::{Families, Source};
use crate::snapshot::Shared;

pub mod response;

pub use response::{BodySplice, splice_response};

/// The kernel programs, built by `build.rs` from `ebpf/sluice-ebpf`.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sluice-ebpf.o"));

/// Where bpffs is (or gets) mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// How often the loader thread forwards kernel log records and looks for a
/// new route table (new backends).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// `--ebpf`: whether to use the kernel programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Use them when they load; otherwise serve in userspace, with one log
    /// line saying why.
    #[default]
    Auto,
    /// Use them; fail at start if they do not load.
    On,
    /// Never load them.
    Off,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::On => "on",
            Mode::Off => "off",
        })
    }
}

/// Why the programs could not be loaded (with `--ebpf on`, the start-up
/// error).
#[derive(Debug)]
pub struct LoadError {
    reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    fn new(reason: impl Into<String>) -> LoadError {
        LoadError {
            reason: reason.into(),
        }
    }

    /// Wraps an aya error, naming the likely cause.
    fn from_step(step: &str, e: &(dyn std::error::Error + 'static)) -> LoadError {
        let mut chain = e.to_string();
        let mut permission = false;
        let mut source = e.source();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cause {
            if let Some(io) = err.downcast_ref::<io::Error>() {
                permission |= matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES));
            }
            cause = err.source();
        }
        while let Some(err) = source {
            chain.push_str(": ");
            chain.push_str(&err.to_string());
            source = err.source();
        }
        if permission {
            let who = if is_root() {
                "permission denied even as root (a security module or a container may forbid bpf(2))"
            } else {
                "not running as root (needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, or root)"
            };
            LoadError::new(format!("{step}: {who}: {chain}"))
        } else {
            LoadError::new(format!("{step}: {chain}"))
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Loads the programs per `mode` and logs which accelerations are active.
/// The guard holds nothing when serving in userspace only (`off`, or `auto`
/// that could not load).
///
/// # Errors
///
/// With [`Mode::On`], why the programs could not be loaded.
pub fn start(mode: Mode, options: Options, shared: &Arc<Shared>) -> Result<Guard, LoadError> {
    static DATA_PATH_METRICS: std::sync::Once = std::sync::Once::new();
    DATA_PATH_METRICS.call_once(|| crate::metrics::register_source(Arc::new(DataPathMetrics)));
    start_accel(mode, options, shared).map(Guard)
}

/// What to accelerate besides the backend leg of the loopback bypass
/// (by default: nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// `--ebpf-splice` (default true): splice upgraded connections (sk_skb).
    pub splice: bool,
    /// `--ebpf-splice-responses`: splice large response bodies (sk_skb,
    /// [`response`]; experimental).
    pub splice_responses: bool,
    /// `--ebpf-local-clients`: bypass the client leg too, for clients on
    /// 127.0.0.0/8 in sluice's cgroup (see "Loopback bypass").
    pub local_clients: bool,
}

fn start_accel(
    mode: Mode,
    options: Options,
    shared: &Arc<Shared>,
) -> Result<Option<Arc<Accel>>, LoadError> {
    if mode == Mode::Off {
        tracing::info!("eBPF acceleration off (--ebpf off): loopback bypass and splice not loaded");
        return Ok(None);
    }
    match Accel::load(shared, options) {
        Ok(accel) => {
            let splice = match &accel.splicer {
                Ok(_) => {
                    let what = match (options.splice, options.splice_responses) {
                        (true, true) => "splice of tunnelled connections and of response bodies",
                        (true, false) => "splice of tunnelled connections",
                        _ => "splice of response bodies",
                    };
                    format!("{what} active (sk_skb stream verdict on SockHash SLUICE_SPLICE)")
                }
                Err(why) => format!("splice of tunnelled connections inactive ({why})"),
            };
            let legs = if options.local_clients {
                "backend leg and local clients' leg"
            } else {
                "backend leg only; --ebpf-local-clients true adds the local clients' leg"
            };
            let legs = if options.splice_responses {
                format!(
                    "{legs}, backends' replies excepted: the response splice's verdict must see them"
                )
            } else {
                legs.to_string()
            };
            tracing::info!(
                "eBPF acceleration (--ebpf {mode}): loopback bypass active ({legs}; sockops on \
                 cgroup {}, sk_msg on SockHash; {} listener ports, {} loopback backends; maps \
                 pinned in {}); {splice}",
                accel.cgroup.display(),
                accel.listen_ports,
                accel.backends_registered(),
                accel
                    .pin_dir
                    .as_deref()
                    .map_or_else(|| "nowhere".into(), |d| d.display().to_string()),
            );
            let accel = Arc::new(accel);
            crate::metrics::register_source(Arc::new(Metrics(accel.clone())));
            if let Ok(splicer) = &accel.splicer {
                *SPLICER.write().unwrap_or_else(PoisonError::into_inner) = Some(splicer.clone());
                TUNNELS.store(options.splice, Ordering::Release);
                response::enable(options.splice_responses);
            }
            Ok(Some(accel))
        }
        Err(e) if mode == Mode::On => Err(LoadError::new(format!(
            "--ebpf on: cannot load the eBPF programs: {e}"
        ))),
        Err(e) => {
            tracing::warn!(
                "eBPF acceleration off (--ebpf auto could not load it: {e}); serving on the userspace path"
            );
            Ok(None)
        }
    }
}

// === impl Guard ===

/// What [`start`] loaded; dropping it stops the programs and removes the
/// pins ([`Accel::shutdown`]).
#[derive(Debug)]
#[must_use = "dropping the guard detaches the programs"]
pub struct Guard(Option<Arc<Accel>>);

impl Guard {
    /// The loaded programs, if any.
    pub fn accel(&self) -> Option<&Arc<Accel>> {
        self.0.as_ref()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(accel) = &self.0 {
            accel.shutdown();
        }
    }
}

// === impl Accel ===

/// The loaded and attached programs.
pub struct Accel {
    /// The splice, or why it is not active.
    splicer: Result<Arc<Splicer>, LoadError>,
    ebpf: Mutex<Option<Ebpf>>,
    _listen: HashMap<MapData, u32, u32>,
    counters: Mutex<PerCpuArray<MapData, u64>>,
    backends: Arc<Mutex<Backends>>,
    cgroup: PathBuf,
    listen_ports: usize,
    pin_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accel")
            .field("cgroup", &self.cgroup)
            .field("pin_dir", &self.pin_dir)
            .finish_non_exhaustive()
    }
}

/// The `SLUICE_BACKENDS` map and what it holds.
struct Backends {
    map: HashMap<MapData, Endpoint, u32>,
    registered: BTreeSet<(u32, u32)>,
    generation: u64,
}

impl Backends {
    /// Makes the map hold exactly the loopback endpoints of `table`.
    fn sync(&mut self, table: &Table) {
        let want: BTreeSet<(u32, u32)> = loopback_backends(table)
            .into_iter()
            .map(|e| (e.ip4, e.port))
            .collect();
        for &(ip4, port) in self.registered.difference(&want) {
            let _ = self.map.remove(&Endpoint { ip4, port });
        }
        for &(ip4, port) in want.difference(&self.registered) {
            if let Err(e) = self.map.insert(Endpoint { ip4, port }, 1, 0) {
                tracing::warn!(
                    "eBPF: cannot register backend {}:{port}: {e}",
                    Ipv4Addr::from(u32::from_be(ip4))
                );
            }
        }
        self.registered = want;
    }
}

/// Every backend endpoint of `table` on 127.0.0.0/8.
fn loopback_backends(table: &Table) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for route in table.routes() {
        for rule in &route.rules {
            for backend in &rule.backends {
                for addr in &backend.endpoints {
                    if let IpAddr::V4(ip) = addr.ip()
                        && ip.is_loopback()
                    {
                        out.push(Endpoint::new(u32::from(ip), addr.port()));
                    }
                }
            }
        }
    }
    out
}

/// Takes map `name` out of `ebpf`, pinning it in `pin_dir` first (if any).
fn take_map(
    ebpf: &mut Ebpf,
    name: &str,
    pin_dir: Option<&Path>,
) -> Result<aya::maps::Map, LoadError> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| LoadError::new(format!("the eBPF object has no map {name}")))?;
    if let Some(dir) = pin_dir
        && let Err(e) = map.pin(dir.join(name))
    {
        tracing::warn!("eBPF: cannot pin {name} in {}: {e}", dir.display());
    }
    Ok(map)
}

impl Accel {
    fn load(shared: &Arc<Shared>, options: Options) -> Result<Accel, LoadError> {
        if PROGRAMS.is_empty() {
            return Err(LoadError::new(
                "this binary was built without its eBPF programs (AYA_BUILD_SKIP)",
            ));
        }
        let cgroup = cgroup2_dir()?;
        raise_memlock();
        let level: u8 = if tracing::enabled!(target: "sluice::bpf", tracing::Level::DEBUG) {
            4 // aya_log_common::Level::Debug
        } else {
            2 // Warn
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("AYA_LOG_LEVEL", &level, false)
            .override_global(
                "SLUICE_LOCAL_CLIENTS",
                &u8::from(options.local_clients),
                true,
            )
            .override_global(
                "SLUICE_SPLICE_ON",
                &u8::from(splice_wanted(options).is_ok()),
                true,
            )
            .override_global(
                "SLUICE_BACKEND_REPLIES",
                &u8::from(!options.splice_responses),
                true,
            )
            .load(PROGRAMS)
            .map_err(|e| LoadError::from_step("loading the eBPF object", &e))?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(mut l) => Some(Box::new(move || l.flush()) as Box<dyn FnMut() + Send>),
            Err(e) => {
                tracing::warn!("eBPF: kernel log records unavailable: {e}");
                None
            }
        };

        let pin_dir = PinDir(prepare_pin_dir());
        let pins = pin_dir.0.as_deref();
        // Configuration maps first: sockops records nothing until they say so.
        let table = shared.table();
        let ports = table.ports();
        let mut listen: HashMap<MapData, u32, u32> =
            take_map(&mut ebpf, common::MAP_LISTEN_PORTS, pins)?
                .try_into()
                .map_err(|e| LoadError::from_step("SLUICE_LISTEN", &e))?;
        for &port in &ports {
            listen
                .insert(u32::from(port), 1, 0)
                .map_err(|e| LoadError::from_step("registering a listener port", &e))?;
        }
        let backends_map: HashMap<MapData, Endpoint, u32> =
            take_map(&mut ebpf, common::MAP_BACKENDS, pins)?
                .try_into()
                .map_err(|e| LoadError::from_step("SLUICE_BACKENDS", &e))?;
        let mut backends = Backends {
            map: backends_map,
            registered: BTreeSet::new(),
            generation: shared.generation(),
        };
        backends.sync(&table);
        let counters: PerCpuArray<MapData, u64> = take_map(&mut ebpf, common::MAP_COUNTERS, pins)?
            .try_into()
            .map_err(|e| LoadError::from_step("SLUICE_COUNTERS", &e))?;

        // Not pinned: the SockHashes hold sockets, which only this process
        // may touch.
        let socks: SockHash<MapData, SockKey> = ebpf
            .take_map(common::MAP_SOCKS)
            .ok_or_else(|| LoadError::new("the eBPF object has no map SLUICE_SOCKS"))?
            .try_into()
            .map_err(|e| LoadError::from_step("SLUICE_SOCKS", &e))?;
        let sk_msg: &mut SkMsg = ebpf
            .program_mut(common::PROG_SK_MSG)
            .ok_or_else(|| LoadError::new("the eBPF object has no sk_msg program"))?
            .try_into()
            .map_err(|e| LoadError::from_step("sk_msg", &e))?;
        sk_msg
            .load()
            .map_err(|e| LoadError::from_step("loading sk_msg", &e))?;
        sk_msg
            .attach(socks.fd())
            .map_err(|e| LoadError::from_step("attaching sk_msg to the SockHash", &e))?;
        let splicer = match splice_wanted(options) {
            Ok(()) => Splicer::load(&mut ebpf, socks).map(Arc::new),
            Err(why) => Err(LoadError::new(why)),
        };
        let cgroup_file = File::open(&cgroup)
            .map_err(|e| LoadError::new(format!("cannot open cgroup {}: {e}", cgroup.display())))?;
        let sockops: &mut SockOps = ebpf
            .program_mut(common::PROG_SOCKOPS)
            .ok_or_else(|| LoadError::new("the eBPF object has no sockops program"))?
            .try_into()
            .map_err(|e| LoadError::from_step("sockops", &e))?;
        sockops
            .load()
            .map_err(|e| LoadError::from_step("loading sockops", &e))?;
        sockops
            .attach(cgroup_file, sockops_attach_mode())
            .map_err(|e| {
                LoadError::from_step(&format!("attaching sockops to {}", cgroup.display()), &e)
            })?;

        let backends = Arc::new(Mutex::new(backends));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = spawn_poller(shared.clone(), backends.clone(), logger, stop.clone());
        Ok(Accel {
            splicer,
            ebpf: Mutex::new(Some(ebpf)),
            _listen: listen,
            counters: Mutex::new(counters),
            backends,
            cgroup,
            listen_ports: ports.len(),
            pin_dir: pin_dir.keep(),
            stop,
            thread: Mutex::new(thread),
        })
    }

    fn backends_registered(&self) -> usize {
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .registered
            .len()
    }

    /// Every counter, added up across CPUs, in [`Counter::ALL`] order.
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        Counter::ALL
            .iter()
            .map(|&c| {
                let sum = counters
                    .get(&c.index(), 0)
                    .map(|per_cpu| per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
                    .unwrap_or(0);
                (c, sum)
            })
            .collect()
    }

    /// Stops the loader thread, detaches the programs and removes the pins.
    /// Also done when the process exits (the kernel closes the descriptors);
    /// only the pins need this.
    pub fn shutdown(&self) {
        if let Ok(mine) = &self.splicer {
            let mut global = SPLICER.write().unwrap_or_else(PoisonError::into_inner);
            if global.as_ref().is_some_and(|s| Arc::ptr_eq(s, mine)) {
                *global = None;
            }
        }
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
        if let Some(dir) = &self.pin_dir {
            remove_pin_dir(dir);
        }
        // Detach now rather than at exit: dropping the programs detaches
        // their links (sockops) and closes the SockHash (sk_msg with it).
        drop(
            self.ebpf
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

impl Drop for Accel {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// === the loader thread ===

/// Forwards kernel log records and keeps `SLUICE_BACKENDS` in step with the
/// route table, until `stop`.
fn spawn_poller(
    shared: Arc<Shared>,
    backends: Arc<Mutex<Backends>>,
    mut logger: Option<Box<dyn FnMut() + Send>>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("sluice-ebpf".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                if let Some(flush) = &mut logger {
                    flush();
                }
                let generation = shared.generation();
                let mut b = backends.lock().unwrap_or_else(PoisonError::into_inner);
                if b.generation != generation {
                    b.generation = generation;
                    b.sync(&shared.table());
                }
                drop(b);
                std::thread::sleep(DEFAULT_POLL_INTERVAL);
            }
            if let Some(flush) = &mut logger {
                flush();
            }
        });
    match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(
                "eBPF: cannot start the loader thread (no kernel logs, no backend updates): {e}"
            );
            None
        }
    }
}

// === metrics ===

/// The eBPF counters, for `/metrics`.
struct Metrics(Arc<Accel>);

impl Source for Metrics {
    fn collect(&self, out: &mut Families) {
        out.gauge(
            "sluice_ebpf_active",
            "Whether an eBPF acceleration is loaded (1) or not (0).",
            &[("acceleration", "loopback_bypass")],
            1.0,
        );
        out.gauge(
            "sluice_ebpf_active",
            "Whether an eBPF acceleration is loaded (1) or not (0).",
            &[("acceleration", "splice")],
            if self.0.splicer.is_ok() { 1.0 } else { 0.0 },
        );
        for (counter, value) in self.0.counters() {
            let (name, help, labels): (&str, &str, &[(&str, &str)]) = match counter {
                Counter::SockopsActive => (
                    "sluice_ebpf_sockets",
                    "Sockets the sockops program recorded in the SockHash.",
                    &[("program", "sockops"), ("side", "upstream")],
                ),
                Counter::SockopsPassive => (
                    "sluice_ebpf_sockets",
                    "Sockets the sockops program recorded in the SockHash.",
                    &[("program", "sockops"), ("side", "client")],
                ),
                Counter::SockopsBackend => (
                    "sluice_ebpf_sockets",
                    "Sockets the sockops program recorded in the SockHash.",
                    &[("program", "sockops"), ("side", "backend")],
                ),
                Counter::SockopsLocalClient => (
                    "sluice_ebpf_sockets",
                    "Sockets the sockops program recorded in the SockHash.",
                    &[("program", "sockops"), ("side", "local_client")],
                ),
                Counter::SockopsErrors => (
                    "sluice_ebpf_socket_errors",
                    "Sockets the sockops program could not record.",
                    &[("program", "sockops")],
                ),
                Counter::SkMsgRedirectedMsgs => (
                    "sluice_ebpf_messages",
                    "Messages seen by the sk_msg and sk_skb programs, by program and verdict.",
                    &[("program", "sk_msg"), ("verdict", "redirected")],
                ),
                Counter::SkMsgPassedMsgs => (
                    "sluice_ebpf_messages",
                    "Messages seen by the sk_msg and sk_skb programs, by program and verdict.",
                    &[("program", "sk_msg"), ("verdict", "passed")],
                ),
                Counter::SkMsgRedirectedBytes => (
                    "sluice_ebpf_bytes",
                    "Bytes seen by the sk_msg and sk_skb programs, by program and verdict.",
                    &[("program", "sk_msg"), ("verdict", "redirected")],
                ),
                Counter::SkMsgPassedBytes => (
                    "sluice_ebpf_bytes",
                    "Bytes seen by the sk_msg and sk_skb programs, by program and verdict.",
                    &[("program", "sk_msg"), ("verdict", "passed")],
                ),
                Counter::SkSkbRedirectedMsgs => (
                    "sluice_ebpf_messages",
                    "Messages seen by the sk_msg and sk_skb programs, by program and verdict.",
                    &[("program", "sk_skb"), ("verdict", "redirected")],
                ),
                Counter::SkSkbPassedMsgs => (
                    "sluice_ebpf_messages",
                    "Messages seen by the sk_msg and sk_skb programs, by program and verdict.",
                    &[("program", "sk_skb"), ("verdict", "passed")],
                ),
                Counter::SkSkbRedirectedBytes => (
                    "sluice_ebpf_bytes",
                    "Bytes seen by the sk_msg and sk_skb programs, by program and verdict.",
                    &[("program", "sk_skb"), ("verdict", "redirected")],
                ),
                Counter::SkSkbPassedBytes => (
                    "sluice_ebpf_bytes",
                    "Bytes seen by the sk_msg and sk_skb programs, by program and verdict.",
                    &[("program", "sk_skb"), ("verdict", "passed")],
                ),
                _ => continue,
            };
            out.counter(name, help, labels, value);
        }
    }
}

// === the splice ===

/// The splice's maps, shared by every worker (map operations are
/// syscalls; the locks are held only around one).
struct Splicer {
    /// `SLUICE_SPLICE`: the stream verdict runs on the sockets in it.
    splice: Mutex<SockHash<MapData, SockKey>>,
    /// `SLUICE_SPLICED`: partner and counters per spliced socket.
    state: Mutex<HashMap<MapData, SockKey, SpliceState>>,
    /// `SLUICE_SOCKS` (the bypass's SockHash): a spliced socket must be in
    /// it so that sk_msg counts what is sent on it.
    socks: Mutex<SockHash<MapData, SockKey>>,
    /// `SLUICE_UPSTREAMS` and `SLUICE_CLIENTS`: a socket in either, or
    /// whose peer is in either, may have bypassed messages in its ingress
    /// queue.
    upstreams: HashMap<MapData, SockKey, u32>,
    clients: HashMap<MapData, SockKey, u32>,
    /// `SLUICE_BUDGET`: how much the verdict may redirect from a spliced
    /// response body's upstream socket ([`response`]).
    budget: Mutex<HashMap<MapData, SockKey, u64>>,
    /// `SLUICE_TARGETS`: the client sockets response bodies are redirected
    /// to ([`response`]).
    targets: Mutex<SockHash<MapData, SockKey>>,
}

/// The splice in use, if loaded ([`splice`] reads it).
static SPLICER: std::sync::RwLock<Option<Arc<Splicer>>> = std::sync::RwLock::new(None);

/// Whether tunnels are spliced (`--ebpf-splice`, default true).
static TUNNELS: AtomicBool = AtomicBool::new(false);

/// Whether the splice is loaded for tunnels ([`splice`] may take one).
pub fn splice_loaded() -> bool {
    TUNNELS.load(Ordering::Acquire)
        && SPLICER
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
}

/// Whether the splice's programs are wanted: for tunnels (`--ebpf-splice`,
/// default true) or response bodies.
fn splice_wanted(options: Options) -> Result<(), String> {
    if options.splice || options.splice_responses {
        Ok(())
    } else {
        Err("--ebpf-splice false".into())
    }
}

impl Splicer {
    fn load(ebpf: &mut Ebpf, socks: SockHash<MapData, SockKey>) -> Result<Splicer, LoadError> {
        let splice: SockHash<MapData, SockKey> = ebpf
            .take_map(common::MAP_SPLICE)
            .ok_or_else(|| LoadError::new("the eBPF object has no map SLUICE_SPLICE"))?
            .try_into()
            .map_err(|e| LoadError::from_step("SLUICE_SPLICE", &e))?;
        let state: HashMap<MapData, SockKey, SpliceState> = ebpf
            .take_map(common::MAP_SPLICED)
            .ok_or_else(|| LoadError::new("the eBPF object has no map SLUICE_SPLICED"))?
            .try_into()
            .map_err(|e| LoadError::from_step("SLUICE_SPLICED", &e))?;
        let verdict: &mut SkSkb = ebpf
            .program_mut(common::PROG_SK_SKB)
            .ok_or_else(|| LoadError::new("the eBPF object has no sk_skb program"))?
            .try_into()
            .map_err(|e| LoadError::from_step("sk_skb", &e))?;
        verdict
            .load()
            .map_err(|e| LoadError::from_step("loading the sk_skb stream verdict", &e))?;
        verdict.attach(splice.fd()).map_err(|e| {
            LoadError::from_step("attaching the sk_skb stream verdict to SLUICE_SPLICE", &e)
        })?;
        let upstreams: HashMap<MapData, SockKey, u32> = ebpf
            .take_map(common::MAP_UPSTREAMS)
            .ok_or_else(|| LoadError::new("the eBPF object has no map SLUICE_UPSTREAMS"))?
            .try_into()
            .map_err(|e| LoadError::from_step("SLUICE_UPSTREAMS", &e))?;
        let clients: HashMap<MapData, SockKey, u32> = ebpf
            .take_map(common::MAP_CLIENTS)
            .ok_or_else(|| LoadError::new("the eBPF object has no map SLUICE_CLIENTS"))?
            .try_into()
            .map_err(|e| LoadError::from_step("SLUICE_CLIENTS", &e))?;
        let targets: SockHash<MapData, SockKey> = ebpf
            .take_map(common::MAP_TARGETS)
            .ok_or_else(|| LoadError::new("the eBPF object has no map SLUICE_TARGETS"))?
            .try_into()
            .map_err(|e| LoadError::from_step("SLUICE_TARGETS", &e))?;
        let budget: HashMap<MapData, SockKey, u64> = ebpf
            .take_map(common::MAP_BUDGET)
            .ok_or_else(|| LoadError::new("the eBPF object has no map SLUICE_BUDGET"))?
            .try_into()
            .map_err(|e| LoadError::from_step("SLUICE_BUDGET", &e))?;
        Ok(Splicer {
            splice: Mutex::new(splice),
            state: Mutex::new(state),
            socks: Mutex::new(socks),
            upstreams,
            clients,
            budget: Mutex::new(budget),
            targets: Mutex::new(targets),
        })
    }

    /// Whether the bypass may have put messages in `key`'s ingress queue
    /// (its peer is recorded: it is one of sluice's upstream sockets to a
    /// loopback backend, or its peer is one; or its peer is a local
    /// client's socket).
    fn bypass_fed(&self, key: &SockKey) -> bool {
        let known =
            |k: &SockKey| self.upstreams.get(k, 0).is_ok() || self.clients.get(k, 0).is_ok();
        known(key) || known(&key.peer())
    }

    /// Steps (a) and (b) of entering (module docs): puts both sockets of
    /// a pair in `SLUICE_SOCKS` (so that sk_msg counts what the kernel
    /// sends on them) and writes their `SLUICE_SPLICED` entries, each
    /// naming the other. `false` (nothing left behind) when the kernel
    /// refused either.
    fn register(&self, (ckey, cfd): (SockKey, RawFd), (ukey, ufd): (SockKey, RawFd)) -> bool {
        {
            // Sockops put them there already when the bypass covers them;
            // the kernel then says EBUSY (the socket has an sk_msg
            // program) or EEXIST.
            let mut socks = self.socks.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, fd) in [(ckey, cfd), (ukey, ufd)] {
                match socks.insert(key, fd, BPF_NOEXIST) {
                    Ok(()) => {}
                    Err(e) if matches!(map_errno(&e), Some(libc::EEXIST | libc::EBUSY)) => {}
                    Err(e) => {
                        tracing::debug!(target: "sluice::bpf", "eBPF splice: cannot add a socket to SLUICE_SOCKS: {e}");
                        return false;
                    }
                }
            }
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = |partner| SpliceState {
            partner,
            ..SpliceState::default()
        };
        if let Err(e) = state
            .insert(ckey, entry(ukey), 0)
            .and_then(|()| state.insert(ukey, entry(ckey), 0))
        {
            let _ = state.remove(&ckey);
            let _ = state.remove(&ukey);
            tracing::debug!(target: "sluice::bpf", "eBPF splice: cannot record a spliced pair: {e}");
            return false;
        }
        true
    }

    /// Puts `fd` in `SLUICE_SPLICE`: from now on the verdict moves its
    /// bytes to its partner. `false` when the kernel refused it.
    fn enter(&self, key: SockKey, fd: RawFd) -> bool {
        let mut splice = self.splice.lock().unwrap_or_else(PoisonError::into_inner);
        match splice.insert(key, fd, 0) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(target: "sluice::bpf", "eBPF splice: cannot add a socket to SLUICE_SPLICE: {e}");
                false
            }
        }
    }

    fn state(&self, key: &SockKey) -> Option<SpliceState> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key, 0)
            .ok()
    }

    /// Takes both sockets out of the splice and forgets their entries.
    fn forget(&self, a: &SockKey, b: &SockKey) {
        {
            let mut splice = self.splice.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = splice.remove(a);
            let _ = splice.remove(b);
        }
        self.forget_entries(&[*a, *b]);
    }

    /// Forgets the sockets' entries (`SLUICE_SPLICED`, `SLUICE_BUDGET`),
    /// leaving them in `SLUICE_SPLICE`: the verdict passes a socket's bytes
    /// to its own receive path once its entry is gone.
    fn forget_entries(&self, keys: &[SockKey]) {
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for key in keys {
                let _ = state.remove(key);
            }
        }
        let mut budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            let _ = budget.remove(key);
        }
    }
}

/// Bytes `proto::h1::tunnel` copied in userspace (all of them with
/// `--ebpf off`; with the splice, only what was already read when it
/// started).
static TUNNEL_USERSPACE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts bytes a tunnel copied in userspace (`sluice_tunnel_userspace_bytes_total`).
pub fn count_tunnel_userspace(bytes: u64) {
    TUNNEL_USERSPACE_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// `sluice_tunnel_userspace_bytes_total` and
/// `sluice_response_body_bytes_total`, registered whatever the mode.
struct DataPathMetrics;

impl Source for DataPathMetrics {
    fn collect(&self, out: &mut Families) {
        out.counter(
            "sluice_tunnel_userspace_bytes",
            "Bytes of upgraded (tunnelled) connections copied in userspace, both directions.",
            &[],
            TUNNEL_USERSPACE_BYTES.load(Ordering::Relaxed),
        );
        let (kernel, userspace) = response::body_bytes();
        let help = "Body bytes of HTTP/1.1 responses with a Content-Length body of at least 256 KiB \
                    past the first read (what the response splice may take), by what moved them.";
        out.counter(
            "sluice_response_body_bytes",
            help,
            &[("path", "kernel")],
            kernel,
        );
        out.counter(
            "sluice_response_body_bytes",
            help,
            &[("path", "userspace")],
            userspace,
        );
    }
}

/// A socket's own key and its peer's, IPv4 only.
fn sock_key(fd: RawFd) -> Option<SockKey> {
    // SAFETY: the descriptor is borrowed for this call only; ManuallyDrop
    // never closes it.
    let sock = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    let (SocketAddr::V4(local), SocketAddr::V4(remote)) =
        (sock.local_addr().ok()?, sock.peer_addr().ok()?)
    else {
        return None;
    };
    Some(SockKey {
        local_ip4: u32::from(*local.ip()).to_be(),
        remote_ip4: u32::from(*remote.ip()).to_be(),
        local_port: u32::from(local.port()),
        remote_port: u32::from(remote.port()),
    })
}

/// One non-blocking `recv` into `buf` (cleared first), as much as its
/// capacity holds.
fn recv_now(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    recv_upto(fd, buf, usize::MAX, 0)
}

/// One non-blocking `recv` of at most `max` bytes into `buf` (cleared
/// first), with `flags` (`MSG_PEEK` or 0).
fn recv_upto(fd: RawFd, buf: &mut Vec<u8>, max: usize, flags: libc::c_int) -> io::Result<usize> {
    buf.clear();
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    // SAFETY: `spare` is writable memory of at least `len` bytes.
    let n = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast(),
            len,
            flags | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = usize::try_from(n).unwrap_or(0);
    // SAFETY: the kernel wrote `n` bytes.
    unsafe { buf.set_len(n) };
    Ok(n)
}

/// Makes the kernel look at `fd`'s receive queue now: setting SO_RCVLOWAT
/// runs the socket's data-ready callback (the stream verdict, once the
/// socket is in the splice) when bytes are queued.
fn kick(fd: RawFd) {
    let _ = set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, 1);
}

/// `setsockopt` of an `int` option.
fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid pointer to a c_int for the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One direction of entering the splice: the bytes read from `from` that
/// are still owed to `to`, and whether the kernel may take over.
///
/// The direction is *settled* once a read came back short (or found
/// nothing, or the end of stream). A non-blocking `recv` stops early only
/// when the queue it reads holds nothing more — TCP's receive loop copies
/// skb after skb until the buffer is full or the queue is empty, and the
/// sockmap receive path copies from the ingress queue the same way — so
/// a short read leaves no skb half read, and whatever arrives later is
/// queued whole, in order, for the verdict. (A read sized by `FIONREAD`
/// alone is not the same: `FIONREAD` counts the TCP queue only, while a
/// bypass-fed socket is read from its ingress queue first; here it only
/// sizes the buffer so that one read usually suffices.) Once settled the
/// direction reads no more; when what it owes is written, `from` enters
/// the splice and the kernel carries the rest.
struct Direction {
    from: RawFd,
    to: RawFd,
    buf: Vec<u8>,
    /// `buf[written..]` is still owed to `to`.
    written: usize,
    settled: bool,
    /// `from` reached its end of stream (a settled direction with nothing
    /// more to carry).
    eof: bool,
    /// Bytes read in userspace.
    copied: u64,
}

/// How one step of a [`Direction`] went.
enum Step {
    /// Bytes moved (read or written).
    Progress,
    /// Nothing could move now: `to`'s send buffer is full.
    Blocked,
    /// Settled and nothing owed: `from` may enter the splice.
    Ready,
}

impl Direction {
    fn new(from: RawFd, to: RawFd) -> Direction {
        Direction {
            from,
            to,
            buf: Vec::new(),
            written: 0,
            settled: false,
            eof: false,
            copied: 0,
        }
    }

    fn flushed(&self) -> bool {
        self.written == self.buf.len()
    }

    /// Bytes read and written to `to`.
    fn delivered(&self) -> u64 {
        self.copied - (self.buf.len() - self.written) as u64
    }

    /// Moves what is still owed to `to` into `owed` (empty), for the
    /// userspace copy to write first.
    fn hand_back(self, owed: &mut Vec<u8>) {
        owed.clear();
        owed.extend_from_slice(&self.buf[self.written..]);
    }

    /// Writes what is owed without blocking; then, if not settled yet,
    /// reads once without blocking. Never waits: a write that would block
    /// must not keep the other direction from being read (an echoing peer
    /// stops reading while its own writes wait on us).
    fn step(&mut self) -> io::Result<Step> {
        let mut moved = false;
        if !self.flushed() {
            match send_now(self.to, &self.buf[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    moved = n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.flushed() {
                return Ok(if moved { Step::Progress } else { Step::Blocked });
            }
        }
        if self.settled {
            return Ok(Step::Ready);
        }
        // Room for everything TCP has queued, so that the read comes back
        // short.
        let want = receive_queued(self.from)
            .saturating_add(SPLICE_DRAIN_READ)
            .min(SPLICE_DRAIN_READ_MAX);
        if self.buf.capacity() < want {
            self.buf = Vec::with_capacity(want);
        }
        self.written = 0;
        match recv_now(self.from, &mut self.buf) {
            Ok(0) => {
                self.settled = true;
                self.eof = true;
                Ok(Step::Ready)
            }
            Ok(n) => {
                self.settled = n < self.buf.capacity();
                self.copied += n as u64;
                Ok(Step::Progress)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.settled = true;
                Ok(Step::Ready)
            }
            Err(e) => Err(e),
        }
    }
}

/// How entering the splice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entering {
    /// Both sockets entered (or had nothing more to carry).
    Entered,
    /// A side closed, the kernel refused a socket, or the peers kept
    /// sending past [`SPLICE_DRAIN_MAX`], before either socket entered:
    /// the tunnel stays in userspace.
    Stay,
    /// A socket failed, or one entered and the other cannot.
    Failed,
}

/// Step 1 (d) of the handover protocol (module docs): moves both
/// [`Direction`]s until each source socket (keyed by `keys`) has entered
/// `SLUICE_SPLICE`.
async fn enter_directions(
    splicer: &Splicer,
    keys: [SockKey; 2],
    directions: &mut [Direction; 2],
) -> Entering {
    let mut entered = [false, false];
    while !(entered[0] && entered[1]) {
        let any_entered = entered[0] || entered[1];
        let mut blocked = true;
        for ((direction, key), done) in directions.iter_mut().zip(keys).zip(&mut entered) {
            if *done {
                continue;
            }
            match direction.step() {
                Err(_) => return Entering::Failed,
                Ok(Step::Progress) => blocked = false,
                Ok(Step::Blocked) => {}
                // Closing before anything entered: not worth it (the copy
                // reads the EOF again).
                Ok(Step::Ready) if direction.eof && !any_entered => return Entering::Stay,
                // Nothing more comes from this side: its FIN is
                // `Spliced::run`'s business.
                Ok(Step::Ready) if direction.eof => *done = true,
                Ok(Step::Ready) => {
                    blocked = false;
                    if !splicer.enter(key, direction.from) {
                        return if any_entered {
                            Entering::Failed
                        } else {
                            Entering::Stay
                        };
                    }
                    kick(direction.from);
                    *done = true;
                }
            }
        }
        let copied = directions[0].copied + directions[1].copied;
        if !(entered[0] || entered[1]) && copied > SPLICE_DRAIN_MAX {
            return Entering::Stay;
        }
        if blocked {
            // Both wait on a full send buffer: let the peers read.
            tokio::time::sleep(SPLICE_DRAIN_PAUSE).await;
        }
    }
    Entering::Entered
}

/// Bytes in `fd`'s TCP receive queue (`FIONREAD`); 0 when unknown.
fn receive_queued(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &raw mut n) };
    if r < 0 {
        0
    } else {
        usize::try_from(n).unwrap_or(0)
    }
}

/// One non-blocking `send` of `bytes` (no `SIGPIPE`): how many were taken.
fn send_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is readable for its length during the call.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// A tunnel whose bytes the kernel moves (see the module docs,
/// "Handover protocol"); [`Spliced::run`] waits for its end.
#[must_use = "a spliced tunnel must be run until it closes"]
pub struct Spliced {
    splicer: Arc<Splicer>,
    client: SockKey,
    upstream: SockKey,
    /// Bytes copied in userspace while entering, towards the upstream and
    /// towards the client.
    drained: (u64, u64),
}

impl fmt::Debug for Spliced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spliced")
            .field("client", &self.client)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// Hands an upgraded connection to the kernel: `client` and `upstream`
/// are spliced by the sk_skb stream verdict, so their bytes never enter
/// userspace again. Call it once the bytes already read on either side have
/// been written to the other (nothing of the tunnel is buffered in
/// userspace) and with no read or write in flight on either socket.
///
/// `Err` when the splice is not loaded, the sockets are not IPv4, the
/// kernel refused them, or a side closed while entering: the caller then
/// copies in userspace, as without eBPF (a side that closed or failed reads
/// so again), first writing what entering read but could not write yet,
/// which it finds in `owed` (towards the upstream, towards the client; both
/// empty on the way in). The error carries the bytes entering did write
/// (towards the upstream, towards the client).
pub async fn splice(
    client: &TcpStream,
    upstream: &TcpStream,
    owed: (&mut Vec<u8>, &mut Vec<u8>),
) -> Result<Spliced, (u64, u64)> {
    let splicer = SPLICER
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .ok_or((0, 0))?;
    let (cfd, ufd) = (client.as_raw_fd(), upstream.as_raw_fd());
    let (ckey, ukey) = (sock_key(cfd).ok_or((0, 0))?, sock_key(ufd).ok_or((0, 0))?);
    // 1–2. Both in the bypass's SockHash, and their entries: from now on
    //    the bypass sends nothing to the ingress queue of either socket
    //    (their peers' messages take the TCP stack, into the receive queue
    //    the verdict will see).
    if !splicer.register((ckey, cfd), (ukey, ufd)) {
        splicer.forget(&ckey, &ukey);
        return Err((0, 0));
    }
    // 3. Per direction: read in userspace until a read comes back short,
    //    write what was read to the other side, then put the source socket
    //    in `SLUICE_SPLICE` and kick it (setting SO_RCVLOWAT runs its
    //    data-ready callback, so the bytes queued since the short read go
    //    through the verdict now, in order, after everything written). See
    //    [`Direction`] for why a short read is the condition. A socket
    //    the bypass may have fed has messages in its ingress queue, which
    //    the verdict never sees: they are read first, in order (a bypass
    //    redirect decided just before step 2 lands within microseconds: let
    //    it land first). The two directions move independently — the
    //    verdict redirects into the partner's egress through
    //    `SLUICE_SOCKS`, so a socket may enter while its partner is still
    //    drained — and neither waits on a write, so an echoing peer cannot
    //    deadlock the pair. Until one has entered, a pair whose peers keep
    //    sending past the bound, or a side that closes, stays in userspace.
    let fed = (splicer.bypass_fed(&ckey), splicer.bypass_fed(&ukey));
    if fed.0 || fed.1 {
        tokio::time::sleep(SPLICE_SETTLE).await;
    }
    let mut directions = [Direction::new(cfd, ufd), Direction::new(ufd, cfd)];
    let outcome = enter_directions(&splicer, [ckey, ukey], &mut directions).await;
    let [up, down] = directions;
    if outcome != Entering::Entered {
        // Not worth splicing, or broken: the userspace copy takes over (it
        // reads a closed side's EOF again, and first writes what is owed);
        // a failure ends both.
        let failed = outcome == Entering::Failed;
        if failed {
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = upstream.shutdown(std::net::Shutdown::Both);
        }
        tracing::debug!(target: "sluice::bpf", up = up.copied, down = down.copied, failed, "eBPF splice: the tunnel stays in userspace");
        let written = (up.delivered(), down.delivered());
        count_tunnel_userspace(written.0 + written.1);
        up.hand_back(owed.0);
        down.hand_back(owed.1);
        splicer.forget(&ckey, &ukey);
        return Err(written);
    }
    tracing::debug!(target: "sluice::bpf", up = up.copied, down = down.copied, "eBPF splice: entered");
    let drained = (up.copied, down.copied);
    count_tunnel_userspace(drained.0 + drained.1);
    Ok(Spliced {
        splicer,
        client: ckey,
        upstream: ukey,
        drained,
    })
}

/// The errno of a failed map syscall.
fn map_errno(e: &aya::maps::MapError) -> Option<i32> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        cause = err.source();
    }
    None
}

/// `BPF_NOEXIST`: insert only if absent.
const BPF_NOEXIST: u64 = 1;

/// At most this many bytes are drained in userspace while entering.
const SPLICE_DRAIN_MAX: u64 = 64 << 20;

/// How long entering waits for a bypass redirect already under way.
const SPLICE_SETTLE: Duration = Duration::from_millis(1);

/// Room a drain read leaves beyond what `FIONREAD` reports, so that it
/// comes back short.
const SPLICE_DRAIN_READ: usize = 256 << 10;

/// The largest drain read (a receive queue may hold more: the read is
/// then full, and the next one finds the rest).
const SPLICE_DRAIN_READ_MAX: usize = 8 << 20;

/// How long the drain pauses when both directions wait on a full send
/// buffer.
const SPLICE_DRAIN_PAUSE: Duration = Duration::from_millis(1);

impl Spliced {
    /// Waits until both directions have closed, propagating each FIN once
    /// the bytes before it have been sent (`sent_bytes` of the receiving
    /// socket has caught up with `redirected_bytes` of the sending one),
    /// then takes both sockets out of the splice. An error on either side
    /// shuts both down. Returns the bytes carried each way.
    ///
    /// It never reads the sockets: an epoll set of its own, registered for
    /// `EPOLLRDHUP` only (errors and hang-ups are always reported), says
    /// when a side closed, so the data the kernel moves wakes nothing.
    pub async fn run(
        self,
        client: &TcpStream,
        upstream: &TcpStream,
    ) -> crate::proto::h1::Tunnelled {
        let sides = [
            (client, upstream, self.client, self.upstream),
            (upstream, client, self.upstream, self.client),
        ];
        let abort = || {
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = upstream.shutdown(std::net::Shutdown::Both);
        };
        // The peer's FIN (`EPOLLRDHUP`) and errors only.
        let rdhup = libc::EPOLLRDHUP as u32;
        match EpollSet::new(&[(client.as_raw_fd(), rdhup), (upstream.as_raw_fd(), rdhup)]) {
            Ok(mut watch) => {
                let mut open = [true, true];
                while open.iter().any(|&o| o) {
                    let Ok(events) = watch.wait().await else {
                        abort();
                        break;
                    };
                    for (i, mask) in events {
                        let error = mask & libc::EPOLLERR as u32 != 0;
                        if !open.get(i).copied().unwrap_or(false) {
                            continue;
                        }
                        open[i] = false;
                        watch.forget(i);
                        let (from, to, from_key, to_key) = sides[i];
                        // What the loader itself wrote on `to` while
                        // entering is in `to`'s sent bytes too.
                        let written = if i == 0 {
                            self.drained.0
                        } else {
                            self.drained.1
                        };
                        if error
                            || !self.flushed(from, to, &from_key, &to_key, written).await
                            || drain_rest(from, to).await.is_err()
                        {
                            abort();
                            open = [false, false];
                            break;
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    }
                }
            }
            Err(e) => {
                // Cannot watch: undo nothing, but do not leave the pair
                // running unattended either.
                tracing::warn!("eBPF splice: cannot watch a spliced pair ({e}); closing it");
                abort();
            }
        }
        let redirected = |k: &SockKey| self.splicer.state(k).map_or(0, |s| s.redirected_bytes);
        let tunnelled = crate::proto::h1::Tunnelled {
            to_upstream: self.drained.0 + redirected(&self.client),
            to_client: self.drained.1 + redirected(&self.upstream),
        };
        self.splicer.forget(&self.client, &self.upstream);
        tunnelled
    }

    /// After `from`'s EOF: waits until the kernel has written on `to` every
    /// byte it redirected from `from`. `false` when `to` is closed (an
    /// error) meanwhile.
    async fn flushed(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        from_key: &SockKey,
        to_key: &SockKey,
        written: u64,
    ) -> bool {
        // Taking `from`'s socket lock (TCP_INFO does) waits for the receive
        // path that saw the FIN to finish: the verdict has run over every
        // byte before it, so `redirected_bytes` is final.
        let _ = tcp_state(from.as_raw_fd());
        let mut pause = Duration::from_micros(50);
        let mut last = (0, Instant::now());
        loop {
            let redirected = self
                .splicer
                .state(from_key)
                .map_or(0, |s| s.redirected_bytes + written);
            let sent = self
                .splicer
                .state(to_key)
                .map_or(u64::MAX, |s| s.sent_bytes);
            if sent >= redirected {
                return true;
            }
            if tcp_state(to.as_raw_fd()).is_none_or(|s| s == TCP_CLOSE) {
                return false;
            }
            if sent != last.0 {
                last = (sent, Instant::now());
            } else if last.1.elapsed() > SPLICE_FLUSH_STALL {
                tracing::warn!(
                    "eBPF splice: {} redirected bytes not sent after {:?}; closing anyway",
                    redirected - sent,
                    SPLICE_FLUSH_STALL
                );
                return true;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }
}

/// After `from`'s EOF and the flush: copies in userspace what is left on
/// `from`. A socket that reaches TCP_CLOSE (both FINs seen) leaves every
/// sockmap, so bytes that arrived with or after its peer's FIN in that
/// state are in its plain receive queue, after everything redirected.
async fn drain_rest(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(16 << 10);
    loop {
        match recv_now(from.as_raw_fd(), &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                count_tunnel_userspace(n as u64);
                crate::io::write_all(to, &mut buf).await?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// `TCP_CLOSE` in `tcp_info.tcpi_state`.
const TCP_CLOSE: u8 = 7;

/// `TCP_INFO` of `fd` (which takes the socket lock); `None` when the
/// call fails or the kernel's structure is shorter than libc's.
fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    // SAFETY: tcp_info is plain data; zeroes are a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid pointers to `info` and `len` for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &raw mut len,
        )
    };
    (rc == 0 && len as usize >= std::mem::size_of::<libc::tcp_info>()).then_some(info)
}

/// The TCP state of `fd` (`TCP_INFO`, which takes the socket lock).
fn tcp_state(fd: RawFd) -> Option<u8> {
    tcp_info(fd).map(|info| info.tcpi_state)
}

/// An epoll set of its own, watching a few sockets each for the events
/// given, itself watched by the runtime's reactor (so waiting on it is an
/// ordinary await, and the sockets' io_uring operations are untouched).
struct EpollSet {
    epoll: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    fds: Vec<RawFd>,
}

impl EpollSet {
    /// Watches each `(fd, events)`; errors and hang-ups are always
    /// reported, so `events` may be 0.
    fn new(watched: &[(RawFd, u32)]) -> io::Result<EpollSet> {
        // SAFETY: no pointers.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(epfd) };
        for (i, &(fd, events)) in watched.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events,
                u64: i as u64,
            };
            // SAFETY: a valid event for the call.
            if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &raw mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: the OwnedFd owns the descriptor, open until the AsyncFd
        // drops it.
        let epoll = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE)
        }
        .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(EpollSet {
            epoll,
            fds: watched.iter().map(|&(fd, _)| fd).collect(),
        })
    }

    /// Waits for events: `(index, mask)` per socket that reported some.
    async fn wait(&mut self) -> io::Result<Vec<(usize, u32)>> {
        loop {
            let mut guard = self.epoll.readable().await?;
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
            // SAFETY: `events` is writable for 4 entries; no timeout.
            let n = unsafe {
                libc::epoll_wait(self.epoll.get_ref().as_raw_fd(), events.as_mut_ptr(), 4, 0)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                guard.clear_ready();
                continue;
            }
            let n = usize::try_from(n).unwrap_or(0);
            return Ok(events[..n]
                .iter()
                .map(|ev| {
                    let (mask, index) = (ev.events, ev.u64);
                    (usize::try_from(index).unwrap_or(0), mask)
                })
                .collect());
        }
    }

    /// Stops watching socket `index` (level-triggered: it stays ready).
    fn forget(&mut self, index: usize) {
        if let Some(&fd) = self.fds.get(index) {
            // SAFETY: no event needed for DEL.
            let _ = unsafe {
                libc::epoll_ctl(
                    self.epoll.get_ref().as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    fd,
                    std::ptr::null_mut(),
                )
            };
        }
    }
}

/// How long the kernel may make no progress writing a direction's last
/// bytes before its FIN is propagated anyway (a peer that stopped reading).
const SPLICE_FLUSH_STALL: Duration = Duration::from_secs(60);

// === the system: cgroup v2, bpffs, pins, memlock ===

/// The cgroup v2 directory this process runs in (sockops is attached
/// there), or the cgroup v2 root when that directory is not visible.
fn cgroup2_dir() -> Result<PathBuf, LoadError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| LoadError::new(format!("cannot read /proc/self/mountinfo: {e}")))?;
    let root = mount_point(&mountinfo, "cgroup2").ok_or_else(|| {
        LoadError::new("no cgroup v2 mount (sockops attaches to a cgroup v2; mount -t cgroup2 none /sys/fs/cgroup)")
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(|p| p.trim().trim_start_matches('/').to_string())
        })
        .unwrap_or_default();
    let dir = root.join(own);
    Ok(if dir.is_dir() { dir } else { root })
}

/// The mount point of the first mount of file system type `fstype`.
fn mount_point(mountinfo: &str, fstype: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let ty = right.split_whitespace().next()?;
        let point = left.split_whitespace().nth(4)?;
        (ty == fstype).then(|| PathBuf::from(point.replace("\\040", " ")))
    })
}

/// Mounts bpffs on [`BPFFS`] unless it is there.
fn ensure_bpffs() -> io::Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounted = mountinfo.lines().any(|line| {
        line.split_once(" - ").is_some_and(|(left, right)| {
            right.split_whitespace().next() == Some("bpf")
                && left.split_whitespace().nth(4) == Some(BPFFS)
        })
    });
    if mounted {
        return Ok(());
    }
    std::fs::create_dir_all(BPFFS)?;
    let c = |s: &str| CString::new(s).map_err(io::Error::other);
    let (source, target, fstype) = (c("bpf")?, c(BPFFS)?, c("bpf")?);
    // SAFETY: valid NUL-terminated strings that outlive the call; no data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        tracing::info!("eBPF: mounted bpffs on {BPFFS}");
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mounts bpffs if needed, removes the pins of dead sluice processes and
/// creates `/sys/fs/bpf/sluice/<pid>`; `None` (and a warning) when pinning
/// is not possible, which does not stop the programs.
fn prepare_pin_dir() -> Option<PathBuf> {
    if let Err(e) = ensure_bpffs() {
        tracing::warn!("eBPF: cannot mount bpffs on {BPFFS} (maps not pinned): {e}");
        return None;
    }
    let base = Path::new(BPFFS).join("sluice");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let alive = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
            if !alive {
                tracing::info!("eBPF: removing stale pins {}", entry.path().display());
                remove_pin_dir(&entry.path());
            }
        }
    }
    let dir = base.join(std::process::id().to_string());
    if dir.exists() {
        remove_pin_dir(&dir);
    }
    match std::fs::create_dir_all(&dir) {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::warn!(
                "eBPF: cannot create {} (maps not pinned): {e}",
                dir.display()
            );
            None
        }
    }
}

/// A pin directory, removed on drop unless kept (a failed load leaves
/// nothing behind).
struct PinDir(Option<PathBuf>);

impl PinDir {
    fn keep(mut self) -> Option<PathBuf> {
        self.0.take()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            remove_pin_dir(dir);
        }
    }
}

fn remove_pin_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// How sockops attaches so that several sluice processes (and other
/// programs) coexist: from 5.7 aya attaches with a BPF link, which is
/// always one of many (the kernel refuses `BPF_F_ALLOW_MULTI` there);
/// before, `BPF_F_ALLOW_MULTI` says so.
fn sockops_attach_mode() -> CgroupAttachMode {
    let code_5_7 = (5 << 16) | (7 << 8);
    match aya::util::KernelVersion::current() {
        Ok(v) if v.code() >= code_5_7 => CgroupAttachMode::Single,
        _ => CgroupAttachMode::AllowMultiple,
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit for the duration of the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
    if rc != 0 {
        tracing::debug!(
            "eBPF: cannot raise RLIMIT_MEMLOCK: {}",
            io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mount_points() {
        let info = "30 23 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                    40 23 0:30 / /sys/fs/bpf rw - bpf bpf rw\n";
        assert_eq!(
            mount_point(info, "cgroup2"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(mount_point(info, "bpf"), Some(PathBuf::from("/sys/fs/bpf")));
        assert_eq!(mount_point(info, "ext4"), None);
    }

    #[test]
    fn mode_names() {
        assert_eq!(Mode::default(), Mode::Auto);
        assert_eq!(Mode::On.to_string(), "on");
    }
}
