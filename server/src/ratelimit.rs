//! Ingest rate limits per tenant, in bytes per second of request bodies
//! as received (compressed), with a token bucket per tenant: a tenant may
//! send `burst` bytes at once and `rate` bytes per second on average.
//!
//! Buckets live in this server's memory: behind a load balancer spreading
//! a tenant over N servers, the tenant may send N times the rate.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::ApiError;

/// A rate and its burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rate {
    /// Bytes per second, on average.
    pub bytes_per_second: u64,
    /// Bytes at once (the bucket's size).
    pub burst_bytes: u64,
}

/// The limits in force: one for every tenant, and overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RateLimits {
    /// For tenants without an override; `None`: unlimited.
    pub default: Option<Rate>,
    /// Per tenant; `None`: unlimited for that tenant.
    pub tenants: BTreeMap<String, Option<Rate>>,
}

impl RateLimits {
    /// The limit of a tenant.
    pub fn of(&self, tenant: &str) -> Option<Rate> {
        match self.tenants.get(tenant) {
            Some(rate) => *rate,
            None => self.default,
        }
    }

    /// Whether any tenant is limited.
    pub fn is_enabled(&self) -> bool {
        self.default.is_some() || self.tenants.values().any(Option::is_some)
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets kept before full (idle) ones are dropped: without
/// authentication, any client may name any number of tenants.
const MAX_BUCKETS: usize = 10_000;

/// The token buckets of every tenant.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<BTreeMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: Mutex::new(BTreeMap::new()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Takes `bytes` from the tenant's bucket, or says how long to wait.
    /// A request larger than the burst can never pass: 413.
    pub fn admit(&self, tenant: &str, bytes: u64, now: Instant) -> Result<(), ApiError> {
        let Some(rate) = self.limits.of(tenant) else {
            return Ok(());
        };
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| ApiError::Internal("rate limiter state is poisoned".into()))?;
        if bytes > rate.burst_bytes {
            return Err(ApiError::TooLarge(format!(
                "request of {bytes} bytes exceeds tenant {tenant:?}'s ingest burst of {} bytes \
                 (ingest_burst_bytes)",
                rate.burst_bytes
            )));
        }
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(tenant) {
            buckets.retain(|_, b| refill(*b, rate, now) < rate.burst_bytes as f64);
        }
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: rate.burst_bytes as f64,
            at: now,
        });
        let tokens = refill(*bucket, rate, now);
        let wanted = bytes as f64;
        if tokens >= wanted {
            *bucket = Bucket {
                tokens: tokens - wanted,
                at: now,
            };
            return Ok(());
        }
        *bucket = Bucket { tokens, at: now };
        let wait = Duration::from_secs_f64((wanted - tokens) / rate.bytes_per_second.max(1) as f64);
        let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(ApiError::RateLimited {
            message: format!(
                "tenant {tenant:?} is over its ingest rate limit of {} bytes/s \
                 (ingest_rate_bytes_per_second, burst {} bytes): retry in {retry_after_secs} s",
                rate.bytes_per_second, rate.burst_bytes
            ),
            retry_after_secs,
        })
    }
}

fn refill(bucket: Bucket, rate: Rate, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * rate.bytes_per_second as f64).min(rate.burst_bytes as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        let rate = Rate {
            bytes_per_second: 100,
            burst_bytes: 300,
        };
        RateLimiter::new(RateLimits {
            default: Some(rate),
            tenants: [("free".to_owned(), None)].into_iter().collect(),
        })
    }

    #[test]
    fn bucket_fills_at_the_rate() {
        let l = limiter();
        let t0 = Instant::now();
        l.admit("a", 300, t0).unwrap();
        let e = l.admit("a", 150, t0).unwrap_err();
        assert_eq!(e.status(), 429);
        let ApiError::RateLimited {
            retry_after_secs, ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(retry_after_secs, 2);
        assert!(l.admit("a", 150, t0 + Duration::from_millis(1400)).is_err());
        l.admit("a", 150, t0 + Duration::from_millis(1600)).unwrap();
        // Other tenants have their own bucket; "free" is not limited.
        l.admit("b", 300, t0).unwrap();
        l.admit("free", 1 << 30, t0).unwrap();
        assert_eq!(l.admit("a", 301, t0).unwrap_err().status(), 413);
    }
}
