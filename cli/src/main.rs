//! `firewatch`: run Firewatch on this machine, and inspect, convert, compare
//! and gate profiles from files or from a server.

#![forbid(unsafe_code)]
mod chart;
mod client;
mod compare;
mod convert;
mod debuginfo;
mod diff;
mod error;
mod gate;
mod html;
mod input;
mod markdown;
mod render;
mod report;
mod table;
mod top;
#[cfg(feature = "up")]
mod up;
mod window;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::client::{Client, Query, ServerArgs};
use crate::compare::{CompareArgs, Comparison};
use crate::error::{Error, Result};
use crate::input::Source;
use crate::window::{TimeArgs, Window};

/// Run Firewatch on this machine, and inspect, convert, compare and gate
/// profiles: local files (pprof, gzip- or zstd-compressed or not, and
/// folded stacks) or queries on a Firewatch server.
#[derive(Debug, Parser)]
#[command(name = "firewatch", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the server and profile this host, in one process; prints the
    /// UI's address once the first profiles are stored. Ctrl-C stops both.
    #[cfg(feature = "up")]
    Up(up::UpArgs),
    /// Print the functions with the most self (or total) value, of a file
    /// or of a query on the server.
    Top {
        /// A profile file, or a query such as `checkout.cpu{env="prod"}`
        /// (an existing file is read as a file).
        #[arg(value_name = "FILE|QUERY")]
        target: String,
        /// Sample type: for a file the column to rank by (default `cpu` if
        /// present, else the first); for a query the profile type (default `cpu`).
        #[arg(long = "type", visible_alias = "sample-type", value_name = "TYPE")]
        profile_type: Option<String>,
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
        #[command(flatten)]
        time: TimeArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Fetch a query's flamegraph (or profile) from the server into a file.
    ///
    /// The format follows OUT's extension: `.svg`, `.pb.gz` or `.pprof`
    /// (gzipped pprof), `.pb` (uncompressed pprof), `.folded` or `.json`
    /// (the flamebearer the UI draws).
    Render {
        /// A query such as `checkout.cpu` or `{service_name="checkout"}`.
        query: String,
        /// Where to write; its extension picks the format.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Profile type for selector queries and bare service names.
        #[arg(long = "type", default_value = "cpu", value_name = "TYPE")]
        profile_type: String,
        /// SVG only: draw an icicle graph (root at the top).
        #[arg(long)]
        icicle: bool,
        /// SVG only: the graph's title (default: the query).
        #[arg(long, value_name = "TITLE")]
        title: Option<String>,
        #[command(flatten)]
        time: TimeArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Compare two profiles (files or queries): the functions whose self
    /// share grew most, then those that shrank most.
    Diff {
        #[command(flatten)]
        compare: CompareArgs,
        /// Rows per table; 0 prints all.
        #[arg(short = 'n', long, default_value_t = 10)]
        limit: usize,
        /// Print tables for people or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Fail (exit 1) when a function's self share grew by more than a
    /// threshold between two profiles; prints a markdown report.
    ///
    /// Exit codes: 0 passed, 1 a regression over the threshold, 2 the
    /// comparison could not be made (bad flags, unreadable input).
    Gate {
        #[command(flatten)]
        compare: CompareArgs,
        /// Largest allowed growth of any function's self share, in
        /// percentage points of the profile's total: `5%`, `0.5%`.
        #[arg(
            long,
            default_value = "5%",
            value_name = "POINTS",
            allow_hyphen_values = true
        )]
        max_regression: String,
        /// Also write the markdown report to this file (e.g. for a
        /// pull-request comment).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Rows in the tables of growth within the threshold and of
        /// improvements; 0 lists all.
        #[arg(short = 'n', long, default_value_t = 10)]
        limit: usize,
        /// Print the markdown report, or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Write a report on a query over a window: hotspots, the trend, the
    /// biggest changes against the previous window, and the flamegraph.
    ///
    /// `.html` gives one self-contained file; `.md` gives markdown with the
    /// flamegraph written beside it as `<name>.svg`.
    Report {
        /// A query such as `checkout.cpu` or `{service_name="checkout"}`.
        query: String,
        /// Where to write: `report.html` or `report.md`.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Profile type for selector queries and bare service names.
        #[arg(long = "type", default_value = "cpu", value_name = "TYPE")]
        profile_type: String,
        /// Rows per table; 0 lists all.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        time: TimeArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Convert a profile file to folded text, pprof or an SVG flamegraph.
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
        #[arg(long = "type", visible_alias = "sample-type", value_name = "KIND")]
        sample_type: Option<String>,
        /// SVG only: draw an icicle graph (root at the top).
        #[arg(long)]
        icicle: bool,
        /// SVG only: the graph's title.
        #[arg(long, value_name = "TITLE")]
        title: Option<String>,
    },
    /// Debug files the server names stripped binaries' frames with.
    Debuginfo {
        #[command(subcommand)]
        command: DebuginfoCommand,
    },
}

/// `firewatch debuginfo ...`.
#[derive(Debug, Subcommand)]
enum DebuginfoCommand {
    /// Upload debug files (`objcopy --only-keep-debug` output, a dbgsym
    /// package's `.debug` file, or an unstripped binary), each filed by its
    /// GNU build id; files the server already holds are skipped.
    Upload {
        /// ELF files with a build id and a symbol table or DWARF.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
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

/// How results print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// For people: tables (markdown for `gate`).
    Text,
    /// One JSON object.
    Json,
}

/// What a command ended with, short of an error.
enum Outcome {
    /// Done.
    Done,
    /// `gate` found a regression over its threshold.
    GateFailed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_gate = matches!(cli.command, Command::Gate { .. });
    match run(cli.command) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::GateFailed) => ExitCode::from(1),
        // `firewatch top big.pb.gz | head` closes the pipe early; that is
        // the reader being done, not a failure.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            // One line, so scripts and logs keep it intact.
            let message = printable(&e.to_string());
            let _ = writeln!(std::io::stderr(), "error: {message}");
            // A gate that could not compare must not read as a regression
            // (1), and usage errors are 2 as clap's own are.
            if is_gate || e.is_usage() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(command: Command) -> Result<Outcome> {
    #[cfg(feature = "up")]
    if let Command::Up(args) = &command {
        up::run(args)?;
        return Ok(Outcome::Done);
    }
    init_tracing("warn")?;
    match command {
        #[cfg(feature = "up")]
        Command::Up(_) => {}
        Command::Top {
            target,
            profile_type,
            limit,
            sort,
            output,
            time,
            server,
        } => {
            let options = top::TopOptions {
                limit,
                sort,
                output,
            };
            match Source::classify(&target) {
                Source::File(path) => top::run_file(&path, profile_type.as_deref(), options)?,
                Source::Query(query) => {
                    let client = Client::new(&server)?;
                    let query = Query {
                        query,
                        profile_type: profile_type.unwrap_or_else(|| "cpu".into()),
                        window: Window::from_args(&time)?,
                    };
                    top::run_server(&client, &query, options)?;
                }
            }
        }
        Command::Render {
            query,
            output,
            profile_type,
            icicle,
            title,
            time,
            server,
        } => {
            let client = Client::new(&server)?;
            let query = Query {
                query,
                profile_type,
                window: Window::from_args(&time)?,
            };
            render::run(&client, &query, &output, icicle, title)?;
        }
        Command::Diff {
            compare,
            limit,
            output,
        } => diff::run(&compare, limit, output)?,
        Command::Gate {
            compare,
            max_regression,
            report,
            limit,
            output,
        } => {
            // Checked before any profile is read or fetched.
            let max_points = gate::parse_threshold(&max_regression)?;
            let comparison = Comparison::load(&compare)?;
            let verdict = gate::run(&comparison, max_points, limit, output, report.as_deref())?;
            if verdict == gate::Verdict::Failed {
                return Ok(Outcome::GateFailed);
            }
        }
        Command::Report {
            query,
            output,
            profile_type,
            limit,
            time,
            server,
        } => {
            let client = Client::new(&server)?;
            let query = Query {
                query,
                profile_type,
                window: Window::from_args(&time)?,
            };
            report::run(&client, query, &output, limit)?;
        }
        Command::Convert {
            file,
            output,
            sample_type,
            icicle,
            title,
        } => convert::run(&file, &output, sample_type.as_deref(), icicle, title)?,
        Command::Debuginfo {
            command: DebuginfoCommand::Upload { files, server },
        } => debuginfo::upload(&Client::new(&server)?, &files)?,
    }
    Ok(Outcome::Done)
}

/// Logs go to stderr, filtered by `RUST_LOG` when set, else by `filter`.
pub(crate) fn init_tracing(filter: &str) -> Result<()> {
    let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => tracing_subscriber::EnvFilter::try_new(filter)
            .map_err(|e| Error::Usage(format!("invalid log filter {filter:?}: {e}")))?,
    };
    // Ignored when a subscriber is already set: logs still go somewhere.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    Ok(())
}

/// Says what is happening on stderr, so stdout stays clean for the
/// results (`--output json | jq`).
pub(crate) fn progress(message: &str) {
    let _ = writeln!(std::io::stderr(), "{}", printable(message));
}

/// `text` with control characters replaced: names come from untrusted
/// files and servers, and a newline would break the one-line output or an
/// escape sequence take over the terminal.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}
