//! Uprobes on the allocation functions of a process's libc.
//!
//! A uprobe puts a breakpoint on a function's first instruction in the
//! processes whose perf events ask for it; every call then traps into the
//! kernel, which counts it and, once per sample period, writes a sample
//! (registers and a copy of the user stack) into the ring. perf-event2's
//! `UProbe` does not implement its `Event` trait, so [`Uprobe`] fills in
//! the attributes itself.

use std::ffi::CString;
use std::io;
use std::sync::Arc;

use perf_event::events::{Event, EventData};
use perf_event_open_sys::bindings::perf_event_attr;

/// Where the kernel publishes the uprobe PMU's type number.
const UPROBE_PMU_TYPE: &str = "/sys/bus/event_source/devices/uprobe/type";

/// The uprobe PMU's type number, for [`Uprobe::new`].
pub fn pmu_type() -> io::Result<u32> {
    let text = std::fs::read_to_string(UPROBE_PMU_TYPE)
        .map_err(|e| io::Error::new(e.kind(), format!("{UPROBE_PMU_TYPE}: {e}")))?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{UPROBE_PMU_TYPE} holds {text:?}, not a number"),
        )
    })
}

/// An entry uprobe on the function at a file offset of an executable file.
#[derive(Clone, Debug)]
pub struct Uprobe {
    pmu: u32,
    path: Arc<CString>,
    offset: u64,
}

impl Uprobe {
    /// A probe at `offset` of the file at `path`; `pmu` is [`pmu_type`].
    pub fn new(pmu: u32, path: Arc<CString>, offset: u64) -> Uprobe {
        Uprobe { pmu, path, offset }
    }
}

impl Event for Uprobe {
    /// Sets the attributes; `config1` points into the path, which stays
    /// valid only while another clone of it lives (the caller's, or the
    /// one `update_attrs_with_data` hands to the builder).
    fn update_attrs(self, attr: &mut perf_event_attr) {
        attr.type_ = self.pmu;
        // Bit 0 would ask for a return probe; the size is an argument, read
        // at entry.
        attr.config = 0;
        // For probes, `config1` is the path and `config2` the offset.
        attr.__bindgen_anon_3.uprobe_path = self.path.as_ptr() as u64;
        attr.__bindgen_anon_4.probe_offset = self.offset;
    }

    fn update_attrs_with_data(self, attr: &mut perf_event_attr) -> Option<Arc<dyn EventData>> {
        let path = Arc::clone(&self.path);
        self.update_attrs(attr);
        // The builder keeps this until the event is opened: the kernel reads
        // the path during `perf_event_open`.
        Some(path)
    }
}

/// An allocation function the agent probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocFn {
    /// `malloc(size)`.
    Malloc,
    /// `calloc(n, size)`.
    Calloc,
    /// `realloc(ptr, size)`.
    Realloc,
}

impl AllocFn {
    /// Every probed function, in the order of offset tables.
    pub const ALL: [AllocFn; 3] = [AllocFn::Malloc, AllocFn::Calloc, AllocFn::Realloc];

    /// The exported symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            AllocFn::Malloc => "malloc",
            AllocFn::Calloc => "calloc",
            AllocFn::Realloc => "realloc",
        }
    }

    /// The function whose entry is at `offset`, given the offsets of
    /// [`AllocFn::ALL`] in the same file.
    pub fn at(offsets: &[u64; 3], offset: u64) -> Option<AllocFn> {
        Self::ALL
            .into_iter()
            .zip(offsets)
            .find_map(|(f, &o)| (o == offset).then_some(f))
    }

    /// The bytes a call asks for, from its first two arguments (x86-64
    /// System V: `di`, then `si`), or `None` for a call that is not counted
    /// here: `realloc(NULL, n)`, which glibc and musl serve by calling
    /// `malloc` (whose probe counts it), and `realloc(p, 0)`, which frees.
    pub fn requested(self, di: u64, si: u64) -> Option<u64> {
        match self {
            AllocFn::Malloc => Some(di),
            AllocFn::Calloc => Some(di.saturating_mul(si)),
            AllocFn::Realloc if di == 0 || si == 0 => None,
            AllocFn::Realloc => Some(si),
        }
    }
}

/// Whether a mapped file's name is a C library's: glibc's `libc.so.6`
/// (`libc-2.x.so` before 2.34), a plain `libc.so`, or musl's, whose
/// dynamic loader is its libc.
pub fn is_libc(name: &str) -> bool {
    let name = name.trim_end_matches(" (deleted)");
    name == "libc.so.6"
        || name == "libc.so"
        || (name.starts_with("libc-") && name.ends_with(".so"))
        || name.starts_with("libc.musl-")
        || name.starts_with("ld-musl-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_the_argument_registers() {
        assert_eq!(AllocFn::Malloc.requested(100, 7), Some(100));
        assert_eq!(AllocFn::Malloc.requested(0, 0), Some(0));
        assert_eq!(AllocFn::Calloc.requested(10, 30), Some(300));
        assert_eq!(AllocFn::Calloc.requested(u64::MAX, 2), Some(u64::MAX));
        assert_eq!(AllocFn::Realloc.requested(0x5555_0000, 64), Some(64));
        assert_eq!(AllocFn::Realloc.requested(0, 64), None);
        assert_eq!(AllocFn::Realloc.requested(0x5555_0000, 0), None);
    }

    #[test]
    fn functions_by_offset() {
        let offsets = [0x98930, 0x996e0, 0x98f10];
        assert_eq!(AllocFn::at(&offsets, 0x996e0), Some(AllocFn::Calloc));
        assert_eq!(AllocFn::at(&offsets, 0x98930), Some(AllocFn::Malloc));
        assert_eq!(AllocFn::at(&offsets, 0x98931), None);
    }

    #[test]
    fn libc_names() {
        for name in [
            "libc.so.6",
            "libc-2.31.so",
            "ld-musl-x86_64.so.1",
            "libc.so.6 (deleted)",
        ] {
            assert!(is_libc(name), "{name}");
        }
        for name in [
            "libcrypto.so.3",
            "libc++.so.1",
            "libcap.so.2",
            "ld-linux-x86-64.so.2",
        ] {
            assert!(!is_libc(name), "{name}");
        }
    }

    #[test]
    fn the_uprobe_pmu_is_listed() {
        // Every kernel the agent supports has uprobes built in.
        assert!(pmu_type().is_ok_and(|t| t > 5));
    }
}
