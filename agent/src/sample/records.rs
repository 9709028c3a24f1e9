//! Ring records into the sampler's state: samples to the CPU or the
//! allocation path, and `MMAP2`, `COMM`, `FORK`, `EXIT` into the tables of
//! processes, mappings, threads and probed processes, for every process
//! profiled or probed (records of other processes are dropped).

use super::alloc::ALLOC_LAYOUT;
use super::procs::{self, Mapping, Process};
use super::record::{self, Record};
use super::{Source, State};
use crate::metrics::Metrics;

impl State {
    /// Counts and drops a sample of a process known not to be profiled,
    /// from the first part of its record, before anything else is read.
    pub(super) fn skip_excluded(&self, ty: u32, first_part: &[u8]) -> bool {
        let Some(pid) = record::sample_pid(first_part).filter(|_| ty == record::kind::SAMPLE)
        else {
            return false;
        };
        let excluded = self.labeler.wanted_by_pid(pid) == Some(false)
            || self
                .procs
                .get(&pid)
                .is_some_and(|p| p.wanted == Some(false));
        if excluded {
            Metrics::add(&self.metrics.samples, 1);
            Metrics::add(&self.metrics.samples_skipped, 1);
        }
        excluded
    }

    /// True for a process neither profiled nor probed: its records are not
    /// tracked.
    fn ignored(&self, pid: u32) -> bool {
        self.labeler.wanted_by_pid(pid) == Some(false) && !self.alloc.pids.contains(&pid)
    }

    pub(super) fn handle(&mut self, ty: u32, misc: u16, body: &[u8], source: Source) {
        let layout = match source {
            Source::Cpu => &self.layout,
            Source::Alloc => &ALLOC_LAYOUT,
        };
        match record::parse(ty, misc, body, layout) {
            None => Metrics::add(&self.metrics.records_malformed, 1),
            Some(Record::Sample(s)) => match source {
                Source::Cpu => self.on_sample(&s),
                Source::Alloc => self.on_alloc_sample(&s),
            },
            Some(Record::Mmap2(m)) => {
                if m.prot & libc::PROT_EXEC as u32 == 0 || self.ignored(m.pid) {
                    return;
                }
                let path = String::from_utf8_lossy(m.filename);
                let end = m.start.saturating_add(m.len);
                let module = procs::mapping_module(
                    m.pid,
                    m.start,
                    end,
                    &path,
                    || m.inode,
                    &mut self.modules,
                );
                if let Some(py) = &mut self.python
                    && path.contains("python")
                    && py.known_other(m.pid)
                {
                    // An interpreter mapped after the process was looked at.
                    py.forget_process(m.pid);
                }
                if let Some(module) = module {
                    let mapping = Mapping {
                        start: m.start,
                        end,
                        pgoff: m.pgoff,
                        module,
                    };
                    let p = self.procs.entry(m.pid).or_default();
                    p.add_mapping(mapping, &mut self.modules);
                }
            }
            Some(Record::Comm {
                pid,
                tid,
                name,
                exec,
            }) => {
                if self.ignored(pid) {
                    return;
                }
                let name = String::from_utf8_lossy(name);
                self.threads.set(tid, &name);
                if pid == tid || exec {
                    let p = self.procs.entry(pid).or_default();
                    if exec {
                        p.reset_for_exec();
                        if let Some(py) = &mut self.python {
                            py.forget_process(pid);
                        }
                        // The exec removed its probes.
                        if self.alloc.pids.contains(&pid) {
                            self.alloc.ended.push(pid);
                        }
                    }
                    p.comm = name.into_owned();
                }
            }
            Some(Record::Fork {
                pid,
                ppid,
                tid,
                ptid,
            }) => {
                if self.ignored(pid) {
                    return;
                }
                self.threads.inherit(tid, ptid);
                if pid == ppid && self.alloc.pids.contains(&pid) {
                    // A new thread of a probed process: probes are not
                    // inherited.
                    self.alloc.new_threads.push((pid, tid));
                }
                if pid != ppid {
                    let child = match self.procs.get(&ppid) {
                        Some(parent) => Process {
                            mappings: parent.mappings.clone(),
                            series: parent.series,
                            wanted: parent.wanted,
                            comm: parent.comm.clone(),
                            ..Process::default()
                        },
                        None => self.load_process(pid),
                    };
                    self.procs.insert(pid, child);
                }
            }
            Some(Record::Exit { pid, tid }) => {
                if self.ignored(pid) {
                    return;
                }
                self.exited_threads.push(tid);
                if let Some(py) = &mut self.python {
                    match pid == tid {
                        true => py.forget_process(pid),
                        false => py.thread_exited(pid, tid),
                    }
                }
                self.unwinding
                    .give_up(&mut self.agg, Some(tid), u64::MAX, &self.metrics);
                self.unwinding.thread_exited(tid);
                if self.alloc.pids.contains(&pid) {
                    match pid == tid {
                        true => self.alloc.ended.push(pid),
                        false => self.alloc.gone_threads.push((pid, tid)),
                    }
                }
                if pid == tid
                    && let Some(p) = self.procs.get_mut(&pid)
                {
                    p.exited = true;
                }
            }
            Some(Record::Lost(n)) => {
                Metrics::add(&self.metrics.samples_lost, n);
                self.alloc.records_lost |= source == Source::Cpu && !self.alloc.pids.is_empty();
            }
            Some(Record::Other) => {}
        }
    }
}
