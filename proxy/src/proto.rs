//! Connection drivers: one per protocol, each running the
//! [`crate::phase`]s for every request of a connection.
//!
//! Every HTTP listener speaks HTTP/1.1 and HTTP/2 with prior knowledge
//! (h2c) on the same port: [`serve`] reads the first bytes of a connection
//! and hands it to [`h1`] or [`h2`], together with the bytes it read.
//! Waiting for those first bytes is bounded by the header timeout and ends
//! at once when the worker drains ([`Worker::unless_draining`]).
//! [`bridge`] moves bodies between the two protocols.
//!
//! ```text
//! accept ─▶ serve ─▶ sniff ─┬─ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" ─▶ h2::serve
//!                           ├─ "PRI * HTTP/2.0\r\n" + anything else ─▶ GOAWAY(PROTOCOL_ERROR), close
//!                           └─ anything else ─────────────────────────▶ h1::serve_conn
//! ```

use std::net::SocketAddr;
use std::rc::Rc;

use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

use crate::io::Conn;
use crate::runtime::Worker;

pub mod bridge;
pub mod h1;
pub mod h2;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first line of [`H2_PREFACE`]: a connection that starts with it is
/// HTTP/2 or broken, never HTTP/1.1.
const H2_PREFACE_LINE: usize = 16;

/// What the first bytes of a connection say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    /// Anything that is not the HTTP/2 preface (including a close).
    Http1,
    /// The complete HTTP/2 preface.
    Http2,
    /// The preface's first line followed by something else.
    BadPreface,
}

/// Classifies the bytes read so far: `None` while they are a strict prefix
/// of the HTTP/2 preface.
fn classify(bytes: &[u8]) -> Option<Sniffed> {
    let n = bytes.len().min(H2_PREFACE.len());
    match bytes[..n].iter().zip(H2_PREFACE).position(|(a, b)| a != b) {
        None if n == H2_PREFACE.len() => Some(Sniffed::Http2),
        None => None,
        Some(at) if at >= H2_PREFACE_LINE => Some(Sniffed::BadPreface),
        Some(_) => Some(Sniffed::Http1),
    }
}

/// Reads until the bytes in `buf` decide the protocol. A close or a full
/// buffer decides HTTP/1.1 (its loop handles both).
async fn sniff(stream: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Sniffed> {
    loop {
        if let Some(s) = classify(buf) {
            return Ok(s);
        }
        let owned = std::mem::take(buf);
        let (len, cap) = (owned.len(), owned.capacity());
        if len == cap {
            *buf = owned;
            return Ok(Sniffed::Http1);
        }
        let (result, slice) = stream.read(owned.slice(len..cap)).await;
        *buf = slice.into_inner();
        if result? == 0 {
            return Ok(Sniffed::Http1);
        }
    }
}

/// An empty SETTINGS frame followed by GOAWAY(last stream 0,
/// PROTOCOL_ERROR): the answer to a broken client preface.
const BAD_PREFACE_ANSWER: &[u8] = &[
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, empty
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes, stream 0
    0, 0, 0, 0, // last stream id
    0, 0, 0, 1, // PROTOCOL_ERROR
];

/// Serves one client connection: sniffs the protocol from its first bytes,
/// then runs the HTTP/1.1 or HTTP/2 loop until the connection closes.
pub async fn serve(worker: Rc<Worker>, stream: TcpStream, client: SocketAddr, port: u16) {
    let _ = stream.set_nodelay(true);
    // Small: an idle connection pins little (HTTP/1.1 grows it for a large
    // head or a streamed body, HTTP/2 for its frames).
    let mut buf = worker.bufs.get_small();
    // A connection that has sent nothing yet is idle: a drain closes it
    // (else it would hold the drain until the header timeout).
    let first_bytes = tokio::time::timeout(worker.config.header_timeout, sniff(&stream, &mut buf));
    // Boxed, like the protocol loops below: the connection's task itself
    // stays small, and each phase's state is freed when it ends.
    let sniffed = Box::pin(worker.unless_draining(async { Some(first_bytes.await) }, None)).await;
    match sniffed {
        Some(Ok(Ok(Sniffed::Http1))) => {
            let conn = Conn::with_pending(stream, buf);
            Box::pin(h1::serve_conn(worker, conn, client, port)).await;
        }
        Some(Ok(Ok(Sniffed::Http2))) => {
            Box::pin(h2::serve(worker, stream, buf, client, port)).await;
        }
        Some(Ok(Ok(Sniffed::BadPreface))) => {
            worker.bufs.put(buf);
            let mut answer = BAD_PREFACE_ANSWER.to_vec();
            let _ = crate::io::write_all(&stream, &mut answer).await;
        }
        // A read error closes the connection.
        Some(Ok(Err(_))) => worker.bufs.put(buf),
        // On a timeout or a drain the buffer was lost with the cancelled
        // read; the read still in flight completes when the socket is shut.
        Some(Err(_)) | None => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_decides_on_the_first_differing_byte() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"PRI * HTTP/2"), None);
        assert_eq!(classify(H2_PREFACE), Some(Sniffed::Http2));
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http1));
        assert_eq!(classify(b"PRIX"), Some(Sniffed::Http1));
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"),
            Some(Sniffed::BadPreface)
        );
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(b"\x00\x00\x00\x04");
        assert_eq!(classify(&more), Some(Sniffed::Http2));
    }
}
