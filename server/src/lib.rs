//! Firewatch's server: ingests profiles (native, Pyroscope push and legacy
//! ingest), stores them in SQLite or PostgreSQL, and answers queries with
//! flamegraphs, diffs and pprof exports.
