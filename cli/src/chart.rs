//! The trend of total samples over a window: an SVG bar chart for HTML
//! reports and a line of block characters for markdown.

use std::fmt::Write;

use firewatch_render::format_value;

use crate::client::Timeline;
use crate::html::escape;
use crate::window::utc;

/// Summary figures of a timeline.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stats {
    /// Smallest step total.
    pub min: i64,
    /// Largest step total.
    pub max: i64,
    /// Mean step total.
    pub mean: f64,
    /// Start of the step with the largest total, Unix seconds.
    pub max_at: i64,
}

/// Minimum, maximum (and when) and mean of the step totals; `None` for an
/// empty timeline.
pub(crate) fn stats(t: &Timeline) -> Option<Stats> {
    let (max_index, max) = t
        .samples
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))?;
    let min = t.samples.iter().min().copied().unwrap_or(0);
    let sum: f64 = t.samples.iter().map(|v| *v as f64).sum();
    Some(Stats {
        min,
        max: *max,
        mean: sum / t.samples.len() as f64,
        max_at: t.start_time + t.duration_delta * max_index as i64,
    })
}

/// One line of `▁`..`█`, one character per step scaled to the largest
/// total; a step without samples is a space.
pub(crate) fn sparkline(t: &Timeline) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = t.samples.iter().copied().max().unwrap_or(0).max(1) as f64;
    t.samples
        .iter()
        .map(|&v| {
            if v <= 0 {
                ' '
            } else {
                let level = ((v as f64 / max) * 7.0).round() as usize;
                LEVELS[level.min(7)]
            }
        })
        .collect()
}

/// Chart size in SVG user units; the chart scales to its container.
const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 140.0;
const PLOT_TOP: f64 = 20.0;
const PLOT_BOTTOM: f64 = 115.0;

/// A bar chart of the step totals, each bar with a tooltip giving its time
/// and value in `unit`. Classes are prefixed so that the flamegraph's
/// stylesheet, global once inlined into the page, cannot touch them.
pub(crate) fn bar_chart_svg(t: &Timeline, unit: &str) -> String {
    let n = t.samples.len().max(1);
    let max = t.samples.iter().copied().max().unwrap_or(0).max(1) as f64;
    let slot = WIDTH / n as f64;
    let gap = if slot > 4.0 { 1.0 } else { 0.0 };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="fw-trend" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="Total per step over the window">"#
    );
    let _ = write!(
        svg,
        r#"<line class="fw-axis" x1="0" y1="{PLOT_BOTTOM}" x2="{WIDTH}" y2="{PLOT_BOTTOM}"/>"#
    );
    for (i, &v) in t.samples.iter().enumerate() {
        let h = (v.max(0) as f64 / max) * (PLOT_BOTTOM - PLOT_TOP);
        let at = t.start_time + t.duration_delta * i as i64;
        let _ = write!(
            svg,
            r#"<rect class="fw-bar" x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}"><title>{}: {}</title></rect>"#,
            i as f64 * slot,
            PLOT_BOTTOM - h,
            (slot - gap).max(0.5),
            h,
            escape(&utc(at * 1000)),
            escape(&format_value(v, unit)),
        );
    }
    let end = t.start_time + t.duration_delta * t.samples.len() as i64;
    let _ = write!(
        svg,
        r#"<text class="fw-label" x="0" y="12">max {}</text><text class="fw-label" x="0" y="{}">{}</text><text class="fw-label fw-end" x="{WIDTH}" y="{}">{}</text></svg>"#,
        escape(&format_value(max as i64, unit)),
        HEIGHT - 5.0,
        escape(&utc(t.start_time * 1000)),
        HEIGHT - 5.0,
        escape(&utc(end * 1000)),
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(samples: &[i64]) -> Timeline {
        Timeline {
            start_time: 1_764_410_400,
            duration_delta: 60,
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn sparkline_scales_to_the_peak() {
        assert_eq!(sparkline(&timeline(&[0, 1, 4, 8])), " ▂▅█");
        assert_eq!(sparkline(&timeline(&[])), "");
    }

    #[test]
    fn stats_find_the_peak() {
        let s = stats(&timeline(&[2, 8, 8, 2])).expect("stats");
        assert_eq!((s.min, s.max, s.mean), (2, 8, 5.0));
        assert_eq!(s.max_at, 1_764_410_460);
        assert_eq!(stats(&timeline(&[])), None);
    }

    #[test]
    fn bars_carry_tooltips() {
        let svg = bar_chart_svg(&timeline(&[0, 5_000_000_000]), "nanoseconds");
        assert!(svg.starts_with("<svg class=\"fw-trend\""), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(
            svg.contains("<title>2025-11-29 10:01:00 UTC: 5.00 s</title>"),
            "{svg}"
        );
        assert!(svg.ends_with("</svg>"));
    }
}
