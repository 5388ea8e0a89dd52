//! Futures that run inside the task that owns them: an HTTP/2 connection's
//! streams, polled by the connection's own task instead of one spawned task
//! each.
//!
//! # Why not spawn
//!
//! A spawned task costs, per stream, an allocation for the future (an h2
//! stream's state is ~2.4 KiB, above glibc's per-thread cache, so it takes
//! malloc's slow path) and one for tokio's task cell (128-byte aligned, so
//! it goes through `posix_memalign`, which splits and consolidates chunks),
//! plus the scheduler's bookkeeping on spawn, wake and completion. Under
//! h2load's `-c32 -m16` that was one in eight of the proxy's userspace
//! samples. [`SubTasks`] keeps each slot's allocation and reuses it for the
//! next stream ([`Pin::set`] writes a new future of the same type in place),
//! so a busy connection allocates nothing per stream.
//!
//! # How it is driven
//!
//! Each slot has a waker of its own, made once: waking it sets the slot's
//! bit in a ready mask and wakes the owner task. The owner's own work (for
//! a connection: the `h2` connection, its idle timer, the drain signal) has
//! a waker of its own too. The owner polls through [`SubTasks::poll_with`],
//! which polls exactly what was woken: the slots whose bits are set, and the
//! owner's own work only when its waker fired, so a stream's wake-up does
//! not make the connection parse and flush again, and the connection's does
//! not touch idle streams. What the streams queue wakes the connection's
//! waker, which is seen in the same turn. The futures never move: each
//! lives in its own box.
//!
//! # Bounds
//!
//! At most [`SubTasks::with_capacity`]'s number of futures share the owner's
//! task; beyond that a future is spawned as a task of its own, so nothing
//! is ever refused. Finished slots keep their allocation for reuse, but no
//! more of them than there are live futures (or 16), and
//! [`SubTasks::trim`] releases them all (an idle connection calls it).
//!
//! # Panics
//!
//! A future that panics unwinds through the owner's poll: the owner's task
//! ends, with every future in its set (for a connection: all its streams),
//! where a spawned task would have ended alone. The request path has no
//! panicking operation on input or network data (see the crate's lints),
//! so this is a bound on a bug's reach, not a case that is handled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// Finished slots whose allocation is kept even with no live future.
const KEPT_WHEN_IDLE: usize = 16;

/// Rounds of woken futures one [`SubTasks::poll_with`] runs before it
/// yields to the other tasks of the thread.
const MAX_ROUNDS: usize = 8;

/// What the slots' wakers share with the owner.
#[derive(Debug)]
struct Shared {
    /// Bit `i % 64` of word `i / 64`: slot `i` was woken.
    ready: Box<[AtomicU64]>,
    /// The owner's own waker was woken.
    own: AtomicBool,
    /// The owner task.
    owner: AtomicWaker,
}

impl Shared {
    fn mark(&self, slot: usize) {
        self.ready[slot / 64].fetch_or(1 << (slot % 64), Ordering::AcqRel);
    }

    fn any_ready(&self) -> bool {
        self.own.load(Ordering::Acquire)
            || self
                .ready
                .iter()
                .any(|word| word.load(Ordering::Acquire) != 0)
    }
}

/// The waker of the owner's own work.
#[derive(Debug)]
struct OwnWaker {
    shared: Arc<Shared>,
}

impl Wake for OwnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.own.store(true, Ordering::Release);
        self.shared.owner.wake();
    }
}

/// The waker of one slot.
#[derive(Debug)]
struct SlotWaker {
    slot: usize,
    shared: Arc<Shared>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.mark(self.slot);
        self.shared.owner.wake();
    }
}

/// One slot: its future (live, finished with the allocation kept, or none)
/// and its waker.
struct Slot<F> {
    future: Option<Pin<Box<F>>>,
    live: bool,
    waker: Waker,
}

/// A set of futures of one type, polled by the task that owns the set.
///
/// # Invariants
///
/// * `live` is the number of slots with `live == true`; a live slot has a
///   future.
/// * `free` holds exactly the indices of the slots that are not live.
/// * `kept` is the number of slots that are not live but hold a future
///   (a finished one, kept for its allocation).
pub struct SubTasks<F> {
    slots: Vec<Slot<F>>,
    free: Vec<usize>,
    live: usize,
    kept: usize,
    capacity: usize,
    own_waker: Waker,
    shared: Arc<Shared>,
}

impl<F> std::fmt::Debug for SubTasks<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubTasks")
            .field("slots", &self.slots.len())
            .field("live", &self.live)
            .field("kept", &self.kept)
            .finish()
    }
}

impl<F: Future<Output = ()> + 'static> SubTasks<F> {
    /// An empty set that runs up to `capacity` futures in the owner's task
    /// (rounded up to a multiple of 64).
    pub fn with_capacity(capacity: usize) -> SubTasks<F> {
        let words = capacity.div_ceil(64).max(1);
        let shared = Arc::new(Shared {
            ready: (0..words).map(|_| AtomicU64::new(0)).collect(),
            // The owner's work is polled on the first call.
            own: AtomicBool::new(true),
            owner: AtomicWaker::new(),
        });
        SubTasks {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            kept: 0,
            capacity: words * 64,
            own_waker: Waker::from(Arc::new(OwnWaker {
                shared: Arc::clone(&shared),
            })),
            shared,
        }
    }

    /// Whether no future is running in the set (any spawned because the
    /// set was full are not counted).
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Adds `future`; it is first polled by the next [`poll_with`](Self::poll_with).
    /// When the set is full it is spawned as a task of its own instead.
    pub fn push(&mut self, future: F) {
        let index = if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index];
            match slot.future.as_mut() {
                Some(kept) => {
                    kept.set(future);
                    self.kept -= 1;
                }
                None => slot.future = Some(Box::pin(future)),
            }
            slot.live = true;
            index
        } else if self.slots.len() < self.capacity {
            let index = self.slots.len();
            self.slots.push(Slot {
                future: Some(Box::pin(future)),
                live: true,
                waker: Waker::from(Arc::new(SlotWaker {
                    slot: index,
                    shared: Arc::clone(&self.shared),
                })),
            });
            index
        } else {
            tokio_uring::spawn(Box::pin(future));
            return;
        };
        self.live += 1;
        self.shared.mark(index);
    }

    /// Polls what was woken since the last call: the futures whose wakers
    /// fired, once each, and `own` (the owner's own work) if its waker
    /// fired, with a context of that waker; again, while anything was
    /// woken meanwhile, for a few rounds. Returns what `own` returned when
    /// it was ready; `own` is polled again on the next call then (whatever
    /// made it ready may not be all it has).
    ///
    /// After a `Ready`, the owner calls this again before it yields (as a
    /// loop around it does): futures woken during that call's last round
    /// are only polled by the next call, and did not wake the owner.
    pub fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut own: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        // Wake-ups during the rounds only set bits, which the rounds see;
        // they do not make the scheduler poll the owner again.
        drop(self.shared.owner.take());
        for _ in 0..MAX_ROUNDS {
            let mut woken = self.run_ready();
            if self.shared.own.swap(false, Ordering::AcqRel) {
                woken = true;
                let mut own_cx = Context::from_waker(&self.own_waker);
                if let Poll::Ready(v) = own(&mut own_cx) {
                    self.shared.own.store(true, Ordering::Release);
                    self.shared.owner.register(cx.waker());
                    return Poll::Ready(v);
                }
            }
            if !woken {
                self.shared.owner.register(cx.waker());
                // Woken after the last round looked, before the owner was
                // registered: nobody was told.
                if self.shared.any_ready() {
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
        }
        self.shared.owner.register(cx.waker());
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Polls every slot whose bit is set, once; whether there was one.
    fn run_ready(&mut self) -> bool {
        let mut any = false;
        for word in 0..self.shared.ready.len() {
            let mut bits = self.shared.ready[word].swap(0, Ordering::AcqRel);
            any |= bits != 0;
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.poll_slot(word * 64 + bit);
            }
        }
        any
    }

    fn poll_slot(&mut self, index: usize) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if !slot.live {
            return; // a stale wake-up of a finished future
        }
        let Some(future) = slot.future.as_mut() else {
            return;
        };
        let mut cx = Context::from_waker(&slot.waker);
        if future.as_mut().poll(&mut cx).is_pending() {
            return;
        }
        slot.live = false;
        self.live -= 1;
        if self.kept < self.live.max(KEPT_WHEN_IDLE) {
            self.kept += 1;
        } else {
            slot.future = None;
        }
        self.free.push(index);
    }

    /// Releases the allocations kept by finished slots.
    pub fn trim(&mut self) {
        for slot in &mut self.slots {
            if !slot.live {
                slot.future = None;
            }
        }
        self.kept = 0;
    }

    /// Runs the set until every future in it has finished (the owner has
    /// no work of its own left).
    pub async fn finish(&mut self) {
        std::future::poll_fn(|cx| {
            let _ = self.poll_with(cx, |_| Poll::<()>::Pending);
            if self.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// A future that is pending until its flag is set, counting its polls.
    struct Gate {
        open: Rc<Cell<bool>>,
        polls: Rc<Cell<u32>>,
        waker: Rc<RefCell<Option<Waker>>>,
    }

    impl Future for Gate {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.set(self.polls.get() + 1);
            if self.open.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    struct Handle {
        open: Rc<Cell<bool>>,
        polls: Rc<Cell<u32>>,
        waker: Rc<RefCell<Option<Waker>>>,
    }

    fn gate() -> (Gate, Handle) {
        let open = Rc::new(Cell::new(false));
        let polls = Rc::new(Cell::new(0));
        let waker = Rc::new(RefCell::new(None));
        (
            Gate {
                open: open.clone(),
                polls: polls.clone(),
                waker: waker.clone(),
            },
            Handle { open, polls, waker },
        )
    }

    impl Handle {
        fn release(&self) {
            self.open.set(true);
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Counts wake-ups of the owner.
    struct Owner(std::sync::atomic::AtomicUsize);
    impl Wake for Owner {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn polls_only_woken_futures_and_reuses_finished_slots() {
        let owner = Arc::new(Owner(Default::default()));
        let waker = Waker::from(owner.clone());
        let mut cx = Context::from_waker(&waker);
        let mut set = SubTasks::with_capacity(4);
        let (a, ha) = gate();
        let (b, hb) = gate();
        set.push(a);
        set.push(b);
        let _ = set.poll_with(&mut cx, |_| Poll::<()>::Pending);
        assert_eq!((ha.polls.get(), hb.polls.get()), (1, 1));
        assert_eq!(set.live, 2);

        // Nothing woken: nothing polled.
        let _ = set.poll_with(&mut cx, |_| Poll::<()>::Pending);
        assert_eq!((ha.polls.get(), hb.polls.get()), (1, 1));

        // Waking `a` wakes the owner and polls `a` alone, which finishes.
        ha.release();
        assert_eq!(owner.0.load(Ordering::SeqCst), 1);
        let _ = set.poll_with(&mut cx, |_| Poll::<()>::Pending);
        assert_eq!((ha.polls.get(), hb.polls.get()), (2, 1));
        assert_eq!(set.live, 1);

        // The finished slot (and its allocation) is reused.
        let (c, hc) = gate();
        set.push(c);
        assert_eq!(set.slots.len(), 2);
        let _ = set.poll_with(&mut cx, |_| Poll::<()>::Pending);
        assert_eq!(hc.polls.get(), 1);
        hb.release();
        hc.release();
        let _ = set.poll_with(&mut cx, |_| Poll::<()>::Pending);
        assert!(set.is_empty());
        assert_eq!(set.kept, 2);
        set.trim();
        assert!(set.slots.iter().all(|s| s.future.is_none()));
    }

    #[test]
    fn a_stale_wake_of_a_finished_slot_polls_nothing() {
        let waker = Waker::from(Arc::new(Owner(Default::default())));
        let mut cx = Context::from_waker(&waker);
        let mut set = SubTasks::with_capacity(1);
        let (a, ha) = gate();
        set.push(a);
        ha.open.set(true);
        let _ = set.poll_with(&mut cx, |_| Poll::<()>::Pending);
        assert!(set.is_empty());
        set.slots[0].waker.wake_by_ref();
        let _ = set.poll_with(&mut cx, |_| Poll::<()>::Pending);
        assert_eq!(ha.polls.get(), 1);
    }
}
