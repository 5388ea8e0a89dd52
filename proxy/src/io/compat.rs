//! An adapter from tokio-uring's owned-buffer [`TcpStream`] to tokio's
//! poll-based [`AsyncRead`] + [`AsyncWrite`], so that the `h2` crate can run
//! over io_uring (no second, epoll-registered socket).
//!
//! # Buffer ownership
//!
//! io_uring reads into and writes from memory the kernel owns until the
//! operation completes, so tokio-uring takes each buffer *by value* and gives
//! it back with the result. A [`Stream`] therefore owns exactly two buffers:
//!
//! * a **read buffer** of [`DEFAULT_READ_BUFFER`] bytes. While a read is in
//!   flight the buffer lives inside the pending operation; when it completes
//!   the buffer comes back holding the bytes read, and `poll_read` copies them
//!   out into the caller's [`ReadBuf`] until it is drained. Only then is the
//!   next read submitted. The bytes sniffed before the protocol was known
//!   (the HTTP/2 preface) are handed in as the initial contents.
//! * a **write buffer** of at most [`DEFAULT_WRITE_BUFFER`] bytes.
//!   `poll_write` copies up to that many bytes of the caller's data into it,
//!   submits one `write_all` and reports the bytes as written. While that
//!   write is in flight the buffer is inside the operation.
//!
//! If the [`Stream`] is dropped with an operation in flight, tokio-uring
//! keeps the buffer alive until the kernel is done with it; nothing is
//! freed early.
//!
//! # Back-pressure
//!
//! At most one read and one write are in flight. `poll_write` returns
//! `Pending` while the previous write has not completed, so a slow peer
//! stops the writer after at most [`DEFAULT_WRITE_BUFFER`] bytes; the
//! caller's own buffers (h2's send buffers, bounded by flow control) are the
//! only other place data can wait. Reads are only submitted when the caller
//! polls for more and the read buffer is empty, so a caller that stops
//! reading stops the socket being read (TCP flow control takes over).
//!
//! # Invariants
//!
//! * `read_op.is_some()` ⇔ the read buffer is inside the kernel operation
//!   (`read_buf` is then an empty placeholder); same for `write_op`.
//! * `read_pos <= read_buf.len()`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_uring::net::TcpStream;

/// Bytes read from the socket per read operation.
pub const DEFAULT_READ_BUFFER: usize = 16 * 1024;

/// Most bytes accepted by one `poll_write` (one write operation in flight).
pub const DEFAULT_WRITE_BUFFER: usize = 64 * 1024;

type ReadOp = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>)>>>;
type WriteOp = Pin<Box<dyn Future<Output = (io::Result<()>, Vec<u8>)>>>;

// === impl Stream ===

/// A tokio-uring TCP stream usable as [`AsyncRead`] + [`AsyncWrite`].
pub struct Stream {
    inner: Rc<TcpStream>,
    read_buf: Vec<u8>,
    read_pos: usize,
    read_op: Option<ReadOp>,
    write_buf: Vec<u8>,
    write_op: Option<WriteOp>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("buffered", &(self.read_buf.len() - self.read_pos))
            .field("reading", &self.read_op.is_some())
            .field("writing", &self.write_op.is_some())
            .finish()
    }
}

impl Stream {
    /// Wraps `stream`; `initial` holds bytes already read from it (they are
    /// returned first). `initial`'s allocation is reused as the read buffer
    /// when it is large enough.
    pub fn new(stream: TcpStream, mut initial: Vec<u8>) -> Stream {
        if initial.capacity() < DEFAULT_READ_BUFFER {
            initial.reserve_exact(DEFAULT_READ_BUFFER - initial.len());
        }
        Stream {
            inner: Rc::new(stream),
            read_buf: initial,
            read_pos: 0,
            read_op: None,
            write_buf: Vec::with_capacity(DEFAULT_WRITE_BUFFER),
            write_op: None,
        }
    }

    /// The socket.
    pub fn socket(&self) -> &TcpStream {
        &self.inner
    }

    /// A shared handle to the socket, to write to it after the stream was
    /// given away (the socket closes when the last handle is dropped).
    pub fn socket_handle(&self) -> Rc<TcpStream> {
        Rc::clone(&self.inner)
    }

    fn poll_write_op(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(op) = self.write_op.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let (result, mut buf) = ready!(op.as_mut().poll(cx));
        self.write_op = None;
        buf.clear();
        self.write_buf = buf;
        Poll::Ready(result)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let buffered = &this.read_buf[this.read_pos..];
            if !buffered.is_empty() {
                let n = buffered.len().min(out.remaining());
                out.put_slice(&buffered[..n]);
                this.read_pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.read_op.is_none() {
                let mut buf = std::mem::take(&mut this.read_buf);
                buf.clear();
                this.read_pos = 0;
                let stream = Rc::clone(&this.inner);
                this.read_op = Some(Box::pin(async move { stream.read(buf).await }));
            }
            let Some(op) = this.read_op.as_mut() else {
                continue;
            };
            let (result, buf) = ready!(op.as_mut().poll(cx));
            this.read_op = None;
            this.read_buf = buf;
            this.read_pos = 0;
            match result {
                // End of stream: nothing put into `out`.
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_write_op(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(DEFAULT_WRITE_BUFFER);
        let mut buf = std::mem::take(&mut this.write_buf);
        buf.clear();
        buf.extend_from_slice(&data[..n]);
        let stream = Rc::clone(&this.inner);
        this.write_op = Some(Box::pin(async move { stream.write_all(buf).await }));
        // Submit now; completion is collected by the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_write_op(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_op(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_op(cx))?;
        match this.inner.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}
