//! `GET /render`: the merged profile of a query over a window.
//!
//! Parameters: `query` (`app.cpu{env="prod"}`, or `{service_name="app"}`
//! with `profile_type`), `from` (default `now-1h`), `until` (default
//! `now`), `format` (`json`, `svg`, `folded`, `pprof`), `maxNodes` (8,192;
//! json, svg and folded are truncated with "other" nodes that keep totals
//! exact), `step` (timeline resolution), `hideTruncated`, `groupBy` (a
//! label: one root frame per value, the all-services flamegraph), and for
//! SVG `icicle` and `title`.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use firewatch_profile::{FlameTree, Flamebearer};
use firewatch_render::{RenderError, SvgOptions, flamegraph_svg};
use serde::Serialize;

use super::output::{self, Format, Metadata};
use super::shape::{self, Shape};
use super::{max_nodes, requested_selection, step_ms};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::http::Params;
use crate::ingest::legacy::SPY_LABEL;
use crate::store::{Merged, Selection, Store, Timeline};

/// The JSON answer: Pyroscope's layout, and how much of the call tree the
/// flamebearer draws.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RenderJson {
    version: u32,
    flamebearer: Flamebearer,
    metadata: Metadata,
    timeline: Timeline,
    call_tree_nodes: CallTreeNodes,
}

/// The call tree's size, whole and as drawn within `maxNodes` (the rest
/// folded into "other" nodes whose totals are exact).
#[derive(Serialize)]
struct CallTreeNodes {
    total: usize,
    drawn: usize,
}

/// How to draw, from the request.
struct Options {
    format: Format,
    max_nodes: usize,
    icicle: bool,
    title: Option<String>,
    name: String,
    shape: Shape,
}

/// `GET /render`.
pub async fn render(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = Params::from_uri(&uri)?;
    let (query, selection) = requested_selection(&tenant, &params)?;
    let options = Options {
        format: Format::parse(
            params.get("format"),
            &[Format::Json, Format::Svg, Format::Folded, Format::Pprof],
        )?,
        max_nodes: max_nodes(&params)?,
        icicle: params.flag("icicle", false)?,
        title: params.get("title").map(str::to_owned),
        name: query,
        shape: Shape::from_params(&params)?,
    };
    let step = step_ms(&params)?;
    let group = shape::group_by(&params)?;
    let (merged, spy) = tokio::join!(
        async {
            match &group {
                Some(label) => shape::grouped(&state, &selection, label, step).await,
                None => state.select(&selection, step).await,
            }
        },
        spy_name(&state.store, &selection, options.format)
    );
    let merged = merged?;
    let spy = spy?;
    tokio::task::spawn_blocking(move || draw(merged, &options, &spy)).await?
}

/// The `pyroscope_spy` label of the selected series, when they share one
/// (only the JSON metadata shows it).
async fn spy_name(
    store: &Store,
    selection: &Selection,
    format: Format,
) -> Result<String, ApiError> {
    if format != Format::Json {
        return Ok(String::new());
    }
    let values = store
        .label_values(&selection.tenant, SPY_LABEL, &selection.matchers)
        .await?;
    Ok(match values.as_slice() {
        [one] => one.clone(),
        _ => String::new(),
    })
}

fn draw(merged: Merged, options: &Options, spy: &str) -> Result<Response, ApiError> {
    let Merged {
        profile, timeline, ..
    } = merged;
    let mut profile = options.shape.apply(profile);
    match options.format {
        Format::Json => {
            let full = FlameTree::from_profile(&profile, 0);
            let total = full.len();
            let drawn = output::drawn(full, options.max_nodes);
            let body = RenderJson {
                version: 1,
                call_tree_nodes: CallTreeNodes {
                    total,
                    drawn: drawn.len(),
                },
                flamebearer: drawn.to_flamebearer(),
                metadata: output::metadata(&profile, "single", &options.name, spy),
                timeline,
            };
            let json = serde_json::to_vec(&body)
                .map_err(|e| ApiError::Internal(format!("cannot encode JSON: {e}")))?;
            Ok(output::respond(output::JSON, json))
        }
        Format::Svg => {
            let limited = output::limit_nodes(&profile, options.max_nodes);
            let svg_options = SvgOptions {
                title: Some(
                    options
                        .title
                        .clone()
                        .unwrap_or_else(|| options.name.clone()),
                ),
                icicle: options.icicle,
                ..SvgOptions::default()
            };
            Ok(output::respond(output::SVG, svg(&limited, &svg_options)?))
        }
        Format::Folded => {
            let limited = output::limit_nodes(&profile, options.max_nodes);
            let mut text = String::new();
            output::folded_lines(&limited, &mut text);
            Ok(output::respond(output::TEXT, text))
        }
        Format::Pprof => {
            if profile.time_nanos == 0 && profile.duration_nanos == 0 {
                let (from, until) = (
                    timeline.start_time,
                    timeline.start_time + timeline.duration_delta * timeline.samples.len() as i64,
                );
                profile.time_nanos = from.saturating_mul(1_000_000_000);
                profile.duration_nanos = (until - from).saturating_mul(1_000_000_000);
            }
            Ok(output::pprof_response(&profile))
        }
    }
}

/// Draws one profile, or an SVG saying there is nothing to draw.
pub fn svg(profile: &firewatch_profile::Profile, options: &SvgOptions) -> Result<String, ApiError> {
    let mut out = Vec::new();
    match flamegraph_svg(profile, 0, options, &mut out) {
        Ok(()) => String::from_utf8(out)
            .map_err(|_| ApiError::Internal("the SVG renderer wrote invalid UTF-8".into())),
        Err(RenderError::Empty { .. } | RenderError::NoSuchSampleType { .. }) => {
            Ok(output::empty_svg("No samples in the selected range"))
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}
