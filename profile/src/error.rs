use thiserror::Error;

/// Everything that can go wrong turning untrusted bytes into a [`crate::Profile`].
///
/// Every variant names what was wrong (and, for limits, the limit), so a caller
/// can hand the message to a user unchanged.
#[derive(Debug, Error)]
pub enum Error {
    /// Input exceeded one of the [`crate::Limits`].
    #[error("{what} exceeds the limit of {limit}")]
    LimitExceeded {
        /// What was counted, e.g. "decompressed size (bytes)".
        what: &'static str,
        /// The limit in force.
        limit: u64,
    },
    // Causes are part of the message rather than `source()`, so a chain
    // printer does not repeat them and `to_string()` alone says it all.
    /// A gzip or zstd stream could not be decompressed.
    #[error("cannot decompress {format} data: {cause}")]
    Decompress {
        /// "gzip" or "zstd".
        format: &'static str,
        /// The decoder's error.
        cause: std::io::Error,
    },
    /// The bytes are not a protobuf `perftools.profiles.Profile`.
    #[error("malformed pprof: {0}")]
    Protobuf(prost::DecodeError),
    /// The protobuf parsed but refers to something that does not exist.
    #[error("malformed pprof: {field}: {detail}")]
    InvalidPprof {
        /// The offending field, e.g. "sample.location_id".
        field: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A line of folded text (`a;b;c 12`) could not be parsed.
    #[error("malformed folded profile at line {line}: {detail}")]
    InvalidFolded {
        /// 1-based line number.
        line: usize,
        /// What was wrong with it.
        detail: String,
    },
    /// Folded text that is not UTF-8.
    #[error("folded profile is not UTF-8 text")]
    NotText,
    /// No bytes at all.
    #[error("empty profile: no bytes to decode")]
    Empty,
    /// An operation was asked of a sample type the profile does not have.
    #[error("no sample type {0:?} in this profile")]
    UnknownSampleType(String),
    /// Writing an encoded profile failed.
    #[error("cannot write profile: {0}")]
    Io(std::io::Error),
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Protobuf(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
