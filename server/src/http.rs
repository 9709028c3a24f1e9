//! Request plumbing shared by the ingest and query handlers: the tenant
//! header, query parameters, and request bodies within limits. (Handlers
//! read their tenant as [`crate::auth::Tenant`], which the authentication
//! middleware resolves from the header and the token.)

use axum::body::Bytes;
use axum::extract::Query;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};

use crate::error::ApiError;

/// The header naming the tenant (as Pyroscope, Cortex and Loki read it).
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// Longest tenant id accepted.
pub const MAX_TENANT_LENGTH: usize = 150;

/// The tenant a request names in its `X-Scope-OrgID` header, if any (an
/// empty header names none).
pub fn requested_tenant(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(TENANT_HEADER) else {
        return Ok(None);
    };
    let id = value
        .to_str()
        .map_err(|_| ApiError::bad_request("X-Scope-OrgID is not ASCII text"))?;
    let id = check_tenant(id)?;
    Ok((!id.is_empty()).then_some(id))
}

/// Checks a tenant id: at most 150 bytes of ASCII letters, digits and
/// `!-_.*'()`, and neither `.` nor `..` (surrounding spaces are dropped;
/// "" is the default tenant).
pub fn check_tenant(id: &str) -> Result<String, ApiError> {
    let id = id.trim();
    if id.len() > MAX_TENANT_LENGTH {
        return Err(ApiError::bad_request(format!(
            "X-Scope-OrgID is {} bytes, over the limit of {MAX_TENANT_LENGTH}",
            id.len()
        )));
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
    if id == "." || id == ".." || !id.chars().all(valid) {
        return Err(ApiError::bad_request(format!(
            "invalid X-Scope-OrgID {id:?}: use letters, digits and !-_.*'()"
        )));
    }
    Ok(id.to_owned())
}

/// A request's query parameters in order, repeated names kept.
#[derive(Clone, Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Decodes the query string of a URI.
    pub fn from_uri(uri: &Uri) -> Result<Params, ApiError> {
        Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
    }

    /// The first value of a parameter, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The first non-empty value among several spellings of a parameter.
    pub fn get_any(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.get(n))
    }

    /// Every non-empty value of a parameter.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A required parameter.
    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::bad_request(format!("missing parameter `{name}`")))
    }

    /// A boolean flag: `true`/`1`/`yes` or `false`/`0`/`no`; absent is `default`.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "parameter `{name}`: expected true or false, got {other:?}"
            ))),
        }
    }
}

/// The body of a request read within the router's body limit
/// (`DefaultBodyLimit`), as an [`ApiError`] when that failed.
pub fn body(result: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    match result {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge(format!(
            "request body exceeds the limit of {limit} bytes"
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {}",
            e.body_text()
        ))),
    }
}

/// The media type of the `Content-Type` header, lowercased and without
/// parameters (`application/json; charset=utf-8` -> `application/json`).
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next().unwrap_or("").trim();
    (!media.is_empty()).then(|| media.to_ascii_lowercase())
}

/// How a body is compressed, from `Content-Encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// No header, or `identity`.
    Identity,
    /// `gzip` (or `x-gzip`).
    Gzip,
    /// `zstd`.
    Zstd,
}

/// Reads `Content-Encoding`; anything but identity, gzip and zstd is a 415.
pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let value = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "zstd" => Ok(Encoding::Zstd),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Encoding {other:?}: use zstd, gzip or none"
        ))),
    }
}

/// Checks that a body declared compressed really starts like its format
/// (compression is then undone by magic number while decoding, within the
/// decompressed-size limit).
pub fn check_encoding(encoding: Encoding, body: &[u8]) -> Result<(), ApiError> {
    use firewatch_profile::Compression;
    let found = Compression::detect(body);
    let ok = match encoding {
        Encoding::Identity => true,
        Encoding::Gzip => found == Compression::Gzip,
        Encoding::Zstd => found == Compression::Zstd,
    };
    let name = match encoding {
        Encoding::Identity => "identity",
        Encoding::Gzip => "gzip",
        Encoding::Zstd => "zstd",
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Content-Encoding is {name} but the body is not {name}-compressed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tenants() {
        let mut h = HeaderMap::new();
        assert_eq!(requested_tenant(&h).unwrap(), None);
        h.insert(TENANT_HEADER, HeaderValue::from_static("team-a_1"));
        assert_eq!(requested_tenant(&h).unwrap().as_deref(), Some("team-a_1"));
        for bad in ["..", "a/b", "a b"] {
            h.insert(TENANT_HEADER, HeaderValue::from_str(bad).unwrap());
            assert!(requested_tenant(&h).is_err(), "{bad}");
        }
        h.insert(
            TENANT_HEADER,
            HeaderValue::from_str(&"x".repeat(151)).unwrap(),
        );
        assert!(
            requested_tenant(&h)
                .unwrap_err()
                .to_string()
                .contains("150")
        );
    }

    #[test]
    fn params_keep_order_and_repeats() {
        let uri: Uri = "/x?a=1&b=&a=2&match%5B%5D=%7Bx%3D%22y%22%7D"
            .parse()
            .unwrap();
        let p = Params::from_uri(&uri).unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.all("a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(p.get("match[]"), Some("{x=\"y\"}"));
        assert!(p.require("c").unwrap_err().to_string().contains("`c`"));
    }

    #[test]
    fn encodings() {
        let mut h = HeaderMap::new();
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Identity);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Zstd);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(content_encoding(&h).unwrap_err().status(), 415);
        assert!(check_encoding(Encoding::Gzip, b"plain").is_err());
        assert!(check_encoding(Encoding::Gzip, &firewatch_profile::gzip(b"x")).is_ok());
        assert!(check_encoding(Encoding::Identity, &firewatch_profile::gzip(b"x")).is_ok());
    }
}
