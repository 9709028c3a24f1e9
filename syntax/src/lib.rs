//! How Firewatch reads what people type, in one place so that every binary
//! (server, agent, CLI) and the web UI give each word one meaning:
//!
//! - [`parse_duration`]: `30d`, `1h30m`, `2.5s`, `500ms` (humantime's
//!   grammar);
//! - [`parse_size`]: `16MiB` (2^20 bytes), `16MB` and `16M` (10^6),
//!   `1.5GiB`, `1048576`;
//! - [`parse_time`]: `now`, `now-1h`, Unix time (its unit told by its digit
//!   count), `YYYYMMDD`, `YYYY-MM-DD`, RFC 3339;
//! - [`is_label_name`], the rule `[a-zA-Z_][a-zA-Z0-9_]*`;
//! - [`now_ms`], [`now_ns`]: the wall clock in the units the model uses.
//!
//! `tests/data/cases.json` lists inputs with what they mean or that they
//! are refused; this crate's tests and the UI's both read it, so the UI
//! agrees with the binaries by construction.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod duration;
mod size;
mod time;

pub use duration::parse_duration;
pub use size::parse_size;
pub use time::{now_ms, now_ns, parse_time};

/// Text that does not read as what it was meant to be.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid {what} {input:?}: {message}")]
pub struct SyntaxError {
    /// What was expected: "duration", "size" or "time".
    pub what: &'static str,
    /// The text as given.
    pub input: String,
    /// What was wrong with it, and what is accepted.
    pub message: String,
}

impl SyntaxError {
    fn new(what: &'static str, input: &str, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            what,
            input: input.to_owned(),
            message: message.into(),
        }
    }
}

/// Whether `name` is a label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
