//! Reading a profile file within the limits, and choosing its sample type.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use firewatch_profile::{Format, Limits, Profile, parse_any};

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
    let bytes = read_bounded(path, limits.max_decompressed_bytes).context(what.clone())?;
    if bytes.is_empty() {
        bail!("{what}: the file is empty");
    }
    // The model's errors already say their cause in their message; handing
    // them to anyhow whole would print the cause a second time.
    let (format, profile) = parse_any(&bytes, &limits).map_err(|e| anyhow!("{what}: {e}"))?;
    Ok(Loaded { format, profile })
}

/// The whole file, refused without reading it all when it is over `limit` bytes.
fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let file = File::open(path).context("cannot open")?;
    let len = file.metadata().context("cannot read metadata")?.len();
    let limit_u64 = limit as u64;
    if len > limit_u64 {
        bail!("file size of {len} bytes exceeds the limit of {limit} bytes");
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // The file may grow between the check and the read (or not be a regular file).
    file.take(limit_u64 + 1)
        .read_to_end(&mut bytes)
        .context("cannot read")?;
    if bytes.len() > limit {
        bail!("file size exceeds the limit of {limit} bytes");
    }
    Ok(bytes)
}

/// The column for `requested`, or by default `cpu` if present, else the first.
pub(crate) fn choose_sample_type(profile: &Profile, requested: Option<&str>) -> Result<usize> {
    let types = profile.sample_types();
    if types.is_empty() {
        bail!("the profile has no sample types");
    }
    match requested {
        Some(kind) => profile.sample_type_index(kind).ok_or_else(|| {
            let available: Vec<String> = types
                .iter()
                .map(|t| format!("{} ({})", t.kind, t.unit))
                .collect();
            anyhow!(
                "no sample type {kind:?} in this profile; it has: {}",
                available.join(", ")
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
