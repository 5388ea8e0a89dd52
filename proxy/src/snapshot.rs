//! The route table snapshot: the one thing workers share, and how a reload
//! reaches them without a lock or a contended counter on the request path.
//!
//! [`Shared`] holds the current table and a generation number; a reload
//! stores a new table and bumps the generation. Each worker keeps its own
//! [`Local`] copy: an `Rc` around the table's `Arc` plus the worker's lookup
//! scratch for that table. A request calls [`Local::current`], which reads
//! the generation (an atomic load of a line that is written only on reload)
//! and hands out an `Rc` clone — a non-atomic increment that no other core
//! touches. A request keeps its `Rc` until it ends, so in-flight requests
//! finish on the table they started with while new ones use the new table.
//!
//! # Invariants
//!
//! * A [`Snapshot`]'s scratch belongs to its table (lazy-DFA caches are
//!   per table), so they are created and dropped together.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use route_compiler::automaton::Scratch;
use route_compiler::table::Table;

/// The process-wide current table.
#[derive(Debug)]
pub struct Shared {
    table: ArcSwap<Table>,
    generation: AtomicU64,
}

impl Shared {
    /// Starts with `table` as generation 0.
    pub fn new(table: Arc<Table>) -> Shared {
        Shared {
            table: ArcSwap::new(table),
            generation: AtomicU64::new(0),
        }
    }

    /// Makes `table` current for every request that starts from now on;
    /// returns the new generation.
    pub fn store(&self, table: Arc<Table>) -> u64 {
        self.table.store(table);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The current table (for the admin listener; not for the request path).
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// One worker's view of a table: the table and the worker's scratch for it.
#[derive(Debug)]
pub struct Snapshot {
    /// The table.
    pub table: Arc<Table>,
    /// Lookup scratch for this table, this worker only.
    pub scratch: RefCell<Scratch>,
    generation: u64,
}

/// A worker's current snapshot.
#[derive(Debug)]
pub struct Local {
    shared: Arc<Shared>,
    current: RefCell<Rc<Snapshot>>,
}

impl Local {
    /// A worker's view of `shared`.
    pub fn new(shared: Arc<Shared>) -> Local {
        let current = RefCell::new(Rc::new(snapshot(&shared)));
        Local { shared, current }
    }

    /// The snapshot a new request should use.
    pub fn current(&self) -> Rc<Snapshot> {
        let generation = self.shared.generation();
        let mut current = self.current.borrow_mut();
        if current.generation != generation {
            *current = Rc::new(snapshot(&self.shared));
        }
        Rc::clone(&current)
    }
}

fn snapshot(shared: &Shared) -> Snapshot {
    // Read the generation first: if a reload lands in between, the next
    // request sees a newer generation and refreshes again.
    let generation = shared.generation();
    let table = shared.table();
    Snapshot {
        scratch: RefCell::new(table.scratch()),
        table,
        generation,
    }
}
