//! The end of a window: the samples handed over with what names them
//! (modules, series, threads, Python frames), and the housekeeping that
//! waits until a window's samples are all read.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hashbrown::{HashMap, HashSet};

use super::modules::ModuleInfo;
use super::{MAX_CONFIRM_WAIT, MODULE_GC_THRESHOLD, State, new_aggregate};
use crate::aggregate::{Aggregate, MARKER};
use crate::labels::Labels;
use crate::metrics::Metrics;
use crate::python::PYTHON;
use crate::symbolize::Resolved;

/// One upload interval's samples and what is needed to name them.
pub struct Window {
    /// Start, in nanoseconds since the Unix epoch.
    pub start_ns: i64,
    /// Length in nanoseconds.
    pub duration_ns: i64,
    /// Nominal sampling period (1e9 / frequency), in nanoseconds.
    pub period_ns: i64,
    /// Allocation calls per allocation sample.
    pub alloc_period: i64,
    /// The samples.
    pub agg: Aggregate,
    /// Every module the stacks refer to.
    pub modules: HashMap<u32, Arc<ModuleInfo>>,
    /// Every series the samples belong to.
    pub series: HashMap<u32, Arc<Labels>>,
    /// Every thread name the samples carry.
    pub threads: HashMap<u32, Arc<str>>,
    /// The names of the Python frames the stacks hold.
    pub python: HashMap<u64, Arc<Resolved>>,
}

impl State {
    pub(super) fn cut_window(&mut self) -> Window {
        // Samples still waiting for a later sample of their thread stay for
        // the next window, unless they have waited too long or sampling
        // has stopped.
        let read_before = match self.stopped {
            true => u64::MAX,
            false => crate::sys::monotonic_ns().saturating_sub(MAX_CONFIRM_WAIT.as_nanos() as u64),
        };
        self.unwinding
            .give_up(&mut self.agg, None, read_before, &self.metrics);
        let now = SystemTime::now();
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| new_aggregate(self.max_frames));
        let agg = std::mem::replace(&mut self.agg, next);
        Metrics::add(&self.metrics.stacks_folded, agg.folded());

        let mut modules = HashMap::new();
        for f in agg.all_frames() {
            if f.module < MARKER
                && !modules.contains_key(&f.module)
                && let Some(info) = self.modules.info(f.module)
            {
                modules.insert(f.module, Arc::clone(info));
            }
        }
        let mut python = HashMap::new();
        if let Some(py) = &mut self.python {
            for f in agg.all_frames().iter().filter(|f| f.module == PYTHON) {
                if let Some(r) = py.resolved(f.addr) {
                    python.entry(f.addr).or_insert_with(|| Arc::clone(r));
                }
            }
            py.expire(crate::sys::monotonic_ns());
        }
        if let Some(w) = &mut self.unwinding.words {
            w.expire(crate::sys::monotonic_ns());
        }
        let mut series = HashMap::new();
        let mut threads = HashMap::new();
        for (key, _) in agg.iter() {
            if let Some(labels) = self.series.get(key.series) {
                series
                    .entry(key.series)
                    .or_insert_with(|| Arc::clone(labels));
            }
            threads
                .entry(key.thread)
                .or_insert_with(|| self.threads.name(key.thread));
        }

        // Housekeeping, now that this window's samples are all read.
        self.procs.retain(|_, p| !p.exited);
        for tid in self.exited_threads.drain(..) {
            self.threads.remove(tid);
        }
        if self.modules.len() > MODULE_GC_THRESHOLD {
            let live: HashSet<u32> = self
                .procs
                .values()
                .flat_map(|p| p.mappings.iter().map(|m| m.module))
                .collect();
            self.modules.retain(&live);
            self.alloc.fns.retain(|module, _| live.contains(module));
        }

        let start = self.window_start;
        self.window_start = now;
        let nanos = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        };
        let duration = now.duration_since(start).unwrap_or_default();
        Window {
            start_ns: nanos(start),
            duration_ns: i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX),
            period_ns: self.period_ns as i64,
            alloc_period: i64::try_from(self.alloc.every).unwrap_or(i64::MAX),
            agg,
            modules,
            series,
            threads,
            python,
        }
    }
}
