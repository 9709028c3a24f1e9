//! Bounds on untrusted input, and bounded decompression.

use std::io::Read;

use crate::error::{Error, Result};

/// Bounds applied while decoding untrusted profiles. Exceeding any of them is
/// an [`Error::LimitExceeded`] naming the limit, never a panic or an
/// allocation past the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of the profile after decompression, in bytes.
    pub max_decompressed_bytes: usize,
    /// Maximum number of samples (pprof) or lines (folded).
    pub max_samples: usize,
    /// Maximum number of frames in one stack (inlined frames included).
    pub max_stack_depth: usize,
    /// Maximum number of entries in the pprof string table.
    pub max_strings: usize,
    /// Maximum number of labels on one pprof sample.
    pub max_labels_per_sample: usize,
}

impl Default for Limits {
    /// Generous bounds for trusted tooling (the CLI on local files): 256 MiB
    /// decompressed, 4 M samples, depth 4,096, 4 M strings, 128 labels per sample.
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: 256 << 20,
            max_samples: 4_000_000,
            max_stack_depth: 4096,
            max_strings: 4_000_000,
            max_labels_per_sample: 128,
        }
    }
}

/// How a byte buffer is compressed, recognised by its magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (RFC 1952), as `go tool pprof` writes.
    Gzip,
    /// zstd, as the Firewatch agent ships.
    Zstd,
}

impl Compression {
    /// Detects gzip and zstd by their magic numbers.
    pub fn detect(bytes: &[u8]) -> Compression {
        match bytes {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// Decompresses gzip or zstd (detected by magic number; anything else is
/// returned as is), refusing output larger than `limit` bytes without
/// allocating more than `limit + 1` bytes. The frame's declared size is not
/// trusted.
pub fn decompress(bytes: &[u8], limit: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
    let too_big = Error::LimitExceeded {
        what: "decompressed size (bytes)",
        limit: limit as u64,
    };
    let (format, reader): (&'static str, Box<dyn Read + '_>) = match Compression::detect(bytes) {
        Compression::None => {
            if bytes.len() > limit {
                return Err(too_big);
            }
            return Ok(std::borrow::Cow::Borrowed(bytes));
        }
        Compression::Gzip => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(bytes))),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(bytes).map_err(|cause| {
                Error::Decompress {
                    format: "zstd",
                    cause,
                }
            })?;
            ("zstd", Box::new(decoder))
        }
    };
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|cause| Error::Decompress { format, cause })?;
    if out.len() > limit {
        return Err(too_big);
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// gzip-compresses `bytes` at the default level.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// zstd-compresses `bytes` at `level` (3 is zstd's default).
pub fn zstd(bytes: &[u8], level: i32) -> Result<Vec<u8>> {
    Ok(zstd::bulk::compress(bytes, level)?)
}
