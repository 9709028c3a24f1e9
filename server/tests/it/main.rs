//! Integration tests of firewatch-server, against real SQLite files and a
//! real PostgreSQL server (`FIREWATCH_TEST_POSTGRES_URL`, which
//! `scripts/test` provides; without it, [`pg`] starts a throwaway one).
//!
//! - `store`: the storage layer on both backends.
//! - `native`, `push`, `legacy`: the three ingest paths over HTTP.
//! - `render`, `diff`, `labels`: the query API.
//! - `annotations`: annotations over HTTP, and the embedded web UI.
//! - `auth`: tokens, scopes, and tenants isolated on every query endpoint.
//! - `limits`: malformed, oversized and bomb inputs get a 4xx and leave the
//!   store unchanged.
//! - `ratelimit`, `metrics`: ingest rate limits per tenant, `/metrics`.
//! - `debuginfo`: debug files uploaded or fetched from a real debuginfod
//!   name a stripped gcc-built program's frames as addr2line does.
//! - `binary`: the `firewatch-server` binary: configuration precedence,
//!   durability across `kill -9`, graceful shutdown, HTTPS, JSON logs,
//!   refusing to expose an unauthenticated server.
//! - `multi`: two `firewatch-server` processes on one PostgreSQL.
//! - `clients`: real Pyroscope clients (Grafana's Python and Rust SDKs),
//!   unchanged, pushing to the binary.
//! - `shared`: several stores on one PostgreSQL database, as several
//!   servers run.
//!
//! HTTP cases run three ways: SQLite in process (`oneshot`), SQLite over a
//! loopback socket, and PostgreSQL over a loopback socket.

mod debuginfod;
mod harness;
mod pg;
mod support;

mod annotations;
mod auth;
mod binary;
mod clients;
mod debuginfo;
mod diff;
mod labels;
mod legacy;
mod limits;
mod metrics;
mod multi;
mod native;
mod push;
mod ratelimit;
mod reading;
mod render;
mod secure;
mod shared;
mod store;
