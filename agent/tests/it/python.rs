//! Python functions in CPU stacks with no SDK, on real interpreters:
//! Debian's stripped `python3` (3.11) and pyenv's 3.8 to 3.13 running a
//! pure-Python loop whose split between two functions the script measures
//! itself, and Python called back from libc's `qsort` called from Python
//! through ctypes, which must read in the order it happened.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{Running, Stack, cpu_seconds, find_program, profile_pid, profile_pid_with};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Lines `[def, next def)` of function `name` in `script`.
fn body_lines(script: &Path, name: &str) -> std::ops::Range<i64> {
    let text = std::fs::read_to_string(script).expect("read the script");
    let defs: Vec<(i64, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("def ") || l.starts_with("if __name__"))
        .map(|(i, l)| (i as i64 + 1, l))
        .collect();
    let at = defs
        .iter()
        .position(|(_, l)| l.starts_with(&format!("def {name}(")))
        .expect("the function");
    defs[at].0..defs.get(at + 1).map_or(i64::MAX, |d| d.0)
}

/// Where the frame of `name` from `file` is in a stack (leaf first).
fn position(s: &Stack, name: &str, file: &Path) -> Option<usize> {
    let file = file.to_string_lossy();
    s.frames
        .iter()
        .position(|f| f.name == name && f.file == file)
}

/// Starts `script` under `python` for `seconds`, lets it get going, and
/// profiles it for two seconds less; returns its stacks, what it printed,
/// and the CPU seconds it used while profiled.
fn profile_script(python: &Path, script: &Path, seconds: u32) -> (Vec<Stack>, String, f64) {
    let w = Running::start(Command::new(python).arg(script).arg(seconds.to_string()));
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_seconds(w.pid());
    let stacks = profile_pid(w.pid(), seconds - 2);
    let cpu = cpu_seconds(w.pid()) - cpu;
    (stacks, w.output(), cpu)
}

fn split(python: &Path) {
    let script = script("python_split.py");
    let (stacks, out, cpu) = profile_script(python, &script, 16);
    let truth = |name: &str| -> f64 {
        let words: Vec<&str> = out.split_whitespace().collect();
        let i = words
            .iter()
            .position(|w| *w == name)
            .unwrap_or_else(|| panic!("no {name} share in {out:?}"));
        words[i + 1].parse().expect("a share")
    };
    let total: i64 = stacks.iter().map(|s| s.samples).sum();
    let sum = |f: &dyn Fn(&Stack) -> bool| -> i64 {
        stacks.iter().filter(|s| f(s)).map(|s| s.samples).sum()
    };
    let with_python = sum(&|s| s.frames.iter().any(|f| f.file.ends_with(".py")));
    let share = |name: &str| sum(&|s| position(s, name, &script).is_some()) as f64 / total as f64;
    let (heavy, light) = (share("heavy"), share("light"));
    println!(
        "{}: {total} samples, {:.2} % with Python frames; heavy {:.1} % (measured {:.1} %), light {:.1} % (measured {:.1} %)",
        python.display(),
        100.0 * with_python as f64 / total as f64,
        100.0 * heavy,
        100.0 * truth("heavy"),
        100.0 * light,
        100.0 * truth("light"),
    );
    // 99 samples per CPU second, whatever share of a core the script got
    // beside other tests; and enough of them for 5-point shares to hold.
    assert!(
        total as f64 >= 0.85 * 99.0 * cpu && total >= 400,
        "only {total} samples for {cpu:.2} s of CPU"
    );
    assert!(
        with_python as f64 >= 0.99 * total as f64,
        "{with_python} of {total} samples show a Python frame"
    );
    assert!((heavy - truth("heavy")).abs() <= 0.05, "heavy {heavy}");
    assert!((light - truth("light")).abs() <= 0.05, "light {light}");

    // Each function at its place, on a line of its own body.
    let spin = body_lines(&script, "spin");
    for s in stacks
        .iter()
        .filter(|s| position(s, "spin", &script).is_some())
    {
        let order: Vec<Option<usize>> = ["spin", "main", "<module>"]
            .iter()
            .map(|n| position(s, n, &script))
            .collect();
        let caller = position(s, "heavy", &script).or(position(s, "light", &script));
        assert!(
            matches!((order[0], caller, order[1], order[2]), (Some(a), Some(b), Some(c), Some(d)) if a < b && b < c && c < d),
            "out of order: {:?}",
            s.frames
        );
        let line = s.frames.iter().find(|f| f.name == "spin").map(|f| f.line);
        assert!(
            line.is_some_and(|l| spin.contains(&l)),
            "spin at line {line:?}, its body is {spin:?}"
        );
    }
}

#[test]
fn debian_python3_functions_and_their_split() {
    split(Path::new("/usr/bin/python3"));
}

#[test]
fn pyenv_python38_functions_and_their_split() {
    split(&find_program("python3.8", "3.8"));
}

#[test]
fn pyenv_python39_functions_and_their_split() {
    split(&find_program("python3.9", "3.9"));
}

#[test]
fn pyenv_python310_functions_and_their_split() {
    split(&find_program("python3.10", "3.10"));
}

#[test]
fn pyenv_python312_functions_and_their_split() {
    split(&find_program("python3.12", "3.12"));
}

#[test]
fn pyenv_python313_functions_and_their_split() {
    split(&find_program("python3.13", "3.13"));
}

/// Threads started after the agent met the process: each is found (from
/// 3.11 by its thread state's kernel thread id, before through glibc's
/// thread descriptor) and its samples show its own functions, from the
/// threading module's bootstrap down.
fn threads(python: &Path) {
    let script = script("python_threads.py");
    let (stacks, _, _) = profile_script(python, &script, 12);
    let in_thread = |s: &Stack| {
        s.frames
            .iter()
            .any(|f| f.name == "start_thread" || f.name.starts_with("clone"))
    };
    let sum = |f: &dyn Fn(&Stack) -> bool| -> i64 {
        stacks.iter().filter(|s| f(s)).map(|s| s.samples).sum()
    };
    let workers = sum(&|s| in_thread(s));
    let with_python = sum(&|s| in_thread(s) && s.frames.iter().any(|f| f.file.ends_with(".py")));
    let script = script.as_path();
    let whole = |name: &'static str| {
        move |s: &Stack| {
            let run = s
                .frames
                .iter()
                .position(|f| f.name.ends_with("run") && f.file.ends_with("threading.py"));
            matches!(
                (position(s, "busy", script), position(s, name, script), run),
                (Some(a), Some(b), Some(c)) if a < b && b < c
            )
        }
    };
    let (a, b) = (sum(&whole("worker_a")), sum(&whole("worker_b")));
    println!(
        "{}: {workers} samples in threads, {with_python} with Python frames, worker_a {a}, worker_b {b}",
        python.display()
    );
    // At most one core's worth (the threads take turns holding the GIL),
    // less beside another test's load: enough to judge a 98 % share.
    assert!(workers >= 300, "only {workers} samples in threads");
    assert!(
        with_python as f64 >= 0.98 * workers as f64,
        "{with_python} of {workers} thread samples show a Python frame"
    );
    for (n, name) in [(a, "worker_a"), (b, "worker_b")] {
        assert!(
            n as f64 >= 0.35 * workers as f64,
            "{name}: {n} of {workers}"
        );
    }
}

#[test]
fn pyenv_python39_threads_show_their_own_functions() {
    threads(&find_program("python3.9", "3.9"));
}

#[test]
fn debian_python3_threads_show_their_own_functions() {
    threads(Path::new("/usr/bin/python3"));
}

/// Worker processes forked by multiprocessing (a pre-forking server's
/// shape): each new process is looked at when first sampled, and its
/// samples show the pool's worker loop down to the task.
#[test]
fn forked_workers_show_their_functions() {
    let script = script("python_workers.py");
    let python = find_program("python3.12", "3.12");
    let w = Running::start(Command::new(&python).arg(&script).arg("12"));
    std::thread::sleep(Duration::from_millis(500));
    // The workers are children of the workload: select them by name too.
    let stacks = profile_pid_with(w.pid(), 10, &["--exe", "python3.12"]);
    let parent = i64::from(w.pid());
    let _ = w.output();
    let workers: Vec<&Stack> = stacks
        .iter()
        .filter(|s| s.pid.is_some_and(|p| p != parent))
        .filter(|s| {
            let pid = s.pid;
            stacks
                .iter()
                .any(|o| o.pid == pid && position(o, "crunch", &script).is_some())
        })
        .collect();
    let total: i64 = workers.iter().map(|s| s.samples).sum();
    let pool = |s: &Stack| {
        s.frames
            .iter()
            .position(|f| f.name == "worker" && f.file.ends_with("pool.py"))
    };
    let crunch: i64 = workers
        .iter()
        .filter(
            |s| matches!((position(s, "crunch", &script), pool(s)), (Some(a), Some(b)) if a < b),
        )
        .map(|s| s.samples)
        .sum();
    println!("forked workers: {total} samples, {crunch} in crunch under the pool's worker loop");
    // Two cores' worth at most, less beside another test's load.
    assert!(total >= 500, "only {total} samples of the workers");
    assert!(
        crunch as f64 >= 0.95 * total as f64,
        "{crunch} of {total} in crunch under pool.worker"
    );
}

/// With `-X perf` too, each Python function shows once: by name from its
/// frame, its trampoline's JIT frame dropped.
#[test]
fn perf_trampolines_do_not_double_functions() {
    let script = script("python_split.py");
    let python = find_program("python3.12", "3.12");
    let w = Running::start(
        Command::new(&python)
            .args(["-X", "perf"])
            .arg(&script)
            .arg("8"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let stacks = profile_pid(w.pid(), 6);
    let pid = w.pid();
    let _ = w.output();
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    let total: i64 = stacks.iter().map(|s| s.samples).sum();
    let named: i64 = stacks
        .iter()
        .filter(|s| position(s, "spin", &script).is_some())
        .map(|s| s.samples)
        .sum();
    // Samples taken before the agent knew the thread keep the
    // trampolines' names: they are the only names those samples have.
    let file = script.to_string_lossy();
    let doubled: Vec<&Stack> = stacks
        .iter()
        .filter(|s| s.frames.iter().any(|f| f.name.starts_with("py::")))
        .filter(|s| s.frames.iter().any(|f| f.file == file))
        .collect();
    println!(
        "python -X perf: {total} samples, {named} in spin, {} with both names",
        doubled.len()
    );
    assert!(
        named as f64 >= 0.8 * total as f64,
        "{named} of {total} in spin"
    );
    assert!(
        doubled.is_empty(),
        "trampoline frames left: {:?}",
        doubled[0].frames
    );
}

#[test]
fn python_called_back_from_c_reads_in_order() {
    let script = script("python_callback.py");
    let (stacks, _, _) = profile_script(Path::new("/usr/bin/python3"), &script, 12);
    let total: i64 = stacks.iter().map(|s| s.samples).sum();
    let (mut compare, mut in_order) = (0, 0);
    for s in &stacks {
        let Some(leaf) = position(s, "compare", &script) else {
            continue;
        };
        compare += s.samples;
        // compare (Python) <- libc's qsort (C) <- sort_many (Python).
        let qsort = s
            .frames
            .iter()
            .position(|f| f.module == "libc.so.6" && f.name.contains("qsort"));
        let caller = position(s, "sort_many", &script);
        let module = position(s, "<module>", &script);
        if matches!((qsort, caller, module), (Some(q), Some(c), Some(m)) if leaf < q && q < c && c < m)
        {
            in_order += s.samples;
        } else {
            println!("out of order: {:?}", s.frames);
        }
    }
    println!("{total} samples, {compare} in compare, {in_order} of them in order");
    assert!(compare as f64 >= 0.3 * total as f64, "{compare} of {total}");
    assert!(
        in_order as f64 >= 0.99 * compare as f64,
        "{in_order} of {compare}"
    );
}
