//! Stacks of real programs nobody tuned the agent for: 2,000-frame C
//! recursion, outer frames that change every few milliseconds (where a
//! wrong splice would show a stack that never existed), Node's JIT through
//! its perf map, and CPython 3.12's perf trampoline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Stack, c_deep_workload, decode_pprof, stacks, wait_until};

const DEPTH: usize = 2000;
const TRUNCATED: &str = "[truncated stack]";

/// Runs the agent on `pid` for `seconds` and returns every stack it dumped.
fn profile_pid(pid: u32, seconds: u32) -> Vec<Stack> {
    let dir = std::env::temp_dir().join(format!("firewatch-fidelity-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_firewatch-agent"))
        .args(["--no-ship", "--upload-interval", "2s", "--duration"])
        .arg(format!("{seconds}s"))
        .args(["--pid", &pid.to_string(), "--dump-dir"])
        .arg(&dir)
        .env("RUST_LOG", "info")
        .output()
        .expect("run the agent");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // The agent's counters, for a failure to be read from the test's output.
    if let Some(last) = log.lines().rev().find(|l| l.contains("window shipped")) {
        println!(
            "agent: {}",
            last.split_once("samples=").map_or(last, |(_, r)| r)
        );
    }
    let mut all = Vec::new();
    for f in std::fs::read_dir(&dir).expect("dump directory").flatten() {
        let p = decode_pprof(&std::fs::read(f.path()).expect("read dump"));
        all.extend(stacks(&p));
    }
    let _ = std::fs::remove_dir_all(&dir);
    all
}

struct Running(Child);

impl Running {
    fn start(cmd: &mut Command) -> Running {
        let child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Running(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn output(mut self) -> String {
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

fn names(s: &Stack) -> impl Iterator<Item = &str> {
    s.frames.iter().map(|f| f.name.as_str())
}

#[test]
fn two_thousand_frames_deep_stacks_are_complete_to_start_thread() {
    let w = Running::start(Command::new(c_deep_workload()).args(["fixed", "23"]));
    // Past the recursion, into the leaf. The run is long enough that the
    // samples still waiting for their thread's next one when the agent
    // stops (a drain's worth, given up) stay well under a percent.
    std::thread::sleep(Duration::from_millis(500));
    let all = profile_pid(w.pid(), 20);
    let _ = w.output();
    let (mut leaf, mut complete) = (0i64, 0i64);
    for s in all.iter().filter(|s| s.has("fw_deep_leaf")) {
        leaf += s.samples;
        let deep = names(s).filter(|&n| n == "fw_deep").count();
        if deep == DEPTH && s.has("start_thread") && !s.has(TRUNCATED) {
            complete += s.samples;
        }
    }
    let share = complete as f64 * 100.0 / leaf.max(1) as f64;
    println!(
        "deep fixed: {complete} of {leaf} leaf samples carry all {DEPTH} frames ({share:.1} %)"
    );
    assert!(leaf >= 500, "only {leaf} leaf samples");
    assert!(share >= 99.0, "{share:.1} % complete");
}

#[test]
fn a_frame_too_large_for_framehop_unwinds_to_start_thread() {
    let w = Running::start(Command::new(c_deep_workload()).args(["huge", "13"]));
    std::thread::sleep(Duration::from_millis(300));
    let all = profile_pid(w.pid(), 11);
    let _ = w.output();
    let (mut leaf, mut complete) = (0i64, 0i64);
    for s in all.iter().filter(|s| s.has("fw_deep_leaf")) {
        leaf += s.samples;
        if s.has("fw_huge") && s.has("start_thread") && !s.has(TRUNCATED) {
            complete += s.samples;
        }
    }
    let share = complete as f64 * 100.0 / leaf.max(1) as f64;
    println!(
        "deep huge: {complete} of {leaf} leaf samples unwind through the 600 KiB frame ({share:.1} %)"
    );
    assert!(leaf >= 300, "only {leaf} leaf samples");
    // Without its own rule for the frame every one of these stacks ends
    // there (framehop falls back to frame pointers); a few may end
    // truncated when the machine is loaded (the check needs the thread's
    // next sample in time).
    assert!(share >= 95.0, "{share:.1} % complete");
}

/// `pattern()` of deep.c: which step function runs at `level` in a round
/// of pattern `p` (0, 1, 2 for fw_step_a, _b, _c).
fn pattern(p: u32, level: u32) -> u32 {
    let mut h = (p + 1).wrapping_mul(2_654_435_761) ^ (level + 1).wrapping_mul(40_503);
    h ^= h >> 15;
    h = h.wrapping_mul(2_246_822_519);
    h ^= h >> 13;
    h % 3
}

/// True when the stack, read from fw_round inward, follows one pattern.
fn existed(s: &Stack) -> bool {
    // Leaf first: reversed, the first step is level 0.
    let steps: Vec<u32> = names(s)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .skip_while(|&n| n != "fw_round")
        .filter_map(|n| match n {
            "fw_step_a" => Some(0),
            "fw_step_b" => Some(1),
            "fw_step_c" => Some(2),
            _ => None,
        })
        .collect();
    s.has("fw_round")
        && (0..7).any(|p| {
            steps
                .iter()
                .enumerate()
                .all(|(level, &x)| pattern(p, level as u32) == x)
        })
}

#[test]
fn changing_outer_frames_never_show_a_stack_that_did_not_exist() {
    let w = Running::start(Command::new(c_deep_workload()).args(["changing", "12"]));
    let all = profile_pid(w.pid(), 11);
    let _ = w.output();
    let (mut stepping, mut truncated, mut complete, mut lies) = (0i64, 0i64, 0i64, 0i64);
    let mut example = None;
    for s in all
        .iter()
        .filter(|s| s.has("fw_step_a") || s.has("fw_step_b") || s.has("fw_step_c"))
    {
        stepping += s.samples;
        if s.has(TRUNCATED) {
            truncated += s.samples;
        } else if existed(s) {
            complete += s.samples;
        } else {
            lies += s.samples;
            example.get_or_insert_with(|| names(s).take(12).collect::<Vec<_>>().join(";"));
        }
    }
    println!(
        "deep changing: {stepping} samples, {complete} complete, {truncated} truncated, {lies} never existed"
    );
    assert!(stepping >= 500, "only {stepping} samples in the rounds");
    assert!(truncated > 0, "no sample went deeper than its stack copy");
    assert_eq!(lies, 0, "stacks that never existed, e.g. {example:?}");
}

/// Finds an interpreter that runs: under pyenv's versions whose name
/// starts with `version_prefix`, else on the PATH.
fn find_program(name: &str, version_prefix: &str) -> PathBuf {
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

/// Waits until process `pid` has written its perf map (once its JIT has
/// compiled something).
fn wait_for_perf_map(pid: u32, who: &str) {
    let path = format!("/tmp/perf-{pid}.map");
    assert!(
        wait_until(Duration::from_secs(20), || Path::new(&path).exists()),
        "{who} wrote no perf map"
    );
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Shares (percent) of `a` and `b` among samples whose stack holds a frame
/// whose name contains either.
fn split_containing(all: &[Stack], a: &str, b: &str) -> (f64, f64) {
    let (mut na, mut nb) = (0i64, 0i64);
    for s in all {
        if s.frames.iter().any(|f| f.name.contains(a)) {
            na += s.samples;
        } else if s.frames.iter().any(|f| f.name.contains(b)) {
            nb += s.samples;
        }
    }
    let total = (na + nb).max(1) as f64;
    (na as f64 * 100.0 / total, nb as f64 * 100.0 / total)
}

fn node_case(flags: &[&str]) {
    let node = find_program("node", "node-");
    // V8 writes its logs (isolate-*.log) into the working directory.
    let cwd = std::env::temp_dir().join(format!(
        "firewatch-node-{}-{}",
        std::process::id(),
        flags.len()
    ));
    std::fs::create_dir_all(&cwd).expect("node's directory");
    let w = Running::start(
        Command::new(node)
            .current_dir(&cwd)
            .args(flags)
            .arg(data("jit_split.js"))
            .arg("8"),
    );
    let pid = w.pid();
    wait_for_perf_map(pid, "node");
    let all = profile_pid(pid, 6);
    let measured = w.output();
    let hot_measured = measured
        .split("\"hot\":")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("node printed {measured:?}"))
        * 100.0;
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    let _ = std::fs::remove_dir_all(&cwd);
    let (hot, cold) = split_containing(&all, "hotSpin", "coldSpin");
    let jit: Vec<_> = all
        .iter()
        .flat_map(|s| s.frames.iter().map(move |f| (f, s.samples)))
        .filter(|(f, _)| f.module == "[anon]")
        .collect();
    let jit_total: i64 = jit.iter().map(|(_, n)| n).sum();
    let jit_named: i64 = jit.iter().filter(|(f, _)| f.named()).map(|(_, n)| n).sum();
    let named = jit_named as f64 * 100.0 / jit_total.max(1) as f64;
    println!(
        "node {flags:?}: hotSpin {hot:.1} % / coldSpin {cold:.1} % (measured {hot_measured:.1} %), JIT frames named {named:.2} % of {jit_total}"
    );
    assert!(jit_total > 100, "only {jit_total} JIT frames");
    assert!(named >= 99.0, "{named:.2} % of JIT frames named");
    assert!(
        (hot - hot_measured).abs() <= 5.0,
        "hotSpin {hot:.1} % in the profile, {hot_measured:.1} % measured"
    );
}

#[test]
fn node_jit_frames_are_named_from_its_perf_map() {
    node_case(&["--perf-basic-prof"]);
}

#[test]
fn node_interpreted_frames_are_named_too() {
    node_case(&["--perf-basic-prof", "--interpreted-frames-native-stack"]);
}

#[test]
fn python_functions_are_named_through_the_perf_trampoline() {
    let python = find_program("python3.12", "3.12");
    let w = Running::start(
        Command::new(python)
            .args(["-X", "perf"])
            .arg(data("py_perf.py"))
            .arg("6"),
    );
    let pid = w.pid();
    wait_for_perf_map(pid, "python");
    let all = profile_pid(pid, 4);
    let _ = w.output();
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    let (hot, cold) = split_containing(&all, "py::hot_loop:", "py::cold_loop:");
    let python: Vec<_> = all
        .iter()
        .filter(|s| s.frames.iter().any(|f| f.name.starts_with("py::")))
        .collect();
    let total: i64 = python.iter().map(|s| s.samples).sum();
    // Through the trampolines (no unwind information, no frame pointer)
    // to the process's entry.
    let whole: i64 = python
        .iter()
        .filter(|s| s.has("_start") && !s.has(TRUNCATED))
        .map(|s| s.samples)
        .sum();
    let complete = whole as f64 * 100.0 / total.max(1) as f64;
    println!(
        "python -X perf: hot_loop {hot:.1} % / cold_loop {cold:.1} %, {complete:.1} % of {total} stacks reach _start"
    );
    assert!(
        hot > 50.0 && cold > 5.0,
        "hot_loop {hot:.1} %, cold_loop {cold:.1} %"
    );
    assert!(
        complete >= 99.0,
        "{complete:.1} % of Python stacks complete"
    );
}
