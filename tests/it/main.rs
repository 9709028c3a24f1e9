//! End-to-end tests across crates, on loopback with real parts: the agent
//! sampling a real workload with perf events (run as root), the server
//! storing into a real SQLite file, queries over HTTP.

#[path = "../../server/tests/it/debuginfod.rs"]
mod debuginfod;
#[path = "../../cli/tests/it/go_tool.rs"]
mod go_tool;
mod support;

mod agent_to_server;
mod boundaries;
mod outage;
mod rustc;
mod stripped;
mod ui;
