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
/// the two apart by content.
///
/// Bytes that are not UTF-8 can only be pprof. UTF-8 that parses as folded
/// text with at least one stack is folded (a protobuf message is almost
/// never also lines of `frames count`); otherwise it is tried as pprof, and
/// when both fail the error reported is that of the likelier format: pprof
/// when the first byte is a control character, folded otherwise.
pub fn parse_any(bytes: &[u8], limits: &Limits) -> Result<(Format, Profile)> {
    let raw = decompress(bytes, limits.max_decompressed_bytes)?;
    if raw.is_empty() {
        return Err(Error::Empty);
    }
    if std::str::from_utf8(&raw).is_err() {
        return Ok((Format::Pprof, Profile::from_pprof_bytes(&raw, limits)?));
    }
    let folded = crate::folded::parse(&raw, SampleType::new("samples", "count"), limits);
    if let Ok(p) = &folded
        && !p.is_empty()
    {
        return folded.map(|p| (Format::Folded, p));
    }
    match Profile::from_pprof_bytes(&raw, limits) {
        Ok(p) => Ok((Format::Pprof, p)),
        Err(pprof_error) => {
            if raw[0].is_ascii_control() {
                Err(pprof_error)
            } else {
                folded.map(|p| (Format::Folded, p))
            }
        }
    }
}
