//! The PostgreSQL the tests run against: the server named by
//! `FIREWATCH_TEST_POSTGRES_URL` (`scripts/test` starts one), or else a
//! throwaway server this test process starts once from Debian's
//! `postgresql` binaries (`/usr/lib/postgresql/<version>/bin`) in a
//! temporary directory on a free loopback port. As root it runs as the
//! `postgres` user, since PostgreSQL refuses to run as root; a watchdog
//! stops it and removes its directory when the test process exits.
//!
//! Every test gets a database of its own ([`fresh_database`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection;

static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The URL of a new, empty database.
pub async fn fresh_database() -> String {
    let base = tokio::task::spawn_blocking(|| SERVER.get_or_init(server_url).clone())
        .await
        .expect("PostgreSQL start thread")
        .unwrap_or_else(|e| panic!("{e}"));
    // The time too: a server kept across runs may hold databases of an
    // earlier process that had the same id.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!(
        "fw_{}_{nanos}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("connect to {base}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    let _ = conn.close().await;
    let (server, _) = base.rsplit_once('/').expect("URL with a database");
    format!("{server}/{name}")
}

fn server_url() -> Result<String, String> {
    if let Ok(url) = std::env::var("FIREWATCH_TEST_POSTGRES_URL")
        && !url.is_empty()
    {
        return Ok(url);
    }
    start_throwaway()
}

fn find_bin() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| not_found())?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(not_found)
}

fn not_found() -> String {
    "PostgreSQL not found under /usr/lib/postgresql: install Debian's postgresql, \
     or set FIREWATCH_TEST_POSTGRES_URL to a server the tests may create databases on"
        .to_owned()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A command run as the `postgres` user when we are root.
fn as_owner(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start_throwaway() -> Result<String, String> {
    let bin = find_bin()?;
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("firewatch-pg.")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?
        .keep();
    if root {
        let mut chown = Command::new("chown");
        chown.arg("postgres:").arg(&dir);
        run(chown, "chown the PostgreSQL directory")?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("free port: {e}"))?
        .port();
    let data = dir.join("data");
    let mut initdb = as_owner(root, &bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"]);
    run(initdb, "initdb")?;
    let mut start = as_owner(root, &bin.join("pg_ctl"));
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .arg("-w")
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.display()
        ))
        .arg("start")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run(start, "pg_ctl start")?;
    // Stops the server once this process is gone.
    let stop = format!(
        "{}'{}' -D '{}' -m immediate stop",
        if root { "runuser -u postgres -- " } else { "" },
        bin.join("pg_ctl").display(),
        data.display()
    );
    let watchdog = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; {stop}; rm -rf '{}'",
        std::process::id(),
        dir.display()
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}
