//! The agent's own metrics on `GET /metrics` in Prometheus' text format
//! (`metrics_listen`, off by default): samples, lost samples, unwind
//! failures, profiles built, delivered, rejected and dropped, buffer use,
//! CPU and memory.
//!
//! A small blocking server on its own thread (tiny_http): the agent links
//! no async runtime, and a scrape every few seconds needs none.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::metrics::{Metrics, Snapshot, own_cpu_time, own_rss_bytes};

/// The running endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Serves `metrics` on `addr` (port 0 picks a free port, see [`MetricsServer::addr`]).
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<MetricsServer> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| Error::Config(format!("cannot serve metrics on {addr}: {e}")))?;
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let thread = {
            let server = Arc::clone(&server);
            std::thread::Builder::new()
                .name("fw-metrics".into())
                .spawn(move || {
                    let _own = crate::metrics::own_thread();
                    serve(&server, &metrics)
                })
                .map_err(|source| Error::Thread {
                    name: "metrics",
                    source,
                })?
        };
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, metrics: &Metrics) {
    crate::embed::alloc::exclude_current_thread();
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("");
        let response = if request.method() == &tiny_http::Method::Get && path == "/metrics" {
            let body = render(&metrics.snapshot());
            let header = tiny_http::Header::from_bytes(
                &b"Content-Type"[..],
                &b"text/plain; version=0.0.4; charset=utf-8"[..],
            );
            let mut r = tiny_http::Response::from_string(body);
            if let Ok(h) = header {
                r.add_header(h);
            }
            r
        } else {
            tiny_http::Response::from_string("not found: the agent serves GET /metrics\n")
                .with_status_code(404)
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!("metrics scrape: {e}");
        }
    }
}

/// The text exposition of a snapshot, with the process's CPU and memory.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(2048);
    let counters: [(&str, &str, u64); 27] = [
        (
            "samples_total",
            "Samples read from the perf ring buffers.",
            s.samples,
        ),
        (
            "samples_skipped_total",
            "Samples of processes the targets exclude.",
            s.samples_skipped,
        ),
        (
            "samples_lost_total",
            "Samples the kernel reported lost (ring buffer full).",
            s.samples_lost,
        ),
        (
            "python_stacks_total",
            "Samples of Python threads with their Python frames spliced in.",
            s.python_stacks,
        ),
        (
            "python_stacks_unread_total",
            "Samples of Python threads whose Python frames were not copied.",
            s.python_unread,
        ),
        (
            "python_stacks_partial_total",
            "Python stacks whose frame chain was cut or unreadable part way.",
            s.python_partial,
        ),
        (
            "python_stacks_misaligned_total",
            "Python stacks whose runs and evaluation-loop calls did not pair one to one.",
            s.python_misaligned,
        ),
        (
            "unwind_truncated_total",
            "User stacks that did not unwind to the thread's entry.",
            s.stacks_truncated,
        ),
        (
            "stacks_beyond_copy_total",
            "User stacks whose copy ended before the thread's entry.",
            s.stacks_copy_ended,
        ),
        (
            "stacks_completed_live_total",
            "Of those, completed from the thread's live stack (before confirmation).",
            s.stacks_live_completed,
        ),
        (
            "stacks_completed_chain_total",
            "Of those, completed from the thread's earlier unwind (before confirmation).",
            s.stacks_chain_completed,
        ),
        (
            "stacks_completed_sampled_total",
            "Of those, completed from the stack words read with the sample.",
            s.stacks_sampled_completed,
        ),
        (
            "stacks_refused_total",
            "Of those, left truncated: the live stack had changed or failed a check.",
            s.stacks_live_refused,
        ),
        (
            "stacks_over_budget_total",
            "Of those, left truncated: the live-stack read budget was spent.",
            s.stacks_over_budget,
        ),
        (
            "stacks_confirmed_total",
            "Completed stacks a later sample of the thread confirmed.",
            s.stacks_confirmed,
        ),
        (
            "stacks_unconfirmed_total",
            "Completed stacks nothing confirmed, cut back to their copy.",
            s.stacks_unconfirmed,
        ),
        (
            "live_stack_bytes_total",
            "Bytes read from threads' live stacks.",
            s.live_stack_bytes,
        ),
        (
            "stacks_folded_total",
            "Samples folded into the stack-table-full marker.",
            s.stacks_folded,
        ),
        (
            "records_malformed_total",
            "Perf records that could not be parsed.",
            s.records_malformed,
        ),
        (
            "profiles_built_total",
            "Profiles built (one per series per interval).",
            s.profiles_built,
        ),
        (
            "profiles_delivered_total",
            "Profiles the server accepted.",
            s.profiles_delivered,
        ),
        (
            "profiles_rejected_total",
            "Profiles the server refused with a 4xx.",
            s.profiles_rejected,
        ),
        (
            "profiles_dropped_total",
            "Profiles dropped because the send buffer was full.",
            s.profiles_dropped,
        ),
        (
            "dropped_bytes_total",
            "Bytes of the dropped profiles.",
            s.bytes_dropped,
        ),
        (
            "send_retries_total",
            "Delivery attempts that failed and were retried.",
            s.send_retries,
        ),
        (
            "cache_resets_total",
            "Symbol caches dropped to stay under the memory budget.",
            s.cache_resets,
        ),
        (
            "cpu_over_budget_total",
            "Intervals after start-up in which the agent used more CPU than its budget.",
            s.cpu_over_budget,
        ),
    ];
    for (name, help, v) in counters {
        metric(&mut out, name, help, "counter", v as f64);
    }
    metric(
        &mut out,
        "buffer_profiles",
        "Profiles waiting in the send buffer.",
        "gauge",
        s.buffer_profiles as f64,
    );
    metric(
        &mut out,
        "buffer_bytes",
        "Bytes waiting in the send buffer.",
        "gauge",
        s.buffer_bytes as f64,
    );
    if let Some(cpu) = own_cpu_time() {
        metric(
            &mut out,
            "cpu_seconds_total",
            "CPU time the agent used.",
            "counter",
            cpu.as_secs_f64(),
        );
    }
    if let Some(rss) = own_rss_bytes() {
        metric(
            &mut out,
            "resident_memory_bytes",
            "The agent's resident memory.",
            "gauge",
            rss as f64,
        );
    }
    out
}

fn metric(out: &mut String, name: &str, help: &str, kind: &str, value: f64) {
    let _ = writeln!(out, "# HELP firewatch_agent_{name} {help}");
    let _ = writeln!(out, "# TYPE firewatch_agent_{name} {kind}");
    let _ = writeln!(out, "firewatch_agent_{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_counters() {
        let metrics = Arc::new(Metrics::default());
        Metrics::add(&metrics.samples, 7);
        let server =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&metrics)).unwrap();
        let body = ureq::get(&format!("http://{}/metrics", server.addr()))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        assert!(
            body.contains(
                "# TYPE firewatch_agent_samples_total counter\nfirewatch_agent_samples_total 7\n"
            ),
            "{body}"
        );
        assert!(body.contains("firewatch_agent_resident_memory_bytes "));
        let missing = ureq::get(&format!("http://{}/other", server.addr())).call();
        assert!(missing.is_err());
    }
}
