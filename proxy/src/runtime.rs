//! Workers: one thread per core, each running its own io_uring runtime with
//! its own listeners (SO_REUSEPORT), upstream pool, buffers and random
//! generator. The only thing workers share is the route table snapshot.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::snapshot::{Local, Shared};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};

use crate::io::{BufPool, DEFAULT_BUFFER_SIZE};
use crate::upstream::pool::Pool;

/// How long a client may take to send a request head, and how long an idle
/// keep-alive connection is kept (slowloris bound).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// Submission queue entries of each worker's ring.
pub const DEFAULT_RING_ENTRIES: u32 = 256;

/// Listen backlog of each listener socket.
pub const DEFAULT_BACKLOG: i32 = 1024;

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the listeners bind.
    pub bind: IpAddr,
    /// Number of worker threads.
    pub workers: usize,
    /// One access-log line per request on stderr.
    pub access_log: bool,
    /// See [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// Read buffer size per connection; also the largest request head.
    pub buffer_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from([0, 0, 0, 0]),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            access_log: false,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            buffer_size: DEFAULT_BUFFER_SIZE,
        }
    }
}

/// What one worker owns.
#[derive(Debug)]
pub struct Worker {
    /// The route table snapshot (and this worker's lookup state for it).
    pub snapshot: Local,
    /// The worker's generator (weighted choice, endpoints).
    pub rng: RefCell<SmallRng>,
    /// Idle backend connections.
    pub pool: Pool,
    /// Free read buffers.
    pub bufs: BufPool,
    /// Settings.
    pub config: Arc<Config>,
}

/// Creates a listening socket with SO_REUSEPORT, so that every worker can
/// bind its own on the same address and the kernel spreads connections.
///
/// # Errors
///
/// The socket, bind or listen error.
pub fn reuseport_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(DEFAULT_BACKLOG)?;
    Ok(socket.into())
}

fn build_runtime() -> io::Result<tokio_uring::Runtime> {
    // COOP_TASKRUN + TASKRUN_FLAG: completions are not delivered by
    // interrupting the thread (IPI) but when it next enters the kernel.
    let mut urb = tokio_uring::uring_builder();
    urb.setup_coop_taskrun().setup_taskrun_flag();
    let mut builder = tokio_uring::builder();
    builder.entries(DEFAULT_RING_ENTRIES).uring_builder(&urb);
    match tokio_uring::Runtime::new(&builder) {
        Ok(rt) => Ok(rt),
        // Kernels before 5.19 do not know these flags.
        Err(_) => {
            let mut plain = tokio_uring::builder();
            plain.entries(DEFAULT_RING_ENTRIES);
            tokio_uring::Runtime::new(&plain)
        }
    }
}

/// Binds every port of `table` once per worker, then runs the workers until
/// they all stop.
///
/// # Errors
///
/// A bind error (reported before any worker starts), or a worker's
/// runtime error.
pub fn run(shared: Arc<Shared>, config: Config) -> io::Result<()> {
    let config = Arc::new(config);
    let ports = shared.table().ports();
    let workers = config.workers.max(1);
    let mut per_worker = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut listeners = Vec::with_capacity(ports.len());
        for &port in &ports {
            let addr = SocketAddr::new(config.bind, port);
            let listener = reuseport_listener(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            listeners.push((port, listener));
        }
        per_worker.push(listeners);
    }
    for &port in &ports {
        eprintln!(
            "sluice: listening on {}",
            SocketAddr::new(config.bind, port)
        );
    }
    eprintln!("sluice: {workers} workers");

    let mut threads = Vec::with_capacity(workers);
    for (index, listeners) in per_worker.into_iter().enumerate() {
        let shared = shared.clone();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sluice-worker-{index}"))
            .spawn(move || run_worker(shared, config, listeners))?;
        threads.push(thread);
    }
    let mut result = Ok(());
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(io::Error::other("a worker panicked")),
        }
    }
    result
}

fn run_worker(
    shared: Arc<Shared>,
    config: Arc<Config>,
    listeners: Vec<(u16, std::net::TcpListener)>,
) -> io::Result<()> {
    let rt = build_runtime()?;
    let worker = Rc::new(Worker {
        snapshot: Local::new(shared),
        rng: RefCell::new(SmallRng::from_os_rng()),
        pool: Pool::default(),
        bufs: BufPool::new(config.buffer_size),
        config,
    });
    rt.block_on(async move {
        let mut accepts = Vec::with_capacity(listeners.len());
        for (port, listener) in listeners {
            let listener = tokio_uring::net::TcpListener::from_std(listener);
            let worker = worker.clone();
            accepts.push(tokio_uring::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, client)) => {
                            tokio_uring::spawn(crate::proto::h1::serve(
                                worker.clone(),
                                stream,
                                client,
                                port,
                            ));
                        }
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            eprintln!("sluice: accept on port {port}: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }));
        }
        for accept in accepts {
            let _ = accept.await;
        }
    });
    Ok(())
}
