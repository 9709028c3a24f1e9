//! Debian's `perf record --call-graph dwarf` is the reference: recording the
//! same workload at the same time, its shares must agree with the agent's.
//! Needs `perf` (Debian package `linux-perf`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use firewatch_agent::Agent;

use crate::receiver::Receiver;
use crate::sampling::{TEST_HZ, agent_config};
use crate::support::{
    FrameInfo, Stack, Workload, c_workload, decode_pprof, split, stacks, wait_until,
};

const SECONDS: f64 = 4.0;

/// Parses `perf script` output into stacks (leaf first).
pub fn parse_perf_script(text: &str) -> Vec<Stack> {
    let mut out = Vec::new();
    let mut frames: Vec<FrameInfo> = Vec::new();
    let mut in_sample = false;
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if in_sample {
                out.push(Stack {
                    frames: std::mem::take(&mut frames),
                    samples: 1,
                    values: vec![1],
                    pid: None,
                    thread: None,
                });
            }
            in_sample = false;
        } else if line.starts_with(|c: char| c.is_whitespace()) {
            // "\t    1060 fw_hot+0x10 (/path/binary)"
            let mut parts = line.split_whitespace();
            let _ip = parts.next();
            let sym = parts.next().unwrap_or("[unknown]");
            let name = sym.split("+0x").next().unwrap_or(sym).to_owned();
            let module = line
                .rsplit_once('(')
                .map(|(_, m)| {
                    m.trim_end_matches(')')
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
                .unwrap_or_default();
            frames.push(FrameInfo {
                name,
                module,
                file: String::new(),
                line: 0,
            });
        } else {
            in_sample = true;
            frames.clear();
        }
    }
    out
}

fn run_bounded(cmd: &mut Command, timeout: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (CI must install linux-perf): {e}"));
    let deadline = Instant::now() + timeout;
    // Read stdout on a thread so a large output cannot block the child.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_end(&mut e, &mut stderr);
    }
    std::process::Output {
        status,
        stdout: reader.join().unwrap_or_default(),
        stderr,
    }
}

#[test]
fn perf_record_dwarf_and_the_agent_agree_on_the_same_run() {
    let path: &Path = c_workload();
    let data =
        std::env::temp_dir().join(format!("firewatch-agent-perf-{}.data", std::process::id()));
    let receiver = Receiver::new();
    let w = Workload::start(path, SECONDS);
    let pid = w.pid();
    let mut perf = Command::new("perf")
        .args([
            "record",
            "-q",
            "-F",
            &TEST_HZ.to_string(),
            "--call-graph",
            "dwarf",
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`perf` runs (CI must install the Debian package linux-perf)");
    let agent = Agent::start(agent_config(&receiver.url(), pid)).expect("the agent starts");
    let truth = w.finish(Duration::from_secs_f64(SECONDS + 60.0));
    let perf_done = wait_until(Duration::from_secs(60), || {
        matches!(perf.try_wait(), Ok(Some(_)))
    });
    if !perf_done {
        let _ = perf.kill();
    }
    assert!(
        perf_done,
        "perf record did not stop after the workload exited"
    );
    agent.stop(Duration::from_secs(10));

    let script = run_bounded(
        Command::new("perf")
            .args(["script", "--no-inline", "-F", "comm,tid,ip,sym,dso", "-i"])
            .arg(&data),
        Duration::from_secs(120),
    );
    let _ = std::fs::remove_file(&data);
    assert!(
        script.status.success(),
        "perf script failed: {}",
        String::from_utf8_lossy(&script.stderr)
    );
    let perf_stacks = parse_perf_script(&String::from_utf8_lossy(&script.stdout));
    let ours: Vec<Stack> = receiver
        .requests()
        .iter()
        .flat_map(|r| stacks(&decode_pprof(&r.body)))
        .collect();

    let (perf_hot, _, perf_n) = split(&perf_stacks, "fw_hot", "fw_cold");
    let (our_hot, _, our_n) = split(&ours, "fw_hot", "fw_cold");
    let truth_hot = truth.0 * 100.0 / (truth.0 + truth.1);
    eprintln!(
        "fw_hot share: agent {our_hot:.1}% ({our_n} samples), perf {perf_hot:.1}% ({perf_n} samples), ground truth {truth_hot:.1}%"
    );
    assert!(
        perf_n >= 300 && our_n >= 300,
        "enough samples: perf {perf_n}, agent {our_n}"
    );
    assert!(
        (our_hot - perf_hot).abs() <= 3.0,
        "agent {our_hot:.1}% vs perf {perf_hot:.1}%"
    );
    assert!((our_hot - truth_hot).abs() <= 3.0);
}

#[test]
fn perf_script_parser_reads_samples() {
    let text = "w 1/1 cpu-clock:\n\t 1060 fw_hot+0x10 (/tmp/c-workload)\n\t 2000 main+0x5 (/tmp/c-workload)\n\nw 1/2 cpu-clock:\n\t 1070 fw_cold+0x1 (/tmp/c-workload)\n";
    let s = parse_perf_script(text);
    assert_eq!(s.len(), 2);
    assert!(s[0].has("fw_hot") && s[0].has("main"));
    assert_eq!(s[0].frames[0].module, "c-workload");
    assert!(s[1].has("fw_cold"));
}
