//! One delivery attempt over HTTP(S), and what the answer means.

use firewatch_profile::{Labels, SERVICE_NAME};
use std::time::Duration;

use ureq::tls::{PemItem, RootCerts, TlsConfig};

use super::{Payload, Protocol, ShipConfig};
use crate::error::{Error, Result};

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server stored the profile.
    Delivered,
    /// The server refused it for good (4xx other than 408 and 429).
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's error message.
        message: String,
    },
    /// Try again later (connection error, 408, 429, 5xx).
    Retry {
        /// The server's `Retry-After`, if any.
        after: Option<Duration>,
        /// Why, for the log.
        reason: String,
    },
}

/// Sends payloads to one server.
pub struct Client {
    agent: ureq::Agent,
    url: String,
    protocol: Protocol,
    tenant: Option<String>,
    token: Option<String>,
}

const MAX_RESPONSE_BYTES: u64 = 64 << 10;

impl Client {
    /// A client for the configured server.
    pub fn new(c: &ShipConfig) -> Result<Client> {
        let mut tls = TlsConfig::builder();
        if let Some(path) = &c.tls_ca_file {
            let pem = std::fs::read(path).map_err(|source| Error::File {
                what: "cannot read the CA file",
                path: path.clone(),
                source,
            })?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "no PEM certificate in the CA file {}",
                    path.display()
                )));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(c.request_timeout))
            .user_agent(concat!("firewatch-agent/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        let base = c.server.trim_end_matches('/');
        let url = match c.protocol {
            Protocol::Native => format!("{base}/api/v1/ingest"),
            Protocol::Pyroscope => format!("{base}/push.v1.PusherService/Push"),
        };
        Ok(Client {
            agent,
            url,
            protocol: c.protocol,
            tenant: c.tenant.clone(),
            token: c.token.clone(),
        })
    }

    /// Sends one payload.
    pub fn send(&self, p: &Payload) -> Outcome {
        let url = match self.protocol {
            Protocol::Native => format!("{}?{}", self.url, query(&p.labels)),
            Protocol::Pyroscope => self.url.clone(),
        };
        let mut req = self.agent.post(&url);
        req = match self.protocol {
            Protocol::Native => req
                .header("Content-Type", "application/vnd.google.protobuf")
                .header("Content-Encoding", "zstd"),
            Protocol::Pyroscope => req.header("Content-Type", "application/proto"),
        };
        if let Some(t) = &self.tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = match req.send(&p.body[..]) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    reason: e.to_string(),
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .unwrap_or_default();
        classify(status, retry_after, &body)
    }
}

/// Maps a status (and body) to what to do next.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry {
            after: retry_after,
            reason: format!("HTTP {status}: {}", error_message(body)),
        },
        _ => Outcome::Rejected {
            status,
            message: error_message(body),
        },
    }
}

/// The `error` (native) or `message` (Connect) field of a JSON error body,
/// else the body itself, cut short.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        v.get("error")
            .or_else(|| v.get("message"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
    });
    let text = from_json.unwrap_or_else(|| body.trim().to_owned());
    text.chars().take(500).collect()
}

/// The labels as a query string, `service_name` first, values percent-encoded.
pub fn query(labels: &Labels) -> String {
    let mut out = String::new();
    let ordered = labels
        .iter()
        .filter(|(k, _)| *k == SERVICE_NAME)
        .chain(labels.iter().filter(|(k, _)| *k != SERVICE_NAME));
    for (k, v) in ordered {
        if !out.is_empty() {
            out.push('&');
        }
        encode_into(&mut out, k);
        out.push('=');
        encode_into(&mut out, v);
    }
    out
}

fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify(200, None, "{\"stored\":true}"), Outcome::Delivered);
        assert_eq!(
            classify(400, None, "{\"error\":\"bad label\"}"),
            Outcome::Rejected {
                status: 400,
                message: "bad label".into()
            }
        );
        assert!(matches!(
            classify(429, Some(Duration::from_secs(3)), ""),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(classify(503, None, ""), Outcome::Retry { .. }));
        assert!(matches!(classify(408, None, ""), Outcome::Retry { .. }));
        assert!(matches!(
            classify(404, None, "nope"),
            Outcome::Rejected { .. }
        ));
    }

    #[test]
    fn query_puts_service_first_and_escapes() {
        let labels = Labels::from([
            ("exe".to_owned(), "a b&c".to_owned()),
            ("service_name".to_owned(), "checkout".to_owned()),
        ]);
        assert_eq!(query(&labels), "service_name=checkout&exe=a%20b%26c");
    }
}
