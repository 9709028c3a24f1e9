//! Addresses to names with blazesym, on one thread of its own: blazesym's
//! symbolizer is not `Send`, and keeping one alive keeps the debug files it
//! parsed, so each file's DWARF is read once, not once per query. The
//! thread starts a fresh symbolizer when it has parsed too many files, which
//! bounds the memory those parses hold.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{Input, Symbolizer};
use tokio::sync::oneshot;

/// One function of a named frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamedLine {
    pub name: String,
    pub file: String,
}

/// A named frame: its functions, outermost first (inlined calls after the
/// function they were inlined into).
pub(crate) type Named = Arc<[NamedLine]>;

/// Debug files one symbolizer may hold parsed before it is replaced.
const MAX_PARSED_FILES: usize = 16;

/// Files larger than this are named from their symbol table alone (no
/// inlined calls, no source files): parsing their DWARF would hold more
/// memory than a server should spend on one file.
const MAX_DWARF_FILE_BYTES: u64 = 512 << 20;

struct Job {
    path: PathBuf,
    addresses: Vec<u64>,
    reply: oneshot::Sender<Vec<Option<Named>>>,
}

/// The handle to the symbolizing thread.
pub(crate) struct Resolver {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Resolver {
    pub(crate) fn new() -> Resolver {
        Resolver {
            jobs: Mutex::new(None),
        }
    }

    /// Names `addresses` (link-time addresses) from the ELF file at `path`;
    /// `None` for each address no symbol covers.
    pub(crate) async fn resolve(&self, path: PathBuf, addresses: Vec<u64>) -> Vec<Option<Named>> {
        let n = addresses.len();
        let (reply, answer) = oneshot::channel();
        let sent = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            let tx = jobs.get_or_insert_with(spawn);
            let job = Job {
                path,
                addresses,
                reply,
            };
            match tx.send(job) {
                Ok(()) => true,
                Err(mpsc::SendError(job)) => {
                    // The thread is gone (it panicked): start another.
                    let tx = spawn();
                    let ok = tx.send(job).is_ok();
                    *jobs = Some(tx);
                    ok
                }
            }
        };
        if !sent {
            return vec![None; n];
        }
        answer.await.unwrap_or_else(|_| vec![None; n])
    }
}

fn spawn() -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("symbolize".into())
        .spawn(move || run(rx));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the symbolizing thread");
    }
    tx
}

fn run(rx: mpsc::Receiver<Job>) {
    let mut symbolizer = new_symbolizer();
    let mut parsed: Vec<PathBuf> = Vec::new();
    while let Ok(job) = rx.recv() {
        if !parsed.contains(&job.path) {
            if parsed.len() >= MAX_PARSED_FILES {
                symbolizer = new_symbolizer();
                parsed.clear();
            }
            parsed.push(job.path.clone());
        }
        let names = symbolize(&symbolizer, &job.path, &job.addresses);
        let _ = job.reply.send(names);
    }
}

fn new_symbolizer() -> Symbolizer {
    Symbolizer::builder()
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .enable_auto_reload(false)
        .build()
}

fn symbolize(symbolizer: &Symbolizer, path: &PathBuf, addresses: &[u64]) -> Vec<Option<Named>> {
    let mut elf = Elf::new(path);
    elf.debug_syms = std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_DWARF_FILE_BYTES);
    let src = Source::Elf(elf);
    let results = match symbolizer.symbolize(&src, Input::VirtOffset(addresses)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "symbolization failed");
            return vec![None; addresses.len()];
        }
    };
    results
        .into_iter()
        .map(|s| {
            let sym = s.into_sym()?;
            let file = |c: Option<&blazesym::symbolize::CodeInfo<'_>>| {
                c.map(|c| c.to_path().to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let mut lines = Vec::with_capacity(1 + sym.inlined.len());
            lines.push(NamedLine {
                name: sym.name.into_owned(),
                file: file(sym.code_info.as_deref()),
            });
            for f in sym.inlined.iter() {
                lines.push(NamedLine {
                    name: f.name.to_string(),
                    file: file(f.code_info.as_ref()),
                });
            }
            Some(Named::from(lines))
        })
        .collect()
}
