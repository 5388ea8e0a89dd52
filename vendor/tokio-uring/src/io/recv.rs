//! `IORING_OP_RECV` on a connected socket (added for sluice, see SLUICE.md).

use crate::buf::BoundedBufMut;
use crate::io::SharedFd;
use crate::BufResult;

use crate::runtime::driver::op::{Completable, CqeResult, Op};
use crate::runtime::CONTEXT;
use std::cell::Cell;
use std::io;

/// `IORING_RECVSEND_POLL_FIRST` (Linux 5.19): the SQE's `ioprio` flag that
/// tells the kernel the socket is most likely empty, so it arms its poll
/// handler at once instead of first trying a receive that fails with
/// `EAGAIN`.
const IORING_RECVSEND_POLL_FIRST: u16 = 1;

thread_local! {
    /// Whether this thread's ring accepted `IORING_RECVSEND_POLL_FIRST`
    /// (older kernels answer `EINVAL`; the hint is then left off).
    static POLL_FIRST_WORKS: Cell<bool> = const { Cell::new(true) };
}

pub(crate) struct Recv<T> {
    /// Holds a strong ref to the FD, preventing the file from being closed
    /// while the operation is in-flight.
    #[allow(dead_code)]
    fd: SharedFd,

    /// Reference to the in-flight buffer.
    pub(crate) buf: T,
}

impl<T: BoundedBufMut> Op<Recv<T>> {
    pub(crate) fn recv(fd: &SharedFd, buf: T, poll_first: bool) -> io::Result<Op<Recv<T>>> {
        use io_uring::{opcode, types};

        CONTEXT.with(|x| {
            x.handle().expect("Not in a runtime context").submit_op(
                Recv {
                    fd: fd.clone(),
                    buf,
                },
                |recv| {
                    let ptr = recv.buf.stable_mut_ptr();
                    let len = recv.buf.bytes_total();
                    // The registered file if the fd has a slot (sluice).
                    let mut sqe = match fd.fixed_slot() {
                        Some(slot) => opcode::Recv::new(types::Fixed(slot), ptr, len as _).build(),
                        None => opcode::Recv::new(types::Fd(fd.raw_fd()), ptr, len as _).build(),
                    };
                    if poll_first {
                        set_ioprio(&mut sqe, IORING_RECVSEND_POLL_FIRST);
                    }
                    sqe
                },
            )
        })
    }
}

/// Sets the `ioprio` field of `sqe`, which io-uring 0.6's `Recv` builder
/// does not expose.
fn set_ioprio(sqe: &mut io_uring::squeue::Entry, ioprio: u16) {
    const _: () = assert!(std::mem::size_of::<io_uring::squeue::Entry>() == 64);
    let sqe = sqe as *mut io_uring::squeue::Entry as *mut u8;
    // SAFETY: `Entry` is `#[repr(C)]` around `struct io_uring_sqe`, a
    // 64-byte kernel ABI struct (asserted above) that begins `__u8 opcode;
    // __u8 flags; __u16 ioprio;`: bytes 2..4 are `ioprio`, in bounds and
    // owned through the unique borrow; `write_unaligned` needs no alignment.
    unsafe { std::ptr::write_unaligned(sqe.add(2) as *mut u16, ioprio) };
}

impl<T> Completable for Recv<T>
where
    T: BoundedBufMut,
{
    type Output = BufResult<usize, T>;

    fn complete(self, cqe: CqeResult) -> Self::Output {
        let res = cqe.result.map(|v| v as usize);
        let mut buf = self.buf;
        if let Ok(n) = res {
            // Safety: the kernel wrote `n` bytes to the buffer.
            unsafe {
                buf.set_init(n);
            }
        }
        (res, buf)
    }
}

/// Receives into `buf` from the connected socket `fd`; with `poll_first`,
/// hints that no data is waiting yet (the hint is dropped for good on this
/// thread if the kernel rejects it).
///
/// Like this crate's `read`, it panics if the submission queue is full and
/// cannot be flushed to the kernel: the driver already retries `EBUSY`
/// (after reaping completions) and `EINTR`, so what is left is an
/// `io_uring_enter` error that leaves the ring unusable, and the caller's
/// buffer is inside the operation that could not be queued.
pub(crate) async fn recv<T: BoundedBufMut>(
    fd: &SharedFd,
    buf: T,
    poll_first: bool,
) -> BufResult<usize, T> {
    let hint = poll_first && POLL_FIRST_WORKS.with(Cell::get);
    let (res, buf) = Op::recv(fd, buf, hint).unwrap().await;
    match res {
        Err(e) if hint && e.raw_os_error() == Some(libc::EINVAL) => {
            POLL_FIRST_WORKS.with(|w| w.set(false));
            Op::recv(fd, buf, false).unwrap().await
        }
        res => (res, buf),
    }
}
