//! Times as people write them in queries, ingest requests and the CLI:
//!
//! - `now`, or `now` plus or minus a duration: `now-1h`, `now-1h30m`,
//!   `now+5m`; a bare `-6h` means `now-6h`;
//! - Unix time as an integer, its unit told by the number of digits: up
//!   to 11 digits are seconds, 12-14 milliseconds, 15-17 microseconds and
//!   18-19 nanoseconds (so 10, 13, 16 and 19 digits today), except that
//!   eight digits that form a date are that date;
//! - a date `YYYYMMDD` (midnight UTC), `YYYY-MM-DD`, or an RFC 3339 time
//!   `2026-11-29T10:00:00Z` (fraction and offset allowed).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{SyntaxError, parse_duration};

fn time_error(input: &str, message: impl Into<String>) -> SyntaxError {
    SyntaxError::new("time", input, message)
}

/// The current time, Unix nanoseconds.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, SyntaxError> {
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

fn relative(text: &str, rest: &str, now_ms: i64) -> Result<i64, SyntaxError> {
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

fn unix(text: &str, digits: &str) -> Result<i64, SyntaxError> {
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
fn rfc3339(text: &str, t: &str) -> Result<i64, SyntaxError> {
    let bad = || {
        time_error(
            text,
            "expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)",
        )
    };
    let num = |s: Option<&str>| -> Result<i64, SyntaxError> {
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
