//! Profile types: Pyroscope's legacy names (`app.cpu{env=prod}`) and the
//! sample types they stand for, and the profile family (`__name__`) of a
//! profile from its sample types.
//!
//! | legacy type | sample types (kind/unit) | `__name__` |
//! |---|---|---|
//! | `cpu`, `itimer` | `samples/count`, `<type>/nanoseconds` | `process_cpu` |
//! | `wall` | `samples/count`, `wall/nanoseconds` | `wall` |
//! | `alloc_objects`, `inuse_objects` | `<type>/count` | `memory` |
//! | `alloc_space`, `inuse_space` | `<type>/bytes` | `memory` |
//! | `goroutines` | `goroutines/<units>` | `goroutine` |
//! | `mutex_count`, `mutex_duration` | `<type>/<units>` | `mutex` |
//! | `block_count`, `block_duration` | `<type>/<units>` | `block` |
//!
//! For `cpu`, `wall` and `itimer` each sample is worth `1e9 / sampleRate`
//! nanoseconds.

use firewatch_profile::{FuncId, Profile, SampleType};

/// The profile types a legacy name may end with (`app.<type>`).
pub const LEGACY_TYPES: &[&str] = &[
    "cpu",
    "wall",
    "itimer",
    "alloc_objects",
    "alloc_space",
    "inuse_objects",
    "inuse_space",
    "goroutines",
    "mutex_count",
    "mutex_duration",
    "block_count",
    "block_duration",
];

/// A parsed legacy `name` parameter: `app[.type]{k=v,...}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyName {
    /// The application, which becomes `service_name`.
    pub app: String,
    /// The type suffix, when the part after the last dot is a known type.
    pub kind: Option<String>,
    /// The labels between braces, in order.
    pub labels: Vec<(String, String)>,
}

/// Parses `app.name[.type]{k=v,k2="v 2"}`. The part after the last dot is
/// the type only when it is one of [`LEGACY_TYPES`]; otherwise it belongs to
/// the application name (`my.app` is the application `my.app`, type cpu).
pub fn parse_legacy_name(name: &str) -> Result<LegacyName, String> {
    let (head, labels) = match name.find('{') {
        None => (name, Vec::new()),
        Some(brace) => {
            let inner = name[brace + 1..]
                .trim_end()
                .strip_suffix('}')
                .ok_or_else(|| format!("invalid name {name:?}: missing `}}` at the end"))?;
            (&name[..brace], parse_legacy_labels(inner)?)
        }
    };
    let head = head.trim();
    let (app, kind) = match head.rsplit_once('.') {
        Some((app, kind)) if LEGACY_TYPES.contains(&kind) => (app, Some(kind.to_owned())),
        _ => (head, None),
    };
    if app.is_empty() {
        return Err(format!("invalid name {name:?}: missing application name"));
    }
    if app.chars().any(|c| c.is_control() || c == '{' || c == '}') {
        return Err(format!("invalid application name {app:?}"));
    }
    Ok(LegacyName {
        app: app.to_owned(),
        kind,
        labels,
    })
}

fn parse_legacy_labels(inner: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in inner.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("invalid label {pair:?} in name: expected key=value"))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        out.push((k.trim().to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// The profile family (`__name__`) a sample type kind belongs to, if known.
pub fn family_of_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "cpu" | "itimer" => Some("process_cpu"),
        "wall" => Some("wall"),
        "goroutine" | "goroutines" => Some("goroutine"),
        "mutex_count" | "mutex_duration" => Some("mutex"),
        "block_count" | "block_duration" => Some("block"),
        k if k.starts_with("alloc_") || k.starts_with("inuse_") => Some("memory"),
        _ => None,
    }
}

/// The profile family of a profile: the first sample type with a known
/// family; `process_cpu` for `samples` taken on a cpu period; otherwise the
/// first sample type's kind.
pub fn profile_family(profile: &Profile) -> String {
    let types = profile.sample_types();
    if let Some(f) = types.iter().find_map(|t| family_of_kind(&t.kind)) {
        return f.to_owned();
    }
    if let Some(p) = &profile.period_type
        && let Some(f) = family_of_kind(&p.kind)
    {
        return f.to_owned();
    }
    types
        .first()
        .map(|t| t.kind.clone())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The shape legacy text formats (folded, lines) are stored in.
#[derive(Clone, Debug, PartialEq)]
pub struct LegacyShape {
    /// Sample types: the counted column first.
    pub sample_types: Vec<SampleType>,
    /// For cpu/wall/itimer: the value of one sample in nanoseconds, which
    /// fills the second column.
    pub nanos_per_sample: Option<f64>,
    /// The family (`__name__`).
    pub family: &'static str,
    /// Period type and period, for the pprof export.
    pub period: Option<(SampleType, i64)>,
}

/// Maps a legacy `units` parameter to a unit.
fn unit_of(units: Option<&str>) -> Result<&str, String> {
    match units.unwrap_or("samples") {
        "samples" | "objects" | "goroutines" | "lock_samples" | "count" => Ok("count"),
        "bytes" => Ok("bytes"),
        "lock_nanoseconds" | "nanoseconds" => Ok("nanoseconds"),
        other => Err(format!(
            "unknown units {other:?}: expected samples, objects, goroutines, bytes, \
             lock_samples or lock_nanoseconds"
        )),
    }
}

/// The sample types a legacy type is stored as (see the module table).
pub fn legacy_shape(
    kind: &str,
    units: Option<&str>,
    sample_rate: u32,
) -> Result<LegacyShape, String> {
    let unit = unit_of(units)?;
    let family = family_of_kind(kind).unwrap_or("process_cpu");
    Ok(match kind {
        "cpu" | "wall" | "itimer" => {
            let period = (1e9 / f64::from(sample_rate.max(1))).round() as i64;
            LegacyShape {
                sample_types: vec![
                    SampleType::new("samples", "count"),
                    SampleType::new(kind, "nanoseconds"),
                ],
                nanos_per_sample: Some(1e9 / f64::from(sample_rate.max(1))),
                family,
                period: Some((SampleType::new(kind, "nanoseconds"), period)),
            }
        }
        "alloc_objects" | "inuse_objects" => single(kind, "count", family),
        "alloc_space" | "inuse_space" => single(kind, "bytes", family),
        other => single(other, unit, family),
    })
}

fn single(kind: &str, unit: &str, family: &'static str) -> LegacyShape {
    LegacyShape {
        sample_types: vec![SampleType::new(kind, unit)],
        nanos_per_sample: None,
        family,
        period: None,
    }
}

/// Gives a one-column profile (as parsed from folded text or lines) the
/// legacy shape: renames its column and, for cpu/wall/itimer, adds the
/// nanoseconds column.
pub fn apply_shape(counted: &Profile, shape: &LegacyShape) -> Profile {
    let mut out = Profile::new(shape.sample_types.clone());
    out.time_nanos = counted.time_nanos;
    out.duration_nanos = counted.duration_nanos;
    if let Some((t, p)) = &shape.period {
        out.period_type = Some(t.clone());
        out.period = *p;
    }
    let map: Vec<FuncId> = counted.functions().map(|f| out.intern(f)).collect();
    let mut stack = Vec::with_capacity(64);
    for (frames, values) in counted.samples() {
        let v = values.first().copied().unwrap_or(0);
        stack.clear();
        stack.extend(frames.iter().map(|&f| map[f as usize]));
        match shape.nanos_per_sample {
            Some(ns) => {
                let nanos = (v as f64 * ns).round().min(i64::MAX as f64) as i64;
                out.add_sample(&stack, &[v, nanos]);
            }
            None => {
                out.add_sample(&stack, &[v]);
            }
        }
    }
    out
}

/// Keeps the chosen columns of a profile under new kinds (units and stacks
/// unchanged): `columns` pairs a column index with its new kind.
pub fn rename_columns(profile: &Profile, columns: &[(usize, String)]) -> Profile {
    let types = columns
        .iter()
        .filter_map(|(i, kind)| {
            let t = profile.sample_types().get(*i)?;
            Some(SampleType::new(kind.clone(), t.unit.clone()))
        })
        .collect();
    let mut out = Profile::new(types);
    out.time_nanos = profile.time_nanos;
    out.duration_nanos = profile.duration_nanos;
    out.period_type = profile.period_type.clone();
    out.period = profile.period;
    let map: Vec<FuncId> = profile.functions().map(|f| out.intern(f)).collect();
    let mut stack = Vec::with_capacity(64);
    let mut row = Vec::with_capacity(columns.len());
    for (frames, values) in profile.samples() {
        row.clear();
        row.extend(
            columns
                .iter()
                .map(|(i, _)| values.get(*i).copied().unwrap_or(0)),
        );
        if row.iter().all(|v| *v == 0) {
            continue;
        }
        stack.clear();
        stack.extend(frames.iter().map(|&f| map[f as usize]));
        out.add_sample(&stack, &row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names() {
        let n = parse_legacy_name("checkout.cpu{env=prod, region=\"eu 1\"}").unwrap();
        assert_eq!(n.app, "checkout");
        assert_eq!(n.kind.as_deref(), Some("cpu"));
        assert_eq!(
            n.labels,
            vec![
                ("env".to_string(), "prod".to_string()),
                ("region".to_string(), "eu 1".to_string())
            ]
        );
        let n = parse_legacy_name("my.app").unwrap();
        assert_eq!((n.app.as_str(), n.kind), ("my.app", None));
        let n = parse_legacy_name("my.app.alloc_space{}").unwrap();
        assert_eq!(
            (n.app.as_str(), n.kind.as_deref()),
            ("my.app", Some("alloc_space"))
        );
        assert!(parse_legacy_name(".cpu").is_err());
        assert!(parse_legacy_name("app{env=prod").is_err());
        assert!(parse_legacy_name("app{env}").is_err());
    }

    #[test]
    fn shapes() {
        let s = legacy_shape("cpu", None, 100).unwrap();
        assert_eq!(
            s.sample_types,
            vec![
                SampleType::new("samples", "count"),
                SampleType::new("cpu", "nanoseconds")
            ]
        );
        assert_eq!(s.nanos_per_sample, Some(10_000_000.0));
        assert_eq!(s.family, "process_cpu");
        let s = legacy_shape("wall", None, 99).unwrap();
        assert_eq!(s.family, "wall");
        assert_eq!(s.period.as_ref().map(|p| p.1), Some(10_101_010));
        let s = legacy_shape("alloc_space", Some("bytes"), 100).unwrap();
        assert_eq!(
            s.sample_types,
            vec![SampleType::new("alloc_space", "bytes")]
        );
        assert_eq!(s.family, "memory");
        let s = legacy_shape("inuse_objects", Some("objects"), 100).unwrap();
        assert_eq!(
            s.sample_types,
            vec![SampleType::new("inuse_objects", "count")]
        );
        let s = legacy_shape("mutex_duration", Some("lock_nanoseconds"), 100).unwrap();
        assert_eq!(
            (s.sample_types[0].unit.as_str(), s.family),
            ("nanoseconds", "mutex")
        );
        let s = legacy_shape("goroutines", Some("goroutines"), 100).unwrap();
        assert_eq!(s.family, "goroutine");
        assert!(legacy_shape("cpu", Some("parsecs"), 100).is_err());
    }

    #[test]
    fn shape_adds_nanoseconds() {
        let mut p = Profile::new(vec![SampleType::new("samples", "count")]);
        p.add_named_sample(&["main", "work"], &[3]);
        let shaped = apply_shape(&p, &legacy_shape("cpu", None, 100).unwrap());
        assert_eq!(shaped.total(0), 3);
        assert_eq!(shaped.total(1), 30_000_000);
        assert_eq!(shaped.period, 10_000_000);
    }

    #[test]
    fn families() {
        let mut p = Profile::new(vec![
            SampleType::new("samples", "count"),
            SampleType::new("cpu", "nanoseconds"),
        ]);
        assert_eq!(profile_family(&p), "process_cpu");
        p = Profile::new(vec![
            SampleType::new("alloc_objects", "count"),
            SampleType::new("inuse_space", "bytes"),
        ]);
        assert_eq!(profile_family(&p), "memory");
        p = Profile::new(vec![SampleType::new("samples", "count")]);
        p.period_type = Some(SampleType::new("cpu", "nanoseconds"));
        assert_eq!(profile_family(&p), "process_cpu");
        p = Profile::new(vec![SampleType::new("contentions", "count")]);
        assert_eq!(profile_family(&p), "contentions");
    }

    #[test]
    fn renames_columns() {
        let mut p = Profile::new(vec![
            SampleType::new("contentions", "count"),
            SampleType::new("delay", "nanoseconds"),
        ]);
        p.add_named_sample(&["a", "b"], &[2, 500]);
        p.add_named_sample(&["a"], &[0, 7]);
        let r = rename_columns(&p, &[(1, "mutex_duration".to_string())]);
        assert_eq!(
            r.sample_types(),
            &[SampleType::new("mutex_duration", "nanoseconds")]
        );
        assert_eq!(r.total(0), 507);
        assert_eq!(r.stack_count(), 2);
    }
}
