//! What queries answer with: output formats, response metadata (units and
//! sample rate as Pyroscope's UI reads them), truncation to `maxNodes`.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use firewatch_profile::{FlameTree, Profile, SampleType};
use serde::Serialize;

use crate::error::ApiError;

/// The formats `/render` answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Flamebearer JSON with metadata and timeline.
    Json,
    /// An SVG flamegraph.
    Svg,
    /// Folded text, `a;b;c 12` per line.
    Folded,
    /// gzipped pprof, for `go tool pprof`.
    Pprof,
}

impl Format {
    /// Reads `format` (default json); `allowed` lists what the endpoint serves.
    pub fn parse(text: Option<&str>, allowed: &[Format]) -> Result<Format, ApiError> {
        let format = match text.unwrap_or("json") {
            "json" => Format::Json,
            "svg" => Format::Svg,
            "folded" | "collapsed" => Format::Folded,
            "pprof" => Format::Pprof,
            other => return Err(unknown_format(other, allowed)),
        };
        if allowed.contains(&format) {
            Ok(format)
        } else {
            Err(unknown_format(text.unwrap_or(""), allowed))
        }
    }
}

fn unknown_format(text: &str, allowed: &[Format]) -> ApiError {
    let names: Vec<&str> = allowed
        .iter()
        .map(|f| match f {
            Format::Json => "json",
            Format::Svg => "svg",
            Format::Folded => "folded",
            Format::Pprof => "pprof",
        })
        .collect();
    ApiError::bad_request(format!(
        "parameter `format`: {text:?} is not one of {}",
        names.join(", ")
    ))
}

/// Pyroscope's `metadata` object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// `single` or `double`.
    pub format: &'static str,
    /// How the UI formats values: `samples` (time, with `sampleRate`
    /// ticks per second), `objects`, `bytes`, `goroutines`,
    /// `lock_samples`, `lock_nanoseconds`, or the raw unit.
    pub units: String,
    /// Ticks per second for time units.
    pub sample_rate: u64,
    /// The profiler that sent the data, when known (`pyroscope_spy`).
    pub spy_name: String,
    /// The query the data answers.
    pub name: String,
}

/// Units and sample rate of a sample type, as Pyroscope's UI reads them:
/// nanoseconds are `samples` at 1e9 ticks per second (micro- and
/// milliseconds likewise); `samples` counts at the profile's sampling rate
/// (1e9 / period for a nanosecond period, else 100); lock delays are
/// `lock_nanoseconds`; counts of objects, goroutines and contentions have
/// their own names.
pub fn units(sample_type: &SampleType, profile: &Profile) -> (String, u64) {
    let kind = sample_type.kind.as_str();
    let lock = kind.contains("delay")
        || kind.contains("mutex")
        || kind.contains("block")
        || kind.contains("contention");
    match sample_type.unit.as_str() {
        "nanoseconds" if lock => ("lock_nanoseconds".into(), 1_000_000_000),
        "nanoseconds" => ("samples".into(), 1_000_000_000),
        "microseconds" => ("samples".into(), 1_000_000),
        "milliseconds" => ("samples".into(), 1_000),
        "seconds" => ("samples".into(), 1),
        "bytes" => ("bytes".into(), 100),
        "count" | "" => {
            let name = if kind.contains("object")
                || kind.starts_with("alloc")
                || kind.starts_with("inuse")
            {
                "objects"
            } else if kind.starts_with("goroutine") {
                "goroutines"
            } else if lock {
                "lock_samples"
            } else {
                "samples"
            };
            let rate = match &profile.period_type {
                Some(p) if p.unit == "nanoseconds" && profile.period > 0 => {
                    (1e9 / profile.period as f64).round().max(1.0) as u64
                }
                _ => 100,
            };
            (name.into(), rate)
        }
        other => (other.to_owned(), 100),
    }
}

/// The metadata of a merged profile (its single column).
pub fn metadata(profile: &Profile, format: &'static str, name: &str, spy_name: &str) -> Metadata {
    let (units, sample_rate) = profile
        .sample_types()
        .first()
        .map(|t| units(t, profile))
        .unwrap_or_else(|| ("samples".into(), 100));
    Metadata {
        format,
        units,
        sample_rate,
        spy_name: spy_name.to_owned(),
        name: name.to_owned(),
    }
}

/// The call tree of column 0, truncated to `max_nodes` with "other" nodes.
pub fn tree(profile: &Profile, max_nodes: usize) -> FlameTree {
    drawn(FlameTree::from_profile(profile, 0), max_nodes)
}

/// A call tree cut to at most `max_nodes` nodes for drawing.
pub fn drawn(tree: FlameTree, max_nodes: usize) -> FlameTree {
    if tree.len() > max_nodes {
        tree.truncate(max_nodes)
    } else {
        tree
    }
}

/// Column 0 of a profile with at most `max_nodes` call-tree nodes (the rest
/// summed into "other" nodes), for SVG and folded output.
pub fn limit_nodes(profile: &Profile, max_nodes: usize) -> Cow<'_, Profile> {
    let full = FlameTree::from_profile(profile, 0);
    if full.len() <= max_nodes {
        return Cow::Borrowed(profile);
    }
    let types = profile.sample_types().iter().take(1).cloned().collect();
    let mut out = full.truncate(max_nodes).to_profile(types);
    copy_window(profile, &mut out);
    Cow::Owned(out)
}

/// Copies time window and period from one profile to another.
pub fn copy_window(from: &Profile, to: &mut Profile) {
    to.time_nanos = from.time_nanos;
    to.duration_nanos = from.duration_nanos;
    to.period_type = from.period_type.clone();
    to.period = from.period;
}

/// An SVG that says there is nothing to draw (status 200: an empty range
/// is an answer, not an error).
pub fn empty_svg(message: &str) -> String {
    let text: String = message
        .chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            c if c.is_control() => " ".to_owned(),
            c => c.to_string(),
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"60\" viewBox=\"0 0 1200 60\" \
         xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"600\" y=\"35\" text-anchor=\"middle\" font-family=\"Verdana\" \
         font-size=\"15\">{text}</text></svg>\n"
    )
}

/// A response with a body and a content type.
pub fn respond(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body.into(),
    )
        .into_response()
}

/// Content types of the formats.
pub const JSON: &str = "application/json";
/// SVG.
pub const SVG: &str = "image/svg+xml";
/// Folded text.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A gzipped pprof download.
pub fn pprof_response(profile: &Profile) -> Response {
    let body = firewatch_profile::gzip(&profile.to_pprof_bytes());
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"profile.pb.gz\"",
            ),
        ],
        body,
    )
        .into_response()
}

/// Writes one folded line per stack of `columns` values (`a;b;c 1 2`),
/// escaping `;` and line breaks inside names as the folded writer does.
pub fn folded_lines(profile: &Profile, out: &mut String) {
    use std::fmt::Write;
    for id in 0..profile.stack_count() as u32 {
        let values = profile.values(id);
        if values.iter().all(|v| *v == 0) {
            continue;
        }
        for (i, name) in profile.stack_names(id).enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.extend(name.chars().map(|c| match c {
                ';' => '\u{037e}',
                '\n' | '\r' => ' ',
                c => c,
            }));
        }
        for v in values {
            let _ = write!(out, " {v}");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let all = [Format::Json, Format::Svg, Format::Folded, Format::Pprof];
        assert_eq!(Format::parse(None, &all).unwrap(), Format::Json);
        assert_eq!(
            Format::parse(Some("collapsed"), &all).unwrap(),
            Format::Folded
        );
        let e = Format::parse(Some("pprof"), &all[..3]).unwrap_err();
        assert!(e.to_string().contains("json, svg, folded"), "{e}");
        assert!(Format::parse(Some("dot"), &all).is_err());
    }

    #[test]
    fn units_as_the_ui_reads_them() {
        let p = Profile::default();
        let u = |k: &str, unit: &str| units(&SampleType::new(k, unit), &p);
        assert_eq!(u("cpu", "nanoseconds"), ("samples".into(), 1_000_000_000));
        assert_eq!(u("alloc_space", "bytes").0, "bytes");
        assert_eq!(u("inuse_objects", "count").0, "objects");
        assert_eq!(u("goroutine", "count").0, "goroutines");
        assert_eq!(u("delay", "nanoseconds").0, "lock_nanoseconds");
        assert_eq!(u("contentions", "count").0, "lock_samples");
        let mut cpu = Profile::new(vec![SampleType::new("samples", "count")]);
        cpu.period_type = Some(SampleType::new("cpu", "nanoseconds"));
        cpu.period = 10_101_010;
        assert_eq!(
            units(&cpu.sample_types()[0].clone(), &cpu),
            ("samples".into(), 99)
        );
    }

    #[test]
    fn truncation_keeps_totals() {
        let mut p = Profile::new(vec![SampleType::new("samples", "count")]);
        for i in 0..50 {
            p.add_named_sample(&["main", &format!("f{i}")], &[i + 1]);
        }
        let small = limit_nodes(&p, 10);
        assert_eq!(small.total(0), p.total(0));
        assert!(small.stack_count() < 10);
        assert!(matches!(limit_nodes(&p, 100), Cow::Borrowed(_)));
        let mut s = String::new();
        folded_lines(&small, &mut s);
        assert!(s.contains("main;other "), "{s}");
    }

    #[test]
    fn empty_svg_is_escaped() {
        let s = empty_svg("a <b> & c");
        assert!(s.contains("a &lt;b&gt; &amp; c"));
    }
}
