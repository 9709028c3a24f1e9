//! Grafana Pyroscope's push API message (`push.v1.PusherService/Push`).

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

/// Encodes a push of one gzip-compressed pprof for a series, adding
/// `__name__ = process_cpu`.
pub fn push_request(labels: &[(String, String)], gzipped_pprof: Vec<u8>) -> Vec<u8> {
    let mut pairs: Vec<LabelPair> = labels
        .iter()
        .filter(|(k, _)| k != "__name__")
        .map(|(k, v)| LabelPair {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    pairs.push(LabelPair {
        name: "__name__".into(),
        value: "process_cpu".into(),
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
        let bytes = push_request(&[("service_name".into(), "web".into())], vec![1, 2, 3]);
        let req = PushRequest::decode(&bytes[..]).expect("decodes");
        let s = &req.series[0];
        let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["__name__", "service_name"]);
        assert_eq!(s.samples[0].raw_profile, vec![1, 2, 3]);
    }
}
