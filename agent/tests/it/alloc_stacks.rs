//! Allocation probes (uprobes on libc's `malloc`, `calloc`, `realloc`) of
//! chosen processes, against a C program that counts its own calls and
//! bytes; a process not chosen is not probed, nothing is probed when the
//! `[alloc]` table is empty, and the sampling path allocates nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firewatch_agent::Agent;
use firewatch_agent::config::{AllocTargets, Config, Targets};
use firewatch_agent::metrics::Metrics;
use firewatch_agent::sample::Sampler;
use firewatch_agent::sample::events::online_cpus;
use firewatch_profile::pprof::proto;

use crate::count_allocations;
use crate::support::{Stack, Workload, c_alloc_workload, decode_pprof, stacks};

const SECONDS: f64 = 4.0;
/// Calls per sample: a prime, small enough for a thousand samples or so.
const EVERY: u64 = 31;

/// What the workload counted: bytes and calls of `fw_alloc_big` and
/// `fw_alloc_small`, and calls of its main thread and of `fw-late`.
struct Truth {
    big_bytes: f64,
    small_bytes: f64,
    big_calls: f64,
    small_calls: f64,
    main_calls: f64,
    late_calls: f64,
}

fn truth(text: &str) -> Truth {
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|s| s.parse().unwrap_or(f64::NAN))
        .collect();
    assert!(
        v.len() == 6 && v.iter().all(|x| *x > 0.0),
        "workload printed {text:?}"
    );
    Truth {
        big_bytes: v[0],
        small_bytes: v[1],
        big_calls: v[2],
        small_calls: v[3],
        main_calls: v[4],
        late_calls: v[5],
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("firewatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The workload under a name the `[alloc]` pattern does not match.
fn untargeted_copy(path: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("temporary directory");
    let copy = dir.join("fw-untargeted-alloc");
    std::fs::copy(path, &copy).expect("copy the workload");
    copy
}

/// Dumped profiles with their file names.
type Dumps = Vec<(String, proto::Profile)>;

/// The dumped profiles: allocation profiles, then CPU profiles.
fn dumped(dir: &Path) -> (Dumps, Dumps) {
    let mut alloc = Vec::new();
    let mut cpu = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dump directory").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".pb.zst") {
            continue;
        }
        let p = decode_pprof(&std::fs::read(entry.path()).expect("read a dump"));
        let is_alloc = sample_types(&p).iter().any(|(t, _)| t == "alloc_space");
        assert_eq!(is_alloc, name.ends_with(".alloc.pb.zst"), "{name}");
        if is_alloc {
            alloc.push((name, p));
        } else {
            cpu.push((name, p));
        }
    }
    (alloc, cpu)
}

fn sample_types(p: &proto::Profile) -> Vec<(String, String)> {
    let s = |i: i64| p.string_table[i as usize].clone();
    p.sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect()
}

/// Shares (percent) of value `column` in stacks through `a`, and through `b`.
fn shares(stacks: &[&Stack], a: &str, b: &str, column: usize) -> (f64, f64) {
    let sum = |f: &str| -> f64 {
        stacks
            .iter()
            .filter(|s| s.has(f))
            .map(|s| s.values[column] as f64)
            .sum()
    };
    let (x, y) = (sum(a), sum(b));
    (x * 100.0 / (x + y), y * 100.0 / (x + y))
}

#[test]
fn allocation_profiles_show_the_allocating_functions_of_the_probed_process_only() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "firewatch_agent::sample=debug",
        ))
        .with_test_writer()
        .try_init();
    let dir = temp_dir("alloc-dump");
    let targeted = c_alloc_workload();
    let other = untargeted_copy(targeted, &temp_dir("alloc-copy"));
    let mut a = Workload::start_held(targeted, SECONDS);
    let mut b = Workload::start_held(&other, SECONDS);
    let (pid_a, pid_b) = (a.pid(), b.pid());
    let config = Config {
        no_ship: true,
        dump_dir: Some(dir.clone()),
        // One window, cut when the agent stops: while the processing thread
        // is busy with a window (slow in a debug build on a loaded
        // machine), the sampling thread may wait, and the new thread's
        // probes with it.
        upload_interval: Duration::from_secs(30),
        // Both are profiled for CPU; only the first is probed.
        targets: Targets {
            pids: vec![pid_a, pid_b],
            ..Targets::default()
        },
        alloc: AllocTargets {
            executables: vec!["c-alloc-*".into()],
            every: EVERY,
            ..AllocTargets::default()
        },
        // Shallow C stacks; rings roomy enough to lose nothing.
        stack_bytes: 16 << 10,
        ring_buffer_bytes: 8 << 20,
        host: Some("test-host".into()),
        ..Config::default()
    };
    // The probes are in place when the agent has started.
    let agent = Agent::start(config).expect("the agent starts (tests run as root)");
    a.go();
    b.go();
    let t = truth(&a.finish_output(Duration::from_secs_f64(SECONDS + 60.0)));
    let _ = b.finish_output(Duration::from_secs_f64(SECONDS + 60.0));
    let m = agent.stop(Duration::from_secs(5));
    let (alloc, cpu) = dumped(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(other.parent().unwrap_or(&other));

    assert!(
        !alloc.is_empty(),
        "no allocation profile among {} dumps",
        cpu.len()
    );
    for (name, p) in &alloc {
        assert_eq!(
            sample_types(p),
            vec![
                ("alloc_objects".into(), "count".into()),
                ("alloc_space".into(), "bytes".into())
            ],
            "{name}"
        );
        assert_eq!(p.period, EVERY as i64);
        assert!(
            !name.contains("untargeted"),
            "the process not named has an allocation profile: {name}"
        );
    }
    let all: Vec<Stack> = alloc.iter().flat_map(|(_, p)| stacks(p)).collect();
    assert!(
        all.iter().all(|s| s.pid != Some(i64::from(pid_b))),
        "allocation samples of the process not named"
    );
    let ours: Vec<&Stack> = all
        .iter()
        .filter(|s| s.pid == Some(i64::from(pid_a)))
        .collect();
    let samples: i64 = ours.iter().map(|s| s.values[0]).sum::<i64>() / EVERY as i64;

    // Shares of bytes and calls per function, against what it counted.
    let truth_bytes = t.big_bytes * 100.0 / (t.big_bytes + t.small_bytes);
    let truth_calls = t.big_calls * 100.0 / (t.big_calls + t.small_calls);
    let (big_bytes, small_bytes) = shares(&ours, "fw_alloc_big", "fw_alloc_small", 1);
    let (big_calls, _) = shares(&ours, "fw_alloc_big", "fw_alloc_small", 0);
    // Calls per thread: the main thread is probed from its first call;
    // fw-late from when the agent reads its creation record, normally
    // within a drain period, but later when the agent's threads are starved
    // of CPU (tests running side by side on a small machine).
    let calls_of = |late: bool| -> f64 {
        ours.iter()
            .filter(|s| (s.thread.as_deref() == Some("fw-late")) == late)
            .map(|s| s.values[0] as f64)
            .sum()
    };
    let (main_calls, late_calls) = (calls_of(false), calls_of(true));
    eprintln!(
        "{samples} samples ({} lost); alloc_space fw_alloc_big {big_bytes:.1}% / fw_alloc_small \
         {small_bytes:.1}% (truth {truth_bytes:.1}%); alloc_objects fw_alloc_big \
         {big_calls:.1}% (truth {truth_calls:.1}%); calls estimated / made: main thread \
         {main_calls:.0} / {}, fw-late {late_calls:.0} / {}",
        m.samples_lost, t.main_calls, t.late_calls
    );
    assert!(samples >= 300, "too few allocation samples: {samples}");
    assert!(
        (big_bytes - truth_bytes).abs() <= 5.0,
        "alloc_space share of fw_alloc_big {big_bytes:.1}% vs truth {truth_bytes:.1}%"
    );
    assert!(
        (big_calls - truth_calls).abs() <= 5.0,
        "alloc_objects share of fw_alloc_big {big_calls:.1}% vs truth {truth_calls:.1}%"
    );
    let ratio = main_calls / t.main_calls;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "estimated {main_calls:.0} calls of the main thread for {} made",
        t.main_calls
    );
    assert!(
        late_calls <= t.late_calls * 1.2,
        "estimated {late_calls:.0} calls of fw-late for {} made",
        t.late_calls
    );

    // Whole stacks: from the allocation function, through the workload's
    // function, to the thread's entry; the thread started after the probes
    // were placed is probed too.
    let leaf_is_allocator = ours
        .iter()
        .all(|s| s.frames.first().is_some_and(|f| f.name.contains("alloc")));
    assert!(leaf_is_allocator, "every stack starts in the allocator");
    let broken: Vec<&&Stack> = ours
        .iter()
        .filter(|s| !(s.has("main") || s.has("start_thread")))
        .collect();
    assert!(
        broken.is_empty(),
        "{} of {} stacks do not reach main/start_thread, e.g. {:?}",
        broken.len(),
        ours.len(),
        broken
            .first()
            .map(|s| s.frames.iter().map(|f| &f.name).collect::<Vec<_>>())
    );
    assert!(ours.iter().any(|s| s.has("main") && s.has("fw_alloc_big")));
    assert!(
        ours.iter()
            .any(|s| s.thread.as_deref() == Some("fw-late") && s.has("start_thread")),
        "samples of the thread created after the probes"
    );
}

/// Starts the agent binary and counts its perf event descriptors once it
/// logs that sampling started (every event is open by then).
fn perf_events_of_the_agent(args: &[String]) -> usize {
    let dir = temp_dir("alloc-fds");
    let mut child = Command::new(env!("CARGO_BIN_EXE_firewatch-agent"))
        .args(["--no-ship", "--duration", "60s", "--dump-dir"])
        .arg(&dir)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the agent");
    let stderr = child.stderr.take().expect("stderr");
    let mut log = String::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        log.push_str(&line);
        log.push('\n');
        if line.contains("cpus=") {
            break;
        }
    }
    let count = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .map(|fds| {
            fds.flatten()
                .filter(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[perf_event]")
                })
                .count()
        })
        .unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{count} perf events; agent log:\n{log}");
    count
}

#[test]
fn no_uprobe_is_opened_when_the_alloc_table_is_empty() {
    let cpus = online_cpus().expect("online CPUs").len();
    let w = Workload::start_held(c_alloc_workload(), 3.0);
    let pid = w.pid().to_string();
    let cpu_only = perf_events_of_the_agent(&["--pid".into(), pid.clone()]);
    let probed =
        perf_events_of_the_agent(&["--pid".into(), pid.clone(), "--alloc-pid".into(), pid]);
    drop(w);
    assert_eq!(cpu_only, cpus, "one CPU event per CPU and nothing else");
    // The control: naming the process adds a ring per CPU and three probes
    // per thread and CPU.
    assert!(
        probed >= cpus * 5,
        "{probed} events with the process probed"
    );
}

#[test]
fn allocation_samples_make_no_heap_allocation_in_steady_state() {
    // Long enough to outlive the measurement on a loaded machine; killed
    // when dropped.
    let mut w = Workload::start_held(c_alloc_workload(), 60.0);
    let config = Config {
        targets: Targets {
            pids: vec![w.pid()],
            ..Targets::default()
        },
        alloc: AllocTargets {
            pids: vec![w.pid()],
            every: EVERY,
            ..AllocTargets::default()
        },
        stack_bytes: 16 << 10,
        ring_buffer_bytes: 8 << 20,
        // What is judged here is the allocation path. The Python reader has
        // its own steady-state test; its first look at a process (a first
        // sight, which may allocate) can land inside this window when the
        // host is loaded.
        python: false,
        ..Config::default()
    };
    let metrics = Arc::new(Metrics::default());
    let mut sampler =
        Sampler::open(&config, Arc::clone(&metrics)).expect("perf events open (root)");
    let one_thread = sampler.alloc_event_count();
    assert!(one_thread > 0, "the workload is probed");
    w.go();

    // Warm up: the workload's second thread starts after a second and gets
    // its probes (a first sight, which allocates), and the stacks of both
    // become known.
    let start = Instant::now();
    let mut probed_at = None;
    while probed_at.is_none_or(|t: Instant| t.elapsed() < Duration::from_millis(800)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the second thread was not probed"
        );
        std::thread::sleep(Duration::from_millis(50));
        sampler.drain();
        if probed_at.is_none() && sampler.alloc_event_count() == 2 * one_thread {
            probed_at = Some(Instant::now());
        }
    }
    // A window in which records were lost is measured again: after losses
    // the sampler lists the probed threads in /proc again, which allocates,
    // so such a window cannot judge the steady state. Three windows all
    // losing records fail the test rather than pass it unjudged.
    let mut attempt = 0;
    let (samples, allocations) = loop {
        attempt += 1;
        let before = sampler.alloc_sample_count();
        let lost_before = metrics.snapshot().samples_lost;
        let mut allocations = 0;
        let measure_until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < measure_until {
            std::thread::sleep(Duration::from_millis(50));
            let (_, n) = count_allocations(|| sampler.drain());
            allocations += n;
        }
        let samples = sampler.alloc_sample_count() - before;
        let lost = metrics.snapshot().samples_lost - lost_before;
        eprintln!(
            "window {attempt}: {samples} allocation samples drained with {allocations} heap allocations ({lost} lost)"
        );
        if lost == 0 {
            break (samples, allocations);
        }
        assert!(
            attempt < 3,
            "records were lost in each of {attempt} windows: the machine is too loaded to check the steady state"
        );
        // Let the loss handling run its course before measuring again.
        std::thread::sleep(Duration::from_millis(200));
        sampler.drain();
    };
    drop(w);
    assert!(samples >= 300, "too few samples to judge: {samples}");
    assert_eq!(
        allocations,
        0,
        "heap allocations over {samples} samples; the first at {}",
        crate::first_allocation()
    );
}
