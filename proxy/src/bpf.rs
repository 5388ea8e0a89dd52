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
//! | loopback bypass | sockops on the proxy's cgroup v2, sk_msg on the `SLUICE_SOCKS` SockHash | implemented |
//! | splice of tunnelled connections | sk_skb stream verdict on a SockMap | not implemented (see below) |
//!
//! **Loopback bypass.** The sockops program records, by 4-tuple, the
//! established TCP sockets of sluice's listeners (passive, local port in
//! `SLUICE_LISTEN`), sluice's connections to backends on 127.0.0.0/8
//! (active, remote end in `SLUICE_BACKENDS`), and the backend's end of
//! those (passive, local end a registered backend whose peer is one of
//! sluice's upstream sockets). Nothing else is recorded, so other
//! processes' connections are never touched — except that another process
//! connecting to a registered loopback backend while sluice runs is
//! recorded like sluice's own sockets (sockops cannot tell which process
//! connects); the bypass is transparent to it too. The sk_msg program sends
//! each message written on a recorded socket straight to the peer socket's
//! receive queue (`BPF_F_INGRESS`) when the peer is recorded, otherwise
//! through the TCP stack; a socket that once used the TCP stack keeps using
//! it (`SLUICE_PASSED`), so bytes cannot overtake each other. The proxy's
//! data path sees ordinary sockets: reads, writes, half-close and close
//! behave the same with and without the bypass.
//!
//! # Handover protocol (splice; designed, not implemented yet)
//!
//! Tunnelled bytes are still copied in userspace by
//! [`crate::proto::h1::tunnel`], the one place a splice would replace. The
//! splice is designed as follows; nothing of it is loaded today.
//!
//! *Maps and programs.* A SockHash `SLUICE_SPLICE` keyed by [`SockKey`] and
//! a hash map `SLUICE_PARTNER`: own key → the other socket of the tunnel
//! (client socket ↔ sluice's upstream socket). An sk_skb stream verdict
//! program on `SLUICE_SPLICE` redirects each skb received on one socket to
//! the partner's egress (`bpf_sk_redirect_hash`, no `BPF_F_INGRESS`). With
//! the loopback bypass, the backend's writes never reach the upstream
//! socket's receive path (they land in its ingress message queue, which a
//! stream verdict does not see), so `sluice_sk_msg` must, for a backend
//! socket whose peer has a partner, redirect to that partner's egress
//! instead of the peer's ingress.
//!
//! 1. *Entering* (only in `tunnel`, after the `101` head was written, so
//!    every later byte is opaque). The hard part is the upstream socket U,
//!    whose bytes from a loopback backend arrive in its ingress message
//!    queue (bypass), not in its TCP receive queue:
//!    - (a) mark U "entering" in `SLUICE_PARTNER`: from now on `sluice_sk_msg`
//!      on the backend's socket passes its messages through the TCP stack
//!      (they queue behind what is already in U's ingress queue, and a
//!      read returns the ingress queue first, so order holds);
//!    - (b) with no `copy_half` read in flight, write out what both buffers
//!      hold, then read U and the client socket C non-blocking until
//!      `EAGAIN`, writing each read to the other side (drains U's ingress
//!      queue and whatever TCP data came before the insert);
//!    - (c) insert C and U in `SLUICE_SPLICE` and set both partner entries
//!      (U's "entering" becomes "spliced": the backend's messages go
//!      straight to C's egress). Bytes that arrived between the last read
//!      and the insert are in the TCP receive queues; the stream verdict
//!      runs over the whole queue at the next data-ready, in order, so
//!      nothing is lost (to verify when implementing: a queue that gets
//!      no further data must still be flushed, e.g. by a zero-length
//!      `recv(MSG_DONTWAIT)` after the insert).
//! 2. *Staying.* `tunnel` then only waits for the end: readiness of each
//!    socket with `recv(MSG_PEEK)`; no byte enters userspace. The per-CPU
//!    counters (`sk_skb` messages and bytes) take the place of the
//!    userspace byte counts in [`crate::proto::h1::Tunnelled`].
//! 3. *Close and half-close.* A FIN is not data: the verdict program never
//!    sees it. When one socket reads EOF, `tunnel` removes both sockets
//!    from `SLUICE_SPLICE` (to verify when implementing: that skbs already
//!    redirected are sent before the removal returns), calls `shutdown(SHUT_WR)` on the
//!    partner, and copies the remaining direction in userspace until it
//!    ends too, exactly as `copy_half` does today. An error or RST on
//!    either side shuts both down, as today.
//! 4. *Taking back.* A tunnel is never taken back before its end (nothing
//!    after a `101` is HTTP). Response bodies with a response filter, and
//!    keep-alive connections, are never spliced: the next request on a
//!    keep-alive client connection is always read, parsed and routed in
//!    userspace.
//!
//! The hook it needs in the data path: `tunnel(client, upstream)` calls
//! `bpf::splice(&client_stream, &upstream_stream) -> Option<Spliced>`
//! after flushing both buffers and before starting the copies; `Some`
//! means "wait for EOF as in 2–3", `None` means "copy as today".
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
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use aya::maps::{HashMap, MapData, PerCpuArray, SockHash};
use aya::programs::{CgroupAttachMode, SkMsg, SockOps};
use aya::{Ebpf, EbpfLoader};
use route_compiler::table::Table;
use sluice_ebpf_common::{self as common, Counter, Endpoint, SockKey};

use crate::metrics::{Families, Source};
use crate::snapshot::Shared;

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
pub fn start(mode: Mode, shared: &Arc<Shared>) -> Result<Guard, LoadError> {
    start_accel(mode, shared).map(Guard)
}

fn start_accel(mode: Mode, shared: &Arc<Shared>) -> Result<Option<Arc<Accel>>, LoadError> {
    if mode == Mode::Off {
        tracing::info!("eBPF acceleration off (--ebpf off): loopback bypass and splice not loaded");
        return Ok(None);
    }
    match Accel::load(shared) {
        Ok(accel) => {
            tracing::info!(
                "eBPF acceleration (--ebpf {mode}): loopback bypass active (sockops on cgroup {}, \
                 sk_msg on SockHash; {} listener ports, {} loopback backends; maps pinned in {}); \
                 splice of tunnelled connections inactive (not implemented)",
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
    fn load(shared: &Arc<Shared>) -> Result<Accel, LoadError> {
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

        let socks_fd = {
            let socks: SockHash<&MapData, SockKey> = ebpf
                .map(common::MAP_SOCKS)
                .ok_or_else(|| LoadError::new("the eBPF object has no map SLUICE_SOCKS"))?
                .try_into()
                .map_err(|e| LoadError::from_step("SLUICE_SOCKS", &e))?;
            socks
                .fd()
                .try_clone()
                .map_err(|e| LoadError::from_step("SLUICE_SOCKS", &e))?
        };
        let sk_msg: &mut SkMsg = ebpf
            .program_mut(common::PROG_SK_MSG)
            .ok_or_else(|| LoadError::new("the eBPF object has no sk_msg program"))?
            .try_into()
            .map_err(|e| LoadError::from_step("sk_msg", &e))?;
        sk_msg
            .load()
            .map_err(|e| LoadError::from_step("loading sk_msg", &e))?;
        sk_msg
            .attach(&socks_fd)
            .map_err(|e| LoadError::from_step("attaching sk_msg to the SockHash", &e))?;
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
            0.0,
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
                Counter::SockopsErrors => (
                    "sluice_ebpf_socket_errors",
                    "Sockets the sockops program could not record.",
                    &[("program", "sockops")],
                ),
                Counter::SkMsgRedirectedMsgs => (
                    "sluice_ebpf_messages",
                    "Messages seen by the sk_msg program, by verdict.",
                    &[("program", "sk_msg"), ("verdict", "redirected")],
                ),
                Counter::SkMsgPassedMsgs => (
                    "sluice_ebpf_messages",
                    "Messages seen by the sk_msg program, by verdict.",
                    &[("program", "sk_msg"), ("verdict", "passed")],
                ),
                Counter::SkMsgRedirectedBytes => (
                    "sluice_ebpf_bytes",
                    "Bytes seen by the sk_msg program, by verdict.",
                    &[("program", "sk_msg"), ("verdict", "redirected")],
                ),
                Counter::SkMsgPassedBytes => (
                    "sluice_ebpf_bytes",
                    "Bytes seen by the sk_msg program, by verdict.",
                    &[("program", "sk_msg"), ("verdict", "passed")],
                ),
                _ => continue,
            };
            out.counter(name, help, labels, value);
        }
    }
}

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
