//! `GET /render-diff`: how a "right" (after) window differs from a "left"
//! (before) one, compared by share of each side's total so that a longer
//! or busier window does not read as a regression.
//!
//! Parameters: `leftQuery`, `leftFrom`, `leftUntil`, `rightQuery`,
//! `rightFrom`, `rightUntil` (a missing query falls back to `query`, then
//! to the other side's), `profile_type`, `format` (`json`, `svg`,
//! `folded`), `maxNodes`, `limit` (rows of the function table, default
//! 50) and `colorBlind` (palette hint).

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use firewatch_profile::diff::function_changes;
use firewatch_profile::{FlameTree, Flamebearer, Profile};
use firewatch_render::{RenderError, SvgOptions, diff_svg};
use serde::Serialize;

use super::output::{self, Format, Metadata};
use super::shape::Shape;
use super::{max_nodes, profile_type_param, selection, step_ms};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::http::Params;
use crate::store::{Merged, Timeline};
use crate::time::{now_ms, parse_range};

/// Default number of rows in the function table.
pub const DEFAULT_TABLE_ROWS: usize = 50;

/// One row of the function table; shares are percentages of each side's total.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRow {
    /// Function name.
    pub name: String,
    /// Self share before, %.
    pub before_self_percent: f64,
    /// Self share after, %.
    pub after_self_percent: f64,
    /// `after - before`, percentage points: positive grew (slower).
    pub delta_self_percent: f64,
    /// Total share before, %.
    pub before_total_percent: f64,
    /// Total share after, %.
    pub after_total_percent: f64,
}

/// Colours the UI should use: which hue means grew and which shrank.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Palette {
    /// `default` (red/grey/green) or `colorblind` (red/grey/blue).
    pub name: &'static str,
    /// Share grew (slower).
    pub grew: &'static str,
    /// Share unchanged.
    pub unchanged: &'static str,
    /// Share shrank (faster).
    pub shrank: &'static str,
}

impl Palette {
    fn new(color_blind: bool) -> Palette {
        Palette {
            name: if color_blind { "colorblind" } else { "default" },
            grew: "#e5484d",
            unchanged: "#b0b0b0",
            shrank: if color_blind { "#3b82f6" } else { "#30a46c" },
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DiffJson {
    version: u32,
    flamebearer: Flamebearer,
    metadata: Metadata,
    left_ticks: i64,
    right_ticks: i64,
    left_timeline: Timeline,
    right_timeline: Timeline,
    functions: Vec<FunctionRow>,
    /// Both palettes, so switching needs no new query.
    palettes: [Palette; 2],
    palette: Palette,
}

struct Options {
    format: Format,
    max_nodes: usize,
    rows: usize,
    color_blind: bool,
    name: String,
    shape: Shape,
}

/// `GET /render-diff`.
pub async fn render_diff(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = Params::from_uri(&uri)?;
    let shared = params.get("query");
    let left_query = params
        .get("leftQuery")
        .or(shared)
        .or(params.get("rightQuery"));
    let right_query = params.get("rightQuery").or(shared).or(left_query);
    let (Some(left_query), Some(right_query)) = (left_query, right_query) else {
        return Err(ApiError::bad_request(
            "missing parameter `leftQuery` (and `rightQuery`, or `query` for both)",
        ));
    };
    let now = now_ms();
    let left_range = parse_range(
        params.get("leftFrom"),
        params.get("leftUntil"),
        "now-1h",
        ("leftFrom", "leftUntil"),
        now,
    )
    .map_err(ApiError::BadRequest)?;
    let right_range = parse_range(
        params.get("rightFrom"),
        params.get("rightUntil"),
        "now-1h",
        ("rightFrom", "rightUntil"),
        now,
    )
    .map_err(ApiError::BadRequest)?;
    let profile_type = profile_type_param(&params);
    let left = selection(&tenant, left_query, profile_type, left_range)
        .map_err(|e| e.context("leftQuery"))?;
    let right = selection(&tenant, right_query, profile_type, right_range)
        .map_err(|e| e.context("rightQuery"))?;
    let rows = match params.get("limit") {
        None => DEFAULT_TABLE_ROWS,
        Some(s) => s.parse().map_err(|_| {
            ApiError::bad_request(format!("parameter `limit`: expected an integer, got {s:?}"))
        })?,
    };
    let options = Options {
        format: Format::parse(
            params.get("format"),
            &[Format::Json, Format::Svg, Format::Folded],
        )?,
        max_nodes: max_nodes(&params)?,
        rows,
        color_blind: params.flag("colorBlind", false)?,
        shape: Shape::from_params(&params)?,
        name: if left_query == right_query {
            right_query.to_owned()
        } else {
            format!("{left_query} vs {right_query}")
        },
    };
    let step = step_ms(&params)?;
    let (left, right) = tokio::join!(state.select(&left, step), state.select(&right, step));
    let (mut left, mut right) = (left?, right?);
    tokio::task::spawn_blocking(move || {
        left.profile = options.shape.apply(left.profile);
        right.profile = options.shape.apply(right.profile);
        draw(left, right, &options)
    })
    .await?
}

fn draw(left: Merged, right: Merged, options: &Options) -> Result<Response, ApiError> {
    let full = FlameTree::diff(&left.profile, 0, &right.profile, 0);
    let tree = if full.len() > options.max_nodes {
        full.truncate(options.max_nodes)
    } else {
        full
    };
    match options.format {
        Format::Json => {
            let body = DiffJson {
                version: 1,
                flamebearer: tree.to_flamebearer(),
                metadata: output::metadata(&right.profile, "double", &options.name, ""),
                left_ticks: tree.total(0, 0),
                right_ticks: tree.total(0, 1),
                left_timeline: left.timeline,
                right_timeline: right.timeline,
                functions: function_table(&left.profile, &right.profile, options.rows),
                palette: Palette::new(options.color_blind),
                palettes: [Palette::new(false), Palette::new(true)],
            };
            let json = serde_json::to_vec(&body)
                .map_err(|e| ApiError::Internal(format!("cannot encode JSON: {e}")))?;
            Ok(output::respond(output::JSON, json))
        }
        Format::Svg => {
            let types = |p: &Profile| p.sample_types().iter().take(1).cloned().collect::<Vec<_>>();
            let both = tree.to_profile([types(&left.profile), types(&right.profile)].concat());
            let (before, after) = (
                both.select_sample_types(&[0]),
                both.select_sample_types(&[1]),
            );
            let svg_options = SvgOptions {
                title: Some(format!("Diff: {}", options.name)),
                ..SvgOptions::default()
            };
            let mut out = Vec::new();
            let svg = match diff_svg(&before, 0, &after, 0, &svg_options, &mut out) {
                Ok(()) => String::from_utf8(out).map_err(|_| {
                    ApiError::Internal("the SVG renderer wrote invalid UTF-8".into())
                })?,
                Err(RenderError::Empty { what }) => {
                    output::empty_svg(&format!("Nothing to compare: {what} has no samples"))
                }
                Err(RenderError::NoSuchSampleType { .. }) => {
                    output::empty_svg("Nothing to compare: no samples in either window")
                }
                Err(e) => return Err(ApiError::Internal(e.to_string())),
            };
            Ok(output::respond(output::SVG, svg))
        }
        Format::Folded | Format::Pprof => {
            let both = tree.to_profile(vec![
                firewatch_profile::SampleType::new("before", "count"),
                firewatch_profile::SampleType::new("after", "count"),
            ]);
            let mut text = String::new();
            output::folded_lines(&both, &mut text);
            Ok(output::respond(output::TEXT, text))
        }
    }
}

/// The functions whose self share changed most (by absolute change),
/// as percentages; functions with no self value on either side are left out.
pub fn function_table(before: &Profile, after: &Profile, rows: usize) -> Vec<FunctionRow> {
    let mut changes: Vec<_> = function_changes(before, 0, after, 0)
        .into_iter()
        .filter(|c| c.before_self != 0.0 || c.after_self != 0.0)
        .collect();
    changes.sort_by(|a, b| {
        b.delta_self
            .abs()
            .total_cmp(&a.delta_self.abs())
            .then_with(|| a.name.cmp(&b.name))
    });
    changes
        .into_iter()
        .take(rows)
        .map(|c| FunctionRow {
            before_self_percent: c.before_self * 100.0,
            after_self_percent: c.after_self * 100.0,
            delta_self_percent: c.delta_self * 100.0,
            before_total_percent: c.before_total * 100.0,
            after_total_percent: c.after_total * 100.0,
            name: c.name,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use firewatch_profile::SampleType;

    #[test]
    fn table_ranks_by_absolute_change() {
        let mut before = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
        before.add_named_sample(&["main", "a"], &[50]);
        before.add_named_sample(&["main", "b"], &[50]);
        let mut after = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
        after.add_named_sample(&["main", "a"], &[10]);
        after.add_named_sample(&["main", "b"], &[60]);
        after.add_named_sample(&["main", "c"], &[30]);
        let rows = function_table(&before, &after, 10);
        let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "b"]);
        assert!((rows[0].delta_self_percent + 40.0).abs() < 1e-9);
        assert!((rows[1].after_self_percent - 30.0).abs() < 1e-9);
        assert_eq!(function_table(&before, &after, 1).len(), 1);
    }
}
