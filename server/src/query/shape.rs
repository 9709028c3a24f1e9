//! How a reader asked to see a merged profile, shared by every query that
//! answers with one: markers hidden (`hideTruncated`), and for `/render`
//! one root per value of a label (`groupBy`, the all-services flamegraph).

use firewatch_profile::{Profile, TRUNCATED};

use crate::AppState;
use crate::error::ApiError;
use crate::http::Params;
use crate::selector::Matcher;
use crate::store::{Merged, Selection, Timeline};
use firewatch_syntax::is_label_name;

/// Most groups a `groupBy` flamegraph draws.
pub const MAX_GROUPS: usize = 1_000;

/// What to do to a merged profile before answering.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shape {
    /// Drop the `[truncated stack]` marker frames: the samples stay, their
    /// outermost read frames become roots (as perf shows them).
    hide_truncated: bool,
}

impl Shape {
    /// Reads `hideTruncated` (default false).
    pub fn from_params(params: &Params) -> Result<Shape, ApiError> {
        Ok(Shape {
            hide_truncated: params.flag("hideTruncated", false)?,
        })
    }

    /// The profile as the reader asked to see it.
    pub fn apply(self, profile: Profile) -> Profile {
        if self.hide_truncated {
            profile.without_frames(TRUNCATED)
        } else {
            profile
        }
    }
}

/// Reads `groupBy`: a label name, or `None`.
pub fn group_by(params: &Params) -> Result<Option<String>, ApiError> {
    match params.get("groupBy") {
        None | Some("") => Ok(None),
        Some(name) if is_label_name(name) => Ok(Some(name.to_owned())),
        Some(name) => Err(ApiError::bad_request(format!(
            "parameter `groupBy`: expected a label name ([a-zA-Z_][a-zA-Z0-9_]*), got {name:?}"
        ))),
    }
}

/// The root frame of the series without the grouping label.
fn unlabelled(label: &str) -> String {
    format!("[no {label}]")
}

/// The selection's profile with each value of `label` as a root frame
/// above its series' stacks (series without the label under `[no
/// LABEL]`), and the timeline of them all.
pub async fn grouped(
    state: &AppState,
    selection: &Selection,
    label: &str,
    step_ms: Option<i64>,
) -> Result<Merged, ApiError> {
    let values = state
        .store
        .label_values(&selection.tenant, label, &selection.matchers)
        .await?;
    if values.len() > MAX_GROUPS {
        return Err(ApiError::bad_request(format!(
            "groupBy {label}: the query has {} values of {label}, over the limit of {MAX_GROUPS}; narrow the query",
            values.len()
        )));
    }
    let mut profile: Option<Profile> = None;
    let mut timeline: Option<Timeline> = None;
    let mut series = 0;
    let groups = values.iter().map(|v| (v.as_str(), v.clone()));
    for (value, root) in groups.chain([("", unlabelled(label))]) {
        let mut one = selection.clone();
        one.matchers.push(Matcher::eq(label, value));
        let merged = state.select(&one, step_ms).await?;
        series += merged.series;
        add_timeline(&mut timeline, merged.timeline);
        match &mut profile {
            // The first keeps the sample type even when it is empty.
            None => profile = Some(merged.profile.under_root(&root)),
            Some(p) if merged.profile.total(0) != 0 => p.merge(&merged.profile.under_root(&root)),
            Some(_) => {}
        }
    }
    Ok(Merged {
        profile: profile.unwrap_or_default(),
        timeline: timeline.unwrap_or_default(),
        series,
    })
}

/// Sums `add` into `sum` step by step (every group's timeline has the
/// selection's steps).
fn add_timeline(sum: &mut Option<Timeline>, add: Timeline) {
    match sum {
        None => *sum = Some(add),
        Some(s) => {
            if s.samples.len() < add.samples.len() {
                s.samples.resize(add.samples.len(), 0);
            }
            for (a, b) in s.samples.iter_mut().zip(add.samples) {
                *a = a.saturating_add(b);
            }
        }
    }
}
