//! Authentication, scopes and tenants.
//!
//! The configuration lists bearer tokens, each with a scope and a tenant
//! ([`TokenSpec`]); only their SHA-256 digests are kept. A request presents
//! its token as `Authorization: Bearer <token>` (what Pyroscope's SDKs and
//! Grafana Alloy send) or as the password of `Authorization: Basic` (what
//! Grafana data sources and browsers send; the user name is ignored).
//!
//! - `ingest` tokens may send profiles and annotations, `query` tokens may
//!   read, `admin` tokens may do both and read `/metrics`.
//! - `ingest` and `query` tokens act for their own tenant only: a request
//!   naming another in `X-Scope-OrgID` is refused (403). An `admin` token
//!   acts for the tenant the header names, else its own.
//! - No credentials or an unknown token: 401 with `WWW-Authenticate`.
//!
//! Without tokens, authentication is off: every request acts for the tenant
//! its `X-Scope-OrgID` names (the default tenant without one).
//!
//! The middleware ([`require_ingest`], [`require_query`], ...) wraps each
//! group of routes and leaves the resolved [`Tenant`] in the request, which
//! handlers take as an extractor: no handler reads the header itself.

use std::fmt;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::{ApiError, ConnectError};
use crate::http::requested_tenant;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send profiles (every ingest API) and annotations.
    Ingest,
    /// Read: render, diff, labels, services, annotations.
    Query,
    /// Everything, for any tenant, and `/metrics`.
    Admin,
}

impl Scope {
    /// Parses `ingest`, `query` or `admin`.
    pub fn parse(text: &str) -> Option<Scope> {
        match text.trim() {
            "ingest" => Some(Scope::Ingest),
            "query" => Some(Scope::Query),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    fn allows(self, need: Scope) -> bool {
        self == Scope::Admin || self == need
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Ingest => "ingest",
            Scope::Query => "query",
            Scope::Admin => "admin",
        })
    }
}

/// One configured token: its digest, name, scope and tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenSpec {
    /// A name for logs (the token itself is never logged).
    pub name: String,
    /// SHA-256 of the token, lowercase hex.
    pub token_sha256: String,
    /// What it may do.
    pub scope: Scope,
    /// The tenant it acts for ("" is the default tenant).
    pub tenant: String,
}

/// The SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lowercase hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits.
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

struct Token {
    digest: [u8; 32],
    name: String,
    scope: Scope,
    tenant: String,
}

/// The configured tokens; empty when authentication is off.
#[derive(Default)]
pub struct Auth {
    tokens: Vec<Token>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// The tenant a request acts for, as authentication resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant(pub String);

impl Tenant {
    /// The tenant id ("" is the default tenant).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Auth {
    /// Authentication off: anyone acts for any tenant.
    pub fn disabled() -> Auth {
        Auth::default()
    }

    /// Authentication by these tokens (off when there are none). Specs
    /// whose digest is not 64 hex digits are skipped; the configuration
    /// refuses them before this.
    pub fn new(specs: &[TokenSpec]) -> Auth {
        let tokens = specs
            .iter()
            .filter_map(|s| {
                Some(Token {
                    digest: parse_sha256_hex(&s.token_sha256)?,
                    name: s.name.clone(),
                    scope: s.scope,
                    tenant: s.tenant.clone(),
                })
            })
            .collect();
        Auth { tokens }
    }

    /// Whether requests must present a token.
    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The token whose digest matches, comparing every digest in constant
    /// time so the answer's timing tells nothing about the tokens.
    fn find(&self, presented: &str) -> Option<&Token> {
        let d = digest(presented);
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.digest.ct_eq(&d)) {
                found = Some(token);
            }
        }
        found
    }

    /// The tenant a request acts for, given the scope its route needs.
    pub fn resolve(&self, headers: &HeaderMap, need: Scope) -> Result<Tenant, ApiError> {
        let requested = requested_tenant(headers)?;
        if !self.is_enabled() {
            return Ok(Tenant(requested.unwrap_or_default()));
        }
        let presented = credentials(headers)?.ok_or_else(|| {
            ApiError::Unauthorized(
                "authentication required: send Authorization: Bearer <token>".into(),
            )
        })?;
        let token = self
            .find(&presented)
            .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))?;
        if !token.scope.allows(need) {
            return Err(ApiError::Forbidden(format!(
                "token {:?} has scope {}; this endpoint needs {need} (or admin)",
                token.name, token.scope
            )));
        }
        match (token.scope, requested) {
            (Scope::Admin, Some(tenant)) => Ok(Tenant(tenant)),
            (_, Some(tenant)) if tenant != token.tenant => Err(ApiError::Forbidden(format!(
                "token {:?} is bound to tenant {:?}, not the X-Scope-OrgID {tenant:?}",
                token.name, token.tenant
            ))),
            _ => Ok(Tenant(token.tenant.clone())),
        }
    }
}

/// The token of `Authorization: Bearer <token>`, or the password of
/// `Authorization: Basic` (the user name when the password is empty).
fn credentials(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || ApiError::Unauthorized("malformed Authorization header".into());
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| malformed())?;
        let text = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (user, password) = text.split_once(':').unwrap_or((&text, ""));
        let token = if password.is_empty() { user } else { password };
        return Ok(Some(token.to_owned()));
    }
    Err(ApiError::Unauthorized(format!(
        "unsupported Authorization scheme {scheme:?}: use Bearer or Basic"
    )))
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Only the middleware puts it there: a route without it is a bug,
        // and answering for the header's tenant would bypass authentication.
        parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("the route has no authentication middleware".into()))
    }
}

/// The push API answers Connect errors, every other route JSON ones.
const PUSH_PATH: &str = "/push.v1.PusherService/Push";

async fn authorize(state: &AppState, need: Scope, mut req: Request, next: Next) -> Response {
    match state.auth.resolve(req.headers(), need) {
        Ok(tenant) => {
            req.extensions_mut().insert(tenant);
            next.run(req).await
        }
        Err(e) if req.uri().path() == PUSH_PATH => ConnectError(e).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Middleware for the ingest routes: `ingest` or `admin`.
pub async fn require_ingest(State(state): State<AppState>, req: Request, next: Next) -> Response {
    authorize(&state, Scope::Ingest, req, next).await
}

/// Middleware for the query routes: `query` or `admin`.
pub async fn require_query(State(state): State<AppState>, req: Request, next: Next) -> Response {
    authorize(&state, Scope::Query, req, next).await
}

/// Middleware for routes that read with GET and write otherwise
/// (annotations): `query` to read, `ingest` to write, or `admin`.
pub async fn require_read_or_write(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let need = if matches!(*req.method(), Method::GET | Method::HEAD) {
        Scope::Query
    } else {
        Scope::Ingest
    };
    authorize(&state, need, req, next).await
}

/// Middleware for operator routes (`/metrics`): `admin` only.
pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    authorize(&state, Scope::Admin, req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn spec(token: &str, scope: Scope, tenant: &str) -> TokenSpec {
        TokenSpec {
            name: format!("{scope}-{tenant}"),
            token_sha256: to_hex(&digest(token)),
            scope,
            tenant: tenant.into(),
        }
    }

    fn headers(auth: Option<&str>, tenant: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        if let Some(t) = tenant {
            h.insert("x-scope-orgid", HeaderValue::from_str(t).unwrap());
        }
        h
    }

    #[test]
    fn hex_round_trip() {
        let d = digest("secret");
        assert_eq!(
            to_hex(&d),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert_eq!(parse_sha256_hex(&to_hex(&d)), Some(d));
        assert_eq!(parse_sha256_hex("abc"), None);
        assert_eq!(parse_sha256_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn scopes_and_tenants() {
        let auth = Auth::new(&[
            spec("i", Scope::Ingest, "a"),
            spec("q", Scope::Query, "a"),
            spec("root", Scope::Admin, ""),
        ]);
        let ok = |a: &str, t: Option<&str>, need| auth.resolve(&headers(Some(a), t), need);
        assert_eq!(ok("Bearer i", None, Scope::Ingest).unwrap().0, "a");
        assert_eq!(ok("Bearer i", Some("a"), Scope::Ingest).unwrap().0, "a");
        assert_eq!(
            ok("Bearer i", Some("b"), Scope::Ingest)
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            ok("Bearer i", None, Scope::Query).unwrap_err().status(),
            403
        );
        assert_eq!(
            ok("Bearer q", None, Scope::Ingest).unwrap_err().status(),
            403
        );
        assert_eq!(ok("Bearer root", Some("b"), Scope::Query).unwrap().0, "b");
        assert_eq!(ok("Bearer root", None, Scope::Admin).unwrap().0, "");
        assert_eq!(
            ok("Bearer nope", None, Scope::Query).unwrap_err().status(),
            401
        );
        assert_eq!(ok("Token q", None, Scope::Query).unwrap_err().status(), 401);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("anyone:q")
        );
        assert_eq!(ok(&basic, None, Scope::Query).unwrap().0, "a");
        let e = auth
            .resolve(&headers(None, None), Scope::Query)
            .unwrap_err();
        assert_eq!(e.status(), 401);
    }

    #[test]
    fn off_without_tokens() {
        let auth = Auth::disabled();
        assert!(!auth.is_enabled());
        let t = auth
            .resolve(&headers(None, Some("x")), Scope::Admin)
            .unwrap();
        assert_eq!(t.0, "x");
        let t = auth.resolve(&headers(Some("Bearer whatever"), None), Scope::Admin);
        assert_eq!(t.unwrap().0, "");
    }
}
