//! The numbers a reader takes from a profile, computed from the whole
//! merged profile rather than from a flamegraph truncated for drawing:
//!
//! - `GET /api/v1/functions`: self and total per function, ranked, with a
//!   text filter, how many functions match, and the share of the total in
//!   stacks through a match (what a flamegraph search covers);
//! - `GET /api/v1/sandwich`: one function's self and total, its callers and
//!   its callees, each a flamegraph truncated for drawing only.
//!
//! Both take `/render`'s `query`, `from`, `until` and profile type.

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use firewatch_profile::{FlameTree, Flamebearer, Profile, TopEntry};
use rustc_hash::FxHashSet;
use serde::Serialize;

use super::output::{self, Metadata};
use super::shape::Shape;
use super::{max_nodes, requested_selection};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::http::Params;

/// Default and largest `limit` of `/api/v1/functions`.
const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 100_000;

/// One row of the function table.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    /// Value of samples whose leaf is the function.
    #[serde(rename = "self")]
    self_value: i64,
    /// Value of samples with the function anywhere on the stack (a
    /// recursive function counts once per sample).
    total: i64,
    /// A kernel function.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    kernel: bool,
}

/// The `/api/v1/functions` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Functions {
    /// The profile's total value.
    total: i64,
    /// Distinct functions in the profile.
    count: usize,
    /// Functions the filter matches (all without a filter).
    matched: usize,
    /// Value of the samples through at least one matching function.
    covered: i64,
    /// The first `limit` matching functions in the requested order.
    functions: Vec<Row>,
    metadata: Metadata,
}

/// How the table is ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sort {
    SelfValue,
    Total,
    Name,
}

/// Case-insensitive substring match, as the UI's search: `None` for an
/// empty filter.
fn matcher(filter: &str) -> Option<impl Fn(&str) -> bool + '_> {
    let needle = filter.trim().to_lowercase();
    (!needle.is_empty()).then_some(move |name: &str| name.to_lowercase().contains(&needle))
}

fn parse_sort(params: &Params) -> Result<(Sort, bool), ApiError> {
    let sort = match params.get("sort").unwrap_or("self") {
        "self" => Sort::SelfValue,
        "total" => Sort::Total,
        "name" => Sort::Name,
        other => {
            return Err(ApiError::bad_request(format!(
                "parameter `sort`: expected self, total or name, got {other:?}"
            )));
        }
    };
    let ascending = match params.get("dir") {
        None => sort == Sort::Name,
        Some("asc") => true,
        Some("desc") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "parameter `dir`: expected asc or desc, got {other:?}"
            )));
        }
    };
    Ok((sort, ascending))
}

fn parse_limit(params: &Params) -> Result<usize, ApiError> {
    match params.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "parameter `limit`: expected an integer from 1 to {MAX_LIMIT}, got {text:?}"
                ))
            }),
    }
}

/// `GET /api/v1/functions`.
pub(super) async fn functions(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    uri: Uri,
) -> Result<Json<Functions>, ApiError> {
    let params = Params::from_uri(&uri)?;
    let (query, selection) = requested_selection(&tenant, &params)?;
    let (sort, ascending) = parse_sort(&params)?;
    let limit = parse_limit(&params)?;
    let filter = params.get("filter").unwrap_or("").to_owned();
    let shape = Shape::from_params(&params)?;
    let merged = state.select(&selection, None).await?;
    tokio::task::spawn_blocking(move || {
        let profile = shape.apply(merged.profile);
        let metadata = output::metadata(&profile, "single", &query, "");
        table(&profile, &filter, sort, ascending, limit, metadata)
    })
    .await
    .map(Json)
    .map_err(ApiError::from)
}

fn table(
    profile: &Profile,
    filter: &str,
    sort: Sort,
    ascending: bool,
    limit: usize,
    metadata: Metadata,
) -> Functions {
    let mut rows: Vec<TopEntry> = profile.top_functions(0);
    let count = rows.len();
    let test = matcher(filter);
    let covered = match &test {
        Some(test) => covered(profile, test),
        None => profile.total(0),
    };
    if let Some(test) = &test {
        rows.retain(|r| test(&r.name));
    }
    let matched = rows.len();
    let key = |r: &TopEntry| match sort {
        Sort::SelfValue => r.self_value,
        Sort::Total => r.total,
        Sort::Name => 0,
    };
    rows.sort_by(|a, b| {
        let by_value = key(a).cmp(&key(b));
        let by_value = if ascending {
            by_value
        } else {
            by_value.reverse()
        };
        let by_name = if sort == Sort::Name && !ascending {
            b.name.cmp(&a.name)
        } else {
            a.name.cmp(&b.name)
        };
        by_value.then(by_name)
    });
    rows.truncate(limit);
    let kernel = kernel_names(profile);
    Functions {
        total: profile.total(0),
        count,
        matched,
        covered,
        functions: rows
            .into_iter()
            .map(|r| Row {
                kernel: kernel.contains(r.name.as_str()),
                name: r.name,
                self_value: r.self_value,
                total: r.total,
            })
            .collect(),
        metadata,
    }
}

/// The names of the profile's kernel functions.
fn kernel_names(profile: &Profile) -> FxHashSet<&str> {
    profile
        .functions()
        .filter(|f| f.is_kernel())
        .map(|f| f.name)
        .collect()
}

/// Value of the samples whose stack holds a function `test` matches.
fn covered(profile: &Profile, test: &impl Fn(&str) -> bool) -> i64 {
    let hits: Vec<bool> = profile.functions().map(|f| test(f.name)).collect();
    profile
        .samples()
        .filter(|(stack, _)| stack.iter().any(|&f| hits[f as usize]))
        .fold(0i64, |acc, (_, v)| acc.saturating_add(v[0]))
}

/// The `/api/v1/sandwich` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Sandwich {
    function: String,
    /// The profile's total value.
    total_value: i64,
    #[serde(rename = "self")]
    self_value: i64,
    total: i64,
    /// Rooted at the function, its callers as children (draw inverted).
    callers: Flamebearer,
    /// Rooted at the function, every call of it merged.
    callees: Flamebearer,
    /// The functions that call it directly, by the value of those calls.
    caller_rows: Vec<Neighbour>,
    /// The functions it calls directly, by the value of those calls.
    callee_rows: Vec<Neighbour>,
    metadata: Metadata,
}

/// `GET /api/v1/sandwich?function=NAME`.
pub(super) async fn sandwich(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    uri: Uri,
) -> Result<Json<Sandwich>, ApiError> {
    let params = Params::from_uri(&uri)?;
    let (query, selection) = requested_selection(&tenant, &params)?;
    let function = params.require("function")?.to_owned();
    let nodes = max_nodes(&params)?;
    let shape = Shape::from_params(&params)?;
    let merged = state.select(&selection, None).await?;
    tokio::task::spawn_blocking(move || {
        let profile = shape.apply(merged.profile);
        let callees = profile.callees(&function);
        if callees.is_empty() {
            return Err(ApiError::NotFound(format!(
                "function {function:?} is not in this profile"
            )));
        }
        let callers = profile.callers(&function);
        let total = callees.total(0);
        let self_value = profile
            .samples()
            .filter(|(stack, _)| {
                stack
                    .last()
                    .is_some_and(|&f| profile.function_name(f) == function)
            })
            .fold(0i64, |acc, (_, v)| acc.saturating_add(v[0]));
        let (callers, caller_rows) = drawn_and_neighbours(&callers, nodes);
        let (callees, callee_rows) = drawn_and_neighbours(&callees, nodes);
        Ok(Sandwich {
            total_value: profile.total(0),
            self_value,
            total,
            callers,
            callees,
            caller_rows,
            callee_rows,
            metadata: output::metadata(&profile, "single", &query, ""),
            function,
        })
    })
    .await?
    .map(Json)
}

/// A direct caller or callee in a sandwich's tables.
#[derive(Debug, Serialize)]
struct Neighbour {
    name: String,
    /// Value of the samples in which it calls, or is called by, the function.
    total: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    kernel: bool,
}

/// Rows beyond this are left out of a sandwich's tables.
const NEIGHBOUR_ROWS: usize = 200;

/// A sandwich half's flamegraph, truncated for drawing, and its root's
/// children ranked from the whole tree.
fn drawn_and_neighbours(half: &Profile, max_nodes: usize) -> (Flamebearer, Vec<Neighbour>) {
    let full = FlameTree::from_profile(half, 0);
    let kernel = kernel_names(half);
    let mut rows: Vec<Neighbour> = full
        .children(0)
        .iter()
        .flat_map(|&root| full.children(root))
        .map(|&n| Neighbour {
            name: full.name(n).to_owned(),
            total: full.total(n, 0),
            kernel: kernel.contains(full.name(n)),
        })
        .collect();
    rows.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name.cmp(&b.name)));
    rows.truncate(NEIGHBOUR_ROWS);
    (output::drawn(full, max_nodes).to_flamebearer(), rows)
}
