//! A worker's keep-alive pool of backend connections, keyed by address.
//!
//! Not shared across workers: each worker owns one, so taking and returning
//! a connection is a `RefCell` borrow, never a lock.
//!
//! # Invariants
//!
//! * A pooled connection has no unread bytes and has finished a whole
//!   response; the borrow of the map is never held across an `await`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use crate::clock::coarse_ms;
use crate::io::Conn;

/// Keyed by backend addresses from the route table: a fast hasher.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Most idle connections kept per backend address. An h2c client
/// connection can have up to 256 streams (and a worker many such
/// connections) each holding one HTTP/1.1 backend connection at a time; a
/// bound below the streams in flight makes every burst close and reconnect
/// the excess (a TCP connect and close per request under load).
pub const DEFAULT_MAX_IDLE_PER_ADDR: usize = 1024;

/// How long an idle connection is kept (backends commonly close after 60 s;
/// staying below that avoids most races with their close).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// [`DEFAULT_IDLE_TIMEOUT`] on the coarse clock the pool keeps time by
/// (expiry needs seconds, and the precise clock is read twice a request).
const IDLE_TIMEOUT_MS: u64 = DEFAULT_IDLE_TIMEOUT.as_secs() * 1000;

#[derive(Debug)]
struct Idle {
    conn: Conn,
    /// When it went idle, in [`coarse_ms`].
    since_ms: u64,
}

impl Idle {
    /// Whether it has been idle too long at `now` ([`coarse_ms`]).
    fn expired(&self, now: u64) -> bool {
        now.saturating_sub(self.since_ms) >= IDLE_TIMEOUT_MS
    }
}

/// Idle backend connections of one worker.
#[derive(Debug, Default)]
pub struct Pool {
    idle: RefCell<HashMap<SocketAddr, Vec<Idle>>>,
}

impl Pool {
    /// The most recently returned live connection to `addr`, if any.
    pub fn take(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        let now = coarse_ms();
        while let Some(entry) = list.pop() {
            if !entry.expired(now) {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Keeps `conn` for reuse (dropped when over the bound or when it has
    /// unread bytes).
    pub fn put(&self, addr: SocketAddr, conn: Conn) {
        if !conn.pending().is_empty() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        // Entries are pushed in time order: the expired ones are a prefix,
        // usually empty, so it is walked from the front (one comparison in
        // the common case; each expired entry is walked once, when it goes).
        let now = coarse_ms();
        let expired = list.iter().take_while(|e| e.expired(now)).count();
        if expired > 0 {
            list.drain(..expired);
        }
        if list.len() < DEFAULT_MAX_IDLE_PER_ADDR {
            list.push(Idle {
                conn,
                since_ms: now,
            });
        }
    }

    /// Idle connections to `addr` (for tests and metrics).
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        self.idle.borrow().get(&addr).map_or(0, Vec::len)
    }
}
