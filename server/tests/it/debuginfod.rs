//! Debian's debuginfod serving a directory on loopback, for the tests that
//! fetch debug files from it (this crate's, and the end-to-end crate's,
//! which includes this file).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's debuginfod serving a directory on loopback.
pub struct Debuginfod {
    child: Child,
    pub url: String,
    _db: tempfile::TempDir,
}

impl Drop for Debuginfod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts debuginfod on a free loopback port, indexing the ELF files under
/// `files` (rescanned every second), and waits until it listens.
pub fn start_debuginfod(files: &Path) -> Debuginfod {
    let db = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let child = Command::new("debuginfod")
        .args(["-F", "-t", "1", "-g", "0", "-p", &port.to_string(), "-d"])
        .arg(db.path().join("index.sqlite"))
        .arg(files)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("debuginfod (Debian package debuginfod; .ci/run installs it)");
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "debuginfod did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Debuginfod {
        child,
        url,
        _db: db,
    }
}

/// Waits until debuginfod indexed `build_id`.
pub fn wait_indexed(url: &str, build_id: &str) {
    let started = Instant::now();
    loop {
        let status = ureq::get(format!("{url}/buildid/{build_id}/debuginfo"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string());
        if status == Ok(200) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "debuginfod did not index {build_id}: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
