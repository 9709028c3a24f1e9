//! The agent's configuration: defaults, the TOML file, and validation.
//!
//! Command-line flags (in the binary) override the file; [`Config::validate`]
//! checks the result once, so the rest of the agent trusts it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// Everything the agent can be told. `Default` gives the documented defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Base URL of the server, e.g. `http://127.0.0.1:4040`.
    pub server: String,
    /// Push to a Grafana Pyroscope server (push API) instead of Firewatch's native ingest.
    pub pyroscope: bool,
    /// Sampling frequency per CPU, in Hz (default 99: odd, to avoid lock-step with periodic work).
    pub frequency: u32,
    /// How often profiles are cut and shipped (default 10 s).
    #[serde(deserialize_with = "de_duration")]
    pub upload_interval: Duration,
    /// Record kernel stacks (default true).
    pub kernel_stacks: bool,
    /// Attach `pid` and `thread_name` labels to every pprof sample (default true).
    pub sample_labels: bool,
    /// Which processes to profile; empty means every process.
    pub targets: Targets,
    /// Processes whose allocations are sampled with uprobes; empty (the
    /// default) means none.
    pub alloc: AllocTargets,
    /// Static series labels added to every profile.
    pub labels: BTreeMap<String, String>,
    /// Rules naming the service of matching processes; the first match wins.
    pub services: Vec<ServiceRule>,
    /// The `host` label (default: the machine's host name).
    pub host: Option<String>,
    /// Tenant, sent as `X-Scope-OrgID`.
    pub tenant: Option<String>,
    /// Bearer token sent as `Authorization`.
    pub token: Option<String>,
    /// File holding the bearer token (read once at start, trimmed).
    pub token_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust for `https` servers (default: the bundled roots).
    pub tls_ca_file: Option<PathBuf>,
    /// Bound of the buffer of profiles not yet delivered, in bytes (default 64 MiB).
    pub buffer_bytes: usize,
    /// First retry delay after a failed delivery (default 500 ms); doubles up to `retry_max`.
    #[serde(deserialize_with = "de_duration")]
    pub retry_min: Duration,
    /// Longest retry delay (default 5 min).
    #[serde(deserialize_with = "de_duration")]
    pub retry_max: Duration,
    /// Timeout of one delivery request (default 30 s).
    #[serde(deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// Bytes of user stack copied per sample for unwinding (default 32 KiB,
    /// at most 65,528: the kernel's limit).
    pub stack_bytes: u32,
    /// Complete stacks deeper than the copy from the thread's live stack
    /// (default true; see the agent's README for what guarantees each frame).
    pub deep_stacks: bool,
    /// Show the Python functions of CPython 3.8-3.13 processes in their
    /// stacks, copied at each sample by a BPF program (default true).
    pub python: bool,
    /// Bytes of a thread's live stack read past the copy for one sample, at
    /// most, per stack segment (a walk follows up to four; default 8 MiB).
    pub max_stack_bytes: usize,
    /// Ring buffer per CPU in bytes (a power of two); 0 sizes it from frequency,
    /// stack size and number of CPUs.
    pub ring_buffer_bytes: usize,
    /// Write every profile as a `.pb.zst` file into this directory as well.
    pub dump_dir: Option<PathBuf>,
    /// Do not ship; only write to `dump_dir` (default false).
    pub no_ship: bool,
    /// CPU the agent may use, in percent of one core, before it logs a warning (default 1).
    pub cpu_budget_percent: f64,
    /// Resident memory above which caches are dropped, in bytes (default 100 MiB).
    pub memory_budget_bytes: u64,
    /// Distinct frames kept per upload interval before new stacks are folded (default 4 M).
    pub max_frames_per_window: usize,
    /// Files with more DWARF than this (uncompressed bytes) are named from
    /// their symbol table only (default 48 MiB): debug builds carry hundreds
    /// of MiB that would blow the memory budget.
    pub max_debug_info_bytes: u64,
    /// Directories whose `.build-id/xx/rest.debug` files name the frames of
    /// stripped files (default `/usr/lib/debug`, where distributions'
    /// debug packages install them); `.gnu_debuglink` is followed too.
    pub debug_dirs: Vec<std::path::PathBuf>,
    /// Serve the agent's own metrics on `GET /metrics` at this address (default: off).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Sample only this process, in user space (set by the embedded
    /// profiler, [`crate::embed`]; not a file or flag setting).
    #[serde(skip)]
    pub own_process: bool,
    /// The agent runs inside another program's process (embedded in a
    /// service, or beside the server in `firewatch up`): the process's
    /// resident memory is not the agent's, so `memory_budget_bytes` is not
    /// checked against it; symbol caches are bounded by their entry count
    /// and by dropping files no recent window needed, every window. Not a
    /// file or flag setting.
    #[serde(skip)]
    pub shares_process: bool,
}

/// Which processes are profiled. A process is profiled when it matches any
/// entry; with no entry at all, every process is.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Targets {
    /// Process ids.
    pub pids: Vec<u32>,
    /// Executable names (basename of `/proc/PID/exe`); `*` matches any run of characters.
    pub executables: Vec<String>,
    /// Substrings of the process's cgroup path (e.g. `docker-`, `nginx.service`).
    pub cgroups: Vec<String>,
}

impl Targets {
    /// True when no target is given, i.e. every process is profiled.
    pub fn is_all(&self) -> bool {
        self.pids.is_empty() && self.executables.is_empty() && self.cgroups.is_empty()
    }

    /// True when only pids are given, so matching needs no `/proc` read.
    pub fn pids_only(&self) -> bool {
        self.executables.is_empty() && self.cgroups.is_empty()
    }
}

/// Processes whose calls of libc's `malloc`, `calloc` and `realloc` are
/// sampled. Every call of a probed process traps into the kernel, whatever
/// `every` is, so this names processes one by one and is empty by default.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AllocTargets {
    /// Process ids.
    pub pids: Vec<u32>,
    /// Executable names (basename of `/proc/PID/exe`); `*` matches any run of characters.
    pub executables: Vec<String>,
    /// Sample one call in this many (per thread and CPU); the default
    /// ([`DEFAULT_ALLOC_EVERY`]) bounds the stack copies and unwinding of
    /// a program that allocates millions of times a second.
    pub every: u64,
}

/// Default of [`AllocTargets::every`]. A probed call costs about 1.3 us
/// (the trap) whatever the period, so a thread allocating in a tight loop
/// makes some 750,000 calls a second under the probes: 750 samples a second
/// at this period, each with its stack copy (32 KiB by default), which the
/// rings hold between two drains (a 2 MiB ring, drained every 50 ms, takes
/// 1,200); at 97, nine in ten are lost. A service making 10,000 calls a
/// second still gets 10 samples a second. A prime, so that a loop making a
/// fixed number of calls per turn is not sampled at the same call each time.
pub const DEFAULT_ALLOC_EVERY: u64 = 997;

impl Default for AllocTargets {
    fn default() -> Self {
        AllocTargets {
            pids: Vec::new(),
            executables: Vec::new(),
            every: DEFAULT_ALLOC_EVERY,
        }
    }
}

impl AllocTargets {
    /// True when no process is named: allocation sampling is off.
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.executables.is_empty()
    }

    /// Whether a process (`exe`: the basename of its executable) is named.
    pub fn matches(&self, pid: u32, exe: Option<&str>) -> bool {
        self.pids.contains(&pid)
            || exe.is_some_and(|exe| self.executables.iter().any(|p| glob_match(p, exe)))
    }
}

/// Names the service of processes matching every given condition.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceRule {
    /// The `service_name` to use.
    pub service_name: String,
    /// Executable name pattern (`*` wildcards).
    #[serde(default)]
    pub exe: Option<String>,
    /// Substring of the cgroup path.
    #[serde(default)]
    pub cgroup: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: "http://127.0.0.1:4040".to_owned(),
            pyroscope: false,
            frequency: 99,
            upload_interval: Duration::from_secs(10),
            kernel_stacks: true,
            sample_labels: true,
            targets: Targets::default(),
            alloc: AllocTargets::default(),
            labels: BTreeMap::new(),
            services: Vec::new(),
            host: None,
            tenant: None,
            token: None,
            token_file: None,
            tls_ca_file: None,
            buffer_bytes: 64 << 20,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            stack_bytes: 32 << 10,
            deep_stacks: true,
            python: true,
            max_stack_bytes: 8 << 20,
            ring_buffer_bytes: 0,
            dump_dir: None,
            no_ship: false,
            cpu_budget_percent: 1.0,
            memory_budget_bytes: 100 << 20,
            max_frames_per_window: 4 << 20,
            max_debug_info_bytes: 48 << 20,
            debug_dirs: vec![std::path::PathBuf::from("/usr/lib/debug")],
            metrics_listen: None,
            own_process: false,
            shares_process: false,
        }
    }
}

/// The most user stack the kernel copies with one sample (a 16-bit size,
/// 8-byte aligned).
pub const MAX_STACK_COPY: u32 = 65_528;

/// Labels the agent sets itself; the configuration may not override them.
const RESERVED_LABELS: &[&str] = &["__name__"];

/// Ring memory of one set of events (CPU samples, or allocation samples)
/// over all CPUs when sized automatically: a host with many CPUs gets
/// smaller rings, drained more often, rather than a ring memory growing with
/// its CPUs.
const RING_BUDGET: usize = 64 << 20;

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| match e {
            Error::Config(message) => Error::ConfigParse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text over the defaults.
    pub fn from_toml(text: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string().trim_end().to_owned()))
    }

    /// Checks every value; the agent calls this once before starting.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if !(1..=10_000).contains(&self.frequency) {
            return bad(format!(
                "frequency must be 1..=10000 Hz, not {}",
                self.frequency
            ));
        }
        if self.upload_interval < Duration::from_millis(100) {
            return bad("upload_interval must be at least 100ms".to_owned());
        }
        if !self.no_ship {
            let scheme_ok =
                self.server.starts_with("http://") || self.server.starts_with("https://");
            if !scheme_ok {
                return bad(format!(
                    "server must be an http:// or https:// URL, not {:?}",
                    self.server
                ));
            }
        } else if self.dump_dir.is_none() {
            return bad("no_ship needs dump_dir: profiles would go nowhere".to_owned());
        }
        if self.stack_bytes < 1024
            || self.stack_bytes > MAX_STACK_COPY
            || !self.stack_bytes.is_multiple_of(8)
        {
            return bad(format!(
                "stack_bytes must be a multiple of 8 within 1024..={MAX_STACK_COPY}, not {}",
                self.stack_bytes
            ));
        }
        if !(64 << 10..=1 << 30).contains(&self.max_stack_bytes) {
            return bad(format!(
                "max_stack_bytes must be within 64 KiB..=1 GiB, not {}",
                self.max_stack_bytes
            ));
        }
        if self.ring_buffer_bytes != 0
            && (!self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < 64 << 10)
        {
            return bad(format!(
                "ring_buffer_bytes must be 0 (automatic) or a power of two of at least 64 KiB, not {}",
                self.ring_buffer_bytes
            ));
        }
        if self.buffer_bytes < 64 << 10 {
            return bad("buffer_bytes must be at least 64 KiB".to_owned());
        }
        if self.retry_min.is_zero() || self.retry_max < self.retry_min {
            return bad("retry_min must be positive and at most retry_max".to_owned());
        }
        for (name, value) in &self.labels {
            check_label(name, value)?;
            if RESERVED_LABELS.contains(&name.as_str()) {
                return bad(format!("label {name:?} is reserved"));
            }
        }
        for rule in &self.services {
            check_label("service_name", &rule.service_name)?;
            if rule.exe.is_none() && rule.cgroup.is_none() {
                return bad(format!(
                    "service rule {:?} needs `exe` or `cgroup`",
                    rule.service_name
                ));
            }
        }
        if let Some(host) = &self.host {
            check_label("host", host)?;
        }
        if !(1..=1 << 31).contains(&self.alloc.every) {
            return bad(format!(
                "alloc.every must be within 1..=2147483648 calls, not {}",
                self.alloc.every
            ));
        }
        if self.alloc.executables.iter().any(String::is_empty) {
            return bad("alloc.executables holds an empty pattern".to_owned());
        }
        if self.own_process && !self.alloc.is_empty() {
            return bad(
                "allocation probes are for the host agent, not the embedded profiler".to_owned(),
            );
        }
        Ok(())
    }

    /// The ring buffer size per CPU on a host of `cpus` CPUs: the configured
    /// one, or one second of samples with their stack copies (half a second
    /// inside a service, whose memory it is), within each CPU's share of
    /// 64 MiB (at least 512 KiB, at most 32 MiB).
    pub fn ring_buffer_size(&self, cpus: usize) -> usize {
        if self.ring_buffer_bytes != 0 {
            return self.ring_buffer_bytes;
        }
        let per_second = self.sample_bytes().saturating_mul(self.frequency as usize);
        let want = if self.shares_process {
            per_second / 2
        } else {
            per_second
        };
        let share = RING_BUDGET / cpus.max(1);
        // The largest power of two within the share (the kernel wants one).
        let share = 1usize << share.max(1).ilog2();
        want.next_power_of_two()
            .min(share)
            .clamp(512 << 10, 32 << 20)
    }

    /// How often the sampling loop drains rings of `ring_bytes`: when they
    /// are half full at the configured frequency, but at most every second
    /// and at least every 10 ms. Rings hold a second of samples so that the
    /// loop wakes rarely: each wake-up costs about the same (tens of
    /// microseconds, its code and tables cold in the caches) however few
    /// samples it finds, and on a small host that was most of the loop's CPU.
    pub fn drain_period(&self, ring_bytes: usize) -> Duration {
        let per_second = self.sample_bytes() as f64 * f64::from(self.frequency.max(1));
        let ring_seconds = ring_bytes as f64 / per_second;
        Duration::from_secs_f64((ring_seconds / 2.0).clamp(0.01, 1.0))
    }

    /// Ring bytes one sample takes at most: its stack copy, registers,
    /// kernel callchain and header.
    fn sample_bytes(&self) -> usize {
        self.stack_bytes as usize + 2048
    }

    /// The bearer token, from `token` or `token_file`.
    pub fn bearer_token(&self) -> Result<Option<String>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        match &self.token_file {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(|t| Some(t.trim().to_owned()))
                .map_err(|source| Error::File {
                    what: "cannot read the token file",
                    path: path.clone(),
                    source,
                }),
        }
    }
}

/// Checks a series label: name matching `[a-zA-Z_][a-zA-Z0-9_]*`, value non-empty.
pub fn check_label(name: &str, value: &str) -> Result<()> {
    if !is_label_name(name) {
        return Err(Error::Config(format!(
            "label name {name:?} must match [a-zA-Z_][a-zA-Z0-9_]*"
        )));
    }
    if value.is_empty() {
        return Err(Error::Config(format!("label {name:?} has an empty value")));
    }
    Ok(())
}

pub use firewatch_syntax::is_label_name;

/// Parses a duration (`250ms`, `2.5s`, `1h30m`: see `firewatch-syntax`).
pub fn parse_duration(text: &str) -> Result<Duration> {
    firewatch_syntax::parse_duration(text).map_err(|e| Error::Config(e.to_string()))
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Seconds(f64),
    }
    // A number in the file is seconds, as the unit-less TOML value reads.
    let text = match Raw::deserialize(d)? {
        Raw::Text(t) => t,
        Raw::Seconds(s) => format!("{s}s"),
    };
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Matches `text` against a pattern where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("1.5s").ok(),
            Some(Duration::from_millis(1500))
        );
        assert!(
            parse_duration("1.5").is_err(),
            "a unit is needed, as in every binary"
        );
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn toml_overrides_defaults_and_rejects_unknown_keys() {
        let c = Config::from_toml(
            "server = \"http://x:1\"\nfrequency = 199\nupload_interval = \"2s\"\n\
             [labels]\nenv = \"prod\"\n[targets]\nexecutables = [\"nginx*\"]\n\
             [[services]]\nservice_name = \"web\"\nexe = \"nginx\"\n",
        )
        .expect("valid config");
        assert_eq!(c.frequency, 199);
        assert_eq!(c.upload_interval, Duration::from_secs(2));
        assert_eq!(c.labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(c.targets.executables, vec!["nginx*".to_owned()]);
        assert!(c.validate().is_ok());
        let err = Config::from_toml("frequncy = 3").expect_err("typo must be refused");
        assert!(err.to_string().contains("frequncy"), "{err}");
    }

    #[test]
    fn validation_names_the_bad_value() {
        let c = Config {
            frequency: 0,
            ..Config::default()
        };
        assert!(
            c.validate()
                .expect_err("0 Hz")
                .to_string()
                .contains("frequency")
        );
        let mut c = Config::default();
        c.labels.insert("bad-name".into(), "x".into());
        assert!(
            c.validate()
                .expect_err("label")
                .to_string()
                .contains("bad-name")
        );
    }

    #[test]
    fn rings_hold_a_second_of_samples_within_the_budget() {
        let c = Config::default();
        let per_second = (32 << 10) * 99;
        for cpus in [1, 2, 16] {
            let size = c.ring_buffer_size(cpus);
            assert!(size.is_power_of_two());
            assert!(size >= per_second, "{cpus} CPUs: {size}");
            assert!(size * cpus <= RING_BUDGET);
        }
        // Many CPUs: each gets its share, and never less than 512 KiB.
        assert_eq!(c.ring_buffer_size(64), 1 << 20);
        assert_eq!(c.ring_buffer_size(4096), 512 << 10);
        // Inside a service, half of that.
        let embedded = Config {
            shares_process: true,
            ..Config::default()
        };
        assert_eq!(embedded.ring_buffer_size(2) * 2, c.ring_buffer_size(2));
        // A ring that is not a power of two is never asked for.
        assert!(c.ring_buffer_size(3).is_power_of_two());
        assert_eq!(c.ring_buffer_size(0), c.ring_buffer_size(1));
    }

    #[test]
    fn rings_are_drained_before_they_are_half_full() {
        let mut c = Config::default();
        // Defaults on a small host: a drain every 0.6 s, not four a second.
        let drain = c.drain_period(c.ring_buffer_size(2));
        assert!(drain > Duration::from_millis(500), "{drain:?}");
        assert_eq!(c.drain_period(64 << 20), Duration::from_secs(1));
        c.frequency = 999;
        let ring = 2 << 20;
        let fill = (c.stack_bytes as f64 + 2048.0) * 999.0 * c.drain_period(ring).as_secs_f64();
        assert!(c.drain_period(ring) < Duration::from_millis(250));
        assert!(fill <= (ring / 2) as f64 + 1.0);
        // A ring too small for the frequency is still not drained in a busy loop.
        assert_eq!(c.drain_period(64 << 10), Duration::from_millis(10));
    }

    #[test]
    fn alloc_table_is_off_by_default_and_checked() {
        assert!(Config::default().alloc.is_empty());
        let c = Config::from_toml("[alloc]\nexecutables = [\"web*\"]\npids = [42]\nevery = 31\n")
            .expect("valid alloc table");
        assert!(!c.alloc.is_empty() && c.validate().is_ok());
        assert_eq!(c.alloc.every, 31);
        assert!(c.alloc.matches(42, None));
        assert!(c.alloc.matches(7, Some("webserver")));
        assert!(!c.alloc.matches(7, Some("db")));
        let c = Config::from_toml("[alloc]\npids = [1]\nevery = 0\n").expect("parses");
        let err = c.validate().expect_err("every = 0");
        assert!(err.to_string().contains("alloc.every"), "{err}");
        assert!(Config::from_toml("[alloc]\nperiod = 3\n").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("nginx", "nginx"));
        assert!(!glob_match("nginx", "nginx2"));
        assert!(glob_match("nginx*", "nginx: worker"));
        assert!(glob_match("*python*", "python3.11"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("*", ""));
    }
}
