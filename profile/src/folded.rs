//! Folded stacks (`a;b;c 12` per line), the text format of FlameGraph,
//! inferno and Pyroscope's default ingest.

use std::io::Write;

use crate::error::{Error, Result};
use crate::limits::{Limits, decompress};
use crate::model::{KERNEL_FILE, Profile, SampleType};

/// The suffix FlameGraph's `stackcollapse-perf --kernel` and inferno give
/// kernel frames.
const KERNEL_MARK: &str = "_[k]";

/// Parses folded text (optionally gzip/zstd-compressed) into a profile with
/// one column of `sample_type`.
///
/// Each non-empty line is a stack, root first, frames separated by `;`,
/// then whitespace and a non-negative integer count; repeated stacks add up.
/// Lines starting with `#` are comments.
pub fn parse(bytes: &[u8], sample_type: SampleType, limits: &Limits) -> Result<Profile> {
    read(
        bytes,
        sample_type,
        limits,
        "folded lines (samples)",
        |line, bad| {
            if line.starts_with('#') {
                return Ok(None);
            }
            let (frames, count) = line
                .trim_end()
                .rsplit_once([' ', '\t'])
                .ok_or_else(|| bad("expected `frame;frame;... count`".into()))?;
            let count: i64 = count
                .parse::<u64>()
                .ok()
                .and_then(|c| i64::try_from(c).ok())
                .ok_or_else(|| bad(format!("count {count:?} is not a non-negative integer")))?;
            Ok(Some((frames.trim_end(), count)))
        },
    )
}

/// Parses Pyroscope's `lines` text: one stack per line (`a;b;c`, root
/// first), each line counting 1.
pub fn parse_lines(bytes: &[u8], sample_type: SampleType, limits: &Limits) -> Result<Profile> {
    read(bytes, sample_type, limits, "lines (samples)", |line, _| {
        Ok(Some((line, 1)))
    })
}

/// The reader both text formats share: `stack_of(line, bad)` gives a
/// line's frames and count, or `None` to skip it.
fn read(
    bytes: &[u8],
    sample_type: SampleType,
    limits: &Limits,
    samples: &'static str,
    stack_of: impl for<'t> Fn(&'t str, &dyn Fn(String) -> Error) -> Result<Option<(&'t str, i64)>>,
) -> Result<Profile> {
    let raw = decompress(bytes, limits.max_decompressed_bytes)?;
    let text = std::str::from_utf8(&raw).map_err(|_| Error::NotText)?;
    let mut profile = Profile::new(vec![sample_type]);
    let mut stack = Vec::with_capacity(64);
    let mut lines = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let bad = |detail: String| Error::InvalidFolded {
            line: n + 1,
            detail,
        };
        let Some((frames, count)) = stack_of(line, &bad)? else {
            continue;
        };
        lines += 1;
        if lines > limits.max_samples {
            return Err(Error::LimitExceeded {
                what: samples,
                limit: limits.max_samples as u64,
            });
        }
        if frames.is_empty() {
            return Err(bad("empty stack".into()));
        }
        stack.clear();
        for frame in frames.split(';') {
            if stack.len() == limits.max_stack_depth {
                return Err(Error::LimitExceeded {
                    what: "stack depth (frames)",
                    limit: limits.max_stack_depth as u64,
                });
            }
            // FlameGraph's collapsers mark kernel frames with `_[k]`; the
            // name keeps the mark, the file says where the function ran.
            let file = if frame.ends_with(KERNEL_MARK) {
                KERNEL_FILE
            } else {
                ""
            };
            stack.push(profile.intern_function(frame, file, 0));
        }
        profile.add_sample(&stack, &[count]);
    }
    Ok(profile)
}

/// Writes one column of a profile as folded text, one line per non-zero
/// stack, in the profile's stack order. A `;` inside a function name is
/// written as the look-alike `;` (U+037E) so the line still splits into the
/// same frames.
pub fn write(profile: &Profile, type_index: usize, out: &mut impl Write) -> Result<()> {
    let mut line = String::with_capacity(256);
    for id in 0..profile.stack_count() as u32 {
        let value = profile.values(id).get(type_index).copied().unwrap_or(0);
        if value == 0 {
            continue;
        }
        line.clear();
        for (i, name) in profile.stack_names(id).enumerate() {
            if i > 0 {
                line.push(';');
            }
            line.extend(name.chars().map(escape));
        }
        if line.is_empty() {
            line.push_str("[root]");
        }
        writeln!(out, "{line} {value}")?;
    }
    Ok(())
}

/// Folded text has no escaping: a `;` inside a name (`<[u8; 4] as Debug>::fmt`)
/// would split the frame and a newline the record, so they are written as
/// the look-alike U+037E and a space.
fn escape(c: char) -> char {
    match c {
        ';' => '\u{037e}',
        '\n' | '\r' => ' ',
        c => c,
    }
}

/// One column of a profile as a folded string.
pub fn to_string(profile: &Profile, type_index: usize) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write(profile, type_index, &mut out);
    String::from_utf8(out).unwrap_or_default()
}
