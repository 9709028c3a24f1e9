//! The agent profiles a C workload (`-O2 -fomit-frame-pointer`, a 3:1 split
//! between `fw_hot` and `fw_cold`), ships to a real server, and `/render`
//! shows the workload's functions with their shares.

use std::process::Command;

use crate::support::{Server, build_workload, functions_json, profile_until_exit, shipping_to};

/// Self value per frame name from folded text.
fn self_values(folded: &str) -> std::collections::HashMap<String, i64> {
    let mut out = std::collections::HashMap::new();
    for line in folded.lines() {
        if let Some((stack, v)) = line.rsplit_once(' ')
            && let (Some(leaf), Ok(v)) = (stack.rsplit(';').next(), v.parse::<i64>())
        {
            *out.entry(leaf.to_owned()).or_insert(0) += v;
        }
    }
    out
}

#[test]
fn agent_ships_to_the_server_and_render_shows_the_workload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workload = build_workload(dir.path());
    let server = Server::start(&dir.path().join("firewatch.db"), 0);
    let base = server.base.clone();

    let mut child = Command::new(&workload)
        .arg("4")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start workload");
    let config = shipping_to(&base, child.id());
    profile_until_exit(&mut child, config);

    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |path: &str| {
        let mut resp = http.get(&format!("{base}{path}")).call().expect("query");
        let status = resp.status();
        let body = resp.body_mut().read_to_string().expect("body");
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    let folded = get("/render?query=fw_e2e_workload.cpu&from=now-10m&until=now%2B1m&format=folded");
    let selfs = self_values(&folded);
    let hot = selfs.get("fw_hot").copied().unwrap_or(0);
    let cold: i64 = selfs
        .iter()
        .filter(|(k, _)| {
            k.as_str() == "fw_cold"
                || k.as_str() == "fw_cmp"
                || k.contains("qsort")
                || k.contains("msort")
        })
        .map(|(_, v)| v)
        .sum();
    assert!(hot > 0, "fw_hot not in the stored profile:\n{folded}");
    let share = hot as f64 / (hot + cold).max(1) as f64;
    assert!(
        (0.65..0.85).contains(&share),
        "fw_hot share {share:.3} (3:1 expected)\n{folded}"
    );
    assert!(
        folded
            .lines()
            .any(|l| l.contains("main;") || l.contains("start_thread;")),
        "{folded}"
    );
    // The series is listed with the agent's labels.
    let services = get("/api/v1/services");
    assert!(services.contains("fw_e2e_workload"), "{services}");
    let hosts = get("/label-values?label=exe");
    assert!(hosts.contains("fw_e2e_workload"), "{hosts}");
}

/// A real program that lives in system calls (`dd` copying one byte at a
/// time): the agent's kernel frames arrive named and marked as the
/// kernel's, its user-space frames not.
#[test]
fn kernel_frames_arrive_marked_as_the_kernels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("firewatch.db"), 0);
    let base = server.base.clone();
    let mut child = Command::new("dd")
        .args(["if=/dev/zero", "of=/dev/null", "bs=1", "count=10000000"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start dd");
    let config = shipping_to(&base, child.id());
    profile_until_exit(&mut child, config);
    let table = functions_json(&base, "dd.cpu");
    let rows = table["functions"].as_array().expect("rows");
    let kernel: Vec<&str> = rows
        .iter()
        .filter(|r| r["kernel"] == true)
        .filter_map(|r| r["name"].as_str())
        .collect();
    let share = |names: &[&str]| -> f64 {
        let total: i64 = rows
            .iter()
            .filter(|r| r["name"].as_str().is_some_and(|n| names.contains(&n)))
            .filter_map(|r| r["self"].as_i64())
            .sum();
        total as f64 / table["total"].as_f64().unwrap_or(1.0)
    };
    // Most of dd's time is in the kernel, under a system call entry.
    assert!(
        share(&kernel) > 0.3,
        "kernel self share {}: {kernel:?}",
        share(&kernel)
    );
    assert!(
        kernel
            .iter()
            .any(|n| n.contains("entry_SYSCALL") || n.contains("do_syscall")),
        "{kernel:?}"
    );
    for user in [
        "main",
        "write",
        "__libc_start_main",
        "__libc_start_call_main",
    ] {
        assert!(
            !kernel.contains(&user),
            "{user} is not the kernel's: {kernel:?}"
        );
    }
    assert!(
        !kernel.iter().any(|n| n.starts_with("[")),
        "markers are no kernel functions: {kernel:?}"
    );
}
