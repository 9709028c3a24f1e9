//! Bad input: one line on stderr saying what was wrong, a non-zero exit, no panic.

use std::io::Write;

use firewatch_profile::pprof::proto;

use crate::fixtures::GO_CPU;
use crate::support::{data, firewatch, tempdir};

const LIMIT: u64 = 256 << 20;

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) {
    std::fs::write(dir.path().join(name), bytes).expect("written");
}

#[test]
fn truncated_gzip() {
    let dir = tempdir();
    let bytes = std::fs::read(data(GO_CPU)).expect("fixture");
    write(&dir, "cut.pb.gz", &bytes[..bytes.len() / 2]);
    let err = firewatch(dir.path(), &["top", "cut.pb.gz"]).fails();
    assert!(
        err.starts_with("error: cut.pb.gz: cannot decompress gzip data: "),
        "{err}"
    );
    // The cause is said once, not repeated by the error chain.
    let cause = err.rsplit(": ").next().unwrap_or_default();
    assert_eq!(err.matches(cause).count(), 1, "{err}");
}

#[test]
fn garbage_bytes() {
    let dir = tempdir();
    // Deterministic noise that is neither UTF-8 nor a protobuf message.
    let mut x: u32 = 0x1234_5678;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    write(&dir, "noise.bin", &noise);
    let err = firewatch(dir.path(), &["top", "noise.bin"]).fails();
    assert!(
        err.starts_with("error: noise.bin: malformed pprof: "),
        "{err}"
    );
}

#[test]
fn pprof_referring_to_a_missing_location() {
    let dir = tempdir();
    let broken = proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        sample: vec![proto::Sample {
            location_id: vec![7],
            value: vec![1],
            label: Vec::new(),
        }],
        string_table: vec![String::new(), "samples".into(), "count".into()],
        ..proto::Profile::default()
    };
    let bytes = firewatch_profile::gzip(&firewatch_profile::pprof::encode(&broken));
    write(&dir, "profile.pb.gz", &bytes);
    let err = firewatch(dir.path(), &["top", "profile.pb.gz"]).fails();
    assert_eq!(
        err,
        "error: profile.pb.gz: malformed pprof: sample.location_id: no location with id 7"
    );
    let err = firewatch(dir.path(), &["convert", "profile.pb.gz", "-o", "x.svg"]).fails();
    assert_eq!(
        err,
        "error: profile.pb.gz: malformed pprof: sample.location_id: no location with id 7"
    );
    assert!(!dir.path().join("x.svg").exists());
}

#[test]
fn malformed_folded_line() {
    let dir = tempdir();
    write(&dir, "bad.folded", b"main;work 10\nmain;oops abc\n");
    let err = firewatch(dir.path(), &["top", "bad.folded"]).fails();
    assert_eq!(
        err,
        "error: bad.folded: malformed folded profile at line 2: count \"abc\" is not a non-negative integer"
    );
}

#[test]
fn gzip_bomb_is_refused_at_the_decompression_limit() {
    let dir = tempdir();
    // 300 MiB of zeros, written streaming: a ~300 KiB file.
    let file = std::fs::File::create(dir.path().join("bomb.pb.gz")).expect("created");
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..300 {
        gz.write_all(&zeros).expect("written");
    }
    gz.finish().expect("finished").flush().expect("flushed");
    let size = std::fs::metadata(dir.path().join("bomb.pb.gz"))
        .expect("metadata")
        .len();
    assert!(size < 2 << 20, "bomb is small on disk: {size}");
    let err = firewatch(dir.path(), &["top", "bomb.pb.gz"]).fails();
    assert_eq!(
        err,
        format!("error: bomb.pb.gz: decompressed size (bytes) exceeds the limit of {LIMIT}")
    );
}

#[test]
fn oversized_file_is_refused_before_reading() {
    let dir = tempdir();
    // Sparse: takes no space, and reading it all would be the mistake under test.
    let file = std::fs::File::create(dir.path().join("huge.folded")).expect("created");
    file.set_len(LIMIT + 1).expect("sized");
    let err = firewatch(dir.path(), &["top", "huge.folded"]).fails();
    assert_eq!(
        err,
        format!(
            "error: huge.folded: file size of {} bytes exceeds the limit of {LIMIT} bytes",
            LIMIT + 1
        )
    );
}

#[test]
fn missing_and_empty_files() {
    let dir = tempdir();
    let err = firewatch(dir.path(), &["top", "nope.pb.gz"]).fails();
    assert!(err.starts_with("error: nope.pb.gz: cannot open: "), "{err}");
    write(&dir, "empty.pb", b"");
    let err = firewatch(dir.path(), &["convert", "empty.pb", "-o", "x.folded"]).fails();
    assert_eq!(err, "error: empty.pb: the file is empty");
}

#[test]
fn unknown_sample_type_lists_the_available_ones() {
    let err = firewatch(&data(""), &["top", GO_CPU, "--sample-type", "alloc_space"]).fails();
    assert_eq!(
        err,
        format!(
            "error: {GO_CPU}: no sample type \"alloc_space\" in this profile; \
             it has: samples (count), cpu (nanoseconds)"
        )
    );
}

#[test]
fn nothing_to_draw() {
    let dir = tempdir();
    write(&dir, "comments.folded", b"# nothing sampled\n");
    let err = firewatch(dir.path(), &["convert", "comments.folded", "-o", "x.svg"]).fails();
    assert_eq!(
        err,
        "error: comments.folded: the profile (samples) has no samples to draw"
    );
    assert!(!dir.path().join("x.svg").exists());
}

#[test]
fn unreachable_server() {
    let dir = tempdir();
    // Port 9 (discard) has no listener on a test machine's loopback.
    let run = crate::support::firewatch_env(
        dir.path(),
        &["top", "shop.cpu"],
        &[("FIREWATCH_SERVER", "http://127.0.0.1:9")],
    );
    let err = crate::support::error_line(&run, 1);
    assert!(
        err.starts_with("error: cannot reach the server at http://127.0.0.1:9: "),
        "{err}"
    );
    assert!(
        err.ends_with("(is the server running? set --server or FIREWATCH_SERVER)"),
        "{err}"
    );
}

#[test]
fn server_errors_show_the_servers_message() {
    let server = crate::live::shop();
    let dir = tempdir();
    let run = firewatch(
        dir.path(),
        &["top", "shop.cpu{env=", "--server", &server.base],
    );
    let err = crate::support::error_line(&run, 1);
    assert!(
        err.starts_with(&format!(
            "error: {}/render: the server answered 400 Bad Request: query syntax error at position 13: expected a quoted value",
            server.base
        )),
        "{err}"
    );
    let run = firewatch(
        dir.path(),
        &[
            "render",
            r#"{service_name="shop"}"#,
            "--type",
            "bogus:type",
            "-o",
            "x.svg",
            "--server",
            &server.base,
        ],
    );
    let err = crate::support::error_line(&run, 1);
    assert!(
        err.contains("the server answered 400 Bad Request: "),
        "{err}"
    );
    assert!(!dir.path().join("x.svg").exists());
}

#[test]
fn bad_server_urls_and_times_are_usage_errors() {
    let dir = tempdir();
    let run = firewatch(
        dir.path(),
        &["top", "shop.cpu", "--server", "localhost:4040"],
    );
    let err = crate::support::error_line(&run, 2);
    assert_eq!(
        err,
        "error: --server: expected a URL such as http://127.0.0.1:4040, got \"localhost:4040\""
    );
    let run = firewatch(dir.path(), &["top", "shop.cpu", "--from", "yesterday"]);
    let err = crate::support::error_line(&run, 2);
    assert!(
        err.starts_with("error: --from: invalid time \"yesterday\""),
        "{err}"
    );
    let run = firewatch(
        dir.path(),
        &[
            "report", "shop.cpu", "--from", "now", "--until", "now-1h", "-o", "r.md",
        ],
    );
    let err = crate::support::error_line(&run, 2);
    assert!(err.starts_with("error: --until \"now-1h\" ("), "{err}");
}
