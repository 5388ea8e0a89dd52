//! Registered files (added for sluice, see SLUICE.md).
//!
//! When its ring is built, the driver registers a sparse file table
//! ([`FileTable::register`]). A TCP stream (accepted, connected, or made
//! from a std stream) is then put into a free slot of it
//! ([`FileTable::install`]), and its receives and sends name the slot
//! (`IOSQE_FIXED_FILE`) instead of its fd, which saves the kernel's
//! `fget`/`fput` per operation. Everything else, including the fd's owner
//! passing the raw fd to `setsockopt`, `shutdown` or eBPF maps, keeps
//! using the fd, which stays open as before.
//!
//! If the table cannot be registered (kernels before 5.19 have no sparse
//! registration) or no slot is free, streams use their plain fd. Kernels
//! before 6.13 get no table either: there a cleared slot's file was only
//! released once every request issued before the clear on a registered
//! file had completed (one ordered list of resource nodes per ring), so a
//! receive waiting on an idle keep-alive connection would hold back the
//! close of other sockets.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::rc::Rc;

use io_uring::IoUring;

/// The most slots a ring's table has (each costs the kernel ~8 bytes).
/// The kernel also refuses a table larger than `RLIMIT_NOFILE`.
const MAX_SLOTS: u32 = 65_536;

/// `IORING_REGISTER_FILES_UPDATE`, from the kernel's `io_uring.h`.
const IORING_REGISTER_FILES_UPDATE: libc::c_uint = 6;

/// `struct io_uring_files_update`, from the kernel's `io_uring.h`.
#[repr(C)]
struct FilesUpdate {
    offset: u32,
    resv: u32,
    fds: u64,
}

/// One ring's registered file table and its free slots.
pub(crate) struct FileTable {
    /// The ring's fd; only used while `open`.
    ring_fd: RawFd,
    /// Whether the ring is still open (cleared by the driver's drop).
    open: Cell<bool>,
    /// Number of slots registered.
    size: u32,
    /// Slots below this have been handed out at least once.
    next: Cell<u32>,
    /// Slots handed out and given back (cleared).
    free: RefCell<Vec<u32>>,
}

/// A slot of a [`FileTable`] that holds a stream's file. Dropping it
/// clears the slot (the kernel drops its reference to the file) and gives
/// the slot back.
pub(crate) struct FixedSlot {
    table: Rc<FileTable>,
    index: u32,
}

impl FileTable {
    /// Registers a sparse table of `min(RLIMIT_NOFILE, 65,536)` slots with
    /// `ring`; `None` on kernels before 6.13 or if the kernel refuses it.
    pub(crate) fn register(ring: &IoUring) -> Option<Rc<FileTable>> {
        if !releases_per_slot() {
            return None;
        }
        let size = table_size();
        if size == 0 {
            return None;
        }
        ring.submitter().register_files_sparse(size).ok()?;
        Some(Rc::new(FileTable {
            ring_fd: ring.as_raw_fd(),
            open: Cell::new(true),
            size,
            next: Cell::new(0),
            free: RefCell::new(Vec::new()),
        }))
    }

    /// Called when the ring is about to close: slots are not touched any
    /// more (closing the ring drops the kernel's references to the files).
    pub(crate) fn detach(&self) {
        self.open.set(false);
    }

    /// Puts `fd` into a free slot; `None` if there is none or the kernel
    /// refuses (the caller then uses the plain fd).
    ///
    /// Invariant: a slot is cleared before the fd it was filled from is
    /// closed (the owner drops its [`FixedSlot`] first: `SharedFd`'s close
    /// and drop), and only cleared slots are handed out again. So a slot
    /// never refers to a file whose fd number has been closed (and maybe
    /// reused for another file), and a registered file never keeps a
    /// closed socket open: the kernel's slot holds its own reference to
    /// the file, which clearing drops.
    pub(crate) fn install(self: &Rc<Self>, fd: RawFd) -> Option<FixedSlot> {
        if !self.open.get() {
            return None;
        }
        let index = match self.free.borrow_mut().pop() {
            Some(index) => index,
            None => {
                let next = self.next.get();
                if next >= self.size {
                    return None;
                }
                self.next.set(next + 1);
                next
            }
        };
        match files_update(self.ring_fd, index, fd) {
            Ok(()) => Some(FixedSlot {
                table: self.clone(),
                index,
            }),
            Err(_) => {
                // The slot was left empty.
                self.free.borrow_mut().push(index);
                None
            }
        }
    }
}

impl FixedSlot {
    /// The slot's index, for `types::Fixed`.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }
}

impl Drop for FixedSlot {
    fn drop(&mut self) {
        let table = &self.table;
        if !table.open.get() {
            return;
        }
        // A slot that could not be cleared is not handed out again.
        if files_update(table.ring_fd, self.index, -1).is_ok() {
            table.free.borrow_mut().push(self.index);
        }
    }
}

/// `io_uring_register(IORING_REGISTER_FILES_UPDATE)` of one slot, what
/// io-uring's `Submitter::register_files_update` does. Called directly
/// because a slot is cleared from `SharedFd`'s drop, which can run while
/// the driver is borrowed (an operation's data dropped on completion), so
/// its `Submitter` is out of reach there.
fn files_update(ring_fd: RawFd, index: u32, fd: RawFd) -> io::Result<()> {
    let fds = [fd];
    let update = FilesUpdate {
        offset: index,
        resv: 0,
        fds: fds.as_ptr() as u64,
    };
    loop {
        // SAFETY: `update` and the fd array it points to outlive the call;
        // the kernel reads one fd from it (`nr_args` 1).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring_fd,
                IORING_REGISTER_FILES_UPDATE,
                &update as *const FilesUpdate,
                1 as libc::c_uint,
            )
        };
        match rc {
            1 => return Ok(()),
            0 => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
            _ => {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(e);
                }
            }
        }
    }
}

/// `min(RLIMIT_NOFILE soft limit, MAX_SLOTS)`.
fn table_size() -> u32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to write to.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return MAX_SLOTS;
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return MAX_SLOTS;
    }
    limit.rlim_cur.min(MAX_SLOTS as libc::rlim_t) as u32
}

/// Whether the running kernel is 6.13 or later, where each registered file
/// has its own reference count: clearing a slot releases the file as soon as
/// the requests on that file are done.
fn releases_per_slot() -> bool {
    // SAFETY: `uname` fills the zeroed struct it is given.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return false;
    }
    // SAFETY: `release` is NUL-terminated by `uname`.
    let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) };
    let release = release.to_string_lossy();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (6, 13),
        _ => false,
    }
}
