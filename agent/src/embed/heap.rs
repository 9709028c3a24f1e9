//! Heap snapshots ([`super::alloc::snapshot`]) as profiles with the four
//! memory sample types Go and Pyroscope use: `alloc_objects`/`alloc_space`
//! (estimated allocations during the interval) and `inuse_objects`/
//! `inuse_space` (estimated live at its end).
//!
//! Return addresses are symbolized in this process with blazesym (names,
//! file:line, inlined functions), cached per address: a service's
//! allocation sites are few and stable.

use std::sync::Arc;

use blazesym::Pid;
use blazesym::symbolize::source::{Process, Source};
use blazesym::symbolize::{Input, Symbolizer};
use firewatch_profile::{Profile, SampleType};
use hashbrown::HashMap;

use super::alloc::HeapSnapshot;
use crate::symbolize::{Line, lines_of};

/// Function names of the allocator itself, dropped from the innermost end
/// of every stack: the profile starts at the code that asked for memory.
const ALLOCATOR_FRAMES: &[&str] = &[
    "backtrace::",
    "firewatch_agent::embed::alloc::",
    "<firewatch_agent::embed::alloc::",
    "__rust_alloc",
    "__rust_realloc",
    "__rust_alloc_zeroed",
    "__rdl_",
];

/// Turns heap snapshots into profiles; owns the (thread-bound) symbolizer.
pub(crate) struct HeapProfiles {
    blaze: Symbolizer,
    names: HashMap<usize, Arc<[Line]>>,
}

/// Cache bound: past it the names are dropped and looked up again.
const MAX_CACHED: usize = 1 << 18;

impl HeapProfiles {
    pub(crate) fn new() -> HeapProfiles {
        HeapProfiles {
            blaze: Symbolizer::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build(),
            names: HashMap::new(),
        }
    }

    /// The profile of one snapshot, or `None` when nothing was sampled and
    /// nothing is live.
    pub(crate) fn profile(
        &mut self,
        snap: &HeapSnapshot,
        start_ns: i64,
        duration_ns: i64,
    ) -> Option<Profile> {
        if snap.stacks.is_empty() {
            return None;
        }
        self.resolve(snap);
        let mut p = Profile::new(vec![
            SampleType::new("alloc_objects", "count"),
            SampleType::new("alloc_space", "bytes"),
            SampleType::new("inuse_objects", "count"),
            SampleType::new("inuse_space", "bytes"),
        ]);
        p.time_nanos = start_ns;
        p.duration_nanos = duration_ns;
        p.period_type = Some(SampleType::new("space", "bytes"));
        p.period = i64::try_from(super::alloc::mean_bytes()).unwrap_or(i64::MAX);
        let mut stack = Vec::new();
        for s in &snap.stacks {
            stack.clear();
            // Innermost first: frame 0 is where the walk started (inside
            // the allocator); callers' addresses are return addresses,
            // so look up the call instruction before them.
            for (i, &ip) in s.ips.iter().enumerate() {
                let addr = if i == 0 { ip } else { ip.saturating_sub(1) };
                if let Some(lines) = self.names.get(&addr) {
                    for l in lines.iter() {
                        stack.push(p.intern_function(&l.name, &l.file, l.line));
                    }
                }
            }
            let skip = stack
                .iter()
                .take_while(|&&f| {
                    let name = p.function_name(f);
                    ALLOCATOR_FRAMES.iter().any(|a| name.starts_with(a))
                })
                .count();
            let mut root_first: Vec<_> = stack[skip..].to_vec();
            root_first.reverse();
            if root_first.is_empty() {
                root_first.push(p.intern_function("[unknown]", "", 0));
            }
            let values = [
                s.alloc_objects.round() as i64,
                s.alloc_bytes.round() as i64,
                s.inuse_objects.round() as i64,
                s.inuse_bytes.round() as i64,
            ];
            p.add_sample(&root_first, &values);
        }
        p.retain_nonzero();
        Some(p)
    }

    fn resolve(&mut self, snap: &HeapSnapshot) {
        if self.names.len() > MAX_CACHED {
            self.names.clear();
        }
        let mut wanted: Vec<u64> = Vec::new();
        for s in &snap.stacks {
            for (i, &ip) in s.ips.iter().enumerate() {
                let addr = if i == 0 { ip } else { ip.saturating_sub(1) };
                if !self.names.contains_key(&addr) {
                    wanted.push(addr as u64);
                }
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return;
        }
        let src = Source::Process(Process::new(Pid::Slf));
        let found = match self.blaze.symbolize(&src, Input::AbsAddr(&wanted)) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!("cannot symbolize this process's heap stacks: {e}");
                Vec::new()
            }
        };
        let mut found = found.into_iter();
        for &addr in &wanted {
            let lines: Arc<[Line]> = match found.next().and_then(lines_of) {
                Some(lines) => lines
                    .into_iter()
                    .map(|(name, file, line)| Line {
                        name: name.into(),
                        file: file.into(),
                        line,
                    })
                    .collect(),
                None => Arc::from([Line {
                    name: format!("0x{addr:x}").into(),
                    file: "".into(),
                    line: 0,
                }]),
            };
            self.names.insert(addr as usize, lines);
        }
    }
}
