//! `firewatch`: inspect and convert profiles on the command line.

mod convert;
mod input;
mod top;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Inspect and convert profiles: pprof (gzip, zstd or uncompressed) and
/// folded stacks.
#[derive(Debug, Parser)]
#[command(name = "firewatch", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the functions with the most self (or total) value.
    Top {
        /// A pprof or folded profile, optionally gzip- or zstd-compressed.
        file: PathBuf,
        /// Sample type to rank by, e.g. `cpu` or `alloc_space` (default: `cpu`
        /// if the profile has it, else its first).
        #[arg(long, value_name = "KIND")]
        sample_type: Option<String>,
        /// How many functions to print; 0 prints all.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
        /// Rank by self value (samples ending in the function) or total
        /// (samples passing through it).
        #[arg(long, value_enum, default_value_t = SortBy::SelfValue)]
        sort: SortBy,
        /// Print a table for people or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Convert a profile to folded text, pprof or an SVG flamegraph.
    ///
    /// The output format follows OUT's extension: `.folded`, `.pb.gz` or
    /// `.pprof` (gzipped pprof), `.pb` (uncompressed pprof) or `.svg`.
    Convert {
        /// A pprof or folded profile, optionally gzip- or zstd-compressed.
        file: PathBuf,
        /// Where to write; its extension picks the format.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Sample type to write (default for `.folded` and `.svg`: `cpu` if
        /// present, else the first; pprof output keeps every type unless
        /// this is given).
        #[arg(long, value_name = "KIND")]
        sample_type: Option<String>,
        /// SVG only: draw an icicle graph (root at the top).
        #[arg(long)]
        icicle: bool,
        /// SVG only: the graph's title.
        #[arg(long, value_name = "TITLE")]
        title: Option<String>,
    },
}

/// What `top` ranks by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SortBy {
    /// Value of samples whose leaf is the function.
    #[value(name = "self")]
    SelfValue,
    /// Value of samples with the function anywhere on the stack.
    Total,
}

/// How `top` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// An aligned table.
    Text,
    /// One JSON object.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Top {
            file,
            sample_type,
            limit,
            sort,
            output,
        } => top::run(&file, sample_type.as_deref(), limit, sort, output),
        Command::Convert {
            file,
            output,
            sample_type,
            icicle,
            title,
        } => convert::run(&file, &output, sample_type.as_deref(), icicle, title),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `firewatch top big.pb.gz | head` closes the pipe early; that is
        // the reader being done, not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whole cause chain, so scripts and logs keep it intact.
            let message = printable(&format!("{e:#}"));
            let _ = writeln!(std::io::stderr(), "error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `text` with control characters replaced: names come from untrusted
/// files, and a newline would break the one-line output or an escape
/// sequence take over the terminal.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
