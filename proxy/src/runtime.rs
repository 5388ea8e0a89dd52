//! Workers: one thread per core, each running its own io_uring runtime with
//! its own listeners (SO_REUSEPORT), upstream pool, buffers, random
//! generator and metrics. The only thing workers share is the route table
//! snapshot; the process-wide [`Control`] (draining or not) is read on each
//! worker's tick, never per request.
//!
//! # Draining
//!
//! [`Control::drain`] (SIGTERM/SIGINT) starts a drain. On its next tick
//! (at most [`DEFAULT_TICK`] later) every worker sets its own flag
//! ([`Worker::draining`]), shuts its listening sockets down (so the kernel
//! stops handing it connections), wakes connections that wait idle for a
//! next request ([`Worker::unless_draining`]) so they close, and waits until
//! its last connection is done or [`Config::drain_timeout`] has passed.
//! A request read after the drain started is answered with
//! `Connection: close`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::snapshot::{Local, Shared};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};

use crate::io::{BufPool, DEFAULT_BUFFER_SIZE};
use crate::metrics::{self, Registry, Slot, WorkerMetrics};
use crate::upstream::pool::Pool;

/// How long a client may take to send a request head, and how long an idle
/// keep-alive connection is kept (slowloris bound).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a drain may take before the remaining connections are cut.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a worker publishes its metrics and looks at [`Control`].
pub const DEFAULT_TICK: Duration = metrics::DEFAULT_PUBLISH_INTERVAL;

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
    /// One access-log line per request (tracing target `access`).
    pub access_log: bool,
    /// See [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// Read buffer size per connection; also the largest request head.
    pub buffer_size: usize,
    /// See [`DEFAULT_DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from([0, 0, 0, 0]),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            access_log: false,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            buffer_size: DEFAULT_BUFFER_SIZE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

// === impl Control ===

/// Process-wide run state: written by the signal handling thread, read by
/// the admin listener and by each worker on its tick.
#[derive(Debug, Default)]
pub struct Control {
    draining: AtomicBool,
}

impl Control {
    /// Starts draining every worker.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

// === impl Drain ===

/// A worker's own draining flag and the tasks waiting for it.
#[derive(Debug, Default)]
struct Drain {
    draining: Cell<bool>,
    waiters: RefCell<Waiters>,
}

/// Wakers of [`Drained`] futures, in reusable slots.
#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Drain {
    fn start(&self) {
        self.draining.set(true);
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Resolves when its worker starts draining ([`Worker::drain_signal`]).
#[derive(Debug)]
pub struct Drained<'a> {
    drain: &'a Drain,
    slot: Option<usize>,
}

impl Future for Drained<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.draining.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.drain.waiters.borrow_mut();
        match self.slot {
            Some(i) => {
                // Polled again by the same task (the usual case): the waker
                // kept is still the right one, no clone needed.
                if let Some(slot) = waiters.slots.get_mut(i)
                    && !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
                {
                    *slot = Some(cx.waker().clone());
                }
            }
            None => {
                let waker = Some(cx.waker().clone());
                let i = match waiters.free.pop() {
                    Some(i) => {
                        waiters.slots[i] = waker;
                        i
                    }
                    None => {
                        waiters.slots.push(waker);
                        waiters.slots.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Drained<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot
            && let Ok(mut waiters) = self.drain.waiters.try_borrow_mut()
        {
            if let Some(slot) = waiters.slots.get_mut(i) {
                *slot = None;
            }
            waiters.free.push(i);
        }
    }
}

// === impl Worker ===

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
    /// This worker's metrics (see [`crate::metrics`]); e.g.
    /// `worker.metrics.mirror_dropped()`.
    pub metrics: Rc<WorkerMetrics>,
    drain: Drain,
}

impl Worker {
    /// Whether this worker is draining: a request read now is answered with
    /// `Connection: close` (HTTP/2: GOAWAY), and no new connection comes.
    pub fn draining(&self) -> bool {
        self.drain.draining.get()
    }

    /// A future that resolves when this worker starts draining, for a
    /// caller that polls it by hand (it may be polled again after it
    /// resolved; it stays resolved).
    pub fn drain_signal(&self) -> Drained<'_> {
        Drained {
            drain: &self.drain,
            slot: None,
        }
    }

    /// Resolves when this worker starts draining (at once if it is).
    pub async fn drained(&self) {
        self.drain_signal().await;
    }

    /// Runs `fut` (a wait for the next request on an idle connection) until
    /// it completes, or answers `closed` once the worker drains while `fut`
    /// is still waiting. `fut` is polled first, so a request that has
    /// already arrived is still served.
    pub async fn unless_draining<F: Future>(&self, fut: F, closed: F::Output) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut drained = Drained {
            drain: &self.drain,
            slot: None,
        };
        let mut closed = Some(closed);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(v);
            }
            match Pin::new(&mut drained).poll(cx) {
                Poll::Ready(()) => closed.take().map_or(Poll::Pending, Poll::Ready),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
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

// === impl Running ===

/// Running workers.
#[derive(Debug)]
pub struct Running {
    threads: Vec<JoinHandle<io::Result<()>>>,
    ports: Vec<u16>,
}

impl Running {
    /// The ports the workers listen on.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Whether any worker has stopped.
    pub fn any_finished(&self) -> bool {
        self.threads.iter().any(JoinHandle::is_finished)
    }

    /// Whether every worker has stopped.
    pub fn all_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Waits for every worker to stop.
    ///
    /// # Errors
    ///
    /// A worker's runtime error, or a panic.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for thread in self.threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("a worker panicked")),
            }
        }
        result
    }
}

/// Binds every port of the current table once per worker, then starts the
/// workers; they run until `control` drains them.
///
/// # Errors
///
/// A bind error (reported before any worker starts), or a thread spawn
/// error.
pub fn start(
    shared: Arc<Shared>,
    config: Config,
    registry: &Registry,
    control: Arc<Control>,
) -> io::Result<Running> {
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
        tracing::info!("listening on {}", SocketAddr::new(config.bind, port));
    }
    tracing::info!("{workers} workers");

    let mut threads = Vec::with_capacity(workers);
    for (index, listeners) in per_worker.into_iter().enumerate() {
        let shared = shared.clone();
        let config = config.clone();
        let control = control.clone();
        let slot = registry.slot(index);
        let thread = std::thread::Builder::new()
            .name(format!("sluice-worker-{index}"))
            .spawn(move || run_worker(shared, config, control, slot, listeners))?;
        threads.push(thread);
    }
    Ok(Running { threads, ports })
}

/// Starts the workers and runs them until they stop (without signal
/// handling or an admin listener: see the `sluice` binary for those).
///
/// # Errors
///
/// See [`start`] and [`Running::join`].
pub fn run(shared: Arc<Shared>, config: Config) -> io::Result<()> {
    let registry = Registry::new(config.workers.max(1));
    start(shared, config, &registry, Arc::default())?.join()
}

fn run_worker(
    shared: Arc<Shared>,
    config: Arc<Config>,
    control: Arc<Control>,
    slot: Arc<Slot>,
    listeners: Vec<(u16, std::net::TcpListener)>,
) -> io::Result<()> {
    let rt = build_runtime()?;
    let worker_metrics = Rc::new(WorkerMetrics::new(slot));
    metrics::install(worker_metrics.clone());
    let worker = Rc::new(Worker {
        snapshot: Local::new(shared),
        rng: RefCell::new(SmallRng::from_os_rng()),
        pool: Pool::default(),
        bufs: BufPool::new(config.buffer_size),
        config,
        metrics: worker_metrics,
        drain: Drain::default(),
    });
    rt.block_on(async move {
        let mut accepts = Vec::with_capacity(listeners.len());
        // Second handles on the listening sockets: shutting one down stops
        // the listener and wakes its pending accept.
        let mut closers = Vec::with_capacity(listeners.len());
        for (port, listener) in listeners {
            match listener.try_clone() {
                Ok(l) => closers.push(Socket::from(l)),
                Err(e) => {
                    tracing::warn!("port {port}: cannot keep a handle to close on drain: {e}")
                }
            }
            let listener = tokio_uring::net::TcpListener::from_std(listener);
            let worker = worker.clone();
            accepts.push(tokio_uring::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, client)) => {
                            let open = worker.metrics.connection();
                            let serve = crate::proto::serve(worker.clone(), stream, client, port);
                            tokio_uring::spawn(async move {
                                serve.await;
                                drop(open);
                            });
                        }
                        Err(_) if worker.draining() => break,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!("accept on port {port}: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }));
        }

        let mut deadline = None;
        loop {
            tokio::time::sleep(DEFAULT_TICK).await;
            worker.metrics.publish();
            if deadline.is_none() && control.is_draining() {
                worker.drain.start();
                for socket in closers.drain(..) {
                    let _ = socket.shutdown(Shutdown::Read);
                }
                for accept in &accepts {
                    accept.abort();
                }
                deadline = Some(Instant::now() + worker.config.drain_timeout);
            }
            if let Some(deadline) = deadline {
                let open = worker.metrics.active_connections();
                if open == 0 {
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!("drain timeout: closing {open} connections");
                    break;
                }
            }
        }
        worker.metrics.publish();
    });
    Ok(())
}
