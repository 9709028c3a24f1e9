//! Ingest limits and the checks of series labels every ingest path shares.

use firewatch_profile::Limits;
use serde::Serialize;

use crate::error::ApiError;
use crate::selector::{Labels, PROFILE_NAME, SERVICE_NAME};

/// Bounds on what one ingest request may carry. Defaults are at least as
/// generous as Pyroscope's (4 MiB decompressed, 16,000 samples, depth
/// 1,000, 30 labels per series).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IngestLimits {
    /// Request body as received (compressed), bytes; also the decompressed
    /// envelope of a push request. Over it: 413.
    pub max_body_bytes: usize,
    /// One profile after decompression, bytes. Over it: 413.
    pub max_decompressed_bytes: usize,
    /// Samples (pprof) or lines (folded, lines) in one profile. Over it: 422.
    pub max_samples: usize,
    /// Frames in one stack. Over it: 422.
    pub max_stack_depth: usize,
    /// Labels of one series, `service_name` and `__name__` included. Over it: 422.
    pub max_labels_per_series: usize,
    /// Bytes of one label name. Over it: 422.
    pub max_label_name_length: usize,
    /// Bytes of one label value. Over it: 422.
    pub max_label_value_length: usize,
    /// Profiles in one push request (all series together). Over it: 422.
    pub max_profiles_per_request: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_body_bytes: 16 << 20,
            max_decompressed_bytes: 16 << 20,
            max_samples: 100_000,
            max_stack_depth: 2_048,
            max_labels_per_series: 30,
            max_label_name_length: 1_024,
            max_label_value_length: 2_048,
            max_profiles_per_request: 1_000,
        }
    }
}

/// Entries of a pprof string table; a table can hold no more strings than
/// its decompressed bytes anyway, this only bounds the vector up front.
const MAX_STRINGS: usize = 1_000_000;

/// Labels on one pprof sample (pprof's own labels, not series labels).
const MAX_LABELS_PER_SAMPLE: usize = 128;

impl IngestLimits {
    /// The decoding limits of one profile.
    pub fn profile_limits(&self) -> Limits {
        Limits {
            max_decompressed_bytes: self.max_decompressed_bytes,
            max_samples: self.max_samples,
            max_stack_depth: self.max_stack_depth,
            max_strings: MAX_STRINGS,
            max_labels_per_sample: MAX_LABELS_PER_SAMPLE,
        }
    }
}

/// Whether a label name is reserved: starts with `__` and is not `__name__`.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with("__") && name != PROFILE_NAME
}

use firewatch_syntax::is_label_name;

/// A label name as stored: every `.` becomes `_`, as Pyroscope does, so
/// OpenTelemetry-style names from its SDKs (`otel.scope.name`,
/// `process.runtime.version`) keep working (`otel_scope_name`, ...).
/// Other characters outside `[a-zA-Z0-9_]` are left for
/// [`check_labels`] to refuse: replacing them too could merge distinct
/// names.
pub fn sanitize_label_name(name: String) -> String {
    if name.contains('.') {
        name.replace('.', "_")
    } else {
        name
    }
}

/// Collects labels, refusing a name given twice.
pub fn collect_labels<I>(pairs: I) -> Result<Labels, ApiError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut labels = Labels::new();
    for (name, value) in pairs {
        if labels.contains_key(&name) {
            return Err(ApiError::bad_request(format!(
                "label {name:?} is given more than once"
            )));
        }
        labels.insert(name, value);
    }
    Ok(labels)
}

/// Checks a series' labels against the limits: names well-formed and not
/// reserved, lengths, count, and a non-empty `service_name`. Labels with
/// an empty value are dropped first (an empty value means "no label").
pub fn check_labels(mut labels: Labels, limits: &IngestLimits) -> Result<Labels, ApiError> {
    labels.retain(|_, v| !v.is_empty());
    if !labels.contains_key(SERVICE_NAME) {
        return Err(ApiError::bad_request(
            "missing label `service_name` (the service the profile belongs to)",
        ));
    }
    for (name, value) in &labels {
        if !is_label_name(name) {
            return Err(ApiError::bad_request(format!(
                "invalid label name {name:?}: expected [a-zA-Z_][a-zA-Z0-9_]*"
            )));
        }
        if is_reserved(name) {
            return Err(ApiError::bad_request(format!(
                "label name {name:?} is reserved (names starting with `__` other than `__name__`)"
            )));
        }
        if name.len() > limits.max_label_name_length {
            return Err(ApiError::Unprocessable(format!(
                "label name {:?}... is {} bytes, over the limit of {}",
                truncated(name),
                name.len(),
                limits.max_label_name_length
            )));
        }
        if value.len() > limits.max_label_value_length {
            return Err(ApiError::Unprocessable(format!(
                "value of label {name:?} is {} bytes, over the limit of {}",
                value.len(),
                limits.max_label_value_length
            )));
        }
    }
    if labels.len() > limits.max_labels_per_series {
        return Err(ApiError::Unprocessable(format!(
            "{} labels per series, over the limit of {}",
            labels.len(),
            limits.max_labels_per_series
        )));
    }
    Ok(labels)
}

/// At most the first 32 bytes of `s` (cut at a character boundary), for
/// quoting a long name in a message.
pub(crate) fn truncated(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_names() {
        for ok in ["a", "_x", "service_name", "__name__", "A9_b"] {
            assert!(is_label_name(ok), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a.b", "é"] {
            assert!(!is_label_name(bad), "{bad}");
        }
        assert!(is_reserved("__session_id__"));
        assert!(!is_reserved("__name__"));
    }

    #[test]
    fn checks_name_count_and_lengths() {
        let limits = IngestLimits::default();
        let ok = check_labels(labels(&[("service_name", "a"), ("env", "")]), &limits).unwrap();
        assert_eq!(ok, labels(&[("service_name", "a")]));

        let e = check_labels(labels(&[("env", "prod")]), &limits).unwrap_err();
        assert!(e.to_string().contains("service_name"), "{e}");

        let e = check_labels(labels(&[("service_name", "a"), ("a-b", "x")]), &limits).unwrap_err();
        assert_eq!(e.status(), 400);

        let e = check_labels(labels(&[("service_name", "a"), ("__x", "1")]), &limits).unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");

        let long = "v".repeat(limits.max_label_value_length + 1);
        let e = check_labels(labels(&[("service_name", &long)]), &limits).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(e.to_string().contains("2048"), "{e}");

        let many: Labels = (0..limits.max_labels_per_series)
            .map(|i| (format!("l{i}"), "x".to_string()))
            .chain([("service_name".to_string(), "a".to_string())])
            .collect();
        let e = check_labels(many, &limits).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(e.to_string().contains("31 labels per series"), "{e}");
    }

    #[test]
    fn dots_become_underscores() {
        assert_eq!(
            sanitize_label_name("otel.scope.name".into()),
            "otel_scope_name"
        );
        assert_eq!(sanitize_label_name(".a.".into()), "_a_");
        assert_eq!(sanitize_label_name("a-b".into()), "a-b");
        assert_eq!(sanitize_label_name("env".into()), "env");
        assert!(is_label_name(&sanitize_label_name("k8s.pod.name".into())));
    }

    #[test]
    fn duplicates_are_refused() {
        let e = collect_labels([("a".into(), "1".into()), ("a".into(), "2".into())]).unwrap_err();
        assert!(e.to_string().contains("more than once"));
    }
}
