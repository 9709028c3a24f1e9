//! End-to-end tests of the `firewatch` binary: on files in temporary
//! directories and the fixtures in `tests/data`, and against a real server
//! on a loopback port fed through its ingest API.

mod convert;
mod debuginfo;
mod diff;
mod errors;
mod fixtures;
mod gate;
mod go_pprof;
mod go_tool;
mod live;
mod render;
mod report;
mod support;
mod top;
#[cfg(feature = "up")]
mod up;
