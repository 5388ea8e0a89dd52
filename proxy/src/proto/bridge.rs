//! Bodies between the two protocols: an HTTP/1.1 connection's body into an
//! HTTP/2 stream, an HTTP/2 stream into an HTTP/1.1 connection or into
//! another HTTP/2 stream, always within the HTTP/2 flow-control windows.
//!
//! Used by [`crate::proto::h2`] (h2 clients to HTTP/1.1 and h2c backends)
//! and [`crate::proto::h1`] (HTTP/1.1 clients to h2c backends).
//!
//! ```text
//! Conn ──copy_length / copy_chunked / copy_until_close──▶ SendStream   (send_all: poll_capacity)
//! RecvStream ──pump──▶ SendStream                                       (release_capacity once handed on)
//! RecvStream ──copy_to_h1──▶ TcpStream (raw or chunked, trailers as chunked trailers)
//! ```
//!
//! # Memory
//!
//! Nothing is buffered beyond one read buffer or one window: DATA received
//! is acknowledged (`release_capacity`) only once it was written on, and
//! DATA is only sent as the peer's window allows (`poll_capacity`).

use std::future::poll_fn;

use bytes::{Bytes, BytesMut};
use h2::{Reason, RecvStream, SendStream};
use http::HeaderMap;
use tokio_uring::net::TcpStream;

use crate::codec::h1::{self, ChunkedDecoder};
use crate::error::{Error, Kind};
use crate::io::{self, BufPool, Conn};
use crate::mirror::Tee;

/// Largest DATA payload sent per read from an HTTP/1.1 connection.
pub const BODY_CHUNK: usize = 16 * 1024;

/// Which side a copy failed on.
#[derive(Debug)]
pub enum CopyError {
    /// Reading (or decoding) the source failed: the error names the culprit.
    Read(Error),
    /// The destination stream or connection is gone.
    Write,
}

/// Who is blamed when an HTTP/1.1 source fails while its body is copied.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// The read failed or the connection closed early.
    pub read: Kind,
    /// The chunked coding is broken.
    pub malformed: Kind,
}

/// A client connection's body.
pub const FROM_CLIENT: Source = Source {
    read: Kind::DownstreamIo,
    malformed: Kind::DownstreamMalformedBody,
};

/// A backend connection's body.
pub const FROM_BACKEND: Source = Source {
    read: Kind::UpstreamIo,
    malformed: Kind::UpstreamMalformed,
};

// === into an HTTP/2 stream ===

/// Sends `data` on `to` as its capacity allows: never more than the peer's
/// window and the send buffer bound are queued.
///
/// # Errors
///
/// The stream's error (reset, connection gone).
pub async fn send_all(to: &mut SendStream<Bytes>, data: Bytes) -> Result<(), h2::Error> {
    send_parts(to, data, false).await
}

/// [`send_all`], the last DATA frame ending the stream when `end` (an
/// empty one when `data` is empty).
pub(crate) async fn send_parts(
    to: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() && end {
        return to.send_data(data, true);
    }
    while !data.is_empty() {
        to.reserve_capacity(data.len());
        match poll_fn(|cx| to.poll_capacity(cx)).await {
            Some(Ok(0)) => {}
            Some(Ok(n)) => {
                let part = data.split_to(n.min(data.len()));
                to.send_data(part, end && data.is_empty())?;
            }
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(Reason::CANCEL)),
        }
    }
    Ok(())
}

/// Reads more of a body (through a body buffer of `bufs`).
async fn fill(from: &mut Conn, source: Source, bufs: &BufPool) -> Result<(), CopyError> {
    match from.fill_body(bufs).await {
        Ok(0) => Err(CopyError::Read(Error::new(source.read))),
        Ok(_) => Ok(()),
        Err(e) => Err(CopyError::Read(Error::new_io(source.read, e))),
    }
}

/// Sends the first `n` pending bytes of `from` (at most [`BODY_CHUNK`]) on
/// `to`, a copy to `tee`, and consumes them; the last DATA frame ends the
/// stream when `end`.
async fn send_pending(
    from: &mut Conn,
    to: &mut SendStream<Bytes>,
    n: usize,
    tee: &mut Tee,
    end: bool,
) -> Result<(), CopyError> {
    let n = n.min(BODY_CHUNK).min(from.pending().len());
    let data = Bytes::copy_from_slice(&from.pending()[..n]);
    from.consume(n);
    tee.push(&data);
    send_parts(to, data, end)
        .await
        .map_err(|_| CopyError::Write)
}

/// Copies exactly `n` body bytes of `from` to `to` (and `tee`). With
/// `end`, the last DATA frame ends the stream (an empty one when `n` is
/// 0): no empty DATA frame just for END_STREAM.
///
/// # Errors
///
/// See [`CopyError`].
pub async fn copy_length(
    bufs: &BufPool,
    from: &mut Conn,
    to: &mut SendStream<Bytes>,
    mut n: u64,
    source: Source,
    tee: &mut Tee,
    end: bool,
) -> Result<(), CopyError> {
    if n == 0 && end {
        return to
            .send_data(Bytes::new(), true)
            .map_err(|_| CopyError::Write);
    }
    while n > 0 {
        if from.pending().is_empty() {
            fill(from, source, bufs).await?;
        }
        let take = from
            .pending()
            .len()
            .min(usize::try_from(n).unwrap_or(usize::MAX))
            .min(BODY_CHUNK);
        n -= take as u64;
        send_pending(from, to, take, tee, end && n == 0).await?;
    }
    Ok(())
}

/// Decodes a chunked body of `from` and sends its data on `to` (and
/// `tee`); the chunked trailer section is dropped.
///
/// # Errors
///
/// See [`CopyError`].
pub async fn copy_chunked(
    bufs: &BufPool,
    from: &mut Conn,
    to: &mut SendStream<Bytes>,
    source: Source,
    tee: &mut Tee,
) -> Result<(), CopyError> {
    let mut decoder = ChunkedDecoder::default();
    let mut data = BytesMut::new();
    loop {
        if from.pending().is_empty() {
            fill(from, source, bufs).await?;
        }
        let input = from.pending();
        let mut consumed = 0;
        while consumed < input.len() && !decoder.is_done() {
            let step = decoder
                .decode(&input[consumed..])
                .map_err(|_| CopyError::Read(Error::new(source.malformed)))?;
            data.extend_from_slice(&input[consumed..][step.data]);
            consumed += step.consumed;
        }
        from.consume(consumed);
        if !data.is_empty() {
            let chunk = data.split().freeze();
            tee.push(&chunk);
            send_all(to, chunk).await.map_err(|_| CopyError::Write)?;
        }
        if decoder.is_done() {
            return Ok(());
        }
    }
}

/// Copies `from` to `to` until `from` closes.
///
/// # Errors
///
/// See [`CopyError`].
pub async fn copy_until_close(
    bufs: &BufPool,
    from: &mut Conn,
    to: &mut SendStream<Bytes>,
    source: Source,
) -> Result<(), CopyError> {
    loop {
        if from.pending().is_empty() {
            match from.fill_body(bufs).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(CopyError::Read(Error::new_io(source.read, e))),
            }
        }
        let n = from.pending().len();
        send_pending(from, to, n, &mut Tee::none(), false).await?;
    }
}

// === from an HTTP/2 stream ===

/// The `grpc-status` of a trailer (or trailers-only header) section.
pub fn grpc_status(fields: &HeaderMap) -> Option<u32> {
    fields
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Copies DATA and trailers from `from` to `to` (and the DATA to `tee`,
/// finished at the end), releasing `from`'s window only as the data is
/// handed on; the trailers' `grpc-status`, if any.
///
/// # Errors
///
/// [`PumpError::Read`] when `from` fails, [`PumpError::Write`] when `to`
/// is gone.
pub async fn pump(
    from: &mut RecvStream,
    to: &mut SendStream<Bytes>,
    tee: &mut Tee,
) -> Result<Option<u32>, PumpError> {
    while let Some(data) = from.data().await {
        let data = data.map_err(PumpError::Read)?;
        let n = data.len();
        tee.push(&data);
        send_all(to, data).await.map_err(|_| PumpError::Write)?;
        let _ = from.flow_control().release_capacity(n);
    }
    let trailers = from.trailers().await.map_err(PumpError::Read)?;
    tee.finish();
    match trailers {
        Some(trailers) => {
            let status = grpc_status(&trailers);
            to.send_trailers(trailers).map_err(|_| PumpError::Write)?;
            Ok(status)
        }
        None => to
            .send_data(Bytes::new(), true)
            .map(|()| None)
            .map_err(|_| PumpError::Write),
    }
}

/// Which side a copy between two HTTP/2 streams failed on.
#[derive(Debug)]
pub enum PumpError {
    /// The source stream failed.
    Read(h2::Error),
    /// The destination stream is gone.
    Write,
}

/// Whether an error of a client's stream means the client reset it or
/// went away.
pub fn is_client_gone(e: &h2::Error) -> bool {
    e.is_io() || e.is_go_away() || (e.is_reset() && e.is_remote())
}

/// How [`copy_to_h1`] frames the body on the HTTP/1.1 side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H1Body {
    /// As is (a Content-Length body, or close-delimited).
    Raw,
    /// Chunked, trailers as a chunked trailer section.
    Chunked,
}

/// Copies the DATA of `from` to the HTTP/1.1 connection `to`, as `framing`
/// says, releasing `from`'s window as each piece is written; the trailers'
/// `grpc-status`, if any. Trailers are written as chunked trailer fields
/// when chunked, else dropped.
///
/// # Errors
///
/// [`CopyError::Read`] ([`Kind::UpstreamIo`]) when `from` fails,
/// [`CopyError::Write`] when the client connection is gone.
pub async fn copy_to_h1(
    from: &mut RecvStream,
    to: &TcpStream,
    framing: H1Body,
    scratch: &mut Vec<u8>,
) -> Result<Option<u32>, CopyError> {
    let read = |_| CopyError::Read(Error::new(Kind::UpstreamIo));
    while let Some(data) = from.data().await {
        let data = data.map_err(read)?;
        let n = data.len();
        let written = match framing {
            H1Body::Raw => to.write_all(data).await.0,
            H1Body::Chunked => {
                scratch.clear();
                h1::encode_chunk(scratch, &data);
                io::write_all(to, scratch).await
            }
        };
        written.map_err(|_| CopyError::Write)?;
        let _ = from.flow_control().release_capacity(n);
    }
    let trailers = from.trailers().await.map_err(read)?;
    let status = trailers.as_ref().and_then(grpc_status);
    if framing == H1Body::Chunked {
        scratch.clear();
        scratch.extend_from_slice(b"0\r\n");
        for (name, value) in trailers.iter().flatten() {
            scratch.extend_from_slice(name.as_str().as_bytes());
            scratch.extend_from_slice(b": ");
            scratch.extend_from_slice(value.as_bytes());
            scratch.extend_from_slice(b"\r\n");
        }
        scratch.extend_from_slice(b"\r\n");
        io::write_all(to, scratch)
            .await
            .map_err(|_| CopyError::Write)?;
    }
    Ok(status)
}
