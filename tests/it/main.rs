//! End-to-end tests across crates, on loopback with real parts: the agent
//! sampling a real workload with perf events (run as root), the server
//! storing into a real SQLite file, queries over HTTP.

#[path = "../../server/tests/it/debuginfod.rs"]
mod debuginfod;
mod support;

mod agent_to_server;
mod outage;
mod stripped;
mod ui;
