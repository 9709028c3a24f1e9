//! Series labels of real processes, read from `/proc` as the agent does.

use std::process::{Command, Stdio};
use std::time::Duration;

use firewatch_agent::config::Config;
use firewatch_agent::labels::Labeler;

use crate::support::wait_until;

fn service_of(cmd: &mut Command) -> String {
    let mut child = cmd
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id();
    // Once the interpreter has exec'd and its arguments are in place (the
    // kernel sets the new executable a moment before them).
    let started = wait_until(Duration::from_secs(10), || {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|p| p.to_string_lossy().contains("python"))
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).filter(|a| !a.is_empty()).count() > 1)
    });
    assert!(started, "the interpreter did not start");
    let d = Labeler::new(&Config::default()).describe(pid, "python3");
    let _ = child.kill();
    let _ = child.wait();
    d.labels
        .into_iter()
        .find(|(k, _)| k == "service_name")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[test]
fn python_processes_are_named_for_their_script_or_module() {
    let dir = std::env::temp_dir().join(format!("firewatch-labels-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("fwworker")).expect("test directory");
    std::fs::write(dir.join("checkout_api.py"), "import time\ntime.sleep(30)\n").expect("script");
    std::fs::write(dir.join("fwworker/__init__.py"), "").expect("package");
    std::fs::write(
        dir.join("fwworker/main.py"),
        "import time\ntime.sleep(30)\n",
    )
    .expect("module");
    let script = service_of(
        Command::new("/usr/bin/python3")
            .arg("-u")
            .arg(dir.join("checkout_api.py")),
    );
    let module = service_of(
        Command::new("/usr/bin/python3")
            .args(["-m", "fwworker.main"])
            .current_dir(&dir),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(script, "checkout_api");
    assert_eq!(module, "fwworker");
}
