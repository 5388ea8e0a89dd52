//! Buffered connections over io_uring sockets, and the per-worker pool of
//! read buffers.
//!
//! tokio-uring takes ownership of a buffer while the kernel fills or drains
//! it, so a [`Conn`] moves its buffer into each operation and takes it back
//! afterwards. If an operation is cancelled (a timeout), the buffer is lost
//! with it and the connection must be closed: callers do so.

use std::cell::RefCell;
use std::io;

use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

pub mod compat;

/// Size of a full read buffer (a backend connection's, or a client
/// connection's while a large head is read); also the largest head
/// accepted (a larger request head is answered with 431).
pub const DEFAULT_BUFFER_SIZE: usize = 16 * 1024;

/// Most idle buffers of each size a worker keeps for reuse.
pub const DEFAULT_MAX_POOLED_BUFFERS: usize = 1024;

/// Size of the buffer a connection reads a streamed body through
/// ([`Conn::fill_body`]; at least the full size). A loopback TCP segment
/// carries up to 64 KiB: reading a large body 16 KiB at a time took four
/// receives and four sends per segment (a 1 MiB response cost ~25 % more
/// CPU, `bench/ab.sh --load big`).
pub const BODY_BUFFER_SIZE: usize = 64 * 1024;

/// Most idle body buffers a worker keeps for reuse (16 MiB).
pub const DEFAULT_MAX_POOLED_BODY_BUFFERS: usize = 256;

/// Size of the small buffer a client connection reads into while it waits
/// for a request: an idle keep-alive connection pins only this much. A head
/// that does not fit, or a body that streams, moves the connection to a
/// full pooled buffer ([`Conn::grow`]), given back between requests
/// ([`Conn::shrink`]).
pub const SMALL_BUFFER_SIZE: usize = 1024;

// === impl BufPool ===

/// A worker's free lists of read buffers (not shared across threads):
/// full-size ones, [small](SMALL_BUFFER_SIZE) ones for idle client
/// connections, and [body](BODY_BUFFER_SIZE) ones for streamed bodies.
#[derive(Debug)]
pub struct BufPool {
    size: usize,
    free: RefCell<Vec<Vec<u8>>>,
    small: RefCell<Vec<Vec<u8>>>,
    body: RefCell<Vec<Vec<u8>>>,
}

impl BufPool {
    /// A pool of buffers of `size` bytes.
    pub fn new(size: usize) -> BufPool {
        BufPool {
            size,
            free: RefCell::new(Vec::new()),
            small: RefCell::new(Vec::new()),
            body: RefCell::new(Vec::new()),
        }
    }

    /// The capacity of the pool's full-size buffers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The capacity of its small buffers (never more than the full size).
    pub fn small_size(&self) -> usize {
        SMALL_BUFFER_SIZE.min(self.size)
    }

    /// An empty small buffer.
    pub fn get_small(&self) -> Vec<u8> {
        take_or_new(&self.small, self.small_size())
    }

    /// The capacity of its body buffers (never less than the full size).
    pub fn body_size(&self) -> usize {
        BODY_BUFFER_SIZE.max(self.size)
    }

    /// An empty buffer with the pool's capacity.
    pub fn get(&self) -> Vec<u8> {
        take_or_new(&self.free, self.size)
    }

    /// An empty body buffer.
    pub fn get_body(&self) -> Vec<u8> {
        take_or_new(&self.body, self.body_size())
    }

    /// Returns a buffer (body, full-size or small) for reuse.
    pub fn put(&self, mut buf: Vec<u8>) {
        let (free, bound) = if buf.capacity() >= self.body_size() {
            (&self.body, DEFAULT_MAX_POOLED_BODY_BUFFERS)
        } else if buf.capacity() >= self.size {
            (&self.free, DEFAULT_MAX_POOLED_BUFFERS)
        } else if buf.capacity() >= self.small_size() {
            (&self.small, DEFAULT_MAX_POOLED_BUFFERS)
        } else {
            return;
        };
        let mut free = free.borrow_mut();
        if free.len() < bound {
            buf.clear();
            free.push(buf);
        }
    }
}

/// A buffer from `free`, or a new one of `size` bytes if it is empty.
fn take_or_new(free: &RefCell<Vec<Vec<u8>>>, size: usize) -> Vec<u8> {
    free.borrow_mut()
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(size))
}

/// When the head a read waits for is expected to arrive: how the kernel
/// should receive it ([`Conn::fill_head`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Not yet: the peer has still to send it (a keep-alive client's next
    /// request; the answer to a request the HTTP/1.1 loop has just
    /// written). The kernel polls first.
    Later,
    /// Probably queued already: an HTTP/2 stream reads its backend's
    /// answer after its connection has served other streams (under load
    /// the answer was there for ~9 in 10 such reads). The kernel receives
    /// at once.
    Soon,
}

// === impl Conn ===

/// A TCP connection with a bounded read buffer.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("pending", &self.buf.len().saturating_sub(self.pos))
            .field("capacity", &self.buf.capacity())
            .finish()
    }
}

impl Conn {
    /// Wraps `stream`, reading into `buf` (its capacity is the bound).
    pub fn new(stream: TcpStream, mut buf: Vec<u8>) -> Conn {
        buf.clear();
        Conn {
            stream,
            buf,
            pos: 0,
        }
    }

    /// Wraps `stream` whose first bytes were already read into `buf` (they
    /// are the first pending bytes; the capacity of `buf` is the bound).
    pub fn with_pending(stream: TcpStream, buf: Vec<u8>) -> Conn {
        Conn {
            stream,
            buf,
            pos: 0,
        }
    }

    /// Moves the pending bytes to a full-size buffer of `pool` if the
    /// current one is smaller (a head that did not fit the small buffer, or
    /// a body that streams); the small buffer goes back to the pool.
    pub fn grow(&mut self, pool: &BufPool) {
        if self.buf.capacity() < pool.size() {
            self.replace_buffer(pool, pool.get());
        }
    }

    /// Gives a larger buffer back to `pool` when its pending bytes fit a
    /// small one (between requests: an idle connection pins only a small
    /// buffer).
    pub fn shrink(&mut self, pool: &BufPool) {
        let small = pool.small_size();
        if self.buf.capacity() > small && self.pending().len() <= small {
            self.replace_buffer(pool, pool.get_small());
        }
    }

    /// Gives a body buffer back to `pool` when its pending bytes fit a
    /// full-size one (a backend connection going back to its pool: it
    /// reads heads through a full-size buffer).
    pub fn shrink_to_full(&mut self, pool: &BufPool) {
        let size = pool.size();
        if self.buf.capacity() > size && self.pending().len() <= size {
            self.replace_buffer(pool, pool.get());
        }
    }

    /// Moves the pending bytes into `buf` and gives the current buffer
    /// back to `pool`.
    fn replace_buffer(&mut self, pool: &BufPool, mut buf: Vec<u8>) {
        buf.extend_from_slice(self.pending());
        self.pos = 0;
        pool.put(std::mem::replace(&mut self.buf, buf));
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Bytes read but not consumed yet.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Marks `n` pending bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.pos = 0;
            self.buf.clear();
        }
    }

    /// The read buffer's capacity (the most bytes that can be pending).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether the buffer holds nothing but unconsumed bytes: reading more
    /// is impossible until some are consumed.
    pub fn is_full(&self) -> bool {
        self.pos == 0 && self.buf.len() >= self.buf.capacity()
    }

    /// Reads more bytes after the pending ones; `Ok(0)` at end of stream.
    ///
    /// # Errors
    ///
    /// The socket's error, or `OutOfMemory` when the buffer is full.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.fill_with(false).await
    }

    /// [`fill`](Self::fill) for a message head: the next request of a
    /// keep-alive client, a backend's answer to a request. When nothing is
    /// pending and the head is expected [later](Arrival::Later), the kernel
    /// is told to wait for data before receiving instead of first trying a
    /// receive that fails (`IORING_RECVSEND_POLL_FIRST`: one socket lock
    /// and unlock fewer per request and side). Not for bodies: there the
    /// next bytes are usually already queued, and polling first would only
    /// delay them.
    ///
    /// # Errors
    ///
    /// As for [`fill`](Self::fill).
    pub async fn fill_head(&mut self, arrival: Arrival) -> io::Result<usize> {
        let poll_first = arrival == Arrival::Later && self.pos == self.buf.len();
        self.fill_with(poll_first).await
    }

    /// [`fill`](Self::fill) for a streamed body: reads through a
    /// [body buffer](BODY_BUFFER_SIZE) of `pool` (taken here if the
    /// current buffer is smaller; given back by [`shrink`](Self::shrink)
    /// or [`shrink_to_full`](Self::shrink_to_full)).
    ///
    /// # Errors
    ///
    /// As for [`fill`](Self::fill).
    pub async fn fill_body(&mut self, pool: &BufPool) -> io::Result<usize> {
        if self.buf.capacity() < pool.body_size() {
            self.replace_buffer(pool, pool.get_body());
        }
        self.fill_with(false).await
    }

    async fn fill_with(&mut self, poll_first: bool) -> io::Result<usize> {
        if self.pos > 0 && self.buf.len() == self.buf.capacity() {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
            self.pos = 0;
        }
        if self.is_full() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "read buffer full",
            ));
        }
        let buf = std::mem::take(&mut self.buf);
        let (len, cap) = (buf.len(), buf.capacity());
        let (result, slice) = if poll_first {
            self.stream.recv_poll_first(buf.slice(len..cap)).await
        } else {
            self.stream.read(buf.slice(len..cap)).await
        };
        self.buf = slice.into_inner();
        result
    }

    /// Writes all of `data`, giving the buffer back.
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub async fn write_all(&self, data: &mut Vec<u8>) -> io::Result<()> {
        write_all(&self.stream, data).await
    }

    /// Writes the first `n` pending bytes to `to` (no copy) and consumes
    /// them.
    ///
    /// # Errors
    ///
    /// The socket's error on `to`.
    pub async fn forward_pending(&mut self, n: usize, to: &TcpStream) -> io::Result<()> {
        let n = n.min(self.buf.len().saturating_sub(self.pos));
        let buf = std::mem::take(&mut self.buf);
        let (result, slice) = to.write_all(buf.slice(self.pos..self.pos + n)).await;
        self.buf = slice.into_inner();
        result?;
        self.consume(n);
        Ok(())
    }

    /// The socket and the read buffer, for a caller that drives both
    /// itself (the upgrade tunnel). The pending bytes are moved to the front
    /// first, so the buffer holds exactly them; the caller may then reuse
    /// the buffer freely (its capacity is kept).
    pub fn parts_mut(&mut self) -> (&TcpStream, &mut Vec<u8>) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        (&self.stream, &mut self.buf)
    }

    /// Gives the read buffer back (for the pool).
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

/// Writes all of `data` to `stream`; `data` is taken for the operation and
/// put back unchanged afterwards (lost if the write is cancelled).
///
/// # Errors
///
/// The socket's error.
pub async fn write_all(stream: &TcpStream, data: &mut Vec<u8>) -> io::Result<()> {
    let owned = std::mem::take(data);
    let (result, owned) = stream.write_all(owned).await;
    *data = owned;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_buffer_goes_back_to_its_own_size_class() {
        let pool = BufPool::new(DEFAULT_BUFFER_SIZE);
        let (small, full, body) = (pool.get_small(), pool.get(), pool.get_body());
        assert_eq!(small.capacity(), SMALL_BUFFER_SIZE);
        assert_eq!(full.capacity(), DEFAULT_BUFFER_SIZE);
        assert_eq!(body.capacity(), BODY_BUFFER_SIZE);
        let body_ptr = body.as_ptr();
        pool.put(body);
        pool.put(full);
        pool.put(small);
        // A body buffer never comes back as a full-size one: the head
        // bound of a connection is its full buffer.
        assert_eq!(pool.get().capacity(), DEFAULT_BUFFER_SIZE);
        assert_eq!(pool.get_small().capacity(), SMALL_BUFFER_SIZE);
        let again = pool.get_body();
        assert_eq!(again.as_ptr(), body_ptr);
    }

    #[test]
    fn body_buffers_are_at_least_full_size_and_bounded_in_the_pool() {
        let pool = BufPool::new(4 * BODY_BUFFER_SIZE);
        assert_eq!(pool.body_size(), 4 * BODY_BUFFER_SIZE);
        let pool = BufPool::new(DEFAULT_BUFFER_SIZE);
        let many: Vec<_> = (0..DEFAULT_MAX_POOLED_BODY_BUFFERS + 10)
            .map(|_| pool.get_body())
            .collect();
        for buf in many {
            pool.put(buf);
        }
        assert_eq!(pool.body.borrow().len(), DEFAULT_MAX_POOLED_BODY_BUFFERS);
    }
}
