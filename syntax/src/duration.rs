//! Durations, in humantime's grammar: numbers (fractions allowed) each
//! with a unit, `ns`, `us`, `ms`, `s`, `m`/`min`, `h`, `d`, `w`, `M`
//! (30.44 days), `y` (365.25 days) and their long forms, run together or
//! spaced (`1h30m`, `1h 30m`); `0` alone is zero.

use std::time::Duration;

use crate::SyntaxError;

/// Parses a duration such as `30d`, `1h30m`, `2.5s` or `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, SyntaxError> {
    let t = text.trim();
    humantime::parse_duration(t).map_err(|e| {
        let why = match e {
            humantime::DurationError::Empty => "empty".to_owned(),
            humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
                "a number needs a unit (ms, s, m, h, d, w), e.g. 2.5s".to_owned()
            }
            humantime::DurationError::UnknownUnit { unit, .. } => {
                format!("unknown unit {unit:?} (use ms, s, m, h, d or w)")
            }
            humantime::DurationError::NumberOverflow => "too large".to_owned(),
            other => format!("{other} (expected e.g. 30s, 1h30m, 2.5s)"),
        };
        SyntaxError::new("duration", text, why)
    })
}
