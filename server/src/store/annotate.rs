//! Annotations: a tenant's marks on the timeline (deploys, incidents),
//! each a time, a text and labels saying which services it concerns.

use super::backend::AnnotationRow;
use super::{Labels, Result, Store, StoreError};
use crate::selector::Matcher;

/// Most annotations one read answers: the first this many in time order.
pub const MAX_ANNOTATIONS: usize = 1_000;

/// Rows read per round trip while filtering by labels.
const PAGE: usize = 1_000;

/// Rows a read examines at most, so a range crowded with annotations of
/// other services costs a bounded number of round trips.
const MAX_SCANNED: usize = 100 * PAGE;

/// An annotation to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAnnotation {
    /// Tenant (`X-Scope-OrgID`); "" for the default tenant.
    pub tenant: String,
    /// When, Unix milliseconds.
    pub time_ms: i64,
    /// What happened, e.g. "deploy 1.5".
    pub text: String,
    /// Which series it concerns (none: every series).
    pub labels: Labels,
}

/// A stored annotation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Annotation {
    /// Id, assigned by the database.
    pub id: i64,
    /// When, Unix milliseconds.
    #[serde(rename = "time")]
    pub time_ms: i64,
    /// What happened.
    pub text: String,
    /// Which series it concerns.
    pub labels: Labels,
}

/// Whether an annotation with `labels` concerns the series `matchers`
/// select: every matcher on a label the annotation has must pass, and a
/// matcher on a label it lacks is ignored, so an annotation without
/// labels concerns every series.
pub fn concerns(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers
        .iter()
        .filter(|m| labels.contains_key(&m.name))
        .all(|m| m.matches(labels))
}

impl Store {
    /// Stores an annotation durably and returns it with its id.
    pub async fn annotate(&self, new: NewAnnotation) -> Result<Annotation> {
        // A map of strings always encodes; the fallback is never taken.
        let labels = serde_json::to_string(&new.labels).unwrap_or_else(|_| "{}".into());
        // Writes go one at a time (SQLite has one writer; `close` waits for it).
        let _writer = self.inner.write_lock.lock().await;
        let id = self
            .inner
            .backend
            .insert_annotation(&new.tenant, new.time_ms, &new.text, &labels)
            .await?;
        tracing::debug!(id, tenant = %new.tenant, time_ms = new.time_ms, "annotation stored");
        Ok(Annotation {
            id,
            time_ms: new.time_ms,
            text: new.text,
            labels: new.labels,
        })
    }

    /// The tenant's annotations in `[from_ms, until_ms)` that concern the
    /// series `matchers` select (see [`concerns`]), ordered by time (then
    /// id), at most [`MAX_ANNOTATIONS`].
    pub async fn annotations(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<Annotation>> {
        let mut out = Vec::new();
        let mut after = (from_ms, 0);
        let mut scanned = 0;
        while out.len() < MAX_ANNOTATIONS && scanned < MAX_SCANNED {
            let rows = self
                .inner
                .backend
                .annotations(tenant, from_ms, until_ms, after, PAGE as i64)
                .await?;
            scanned += rows.len();
            let last_page = rows.len() < PAGE;
            for row in rows {
                after = (row.time_ms, row.id);
                let annotation = decode(row)?;
                if concerns(matchers, &annotation.labels) {
                    out.push(annotation);
                    if out.len() == MAX_ANNOTATIONS {
                        break;
                    }
                }
            }
            if last_page {
                break;
            }
        }
        if scanned >= MAX_SCANNED && out.len() < MAX_ANNOTATIONS {
            tracing::warn!(
                tenant,
                from_ms,
                until_ms,
                scanned,
                "annotation read stopped after scanning its limit of rows"
            );
        }
        Ok(out)
    }
}

fn decode(row: AnnotationRow) -> Result<Annotation> {
    let labels: Labels =
        serde_json::from_str(&row.labels).map_err(|e| StoreError::CorruptAnnotation {
            id: row.id,
            detail: format!("labels are not a JSON object of strings: {e}"),
        })?;
    Ok(Annotation {
        id: row.id,
        time_ms: row.time_ms,
        text: row.text,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::parse_matchers;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matchers_on_missing_labels_are_ignored() {
        let m = parse_matchers(r#"{service_name="checkout", env!="dev"}"#).unwrap();
        assert!(concerns(&m, &labels(&[])));
        assert!(concerns(&m, &labels(&[("service_name", "checkout")])));
        assert!(concerns(&m, &labels(&[("env", "prod")])));
        assert!(!concerns(&m, &labels(&[("service_name", "payments")])));
        assert!(!concerns(
            &m,
            &labels(&[("service_name", "checkout"), ("env", "dev")])
        ));
        assert!(concerns(&[], &labels(&[("service_name", "payments")])));
    }
}
