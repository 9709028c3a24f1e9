//! The security part of the configuration: tokens (from the config file and
//! a tokens file), and whether the server may listen where it was told to
//! without them.
//!
//! ```toml
//! [[tokens]]
//! name = "checkout-agents"   # for logs; default "token-N"
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! scope = "ingest"           # ingest | query | admin
//! tenant = "team-a"          # default: the default tenant
//!
//! [[tokens]]
//! token = "dev-only"         # the token itself: for development
//! scope = "admin"
//! ```

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, value};
use crate::auth::{Scope, TokenSpec, digest, parse_sha256_hex, to_hex};
use crate::http::check_tenant;

/// A token as written in a file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    name: Option<String>,
    token: Option<String>,
    token_sha256: Option<String>,
    scope: Option<String>,
    tenant: Option<String>,
}

/// The layout of a tokens file (`--tokens-file`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

/// Reads a tokens file.
pub(super) fn read_tokens_file(path: &Path) -> Result<Vec<TokenEntry>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: TokensFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(file.tokens)
}

/// Checks token entries (`origin` names where they come from, for
/// messages) and turns them into specs holding digests only.
pub(super) fn resolve_tokens(
    entries: &[(String, TokenEntry)],
) -> Result<Vec<TokenSpec>, ConfigError> {
    let mut specs = Vec::with_capacity(entries.len());
    let mut seen = HashSet::new();
    for (i, (origin, e)) in entries.iter().enumerate() {
        let at = |m: String| value("tokens", format!("token {} of {origin}: {m}", i + 1));
        let sha = match (&e.token, &e.token_sha256) {
            (Some(t), None) if !t.trim().is_empty() => digest(t.trim()),
            (Some(_), None) => return Err(at("`token` is empty".into())),
            (None, Some(h)) => parse_sha256_hex(h).ok_or_else(|| {
                at("`token_sha256` must be 64 hex digits (printf %s TOKEN | sha256sum)".into())
            })?,
            _ => return Err(at("give exactly one of `token` and `token_sha256`".into())),
        };
        let scope_text = e
            .scope
            .as_deref()
            .ok_or_else(|| at("missing `scope` (ingest, query or admin)".into()))?;
        let scope = Scope::parse(scope_text).ok_or_else(|| {
            at(format!(
                "unknown scope {scope_text:?}: use ingest, query or admin"
            ))
        })?;
        let tenant = check_tenant(e.tenant.as_deref().unwrap_or(""))
            .map_err(|err| at(format!("tenant: {err}")))?;
        if !seen.insert(sha) {
            return Err(at("the same token is listed twice".into()));
        }
        specs.push(TokenSpec {
            name: e.name.clone().unwrap_or_else(|| format!("token-{}", i + 1)),
            token_sha256: to_hex(&sha),
            scope,
            tenant,
        });
    }
    Ok(specs)
}

/// Whether a listen address only accepts connections from this machine:
/// a loopback IP, or a name that resolves to loopback addresses only.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    match listen.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Refuses to serve every tenant without authentication on an address
/// other machines can reach, unless told to.
pub(super) fn check_exposure(
    listen: &str,
    tokens: &[TokenSpec],
    insecure_no_auth: bool,
) -> Result<(), ConfigError> {
    if tokens.is_empty() && !insecure_no_auth && !is_loopback(listen) {
        return Err(ConfigError::Exposed {
            listen: listen.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: Option<&str>, sha: Option<&str>, scope: &str) -> (String, TokenEntry) {
        (
            "the test".into(),
            TokenEntry {
                name: None,
                token: token.map(str::to_owned),
                token_sha256: sha.map(str::to_owned),
                scope: Some(scope.into()),
                tenant: Some("team-a".into()),
            },
        )
    }

    #[test]
    fn tokens_are_checked_and_hashed() {
        let sha = to_hex(&digest("b"));
        let specs = resolve_tokens(&[
            entry(Some("a"), None, "ingest"),
            entry(None, Some(&sha.to_uppercase()), "query"),
        ])
        .unwrap();
        assert_eq!(specs[0].token_sha256, to_hex(&digest("a")));
        assert_eq!(specs[1].token_sha256, sha);
        assert_eq!(specs[1].name, "token-2");
        assert_eq!(specs[1].tenant, "team-a");
        for (bad, wanted) in [
            (vec![entry(Some("a"), Some(&sha), "ingest")], "exactly one"),
            (vec![entry(None, Some("12"), "ingest")], "64 hex"),
            (vec![entry(Some("a"), None, "read")], "unknown scope"),
            (
                vec![
                    entry(Some("a"), None, "query"),
                    entry(Some("a"), None, "admin"),
                ],
                "twice",
            ),
        ] {
            let e = resolve_tokens(&bad).unwrap_err().to_string();
            assert!(e.contains(wanted) && e.contains("the test"), "{e}");
        }
    }

    #[test]
    fn exposure() {
        assert!(is_loopback("127.0.0.1:4040"));
        assert!(is_loopback("[::1]:4040"));
        assert!(is_loopback("localhost:4040"));
        assert!(!is_loopback("0.0.0.0:4040"));
        assert!(!is_loopback("[::]:4040"));
        assert!(check_exposure("0.0.0.0:4040", &[], false).is_err());
        assert!(check_exposure("0.0.0.0:4040", &[], true).is_ok());
        assert!(check_exposure("127.0.0.1:4040", &[], false).is_ok());
    }
}
