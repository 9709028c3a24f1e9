//! End-to-end tests of the `firewatch` binary on files in temporary
//! directories and on the fixtures in `tests/data`.

mod convert;
mod errors;
mod fixtures;
mod go_pprof;
mod support;
mod top;
