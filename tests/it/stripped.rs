//! Stripped binaries, end to end: the C workload (3:1 between `fw_hot` and
//! `fw_cold`) built with debug information, split as distributions ship it
//! (`objcopy --only-keep-debug`, then `strip`), profiled by the real agent.
//! Its frames reach the server as build id + address, read
//! `fw_e2e_stripped+0x…` (never a wrong name) until the debug file is
//! uploaded or served by Debian's debuginfod, and are named in every query
//! after; an agent that finds the debug file in its debug directory
//! (`.build-id/xx/rest.debug`) names them itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use firewatch_agent::Config;
use firewatch_server::symbols::{Symbols, SymbolsOptions, debug_file_build_id};

use crate::debuginfod::{start_debuginfod, wait_indexed};
use crate::support::{Server, build_workload_as, profile_until_exit};

const NAME: &str = "fw_e2e_stripped";

/// The stripped workload and its debug file.
fn build(dir: &Path) -> (PathBuf, PathBuf) {
    let full = build_workload_as(dir, &format!("{NAME}.full"));
    let debug = dir.join(format!("{NAME}.debug"));
    let stripped = dir.join(NAME);
    let run = |cmd: &mut Command| assert!(cmd.status().expect("binutils").success(), "{cmd:?}");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&full)
        .arg(&debug));
    run(Command::new("strip").arg("-o").arg(&stripped).arg(&full));
    (stripped, debug)
}

/// Runs the workload for 3 s under the agent, shipping to `base`.
fn profile(workload: &Path, base: &str, debug_dirs: Vec<PathBuf>) {
    let mut child = Command::new(workload)
        .arg("3")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start workload");
    let config = Config {
        server: base.to_owned(),
        upload_interval: Duration::from_secs(2),
        debug_dirs,
        targets: firewatch_agent::config::Targets {
            pids: vec![child.id()],
            ..Default::default()
        },
        ..Config::default()
    };
    profile_until_exit(&mut child, config);
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn folded(base: &str) -> String {
    let url = format!("{base}/render?query={NAME}.cpu&from=now-10m&until=now%2B1m&format=folded");
    let mut resp = http().get(&url).call().expect("query");
    let body = resp.body_mut().read_to_string().expect("body");
    assert_eq!(resp.status(), 200, "{body}");
    body
}

/// Frames of the workload's own file: (named, unnamed) sample counts,
/// and the hot share among the named leaves.
struct Census {
    named: i64,
    unnamed: i64,
    hot_share: f64,
}

fn census(folded: &str) -> Census {
    let (mut named, mut unnamed, mut hot, mut cold) = (0, 0, 0, 0);
    for line in folded.lines() {
        let Some((stack, v)) = line.rsplit_once(' ') else {
            continue;
        };
        let v: i64 = v.parse().expect("value");
        let ours: Vec<&str> = stack
            .split(';')
            .filter(|f| {
                f.starts_with(&format!("{NAME}+0x"))
                    || f.starts_with("fw_")
                    || matches!(*f, "main" | "thread_main" | "_start" | "clock_of")
            })
            .collect();
        if ours.is_empty() {
            continue;
        }
        if ours.iter().any(|f| f.starts_with(&format!("{NAME}+0x"))) {
            unnamed += v;
        } else {
            named += v;
        }
        let leaf = stack.rsplit(';').next().unwrap_or("");
        if leaf == "fw_hot" {
            hot += v;
        } else if leaf == "fw_cold"
            || leaf == "fw_cmp"
            || leaf.contains("qsort")
            || leaf.contains("msort")
        {
            cold += v;
        }
    }
    Census {
        named,
        unnamed,
        hot_share: hot as f64 / (hot + cold).max(1) as f64,
    }
}

#[test]
fn stripped_frames_are_named_once_the_debug_file_is_uploaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (workload, debug) = build(dir.path());
    let symbols = Symbols::new(SymbolsOptions {
        dir: Some(dir.path().join("debuginfo")),
        max_file_bytes: 64 << 20,
        tenant_quota_bytes: 64 << 20,
        ..SymbolsOptions::default()
    });
    let server = Server::start_with(&dir.path().join("firewatch.db"), 0, symbols);
    profile(&workload, &server.base, Vec::new());

    let before = folded(&server.base);
    let c = census(&before);
    assert!(c.unnamed > 0, "no sample of the workload:\n{before}");
    assert_eq!(
        c.named, 0,
        "a stripped file's frames are named before its debug file:\n{before}"
    );
    assert!(!before.contains("fw_hot"), "{before}");

    let (build_id, _) = debug_file_build_id(&debug).expect("debug file");
    let body = std::fs::read(&debug).expect("read");
    let mut resp = http()
        .put(&format!("{}/api/debuginfo/{build_id}", server.base))
        .send(&body[..])
        .expect("upload");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.body_mut().read_to_string().unwrap_or_default()
    );

    let after = folded(&server.base);
    let c = census(&after);
    assert_eq!(
        c.unnamed, 0,
        "every frame of the workload is named:\n{after}"
    );
    assert!(c.named > 0, "{after}");
    assert!(
        (0.65..0.85).contains(&c.hot_share),
        "fw_hot share {:.3} (3:1 expected)\n{after}",
        c.hot_share
    );
    assert!(
        after.lines().any(|l| l.contains("main;fw_worker;fw_hot")),
        "{after}"
    );
}

#[test]
fn stripped_frames_are_named_once_debuginfod_has_the_debug_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (workload, debug) = build(dir.path());
    let (build_id, _) = debug_file_build_id(&debug).expect("debug file");
    let served = tempfile::tempdir().expect("tempdir");
    let debuginfod = start_debuginfod(served.path());
    let symbols = Symbols::new(SymbolsOptions {
        dir: Some(dir.path().join("debuginfo")),
        debuginfod_urls: vec![debuginfod.url.clone()],
        max_file_bytes: 64 << 20,
        tenant_quota_bytes: 64 << 20,
        cache_bytes: 64 << 20,
        debuginfod_timeout: Duration::from_secs(10),
        debuginfod_retry: Duration::from_secs(1),
    });
    let server = Server::start_with(&dir.path().join("firewatch.db"), 0, symbols);
    profile(&workload, &server.base, Vec::new());

    // debuginfod is asked and has nothing yet: every frame stays unnamed.
    let before = folded(&server.base);
    let c = census(&before);
    assert!(c.unnamed > 0, "no sample of the workload:\n{before}");
    assert_eq!(c.named, 0, "named before any debug file exists:\n{before}");

    std::fs::copy(&debug, served.path().join("workload.debug")).expect("copy");
    wait_indexed(&debuginfod.url, &build_id);
    // Past the retry period of the miss above.
    std::thread::sleep(Duration::from_millis(1100));
    let after = folded(&server.base);
    let c = census(&after);
    assert_eq!(
        c.unnamed, 0,
        "every frame of the workload is named:\n{after}"
    );
    assert!(
        (0.65..0.85).contains(&c.hot_share),
        "fw_hot share {:.3}\n{after}",
        c.hot_share
    );
}

#[test]
fn the_agent_names_frames_from_its_debug_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (workload, debug) = build(dir.path());
    let (build_id, _) = debug_file_build_id(&debug).expect("debug file");
    let debug_dir = dir.path().join("debug");
    let filed = debug_dir
        .join(".build-id")
        .join(&build_id[..2])
        .join(format!("{}.debug", &build_id[2..]));
    std::fs::create_dir_all(filed.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&debug, &filed).expect("copy");
    let server = Server::start(&dir.path().join("firewatch.db"), 0);
    profile(&workload, &server.base, vec![debug_dir]);

    let text = folded(&server.base);
    let c = census(&text);
    assert_eq!(
        c.unnamed, 0,
        "every frame of the workload is named:\n{text}"
    );
    assert!(c.named > 0, "{text}");
    assert!(
        (0.65..0.85).contains(&c.hot_share),
        "fw_hot share {:.3}\n{text}",
        c.hot_share
    );
}
