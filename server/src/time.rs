//! Times and durations as users type them: `from`/`until` of ingest and
//! query requests, and durations of the configuration (`--retention 30d`).
//!
//! A time is one of:
//! - `now`, or `now` plus or minus a duration: `now-1h`, `now-1h30m`,
//!   `now+5m`; a bare `-6h` means `now-6h`;
//! - Unix time as an integer, its unit told by the number of digits: up
//!   to 11 digits are seconds, 12-14 milliseconds, 15-17 microseconds and
//!   18-19 nanoseconds (so 10, 13, 16 and 19 digits today);
//! - a date `YYYYMMDD` (8 digits, midnight UTC), `YYYY-MM-DD`, or an
//!   RFC 3339 time `2026-11-29T10:00:00Z` (fraction and offset allowed).
//!
//! A duration is a sequence of integers with units `ms`, `s`, `m`, `h`,
//! `d`, `w`: `30d`, `1h30m`, `500ms`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// A time or duration that could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid {what} {input:?}: {message}")]
pub struct TimeError {
    /// "time" or "duration".
    pub what: &'static str,
    /// The text as given.
    pub input: String,
    /// What was wrong with it.
    pub message: String,
}

fn time_error(input: &str, message: impl Into<String>) -> TimeError {
    TimeError {
        what: "time",
        input: input.to_owned(),
        message: message.into(),
    }
}

fn duration_error(input: &str, message: impl Into<String>) -> TimeError {
    TimeError {
        what: "duration",
        input: input.to_owned(),
        message: message.into(),
    }
}

/// The current time, Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses a time (see the module documentation) into Unix milliseconds;
/// relative times count from `now_ms`.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, TimeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(time_error(text, "empty"));
    }
    if let Some(rest) = t.strip_prefix("now") {
        return relative(text, rest, now_ms);
    }
    if t.starts_with(['-', '+']) {
        return relative(text, t, now_ms);
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return unix(text, t);
    }
    if t.len() >= 10 && t.as_bytes()[4] == b'-' {
        return rfc3339(text, t);
    }
    Err(time_error(
        text,
        "expected `now`, `now-1h`, Unix seconds/ms/us/ns, YYYYMMDD or an RFC 3339 time",
    ))
}

fn relative(text: &str, rest: &str, now_ms: i64) -> Result<i64, TimeError> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(now_ms);
    }
    let (sign, amount) = match rest.split_at(1) {
        ("-", amount) => (-1i64, amount),
        ("+", amount) => (1i64, amount),
        _ => return Err(time_error(text, "expected `-` or `+` after `now`")),
    };
    let d = parse_duration(amount.trim()).map_err(|e| time_error(text, e.message))?;
    let ms = i64::try_from(d.as_millis()).map_err(|_| time_error(text, "offset too large"))?;
    now_ms
        .checked_add(sign * ms)
        .ok_or_else(|| time_error(text, "offset too large"))
}

fn unix(text: &str, digits: &str) -> Result<i64, TimeError> {
    if digits.len() == 8
        && let Some(ms) = yyyymmdd(digits)
    {
        return Ok(ms);
    }
    let value: i64 = digits
        .parse()
        .map_err(|_| time_error(text, "number too large"))?;
    match digits.len() {
        0..=11 => value
            .checked_mul(1000)
            .ok_or_else(|| time_error(text, "number too large")),
        12..=14 => Ok(value),
        15..=17 => Ok(value / 1_000),
        18..=19 => Ok(value / 1_000_000),
        _ => Err(time_error(text, "too many digits for a Unix time")),
    }
}

fn yyyymmdd(digits: &str) -> Option<i64> {
    let year: i64 = digits.get(0..4)?.parse().ok()?;
    let month: u32 = digits.get(4..6)?.parse().ok()?;
    let day: u32 = digits.get(6..8)?.parse().ok()?;
    if !(1970..=2200).contains(&year) {
        return None;
    }
    Some(days_from_civil(year, month, day)? * 86_400_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date, `None` if invalid.
fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]`.
fn rfc3339(text: &str, t: &str) -> Result<i64, TimeError> {
    let bad = || {
        time_error(
            text,
            "expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)",
        )
    };
    let num = |s: Option<&str>| -> Result<i64, TimeError> {
        let s = s.ok_or_else(bad)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let year = num(t.get(0..4))?;
    if t.get(4..5) != Some("-") || t.get(7..8) != Some("-") {
        return Err(bad());
    }
    let month = u32::try_from(num(t.get(5..7))?).map_err(|_| bad())?;
    let day = u32::try_from(num(t.get(8..10))?).map_err(|_| bad())?;
    let days = days_from_civil(year, month, day).ok_or_else(|| time_error(text, "no such date"))?;
    let mut ms = days * 86_400_000;
    let rest = &t[10..];
    if rest.is_empty() {
        return Ok(ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' ']).ok_or_else(bad)?;
    if rest.get(2..3) != Some(":") || rest.get(5..6) != Some(":") {
        return Err(bad());
    }
    let (h, mi, s) = (
        num(rest.get(0..2))?,
        num(rest.get(3..5))?,
        num(rest.get(6..8))?,
    );
    if h > 23 || mi > 59 || s > 60 {
        return Err(time_error(text, "hour, minute or second out of range"));
    }
    ms += (h * 3600 + mi * 60 + s) * 1000;
    let mut rest = &rest[8..];
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if end == 0 {
            return Err(bad());
        }
        let millis: String = frac[..end].chars().chain("000".chars()).take(3).collect();
        ms += num(Some(&millis))?;
        rest = &frac[end..];
    }
    let offset_ms = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.get(3..4) == Some(":") => {
            let sign = match rest.get(0..1) {
                Some("+") => 1,
                Some("-") => -1,
                _ => return Err(bad()),
            };
            sign * (num(rest.get(1..3))? * 3600 + num(rest.get(4..6))? * 60) * 1000
        }
        _ => return Err(bad()),
    };
    Ok(ms - offset_ms)
}

/// Parses a duration such as `30d`, `1h30m` or `500ms`; `0` alone is zero.
pub fn parse_duration(text: &str) -> Result<Duration, TimeError> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(duration_error(text, "empty"));
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(duration_error(text, "expected a number"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| duration_error(text, "number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "" => return Err(duration_error(text, "missing unit (ms, s, m, h, d or w)")),
            other => {
                return Err(duration_error(
                    text,
                    format!("unknown unit {other:?} (expected ms, s, m, h, d or w)"),
                ));
            }
        };
        rest = &rest[unit_len..];
        total = value
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| duration_error(text, "too large"))?;
    }
    Ok(Duration::from_millis(total))
}

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
    fn unix_times_by_digit_count() {
        assert_eq!(parse_time("1615709120", NOW), Ok(1_615_709_120_000));
        assert_eq!(parse_time("1615709120123", NOW), Ok(1_615_709_120_123));
        assert_eq!(parse_time("1615709120123456", NOW), Ok(1_615_709_120_123));
        assert_eq!(
            parse_time("1615709120123456789", NOW),
            Ok(1_615_709_120_123)
        );
        assert_eq!(parse_time("0", NOW), Ok(0));
        assert!(parse_time("12345678901234567890", NOW).is_err());
    }

    #[test]
    fn relative_times() {
        assert_eq!(parse_time("now", NOW), Ok(NOW));
        assert_eq!(parse_time("now-1h", NOW), Ok(NOW - 3_600_000));
        assert_eq!(parse_time(" now - 1h30m ", NOW), Ok(NOW - 5_400_000));
        assert_eq!(parse_time("now+5m", NOW), Ok(NOW + 300_000));
        assert_eq!(parse_time("-7d", NOW), Ok(NOW - 7 * 86_400_000));
        let e = parse_time("now-1x", NOW).unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
        assert!(parse_time("now*2", NOW).is_err());
        assert!(parse_time("now-", NOW).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(parse_time("20251129", NOW), Ok(1_764_374_400_000));
        assert_eq!(parse_time("2025-11-29", NOW), Ok(1_764_374_400_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z", NOW), Ok(0));
        assert_eq!(parse_time("2025-11-29T10:00:00Z", NOW), Ok(NOW));
        assert_eq!(parse_time("2025-11-29T10:00:00.25Z", NOW), Ok(NOW + 250));
        assert_eq!(parse_time("2025-11-29T12:00:00+02:00", NOW), Ok(NOW));
        assert_eq!(parse_time("2024-02-29", NOW), Ok(1_709_164_800_000));
        assert!(parse_time("2025-02-29", NOW).is_err());
        assert!(parse_time("2025-11-29T25:00:00Z", NOW).is_err());
        assert!(parse_time("2025-11-29T10:00:00", NOW).is_err());
        // Not a valid date: read as Unix seconds.
        assert_eq!(parse_time("99999999", NOW), Ok(99_999_999_000));
    }

    #[test]
    fn garbage_is_refused_with_the_input_named() {
        for bad in ["", "yesterday", "1.5", "2025-1-1", "1e9", "now-1h-"] {
            let e = parse_time(bad, NOW).unwrap_err();
            assert!(e.to_string().contains("invalid time"), "{bad}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

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
