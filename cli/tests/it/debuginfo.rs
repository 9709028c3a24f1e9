//! `firewatch debuginfo upload`: real debug files (a gcc-built program
//! split with objcopy) sent to a real server, deduplicated by build id;
//! files that cannot name anything are refused before they are sent.

use std::process::Command;

use crate::live::Server;
use crate::support::{firewatch, tempdir};

fn build(dir: &std::path::Path) {
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../server/tests/data/stripped.c"
    );
    for args in [
        vec!["gcc", "-O2", "-g", "-o", "app", src],
        vec!["objcopy", "--only-keep-debug", "app", "app.debug"],
        vec!["strip", "-o", "app.stripped", "app"],
    ] {
        let status = Command::new(args[0])
            .args(&args[1..])
            .current_dir(dir)
            .status()
            .expect("gcc and binutils (Debian: build-essential)");
        assert!(status.success(), "{args:?}");
    }
}

fn build_id(dir: &std::path::Path) -> String {
    let out = Command::new("readelf")
        .args(["-n", "app.debug"])
        .current_dir(dir)
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("a build id")
        .to_owned()
}

#[test]
fn upload_sends_each_debug_file_once() {
    let dir = tempdir();
    build(dir.path());
    let id = build_id(dir.path());
    let server = Server::start();
    let size = std::fs::metadata(dir.path().join("app.debug"))
        .expect("size")
        .len();

    let out = firewatch(
        dir.path(),
        &["debuginfo", "upload", "app.debug", "--server", &server.base],
    )
    .ok();
    assert_eq!(
        out,
        format!("app.debug: build id {id}: uploaded ({size} bytes)\n")
    );
    // The unstripped binary has the same build id: already there.
    let out = firewatch(
        dir.path(),
        &[
            "debuginfo",
            "upload",
            "app.debug",
            "app",
            "--server",
            &server.base,
        ],
    )
    .ok();
    assert_eq!(
        out,
        format!(
            "app.debug: build id {id}: already on the server\n\
             app: build id {id}: already on the server\n"
        )
    );
    let body = ureq::get(format!("{}/api/debuginfo/{id}", server.base))
        .call()
        .expect("GET")
        .body_mut()
        .read_to_string()
        .expect("body");
    let held: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(held["size"], size);
}

#[test]
fn upload_refuses_files_that_name_nothing() {
    let dir = tempdir();
    build(dir.path());
    let server = Server::start();
    let e = firewatch(
        dir.path(),
        &[
            "debuginfo",
            "upload",
            "app.stripped",
            "--server",
            &server.base,
        ],
    )
    .fails();
    assert!(
        e.contains("app.stripped") && e.contains("neither a symbol table"),
        "{e}"
    );
    let e = firewatch(
        dir.path(),
        &[
            "debuginfo",
            "upload",
            "stripped.c",
            "--server",
            &server.base,
        ],
    )
    .fails();
    assert!(e.contains("cannot open"), "{e}");
    std::fs::write(dir.path().join("notes.txt"), "hello").expect("write");
    let e = firewatch(
        dir.path(),
        &["debuginfo", "upload", "notes.txt", "--server", &server.base],
    )
    .fails();
    assert!(e.contains("not an ELF file"), "{e}");
}
