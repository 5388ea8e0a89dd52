//! Exchanges with HTTP/1.1 backends, for every client protocol: a
//! connection from the worker's [pool](crate::upstream::pool) or a new one
//! ([`checkout`]), given back after a whole response ([`checkin`]), and
//! the response head ([`read_head`]).

use std::net::SocketAddr;

use tokio_uring::net::TcpStream;

use crate::codec::h1::{self, Head};
use crate::error::{Error, Kind};
use crate::io::{Arrival, Conn};
use crate::runtime::Worker;

/// A connection to `addr`: the most recently pooled one, or a new one;
/// whether it was pooled (a pooled connection may turn out closed, and a
/// request that failed on it before anything of its body was consumed may
/// be retried on a new one).
///
/// # Errors
///
/// [`Kind::UpstreamConnect`] when no connection can be made.
pub async fn checkout(worker: &Worker, addr: SocketAddr) -> Result<(Conn, bool), Error> {
    if let Some(conn) = worker.pool.take(addr) {
        return Ok((conn, true));
    }
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::new_io(Kind::UpstreamConnect, e))?;
    let _ = stream.set_nodelay(true);
    Ok((Conn::new(stream, worker.bufs.get()), false))
}

/// Gives `conn`, which has finished a whole response, back to the worker's
/// pool, reading through a full-size buffer again (a streamed body may
/// have left it holding a body buffer).
pub fn checkin(worker: &Worker, addr: SocketAddr, mut conn: Conn) {
    conn.shrink_to_full(&worker.bufs);
    worker.pool.put(addr, conn);
}

/// Reads the final response head into `resp`, skipping `1xx` heads; a
/// `101` is final only for an `upgrade` request (else it is malformed).
/// `arrival` says whether the answer is expected [later](Arrival::Later)
/// or [soon](Arrival::Soon) (see [`Conn::fill_head`]).
/// When `retryable`, an error before any byte of the response arrived is
/// marked [retryable](Error::retryable) (the connection was a stale pooled
/// one and the request may be sent again).
///
/// # Errors
///
/// [`Kind::UpstreamMalformed`] for a head that does not parse or does not
/// fit the buffer, [`Kind::UpstreamIo`] when the backend closes or fails.
pub async fn read_head(
    upstream: &mut Conn,
    resp: &mut Head,
    upgrade: bool,
    retryable: bool,
    arrival: Arrival,
) -> Result<(), Error> {
    let maybe_retry = |e: Error| if retryable { e.retryable() } else { e };
    loop {
        match h1::parse_response(upstream.pending(), resp) {
            Ok(true) if resp.status == 101 && upgrade => return Ok(()),
            Ok(true) if resp.status == 101 => return Err(Error::new(Kind::UpstreamMalformed)),
            Ok(true) if resp.status < 200 => upstream.consume(resp.len),
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(_) => return Err(Error::new(Kind::UpstreamMalformed)),
        }
        if upstream.is_full() {
            return Err(Error::new(Kind::UpstreamMalformed));
        }
        let nothing_yet = upstream.pending().is_empty();
        match upstream.fill_head(arrival).await {
            Ok(0) if nothing_yet => return Err(maybe_retry(Error::new(Kind::UpstreamIo))),
            Ok(0) => return Err(Error::new(Kind::UpstreamIo)),
            Ok(_) => {}
            Err(e) if nothing_yet => return Err(maybe_retry(Error::new_io(Kind::UpstreamIo, e))),
            Err(e) => return Err(Error::new_io(Kind::UpstreamIo, e)),
        }
    }
}
