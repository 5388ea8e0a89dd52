//! HTTP/2 frame-size rules the `h2` crate does not answer with the code
//! RFC 9113 asks for: a pure checker over the bytes a client sends.
//!
//! The `h2` crate reports every frame it cannot decode as
//! `PROTOCOL_ERROR`; RFC 9113 wants `FRAME_SIZE_ERROR` for frames whose
//! length is wrong for their type (§4.2, §6.4, §6.5, §6.7, §6.8, §6.9) and
//! for frames larger than `SETTINGS_MAX_FRAME_SIZE`, and
//! `FLOW_CONTROL_ERROR` for a `SETTINGS_INITIAL_WINDOW_SIZE` above 2^31-1
//! (§6.5.2). [`FrameCheck`] reads the 9-byte frame headers of the client's
//! byte stream and the 6-byte entries of SETTINGS frames (it never buffers
//! other payloads) and says where the first offending frame starts, so
//! the connection loop can stop feeding `h2` there and answer the GOAWAY
//! itself.
//!
//! # Invariants
//!
//! * The checker sees every byte of the stream exactly once, in order,
//!   starting right after the 24-byte client preface.

/// Frame types (RFC 9113 §6).
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const HEADERS: u8 = 0x1;

/// `FRAME_SIZE_ERROR` (RFC 9113 §7).
pub const FRAME_SIZE_ERROR: u32 = 0x6;

/// `FLOW_CONTROL_ERROR` (RFC 9113 §7).
pub const FLOW_CONTROL_ERROR: u32 = 0x3;

/// `SETTINGS_INITIAL_WINDOW_SIZE`.
const INITIAL_WINDOW_SIZE: u16 = 0x4;

/// Largest flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = 0x7fff_ffff;

/// A frame whose size breaks the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// Offset, in the input of the [`FrameCheck::feed`] call, where the
    /// offending frame's header starts (0 if it started in an earlier call).
    pub at: usize,
    /// The error code for the GOAWAY.
    pub code: u32,
}

/// Incremental frame-header checker for a client's byte stream.
#[derive(Debug, Clone)]
pub struct FrameCheck {
    max_frame_size: u32,
    /// Bytes of the current frame header seen so far.
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    /// The current frame is SETTINGS: its entries are read, not skipped.
    settings: bool,
    /// Bytes of the current SETTINGS entry seen so far.
    entry: [u8; 6],
    entry_have: usize,
    /// Highest client stream id that opened a stream (for GOAWAY).
    last_stream: u32,
}

impl FrameCheck {
    /// A checker for a connection that advertised `max_frame_size`.
    pub fn new(max_frame_size: u32) -> FrameCheck {
        FrameCheck {
            max_frame_size,
            header: [0; 9],
            have: 0,
            skip: 0,
            settings: false,
            entry: [0; 6],
            entry_have: 0,
            last_stream: 0,
        }
    }

    /// The highest stream id a HEADERS frame used so far.
    pub fn last_stream(&self) -> u32 {
        self.last_stream
    }

    /// Checks the next bytes of the stream.
    ///
    /// # Errors
    ///
    /// The first frame in `input` (or begun before it) whose length breaks
    /// the rules.
    pub fn feed(&mut self, input: &[u8]) -> Result<(), Violation> {
        let mut i = 0;
        // Where the current frame's header starts in `input` (0 when it
        // started in an earlier call).
        let mut frame_start = 0;
        while i < input.len() {
            if self.skip > 0 && self.settings {
                self.entry[self.entry_have] = input[i];
                self.entry_have += 1;
                self.skip -= 1;
                i += 1;
                if self.entry_have == 6 {
                    self.entry_have = 0;
                    let e = self.entry;
                    let id = u16::from_be_bytes([e[0], e[1]]);
                    let value = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    if id == INITIAL_WINDOW_SIZE && value > MAX_WINDOW {
                        return Err(Violation {
                            at: frame_start,
                            code: FLOW_CONTROL_ERROR,
                        });
                    }
                }
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(input.len() - i);
                self.skip -= n;
                i += n;
                continue;
            }
            let start = i.saturating_sub(self.have);
            frame_start = start;
            let n = (9 - self.have).min(input.len() - i);
            self.header[self.have..self.have + n].copy_from_slice(&input[i..i + n]);
            self.have += n;
            i += n;
            if self.have < 9 {
                break;
            }
            self.have = 0;
            let h = self.header;
            let len = (u32::from(h[0]) << 16) | (u32::from(h[1]) << 8) | u32::from(h[2]);
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let bad = len > self.max_frame_size
                || match kind {
                    SETTINGS => len % 6 != 0 || (flags & 0x1 != 0 && len != 0),
                    PING => len != 8,
                    WINDOW_UPDATE | RST_STREAM => len != 4,
                    GOAWAY => len < 8,
                    _ => false,
                };
            if bad {
                return Err(Violation {
                    at: start,
                    code: FRAME_SIZE_ERROR,
                });
            }
            if kind == HEADERS && stream % 2 == 1 {
                self.last_stream = self.last_stream.max(stream);
            }
            self.skip = len as usize;
            self.settings = kind == SETTINGS;
            self.entry_have = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend(std::iter::repeat_n(0, len));
        out
    }

    fn check(bytes: &[u8]) -> Result<(), Violation> {
        FrameCheck::new(16_384).feed(bytes)
    }

    #[test]
    fn good_frames_pass_in_any_split() {
        let mut bytes = frame(SETTINGS, 0, 0, 12);
        bytes.extend(frame(WINDOW_UPDATE, 0, 0, 4));
        bytes.extend(frame(HEADERS, 0x5, 3, 30));
        bytes.extend(frame(0x0, 0x1, 3, 16_384));
        bytes.extend(frame(PING, 0, 0, 8));
        for split in 0..bytes.len() {
            let mut c = FrameCheck::new(16_384);
            assert_eq!(c.feed(&bytes[..split]), Ok(()));
            assert_eq!(c.feed(&bytes[split..]), Ok(()));
            assert_eq!(c.last_stream(), 3);
        }
    }

    #[test]
    fn bad_sizes_are_found_where_they_start() {
        let mut bytes = frame(SETTINGS, 0, 0, 6);
        let at = bytes.len();
        bytes.extend(frame(SETTINGS, 0, 0, 5));
        assert_eq!(
            check(&bytes),
            Err(Violation {
                at,
                code: FRAME_SIZE_ERROR
            })
        );
        for bad in [
            frame(SETTINGS, 1, 0, 6),
            frame(PING, 0, 0, 7),
            frame(WINDOW_UPDATE, 0, 0, 3),
            frame(RST_STREAM, 0, 1, 5),
            frame(GOAWAY, 0, 0, 4),
            frame(0x0, 0, 1, 16_385),
        ] {
            assert_eq!(
                check(&bad).map_err(|v| v.code),
                Err(FRAME_SIZE_ERROR),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_initial_window_above_the_maximum_is_a_flow_control_error() {
        let mut bytes = frame(PING, 0, 0, 8);
        let at = bytes.len();
        let mut settings = frame(SETTINGS, 0, 0, 0);
        settings[2] = 12;
        settings.extend_from_slice(&[0, 1, 0, 0, 0x10, 0]);
        settings.extend_from_slice(&[0, 4, 0x80, 0, 0, 0]);
        bytes.extend_from_slice(&settings);
        assert_eq!(
            check(&bytes),
            Err(Violation {
                at,
                code: FLOW_CONTROL_ERROR
            })
        );
        let mut ok = frame(SETTINGS, 0, 0, 0);
        ok[2] = 6;
        ok.extend_from_slice(&[0, 4, 0x7f, 0xff, 0xff, 0xff]);
        ok.extend(frame(PING, 0, 0, 8));
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn a_header_split_across_calls_reports_offset_zero() {
        let bad = frame(PING, 0, 0, 7);
        let mut c = FrameCheck::new(16_384);
        assert_eq!(c.feed(&bad[..4]), Ok(()));
        assert_eq!(c.feed(&bad[4..]).map(|_| ()).map_err(|v| v.at), Err(0));
    }
}
