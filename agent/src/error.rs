use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Everything that stops the agent from starting or a step from completing.
///
/// Messages are written for the person running the agent: each names what
/// failed and, where there is one, the fix.
#[derive(Debug, Error)]
pub enum Error {
    /// `perf_event_open` refused for lack of privilege.
    #[error(
        "cannot open perf events: permission denied (kernel.perf_event_paranoid is {paranoid}). \
         Run the agent as root, or grant it CAP_PERFMON and CAP_SYSLOG \
         (`setcap cap_perfmon,cap_syslog+ep firewatch-agent`), or allow system-wide profiling \
         with `sysctl kernel.perf_event_paranoid=-1`"
    )]
    PerfPermission {
        /// The current value of `/proc/sys/kernel/perf_event_paranoid`, or `unknown`.
        paranoid: String,
    },
    /// `perf_event_open` (or mapping its ring buffer) failed for another reason.
    #[error("cannot open a sampling perf event on CPU {cpu}: {source}")]
    PerfOpen {
        /// The CPU the event was for.
        cpu: usize,
        /// The system error.
        source: io::Error,
    },
    /// The kernel refused to map a perf ring buffer: past the locked-memory
    /// allowance for perf rings (unprivileged callers).
    #[error(
        "cannot map a {bytes}-byte perf ring buffer on CPU {cpu}: {source}. Unprivileged \
         processes may lock kernel.perf_event_mlock_kb (now {mlock_kb} KiB) per user for perf \
         rings, plus RLIMIT_MEMLOCK (`ulimit -l`); raise either, grant CAP_IPC_LOCK or \
         CAP_PERFMON, or use smaller rings"
    )]
    RingMap {
        /// The CPU the ring was for.
        cpu: usize,
        /// The ring's size.
        bytes: usize,
        /// The current value of `/proc/sys/kernel/perf_event_mlock_kb`, or `unknown`.
        mlock_kb: String,
        /// The system error.
        source: io::Error,
    },
    /// The machine has no online CPU we could read.
    #[error("cannot list online CPUs: {0}")]
    Cpus(io::Error),
    /// Allocation sampling was asked for, but the kernel offers no uprobes.
    #[error("allocation sampling needs the kernel's uprobe PMU (CONFIG_UPROBE_EVENTS): {0}")]
    UprobesUnavailable(io::Error),
    /// A process's allocation functions could not be probed.
    #[error("cannot probe the allocations of process {pid}: {reason}")]
    AllocProbe {
        /// The process.
        pid: u32,
        /// What was missing or refused.
        reason: String,
    },
    /// A configuration value is out of range or malformed.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// The configuration file is not valid TOML for the agent.
    #[error("configuration file {path}: {message}")]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and column.
        message: String,
    },
    /// A file the agent needs (token, CA bundle, dump directory) is unusable.
    #[error("{what} {path}: {source}")]
    File {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// A worker thread could not be started.
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// The system error.
        source: io::Error,
    },
    /// In-process timer-signal sampling could not start or report.
    #[error("in-process CPU sampling: {0}")]
    SignalSampling(String),
    /// Compressing a profile failed.
    #[error("cannot compress a profile: {0}")]
    Compress(#[from] firewatch_profile::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
