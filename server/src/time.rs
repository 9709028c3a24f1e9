//! Time windows of requests: `from`/`until` pairs read with the times and
//! durations of `firewatch-syntax` (re-exported here), which every binary
//! and the UI read alike.

pub use firewatch_syntax::{SyntaxError, now_ms, parse_duration, parse_time};

/// A validated window `[from_ms, until_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, Unix milliseconds, inclusive.
    pub from_ms: i64,
    /// End, Unix milliseconds, exclusive.
    pub until_ms: i64,
}

/// Reads `from`/`until` parameters (defaults `default_from` and `now`) and
/// checks that `until` comes after `from`. `names` are the parameter names
/// for messages (e.g. `("leftFrom", "leftUntil")`).
pub fn parse_range(
    from: Option<&str>,
    until: Option<&str>,
    default_from: &str,
    names: (&str, &str),
    now_ms: i64,
) -> Result<TimeRange, String> {
    let from_ms = parse_time(from.unwrap_or(default_from), now_ms)
        .map_err(|e| format!("parameter `{}`: {e}", names.0))?;
    let until_ms = parse_time(until.unwrap_or("now"), now_ms)
        .map_err(|e| format!("parameter `{}`: {e}", names.1))?;
    if until_ms <= from_ms {
        return Err(format!(
            "`{}` ({until_ms} ms) must be after `{}` ({from_ms} ms)",
            names.1, names.0
        ));
    }
    Ok(TimeRange { from_ms, until_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_410_400_000; // 2025-11-29T10:00:00Z

    #[test]
    fn ranges() {
        let r = parse_range(None, None, "now-1h", ("from", "until"), NOW).unwrap();
        assert_eq!((r.from_ms, r.until_ms), (NOW - 3_600_000, NOW));
        let e = parse_range(
            Some("now"),
            Some("now-1h"),
            "now-1h",
            ("from", "until"),
            NOW,
        )
        .unwrap_err();
        assert!(e.contains("must be after"), "{e}");
        let e = parse_range(Some("x"), None, "now-1h", ("leftFrom", "leftUntil"), NOW).unwrap_err();
        assert!(e.starts_with("parameter `leftFrom`"), "{e}");
    }
}
