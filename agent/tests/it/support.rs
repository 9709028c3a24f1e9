//! Shared test helpers: ground-truth workloads (built at test time with gcc
//! and rustc), reading the profiles an agent shipped, and bounded waits.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use firewatch_profile::Limits;
use firewatch_profile::pprof::{decode, proto};

const C_SOURCE: &str = include_str!("../data/workload.c");
const C_ALLOC_SOURCE: &str = include_str!("../data/alloc.c");
const RUST_SOURCE: &str = include_str!("../data/workload.rs");
const C_DEEP_SOURCE: &str = include_str!("../data/deep.c");

fn build_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("firewatch-agent-workloads");
    std::fs::create_dir_all(&dir).expect("create the workload build directory");
    dir
}

/// Builds `source` once per content: the output name carries a hash, and a
/// build goes to a temporary name renamed into place, so concurrent test
/// processes share one binary.
fn build_once(name: &str, source: &str, build: impl FnOnce(&Path, &Path) -> Command) -> PathBuf {
    let mut h = DefaultHasher::new();
    source.hash(&mut h);
    let out = build_dir().join(format!("{name}-{:016x}", h.finish()));
    if out.exists() {
        return out;
    }
    let ext = if name.starts_with("rust") { "rs" } else { "c" };
    let src = build_dir().join(format!("{name}-{}.{ext}", std::process::id()));
    std::fs::write(&src, source).expect("write workload source");
    let tmp = build_dir().join(format!("{name}-{}.tmp", std::process::id()));
    let status = build(&src, &tmp)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the compiler for {name}: {e}"));
    assert!(status.success(), "building {name} failed");
    std::fs::rename(&tmp, &out).expect("move the workload into place");
    let _ = std::fs::remove_file(&src);
    out
}

/// A C program built as every C workload is: `gcc -O2
/// -fomit-frame-pointer -g -pthread`.
fn build_c(name: &str, source: &str) -> PathBuf {
    build_once(name, source, |src, out| {
        let mut c = Command::new("gcc");
        c.args(["-O2", "-fomit-frame-pointer", "-g", "-pthread"])
            .arg(src)
            .arg("-o")
            .arg(out);
        c
    })
}

/// The C workload: `-O2 -fomit-frame-pointer`, two threads, 75/25 split.
pub fn c_workload() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build_c("c-workload", C_SOURCE))
}

/// The C allocation workload: `-O2 -fomit-frame-pointer`, two functions
/// allocating about 70% / 30% of the bytes.
pub fn c_alloc_workload() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build_c("c-alloc", C_ALLOC_SOURCE))
}

/// The deep-stack workload (`deep.c`): `-O2 -fomit-frame-pointer`, 2,000
/// frames of about 400 bytes, or outer frames that change every round.
pub fn c_deep_workload() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build_c("c-deep", C_DEEP_SOURCE))
}

/// The Rust workload: release, no frame pointers, line tables.
pub fn rust_workload() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        build_once("rust-workload", RUST_SOURCE, |src, out| {
            let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
            let mut c = Command::new(rustc);
            c.args([
                "--edition",
                "2021",
                "-O",
                "-C",
                "debuginfo=line-tables-only",
                "-C",
                "force-frame-pointers=no",
                "--crate-name",
                "fw_rust_workload",
            ])
            .arg(src)
            .arg("-o")
            .arg(out);
            c
        })
    })
}

/// A running workload.
pub struct Workload {
    child: Option<Child>,
}

impl Workload {
    /// Starts `path` for `seconds` of wall time.
    pub fn start(path: &Path, seconds: f64) -> Workload {
        let child = Command::new(path)
            .arg(seconds.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        Workload { child: Some(child) }
    }

    /// Starts `path` for `seconds` of wall time with `--wait`, and returns
    /// once it has loaded (libc mapped) and waits: it starts working when
    /// [`Workload::go`] is called.
    pub fn start_held(path: &Path, seconds: f64) -> Workload {
        let child = Command::new(path)
            .arg(seconds.to_string())
            .arg("--wait")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let pid = child.id();
        let w = Workload { child: Some(child) };
        let held = wait_until(Duration::from_secs(30), || {
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the parenthesised name; S: blocked reading.
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            maps.contains("libc.so") && state == Some('S')
        });
        assert!(held, "{} did not start", path.display());
        w
    }

    /// Lets a held workload start.
    pub fn go(&mut self) {
        use std::io::Write;
        if let Some(mut stdin) = self.child.as_mut().and_then(|c| c.stdin.take()) {
            let _ = writeln!(stdin);
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Waits for it (at most `timeout`) and returns its own measurement:
    /// (hot seconds, cold seconds).
    pub fn finish(self, timeout: Duration) -> (f64, f64) {
        let text = self.finish_output(timeout);
        let mut parts = text
            .split_whitespace()
            .map(|s| s.parse::<f64>().unwrap_or(f64::NAN));
        let (hot, cold) = (
            parts.next().unwrap_or(f64::NAN),
            parts.next().unwrap_or(f64::NAN),
        );
        assert!(hot > 0.0 && cold > 0.0, "workload printed {text:?}");
        (hot, cold)
    }

    /// Waits for it (at most `timeout`) and returns what it printed.
    pub fn finish_output(mut self, timeout: Duration) -> String {
        let mut child = self.child.take().expect("running workload");
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    panic!("the workload did not finish within {timeout:?}");
                }
            }
        }
        let out = child.wait_with_output().expect("workload output");
        assert!(out.status.success(), "workload failed: {:?}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One frame of a decoded sample.
#[derive(Clone, Debug)]
pub struct FrameInfo {
    /// Function name.
    pub name: String,
    /// The mapping's file name.
    pub module: String,
    /// Source file, empty when unknown.
    pub file: String,
    /// Line in `file`, 0 when unknown.
    pub line: i64,
}

impl FrameInfo {
    /// True when a symbol named it (not `module+0xoffset`).
    pub fn named(&self) -> bool {
        !self.name.contains("+0x")
    }
}

/// One decoded sample.
#[derive(Clone, Debug)]
pub struct Stack {
    /// Frames, leaf first (inlined functions expanded).
    pub frames: Vec<FrameInfo>,
    /// The first value (`samples/count` in CPU profiles).
    pub samples: i64,
    /// Every value, in the order of the profile's sample types.
    pub values: Vec<i64>,
    /// `pid` label.
    pub pid: Option<i64>,
    /// `thread_name` label.
    pub thread: Option<String>,
}

impl Stack {
    /// True when a frame has this exact name.
    pub fn has(&self, name: &str) -> bool {
        self.frames.iter().any(|f| f.name == name)
    }
}

/// Decodes a zstd, gzip or raw pprof.
pub fn decode_pprof(body: &[u8]) -> proto::Profile {
    decode(body, &Limits::default()).expect("a valid pprof")
}

/// The samples of a pprof as stacks with names and labels.
pub fn stacks(p: &proto::Profile) -> Vec<Stack> {
    let s = |i: i64| {
        p.string_table
            .get(usize::try_from(i).unwrap_or(0))
            .cloned()
            .unwrap_or_default()
    };
    let functions: std::collections::HashMap<u64, (String, String)> = p
        .function
        .iter()
        .map(|f| (f.id, (s(f.name), s(f.filename))))
        .collect();
    let mappings: std::collections::HashMap<u64, String> = p
        .mapping
        .iter()
        .map(|m| {
            (
                m.id,
                s(m.filename).rsplit('/').next().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let locations: std::collections::HashMap<u64, Vec<FrameInfo>> = p
        .location
        .iter()
        .map(|l| {
            let module = mappings.get(&l.mapping_id).cloned().unwrap_or_default();
            let frames = l
                .line
                .iter()
                .map(|line| {
                    let (name, file) = functions
                        .get(&line.function_id)
                        .cloned()
                        .unwrap_or_default();
                    FrameInfo {
                        name,
                        module: module.clone(),
                        file,
                        line: line.line,
                    }
                })
                .collect();
            (l.id, frames)
        })
        .collect();
    p.sample
        .iter()
        .map(|sample| Stack {
            frames: sample
                .location_id
                .iter()
                .flat_map(|id| locations.get(id).cloned().unwrap_or_default())
                .collect(),
            samples: sample.value.first().copied().unwrap_or(0),
            values: sample.value.clone(),
            pid: sample
                .label
                .iter()
                .find(|l| s(l.key) == "pid")
                .map(|l| l.num),
            thread: sample
                .label
                .iter()
                .find(|l| s(l.key) == "thread_name")
                .map(|l| s(l.str)),
        })
        .collect()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Shares (percent) of samples whose stack holds `a`, and holds `b`, among
/// samples holding either.
pub fn split(stacks: &[Stack], a: &str, b: &str) -> (f64, f64, i64) {
    let (mut na, mut nb) = (0i64, 0i64);
    for s in stacks {
        if s.has(a) {
            na += s.samples;
        } else if s.has(b) {
            nb += s.samples;
        }
    }
    let total = (na + nb).max(1) as f64;
    (
        na as f64 * 100.0 / total,
        nb as f64 * 100.0 / total,
        na + nb,
    )
}

/// Runs the agent on `pid` for `seconds` and returns every stack it dumped.
pub fn profile_pid(pid: u32, seconds: u32) -> Vec<Stack> {
    profile_pid_with(pid, seconds, &[])
}

/// CPU time a process has used so far (user + system), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime and stime are fields 14 and 15: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / hz
}

/// [`profile_pid`] with more agent arguments.
pub fn profile_pid_with(pid: u32, seconds: u32, args: &[&str]) -> Vec<Stack> {
    profile_pid_counted(pid, seconds, args).0
}

/// Like [`profile_pid_with`], with the agent's counters of its last window
/// (`name=value` pairs of its "window shipped" line).
pub fn profile_pid_counted(
    pid: u32,
    seconds: u32,
    args: &[&str],
) -> (Vec<Stack>, HashMap<String, String>) {
    let dir = std::env::temp_dir().join(format!("firewatch-fidelity-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_firewatch-agent"))
        .args(["--no-ship", "--upload-interval", "2s", "--duration"])
        .arg(format!("{seconds}s"))
        .args(["--pid", &pid.to_string(), "--dump-dir"])
        .arg(&dir)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run the agent");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // The agent's counters, for a failure to be read from the test's output.
    let mut counters = HashMap::new();
    if let Some(last) = log.lines().rev().find(|l| l.contains("window shipped")) {
        let tail = last.split_once("samples=").map_or(last, |(_, r)| r);
        println!("agent: {tail}");
        for pair in last.split_whitespace() {
            if let Some((k, v)) = pair.split_once('=') {
                counters.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    let mut all = Vec::new();
    for f in std::fs::read_dir(&dir).expect("dump directory").flatten() {
        let p = decode_pprof(&std::fs::read(f.path()).expect("read dump"));
        all.extend(stacks(&p));
    }
    let _ = std::fs::remove_dir_all(&dir);
    (all, counters)
}

pub struct Running(Child);

impl Running {
    pub fn start(cmd: &mut Command) -> Running {
        let child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Running(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn output(mut self) -> String {
        let child = std::mem::replace(&mut self.0, Command::new("true").spawn().expect("true"));
        let out = child.wait_with_output().expect("workload output");
        assert!(out.status.success(), "workload failed: {:?}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds an interpreter that runs: under pyenv's versions whose name
/// starts with `version_prefix`, else on the PATH.
pub fn find_program(name: &str, version_prefix: &str) -> PathBuf {
    let root = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(&std::env::var("HOME").unwrap_or_default()).join(".pyenv"));
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(version_prefix))
        .map(|e| e.path().join("bin").join(name))
        .collect();
    candidates.sort();
    candidates.reverse();
    candidates.push(PathBuf::from(name));
    candidates
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| panic!("{name} is needed (under pyenv's versions or on the PATH)"))
}
