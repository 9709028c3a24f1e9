//! Bounded decompression for the ingest hot path.
//!
//! The same contract as [`firewatch_profile::decompress`] (gzip and zstd
//! told by magic number, at most `limit + 1` bytes ever produced whatever a
//! frame claims, [`Error::LimitExceeded`] past the limit), except that zstd
//! reuses one decompression context per thread: creating a context per
//! profile cost about a quarter of the server's CPU at 1,000 profiles/s.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Read;

use firewatch_profile::{Compression, Error};
use zstd::zstd_safe::{DCtx, ResetDirective};

thread_local! {
    static ZSTD: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

/// Decompresses gzip or zstd (anything else is returned as is), refusing
/// output larger than `limit` bytes.
pub fn decompress(bytes: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, Error> {
    if Compression::detect(bytes) != Compression::Zstd {
        return firewatch_profile::decompress(bytes, limit);
    }
    ZSTD.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            // Re-entered on this thread: fall back to a fresh context.
            return firewatch_profile::decompress(bytes, limit);
        };
        let dctx = slot.get_or_insert_with(DCtx::create);
        let cause = |code: usize| Error::Decompress {
            format: "zstd",
            cause: std::io::Error::other(zstd::zstd_safe::get_error_name(code)),
        };
        dctx.reset(ResetDirective::SessionOnly).map_err(cause)?;
        let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
        let result = zstd::stream::read::Decoder::with_context(bytes, dctx)
            .take(limit as u64 + 1)
            .read_to_end(&mut out);
        if let Err(e) = result {
            // A context left mid-frame must not serve the next request.
            *slot = None;
            return Err(Error::Decompress {
                format: "zstd",
                cause: e,
            });
        }
        if out.len() > limit {
            return Err(Error::LimitExceeded {
                what: "decompressed size (bytes)",
                limit: limit as u64,
            });
        }
        Ok(Cow::Owned(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_answers_as_the_profile_crate() {
        let text = b"main;work 1\n".repeat(1000);
        let z = firewatch_profile::zstd(&text, 3).unwrap();
        for _ in 0..3 {
            assert_eq!(decompress(&z, 1 << 20).unwrap().as_ref(), &text[..]);
        }
        let e = decompress(&z, 100).unwrap_err();
        assert!(e.to_string().contains("decompressed size"), "{e}");
        // Still usable after refusing.
        assert_eq!(decompress(&z, 1 << 20).unwrap().len(), text.len());
        let mut broken = z.clone();
        broken.truncate(z.len() / 2);
        assert!(decompress(&broken, 1 << 20).is_err());
        assert_eq!(decompress(&z, 1 << 20).unwrap().len(), text.len());
        let g = firewatch_profile::gzip(&text);
        assert_eq!(decompress(&g, 1 << 20).unwrap().len(), text.len());
        assert_eq!(decompress(b"plain", 10).unwrap().as_ref(), b"plain");
        let bomb = firewatch_profile::zstd(&vec![0u8; 64 << 20], 3).unwrap();
        assert!(decompress(&bomb, 1 << 20).is_err());
    }
}
