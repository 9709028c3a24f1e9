//! `firewatch convert`: write a profile as folded text, pprof or an SVG flamegraph.

use std::path::Path;

use firewatch_profile::{folded, gzip};
use firewatch_render::{SvgOptions, flamegraph_svg};

use crate::error::{Error, Result};
use crate::input::{choose_sample_type, load};

/// Output formats, told apart by the output file's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Folded text, `a;b;c 12` per line.
    Folded,
    /// pprof, gzipped as `go tool pprof -proto` writes it.
    PprofGzip,
    /// pprof, uncompressed.
    PprofRaw,
    /// An SVG flamegraph.
    Svg,
}

/// The endings [`Target::of`] knows, for messages.
pub(crate) const ACCEPTED: &str = ".folded, .pb.gz, .pprof, .pb, .svg";

impl Target {
    /// The format `path`'s name asks for, if any.
    pub(crate) fn of(path: &Path) -> Option<Target> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        // Longest suffix first: `x.pb.gz` also ends in `.gz`.
        [
            (".pb.gz", Target::PprofGzip),
            (".pprof", Target::PprofGzip),
            (".pb", Target::PprofRaw),
            (".folded", Target::Folded),
            (".svg", Target::Svg),
        ]
        .into_iter()
        .find(|(suffix, _)| name.ends_with(suffix) && name.len() > suffix.len())
        .map(|(_, target)| target)
    }
}

/// Converts `input` into `output`, the format told by `output`'s name.
pub(crate) fn run(
    input: &Path,
    output: &Path,
    sample_type: Option<&str>,
    icicle: bool,
    title: Option<String>,
) -> Result<()> {
    // Checked before reading the input, so a typo costs nothing.
    let target = Target::of(output).ok_or_else(|| {
        Error::Usage(format!(
            "{}: cannot tell the output format from the name; use one of {ACCEPTED}",
            output.display()
        ))
    })?;
    if target != Target::Svg && (icicle || title.is_some()) {
        return Err(Error::Usage(
            "--icicle and --title apply to .svg output only".into(),
        ));
    }
    let loaded = load(input)?;
    let profile = loaded.profile;
    let profile_stacks = profile.stack_count();
    let input_name = input.display().to_string();
    let bytes = match target {
        Target::Folded => {
            let column = choose_sample_type(&profile, sample_type, &input_name)?;
            folded::to_string(&profile, column).into_bytes()
        }
        Target::PprofGzip | Target::PprofRaw => {
            let profile = match sample_type {
                Some(kind) => {
                    let column = choose_sample_type(&profile, Some(kind), &input_name)?;
                    profile.select_sample_types(&[column])
                }
                None => profile,
            };
            let raw = profile.to_pprof_bytes();
            if target == Target::PprofGzip {
                gzip(&raw)
            } else {
                raw
            }
        }
        Target::Svg => {
            let column = choose_sample_type(&profile, sample_type, &input_name)?;
            let opts = SvgOptions {
                title,
                icicle,
                ..SvgOptions::default()
            };
            let mut svg = Vec::new();
            flamegraph_svg(&profile, column, &opts, &mut svg)
                .map_err(|e| Error::invalid(&input_name, e.to_string()))?;
            svg
        }
    };
    // Written only once complete, so a failed conversion leaves no partial file.
    std::fs::write(output, &bytes).map_err(|e| Error::file(output, "cannot write", e))?;
    // To stderr, so `-o /dev/stdout` pipelines stay clean.
    let what = match target {
        Target::Svg => "flamegraph (open it in a browser)",
        Target::Folded => "folded stacks",
        Target::PprofGzip | Target::PprofRaw => "pprof (read it with `go tool pprof`)",
    };
    eprintln!(
        "wrote {}: {what}, {} stacks, {} bytes",
        output.display(),
        profile_stacks,
        bytes.len()
    );
    Ok(())
}
