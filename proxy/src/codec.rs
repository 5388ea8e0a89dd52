//! Wire codecs. Each is pure: bytes in, offsets and framing decisions out.

pub mod h1;
pub mod h2;
