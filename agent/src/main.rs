//! `firewatch-agent`: profiles every process on the host and ships the
//! profiles to a Firewatch (or Pyroscope) server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use firewatch_agent::config::{Config, parse_duration};
use firewatch_agent::{Agent, Error};

/// Samples the CPU stacks of every process with perf events and ships one
/// pprof per service every upload interval. Flags override the config file.
#[derive(Parser, Debug)]
#[command(name = "firewatch-agent", version)]
struct Args {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Server base URL (default http://127.0.0.1:4040).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Push to a Grafana Pyroscope server's push API instead.
    #[arg(long)]
    pyroscope: bool,
    /// Samples per second per CPU (default 99).
    #[arg(long, value_name = "HZ")]
    frequency: Option<u32>,
    /// How often profiles are shipped, e.g. 10s (default).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    upload_interval: Option<Duration>,
    /// Profile only this process (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Profile only executables with this name; `*` wildcards (repeatable).
    #[arg(long = "exe", value_name = "PATTERN")]
    executables: Vec<String>,
    /// Profile only processes whose cgroup path contains this (repeatable).
    #[arg(long = "cgroup", value_name = "TEXT")]
    cgroups: Vec<String>,
    /// Sample the allocations (malloc, calloc, realloc) of this process
    /// with uprobes; every call traps (repeatable).
    #[arg(long = "alloc-pid", value_name = "PID")]
    alloc_pids: Vec<u32>,
    /// Sample the allocations of executables with this name; `*`
    /// wildcards (repeatable).
    #[arg(long = "alloc-exe", value_name = "PATTERN")]
    alloc_executables: Vec<String>,
    /// Sample one allocation call in N (default 997).
    #[arg(long = "alloc-every", value_name = "N")]
    alloc_every: Option<u64>,
    /// Add a series label to every profile (repeatable).
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = label)]
    labels: Vec<(String, String)>,
    /// The `host` label (default: the host name).
    #[arg(long)]
    host: Option<String>,
    /// Do not record kernel stacks.
    #[arg(long)]
    no_kernel_stacks: bool,
    /// Do not attach `pid` and `thread_name` to samples.
    #[arg(long)]
    no_sample_labels: bool,
    /// Unwind only the stack copied with each sample; do not complete
    /// deeper stacks from the thread's live stack.
    #[arg(long)]
    no_deep_stacks: bool,
    /// Do not read the Python functions of CPython processes.
    #[arg(long)]
    no_python: bool,
    /// Tenant, sent as X-Scope-OrgID.
    #[arg(long)]
    tenant: Option<String>,
    /// File holding a bearer token.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust for https.
    #[arg(long, value_name = "FILE")]
    tls_ca_file: Option<PathBuf>,
    /// Bound of the buffer of undelivered profiles, e.g. 64MiB (default).
    #[arg(long, value_name = "SIZE", value_parser = size)]
    buffer_size: Option<usize>,
    /// Also write every profile as a zstd pprof file into this directory.
    #[arg(long, value_name = "DIR")]
    dump_dir: Option<PathBuf>,
    /// Do not ship (with --dump-dir: only write files).
    #[arg(long)]
    no_ship: bool,
    /// Stop after this long (default: run until SIGINT or SIGTERM).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    duration: Option<Duration>,
    /// Serve the agent's own metrics on GET /metrics at this address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Log format: text (default) or json (one object per line).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    Ok((k.to_owned(), v.to_owned()))
}

fn size(s: &str) -> Result<usize, String> {
    firewatch_syntax::parse_size(s).map_err(|e| e.to_string())
}

/// SIGINT and SIGTERM, blocked in every thread so that they stay pending
/// until the main thread takes them with `sigtimedwait`: the main thread
/// then sleeps until a signal or the end of `--duration`, instead of waking
/// periodically to poll a flag.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset only write to the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks the stop signals in the calling thread and in every thread it
/// starts afterwards (threads inherit the mask).
fn block_stop_signals(set: &libc::sigset_t) -> Result<()> {
    // SAFETY: pthread_sigmask reads the set we own; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, set, std::ptr::null_mut()) };
    if rc != 0 {
        bail!(
            "cannot block SIGINT and SIGTERM: {}",
            std::io::Error::from_raw_os_error(rc)
        );
    }
    Ok(())
}

/// Sleeps until SIGINT or SIGTERM arrives or `limit` has passed since `started`.
fn wait_for_stop(set: &libc::sigset_t, started: Instant, limit: Option<Duration>) {
    loop {
        let left = match limit {
            Some(d) => match d.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return,
            },
            // No limit: wake once an hour, which costs nothing measurable.
            None => Duration::from_secs(3600),
        };
        let timeout = libc::timespec {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(left.subsec_nanos()),
        };
        // SAFETY: the set and the timeout are ours; the siginfo is not wanted.
        let signal = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
        if signal == libc::SIGINT || signal == libc::SIGTERM {
            return;
        }
        // Otherwise a timeout (EAGAIN) or an interruption (EINTR): look again.
    }
}

fn config_from(args: &Args) -> Result<Config> {
    let mut c = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = &args.server {
        c.server.clone_from(v);
    }
    c.pyroscope |= args.pyroscope;
    if let Some(v) = args.frequency {
        c.frequency = v;
    }
    if let Some(v) = args.upload_interval {
        c.upload_interval = v;
    }
    c.targets.pids.extend(&args.pids);
    c.targets
        .executables
        .extend(args.executables.iter().cloned());
    c.targets.cgroups.extend(args.cgroups.iter().cloned());
    c.alloc.pids.extend(&args.alloc_pids);
    c.alloc
        .executables
        .extend(args.alloc_executables.iter().cloned());
    if let Some(v) = args.alloc_every {
        c.alloc.every = v;
    }
    c.labels.extend(args.labels.iter().cloned());
    if args.host.is_some() {
        c.host.clone_from(&args.host);
    }
    c.kernel_stacks &= !args.no_kernel_stacks;
    c.deep_stacks &= !args.no_deep_stacks;
    c.python &= !args.no_python;
    c.sample_labels &= !args.no_sample_labels;
    if args.tenant.is_some() {
        c.tenant.clone_from(&args.tenant);
    }
    if args.token_file.is_some() {
        c.token_file.clone_from(&args.token_file);
    }
    if args.tls_ca_file.is_some() {
        c.tls_ca_file.clone_from(&args.tls_ca_file);
    }
    if let Some(v) = args.buffer_size {
        c.buffer_bytes = v;
    }
    if args.dump_dir.is_some() {
        c.dump_dir.clone_from(&args.dump_dir);
    }
    c.no_ship |= args.no_ship;
    if args.metrics_listen.is_some() {
        c.metrics_listen = args.metrics_listen;
    }
    c.validate()?;
    Ok(c)
}

fn run(args: Args) -> Result<()> {
    let config = config_from(&args)?;
    firewatch_agent::raise_fd_limit();
    let signals = stop_signals();
    block_stop_signals(&signals)?;
    tracing::info!(
        server = %config.server,
        frequency = config.frequency,
        interval = ?config.upload_interval,
        pyroscope = config.pyroscope,
        "starting"
    );
    let agent = match Agent::start(config) {
        Ok(a) => a,
        Err(e @ Error::PerfPermission { .. }) => bail!("{e}"),
        Err(e) => return Err(e).context("cannot start the agent"),
    };
    wait_for_stop(&signals, Instant::now(), args.duration);
    let m = agent.stop(Duration::from_secs(10));
    let cpu = firewatch_agent::metrics::own_cpu_time().unwrap_or_default();
    tracing::info!(
        cpu_seconds = format_args!("{:.3}", cpu.as_secs_f64()),
        rss_peak_kib = peak_rss_kib(),
        samples = m.samples,
        lost = m.samples_lost,
        profiles = m.profiles_built,
        delivered = m.profiles_delivered,
        rejected = m.profiles_rejected,
        dropped = m.profiles_dropped,
        "stopped"
    );
    Ok(())
}

/// Peak resident memory (`VmHWM`) in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("firewatch-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
