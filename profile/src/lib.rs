//! Firewatch's profile model, shared by the agent, the server and the CLI.
//!
//! - [`Profile`]: interned functions and stacks with one value column per
//!   [`SampleType`], built for merging ([`Profile::merge`]), filtering
//!   ([`Profile::focus`], [`Profile::filter_prefix`]) and tables
//!   ([`Profile::top_functions`]).
//! - Formats: pprof ([`pprof`], [`Profile::from_pprof_bytes`],
//!   [`Profile::to_pprof`]) and folded text ([`folded`]); gzip and zstd are
//!   recognised by magic number and decompressed within [`Limits`].
//! - Shapes for display: [`FlameTree`] (call tree, truncation with an exact
//!   "other" node, flamebearer JSON) and [`diff::function_changes`].
//! - [`corpus`]: the deterministic generator every benchmark draws from.
//! - [`debug_file`]: the build id of an ELF debug file.
//!
//! Decoding never trusts its input: every size, count and depth is bounded by
//! [`Limits`] and every failure is an [`Error`] that says what was wrong.
//! This crate does no I/O of its own beyond the readers and writers it is
//! given, and depends on neither an async runtime nor a database.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod corpus;
pub mod debug_file;
pub mod diff;
mod error;
pub mod folded;
mod limits;
mod model;
mod ops;
pub mod pprof;
mod sniff;
mod tree;

pub use error::{Error, Result};
pub use limits::{Compression, Limits, decompress, gzip, zstd};
pub use model::{
    FuncId, Function, KERNEL_FILE, Labels, ObjectAddress, Profile, SERVICE_NAME, SampleType,
    StackId, TRUNCATED,
};
pub use ops::TopEntry;
pub use sniff::{Format, parse_any};
pub use tree::{FlameTree, Flamebearer, NodeId, OTHER, ROOT};
