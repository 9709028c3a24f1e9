//! The web UI: the files of the repository's `web/` folder, embedded into
//! the binary at build time (in debug builds too), so the server serves
//! its UI with no build step of its own and from any working directory.
//!
//! `GET /` answers `index.html`; `GET /<path>` answers the embedded file
//! at `<path>` (`/js/app.js`, `/css/style.css`). `HEAD` answers the same
//! headers. Every answer carries a strong `ETag` (the file's SHA-256) and
//! `Cache-Control: no-cache`, so browsers revalidate and get a `304` while
//! the file is unchanged. Any other path is the router's JSON 404.

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::{EmbeddedFile, RustEmbed};

use crate::error::ApiError;

/// The UI's files. Only what this table holds can be answered: with
/// `debug-embed` even debug builds read the copy compiled into the binary,
/// so no request path, `..` included, ever reaches the filesystem.
#[derive(RustEmbed)]
#[folder = "../web/"]
#[exclude = "*.md"]
#[exclude = "node_modules/*"]
#[exclude = "package*.json"]
struct Assets;

/// The file `GET /` answers.
const INDEX: &str = "index.html";

/// The router's fallback: an embedded file for `GET` and `HEAD` when the
/// path names one, the JSON 404 otherwise.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method == Method::GET || method == Method::HEAD {
        let path = uri.path().trim_start_matches('/');
        let path = if path.is_empty() { INDEX } else { path };
        if let Some(file) = Assets::get(path) {
            return asset(path, file, &headers);
        }
    }
    ApiError::NotFound(format!("no route for {method} {}", uri.path())).into_response()
}

/// The answer for one embedded file: `304` when the client's
/// `If-None-Match` names its current `ETag`, the file otherwise.
fn asset(path: &str, file: EmbeddedFile, request: &HeaderMap) -> Response {
    let etag = etag(&file.metadata.sha256_hash());
    let mut response = if not_modified(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        // Axum answers a HEAD with this response's headers and length, and
        // no body.
        let mut r = Response::new(Body::from(file.data));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        r
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    // Revalidate every time: the UI changes with the binary, and a 304 costs
    // one round trip of headers.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A strong entity tag from a SHA-256: `"<64 hex digits>"`.
fn etag(sha256: &[u8; 32]) -> String {
    let mut tag = String::with_capacity(66);
    tag.push('"');
    for b in sha256 {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    tag
}

/// Whether `If-None-Match` lists `etag` (or is `*`). RFC 9110 compares
/// these tags weakly, so a `W/` prefix a proxy may have added still matches.
fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The `Content-Type` of a file by its extension.
fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("css/STYLE.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("img/logo.svg"), "image/svg+xml");
        assert_eq!(content_type("favicon.ico"), "image/x-icon");
        assert_eq!(content_type("fonts/a.woff2"), "font/woff2");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }

    #[test]
    fn entity_tags_compare_weakly() {
        let tag = etag(&[0xab; 32]);
        assert_eq!(tag.len(), 66);
        assert!(tag.starts_with("\"abab"));
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &tag));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", W/{tag}")).unwrap(),
        );
        assert!(not_modified(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, &tag));
    }

    #[test]
    fn the_index_is_embedded() {
        let file = Assets::get(INDEX).unwrap();
        assert!(String::from_utf8_lossy(&file.data).contains("<html"));
        // Not a file of the table, so not answered, whatever the disk holds.
        assert!(Assets::get("../Cargo.toml").is_none());
        assert!(Assets::iter().all(|p| !p.ends_with(".md") && !p.starts_with("node_modules/")));
    }
}
