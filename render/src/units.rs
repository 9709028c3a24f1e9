//! Values in the units pprof sample types use, for people to read.

/// Formats a value of a sample type's unit for a person: durations
/// (`nanoseconds`, `microseconds`, `milliseconds`, `seconds`) as ns, µs, ms
/// or s, `bytes` as B, KiB, MiB, GiB or TiB, both with two decimals past
/// the smallest unit; anything else (`count`, ...) as the plain integer.
///
/// ```
/// use firewatch_render::format_value;
/// assert_eq!(format_value(1_500_000_000, "nanoseconds"), "1.50 s");
/// assert_eq!(format_value(2_500_000, "nanoseconds"), "2.50 ms");
/// assert_eq!(format_value(3 << 20, "bytes"), "3.00 MiB");
/// assert_eq!(format_value(512, "bytes"), "512 B");
/// assert_eq!(format_value(1234, "count"), "1234");
/// ```
pub fn format_value(value: i64, unit: &str) -> String {
    const TIME: [(u64, &str); 3] = [(1_000, "µs"), (1_000_000, "ms"), (1_000_000_000, "s")];
    const SIZE: [(u64, &str); 4] = [
        (1 << 10, "KiB"),
        (1 << 20, "MiB"),
        (1 << 30, "GiB"),
        (1 << 40, "TiB"),
    ];
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    let nanos_per: u64 = match unit {
        "nanoseconds" => 1,
        "microseconds" => 1_000,
        "milliseconds" => 1_000_000,
        "seconds" => 1_000_000_000,
        _ if is_bytes(unit) => return format!("{sign}{}", scaled(magnitude, &SIZE, "B")),
        _ => return value.to_string(),
    };
    match magnitude.checked_mul(nanos_per) {
        Some(nanos) => format!("{sign}{}", scaled(nanos, &TIME, "ns")),
        // Past u64 nanoseconds (584 years) seconds still read fine.
        None => format!("{sign}{:.2} s", magnitude as f64 * nanos_per as f64 / 1e9),
    }
}

/// `magnitude` in the largest step it reaches, or in `base` units below the first.
fn scaled(magnitude: u64, steps: &[(u64, &str)], base: &str) -> String {
    match steps.iter().rev().find(|(size, _)| magnitude >= *size) {
        Some((size, name)) => format!("{:.2} {name}", magnitude as f64 / *size as f64),
        None => format!("{magnitude} {base}"),
    }
}

pub(crate) fn is_bytes(unit: &str) -> bool {
    unit == "bytes"
}
