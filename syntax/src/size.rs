//! Sizes in bytes: a number (fractions allowed) and a unit, `KiB`, `MiB`,
//! `GiB`, `TiB` for powers of 1024 and `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB`
//! for powers of 1000 (parse-size's grammar; case does not matter, a space
//! may separate them), or a plain number of bytes.

use crate::SyntaxError;

/// Parses a size such as `16MiB`, `64KiB`, `1.5GiB`, `16MB` or `1048576`.
pub fn parse_size(text: &str) -> Result<usize, SyntaxError> {
    let bytes = parse_size::parse_size(text.trim()).map_err(|e| {
        SyntaxError::new(
            "size",
            text,
            format!("{e} (expected e.g. 16MiB = 16 x 2^20 bytes, 16MB = 16 x 10^6 bytes)"),
        )
    })?;
    usize::try_from(bytes).map_err(|_| SyntaxError::new("size", text, "too large"))
}
