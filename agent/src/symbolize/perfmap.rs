//! Names for JIT code from perf maps: `/tmp/perf-PID.map`, which V8
//! (`--perf-basic-prof`), CPython 3.12 (`-X perf`), Java's perf-map-agent
//! and others append to as they compile, one `START SIZE name` line (hex)
//! per piece of code.
//!
//! A process in a container writes the file in its own `/tmp`, named with
//! its own pid: it is read as `/proc/PID/root/tmp/perf-NSPID.map`, where
//! `NSPID` is the pid in the process's innermost pid namespace, falling
//! back to the host's `/tmp/perf-PID.map`.
//!
//! Each map is read once, then only from where the last read ended, when an
//! address is not found (at most once per window: a map grows while the
//! process runs). Where code was moved or replaced the newest line wins:
//! it clips the older ranges it overlaps. Bounded: [`MAX_MAP_BYTES`] read
//! per file, [`MAX_ENTRIES`] ranges per process, lines of at most
//! [`MAX_LINE`] bytes (longer ones are skipped).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use hashbrown::HashMap;

/// Bytes read from one perf map, at most; the rest is ignored.
pub const MAX_MAP_BYTES: u64 = 256 << 20;
/// Ranges kept per process, at most; later lines are ignored.
pub const MAX_ENTRIES: usize = 1 << 18;
/// Longest line read; longer ones are skipped.
pub const MAX_LINE: usize = 4096;
/// Windows a process's map is kept after its last lookup.
const IDLE_WINDOWS: u64 = 6;

/// One process's perf map, as read so far.
#[derive(Default)]
struct PerfMap {
    file: Option<File>,
    /// Bytes consumed (through the last complete line).
    offset: u64,
    /// Start -> (end, name); ranges do not overlap.
    ranges: BTreeMap<u64, (u64, Arc<str>)>,
    /// The window of the last read and of the last lookup.
    read_in: u64,
    used_in: u64,
}

/// The perf maps of every process that needed one.
#[derive(Default)]
pub struct PerfMaps {
    by_pid: HashMap<u32, PerfMap>,
    window: u64,
}

impl PerfMaps {
    /// Starts a window: maps of processes no recent window looked up are
    /// dropped.
    pub fn next_window(&mut self) {
        self.window += 1;
        let window = self.window;
        self.by_pid.retain(|_, m| m.used_in + IDLE_WINDOWS > window);
    }

    /// The name of the code at `addr` in process `pid`, reading more of its
    /// map when the address is not yet in it.
    pub fn lookup(&mut self, pid: u32, addr: u64) -> Option<Arc<str>> {
        let window = self.window;
        let map = self.by_pid.entry(pid).or_insert_with(|| PerfMap {
            file: open_map(pid),
            read_in: 0,
            ..PerfMap::default()
        });
        map.used_in = window;
        if let Some(name) = map.find(addr) {
            return Some(name);
        }
        if map.read_in == window {
            return None;
        }
        map.read_in = window;
        map.read_more();
        map.find(addr)
    }
}

impl PerfMap {
    fn find(&self, addr: u64) -> Option<Arc<str>> {
        let (_, (end, name)) = self.ranges.range(..=addr).next_back()?;
        (addr < *end).then(|| Arc::clone(name))
    }

    fn read_more(&mut self) {
        let Some(file) = &mut self.file else {
            return;
        };
        let room = MAX_MAP_BYTES.saturating_sub(self.offset);
        if room == 0 || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut bytes = Vec::new();
        if let Err(e) = file.take(room).read_to_end(&mut bytes) {
            tracing::debug!(error = %e, "perf map read failed");
            return;
        }
        // Only complete lines: the writer may be mid-line.
        let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        self.offset += last_newline as u64 + 1;
        for line in bytes[..last_newline].split(|&b| b == b'\n') {
            if line.len() > MAX_LINE {
                continue;
            }
            if let Some((start, size, name)) = parse_line(line) {
                self.insert(start, start.saturating_add(size), name);
            }
        }
    }

    /// Adds `[start, end)`, clipping the older ranges it overlaps.
    fn insert(&mut self, start: u64, end: u64, name: &str) {
        if start >= end || self.ranges.len() >= MAX_ENTRIES {
            return;
        }
        let overlapping: Vec<u64> = self
            .ranges
            .range(..end)
            .rev()
            .take_while(|(_, (e, _))| *e > start)
            .map(|(s, _)| *s)
            .collect();
        for s in overlapping {
            let Some((e, old)) = self.ranges.remove(&s) else {
                continue;
            };
            if s < start {
                self.ranges.insert(s, (start, Arc::clone(&old)));
            }
            if e > end {
                self.ranges.insert(end, (e, old));
            }
        }
        self.ranges.insert(start, (end, Arc::from(name)));
    }
}

/// `START SIZE name`, hex numbers with or without `0x`.
fn parse_line(line: &[u8]) -> Option<(u64, u64, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.splitn(3, ' ');
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let start = hex(parts.next()?)?;
    let size = hex(parts.next()?)?;
    let name = parts.next()?.trim();
    (!name.is_empty()).then_some((start, size, name))
}

/// The process's map as it sees `/tmp`, else the host's.
fn open_map(pid: u32) -> Option<File> {
    let nspid = ns_pid(pid).unwrap_or(pid);
    File::open(format!("/proc/{pid}/root/tmp/perf-{nspid}.map"))
        .or_else(|_| File::open(format!("/tmp/perf-{pid}.map")))
        .ok()
}

/// The pid of `pid` in its innermost pid namespace (`NSpid:` in its status).
fn ns_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn map_of(lines: &[(u64, u64, &str)]) -> PerfMap {
        let mut m = PerfMap::default();
        for &(s, n, name) in lines {
            m.insert(s, s + n, name);
        }
        m
    }

    #[test]
    fn lines_parse_with_or_without_prefix() {
        assert_eq!(
            parse_line(b"7fab71fc6b80 1e0 JS:*spinWork"),
            Some((0x7fab71fc6b80, 0x1e0, "JS:*spinWork"))
        );
        assert_eq!(
            parse_line(b"0x10 0x20 py::f:/x.py"),
            Some((0x10, 0x20, "py::f:/x.py"))
        );
        assert_eq!(parse_line(b"zz 10 x"), None);
        assert_eq!(parse_line(b"10 10"), None);
    }

    #[test]
    fn the_newest_line_wins_where_code_moved() {
        let m = map_of(&[(0x100, 0x100, "old"), (0x140, 0x20, "new")]);
        let name = |a| m.find(a).map(|n| n.to_string());
        assert_eq!(name(0x100).as_deref(), Some("old"));
        assert_eq!(name(0x145).as_deref(), Some("new"));
        assert_eq!(name(0x160).as_deref(), Some("old"));
        assert_eq!(name(0x1ff).as_deref(), Some("old"));
        assert_eq!(name(0x200), None);
        let m = map_of(&[(0x100, 0x10, "a"), (0x110, 0x10, "b"), (0x0f0, 0x40, "c")]);
        assert_eq!(m.find(0x115).as_deref(), Some("c"));
        assert_eq!(m.ranges.len(), 1);
    }

    #[test]
    fn reads_only_what_was_appended_and_only_whole_lines() {
        let dir = std::env::temp_dir().join(format!("fw-perfmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("perf.map");
        let mut w = File::create(&path).unwrap();
        write!(w, "1000 10 first\n2000 10 sec").unwrap();
        let mut m = PerfMap {
            file: Some(File::open(&path).unwrap()),
            ..PerfMap::default()
        };
        m.read_more();
        assert_eq!(m.find(0x1005).as_deref(), Some("first"));
        assert_eq!(m.find(0x2005), None);
        write!(w, "ond\n1000 10 replaced\n").unwrap();
        m.read_more();
        assert_eq!(m.find(0x2005).as_deref(), Some("second"));
        assert_eq!(m.find(0x1005).as_deref(), Some("replaced"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
