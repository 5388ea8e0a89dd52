//! A worker's pooled, multiplexed h2c (HTTP/2 with prior knowledge)
//! connections to backends: gRPC backends and those whose EndpointSlice
//! port says `appProtocol: kubernetes.io/h2c`.
//!
//! Each worker keeps at most one connection per backend address and sends
//! every stream to that address over it; the `h2` client queues streams
//! beyond the backend's `SETTINGS_MAX_CONCURRENT_STREAMS` (back-pressure,
//! not an error). The connection's I/O runs in its own task on the worker's
//! runtime, over [`crate::io::compat::Stream`].
//!
//! The pool is thread-local: a worker is one thread with one runtime, so
//! this is the worker's own pool without a lock and without touching
//! [`crate::runtime::Worker`].
//!
//! # Invariants
//!
//! * A pooled [`SendRequest`] belongs to a connection whose task is running;
//!   one that fails `ready()` is dropped from the pool and replaced.
//! * The pool's `RefCell` is never borrowed across an `await`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::SendStream;
use h2::client::{self, ResponseFuture, SendRequest};
use tokio_uring::net::TcpStream;

use crate::codec::h1::CodecError;
use crate::error::{Error, Kind};
use crate::filter::Fields;
use crate::io::compat;

/// Initial stream window advertised to backends (RFC 9113 §6.9.2); bounds
/// what one response stream can have buffered in the proxy.
pub const DEFAULT_STREAM_WINDOW: u32 = 256 * 1024;

/// Initial connection window advertised to backends; bounds what all the
/// streams of one backend connection can have buffered in the proxy.
pub const DEFAULT_CONNECTION_WINDOW: u32 = 1024 * 1024;

/// Largest header list accepted from a backend (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

/// Most bytes queued for sending on one stream to a backend.
pub const DEFAULT_MAX_SEND_BUFFER: usize = 64 * 1024;

/// How long connecting and the HTTP/2 handshake may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    static POOL: RefCell<HashMap<SocketAddr, SendRequest<Bytes>>> = RefCell::new(HashMap::new());
}

/// Opens a new h2c connection to `addr` and starts its I/O task.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Bytes>, Error> {
    let handshake = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Error::new_io(Kind::UpstreamConnect, e))?;
        let _ = stream.set_nodelay(true);
        let io = compat::Stream::new(stream, Vec::new());
        client::Builder::new()
            .initial_window_size(DEFAULT_STREAM_WINDOW)
            .initial_connection_window_size(DEFAULT_CONNECTION_WINDOW)
            .max_header_list_size(DEFAULT_MAX_HEADER_LIST_SIZE)
            .max_send_buffer_size(DEFAULT_MAX_SEND_BUFFER)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|_| Error::new(Kind::UpstreamConnect))
    };
    let (send, connection) = tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| Error::new(Kind::UpstreamConnect))??;
    tokio_uring::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

/// A ready handle to `addr`'s connection: the pooled one, or a new one;
/// whether it was pooled.
async fn ready(addr: SocketAddr) -> Result<(SendRequest<Bytes>, bool), Error> {
    let pooled = POOL.with(|p| p.borrow().get(&addr).cloned());
    if let Some(send) = pooled {
        match send.ready().await {
            Ok(send) => return Ok((send, true)),
            Err(_) => {
                POOL.with(|p| p.borrow_mut().remove(&addr));
            }
        }
    }
    let send = connect(addr).await?;
    POOL.with(|p| p.borrow_mut().insert(addr, send.clone()));
    let send = send
        .ready()
        .await
        .map_err(|_| Error::new(Kind::UpstreamConnect))?;
    Ok((send, false))
}

/// Starts a stream to `addr` with `request` (its URI must carry scheme and
/// authority). A pooled connection that turns out to be closing is replaced
/// once. Returns the response future and, unless `end_of_stream`, the
/// stream to send the request body on.
///
/// # Errors
///
/// [`Kind::UpstreamConnect`] when no connection can be made, or
/// [`Kind::UpstreamIo`] when the stream cannot be opened.
pub async fn send_request(
    addr: SocketAddr,
    request: http::Request<()>,
    end_of_stream: bool,
) -> Result<(ResponseFuture, SendStream<Bytes>), Error> {
    let (mut send, pooled) = ready(addr).await?;
    match send.send_request(request.clone(), end_of_stream) {
        Ok(r) => Ok(r),
        Err(_) if pooled => {
            POOL.with(|p| p.borrow_mut().remove(&addr));
            let (mut send, _) = ready(addr).await?;
            send.send_request(request, end_of_stream)
                .map_err(|_| Error::new(Kind::UpstreamIo))
        }
        Err(_) => Err(Error::new(Kind::UpstreamIo)),
    }
}

/// The HTTP/2 request head for `addr` from a forwarded request (see
/// [`crate::phase::upstream_fields`]): `host` becomes `:authority` (the
/// backend's address when there is none or it is not valid), the scheme is
/// `http`, and the other fields follow (names lower-cased; fields that are
/// not valid HTTP are dropped).
///
/// # Errors
///
/// [`Kind::DownstreamMalformedHead`] when `target` is not a valid path.
pub fn request(
    method: http::Method,
    target: Vec<u8>,
    mut fields: Fields<'_>,
    addr: SocketAddr,
) -> Result<http::Request<()>, Error> {
    let authority = fields
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(b"host"))
        .map(|i| fields.remove(i).1.into_owned())
        .unwrap_or_default();
    let uri = http::Uri::builder().scheme("http").path_and_query(target);
    let uri = match http::uri::Authority::try_from(authority.as_slice()) {
        Ok(a) if !authority.is_empty() => uri.authority(a),
        _ => uri.authority(addr.to_string()),
    };
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri
        .build()
        .map_err(|_| Error::new(Kind::DownstreamMalformedHead(CodecError::BadHostOrTarget)))?;
    let headers = request.headers_mut();
    for (name, value) in &fields {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    Ok(request)
}

/// Open connections in this worker's pool (for tests and metrics).
pub fn connection_count() -> usize {
    POOL.with(|p| p.borrow().len())
}
