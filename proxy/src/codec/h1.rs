//! HTTP/1.1 wire format: request and response heads parsed in place
//! (httparse) and body framing (RFC 9112 §6–§7).
//!
//! Nothing here does I/O: the parsers read a byte slice (the connection's
//! pooled read buffer) and record *offsets* into it, so a parsed head costs
//! no copy and the buffer can be handed to the kernel again afterwards.
//!
//! # Invariants
//!
//! * A [`Head`] only describes the buffer it was parsed from; every
//!   [`Span`] is in bounds of that buffer's first [`Head::len`] bytes.
//! * [`request_framing`] rejects every shape that two HTTP/1.1 parsers could
//!   frame differently (request smuggling): Content-Length together with
//!   Transfer-Encoding, differing Content-Lengths, a transfer coding other
//!   than `chunked`, a missing or repeated Host. The head parser itself
//!   rejects obs-fold, bare CR and bare LF.

use std::mem::MaybeUninit;
use std::ops::Range;

use route_compiler::table::RequestView;

/// Most header fields accepted in one head (more → 431 for a request,
/// 502 for a response).
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// Longest request target (URI) accepted, in bytes; a longer one is
/// answered 414 (nginx's default large header buffer is 8 KiB too).
pub const DEFAULT_MAX_URI: usize = 8 * 1024;

/// Longest chunk-size line (size plus extensions) accepted.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Most bytes of trailer fields accepted after the last chunk.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// The terminating chunk of a chunked body, without trailers.
pub const CHUNKED_END: &[u8] = b"0\r\n\r\n";

/// Why a head or body cannot be accepted. `Display` is not API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Not a valid HTTP/1.x head (httparse's reason).
    #[error("malformed head: {0}")]
    Malformed(&'static str),
    /// A line ends in LF without CR.
    #[error("bare LF in head")]
    BareLf,
    /// More header fields than [`DEFAULT_MAX_HEADERS`], or more bytes than
    /// the buffer holds.
    #[error("head too large")]
    TooLarge,
    /// Content-Length together with Transfer-Encoding.
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    /// Content-Length values that differ, or one that is not a number.
    #[error("invalid or conflicting Content-Length")]
    BadLength,
    /// A transfer coding other than a single `chunked`.
    #[error("unsupported Transfer-Encoding")]
    BadTransferEncoding,
    /// Missing or repeated Host on HTTP/1.1, or a non-origin-form target.
    #[error("missing or repeated Host, or a target that is not origin-form")]
    BadHostOrTarget,
    /// A chunk-size line that is not hex, too long, or overflows.
    #[error("bad chunk size")]
    BadChunk,
    /// A request target longer than [`DEFAULT_MAX_URI`].
    #[error("request target too long")]
    UriTooLong,
}

// === impl Span ===

/// Byte offsets into the buffer a head was parsed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(buf: &[u8], part: &[u8]) -> Span {
        // Both are views of the same buffer, so the difference of their
        // addresses is the offset (no unsafe: we only compare addresses).
        let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    /// The bytes it covers in `buf` (empty if out of bounds).
    pub fn get<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.range()).unwrap_or_default()
    }

    /// As a range.
    pub fn range(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One header field, as offsets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderSpan {
    /// The name, as sent.
    pub name: Span,
    /// The value, without surrounding whitespace.
    pub value: Span,
}

// === impl Head ===

/// A parsed request or response head, as offsets into its buffer. Reused
/// across requests of a connection (its vector keeps its capacity).
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// Bytes of the head, final CRLF included.
    pub len: usize,
    /// Request method (requests only).
    pub method: Span,
    /// Request target (requests only).
    pub target: Span,
    /// Response status (responses only).
    pub status: u16,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor: u8,
    /// The header fields in order.
    pub headers: Vec<HeaderSpan>,
}

impl Head {
    /// The header fields as `(name, value)` byte slices of `buf`.
    pub fn fields<'b>(&'b self, buf: &'b [u8]) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + 'b {
        self.headers
            .iter()
            .map(move |h| (h.name.get(buf), h.value.get(buf)))
    }

    /// Every value of header `name` (case-insensitive).
    pub fn values<'b>(
        &'b self,
        buf: &'b [u8],
        name: &'b str,
    ) -> impl Iterator<Item = &'b [u8]> + 'b {
        self.fields(buf)
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The range of the request or status line in the buffer, its CRLF
    /// included: the head's bytes before the first field.
    pub fn start_line(&self) -> Range<usize> {
        let start = if self.status == 0 {
            self.method.start as usize
        } else {
            0
        };
        let end = self
            .headers
            .first()
            .map_or(self.fields_end(), |h| h.name.start as usize);
        start..end.max(start)
    }

    /// Each field with the range of its whole line as received in the
    /// buffer (`name: value` and its CRLF): a field is always one line
    /// (obs-fold is refused), so a field nobody changes can be forwarded
    /// as the bytes that came in.
    pub fn field_lines(&self) -> impl Iterator<Item = (HeaderSpan, Range<usize>)> + '_ {
        let end = self.fields_end();
        self.headers.iter().enumerate().map(move |(i, h)| {
            let next = self
                .headers
                .get(i + 1)
                .map_or(end, |n| n.name.start as usize);
            (*h, h.name.start as usize..next)
        })
    }

    /// Where the fields end: before the blank line that ends the head.
    fn fields_end(&self) -> usize {
        self.len.saturating_sub(2)
    }

    fn record(&mut self, buf: &[u8], headers: &[httparse::Header<'_>]) {
        self.headers.clear();
        self.headers.extend(headers.iter().map(|h| HeaderSpan {
            name: Span::of(buf, h.name.as_bytes()),
            value: Span::of(buf, h.value),
        }));
    }
}

/// Rejects a line feed not preceded by a carriage return (httparse accepts
/// bare LF as a line end; two parsers could split such a head differently).
fn check_line_ends(head: &[u8]) -> Result<(), CodecError> {
    // A head has a handful of lines: find them with a SIMD search rather
    // than looking at every byte.
    let bare = memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head.get(i - 1) != Some(&b'\r'));
    if bare {
        Err(CodecError::BareLf)
    } else {
        Ok(())
    }
}

fn map_httparse(e: httparse::Error) -> CodecError {
    match e {
        httparse::Error::TooManyHeaders => CodecError::TooLarge,
        httparse::Error::HeaderName => CodecError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => CodecError::Malformed("invalid header value"),
        httparse::Error::NewLine => CodecError::Malformed("invalid line end"),
        httparse::Error::Status => CodecError::Malformed("invalid status"),
        httparse::Error::Token => CodecError::Malformed("invalid token"),
        httparse::Error::Version => CodecError::Malformed("invalid version"),
    }
}

/// Parses a request head at the start of `buf` into `head`.
///
/// # Errors
///
/// [`CodecError`] for anything that is not a strict HTTP/1.x head. `Ok(false)`
/// means the head is not complete yet.
pub fn parse_request(buf: &[u8], head: &mut Head) -> Result<bool, CodecError> {
    // Uninitialized: httparse writes the fields it finds and hands back
    // only those, so the 3.2 KB array is never zeroed per head.
    let mut headers =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; DEFAULT_MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req
        .parse_with_uninit_headers(buf, &mut headers)
        .map_err(map_httparse)?
    {
        httparse::Status::Complete(len) => len,
        // A request line that is already longer than any accepted target
        // is answered 414 without waiting for the rest of the head.
        httparse::Status::Partial if buf.len() > DEFAULT_MAX_URI + 32 && !buf.contains(&b'\n') => {
            return Err(CodecError::UriTooLong);
        }
        httparse::Status::Partial => return Ok(false),
    };
    if req.path.is_some_and(|p| p.len() > DEFAULT_MAX_URI) {
        return Err(CodecError::UriTooLong);
    }
    check_line_ends(&buf[..len])?;
    head.len = len;
    head.method = Span::of(buf, req.method.unwrap_or_default().as_bytes());
    head.target = Span::of(buf, req.path.unwrap_or_default().as_bytes());
    head.minor = req.version.unwrap_or(1);
    head.status = 0;
    head.record(buf, req.headers);
    Ok(true)
}

/// Parses a response head at the start of `buf` into `head`.
///
/// # Errors
///
/// As [`parse_request`].
pub fn parse_response(buf: &[u8], head: &mut Head) -> Result<bool, CodecError> {
    // Uninitialized, as in `parse_request`.
    let mut headers =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; DEFAULT_MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut headers)
        .map_err(map_httparse)?
    {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(false),
    };
    check_line_ends(&buf[..len])?;
    head.len = len;
    head.method = Span::default();
    head.target = Span::default();
    head.status = res.code.unwrap_or(0);
    head.minor = res.version.unwrap_or(1);
    head.record(buf, res.headers);
    Ok(true)
}

// === impl Request ===

/// A parsed request head together with its buffer: what the router sees.
#[derive(Debug, Clone, Copy)]
pub struct Request<'b> {
    /// The head.
    pub head: &'b Head,
    /// The buffer it was parsed from.
    pub buf: &'b [u8],
}

impl RequestView for Request<'_> {
    fn method(&self) -> &[u8] {
        self.head.method.get(self.buf)
    }

    fn host(&self) -> &[u8] {
        self.header("host").unwrap_or_default()
    }

    fn target(&self) -> &[u8] {
        self.head.target.get(self.buf)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.head
            .fields(self.buf)
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

// === framing ===

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

fn parse_length(value: &[u8]) -> Result<u64, CodecError> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(CodecError::BadLength);
    }
    value
        .iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(CodecError::BadLength)
}

/// The Content-Length of a head: `None` when absent; identical repeated
/// values (also as a comma list) count once.
fn content_length(head: &Head, buf: &[u8]) -> Result<Option<u64>, CodecError> {
    let mut found = None;
    for value in head.values(buf, "content-length") {
        for item in value.split(|&b| b == b',') {
            let n = parse_length(item.trim_ascii())?;
            if found.is_some_and(|f| f != n) {
                return Err(CodecError::BadLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Whether the Transfer-Encoding header is present, and if so whether it is
/// exactly one `chunked` coding.
fn transfer_encoding(head: &Head, buf: &[u8]) -> Option<bool> {
    let mut codings = head
        .values(buf, "transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .peekable();
    codings.peek()?;
    let first = codings.next().unwrap_or_default();
    Some(first.eq_ignore_ascii_case(b"chunked") && codings.next().is_none())
}

/// Checks a request head for smuggling shapes and says how its body is
/// framed.
///
/// # Errors
///
/// [`CodecError`] for CL+TE, conflicting or invalid Content-Length, a
/// transfer coding other than `chunked`, a missing or repeated Host on
/// HTTP/1.1, and a target that is not origin-form (`/…`, or `*` for
/// OPTIONS).
pub fn request_framing(head: &Head, buf: &[u8]) -> Result<Framing, CodecError> {
    let target = head.target.get(buf);
    let options_star = target == b"*" && head.method.get(buf) == b"OPTIONS";
    if !(target.first() == Some(&b'/') || options_star) {
        return Err(CodecError::BadHostOrTarget);
    }
    let hosts = head.values(buf, "host").count();
    if hosts > 1 || (head.minor == 1 && hosts == 0) {
        return Err(CodecError::BadHostOrTarget);
    }
    let length = content_length(head, buf)?;
    match (transfer_encoding(head, buf), length) {
        (Some(_), Some(_)) => Err(CodecError::LengthAndChunked),
        (Some(true), None) if head.minor == 1 => Ok(Framing::Chunked),
        (Some(_), None) => Err(CodecError::BadTransferEncoding),
        (None, Some(0) | None) => Ok(Framing::Empty),
        (None, Some(n)) => Ok(Framing::Length(n)),
    }
}

/// How a response body is framed, given the request's method.
///
/// # Errors
///
/// [`CodecError::BadLength`] for conflicting or invalid Content-Length.
pub fn response_framing(
    head: &Head,
    buf: &[u8],
    head_request: bool,
) -> Result<Framing, CodecError> {
    if head_request || (100..200).contains(&head.status) || head.status == 204 || head.status == 304
    {
        return Ok(Framing::Empty);
    }
    match transfer_encoding(head, buf) {
        Some(true) => return Ok(Framing::Chunked),
        Some(false) => return Ok(Framing::UntilClose),
        None => {}
    }
    Ok(match content_length(head, buf)? {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// The tokens of the Connection header fields, lower-cased comparisons left
/// to the caller.
pub fn connection_tokens<'b>(head: &'b Head, buf: &'b [u8]) -> impl Iterator<Item = &'b [u8]> + 'b {
    head.values(buf, "connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether the peer asks to keep the connection open after this message.
pub fn keep_alive(head: &Head, buf: &[u8]) -> bool {
    let mut close = false;
    let mut keep = false;
    for token in connection_tokens(head, buf) {
        close |= token.eq_ignore_ascii_case(b"close");
        keep |= token.eq_ignore_ascii_case(b"keep-alive");
    }
    !close && (head.minor == 1 || keep)
}

/// Header fields that describe one connection, never forwarded (RFC 9110
/// §7.6.1), lower-case.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Connection tokens [`HopByHop`] keeps; a head naming more has the rest
/// looked up in it.
const CACHED_CONNECTION_TOKENS: usize = 4;

/// Which fields of one head are hop-by-hop: those in [`HOP_BY_HOP`] and
/// those its Connection header names (RFC 9110 §7.6.1); Content-Length
/// too, since the proxy writes the forwarded framing itself. The
/// Connection tokens are found once, when it is made, not once per field.
#[derive(Debug)]
pub struct HopByHop<'b> {
    tokens: [&'b [u8]; CACHED_CONNECTION_TOKENS],
    cached: usize,
    /// The head, when it names more tokens than are cached.
    more: Option<(&'b Head, &'b [u8])>,
}

impl<'b> HopByHop<'b> {
    /// The hop-by-hop fields of `head`, whose bytes are `buf`.
    pub fn new(head: &'b Head, buf: &'b [u8]) -> HopByHop<'b> {
        let mut hop = HopByHop {
            tokens: [&[]; CACHED_CONNECTION_TOKENS],
            cached: 0,
            more: None,
        };
        for token in connection_tokens(head, buf) {
            if hop.cached == CACHED_CONNECTION_TOKENS {
                hop.more = Some((head, buf));
                break;
            }
            hop.tokens[hop.cached] = token;
            hop.cached += 1;
        }
        hop
    }

    /// Whether the field `name` is hop-by-hop (never forwarded).
    pub fn contains(&self, name: &[u8]) -> bool {
        let named = |t: &[u8]| t.eq_ignore_ascii_case(name);
        HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
            || name.eq_ignore_ascii_case(b"content-length")
            || self.tokens[..self.cached].iter().any(|t| named(t))
            || self.more.is_some_and(|(head, buf)| {
                connection_tokens(head, buf)
                    .skip(CACHED_CONNECTION_TOKENS)
                    .any(named)
            })
    }
}

// === chunked coding ===

/// Appends `data` as one chunk.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of the size.
    Size { digits: u8 },
    /// After `;`: extensions until CR.
    Extension,
    /// Got CR of the size line, need LF.
    SizeLf,
    /// `remaining` bytes of data.
    Data,
    /// Need CR after the data.
    DataCr,
    /// Need LF after the data.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Got CR of a trailer line, need LF.
    TrailerLf,
    /// Got CR of the empty line, need LF.
    EndLf,
    /// The body is over.
    Done,
}

/// What one call of [`ChunkedDecoder::decode`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Body data found, as a range of the input (may be empty).
    pub data: Range<usize>,
}

/// A strict, incremental chunked-body decoder (RFC 9112 §7.1). Trailer
/// fields are read and dropped.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    line: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size { digits: 0 },
            size: 0,
            line: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Whether the last chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes framing bytes from `input` up to and including the next run
    /// of data (or all of `input`). Call again with the rest.
    ///
    /// # Errors
    ///
    /// [`CodecError::BadChunk`] for anything but strict chunked framing.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, CodecError> {
        use ChunkState::*;
        let bad = Err(CodecError::BadChunk);
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                Size { digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 16 {
                            return bad;
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        self.size = self.size * 16 + u64::from(d);
                        self.state = Size { digits: digits + 1 };
                    }
                    _ if digits == 0 => return bad,
                    b';' | b' ' | b'\t' => self.state = Extension,
                    b'\r' => self.state = SizeLf,
                    _ => return bad,
                },
                Extension => match b {
                    b'\r' => self.state = SizeLf,
                    b'\n' => return bad,
                    0..=8 | 10..=31 | 127 => return bad,
                    _ => {}
                },
                SizeLf => {
                    if b != b'\n' {
                        return bad;
                    }
                    self.line = 0;
                    self.state = if self.size == 0 { TrailerStart } else { Data };
                    i += 1;
                    continue;
                }
                Data => {
                    let take =
                        (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    return Ok(Decoded {
                        consumed: i + take,
                        data: i..i + take,
                    });
                }
                DataCr => {
                    if b != b'\r' {
                        return bad;
                    }
                    self.state = DataLf;
                }
                DataLf => {
                    if b != b'\n' {
                        return bad;
                    }
                    self.state = Size { digits: 0 };
                    self.line = 0;
                    i += 1;
                    continue;
                }
                TrailerStart => match b {
                    b'\r' => self.state = EndLf,
                    b'\n' => return bad,
                    _ => self.state = Trailer,
                },
                Trailer => match b {
                    b'\r' => self.state = TrailerLf,
                    b'\n' => return bad,
                    _ => {}
                },
                TrailerLf => {
                    if b != b'\n' {
                        return bad;
                    }
                    self.state = TrailerStart;
                }
                EndLf => {
                    if b != b'\n' {
                        return bad;
                    }
                    self.state = Done;
                    return Ok(Decoded {
                        consumed: i + 1,
                        data: 0..0,
                    });
                }
                Done => {
                    return Ok(Decoded {
                        consumed: i,
                        data: 0..0,
                    });
                }
            }
            self.line += 1;
            let limit = match self.state {
                Trailer | TrailerLf | TrailerStart | EndLf => MAX_TRAILER_BYTES,
                _ => MAX_CHUNK_LINE,
            };
            if self.line > limit {
                return bad;
            }
            i += 1;
        }
        Ok(Decoded {
            consumed: input.len(),
            data: 0..0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bytes: &[u8]) -> Result<(Head, Framing), CodecError> {
        let mut head = Head::default();
        assert!(parse_request(bytes, &mut head)?, "incomplete");
        let framing = request_framing(&head, bytes)?;
        Ok((head, framing))
    }

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, bool), CodecError> {
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        let mut pos = 0;
        // Feed one byte at a time to exercise every state boundary.
        while pos < input.len() && !d.is_done() {
            let end = pos + 1;
            let step = d.decode(&input[pos..end])?;
            out.extend_from_slice(&input[pos..end][step.data.clone()]);
            if step.consumed == 0 {
                break;
            }
            pos += step.consumed;
        }
        Ok((out, d.is_done()))
    }

    #[test]
    fn parses_simple_request_in_place() {
        let bytes = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\nrest";
        let (head, framing) = request(bytes).unwrap();
        assert_eq!(head.len, bytes.len() - 4);
        let view = Request {
            head: &head,
            buf: bytes,
        };
        assert_eq!(view.method(), b"GET");
        assert_eq!(view.target(), b"/a?b=1");
        assert_eq!(view.host(), b"x");
        assert_eq!(view.header("x-a"), Some(&b"1"[..]));
        assert_eq!(framing, Framing::Empty);
    }

    #[test]
    fn lines_are_the_bytes_as_received() {
        let bytes = b"\r\nGET / HTTP/1.1\r\nHost:x \r\nX-A: 1\r\n\r\nbody";
        let (head, _) = request(bytes).unwrap();
        assert_eq!(&bytes[head.start_line()], b"GET / HTTP/1.1\r\n");
        let lines: Vec<&[u8]> = head.field_lines().map(|(_, r)| &bytes[r]).collect();
        assert_eq!(lines, [&b"Host:x \r\n"[..], b"X-A: 1\r\n"]);

        let mut res = Head::default();
        assert!(parse_response(b"HTTP/1.0 200 OK\r\n\r\n", &mut res).unwrap());
        assert_eq!(res.start_line(), 0..17);
        assert_eq!(res.field_lines().count(), 0);
    }

    #[test]
    fn partial_head_is_not_an_error() {
        let mut head = Head::default();
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost:", &mut head),
            Ok(false)
        );
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        let cases: &[(&[u8], CodecError)] = &[
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                CodecError::LengthAndChunked,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                CodecError::BadLength,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
                CodecError::BadLength,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                CodecError::BadTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                CodecError::BadTransferEncoding,
            ),
            (b"GET / HTTP/1.1\nHost: x\r\n\r\n", CodecError::BareLf),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n", CodecError::BareLf),
            (b"GET / HTTP/1.1\r\n\r\n", CodecError::BadHostOrTarget),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", CodecError::BadHostOrTarget),
            (b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", CodecError::BadHostOrTarget),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                request(bytes).err(),
                Some(*expected),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn obs_fold_and_bare_cr_are_rejected() {
        for bytes in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
        ] {
            assert!(
                matches!(
                    request(bytes),
                    Err(CodecError::Malformed(_) | CodecError::BareLf)
                ),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn equal_duplicate_lengths_count_once() {
        let bytes =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(request(bytes).unwrap().1, Framing::Length(3));
    }

    #[test]
    fn too_many_headers_is_too_large() {
        let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..DEFAULT_MAX_HEADERS {
            bytes.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        assert_eq!(request(&bytes).err(), Some(CodecError::TooLarge));
    }

    #[test]
    fn response_framing_rules() {
        let parse = |bytes: &[u8], head_req: bool| {
            let mut head = Head::default();
            assert!(parse_response(bytes, &mut head).unwrap());
            response_framing(&head, bytes, head_req)
        };
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Ok(Framing::Empty)
        );
        assert_eq!(parse(b"HTTP/1.1 204 No\r\n\r\n", false), Ok(Framing::Empty));
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\n\r\n", false),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            parse(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Ok(Framing::Chunked)
        );
    }

    #[test]
    fn chunked_decodes_byte_by_byte() {
        let (out, done) =
            decode_all(b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n").unwrap();
        assert_eq!(out, b"hello0123456789");
        assert!(done);
    }

    #[test]
    fn chunked_decodes_in_one_call_per_data_run() {
        let input = b"3\r\nabc\r\n0\r\n\r\nNEXT";
        let mut d = ChunkedDecoder::default();
        let step = d.decode(input).unwrap();
        assert_eq!(
            step,
            Decoded {
                consumed: 6,
                data: 3..6
            }
        );
        let step = d.decode(&input[6..]).unwrap();
        assert_eq!(
            step,
            Decoded {
                consumed: 7,
                data: 0..0
            }
        );
        assert!(d.is_done());
    }

    #[test]
    fn bad_chunks_are_rejected() {
        for input in [
            &b"g\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"3\r\nabcX\r\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
            b"0x5\r\n",
            b"3\r\nabc\r\n0\r\n\n",
        ] {
            assert_eq!(
                decode_all(input).err(),
                Some(CodecError::BadChunk),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn encodes_chunks() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello world, this is 26 b!");
        encode_chunk(&mut out, b"");
        out.extend_from_slice(CHUNKED_END);
        assert_eq!(out, b"1a\r\nhello world, this is 26 b!\r\n0\r\n\r\n");
    }

    #[test]
    fn hop_by_hop_fields_are_the_fixed_list_and_every_connection_token() {
        let bytes = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-A\r\n\
            Connection: x-b,x-c , X-D,x-e\r\nKeep-Alive: 5\r\nX-E: 1\r\nX-F: 2\r\n\
            Content-Length: 0\r\n\r\n";
        let (head, _) = request(bytes).unwrap();
        let hop = HopByHop::new(&head, bytes);
        for name in [
            "connection",
            "Keep-Alive",
            "content-length",
            "TE",
            "upgrade",
        ] {
            assert!(hop.contains(name.as_bytes()), "{name}");
        }
        // Five tokens: four cached, the fifth looked up in the head.
        for name in ["x-a", "X-B", "x-c", "x-d", "X-E", "close"] {
            assert!(hop.contains(name.as_bytes()), "{name}");
        }
        for name in ["host", "x-f", "x-", ""] {
            assert!(!hop.contains(name.as_bytes()), "{name}");
        }
    }
}
