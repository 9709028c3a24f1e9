//! Shipping profiles: encoding for the server's protocol, the bounded
//! buffer, and the sender thread with retries.
//!
//! Profiles are delivered in order, oldest first. A connection error, 408,
//! 429 or 5xx is retried with exponential backoff and jitter (honouring
//! `Retry-After`), holding back the profiles behind it so order is kept; a
//! 4xx is final for that profile only. While the server is away the buffer
//! keeps profiles up to its byte bound and drops the oldest past it,
//! counting each drop.

pub mod buffer;
pub mod http;
pub mod pyroscope;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use firewatch_profile::pprof::{encode, proto};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::labels::Labels;
use crate::metrics::Metrics;
use buffer::Buffer;
use http::{Client, Outcome};

/// The server's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Firewatch's `POST /api/v1/ingest` (zstd pprof, labels in the query).
    Native,
    /// Pyroscope's `POST /push.v1.PusherService/Push` (gzip pprof in a `PushRequest`).
    Pyroscope,
}

/// What the shipper needs.
#[derive(Clone, Debug)]
pub struct ShipConfig {
    /// Base URL.
    pub server: String,
    /// Protocol.
    pub protocol: Protocol,
    /// `X-Scope-OrgID`.
    pub tenant: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
    /// CA certificates to trust.
    pub tls_ca_file: Option<PathBuf>,
    /// Buffer bound in bytes.
    pub buffer_bytes: usize,
    /// First retry delay.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl ShipConfig {
    /// The shipping part of the agent's configuration (reads the token file).
    pub fn from_config(c: &Config) -> Result<ShipConfig> {
        Ok(ShipConfig {
            server: c.server.clone(),
            protocol: if c.pyroscope {
                Protocol::Pyroscope
            } else {
                Protocol::Native
            },
            tenant: c.tenant.clone(),
            token: c.bearer_token()?,
            tls_ca_file: c.tls_ca_file.clone(),
            buffer_bytes: c.buffer_bytes,
            retry_min: c.retry_min,
            retry_max: c.retry_max,
            request_timeout: c.request_timeout,
        })
    }
}

/// A request body ready to send, with its series labels.
#[derive(Clone, Debug)]
pub struct Payload {
    /// Series labels.
    pub labels: Arc<Labels>,
    /// The body, compressed and wrapped for the protocol.
    pub body: Vec<u8>,
    /// Start of the profiled window (for logs and dump file names).
    pub time_nanos: i64,
}

/// Encodes a profile for a protocol: zstd pprof (native) or a `PushRequest`
/// holding a gzip pprof (Pyroscope).
pub fn encode_payload(
    labels: Arc<Labels>,
    profile: &proto::Profile,
    protocol: Protocol,
) -> Result<Payload> {
    let raw = encode(profile);
    let body = match protocol {
        Protocol::Native => firewatch_profile::zstd(&raw, 3)?,
        Protocol::Pyroscope => pyroscope::push_request(
            &labels,
            pyroscope::profile_name(profile),
            firewatch_profile::gzip(&raw),
        ),
    };
    Ok(Payload {
        labels,
        body,
        time_nanos: profile.time_nanos,
    })
}

/// The sender thread and its buffer.
pub struct Shipper {
    buffer: Arc<Buffer>,
    thread: Option<JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl Shipper {
    /// Starts the sender thread.
    pub fn start(config: ShipConfig, metrics: Arc<Metrics>) -> Result<Shipper> {
        let client = Client::new(&config)?;
        let buffer = Arc::new(Buffer::new(config.buffer_bytes));
        let thread = {
            let (buffer, metrics) = (Arc::clone(&buffer), Arc::clone(&metrics));
            std::thread::Builder::new()
                .name("fw-ship".into())
                .spawn(move || {
                    crate::embed::alloc::exclude_current_thread();
                    let _own = crate::metrics::own_thread();
                    send_loop(&client, &buffer, &metrics, &config)
                })
                .map_err(|source| Error::Thread {
                    name: "shipper",
                    source,
                })?
        };
        Ok(Shipper {
            buffer,
            thread: Some(thread),
            metrics,
        })
    }

    /// Queues a payload, dropping the oldest ones if the buffer is full.
    pub fn submit(&self, payload: Payload) {
        let dropped = self.buffer.push(payload);
        record_pending(&self.buffer, &self.metrics);
        if dropped.profiles > 0 {
            Metrics::add(&self.metrics.profiles_dropped, dropped.profiles);
            Metrics::add(&self.metrics.bytes_dropped, dropped.bytes);
            tracing::warn!(
                profiles = dropped.profiles,
                bytes = dropped.bytes,
                "shipping buffer full: dropped the oldest profiles"
            );
        }
    }

    /// Payloads and bytes waiting (not counting the one being sent).
    pub fn pending(&self) -> (usize, usize) {
        self.buffer.pending()
    }

    /// Delivers what is queued for at most `grace`, then stops; returns the
    /// number of payloads left undelivered.
    pub fn close(mut self, grace: Duration) -> usize {
        self.buffer.close();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (left, _) = self.buffer.pending();
        let in_flight = self.thread.as_ref().is_some_and(|t| !t.is_finished());
        self.buffer.abandon();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        left + usize::from(in_flight)
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.buffer.abandon();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn record_pending(buffer: &Buffer, metrics: &Metrics) {
    let (profiles, bytes) = buffer.pending();
    metrics
        .buffer_profiles
        .store(profiles as u64, std::sync::atomic::Ordering::Relaxed);
    metrics
        .buffer_bytes
        .store(bytes as u64, std::sync::atomic::Ordering::Relaxed);
}

fn send_loop(client: &Client, buffer: &Buffer, metrics: &Metrics, config: &ShipConfig) {
    let mut rng = Jitter::new();
    while let Some(payload) = buffer.pop() {
        record_pending(buffer, metrics);
        let mut attempt: u32 = 0;
        loop {
            match client.send(&payload) {
                Outcome::Delivered => {
                    Metrics::add(&metrics.profiles_delivered, 1);
                    break;
                }
                Outcome::Rejected { status, message } => {
                    Metrics::add(&metrics.profiles_rejected, 1);
                    tracing::warn!(status, %message, "the server refused a profile; skipping it");
                    break;
                }
                Outcome::Retry { after, reason } => {
                    Metrics::add(&metrics.send_retries, 1);
                    let delay = after
                        .unwrap_or_else(|| {
                            backoff(config.retry_min, config.retry_max, attempt, &mut rng)
                        })
                        .min(config.retry_max);
                    attempt = attempt.saturating_add(1);
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::warn!(%reason, attempt, retry_in = ?delay, "cannot deliver a profile; will retry");
                    }
                    if !buffer.sleep(delay) {
                        return;
                    }
                }
            }
        }
    }
}

/// Exponential backoff with jitter: `min * 2^attempt`, capped at `max`, then
/// a uniformly random point in its upper half.
pub fn backoff(min: Duration, max: Duration, attempt: u32, rng: &mut Jitter) -> Duration {
    let base = min.saturating_mul(1u32 << attempt.min(20)).min(max);
    base.mul_f64(0.5 + 0.5 * rng.next_unit())
}

/// A small xorshift generator for jitter (no need for quality or secrecy).
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and the process id.
    pub fn new() -> Jitter {
        let t = firewatch_syntax::now_ns() as u64;
        Jitter((t ^ u64::from(std::process::id()).rotate_left(32)) | 1)
    }

    /// A number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut rng = Jitter::new();
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..30 {
            let d = backoff(min, max, attempt, &mut rng);
            let base = min.saturating_mul(1 << attempt.min(20)).min(max);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
        }
    }
}
