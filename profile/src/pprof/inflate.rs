//! Decompression for the pprof readers: [`crate::decompress`], with a
//! cheaper road for the common zstd case.
//!
//! The agent ships each profile as one zstd frame that records its content
//! size. For such a frame the streaming decoder behind
//! [`crate::decompress`] creates a decompression context and a window
//! buffer, decodes into the window and copies out through `Read`, growing
//! the output as it goes. Here the frame is instead decoded in one shot,
//! straight into a buffer of exactly the declared size, by a context kept
//! per thread. The result is the same bytes: zstd checks the decoded size
//! against the declared one (and the checksum, if any), and anything this
//! road does not take, or on which it fails, goes down the streaming road,
//! whose verdict (bytes or error) then stands.

use std::borrow::Cow;
use std::cell::RefCell;

use zstd::bulk::Decompressor;
use zstd::zstd_safe;

use crate::error::Result;
use crate::limits::{Compression, decompress as stream_decompress};

/// Largest window the streaming decoder accepts by default (zstd's
/// `ZSTD_WINDOWLOG_LIMIT_DEFAULT`, 2^27). Frames needing more are refused
/// there; the one-shot decoder needs no window and would accept them, so
/// they are left to the streaming road to keep both verdicts identical.
const STREAM_WINDOW_MAX: u64 = 1 << 27;

/// A declared content size is trusted for the up-front allocation only up
/// to this many times the compressed size (or [`SMALL_OUTPUT`], whichever
/// is larger): a tiny request claiming a large output gets the streaming
/// road, which grows its buffer only as real output arrives. Profiles
/// compress about 5 to 10 times.
const MAX_DECLARED_RATIO: usize = 32;

/// Below this a declared size is taken whatever the ratio: it costs less
/// than the streaming decoder's own buffers.
const SMALL_OUTPUT: usize = 1 << 20;

thread_local! {
    // One context per thread: creating one costs about as much as
    // decoding a small profile. `None` until first use.
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Like [`crate::decompress`] (same output, same errors, same bound: never
/// more than `limit` bytes), faster for single zstd frames that declare
/// their size.
pub(super) fn decompress(bytes: &[u8], limit: usize) -> Result<Cow<'_, [u8]>> {
    if Compression::detect(bytes) == Compression::Zstd
        && let Some(out) = one_shot_zstd(bytes, limit)
    {
        return Ok(Cow::Owned(out));
    }
    stream_decompress(bytes, limit)
}

/// Decodes `bytes` when it is exactly one zstd frame whose declared size is
/// within `limit` and believable; `None` sends the caller down the
/// streaming road, including on any decoding error, so that error is
/// reported as the streaming decoder words it.
fn one_shot_zstd(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    let declared = zstd_safe::get_frame_content_size(bytes).ok()??;
    let size = usize::try_from(declared).ok()?;
    let believable = size
        <= bytes
            .len()
            .saturating_mul(MAX_DECLARED_RATIO)
            .max(SMALL_OUTPUT);
    if size > limit || declared > STREAM_WINDOW_MAX || !believable {
        return None;
    }
    // Concatenated frames or trailing bytes: the declared size covers only
    // the first frame, so leave those to the streaming decoder.
    if zstd_safe::find_frame_compressed_size(bytes).ok()? != bytes.len() {
        return None;
    }
    if window_size(bytes)? > STREAM_WINDOW_MAX {
        return None;
    }
    // The allocation is bounded by `limit` (checked above), and zstd never
    // writes past the capacity it is given.
    let mut out = Vec::with_capacity(size);
    let written = DECOMPRESSOR.with(|cell| {
        // Nothing below re-enters this function, but a failed borrow must
        // not panic: take the streaming road instead.
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.is_none() {
            *slot = Some(Decompressor::new().ok()?);
        }
        slot.as_mut()?.decompress_to_buffer(bytes, &mut out).ok()
    })?;
    (written == size && out.len() == size).then_some(out)
}

/// The window a frame asks of a streaming decoder (RFC 8878, 3.1.1.1): its
/// content size for a single-segment frame, else what the window
/// descriptor byte says. `None` when the header is too short to tell.
fn window_size(frame: &[u8]) -> Option<u64> {
    let descriptor = *frame.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    if single_segment {
        return zstd_safe::get_frame_content_size(frame).ok()?;
    }
    let window = *frame.get(5)?;
    let log = 10 + u32::from(window >> 3);
    let base = 1u64 << log;
    Some(base + (base / 8) * u64::from(window & 7))
}
