//! Stacks of real programs nobody tuned the agent for: 2,000-frame C
//! recursion, outer frames that change every few milliseconds (where a
//! wrong splice would show a stack that never existed), Node's JIT through
//! its perf map, and CPython 3.12's perf trampoline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{
    Running, Stack, c_deep_workload, decode_pprof, find_program, profile_pid, profile_pid_counted,
    profile_pid_with, stacks, wait_until,
};

const DEPTH: usize = 2000;
const TRUNCATED: &str = "[truncated stack]";

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
    let (all, counters) = profile_pid_counted(w.pid(), 11, &[]);
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
    // The words past the copy are read with each sample once the first
    // complete unwind has said which: nearly every stack is complete from
    // the sample alone, needing no later read or confirmation (the
    // agent's counters, over the whole run).
    let count = |k: &str| counters.get(k).and_then(|v| v.parse::<f64>().ok());
    let (sampled, beyond) = (count("sampled"), count("beyond_copy"));
    println!(
        "deep huge: {sampled:?} of {beyond:?} stacks past the copy completed from words read with the sample"
    );
    let (Some(sampled), Some(beyond)) = (sampled, beyond) else {
        panic!("no counters in the agent's log: {counters:?}");
    };
    assert!(
        beyond > 0.0 && sampled >= 0.9 * beyond,
        "{sampled} of {beyond}"
    );
}

/// The version of `package` in the workspace's lock file.
fn locked_version(package: &str) -> String {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let text = std::fs::read_to_string(&lock).expect("the workspace's Cargo.lock");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"") {
            let v = lines.next().unwrap_or_default();
            return v
                .trim_start_matches("version = ")
                .trim_matches('"')
                .to_owned();
        }
    }
    panic!("{package} is not in {}", lock.display());
}

/// rustc compiling real crates of our own dependency tree (regex, serde
/// with its derive, serde_json: from cargo's cache, offline), profiled as
/// any process named rustc:
/// nearly every sample's stack reaches a thread entry. Its frames are
/// large (a 32 KiB copy holds about fifteen of them) and it runs on
/// stacker's segments; without the words read past the copy with each
/// sample about 70 % of its stacks were complete, without any reading past
/// the copy 30 %. `agent/benches/deep_stacks.sh` prints the same figure
/// for a larger build next to perf's.
#[test]
fn rustc_stacks_reach_a_thread_entry() {
    let dir = std::env::temp_dir().join(format!("firewatch-rustc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).expect("crate directory");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fw-rustc-stacks\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nregex = \"={}\"\nserde = {{ version = \"={}\", features = [\"derive\"] }}\n\
             serde_json = \"={}\"\n",
            locked_version("regex"),
            locked_version("serde"),
            locked_version("serde_json"),
        ),
    )
    .expect("Cargo.toml");
    std::fs::write(
        dir.join("src/lib.rs"),
        "#[derive(serde::Serialize, serde::Deserialize)]\n\
         pub struct Row { pub name: String, pub values: Vec<u32> }\n\
         pub fn rows(text: &str) -> String {\n\
             let re = regex::Regex::new(r\"(\\w+)=(\\d+)\").unwrap();\n\
             let rows: Vec<Row> = re.captures_iter(text).map(|c| Row { name: c[1].to_owned(), values: vec![c[2].parse().unwrap()] }).collect();\n\
             serde_json::to_string(&rows).unwrap()\n\
         }\n",
    )
    .expect("lib.rs");
    let dump = dir.join("dump");
    let log_path = dir.join("agent.log");
    let log = std::fs::File::create(&log_path).expect("agent log");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_firewatch-agent"))
        .args([
            "--no-ship",
            "--upload-interval",
            "2s",
            "--exe",
            "rustc",
            "--dump-dir",
        ])
        .arg(&dump)
        .env("RUST_LOG", "info")
        .stderr(log)
        .spawn()
        .expect("start the agent");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(30), || read_log().contains("sampling")),
        "the agent did not start:\n{}",
        read_log()
    );
    let build = Command::new("cargo")
        .args(["build", "--offline", "-j", "2"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .expect("run cargo");
    // SAFETY: signalling a child we started and have not waited for.
    unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGINT) };
    let status = agent.wait().expect("the agent's exit");
    assert!(
        build.status.success(),
        "cargo build --offline of regex, serde and serde_json (are they in cargo's cache?):\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    assert!(status.success(), "agent: {status}\n{}", read_log());
    let (mut all, mut complete) = (0i64, 0i64);
    for f in std::fs::read_dir(&dump).expect("dumps").flatten() {
        let p = decode_pprof(&std::fs::read(f.path()).expect("read dump"));
        for s in stacks(&p) {
            all += s.samples;
            if !s.has(TRUNCATED) {
                complete += s.samples;
            }
        }
    }
    let counters = read_log()
        .lines()
        .rev()
        .find(|l| l.contains("window shipped"))
        .and_then(|l| l.split_once("beyond_copy=").map(|(_, r)| r.to_owned()))
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let share = complete as f64 * 100.0 / all.max(1) as f64;
    println!(
        "rustc: {complete} of {all} samples reach a thread entry ({share:.1} %); beyond_copy={counters}"
    );
    assert!(all >= 500, "only {all} rustc samples");
    // 96-97 % with the release build (the benchmark); the test's debug
    // build handles its samples later, so more threads' first deep samples
    // come before their words are published.
    assert!(share >= 85.0, "{share:.1} % of rustc's stacks complete");
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
    let (na, nb) = counts_containing(all, a, b);
    let total = (na + nb).max(1) as f64;
    (na as f64 * 100.0 / total, nb as f64 * 100.0 / total)
}

/// Samples whose stack holds a frame whose name contains `a`, and (of the
/// others) `b`.
fn counts_containing(all: &[Stack], a: &str, b: &str) -> (i64, i64) {
    let (mut na, mut nb) = (0i64, 0i64);
    for s in all {
        if s.frames.iter().any(|f| f.name.contains(a)) {
            na += s.samples;
        } else if s.frames.iter().any(|f| f.name.contains(b)) {
            nb += s.samples;
        }
    }
    (na, nb)
}

/// How far (percentage points) a sampled share of `n` samples may stray
/// from the measured `share` (percent): four standard deviations of the
/// binomial plus two points for what the workload's own clock misses.
/// With 300 samples of an 80 % share that is about 11 points; a frame
/// misattributed wholesale moves the share by far more.
fn sampling_tolerance(share: f64, n: i64) -> f64 {
    let p = (share / 100.0).clamp(0.0, 1.0);
    2.0 + 400.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt()
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
    let (na, nb) = counts_containing(&all, "hotSpin", "coldSpin");
    let tolerance = sampling_tolerance(hot_measured, na + nb);
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
        (hot - hot_measured).abs() <= tolerance,
        "hotSpin {hot:.1} % in the profile, {hot_measured:.1} % measured (tolerance {tolerance:.1} points for {} samples)",
        na + nb
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
    // The trampolines alone: the agent's own Python reader would name the
    // same functions from their frames (see python.rs).
    let all = profile_pid_with(pid, 4, &["--no-python"]);
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
