//! Firewatch's host agent: samples the CPU stacks of every process with
//! `perf_event_open`, unwinds them from a copy of the user stack with
//! `.eh_frame`, symbolizes them, and ships one pprof per series and
//! interval to a Firewatch (or Grafana Pyroscope) server.
//!
//! - [`sample`]: perf events, ring-buffer records, processes and modules,
//!   the sampling loop ([`sample::Sampler`]), and the allocation probes of
//!   chosen processes ([`sample::alloc`]).
//! - [`unwind`]: framehop over memory-mapped `.eh_frame` sections.
//! - [`aggregate`]: stacks summed per series, process and thread.
//! - [`symbolize`]: blazesym, kallsyms, perf maps, the vDSO.
//! - [`labels`]: series labels from `/proc`, cgroups and container runtimes.
//! - [`pprof`]: the pprof messages, with `pid` and `thread_name` sample labels.
//! - [`prometheus`]: the agent's own metrics on `GET /metrics`.
//! - [`ship`]: the bounded buffer, retries, and the native and Pyroscope protocols.
//! - [`Agent`]: the three threads wired together; [`Config`]: what can be set.
//! - [`embed`]: the profiler a Rust service embeds: its own CPU (perf events
//!   on its threads, or a timer signal) and heap ([`embed::SamplingAllocator`]).
//!
//! Depends on `firewatch-profile` for the profile model; never on the
//! server's dependencies (no axum, sqlx or inferno in the agent binary).

mod agent;
pub mod aggregate;
mod bpf;
pub mod config;
pub mod embed;
mod error;
mod filepages;
pub mod labels;
pub mod metrics;
pub mod pprof;
pub mod prometheus;
pub mod python;
pub mod sample;
pub mod ship;
pub mod symbolize;
mod sys;
pub mod unwind;

pub use agent::{Agent, raise_fd_limit};
pub use config::Config;
pub use error::{Error, Result};
