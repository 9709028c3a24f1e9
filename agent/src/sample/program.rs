//! The program on every CPU sample: its parts (the stack words past the
//! kernel's copy, Python's frame chain) assembled into one, since a perf
//! event runs one program, and attached to every CPU's event.

use std::os::fd::RawFd;

use crate::bpf::Program;
use crate::bpf::asm::Asm;
use crate::python::Python;
use crate::unwind::SampledWords;

/// Loads the parts that are there and attaches the program to `events`.
/// A part the kernel refuses is dropped (with a warning saying what is
/// lost) and the rest loaded without it.
pub(super) fn load(
    events: &[RawFd],
    words: &mut Option<SampledWords>,
    python: &mut Option<Python>,
) -> Option<Program> {
    loop {
        if words.is_none() && python.is_none() {
            return None;
        }
        match assemble_and_attach(events, words.as_ref(), python.as_ref()) {
            Ok(p) => return Some(p),
            Err(e) if words.is_some() => {
                tracing::warn!(
                    "stack words past the kernel's copy will not be read with each sample: {e}"
                );
                *words = None;
            }
            Err(e) => {
                tracing::warn!("Python functions will not show in stacks: {e}");
                *python = None;
            }
        }
    }
}

fn assemble_and_attach(
    events: &[RawFd],
    words: Option<&SampledWords>,
    python: Option<&Python>,
) -> Result<Program, String> {
    let mut a = Asm::default();
    let done = a.label();
    let python_part = a.label();
    if let Some(w) = words {
        w.emit(&mut a, python_part);
    }
    a.bind(python_part);
    if let Some(p) = python {
        p.emit(&mut a, done);
    }
    a.bind(done);
    a.keep_sample();
    let program = Program::load(&a.finish(), "fw_on_sample")
        .map_err(|e| format!("loading the program: {e}"))?;
    for &fd in events {
        program
            .attach(fd)
            .map_err(|e| format!("attaching the program: {e}"))?;
    }
    Ok(program)
}
