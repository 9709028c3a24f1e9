//! The agent profiles a C workload (`-O2 -fomit-frame-pointer`, a 3:1 split
//! between `fw_hot` and `fw_cold`), ships to a real server, and `/render`
//! shows the workload's functions with their shares.

use std::process::Command;
use std::time::Duration;

use firewatch_agent::Config;

use crate::support::{Server, build_workload, profile_until_exit};

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
    let config = Config {
        server: base.clone(),
        upload_interval: Duration::from_secs(2),
        targets: firewatch_agent::config::Targets {
            pids: vec![child.id()],
            ..Default::default()
        },
        ..Config::default()
    };
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
