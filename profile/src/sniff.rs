//! Recognising what a profile file holds.

use crate::error::{Error, Result};
use crate::limits::{Limits, decompress};
use crate::model::{Profile, SampleType};

/// The formats [`parse_any`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A pprof protobuf message.
    Pprof,
    /// Folded text, `a;b;c 12` per line.
    Folded,
}

/// Reads a pprof or folded profile, gzip/zstd-compressed or not, telling
/// the two apart by content: a pprof message starts with field 1 or 2
/// (bytes 0x0a or 0x12) and folded text is UTF-8.
pub fn parse_any(bytes: &[u8], limits: &Limits) -> Result<(Format, Profile)> {
    let raw = decompress(bytes, limits.max_decompressed_bytes)?;
    let looks_binary = matches!(raw.first(), Some(0x0a | 0x12)) || std::str::from_utf8(&raw).is_err();
    if looks_binary {
        match Profile::from_pprof_bytes(&raw, limits) {
            Ok(p) => return Ok((Format::Pprof, p)),
            Err(e) if std::str::from_utf8(&raw).is_err() => return Err(e),
            Err(e) => {
                // Text that merely starts with a newline: try it as folded, but
                // report the pprof error if that fails too.
                return crate::folded::parse(&raw, SampleType::new("samples", "count"), limits)
                    .map(|p| (Format::Folded, p))
                    .map_err(|_| e);
            }
        }
    }
    if raw.is_empty() {
        return Err(Error::InvalidFolded {
            line: 0,
            detail: "empty input".into(),
        });
    }
    crate::folded::parse(&raw, SampleType::new("samples", "count"), limits).map(|p| (Format::Folded, p))
}
