//! Where CPython keeps what the reader needs, per minor version: the
//! thread list, each thread's current frame, a frame's code object and
//! caller, and a code object's names and line table. The offsets are those
//! of CPython's own headers (the integration tests compile a program
//! against each installed version's headers and compare).

/// How a frame says it is the outermost of one call of the evaluation loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// 3.8 to 3.10: every frame is a call of its own.
    Every,
    /// 3.11: the frame's `is_entry` byte (at this byte of the owner word)
    /// is set on the outermost frame.
    Flag(u8),
    /// 3.12+: a frame owned by the C stack (owner byte at this byte of the
    /// owner word equals 3) sits below each call's frames; it is not a
    /// Python function.
    CStackOwned(u8),
}

/// What a frame's instruction word holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instr {
    /// 3.8, 3.9: `f_lasti`, a byte offset (an `int`).
    LastiBytes,
    /// 3.10: `f_lasti`, in code units (an `int`).
    LastiUnits,
    /// 3.11+: a pointer into the code object's bytecode.
    Pointer,
}

/// How a code object maps bytecode to lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineTable {
    /// 3.8, 3.9: `co_lnotab`.
    Lnotab,
    /// 3.10: `co_linetable`, PEP 626's first format.
    Pep626,
    /// 3.11+: `co_linetable`, the location table.
    Locations,
}

/// How a thread state names its kernel thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadId {
    /// 3.11+: `native_thread_id`, at this offset.
    Native(u64),
    /// 3.8 to 3.10: `thread_id`, the `pthread_t` (glibc: the address of the
    /// thread's descriptor, which holds the kernel thread id), at this offset.
    Pthread(u64),
}

/// Offsets of one CPython minor version (x86_64, default build).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `(major, minor)`.
    pub version: (u8, u8),
    /// From the thread state to its current frame, one pointer per offset.
    pub current_frame: &'static [i16],
    /// Frame: the code object, the caller, the instruction word, the word
    /// holding the owner, and how many bytes from the start hold them all.
    pub frame_code: i16,
    pub frame_previous: i16,
    pub frame_instr: i16,
    pub frame_owner: i16,
    pub frame_read: i32,
    /// Frame: how the outermost frame of each evaluation call is marked.
    pub entry: Entry,
    pub instr: Instr,
    pub lines: LineTable,
    /// `_PyRuntime.interpreters.main`.
    pub runtime_main_interp: u64,
    /// Interpreter: the head of its thread list.
    pub interp_threads_head: u64,
    /// Thread state: `next`.
    pub thread_next: u64,
    pub thread_id: ThreadId,
    /// Code object: `co_filename`, the function's name (`co_qualname`
    /// from 3.11, `co_name` before), the line table, `co_firstlineno`,
    /// and where the bytecode starts (3.11+; 0 before).
    pub code_filename: u64,
    pub code_name: u64,
    pub code_linetable: u64,
    pub code_firstlineno: u64,
    pub code_bytecode: u64,
    /// `sizeof(PyASCIIObject)` and `sizeof(PyCompactUnicodeObject)`: where
    /// a compact string's characters start.
    pub ascii_header: u64,
    pub compact_header: u64,
}

/// Offset of `ob_type` in every object.
pub const OBJECT_TYPE: u64 = 8;
/// `PyVarObject.ob_size` and `PyBytesObject.ob_sval`.
pub const VAR_SIZE: u64 = 16;
pub const BYTES_DATA: u64 = 32;
/// `PyASCIIObject.length` and its `state` bit field.
pub const STR_LENGTH: u64 = 16;
pub const STR_STATE: u64 = 32;

/// 3.8 to 3.10: `PyFrameObject` chains, one evaluation call per frame.
const fn frame_objects(minor: u8, lasti: i16, instr: Instr, lines: LineTable) -> Layout {
    Layout {
        version: (3, minor),
        current_frame: &[24],
        frame_code: 32,
        frame_previous: 24,
        frame_instr: lasti,
        frame_owner: lasti,
        frame_read: lasti as i32 + 8,
        entry: Entry::Every,
        instr,
        lines,
        runtime_main_interp: 40,
        interp_threads_head: 8,
        thread_next: 8,
        thread_id: ThreadId::Pthread(176),
        code_filename: 104,
        code_name: 112,
        code_linetable: 120,
        code_firstlineno: 40,
        code_bytecode: 0,
        ascii_header: 48,
        compact_header: 72,
    }
}

const L312: Layout = Layout {
    version: (3, 12),
    current_frame: &[56, 0],
    frame_code: 0,
    frame_previous: 8,
    frame_instr: 56,
    frame_owner: 64,
    frame_read: 72,
    entry: Entry::CStackOwned(6),
    instr: Instr::Pointer,
    lines: LineTable::Locations,
    runtime_main_interp: 48,
    interp_threads_head: 72,
    thread_next: 8,
    thread_id: ThreadId::Native(144),
    code_filename: 112,
    code_name: 128,
    code_linetable: 136,
    code_firstlineno: 68,
    code_bytecode: 192,
    ascii_header: 40,
    compact_header: 56,
};

/// Every supported version, in the order the program's layout index uses.
pub const LAYOUTS: &[Layout] = &[
    frame_objects(8, 104, Instr::LastiBytes, LineTable::Lnotab),
    frame_objects(9, 104, Instr::LastiBytes, LineTable::Lnotab),
    frame_objects(10, 96, Instr::LastiUnits, LineTable::Pep626),
    Layout {
        version: (3, 11),
        current_frame: &[56, 8],
        frame_code: 32,
        frame_previous: 48,
        frame_instr: 56,
        frame_owner: 64,
        frame_read: 72,
        entry: Entry::Flag(4),
        instr: Instr::Pointer,
        lines: LineTable::Locations,
        runtime_main_interp: 48,
        interp_threads_head: 16,
        thread_next: 8,
        thread_id: ThreadId::Native(160),
        code_filename: 112,
        code_name: 128,
        code_linetable: 136,
        code_firstlineno: 72,
        code_bytecode: 184,
        ascii_header: 48,
        compact_header: 72,
    },
    L312,
    Layout {
        version: (3, 13),
        current_frame: &[72],
        runtime_main_interp: 640,
        interp_threads_head: 7344,
        thread_id: ThreadId::Native(160),
        code_bytecode: 200,
        ..L312
    },
];

/// The layout index of a version, if supported.
pub fn find(version: (u8, u8)) -> Option<usize> {
    LAYOUTS.iter().position(|l| l.version == version)
}

#[cfg(test)]
mod tests {
    //! The table against CPython's own headers: a C program compiled with
    //! each installed version's internal headers prints the offsets.

    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const PROGRAM: &str = r#"
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#if PY_VERSION_HEX >= 0x030b0000
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_code.h"
#elif PY_VERSION_HEX >= 0x03090000
#include <frameobject.h>
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#else
#include <frameobject.h>
#include "internal/pycore_pystate.h"
#endif
#define P(name, value) printf("%s %zu\n", name, (size_t)(value))
int main(void) {
#if PY_VERSION_HEX >= 0x030d0000
  P("current_frame.0", offsetof(PyThreadState, current_frame));
  P("frame_code", offsetof(_PyInterpreterFrame, f_executable));
  P("frame_instr", offsetof(_PyInterpreterFrame, instr_ptr));
#elif PY_VERSION_HEX >= 0x030b0000
  P("current_frame.0", offsetof(PyThreadState, cframe));
  P("current_frame.1", offsetof(_PyCFrame, current_frame));
  P("frame_code", offsetof(_PyInterpreterFrame, f_code));
  P("frame_instr", offsetof(_PyInterpreterFrame, prev_instr));
#else
  P("current_frame.0", offsetof(PyThreadState, frame));
  P("frame_code", offsetof(PyFrameObject, f_code));
  P("frame_instr", offsetof(PyFrameObject, f_lasti));
  P("frame_previous", offsetof(PyFrameObject, f_back));
  P("interp_threads_head", offsetof(PyInterpreterState, tstate_head));
  P("thread_id", offsetof(PyThreadState, thread_id));
  P("code_name", offsetof(PyCodeObject, co_name));
#endif
#if PY_VERSION_HEX >= 0x030c0000
  P("entry_byte", offsetof(_PyInterpreterFrame, owner) - 64);
  P("owned_by_cstack", FRAME_OWNED_BY_CSTACK);
#elif PY_VERSION_HEX >= 0x030b0000
  P("entry_byte", offsetof(_PyInterpreterFrame, is_entry) - 64);
#endif
#if PY_VERSION_HEX >= 0x030b0000
  P("frame_owner", 64);
  P("frame_previous", offsetof(_PyInterpreterFrame, previous));
  P("interp_threads_head", offsetof(PyInterpreterState, threads.head));
  P("thread_native_id", offsetof(PyThreadState, native_thread_id));
  P("code_name", offsetof(PyCodeObject, co_qualname));
  P("code_bytecode", offsetof(PyCodeObject, co_code_adaptive));
#endif
#if PY_VERSION_HEX >= 0x030a0000
  P("code_linetable", offsetof(PyCodeObject, co_linetable));
#else
  P("code_linetable", offsetof(PyCodeObject, co_lnotab));
#endif
  P("runtime_main_interp", offsetof(_PyRuntimeState, interpreters.main));
  P("thread_next", offsetof(PyThreadState, next));
  P("code_filename", offsetof(PyCodeObject, co_filename));
  P("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));
  P("ascii_header", sizeof(PyASCIIObject));
  P("compact_header", sizeof(PyCompactUnicodeObject));
  P("var_size", offsetof(PyVarObject, ob_size));
  P("bytes_data", offsetof(PyBytesObject, ob_sval));
  P("str_length", offsetof(PyASCIIObject, length));
  P("str_state", offsetof(PyASCIIObject, state));
  P("major", PY_MAJOR_VERSION);
  P("minor", PY_MINOR_VERSION);
  return 0;
}
"#;

    fn expected(l: &Layout) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = l
            .current_frame
            .iter()
            .enumerate()
            .map(|(i, &o)| (format!("current_frame.{i}"), o as u64))
            .collect();
        let mut add = |k: &str, x: u64| v.push((k.to_owned(), x));
        match l.entry {
            Entry::Every => {}
            Entry::Flag(b) => add("entry_byte", u64::from(b)),
            Entry::CStackOwned(b) => {
                add("entry_byte", u64::from(b));
                add("owned_by_cstack", super::super::OWNED_BY_CSTACK);
            }
        }
        match l.thread_id {
            ThreadId::Native(o) => add("thread_native_id", o),
            ThreadId::Pthread(o) => add("thread_id", o),
        }
        if l.instr == Instr::Pointer {
            add("frame_owner", l.frame_owner as u64);
            add("code_bytecode", l.code_bytecode);
        }
        for (k, x) in [
            ("frame_code", l.frame_code as u64),
            ("frame_instr", l.frame_instr as u64),
            ("frame_previous", l.frame_previous as u64),
            ("runtime_main_interp", l.runtime_main_interp),
            ("interp_threads_head", l.interp_threads_head),
            ("thread_next", l.thread_next),
            ("code_filename", l.code_filename),
            ("code_name", l.code_name),
            ("code_linetable", l.code_linetable),
            ("code_firstlineno", l.code_firstlineno),
            ("ascii_header", l.ascii_header),
            ("compact_header", l.compact_header),
            ("var_size", VAR_SIZE),
            ("bytes_data", BYTES_DATA),
            ("str_length", STR_LENGTH),
            ("str_state", STR_STATE),
            ("major", u64::from(l.version.0)),
            ("minor", u64::from(l.version.1)),
        ] {
            add(k, x);
        }
        // Every field the program copies lies within what it reads.
        let end = [l.frame_code, l.frame_previous, l.frame_instr, l.frame_owner]
            .into_iter()
            .max()
            .unwrap_or(0);
        assert!(i32::from(end) + 8 <= l.frame_read, "{:?}", l.version);
        v.sort();
        v
    }

    /// Include directories of the interpreters on this machine: Debian's
    /// (python3-dev) and pyenv's 3.8 to 3.13.
    fn include_dirs() -> Vec<PathBuf> {
        let mut dirs = vec![PathBuf::from("/usr/include/python3.11")];
        let root = std::env::var("PYENV_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                Path::new(&std::env::var("HOME").unwrap_or_default()).join(".pyenv")
            });
        for minor in ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"] {
            let found = std::fs::read_dir(root.join("versions"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{minor}.")))
                })
                .map(|p| p.join("include").join(format!("python{minor}")))
                .find(|p| p.exists());
            dirs.push(found.unwrap_or_else(|| panic!("pyenv's Python {minor} is needed")));
        }
        dirs
    }

    #[test]
    fn offsets_match_cpythons_headers() {
        let dir = std::env::temp_dir().join(format!("firewatch-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let source = dir.join("offsets.c");
        std::fs::write(&source, PROGRAM).expect("write the program");
        for include in include_dirs() {
            assert!(
                include.join("Python.h").exists(),
                "no headers in {include:?}"
            );
            let exe = dir.join("offsets");
            let out = Command::new("gcc")
                .arg("-I")
                .arg(&include)
                .arg(&source)
                .arg("-o")
                .arg(&exe)
                .output()
                .expect("run gcc");
            assert!(
                out.status.success(),
                "{include:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = Command::new(&exe).output().expect("run the program");
            let mut got: Vec<(String, u64)> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_owned(), v.parse().ok()?))
                })
                .collect();
            got.sort();
            let version = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| *v as u8);
            let (Some(major), Some(minor)) = (version("major"), version("minor")) else {
                panic!("{include:?}: no version in {got:?}");
            };
            let layout = find((major, minor))
                .map(|i| &LAYOUTS[i])
                .unwrap_or_else(|| panic!("no layout for {major}.{minor}"));
            assert_eq!(got, expected(layout), "{include:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
