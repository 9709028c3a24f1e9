//! Naming the frames of stripped binaries on the server: a real C program
//! built with gcc, stripped, its debug information split off with
//! objcopy; profiles carrying its frames as build id + address; the debug
//! file uploaded (`PUT /api/debuginfo/{build_id}`) or served by Debian's
//! `debuginfod`. Names are checked against binutils' `addr2line`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use firewatch_profile::pprof::{encode, proto};
use firewatch_profile::zstd;
use firewatch_server::IngestLimits;
use firewatch_server::store::StoreOptions;
use firewatch_server::symbols::{Symbols, debug_file_build_id};
use object::{Object, ObjectSegment, ObjectSymbol};

use crate::debuginfod::{start_debuginfod, wait_indexed};
use crate::harness::{Req, TestServer, Transport, base_ms, debug_options, enc, folded_map};
use crate::on_every_backend;
use crate::support::Backend;

/// The test program, built three ways.
struct Program {
    _dir: tempfile::TempDir,
    /// Unstripped, with DWARF.
    full: PathBuf,
    /// Stripped of every symbol.
    stripped: PathBuf,
    /// `objcopy --only-keep-debug` of `full`.
    debug: PathBuf,
    build_id: String,
    /// The executable segment: (link-time address, file offset, size).
    text: (u64, u64, u64),
    /// Link-time address and size of `main`, `hot_loop`, `cold_loop`.
    symbols: Vec<(String, u64, u64)>,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build() -> Program {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stripped.c");
    let full = dir.path().join("app");
    let stripped = dir.path().join("app.stripped");
    let debug = dir.path().join("app.debug");
    run(Command::new("gcc")
        .args(["-O2", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&full)
        .arg(&src));
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&full)
        .arg(&debug));
    run(Command::new("strip").arg("-o").arg(&stripped).arg(&full));
    let (build_id, _) = debug_file_build_id(&debug).expect("debug file");
    let bytes = std::fs::read(&full).expect("read");
    let elf = object::File::parse(&*bytes).expect("ELF");
    let text = elf
        .segments()
        .find(|s| {
            matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0)
        })
        .map(|s| (s.address(), s.file_range().0, s.size()))
        .expect("an executable segment");
    let symbols = ["main", "hot_loop", "cold_loop"]
        .iter()
        .map(|name| {
            let s = elf
                .symbols()
                .find(|s| s.name() == Ok(name))
                .unwrap_or_else(|| panic!("no symbol {name}"));
            (name.to_string(), s.address(), s.size())
        })
        .collect();
    Program {
        _dir: dir,
        full,
        stripped,
        debug,
        build_id,
        text,
        symbols,
    }
}

impl Program {
    fn symbol(&self, name: &str) -> (u64, u64) {
        self.symbols
            .iter()
            .find(|s| s.0 == name)
            .map(|s| (s.1, s.2))
            .expect("symbol")
    }

    /// What `addr2line -f -i` names at `address`, outermost first.
    fn addr2line(&self, address: u64) -> Vec<String> {
        let out = Command::new("addr2line")
            .args(["-f", "-i", "-e"])
            .arg(&self.full)
            .arg(format!("{address:x}"))
            .output()
            .expect("addr2line");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut names: Vec<String> = text.lines().step_by(2).map(str::to_owned).collect();
        names.reverse();
        names
    }

    /// A CPU profile of the stripped program as an agent ships it: every
    /// frame a location without lines, in a mapping that is the file's
    /// text segment, at its link-time address. One stack per address
    /// (`main` calling the function holding it), `samples` each.
    fn profile(&self, addresses: &[(u64, i64)], time_ms: i64) -> Vec<u8> {
        let strings = [
            "",
            "samples",
            "count",
            "cpu",
            "nanoseconds",
            "/opt/app/app",
            &self.build_id,
        ];
        let (vaddr, offset, size) = self.text;
        let (main, _) = self.symbol("main");
        let mut location = vec![proto::Location {
            id: 1,
            mapping_id: 1,
            address: main + 4,
            ..Default::default()
        }];
        let mut sample = Vec::new();
        for (i, &(address, n)) in addresses.iter().enumerate() {
            let id = i as u64 + 2;
            location.push(proto::Location {
                id,
                mapping_id: 1,
                address,
                ..Default::default()
            });
            sample.push(proto::Sample {
                location_id: vec![id, 1],
                value: vec![n, n * 10_000_000],
                label: vec![],
            });
        }
        encode(&proto::Profile {
            sample_type: vec![
                proto::ValueType { r#type: 1, unit: 2 },
                proto::ValueType { r#type: 3, unit: 4 },
            ],
            period_type: Some(proto::ValueType { r#type: 3, unit: 4 }),
            period: 10_000_000,
            time_nanos: time_ms * 1_000_000,
            duration_nanos: 10_000_000_000,
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            mapping: vec![proto::Mapping {
                id: 1,
                memory_start: vaddr,
                memory_limit: vaddr + size,
                file_offset: offset,
                filename: 5,
                build_id: 6,
                ..Default::default()
            }],
            location,
            sample,
            ..Default::default()
        })
    }

    /// Addresses every 4 bytes through `hot_loop` and `cold_loop`.
    fn addresses(&self) -> Vec<(u64, i64)> {
        let mut out = Vec::new();
        for (name, n) in [("hot_loop", 7), ("cold_loop", 3)] {
            let (start, size) = self.symbol(name);
            out.extend((start..start + size).step_by(4).map(|a| (a, n)));
        }
        out
    }

    /// The folded stacks `addresses` must read as once named: `main` and
    /// addr2line's names for each address.
    fn expected(&self, addresses: &[(u64, i64)]) -> std::collections::BTreeMap<String, i64> {
        let mut out = std::collections::BTreeMap::new();
        for &(a, n) in addresses {
            let stack = format!("main;{}", self.addr2line(a).join(";"));
            *out.entry(stack).or_insert(0) += n * 10_000_000;
        }
        out
    }
}

async fn ingest(s: &TestServer, tenant: &str, body: Vec<u8>) {
    s.send(
        Req::post(
            "/api/v1/ingest?service_name=app",
            zstd(&body, 3).expect("zstd"),
        )
        .header("Content-Encoding", "zstd")
        .tenant(tenant),
    )
    .await
    .expect(200);
}

async fn folded(s: &TestServer, tenant: &str, t: i64) -> std::collections::BTreeMap<String, i64> {
    let text = s
        .send(
            Req::get(format!(
                "/render?query={}&from={}&until={}&format=folded",
                enc("app.cpu"),
                t - 60_000,
                t + 60_000
            ))
            .tenant(tenant),
        )
        .await
        .expect(200)
        .text();
    folded_map(&text)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Frames ingested before the upload are named by every query after it, as
/// addr2line names them (inlined calls included), for the uploading tenant
/// only; before it they read `app+0xoffset`, never a wrong name.
async fn uploads_name_frames_ingested_before(s: &TestServer) {
    let p = build();
    let t = base_ms();
    let addresses = p.addresses();
    let body = p.profile(&addresses, t);
    ingest(s, "team-a", body.clone()).await;
    ingest(s, "team-b", body).await;

    let before = folded(s, "team-a", t).await;
    let total: i64 = addresses.iter().map(|a| a.1 * 10_000_000).sum();
    assert_eq!(before.values().sum::<i64>(), total);
    for stack in before.keys() {
        let frames: Vec<&str> = stack.split(';').collect();
        assert_eq!(frames.len(), 2, "{stack}");
        assert!(
            frames.iter().all(|f| f.starts_with("app+0x")),
            "an unnamed frame reads module+0xoffset: {stack}"
        );
    }

    let path = format!("/api/debuginfo/{}", p.build_id);
    s.send(Req::get(&path).tenant("team-a")).await.expect(404);
    let answer = s
        .send(Req::put(&path, read(&p.debug)).tenant("team-a"))
        .await
        .expect(200)
        .json();
    assert_eq!(answer["stored"], true);
    assert_eq!(answer["size"], read(&p.debug).len());
    let again = s
        .send(Req::put(&path, read(&p.debug)).tenant("team-a"))
        .await
        .expect(200)
        .json();
    assert_eq!(again["stored"], false, "deduplicated by build id");
    s.send(Req::get(&path).tenant("team-a")).await.expect(200);

    let named = folded(s, "team-a", t).await;
    assert_eq!(named, p.expected(&addresses));
    assert!(
        named.keys().any(|k| k.ends_with("hot_loop;step")),
        "inlined calls are frames of their own: {named:?}"
    );
    // Shares: 70 % of the value in hot_loop, exactly as ingested.
    let hot: i64 = named
        .iter()
        .filter(|(k, _)| k.contains("hot_loop"))
        .map(|(_, v)| v)
        .sum();
    let hot_expected: i64 = addresses
        .iter()
        .filter(|a| a.0 < p.symbol("cold_loop").0)
        .map(|a| a.1 * 10_000_000)
        .sum();
    assert_eq!(hot, hot_expected);
    // Named in every format, the pprof export included.
    let json = s
        .send(
            Req::get(format!(
                "/render?query={}&from={}&until={}&format=json",
                enc("app.cpu"),
                t - 60_000,
                t + 60_000
            ))
            .tenant("team-a"),
        )
        .await
        .expect(200)
        .json();
    let names = json["flamebearer"]["names"].as_array().expect("names");
    assert!(names.iter().any(|n| n == "cold_loop"), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains("+0x")))
    );

    // Another tenant's frames stay unnamed: its debug files are its own.
    let other = folded(s, "team-b", t).await;
    assert!(other.keys().all(|k| k.contains("app+0x")), "{other:?}");
}

/// Bad uploads are refused with the reason and leave nothing behind.
async fn bad_uploads_are_refused_with_the_reason(s: &TestServer) {
    let p = build();
    let put = |id: &str, body: Vec<u8>| Req::put(format!("/api/debuginfo/{id}"), body);
    let e = s.send(put("NOT-HEX", read(&p.debug))).await.error(400);
    assert!(e.contains("invalid build id"), "{e}");
    let e = s.send(put(&p.build_id, b"hello".to_vec())).await.error(400);
    assert!(e.contains("not an ELF file"), "{e}");
    let e = s.send(put("00112233", read(&p.debug))).await.error(400);
    assert!(e.contains(&p.build_id) && e.contains("00112233"), "{e}");
    let e = s.send(put(&p.build_id, read(&p.stripped))).await.error(400);
    assert!(e.contains("neither a symbol table"), "{e}");
    let big = vec![0u8; (16 << 20) + 1];
    let e = s.send(put(&p.build_id, big)).await.error(413);
    assert!(e.contains("limit of 16777216 bytes"), "{e}");
    s.send(Req::get(format!("/api/debuginfo/{}", p.build_id)))
        .await
        .expect(404);
    let tmp = s.debug_dir.path().join("tmp");
    let left = std::fs::read_dir(&tmp).map_or(0, |d| d.count());
    assert_eq!(left, 0, "no temporary file is left in {}", tmp.display());
}

on_every_backend!(
    uploads_name_frames_ingested_before,
    bad_uploads_are_refused_with_the_reason
);

/// A server on SQLite over HTTP with these debug-file options.
async fn with_symbols(options: firewatch_server::symbols::SymbolsOptions) -> TestServer {
    TestServer::configured(
        Backend::Sqlite,
        Transport::Http,
        IngestLimits::default(),
        StoreOptions::default(),
        |state| state.with_symbols(Symbols::new(options)),
    )
    .await
}

/// A tenant's uploads stop at its quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stop_at_the_tenant_quota() {
    let p = build();
    let size = read(&p.debug).len() as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = firewatch_server::symbols::SymbolsOptions {
        tenant_quota_bytes: size - 1,
        ..debug_options(dir.path())
    };
    let s = with_symbols(options).await;
    let e = s
        .send(Req::put(
            format!("/api/debuginfo/{}", p.build_id),
            read(&p.debug),
        ))
        .await
        .error(413);
    assert!(e.contains("quota"), "{e}");
}

/// A debug file no one uploaded is fetched from debuginfod: unnamed while
/// debuginfod lacks it (and not asked again within the retry period),
/// named once debuginfod has it, from then on from the server's cache even
/// with debuginfod gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debuginfod_names_what_was_not_uploaded() {
    let p = build();
    let served = tempfile::tempdir().expect("tempdir");
    let debuginfod = start_debuginfod(served.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let options = firewatch_server::symbols::SymbolsOptions {
        debuginfod_urls: vec![debuginfod.url.clone()],
        ..debug_options(dir.path())
    };
    let s = with_symbols(options).await;
    let t = base_ms();
    let addresses = p.addresses();
    ingest(&s, "", p.profile(&addresses, t)).await;

    let before = folded(&s, "", t).await;
    assert!(before.keys().all(|k| k.contains("app+0x")), "{before:?}");

    std::fs::copy(&p.debug, served.path().join("app.debug")).expect("copy");
    let (url, id) = (debuginfod.url.clone(), p.build_id.clone());
    tokio::task::spawn_blocking(move || wait_indexed(&url, &id))
        .await
        .expect("wait");
    // Past the retry period of the miss above.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let named = folded(&s, "", t).await;
    assert_eq!(named, p.expected(&addresses));
    let cached = dir
        .path()
        .join("debuginfod")
        .join(format!("{}.debug", p.build_id));
    assert_eq!(read(&cached), read(&p.debug));

    drop(debuginfod);
    assert_eq!(folded(&s, "", t).await, named, "named from the cache");
}
