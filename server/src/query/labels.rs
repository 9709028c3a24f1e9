//! Series metadata: label names and values, services and their profile types.
//!
//! - `GET /labels?query=..` (or `match[]=..`, repeatable): label names of
//!   the matching series, a JSON array.
//! - `GET /label-values?label=..&query=..`: values of one label.
//! - `GET /api/v1/services`: `{"services":[{"name","profileTypes"}]}`.
//! - `GET /api/apps`: Pyroscope's application list,
//!   `[{"name":"app.cpu","spyName":"","units":"samples"}]`.
//!
//! Selectors are `{name="value",...}` or the legacy `app.cpu{...}` (whose
//! application becomes a `service_name` matcher); without one, every
//! series of the tenant counts.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use serde::Serialize;

use super::output::{self, Metadata};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::http::Params;
use crate::selector::{Matcher, parse_matchers, parse_query};
use crate::store::Timeline;
use firewatch_profile::Profile;

/// The matcher sets of a request: one per `match[]`, or the `query`; one
/// empty set (everything) when neither is given.
fn matcher_sets(params: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let texts: Vec<&str> = params.all("match[]").chain(params.all("query")).collect();
    if texts.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    texts.into_iter().map(matchers_of).collect()
}

/// Matchers of `{...}` or `app.type{...}`.
pub fn matchers_of(text: &str) -> Result<Vec<Matcher>, ApiError> {
    if text.trim_start().starts_with('{') {
        Ok(parse_matchers(text)?)
    } else {
        Ok(parse_query(text, Some("cpu"))?.matchers)
    }
}

/// `GET /labels`.
pub async fn label_names(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    uri: Uri,
) -> Result<Json<Vec<String>>, ApiError> {
    let params = Params::from_uri(&uri)?;
    let mut names = BTreeSet::new();
    for matchers in matcher_sets(&params)? {
        names.extend(state.store.label_names(&tenant, &matchers).await?);
    }
    Ok(Json(names.into_iter().collect()))
}

/// `GET /label-values`.
pub async fn label_values(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    uri: Uri,
) -> Result<Json<Vec<String>>, ApiError> {
    let params = Params::from_uri(&uri)?;
    let label = params
        .get_any(&["label", "name"])
        .ok_or_else(|| ApiError::bad_request("missing parameter `label`"))?;
    let mut values = BTreeSet::new();
    for matchers in matcher_sets(&params)? {
        values.extend(state.store.label_values(&tenant, label, &matchers).await?);
    }
    Ok(Json(values.into_iter().collect()))
}

/// A service and its profile types.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `service_name`.
    pub name: String,
    /// Profile type ids, `name:kind:unit:period_kind:period_unit`.
    pub profile_types: Vec<String>,
}

/// The answer of `GET /api/v1/services`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Services {
    /// Services sorted by name.
    pub services: Vec<Service>,
}

/// `GET /api/v1/services`.
pub async fn services(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<Services>, ApiError> {
    let mut services: Vec<Service> = state
        .store
        .services(&tenant)
        .await?
        .into_iter()
        .map(|s| Service {
            name: s.name,
            profile_types: s.profile_types,
        })
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Services { services }))
}

/// One service's activity in a window.
#[derive(Debug, Serialize)]
pub struct ServiceActivity {
    name: String,
    /// The selected type's total over the window.
    total: i64,
    /// Totals per step, for a sparkline.
    timeline: Timeline,
}

/// The `/api/v1/activity` answer.
#[derive(Debug, Serialize)]
pub struct Activity {
    /// Busiest first.
    services: Vec<ServiceActivity>,
    /// Every service's total.
    total: i64,
    /// How to format the values (units, sample rate).
    metadata: Option<Metadata>,
}

/// `GET /api/v1/activity`: the services whose series pass `query` (default
/// `{}`: all), ranked by the total of the profile type (`profile_type`,
/// default CPU) in `[from, until)`, each with its timeline; computed from
/// stored totals, no profile is merged.
pub async fn activity(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    uri: Uri,
) -> Result<Json<Activity>, ApiError> {
    let params = Params::from_uri(&uri)?;
    let query = params.get("query").unwrap_or("{}");
    let selection = super::selection(
        &tenant,
        query,
        super::profile_type_param(&params),
        super::requested_range(&params)?,
    )?;
    let step = super::step_ms(&params)?;
    let Some((sample_type, ranked)) = state.store.activity(&selection, step).await? else {
        return Ok(Json(Activity {
            services: Vec::new(),
            total: 0,
            metadata: None,
        }));
    };
    let services: Vec<ServiceActivity> = ranked
        .into_iter()
        .map(|(name, timeline)| ServiceActivity {
            name,
            total: timeline
                .samples
                .iter()
                .fold(0i64, |a, v| a.saturating_add(*v)),
            timeline,
        })
        .collect();
    let total = services.iter().fold(0i64, |a, s| a.saturating_add(s.total));
    let shape = Profile::new(vec![sample_type]);
    Ok(Json(Activity {
        services,
        total,
        metadata: Some(output::metadata(&shape, "single", query, "")),
    }))
}

/// One entry of Pyroscope's `/api/apps`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// `service.kind`, the legacy query name.
    pub name: String,
    /// Always empty: the spy is per series, not per application.
    pub spy_name: String,
    /// `samples`, `objects`, `bytes`, ... (see [`super::output::units`]).
    pub units: String,
}

/// `GET /api/apps`.
pub async fn apps(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<Vec<App>>, ApiError> {
    let mut apps = BTreeSet::new();
    for service in state.store.services(&tenant).await? {
        for id in &service.profile_types {
            let mut parts = id.split(':');
            let (Some(_family), Some(kind), Some(unit)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let sample_type = firewatch_profile::SampleType::new(kind, unit);
            let (units, _) =
                super::output::units(&sample_type, &firewatch_profile::Profile::default());
            apps.insert(App {
                name: format!("{}.{kind}", service.name),
                spy_name: String::new(),
                units,
            });
        }
    }
    Ok(Json(apps.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_in_both_forms() {
        let m = matchers_of(r#"{env="prod"}"#).unwrap();
        assert_eq!(m, vec![Matcher::eq("env", "prod")]);
        let m = matchers_of(r#"app.cpu{env="prod"}"#).unwrap();
        assert_eq!(m.len(), 2);
        let e = matchers_of(r#"{env="prod""#).unwrap_err();
        assert!(e.to_string().contains("position"), "{e}");
    }
}
