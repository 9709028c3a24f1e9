//! Time windows: `--from`/`--until` in the server's time syntax, resolved
//! once on this machine so that every request of a command covers the same
//! window.

use firewatch_syntax::{now_ms, parse_time};

use crate::error::{Error, Result};

/// `--from` and `--until`, shared by the server commands.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct TimeArgs {
    /// Start of the window: `now-1h`, `now-30m`, `-6h`, `2026-11-29`,
    /// RFC 3339 (`2026-11-29T10:00:00Z`) or Unix time.
    #[arg(
        long,
        default_value = "now-1h",
        value_name = "TIME",
        allow_hyphen_values = true
    )]
    pub from: String,
    /// End of the window, in the same syntax.
    #[arg(
        long,
        default_value = "now",
        value_name = "TIME",
        allow_hyphen_values = true
    )]
    pub until: String,
}

/// A resolved window `[from_ms, until_ms)`, with the text it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Start, Unix milliseconds, inclusive.
    pub from_ms: i64,
    /// End, Unix milliseconds, exclusive.
    pub until_ms: i64,
    /// How the user wrote it, e.g. `now-1h to now`.
    label: String,
}

impl Window {
    /// Resolves `from` and `until` against `now`; `flags` names the two
    /// flags for messages (`("--from", "--until")`).
    pub(crate) fn resolve(
        from: &str,
        until: &str,
        flags: (&str, &str),
        now: i64,
    ) -> Result<Window> {
        let parse = |text: &str, flag: &str| {
            parse_time(text, now).map_err(|e| Error::Usage(format!("{flag}: {e}")))
        };
        let (from_ms, until_ms) = (parse(from, flags.0)?, parse(until, flags.1)?);
        if until_ms <= from_ms {
            return Err(Error::Usage(format!(
                "{} {until:?} ({}) must be after {} {from:?} ({})",
                flags.1,
                utc(until_ms),
                flags.0,
                utc(from_ms)
            )));
        }
        Ok(Window {
            from_ms,
            until_ms,
            label: format!("{} to {}", from.trim(), until.trim()),
        })
    }

    /// Resolves `args` against the current time.
    pub(crate) fn from_args(args: &TimeArgs) -> Result<Window> {
        Window::resolve(&args.from, &args.until, ("--from", "--until"), now_ms())
    }

    /// The window of the same length just before this one.
    pub(crate) fn previous(&self) -> Window {
        let length = self.until_ms - self.from_ms;
        let from_ms = self.from_ms.saturating_sub(length);
        Window {
            from_ms,
            until_ms: self.from_ms,
            label: format!("{} to {}", utc(from_ms), utc(self.from_ms)),
        }
    }

    /// Length in milliseconds.
    pub(crate) fn length_ms(&self) -> i64 {
        self.until_ms - self.from_ms
    }

    /// The window as the user wrote it.
    pub(crate) fn describe(&self) -> &str {
        &self.label
    }

    /// The window in absolute UTC times.
    pub(crate) fn describe_utc(&self) -> String {
        format!("{} to {}", utc(self.from_ms), utc(self.until_ms))
    }
}

/// Unix milliseconds as `2026-11-29 10:00:00 UTC`.
pub(crate) fn utc(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_410_400_000; // 2025-11-29T10:00:00Z

    #[test]
    fn windows_resolve_once_and_step_back() {
        let w = Window::resolve("now-1h", "now", ("--from", "--until"), NOW).expect("valid");
        assert_eq!((w.from_ms, w.until_ms), (NOW - 3_600_000, NOW));
        assert_eq!(w.describe(), "now-1h to now");
        let p = w.previous();
        assert_eq!((p.from_ms, p.until_ms), (NOW - 7_200_000, NOW - 3_600_000));
        assert_eq!(
            p.describe(),
            "2025-11-29 08:00:00 UTC to 2025-11-29 09:00:00 UTC"
        );
    }

    #[test]
    fn bad_windows_name_the_flag() {
        let e =
            Window::resolve("yesterday", "now", ("--from", "--until"), NOW).expect_err("invalid");
        assert!(
            e.to_string()
                .starts_with("--from: invalid time \"yesterday\""),
            "{e}"
        );
        let e = Window::resolve("now", "now-1h", ("--from", "--until"), NOW).expect_err("empty");
        assert!(e.is_usage(), "{e}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(NOW + 61_000), "2025-11-29 10:01:01 UTC");
    }
}
