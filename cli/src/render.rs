//! `firewatch render`: a query's merged profile from the server, written as
//! an SVG flamegraph, pprof, folded text or flamebearer JSON.

use std::path::Path;

use firewatch_profile::{Limits, decompress};

use crate::client::{Client, Query};
use crate::convert::Target;
use crate::error::{Error, Result};
use crate::progress;

/// What `render` writes, by the output file's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Svg,
    PprofGzip,
    PprofRaw,
    Folded,
    Json,
}

const ACCEPTED: &str = ".svg, .pb.gz, .pprof, .pb, .folded, .json";

impl Format {
    fn of(path: &Path) -> Option<Format> {
        let json = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_ascii_lowercase)
            .is_some_and(|n| n.len() > 5 && n.ends_with(".json"));
        if json {
            return Some(Format::Json);
        }
        Target::of(path).map(|t| match t {
            Target::Svg => Format::Svg,
            Target::PprofGzip => Format::PprofGzip,
            Target::PprofRaw => Format::PprofRaw,
            Target::Folded => Format::Folded,
        })
    }

    /// The server's name for the format.
    fn param(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::PprofGzip | Format::PprofRaw => "pprof",
            Format::Folded => "folded",
            Format::Json => "json",
        }
    }
}

/// Fetches `query` in the format `output`'s name asks for and writes it.
pub(crate) fn run(
    client: &Client,
    query: &Query,
    output: &Path,
    icicle: bool,
    title: Option<String>,
) -> Result<()> {
    // Checked before asking the server, so a typo costs nothing.
    let format = Format::of(output).ok_or_else(|| {
        Error::Usage(format!(
            "{}: cannot tell the output format from the name; use one of {ACCEPTED}",
            output.display()
        ))
    })?;
    if format != Format::Svg && (icicle || title.is_some()) {
        return Err(Error::Usage(
            "--icicle and --title apply to .svg output only".into(),
        ));
    }
    let mut extra = Vec::new();
    if icicle {
        extra.push(("icicle", "true".to_owned()));
    }
    if let Some(title) = title {
        extra.push(("title", title));
    }
    progress(&format!(
        "fetching {} as {} from {}",
        query.describe(),
        format.param(),
        client.base()
    ));
    let mut bytes = client.render(query, format.param(), &extra)?;
    if format == Format::PprofRaw {
        let limit = Limits::default().max_decompressed_bytes;
        bytes = decompress(&bytes, limit)
            .map_err(|e| {
                Error::invalid(query.describe(), format!("the server's pprof answer: {e}"))
            })?
            .into_owned();
    }
    let empty = match format {
        Format::Folded => bytes.iter().all(u8::is_ascii_whitespace),
        // The server draws an empty window as a picture saying so.
        Format::Svg => bytes
            .windows(b"No samples in the selected range".len())
            .any(|w| w == b"No samples in the selected range"),
        _ => false,
    };
    std::fs::write(output, &bytes).map_err(|e| Error::file(output, "cannot write", e))?;
    let what = match format {
        Format::Svg => "flamegraph (open it in a browser)",
        Format::Folded => "folded stacks",
        Format::PprofGzip | Format::PprofRaw => "pprof (read it with `go tool pprof`)",
        Format::Json => "flamebearer JSON",
    };
    progress(&format!(
        "wrote {}: {what}, {} bytes",
        output.display(),
        bytes.len()
    ));
    if empty {
        progress(&format!(
            "note: no samples for {}; check the query, the window and --type",
            query.describe()
        ));
    }
    Ok(())
}
