//! The binary container format of a Sluice route table file.
//!
//! `routec compile` writes one of these files; the proxy loads it with
//! [`Container::parse`]. The container is a small header, a directory of
//! sections, and the section payloads. It knows nothing about what a payload
//! means: the route compiler stores, for example, a [`SectionKind::META`]
//! section and a [`SectionKind::DFA`] section holding a `regex-automata` dense
//! DFA that the proxy deserializes zero-copy with `DFA::from_bytes`.
//!
//! # Why alignment and native endianness
//!
//! `DFA::from_bytes` refuses bytes that are not 4-byte aligned and reads them
//! in native byte order. So every payload starts at a file offset that is a
//! multiple of 8, and the file is loaded into a buffer whose first byte is
//! 8-aligned ([`AlignedBytes`]); together that makes every payload 8-aligned
//! in memory. All integers in the file are written in the byte order of the
//! machine that wrote it, and an endianness marker lets a reader on a machine
//! of the other byte order reject the file with
//! [`FormatError::ForeignEndianness`] instead of misreading it.
//!
//! # Layout
//!
//! All integers are native-endian. `n` is the section count.
//!
//! | offset | size   | field                                                          |
//! |-------:|-------:|----------------------------------------------------------------|
//! | 0      | 8      | magic: the bytes `b"SLUICERT"` ([`MAGIC`])                     |
//! | 8      | 4      | endianness marker: `u32` [`ENDIANNESS_MARKER`] (`0xFEFF_0001`) |
//! | 12     | 4      | format version: `u32`, [`FORMAT_VERSION`]                      |
//! | 16     | 8      | total file length in bytes: `u64`                              |
//! | 24     | 4      | checksum: `u32` CRC-32 (`crc32fast`) of bytes `[28, total)`    |
//! | 28     | 4      | section count `n`: `u32`, at most [`MAX_SECTIONS`]             |
//! | 32     | 24 × n | section directory, one entry per section (below)               |
//! | 32+24n | …      | section payloads, zero padding between them                    |
//!
//! The header is [`HEADER_LEN`] bytes. Each directory entry is
//! [`DIR_ENTRY_LEN`] bytes:
//!
//! | entry offset | size | field                                                |
//! |-------------:|-----:|------------------------------------------------------|
//! | 0            | 4    | kind: `u32` ([`SectionKind`])                        |
//! | 4            | 4    | flags: `u32`, reserved, must be 0                    |
//! | 8            | 8    | payload offset from the start of the file: `u64`     |
//! | 16           | 8    | payload length in bytes: `u64`                       |
//!
//! Payloads are stored in directory order: each starts at a multiple of
//! [`SECTION_ALIGN`] (8), at or after the end of the directory and at or
//! after the end of the previous section's payload. Padding bytes are zero
//! when written (they are covered by the checksum, their value is not checked
//! otherwise). A payload may be empty. The file ends at the end of the last
//! payload (or of the directory, if there are no sections).
//!
//! The checksum covers every byte after the checksum field, *including the
//! section count*: a corrupted count could otherwise silently hide sections.
//! The bytes before it are each checked on their own (magic, marker,
//! version, length).
//!
//! # Validation order
//!
//! [`Container::parse`] checks, in this order, and stops at the first failure:
//!
//! 1. the buffer holds at least the [`HEADER_LEN`]-byte header
//!    ([`FormatError::TooShort`]);
//! 2. the magic number ([`FormatError::BadMagic`]);
//! 3. the endianness marker: equal to [`ENDIANNESS_MARKER`] read natively, or
//!    else [`FormatError::ForeignEndianness`] if it is the byte-swapped
//!    marker, or [`FormatError::BadMagic`] if it is anything else (the magic
//!    and the marker together identify the file);
//! 4. the format version ([`FormatError::VersionMismatch`]);
//! 5. the total length field equals the buffer length
//!    ([`FormatError::LengthMismatch`]), which catches truncated files;
//! 6. the checksum ([`FormatError::ChecksumMismatch`]);
//! 7. the section count is at most [`MAX_SECTIONS`]
//!    ([`FormatError::TooManySections`]);
//! 8. each directory entry in order ([`FormatError::BadSection`]): the entry
//!    lies inside the file, its flags are 0, its payload offset is a multiple
//!    of 8, the payload starts after the directory and after the previous
//!    payload, `offset + length` does not overflow, and the payload ends
//!    inside the file.
//!
//! All arithmetic on values read from the file is checked, and no input can
//! make parsing panic.

use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// The 8 bytes every route table file starts with.
pub const MAGIC: [u8; 8] = *b"SLUICERT";

/// The format version this build writes and reads.
///
/// Bump it on any incompatible change to the container or to a payload.
pub const FORMAT_VERSION: u32 = 1;

/// The endianness marker, written at offset 8 in the writer's native order.
///
/// A reader that finds `ENDIANNESS_MARKER.swap_bytes()` there knows the file
/// comes from a machine of the other byte order.
pub const ENDIANNESS_MARKER: u32 = 0xFEFF_0001;

/// The most sections a file may declare.
pub const MAX_SECTIONS: u32 = 65_536;

/// Length of the fixed header in bytes (magic through section count).
pub const HEADER_LEN: usize = 32;

/// Length of one section directory entry in bytes.
pub const DIR_ENTRY_LEN: usize = 24;

/// Every section payload starts at a file offset that is a multiple of this.
pub const SECTION_ALIGN: usize = 8;

/// Offset of the checksum field; the checksum covers `[CRC_START, total)`.
const CRC_OFFSET: usize = 24;
/// First byte covered by the checksum (the section count field).
const CRC_START: usize = 28;

/// The kind of a section, an open set of `u32` tags.
///
/// The container accepts any kind; it is up to the reader of the route table
/// to decide which kinds it needs and to ignore or reject the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SectionKind(pub u32);

impl SectionKind {
    /// Route table metadata (compiler version, route names, and so on).
    pub const META: SectionKind = SectionKind(1);
    /// A serialized `regex-automata` dense DFA (native endian), the path matcher.
    pub const DFA: SectionKind = SectionKind(2);
}

/// Why a route table file was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The buffer is shorter than the fixed header.
    #[error(
        "file is too short to be a sluice route table ({len} bytes, the header alone is 32); \
         compile one with `routec compile`"
    )]
    TooShort {
        /// Length of the buffer that was given.
        len: usize,
    },
    /// The file does not start with [`MAGIC`] followed by a known endianness marker.
    #[error("not a sluice route table (bad magic number); compile one with `routec compile`")]
    BadMagic,
    /// The file was written on a machine with the other byte order.
    #[error(
        "route table was compiled on a machine with the opposite byte order \
         (this machine is {}-endian); recompile it on this machine with `routec compile`",
        native_endianness_name()
    )]
    ForeignEndianness,
    /// The file has a format version this build does not read.
    #[error(
        "route table format version {found} is not supported (this build reads version \
         {expected}); recompile it with this build's `routec compile`"
    )]
    VersionMismatch {
        /// The version this build reads ([`FORMAT_VERSION`]).
        expected: u32,
        /// The version in the file.
        found: u32,
    },
    /// The length recorded in the header is not the length of the buffer.
    #[error(
        "route table is truncated or has extra bytes at the end (its header says {header} \
         bytes, the file has {actual}); copy it again or recompile it"
    )]
    LengthMismatch {
        /// The total length recorded in the header.
        header: u64,
        /// The length of the buffer that was given.
        actual: usize,
    },
    /// The checksum in the header does not match the file contents.
    #[error("route table is corrupt (checksum mismatch); recompile it")]
    ChecksumMismatch {
        /// The checksum recorded in the header.
        expected: u32,
        /// The checksum computed over the file contents.
        found: u32,
    },
    /// The header declares more than [`MAX_SECTIONS`] sections.
    #[error(
        "route table declares {count} sections, more than the limit of 65536; \
         the file is corrupt, recompile it"
    )]
    TooManySections {
        /// The section count recorded in the header.
        count: u32,
    },
    /// A section directory entry is invalid.
    #[error("route table section {index} is invalid ({reason}); the file is corrupt, recompile it")]
    BadSection {
        /// Index of the offending entry in the section directory.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A section index past the end of the directory was asked for.
    #[error(
        "route table has no section {index}; it may have been compiled by an older \
         `routec`, recompile it"
    )]
    NoSuchSection {
        /// The index that was asked for.
        index: usize,
    },
}

fn native_endianness_name() -> &'static str {
    if cfg!(target_endian = "big") {
        "big"
    } else {
        "little"
    }
}

/// Reads a native-endian `u32` at `at`, or `None` if it is out of bounds.
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let array: [u8; 4] = bytes.get(at..end)?.try_into().ok()?;
    Some(u32::from_ne_bytes(array))
}

/// Reads a native-endian `u64` at `at`, or `None` if it is out of bounds.
fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    let array: [u8; 8] = bytes.get(at..end)?.try_into().ok()?;
    Some(u64::from_ne_bytes(array))
}

/// Rounds `n` up to a multiple of [`SECTION_ALIGN`].
fn align_up(n: usize) -> usize {
    n.next_multiple_of(SECTION_ALIGN)
}

/// Builds a route table file section by section.
///
/// ```
/// use route_compiler::format::{Container, SectionKind, Writer};
///
/// let mut writer = Writer::new();
/// writer.push(SectionKind::META, b"meta");
/// writer.push(SectionKind::DFA, &[1, 2, 3]);
/// let bytes = writer.finish();
/// let container = Container::parse(&bytes).unwrap();
/// assert_eq!(container.section(1).unwrap(), (SectionKind::DFA, &[1u8, 2, 3][..]));
/// ```
#[derive(Debug, Default)]
pub struct Writer {
    /// `(kind, offset of the payload in body, payload length)` per section.
    entries: Vec<(SectionKind, usize, usize)>,
    /// The payloads, each starting at a multiple of 8, zero padding between.
    body: Vec<u8>,
}

impl Writer {
    /// Creates a writer with no sections.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a section; returns its index in the directory.
    ///
    /// # Panics
    ///
    /// Panics if this would make more than [`MAX_SECTIONS`] sections, since
    /// no reader would accept the file.
    pub fn push(&mut self, kind: SectionKind, payload: &[u8]) -> usize {
        let index = self.entries.len();
        assert!(
            u32::try_from(index).is_ok_and(|i| i < MAX_SECTIONS),
            "a route table holds at most {MAX_SECTIONS} sections"
        );
        // The directory ends at a multiple of 8 (32 + 24n), so aligning the
        // body offset aligns the file offset.
        let start = align_up(self.body.len());
        self.body.resize(start, 0);
        self.body.extend_from_slice(payload);
        self.entries.push((kind, start, payload.len()));
        index
    }

    /// The finished file bytes.
    pub fn finish(self) -> Vec<u8> {
        let dir_end = HEADER_LEN + DIR_ENTRY_LEN * self.entries.len();
        let total = dir_end + self.body.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&ENDIANNESS_MARKER.to_ne_bytes());
        out.extend_from_slice(&FORMAT_VERSION.to_ne_bytes());
        out.extend_from_slice(&(total as u64).to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes()); // checksum, filled in below
        // `push` keeps the count at most MAX_SECTIONS, which fits a u32.
        out.extend_from_slice(&(self.entries.len() as u32).to_ne_bytes());
        for &(kind, start, len) in &self.entries {
            out.extend_from_slice(&kind.0.to_ne_bytes());
            out.extend_from_slice(&0u32.to_ne_bytes()); // flags
            out.extend_from_slice(&((dir_end + start) as u64).to_ne_bytes());
            out.extend_from_slice(&(len as u64).to_ne_bytes());
        }
        out.extend_from_slice(&self.body);
        let crc = crc32fast::hash(&out[CRC_START..]);
        out[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_ne_bytes());
        out
    }
}

/// An owned byte buffer whose first byte is 8-aligned in memory.
///
/// Load route table files into one of these, so that the 8-aligned payload
/// offsets of the file are 8-aligned addresses too, as `DFA::from_bytes`
/// needs.
///
/// # Invariant
///
/// The bytes live in `buf[start..]`, where `start < 8` and
/// `buf.as_ptr() + start` is a multiple of 8. The vector is never grown or
/// shrunk after construction, so it never reallocates and the address stays
/// put. (`Clone` is implemented by hand for the same reason: a derived clone
/// would copy the vector to a new address with possibly different alignment.)
/// All of this is done in safe code: the address is only read, never
/// reinterpreted.
pub struct AlignedBytes {
    buf: Vec<u8>,
    start: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into a new 8-aligned buffer.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut buf: Vec<u8> = Vec::with_capacity(bytes.len().saturating_add(SECTION_ALIGN - 1));
        let start = padding_for(buf.as_ptr().addr());
        // The capacity covers `start + bytes.len()`, so this never reallocates.
        buf.resize(start, 0);
        buf.extend_from_slice(bytes);
        Self { buf, start }
    }

    /// Takes ownership of `bytes`, moving them in place to an 8-aligned
    /// position if needed (no copy if they already are, one copy at most
    /// otherwise).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let start = padding_for(bytes.as_ptr().addr());
        if start == 0 {
            return Self { buf: bytes, start };
        }
        match shift_in_place(bytes, start) {
            Ok(buf) if padding_for(buf.as_ptr().addr()) == start => Self { buf, start },
            // Not enough spare capacity (or the vector moved): copy instead.
            Ok(buf) => Self::copy_from(buf.get(start..).unwrap_or_default()),
            Err(buf) => Self::copy_from(&buf),
        }
    }

    /// Reads the file at `path` into an 8-aligned buffer.
    ///
    /// The file is read straight into a buffer with room for the alignment
    /// padding, then moved into place in that same buffer if the allocator
    /// did not already return an 8-aligned one.
    pub fn read_file(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let hint = file
            .metadata()
            .ok()
            .and_then(|m| usize::try_from(m.len()).ok())
            .unwrap_or(0);
        let mut buf: Vec<u8> = Vec::with_capacity(hint.saturating_add(SECTION_ALIGN - 1));
        file.read_to_end(&mut buf)?;
        Ok(Self::from_vec(buf))
    }

    /// The bytes; the slice starts at an 8-aligned address.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}

impl Clone for AlignedBytes {
    fn clone(&self) -> Self {
        Self::copy_from(self.as_bytes())
    }
}

impl std::fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBytes")
            .field("len", &self.as_bytes().len())
            .finish_non_exhaustive()
    }
}

impl AsRef<[u8]> for AlignedBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::ops::Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// How many bytes to skip from `addr` to reach a multiple of 8.
fn padding_for(addr: usize) -> usize {
    (SECTION_ALIGN - addr % SECTION_ALIGN) % SECTION_ALIGN
}

/// Moves the contents of `buf` up by `by` bytes within its allocation,
/// zero-filling the front. Gives the vector back unchanged if its spare
/// capacity is too small (so that this would reallocate).
fn shift_in_place(mut buf: Vec<u8>, by: usize) -> Result<Vec<u8>, Vec<u8>> {
    let len = buf.len();
    if buf.capacity() - len < by {
        return Err(buf);
    }
    buf.resize(len + by, 0);
    buf.copy_within(0..len, by);
    buf.iter_mut().take(by).for_each(|b| *b = 0);
    Ok(buf)
}

/// A validated, zero-copy view of a route table file.
#[derive(Debug, Clone)]
pub struct Container<'a> {
    bytes: &'a [u8],
    sections: Vec<(SectionKind, Range<usize>)>,
}

impl<'a> Container<'a> {
    /// Validates `bytes` as a route table file.
    ///
    /// See the [module documentation](self) for the order of the checks. On
    /// success every section's byte range is known to be inside `bytes`,
    /// 8-aligned relative to the start of `bytes` and disjoint from the
    /// header, the directory and the other sections. For the payloads to be
    /// 8-aligned in memory, `bytes` itself must start 8-aligned (load it with
    /// [`AlignedBytes`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Container<'a>, FormatError> {
        let len = bytes.len();
        if len < HEADER_LEN {
            return Err(FormatError::TooShort { len });
        }
        let field_u32 = |at| read_u32(bytes, at).ok_or(FormatError::TooShort { len });
        if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(FormatError::BadMagic);
        }
        let marker = field_u32(8)?;
        if marker == ENDIANNESS_MARKER.swap_bytes() {
            return Err(FormatError::ForeignEndianness);
        }
        if marker != ENDIANNESS_MARKER {
            return Err(FormatError::BadMagic);
        }
        let version = field_u32(12)?;
        if version != FORMAT_VERSION {
            return Err(FormatError::VersionMismatch {
                expected: FORMAT_VERSION,
                found: version,
            });
        }
        let total = read_u64(bytes, 16).ok_or(FormatError::TooShort { len })?;
        if usize::try_from(total).ok() != Some(len) {
            return Err(FormatError::LengthMismatch {
                header: total,
                actual: len,
            });
        }
        let expected = field_u32(CRC_OFFSET)?;
        let found = crc32fast::hash(bytes.get(CRC_START..).unwrap_or_default());
        if expected != found {
            return Err(FormatError::ChecksumMismatch { expected, found });
        }
        let count = field_u32(CRC_START)?;
        if count > MAX_SECTIONS {
            return Err(FormatError::TooManySections { count });
        }
        // At most 65_536 entries, so none of this can overflow even on 32-bit.
        let count = count as usize;
        let dir_end = HEADER_LEN + DIR_ENTRY_LEN * count;
        let mut sections = Vec::with_capacity(count.min(len / DIR_ENTRY_LEN));
        let mut prev_end = dir_end;
        for index in 0..count {
            let bad = |reason| FormatError::BadSection { index, reason };
            let at = HEADER_LEN + DIR_ENTRY_LEN * index;
            let (Some(kind), Some(flags), Some(offset), Some(length)) = (
                read_u32(bytes, at),
                read_u32(bytes, at + 4),
                read_u64(bytes, at + 8),
                read_u64(bytes, at + 16),
            ) else {
                return Err(bad("its directory entry extends past the end of the file"));
            };
            if flags != 0 {
                return Err(bad("reserved flags are not zero"));
            }
            if offset % SECTION_ALIGN as u64 != 0 {
                return Err(bad("payload offset is not a multiple of 8"));
            }
            let Some(end) = offset.checked_add(length) else {
                return Err(bad("payload offset plus length overflows"));
            };
            // `end <= total == len`, so both fit in usize from here on.
            if end > total {
                return Err(bad("payload extends past the end of the file"));
            }
            let (Ok(start), Ok(end)) = (usize::try_from(offset), usize::try_from(end)) else {
                return Err(bad("payload extends past the end of the file"));
            };
            if start < dir_end {
                return Err(bad("payload overlaps the header or the section directory"));
            }
            if start < prev_end {
                return Err(bad(
                    "payload overlaps the previous section (payloads must be stored in \
                     directory order)",
                ));
            }
            prev_end = end;
            sections.push((SectionKind(kind), start..end));
        }
        Ok(Container { bytes, sections })
    }

    /// The sections in directory order, with their payloads.
    pub fn sections(&self) -> impl Iterator<Item = (SectionKind, &'a [u8])> + '_ {
        let bytes = self.bytes;
        self.sections
            .iter()
            .map(move |(kind, range)| (*kind, bytes.get(range.clone()).unwrap_or_default()))
    }

    /// The section at `index` in the directory, with its payload.
    pub fn section(&self, index: usize) -> Result<(SectionKind, &'a [u8]), FormatError> {
        let (kind, range) = self
            .sections
            .get(index)
            .ok_or(FormatError::NoSuchSection { index })?;
        let payload = self.bytes.get(range.clone()).unwrap_or_default();
        Ok((*kind, payload))
    }

    /// The number of sections.
    pub fn section_count(&self) -> usize {
        self.sections.len()
    }

    /// The payload of the first section of kind `kind`, if there is one.
    pub fn find(&self, kind: SectionKind) -> Option<&'a [u8]> {
        self.sections().find(|&(k, _)| k == kind).map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payloads of odd sizes, including an empty one.
    fn payloads() -> Vec<(SectionKind, Vec<u8>)> {
        let ramp = |n: usize, seed: u8| (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        vec![
            (SectionKind::META, ramp(13, 1)),
            (SectionKind::DFA, ramp(1, 2)),
            (SectionKind(7), Vec::new()),
            (SectionKind::DFA, ramp(1001, 3)),
            (SectionKind(99), ramp(8, 4)),
            (SectionKind(0xFFFF_FFFF), ramp(3, 5)),
        ]
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new();
        for (i, (kind, payload)) in payloads().iter().enumerate() {
            assert_eq!(w.push(*kind, payload), i);
        }
        w.finish()
    }

    fn set_u32(v: &mut [u8], at: usize, x: u32) {
        v[at..at + 4].copy_from_slice(&x.to_ne_bytes());
    }

    fn set_u64(v: &mut [u8], at: usize, x: u64) {
        v[at..at + 8].copy_from_slice(&x.to_ne_bytes());
    }

    fn get_u64(v: &[u8], at: usize) -> u64 {
        read_u64(v, at).unwrap()
    }

    fn fix_crc(v: &mut [u8]) {
        let crc = crc32fast::hash(&v[CRC_START..]);
        set_u32(v, CRC_OFFSET, crc);
    }

    /// Offset in the directory of field `field_at` of entry `index`.
    fn entry(index: usize, field_at: usize) -> usize {
        HEADER_LEN + DIR_ENTRY_LEN * index + field_at
    }

    fn bad_section(bytes: &[u8]) -> (usize, &'static str) {
        match Container::parse(bytes) {
            Err(FormatError::BadSection { index, reason }) => (index, reason),
            other => panic!("expected BadSection, got {other:?}"),
        }
    }

    fn offset_in(base: &[u8], part: &[u8]) -> usize {
        part.as_ptr().addr() - base.as_ptr().addr()
    }

    /// Checks what a successful parse promises, for any input.
    fn check_invariants(bytes: &[u8], c: &Container<'_>) {
        let dir_end = HEADER_LEN + DIR_ENTRY_LEN * c.section_count();
        let mut prev_end = dir_end;
        for (_, p) in c.sections() {
            let start = offset_in(bytes, p);
            assert_eq!(start % 8, 0);
            assert!(start >= prev_end);
            assert!(start + p.len() <= bytes.len());
            prev_end = start + p.len();
        }
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let c = Container::parse(&bytes).unwrap();
        let want = payloads();
        assert_eq!(c.section_count(), want.len());
        let got: Vec<_> = c.sections().collect();
        assert_eq!(got.len(), want.len());
        for (i, ((kind, payload), (wkind, wpayload))) in got.iter().zip(&want).enumerate() {
            assert_eq!(kind, wkind);
            assert_eq!(payload, wpayload);
            assert_eq!(offset_in(&bytes, payload) % 8, 0, "section {i}");
            assert_eq!(c.section(i).unwrap(), (*kind, *payload));
        }
        check_invariants(&bytes, &c);
        assert_eq!(c.find(SectionKind::DFA), Some(&want[1].1[..]));
        assert_eq!(c.find(SectionKind(12345)), None);
        // The file ends at the end of the last payload.
        let last = got.last().unwrap().1;
        assert_eq!(offset_in(&bytes, last) + last.len(), bytes.len());
        assert_eq!(get_u64(&bytes, 16), bytes.len() as u64);
    }

    #[test]
    fn round_trip_aligned_in_memory() {
        let bytes = sample();
        // Deliberately start from every possible misalignment.
        for skew in 0..8 {
            let mut padded = vec![0u8; skew];
            padded.extend_from_slice(&bytes);
            let src = &padded[skew..];
            let aligned = AlignedBytes::copy_from(src);
            assert_eq!(aligned.as_bytes(), &bytes[..]);
            assert_eq!(aligned.as_bytes().as_ptr().addr() % 8, 0);
            let c = Container::parse(aligned.as_bytes()).unwrap();
            for (_, payload) in c.sections() {
                assert_eq!(payload.as_ptr().addr() % 8, 0);
            }
        }
    }

    #[test]
    fn read_file_is_aligned() {
        let bytes = sample();
        let dir = std::env::temp_dir().join(format!("sluice-format-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for len in [0, 1, 7, 8, 9, 100, bytes.len()] {
            let path = dir.join(format!("t{len}.rt"));
            std::fs::write(&path, &bytes[..len]).unwrap();
            let loaded = AlignedBytes::read_file(&path).unwrap();
            assert_eq!(loaded.as_bytes(), &bytes[..len]);
            assert_eq!(loaded.as_bytes().as_ptr().addr() % 8, 0);
        }
        let path = dir.join("full.rt");
        std::fs::write(&path, &bytes).unwrap();
        let loaded = AlignedBytes::read_file(&path).unwrap();
        let c = Container::parse(&loaded).unwrap();
        for (_, payload) in c.sections() {
            assert_eq!(payload.as_ptr().addr() % 8, 0);
        }
        let missing = AlignedBytes::read_file(&dir.join("missing.rt"));
        assert!(missing.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn aligned_bytes_clone_and_from_vec() {
        let a = AlignedBytes::copy_from(b"hello, world");
        let b = a.clone();
        assert_eq!(b.as_bytes(), b"hello, world");
        assert_eq!(b.as_bytes().as_ptr().addr() % 8, 0);
        let v = AlignedBytes::from_vec(b"abc".to_vec());
        assert_eq!(&*v, b"abc");
        assert_eq!(v.as_bytes().as_ptr().addr() % 8, 0);
        let e = AlignedBytes::from_vec(Vec::new());
        assert!(e.as_bytes().is_empty());
        assert_eq!(e.as_bytes().as_ptr().addr() % 8, 0);
        assert_eq!(format!("{a:?}"), "AlignedBytes { len: 12, .. }");
    }

    #[test]
    fn shift_in_place_moves_contents() {
        for by in 0..8 {
            let mut v = Vec::with_capacity(5 + by);
            v.extend_from_slice(&[1, 2, 3, 4, 5]);
            let addr = v.as_ptr().addr();
            let v = shift_in_place(v, by).unwrap();
            assert_eq!(v.as_ptr().addr(), addr, "must not reallocate");
            assert!(v[..by].iter().all(|&b| b == 0));
            assert_eq!(&v[by..], &[1, 2, 3, 4, 5]);
        }
        let mut v = Vec::with_capacity(5);
        v.extend_from_slice(&[1, 2, 3, 4, 5]);
        let cap = v.capacity();
        if cap - 5 < 7 {
            assert_eq!(shift_in_place(v, 7).unwrap_err(), [1, 2, 3, 4, 5]);
        }
        assert_eq!(padding_for(0), 0);
        assert_eq!(padding_for(1), 7);
        assert_eq!(padding_for(7), 1);
        assert_eq!(padding_for(16), 0);
    }

    #[test]
    fn empty_file_round_trips() {
        let bytes = Writer::new().finish();
        assert_eq!(bytes.len(), HEADER_LEN);
        let c = Container::parse(&bytes).unwrap();
        assert_eq!(c.section_count(), 0);
        assert_eq!(c.sections().count(), 0);
        assert!(matches!(
            c.section(0),
            Err(FormatError::NoSuchSection { index: 0 })
        ));
    }

    #[test]
    fn error_too_short() {
        for len in [0, 1, 31] {
            let bytes = &sample()[..len];
            assert!(matches!(
                Container::parse(bytes),
                Err(FormatError::TooShort { len: l }) if l == len
            ));
        }
    }

    #[test]
    fn error_bad_magic() {
        let mut bytes = sample();
        bytes[0] = b'X';
        assert!(matches!(
            Container::parse(&bytes),
            Err(FormatError::BadMagic)
        ));
        let mut bytes = sample();
        set_u32(&mut bytes, 8, 0x1234_5678);
        assert!(matches!(
            Container::parse(&bytes),
            Err(FormatError::BadMagic)
        ));
        let e = FormatError::BadMagic.to_string();
        assert_eq!(
            e,
            "not a sluice route table (bad magic number); compile one with `routec compile`"
        );
    }

    #[test]
    fn error_foreign_endianness() {
        let mut bytes = sample();
        set_u32(&mut bytes, 8, ENDIANNESS_MARKER.swap_bytes());
        let err = Container::parse(&bytes).unwrap_err();
        assert!(matches!(err, FormatError::ForeignEndianness));
        assert!(err.to_string().contains("opposite byte order"));
        // Endianness is checked before the version: a foreign file's version
        // field would be byte-swapped nonsense.
        set_u32(&mut bytes, 12, 0x0100_0000);
        assert!(matches!(
            Container::parse(&bytes),
            Err(FormatError::ForeignEndianness)
        ));
    }

    #[test]
    fn error_version_mismatch() {
        let mut bytes = sample();
        set_u32(&mut bytes, 12, 2);
        let err = Container::parse(&bytes).unwrap_err();
        assert!(matches!(
            err,
            FormatError::VersionMismatch {
                expected: 1,
                found: 2
            }
        ));
        assert_eq!(
            err.to_string(),
            "route table format version 2 is not supported (this build reads version 1); \
             recompile it with this build's `routec compile`"
        );
    }

    #[test]
    fn error_length_mismatch() {
        let mut bytes = sample();
        let n = bytes.len();
        bytes.push(0);
        assert!(matches!(
            Container::parse(&bytes),
            Err(FormatError::LengthMismatch { header, actual })
                if header == n as u64 && actual == n + 1
        ));
        let mut bytes = sample();
        set_u64(&mut bytes, 16, u64::MAX);
        assert!(matches!(
            Container::parse(&bytes),
            Err(FormatError::LengthMismatch {
                header: u64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn error_checksum_mismatch() {
        let mut bytes = sample();
        let stored = read_u32(&bytes, CRC_OFFSET).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let err = Container::parse(&bytes).unwrap_err();
        assert!(matches!(
            err,
            FormatError::ChecksumMismatch { expected, found }
                if expected == stored && found == crc32fast::hash(&bytes[CRC_START..])
        ));
        assert_eq!(
            err.to_string(),
            "route table is corrupt (checksum mismatch); recompile it"
        );
    }

    #[test]
    fn error_too_many_sections() {
        let mut bytes = sample();
        set_u32(&mut bytes, CRC_START, MAX_SECTIONS + 1);
        fix_crc(&mut bytes);
        assert!(matches!(
            Container::parse(&bytes),
            Err(FormatError::TooManySections { count: 65_537 })
        ));
        set_u32(&mut bytes, CRC_START, u32::MAX);
        fix_crc(&mut bytes);
        assert!(matches!(
            Container::parse(&bytes),
            Err(FormatError::TooManySections { count: u32::MAX })
        ));
        // Exactly the limit is allowed by the count check (and then fails on
        // the directory, which this small file cannot hold).
        set_u32(&mut bytes, CRC_START, MAX_SECTIONS);
        fix_crc(&mut bytes);
        assert!(matches!(
            Container::parse(&bytes),
            Err(FormatError::BadSection { .. })
        ));
    }

    #[test]
    fn writer_accepts_max_sections() {
        let mut w = Writer::new();
        for i in 0..MAX_SECTIONS as usize {
            assert_eq!(w.push(SectionKind(i as u32), &[]), i);
        }
        let bytes = w.finish();
        let c = Container::parse(&bytes).unwrap();
        assert_eq!(c.section_count(), MAX_SECTIONS as usize);
        assert_eq!(c.section(65_535).unwrap(), (SectionKind(65_535), &[][..]));
    }

    #[test]
    fn error_bad_section_entry_past_end() {
        let mut bytes = Writer::new().finish();
        set_u32(&mut bytes, CRC_START, 1);
        fix_crc(&mut bytes);
        assert_eq!(
            bad_section(&bytes),
            (0, "its directory entry extends past the end of the file")
        );
    }

    #[test]
    fn error_bad_section_flags() {
        let mut bytes = sample();
        set_u32(&mut bytes, entry(2, 4), 1);
        fix_crc(&mut bytes);
        assert_eq!(bad_section(&bytes), (2, "reserved flags are not zero"));
    }

    #[test]
    fn error_bad_section_misaligned() {
        let mut bytes = sample();
        let off = get_u64(&bytes, entry(3, 8));
        set_u64(&mut bytes, entry(3, 8), off + 4);
        fix_crc(&mut bytes);
        assert_eq!(
            bad_section(&bytes),
            (3, "payload offset is not a multiple of 8")
        );
    }

    #[test]
    fn error_bad_section_overflow() {
        let mut bytes = sample();
        set_u64(&mut bytes, entry(1, 16), u64::MAX);
        fix_crc(&mut bytes);
        assert_eq!(
            bad_section(&bytes),
            (1, "payload offset plus length overflows")
        );
    }

    #[test]
    fn error_bad_section_past_end() {
        let mut bytes = sample();
        let last = payloads().len() - 1;
        let len = get_u64(&bytes, entry(last, 16));
        set_u64(&mut bytes, entry(last, 16), len + 1);
        fix_crc(&mut bytes);
        assert_eq!(
            bad_section(&bytes),
            (last, "payload extends past the end of the file")
        );
        let mut bytes = sample();
        set_u64(&mut bytes, entry(0, 8), 1 << 40);
        fix_crc(&mut bytes);
        assert_eq!(
            bad_section(&bytes),
            (0, "payload extends past the end of the file")
        );
    }

    #[test]
    fn error_bad_section_overlaps_directory() {
        let mut bytes = sample();
        set_u64(&mut bytes, entry(0, 8), 24);
        fix_crc(&mut bytes);
        assert_eq!(
            bad_section(&bytes),
            (0, "payload overlaps the header or the section directory")
        );
        let mut bytes = sample();
        set_u64(&mut bytes, entry(0, 8), 0);
        fix_crc(&mut bytes);
        assert_eq!(bad_section(&bytes).0, 0);
    }

    #[test]
    fn error_bad_section_overlaps_previous() {
        let mut bytes = sample();
        let off0 = get_u64(&bytes, entry(0, 8));
        set_u64(&mut bytes, entry(1, 8), off0 + 8); // inside section 0 (13 bytes)
        fix_crc(&mut bytes);
        let (index, reason) = bad_section(&bytes);
        assert_eq!(index, 1);
        assert!(reason.starts_with("payload overlaps the previous section"));
        // Out of directory order also counts.
        let mut bytes = sample();
        let off3 = get_u64(&bytes, entry(3, 8));
        let off4 = get_u64(&bytes, entry(4, 8));
        set_u64(&mut bytes, entry(3, 8), off4);
        set_u64(&mut bytes, entry(4, 8), off3);
        fix_crc(&mut bytes);
        assert_eq!(bad_section(&bytes).0, 3);
    }

    #[test]
    fn error_no_such_section() {
        let bytes = sample();
        let c = Container::parse(&bytes).unwrap();
        let n = payloads().len();
        assert!(matches!(
            c.section(n),
            Err(FormatError::NoSuchSection { index }) if index == n
        ));
        assert!(matches!(
            c.section(usize::MAX),
            Err(FormatError::NoSuchSection { .. })
        ));
    }

    #[test]
    fn every_error_displays() {
        let errors = [
            FormatError::TooShort { len: 3 },
            FormatError::BadMagic,
            FormatError::ForeignEndianness,
            FormatError::VersionMismatch {
                expected: 1,
                found: 9,
            },
            FormatError::LengthMismatch {
                header: 10,
                actual: 9,
            },
            FormatError::ChecksumMismatch {
                expected: 1,
                found: 2,
            },
            FormatError::TooManySections { count: 70_000 },
            FormatError::BadSection {
                index: 4,
                reason: "reserved flags are not zero",
            },
            FormatError::NoSuchSection { index: 5 },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(
                text.contains("routec") || text.contains("recompile") || text.contains("copy"),
                "{text}"
            );
        }
    }

    #[test]
    fn every_single_byte_flip_is_rejected() {
        let bytes = sample();
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                let err = Container::parse(&b).unwrap_err();
                let ok = match i {
                    0..8 => matches!(err, FormatError::BadMagic),
                    8..12 => matches!(err, FormatError::BadMagic),
                    12..16 => matches!(err, FormatError::VersionMismatch { .. }),
                    16..24 => matches!(err, FormatError::LengthMismatch { .. }),
                    _ => matches!(err, FormatError::ChecksumMismatch { .. }),
                };
                assert!(ok, "byte {i} ^ {mask:#x}: {err:?}");
            }
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = sample();
        for len in 0..bytes.len() {
            let err = Container::parse(&bytes[..len]).unwrap_err();
            if len < HEADER_LEN {
                assert!(
                    matches!(err, FormatError::TooShort { .. }),
                    "{len}: {err:?}"
                );
            } else {
                assert!(
                    matches!(err, FormatError::LengthMismatch { .. }),
                    "{len}: {err:?}"
                );
            }
        }
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random inputs never panic; whatever parses keeps the promises.
    #[test]
    fn random_inputs_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let valid = sample();
        let mut parsed = 0;
        for iteration in 0..20_000 {
            let mut bytes: Vec<u8>;
            match iteration % 4 {
                // Pure noise.
                0 => {
                    let len = rng.below(300) as usize;
                    bytes = (0..len).map(|_| rng.next() as u8).collect();
                }
                // A valid header (with a right length and checksum) over noise,
                // so that the directory checks are reached.
                1 => {
                    let len = HEADER_LEN + rng.below(400) as usize;
                    bytes = (0..len).map(|_| rng.next() as u8).collect();
                    bytes[..HEADER_LEN].copy_from_slice(&valid[..HEADER_LEN]);
                    set_u64(&mut bytes, 16, len as u64);
                    set_u32(&mut bytes, CRC_START, rng.below(20) as u32);
                    fix_crc(&mut bytes);
                }
                // A valid file with directory fields replaced by plausible
                // values, checksum fixed up.
                2 => {
                    bytes = valid.clone();
                    let n = payloads().len();
                    for _ in 0..=rng.below(3) {
                        let i = rng.below(n as u64) as usize;
                        let value = match rng.below(4) {
                            0 => rng.below(bytes.len() as u64 + 16),
                            1 => rng.below(bytes.len() as u64 / 8 + 2) * 8,
                            2 => u64::MAX - rng.below(16),
                            _ => rng.next(),
                        };
                        match rng.below(3) {
                            0 => set_u64(&mut bytes, entry(i, 8), value),
                            1 => set_u64(&mut bytes, entry(i, 16), value),
                            _ => set_u32(&mut bytes, entry(i, 0), value as u32),
                        }
                    }
                    if rng.below(4) == 0 {
                        set_u32(&mut bytes, CRC_START, rng.below(n as u64 + 3) as u32);
                    }
                    fix_crc(&mut bytes);
                }
                // A valid file, randomly truncated or flipped, checksum
                // sometimes fixed.
                _ => {
                    bytes = valid.clone();
                    let flips = rng.below(4);
                    for _ in 0..flips {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] ^= rng.next() as u8 | 1;
                    }
                    if rng.below(2) == 0 {
                        bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
                    }
                    if bytes.len() >= HEADER_LEN && rng.below(2) == 0 {
                        fix_crc(&mut bytes);
                    }
                }
            }
            if let Ok(c) = Container::parse(&bytes) {
                parsed += 1;
                check_invariants(&bytes, &c);
                let _ = c.section(rng.below(10) as usize);
            }
        }
        assert!(
            parsed > 100,
            "the fuzz loop should reach valid files too ({parsed})"
        );
    }
}
