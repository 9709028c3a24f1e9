//! What can go wrong in a command, each printed by `main` as one line.
//!
//! Causes are part of each message rather than `source()`, so that printing
//! the error says everything once.

use std::io;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Flags that cannot work: a malformed value or a bad combination.
    #[error("{0}")]
    Usage(String),
    /// A file could not be opened, read or written.
    #[error("{path}: {action}: {cause}")]
    File {
        /// The file as the user named it.
        path: String,
        /// What was being done, e.g. "cannot open".
        action: &'static str,
        /// The system error.
        cause: io::Error,
    },
    /// An input (a file, a server's answer) is not what it should be.
    #[error("{what}: {message}")]
    Invalid {
        /// The file or query concerned.
        what: String,
        /// What was wrong with it.
        message: String,
    },
    /// No connection to the server, or no answer in time.
    #[error("cannot reach the server at {server}: {message}")]
    Unreachable {
        /// The server's base URL.
        server: String,
        /// The transport error, and what to check.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{url}: the server answered {status}: {message}")]
    Status {
        /// The URL asked, without its query string.
        url: String,
        /// Status code and reason, e.g. "400 Bad Request".
        status: String,
        /// The server's `{"error": ...}` message, or the start of its body.
        message: String,
    },
    /// Writing the command's output (stdout) failed.
    #[error("cannot write output: {0}")]
    Output(io::Error),
    /// `firewatch up` could not start or run its server.
    #[cfg(feature = "up")]
    #[error("{0}")]
    Up(String),
}

impl Error {
    /// An [`Error::Invalid`] about `what`.
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    /// An [`Error::File`] about `path`.
    pub(crate) fn file(path: &std::path::Path, action: &'static str, cause: io::Error) -> Error {
        Error::File {
            path: path.display().to_string(),
            action,
            cause,
        }
    }

    /// True when stdout was closed by its reader (`firewatch top | head`):
    /// the reader is done, which is not a failure.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }

    /// True for errors in what the user typed rather than in what was read.
    pub(crate) fn is_usage(&self) -> bool {
        matches!(self, Error::Usage(_))
    }
}

/// Result alias for the commands.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps a failed write to stdout.
pub(crate) fn output(e: io::Error) -> Error {
    Error::Output(e)
}
