//! CPU sampling from inside the process with a timer signal (pprof-rs),
//! for where `perf_event_open` is refused (a default Docker seccomp
//! profile, `perf_event_paranoid` 3).
//!
//! pprof-rs's handler is built with its framehop unwinder, which does not
//! allocate in the handler, and system libraries whose code may hold locks
//! the handler would need (libc, libgcc, libpthread, the vDSO) are on its
//! blocklist: a sample landing there keeps no stack rather than risking a
//! deadlock. Profiles are cut by restarting the sampler, since pprof-rs
//! only accumulates.

use firewatch_syntax::now_ns;

use firewatch_profile::{Profile, SampleType};
use pprof::{ProfilerGuard, ProfilerGuardBuilder};

use crate::error::{Error, Result};

const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso", "ld-linux"];

/// A running in-process sampler.
pub(crate) struct SignalSampler {
    guard: Option<ProfilerGuard<'static>>,
    frequency: u32,
    started_ns: i64,
}

fn start_guard(frequency: u32) -> Result<ProfilerGuard<'static>> {
    ProfilerGuardBuilder::default()
        .frequency(i32::try_from(frequency).unwrap_or(99))
        .blocklist(BLOCKLIST)
        .build()
        .map_err(|e| Error::SignalSampling(e.to_string()))
}

impl SignalSampler {
    /// Starts sampling every thread of this process at `frequency` Hz of CPU time.
    pub(crate) fn start(frequency: u32) -> Result<SignalSampler> {
        Ok(SignalSampler {
            guard: Some(start_guard(frequency)?),
            frequency,
            started_ns: now_ns(),
        })
    }

    /// The profile since the previous cut (or the start), restarting the
    /// sampler for the next one; `None` when nothing was sampled.
    pub(crate) fn cut(&mut self) -> Result<Option<Profile>> {
        let Some(guard) = self.guard.take() else {
            return Ok(None);
        };
        let report = guard.report().build();
        drop(guard);
        let start = self.started_ns;
        self.started_ns = now_ns();
        self.guard = Some(start_guard(self.frequency)?);
        let report = report.map_err(|e| Error::SignalSampling(e.to_string()))?;
        let period_ns = 1_000_000_000 / i64::from(self.frequency.max(1));
        let mut p = Profile::new(vec![
            SampleType::new("samples", "count"),
            SampleType::new("cpu", "nanoseconds"),
        ]);
        p.time_nanos = start;
        p.duration_nanos = self.started_ns - start;
        p.period_type = Some(SampleType::new("cpu", "nanoseconds"));
        p.period = period_ns;
        let mut stack = Vec::new();
        for (frames, &count) in &report.data {
            if count <= 0 {
                continue;
            }
            stack.clear();
            // Innermost frame first, and within a frame the inlined-most
            // function first: reversed below into root-first order.
            for frame in &frames.frames {
                for sym in frame {
                    let name = strip_hash(sym.name());
                    let file = sym.filename().into_owned();
                    stack.push(p.intern_function(&name, &file, sym.lineno.unwrap_or(0)));
                }
            }
            if stack.is_empty() {
                stack.push(p.intern_function("[unknown]", "", 0));
            }
            stack.reverse();
            let count = count as i64;
            p.add_sample(&stack, &[count, count.saturating_mul(period_ns)]);
        }
        Ok(if p.is_empty() { None } else { Some(p) })
    }
}

// Legacy Rust mangling leaves `::h0123456789abcdef` on every name.
fn strip_hash(name: String) -> String {
    match name.rfind("::h") {
        Some(i) if name.len() - i == 19 && name[i + 3..].bytes().all(|b| b.is_ascii_hexdigit()) => {
            name[..i].to_owned()
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_hash;

    #[test]
    fn hashes_are_stripped() {
        assert_eq!(strip_hash("a::b::h0123456789abcdef".into()), "a::b");
        assert_eq!(strip_hash("a::hello".into()), "a::hello");
    }
}
