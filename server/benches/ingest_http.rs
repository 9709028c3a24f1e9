//! Ingest target: at least 1,000 profiles/s of the standard corpus sustained
//! into SQLite on one core, from HTTP request to commit.
//!
//! Runs the real `firewatch-server` binary pinned to one CPU (`taskset`),
//! storing into SQLite in a temporary directory, and four client threads on
//! the other CPU posting zstd pprof profiles to the native ingest over
//! loopback with keep-alive. Prints wall-clock profiles/s, the server's CPU
//! time per profile (from /proc), and the ratio to decoding the same
//! profiles alone in this process.
//!
//! `cargo bench -p firewatch-server --bench ingest_http`
//!
//! With `-- --check` (what CI runs): 2,000 profiles, and the ratio of
//! server CPU to decode is compared with the one recorded in
//! `benches/ingest_http.baseline`; more than 1.5 times it exits 1. A
//! regression alarm with room for noise, not a timed test: the ratio is
//! measured against decoding in the same process, so a slower machine
//! moves both.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use firewatch_profile::corpus::Generator;
use firewatch_profile::{Limits, Profile, zstd};

const PROFILES: usize = 6_000;
const CHECK_PROFILES: usize = 2_000;
/// How far above the recorded ratio `--check` lets it rise.
const ALARM: f64 = 1.5;
const CLIENTS: usize = 4;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let mut stat = String::new();
    std::fs::File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut f| f.read_to_string(&mut stat))
        .expect("read /proc stat");
    // Fields after the command name (which may hold spaces) start after ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

/// The ratio recorded in `benches/ingest_http.baseline` (`ratio = 2.5`).
fn baseline_ratio() -> f64 {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/ingest_http.baseline");
    let text = std::fs::read_to_string(path).expect("benches/ingest_http.baseline");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("ratio"))
        .filter_map(|r| r.trim().strip_prefix('=')?.trim().parse::<f64>().ok())
        .next()
        .expect("a `ratio = N` line in benches/ingest_http.baseline")
}

fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let profiles = if check { CHECK_PROFILES } else { PROFILES };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = Server(
        Command::new("taskset")
            .args(["-c", "0", env!("CARGO_BIN_EXE_firewatch-server")])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--storage",
                &format!("sqlite://{}/bench.db", dir.path().display()),
            ])
            .args(["--log", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start firewatch-server (is taskset installed?)"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent
        .get(&format!("{base}/readyz"))
        .call()
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "server did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }

    let generator = Generator::standard(5);
    let bodies: Vec<Vec<u8>> = (0..256u64)
        .map(|i| zstd(&generator.profile(i).to_pprof_bytes(), 3).expect("zstd"))
        .collect();

    // Warm-up: creates the series and the dictionary, as a running service has them.
    for (i, body) in bodies.iter().enumerate().take(64) {
        post(&agent, &base, i % 10, body);
    }

    let cpu_before = cpu_seconds(server.0.id());
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                let agent = agent.clone();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= profiles {
                        break;
                    }
                    post(&agent, &base, i % 10, &bodies[i % bodies.len()]);
                }
            });
        }
    });
    let wall = t.elapsed();
    let cpu = cpu_seconds(server.0.id()) - cpu_before;

    let limits = Limits::default();
    let t = Instant::now();
    for i in 0..profiles {
        std::hint::black_box(
            Profile::from_pprof_bytes(&bodies[i % bodies.len()], &limits).expect("decode"),
        );
    }
    let decode = t.elapsed();

    let rate = profiles as f64 / wall.as_secs_f64();
    println!("{profiles} profiles over HTTP, server pinned to one CPU, SQLite:");
    println!(
        "  throughput: {rate:.0} profiles/s (target >= 1,000: {})",
        if rate >= 1000.0 { "met" } else { "NOT met" }
    );
    println!(
        "  server CPU: {:.3} s, {:.0} us per profile, {:.0} profiles per CPU-second",
        cpu,
        cpu * 1e6 / profiles as f64,
        profiles as f64 / cpu.max(1e-9)
    );
    let ratio = cpu / decode.as_secs_f64();
    println!(
        "  decode alone (this process): {:.0} profiles/s; ratio server CPU / decode time: {ratio:.2} (target <= 2)",
        profiles as f64 / decode.as_secs_f64(),
    );
    if check {
        let recorded = baseline_ratio();
        let limit = recorded * ALARM;
        println!("  recorded ratio {recorded:.2}; alarm above {limit:.2}");
        if ratio > limit {
            eprintln!(
                "ingest regression: server CPU is {ratio:.2} times decode time, over {ALARM} x the recorded {recorded:.2}"
            );
            std::process::exit(1);
        }
    }
}

fn post(agent: &ureq::Agent, base: &str, host: usize, body: &[u8]) {
    let resp = agent
        .post(&format!(
            "{base}/api/v1/ingest?service_name=checkout&host=web-{host}"
        ))
        .header("Content-Encoding", "zstd")
        .header("Content-Type", "application/vnd.google.protobuf")
        .send(body)
        .expect("ingest request");
    assert_eq!(resp.status(), 200, "ingest refused");
}
