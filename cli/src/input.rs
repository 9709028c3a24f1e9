//! Reading a profile file within the limits, choosing its sample type, and
//! telling a file argument from a server query.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use firewatch_profile::{Format, Limits, Profile, parse_any};

use crate::error::{Error, Result};

/// A parsed profile and the format it was in.
pub(crate) struct Loaded {
    pub format: Format,
    pub profile: Profile,
}

/// Reads and parses `path`, every error prefixed with the path.
pub(crate) fn load(path: &Path) -> Result<Loaded> {
    let limits = Limits::default();
    let what = path.display().to_string();
    // Compressed input is never larger than what it decompresses to in any
    // profile worth reading, so the decompressed bound serves for the file too.
    let bytes = read_bounded(path, limits.max_decompressed_bytes)?;
    if bytes.is_empty() {
        return Err(Error::invalid(what, "the file is empty"));
    }
    let (format, profile) =
        parse_any(&bytes, &limits).map_err(|e| Error::invalid(what, e.to_string()))?;
    Ok(Loaded { format, profile })
}

/// The whole file, refused without reading it all when it is over `limit` bytes.
fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::file(path, "cannot open", e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::file(path, "cannot read metadata", e))?
        .len();
    let limit_u64 = limit as u64;
    let what = || path.display().to_string();
    if len > limit_u64 {
        return Err(Error::invalid(
            what(),
            format!("file size of {len} bytes exceeds the limit of {limit} bytes"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // The file may grow between the check and the read (or not be a regular file).
    file.take(limit_u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::file(path, "cannot read", e))?;
    if bytes.len() > limit {
        return Err(Error::invalid(
            what(),
            format!("file size exceeds the limit of {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// The column for `requested`, or by default `cpu` if present, else the
/// first; errors name `what` (the file or query the profile came from).
pub(crate) fn choose_sample_type(
    profile: &Profile,
    requested: Option<&str>,
    what: &str,
) -> Result<usize> {
    let types = profile.sample_types();
    if types.is_empty() {
        return Err(Error::invalid(what, "the profile has no sample types"));
    }
    match requested {
        Some(kind) => profile.sample_type_index(kind).ok_or_else(|| {
            let available: Vec<String> = types
                .iter()
                .map(|t| format!("{} ({})", t.kind, t.unit))
                .collect();
            Error::invalid(
                what,
                format!(
                    "no sample type {kind:?} in this profile; it has: {}",
                    available.join(", ")
                ),
            )
        }),
        None => Ok(profile.sample_type_index("cpu").unwrap_or(0)),
    }
}

/// `format` as users name it.
pub(crate) fn format_name(format: Format) -> &'static str {
    match format {
        Format::Pprof => "pprof",
        Format::Folded => "folded",
    }
}

/// Where a profile argument points: a local file or a query for the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A pprof or folded file.
    File(PathBuf),
    /// A query such as `checkout.cpu{env="prod"}`.
    Query(String),
}

/// File name endings that only a profile file has, never a query.
const FILE_ENDINGS: &[&str] = &[
    ".pb",
    ".gz",
    ".zst",
    ".pprof",
    ".folded",
    ".collapsed",
    ".txt",
    ".prof",
];

impl Source {
    /// An existing file is a file. Otherwise an argument that can only be a
    /// path (a directory separator or a profile file ending outside any
    /// braces) is still a file, so a typo in its name reports the missing
    /// file instead of a confusing query error; anything else is a query.
    pub(crate) fn classify(arg: &str) -> Source {
        let path = Path::new(arg);
        if path.is_file() {
            return Source::File(path.to_owned());
        }
        let looks_like_path = !arg.contains('{')
            && (arg.contains('/')
                || FILE_ENDINGS
                    .iter()
                    .any(|end| arg.to_ascii_lowercase().ends_with(end)));
        if looks_like_path {
            Source::File(path.to_owned())
        } else {
            Source::Query(arg.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_paths() {
        for query in [
            "checkout.cpu",
            "checkout",
            r#"{service_name="checkout"}"#,
            r#"checkout.cpu{path="/api/v1.pb"}"#,
            "my.app.alloc_space",
        ] {
            assert_eq!(Source::classify(query), Source::Query(query.into()));
        }
        for path in ["base.pb.gz", "new.folded", "out/x", "./cpu", "p.PPROF"] {
            assert_eq!(Source::classify(path), Source::File(path.into()));
        }
    }
}
