//! SVG flamegraphs of Firewatch profiles: plain (root at the bottom),
//! icicle (root at the top) and differential, drawn by inferno.
//!
//! Stacks are aggregated by function name before inferno sees them, so one
//! call path is always one rectangle, whatever the source format interned
//! separately (e.g. two functions of the same name in different files).
//!
//! Colour: in plain and icicle graphs hue only tells frames apart (it is a
//! hash of the name, stable across runs) and carries no meaning. In a diff,
//! red means the frame's share grew and blue that it shrank, saturation
//! following the size of the change. inferno has no colour-blind palette;
//! red against blue stays distinguishable under the common red-green
//! deficiencies, and the tooltip of every frame gives the change as a signed
//! percentage, so no information is carried by colour alone.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod stacks;
mod units;

use std::io::Write;

use firewatch_profile::{Profile, SampleType};
use inferno::flamegraph::{self, Direction, Options, Palette, color::BasicPalette};

pub use units::format_value;

/// How to draw a flamegraph.
#[derive(Clone, Debug, PartialEq)]
pub struct SvgOptions {
    /// Title at the top of the image; `None` picks one from the kind of graph
    /// ("Flame Graph", "Icicle Graph", "Differential Flame Graph").
    pub title: Option<String>,
    /// Unit label in tooltips ("1,234 samples"); `None` uses the sample
    /// type's unit, with `count` shown as `samples`.
    pub count_name: Option<String>,
    /// Draw an icicle graph: root at the top, callees hanging below.
    pub icicle: bool,
    /// Frames narrower than this percentage of the full width are left out,
    /// which keeps huge profiles readable and the SVG small.
    pub min_width: f64,
}

impl Default for SvgOptions {
    /// No title or unit override, flame (not icicle), frames under 0.1% dropped.
    fn default() -> Self {
        SvgOptions {
            title: None,
            count_name: None,
            icicle: false,
            min_width: 0.1,
        }
    }
}

/// Why a flamegraph could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The requested sample type column does not exist.
    #[error("no sample type at index {index}: the profile has {available}")]
    NoSuchSampleType {
        /// The index asked for.
        index: usize,
        /// How many sample types the profile has.
        available: usize,
    },
    /// Nothing to draw: no stack has a positive value in the chosen column.
    #[error("{what} has no samples to draw")]
    Empty {
        /// Which profile and sample type, e.g. `the profile (cpu)`.
        what: String,
    },
    /// inferno failed, which in practice means writing the SVG failed.
    #[error("cannot render SVG: {0}")]
    Io(#[from] std::io::Error),
}

/// Draws one sample type of `profile` as an SVG flamegraph (or icicle graph
/// with [`SvgOptions::icicle`]).
///
/// Stacks with a zero or negative value are left out. Output is
/// deterministic: the same profile and options give the same bytes.
///
/// # Errors
/// [`RenderError::NoSuchSampleType`] for a bad `type_index`,
/// [`RenderError::Empty`] when nothing has a positive value, and
/// [`RenderError::Io`] when writing fails.
pub fn flamegraph_svg(
    profile: &Profile,
    type_index: usize,
    opts: &SvgOptions,
    out: &mut impl Write,
) -> Result<(), RenderError> {
    let sample_type = sample_type(profile, type_index)?;
    let mut stacks = stacks::Stacks::default();
    stacks.add(profile, type_index, 0);
    let total = stacks.total(0);
    if total == 0 {
        return Err(RenderError::Empty {
            what: format!("the profile ({})", sample_type.kind),
        });
    }
    let default_title = if opts.icicle {
        "Icicle Graph"
    } else {
        "Flame Graph"
    };
    let divisor = stacks.fit();
    let mut options = inferno_options(opts, sample_type, default_title);
    // Tooltips then show values near the real ones (exact to the divisor)
    // and exact percentages.
    options.factor = divisor as f64;
    options.subtitle = Some(format!(
        "{} ({}), total {}",
        sample_type.kind,
        sample_type.unit,
        format_value(total_i64(total), &sample_type.unit)
    ));
    if units::is_bytes(&sample_type.unit) {
        options.colors = Palette::Basic(BasicPalette::Mem);
    }
    sanitize(&mut options);
    let lines = stacks.lines(false);
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)?;
    Ok(())
}

/// Draws how `after` differs from `before` as a differential flamegraph.
///
/// The graph has `after`'s shape: widths are `after`'s values. Colours
/// compare shares, not raw values: `before` is first scaled so that its
/// total equals `after`'s, so a longer or busier `after` window does not
/// read as growth everywhere. Red frames grew, blue frames shrank.
///
/// Stacks that exist only in `before` have no width in `after` and so are
/// not drawn; to see what disappeared, swap the two profiles (colours then
/// read the other way round).
///
/// # Errors
/// [`RenderError::NoSuchSampleType`] for a bad index, [`RenderError::Empty`]
/// when either side has nothing with a positive value (there is no share to
/// compare), and [`RenderError::Io`] when writing fails.
pub fn diff_svg(
    before: &Profile,
    before_type: usize,
    after: &Profile,
    after_type: usize,
    opts: &SvgOptions,
    out: &mut impl Write,
) -> Result<(), RenderError> {
    let before_sample_type = sample_type(before, before_type)?;
    let after_sample_type = sample_type(after, after_type)?;
    let mut stacks = stacks::Stacks::default();
    stacks.add(before, before_type, 0);
    stacks.add(after, after_type, 1);
    let (before_total, after_total) = (stacks.total(0), stacks.total(1));
    for (total, side, t) in [
        (before_total, "before", before_sample_type),
        (after_total, "after", after_sample_type),
    ] {
        if total == 0 {
            return Err(RenderError::Empty {
                what: format!("the {side} profile ({})", t.kind),
            });
        }
    }
    stacks.scale_column(0, after_total as f64 / before_total as f64);
    let divisor = stacks.fit();
    let mut options = inferno_options(opts, after_sample_type, "Differential Flame Graph");
    if divisor > 1 {
        // inferno's `factor` would skew the change percentages of a diff
        // (it scales the total but not the delta), so say it in the label.
        options.count_name = format!("×{divisor} {}", options.count_name);
    }
    options.subtitle = Some(format!(
        "{}: before {}, after {}; before scaled to after's total; red grew, blue shrank",
        after_sample_type.kind,
        format_value(total_i64(before_total), &before_sample_type.unit),
        format_value(total_i64(after_total), &after_sample_type.unit),
    ));
    sanitize(&mut options);
    let lines = stacks.lines(true);
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)?;
    Ok(())
}

/// Replaces characters XML 1.0 forbids in the texts that come from the
/// profile or the caller; a browser refuses an SVG with a single one.
fn sanitize(options: &mut Options<'_>) {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect()
    };
    options.title = clean(&options.title);
    options.count_name = clean(&options.count_name);
    options.subtitle = options.subtitle.as_deref().map(clean);
}

fn sample_type(profile: &Profile, index: usize) -> Result<&SampleType, RenderError> {
    profile
        .sample_types()
        .get(index)
        .ok_or(RenderError::NoSuchSampleType {
            index,
            available: profile.sample_types().len(),
        })
}

fn total_i64(total: u64) -> i64 {
    i64::try_from(total).unwrap_or(i64::MAX)
}

fn inferno_options<'a>(
    opts: &SvgOptions,
    sample_type: &SampleType,
    default_title: &str,
) -> Options<'a> {
    let mut options = Options::default();
    options.title = opts
        .title
        .clone()
        .unwrap_or_else(|| default_title.to_owned());
    options.count_name = opts.count_name.clone().unwrap_or_else(|| {
        if sample_type.unit == "count" || sample_type.unit.is_empty() {
            "samples".to_owned()
        } else {
            sample_type.unit.clone()
        }
    });
    options.min_width = opts.min_width;
    options.direction = if opts.icicle {
        Direction::Inverted
    } else {
        Direction::Straight
    };
    // Colours from name hashes rather than chance, so the same profile always
    // gives the same bytes and a function keeps its colour across graphs.
    options.hash = true;
    options.deterministic = true;
    // Lines arrive already aggregated and in call-tree order (see
    // `Stacks::lines`); flame-chart mode is inferno's documented way to take
    // lines unsorted, and it reverses them, which `lines` undoes.
    options.flame_chart = true;
    options
}
