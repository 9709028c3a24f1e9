//! Real Pyroscope clients, unchanged, against the `firewatch-server` binary
//! (SQLite in a temporary directory, a free loopback port): Grafana's
//! Python SDK (`pyroscope-io`, run by `python3` on
//! `tests/data/pyroscope_client.py`) and its Rust SDK (the `pyroscope`
//! crate with its pprof-rs backend, run in a child process of this test
//! binary so that its SIGPROF profiler samples nothing else).
//!
//! Both push to `POST /push.v1.PusherService/Push` (protobuf, gzip) with
//! OpenTelemetry-style labels (`otel.scope.name`, `process.runtime.name`,
//! ...), which the server stores with underscores, as Pyroscope does.
//!
//! The Python test needs `pyroscope-io` installed for `python3`
//! (`python3 -m pip install pyroscope-io==1.4.0`, as `.ci/run` does): it
//! fails when the client is missing, unless FIREWATCH_SKIP_CLIENT_TESTS=1,
//! with which it passes without running it.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::binary::{Running, agent, start_with};

/// The Python client version `.ci/run` installs.
const PYROSCOPE_IO: &str = "pyroscope-io==1.4.0";

/// CPU seconds each client burns: about 300 samples at 100 Hz.
const BURN_SECONDS: f64 = 3.0;

/// How long a client process may run before the test gives up on it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// How long the test waits for pushed profiles to be queryable.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A server on a fresh SQLite file that logs refused requests.
fn start_server() -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/data/firewatch.db", dir.path().display());
    let running = start_with(&db, &["--log", "info,firewatch_server=debug"]);
    (running, dir)
}

/// Runs a command to completion within `timeout`, killing it past that.
fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            panic!(
                "{cmd:?} still ran after {} s; stderr:\n{err}",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// GETs a path of the server, asserting a 200, and returns the body.
fn get(server: &Running, path_and_query: &str) -> String {
    let url = format!("http://{}{path_and_query}", server.addr);
    let mut r = agent()
        .get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status(), 200, "GET {url}: {body}");
    body
}

/// `/render` of `query` over the last five minutes as folded text.
fn render_folded(server: &Running, query: &str) -> String {
    get(
        server,
        &format!(
            "/render?query={}&from=now-5m&until=now&format=folded",
            crate::harness::enc(query)
        ),
    )
}

/// Renders `query` until every name of `wanted` is a frame of it, within
/// [`QUERY_TIMEOUT`]; returns the folded text.
fn wait_for_frames(server: &Running, query: &str, wanted: &[&str], context: &str) -> String {
    let deadline = Instant::now() + QUERY_TIMEOUT;
    loop {
        let text = render_folded(server, query);
        let frames = frames_of(&text);
        if wanted.iter().all(|w| frames.iter().any(|f| f.contains(w))) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: no frame named {wanted:?} after {} s.\nrendered:\n{text}\n\
             {context}\nserver log:\n{}",
            QUERY_TIMEOUT.as_secs(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn frames_of(folded: &str) -> Vec<&str> {
    folded
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .flat_map(|(stack, _)| stack.split(';'))
        .collect()
}

/// Self value per leaf function of a folded answer.
fn self_values(folded: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for line in folded.lines() {
        let Some((stack, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let leaf = stack.rsplit(';').next().unwrap_or(stack);
        *out.entry(leaf.to_owned()).or_default() += value.parse::<i64>().unwrap();
    }
    out
}

/// Sum of the values of the stacks in which a frame containing `name`
/// appears (its total, as in a flamegraph).
fn total_of(folded: &str, name: &str) -> i64 {
    folded
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(stack, _)| stack.split(';').any(|f| f.contains(name)))
        .map(|(_, v)| v.parse::<i64>().unwrap())
        .sum()
}

fn assert_nothing_refused(server: &Running, client: &str) {
    let log = server.log();
    assert!(
        !log.contains("request refused"),
        "the server refused a request of {client}:\n{log}"
    );
}

/// `python3` with `pyroscope-io` importable, or `None` when the user chose
/// to skip.
fn python_with_client() -> Option<String> {
    if std::env::var("FIREWATCH_SKIP_CLIENT_TESTS").is_ok_and(|v| v == "1") {
        eprintln!(
            "skipped: FIREWATCH_SKIP_CLIENT_TESTS=1, the Python Pyroscope client was not run"
        );
        return None;
    }
    let probe = Command::new("python3")
        .args([
            "-c",
            "import pyroscope, importlib.metadata as m; print(m.version('pyroscope-io'))",
        ])
        .output();
    let version = match probe {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => panic!(
            "the Python Pyroscope client is not installed for python3 ({}): install it \
             with `python3 -m pip install {PYROSCOPE_IO}` (as .ci/run does), or set \
             FIREWATCH_SKIP_CLIENT_TESTS=1 to skip the real-client tests",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .trim()
        ),
        Err(e) => panic!(
            "python3 cannot run ({e}): install Python 3 and `python3 -m pip install \
             {PYROSCOPE_IO}` (as .ci/run does), or set FIREWATCH_SKIP_CLIENT_TESTS=1 to skip \
             the real-client tests"
        ),
    };
    eprintln!("pyroscope-io {version} (pinned in .ci/run: {PYROSCOPE_IO})");
    Some(version)
}

#[test]
fn python_sdk_pushes_a_profile_the_server_renders() {
    if python_with_client().is_none() {
        return;
    }
    let (server, _dir) = start_server();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/pyroscope_client.py"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(format!("http://{}", server.addr))
        .arg("pyclient")
        .arg(BURN_SECONDS.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let output = run_bounded(cmd, CLIENT_TIMEOUT);
    let context = format!("python client: {}", describe(&output));
    assert!(output.status.success(), "{context}");

    let (hot, cold) = ("firewatch_hot_py", "firewatch_cold_py");
    let query = r#"pyclient.cpu{env="test"}"#;
    let folded = wait_for_frames(&server, query, &[hot, cold], &context);
    assert_nothing_refused(&server, "the Python SDK");

    // 3:1 by work: the hot function has clearly more self time.
    let selfs = self_values(&folded);
    let (h, c) = (selfs[hot], selfs[cold]);
    let total: i64 = selfs.values().sum();
    assert!(
        h > c * 3 / 2,
        "self time {hot} {h} ns vs {cold} {c} ns: expected about 3:1\n{folded}"
    );
    assert!(
        total >= 300_000_000,
        "only {total} ns of CPU profiled for {BURN_SECONDS} s burnt\n{folded}\n{context}"
    );

    // The JSON flamebearer names both; the SDK's dotted labels are stored
    // with underscores and can be matched either way.
    let json: serde_json::Value = serde_json::from_str(&get(
        &server,
        &format!(
            "/render?query={}&from=now-5m&until=now&format=json",
            crate::harness::enc(query)
        ),
    ))
    .unwrap();
    let names = json["flamebearer"]["names"].as_array().unwrap();
    for name in [hot, cold] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    assert!(json["flamebearer"]["numTicks"].as_i64().unwrap() > 0);
    let labels = get(&server, "/labels");
    assert!(labels.contains("\"process_runtime_name\""), "{labels}");
    let dotted = render_folded(
        &server,
        r#"pyclient.cpu{env="test", process.runtime.name="cpython"}"#,
    );
    assert_eq!(self_values(&dotted), selfs);
}

/// The function the Rust SDK's child process burns CPU in.
#[inline(never)]
fn firewatch_rust_hot_loop(seconds: f64) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for i in 0..100_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
        }
    }
    x
}

/// Prints the SDK's warnings and errors (a refused push is only logged).
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("{} {}: {}", record.level(), record.target(), record.args());
        }
    }
    fn flush(&self) {}
}

static STDERR_LOG: StderrLog = StderrLog;

/// The variable that gives the child process the server's URL.
const CHILD_URL: &str = "FIREWATCH_RUST_SDK_CHILD_URL";

/// Run by [`rust_sdk_pushes_a_profile_the_server_renders`] in a child
/// process of this test binary: profiles itself with the `pyroscope`
/// crate and pushes to the server at `$FIREWATCH_RUST_SDK_CHILD_URL`.
#[test]
#[ignore = "run as a child process by rust_sdk_pushes_a_profile_the_server_renders"]
fn rust_sdk_child() {
    use pyroscope::backend::{BackendConfig, PprofConfig, pprof_backend};
    use pyroscope::pyroscope::PyroscopeAgentBuilder;

    let Ok(url) = std::env::var(CHILD_URL) else {
        eprintln!("{CHILD_URL} is not set: nothing to do");
        return;
    };
    let _ = log::set_logger(&STDERR_LOG).map(|()| log::set_max_level(log::LevelFilter::Warn));
    let agent = PyroscopeAgentBuilder::new(
        &url,
        "rsclient",
        100,
        "pyroscope-rs",
        "test",
        pprof_backend(PprofConfig::default(), BackendConfig::default()),
    )
    .tags(vec![("env", "test")])
    .build()
    .expect("build the agent");
    let running = agent.start().expect("start the agent");
    let x = firewatch_rust_hot_loop(BURN_SECONDS);
    let ready = running.stop().expect("stop the agent");
    // Shutting down waits for the last report to be sent.
    ready.shutdown();
    println!("burnt {BURN_SECONDS} s ({x})");
}

#[test]
fn rust_sdk_pushes_a_profile_the_server_renders() {
    let (server, _dir) = start_server();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "clients::rust_sdk_child",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(CHILD_URL, format!("http://{}", server.addr));
    let output = run_bounded(cmd, CLIENT_TIMEOUT);
    let context = format!("rust client: {}", describe(&output));
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("burnt"),
        "{context}"
    );

    let name = "firewatch_rust_hot_loop";
    let query = r#"rsclient.cpu{env="test"}"#;
    let folded = wait_for_frames(&server, query, &[name], &context);
    assert_nothing_refused(&server, "the Rust SDK");
    // The process did little else while the agent ran.
    let total: i64 = self_values(&folded).values().sum();
    let hot = total_of(&folded, name);
    assert!(
        hot * 2 > total,
        "{name} has {hot} of {total} ns\n{folded}\n{context}"
    );
    let labels = get(&server, "/labels");
    assert!(labels.contains("\"otel_scope_name\""), "{labels}");
}
