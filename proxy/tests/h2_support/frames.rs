//! Hand-built HTTP/2 frames (RFC 9113 §4, §6) and a raw connection that
//! reads back what the server answers: the way conformance tests speak to
//! the proxy without an HTTP/2 library correcting their mistakes.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Frame types.
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Error codes (RFC 9113 §7).
pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame: header plus payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// SETTINGS with `(id, value)` pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

/// SETTINGS ACK.
pub fn settings_ack() -> Vec<u8> {
    frame(SETTINGS, ACK, 0, &[])
}

/// WINDOW_UPDATE.
pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// RST_STREAM.
pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// An HPACK integer with an `n`-bit prefix whose other bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// An HPACK header block of literal fields without indexing and without
/// Huffman coding (RFC 7541 §6.2.2): the fields go on the wire exactly as
/// given, upper-case names and all.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// HEADERS with END_HEADERS (and END_STREAM when `end`).
pub fn headers(stream: u32, fields: &[(&str, &str)], end: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &header_block(fields))
}

/// A valid GET request's fields for `path` (leaked: tests are short).
pub fn get(path: &str) -> Vec<(&'static str, &'static str)> {
    let path: &'static str = Box::leak(path.to_string().into_boxed_str());
    vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "example.com"),
        (":path", path),
    ]
}

/// What the server sent, as far as a test cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A frame (type, flags, stream, payload).
    Frame(u8, u8, u32, Vec<u8>),
    /// The connection was closed (or reset).
    Closed,
    /// Nothing more within the wait.
    Timeout,
}

/// How a connection or stream ended, per the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// GOAWAY with this error code.
    GoAway(u32),
    /// RST_STREAM on this stream with this code.
    Reset(u32, u32),
    /// A HEADERS frame on this stream (a response).
    Response(u32),
    /// Closed without GOAWAY.
    Closed,
    /// Nothing within the wait.
    Timeout,
}

/// A raw HTTP/2 connection.
#[derive(Debug)]
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects to 127.0.0.1:`port` without sending anything.
    pub fn connect_bare(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects, sends the preface and an empty SETTINGS, and acknowledges
    /// the server's SETTINGS.
    pub fn connect(port: u16) -> Raw {
        let mut raw = Raw::connect_bare(port);
        raw.send(PREFACE);
        raw.send(&settings(&[]));
        loop {
            match raw.read_frame(Duration::from_secs(5)) {
                Received::Frame(SETTINGS, flags, 0, _) if flags & ACK == 0 => {
                    raw.send(&settings_ack());
                    return raw;
                }
                Received::Frame(..) => {}
                other => panic!("no server SETTINGS: {other:?}"),
            }
        }
    }

    /// Sends bytes (errors ignored: the server may have closed already).
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads one frame, waiting at most `wait`.
    pub fn read_frame(&mut self, wait: Duration) -> Received {
        let deadline = Instant::now() + wait;
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let kind = self.buf[3];
                    let flags = self.buf[4];
                    let stream =
                        u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                            & 0x7fff_ffff;
                    let payload = self.buf[9..9 + len].to_vec();
                    self.buf.drain(..9 + len);
                    return Received::Frame(kind, flags, stream, payload);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Received::Timeout;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Received::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Received::Timeout;
                }
                Err(_) => return Received::Closed,
            }
        }
    }

    /// Reads until a GOAWAY, an RST_STREAM, a response HEADERS, or the end
    /// (answering PINGs and SETTINGS on the way).
    pub fn outcome(&mut self) -> Outcome {
        loop {
            match self.read_frame(Duration::from_secs(5)) {
                Received::Frame(GOAWAY, _, _, p) if p.len() >= 8 => {
                    return Outcome::GoAway(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
                }
                Received::Frame(RST_STREAM, _, s, p) if p.len() == 4 => {
                    return Outcome::Reset(s, u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
                }
                Received::Frame(HEADERS, _, s, _) => return Outcome::Response(s),
                Received::Frame(SETTINGS, flags, 0, _) if flags & ACK == 0 => {
                    self.send(&settings_ack());
                }
                Received::Frame(PING, flags, 0, p) if flags & ACK == 0 => {
                    self.send(&frame(PING, ACK, 0, &p));
                }
                Received::Frame(..) => {}
                Received::Closed => return Outcome::Closed,
                Received::Timeout => return Outcome::Timeout,
            }
        }
    }

    /// Reads until a GOAWAY or the end; its error code if one came.
    pub fn goaway(&mut self) -> Option<u32> {
        loop {
            match self.outcome() {
                Outcome::GoAway(code) => return Some(code),
                Outcome::Closed | Outcome::Timeout => return None,
                _ => {}
            }
        }
    }
}
