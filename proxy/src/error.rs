//! Proxy errors: what went wrong, and whose fault it was.
//!
//! Every [`Error`] carries a [`Kind`] naming the culprit and the [`Side`] it
//! happened on, so the connection loop can answer the right status (400 for
//! the client's fault, 502/504 for the backend's) and `logging` can count it.
//! `Display` text is not API.

use std::fmt;
use std::io;

use crate::codec::h1::CodecError;

/// Which side of the proxy caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Side {
    /// The client.
    Downstream,
    /// The backend.
    Upstream,
    /// The proxy itself.
    Internal,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// The client sent a head that is not strict HTTP/1.1 (or a smuggling
    /// shape).
    DownstreamMalformedHead(CodecError),
    /// The client's head does not fit the buffer or has too many fields.
    DownstreamHeadTooLarge,
    /// The client's chunked body is malformed.
    DownstreamMalformedBody,
    /// The client closed the connection or it failed.
    DownstreamIo,
    /// The client took too long to send a head.
    DownstreamTimeout,
    /// The backend could not be connected to.
    UpstreamConnect,
    /// The backend closed or reset the connection before a whole response.
    UpstreamIo,
    /// The backend answered with a malformed head or body.
    UpstreamMalformed,
    /// The backend did not answer in time.
    UpstreamTimeout,
}

impl Kind {
    fn side(self) -> Side {
        match self {
            Kind::DownstreamMalformedHead(_)
            | Kind::DownstreamHeadTooLarge
            | Kind::DownstreamMalformedBody
            | Kind::DownstreamIo
            | Kind::DownstreamTimeout => Side::Downstream,
            Kind::UpstreamConnect
            | Kind::UpstreamIo
            | Kind::UpstreamMalformed
            | Kind::UpstreamTimeout => Side::Upstream,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::DownstreamMalformedHead(e) => write!(f, "client sent a bad request head: {e}"),
            Kind::DownstreamHeadTooLarge => f.write_str("client request head too large"),
            Kind::DownstreamMalformedBody => f.write_str("client sent a malformed chunked body"),
            Kind::DownstreamIo => f.write_str("client connection failed"),
            Kind::DownstreamTimeout => f.write_str("client too slow"),
            Kind::UpstreamConnect => f.write_str("cannot connect to backend"),
            Kind::UpstreamIo => f.write_str("backend connection failed"),
            Kind::UpstreamMalformed => f.write_str("backend sent a malformed response"),
            Kind::UpstreamTimeout => f.write_str("backend timed out"),
        }
    }
}

/// A proxy error.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct Error {
    kind: Kind,
    side: Side,
    /// Whether the request may be retried on another connection.
    retry: bool,
    #[source]
    cause: Option<io::Error>,
}

impl Error {
    /// An error of `kind`, on the side the kind names.
    pub fn new(kind: Kind) -> Error {
        Error {
            kind,
            side: kind.side(),
            retry: false,
            cause: None,
        }
    }

    /// An error of `kind` caused by an I/O error.
    pub fn new_io(kind: Kind, cause: io::Error) -> Error {
        Error {
            cause: Some(cause),
            ..Error::new(kind)
        }
    }

    /// Marks the error as safe to retry (nothing of the request was
    /// consumed by the failed attempt).
    pub fn retryable(mut self) -> Error {
        self.retry = true;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whose fault it was.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Whether it may be retried.
    pub fn is_retryable(&self) -> bool {
        self.retry
    }

    /// The status the client gets when nothing of the response was sent
    /// yet, or `None` when the client connection is simply closed.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            Kind::DownstreamMalformedHead(CodecError::TooLarge) | Kind::DownstreamHeadTooLarge => {
                Some(431)
            }
            Kind::DownstreamMalformedHead(CodecError::UriTooLong) => Some(414),
            Kind::DownstreamMalformedHead(_) | Kind::DownstreamMalformedBody => Some(400),
            Kind::DownstreamIo => None,
            Kind::DownstreamTimeout => Some(408),
            Kind::UpstreamConnect | Kind::UpstreamIo | Kind::UpstreamMalformed => Some(502),
            Kind::UpstreamTimeout => Some(504),
        }
    }
}

/// Results of the proxy.
pub type Result<T, E = Error> = std::result::Result<T, E>;
