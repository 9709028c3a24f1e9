//! `tests/data/checkout-go.cpu.pb.gz`: a CPU profile shaped like the Go
//! runtime's (a mapped binary, addresses, inlined frames, labels, two sample
//! types), generated here and committed so that tests read a real file.
//!
//! `FIREWATCH_REGENERATE_FIXTURES=1 cargo test -p firewatch fixtures` rewrites it.

use firewatch_profile::pprof::proto;

use crate::support::data;

pub const GO_CPU: &str = "checkout-go.cpu.pb.gz";

/// 10 ms per sample, as Go's default 100 Hz CPU profiler records.
pub const PERIOD_NANOS: i64 = 10_000_000;

/// The Go-shaped CPU profile: 150 samples, 1.5 s of CPU.
pub fn go_cpu_profile() -> proto::Profile {
    let mut strings: Vec<String> = vec![String::new()];
    let mut s = |text: &str| -> i64 {
        if let Some(i) = strings.iter().position(|x| x == text) {
            return i as i64;
        }
        strings.push(text.to_owned());
        strings.len() as i64 - 1
    };
    let funcs = [
        ("runtime.main", "/usr/lib/go/src/runtime/proc.go", 144),
        ("main.main", "/src/checkout/main.go", 12),
        (
            "net/http.(*Server).Serve",
            "/usr/lib/go/src/net/http/server.go",
            3030,
        ),
        (
            "net/http.(*conn).serve",
            "/usr/lib/go/src/net/http/server.go",
            1848,
        ),
        ("main.(*Handler).ServeHTTP", "/src/checkout/handler.go", 30),
        ("main.(*Cart).Total", "/src/checkout/cart.go", 20),
        ("main.applyDiscounts", "/src/checkout/cart.go", 38),
        (
            "encoding/json.Marshal",
            "/usr/lib/go/src/encoding/json/encode.go",
            158,
        ),
        ("runtime.mallocgc", "/usr/lib/go/src/runtime/malloc.go", 948),
        (
            "database/sql.(*DB).QueryContext",
            "/usr/lib/go/src/database/sql/sql.go",
            1713,
        ),
        (
            "syscall.Syscall",
            "/usr/lib/go/src/syscall/syscall_linux.go",
            68,
        ),
        (
            "runtime.gcBgMarkWorker",
            "/usr/lib/go/src/runtime/mgc.go",
            1238,
        ),
        (
            "runtime.scanobject",
            "/usr/lib/go/src/runtime/mgcmark.go",
            1270,
        ),
        ("main.walk", "/src/checkout/tree.go", 5),
    ];
    let function: Vec<proto::Function> = funcs
        .iter()
        .enumerate()
        .map(|(i, (name, file, line))| proto::Function {
            id: i as u64 + 1,
            name: s(name),
            system_name: s(name),
            filename: s(file),
            start_line: *line,
        })
        .collect();
    let line = |function_id: u64, line: i64| proto::Line {
        function_id,
        line,
        column: 0,
    };
    // (location id, lines innermost first); a location per call site, as Go writes.
    let locs: Vec<(u64, Vec<proto::Line>)> = vec![
        (1, vec![line(1, 250)]),
        (2, vec![line(2, 40)]),
        (3, vec![line(3, 3086)]),
        (4, vec![line(4, 1952)]),
        (5, vec![line(5, 41)]),
        // applyDiscounts inlined into Total: one address, two frames.
        (6, vec![line(7, 44), line(6, 24)]),
        (7, vec![line(6, 27)]),
        (8, vec![line(8, 161)]),
        (9, vec![line(9, 1102)]),
        (10, vec![line(10, 1720)]),
        (11, vec![line(11, 70)]),
        (12, vec![line(12, 1300)]),
        (13, vec![line(13, 1290)]),
        (14, vec![line(14, 9)]),
        (15, vec![line(5, 45)]),
        (16, vec![line(5, 48)]),
        (17, vec![line(8, 170)]),
    ];
    let location = locs
        .into_iter()
        .map(|(id, line)| proto::Location {
            id,
            mapping_id: 1,
            address: 0x40_1000 + id * 0x40,
            line,
            is_folded: false,
        })
        .collect();
    let endpoint = s("endpoint");
    let (checkout, cart) = (s("/checkout"), s("/cart"));
    let label = |value: i64| proto::Label {
        key: endpoint,
        str: value,
        num: 0,
        num_unit: 0,
    };
    // (locations leaf first, samples, endpoint label)
    let samples: [(&[u64], i64, Option<i64>); 9] = [
        (&[6, 5, 4], 40, Some(checkout)),
        (&[7, 15, 4], 10, Some(cart)),
        (&[9, 8, 16, 4], 25, Some(checkout)),
        (&[17, 16, 4], 15, Some(checkout)),
        (&[11, 10, 5, 4], 20, Some(checkout)),
        (&[11, 10, 5, 4], 10, Some(cart)),
        (&[3, 2, 1], 5, None),
        (&[13, 12], 20, None),
        (&[14, 14, 14, 2, 1], 5, None),
    ];
    let sample = samples
        .iter()
        .map(|(locations, n, l)| proto::Sample {
            location_id: locations.to_vec(),
            value: vec![*n, n * PERIOD_NANOS],
            label: l.iter().map(|&v| label(v)).collect(),
        })
        .collect();
    let sample_type = vec![
        proto::ValueType {
            r#type: s("samples"),
            unit: s("count"),
        },
        proto::ValueType {
            r#type: s("cpu"),
            unit: s("nanoseconds"),
        },
    ];
    let period_type = Some(proto::ValueType {
        r#type: s("cpu"),
        unit: s("nanoseconds"),
    });
    let mapping = vec![proto::Mapping {
        id: 1,
        memory_start: 0x40_0000,
        memory_limit: 0x80_0000,
        file_offset: 0,
        filename: s("/usr/local/bin/checkout"),
        build_id: s("6f1c0ffee0ddba11"),
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
    }];
    proto::Profile {
        sample_type,
        sample,
        mapping,
        location,
        function,
        string_table: strings,
        time_nanos: 1_700_000_000_000_000_000,
        duration_nanos: 10_000_000_000,
        period_type,
        period: PERIOD_NANOS,
        ..proto::Profile::default()
    }
}

#[test]
fn committed_go_fixture_matches_its_generator() {
    let want = go_cpu_profile();
    let path = data(GO_CPU);
    if std::env::var_os("FIREWATCH_REGENERATE_FIXTURES").is_some() {
        let raw = firewatch_profile::pprof::encode(&want);
        std::fs::write(&path, firewatch_profile::gzip(&raw)).expect("fixture written");
    }
    let bytes = std::fs::read(&path).expect("fixture present");
    let got = firewatch_profile::pprof::decode(&bytes, &firewatch_profile::Limits::default())
        .expect("fixture decodes");
    assert_eq!(got, want, "regenerate with FIREWATCH_REGENERATE_FIXTURES=1");
}
