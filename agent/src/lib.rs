//! Firewatch's host agent: samples the CPU stacks of every process with
//! `perf_event_open`, symbolizes them, and ships pprof profiles to a
//! Firewatch (or Pyroscope) server. Also embeddable in a Rust service.
//!
//! Depends on `firewatch-profile` for the profile model; never on the
//! server's dependencies (no axum, sqlx or inferno in the agent binary).
