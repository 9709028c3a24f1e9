//! The bounded buffer of profiles waiting for delivery.
//!
//! First in, first out, bounded in bytes: when a new profile does not fit,
//! the oldest are dropped and every drop is counted (profiles and bytes).
//! The profile being sent is not in the buffer (the sender holds it), so
//! `delivered + rejected + dropped + pending = submitted` holds exactly.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Payload;

/// What a push had to drop to make room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Profiles dropped.
    pub profiles: u64,
    /// Their bytes.
    pub bytes: u64,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Payload>,
    bytes: usize,
    closed: bool,
    abandoned: bool,
}

/// A FIFO of payloads bounded in bytes, with a condition variable for the sender.
pub struct Buffer {
    cap: usize,
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl Buffer {
    /// An empty buffer holding at most `cap` bytes of payloads.
    pub fn new(cap: usize) -> Buffer {
        Buffer {
            cap,
            inner: Mutex::new(Inner::default()),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a payload, dropping the oldest ones until it fits. A payload
    /// larger than the whole buffer is itself dropped.
    pub fn push(&self, payload: Payload) -> Dropped {
        let mut dropped = Dropped::default();
        let len = payload.body.len();
        let mut inner = self.lock();
        if len > self.cap {
            dropped.profiles += 1;
            dropped.bytes += len as u64;
            return dropped;
        }
        while inner.bytes + len > self.cap {
            let Some(old) = inner.items.pop_front() else {
                break;
            };
            inner.bytes -= old.body.len();
            dropped.profiles += 1;
            dropped.bytes += old.body.len() as u64;
        }
        inner.bytes += len;
        inner.items.push_back(payload);
        drop(inner);
        self.cv.notify_all();
        dropped
    }

    /// The oldest payload, waiting for one; `None` once the buffer is closed
    /// and empty, or abandoned.
    pub fn pop(&self) -> Option<Payload> {
        let mut inner = self.lock();
        loop {
            if inner.abandoned {
                return None;
            }
            if let Some(p) = inner.items.pop_front() {
                inner.bytes -= p.body.len();
                return Some(p);
            }
            if inner.closed {
                return None;
            }
            inner = self.cv.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Sleeps for `delay` unless the buffer is abandoned first; returns
    /// false if it was.
    pub fn sleep(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        let mut inner = self.lock();
        loop {
            if inner.abandoned {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            inner = self
                .cv
                .wait_timeout(inner, until - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// No more pushes: the sender delivers what is left, then stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.cv.notify_all();
    }

    /// Stop now: the sender gives up on what is left.
    pub fn abandon(&self) {
        self.lock().abandoned = true;
        self.cv.notify_all();
    }

    /// Payloads and bytes waiting.
    pub fn pending(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.items.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn payload(n: usize, tag: u8) -> Payload {
        Payload {
            labels: Arc::default(),
            body: vec![tag; n],
            time_nanos: 0,
        }
    }

    #[test]
    fn oldest_are_dropped_and_counted_exactly() {
        let b = Buffer::new(100);
        assert_eq!(b.push(payload(40, 1)), Dropped::default());
        assert_eq!(b.push(payload(40, 2)), Dropped::default());
        let d = b.push(payload(40, 3));
        assert_eq!(
            d,
            Dropped {
                profiles: 1,
                bytes: 40
            }
        );
        assert_eq!(b.pending(), (2, 80));
        let d = b.push(payload(500, 4));
        assert_eq!(d.profiles, 1);
        assert_eq!(b.pop().map(|p| p.body[0]), Some(2));
        assert_eq!(b.pop().map(|p| p.body[0]), Some(3));
        b.close();
        assert!(b.pop().is_none());
    }

    #[test]
    fn abandon_wakes_a_sleeper() {
        let b = Arc::new(Buffer::new(10));
        let b2 = Arc::clone(&b);
        let t = std::thread::spawn(move || b2.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        b.abandon();
        assert_eq!(t.join().ok(), Some(false));
    }
}
