//! Time for bookkeeping on the request path: a coarse clock and a timer
//! that is re-armed only when it fires.
//!
//! A keep-alive request costs the proxy ~14 µs of CPU, and the precise
//! clock (`Instant::now`, `CLOCK_MONOTONIC`) costs ~50 ns a read on a
//! virtual machine (the vDSO reads the TSC and the hypervisor's clock
//! page). Expiring idle backend connections and bounding how long a client
//! takes to send a head need milliseconds, not nanoseconds, so they read
//! [`coarse_ms`] (`CLOCK_MONOTONIC_COARSE`: the time of the kernel's last
//! timer tick, one load from the vDSO page). Request latencies, which the
//! metrics report in microseconds, keep the precise clock.
//!
//! [`LazyTimer`] is the other half: a deadline that is pushed back on
//! every request but rarely expires (the header timeout of a keep-alive
//! connection) would insert into and remove from tokio's timer wheel once
//! a request. Here it is a number, moved with a store; the one tokio timer
//! of the connection, armed once, checks the number when it fires and
//! re-arms for the rest if the deadline moved.
#![expect(unsafe_code, reason = "clock_gettime(2) of CLOCK_MONOTONIC_COARSE")]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Sleep;

/// Milliseconds of `CLOCK_MONOTONIC_COARSE`: monotonic, the same clock as
/// `Instant` but as of the last timer tick (1–10 ms behind it).
pub fn coarse_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` for the duration of the
    // call, which is all `clock_gettime` needs; `CLOCK_MONOTONIC_COARSE`
    // exists on every kernel sluice runs on (2.6.32+), so the call cannot
    // fail, and if it ever did `ts` would stay zero (a clock stuck at 0
    // makes timers fire late, never early or unsafely).
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts);
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let millis = u64::try_from(ts.tv_nsec / 1_000_000).unwrap_or(0);
    secs.saturating_mul(1000).saturating_add(millis)
}

/// A future bounded by a [`LazyTimer`] ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// A deadline `period` after the last [`restart`](Self::restart), kept on
/// one tokio timer that is re-armed only when it fires early.
///
/// Moving the deadline is a store; the timer, when it fires, compares the
/// coarse clock with the deadline and sleeps again for what is left. So a
/// deadline can fire up to one clock tick late, never early.
#[derive(Debug)]
pub struct LazyTimer {
    period_ms: u64,
    due_ms: u64,
    /// Boxed so that the timer can move with its owner (one allocation a
    /// connection, not one a request).
    sleep: Pin<Box<Sleep>>,
}

impl LazyTimer {
    /// A timer whose deadline is `period` from now.
    pub fn new(period: Duration) -> LazyTimer {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        LazyTimer {
            period_ms,
            due_ms: coarse_ms().saturating_add(period_ms),
            sleep: Box::pin(tokio::time::sleep(period)),
        }
    }

    /// Moves the deadline to `period` from now.
    pub fn restart(&mut self) {
        self.due_ms = coarse_ms().saturating_add(self.period_ms);
    }

    /// Ready once the deadline has passed.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let now = coarse_ms();
            if now >= self.due_ms {
                return Poll::Ready(());
            }
            let left = Duration::from_millis(self.due_ms - now);
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + left);
        }
    }

    /// Runs `fut` until it completes or the deadline passes, whichever is
    /// first; `fut` is polled first, so an answer that is ready wins.
    ///
    /// `fut` comes pinned by the caller: an `async fn` taking it by value
    /// would hold it twice in its state (the argument and the pinned
    /// local), and this wraps the read of every keep-alive connection's
    /// next head, whose state every idle connection carries.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when the deadline passed first.
    pub fn bound<'a, F: Future>(
        &'a mut self,
        mut fut: Pin<&'a mut F>,
    ) -> impl Future<Output = Result<F::Output, TimedOut>> + 'a {
        std::future::poll_fn(move |cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            self.poll_expired(cx).map(|()| Err(TimedOut))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;

    fn run<F: Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map(|rt| rt.block_on(fut))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    #[test]
    fn coarse_clock_is_monotonic_and_near_instant() {
        let a = coarse_ms();
        std::thread::sleep(Duration::from_millis(30));
        let b = coarse_ms();
        assert!(b >= a + 15, "{a} then {b}");
        assert!(b - a < 1000, "{a} then {b}");
    }

    #[test]
    fn ready_future_wins_over_an_expired_deadline() {
        run(async {
            let mut timer = LazyTimer::new(Duration::from_millis(1));
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(timer.bound(pin!(async { 7 })).await, Ok(7));
        });
    }

    #[test]
    fn fires_after_the_period() {
        run(async {
            let mut timer = LazyTimer::new(Duration::from_millis(50));
            let t0 = std::time::Instant::now();
            let r = timer.bound(pin!(std::future::pending::<()>())).await;
            assert_eq!(r, Err(TimedOut));
            assert!(
                t0.elapsed() >= Duration::from_millis(45),
                "{:?}",
                t0.elapsed()
            );
        });
    }

    #[test]
    fn restart_pushes_the_deadline_back() {
        run(async {
            let mut timer = LazyTimer::new(Duration::from_millis(80));
            let t0 = std::time::Instant::now();
            // Restarted 50 ms in: the armed timer fires at 80 ms, finds the
            // deadline at ~130 ms and sleeps again.
            let r = timer
                .bound(pin!(tokio::time::sleep(Duration::from_millis(50))))
                .await;
            assert_eq!(r, Ok(()));
            timer.restart();
            let r = timer.bound(pin!(std::future::pending::<()>())).await;
            assert_eq!(r, Err(TimedOut));
            let took = t0.elapsed();
            assert!(took >= Duration::from_millis(120), "{took:?}");
            assert!(took < Duration::from_millis(1000), "{took:?}");
        });
    }
}
