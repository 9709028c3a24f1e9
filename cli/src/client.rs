//! Talking to a Firewatch server: the flags every server command shares, the
//! queries they send to `/render`, and bounded reads of the answers.

use std::time::Duration;

use firewatch_profile::{Limits, Profile};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::printable;
use crate::window::Window;

/// The default `--server`.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:4040";

/// How to reach the server; shared by every command that queries one.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// The server's base URL.
    #[arg(long, env = "FIREWATCH_SERVER", default_value = DEFAULT_SERVER, value_name = "URL")]
    pub server: String,
    /// Bearer token, sent as `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        env = "FIREWATCH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Tenant, sent as `X-Scope-OrgID`.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
}

/// Nothing a query answers with is trusted to be small: profiles are read
/// within the profile crate's limits, and every other answer within these.
const MAX_DOCUMENT_BYTES: u64 = 64 << 20;
/// An error answer is a one-line JSON object; more is not read.
const MAX_ERROR_BYTES: u64 = 64 << 10;
/// A server that takes longer to answer one query is treated as gone.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// A server that does not accept a connection in this time is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One `/render` query: what, of which type, over which window.
#[derive(Clone, Debug)]
pub(crate) struct Query {
    /// `app.cpu{env="prod"}` or `{service_name="app"}`.
    pub query: String,
    /// The profile type for selector queries and bare application names
    /// (`cpu`, `alloc_space`, or a full id).
    pub profile_type: String,
    /// The window.
    pub window: Window,
}

impl Query {
    /// The query and its window as people read them, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("{} ({})", printable(&self.query), self.window.describe())
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("query", self.query.clone()),
            ("profile_type", self.profile_type.clone()),
            // Absolute times, so every request of one command sees the same
            // window whatever time passes between them.
            ("from", self.window.from_ms.to_string()),
            ("until", self.window.until_ms.to_string()),
        ]
    }
}

/// Totals over time, as `/render` JSON's `timeline` holds them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Timeline {
    /// Start of the first step, Unix seconds.
    pub start_time: i64,
    /// Step length, seconds.
    pub duration_delta: i64,
    /// One total per step.
    pub samples: Vec<i64>,
}

/// A service and its profile types, from `/api/v1/services`.
#[cfg(feature = "up")]
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub(crate) struct Service {
    /// `service_name`.
    pub name: String,
}

/// A blocking client for one server.
pub(crate) struct Client {
    http: ureq::Agent,
    base: String,
    token: Option<String>,
    tenant: Option<String>,
}

impl Client {
    /// A client for `args.server`, refused unless it is an http(s) URL.
    pub(crate) fn new(args: &ServerArgs) -> Result<Client> {
        let base = args.server.trim().trim_end_matches('/').to_owned();
        let scheme_ok = ["http://", "https://"].iter().any(|scheme| {
            base.len() > scheme.len() && base[..scheme.len()].eq_ignore_ascii_case(scheme)
        });
        if !scheme_ok {
            return Err(Error::Usage(format!(
                "--server: expected a URL such as {DEFAULT_SERVER}, got {:?}",
                args.server
            )));
        }
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("firewatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            http,
            base,
            token: args.token.clone().filter(|t| !t.is_empty()),
            tenant: args.tenant.clone().filter(|t| !t.is_empty()),
        })
    }

    /// The server's base URL, without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET path?params`, the body read up to `limit` bytes; any status
    /// other than 2xx is an error carrying the server's message.
    pub(crate) fn get(&self, path: &str, params: &[(&str, String)], limit: u64) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .get(&url)
            .query_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        tracing::debug!(%url, ?params, "GET");
        let response = request.call().map_err(|e| self.unreachable(&e))?;
        self.answer(url, response, limit)
    }

    /// `PUT path` with a file as the body (no overall time limit: a large
    /// debug file takes what it takes); the answer read up to `limit`.
    pub(crate) fn put_file(
        &self,
        path: &str,
        file: &std::path::Path,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let body = std::fs::File::open(file).map_err(|e| Error::file(file, "cannot open", e))?;
        let len = body
            .metadata()
            .map_err(|e| Error::file(file, "cannot read", e))?
            .len();
        let mut request = self
            .http
            .put(&url)
            .header("Content-Length", len.to_string())
            .header("Content-Type", "application/octet-stream")
            .config()
            .timeout_global(None)
            .build();
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        tracing::debug!(%url, bytes = len, "PUT");
        let response = request.send(&body).map_err(|e| self.unreachable(&e))?;
        self.answer(url, response, limit)
    }

    /// A 2xx answer's body up to `limit` bytes; any other status is an
    /// error carrying the server's message.
    fn answer(
        &self,
        url: String,
        mut response: ureq::http::Response<ureq::Body>,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let status = response.status();
        if !status.is_success() {
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_ERROR_BYTES)
                .read_to_vec()
                .unwrap_or_default();
            return Err(Error::Status {
                url,
                status: format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )
                .trim_end()
                .to_owned(),
                message: error_message(&body),
            });
        }
        response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Error::invalid(
                    &url,
                    format!("the answer is larger than the limit of {limit} bytes"),
                ),
                other => self.unreachable(&other),
            })
    }

    /// The merged profile of `query` (`/render?format=pprof`), decoded
    /// within the default limits.
    pub(crate) fn profile(&self, query: &Query) -> Result<Profile> {
        let limits = Limits::default();
        let mut params = query.params();
        params.push(("format", "pprof".into()));
        let body = self.get("/render", &params, limits.max_decompressed_bytes as u64)?;
        Profile::from_pprof_bytes(&body, &limits).map_err(|e| {
            Error::invalid(
                query.describe(),
                format!("the server's pprof answer cannot be read: {e}"),
            )
        })
    }

    /// `/render` in `format` (`svg`, `folded`, `pprof`, `json`) as bytes,
    /// with `extra` parameters (`icicle`, `title`, ...).
    pub(crate) fn render(
        &self,
        query: &Query,
        format: &str,
        extra: &[(&'static str, String)],
    ) -> Result<Vec<u8>> {
        let mut params = query.params();
        params.push(("format", format.to_owned()));
        params.extend(extra.iter().cloned());
        let limit = Limits::default().max_decompressed_bytes as u64;
        self.get("/render", &params, limit)
    }

    /// The totals of `query` per `step_seconds` (`/render` JSON's
    /// `timeline`); the flamegraph itself is cut to one node, as it is not
    /// used.
    pub(crate) fn timeline(&self, query: &Query, step_seconds: i64) -> Result<Timeline> {
        #[derive(Deserialize)]
        struct Render {
            timeline: Timeline,
        }
        let mut params = query.params();
        params.push(("format", "json".into()));
        params.push(("maxNodes", "1".into()));
        params.push(("step", format!("{step_seconds}s")));
        let body = self.get("/render", &params, MAX_DOCUMENT_BYTES)?;
        serde_json::from_slice::<Render>(&body)
            .map(|r| r.timeline)
            .map_err(|e| {
                Error::invalid(
                    format!("{}/render", self.base),
                    format!("unexpected answer: {e}"),
                )
            })
    }

    /// The tenant's services (`/api/v1/services`).
    #[cfg(feature = "up")]
    pub(crate) fn services(&self) -> Result<Vec<Service>> {
        #[derive(Deserialize)]
        struct Services {
            services: Vec<Service>,
        }
        let body = self.get("/api/v1/services", &[], MAX_DOCUMENT_BYTES)?;
        serde_json::from_slice::<Services>(&body)
            .map(|s| s.services)
            .map_err(|e| {
                Error::invalid(
                    format!("{}/api/v1/services", self.base),
                    format!("unexpected answer: {e}"),
                )
            })
    }

    fn unreachable(&self, e: &ureq::Error) -> Error {
        let message = match e {
            ureq::Error::Timeout(_) => format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            other => format!("{other} (is the server running? set --server or FIREWATCH_SERVER)"),
        };
        Error::Unreachable {
            server: self.base.clone(),
            message,
        }
    }
}

/// The message of an error answer: its JSON `error` (or Connect `message`)
/// field, else the start of the body as text.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Option<String>,
        message: Option<String>,
    }
    if let Ok(ErrorBody { error, message }) = serde_json::from_slice::<ErrorBody>(body)
        && let Some(text) = error.or(message)
    {
        return printable(&text);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".into();
    }
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    printable(&short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(br#"{"error":"parameter `query` is required"}"#),
            "parameter `query` is required"
        );
        assert_eq!(
            error_message(br#"{"code":"invalid_argument","message":"bad"}"#),
            "bad"
        );
        assert_eq!(error_message(b"  plain\ntext "), "plain\u{fffd}text");
        assert_eq!(error_message(b""), "(no message)");
        let long = "x".repeat(500);
        assert_eq!(error_message(long.as_bytes()).len(), 203);
    }
}
