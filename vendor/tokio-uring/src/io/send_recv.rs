//! A send and a receive on one connected socket, linked into one operation
//! (added for sluice, see SLUICE.md): a request written and its answer
//! awaited with one submission and one completion, so the task is woken
//! once, when the answer is there, instead of once for the send and again
//! for the receive.

use crate::buf::{BoundedBuf, BoundedBufMut};
use crate::io::SharedFd;
use crate::runtime::driver::op::{Completable, CqeResult, Op};
use crate::runtime::CONTEXT;
use std::io;

use super::recv::{poll_first_rejected, poll_first_works};

/// `IORING_RECVSEND_POLL_FIRST`, see `recv.rs`.
const IORING_RECVSEND_POLL_FIRST: u16 = 1;

pub(crate) struct SendRecv<S, R> {
    /// Holds a strong ref to the FD until both requests are over.
    #[allow(dead_code)]
    fd: SharedFd,
    send: S,
    recv: R,
}

/// What a linked send and receive did: the bytes received (after
/// everything was sent), or the error of whichever failed; and both
/// buffers back.
pub(crate) type SendRecvResult<S, R> = (io::Result<usize>, S, R);

impl<S: BoundedBuf, R: BoundedBufMut> Op<SendRecv<S, R>> {
    /// Only where [`can_link`] says so.
    pub(crate) fn send_recv(
        fd: &SharedFd,
        send: S,
        recv: R,
        poll_first: bool,
    ) -> io::Result<Op<SendRecv<S, R>>> {
        use io_uring::{opcode, types};

        CONTEXT.with(|x| {
            let handle = x.handle().expect("Not in a runtime context");
            let data = SendRecv {
                fd: fd.clone(),
                send,
                recv,
            };
            handle.submit_linked_op(data, |op| {
                let (sptr, slen) = (op.send.stable_ptr(), op.send.bytes_init());
                let (rptr, rlen) = (op.recv.stable_mut_ptr(), op.recv.bytes_total());
                // MSG_WAITALL: a short send would complete "successfully"
                // and let the receive start with part of the request
                // unsent; with it the kernel sends the rest itself, and
                // fails the send (cutting the link) otherwise.
                let flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
                let (send, mut recv) = match fd.fixed_slot() {
                    Some(slot) => (
                        opcode::Send::new(types::Fixed(slot), sptr, slen as _)
                            .flags(flags)
                            .build(),
                        opcode::Recv::new(types::Fixed(slot), rptr, rlen as _).build(),
                    ),
                    None => (
                        opcode::Send::new(types::Fd(fd.raw_fd()), sptr, slen as _)
                            .flags(flags)
                            .build(),
                        opcode::Recv::new(types::Fd(fd.raw_fd()), rptr, rlen as _).build(),
                    ),
                };
                if poll_first {
                    super::recv::set_ioprio(&mut recv, IORING_RECVSEND_POLL_FIRST);
                }
                (send, recv)
            })
        })
    }
}

impl<S, R: BoundedBufMut> Completable for SendRecv<S, R> {
    type Output = SendRecvResult<S, R>;

    /// The one completion is the receive's when the send succeeded, else
    /// the send's error (the kernel says no more than the errno).
    fn complete(self, cqe: CqeResult) -> Self::Output {
        let mut recv = self.recv;
        let result = cqe.result.map(|n| n as usize);
        if let Ok(n) = result {
            // Safety: the kernel wrote `n` bytes to the buffer.
            unsafe { recv.set_init(n) };
        }
        (result, self.send, recv)
    }
}

/// Whether this thread's ring can link a send and a receive so
/// (`IOSQE_CQE_SKIP_SUCCESS`, Linux 5.17).
fn can_link() -> bool {
    CONTEXT.with(|x| x.handle().is_some_and(|h| h.skips_cqe_on_success()))
}

/// Sends all of `send` on the connected socket, then receives into
/// `recv`, as one linked operation where the kernel can (else one after
/// the other); with `poll_first`, the receive is hinted that no data is
/// waiting yet (see `recv`).
///
/// Panics, like `recv`, if the submission queue cannot be flushed.
pub(crate) async fn send_recv<S: BoundedBuf, R: BoundedBufMut>(
    socket: &crate::io::Socket,
    send: S,
    recv: R,
    poll_first: bool,
) -> SendRecvResult<S, R> {
    let fd = &socket.fd;
    let hint = poll_first && poll_first_works();
    if !can_link() {
        let (sent, send) = socket.write_all(send).await;
        if let Err(e) = sent {
            return (Err(e), send, recv);
        }
        let (received, recv) = super::recv(fd, recv, poll_first).await;
        return (received, send, recv);
    }
    let (received, send, recv) = Op::send_recv(fd, send, recv, hint).unwrap().await;
    match received {
        // A kernel without the hint (5.17, 5.18) fails the receive with
        // EINVAL, after the send went out: a send on a connected TCP
        // socket fails EINVAL only for bad flags, and these are always
        // taken. So only the receive is done again, without the hint.
        Err(e) if hint && e.raw_os_error() == Some(libc::EINVAL) => {
            poll_first_rejected();
            let (received, recv) = super::recv(fd, recv, false).await;
            (received, send, recv)
        }
        received => (received, send, recv),
    }
}
