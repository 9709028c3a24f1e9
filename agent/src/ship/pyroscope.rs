//! Grafana Pyroscope's push API message (`push.v1.PusherService/Push`).

use firewatch_profile::Labels;
use prost::Message;

/// `PushRequest { repeated RawProfileSeries series = 1; }`
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    /// The series pushed.
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

/// One series and its profiles.
#[derive(Clone, PartialEq, Message)]
pub struct RawProfileSeries {
    /// Series labels, `service_name` and `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    /// Profiles of the series.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

/// A label.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One profile.
#[derive(Clone, PartialEq, Message)]
pub struct RawSample {
    /// A pprof, gzip-compressed.
    #[prost(bytes = "vec", tag = "1")]
    pub raw_profile: Vec<u8>,
    /// Optional id.
    #[prost(string, tag = "2")]
    pub id: String,
}

/// The profile's `__name__` as Pyroscope names it from its sample types:
/// `memory` for allocation and heap profiles, else `process_cpu`.
pub fn profile_name(profile: &firewatch_profile::pprof::proto::Profile) -> &'static str {
    let memory = profile.sample_type.iter().any(|t| {
        usize::try_from(t.r#type)
            .ok()
            .and_then(|i| profile.string_table.get(i))
            .is_some_and(|s| s.starts_with("alloc_") || s.starts_with("inuse_"))
    });
    if memory { "memory" } else { "process_cpu" }
}

/// Encodes a push of one gzip-compressed pprof for a series, adding
/// `__name__` (see [`profile_name`]).
pub fn push_request(labels: &Labels, name: &str, gzipped_pprof: Vec<u8>) -> Vec<u8> {
    let mut pairs: Vec<LabelPair> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| LabelPair {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    pairs.push(LabelPair {
        name: "__name__".into(),
        value: name.into(),
    });
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    PushRequest {
        series: vec![RawProfileSeries {
            labels: pairs,
            samples: vec![RawSample {
                raw_profile: gzipped_pprof,
                id: String::new(),
            }],
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_the_name_label() {
        let bytes = push_request(
            &Labels::from([("service_name".into(), "web".into())]),
            "process_cpu",
            vec![1, 2, 3],
        );
        let req = PushRequest::decode(&bytes[..]).expect("decodes");
        let s = &req.series[0];
        let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["__name__", "service_name"]);
        assert_eq!(s.samples[0].raw_profile, vec![1, 2, 3]);
    }

    #[test]
    fn allocation_profiles_are_named_memory() {
        use firewatch_profile::pprof::proto::{Profile, ValueType};
        let profile = |kind: &str| Profile {
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            string_table: vec![String::new(), kind.to_owned(), "count".to_owned()],
            ..Profile::default()
        };
        assert_eq!(profile_name(&profile("alloc_objects")), "memory");
        assert_eq!(profile_name(&profile("samples")), "process_cpu");
    }
}
