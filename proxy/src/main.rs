//! `sluice FILES…|routes.tbl`: compile the route files (or load a compiled
//! table) and run the proxy until SIGTERM/SIGINT; SIGHUP reloads.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sluice::admin;
use sluice::metrics::Registry;
use sluice::reload::{self, Inputs, Reloader};
use sluice::runtime::{self, Config, Control};
use sluice::snapshot::Shared;
use tracing_subscriber::EnvFilter;

/// Sluice: an HTTP/1.1 + h2c reverse proxy for Gateway API routes.
#[derive(Debug, Parser)]
#[command(name = "sluice", version)]
struct Args {
    /// Route files or directories (Gateway, HTTPRoute, EndpointSlice, …),
    /// or one table compiled by `routec compile`; or `demo`, for built-in
    /// backends and example routes on 127.0.0.1:8080.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Address every listener binds.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Worker threads (default: available parallelism).
    #[arg(long)]
    workers: Option<usize>,
    /// Log one line per request (tracing target `access`).
    #[arg(long)]
    access_log: bool,
    /// Seconds a client may take to send a request head (also the
    /// keep-alive idle timeout).
    #[arg(long, default_value_t = runtime::DEFAULT_HEADER_TIMEOUT.as_secs())]
    header_timeout: u64,
    /// Read buffer per connection, in bytes; also the largest request head
    /// (larger → 431). Streamed bodies are read through buffers of 64 KiB
    /// or this size, whichever is larger.
    #[arg(long, default_value_t = sluice::io::DEFAULT_BUFFER_SIZE)]
    buffer_size: usize,
    /// Serve /metrics, /routes and /healthz on this address (e.g.
    /// 127.0.0.1:9901).
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Reload when an input file changes (polled every second).
    #[arg(long)]
    watch: bool,
    /// Seconds a drain (SIGTERM, SIGINT) may take before the remaining
    /// connections are closed.
    #[arg(long, default_value_t = runtime::DEFAULT_DRAIN_TIMEOUT.as_secs_f64())]
    drain_timeout: f64,
    /// eBPF acceleration (loopback bypass to same-host backends): `auto`
    /// uses it when it loads, `on` refuses to start without it, `off`
    /// never loads it.
    #[arg(long, value_enum, default_value_t = sluice::bpf::Mode::Auto)]
    ebpf: sluice::bpf::Mode,
    /// Splice upgraded (WebSocket) connections in the kernel (sk_skb
    /// SockMap) when eBPF is active: the tunnel's bytes never enter
    /// userspace (docs/benchmarks.md, eBPF). `false` copies tunnels in
    /// userspace.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ebpf_splice: bool,
    /// Splice HTTP/1.1 response bodies that no filter touches, of 256 KiB
    /// or more, in the kernel (sk_skb): the body's bytes never enter
    /// userspace, and its backend connection is closed after it instead of
    /// pooled. Opt-in: it pays off on large bodies only
    /// (docs/benchmarks.md, eBPF).
    #[arg(long)]
    ebpf_splice_responses: bool,
    /// Bypass the client leg too, for clients on 127.0.0.0/8 in sluice's
    /// cgroup. Off by default: such a client's blocking sockets may see a
    /// spurious EAGAIN (kernel 6.18; ebpf/README.md says when).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    ebpf_local_clients: bool,
}

/// What the control loop reacts to.
#[derive(Debug)]
enum Event {
    /// Rebuild the table (the cause, for the log).
    Reload(&'static str),
    /// Drain and exit (the signal's name).
    Stop(&'static str),
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Forwards SIGHUP, SIGTERM and SIGINT to the control loop.
fn spawn_signals(tx: Sender<Event>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("sluice-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let event = match signal {
                    SIGHUP => Event::Reload("SIGHUP"),
                    SIGTERM => Event::Stop("SIGTERM"),
                    _ => Event::Stop("SIGINT"),
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the arguments ask for `sluice demo` (and no file named `demo`
/// exists, which would be a route file).
fn is_demo(files: &[PathBuf]) -> bool {
    matches!(files, [only] if only.as_os_str() == "demo" && !only.exists())
}

fn run(mut args: Args) -> Result<ExitCode, String> {
    let demo = is_demo(&args.files);
    let (inputs, table) = if demo {
        // Built-in backends and routes; listen on loopback only.
        args.bind = IpAddr::from([127, 0, 0, 1]);
        let build = sluice::demo::build()?;
        println!("{}", sluice::demo::curl_lines(sluice::demo::PORT));
        (None, build.table)
    } else {
        let inputs = Inputs::new(args.files)?;
        let loaded = match inputs.load() {
            Ok(loaded) => loaded,
            Err(diagnostics) => {
                for d in &diagnostics {
                    eprintln!("{d}");
                }
                return Ok(ExitCode::FAILURE);
            }
        };
        for w in &loaded.warnings {
            eprintln!("{w}");
        }
        (Some(inputs), loaded.table)
    };
    let drain_timeout = Duration::try_from_secs_f64(args.drain_timeout)
        .map_err(|e| format!("--drain-timeout: {e}"))?;
    let mut config = Config {
        bind: args.bind,
        access_log: args.access_log,
        header_timeout: Duration::from_secs(args.header_timeout),
        buffer_size: args.buffer_size.max(1024),
        drain_timeout,
        ..Config::default()
    };
    if let Some(workers) = args.workers {
        config.workers = workers.max(1);
    }

    let shared = Arc::new(Shared::new(Arc::new(table)));
    // Before the workers start, so their first connections are seen; the
    // guard detaches and unpins when `run` returns.
    let _ebpf = sluice::bpf::start(
        args.ebpf,
        sluice::bpf::Options {
            splice: args.ebpf_splice,
            splice_responses: args.ebpf_splice_responses,
            local_clients: args.ebpf_local_clients,
        },
        &shared,
    )
    .map_err(|e| e.to_string())?;
    let registry = Arc::new(Registry::new(config.workers));
    let control = Arc::new(Control::default());
    let (tx, rx) = mpsc::channel();
    // Signals first: a SIGTERM during start-up drains instead of killing.
    spawn_signals(tx.clone()).map_err(|e| format!("cannot handle signals: {e}"))?;
    let admin_listener = match args.admin {
        Some(addr) => Some(admin::bind(addr).map_err(|e| e.to_string())?),
        None => None,
    };
    let running = runtime::start(shared.clone(), config, &registry, control.clone())
        .map_err(|e| e.to_string())?;
    if let Some(listener) = admin_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("admin listening on {addr}");
        }
        let state = Arc::new(admin::State {
            shared: shared.clone(),
            registry: registry.clone(),
            control: control.clone(),
        });
        admin::spawn(listener, state).map_err(|e| format!("cannot start admin: {e}"))?;
    }
    let reloader = inputs
        .as_ref()
        .map(|inputs| Reloader::new(inputs.clone(), shared, registry, running.ports().to_vec()));
    if let (true, Some(inputs)) = (args.watch, inputs) {
        let tx = tx.clone();
        reload::watch(inputs, reload::DEFAULT_WATCH_INTERVAL, move || {
            tx.send(Event::Reload("watch")).is_ok()
        })
        .map_err(|e| format!("cannot watch the inputs: {e}"))?;
    }
    drop(tx);

    // Serve until a stop signal (or a worker dies).
    let mut failed = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Event::Reload(cause)) => match &reloader {
                Some(reloader) => {
                    reloader.reload(cause);
                }
                None => {
                    tracing::info!("{cause}: the demo's routes are built in; nothing to reload")
                }
            },
            Ok(Event::Stop(signal)) => {
                tracing::info!("{signal}: draining (up to {drain_timeout:?})");
                break;
            }
            Err(_) if running.any_finished() => {
                tracing::error!("a worker stopped; shutting down");
                failed = true;
                break;
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Unreachable while the signal thread lives; do not spin.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(200)),
        }
    }

    // Drain: workers stop accepting, finish what is in flight, and stop by
    // the deadline; a second stop signal exits at once.
    control.drain();
    let deadline = Instant::now() + drain_timeout + Duration::from_secs(2);
    while !running.all_finished() {
        if Instant::now() >= deadline {
            tracing::warn!("workers did not stop in time; exiting");
            return Ok(ExitCode::SUCCESS);
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Event::Stop(signal)) => {
                tracing::warn!("{signal} again: exiting now");
                return Ok(ExitCode::FAILURE);
            }
            Ok(Event::Reload(_)) | Err(_) => {}
        }
    }
    match running.join() {
        Ok(()) if !failed => {
            tracing::info!("drained; exiting");
            Ok(ExitCode::SUCCESS)
        }
        Ok(()) => Ok(ExitCode::FAILURE),
        Err(e) => Err(format!("worker: {e}")),
    }
}
